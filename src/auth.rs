//! API tokens: how they are made, stored and checked. A token is 32 random bytes shown once to
//! whoever creates it; only its SHA-256 is stored. The tokens are random, so a fast hash is enough:
//! there is no password to guess.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::secret::{mask, Secret};
use crate::domain::{ids, time, Role};
use crate::storage::tokens::{self, TokenRow};
use crate::storage::{DbConnection, StorageError};

const TOKEN_PREFIX: &str = "bm_";

/// Who is calling: the token's id, name and role, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

/// A token as listed: the secret is gone, only a hint of it remains.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: String,
    pub hint: String,
    pub created_by: Option<String>,
    #[serde(with = "time::serde_rfc3339")]
    pub created_at: chrono::NaiveDateTime,
    #[serde(with = "time::serde_rfc3339::option")]
    pub last_used_at: Option<chrono::NaiveDateTime>,
    #[serde(with = "time::serde_rfc3339::option")]
    pub revoked_at: Option<chrono::NaiveDateTime>,
}

impl From<TokenRow> for TokenInfo {
    fn from(row: TokenRow) -> Self {
        TokenInfo {
            id: row.id,
            name: row.name,
            role: row.role,
            hint: row.token_hint,
            created_by: row.created_by,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// A freshly created token: the only moment its value exists outside the caller's hands.
#[derive(Debug)]
pub struct IssuedToken {
    pub info: TokenInfo,
    pub token: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("a token named `{0}` already exists")]
    NameTaken(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub fn generate_token() -> Secret {
    Secret::new(format!(
        "{TOKEN_PREFIX}{}",
        hex::encode(ids::random_bytes::<32>())
    ))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn validate_name(name: &str) -> Result<(), TokenError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(TokenError::Invalid(
            "a token name has 1 to 64 characters: letters, digits, '.', '_' or '-'".into(),
        ));
    }
    Ok(())
}

/// Stores a token (generated unless `token` is given) and its audit entry in one transaction.
pub fn create_token(
    conn: &mut DbConnection,
    name: &str,
    role: Role,
    actor: &str,
    token: Option<Secret>,
) -> Result<IssuedToken, TokenError> {
    validate_name(name)?;
    let token = token.unwrap_or_else(generate_token);
    if token.expose().trim().len() < 16 {
        return Err(TokenError::Invalid(
            "a token must be at least 16 characters long".into(),
        ));
    }
    let row = TokenRow {
        id: ids::new_id("tok"),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        token_hash: hash_token(token.expose().trim()),
        token_hint: mask(token.expose()),
        created_by: Some(actor.to_owned()),
        created_at: time::now(),
        last_used_at: None,
        revoked_at: None,
    };
    conn.write_transaction(|conn| {
        match tokens::insert(conn, &row) {
            Err(e) if e.is_unique_violation() => {
                return Err(TokenError::NameTaken(name.to_owned()))
            }
            other => other?,
        }
        tokens::audit(
            conn,
            actor,
            "token.create",
            &row.id,
            serde_json::json!({"name": name, "role": role}),
        )?;
        Ok(())
    })?;
    Ok(IssuedToken {
        info: row.into(),
        token,
    })
}

/// Creates the first admin token when no token exists at all: from `configured` when the operator
/// chose one, else a random one that the caller prints once. Returns `None` when tokens exist.
pub fn ensure_initial_admin(
    conn: &mut DbConnection,
    configured: Option<Secret>,
) -> Result<Option<IssuedToken>, TokenError> {
    if tokens::count(conn)? > 0 {
        return Ok(None);
    }
    match create_token(conn, "initial-admin", Role::Admin, "billmirror", configured) {
        Ok(issued) => Ok(Some(issued)),
        // Another instance starting at the same moment made it first.
        Err(TokenError::NameTaken(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Finds the active token for a bearer value. The lookup is by SHA-256, so timing reveals nothing
/// about stored tokens.
pub fn authenticate(
    conn: &mut DbConnection,
    bearer: &str,
) -> Result<Option<Principal>, StorageError> {
    let Some(row) = tokens::find_active_by_hash(conn, &hash_token(bearer.trim()))? else {
        return Ok(None);
    };
    let Ok(role) = row.role.parse::<Role>() else {
        tracing::error!(token.id = %row.id, "stored token has an unknown role; refusing it");
        return Ok(None);
    };
    // A write per request would make every read wait for a commit; a minute's precision is
    // enough to tell a token in use from a forgotten one.
    let now = time::now();
    if row
        .last_used_at
        .is_none_or(|at| now - at > chrono::Duration::seconds(60))
    {
        tokens::touch_last_used(conn, &row.id, now)?;
    }
    Ok(Some(Principal {
        token_id: row.id,
        name: row.name,
        role,
    }))
}

pub fn revoke_token(
    conn: &mut DbConnection,
    key: &str,
    actor: &str,
) -> Result<Option<TokenInfo>, StorageError> {
    conn.write_transaction(|conn| {
        let Some(row) = tokens::find_by_id_or_name(conn, key)? else {
            return Ok(None);
        };
        tokens::revoke(conn, &row.id, time::now())?;
        tokens::audit(
            conn,
            actor,
            "token.revoke",
            &row.id,
            serde_json::json!({"name": row.name}),
        )?;
        Ok(tokens::find_by_id_or_name(conn, &row.id)?.map(TokenInfo::from))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.expose().starts_with("bm_") && a.expose().len() == 67);
        assert_eq!(hash_token(a.expose()).len(), 64);
    }

    #[test]
    fn token_names_are_short_and_plain() {
        assert!(validate_name("ops-bot.1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
    }
}
