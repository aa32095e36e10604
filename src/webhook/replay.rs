//! Replaying a stored event: ops ask for it (API or events page) after fixing what made it fail.
//! A thin event is replayed by reading Stripe again; a snapshot one by folding it again. Either
//! way the event gets a fresh set of attempts and the request is audited.

use crate::domain::states::{EventStatus, JobKind};
use crate::storage::events::{self, EventRow};
use crate::storage::jobs::{self, NewJob};
use crate::storage::tokens::audit;
use crate::storage::{DbConnection, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no event has that id")]
    NotFound,
    /// billmirror does not map this type: there is nothing to apply.
    #[error("billmirror does not map `{0}` events, so there is nothing to replay")]
    NotMapped(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Whether an event of `event_type` can be replayed at all.
pub fn replayable_type(event_type: &str) -> bool {
    super::thin::snapshot_type(event_type).is_some() || crate::ledger::maps(event_type)
}

/// Whether a person is offered *Replay* for an event in `status`: one that ended (applied, dead,
/// or a thin event's fetch that ended). One still waiting is applied anyway.
pub fn worth_offering(status: EventStatus, event_type: &str) -> bool {
    matches!(
        status,
        EventStatus::Applied | EventStatus::Dead | EventStatus::Fetched | EventStatus::Gone
    ) && replayable_type(event_type)
}

/// Schedules the event `id` (ours or Stripe's id) again, in one transaction with its audit entry.
/// The caller wakes the apply worker and the jobs.
pub fn replay(conn: &mut DbConnection, id: &str, actor: &str) -> Result<EventRow, ReplayError> {
    conn.write_transaction(|conn| {
        let row = events::find(conn, id)?.ok_or(ReplayError::NotFound)?;
        if super::thin::snapshot_type(&row.event_type).is_some() {
            events::schedule_refetch(conn, &row.id)?;
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
        } else if crate::ledger::maps(&row.event_type) {
            events::schedule_replay(conn, &row.id)?;
        } else {
            return Err(ReplayError::NotMapped(row.event_type));
        }
        audit(
            conn,
            actor,
            "event.replay",
            &row.id,
            serde_json::json!({"stripe_event_id": row.stripe_event_id}),
        )?;
        events::find(conn, &row.id)?.ok_or(ReplayError::NotFound)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_is_offered_for_ended_events_of_a_type_billmirror_maps() {
        assert!(worth_offering(EventStatus::Dead, "customer.created"));
        assert!(worth_offering(EventStatus::Applied, "invoice.paid"));
        assert!(!worth_offering(EventStatus::Pending, "customer.created"));
        assert!(!worth_offering(EventStatus::Retrying, "customer.created"));
        assert!(!worth_offering(
            EventStatus::Dead,
            "radar.early_fraud_warning.created"
        ));
    }
}
