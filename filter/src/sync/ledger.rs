//! Usage a worker forwarded since it last flushed, and the Envoy-wide outbox it flushes into
//! (a shared-data key, CAS) for the worker that reports. Counted per subject, tenant, plan,
//! credential, provider and model, from what the request path already measured (the quota
//! settlement's usage and cost): recording costs no host call.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::read::{self, Fields, Node, Read};
use crate::json::write::{self, object, ToJson};
use crate::quota::counter::{QuotaError, SharedStore, MAX_CAS_ATTEMPTS};

/// Who used what, through which provider and model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    pub subject: String,
    pub tenant: Option<String>,
    pub plan: Option<String>,
    /// The API key's id or the token's `jti`.
    pub credential: Option<String>,
    pub provider: String,
    pub model: Option<String>,
}

/// What was used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cost_micro_usd: u64,
}

impl UsageCounts {
    fn add(&mut self, other: &UsageCounts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(other.cost_micro_usd);
    }
}

read::deserialize_by_reader!(UsageEntry);

/// One line of a usage report, as the control plane receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEntry {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub cost_micro_usd: u64,
}

impl ToJson for UsageEntry {
    fn write_json(&self, out: &mut String) {
        let UsageEntry {
            subject,
            tenant,
            plan,
            credential,
            provider,
            model,
            requests,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cost_micro_usd,
        } = self;
        object(out, |entry| {
            entry.field("subject", subject);
            if let Some(tenant) = tenant {
                entry.field("tenant", tenant);
            }
            if let Some(plan) = plan {
                entry.field("plan", plan);
            }
            if let Some(credential) = credential {
                entry.field("credential", credential);
            }
            entry.field("provider", provider);
            if let Some(model) = model {
                entry.field("model", model);
            }
            entry
                .field("requests", requests)
                .field("input_tokens", input_tokens)
                .field("output_tokens", output_tokens)
                .field("cached_input_tokens", cached_input_tokens)
                .field("cost_micro_usd", cost_micro_usd);
        });
    }
}

impl UsageEntry {
    pub fn read(value: &Node) -> Read<UsageEntry> {
        let fields = Fields::of(
            value,
            &[
                "subject",
                "tenant",
                "plan",
                "credential",
                "provider",
                "model",
                "requests",
                "input_tokens",
                "output_tokens",
                "cached_input_tokens",
                "cost_micro_usd",
            ],
        )?;
        Ok(UsageEntry {
            subject: fields.required("subject", read::string)?,
            tenant: fields.optional("tenant", read::string)?,
            plan: fields.optional("plan", read::string)?,
            credential: fields.optional("credential", read::string)?,
            provider: fields.required("provider", read::string)?,
            model: fields.optional("model", read::string)?,
            requests: fields.or_default("requests", read::u64)?,
            input_tokens: fields.or_default("input_tokens", read::u64)?,
            output_tokens: fields.or_default("output_tokens", read::u64)?,
            cached_input_tokens: fields.or_default("cached_input_tokens", read::u64)?,
            cost_micro_usd: fields.or_default("cost_micro_usd", read::u64)?,
        })
    }

    fn new(key: UsageKey, counts: UsageCounts) -> UsageEntry {
        let UsageKey {
            subject,
            tenant,
            plan,
            credential,
            provider,
            model,
        } = key;
        UsageEntry {
            subject,
            tenant,
            plan,
            credential,
            provider,
            model,
            requests: counts.requests,
            input_tokens: counts.input_tokens,
            output_tokens: counts.output_tokens,
            cached_input_tokens: counts.cached_input_tokens,
            cost_micro_usd: counts.cost_micro_usd,
        }
    }

    fn split(self) -> (UsageKey, UsageCounts) {
        let UsageEntry {
            subject,
            tenant,
            plan,
            credential,
            provider,
            model,
            requests,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cost_micro_usd,
        } = self;
        (
            UsageKey {
                subject,
                tenant,
                plan,
                credential,
                provider,
                model,
            },
            UsageCounts {
                requests,
                input_tokens,
                output_tokens,
                cached_input_tokens,
                cost_micro_usd,
            },
        )
    }
}

/// A worker's usage since its last flush.
#[derive(Debug, Default)]
pub struct UsageLedger {
    counts: HashMap<UsageKey, UsageCounts>,
}

impl UsageLedger {
    pub fn record(&mut self, key: UsageKey, counts: UsageCounts) {
        self.counts.entry(key).or_default().add(&counts);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Adds this worker's usage to the outbox and empties the ledger. On a store error (or a
    /// contended outbox) the usage stays here for the next flush: nothing is lost or counted
    /// twice.
    pub fn flush(&mut self, store: &dyn SharedStore) -> Result<(), QuotaError> {
        if self.counts.is_empty() {
            return Ok(());
        }
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (current, cas) = match store.get(OUTBOX)? {
                Some((bytes, cas)) => (decode(&bytes), Some(cas)),
                None => (Vec::new(), None),
            };
            let mut merged: HashMap<UsageKey, UsageCounts> = HashMap::new();
            for entry in current {
                let (key, counts) = entry.split();
                merged.entry(key).or_default().add(&counts);
            }
            for (key, counts) in &self.counts {
                merged.entry(key.clone()).or_default().add(counts);
            }
            if store.compare_and_set(OUTBOX, &encode(merged), cas)? {
                self.counts.clear();
                return Ok(());
            }
        }
        Err(QuotaError::Contended)
    }
}

/// The Envoy-wide usage not yet put into a report.
pub const OUTBOX: &str = "tokenward.sync.outbox";

/// Takes everything in the outbox, leaving it empty.
pub fn take_outbox(store: &dyn SharedStore) -> Result<Vec<UsageEntry>, QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((bytes, cas)) = store.get(OUTBOX)? else {
            return Ok(Vec::new());
        };
        let entries = decode(&bytes);
        if entries.is_empty() {
            return Ok(entries);
        }
        if store.compare_and_set(OUTBOX, b"[]", Some(cas))? {
            return Ok(entries);
        }
    }
    Err(QuotaError::Contended)
}

/// Puts entries back into the outbox (a report that could not be kept).
pub fn restore_outbox(store: &dyn SharedStore, entries: Vec<UsageEntry>) -> Result<(), QuotaError> {
    let mut ledger = UsageLedger::default();
    for entry in entries {
        let (key, counts) = entry.split();
        ledger.record(key, counts);
    }
    ledger.flush(store)
}

fn encode(counts: HashMap<UsageKey, UsageCounts>) -> Vec<u8> {
    let mut entries: Vec<UsageEntry> = counts
        .into_iter()
        .map(|(key, counts)| UsageEntry::new(key, counts))
        .collect();
    entries.sort_by(|a, b| {
        (&a.subject, &a.provider, &a.model).cmp(&(&b.subject, &b.provider, &b.model))
    });
    write::to_vec(&entries)
}

/// Only this module writes the outbox; anything else in it (a foreign writer) reads as empty.
fn decode(bytes: &[u8]) -> Vec<UsageEntry> {
    read::from_json(bytes, |v| read::list(v, UsageEntry::read)).unwrap_or_else(|error| {
        log::error!("the usage outbox is unreadable ({error}); starting it again");
        Vec::new()
    })
}
