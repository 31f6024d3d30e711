//! Reading the request head: method, path, and the one credential the client sent, from
//! `Authorization: Bearer` or the provider-style headers official SDKs send. Refuses
//! ambiguity (two credentials, a repeated header) and credentials in the URL. Headers
//! arrive as raw bytes: a non-UTF-8 value is an error here, never a panic.

use std::borrow::Cow;

use crate::error::{ErrorCode, Refusal};

/// Headers that can carry a client credential; all of them are removed before forwarding.
pub const CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "x-goog-api-key", "api-key"];
// `RequestHead` keeps which are present in a `u8`, a bit each.
const _: () = assert!(CREDENTIAL_HEADERS.len() <= 8);

/// A set of `CREDENTIAL_HEADERS`, a bit each; iterates their names in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CredentialNames(u8);

impl Iterator for CredentialNames {
    type Item = &'static str;

    fn next(&mut self) -> Option<&'static str> {
        if self.0 == 0 {
            return None;
        }
        let at = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        CREDENTIAL_HEADERS.get(at).copied()
    }
}

/// Headers with this prefix are the filter's own; a client may not send them upstream.
pub const INTERNAL_HEADER_PREFIX: &str = "x-tokenward-";
/// Query parameters that carry credentials in some SDKs (Gemini's `key`) and leak into logs.
const QUERY_CREDENTIAL_PARAMS: [&str; 3] = ["key", "api_key", "access_token"];

/// The parts of the request head the filter needs, borrowed from the header list read once.
#[derive(Debug)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub content_length: Option<u64>,
    /// The first credential header instance: (name, raw value).
    first_credential: Option<(&'static str, &'a [u8])>,
    /// How many credential header instances the request carries.
    credential_count: usize,
    /// Which of `CREDENTIAL_HEADERS` are present, a bit each (in place of a list: this is
    /// read on every request).
    credential_names: u8,
    /// Client-sent headers that must not reach the provider.
    pub internal_headers: Vec<&'a str>,
    pub has_anthropic_version: bool,
    pub has_accept_encoding: bool,
}

impl<'a> RequestHead<'a> {
    /// Reads the headers, already read out of their block (the request path reads them once
    /// and looks through them several times).
    pub fn parse(headers: &[(&'a str, &'a [u8])]) -> Result<RequestHead<'a>, Refusal> {
        let mut head = RequestHead {
            method: "",
            path: "",
            content_length: None,
            first_credential: None,
            credential_count: 0,
            credential_names: 0,
            internal_headers: Vec::new(),
            has_anthropic_version: false,
            has_accept_encoding: false,
        };
        for &(name, value) in headers {
            match name {
                ":method" => head.method = utf8(name, value)?,
                ":path" => head.path = normalized_path(utf8(name, value)?)?,
                "content-length" => {
                    let text = utf8(name, value)?;
                    head.content_length = Some(text.trim().parse().map_err(|_| {
                        Refusal::new(ErrorCode::InvalidHeader, "content-length is not a number")
                    })?);
                }
                "anthropic-version" => head.has_anthropic_version = true,
                "accept-encoding" => head.has_accept_encoding = true,
                other => {
                    if let Some(at) = CREDENTIAL_HEADERS.iter().position(|h| *h == other) {
                        head.first_credential.get_or_insert((CREDENTIAL_HEADERS[at], value));
                        head.credential_count += 1;
                        head.credential_names |= 1 << at;
                    } else if other.starts_with(INTERNAL_HEADER_PREFIX) {
                        head.internal_headers.push(other);
                    }
                }
            }
        }
        Ok(head)
    }

    /// Names of the credential headers present, each once.
    pub fn credential_header_names(&self) -> CredentialNames {
        CredentialNames(self.credential_names)
    }
}

/// The credential of a request, and the path to forward when it came from the query. A
/// credential sent in a header is borrowed from it; one taken out of the query is decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct Credential<'a> {
    pub value: Cow<'a, str>,
    /// Set when the credential was taken out of the query string.
    pub rewritten_path: Option<String>,
}

/// Finds the request's single credential. `allow_query` is the route's permission to take
/// it from the `key` (or `api_key`, `access_token`) query parameter.
pub fn extract<'a>(head: &RequestHead<'a>, allow_query: bool) -> Result<Credential<'a>, Refusal> {
    let from_query = query_credential(head.path)?;
    if from_query.is_some() && !allow_query {
        return Err(Refusal::new(
            ErrorCode::TokenInUrl,
            "credentials in the URL are refused because URLs are logged; send it in the Authorization header",
        ));
    }
    let sent = head.credential_count + usize::from(from_query.is_some());
    if sent > 1 {
        return Err(Refusal::new(
            ErrorCode::AmbiguousCredential,
            "more than one credential was sent; send exactly one",
        ));
    }
    if let Some((value, rewritten_path)) = from_query {
        return non_empty(Cow::Owned(value)).map(|value| Credential {
            value,
            rewritten_path: Some(rewritten_path),
        });
    }
    let Some((name, raw)) = head.first_credential else {
        return Err(Refusal::new(
            ErrorCode::MissingCredential,
            "no credential; send \"Authorization: Bearer <token>\"",
        ));
    };
    let value = std::str::from_utf8(raw)
        .map_err(|_| {
            Refusal::new(
                ErrorCode::InvalidHeader,
                format!("the {name} header is not valid UTF-8"),
            )
        })?
        .trim();
    let value = if name == "authorization" {
        match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Refusal::new(
                    ErrorCode::MissingCredential,
                    "the Authorization header must use the Bearer scheme",
                ))
            }
        }
    } else {
        value
    };
    // Envoy joins a repeated Authorization header into one value with commas. No tokenward
    // credential (JWT or API key) contains a comma, so one means two credentials.
    if value.contains(',') {
        return Err(Refusal::new(
            ErrorCode::AmbiguousCredential,
            format!("the {name} header carries more than one value; send exactly one credential"),
        ));
    }
    non_empty(Cow::Borrowed(value)).map(|value| Credential {
        value,
        rewritten_path: None,
    })
}

fn non_empty(value: Cow<'_, str>) -> Result<Cow<'_, str>, Refusal> {
    if value.is_empty() {
        Err(Refusal::new(
            ErrorCode::MissingCredential,
            "the credential is empty",
        ))
    } else {
        Ok(value)
    }
}

fn utf8<'a>(name: &str, value: &'a [u8]) -> Result<&'a str, Refusal> {
    std::str::from_utf8(value).map_err(|_| {
        Refusal::new(
            ErrorCode::InvalidHeader,
            format!("the {name} header is not valid UTF-8"),
        )
    })
}

/// Routes and models are matched on the path as sent, so it must already be in normal form:
/// no dot segments and no encoded slashes (Envoy's `normalize_path` and
/// `path_with_escaped_slashes_action` in envoy.yaml see to that; this refuses what slipped by).
fn normalized_path(path: &str) -> Result<&str, Refusal> {
    let base = path.split('?').next().unwrap_or(path);
    // Every request passes here: each check looks for its one byte first. A dot segment in a
    // path that starts with `/` follows a `/`.
    let dot_segment = base.contains("/.")
        && base
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    // Checked in place, so no lowercase copy of the path.
    let encoded = base.contains('\\')
        || base.contains('%') && base.as_bytes().windows(3).any(|w| {
            w[0] == b'%'
                && [b"2f", b"5c", b"2e"]
                    .iter()
                    .any(|e| w[1..].eq_ignore_ascii_case(*e))
        });
    if !base.starts_with('/') || dot_segment || encoded {
        return Err(Refusal::new(
            ErrorCode::InvalidHeader,
            "the path is not in normal form (dot segments or encoded slashes)",
        ));
    }
    Ok(path)
}

/// A credential in the query string: its decoded value and the path without it. A
/// parameter counts whatever encoding hides its name or its `=` (`%6Bey=`, `key%3D…`, even
/// encoded twice), and `;` separates parameters as some servers read it: a URL that any
/// server on the way could read as carrying a credential is treated as carrying one.
fn query_credential(path: &str) -> Result<Option<(String, String)>, Refusal> {
    let Some((base, query)) = path.split_once('?') else {
        return Ok(None);
    };
    let mut found = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let mut credential = None;
        for part in pair.split(';') {
            if let Some(value) = credential_param(part) {
                if credential.is_some() || found.is_some() {
                    return Err(Refusal::new(
                        ErrorCode::AmbiguousCredential,
                        "more than one credential was sent; send exactly one",
                    ));
                }
                credential = Some(value);
            }
        }
        match credential {
            Some(value) => found = Some(value),
            None if !pair.is_empty() => kept.push(pair),
            None => {}
        }
    }
    Ok(found.map(|value| {
        let path = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (value, path)
    }))
}

/// The value of one query parameter when its name, as sent or decoded up to three times, is
/// a credential parameter.
fn credential_param(part: &str) -> Option<String> {
    let is_param =
        |name: &str| QUERY_CREDENTIAL_PARAMS.contains(&name.trim().to_ascii_lowercase().as_str());
    let mut text = part.to_string();
    for _ in 0..4 {
        match text.split_once('=') {
            Some((name, value)) if is_param(name) => return Some(percent_decode(value)),
            // `?key` alone: an empty credential, refused as such.
            None if is_param(&text) => return Some(String::new()),
            _ => {}
        }
        let decoded = percent_decode(&text);
        if decoded == text {
            break;
        }
        text = decoded;
    }
    None
}

/// Whether `text`, as sent or percent-decoded, contains `credential`: a copy that must not
/// travel on (in a cookie, another header, the URL).
pub fn contains_credential(text: &[u8], credential: &str) -> bool {
    let needle = credential.as_bytes();
    if needle.len() < 8 || text.len() < needle.len() {
        // Too short to be a real credential (and to search for without false alarms), or
        // longer than the text, even decoded (decoding never lengthens).
        return false;
    }
    let found = |haystack: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
    found(text) || (text.contains(&b'%') && found(&percent_decode_bytes(text)))
}

/// Decodes `%XX` and `+`; a malformed escape is kept as it is.
fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s.as_bytes())).into_owned()
}

/// `percent_decode` over raw bytes (a header value need not be UTF-8).
fn percent_decode_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
