//! Tokens built by hand (HS256, so the header and claims are ours to shape) to check what
//! parsing and the claim rules refuse.

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};

use super::*;
use crate::auth::keys::VerificationKey;
use crate::config::Jwk;

const SECRET: [u8; 32] = [9; 32];
const NOW: u64 = 1_800_000_000;

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn token(header: &str, claims: &str) -> String {
    let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let mac = hmac_sha256::HMAC::mac(signed.as_bytes(), SECRET);
    format!("{signed}.{}", b64(&mac))
}

fn key() -> VerificationKey {
    VerificationKey::from_jwk(&Jwk {
        kty: "oct".into(),
        kid: None,
        alg: Some("HS256".into()),
        use_: None,
        crv: None,
        x: None,
        y: None,
        k: Some(b64(&SECRET)),
        allow_symmetric: true,
    })
    .unwrap()
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuers: Some(["https://issuer".to_string()].into()),
        audiences: Some(["gateway".to_string()].into()),
        clock_skew_seconds: 30,
    }
}

fn verify(token: &str) -> Result<Claims<crate::claims::TokenwardClaims>, SignatureError> {
    key().verify(token, &rules(), NOW)
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn claims(extra: &str) -> String {
    format!(
        r#"{{"iss":"https://issuer","aud":"gateway","sub":"alice","exp":{}{extra}}}"#,
        NOW + 60
    )
}

#[test]
fn a_well_formed_token_gives_its_claims_and_ignores_unknown_ones() {
    let verified =
        verify(&token(HS256, &claims(r#","scope":"chat models","x-other":[1,{}]"#))).unwrap();
    assert_eq!(verified.subject.as_deref(), Some("alice"));
    assert_eq!(verified.expires_at, Some(NOW + 60));
    assert_eq!(verified.custom.scope.as_deref(), Some("chat models"));
}

#[test]
fn an_audience_array_needs_one_accepted_member() {
    let ok = r#"{"iss":"https://issuer","aud":["other","gateway"],"sub":"a"}"#;
    assert!(verify(&token(HS256, ok)).is_ok());
    let none = r#"{"iss":"https://issuer","aud":["other"],"sub":"a"}"#;
    assert_eq!(
        verify(&token(HS256, none)).unwrap_err(),
        SignatureError::WrongAudience
    );
    let missing = r#"{"iss":"https://issuer","sub":"a"}"#;
    assert_eq!(
        verify(&token(HS256, missing)).unwrap_err(),
        SignatureError::WrongAudience
    );
    let no_issuer = r#"{"aud":"gateway","sub":"a"}"#;
    assert_eq!(
        verify(&token(HS256, no_issuer)).unwrap_err(),
        SignatureError::WrongIssuer
    );
}

#[test]
fn times_are_judged_with_the_clock_skew() {
    let at = |field: &str, t: u64| {
        verify(&token(
            HS256,
            &format!(r#"{{"iss":"https://issuer","aud":"gateway","sub":"a","{field}":{t}}}"#),
        ))
    };
    assert!(at("exp", NOW - 30).is_ok());
    assert_eq!(at("exp", NOW - 31).unwrap_err(), SignatureError::Expired);
    assert!(at("nbf", NOW + 30).is_ok());
    assert_eq!(at("nbf", NOW + 31).unwrap_err(), SignatureError::NotYetValid);
    assert!(at("iat", NOW + 30).is_ok());
    assert_eq!(
        at("iat", NOW + 31).unwrap_err(),
        SignatureError::IssuedInFuture
    );
    // A fraction of a second is dropped; a negative float is the epoch, a negative integer
    // or a string no time at all.
    let with = |exp: &str| {
        verify(&token(
            HS256,
            &format!(r#"{{"iss":"https://issuer","aud":"gateway","sub":"a","exp":{exp}}}"#),
        ))
    };
    assert_eq!(with(&format!("{}.9", NOW + 1)).unwrap().expires_at, Some(NOW + 1));
    assert_eq!(with("1.8e9").unwrap().expires_at, Some(1_800_000_000));
    assert_eq!(with("-5.0").unwrap_err(), SignatureError::Expired);
    assert_eq!(with("-5").unwrap_err(), SignatureError::Malformed);
    assert_eq!(with(r#""soon""#).unwrap_err(), SignatureError::Malformed);
    assert_eq!(with("null").unwrap().expires_at, None);
}

#[test]
fn what_parsing_refuses() {
    let good = token(HS256, &claims(""));
    assert!(verify(&good).is_ok());
    assert_eq!(
        verify(&format!("{good}.x")).unwrap_err(),
        SignatureError::Malformed
    );
    assert_eq!(verify("a.b").unwrap_err(), SignatureError::Malformed);
    assert_eq!(
        verify(&good.replacen('.', "=.", 1)).unwrap_err(),
        SignatureError::Malformed,
        "base64url without padding only"
    );
    assert_eq!(
        verify(&"a".repeat(MAX_TOKEN_LENGTH + 1)).unwrap_err(),
        SignatureError::TooLong
    );
    let long_header = format!(
        r#"{{"alg":"HS256","pad":"{}"}}"#,
        "x".repeat(MAX_HEADER_LENGTH)
    );
    assert_eq!(
        verify(&token(&long_header, &claims(""))).unwrap_err(),
        SignatureError::TooLong
    );
    // A critical extension tokenward does not know makes the token invalid (RFC 7515 §4.1.11).
    let crit = r#"{"alg":"HS256","crit":["exp"],"exp":1}"#;
    assert_eq!(
        verify(&token(crit, &claims(""))).unwrap_err(),
        SignatureError::Malformed
    );
    // `none`, or any algorithm but the key's, before any signature check.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims("").as_bytes())
    );
    assert_eq!(verify(&none).unwrap_err(), SignatureError::WrongAlgorithm);
    // Claims that are not a JSON object, and a duplicated claim.
    assert_eq!(
        verify(&token(HS256, "[1]")).unwrap_err(),
        SignatureError::Malformed
    );
    let twice = r#"{"iss":"https://issuer","aud":"gateway","sub":"a","sub":"b"}"#;
    assert_eq!(
        verify(&token(HS256, twice)).unwrap_err(),
        SignatureError::Malformed
    );
}

#[test]
fn a_changed_claim_breaks_the_signature() {
    let good = token(HS256, &claims(""));
    let forged = b64(claims(r#","plan":"unlimited""#).as_bytes());
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = &forged;
    assert_eq!(
        verify(&parts.join(".")).unwrap_err(),
        SignatureError::BadSignature
    );
}

#[test]
fn an_unknown_claim_or_header_that_is_not_json_is_refused() {
    // Invalid UTF-8 and a lone surrogate in claims tokenward does not read: the payload is
    // not JSON, whatever a struct reader would skip.
    let mut payload = claims("").into_bytes();
    payload.pop();
    payload.extend_from_slice(b",\"x\":[\"\xe7pt\"]}");
    let signed = format!("{}.{}", b64(HS256.as_bytes()), b64(&payload));
    let mac = hmac_sha256::HMAC::mac(signed.as_bytes(), SECRET);
    let bad_utf8 = format!("{signed}.{}", b64(&mac));
    assert_eq!(verify(&bad_utf8).unwrap_err(), SignatureError::Malformed);
    let surrogate = claims(r#","x":"\ud800""#);
    assert_eq!(verify(&token(HS256, &surrogate)).unwrap_err(), SignatureError::Malformed);
    let header = r#"{"alg":"HS256","x":"\ud800"}"#;
    assert_eq!(verify(&token(header, &claims(""))).unwrap_err(), SignatureError::Malformed);
}

#[test]
fn numeric_dates_read_as_serde_json_read_them() {
    let with = |exp: &str| {
        verify(&token(
            HS256,
            &format!(r#"{{"iss":"https://issuer","aud":"gateway","sub":"a","exp":{exp}}}"#),
        ))
    };
    // Past u64 an integer is a float, saturated; past f64 a number is no time at all.
    let huge = "1".repeat(30);
    assert_eq!(with(&huge).unwrap().expires_at, Some(u64::MAX));
    assert_eq!(with("1e400").unwrap_err(), SignatureError::Malformed);
    assert_eq!(with(&"9".repeat(400)).unwrap_err(), SignatureError::Malformed);
    // `-0` and an integer below i64 are floats: the epoch, long expired.
    assert_eq!(with("-0").unwrap_err(), SignatureError::Expired);
    assert_eq!(with("-9223372036854775809").unwrap_err(), SignatureError::Expired);
    assert_eq!(with("-9223372036854775808").unwrap_err(), SignatureError::Malformed);
    assert_eq!(with("[1]").unwrap_err(), SignatureError::Malformed);
}

#[test]
fn a_null_crit_is_no_extension_and_a_repeated_header_parameter_is_refused() {
    let null_crit = r#"{"alg":"HS256","crit":null}"#;
    assert!(verify(&token(null_crit, &claims(""))).is_ok());
    let twice = r#"{"alg":"HS256","typ":"JWT","typ":"JWT"}"#;
    assert_eq!(verify(&token(twice, &claims(""))).unwrap_err(), SignatureError::Malformed);
    let not_an_object = r#"["HS256"]"#;
    assert_eq!(
        verify(&token(not_an_object, &claims(""))).unwrap_err(),
        SignatureError::Malformed
    );
    let claims_twice = claims(r#","x":1,"x":2"#);
    assert_eq!(verify(&token(HS256, &claims_twice)).unwrap_err(), SignatureError::Malformed);
}
