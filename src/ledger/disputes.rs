//! Disputes, from `charge.dispute.*`. Once closed (won, lost, or a closed warning) a dispute stays
//! closed.

use super::fold::Fold;
use super::json::{self, as_id, as_string, as_time, take};
use super::Event;
use crate::storage::ledger::DisputeFields as Fields;

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

/// The dispute fold: the row's fields are the state.
pub struct Dispute;

impl Fold for Dispute {
    type State = Fields;
    type Fields = Fields;

    fn start(&self) -> Fields {
        Fields {
            status: "needs_response".to_owned(),
            ..Fields::default()
        }
    }

    fn rank(&self, event: &Event) -> u8 {
        status_rank(event.object["status"].as_str())
    }

    fn step(&self, f: &mut Fields, event: &Event) {
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

    fn finish(&self, state: &Fields) -> Fields {
        let now = crate::domain::time::now();
        Fields {
            observed_at: now,
            updated_at: now,
            ..state.clone()
        }
    }
}

#[cfg(test)]
/// A dispute from all its events, in any order.
pub fn fold(events: &mut [Event]) -> Fields {
    Dispute.finish(&super::fold::fold_all(&Dispute, events).state)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::fixtures::{event, variant};

    #[test]
    fn a_closed_dispute_stays_closed_whatever_the_order() {
        let created = event("charge.dispute.created__old__stripe-openapi-fixtures3-2020-08-27");
        let closed = variant(
            &created,
            "evt_closed",
            "charge.dispute.closed",
            created.created + 100,
            json!({"status": "lost"}),
        );
        let stale = variant(
            &created,
            "evt_stale",
            "charge.dispute.updated",
            created.created + 200,
            json!({"status": "under_review"}),
        );
        for mut events in [
            vec![created.clone(), closed.clone(), stale.clone()],
            vec![stale, closed, created],
        ] {
            let f = fold(&mut events);
            assert_eq!(f.status, "lost");
            assert_eq!(f.amount, 1000);
            assert_eq!(f.charge_id.as_deref(), Some("ch_1HKtMED26OHgmetw0jQc7LnY"));
        }
    }
}
