use super::*;
use crate::config::{Jwk, JwkSet};
use crate::identity::{credential_hash, fingerprint, CredentialKind, Jti};
use crate::policy::Policy;
use crate::testing::{ed25519_jwk, Fixture, NOW};
use jwt_simple::prelude::*;

pub(crate) fn identity(subject: &str) -> Identity {
    Identity::jwt(subject, None, None, Default::default(), None)
}

fn check(policy: &Policy, credential: &str, now: u64) -> Result<std::sync::Arc<Identity>, Refusal> {
    let mut cache = VerifiedTokenCache::new(16);
    authenticate(
        &policy.credentials,
        &mut cache,
        credential,
        now,
    )
}

fn code(result: Result<std::sync::Arc<Identity>, Refusal>) -> ErrorCode {
    result.unwrap_err().code
}

#[test]
fn valid_jwt_gives_its_identity() {
    let fx = Fixture::new();
    let identity = check(&fx.policy(), &fx.token(), NOW + 1).unwrap();
    assert_eq!(identity.subject(), "alice");
    assert_eq!(identity.grants.tenant.as_deref(), Some("acme"));
    assert_eq!(identity.grants.scopes, ["chat".to_string()]);
    assert!(identity.may_use_model("gpt-4o-mini"));
    assert!(!identity.may_use_model("o1"));
    assert_eq!(
        identity.kind(),
        CredentialKind::Jwt {
            jti: Some(Jti::new("jti-1")),
            kid: None
        }
    );
}

#[test]
fn expiry_honours_the_clock_skew_exactly() {
    let fx = Fixture::new();
    let policy = fx.policy();
    let token = fx.sign(fx.claims(100));
    // exp = NOW + 100, skew 30: valid through NOW + 130, expired from NOW + 131.
    assert!(check(&policy, &token, NOW + 130).is_ok());
    assert_eq!(
        code(check(&policy, &token, NOW + 131)),
        ErrorCode::TokenExpired
    );
}

#[test]
fn not_yet_valid_is_refused_beyond_the_skew() {
    let fx = Fixture::new();
    let policy = fx.policy();
    let token = fx.token();
    assert!(check(&policy, &token, NOW - 30).is_ok());
    assert_eq!(
        code(check(&policy, &token, NOW - 31)),
        ErrorCode::InvalidToken
    );
}

#[test]
fn lifetime_above_the_maximum_is_refused() {
    let fx = Fixture::new();
    let token = fx.sign(fx.claims(3601));
    let refusal = check(&fx.policy(), &token, NOW).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::InvalidToken);
    assert!(refusal.message.contains("lifetime"));
}

#[test]
fn token_without_exp_or_sub_is_refused() {
    let fx = Fixture::new();
    let mut claims = fx.claims(60);
    claims.expires_at = None;
    assert!(check(&fx.policy(), &fx.sign(claims), NOW)
        .unwrap_err()
        .message
        .contains("exp"));
    let mut claims = fx.claims(60);
    claims.subject = None;
    assert!(check(&fx.policy(), &fx.sign(claims), NOW)
        .unwrap_err()
        .message
        .contains("sub"));
}

#[test]
fn alg_none_and_garbage_are_refused() {
    let fx = Fixture::new();
    let token = fx.token();
    let payload = token.split('.').nth(1).unwrap();
    let header = Base64UrlSafeNoPadding::encode_to_string(r#"{"alg":"none","typ":"JWT"}"#).unwrap();
    let unsigned = format!("{header}.{payload}.");
    assert_eq!(
        code(check(&fx.policy(), &unsigned, NOW)),
        ErrorCode::InvalidToken
    );
    assert_eq!(
        code(check(&fx.policy(), "sk-not-ours", NOW)),
        ErrorCode::InvalidToken
    );
    assert_eq!(
        code(check(&fx.policy(), "a.b.c", NOW)),
        ErrorCode::InvalidToken
    );
}

#[test]
fn hmac_signed_with_the_public_key_is_refused() {
    // Algorithm confusion: an attacker signs HS256 with the public key bytes as secret.
    let fx = Fixture::new();
    let public = fx.key.public_key().to_bytes();
    let forged = HS256Key::from_bytes(&public)
        .authenticate(fx.claims(60))
        .unwrap();
    let refusal = check(&fx.policy(), &forged, NOW).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::InvalidToken);
    assert!(refusal.message.contains("algorithm"));
}

#[test]
fn two_keys_need_kids_and_each_verifies_its_own() {
    let mut fx = Fixture::new();
    let second = Ed25519KeyPair::generate().with_key_id("k2");
    let first = Ed25519KeyPair::from_bytes(&fx.key.to_bytes())
        .unwrap()
        .with_key_id("k1");
    fx.config.keys = JwkSet {
        keys: vec![
            ed25519_jwk(&fx.key, Some("k1")),
            ed25519_jwk(&second, Some("k2")),
        ],
    };
    let policy = fx.policy();
    let t1 = first.sign(fx.claims(60)).unwrap();
    let t2 = second.sign(fx.claims(60)).unwrap();
    assert!(check(&policy, &t1, NOW).is_ok());
    assert!(check(&policy, &t2, NOW).is_ok());
    // No kid with several keys: refused, not tried against each.
    let anonymous = fx.sign(fx.claims(60));
    assert!(check(&policy, &anonymous, NOW)
        .unwrap_err()
        .message
        .contains("kid"));
    // Right kid, wrong key.
    let liar = Ed25519KeyPair::generate()
        .with_key_id("k1")
        .sign(fx.claims(60))
        .unwrap();
    assert_eq!(code(check(&policy, &liar, NOW)), ErrorCode::InvalidToken);
    let unknown = Ed25519KeyPair::generate()
        .with_key_id("k9")
        .sign(fx.claims(60))
        .unwrap();
    assert!(check(&policy, &unknown, NOW)
        .unwrap_err()
        .message
        .contains("unknown key"));
}

#[test]
fn revocation_applies_to_cached_identities_too() {
    let mut fx = Fixture::new();
    let token = fx.token();
    let mut cache = VerifiedTokenCache::new(16);
    assert!(authenticate(&fx.policy().credentials, &mut cache, &token, NOW).is_ok());
    assert_eq!(cache.len(), 1);
    fx.config.revocations.jtis.push(crate::config::RevokedJti {
        jti: "jti-1".into(),
        expires_at: NOW + 600,
    });
    let refusal = authenticate(&fx.policy().credentials, &mut cache, &token, NOW).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::TokenRevoked);
}

#[test]
fn a_minted_jti_is_revoked_cached_or_not() {
    // The control plane mints 32 lowercase hex digits, which identities keep as 16 bytes.
    let minted = "0123456789abcdef0f1e2d3c4b5a6978";
    let mut fx = Fixture::new();
    let mut claims = fx.claims(60);
    claims.jwt_id = Some(minted.into());
    let token = fx.sign(claims);
    let mut cache = VerifiedTokenCache::new(16);
    let identity = authenticate(&fx.policy().credentials, &mut cache, &token, NOW).unwrap();
    assert_eq!(identity.jti().unwrap().to_string(), minted);
    let revoke = |fx: &mut Fixture, jti: &str| {
        fx.config.revocations.jtis = vec![crate::config::RevokedJti {
            jti: jti.into(),
            expires_at: NOW + 600,
        }];
    };
    // Another id, or this one in capitals, is not this token's.
    for other in [&minted.to_ascii_uppercase(), "0123456789abcdef0f1e2d3c4b5a6979"] {
        revoke(&mut fx, other);
        assert!(authenticate(&fx.policy().credentials, &mut cache, &token, NOW).is_ok());
    }
    revoke(&mut fx, minted);
    let refusal = authenticate(&fx.policy().credentials, &mut cache, &token, NOW).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::TokenRevoked);
    let mut fresh = VerifiedTokenCache::new(16);
    let refusal = authenticate(&fx.policy().credentials, &mut fresh, &token, NOW).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::TokenRevoked);
}

#[test]
fn revocation_by_subject_and_by_key_id() {
    let mut fx = Fixture::new();
    fx.config.revocations.subjects.push("alice".into());
    assert_eq!(
        code(check(&fx.policy(), &fx.token(), NOW)),
        ErrorCode::TokenRevoked
    );

    let mut fx = Fixture::new();
    fx.config.keys = JwkSet {
        keys: vec![Jwk {
            kid: Some("old".into()),
            ..ed25519_jwk(&fx.key, None)
        }],
    };
    fx.config.revocations.key_ids.push("old".into());
    let key = Ed25519KeyPair::from_bytes(&fx.key.to_bytes())
        .unwrap()
        .with_key_id("old");
    let token = key.sign(fx.claims(60)).unwrap();
    assert_eq!(
        code(check(&fx.policy(), &token, NOW)),
        ErrorCode::TokenRevoked
    );
    // With a single key, a token without `kid` is verified by it: revoking that key's kid
    // must refuse it too.
    let anonymous = fx.sign(fx.claims(60));
    assert_eq!(
        code(check(&fx.policy(), &anonymous, NOW)),
        ErrorCode::TokenRevoked
    );
}

#[test]
fn cache_serves_a_repeat_without_verifying_and_stops_at_expiry() {
    let fx = Fixture::new();
    let policy = fx.policy();
    let token = fx.sign(fx.claims(100));
    let mut cache = VerifiedTokenCache::new(16);
    authenticate(&policy.credentials, &mut cache, &token, NOW).unwrap();
    // A cache hit needs no key: prove it by verifying against a policy without keys.
    let mut keyless = Fixture::new();
    keyless.config.keys.keys.clear();
    let keyless = keyless.policy();
    assert!(authenticate(&keyless.credentials, &mut cache, &token, NOW + 130).is_ok());
    assert_eq!(
        authenticate(&keyless.credentials, &mut cache, &token, NOW + 131)
            .unwrap_err()
            .code,
        ErrorCode::InvalidToken
    );
}

#[test]
fn api_keys_are_checked_for_checksum_presence_and_expiry() {
    let mut fx = Fixture::new();
    let key = fx.add_api_key("svc", &["chat"], &["gpt-*"]);
    let identity = check(&fx.policy(), &key, NOW).unwrap();
    assert_eq!(identity.subject(), "svc");
    assert_eq!(identity.kind(), CredentialKind::ApiKey { id: "key-svc" });

    let mut corrupted = key.clone().into_bytes();
    corrupted[10] = if corrupted[10] == b'x' { b'y' } else { b'x' };
    let refusal = check(&fx.policy(), std::str::from_utf8(&corrupted).unwrap(), NOW).unwrap_err();
    assert_eq!(refusal.code, ErrorCode::InvalidApiKey);
    assert!(refusal.message.contains("checksum"));

    let stranger = crate::auth::apikey::new_api_key(|| 99);
    assert!(check(&fx.policy(), &stranger, NOW)
        .unwrap_err()
        .message
        .contains("not recognised"));

    fx.config.api_keys[0].expires_at = Some(NOW - 1);
    assert!(check(&fx.policy(), &key, NOW)
        .unwrap_err()
        .message
        .contains("expired"));
}

#[test]
fn fingerprint_is_short_and_not_the_token() {
    let token = "secret-token-value";
    let fp = fingerprint(&credential_hash(token));
    assert_eq!(fp.len(), 12);
    assert!(!token.contains(&fp));
}

#[test]
fn credential_hash_is_plain_sha256() {
    // Operators and the control plane compute API key hashes with any SHA-256 tool.
    let hex: String = credential_hash("abc")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn the_cache_key_is_blake3_and_never_the_sha256_operators_see() {
    // The published BLAKE3 test value of "abc": any other hash here would still work, but a
    // change of it should be deliberate (and is cheap only if it stays this fast in Wasm).
    let hex: String = crate::identity::cache_key("abc")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
    assert_ne!(crate::identity::cache_key("abc"), credential_hash("abc"));
}
