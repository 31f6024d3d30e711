//! The compiled credentials: the signing keys by `kid` with the claim rules, the API keys by
//! hash, and the revocation set — everything `token` needs to turn a credential into an
//! `Identity`, and nothing else of the configuration.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::auth::keys::{ClaimRules, VerificationKey};
use crate::config::{ApiKeyEntry, Config, Jwk};
use crate::document::Entry;
use crate::identity::{CredentialKind, Grants, Identity, JtiSet};
use crate::invalid::{InvalidConfig, PartKind, Unavailable};
use crate::quota::Quotas;

#[derive(Debug)]
pub struct Credentials {
    pub claim_rules: ClaimRules,
    pub max_token_lifetime_seconds: u64,
    /// Each key with its configured `kid`.
    keys: Vec<(Option<String>, VerificationKey)>,
    keys_by_kid: HashMap<String, usize>,
    api_keys: HashMap<[u8; 32], Arc<Identity>>,
    pub revocations: RevocationSet,
}

/// The revocation set, checked on every request whether or not the credential was cached.
#[derive(Debug, Default)]
pub struct RevocationSet {
    jtis: JtiSet,
    subjects: HashSet<String>,
    key_ids: HashSet<String>,
}

impl RevocationSet {
    pub fn revoked_key_ids(&self) -> impl Iterator<Item = &str> {
        self.key_ids.iter().map(String::as_str)
    }

    pub fn revokes(&self, identity: &Identity) -> bool {
        if self.subjects.contains(identity.subject()) {
            return true;
        }
        match identity.kind() {
            CredentialKind::Jwt { jti, kid } => {
                jti.is_some_and(|j| self.jtis.contains(j))
                    || kid.is_some_and(|k| self.key_ids.contains(k))
            }
            CredentialKind::ApiKey { .. } => false,
        }
    }
}

impl Credentials {
    /// Compiles the keys and API keys (what cannot be loaded goes to `unavailable` and is
    /// refused), the claim rules and the revocations of `config`. An API key that names a
    /// plan must name one of `quotas`.
    pub(crate) fn compile(
        config: &Config,
        keys: &[Entry<Jwk>],
        api_keys: &[Entry<ApiKeyEntry>],
        quotas: &Quotas,
        unavailable: &mut Unavailable,
    ) -> Credentials {
        let (keys, keys_by_kid) = compile_keys(keys, unavailable);
        let api_keys = compile_api_keys(api_keys, quotas, unavailable);
        let revocations = RevocationSet {
            jtis: config
                .revocations
                .jtis
                .iter()
                .map(|r| r.jti.as_str())
                .collect(),
            subjects: config.revocations.subjects.iter().cloned().collect(),
            key_ids: config.revocations.key_ids.iter().cloned().collect(),
        };
        Credentials {
            claim_rules: ClaimRules {
                issuers: Some([config.issuer.clone()].into()),
                audiences: Some(config.audiences.iter().cloned().collect()),
                clock_skew_seconds: config.clock_skew_seconds,
            },
            max_token_lifetime_seconds: config.max_token_lifetime_seconds,
            keys,
            keys_by_kid,
            api_keys,
            revocations,
        }
    }

    /// The key a JWT names, by `kid`, or the only key when there is one and the token names
    /// none; with the key's configured `kid`, which is what revocation checks (a token
    /// without `kid` must not escape the revocation of the key that signed it).
    pub fn key_for(&self, kid: Option<&str>) -> Option<(Option<&str>, &VerificationKey)> {
        let (configured_kid, key) = match kid {
            Some(kid) => self.keys_by_kid.get(kid).and_then(|&i| self.keys.get(i))?,
            None if self.keys.len() == 1 => self.keys.first()?,
            None => return None,
        };
        Some((configured_kid.as_deref(), key))
    }

    /// The keys in force with their `kid`, those revoked by key id left out: what may sign
    /// a pulled configuration once this one is in force.
    pub fn keys_in_force(&self) -> impl Iterator<Item = (Option<&str>, &VerificationKey)> {
        self.keys
            .iter()
            .filter(|(kid, _)| {
                kid.as_ref()
                    .is_none_or(|k| !self.revocations.key_ids.contains(k))
            })
            .map(|(kid, key)| (kid.as_deref(), key))
    }

    pub fn api_key(&self, hash: &[u8; 32]) -> Option<Arc<Identity>> {
        self.api_keys.get(hash).cloned()
    }
}

/// Keys with their configured `kid`, and where each `kid` is in that list.
type KeyTable = (
    Vec<(Option<String>, VerificationKey)>,
    HashMap<String, usize>,
);

/// Keys that cannot be loaded are left out: a token they signed is refused. A `kid` that
/// appears twice is left out altogether (which of the two verifies is ambiguous).
fn compile_keys(entries: &[Entry<Jwk>], unavailable: &mut Unavailable) -> KeyTable {
    let name =
        |jwk: &Jwk, index: usize| jwk.kid.clone().unwrap_or_else(|| format!("keys[{index}]"));
    // Counted over every entry, readable or not: a twin that cannot be loaded still makes
    // the kid ambiguous.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for kid in entries.iter().filter_map(|e| match e {
        Ok(jwk) => jwk.kid.as_deref(),
        Err(unreadable) => unreadable.kid.as_deref(),
    }) {
        *seen.entry(kid).or_default() += 1;
    }
    let mut keys = Vec::with_capacity(entries.len());
    let mut by_kid = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let jwk = match entry {
            Ok(jwk) => jwk,
            Err(unreadable) => {
                unavailable.unreadable(PartKind::Key, index, unreadable);
                continue;
            }
        };
        let problem = match &jwk.kid {
            Some(kid) if seen.get(kid.as_str()).is_some_and(|&n| n > 1) => {
                Some(InvalidConfig::DuplicateKid(kid.clone()))
            }
            None if entries.len() > 1 => Some(InvalidConfig::MissingKid(index)),
            _ => None,
        };
        let key = match problem {
            Some(problem) => Err(problem),
            None => VerificationKey::from_jwk(jwk)
                .map_err(|source| InvalidConfig::Key { index, source }),
        };
        match key {
            Ok(key) => {
                if let Some(kid) = &jwk.kid {
                    by_kid.insert(kid.clone(), keys.len());
                }
                keys.push((jwk.kid.clone(), key));
            }
            Err(reason) => unavailable.add(PartKind::Key, name(jwk, index), reason),
        }
    }
    (keys, by_kid)
}

/// API keys that cannot be loaded are left out (refused as unknown). A hash that appears
/// twice is left out altogether: which identity it stands for is ambiguous.
fn compile_api_keys(
    entries: &[Entry<ApiKeyEntry>],
    quotas: &Quotas,
    unavailable: &mut Unavailable,
) -> HashMap<[u8; 32], Arc<Identity>> {
    let mut api_keys = HashMap::with_capacity(entries.len());
    // Counted over every entry (readable or not, hex in any case) before any is accepted: a
    // hash that appears twice stands for no one, whichever twin would otherwise load.
    let mut counts: HashMap<[u8; 32], usize> = HashMap::new();
    for hex in entries.iter().filter_map(|e| match e {
        Ok(entry) => Some(entry.sha256.as_str()),
        Err(unreadable) => unreadable.sha256.as_deref(),
    }) {
        if let Some(hash) = parse_sha256_hex(&hex.to_ascii_lowercase()) {
            *counts.entry(hash).or_default() += 1;
        }
    }
    for (index, entry) in entries.iter().enumerate() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(unreadable) => {
                unavailable.unreadable(PartKind::ApiKey, index, unreadable);
                continue;
            }
        };
        let name = if entry.id.is_empty() {
            format!("api_keys[{index}]")
        } else {
            entry.id.clone()
        };
        let Some(hash) = parse_sha256_hex(&entry.sha256) else {
            unavailable.add(PartKind::ApiKey, name, InvalidConfig::BadApiKeyHash(index));
            continue;
        };
        let problem = if entry.subject.is_empty() || entry.id.is_empty() {
            Some(InvalidConfig::ApiKeyIdentity(index))
        } else if entry
            .plan
            .as_deref()
            .is_some_and(|plan| !quotas.has_plan(plan))
        {
            // A plan that exists but could not be loaded keeps the key: its requests are
            // refused with the plan's 503. A plan that does not exist at all is a mistake.
            Some(InvalidConfig::ApiKeyPlan(index))
        } else if counts.get(&hash).is_some_and(|&n| n > 1) {
            Some(InvalidConfig::DuplicateApiKey(index))
        } else {
            None
        };
        if let Some(problem) = problem {
            unavailable.add(PartKind::ApiKey, name, problem);
            continue;
        }
        let identity = Identity::api_key(
            entry.id.as_str().into(),
            &entry.subject,
            Arc::new(Grants {
                tenant: entry.tenant.clone(),
                scopes: entry.scopes.clone(),
                models: Some(entry.models.clone()),
                plan: entry.plan.clone(),
            }),
            entry.expires_at,
        );
        api_keys.insert(hash, Arc::new(identity));
    }
    api_keys
}

pub(crate) fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}
