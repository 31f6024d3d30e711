//! The cache's entries in insertion order: slots filled one after another up to the cache's
//! size, then overwritten oldest first. Stored in fixed-size chunks, the last one no larger
//! than the size needs: growing moves nothing, and an empty cache holds no slots at all.

use super::index::MAX_SLOTS;
use super::Entry;
use crate::identity::CredentialHash;

/// Entries per chunk: small enough that the unused tail of the last chunk is little (48 KiB
/// on wasm32), large enough that the list of chunks is nothing.
pub(super) const CHUNK: usize = 1024;

#[derive(Debug)]
pub(super) struct Ring {
    chunks: Vec<Vec<Entry>>,
    len: usize,
    /// Slots at most: the cache's size, within what the index names (`MAX_SLOTS`).
    capacity: usize,
    /// The slot overwritten next once the ring is full.
    oldest: usize,
}

impl Ring {
    pub(super) fn new(max_entries: usize) -> Self {
        Ring {
            chunks: Vec::new(),
            len: 0,
            capacity: max_entries.min(MAX_SLOTS),
            oldest: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, slot: u32) -> Option<&Entry> {
        let slot = slot as usize;
        self.chunks.get(slot / CHUNK)?.get(slot % CHUNK)
    }

    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut Entry> {
        let slot = slot as usize;
        self.chunks.get_mut(slot / CHUNK)?.get_mut(slot % CHUNK)
    }

    pub(super) fn hash(&self, slot: u32) -> Option<&CredentialHash> {
        self.get(slot).map(|entry| &entry.hash)
    }

    /// Every slot in use with its entry's hash.
    pub(super) fn hashes(&self) -> impl Iterator<Item = (u32, &CredentialHash)> {
        (0u32..).zip(self.chunks.iter().flatten().map(|entry| &entry.hash))
    }

    /// Puts `entry` in a new slot, or hands it back when every slot is taken.
    pub(super) fn push(&mut self, entry: Entry) -> Result<u32, Entry> {
        if self.len >= self.capacity {
            return Err(entry);
        }
        let chunk = match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < chunk.capacity() => chunk,
            _ => {
                let size = CHUNK.min(self.capacity - self.len);
                self.chunks.push(Vec::with_capacity(size));
                match self.chunks.last_mut() {
                    Some(chunk) => chunk,
                    None => return Err(entry),
                }
            }
        };
        chunk.push(entry);
        let slot = self.len as u32;
        self.len += 1;
        Ok(slot)
    }

    /// The slot `replace_oldest` overwrites; `None` while the ring has a free slot, and
    /// always for a ring of no slots.
    pub(super) fn oldest(&self) -> Option<u32> {
        (self.len > 0 && self.len >= self.capacity).then_some(self.oldest as u32)
    }

    /// Overwrites the oldest entry with `entry`, in its slot, which it returns.
    pub(super) fn replace_oldest(&mut self, entry: Entry) -> Option<u32> {
        let slot = self.oldest()?;
        *self.get_mut(slot)? = entry;
        self.oldest = (self.oldest + 1) % self.len;
        Some(slot)
    }

    #[cfg(test)]
    pub(super) fn chunk_capacities(&self) -> Vec<usize> {
        self.chunks.iter().map(Vec::capacity).collect()
    }
}
