//! A JSON value read in place, for answers the filter only looks into: the provider's usage in
//! a response or a stream event. The whole text is validated once (the grammar of RFC 8259,
//! as serde_json checks the parts it skips); after that a member is found by scanning its
//! object again, a number is read from its digits, and nothing is built or copied. Nesting
//! costs no allocation below 64 levels.
//!
//! The configuration, which is read whole, is `node`'s.

use std::borrow::Cow;
use std::ops::Range;

use super::{decode_string, error, scan_string, scan_value, skip_ws, JsonError};

/// The text of one valid JSON value; empty for a value that is not there, which reads as
/// `null` does (serde_json's `Value::Null` for a missing member).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw<'a>(&'a [u8]);

/// An object member's key, as written between its quotes (escapes not decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    document: &'a [u8],
    /// The key with its quotes.
    span: Range<usize>,
}

impl Key<'_> {
    /// Whether the key reads as `name` once its escapes are decoded (`\u0075sage` is `usage`).
    pub fn is(&self, name: &str) -> bool {
        let text = &self.document[self.span.start + 1..self.span.end - 1];
        if !text.contains(&b'\\') {
            return text == name.as_bytes();
        }
        decode_string(self.document, self.span.clone()).is_ok_and(|key| key == name)
    }
}

impl<'a> Raw<'a> {
    /// The whole text as one value (surrounding whitespace allowed), validated.
    pub fn parse(bytes: &'a [u8]) -> Result<Raw<'a>, JsonError> {
        let start = skip_ws(bytes, 0);
        let end = scan_value(bytes, start)?;
        if skip_ws(bytes, end) != bytes.len() {
            return error("trailing characters after the JSON value", skip_ws(bytes, end));
        }
        Ok(Raw(&bytes[start..end]))
    }

    /// Validates the whole text, which must be one object, and hands `each` its members in
    /// order.
    pub fn members(
        bytes: &'a [u8],
        mut each: impl FnMut(Key<'a>, Raw<'a>),
    ) -> Result<(), JsonError> {
        let start = skip_ws(bytes, 0);
        if bytes.get(start) != Some(&b'{') {
            return error("expected an object", start);
        }
        let end = walk_object(bytes, start, &mut each)?;
        if skip_ws(bytes, end) != bytes.len() {
            return error("trailing characters after the JSON value", skip_ws(bytes, end));
        }
        Ok(())
    }

    /// The value of member `key`; absent for a missing member or a non-object. Where a key
    /// is repeated the last one counts, as in serde_json's `Value`.
    pub fn get(self, key: &str) -> Raw<'a> {
        let [found] = self.fields([key]);
        found
    }

    /// The values of the members `keys`, found in one walk, as `get` finds each.
    pub fn fields<const N: usize>(self, keys: [&str; N]) -> [Raw<'a>; N] {
        let mut found = [Raw::default(); N];
        if self.is_object() {
            let _ = walk_object(self.0, 0, &mut |key, value| {
                if let Some(slot) = keys.iter().position(|k| key.is(k)) {
                    found[slot] = value;
                }
            });
        }
        found
    }

    /// The elements of an array, in order; nothing for any other value.
    pub fn elements(self) -> impl Iterator<Item = Raw<'a>> {
        let bytes = self.0;
        let mut at = match bytes.first() {
            Some(b'[') => Some(skip_ws(bytes, 1)),
            _ => None,
        };
        std::iter::from_fn(move || {
            let i = at.filter(|&i| bytes.get(i) != Some(&b']'))?;
            let end = scan_value(bytes, i).ok()?;
            let next = skip_ws(bytes, end);
            at = (bytes.get(next) == Some(&b',')).then(|| skip_ws(bytes, next + 1));
            Some(Raw(&bytes[i..end]))
        })
    }

    /// The number as a `u64` when serde_json reads it as one: digits only, no sign,
    /// fraction or exponent, at most `u64::MAX`.
    pub fn as_u64(self) -> Option<u64> {
        match self.0.first() {
            Some(b'0'..=b'9') if self.0.iter().all(u8::is_ascii_digit) => {
                std::str::from_utf8(self.0).ok()?.parse().ok()
            }
            _ => None,
        }
    }

    /// The string, escapes decoded: borrowed unless it has any. `None` for any other value
    /// or a string that is not valid UTF-8 or has a lone surrogate escape.
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        if self.0.first() != Some(&b'"') {
            return None;
        }
        let inner = &self.0[1..self.0.len() - 1];
        if inner.contains(&b'\\') {
            decode_string(self.0, 0..self.0.len()).ok().map(Cow::Owned)
        } else {
            std::str::from_utf8(inner).ok().map(Cow::Borrowed)
        }
    }

    /// The value as written.
    pub fn text(self) -> &'a [u8] {
        self.0
    }

    pub fn is_object(self) -> bool {
        self.0.first() == Some(&b'{')
    }

    pub fn is_absent(self) -> bool {
        self.0.is_empty()
    }

    /// `null`, or not there.
    pub fn is_null(self) -> bool {
        self.0.is_empty() || self.0 == b"null"
    }

    pub fn is_empty_array(self) -> bool {
        self.0.first() == Some(&b'[') && skip_ws(self.0, 1) == self.0.len() - 1
    }
}

/// Validates the object starting at `start` (a `{`) member by member and hands each to
/// `each`; returns where the object ends.
fn walk_object<'a>(
    bytes: &'a [u8],
    start: usize,
    each: &mut dyn FnMut(Key<'a>, Raw<'a>),
) -> Result<usize, JsonError> {
    let mut i = skip_ws(bytes, start + 1);
    if bytes.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return error("expected a string key", i);
        }
        let key_end = scan_string(bytes, i)?;
        let key = Key {
            document: bytes,
            span: i..key_end,
        };
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return error("expected ':'", i);
        }
        let value_start = skip_ws(bytes, i + 1);
        let value_end = scan_value(bytes, value_start)?;
        each(key, Raw(&bytes[value_start..value_end]));
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => return Ok(i + 1),
            _ => return error("expected ',' or '}'", i),
        }
    }
}

#[cfg(test)]
mod tests;
