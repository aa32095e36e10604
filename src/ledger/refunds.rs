//! Refunds, from `refund.*`, `charge.refund.updated`, and the refund lists older charges carry.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use super::json::{self, as_id, as_string, as_time, take};
use super::keys::{listed, sort_for_fold, Key};
use super::{upsert, Event};
use crate::storage::schema::refunds;
use crate::storage::DbConnection;

#[derive(Debug, Default, AsChangeset, Insertable)]
#[diesel(table_name = refunds, treat_none_as_null = true)]
struct Fields {
    charge_id: Option<String>,
    payment_intent_id: Option<String>,
    amount: i64,
    currency: String,
    reason: Option<String>,
    status: String,
    failure_reason: Option<String>,
    stripe_created: Option<NaiveDateTime>,
    observed_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

fn status_rank(status: Option<&str>) -> u8 {
    match status {
        Some("pending") => 0,
        Some("requires_action") => 1,
        Some("succeeded") => 2,
        Some("failed" | "canceled") => 3,
        _ => 0,
    }
}

/// The refund object an event carries for `refund_id`: the event's own object, or an entry of a
/// charge's refund list.
fn refund_in<'e>(event: &'e Event, refund_id: &str) -> Option<&'e Value> {
    if event.object["object"] == "refund" {
        return Some(&event.object);
    }
    listed(&event.object, "refunds")
        .iter()
        .find(|r| r["id"] == refund_id)
}

pub fn rebuild(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    mut events: Vec<Event>,
) -> Result<Vec<Key>, diesel::result::Error> {
    sort_for_fold(&mut events, |e| {
        status_rank(refund_in(e, stripe_id).and_then(|r| r["status"].as_str()))
    });
    let now = crate::domain::time::now();
    let mut f = Fields {
        status: "pending".to_owned(),
        observed_at: now,
        updated_at: now,
        ..Fields::default()
    };
    for event in &events {
        let Some(r) = refund_in(event, stripe_id) else {
            continue;
        };
        take(&mut f.charge_id, r, "charge", as_id);
        take(&mut f.payment_intent_id, r, "payment_intent", as_id);
        take(&mut f.reason, r, "reason", as_string);
        take(&mut f.failure_reason, r, "failure_reason", as_string);
        take(&mut f.stripe_created, r, "created", as_time);
        f.amount = json::i64(r, &["amount"]).unwrap_or(f.amount);
        f.currency = json::str(r, &["currency"]).unwrap_or(std::mem::take(&mut f.currency));
        if event.event_type == "refund.failed" {
            f.status = "failed".to_owned();
        } else if let Some(status) = json::str(r, &["status"]) {
            f.status = status;
        }
    }
    upsert!(conn, refunds, connection_id, stripe_id, &f);
    Ok(Vec::new())
}
