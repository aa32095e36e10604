//! Prices (and legacy plans, which are prices) and products: the names subscriptions show.

use super::json::{self, as_id, as_string, take};
use super::keys::sort_for_fold;
use super::Event;
use crate::storage::ledger::{PriceFields, ProductFields};

/// A price (or legacy plan) from all its events, in any order.
pub fn fold_price(events: &mut [Event]) -> PriceFields {
    sort_for_fold(events, |_| 0);
    let now = crate::domain::time::now();
    let mut f = PriceFields {
        active: true,
        observed_at: now,
        updated_at: now,
        ..PriceFields::default()
    };
    for event in events.iter() {
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
    f
}

/// A product from all its events, in any order.
pub fn fold_product(events: &mut [Event]) -> ProductFields {
    sort_for_fold(events, |_| 0);
    let now = crate::domain::time::now();
    let mut f = ProductFields {
        active: true,
        observed_at: now,
        updated_at: now,
        ..ProductFields::default()
    };
    for event in events.iter() {
        let o = &event.object;
        take(&mut f.name, o, "name", as_string);
        f.active = json::bool(o, &["active"]).unwrap_or(f.active);
        f.deleted |= event.action() == "deleted";
    }
    f
}
