//! The job queue: background work that must happen, survive restarts and run once per need.
//! A job is enqueued inside the transaction that makes it necessary (`enqueue`), known by its kind
//! and a dedupe key. Each kind has a runner that claims only that kind's due jobs (on PostgreSQL
//! with `FOR UPDATE SKIP LOCKED`, so instances share the work), holds each under a lease, and
//! settles every attempt by one policy: done, cancelled, failed (a person must act), retried after
//! a backoff, or `dead` once the policy's attempts are spent. Failed and dead jobs are listed by
//! `GET /api/jobs` and run again by `POST /api/jobs/{id}/retry`.
//!
//! Adding a kind: a variant of [`JobKind`], a [`Handler`] for it, and its runner started in
//! `app::Workers::start` with its [`Policy`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

pub use crate::domain::states::{JobKind, JobState};
pub use crate::storage::jobs::{enqueue, JobRow, NewJob};

use crate::domain::backoff::Backoff;
use crate::domain::time;
use crate::storage::{jobs as store, Db, DbConnection, StorageError};

/// How one attempt ended, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The work is no longer wanted.
    Cancelled(String),
    /// Something that may pass (Stripe or the database unavailable): try again later.
    Retry(String),
    /// Refused for a reason a person must fix: not retried until asked.
    Failed(String),
}

impl From<StorageError> for Outcome {
    fn from(error: StorageError) -> Self {
        Outcome::Retry(format!("the database: {error}"))
    }
}

/// How the runner settled an attempt, after the policy had its say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Done,
    Cancelled(String),
    /// Runs again after the backoff.
    Retrying(String),
    Failed(String),
    /// Every attempt the policy allows failed with errors that might have passed.
    Dead(String),
}

impl Settled {
    fn state(&self) -> JobState {
        match self {
            Settled::Done => JobState::Done,
            Settled::Cancelled(_) => JobState::Cancelled,
            Settled::Retrying(_) => JobState::Pending,
            Settled::Failed(_) => JobState::Failed,
            Settled::Dead(_) => JobState::Dead,
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Settled::Done => None,
            Settled::Cancelled(why)
            | Settled::Retrying(why)
            | Settled::Failed(why)
            | Settled::Dead(why) => Some(why),
        }
    }
}

/// How a kind's jobs are run.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Jobs of this kind run at once by one runner.
    pub concurrency: usize,
    /// How long a claimed job stays the claimer's; one whose runner died is taken again after.
    pub lease: TimeDelta,
    pub backoff: Backoff,
    /// Attempts before a job that keeps failing with retryable errors is `dead`.
    pub max_attempts: u32,
}

impl Policy {
    /// What an attempt's outcome means for the job, given how many attempts it has had.
    pub fn settle(&self, outcome: Outcome, attempts: u32) -> Settled {
        match outcome {
            Outcome::Done => Settled::Done,
            Outcome::Cancelled(why) => Settled::Cancelled(why),
            Outcome::Failed(why) => Settled::Failed(why),
            Outcome::Retry(why) if attempts >= self.max_attempts => Settled::Dead(format!(
                "gave up after {attempts} attempts; the last error: {why}"
            )),
            Outcome::Retry(why) => Settled::Retrying(why),
        }
    }
}

/// One kind of job's work.
pub trait Handler: Clone + Send + Sync + 'static {
    const KIND: JobKind;

    /// Does the work once. Must be safe to run again after a crash at any point.
    fn run(&self, job: JobRow) -> impl Future<Output = Outcome> + Send;

    /// Writes what the settled attempt means for the job's subject, in the transaction that
    /// records it (the invoice's sync state, an audit entry).
    fn record(
        &self,
        _conn: &mut DbConnection,
        _job: &JobRow,
        _settled: &Settled,
    ) -> Result<(), StorageError> {
        Ok(())
    }
}

/// One bell per job kind: the code that enqueues a job rings its kind's, so the runner starts it
/// at once instead of at its next look.
#[derive(Clone, Default)]
pub struct Wakers(Arc<std::collections::HashMap<JobKind, Arc<Notify>>>);

impl Wakers {
    pub fn new() -> Wakers {
        Wakers(Arc::new(
            JobKind::ALL
                .iter()
                .map(|kind| (*kind, Arc::new(Notify::new())))
                .collect(),
        ))
    }

    pub fn bell(&self, kind: JobKind) -> Arc<Notify> {
        self.0.get(&kind).cloned().unwrap_or_default()
    }

    pub fn wake(&self, kind: JobKind) {
        if let Some(bell) = self.0.get(&kind) {
            bell.notify_one();
        }
    }
}

/// How often a runner looks for due jobs when nothing woke it.
const POLL: Duration = Duration::from_millis(250);

/// Runs `handler`'s jobs until `shutdown` turns true, then lets the attempts in flight finish.
/// `wake` lets the code that enqueues a job start it without waiting for the next poll.
pub async fn run<H: Handler>(
    db: Db,
    handler: H,
    policy: Policy,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut running = JoinSet::new();
    loop {
        while running.len() < policy.concurrency {
            let now = time::now();
            let claimed = db
                .run(move |conn| store::claim(conn, H::KIND, now, now + policy.lease))
                .await;
            match claimed {
                Ok(Some(job)) => {
                    let (db, handler) = (db.clone(), handler.clone());
                    running.spawn(async move { attempt(db, handler, policy, job).await });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(job.kind = %H::KIND, error = %e, "cannot claim jobs");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = wake.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    while running.join_next().await.is_some() {}
}

async fn attempt<H: Handler>(db: Db, handler: H, policy: Policy, job: JobRow) {
    let outcome = handler.run(job.clone()).await;
    let attempts = u32::try_from(job.attempts).unwrap_or(0);
    let settled = policy.settle(outcome, attempts);
    match &settled {
        Settled::Retrying(e) => {
            tracing::info!(job.id = %job.id, job.kind = %job.kind, subject = %job.subject_id, attempt = attempts, error = %e, "job will be retried")
        }
        Settled::Failed(e) | Settled::Dead(e) => {
            tracing::warn!(job.id = %job.id, job.kind = %job.kind, subject = %job.subject_id, error = %e, "job stopped; a person must act")
        }
        _ => {}
    }
    let run_after = match &settled {
        Settled::Retrying(_) => time::now() + policy.backoff.delay_span(attempts),
        _ => time::now(),
    };
    let recorded = db
        .run(move |conn| {
            conn.write_transaction(|conn| {
                store::finish(conn, &job.id, settled.state(), settled.error(), run_after)?;
                handler.record(conn, &job, &settled)
            })
        })
        .await;
    if let Err(e) = recorded {
        // The lease expires and another attempt picks the job up.
        tracing::error!(error = %e, "cannot record a job's outcome");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no job has that id")]
    NotFound,
    #[error("the job is {0}: only failed or dead jobs are retried")]
    NotStopped(JobState),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Runs a failed or dead job again from its first attempt, at once.
pub fn retry(conn: &mut DbConnection, id: &str) -> Result<JobRow, RetryError> {
    let job = store::find(conn, id)?.ok_or(RetryError::NotFound)?;
    if !matches!(job.status, JobState::Failed | JobState::Dead) {
        return Err(RetryError::NotStopped(job.status));
    }
    store::enqueue(
        conn,
        &NewJob {
            kind: job.kind,
            subject_id: &job.subject_id,
            connection_id: &job.connection_id,
            payload: job.payload.clone(),
            dedupe_key: &job.dedupe_key,
        },
    )?;
    store::find(conn, id)?.ok_or(RetryError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_retried_until_the_policy_gives_up() {
        let policy = Policy {
            concurrency: 1,
            lease: TimeDelta::minutes(5),
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
                jitter: false,
            },
            max_attempts: 3,
        };
        let retry = || Outcome::Retry("Stripe is unavailable".into());
        assert_eq!(
            policy.settle(retry(), 1),
            Settled::Retrying("Stripe is unavailable".into())
        );
        assert_eq!(policy.settle(retry(), 2).state(), JobState::Pending);
        let dead = policy.settle(retry(), 3);
        assert_eq!(dead.state(), JobState::Dead);
        assert_eq!(
            dead.error(),
            Some("gave up after 3 attempts; the last error: Stripe is unavailable")
        );
        assert_eq!(
            policy.settle(Outcome::Failed("refused".into()), 1).state(),
            JobState::Failed
        );
        assert_eq!(policy.settle(Outcome::Done, 99).state(), JobState::Done);
    }
}
