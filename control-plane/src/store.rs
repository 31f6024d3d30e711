//! The only code that runs SQL. `Store` is what the control plane needs of a database;
//! `SqliteStore` is the embedded default (WAL, migrations from `migrations/`). A Postgres
//! store for several replicas implements the same trait.

use tokenward_filter::config::{PlanConfig, PriceConfig, ProviderConfig, RouteConfig};

use crate::model::{ApiKeyRecord, AuditEntry, IssuedToken, SigningKeyRecord};

mod sqlite;

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
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

/// What the control plane keeps. Every method is one statement or one transaction.
pub trait Store: Send + Sync {
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
    /// Revoked token ids with their expiry; entries that expired before `prune_before` (now
    /// minus the clock skew: the filter accepts a token until exp + skew) are pruned first,
    /// and minted tokens likewise.
    fn revoked_jtis(&self, prune_before: u64) -> Result<Vec<(String, u64)>, StoreError>;
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
