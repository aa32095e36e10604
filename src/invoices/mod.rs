//! Payable invoices made in billmirror: parsed input, the invoice and its push job written in one
//! transaction (with the request's idempotency key), the push worker that creates each in Stripe
//! exactly once, voiding, retrying a failed push, and the views.

pub mod input;
pub mod push;
pub mod view;

use chrono::NaiveDateTime;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::connections::{ConnectionError, Connections};
use crate::domain::states::{ConnectionAuth, InvoiceOrigin, InvoiceStatus, SyncState};
use crate::domain::{ids, time};
use crate::jobs::{self, JobKind, JobState, NewJob};
use crate::storage::connections::{
    self as connection_store, key_status, status as connection_status,
};
use crate::storage::invoices::{self as store, IdempotencyRow, InvoiceRow, LineRow, PushProgress};
use crate::storage::jobs as job_store;
use crate::storage::{tokens, Db, StorageError};
use input::{Due, InputError, NewInvoice};

#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    #[error("{}", .0.message)]
    Input(InputError),
    #[error("no invoice has that id")]
    NotFound,
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("the Idempotency-Key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn input_error(code: &'static str, field: &str, message: impl Into<String>) -> InvoiceError {
    InvoiceError::Input(InputError {
        code,
        field: field.to_owned(),
        message: message.into(),
    })
}

/// Picks the connection an invoice is pushed through: the one named, else the only live one,
/// else the only one, among the active connections that hold a secret key (the environment's
/// counts once `STRIPE_SECRET_KEY` is set). The choice never depends on whether Stripe answered
/// lately, so an outage cannot send an invoice to another account. The connection must then be
/// able to create invoices, and each reason it cannot has its own code and remedy.
fn choose_connection(
    conn: &mut crate::storage::DbConnection,
    named: Option<&str>,
) -> Result<String, InvoiceError> {
    let row = match named {
        Some(id) => connection_store::find(conn, id)?.ok_or_else(|| {
            input_error(
                "unknown_connection",
                "connection_id",
                format!("connection_id `{id}` names no connection."),
            )
        })?,
        None => {
            let mut active = connection_store::active_with_keys(conn)?;
            // "Connect with Stripe" connections are read-only: never a default for pushing.
            active.retain(|c| c.auth == ConnectionAuth::Key);
            let live: Vec<_> = active.iter().filter(|c| c.mode == "live").collect();
            match (live.as_slice(), active.as_slice()) {
                ([one], _) => (*one).clone(),
                ([], [one]) => one.clone(),
                (_, []) => return Err(input_error("no_connection", "connection_id", "No Stripe connection can take invoices: connect an account first (POST /api/connections) or set STRIPE_SECRET_KEY.")),
                _ => return Err(input_error("connection_required", "connection_id", "connection_id is required: several Stripe connections are active.")),
            }
        }
    };
    if row.status == connection_status::DISCONNECTED {
        return Err(input_error(
            "connection_disconnected",
            "connection_id",
            format!(
                "connection_id `{}` is disconnected: invoices cannot be pushed through it.",
                row.id
            ),
        ));
    }
    if row.auth != ConnectionAuth::Key {
        return Err(input_error("connection_read_only", "connection_id", format!("connection_id `{}` was connected with \"Connect with Stripe\", which grants billmirror read-only access: it mirrors the account but cannot push invoices through it. To push invoices, connect the account with a secret or restricted key that may write.", row.id)));
    }
    if row.secret_key_enc.is_none() {
        return Err(input_error("connection_no_key", "connection_id", format!("connection_id `{}` has no secret key (only STRIPE_WEBHOOK_SECRET or STRIPE_PUBLISHABLE_KEY is set): set STRIPE_SECRET_KEY and restart to push invoices through it.", row.id)));
    }
    match row.key_status {
        key_status::REJECTED => {
            let remedy = if row.origin == connection_store::ENV_ORIGIN {
                "set a valid STRIPE_SECRET_KEY and restart"
            } else {
                "connect a valid key (POST /api/connections)"
            };
            return Err(input_error("connection_key_rejected", "connection_id", format!("Stripe refused the secret key of connection_id `{}` (revoked, rolled or unknown): {remedy}; its key report says more.", row.id)));
        }
        key_status::UNVERIFIED => {
            return Err(input_error("connection_unverified", "connection_id", format!("The secret key of connection_id `{0}` has not been checked by Stripe yet (Stripe could not be reached when it was last checked), so whether it may create invoices is unknown: run its key report again with POST /api/connections/{0}/validate.", row.id)));
        }
        _ => {}
    }
    if !row.can_push {
        return Err(input_error("connection_read_only", "connection_id", format!("connection_id `{}` has a read-only key: it may not create customers, invoices or invoice items in Stripe (see its key report).", row.id)));
    }
    Ok(row.id)
}

/// The id billmirror gives a customer of one connection: its email's, so that every invoice to
/// one address goes to one Stripe customer.
pub fn customer_key(connection_id: &str, normalized_email: &str) -> String {
    let digest = Sha256::digest(format!("{connection_id}\0{normalized_email}").as_bytes());
    format!("bmc_{}", &hex::encode(digest)[..24])
}

fn rows_for(
    new: &NewInvoice,
    connection_id: &str,
    now: NaiveDateTime,
) -> (InvoiceRow, Vec<LineRow>, String) {
    let id = ids::new_id("inv");
    let total = new.total();
    let due_date = match new.due {
        Due::On(date) => date.and_hms_opt(0, 0, 0),
        Due::DaysAfterFinalizing(_) => None,
    };
    let invoice = InvoiceRow {
        id: id.clone(),
        connection_id: connection_id.to_owned(),
        stripe_id: None,
        origin: InvoiceOrigin::Billmirror,
        number: None,
        stripe_customer_id: None,
        customer_email: Some(new.email.as_str().to_owned()),
        customer_email_normalized: Some(new.email.normalized()),
        customer_name: new.name.clone(),
        stripe_subscription_id: None,
        currency: new.currency.code().to_owned(),
        total,
        amount_due: total,
        amount_paid: 0,
        amount_remaining: total,
        status: InvoiceStatus::Draft,
        due_date,
        memo: new.memo.clone(),
        hosted_invoice_url: None,
        // 128 random bits: the Pay Now link cannot be guessed from the invoice id or number.
        pay_token: Some(hex::encode(ids::random_bytes::<16>())),
        attempt_count: 0,
        next_payment_attempt: None,
        last_payment_error: None,
        sync_state: SyncState::Pending,
        sync_error: None,
        finalized_at: None,
        paid_at: None,
        voided_at: None,
        stripe_created: None,
        observed_at: now,
        created_at: now,
        updated_at: now,
    };
    let lines = new
        .lines
        .iter()
        .enumerate()
        .map(|(n, line)| LineRow {
            id: ids::new_id("line"),
            invoice_id: id.clone(),
            stripe_id: None,
            line_no: n as i32 + 1,
            description: line.description.clone(),
            quantity: line.quantity,
            unit_amount: Some(line.unit_amount),
            amount: line.amount,
            currency: new.currency.code().to_owned(),
            stripe_price_id: None,
            period_start: None,
            period_end: None,
        })
        .collect();
    let payload = match new.due {
        Due::DaysAfterFinalizing(days) => json!({"days_until_due": days}),
        Due::On(_) => json!({}),
    };
    (invoice, lines, payload.to_string())
}

/// Creates an invoice and its push job. With an idempotency key, the same key and body give the
/// same invoice (`Ok((id, false))`), even for two requests at the same moment.
pub async fn create(
    db: &Db,
    principal: &Principal,
    idempotency_key: Option<String>,
    body: Value,
) -> Result<(String, bool), InvoiceError> {
    let new = input::parse(&body, chrono::Utc::now().date_naive()).map_err(InvoiceError::Input)?;
    let request_hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    let scope = format!("invoices:{}", principal.token_id);
    let actor = principal.name.clone();
    let attempt = {
        let (new, key, scope, hash, actor) = (
            new.clone(),
            idempotency_key.clone(),
            scope.clone(),
            request_hash.clone(),
            actor.clone(),
        );
        db.run(move |conn| {
            Ok(conn.write_transaction(|conn| {
                if let Some(key) = &key {
                    if let Some(seen) = store::find_idempotency(conn, &scope, key)? {
                        return Ok(Err(seen));
                    }
                }
                let connection_id = choose_connection(conn, new.connection_id.as_deref())?;
                let now = time::now();
                let (invoice, lines, payload) = rows_for(&new, &connection_id, now);
                store::insert(conn, &invoice, &lines)?;
                jobs::enqueue(
                    conn,
                    &NewJob {
                        kind: JobKind::PushInvoice,
                        subject_id: &invoice.id,
                        connection_id: &connection_id,
                        payload: Some(payload),
                        dedupe_key: &invoice.id,
                    },
                )?;
                if let Some(key) = &key {
                    store::insert_idempotency(
                        conn,
                        &IdempotencyRow {
                            scope: scope.clone(),
                            idem_key: key.clone(),
                            request_hash: hash.clone(),
                            resource_id: invoice.id.clone(),
                            created_at: now,
                        },
                    )?;
                }
                tokens::audit(
                    conn,
                    &actor,
                    "invoice.create",
                    &invoice.id,
                    json!({
                        "total": invoice.total, "currency": invoice.currency,
                        "connection_id": connection_id, "idempotency_key": key,
                    }),
                )?;
                Ok::<_, InvoiceError>(Ok(invoice.id))
            }))
        })
        .await?
    };
    let seen = match attempt {
        Ok(Ok(id)) => return Ok((id, true)),
        Ok(Err(seen)) => seen,
        // Two requests with one key at once: the other committed first; answer with its invoice.
        Err(InvoiceError::Storage(e)) if e.is_unique_violation() && idempotency_key.is_some() => {
            let key = idempotency_key.clone().unwrap_or_default();
            db.run(move |conn| store::find_idempotency(conn, &scope, &key))
                .await?
                .ok_or(InvoiceError::Storage(e))?
        }
        Err(e) => return Err(e),
    };
    if seen.request_hash != request_hash {
        return Err(InvoiceError::KeyReused);
    }
    Ok((seen.resource_id, false))
}

/// Voids an invoice: in Stripe when it is there, else by cancelling its push. Paid ones cannot.
pub async fn void(
    db: &Db,
    connections: &Connections,
    id: &str,
    actor: &str,
) -> Result<(), InvoiceError> {
    let invoice = {
        let id = id.to_owned();
        db.run(move |conn| store::find(conn, &id))
            .await?
            .ok_or(InvoiceError::NotFound)?
    };
    match invoice.status {
        InvoiceStatus::Paid => {
            return Err(InvoiceError::Conflict(
                "invoice_paid",
                "This invoice is paid and cannot be voided; refund the payment in Stripe instead."
                    .into(),
            ))
        }
        status if status.is_ended() => return Ok(()),
        _ => {}
    }
    if invoice.origin != InvoiceOrigin::Billmirror {
        return Err(InvoiceError::Conflict(
            "not_ours",
            "This invoice was created in Stripe; void it there.".into(),
        ));
    }
    let mut unlink = false;
    let mut progress = PushProgress {
        status: Some(InvoiceStatus::Void),
        voided_at: Some(time::now()),
        updated_at: Some(time::now()),
        ..PushProgress::default()
    };
    if let Some(stripe_id) = &invoice.stripe_id {
        let row = {
            let cid = invoice.connection_id.clone();
            db.run(move |conn| connection_store::find(conn, &cid))
                .await?
                .ok_or(ConnectionError::NotFound)?
        };
        let client = connections.client_for(&row).await?;
        let retrieve = stripe_billing::invoice::RetrieveInvoice::new(stripe_id.as_str());
        let current = match crate::stripe::typed::send(&client, &retrieve, None).await {
            Ok(current) => Some(current),
            // Already deleted (by a push that saw the void first): nothing left to take back.
            Err(e) if e.status() == Some(404) => None,
            Err(e) => return Err(ConnectionError::Stripe(e).into()),
        };
        let draft = current
            .as_ref()
            .and_then(push::remote_status)
            .is_some_and(|s| s == InvoiceStatus::Draft);
        let done = if current.is_none() {
            Ok(())
        } else if draft {
            push::discard_draft(db, &client, &invoice.id, stripe_id).await
        } else {
            let void = stripe_billing::invoice::VoidInvoiceInvoice::new(stripe_id.as_str());
            let base = format!("bm:{}:void", invoice.id);
            push::keyed_send(db, &base, &client, &void).await.map(drop)
        };
        match done {
            Ok(()) => {}
            Err(push::StepError::Stripe(e)) => return Err(ConnectionError::Stripe(e).into()),
            Err(push::StepError::Storage(e)) => return Err(e.into()),
        }
        // A deleted draft is gone from Stripe: nothing here points at it any more.
        unlink = draft || current.is_none();
    } else {
        progress.sync_state = Some(SyncState::Cancelled);
    }
    let (id, actor, had_stripe) = (
        invoice.id.clone(),
        actor.to_owned(),
        invoice.stripe_id.is_some(),
    );
    db.run(move |conn| {
        conn.write_transaction(|conn| {
            store::record_progress(conn, &id, &progress)?;
            if unlink {
                store::unlink_stripe_invoice(conn, &id)?;
            }
            if let Some(job) = job_store::find_for(conn, JobKind::PushInvoice, &id)? {
                if matches!(
                    job.status,
                    JobState::Pending | JobState::Failed | JobState::Dead
                ) {
                    job_store::finish(
                        conn,
                        &job.id,
                        JobState::Cancelled,
                        Some("voided"),
                        time::now(),
                    )?;
                }
            }
            tokens::audit(
                conn,
                &actor,
                "invoice.void",
                &id,
                json!({"in_stripe": had_stripe}),
            )
        })
    })
    .await?;
    Ok(())
}

/// Puts a failed push back in the queue, after its cause was fixed.
pub async fn retry_push(db: &Db, id: &str, actor: &str) -> Result<(), InvoiceError> {
    let (id, actor) = (id.to_owned(), actor.to_owned());
    db.run(move |conn| {
        Ok(conn.write_transaction(|conn| {
            let invoice = store::find(conn, &id)?.ok_or(InvoiceError::NotFound)?;
            let job = job_store::find_for(conn, JobKind::PushInvoice, &id)?
                .ok_or(InvoiceError::NotFound)?;
            if invoice.sync_state != SyncState::Failed {
                return Err(InvoiceError::Conflict(
                    "not_failed",
                    format!(
                        "The push is {}, not failed: there is nothing to retry.",
                        invoice.sync_state
                    ),
                ));
            }
            jobs::enqueue(
                conn,
                &NewJob {
                    kind: job.kind,
                    subject_id: &job.subject_id,
                    connection_id: &job.connection_id,
                    payload: job.payload.clone(),
                    dedupe_key: &job.dedupe_key,
                },
            )?;
            store::record_progress(
                conn,
                &id,
                &PushProgress {
                    sync_state: Some(SyncState::Pending),
                    sync_error: Some(None),
                    updated_at: Some(time::now()),
                    ..PushProgress::default()
                },
            )?;
            tokens::audit(conn, &actor, "invoice.retry_push", &id, json!({}))?;
            Ok(())
        }))
    })
    .await?
}
