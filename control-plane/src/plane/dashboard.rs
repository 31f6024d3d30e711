//! What the dashboard (`crate::ui`) needs of the control plane beyond the admin API's
//! operations: sessions opened with an admin credential, and an API key's rotation. A
//! session keeps who its credential is (an API key's id and hash, a token's jti, signing key
//! and grants), never the credential, and checks on every page that it is still in force
//! under the configuration of now, as the gateway checks a token it has cached: revoking or
//! expiring that credential ends the session on every replica.

use std::sync::Arc;

use tokenward_filter::error::{ErrorCode, Refusal};
use tokenward_filter::identity::{CredentialKind, Grants};

use super::*;
use crate::store::UiSession;

/// The longest a dashboard session lasts (shorter when its credential expires sooner).
pub const UI_SESSION_TTL: u64 = 8 * 3600;

/// A signed-in operator, as each page sees them.
#[derive(Debug, Clone)]
pub struct Operator {
    pub identity: Identity,
    /// May act (create, revoke, rotate); otherwise only sees.
    pub can_write: bool,
    /// Proves a form came from a page of this session (a hash of the session's id).
    pub csrf: String,
    pub expires_at: u64,
}

/// Why a dashboard sign-in or session is refused.
#[derive(Debug)]
pub enum SessionError {
    /// No such session, or it ended (expired, signed out, its credential no longer valid).
    Ended,
    /// The credential is valid but carries neither admin scope.
    NotAnAdmin,
    Refused(AuthError),
}

/// What a session keeps of its credential: enough to find it again and check it is still in
/// force, nothing that signs in (a database and the master key together no longer yield an
/// admin credential).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum SessionCredential {
    /// An API key, by its id and the SHA-256 it is looked up by (the store keeps both).
    ApiKey { id: String, sha256: String },
    /// A token, by what revocation looks at, and what it grants (a token's claims never
    /// change, so they are checked once, at sign-in).
    Token {
        jti: Option<String>,
        kid: Option<String>,
        tenant: Option<String>,
        scopes: Vec<String>,
        expires_at: Option<u64>,
    },
}

impl SessionCredential {
    fn of(identity: &Identity, credential: &str) -> Self {
        match identity.kind() {
            CredentialKind::ApiKey { id } => SessionCredential::ApiKey {
                id: id.to_string(),
                sha256: crypto::hex(&tokenward_filter::identity::credential_hash(credential)),
            },
            CredentialKind::Jwt { jti, kid } => SessionCredential::Token {
                jti: jti.map(|jti| jti.to_string()),
                kid: kid.map(str::to_string),
                tenant: identity.grants.tenant.clone(),
                scopes: identity.grants.scopes.clone(),
                expires_at: identity.expires_at(),
            },
        }
    }

    /// The identity it stands for, under `policy` at `now`: what the gateway would let in.
    fn verify(&self, subject: &str, policy: &Policy, now: u64) -> Result<Identity, AuthError> {
        let ended = |code, message: &str| AuthError::Refused(Refusal::new(code, message));
        let identity = match self {
            SessionCredential::ApiKey { id, sha256 } => {
                let identity = crypto::unhex(sha256)
                    .and_then(|hash| <[u8; 32]>::try_from(hash).ok())
                    .and_then(|hash| policy.api_key(&hash))
                    .filter(|i| i.kind() == CredentialKind::ApiKey { id })
                    .ok_or_else(|| ended(ErrorCode::InvalidApiKey, "API key is not in force"))?;
                if identity.expires_at().is_some_and(|exp| now > exp) {
                    return Err(ended(ErrorCode::InvalidApiKey, "API key has expired"));
                }
                (*identity).clone()
            }
            SessionCredential::Token {
                jti,
                kid,
                tenant,
                scopes,
                expires_at,
            } => {
                // The key that signed it must still verify tokens (not unpublished).
                if policy.key_for(kid.as_deref()).is_none() {
                    return Err(ended(ErrorCode::InvalidToken, "its signing key is gone"));
                }
                if expires_at.is_some_and(|exp| now > exp) {
                    return Err(ended(ErrorCode::InvalidToken, "token has expired"));
                }
                Identity::jwt(
                    subject,
                    jti.as_deref(),
                    kid.as_deref().map(Arc::from),
                    Arc::new(Grants {
                        tenant: tenant.clone(),
                        scopes: scopes.clone(),
                        models: None,
                        plan: None,
                    }),
                    *expires_at,
                )
            }
        };
        if identity.subject() != subject || policy.credentials.revocations.revokes(&identity) {
            return Err(ended(
                ErrorCode::TokenRevoked,
                "credential has been revoked",
            ));
        }
        Ok(identity)
    }
}

fn is_admin(identity: &Identity) -> bool {
    identity.has_scope(SCOPE_ADMIN_READ) || identity.has_scope(SCOPE_ADMIN_WRITE)
}

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Opens a session for an admin credential: the cookie's id (returned once) and who.
    /// `previous`, the session id the browser still presented, is ended: a new sign-in
    /// replaces the session of that browser.
    pub fn sign_in(
        &self,
        credential: &str,
        previous: Option<&str>,
        now: u64,
    ) -> Result<(String, Operator), SessionError> {
        let identity = self
            .authenticate(credential, now)
            .map_err(SessionError::Refused)?;
        if !is_admin(&identity) {
            return Err(SessionError::NotAnAdmin);
        }
        let plane_error = |e: PlaneError| SessionError::Refused(AuthError::Plane(e));
        let id = crypto::random_hex(32).map_err(|e| plane_error(e.into()))?;
        let kept = serde_json::to_string(&SessionCredential::of(&identity, credential))
            .map_err(|e| plane_error(StoreError::from(e).into()))?;
        let until = now.saturating_add(UI_SESSION_TTL);
        let expires_at = identity.expires_at().map_or(until, |t| t.min(until));
        let session = UiSession {
            id_sha256: session_hash(&id),
            credential: kept,
            subject: identity.subject().to_string(),
            created_at: now,
            expires_at,
        };
        self.atomically(|| {
            if let Some(previous) = previous {
                self.store.delete_ui_session(&session_hash(previous))?;
            }
            self.store.put_ui_session(&session)?;
            self.acting_as(identity.subject()).audit(
                now,
                "ui.sign_in",
                identity.subject(),
                "dashboard session opened",
            )
        })
        .map_err(plane_error)?;
        let operator = operator(identity, &id, expires_at);
        Ok((id, operator))
    }

    /// The operator of the session whose cookie id is `id`, its credential checked now.
    pub fn session(&self, id: &str, now: u64) -> Result<Operator, SessionError> {
        let plane_error = |e: PlaneError| SessionError::Refused(AuthError::Plane(e));
        let session = self
            .store
            .ui_session(&session_hash(id))
            .map_err(|e| plane_error(e.into()))?
            .filter(|s| s.expires_at > now)
            .ok_or(SessionError::Ended)?;
        // A row of another shape (written by an older binary, or altered) ends the session.
        let kept: SessionCredential =
            serde_json::from_str(&session.credential).map_err(|_| SessionError::Ended)?;
        let identity = self
            .verify_with_policy(now, |policy| kept.verify(&session.subject, policy, now))
            .map_err(|error| match error {
                AuthError::Plane(e) => SessionError::Refused(AuthError::Plane(e)),
                AuthError::Refused(_) => SessionError::Ended,
            })?;
        if !is_admin(&identity) {
            return Err(SessionError::Ended);
        }
        Ok(operator(identity, id, session.expires_at))
    }

    /// Ends a session (whether or not it still exists).
    pub fn sign_out(&self, id: &str, now: u64) -> Result<(), PlaneError> {
        self.store.delete_ui_session(&session_hash(id))?;
        self.audit(now, "ui.sign_out", &self.actor, "dashboard session closed")
    }

    /// Replaces an API key with a new one granting the same (subject, tenant, scopes,
    /// models, plan, expiry) and revokes the old one; the new key is returned once.
    pub fn rotate_api_key(&self, id: &str, now: u64) -> Result<CreatedApiKey, PlaneError> {
        // One transaction: a failure between the new key and the old one's revocation must
        // not leave two keys in force (or a new key nobody was shown).
        self.serialized(|| {
            let old = self
                .store
                .api_keys()?
                .into_iter()
                .find(|k| k.id == id)
                .ok_or_else(|| PlaneError::NotFound(format!("API key {id:?}")))?;
            if !old.in_force(now) {
                return Err(invalid(
                    "only a key in force is rotated; create a new key instead",
                ));
            }
            let created = self.create_api_key(
                &ApiKeyRequest {
                    subject: old.subject.clone(),
                    tenant: old.tenant.clone(),
                    scopes: old.scopes.clone(),
                    models: old.models.clone(),
                    plan: old.plan.clone(),
                    expires_at: old.expires_at,
                },
                now,
            )?;
            self.revoke(&Revocation::ApiKey(old.id.clone()), now)?;
            self.audit(
                now,
                "apikey.rotate",
                &old.id,
                &format!("replaced by {}", created.id),
            )?;
            Ok(created)
        })
    }

    /// Tokens still accepted or recently expired (issued no earlier than `since`... the
    /// newest `limit`), with what each grants.
    pub fn recent_tokens(
        &self,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<(IssuedToken, TokenGrants)>, PlaneError> {
        Ok(self
            .store
            .recent_tokens(live_after, limit)?
            .into_iter()
            .map(|(token, grants)| {
                let grants = grants
                    .and_then(|g| serde_json::from_str(&g).ok())
                    .unwrap_or_default();
                (token, grants)
            })
            .collect())
    }
}

fn operator(identity: Identity, id: &str, expires_at: u64) -> Operator {
    Operator {
        can_write: identity.has_scope(SCOPE_ADMIN_WRITE),
        identity,
        csrf: crypto::hex(&hmac_sha256::Hash::hash(format!("csrf:{id}").as_bytes())),
        expires_at,
    }
}

fn session_hash(id: &str) -> String {
    crypto::hex(&hmac_sha256::Hash::hash(id.as_bytes()))
}
