//! Fleet-wide limits (docs/quotas.md): with a sync channel, a plan's limit holds across every
//! Envoy. The control plane turns each limit into per-Envoy allowances from the reports — a
//! ceiling on this Envoy's own counter for one window — and the request path counts against
//! the ceiling locally, as before: no host call is added to a request. This module holds a
//! worker's allowances, decides the ceiling a counter is held to, and notes what the control
//! plane must hear of: counters it has not granted yet, and demand an allowance refused.
//! Reporting them and taking the answer is `sync`'s.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::read::{self, Fields, Read, Node};
use crate::config::Unreachable;
use crate::json::write::{self, object, ToJson};
use crate::quota::counter::{QuotaError, SharedStore, MAX_CAS_ATTEMPTS};
use crate::window::Window;

/// The control plane's answer to a report: this Envoy's allowances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetAnswer {
    /// Envoys the control plane heard from lately: a counter it granted nothing for yet
    /// starts at `1 / fleet_size` of the limit.
    pub fleet_size: u64,
    #[serde(default)]
    pub grants: Vec<FleetGrant>,
}

/// How far one counter may go on this Envoy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetGrant {
    pub key: String,
    pub window_start: u64,
    /// The most this Envoy's counter may hold in that window.
    pub ceiling: u64,
    /// This Envoy's share of the limit (millionths): its ceiling in a later window the
    /// control plane has granted nothing for yet (a new window, or while it is away).
    pub share_ppm: u32,
}

/// A counter as this Envoy reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterState {
    pub key: String,
    pub window_start: u64,
    /// What the counter holds (reservations of requests in flight included).
    pub used: u64,
    /// What the Envoy's allowance refused in the window: demand the control plane weighs.
    #[serde(default)]
    pub denied: u64,
    /// The ceiling the Envoy counts to now.
    pub ceiling: u64,
}

const ANSWER: &str = "tokenward.fleet.answer";
const ANSWER_VERSION: &str = "tokenward.fleet.version";
/// Counters this Envoy counts fleet-wide, with what their allowances refused per window.
const KEYS: &str = "tokenward.fleet.keys";

/// The allowances as shared between workers: the answer and when it came.
#[derive(Debug)]
struct SharedAnswer {
    version: u64,
    contact_ms: u64,
    answer: FleetAnswer,
}

#[derive(Debug, Clone, Copy)]
struct Allowance {
    window_start: u64,
    ceiling: u64,
    share_ppm: u32,
}

/// What a counter may hold now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    /// Count up to this.
    Count(u64),
    /// The plan fails closed and the control plane has not answered for too long.
    Unreachable,
}

/// A worker's allowances and what it must tell the driving worker. Only the timer and the
/// request path of this worker touch it.
#[derive(Debug, Default)]
pub struct Allowances {
    grants: HashMap<String, Allowance>,
    fleet_size: u64,
    /// When the control plane last answered (Envoy's clock, ms); 0: never, since this Envoy
    /// started.
    contact_ms: u64,
    version: u64,
    /// How long an answer keeps the control plane "in contact" for fail-closed plans.
    contact_ttl_ms: u64,
    /// Counters counted with no grant for their window, and what allowances refused: for
    /// the next flush.
    pending: Noted,
}

/// What the control plane must hear of a counter in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Note {
    window_start: u64,
    /// What allowances refused in the window.
    denied: u64,
    /// The ceiling counted to without a grant (the largest any worker used).
    ceiling: u64,
}

impl Note {
    /// Adds `other` (of the same counter): a newer window replaces an older one.
    fn merge(&mut self, other: Note) {
        if other.window_start > self.window_start {
            *self = other;
        } else if other.window_start == self.window_start {
            self.denied = self.denied.saturating_add(other.denied);
            self.ceiling = self.ceiling.max(other.ceiling);
        }
    }
}

impl Allowances {
    pub fn new(contact_ttl_ms: u64) -> Allowances {
        Allowances {
            contact_ttl_ms,
            ..Allowances::default()
        }
    }

    pub fn set_contact_ttl(&mut self, contact_ttl_ms: u64) {
        self.contact_ttl_ms = contact_ttl_ms;
    }

    /// The ceiling of counter `key` of a limit of `limit`, in the window starting at
    /// `window_start`. Without a grant for that window the counter starts at this Envoy's last
    /// share of the limit for that counter, else at an even share of the fleet; the control
    /// plane hears of it on the next report.
    pub fn ceiling(
        &mut self,
        key: &str,
        limit: u64,
        window_start: u64,
        now_ms: u64,
        unreachable: Unreachable,
    ) -> Ceiling {
        if unreachable == Unreachable::FailClosed && !self.in_contact(now_ms) {
            return Ceiling::Unreachable;
        }
        // A grant holds for its own window only: one for another (the control plane's clock a
        // little ahead at a window's edge) says nothing of this window's counter.
        if let Some(grant) = self.grants.get(key) {
            if grant.window_start == window_start {
                return Ceiling::Count(grant.ceiling.min(limit));
            }
        }
        let share = match self.grants.get(key) {
            Some(grant) => {
                u64::try_from(u128::from(limit) * u128::from(grant.share_ppm) / 1_000_000)
                    .unwrap_or(limit)
            }
            // Rounded up: a limit smaller than the fleet still lets a first request through.
            None => limit.div_ceil(self.fleet_size.max(1)),
        }
        .min(limit);
        self.note(key, Note {
            window_start,
            denied: 0,
            ceiling: share,
        });
        Ceiling::Count(share)
    }

    /// The allowance refused `amount` that the limit itself would have taken.
    pub fn denied(&mut self, key: &str, window_start: u64, amount: u64) {
        self.note(key, Note {
            window_start,
            denied: amount,
            ceiling: 0,
        });
    }

    fn note(&mut self, key: &str, note: Note) {
        match self.pending.get_mut(key) {
            Some(noted) => noted.merge(note),
            None => {
                self.pending.insert(key.to_string(), note);
            }
        }
    }

    fn in_contact(&self, now_ms: u64) -> bool {
        self.contact_ms > 0 && now_ms.saturating_sub(self.contact_ms) <= self.contact_ttl_ms
    }

    /// The timer: hands what this worker noted to the driving worker, and takes the newest
    /// answer from shared data when there is one.
    pub fn sync(&mut self, store: &dyn SharedStore) {
        if !self.pending.is_empty() {
            match merge_keys(store, &self.pending) {
                Ok(()) => self.pending.clear(),
                Err(error) => log::warn!("fleet counters could not be noted yet: {error}"),
            }
        }
        let Ok(Some((version, _))) = store.get(ANSWER_VERSION) else {
            return;
        };
        if parse_u64(&version) == Some(self.version) {
            return;
        }
        let Ok(Some((bytes, _))) = store.get(ANSWER) else {
            return;
        };
        match read::from_json(&bytes, SharedAnswer::read) {
            Ok(shared) => self.take(shared),
            Err(error) => log::warn!("the fleet allowances in shared data are unreadable: {error}"),
        }
    }

    fn take(&mut self, shared: SharedAnswer) {
        self.version = shared.version;
        self.contact_ms = shared.contact_ms;
        self.fleet_size = shared.answer.fleet_size;
        self.grants = shared
            .answer
            .grants
            .into_iter()
            .map(|g| {
                (
                    g.key,
                    Allowance {
                        window_start: g.window_start,
                        ceiling: g.ceiling,
                        share_ppm: g.share_ppm,
                    },
                )
            })
            .collect();
    }

    /// The counters to report (the driving worker): every counter noted or granted, in the
    /// window in force at `now` (Unix seconds), with what it holds and the ceiling it counts
    /// to. Notes of ended windows are dropped.
    pub fn counters(
        &mut self,
        store: &dyn SharedStore,
        now: u64,
    ) -> Result<Vec<CounterState>, QuotaError> {
        self.sync(store);
        let mut noted = prune_keys(store, now)?;
        // Granted counters are reported while this Envoy uses them in the window in force; one
        // it does not use drops out of the control plane's answers, and so out of the table.
        for key in self.grants.keys() {
            let Some(window) = window_of(key) else {
                continue;
            };
            if !noted.contains_key(key) && super::peek_named(store, key, now)? > 0 {
                noted.insert(
                    key.clone(),
                    Note {
                        window_start: window.start(now),
                        ..Note::default()
                    },
                );
            }
        }
        let mut counters = Vec::with_capacity(noted.len());
        for (key, note) in noted {
            if window_of(&key).is_none() {
                continue;
            }
            let used = super::peek_named(store, &key, now)?;
            let ceiling = match self.grants.get(&key) {
                Some(grant) if grant.window_start == note.window_start => grant.ceiling,
                _ => note.ceiling,
            };
            counters.push(CounterState {
                key,
                window_start: note.window_start,
                used,
                denied: note.denied,
                ceiling,
            });
        }
        counters.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(counters)
    }
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Puts the control plane's answer into shared data for every worker (the driving worker).
pub fn publish(store: &dyn SharedStore, answer: FleetAnswer, now_ms: u64) -> Result<(), QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (version, cas) = match store.get(ANSWER_VERSION)? {
            Some((bytes, cas)) => (parse_u64(&bytes).unwrap_or(0), Some(cas)),
            None => (0, None),
        };
        let next = version + 1;
        let shared = SharedAnswer {
            version: next,
            contact_ms: now_ms,
            answer: answer.clone(),
        };
        let bytes = write::to_vec(&shared);
        // The answer first, then its version: a worker that sees the version reads an answer
        // at least that new.
        if store.compare_and_set(ANSWER, &bytes, current_cas(store, ANSWER)?)?
            && store.compare_and_set(ANSWER_VERSION, next.to_string().as_bytes(), cas)?
        {
            return Ok(());
        }
    }
    Err(QuotaError::Contended)
}

fn current_cas(store: &dyn SharedStore, key: &str) -> Result<Option<u32>, QuotaError> {
    Ok(store.get(key)?.map(|(_, cas)| cas))
}

type Noted = HashMap<String, Note>;

fn read_noted(value: &Node) -> Read<Noted> {
    Ok(read::map(value, Note::read)?.into_iter().collect())
}

impl FleetAnswer {
    pub fn read(value: &Node) -> Read<FleetAnswer> {
        let fields = Fields::of(value, &["fleet_size", "grants"])?;
        Ok(FleetAnswer {
            fleet_size: fields.required("fleet_size", read::u64)?,
            grants: fields.or_default("grants", |v| read::list(v, FleetGrant::read))?,
        })
    }
}

impl FleetGrant {
    pub fn read(value: &Node) -> Read<FleetGrant> {
        let fields = Fields::of(value, &["key", "window_start", "ceiling", "share_ppm"])?;
        Ok(FleetGrant {
            key: fields.required("key", read::string)?,
            window_start: fields.required("window_start", read::u64)?,
            ceiling: fields.required("ceiling", read::u64)?,
            share_ppm: fields.required("share_ppm", read::u32)?,
        })
    }
}

read::deserialize_by_reader!(FleetAnswer, FleetGrant);

// Written as their `Serialize` writes them: the control plane and tests read them with serde;
// the shared-data records only this module reads.

impl ToJson for FleetAnswer {
    fn write_json(&self, out: &mut String) {
        let FleetAnswer { fleet_size, grants } = self;
        object(out, |answer| {
            answer.field("fleet_size", fleet_size).field("grants", grants);
        });
    }
}

impl ToJson for FleetGrant {
    fn write_json(&self, out: &mut String) {
        let FleetGrant {
            key,
            window_start,
            ceiling,
            share_ppm,
        } = self;
        object(out, |grant| {
            grant
                .field("key", key)
                .field("window_start", window_start)
                .field("ceiling", ceiling)
                .field("share_ppm", share_ppm);
        });
    }
}

impl ToJson for CounterState {
    fn write_json(&self, out: &mut String) {
        let CounterState {
            key,
            window_start,
            used,
            denied,
            ceiling,
        } = self;
        object(out, |counter| {
            counter
                .field("key", key)
                .field("window_start", window_start)
                .field("used", used)
                .field("denied", denied)
                .field("ceiling", ceiling);
        });
    }
}

impl ToJson for SharedAnswer {
    fn write_json(&self, out: &mut String) {
        let SharedAnswer {
            version,
            contact_ms,
            answer,
        } = self;
        object(out, |shared| {
            shared
                .field("version", version)
                .field("contact_ms", contact_ms)
                .field("answer", answer);
        });
    }
}

impl ToJson for Note {
    fn write_json(&self, out: &mut String) {
        let Note {
            window_start,
            denied,
            ceiling,
        } = self;
        object(out, |note| {
            note.field("window_start", window_start)
                .field("denied", denied)
                .field("ceiling", ceiling);
        });
    }
}

impl SharedAnswer {
    fn read(value: &Node) -> Read<SharedAnswer> {
        let fields = Fields::open(value)?;
        Ok(SharedAnswer {
            version: fields.required("version", read::u64)?,
            contact_ms: fields.required("contact_ms", read::u64)?,
            answer: fields.required("answer", FleetAnswer::read)?,
        })
    }
}

impl Note {
    fn read(value: &Node) -> Read<Note> {
        let fields = Fields::open(value)?;
        Ok(Note {
            window_start: fields.required("window_start", read::u64)?,
            denied: fields.required("denied", read::u64)?,
            ceiling: fields.required("ceiling", read::u64)?,
        })
    }
}

fn read_keys(store: &dyn SharedStore) -> Result<(Noted, Option<u32>), QuotaError> {
    Ok(match store.get(KEYS)? {
        Some((bytes, cas)) => (
            read::from_json(&bytes, read_noted).unwrap_or_default(),
            Some(cas),
        ),
        None => (HashMap::new(), None),
    })
}

/// The Envoy's notes of the windows in force at `now`; those of ended windows are dropped.
fn prune_keys(store: &dyn SharedStore, now: u64) -> Result<Noted, QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (mut noted, cas) = read_keys(store)?;
        let before = noted.len();
        noted.retain(|key, note| window_of(key).is_some_and(|w| w.start(now) == note.window_start));
        if noted.len() == before {
            return Ok(noted);
        }
        let bytes = write::to_vec(&noted);
        if store.compare_and_set(KEYS, &bytes, cas)? {
            return Ok(noted);
        }
    }
    Err(QuotaError::Contended)
}

/// Adds a worker's notes to the Envoy's: a note of a newer window replaces an older one.
fn merge_keys(store: &dyn SharedStore, pending: &Noted) -> Result<(), QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (mut noted, cas) = read_keys(store)?;
        for (key, note) in pending {
            match noted.get_mut(key) {
                Some(held) => held.merge(*note),
                None => {
                    noted.insert(key.clone(), *note);
                }
            }
        }
        let bytes = write::to_vec(&noted);
        if store.compare_and_set(KEYS, &bytes, cas)? {
            return Ok(());
        }
    }
    Err(QuotaError::Contended)
}

/// The parts of a counter key (`quota::Limit::key`): `tw:q:<plan>:<limit>:<metric>:<window>:
/// <s|t|ts>:<id>`. Plan, limit, metric and window names hold no `:`; the id may.
pub fn key_parts(key: &str) -> Option<KeyParts<'_>> {
    let mut parts = key.splitn(8, ':');
    if parts.next()? != "tw" || parts.next()? != "q" {
        return None;
    }
    let plan = parts.next()?;
    let limit = parts.next()?;
    let metric = parts.next()?;
    let window = match parts.next()? {
        "minute" => Window::Minute,
        "hour" => Window::Hour,
        "day" => Window::Day,
        "month" => Window::Month,
        _ => return None,
    };
    let scope = parts.next()?;
    let id = parts.next()?;
    Some(KeyParts {
        plan,
        limit,
        metric,
        window,
        scope,
        id,
    })
}

/// A counter key, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub plan: &'a str,
    pub limit: &'a str,
    pub metric: &'a str,
    pub window: Window,
    /// `s` (a subject's), `t` (a tenant's), `ts` (a subject without tenant, under a tenant
    /// limit).
    pub scope: &'a str,
    pub id: &'a str,
}

fn window_of(key: &str) -> Option<Window> {
    key_parts(key).map(|p| p.window)
}

#[cfg(test)]
mod tests;
