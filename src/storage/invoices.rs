//! Queries on invoices made here and mirrored, their lines, the payments that point at them, the
//! push jobs (the outbox) and the idempotency keys of `POST /api/invoices`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::jobs::{self, NewJob};
use super::schema::{
    idempotency_keys, incomplete_invoice_lines, invoice_lines, invoice_pdfs, invoices, payments,
};
use super::{DbConnection, StorageError};
use crate::domain::states::{InvoiceOrigin, InvoiceStatus, JobKind, SyncState};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invoices)]
pub struct InvoiceRow {
    pub id: String,
    pub connection_id: String,
    pub stripe_id: Option<String>,
    pub origin: InvoiceOrigin,
    pub number: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub customer_email: Option<String>,
    pub customer_email_normalized: Option<String>,
    pub customer_name: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub currency: String,
    pub total: i64,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub amount_remaining: i64,
    pub status: InvoiceStatus,
    pub due_date: Option<NaiveDateTime>,
    pub memo: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub pay_token: Option<String>,
    pub attempt_count: i32,
    pub next_payment_attempt: Option<NaiveDateTime>,
    pub last_payment_error: Option<String>,
    pub sync_state: SyncState,
    pub sync_error: Option<String>,
    pub finalized_at: Option<NaiveDateTime>,
    pub paid_at: Option<NaiveDateTime>,
    pub voided_at: Option<NaiveDateTime>,
    pub stripe_created: Option<NaiveDateTime>,
    pub observed_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invoice_lines)]
pub struct LineRow {
    pub id: String,
    pub invoice_id: String,
    pub stripe_id: Option<String>,
    pub line_no: i32,
    pub description: String,
    pub quantity: i64,
    pub unit_amount: Option<i64>,
    pub amount: i64,
    pub currency: String,
    pub stripe_price_id: Option<String>,
    pub period_start: Option<NaiveDateTime>,
    pub period_end: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct IdempotencyRow {
    pub scope: String,
    pub idem_key: String,
    pub request_hash: String,
    pub resource_id: String,
    pub created_at: NaiveDateTime,
}

/// Writes a new invoice and its lines, in the caller's transaction (which also enqueues its push).
pub fn insert(
    conn: &mut DbConnection,
    invoice: &InvoiceRow,
    lines: &[LineRow],
) -> Result<(), StorageError> {
    diesel::insert_into(invoices::table)
        .values(invoice)
        .execute(conn)?;
    for line in lines {
        diesel::insert_into(invoice_lines::table)
            .values(line)
            .execute(conn)?;
    }
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<InvoiceRow>, StorageError> {
    Ok(invoices::table
        .find(id)
        .select(InvoiceRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_pay_token(
    conn: &mut DbConnection,
    token: &str,
) -> Result<Option<InvoiceRow>, StorageError> {
    Ok(invoices::table
        .filter(invoices::pay_token.eq(token))
        .select(InvoiceRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn lines(conn: &mut DbConnection, invoice_id: &str) -> Result<Vec<LineRow>, StorageError> {
    Ok(invoice_lines::table
        .filter(invoice_lines::invoice_id.eq(invoice_id))
        .select(LineRow::as_select())
        .order(invoice_lines::line_no.asc())
        .load(conn)?)
}

/// Whether the invoice's lines are all known (no page of them is still to be read from Stripe).
pub fn lines_complete(conn: &mut DbConnection, invoice_id: &str) -> Result<bool, StorageError> {
    let incomplete: i64 = incomplete_invoice_lines::table
        .filter(incomplete_invoice_lines::invoice_id.eq(invoice_id))
        .count()
        .get_result(conn)?;
    Ok(incomplete == 0)
}

/// Records that a mirrored invoice's known lines are only Stripe's first page, and enqueues the
/// job that reads the rest (in the caller's transaction).
pub fn mark_lines_incomplete(
    conn: &mut DbConnection,
    invoice_id: &str,
    connection_id: &str,
    stripe_invoice_id: &str,
    known_lines: i32,
) -> Result<(), StorageError> {
    let row = (
        incomplete_invoice_lines::invoice_id.eq(invoice_id),
        incomplete_invoice_lines::connection_id.eq(connection_id),
        incomplete_invoice_lines::stripe_invoice_id.eq(stripe_invoice_id),
        incomplete_invoice_lines::known_lines.eq(known_lines),
    );
    macro_rules! statement {
        () => {
            diesel::insert_into(incomplete_invoice_lines::table)
                .values(row)
                .on_conflict(incomplete_invoice_lines::invoice_id)
                .do_update()
                .set(incomplete_invoice_lines::known_lines.eq(known_lines))
        };
    }
    crate::on_backend!(conn, c => crate::fixed!(statement!()).execute(c)?);
    jobs::enqueue(
        conn,
        &NewJob {
            kind: JobKind::CompleteInvoiceLines,
            subject_id: invoice_id,
            connection_id,
            payload: None,
            dedupe_key: invoice_id,
        },
    )
}

pub fn mark_lines_complete(conn: &mut DbConnection, invoice_id: &str) -> Result<(), StorageError> {
    crate::on_backend!(conn, c => diesel::delete(incomplete_invoice_lines::table.find(invoice_id))
        .execute(c)?);
    Ok(())
}

/// The Stripe invoice whose lines are still to be read, while they are.
pub fn incomplete_lines_of(
    conn: &mut DbConnection,
    invoice_id: &str,
) -> Result<Option<String>, StorageError> {
    Ok(incomplete_invoice_lines::table
        .find(invoice_id)
        .select(incomplete_invoice_lines::stripe_invoice_id)
        .first(conn)
        .optional()?)
}

/// The payments recorded against a Stripe invoice: (id, amount, currency, status, method,
/// brand, last4, created).
pub type PaymentSummary = (
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<NaiveDateTime>,
);

pub fn payments_for(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_invoice_id: &str,
) -> Result<Vec<PaymentSummary>, StorageError> {
    Ok(payments::table
        .filter(payments::connection_id.eq(connection_id))
        .filter(payments::stripe_invoice_id.eq(stripe_invoice_id))
        .select((
            payments::stripe_id,
            payments::amount,
            payments::currency,
            payments::status,
            payments::method_type,
            payments::card_brand,
            payments::card_last4,
            payments::stripe_created,
        ))
        .order(payments::stripe_created.asc())
        .load(conn)?)
}

#[derive(Debug, Default, Clone)]
pub struct InvoiceFilter {
    pub status: Option<InvoiceStatus>,
    pub email: Option<String>,
    pub origin: Option<InvoiceOrigin>,
    pub connection_id: Option<String>,
    pub sync: Option<SyncState>,
}

/// Newest first; `after` is the previous page's last id (ids sort by creation time).
pub fn list(
    conn: &mut DbConnection,
    filter: &InvoiceFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<InvoiceRow>, StorageError> {
    let mut query = invoices::table
        .select(InvoiceRow::as_select())
        .order(invoices::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(status) = &filter.status {
        query = query.filter(invoices::status.eq(*status));
    }
    if let Some(email) = &filter.email {
        query = query
            .filter(invoices::customer_email_normalized.eq(crate::domain::email::normalize(email)));
    }
    if let Some(origin) = &filter.origin {
        query = query.filter(invoices::origin.eq(*origin));
    }
    if let Some(connection) = &filter.connection_id {
        query = query.filter(invoices::connection_id.eq(connection.clone()));
    }
    if let Some(sync) = &filter.sync {
        query = query.filter(invoices::sync_state.eq(*sync));
    }
    if let Some(after) = after {
        query = query.filter(invoices::id.lt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

pub fn find_idempotency(
    conn: &mut DbConnection,
    scope: &str,
    key: &str,
) -> Result<Option<IdempotencyRow>, StorageError> {
    Ok(idempotency_keys::table
        .find((scope, key))
        .select(IdempotencyRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn insert_idempotency(
    conn: &mut DbConnection,
    row: &IdempotencyRow,
) -> Result<(), StorageError> {
    diesel::insert_into(idempotency_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// What the push worker learned from Stripe, written onto our invoice.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = invoices)]
pub struct PushProgress {
    pub stripe_customer_id: Option<String>,
    pub stripe_id: Option<String>,
    pub number: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub status: Option<InvoiceStatus>,
    pub due_date: Option<NaiveDateTime>,
    pub finalized_at: Option<NaiveDateTime>,
    pub voided_at: Option<NaiveDateTime>,
    pub sync_state: Option<SyncState>,
    pub sync_error: Option<Option<String>>,
    pub updated_at: Option<NaiveDateTime>,
}

pub fn record_progress(
    conn: &mut DbConnection,
    invoice_id: &str,
    progress: &PushProgress,
) -> Result<(), StorageError> {
    diesel::update(invoices::table.find(invoice_id))
        .set(progress)
        .execute(conn)?;
    Ok(())
}

/// Forgets the Stripe invoice of ours whose draft was deleted in Stripe: nothing points at an
/// invoice that no longer exists.
pub fn unlink_stripe_invoice(
    conn: &mut DbConnection,
    invoice_id: &str,
) -> Result<(), StorageError> {
    diesel::update(invoices::table.find(invoice_id))
        .set(invoices::stripe_id.eq(None::<String>))
        .execute(conn)?;
    Ok(())
}

/// Records Stripe's PDF of an invoice (replacing an older link).
pub fn set_pdf(conn: &mut DbConnection, invoice_id: &str, url: &str) -> Result<(), StorageError> {
    let row = (
        invoice_pdfs::invoice_id.eq(invoice_id),
        invoice_pdfs::url.eq(url),
    );
    macro_rules! statement {
        () => {
            diesel::insert_into(invoice_pdfs::table)
                .values(row)
                .on_conflict(invoice_pdfs::invoice_id)
                .do_update()
                .set(invoice_pdfs::url.eq(url))
        };
    }
    crate::on_backend!(conn, c => crate::fixed!(statement!()).execute(c)?);
    Ok(())
}

/// Stripe's PDF of an invoice, once Stripe made one.
pub fn pdf(conn: &mut DbConnection, invoice_id: &str) -> Result<Option<String>, StorageError> {
    Ok(invoice_pdfs::table
        .find(invoice_id)
        .select(invoice_pdfs::url)
        .first(conn)
        .optional()?)
}
