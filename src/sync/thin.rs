//! The `fetch_thin_event` job: a thin event (`v2.core.event`) stored by the webhook says only that
//! something happened to an object. This handler reads the event from `GET /v2/core/events/{id}`
//! (which proves it is Stripe's and gives the authoritative `related_object`), then the object at
//! its `/v1/…` url, and stores Stripe's object as an event of the snapshot type at the thin
//! event's `created` (`webhook::thin::snapshot_event`). The apply workers fold that like any other
//! event. The thin row ends `fetched`; or `gone` when Stripe answers 404 for the object (deleted
//! since) and the thin type is not itself a deletion, which is then folded as a tombstone.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::connections::Connections;
use crate::domain::states::EventStatus;
use crate::jobs::{Handler, JobKind, JobRow, Outcome, Settled};
use crate::storage::connections::{self as connection_store, status};
use crate::storage::events::{self, EventRow};
use crate::storage::{Db, DbConnection, StorageError};
use crate::stripe::StripeError;
use crate::webhook::envelope::RelatedObject;
use crate::webhook::{self, thin, Envelope};

#[derive(Clone)]
pub struct ThinFetcher {
    db: Db,
    connections: Connections,
    /// The apply workers' bell, rung when a folded event was stored.
    stored: Arc<Notify>,
}

impl ThinFetcher {
    pub fn new(db: Db, connections: Connections, stored: Arc<Notify>) -> ThinFetcher {
        ThinFetcher {
            db,
            connections,
            stored,
        }
    }
}

/// What reading Stripe found for a thin event.
enum Found {
    /// An event to fold: the object now, or a deleted object's tombstone.
    Fold(Box<EventRow>),
    /// Stripe no longer has the object, and the event is not its deletion.
    Gone,
}

/// `what` is the thing read (`the event`, `customers/cus_…`), to say which call failed.
fn stripe_outcome(error: StripeError, what: &str) -> Outcome {
    match error.status() {
        // v2 accepts secret keys only: a restricted key is refused here, whatever it may read.
        Some(401 | 403) => Outcome::Failed(format!(
            "Stripe refused to show {what} to this key (the v2 Events API takes a secret key, \
             not a restricted one): {error}"
        )),
        _ if error.is_unavailable() => Outcome::Retry(format!("reading {what}: {error}")),
        _ => Outcome::Failed(format!("reading {what}: {error}")),
    }
}

impl ThinFetcher {
    async fn fetch(&self, row: &EventRow, envelope: Envelope) -> Result<Found, Outcome> {
        let connection_id = row.connection_id.clone();
        let connection = match self
            .db
            .run(move |conn| connection_store::find(conn, &connection_id))
            .await
        {
            Ok(Some(connection)) if connection.status == status::ACTIVE => connection,
            Ok(_) => return Err(Outcome::Cancelled("the connection is disconnected".into())),
            Err(e) => return Err(e.into()),
        };
        let client = self
            .connections
            .client_for(&connection)
            .await
            .map_err(|e| Outcome::Failed(format!("thin events are read from Stripe: {e}")))?;
        let event_path = thin::event_path(&row.stripe_event_id)
            .ok_or_else(|| Outcome::Failed("the event's id cannot be looked up".into()))?;
        let event = client
            .get_v2(&event_path)
            .await
            .map_err(|e| stripe_outcome(e, "the event"))?;
        // Stripe's copy of the event is the one to trust for what it refers to.
        let related: RelatedObject = serde_json::from_value(event["related_object"].clone())
            .ok()
            .or(envelope.related_object)
            .ok_or_else(|| Outcome::Failed("the event has no related object".into()))?;
        let snapshot_type = thin::snapshot_type(&row.event_type)
            .ok_or_else(|| Outcome::Failed("billmirror does not map this thin type".into()))?;
        let path = thin::related_path(&related.url).ok_or_else(|| {
            Outcome::Failed(format!(
                "the related object's url `{}` is not a /v1 path",
                related.url
            ))
        })?;
        let object = match client.get(path, &[]).await {
            Ok(object) => object,
            Err(e) if e.status() == Some(404) && snapshot_type.ends_with(".deleted") => {
                thin::tombstone(&related.id, &related.object_type)
            }
            Err(e) if e.status() == Some(404) => return Ok(Found::Gone),
            Err(e) => return Err(stripe_outcome(e, path)),
        };
        let payload = thin::snapshot_event(
            &row.stripe_event_id,
            snapshot_type,
            envelope.created,
            envelope.livemode,
            object,
        );
        let folded = Envelope {
            id: thin::snapshot_event_id(&row.stripe_event_id),
            event_type: snapshot_type.to_owned(),
            created: envelope.created,
            livemode: envelope.livemode,
            api_version: None,
            object_id: Some(related.id),
            thin: false,
            related_object: None,
        };
        Ok(Found::Fold(Box::new(webhook::inbox_row(
            &row.connection_id,
            folded,
            payload.to_string(),
            "thin",
            None,
            true,
        ))))
    }
}

impl Handler for ThinFetcher {
    const KIND: JobKind = JobKind::FetchThinEvent;

    async fn run(&self, job: JobRow) -> Outcome {
        let id = job.subject_id.clone();
        let row = match self.db.run(move |conn| events::find(conn, &id)).await {
            Ok(Some(row)) => row,
            Ok(None) => return Outcome::Failed("the thin event is no longer stored".into()),
            Err(e) => return e.into(),
        };
        // Fetched already (a retry after a crash that followed the commit).
        if row.status != EventStatus::Fetching {
            return Outcome::Done;
        }
        let envelope = match Envelope::parse(row.payload.as_bytes()) {
            Ok(envelope) => envelope,
            Err(e) => return Outcome::Failed(format!("the stored thin event: {e}")),
        };
        let found = match self.fetch(&row, envelope).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let thin_id = row.id.clone();
        let stored = self
            .db
            .run(move |conn| {
                conn.write_transaction(|conn| match found {
                    Found::Fold(event) => {
                        let new = events::insert_new(conn, [&*event])?;
                        let note = format!("folded as {}", event.stripe_event_id);
                        events::settle_thin(conn, &thin_id, EventStatus::Fetched, Some(&note))?;
                        Ok(new.first().copied().unwrap_or(false))
                    }
                    Found::Gone => {
                        let note = "Stripe no longer has the related object (deleted since); \
                                    nothing to fold";
                        events::settle_thin(conn, &thin_id, EventStatus::Gone, Some(note))?;
                        Ok(false)
                    }
                })
            })
            .await;
        match stored {
            Ok(new) => {
                if new {
                    self.stored.notify_one();
                }
                Outcome::Done
            }
            Err(e) => e.into(),
        }
    }

    /// A fetch that stopped says why on the thin event too, where ops look first.
    fn record(
        &self,
        conn: &mut DbConnection,
        job: &JobRow,
        settled: &Settled,
    ) -> Result<(), StorageError> {
        match settled {
            Settled::Failed(why) | Settled::Dead(why) | Settled::Retrying(why) => {
                events::note_error(conn, &job.subject_id, Some(why))
            }
            Settled::Done | Settled::Cancelled(_) => Ok(()),
        }
    }
}
