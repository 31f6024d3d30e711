//! An in-memory shared store for tests, which can lose races on purpose.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::{Count, QuotaError, SharedStore};
use crate::window::Window;

/// A store that can let another writer win the next `conflicts` writes: each lost race
/// adds `rival_amount` to the key, as a concurrent worker would.
#[derive(Debug, Default)]
pub struct FakeStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    conflicts: Cell<u32>,
    rival_amount: Cell<u64>,
    rival_now: Cell<u64>,
    /// Writes that succeed before the conflicts begin.
    clean_writes: Cell<u32>,
    /// Reads so far: what a request costs in host calls.
    reads: Cell<u32>,
}

impl FakeStore {
    /// Rivals write into the minute window of `now`.
    pub fn with_conflicts(conflicts: u32, rival_amount: u64, now: u64) -> Self {
        let store = FakeStore::default();
        store.conflicts.set(conflicts);
        store.rival_amount.set(rival_amount);
        store.rival_now.set(now);
        store
    }

    /// As `with_conflicts`, once `clean` writes have gone through.
    pub fn with_conflicts_after(clean: u32, conflicts: u32, rival_amount: u64, now: u64) -> Self {
        let store = FakeStore::with_conflicts(conflicts, rival_amount, now);
        store.clean_writes.set(clean);
        store
    }

    /// How many `get` calls were made so far.
    pub fn reads(&self) -> u32 {
        self.reads.get()
    }

    /// The keys that start with `prefix`.
    pub fn keys_with(&self, prefix: &str) -> usize {
        self.map.borrow().keys().filter(|k| k.starts_with(prefix)).count()
    }

    pub fn key_count(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn used(&self, key: &str) -> u64 {
        self.map
            .borrow()
            .get(key)
            .and_then(|(v, _)| Count::decode(v))
            .map_or(0, |c| c.used)
    }

    pub fn write(&self, key: &str, value: Vec<u8>) {
        self.next_cas.set(self.next_cas.get() + 1);
        self.map
            .borrow_mut()
            .insert(key.to_string(), (value, self.next_cas.get()));
    }
}

impl SharedStore for FakeStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, QuotaError> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.map.borrow().get(key).cloned())
    }

    fn compare_and_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<bool, QuotaError> {
        if self.clean_writes.get() > 0 {
            self.clean_writes.set(self.clean_writes.get() - 1);
        } else if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            let start = Window::Minute.start(self.rival_now.get());
            let used = self.used(key) + self.rival_amount.get();
            self.write(
                key,
                Count {
                    window_start: start,
                    used,
                }
                .encode()
                .to_vec(),
            );
            return Ok(false);
        }
        let current = self.map.borrow().get(key).map(|(_, c)| *c);
        if current != cas {
            return Ok(false);
        }
        self.write(key, value.to_vec());
        Ok(true)
    }
}
