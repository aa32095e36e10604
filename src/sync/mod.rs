//! Filling the ledger from Stripe itself: the backfill pages through Stripe's list endpoints and
//! the catch-up lists missed events. Both write through the same inbox and ledger rules as
//! webhooks: a listed object becomes a stored event (`source = backfill`) that the apply worker
//! folds with every other event for that object, so neither path overwrites newer data.

pub mod backfill;
pub mod catchup;
pub mod lines;
pub mod progress;
pub mod reconcile;
pub mod thin;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ledger;
use crate::storage::events::EventRow;
use crate::webhook::{self, Envelope};

pub use backfill::{
    backfill, refresh_customers, BackfillOptions, Progress, ResourceReport, RESOURCES,
};
pub use catchup::catch_up;

/// The event type a listed object is stored as: the one Stripe would send for its state.
fn event_type_for(resource: &str, object: &Value) -> &'static str {
    let status = object["status"].as_str().unwrap_or_default();
    match resource {
        "customers" => "customer.updated",
        "products" => "product.updated",
        "prices" => "price.updated",
        "subscriptions" => "customer.subscription.updated",
        "invoices" => match status {
            "paid" => "invoice.paid",
            "void" => "invoice.voided",
            "uncollectible" => "invoice.marked_uncollectible",
            _ => "invoice.updated",
        },
        "charges" => {
            if object["amount_refunded"].as_i64().unwrap_or(0) > 0 {
                "charge.refunded"
            } else if status == "failed" {
                "charge.failed"
            } else if status == "succeeded" {
                "charge.succeeded"
            } else {
                "charge.updated"
            }
        }
        "payment_intents" => match status {
            "succeeded" => "payment_intent.succeeded",
            "processing" => "payment_intent.processing",
            "canceled" => "payment_intent.canceled",
            _ if object["last_payment_error"].is_object() => "payment_intent.payment_failed",
            _ => "payment_intent.created",
        },
        "refunds" => "refund.updated",
        "disputes" => {
            if matches!(status, "won" | "lost" | "warning_closed") {
                "charge.dispute.closed"
            } else {
                "charge.dispute.updated"
            }
        }
        _ => "unknown.listed",
    }
}

/// A stored event for an object as Stripe listed it now. Its id comes from the object's content,
/// so listing an unchanged object again stores nothing new; its `created` is the listing time,
/// because the listed state is the object's state now.
pub fn listed_event(
    connection_id: &str,
    resource: &str,
    object: &Value,
    livemode: bool,
) -> Option<EventRow> {
    let object_id = object["id"].as_str()?.to_owned();
    let body_object = object.to_string();
    let digest = hex::encode(Sha256::digest(body_object.as_bytes()));
    let event_id = format!("evt_bm_{}_{}", resource, &digest[..32]);
    let event_type = event_type_for(resource, object);
    let created = chrono::Utc::now().timestamp();
    let payload = serde_json::json!({
        "id": event_id, "object": "event", "type": event_type, "created": created,
        "livemode": livemode, "api_version": null, "data": {"object": object},
    })
    .to_string();
    let envelope = Envelope {
        id: event_id,
        event_type: event_type.to_owned(),
        created,
        livemode,
        api_version: None,
        object_id: Some(object_id),
        thin: false,
        related_object: None,
    };
    let maps = ledger::maps(event_type);
    Some(webhook::inbox_row(
        connection_id,
        envelope,
        payload,
        "backfill",
        None,
        maps,
    ))
}
