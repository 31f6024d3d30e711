//! Credential rules in a real Envoy: revocation, key rotation with kids, expiry at the skew
//! boundary, ambiguity, and a non-UTF-8 header that must not hurt the VM.

use tokenward_e2e::client::bearer;
use tokenward_e2e::setup::{unix_now, SigningKey, TokenSpec};
use tokenward_filter::config::RevokedJti;

use crate::gateway::{Gateway, Options};

#[test]
fn revoked_jti_subject_and_key_id_are_refused_and_others_pass() {
    let old_key = SigningKey::generate("retired");
    let old_jwk = old_key.jwk();
    let gw = Gateway::start_with(Options::default(), |config, _| {
        config.keys.keys.push(old_jwk);
        config.revocations.jtis.push(RevokedJti {
            jti: "leaked-jti".into(),
            expires_at: unix_now() + 3600,
        });
        config.revocations.subjects.push("mallory".into());
        config.revocations.key_ids.push("retired".into());
    });
    let by_jti = gw.mint(TokenSpec {
        jti: "leaked-jti".into(),
        ..TokenSpec::default()
    });
    let by_subject = gw.mint(TokenSpec {
        subject: "mallory".into(),
        ..TokenSpec::default()
    });
    let by_kid = old_key.mint(&TokenSpec::default());
    for token in [&by_jti, &by_subject, &by_kid] {
        let reply = gw.chat(token, "gpt-4o");
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.error_code().as_deref(), Some("token_revoked"));
        assert!(reply
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
    }
    assert_eq!(gw.chat(&gw.token(), "gpt-4o").status, 200);
    assert_eq!(
        gw.received("openai").len(),
        1,
        "only the unrevoked token reached the provider"
    );
}

#[test]
fn two_keys_with_kids_both_verify_and_an_unknown_kid_does_not() {
    let second = SigningKey::generate("k2");
    let second_jwk = second.jwk();
    let gw = Gateway::start_with(Options::default(), |config, _| {
        config.keys.keys.push(second_jwk)
    });
    assert_eq!(gw.chat(&gw.token(), "gpt-4o").status, 200);
    assert_eq!(
        gw.chat(&second.mint(&TokenSpec::default()), "gpt-4o")
            .status,
        200
    );
    let stranger = SigningKey::generate("k3").mint(&TokenSpec::default());
    let reply = gw.chat(&stranger, "gpt-4o");
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (401, Some("invalid_token"))
    );
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown key"));
    // A forger who reuses a known kid with another key fails the signature check.
    let forger = SigningKey::generate("k2").mint(&TokenSpec::default());
    assert_eq!(
        gw.chat(&forger, "gpt-4o").error_code().as_deref(),
        Some("invalid_token")
    );
}

#[test]
fn expiry_at_the_clock_skew_boundary() {
    // Skew is 30 s. A token that expired 20 s ago is still inside it; one that expired
    // 45 s ago is not. The margins absorb the seconds between minting and the request.
    let gw = Gateway::start();
    let inside = gw.mint(TokenSpec {
        issued_offset: -80,
        lifetime: 60,
        ..TokenSpec::default()
    });
    let outside = gw.mint(TokenSpec {
        issued_offset: -105,
        lifetime: 60,
        ..TokenSpec::default()
    });
    assert_eq!(gw.chat(&inside, "gpt-4o").status, 200);
    let reply = gw.chat(&outside, "gpt-4o");
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (401, Some("token_expired"))
    );
    // Not yet valid beyond the skew is refused as well.
    let future = gw.mint(TokenSpec {
        issued_offset: 120,
        ..TokenSpec::default()
    });
    assert_eq!(
        gw.chat(&future, "gpt-4o").error_code().as_deref(),
        Some("invalid_token")
    );
    let nearly = gw.mint(TokenSpec {
        issued_offset: 10,
        ..TokenSpec::default()
    });
    assert_eq!(gw.chat(&nearly, "gpt-4o").status, 200);
}

#[test]
fn duplicate_authorization_headers_are_ambiguous() {
    let gw = Gateway::start();
    let token = gw.token();
    let reply = gw.send(
        "GET",
        "/v1/models",
        &[
            ("authorization", &bearer(&token)),
            ("authorization", &bearer(&token)),
        ],
        None,
    );
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (400, Some("ambiguous_credential"))
    );
    let reply = gw.send(
        "GET",
        "/v1/models",
        &[
            ("authorization", &bearer(&token)),
            ("x-api-key", token.as_bytes()),
        ],
        None,
    );
    assert_eq!(reply.error_code().as_deref(), Some("ambiguous_credential"));
    assert!(gw.all_received().is_empty());
}

#[test]
fn non_utf8_header_is_refused_and_the_same_worker_serves_the_next_request() {
    let gw = Gateway::start(); // one worker: both requests hit the same VM
                               // A tw_ key of the right length with a two-byte character where the checksum starts
                               // once crashed the VM (a string split off a character boundary).
    let tricky = format!("Bearer tw_{}\u{e9}{}", "a".repeat(31), "b".repeat(5));
    let reply = gw.send(
        "GET",
        "/v1/models",
        &[("authorization", tricky.as_bytes())],
        None,
    );
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (401, Some("invalid_api_key"))
    );
    let reply = gw.send(
        "GET",
        "/v1/models",
        &[("authorization", b"Bearer \xff\xfe\xfd")],
        None,
    );
    assert_eq!(
        (reply.status, reply.error_code().as_deref()),
        (400, Some("invalid_header"))
    );
    // A non-UTF-8 value in a header the filter does not read is no reason to refuse.
    let token = gw.token();
    let reply = gw.send(
        "GET",
        "/v1/models",
        &[("x-note", b"caf\xe9"), ("authorization", &bearer(&token))],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(gw.chat(&token, "gpt-4o").status, 200);
    gw.assert_log_clean(&[&token]);
}

#[test]
fn cached_token_is_still_checked_for_expiry() {
    // A token valid for 2 s (plus 30 s skew) is cached on first use; once past exp + skew the
    // cache must not serve it. Shrink the skew to keep the test short.
    let gw = Gateway::start_with(Options::default(), |config, _| {
        config.clock_skew_seconds = 0
    });
    let token = gw.mint(TokenSpec {
        lifetime: 2,
        ..TokenSpec::default()
    });
    assert_eq!(gw.chat(&token, "gpt-4o").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(3200));
    assert_eq!(
        gw.chat(&token, "gpt-4o").error_code().as_deref(),
        Some("token_expired")
    );
}

/// An ES256 token, signed by `pair`, as `SigningKey::mint` makes EdDSA ones.
fn es256_token(pair: &jwt_simple::prelude::ES256KeyPair, subject: &str) -> String {
    use jwt_simple::prelude::*;
    let custom = tokenward_filter::claims::TokenwardClaims {
        scope: Some("chat".into()),
        models: Some(vec!["*".into()]),
        ..Default::default()
    };
    let claims = Claims::with_custom_claims(custom, Duration::from_secs(600))
        .with_issuer(tokenward_e2e::setup::ISSUER)
        .with_audience(tokenward_e2e::setup::AUDIENCE)
        .with_subject(subject);
    pair.sign(claims).unwrap()
}

#[test]
fn es256_is_verified_by_envoys_boringssl_and_a_forgery_is_refused() {
    use jwt_simple::prelude::*;
    // The module has no P-256 code: Envoy's `verify_signature` foreign function checks
    // ES256 signatures (docs/config.md, "Signing keys").
    let pair = ES256KeyPair::generate().with_key_id("es");
    let point = pair.public_key().public_key().to_bytes_uncompressed();
    let b64 = |bytes: &[u8]| Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap();
    let jwk = tokenward_filter::config::Jwk {
        kty: "EC".into(),
        kid: Some("es".into()),
        alg: Some("ES256".into()),
        use_: Some("sig".into()),
        crv: Some("P-256".into()),
        x: Some(b64(&point[1..33])),
        y: Some(b64(&point[33..])),
        k: None,
        allow_symmetric: false,
    };
    let gw = Gateway::start_with(Options::default(), |config, _| config.keys.keys.push(jwk));
    let reply = gw.chat(&es256_token(&pair, "es-client"), "gpt-4o");
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Another P-256 key claiming the same kid, and a signature with one bit flipped.
    let forger = ES256KeyPair::generate().with_key_id("es");
    let forged = es256_token(&forger, "mallory");
    let genuine = es256_token(&pair, "mallory");
    let (signed, signature) = genuine.rsplit_once('.').unwrap();
    let mut bytes = Base64UrlSafeNoPadding::decode_to_vec(signature, None).unwrap();
    bytes[10] ^= 1;
    let flipped = format!("{signed}.{}", b64(&bytes));
    for token in [&forged, &flipped] {
        let reply = gw.chat(token, "gpt-4o");
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.error_code().as_deref(), Some("invalid_token"));
        assert!(
            reply.body.contains("signature is invalid"),
            "{}",
            reply.body
        );
    }
    assert_eq!(
        gw.received("openai").len(),
        1,
        "only the genuine token got through"
    );
}
