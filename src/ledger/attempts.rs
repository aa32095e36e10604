//! Every attempt of a payment: each charge Stripe made for it, from charge events, the charges an
//! older PaymentIntent embeds, and the error a PaymentIntent reports for its failed attempt. A
//! payment that failed with `insufficient_funds` and then succeeded keeps both attempts, so
//! support can say why the card was declined. Pure: events in, attempts out.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json;
use super::keys::listed;
use super::Event;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The charge id, or for an error reported without one, the id of the event reporting it.
    pub charge_id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub method_type: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub created: Option<NaiveDateTime>,
}

/// A charge's status moves from `pending` to a final one, never back.
fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed")
}

/// The attempts seen so far, by charge id (or by the id of the event reporting a charge-less
/// error): what a payment's fold carries between events.
pub type Attempts = BTreeMap<String, Attempt>;

/// The attempts the events describe, oldest first. `events` are in fold order, so a later
/// snapshot of a charge overwrites an earlier one, except that a final status stays.
#[cfg(test)]
pub fn fold(events: &[Event]) -> Vec<Attempt> {
    let mut attempts = Attempts::new();
    for event in events {
        step(&mut attempts, event);
    }
    finish(&attempts)
}

/// Takes one event, after every event that sorts before it.
pub fn step(attempts: &mut Attempts, event: &Event) {
    let o = &event.object;
    if event.event_type.starts_with("charge.") && o["object"] == "charge" {
        merge_charge(attempts, o);
    } else if event.event_type.starts_with("payment_intent.") {
        for charge in listed(o, "charges") {
            merge_charge(attempts, charge);
        }
        merge_intent_error(attempts, event);
    }
}

/// The attempts, oldest first.
pub fn finish(attempts: &Attempts) -> Vec<Attempt> {
    let mut list: Vec<Attempt> = attempts.values().cloned().collect();
    list.sort_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then_with(|| a.charge_id.cmp(&b.charge_id))
    });
    list
}

fn merge_charge(attempts: &mut BTreeMap<String, Attempt>, charge: &Value) {
    let Some(id) = json::str(charge, &["id"]) else {
        return;
    };
    let attempt = attempts.entry(id.clone()).or_insert_with(|| Attempt {
        charge_id: id,
        status: "pending".to_owned(),
        ..Attempt::default()
    });
    if let Some(status) = json::str(charge, &["status"]) {
        if !is_final(&attempt.status) || is_final(&status) {
            attempt.status = status;
        }
    }
    attempt.amount = json::i64(charge, &["amount"]).unwrap_or(attempt.amount);
    if let Some(currency) = json::str(charge, &["currency"]) {
        attempt.currency = currency;
    }
    attempt.created = json::time(charge, &["created"]).or(attempt.created);
    if let Some(code) = json::str(charge, &["failure_code"]) {
        attempt.failure_code = Some(code);
        attempt.failure_message = json::str(charge, &["failure_message"]);
    }
    // For a declined charge the outcome's reason is the issuer's decline code.
    if attempt.status == "failed" {
        if let Some(reason) = json::str(charge, &["outcome", "reason"]) {
            attempt.decline_code = Some(reason);
        }
    }
    if let Some(details) = charge
        .get("payment_method_details")
        .filter(|d| d.is_object())
    {
        read_method(attempt, details);
    }
}

/// `last_payment_error` names the failed charge (card errors) with the decline code a charge
/// itself lacks. An error without a charge id is an attempt of its own, once per
/// `payment_intent.payment_failed` event.
fn merge_intent_error(attempts: &mut BTreeMap<String, Attempt>, event: &Event) {
    let o = &event.object;
    let Some(error) = o.get("last_payment_error").filter(|e| e.is_object()) else {
        return;
    };
    let charge = json::id(error, &["charge"]);
    if charge.is_none() && event.event_type != "payment_intent.payment_failed" {
        return;
    }
    let id = charge.unwrap_or_else(|| event.id.clone());
    let attempt = attempts.entry(id.clone()).or_insert_with(|| Attempt {
        charge_id: id,
        status: "failed".to_owned(),
        amount: json::i64(o, &["amount"]).unwrap_or(0),
        currency: json::str(o, &["currency"]).unwrap_or_default(),
        created: time_of(event),
        ..Attempt::default()
    });
    if attempt.status == "pending" {
        attempt.status = "failed".to_owned();
    }
    if let Some(decline) = json::str(error, &["decline_code"]) {
        attempt.decline_code = Some(decline);
    }
    attempt.failure_code = attempt
        .failure_code
        .take()
        .or_else(|| json::str(error, &["code"]));
    attempt.failure_message = attempt
        .failure_message
        .take()
        .or_else(|| json::str(error, &["message"]));
    if attempt.card_last4.is_none() {
        if let Some(method) = error.get("payment_method").filter(|m| m.is_object()) {
            read_method(attempt, method);
        }
    }
}

fn time_of(event: &Event) -> Option<NaiveDateTime> {
    crate::domain::time::from_unix(event.created)
}

/// A payment method or a charge's `payment_method_details`: `{type, card: {brand, last4}}`.
fn read_method(attempt: &mut Attempt, method: &Value) {
    let Some(kind) = json::str(method, &["type"]) else {
        return;
    };
    attempt.card_brand = json::str(method, &[kind.as_str(), "brand"]).or(attempt.card_brand.take());
    attempt.card_last4 = json::str(method, &[kind.as_str(), "last4"]).or(attempt.card_last4.take());
    attempt.method_type = Some(kind);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: &str, event_type: &str, created: i64, object: Value) -> Event {
        Event {
            id: id.to_owned(),
            event_type: event_type.to_owned(),
            created,
            object,
        }
    }

    fn charge(id: &str, status: &str, created: i64) -> Value {
        json!({
            "id": id, "object": "charge", "status": status, "amount": 6000, "currency": "usd",
            "created": created, "payment_intent": "pi_1",
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
        })
    }

    #[test]
    fn a_declined_attempt_stays_beside_the_success_with_its_reason() {
        let mut declined = charge("ch_1", "failed", 100);
        declined["failure_code"] = json!("card_declined");
        declined["failure_message"] = json!("Your card has insufficient funds.");
        declined["outcome"] = json!({"type": "issuer_declined", "reason": "insufficient_funds"});
        let events = [
            event("evt_1", "charge.failed", 100, declined),
            event(
                "evt_2",
                "charge.succeeded",
                200,
                charge("ch_2", "succeeded", 200),
            ),
        ];
        let attempts = fold(&events);
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].charge_id, "ch_1");
        assert_eq!(attempts[0].status, "failed");
        assert_eq!(attempts[0].failure_code.as_deref(), Some("card_declined"));
        assert_eq!(
            attempts[0].decline_code.as_deref(),
            Some("insufficient_funds")
        );
        assert_eq!(attempts[0].card_last4.as_deref(), Some("4242"));
        assert_eq!(attempts[1].status, "succeeded");
        assert_eq!(attempts[1].decline_code, None);
    }

    #[test]
    fn the_intent_error_gives_the_decline_code_of_its_charge_or_is_an_attempt_itself() {
        let failed = json!({
            "id": "pi_1", "object": "payment_intent", "amount": 6000, "currency": "usd",
            "last_payment_error": {
                "charge": "ch_1", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "payment_method": {"type": "card", "card": {"brand": "mastercard", "last4": "0005"}},
            },
        });
        let attempts = fold(&[event(
            "evt_1",
            "payment_intent.payment_failed",
            100,
            failed.clone(),
        )]);
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (attempts[0].charge_id.as_str(), attempts[0].status.as_str()),
            ("ch_1", "failed")
        );
        assert_eq!(
            attempts[0].decline_code.as_deref(),
            Some("insufficient_funds")
        );
        assert_eq!(attempts[0].card_brand.as_deref(), Some("mastercard"));
        assert_eq!(attempts[0].amount, 6000);

        let mut no_charge = failed;
        no_charge["last_payment_error"]["charge"] = Value::Null;
        let attempts = fold(&[
            event(
                "evt_1",
                "payment_intent.payment_failed",
                100,
                no_charge.clone(),
            ),
            // Other events repeat the same error: not another attempt.
            event("evt_2", "payment_intent.updated", 101, no_charge),
        ]);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].charge_id, "evt_1");
    }

    #[test]
    fn a_final_status_is_not_undone_by_an_older_pending_snapshot_and_order_does_not_matter() {
        let events = [
            event(
                "evt_2",
                "charge.succeeded",
                100,
                charge("ch_1", "succeeded", 100),
            ),
            event(
                "evt_3",
                "charge.updated",
                100,
                charge("ch_1", "pending", 100),
            ),
        ];
        assert_eq!(fold(&events)[0].status, "succeeded");
    }

    #[test]
    fn charges_embedded_in_an_older_intent_are_attempts() {
        let intent = json!({
            "id": "pi_1", "object": "payment_intent",
            "charges": {"object": "list", "has_more": false, "data": [
                charge("ch_2", "succeeded", 200), charge("ch_1", "failed", 100),
            ]},
        });
        let attempts = fold(&[event("evt_1", "payment_intent.succeeded", 200, intent)]);
        let ids: Vec<_> = attempts.iter().map(|a| a.charge_id.as_str()).collect();
        assert_eq!(ids, ["ch_1", "ch_2"]);
    }
}
