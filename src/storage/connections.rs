//! Queries on connections and their webhook signing secrets, and the numbers behind a
//! connection's webhook health. Secrets arrive here already sealed by the vault.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    connections, invoices, subscriptions, webhook_events, webhook_rejections, webhook_secrets,
};
use super::{DbConnection, StorageError};

pub mod status {
    pub const ACTIVE: &str = "active";
    pub const DISCONNECTED: &str = "disconnected";
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = connections)]
pub struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub mode: String,
    /// `api` for connections made through the API, `env` for the one from `STRIPE_*`.
    pub origin: String,
    pub status: String,
    pub stripe_account_id: Option<String>,
    pub publishable_key: Option<String>,
    pub secret_key_enc: Option<String>,
    pub secret_key_hint: Option<String>,
    pub can_push: bool,
    /// The last key report, as JSON.
    pub last_report: Option<String>,
    pub last_report_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub disconnected_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_secrets)]
pub struct WebhookSecretRow {
    pub id: String,
    pub connection_id: String,
    pub secret_enc: String,
    pub secret_hint: String,
    /// `active` or `retired`.
    pub status: String,
    pub created_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
    pub last_matched_at: Option<NaiveDateTime>,
}

pub fn insert(conn: &mut DbConnection, row: &ConnectionRow) -> Result<(), StorageError> {
    diesel::insert_into(connections::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<ConnectionRow>, StorageError> {
    Ok(connections::table
        .find(id)
        .select(ConnectionRow::as_select())
        .first(conn)
        .optional()?)
}

/// Connections in the order they were made; `after` is the previous page's last id.
pub fn list(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ConnectionRow>, StorageError> {
    let mut query = connections::table
        .select(ConnectionRow::as_select())
        .order(connections::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(connections::id.gt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// Every connection made through the API that still syncs.
pub fn active(conn: &mut DbConnection) -> Result<Vec<ConnectionRow>, StorageError> {
    Ok(connections::table
        .filter(connections::status.eq(status::ACTIVE))
        .filter(connections::origin.eq("api"))
        .select(ConnectionRow::as_select())
        .order(connections::id.asc())
        .load(conn)?)
}

pub fn store_report(
    conn: &mut DbConnection,
    id: &str,
    report: &str,
    at: NaiveDateTime,
    stripe_account_id: Option<&str>,
    can_push: bool,
) -> Result<(), StorageError> {
    let target = connections::table.find(id);
    diesel::update(target)
        .set((
            connections::last_report.eq(report),
            connections::last_report_at.eq(at),
            connections::can_push.eq(can_push),
            connections::updated_at.eq(at),
        ))
        .execute(conn)?;
    if let Some(account) = stripe_account_id {
        diesel::update(target)
            .set(connections::stripe_account_id.eq(account))
            .execute(conn)?;
    }
    Ok(())
}

pub fn mark_disconnected(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(connections::table.find(id))
        .set((
            connections::status.eq(status::DISCONNECTED),
            connections::disconnected_at.eq(at),
            connections::updated_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn insert_secret(conn: &mut DbConnection, row: &WebhookSecretRow) -> Result<(), StorageError> {
    diesel::insert_into(webhook_secrets::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// A connection's secrets, newest first (the newest is tried first when verifying).
pub fn secrets(
    conn: &mut DbConnection,
    connection_id: &str,
) -> Result<Vec<WebhookSecretRow>, StorageError> {
    Ok(webhook_secrets::table
        .filter(webhook_secrets::connection_id.eq(connection_id))
        .select(WebhookSecretRow::as_select())
        .order((
            webhook_secrets::created_at.desc(),
            webhook_secrets::id.desc(),
        ))
        .load(conn)?)
}

/// Retires one active secret; returns whether it existed and was active.
pub fn retire_secret(
    conn: &mut DbConnection,
    connection_id: &str,
    secret_id: &str,
    at: NaiveDateTime,
) -> Result<bool, StorageError> {
    let updated = diesel::update(
        webhook_secrets::table
            .filter(webhook_secrets::id.eq(secret_id))
            .filter(webhook_secrets::connection_id.eq(connection_id))
            .filter(webhook_secrets::status.eq("active")),
    )
    .set((
        webhook_secrets::status.eq("retired"),
        webhook_secrets::retired_at.eq(at),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// The numbers behind a connection's webhook health.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebhookHealth {
    #[serde(with = "crate::domain::time::serde_rfc3339::option")]
    pub last_event_at: Option<NaiveDateTime>,
    pub events_last_24h: i64,
    pub signature_failures_last_24h: i64,
    pub dead_events: i64,
}

pub fn webhook_health(
    conn: &mut DbConnection,
    connection_id: &str,
    since: NaiveDateTime,
) -> Result<WebhookHealth, StorageError> {
    let events = webhook_events::table.filter(webhook_events::connection_id.eq(connection_id));
    let last_event_at = events
        .select(diesel::dsl::max(webhook_events::received_at))
        .first::<Option<NaiveDateTime>>(conn)?;
    let events_last_24h = events
        .filter(webhook_events::received_at.ge(since))
        .count()
        .get_result(conn)?;
    let dead_events = events
        .filter(webhook_events::status.eq("dead"))
        .count()
        .get_result(conn)?;
    let signature_failures_last_24h = webhook_rejections::table
        .filter(webhook_rejections::connection_id.eq(connection_id))
        .filter(webhook_rejections::at.ge(since))
        .filter(webhook_rejections::reason.eq_any([
            "missing_signature",
            "malformed_signature",
            "timestamp_outside_tolerance",
            "signature_mismatch",
        ]))
        .count()
        .get_result(conn)?;
    Ok(WebhookHealth {
        last_event_at,
        events_last_24h,
        signature_failures_last_24h,
        dead_events,
    })
}

/// When an event signed by the secret with this hint last arrived.
pub fn last_signed_with(
    conn: &mut DbConnection,
    connection_id: &str,
    hint: &str,
) -> Result<Option<NaiveDateTime>, StorageError> {
    Ok(webhook_events::table
        .filter(webhook_events::connection_id.eq(connection_id))
        .filter(webhook_events::signed_with.eq(hint))
        .select(diesel::dsl::max(webhook_events::received_at))
        .first(conn)?)
}

/// What a disconnect leaves behind: subscriptions still running and invoices still unpaid.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Affected {
    pub active_subscriptions: i64,
    pub open_invoices: i64,
    pub unpushed_invoices: i64,
}

pub fn affected(conn: &mut DbConnection, connection_id: &str) -> Result<Affected, StorageError> {
    let active_subscriptions = subscriptions::table
        .filter(subscriptions::connection_id.eq(connection_id))
        .filter(subscriptions::status.eq_any(["active", "trialing", "past_due", "unpaid"]))
        .count()
        .get_result(conn)?;
    let open_invoices = invoices::table
        .filter(invoices::connection_id.eq(connection_id))
        .filter(invoices::status.eq_any(["open", "past_due"]))
        .count()
        .get_result(conn)?;
    let unpushed_invoices = invoices::table
        .filter(invoices::connection_id.eq(connection_id))
        .filter(invoices::sync_state.eq_any(["pending", "failed"]))
        .count()
        .get_result(conn)?;
    Ok(Affected {
        active_subscriptions,
        open_invoices,
        unpushed_invoices,
    })
}
