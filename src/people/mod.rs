//! People who sign in to the web UI: their accounts (email, argon2id password, role) and their
//! sessions. API tokens (`crate::auth`) stay for scripts; these are for browsers.

pub mod passwords;
pub mod sessions;
pub mod sidebar_keys;

use crate::domain::secret::Secret;
use crate::domain::{email, ids, time, Email, Role};
use crate::storage::tokens::audit;
use crate::storage::users::{self, UserRow};
use crate::storage::{DbConnection, StorageError};

/// The email of the admin made at first start when `BILLMIRROR_ADMIN_EMAIL` is unset.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@billmirror.local";

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("a user with the email `{0}` already exists")]
    EmailTaken(String),
    #[error("no user has the email `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A user as listed: never the password hash.
#[derive(Debug, Clone)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub created_at: chrono::NaiveDateTime,
    pub last_sign_in_at: Option<chrono::NaiveDateTime>,
    pub disabled_at: Option<chrono::NaiveDateTime>,
}

impl UserInfo {
    fn from_row(row: UserRow) -> Option<UserInfo> {
        Some(UserInfo {
            role: row.role.parse().ok()?,
            id: row.id,
            email: row.email,
            created_at: row.created_at,
            last_sign_in_at: row.last_sign_in_at,
            disabled_at: row.disabled_at,
        })
    }
}

/// A new user with the password they will sign in with: shown once to whoever made it.
#[derive(Debug)]
pub struct CreatedUser {
    pub info: UserInfo,
    pub password: Secret,
}

fn parse_email(value: &str) -> Result<String, UserError> {
    Email::parse(value)
        .map(|e| e.normalized())
        .map_err(|p| UserError::Invalid(format!("the email {p}")))
}

/// Makes a user with `password`, or a generated one when none is given. The audit entry names
/// `actor` (`cli`, `billmirror` at first start, or the admin's email).
pub fn create_user(
    conn: &mut DbConnection,
    email: &str,
    role: Role,
    password: Option<Secret>,
    actor: &str,
) -> Result<CreatedUser, UserError> {
    let email = parse_email(email)?;
    let password = password.unwrap_or_else(passwords::generate);
    passwords::check_strength(password.expose()).map_err(UserError::Invalid)?;
    let now = time::now();
    let row = UserRow {
        id: ids::new_id("usr"),
        email: email.clone(),
        password_hash: passwords::hash(password.expose()),
        role: role.as_str().to_owned(),
        created_by: actor.to_owned(),
        created_at: now,
        password_changed_at: now,
        last_sign_in_at: None,
        disabled_at: None,
    };
    conn.write_transaction(|conn| {
        match users::insert(conn, &row) {
            Err(e) if e.is_unique_violation() => return Err(UserError::EmailTaken(email.clone())),
            other => other?,
        }
        audit(
            conn,
            actor,
            "user.create",
            &row.id,
            serde_json::json!({"email": email, "role": role}),
        )?;
        Ok(())
    })?;
    let info = UserInfo::from_row(row)
        .ok_or_else(|| UserError::Invalid("the role did not round-trip".into()))?;
    Ok(CreatedUser { info, password })
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<UserInfo>, StorageError> {
    Ok(users::list(conn)?
        .into_iter()
        .filter_map(UserInfo::from_row)
        .collect())
}

fn existing(conn: &mut DbConnection, email: &str) -> Result<UserRow, UserError> {
    let normalized = email::normalize(email);
    users::find_by_email(conn, &normalized)?.ok_or(UserError::NotFound(normalized))
}

/// Sets a new password (generated unless given) and ends every session of the user.
pub fn reset_password(
    conn: &mut DbConnection,
    email: &str,
    password: Option<Secret>,
    actor: &str,
) -> Result<Secret, UserError> {
    let password = password.unwrap_or_else(passwords::generate);
    passwords::check_strength(password.expose()).map_err(UserError::Invalid)?;
    let hash = passwords::hash(password.expose());
    conn.write_transaction(|conn| {
        let row = existing(conn, email)?;
        users::set_password(conn, &row.id, &hash, time::now())?;
        users::delete_sessions_of(conn, &row.id)?;
        audit(
            conn,
            actor,
            "user.reset_password",
            &row.id,
            serde_json::json!({"email": row.email}),
        )?;
        Ok::<_, UserError>(())
    })?;
    Ok(password)
}

/// Disables (or enables again) a user; disabling ends their sessions at once.
pub fn set_disabled(
    conn: &mut DbConnection,
    email: &str,
    disabled: bool,
    actor: &str,
) -> Result<UserInfo, UserError> {
    conn.write_transaction(|conn| {
        let row = existing(conn, email)?;
        let at = disabled.then(time::now);
        users::set_disabled(conn, &row.id, at)?;
        if disabled {
            users::delete_sessions_of(conn, &row.id)?;
        }
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        audit(
            conn,
            actor,
            action,
            &row.id,
            serde_json::json!({"email": row.email}),
        )?;
        let row = existing(conn, email)?;
        UserInfo::from_row(row).ok_or_else(|| UserError::Invalid("unknown role".into()))
    })
}

/// Makes the first admin user when there is no user at all; the caller prints the password once.
pub fn ensure_initial_admin(
    conn: &mut DbConnection,
    email: &str,
) -> Result<Option<CreatedUser>, UserError> {
    if users::count(conn)? > 0 {
        return Ok(None);
    }
    match create_user(conn, email, Role::Admin, None, "billmirror") {
        Ok(created) => Ok(Some(created)),
        // Another instance starting at the same moment made it first.
        Err(UserError::EmailTaken(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
