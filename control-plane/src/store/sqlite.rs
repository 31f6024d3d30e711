//! The embedded default store: SQLite in WAL mode, migrated from `migrations/`, a small pool
//! of connections so callers on several threads do not wait on one.

mod dump;
mod open;
mod rows;

use rows::*;

use rusqlite::{params, OptionalExtension};
use tokenward_filter::config::{PlanConfig, PriceConfig, RouteConfig};

use super::ledger;
use super::*;
use crate::model::{Alg, ApiKeyRecord, AuditEntry, IssuedToken, SigningKeyRecord};

/// Safe to share between threads: each call takes a connection of its own from a small pool
/// (SQLite in WAL mode lets readers run beside the one writer; `busy_timeout` queues writers).
pub struct SqliteStore {
    pool: super::pool::Pool<rusqlite::Connection>,
    writer: open::WriterGate,
}

impl Store for SqliteStore {
    fn begin(&self, isolation: Isolation) -> Result<Transaction<'_>, StoreError> {
        self.begin_transaction(isolation)
    }

    fn end(&self, commit: bool) -> Result<(), StoreError> {
        self.end_transaction(commit)
    }

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

    fn tokens(&self, live_after: u64) -> Result<Vec<IssuedToken>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at FROM issued_tokens
             WHERE expires_at >= ?1 ORDER BY issued_at DESC, jti",
        )?;
        let rows = statement.query_map(params![to_i64(live_after)?], token_from_row)?;
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

    fn unrevoke_subject(&self, subject: &str) -> Result<bool, StoreError> {
        let removed = self.conn()?.execute(
            "DELETE FROM revoked_subjects WHERE subject = ?1",
            params![subject],
        )?;
        Ok(removed > 0)
    }

    fn revoked_jtis(&self, live_after: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn()?;
        // A revoked token past its expiry is refused for being expired: no need to list it.
        let mut statement = conn.prepare(
            "SELECT jti, expires_at FROM revoked_jtis WHERE expires_at > ?1 ORDER BY jti",
        )?;
        let rows = statement.query_map([to_i64(live_after)?], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        rows.map(|row| {
            let (jti, expires_at) = row?;
            Ok((jti, to_u64(expires_at)?))
        })
        .collect()
    }

    fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let before = to_i64(before)?;
        let conn = self.conn()?;
        let jtis = conn.execute("DELETE FROM revoked_jtis WHERE expires_at <= ?1", [before])?;
        let tokens = conn.execute("DELETE FROM issued_tokens WHERE expires_at <= ?1", [before])?;
        let streams = conn.execute(
            "DELETE FROM usage_reports WHERE received_at <= ?1",
            [before.saturating_sub(REPORT_STREAM_KEPT)],
        )?;
        Ok(jtis + tokens + streams)
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

    fn put_proxy(&self, node: &str, replica: &str, status: &ProxyStatus) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO proxies (node, replica, last_seen, status) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (node) DO UPDATE SET replica = excluded.replica,
                 last_seen = excluded.last_seen, status = excluded.status",
            params![
                node,
                replica,
                to_i64(status.last_seen)?,
                serde_json::to_string(status)?
            ],
        )?;
        Ok(())
    }

    fn touch_proxies(&self, replica: &str, nodes: &[String], at: u64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "UPDATE proxies SET last_seen = MAX(last_seen, ?3) WHERE node = ?1 AND replica = ?2",
        )?;
        for node in nodes {
            statement.execute(params![node, replica, to_i64(at)?])?;
        }
        Ok(())
    }

    fn proxies(&self) -> Result<Vec<StoredProxy>, StoreError> {
        let conn = self.conn()?;
        let mut statement =
            conn.prepare("SELECT node, replica, last_seen, status FROM proxies ORDER BY node")?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (node, replica, last_seen, status) = row?;
            let mut status: ProxyStatus = serde_json::from_str(&status)?;
            status.last_seen = to_u64(last_seen)?;
            Ok(StoredProxy {
                node,
                replica,
                status,
            })
        })
        .collect()
    }

    fn record_usage(&self, report: &SyncReport, at: u64) -> Result<bool, StoreError> {
        let transaction = self.begin(Isolation::Atomic)?;
        let conn = self.conn()?;
        let new = conn.execute(
            "INSERT INTO usage_reports (node, boot, seq, received_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (node, boot) DO UPDATE SET seq = excluded.seq, received_at = excluded.received_at
             WHERE usage_reports.seq < excluded.seq",
            params![report.node, report.boot, to_i64(report.seq)?, to_i64(at)?],
        )? > 0;
        if new {
            let hour = to_i64(hour_of(at))?;
            for e in &report.entries {
                conn.execute(
                    "INSERT INTO usage (hour, subject, tenant, plan, credential, provider, model,
                         requests, input_tokens, output_tokens, cached_input_tokens, cost_micro_usd)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (hour, subject, tenant, plan, credential, provider, model) DO UPDATE SET
                         requests = requests + excluded.requests,
                         input_tokens = input_tokens + excluded.input_tokens,
                         output_tokens = output_tokens + excluded.output_tokens,
                         cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
                         cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd",
                    params![
                        hour,
                        e.subject,
                        or_empty(&e.tenant),
                        or_empty(&e.plan),
                        or_empty(&e.credential),
                        e.provider,
                        or_empty(&e.model),
                        to_i64(e.requests)?,
                        to_i64(e.input_tokens)?,
                        to_i64(e.output_tokens)?,
                        to_i64(e.cached_input_tokens)?,
                        to_i64(e.cost_micro_usd)?,
                    ],
                )?;
            }
        }
        drop(conn);
        transaction.commit()?;
        Ok(new)
    }

    fn prune_usage(&self, before: u64) -> Result<usize, StoreError> {
        Ok(self
            .conn()?
            .execute("DELETE FROM usage WHERE hour < ?1", [to_i64(before)?])?)
    }

    fn fleet_rows(&self, key: &str) -> Result<Vec<FleetRow>, StoreError> {
        self.fleet_query(
            "SELECT key, window_start, window_end, node, boot, seq, used, denied, held, granted, share_ppm, reported_at FROM fleet_counters WHERE key = ?1 ORDER BY window_start, node, boot",
            params![key],
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
            "INSERT OR REPLACE INTO fleet_counters (key, window_start, window_end, node, boot, seq, used, denied, held, granted, share_ppm, reported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                key,
                to_i64(*window_start)?,
                to_i64(*window_end)?,
                node,
                boot,
                to_i64(*seq)?,
                to_i64(*used)?,
                to_i64(*denied)?,
                to_i64(*held)?,
                to_i64(*granted)?,
                to_i64(*share_ppm)?,
                to_i64(*reported_at)?,
            ],
        )?;
        Ok(())
    }

    fn fleet_keys_since(&self, since_ms: u64, now: u64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT DISTINCT key FROM fleet_counters
             WHERE reported_at >= ?1 AND window_end > ?2 AND (used > 0 OR denied > 0)
             ORDER BY key",
        )?;
        let keys = statement
            .query_map(params![to_i64(since_ms)?, to_i64(now)?], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(keys)
    }

    fn fleet_current(&self, now: u64) -> Result<Vec<FleetRow>, StoreError> {
        self.fleet_query(
            "SELECT key, window_start, window_end, node, boot, seq, used, denied, held, granted, share_ppm, reported_at FROM fleet_counters WHERE window_end > ?1 ORDER BY key, node, boot",
            params![to_i64(now)?],
        )
    }

    fn prune_fleet(&self, now: u64) -> Result<usize, StoreError> {
        Ok(self.conn()?.execute(
            "DELETE FROM fleet_counters WHERE 2 * window_end - window_start <= ?1",
            [to_i64(now)?],
        )?)
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
            "INSERT INTO alert_events (key, window_start, threshold, body, fired_at, attempts, next_attempt_at, delivered_at, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (key, window_start, threshold) DO NOTHING",
            params![
                key,
                to_i64(*window_start)?,
                to_i64(*threshold)?,
                body,
                to_i64(*fired_at)?,
                to_i64(*attempts)?,
                to_i64(*next_attempt_at)?,
                optional(*delivered_at)?,
                last_error,
            ],
        )? > 0)
    }

    fn due_alerts(&self, now: u64, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        self.alert_query(
            "SELECT key, window_start, threshold, body, fired_at, attempts, next_attempt_at, delivered_at, last_error FROM alert_events
             WHERE delivered_at IS NULL AND next_attempt_at <= ?1 AND attempts < ?2
             ORDER BY fired_at LIMIT ?3",
            params![
                to_i64(now)?,
                to_i64(ALERT_ATTEMPTS)?,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    fn alert_attempted(&self, event: &AlertEvent) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE alert_events SET attempts = ?4, next_attempt_at = ?5, delivered_at = ?6,
                 last_error = ?7
             WHERE key = ?1 AND window_start = ?2 AND threshold = ?3",
            params![
                event.key,
                to_i64(event.window_start)?,
                to_i64(event.threshold)?,
                to_i64(event.attempts)?,
                to_i64(event.next_attempt_at)?,
                optional(event.delivered_at)?,
                event.last_error,
            ],
        )?;
        Ok(())
    }

    fn alert_events(&self, limit: usize) -> Result<Vec<AlertEvent>, StoreError> {
        self.alert_query(
            "SELECT key, window_start, threshold, body, fired_at, attempts, next_attempt_at, delivered_at, last_error FROM alert_events ORDER BY fired_at DESC, key LIMIT ?1",
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    fn prune_alerts(&self, before: u64) -> Result<usize, StoreError> {
        Ok(self.conn()?.execute(
            "DELETE FROM alert_events WHERE fired_at < ?1",
            [to_i64(before)?],
        )?)
    }

    fn report_streams_since(&self, since: u64) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT node, boot FROM usage_reports WHERE received_at >= ?1 ORDER BY node, boot",
        )?;
        let streams = statement
            .query_map([to_i64(since)?], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<Vec<(String, String)>, _>>()?;
        Ok(streams)
    }

    fn usage_by_hour(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
    ) -> Result<Vec<(u64, UsageSums)>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare_cached(ledger::SUMS_BY_HOUR)?;
        let [s, t, c, m, p] = filter.params();
        let rows = statement.query_map(
            params![
                to_i64(hour_of(since))?,
                to_i64(until.min(i64::MAX as u64))?,
                s,
                t,
                c,
                m,
                p
            ],
            |row| Ok((row.get::<_, i64>(0)?, sums_at(row, 1)?)),
        )?;
        rows.map(|row| {
            let (hour, sums) = row?;
            Ok((to_u64(hour)?, sums))
        })
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
        let conn = self.conn()?;
        let mut statement = conn.prepare_cached(ledger::sums_by_sql(by))?;
        let [s, t, c, m, p] = filter.params();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(
            params![
                to_i64(hour_of(since))?,
                to_i64(until.min(i64::MAX as u64))?,
                s,
                t,
                c,
                m,
                p,
                limit
            ],
            |row| Ok((row.get::<_, String>(0)?, sums_at(row, 1)?)),
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn last_used(&self, credential: &str) -> Result<Option<u64>, StoreError> {
        let hour: Option<i64> = self
            .conn()?
            .prepare_cached(ledger::LAST_USED)?
            .query_row([credential], |row| row.get(0))?;
        hour.map(to_u64).transpose()
    }

    fn recent_tokens(
        &self,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<(IssuedToken, Option<String>)>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(
            "SELECT jti, subject, tenant, kid, issued_at, expires_at, grants FROM issued_tokens
             WHERE expires_at >= ?1 ORDER BY issued_at DESC, jti LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![to_i64(live_after)?, limit], |row| {
            Ok((
                (
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ),
                row.get::<_, Option<String>>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (token, grants) = row?;
            Ok((issued(token)?, grants))
        })
        .collect()
    }

    fn set_token_grants(&self, jti: &str, grants: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE issued_tokens SET grants = ?2 WHERE jti = ?1",
            params![jti, grants],
        )?;
        Ok(())
    }

    fn put_ui_session(&self, session: &UiSession) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO ui_sessions (id_sha256, credential, subject, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                session.id_sha256,
                session.credential,
                session.subject,
                to_i64(session.created_at)?,
                to_i64(session.expires_at)?
            ],
        )?;
        Ok(())
    }

    fn ui_session(&self, id_sha256: &str) -> Result<Option<UiSession>, StoreError> {
        let row = self
            .conn()?
            .prepare_cached(
                "SELECT credential, subject, created_at, expires_at FROM ui_sessions
                 WHERE id_sha256 = ?1",
            )?
            .query_row([id_sha256], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .optional()?;
        row.map(|(credential, subject, created_at, expires_at)| {
            Ok(UiSession {
                id_sha256: id_sha256.to_string(),
                credential,
                subject,
                created_at: to_u64(created_at)?,
                expires_at: to_u64(expires_at)?,
            })
        })
        .transpose()
    }

    fn delete_ui_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM ui_sessions WHERE id_sha256 = ?1", [id_sha256])?;
        Ok(())
    }

    fn prune_ui_sessions(&self, now: u64) -> Result<usize, StoreError> {
        Ok(self.conn()?.execute(
            "DELETE FROM ui_sessions WHERE expires_at < ?1",
            [to_i64(now)?],
        )?)
    }

    fn usage_rows(
        &self,
        since: u64,
        until: u64,
        filter: &UsageFilter,
        limit: usize,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare_cached(ledger::LEDGER_ROWS)?;
        let [s, t, c, m, p] = filter.params();
        let rows = statement.query_map(
            params![
                to_i64(hour_of(since))?,
                to_i64(until.min(i64::MAX as u64))?,
                s,
                t,
                c,
                m,
                p,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    UsageEntry {
                        subject: row.get(1)?,
                        tenant: non_empty(row.get(2)?),
                        plan: non_empty(row.get(3)?),
                        credential: non_empty(row.get(4)?),
                        provider: row.get(5)?,
                        model: non_empty(row.get(6)?),
                        requests: row.get::<_, i64>(7)? as u64,
                        input_tokens: row.get::<_, i64>(8)? as u64,
                        output_tokens: row.get::<_, i64>(9)? as u64,
                        cached_input_tokens: row.get::<_, i64>(10)? as u64,
                        cost_micro_usd: row.get::<_, i64>(11)? as u64,
                    },
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (hour, entry) = row?;
            out.push(UsageRow {
                hour: to_u64(hour)?,
                entry,
            });
        }
        Ok(out)
    }

    fn credential_usage(
        &self,
        since: u64,
        until: u64,
        credential: Option<&str>,
    ) -> Result<Vec<CredentialHour>, StoreError> {
        // Two statements rather than `(?3 IS NULL OR credential = ?3)`: SQLite plans that
        // form as a scan, and one credential's read must take the index.
        let narrowed = if credential.is_some() {
            "AND credential = ?3"
        } else {
            "AND credential <> '' AND ?3 IS NULL"
        };
        let conn = self.conn()?;
        let mut statement = conn.prepare(&format!(
            "SELECT hour, credential, subject, tenant, plan, SUM(requests), SUM(input_tokens),
                    SUM(output_tokens), SUM(cost_micro_usd)
             FROM usage WHERE hour >= ?1 AND hour < ?2 {narrowed}
             GROUP BY credential, hour, subject, tenant, plan
             ORDER BY credential, hour, subject, tenant, plan"
        ))?;
        let until = until.min(i64::MAX as u64);
        let rows =
            statement.query_map(params![to_i64(since)?, to_i64(until)?, credential], |row| {
                Ok((
                    [
                        row.get::<_, i64>(0)?,
                        row.get(5)?,
                        row.get(6)?,
                        row.get(7)?,
                        row.get(8)?,
                    ],
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?;
        let mut out = Vec::new();
        for row in rows {
            let (numbers, credential, subject, tenant, plan) = row?;
            let [hour, requests, input_tokens, output_tokens, cost_micro_usd] =
                numbers.map(|n| u64::try_from(n).map_err(|_| StoreError::Range("a negative sum")));
            out.push(CredentialHour {
                hour: hour?,
                credential,
                subject,
                tenant: non_empty(tenant),
                plan: non_empty(plan),
                requests: requests?,
                input_tokens: input_tokens?,
                output_tokens: output_tokens?,
                cost_micro_usd: cost_micro_usd?,
            });
        }
        Ok(out)
    }

    fn try_lease(&self, name: &str, holder: &str, now: u64, ttl: u64) -> Result<bool, StoreError> {
        let until = to_i64(now.saturating_add(ttl))?;
        let changed = self.conn()?.execute(
            "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leases.holder = excluded.holder OR leases.until <= ?3",
            params![name, holder, to_i64(now)?, until],
        )?;
        Ok(changed > 0)
    }

    fn backup(&self, path: &std::path::Path) -> Result<(), StoreError> {
        self.copy_to(path)
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

impl SqliteStore {
    fn fleet_query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<FleetRow>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(sql)?;
        let rows = statement.query_map(params, |row| {
            let n = |i: usize| row.get::<_, i64>(i);
            Ok((
                row.get::<_, String>(0)?,
                [n(1)?, n(2)?],
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                [n(5)?, n(6)?, n(7)?, n(8)?, n(9)?, n(10)?, n(11)?],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, [window_start, window_end], node, boot, counts) = row?;
            let [seq, used, denied, held, granted, share_ppm, reported_at] = counts;
            out.push(FleetRow {
                key,
                window_start: to_u64(window_start)?,
                window_end: to_u64(window_end)?,
                node,
                boot,
                seq: to_u64(seq)?,
                used: to_u64(used)?,
                denied: to_u64(denied)?,
                held: to_u64(held)?,
                granted: to_u64(granted)?,
                share_ppm: to_u64(share_ppm)?,
                reported_at: to_u64(reported_at)?,
            });
        }
        Ok(out)
    }
}

impl SqliteStore {
    fn alert_query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<AlertEvent>, StoreError> {
        let conn = self.conn()?;
        let mut statement = conn.prepare(sql)?;
        let rows = statement.query_map(params, |row| {
            Ok((
                row.get::<_, String>(0)?,
                [row.get::<_, i64>(1)?, row.get::<_, i64>(2)?],
                row.get::<_, String>(3)?,
                [
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                ],
                row.get::<_, Option<i64>>(7)?,
                row.get::<_, String>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                key,
                [window_start, threshold],
                body,
                [fired_at, attempts, next],
                delivered,
                error,
            ) = row?;
            out.push(AlertEvent {
                key,
                window_start: to_u64(window_start)?,
                threshold: to_u64(threshold)?,
                body,
                fired_at: to_u64(fired_at)?,
                attempts: to_u64(attempts)?,
                next_attempt_at: to_u64(next)?,
                delivered_at: delivered.map(to_u64).transpose()?,
                last_error: error,
            });
        }
        Ok(out)
    }
}

/// The five sums of a ledger row from column `first` on.
fn sums_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<UsageSums> {
    // SUM over no rows is NULL; a sum past i64 is refused by SQLite before it gets here.
    let count = |i: usize| -> rusqlite::Result<u64> {
        Ok(row.get::<_, Option<i64>>(first + i)?.unwrap_or(0).max(0) as u64)
    };
    Ok(UsageSums {
        requests: count(0)?,
        input_tokens: count(1)?,
        output_tokens: count(2)?,
        cached_input_tokens: count(3)?,
        cost_micro_usd: count(4)?,
    })
}
