//! The multi-instance rows of `make bench`: the same load on one `serve` process and on two
//! processes sharing one PostgreSQL database, each on a fresh database, in one run so the ratio
//! means something.
//!
//! The load: `events` distinct events from the real payloads, each delivered twice (Stripe's
//! duplicates; with two instances, once to each, the two copies in flight together), 32
//! deliveries in flight in all, and 40 invoices created through `POST /api/invoices` while the
//! webhooks arrive, alternating between the instances, pushed to the fake Stripe of the test
//! suite. Measured: deliveries acknowledged per second with p50/p99, events applied per second
//! (from the first delivery to the last event applied), invoices pushed per second (from the
//! first invoice to the last push done), and each instance's share: the deliveries it stored
//! first (`duplicate: false`) and its CPU seconds. Checked: every event stored and applied once,
//! every invoice made in Stripe once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use billmirror::storage::{DatabaseTarget, Db};
use billmirror::webhook::signature::sign;
use diesel::prelude::*;
use serde_json::{json, Value};

use super::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use super::{body, cpu_seconds, database, start_server, stop, wait_healthy, SECRET};

const ADMIN: &str = "bm_benchmark_multi_instance_admin_0001";
const INVOICES: usize = 40;
const IN_FLIGHT: usize = 32;

pub fn table(runtime: &tokio::runtime::Runtime, events: usize, templates: &[Value]) {
    println!();
    println!("| PostgreSQL instances | events × 2 deliveries | invoices | accepted/s | ack p50 ms | ack p99 ms | applied/s | invoices pushed/s | stored first, per instance | CPU s, per instance | sent again |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for instances in [1, 2] {
        let r = runtime.block_on(run(instances, events, templates));
        let shares = |values: &[f64]| {
            let total: f64 = values.iter().sum();
            values
                .iter()
                .map(|v| format!("{v:.0} ({:.0} %)", 100.0 * v / total.max(1e-9)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let cpu = r
            .cpu_s
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect::<Vec<_>>()
            .join(" / ");
        println!(
            "| {instances} | {events} | {INVOICES} | {:.0} | {:.2} | {:.2} | {:.0} | {:.1} | {} | {cpu} | {} |",
            r.accepted_per_s,
            r.p50_ms,
            r.p99_ms,
            r.applied_per_s,
            r.pushed_per_s,
            shares(&r.stored_first),
            r.retried,
        );
    }
}

struct MultiResult {
    accepted_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    applied_per_s: f64,
    pushed_per_s: f64,
    stored_first: Vec<f64>,
    cpu_s: Vec<f64>,
    /// Deliveries sent again after an answer other than 200.
    retried: usize,
}

async fn run(instances: usize, events: usize, templates: &[Value]) -> MultiResult {
    let run_id = format!(
        "m{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("run")
    );
    let (database_url, _guard) = database("postgres", &run_id);
    let fake = FakeStripe::start().await;
    let extra = [
        ("STRIPE_SECRET_KEY", SECRET_KEY),
        ("STRIPE_API_BASE", fake.base_url.as_str()),
        ("STRIPE_RATE_LIMIT", "0"),
        ("BILLMIRROR_ADMIN_TOKEN", ADMIN),
        ("KEY_RECHECK_INTERVAL", "off"),
        ("PUBLIC_URL", "https://billmirror.example.com"),
    ];
    let mut servers = Vec::new();
    let mut bases = Vec::new();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    for _ in 0..instances {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        servers.push(start_server(&database_url, port, &extra));
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&client, &base).await;
        bases.push(base);
    }
    wait_key_verified(&client, &bases[0]).await;
    let finance = finance_token(&client, &bases[0]).await;

    // Event i goes to instance i and i+1 (mod the count): both copies of an event are queued
    // side by side, so they are in flight together.
    let now = chrono::Utc::now().timestamp();
    let deliveries: Arc<Vec<(usize, String, String)>> = Arc::new(
        (0..events)
            .flat_map(|i| {
                let body = body(templates, &run_id, i);
                let header = sign(SECRET, now, body.as_bytes());
                [
                    (i % instances, body.clone(), header.clone()),
                    ((i + 1) % instances, body, header),
                ]
            })
            .collect(),
    );
    let bases = Arc::new(bases);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let invoices = {
        let (client, bases, finance) = (client.clone(), bases.clone(), finance.clone());
        tokio::spawn(async move { create_invoices(&client, &bases, &finance).await })
    };
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, deliveries, next, bases) = (
            client.clone(),
            deliveries.clone(),
            next.clone(),
            bases.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut stored_first = vec![0usize; bases.len()];
            let mut retried = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((instance, body, header)) = deliveries.get(i) else {
                    break;
                };
                let sent = Instant::now();
                // As Stripe does, a delivery not answered 200 (a connection the server closed, a
                // 408 or 503 under load) is sent again; the row counts them.
                let mut tries = 0;
                let answer: Value = loop {
                    tries += 1;
                    let response = client
                        .post(format!("{}/webhooks/stripe", bases[*instance]))
                        .header("Stripe-Signature", header)
                        .body(body.clone())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 200 => break r.json().await.unwrap(),
                        failed if tries < 5 => {
                            retried += 1;
                            eprintln!("delivery {i} sent again: {:?}", failed.map(|r| r.status()));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        failed => panic!("delivery {i} failed 5 times: {failed:?}"),
                    }
                };
                latencies.push(sent.elapsed());
                if answer["duplicate"] == false {
                    stored_first[*instance] += 1;
                }
            }
            (latencies, stored_first, retried)
        }));
    }
    let mut latencies = Vec::new();
    let mut stored_first = vec![0usize; instances];
    let mut retried = 0;
    for task in tasks {
        let (l, s, r) = task.await.unwrap();
        latencies.extend(l);
        retried += r;
        for (total, n) in stored_first.iter_mut().zip(s) {
            *total += n;
        }
    }
    let acked = started.elapsed();

    invoices.await.unwrap();

    // Both waits in one loop, so each finish time is seen when it happens.
    let db = Db::connect(&DatabaseTarget::parse(Some(&database_url)).unwrap(), 1).unwrap();
    let (mut applied, mut pushed) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    while applied.is_none() || pushed.is_none() {
        assert!(Instant::now() < deadline, "the work never finished");
        if applied.is_none() && count(&db, UNAPPLIED).await == 0 {
            applied = Some(started.elapsed());
        }
        if pushed.is_none() && count(&db, UNPUSHED).await == 0 {
            pushed = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (applied, pushed) = (applied.unwrap_or_default(), pushed.unwrap_or_default());
    let cpu_s: Vec<f64> = servers.iter().map(|s| cpu_seconds(s.id())).collect();
    for server in &mut servers {
        stop(server);
    }

    // What the row claims: each event stored once and applied, each invoice in Stripe once.
    let stored = count(&db, "SELECT count(*) AS n FROM webhook_events").await;
    let applied_rows = count(
        &db,
        "SELECT count(*) AS n FROM webhook_events WHERE status IN ('applied', 'ignored')",
    )
    .await;
    assert_eq!(stored as usize, events, "each event stored once");
    assert_eq!(
        applied_rows as usize, events,
        "each event applied (or ignored)"
    );
    // At most one delivery per event stored it (fewer when an answer was lost and the retry
    // found the event stored).
    assert!(stored_first.iter().sum::<usize>() <= events);
    let done = count(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE kind = 'push_invoice' AND status = 'done'",
    )
    .await;
    assert_eq!(done as usize, INVOICES, "every push done");
    assert_eq!(
        fake.objects(ACCOUNT, "invoices").len(),
        INVOICES,
        "each invoice made in Stripe once"
    );

    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    MultiResult {
        accepted_per_s: deliveries.len() as f64 / acked.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        applied_per_s: events as f64 / applied.as_secs_f64(),
        pushed_per_s: INVOICES as f64 / pushed.as_secs_f64(),
        stored_first: stored_first.into_iter().map(|n| n as f64).collect(),
        cpu_s,
        retried,
    }
}

/// Creates the invoices one after another, alternating instances, while the webhooks arrive.
async fn create_invoices(client: &reqwest::Client, bases: &[String], token: &str) {
    for n in 0..INVOICES {
        let body = json!({"customer": {"email": format!("buyer{n}@example.com")}, "currency": "usd",
            "lines": [{"description": "Seat", "quantity": 1, "unit_amount": 1_000 + n as i64}],
            "days_until_due": 14});
        let response = client
            .post(format!("{}/api/invoices", bases[n % bases.len()]))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap_or_default()
        );
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    db.run(move |conn| Ok(diesel::sql_query(sql).get_result::<Count>(conn)?.n))
        .await
        .unwrap()
}

const UNAPPLIED: &str =
    "SELECT count(*) AS n FROM webhook_events WHERE status IN ('pending', 'retrying')";
/// Every invoice's push job exists once the invoices are created (they are, before this is read).
const UNPUSHED: &str =
    "SELECT count(*) AS n FROM jobs WHERE kind = 'push_invoice' AND status = 'pending'";

async fn wait_key_verified(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let env: Value = client
            .get(format!("{base}/api/connections/env"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if env["key_status"] == "verified" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the key was never verified: {env}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn finance_token(client: &reqwest::Client, base: &str) -> String {
    let made: Value = client
        .post(format!("{base}/api/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "bench-finance", "role": "finance"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    made["token"].as_str().unwrap().to_owned()
}
