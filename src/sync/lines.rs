//! Completing mirrored invoices' lines. Stripe's event payloads carry an invoice's first page of
//! lines and say `has_more: true` when there are more; the fold keeps the longest list it has seen
//! and records the invoice as incomplete. This reader fetches the invoice with all its lines
//! (`GET /v1/invoices/{id}/lines`, every page) and stores it as a listed event, which the apply
//! worker folds like any other: the complete list wins, and the invoice is complete again.

use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;

use super::backfill::complete_lines;
use super::listed_event;
use crate::connections::Connections;
use crate::domain::time;
use crate::storage::connections::{self as connection_store, status};
use crate::storage::invoices::{self as store, IncompleteLines};
use crate::storage::{events, Db};

/// How often the reader looks for incomplete invoices.
const POLL: Duration = Duration::from_secs(1);
/// Invoices read per pass; the client's rate limit spaces the calls.
const BATCH: i64 = 20;
/// After a fetch is stored the fold marks the invoice complete; should it still be incomplete
/// then (lines added since), it is read again after this long.
const AFTER_SUCCESS: TimeDelta = TimeDelta::minutes(10);
/// A key that may not read invoices is asked again after a day (its permissions may change).
const AFTER_REFUSAL: TimeDelta = TimeDelta::days(1);

/// Runs until `shutdown` turns true.
pub async fn run(db: Db, connections: Connections, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        if let Err(e) = complete_due(&db, &connections).await {
            tracing::warn!(error = %e, "cannot look for invoices with lines to complete");
        }
    }
}

/// One pass: fetches the lines of every incomplete invoice that is due. Returns how many were
/// stored for folding.
pub async fn complete_due(db: &Db, connections: &Connections) -> Result<usize, String> {
    let due = db
        .run(|conn| store::due_incomplete_lines(conn, time::now(), BATCH))
        .await
        .map_err(|e| e.to_string())?;
    let mut stored = 0;
    for invoice in due {
        let outcome = fetch(db, connections, &invoice).await;
        let (delay, error) = match outcome {
            Ok(()) => {
                stored += 1;
                (AFTER_SUCCESS, None)
            }
            Err(Failure {
                retry_after,
                message,
            }) => {
                tracing::warn!(
                    connection.id = %invoice.connection_id,
                    invoice = %invoice.stripe_invoice_id,
                    error = %message,
                    "cannot read the rest of an invoice's lines"
                );
                (retry_after(invoice.attempts), Some(message))
            }
        };
        let id = invoice.invoice_id.clone();
        db.run(move |conn| {
            store::defer_lines_fetch(conn, &id, time::now() + delay, error.as_deref())
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(stored)
}

struct Failure {
    retry_after: fn(i32) -> TimeDelta,
    message: String,
}

/// A minute, doubling with each failure, at most an hour.
fn backoff(attempts: i32) -> TimeDelta {
    TimeDelta::minutes(1 << attempts.clamp(0, 6)).min(TimeDelta::hours(1))
}

fn refused(_: i32) -> TimeDelta {
    AFTER_REFUSAL
}

async fn fetch(
    db: &Db,
    connections: &Connections,
    invoice: &IncompleteLines,
) -> Result<(), Failure> {
    let fail = |retry_after: fn(i32) -> TimeDelta, message: String| Failure {
        retry_after,
        message,
    };
    let connection_id = invoice.connection_id.clone();
    let row = db
        .run(move |conn| connection_store::find(conn, &connection_id))
        .await
        .map_err(|e| fail(backoff, e.to_string()))?
        .filter(|row| row.status == status::ACTIVE)
        .ok_or_else(|| fail(refused, "the connection is disconnected".to_owned()))?;
    let client = connections
        .client_for(&row)
        .map_err(|e| fail(refused, e.to_string()))?;
    let stripe_error = |e: crate::stripe::StripeError| match e.status() {
        Some(401 | 403) => fail(refused, e.to_string()),
        _ => fail(backoff, e.to_string()),
    };
    let path = format!("invoices/{}", invoice.stripe_invoice_id);
    let mut object = client.get(&path, &[]).await.map_err(stripe_error)?;
    complete_lines(&client, &mut object)
        .await
        .map_err(stripe_error)?;
    let livemode = object["livemode"].as_bool().unwrap_or(row.mode == "live");
    let event = listed_event(&row.id, "invoices", &object, livemode)
        .ok_or_else(|| fail(backoff, "Stripe's invoice has no id".to_owned()))?;
    db.run(move |conn| events::insert_new(conn, [&event]))
        .await
        .map_err(|e| fail(backoff, e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_from_a_minute_to_an_hour() {
        let minutes: Vec<i64> = (0..9).map(|n| backoff(n).num_minutes()).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(refused(0), TimeDelta::days(1));
    }
}
