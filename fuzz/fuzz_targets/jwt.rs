//! JWT and API key authentication (`token::authenticate`) against a fixed policy whose keys
//! the harness holds, so a wrong accept is detectable. The input describes a token: a mode
//! byte, then `header JSON \n payload JSON \n tail`. Bits 0-2 of the mode say how the
//! harness signs header and payload (correctly, with a key the policy trusts for another
//! kid, with a public key as an HMAC secret, unsigned...), bit 3 picks the single-key policy;
//! the tail is then applied as byte edits to the token. The one property: whatever
//! authenticates was correctly signed by the key its kid names, is byte-for-byte what was
//! signed (up to the signature's encoding), and carries the claims the policy demands.
//! Mode 0 hands the whole rest to `authenticate` as is: then only the fixture's API key may
//! pass.
#![no_main]

use ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokenward_filter::auth::cache::VerifiedTokenCache;
use tokenward_filter::identity::{CredentialKind, Identity};
use tokenward_filter::auth::token::authenticate;
use tokenward_fuzz::jwt_fixture::*;

thread_local! {
    static FIXTURE: Option<JwtFixture> = JwtFixture::new();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// The input is the credential itself.
    Raw,
    Ed25519,
    Hs256,
    /// HS256 keyed with the Ed25519 public key: algorithm confusion.
    HmacWithEd25519Public,
    /// HS256 keyed with the P-256 public key (SEC1): algorithm confusion.
    HmacWithP256Public,
    /// `header.payload.` (what `alg: none` tokens look like).
    EmptySignature,
    /// The tail is the signature, unedited.
    FuzzerSignature,
    /// `header.payload`, two segments.
    TwoSegments,
}

const SIGNINGS: [Signing; 8] = [
    Signing::Raw,
    Signing::Ed25519,
    Signing::Hs256,
    Signing::HmacWithEd25519Public,
    Signing::HmacWithP256Public,
    Signing::EmptySignature,
    Signing::FuzzerSignature,
    Signing::TwoSegments,
];

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap_or_default()
}

/// Edits of three bytes each: a position (u16, modulo the length) and a byte; byte 0 deletes.
fn edit(token: &mut Vec<u8>, tail: &[u8]) {
    for op in tail.chunks_exact(3) {
        if token.is_empty() {
            return;
        }
        let at = usize::from(u16::from_le_bytes([op[0], op[1]])) % token.len();
        match op[2] {
            0 => {
                token.remove(at);
            }
            byte => token[at] = byte,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|fixture| {
        let Some(fixture) = fixture else {
            // Fails every run loudly rather than fuzzing nothing.
            panic!("the jwt fixture does not compile");
        };
        run(fixture, data);
    });
});

fn run(fixture: &JwtFixture, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let signing = SIGNINGS[usize::from(mode & 7)];
    let single = mode & 8 != 0;
    let policy = if single {
        &fixture.single_key
    } else {
        &fixture.multi_key
    };

    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let header = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();
    let tail = parts.next().unwrap_or_default();
    let signed_input = format!("{}.{}", b64(header), b64(payload));
    let signature: Option<Vec<u8>> = match signing {
        Signing::Raw | Signing::TwoSegments => None,
        Signing::Ed25519 => Some(
            fixture
                .ed25519
                .sk
                .sign(signed_input.as_bytes(), None)
                .to_vec(),
        ),
        Signing::Hs256 => Some(hmac(&fixture.hs256_secret, &signed_input)),
        Signing::HmacWithEd25519Public => Some(hmac(fixture.ed25519.pk.as_ref(), &signed_input)),
        Signing::HmacWithP256Public => Some(hmac(&fixture.p256_public, &signed_input)),
        Signing::EmptySignature => Some(Vec::new()),
        Signing::FuzzerSignature => Some(tail.to_vec()),
    };
    let token = match (signing, &signature) {
        (Signing::Raw, _) => rest.to_vec(),
        (Signing::TwoSegments, _) => signed_input.clone().into_bytes(),
        (_, Some(signature)) => format!("{signed_input}.{}", b64(signature)).into_bytes(),
        (_, None) => return,
    };
    let mut token = token;
    if !matches!(signing, Signing::Raw | Signing::FuzzerSignature) {
        edit(&mut token, tail);
    }
    let token = String::from_utf8_lossy(&token);

    let mut cache = VerifiedTokenCache::new(4);
    let first = authenticate(&policy.credentials, &mut cache, &token, NOW);
    // A second look goes through the cache: it must say the same.
    let second = authenticate(&policy.credentials, &mut cache, &token, NOW);
    assert_eq!(
        first.as_ref().map(|i| (**i).clone()).map_err(|r| r.code),
        second.as_ref().map(|i| (**i).clone()).map_err(|r| r.code),
        "the cache changed the verdict"
    );
    let Ok(identity) = first else {
        return;
    };
    assert!(
        identity.subject() != REVOKED_SUBJECT,
        "a revoked subject passed"
    );
    match identity.kind() {
        CredentialKind::ApiKey { .. } => {
            assert_eq!(
                *token, fixture.api_key,
                "an API key other than the fixture's passed"
            );
            assert_eq!(identity.subject(), API_KEY_SUBJECT);
        }
        CredentialKind::Jwt { jti, kid } => {
            assert!(jti.is_none_or(|j| j != REVOKED_JTI), "a revoked jti passed");
            // Signed by the key the policy holds under the kid that verified it, with that
            // key's own algorithm.
            let expected_kid = match (signing, single) {
                (Signing::Ed25519, true) => None,
                (Signing::Ed25519, false) => Some("ed"),
                (Signing::Hs256, false) => Some("hs"),
                _ => panic!("{signing:?} (single key: {single}) authenticated as kid {kid:?}"),
            };
            assert_eq!(kid, expected_kid, "verified under the wrong key");
            let (input, sig) = token.rsplit_once('.').unwrap_or_default();
            assert_eq!(input, signed_input, "an edited header or payload passed");
            let decoded = Base64UrlSafeNoPadding::decode_to_vec(sig, None).ok();
            assert_eq!(decoded, signature, "an edited signature passed");
            check_claims(&identity, payload);
        }
    }
}

fn hmac(key: &[u8], input: &str) -> Vec<u8> {
    hmac_sha256::HMAC::mac(input.as_bytes(), key).to_vec()
}

/// A NumericDate as the filter reads it (auth/jws.rs): whole seconds, a fraction dropped, a
/// negative float as 0. Capped at 2^32 - 1 as jwt-simple once read it: no accepted token has
/// a later `exp` (past any lifetime limit), so the cap never decides.
fn timestamp(value: &Value) -> Option<u64> {
    const LAST: u64 = u32::MAX as u64;
    match value {
        Value::Number(n) if n.is_f64() => n.as_f64().map(|f| (f as u64).min(LAST)),
        Value::Number(n) => n.as_u64().map(|s| s.min(LAST)),
        _ => None,
    }
}

/// The claims of an accepted token, read independently of jwt-simple, meet the policy.
fn check_claims(identity: &Identity, payload: &[u8]) {
    let claims: Value = match serde_json::from_slice(payload) {
        Ok(claims) => claims,
        Err(e) => panic!("accepted a payload that is not JSON: {e}"),
    };
    assert_eq!(claims["iss"], ISSUER, "issuer");
    assert_eq!(
        claims["sub"].as_str(),
        Some(identity.subject()),
        "subject"
    );
    assert!(!identity.subject().is_empty(), "empty subject");
    let audience_ok = match &claims["aud"] {
        Value::String(aud) => aud == AUDIENCE,
        Value::Array(auds) => auds.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    assert!(audience_ok, "audience {:?}", claims["aud"]);
    let exp = timestamp(&claims["exp"]);
    assert_eq!(exp, identity.expires_at(), "exp");
    let exp = exp.unwrap_or(0);
    assert!(
        NOW <= exp.saturating_add(CLOCK_SKEW),
        "expired token passed"
    );
    // An explicit null is an absent claim to serde, as it is here.
    let present = |name: &str| claims.get(name).filter(|v| !v.is_null());
    if let Some(nbf) = present("nbf") {
        let nbf = timestamp(nbf).unwrap_or(u64::MAX);
        assert!(
            nbf <= NOW.saturating_add(CLOCK_SKEW),
            "token not valid yet passed"
        );
    }
    let issued = match present("iat") {
        Some(iat) => timestamp(iat).unwrap_or(u64::MAX),
        None => NOW,
    };
    assert!(
        issued <= NOW.saturating_add(CLOCK_SKEW),
        "token from the future passed"
    );
    assert!(
        exp.saturating_sub(issued) <= MAX_LIFETIME,
        "lifetime above the maximum passed"
    );
}
