//! Why a configuration, or one part of it, was refused: the errors `policy` and `quota`
//! compile into, and the parts that are unavailable on their own. A leaf: names what went
//! wrong, decides nothing.

use crate::config::MAX_BODY_LIMIT;
use crate::document::Unreadable;
use crate::quoted::Quoted;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InvalidConfig {
    #[error("configuration is not valid JSON for the schema: {0}")]
    Syntax(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("keys[{index}]: {source}")]
    Key { index: usize, source: KeyError },
    #[error("keys[{0}]: \"kid\" is required when there is more than one key")]
    MissingKid(usize),
    #[error("keys: kid {} appears twice", Quoted(.0))]
    DuplicateKid(String),
    #[error("api_keys[{0}]: sha256 must be 64 lowercase hex characters")]
    BadApiKeyHash(usize),
    #[error("api_keys[{0}]: the same key hash appears twice")]
    DuplicateApiKey(usize),
    #[error("api_keys[{0}]: subject and id must not be empty")]
    ApiKeyIdentity(usize),
    #[error("providers[{0}]: name, cluster and authority must not be empty")]
    ProviderFields(usize),
    #[error("providers: name {} appears twice", Quoted(.0))]
    DuplicateProvider(String),
    #[error("providers[{index}]: environment variable {} is not set in the Wasm VM", Quoted(.var))]
    MissingEnvCredential { index: usize, var: String },
    #[error("providers[{0}]: the credential is empty or not a valid header value")]
    BadCredential(usize),
    #[error("providers[{index}]: header {} is not a valid, settable header", Quoted(.name))]
    BadProviderHeader { index: usize, name: String },
    #[error("routes[{0}]: name must not be empty and path_prefix must start with '/'")]
    RouteFields(usize),
    #[error("routes[{0}]: when_header must be a lowercase header name")]
    BadRouteHeader(usize),
    #[error("routes: name {} appears twice", Quoted(.0))]
    DuplicateRoute(String),
    #[error("routes[{index}]: method {} is not an uppercase HTTP method", Quoted(.method))]
    BadMethod { index: usize, method: String },
    #[error("routes[{0}]: set exactly one of \"provider\" and \"model_providers\"")]
    ProviderChoice(usize),
    #[error(
        "routes[{0}]: \"model_providers\" needs the model before the body is read (model_source \"gemini_path\"): \
         Envoy's proxy-wasm cannot change the upstream once the body has been read, so a route whose model is in \
         the body names one \"provider\""
    )]
    ModelProvidersWithoutModel(usize),
    #[error("routes[{index}]: unknown provider {}", Quoted(.provider))]
    UnknownProvider { index: usize, provider: String },
    #[error("routes[{0}]: max_body_bytes must be between 1 and {MAX_BODY_LIMIT}")]
    BodyLimit(usize),
    #[error("plans[{}]: {problem}", Quoted(.plan))]
    Plan { plan: String, problem: String },
    #[error("default_plan {} is not one of the plans", Quoted(.0))]
    UnknownDefaultPlan(String),
    #[error("api_keys[{0}]: the plan is not one of the plans")]
    ApiKeyPlan(usize),
    #[error("prices[{0}]: model must not be empty")]
    PriceModel(usize),
    #[error("sync: {0}")]
    Sync(String),
    #[error("guard.failed_auth: {0}")]
    Guard(String),
    #[error("{kind}[{index}]: {reason}")]
    Unreadable {
        kind: &'static str,
        index: usize,
        reason: String,
    },
    #[error("{kind} {} is unavailable: {reason}", Quoted(.name))]
    Unavailable {
        kind: &'static str,
        name: String,
        reason: String,
    },
}

/// The kinds of catalog entry that can be unavailable on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartKind {
    Key,
    ApiKey,
    Provider,
    Route,
    Plan,
    Price,
    /// The sync channel: without it nothing is reported.
    Sync,
    /// The guard's settings: the defaults stay in force.
    Guard,
}

impl PartKind {
    /// As in stat names and messages.
    pub fn label(self) -> &'static str {
        match self {
            PartKind::Key => "key",
            PartKind::ApiKey => "api_key",
            PartKind::Provider => "provider",
            PartKind::Route => "route",
            PartKind::Plan => "plan",
            PartKind::Price => "price",
            PartKind::Sync => "sync",
            PartKind::Guard => "guard",
        }
    }

    fn section(self) -> &'static str {
        match self {
            PartKind::Key => "keys",
            PartKind::ApiKey => "api_keys",
            PartKind::Provider => "providers",
            PartKind::Route => "routes",
            PartKind::Plan => "plans",
            PartKind::Price => "prices",
            PartKind::Sync => "sync",
            PartKind::Guard => "guard",
        }
    }
}

/// A catalog entry the filter could not load. It disables only itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailablePart {
    pub kind: PartKind,
    /// Its name, or its position (`routes[3]`) when it has no readable name.
    pub name: String,
    pub reason: InvalidConfig,
}

impl UnavailablePart {
    /// Its Envoy gauge: `tokenward.config.unavailable.<kind>.<name>`, the name in stat-safe
    /// characters.
    pub fn stat_name(&self) -> String {
        crate::stat::config_unavailable(self.kind.label(), &self.name)
    }
}

/// Collects the parts that could not be loaded while compiling.
#[derive(Debug, Default)]
pub(crate) struct Unavailable(Vec<UnavailablePart>);

impl Unavailable {
    pub(crate) fn into_parts(self) -> Vec<UnavailablePart> {
        self.0
    }

    pub(crate) fn add(&mut self, kind: PartKind, name: String, reason: InvalidConfig) {
        self.0.push(UnavailablePart { kind, name, reason });
    }

    #[cfg(test)]
    pub(crate) fn into_first(self) -> Option<UnavailablePart> {
        self.0.into_iter().next()
    }

    pub(crate) fn unreadable(&mut self, kind: PartKind, index: usize, entry: &Unreadable) {
        let name = entry
            .name
            .clone()
            .unwrap_or_else(|| format!("{}[{index}]", kind.section()));
        self.add(
            kind,
            name,
            InvalidConfig::Unreadable {
                kind: kind.section(),
                index,
                reason: entry.reason.clone(),
            },
        );
    }
}

/// Why a signing key of the configuration cannot be loaded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "unsupported key type {} / curve {}",
        Quoted(.kty),
        .crv.as_deref().map_or("none".to_string(), |crv| Quoted(crv).to_string())
    )]
    Unsupported { kty: String, crv: Option<String> },
    #[error("alg {} does not fit a {kty} key", Quoted(.alg))]
    AlgorithmMismatch { alg: String, kty: String },
    #[error("HS256 key without \"allow_symmetric\": true")]
    SymmetricNotAllowed,
    #[error("missing parameter {}", Quoted(.0))]
    MissingParameter(&'static str),
    #[error("parameter {} is not valid base64url", Quoted(.0))]
    BadEncoding(&'static str),
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    #[error("key use {} is not \"sig\"", Quoted(.0))]
    WrongUse(String),
}
