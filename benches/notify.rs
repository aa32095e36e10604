//! `make bench` (fourth part): chat notifications under a renewal burst, on SQLite and PostgreSQL.
//!
//! The real app in-process (HTTP server, apply workers, notify runners) with one Slack app channel
//! at Slack's pace (60 messages a minute) pointed at the test suite's fake Slack over real HTTP,
//! and one rule for failed payments. First a few lone failures, one at a time; then
//! `BENCH_NOTIFY_EVENTS` (2,000) failing payments signed and posted over `BENCH_NOTIFY_SECONDS`
//! (10) at an even pace; then lone failures again once the channel is idle. Printed per backend:
//! the messages the fake received and their tightest spacing (at most 1 per second is the
//! channel's rate), the events those messages count (a message alone is 1, a digest says how many
//! it counts; all must be counted), and how long after its event was applied a lone event's
//! message reached the fake (< 2 s is the target). `BENCH_BACKENDS` picks the backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a failure should stop it loudly

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/api/support/fake_chat.rs"]
#[allow(dead_code)]
mod fake_chat;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use billmirror::config::Config;
use billmirror::domain::Role;
use billmirror::storage::{DatabaseTarget, Db};
use billmirror::webhook::signature::sign;
use fake_chat::{FakeChat, Request, BOT_TOKEN};
use serde_json::{json, Value};

const MASTER_KEY: &str = "1f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";
const WEBHOOK_SECRET: &str = "whsec_billmirror_bench_notify_0001";
const LONE_EVENTS: usize = 3;

fn main() {
    let events = common::number_from_env("BENCH_NOTIFY_EVENTS", 2000);
    let seconds = common::number_from_env("BENCH_NOTIFY_SECONDS", 10);
    let backends = common::list_from_env("BENCH_BACKENDS", "sqlite,postgres");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| backend | events | sent over s | messages | counted | min gap ms | most in 1 s | drained s | lone before p50/max ms | lone after p50/max ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for backend in &backends {
        let row = runtime.block_on(run(backend, events, seconds));
        println!("{row}");
    }
}

/// A running app over a fresh database.
struct Bench {
    base: String,
    client: reqwest::Client,
    db: Db,
    chat: FakeChat,
    target: DatabaseTarget,
    _dir: Option<tempfile::TempDir>,
    workers: billmirror::app::Workers,
}

async fn start(backend: &str) -> Bench {
    let (target, dir) = common::fresh_database(backend, "notify");
    let url = match &target {
        DatabaseTarget::Sqlite(path) => format!("sqlite://{path}"),
        DatabaseTarget::Postgres(url) => url.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_POOL_SIZE", "8"),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        (
            "STRIPE_PUBLISHABLE_KEY",
            "pk_test_billmirror0000000000000000",
        ),
        ("BILLMIRROR_MASTER_KEY", MASTER_KEY),
        ("STRIPE_API_BASE", "http://127.0.0.1:9"),
        ("PUBLIC_URL", "https://billmirror.example.com"),
        ("LOG_LEVEL", "warn"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_vars(&vars).unwrap();
    let db = Db::connect(&target, 8).unwrap();
    db.migrate().unwrap();
    let state = billmirror::app::state(config, db.clone()).await.unwrap();
    let workers = billmirror::app::Workers::start(&state);
    let server = billmirror::http::server(state, listener).unwrap();
    tokio::spawn(server);
    let chat = FakeChat::start().await;
    Bench {
        base,
        client: reqwest::Client::new(),
        db,
        chat,
        target,
        _dir: dir,
        workers,
    }
}

fn failing_payment(n: usize) -> String {
    let now = chrono::Utc::now().timestamp();
    json!({"id": format!("evt_bench_{n}"), "object": "event", "api_version": "2024-06-20",
        "created": now, "livemode": false, "type": "invoice.payment_failed",
        "data": {"object": {"id": format!("in_bench_{n}"), "object": "invoice", "status": "open",
            "currency": "usd", "customer": format!("cus_bench_{n}"), "customer_name": "Ada Lovelace",
            "customer_email": "ada@example.com", "number": format!("BENCH-{n}"),
            "amount_due": 1000 + (n as i64 * 37) % 90_000, "attempt_count": 1,
            "next_payment_attempt": now + 3 * 86_400, "subscription": format!("sub_bench_{n}")}}})
    .to_string()
}

async fn deliver(client: &reqwest::Client, base: &str, body: String) {
    let header = sign(
        WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    let answer = client
        .post(format!("{base}/webhooks/stripe"))
        .header("Stripe-Signature", header)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

/// Accepted posts to the channel.
fn posts(chat: &FakeChat) -> Vec<Request> {
    chat.to("/slack/api/chat.postMessage")
        .into_iter()
        .filter(Request::accepted)
        .collect()
}

/// How many events a Slack message counts: a digest says so in its context, any other is one.
fn counted(post: &Request) -> usize {
    let blocks = post.json["blocks"].to_string();
    let marker = " events counted in this message";
    match blocks.find(marker) {
        Some(end) => {
            let digits: String = blocks[..end]
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.chars().rev().collect::<String>().parse().unwrap()
        }
        None => 1,
    }
}

/// When the event was applied, as the ledger recorded it.
async fn applied_at(db: &Db, id: &str) -> chrono::NaiveDateTime {
    let id = id.to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let key = id.clone();
        let at: Option<chrono::NaiveDateTime> = db
            .run(move |conn| {
                use billmirror::storage::schema::webhook_events::dsl::*;
                use diesel::prelude::*;
                Ok(webhook_events
                    .filter(stripe_event_id.eq(key))
                    .select(applied_at)
                    .first::<Option<chrono::NaiveDateTime>>(conn)
                    .optional()?
                    .flatten())
            })
            .await
            .unwrap();
        if let Some(at) = at {
            return at;
        }
        assert!(Instant::now() < deadline, "{id} was never applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Posts lone failures one at a time and returns, for each, the milliseconds between its event
/// being applied and its message reaching the fake.
async fn lone_events(bench: &Bench, first: usize) -> Vec<f64> {
    let mut latencies = Vec::new();
    for n in first..first + LONE_EVENTS {
        let before = posts(&bench.chat).len();
        deliver(&bench.client, &bench.base, failing_payment(n)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let post = loop {
            if let Some(post) = posts(&bench.chat).into_iter().nth(before) {
                break post;
            }
            assert!(
                Instant::now() < deadline,
                "the lone event {n} was never posted"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert_eq!(counted(&post), 1, "a lone event is a message of its own");
        let received = SystemTime::now() - post.at.elapsed();
        let received = chrono::DateTime::<chrono::Utc>::from(received).naive_utc();
        let applied = applied_at(&bench.db, &format!("evt_bench_{n}")).await;
        latencies.push((received - applied).num_microseconds().unwrap() as f64 / 1000.0);
        // Past the channel's next turn, so the next one is alone too.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    latencies
}

/// Events not yet posted alone nor counted in a posted digest, and jobs still open.
async fn unsettled(db: &Db) -> (i64, i64) {
    db.run(|conn| {
        use billmirror::domain::states::DeliveryState;
        use billmirror::storage::schema::notify_deliveries::dsl::*;
        use diesel::prelude::*;
        let open: i64 = notify_deliveries
            .filter(status.ne_all([DeliveryState::Sent, DeliveryState::Digested]))
            .count()
            .get_result(conn)?;
        Ok((open, billmirror::storage::jobs::open(conn)?))
    })
    .await
    .unwrap()
}

async fn run(backend: &str, events: usize, seconds: usize) -> String {
    let bench = start(backend).await;
    let ops = {
        let mut conn = bench.db.blocking().unwrap();
        billmirror::auth::create_token(&mut conn, "bench-ops", Role::Ops, "bench", None)
            .unwrap()
            .token
            .expose()
            .to_owned()
    };
    let channel: Value = bench
        .client
        .post(format!("{}/api/notifications/channels", bench.base))
        .bearer_auth(&ops)
        .json(
            &json!({"kind": "slack_app", "name": "#billing", "secret": BOT_TOKEN,
            "target": "C0BILLING", "api_base": bench.chat.slack_api(), "rate_per_minute": 60}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rule = bench
        .client
        .post(format!("{}/api/notifications/rules", bench.base))
        .bearer_auth(&ops)
        .json(&json!({"channel_id": channel["id"], "families": ["payment_failed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(rule.status(), 201);

    let lone_before = lone_events(&bench, 1_000_000).await;
    let posted_before = posts(&bench.chat).len();

    // The burst: event i is sent at i × (seconds / events), by a few senders at once.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let pace = Duration::from_secs(seconds as u64).as_secs_f64() / events as f64;
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (next, client, base) = (next.clone(), bench.client.clone(), bench.base.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= events {
                    return;
                }
                let due = started + Duration::from_secs_f64(pace * n as f64);
                tokio::time::sleep_until(due.into()).await;
                deliver(&client, &base, failing_payment(n)).await;
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let sent_over = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if unsettled(&bench.db).await == (0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the burst never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed().as_secs_f64();
    let burst: Vec<Request> = posts(&bench.chat).into_iter().skip(posted_before).collect();
    let counted_events: usize = burst.iter().map(counted).sum();
    assert_eq!(
        counted_events, events,
        "every event is counted in some message"
    );
    let min_gap = burst
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1000.0)
        .fold(f64::INFINITY, f64::min);
    let most_in_a_second = burst
        .iter()
        .map(|p| {
            burst
                .iter()
                .filter(|q| q.at >= p.at && q.at < p.at + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lone_after = lone_events(&bench, 2_000_000).await;
    let all = posts(&bench.chat);
    let total: usize = all.iter().map(counted).sum();
    assert_eq!(total, events + 2 * LONE_EVENTS);

    bench.workers.stop().await;
    common::drop_database(&bench.target);
    let p50_max = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("{:.0}/{:.0}", v[v.len() / 2], v[v.len() - 1])
    };
    format!(
        "| {backend} | {events} | {sent_over:.1} | {} | {counted_events} | {min_gap:.0} | {most_in_a_second} | {drained:.1} | {} | {} |",
        burst.len(),
        p50_max(lone_before),
        p50_max(lone_after),
    )
}
