//! The compiled configuration: `Policy::compile` validates a `Config` as a whole and turns
//! it into lookup structures (keys by kid, API keys by hash, revocation sets, the route
//! table, providers with their ready-made upstream headers). Nothing here is re-parsed per
//! request. Refuses the whole document on the first problem, naming where it is.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::config::{
    ApiKeyEntry, Config, CredentialSource, ModelSource, ProviderConfig, ProviderStyle, RouteConfig,
};
use crate::keys::{ClaimRules, KeyError, VerificationKey};
use crate::quota::Quotas;
use crate::token::{CredentialKind, Identity};

/// The header Envoy's route table reads to pick the provider's cluster.
pub const CLUSTER_HEADER: &str = "x-tokenward-cluster";
/// Anthropic's API refuses requests without a version; this one is set when neither the
/// client nor the provider config names one.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// Upper bound for a route's body limit: the filter buffers the body in memory.
pub const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidConfig {
    #[error("configuration is not valid JSON for the schema: {0}")]
    Syntax(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("keys[{index}]: {source}")]
    Key { index: usize, source: KeyError },
    #[error("keys[{0}]: \"kid\" is required when there is more than one key")]
    MissingKid(usize),
    #[error("keys: kid {0:?} appears twice")]
    DuplicateKid(String),
    #[error("api_keys[{0}]: sha256 must be 64 lowercase hex characters")]
    BadApiKeyHash(usize),
    #[error("api_keys[{0}]: the same key hash appears twice")]
    DuplicateApiKey(usize),
    #[error("api_keys[{0}]: subject and id must not be empty")]
    ApiKeyIdentity(usize),
    #[error("providers[{0}]: name, cluster and authority must not be empty")]
    ProviderFields(usize),
    #[error("providers: name {0:?} appears twice")]
    DuplicateProvider(String),
    #[error("providers[{index}]: environment variable {var:?} is not set in the Wasm VM")]
    MissingEnvCredential { index: usize, var: String },
    #[error("providers[{0}]: the credential is empty or not a valid header value")]
    BadCredential(usize),
    #[error("providers[{index}]: header {name:?} is not a valid, settable header")]
    BadProviderHeader { index: usize, name: String },
    #[error("routes[{0}]: name must not be empty and path_prefix must start with '/'")]
    RouteFields(usize),
    #[error("routes: name {0:?} appears twice")]
    DuplicateRoute(String),
    #[error("routes[{index}]: method {method:?} is not an uppercase HTTP method")]
    BadMethod { index: usize, method: String },
    #[error("routes[{0}]: set exactly one of \"provider\" and \"model_providers\"")]
    ProviderChoice(usize),
    #[error(
        "routes[{0}]: \"model_providers\" needs the model before the body is read (model_source \"gemini_path\"): \
         Envoy's proxy-wasm cannot change the upstream once the body has been read, so a route whose model is in \
         the body names one \"provider\""
    )]
    ModelProvidersWithoutModel(usize),
    #[error("routes[{index}]: unknown provider {provider:?}")]
    UnknownProvider { index: usize, provider: String },
    #[error("routes[{0}]: max_body_bytes must be between 1 and {MAX_BODY_LIMIT}")]
    BodyLimit(usize),
    #[error("plans[{plan:?}]: {problem}")]
    Plan { plan: String, problem: String },
    #[error("default_plan {0:?} is not one of the plans")]
    UnknownDefaultPlan(String),
    #[error("api_keys[{0}]: the plan is not one of the plans")]
    ApiKeyPlan(usize),
    #[error("prices[{0}]: model must not be empty")]
    PriceModel(usize),
}

/// The revocation set, checked on every request whether or not the credential was cached.
#[derive(Debug, Default)]
pub struct RevocationSet {
    jtis: HashSet<String>,
    subjects: HashSet<String>,
    key_ids: HashSet<String>,
}

impl RevocationSet {
    pub fn revokes(&self, identity: &Identity) -> bool {
        if self.subjects.contains(&identity.subject) {
            return true;
        }
        match &identity.kind {
            CredentialKind::Jwt { jti, kid } => {
                jti.as_ref().is_some_and(|j| self.jtis.contains(j))
                    || kid.as_ref().is_some_and(|k| self.key_ids.contains(k))
            }
            CredentialKind::ApiKey { .. } => false,
        }
    }
}

/// A provider, ready to be the target of a request.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub style: ProviderStyle,
    /// Headers set on every forwarded request: the credential in the provider's style,
    /// `:authority`, the cluster-selection header and the configured extras.
    pub upstream_headers: Rc<[(String, Vec<u8>)]>,
    /// Whether `anthropic-version` must be added when the client sent none.
    pub needs_default_anthropic_version: bool,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    path_prefix: String,
    methods: Vec<String>,
    pub required_scopes: Vec<String>,
    pub model_source: ModelSource,
    pub provider: ProviderChoice,
    pub max_body_bytes: u64,
    pub allow_query_credential: bool,
}

#[derive(Debug)]
pub enum ProviderChoice {
    Fixed(Rc<Provider>),
    ByModel(Vec<(String, Rc<Provider>)>),
}

impl Route {
    fn matches(&self, path: &str, method: &str) -> bool {
        path.starts_with(&self.path_prefix)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

#[derive(Debug)]
pub struct Policy {
    pub version: Option<String>,
    pub claim_rules: ClaimRules,
    pub max_token_lifetime_seconds: u64,
    /// Each key with its configured `kid`.
    keys: Vec<(Option<String>, VerificationKey)>,
    keys_by_kid: HashMap<String, usize>,
    api_keys: HashMap<[u8; 32], Rc<Identity>>,
    pub revocations: RevocationSet,
    routes: Vec<Rc<Route>>,
    pub cache_entries: usize,
    pub quotas: Quotas,
}

impl Policy {
    /// Parses and compiles a configuration document. `env` reads the Wasm VM's environment.
    pub fn from_json(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, InvalidConfig> {
        let config = Config::from_json(bytes)
            .map_err(|e| InvalidConfig::Syntax(redact_values(&e.to_string())))?;
        Policy::compile(&config, env)
    }

    pub fn compile(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, InvalidConfig> {
        if config.issuer.is_empty() {
            return Err(InvalidConfig::Empty("issuer"));
        }
        if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
            return Err(InvalidConfig::Empty("audiences"));
        }
        let (keys, keys_by_kid) = compile_keys(config)?;
        let api_keys = compile_api_keys(&config.api_keys)?;
        let providers = compile_providers(&config.providers, env)?;
        let routes = compile_routes(&config.routes, &providers)?;
        let quotas = Quotas::compile(
            &config.plans,
            config.default_plan.as_deref(),
            &config.prices,
        )?;
        if let Some(index) = config
            .api_keys
            .iter()
            .position(|k| k.plan.as_deref().is_some_and(|plan| !quotas.has_plan(plan)))
        {
            return Err(InvalidConfig::ApiKeyPlan(index));
        }
        let revocations = RevocationSet {
            jtis: config
                .revocations
                .jtis
                .iter()
                .map(|r| r.jti.clone())
                .collect(),
            subjects: config.revocations.subjects.iter().cloned().collect(),
            key_ids: config.revocations.key_ids.iter().cloned().collect(),
        };
        Ok(Policy {
            version: config.version.clone(),
            claim_rules: ClaimRules {
                issuers: [config.issuer.clone()].into(),
                audiences: config.audiences.iter().cloned().collect(),
                clock_skew_seconds: config.clock_skew_seconds,
            },
            max_token_lifetime_seconds: config.max_token_lifetime_seconds,
            keys,
            keys_by_kid,
            api_keys,
            revocations,
            routes,
            cache_entries: config.cache.max_entries,
            quotas,
        })
    }

    /// The first route whose prefix and method match, in configuration order.
    pub fn route_for(&self, path: &str, method: &str) -> Option<&Rc<Route>> {
        self.routes.iter().find(|r| r.matches(path, method))
    }

    /// The key a JWT names: by `kid`, or the only key when there is one and no `kid`.
    /// The key a JWT names, by `kid`, or the only key when there is one and the token names
    /// none; with the key's configured `kid`, which is what revocation checks (a token
    /// without `kid` must not escape the revocation of the key that signed it).
    pub fn key_for(&self, kid: Option<&str>) -> Option<(Option<&str>, &VerificationKey)> {
        let (configured_kid, key) = match kid {
            Some(kid) => self.keys_by_kid.get(kid).and_then(|&i| self.keys.get(i))?,
            None if self.keys.len() == 1 => self.keys.first()?,
            None => return None,
        };
        Some((configured_kid.as_deref(), key))
    }

    pub fn api_key(&self, hash: &[u8; 32]) -> Option<Rc<Identity>> {
        self.api_keys.get(hash).cloned()
    }
}

/// Keys with their configured `kid`, and where each `kid` is in that list.
type KeyTable = (
    Vec<(Option<String>, VerificationKey)>,
    HashMap<String, usize>,
);

fn compile_keys(config: &Config) -> Result<KeyTable, InvalidConfig> {
    let jwks = &config.keys.keys;
    let mut keys = Vec::with_capacity(jwks.len());
    let mut by_kid = HashMap::new();
    for (index, jwk) in jwks.iter().enumerate() {
        let key = VerificationKey::from_jwk(jwk)
            .map_err(|source| InvalidConfig::Key { index, source })?;
        keys.push((jwk.kid.clone(), key));
        match &jwk.kid {
            Some(kid) if by_kid.insert(kid.clone(), index).is_some() => {
                return Err(InvalidConfig::DuplicateKid(kid.clone()));
            }
            Some(_) => {}
            None if jwks.len() > 1 => return Err(InvalidConfig::MissingKid(index)),
            None => {}
        }
    }
    Ok((keys, by_kid))
}

fn compile_api_keys(
    entries: &[ApiKeyEntry],
) -> Result<HashMap<[u8; 32], Rc<Identity>>, InvalidConfig> {
    let mut api_keys = HashMap::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let hash = parse_sha256_hex(&entry.sha256).ok_or(InvalidConfig::BadApiKeyHash(index))?;
        if entry.subject.is_empty() || entry.id.is_empty() {
            return Err(InvalidConfig::ApiKeyIdentity(index));
        }
        let identity = Identity {
            kind: CredentialKind::ApiKey {
                id: entry.id.clone(),
            },
            subject: entry.subject.clone(),
            tenant: entry.tenant.clone(),
            scopes: entry.scopes.clone(),
            models: Some(entry.models.clone()),
            plan: entry.plan.clone(),
            expires_at: entry.expires_at,
        };
        if api_keys.insert(hash, Rc::new(identity)).is_some() {
            return Err(InvalidConfig::DuplicateApiKey(index));
        }
    }
    Ok(api_keys)
}

fn compile_providers(
    configs: &[ProviderConfig],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<String, Rc<Provider>>, InvalidConfig> {
    let mut providers = HashMap::new();
    for (index, p) in configs.iter().enumerate() {
        if p.name.is_empty() || p.cluster.is_empty() || p.authority.is_empty() {
            return Err(InvalidConfig::ProviderFields(index));
        }
        let secret = match &p.credential {
            CredentialSource::Inline(value) => value.clone(),
            CredentialSource::Env(var) => {
                env(var).ok_or_else(|| InvalidConfig::MissingEnvCredential {
                    index,
                    var: var.clone(),
                })?
            }
        };
        let secret = secret.trim().to_string();
        if secret.is_empty() || !is_header_value(&secret) {
            return Err(InvalidConfig::BadCredential(index));
        }
        let (credential_header, credential_value) = match p.style {
            ProviderStyle::Openai => ("authorization", format!("Bearer {secret}")),
            ProviderStyle::Anthropic => ("x-api-key", secret),
            ProviderStyle::Gemini => ("x-goog-api-key", secret),
            ProviderStyle::AzureOpenai => ("api-key", secret),
        };
        let mut upstream_headers = vec![
            (credential_header.to_string(), credential_value.into_bytes()),
            (":authority".to_string(), p.authority.clone().into_bytes()),
            (CLUSTER_HEADER.to_string(), p.cluster.clone().into_bytes()),
        ];
        for (name, value) in &p.headers {
            let name = name.to_ascii_lowercase();
            if !is_settable_header_name(&name) || !is_header_value(value) {
                return Err(InvalidConfig::BadProviderHeader { index, name });
            }
            upstream_headers.push((name, value.clone().into_bytes()));
        }
        let needs_default_anthropic_version = p.style == ProviderStyle::Anthropic
            && !upstream_headers
                .iter()
                .any(|(n, _)| n == "anthropic-version");
        let provider = Provider {
            name: p.name.clone(),
            style: p.style,
            upstream_headers: upstream_headers.into(),
            needs_default_anthropic_version,
        };
        if providers
            .insert(p.name.clone(), Rc::new(provider))
            .is_some()
        {
            return Err(InvalidConfig::DuplicateProvider(p.name.clone()));
        }
    }
    Ok(providers)
}

fn compile_routes(
    configs: &[RouteConfig],
    providers: &HashMap<String, Rc<Provider>>,
) -> Result<Vec<Rc<Route>>, InvalidConfig> {
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(configs.len());
    for (index, r) in configs.iter().enumerate() {
        if r.name.is_empty() || !r.path_prefix.starts_with('/') {
            return Err(InvalidConfig::RouteFields(index));
        }
        if !names.insert(r.name.as_str()) {
            return Err(InvalidConfig::DuplicateRoute(r.name.clone()));
        }
        if let Some(method) = r
            .methods
            .iter()
            .find(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(InvalidConfig::BadMethod {
                index,
                method: method.clone(),
            });
        }
        if r.max_body_bytes == 0 || r.max_body_bytes > MAX_BODY_LIMIT {
            return Err(InvalidConfig::BodyLimit(index));
        }
        let lookup = |name: &String| {
            providers
                .get(name)
                .cloned()
                .ok_or_else(|| InvalidConfig::UnknownProvider {
                    index,
                    provider: name.clone(),
                })
        };
        let provider = match (&r.provider, r.model_providers.as_slice()) {
            (Some(name), []) => ProviderChoice::Fixed(lookup(name)?),
            (None, list) if !list.is_empty() => {
                if r.model_source != ModelSource::GeminiPath {
                    return Err(InvalidConfig::ModelProvidersWithoutModel(index));
                }
                let mut by_model = Vec::with_capacity(list.len());
                for mp in list {
                    by_model.push((mp.pattern.clone(), lookup(&mp.provider)?));
                }
                ProviderChoice::ByModel(by_model)
            }
            _ => return Err(InvalidConfig::ProviderChoice(index)),
        };
        routes.push(Rc::new(Route {
            name: r.name.clone(),
            path_prefix: r.path_prefix.clone(),
            methods: r.methods.clone(),
            required_scopes: r.required_scopes.clone(),
            model_source: r.model_source,
            provider,
            max_body_bytes: r.max_body_bytes,
            allow_query_credential: r.allow_query_credential,
        }));
    }
    Ok(routes)
}

/// serde_json quotes the offending value of a type error (`invalid type: string "…"`), which
/// could be a provider key typed into the wrong field: drop quoted values from the message
/// that gets logged. Field names stay readable (serde puts them in backticks).
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Visible ASCII and spaces only: what every proxy forwards unchanged.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// A lowercase token that is not a pseudo-header, a credential header the filter manages, or
/// one of its own.
fn is_settable_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !crate::credential::CREDENTIAL_HEADERS.contains(&name)
        && !name.starts_with(crate::credential::INTERNAL_HEADER_PREFIX)
        && name != "host"
}

#[cfg(test)]
mod tests;
