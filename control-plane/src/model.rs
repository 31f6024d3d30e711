//! The control plane's domain: what it keeps about keys, credentials and revocations, and
//! the rules they follow (key states over time, token lifetimes). Pure: no SQL, no I/O.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tokenward_filter::config::{CredentialSource, Jwk, ProviderConfig};

/// Signature algorithms the control plane signs with (the filter also accepts HS256 keys,
/// which the control plane never makes: a shared secret in every proxy could mint tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alg {
    EdDSA,
    ES256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
        }
    }

    pub fn parse(text: &str) -> Option<Alg> {
        match text {
            "EdDSA" | "ed25519" | "Ed25519" => Some(Alg::EdDSA),
            "ES256" | "p256" | "P-256" => Some(Alg::ES256),
            _ => None,
        }
    }
}

/// Where a signing key is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published, not signing yet: every proxy learns it before the first token it signs.
    Announced,
    /// Signing new tokens.
    Active,
    /// No longer signing; published until every token it signed has expired.
    Retired,
    /// Past its publication: gone from the JWKS and the filter config.
    Removed,
}

/// A signing key as stored: the public half in clear, the private half sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: Alg,
    pub public_jwk: Jwk,
    pub private_sealed: Vec<u8>,
    pub created_at: u64,
    pub activate_at: u64,
    pub retired_at: Option<u64>,
    pub publish_until: Option<u64>,
}

impl SigningKeyRecord {
    pub fn state(&self, now: u64) -> KeyState {
        if self.publish_until.is_some_and(|t| t <= now) {
            KeyState::Removed
        } else if self.retired_at.is_some_and(|t| t <= now) {
            KeyState::Retired
        } else if self.activate_at > now {
            KeyState::Announced
        } else {
            KeyState::Active
        }
    }

    /// The sealing context of the private key: it opens only in this key's row.
    pub fn seal_context(kid: &str) -> String {
        format!("signing-key:{kid}")
    }
}

/// The key that signs at `now`: the most recently activated key that is active.
pub fn signing_key(keys: &[SigningKeyRecord], now: u64) -> Option<&SigningKeyRecord> {
    keys.iter()
        .filter(|k| k.state(now) == KeyState::Active)
        .max_by_key(|k| (k.activate_at, k.created_at))
}

/// Keys the proxies must know at `now`: announced, active and retired ones.
pub fn published_keys(keys: &[SigningKeyRecord], now: u64) -> Vec<&SigningKeyRecord> {
    keys.iter()
        .filter(|k| k.state(now) != KeyState::Removed)
        .collect()
}

/// A JWT the control plane minted (its claims are in the token; this is what revocation
/// by tenant needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    pub jti: String,
    pub subject: String,
    pub tenant: Option<String>,
    pub kid: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// An API key as stored: its SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub sha256: String,
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub models: Vec<String>,
    pub plan: Option<String>,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub revoked_at: Option<u64>,
}

impl ApiKeyRecord {
    /// In force at `now`: not revoked and not expired.
    pub fn in_force(&self, now: u64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// One audit entry: who did what to which thing, and when. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// Identifiers the operator types (subjects, tenants, names): printable, no whitespace, at
/// most 256 characters.
/// The last second of year 9999 (UTC): a later Unix time is refused, so every time fits the
/// database's 64-bit integers and reads as a date.
pub const MAX_UNIX_TIME: u64 = 253_402_300_799;

pub fn valid_identifier(text: &str) -> bool {
    !text.is_empty() && text.len() <= 256 && text.chars().all(|c| c.is_ascii_graphic())
}

/// A part of the filter's configuration as the filter names it in its stats
/// (`tokenward.config.unavailable.<kind>.<name>`): its kind (`provider`, `route`, `plan`,
/// `price`, `key`, `api_key`) and its name made stat-safe by [`stat_name`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConfigPart {
    pub kind: String,
    pub name: String,
}

/// A name as the filter puts it in a stat: lowercase ASCII letters, digits, `-` and `_`,
/// anything else `_`, at most 64 characters. Two names can meet in one stat name; the
/// control plane matches by this form, so it reports both.
pub fn stat_name(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '_',
        })
        .take(64)
        .collect()
}

/// Whether a provider can carry traffic, as far as the control plane can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Availability {
    Available,
    /// It does not load (in any Envoy, or in the Envoys named): its routes answer 503
    /// `provider_unavailable` while everything else applies.
    Unavailable {
        reason: String,
    },
    /// Its credential is an environment variable of Envoys whose Wasm VM this control plane
    /// does not configure (no ADS): whether they have it is theirs to know.
    Unknown {
        reason: String,
    },
}

/// Each provider's availability (in the order given). `vm_env_keys` are the environment
/// variables `tokenward serve` passes into Envoy's Wasm VM (`--env-key`), `None` when it
/// pushes to no Envoy; `reports` what each Envoy said it could not load. Pure: the admin API
/// and the CLI ask the same question.
pub fn provider_availability(
    providers: &[ProviderConfig],
    vm_env_keys: Option<&[String]>,
    reports: &[(&str, &[ConfigPart])],
) -> Vec<(String, Availability)> {
    providers
        .iter()
        .map(|provider| {
            let part = ConfigPart {
                kind: "provider".into(),
                name: stat_name(&provider.name),
            };
            let refused_by: Vec<&str> = reports
                .iter()
                .filter(|(_, parts)| parts.contains(&part))
                .map(|(node, _)| *node)
                .collect();
            let availability = match (&provider.credential, vm_env_keys) {
                // An Envoy passes only the variables its vm_config lists: no Envoy fed by this
                // control plane can read any other, whatever its own environment holds.
                (CredentialSource::Env(var), Some(keys)) if !keys.contains(var) => {
                    Availability::Unavailable {
                        reason: format!(
                            "its credential is the environment variable {var:?}, which tokenward serve does not pass into Envoy's Wasm VM (--env-key: {}); add it there, or give the credential to the control plane sealed",
                            if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
                        ),
                    }
                }
                _ if !refused_by.is_empty() => Availability::Unavailable {
                    reason: format!(
                        "Envoy {} could not load it (for an environment variable: is it set in that Envoy's environment?)",
                        refused_by.join(", ")
                    ),
                },
                (CredentialSource::Env(var), None) => Availability::Unknown {
                    reason: format!(
                        "its credential is the environment variable {var:?} of Envoy's Wasm VM; this control plane pushes to no Envoy (no --xds-listen), so whether Envoy has it is not known here"
                    ),
                },
                _ => Availability::Available,
            };
            (provider.name.clone(), availability)
        })
        .collect()
}

/// What a replica knows of one Envoy (by node id): kept in the store, so every replica
/// shows the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyStatus {
    pub cluster: String,
    pub connected: bool,
    pub last_seen: u64,
    /// The version it runs, per resource type.
    pub acked: std::collections::BTreeMap<String, String>,
    /// The last version it refused, per type, with its error.
    pub nacked: std::collections::BTreeMap<String, NackedVersion>,
    /// What its stats sink reports (none before its first flush, or without a sink).
    pub reported: Option<ReportedStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NackedVersion {
    pub version: String,
    pub error: String,
}

/// What one Envoy's stats sink reported, as far as tokenward cares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportedStats {
    /// When the last report arrived (Unix seconds).
    pub at: u64,
    /// `server.live`.
    pub live: Option<bool>,
    /// The parts of the filter's configuration this Envoy could not load.
    pub unavailable: BTreeSet<ConfigPart>,
    /// The filter's own count of them (absent until a filter that reports it runs).
    pub unavailable_parts: Option<u64>,
}

/// What one report says: gauges of parts (true: does not load), the count, liveness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsUpdate {
    pub parts: Vec<(ConfigPart, bool)>,
    pub unavailable_parts: Option<u64>,
    pub live: Option<bool>,
}

impl ReportedStats {
    /// Applies a report. Each gauge says where its part stands now; a part whose gauge is
    /// absent keeps its state (a sink may split a flush across messages).
    pub fn apply(&mut self, update: StatsUpdate, at: u64) {
        self.at = at;
        for (part, unavailable) in update.parts {
            if unavailable {
                self.unavailable.insert(part);
            } else {
                self.unavailable.remove(&part);
            }
        }
        if update.unavailable_parts.is_some() {
            self.unavailable_parts = update.unavailable_parts;
        }
        if update.live.is_some() {
            self.live = update.live;
        }
    }
}

#[cfg(test)]
mod tests;
