//! The control plane's operations over a store and the master key: initialise, rotate
//! signing keys, mint tokens and API keys, revoke, manage providers, routes, plans and prices,
//! and render the filter's configuration. Every change is validated by compiling the
//! configuration it would render with the filter's own parser before it is stored, and is
//! written to the audit log.

use jwt_simple::prelude::*;
use tokenward_filter::cache::VerifiedTokenCache;
use tokenward_filter::claims::TokenwardClaims;
use tokenward_filter::config::{
    ApiKeyEntry, CacheConfig, Config, CredentialSource, Jwk, JwkSet, PlanConfig, PriceConfig,
    ProviderConfig, Revocations, RevokedJti, RouteConfig,
};
use tokenward_filter::identity::Identity;
use tokenward_filter::policy::{InvalidConfig, Policy};

use std::sync::Arc;

use crate::crypto::{self, CryptoError, MasterKey};
use crate::model::{self, Alg, ApiKeyRecord, IssuedToken, KeyState, SigningKeyRecord};
use crate::store::{ApiKeySelector, CatalogEntry, Store, StoreError, StoredProvider};

/// Why a caller of the control plane's API is not let in.
#[derive(Debug)]
pub enum AuthError {
    Refused(tokenward_filter::error::Refusal),
    Plane(PlaneError),
}

/// RFC 6749 §5.2 errors of the token endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    InvalidClient,
    InvalidScope(String),
    UnsupportedGrantType,
    Server(String),
}

/// Tokens from the token endpoint live at most this long (and never past the API key).
pub const TOKEN_ENDPOINT_TTL: u64 = 900;

/// Scopes of the control plane's own API.
pub const SCOPE_ADMIN_READ: &str = "admin:read";
pub const SCOPE_ADMIN_WRITE: &str = "admin:write";

/// Defaults an operator can change with settings.
pub const DEFAULT_MAX_TOKEN_TTL: u64 = 3600;
pub const DEFAULT_CLOCK_SKEW: u64 = 30;
/// How long a new key is published before it signs: long enough for every proxy to have it.
pub const DEFAULT_KEY_OVERLAP: u64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("not initialised: run `tokenward init` first")]
    NotInitialised,
    #[error("already initialised")]
    AlreadyInitialised,
    #[error("no signing key is active; rotate one in (`tokenward key rotate --now`)")]
    NoActiveKey,
    #[error("{0}")]
    Invalid(String),
    #[error("the configuration this change would produce is refused by the filter: {0}")]
    Rejected(#[from] InvalidConfig),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A removal that would leave something naming what is gone.
    #[error("{0}")]
    InUse(String),
}

fn invalid(message: impl Into<String>) -> PlaneError {
    PlaneError::Invalid(message.into())
}

/// What `init` sets up.
#[derive(Debug, Clone)]
pub struct InitSettings {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub alg: Alg,
}

/// What a token is minted with.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub plan: Option<String>,
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MintedToken {
    pub token: String,
    pub jti: String,
    pub kid: String,
    pub expires_at: u64,
}

/// What an API key is created with.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyRequest {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub models: Vec<String>,
    pub plan: Option<String>,
    pub expires_at: Option<u64>,
}

/// The key is shown once, here; the store keeps its hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedApiKey {
    pub id: String,
    pub key: String,
    pub record: ApiKeyRecord,
}

/// What to revoke.
#[derive(Debug, Clone)]
pub enum Revocation {
    /// A JWT by id (its expiry is looked up among minted tokens, or given).
    Jti {
        jti: String,
        expires_at: Option<u64>,
    },
    /// Every credential of a subject, JWTs and API keys, now and later.
    Subject(String),
    /// One API key.
    ApiKey(String),
    /// Every credential of a tenant that exists now: its API keys and unexpired JWTs.
    Tenant(String),
    /// A signing key: unpublished at once, and every token it signed refused.
    Key(String),
}

/// Where a provider's credential comes from.
#[derive(Debug, Clone)]
pub enum ProviderSecret {
    /// An environment variable of Envoy's Wasm VM; nothing secret is stored.
    Env(String),
    /// The credential itself, sealed under the master key.
    Sealed(String),
}

/// What a removal took with it when forced: the routes of a removed provider, the API keys
/// (revoked) of a removed plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub routes: Vec<String>,
    pub revoked_api_keys: Vec<String>,
}

/// How a caller forces a removal, for the message that refuses one.
const FORCE_HINT: &str = "`--force` on the command line, `?force=true` in the admin API";

fn quoted(kind: &str, names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("{kind}{plural} {}", names.join(", "))
}

/// Whether `route` sends anything to `provider`.
fn route_uses(route: &RouteConfig, provider: &str) -> bool {
    route.provider.as_deref() == Some(provider)
        || route.model_providers.iter().any(|m| m.provider == provider)
}

/// The control plane's operations over a store. Cheap to clone and safe to share: the store,
/// the master key and the compiled policy are shared; the actor is this handle's own.
pub struct ControlPlane<S: Store> {
    store: Arc<S>,
    master: Arc<MasterKey>,
    /// Who the audit log names for changes made through this handle.
    actor: String,
    compiled: Arc<compiled::CompiledPolicy>,
}

impl<S: Store> Clone for ControlPlane<S> {
    fn clone(&self) -> Self {
        ControlPlane {
            store: Arc::clone(&self.store),
            master: Arc::clone(&self.master),
            actor: self.actor.clone(),
            compiled: Arc::clone(&self.compiled),
        }
    }
}

const SETTING_ISSUER: &str = "issuer";
const SETTING_AUDIENCES: &str = "audiences";
const SETTING_MAX_TTL: &str = "max_token_ttl_seconds";
const SETTING_SKEW: &str = "clock_skew_seconds";
const SETTING_OVERLAP: &str = "key_overlap_seconds";
const SETTING_DEFAULT_PLAN: &str = "default_plan";

impl<S: Store> ControlPlane<S> {
    pub fn new(store: impl Into<Arc<S>>, master: MasterKey, actor: &str) -> Self {
        ControlPlane {
            store: store.into(),
            master: Arc::new(master),
            actor: actor.to_string(),
            compiled: Arc::default(),
        }
    }

    /// The same control plane, with `actor` named in the audit log for what this handle
    /// changes (the admin API's caller, per request).
    pub fn acting_as(&self, actor: &str) -> Self {
        ControlPlane {
            actor: actor.to_string(),
            ..self.clone()
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store itself, shared (`ControlPlane::new` takes it back for another master key).
    pub fn shared_store(&self) -> Arc<S> {
        Arc::clone(&self.store)
    }

    /// Verifies a tokenward credential exactly as the filter would with the configuration
    /// rendered now: the control plane's own API trusts what the gateway trusts. The
    /// compiled configuration is kept while the store's revision and the keys' schedule
    /// leave it unchanged, so a call is a lookup, not a render. While another call compiles
    /// a changed one, the one before may accept (for that compilation's milliseconds, as an
    /// Envoy does until the change reaches it); whatever it refuses is checked again against
    /// the new one, so a credential made a moment ago works at once.
    pub fn authenticate(&self, credential: &str, now: u64) -> Result<Identity, AuthError> {
        let compile = || self.render_for_authentication(now);
        let verify = |policy: &compiled::Shared| {
            let mut cache = VerifiedTokenCache::new(0);
            let hash = tokenward_filter::identity::credential_hash(credential);
            tokenward_filter::token::authenticate(
                policy.as_ref(),
                &mut cache,
                credential,
                &hash,
                now,
            )
            .map(|identity| (*identity).clone())
            .map_err(AuthError::Refused)
        };
        match self
            .compiled
            .current(self.store.as_ref(), now, compile)
            .map_err(AuthError::Plane)?
        {
            compiled::Found::Fresh(policy) => verify(&policy),
            compiled::Found::Stale(policy) => verify(&policy).or_else(|_| {
                let fresh = self
                    .compiled
                    .fresh(self.store.as_ref(), now, || {
                        self.render_for_authentication(now)
                    })
                    .map_err(AuthError::Plane)?;
                verify(&fresh)
            }),
        }
    }

    /// The OAuth 2.0 client credentials grant (RFC 6749 §4.4): a client authenticates with
    /// an API key as its secret and gets a short-lived JWT with the key's subject, tenant,
    /// models and plan, and the scopes it asked for (all of the key's when it names none).
    pub fn exchange_api_key(
        &self,
        client_id: Option<&str>,
        secret: &str,
        scopes: Option<Vec<String>>,
        now: u64,
    ) -> Result<MintedToken, OAuthError> {
        let hash: String = tokenward_filter::identity::credential_hash(secret)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let keys = self
            .store
            .api_keys()
            .map_err(|e| OAuthError::Server(e.to_string()))?;
        let revoked_subjects = self
            .store
            .revoked_subjects()
            .map_err(|e| OAuthError::Server(e.to_string()))?;
        let key = keys
            .iter()
            .find(|k| k.sha256 == hash && k.in_force(now) && !revoked_subjects.contains(&k.subject))
            .filter(|k| client_id.is_none_or(|id| id == k.id))
            .ok_or(OAuthError::InvalidClient)?;
        let scopes = match scopes {
            Some(asked) => {
                if let Some(extra) = asked.iter().find(|s| !key.scopes.contains(s)) {
                    return Err(OAuthError::InvalidScope(extra.clone()));
                }
                asked
            }
            None => key.scopes.clone(),
        };
        let ttl = self
            .max_token_ttl()
            .map_err(|e| OAuthError::Server(e.to_string()))?
            .min(TOKEN_ENDPOINT_TTL)
            .min(key.expires_at.map_or(u64::MAX, |t| t.saturating_sub(now)));
        let request = TokenRequest {
            subject: key.subject.clone(),
            tenant: key.tenant.clone(),
            scopes,
            models: Some(key.models.clone()),
            plan: key.plan.clone(),
            ttl_seconds: Some(ttl),
        };
        let key_id = key.id.clone();
        // The audit log names the client, not whoever holds this handle.
        self.acting_as(&format!("oauth:{key_id}"))
            .mint(&request, now, Some(&key_id))
            .map_err(|e| OAuthError::Server(e.to_string()))
    }

    fn audit(&self, now: u64, action: &str, target: &str, detail: &str) -> Result<(), PlaneError> {
        Ok(self.store.audit(now, &self.actor, action, target, detail)?)
    }

    fn number_setting(&self, name: &str, default: u64) -> Result<u64, PlaneError> {
        match self.store.setting(name)? {
            Some(value) => value
                .parse()
                .map_err(|_| invalid(format!("setting {name} is not a number: {value:?}"))),
            None => Ok(default),
        }
    }

    pub fn max_token_ttl(&self) -> Result<u64, PlaneError> {
        self.number_setting(SETTING_MAX_TTL, DEFAULT_MAX_TOKEN_TTL)
    }

    fn issuer(&self) -> Result<String, PlaneError> {
        self.store
            .setting(SETTING_ISSUER)?
            .ok_or(PlaneError::NotInitialised)
    }

    fn audiences(&self) -> Result<Vec<String>, PlaneError> {
        let text = self
            .store
            .setting(SETTING_AUDIENCES)?
            .ok_or(PlaneError::NotInitialised)?;
        Ok(serde_json::from_str(&text).map_err(StoreError::from)?)
    }

    /// Sets the issuer and audiences, makes the first signing key (active at once) and the
    /// first admin credential: an API key with both admin scopes, returned once.
    pub fn init(
        &self,
        settings: &InitSettings,
        now: u64,
    ) -> Result<(SigningKeyRecord, CreatedApiKey), PlaneError> {
        if self.store.setting(SETTING_ISSUER)?.is_some() {
            return Err(PlaneError::AlreadyInitialised);
        }
        if settings.issuer.is_empty()
            || settings.audiences.iter().any(|a| a.is_empty())
            || settings.audiences.is_empty()
        {
            return Err(invalid(
                "the issuer and at least one audience must not be empty",
            ));
        }
        self.store.set_setting(SETTING_ISSUER, &settings.issuer)?;
        self.store.set_setting(
            SETTING_AUDIENCES,
            &serde_json::to_string(&settings.audiences).map_err(StoreError::from)?,
        )?;
        self.audit(
            now,
            "init",
            &settings.issuer,
            &format!("audiences {:?}", settings.audiences),
        )?;
        let key = self.rotate_key(settings.alg, Some(0), now)?;
        let admin = self.create_api_key(
            &ApiKeyRequest {
                subject: "admin".into(),
                scopes: vec![SCOPE_ADMIN_READ.into(), SCOPE_ADMIN_WRITE.into()],
                ..ApiKeyRequest::default()
            },
            now,
        )?;
        Ok((key, admin))
    }

    /// Makes a new signing key, published now and signing after `overlap` seconds (the
    /// configured overlap when `None`); the key signing until then retires at that moment and
    /// stays published until the last token it can have signed has expired.
    pub fn rotate_key(
        &self,
        alg: Alg,
        overlap: Option<u64>,
        now: u64,
    ) -> Result<SigningKeyRecord, PlaneError> {
        let overlap = match overlap {
            Some(o) => o,
            None => self.number_setting(SETTING_OVERLAP, DEFAULT_KEY_OVERLAP)?,
        };
        let kid = format!(
            "{}-{}",
            alg.as_str().to_ascii_lowercase(),
            crypto::random_hex(6)?
        );
        let (public_jwk, private) = generate_key(alg, &kid)?;
        let activate_at = now + overlap;
        let record = SigningKeyRecord {
            private_sealed: self
                .master
                .seal(&SigningKeyRecord::seal_context(&kid), &private)?,
            kid: kid.clone(),
            alg,
            public_jwk,
            created_at: now,
            activate_at,
            retired_at: None,
            publish_until: None,
        };
        self.store.insert_signing_key(&record)?;
        let publish_until = activate_at
            + self.max_token_ttl()?
            + self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?;
        self.store
            .retire_signing_keys(&kid, activate_at, publish_until)?;
        self.audit(
            now,
            "key.rotate",
            &kid,
            &format!("{} signing from {activate_at}", alg.as_str()),
        )?;
        Ok(record)
    }

    pub fn keys(&self) -> Result<Vec<SigningKeyRecord>, PlaneError> {
        Ok(self.store.signing_keys()?)
    }

    /// The public keys to publish at `now` (the JWKS document's `keys`).
    pub fn jwks(&self, now: u64) -> Result<JwkSet, PlaneError> {
        let keys = self.store.signing_keys()?;
        Ok(JwkSet {
            keys: model::published_keys(&keys, now)
                .into_iter()
                .map(|k| k.public_jwk.clone())
                .collect(),
        })
    }

    /// Mints a JWT with the active key. The lifetime is bounded by the configured maximum.
    pub fn mint_token(&self, request: &TokenRequest, now: u64) -> Result<MintedToken, PlaneError> {
        self.mint(request, now, None)
    }

    /// Mints; `api_key_id` when the token is exchanged for an API key (revoking the key then
    /// revokes the token).
    fn mint(
        &self,
        request: &TokenRequest,
        now: u64,
        api_key_id: Option<&str>,
    ) -> Result<MintedToken, PlaneError> {
        let issuer = self.issuer()?;
        if !model::valid_identifier(&request.subject) {
            return Err(invalid(
                "the subject must be 1-256 printable characters without spaces",
            ));
        }
        if let Some(plan) = &request.plan {
            if !self.store.plans()?.iter().any(|(name, _)| name == plan) {
                return Err(PlaneError::NotFound(format!("plan {plan:?}")));
            }
        }
        let max = self.max_token_ttl()?;
        let ttl = request.ttl_seconds.unwrap_or(max);
        if ttl == 0 || ttl > max {
            return Err(invalid(format!(
                "the lifetime must be between 1 and {max} seconds"
            )));
        }
        let keys = self.store.signing_keys()?;
        let key = model::signing_key(&keys, now).ok_or(PlaneError::NoActiveKey)?;
        let private = self.master.open(
            &SigningKeyRecord::seal_context(&key.kid),
            &key.private_sealed,
        )?;
        let jti = crypto::random_hex(16)?;
        let custom = TokenwardClaims {
            scope: (!request.scopes.is_empty()).then(|| request.scopes.join(" ")),
            models: request.models.clone(),
            tenant: request.tenant.clone(),
            plan: request.plan.clone(),
        };
        let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(ttl))
            .with_issuer(issuer)
            .with_audiences(
                self.audiences()?
                    .into_iter()
                    .collect::<std::collections::HashSet<_>>(),
            )
            .with_subject(&request.subject)
            .with_jwt_id(&jti);
        // The host clock decides, not jwt-simple's: tests and the filter agree on it.
        claims.issued_at = Some(Duration::from_secs(now));
        claims.invalid_before = Some(Duration::from_secs(now));
        claims.expires_at = Some(Duration::from_secs(now + ttl));
        let signing = |e: jwt_simple::Error| PlaneError::Signing(e.to_string());
        let token = match key.alg {
            Alg::EdDSA => Ed25519KeyPair::from_bytes(&private)
                .map_err(signing)?
                .with_key_id(&key.kid)
                .sign(claims),
            Alg::ES256 => ES256KeyPair::from_bytes(&private)
                .map_err(signing)?
                .with_key_id(&key.kid)
                .sign(claims),
        }
        .map_err(signing)?;
        let issued = IssuedToken {
            jti: jti.clone(),
            subject: request.subject.clone(),
            tenant: request.tenant.clone(),
            kid: key.kid.clone(),
            issued_at: now,
            expires_at: now + ttl,
        };
        self.store.record_token(&issued, api_key_id)?;
        self.audit(
            now,
            "token.mint",
            &request.subject,
            &format!("jti {jti}, kid {}, expires {}", key.kid, now + ttl),
        )?;
        Ok(MintedToken {
            token,
            jti,
            kid: key.kid.clone(),
            expires_at: now + ttl,
        })
    }

    /// Creates an API key (`tw_…`, 190 random bits); the key is returned once.
    pub fn create_api_key(
        &self,
        request: &ApiKeyRequest,
        now: u64,
    ) -> Result<CreatedApiKey, PlaneError> {
        if !model::valid_identifier(&request.subject) {
            return Err(invalid(
                "the subject must be 1-256 printable characters without spaces",
            ));
        }
        if request.expires_at.is_some_and(|t| t <= now) {
            return Err(invalid("the expiry is in the past"));
        }
        let mut random = [0u8; 256];
        crypto::random(&mut random)?;
        let mut bytes = random.into_iter();
        // 256 bytes cover the 32 characters even after rejection sampling (~3% rejected).
        let key = tokenward_filter::apikey::new_api_key(|| bytes.next().unwrap_or(0));
        let id = format!("key-{}", crypto::random_hex(6)?);
        let sha256: String = tokenward_filter::identity::credential_hash(&key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let record = ApiKeyRecord {
            id: id.clone(),
            sha256,
            subject: request.subject.clone(),
            tenant: request.tenant.clone(),
            scopes: request.scopes.clone(),
            models: request.models.clone(),
            plan: request.plan.clone(),
            created_at: now,
            expires_at: request.expires_at,
            revoked_at: None,
        };
        // The filter refuses an API key naming an unknown plan: check the whole render.
        self.check_with(now, |config| {
            config.api_keys.push(api_key_entry(&record));
        })?;
        self.store.insert_api_key(&record)?;
        self.audit(
            now,
            "apikey.create",
            &id,
            &format!("subject {}", request.subject),
        )?;
        Ok(CreatedApiKey { id, key, record })
    }

    /// Revokes; returns how many credentials the revocation reached where that is known.
    pub fn revoke(&self, what: &Revocation, now: u64) -> Result<usize, PlaneError> {
        let count = match what {
            Revocation::Jti { jti, expires_at } => {
                // Never earlier than the token's own expiry, when it was minted here.
                let expires_at = match (expires_at, self.store.token(jti)?) {
                    (Some(t), Some(token)) => (*t).max(token.expires_at),
                    (Some(t), None) => *t,
                    (None, Some(token)) => token.expires_at,
                    // Not minted here and no expiry given: keep it as long as any token lives.
                    (None, None) => {
                        now + self.max_token_ttl()?
                            + self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?
                    }
                };
                self.store.revoke_jti(jti, expires_at, now)?;
                self.audit(now, "revoke.jti", jti, &format!("until {expires_at}"))?;
                1
            }
            Revocation::Subject(subject) => {
                self.store.revoke_subject(subject, now)?;
                let keys = self
                    .store
                    .revoke_api_keys(ApiKeySelector::Subject(subject), now)?;
                self.audit(now, "revoke.subject", subject, &format!("{keys} API keys"))?;
                1 + keys
            }
            Revocation::ApiKey(id) => {
                let n = self.store.revoke_api_keys(ApiKeySelector::Id(id), now)?;
                if n == 0 && !self.store.api_keys()?.iter().any(|k| &k.id == id) {
                    return Err(PlaneError::NotFound(format!("API key {id:?}")));
                }
                // And the tokens the key was exchanged for.
                let tokens = self.store.tokens_of_api_key(id, self.live_after(now)?)?;
                for token in &tokens {
                    self.store.revoke_jti(&token.jti, token.expires_at, now)?;
                }
                self.audit(
                    now,
                    "revoke.apikey",
                    id,
                    &format!("{} exchanged tokens", tokens.len()),
                )?;
                n + tokens.len()
            }
            Revocation::Key(kid) => {
                if !self.store.revoke_signing_key(kid, now)? {
                    return Err(PlaneError::NotFound(format!("signing key {kid:?}")));
                }
                self.audit(
                    now,
                    "revoke.key",
                    kid,
                    "unpublished; every token it signed refused",
                )?;
                1
            }
            Revocation::Tenant(tenant) => {
                let keys = self
                    .store
                    .revoke_api_keys(ApiKeySelector::Tenant(tenant), now)?;
                let tokens = self.store.tokens_of_tenant(tenant, self.live_after(now)?)?;
                for token in &tokens {
                    self.store.revoke_jti(&token.jti, token.expires_at, now)?;
                }
                self.audit(
                    now,
                    "revoke.tenant",
                    tenant,
                    &format!("{keys} API keys, {} tokens", tokens.len()),
                )?;
                keys + tokens.len()
            }
        };
        Ok(count)
    }

    /// Adds or replaces a provider. Its credential is sealed here or named as an environment
    /// variable of Envoy's Wasm VM.
    pub fn put_provider(
        &self,
        mut provider: ProviderConfig,
        secret: ProviderSecret,
        now: u64,
    ) -> Result<(), PlaneError> {
        let sealed = match &secret {
            ProviderSecret::Env(var) => {
                provider.credential = CredentialSource::Env(var.clone());
                None
            }
            ProviderSecret::Sealed(value) => {
                // Validated below with a placeholder of the same shape; the value itself never
                // leaves the seal except into a rendered config.
                provider.credential = CredentialSource::Inline(value.clone());
                Some(
                    self.master
                        .seal(&provider_context(&provider.name), value.as_bytes())?,
                )
            }
        };
        let stored = StoredProvider {
            config: provider.clone(),
            credential_sealed: sealed,
        };
        self.check_with(now, |config| {
            config.providers.retain(|p| p.name != provider.name);
            config.providers.push(provider.clone());
        })?;
        let mut kept = stored;
        if kept.credential_sealed.is_some() {
            // The document keeps no secret: the sealed column does.
            kept.config.credential = CredentialSource::Inline(String::new());
        }
        self.store.put_provider(&kept)?;
        let source = match secret {
            ProviderSecret::Env(var) => format!("credential from env {var}"),
            ProviderSecret::Sealed(_) => "credential sealed".to_string(),
        };
        self.audit(now, "provider.put", &provider.name, &source)?;
        Ok(())
    }

    pub fn put_route(&self, route: RouteConfig, now: u64) -> Result<(), PlaneError> {
        self.check_with(now, |config| {
            match config.routes.iter_mut().find(|r| r.name == route.name) {
                Some(existing) => *existing = route.clone(),
                None => config.routes.push(route.clone()),
            }
        })?;
        self.store.put_route(&route)?;
        self.audit(now, "route.put", &route.name, &route.path_prefix)?;
        Ok(())
    }

    pub fn put_plan(&self, name: &str, plan: PlanConfig, now: u64) -> Result<(), PlaneError> {
        self.check_with(now, |config| {
            config.plans.insert(name.to_string(), plan.clone());
        })?;
        self.store.put_plan(name, &plan)?;
        self.audit(
            now,
            "plan.put",
            name,
            &format!("{} limits", plan.limits.len()),
        )?;
        Ok(())
    }

    pub fn put_price(&self, price: PriceConfig, now: u64) -> Result<(), PlaneError> {
        self.check_with(now, |config| {
            config.prices.retain(|p| p.model != price.model);
            config.prices.push(price.clone());
        })?;
        self.store.put_price(&price)?;
        self.audit(now, "price.put", &price.model, "")?;
        Ok(())
    }

    pub fn set_default_plan(&self, plan: Option<&str>, now: u64) -> Result<(), PlaneError> {
        self.check_with(now, |config| config.default_plan = plan.map(str::to_string))?;
        self.store
            .set_setting(SETTING_DEFAULT_PLAN, plan.unwrap_or(""))?;
        self.audit(now, "plan.default", plan.unwrap_or("(none)"), "")?;
        Ok(())
    }

    /// Removes a provider. Refused while a route sends to it, unless `force`: then those
    /// routes are removed too (a route cannot name a provider that is gone: the filter would
    /// refuse the whole configuration).
    pub fn remove_provider(
        &self,
        name: &str,
        force: bool,
        now: u64,
    ) -> Result<Removed, PlaneError> {
        if !self
            .store
            .providers()?
            .iter()
            .any(|p| p.config.name == name)
        {
            return Err(PlaneError::NotFound(format!("provider {name:?}")));
        }
        let routes: Vec<String> = self
            .store
            .routes()?
            .iter()
            .filter(|r| route_uses(r, name))
            .map(|r| r.name.clone())
            .collect();
        if !routes.is_empty() && !force {
            return Err(PlaneError::InUse(format!(
                "provider {name:?} is used by {}: remove or change them first, or force the removal ({FORCE_HINT}) to remove them with it",
                quoted("route", &routes)
            )));
        }
        self.check_with(now, |config| {
            config.routes.retain(|r| !routes.contains(&r.name));
            config.providers.retain(|p| p.name != name);
        })?;
        // The routes first: a reader between two statements (another process's render)
        // sees a configuration the filter accepts.
        for route in &routes {
            self.store.remove(CatalogEntry::Route(route))?;
            self.audit(now, "route.remove", route, &format!("with provider {name}"))?;
        }
        self.store.remove(CatalogEntry::Provider(name))?;
        let detail = if routes.is_empty() {
            String::new()
        } else {
            format!("forced: with {}", quoted("route", &routes))
        };
        self.audit(now, "provider.remove", name, &detail)?;
        Ok(Removed {
            routes,
            ..Removed::default()
        })
    }

    /// Removes a route; nothing else names one.
    pub fn remove_route(&self, name: &str, now: u64) -> Result<Removed, PlaneError> {
        if !self.store.routes()?.iter().any(|r| r.name == name) {
            return Err(PlaneError::NotFound(format!("route {name:?}")));
        }
        self.check_with(now, |config| config.routes.retain(|r| r.name != name))?;
        self.store.remove(CatalogEntry::Route(name))?;
        self.audit(now, "route.remove", name, "")?;
        Ok(Removed::default())
    }

    /// Removes a plan. Never the default plan (credentials naming no plan would lose their
    /// limits without anyone saying so: choose the default first). Refused while an API key
    /// in force names it, unless `force`: those keys are then revoked, as the filter refuses
    /// every credential naming a plan it does not have (tokens naming it included).
    pub fn remove_plan(&self, name: &str, force: bool, now: u64) -> Result<Removed, PlaneError> {
        if !self.store.plans()?.iter().any(|(n, _)| n == name) {
            return Err(PlaneError::NotFound(format!("plan {name:?}")));
        }
        if self.store.setting(SETTING_DEFAULT_PLAN)?.as_deref() == Some(name) {
            return Err(PlaneError::InUse(format!(
                "plan {name:?} is the default plan: make another plan the default (`plan default NAME`) or have none (`plan default --none`) first"
            )));
        }
        let keys: Vec<String> = self
            .store
            .api_keys()?
            .into_iter()
            .filter(|k| k.in_force(now) && k.plan.as_deref() == Some(name))
            .map(|k| k.id)
            .collect();
        if !keys.is_empty() && !force {
            return Err(PlaneError::InUse(format!(
                "plan {name:?} is named by {}: revoke them first, or force the removal ({FORCE_HINT}) to revoke them with it",
                quoted("API key", &keys)
            )));
        }
        self.check_with(now, |config| {
            config.plans.remove(name);
            config.api_keys.retain(|k| k.plan.as_deref() != Some(name));
        })?;
        for id in &keys {
            self.revoke(&Revocation::ApiKey(id.clone()), now)?;
        }
        self.store.remove(CatalogEntry::Plan(name))?;
        let detail = if keys.is_empty() {
            String::new()
        } else {
            format!("forced: revoked {}", quoted("API key", &keys))
        };
        self.audit(now, "plan.remove", name, &detail)?;
        Ok(Removed {
            revoked_api_keys: keys,
            ..Removed::default()
        })
    }

    /// Removes a model's price. Not the last one while a plan counts cost: such a plan
    /// could price nothing.
    pub fn remove_price(&self, model: &str, now: u64) -> Result<Removed, PlaneError> {
        let prices = self.store.prices()?;
        if !prices.iter().any(|p| p.model == model) {
            return Err(PlaneError::NotFound(format!("price for {model:?}")));
        }
        if prices.len() == 1 {
            let counting: Vec<String> = self
                .store
                .plans()?
                .into_iter()
                .filter(|(_, plan)| {
                    plan.limits
                        .iter()
                        .any(|l| l.metric == tokenward_filter::config::Metric::CostMicroUsd)
                })
                .map(|(name, _)| name)
                .collect();
            if !counting.is_empty() {
                return Err(PlaneError::InUse(format!(
                    "the price for {model:?} is the last one and {} count cost: set another price or remove their cost limits first",
                    quoted("plan", &counting)
                )));
            }
        }
        self.check_with(now, |config| config.prices.retain(|p| p.model != model))?;
        self.store.remove(CatalogEntry::Price(model))?;
        self.audit(now, "price.remove", model, "")?;
        Ok(Removed::default())
    }

    /// The earliest expiry a token the filter still accepts at `now` can have (exp + skew).
    fn live_after(&self, now: u64) -> Result<u64, PlaneError> {
        Ok(now.saturating_sub(self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?))
    }

    /// Changes one of the numeric settings, within its bounds, checked like every change.
    pub fn set_setting(&self, name: &str, value: u64, now: u64) -> Result<(), PlaneError> {
        let (low, high) = match name {
            SETTING_MAX_TTL => (60, 7 * 24 * 3600),
            SETTING_SKEW => (0, 600),
            SETTING_OVERLAP => (0, 7 * 24 * 3600),
            _ => {
                return Err(invalid(format!(
                    "unknown setting {name:?}: use {SETTING_MAX_TTL}, {SETTING_SKEW} or {SETTING_OVERLAP}"
                )))
            }
        };
        if !(low..=high).contains(&value) {
            return Err(invalid(format!("{name} must be between {low} and {high}")));
        }
        self.check_with(now, |config| match name {
            SETTING_MAX_TTL => config.max_token_lifetime_seconds = value,
            SETTING_SKEW => config.clock_skew_seconds = value,
            _ => {}
        })?;
        self.store.set_setting(name, &value.to_string())?;
        // Retired keys stay published as long as the tokens they signed may now live.
        let keep = self.max_token_ttl()? + self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?;
        self.store.extend_publication(keep)?;
        self.audit(now, "setting.set", name, &value.to_string())?;
        Ok(())
    }

    /// The numeric settings in force.
    pub fn settings(&self) -> Result<Vec<(&'static str, u64)>, PlaneError> {
        Ok(vec![
            (SETTING_MAX_TTL, self.max_token_ttl()?),
            (
                SETTING_SKEW,
                self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?,
            ),
            (
                SETTING_OVERLAP,
                self.number_setting(SETTING_OVERLAP, DEFAULT_KEY_OVERLAP)?,
            ),
        ])
    }

    /// Renders the current state and applies `change`, then compiles it as the filter would
    /// (environment variables assumed present: they are Envoy's, not ours to check).
    fn check_with(&self, now: u64, change: impl FnOnce(&mut Config)) -> Result<(), PlaneError> {
        let mut config = self.render(now)?;
        change(&mut config);
        // Clusters are pushed by name (CDS): two providers on one cluster would send one's
        // credential to the other's host.
        let mut clusters = std::collections::HashSet::new();
        if let Some(shared) = config
            .providers
            .iter()
            .find(|p| !clusters.insert(p.cluster.as_str()))
        {
            return Err(invalid(format!(
                "cluster {:?} belongs to another provider",
                shared.cluster
            )));
        }
        Policy::compile(&config, &|name| Some(format!("{name}-set-in-envoy")))?;
        Ok(())
    }

    /// The policy callers are verified against, and until when `now`'s schedule keeps it so:
    /// the next time a signing key is announced, retires or leaves the published set.
    fn render_for_authentication(&self, now: u64) -> Result<compiled::Compiled, PlaneError> {
        let config = self.render(now)?;
        // Provider credentials are not needed to verify callers.
        let policy = Policy::compile(&config, &|_| Some("unused".to_string()))?;
        let changes_at = self
            .store
            .signing_keys()?
            .iter()
            .flat_map(|k| [Some(k.activate_at), k.retired_at, k.publish_until])
            .flatten()
            .filter(|&t| t > now)
            .min();
        Ok(compiled::Compiled { policy, changes_at })
    }

    /// The filter's whole configuration at `now`, versioned by its content: the same state
    /// renders the same version, on any machine and after any restart.
    pub fn render(&self, now: u64) -> Result<Config, PlaneError> {
        let keys = self.store.signing_keys()?;
        let published: Vec<Jwk> = model::published_keys(&keys, now)
            .into_iter()
            .map(|k| k.public_jwk.clone())
            .collect();
        let mut providers = Vec::new();
        for stored in self.store.providers()? {
            let mut config = stored.config;
            if let Some(sealed) = &stored.credential_sealed {
                let secret = self.master.open(&provider_context(&config.name), sealed)?;
                config.credential = CredentialSource::Inline(
                    String::from_utf8(secret)
                        .map_err(|_| invalid("a sealed credential is not UTF-8"))?,
                );
            }
            providers.push(config);
        }
        let default_plan = self
            .store
            .setting(SETTING_DEFAULT_PLAN)?
            .filter(|p| !p.is_empty());
        let mut config = Config {
            version: None,
            issuer: self.issuer()?,
            audiences: self.audiences()?,
            clock_skew_seconds: self.number_setting(SETTING_SKEW, DEFAULT_CLOCK_SKEW)?,
            max_token_lifetime_seconds: self.max_token_ttl()?,
            keys: JwkSet { keys: published },
            api_keys: self
                .store
                .api_keys()?
                .iter()
                .filter(|k| k.in_force(now))
                .map(api_key_entry)
                .collect(),
            revocations: Revocations {
                jtis: self
                    .store
                    .revoked_jtis(self.live_after(now)?)?
                    .into_iter()
                    .map(|(jti, expires_at)| RevokedJti { jti, expires_at })
                    .collect(),
                subjects: self.store.revoked_subjects()?,
                key_ids: self.store.revoked_key_ids()?,
            },
            providers,
            routes: self.store.routes()?,
            cache: CacheConfig::default(),
            plans: self.store.plans()?.into_iter().collect(),
            default_plan,
            prices: self.store.prices()?,
        };
        config.version = Some(content_version(&config)?);
        Ok(config)
    }

    /// The state of each key at `now`, for listing.
    pub fn key_states(&self, now: u64) -> Result<Vec<(SigningKeyRecord, KeyState)>, PlaneError> {
        Ok(self
            .store
            .signing_keys()?
            .into_iter()
            .map(|k| {
                let state = k.state(now);
                (k, state)
            })
            .collect())
    }
}

fn provider_context(name: &str) -> String {
    format!("provider-credential:{name}")
}

fn api_key_entry(record: &ApiKeyRecord) -> ApiKeyEntry {
    ApiKeyEntry {
        id: record.id.clone(),
        sha256: record.sha256.clone(),
        subject: record.subject.clone(),
        tenant: record.tenant.clone(),
        scopes: record.scopes.clone(),
        models: record.models.clone(),
        plan: record.plan.clone(),
        expires_at: record.expires_at,
    }
}

/// The first 16 hex characters of the SHA-256 of the config serialized without a version.
fn content_version(config: &Config) -> Result<String, PlaneError> {
    let json = serde_json::to_vec(config).map_err(StoreError::from)?;
    let hash = hmac_sha256::Hash::hash(&json);
    Ok(hash[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// A new key pair: its public JWK and the private key's bytes.
fn generate_key(alg: Alg, kid: &str) -> Result<(Jwk, Vec<u8>), PlaneError> {
    let encode = |bytes: &[u8]| {
        Base64UrlSafeNoPadding::encode_to_string(bytes)
            .map_err(|e| PlaneError::Signing(e.to_string()))
    };
    Ok(match alg {
        Alg::EdDSA => {
            let pair = Ed25519KeyPair::generate();
            let jwk = Jwk {
                kty: "OKP".into(),
                kid: Some(kid.into()),
                alg: Some("EdDSA".into()),
                use_: Some("sig".into()),
                crv: Some("Ed25519".into()),
                x: Some(encode(&pair.public_key().to_bytes())?),
                y: None,
                k: None,
                allow_symmetric: false,
            };
            (jwk, pair.to_bytes())
        }
        Alg::ES256 => {
            let pair = ES256KeyPair::generate();
            let point = pair.public_key().public_key().to_bytes_uncompressed();
            // SEC1 uncompressed: 0x04, then x and y, 32 bytes each.
            let (x, y) = point
                .get(1..33)
                .zip(point.get(33..65))
                .ok_or_else(|| PlaneError::Signing("unexpected P-256 point".into()))?;
            let jwk = Jwk {
                kty: "EC".into(),
                kid: Some(kid.into()),
                alg: Some("ES256".into()),
                use_: Some("sig".into()),
                crv: Some("P-256".into()),
                x: Some(encode(x)?),
                y: Some(encode(y)?),
                k: None,
                allow_symmetric: false,
            };
            (jwk, pair.to_bytes())
        }
    })
}

mod compiled;

#[cfg(test)]
mod tests;
