//! How `serve` stops: SIGTERM (systemd, Kubernetes) and SIGINT (Ctrl-C) both stop it gracefully:
//! no new connections, in-flight requests finish within `SHUTDOWN_TIMEOUT_SECS`. A second signal
//! ends the process at once (actix cannot turn a graceful stop into a forced one midway; every
//! write is a database transaction, so nothing is left half-done). actix-web's own handling treats SIGINT as a forced stop, so it is turned off
//! (`disable_signals` in `http::server`) and this module decides instead.

use actix_web::dev::ServerHandle;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT, listened to from creation on: create it before the server starts, so a
/// signal that arrives early is not met by the default action (which kills the process).
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }

    /// Stops `server` gracefully on the first signal; ends the process on a second.
    pub async fn stop_on_signal(mut self, server: ServerHandle, timeout_secs: u64) {
        let first = self.next().await;
        tracing::info!(
            signal = first,
            "stopping: in-flight requests have {timeout_secs} s to finish \
             (SHUTDOWN_TIMEOUT_SECS); a second signal stops at once"
        );
        let graceful = server.stop(true);
        tokio::select! {
            _ = graceful => {}
            second = self.next() => {
                tracing::warn!(signal = second, "a second signal: stopping at once");
                std::process::exit(130);
            }
        }
    }
}
