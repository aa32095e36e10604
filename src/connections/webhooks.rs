//! A connection's webhook side: signing secrets added and retired (rotation), and the endpoint
//! registered in Stripe with the events billmirror maps.

use serde_json::json;
use stripe_misc::webhook_endpoint::{
    CreateWebhookEndpoint, ListWebhookEndpoint, UpdateWebhookEndpoint,
};

use super::{ConnectionError, ConnectionView, Connections};
use crate::domain::{ids, time, Secret};
use crate::ledger::MAPPED_TYPES;
use crate::storage::connections as store;
use crate::storage::tokens;
use crate::stripe::typed;

/// The event types billmirror maps, as the endpoint's `enabled_events` (a type async-stripe does
/// not list yet is sent as written).
fn enabled_events<E: std::str::FromStr<Err = std::convert::Infallible>>() -> Vec<E> {
    MAPPED_TYPES
        .iter()
        .map(|t| match t.parse() {
            Ok(event) => event,
            Err(never) => match never {},
        })
        .collect()
}

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
        let existing = typed::list_all(&client, &ListWebhookEndpoint::new())
            .await
            .map_err(ConnectionError::Stripe)?
            .items
            .into_iter()
            .find(|e| e.url.trim_end_matches('/') == url.as_str());
        let (outcome, secret) = match existing {
            Some(endpoint) => {
                let update = UpdateWebhookEndpoint::new(endpoint.id)
                    .enabled_events(enabled_events())
                    .disabled(false);
                let key = format!(
                    "billmirror:{}:webhook-endpoint-update:{}",
                    row.id,
                    ids::new_id("k")
                );
                typed::send(&client, &update, Some(&key))
                    .await
                    .map_err(ConnectionError::Stripe)?;
                ("updated", None)
            }
            None => {
                let create = CreateWebhookEndpoint::new(enabled_events(), url.clone())
                    .description(format!("billmirror {}", row.name))
                    .metadata(std::collections::HashMap::from([(
                        "billmirror_connection_id".to_owned(),
                        row.id.clone(),
                    )]));
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
                let created = typed::send(&client, &create, Some(&key))
                    .await
                    .map_err(ConnectionError::Stripe)?;
                let secret = created.secret.map(Secret::new);
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
