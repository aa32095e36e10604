//! Refunds, from `refund.*`, `charge.refund.updated`, and the refund lists older charges carry.

use serde_json::Value;

use super::fold::Fold;
use super::json::{self, as_id, as_string, as_time, take};
use super::keys::listed;
use super::Event;
use crate::storage::ledger::RefundFields as Fields;

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

/// The fold of one refund, named by its Stripe id (a charge event may list several).
pub struct Refund(pub String);

impl Fold for Refund {
    type State = Fields;
    type Fields = Fields;

    fn start(&self) -> Fields {
        Fields {
            status: "pending".to_owned(),
            ..Fields::default()
        }
    }

    fn rank(&self, event: &Event) -> u8 {
        status_rank(refund_in(event, &self.0).and_then(|r| r["status"].as_str()))
    }

    fn step(&self, f: &mut Fields, event: &Event) {
        let Some(r) = refund_in(event, &self.0) else {
            return;
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
/// Refund `stripe_id` from all the events that show it, in any order.
pub fn fold(stripe_id: &str, events: &mut [Event]) -> Fields {
    let fold = Refund(stripe_id.to_owned());
    fold.finish(&super::fold::fold_all(&fold, events).state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fixtures::event;

    #[test]
    fn a_refund_listed_inside_an_older_charge_is_read_from_the_list() {
        let refunded = event("charge.refunded__old__stripe-sync-engine-2020-03-02");
        let listed = listed(&refunded.object, "refunds");
        let Some(first) = listed.first() else {
            panic!("the fixture lists its refunds");
        };
        let id = first["id"].as_str().unwrap().to_owned();
        let f = fold(&id, &mut [refunded.clone()]);
        assert_eq!(f.amount, first["amount"].as_i64().unwrap());
        assert_eq!(f.charge_id.as_deref(), refunded.object["id"].as_str());
        assert_eq!(
            fold("re_other", &mut [refunded]).amount,
            0,
            "another refund is not this one"
        );
    }
}
