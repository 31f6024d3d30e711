//! Reading the configuration document so that one bad entry cannot hold back the rest. The
//! security core (issuer, audiences, lifetimes, revocations, cache) is read strictly: if it
//! does not parse, the whole document is refused and the last good one stays in force. Each
//! catalog entry (a key, an API key, a provider, a route, a plan, a price) is read on its own;
//! one that does not parse is kept as `Unreadable`, so `Policy` can disable just that entry
//! and keys and revocations still take effect (a newer control plane, a typo in one route).
//!
//! Owns no meaning: which entries are valid and what a refused entry disables is `policy`'s.

use std::borrow::Cow;

use crate::config::read::{self, Fields, Node, Read, ReadError};
use crate::config::{
    ApiKeyEntry, Config, Jwk, PlanConfig, PriceConfig, ProviderConfig, RouteConfig, CONFIG_FIELDS,
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
        Document::from_node(&parse(bytes)?)
    }

    /// Reads a document already parsed by `parse`.
    pub fn from_node(value: &Node) -> Result<Document, DocumentError> {
        Document::read(value).map_err(syntax)
    }

    fn read(value: &Node) -> Read<Document> {
        let fields = Fields::of(value, CONFIG_FIELDS)?;
        let keys = match fields.get("keys") {
            None | Some(Node::Null) => &[],
            Some(set) => {
                let set = Fields::of(set, &["keys"]).map_err(|e| e.within("keys"))?;
                catalog(&set, "keys", false).map_err(|e| e.within("keys"))?
            }
        };
        let plans = match fields.get("plans") {
            None | Some(Node::Null) => Vec::new(),
            Some(Node::Object(plans)) => plans
                .iter()
                .map(|(name, plan)| (name.to_string(), entry(plan, PlanConfig::read)))
                .collect(),
            Some(other) => return Err(ReadError::invalid_type(other, "a map").within("plans")),
        };
        Ok(Document {
            core: Config::read_core(&fields)?,
            keys: entries(keys, Jwk::read),
            api_keys: entries(catalog(&fields, "api_keys", true)?, ApiKeyEntry::read),
            providers: entries(catalog(&fields, "providers", false)?, ProviderConfig::read),
            routes: entries(catalog(&fields, "routes", false)?, RouteConfig::read),
            plans,
            prices: entries(catalog(&fields, "prices", true)?, PriceConfig::read),
        })
    }
}

/// A catalog list (absent or `null` is empty when `optional`): only its shape is checked
/// here, each entry is read on its own.
fn catalog<'a>(fields: &Fields<'a>, name: &str, optional: bool) -> Read<&'a [Node<'a>]> {
    match fields.get(name) {
        Some(Node::Array(items)) => Ok(items),
        None | Some(Node::Null) if optional => Ok(&[]),
        None => Err(ReadError::new(format!("missing field `{name}`"))),
        Some(other) => Err(ReadError::invalid_type(other, "a sequence").within(name)),
    }
}

fn entries<T>(list: &[Node], read: fn(&Node) -> Read<T>) -> Vec<Entry<T>> {
    list.iter().map(|item| entry(item, read)).collect()
}

fn entry<T>(value: &Node, read: fn(&Node) -> Read<T>) -> Entry<T> {
    read(value).map_err(|e| {
        Box::new(Unreadable {
            reason: e.to_string(),
            ..Unreadable::of(value)
        })
    })
}

impl Unreadable {
    fn of(value: &Node) -> Unreadable {
        let text = |field: &str| value.get(field).and_then(Node::as_str).map(str::to_string);
        Unreadable {
            name: text("name")
                .or_else(|| text("kid"))
                .or_else(|| text("id"))
                .or_else(|| text("model")),
            path_prefix: text("path_prefix"),
            methods: match value {
                Node::Object(members) => methods(members),
                _ => None,
            },
            kid: text("kid"),
            sha256: text("sha256"),
            reason: String::new(),
        }
    }
}

fn methods(members: &[(Cow<str>, Node)]) -> Option<Vec<String>> {
    match members.iter().find(|(k, _)| k == "methods").map(|(_, v)| v) {
        None => Some(Vec::new()),
        Some(Node::Array(items)) => items
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect(),
        Some(_) => None,
    }
}

/// The text as JSON, every object's keys unique.
pub fn parse(bytes: &[u8]) -> Result<Node<'_>, DocumentError> {
    read::parse(bytes).map_err(syntax)
}

fn syntax(e: ReadError) -> DocumentError {
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
