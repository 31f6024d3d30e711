//! Who may call, and the credentials the control plane issues: verifying a caller as the
//! gateway would, minting JWTs (directly and for an API key, OAuth 2.0 client credentials),
//! creating API keys.

use super::render::api_key_entry;
use super::*;

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Verifies a tokenward credential exactly as the filter would with the configuration
    /// rendered now: the control plane's own API trusts what the gateway trusts. The
    /// compiled configuration is kept while the store's revision and the keys' schedule
    /// leave it unchanged, so a call is a lookup, not a render. While another call compiles
    /// a changed one, the one before may accept (for that compilation's milliseconds, as an
    /// Envoy does until the change reaches it); whatever it refuses is checked again against
    /// the new one, so a credential made a moment ago works at once.
    pub fn authenticate(&self, credential: &str, now: u64) -> Result<Identity, AuthError> {
        self.verify_with_policy(now, |policy| {
            policy
                .authenticate(credential, now)
                .map(|identity| (*identity).clone())
                .map_err(AuthError::Refused)
        })
    }

    /// `verify`'s verdict under the compiled configuration of now (see `authenticate`: a
    /// stale one may accept, never refuse).
    pub(super) fn verify_with_policy(
        &self,
        now: u64,
        verify: impl Fn(&Policy) -> Result<Identity, AuthError>,
    ) -> Result<Identity, AuthError> {
        let compile = || self.render_for_authentication(now);
        let verify = |policy: &compiled::Shared| verify(policy.as_ref());
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
            // A proxy credential opens the sync channel only: no token is made of it.
            .filter(|k| {
                !k.scopes
                    .iter()
                    .any(|s| s == tokenward_filter::sync::SCOPE_SYNC)
            })
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

    /// Mints a JWT with the active key. The lifetime is bounded by the configured maximum.
    pub fn mint_token(&self, request: &TokenRequest, now: u64) -> Result<MintedToken, PlaneError> {
        self.mint(request, now, None)
    }

    /// Mints; `api_key_id` when the token is exchanged for an API key (revoking the key then
    /// revokes the token).
    pub(super) fn mint(
        &self,
        request: &TokenRequest,
        now: u64,
        api_key_id: Option<&str>,
    ) -> Result<MintedToken, PlaneError> {
        self.atomically(|| {
            let issuer = self.issuer()?;
            if !model::valid_identifier(&request.subject) {
                return Err(invalid(
                    "the subject must be 1-256 printable characters without spaces",
                ));
            }
            if let Some(plan) = &request.plan {
                if !self.store.plans()?.iter().any(|(name, _)| name == plan) {
                    // The call's target exists; what it names does not: a bad request, not a 404.
                    return Err(invalid(format!("no plan is named {plan:?}")));
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
            let jti = crypto::random_hex(16)?;
            let custom = TokenwardClaims {
                scope: (!request.scopes.is_empty()).then(|| request.scopes.join(" ")),
                models: request.models.clone(),
                tenant: request.tenant.clone(),
                plan: request.plan.clone(),
            };
            let claims = Claims::with_custom_claims(custom, Duration::from_secs(ttl))
                .with_issuer(issuer)
                .with_audiences(
                    self.audiences()?
                        .into_iter()
                        .collect::<std::collections::HashSet<_>>(),
                )
                .with_subject(&request.subject)
                .with_jwt_id(&jti);
            let token = self.sign(key, claims, now, ttl)?;
            let issued = IssuedToken {
                jti: jti.clone(),
                subject: request.subject.clone(),
                tenant: request.tenant.clone(),
                kid: key.kid.clone(),
                issued_at: now,
                expires_at: now + ttl,
            };
            self.store.record_token(&issued, api_key_id)?;
            let grants = TokenGrants {
                scopes: request.scopes.clone(),
                models: request.models.clone(),
                plan: request.plan.clone(),
            };
            self.store.set_token_grants(
                &jti,
                &serde_json::to_string(&grants).map_err(StoreError::from)?,
            )?;
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
        })
    }

    /// Signs `claims` with `key`, valid from `now` for `ttl` seconds. The host clock decides,
    /// not jwt-simple's: tests and the filter agree on it.
    pub(super) fn sign<C: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &SigningKeyRecord,
        mut claims: JWTClaims<C>,
        now: u64,
        ttl: u64,
    ) -> Result<String, PlaneError> {
        let private = self.master.open(
            &SigningKeyRecord::seal_context(&key.kid),
            &key.private_sealed,
        )?;
        claims.issued_at = Some(Duration::from_secs(now));
        claims.invalid_before = Some(Duration::from_secs(now));
        claims.expires_at = Some(Duration::from_secs(now + ttl));
        let signing = |e: jwt_simple::Error| PlaneError::Signing(e.to_string());
        match key.alg {
            Alg::EdDSA => Ed25519KeyPair::from_bytes(&private)
                .map_err(signing)?
                .with_key_id(&key.kid)
                .sign(claims),
            Alg::ES256 => ES256KeyPair::from_bytes(&private)
                .map_err(signing)?
                .with_key_id(&key.kid)
                .sign(claims),
        }
        .map_err(signing)
    }

    /// Creates an API key (`tw_…`, 190 random bits); the key is returned once.
    pub fn create_api_key(
        &self,
        request: &ApiKeyRequest,
        now: u64,
    ) -> Result<CreatedApiKey, PlaneError> {
        self.serialized(|| {
            if !model::valid_identifier(&request.subject) {
                return Err(invalid(
                    "the subject must be 1-256 printable characters without spaces",
                ));
            }
            if request.expires_at.is_some_and(|t| t <= now) {
                return Err(invalid("the expiry is in the past"));
            }
            if request.expires_at.is_some_and(|t| t > model::MAX_UNIX_TIME) {
                return Err(invalid("the expiry must be before the year 10000"));
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
        })
    }
}

/// What a minted token grants, kept beside its record for the dashboard's list of tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenGrants {
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `None`: every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub plan: Option<String>,
}
