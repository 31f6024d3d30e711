//! Failed-authentication bursts (docs/guard.md): failures counted per client address and per
//! credential fingerprint in shared data, in a fixed table of slots per kind, and the sources
//! over the threshold refused for a cool-down. Owns the counting, the table and the block
//! events the sync channel reports; when to check and what to refuse is the request path's.

use std::net::IpAddr;

use serde::Serialize;

use crate::json::write::{self, object, ToJson};

use crate::config::read::{self, Fields, Read, Node};
use crate::config::FailedAuthConfig;
use crate::invalid::InvalidConfig;
use crate::quota::counter::{QuotaError, SharedStore, MAX_CAS_ATTEMPTS};

/// Slots per kind: the table's bound. 1024 live sources per kind is far beyond a normal
/// failure rate; under a wider spray the least-failed unblocked slot is taken over.
pub const SLOTS: u64 = 1024;
/// Slots tried after a value's own one, so two values whose hashes collide both get counted.
const PROBES: u64 = 4;
/// Blocks kept for the next report at most: a flood of blocks must not grow shared data.
pub const MAX_EVENTS: usize = 64;

/// Bounds the policy compile holds the settings to.
pub const MAX_THRESHOLD: u32 = 1_000_000;
pub const MAX_WINDOW_SECONDS: u64 = 86_400;
pub const MAX_BLOCK_SECONDS: u64 = 7 * 86_400;

/// The latest `until` of any block: workers copy it on their timer, so a request with a
/// verified credential costs no host call while nothing is blocked.
const ACTIVE: &str = "tokenward.guard.active";
/// Blocks the control plane has not heard of yet.
const EVENTS: &str = "tokenward.guard.events";

/// What a failure is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The client's IP address (Envoy's `source.address`).
    Address,
    /// The credential's short fingerprint: one credential tried from many addresses.
    Credential,
}

impl SourceKind {
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Address => "address",
            SourceKind::Credential => "credential",
        }
    }
}

/// A block as the control plane hears of it (sync report `blocks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockEvent {
    pub kind: SourceKind,
    /// The address, or the credential's fingerprint (never the credential).
    pub value: String,
    /// Failures counted in the window that started the block.
    pub failures: u32,
    /// Unix seconds.
    pub blocked_at: u64,
    pub until: u64,
}

impl SourceKind {
    pub fn read(value: &Node) -> Read<SourceKind> {
        read::variant(
            value,
            &[
                ("address", SourceKind::Address),
                ("credential", SourceKind::Credential),
            ],
        )
    }
}

impl BlockEvent {
    pub fn read(value: &Node) -> Read<BlockEvent> {
        let fields = Fields::of(value, &["kind", "value", "failures", "blocked_at", "until"])?;
        Ok(BlockEvent {
            kind: fields.required("kind", SourceKind::read)?,
            value: fields.required("value", read::string)?,
            failures: fields.required("failures", read::u32)?,
            blocked_at: fields.required("blocked_at", read::u64)?,
            until: fields.required("until", read::u64)?,
        })
    }
}

read::deserialize_by_reader!(SourceKind, BlockEvent);

impl ToJson for BlockEvent {
    fn write_json(&self, out: &mut String) {
        let BlockEvent {
            kind,
            value,
            failures,
            blocked_at,
            until,
        } = self;
        object(out, |event| {
            event
                .field("kind", &kind.label())
                .field("value", value)
                .field("failures", failures)
                .field("blocked_at", blocked_at)
                .field("until", until);
        });
    }
}

/// The compiled settings; a policy without them does not guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSettings {
    pub threshold: u32,
    pub window_seconds: u64,
    pub block_seconds: u64,
    exempt: Vec<Cidr>,
}

impl GuardSettings {
    /// `None` when the guard is off (`enabled: false` or threshold 0).
    pub fn compile(config: &FailedAuthConfig) -> Result<Option<GuardSettings>, InvalidConfig> {
        let bad = |problem: String| InvalidConfig::Guard(problem);
        if !config.enabled || config.threshold == 0 {
            return Ok(None);
        }
        if config.threshold > MAX_THRESHOLD {
            return Err(bad(format!("threshold must be at most {MAX_THRESHOLD}")));
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&config.window_seconds) {
            return Err(bad(format!(
                "window_seconds must be between 1 and {MAX_WINDOW_SECONDS}"
            )));
        }
        if !(1..=MAX_BLOCK_SECONDS).contains(&config.block_seconds) {
            return Err(bad(format!(
                "block_seconds must be between 1 and {MAX_BLOCK_SECONDS}"
            )));
        }
        let exempt = config
            .exempt
            .iter()
            .map(|text| Cidr::parse(text).ok_or_else(|| bad(format!("exempt: {} is not a CIDR", crate::quoted::Quoted(text)))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(GuardSettings {
            threshold: config.threshold,
            window_seconds: config.window_seconds,
            block_seconds: config.block_seconds,
            exempt,
        }))
    }

    /// The defaults: what a configuration without a guard section gets.
    pub fn defaults() -> GuardSettings {
        GuardSettings {
            threshold: crate::config::default_guard_threshold(),
            window_seconds: crate::config::default_guard_window(),
            block_seconds: crate::config::default_guard_block(),
            exempt: Vec::new(),
        }
    }

    /// Whether failures from `address` are left uncounted.
    pub fn exempts(&self, address: &str) -> bool {
        if self.exempt.is_empty() {
            return false;
        }
        match address.parse::<IpAddr>() {
            Ok(ip) => self.exempt.iter().any(|cidr| cidr.contains(ip)),
            Err(_) => false,
        }
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u32,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip.parse::<IpAddr>().ok()?, prefix.parse::<u32>().ok()?),
            None => {
                let ip = text.parse::<IpAddr>().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr {
            network: ip,
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What one slot holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Slot {
    window_start: u64,
    failures: u32,
    blocked_at: u64,
    blocked_until: u64,
    value: String,
}

impl Slot {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.value.len());
        out.extend_from_slice(&self.window_start.to_le_bytes());
        out.extend_from_slice(&self.failures.to_le_bytes());
        out.extend_from_slice(&self.blocked_at.to_le_bytes());
        out.extend_from_slice(&self.blocked_until.to_le_bytes());
        out.extend_from_slice(self.value.as_bytes());
        out
    }

    /// A value of another shape counts as a free slot.
    fn decode(bytes: &[u8]) -> Option<Slot> {
        let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        Some(Slot {
            window_start: u64_at(0)?,
            failures: u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?),
            blocked_at: u64_at(12)?,
            blocked_until: u64_at(20)?,
            value: String::from_utf8(bytes.get(28..)?.to_vec()).ok()?,
        })
    }

    fn blocked(&self, now: u64) -> bool {
        self.blocked_until > now
    }

    /// Neither blocked nor counting: free to take over.
    fn stale(&self, now: u64, window_seconds: u64) -> bool {
        !self.blocked(now) && self.window_start.saturating_add(window_seconds) <= now
    }
}

/// FNV-1a: the same slot in every worker (the VMs run the same code), and no allocation.
fn slot_of(value: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % SLOTS
}

fn slot_key(kind: SourceKind, index: u64) -> String {
    format!("tokenward.guard.{}.{index}", kind.label())
}

fn probe_keys(kind: SourceKind, value: &str) -> impl Iterator<Item = String> + '_ {
    let first = slot_of(value);
    (0..PROBES).map(move |i| slot_key(kind, (first + i) % SLOTS))
}

/// Until when `value` is blocked, if it is at `now`.
pub fn blocked_until(
    store: &dyn SharedStore,
    kind: SourceKind,
    value: &str,
    now: u64,
) -> Result<Option<u64>, QuotaError> {
    for key in probe_keys(kind, value) {
        let Some((bytes, _)) = store.get(&key)? else {
            // Values are only ever placed at or before the first free slot.
            return Ok(None);
        };
        if let Some(slot) = Slot::decode(&bytes) {
            if slot.value == value {
                return Ok(slot.blocked(now).then_some(slot.blocked_until));
            }
        }
    }
    Ok(None)
}

/// Counts one failed authentication of `value`; the block it starts, if this failure
/// crosses the threshold. A failure the table has no room for (every probed slot blocked)
/// is not counted.
pub fn record_failure(
    store: &dyn SharedStore,
    settings: &GuardSettings,
    kind: SourceKind,
    value: &str,
    now: u64,
) -> Result<Option<BlockEvent>, QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((key, mut slot, cas)) = place(store, settings, kind, value, now)? else {
            return Ok(None);
        };
        if slot.blocked(now) {
            // Already refused; only a request on a verified credential gets here.
            return Ok(None);
        }
        // A block that ran out starts the count over, even inside the window that caused
        // it: the cool-down was the penalty, the next failure must not re-block at once.
        let block_over = slot.blocked_until != 0 && slot.blocked_until <= now;
        if block_over || slot.window_start.saturating_add(settings.window_seconds) <= now {
            slot.window_start = now;
            slot.failures = 0;
            slot.blocked_at = 0;
            slot.blocked_until = 0;
        }
        slot.failures = slot.failures.saturating_add(1);
        let starts = slot.failures >= settings.threshold;
        if starts {
            slot.blocked_at = now;
            slot.blocked_until = now.saturating_add(settings.block_seconds);
        }
        if store.compare_and_set(&key, &slot.encode(), cas)? {
            return Ok(starts.then(|| BlockEvent {
                kind,
                value: value.to_string(),
                failures: slot.failures,
                blocked_at: slot.blocked_at,
                until: slot.blocked_until,
            }));
        }
    }
    Err(QuotaError::Contended)
}

/// The slot `value` counts in: its own, else the first free or stale one, else the probed
/// slot with the fewest failures that is not blocked (its count starts over). `None` when
/// every probed slot holds a block.
fn place(
    store: &dyn SharedStore,
    settings: &GuardSettings,
    kind: SourceKind,
    value: &str,
    now: u64,
) -> Result<Option<(String, Slot, Option<u32>)>, QuotaError> {
    let fresh = || Slot {
        value: value.to_string(),
        ..Slot::default()
    };
    let mut free: Option<(String, Option<u32>)> = None;
    let mut weakest: Option<(String, u32, u32)> = None;
    for key in probe_keys(kind, value) {
        let Some((bytes, cas)) = store.get(&key)? else {
            let (key, cas) = free.unwrap_or((key, None));
            return Ok(Some((key, fresh(), cas)));
        };
        match Slot::decode(&bytes) {
            Some(slot) if slot.value == value => return Ok(Some((key, slot, Some(cas)))),
            Some(slot) if !slot.stale(now, settings.window_seconds) => {
                if !slot.blocked(now) && weakest.as_ref().is_none_or(|(_, f, _)| slot.failures < *f) {
                    weakest = Some((key, slot.failures, cas));
                }
            }
            _ => {
                free.get_or_insert((key, Some(cas)));
            }
        }
    }
    Ok(free
        .or(weakest.map(|(key, _, cas)| (key, Some(cas))))
        .map(|(key, cas)| (key, fresh(), cas)))
}

/// Notes a block for every worker's timer (`active_until`) and for the control plane.
pub fn announce(store: &dyn SharedStore, block: &BlockEvent) -> Result<(), QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (until, cas) = match store.get(ACTIVE)? {
            Some((bytes, cas)) => (decode_u64(&bytes), Some(cas)),
            None => (0, None),
        };
        if until >= block.until
            || store.compare_and_set(ACTIVE, &block.until.to_le_bytes(), cas)?
        {
            break;
        }
    }
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (mut events, cas) = read_events(store)?;
        if events.len() >= MAX_EVENTS {
            // The oldest go: the control plane learns of the burst from the newest.
            events.drain(..=events.len() - MAX_EVENTS);
        }
        events.push(block.clone());
        let bytes = write::to_vec(&events);
        if store.compare_and_set(EVENTS, &bytes, cas)? {
            return Ok(());
        }
    }
    Err(QuotaError::Contended)
}

/// The latest end of any block in this Envoy (0: none ever).
pub fn active_until(store: &dyn SharedStore) -> u64 {
    match store.get(ACTIVE) {
        Ok(Some((bytes, _))) => decode_u64(&bytes),
        _ => 0,
    }
}

fn decode_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn read_events(store: &dyn SharedStore) -> Result<(Vec<BlockEvent>, Option<u32>), QuotaError> {
    Ok(match store.get(EVENTS)? {
        Some((bytes, cas)) => (
            read::from_json(&bytes, |v| read::list(v, BlockEvent::read)).unwrap_or_default(),
            Some(cas),
        ),
        None => (Vec::new(), None),
    })
}

/// Takes the blocks not reported yet (the report that carries them is kept until taken).
pub fn take_events(store: &dyn SharedStore) -> Result<Vec<BlockEvent>, QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (events, cas) = read_events(store)?;
        if events.is_empty() {
            return Ok(events);
        }
        if store.compare_and_set(EVENTS, b"[]", cas)? {
            return Ok(events);
        }
    }
    Err(QuotaError::Contended)
}

/// Puts back blocks a report could not take after all.
pub fn restore_events(store: &dyn SharedStore, blocks: Vec<BlockEvent>) -> Result<(), QuotaError> {
    if blocks.is_empty() {
        return Ok(());
    }
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (current, cas) = read_events(store)?;
        let mut events = blocks.clone();
        events.extend(current);
        let excess = events.len().saturating_sub(MAX_EVENTS);
        events.drain(..excess);
        let bytes = write::to_vec(&events);
        if store.compare_and_set(EVENTS, &bytes, cas)? {
            return Ok(());
        }
    }
    Err(QuotaError::Contended)
}

#[cfg(test)]
mod tests;
