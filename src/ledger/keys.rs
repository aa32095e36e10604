//! Which ledger objects an event describes, and the order events are folded in.

use serde_json::Value;

use super::json;
use super::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Customer,
    Subscription,
    Invoice,
    Payment,
    Refund,
    Dispute,
    Price,
    Product,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Subscription => "subscription",
            Kind::Invoice => "invoice",
            Kind::Payment => "payment",
            Kind::Refund => "refund",
            Kind::Dispute => "dispute",
            Kind::Price => "price",
            Kind::Product => "product",
        }
    }
}

/// One ledger object: its kind and Stripe id. A payment is keyed by its PaymentIntent when it has
/// one (charges and invoices point to it), else by its charge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub stripe_id: String,
}

impl Key {
    pub fn new(kind: Kind, stripe_id: impl Into<String>) -> Key {
        Key {
            kind,
            stripe_id: stripe_id.into(),
        }
    }

    /// The stored form, scoped to a connection: `{connection}/{kind}/{stripe id}`.
    pub fn stored(&self, connection_id: &str) -> String {
        format!("{connection_id}/{}/{}", self.kind.as_str(), self.stripe_id)
    }
}

/// The payment a PaymentIntent, charge, invoice or invoice payment refers to.
pub fn payment_key(payment_intent: Option<String>, charge: Option<String>) -> Option<Key> {
    payment_intent
        .or(charge)
        .map(|id| Key::new(Kind::Payment, id))
}

/// The keys an event describes. An event of a mapped type without the ids it needs is an error:
/// it is retried and then parked as dead, never skipped silently.
pub fn keys_of(event: &Event) -> Result<Vec<Key>, String> {
    let object = &event.object;
    let own_id = || json::str(object, &["id"]).ok_or_else(|| "data.object has no id".to_owned());
    let t = event.event_type.as_str();
    let mut keys = Vec::new();
    if t.starts_with("customer.subscription.") {
        keys.push(Key::new(Kind::Subscription, own_id()?));
    } else if t.starts_with("customer.") {
        keys.push(Key::new(Kind::Customer, own_id()?));
    } else if t.starts_with("invoice_payment.") {
        let invoice =
            json::id(object, &["invoice"]).ok_or("the invoice payment names no invoice")?;
        keys.push(Key::new(Kind::Invoice, invoice));
        keys.extend(payment_key(
            json::id(object, &["payment", "payment_intent"]),
            json::id(object, &["payment", "charge"]),
        ));
    } else if t.starts_with("invoice.") {
        keys.push(Key::new(Kind::Invoice, own_id()?));
        // Before 2025-03-31.basil a paid invoice names its PaymentIntent and charge itself.
        if matches!(event.action(), "paid" | "payment_succeeded") {
            keys.extend(payment_key(
                json::id(object, &["payment_intent"]),
                json::id(object, &["charge"]),
            ));
        }
    } else if t.starts_with("payment_intent.") {
        keys.push(Key::new(Kind::Payment, own_id()?));
    } else if t.starts_with("charge.dispute.") {
        keys.push(Key::new(Kind::Dispute, own_id()?));
    } else if t.starts_with("charge.refund.") || t.starts_with("refund.") {
        keys.push(Key::new(Kind::Refund, own_id()?));
    } else if t.starts_with("charge.") {
        let charge = own_id()?;
        keys.extend(payment_key(
            json::id(object, &["payment_intent"]),
            Some(charge),
        ));
        // Older versions list the charge's refunds inside it.
        for refund in listed(object, "refunds") {
            if let Some(id) = json::str(refund, &["id"]) {
                keys.push(Key::new(Kind::Refund, id));
            }
        }
    } else if t.starts_with("price.") || t.starts_with("plan.") {
        keys.push(Key::new(Kind::Price, own_id()?));
    } else if t.starts_with("product.") {
        keys.push(Key::new(Kind::Product, own_id()?));
    } else {
        return Err(format!("billmirror does not map `{t}` events"));
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The items of a list field (`{"object": "list", "data": [...]}`), or none.
pub fn listed<'v>(object: &'v Value, field: &str) -> &'v [Value] {
    json::at(object, &[field, "data"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Within one second, `created` events come first and `deleted` ones last.
pub(super) fn action_rank(event: &Event) -> u8 {
    match event.action() {
        "created" => 0,
        "deleted" | "closed" | "voided" => 3,
        "paid" | "payment_succeeded" | "succeeded" => 2,
        _ => 1,
    }
}
