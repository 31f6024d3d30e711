//! The only code that runs SQL. `Store` is what the control plane needs of a database;
//! `SqliteStore` is the embedded default (WAL, migrations from `migrations/`), one process;
//! `PostgresStore` serves several replicas over one database (`migrations/postgres/`), with
//! change notification. `open` picks one from a database URL.

use std::time::Duration;

use tokenward_filter::config::{PlanConfig, PriceConfig, ProviderConfig, RouteConfig};
use tokenward_filter::sync::{SyncReport, UsageEntry};

use crate::model::{ApiKeyRecord, AuditEntry, IssuedToken, ProxyStatus, SigningKeyRecord};

mod dump;
mod ledger;
mod pool;
mod postgres;
mod sqlite;

pub use dump::Dump;
pub use ledger::{UiSession, UsageDimension, UsageFilter, UsageSums};
pub use postgres::{PostgresStore, DEFAULT_POOL_SIZE};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database: {}", postgres::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("database: {0}")]
    Connect(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("a stored document does not parse: {0}")]
    Document(#[from] serde_json::Error),
    #[error("the database is at schema {found}, newer than this binary knows ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("a stored value is out of range: {0}")]
    Range(&'static str),
}

/// A provider as stored: the filter's config entry, and its credential sealed when it is
/// kept here rather than named as an environment variable.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProvider {
    pub config: ProviderConfig,
    pub credential_sealed: Option<Vec<u8>>,
}

/// How a transaction stands against other writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Serialized against every other serialized transaction on the database, from any
    /// process or replica: a check-then-write (render, validate, store) sees exactly the state
    /// it writes over, so two replicas rotating a key or adding the same route at once end in
    /// one consistent state.
    Serialized,
    /// All or nothing, nothing more: for records nobody decides by (a minted token and its
    /// audit entry), so they do not queue behind changes of the catalog.
    Atomic,
}

/// A transaction pinned to the calling thread: every store call this thread makes until it
/// ends runs inside it. Dropped without `commit`: rolled back.
#[must_use = "a transaction not committed is rolled back"]
pub struct Transaction<'a> {
    store: &'a dyn Store,
    done: bool,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(store: &'a dyn Store) -> Self {
        Transaction { store, done: false }
    }

    pub fn commit(mut self) -> Result<(), StoreError> {
        self.done = true;
        self.store.end(true)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            if let Err(error) = self.store.end(false) {
                tracing::error!(%error, "store: a rollback failed");
            }
        }
    }
}

/// An Envoy as the replica serving it last described it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProxy {
    pub node: String,
    /// The `tokenward serve` replica that holds (or held) its ADS stream.
    pub replica: String,
    pub status: ProxyStatus,
}

/// Usage of one hour (its start, Unix seconds) by one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRow {
    pub hour: u64,
    #[serde(flatten)]
    pub entry: UsageEntry,
}

/// One credential's usage in one hour, summed over providers and models: what the spike job
/// reads (docs/quotas.md, "Spend spikes").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialHour {
    pub hour: u64,
    /// An API key's id or a token's jti.
    pub credential: String,
    pub subject: String,
    pub tenant: Option<String>,
    pub plan: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micro_usd: u64,
}

/// One Envoy process's counter of a fleet-wide limit in one window (docs/quotas.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetRow {
    /// The filter's counter key (`tw:q:<plan>:<limit>:<metric>:<window>:<scope>:<id>`).
    pub key: String,
    pub window_start: u64,
    pub window_end: u64,
    pub node: String,
    pub boot: String,
    /// The number of the report that last wrote it: an older one changes nothing.
    pub seq: u64,
    /// What the counter held.
    pub used: u64,
    /// What the Envoy's allowance refused in the window.
    pub denied: u64,
    /// The ceiling the Envoy said it counts to.
    pub held: u64,
    /// The ceiling last granted to it.
    pub granted: u64,
    /// Its share of the limit last granted (millionths).
    pub share_ppm: u64,
    /// When it last reported (Unix ms).
    pub reported_at: u64,
}

/// A budget threshold a counter crossed in a window, from its firing to its delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertEvent {
    pub key: String,
    pub window_start: u64,
    /// Percent of the limit.
    pub threshold: u64,
    /// The webhook's JSON body, as it is sent every time.
    pub body: String,
    pub fired_at: u64,
    pub attempts: u64,
    pub next_attempt_at: u64,
    pub delivered_at: Option<u64>,
    pub last_error: String,
}

/// Deliveries of an alert before it is given up (its last error kept).
pub const ALERT_ATTEMPTS: u64 = 8;

/// How long the last report number of an Envoy process is kept after its last report: a
/// process silent this long is gone (a restarted one numbers from a new boot).
pub const REPORT_STREAM_KEPT: i64 = 7 * 24 * 3600;

/// The hour `at` falls in.
pub(crate) fn hour_of(at: u64) -> u64 {
    at - at % 3600
}

/// "None" in the usage key's columns.
pub(crate) fn or_empty(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

pub(crate) fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// What a store's watch tells of commits: `changed` on each (perhaps another replica's), and
/// `listening` whether anyone still cares (false: the watch ends, its connection closes).
#[derive(Clone)]
pub struct Wake {
    pub changed: std::sync::Arc<dyn Fn() + Send + Sync>,
    pub listening: std::sync::Arc<dyn Fn() -> bool + Send + Sync>,
}

/// What the control plane keeps. Every method is one statement or one transaction; several
/// calls are one transaction between `begin` and `Transaction::commit`.
pub trait Store: Send + Sync {
    /// Begins a transaction on this thread (nested ones join the outermost).
    fn begin(&self, isolation: Isolation) -> Result<Transaction<'_>, StoreError>;
    /// Ends this thread's innermost transaction (`Transaction` calls it).
    fn end(&self, commit: bool) -> Result<(), StoreError>;

    /// Calls `wake` whenever another connection or process commits a change (Postgres:
    /// LISTEN/NOTIFY on a connection of its own, reconnected when lost), until `wake` says
    /// nobody listens. Without it the revision is polled every `change_poll`.
    fn watch(&self, _wake: Wake) -> Result<(), StoreError> {
        Ok(())
    }
    /// How often the xDS loop reads the revision: the safety net under `watch` (a
    /// notification is lost while its connection reconnects), or the only signal.
    fn change_poll(&self) -> Duration {
        Duration::from_millis(50)
    }

    /// The content revision: it moves with every committed change to what the configuration
    /// is rendered from, made through any connection or process, and never goes back.
    /// Readers that only need to know whether anything changed compare it.
    fn revision(&self) -> Result<u64, StoreError>;

    fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError>;

    fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError>;
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Retires every key not retired yet (other than `except`) at `at`, published until
    /// `publish_until`.
    fn retire_signing_keys(
        &self,
        except: &str,
        at: u64,
        publish_until: u64,
    ) -> Result<(), StoreError>;

    /// Records a minted token; `api_key_id` when it was exchanged for an API key.
    fn record_token(&self, token: &IssuedToken, api_key_id: Option<&str>)
        -> Result<(), StoreError>;
    /// Tokens of `tenant` still accepted after `live_after` (now minus the clock skew).
    fn tokens_of_tenant(
        &self,
        tenant: &str,
        live_after: u64,
    ) -> Result<Vec<IssuedToken>, StoreError>;
    /// Tokens exchanged for the API key `id`, still accepted after `live_after`.
    fn tokens_of_api_key(&self, id: &str, live_after: u64) -> Result<Vec<IssuedToken>, StoreError>;
    /// Revokes a signing key: it leaves the published keys and its `kid` is refused.
    fn revoke_signing_key(&self, kid: &str, now: u64) -> Result<bool, StoreError>;
    fn revoked_key_ids(&self) -> Result<Vec<String>, StoreError>;
    /// Keeps every retired key published at least `keep` seconds after it retired (a raised
    /// token lifetime or skew), never shortening a publication.
    fn extend_publication(&self, keep: u64) -> Result<(), StoreError>;
    /// Minted tokens that are still accepted (expiring at or after `live_after`), newest first.
    fn tokens(&self, live_after: u64) -> Result<Vec<IssuedToken>, StoreError>;
    fn token(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError>;

    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks keys revoked: one by id, or every key of a subject or tenant. Returns how many.
    fn revoke_api_keys(&self, by: ApiKeySelector<'_>, now: u64) -> Result<usize, StoreError>;

    fn revoke_jti(&self, jti: &str, expires_at: u64, now: u64) -> Result<(), StoreError>;
    fn revoke_subject(&self, subject: &str, now: u64) -> Result<(), StoreError>;
    /// Lifts a subject's revocation; whether there was one.
    fn unrevoke_subject(&self, subject: &str) -> Result<bool, StoreError>;
    /// Revoked token ids with their expiry, those expiring after `live_after` (now minus the
    /// clock skew: the filter accepts a token until exp + skew).
    fn revoked_jtis(&self, live_after: u64) -> Result<Vec<(String, u64)>, StoreError>;
    /// Deletes revocations of tokens, and records of minted tokens, that expired at or before
    /// `before`, and the report numbers of Envoy processes silent for `REPORT_STREAM_KEPT`
    /// before it: a job that runs once per period across replicas (under a lease).
    fn prune(&self, before: u64) -> Result<usize, StoreError>;
    fn revoked_subjects(&self) -> Result<Vec<String>, StoreError>;

    fn put_provider(&self, provider: &StoredProvider) -> Result<(), StoreError>;
    fn providers(&self) -> Result<Vec<StoredProvider>, StoreError>;
    /// Adds or replaces a route; a new route goes last.
    fn put_route(&self, route: &RouteConfig) -> Result<(), StoreError>;
    fn routes(&self) -> Result<Vec<RouteConfig>, StoreError>;
    fn put_plan(&self, name: &str, plan: &PlanConfig) -> Result<(), StoreError>;
    fn plans(&self) -> Result<Vec<(String, PlanConfig)>, StoreError>;
    fn put_price(&self, price: &PriceConfig) -> Result<(), StoreError>;
    fn prices(&self) -> Result<Vec<PriceConfig>, StoreError>;
    /// Removes one provider, route, plan or price; false when there was none by that name.
    /// What refers to it is the caller's to check.
    fn remove(&self, entry: CatalogEntry<'_>) -> Result<bool, StoreError>;

    fn audit(
        &self,
        at: u64,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError>;
    /// The newest `limit` entries, newest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;

    /// Records what `replica` knows of the Envoy `node` (not part of the configuration: the
    /// revision does not move).
    fn put_proxy(&self, node: &str, replica: &str, status: &ProxyStatus) -> Result<(), StoreError>;
    /// `last_seen` of these nodes, which `replica` still serves, moves to `at`.
    fn touch_proxies(&self, replica: &str, nodes: &[String], at: u64) -> Result<(), StoreError>;
    /// Every Envoy any replica has served, by node id.
    fn proxies(&self) -> Result<Vec<StoredProxy>, StoreError>;

    /// Takes a usage report once, received at `at`: false when its (node, boot, seq) was
    /// taken before (a resend: its number is not above the last taken from that Envoy
    /// process), and then nothing is counted again. One transaction.
    fn record_usage(&self, report: &SyncReport, at: u64) -> Result<bool, StoreError>;
    /// Usage per hour and key, of the hours from `since`'s to before `until`, narrowed by
    /// `filter`, oldest first, at most `limit` rows.
    fn usage_rows(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
        limit: usize,
    ) -> Result<Vec<UsageRow>, StoreError>;
    /// Usage per hour, of the hours that begin at or after `since`.
    fn usage(&self, since: u64) -> Result<Vec<UsageRow>, StoreError> {
        self.usage_rows(since, u64::MAX, &UsageFilter::default(), usize::MAX)
    }
    /// Usage per credential, hour, subject, tenant and plan, of the hours that begin in
    /// `[since, until)`, of `credential` only when one is named; usage without a credential
    /// is left out. Ordered by credential, then hour. Reads only those hours (the key and the
    /// credential index lead with them), however long the ledger.
    fn credential_usage(
        &self,
        since: u64,
        until: u64,
        credential: Option<&str>,
    ) -> Result<Vec<CredentialHour>, StoreError>;
    /// Deletes the usage of hours that began before `before` (the retention job).
    fn prune_usage(&self, before: u64) -> Result<usize, StoreError>;

    /// Fleet-wide quotas: every row of one counter key, any window.
    fn fleet_rows(&self, key: &str) -> Result<Vec<FleetRow>, StoreError>;
    /// Writes a row whole (insert or replace).
    fn put_fleet_row(&self, row: &FleetRow) -> Result<(), StoreError>;
    /// The keys some Envoy reported in use (counted or refused) at or after `since_ms`, in
    /// windows not ended at `now`.
    fn fleet_keys_since(&self, since_ms: u64, now: u64) -> Result<Vec<String>, StoreError>;
    /// Every row of a window not ended at `now`.
    fn fleet_current(&self, now: u64) -> Result<Vec<FleetRow>, StoreError>;
    /// Drops rows whose window ended more than a window's width before `now`.
    fn prune_fleet(&self, now: u64) -> Result<usize, StoreError>;
    /// Budget alerts: records `event` unless its (key, window, threshold) fired already;
    /// whether it is new.
    fn record_alert(&self, event: &AlertEvent) -> Result<bool, StoreError>;
    /// Undelivered alerts due at `now` with attempts left, oldest first.
    fn due_alerts(&self, now: u64, limit: usize) -> Result<Vec<AlertEvent>, StoreError>;
    /// Writes a delivery attempt's outcome (attempts, next attempt, delivery, error).
    fn alert_attempted(&self, event: &AlertEvent) -> Result<(), StoreError>;
    /// The newest alerts, newest first.
    fn alert_events(&self, limit: usize) -> Result<Vec<AlertEvent>, StoreError>;
    /// Drops alerts fired before `before`.
    fn prune_alerts(&self, before: u64) -> Result<usize, StoreError>;
    /// The Envoy processes (node, boot) whose last report arrived at or after `since`.
    fn report_streams_since(&self, since: u64) -> Result<Vec<(String, String)>, StoreError>;

    /// The ledger summed per hour, of the hours from `since`'s to before `until`, narrowed by
    /// `filter`.
    fn usage_by_hour(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
    ) -> Result<Vec<(u64, UsageSums)>, StoreError>;
    /// The ledger of the hours from `since`'s to before `until`, summed per value of `by` (""
    /// for none), largest cost first, at most `limit`.
    fn usage_by(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
        by: UsageDimension,
        limit: usize,
    ) -> Result<Vec<(String, UsageSums)>, StoreError>;
    /// The start of the last hour `credential` (an API key's id, a token's jti) was used in.
    fn last_used(&self, credential: &str) -> Result<Option<u64>, StoreError>;
    /// Tokens that expire at or after `live_after`, newest first, with the grants (scopes,
    /// models, plan as JSON) recorded when each was minted.
    fn recent_tokens(
        &self,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<(IssuedToken, Option<String>)>, StoreError>;
    /// Records what a minted token grants (JSON), for the dashboard.
    fn set_token_grants(&self, jti: &str, grants: &str) -> Result<(), StoreError>;

    /// Dashboard sessions: by the SHA-256 of the cookie's id, never the id.
    fn put_ui_session(&self, session: &UiSession) -> Result<(), StoreError>;
    fn ui_session(&self, id_sha256: &str) -> Result<Option<UiSession>, StoreError>;
    fn delete_ui_session(&self, id_sha256: &str) -> Result<(), StoreError>;
    /// Drops sessions that expired before `now`.
    fn prune_ui_sessions(&self, now: u64) -> Result<usize, StoreError>;

    /// Takes or keeps the lease `name` for `holder` until `now + ttl`: true when `holder` has
    /// it (free, expired, or its own). One holder at a time, across processes.
    fn try_lease(&self, name: &str, holder: &str, now: u64, ttl: u64) -> Result<bool, StoreError>;

    /// A consistent copy of the whole database into the new file `path`, taken while the
    /// control plane runs (SQLite). Postgres is backed up with its own tools (pg_dump).
    fn backup(&self, path: &std::path::Path) -> Result<(), StoreError>;

    /// Everything kept, for moving an installation to another store.
    fn export(&self) -> Result<Dump, StoreError>;
    /// Writes `dump` into this store, which must be empty (never initialised); one
    /// transaction.
    fn import(&self, dump: &Dump) -> Result<(), StoreError>;
}

/// Opens the store a database URL names: `postgres://…` (or `postgresql://…`) for Postgres,
/// `sqlite://<path>` or a plain path for SQLite. `ca` verifies a Postgres server's TLS
/// certificate (the system's roots otherwise).
pub fn open(url: &str, ca: Option<&std::path::Path>) -> Result<Box<dyn Store>, StoreError> {
    Ok(match Location::parse(url) {
        Location::Postgres(url) => Box::new(PostgresStore::connect(url, ca)?),
        Location::Sqlite(path) => Box::new(SqliteStore::open(std::path::Path::new(path))?),
    })
}

/// Where a database URL points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'a> {
    Postgres(&'a str),
    Sqlite(&'a str),
}

impl<'a> Location<'a> {
    pub fn parse(url: &'a str) -> Location<'a> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Location::Postgres(url)
        } else {
            Location::Sqlite(url.strip_prefix("sqlite://").unwrap_or(url))
        }
    }
}

pub(crate) fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Range("a time beyond 2^63 seconds"))
}

pub(crate) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Range("a negative time"))
}

pub(crate) fn optional(value: Option<u64>) -> Result<Option<i64>, StoreError> {
    value.map(to_i64).transpose()
}

/// One entry of the catalog the filter routes and counts by, by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogEntry<'a> {
    Provider(&'a str),
    Route(&'a str),
    Plan(&'a str),
    /// A price, by its model pattern.
    Price(&'a str),
}

#[derive(Debug, Clone, Copy)]
pub enum ApiKeySelector<'a> {
    Id(&'a str),
    Subject(&'a str),
    Tenant(&'a str),
}

#[cfg(test)]
mod tests;
