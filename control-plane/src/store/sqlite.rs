//! The embedded default store: SQLite in WAL mode, migrated from `migrations/`, a small pool
//! of connections so callers on several threads do not wait on one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use rusqlite::{params, Connection, OptionalExtension};
use tokenward_filter::config::{PlanConfig, PriceConfig, RouteConfig};

use super::*;
use crate::model::{Alg, ApiKeyRecord, AuditEntry, IssuedToken, SigningKeyRecord};

/// Migrations, in order; the database records how many it has run (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_sources_and_key_revocation.sql"),
    include_str!("../../migrations/0003_revision.sql"),
];

/// Safe to share between threads: each call takes a connection of its own from a small pool
/// (SQLite in WAL mode lets readers run beside the one writer; `busy_timeout` queues writers).
pub struct SqliteStore {
    connections: Vec<Mutex<Connection>>,
    /// Where the next wait for a busy connection starts, so waiters spread over them.
    next: AtomicUsize,
}

/// More than the blocking threads that use the store at once gain nothing: SQLite has one
/// writer, and readers beyond the cores wait anyway.
const POOL_SIZE: usize = 4;

/// A connection taken from the pool; it goes back when dropped.
type Pooled<'a> = MutexGuard<'a, Connection>;

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Range("a time beyond 2^63 seconds"))
}

fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Range("a negative time"))
}

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
        let mut connections = vec![Mutex::new(conn)];
        if let Some(path) = path {
            for _ in 1..POOL_SIZE {
                connections.push(Mutex::new(SqliteStore::connect(&path)?));
            }
        }
        Ok(SqliteStore {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// An idle connection, or else the next one to come free.
    fn conn(&self) -> Result<Pooled<'_>, StoreError> {
        for slot in &self.connections {
            match slot.try_lock() {
                Ok(conn) => return Ok(conn),
                Err(TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = self
            .connections
            .get(start % self.connections.len().max(1))
            .ok_or(StoreError::Range("a store without connections"))?;
        Ok(slot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A consistent copy of the whole database at `path` (SQLite `VACUUM INTO`), taken while
    /// the control plane runs.
    pub fn backup(&self, path: &std::path::Path) -> Result<(), StoreError> {
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

/// A signing key row as SQLite returns it, converted by `signing_keys`.
type KeyRow = (
    String,
    String,
    String,
    Vec<u8>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
);
/// An issued-token row.
type TokenRow = (String, String, Option<String>, String, i64, i64);

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn issued(
    row: (String, String, Option<String>, String, i64, i64),
) -> Result<IssuedToken, StoreError> {
    let (jti, subject, tenant, kid, issued_at, expires_at) = row;
    Ok(IssuedToken {
        jti,
        subject,
        tenant,
        kid,
        issued_at: to_u64(issued_at)?,
        expires_at: to_u64(expires_at)?,
    })
}

fn optional(value: Option<u64>) -> Result<Option<i64>, StoreError> {
    value.map(to_i64).transpose()
}

impl Store for SqliteStore {
    fn revision(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()?
            .query_row("SELECT n FROM revision WHERE id = 1", [], |row| row.get(0))?;
        to_u64(n)
    }

    fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT value FROM settings WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO settings (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed, created_at, activate_at, retired_at, publish_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                key.kid,
                key.alg.as_str(),
                serde_json::to_string(&key.public_jwk)?,
                key.private_sealed,
                to_i64(key.created_at)?,
                to_i64(key.activate_at)?,
                optional(key.retired_at)?,
                optional(key.publish_until)?,
            ],
        )?;
        Ok(())
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT kid, alg, public_jwk, private_sealed, created_at, activate_at, retired_at, publish_until
             FROM signing_keys ORDER BY activate_at, created_at, kid",
        )?;
        let rows = statement.query_map([], key_from_row)?;
        let mut keys = Vec::new();
        for row in rows {
            let (kid, alg, jwk, private_sealed, created_at, activate_at, retired_at, publish_until) =
                row?;
            keys.push(SigningKeyRecord {
                kid,
                alg: Alg::parse(&alg).ok_or(StoreError::Range("an unknown key algorithm"))?,
                public_jwk: serde_json::from_str(&jwk)?,
                private_sealed,
                created_at: to_u64(created_at)?,
                activate_at: to_u64(activate_at)?,
                retired_at: retired_at.map(to_u64).transpose()?,
                publish_until: publish_until.map(to_u64).transpose()?,
            });
        }
        Ok(keys)
    }

    fn retire_signing_keys(
        &self,
        except: &str,
        at: u64,
        publish_until: u64,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE signing_keys SET retired_at = ?2, publish_until = ?3
             WHERE kid <> ?1 AND (retired_at IS NULL OR retired_at > ?2)",
            params![except, to_i64(at)?, to_i64(publish_until)?],
        )?;
        Ok(())
    }

    fn record_token(
        &self,
        token: &IssuedToken,
        api_key_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO issued_tokens (jti, subject, tenant, kid, issued_at, expires_at, api_key_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                token.jti,
                token.subject,
                token.tenant,
                token.kid,
                to_i64(token.issued_at)?,
                to_i64(token.expires_at)?,
                api_key_id
            ],
        )?;
        Ok(())
    }

    fn tokens_of_api_key(&self, id: &str, live_after: u64) -> Result<Vec<IssuedToken>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens
             WHERE api_key_id = ?1 AND expires_at >= ?2 ORDER BY jti",
        )?;
        let rows = statement.query_map(params![id, to_i64(live_after)?], token_from_row)?;
        rows.map(|row| issued(row?)).collect()
    }

    fn revoke_signing_key(&self, kid: &str, now: u64) -> Result<bool, StoreError> {
        let now = to_i64(now)?;
        let changed = self.conn()?.execute(
            "UPDATE signing_keys SET retired_at = MIN(COALESCE(retired_at, ?2), ?2), publish_until = ?2 WHERE kid = ?1",
            params![kid, now],
        )?;
        if changed > 0 {
            self.conn()?.execute(
                "INSERT INTO revoked_keys (kid, revoked_at) VALUES (?1, ?2) ON CONFLICT (kid) DO NOTHING",
                params![kid, now],
            )?;
        }
        Ok(changed > 0)
    }

    fn revoked_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare("SELECT kid FROM revoked_keys ORDER BY kid")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn extend_publication(&self, keep: u64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE signing_keys SET publish_until = MAX(publish_until, retired_at + ?1)
             WHERE retired_at IS NOT NULL AND publish_until IS NOT NULL
               AND kid NOT IN (SELECT kid FROM revoked_keys)",
            [to_i64(keep)?],
        )?;
        Ok(())
    }

    fn tokens_of_tenant(
        &self,
        tenant: &str,
        live_after: u64,
    ) -> Result<Vec<IssuedToken>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens
             WHERE tenant = ?1 AND expires_at >= ?2 ORDER BY jti",
        )?;
        let rows = statement.query_map(params![tenant, to_i64(live_after)?], token_from_row)?;
        rows.map(|row| issued(row?)).collect()
    }

    fn token(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        let row = self.conn()?.query_row(
                "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens WHERE jti = ?1",
                [jti],
                token_from_row,
            )
            .optional()?;
        row.map(issued).transpose()
    }

    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO api_keys (id, sha256, subject, tenant, scopes, models, plan, created_at, expires_at, revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                key.id,
                key.sha256,
                key.subject,
                key.tenant,
                serde_json::to_string(&key.scopes)?,
                serde_json::to_string(&key.models)?,
                key.plan,
                to_i64(key.created_at)?,
                optional(key.expires_at)?,
                optional(key.revoked_at)?,
            ],
        )?;
        Ok(())
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT id, sha256, subject, tenant, scopes, models, plan, created_at, expires_at, revoked_at
             FROM api_keys ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, i64>(7)?,
                row.get::<_, Option<i64>>(8)?,
                row.get::<_, Option<i64>>(9)?,
            ))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (
                id,
                sha256,
                subject,
                tenant,
                scopes,
                models,
                plan,
                created_at,
                expires_at,
                revoked_at,
            ) = row?;
            keys.push(ApiKeyRecord {
                id,
                sha256,
                subject,
                tenant,
                scopes: serde_json::from_str(&scopes)?,
                models: serde_json::from_str(&models)?,
                plan,
                created_at: to_u64(created_at)?,
                expires_at: expires_at.map(to_u64).transpose()?,
                revoked_at: revoked_at.map(to_u64).transpose()?,
            });
        }
        Ok(keys)
    }

    fn revoke_api_keys(&self, by: ApiKeySelector<'_>, now: u64) -> Result<usize, StoreError> {
        let (column, value) = match by {
            ApiKeySelector::Id(id) => ("id", id),
            ApiKeySelector::Subject(subject) => ("subject", subject),
            ApiKeySelector::Tenant(tenant) => ("tenant", tenant),
        };
        Ok(self.conn()?.execute(
            &format!(
                "UPDATE api_keys SET revoked_at = ?2 WHERE {column} = ?1 AND revoked_at IS NULL"
            ),
            params![value, to_i64(now)?],
        )?)
    }

    fn revoke_jti(&self, jti: &str, expires_at: u64, now: u64) -> Result<(), StoreError> {
        // Revoked again with a later expiry: the later one holds.
        self.conn()?.execute(
            "INSERT INTO revoked_jtis (jti, expires_at, revoked_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (jti) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
            params![jti, to_i64(expires_at)?, to_i64(now)?],
        )?;
        Ok(())
    }

    fn revoke_subject(&self, subject: &str, now: u64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO revoked_subjects (subject, revoked_at) VALUES (?1, ?2) ON CONFLICT (subject) DO NOTHING",
            params![subject, to_i64(now)?],
        )?;
        Ok(())
    }

    fn revoked_jtis(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let now = to_i64(now)?;
        // A revoked token past its expiry is refused for being expired: its entry can go.
        self.conn()?
            .execute("DELETE FROM revoked_jtis WHERE expires_at <= ?1", [now])?;
        self.conn()?
            .execute("DELETE FROM issued_tokens WHERE expires_at <= ?1", [now])?;
        let conn = self.conn()?;
        let mut statement =
            conn.prepare("SELECT jti, expires_at FROM revoked_jtis ORDER BY jti")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        rows.map(|row| {
            let (jti, expires_at) = row?;
            Ok((jti, to_u64(expires_at)?))
        })
        .collect()
    }

    fn revoked_subjects(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let mut statement =
            conn.prepare("SELECT subject FROM revoked_subjects ORDER BY subject")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_provider(&self, provider: &StoredProvider) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO providers (name, document, credential_sealed) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET document = excluded.document, credential_sealed = excluded.credential_sealed",
            params![
                provider.config.name,
                serde_json::to_string(&provider.config)?,
                provider.credential_sealed
            ],
        )?;
        Ok(())
    }

    fn providers(&self) -> Result<Vec<StoredProvider>, StoreError> {
        let conn = self.conn()?;
        let mut statement =
            conn.prepare("SELECT document, credential_sealed FROM providers ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<Vec<u8>>>(1)?))
        })?;
        rows.map(|row| {
            let (document, credential_sealed) = row?;
            Ok(StoredProvider {
                config: serde_json::from_str(&document)?,
                credential_sealed,
            })
        })
        .collect()
    }

    fn put_route(&self, route: &RouteConfig) -> Result<(), StoreError> {
        put_ordered(
            &*self.conn()?,
            "routes",
            "name",
            &route.name,
            serde_json::to_string(route)?,
        )
    }

    fn routes(&self) -> Result<Vec<RouteConfig>, StoreError> {
        documents(
            &*self.conn()?,
            "SELECT document FROM routes ORDER BY position",
        )
    }

    fn put_plan(&self, name: &str, plan: &PlanConfig) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO plans (name, document) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET document = excluded.document",
            params![name, serde_json::to_string(plan)?],
        )?;
        Ok(())
    }

    fn plans(&self) -> Result<Vec<(String, PlanConfig)>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare("SELECT name, document FROM plans ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (name, document) = row?;
            Ok((name, serde_json::from_str(&document)?))
        })
        .collect()
    }

    fn put_price(&self, price: &PriceConfig) -> Result<(), StoreError> {
        put_ordered(
            &*self.conn()?,
            "prices",
            "model",
            &price.model,
            serde_json::to_string(price)?,
        )
    }

    fn prices(&self) -> Result<Vec<PriceConfig>, StoreError> {
        documents(
            &*self.conn()?,
            "SELECT document FROM prices ORDER BY position",
        )
    }

    fn remove(&self, entry: CatalogEntry<'_>) -> Result<bool, StoreError> {
        // Table and column names are constants, never input.
        let (table, column, key) = match entry {
            CatalogEntry::Provider(name) => ("providers", "name", name),
            CatalogEntry::Route(name) => ("routes", "name", name),
            CatalogEntry::Plan(name) => ("plans", "name", name),
            CatalogEntry::Price(model) => ("prices", "model", model),
        };
        let removed = self
            .conn()?
            .execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), [key])?;
        Ok(removed > 0)
    }

    fn audit(
        &self,
        at: u64,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![to_i64(at)?, actor, action, target, detail],
        )?;
        Ok(())
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (id, at, actor, action, target, detail) = row?;
            Ok(AuditEntry {
                id,
                at: to_u64(at)?,
                actor,
                action,
                target,
                detail,
            })
        })
        .collect()
    }
}

/// Adds a document last in `table`'s order, or replaces the one with the same key in place.
/// `table` and `key_column` are this module's constants, never input.
fn put_ordered(
    conn: &Connection,
    table: &'static str,
    key_column: &'static str,
    key: &str,
    document: String,
) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO {table} ({key_column}, position, document)
             VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM {table}), ?2)
             ON CONFLICT ({key_column}) DO UPDATE SET document = excluded.document"
        ),
        params![key, document],
    )?;
    Ok(())
}

fn documents<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    rows.map(|row| Ok(serde_json::from_str(&row?)?)).collect()
}
