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

use crate::auth::cache::VerifiedTokenCache;
pub use crate::auth::credentials::{Credentials, RevocationSet};
use crate::auth::keys::VerificationKey;
use crate::auth::token;
use crate::config::MAX_BODY_LIMIT;
use crate::config::{Config, ModelSource, ProviderConfig, ProviderStyle, RouteConfig};
use crate::document::{redact_values, Document, Entry};
use crate::error::{ErrorStyle, Refusal};
use crate::guard::GuardSettings;
use crate::identity::Identity;
use crate::invalid::Unavailable;
pub use crate::invalid::{InvalidConfig, PartKind, UnavailablePart};
use crate::provider::{self, Provider};
use crate::quota::Quotas;

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
    /// Matches only requests carrying this header.
    when_header: Option<String>,
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
    /// The error shape of the API this route's provider speaks (by model: its first
    /// provider's; the families a route mixes share a path, so they share a shape).
    pub fn error_style(&self) -> ErrorStyle {
        match &self.provider {
            ProviderChoice::Fixed(provider) => provider::error_style(provider.style),
            ProviderChoice::ByModel(list) => list
                .first()
                .map_or(ErrorStyle::OpenAi, |(_, p)| provider::error_style(p.style)),
            ProviderChoice::Unavailable => ErrorStyle::OpenAi,
        }
    }

    fn matches(&self, path: &str, method: &str, has_header: &dyn Fn(&str) -> bool) -> bool {
        path.starts_with(&self.path_prefix)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.when_header.as_deref().is_none_or(has_header)
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
            // What could not be read cannot narrow the match: it stays as broad as it can be.
            when_header: None,
        }
    }
}

fn is_method(method: &str) -> bool {
    !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase())
}

#[derive(Debug)]
pub struct Policy {
    pub version: Option<String>,
    /// What authenticates a caller: keys, claim rules, API keys, revocations.
    pub credentials: Credentials,
    routes: Vec<Arc<Route>>,
    pub cache_entries: usize,
    pub quotas: Quotas,
    /// The sync channel, when the configuration names one (usage reports).
    pub sync: Option<Arc<crate::sync::SyncSettings>>,
    /// The failed-authentication guard; `None` when it is turned off.
    pub guard: Option<Arc<GuardSettings>>,
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
        let providers = compile_providers(&document.providers, env, &mut unavailable);
        let routes = compile_routes(&document.routes, &providers, &mut unavailable);
        let quotas = Quotas::compile(
            &document.plans,
            config.default_plan.as_deref(),
            &document.prices,
            &mut unavailable,
        );
        let credentials = Credentials::compile(
            config,
            &document.keys,
            &document.api_keys,
            &quotas,
            &mut unavailable,
        );
        // A channel that cannot be set up costs the reports, never the keys and revocations.
        let sync = config.sync.as_ref().and_then(|sync| {
            crate::sync::SyncSettings::compile(sync, env)
                .map_err(|reason| unavailable.add(PartKind::Sync, "sync".into(), reason))
                .ok()
                .map(Arc::new)
        });
        // Settings out of bounds keep the defaults in force: protection is never lost to a
        // typo, and the part shows as unavailable.
        let failed_auth = config.guard.clone().unwrap_or_default().failed_auth;
        let guard = GuardSettings::compile(&failed_auth)
            .unwrap_or_else(|reason| {
                unavailable.add(PartKind::Guard, "guard".into(), reason);
                Some(GuardSettings::defaults())
            })
            .map(Arc::new);
        Ok(Policy {
            version: config.version.clone(),
            credentials,
            routes,
            cache_entries: config.cache.max_entries,
            quotas,
            sync,
            guard,
            unavailable: unavailable.into_parts(),
        })
    }

    /// The parts of the configuration that could not be loaded.
    pub fn unavailable(&self) -> &[UnavailablePart] {
        &self.unavailable
    }

    /// The first route whose prefix and method match, in configuration order.
    pub fn route_for(&self, path: &str, method: &str) -> Option<&Arc<Route>> {
        self.route_for_request(path, method, &|_| false)
    }

    /// The first route that matches, `has_header` saying which headers the request carries
    /// (for routes with `when_header`).
    pub fn route_for_request(
        &self,
        path: &str,
        method: &str,
        has_header: &dyn Fn(&str) -> bool,
    ) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| r.matches(path, method, has_header))
    }

    /// See `Credentials::key_for`.
    pub fn key_for(&self, kid: Option<&str>) -> Option<(Option<&str>, &VerificationKey)> {
        self.credentials.key_for(kid)
    }

    pub fn api_key(&self, hash: &[u8; 32]) -> Option<Arc<Identity>> {
        self.credentials.api_key(hash)
    }

    /// Verifies `credential` (JWT or API key) at `now` without a cache, revocation included:
    /// the verdict the gateway gives, for the control plane's check of its own callers.
    pub fn authenticate(&self, credential: &str, now: u64) -> Result<Arc<Identity>, Refusal> {
        token::authenticate(
            &self.credentials,
            &mut VerifiedTokenCache::new(0),
            credential,
            now,
        )
    }
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
    if r.when_header.as_deref().is_some_and(|h| {
        h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    }) {
        return Err(InvalidConfig::BadRouteHeader(index));
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
        when_header: r.when_header.clone(),
    })
}

#[cfg(test)]
mod tests;
