//! The ledger's writes: each mirrored object's folded fields upserted by (connection, Stripe id),
//! which events describe which object, the per-object lock, and what an invoice's fold needs to
//! read (the payments pointing at it, the row it updates). The folds themselves are pure and live
//! in `ledger`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

use super::schema::{
    customers, disputes, invoice_lines, invoices, ledger_event_keys, ledger_fold_snapshots,
    ledger_folds, payments, prices, products, refunds, subscriptions, webhook_events,
};
use super::{DbConnection, StorageError};
use crate::domain::states::{InvoiceOrigin, InvoiceStatus, SyncState};
use crate::domain::{ids, time};

/// Writes a mirrored object's fields into its row, found by (connection, Stripe id), creating the
/// row on first sight. One statement (`INSERT … ON CONFLICT DO UPDATE`) on either backend,
/// prepared once per connection.
macro_rules! upsert {
    ($conn:expr, $table:ident, $connection_id:expr, $stripe_id:expr, $fields:expr) => {{
        macro_rules! statement {
            () => {
                diesel::insert_into($table::table)
                    .values((
                        $table::id.eq(ids::new_id(stringify!($table))),
                        $table::connection_id.eq($connection_id),
                        $table::stripe_id.eq($stripe_id),
                        $table::created_at.eq(time::now()),
                        $fields,
                    ))
                    .on_conflict(($table::connection_id, $table::stripe_id))
                    .do_update()
                    .set($fields)
            };
        }
        $crate::on_backend!($conn, c => $crate::fixed!(statement!()).execute(c)?);
        Ok(())
    }};
}

#[derive(Debug, Default, Clone, AsChangeset, Insertable, Serialize, Deserialize)]
#[diesel(table_name = customers, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct CustomerFields {
    pub email: Option<String>,
    pub email_normalized: Option<String>,
    pub name: Option<String>,
    pub deleted: bool,
    pub stripe_created: Option<NaiveDateTime>,
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone, AsChangeset, Insertable, Serialize, Deserialize)]
#[diesel(table_name = subscriptions, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct SubscriptionFields {
    pub stripe_customer_id: Option<String>,
    pub status: String,
    pub stripe_price_id: Option<String>,
    pub stripe_product_id: Option<String>,
    pub plan_name: Option<String>,
    pub billing_interval: Option<String>,
    pub interval_count: Option<i32>,
    pub quantity: Option<i64>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub current_period_start: Option<NaiveDateTime>,
    pub current_period_end: Option<NaiveDateTime>,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<NaiveDateTime>,
    pub canceled_at: Option<NaiveDateTime>,
    pub ended_at: Option<NaiveDateTime>,
    pub trial_end: Option<NaiveDateTime>,
    pub stripe_created: Option<NaiveDateTime>,
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone, AsChangeset, Insertable, Serialize, Deserialize)]
#[diesel(table_name = payments, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct PaymentFields {
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
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone, AsChangeset, Insertable, Serialize, Deserialize)]
#[diesel(table_name = refunds, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct RefundFields {
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
    pub failure_reason: Option<String>,
    pub stripe_created: Option<NaiveDateTime>,
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone, AsChangeset, Insertable, Serialize, Deserialize)]
#[diesel(table_name = disputes, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct DisputeFields {
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
    pub evidence_due_by: Option<NaiveDateTime>,
    pub stripe_created: Option<NaiveDateTime>,
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone, AsChangeset, Serialize, Deserialize)]
#[diesel(table_name = invoices, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct InvoiceFields {
    pub stripe_id: Option<String>,
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
    pub hosted_invoice_url: Option<String>,
    pub attempt_count: i32,
    pub next_payment_attempt: Option<NaiveDateTime>,
    pub last_payment_error: Option<String>,
    pub finalized_at: Option<NaiveDateTime>,
    pub paid_at: Option<NaiveDateTime>,
    pub voided_at: Option<NaiveDateTime>,
    pub stripe_created: Option<NaiveDateTime>,
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone, AsChangeset, Insertable, Serialize, Deserialize)]
#[diesel(table_name = prices, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct PriceFields {
    pub stripe_product_id: Option<String>,
    pub nickname: Option<String>,
    pub unit_amount: Option<i64>,
    pub currency: Option<String>,
    pub billing_interval: Option<String>,
    pub interval_count: Option<i32>,
    pub active: bool,
    pub deleted: bool,
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Default, Clone, AsChangeset, Insertable, Serialize, Deserialize)]
#[diesel(table_name = products, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct ProductFields {
    pub name: Option<String>,
    pub active: bool,
    pub deleted: bool,
    pub observed_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub fn upsert_customer(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    fields: &CustomerFields,
) -> Result<(), StorageError> {
    upsert!(conn, customers, connection_id, stripe_id, fields)
}

pub fn upsert_subscription(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    fields: &SubscriptionFields,
) -> Result<(), StorageError> {
    upsert!(conn, subscriptions, connection_id, stripe_id, fields)
}

pub fn upsert_payment(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    fields: &PaymentFields,
) -> Result<(), StorageError> {
    upsert!(conn, payments, connection_id, stripe_id, fields)
}

pub fn upsert_refund(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    fields: &RefundFields,
) -> Result<(), StorageError> {
    upsert!(conn, refunds, connection_id, stripe_id, fields)
}

pub fn upsert_dispute(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    fields: &DisputeFields,
) -> Result<(), StorageError> {
    upsert!(conn, disputes, connection_id, stripe_id, fields)
}

pub fn upsert_price(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    fields: &PriceFields,
) -> Result<(), StorageError> {
    upsert!(conn, prices, connection_id, stripe_id, fields)
}

pub fn upsert_product(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    fields: &ProductFields,
) -> Result<(), StorageError> {
    upsert!(conn, products, connection_id, stripe_id, fields)
}

/// Records that `event_id` describes the ledger object `key`; already recorded (a replay) is fine.
pub fn record_key(conn: &mut DbConnection, key: &str, event_id: &str) -> Result<(), StorageError> {
    let row = (
        ledger_event_keys::ledger_key.eq(key),
        ledger_event_keys::event_id.eq(event_id),
    );
    crate::on_backend!(conn, c => diesel::insert_into(ledger_event_keys::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(c)?);
    Ok(())
}

/// Records that `event_id` describes the ledger object `key` and takes the object for the rest of
/// the transaction, as [`record_key`] then [`try_lock_object`] do, in one statement (one round
/// trip on PostgreSQL): `false` when another worker holds it (the key is recorded either way).
pub fn record_key_and_lock(
    conn: &mut DbConnection,
    key: &str,
    event_id: &str,
) -> Result<bool, StorageError> {
    let DbConnection::Postgres(pg) = conn else {
        record_key(conn, key, event_id)?;
        return Ok(true);
    };
    let taken: Vec<Locked> = crate::fixed!(diesel::sql_query(
        "WITH recorded AS (INSERT INTO ledger_event_keys (ledger_key, event_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING) \
         SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked"
    )
    .bind::<Text, _>(key)
    .bind::<Text, _>(event_id))
    .load(pg)?;
    Ok(taken.first().is_some_and(|t| t.locked))
}

/// The payloads of every event recorded for the ledger object `key`, but `except` (the event
/// being applied, which the caller already holds parsed); with `since` (Unix seconds), only those
/// Stripe created in or after that second.
pub fn payloads_of(
    conn: &mut DbConnection,
    key: &str,
    except: Option<&str>,
    since: Option<i64>,
) -> Result<Vec<String>, StorageError> {
    // `''` is no event id, and no event predates 1970: one statement whatever is left out.
    let except = except.unwrap_or("");
    // `stripe_created` is the event's `created` (`webhook::inbox_row`).
    let since = since
        .and_then(time::from_unix)
        .or_else(|| time::from_unix(0))
        .unwrap_or_default();
    Ok(crate::on_backend!(conn, c => ledger_event_keys::table
        .inner_join(webhook_events::table)
        .filter(ledger_event_keys::ledger_key.eq(key))
        .filter(ledger_event_keys::event_id.ne(except))
        .filter(webhook_events::stripe_created.ge(since))
        .select(webhook_events::payload)
        .load(c)?))
}

/// The newest snapshots of the ledger object `key`'s fold whose newest event Stripe created at
/// or before `created` (Unix seconds), newest first, at most `limit`: (events included, fold).
pub fn snapshots_before(
    conn: &mut DbConnection,
    key: &str,
    created: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, StorageError> {
    Ok(ledger_fold_snapshots::table
        .filter(ledger_fold_snapshots::ledger_key.eq(key))
        .filter(ledger_fold_snapshots::created.le(created))
        .order((
            ledger_fold_snapshots::created.desc(),
            ledger_fold_snapshots::events.desc(),
        ))
        .select((ledger_fold_snapshots::events, ledger_fold_snapshots::fold))
        .limit(limit)
        .load(conn)?)
}

/// Forgets the snapshots of `key`'s fold that may include an event created at or after `from`
/// (Unix seconds; all of them when `None`): a late event from that second makes them wrong.
pub fn drop_snapshots_from(
    conn: &mut DbConnection,
    key: &str,
    from: Option<i64>,
) -> Result<(), StorageError> {
    let mut query = diesel::delete(ledger_fold_snapshots::table)
        .filter(ledger_fold_snapshots::ledger_key.eq(key))
        .into_boxed();
    if let Some(from) = from {
        query = query.filter(ledger_fold_snapshots::created.ge(from));
    }
    query.execute(conn)?;
    Ok(())
}

/// Keeps a snapshot of `key`'s fold that includes `events` events, the newest created at
/// `created` (Unix seconds), replacing one of the same count.
pub fn keep_snapshot(
    conn: &mut DbConnection,
    key: &str,
    events: i64,
    created: i64,
    fold: &str,
) -> Result<(), StorageError> {
    let row = (
        ledger_fold_snapshots::ledger_key.eq(key),
        ledger_fold_snapshots::events.eq(events),
        ledger_fold_snapshots::created.eq(created),
        ledger_fold_snapshots::fold.eq(fold),
    );
    let update = (
        ledger_fold_snapshots::created.eq(created),
        ledger_fold_snapshots::fold.eq(fold),
    );
    match conn {
        DbConnection::Postgres(c) => diesel::insert_into(ledger_fold_snapshots::table)
            .values(row)
            .on_conflict((
                ledger_fold_snapshots::ledger_key,
                ledger_fold_snapshots::events,
            ))
            .do_update()
            .set(update)
            .execute(c)?,
        DbConnection::Sqlite(c) => diesel::insert_into(ledger_fold_snapshots::table)
            .values(row)
            .on_conflict((
                ledger_fold_snapshots::ledger_key,
                ledger_fold_snapshots::events,
            ))
            .do_update()
            .set(update)
            .execute(c)?,
    };
    Ok(())
}

/// What is stored of the ledger object `key`'s fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredFold {
    /// No event of the object has been applied yet.
    None,
    /// Events were recorded before folds were kept: re-fold from them.
    Unknown,
    /// The fold's state, as `ledger::fold::Folded` in JSON.
    Kept(String),
}

pub fn fold_of(conn: &mut DbConnection, key: &str) -> Result<StoredFold, StorageError> {
    let row: Option<Option<String>> = crate::on_backend!(conn, c => ledger_folds::table
        .find(key)
        .select(ledger_folds::fold)
        .first(c)
        .optional()?);
    Ok(match row {
        None => StoredFold::None,
        Some(None) => StoredFold::Unknown,
        Some(Some(fold)) => StoredFold::Kept(fold),
    })
}

/// Keeps the ledger object `key`'s fold state (JSON), replacing what was kept.
pub fn keep_fold(conn: &mut DbConnection, key: &str, fold: &str) -> Result<(), StorageError> {
    let row = (
        ledger_folds::ledger_key.eq(key),
        ledger_folds::fold.eq(fold),
    );
    crate::on_backend!(conn, c => crate::fixed!(diesel::insert_into(ledger_folds::table)
        .values(row)
        .on_conflict(ledger_folds::ledger_key)
        .do_update()
        .set(ledger_folds::fold.eq(fold)))
        .execute(c)?);
    Ok(())
}

/// Takes the ledger object `key` for the rest of the transaction, without waiting: `false` when
/// another worker holds it. Only PostgreSQL needs this: a SQLite transaction here already holds
/// the database's single write lock.
pub fn try_lock_object(conn: &mut DbConnection, key: &str) -> Result<bool, StorageError> {
    let DbConnection::Postgres(pg) = conn else {
        return Ok(true);
    };
    let taken: Vec<Locked> = crate::fixed!(diesel::sql_query(
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked"
    )
    .bind::<Text, _>(key))
    .load(pg)?;
    Ok(taken.first().is_some_and(|t| t.locked))
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// A payment pointing at an invoice, as the invoice's fold reads it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct LinkedPayment {
    pub status: String,
    pub failure_message: Option<String>,
    pub amount: i64,
    pub stripe_created: Option<NaiveDateTime>,
}

/// The payments recorded against a Stripe invoice, oldest first.
pub fn payments_of_invoice(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_invoice_id: &str,
) -> Result<Vec<LinkedPayment>, StorageError> {
    Ok(crate::on_backend!(conn, c => payments::table
        .filter(payments::connection_id.eq(connection_id))
        .filter(payments::stripe_invoice_id.eq(stripe_invoice_id))
        .select((
            payments::status,
            payments::failure_message,
            payments::amount,
            payments::stripe_created,
        ))
        .order((payments::stripe_created.asc(), payments::stripe_id.asc()))
        .load(c)?))
}

/// What an invoice row already holds that its events may not overrule.
#[derive(Debug, Clone, Queryable)]
pub struct KnownInvoice {
    pub origin: InvoiceOrigin,
    pub status: InvoiceStatus,
    pub customer_email: Option<String>,
    pub customer_email_normalized: Option<String>,
    pub customer_name: Option<String>,
    pub total: i64,
    pub amount_due: i64,
    pub amount_remaining: i64,
}

/// The row an invoice's events update: ours when our metadata names it (an invoice billmirror
/// pushed), else the one mirrored for this Stripe id; with what it holds.
pub fn invoice_row_for(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    local_id: Option<&str>,
) -> Result<Option<(String, KnownInvoice)>, StorageError> {
    let mut id: Option<String> = None;
    if let Some(local) = local_id {
        id = crate::on_backend!(conn, c => invoices::table
            .find(local)
            .select(invoices::id)
            .first(c)
            .optional()?);
    }
    if id.is_none() {
        id = crate::on_backend!(conn, c => invoices::table
            .filter(invoices::connection_id.eq(connection_id))
            .filter(invoices::stripe_id.eq(stripe_id))
            .select(invoices::id)
            .first(c)
            .optional()?);
    }
    let Some(id) = id else {
        return Ok(None);
    };
    let known = crate::on_backend!(conn, c => invoices::table
        .find(&id)
        .select((
            invoices::origin,
            invoices::status,
            invoices::customer_email,
            invoices::customer_email_normalized,
            invoices::customer_name,
            invoices::total,
            invoices::amount_due,
            invoices::amount_remaining,
        ))
        .first(c)?);
    Ok(Some((id, known)))
}

/// Updates an invoice row with its folded fields; `created_at` too when given (a mirrored
/// invoice was made when Stripe made it).
pub fn update_invoice(
    conn: &mut DbConnection,
    id: &str,
    fields: &InvoiceFields,
    created_at: Option<NaiveDateTime>,
) -> Result<(), StorageError> {
    crate::on_backend!(conn, c => crate::fixed!(diesel::update(invoices::table.find(id))
        .set(fields))
        .execute(c)?);
    if let Some(created) = created_at {
        crate::on_backend!(conn, c => crate::fixed!(diesel::update(invoices::table.find(id))
            .set(invoices::created_at.eq(created)))
            .execute(c)?);
    }
    Ok(())
}

/// Creates the row of an invoice made in Stripe; returns its id.
pub fn insert_mirrored_invoice(
    conn: &mut DbConnection,
    connection_id: &str,
    fields: &InvoiceFields,
) -> Result<String, StorageError> {
    let id = ids::new_id("inv");
    diesel::insert_into(invoices::table)
        .values((
            invoices::id.eq(&id),
            invoices::connection_id.eq(connection_id),
            invoices::origin.eq(InvoiceOrigin::Stripe),
            invoices::sync_state.eq(SyncState::Mirrored),
            invoices::created_at.eq(fields.stripe_created.unwrap_or_else(time::now)),
            invoices::currency.eq(&fields.currency),
            invoices::total.eq(fields.total),
            invoices::amount_due.eq(fields.amount_due),
            invoices::amount_remaining.eq(fields.amount_remaining),
            invoices::status.eq(fields.status),
            invoices::observed_at.eq(fields.observed_at),
            invoices::updated_at.eq(fields.updated_at),
        ))
        .execute(conn)?;
    update_invoice(conn, &id, fields, None)?;
    Ok(id)
}

/// One line of a mirrored invoice, as Stripe lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredLine {
    pub stripe_id: Option<String>,
    pub description: String,
    pub quantity: i64,
    pub unit_amount: Option<i64>,
    pub amount: i64,
    pub currency: String,
    pub stripe_price_id: Option<String>,
    pub period_start: Option<NaiveDateTime>,
    pub period_end: Option<NaiveDateTime>,
}

/// Replaces a mirrored invoice's lines.
pub fn replace_lines(
    conn: &mut DbConnection,
    invoice_id: &str,
    lines: &[MirroredLine],
) -> Result<(), StorageError> {
    crate::on_backend!(conn, c => diesel::delete(
        invoice_lines::table.filter(invoice_lines::invoice_id.eq(invoice_id))
    )
    .execute(c)?);
    for (n, line) in lines.iter().enumerate() {
        let statement = diesel::insert_into(invoice_lines::table).values((
            invoice_lines::id.eq(ids::new_id("line")),
            invoice_lines::invoice_id.eq(invoice_id),
            invoice_lines::stripe_id.eq(&line.stripe_id),
            invoice_lines::line_no.eq(i32::try_from(n + 1).unwrap_or(i32::MAX)),
            invoice_lines::description.eq(&line.description),
            invoice_lines::quantity.eq(line.quantity),
            invoice_lines::unit_amount.eq(line.unit_amount),
            invoice_lines::amount.eq(line.amount),
            invoice_lines::currency.eq(&line.currency),
            invoice_lines::stripe_price_id.eq(&line.stripe_price_id),
            invoice_lines::period_start.eq(line.period_start),
            invoice_lines::period_end.eq(line.period_end),
        ));
        crate::on_backend!(conn, c => statement.execute(c)?);
    }
    Ok(())
}
