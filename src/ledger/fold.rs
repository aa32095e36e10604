//! Folding an object's events one at a time, so applying an event costs the same however many
//! events the object already has.
//!
//! A kind's fold is a left fold over its events in fold order (`keys::sort_for_fold`): a start
//! state, a step per event, and a finish that turns the state into the stored fields. The state
//! is kept together with the position of the newest event it includes ([`Folded`]). An event that
//! sorts after that position is stepped into the state; an older one (it arrived out of order, or
//! is replayed) cannot be, and the caller re-folds the object from all its events instead. Both
//! ways give the same state as folding the whole set at once, so the result still depends only on
//! the set of events (promise 4 in docs/ARCHITECTURE.md).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::keys::action_rank;
use super::Event;

/// Where an event sorts among its object's events: by `created`, then by how far along its
/// lifecycle its type and the object's status are, then by event id (unique, so no two events tie).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    created: i64,
    action: u8,
    rank: u8,
    event_id: String,
}

impl Position {
    pub fn of(event: &Event, rank: u8) -> Position {
        Position {
            created: event.created,
            action: action_rank(event),
            rank,
            event_id: event.id.clone(),
        }
    }
}

/// One kind's fold, split so it can run an event at a time.
pub trait Fold {
    /// What the fold carries from one event to the next; stored between events.
    type State: Serialize + DeserializeOwned;
    /// What is written to the object's row.
    type Fields;
    /// The state before any event.
    fn start(&self) -> Self::State;
    /// The kind's tie-break within one second (see [`Position`]).
    fn rank(&self, event: &Event) -> u8;
    /// Takes one event, after every event that sorts before it.
    fn step(&self, state: &mut Self::State, event: &Event);
    /// The row's fields from the state.
    fn finish(&self, state: &Self::State) -> Self::Fields;
}

/// A fold's state and the newest event it includes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Folded<S> {
    pub through: Option<Position>,
    pub state: S,
}

/// The event sorts before (or is) the newest event already folded: only a fold of the whole set
/// can take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder;

/// Folds every event of an object, in fold order whatever order they come in.
pub fn fold_all<F: Fold>(fold: &F, events: &mut [Event]) -> Folded<F::State> {
    let mut positioned: Vec<(Position, &Event)> = events
        .iter()
        .map(|e| (Position::of(e, fold.rank(e)), e))
        .collect();
    positioned.sort_by(|a, b| a.0.cmp(&b.0));
    let mut state = fold.start();
    let mut through = None;
    for (position, event) in positioned {
        fold.step(&mut state, event);
        through = Some(position);
    }
    Folded { through, state }
}

/// Adds one event to a fold when it sorts after every event the fold includes.
pub fn fold_into<F: Fold>(
    fold: &F,
    folded: &mut Folded<F::State>,
    event: &Event,
) -> Result<(), OutOfOrder> {
    let position = Position::of(event, fold.rank(event));
    if folded.through.as_ref().is_some_and(|t| position <= *t) {
        return Err(OutOfOrder);
    }
    fold.step(&mut folded.state, event);
    folded.through = Some(position);
    Ok(())
}

/// A fresh fold of one event: an object seen for the first time.
pub fn fold_first<F: Fold>(fold: &F, event: &Event) -> Folded<F::State> {
    let mut folded = Folded {
        through: None,
        state: fold.start(),
    };
    // A fold that includes nothing takes any event.
    let _ = fold_into(fold, &mut folded, event);
    folded
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::ledger::fixtures::{event, variant};
    use crate::ledger::{catalog, customers, disputes, refunds, subscriptions};

    /// For a set of events: stepping them in one by one in fold order (with the state stored and
    /// read back between events, as the apply worker does) gives the same state as folding the
    /// whole set at once in the order it came; an event older than the state, or a replay of its
    /// newest, is refused.
    fn incremental_equals_full<F: Fold>(fold: &F, events: &[Event]) {
        let full = fold_all(fold, &mut events.to_vec());
        let mut sorted = events.to_vec();
        sorted.sort_by_cached_key(|e| Position::of(e, fold.rank(e)));
        let mut kept = serde_json::to_string(&fold_first(fold, &sorted[0])).unwrap();
        for event in &sorted[1..] {
            let mut folded: Folded<F::State> = serde_json::from_str(&kept).unwrap();
            assert_eq!(fold_into(fold, &mut folded, event), Ok(()));
            kept = serde_json::to_string(&folded).unwrap();
        }
        let mut incremental: Folded<F::State> = serde_json::from_str(&kept).unwrap();
        assert_eq!(incremental.through, full.through);
        assert_eq!(
            serde_json::to_value(&incremental.state).unwrap(),
            serde_json::to_value(&full.state).unwrap()
        );
        let newest = sorted.last().unwrap();
        assert_eq!(fold_into(fold, &mut incremental, newest), Err(OutOfOrder));
        if sorted.len() > 1 {
            assert_eq!(
                fold_into(fold, &mut incremental, &sorted[0]),
                Err(OutOfOrder)
            );
        }
    }

    /// One generated event: which base event, which type, seconds after the first, which status,
    /// and whether the snapshot clears an optional field.
    type Pick = (usize, usize, i64, usize, bool);

    fn picks() -> impl Strategy<Value = Vec<Pick>> {
        proptest::collection::vec(
            (0..8usize, 0..8usize, 0..4i64, 0..8usize, any::<bool>()),
            1..14,
        )
    }

    /// Events made from `bases`, each a snapshot with its own id, type, time and status.
    fn events_from(
        bases: &[Event],
        types: &[&str],
        statuses: &[&str],
        cleared: &str,
        picks: &[Pick],
    ) -> Vec<Event> {
        picks
            .iter()
            .enumerate()
            .map(|(n, &(base, kind, after, status, clear))| {
                let base = &bases[base % bases.len()];
                let mut changes = json!({ "status": statuses[status % statuses.len()] });
                if clear {
                    changes[cleared] = Value::Null;
                }
                variant(
                    base,
                    &format!("evt_{n:02}"),
                    types[kind % types.len()],
                    1_700_000_000 + after,
                    changes,
                )
            })
            .collect()
    }

    fn bare(id: &str, event_type: &str, created: i64, object: Value) -> Event {
        Event {
            id: id.to_owned(),
            event_type: event_type.to_owned(),
            created,
            object,
        }
    }

    const BASIL: &str = "__basil__stripe-openapi-fixtures3-2025-03-31.basil";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn customers_fold_the_same_one_event_at_a_time(picks in picks()) {
            let bases = ["customer.created", "customer.updated"]
                .map(|t| event(&format!("{t}{BASIL}")));
            let types = ["customer.created", "customer.updated", "customer.deleted"];
            let events = events_from(&bases, &types, &["x"], "name", &picks);
            incremental_equals_full(&customers::Customer, &events);
        }

        #[test]
        fn subscriptions_fold_the_same_one_event_at_a_time(picks in picks()) {
            let bases = ["created", "updated", "deleted"]
                .map(|t| event(&format!("customer.subscription.{t}{BASIL}")));
            let types = ["created", "updated", "deleted", "paused", "resumed"]
                .map(|t| format!("customer.subscription.{t}"));
            let types: Vec<&str> = types.iter().map(String::as_str).collect();
            let statuses = ["incomplete", "trialing", "active", "past_due", "canceled", "paused"];
            let events = events_from(&bases, &types, &statuses, "cancel_at", &picks);
            incremental_equals_full(&subscriptions::Subscription, &events);
        }

        #[test]
        fn disputes_fold_the_same_one_event_at_a_time(picks in picks()) {
            let bases = ["created", "closed"]
                .map(|t| event(&format!("charge.dispute.{t}{BASIL}")));
            let types = ["created", "updated", "closed", "funds_withdrawn"]
                .map(|t| format!("charge.dispute.{t}"));
            let types: Vec<&str> = types.iter().map(String::as_str).collect();
            let statuses = ["needs_response", "under_review", "won", "lost", "warning_closed"];
            let events = events_from(&bases, &types, &statuses, "reason", &picks);
            incremental_equals_full(&disputes::Dispute, &events);
        }

        #[test]
        fn refunds_fold_the_same_one_event_at_a_time(picks in picks()) {
            let created = event(&format!("refund.created{BASIL}"));
            let id = created.object["id"].as_str().unwrap().to_owned();
            let bases = [created];
            let types = ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"];
            let statuses = ["pending", "requires_action", "succeeded", "failed", "canceled"];
            let events = events_from(&bases, &types, &statuses, "reason", &picks);
            incremental_equals_full(&refunds::Refund(id), &events);
        }

        #[test]
        fn prices_and_products_fold_the_same_one_event_at_a_time(picks in picks()) {
            let actions = ["created", "updated", "deleted"];
            let prices: Vec<Event> = picks
                .iter()
                .enumerate()
                .map(|(n, &(amount, action, after, _, active))| {
                    let plan = amount % 2 == 0;
                    let object = if plan {
                        json!({"id": "plan_1", "amount": amount, "interval": "month", "active": active})
                    } else {
                        json!({"id": "price_1", "unit_amount": amount, "nickname": null,
                               "recurring": {"interval": "year", "interval_count": 1}})
                    };
                    let family = if plan { "plan" } else { "price" };
                    let action = actions[action % 3];
                    bare(&format!("evt_{n:02}"), &format!("{family}.{action}"), 1_700_000_000 + after, object)
                })
                .collect();
            incremental_equals_full(&catalog::Price, &prices);
            let products: Vec<Event> = picks
                .iter()
                .enumerate()
                .map(|(n, &(name, action, after, _, active))| {
                    let object = json!({"id": "prod_1", "name": format!("P{name}"), "active": active});
                    let action = actions[action % 3];
                    bare(&format!("evt_{n:02}"), &format!("product.{action}"), 1_700_000_000 + after, object)
                })
                .collect();
            incremental_equals_full(&catalog::Product, &products);
        }
    }
}
