//! Opening the SQLite store: WAL mode, the pragmas every connection needs, the migrations
//! (a database newer than this binary is refused), the pool, and the backup.

use rusqlite::Connection;

use super::SqliteStore;
use crate::store::pool::{Ending, Pool, Pooled};
use crate::store::{Isolation, StoreError, Transaction};

/// Migrations, in order; the database records how many it has run (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/0001_init.sql"),
    include_str!("../../../migrations/0002_sources_and_key_revocation.sql"),
    include_str!("../../../migrations/0003_revision.sql"),
    include_str!("../../../migrations/0004_proxies_and_leases.sql"),
    include_str!("../../../migrations/0005_usage.sql"),
    include_str!("../../../migrations/0006_fleet.sql"),
    include_str!("../../../migrations/0007_alerts.sql"),
    include_str!("../../../migrations/0008_dashboard.sql"),
    include_str!("../../../migrations/0009_ui_sessions_without_credential.sql"),
];

/// More than the blocking threads that use the store at once gain nothing: SQLite has one
/// writer, and readers beyond the cores wait anyway.
const POOL_SIZE: usize = 4;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and migrates it.
    pub fn open(path: &std::path::Path) -> Result<SqliteStore, StoreError> {
        let conn = SqliteStore::connect(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        SqliteStore::migrated(conn, Some(path.to_path_buf()))
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        SqliteStore::configure(&conn)?;
        SqliteStore::migrated(conn, None)
    }

    fn connect(path: &std::path::Path) -> Result<Connection, StoreError> {
        let conn = Connection::open(path)?;
        SqliteStore::configure(&conn)?;
        Ok(conn)
    }

    fn configure(conn: &Connection) -> Result<(), StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(())
    }

    fn migrated(
        conn: Connection,
        path: Option<std::path::PathBuf>,
    ) -> Result<SqliteStore, StoreError> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        let mut connections = vec![conn];
        if let Some(path) = path {
            for _ in 1..POOL_SIZE {
                connections.push(SqliteStore::connect(&path)?);
            }
        }
        Ok(SqliteStore {
            pool: Pool::new(connections),
            writer: WriterGate::default(),
        })
    }

    /// This thread's transaction connection, an idle one, or else the first to come back.
    pub(super) fn conn(&self) -> Result<Pooled<'_, Connection>, StoreError> {
        self.pool.take()
    }

    /// SQLite has one writer at a time, so both isolations are `BEGIN IMMEDIATE`: the write
    /// lock is taken at once (a deferred transaction that reads first could not upgrade
    /// while another process writes), waiting up to the busy timeout.
    pub(super) fn begin_transaction(
        &self,
        _isolation: Isolation,
    ) -> Result<Transaction<'_>, StoreError> {
        // Writers of this process queue here, before they take a connection, rather than in
        // SQLite's busy handler, which sleeps in growing steps (hundreds of ms under load);
        // other processes still meet the busy timeout.
        let nested = self.pool.is_pinned();
        if !nested {
            self.writer.enter();
        }
        let (conn, outermost) = match self.pool.pin() {
            Ok(pinned) => pinned,
            Err(error) => {
                if !nested {
                    self.writer.leave();
                }
                return Err(error);
            }
        };
        if outermost {
            if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
                drop(conn);
                self.writer.leave();
                self.pool.unpin();
                return Err(error.into());
            }
        }
        Ok(Transaction::new(self))
    }

    pub(super) fn end_transaction(&self, commit: bool) -> Result<(), StoreError> {
        let (conn, ending) = self.pool.ending(commit)?;
        let result = match ending {
            Ending::Inner => return Ok(()),
            Ending::Commit => conn.execute_batch("COMMIT"),
            Ending::Rollback => conn.execute_batch("ROLLBACK"),
        };
        // A failed COMMIT leaves the transaction open: roll it back before the connection
        // serves anyone else.
        if result.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        drop(conn);
        self.writer.leave();
        self.pool.unpin();
        result?;
        if ending == Ending::Rollback && commit {
            return Err(StoreError::Range(
                "an inner transaction failed: everything was rolled back",
            ));
        }
        Ok(())
    }

    /// A consistent copy of the whole database at `path` (SQLite `VACUUM INTO`), taken while
    /// the control plane runs.
    pub(super) fn copy_to(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let target = path
            .to_str()
            .ok_or(StoreError::Range("a backup path that is not UTF-8"))?;
        self.conn()?.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    pub fn journal_mode(&self) -> Result<String, StoreError> {
        Ok(self
            .conn()?
            .pragma_query_value(None, "journal_mode", |row| row.get(0))?)
    }
}

/// One writing transaction of this process at a time.
#[derive(Default)]
pub(super) struct WriterGate {
    busy: std::sync::Mutex<bool>,
    free: std::sync::Condvar,
}

impl WriterGate {
    fn enter(&self) {
        let mut busy = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *busy {
            busy = self
                .free
                .wait(busy)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy = true;
    }

    fn leave(&self) {
        *self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        self.free.notify_one();
    }
}
