//! Queries on `connection_drafts`: keys held between the *Connect Stripe* form's Validate and
//! Save, sealed before they arrive here, each row owned by one session and short-lived.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::connection_drafts;
use super::{DbConnection, StorageError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = connection_drafts)]
pub struct DraftRow {
    pub id: String,
    /// The stored hash of the session that made it: no other session may read it.
    pub session_hash: String,
    pub publishable_key: Option<String>,
    pub secret_key_enc: Option<String>,
    pub webhook_secret_enc: Option<String>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Keeps a draft, replacing `replaces` (the same session's previous one) and dropping every
/// expired draft, so the table holds only the last few minutes' drafts.
pub fn insert(
    conn: &mut DbConnection,
    row: &DraftRow,
    replaces: Option<&str>,
) -> Result<(), StorageError> {
    diesel::delete(
        connection_drafts::table.filter(connection_drafts::expires_at.le(row.created_at)),
    )
    .execute(conn)?;
    if let Some(old) = replaces {
        diesel::delete(
            connection_drafts::table
                .filter(connection_drafts::id.eq(old))
                .filter(connection_drafts::session_hash.eq(&row.session_hash)),
        )
        .execute(conn)?;
    }
    diesel::insert_into(connection_drafts::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The session's draft `id`, unless it expired.
pub fn find(
    conn: &mut DbConnection,
    id: &str,
    session_hash: &str,
    now: NaiveDateTime,
) -> Result<Option<DraftRow>, StorageError> {
    Ok(connection_drafts::table
        .filter(connection_drafts::id.eq(id))
        .filter(connection_drafts::session_hash.eq(session_hash))
        .filter(connection_drafts::expires_at.gt(now))
        .select(DraftRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn delete(conn: &mut DbConnection, id: &str) -> Result<(), StorageError> {
    diesel::delete(connection_drafts::table.filter(connection_drafts::id.eq(id))).execute(conn)?;
    Ok(())
}
