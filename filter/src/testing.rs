//! Test fixtures, for the tests of every crate (feature `test-support`): a config with freshly
//! generated keys, tokens signed by them, and builders for providers and routes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::new_without_default
)]

use jwt_simple::prelude::*;

use crate::claims::TokenwardClaims;
use crate::config::*;

pub const ISSUER: &str = "https://tokenward.test";
pub const AUDIENCE: &str = "tokenward-gateway";
pub const NOW: u64 = 1_800_000_000;

pub struct Fixture {
    pub key: Ed25519KeyPair,
    pub config: Config,
}

pub fn ed25519_jwk(key: &Ed25519KeyPair, kid: Option<&str>) -> Jwk {
    Jwk {
        kty: "OKP".into(),
        kid: kid.map(str::to_string),
        alg: Some("EdDSA".into()),
        use_: Some("sig".into()),
        crv: Some("Ed25519".into()),
        x: Some(Base64UrlSafeNoPadding::encode_to_string(key.public_key().to_bytes()).unwrap()),
        y: None,
        k: None,
        allow_symmetric: false,
    }
}

/// A configuration with only its core: the issuer, one audience, 30 s of clock skew, tokens
/// of at most an hour; no version, keys, API keys, revocations, providers, routes or plans.
pub fn bare_config(issuer: &str, audience: &str) -> Config {
    Config {
        version: None,
        issuer: issuer.into(),
        audiences: vec![audience.into()],
        clock_skew_seconds: 30,
        max_token_lifetime_seconds: 3600,
        keys: JwkSet::default(),
        api_keys: vec![],
        revocations: Revocations::default(),
        providers: vec![],
        routes: vec![],
        cache: CacheConfig::default(),
        plans: Default::default(),
        default_plan: None,
        prices: vec![],
        sync: None,
        guard: None,
    }
}

pub fn provider(name: &str, style: ProviderStyle, secret: &str) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        style,
        cluster: format!("{name}_cluster"),
        authority: format!("api.{name}.test"),
        credential: CredentialSource::Inline(secret.into()),
        headers: Default::default(),
    }
}

/// A chat-style route: POST, scope `chat`, the model read from the body, sent to `provider`,
/// bodies up to 1 MiB.
pub fn chat_route(name: &str, prefix: &str, provider: &str) -> RouteConfig {
    RouteConfig {
        required_scopes: vec!["chat".into()],
        model_source: ModelSource::Body,
        provider: Some(provider.into()),
        max_body_bytes: 1 << 20,
        ..route(name, prefix)
    }
}

/// A route with nothing but its name and prefix: POST, no scope, no model, no provider.
pub fn route(name: &str, prefix: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        path_prefix: prefix.into(),
        methods: vec!["POST".into()],
        required_scopes: vec![],
        model_source: ModelSource::None,
        provider: None,
        model_providers: vec![],
        max_body_bytes: default_max_body_bytes(),
        allow_query_credential: false,
        when_header: None,
    }
}

/// A limit per subject.
pub fn limit(name: &str, metric: Metric, window: crate::window::Window, limit: u64) -> LimitConfig {
    LimitConfig {
        name: name.into(),
        metric,
        window,
        limit,
        per: LimitScope::Subject,
    }
}

/// A plan that enforces its limits and does not clamp, reserving `default_output_tokens`
/// for a request that sets no output limit.
pub fn plan(limits: Vec<LimitConfig>, default_output_tokens: u64) -> PlanConfig {
    PlanConfig {
        limits,
        shadow: false,
        clamp_max_tokens: false,
        default_output_tokens,
        unreachable: Default::default(),
        rate_limit_headers: Default::default(),
        spike: None,
    }
}

/// Makes `plan` the plan `standard` of `config`, the one every credential without a plan gets.
pub fn with_default_plan(config: &mut Config, plan: PlanConfig) {
    config.plans.insert("standard".into(), plan);
    config.default_plan = Some("standard".into());
}

impl Fixture {
    /// OpenAI, Anthropic and Gemini providers; chat and messages (model from the body),
    /// models (GET, no model) and Gemini (model from the path, provider chosen by it) routes.
    pub fn new() -> Fixture {
        let key = Ed25519KeyPair::generate();
        let config = Config {
            version: Some("test".into()),
            keys: JwkSet {
                keys: vec![ed25519_jwk(&key, None)],
            },
            providers: vec![
                provider("openai", ProviderStyle::Openai, "sk-upstream-openai"),
                provider("anthropic", ProviderStyle::Anthropic, "sk-ant-upstream"),
                provider("gemini", ProviderStyle::Gemini, "gemini-upstream"),
            ],
            routes: vec![
                RouteConfig {
                    required_scopes: vec!["chat".into()],
                    model_source: ModelSource::Body,
                    provider: Some("openai".into()),
                    max_body_bytes: 1000,
                    ..route("chat", "/v1/chat/completions")
                },
                RouteConfig {
                    required_scopes: vec!["chat".into()],
                    model_source: ModelSource::Body,
                    provider: Some("anthropic".into()),
                    ..route("messages", "/v1/messages")
                },
                RouteConfig {
                    methods: vec!["GET".into()],
                    provider: Some("openai".into()),
                    ..route("models", "/v1/models")
                },
                RouteConfig {
                    required_scopes: vec!["chat".into()],
                    model_source: ModelSource::GeminiPath,
                    model_providers: vec![ModelProvider {
                        pattern: "gemini-*".into(),
                        provider: "gemini".into(),
                    }],
                    allow_query_credential: true,
                    ..route("gemini", "/v1beta/models/")
                },
            ],
            ..bare_config(ISSUER, AUDIENCE)
        };
        Fixture { key, config }
    }

    pub fn claims(&self, valid_for: u64) -> JWTClaims<TokenwardClaims> {
        let custom = TokenwardClaims {
            scope: Some("chat".into()),
            models: Some(vec!["gpt-4o*".into(), "claude-*".into(), "gemini-*".into()]),
            tenant: Some("acme".into()),
            plan: None,
        };
        let mut claims = Claims::with_custom_claims(custom, Duration::from_secs(valid_for))
            .with_issuer(ISSUER)
            .with_audience(AUDIENCE)
            .with_subject("alice")
            .with_jwt_id("jti-1");
        claims.issued_at = Some(Duration::from_secs(NOW));
        claims.invalid_before = Some(Duration::from_secs(NOW));
        claims.expires_at = Some(Duration::from_secs(NOW + valid_for));
        claims
    }

    pub fn sign(&self, claims: JWTClaims<TokenwardClaims>) -> String {
        self.key.sign(claims).unwrap()
    }

    /// Makes `plan` the plan `standard`, the one every credential without a plan gets.
    pub fn with_default_plan(&mut self, plan: PlanConfig) {
        with_default_plan(&mut self.config, plan);
    }

    pub fn token(&self) -> String {
        self.sign(self.claims(600))
    }

    pub fn policy(&self) -> crate::policy::Policy {
        crate::policy::Policy::compile(&self.config, &|_| None).unwrap()
    }

    /// Adds an API key to the config and returns the key.
    pub fn add_api_key(&mut self, subject: &str, scopes: &[&str], models: &[&str]) -> String {
        let mut n = self.config.api_keys.len() as u8;
        let key = crate::auth::apikey::new_api_key(|| {
            n = n.wrapping_mul(31).wrapping_add(17);
            n
        });
        let entry = crate::auth::apikey::config_entry(
            &key,
            &format!("key-{subject}"),
            subject,
            scopes,
            models,
        );
        self.config.api_keys.push(entry);
        key
    }
}
