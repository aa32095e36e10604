//! How invoices look in answers: amounts with their currency and a display form, the sync state,
//! the Pay Now link, and in detail the lines, payments and a timeline of what happened when.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::money::display;
use crate::domain::time;
use crate::storage::invoices::{self as store, InvoiceRow};
use crate::storage::{tokens, DbConnection, StorageError};

#[derive(Debug, Serialize)]
pub struct InvoiceView {
    pub id: String,
    pub connection_id: String,
    /// `billmirror` (made here) or `stripe` (created in Stripe, mirrored).
    pub origin: String,
    pub status: String,
    pub sync: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<Value>>,
}

pub fn summary(row: InvoiceRow, public_url: &str) -> InvoiceView {
    let sync = match row.sync_state.as_str() {
        "mirrored" => "pushed".to_owned(),
        other => other.to_owned(),
    };
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
        sync,
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
        last_payment_error: row.last_payment_error,
        next_payment_attempt: row.next_payment_attempt,
        paid_at: row.paid_at,
        created_at: row.created_at,
        lines: None,
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
    let mut timeline: Vec<(NaiveDateTime, Value)> = tokens::audit_entries(conn, &row.id)?
        .into_iter()
        .map(|a| {
            (
                a.at,
                json!({"at": time::rfc3339(a.at), "what": a.action, "by": a.actor}),
            )
        })
        .collect();
    let mut stripe_moment = |at: Option<NaiveDateTime>, what: &str| {
        if let Some(at) = at {
            timeline.push((
                at,
                json!({"at": time::rfc3339(at), "what": what, "by": "stripe"}),
            ));
        }
    };
    stripe_moment(row.finalized_at, "invoice.finalized");
    stripe_moment(row.paid_at, "invoice.paid");
    stripe_moment(row.voided_at, "invoice.voided");
    let payments: Vec<Value> = payments
        .into_iter()
        .map(
            |(id, amount, currency, status, method, brand, last4, created)| {
                stripe_moment(created, &format!("payment.{status}"));
                json!({
                    "id": id, "amount": amount, "currency": currency, "status": status,
                    "amount_display": display(amount, &currency),
                    "method": {"type": method, "brand": brand, "last4": last4},
                    "created": created.map(time::rfc3339),
                })
            },
        )
        .collect();
    timeline.sort_by_key(|entry| entry.0);
    let mut view = summary(row, public_url);
    view.lines = Some(lines);
    view.payments = Some(payments);
    view.timeline = Some(timeline.into_iter().map(|(_, v)| v).collect());
    Ok(view)
}
