//! The backfill: every list endpoint of a connection, page by page, each page's events and its
//! cursor committed together. An interrupted run resumes at its cursors; a run after a complete
//! one starts over (unchanged objects store nothing new). A permission error on one resource is
//! reported and the others go on; Stripe being unavailable stops the run where it is.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use super::listed_event;
use crate::connections::{ConnectionError, Connections};
use crate::domain::time;
use crate::storage::connections::{self as connection_store, status as connection_status};
use crate::storage::sync::{self as cursors, CursorRow};
use crate::storage::{events, Db, StorageError};
use crate::stripe::client::ListPage;
use crate::stripe::lists::{self, Filter};
use crate::stripe::{typed, StripeClient, StripeError};

/// Resources in the order they are filled: what others point at first.
pub const RESOURCES: [&str; 9] = [
    "customers",
    "products",
    "prices",
    "subscriptions",
    "invoices",
    "charges",
    "payment_intents",
    "refunds",
    "disputes",
];

#[derive(Debug, Clone, Default)]
pub struct BackfillOptions {
    /// A subset of [`RESOURCES`]; empty means all.
    pub only: Vec<String>,
    /// Only objects created at or after this Unix time.
    pub since: Option<i64>,
}

/// Where a run stands, after each page.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub resource: &'static str,
    pub objects: i64,
    pub new_events: i64,
    pub pages: i64,
    pub objects_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    pub resource: &'static str,
    /// `complete`, `already_complete`, `permission_denied`, `stopped`.
    pub outcome: &'static str,
    pub objects: i64,
    pub new_events: i64,
    pub message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub async fn backfill(
    db: &Db,
    connections: &Connections,
    connection_id: &str,
    options: &BackfillOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<Vec<ResourceReport>, BackfillError> {
    let wanted: Vec<&'static str> = if options.only.is_empty() {
        RESOURCES.to_vec()
    } else {
        let mut wanted = Vec::new();
        for name in &options.only {
            let found = RESOURCES
                .iter()
                .find(|r| **r == name.as_str())
                .ok_or_else(|| {
                    BackfillError::Invalid(format!(
                        "`{name}` is not a resource; choose from {}",
                        RESOURCES.join(", ")
                    ))
                })?;
            wanted.push(*found);
        }
        wanted
    };
    let cid = connection_id.to_owned();
    let row = db
        .run(move |conn| connection_store::find(conn, &cid))
        .await?
        .ok_or_else(|| {
            BackfillError::Invalid(format!("no connection has the id `{connection_id}`"))
        })?;
    if row.status == connection_status::DISCONNECTED {
        return Err(BackfillError::Invalid(format!(
            "the connection `{connection_id}` is disconnected"
        )));
    }
    let client = connections.client_for(&row).await?;
    let livemode = row.mode == "live";

    let cid = connection_id.to_owned();
    let mut saved = db.run(move |conn| cursors::cursors(conn, &cid)).await?;
    let all_done = wanted
        .iter()
        .all(|r| saved.iter().any(|c| c.resource == *r && c.completed));
    if all_done {
        let (cid, names) = (connection_id.to_owned(), wanted.clone());
        db.run(move |conn| cursors::reset(conn, &cid, &names))
            .await?;
        saved.clear();
    }

    let mut reports = Vec::new();
    for resource in wanted {
        let cursor = saved.iter().find(|c| c.resource == resource).cloned();
        if cursor.as_ref().is_some_and(|c| c.completed) {
            reports.push(ResourceReport {
                resource,
                outcome: "already_complete",
                objects: cursor.map_or(0, |c| c.objects_seen),
                new_events: 0,
                message: None,
            });
            continue;
        }
        let report = fill(
            db,
            &client,
            connection_id,
            resource,
            cursor,
            options.since,
            livemode,
            &mut progress,
        )
        .await?;
        let stop = report.outcome == "stopped";
        reports.push(report);
        if stop {
            break;
        }
    }
    Ok(reports)
}

/// Fetches one page in the background, so that the next page is on its way while this one is
/// stored: the run is then bound by the slower of Stripe (or the rate limit) and the database,
/// not by their sum.
fn fetch_page(
    client: &Arc<StripeClient>,
    resource: &'static str,
    after: Option<String>,
    since: Option<i64>,
) -> tokio::task::JoinHandle<Result<ListPage, StripeError>> {
    let client = client.clone();
    tokio::spawn(async move {
        lists::page(&client, resource, &Filter::since(since), after.as_deref()).await
    })
}

#[allow(clippy::too_many_arguments)]
async fn fill(
    db: &Db,
    client: &Arc<StripeClient>,
    connection_id: &str,
    resource: &'static str,
    cursor: Option<CursorRow>,
    since: Option<i64>,
    livemode: bool,
    progress: &mut impl FnMut(&Progress),
) -> Result<ResourceReport, BackfillError> {
    let started = Instant::now();
    let after = cursor.as_ref().and_then(|c| c.cursor.clone());
    let mut objects = cursor.as_ref().map_or(0, |c| c.objects_seen);
    let mut fresh_objects = 0i64;
    let mut new_events = 0i64;
    let mut pages = 0i64;
    let mut next = fetch_page(client, resource, after.clone(), since);
    loop {
        let stopped = |objects, new_events, message: String| ResourceReport {
            resource,
            outcome: "stopped",
            objects,
            new_events,
            message: Some(format!("{message}. Run the backfill again to resume here.")),
        };
        let page = match next.await {
            Ok(Ok(page)) => page,
            Ok(Err(e)) if e.status() == Some(403) => {
                tracing::warn!(
                    connection.id = connection_id,
                    resource,
                    "the key may not list this resource"
                );
                return Ok(ResourceReport {
                    resource,
                    outcome: "permission_denied",
                    objects,
                    new_events,
                    message: Some(format!("The key may not read {resource}: {e}")),
                });
            }
            Ok(Err(e)) => {
                tracing::warn!(connection.id = connection_id, resource, error = %e, "backfill stopped; run it again to resume");
                return Ok(stopped(objects, new_events, e.to_string()));
            }
            Err(e) => {
                return Ok(stopped(
                    objects,
                    new_events,
                    format!("the page fetch stopped: {e}"),
                ))
            }
        };
        let has_more = page.has_more;
        let last = page.last_id();
        let mut data = page.data;
        next = fetch_page(client, resource, last.clone(), since);
        if !has_more || last.is_none() {
            next.abort();
        }
        if resource == "invoices" {
            for invoice in &mut data {
                if let Err(e) = complete_lines(client, invoice).await {
                    next.abort();
                    return Ok(stopped(objects, new_events, e.to_string()));
                }
            }
        }
        let rows: Vec<_> = data
            .iter()
            .filter_map(|o| listed_event(connection_id, resource, o, livemode))
            .collect();
        let count = data.len() as i64;
        objects += count;
        fresh_objects += count;
        let cursor = CursorRow {
            connection_id: connection_id.to_owned(),
            resource: resource.to_owned(),
            cursor: last.clone().or(after.clone()),
            completed: !has_more,
            objects_seen: objects,
            updated_at: time::now(),
        };
        let inserted = db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    let inserted = events::insert_new(conn, &rows)?;
                    cursors::save(conn, &cursor)?;
                    Ok::<_, StorageError>(inserted.into_iter().filter(|new| *new).count() as i64)
                })
            })
            .await;
        let inserted = match inserted {
            Ok(n) => n,
            Err(e) => {
                next.abort();
                return Err(e.into());
            }
        };
        new_events += inserted;
        pages += 1;
        let elapsed = started.elapsed().as_secs_f64().max(1e-6);
        progress(&Progress {
            resource,
            objects,
            new_events,
            pages,
            objects_per_second: fresh_objects as f64 / elapsed,
        });
        if !has_more || last.is_none() {
            return Ok(ResourceReport {
                resource,
                outcome: "complete",
                objects,
                new_events,
                message: None,
            });
        }
    }
}

/// A listed invoice carries its first ten lines; fetch them all so the ledger has every one.
pub(crate) async fn complete_lines(
    client: &StripeClient,
    invoice: &mut Value,
) -> Result<(), StripeError> {
    if invoice["lines"]["has_more"] != true {
        return Ok(());
    }
    let id = invoice["id"].as_str().unwrap_or_default().to_owned();
    let lines = lists::invoice_lines(client, &id).await?;
    invoice["lines"] = json!({"object": "list", "data": lines, "has_more": false});
    Ok(())
}

/// `refresh=true` of the billing context: asks every active connection for these emails'
/// customers and their subscriptions, invoices and charges, and stores them as listed events.
/// Returns what was fetched; the apply worker folds them in moments.
pub async fn refresh_customers(
    db: &Db,
    connections: &Connections,
    emails: &[String],
    known_customers: &[(String, String)],
) -> Result<Value, BackfillError> {
    let rows = db.run(connection_store::active_with_keys).await?;
    let mut stored = Vec::new();
    let mut fetched = 0usize;
    for row in rows {
        let client = connections.client_for(&row).await?;
        let livemode = row.mode == "live";
        let mut customers: Vec<Value> = Vec::new();
        for email in emails {
            let found = lists::all(&client, "customers", &Filter::email(email))
                .await
                .map_err(ConnectionError::Stripe)?;
            customers.extend(found);
        }
        for (_, id) in known_customers.iter().filter(|(c, _)| *c == row.id) {
            if !customers.iter().any(|c| c["id"] == id.as_str()) {
                // A deleted customer is kept too: the ledger marks it deleted.
                let retrieve = stripe_core::customer::RetrieveCustomer::new(id.as_str());
                let (_, customer) = typed::send_raw(&client, &retrieve, None)
                    .await
                    .map_err(ConnectionError::Stripe)?;
                customers.push(customer);
            }
        }
        for customer in &customers {
            let Some(id) = customer["id"].as_str() else {
                continue;
            };
            stored.extend(listed_event(&row.id, "customers", customer, livemode));
            for resource in ["subscriptions", "invoices", "charges"] {
                let mut objects = lists::all(&client, resource, &Filter::customer(id))
                    .await
                    .map_err(ConnectionError::Stripe)?;
                for object in &mut objects {
                    if resource == "invoices" {
                        complete_lines(&client, object)
                            .await
                            .map_err(ConnectionError::Stripe)?;
                    }
                    fetched += 1;
                    stored.extend(listed_event(&row.id, resource, object, livemode));
                }
            }
        }
        fetched += customers.len();
    }
    let new = db
        .run(move |conn| conn.write_transaction(|conn| events::insert_new(conn, &stored)))
        .await?
        .into_iter()
        .filter(|n| *n)
        .count();
    Ok(json!({"objects": fetched, "changed": new}))
}
