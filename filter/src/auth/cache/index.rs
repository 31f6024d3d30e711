//! Finds a cache entry's slot by its credential hash: open addressing, probing linearly from
//! the hash's first bytes (a SHA-256 is uniform already, so it is not hashed again). Each
//! position holds a slot number and a tag, one more byte of the hash, so that a probe reads
//! the ring only where the tag agrees; the entry's whole hash decides. Removal shifts the rest
//! of a run back instead of leaving tombstones, so a lookup ends at the first empty position
//! and the table never needs cleaning.

use super::ring::Ring;
use crate::identity::CredentialHash;

/// A position that holds no slot: slot numbers stop below it (`MAX_SLOTS`).
const EMPTY: u32 = u32::MAX;
/// A position holds a slot number in its low 24 bits, a tag in its high 8.
const SLOT_BITS: u32 = 24;
/// Slots the index can name: 16.7 million, more tokens than a Wasm VM's memory holds.
pub(super) const MAX_SLOTS: usize = (1 << SLOT_BITS) - 1;
const MIN_POSITIONS: usize = 8;

/// Slot numbers by hash; the number of positions is zero or a power of two, and at most
/// seven eighths of them are taken: the tags keep the longer runs cheap to walk, and the
/// table of 100 000 tokens is half the size it would be at three quarters.
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
        if too_full(ring.len(), self.positions.len()) {
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
            let Some(&held) = self.positions.get(at) else {
                break;
            };
            let Some(other) = ring.hash(slot_of(held)) else {
                break;
            };
            // The entry at `at` moves into the hole unless its home lies after the hole
            // (cyclically): then the hole is not on its probe path.
            let from_home = at.wrapping_sub(home(other, mask)) & mask;
            if from_home >= at.wrapping_sub(hole) & mask {
                self.positions[hole] = held;
                hole = at;
            }
        }
        self.positions[hole] = EMPTY;
    }

    /// Where `hash` is, and its slot.
    fn position(&self, hash: &CredentialHash, ring: &Ring) -> Option<(usize, u32)> {
        let mask = self.positions.len().checked_sub(1)?;
        let tag = tag(hash);
        let mut at = home(hash, mask);
        loop {
            let held = *self.positions.get(at)?;
            if held == EMPTY {
                return None;
            }
            if held >> SLOT_BITS == tag && ring.hash(slot_of(held)) == Some(hash) {
                return Some((at, slot_of(held)));
            }
            at = (at + 1) & mask;
        }
    }

    fn place(&mut self, hash: &CredentialHash, slot: u32) {
        let Some(mask) = self.positions.len().checked_sub(1) else {
            return;
        };
        let mut at = home(hash, mask);
        while self.positions.get(at).is_some_and(|&held| held != EMPTY) {
            at = (at + 1) & mask;
        }
        if let Some(position) = self.positions.get_mut(at) {
            *position = tag(hash) << SLOT_BITS | slot;
        }
    }

    /// A table big enough for every entry of `ring`, holding them all.
    fn rebuild(&mut self, ring: &Ring) {
        let mut size = (self.positions.len() * 2).max(MIN_POSITIONS);
        while too_full(ring.len(), size) {
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

/// Whether `entries` would fill more than seven eighths of `positions`.
pub(super) fn too_full(entries: usize, positions: usize) -> bool {
    entries * 8 > positions * 7
}

/// Where the probe for `hash` starts in a table of `mask + 1` positions.
fn home(hash: &CredentialHash, mask: usize) -> usize {
    let [a, b, c, d, e, f, g, h, ..] = *hash;
    u64::from_le_bytes([a, b, c, d, e, f, g, h]) as usize & mask
}

/// The hash's byte after those `home` reads, kept with its slot number.
fn tag(hash: &CredentialHash) -> u32 {
    u32::from(hash[8])
}

fn slot_of(held: u32) -> u32 {
    held & MAX_SLOTS as u32
}
