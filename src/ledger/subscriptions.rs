//! Subscriptions: plan, interval, status, period and cancellation, from `customer.subscription.*`.
//! Before `2025-03-31.basil` the period sits on the subscription; since then on its items.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fold::Fold;
use super::json::{self, as_id, as_time, take};
use super::keys::listed;
use super::Event;
use crate::storage::ledger::SubscriptionFields as Fields;

/// How far along a subscription's life a status is; breaks ties within one second.
fn status_rank(status: Option<&str>) -> u8 {
    match status {
        Some("incomplete") => 0,
        Some("trialing") => 1,
        Some("active") => 2,
        Some("past_due") => 3,
        Some("unpaid") => 4,
        Some("paused") => 5,
        Some("canceled" | "incomplete_expired") => 6,
        _ => 0,
    }
}

fn is_final(status: &str) -> bool {
    matches!(status, "canceled" | "incomplete_expired")
}

/// A subscription's fold state: its fields, and whether it has ended (an ended subscription
/// stays ended, whatever a late snapshot says).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    fields: Fields,
    ended: bool,
}

/// The subscription fold.
pub struct Subscription;

impl Fold for Subscription {
    type State = State;
    type Fields = Fields;

    fn start(&self) -> State {
        State {
            fields: Fields {
                status: "incomplete".to_owned(),
                ..Fields::default()
            },
            ended: false,
        }
    }

    fn rank(&self, event: &Event) -> u8 {
        status_rank(event.object["status"].as_str())
    }

    fn step(&self, state: &mut State, event: &Event) {
        let f = &mut state.fields;
        let o = &event.object;
        take(&mut f.stripe_customer_id, o, "customer", as_id);
        if let Some(status) = o["status"].as_str() {
            // An ended subscription stays ended, whatever a late snapshot says.
            if !state.ended {
                f.status = status.to_owned();
                state.ended = is_final(status);
            }
        }
        if event.event_type == "customer.subscription.deleted" && !state.ended {
            f.status = "canceled".to_owned();
            state.ended = true;
        }
        if let Some(v) = json::bool(o, &["cancel_at_period_end"]) {
            f.cancel_at_period_end = v;
        }
        take(&mut f.cancel_at, o, "cancel_at", as_time);
        take(&mut f.canceled_at, o, "canceled_at", as_time);
        take(&mut f.ended_at, o, "ended_at", as_time);
        take(&mut f.trial_end, o, "trial_end", as_time);
        take(&mut f.stripe_created, o, "created", as_time);
        take(
            &mut f.current_period_start,
            o,
            "current_period_start",
            as_time,
        );
        take(&mut f.current_period_end, o, "current_period_end", as_time);
        if let Some(item) = listed(o, "items").first() {
            read_item(f, item);
        } else if let Some(plan) = o.get("plan").filter(|p| p.is_object()) {
            read_price(f, plan);
        }
        take(&mut f.quantity, o, "quantity", Value::as_i64);
    }

    fn finish(&self, state: &State) -> Fields {
        let now = crate::domain::time::now();
        Fields {
            observed_at: now,
            updated_at: now,
            ..state.fields.clone()
        }
    }
}

#[cfg(test)]
/// A subscription from all its events, in any order.
pub fn fold(events: &mut [Event]) -> Fields {
    Subscription.finish(&super::fold::fold_all(&Subscription, events).state)
}

fn read_item(f: &mut Fields, item: &Value) {
    if let Some(price) = item.get("price").filter(|p| p.is_object()) {
        read_price(f, price);
    } else if let Some(plan) = item.get("plan").filter(|p| p.is_object()) {
        read_price(f, plan);
    }
    take(&mut f.quantity, item, "quantity", Value::as_i64);
    // Since 2025-03-31.basil the billing period lives on each item.
    take(
        &mut f.current_period_start,
        item,
        "current_period_start",
        as_time,
    );
    take(
        &mut f.current_period_end,
        item,
        "current_period_end",
        as_time,
    );
}

/// Reads a price, or a legacy plan (`amount`, `interval` at the top level).
fn read_price(f: &mut Fields, price: &Value) {
    f.stripe_price_id = json::str(price, &["id"]);
    f.stripe_product_id = json::id(price, &["product"]);
    f.plan_name =
        json::str(price, &["nickname"]).or_else(|| json::str(price, &["product", "name"]));
    f.amount = json::i64(price, &["unit_amount"]).or_else(|| json::i64(price, &["amount"]));
    f.currency = json::str(price, &["currency"]);
    f.billing_interval =
        json::str(price, &["recurring", "interval"]).or_else(|| json::str(price, &["interval"]));
    f.interval_count = json::i64(price, &["recurring", "interval_count"])
        .or_else(|| json::i64(price, &["interval_count"]))
        .and_then(|n| i32::try_from(n).ok());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::fixtures::{event, variant};

    #[test]
    fn since_basil_the_period_comes_from_the_item_and_a_deleted_subscription_stays_canceled() {
        let created = event(
            "customer.subscription.created__basil__stripe-openapi-fixtures3-2025-03-31.basil",
        );
        let deleted = event(
            "customer.subscription.deleted__basil__stripe-openapi-fixtures3-2025-03-31.basil",
        );
        let deleted = variant(
            &deleted,
            "evt_deleted",
            "customer.subscription.deleted",
            created.created + 10,
            json!({}),
        );
        let late = variant(
            &created,
            "evt_late",
            "customer.subscription.updated",
            created.created + 20,
            json!({"status": "active"}),
        );
        let mut events = vec![late, deleted, created];
        let f = fold(&mut events);
        assert_eq!(
            f.status, "canceled",
            "the deleted event says so, whatever its status field"
        );
        assert_eq!(
            f.current_period_end,
            crate::domain::time::from_unix(976_287_773)
        );
        assert_eq!(
            f.stripe_price_id.as_deref(),
            Some("price_1PgafmB7WZ01zgkW6dKueIc5")
        );
        assert_eq!(f.quantity, Some(1));
    }
}
