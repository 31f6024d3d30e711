//! An in-memory shared store for tests, which can lose races on purpose.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::{decode, encode, Count, QuotaError, SharedStore};

/// A store that can let another writer win the next `conflicts` writes: each lost race
/// adds `rival_amount` to every slot the losing write held, as a concurrent worker counting
/// the same limits would.
#[derive(Debug, Default)]
pub struct FakeStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    conflicts: Cell<u32>,
    rival_amount: Cell<u64>,
    /// Writes that succeed before the conflicts begin.
    clean_writes: Cell<u32>,
    /// Reads so far: what a request costs in host calls.
    reads: Cell<u32>,
    /// Compare-and-set calls so far, lost ones included.
    writes: Cell<u32>,
}

impl FakeStore {
    pub fn with_conflicts(conflicts: u32, rival_amount: u64) -> Self {
        let store = FakeStore::default();
        store.conflicts.set(conflicts);
        store.rival_amount.set(rival_amount);
        store
    }

    /// As `with_conflicts`, once `clean` writes have gone through.
    pub fn with_conflicts_after(clean: u32, conflicts: u32, rival_amount: u64) -> Self {
        let store = FakeStore::with_conflicts(conflicts, rival_amount);
        store.clean_writes.set(clean);
        store
    }

    /// How many `get` calls were made so far.
    pub fn reads(&self) -> u32 {
        self.reads.get()
    }

    /// How many `compare_and_set` calls were made so far.
    pub fn writes(&self) -> u32 {
        self.writes.get()
    }

    /// The keys that start with `prefix`.
    pub fn keys_with(&self, prefix: &str) -> usize {
        self.map.borrow().keys().filter(|k| k.starts_with(prefix)).count()
    }

    pub fn key_count(&self) -> usize {
        self.map.borrow().len()
    }

    /// The count stored for a limit's counter key (`quota::Limit::key`, as the fleet names
    /// it), whatever its window.
    pub fn used(&self, counter_key: &str) -> u64 {
        let Some((group, slot)) = crate::quota::locate(counter_key) else {
            return 0;
        };
        self.slots(&group)
            .into_iter()
            .find(|(id, _)| *id == slot.id)
            .map_or(0, |(_, c)| c.used)
    }

    /// The slots stored under a group key.
    pub fn slots(&self, key: &str) -> Vec<(u64, Count)> {
        self.map
            .borrow()
            .get(key)
            .map(|(v, _)| decode(v))
            .unwrap_or_default()
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
        self.writes.set(self.writes.get() + 1);
        if self.clean_writes.get() > 0 {
            self.clean_writes.set(self.clean_writes.get() - 1);
        } else if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            // The rival counts its amount in each slot the losing write held, in the
            // window that write meant.
            let stored = self.slots(key);
            let rival = decode(value).into_iter().map(|(id, meant)| {
                let before = stored
                    .iter()
                    .find(|(i, c)| *i == id && c.window_start == meant.window_start)
                    .map_or(0, |(_, c)| c.used);
                let used = before + self.rival_amount.get();
                (id, Count { used, ..meant })
            });
            let rival: Vec<_> = rival.collect();
            if rival.is_empty() {
                // Another layout (the guard's or the sync channel's): the rival's write
                // changes only the token.
                let unchanged = self.map.borrow().get(key).map(|(v, _)| v.clone());
                self.write(key, unchanged.unwrap_or_default());
            } else {
                self.write(key, encode(rival.into_iter()));
            }
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
