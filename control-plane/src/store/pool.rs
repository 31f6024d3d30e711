//! A store's connections, shared by threads (SQLite's and Postgres's alike): a caller takes
//! whichever connection comes free first, so a long read (a render of the whole database)
//! holds up only its own connection, never the callers queued behind it. A write
//! transaction pins one connection to the thread that began it: every store call that
//! thread makes until the transaction ends runs on it, so the plane's operations compose
//! store calls into one transaction without passing a handle around.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use crate::store::StoreError;

pub(crate) struct Pool<C> {
    slots: Vec<Mutex<C>>,
    /// The slots nobody holds.
    free: Mutex<Vec<usize>>,
    returned: Condvar,
    /// Threads inside a write transaction, with the slot each holds.
    pinned: Mutex<HashMap<ThreadId, Pin>>,
}

#[derive(Debug, Clone, Copy)]
struct Pin {
    slot: usize,
    /// Transactions begun inside the outermost one: only the outermost commits.
    depth: u32,
    /// An inner transaction rolled back: the outermost must too.
    failed: bool,
}

/// A connection taken from the pool; it goes back when dropped (a pinned one stays with its
/// thread until the transaction ends).
pub(crate) struct Pooled<'a, C> {
    pool: &'a Pool<C>,
    slot: usize,
    pinned: bool,
    conn: MutexGuard<'a, C>,
}

/// How a transaction ended, for the store that runs COMMIT or ROLLBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// An inner transaction ended: nothing to run yet.
    Inner,
    Commit,
    Rollback,
}

impl<C> Pool<C> {
    pub(crate) fn new(connections: Vec<C>) -> Pool<C> {
        Pool {
            free: Mutex::new((0..connections.len()).collect()),
            slots: connections.into_iter().map(Mutex::new).collect(),
            returned: Condvar::new(),
            pinned: Mutex::new(HashMap::new()),
        }
    }

    fn pin_of_this_thread(&self) -> Option<Pin> {
        self.pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&std::thread::current().id())
            .copied()
    }

    /// Every connection, taken out (the pool is being dropped).
    pub(crate) fn drain(&mut self) -> Vec<C> {
        std::mem::take(&mut self.slots)
            .into_iter()
            .map(|slot| slot.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Whether this thread is inside a transaction.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pin_of_this_thread().is_some()
    }

    /// This thread's transaction connection if it is in one; else an idle connection, or
    /// the first one to come back.
    pub(crate) fn take(&self) -> Result<Pooled<'_, C>, StoreError> {
        if let Some(pin) = self.pin_of_this_thread() {
            return self.lock(pin.slot, true);
        }
        let slot = self.take_free()?;
        self.lock(slot, false)
    }

    fn take_free(&self) -> Result<usize, StoreError> {
        if self.slots.is_empty() {
            return Err(StoreError::Range("a store without connections"));
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(slot) = free.pop() {
                return Ok(slot);
            }
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn lock(&self, slot: usize, pinned: bool) -> Result<Pooled<'_, C>, StoreError> {
        let conn = self
            .slots
            .get(slot)
            .ok_or(StoreError::Range("a connection slot out of range"))?
            // Free slots are nobody's, and a pinned one is its thread's alone: this lock
            // waits at most for a guard being dropped.
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(Pooled {
            pool: self,
            slot,
            pinned,
            conn,
        })
    }

    /// Pins a connection to this thread for a transaction. Returns it and whether this is
    /// the outermost transaction (the one that must run BEGIN).
    pub(crate) fn pin(&self) -> Result<(Pooled<'_, C>, bool), StoreError> {
        let thread = std::thread::current().id();
        if let Some(pin) = self
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&thread)
        {
            pin.depth += 1;
            let slot = pin.slot;
            return Ok((self.lock(slot, true)?, false));
        }
        let slot = self.take_free()?;
        self.pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                thread,
                Pin {
                    slot,
                    depth: 1,
                    failed: false,
                },
            );
        Ok((self.lock(slot, true)?, true))
    }

    /// Ends this thread's innermost transaction: what the store must run on the returned
    /// connection (an inner commit after an inner rollback rolls everything back).
    pub(crate) fn ending(&self, commit: bool) -> Result<(Pooled<'_, C>, Ending), StoreError> {
        let thread = std::thread::current().id();
        let mut pinned = self.pinned.lock().unwrap_or_else(PoisonError::into_inner);
        let pin = pinned.get_mut(&thread).ok_or(StoreError::Range(
            "a transaction ended that was never begun",
        ))?;
        if !commit {
            pin.failed = true;
        }
        pin.depth = pin.depth.saturating_sub(1);
        let (slot, ending) = match (pin.depth, pin.failed) {
            (0, false) => (pin.slot, Ending::Commit),
            (0, true) => (pin.slot, Ending::Rollback),
            (_, _) => (pin.slot, Ending::Inner),
        };
        drop(pinned);
        Ok((self.lock(slot, true)?, ending))
    }

    /// After COMMIT or ROLLBACK ran: the connection goes back to the pool.
    pub(crate) fn unpin(&self) {
        let thread = std::thread::current().id();
        let pin = self
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&thread);
        if let Some(pin) = pin {
            self.give_back(pin.slot);
        }
    }

    fn give_back(&self, slot: usize) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slot);
        self.returned.notify_one();
    }
}

impl<C> Deref for Pooled<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for Pooled<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

impl<C> Drop for Pooled<'_, C> {
    fn drop(&mut self) {
        if !self.pinned {
            self.pool.give_back(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_gets_the_first_connection_back_whichever_it_is() {
        let pool = Pool::new(vec![1_u8, 2]);
        let long = pool.take().unwrap();
        let short = pool.take().unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| *pool.take().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(20));
            // The long reader keeps its connection; the one that comes back serves the waiter.
            let expected = *short;
            drop(short);
            assert_eq!(waiter.join().unwrap(), expected);
        });
        drop(long);
        assert_eq!(pool.free.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_transaction_keeps_its_connection_for_its_thread_until_it_ends() {
        let pool = Pool::new(vec![1_u8, 2]);
        let (conn, outermost) = pool.pin().unwrap();
        let slot = conn.slot;
        drop(conn);
        assert!(outermost);
        // Every call of this thread gets the same connection, and it is nobody else's.
        assert_eq!(pool.take().unwrap().slot, slot);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| pool.take().unwrap().slot);
            assert_ne!(other.join().unwrap(), slot);
        });
        // Nested: only the outermost ends it; an inner rollback rolls it all back.
        let (_, outer) = pool.pin().unwrap();
        assert!(!outer);
        assert_eq!(pool.ending(false).unwrap().1, Ending::Inner);
        assert_eq!(pool.ending(true).unwrap().1, Ending::Rollback);
        pool.unpin();
        assert_eq!(pool.free.lock().unwrap().len(), 2);
        let (_, outermost) = pool.pin().unwrap();
        assert!(outermost);
        assert_eq!(pool.ending(true).unwrap().1, Ending::Commit);
        pool.unpin();
    }
}
