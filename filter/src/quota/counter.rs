//! Quota counters in a shared store (proxy-wasm shared data: per Envoy process, shared by
//! all workers, keys never freed). One key per (subject, limit) holds the window start and
//! the count, rolled over in place when a new window begins. Every change is a
//! compare-and-set loop with a bounded number of attempts; running out is an error the
//! caller must fail closed on. `quota` decides what to count; this module only counts.

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

/// What a counter key holds: 16 bytes, the window start and the amount used in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub window_start: u64,
    pub used: u64,
}

impl Count {
    fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.window_start.to_le_bytes());
        out[8..].copy_from_slice(&self.used.to_le_bytes());
        out
    }

    /// A value of another shape (an older layout, a foreign writer) counts as empty.
    fn decode(bytes: &[u8]) -> Option<Count> {
        let window_start = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let used = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Count { window_start, used })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted; `used` includes this request's amount.
    Admitted { used: u64, window_start: u64 },
    /// Over the limit; nothing was counted.
    Refused { used: u64, resets_at: u64 },
}

/// The count in force at `now`, with the token to update it.
fn current(
    store: &dyn SharedStore,
    key: &str,
    window: Window,
    now: u64,
) -> Result<(Count, Option<u32>), QuotaError> {
    let start = window.start(now);
    Ok(match store.get(key)? {
        Some((bytes, cas)) => match Count::decode(&bytes) {
            // A worker whose clock is a little behind counts into the newer window it finds
            // rather than rolling it back.
            Some(count) if count.window_start >= start => (count, Some(cas)),
            // A past window (or an unreadable value) rolls over in place.
            _ => (
                Count {
                    window_start: start,
                    used: 0,
                },
                Some(cas),
            ),
        },
        None => (
            Count {
                window_start: start,
                used: 0,
            },
            None,
        ),
    })
}

/// The amount used in the window in force at `now`.
pub fn peek(
    store: &dyn SharedStore,
    key: &str,
    window: Window,
    now: u64,
) -> Result<u64, QuotaError> {
    Ok(current(store, key, window, now)?.0.used)
}

/// Counts `amount` against `limit` if it fits, atomically: exactly `limit` is admitted however
/// many workers race. With `enforce` false (shadow mode) it counts even past the limit.
pub fn admit(
    store: &dyn SharedStore,
    key: &str,
    window: Window,
    now: u64,
    amount: u64,
    limit: u64,
    enforce: bool,
) -> Result<Admission, QuotaError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (count, cas) = current(store, key, window, now)?;
        let used = count.used.saturating_add(amount);
        if used > limit && enforce {
            return Ok(Admission::Refused {
                used: count.used,
                resets_at: window.end(now),
            });
        }
        let next = Count {
            window_start: count.window_start,
            used,
        };
        if store.compare_and_set(key, &next.encode(), cas)? {
            return Ok(Admission::Admitted {
                used,
                window_start: count.window_start,
            });
        }
    }
    Err(QuotaError::Contended)
}

/// Corrects a reservation made in the window starting at `reserved_in` by `delta` (negative:
/// refund; positive: the response cost more). A refund for a window that has since ended is
/// dropped (that window's count is gone); a charge goes to the current window.
pub fn settle(
    store: &dyn SharedStore,
    key: &str,
    window: Window,
    now: u64,
    reserved_in: u64,
    delta: i64,
) -> Result<(), QuotaError> {
    if delta == 0 {
        return Ok(());
    }
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (count, cas) = current(store, key, window, now)?;
        if count.window_start != reserved_in && delta < 0 {
            return Ok(());
        }
        let next = Count {
            window_start: count.window_start,
            used: count.used.saturating_add_signed(delta),
        };
        if store.compare_and_set(key, &next.encode(), cas)? {
            return Ok(());
        }
    }
    Err(QuotaError::Contended)
}

#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod tests;
