//! Reading a JSON request body without changing it: validates the whole document (RFC 8259)
//! at any nesting depth, without recursion, and finds the members of an object with the byte
//! spans of their values. What the filter rewrites (an output limit, `stream_options`) is
//! spliced into the client's own text, so every other byte — numbers wider than f64, key
//! order, whitespace — reaches the provider exactly as sent.
//!
//! Knows nothing of which fields matter: that is `model`'s.

use std::ops::Range;

pub mod node;
pub mod number;
pub mod raw;
pub mod write;

/// Why a body is not valid JSON: what was expected and where. Never quotes the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn error<T>(what: &str, at: usize) -> Result<T, JsonError> {
    Err(JsonError(format!("{what} at byte {at}")))
}

/// The kind of a value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool(bool),
    Null,
}

/// One member of an object: its key (escapes decoded, as the provider reads it) and where its
/// value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    pub value: Range<usize>,
    pub kind: Kind,
}

/// The members of an object, in order, and where the object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub members: Vec<Member>,
    /// From `{` to just past `}`.
    pub span: Range<usize>,
}

impl Object {
    /// The whole document, which must be one object (surrounding whitespace allowed).
    pub fn document(bytes: &[u8]) -> Result<Object, JsonError> {
        if std::str::from_utf8(bytes).is_err() {
            return Err(JsonError("the body is not valid UTF-8".into()));
        }
        let start = skip_ws(bytes, 0);
        if bytes.get(start) != Some(&b'{') {
            return Err(JsonError("the body is not a JSON object".into()));
        }
        let object = Object::at(bytes, start)?;
        let end = skip_ws(bytes, object.span.end);
        if end != bytes.len() {
            return error("trailing characters after the JSON value", end);
        }
        Ok(object)
    }

    /// The object starting at `start` (a `{`), in a document already checked to be UTF-8.
    pub fn at(bytes: &[u8], start: usize) -> Result<Object, JsonError> {
        let mut members = Vec::new();
        let mut i = skip_ws(bytes, start + 1);
        if bytes.get(i) == Some(&b'}') {
            return Ok(Object {
                members,
                span: start..i + 1,
            });
        }
        loop {
            if bytes.get(i) != Some(&b'"') {
                return error("expected a string key", i);
            }
            let key_end = scan_string(bytes, i)?;
            let key = decode_string(bytes, i..key_end)?;
            i = skip_ws(bytes, key_end);
            if bytes.get(i) != Some(&b':') {
                return error("expected ':'", i);
            }
            let value_start = skip_ws(bytes, i + 1);
            let kind = kind_at(bytes, value_start)?;
            let value_end = scan_value(bytes, value_start)?;
            members.push(Member {
                key,
                value: value_start..value_end,
                kind,
            });
            i = skip_ws(bytes, value_end);
            match bytes.get(i) {
                Some(b',') => i = skip_ws(bytes, i + 1),
                Some(b'}') => {
                    return Ok(Object {
                        members,
                        span: start..i + 1,
                    })
                }
                _ => return error("expected ',' or '}'", i),
            }
        }
    }

    /// The member named `key`. An error when another key could be read as the same one:
    /// an exact repeat, or a case variant (`MODEL`, `max_toKens` with a Kelvin sign) that a
    /// case-insensitive parser — Go's encoding/json, used by OpenAI-compatible servers —
    /// matches to the same field. Which one a provider obeys is unknown, so neither is used.
    pub fn get(&self, key: &str) -> Result<Option<&Member>, JsonError> {
        let mut found = self.members.iter().filter(|m| folds_to(&m.key, key));
        let first = found.next();
        if found.next().is_some() {
            return Err(JsonError(format!("duplicate field `{key}`")));
        }
        match first {
            Some(member) if member.key != key => Err(JsonError(format!(
                "a field spelled like `{key}` in another case; send it as `{key}`"
            ))),
            other => Ok(other),
        }
    }
}

/// Whether `key` names `field` under simple case folding (ASCII case, and the two non-ASCII
/// letters Unicode folds onto ASCII ones: `ſ` → `s`, `K` (Kelvin) → `k`). `field` is ASCII.
fn folds_to(key: &str, field: &str) -> bool {
    let folded = key.chars().map(|c| match c {
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    folded.eq(field.chars().map(|c| c.to_ascii_lowercase()))
}

fn kind_at(bytes: &[u8], i: usize) -> Result<Kind, JsonError> {
    Ok(match bytes.get(i) {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        Some(b'-' | b'0'..=b'9') => Kind::Number,
        Some(b't') => Kind::Bool(true),
        Some(b'f') => Kind::Bool(false),
        Some(b'n') => Kind::Null,
        _ => return error("expected a value", i),
    })
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Validates the value starting at `i` and returns where it ends. Nesting is kept on an
/// explicit stack, so depth costs a bit of memory per level, never a stack frame.
pub fn scan_value(bytes: &[u8], mut i: usize) -> Result<usize, JsonError> {
    let mut open = Nesting::default();
    loop {
        // A value starts at `i`.
        i = skip_ws(bytes, i);
        let mut closed = match bytes.get(i) {
            Some(&c @ (b'{' | b'[')) => {
                let close = if c == b'{' { b'}' } else { b']' };
                let next = skip_ws(bytes, i + 1);
                if bytes.get(next) == Some(&close) {
                    i = next + 1;
                    true
                } else {
                    open.push(c == b'{');
                    i = next;
                    if c == b'{' {
                        i = member_key(bytes, i)?;
                    }
                    false
                }
            }
            Some(b'"') => {
                i = scan_string(bytes, i)?;
                true
            }
            Some(b'-' | b'0'..=b'9') => {
                i = scan_number(bytes, i)?;
                true
            }
            Some(b't') => {
                i = literal(bytes, i, b"true")?;
                true
            }
            Some(b'f') => {
                i = literal(bytes, i, b"false")?;
                true
            }
            Some(b'n') => {
                i = literal(bytes, i, b"null")?;
                true
            }
            _ => return error("expected a value", i),
        };
        // After a complete value: close containers, or move to the next element.
        while closed {
            let Some(in_object) = open.last() else {
                return Ok(i);
            };
            i = skip_ws(bytes, i);
            let close = if in_object { b'}' } else { b']' };
            match bytes.get(i) {
                Some(b',') => {
                    i = skip_ws(bytes, i + 1);
                    if in_object {
                        i = member_key(bytes, i)?;
                    }
                    closed = false;
                }
                Some(&c) if c == close => {
                    open.pop();
                    i += 1;
                }
                _ => return error("expected ',' or the end of the container", i),
            }
        }
    }
}

/// The containers `scan_value` is inside, innermost last: whether each is an object. The
/// first 64 levels are bits of a word, so what providers and clients send is validated
/// without allocating; deeper ones go to the heap.
#[derive(Default)]
struct Nesting {
    shallow: u64,
    depth: usize,
    deep: Vec<bool>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth < 64 {
            self.shallow = (self.shallow & !(1 << self.depth)) | (u64::from(object) << self.depth);
        } else {
            self.deep.push(object);
        }
        self.depth += 1;
    }

    fn last(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d @ 1..=64 => Some((self.shallow >> (d - 1)) & 1 == 1),
            _ => self.deep.last().copied(),
        }
    }

    fn pop(&mut self) {
        if self.depth > 64 {
            self.deep.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }
}

/// A key and its `:` inside an object; returns where the value starts.
fn member_key(bytes: &[u8], i: usize) -> Result<usize, JsonError> {
    if bytes.get(i) != Some(&b'"') {
        return error("expected a string key", i);
    }
    let end = scan_string(bytes, i)?;
    let i = skip_ws(bytes, end);
    if bytes.get(i) != Some(&b':') {
        return error("expected ':'", i);
    }
    Ok(i + 1)
}

fn literal(bytes: &[u8], i: usize, word: &[u8]) -> Result<usize, JsonError> {
    if bytes.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        error("expected a value", i)
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn scan_number(bytes: &[u8], mut i: usize) -> Result<usize, JsonError> {
    let digits = |mut i: usize| {
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i - start)
    };
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(i).0,
        _ => return error("invalid number", i),
    }
    if bytes.get(i) == Some(&b'.') {
        let (end, n) = digits(i + 1);
        if n == 0 {
            return error("invalid number", end);
        }
        i = end;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let (end, n) = digits(i);
        if n == 0 {
            return error("invalid number", end);
        }
        i = end;
    }
    Ok(i)
}

/// The string starting at `i` (a `"`); returns where it ends. Escapes are checked, not
/// decoded; UTF-8 was checked for the whole document, or is not needed.
fn scan_string(bytes: &[u8], mut i: usize) -> Result<usize, JsonError> {
    i += 1;
    loop {
        i = plain_run_end(bytes, i);
        match bytes.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match bytes.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') if hex4(bytes, i + 2).is_some() => i += 6,
                _ => return error("invalid escape in a string", i),
            },
            Some(_) => return error("control character in a string", i),
            None => return error("unterminated string", i),
        }
    }
}

/// Where the run of string text from `i` ends: the first `"`, `\` or control character, or
/// the end. Eight bytes are looked at in one step (the carries of a subtraction find the
/// bytes below a bound; the lowest byte found is always a true one), since the generated
/// text of a stream event is crossed this way, and calls per string would cost more.
fn plain_run_end(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    while let Some(&word) = bytes.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        let x = u64::from_le_bytes(word);
        let found = (below(x, 0x20)
            | below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1))
            & HIGH;
        if found != 0 {
            return i + found.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    while bytes
        .get(i)
        .is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20)
    {
        i += 1;
    }
    i
}

fn hex4(bytes: &[u8], i: usize) -> Option<u32> {
    let text = std::str::from_utf8(bytes.get(i..i + 4)?).ok()?;
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// The text of a string already scanned (`span` includes the quotes), escapes decoded.
pub fn decode_string(bytes: &[u8], span: Range<usize>) -> Result<String, JsonError> {
    let inner = span
        .end
        .checked_sub(1)
        .and_then(|end| bytes.get(span.start + 1..end))
        .ok_or_else(|| JsonError(format!("no string at byte {}", span.start)))?;
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let run_end = inner[i..]
            .iter()
            .position(|&b| b == b'\\')
            .map_or(inner.len(), |p| i + p);
        let run = std::str::from_utf8(&inner[i..run_end])
            .map_err(|_| JsonError(format!("invalid UTF-8 in a string at byte {}", span.start)))?;
        out.push_str(run);
        i = run_end;
        if i >= inner.len() {
            break;
        }
        let at = span.start + 1 + i;
        let c = match inner.get(i + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let high = hex4(inner, i + 2).ok_or_else(|| bad_escape(at))?;
                if (0xD800..0xDC00).contains(&high) {
                    // A surrogate pair: the low half must follow as its own escape.
                    let low = (inner.get(i + 6..i + 8) == Some(b"\\u"))
                        .then(|| hex4(inner, i + 8))
                        .flatten()
                        .filter(|low| (0xDC00..0xE000).contains(low))
                        .ok_or_else(|| bad_escape(at))?;
                    i += 6;
                    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                        .ok_or_else(|| bad_escape(at))?
                } else {
                    char::from_u32(high).ok_or_else(|| bad_escape(at))?
                }
            }
            _ => return Err(bad_escape(at)),
        };
        out.push(c);
        i += if inner.get(i + 1) == Some(&b'u') {
            6
        } else {
            2
        };
    }
    Ok(out)
}

fn bad_escape(at: usize) -> JsonError {
    JsonError(format!("invalid escape in a string at byte {at}"))
}

/// Replacements of byte ranges, applied together: the edited text is the original with each
/// range replaced. Ranges must not overlap; an empty range inserts.
#[derive(Debug, Default)]
pub struct Splice {
    edits: Vec<(Range<usize>, String)>,
}

impl Splice {
    pub fn replace(&mut self, range: Range<usize>, text: String) {
        self.edits.push((range, text));
    }

    pub fn insert(&mut self, at: usize, text: String) {
        self.edits.push((at..at, text));
    }

    pub fn apply(mut self, bytes: &[u8]) -> Vec<u8> {
        // Stable: insertions at one place keep the order they were made in.
        self.edits.sort_by_key(|(range, _)| range.start);
        let added: usize = self.edits.iter().map(|(_, t)| t.len()).sum();
        let mut out = Vec::with_capacity(bytes.len() + added);
        let mut at = 0;
        for (range, text) in self.edits {
            out.extend_from_slice(
                bytes
                    .get(at.min(range.start)..range.start)
                    .unwrap_or_default(),
            );
            out.extend_from_slice(text.as_bytes());
            at = at.max(range.end);
        }
        out.extend_from_slice(bytes.get(at..).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests;
