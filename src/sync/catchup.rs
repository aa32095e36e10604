//! The catch-up: Stripe's Events API (the last 30 days) fed through the inbox, so webhooks missed
//! while billmirror was down are recovered; events already stored are recognised as duplicates.

use serde::Serialize;

use crate::connections::{ConnectionError, Connections};
use crate::ledger;
use crate::storage::connections as connection_store;
use crate::storage::{events, Db, StorageError};
use crate::stripe::lists::{self, Filter};
use crate::webhook::{self, Envelope};

/// How far back Stripe keeps events.
pub const MAX_DAYS: i64 = 30;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CatchUpReport {
    pub listed: usize,
    pub new: usize,
    pub duplicates: usize,
    pub unreadable: usize,
}

pub async fn catch_up(
    db: &Db,
    connections: &Connections,
    connection_id: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<CatchUpReport, ConnectionError> {
    let cid = connection_id.to_owned();
    let row = db
        .run(move |conn| connection_store::find(conn, &cid))
        .await?
        .ok_or(ConnectionError::NotFound)?;
    let client = connections.client_for(&row).await?;
    let oldest = chrono::Utc::now() - chrono::Duration::days(MAX_DAYS);
    let since = since.max(oldest).timestamp();
    let mut report = CatchUpReport::default();
    let mut after: Option<String> = None;
    let filter = Filter::since(Some(since));
    loop {
        // Typed (async-stripe's `Event`: its `data.object` is untyped JSON), handed on as Stripe
        // sent it: the inbox stores and parses events exactly as webhook deliveries.
        let page = lists::page(&client, "events", &filter, after.as_deref())
            .await
            .map_err(ConnectionError::Stripe)?;
        let mut rows = Vec::new();
        for event in &page.data {
            let body = event.to_string();
            match Envelope::parse(body.as_bytes()) {
                Ok(envelope) => {
                    let maps = ledger::maps(&envelope.event_type);
                    rows.push(webhook::inbox_row(
                        &row.id, envelope, body, "catchup", None, maps,
                    ));
                }
                Err(e) => {
                    report.unreadable += 1;
                    tracing::warn!(connection.id = %row.id, error = %e, "an event from the Events API is not readable");
                }
            }
        }
        report.listed += page.data.len();
        let inserted = db
            .run(move |conn| conn.write_transaction(|conn| events::insert_new(conn, &rows)))
            .await
            .map_err(|e: StorageError| ConnectionError::Storage(e))?;
        let new = inserted.iter().filter(|n| **n).count();
        report.new += new;
        report.duplicates += inserted.len() - new;
        after = page.next_after();
        if after.is_none() {
            return Ok(report);
        }
    }
}
