//! The `state` of each "Connect with Stripe" started, stored as its SHA-256 only. A state is
//! taken once: [`take`] marks it used in the same statement that finds it, so two callbacks with
//! one state cannot both pass.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::oauth_states;
use super::{DbConnection, StorageError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_states)]
pub struct OauthStateRow {
    pub state_hash: String,
    pub user_id: String,
    pub session_hash: String,
    pub flow: String,
    pub mode: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

pub fn insert(conn: &mut DbConnection, row: &OauthStateRow) -> Result<(), StorageError> {
    diesel::insert_into(oauth_states::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// What a callback's state turned out to be.
#[derive(Debug)]
pub enum Taken {
    /// Never issued (or long forgotten).
    Unknown,
    /// Issued, and already used by an earlier callback.
    Reused(OauthStateRow),
    /// Issued and unused until now; it is now used, whatever the caller decides about it.
    Fresh(OauthStateRow),
}

/// Marks the state used and says what it was. States older than a day are forgotten first.
pub fn take(
    conn: &mut DbConnection,
    state_hash: &str,
    now: NaiveDateTime,
) -> Result<Taken, StorageError> {
    conn.write_transaction(|conn| {
        diesel::delete(
            oauth_states::table
                .filter(oauth_states::expires_at.lt(now - chrono::Duration::days(1))),
        )
        .execute(conn)?;
        let marked = diesel::update(
            oauth_states::table
                .find(state_hash)
                .filter(oauth_states::used_at.is_null()),
        )
        .set(oauth_states::used_at.eq(now))
        .execute(conn)?;
        let row = oauth_states::table
            .find(state_hash)
            .select(OauthStateRow::as_select())
            .first(conn)
            .optional()?;
        Ok(match (row, marked) {
            (None, _) => Taken::Unknown,
            (Some(row), 1) => Taken::Fresh(row),
            (Some(row), _) => Taken::Reused(row),
        })
    })
}
