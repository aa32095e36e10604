//! What `/metrics` reads from the database at scrape time, in one short read.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::connections::status as connection_status;
use super::schema::{connections, webhook_events};
use super::{DbConnection, StorageError};
use crate::domain::states::{ConnectionStatus, EventStatus, JobKind, JobState};

pub struct Snapshot {
    pub events_by_status: Vec<(EventStatus, i64)>,
    /// When the oldest event still to be applied (pending, or retrying after a failure) arrived.
    pub oldest_unapplied: Option<NaiveDateTime>,
    pub jobs: Vec<(JobKind, JobState, i64)>,
    pub connections: Vec<ConnectionHealth>,
}

pub struct ConnectionHealth {
    pub id: String,
    /// The last key report's `ok`; `None` before any report.
    pub report_ok: Option<bool>,
    pub can_push: bool,
}

pub fn snapshot(conn: &mut DbConnection) -> Result<Snapshot, StorageError> {
    let oldest_unapplied = webhook_events::table
        .filter(webhook_events::status.eq_any(EventStatus::DUE))
        .select(diesel::dsl::min(webhook_events::received_at))
        .get_result(conn)?;
    // A connection Stripe revoked stays in the health report, failing, until it is connected
    // again or disconnected: nobody removed it on purpose.
    let rows: Vec<(String, Option<String>, bool, ConnectionStatus)> = connections::table
        .filter(connections::status.eq_any([connection_status::ACTIVE, connection_status::REVOKED]))
        .select((
            connections::id,
            connections::last_report,
            connections::can_push,
            connections::status,
        ))
        .load(conn)?;
    let connections = rows
        .into_iter()
        .map(|(id, report, can_push, status)| ConnectionHealth {
            id,
            report_ok: if status == connection_status::REVOKED {
                Some(false)
            } else {
                report
                    .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
                    .and_then(|r| r["ok"].as_bool())
            },
            can_push,
        })
        .collect();
    Ok(Snapshot {
        events_by_status: super::events::count_by_status(conn)?,
        oldest_unapplied,
        jobs: super::jobs::counts(conn)?,
        connections,
    })
}
