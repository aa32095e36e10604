//! Disputes, from `charge.dispute.*`. Once closed (won, lost, or a closed warning) a dispute stays
//! closed.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::json::{self, as_id, as_string, as_time, take};
use super::keys::{sort_for_fold, Key};
use super::{upsert, Event};
use crate::storage::schema::disputes;
use crate::storage::DbConnection;

#[derive(Debug, Default, AsChangeset, Insertable)]
#[diesel(table_name = disputes, treat_none_as_null = true)]
struct Fields {
    charge_id: Option<String>,
    payment_intent_id: Option<String>,
    amount: i64,
    currency: String,
    reason: Option<String>,
    status: String,
    evidence_due_by: Option<NaiveDateTime>,
    stripe_created: Option<NaiveDateTime>,
    observed_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

fn is_closed(status: &str) -> bool {
    matches!(status, "won" | "lost" | "warning_closed")
}

fn status_rank(status: Option<&str>) -> u8 {
    match status {
        Some("warning_needs_response" | "needs_response") => 0,
        Some("warning_under_review" | "under_review") => 1,
        Some(s) if is_closed(s) => 2,
        _ => 0,
    }
}

pub fn rebuild(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    mut events: Vec<Event>,
) -> Result<Vec<Key>, diesel::result::Error> {
    sort_for_fold(&mut events, |e| status_rank(e.object["status"].as_str()));
    let now = crate::domain::time::now();
    let mut f = Fields {
        status: "needs_response".to_owned(),
        observed_at: now,
        updated_at: now,
        ..Fields::default()
    };
    for event in &events {
        let o = &event.object;
        take(&mut f.charge_id, o, "charge", as_id);
        take(&mut f.payment_intent_id, o, "payment_intent", as_id);
        take(&mut f.reason, o, "reason", as_string);
        take(&mut f.stripe_created, o, "created", as_time);
        if let Some(due) = json::at(o, &["evidence_details", "due_by"]) {
            f.evidence_due_by = as_time(due);
        }
        f.amount = json::i64(o, &["amount"]).unwrap_or(f.amount);
        f.currency = json::str(o, &["currency"]).unwrap_or(std::mem::take(&mut f.currency));
        if let Some(status) = json::str(o, &["status"]) {
            if !is_closed(&f.status) || is_closed(&status) {
                f.status = status;
            }
        }
    }
    upsert!(conn, disputes, connection_id, stripe_id, &f);
    Ok(Vec::new())
}
