//! Gauges read from the database when Prometheus scrapes: they describe shared state (several
//! instances see the same inbox and job queue), so they are read, not counted in-process.

use crate::domain::states::{EventStatus, JobKind, JobState};
use crate::storage::{metrics as store, Db};

use super::catalog;

/// Sets the scrape-time gauges; a database outage leaves the last values and is logged.
pub async fn refresh(db: &Db) {
    let snapshot = match db.run(store::snapshot).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::warn!("cannot read the database for /metrics: {e}");
            return;
        }
    };
    for status in EventStatus::ALL {
        let count = snapshot
            .events_by_status
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(catalog::WEBHOOK_EVENTS, "status" => status.as_str()).set(count as f64);
    }
    let lag = snapshot.oldest_unapplied.map_or(0.0, |at| {
        (crate::domain::time::now() - at)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64())
    });
    metrics::gauge!(catalog::EVENTS_OLDEST_UNAPPLIED_AGE).set(lag);
    for kind in JobKind::ALL {
        for state in JobState::ALL {
            let count = snapshot
                .jobs
                .iter()
                .find(|(k, s, _)| k == kind && s == state)
                .map_or(0, |(_, _, n)| *n);
            metrics::gauge!(catalog::JOBS, "kind" => kind.as_str(), "state" => state.as_str())
                .set(count as f64);
        }
    }
    for connection in snapshot.connections {
        let labels = [("connection", connection.id)];
        if let Some(ok) = connection.report_ok {
            metrics::gauge!(catalog::CONNECTION_KEY_REPORT_OK, &labels)
                .set(f64::from(u8::from(ok)));
        }
        metrics::gauge!(catalog::CONNECTION_CAN_PUSH, &labels)
            .set(f64::from(u8::from(connection.can_push)));
    }
}
