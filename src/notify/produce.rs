//! Producing notifications, inside the transaction that applies an event: the rules its news
//! matches each get one delivery row, unique on `{stripe event id}:{rule id}`, and a `notify` job
//! with that dedupe key. A duplicate delivery from Stripe, a replay, the catch-up listing an
//! event again: each finds the row already there and enqueues nothing, so nothing is announced
//! twice. Whether an event is too old to announce on its own is decided when it is sent.

use crate::domain::states::{DeliveryKind, DeliveryState, JobKind};
use crate::domain::{ids, time};
use crate::jobs::{enqueue, NewJob};
use crate::ledger::Event;
use crate::storage::events::EventRow;
use crate::storage::notify::{self as store, DeliveryRow};
use crate::storage::{DbConnection, StorageError};

use super::facts::{extract, previous_attributes};
use super::rules::matches;

/// Where a stored event came from, and whether that can be news. The backfill lists objects as
/// they are now (a snapshot made into an event with a made-up id): it says nothing happened
/// just now, so it announces nothing.
fn is_news_source(source: &str) -> bool {
    matches!(source, "webhook" | "catchup")
}

/// Enqueues the notifications `event` (stored as `row`) makes; called once it applied, in the
/// same transaction.
pub fn produce(conn: &mut DbConnection, row: &EventRow, event: &Event) -> Result<(), StorageError> {
    if !is_news_source(&row.source) {
        return Ok(());
    }
    let rules = super::rules::enabled(conn)?;
    if rules.is_empty() {
        return Ok(());
    }
    let previous = previous_attributes(&row.event_type, &row.payload);
    let Some(facts) = extract(event, row.livemode, &row.connection_id, &previous) else {
        return Ok(());
    };
    let stored_facts = serde_json::to_string(&facts).unwrap_or_default();
    let occurred_at = time::from_unix(facts.occurred_at).unwrap_or(row.stripe_created);
    for rule in rules.iter().filter(|r| matches(r, &facts)) {
        let key = format!("{}:{}", row.stripe_event_id, rule.id);
        let now = time::now();
        let delivery = DeliveryRow {
            id: ids::new_id("ndl"),
            dedupe_key: key.clone(),
            kind: DeliveryKind::Event,
            channel_id: rule.channel_id.clone(),
            rule_id: Some(rule.id.clone()),
            connection_id: Some(row.connection_id.clone()),
            event_id: Some(row.stripe_event_id.clone()),
            family: Some(facts.family()),
            subject: Some(facts.subject()),
            amount: facts.amount,
            currency: facts.currency.clone(),
            facts: stored_facts.clone(),
            redaction: rule.redaction,
            occurred_at,
            status: DeliveryState::Pending,
            digest_id: None,
            members: 0,
            provider_message_id: None,
            thread_ts: None,
            attempts: 0,
            last_error: None,
            created_at: now,
            sent_at: None,
            updated_at: now,
        };
        // Only a new row gets a job: a job that ended is armed again by `enqueue`, which would
        // post a replayed event's message a second time.
        if store::insert_delivery(conn, &delivery)? {
            enqueue(
                conn,
                &NewJob {
                    kind: JobKind::Notify,
                    subject_id: &delivery.id,
                    connection_id: &row.connection_id,
                    payload: None,
                    dedupe_key: &key,
                },
            )?;
        }
    }
    Ok(())
}
