//! The per-worker cache of verified credentials: what makes a repeat request cost a hash and
//! a lookup instead of a signature check. Bounded, keyed by the credential's SHA-256 (the
//! credential itself is never kept), each entry valid until its token expires. Revocation
//! is not its business: the caller checks that on every request, cached or not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::identity::{CredentialHash, Identity};

#[derive(Debug)]
pub struct VerifiedTokenCache {
    max_entries: usize,
    entries: HashMap<CredentialHash, Entry>,
    /// Insertion order, for first-in-first-out eviction: O(1), and good enough because an
    /// evicted token costs one verification, not a failure.
    order: VecDeque<CredentialHash>,
    /// Scope and model lists in use, shared by the identities that carry them. Bounded:
    /// past `MAX_INTERNED` lists it starts afresh (a list then merely stops being shared).
    lists: HashSet<Arc<[String]>>,
}

/// Distinct scope and model lists shared at most.
const MAX_INTERNED: usize = 256;

#[derive(Debug)]
struct Entry {
    identity: Arc<Identity>,
    /// Unix seconds; the entry is used while `now <= valid_until`.
    valid_until: u64,
}

impl VerifiedTokenCache {
    pub fn new(max_entries: usize) -> Self {
        VerifiedTokenCache {
            max_entries,
            entries: HashMap::with_capacity(max_entries.min(1024)),
            order: VecDeque::with_capacity(max_entries.min(1024)),
            lists: HashSet::new(),
        }
    }

    /// The shared copy of `list`.
    pub fn intern(&mut self, list: Vec<String>) -> Arc<[String]> {
        if let Some(shared) = self.lists.get(list.as_slice()) {
            return Arc::clone(shared);
        }
        if self.lists.len() >= MAX_INTERNED {
            self.lists.clear();
        }
        let shared: Arc<[String]> = list.into();
        self.lists.insert(Arc::clone(&shared));
        shared
    }

    pub fn get(&self, hash: &CredentialHash, now: u64) -> Option<Arc<Identity>> {
        let entry = self.entries.get(hash)?;
        (now <= entry.valid_until).then(|| Arc::clone(&entry.identity))
    }

    pub fn insert(&mut self, hash: CredentialHash, identity: Arc<Identity>, valid_until: u64) {
        if self.max_entries == 0 {
            return;
        }
        let entry = Entry {
            identity,
            valid_until,
        };
        if let Some(existing) = self.entries.get_mut(&hash) {
            *existing = entry;
            return;
        }
        while self.entries.len() >= self.max_entries {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.entries.insert(hash, entry);
        self.order.push_back(hash);
    }

    #[cfg(any(test, feature = "test-support"))]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "test-support"))]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
