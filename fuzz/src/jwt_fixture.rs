//! The `jwt` target's world: three signing keys derived from public labels (so a crash
//! reproduces anywhere, and the keys are worth nothing outside this harness), a policy that
//! trusts them, and one API key. Nothing here is a secret: these keys sign fuzz inputs only.

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use jwt_simple::prelude::{ECDSAP256PublicKeyLike, ES256KeyPair};
use tokenward_filter::apikey;
use tokenward_filter::policy::Policy;

pub const ISSUER: &str = "https://tokenward.fuzz";
pub const AUDIENCE: &str = "tokenward-gateway";
pub const NOW: u64 = 1_800_000_000;
pub const CLOCK_SKEW: u64 = 30;
pub const MAX_LIFETIME: u64 = 3600;
pub const REVOKED_JTI: &str = "revoked-jti";
pub const REVOKED_SUBJECT: &str = "revoked-subject";
pub const API_KEY_SUBJECT: &str = "api-client";

/// Everything the `jwt` target signs with and verifies against.
pub struct JwtFixture {
    pub ed25519: ed25519_compact::KeyPair,
    /// The P-256 public key, SEC1 uncompressed (0x04 || x || y).
    pub p256_public: Vec<u8>,
    pub hs256_secret: [u8; 32],
    pub api_key: String,
    /// Keys by kid: `ed` (EdDSA), `es` (ES256), `hs` (HS256).
    pub multi_key: Policy,
    /// The Ed25519 key alone, without a kid: tokens may then name none.
    pub single_key: Policy,
}

/// SHA-256 of a label: key material that anyone can recompute, which is the point.
fn derive(label: &str) -> [u8; 32] {
    hmac_sha256::Hash::hash(label.as_bytes())
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap_or_default()
}

impl JwtFixture {
    /// `None` if the fixed keys or policies do not compile: the harness is then broken, and
    /// the target says so instead of fuzzing nothing.
    pub fn new() -> Option<JwtFixture> {
        let ed25519 = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(derive(
            "tokenward-fuzz ed25519 (public test key)",
        )));
        let p256 =
            ES256KeyPair::from_bytes(&derive("tokenward-fuzz p-256 (public test key)")).ok()?;
        let p256_public = p256.public_key().public_key().to_bytes_uncompressed();
        let hs256_secret = derive("tokenward-fuzz hs256 (public test secret)");
        let mut counter = 0u8;
        let api_key = apikey::new_api_key(|| {
            counter = counter.wrapping_add(37);
            counter
        });
        let entry = apikey::config_entry(&api_key, "fuzz-key", API_KEY_SUBJECT, &["chat"], &["*"]);
        let ed_x = b64(ed25519.pk.as_ref());
        let (es_x, es_y) = (b64(p256_public.get(1..33)?), b64(p256_public.get(33..65)?));
        let hs_k = b64(&hs256_secret);
        let ed_jwk = |kid: Option<&str>| {
            let mut jwk =
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": ed_x});
            if let Some(kid) = kid {
                jwk["kid"] = kid.into();
            }
            jwk
        };
        let config = |keys: serde_json::Value| {
            serde_json::json!({
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "clock_skew_seconds": CLOCK_SKEW,
                "max_token_lifetime_seconds": MAX_LIFETIME,
                "keys": {"keys": keys},
                "api_keys": [serde_json::to_value(&entry).ok()?],
                "revocations": {
                    "jtis": [{"jti": REVOKED_JTI, "expires_at": NOW + 3600}],
                    "subjects": [REVOKED_SUBJECT]
                },
                "providers": [],
                "routes": []
            })
            .to_string()
            .into()
        };
        let multi: Option<String> = config(serde_json::json!([
            ed_jwk(Some("ed")),
            {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "es", "x": es_x, "y": es_y},
            {"kty": "oct", "alg": "HS256", "kid": "hs", "k": hs_k, "allow_symmetric": true}
        ]));
        let single: Option<String> = config(serde_json::json!([ed_jwk(None)]));
        let compile = |json: Option<String>| Policy::from_json(json?.as_bytes(), &|_| None).ok();
        Some(JwtFixture {
            multi_key: compile(multi)?,
            single_key: compile(single)?,
            ed25519,
            p256_public,
            hs256_secret,
            api_key,
        })
    }
}
