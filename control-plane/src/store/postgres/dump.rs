//! The Postgres store as a `Dump`, and a `Dump` written into an empty one.

use super::*;
use crate::store::dump::RawRows;

impl PostgresStore {
    pub(super) fn dump(&self) -> Result<Dump, StoreError> {
        // One transaction at REPEATABLE READ: every table as of one moment.
        let transaction = self.begin(Isolation::Atomic)?;
        let mut conn = self.conn()?;
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", &[])?;
        let settings = conn
            .query("SELECT name, value FROM settings ORDER BY name", &[])?
            .iter()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
            .collect::<Result<_, StoreError>>()?;
        let revoked_keys = conn
            .query("SELECT kid, revoked_at FROM revoked_keys ORDER BY kid", &[])?
            .iter()
            .map(|row| Ok((get(row, 0)?, to_u64(get(row, 1)?)?)))
            .collect::<Result<_, StoreError>>()?;
        let revoked_subjects = conn
            .query(
                "SELECT subject, revoked_at FROM revoked_subjects ORDER BY subject",
                &[],
            )?
            .iter()
            .map(|row| Ok((get(row, 0)?, to_u64(get(row, 1)?)?)))
            .collect::<Result<_, StoreError>>()?;
        let tokens = conn
            .query(
                "SELECT jti, subject, tenant, kid, issued_at, expires_at, api_key_id
                 FROM issued_tokens ORDER BY issued_at, jti",
                &[],
            )?
            .iter()
            .map(|row| Ok((token(row)?, get(row, 6)?)))
            .collect::<Result<_, StoreError>>()?;
        let revoked_jtis = conn
            .query(
                "SELECT jti, expires_at, revoked_at FROM revoked_jtis ORDER BY jti",
                &[],
            )?
            .iter()
            .map(|row| Ok((get(row, 0)?, to_u64(get(row, 1)?)?, to_u64(get(row, 2)?)?)))
            .collect::<Result<_, StoreError>>()?;
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
        let mut conn = self.conn()?;
        let used: i64 = get(
            &conn
                .query_opt(
                    "SELECT (SELECT COUNT(*) FROM settings) + (SELECT COUNT(*) FROM signing_keys)",
                    &[],
                )?
                .ok_or(StoreError::Range("no count"))?,
            0,
        )?;
        if used > 0 {
            return Err(StoreError::Range(
                "the target store is not empty: it was initialised already",
            ));
        }
        for (kid, at) in &dump.revoked_keys {
            conn.execute(
                "INSERT INTO revoked_keys (kid, revoked_at) VALUES ($1, $2)",
                &[kid, &to_i64(*at)?],
            )?;
        }
        for (subject, at) in &dump.revoked_subjects {
            conn.execute(
                "INSERT INTO revoked_subjects (subject, revoked_at) VALUES ($1, $2)",
                &[subject, &to_i64(*at)?],
            )?;
        }
        for (jti, expires_at, revoked_at) in &dump.revoked_jtis {
            conn.execute(
                "INSERT INTO revoked_jtis (jti, expires_at, revoked_at) VALUES ($1, $2, $3)",
                &[jti, &to_i64(*expires_at)?, &to_i64(*revoked_at)?],
            )?;
        }
        for entry in &dump.audit {
            conn.execute(
                "INSERT INTO audit (id, at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&entry.id, &to_i64(entry.at)?, &entry.actor, &entry.action, &entry.target, &entry.detail],
            )?;
        }
        // The next audit id follows the last one copied.
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('audit', 'id'), GREATEST((SELECT MAX(id) FROM audit), 1))",
            &[],
        )?;
        drop(conn);
        dump.write_through(self)
    }
}
