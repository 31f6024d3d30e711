//! Connecting to Postgres (TLS verified, unless the URL says `sslmode=disable`), migrating
//! under an advisory lock (replicas starting at once migrate once), the pool (a connection
//! found closed is replaced), transactions, and the LISTEN connection that tells the xDS loop
//! of every commit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::types::ToSql;
use ::postgres::{Client, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PostgresStore;
use crate::store::pool::{Ending, Pool, Pooled};
use crate::store::{Isolation, StoreError, Transaction, Wake};

/// Migrations, in order; `schema_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_usage.sql"),
    include_str!("../../../migrations/postgres/0003_fleet.sql"),
    include_str!("../../../migrations/postgres/0004_alerts.sql"),
    include_str!("../../../migrations/postgres/0005_dashboard.sql"),
    include_str!("../../../migrations/postgres/0006_ui_sessions_without_credential.sql"),
];

/// Advisory lock keys ("tokenward" in spirit): one for migrations, one that serializes every
/// serialized write transaction of every replica.
const MIGRATION_LOCK: i64 = 0x746f_6b65_6e01;
const WRITE_LOCK: i64 = 0x746f_6b65_6e02;

/// The channel the revision trigger notifies.
pub(super) const CHANNEL: &str = "tokenward_revision";

/// Connections each replica keeps: the admin API's handlers and the xDS loop share them.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// One connection, with the statements it has prepared (each query's SQL is a constant, so
/// the map stays small).
pub(super) struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// Where to reconnect to.
    target: Target,
    /// Inside BEGIN … COMMIT: a lost connection lost the transaction, nothing is retried.
    in_transaction: bool,
}

/// Whether the server had closed the connection before the statement reached it (the
/// synchronous client learns of it only when it next sends): the statement never ran, so it
/// may be sent again on a new connection.
fn lost_before_sent(error: &::postgres::Error) -> bool {
    error.is_closed()
        || error
            .as_db_error()
            .is_some_and(|db| db.code().code().starts_with("57P"))
}

impl PgConn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, ::postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs `call` with the statement for `sql`; once more on a new connection when the old
    /// one turns out to have been closed by the server (a restart, a failover, an idle
    /// timeout) outside a transaction.
    fn run<T>(
        &mut self,
        sql: &'static str,
        call: impl Fn(&mut Client, &Statement) -> Result<T, ::postgres::Error>,
    ) -> Result<T, StoreError> {
        let first = self
            .statement(sql)
            .and_then(|statement| call(&mut self.client, &statement));
        match first {
            Err(error) if lost_before_sent(&error) && !self.in_transaction => {
                let fresh = self.target.connect()?;
                *self = fresh;
                let statement = self.statement(sql)?;
                Ok(call(&mut self.client, &statement)?)
            }
            other => Ok(other?),
        }
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.run(sql, |client, statement| client.query(statement, params))
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        self.run(sql, |client, statement| client.query_opt(statement, params))
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.run(sql, |client, statement| client.execute(statement, params))
    }

    /// SQL built from this module's constants (table and column names), never input.
    pub(super) fn execute_dynamic(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        Ok(self.client.execute(sql, params)?)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// What a connection is made from.
#[derive(Clone)]
pub(super) struct Target {
    config: ::postgres::Config,
    tls: MakeRustlsConnect,
}

impl Target {
    fn parse(url: &str, ca: Option<&Path>) -> Result<Target, StoreError> {
        let mut config: ::postgres::Config = url.parse().map_err(|e: ::postgres::Error| {
            StoreError::Connect(format!("the database URL: {e}"))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("tokenward");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // Verified against the operator's CA, or the system's roots: `sslmode=require` with an
        // unverified certificate would let anyone on the path read every change.
        let roots: PathBuf = ca.map_or_else(
            || PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            Path::to_path_buf,
        );
        let tls = match crate::tls::client_config(&roots) {
            Ok(config) => config,
            Err(error) if ca.is_some() => {
                return Err(StoreError::Connect(format!("--database-ca: {error}")))
            }
            // No system bundle: TLS cannot be verified, so it fails at connect time (unless
            // the URL says sslmode=disable).
            Err(_) => rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Connect(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        };
        Ok(Target {
            config,
            tls: MakeRustlsConnect::new(tls),
        })
    }

    pub(super) fn connect(&self) -> Result<PgConn, StoreError> {
        let client = self
            .config
            .connect(self.tls.clone())
            .map_err(|e| StoreError::Connect(connect_error(&e)))?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            target: self.clone(),
            in_transaction: false,
        })
    }
}

/// A connection error with what to do about it.
fn connect_error(error: &::postgres::Error) -> String {
    let text = super::describe(error);
    if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
        format!("{text} (the server's TLS certificate is not trusted: give its CA with --database-ca, or add sslmode=disable to the URL for a local, unencrypted connection)")
    } else {
        text
    }
}

impl PostgresStore {
    /// Connects `pool_size` connections to the database at `url` and migrates it.
    pub fn connect_with(
        url: &str,
        ca: Option<&Path>,
        pool_size: usize,
    ) -> Result<PostgresStore, StoreError> {
        let target = Target::parse(url, ca)?;
        let mut first = target.connect()?;
        migrate(&mut first)?;
        let mut connections = vec![first];
        for _ in 1..pool_size.max(1) {
            connections.push(target.connect()?);
        }
        Ok(PostgresStore {
            pool: Pool::new(connections),
            target,
        })
    }

    pub fn connect(url: &str, ca: Option<&Path>) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(url, ca, DEFAULT_POOL_SIZE)
    }

    /// A connection: this thread's transaction's, or an idle one (replaced first when the
    /// server closed it: a restart of Postgres costs the calls in flight, not the process).
    pub(super) fn conn(&self) -> Result<Pooled<'_, PgConn>, StoreError> {
        let mut conn = self.pool.take()?;
        if conn.client.is_closed() {
            if self.in_transaction() {
                return Err(StoreError::Connect(
                    "the connection was lost inside a transaction: nothing of it was committed"
                        .into(),
                ));
            }
            *conn = self.target.connect()?;
        }
        Ok(conn)
    }

    fn in_transaction(&self) -> bool {
        self.pool.is_pinned()
    }

    pub(super) fn begin_transaction(
        &self,
        isolation: Isolation,
    ) -> Result<Transaction<'_>, StoreError> {
        let (mut conn, outermost) = self.pool.pin()?;
        if outermost {
            if conn.client.is_closed() {
                match self.target.connect() {
                    Ok(fresh) => *conn = fresh,
                    Err(error) => {
                        drop(conn);
                        self.pool.unpin();
                        return Err(error);
                    }
                }
            }
            // READ COMMITTED: every statement sees what committed before it. Serialized
            // transactions queue on one advisory lock, taken first, so everything they read
            // is what the writers before them left.
            let begin = match isolation {
                Isolation::Serialized => {
                    format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
                }
                Isolation::Atomic => "BEGIN".to_string(),
            };
            let mut begun = conn.client.batch_execute(&begin);
            if let Err(error) = &begun {
                // Closed while idle: BEGIN never ran; once more on a new connection.
                if lost_before_sent(error) {
                    match self.target.connect() {
                        Ok(fresh) => {
                            *conn = fresh;
                            begun = conn.client.batch_execute(&begin);
                        }
                        Err(error) => {
                            drop(conn);
                            self.pool.unpin();
                            return Err(error);
                        }
                    }
                }
            }
            if let Err(error) = begun {
                let _ = conn.batch("ROLLBACK");
                drop(conn);
                self.pool.unpin();
                return Err(error.into());
            }
            conn.in_transaction = true;
        }
        Ok(Transaction::new(self))
    }

    pub(super) fn end_transaction(&self, commit: bool) -> Result<(), StoreError> {
        let (mut conn, ending) = self.pool.ending(commit)?;
        let result = match ending {
            Ending::Inner => return Ok(()),
            Ending::Commit => conn.batch("COMMIT"),
            Ending::Rollback => conn.batch("ROLLBACK"),
        };
        if result.is_err() && !conn.client.is_closed() {
            let _ = conn.batch("ROLLBACK");
        }
        conn.in_transaction = false;
        drop(conn);
        self.pool.unpin();
        result?;
        if ending == Ending::Rollback && commit {
            return Err(StoreError::Range(
                "an inner transaction failed: everything was rolled back",
            ));
        }
        Ok(())
    }

    /// LISTEN on a connection of its own, in a thread of its own; `wake` on every
    /// notification, and once after each reconnect (notifications sent while it was away are
    /// lost: the caller reads the revision anew).
    pub(super) fn listen(&self, wake: Wake) -> Result<(), StoreError> {
        let target = self.target.clone();
        let mut conn = target.connect()?;
        conn.batch(&format!("LISTEN {CHANNEL}"))?;
        std::thread::Builder::new()
            .name("tokenward-listen".into())
            .spawn(move || loop {
                let (lost, listened) = {
                    let mut notifications = conn.client.notifications();
                    let mut iter = notifications.timeout_iter(Duration::from_secs(5));
                    loop {
                        match iter.next() {
                            Ok(Some(_)) => {
                                if !(wake.listening)() {
                                    break (false, false);
                                }
                                (wake.changed)();
                            }
                            // Quiet for a while: whether anyone listens, and whether the
                            // connection holds, is checked below.
                            Ok(None) => break (false, true),
                            Err(_) => break (true, true),
                        }
                    }
                };
                // The server it woke is gone (or nobody asks any more): so is this thread,
                // and the connection with it (dropped here, on a thread of its own).
                if !listened || !(wake.listening)() {
                    return;
                }
                if lost || conn.client.is_valid(Duration::from_secs(5)).is_err() {
                    tracing::warn!(
                        "store: the LISTEN connection to Postgres was lost; reconnecting"
                    );
                    match reconnect_listener(&target, &wake) {
                        Some(fresh) => conn = fresh,
                        None => return,
                    }
                    // What was committed while it was away was not notified.
                    (wake.changed)();
                }
            })
            .map_err(|e| StoreError::Connect(format!("starting the LISTEN thread: {e}")))?;
        Ok(())
    }
}

/// Reconnects the LISTEN connection, backing off up to 5 s between tries; `None` once
/// nobody listens any more.
fn reconnect_listener(target: &Target, wake: &Wake) -> Option<PgConn> {
    let mut wait = Duration::from_millis(100);
    loop {
        if !(wake.listening)() {
            return None;
        }
        if let Ok(mut conn) = target.connect() {
            if conn.batch(&format!("LISTEN {CHANNEL}")).is_ok() {
                tracing::info!("store: listening to Postgres again");
                return Some(conn);
            }
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Runs the migrations this database has not run, under an advisory lock; a database newer
/// than this binary is refused.
fn migrate(conn: &mut PgConn) -> Result<(), StoreError> {
    conn.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let result = migrate_locked(conn);
    let unlocked = conn.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    result?;
    unlocked
}

fn migrate_locked(conn: &mut PgConn) -> Result<(), StoreError> {
    conn.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let version: i64 = match conn.query_opt("SELECT version FROM schema_version", &[])? {
        Some(row) => row.try_get(0)?,
        None => {
            conn.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        conn.batch("BEGIN")?;
        let step = conn.batch(sql).and_then(|()| {
            conn.execute(
                "UPDATE schema_version SET version = $1",
                &[&(index as i64 + 1)],
            )
            .map(|_| ())
        });
        match step {
            Ok(()) => conn.batch("COMMIT")?,
            Err(error) => {
                let _ = conn.batch("ROLLBACK");
                return Err(error);
            }
        }
    }
    Ok(())
}

/// The schema version a database is at, and the newest this binary knows.
pub(super) fn schema_versions(conn: &mut PgConn) -> Result<(i64, i64), StoreError> {
    let found = conn
        .query_opt("SELECT version FROM schema_version", &[])?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(0);
    Ok((found, MIGRATIONS.len() as i64))
}
