//! Finds a cache entry's slot by its credential hash: open addressing over `u32` slot
//! numbers, probing linearly from the hash's first bytes (a SHA-256 is uniform already, so it
//! is not hashed again). A position says only where to look: the entry's whole hash decides.
//! Removal shifts the rest of a run back instead of leaving tombstones, so a lookup ends at
//! the first empty position and the table never needs cleaning.

use super::ring::Ring;
use crate::identity::CredentialHash;

/// A position that holds no slot.
const EMPTY: u32 = u32::MAX;
const MIN_POSITIONS: usize = 8;

/// Slot numbers by hash; the number of positions is zero or a power of two, and at most
/// three quarters of them are taken, which keeps the probe runs short.
#[derive(Debug, Default)]
pub(super) struct SlotIndex {
    positions: Vec<u32>,
}

impl SlotIndex {
    /// The slot holding `hash`, if any.
    pub(super) fn find(&self, hash: &CredentialHash, ring: &Ring) -> Option<u32> {
        self.position(hash, ring).map(|(_, slot)| slot)
    }

    /// Records that `slot` holds `hash`, which the index does not have yet. `ring` already
    /// holds the entry: if the table must grow for it, it is rebuilt from the ring.
    pub(super) fn insert(&mut self, hash: &CredentialHash, slot: u32, ring: &Ring) {
        if ring.len() * 4 > self.positions.len() * 3 {
            self.rebuild(ring);
        } else {
            self.place(hash, slot);
        }
    }

    /// Forgets `hash`, which `ring` still holds in its slot.
    pub(super) fn remove(&mut self, hash: &CredentialHash, ring: &Ring) {
        let Some((mut hole, _)) = self.position(hash, ring) else {
            return;
        };
        let mask = self.positions.len() - 1;
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let Some(&slot) = self.positions.get(at) else {
                break;
            };
            let Some(other) = ring.hash(slot) else {
                break;
            };
            // The entry at `at` moves into the hole unless its home lies after the hole
            // (cyclically): then the hole is not on its probe path.
            let from_home = at.wrapping_sub(home(other, mask)) & mask;
            if from_home >= at.wrapping_sub(hole) & mask {
                self.positions[hole] = slot;
                hole = at;
            }
        }
        self.positions[hole] = EMPTY;
    }

    /// Where `hash` is, and its slot.
    fn position(&self, hash: &CredentialHash, ring: &Ring) -> Option<(usize, u32)> {
        let mask = self.positions.len().checked_sub(1)?;
        let mut at = home(hash, mask);
        loop {
            let slot = *self.positions.get(at)?;
            if slot == EMPTY {
                return None;
            }
            if ring.hash(slot) == Some(hash) {
                return Some((at, slot));
            }
            at = (at + 1) & mask;
        }
    }

    fn place(&mut self, hash: &CredentialHash, slot: u32) {
        let Some(mask) = self.positions.len().checked_sub(1) else {
            return;
        };
        let mut at = home(hash, mask);
        while self.positions.get(at).is_some_and(|&s| s != EMPTY) {
            at = (at + 1) & mask;
        }
        if let Some(position) = self.positions.get_mut(at) {
            *position = slot;
        }
    }

    /// A table big enough for every entry of `ring`, holding them all.
    fn rebuild(&mut self, ring: &Ring) {
        let mut size = (self.positions.len() * 2).max(MIN_POSITIONS);
        while ring.len() * 4 > size * 3 {
            size *= 2;
        }
        self.positions = vec![EMPTY; size];
        for (slot, hash) in ring.hashes() {
            self.place(hash, slot);
        }
    }

    #[cfg(test)]
    pub(super) fn positions(&self) -> usize {
        self.positions.len()
    }
}

/// Where the probe for `hash` starts in a table of `mask + 1` positions.
fn home(hash: &CredentialHash, mask: usize) -> usize {
    let [a, b, c, d, e, f, g, h, ..] = *hash;
    u64::from_le_bytes([a, b, c, d, e, f, g, h]) as usize & mask
}
