//! Reading the configuration types (and the few other documents the filter reads: the control
//! plane's answers, its own shared-data records) from a parsed JSON `Value` with plain code. serde's derive
//! compiles each struct's parser once per kind of input (text, `Value`, raw slices…), and
//! those copies were a third of the Wasm module; here each type has one reader, over `Value`,
//! and their `Deserialize` goes through it too, so there is one parser, not two.
//!
//! The rules are those the types' serde attributes state (schemars reads them for the admin
//! API's schema): unknown fields refused, defaults, numbers range-checked, enums by their
//! snake_case names. An error names the field and what was expected, never the value found:
//! that could be a provider key typed into the wrong field.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

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

    pub fn invalid_type(found: &Value, expected: &str) -> ReadError {
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
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "floating point",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
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
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// `value` as a struct with these fields: any other field is refused.
    pub fn of(value: &'a Value, known: &[&str]) -> Read<Fields<'a>> {
        Fields::of_known(value, Some(known))
    }

    fn of_known(value: &'a Value, known: Option<&[&str]>) -> Read<Fields<'a>> {
        let Value::Object(object) = value else {
            return Err(ReadError::invalid_type(value, "an object"));
        };
        let Some(known) = known else {
            return Ok(Fields { object });
        };
        if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ReadError::new(format!(
                "unknown field `{unknown}`, expected {}",
                one_of(known)
            )));
        }
        Ok(Fields { object })
    }

    pub fn required<T>(&self, name: &str, read: fn(&Value) -> Read<T>) -> Read<T> {
        match self.object.get(name) {
            Some(value) => read(value).map_err(|e| e.within(name)),
            None => Err(ReadError::new(format!("missing field `{name}`"))),
        }
    }

    /// `value` as a struct whose other fields are ignored (serde's default, for the filter's
    /// own shared-data records and the control plane's answers).
    pub fn open(value: &'a Value) -> Read<Fields<'a>> {
        Fields::of_known(value, None)
    }

    /// Absent: `default()`. Present, even `null`, it must read.
    pub fn or_else<T>(
        &self,
        name: &str,
        read: fn(&Value) -> Read<T>,
        default: fn() -> T,
    ) -> Read<T> {
        match self.object.get(name) {
            Some(value) => read(value).map_err(|e| e.within(name)),
            None => Ok(default()),
        }
    }

    pub fn or_default<T: Default>(&self, name: &str, read: fn(&Value) -> Read<T>) -> Read<T> {
        self.or_else(name, read, T::default)
    }

    /// Absent or `null`: `None`.
    pub fn optional<T>(&self, name: &str, read: fn(&Value) -> Read<T>) -> Read<Option<T>> {
        match self.object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => read(value).map(Some).map_err(|e| e.within(name)),
        }
    }

    /// The raw value of a field, for readers that take it apart themselves.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name)
    }
}

pub fn string(value: &Value) -> Read<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(ReadError::invalid_type(value, "a string")),
    }
}

pub fn boolean(value: &Value) -> Read<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        _ => Err(ReadError::invalid_type(value, "a boolean")),
    }
}

/// A non-negative integer up to `max`; `expected` names the type in the error (`u64`).
fn unsigned(value: &Value, max: u64, expected: &str) -> Read<u64> {
    let Value::Number(number) = value else {
        return Err(ReadError::invalid_type(value, expected));
    };
    match number.as_u64() {
        Some(n) if n <= max => Ok(n),
        Some(_) => Err(ReadError::new(format!(
            "invalid value: integer out of range, expected {expected}"
        ))),
        None if number.is_i64() => Err(ReadError::new(format!(
            "invalid value: negative integer, expected {expected}"
        ))),
        // Fractions, exponents and integers past u64 (serde_json reads those as floats).
        None => Err(ReadError::invalid_type(value, expected)),
    }
}

pub fn u64(value: &Value) -> Read<u64> {
    unsigned(value, u64::MAX, "u64")
}

pub fn u32(value: &Value) -> Read<u32> {
    unsigned(value, u32::MAX.into(), "u32").map(|n| n as u32)
}

pub fn usize(value: &Value) -> Read<usize> {
    let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    unsigned(value, max, "usize").map(|n| n as usize)
}

pub fn list<T>(value: &Value, read: fn(&Value) -> Read<T>) -> Read<Vec<T>> {
    let Value::Array(items) = value else {
        return Err(ReadError::invalid_type(value, "a sequence"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| read(item).map_err(|e| e.within(&format!("[{i}]"))))
        .collect()
}

pub fn strings(value: &Value) -> Read<Vec<String>> {
    list(value, string)
}

pub fn map<T>(value: &Value, read: fn(&Value) -> Read<T>) -> Read<BTreeMap<String, T>> {
    let Value::Object(object) = value else {
        return Err(ReadError::invalid_type(value, "a map"));
    };
    object
        .iter()
        .map(|(key, item)| Ok((key.clone(), read(item).map_err(|e| e.within(key))?)))
        .collect()
}

pub fn string_map(value: &Value) -> Read<BTreeMap<String, String>> {
    map(value, string)
}

/// A unit enum variant by its name. An unknown name is not quoted back: it could be a key.
pub fn variant<T: Copy>(value: &Value, variants: &[(&str, T)]) -> Read<T> {
    let names: Vec<&str> = variants.iter().map(|(name, _)| *name).collect();
    let Value::String(name) = value else {
        return Err(ReadError::invalid_type(value, &one_of(&names)));
    };
    match variants.iter().find(|(n, _)| n == name) {
        Some((_, v)) => Ok(*v),
        None => Err(ReadError::new(format!(
            "unknown variant `…`, expected {}",
            one_of(&names)
        ))),
    }
}

/// An enum of newtype variants, externally tagged (`{"inline": "…"}`): the variant's name and
/// its value.
pub fn tagged<'a>(value: &'a Value, names: &[&'a str]) -> Read<(&'a str, &'a Value)> {
    let expected = format!("a map with one key, {}", one_of(names));
    match value {
        Value::Object(object) if object.len() == 1 => {
            let Some((name, inner)) = object.iter().next() else {
                return Err(ReadError::invalid_type(value, &expected));
            };
            match names.iter().find(|n| **n == name.as_str()) {
                Some(known) => Ok((known, inner)),
                None => Err(ReadError::new(format!(
                    "unknown variant `…`, expected {}",
                    one_of(names)
                ))),
            }
        }
        // A bare string is serde's form of a unit variant: there are none, so say which
        // names were expected rather than what was found.
        Value::String(_) => Err(ReadError::new(format!(
            "unknown variant `…`, expected {expected}"
        ))),
        _ => Err(ReadError::invalid_type(value, &expected)),
    }
}

/// Implements `Deserialize` through the type's `read`: the deserializer's input becomes a
/// `Value` (a key repeated in one object refused, as the derive refused a repeated field),
/// then the one reader runs. Only the control plane and tests deserialize these types
/// generically; the filter reads its bytes with `read_json`.
macro_rules! deserialize_by_reader {
    ($($ty:ty),* $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = $crate::config::read::unique_value(deserializer)?;
                <$ty>::read(&value).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
pub(crate) use deserialize_by_reader;

/// Parses JSON text into a `Value` for the readers: no object may have a key twice (serde_json
/// keeps the last, so a second `revocations` would silently replace the first).
pub fn parse(bytes: &[u8]) -> Read<Value> {
    crate::json::check_unique_keys(bytes).map_err(|e| ReadError::new(e.0))?;
    serde_json::from_slice(bytes).map_err(|e| ReadError::new(e.to_string()))
}

/// JSON text read by `read`.
pub fn from_json<T>(bytes: &[u8], read: fn(&Value) -> Read<T>) -> Read<T> {
    read(&parse(bytes)?)
}

/// Any deserializer's value as a `Value`, refusing a key repeated in one object.
pub fn unique_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    deserializer.deserialize_any(UniqueKeys)
}

struct UniqueKeys;

impl<'de> de::Deserialize<'de> for UniqueValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        unique_value(deserializer).map(UniqueValue)
    }
}

struct UniqueValue(Value);

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        unique_value(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
            }
            let UniqueValue(value) = access.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests;
