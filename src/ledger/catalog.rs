//! Prices (and legacy plans, which are prices) and products: the names subscriptions show.

use super::fold::Fold;
use super::json::{self, as_id, as_string, take};
use super::Event;
use crate::storage::ledger::{PriceFields, ProductFields};

/// The price (and legacy plan) fold: the row's fields are the state.
pub struct Price;

impl Fold for Price {
    type State = PriceFields;
    type Fields = PriceFields;

    fn start(&self) -> PriceFields {
        PriceFields {
            active: true,
            ..PriceFields::default()
        }
    }

    fn rank(&self, _: &Event) -> u8 {
        0
    }

    fn step(&self, f: &mut PriceFields, event: &Event) {
        let o = &event.object;
        take(&mut f.stripe_product_id, o, "product", as_id);
        take(&mut f.nickname, o, "nickname", as_string);
        take(&mut f.currency, o, "currency", as_string);
        // A plan says `amount` and `interval`; a price says `unit_amount` and `recurring`.
        f.unit_amount = json::i64(o, &["unit_amount"])
            .or(json::i64(o, &["amount"]))
            .or(f.unit_amount);
        f.billing_interval = json::str(o, &["recurring", "interval"])
            .or(json::str(o, &["interval"]))
            .or(f.billing_interval.take());
        f.interval_count = json::i64(o, &["recurring", "interval_count"])
            .or(json::i64(o, &["interval_count"]))
            .and_then(|n| i32::try_from(n).ok())
            .or(f.interval_count);
        f.active = json::bool(o, &["active"]).unwrap_or(f.active);
        f.deleted |= event.action() == "deleted";
    }

    fn finish(&self, state: &PriceFields) -> PriceFields {
        let now = crate::domain::time::now();
        PriceFields {
            observed_at: now,
            updated_at: now,
            ..state.clone()
        }
    }
}

/// The product fold: the row's fields are the state.
pub struct Product;

impl Fold for Product {
    type State = ProductFields;
    type Fields = ProductFields;

    fn start(&self) -> ProductFields {
        ProductFields {
            active: true,
            ..ProductFields::default()
        }
    }

    fn rank(&self, _: &Event) -> u8 {
        0
    }

    fn step(&self, f: &mut ProductFields, event: &Event) {
        let o = &event.object;
        take(&mut f.name, o, "name", as_string);
        f.active = json::bool(o, &["active"]).unwrap_or(f.active);
        f.deleted |= event.action() == "deleted";
    }

    fn finish(&self, state: &ProductFields) -> ProductFields {
        let now = crate::domain::time::now();
        ProductFields {
            observed_at: now,
            updated_at: now,
            ..state.clone()
        }
    }
}
