//! Ops alerts: the signals the checker reads for every active or revoked connection (whether it
//! was revoked, its last key report,
//! webhook signature failures, dead events, pushes waiting too long), and whether each alert is
//! firing, flipped by one statement so that of several instances checking at once exactly one
//! sees each change.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::connections::{status as connection_status, SIGNATURE_FAILURES};
use super::schema::{connections, jobs, notify_ops_alerts, webhook_events, webhook_rejections};
use super::{DbConnection, StorageError};
use crate::domain::states::{ConnectionStatus, EventStatus, JobKind, JobState};
use crate::domain::time;

/// What one active or revoked connection looks like to the ops checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSignals {
    pub connection_id: String,
    pub name: String,
    /// Its OAuth authorisation was withdrawn in Stripe (deauthorized, or a read answered 401):
    /// billmirror reads it no more until it is connected again.
    pub revoked: bool,
    /// `live` or `test`.
    pub mode: String,
    /// The last key report, as JSON; `None` before any.
    pub last_report: Option<String>,
    /// Webhooks refused for their signature since the window's start.
    pub signature_failures: i64,
    pub dead_events: i64,
    /// Invoice pushes enqueued before the cutoff and still not done.
    pub stuck_pushes: i64,
    /// The invoice of the oldest of them.
    pub oldest_stuck: Option<String>,
}

/// Every active or revoked connection's signals (a disconnected one is gone on purpose): signature failures since `failures_since`, pushes pending
/// since before `stuck_before`. Each read uses an index: the dead events by status, the pending
/// pushes by the job queue's, the rejections by connection and time.
pub fn signals(
    conn: &mut DbConnection,
    failures_since: NaiveDateTime,
    stuck_before: NaiveDateTime,
) -> Result<Vec<ConnectionSignals>, StorageError> {
    let active: Vec<(String, String, ConnectionStatus, String, Option<String>)> =
        connections::table
            .filter(
                connections::status.eq_any([connection_status::ACTIVE, connection_status::REVOKED]),
            )
            .select((
                connections::id,
                connections::name,
                connections::status,
                connections::mode,
                connections::last_report,
            ))
            .order(connections::id.asc())
            .load(conn)?;
    // One range read per connection on `webhook_rejections (connection_id, at)`: rejections
    // (a flood of forged posts) may be many, connections are few.
    let mut failures: HashMap<String, i64> = HashMap::new();
    for (id, ..) in &active {
        let n: i64 = webhook_rejections::table
            .filter(webhook_rejections::connection_id.eq(id))
            .filter(webhook_rejections::at.ge(failures_since))
            .filter(webhook_rejections::reason.eq_any(SIGNATURE_FAILURES))
            .count()
            .get_result(conn)?;
        failures.insert(id.clone(), n);
    }
    let dead: HashMap<String, i64> = webhook_events::table
        .filter(webhook_events::status.eq(EventStatus::Dead))
        .group_by(webhook_events::connection_id)
        .select((webhook_events::connection_id, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect();
    // Oldest first, so the first seen per connection names its oldest stuck invoice.
    let stuck: Vec<(String, String)> = jobs::table
        .filter(jobs::kind.eq(JobKind::PushInvoice))
        .filter(jobs::status.eq(JobState::Pending))
        .filter(jobs::created_at.lt(stuck_before))
        .select((jobs::connection_id, jobs::subject_id))
        .order((jobs::created_at.asc(), jobs::id.asc()))
        .load(conn)?;
    let mut stuck_by: HashMap<String, (i64, String)> = HashMap::new();
    for (connection, invoice) in stuck {
        stuck_by.entry(connection).or_insert((0, invoice)).0 += 1;
    }
    Ok(active
        .into_iter()
        .map(|(id, name, status, mode, last_report)| {
            let stuck = stuck_by.remove(&id);
            ConnectionSignals {
                signature_failures: failures.get(&id).copied().unwrap_or(0),
                dead_events: dead.get(&id).copied().unwrap_or(0),
                stuck_pushes: stuck.as_ref().map_or(0, |(n, _)| *n),
                oldest_stuck: stuck.map(|(_, invoice)| invoice),
                connection_id: id,
                name,
                revoked: status == connection_status::REVOKED,
                mode,
                last_report,
            }
        })
        .collect())
}

/// A change of an alert's state, seen by the one caller that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertChange {
    /// When the state that just ended began (`None`: the alert was never seen before).
    pub since: Option<NaiveDateTime>,
    pub at: NaiveDateTime,
}

/// Records whether `key` is firing; `Some` when that changed here (or the key is new and
/// firing). Only the caller whose statement flips the row (or inserts it) gets `Some`: another
/// instance checking at the same moment waits for the row, then finds it flipped.
pub fn set_alert(
    conn: &mut DbConnection,
    key: &str,
    firing: bool,
    detail: Option<&str>,
) -> Result<Option<AlertChange>, StorageError> {
    let now = time::now();
    let known: Option<(bool, NaiveDateTime)> = notify_ops_alerts::table
        .find(key)
        .select((notify_ops_alerts::firing, notify_ops_alerts::changed_at))
        .first(conn)
        .optional()?;
    match known {
        Some((was, _)) if was == firing => Ok(None),
        Some((_, since)) => {
            let flipped = diesel::update(
                notify_ops_alerts::table
                    .find(key)
                    .filter(notify_ops_alerts::firing.eq(!firing)),
            )
            .set((
                notify_ops_alerts::firing.eq(firing),
                notify_ops_alerts::detail.eq(detail),
                notify_ops_alerts::changed_at.eq(now),
            ))
            .execute(conn)?;
            Ok((flipped == 1).then_some(AlertChange {
                since: Some(since),
                at: now,
            }))
        }
        None => {
            let values = (
                notify_ops_alerts::alert_key.eq(key),
                notify_ops_alerts::firing.eq(firing),
                notify_ops_alerts::detail.eq(detail),
                notify_ops_alerts::changed_at.eq(now),
            );
            let inserted = match conn {
                DbConnection::Postgres(c) => diesel::insert_into(notify_ops_alerts::table)
                    .values(values)
                    .on_conflict_do_nothing()
                    .execute(c)?,
                DbConnection::Sqlite(c) => diesel::insert_into(notify_ops_alerts::table)
                    .values(values)
                    .on_conflict_do_nothing()
                    .execute(c)?,
            };
            // A condition first seen clear is no news.
            Ok((inserted == 1 && firing).then_some(AlertChange {
                since: None,
                at: now,
            }))
        }
    }
}

/// Every alert known, and whether it is firing.
pub fn states(conn: &mut DbConnection) -> Result<HashMap<String, bool>, StorageError> {
    Ok(notify_ops_alerts::table
        .select((notify_ops_alerts::alert_key, notify_ops_alerts::firing))
        .load::<(String, bool)>(conn)?
        .into_iter()
        .collect())
}
