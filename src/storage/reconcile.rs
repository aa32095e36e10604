//! What the drift report reads from the ledger, and its runs.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::{json, Value};

use super::schema::{
    customers, disputes, invoices, ledger_event_keys, payments, reconcile_runs, subscriptions,
    webhook_events,
};
use super::{DbConnection, StorageError};
use crate::domain::states::{InvoiceStatus, RunStatus};
use crate::domain::time;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = reconcile_runs)]
pub struct RunRow {
    pub id: String,
    pub connection_id: String,
    pub status: RunStatus,
    pub repair: bool,
    /// The report so far, as JSON.
    pub report: String,
    pub error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub fn insert_run(conn: &mut DbConnection, row: &RunRow) -> Result<(), StorageError> {
    diesel::insert_into(reconcile_runs::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_run(conn: &mut DbConnection, id: &str) -> Result<Option<RunRow>, StorageError> {
    Ok(reconcile_runs::table
        .find(id)
        .select(RunRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn save_run(
    conn: &mut DbConnection,
    id: &str,
    status: RunStatus,
    report: &str,
    error: Option<&str>,
) -> Result<(), StorageError> {
    diesel::update(reconcile_runs::table.find(id))
        .set((
            reconcile_runs::status.eq(status),
            reconcile_runs::report.eq(report),
            reconcile_runs::error.eq(error),
            reconcile_runs::updated_at.eq(time::now()),
        ))
        .execute(conn)?;
    Ok(())
}

fn unix(at: Option<NaiveDateTime>) -> Value {
    at.map_or(Value::Null, |at| json!(at.and_utc().timestamp()))
}

/// The ledger's side of one resource, by Stripe id: the fields the report compares, in the
/// shape Stripe's own objects are read into (times as Unix seconds). Objects Stripe no longer
/// lists (deleted customers, deleted drafts) and invoices not yet in Stripe are left out.
pub fn ledger_view(
    conn: &mut DbConnection,
    connection_id: &str,
    resource: &str,
) -> Result<Vec<(String, Value)>, StorageError> {
    Ok(match resource {
        "customers" => customers::table
            .filter(customers::connection_id.eq(connection_id))
            .filter(customers::deleted.eq(false))
            .select((customers::stripe_id, customers::email, customers::name))
            .load::<(String, Option<String>, Option<String>)>(conn)?
            .into_iter()
            .map(|(id, email, name)| (id, json!({"email": email, "name": name})))
            .collect(),
        "subscriptions" => subscriptions::table
            .filter(subscriptions::connection_id.eq(connection_id))
            .select((
                subscriptions::stripe_id,
                subscriptions::status,
                subscriptions::current_period_end,
                subscriptions::cancel_at_period_end,
            ))
            .load::<(String, String, Option<NaiveDateTime>, bool)>(conn)?
            .into_iter()
            .map(|(id, status, end, cancel)| {
                let fields = json!({"status": status, "current_period_end": unix(end),
                                    "cancel_at_period_end": cancel});
                (id, fields)
            })
            .collect(),
        "invoices" => invoices::table
            .filter(invoices::connection_id.eq(connection_id))
            .filter(invoices::stripe_id.is_not_null())
            .filter(invoices::status.ne(InvoiceStatus::Deleted))
            .select((
                invoices::stripe_id.assume_not_null(),
                invoices::status,
                invoices::total,
                invoices::amount_paid,
                invoices::amount_remaining,
            ))
            .load::<(String, InvoiceStatus, i64, i64, i64)>(conn)?
            .into_iter()
            .map(|(id, status, total, paid, remaining)| {
                let fields = json!({"status": status, "total": total, "amount_paid": paid,
                                    "amount_remaining": remaining});
                (id, fields)
            })
            .collect(),
        "payments" => payments::table
            .filter(payments::connection_id.eq(connection_id))
            .select((payments::stripe_id, payments::status, payments::amount))
            .load::<(String, String, i64)>(conn)?
            .into_iter()
            .map(|(id, status, amount)| (id, json!({"status": status, "amount": amount})))
            .collect(),
        "disputes" => disputes::table
            .filter(disputes::connection_id.eq(connection_id))
            .select((disputes::stripe_id, disputes::status, disputes::amount))
            .load::<(String, String, i64)>(conn)?
            .into_iter()
            .map(|(id, status, amount)| (id, json!({"status": status, "amount": amount})))
            .collect(),
        _ => Vec::new(),
    })
}

/// The newest event recorded for a ledger object (its stored key): what the ledger last heard.
pub fn last_event(
    conn: &mut DbConnection,
    ledger_key: &str,
) -> Result<Option<(String, String, NaiveDateTime)>, StorageError> {
    Ok(ledger_event_keys::table
        .inner_join(webhook_events::table)
        .filter(ledger_event_keys::ledger_key.eq(ledger_key))
        .select((
            webhook_events::stripe_event_id,
            webhook_events::event_type,
            webhook_events::stripe_created,
        ))
        .order((
            webhook_events::stripe_created.desc(),
            webhook_events::stripe_event_id.desc(),
        ))
        .first(conn)
        .optional()?)
}
