//! What the dashboard (`crate::ui`) needs of the control plane beyond the admin API's
//! operations: sessions opened with an admin credential, and an API key's rotation. A
//! session keeps the credential sealed under the master key and verifies it again on every
//! page, so revoking or expiring that credential ends the session on every replica.

use super::*;
use crate::store::UiSession;

/// The longest a dashboard session lasts (shorter when its credential expires sooner).
pub const UI_SESSION_TTL: u64 = 8 * 3600;
const SESSION_CONTEXT: &str = "ui-session";

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

impl<S: Store + ?Sized> ControlPlane<S> {
    /// Opens a session for an admin credential: the cookie's id (returned once) and who.
    pub fn sign_in(&self, credential: &str, now: u64) -> Result<(String, Operator), SessionError> {
        let identity = self
            .authenticate(credential, now)
            .map_err(SessionError::Refused)?;
        if !identity.has_scope(SCOPE_ADMIN_READ) && !identity.has_scope(SCOPE_ADMIN_WRITE) {
            return Err(SessionError::NotAnAdmin);
        }
        let plane_error = |e: PlaneError| SessionError::Refused(AuthError::Plane(e));
        let id = crypto::random_hex(32).map_err(|e| plane_error(e.into()))?;
        let sealed = self
            .master
            .seal(SESSION_CONTEXT, credential.as_bytes())
            .map_err(|e| plane_error(e.into()))?;
        let expires_at = identity
            .expires_at
            .map_or(now + UI_SESSION_TTL, |t| t.min(now + UI_SESSION_TTL));
        let session = UiSession {
            id_sha256: session_hash(&id),
            credential_sealed: crypto::hex(&sealed),
            subject: identity.subject.clone(),
            created_at: now,
            expires_at,
        };
        self.store
            .put_ui_session(&session)
            .map_err(|e| plane_error(e.into()))?;
        self.acting_as(&identity.subject)
            .audit(
                now,
                "ui.sign_in",
                &identity.subject,
                "dashboard session opened",
            )
            .map_err(plane_error)?;
        let operator = operator(identity, &id, expires_at);
        Ok((id, operator))
    }

    /// The operator of the session whose cookie id is `id`, its credential verified now.
    pub fn session(&self, id: &str, now: u64) -> Result<Operator, SessionError> {
        let plane_error = |e: PlaneError| SessionError::Refused(AuthError::Plane(e));
        let session = self
            .store
            .ui_session(&session_hash(id))
            .map_err(|e| plane_error(e.into()))?
            .filter(|s| s.expires_at > now)
            .ok_or(SessionError::Ended)?;
        let sealed = crypto::unhex(&session.credential_sealed).ok_or(SessionError::Ended)?;
        let credential = self
            .master
            .open(SESSION_CONTEXT, &sealed)
            .map_err(|_| SessionError::Ended)?;
        let credential = String::from_utf8(credential).map_err(|_| SessionError::Ended)?;
        let identity = self
            .authenticate(&credential, now)
            .map_err(|_| SessionError::Ended)?;
        if !identity.has_scope(SCOPE_ADMIN_READ) && !identity.has_scope(SCOPE_ADMIN_WRITE) {
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
