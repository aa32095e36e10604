//! Keys typed into the web UI's *Connect Stripe* form, kept between its Validate and Save.
//!
//! Why server-side: the form must not render a secret back into the page (not even inside a
//! hidden field, where it would sit in the browser's history and caches), and asking people to
//! paste the secret key again after every Validate invites mistakes. So Validate seals the secret
//! key and the webhook secret with the vault (as saved connections' are) into a draft row that
//! belongs to the browser's session and expires after [`DRAFT_LIFETIME`]; the page carries only
//! the draft's random id and the masked hints. Save opens the draft for the same session, lets
//! any field typed again win, and deletes the draft once the connection is saved. It works on any
//! instance behind a load balancer (the draft is in the database, not in one process's memory).

use chrono::Duration;

use super::{ConnectionError, Connections};
use crate::domain::{ids, time, Secret};
use crate::storage::connection_drafts::{self as store, DraftRow};
use crate::stripe::report::KeyInput;

/// How long a draft may be saved after its Validate.
pub const DRAFT_LIFETIME: Duration = Duration::minutes(15);

/// What a draft holds, opened.
#[derive(Debug, Clone)]
pub struct Draft {
    pub id: String,
    pub keys: KeyInput,
}

/// The keys to check or save: what was typed, and for a field left blank, what the draft kept.
pub fn merge(typed: KeyInput, kept: Option<&KeyInput>) -> KeyInput {
    let Some(kept) = kept else { return typed };
    KeyInput {
        publishable_key: typed
            .publishable_key
            .or_else(|| kept.publishable_key.clone()),
        secret_key: typed.secret_key.or_else(|| kept.secret_key.clone()),
        webhook_secrets: if typed.webhook_secrets.is_empty() {
            kept.webhook_secrets.clone()
        } else {
            typed.webhook_secrets
        },
    }
}

fn context(draft_id: &str, field: &str) -> String {
    format!("draft/{draft_id}/{field}")
}

impl Connections {
    /// Seals `keys` into a new draft of the session `session_hash` (replacing its previous one)
    /// and returns the draft's id.
    pub async fn keep_draft(
        &self,
        session_hash: &str,
        keys: &KeyInput,
        replaces: Option<String>,
    ) -> Result<String, ConnectionError> {
        let id = ids::new_id("draft");
        let now = time::now();
        let row = DraftRow {
            session_hash: session_hash.to_owned(),
            publishable_key: keys.publishable_key.clone(),
            secret_key_enc: keys
                .secret_key
                .as_ref()
                .map(|s| self.vault.seal(s, &context(&id, "secret_key"))),
            webhook_secret_enc: keys
                .webhook_secrets
                .first()
                .map(|s| self.vault.seal(s, &context(&id, "webhook_secret"))),
            created_at: now,
            expires_at: now + DRAFT_LIFETIME,
            id: id.clone(),
        };
        self.db
            .run(move |conn| store::insert(conn, &row, replaces.as_deref()))
            .await?;
        Ok(id)
    }

    /// The session's draft `id`, opened; `None` when it expired or is another session's.
    pub async fn draft(
        &self,
        id: &str,
        session_hash: &str,
    ) -> Result<Option<Draft>, ConnectionError> {
        let (draft_id, session) = (id.to_owned(), session_hash.to_owned());
        let Some(row) = self
            .db
            .run(move |conn| store::find(conn, &draft_id, &session, time::now()))
            .await?
        else {
            return Ok(None);
        };
        let open =
            |sealed: &Option<String>, field: &str| -> Result<Option<Secret>, ConnectionError> {
                sealed
                    .as_deref()
                    .map(|s| self.vault.open(s, &context(&row.id, field)))
                    .transpose()
                    .map_err(ConnectionError::from)
            };
        let keys = KeyInput {
            publishable_key: row.publishable_key.clone(),
            secret_key: open(&row.secret_key_enc, "secret_key")?,
            webhook_secrets: open(&row.webhook_secret_enc, "webhook_secret")?
                .into_iter()
                .collect(),
        };
        Ok(Some(Draft { id: row.id, keys }))
    }

    pub async fn drop_draft(&self, id: &str) -> Result<(), ConnectionError> {
        let id = id.to_owned();
        self.db.run(move |conn| store::delete(conn, &id)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pk: Option<&str>, sk: Option<&str>, whsec: Option<&str>) -> KeyInput {
        KeyInput {
            publishable_key: pk.map(str::to_owned),
            secret_key: sk.map(Secret::new),
            webhook_secrets: whsec.into_iter().map(Secret::new).collect(),
        }
    }

    #[test]
    fn typed_fields_win_and_blank_ones_come_from_the_draft() {
        let kept = keys(
            Some("pk_test_kept"),
            Some("sk_test_kept"),
            Some("whsec_kept"),
        );
        let merged = merge(keys(None, Some("sk_test_new"), None), Some(&kept));
        assert_eq!(merged.publishable_key.as_deref(), Some("pk_test_kept"));
        assert_eq!(merged.secret_key.unwrap().expose(), "sk_test_new");
        assert_eq!(merged.webhook_secrets[0].expose(), "whsec_kept");

        let nothing_kept = merge(keys(None, None, None), None);
        assert!(nothing_kept.secret_key.is_none() && nothing_kept.webhook_secrets.is_empty());
    }
}
