//! Payments, one per PaymentIntent (or per charge without one), folded from PaymentIntent, charge
//! and invoice events. A payment that succeeded stays succeeded; `amount_refunded` only grows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::attempts::{self, Attempt, Attempts};
use super::fold::Fold;
use super::json;
use super::keys::listed;
use super::Event;
use crate::storage::attempts::AttemptRow;
use crate::storage::ledger::PaymentFields as Fields;

fn status_rank(status: &str) -> u8 {
    match status {
        "pending" => 0,
        "canceled" => 1,
        "failed" => 2,
        "succeeded" => 3,
        _ => 0,
    }
}

/// The payment status an event reports.
fn status_of(event: &Event) -> Option<&'static str> {
    let o = &event.object;
    let t = event.event_type.as_str();
    if t.starts_with("invoice") {
        return matches!(event.action(), "paid" | "payment_succeeded").then_some("succeeded");
    }
    if t == "payment_intent.payment_failed" || t == "charge.failed" {
        return Some("failed");
    }
    Some(match o["status"].as_str()? {
        "succeeded" => "succeeded",
        "failed" => "failed",
        "canceled" => "canceled",
        _ => "pending",
    })
}

/// A payment's fold state: its fields before the last touches made at finish, the amount the
/// invoice events state, and its attempts so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    fields: Fields,
    amount_from_invoice: Option<i64>,
    attempts: Attempts,
}

/// The payment fold: the payment and every attempt made for it.
pub struct Payment;

impl Fold for Payment {
    type State = State;
    type Fields = (Fields, Vec<Attempt>);

    fn start(&self) -> State {
        State {
            fields: Fields {
                status: "pending".to_owned(),
                ..Fields::default()
            },
            amount_from_invoice: None,
            attempts: Attempts::new(),
        }
    }

    fn rank(&self, event: &Event) -> u8 {
        status_of(event).map_or(0, status_rank)
    }

    fn step(&self, state: &mut State, event: &Event) {
        let f = &mut state.fields;
        let amount_from_invoice = &mut state.amount_from_invoice;
        if let Some(status) = status_of(event) {
            if status_rank(status) >= status_rank(&f.status) {
                f.status = status.to_owned();
            }
        }
        let o = &event.object;
        let t = event.event_type.as_str();
        if t.starts_with("payment_intent.") {
            read_payment_intent(f, o);
        } else if t.starts_with("charge.") {
            read_charge(f, o);
        } else if t.starts_with("invoice_payment.") {
            f.stripe_invoice_id = json::id(o, &["invoice"]).or(f.stripe_invoice_id.take());
            f.payment_intent_id = f
                .payment_intent_id
                .take()
                .or(json::id(o, &["payment", "payment_intent"]));
            f.charge_id = f.charge_id.take().or(json::id(o, &["payment", "charge"]));
            *amount_from_invoice = json::i64(o, &["amount_paid"]).or(*amount_from_invoice);
            f.currency = json::str(o, &["currency"]).unwrap_or(std::mem::take(&mut f.currency));
        } else if t.starts_with("invoice.") {
            f.stripe_invoice_id = json::str(o, &["id"]).or(f.stripe_invoice_id.take());
            f.payment_intent_id = f
                .payment_intent_id
                .take()
                .or(json::id(o, &["payment_intent"]));
            f.charge_id = f.charge_id.take().or(json::id(o, &["charge"]));
            f.stripe_customer_id = f.stripe_customer_id.take().or(json::id(o, &["customer"]));
            *amount_from_invoice = json::i64(o, &["amount_paid"]).or(*amount_from_invoice);
            if f.currency.is_empty() {
                f.currency = json::str(o, &["currency"]).unwrap_or_default();
            }
        }
        attempts::step(&mut state.attempts, event);
    }

    fn finish(&self, state: &State) -> (Fields, Vec<Attempt>) {
        let now = crate::domain::time::now();
        let mut f = Fields {
            observed_at: now,
            updated_at: now,
            ..state.fields.clone()
        };
        if f.amount == 0 {
            f.amount = state.amount_from_invoice.unwrap_or(0);
        }
        if f.status == "succeeded" && f.amount_refunded > 0 {
            f.status = if f.amount_refunded >= f.amount {
                "refunded"
            } else {
                "partially_refunded"
            }
            .to_owned();
        }
        if f.status == "succeeded" || f.status.ends_with("refunded") {
            // A failure before the successful attempt is history, not the payment's state.
            f.failure_code = None;
            f.failure_message = None;
        }
        (f, attempts::finish(&state.attempts))
    }
}

/// A payment and every attempt made for it, from all its events, in any order.
#[cfg(test)]
pub fn fold(events: &mut [Event]) -> (Fields, Vec<Attempt>) {
    let folded = super::fold::fold_all(&Payment, events);
    Payment.finish(&folded.state)
}

/// The stored rows of a payment's attempts; an attempt that named no currency is in the payment's.
pub fn attempt_rows(
    connection_id: &str,
    payment_stripe_id: &str,
    payment_currency: &str,
    attempts: Vec<Attempt>,
) -> Vec<AttemptRow> {
    attempts
        .into_iter()
        .map(|a| AttemptRow {
            id: crate::domain::ids::new_id("att"),
            connection_id: connection_id.to_owned(),
            payment_stripe_id: payment_stripe_id.to_owned(),
            charge_id: a.charge_id,
            status: a.status,
            amount: a.amount,
            currency: if a.currency.is_empty() {
                payment_currency.to_owned()
            } else {
                a.currency
            },
            failure_code: a.failure_code,
            decline_code: a.decline_code,
            failure_message: a.failure_message,
            method_type: a.method_type,
            card_brand: a.card_brand,
            card_last4: a.card_last4,
            stripe_created: a.created,
        })
        .collect()
}

fn read_payment_intent(f: &mut Fields, o: &Value) {
    f.payment_intent_id = json::str(o, &["id"]);
    f.amount = json::i64(o, &["amount"]).unwrap_or(f.amount);
    f.currency = json::str(o, &["currency"]).unwrap_or(std::mem::take(&mut f.currency));
    f.stripe_customer_id = json::id(o, &["customer"]).or(f.stripe_customer_id.take());
    // Until basil a PaymentIntent names its invoice.
    f.stripe_invoice_id = json::id(o, &["invoice"]).or(f.stripe_invoice_id.take());
    f.description = json::str(o, &["description"]).or(f.description.take());
    f.stripe_created = json::time(o, &["created"]).or(f.stripe_created);
    f.charge_id = json::id(o, &["latest_charge"]).or(f.charge_id.take());
    if let Some(error) = o.get("last_payment_error").filter(|e| e.is_object()) {
        f.failure_code =
            json::str(error, &["decline_code"]).or_else(|| json::str(error, &["code"]));
        f.failure_message = json::str(error, &["message"]);
        if let Some(method) = error.get("payment_method").filter(|m| m.is_object()) {
            read_method(f, method);
        }
    }
    // Older versions embed the PaymentIntent's charges, newest first: the succeeded one, if any,
    // is the payment's charge.
    let charges = listed(o, "charges");
    let charge = charges
        .iter()
        .find(|c| c["status"] == "succeeded")
        .or(charges.first());
    if let Some(charge) = charge {
        f.charge_id = json::str(charge, &["id"]).or(f.charge_id.take());
        read_charge_details(f, charge);
    }
}

fn read_charge(f: &mut Fields, o: &Value) {
    f.charge_id = json::str(o, &["id"]);
    f.payment_intent_id = json::id(o, &["payment_intent"]).or(f.payment_intent_id.take());
    f.amount = json::i64(o, &["amount"]).unwrap_or(f.amount);
    f.currency = json::str(o, &["currency"]).unwrap_or(std::mem::take(&mut f.currency));
    f.stripe_customer_id = json::id(o, &["customer"]).or(f.stripe_customer_id.take());
    f.stripe_invoice_id = json::id(o, &["invoice"]).or(f.stripe_invoice_id.take());
    f.description = json::str(o, &["description"]).or(f.description.take());
    if f.stripe_created.is_none() {
        f.stripe_created = json::time(o, &["created"]);
    }
    if let Some(code) = json::str(o, &["failure_code"]) {
        f.failure_code = Some(code);
        f.failure_message = json::str(o, &["failure_message"]);
    }
    read_charge_details(f, o);
}

/// What every charge shape carries: method details, refunds so far, dispute flag.
fn read_charge_details(f: &mut Fields, charge: &Value) {
    if let Some(details) = charge
        .get("payment_method_details")
        .filter(|d| d.is_object())
    {
        read_method(f, details);
    }
    f.amount_refunded = f
        .amount_refunded
        .max(json::i64(charge, &["amount_refunded"]).unwrap_or(0));
    f.disputed |= json::bool(charge, &["disputed"]).unwrap_or(false);
}

/// A payment method or a charge's `payment_method_details`: `{type, card: {brand, last4}}`.
fn read_method(f: &mut Fields, method: &Value) {
    let Some(kind) = json::str(method, &["type"]) else {
        return;
    };
    f.card_brand = json::str(method, &[kind.as_str(), "brand"]).or(f.card_brand.take());
    f.card_last4 = json::str(method, &[kind.as_str(), "last4"]).or(f.card_last4.take());
    f.method_type = Some(kind);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::fixtures::{event, variant};

    #[test]
    fn a_charge_and_its_intent_make_one_succeeded_payment_with_its_card() {
        let intent =
            event("payment_intent.succeeded__basil__stripe-openapi-fixtures3-2025-03-31.basil");
        let intent = variant(
            &intent,
            "evt_pi",
            "payment_intent.succeeded",
            1_700_000_100,
            json!({"status": "succeeded", "amount": 100, "latest_charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8"}),
        );
        let charge = event("charge.succeeded__basil__stripe-openapi-fixtures3-2025-03-31.basil");
        let charge = variant(
            &charge,
            "evt_ch",
            "charge.succeeded",
            1_700_000_100,
            json!({"payment_intent": "pi_1PgafyB7WZ01zgkWSjxsAJo3"}),
        );
        let (f, attempts) = fold(&mut [charge, intent]);
        assert_eq!(f.status, "succeeded");
        assert_eq!((f.amount, f.currency.as_str()), (100, "usd"));
        assert_eq!(f.charge_id.as_deref(), Some("ch_1PgafuB7WZ01zgkWXYmPNZs8"));
        assert_eq!(f.card_last4.as_deref(), Some("4242"));
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].status, "succeeded");
    }

    #[test]
    fn a_failed_then_succeeded_payment_is_succeeded_without_the_old_failure() {
        let failed = event(
            "payment_intent.payment_failed__basil__stripe-openapi-fixtures3-2025-03-31.basil",
        );
        let succeeded = variant(
            &failed,
            "evt_ok",
            "payment_intent.succeeded",
            failed.created + 60,
            json!({"status": "succeeded", "last_payment_error": null}),
        );
        let (f, _) = fold(&mut [succeeded, failed]);
        assert_eq!(f.status, "succeeded");
        assert_eq!((f.failure_code, f.failure_message), (None, None));
    }
}
