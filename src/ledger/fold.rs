//! Folding an object's events one at a time, so applying an event costs the same however many
//! events the object already has.
//!
//! A kind's fold is a left fold over its events in fold order ([`Position`]): a start
//! state, a step per event, and a finish that turns the state into the stored fields. The state
//! is kept together with the position of the newest event it includes ([`Folded`]). An event that
//! sorts after that position is stepped into the state; an older one (it arrived out of order, or
//! is replayed) cannot be, and the caller re-folds the object instead: from the newest snapshot
//! of the state (kept every [`SNAPSHOT_EVERY`] events) that sorts before the late event, or from
//! the start when there is none. Every way gives the same state as folding the whole set at once,
//! so the result still depends only on the set of events (promise 4 in docs/ARCHITECTURE.md).

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
    /// The event's `created`, in Unix seconds.
    pub fn created(&self) -> i64 {
        self.created
    }

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

/// How many events apart snapshots of a fold's state are kept: a late event re-folds at most
/// about this many events more than those that sort after it.
pub const SNAPSHOT_EVERY: u64 = 256;

/// A fold's state and the newest event it includes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Folded<S> {
    pub through: Option<Position>,
    /// How many events the state includes; it says when a snapshot is due. States kept before
    /// it was counted start at 0: the count then only shifts when snapshots are taken.
    #[serde(default)]
    pub events: u64,
    pub state: S,
}

impl<S> Folded<S> {
    /// The fold of no event.
    pub fn start<F: Fold<State = S>>(fold: &F) -> Folded<S> {
        Folded {
            through: None,
            events: 0,
            state: fold.start(),
        }
    }

    /// Whether this state is one to keep as a snapshot.
    pub fn snapshot_due(&self) -> bool {
        self.events > 0 && self.events.is_multiple_of(SNAPSHOT_EVERY)
    }
}

/// The event sorts before (or is) the newest event already folded: only a fold of the whole set
/// can take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder;

/// Folds every event of an object, in fold order whatever order they come in.
pub fn fold_all<F: Fold>(fold: &F, events: &mut [Event]) -> Folded<F::State> {
    fold_on(fold, Folded::start(fold), events, |_| ())
}

/// Folds on from `from` (a snapshot, or the start) the events among `events` that sort after it,
/// in fold order whatever order they come in; the others are already in it. `snapshot` sees each
/// state along the way that is due to be kept as a snapshot.
pub fn fold_on<F: Fold>(
    fold: &F,
    from: Folded<F::State>,
    events: &[Event],
    mut snapshot: impl FnMut(&Folded<F::State>),
) -> Folded<F::State> {
    let mut positioned: Vec<(Position, &Event)> = events
        .iter()
        .map(|e| (Position::of(e, fold.rank(e)), e))
        .filter(|(p, _)| from.through.as_ref().is_none_or(|t| p > t))
        .collect();
    positioned.sort_by(|a, b| a.0.cmp(&b.0));
    let mut folded = from;
    for (position, event) in positioned {
        fold.step(&mut folded.state, event);
        folded.through = Some(position);
        folded.events += 1;
        if folded.snapshot_due() {
            snapshot(&folded);
        }
    }
    folded
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
    folded.events += 1;
    Ok(())
}

/// A fresh fold of one event: an object seen for the first time.
pub fn fold_first<F: Fold>(fold: &F, event: &Event) -> Folded<F::State> {
    let mut folded = Folded::start(fold);
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
    use crate::ledger::{catalog, customers, disputes, invoices, payments, refunds, subscriptions};

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

    /// For a set of events and a point among them in fold order: folding on from a snapshot (kept
    /// as text) of the events before that point, over the events read from the snapshot's second
    /// on, in the order they come, gives the fold of the whole set, as `apply::refold` needs.
    fn on_from_snapshot_equals_full<F: Fold>(fold: &F, events: &[Event], point: usize) {
        let full = fold_all(fold, &mut events.to_vec());
        let mut sorted = events.to_vec();
        sorted.sort_by_cached_key(|e| Position::of(e, fold.rank(e)));
        let point = point % (sorted.len() + 1);
        let snapshot = fold_all(fold, &mut sorted[..point].to_vec());
        let text = serde_json::to_string(&snapshot).unwrap();
        let snapshot: Folded<F::State> = serde_json::from_str(&text).unwrap();
        let since = snapshot.through.as_ref().map(Position::created);
        let read: Vec<Event> = events
            .iter()
            .filter(|e| since.is_none_or(|s| e.created >= s))
            .cloned()
            .collect();
        let on = fold_on(fold, snapshot, &read, |_| ());
        assert_eq!((&on.through, on.events), (&full.through, full.events));
        assert_eq!(
            serde_json::to_value(&on.state).unwrap(),
            serde_json::to_value(&full.state).unwrap()
        );
    }

    /// Snapshots are taken every `SNAPSHOT_EVERY` events and each is the fold of the events before
    /// it; a late event re-folded on from the newest snapshot before it gives the fold of all.
    #[test]
    fn snapshots_are_the_folds_of_the_events_before_them_and_late_events_fold_on_from_them() {
        let count = 2 * SNAPSHOT_EVERY as usize + 90;
        let product = |n: usize, created: i64| {
            let object =
                json!({"id": "prod_1", "name": format!("P{n}"), "active": !n.is_multiple_of(3)});
            bare(&format!("evt_{n:04}"), "product.updated", created, object)
        };
        // Delivered out of order, several to a second.
        let events: Vec<Event> = (0..count)
            .map(|n| product(n, 1_700_000_000 + ((n * 5) % count) as i64 / 3))
            .collect();
        let mut snapshots = Vec::new();
        let all = fold_on(
            &catalog::Product,
            Folded::start(&catalog::Product),
            &events,
            |s| snapshots.push(serde_json::to_string(s).unwrap()),
        );
        assert_eq!(all.events, count as u64);
        assert_eq!(snapshots.len(), 2);
        let mut sorted = events.clone();
        sorted.sort_by_cached_key(|e| Position::of(e, catalog::Product.rank(e)));
        for text in &snapshots {
            let snapshot: Folded<crate::storage::ledger::ProductFields> =
                serde_json::from_str(text).unwrap();
            let before = fold_all(
                &catalog::Product,
                &mut sorted[..snapshot.events as usize].to_vec(),
            );
            assert_eq!(snapshot.through, before.through);
            assert_eq!(
                serde_json::to_value(&snapshot.state).unwrap(),
                serde_json::to_value(&before.state).unwrap()
            );
        }
        // A late event between the two snapshots: on from the first, reading from its second.
        let late = product(9_999, sorted[300].created);
        let first: Folded<crate::storage::ledger::ProductFields> =
            serde_json::from_str(&snapshots[0]).unwrap();
        let late_position = Position::of(&late, catalog::Product.rank(&late));
        assert!(first.through.as_ref().is_some_and(|t| *t < late_position));
        let since = first.through.as_ref().unwrap().created();
        let mut read: Vec<Event> = events
            .iter()
            .filter(|e| e.created >= since)
            .cloned()
            .collect();
        assert!(
            read.len() < count - SNAPSHOT_EVERY as usize + 3,
            "only the events from the snapshot on"
        );
        read.push(late.clone());
        let mut taken = Vec::new();
        let on = fold_on(&catalog::Product, first, &read, |s| taken.push(s.events));
        let mut with_late = events.clone();
        with_late.push(late);
        let full = fold_all(&catalog::Product, &mut with_late);
        assert_eq!((&on.through, on.events), (&full.through, full.events));
        assert_eq!(
            serde_json::to_value(&on.state).unwrap(),
            serde_json::to_value(&full.state).unwrap()
        );
        assert_eq!(
            taken,
            [2 * SNAPSHOT_EVERY],
            "the re-fold keeps the snapshot it passes"
        );
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

    /// Payment events from the real payloads: a base (PaymentIntent, charge or invoice, basil and
    /// older versions), a type of its family, a time, a status, and a refund or a cleared error.
    fn payment_events(picks: &[Pick]) -> Vec<Event> {
        let families: [(&str, &[&str]); 3] = [
            (
                "payment_intent",
                &[
                    "created",
                    "processing",
                    "succeeded",
                    "payment_failed",
                    "canceled",
                ],
            ),
            (
                "charge",
                &["succeeded", "failed", "updated", "refunded", "captured"],
            ),
            ("invoice", &["paid", "payment_succeeded", "updated"]),
        ];
        let bases: Vec<(Event, usize)> = [
            (
                "payment_intent.succeeded__basil__stripe-openapi-fixtures3-2025-03-31.basil",
                0,
            ),
            (
                "payment_intent.payment_failed__basil__stripe-openapi-fixtures3-2025-03-31.basil",
                0,
            ),
            (
                "payment_intent.succeeded__old__stripe-openapi-fixtures3-2020-08-27",
                0,
            ),
            (
                "payment_intent.payment_failed__old__stripe-sync-engine-2020-03-02",
                0,
            ),
            (
                "charge.succeeded__basil__stripe-openapi-fixtures3-2025-03-31.basil",
                1,
            ),
            (
                "charge.failed__basil__stripe-openapi-fixtures3-2025-03-31.basil",
                1,
            ),
            (
                "charge.succeeded__old__stripe-openapi-fixtures3-2020-08-27",
                1,
            ),
            (
                "invoice.paid__basil__stripe-openapi-fixtures3-2025-03-31.basil",
                2,
            ),
        ]
        .into_iter()
        .map(|(name, family)| (event(name), family))
        .collect();
        let statuses = [
            "succeeded",
            "failed",
            "pending",
            "canceled",
            "requires_payment_method",
        ];
        picks
            .iter()
            .enumerate()
            .map(|(n, &(base, kind, after, status, clear))| {
                let (base, family) = &bases[base % bases.len()];
                let (name, actions) = families[*family];
                let mut changes = json!({ "status": statuses[status % statuses.len()] });
                if clear {
                    changes["last_payment_error"] = Value::Null;
                } else if *family == 1 {
                    changes["amount_refunded"] = json!(after * 40);
                }
                let event_type = format!("{name}.{}", actions[kind % actions.len()]);
                variant(
                    base,
                    &format!("evt_{n:02}"),
                    &event_type,
                    1_700_000_000 + after,
                    changes,
                )
            })
            .collect()
    }

    /// Invoice events from the real payloads (several versions), an invoice payment among them;
    /// some show their lines as a first page only.
    fn invoice_events(picks: &[Pick]) -> Vec<Event> {
        let mut bases: Vec<Event> = [
            "invoice.created__basil__stripe-openapi-fixtures3-2025-03-31.basil",
            "invoice.finalized__basil__stripe-openapi-fixtures3-2025-03-31.basil",
            "invoice.paid__basil__stripe-openapi-fixtures3-2025-03-31.basil",
            "invoice.payment_failed__basil__stripe-openapi-fixtures3-2025-03-31.basil",
            "invoice.voided__basil__stripe-openapi-fixtures3-2025-03-31.basil",
            "invoice.paid__basil__zulip-recorded-2025-04-30.basil",
            "invoice.payment_succeeded__basil__stripe-openapi-fixtures3-2026-07-29.dahlia",
        ]
        .map(event)
        .to_vec();
        bases.push(bare(
            "evt_base",
            "invoice_payment.paid",
            1_700_000_000,
            json!({"object": "invoice_payment", "invoice": "in_1", "amount_paid": 1000,
                   "status_transitions": {"paid_at": 1_700_000_002}}),
        ));
        let types = [
            "created",
            "finalized",
            "updated",
            "paid",
            "payment_failed",
            "voided",
            "marked_uncollectible",
            "payment_succeeded",
        ]
        .map(|t| format!("invoice.{t}"));
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        let statuses = ["draft", "open", "paid", "void", "uncollectible"];
        let mut events = events_from(&bases, &types, &statuses, "customer_email", picks);
        for (event, &(base, _, after, _, _)) in events.iter_mut().zip(picks) {
            if base % bases.len() == bases.len() - 1 {
                event.event_type = "invoice_payment.paid".to_owned();
            }
            // A first page of lines (Stripe says `has_more`), shorter than the whole list.
            if after % 2 == 1 && event.object["lines"].is_object() {
                event.object["lines"]["has_more"] = json!(true);
                if let Some(data) = event.object["lines"]["data"].as_array_mut() {
                    data.truncate(after as usize % 2);
                }
            }
        }
        events
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn payments_fold_the_same_one_event_at_a_time_and_from_a_snapshot(picks in picks(), point in 0..15usize) {
            let events = payment_events(&picks);
            incremental_equals_full(&payments::Payment, &events);
            on_from_snapshot_equals_full(&payments::Payment, &events, point);
            // The attempts written come out of the state: the same either way.
            let mut sorted = events.clone();
            sorted.sort_by_cached_key(|e| Position::of(e, payments::Payment.rank(e)));
            let mut one_by_one = fold_first(&payments::Payment, &sorted[0]);
            for event in &sorted[1..] {
                fold_into(&payments::Payment, &mut one_by_one, event).unwrap();
            }
            let full = fold_all(&payments::Payment, &mut events.clone());
            let (paid, tried) = payments::Payment.finish(&one_by_one.state);
            let (paid_full, tried_full) = payments::Payment.finish(&full.state);
            prop_assert_eq!(tried, tried_full);
            prop_assert_eq!((paid.status, paid.amount, paid.amount_refunded), (paid_full.status, paid_full.amount, paid_full.amount_refunded));
        }

        #[test]
        fn invoices_fold_the_same_one_event_at_a_time_and_from_a_snapshot(picks in picks(), point in 0..15usize) {
            let events = invoice_events(&picks);
            let invoice = invoices::Invoice::new("in_1", Vec::new());
            incremental_equals_full(&invoice, &events);
            on_from_snapshot_equals_full(&invoice, &events, point);
        }

        #[test]
        fn subscriptions_fold_the_same_from_a_snapshot(picks in picks(), point in 0..15usize) {
            let bases = ["created", "updated", "deleted"]
                .map(|t| event(&format!("customer.subscription.{t}{BASIL}")));
            let types = ["created", "updated", "deleted", "paused", "resumed"]
                .map(|t| format!("customer.subscription.{t}"));
            let types: Vec<&str> = types.iter().map(String::as_str).collect();
            let statuses = ["incomplete", "trialing", "active", "past_due", "canceled", "paused"];
            let events = events_from(&bases, &types, &statuses, "cancel_at", &picks);
            on_from_snapshot_equals_full(&subscriptions::Subscription, &events, point);
        }

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
