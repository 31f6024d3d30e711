//! A JSON document as a tree of nodes borrowed from its text, built in one pass: what the
//! configuration readers (`config::read`) take apart. A string without escapes is a slice of
//! the text and a number stays as written, so reading 10 000 revocations copies each string
//! once, into the type that keeps it. Stricter than RFC 8259 asks: no object may have a key
//! twice, since a document must not mean two things.
//!
//! Knows nothing of the types read from it.

use std::borrow::Cow;
use std::collections::HashSet;

use super::{decode_string, error, literal, scan_number, scan_string, skip_ws, JsonError};

/// One JSON value. Built by `Node::parse` from text, or from any serde input by the readers'
/// `Deserialize` bridge (then it owns its strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    /// The number as written: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// The members in document order; no key twice.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

/// Nesting deeper than this is refused, as serde_json refuses it: the parser recurses, and a
/// configuration is a few levels deep.
const MAX_DEPTH: usize = 128;

/// An object with more members than this checks repeats with a set, not by searching.
const SMALL_OBJECT: usize = 16;

impl<'a> Node<'a> {
    /// The whole text as one value (surrounding whitespace allowed).
    pub fn parse(bytes: &'a [u8]) -> Result<Node<'a>, JsonError> {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(JsonError("the document is not valid UTF-8".into()));
        };
        let (node, end) = value(text, skip_ws(bytes, 0), 0)?;
        let end = skip_ws(bytes, end);
        if end != bytes.len() {
            return error("trailing characters after the JSON value", end);
        }
        Ok(node)
    }

    /// The value of an object's member `key`; `None` for a missing member or a non-object.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The value starting at `i` (whitespace skipped) and where it ends.
fn value(text: &str, i: usize, depth: usize) -> Result<(Node<'_>, usize), JsonError> {
    let bytes = text.as_bytes();
    let i = skip_ws(bytes, i);
    match bytes.get(i) {
        Some(b'{') => object(text, i, depth + 1),
        Some(b'[') => array(text, i, depth + 1),
        Some(b'"') => {
            let (s, end) = string(text, i)?;
            Ok((Node::String(s), end))
        }
        Some(b'-' | b'0'..=b'9') => {
            let end = scan_number(bytes, i)?;
            let number = text.get(i..end).unwrap_or_default();
            Ok((Node::Number(Cow::Borrowed(number)), end))
        }
        Some(b't') => Ok((Node::Bool(true), literal(bytes, i, b"true")?)),
        Some(b'f') => Ok((Node::Bool(false), literal(bytes, i, b"false")?)),
        Some(b'n') => Ok((Node::Null, literal(bytes, i, b"null")?)),
        _ => error("expected a value", i),
    }
}

/// The string starting at `i` (a `"`): borrowed unless it has escapes.
fn string(text: &str, i: usize) -> Result<(Cow<'_, str>, usize), JsonError> {
    let bytes = text.as_bytes();
    let end = scan_string(bytes, i)?;
    let inner = text.get(i + 1..end - 1).unwrap_or_default();
    if inner.contains('\\') {
        Ok((Cow::Owned(decode_string(bytes, i..end)?), end))
    } else {
        Ok((Cow::Borrowed(inner), end))
    }
}

fn array(text: &str, start: usize, depth: usize) -> Result<(Node<'_>, usize), JsonError> {
    if depth > MAX_DEPTH {
        return error("nested too deeply", start);
    }
    let bytes = text.as_bytes();
    let mut items = Vec::new();
    let mut i = skip_ws(bytes, start + 1);
    if bytes.get(i) == Some(&b']') {
        return Ok((Node::Array(items), i + 1));
    }
    loop {
        let (item, end) = value(text, i, depth)?;
        items.push(item);
        i = skip_ws(bytes, end);
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Ok((Node::Array(items), i + 1)),
            _ => return error("expected ',' or ']'", i),
        }
    }
}

fn object(text: &str, start: usize, depth: usize) -> Result<(Node<'_>, usize), JsonError> {
    if depth > MAX_DEPTH {
        return error("nested too deeply", start);
    }
    let bytes = text.as_bytes();
    let mut members: Vec<(Cow<str>, Node)> = Vec::new();
    // Past `SMALL_OBJECT` members (a map of many plans), the keys so far.
    let mut large: Option<HashSet<Cow<str>>> = None;
    let mut i = skip_ws(bytes, start + 1);
    if bytes.get(i) == Some(&b'}') {
        return Ok((Node::Object(members), i + 1));
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return error("expected a string key", i);
        }
        let (key, key_end) = string(text, i)?;
        let repeated = match &mut large {
            Some(keys) => !keys.insert(key.clone()),
            None => members.iter().any(|(k, _)| *k == key),
        };
        if repeated {
            // Named as serde names a repeated field; a key is not a secret value.
            return error(&format!("duplicate field `{key}`"), i);
        }
        if large.is_none() && members.len() >= SMALL_OBJECT {
            let keys = members.iter().map(|(k, _)| k.clone());
            large = Some(keys.chain([key.clone()]).collect());
        }
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return error("expected ':'", i);
        }
        let (item, end) = value(text, i + 1, depth)?;
        members.push((key, item));
        i = skip_ws(bytes, end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => return Ok((Node::Object(members), i + 1)),
            _ => return error("expected ',' or '}'", i),
        }
    }
}

#[cfg(test)]
mod tests;
