//! Who a verified caller is, and the hash a credential is known by: the leaf every room that
//! authenticates, authorizes, caches or counts shares. No logic beyond the caller's own
//! rules (scopes, model patterns).

use std::sync::Arc;

/// A credential's 32-byte digest: its SHA-256 (`credential_hash`: the API key lookup key and
/// the fingerprint) or its BLAKE3 (`cache_key`: the verified-token cache's key).
pub type CredentialHash = [u8; 32];

/// What kind of credential an identity came from, with the ids revocation looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKind {
    Jwt {
        /// The token's own: never shared, so boxed rather than interned.
        jti: Option<Box<str>>,
        kid: Option<Arc<str>>,
    },
    ApiKey {
        id: Arc<str>,
    },
}

/// A verified caller. A worker caches up to `cache.max_entries` of them, so what many of
/// them repeat is shared (`VerifiedTokenCache` interns the subject, key id and grants of a
/// verified JWT), and the rest is kept without a `String`'s spare capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: CredentialKind,
    pub subject: Arc<str>,
    pub grants: Arc<Grants>,
    /// Unix seconds; `None` for an API key without expiry.
    pub expires_at: Option<u64>,
}

/// What a credential grants and where its use is counted: the part of an identity that the
/// credentials issued alike (one tenant, plan and set of scopes and models) have in common.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Grants {
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    /// Model patterns; `None` allows no model.
    pub models: Option<Vec<String>>,
    pub plan: Option<String>,
}

impl Identity {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.grants.scopes.iter().any(|s| s == scope)
    }

    pub fn may_use_model(&self, model: &str) -> bool {
        self.grants.models.as_ref().is_some_and(|patterns| {
            patterns
                .iter()
                .any(|p| crate::model::pattern_matches(p, model))
        })
    }
}

/// SHA-256 of a credential: the API key lookup key (operators and the control plane compute
/// it with any SHA-256 tool) and what `fingerprint` shortens. Off the cached path.
pub fn credential_hash(credential: &str) -> CredentialHash {
    hmac_sha256::Hash::hash(credential.as_bytes())
}

/// BLAKE3 of a credential: the key a verified token is cached by, computed on every request.
/// Any 256-bit collision-resistant hash would do; this one is the cheapest in Wasm. Nothing
/// outside a worker ever sees it.
pub fn cache_key(credential: &str) -> CredentialHash {
    *blake3::hash(credential.as_bytes()).as_bytes()
}

/// A short, non-reversible name for a credential, safe for logs.
pub fn fingerprint(hash: &CredentialHash) -> String {
    hash[..6].iter().map(|b| format!("{b:02x}")).collect()
}
