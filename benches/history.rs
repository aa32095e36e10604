//! `make bench`, third part: what applying one event costs as its object's history grows.
//!
//! In-process, on a fresh database per backend: one subscription receives `BENCH_HISTORY`
//! (default 10,000) `customer.subscription.updated` events (the real basil payload, 5 KB, one
//! second apart), delivered in order or shuffled and applied by the apply worker's own
//! `apply_due`. Then it times applying one more event, newer than all (the 10,001st), against
//! applying the first event of a fresh subscription, one event a few seconds older than the newest
//! (it arrived late: it re-folds from the newest snapshot of the state before it, at most
//! `ledger::fold::SNAPSHOT_EVERY` events back, plus the events after it), and one event older than
//! all the others (late by the whole history: it re-folds all of it). Each figure is the median of `SAMPLES` single-event passes (insert untimed,
//! `apply_due` timed: claim, fold, upserts, mark applied, commit), with the statements each pass
//! sends, counted by diesel's instrumentation. `BENCH_BACKENDS=postgres`, `BENCH_ORDERS=in-order`
//! run a subset (a shuffled history makes most events late: loading it costs the square of its
//! length).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a failure should stop it loudly

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use billmirror::domain::states::ConnectionOrigin;
use billmirror::ledger;
use billmirror::storage::{events, Db, DbConnection};
use billmirror::webhook::{self, Envelope};
use diesel::connection::{Connection, InstrumentationEvent};
use serde_json::Value;

#[path = "common/mod.rs"]
mod common;
use common::{drop_database, fresh_database, list_from_env, number_from_env};

const SAMPLES: usize = 21;
const CONNECTION: &str = "conn_history";

fn main() {
    let history = number_from_env("BENCH_HISTORY", 10_000);
    let template = template();
    println!("| backend | history order | first event ms | statements | event {} (newest) ms | statements | ratio | late, near the newest ms | statements | late, oldest ms | statements |", history + 1);
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for backend in list_from_env("BENCH_BACKENDS", "sqlite,postgres") {
        for order in list_from_env("BENCH_ORDERS", "in-order,shuffled") {
            let shuffled = order == "shuffled";
            let (target, _guard) = fresh_database(&backend, "history");
            let db = Db::connect(&target, 2).unwrap();
            db.migrate().unwrap();
            let mut conn = db.blocking().unwrap();
            let statements = count_statements(&mut conn);
            events::ensure_connection(
                &mut conn,
                CONNECTION,
                "bench",
                "test",
                ConnectionOrigin::Api,
            )
            .unwrap();

            // The first event of fresh subscriptions.
            let first: Vec<(f64, usize)> = (0..SAMPLES)
                .map(|n| {
                    let body = event(&template, &format!("sub_fresh_{n}"), n, 0);
                    time_one(&mut conn, &statements, &body)
                })
                .collect();

            // The history of one subscription.
            let mut order: Vec<usize> = (0..history).collect();
            if shuffled {
                shuffle(&mut order);
            }
            for chunk in order.chunks(500) {
                for &n in chunk {
                    deliver(
                        &mut conn,
                        &event(&template, "sub_long", n, n as i64 + 1_000),
                    );
                }
                apply_all(&mut conn);
            }
            let newest: Vec<(f64, usize)> = (0..SAMPLES)
                .map(|n| {
                    let n = history + n;
                    let body = event(&template, "sub_long", n, n as i64 + 1_000);
                    time_one(&mut conn, &statements, &body)
                })
                .collect();
            // Late events a few seconds before the newest (and the 21 just added): bounded by a
            // snapshot. Fewer samples.
            let near: Vec<(f64, usize)> = (0..5)
                .map(|n| {
                    let created = (history + n) as i64 + 1_000 - 10;
                    let body = event(&template, "sub_long", 2_000_000 + n, created);
                    time_one(&mut conn, &statements, &body)
                })
                .collect();
            // Late events, older than every other: they need the whole history.
            let late: Vec<(f64, usize)> = (0..5)
                .map(|n| {
                    let body = event(&template, "sub_long", 1_000_000 + n, n as i64);
                    time_one(&mut conn, &statements, &body)
                })
                .collect();
            drop(conn);
            drop(db);
            drop_database(&target);
            let (first_ms, first_statements) = median(first);
            let (newest_ms, newest_statements) = median(newest);
            let (near_ms, near_statements) = median(near);
            let (late_ms, late_statements) = median(late);
            println!(
                "| {backend} | {} | {first_ms:.2} | {first_statements} | {newest_ms:.2} | {newest_statements} | {:.2}× | {near_ms:.1} | {near_statements} | {late_ms:.1} | {late_statements} |",
                if shuffled { "shuffled" } else { "in order" },
                newest_ms / first_ms,
            );
        }
    }
}

/// Counts the statements the connection sends from now on.
fn count_statements(conn: &mut DbConnection) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    count
}

/// Stores one event, then times the pass that applies it; with the statements that pass sent.
fn time_one(conn: &mut DbConnection, statements: &AtomicUsize, body: &str) -> (f64, usize) {
    deliver(conn, body);
    let before = statements.load(Ordering::Relaxed);
    let started = Instant::now();
    let pass =
        ledger::worker::apply_due(conn, Default::default(), Duration::from_secs(10)).unwrap();
    let ms = started.elapsed().as_secs_f64() * 1_000.0;
    assert_eq!((pass.applied, pass.failed), (1, 0), "{pass:?}");
    (ms, statements.load(Ordering::Relaxed) - before)
}

fn apply_all(conn: &mut DbConnection) {
    loop {
        let pass =
            ledger::worker::apply_due(conn, Default::default(), Duration::from_secs(1)).unwrap();
        assert_eq!(pass.failed, 0);
        if pass.applied == 0 {
            return;
        }
    }
}

fn deliver(conn: &mut DbConnection, body: &str) {
    let envelope = Envelope::parse(body.as_bytes()).unwrap();
    let maps = ledger::maps(&envelope.event_type);
    let row = webhook::inbox_row(CONNECTION, envelope, body.to_owned(), "bench", None, maps);
    assert_eq!(events::insert_new(conn, [&row]).unwrap(), vec![true]);
}

fn template() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/stripe/events/customer.subscription.updated__basil__stripe-openapi-fixtures3-2025-03-31.basil.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Event `n` of subscription `subscription`, `created` seconds after a fixed moment, pretty-printed
/// as Stripe sends it.
fn event(template: &Value, subscription: &str, n: usize, created: i64) -> String {
    let mut event = template.clone();
    event["id"] = Value::from(format!("evt_{subscription}_{n:08}"));
    event["created"] = Value::from(1_700_000_000 + created);
    event["data"]["object"]["id"] = Value::from(subscription);
    event["data"]["object"]["quantity"] = Value::from(n % 7 + 1);
    serde_json::to_string_pretty(&event).unwrap()
}

/// A fixed-seed Fisher-Yates shuffle (xorshift), so runs shuffle alike.
fn shuffle(items: &mut [usize]) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

fn median(mut samples: Vec<(f64, usize)>) -> (f64, usize) {
    let mut statements: Vec<usize> = samples.iter().map(|s| s.1).collect();
    statements.sort_unstable();
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    (
        samples[samples.len() / 2].0,
        statements[statements.len() / 2],
    )
}
