//! Wiring shared by `billmirror serve` and the tests: the application state and the background
//! workers, started and stopped together.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::http::AppState;
use crate::storage::{events, Backend, Db, StorageError};
use crate::webhook::inbox::Inbox;
use crate::webhook::{Endpoint, Endpoints, ENV_CONNECTION_ID};
use crate::{ledger, telemetry};

/// Builds the state every request shares. Registers the connection configured from the
/// environment, so that its events have a connection row to belong to.
pub fn state(config: Config, db: Db) -> Result<AppState, StorageError> {
    let endpoints = Endpoints::default();
    if let Some(env) = &config.env_connection {
        let mode = env.mode();
        events::ensure_connection(
            &mut *db.blocking()?,
            ENV_CONNECTION_ID,
            "environment",
            mode.unwrap_or("unknown"),
            "env",
        )?;
        if !env.webhook_secrets.is_empty() {
            endpoints.set(Endpoint {
                connection_id: ENV_CONNECTION_ID.to_owned(),
                mode,
                secrets: env.webhook_secrets.clone(),
            });
        }
    }
    Ok(AppState {
        inbox: Inbox::start(db.clone()),
        db,
        config: Arc::new(config),
        metrics: telemetry::metrics(),
        endpoints,
    })
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
        let tasks = (0..apply_workers)
            .map(|_| {
                tokio::spawn(ledger::worker::run(
                    state.db.clone(),
                    state.inbox.stored.clone(),
                    state.config.webhooks.max_event_attempts,
                    receiver.clone(),
                ))
            })
            .collect();
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
