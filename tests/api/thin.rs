//! Thin events (`v2.core.event`, as Stripe's event destinations send them): verified like any
//! delivery, stored before the answer, read from the fake Stripe's `GET /v2/core/events/{id}` and
//! the related object's `/v1` url by the `fetch_thin_event` job, and folded as the object Stripe
//! has now, at the thin event's time. Unknown thin types are stored and ignored; duplicates are
//! stored once; fetch failures are retried; an object Stripe no longer has is `gone`.

use std::time::{Duration, Instant};

use billmirror::domain::states::JobKind;
use billmirror::webhook::signature::sign;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, Fault, ACCOUNT, SECRET_KEY};
use crate::support::{error_code, Backend, TestApp, WEBHOOK_SECRET};

async fn spawn(backend: Backend, fake: &FakeStripe) -> TestApp {
    TestApp::spawn_with(
        backend,
        &[
            ("STRIPE_API_BASE", &fake.base_url),
            ("STRIPE_SECRET_KEY", SECRET_KEY),
        ],
    )
    .await
}

/// Every stored event: (Stripe's id, type, status, source, last error).
async fn stored(app: &TestApp) -> Vec<(String, String, String, String, Option<String>)> {
    app.db
        .run(|conn| {
            use billmirror::storage::schema::webhook_events::dsl::*;
            use diesel::prelude::*;
            Ok(webhook_events
                .select((stripe_event_id, event_type, status, source, last_error))
                .order(received_at)
                .load(conn)?)
        })
        .await
        .unwrap()
}

/// The `fetch_thin_event` jobs: (subject, state, attempts).
async fn fetch_jobs(app: &TestApp) -> Vec<(String, String, i32)> {
    app.db
        .run(|conn| {
            use billmirror::storage::schema::jobs::dsl::*;
            use diesel::prelude::*;
            Ok(jobs
                .filter(kind.eq(JobKind::FetchThinEvent.as_str()))
                .select((subject_id, status, attempts))
                .load(conn)?)
        })
        .await
        .unwrap()
}

/// Waits until no event is due and no job is open: every fetch settled, every event applied.
async fn settle_all(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if app.unfinished_work().unwrap() == (0, 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "work left: {:?}",
            stored(app).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn calls_to(fake: &FakeStripe, path: &str) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path == path)
        .count()
}

fn customer(id: &str, email: &str) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": "Ada Lovelace",
           "created": 1_700_000_000, "livemode": false})
}

on_both_backends! {
    async fn thin_events_of_types_billmirror_does_not_map_are_stored_and_ignored(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = spawn(backend, &fake).await;
        let meter = fake.thin_event(ACCOUNT, "v1.billing.meter.no_meter_found", Some(("mtr_1", "billing.meter")));
        let ping = fake.thin_event(ACCOUNT, "v2.core.event_destination.ping", None);
        for event in [&meter, &ping] {
            let answer = app.deliver(&event.to_string()).await;
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.json::<Value>().await.unwrap(), json!({"received": true, "duplicate": false}));
        }
        settle_all(&app).await;
        let rows = stored(&app).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().all(|row| row.2 == "ignored"), "{rows:?}");
        assert_eq!(rows[0].1, "v1.billing.meter.no_meter_found");
        assert!(fetch_jobs(&app).await.is_empty(), "nothing to read for a type that is not folded");
        assert!(fake.calls().is_empty() || fake.calls().iter().all(|c| !c.path.starts_with("/v2/")));

        let ops = app.token(billmirror::domain::Role::Ops);
        let listed: Value = app.get("/api/events?status=ignored", &ops).await.json().await.unwrap();
        assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");
        assert_eq!(listed["data"][0]["object_id"], Value::Null, "the ping has no related object");
        assert_eq!(listed["data"][1]["object_id"], "mtr_1");
    }

    async fn a_thin_customer_update_folds_the_customer_stripe_has_now(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = spawn(backend, &fake).await;
        // A snapshot event told us the old address; Stripe has the new one by the time the thin
        // event about the change is read.
        let created = json!({"id": "evt_snap_1", "object": "event", "type": "customer.created",
            "created": chrono::Utc::now().timestamp() - 60, "livemode": false, "api_version": "2024-06-20",
            "data": {"object": customer("cus_thin", "old@example.com")}});
        assert_eq!(app.deliver(&created.to_string()).await.status(), 200);
        fake.seed(ACCOUNT, "customers", vec![customer("cus_thin", "New@Example.com")]);
        let thin = fake.thin_event(ACCOUNT, "v1.customer.updated", Some(("cus_thin", "customer")));
        let thin_id = thin["id"].as_str().unwrap().to_owned();
        let answer = app.deliver(&thin.to_string()).await;
        assert_eq!(answer.status(), 200);
        settle_all(&app).await;

        let ledger = app.ledger().await;
        assert_eq!(ledger["customers"].as_array().unwrap().len(), 1, "{ledger}");
        assert_eq!(ledger["customers"][0]["email_normalized"], "new@example.com", "{ledger}");
        let rows = stored(&app).await;
        let thin_row = rows.iter().find(|r| r.0 == thin_id).unwrap();
        assert_eq!((thin_row.1.as_str(), thin_row.2.as_str()), ("v1.customer.updated", "fetched"));
        let folded_id = format!("evt_bm_thin_{thin_id}");
        let folded = rows.iter().find(|r| r.0 == folded_id).unwrap();
        assert_eq!((folded.1.as_str(), folded.2.as_str(), folded.3.as_str()), ("customer.updated", "applied", "thin"));
        assert_eq!(calls_to(&fake, &format!("/v2/core/events/{thin_id}")), 1);
        assert_eq!(calls_to(&fake, "/v1/customers/cus_thin"), 1);
        let jobs = fetch_jobs(&app).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].1.as_str(), jobs[0].2), ("done", 1));
    }

    async fn an_invoice_paid_from_the_fakes_thin_destination_folds_into_the_ledger(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = spawn(backend, &fake).await;
        fake.send_thin_webhooks_to(&app.url("/webhooks/stripe"), WEBHOOK_SECRET);
        // Made through the fake's API: it posts `v1.customer.created`, thin, to billmirror.
        let made: Value = reqwest::Client::new()
            .post(format!("{}/v1/customers", fake.base_url))
            .bearer_auth(SECRET_KEY)
            .form(&[("email", "payer@example.com"), ("name", "Grace Hopper")])
            .send().await.unwrap().json().await.unwrap();
        let customer_id = made["id"].as_str().unwrap().to_owned();
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(format!(
            "{}/fixtures/stripe/events/invoice.paid__basil__stripe-openapi-fixtures3-2025-03-31.basil.json",
            env!("CARGO_MANIFEST_DIR")
        )).unwrap()).unwrap();
        let mut invoice = fixture["data"]["object"].clone();
        invoice["id"] = json!("in_thin_paid");
        invoice["customer"] = json!(customer_id);
        invoice["livemode"] = json!(false);
        invoice["status"] = json!("paid");
        invoice["amount_paid"] = invoice["total"].clone();
        invoice["amount_remaining"] = json!(0);
        fake.seed(ACCOUNT, "invoices", vec![invoice.clone()]);
        let paid = fake.thin_event(ACCOUNT, "v1.invoice.paid", Some(("in_thin_paid", "invoice")));
        assert_eq!(app.deliver(&paid.to_string()).await.status(), 200);

        let deadline = Instant::now() + Duration::from_secs(20);
        while stored(&app).await.iter().filter(|r| r.3 == "thin").count() < 2 {
            assert!(Instant::now() < deadline, "{:?}", stored(&app).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        settle_all(&app).await;
        let ledger = app.ledger().await;
        assert_eq!(ledger["customers"][0]["id"], customer_id.as_str(), "{ledger}");
        assert_eq!(ledger["customers"][0]["email_normalized"], "payer@example.com");
        let folded = &ledger["invoices"][0];
        assert_eq!(folded["id"], "in_thin_paid", "{ledger}");
        assert_eq!(folded["status"], "paid");
        assert_eq!(folded["amount_paid"], invoice["total"]);
        assert_eq!(folded["amount_remaining"], 0);
    }

    async fn a_thin_event_delivered_many_times_at_once_is_stored_and_fetched_once(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = spawn(backend, &fake).await;
        fake.seed(ACCOUNT, "customers", vec![customer("cus_dup", "dup@example.com")]);
        let thin = fake.thin_event(ACCOUNT, "v1.customer.updated", Some(("cus_dup", "customer"))).to_string();
        let mut deliveries = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, url, body) = (app.client.clone(), app.url("/webhooks/stripe"), thin.clone());
            deliveries.spawn(async move {
                let header = sign(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), body.as_bytes());
                client.post(url).header("Stripe-Signature", header).body(body).send().await.unwrap()
            });
        }
        let mut duplicates = Vec::new();
        while let Some(answer) = deliveries.join_next().await {
            let answer = answer.unwrap();
            assert_eq!(answer.status(), 200);
            duplicates.push(answer.json::<Value>().await.unwrap()["duplicate"] == true);
        }
        assert_eq!(duplicates.iter().filter(|d| !**d).count(), 1, "{duplicates:?}");
        settle_all(&app).await;
        // Once more, after the fetch: still a duplicate, and nothing is read again.
        let late: Value = app.deliver(&thin).await.json().await.unwrap();
        assert_eq!(late["duplicate"], true);
        settle_all(&app).await;
        let rows = stored(&app).await;
        assert_eq!(rows.len(), 2, "the thin event and what it folded: {rows:?}");
        assert_eq!(fetch_jobs(&app).await.len(), 1);
        assert_eq!(fake.calls().iter().filter(|c| c.path.starts_with("/v2/core/events/")).count(), 1);
        assert_eq!(app.ledger().await["customers"][0]["email_normalized"], "dup@example.com");
    }

    async fn a_fetch_that_fails_is_retried_until_stripe_answers(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = spawn(backend, &fake).await;
        fake.seed(ACCOUNT, "customers", vec![customer("cus_retry", "retry@example.com")]);
        // Every attempt the client makes in one job attempt fails (STRIPE_MAX_ATTEMPTS, 5): first
        // at the event, then, on the job's next attempt, at the object.
        fake.fail_next("GET", "/v2/core/events/*", Fault::Unavailable, 5);
        fake.fail_next("GET", "/v1/customers/*", Fault::Unavailable, 5);
        let thin = fake.thin_event(ACCOUNT, "v1.customer.updated", Some(("cus_retry", "customer")));
        assert_eq!(app.deliver(&thin.to_string()).await.status(), 200);
        settle_all(&app).await;
        let jobs = fetch_jobs(&app).await;
        assert_eq!((jobs[0].1.as_str(), jobs[0].2), ("done", 3), "{jobs:?}");
        assert_eq!(app.ledger().await["customers"][0]["email_normalized"], "retry@example.com");
        let rows = stored(&app).await;
        assert_eq!(rows[0].2, "fetched");
    }

    async fn an_object_stripe_no_longer_has_is_gone_unless_the_event_is_its_deletion(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = spawn(backend, &fake).await;
        let created = json!({"id": "evt_snap_del", "object": "event", "type": "customer.created",
            "created": chrono::Utc::now().timestamp() - 60, "livemode": false, "api_version": "2024-06-20",
            "data": {"object": customer("cus_deleted", "gone@example.com")}});
        assert_eq!(app.deliver(&created.to_string()).await.status(), 200);
        // The fake has no such customer: Stripe answers 404 `resource_missing`.
        let updated = fake.thin_event(ACCOUNT, "v1.customer.updated", Some(("cus_deleted", "customer")));
        assert_eq!(app.deliver(&updated.to_string()).await.status(), 200);
        settle_all(&app).await;
        let rows = stored(&app).await;
        let row = rows.iter().find(|r| r.0 == updated["id"]).unwrap();
        assert_eq!(row.2, "gone", "{rows:?}");
        assert!(row.4.as_deref().unwrap().contains("no longer has"), "{row:?}");
        assert_eq!(app.ledger().await["customers"][0]["deleted"], false, "a 404 alone deletes nothing");

        let deleted = fake.thin_event(ACCOUNT, "v1.customer.deleted", Some(("cus_deleted", "customer")));
        assert_eq!(app.deliver(&deleted.to_string()).await.status(), 200);
        settle_all(&app).await;
        let ledger = app.ledger().await;
        assert_eq!(ledger["customers"][0]["deleted"], true, "{ledger}");
        assert_eq!(ledger["customers"][0]["email_normalized"], "gone@example.com");
    }

    async fn a_thin_event_with_a_bad_signature_is_refused_and_nothing_is_read(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = spawn(backend, &fake).await;
        fake.seed(ACCOUNT, "customers", vec![customer("cus_forged", "f@example.com")]);
        let thin = fake.thin_event(ACCOUNT, "v1.customer.updated", Some(("cus_forged", "customer"))).to_string();
        let forged = app.deliver_to("/webhooks/stripe", "whsec_not_the_secret", &thin).await;
        assert_eq!(forged.status(), 400);
        assert_eq!(error_code(forged).await, "signature_mismatch");
        let unsigned = app.client.post(app.url("/webhooks/stripe")).body(thin.clone()).send().await.unwrap();
        assert_eq!(unsigned.status(), 400);
        assert_eq!(error_code(unsigned).await, "missing_signature");
        settle_all(&app).await;
        assert!(stored(&app).await.is_empty());
        assert!(fetch_jobs(&app).await.is_empty());
        assert_eq!(fake.calls().iter().filter(|c| c.path.starts_with("/v2/")).count(), 0);
    }

    async fn the_fakes_v2_events_endpoint_is_as_strict_as_stripes(backend: Backend) {
        let _ = backend;
        let fake = FakeStripe::start().await;
        let thin = fake.thin_event(ACCOUNT, "v1.customer.updated", Some(("cus_1", "customer")));
        let url = format!("{}/v2/core/events/{}", fake.base_url, thin["id"].as_str().unwrap());
        let http = reqwest::Client::new();
        let get = |key: &str, version: Option<&str>| {
            let mut request = http.get(&url).bearer_auth(key);
            if let Some(version) = version {
                request = request.header("Stripe-Version", version);
            }
            request.send()
        };
        let version = Some(billmirror::stripe::client::V2_API_VERSION);
        let found = get(SECRET_KEY, version).await.unwrap();
        assert_eq!(found.status(), 200);
        let event: Value = found.json().await.unwrap();
        assert_eq!(event["object"], "v2.core.event");
        assert_eq!(event["related_object"]["url"], "/v1/customers/cus_1");
        assert_eq!(get(SECRET_KEY, None).await.unwrap().status(), 400, "v2 needs Stripe-Version");
        assert_eq!(get("sk_test_unknown", version).await.unwrap().status(), 401);
        fake.add_key("rk_test_readall", ACCOUNT, crate::support::fake_stripe::Access::read_only());
        assert_eq!(get("rk_test_readall", version).await.unwrap().status(), 401, "v2 takes secret keys only");
        let missing = http.get(format!("{}/v2/core/events/evt_nope", fake.base_url)).bearer_auth(SECRET_KEY)
            .header("Stripe-Version", billmirror::stripe::client::V2_API_VERSION).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("evt_nope"), "{body}");
    }
}
