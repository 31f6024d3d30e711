//! The filter's configuration document: the one JSON schema that Envoy hands the filter and
//! that the control plane renders. Parsing only; meaning and validation live in `policy`.
//!
//! Every struct denies unknown fields, so a typo is a refused config, not a silently ignored
//! setting. docs/config.md documents each field.

use std::collections::BTreeMap;

use serde::Serialize;

use read::{Fields, Node, Read, ReadError};

pub mod read;

/// Upper bound for a route's body limit: the filter buffers the body in memory.
pub const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// The whole plugin configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Free-form version label, logged when the config is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The `iss` every JWT must carry.
    pub issuer: String,
    /// Accepted `aud` values; a JWT must name at least one.
    pub audiences: Vec<String>,
    /// Tolerance for `exp`, `nbf` and `iat` against the host clock.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Longest allowed `exp - iat` of a JWT.
    #[serde(default = "default_max_lifetime")]
    pub max_token_lifetime_seconds: u64,
    /// Signing keys, as a JWK set.
    #[serde(default)]
    pub keys: JwkSet,
    /// Opaque API keys, by the SHA-256 of the whole key.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyEntry>,
    #[serde(default)]
    pub revocations: Revocations,
    pub providers: Vec<ProviderConfig>,
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub cache: CacheConfig,
    /// Quota plans by name. A credential names its plan (JWT claim `plan`, API key entry).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<String, PlanConfig>,
    /// The plan of a credential that names none; without it such credentials are unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_plan: Option<String>,
    /// Model prices for cost limits; the first pattern that matches the model applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<PriceConfig>,
    /// The channel to the control plane: usage reports (and, in a bootstrap, the
    /// configuration itself). Without it the filter reports nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncConfig>,
    /// Protection against failed-authentication bursts (docs/guard.md). Absent: on, with its
    /// defaults — an operator expects a gateway to stop credential guessing unasked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardConfig>,
}

/// The guard section (docs/guard.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    #[serde(default)]
    pub failed_auth: FailedAuthConfig,
}

/// Failed authentications per client address and per credential: over `threshold` in
/// `window_seconds`, the source is refused (429 `temporarily_blocked`) for `block_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailedAuthConfig {
    /// `false` turns the guard off (as does a threshold of 0).
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub enabled: bool,
    #[serde(default = "default_guard_threshold")]
    pub threshold: u32,
    #[serde(default = "default_guard_window")]
    pub window_seconds: u64,
    #[serde(default = "default_guard_block")]
    pub block_seconds: u64,
    /// Client networks (CIDR, IPv4 or IPv6) never counted nor blocked by address: health
    /// checkers, a trusted internal range. Their credentials are still counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<String>,
}

impl Default for FailedAuthConfig {
    fn default() -> Self {
        FailedAuthConfig {
            enabled: true,
            threshold: default_guard_threshold(),
            window_seconds: default_guard_window(),
            block_seconds: default_guard_block(),
            exempt: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

pub fn default_guard_threshold() -> u32 {
    20
}

pub fn default_guard_window() -> u64 {
    60
}

pub fn default_guard_block() -> u64 {
    300
}

/// The sync channel (docs/sync.md): which Envoy cluster reaches the control plane's HTTP
/// API, the proxy credential the filter calls it with, and how often it reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The Envoy cluster of the control plane's HTTP API (envoy.yaml's cluster, Istio's
    /// `outbound|<port>||<host>`, Envoy Gateway's patched cluster).
    pub cluster: String,
    /// The `:authority` of the calls; the cluster's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// A proxy credential (`tokenward proxy-credential create`): scoped to the sync channel
    /// only.
    pub credential: CredentialSource,
    /// How often usage is reported, in milliseconds.
    #[serde(default = "default_report_interval")]
    pub report_interval_ms: u64,
    /// Pull mode: how long the filter keeps enforcing its last configuration without an
    /// answer from the control plane before it refuses every request (503). 0: forever.
    #[serde(default = "default_max_staleness")]
    pub max_staleness_seconds: u64,
    /// Pull mode: the keys that may sign a pulled configuration (the control plane's JWKS
    /// when the bootstrap was rendered). Later ones are learnt from each configuration.
    #[serde(default, skip_serializing_if = "JwkSet::is_empty")]
    pub trust_anchor: JwkSet,
}

pub fn default_report_interval() -> u64 {
    1000
}

pub fn default_max_staleness() -> u64 {
    300
}

/// A plugin configuration that holds only the sync channel: the filter pulls everything
/// else from the control plane (pull mode, for meshes that own xDS).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    pub sync: SyncConfig,
}

pub fn default_clock_skew() -> u64 {
    30
}

pub fn default_max_lifetime() -> u64 {
    24 * 3600
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One public (or, for HS256, shared) key in JWK form (RFC 7517, RFC 8037).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// `OKP` (Ed25519), `EC` (P-256) or `oct` (HS256).
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `EdDSA`, `ES256` or `HS256`. When absent it follows from `kty` and `crv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The shared secret of an `oct` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
    /// HS256 keys are refused unless this is true: a shared secret in every proxy is a
    /// weaker design than a public key, so using one must be a deliberate choice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_symmetric: bool,
}

/// An opaque API key. The key itself is never in the config, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Stable identifier, safe to log.
    pub id: String,
    /// Lowercase hex SHA-256 of the whole key string (`tw_…`).
    pub sha256: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Unix seconds after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    #[serde(default)]
    pub jtis: Vec<RevokedJti>,
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub key_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedJti {
    pub jti: String,
    /// When the revoked token would have expired; the entry can be dropped after it.
    pub expires_at: u64,
}

/// How a provider expects its credential.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStyle {
    /// OpenAI and OpenAI-compatible APIs: `Authorization: Bearer`.
    Openai,
    /// Anthropic: `x-api-key` plus `anthropic-version`.
    Anthropic,
    /// Gemini: `x-goog-api-key`.
    Gemini,
    /// Azure OpenAI: `api-key`.
    AzureOpenai,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub style: ProviderStyle,
    /// The Envoy cluster requests to this provider go to.
    pub cluster: String,
    /// The `:authority` (Host) the provider expects.
    pub authority: String,
    pub credential: CredentialSource,
    /// Headers set on every request to this provider (for example `anthropic-version`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Where the provider's credential comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum CredentialSource {
    /// The credential itself, in the config.
    Inline(String),
    /// The name of an environment variable of the Wasm VM (`vm_config.environment_variables`).
    Env(String),
}

/// Where a route finds the requested model.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// The route does not look at the model.
    #[default]
    None,
    /// The `model` field of the JSON request body (OpenAI, Anthropic).
    Body,
    /// Gemini's path form `…/models/{model}:{method}`.
    GeminiPath,
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^/")))]
    pub path_prefix: String,
    /// Allowed methods; empty means any.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(inner(regex(pattern = "^[A-Z]+$"))))]
    pub methods: Vec<String>,
    /// Every one of these must be among the credential's scopes.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    #[serde(default)]
    pub model_source: ModelSource,
    /// The provider for every request on this route…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// …or the provider chosen by the first model pattern that matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_providers: Vec<ModelProvider>,
    /// Largest request body the filter buffers to read the model.
    #[serde(default = "default_max_body_bytes")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_BODY_LIMIT)))]
    pub max_body_bytes: u64,
    /// Accept the credential from the `key` query parameter (Gemini's legacy form); it is
    /// removed from the path before the request is forwarded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_query_credential: bool,
    /// Match only requests that carry this header (any value): paths several providers'
    /// SDKs share, such as `/v1/models`, go to the provider whose SDK sent them
    /// (`anthropic-version`, `x-goog-api-key`). Lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^[a-z0-9_-]+$")))]
    pub when_header: Option<String>,
}

pub fn default_max_body_bytes() -> u64 {
    1024 * 1024
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProvider {
    /// A model pattern: `*` matches any run of characters.
    pub pattern: String,
    pub provider: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Verified credentials kept per worker.
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
}

pub fn default_cache_entries() -> usize {
    10_000
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: default_cache_entries(),
        }
    }
}

/// A quota plan: the limits a request counts against.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub limits: Vec<LimitConfig>,
    /// Count and report, never refuse.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
    /// Lower a request's `max_tokens` to what its token and cost limits still allow.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clamp_max_tokens: bool,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    #[serde(default = "default_output_tokens")]
    pub default_output_tokens: u64,
    /// With a sync channel the plan's limits hold across every Envoy (docs/quotas.md): what an
    /// Envoy does when it has not heard from the control plane for a while.
    #[serde(default, skip_serializing_if = "Unreachable::is_default")]
    pub unreachable: Unreachable,
    /// Which answers carry the rate-limit headers (docs/config.md, "Plans and quotas").
    #[serde(default, skip_serializing_if = "RateLimitHeaders::is_default")]
    pub rate_limit_headers: RateLimitHeaders,
    /// Spend-spike detection, done by the control plane from the usage Envoys report
    /// (docs/quotas.md, "Spend spikes"); the filter parses it and does nothing with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spike: Option<SpikeConfig>,
}

/// When a credential's usage rate counts as a spike, and what the control plane does then.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfig {
    /// A spike is an hourly rate above this multiple of the credential's baseline.
    #[cfg_attr(feature = "schema", schemars(range(min = 2, max = 1000000)))]
    pub multiple: u64,
    /// What the rate counts, in the units of a limit of that metric.
    pub metric: Metric,
    /// The least baseline, per hour in the metric's unit: a new or quiet credential is
    /// judged against this, so a few requests do not make a spike.
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub min_baseline: u64,
    #[serde(default)]
    pub action: SpikeAction,
}

/// What a spike does besides its alert.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeAction {
    /// An alert only.
    #[default]
    Alert,
    /// An alert, and the credential's subject revoked until an operator lifts it.
    Suspend,
}

impl SpikeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SpikeAction::Alert => "alert",
            SpikeAction::Suspend => "suspend",
        }
    }
}

/// What an Envoy does with a fleet-wide limit while the control plane is unreachable.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// Keep counting to the last allowance for its window, then to this Envoy's last share
    /// of the limit in later windows.
    #[default]
    Fallback,
    /// Refuse the plan's requests (503) until the control plane answers again.
    FailClosed,
}

impl Unreachable {
    fn is_default(&self) -> bool {
        *self == Unreachable::Fallback
    }
}

/// Which answers a plan's rate-limit headers go on.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitHeaders {
    /// Every answer of the plan.
    #[default]
    Always,
    /// Refusals, and answers that leave some limit of the request at a fifth of its quota or
    /// less: far from its limits an answer costs no host call for them.
    NearLimit,
}

impl RateLimitHeaders {
    fn is_default(&self) -> bool {
        *self == RateLimitHeaders::Always
    }

    pub fn read(value: &Node) -> Read<RateLimitHeaders> {
        read::variant(
            value,
            &[
                ("always", RateLimitHeaders::Always),
                ("near_limit", RateLimitHeaders::NearLimit),
            ],
        )
    }
}

pub fn default_output_tokens() -> u64 {
    1024
}

#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Names the limit in headers, stats and the counter key: keep it when editing the limit.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = "^[A-Za-z0-9_-]{1,64}$")))]
    pub name: String,
    pub metric: Metric,
    pub window: crate::window::Window,
    pub limit: u64,
    #[serde(default)]
    pub per: LimitScope,
}

/// What a limit counts.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Requests,
    InputTokens,
    OutputTokens,
    TotalTokens,
    /// Cost in millionths of a US dollar, from `prices`.
    CostMicroUsd,
}

/// Whose requests a limit counts together.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    #[default]
    Subject,
    /// Every credential of the tenant; a credential without a tenant is its own tenant.
    Tenant,
}

/// A model's price in micro-USD per million tokens (2.50 USD per million = 2500000).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// A model pattern (`*` matches any run of characters).
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub model: String,
    pub input: u64,
    pub output: u64,
    /// Input tokens served from the provider's prompt cache; the input price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<u64>,
}

impl Config {
    /// The whole document, strictly: the first field that does not read is the error.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ReadError> {
        Config::read(&read::parse(bytes)?)
    }
}

// Reading (see `read`): one reader per type, field by field as the serde attributes above
// say. Each builds its struct with every field named, so a field added to a type without a
// reader breaks the build.

/// `Config`'s fields; `document` reads the same object.
pub(crate) const CONFIG_FIELDS: &[&str] = &[
    "version",
    "issuer",
    "audiences",
    "clock_skew_seconds",
    "max_token_lifetime_seconds",
    "keys",
    "api_keys",
    "revocations",
    "providers",
    "routes",
    "cache",
    "plans",
    "default_plan",
    "prices",
    "sync",
    "guard",
];

impl Config {
    pub fn read(value: &Node) -> Read<Config> {
        let fields = Fields::of(value, CONFIG_FIELDS)?;
        Ok(Config {
            keys: fields.or_default("keys", JwkSet::read)?,
            api_keys: fields.or_default("api_keys", |v| read::list(v, ApiKeyEntry::read))?,
            providers: fields.required("providers", |v| read::list(v, ProviderConfig::read))?,
            routes: fields.required("routes", |v| read::list(v, RouteConfig::read))?,
            plans: fields.or_default("plans", |v| read::map(v, PlanConfig::read))?,
            prices: fields.or_default("prices", |v| read::list(v, PriceConfig::read))?,
            ..Config::read_core(&fields)?
        })
    }

    /// The security core: every field but the catalog's (keys, API keys, providers, routes,
    /// plans, prices), which are left empty.
    pub(crate) fn read_core(fields: &Fields) -> Read<Config> {
        Ok(Config {
            version: fields.optional("version", read::string)?,
            issuer: fields.required("issuer", read::string)?,
            audiences: fields.required("audiences", read::strings)?,
            clock_skew_seconds: fields.or_else(
                "clock_skew_seconds",
                read::u64,
                default_clock_skew,
            )?,
            max_token_lifetime_seconds: fields.or_else(
                "max_token_lifetime_seconds",
                read::u64,
                default_max_lifetime,
            )?,
            keys: JwkSet::default(),
            api_keys: Vec::new(),
            revocations: fields.or_default("revocations", Revocations::read)?,
            providers: Vec::new(),
            routes: Vec::new(),
            cache: fields.or_default("cache", CacheConfig::read)?,
            plans: BTreeMap::new(),
            default_plan: fields.optional("default_plan", read::string)?,
            prices: Vec::new(),
            sync: fields.optional("sync", SyncConfig::read)?,
            guard: fields.optional("guard", GuardConfig::read)?,
        })
    }
}

impl GuardConfig {
    pub fn read(value: &Node) -> Read<GuardConfig> {
        let fields = Fields::of(value, &["failed_auth"])?;
        Ok(GuardConfig {
            failed_auth: fields.or_default("failed_auth", FailedAuthConfig::read)?,
        })
    }
}

impl FailedAuthConfig {
    pub fn read(value: &Node) -> Read<FailedAuthConfig> {
        let fields = Fields::of(
            value,
            &[
                "enabled",
                "threshold",
                "window_seconds",
                "block_seconds",
                "exempt",
            ],
        )?;
        Ok(FailedAuthConfig {
            enabled: fields.or_else("enabled", read::boolean, default_true)?,
            threshold: fields.or_else("threshold", read::u32, default_guard_threshold)?,
            window_seconds: fields.or_else("window_seconds", read::u64, default_guard_window)?,
            block_seconds: fields.or_else("block_seconds", read::u64, default_guard_block)?,
            exempt: fields.or_default("exempt", read::strings)?,
        })
    }
}

impl SyncConfig {
    pub fn read(value: &Node) -> Read<SyncConfig> {
        let fields = Fields::of(
            value,
            &[
                "cluster",
                "authority",
                "credential",
                "report_interval_ms",
                "max_staleness_seconds",
                "trust_anchor",
            ],
        )?;
        Ok(SyncConfig {
            cluster: fields.required("cluster", read::string)?,
            authority: fields.optional("authority", read::string)?,
            credential: fields.required("credential", CredentialSource::read)?,
            report_interval_ms: fields.or_else(
                "report_interval_ms",
                read::u64,
                default_report_interval,
            )?,
            max_staleness_seconds: fields.or_else(
                "max_staleness_seconds",
                read::u64,
                default_max_staleness,
            )?,
            trust_anchor: fields.or_default("trust_anchor", JwkSet::read)?,
        })
    }
}

impl Bootstrap {
    pub fn read(value: &Node) -> Read<Bootstrap> {
        let fields = Fields::of(value, &["sync"])?;
        Ok(Bootstrap {
            sync: fields.required("sync", SyncConfig::read)?,
        })
    }
}

impl JwkSet {
    pub fn read(value: &Node) -> Read<JwkSet> {
        let fields = Fields::of(value, &["keys"])?;
        Ok(JwkSet {
            keys: fields.required("keys", |v| read::list(v, Jwk::read))?,
        })
    }
}

impl Jwk {
    pub fn read(value: &Node) -> Read<Jwk> {
        let fields = Fields::of(
            value,
            &[
                "kty",
                "kid",
                "alg",
                "use",
                "crv",
                "x",
                "y",
                "k",
                "allow_symmetric",
            ],
        )?;
        Ok(Jwk {
            kty: fields.required("kty", read::string)?,
            kid: fields.optional("kid", read::string)?,
            alg: fields.optional("alg", read::string)?,
            use_: fields.optional("use", read::string)?,
            crv: fields.optional("crv", read::string)?,
            x: fields.optional("x", read::string)?,
            y: fields.optional("y", read::string)?,
            k: fields.optional("k", read::string)?,
            allow_symmetric: fields.or_default("allow_symmetric", read::boolean)?,
        })
    }
}

impl ApiKeyEntry {
    pub fn read(value: &Node) -> Read<ApiKeyEntry> {
        let fields = Fields::of(
            value,
            &[
                "id",
                "sha256",
                "subject",
                "tenant",
                "scopes",
                "models",
                "plan",
                "expires_at",
            ],
        )?;
        Ok(ApiKeyEntry {
            id: fields.required("id", read::string)?,
            sha256: fields.required("sha256", read::string)?,
            subject: fields.required("subject", read::string)?,
            tenant: fields.optional("tenant", read::string)?,
            scopes: fields.or_default("scopes", read::strings)?,
            models: fields.or_default("models", read::strings)?,
            plan: fields.optional("plan", read::string)?,
            expires_at: fields.optional("expires_at", read::u64)?,
        })
    }
}

impl Revocations {
    pub fn read(value: &Node) -> Read<Revocations> {
        let fields = Fields::of(value, &["jtis", "subjects", "key_ids"])?;
        Ok(Revocations {
            jtis: fields.or_default("jtis", |v| read::list(v, RevokedJti::read))?,
            subjects: fields.or_default("subjects", read::strings)?,
            key_ids: fields.or_default("key_ids", read::strings)?,
        })
    }
}

impl RevokedJti {
    pub fn read(value: &Node) -> Read<RevokedJti> {
        let fields = Fields::of(value, &["jti", "expires_at"])?;
        Ok(RevokedJti {
            jti: fields.required("jti", read::string)?,
            expires_at: fields.required("expires_at", read::u64)?,
        })
    }
}

impl ProviderStyle {
    pub fn read(value: &Node) -> Read<ProviderStyle> {
        read::variant(
            value,
            &[
                ("openai", ProviderStyle::Openai),
                ("anthropic", ProviderStyle::Anthropic),
                ("gemini", ProviderStyle::Gemini),
                ("azure_openai", ProviderStyle::AzureOpenai),
            ],
        )
    }
}

impl ProviderConfig {
    pub fn read(value: &Node) -> Read<ProviderConfig> {
        let fields = Fields::of(
            value,
            &[
                "name",
                "style",
                "cluster",
                "authority",
                "credential",
                "headers",
            ],
        )?;
        Ok(ProviderConfig {
            name: fields.required("name", read::string)?,
            style: fields.required("style", ProviderStyle::read)?,
            cluster: fields.required("cluster", read::string)?,
            authority: fields.required("authority", read::string)?,
            credential: fields.required("credential", CredentialSource::read)?,
            headers: fields.or_default("headers", read::string_map)?,
        })
    }
}

impl CredentialSource {
    pub fn read(value: &Node) -> Read<CredentialSource> {
        let (name, inner) = read::tagged(value, &["inline", "env"])?;
        let text = read::string(inner).map_err(|e| e.within(name))?;
        Ok(match name {
            "inline" => CredentialSource::Inline(text),
            _ => CredentialSource::Env(text),
        })
    }
}

impl ModelSource {
    pub fn read(value: &Node) -> Read<ModelSource> {
        read::variant(
            value,
            &[
                ("none", ModelSource::None),
                ("body", ModelSource::Body),
                ("gemini_path", ModelSource::GeminiPath),
            ],
        )
    }
}

impl RouteConfig {
    pub fn read(value: &Node) -> Read<RouteConfig> {
        let fields = Fields::of(
            value,
            &[
                "name",
                "path_prefix",
                "methods",
                "required_scopes",
                "model_source",
                "provider",
                "model_providers",
                "max_body_bytes",
                "allow_query_credential",
                "when_header",
            ],
        )?;
        Ok(RouteConfig {
            name: fields.required("name", read::string)?,
            path_prefix: fields.required("path_prefix", read::string)?,
            methods: fields.or_default("methods", read::strings)?,
            required_scopes: fields.or_default("required_scopes", read::strings)?,
            model_source: fields.or_default("model_source", ModelSource::read)?,
            provider: fields.optional("provider", read::string)?,
            model_providers: fields
                .or_default("model_providers", |v| read::list(v, ModelProvider::read))?,
            max_body_bytes: fields.or_else("max_body_bytes", read::u64, default_max_body_bytes)?,
            allow_query_credential: fields.or_default("allow_query_credential", read::boolean)?,
            when_header: fields.optional("when_header", read::string)?,
        })
    }
}

impl ModelProvider {
    pub fn read(value: &Node) -> Read<ModelProvider> {
        let fields = Fields::of(value, &["pattern", "provider"])?;
        Ok(ModelProvider {
            pattern: fields.required("pattern", read::string)?,
            provider: fields.required("provider", read::string)?,
        })
    }
}

impl CacheConfig {
    pub fn read(value: &Node) -> Read<CacheConfig> {
        let fields = Fields::of(value, &["max_entries"])?;
        Ok(CacheConfig {
            max_entries: fields.or_else("max_entries", read::usize, default_cache_entries)?,
        })
    }
}

impl PlanConfig {
    pub fn read(value: &Node) -> Read<PlanConfig> {
        let fields = Fields::of(
            value,
            &[
                "limits",
                "shadow",
                "clamp_max_tokens",
                "default_output_tokens",
                "unreachable",
                "rate_limit_headers",
                "spike",
            ],
        )?;
        Ok(PlanConfig {
            limits: fields.required("limits", |v| read::list(v, LimitConfig::read))?,
            shadow: fields.or_default("shadow", read::boolean)?,
            clamp_max_tokens: fields.or_default("clamp_max_tokens", read::boolean)?,
            default_output_tokens: fields.or_else(
                "default_output_tokens",
                read::u64,
                default_output_tokens,
            )?,
            unreachable: fields.or_default("unreachable", Unreachable::read)?,
            rate_limit_headers: fields.or_default("rate_limit_headers", RateLimitHeaders::read)?,
            spike: fields.optional("spike", SpikeConfig::read)?,
        })
    }
}

impl SpikeConfig {
    pub fn read(value: &Node) -> Read<SpikeConfig> {
        let fields = Fields::of(value, &["multiple", "metric", "min_baseline", "action"])?;
        Ok(SpikeConfig {
            multiple: fields.required("multiple", read::u64)?,
            metric: fields.required("metric", Metric::read)?,
            min_baseline: fields.required("min_baseline", read::u64)?,
            action: fields.or_default("action", SpikeAction::read)?,
        })
    }
}

impl SpikeAction {
    pub fn read(value: &Node) -> Read<SpikeAction> {
        read::variant(
            value,
            &[
                ("alert", SpikeAction::Alert),
                ("suspend", SpikeAction::Suspend),
            ],
        )
    }
}

impl Unreachable {
    pub fn read(value: &Node) -> Read<Unreachable> {
        read::variant(
            value,
            &[
                ("fallback", Unreachable::Fallback),
                ("fail_closed", Unreachable::FailClosed),
            ],
        )
    }
}

impl LimitConfig {
    pub fn read(value: &Node) -> Read<LimitConfig> {
        let fields = Fields::of(value, &["name", "metric", "window", "limit", "per"])?;
        Ok(LimitConfig {
            name: fields.required("name", read::string)?,
            metric: fields.required("metric", Metric::read)?,
            window: fields.required("window", crate::window::Window::read)?,
            limit: fields.required("limit", read::u64)?,
            per: fields.or_default("per", LimitScope::read)?,
        })
    }
}

impl Metric {
    pub fn read(value: &Node) -> Read<Metric> {
        read::variant(
            value,
            &[
                ("requests", Metric::Requests),
                ("input_tokens", Metric::InputTokens),
                ("output_tokens", Metric::OutputTokens),
                ("total_tokens", Metric::TotalTokens),
                ("cost_micro_usd", Metric::CostMicroUsd),
            ],
        )
    }
}

impl LimitScope {
    pub fn read(value: &Node) -> Read<LimitScope> {
        read::variant(
            value,
            &[
                ("subject", LimitScope::Subject),
                ("tenant", LimitScope::Tenant),
            ],
        )
    }
}

impl PriceConfig {
    pub fn read(value: &Node) -> Read<PriceConfig> {
        let fields = Fields::of(value, &["model", "input", "output", "cached_input"])?;
        Ok(PriceConfig {
            model: fields.required("model", read::string)?,
            input: fields.required("input", read::u64)?,
            output: fields.required("output", read::u64)?,
            cached_input: fields.optional("cached_input", read::u64)?,
        })
    }
}

read::deserialize_by_reader!(
    Config,
    GuardConfig,
    FailedAuthConfig,
    SyncConfig,
    Bootstrap,
    JwkSet,
    Jwk,
    ApiKeyEntry,
    Revocations,
    RevokedJti,
    ProviderStyle,
    ProviderConfig,
    CredentialSource,
    ModelSource,
    RouteConfig,
    ModelProvider,
    CacheConfig,
    PlanConfig,
    SpikeConfig,
    SpikeAction,
    Unreachable,
    LimitConfig,
    Metric,
    LimitScope,
    PriceConfig,
);
