//! How invoices look in answers: amounts with their currency and a display form, the sync state,
//! the Pay Now link, and in detail the lines, payments and a timeline of what happened when.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::money::display;
use crate::domain::states::{InvoiceOrigin, InvoiceStatus, SyncState};
use crate::domain::time;
use crate::storage::attempts;
use crate::storage::invoices::{self as store, InvoiceRow};
use crate::storage::{tokens, DbConnection, StorageError};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceView {
    pub id: String,
    pub connection_id: String,
    /// `billmirror` (made here) or `stripe` (created in Stripe, mirrored).
    pub origin: InvoiceOrigin,
    pub status: InvoiceStatus,
    pub sync: SyncState,
    pub sync_error: Option<String>,
    pub customer: Value,
    pub currency: String,
    pub total: i64,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub amount_remaining: i64,
    pub total_display: String,
    pub memo: Option<String>,
    #[serde(with = "time::serde_rfc3339::option")]
    pub due_date: Option<NaiveDateTime>,
    pub number: Option<String>,
    pub stripe_invoice_id: Option<String>,
    pub hosted_invoice_url: Option<String>,
    /// Stripe's PDF of the finalized invoice (in an invoice's detail, once Stripe made one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_pdf: Option<String>,
    pub pay_url: Option<String>,
    pub last_payment_error: Option<String>,
    #[serde(with = "time::serde_rfc3339::option")]
    pub next_payment_attempt: Option<NaiveDateTime>,
    #[serde(with = "time::serde_rfc3339::option")]
    pub paid_at: Option<NaiveDateTime>,
    #[serde(with = "time::serde_rfc3339")]
    pub created_at: NaiveDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<Value>>,
    /// False while Stripe's events showed only the first page of a longer invoice's lines and the
    /// rest has not been read yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines_complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<Value>>,
}

pub fn summary(row: InvoiceRow, public_url: &str) -> InvoiceView {
    InvoiceView {
        pay_url: row
            .pay_token
            .as_ref()
            .map(|t| format!("{public_url}/pay/{t}")),
        total_display: display(row.total, &row.currency),
        customer: json!({
            "email": row.customer_email,
            "name": row.customer_name,
            "stripe_customer_id": row.stripe_customer_id,
        }),
        id: row.id,
        connection_id: row.connection_id,
        origin: row.origin,
        status: row.status,
        sync: row.sync_state,
        sync_error: row.sync_error,
        currency: row.currency,
        total: row.total,
        amount_due: row.amount_due,
        amount_paid: row.amount_paid,
        amount_remaining: row.amount_remaining,
        memo: row.memo,
        due_date: row.due_date,
        number: row.number,
        stripe_invoice_id: row.stripe_id,
        hosted_invoice_url: row.hosted_invoice_url,
        invoice_pdf: None,
        last_payment_error: row.last_payment_error,
        next_payment_attempt: row.next_payment_attempt,
        paid_at: row.paid_at,
        created_at: row.created_at,
        lines: None,
        lines_complete: None,
        payments: None,
        timeline: None,
    }
}

pub fn detail(
    conn: &mut DbConnection,
    row: InvoiceRow,
    public_url: &str,
) -> Result<InvoiceView, StorageError> {
    let lines = store::lines(conn, &row.id)?
        .into_iter()
        .map(|l| {
            json!({
                "description": l.description, "quantity": l.quantity, "unit_amount": l.unit_amount,
                "amount": l.amount, "currency": l.currency, "amount_display": display(l.amount, &l.currency),
            })
        })
        .collect();
    let payments = match &row.stripe_id {
        Some(stripe_id) => store::payments_for(conn, &row.connection_id, stripe_id)?,
        None => Vec::new(),
    };
    let lines_complete = store::lines_complete(conn, &row.id)?;
    let invoice_pdf = store::pdf(conn, &row.id)?;
    let mut timeline: Vec<Moment> = tokens::audit_entries(conn, &row.id)?
        .into_iter()
        .map(|a| Moment::new(a.at, &a.action, &a.actor))
        .collect();
    let mut stripe_moment = |at: Option<NaiveDateTime>, what: &str| {
        timeline.extend(at.map(|at| Moment::new(at, what, "stripe")));
    };
    stripe_moment(row.finalized_at, "invoice.finalized");
    stripe_moment(row.paid_at, "invoice.paid");
    stripe_moment(row.voided_at, "invoice.voided");
    let ids: Vec<String> = payments.iter().map(|p| p.0.clone()).collect();
    let attempts = attempts::of_payments(conn, &ids)?;
    let payments: Vec<Value> = payments
        .into_iter()
        .map(
            |(id, amount, currency, status, method, brand, last4, created)| {
                stripe_moment(created, &format!("payment.{status}"));
                let tried: Vec<Value> = attempts
                    .iter()
                    .filter(|a| a.payment_stripe_id == id && a.connection_id == row.connection_id)
                    .map(crate::billing::attempt_json)
                    .collect();
                json!({
                    "id": id, "amount": amount, "currency": currency, "status": status,
                    "amount_display": display(amount, &currency),
                    "method": {"type": method, "brand": brand, "last4": last4},
                    "created": created.map(time::rfc3339),
                    "attempts": tried,
                })
            },
        )
        .collect();
    timeline.sort_by(Moment::order);
    let mut view = summary(row, public_url);
    view.lines = Some(lines);
    view.lines_complete = Some(lines_complete);
    view.invoice_pdf = invoice_pdf;
    view.payments = Some(payments);
    view.timeline = Some(timeline.into_iter().map(|m| m.json).collect());
    Ok(view)
}

/// One entry of an invoice's timeline.
struct Moment {
    at: NaiveDateTime,
    cause: u8,
    json: Value,
}

impl Moment {
    fn new(at: NaiveDateTime, what: &str, by: &str) -> Moment {
        Moment {
            at,
            cause: cause_rank(what),
            json: json!({"at": time::rfc3339(at), "what": what, "by": by}),
        }
    }

    /// By the full timestamp, then by order of cause. Stripe's times have whole seconds and ours
    /// microseconds, so within Stripe's second our create (10:00:00.7) still comes before the
    /// finalize it caused (10:00:00): the comparison is at the coarser of the two precisions.
    fn order(a: &Moment, b: &Moment) -> std::cmp::Ordering {
        let second = |m: &Moment| m.at.and_utc().timestamp();
        second(a)
            .cmp(&second(b))
            .then_with(|| a.cause.cmp(&b.cause))
            .then_with(|| a.at.cmp(&b.at))
    }
}

/// Where a step sits in an invoice's life: what causes what comes first.
fn cause_rank(what: &str) -> u8 {
    match what {
        w if w.ends_with(".create") || w == "invoice.created" => 0,
        "invoice.finalized" => 2,
        // Our push records its end after Stripe finalized.
        "invoice.pushed" => 3,
        w if w.starts_with("payment.") => 4,
        "invoice.paid" => 5,
        "invoice.void" | "invoice.voided" | "invoice.push_cancelled" => 6,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64, micros: u32) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(unix, micros * 1000)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn the_timeline_orders_by_time_then_by_cause_within_stripes_second() {
        let mut moments = [
            Moment::new(at(100, 0), "invoice.paid", "stripe"),
            Moment::new(at(100, 0), "invoice.finalized", "stripe"),
            Moment::new(at(100, 700_000), "invoice.create", "token:finance"),
            Moment::new(at(99, 900_000), "invoice.retry", "token:finance"),
            Moment::new(at(101, 0), "payment.succeeded", "stripe"),
            Moment::new(at(100, 900_000), "invoice.pushed", "billmirror"),
        ];
        moments.sort_by(Moment::order);
        let order: Vec<&str> = moments
            .iter()
            .map(|m| m.json["what"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "invoice.retry",
                "invoice.create",
                "invoice.finalized",
                "invoice.pushed",
                "invoice.paid",
                "payment.succeeded"
            ]
        );
    }
}
