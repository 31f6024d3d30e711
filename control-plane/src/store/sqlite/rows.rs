//! Rows as SQLite returns them, the conversions of times and documents, and the ordered
//! document tables of the catalog.

use rusqlite::{params, Connection};

use crate::model::IssuedToken;
use crate::store::StoreError;

pub(super) use crate::store::{optional, to_i64, to_u64};

/// A signing key row as SQLite returns it, converted by `signing_keys`.
pub(super) type KeyRow = (
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
pub(super) type TokenRow = (String, String, Option<String>, String, i64, i64);

pub(super) fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
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

pub(super) fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

pub(super) fn issued(
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

/// Adds a document last in `table`'s order, or replaces the one with the same key in place.
/// `table` and `key_column` are this module's constants, never input.
pub(super) fn put_ordered(
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

pub(super) fn documents<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    rows.map(|row| Ok(serde_json::from_str(&row?)?)).collect()
}
