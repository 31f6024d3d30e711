//! The SQLite store as a `Dump`, and a `Dump` written into an empty one.

use rusqlite::params;

use super::*;
use crate::store::dump::RawRows;

impl SqliteStore {
    pub(super) fn dump(&self) -> Result<Dump, StoreError> {
        // One read transaction: every table as of one moment.
        let transaction = self.begin(Isolation::Atomic)?;
        let conn = self.conn()?;
        let pairs = |sql: &str| -> Result<Vec<(String, i64)>, StoreError> {
            let mut statement = conn.prepare(sql)?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let settings = {
            let mut statement = conn.prepare("SELECT name, value FROM settings ORDER BY name")?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<Result<Vec<(String, String)>, _>>()?
        };
        let revoked_keys = pairs("SELECT kid, revoked_at FROM revoked_keys ORDER BY kid")?
            .into_iter()
            .map(|(k, t)| Ok((k, to_u64(t)?)))
            .collect::<Result<_, StoreError>>()?;
        let revoked_subjects =
            pairs("SELECT subject, revoked_at FROM revoked_subjects ORDER BY subject")?
                .into_iter()
                .map(|(s, t)| Ok((s, to_u64(t)?)))
                .collect::<Result<_, StoreError>>()?;
        let tokens = {
            let mut statement = conn.prepare(
                "SELECT jti, subject, tenant, kid, issued_at, expires_at, api_key_id
                 FROM issued_tokens ORDER BY issued_at, jti",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((token_from_row(row)?, row.get::<_, Option<String>>(6)?))
            })?;
            rows.map(|row| {
                let (token, api_key) = row?;
                Ok((issued(token)?, api_key))
            })
            .collect::<Result<_, StoreError>>()?
        };
        let revoked_jtis = {
            let mut statement =
                conn.prepare("SELECT jti, expires_at, revoked_at FROM revoked_jtis ORDER BY jti")?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (jti, expires_at, revoked_at) = row?;
                Ok((jti, to_u64(expires_at)?, to_u64(revoked_at)?))
            })
            .collect::<Result<_, StoreError>>()?
        };
        drop(conn);
        let dump = Dump::of(
            self,
            RawRows {
                settings,
                revoked_keys,
                tokens,
                revoked_jtis,
                revoked_subjects,
            },
        )?;
        transaction.commit()?;
        Ok(dump)
    }

    /// Inside the caller's transaction.
    pub(super) fn restore(&self, dump: &Dump) -> Result<(), StoreError> {
        let used: i64 = self.conn()?.query_row(
            "SELECT (SELECT COUNT(*) FROM settings) + (SELECT COUNT(*) FROM signing_keys)",
            [],
            |row| row.get(0),
        )?;
        if used > 0 {
            return Err(StoreError::Range(
                "the target store is not empty: it was initialised already",
            ));
        }
        let conn = self.conn()?;
        for (kid, at) in &dump.revoked_keys {
            conn.execute(
                "INSERT INTO revoked_keys (kid, revoked_at) VALUES (?1, ?2)",
                params![kid, to_i64(*at)?],
            )?;
        }
        for (subject, at) in &dump.revoked_subjects {
            conn.execute(
                "INSERT INTO revoked_subjects (subject, revoked_at) VALUES (?1, ?2)",
                params![subject, to_i64(*at)?],
            )?;
        }
        for (jti, expires_at, revoked_at) in &dump.revoked_jtis {
            conn.execute(
                "INSERT INTO revoked_jtis (jti, expires_at, revoked_at) VALUES (?1, ?2, ?3)",
                params![jti, to_i64(*expires_at)?, to_i64(*revoked_at)?],
            )?;
        }
        for entry in &dump.audit {
            conn.execute(
                "INSERT INTO audit (id, at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![entry.id, to_i64(entry.at)?, entry.actor, entry.action, entry.target, entry.detail],
            )?;
        }
        drop(conn);
        dump.write_through(self)
    }
}
