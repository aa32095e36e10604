//! Wiring shared by `billmirror serve` and the tests: the application state and the background
//! workers, started and stopped together.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::connections::Connections;
use crate::http::AppState;
use crate::invoices::push::PushWorker;
use crate::jobs::{self, JobKind};
use crate::notify::{self, Notifier};
use crate::storage::{Backend, Db};
use crate::sync::lines::LinesReader;
use crate::sync::reconcile::Reconciler;
use crate::sync::thin::ThinFetcher;
use crate::vault::{KeySource, Vault};
use crate::webhook::inbox::Inbox;
use crate::webhook::{Endpoint, Endpoints, ENV_CONNECTION_ID};
use crate::{ledger, telemetry};

/// Builds the state every request shares. Opens the vault (creating the SQLite key file on first
/// use), registers the connection configured from the environment (its secret key sealed into its
/// row, so it pushes and syncs like any other; its key report runs in the background once the
/// workers start) and loads every saved connection's webhook secrets.
pub async fn state(config: Config, db: Db) -> anyhow::Result<AppState> {
    let endpoints = Endpoints::default();
    let connections = connections(&config, &db, endpoints.clone())?;
    connections.fill_fingerprints().await?;
    match &config.env_connection {
        Some(env) => {
            connections.register_env(env).await?;
            if !env.webhook_secrets.is_empty() {
                endpoints.set(Endpoint {
                    connection_id: ENV_CONNECTION_ID.to_owned(),
                    mode: env.mode(),
                    secrets: env.webhook_secrets.clone(),
                });
            }
        }
        None => connections.retire_env().await?,
    }
    connections.load_endpoints().await?;
    let wakers = jobs::Wakers::new();
    let notifier = Notifier::new(
        db.clone(),
        connections.vault().clone(),
        notify::Settings {
            max_age: config.notify_max_age,
            public_url: config.public_url.clone(),
            timeout: NOTIFY_TIMEOUT,
            alerts: config.notify_alerts,
        },
        wakers.clone(),
    );
    Ok(AppState {
        inbox: Inbox::start(db.clone(), wakers.bell(JobKind::FetchThinEvent)),
        jobs: wakers,
        notifier,
        db,
        config: Arc::new(config),
        metrics: telemetry::metrics(),
        endpoints,
        connections,
    })
}

/// The connections service: opens the vault (creating the SQLite key file on first use, and
/// saying so once) for secrets sealed in the database.
pub fn connections(config: &Config, db: &Db, endpoints: Endpoints) -> anyhow::Result<Connections> {
    let (vault, source) = Vault::load(config.master_key.as_ref(), &config.database)?;
    if let KeySource::CreatedFile(path) = &source {
        tracing::warn!(
            path = %path.display(),
            "created a master key file for the Stripe secrets stored in the database; back it \
             up with the database, or set BILLMIRROR_MASTER_KEY"
        );
    }
    Ok(Connections::new(
        db.clone(),
        vault,
        endpoints,
        config.stripe.clone(),
        config.public_url.clone(),
        config.oauth.clone(),
    ))
}

/// The background workers; call [`Workers::stop`] after the HTTP server has stopped.
pub struct Workers {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts the workers on the current tokio runtime.
    pub fn start(state: &AppState) -> Workers {
        let (shutdown, receiver) = watch::channel(false);
        // PostgreSQL spreads the work over several workers (SKIP LOCKED claims, one advisory lock
        // per ledger object); SQLite has one writer, so one worker.
        let apply_workers = match state.db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let mut tasks: Vec<JoinHandle<()>> = (0..apply_workers)
            .map(|_| {
                tokio::spawn(ledger::worker::run(
                    state.db.clone(),
                    state.inbox.stored.clone(),
                    (&state.config.webhooks).into(),
                    receiver.clone(),
                ))
            })
            .collect();
        let settings = state.config.jobs;
        let policy = |concurrency| jobs::Policy {
            concurrency,
            lease: chrono::TimeDelta::from_std(settings.lease).unwrap_or(chrono::TimeDelta::MAX),
            backoff: settings.backoff,
            max_attempts: settings.max_attempts,
        };
        tasks.push(tokio::spawn(jobs::run(
            state.db.clone(),
            PushWorker::new(state.db.clone(), state.connections.clone()),
            policy(8),
            state.jobs.bell(JobKind::PushInvoice),
            receiver.clone(),
        )));
        tasks.push(tokio::spawn(jobs::run(
            state.db.clone(),
            LinesReader::new(state.db.clone(), state.connections.clone()),
            policy(2),
            state.jobs.bell(JobKind::CompleteInvoiceLines),
            receiver.clone(),
        )));
        tasks.push(tokio::spawn(jobs::run(
            state.db.clone(),
            ThinFetcher::new(
                state.db.clone(),
                state.connections.clone(),
                state.inbox.stored.clone(),
            ),
            policy(4),
            state.jobs.bell(JobKind::FetchThinEvent),
            receiver.clone(),
        )));
        // One report at a time: each lists whole accounts, within the connection's rate limit.
        tasks.push(tokio::spawn(jobs::run(
            state.db.clone(),
            Reconciler::new(state.db.clone(), state.connections.clone()),
            policy(1),
            state.jobs.bell(JobKind::Reconcile),
            receiver.clone(),
        )));
        // Each notify job may wait for its channel's turn, so more run at once than pushes do.
        tasks.push(tokio::spawn(jobs::run(
            state.db.clone(),
            state.notifier.clone(),
            policy(16),
            state.jobs.bell(JobKind::Notify),
            receiver.clone(),
        )));
        // Clicks from chat: each calls Stripe once or records a fact; a few at once.
        tasks.push(tokio::spawn(jobs::run(
            state.db.clone(),
            notify::actions::ChatActor::new(state.notifier.clone(), state.connections.clone()),
            policy(4),
            state.jobs.bell(JobKind::ChatAction),
            receiver.clone(),
        )));
        if let Some(every) = state.config.events_catchup_interval {
            tasks.push(tokio::spawn(catch_up_regularly(
                state.db.clone(),
                state.connections.clone(),
                every,
                receiver.clone(),
            )));
        }
        if let Some(every) = state.config.notify_alerts_interval {
            tasks.push(tokio::spawn(notify::ops::watch_regularly(
                state.notifier.clone(),
                every,
                receiver.clone(),
            )));
        }
        let env_key = state.config.env_connection.as_ref();
        if env_key.is_some_and(|env| env.secret_key.is_some()) {
            tasks.push(tokio::spawn(check_env_key(
                state.connections.clone(),
                receiver.clone(),
            )));
        }
        tasks.push(tokio::spawn(keep_connections_current(
            state.connections.clone(),
            state.config.key_recheck_interval,
            receiver,
        )));
        Workers { shutdown, tasks }
    }

    /// Asks every worker to stop at its next clean point and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!("a worker ended abnormally: {e}");
            }
        }
    }
}

/// One post to a chat service's time limit.
const NOTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The environment's key report, once at start: in the background, because Stripe may be slow or
/// unreachable and the start must neither wait for it nor fail on it (an unreachable Stripe
/// leaves the key `unverified`; the periodic re-check and `validate` try again).
async fn check_env_key(connections: Connections, mut shutdown: watch::Receiver<bool>) {
    tokio::select! {
        _ = shutdown.changed() => {}
        checked = connections.validate(ENV_CONNECTION_ID, "billmirror") => match checked {
            Ok(report) => tracing::info!(
                connection.id = ENV_CONNECTION_ID,
                ok = report.ok,
                can_push = report.can_push,
                key = report.verdict().as_str(),
                "the environment's key report ran"
            ),
            Err(e) => tracing::warn!(connection.id = ENV_CONNECTION_ID, error = %e, "the environment's key report failed"),
        },
    }
}

const RELOAD: std::time::Duration = std::time::Duration::from_secs(30);

/// Reloads the connections' webhook secrets every half minute (another instance may have rotated
/// them) and re-runs every key report each `recheck` interval, so health stays current.
async fn keep_connections_current(
    connections: Connections,
    recheck: Option<std::time::Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tick = recheck.map_or(RELOAD, |every| every.min(RELOAD));
    let mut next_recheck = recheck.map(|every| tokio::time::Instant::now() + every);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if let Err(e) = connections.load_endpoints().await {
            tracing::warn!(error = %e, "cannot reload the connections' webhook secrets");
        }
        connections.refresh_expiring().await;
        if let (Some(due), Some(every)) = (next_recheck, recheck) {
            if tokio::time::Instant::now() >= due {
                connections.recheck_all().await;
                next_recheck = Some(tokio::time::Instant::now() + every);
            }
        }
    }
}

/// Lists each active connection's recent events from Stripe every `every`, so that webhooks
/// missed while billmirror was unreachable are recovered (duplicates are recognised).
async fn catch_up_regularly(
    db: Db,
    connections: Connections,
    every: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let rows = match db.run(crate::storage::connections::active_with_keys).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list connections to catch up");
                continue;
            }
        };
        // Twice the interval (at least an hour) back, so a slow run leaves no gap.
        let window = chrono::Duration::from_std(every * 2).unwrap_or(chrono::Duration::hours(1));
        let since = chrono::Utc::now() - window.max(chrono::Duration::hours(1));
        for row in rows {
            match crate::sync::catch_up(&db, &connections, &row.id, since).await {
                Ok(report) => {
                    tracing::info!(connection.id = %row.id, listed = report.listed, new = report.new, "events caught up")
                }
                Err(e) => {
                    tracing::warn!(connection.id = %row.id, error = %e, "event catch-up failed")
                }
            }
        }
    }
}
