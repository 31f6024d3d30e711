//! The compiled configuration: `Policy::compile` validates a `Config` as a whole and turns
//! it into lookup structures (keys by kid, API keys by hash, revocation sets, the route
//! table, providers with their ready-made upstream headers). Nothing here is re-parsed per
//! request.
//!
//! Only the security core (issuer, audiences, revocations) can refuse the whole document. A
//! catalog entry that cannot be loaded — a provider whose credential the VM lacks, a route,
//! plan, price, key or API key that is invalid or from a newer schema — is an
//! `UnavailablePart`: it disables only itself (its requests get a 503 naming it), so keys and
//! revocations always take effect. `Policy::compile`, the control plane's check, is strict:
//! any unavailable part is an error there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::config::MAX_BODY_LIMIT;
use crate::config::{
    ApiKeyEntry, Config, Jwk, ModelSource, ProviderConfig, ProviderStyle, RouteConfig,
};
use crate::document::{redact_values, Document, Entry};
use crate::identity::{CredentialKind, Identity};
use crate::invalid::Unavailable;
pub use crate::invalid::{InvalidConfig, PartKind, UnavailablePart};
use crate::keys::{ClaimRules, VerificationKey};
use crate::provider::Provider;
use crate::quota::Quotas;

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
    Fixed(Arc<Provider>),
    ByModel(Vec<(String, Arc<Provider>)>),
    /// The route could not be loaded. It keeps its place in the table, matching every
    /// request it could have matched, so none falls through to a later, broader route.
    Unavailable,
}

impl Route {
    fn matches(&self, path: &str, method: &str) -> bool {
        path.starts_with(&self.path_prefix)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }

    /// A route that could not be loaded: what could be read of its prefix and methods, or
    /// every request when those are unreadable too.
    fn unavailable(name: String, path_prefix: Option<&str>, methods: Option<&[String]>) -> Route {
        let path_prefix = path_prefix.filter(|p| p.starts_with('/')).unwrap_or("/");
        let methods = methods
            .filter(|ms| ms.iter().all(|m| is_method(m)))
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        Route {
            name,
            path_prefix: path_prefix.to_string(),
            methods,
            required_scopes: Vec::new(),
            model_source: ModelSource::None,
            provider: ProviderChoice::Unavailable,
            max_body_bytes: crate::config::default_max_body_bytes(),
            allow_query_credential: false,
        }
    }
}

fn is_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase())
}

#[derive(Debug)]
pub struct Policy {
    pub version: Option<String>,
    pub claim_rules: ClaimRules,
    pub max_token_lifetime_seconds: u64,
    /// Each key with its configured `kid`.
    keys: Vec<(Option<String>, VerificationKey)>,
    keys_by_kid: HashMap<String, usize>,
    api_keys: HashMap<[u8; 32], Arc<Identity>>,
    pub revocations: RevocationSet,
    routes: Vec<Arc<Route>>,
    pub cache_entries: usize,
    pub quotas: Quotas,
    /// What could not be loaded, each disabling only itself.
    unavailable: Vec<UnavailablePart>,
}

impl Policy {
    /// Parses the document strictly and compiles it strictly: every part must load. What
    /// the control plane checks before it stores a change.
    pub fn from_json(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, InvalidConfig> {
        let config = Config::from_json(bytes)
            .map_err(|e| InvalidConfig::Syntax(redact_values(&e.to_string())))?;
        Policy::compile(&config, env)
    }

    /// What the filter applies: the security core must be valid, every catalog entry that
    /// cannot be loaded is listed in `unavailable()` and disables only itself. `env` reads
    /// the Wasm VM's environment.
    pub fn load(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, InvalidConfig> {
        let document = Document::from_json(bytes).map_err(|e| InvalidConfig::Syntax(e.0))?;
        Policy::compile_document(document, env)
    }

    /// Compiles a configuration strictly: the first part that cannot be loaded is the error.
    pub fn compile(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, InvalidConfig> {
        let policy = Policy::compile_document(Document::from(config.clone()), env)?;
        match policy.unavailable.first() {
            Some(part) => Err(part.reason.clone()),
            None => Ok(policy),
        }
    }

    /// Compiles a document; only its core can fail.
    pub fn compile_document(
        document: Document,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Policy, InvalidConfig> {
        let config = &document.core;
        if config.issuer.is_empty() {
            return Err(InvalidConfig::Empty("issuer"));
        }
        if config.audiences.is_empty() || config.audiences.iter().any(String::is_empty) {
            return Err(InvalidConfig::Empty("audiences"));
        }
        let mut unavailable = Unavailable::default();
        let (keys, keys_by_kid) = compile_keys(&document.keys, &mut unavailable);
        let providers = compile_providers(&document.providers, env, &mut unavailable);
        let routes = compile_routes(&document.routes, &providers, &mut unavailable);
        let quotas = Quotas::compile(
            &document.plans,
            config.default_plan.as_deref(),
            &document.prices,
            &mut unavailable,
        );
        let api_keys = compile_api_keys(&document.api_keys, &quotas, &mut unavailable);
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
            unavailable: unavailable.into_parts(),
        })
    }

    /// The parts of the configuration that could not be loaded.
    pub fn unavailable(&self) -> &[UnavailablePart] {
        &self.unavailable
    }

    /// The first route whose prefix and method match, in configuration order.
    pub fn route_for(&self, path: &str, method: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(path, method))
    }

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

    pub fn api_key(&self, hash: &[u8; 32]) -> Option<Arc<Identity>> {
        self.api_keys.get(hash).cloned()
    }
}

/// Keys with their configured `kid`, and where each `kid` is in that list.
type KeyTable = (
    Vec<(Option<String>, VerificationKey)>,
    HashMap<String, usize>,
);

/// Keys that cannot be loaded are left out: a token they signed is refused. A `kid` that
/// appears twice is left out altogether (which of the two verifies is ambiguous).
fn compile_keys(entries: &[Entry<Jwk>], unavailable: &mut Unavailable) -> KeyTable {
    let name =
        |jwk: &Jwk, index: usize| jwk.kid.clone().unwrap_or_else(|| format!("keys[{index}]"));
    // Counted over every entry, readable or not: a twin that cannot be loaded still makes
    // the kid ambiguous.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for kid in entries.iter().filter_map(|e| match e {
        Ok(jwk) => jwk.kid.as_deref(),
        Err(unreadable) => unreadable.kid.as_deref(),
    }) {
        *seen.entry(kid).or_default() += 1;
    }
    let mut keys = Vec::with_capacity(entries.len());
    let mut by_kid = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let jwk = match entry {
            Ok(jwk) => jwk,
            Err(unreadable) => {
                unavailable.unreadable(PartKind::Key, index, unreadable);
                continue;
            }
        };
        let problem = match &jwk.kid {
            Some(kid) if seen.get(kid.as_str()).is_some_and(|&n| n > 1) => {
                Some(InvalidConfig::DuplicateKid(kid.clone()))
            }
            None if entries.len() > 1 => Some(InvalidConfig::MissingKid(index)),
            _ => None,
        };
        let key = match problem {
            Some(problem) => Err(problem),
            None => VerificationKey::from_jwk(jwk)
                .map_err(|source| InvalidConfig::Key { index, source }),
        };
        match key {
            Ok(key) => {
                if let Some(kid) = &jwk.kid {
                    by_kid.insert(kid.clone(), keys.len());
                }
                keys.push((jwk.kid.clone(), key));
            }
            Err(reason) => unavailable.add(PartKind::Key, name(jwk, index), reason),
        }
    }
    (keys, by_kid)
}

/// API keys that cannot be loaded are left out (refused as unknown). A hash that appears
/// twice is left out altogether: which identity it stands for is ambiguous.
fn compile_api_keys(
    entries: &[Entry<ApiKeyEntry>],
    quotas: &Quotas,
    unavailable: &mut Unavailable,
) -> HashMap<[u8; 32], Arc<Identity>> {
    let mut api_keys = HashMap::with_capacity(entries.len());
    // Counted over every entry (readable or not, hex in any case) before any is accepted: a
    // hash that appears twice stands for no one, whichever twin would otherwise load.
    let mut counts: HashMap<[u8; 32], usize> = HashMap::new();
    for hex in entries.iter().filter_map(|e| match e {
        Ok(entry) => Some(entry.sha256.as_str()),
        Err(unreadable) => unreadable.sha256.as_deref(),
    }) {
        if let Some(hash) = parse_sha256_hex(&hex.to_ascii_lowercase()) {
            *counts.entry(hash).or_default() += 1;
        }
    }
    for (index, entry) in entries.iter().enumerate() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(unreadable) => {
                unavailable.unreadable(PartKind::ApiKey, index, unreadable);
                continue;
            }
        };
        let name = if entry.id.is_empty() {
            format!("api_keys[{index}]")
        } else {
            entry.id.clone()
        };
        let Some(hash) = parse_sha256_hex(&entry.sha256) else {
            unavailable.add(PartKind::ApiKey, name, InvalidConfig::BadApiKeyHash(index));
            continue;
        };
        let problem = if entry.subject.is_empty() || entry.id.is_empty() {
            Some(InvalidConfig::ApiKeyIdentity(index))
        } else if entry
            .plan
            .as_deref()
            .is_some_and(|plan| !quotas.has_plan(plan))
        {
            // A plan that exists but could not be loaded keeps the key: its requests are
            // refused with the plan's 503. A plan that does not exist at all is a mistake.
            Some(InvalidConfig::ApiKeyPlan(index))
        } else if counts.get(&hash).is_some_and(|&n| n > 1) {
            Some(InvalidConfig::DuplicateApiKey(index))
        } else {
            None
        };
        if let Some(problem) = problem {
            unavailable.add(PartKind::ApiKey, name, problem);
            continue;
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
        api_keys.insert(hash, Arc::new(identity));
    }
    api_keys
}

/// Providers by name. One that cannot be loaded is kept as unavailable under its name, so
/// its routes answer 503 `provider_unavailable`; a name used twice is unavailable too.
fn compile_providers(
    entries: &[Entry<ProviderConfig>],
    env: &dyn Fn(&str) -> Option<String>,
    unavailable: &mut Unavailable,
) -> HashMap<String, Arc<Provider>> {
    let mut providers: HashMap<String, Arc<Provider>> = HashMap::new();
    let mut names = HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let p = match entry {
            Ok(p) => p,
            Err(unreadable) => {
                unavailable.unreadable(PartKind::Provider, index, unreadable);
                if let Some(name) = &unreadable.name {
                    names.insert(name.clone());
                    let placeholder = Provider::unavailable(name, ProviderStyle::Openai);
                    providers.insert(name.clone(), Arc::new(placeholder));
                }
                continue;
            }
        };
        if p.name.is_empty() {
            let name = format!("providers[{index}]");
            unavailable.add(
                PartKind::Provider,
                name,
                InvalidConfig::ProviderFields(index),
            );
            continue;
        }
        let compiled = if !names.insert(p.name.clone()) {
            Err(InvalidConfig::DuplicateProvider(p.name.clone()))
        } else {
            Provider::compile(index, p, env)
        };
        match compiled {
            Ok(provider) => {
                providers.insert(p.name.clone(), Arc::new(provider));
            }
            Err(reason) => {
                unavailable.add(PartKind::Provider, p.name.clone(), reason);
                let placeholder = Provider::unavailable(&p.name, p.style);
                providers.insert(p.name.clone(), Arc::new(placeholder));
            }
        }
    }
    providers
}

/// The route table in configuration order. A route that cannot be loaded keeps its place
/// as an unavailable route (see `ProviderChoice::Unavailable`).
fn compile_routes(
    entries: &[Entry<RouteConfig>],
    providers: &HashMap<String, Arc<Provider>>,
    unavailable: &mut Unavailable,
) -> Vec<Arc<Route>> {
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let route = match entry {
            Ok(r) => compile_route(index, r, providers, &mut names).unwrap_or_else(|reason| {
                let name = if r.name.is_empty() {
                    format!("routes[{index}]")
                } else {
                    r.name.clone()
                };
                unavailable.add(PartKind::Route, name.clone(), reason);
                Route::unavailable(name, Some(&r.path_prefix), Some(&r.methods))
            }),
            Err(unreadable) => {
                unavailable.unreadable(PartKind::Route, index, unreadable);
                let name = unreadable
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("routes[{index}]"));
                Route::unavailable(
                    name,
                    unreadable.path_prefix.as_deref(),
                    unreadable.methods.as_deref(),
                )
            }
        };
        routes.push(Arc::new(route));
    }
    routes
}

fn compile_route<'c>(
    index: usize,
    r: &'c RouteConfig,
    providers: &HashMap<String, Arc<Provider>>,
    names: &mut HashSet<&'c str>,
) -> Result<Route, InvalidConfig> {
    if r.name.is_empty() || !r.path_prefix.starts_with('/') {
        return Err(InvalidConfig::RouteFields(index));
    }
    if !names.insert(r.name.as_str()) {
        return Err(InvalidConfig::DuplicateRoute(r.name.clone()));
    }
    if let Some(method) = r.methods.iter().find(|m| !is_method(m)) {
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
    Ok(Route {
        name: r.name.clone(),
        path_prefix: r.path_prefix.clone(),
        methods: r.methods.clone(),
        required_scopes: r.required_scopes.clone(),
        model_source: r.model_source,
        provider,
        max_body_bytes: r.max_body_bytes,
        allow_query_credential: r.allow_query_credential,
    })
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

#[cfg(test)]
mod tests;
