//! The per-worker cache of verified credentials: what makes a repeat request cost a hash and
//! a lookup instead of a signature check. Bounded, keyed by the credential's SHA-256 (the
//! credential itself is never kept), each entry valid until its token expires. Revocation
//! is not its business: the caller checks that on every request, cached or not.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::token::Identity;

pub type CredentialHash = [u8; 32];

#[derive(Debug)]
pub struct VerifiedTokenCache {
    max_entries: usize,
    entries: HashMap<CredentialHash, Entry>,
    /// Insertion order, for first-in-first-out eviction: O(1), and good enough because an
    /// evicted token costs one verification, not a failure.
    order: VecDeque<CredentialHash>,
}

#[derive(Debug)]
struct Entry {
    identity: Rc<Identity>,
    /// Unix seconds; the entry is used while `now <= valid_until`.
    valid_until: u64,
}

impl VerifiedTokenCache {
    pub fn new(max_entries: usize) -> Self {
        VerifiedTokenCache {
            max_entries,
            entries: HashMap::with_capacity(max_entries.min(1024)),
            order: VecDeque::with_capacity(max_entries.min(1024)),
        }
    }

    pub fn get(&self, hash: &CredentialHash, now: u64) -> Option<Rc<Identity>> {
        let entry = self.entries.get(hash)?;
        (now <= entry.valid_until).then(|| Rc::clone(&entry.identity))
    }

    pub fn insert(&mut self, hash: CredentialHash, identity: Rc<Identity>, valid_until: u64) {
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

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tests::identity;

    fn hash(n: u8) -> CredentialHash {
        [n; 32]
    }

    #[test]
    fn entry_is_served_until_it_expires() {
        let mut cache = VerifiedTokenCache::new(4);
        cache.insert(hash(1), Rc::new(identity("alice")), 100);
        assert_eq!(cache.get(&hash(1), 100).unwrap().subject, "alice");
        assert!(cache.get(&hash(1), 101).is_none());
        assert!(cache.get(&hash(2), 50).is_none());
    }

    #[test]
    fn oldest_entry_is_evicted_when_full() {
        let mut cache = VerifiedTokenCache::new(2);
        cache.insert(hash(1), Rc::new(identity("a")), 100);
        cache.insert(hash(2), Rc::new(identity("b")), 100);
        cache.insert(hash(3), Rc::new(identity("c")), 100);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&hash(1), 0).is_none());
        assert!(cache.get(&hash(2), 0).is_some());
        assert!(cache.get(&hash(3), 0).is_some());
    }

    #[test]
    fn reinserting_does_not_grow_the_cache() {
        let mut cache = VerifiedTokenCache::new(2);
        for _ in 0..10 {
            cache.insert(hash(1), Rc::new(identity("a")), 100);
        }
        cache.insert(hash(2), Rc::new(identity("b")), 100);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.order.len(), 2);
    }

    #[test]
    fn zero_size_disables_caching() {
        let mut cache = VerifiedTokenCache::new(0);
        cache.insert(hash(1), Rc::new(identity("a")), 100);
        assert!(cache.is_empty());
    }
}
