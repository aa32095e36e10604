//! Stripe's objects in full: every field Stripe's API reference (version 2026-09-30) marks as
//! always present is in every object the fake answers with, with Stripe's default where a test
//! seeded or a request made an object without it; and a created object's fields have Stripe's
//! types (a form sends `days_until_due=30`, Stripe answers `"days_until_due": 30`). billmirror
//! parses answers into async-stripe's types, which refuse an object that lacks any of these:
//! the fake is as strict as Stripe's documented shapes, no looser.

use serde_json::{json, Value};

/// Fills the always-present fields of an object (and of the objects inside it) that are missing.
pub(super) fn complete(object: &mut Value) {
    // A deleted object is only its id, its type and `deleted`.
    if object["deleted"] == true {
        return;
    }
    let kind = object["object"].as_str().unwrap_or_default().to_owned();
    let Some(map) = object.as_object_mut() else {
        return;
    };
    // A fixed time for an object seeded without one, so an object reads the same every time
    // (objects the fake makes are stamped when made).
    let created = map
        .get("created")
        .and_then(Value::as_i64)
        .unwrap_or(1_700_000_000);
    let currency = map
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or("usd")
        .to_owned();
    let defaults: Vec<(&str, Value)> = match kind.as_str() {
        "customer" => common(created),
        "invoice" => {
            let total = map.get("total").and_then(Value::as_i64).unwrap_or(0);
            let mut d = common(created);
            d.extend([
                ("amount_due", json!(total)),
                ("amount_overpaid", json!(0)),
                ("amount_paid", json!(0)),
                ("amount_remaining", json!(total)),
                ("amount_shipping", json!(0)),
                ("attempt_count", json!(0)),
                ("attempted", json!(false)),
                (
                    "automatic_tax",
                    json!({"enabled": false, "liability": null, "status": null}),
                ),
                ("collection_method", json!("charge_automatically")),
                ("currency", json!(currency)),
                ("default_tax_rates", json!([])),
                ("discounts", json!([])),
                ("issuer", json!({"type": "self"})),
                (
                    "lines",
                    json!({"object": "list", "data": [], "has_more": false}),
                ),
                ("payment_settings", json!({})),
                ("period_end", json!(created)),
                ("period_start", json!(created)),
                ("post_payment_credit_notes_amount", json!(0)),
                ("pre_payment_credit_notes_amount", json!(0)),
                ("starting_balance", json!(0)),
                ("status_transitions", json!({})),
                ("subtotal", json!(total)),
                ("total", json!(total)),
            ]);
            d
        }
        "invoiceitem" | "line_item" => {
            let quantity = map.get("quantity").and_then(Value::as_u64).unwrap_or(1);
            let amount = map.get("amount").and_then(Value::as_i64).unwrap_or(0);
            let mut d = common(created);
            d.extend([
                ("amount", json!(amount)),
                ("currency", json!(currency)),
                ("discountable", json!(true)),
                ("discounts", json!([])),
                ("period", json!({"start": created, "end": created})),
            ]);
            if kind == "invoiceitem" {
                d.extend([
                    ("date", json!(created)),
                    ("proration", json!(false)),
                    ("quantity", json!(quantity)),
                    ("quantity_decimal", json!(quantity.to_string())),
                ]);
            } else {
                d.push(("subtotal", json!(amount)));
            }
            d
        }
        "subscription" => {
            let mut d = common(created);
            d.extend([
                (
                    "automatic_tax",
                    json!({"enabled": false, "liability": null}),
                ),
                ("billing_cycle_anchor", json!(created)),
                ("billing_mode", json!({"type": "classic"})),
                ("billing_schedules", json!([])),
                ("cancel_at_period_end", json!(false)),
                ("collection_method", json!("charge_automatically")),
                ("currency", json!(currency)),
                ("discounts", json!([])),
                ("invoice_settings", json!({"issuer": {"type": "self"}})),
                (
                    "items",
                    json!({"object": "list", "data": [], "has_more": false}),
                ),
                ("start_date", json!(created)),
                ("status", json!("active")),
            ]);
            d
        }
        "subscription_item" => {
            let mut d = common(created);
            d.extend([
                ("current_period_start", json!(created)),
                ("current_period_end", json!(created + 30 * 86_400)),
                ("discounts", json!([])),
                ("subscription", json!("sub_unknown")),
            ]);
            d
        }
        "price" | "plan" => {
            let mut d = common(created);
            d.extend([
                ("active", json!(true)),
                ("billing_scheme", json!("per_unit")),
                ("currency", json!(currency)),
            ]);
            if kind == "price" {
                d.extend([
                    ("product", json!("prod_unknown")),
                    ("type", json!("recurring")),
                ]);
            } else {
                d.extend([
                    ("interval", json!("month")),
                    ("interval_count", json!(1)),
                    ("usage_type", json!("licensed")),
                ]);
            }
            d
        }
        "product" => {
            let mut d = common(created);
            d.extend([
                ("active", json!(true)),
                ("images", json!([])),
                ("marketing_features", json!([])),
                ("name", json!("Product")),
                ("type", json!("service")),
                ("updated", json!(created)),
            ]);
            d
        }
        "charge" => {
            let mut d = common(created);
            d.extend([
                ("amount_captured", json!(0)),
                ("amount_refunded", json!(0)),
                (
                    "billing_details",
                    json!({"address": null, "email": null, "name": null, "phone": null}),
                ),
                ("captured", json!(false)),
                ("currency", json!(currency)),
                ("disputed", json!(false)),
                ("paid", json!(false)),
                ("refunded", json!(false)),
                ("status", json!("pending")),
            ]);
            d
        }
        "payment_intent" => {
            let mut d = common(created);
            d.extend([
                ("amount_capturable", json!(0)),
                ("amount_received", json!(0)),
                ("capture_method", json!("automatic")),
                ("confirmation_method", json!("automatic")),
                ("currency", json!(currency)),
                ("payment_method_types", json!(["card"])),
                ("status", json!("requires_payment_method")),
            ]);
            d
        }
        "refund" => {
            let mut d = common(created);
            d.push(("currency", json!(currency)));
            d
        }
        "dispute" => {
            let mut d = common(created);
            d.extend([
                ("balance_transactions", json!([])),
                ("currency", json!(currency)),
                ("enhanced_eligibility_types", json!([])),
                ("evidence", json!({"enhanced_evidence": {}})),
                (
                    "evidence_details",
                    json!({"enhanced_eligibility": {}, "has_evidence": false,
                           "past_due": false, "submission_count": 0}),
                ),
                ("is_charge_refundable", json!(false)),
                ("reason", json!("general")),
                ("status", json!("needs_response")),
            ]);
            d
        }
        "webhook_endpoint" => {
            let mut d = common(created);
            d.extend([
                ("enabled_events", json!([])),
                ("status", json!("enabled")),
                ("url", json!("")),
            ]);
            d
        }
        "event" => vec![
            ("created", json!(created)),
            ("livemode", json!(false)),
            ("pending_webhooks", json!(0)),
        ],
        _ => Vec::new(),
    };
    for (field, value) in defaults {
        fill(map.entry(field.to_owned()).or_insert(Value::Null), value);
    }
    // A card's expiry is always there, as are its brand and last four digits.
    if let Some(card) = map
        .get_mut("payment_method_details")
        .and_then(|d| d.get_mut("card"))
        .filter(|c| c.is_object())
    {
        fill(
            card,
            json!({"brand": "visa", "exp_month": 12, "exp_year": 2034, "last4": "4242"}),
        );
    }
    // A recurring price says how it recurs, in full.
    if let Some(recurring) = map.get_mut("recurring").filter(|r| r.is_object()) {
        for (field, value) in [
            ("interval", json!("month")),
            ("interval_count", json!(1)),
            ("usage_type", json!("licensed")),
        ] {
            if recurring[field].is_null() {
                recurring[field] = value;
            }
        }
    }
    // A list inside an object is a whole list: its `url` and `has_more` too.
    let id = map
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    for (field, url) in [
        ("lines", format!("/v1/invoices/{id}/lines")),
        ("items", format!("/v1/subscription_items?subscription={id}")),
    ] {
        if let Some(list) = map.get_mut(field).filter(|l| l.is_object()) {
            list["object"] = json!("list");
            if !list["data"].is_array() {
                list["data"] = json!([]);
            }
            if list["url"].is_null() {
                list["url"] = json!(url);
            }
            if list["has_more"].is_null() {
                list["has_more"] = json!(false);
            }
        }
    }
    // The objects inside: an invoice's lines, a subscription's items with their prices and plans.
    if let Some(lines) = map.get_mut("lines").and_then(|l| l["data"].as_array_mut()) {
        for line in lines {
            if line["object"].is_null() || line["object"] == "invoiceitem" {
                line["object"] = json!("line_item");
            }
            complete(line);
        }
    }
    if kind == "subscription" {
        let id = map.get("id").cloned().unwrap_or(Value::Null);
        if let Some(items) = map.get_mut("items").and_then(|l| l["data"].as_array_mut()) {
            for item in items {
                item["object"] = json!("subscription_item");
                if item["subscription"].is_null() {
                    item["subscription"] = id.clone();
                }
                let price = item["price"].take();
                item["price"] = match price {
                    Value::Object(_) => price,
                    Value::String(id) => json!({"id": id}),
                    _ => json!({"id": "price_unknown"}),
                };
                item["price"]["object"] = json!("price");
                if item["plan"].is_null() {
                    let recurring = &item["price"]["recurring"];
                    item["plan"] = json!({"id": item["price"]["id"],
                        "amount": item["price"]["unit_amount"],
                        "currency": item["price"]["currency"],
                        "interval": recurring["interval"].as_str().unwrap_or("month"),
                        "interval_count": recurring["interval_count"].as_u64().unwrap_or(1)});
                }
                item["plan"]["object"] = json!("plan");
                complete(&mut item["price"]);
                complete(&mut item["plan"]);
                complete(item);
            }
        }
    }
}

/// Puts `value` where nothing is, and completes an object that is there with the fields of
/// `value` it lacks.
fn fill(slot: &mut Value, value: Value) {
    match (slot, value) {
        (slot @ Value::Null, value) => *slot = value,
        (Value::Object(present), Value::Object(defaults)) => {
            for (field, value) in defaults {
                fill(present.entry(field).or_insert(Value::Null), value);
            }
        }
        _ => {}
    }
}

/// Fields every Stripe object has.
fn common(created: i64) -> Vec<(&'static str, Value)> {
    vec![
        ("created", json!(created)),
        ("livemode", json!(false)),
        ("metadata", json!({})),
    ]
}

/// A created object's fields with Stripe's types: the form's `"30"` is a number, `"false"` a
/// boolean, as Stripe answers them.
pub(super) fn typed_fields(object: &mut Value) {
    const NUMBERS: [&str; 5] = [
        "days_until_due",
        "due_date",
        "quantity",
        "amount",
        "created",
    ];
    const BOOLEANS: [&str; 3] = ["auto_advance", "disabled", "livemode"];
    let Some(map) = object.as_object_mut() else {
        return;
    };
    for (field, value) in map.iter_mut() {
        let Some(text) = value.as_str() else {
            continue;
        };
        if NUMBERS.contains(&field.as_str()) {
            if let Ok(n) = text.parse::<i64>() {
                *value = json!(n);
            }
        } else if BOOLEANS.contains(&field.as_str()) {
            if let Ok(b) = text.parse::<bool>() {
                *value = json!(b);
            }
        }
    }
}
