//! Queries on `users`, `web_sessions` and `sign_in_failures`: the people who use the web UI.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{sidebar_keys, sign_in_failures, users, web_sessions};
use super::{DbConnection, StorageError};
use crate::domain::ids;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    /// Stored normalized (lower case), so sign-in matches without case.
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub password_changed_at: NaiveDateTime,
    pub last_sign_in_at: Option<NaiveDateTime>,
    pub disabled_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = web_sessions)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    /// The absolute end, whatever the activity.
    pub expires_at: NaiveDateTime,
}

pub fn insert(conn: &mut DbConnection, row: &UserRow) -> Result<(), StorageError> {
    diesel::insert_into(users::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn count(conn: &mut DbConnection) -> Result<i64, StorageError> {
    Ok(users::table.count().get_result(conn)?)
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<UserRow>, StorageError> {
    Ok(users::table
        .select(UserRow::as_select())
        .order((users::email.asc(), users::id.asc()))
        .load(conn)?)
}

pub fn find_by_email(
    conn: &mut DbConnection,
    email: &str,
) -> Result<Option<UserRow>, StorageError> {
    Ok(users::table
        .filter(users::email.eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<UserRow>, StorageError> {
    Ok(users::table
        .filter(users::id.eq(id))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn set_password(
    conn: &mut DbConnection,
    id: &str,
    hash: &str,
    at: NaiveDateTime,
) -> Result<usize, StorageError> {
    Ok(diesel::update(users::table.filter(users::id.eq(id)))
        .set((
            users::password_hash.eq(hash),
            users::password_changed_at.eq(at),
        ))
        .execute(conn)?)
}

pub fn set_disabled(
    conn: &mut DbConnection,
    id: &str,
    at: Option<NaiveDateTime>,
) -> Result<usize, StorageError> {
    Ok(diesel::update(users::table.filter(users::id.eq(id)))
        .set(users::disabled_at.eq(at))
        .execute(conn)?)
}

pub fn set_role(conn: &mut DbConnection, id: &str, role: &str) -> Result<usize, StorageError> {
    Ok(diesel::update(users::table.filter(users::id.eq(id)))
        .set(users::role.eq(role))
        .execute(conn)?)
}

pub fn touch_sign_in(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(users::table.filter(users::id.eq(id)))
        .set(users::last_sign_in_at.eq(at))
        .execute(conn)?;
    Ok(())
}

pub fn insert_session(conn: &mut DbConnection, row: &SessionRow) -> Result<(), StorageError> {
    diesel::insert_into(web_sessions::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The session and its user, by the session id's hash.
pub fn find_session(
    conn: &mut DbConnection,
    id_hash: &str,
) -> Result<Option<(SessionRow, UserRow)>, StorageError> {
    Ok(web_sessions::table
        .inner_join(users::table)
        .filter(web_sessions::id_hash.eq(id_hash))
        .select((SessionRow::as_select(), UserRow::as_select()))
        .first(conn)
        .optional()?)
}

/// Records activity at most once a minute per session, so page views do not each write.
pub fn touch_session(
    conn: &mut DbConnection,
    id_hash: &str,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    let stale_before = at - chrono::Duration::minutes(1);
    diesel::update(
        web_sessions::table
            .filter(web_sessions::id_hash.eq(id_hash))
            .filter(web_sessions::last_seen_at.lt(stale_before)),
    )
    .set(web_sessions::last_seen_at.eq(at))
    .execute(conn)?;
    Ok(())
}

pub fn delete_session(conn: &mut DbConnection, id_hash: &str) -> Result<(), StorageError> {
    diesel::delete(web_sessions::table.filter(web_sessions::id_hash.eq(id_hash))).execute(conn)?;
    Ok(())
}

/// Ends every session of a user ("sign out everywhere", a new password, a disabled account).
pub fn delete_sessions_of(conn: &mut DbConnection, user_id: &str) -> Result<usize, StorageError> {
    Ok(
        diesel::delete(web_sessions::table.filter(web_sessions::user_id.eq(user_id)))
            .execute(conn)?,
    )
}

/// Removes sessions past their absolute end or idle since `idle_before`.
pub fn delete_expired_sessions(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    idle_before: NaiveDateTime,
) -> Result<usize, StorageError> {
    Ok(diesel::delete(
        web_sessions::table.filter(
            web_sessions::expires_at
                .le(now)
                .or(web_sessions::last_seen_at.lt(idle_before)),
        ),
    )
    .execute(conn)?)
}

/// Notes one failed sign-in against `subject` (`email:…` or `ip:…`).
pub fn record_failure(
    conn: &mut DbConnection,
    subject: &str,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::insert_into(sign_in_failures::table)
        .values((
            sign_in_failures::id.eq(ids::new_id("sif")),
            sign_in_failures::subject.eq(subject),
            sign_in_failures::at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn failures_since(
    conn: &mut DbConnection,
    subject: &str,
    since: NaiveDateTime,
) -> Result<i64, StorageError> {
    Ok(sign_in_failures::table
        .filter(sign_in_failures::subject.eq(subject))
        .filter(sign_in_failures::at.ge(since))
        .count()
        .get_result(conn)?)
}

/// Forgets a subject's failures (an email's, after it signed in).
pub fn forget_failures(conn: &mut DbConnection, subject: &str) -> Result<(), StorageError> {
    diesel::delete(sign_in_failures::table.filter(sign_in_failures::subject.eq(subject)))
        .execute(conn)?;
    Ok(())
}

/// Drops failures older than the rate limit's window.
pub fn prune_failures(conn: &mut DbConnection, before: NaiveDateTime) -> Result<(), StorageError> {
    diesel::delete(sign_in_failures::table.filter(sign_in_failures::at.lt(before)))
        .execute(conn)?;
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sidebar_keys)]
pub struct SidebarKeyRow {
    pub id: String,
    pub key_hash: String,
    pub key_hint: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

pub fn insert_sidebar_key(
    conn: &mut DbConnection,
    row: &SidebarKeyRow,
) -> Result<(), StorageError> {
    diesel::insert_into(sidebar_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn sidebar_keys(conn: &mut DbConnection) -> Result<Vec<SidebarKeyRow>, StorageError> {
    Ok(sidebar_keys::table
        .select(SidebarKeyRow::as_select())
        .order(sidebar_keys::id.asc())
        .load(conn)?)
}

pub fn active_sidebar_key(
    conn: &mut DbConnection,
    hash: &str,
) -> Result<Option<SidebarKeyRow>, StorageError> {
    Ok(sidebar_keys::table
        .filter(sidebar_keys::key_hash.eq(hash))
        .filter(sidebar_keys::revoked_at.is_null())
        .select(SidebarKeyRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn revoke_sidebar_key(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<usize, StorageError> {
    Ok(diesel::update(
        sidebar_keys::table
            .filter(sidebar_keys::id.eq(id))
            .filter(sidebar_keys::revoked_at.is_null()),
    )
    .set(sidebar_keys::revoked_at.eq(at))
    .execute(conn)?)
}
