//! Who a verified caller is, and the hash a credential is known by: the leaf every room that
//! authenticates, authorizes, caches or counts shares. No logic beyond the caller's own
//! rules (scopes, model patterns).

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// A credential's 32-byte digest: its SHA-256 (`credential_hash`: the API key lookup key and
/// the fingerprint) or its BLAKE3 (`cache_key`: the verified-token cache's key).
pub type CredentialHash = [u8; 32];

/// A verified caller. A worker caches up to `cache.max_entries` of them, so what many of
/// them repeat is shared (`VerifiedTokenCache` interns the key id and grants of a verified
/// JWT), and what is the caller's own, its subject and its token's `jti`, is one allocation
/// without spare capacity.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The subject, then the `jti` where that is kept as text.
    names: Box<str>,
    credential: Credential,
    pub grants: Arc<Grants>,
    /// Unix seconds, as 32 bits like the cache's times (a later time is held as 2106);
    /// `None` for an API key without expiry.
    expires_at: Option<u32>,
}

// Every cached token has one identity: on wasm32, with its `Arc`'s two counts, at most 60
// bytes is a 64-byte block of wasi-libc's malloc (a 4-byte header, 16-byte steps); a field
// more would make it 80.
#[cfg(target_arch = "wasm32")]
const _: () = assert!(std::mem::size_of::<Identity>() <= 52);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Credential {
    Jwt {
        jti: StoredJti,
        kid: Option<Arc<str>>,
    },
    ApiKey {
        id: Arc<str>,
    },
}

/// Where an identity keeps its JWT's `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoredJti {
    None,
    /// In `names`, from this byte on (the subject ends there).
    Text(usize),
    /// The 16 bytes that 32 lowercase hex digits spell (see `Jti`).
    Hex([u8; 16]),
}

/// What kind of credential an identity came from, with the ids revocation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind<'a> {
    Jwt {
        jti: Option<Jti<'a>>,
        kid: Option<&'a str>,
    },
    ApiKey {
        id: &'a str,
    },
}

impl Identity {
    /// The caller a JWT names: its `sub`, its `jti` if any, the key that signed it.
    pub fn jwt(
        subject: &str,
        jti: Option<&str>,
        kid: Option<Arc<str>>,
        grants: Arc<Grants>,
        expires_at: Option<u64>,
    ) -> Identity {
        let jti = jti.map(Jti::new);
        let text = match jti {
            Some(Jti(JtiForm::Text(text))) => text,
            _ => "",
        };
        let mut names = String::with_capacity(subject.len() + text.len());
        names.push_str(subject);
        names.push_str(text);
        let jti = match jti {
            Some(Jti(JtiForm::Text(_))) => StoredJti::Text(subject.len()),
            Some(Jti(JtiForm::Hex(bytes))) => StoredJti::Hex(bytes),
            None => StoredJti::None,
        };
        Identity {
            names: names.into_boxed_str(),
            credential: Credential::Jwt { jti, kid },
            grants,
            expires_at: expires_at.map(seconds32),
        }
    }

    /// The caller an API key of the configuration stands for.
    pub fn api_key(
        id: Arc<str>,
        subject: &str,
        grants: Arc<Grants>,
        expires_at: Option<u64>,
    ) -> Identity {
        Identity {
            names: subject.into(),
            credential: Credential::ApiKey { id },
            grants,
            expires_at: expires_at.map(seconds32),
        }
    }

    pub fn subject(&self) -> &str {
        match self.credential {
            Credential::Jwt {
                jti: StoredJti::Text(end),
                ..
            } => self.names.get(..end).unwrap_or(&self.names),
            _ => &self.names,
        }
    }

    pub fn kind(&self) -> CredentialKind<'_> {
        match &self.credential {
            Credential::Jwt { kid, .. } => CredentialKind::Jwt {
                jti: self.jti(),
                kid: kid.as_deref(),
            },
            Credential::ApiKey { id } => CredentialKind::ApiKey { id },
        }
    }

    /// A JWT's `jti`, if it has one.
    pub fn jti(&self) -> Option<Jti<'_>> {
        match self.credential {
            Credential::Jwt { jti, .. } => match jti {
                StoredJti::None => None,
                StoredJti::Text(start) => self.names.get(start..).map(|t| Jti(JtiForm::Text(t))),
                StoredJti::Hex(bytes) => Some(Jti(JtiForm::Hex(bytes))),
            },
            Credential::ApiKey { .. } => None,
        }
    }

    /// Unix seconds; `None` for an API key without expiry.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at.map(u64::from)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.grants.scopes.iter().any(|s| s == scope)
    }

    pub fn may_use_model(&self, model: &str) -> bool {
        self.grants.models.as_ref().is_some_and(|patterns| {
            patterns
                .iter()
                .any(|p| crate::model::pattern_matches(p, model))
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject())
            .field("kind", &self.kind())
            .field("grants", &self.grants)
            .field("expires_at", &self.expires_at())
            .finish()
    }
}

/// Unix seconds in 32 bits, a later time held as the last one (in 2106).
fn seconds32(seconds: u64) -> u32 {
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

/// A JWT's `jti`, as an identity holds it. The control plane mints 32 lowercase hex digits:
/// those are kept as the 16 bytes they spell, half the room, and spelled the same again when
/// read. Any other id (upper case hex too, so that the spelling comes back exactly) is kept
/// as it came. Both sides of a comparison take the same form, so equal ids compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jti<'a>(JtiForm<'a>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JtiForm<'a> {
    Text(&'a str),
    Hex([u8; 16]),
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl<'a> Jti<'a> {
    pub fn new(jti: &'a str) -> Self {
        Jti(match lowercase_hex_128(jti) {
            Some(bytes) => JtiForm::Hex(bytes),
            None => JtiForm::Text(jti),
        })
    }
}

/// The 16 bytes that exactly 32 lowercase hex digits spell.
fn lowercase_hex_128(text: &str) -> Option<[u8; 16]> {
    let digits: &[u8; 32] = text.as_bytes().try_into().ok()?;
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0; 16];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = value(*high)? << 4 | value(*low)?;
    }
    Some(bytes)
}

impl PartialEq<&str> for Jti<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == Jti::new(other)
    }
}

impl fmt::Display for Jti<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            JtiForm::Text(text) => f.write_str(text),
            JtiForm::Hex(bytes) => bytes.iter().try_for_each(|byte| {
                f.write_char(char::from(HEX_DIGITS[usize::from(byte >> 4)]))?;
                f.write_char(char::from(HEX_DIGITS[usize::from(byte & 0xf)]))
            }),
        }
    }
}

/// `jti`s as they were spelled. An identity's hex `jti` is spelled again to be looked up
/// (32 bytes on the stack), so the module carries one kind of set and no sort.
#[derive(Debug, Default)]
pub struct JtiSet {
    text: HashSet<Box<str>>,
}

impl JtiSet {
    pub fn contains(&self, jti: Jti<'_>) -> bool {
        match jti.0 {
            JtiForm::Text(text) => self.text.contains(text),
            JtiForm::Hex(bytes) => {
                let mut spelled = [0u8; 32];
                for (pair, byte) in spelled.chunks_exact_mut(2).zip(bytes) {
                    pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
                    pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
                }
                std::str::from_utf8(&spelled).is_ok_and(|text| self.text.contains(text))
            }
        }
    }
}

impl<'a> FromIterator<&'a str> for JtiSet {
    fn from_iter<I: IntoIterator<Item = &'a str>>(jtis: I) -> Self {
        JtiSet {
            text: jtis.into_iter().map(Box::from).collect(),
        }
    }
}

/// What a credential grants and where its use is counted: the part of an identity that the
/// credentials issued alike (one tenant, plan and set of scopes and models) have in common.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Grants {
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    /// Model patterns; `None` allows no model.
    pub models: Option<Vec<String>>,
    pub plan: Option<String>,
}

/// SHA-256 of a credential: the API key lookup key (operators and the control plane compute
/// it with any SHA-256 tool) and what `fingerprint` shortens. Off the cached path.
pub fn credential_hash(credential: &str) -> CredentialHash {
    hmac_sha256::Hash::hash(credential.as_bytes())
}

/// BLAKE3 of a credential: the key a verified token is cached by, computed on every request.
/// Any 256-bit collision-resistant hash would do; this one is the cheapest in Wasm. Nothing
/// outside a worker ever sees it.
pub fn cache_key(credential: &str) -> CredentialHash {
    *blake3::hash(credential.as_bytes()).as_bytes()
}

/// A short, non-reversible name for a credential, safe for logs.
pub fn fingerprint(hash: &CredentialHash) -> String {
    hash[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
