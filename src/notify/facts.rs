//! What an event is news of, and the facts a message about it may say: picked field by field from
//! the event's object (never the payload as a whole), so nothing a message shows was not chosen
//! here. Pure: an event in, facts out. The ledger adds what the event lacks at send time
//! (`notify::deliver`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::states::Family;
use crate::ledger::json;
use crate::ledger::Event;

/// The kind of message an event makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    InvoicePaid,
    PaymentFailed,
    DisputeOpened,
    DisputeUpdated,
    DisputeClosed,
    CustomerUpdated,
    SubscriptionCanceled,
    SubscriptionPastDue,
    SubscriptionCancelScheduled,
    RefundIssued,
    Ops,
}

impl What {
    pub fn family(self) -> Family {
        match self {
            What::InvoicePaid => Family::InvoicePaid,
            What::PaymentFailed => Family::PaymentFailed,
            What::DisputeOpened | What::DisputeUpdated | What::DisputeClosed => Family::Dispute,
            What::CustomerUpdated => Family::CustomerUpdated,
            What::SubscriptionCanceled
            | What::SubscriptionPastDue
            | What::SubscriptionCancelScheduled => Family::Subscription,
            What::RefundIssued => Family::Refund,
            What::Ops => Family::Ops,
        }
    }
}

/// Everything a message may say about one event. Free text (`failure_message`, `description`)
/// is scrubbed when rendered; nothing here holds a card number, fingerprint, phone, address or
/// tax id, because nothing reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub what: What,
    pub event_id: String,
    pub event_type: String,
    pub connection_id: String,
    pub livemode: bool,
    /// When Stripe made the event (Unix seconds).
    pub occurred_at: i64,
    /// The Stripe object the event is about.
    pub object_id: String,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub customer_id: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub invoice_id: Option<String>,
    pub invoice_number: Option<String>,
    /// billmirror's id of the invoice, for a link to it.
    pub local_invoice_id: Option<String>,
    pub subscription_id: Option<String>,
    pub plan_name: Option<String>,
    pub subscription_status: Option<String>,
    pub attempt_count: Option<i64>,
    /// Stripe's next automatic retry (Unix seconds).
    pub next_retry: Option<i64>,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// A dispute's, refund's or cancellation's reason, as Stripe's word.
    pub reason: Option<String>,
    /// A dispute's status (its outcome once closed).
    pub status: Option<String>,
    pub evidence_due_by: Option<i64>,
    /// A refund: whether the whole charge is refunded now.
    pub refund_full: Option<bool>,
    /// The charge's amount, beside a refund's.
    pub charge_amount: Option<i64>,
    /// What changed on a customer, in words ("email", "address").
    pub changes: Vec<String>,
    /// The object's description: free text, scrubbed when shown.
    pub description: Option<String>,
    /// Ops alerts: what happened, in a sentence.
    pub title: Option<String>,
    /// A copy posted to the escalation channel: who asked for it, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_by: Option<String>,
}

impl Facts {
    fn new(what: What, event: &Event, livemode: bool, connection_id: &str) -> Facts {
        Facts {
            what,
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            connection_id: connection_id.to_owned(),
            livemode,
            occurred_at: event.created,
            object_id: json::str(&event.object, &["id"]).unwrap_or_default(),
            amount: None,
            currency: None,
            customer_id: json::id(&event.object, &["customer"]),
            customer_name: None,
            customer_email: None,
            invoice_id: None,
            invoice_number: None,
            local_invoice_id: None,
            subscription_id: None,
            plan_name: None,
            subscription_status: None,
            attempt_count: None,
            next_retry: None,
            failure_code: None,
            decline_code: None,
            failure_message: None,
            card_brand: None,
            card_last4: None,
            charge_id: None,
            payment_intent_id: None,
            reason: None,
            status: None,
            evidence_due_by: None,
            refund_full: None,
            charge_amount: None,
            changes: Vec::new(),
            description: None,
            title: None,
            escalated_by: None,
        }
    }

    /// An ops alert about `connection_id`: `alert` (its key) went firing or recovered at `at`
    /// (Unix seconds); `title` and `detail` say what, in words.
    pub fn ops_alert(
        alert: &str,
        connection_id: &str,
        livemode: bool,
        at: i64,
        firing: bool,
        title: String,
        detail: String,
    ) -> Facts {
        let event = Event {
            id: format!("ops:{alert}:{at}"),
            event_type: "billmirror.ops_alert".into(),
            created: at,
            object: serde_json::json!({ "id": alert }),
        };
        Facts {
            status: Some(if firing { "firing" } else { "recovered" }.into()),
            title: Some(title),
            description: Some(detail),
            ..Facts::new(What::Ops, &event, livemode, connection_id)
        }
    }

    pub fn family(&self) -> Family {
        self.what.family()
    }

    /// The object a thread is about: follow-ups on it go into the first message's thread.
    pub fn subject(&self) -> String {
        match self.what {
            What::InvoicePaid | What::PaymentFailed => {
                match (&self.invoice_id, &self.payment_intent_id) {
                    (Some(invoice), _) => format!("invoice:{invoice}"),
                    (None, Some(intent)) => format!("payment:{intent}"),
                    (None, None) => format!("object:{}", self.object_id),
                }
            }
            What::DisputeOpened | What::DisputeUpdated | What::DisputeClosed => {
                format!("dispute:{}", self.object_id)
            }
            What::RefundIssued => format!("charge:{}", self.object_id),
            What::SubscriptionCanceled
            | What::SubscriptionPastDue
            | What::SubscriptionCancelScheduled => format!("subscription:{}", self.object_id),
            What::CustomerUpdated => format!("customer:{}", self.object_id),
            What::Ops => format!("ops:{}", self.object_id),
        }
    }
}

/// Customer fields whose change is billing news, and how a message names each.
const BILLING_FIELDS: &[(&str, &str)] = &[
    ("email", "email"),
    ("name", "name"),
    ("address", "billing address"),
    ("invoice_settings", "default payment method"),
    ("default_source", "default payment method"),
    ("phone", "phone number"),
    ("shipping", "shipping address"),
    ("tax_ids", "tax ids"),
    ("tax_exempt", "tax status"),
];

/// What `event` is news of, with its facts; `None` for events no message is about (a draft
/// invoice, a customer whose metadata changed). `previous` is the event's
/// `data.previous_attributes` (or `null`).
///
/// One Stripe happening often sends several events; only one of them makes news, so a payment
/// failure is announced once: `invoice.payment_failed` for invoices, and
/// `payment_intent.payment_failed` only when the PaymentIntent names no invoice (`invoice: null`,
/// API versions before basil). `invoice.payment_succeeded` and `charge.*` events repeat what
/// `invoice.paid` and `charge.refunded` say and make no news of their own.
pub fn extract(
    event: &Event,
    livemode: bool,
    connection_id: &str,
    previous: &Value,
) -> Option<Facts> {
    let o = &event.object;
    let new = |what| Facts::new(what, event, livemode, connection_id);
    let facts = match event.event_type.as_str() {
        "invoice.paid" => invoice(new(What::InvoicePaid), o, "amount_paid"),
        "invoice.payment_failed" => {
            let mut f = invoice(new(What::PaymentFailed), o, "amount_due");
            f.next_retry = json::i64(o, &["next_payment_attempt"]);
            f.failure_code = json::str(o, &["last_finalization_error", "code"]);
            f
        }
        "payment_intent.payment_failed" if o.get("invoice") == Some(&Value::Null) => {
            let mut f = new(What::PaymentFailed);
            f.amount = json::i64(o, &["amount"]);
            f.currency = json::str(o, &["currency"]);
            f.payment_intent_id = Some(f.object_id.clone());
            f.charge_id = json::id(o, &["latest_charge"]);
            f.failure_code = json::str(o, &["last_payment_error", "code"]);
            f.decline_code = json::str(o, &["last_payment_error", "decline_code"]);
            f.failure_message = json::str(o, &["last_payment_error", "message"]);
            f.card_brand = json::str(
                o,
                &["last_payment_error", "payment_method", "card", "brand"],
            );
            f.card_last4 = json::str(
                o,
                &["last_payment_error", "payment_method", "card", "last4"],
            );
            f.description = json::str(o, &["description"]);
            f
        }
        t @ ("charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed") => {
            let what = match t {
                "charge.dispute.created" => What::DisputeOpened,
                "charge.dispute.closed" => What::DisputeClosed,
                _ => What::DisputeUpdated,
            };
            let mut f = new(what);
            f.amount = json::i64(o, &["amount"]);
            f.currency = json::str(o, &["currency"]);
            f.charge_id = json::id(o, &["charge"]);
            f.payment_intent_id = json::id(o, &["payment_intent"]);
            f.reason = json::str(o, &["reason"]);
            f.status = json::str(o, &["status"]);
            f.evidence_due_by = json::i64(o, &["evidence_details", "due_by"]);
            f
        }
        "charge.refunded" => {
            let mut f = new(What::RefundIssued);
            let charge_amount = json::i64(o, &["amount"]);
            let refunded = json::i64(o, &["amount_refunded"]);
            // The refund this event is about is the newest one the charge lists (Stripe lists
            // them newest first, in API versions that embed them); else the total refunded.
            let listed = json::at(o, &["refunds", "data"])
                .and_then(Value::as_array)
                .and_then(|refunds| refunds.first());
            f.amount = listed.and_then(|r| json::i64(r, &["amount"])).or(refunded);
            f.reason = listed.and_then(|r| json::str(r, &["reason"]));
            f.currency = json::str(o, &["currency"]);
            f.charge_id = Some(f.object_id.clone());
            f.payment_intent_id = json::id(o, &["payment_intent"]);
            f.charge_amount = charge_amount;
            f.refund_full = charge_amount
                .zip(refunded)
                .map(|(amount, refunded)| refunded >= amount);
            f.card_brand = json::str(o, &["payment_method_details", "card", "brand"]);
            f.card_last4 = json::str(o, &["payment_method_details", "card", "last4"]);
            f.description = json::str(o, &["description"]);
            f
        }
        "customer.updated" => {
            let changed = previous.as_object()?;
            let mut f = new(What::CustomerUpdated);
            f.customer_id = Some(f.object_id.clone());
            f.customer_name = json::str(o, &["name"]);
            f.customer_email = json::str(o, &["email"]);
            for (field, words) in BILLING_FIELDS {
                let touched = changed.contains_key(*field)
                    && (*field != "invoice_settings"
                        || json::at(previous, &["invoice_settings", "default_payment_method"])
                            .is_some());
                if touched && !f.changes.iter().any(|c| c == words) {
                    f.changes.push((*words).to_owned());
                }
            }
            if f.changes.is_empty() {
                return None;
            }
            f
        }
        "customer.subscription.deleted" => subscription(new(What::SubscriptionCanceled), o),
        "customer.subscription.updated" => {
            let status = json::str(o, &["status"]);
            let was = json::str(previous, &["status"]);
            let scheduled = json::bool(o, &["cancel_at_period_end"]) == Some(true)
                && json::bool(previous, &["cancel_at_period_end"]) == Some(false);
            let what = match (status.as_deref(), was) {
                (Some("past_due" | "unpaid"), Some(_)) => What::SubscriptionPastDue,
                (Some("canceled"), Some(_)) => What::SubscriptionCanceled,
                _ if scheduled => What::SubscriptionCancelScheduled,
                _ => return None,
            };
            subscription(new(what), o)
        }
        _ => return None,
    };
    Some(facts)
}

fn invoice(mut f: Facts, o: &Value, amount_field: &str) -> Facts {
    f.invoice_id = Some(f.object_id.clone());
    f.amount = json::i64(o, &[amount_field]).or(json::i64(o, &["total"]));
    f.currency = json::str(o, &["currency"]);
    f.invoice_number = json::str(o, &["number"]);
    f.customer_name = json::str(o, &["customer_name"]);
    f.customer_email = json::str(o, &["customer_email"]);
    f.subscription_id = json::id(o, &["subscription"]).or(json::id(
        o,
        &["parent", "subscription_details", "subscription"],
    ));
    f.attempt_count = json::i64(o, &["attempt_count"]);
    f.payment_intent_id = json::id(o, &["payment_intent"]);
    f.charge_id = json::id(o, &["charge"]);
    f.description = json::str(o, &["description"]);
    f
}

fn subscription(mut f: Facts, o: &Value) -> Facts {
    f.subscription_id = Some(f.object_id.clone());
    f.subscription_status = json::str(o, &["status"]);
    f.reason = json::str(o, &["cancellation_details", "reason"]);
    let item = json::at(o, &["items", "data"])
        .and_then(Value::as_array)
        .and_then(|items| items.first());
    if let Some(price) = item.and_then(|i| i.get("price")) {
        f.plan_name = json::str(price, &["nickname"]);
        let quantity = item.and_then(|i| json::i64(i, &["quantity"])).unwrap_or(1);
        f.amount = json::i64(price, &["unit_amount"]).map(|a| a.saturating_mul(quantity));
        f.currency = json::str(price, &["currency"]);
    }
    f
}

/// `data.previous_attributes` of a stored event's payload, read only for the event types whose
/// news depends on what changed.
pub fn previous_attributes(event_type: &str, payload: &str) -> Value {
    if !matches!(
        event_type,
        "customer.updated" | "customer.subscription.updated"
    ) {
        return Value::Null;
    }
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|mut v| {
            v.get_mut("data")
                .and_then(|d| d.get_mut("previous_attributes"))
                .map(Value::take)
        })
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures;
    use serde_json::json;

    fn event(event_type: &str, object: Value) -> Event {
        Event {
            id: "evt_1".into(),
            event_type: event_type.into(),
            created: 1_700_000_000,
            object,
        }
    }

    #[test]
    fn a_paid_invoice_is_news_with_its_customer_number_and_amount() {
        let e = fixtures::event("invoice.paid__old__stripe-openapi-fixtures3-2020-08-27");
        let f = extract(&e, false, "env", &Value::Null).unwrap();
        assert_eq!(f.what, What::InvoicePaid);
        assert_eq!(f.invoice_id.as_deref(), Some(f.object_id.as_str()));
        assert!(f.amount.is_some() && f.currency.is_some(), "{f:?}");
        assert_eq!(f.subject(), format!("invoice:{}", f.object_id));
    }

    #[test]
    fn one_failure_is_one_message_whatever_stripe_sends_for_it() {
        let failed =
            fixtures::event("invoice.payment_failed__old__stripe-openapi-fixtures3-2020-08-27");
        assert_eq!(
            extract(&failed, false, "env", &Value::Null).unwrap().what,
            What::PaymentFailed
        );
        // The PaymentIntent of an invoice, and the charge, repeat it.
        let intent = event(
            "payment_intent.payment_failed",
            json!({"id": "pi_1", "invoice": "in_1"}),
        );
        assert!(extract(&intent, false, "env", &Value::Null).is_none());
        let basil_intent = event("payment_intent.payment_failed", json!({"id": "pi_1"}));
        assert!(extract(&basil_intent, false, "env", &Value::Null).is_none());
        let charge = event("charge.failed", json!({"id": "ch_1"}));
        assert!(extract(&charge, false, "env", &Value::Null).is_none());
        let succeeded = event("invoice.payment_succeeded", json!({"id": "in_1"}));
        assert!(extract(&succeeded, false, "env", &Value::Null).is_none());
        // A payment outside any invoice fails once, with its card and decline.
        let lone = event(
            "payment_intent.payment_failed",
            json!({"id": "pi_2", "invoice": null, "amount": 500, "currency": "eur",
                   "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds",
                       "payment_method": {"card": {"brand": "visa", "last4": "4242", "fingerprint": "Xt5EWLLDS7FJjR1c"}}}}),
        );
        let f = extract(&lone, true, "env", &Value::Null).unwrap();
        assert_eq!(
            (f.decline_code.as_deref(), f.card_last4.as_deref()),
            (Some("insufficient_funds"), Some("4242"))
        );
        assert!(
            !serde_json::to_string(&f)
                .unwrap()
                .contains("Xt5EWLLDS7FJjR1c"),
            "no fingerprint is read"
        );
    }

    #[test]
    fn a_customer_update_is_news_only_when_billing_details_changed() {
        let customer = json!({"id": "cus_1", "email": "new@example.com", "name": "Ada"});
        let e = event("customer.updated", customer);
        let metadata_only = json!({"metadata": {"crm": "1"}});
        assert!(extract(&e, false, "env", &metadata_only).is_none());
        let billing = json!({"email": "old@example.com", "address": {"line1": "1 Main St"},
                             "invoice_settings": {"default_payment_method": "pm_old"}});
        let f = extract(&e, false, "env", &billing).unwrap();
        assert_eq!(
            f.changes,
            ["email", "billing address", "default payment method"]
        );
        assert!(
            !serde_json::to_string(&f).unwrap().contains("Main St"),
            "no address is read"
        );
    }

    #[test]
    fn subscriptions_make_news_when_they_fall_past_due_or_end() {
        let sub = |status: &str| {
            json!({"id": "sub_1", "status": status, "cancel_at_period_end": false,
            "items": {"data": [{"quantity": 2, "price": {"nickname": "Pro", "unit_amount": 1500, "currency": "usd"}}]}})
        };
        let past_due = event("customer.subscription.updated", sub("past_due"));
        let f = extract(&past_due, false, "env", &json!({"status": "active"})).unwrap();
        assert_eq!(
            (f.what, f.amount, f.plan_name.as_deref()),
            (What::SubscriptionPastDue, Some(3000), Some("Pro"))
        );
        assert!(
            extract(&past_due, false, "env", &json!({"quantity": 1})).is_none(),
            "still past due: no news"
        );
        let ended = event("customer.subscription.deleted", sub("canceled"));
        assert_eq!(
            extract(&ended, false, "env", &Value::Null).unwrap().what,
            What::SubscriptionCanceled
        );
    }

    #[test]
    fn refunds_say_whether_they_are_full_and_disputes_their_deadline() {
        let charge = event(
            "charge.refunded",
            json!({"id": "ch_1", "amount": 5000, "amount_refunded": 2000,
            "currency": "usd", "refunds": {"data": [{"id": "re_1", "amount": 2000, "reason": "duplicate"}]}}),
        );
        let f = extract(&charge, false, "env", &Value::Null).unwrap();
        assert_eq!(
            (f.refund_full, f.amount, f.reason.as_deref()),
            (Some(false), Some(2000), Some("duplicate"))
        );
        let dispute =
            fixtures::event("charge.dispute.created__old__stripe-openapi-fixtures3-2020-08-27");
        let f = extract(&dispute, false, "env", &Value::Null).unwrap();
        assert_eq!(f.what, What::DisputeOpened);
        assert_eq!(f.subject(), format!("dispute:{}", f.object_id));
    }

    #[test]
    fn previous_attributes_are_read_only_where_needed() {
        let payload =
            json!({"data": {"object": {}, "previous_attributes": {"email": "x"}}}).to_string();
        assert_eq!(
            previous_attributes("customer.updated", &payload),
            json!({"email": "x"})
        );
        assert_eq!(previous_attributes("invoice.paid", &payload), Value::Null);
    }
}
