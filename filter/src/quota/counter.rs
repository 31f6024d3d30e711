//! Quota counters in a shared store (proxy-wasm shared data: per Envoy process, shared by
//! all workers, keys never freed). One key per (plan, scope, subject or tenant) holds a slot
//! for every limit of that scope: the limit's id, its window start and the count, each
//! rolled over in place when a new window begins. A request reads the key once and writes
//! it once however many limits it counts, and admission is all or nothing across them.
//! Every change is a compare-and-set loop with a bounded number of attempts; running out is
//! an error the caller must fail closed on. `quota` decides what to count; this module only
//! counts.

use crate::window::Window;

/// Attempts before an update gives up as contended.
pub const MAX_CAS_ATTEMPTS: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("the quota store refused the operation: {0}")]
    Store(String),
    #[error("the counter stayed contended for {MAX_CAS_ATTEMPTS} attempts")]
    Contended,
}

/// The shared store as counters need it.
pub trait SharedStore {
    /// The value and its CAS token, or `None` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, QuotaError>;
    /// Writes `value` if the key's token is still `cas` — or, with `None`, if the key still
    /// does not exist. `Ok(false)` when another writer came first. (Envoy's own `set` with no
    /// CAS is unconditional, so its implementation must make creation atomic itself.)
    fn compare_and_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, QuotaError>;
}

/// A limit's place in its group: an id naming the limit, its metric and window (so a config
/// update that keeps them keeps the count, and one that changes what is counted starts
/// afresh), and the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub id: u64,
    pub window: Window,
}

impl Slot {
    /// The slot of the limit `name` counting `metric` per `window` (FNV-1a of the three).
    pub fn new(name: &str, metric: &str, window: Window, window_name: &str) -> Slot {
        let mut id: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [name, metric, window_name] {
            for &b in part.as_bytes().iter().chain(b":") {
                id ^= u64::from(b);
                id = id.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        Slot { id, window }
    }
}

/// One slot's window start and the amount used in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub window_start: u64,
    pub used: u64,
}

/// Bytes per slot in a stored group: id, window start, count.
const SLOT_BYTES: usize = 24;

/// A group as stored: its slots and the token to update it.
struct Group {
    slots: Vec<(u64, Count)>,
    cas: Option<u32>,
}

impl Group {
    fn read(store: &dyn SharedStore, key: &str) -> Result<Group, QuotaError> {
        Ok(match store.get(key)? {
            Some((bytes, cas)) => Group {
                slots: decode(&bytes),
                cas: Some(cas),
            },
            None => Group {
                slots: Vec::new(),
                cas: None,
            },
        })
    }

    /// The count of `slot` in force at `now`. A worker whose clock is a little behind
    /// counts into the newer window it finds rather than rolling it back; a past window
    /// rolls over.
    fn current(&self, slot: Slot, now: u64) -> Count {
        let start = slot.window.start(now);
        match self.slots.iter().find(|(id, _)| *id == slot.id) {
            Some((_, count)) if count.window_start >= start => *count,
            _ => Count {
                window_start: start,
                used: 0,
            },
        }
    }

    fn write(&self, store: &dyn SharedStore, key: &str) -> Result<bool, QuotaError> {
        store.compare_and_set(key, &encode(self.slots.iter().copied()), self.cas)
    }
}

/// A stored group's slots. A value of another shape (an older layout, a foreign writer)
/// holds none: its counts start afresh.
pub fn decode(bytes: &[u8]) -> Vec<(u64, Count)> {
    if bytes.len() % SLOT_BYTES != 0 {
        return Vec::new();
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    bytes
        .chunks_exact(SLOT_BYTES)
        .map(|s| {
            let count = Count {
                window_start: word(s, 8),
                used: word(s, 16),
            };
            (word(s, 0), count)
        })
        .collect()
}

pub fn encode(slots: impl ExactSizeIterator<Item = (u64, Count)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(slots.len() * SLOT_BYTES);
    for (id, count) in slots {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&count.window_start.to_le_bytes());
        out.extend_from_slice(&count.used.to_le_bytes());
    }
    out
}

/// What one limit asks of its group's admission: the amount to count and the most its slot
/// may hold on this Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub slot: Slot,
    pub amount: u64,
    pub ceiling: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted: every ask's count including its amount, in the order asked.
    Admitted(Vec<Count>),
    /// The ask at `index` does not fit, so nothing was counted; `counts` are every ask's
    /// count as it stands, and `resets_at` is when the refusing one's window ends.
    Refused {
        index: usize,
        counts: Vec<Count>,
        resets_at: u64,
    },
}

/// The counts of `slots` in force at `now`, in one read.
pub fn peek(
    store: &dyn SharedStore,
    key: &str,
    slots: impl Iterator<Item = Slot>,
    now: u64,
) -> Result<Vec<u64>, QuotaError> {
    let group = Group::read(store, key)?;
    Ok(slots.map(|slot| group.current(slot, now).used).collect())
}

/// Counts every ask if each fits its ceiling, atomically and all or nothing: exactly the
/// ceiling is admitted however many workers race. With `enforce` false (shadow mode) it
/// counts even past the ceilings. A group whose asks are all zero is only read. The value
/// written holds the asked slots only, so slots of limits a plan no longer has are dropped.
pub fn admit(
    store: &dyn SharedStore,
    key: &str,
    asks: &[Ask],
    now: u64,
    enforce: bool,
) -> Result<Admission, QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let group = Group::read(store, key)?;
        let current: Vec<Count> = asks.iter().map(|a| group.current(a.slot, now)).collect();
        if enforce {
            let refused = asks
                .iter()
                .zip(&current)
                .position(|(a, c)| c.used.saturating_add(a.amount) > a.ceiling);
            if let Some(index) = refused {
                return Ok(Admission::Refused {
                    index,
                    resets_at: asks[index].slot.window.end(now),
                    counts: current,
                });
            }
        }
        let mut counts = current;
        for (count, ask) in counts.iter_mut().zip(asks) {
            count.used = count.used.saturating_add(ask.amount);
        }
        if asks.iter().all(|a| a.amount == 0) {
            return Ok(Admission::Admitted(counts));
        }
        let value = encode(asks.iter().map(|a| a.slot.id).zip(counts.iter().copied()));
        if store.compare_and_set(key, &value, group.cas)? {
            return Ok(Admission::Admitted(counts));
        }
    }
    Err(QuotaError::Contended)
}

/// One slot's correction of a reservation made in the window starting at `reserved_in`, by
/// `delta` (negative: refund; positive: the response cost more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correction {
    pub slot: Slot,
    pub reserved_in: u64,
    pub delta: i64,
}

/// Applies the corrections in one write. A refund for a window that has since ended is
/// dropped (that window's count is gone); a charge goes to the current window. Slots not
/// corrected keep their counts.
pub fn settle(
    store: &dyn SharedStore,
    key: &str,
    corrections: &[Correction],
    now: u64,
) -> Result<(), QuotaError> {
    if corrections.iter().all(|c| c.delta == 0) {
        return Ok(());
    }
    for _ in 0..MAX_CAS_ATTEMPTS {
        let mut group = Group::read(store, key)?;
        let mut changed = false;
        for correction in corrections {
            let count = group.current(correction.slot, now);
            if correction.delta == 0 || count.window_start != correction.reserved_in && correction.delta < 0 {
                continue;
            }
            let next = Count {
                window_start: count.window_start,
                used: count.used.saturating_add_signed(correction.delta),
            };
            match group.slots.iter_mut().find(|(id, _)| *id == correction.slot.id) {
                Some((_, slot)) => *slot = next,
                None => group.slots.push((correction.slot.id, next)),
            }
            changed = true;
        }
        if !changed || group.write(store, key)? {
            return Ok(());
        }
    }
    Err(QuotaError::Contended)
}

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod tests;
