//! Keys, tokens and filter configurations generated for each run: no secret is ever
//! committed, every test makes its own.

use std::collections::BTreeMap;

use jwt_simple::prelude::*;
use tokenward_filter::claims::TokenwardClaims;
use tokenward_filter::config::*;

pub const ISSUER: &str = "https://tokenward.local";
pub const AUDIENCE: &str = "tokenward-gateway";

/// The provider names, which are also their Envoy cluster names in envoy/envoy.yaml.
pub const PROVIDERS: [(&str, ProviderStyle, &str); 3] = [
    ("openai", ProviderStyle::Openai, "api.openai.com"),
    ("anthropic", ProviderStyle::Anthropic, "api.anthropic.com"),
    (
        "gemini",
        ProviderStyle::Gemini,
        "generativelanguage.googleapis.com",
    ),
];

/// Random bytes from the OS, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).unwrap_or_else(|e| fail(&format!("no OS randomness: {e}")));
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(2)
}

/// A signing key with its kid: Ed25519 (EdDSA) unless made with `generate_es256`.
pub struct SigningKey {
    pub kid: String,
    pair: KeyPair,
}

enum KeyPair {
    Ed25519(Ed25519KeyPair),
    /// ECDSA on P-256: the other algorithm the filter verifies, benchmarked against
    /// `jwt_authn` on its own because its verification costs several times EdDSA's.
    Es256(ES256KeyPair),
}

impl SigningKey {
    pub fn generate(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.to_string(),
            pair: KeyPair::Ed25519(Ed25519KeyPair::generate().with_key_id(kid)),
        }
    }

    /// An ES256 (ECDSA P-256) key.
    pub fn generate_es256(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.to_string(),
            pair: KeyPair::Es256(ES256KeyPair::generate().with_key_id(kid)),
        }
    }

    pub fn jwk(&self) -> Jwk {
        let encode = |bytes: &[u8]| Base64UrlSafeNoPadding::encode_to_string(bytes).ok();
        let (kty, alg, crv, x, y) = match &self.pair {
            KeyPair::Ed25519(pair) => (
                "OKP",
                "EdDSA",
                "Ed25519",
                encode(&pair.public_key().to_bytes()),
                None,
            ),
            KeyPair::Es256(pair) => {
                // SEC1 uncompressed: 0x04, then x and y, 32 bytes each.
                let point = pair.public_key().public_key().to_bytes_uncompressed();
                (
                    "EC",
                    "ES256",
                    "P-256",
                    encode(&point[1..33]),
                    encode(&point[33..]),
                )
            }
        };
        Jwk {
            kty: kty.into(),
            kid: Some(self.kid.clone()),
            alg: Some(alg.into()),
            use_: Some("sig".into()),
            crv: Some(crv.into()),
            x,
            y,
            k: None,
            allow_symmetric: false,
        }
    }

    /// The public key as a JWKS, for Envoy's native `jwt_authn` (benchmark).
    pub fn public_jwks_json(&self) -> String {
        serde_json::json!({ "keys": [self.jwk()] }).to_string()
    }

    pub fn mint(&self, spec: &TokenSpec) -> String {
        let now = unix_now();
        let custom = TokenwardClaims {
            scope: Some(spec.scopes.join(" ")),
            models: spec.models.clone(),
            tenant: spec.tenant.clone(),
            plan: spec.plan.clone(),
        };
        let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(60))
            .with_issuer(&spec.issuer)
            .with_audience(&spec.audience)
            .with_subject(&spec.subject)
            .with_jwt_id(&spec.jti);
        let issued = now.saturating_add_signed(spec.issued_offset);
        claims.issued_at = Some(Duration::from_secs(issued));
        claims.invalid_before = Some(Duration::from_secs(issued));
        claims.expires_at = Some(Duration::from_secs(
            issued.saturating_add_signed(spec.lifetime),
        ));
        match &self.pair {
            KeyPair::Ed25519(pair) => pair.sign(claims),
            KeyPair::Es256(pair) => pair.sign(claims),
        }
        .unwrap_or_else(|e| fail(&format!("signing failed: {e}")))
    }
}

/// What a minted token says. `Default` is a one-hour chat token for any model.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub subject: String,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub tenant: Option<String>,
    pub plan: Option<String>,
    pub jti: String,
    pub issuer: String,
    pub audience: String,
    /// Seconds added to now for `iat`/`nbf`.
    pub issued_offset: i64,
    /// `exp - iat`.
    pub lifetime: i64,
}

impl Default for TokenSpec {
    fn default() -> Self {
        TokenSpec {
            subject: "alice".into(),
            scopes: vec!["chat".into(), "embeddings".into(), "models".into()],
            models: Some(vec!["*".into()]),
            tenant: Some("acme".into()),
            plan: None,
            jti: random_hex(8),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            issued_offset: 0,
            lifetime: 3600,
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Upstream secrets generated for one run; the mock providers expect exactly these.
#[derive(Debug, Clone)]
pub struct ProviderSecrets {
    pub by_provider: BTreeMap<String, String>,
}

impl ProviderSecrets {
    pub fn generate() -> ProviderSecrets {
        let by_provider = PROVIDERS
            .iter()
            .map(|(name, _, _)| {
                (
                    name.to_string(),
                    format!("upstream-{name}-{}", random_hex(12)),
                )
            })
            .collect();
        ProviderSecrets { by_provider }
    }

    pub fn get(&self, provider: &str) -> &str {
        self.by_provider
            .get(provider)
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// A route: prefix, methods, scopes, where the model comes from, which provider.
fn route(
    name: &str,
    prefix: &str,
    method: &str,
    scope: &str,
    model_source: ModelSource,
) -> RouteConfig {
    RouteConfig {
        methods: vec![method.into()],
        required_scopes: if scope.is_empty() {
            vec![]
        } else {
            vec![scope.into()]
        },
        model_source,
        ..tokenward_filter::testing::route(name, prefix)
    }
}

/// The gateway configuration the tests, the demo and the benchmark start from: the three
/// providers, OpenAI chat, embeddings and model list, Anthropic messages, and Gemini
/// generateContent (provider chosen by the model in the path).
/// The plan `make bench` and bench/wasm-host count under: a request limit counted in shared
/// data on every request and a token limit read for the headers, both far from full.
pub fn bench_plan() -> PlanConfig {
    let limit = |name: &str, metric, window| {
        tokenward_filter::testing::limit(name, metric, window, 1_000_000_000_000)
    };
    tokenward_filter::testing::plan(
        vec![
            limit(
                "rpm",
                Metric::Requests,
                tokenward_filter::window::Window::Minute,
            ),
            limit(
                "tpd",
                Metric::TotalTokens,
                tokenward_filter::window::Window::Day,
            ),
        ],
        1024,
    )
}

pub fn gateway_config(keys: &[&SigningKey], secrets: &ProviderSecrets) -> Config {
    let providers = PROVIDERS
        .iter()
        .map(|(name, style, authority)| ProviderConfig {
            name: name.to_string(),
            style: *style,
            cluster: name.to_string(),
            authority: authority.to_string(),
            credential: CredentialSource::Inline(secrets.get(name).to_string()),
            headers: BTreeMap::new(),
        })
        .collect();
    let by = |pattern: &str, provider: &str| ModelProvider {
        pattern: pattern.into(),
        provider: provider.into(),
    };
    Config {
        version: Some(format!("test-{}", random_hex(4))),
        max_token_lifetime_seconds: 24 * 3600,
        keys: JwkSet {
            keys: keys.iter().map(|k| k.jwk()).collect(),
        },
        providers,
        routes: vec![
            RouteConfig {
                provider: Some("openai".into()),
                max_body_bytes: 256 * 1024,
                ..route(
                    "openai-chat",
                    "/v1/chat/completions",
                    "POST",
                    "chat",
                    ModelSource::Body,
                )
            },
            RouteConfig {
                provider: Some("openai".into()),
                ..route(
                    "openai-responses",
                    "/v1/responses",
                    "POST",
                    "chat",
                    ModelSource::Body,
                )
            },
            RouteConfig {
                provider: Some("openai".into()),
                ..route(
                    "openai-embeddings",
                    "/v1/embeddings",
                    "POST",
                    "embeddings",
                    ModelSource::Body,
                )
            },
            // Listings several SDKs share go to the provider whose SDK sent them.
            RouteConfig {
                provider: Some("anthropic".into()),
                when_header: Some("anthropic-version".into()),
                ..route(
                    "anthropic-models",
                    "/v1/models",
                    "GET",
                    "models",
                    ModelSource::None,
                )
            },
            RouteConfig {
                provider: Some("gemini".into()),
                when_header: Some("x-goog-api-key".into()),
                ..route(
                    "gemini-models-v1",
                    "/v1/models",
                    "GET",
                    "models",
                    ModelSource::None,
                )
            },
            RouteConfig {
                provider: Some("gemini".into()),
                ..route(
                    "gemini-models",
                    "/v1beta/models",
                    "GET",
                    "models",
                    ModelSource::None,
                )
            },
            RouteConfig {
                provider: Some("openai".into()),
                ..route(
                    "openai-models",
                    "/v1/models",
                    "GET",
                    "models",
                    ModelSource::None,
                )
            },
            RouteConfig {
                provider: Some("anthropic".into()),
                ..route(
                    "anthropic-messages",
                    "/v1/messages",
                    "POST",
                    "chat",
                    ModelSource::Body,
                )
            },
            RouteConfig {
                model_providers: vec![by("gemini-*", "gemini"), by("gemma-*", "gemini")],
                ..route(
                    "gemini-generate",
                    "/v1beta/models/",
                    "POST",
                    "chat",
                    ModelSource::GeminiPath,
                )
            },
            // Google's SDKs speak /v1 as well as /v1beta (google-genai's api_version).
            RouteConfig {
                model_providers: vec![by("gemini-*", "gemini"), by("gemma-*", "gemini")],
                ..route(
                    "gemini-generate-v1",
                    "/v1/models/",
                    "POST",
                    "chat",
                    ModelSource::GeminiPath,
                )
            },
        ],
        ..tokenward_filter::testing::bare_config(ISSUER, AUDIENCE)
    }
}

/// Adds an API key to `config`; returns the key (shown once, stored only as its hash).
pub fn add_api_key(
    config: &mut Config,
    id: &str,
    subject: &str,
    scopes: &[&str],
    models: &[&str],
) -> String {
    let mut random = [0u8; 64];
    getrandom::fill(&mut random).unwrap_or_else(|e| fail(&format!("no OS randomness: {e}")));
    let mut bytes = random.into_iter().cycle();
    let key = tokenward_filter::apikey::new_api_key(|| bytes.next().unwrap_or(0));
    config.api_keys.push(tokenward_filter::apikey::config_entry(
        &key, id, subject, scopes, models,
    ));
    key
}
