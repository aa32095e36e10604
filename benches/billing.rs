//! `make bench` (second part): the billing-context lookup on a large ledger, and the backfill
//! from a fake Stripe, on SQLite and PostgreSQL.
//!
//! Lookup: 100,000 customers, 1,000,000 payments, 100,000 subscriptions, 200,000 invoices,
//! 20,000 refunds and 2,000 disputes are generated in the database; then 2,000 lookups of random
//! customers' emails are timed in-process (the queries alone) and over HTTP against the release
//! binary (token check, queries, JSON). Backfill: 100,000 customers listed from the fake Stripe of
//! the test suite over real HTTP, without a rate limit and with 25 requests/s. `BENCH_LOOKUPS`,
//! `BENCH_BACKFILL_OBJECTS` and `BENCH_BACKENDS` change the sizes and backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a failure should stop it loudly

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/api/support/fake_stripe/mod.rs"]
#[allow(dead_code)]
mod fake_stripe;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use billmirror::config::Config;
use billmirror::connections::NewConnection;
use billmirror::domain::Secret;
use billmirror::storage::{events, DatabaseTarget, Db, DbConnection};
use billmirror::stripe::report::KeyInput;
use diesel::connection::SimpleConnection;
use serde_json::json;

use common::{drop_database, fresh_database, list_from_env, number_from_env};

const MASTER_KEY: &str = "1f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";
const ADMIN: &str = "bm_benchmark_admin_token_000000000000";
const CUSTOMERS: i64 = 100_000;
const PAYMENTS: i64 = 1_000_000;

fn main() {
    let lookups = number_from_env("BENCH_LOOKUPS", 2000);
    let objects = number_from_env("BENCH_BACKFILL_OBJECTS", 100_000);
    let backends = list_from_env("BENCH_BACKENDS", "sqlite,postgres");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "lookup,backfill".into());
    if parts.contains("lookup") {
        lookup_table(&runtime, &backends, lookups);
    }
    if parts.contains("backfill") {
        backfill_table(&runtime, &backends, objects);
    }
}

fn lookup_table(runtime: &tokio::runtime::Runtime, backends: &[String], lookups: usize) {
    println!("| backend | generate s | query p50 ms | query p99 ms | HTTP p50 ms | HTTP p99 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for backend in backends {
        let (target, _guard) = fresh_database(backend, "lookup");
        let db = Db::connect(&target, 4).unwrap();
        db.migrate().unwrap();
        let started = Instant::now();
        generate(&mut db.blocking().unwrap());
        let generated = started.elapsed().as_secs_f64();
        let query = runtime.block_on(time_queries(&db, lookups));
        let http = runtime.block_on(time_http(&target, lookups));
        drop(db);
        drop_database(&target);
        println!(
            "| {backend} | {generated:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            query.0, query.1, http.0, http.1
        );
    }
    println!();
}

fn backfill_table(runtime: &tokio::runtime::Runtime, backends: &[String], objects: usize) {
    println!("| backend | rate limit | objects | requests | backfill s | objects/s | limit's bound objects/s | apply afterwards s | applied/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for backend in backends {
        for limit in [0u32, 25] {
            let row = runtime.block_on(time_backfill(backend, limit, objects));
            println!("{row}");
        }
    }
}

/// The shared database server or a temporary SQLite file; dropped with the guard.
/// Rows made by the database itself from a number sequence: fast, and the same on both backends.
fn generate(conn: &mut DbConnection) {
    events::ensure_connection(
        conn,
        "bench",
        "bench",
        "test",
        billmirror::domain::states::ConnectionOrigin::Api,
    )
    .unwrap();
    let sqlite = conn.is_sqlite();
    let at = |n: &str| {
        if sqlite {
            format!("datetime(1700000000 + {n} * 60, 'unixepoch')")
        } else {
            format!("(to_timestamp(1700000000 + {n} * 60) AT TIME ZONE 'UTC')")
        }
    };
    let seq = |count: i64| {
        format!(
            "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < {})",
            count - 1
        )
    };
    let now = at("0");
    let statements = [
        format!("{} INSERT INTO customers (id, connection_id, stripe_id, email, email_normalized, name, deleted, stripe_created, observed_at, created_at, updated_at) \
                 SELECT 'cust_' || n, 'bench', 'cus_' || n, 'User' || n || '@Example.com', 'user' || n || '@example.com', 'User ' || n, FALSE, {}, {now}, {now}, {now} FROM seq", seq(CUSTOMERS), at("n")),
        format!("{} INSERT INTO payments (id, connection_id, stripe_id, payment_intent_id, charge_id, stripe_customer_id, amount, currency, status, method_type, card_brand, card_last4, amount_refunded, disputed, stripe_created, observed_at, created_at, updated_at) \
                 SELECT 'pay_' || n, 'bench', 'pi_' || n, 'pi_' || n, 'ch_' || n, 'cus_' || (n % {CUSTOMERS}), 1000 + n % 5000, 'usd', \
                 CASE WHEN n % 20 = 0 THEN 'failed' WHEN n % 50 = 1 THEN 'partially_refunded' ELSE 'succeeded' END, 'card', 'visa', '4242', \
                 CASE WHEN n % 50 = 1 THEN 500 ELSE 0 END, n % 500 = 2, {}, {now}, {now}, {now} FROM seq", seq(PAYMENTS), at("n")),
        format!("{} INSERT INTO subscriptions (id, connection_id, stripe_id, stripe_customer_id, status, plan_name, billing_interval, amount, currency, current_period_end, cancel_at_period_end, observed_at, created_at, updated_at) \
                 SELECT 'subr_' || n, 'bench', 'sub_' || n, 'cus_' || n, 'active', 'Pro', 'month', 2900, 'usd', {}, FALSE, {now}, {now}, {now} FROM seq", seq(CUSTOMERS), at("n + 500000")),
        format!("{} INSERT INTO invoices (id, connection_id, stripe_id, origin, stripe_customer_id, customer_email, customer_email_normalized, currency, total, amount_due, amount_paid, amount_remaining, status, attempt_count, sync_state, observed_at, created_at, updated_at) \
                 SELECT 'inv_' || n, 'bench', 'in_' || n, 'stripe', 'cus_' || (n % {CUSTOMERS}), 'user' || (n % {CUSTOMERS}) || '@example.com', 'user' || (n % {CUSTOMERS}) || '@example.com', 'usd', 2900, 2900, 2900, 0, 'paid', 1, 'mirrored', {now}, {}, {now} FROM seq", seq(2 * CUSTOMERS), at("n")),
        format!("{} INSERT INTO refunds (id, connection_id, stripe_id, charge_id, payment_intent_id, amount, currency, reason, status, stripe_created, observed_at, created_at, updated_at) \
                 SELECT 'ref_' || n, 'bench', 're_' || n, 'ch_' || (n * 50 + 1), 'pi_' || (n * 50 + 1), 500, 'usd', 'requested_by_customer', 'succeeded', {}, {now}, {now}, {now} FROM seq", seq(PAYMENTS / 50), at("n")),
        format!("{} INSERT INTO disputes (id, connection_id, stripe_id, charge_id, payment_intent_id, amount, currency, reason, status, evidence_due_by, stripe_created, observed_at, created_at, updated_at) \
                 SELECT 'dis_' || n, 'bench', 'dp_' || n, 'ch_' || (n * 500 + 2), 'pi_' || (n * 500 + 2), 1000, 'usd', 'fraudulent', 'needs_response', {}, {}, {now}, {now}, {now} FROM seq", seq(PAYMENTS / 500), at("n"), at("n")),
    ];
    for sql in statements {
        conn.batch_execute(&sql).unwrap();
    }
    // Planner statistics, as a long-running ledger has them.
    conn.batch_execute("ANALYZE").unwrap();
}

/// A random customer's email, from a fixed xorshift sequence.
fn emails(count: usize) -> Vec<String> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("user{}@example.com", state % CUSTOMERS as u64)
        })
        .collect()
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

async fn time_queries(db: &Db, lookups: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(lookups);
    for email in emails(lookups) {
        let started = Instant::now();
        let context = billmirror::billing::context(db, vec![email], "http://bench")
            .await
            .unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(context["customers"].as_array().unwrap().len(), 1);
        assert!(context["payments"].as_array().unwrap().len() >= 9);
    }
    percentiles(samples)
}

async fn time_http(target: &DatabaseTarget, lookups: usize) -> (f64, f64) {
    let url = match target {
        DatabaseTarget::Sqlite(path) => format!("sqlite://{path}"),
        DatabaseTarget::Postgres(url) => url.clone(),
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_billmirror"))
        .env_clear()
        .env("DATABASE_URL", url)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .env("BILLMIRROR_ADMIN_TOKEN", ADMIN)
        .env("BILLMIRROR_MASTER_KEY", MASTER_KEY)
        .arg("serve")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut samples = Vec::with_capacity(lookups);
    for email in emails(lookups) {
        let started = Instant::now();
        let response = client
            .get(format!("{base}/api/billing-context?email={email}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    percentiles(samples)
}

async fn time_backfill(backend: &str, limit: u32, objects: usize) -> String {
    let fake = fake_stripe::FakeStripe::start().await;
    let customers: Vec<_> = (0..objects)
        .map(|n| json!({"id": format!("cus_b{n:07}"), "object": "customer", "email": format!("b{n}@example.com"), "name": "Backfill", "created": 1_700_000_000 + n as i64}))
        .collect();
    fake.seed(fake_stripe::ACCOUNT, "customers", customers);
    let (target, _guard) = fresh_database(backend, "backfill");
    let url = match &target {
        DatabaseTarget::Sqlite(path) => format!("sqlite://{path}"),
        DatabaseTarget::Postgres(url) => url.clone(),
    };
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", url.as_str()),
        ("BILLMIRROR_MASTER_KEY", MASTER_KEY),
        ("STRIPE_API_BASE", fake.base_url.as_str()),
        ("STRIPE_RATE_LIMIT", &limit.to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_vars(&vars).unwrap();
    let db = Db::connect(&target, 4).unwrap();
    db.migrate().unwrap();
    let connections = billmirror::app::connections(&config, &db, Default::default()).unwrap();
    let view = connections
        .create(
            NewConnection {
                name: None,
                keys: KeyInput {
                    secret_key: Some(Secret::new(fake_stripe::SECRET_KEY)),
                    ..KeyInput::default()
                },
            },
            "bench",
        )
        .await
        .unwrap();
    let before = fake.calls().len();
    // First the backfill alone (Stripe, our code, the inserts), then the ledger folding it in.
    let options = billmirror::sync::BackfillOptions {
        only: vec!["customers".into()],
        since: None,
    };
    let started = Instant::now();
    let reports = billmirror::sync::backfill(&db, &connections, &view.id, &options, |_| {})
        .await
        .unwrap();
    let backfill_s = started.elapsed().as_secs_f64();
    assert_eq!(reports[0].outcome, "complete");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stored = std::sync::Arc::new(tokio::sync::Notify::new());
    let workers = if backend == "sqlite" { 1 } else { 4 };
    let applying = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            tokio::spawn(billmirror::ledger::worker::run(
                db.clone(),
                stored.clone(),
                Default::default(),
                stopped.clone(),
            ))
        })
        .collect();
    loop {
        let pending = db.run(events::count_pending).await.unwrap();
        if pending == 0 {
            break;
        }
        stored.notify_waiters();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let applied_s = applying.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let requests = fake.calls().len() - before;
    let bound = if limit == 0 {
        "none".to_owned()
    } else {
        format!("{}", limit as usize * 100)
    };
    let objects = reports[0].objects as f64;
    drop_database(&target);
    let limit = if limit == 0 {
        "off".to_owned()
    } else {
        format!("{limit}/s")
    };
    format!(
        "| {backend} | {limit} | {objects} | {requests} | {backfill_s:.1} | {:.0} | {bound} | {applied_s:.1} | {:.0} |",
        objects / backfill_s,
        objects / applied_s
    )
}
