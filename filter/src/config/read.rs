//! Reading the configuration types (and the few other documents the filter reads: the control
//! plane's answers, its own shared-data records) from a parsed JSON `Node` with plain code.
//! serde's derive compiles each struct's parser once per kind of input (text, `Value`, raw
//! slices…), and those copies were a third of the Wasm module; here each type has one reader,
//! over `Node` (borrowed from the text, built in one pass), and their `Deserialize` goes
//! through it too, so there is one parser, not two.
//!
//! The rules are those the types' serde attributes state (schemars reads them for the admin
//! API's schema): unknown fields refused, defaults, numbers range-checked, enums by their
//! snake_case names. An error names the field and what was expected, never the value found:
//! that could be a provider key typed into the wrong field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;

pub use crate::json::node::Node;

/// Why a value could not be read: where (`routes[2].max_body_bytes`) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    path: String,
    message: String,
}

pub type Read<T> = Result<T, ReadError>;

impl ReadError {
    pub fn new(message: impl Into<String>) -> ReadError {
        ReadError {
            path: String::new(),
            message: message.into(),
        }
    }

    pub fn invalid_type(found: &Node, expected: &str) -> ReadError {
        ReadError::new(format!(
            "invalid type: {}, expected {expected}",
            kind(found)
        ))
    }

    /// The same error seen from one level up: `segment` (a field, or `[i]`) holds the value.
    pub fn within(mut self, segment: &str) -> ReadError {
        if !self.path.is_empty() && !self.path.starts_with('[') {
            self.path.insert(0, '.');
        }
        self.path.insert_str(0, segment);
        self
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ReadError {}

/// What a value is, in serde's words, without the value itself.
fn kind(value: &Node) -> &'static str {
    match value {
        Node::Null => "null",
        Node::Bool(_) => "boolean",
        Node::Number(text) => match number(text) {
            Number::Float => "floating point",
            Number::Unsigned(_) | Number::Negative => "integer",
        },
        Node::String(_) => "string",
        Node::Array(_) => "sequence",
        Node::Object(_) => "map",
    }
}

/// A number's text as serde_json classes it: fractions, exponents and integers past 64 bits
/// are floats.
enum Number {
    Unsigned(u64),
    Negative,
    Float,
}

fn number(text: &str) -> Number {
    if text.contains(['.', 'e', 'E']) {
        return Number::Float;
    }
    match text.strip_prefix('-') {
        // serde_json reads `-0` as a float too.
        Some(digits) => match digits.parse::<u64>() {
            Ok(n) if (1..=1 << 63).contains(&n) => Number::Negative,
            _ => Number::Float,
        },
        None => text.parse().map_or(Number::Float, Number::Unsigned),
    }
}

/// `` `a`, `b` or `c` ``-style list of names, as serde words its expectations.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing".into(),
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

/// The fields of an object being read as a struct.
pub struct Fields<'a> {
    members: &'a [(Cow<'a, str>, Node<'a>)],
}

impl<'a> Fields<'a> {
    /// `value` as a struct with these fields: any other field is refused.
    pub fn of(value: &'a Node<'a>, known: &[&str]) -> Read<Fields<'a>> {
        Fields::of_known(value, Some(known))
    }

    fn of_known(value: &'a Node<'a>, known: Option<&[&str]>) -> Read<Fields<'a>> {
        let Node::Object(members) = value else {
            return Err(ReadError::invalid_type(value, "an object"));
        };
        let Some(known) = known else {
            return Ok(Fields { members });
        };
        let mut keys = members.iter().map(|(k, _)| k);
        if let Some(unknown) = keys.find(|k| !known.contains(&k.as_ref())) {
            return Err(ReadError::new(format!(
                "unknown field `{unknown}`, expected {}",
                one_of(known)
            )));
        }
        Ok(Fields { members })
    }

    pub fn required<T>(&self, name: &str, read: fn(&Node) -> Read<T>) -> Read<T> {
        match self.get(name) {
            Some(value) => read(value).map_err(|e| e.within(name)),
            None => Err(ReadError::new(format!("missing field `{name}`"))),
        }
    }

    /// `value` as a struct whose other fields are ignored (serde's default, for the filter's
    /// own shared-data records and the control plane's answers).
    pub fn open(value: &'a Node<'a>) -> Read<Fields<'a>> {
        Fields::of_known(value, None)
    }

    /// Absent: `default()`. Present, even `null`, it must read.
    pub fn or_else<T>(
        &self,
        name: &str,
        read: fn(&Node) -> Read<T>,
        default: fn() -> T,
    ) -> Read<T> {
        match self.get(name) {
            Some(value) => read(value).map_err(|e| e.within(name)),
            None => Ok(default()),
        }
    }

    pub fn or_default<T: Default>(&self, name: &str, read: fn(&Node) -> Read<T>) -> Read<T> {
        self.or_else(name, read, T::default)
    }

    /// Absent or `null`: `None`.
    pub fn optional<T>(&self, name: &str, read: fn(&Node) -> Read<T>) -> Read<Option<T>> {
        match self.get(name) {
            None | Some(Node::Null) => Ok(None),
            Some(value) => read(value).map(Some).map_err(|e| e.within(name)),
        }
    }

    /// The raw value of a field, for readers that take it apart themselves.
    pub fn get(&self, name: &str) -> Option<&'a Node<'a>> {
        self.members.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

pub fn string(value: &Node) -> Read<String> {
    match value {
        Node::String(s) => Ok(s.to_string()),
        _ => Err(ReadError::invalid_type(value, "a string")),
    }
}

pub fn boolean(value: &Node) -> Read<bool> {
    match value {
        Node::Bool(b) => Ok(*b),
        _ => Err(ReadError::invalid_type(value, "a boolean")),
    }
}

/// A non-negative integer up to `max`; `expected` names the type in the error (`u64`).
fn unsigned(value: &Node, max: u64, expected: &str) -> Read<u64> {
    let Node::Number(text) = value else {
        return Err(ReadError::invalid_type(value, expected));
    };
    match number(text) {
        Number::Unsigned(n) if n <= max => Ok(n),
        Number::Unsigned(_) => Err(ReadError::new(format!(
            "invalid value: integer out of range, expected {expected}"
        ))),
        Number::Negative => Err(ReadError::new(format!(
            "invalid value: negative integer, expected {expected}"
        ))),
        Number::Float => Err(ReadError::invalid_type(value, expected)),
    }
}

pub fn u64(value: &Node) -> Read<u64> {
    unsigned(value, u64::MAX, "u64")
}

pub fn u32(value: &Node) -> Read<u32> {
    unsigned(value, u32::MAX.into(), "u32").map(|n| n as u32)
}

pub fn usize(value: &Node) -> Read<usize> {
    let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    unsigned(value, max, "usize").map(|n| n as usize)
}

pub fn list<T>(value: &Node, read: fn(&Node) -> Read<T>) -> Read<Vec<T>> {
    let Node::Array(items) = value else {
        return Err(ReadError::invalid_type(value, "a sequence"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read(item).map_err(|e| e.within(&format!("[{i}]"))))
        .collect()
}

pub fn strings(value: &Node) -> Read<Vec<String>> {
    list(value, string)
}

pub fn map<T>(value: &Node, read: fn(&Node) -> Read<T>) -> Read<BTreeMap<String, T>> {
    let Node::Object(members) = value else {
        return Err(ReadError::invalid_type(value, "a map"));
    };
    members
        .iter()
        .map(|(key, item)| Ok((key.to_string(), read(item).map_err(|e| e.within(key))?)))
        .collect()
}

pub fn string_map(value: &Node) -> Read<BTreeMap<String, String>> {
    map(value, string)
}

/// A unit enum variant by its name. An unknown name is not quoted back: it could be a key.
pub fn variant<T: Copy>(value: &Node, variants: &[(&str, T)]) -> Read<T> {
    let names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
    let Node::String(name) = value else {
        return Err(ReadError::invalid_type(value, &one_of(&names)));
    };
    match variants.iter().find(|(n, _)| *n == name.as_ref()) {
        Some((_, v)) => Ok(*v),
        None => Err(ReadError::new(format!(
            "unknown variant `…`, expected {}",
            one_of(&names)
        ))),
    }
}

/// An enum of newtype variants, externally tagged (`{"inline": "…"}`): the variant's name and
/// its value.
pub fn tagged<'a>(value: &'a Node<'a>, names: &[&'a str]) -> Read<(&'a str, &'a Node<'a>)> {
    let expected = format!("a map with one key, {}", one_of(names));
    match value {
        Node::Object(members) if members.len() == 1 => {
            let Some((name, inner)) = members.first() else {
                return Err(ReadError::invalid_type(value, &expected));
            };
            match names.iter().find(|n| **n == name.as_ref()) {
                Some(known) => Ok((known, inner)),
                None => Err(ReadError::new(format!(
                    "unknown variant `…`, expected {}",
                    one_of(names)
                ))),
            }
        }
        // A bare string is serde's form of a unit variant: there are none, so say which
        // names were expected rather than what was found.
        Node::String(_) => Err(ReadError::new(format!(
            "unknown variant `…`, expected {expected}"
        ))),
        _ => Err(ReadError::invalid_type(value, &expected)),
    }
}

/// Implements `Deserialize` through the type's `read`: the deserializer's input becomes a
/// `Node` (a key repeated in one object refused, as the derive refused a repeated field),
/// then the one reader runs. Only the control plane and tests deserialize these types
/// generically; the filter reads its bytes with `from_json`.
macro_rules! deserialize_by_reader {
    ($($ty:ty),* $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let node = $crate::config::read::unique_node(deserializer)?;
                <$ty>::read(&node).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
pub(crate) use deserialize_by_reader;

/// Parses JSON text into a `Node` for the readers: valid UTF-8, and no object may have a key
/// twice (a parser that keeps the last of two `revocations` would silently drop the first).
pub fn parse(bytes: &[u8]) -> Read<Node<'_>> {
    Node::parse(bytes).map_err(|e| ReadError::new(e.0))
}

/// JSON text read by `read`.
pub fn from_json<T>(bytes: &[u8], read: fn(&Node) -> Read<T>) -> Read<T> {
    read(&parse(bytes)?)
}

/// Any deserializer's value as a `Node` owning its text, refusing a key repeated in one
/// object.
pub fn unique_node<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Node<'static>, D::Error> {
    deserializer.deserialize_any(UniqueKeys)
}

struct UniqueKeys;

struct UniqueNode(Node<'static>);

impl<'de> de::Deserialize<'de> for UniqueNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        unique_node(deserializer).map(UniqueNode)
    }
}

fn owned(text: String) -> Cow<'static, str> {
    Cow::Owned(text)
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Node<'static>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'static>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'static>, E> {
        Ok(Node::Number(owned(v.to_string())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'static>, E> {
        Ok(Node::Number(owned(v.to_string())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'static>, E> {
        // `{:?}` always writes a fraction or an exponent (`1000.0`, `1e300`), so the readers
        // see a float, as they would in the text.
        Ok(match v.is_finite() {
            true => Node::Number(owned(format!("{v:?}"))),
            false => Node::Null,
        })
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'static>, E> {
        Ok(Node::String(owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'static>, E> {
        Ok(Node::String(owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Node<'static>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'static>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'static>, D::Error> {
        unique_node(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'static>, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueNode(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node<'static>, A::Error> {
        let mut members: Vec<(Cow<'static, str>, Node<'static>)> = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            let UniqueNode(value) = access.next_value()?;
            members.push((owned(key), value));
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests;
