use super::*;

fn ed25519_jwk(kp: &Ed25519KeyPair) -> Jwk {
    crate::testing::ed25519_jwk(kp, None)
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuers: ["iss".to_string()].into(),
        audiences: ["aud".to_string()].into(),
        clock_skew_seconds: 30,
    }
}

fn claims(valid: u64) -> JWTClaims<TokenwardClaims> {
    Claims::with_custom_claims(TokenwardClaims::default(), Duration::from_secs(valid))
        .with_issuer("iss")
        .with_audience("aud")
        .with_subject("alice")
}

#[test]
fn ed25519_round_trip_and_expiry() {
    let kp = Ed25519KeyPair::generate();
    let key = VerificationKey::from_jwk(&ed25519_jwk(&kp)).unwrap();
    let token = kp.sign(claims(60)).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    let verified = key.verify(&token, &rules(), now).unwrap();
    assert_eq!(verified.subject.as_deref(), Some("alice"));
    assert_eq!(
        key.verify(&token, &rules(), now + 60 + 31).unwrap_err(),
        SignatureError::Expired
    );
    assert!(key.verify(&token, &rules(), now + 60 + 29).is_ok());
}

#[test]
fn another_keys_signature_is_refused() {
    let kp = Ed25519KeyPair::generate();
    let other = Ed25519KeyPair::generate();
    let key = VerificationKey::from_jwk(&ed25519_jwk(&kp)).unwrap();
    let token = other.sign(claims(60)).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    assert_eq!(
        key.verify(&token, &rules(), now).unwrap_err(),
        SignatureError::BadSignature
    );
}

#[test]
fn wrong_issuer_and_audience_are_refused() {
    let kp = Ed25519KeyPair::generate();
    let key = VerificationKey::from_jwk(&ed25519_jwk(&kp)).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    let token = kp.sign(claims(60).with_issuer("evil")).unwrap();
    assert_eq!(
        key.verify(&token, &rules(), now).unwrap_err(),
        SignatureError::WrongIssuer
    );
    let token = kp.sign(claims(60).with_audience("other")).unwrap();
    assert_eq!(
        key.verify(&token, &rules(), now).unwrap_err(),
        SignatureError::WrongAudience
    );
}

#[test]
fn p256_jwk_is_accepted() {
    let kp = ES256KeyPair::generate();
    let point = kp.public_key().public_key().to_bytes_uncompressed();
    let jwk = Jwk {
        kty: "EC".into(),
        crv: Some("P-256".into()),
        x: Some(Base64UrlSafeNoPadding::encode_to_string(&point[1..33]).unwrap()),
        y: Some(Base64UrlSafeNoPadding::encode_to_string(&point[33..]).unwrap()),
        ..ed25519_jwk(&Ed25519KeyPair::generate())
    };
    let jwk = Jwk {
        alg: Some("ES256".into()),
        ..jwk
    };
    let key = VerificationKey::from_jwk(&jwk).unwrap();
    let token = kp.sign(claims(60)).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    assert!(key.verify(&token, &rules(), now).is_ok());
}

#[test]
fn hs256_needs_explicit_permission() {
    let jwk = Jwk {
        kty: "oct".into(),
        crv: None,
        x: None,
        alg: Some("HS256".into()),
        k: Some(Base64UrlSafeNoPadding::encode_to_string([7u8; 32]).unwrap()),
        ..ed25519_jwk(&Ed25519KeyPair::generate())
    };
    assert_eq!(
        VerificationKey::from_jwk(&jwk).unwrap_err(),
        KeyError::SymmetricNotAllowed
    );
    let jwk = Jwk {
        allow_symmetric: true,
        ..jwk
    };
    assert_eq!(
        VerificationKey::from_jwk(&jwk).unwrap().algorithm(),
        Algorithm::Hs256
    );
}

#[test]
fn mismatched_alg_is_refused() {
    let jwk = Jwk {
        alg: Some("ES256".into()),
        ..ed25519_jwk(&Ed25519KeyPair::generate())
    };
    assert!(matches!(
        VerificationKey::from_jwk(&jwk),
        Err(KeyError::AlgorithmMismatch { .. })
    ));
    let jwk = Jwk {
        kty: "RSA".into(),
        ..ed25519_jwk(&Ed25519KeyPair::generate())
    };
    assert!(matches!(
        VerificationKey::from_jwk(&jwk),
        Err(KeyError::Unsupported { .. })
    ));
}
