//! Queries on the webhook inbox (`webhook_events`), its rejections, and the environment's
//! connection row.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{connections, webhook_events, webhook_rejections};
use super::{DbConnection, StorageError};
use crate::domain::states::{ConnectionOrigin, ConnectionStatus, EventStatus};
use crate::domain::{ids, time};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_events, treat_none_as_default_value = false)]
pub struct EventRow {
    pub id: String,
    pub connection_id: String,
    pub stripe_event_id: String,
    pub event_type: String,
    pub api_version: Option<String>,
    pub livemode: bool,
    pub stripe_created: NaiveDateTime,
    pub object_id: Option<String>,
    pub payload: String,
    pub source: String,
    pub signed_with: Option<String>,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: NaiveDateTime,
    pub received_at: NaiveDateTime,
    pub applied_at: Option<NaiveDateTime>,
}

/// Inserts each row unless its (connection, Stripe event id) is already stored. Returns, per row,
/// whether it was new. The unique key decides, so two deliveries racing on two instances still
/// store one row.
pub fn insert_new<'r>(
    conn: &mut DbConnection,
    rows: impl IntoIterator<Item = &'r EventRow>,
) -> Result<Vec<bool>, StorageError> {
    let rows: Vec<&EventRow> = rows.into_iter().collect();
    match conn {
        // One statement for the whole batch: a round trip per row is most of the cost of a
        // backfill page or a group commit on PostgreSQL.
        DbConnection::Postgres(c) => {
            // Each row inserted waits for any uncommitted twin of its key. Two batches holding
            // the same keys in different orders would wait for each other (a deadlock that fails
            // both); in one order, the second simply waits for the first.
            let mut ordered = rows.clone();
            ordered.sort_by(|a, b| {
                (&a.connection_id, &a.stripe_event_id).cmp(&(&b.connection_id, &b.stripe_event_id))
            });
            let mut inserted: std::collections::HashSet<String> = std::collections::HashSet::new();
            for chunk in ordered.chunks(500) {
                let values: Vec<&EventRow> = chunk.to_vec();
                let new: Vec<String> = diesel::insert_into(webhook_events::table)
                    .values(values)
                    .on_conflict((
                        webhook_events::connection_id,
                        webhook_events::stripe_event_id,
                    ))
                    .do_nothing()
                    .returning(webhook_events::id)
                    .get_results(c)?;
                inserted.extend(new);
            }
            // Our row ids are fresh, so a returned id names the row that was stored.
            Ok(rows.iter().map(|row| inserted.contains(&row.id)).collect())
        }
        DbConnection::Sqlite(c) => {
            let mut inserted = Vec::with_capacity(rows.len());
            for row in rows {
                let count = crate::fixed!(diesel::insert_into(webhook_events::table)
                    .values(row)
                    .on_conflict((
                        webhook_events::connection_id,
                        webhook_events::stripe_event_id,
                    ))
                    .do_nothing())
                .execute(c)?;
                inserted.push(count == 1);
            }
            Ok(inserted)
        }
    }
}

#[derive(QueryableByName)]
struct DueId {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// Events due for the apply worker, oldest first. On PostgreSQL the rows stay locked until the
/// caller's transaction ends and other instances skip them.
pub fn claim_due(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    limit: i64,
) -> Result<Vec<EventRow>, StorageError> {
    // Ids first, from the partial index `webhook_events_queue` (same predicate, literally), so no
    // payload is read or sorted for events that are not taken.
    let [pending, retrying] = EventStatus::DUE.map(EventStatus::as_str);
    let due = format!("status IN ('{pending}', '{retrying}')");
    macro_rules! due_ids {
        () => {
            webhook_events::table
                .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&due))
                .filter(webhook_events::next_attempt_at.le(now))
                .order((
                    webhook_events::next_attempt_at.asc(),
                    webhook_events::id.asc(),
                ))
                .limit(limit)
                .select(webhook_events::id)
        };
    }
    let ids: Vec<String> = match conn {
        DbConnection::Postgres(c) => due_ids!().for_update().skip_locked().load(c)?,
        // One SQLite writer at a time: the caller's `BEGIN IMMEDIATE` already excludes others.
        // Without statistics SQLite's planner preferred the status index and then sorted every
        // due event on each claim; `INDEXED BY` pins the queue index (and fails loudly if a
        // schema change ever makes it unusable).
        // The text is the same every time (`due` is made of constants): prepared once.
        DbConnection::Sqlite(c) => crate::fixed!(diesel::sql_query(format!(
            "SELECT id FROM webhook_events INDEXED BY webhook_events_queue \
             WHERE {due} AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
        ))
        .bind::<diesel::sql_types::Timestamp, _>(now)
        .bind::<diesel::sql_types::BigInt, _>(limit))
        .load::<DueId>(c)?
        .into_iter()
        .map(|row| row.id)
        .collect(),
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: Vec<EventRow> = crate::on_backend!(conn, c => webhook_events::table
        .filter(webhook_events::id.eq_any(&ids))
        .select(EventRow::as_select())
        .load(c)?);
    rows.sort_by_key(|row| ids.iter().position(|id| *id == row.id));
    Ok(rows)
}

/// Marks the events `ids` applied, in one statement.
pub fn mark_applied(
    conn: &mut DbConnection,
    ids: &[&str],
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    macro_rules! statement {
        () => {
            diesel::update(webhook_events::table.filter(webhook_events::id.eq_any(ids))).set((
                webhook_events::status.eq(EventStatus::Applied),
                webhook_events::attempts.eq(webhook_events::attempts + 1),
                webhook_events::applied_at.eq(at),
                webhook_events::last_error.eq(None::<String>),
            ))
        };
    }
    match conn {
        // `= ANY($1)`: one text for any number of ids.
        DbConnection::Postgres(c) => crate::fixed!(statement!()).execute(c)?,
        // One `?` per id: a text per batch size, so not kept.
        DbConnection::Sqlite(c) => statement!().execute(c)?,
    };
    Ok(())
}

/// Records a failed attempt: `failed` with the next attempt time, or `dead` when out of attempts.
pub fn mark_failed(
    conn: &mut DbConnection,
    id: &str,
    error: &str,
    next_attempt_at: Option<NaiveDateTime>,
) -> Result<(), StorageError> {
    let (new_status, next) = match next_attempt_at {
        Some(at) => (EventStatus::Retrying, at),
        None => (EventStatus::Dead, time::now()),
    };
    diesel::update(webhook_events::table.find(id))
        .set((
            webhook_events::status.eq(new_status),
            webhook_events::attempts.eq(webhook_events::attempts + 1),
            webhook_events::last_error.eq(error),
            webhook_events::next_attempt_at.eq(next),
        ))
        .execute(conn)?;
    Ok(())
}

/// Ends a thin event's fetch in `status` (`fetched` or `gone`), with a note for a person; only
/// while it is still `fetching`, so a fetch run twice settles it once.
pub fn settle_thin(
    conn: &mut DbConnection,
    id: &str,
    status: EventStatus,
    note: Option<&str>,
) -> Result<(), StorageError> {
    diesel::update(
        webhook_events::table
            .find(id)
            .filter(webhook_events::status.eq(EventStatus::Fetching)),
    )
    .set((
        webhook_events::status.eq(status),
        webhook_events::attempts.eq(webhook_events::attempts + 1),
        webhook_events::last_error.eq(note),
        webhook_events::applied_at.eq(time::now()),
    ))
    .execute(conn)?;
    Ok(())
}

/// Says on a thin event why its fetch stopped (the job is `failed` or `dead`), or clears it.
pub fn note_error(
    conn: &mut DbConnection,
    id: &str,
    error: Option<&str>,
) -> Result<(), StorageError> {
    diesel::update(webhook_events::table.find(id))
        .set(webhook_events::last_error.eq(error))
        .execute(conn)?;
    Ok(())
}

/// Makes a thin event wait for its fetch again (a replay reads Stripe anew).
pub fn schedule_refetch(conn: &mut DbConnection, id: &str) -> Result<(), StorageError> {
    diesel::update(webhook_events::table.find(id))
        .set((
            webhook_events::status.eq(EventStatus::Fetching),
            webhook_events::attempts.eq(0),
            webhook_events::last_error.eq(None::<String>),
            webhook_events::applied_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Puts an event back to be tried again at `at`, without counting an attempt.
pub fn retry_soon(
    conn: &mut DbConnection,
    id: &str,
    at: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(webhook_events::table.find(id))
        .set(webhook_events::next_attempt_at.eq(at))
        .execute(conn)?;
    Ok(())
}

/// Finds an event by our id or by Stripe's event id.
pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<EventRow>, StorageError> {
    Ok(webhook_events::table
        .filter(
            webhook_events::id
                .eq(id)
                .or(webhook_events::stripe_event_id.eq(id)),
        )
        .order(webhook_events::received_at.asc())
        .select(EventRow::as_select())
        .first(conn)
        .optional()?)
}

/// Makes an event due again with a fresh set of attempts.
pub fn schedule_replay(conn: &mut DbConnection, id: &str) -> Result<(), StorageError> {
    diesel::update(webhook_events::table.find(id))
        .set((
            webhook_events::status.eq(EventStatus::Pending),
            webhook_events::attempts.eq(0),
            webhook_events::next_attempt_at.eq(time::now()),
        ))
        .execute(conn)?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub event_type: Option<String>,
    pub object_id: Option<String>,
    pub connection_id: Option<String>,
    pub after: Option<String>,
}

/// A page of events, newest first by our id (ids are time-ordered: see `ids::new_id`).
pub fn list(
    conn: &mut DbConnection,
    filter: &EventFilter,
    limit: i64,
) -> Result<Vec<EventRow>, StorageError> {
    let mut query = webhook_events::table
        .select(EventRow::as_select())
        .order(webhook_events::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(status) = &filter.status {
        query = query.filter(webhook_events::status.eq(*status));
    }
    if let Some(event_type) = &filter.event_type {
        query = query.filter(webhook_events::event_type.eq(event_type.clone()));
    }
    if let Some(object_id) = &filter.object_id {
        query = query.filter(webhook_events::object_id.eq(object_id.clone()));
    }
    if let Some(connection_id) = &filter.connection_id {
        query = query.filter(webhook_events::connection_id.eq(connection_id.clone()));
    }
    if let Some(after) = &filter.after {
        query = query.filter(webhook_events::id.lt(after.clone()));
    }
    Ok(query.load(conn)?)
}

/// Events still waiting to be applied for the first time.
pub fn count_pending(conn: &mut DbConnection) -> Result<i64, StorageError> {
    Ok(webhook_events::table
        .filter(webhook_events::status.eq(EventStatus::Pending))
        .count()
        .get_result(conn)?)
}

/// Counts of events by status, for the metrics gauges.
pub fn count_by_status(conn: &mut DbConnection) -> Result<Vec<(EventStatus, i64)>, StorageError> {
    Ok(webhook_events::table
        .group_by(webhook_events::status)
        .select((webhook_events::status, diesel::dsl::count_star()))
        .load(conn)?)
}

pub fn insert_rejection(
    conn: &mut DbConnection,
    connection_id: &str,
    reason: &str,
) -> Result<(), StorageError> {
    diesel::insert_into(webhook_rejections::table)
        .values((
            webhook_rejections::id.eq(ids::new_id("rej")),
            webhook_rejections::connection_id.eq(connection_id),
            webhook_rejections::reason.eq(reason),
            webhook_rejections::at.eq(time::now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Creates or refreshes a bare connection row, without keys (tests and benchmarks use it; the
/// environment's connection is registered by `storage::connections::register_env`).
pub fn ensure_connection(
    conn: &mut DbConnection,
    id: &str,
    name: &str,
    mode: &str,
    origin: ConnectionOrigin,
) -> Result<(), StorageError> {
    let now = time::now();
    conn.write_transaction(|conn| {
        let updated = diesel::update(connections::table.find(id))
            .set((connections::mode.eq(mode), connections::updated_at.eq(now)))
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(connections::table)
                .values((
                    connections::id.eq(id),
                    connections::name.eq(name),
                    connections::mode.eq(mode),
                    connections::origin.eq(origin),
                    connections::status.eq(ConnectionStatus::Active),
                    connections::created_at.eq(now),
                    connections::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}
