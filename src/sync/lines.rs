//! Completing mirrored invoices' lines. Stripe's event payloads carry an invoice's first page of
//! lines and say `has_more: true` when there are more; the fold keeps the longest list it has seen,
//! records the invoice as incomplete and enqueues a `complete_invoice_lines` job. This handler
//! reads the invoice with all its lines (`GET /v1/invoices/{id}/lines`, every page) and stores it
//! as a listed event, which the apply worker folds like any other: the complete list wins, and the
//! invoice is complete again.

use super::backfill::complete_lines;
use super::listed_event;
use crate::connections::Connections;
use crate::jobs::{Handler, JobKind, JobRow, Outcome};
use crate::storage::connections::{self as connection_store, status};
use crate::storage::invoices as store;
use crate::storage::{events, Db};
use crate::stripe::StripeError;

#[derive(Clone)]
pub struct LinesReader {
    db: Db,
    connections: Connections,
}

impl LinesReader {
    pub fn new(db: Db, connections: Connections) -> LinesReader {
        LinesReader { db, connections }
    }
}

/// A key that may not read invoices needs a person; anything else may pass.
fn stripe_outcome(error: StripeError) -> Outcome {
    match error.status() {
        Some(401 | 403) => Outcome::Failed(error.to_string()),
        _ if error.is_unavailable() => Outcome::Retry(error.to_string()),
        _ => Outcome::Failed(error.to_string()),
    }
}

impl Handler for LinesReader {
    const KIND: JobKind = JobKind::CompleteInvoiceLines;

    async fn run(&self, job: JobRow) -> Outcome {
        let invoice_id = job.subject_id.clone();
        let stripe_id = match self
            .db
            .run(move |conn| store::incomplete_lines_of(conn, &invoice_id))
            .await
        {
            Ok(Some(stripe_id)) => stripe_id,
            // Completed meanwhile (a later event or a backfill carried every line).
            Ok(None) => return Outcome::Done,
            Err(e) => return e.into(),
        };
        let connection_id = job.connection_id.clone();
        let row = match self
            .db
            .run(move |conn| connection_store::find(conn, &connection_id))
            .await
        {
            Ok(Some(row)) if row.status == status::ACTIVE => row,
            Ok(_) => return Outcome::Cancelled("the connection is disconnected".into()),
            Err(e) => return e.into(),
        };
        let client = match self.connections.client_for(&row).await {
            Ok(client) => client,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let retrieve = stripe_billing::invoice::RetrieveInvoice::new(stripe_id.as_str());
        // Typed, and kept as the JSON Stripe sent for the ledger.
        let mut invoice = match crate::stripe::typed::send_raw(&client, &retrieve, None).await {
            Ok((_, invoice)) => invoice,
            Err(e) => return stripe_outcome(e),
        };
        if let Err(e) = complete_lines(&client, &mut invoice).await {
            return stripe_outcome(e);
        }
        let livemode = invoice["livemode"].as_bool().unwrap_or(row.mode == "live");
        let Some(event) = listed_event(&row.id, "invoices", &invoice, livemode) else {
            return Outcome::Failed("Stripe's invoice has no id".into());
        };
        match self
            .db
            .run(move |conn| events::insert_new(conn, [&event]))
            .await
        {
            Ok(_) => Outcome::Done,
            Err(e) => e.into(),
        }
    }
}
