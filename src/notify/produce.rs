//! Producing notifications, inside the transaction that applies an event: the rules its news
//! matches each get one delivery row, unique on `{stripe event id}:{rule id}`, and a `notify` job
//! with that dedupe key. A duplicate delivery from Stripe, a replay, the catch-up listing an
//! event again: each finds the row already there and enqueues nothing, so nothing is announced
//! twice. Whether an event is too old to announce on its own is decided when it is sent.

use crate::domain::time;
use crate::ledger::Event;
use crate::storage::events::EventRow;
use crate::storage::notify::DeliveryRow;
use crate::storage::{DbConnection, StorageError};

use super::facts::{extract, previous_attributes};
use super::queue::{about, queue};
use super::rules::{matches, Rule};

/// Where a stored event came from, and whether that can be news. The backfill lists objects as
/// they are now (a snapshot made into an event with a made-up id): it says nothing happened
/// just now, so it announces nothing.
fn is_news_source(source: &str) -> bool {
    matches!(source, "webhook" | "catchup")
}

/// Enqueues the notifications `event` (stored as `row`) makes; called once it applied, in the
/// same transaction.
/// `rules` are the enabled rules ([`super::rules::enabled`]), read once for a batch of events.
pub fn produce(
    conn: &mut DbConnection,
    row: &EventRow,
    event: &Event,
    rules: &[Rule],
) -> Result<(), StorageError> {
    if !is_news_source(&row.source) {
        return Ok(());
    }
    if rules.is_empty() {
        return Ok(());
    }
    let previous = previous_attributes(&row.event_type, &row.payload);
    let Some(facts) = extract(event, row.livemode, &row.connection_id, &previous) else {
        return Ok(());
    };
    let occurred_at = time::from_unix(facts.occurred_at).unwrap_or(row.stripe_created);
    let now = time::now();
    for rule in rules.iter().filter(|r| matches(r, &facts)) {
        let key = format!("{}:{}", row.stripe_event_id, rule.id);
        let delivery = DeliveryRow {
            rule_id: Some(rule.id.clone()),
            occurred_at,
            ..about(&facts, &rule.channel_id, key, rule.redaction, now)
        };
        queue(conn, &delivery)?;
    }
    Ok(())
}
