//! The store for several replicas: Postgres, migrated from `migrations/postgres/`, the same
//! tables and the same rules as SQLite's. Serialized writes of every replica queue on one
//! advisory lock; a trigger moves the revision and NOTIFYs it at commit.

mod dump;
mod open;

pub use open::DEFAULT_POOL_SIZE;
use open::{PgConn, Target};

use ::postgres::Row;
use tokenward_filter::config::{PlanConfig, PriceConfig, RouteConfig};

use super::ledger;
use super::pool::Pool;
use super::*;
use crate::model::{Alg, ApiKeyRecord, AuditEntry, IssuedToken, SigningKeyRecord};

/// Safe to share between threads: each call takes a connection of its own from the pool.
pub struct PostgresStore {
    pool: Pool<PgConn>,
    target: Target,
}

/// The synchronous client drives each connection with a runtime of its own, and a runtime
/// must not be dropped on an async thread: the last handle on the store may go on one (a
/// server shutting down), so its connections are closed on a thread of their own.
impl Drop for PostgresStore {
    fn drop(&mut self) {
        let connections = self.pool.drain();
        if connections.is_empty() {
            return;
        }
        let closing = std::thread::spawn(move || drop(connections));
        let _ = closing.join();
    }
}

/// A Postgres error as one line: the server's own message when it sent one.
pub(super) fn describe(error: &::postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let said = cause.to_string();
                if !text.contains(&said) {
                    text.push_str(": ");
                    text.push_str(&said);
                }
                source = cause.source();
            }
            text
        }
    }
}

fn get<T: for<'r> ::postgres::types::FromSql<'r>>(
    row: &Row,
    index: usize,
) -> Result<T, StoreError> {
    Ok(row.try_get(index)?)
}

fn token(row: &Row) -> Result<IssuedToken, StoreError> {
    Ok(IssuedToken {
        jti: get(row, 0)?,
        subject: get(row, 1)?,
        tenant: get(row, 2)?,
        kid: get(row, 3)?,
        issued_at: to_u64(get(row, 4)?)?,
        expires_at: to_u64(get(row, 5)?)?,
    })
}

fn documents<T: serde::de::DeserializeOwned>(rows: Vec<Row>) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|row| Ok(serde_json::from_str(&get::<String>(row, 0)?)?))
        .collect()
}

impl PostgresStore {
    /// The schema version of the database and the newest this binary knows.
    pub fn schema_versions(&self) -> Result<(i64, i64), StoreError> {
        let mut conn = self.conn()?;
        open::schema_versions(&mut conn)
    }

    /// Adds a document last in `table`'s order, or replaces the one with the same key in
    /// place. `table` and `key_column` are this module's constants, never input.
    fn put_ordered(
        &self,
        table: &'static str,
        key_column: &'static str,
        key: &str,
        document: String,
    ) -> Result<(), StoreError> {
        self.conn()?.execute_dynamic(
            &format!(
                "INSERT INTO {table} ({key_column}, position, document)
                 VALUES ($1, (SELECT COALESCE(MAX(position), 0) + 1 FROM {table}), $2)
                 ON CONFLICT ({key_column}) DO UPDATE SET document = excluded.document"
            ),
            &[&key, &document],
        )?;
        Ok(())
    }
}

impl Store for PostgresStore {
    fn begin(&self, isolation: Isolation) -> Result<Transaction<'_>, StoreError> {
        self.begin_transaction(isolation)
    }

    fn end(&self, commit: bool) -> Result<(), StoreError> {
        self.end_transaction(commit)
    }

    fn watch(&self, wake: Wake) -> Result<(), StoreError> {
        self.listen(wake)
    }

    fn change_poll(&self) -> Duration {
        // NOTIFY wakes the loop at once; the poll only catches what a reconnect lost.
        Duration::from_millis(500)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT n FROM revision WHERE id = 1", &[])?
            .ok_or(StoreError::Range("the revision row is missing"))?;
        to_u64(get(&row, 0)?)
    }

    fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.conn()?
            .query_opt("SELECT value FROM settings WHERE name = $1", &[&name])?
            .map(|row| get(&row, 0))
            .transpose()
    }

    fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&name, &value],
        )?;
        Ok(())
    }

    fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO signing_keys (kid, alg, public_jwk, private_sealed, created_at, activate_at, retired_at, publish_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &key.kid,
                &key.alg.as_str(),
                &serde_json::to_string(&key.public_jwk)?,
                &key.private_sealed,
                &to_i64(key.created_at)?,
                &to_i64(key.activate_at)?,
                &optional(key.retired_at)?,
                &optional(key.publish_until)?,
            ],
        )?;
        Ok(())
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT kid, alg, public_jwk, private_sealed, created_at, activate_at, retired_at, publish_until
             FROM signing_keys ORDER BY activate_at, created_at, kid",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                let alg: String = get(row, 1)?;
                let jwk: String = get(row, 2)?;
                Ok(SigningKeyRecord {
                    kid: get(row, 0)?,
                    alg: Alg::parse(&alg).ok_or(StoreError::Range("an unknown key algorithm"))?,
                    public_jwk: serde_json::from_str(&jwk)?,
                    private_sealed: get(row, 3)?,
                    created_at: to_u64(get(row, 4)?)?,
                    activate_at: to_u64(get(row, 5)?)?,
                    retired_at: get::<Option<i64>>(row, 6)?.map(to_u64).transpose()?,
                    publish_until: get::<Option<i64>>(row, 7)?.map(to_u64).transpose()?,
                })
            })
            .collect()
    }

    fn retire_signing_keys(
        &self,
        except: &str,
        at: u64,
        publish_until: u64,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE signing_keys SET retired_at = $2, publish_until = $3
             WHERE kid <> $1 AND (retired_at IS NULL OR retired_at > $2)",
            &[&except, &to_i64(at)?, &to_i64(publish_until)?],
        )?;
        Ok(())
    }

    fn record_token(
        &self,
        token: &IssuedToken,
        api_key_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO issued_tokens (jti, subject, tenant, kid, issued_at, expires_at, api_key_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &token.jti,
                &token.subject,
                &token.tenant,
                &token.kid,
                &to_i64(token.issued_at)?,
                &to_i64(token.expires_at)?,
                &api_key_id,
            ],
        )?;
        Ok(())
    }

    fn tokens_of_tenant(
        &self,
        tenant: &str,
        live_after: u64,
    ) -> Result<Vec<IssuedToken>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens
             WHERE tenant = $1 AND expires_at >= $2 ORDER BY jti",
            &[&tenant, &to_i64(live_after)?],
        )?;
        rows.iter().map(token).collect()
    }

    fn tokens_of_api_key(&self, id: &str, live_after: u64) -> Result<Vec<IssuedToken>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens
             WHERE api_key_id = $1 AND expires_at >= $2 ORDER BY jti",
            &[&id, &to_i64(live_after)?],
        )?;
        rows.iter().map(token).collect()
    }

    fn revoke_signing_key(&self, kid: &str, now: u64) -> Result<bool, StoreError> {
        let now = to_i64(now)?;
        let mut conn = self.conn()?;
        let changed = conn.execute(
            "UPDATE signing_keys SET retired_at = LEAST(COALESCE(retired_at, $2), $2), publish_until = $2
             WHERE kid = $1",
            &[&kid, &now],
        )?;
        if changed > 0 {
            conn.execute(
                "INSERT INTO revoked_keys (kid, revoked_at) VALUES ($1, $2) ON CONFLICT (kid) DO NOTHING",
                &[&kid, &now],
            )?;
        }
        Ok(changed > 0)
    }

    fn revoked_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .conn()?
            .query("SELECT kid FROM revoked_keys ORDER BY kid", &[])?;
        rows.iter().map(|row| get(row, 0)).collect()
    }

    fn extend_publication(&self, keep: u64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE signing_keys SET publish_until = GREATEST(publish_until, retired_at + $1)
             WHERE retired_at IS NOT NULL AND publish_until IS NOT NULL
               AND publish_until < retired_at + $1
               AND kid NOT IN (SELECT kid FROM revoked_keys)",
            &[&to_i64(keep)?],
        )?;
        Ok(())
    }

    fn tokens(&self, live_after: u64) -> Result<Vec<IssuedToken>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens
             WHERE expires_at >= $1 ORDER BY issued_at DESC, jti",
            &[&to_i64(live_after)?],
        )?;
        rows.iter().map(token).collect()
    }

    fn token(&self, jti: &str) -> Result<Option<IssuedToken>, StoreError> {
        self.conn()?
            .query_opt(
                "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens WHERE jti = $1",
                &[&jti],
            )?
            .map(|row| token(&row))
            .transpose()
    }

    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO api_keys (id, sha256, subject, tenant, scopes, models, plan, created_at, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &key.id,
                &key.sha256,
                &key.subject,
                &key.tenant,
                &serde_json::to_string(&key.scopes)?,
                &serde_json::to_string(&key.models)?,
                &key.plan,
                &to_i64(key.created_at)?,
                &optional(key.expires_at)?,
                &optional(key.revoked_at)?,
            ],
        )?;
        Ok(())
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT id, sha256, subject, tenant, scopes, models, plan, created_at, expires_at, revoked_at
             FROM api_keys ORDER BY id",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                Ok(ApiKeyRecord {
                    id: get(row, 0)?,
                    sha256: get(row, 1)?,
                    subject: get(row, 2)?,
                    tenant: get(row, 3)?,
                    scopes: serde_json::from_str(&get::<String>(row, 4)?)?,
                    models: serde_json::from_str(&get::<String>(row, 5)?)?,
                    plan: get(row, 6)?,
                    created_at: to_u64(get(row, 7)?)?,
                    expires_at: get::<Option<i64>>(row, 8)?.map(to_u64).transpose()?,
                    revoked_at: get::<Option<i64>>(row, 9)?.map(to_u64).transpose()?,
                })
            })
            .collect()
    }

    fn revoke_api_keys(&self, by: ApiKeySelector<'_>, now: u64) -> Result<usize, StoreError> {
        let now = to_i64(now)?;
        let mut conn = self.conn()?;
        let n = match by {
            ApiKeySelector::Id(id) => conn.execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now],
            )?,
            ApiKeySelector::Subject(subject) => conn.execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE subject = $1 AND revoked_at IS NULL",
                &[&subject, &now],
            )?,
            ApiKeySelector::Tenant(tenant) => conn.execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE tenant = $1 AND revoked_at IS NULL",
                &[&tenant, &now],
            )?,
        };
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn revoke_jti(&self, jti: &str, expires_at: u64, now: u64) -> Result<(), StoreError> {
        // Revoked again with a later expiry: the later one holds.
        self.conn()?.execute(
            "INSERT INTO revoked_jtis (jti, expires_at, revoked_at) VALUES ($1, $2, $3)
             ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(revoked_jtis.expires_at, excluded.expires_at)",
            &[&jti, &to_i64(expires_at)?, &to_i64(now)?],
        )?;
        Ok(())
    }

    fn revoke_subject(&self, subject: &str, now: u64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO revoked_subjects (subject, revoked_at) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING",
            &[&subject, &to_i64(now)?],
        )?;
        Ok(())
    }

    fn unrevoke_subject(&self, subject: &str) -> Result<bool, StoreError> {
        let removed = self.conn()?.execute(
            "DELETE FROM revoked_subjects WHERE subject = $1",
            &[&subject],
        )?;
        Ok(removed > 0)
    }

    fn revoked_jtis(&self, live_after: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT jti, expires_at FROM revoked_jtis WHERE expires_at > $1 ORDER BY jti",
            &[&to_i64(live_after)?],
        )?;
        rows.iter()
            .map(|row| Ok((get(row, 0)?, to_u64(get(row, 1)?)?)))
            .collect()
    }

    fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let before = to_i64(before)?;
        let mut conn = self.conn()?;
        let jtis = conn.execute(
            "DELETE FROM revoked_jtis WHERE expires_at <= $1",
            &[&before],
        )?;
        let tokens = conn.execute(
            "DELETE FROM issued_tokens WHERE expires_at <= $1",
            &[&before],
        )?;
        let streams = conn.execute(
            "DELETE FROM usage_reports WHERE received_at <= $1",
            &[&before.saturating_sub(REPORT_STREAM_KEPT)],
        )?;
        Ok(usize::try_from(jtis + tokens + streams).unwrap_or(usize::MAX))
    }

    fn revoked_subjects(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .conn()?
            .query("SELECT subject FROM revoked_subjects ORDER BY subject", &[])?;
        rows.iter().map(|row| get(row, 0)).collect()
    }

    fn put_provider(&self, provider: &StoredProvider) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO providers (name, document, credential_sealed) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET document = excluded.document, credential_sealed = excluded.credential_sealed",
            &[
                &provider.config.name,
                &serde_json::to_string(&provider.config)?,
                &provider.credential_sealed,
            ],
        )?;
        Ok(())
    }

    fn providers(&self) -> Result<Vec<StoredProvider>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT document, credential_sealed FROM providers ORDER BY name",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                Ok(StoredProvider {
                    config: serde_json::from_str(&get::<String>(row, 0)?)?,
                    credential_sealed: get(row, 1)?,
                })
            })
            .collect()
    }

    fn put_route(&self, route: &RouteConfig) -> Result<(), StoreError> {
        self.put_ordered("routes", "name", &route.name, serde_json::to_string(route)?)
    }

    fn routes(&self) -> Result<Vec<RouteConfig>, StoreError> {
        documents(
            self.conn()?
                .query("SELECT document FROM routes ORDER BY position", &[])?,
        )
    }

    fn put_plan(&self, name: &str, plan: &PlanConfig) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO plans (name, document) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET document = excluded.document",
            &[&name, &serde_json::to_string(plan)?],
        )?;
        Ok(())
    }

    fn plans(&self) -> Result<Vec<(String, PlanConfig)>, StoreError> {
        let rows = self
            .conn()?
            .query("SELECT name, document FROM plans ORDER BY name", &[])?;
        rows.iter()
            .map(|row| Ok((get(row, 0)?, serde_json::from_str(&get::<String>(row, 1)?)?)))
            .collect()
    }

    fn put_price(&self, price: &PriceConfig) -> Result<(), StoreError> {
        self.put_ordered(
            "prices",
            "model",
            &price.model,
            serde_json::to_string(price)?,
        )
    }

    fn prices(&self) -> Result<Vec<PriceConfig>, StoreError> {
        documents(
            self.conn()?
                .query("SELECT document FROM prices ORDER BY position", &[])?,
        )
    }

    fn remove(&self, entry: CatalogEntry<'_>) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let removed = match entry {
            CatalogEntry::Provider(name) => {
                conn.execute("DELETE FROM providers WHERE name = $1", &[&name])?
            }
            CatalogEntry::Route(name) => {
                conn.execute("DELETE FROM routes WHERE name = $1", &[&name])?
            }
            CatalogEntry::Plan(name) => {
                conn.execute("DELETE FROM plans WHERE name = $1", &[&name])?
            }
            CatalogEntry::Price(model) => {
                conn.execute("DELETE FROM prices WHERE model = $1", &[&model])?
            }
        };
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
            "INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&to_i64(at)?, &actor, &action, &target, &detail],
        )?;
        Ok(())
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.conn()?.query(
            "SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT $1",
            &[&limit],
        )?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: get(row, 0)?,
                    at: to_u64(get(row, 1)?)?,
                    actor: get(row, 2)?,
                    action: get(row, 3)?,
                    target: get(row, 4)?,
                    detail: get(row, 5)?,
                })
            })
            .collect()
    }

    fn put_proxy(&self, node: &str, replica: &str, status: &ProxyStatus) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO proxies (node, replica, last_seen, status) VALUES ($1, $2, $3, $4)
             ON CONFLICT (node) DO UPDATE SET replica = excluded.replica,
                 last_seen = excluded.last_seen, status = excluded.status",
            &[
                &node,
                &replica,
                &to_i64(status.last_seen)?,
                &serde_json::to_string(status)?,
            ],
        )?;
        Ok(())
    }

    fn touch_proxies(&self, replica: &str, nodes: &[String], at: u64) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE proxies SET last_seen = GREATEST(last_seen, $3)
             WHERE replica = $1 AND node = ANY($2)",
            &[&replica, &nodes, &to_i64(at)?],
        )?;
        Ok(())
    }

    fn proxies(&self) -> Result<Vec<StoredProxy>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT node, replica, last_seen, status FROM proxies ORDER BY node",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                let mut status: ProxyStatus = serde_json::from_str(&get::<String>(row, 3)?)?;
                status.last_seen = to_u64(get(row, 2)?)?;
                Ok(StoredProxy {
                    node: get(row, 0)?,
                    replica: get(row, 1)?,
                    status,
                })
            })
            .collect()
    }

    fn record_usage(&self, report: &SyncReport, at: u64) -> Result<bool, StoreError> {
        let transaction = self.begin(Isolation::Atomic)?;
        let mut conn = self.conn()?;
        let new = conn.execute(
            "INSERT INTO usage_reports (node, boot, seq, received_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (node, boot) DO UPDATE SET seq = excluded.seq, received_at = excluded.received_at
             WHERE usage_reports.seq < excluded.seq",
            &[
                &report.node,
                &report.boot,
                &to_i64(report.seq)?,
                &to_i64(at)?,
            ],
        )? > 0;
        if new {
            let hour = to_i64(hour_of(at))?;
            for e in &report.entries {
                conn.execute(
                    "INSERT INTO usage (hour, subject, tenant, plan, credential, provider, model,
                         requests, input_tokens, output_tokens, cached_input_tokens, cost_micro_usd)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (hour, subject, tenant, plan, credential, provider, model) DO UPDATE SET
                         requests = usage.requests + excluded.requests,
                         input_tokens = usage.input_tokens + excluded.input_tokens,
                         output_tokens = usage.output_tokens + excluded.output_tokens,
                         cached_input_tokens = usage.cached_input_tokens + excluded.cached_input_tokens,
                         cost_micro_usd = usage.cost_micro_usd + excluded.cost_micro_usd",
                    &[
                        &hour,
                        &e.subject,
                        &or_empty(&e.tenant),
                        &or_empty(&e.plan),
                        &or_empty(&e.credential),
                        &e.provider,
                        &or_empty(&e.model),
                        &to_i64(e.requests)?,
                        &to_i64(e.input_tokens)?,
                        &to_i64(e.output_tokens)?,
                        &to_i64(e.cached_input_tokens)?,
                        &to_i64(e.cost_micro_usd)?,
                    ],
                )?;
            }
        }
        drop(conn);
        transaction.commit()?;
        Ok(new)
    }

    fn prune_usage(&self, before: u64) -> Result<usize, StoreError> {
        let deleted = self
            .conn()?
            .execute("DELETE FROM usage WHERE hour < $1", &[&to_i64(before)?])?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn fleet_rows(&self, key: &str) -> Result<Vec<FleetRow>, StoreError> {
        self.fleet_query(
            "SELECT key, window_start, window_end, node, boot, seq, used, denied, held, granted, share_ppm, reported_at FROM fleet_counters WHERE key = $1 ORDER BY window_start, node, boot",
            &[&key],
        )
    }

    fn put_fleet_row(&self, row: &FleetRow) -> Result<(), StoreError> {
        let FleetRow {
            key,
            window_start,
            window_end,
            node,
            boot,
            seq,
            used,
            denied,
            held,
            granted,
            share_ppm,
            reported_at,
        } = row;
        self.conn()?.execute(
            "INSERT INTO fleet_counters (key, window_start, window_end, node, boot, seq, used, denied, held, granted, share_ppm, reported_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (key, window_start, node, boot) DO UPDATE SET
                 window_end = excluded.window_end, seq = excluded.seq, used = excluded.used,
                 denied = excluded.denied, held = excluded.held, granted = excluded.granted,
                 share_ppm = excluded.share_ppm, reported_at = excluded.reported_at",
            &[
                key,
                &to_i64(*window_start)?,
                &to_i64(*window_end)?,
                node,
                boot,
                &to_i64(*seq)?,
                &to_i64(*used)?,
                &to_i64(*denied)?,
                &to_i64(*held)?,
                &to_i64(*granted)?,
                &to_i64(*share_ppm)?,
                &to_i64(*reported_at)?,
            ],
        )?;
        Ok(())
    }

    fn fleet_keys_since(&self, since_ms: u64, now: u64) -> Result<Vec<String>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT DISTINCT key FROM fleet_counters
             WHERE reported_at >= $1 AND window_end > $2 AND (used > 0 OR denied > 0)
             ORDER BY key",
            &[&to_i64(since_ms)?, &to_i64(now)?],
        )?;
        rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
    }

    fn fleet_current(&self, now: u64) -> Result<Vec<FleetRow>, StoreError> {
        self.fleet_query(
            "SELECT key, window_start, window_end, node, boot, seq, used, denied, held, granted, share_ppm, reported_at FROM fleet_counters WHERE window_end > $1 ORDER BY key, node, boot",
            &[&to_i64(now)?],
        )
    }

    fn prune_fleet(&self, now: u64) -> Result<usize, StoreError> {
        let deleted = self.conn()?.execute(
            "DELETE FROM fleet_counters WHERE 2 * window_end - window_start <= $1",
            &[&to_i64(now)?],
        )?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn record_alert(&self, event: &AlertEvent) -> Result<bool, StoreError> {
        let AlertEvent {
            key,
            window_start,
            threshold,
            body,
            fired_at,
            attempts,
            next_attempt_at,
            delivered_at,
            last_error,
        } = event;
        Ok(self.conn()?.execute(
            "INSERT INTO alert_events (key, window_start, threshold, body, fired_at, attempts, next_attempt_at, delivered_at, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (key, window_start, threshold) DO NOTHING",
            &[
                key,
                &to_i64(*window_start)?,
                &to_i64(*threshold)?,
                body,
                &to_i64(*fired_at)?,
                &to_i64(*attempts)?,
                &to_i64(*next_attempt_at)?,
                &optional(*delivered_at)?,
                last_error,
            ],
        )? > 0)
    }

    fn due_alerts(&self, now: u64, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        self.alert_query(
            "SELECT key, window_start, threshold, body, fired_at, attempts, next_attempt_at, delivered_at, last_error FROM alert_events
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 AND attempts < $2
             ORDER BY fired_at LIMIT $3",
            &[
                &to_i64(now)?,
                &to_i64(ALERT_ATTEMPTS)?,
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
    }

    fn alert_attempted(&self, event: &AlertEvent) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE alert_events SET attempts = $4, next_attempt_at = $5, delivered_at = $6,
                 last_error = $7
             WHERE key = $1 AND window_start = $2 AND threshold = $3",
            &[
                &event.key,
                &to_i64(event.window_start)?,
                &to_i64(event.threshold)?,
                &to_i64(event.attempts)?,
                &to_i64(event.next_attempt_at)?,
                &optional(event.delivered_at)?,
                &event.last_error,
            ],
        )?;
        Ok(())
    }

    fn alert_events(&self, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        self.alert_query(
            "SELECT key, window_start, threshold, body, fired_at, attempts, next_attempt_at, delivered_at, last_error FROM alert_events ORDER BY fired_at DESC, key LIMIT $1",
            &[&i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    fn prune_alerts(&self, before: u64) -> Result<usize, StoreError> {
        let deleted = self.conn()?.execute(
            "DELETE FROM alert_events WHERE fired_at < $1",
            &[&to_i64(before)?],
        )?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn report_streams_since(&self, since: u64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.conn()?.query(
            "SELECT node, boot FROM usage_reports WHERE received_at >= $1 ORDER BY node, boot",
            &[&to_i64(since)?],
        )?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    fn usage_by_hour(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
    ) -> Result<Vec<(u64, UsageSums)>, StoreError> {
        let [s, t, c, m, p] = filter.params();
        let rows = self.conn()?.query(
            ledger::SUMS_BY_HOUR,
            &[
                &to_i64(hour_of(since))?,
                &to_i64(until.min(i64::MAX as u64))?,
                &s,
                &t,
                &c,
                &m,
                &p,
            ],
        )?;
        rows.iter()
            .map(|row| Ok((to_u64(row.try_get(0)?)?, sums_at(row, 1)?)))
            .collect()
    }

    fn usage_by(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
        by: UsageDimension,
        limit: usize,
    ) -> Result<Vec<(String, UsageSums)>, StoreError> {
        let [s, t, c, m, p] = filter.params();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.conn()?.query(
            ledger::sums_by_sql(by),
            &[
                &to_i64(hour_of(since))?,
                &to_i64(until.min(i64::MAX as u64))?,
                &s,
                &t,
                &c,
                &m,
                &p,
                &limit,
            ],
        )?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, sums_at(row, 1)?)))
            .collect()
    }

    fn last_used(&self, credential: &str) -> Result<Option<u64>, StoreError> {
        let row = self.conn()?.query_opt(ledger::LAST_USED, &[&credential])?;
        match row {
            Some(row) => row.try_get::<_, Option<i64>>(0)?.map(to_u64).transpose(),
            None => Ok(None),
        }
    }

    fn recent_tokens(
        &self,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<(IssuedToken, Option<String>)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.conn()?.query(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at, grants FROM issued_tokens
             WHERE expires_at >= $1 ORDER BY issued_at DESC, jti LIMIT $2",
            &[&to_i64(live_after)?, &limit],
        )?;
        rows.iter()
            .map(|row| Ok((token(row)?, row.try_get(6)?)))
            .collect()
    }

    fn set_token_grants(&self, jti: &str, grants: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE issued_tokens SET grants = $2 WHERE jti = $1",
            &[&jti, &grants],
        )?;
        Ok(())
    }

    fn put_ui_session(&self, session: &UiSession) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO ui_sessions (id_sha256, credential, subject, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.id_sha256,
                &session.credential,
                &session.subject,
                &to_i64(session.created_at)?,
                &to_i64(session.expires_at)?,
            ],
        )?;
        Ok(())
    }

    fn ui_session(&self, id_sha256: &str) -> Result<Option<UiSession>, StoreError> {
        let row = self.conn()?.query_opt(
            "SELECT credential, subject, created_at, expires_at FROM ui_sessions
             WHERE id_sha256 = $1",
            &[&id_sha256],
        )?;
        row.map(|row| {
            Ok(UiSession {
                id_sha256: id_sha256.to_string(),
                credential: row.try_get(0)?,
                subject: row.try_get(1)?,
                created_at: to_u64(row.try_get(2)?)?,
                expires_at: to_u64(row.try_get(3)?)?,
            })
        })
        .transpose()
    }

    fn delete_ui_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "DELETE FROM ui_sessions WHERE id_sha256 = $1",
            &[&id_sha256],
        )?;
        Ok(())
    }

    fn prune_ui_sessions(&self, now: u64) -> Result<usize, StoreError> {
        let n = self.conn()?.execute(
            "DELETE FROM ui_sessions WHERE expires_at < $1",
            &[&to_i64(now)?],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn credential_usage(
        &self,
        since: u64,
        until: u64,
        credential: Option<&str>,
    ) -> Result<Vec<CredentialHour>, StoreError> {
        // Statements are prepared once per connection by their text: two fixed texts.
        const EVERY: &str = "SELECT hour, credential, subject, tenant, plan, SUM(requests)::BIGINT,
                    SUM(input_tokens)::BIGINT, SUM(output_tokens)::BIGINT,
                    SUM(cost_micro_usd)::BIGINT
             FROM usage WHERE hour >= $1 AND hour < $2 AND credential <> '' AND $3::TEXT IS NULL
             GROUP BY credential, hour, subject, tenant, plan
             ORDER BY credential, hour, subject, tenant, plan";
        const ONE: &str = "SELECT hour, credential, subject, tenant, plan, SUM(requests)::BIGINT,
                    SUM(input_tokens)::BIGINT, SUM(output_tokens)::BIGINT,
                    SUM(cost_micro_usd)::BIGINT
             FROM usage WHERE hour >= $1 AND hour < $2 AND credential = $3
             GROUP BY credential, hour, subject, tenant, plan
             ORDER BY credential, hour, subject, tenant, plan";
        let until = until.min(i64::MAX as u64);
        // SUM over BIGINT is NUMERIC in Postgres: cast back (a sum past 2^63 errors).
        let rows = self.conn()?.query(
            if credential.is_some() { ONE } else { EVERY },
            &[&to_i64(since)?, &to_i64(until)?, &credential],
        )?;
        rows.iter()
            .map(|row| {
                let count = |i: usize| -> Result<u64, StoreError> {
                    u64::try_from(row.try_get::<_, i64>(i)?)
                        .map_err(|_| StoreError::Range("a negative sum"))
                };
                Ok(CredentialHour {
                    hour: count(0)?,
                    credential: row.try_get(1)?,
                    subject: row.try_get(2)?,
                    tenant: non_empty(row.try_get(3)?),
                    plan: non_empty(row.try_get(4)?),
                    requests: count(5)?,
                    input_tokens: count(6)?,
                    output_tokens: count(7)?,
                    cost_micro_usd: count(8)?,
                })
            })
            .collect()
    }

    fn usage_rows(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
        limit: usize,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let [s, t, c, m, p] = filter.params();
        let rows = self.conn()?.query(
            ledger::LEDGER_ROWS,
            &[
                &to_i64(hour_of(since))?,
                &to_i64(until.min(i64::MAX as u64))?,
                &s,
                &t,
                &c,
                &m,
                &p,
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )?;
        rows.iter()
            .map(|row| {
                let count = |i: usize| -> Result<u64, StoreError> { to_u64(row.try_get(i)?) };
                Ok(UsageRow {
                    hour: count(0)?,
                    entry: UsageEntry {
                        subject: row.try_get(1)?,
                        tenant: non_empty(row.try_get(2)?),
                        plan: non_empty(row.try_get(3)?),
                        credential: non_empty(row.try_get(4)?),
                        provider: row.try_get(5)?,
                        model: non_empty(row.try_get(6)?),
                        requests: count(7)?,
                        input_tokens: count(8)?,
                        output_tokens: count(9)?,
                        cached_input_tokens: count(10)?,
                        cost_micro_usd: count(11)?,
                    },
                })
            })
            .collect()
    }

    fn try_lease(&self, name: &str, holder: &str, now: u64, ttl: u64) -> Result<bool, StoreError> {
        let until = to_i64(now.saturating_add(ttl))?;
        let changed = self.conn()?.execute(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leases.holder = excluded.holder OR leases.until <= $3",
            &[&name, &holder, &to_i64(now)?, &until],
        )?;
        Ok(changed > 0)
    }

    fn backup(&self, _path: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(
            "a Postgres database is backed up with Postgres's own tools, consistent while every replica runs: `pg_dump --format=custom --file=tokenward.dump \"$TOKENWARD_DATABASE_URL\"` (restore: `pg_restore --dbname=<empty database> tokenward.dump`); keep the master key apart from it (docs/operations.md)".into(),
        ))
    }

    fn export(&self) -> Result<Dump, StoreError> {
        self.dump()
    }

    fn import(&self, dump: &Dump) -> Result<(), StoreError> {
        let transaction = self.begin(Isolation::Serialized)?;
        self.restore(dump)?;
        transaction.commit()
    }
}

impl PostgresStore {
    fn fleet_query(
        &self,
        sql: &'static str,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> Result<Vec<FleetRow>, StoreError> {
        let rows = self.conn()?.query(sql, params)?;
        rows.iter()
            .map(|row| {
                let n = |i: usize| -> Result<u64, StoreError> { to_u64(row.try_get(i)?) };
                Ok(FleetRow {
                    key: row.try_get(0)?,
                    window_start: n(1)?,
                    window_end: n(2)?,
                    node: row.try_get(3)?,
                    boot: row.try_get(4)?,
                    seq: n(5)?,
                    used: n(6)?,
                    denied: n(7)?,
                    held: n(8)?,
                    granted: n(9)?,
                    share_ppm: n(10)?,
                    reported_at: n(11)?,
                })
            })
            .collect()
    }
}

impl PostgresStore {
    fn alert_query(
        &self,
        sql: &'static str,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let rows = self.conn()?.query(sql, params)?;
        rows.iter()
            .map(|row| {
                let n = |i: usize| -> Result<u64, StoreError> { to_u64(row.try_get(i)?) };
                let delivered: Option<i64> = row.try_get(7)?;
                Ok(AlertEvent {
                    key: row.try_get(0)?,
                    window_start: n(1)?,
                    threshold: n(2)?,
                    body: row.try_get(3)?,
                    fired_at: n(4)?,
                    attempts: n(5)?,
                    next_attempt_at: n(6)?,
                    delivered_at: delivered.map(to_u64).transpose()?,
                    last_error: row.try_get(8)?,
                })
            })
            .collect()
    }
}

/// The five sums of a ledger row from column `first` on (SUM over no rows is NULL).
fn sums_at(row: &Row, first: usize) -> Result<UsageSums, StoreError> {
    let count = |i: usize| -> Result<u64, StoreError> {
        Ok(row
            .try_get::<_, Option<i64>>(first + i)?
            .unwrap_or(0)
            .max(0) as u64)
    };
    Ok(UsageSums {
        requests: count(0)?,
        input_tokens: count(1)?,
        output_tokens: count(2)?,
        cached_input_tokens: count(3)?,
        cost_micro_usd: count(4)?,
    })
}
