//! Several instances on one PostgreSQL database: webhooks sprayed across two `serve` processes,
//! every event delivered to both, invoices created on both, and one instance killed with SIGKILL
//! half-way. Each event is stored and applied once, each invoice is pushed to Stripe once, and
//! nothing acknowledged is lost.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use billmirror::webhook::signature::sign;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::support::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::{Backend, TestDb, MASTER_KEY, WEBHOOK_SECRET};

const ADMIN: &str = "bm_multi_instance_admin_token_000001";

struct Instance {
    base: String,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(db: &TestDb, fake: &FakeStripe) -> Instance {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_billmirror"))
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("BILLMIRROR_MASTER_KEY", MASTER_KEY)
        .env("BILLMIRROR_ADMIN_TOKEN", ADMIN)
        .env("STRIPE_SECRET_KEY", SECRET_KEY)
        .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("STRIPE_API_BASE", &fake.base_url)
        .env("STRIPE_RATE_LIMIT", "0")
        .env("STRIPE_RETRY_BACKOFF_MS", "5")
        .env("JOB_RETRY_BACKOFF_MS", "5")
        .env("JOB_LEASE_SECS", "3")
        .env("KEY_RECHECK_INTERVAL", "off")
        .env("PUBLIC_URL", "https://billmirror.example.com")
        .env("LOG_LEVEL", "warn")
        .current_dir(std::env::temp_dir())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("an instance never became ready: {other:?}"),
        }
    }
    Instance { base, child }
}

fn event(n: usize) -> String {
    json!({"id": format!("evt_mi_{n:05}"), "object": "event", "api_version": "2025-03-31.basil",
           "created": 1_700_000_000 + n as i64, "livemode": false, "type": "customer.created",
           "data": {"object": {"id": format!("cus_mi_{n:05}"), "object": "customer",
                               "email": format!("mi{n}@example.com"), "name": "Multi", "created": 1_700_000_000}}})
    .to_string()
}

/// Posts one signed delivery; `true` when it was acknowledged.
async fn deliver(client: &reqwest::Client, base: &str, body: &str) -> bool {
    let header = sign(
        WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    let sent = client
        .post(format!("{base}/webhooks/stripe"))
        .header("Stripe-Signature", header)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    matches!(sent, Ok(r) if r.status() == 200)
}

fn invoice(n: usize) -> Value {
    json!({"customer": {"email": format!("buyer{n}@example.com")}, "currency": "usd",
           "lines": [{"description": "Seat", "quantity": 1, "unit_amount": 1_000 + n as i64}],
           "days_until_due": 14})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_apply_each_event_once_and_push_each_invoice_once_through_a_kill() {
    let db = TestDb::create(Backend::Postgres);
    db.open_migrated();
    let fake = FakeStripe::start().await;
    // Pushes take a moment, so that some are in flight when an instance dies.
    fake.set_processing_delay(Duration::from_millis(30));
    let a = start(&db, &fake).await;
    let mut b = start(&db, &fake).await;
    let client = reqwest::Client::new();

    // The environment's key is checked in the background at start; wait for Stripe's verdict.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let env: Value = client
            .get(format!("{}/api/connections/env", a.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if env["key_status"] == "verified" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the environment's key was never verified: {env}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created: Value = client
        .post(format!("{}/api/tokens", a.base))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "finance-multi", "role": "finance"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let finance = created["token"].as_str().unwrap().to_owned();

    // Invoices created on both instances.
    let mut invoice_ids = Vec::new();
    for n in 0..20 {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        let response = client
            .post(format!("{base}/api/invoices"))
            .bearer_auth(&finance)
            .json(&invoice(n))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        invoice_ids.push(body["id"].as_str().unwrap().to_owned());
    }

    // Every event to both instances at once; B dies half-way, and what it did not acknowledge is
    // delivered again to A, as Stripe retries.
    const EVENTS: usize = 400;
    let acked_by_b = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let b_alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, a_base, b_base) = (client.clone(), a.base.clone(), b.base.clone());
        let (next, acked_by_b, b_alive) = (next.clone(), acked_by_b.clone(), b_alive.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= EVENTS {
                    return;
                }
                let body = event(n);
                let to_b = async {
                    b_alive.load(Ordering::SeqCst) && deliver(&client, &b_base, &body).await
                };
                let (on_a, on_b) = tokio::join!(deliver(&client, &a_base, &body), to_b);
                if on_b {
                    acked_by_b.fetch_add(1, Ordering::SeqCst);
                }
                let mut acked = on_a || on_b;
                let deadline = Instant::now() + Duration::from_secs(30);
                while !acked {
                    assert!(
                        Instant::now() < deadline,
                        "event {n} was never acknowledged"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    acked = deliver(&client, &a_base, &body).await;
                }
            }
        }));
    }
    while next.load(Ordering::SeqCst) < EVENTS / 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.child.kill().unwrap();
    b_alive.store(false, Ordering::SeqCst);
    b.child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(
        acked_by_b.load(Ordering::SeqCst) > 0,
        "both instances took deliveries"
    );

    // Everything settles on A alone: each event applied once, each invoice pushed once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let conn_db = db.open();
    loop {
        let (pending, customers, pushed) = conn_db
            .run(|conn| {
                use billmirror::storage::schema::{customers, invoices, webhook_events};
                let pending: i64 = webhook_events::table
                    .filter(webhook_events::status.ne("applied"))
                    .count()
                    .get_result(conn)?;
                let customers: i64 = customers::table
                    .filter(customers::stripe_id.like("cus_mi_%"))
                    .count()
                    .get_result(conn)?;
                let pushed: i64 = invoices::table
                    .filter(invoices::origin.eq("billmirror"))
                    .filter(invoices::sync_state.eq("pushed"))
                    .count()
                    .get_result(conn)?;
                Ok((pending, customers, pushed))
            })
            .await
            .unwrap();
        if pending == 0 && customers == EVENTS as i64 && pushed == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {pending} events not applied, {customers} customers, {pushed} invoices pushed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored: i64 = conn_db
        .run(|conn| {
            use billmirror::storage::schema::webhook_events;
            Ok(webhook_events::table
                .filter(webhook_events::stripe_event_id.like("evt_mi_%"))
                .count()
                .get_result(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(stored, EVENTS as i64, "each event stored once");
    let in_stripe = fake.objects(ACCOUNT, "invoices");
    assert_eq!(in_stripe.len(), 20, "each invoice made in Stripe once");
    let mut totals: Vec<i64> = in_stripe
        .iter()
        .map(|i| i["total"].as_i64().unwrap_or(0))
        .collect();
    totals.sort();
    assert_eq!(
        totals,
        (0..20).map(|n| 1_000 + n).collect::<Vec<i64>>(),
        "each with our total"
    );
    assert_eq!(invoice_ids.len(), 20);

    let mut a = a;
    Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status()
        .unwrap();
    a.child.wait().unwrap();
}
