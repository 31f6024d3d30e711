use jwt_simple::prelude::*;
use jwt_simple::prelude::Claims;

use super::*;

fn ed25519_jwk(kp: &Ed25519KeyPair) -> Jwk {
    crate::testing::ed25519_jwk(kp, None)
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuers: Some(["iss".to_string()].into()),
        audiences: Some(["aud".to_string()].into()),
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
    // Another P-256 key's signature, and a signature cut short, are refused.
    let forged = ES256KeyPair::generate().sign(claims(60)).unwrap();
    assert_eq!(
        key.verify(&forged, &rules(), now).unwrap_err(),
        SignatureError::BadSignature
    );
    let cut = &token[..token.len() - 4];
    assert!(key.verify(cut, &rules(), now).is_err());
    // A point off the curve is no key.
    let off_curve = Jwk {
        y: Some(Base64UrlSafeNoPadding::encode_to_string([1u8; 32]).unwrap()),
        ..jwk
    };
    assert!(matches!(
        VerificationKey::from_jwk(&off_curve),
        Err(KeyError::InvalidKey(_))
    ));
}

#[test]
fn hs256_verifies_its_own_mac_only() {
    let secret = [7u8; 32];
    let jwk = Jwk {
        kty: "oct".into(),
        crv: None,
        x: None,
        alg: Some("HS256".into()),
        k: Some(Base64UrlSafeNoPadding::encode_to_string(secret).unwrap()),
        allow_symmetric: true,
        ..ed25519_jwk(&Ed25519KeyPair::generate())
    };
    let key = VerificationKey::from_jwk(&jwk).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    let token = HS256Key::from_bytes(&secret).authenticate(claims(60)).unwrap();
    assert_eq!(
        key.verify(&token, &rules(), now).unwrap().subject.as_deref(),
        Some("alice")
    );
    let other = HS256Key::from_bytes(&[8u8; 32]).authenticate(claims(60)).unwrap();
    assert_eq!(
        key.verify(&other, &rules(), now).unwrap_err(),
        SignatureError::BadSignature
    );
}

#[test]
fn a_token_naming_another_algorithm_than_its_key_is_refused() {
    // An HS256 token whose MAC key is an Ed25519 public key (the classic confusion).
    let kp = Ed25519KeyPair::generate();
    let key = VerificationKey::from_jwk(&ed25519_jwk(&kp)).unwrap();
    let public = kp.public_key().to_bytes();
    let token = HS256Key::from_bytes(&public).authenticate(claims(60)).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    assert_eq!(
        key.verify(&token, &rules(), now).unwrap_err(),
        SignatureError::WrongAlgorithm
    );
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

fn ed25519_jwk_with_x(x: &[u8]) -> Jwk {
    use ct_codecs::Encoder;
    Jwk {
        x: Some(ct_codecs::Base64UrlSafeNoPadding::encode_to_string(x).unwrap()),
        ..ed25519_jwk(&Ed25519KeyPair::generate())
    }
}

#[test]
fn an_ed25519_key_that_is_short_not_a_point_or_weak_is_refused_at_load() {
    let refused = |x: &[u8]| match VerificationKey::from_jwk(&ed25519_jwk_with_x(x)) {
        Err(KeyError::InvalidKey(why)) => why,
        other => panic!("{x:?} loaded: {other:?}"),
    };
    assert_eq!(refused(&[9; 31]), "an Ed25519 key is 32 bytes");
    // y = 2 is not on the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert_eq!(refused(&not_a_point), "not an Ed25519 point");
    // The identity (y = 1) has order 1: any signature with s = 0 and R = identity verifies
    // for any message under it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(refused(&identity), "a weak (small-order) Ed25519 key");
}

#[test]
fn an_ed25519_signature_with_a_non_canonical_s_is_refused() {
    use ct_codecs::Encoder;
    let kp = Ed25519KeyPair::generate();
    let key = VerificationKey::from_jwk(&ed25519_jwk(&kp)).unwrap();
    let token = kp.sign(claims(60)).unwrap();
    let now = Clock::now_since_epoch().as_secs();
    assert!(key.verify(&token, &rules(), now).is_ok());
    // s + L is the same scalar mod L: accepting it would make every token malleable (two
    // spellings of one signature, two cache entries, two jtis' worth of tries).
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut sig = Base64UrlSafeNoPadding::decode_to_vec(signature, None).unwrap();
    let mut carry = 0u16;
    for (byte, l) in sig[32..].iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "s + L fits in 32 bytes (s < L < 2^253)");
    let malleated = format!(
        "{signed}.{}",
        Base64UrlSafeNoPadding::encode_to_string(&sig).unwrap()
    );
    assert_eq!(
        key.verify(&malleated, &rules(), now).unwrap_err(),
        SignatureError::BadSignature
    );
}
