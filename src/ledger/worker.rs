//! The apply worker: takes due events from the inbox and applies each in the same transaction that
//! marks it applied. A failure is retried with exponential backoff; after `max_attempts` the event
//! is `dead`, visible in `/api/events` and replayable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use tokio::sync::{watch, Notify};

use super::apply::{self, ApplyError};
use super::Event;

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
    /// Claimed but left for the next pass when the batch time ran out.
    pub left: usize,
}

/// Runs until `shutdown` turns true, finishing the batch in hand first.
pub async fn run(
    db: Db,
    stored: Arc<Notify>,
    retry: EventRetry,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!("apply worker started");
    let mut claim = BATCH;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let batch_time = match db.backend() {
            Backend::Sqlite => SQLITE_BATCH_TIME,
            Backend::Postgres => POSTGRES_BATCH_TIME,
        };
        let pass = db
            .run(move |conn| apply_due_claiming(conn, retry, batch_time, claim))
            .await;
        if let Ok(pass) = &pass {
            claim = next_claim(claim, pass);
        }
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

/// Applies due events for up to a batch time, taking up to [`BATCH`] per transaction.
pub fn apply_due(
    conn: &mut DbConnection,
    retry: EventRetry,
    batch_time: Duration,
) -> Result<Pass, StorageError> {
    apply_due_claiming(conn, retry, batch_time, BATCH)
}

/// Applies due events for up to a batch time, a batch of up to `claim` events per transaction
/// (one commit for many events, and one statement marking them applied).
///
/// A batch is first applied without a savepoint per event (two statements fewer per event); if
/// any event fails, the transaction is rolled back and the same batch applied again with each
/// event in its own savepoint, so one bad event rolls back alone.
pub fn apply_due_claiming(
    conn: &mut DbConnection,
    retry: EventRetry,
    batch_time: Duration,
    claim: i64,
) -> Result<Pass, StorageError> {
    let claim = claim.clamp(1, BATCH);
    let started = Instant::now();
    let mut pass = Pass::default();
    let mut careful = false;
    loop {
        // The inbox holds every event durably; what applying them wrote can always be redone.
        let outcome = conn.relaxed_write_transaction(|conn| {
            let due = events::claim_due(conn, time::now(), claim)?;
            apply_batch(conn, &due, careful, retry, started, batch_time)
        });
        let batch = match outcome {
            Ok(batch) => batch,
            Err(BatchError::Redo) => {
                careful = true;
                continue;
            }
            Err(BatchError::Storage(e)) => return Err(e),
        };
        careful = false;
        pass.applied += batch.applied;
        pass.failed += batch.failed;
        pass.retried += batch.retried;
        pass.left += batch.left;
        if batch.claimed < claim as usize || started.elapsed() > batch_time {
            return Ok(pass);
        }
    }
}

/// What one transaction did with the events it claimed.
#[derive(Debug, Default)]
struct Batch {
    claimed: usize,
    applied: usize,
    failed: usize,
    retried: usize,
    left: usize,
}

#[derive(Debug)]
enum BatchError {
    /// An event failed in a batch applied without savepoints: roll back, apply it with them.
    Redo,
    Storage(StorageError),
}

impl From<StorageError> for BatchError {
    fn from(e: StorageError) -> Self {
        BatchError::Storage(e)
    }
}

fn apply_batch(
    conn: &mut DbConnection,
    due: &[EventRow],
    careful: bool,
    retry: EventRetry,
    started: Instant,
    batch_time: Duration,
) -> Result<Batch, BatchError> {
    let mut batch = Batch {
        claimed: due.len(),
        ..Batch::default()
    };
    let mut applied: Vec<&str> = Vec::with_capacity(due.len());
    // One read for the whole batch; the rules cannot change under this transaction's feet.
    let rules = crate::notify::rules::enabled(conn)?;
    for (n, row) in due.iter().enumerate() {
        // Every transaction applies at least one event, however long the claim took: a pass
        // that could end without progress would stall a large backlog forever.
        if n > 0 && started.elapsed() > batch_time {
            // The rest stay due and come first in the next pass.
            batch.left = due.len() - n;
            break;
        }
        let outcome = if careful {
            conn.savepoint(|conn| apply::apply(conn, row, &rules))
        } else {
            apply::apply(conn, row, &rules)
        };
        match outcome {
            Ok(()) => applied.push(&row.id),
            Err(_) if !careful => return Err(BatchError::Redo),
            Err(error) if is_contention(&error) => {
                // Another worker holds an object this event touches: try again shortly,
                // without spending one of the event's attempts.
                events::retry_soon(conn, &row.id, time::now() + TimeDelta::milliseconds(20))?;
                batch.retried += 1;
            }
            Err(error) => {
                record_failure(conn, row, &error, retry)?;
                batch.failed += 1;
            }
        }
    }
    events::mark_applied(conn, &applied, time::now())?;
    batch.applied = applied.len();
    Ok(batch)
}

/// Applies events in the transaction that is storing them: SQLite's inbox writer, so one commit
/// (one fsync) and one hold of the single write lock carry both, and the events need no claim.
/// As in a pass, the events are first applied without a savepoint each; if one fails, that is
/// undone and they are applied again each in its own savepoint, and one that fails stays pending
/// for the worker, which counts its attempts. Events left when `budget` runs out stay pending
/// too, so the acknowledgements waiting on this commit are not held up by a large batch. Returns
/// how many were applied.
pub fn apply_in_place(
    conn: &mut DbConnection,
    rows: &[(&EventRow, &Event)],
    budget: Duration,
) -> Result<usize, StorageError> {
    let started = Instant::now();
    let rules = crate::notify::rules::enabled(conn)?;
    let in_time = |n: usize| n == 0 || started.elapsed() <= budget;
    let all_at_once = conn.savepoint(|conn| {
        let mut applied: Vec<&str> = Vec::with_capacity(rows.len());
        for (n, (row, event)) in rows.iter().enumerate() {
            if !in_time(n) {
                break;
            }
            apply::apply_parsed(conn, row, event, &rules).map_err(|_| BatchError::Redo)?;
            applied.push(&row.id);
        }
        events::mark_applied(conn, &applied, time::now())?;
        Ok(applied.len())
    });
    match all_at_once {
        Ok(applied) => return Ok(applied),
        Err(BatchError::Storage(e)) => return Err(e),
        Err(BatchError::Redo) => {}
    }
    let mut applied: Vec<&str> = Vec::with_capacity(rows.len());
    for (n, (row, event)) in rows.iter().enumerate() {
        if !in_time(n) {
            break;
        }
        match conn.savepoint(|conn| apply::apply_parsed(conn, row, event, &rules)) {
            Ok(()) => applied.push(&row.id),
            Err(error) => tracing::debug!(
                stripe.event_id = %row.stripe_event_id,
                "not applied with its delivery, left to the apply worker: {error}"
            ),
        }
    }
    events::mark_applied(conn, &applied, time::now())?;
    Ok(applied.len())
}

/// How many events the next pass should claim: as many as the last one had time to handle when
/// time ran out (events claimed and left are claimed again, payloads and all), else more, up to
/// [`BATCH`].
pub fn next_claim(claim: i64, pass: &Pass) -> i64 {
    if pass.left > 0 {
        let handled = pass.applied + pass.failed + pass.retried;
        i64::try_from(handled).unwrap_or(BATCH).clamp(1, BATCH)
    } else {
        (claim + claim / 2 + 1).min(BATCH)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_shrinks_to_what_fitted_in_the_time_and_grows_back_to_the_batch() {
        let cut_short = Pass {
            applied: 30,
            failed: 1,
            left: 69,
            ..Pass::default()
        };
        assert_eq!(next_claim(100, &cut_short), 31);
        let nothing_fitted = Pass {
            left: 99,
            ..Pass::default()
        };
        assert_eq!(next_claim(100, &nothing_fitted), 1);
        let all_done = Pass {
            applied: 31,
            ..Pass::default()
        };
        assert_eq!(next_claim(31, &all_done), 47);
        assert_eq!(next_claim(90, &all_done), BATCH);
    }
}
