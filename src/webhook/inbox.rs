//! The inbox writer: stores verified events durably before the webhook is answered.
//!
//! Committing each request on its own would cap ingest at the disk's commit rate. Instead, writer
//! threads take every event that is waiting, insert them in one transaction and answer each
//! request after that commit (group commit). An answer still never precedes its event's commit.
//!
//! On SQLite the same transaction also applies the new events to the ledger, within a time
//! budget: one commit (one fsync, one hold of the single write lock) carries both, and the events
//! need not be claimed and read back from the inbox. An event that cannot be applied there (it
//! fails, the budget ran out) stays pending, and the apply worker takes it as before. PostgreSQL
//! commits several batches at once and its apply workers run beside the writers, so there the
//! writers only store: applying in place made acknowledgements twice as slow and applied no faster
//! (BENCHMARKS.md).

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::domain::states::{EventStatus, JobKind};
use crate::ledger::{worker, Event};
use crate::storage::events::{self, EventRow};
use crate::storage::jobs::{self, NewJob};
use crate::storage::{Backend, Db, StorageError};

/// Most events one commit carries.
const MAX_BATCH: usize = 256;

/// On SQLite the writer also applies the events it stores, in the same transaction, for at most
/// this long per batch; the rest are left to the apply worker. The acknowledgements of the batch
/// wait for its commit, so this bounds what applying adds to their latency.
const APPLY_IN_PLACE_BUDGET: Duration = Duration::from_millis(10);

enum Job {
    Store {
        row: Box<EventRow>,
        /// The payload parsed for the ledger, when the event is to be applied and parses.
        event: Option<Box<Event>>,
        reply: oneshot::Sender<Result<bool, StorageError>>,
    },
    Reject {
        connection_id: String,
        reason: &'static str,
    },
}

/// A handle to the writer threads; cheap to clone. The threads end when the last handle is gone,
/// after writing what they hold.
#[derive(Clone)]
pub struct Inbox {
    jobs: mpsc::Sender<Job>,
    /// Whether the writer applies what it stores (SQLite), so payloads are parsed for it.
    applies: bool,
    /// Woken after each commit that stored a new event, so the apply worker need not poll.
    pub stored: Arc<Notify>,
}

/// The bells the writers ring after a commit.
struct Bells {
    /// The apply workers: a new event to apply.
    stored: Arc<Notify>,
    /// The `fetch_thin_event` runner: a new thin event to read from Stripe.
    thin: Arc<Notify>,
}

impl Inbox {
    /// `thin` is the `fetch_thin_event` runner's bell, rung when a thin event was stored.
    pub fn start(db: Db, thin: Arc<Notify>) -> Inbox {
        let db_is_sqlite = db.backend() == Backend::Sqlite;
        let (jobs, receiver) = mpsc::channel(8 * MAX_BATCH);
        let receiver = Arc::new(Mutex::new(receiver));
        let stored = Arc::new(Notify::new());
        // SQLite has one writer at a time anyway; PostgreSQL commits several batches in parallel.
        let writers = match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        for n in 0..writers {
            let (db, receiver) = (db.clone(), receiver.clone());
            let bells = Bells {
                stored: stored.clone(),
                thin: thin.clone(),
            };
            let spawned = thread::Builder::new()
                .name(format!("inbox-writer-{n}"))
                .spawn(move || write_batches(&db, &receiver, &bells));
            if let Err(e) = spawned {
                tracing::error!("cannot start an inbox writer thread: {e}");
            }
        }
        Inbox {
            jobs,
            stored,
            applies: db_is_sqlite,
        }
    }

    /// Stores `row` unless an event with its Stripe id is already stored for its connection.
    /// Returns `true` when the event is new. Returns only after the commit.
    pub async fn store(&self, row: EventRow) -> Result<bool, StorageError> {
        let (reply, answer) = oneshot::channel();
        // Parsed here, on the request's thread, rather than by the writer, which on SQLite is
        // the one thread every commit goes through. One that does not parse is left to the
        // apply worker, which records why.
        let event = (self.applies && row.status == EventStatus::Pending)
            .then(|| Event::parse(&row.payload).ok())
            .flatten()
            .map(Box::new);
        let job = Job::Store {
            row: Box::new(row),
            event,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| StorageError::Unavailable("the inbox writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Unavailable("the inbox writer has stopped".into()))?
    }

    /// Records a refused delivery for the connection's health report; best effort, never waits.
    pub fn record_rejection(&self, connection_id: &str, reason: &'static str) {
        let job = Job::Reject {
            connection_id: connection_id.to_owned(),
            reason,
        };
        // A full queue means we are flooded; dropping a rejection record is the right trade.
        let _ = self.jobs.try_send(job);
    }
}

fn write_batches(db: &Db, receiver: &Mutex<mpsc::Receiver<Job>>, bells: &Bells) {
    loop {
        let batch = {
            let Ok(mut receiver) = receiver.lock() else {
                return;
            };
            let Some(first) = receiver.blocking_recv() else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let outcome = write(db, &batch);
        // Events stored but not applied with their delivery wake the apply worker.
        let mut any_pending = false;
        let any_thin = batch.iter().any(
            |job| matches!(job, Job::Store { row, .. } if row.status == EventStatus::Fetching),
        );
        let mut results = match outcome {
            Ok(stored) => {
                any_pending = stored.left_pending;
                stored
                    .inserted
                    .into_iter()
                    .map(Ok)
                    .collect::<Vec<_>>()
                    .into_iter()
            }
            Err(error) => {
                tracing::error!(events = batch.len(), "cannot store webhook events: {error}");
                let cause = error.to_string();
                (0..batch.len())
                    .map(|_| Err(StorageError::Unavailable(cause.clone())))
                    .collect::<Vec<_>>()
                    .into_iter()
            }
        };
        for job in batch {
            if let Job::Store { reply, .. } = job {
                let result = results.next().unwrap_or_else(|| {
                    Err(StorageError::Unavailable(
                        "the inbox lost track of a result".into(),
                    ))
                });
                // The request may have gone away; its event is stored all the same.
                let _ = reply.send(result);
            }
        }
        if any_pending {
            bells.stored.notify_one();
        }
        if any_thin {
            bells.thin.notify_one();
        }
    }
}

/// Times a batch is written before its requests are answered 503. PostgreSQL may still end a
/// batch as a deadlock victim or a serialization failure (another instance's writer, the apply
/// worker); such a batch is whole again on the next try.
const ATTEMPTS: u32 = 5;

/// How long one batch may wait for a lock, and run, before its requests are answered 503 (with
/// `Retry-After`) instead of waiting behind, say, a table lock without limit.
const LOCK_WAIT: Duration = Duration::from_secs(3);
const STATEMENT_WAIT: Duration = Duration::from_secs(10);

/// What a batch's commit stored.
struct Stored {
    /// Per `Store` job, in order: whether its event was new.
    inserted: Vec<bool>,
    /// Whether a new event was left for the apply worker.
    left_pending: bool,
}

/// Writes one batch in one transaction, again when PostgreSQL asks for it.
fn write(db: &Db, batch: &[Job]) -> Result<Stored, StorageError> {
    let mut attempt = 1;
    loop {
        match write_once(db, batch) {
            Err(error) if error.is_retryable_conflict() && attempt < ATTEMPTS => {
                tracing::warn!(
                    events = batch.len(),
                    attempt,
                    "webhook batch conflicted; writing it again: {error}"
                );
                // A short, growing pause with jitter, so the two sides do not meet again at once.
                let jitter = u64::from(crate::domain::ids::random_bytes::<1>()[0]) % 20;
                thread::sleep(Duration::from_millis(10 * u64::from(attempt) + jitter));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn write_once(db: &Db, batch: &[Job]) -> Result<Stored, StorageError> {
    let apply_in_place = db.backend() == Backend::Sqlite;
    db.with(|conn| {
        conn.write_transaction(|conn| {
            conn.bound_waits(LOCK_WAIT, STATEMENT_WAIT)?;
            let stored: Vec<(&EventRow, Option<&Event>)> = batch
                .iter()
                .filter_map(|job| match job {
                    Job::Store { row, event, .. } => Some((&**row, event.as_deref())),
                    Job::Reject { .. } => None,
                })
                .collect();
            let rows: Vec<&EventRow> = stored.iter().map(|(row, _)| *row).collect();
            let inserted = events::insert_new(conn, rows.iter().copied())?;
            // A thin event's fetch is enqueued with it: once stored, it is read from Stripe,
            // even after a crash right after this commit.
            for (row, new) in rows.iter().zip(&inserted) {
                if *new && row.status == EventStatus::Fetching {
                    jobs::enqueue(
                        conn,
                        &NewJob {
                            kind: JobKind::FetchThinEvent,
                            subject_id: &row.id,
                            connection_id: &row.connection_id,
                            payload: None,
                            dedupe_key: &row.id,
                        },
                    )?;
                }
            }
            for job in batch {
                if let Job::Reject {
                    connection_id,
                    reason,
                } = job
                {
                    events::insert_rejection(conn, connection_id, reason)?;
                }
            }
            let fresh: Vec<(&EventRow, &Event)> = stored
                .iter()
                .zip(&inserted)
                .filter(|((row, _), new)| **new && row.status == EventStatus::Pending)
                .filter_map(|((row, event), _)| Some((*row, (*event)?)))
                .collect();
            let unparsed = rows
                .iter()
                .zip(&inserted)
                .filter(|(row, new)| **new && row.status == EventStatus::Pending)
                .count()
                - fresh.len();
            let mut applied = 0;
            if apply_in_place && !fresh.is_empty() {
                // Storing must not fail because applying did: a failure here undoes only the
                // applying, and the events stay pending for the worker.
                match conn
                    .savepoint(|conn| worker::apply_in_place(conn, &fresh, APPLY_IN_PLACE_BUDGET))
                {
                    Ok(n) => applied = n,
                    Err(error) => tracing::warn!(
                        events = fresh.len(),
                        "cannot apply events with their delivery; the apply worker will: {error}"
                    ),
                }
            }
            Ok(Stored {
                inserted,
                left_pending: applied < fresh.len() || unparsed > 0,
            })
        })
    })
}
