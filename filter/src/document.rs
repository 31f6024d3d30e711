//! Reading the configuration document so that one bad entry cannot hold back the rest. The
//! security core (issuer, audiences, lifetimes, revocations, cache) is read strictly: if it
//! does not parse, the whole document is refused and the last good one stays in force. Each
//! catalog entry (a key, an API key, a provider, a route, a plan, a price) is read on its own;
//! one that does not parse is kept as `Unreadable`, so `Policy` can disable just that entry
//! and keys and revocations still take effect (a newer control plane, a typo in one route).
//!
//! Owns no meaning: which entries are valid and what a refused entry disables is `policy`'s.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::{
    ApiKeyEntry, Config, Jwk, PlanConfig, PriceConfig, ProviderConfig, RouteConfig,
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
        // serde_json's Value keeps the last of two equal keys: a second `revocations` would
        // silently replace the first. The strict schema refused that; so does this.
        crate::json::check_unique_keys(bytes).map_err(|e| DocumentError(e.0))?;
        let value: Value = serde_json::from_slice(bytes).map_err(syntax)?;
        let Value::Object(mut top) = value else {
            return Err(DocumentError(
                "the configuration is not a JSON object".into(),
            ));
        };
        let mut keys = Vec::new();
        if let Some(set) = top.get_mut("keys") {
            let Value::Object(set) = set else {
                return Err(DocumentError("`keys` is not a JWK set object".into()));
            };
            keys = entries(set.get_mut("keys"), "keys.keys")?;
            set.insert("keys".into(), Value::Array(Vec::new()));
        }
        let api_keys = entries(top.get_mut("api_keys"), "api_keys")?;
        let providers = entries(top.get_mut("providers"), "providers")?;
        let routes = entries(top.get_mut("routes"), "routes")?;
        let prices = entries(top.get_mut("prices"), "prices")?;
        let plans = match top.get_mut("plans").map(Value::take) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(plans)) => plans
                .into_iter()
                .map(|(name, plan)| (name, entry(plan)))
                .collect(),
            Some(_) => return Err(DocumentError("`plans` is not an object".into())),
        };
        // The core: required sections present but emptied above, unknown fields refused.
        for section in ["providers", "routes"] {
            if let Some(v) = top.get_mut(section) {
                *v = Value::Array(Vec::new());
            }
        }
        for section in ["api_keys", "prices", "plans"] {
            top.remove(section);
        }
        let core: Config = serde_json::from_value(Value::Object(top)).map_err(syntax)?;
        Ok(Document {
            core,
            keys,
            api_keys,
            providers,
            routes,
            plans,
            prices,
        })
    }
}

/// The entries of a catalog list, each read on its own; the list itself must be a list.
fn entries<T: DeserializeOwned>(
    list: Option<&mut Value>,
    what: &str,
) -> Result<Vec<Entry<T>>, DocumentError> {
    match list.map(Value::take) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.into_iter().map(entry).collect()),
        Some(_) => Err(DocumentError(format!("`{what}` is not a list"))),
    }
}

fn entry<T: DeserializeOwned>(value: Value) -> Entry<T> {
    let read = Unreadable::of(&value);
    serde_json::from_value(value).map_err(|e| {
        Box::new(Unreadable {
            reason: crate::policy::redact_values(&e.to_string()),
            ..read
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
    DocumentError(crate::policy::redact_values(&e.to_string()))
}
