//! The billing-context queries: a person's customers by normalised email across connections, and
//! everything that points at them. Each list is one indexed query; none scans a table.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::invoices::InvoiceRow;
use super::schema::{customers, disputes, invoices, payments, refunds, subscriptions};
use super::{DbConnection, StorageError};

#[derive(Debug, Clone, Queryable)]
pub struct CustomerRow {
    pub connection_id: String,
    pub stripe_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub deleted: bool,
    pub stripe_created: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable)]
pub struct PaymentRow {
    pub connection_id: String,
    pub stripe_id: String,
    pub payment_intent_id: Option<String>,
    pub charge_id: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_invoice_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub method_type: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub amount_refunded: i64,
    pub disputed: bool,
    pub description: Option<String>,
    pub stripe_created: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable)]
pub struct SubscriptionRow {
    pub connection_id: String,
    pub stripe_id: String,
    pub stripe_customer_id: Option<String>,
    pub status: String,
    pub plan_name: Option<String>,
    pub billing_interval: Option<String>,
    pub interval_count: Option<i32>,
    pub quantity: Option<i64>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub current_period_end: Option<NaiveDateTime>,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<NaiveDateTime>,
    pub canceled_at: Option<NaiveDateTime>,
    pub ended_at: Option<NaiveDateTime>,
    pub trial_end: Option<NaiveDateTime>,
    pub stripe_created: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable)]
pub struct RefundRow {
    pub connection_id: String,
    pub stripe_id: String,
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
    pub stripe_created: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable)]
pub struct DisputeRow {
    pub connection_id: String,
    pub stripe_id: String,
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
    pub evidence_due_by: Option<NaiveDateTime>,
    pub stripe_created: Option<NaiveDateTime>,
}

pub fn customers_by_email(
    conn: &mut DbConnection,
    emails: &[String],
) -> Result<Vec<CustomerRow>, StorageError> {
    Ok(customers::table
        .filter(customers::email_normalized.eq_any(emails))
        .select((
            customers::connection_id,
            customers::stripe_id,
            customers::email,
            customers::name,
            customers::deleted,
            customers::stripe_created,
        ))
        .order((customers::stripe_created.desc(), customers::stripe_id))
        .load(conn)?)
}

/// Newest first, at most `limit`.
pub fn payments_of(
    conn: &mut DbConnection,
    customer_ids: &[String],
    limit: i64,
) -> Result<Vec<PaymentRow>, StorageError> {
    Ok(payments::table
        .filter(payments::stripe_customer_id.eq_any(customer_ids))
        .select((
            payments::connection_id,
            payments::stripe_id,
            payments::payment_intent_id,
            payments::charge_id,
            payments::stripe_customer_id,
            payments::stripe_invoice_id,
            payments::amount,
            payments::currency,
            payments::status,
            payments::failure_code,
            payments::failure_message,
            payments::method_type,
            payments::card_brand,
            payments::card_last4,
            payments::amount_refunded,
            payments::disputed,
            payments::description,
            payments::stripe_created,
        ))
        .order((payments::stripe_created.desc(), payments::stripe_id.desc()))
        .limit(limit)
        .load(conn)?)
}

pub fn subscriptions_of(
    conn: &mut DbConnection,
    customer_ids: &[String],
    status: Option<&str>,
) -> Result<Vec<SubscriptionRow>, StorageError> {
    let mut query = subscriptions::table
        .filter(subscriptions::stripe_customer_id.eq_any(customer_ids))
        .select((
            subscriptions::connection_id,
            subscriptions::stripe_id,
            subscriptions::stripe_customer_id,
            subscriptions::status,
            subscriptions::plan_name,
            subscriptions::billing_interval,
            subscriptions::interval_count,
            subscriptions::quantity,
            subscriptions::amount,
            subscriptions::currency,
            subscriptions::current_period_end,
            subscriptions::cancel_at_period_end,
            subscriptions::cancel_at,
            subscriptions::canceled_at,
            subscriptions::ended_at,
            subscriptions::trial_end,
            subscriptions::stripe_created,
        ))
        .order((
            subscriptions::stripe_created.desc(),
            subscriptions::stripe_id,
        ))
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(subscriptions::status.eq(status.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// Invoices to these customers, and ours to these emails that Stripe has no customer for yet.
pub fn invoices_of(
    conn: &mut DbConnection,
    customer_ids: &[String],
    emails: &[String],
    limit: i64,
) -> Result<Vec<InvoiceRow>, StorageError> {
    Ok(invoices::table
        .filter(
            invoices::stripe_customer_id
                .eq_any(customer_ids)
                .or(invoices::customer_email_normalized.eq_any(emails)),
        )
        .select(InvoiceRow::as_select())
        .order(invoices::created_at.desc())
        .limit(limit)
        .load(conn)?)
}

pub fn refunds_of(
    conn: &mut DbConnection,
    charge_ids: &[String],
    intent_ids: &[String],
) -> Result<Vec<RefundRow>, StorageError> {
    Ok(refunds::table
        .filter(
            refunds::charge_id
                .eq_any(charge_ids)
                .or(refunds::payment_intent_id.eq_any(intent_ids)),
        )
        .select((
            refunds::connection_id,
            refunds::stripe_id,
            refunds::charge_id,
            refunds::payment_intent_id,
            refunds::amount,
            refunds::currency,
            refunds::reason,
            refunds::status,
            refunds::stripe_created,
        ))
        .order(refunds::stripe_created.desc())
        .load(conn)?)
}

pub fn disputes_of(
    conn: &mut DbConnection,
    charge_ids: &[String],
    intent_ids: &[String],
) -> Result<Vec<DisputeRow>, StorageError> {
    Ok(disputes::table
        .filter(
            disputes::charge_id
                .eq_any(charge_ids)
                .or(disputes::payment_intent_id.eq_any(intent_ids)),
        )
        .select((
            disputes::connection_id,
            disputes::stripe_id,
            disputes::charge_id,
            disputes::payment_intent_id,
            disputes::amount,
            disputes::currency,
            disputes::reason,
            disputes::status,
            disputes::evidence_due_by,
            disputes::stripe_created,
        ))
        .order(disputes::stripe_created.desc())
        .load(conn)?)
}

/// Customers, newest first, optionally by email (any letter case).
pub fn list_customers(
    conn: &mut DbConnection,
    email: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, CustomerRow)>, StorageError> {
    let mut query = customers::table
        .select((
            customers::id,
            (
                customers::connection_id,
                customers::stripe_id,
                customers::email,
                customers::name,
                customers::deleted,
                customers::stripe_created,
            ),
        ))
        .order(customers::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(email) = email {
        query =
            query.filter(customers::email_normalized.eq(crate::domain::email::normalize(email)));
    }
    if let Some(after) = after {
        query = query.filter(customers::id.lt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}
