//! The apply worker: takes due events from the inbox and applies each in the same transaction that
//! marks it applied. A failure is retried with exponential backoff; after `max_attempts` the event
//! is `dead`, visible in `/api/events` and replayable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use tokio::sync::{watch, Notify};

use super::apply::{self, ApplyError};

use crate::config::WebhookSettings;
use crate::domain::backoff::Backoff;
use crate::domain::time;
use crate::storage::events::{self, EventRow};
use crate::storage::{Backend, Db, DbConnection, StorageError};

/// Most events claimed per transaction.
const BATCH: i64 = 100;
/// A transaction stops taking new events after this long. On SQLite it holds the only write lock,
/// and webhook acknowledgements wait for that lock: short transactions keep their latency low.
/// PostgreSQL writers do not wait for each other, so its batches may run longer.
const SQLITE_BATCH_TIME: Duration = Duration::from_millis(10);
const POSTGRES_BATCH_TIME: Duration = Duration::from_millis(100);
/// How often the worker looks for due retries when nothing new arrives.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How failed events are retried: after `backoff`, until `max_attempts`, then `dead`.
#[derive(Debug, Clone, Copy)]
pub struct EventRetry {
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl Default for EventRetry {
    /// The defaults of `MAX_EVENT_ATTEMPTS`, `EVENT_RETRY_BACKOFF_SECS` and `EVENT_RETRY_MAX_SECS`.
    fn default() -> Self {
        EventRetry {
            max_attempts: 8,
            backoff: Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(3600),
                jitter: false,
            },
        }
    }
}

impl From<&WebhookSettings> for EventRetry {
    fn from(settings: &WebhookSettings) -> Self {
        EventRetry {
            max_attempts: settings.max_event_attempts,
            backoff: settings.retry_backoff,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub applied: usize,
    pub failed: usize,
    /// Put back because another worker held an object it touches.
    pub retried: usize,
}

/// Runs until `shutdown` turns true, finishing the batch in hand first.
pub async fn run(
    db: Db,
    stored: Arc<Notify>,
    retry: EventRetry,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!("apply worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let batch_time = match db.backend() {
            Backend::Sqlite => SQLITE_BATCH_TIME,
            Backend::Postgres => POSTGRES_BATCH_TIME,
        };
        let pass = db.run(move |conn| apply_due(conn, retry, batch_time)).await;
        match pass {
            Ok(pass) if pass.applied + pass.failed + pass.retried > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::error!("the apply worker cannot reach the database: {e}"),
        }
        tokio::select! {
            _ = stored.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("apply worker stopped");
}

/// Waits until no event is pending (the apply workers have caught up with what was stored), at
/// most `limit`; `true` when they did. `wake` is the apply workers' bell, rung so none sleeps.
pub async fn wait_until_applied(
    db: &Db,
    wake: &Notify,
    limit: Option<Duration>,
) -> Result<bool, StorageError> {
    let deadline = limit.map(|limit| Instant::now() + limit);
    loop {
        wake.notify_waiters();
        if db.run(events::count_pending).await? == 0 {
            return Ok(true);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Applies due events for up to a batch time, a batch per transaction (one commit for many
/// events). Inside it each event is applied in a savepoint, so one bad event rolls back alone.
pub fn apply_due(
    conn: &mut DbConnection,
    retry: EventRetry,
    batch_time: Duration,
) -> Result<Pass, StorageError> {
    let per_transaction = BATCH;
    let started = Instant::now();
    let mut pass = Pass::default();
    loop {
        // The inbox holds every event durably; what applying them wrote can always be redone.
        let claimed = conn.relaxed_write_transaction(|conn| {
            let due = events::claim_due(conn, time::now(), per_transaction)?;
            let claimed = due.len();
            for (n, row) in due.into_iter().enumerate() {
                // Every transaction applies at least one event, however long the claim took: a
                // pass that could end without progress would stall a large backlog forever.
                if n > 0 && started.elapsed() > batch_time {
                    // The rest stay due and come first in the next pass.
                    break;
                }
                match conn.savepoint(|conn| apply::apply(conn, &row)) {
                    Ok(()) => {
                        events::mark_applied(conn, &row.id, time::now())?;
                        pass.applied += 1;
                    }
                    Err(error) if is_contention(&error) => {
                        // Another worker holds an object this event touches: try again shortly,
                        // without spending one of the event's attempts.
                        events::retry_soon(
                            conn,
                            &row.id,
                            time::now() + TimeDelta::milliseconds(20),
                        )?;
                        pass.retried += 1;
                    }
                    Err(error) => {
                        record_failure(conn, &row, &error, retry)?;
                        pass.failed += 1;
                    }
                }
            }
            Ok::<_, StorageError>(claimed)
        })?;
        if claimed < per_transaction as usize || started.elapsed() > batch_time {
            return Ok(pass);
        }
    }
}

/// Another worker holding an object, a deadlock or a serialisation failure: not a fault of the
/// event.
fn is_contention(error: &ApplyError) -> bool {
    match error {
        ApplyError::Contended(_) => true,
        ApplyError::Storage(e) => e.is_contention(),
        ApplyError::Payload(_) => false,
    }
}

fn record_failure(
    conn: &mut DbConnection,
    row: &EventRow,
    error: &ApplyError,
    retry: EventRetry,
) -> Result<(), StorageError> {
    let attempt = u32::try_from(row.attempts).unwrap_or(0) + 1;
    let next =
        (attempt < retry.max_attempts).then(|| time::now() + retry.backoff.delay_span(attempt));
    tracing::warn!(
        stripe.event_id = %row.stripe_event_id,
        event.type = %row.event_type,
        attempt,
        dead = next.is_none(),
        "cannot apply event: {error}"
    );
    events::mark_failed(conn, &row.id, &error.to_string(), next)
}
