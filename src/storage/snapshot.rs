//! The mirrored ledger of one connection as plain JSON, without our row ids and bookkeeping times:
//! what two ledgers are compared by (the order-independence tests) and what an export shows.

use diesel::prelude::*;
use serde_json::{json, Value};

use super::schema::{
    customers, disputes, invoice_lines, invoices, payments, refunds, subscriptions,
};
use super::{DbConnection, StorageError};
use crate::domain::time::rfc3339;

fn t(at: Option<chrono::NaiveDateTime>) -> Value {
    at.map_or(Value::Null, |at| Value::String(rfc3339(at)))
}

pub fn snapshot(conn: &mut DbConnection, connection_id: &str) -> Result<Value, StorageError> {
    let customers: Vec<Value> = customers::table
        .filter(customers::connection_id.eq(connection_id))
        .order(customers::stripe_id)
        .select((customers::stripe_id, customers::email, customers::email_normalized, customers::name, customers::deleted))
        .load::<(String, Option<String>, Option<String>, Option<String>, bool)>(conn)?
        .into_iter()
        .map(|(id, email, norm, name, deleted)| json!({"id": id, "email": email, "email_normalized": norm, "name": name, "deleted": deleted}))
        .collect();
    let subscriptions: Vec<Value> = subscriptions::table
        .filter(subscriptions::connection_id.eq(connection_id))
        .order(subscriptions::stripe_id)
        .select((
            subscriptions::stripe_id,
            subscriptions::status,
            subscriptions::stripe_customer_id,
            subscriptions::stripe_price_id,
            subscriptions::plan_name,
            subscriptions::billing_interval,
            subscriptions::amount,
            subscriptions::current_period_end,
            subscriptions::cancel_at_period_end,
            subscriptions::canceled_at,
            subscriptions::ended_at,
        ))
        .load::<(String, String, Option<String>, Option<String>, Option<String>, Option<String>, Option<i64>, Option<chrono::NaiveDateTime>, bool, Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>)>(conn)?
        .into_iter()
        .map(|(id, status, customer, price, plan, interval, amount, period_end, cape, canceled, ended)| {
            json!({"id": id, "status": status, "customer": customer, "price": price, "plan_name": plan,
                   "interval": interval, "amount": amount, "current_period_end": t(period_end),
                   "cancel_at_period_end": cape, "canceled_at": t(canceled), "ended_at": t(ended)})
        })
        .collect();
    let invoice_rows = invoices::table
        .filter(invoices::connection_id.eq(connection_id))
        .order(invoices::stripe_id)
        .select((
            invoices::id,
            invoices::stripe_id,
            invoices::status,
            invoices::currency,
            invoices::total,
            invoices::amount_paid,
            invoices::amount_remaining,
            invoices::attempt_count,
            invoices::next_payment_attempt,
            invoices::last_payment_error,
            invoices::stripe_subscription_id,
            invoices::customer_email_normalized,
            invoices::paid_at,
        ))
        .load::<(
            String,
            Option<String>,
            String,
            String,
            i64,
            i64,
            i64,
            i32,
            Option<chrono::NaiveDateTime>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<chrono::NaiveDateTime>,
        )>(conn)?;
    let mut invoices = Vec::new();
    for (
        id,
        stripe_id,
        status,
        currency,
        total,
        paid,
        remaining,
        attempts,
        next,
        error,
        sub,
        email,
        paid_at,
    ) in invoice_rows
    {
        let lines: Vec<(String, i64, i64)> = invoice_lines::table
            .filter(invoice_lines::invoice_id.eq(&id))
            .order(invoice_lines::line_no)
            .select((
                invoice_lines::description,
                invoice_lines::quantity,
                invoice_lines::amount,
            ))
            .load(conn)?;
        invoices.push(
            json!({"id": stripe_id, "status": status, "currency": currency, "total": total,
            "amount_paid": paid, "amount_remaining": remaining, "attempt_count": attempts,
            "next_payment_attempt": t(next), "last_payment_error": error, "subscription": sub,
            "customer_email": email, "paid_at": t(paid_at), "lines": lines}),
        );
    }
    let payments: Vec<Value> = payments::table
        .filter(payments::connection_id.eq(connection_id))
        .order(payments::stripe_id)
        .select((
            payments::stripe_id,
            payments::status,
            payments::amount,
            payments::currency,
            payments::charge_id,
            payments::stripe_invoice_id,
            payments::method_type,
            payments::card_brand,
            payments::card_last4,
            payments::amount_refunded,
            payments::disputed,
            payments::failure_message,
        ))
        .load::<(String, String, i64, String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, i64, bool, Option<String>)>(conn)?
        .into_iter()
        .map(|(id, status, amount, currency, charge, invoice, method, brand, last4, refunded, disputed, failure)| {
            json!({"id": id, "status": status, "amount": amount, "currency": currency, "charge": charge,
                   "invoice": invoice, "method_type": method, "card_brand": brand, "card_last4": last4,
                   "amount_refunded": refunded, "disputed": disputed, "failure_message": failure})
        })
        .collect();
    let refunds: Vec<Value> = refunds::table
        .filter(refunds::connection_id.eq(connection_id))
        .order(refunds::stripe_id)
        .select((refunds::stripe_id, refunds::status, refunds::amount, refunds::charge_id, refunds::reason))
        .load::<(String, String, i64, Option<String>, Option<String>)>(conn)?
        .into_iter()
        .map(|(id, status, amount, charge, reason)| json!({"id": id, "status": status, "amount": amount, "charge": charge, "reason": reason}))
        .collect();
    let disputes: Vec<Value> = disputes::table
        .filter(disputes::connection_id.eq(connection_id))
        .order(disputes::stripe_id)
        .select((disputes::stripe_id, disputes::status, disputes::amount, disputes::reason, disputes::evidence_due_by))
        .load::<(String, String, i64, Option<String>, Option<chrono::NaiveDateTime>)>(conn)?
        .into_iter()
        .map(|(id, status, amount, reason, due)| json!({"id": id, "status": status, "amount": amount, "reason": reason, "evidence_due_by": t(due)}))
        .collect();
    Ok(json!({
        "customers": customers,
        "subscriptions": subscriptions,
        "invoices": invoices,
        "payments": payments,
        "refunds": refunds,
        "disputes": disputes,
    }))
}
