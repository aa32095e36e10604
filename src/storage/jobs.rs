//! The job queue's table: enqueueing inside the caller's transaction, claiming by kind, finishing,
//! and what the API shows and retries.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use serde::Serialize;

use super::schema::jobs;
use super::{DbConnection, StorageError};
use crate::domain::states::{JobKind, JobState};
use crate::domain::{ids, time};

#[derive(
    Debug, Clone, Serialize, Queryable, Selectable, Insertable, QueryableByName, utoipa::ToSchema,
)]
#[diesel(table_name = jobs)]
#[schema(as = Job)]
pub struct JobRow {
    pub id: String,
    pub kind: JobKind,
    /// What the job works on (an invoice id).
    pub subject_id: String,
    pub connection_id: String,
    pub status: JobState,
    /// Attempts started, the running one included.
    pub attempts: i32,
    #[serde(with = "time::serde_rfc3339")]
    pub run_after: NaiveDateTime,
    #[serde(skip)]
    pub locked_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde_rfc3339")]
    pub created_at: NaiveDateTime,
    #[serde(with = "time::serde_rfc3339")]
    pub updated_at: NaiveDateTime,
    /// What the job needs beyond its subject's row, as JSON.
    #[serde(skip)]
    pub payload: Option<String>,
    /// Jobs of one kind with one dedupe key are one job.
    #[serde(skip)]
    pub dedupe_key: String,
}

/// A job to enqueue.
pub struct NewJob<'a> {
    pub kind: JobKind,
    pub subject_id: &'a str,
    pub connection_id: &'a str,
    pub payload: Option<String>,
    pub dedupe_key: &'a str,
}

/// Enqueues `job` inside the caller's transaction, due now. The same kind and dedupe key already
/// waiting or running is left as it is; one that ended is armed again.
pub fn enqueue(conn: &mut DbConnection, job: &NewJob) -> Result<(), StorageError> {
    let now = time::now();
    let existing: Option<(String, JobState)> = jobs::table
        .filter(jobs::kind.eq(job.kind))
        .filter(jobs::dedupe_key.eq(job.dedupe_key))
        .select((jobs::id, jobs::status))
        .first(conn)
        .optional()?;
    match existing {
        Some((_, JobState::Pending)) => {}
        Some((id, _)) => {
            diesel::update(jobs::table.find(id))
                .set((
                    jobs::status.eq(JobState::Pending),
                    jobs::attempts.eq(0),
                    jobs::run_after.eq(now),
                    jobs::locked_until.eq(None::<NaiveDateTime>),
                    jobs::last_error.eq(None::<String>),
                    jobs::payload.eq(&job.payload),
                    jobs::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        None => {
            let row = JobRow {
                id: ids::new_id("job"),
                kind: job.kind,
                subject_id: job.subject_id.to_owned(),
                connection_id: job.connection_id.to_owned(),
                status: JobState::Pending,
                attempts: 0,
                run_after: now,
                locked_until: None,
                last_error: None,
                created_at: now,
                updated_at: now,
                payload: job.payload.clone(),
                dedupe_key: job.dedupe_key.to_owned(),
            };
            // Two transactions enqueueing the same job at once (PostgreSQL): one row stands.
            match conn {
                DbConnection::Postgres(c) => diesel::insert_into(jobs::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(c)?,
                DbConnection::Sqlite(c) => diesel::insert_into(jobs::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(c)?,
            };
        }
    }
    Ok(())
}

/// Takes the next due job of `kind` until `locked_until` and counts the attempt. On PostgreSQL
/// `SKIP LOCKED` lets several instances claim side by side; SQLite has one writer.
pub fn claim(
    conn: &mut DbConnection,
    kind: JobKind,
    now: NaiveDateTime,
    locked_until: NaiveDateTime,
) -> Result<Option<JobRow>, StorageError> {
    let lock = if conn.is_sqlite() {
        ""
    } else {
        "FOR UPDATE SKIP LOCKED"
    };
    let sql = format!(
        "UPDATE jobs SET locked_until = $1, attempts = attempts + 1, updated_at = $2 \
         WHERE id = (SELECT id FROM jobs WHERE kind = $3 AND status = 'pending' \
         AND run_after <= $2 AND (locked_until IS NULL OR locked_until < $2) \
         ORDER BY run_after, id LIMIT 1 {lock}) \
         RETURNING *"
    );
    conn.write_transaction(|conn| {
        Ok(diesel::sql_query(sql)
            .bind::<Timestamp, _>(locked_until)
            .bind::<Timestamp, _>(now)
            .bind::<Text, _>(kind)
            .get_result::<JobRow>(conn)
            .optional()?)
    })
}

/// Ends a job's attempt in `status`; `pending` runs again after `run_after`.
pub fn finish(
    conn: &mut DbConnection,
    id: &str,
    status: JobState,
    last_error: Option<&str>,
    run_after: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(jobs::table.find(id))
        .set((
            jobs::status.eq(status),
            jobs::last_error.eq(last_error),
            jobs::run_after.eq(run_after),
            jobs::locked_until.eq(None::<NaiveDateTime>),
            jobs::updated_at.eq(time::now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<JobRow>, StorageError> {
    Ok(jobs::table
        .find(id)
        .select(JobRow::as_select())
        .first(conn)
        .optional()?)
}

/// The job of `kind` working on `subject_id`.
pub fn find_for(
    conn: &mut DbConnection,
    kind: JobKind,
    subject_id: &str,
) -> Result<Option<JobRow>, StorageError> {
    Ok(jobs::table
        .filter(jobs::kind.eq(kind))
        .filter(jobs::subject_id.eq(subject_id))
        .select(JobRow::as_select())
        .first(conn)
        .optional()?)
}

/// Newest first; `after` is the previous page's last id (ids sort by creation time).
pub fn list(
    conn: &mut DbConnection,
    kind: Option<JobKind>,
    status: Option<JobState>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, StorageError> {
    let mut query = jobs::table
        .select(JobRow::as_select())
        .order(jobs::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(kind) = kind {
        query = query.filter(jobs::kind.eq(kind));
    }
    if let Some(status) = status {
        query = query.filter(jobs::status.eq(status));
    }
    if let Some(after) = after {
        query = query.filter(jobs::id.lt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// Jobs by state, for health and metrics.
pub fn counts(conn: &mut DbConnection) -> Result<Vec<(JobKind, JobState, i64)>, StorageError> {
    Ok(jobs::table
        .group_by((jobs::kind, jobs::status))
        .select((jobs::kind, jobs::status, diesel::dsl::count_star()))
        .load(conn)?)
}

/// Jobs still to run (or running).
pub fn open(conn: &mut DbConnection) -> Result<i64, StorageError> {
    Ok(jobs::table
        .filter(jobs::status.eq(JobState::Pending))
        .count()
        .get_result(conn)?)
}
