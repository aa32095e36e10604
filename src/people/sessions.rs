//! Browser sessions: a random id in an HttpOnly cookie, stored only as its SHA-256, ending after
//! [`IDLE`] without activity or [`ABSOLUTE`] after sign-in, whichever comes first. Each session has
//! its own CSRF token, which every form posts back.
//!
//! Sign-in is rate limited in the database (so every instance counts the same failures): at most
//! [`MAX_FAILURES_PER_EMAIL`] failures per email and [`MAX_FAILURES_PER_IP`] per client address in
//! [`FAILURE_WINDOW`].

use chrono::{Duration, NaiveDateTime};
use sha2::{Digest, Sha256};

use super::passwords;
use crate::domain::{email, ids, time, Role};
use crate::storage::tokens::audit;
use crate::storage::users::{self, SessionRow};
use crate::storage::{DbConnection, StorageError};

pub const IDLE: Duration = Duration::hours(12);
pub const ABSOLUTE: Duration = Duration::days(7);
pub const FAILURE_WINDOW: Duration = Duration::minutes(15);
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
pub const MAX_FAILURES_PER_IP: i64 = 30;

/// Who is signed in, as a page sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub csrf_token: String,
    /// The stored hash of the session id: what sign-out deletes.
    pub session: String,
}

impl Staff {
    pub fn may(&self, role: Role) -> bool {
        self.role.allows(role)
    }
}

/// A new session: the id goes in the cookie and exists nowhere else.
#[derive(Debug)]
pub struct NewSession {
    pub id: String,
    pub staff: Staff,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown email, wrong password or a disabled account: one answer for all three.
    #[error("the email or the password is wrong")]
    Refused,
    #[error("too many failed sign-ins; try again in {minutes} minutes")]
    TooManyFailures { minutes: i64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub fn hash_session_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn random_hex() -> String {
    hex::encode(ids::random_bytes::<32>())
}

/// Checks the password (argon2: call from a blocking thread) and opens a session.
pub fn sign_in(
    conn: &mut DbConnection,
    email_typed: &str,
    password: &str,
    client_ip: &str,
) -> Result<NewSession, SignInError> {
    let now = time::now();
    let email = email::normalize(email_typed);
    let by_email = format!("email:{email}");
    let by_ip = format!("ip:{client_ip}");
    let since = now - FAILURE_WINDOW;
    users::prune_failures(conn, since)?;
    if users::failures_since(conn, &by_email, since)? >= MAX_FAILURES_PER_EMAIL
        || users::failures_since(conn, &by_ip, since)? >= MAX_FAILURES_PER_IP
    {
        audit(
            conn,
            &email,
            "user.sign_in_throttled",
            &email,
            serde_json::json!({"ip": client_ip}),
        )?;
        return Err(SignInError::TooManyFailures {
            minutes: FAILURE_WINDOW.num_minutes(),
        });
    }
    let user = users::find_by_email(conn, &email)?;
    let verified = match &user {
        Some(user) => passwords::verify(password, &user.password_hash),
        None => {
            passwords::verify_nothing(password);
            false
        }
    };
    let role = user.as_ref().and_then(|u| u.role.parse::<Role>().ok());
    let (Some(user), Some(role), true) = (user.as_ref(), role, verified) else {
        return fail(
            conn,
            &email,
            &by_email,
            &by_ip,
            client_ip,
            "wrong password or unknown email",
        );
    };
    if user.disabled_at.is_some() {
        return fail(conn, &email, &by_email, &by_ip, client_ip, "disabled");
    }
    let id = random_hex();
    let row = SessionRow {
        id_hash: hash_session_id(&id),
        user_id: user.id.clone(),
        csrf_token: random_hex(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + ABSOLUTE,
    };
    conn.write_transaction(|conn| {
        users::insert_session(conn, &row)?;
        users::touch_sign_in(conn, &user.id, now)?;
        users::forget_failures(conn, &by_email)?;
        audit(
            conn,
            &user.email,
            "user.sign_in",
            &user.id,
            serde_json::json!({"ip": client_ip}),
        )?;
        Ok::<_, StorageError>(())
    })?;
    Ok(NewSession {
        id,
        staff: Staff {
            user_id: user.id.clone(),
            email: user.email.clone(),
            role,
            csrf_token: row.csrf_token,
            session: row.id_hash,
        },
    })
}

fn fail(
    conn: &mut DbConnection,
    email: &str,
    by_email: &str,
    by_ip: &str,
    client_ip: &str,
    reason: &str,
) -> Result<NewSession, SignInError> {
    let now = time::now();
    conn.write_transaction(|conn| {
        users::record_failure(conn, by_email, now)?;
        users::record_failure(conn, by_ip, now)?;
        audit(
            conn,
            email,
            "user.sign_in_failed",
            email,
            serde_json::json!({"ip": client_ip, "reason": reason}),
        )
    })?;
    Err(SignInError::Refused)
}

/// The signed-in person for a session cookie, when the session is live and the user enabled.
pub fn authenticate(conn: &mut DbConnection, id: &str) -> Result<Option<Staff>, StorageError> {
    let now = time::now();
    let hash = hash_session_id(id);
    let Some((session, user)) = users::find_session(conn, &hash)? else {
        return Ok(None);
    };
    if is_expired(&session, now) {
        users::delete_session(conn, &hash)?;
        return Ok(None);
    }
    let Ok(role) = user.role.parse::<Role>() else {
        return Ok(None);
    };
    if user.disabled_at.is_some() {
        return Ok(None);
    }
    users::touch_session(conn, &hash, now)?;
    Ok(Some(Staff {
        user_id: user.id,
        email: user.email,
        role,
        csrf_token: session.csrf_token,
        session: hash,
    }))
}

pub fn is_expired(session: &SessionRow, now: NaiveDateTime) -> bool {
    session.expires_at <= now || session.last_seen_at + IDLE <= now
}

pub fn sign_out(conn: &mut DbConnection, staff: &Staff) -> Result<(), StorageError> {
    users::delete_session(conn, &staff.session)?;
    audit(
        conn,
        &staff.email,
        "user.sign_out",
        &staff.user_id,
        serde_json::json!({}),
    )
}

/// Ends every session of this user, on every browser.
pub fn sign_out_everywhere(conn: &mut DbConnection, staff: &Staff) -> Result<usize, StorageError> {
    let ended = users::delete_sessions_of(conn, &staff.user_id)?;
    audit(
        conn,
        &staff.email,
        "user.sign_out_everywhere",
        &staff.user_id,
        serde_json::json!({"sessions": ended}),
    )?;
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(created: NaiveDateTime, seen: NaiveDateTime) -> SessionRow {
        SessionRow {
            id_hash: String::new(),
            user_id: String::new(),
            csrf_token: String::new(),
            created_at: created,
            last_seen_at: seen,
            expires_at: created + ABSOLUTE,
        }
    }

    #[test]
    fn a_session_ends_when_idle_or_too_old() {
        let start = time::now();
        assert!(!is_expired(
            &session(start, start),
            start + Duration::hours(1)
        ));
        assert!(is_expired(&session(start, start), start + IDLE));
        let busy = session(start, start + ABSOLUTE - Duration::minutes(1));
        assert!(!is_expired(&busy, start + ABSOLUTE - Duration::minutes(1)));
        assert!(is_expired(&busy, start + ABSOLUTE));
    }

    #[test]
    fn session_ids_are_stored_hashed() {
        let id = random_hex();
        assert_eq!(id.len(), 64);
        assert_ne!(hash_session_id(&id), id);
        assert_eq!(hash_session_id(&id), hash_session_id(&id));
    }
}
