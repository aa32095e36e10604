//! Invariant 4: the order Stripe delivers events in does not matter. For each story in
//! `fixtures/stripe/stories`, hundreds of random delivery orders, with random duplicates and the
//! apply worker running at random moments, must end in exactly the ledger of in-order delivery.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use billmirror::ledger;
use billmirror::storage::snapshot::snapshot;
use billmirror::storage::{events, DbConnection};
use billmirror::webhook::{self, Envelope};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::on_both_backends;
use crate::support::TestDb;

const CASES_PER_STORY: u32 = 100;

struct Story {
    name: String,
    events: Vec<String>,
}

fn stories() -> Vec<Story> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/stripe/stories");
    let mut stories: Vec<Story> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|path| {
            let story: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            Story {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                events: story["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| serde_json::to_string_pretty(e).unwrap())
                    .collect(),
            }
        })
        .collect();
    stories.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(stories.len() >= 3, "expected the stories in {dir}");
    stories
}

/// Stores one delivery the way ingest does (a duplicate is recognised and changes nothing).
fn deliver(conn: &mut DbConnection, connection_id: &str, body: &str) {
    let envelope = Envelope::parse(body.as_bytes()).unwrap();
    let maps = ledger::maps(&envelope.event_type);
    let row = webhook::inbox_row(connection_id, envelope, body.to_owned(), "test", None, maps);
    events::insert_new(conn, [&row]).unwrap();
}

fn apply_all(conn: &mut DbConnection) {
    loop {
        let pass =
            ledger::worker::apply_due(conn, Default::default(), Duration::from_millis(10)).unwrap();
        assert_eq!(pass.failed, 0, "an event of a story failed to apply");
        if pass.applied == 0 {
            return;
        }
    }
}

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

fn new_connection(conn: &mut DbConnection) -> String {
    let id = format!("conn_{}", CONNECTIONS.fetch_add(1, Ordering::Relaxed));
    events::ensure_connection(
        conn,
        &id,
        "test",
        "test",
        billmirror::domain::states::ConnectionOrigin::Api,
    )
    .unwrap();
    id
}

/// A delivery plan: the order of deliveries (indices into the story, each event at least once)
/// and, after each delivery, whether the apply worker runs.
fn plan(events: usize) -> impl Strategy<Value = (Vec<usize>, Vec<bool>)> {
    let deliveries = proptest::collection::vec(0..events, 0..events).prop_flat_map(move |extra| {
        let mut all: Vec<usize> = (0..events).collect();
        all.extend(extra);
        Just(all).prop_shuffle()
    });
    deliveries.prop_flat_map(|order| {
        let n = order.len();
        (Just(order), proptest::collection::vec(any::<bool>(), n))
    })
}

/// Event `n` of one long-lived subscription, `created` seconds after a fixed moment.
fn subscription_event(template: &Value, n: usize, created: i64, status: &str) -> String {
    let mut event = template.clone();
    event["id"] = Value::from(format!("evt_long_{n:06}"));
    event["created"] = Value::from(1_700_000_000 + created);
    let object = &mut event["data"]["object"];
    object["id"] = Value::from("sub_long");
    object["status"] = Value::from(status);
    object["cancel_at_period_end"] = Value::from(n.is_multiple_of(2));
    serde_json::to_string_pretty(&event).unwrap()
}

on_both_backends! {
    /// Late events on an object with more events than a snapshot's interval are re-folded from a
    /// snapshot of its state, not its first event; the ledger is still the in-order one.
    async fn late_events_folded_on_from_a_snapshot_give_the_in_order_ledger(backend: Backend) {
        let db = TestDb::create(backend);
        let pool = db.open_migrated();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.blocking().unwrap();
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/stripe/events/customer.subscription.updated__basil__stripe-openapi-fixtures3-2025-03-31.basil.json");
            let template: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let history = 2 * ledger::fold::SNAPSHOT_EVERY as usize + 40;
            let mut all: Vec<String> = (0..history)
                .map(|n| subscription_event(&template, n, n as i64 * 2, "active"))
                .collect();
            // Late: one between the two snapshots, one just before the newest that cancels the
            // subscription for good, one older than all.
            let late = [
                subscription_event(&template, 900_001, 700, "active"),
                subscription_event(&template, 900_002, history as i64 * 2 - 3, "canceled"),
                subscription_event(&template, 900_003, -5, "active"),
            ];

            let late_connection = new_connection(&mut conn);
            for chunk in all.chunks(100) {
                for body in chunk {
                    deliver(&mut conn, &late_connection, body);
                }
                apply_all(&mut conn);
            }
            for body in &late {
                deliver(&mut conn, &late_connection, body);
                apply_all(&mut conn);
            }

            let in_order = new_connection(&mut conn);
            all.extend(late.iter().cloned());
            all.sort_by_key(|body| serde_json::from_str::<Value>(body).unwrap()["created"].as_i64());
            for chunk in all.chunks(100) {
                for body in chunk {
                    deliver(&mut conn, &in_order, body);
                }
                apply_all(&mut conn);
            }
            let expected = snapshot(&mut conn, &in_order).unwrap();
            assert_eq!(expected["subscriptions"][0]["status"], "canceled", "{expected}");
            assert_eq!(snapshot(&mut conn, &late_connection).unwrap(), expected);
        })
        .await
        .unwrap();
    }

    /// A claim slower than the batch time (a large backlog) must still make progress.
    async fn a_pass_without_time_left_still_applies_an_event(backend: Backend) {
        let db = TestDb::create(backend);
        let pool = db.open_migrated();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.blocking().unwrap();
            let connection = new_connection(&mut conn);
            for body in &stories()[0].events[..3] {
                deliver(&mut conn, &connection, body);
            }
            for _ in 0..3 {
                let pass = ledger::worker::apply_due(&mut conn, Default::default(), Duration::ZERO).unwrap();
                assert_eq!(pass.applied, 1, "{pass:?}");
            }
        })
        .await
        .unwrap();
    }

    async fn any_delivery_order_gives_the_in_order_ledger(backend: Backend) {
        let db = TestDb::create(backend);
        let pool = db.open_migrated();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.blocking().unwrap();
            for story in stories() {
                let in_order = new_connection(&mut conn);
                for body in &story.events {
                    deliver(&mut conn, &in_order, body);
                    apply_all(&mut conn);
                }
                let expected = snapshot(&mut conn, &in_order).unwrap();
                assert!(!expected["invoices"].as_array().unwrap().is_empty(), "{}: the story reaches the ledger", story.name);

                let mut runner = TestRunner::new(Config { cases: CASES_PER_STORY, failure_persistence: None, ..Config::default() });
                runner
                    .run(&plan(story.events.len()), |(order, apply_after)| {
                        let mut conn = pool.blocking().unwrap();
                        let connection = new_connection(&mut conn);
                        for (index, apply) in order.iter().zip(apply_after) {
                            deliver(&mut conn, &connection, &story.events[*index]);
                            if apply {
                                apply_all(&mut conn);
                            }
                        }
                        apply_all(&mut conn);
                        let got = snapshot(&mut conn, &connection).unwrap();
                        prop_assert_eq!(&got, &expected, "story {}, delivery order {:?}", story.name, order);
                        Ok(())
                    })
                    .unwrap();
            }
        })
        .await
        .unwrap();
    }
}
