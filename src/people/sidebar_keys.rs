//! Sidebar keys: the key in the URL a helpdesk frames `/sidebar` with. It grants support's read
//! access to that one page only (it is no API token), is stored as its SHA-256, shown in full
//! once and masked afterwards, and revocable.

use crate::auth::hash_token;
use crate::domain::secret::Secret;
use crate::domain::{ids, time};
use crate::storage::tokens::audit;
use crate::storage::users::{self, SidebarKeyRow};
use crate::storage::{DbConnection, StorageError};

const PREFIX: &str = "bmsb_";

/// `bmsb_…` and the last four characters.
fn hint(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{PREFIX}…{tail}")
}

pub fn create(
    conn: &mut DbConnection,
    actor: &str,
) -> Result<(SidebarKeyRow, Secret), StorageError> {
    let key = Secret::new(format!(
        "{PREFIX}{}",
        hex::encode(ids::random_bytes::<24>())
    ));
    let row = SidebarKeyRow {
        id: ids::new_id("sbk"),
        key_hash: hash_token(key.expose()),
        key_hint: hint(key.expose()),
        created_by: actor.to_owned(),
        created_at: time::now(),
        revoked_at: None,
    };
    conn.write_transaction(|conn| {
        users::insert_sidebar_key(conn, &row)?;
        audit(
            conn,
            actor,
            "sidebar_key.create",
            &row.id,
            serde_json::json!({"hint": row.key_hint}),
        )
    })?;
    Ok((row, key))
}

/// Whether `key` is a live sidebar key.
pub fn check(conn: &mut DbConnection, key: &str) -> Result<bool, StorageError> {
    if !key.starts_with(PREFIX) {
        return Ok(false);
    }
    Ok(users::active_sidebar_key(conn, &hash_token(key))?.is_some())
}

pub fn revoke(conn: &mut DbConnection, id: &str, actor: &str) -> Result<bool, StorageError> {
    conn.write_transaction(|conn| {
        let revoked = users::revoke_sidebar_key(conn, id, time::now())? > 0;
        if revoked {
            audit(conn, actor, "sidebar_key.revoke", id, serde_json::json!({}))?;
        }
        Ok(revoked)
    })
}
