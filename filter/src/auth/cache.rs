//! The per-worker cache of verified credentials: what makes a repeat request cost a hash and
//! a lookup instead of a signature check. Bounded, keyed by the credential's SHA-256 (the
//! credential itself is never kept), each entry valid until its token expires. Revocation
//! is not its business: the caller checks that on every request, cached or not.
//!
//! Built for memory, since a worker may hold 100 000 of them: the entries sit in a ring, in
//! insertion order (the oldest is the next one evicted), in fixed-size chunks so that growing
//! never copies nor leaves a doubled allocation half empty; an open-addressing table of slot
//! numbers (`SlotIndex`) finds them by hash. The parts many identities repeat (key ids,
//! grants) are interned; what is a token's own (subject, `jti`) is one allocation in its
//! identity.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use crate::identity::{CredentialHash, Grants, Identity};

mod index;
mod ring;

use index::SlotIndex;
use ring::Ring;

#[derive(Debug)]
pub struct VerifiedTokenCache {
    entries: Ring,
    index: SlotIndex,
    /// Grants in use, shared by the identities that carry them.
    grants: Interner<Grants>,
    /// Key ids in use, likewise.
    key_ids: Interner<str>,
}

#[derive(Debug)]
struct Entry {
    /// The whole hash, compared on every lookup: the index narrows the search by its first
    /// bytes, but two credentials must never share an identity because those bytes agree.
    hash: CredentialHash,
    identity: Arc<Identity>,
    /// Unix seconds; the entry is used while `now <= valid_until`. 32 bits (until 2106; a
    /// later time is held as 2106) make the slot 8 bytes smaller on wasm32.
    valid_until: u32,
}

// A slot on wasm32: the hash, the identity's pointer, `valid_until`.
#[cfg(target_arch = "wasm32")]
const _: () = assert!(std::mem::size_of::<Entry>() == 40);

impl VerifiedTokenCache {
    /// A cache of at most `max_entries` credentials; it allocates as it fills, not up front.
    pub fn new(max_entries: usize) -> Self {
        VerifiedTokenCache {
            entries: Ring::new(max_entries),
            index: SlotIndex::default(),
            grants: Interner::default(),
            key_ids: Interner::default(),
        }
    }

    /// The shared copy of `grants`.
    pub fn intern_grants(&mut self, grants: Grants) -> Arc<Grants> {
        self.grants.intern(grants)
    }

    /// The shared copy of a key id.
    pub fn intern_key_id(&mut self, kid: &str) -> Arc<str> {
        self.key_ids.intern(kid)
    }

    pub fn get(&self, hash: &CredentialHash, now: u64) -> Option<Arc<Identity>> {
        let entry = self.entries.get(self.index.find(hash, &self.entries)?)?;
        (now <= u64::from(entry.valid_until)).then(|| Arc::clone(&entry.identity))
    }

    /// Caches `identity` for `hash` until `valid_until`, in place of what `hash` had; when
    /// the cache is full the oldest entry makes room (first in, first out: O(1), and good
    /// enough because an evicted token costs one verification, not a failure).
    pub fn insert(&mut self, hash: CredentialHash, identity: Arc<Identity>, valid_until: u64) {
        let entry = Entry {
            hash,
            identity,
            valid_until: u32::try_from(valid_until).unwrap_or(u32::MAX),
        };
        if let Some(existing) = self
            .index
            .find(&hash, &self.entries)
            .and_then(|slot| self.entries.get_mut(slot))
        {
            *existing = entry;
            return;
        }
        let slot = match self.entries.push(entry) {
            Ok(slot) => slot,
            Err(entry) => {
                // Full (or of no entries at all): the oldest goes, from the index first,
                // while its slot still says which hash it was.
                let Some(oldest) = self.entries.oldest() else {
                    return;
                };
                if let Some(evicted) = self.entries.hash(oldest).copied() {
                    self.index.remove(&evicted, &self.entries);
                }
                let Some(slot) = self.entries.replace_oldest(entry) else {
                    return;
                };
                slot
            }
        };
        self.index.insert(&hash, slot, &self.entries);
    }

    #[cfg(any(test, feature = "test-support"))]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(any(test, feature = "test-support"))]
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }
}

/// Distinct values an interning table shares at most.
const MAX_INTERNED: usize = 256;

/// Values in use, each kept once and shared by whoever carries an equal one. Bounded: past
/// `MAX_INTERNED` values it starts afresh (a value then merely stops being shared).
#[derive(Debug)]
struct Interner<T: ?Sized> {
    shared: HashSet<Arc<T>>,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            shared: HashSet::new(),
        }
    }
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    fn intern<V: Borrow<T> + Into<Arc<T>>>(&mut self, value: V) -> Arc<T> {
        if let Some(shared) = self.shared.get(value.borrow()) {
            return Arc::clone(shared);
        }
        if self.shared.len() >= MAX_INTERNED {
            self.shared.clear();
        }
        let shared: Arc<T> = value.into();
        self.shared.insert(Arc::clone(&shared));
        shared
    }
}

#[cfg(test)]
mod tests;
