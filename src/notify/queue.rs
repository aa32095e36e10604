//! Queuing a message: the delivery row for some facts, and that row stored with its `notify` job
//! in the caller's transaction. Every producer (an applied event, an escalation from chat, a
//! digest, an ops alert) goes through here, so each is posted once: a row whose key is already
//! there is not queued again.

use chrono::NaiveDateTime;

use super::facts::Facts;
use crate::domain::states::{DeliveryKind, JobKind, Redaction};
use crate::domain::time;
use crate::jobs::{enqueue, NewJob};
use crate::storage::notify::{self as store, DeliveryRow};
use crate::storage::{DbConnection, StorageError};

/// A message about `facts` for `channel_id`, known by `key`, shown at `redaction` (`None`: the
/// channel's level).
pub fn about(
    facts: &Facts,
    channel_id: &str,
    key: String,
    redaction: Option<Redaction>,
    now: NaiveDateTime,
) -> DeliveryRow {
    DeliveryRow {
        dedupe_key: key,
        connection_id: Some(facts.connection_id.clone()),
        event_id: Some(facts.event_id.clone()),
        family: Some(facts.family()),
        subject: Some(facts.subject()),
        amount: facts.amount,
        currency: facts.currency.clone(),
        redaction,
        occurred_at: time::from_unix(facts.occurred_at).unwrap_or(now),
        ..DeliveryRow::new(
            DeliveryKind::Event,
            channel_id,
            serde_json::to_string(facts).unwrap_or_default(),
            now,
        )
    }
}

/// Stores `row` and its `notify` job unless a row with its key exists; `true` when it is new.
/// Only a new row gets a job: a job that ended is armed again by `enqueue`, which would post a
/// message a second time.
pub fn queue(conn: &mut DbConnection, row: &DeliveryRow) -> Result<bool, StorageError> {
    if !store::insert_delivery(conn, row)? {
        return Ok(false);
    }
    enqueue(
        conn,
        &NewJob {
            kind: JobKind::Notify,
            subject_id: &row.id,
            connection_id: row.connection_id.as_deref().unwrap_or(""),
            payload: None,
            dedupe_key: &row.dedupe_key,
        },
    )?;
    Ok(true)
}
