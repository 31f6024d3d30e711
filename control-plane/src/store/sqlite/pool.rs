//! The SQLite store's connections, shared by threads: a caller takes whichever connection
//! comes free first, so a long read (a render of the whole database) holds up only its own
//! connection, never the callers queued behind it.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;

use crate::store::StoreError;

pub(super) struct Pool {
    slots: Vec<Mutex<Connection>>,
    /// The slots nobody holds.
    free: Mutex<Vec<usize>>,
    returned: Condvar,
}

/// A connection taken from the pool; it goes back when dropped.
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    slot: usize,
    conn: MutexGuard<'a, Connection>,
}

impl Pool {
    pub(super) fn new(connections: Vec<Connection>) -> Pool {
        Pool {
            free: Mutex::new((0..connections.len()).collect()),
            slots: connections.into_iter().map(Mutex::new).collect(),
            returned: Condvar::new(),
        }
    }

    /// An idle connection, or else the first one to come back.
    pub(super) fn take(&self) -> Result<Pooled<'_>, StoreError> {
        if self.slots.is_empty() {
            return Err(StoreError::Range("a store without connections"));
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = loop {
            if let Some(slot) = free.pop() {
                break slot;
            }
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(free);
        let conn = self
            .slots
            .get(slot)
            .ok_or(StoreError::Range("a connection slot out of range"))?
            // Free slots are nobody's: this lock waits at most for a guard being dropped.
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(Pooled {
            pool: self,
            slot,
            conn,
        })
    }
}

impl Deref for Pooled<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.slot);
        self.pool.returned.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_gets_the_first_connection_back_whichever_it_is() {
        let pool = Pool::new(vec![
            Connection::open_in_memory().unwrap(),
            Connection::open_in_memory().unwrap(),
        ]);
        let long = pool.take().unwrap();
        let short = pool.take().unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                let conn = pool.take().unwrap();
                conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                    .unwrap()
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            // The long reader keeps its connection; the one that comes back serves the waiter.
            drop(short);
            assert_eq!(waiter.join().unwrap(), 1);
        });
        drop(long);
        assert_eq!(pool.free.lock().unwrap().len(), 2);
    }
}
