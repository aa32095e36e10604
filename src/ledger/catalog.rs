//! Prices (and legacy plans, which are prices) and products: the names subscriptions show.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::json::{self, as_id, as_string, take};
use super::keys::{sort_for_fold, Key};
use super::{upsert, Event};
use crate::storage::schema::{prices, products};
use crate::storage::DbConnection;

#[derive(Debug, Default, AsChangeset, Insertable)]
#[diesel(table_name = prices, treat_none_as_null = true)]
struct PriceFields {
    stripe_product_id: Option<String>,
    nickname: Option<String>,
    unit_amount: Option<i64>,
    currency: Option<String>,
    billing_interval: Option<String>,
    interval_count: Option<i32>,
    active: bool,
    deleted: bool,
    observed_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Debug, Default, AsChangeset, Insertable)]
#[diesel(table_name = products, treat_none_as_null = true)]
struct ProductFields {
    name: Option<String>,
    active: bool,
    deleted: bool,
    observed_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

pub fn rebuild_price(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    mut events: Vec<Event>,
) -> Result<Vec<Key>, diesel::result::Error> {
    sort_for_fold(&mut events, |_| 0);
    let now = crate::domain::time::now();
    let mut f = PriceFields {
        active: true,
        observed_at: now,
        updated_at: now,
        ..PriceFields::default()
    };
    for event in &events {
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
    upsert!(conn, prices, connection_id, stripe_id, &f);
    Ok(Vec::new())
}

pub fn rebuild_product(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    mut events: Vec<Event>,
) -> Result<Vec<Key>, diesel::result::Error> {
    sort_for_fold(&mut events, |_| 0);
    let now = crate::domain::time::now();
    let mut f = ProductFields {
        active: true,
        observed_at: now,
        updated_at: now,
        ..ProductFields::default()
    };
    for event in &events {
        let o = &event.object;
        take(&mut f.name, o, "name", as_string);
        f.active = json::bool(o, &["active"]).unwrap_or(f.active);
        f.deleted |= event.action() == "deleted";
    }
    upsert!(conn, products, connection_id, stripe_id, &f);
    Ok(Vec::new())
}
