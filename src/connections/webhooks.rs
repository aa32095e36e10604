//! A connection's webhook side: signing secrets added and retired (rotation), and the endpoint
//! registered in Stripe with the events billmirror maps.

use serde_json::json;

use super::{ConnectionError, ConnectionView, Connections};
use crate::domain::{ids, time, Secret};
use crate::ledger::MAPPED_TYPES;
use crate::storage::connections as store;
use crate::storage::tokens;

impl Connections {
    /// Adds a signing secret (a rotation starts); the old ones keep verifying until retired.
    pub async fn add_webhook_secret(
        &self,
        id: &str,
        secret: Secret,
        actor: &str,
    ) -> Result<ConnectionView, ConnectionError> {
        let row = self.keyed_row(id).await?;
        let (check, _) = crate::stripe::keys::format_check(
            crate::stripe::keys::Field::WebhookSecret,
            Some(secret.expose()),
        );
        if check.status == crate::stripe::report::Status::Fail {
            return Err(ConnectionError::Invalid(format!(
                "webhook_secret: {}",
                check.message
            )));
        }
        let existing = self.active_secrets(&row.id).await?;
        if existing.contains(&secret) {
            return Err(ConnectionError::Conflict(
                "This webhook secret is already active on the connection.".into(),
            ));
        }
        let secret_row = self.secret_row(&row.id, &secret, time::now());
        let (cid, actor) = (row.id.clone(), actor.to_owned());
        self.db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    store::insert_secret(conn, &secret_row)?;
                    tokens::audit(
                        conn,
                        &actor,
                        "connection.webhook_secret.add",
                        &cid,
                        json!({"secret_id": secret_row.id, "secret": secret_row.secret_hint}),
                    )
                })
            })
            .await?;
        self.refresh_endpoint(&row.id).await?;
        self.view(&row.id).await
    }

    pub async fn retire_webhook_secret(
        &self,
        id: &str,
        secret_id: &str,
        actor: &str,
    ) -> Result<ConnectionView, ConnectionError> {
        let row = self.keyed_row(id).await?;
        let (cid, sid, actor) = (row.id.clone(), secret_id.to_owned(), actor.to_owned());
        let retired = self
            .db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    if !store::retire_secret(conn, &cid, &sid, time::now())? {
                        return Ok(false);
                    }
                    tokens::audit(
                        conn,
                        &actor,
                        "connection.webhook_secret.retire",
                        &cid,
                        json!({"secret_id": sid}),
                    )?;
                    Ok(true)
                })
            })
            .await?;
        if !retired {
            return Err(ConnectionError::NotFound);
        }
        self.refresh_endpoint(&row.id).await?;
        self.view(&row.id).await
    }

    /// Creates (or completes) the webhook endpoint in Stripe and keeps the secret Stripe returns.
    pub async fn register_webhook_endpoint(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<(ConnectionView, &'static str), ConnectionError> {
        let row = self.keyed_row(id).await?;
        let url = self.webhook_url(&row.id);
        // Stripe would accept the URL and then fail every delivery: refuse before calling it.
        if crate::config::is_loopback_url(&url) {
            return Err(ConnectionError::UnreachableUrl(format!(
                "The webhook URL {url} is a loopback address that Stripe cannot reach: set \
                 PUBLIC_URL to the https:// address Stripe reaches billmirror at and restart. \
                 For local development, forward events with `stripe listen --forward-to \
                 localhost:8080/webhooks/stripe` instead."
            )));
        }
        let client = self.client_for(&row).await?;
        let list = client
            .get("webhook_endpoints", &[("limit", "100".to_owned())])
            .await
            .map_err(ConnectionError::Stripe)?;
        let existing = list["data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(url.as_str()))
            .cloned();
        let mut form: Vec<(String, String)> = MAPPED_TYPES
            .iter()
            .enumerate()
            .map(|(n, t)| (format!("enabled_events[{n}]"), (*t).to_owned()))
            .collect();
        let (outcome, secret) = match existing {
            Some(endpoint) => {
                let endpoint_id = endpoint["id"].as_str().unwrap_or_default().to_owned();
                form.push(("disabled".into(), "false".into()));
                let key = format!(
                    "billmirror:{}:webhook-endpoint-update:{}",
                    row.id,
                    ids::new_id("k")
                );
                client
                    .post(&format!("webhook_endpoints/{endpoint_id}"), &form, &key)
                    .await
                    .map_err(ConnectionError::Stripe)?;
                ("updated", None)
            }
            None => {
                form.push(("url".into(), url.clone()));
                form.push(("description".into(), format!("billmirror {}", row.name)));
                form.push(("metadata[billmirror_connection_id]".into(), row.id.clone()));
                let count = {
                    let cid = row.id.clone();
                    self.db
                        .run(move |conn| store::secrets(conn, &cid))
                        .await?
                        .len()
                };
                // Derived from our ids: a retry after a lost answer gets the same endpoint back;
                // the count changes once a secret is stored, so a later registration is new.
                let key = format!("billmirror:{}:webhook-endpoint:{count}", row.id);
                let created = client
                    .post("webhook_endpoints", &form, &key)
                    .await
                    .map_err(ConnectionError::Stripe)?;
                let secret = created["secret"]
                    .as_str()
                    .map(|s| Secret::new(s.to_owned()));
                ("created", secret)
            }
        };
        let (cid, actor) = (row.id.clone(), actor.to_owned());
        let secret_row = secret.map(|s| self.secret_row(&row.id, &s, time::now()));
        self.db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    if let Some(secret_row) = &secret_row {
                        store::insert_secret(conn, secret_row)?;
                    }
                    tokens::audit(
                        conn,
                        &actor,
                        "connection.webhook_endpoint",
                        &cid,
                        json!({"outcome": outcome, "secret": secret_row.as_ref().map(|s| &s.secret_hint)}),
                    )
                })
            })
            .await?;
        self.refresh_endpoint(&row.id).await?;
        Ok((self.view(&row.id).await?, outcome))
    }
}
