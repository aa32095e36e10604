//! The ledger: customers, invoices, payments, refunds, disputes, subscriptions, prices and
//! products, mirrored from Stripe events.
//!
//! Stripe delivers events at least once and in no particular order, and `created` has one-second
//! resolution. So an event is never applied as a delta. Each event names the ledger objects it
//! describes (its *keys*); applying it records those keys and rebuilds each object from **every**
//! event recorded for it, sorted by `created`, then a per-kind tie-break, then event id. The
//! result depends only on the set of events, never on their arrival order (docs/ARCHITECTURE.md,
//! promise 4). Facts that only move one way (a paid invoice stays paid, `amount_refunded` only grows) are
//! folded as such, so a stale snapshot cannot undo them.

pub mod apply;
mod attempts;
mod catalog;
mod customers;
mod disputes;
pub mod fold;
pub(crate) mod invoices;
pub mod json;
mod keys;
mod payments;
mod refunds;
mod subscriptions;
pub mod worker;

use serde_json::Value;

pub use keys::{Key, Kind};

/// A stored event, parsed for folding.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    /// `data.object`.
    pub object: Value,
}

impl Event {
    pub fn parse(payload: &str) -> Result<Event, String> {
        let mut value: Value =
            serde_json::from_str(payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
        let id = json::str(&value, &["id"]).ok_or("the event has no id")?;
        let event_type = json::str(&value, &["type"]).ok_or("the event has no type")?;
        let created = json::i64(&value, &["created"]).ok_or("the event has no `created`")?;
        let object = value
            .get_mut("data")
            .and_then(|d| d.get_mut("object"))
            .map(Value::take)
            .filter(Value::is_object)
            .ok_or("the event has no `data.object`")?;
        Ok(Event {
            id,
            event_type,
            created,
            object,
        })
    }

    /// The part of the type after the object's name: `created`, `payment_failed`, …
    pub fn action(&self) -> &str {
        self.event_type.rsplit('.').next().unwrap_or("")
    }
}

/// Every event type billmirror maps onto the ledger; a webhook endpoint should subscribe to these.
pub const MAPPED_TYPES: &[&str] = &[
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.created",
    "invoice.finalized",
    "invoice.updated",
    "invoice.sent",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice.deleted",
    "invoice_payment.paid",
    "payment_intent.created",
    "payment_intent.processing",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "charge.updated",
    "charge.captured",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "price.created",
    "price.updated",
    "price.deleted",
    "product.created",
    "product.updated",
    "product.deleted",
    "plan.created",
    "plan.updated",
    "plan.deleted",
];

/// Whether billmirror maps `event_type`; other types are stored as `ignored`. Any `price.*`,
/// `product.*` or `plan.*` event carries a whole catalog object, so new ones map too.
pub fn maps(event_type: &str) -> bool {
    MAPPED_TYPES.contains(&event_type)
        || ["price.", "product.", "plan."]
            .iter()
            .any(|family| event_type.starts_with(family))
}

/// Real Stripe payloads from `fixtures/stripe/events`, for the folds' unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::Event;

    /// The event stored as `fixtures/stripe/events/{name}.json`.
    pub fn event(name: &str) -> Event {
        let path = format!(
            "{}/fixtures/stripe/events/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Event::parse(&text).unwrap()
    }

    /// `event` with another id, type, time, and changes to its object.
    pub fn variant(
        base: &Event,
        id: &str,
        event_type: &str,
        created: i64,
        changes: serde_json::Value,
    ) -> Event {
        let mut event = base.clone();
        event.id = id.to_owned();
        event.event_type = event_type.to_owned();
        event.created = created;
        if let (Some(object), Some(changes)) = (event.object.as_object_mut(), changes.as_object()) {
            for (k, v) in changes {
                object.insert(k.clone(), v.clone());
            }
        }
        event
    }
}
