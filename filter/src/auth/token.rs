//! Who is calling: turns a credential string into a verified `Identity`, through the
//! per-worker cache, the API key table or a JWT signature check, then applies revocation.
//! Authorization (scopes, models) is the request flow's business.

use std::sync::Arc;

use crate::auth::apikey;
use crate::auth::cache::VerifiedTokenCache;
use crate::error::{ErrorCode, Refusal};
use crate::identity::{self, CredentialHash, Grants, Identity};
use crate::auth::keys::{Jws, SignatureError};
use crate::auth::credentials::Credentials;

/// Verifies `credential` (JWT or API key) at time `now`, using and filling `cache`, and
/// refuses a revoked one. The returned identity is safe to authorize.
pub fn authenticate(
    policy: &Credentials,
    cache: &mut VerifiedTokenCache,
    credential: &str,
    now: u64,
) -> Result<Arc<Identity>, Refusal> {
    let key = identity::cache_key(credential);
    let identity = match cache.get(&key, now) {
        Some(identity) => identity,
        None => verify(policy, cache, credential, &key, now)?,
    };
    unless_revoked(policy, identity)
}

/// A credential the cache does not hold (`key` is its `identity::cache_key`): the API key
/// lookup or the JWT signature check, the expensive part a guard must run before. Fills
/// `cache`; revocation is not checked here.
pub fn verify(
    policy: &Credentials,
    cache: &mut VerifiedTokenCache,
    credential: &str,
    key: &CredentialHash,
    now: u64,
) -> Result<Arc<Identity>, Refusal> {
    if apikey::looks_like_api_key(credential) {
        return api_key_identity(policy, credential, now);
    }
    let (identity, valid_until) = verify_jwt(policy, cache, credential, now)?;
    let identity = Arc::new(identity);
    cache.insert(*key, Arc::clone(&identity), valid_until);
    Ok(identity)
}

/// Refuses an identity whose `jti`, subject or key is revoked: on every request, cached or not.
pub fn unless_revoked(
    policy: &Credentials,
    identity: Arc<Identity>,
) -> Result<Arc<Identity>, Refusal> {
    if policy.revocations.revokes(&identity) {
        return Err(Refusal::new(
            ErrorCode::TokenRevoked,
            "credential has been revoked",
        ));
    }
    Ok(identity)
}

fn api_key_identity(
    policy: &Credentials,
    key: &str,
    now: u64,
) -> Result<Arc<Identity>, Refusal> {
    let invalid = |message: &str| Refusal::new(ErrorCode::InvalidApiKey, message);
    if !apikey::checksum_is_valid(key) {
        return Err(invalid("API key is malformed (bad length or checksum)"));
    }
    let identity = policy
        .api_key(&identity::credential_hash(key))
        .ok_or_else(|| invalid("API key is not recognised"))?;
    if identity.expires_at().is_some_and(|exp| now > exp) {
        return Err(invalid("API key has expired"));
    }
    Ok(identity)
}

/// Verifies a JWT; returns the identity and until when it may be cached.
fn verify_jwt(
    policy: &Credentials,
    cache: &mut VerifiedTokenCache,
    token: &str,
    now: u64,
) -> Result<(Identity, u64), Refusal> {
    let invalid = |message: &str| Refusal::new(ErrorCode::InvalidToken, message);
    let jws = Jws::parse(token).map_err(|e| match e {
        SignatureError::TooLong => invalid("token is too long"),
        _ => invalid("credential is neither a tokenward JWT nor a tokenward API key"),
    })?;
    let kid = jws.header.kid.as_deref();
    let (key_id, key) = policy.key_for(kid).ok_or_else(|| match kid {
        Some(_) => invalid("token is signed with an unknown key"),
        None => invalid("token has no \"kid\" and several keys are configured"),
    })?;
    // The key fixes the algorithm: a token may not choose it (no `none`, no confusion
    // between a public key and an HMAC secret).
    let claims = key
        .verify_with::<crate::claims::TokenwardClaims>(&jws, &policy.claim_rules, now)
        .map_err(|e| match e {
            SignatureError::Expired => Refusal::new(ErrorCode::TokenExpired, e.to_string()),
            _ => invalid(&e.to_string()),
        })?;
    let exp = claims
        .expires_at
        .ok_or_else(|| invalid("token has no \"exp\""))?;
    let issued = claims.issued_at.unwrap_or(now);
    if exp.saturating_sub(issued) > policy.max_token_lifetime_seconds {
        return Err(invalid("token lifetime exceeds the allowed maximum"));
    }
    let subject = claims
        .subject
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("token has no \"sub\""))?;
    let custom = claims.custom;
    let identity = Identity::jwt(
        &subject,
        claims.jwt_id.as_deref(),
        key_id.map(|kid| cache.intern_key_id(kid)),
        cache.intern_grants(Grants {
            scopes: custom.scopes().map(str::to_string).collect(),
            tenant: custom.tenant,
            models: custom.models,
            plan: custom.plan,
        }),
        Some(exp),
    );
    Ok((
        identity,
        exp.saturating_add(policy.claim_rules.clock_skew_seconds),
    ))
}

#[cfg(test)]
pub(crate) mod tests;
