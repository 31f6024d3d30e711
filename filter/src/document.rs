//! Reading the configuration document so that one bad entry cannot hold back the rest. The
//! security core (issuer, audiences, lifetimes, revocations, cache) is read strictly: if it
//! does not parse, the whole document is refused and the last good one stays in force. Each
//! catalog entry (a key, an API key, a provider, a route, a plan, a price) is read on its own;
//! one that does not parse is kept as `Unreadable`, so `Policy` can disable just that entry
//! and keys and revocations still take effect (a newer control plane, a typo in one route).
//!
//! Owns no meaning: which entries are valid and what a refused entry disables is `policy`'s.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::config::{
    default_clock_skew, default_max_lifetime, ApiKeyEntry, CacheConfig, Config, GuardConfig, Jwk,
    JwkSet,
    PlanConfig, PriceConfig, ProviderConfig, Revocations, RouteConfig, SyncConfig,
};

/// What could be read of an entry that did not parse: enough to name it and, for a route,
/// to know which requests it would have matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// `name` (`kid` for a key, `id` for an API key, `model` for a price), when it is a string.
    pub name: Option<String>,
    /// A route's `path_prefix`, when it is a string.
    pub path_prefix: Option<String>,
    /// A route's `methods`, when they are a list of strings.
    pub methods: Option<Vec<String>>,
    /// A key's `kid` and an API key's `sha256`, when they are strings: a repeated one must
    /// disable its readable twin too.
    pub kid: Option<String>,
    pub sha256: Option<String>,
    /// Why it did not parse, without any of its values.
    pub reason: String,
}

/// An entry as read: parsed, or what could be read of it.
pub type Entry<T> = Result<T, Box<Unreadable>>;

/// The document, its catalog entries read one by one.
#[derive(Debug, Clone)]
pub struct Document {
    /// The security core; its catalog sections are empty (they are the fields below).
    pub core: Config,
    pub keys: Vec<Entry<Jwk>>,
    pub api_keys: Vec<Entry<ApiKeyEntry>>,
    pub providers: Vec<Entry<ProviderConfig>>,
    pub routes: Vec<Entry<RouteConfig>>,
    pub plans: Vec<(String, Entry<PlanConfig>)>,
    pub prices: Vec<Entry<PriceConfig>>,
}

impl From<Config> for Document {
    fn from(mut config: Config) -> Document {
        let keys = std::mem::take(&mut config.keys.keys);
        let api_keys = std::mem::take(&mut config.api_keys);
        let providers = std::mem::take(&mut config.providers);
        let routes = std::mem::take(&mut config.routes);
        let plans = std::mem::take(&mut config.plans);
        let prices = std::mem::take(&mut config.prices);
        Document {
            core: config,
            keys: keys.into_iter().map(Ok).collect(),
            api_keys: api_keys.into_iter().map(Ok).collect(),
            providers: providers.into_iter().map(Ok).collect(),
            routes: routes.into_iter().map(Ok).collect(),
            plans: plans.into_iter().map(|(name, p)| (name, Ok(p))).collect(),
            prices: prices.into_iter().map(Ok).collect(),
        }
    }
}

/// Why the document as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError(pub String);

impl Document {
    /// Reads a document: the core strictly, each catalog entry on its own.
    pub fn from_json(bytes: &[u8]) -> Result<Document, DocumentError> {
        // serde_json keeps the last of two equal keys in a map: a second `revocations` would
        // silently replace the first. Refused here, for every object.
        crate::json::check_unique_keys(bytes).map_err(|e| DocumentError(e.0))?;
        // One pass over the text: the core is parsed, each catalog entry only delimited, then
        // parsed from its own slice (no intermediate `Value` tree; that cost 3-5x the time).
        let parts: Parts = serde_json::from_slice(bytes).map_err(syntax)?;
        let core = Config {
            version: parts.version,
            issuer: parts.issuer,
            audiences: parts.audiences,
            clock_skew_seconds: parts.clock_skew_seconds,
            max_token_lifetime_seconds: parts.max_token_lifetime_seconds,
            keys: JwkSet::default(),
            api_keys: Vec::new(),
            revocations: parts.revocations,
            providers: Vec::new(),
            routes: Vec::new(),
            cache: parts.cache,
            plans: BTreeMap::new(),
            default_plan: parts.default_plan,
            prices: Vec::new(),
            sync: parts.sync,
            guard: parts.guard,
        };
        Ok(Document {
            core,
            keys: entries(parts.keys.map(|set| set.keys)),
            api_keys: entries(parts.api_keys),
            providers: entries(Some(parts.providers)),
            routes: entries(Some(parts.routes)),
            plans: parts
                .plans
                .unwrap_or_default()
                .into_iter()
                .map(|(name, plan)| (name, entry(plan)))
                .collect(),
            prices: entries(parts.prices),
        })
    }
}

/// The document as written: the core's fields typed (unknown ones refused, as `Config`
/// refuses them), the catalog's entries as their own text. Mirrors `Config` field for field;
/// building the core from it names every field, so one added there cannot be forgotten here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Parts<'a> {
    #[serde(default)]
    version: Option<String>,
    issuer: String,
    audiences: Vec<String>,
    #[serde(default = "default_clock_skew")]
    clock_skew_seconds: u64,
    #[serde(default = "default_max_lifetime")]
    max_token_lifetime_seconds: u64,
    #[serde(default, borrow)]
    keys: Option<RawKeys<'a>>,
    #[serde(default, borrow)]
    api_keys: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    revocations: Revocations,
    #[serde(borrow)]
    providers: Vec<&'a RawValue>,
    #[serde(borrow)]
    routes: Vec<&'a RawValue>,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default, borrow)]
    plans: Option<BTreeMap<String, &'a RawValue>>,
    #[serde(default)]
    default_plan: Option<String>,
    #[serde(default, borrow)]
    prices: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    sync: Option<SyncConfig>,
    #[serde(default)]
    guard: Option<GuardConfig>,
}

/// A JWK set, its keys as their own text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

/// The entries of a catalog list, each read on its own.
fn entries<T: DeserializeOwned>(list: Option<Vec<&RawValue>>) -> Vec<Entry<T>> {
    list.unwrap_or_default().into_iter().map(entry).collect()
}

fn entry<T: DeserializeOwned>(raw: &RawValue) -> Entry<T> {
    serde_json::from_slice(raw.get().as_bytes()).map_err(|e| {
        // Only an entry that did not parse is read again, loosely, to name it.
        let value = serde_json::from_slice(raw.get().as_bytes()).unwrap_or(Value::Null);
        Box::new(Unreadable {
            reason: redact_values(&e.to_string()),
            ..Unreadable::of(&value)
        })
    })
}

impl Unreadable {
    fn of(value: &Value) -> Unreadable {
        let object = value.as_object();
        let text = |field: &str| {
            object
                .and_then(|o| o.get(field))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Unreadable {
            name: text("name")
                .or_else(|| text("kid"))
                .or_else(|| text("id"))
                .or_else(|| text("model")),
            path_prefix: text("path_prefix"),
            methods: object.and_then(methods),
            kid: text("kid"),
            sha256: text("sha256"),
            reason: String::new(),
        }
    }
}

fn methods(object: &Map<String, Value>) -> Option<Vec<String>> {
    match object.get("methods") {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect(),
        Some(_) => None,
    }
}

fn syntax(e: serde_json::Error) -> DocumentError {
    DocumentError(redact_values(&e.to_string()))
}

/// serde_json quotes the offending value of a type error (`invalid type: string "…"`), which
/// could be a provider key typed into the wrong field: drop quoted values from the message
/// that gets logged. Field names stay readable (serde puts them in backticks).
pub(crate) fn redact_values(message: &str) -> String {
    // An unknown enum variant is quoted in backticks: `"credential": "sk-…"` (meant as
    // `{"inline": "sk-…"}`) would put the key in the log.
    let message = match message.split_once("unknown variant `") {
        Some((before, after)) => {
            let rest = after.split_once('`').map_or("", |(_, rest)| rest);
            format!("{before}unknown variant `…`{rest}")
        }
        None => message.to_string(),
    };
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
