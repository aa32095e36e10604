//! Queries on `api_tokens` and `audit_log`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{api_tokens, audit_log};
use super::{DbConnection, StorageError};
use crate::domain::{ids, time};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub token_hash: String,
    pub token_hint: String,
    pub created_by: Option<String>,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

pub fn insert(conn: &mut DbConnection, row: &TokenRow) -> Result<(), StorageError> {
    diesel::insert_into(api_tokens::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<TokenRow>, StorageError> {
    Ok(api_tokens::table
        .select(TokenRow::as_select())
        .order((api_tokens::created_at.asc(), api_tokens::id.asc()))
        .load(conn)?)
}

/// Tokens in the order they were made; `after` is the previous page's last id.
pub fn page(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<TokenRow>, StorageError> {
    let mut select = api_tokens::table
        .select(TokenRow::as_select())
        .order(api_tokens::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        select = select.filter(api_tokens::id.gt(after.to_owned()));
    }
    Ok(select.load(conn)?)
}

pub fn count(conn: &mut DbConnection) -> Result<i64, StorageError> {
    Ok(api_tokens::table.count().get_result(conn)?)
}

pub fn find_active_by_hash(
    conn: &mut DbConnection,
    hash: &str,
) -> Result<Option<TokenRow>, StorageError> {
    Ok(api_tokens::table
        .filter(api_tokens::token_hash.eq(hash))
        .filter(api_tokens::revoked_at.is_null())
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_id_or_name(
    conn: &mut DbConnection,
    key: &str,
) -> Result<Option<TokenRow>, StorageError> {
    Ok(api_tokens::table
        .filter(api_tokens::id.eq(key).or(api_tokens::name.eq(key)))
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?)
}

/// Marks the token revoked; revoking twice keeps the first time.
pub fn revoke(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> Result<(), StorageError> {
    diesel::update(
        api_tokens::table
            .filter(api_tokens::id.eq(id))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(at))
    .execute(conn)?;
    Ok(())
}

/// Records use at most once a minute per token, so reads do not turn into a write each.
pub fn touch_last_used(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    let stale_before = at - chrono::Duration::minutes(1);
    diesel::update(
        api_tokens::table.filter(api_tokens::id.eq(id)).filter(
            api_tokens::last_used_at
                .is_null()
                .or(api_tokens::last_used_at.lt(stale_before)),
        ),
    )
    .set(api_tokens::last_used_at.eq(at))
    .execute(conn)?;
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: String,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

/// Writes one audit entry: who (`actor`, a token name or `cli`) did what to which object.
pub fn audit(
    conn: &mut DbConnection,
    actor: &str,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> Result<(), StorageError> {
    let row = AuditRow {
        id: ids::new_id("aud"),
        at: time::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        details: details.to_string(),
    };
    diesel::insert_into(audit_log::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

pub fn audit_entries(
    conn: &mut DbConnection,
    subject: &str,
) -> Result<Vec<AuditRow>, StorageError> {
    Ok(audit_log::table
        .filter(audit_log::subject.eq(subject))
        .select(AuditRow::as_select())
        .order(audit_log::at.asc())
        .load(conn)?)
}

/// What the audit log page filters by: exact actor and action.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// A page of the audit log, newest first by id (ids are time-ordered: see `ids::new_id`); `after`
/// is the previous page's last id.
pub fn audit_page(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRow>, StorageError> {
    let mut query = audit_log::table
        .select(AuditRow::as_select())
        .order(audit_log::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_log::actor.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(after) = after {
        query = query.filter(audit_log::id.lt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// Every action the log holds, for the page's filter.
pub fn audit_actions(conn: &mut DbConnection) -> Result<Vec<String>, StorageError> {
    Ok(audit_log::table
        .select(audit_log::action)
        .distinct()
        .order(audit_log::action.asc())
        .load(conn)?)
}
