//! Webhook ingest: every answer of the table in docs/API.md, nothing stored for a 4xx, duplicates
//! recognised, secrets rotated, events applied in the background, failures parked as dead.

use billmirror::webhook::signature::sign;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::{error_code, TestApp, WEBHOOK_SECRET};

fn event(id: &str, event_type: &str, object: Value) -> String {
    serde_json::to_string_pretty(&json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "type": event_type,
        "data": {"object": object},
    }))
    .unwrap()
}

fn customer(id: &str, email: &str) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": "Ada Lovelace", "created": 1_700_000_000})
}

async fn stored_events(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    app.db
        .run(|conn| {
            use billmirror::storage::schema::webhook_events::dsl::*;
            Ok(webhook_events
                .select((stripe_event_id, status, signed_with))
                .order(received_at)
                .load(conn)?)
        })
        .await
        .unwrap()
}

async fn post_signed(
    app: &TestApp,
    path: &str,
    header: Option<String>,
    body: String,
) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).body(body);
    if let Some(header) = header {
        request = request.header("Stripe-Signature", header);
    }
    request.send().await.unwrap()
}

on_both_backends! {
    async fn an_event_is_stored_once_and_its_duplicate_recognised(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let body = event("evt_once", "customer.created", customer("cus_1", "Ada@Example.com"));
        let first = app.deliver(&body).await;
        assert_eq!(first.status(), 200);
        assert_eq!(first.json::<Value>().await.unwrap(), json!({"received": true, "duplicate": false}));
        let again = app.deliver(&body).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await.unwrap(), json!({"received": true, "duplicate": true}));

        let stored = stored_events(&app).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].2.as_deref(), Some("whsec_…0001"), "the matching secret is recorded, masked");

        app.settle().await;
        let ledger = app.ledger().await;
        assert_eq!(ledger["customers"][0]["id"], "cus_1");
        assert_eq!(ledger["customers"][0]["email_normalized"], "ada@example.com");
    }

    async fn concurrent_duplicates_store_one_event(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let body = event("evt_race", "customer.created", customer("cus_race", "r@example.com"));
        let answers = futures_join(&app, &body, 16).await;
        assert!(answers.iter().all(|(status, _)| *status == 200));
        assert_eq!(answers.iter().filter(|(_, duplicate)| !duplicate).count(), 1, "{answers:?}");
        assert_eq!(stored_events(&app).await.len(), 1);
    }

    async fn an_unknown_event_type_is_stored_as_ignored_and_answered_200(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.deliver(&event("evt_new", "issuing_card.created", json!({"id": "ic_1"}))).await;
        assert_eq!(response.status(), 200);
        let stored = stored_events(&app).await;
        assert_eq!(stored[0].1, "ignored");
    }

    async fn every_refusal_has_its_code_and_stores_nothing(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("WEBHOOK_MAX_BODY_BYTES", "4096")]).await;
        let body = event("evt_bad", "customer.created", customer("cus_2", "b@example.com"));
        let now = chrono::Utc::now().timestamp();
        let good = sign(WEBHOOK_SECRET, now, body.as_bytes());
        let cases: Vec<(&str, Option<String>, String, u16, &str)> = vec![
            ("/webhooks/stripe", None, body.clone(), 400, "missing_signature"),
            ("/webhooks/stripe", Some("t=abc,v1=00".into()), body.clone(), 400, "malformed_signature"),
            ("/webhooks/stripe", Some(format!("t={now}")), body.clone(), 400, "malformed_signature"),
            ("/webhooks/stripe", Some(sign(WEBHOOK_SECRET, now - 360, body.as_bytes())), body.clone(), 400, "timestamp_outside_tolerance"),
            ("/webhooks/stripe", Some(sign(WEBHOOK_SECRET, now + 360, body.as_bytes())), body.clone(), 400, "timestamp_outside_tolerance"),
            ("/webhooks/stripe", Some(sign("whsec_someone_else_000", now, body.as_bytes())), body.clone(), 400, "signature_mismatch"),
            ("/webhooks/stripe", Some(good.clone()), body.replace("cus_2", "cus_3"), 400, "signature_mismatch"),
            ("/webhooks/stripe", Some(sign(WEBHOOK_SECRET, now, b"{\"hello\": 1}")), "{\"hello\": 1}".into(), 400, "invalid_payload"),
            ("/webhooks/stripe/conn_nope", Some(good.clone()), body.clone(), 404, "unknown_connection"),
        ];
        let live = body.replace("\"livemode\": false", "\"livemode\": true");
        let big = event("evt_big", "customer.created", json!({"id": "cus_big", "description": "x".repeat(5000)}));
        let mut cases = cases;
        cases.push(("/webhooks/stripe", Some(sign(WEBHOOK_SECRET, now, live.as_bytes())), live, 400, "livemode_mismatch"));
        cases.push(("/webhooks/stripe", Some(sign(WEBHOOK_SECRET, now, big.as_bytes())), big, 413, "payload_too_large"));
        for (path, header, body, status, code) in cases {
            let response = post_signed(&app, path, header, body).await;
            assert_eq!(response.status().as_u16(), status, "{code}");
            assert_eq!(error_code(response).await, code);
        }
        assert!(stored_events(&app).await.is_empty(), "nothing is stored for a 4xx");

        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(r#"webhook_rejections_total{connection="env",reason="signature_mismatch"}"#), "{metrics}");
    }

    async fn any_active_secret_verifies_during_a_rotation(backend: Backend) {
        let secrets = "whsec_new_secret_for_rotation_9999, whsec_old_secret_for_rotation_1111";
        let app = TestApp::spawn_with(backend, &[("STRIPE_WEBHOOK_SECRET", secrets)]).await;
        for (id, secret) in [("evt_old", "whsec_old_secret_for_rotation_1111"), ("evt_new", "whsec_new_secret_for_rotation_9999")] {
            let body = event(id, "customer.created", customer(&format!("cus_{id}"), "x@example.com"));
            let header = sign(secret, chrono::Utc::now().timestamp(), body.as_bytes());
            assert_eq!(post_signed(&app, "/webhooks/stripe", Some(header), body).await.status(), 200);
        }
        let signed: Vec<_> = stored_events(&app).await.into_iter().map(|e| e.2.unwrap()).collect();
        assert_eq!(signed, ["whsec_…1111", "whsec_…9999"]);
    }

    async fn an_event_that_cannot_be_applied_ends_dead_and_can_be_replayed(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("MAX_EVENT_ATTEMPTS", "1")]).await;
        // A mapped type whose object has no id cannot be applied.
        let response = app.deliver(&event("evt_broken", "customer.created", json!({"object": "customer"}))).await;
        assert_eq!(response.status(), 200);
        app.settle().await;

        let ops = app.token(billmirror::domain::Role::Ops);
        let dead: Value = app.get("/api/events?status=dead", &ops).await.json().await.unwrap();
        assert_eq!(dead["data"][0]["stripe_event_id"], "evt_broken", "{dead}");
        assert_eq!(dead["data"][0]["attempts"], 1);
        assert!(dead["data"][0]["last_error"].as_str().unwrap().contains("no id"));

        let detail: Value = app.get("/api/events/evt_broken", &ops).await.json().await.unwrap();
        assert_eq!(detail["payload"]["type"], "customer.created");

        let replay = app.client.post(app.url("/api/events/evt_broken/replay")).bearer_auth(&ops).send().await.unwrap();
        assert_eq!(replay.status(), 202);
        app.settle().await;
        let after: Value = app.get("/api/events/evt_broken", &ops).await.json().await.unwrap();
        assert_eq!(after["status"], "dead", "still broken, tried once more: {after}");

        let bad_filter = app.get("/api/events?status=lost", &ops).await;
        assert_eq!(bad_filter.status(), 422);
        assert_eq!(app.get("/api/events/evt_nope", &ops).await.status(), 404);
    }
}

/// Sends `body` `n` times at once; returns each answer's status and `duplicate` flag.
async fn futures_join(app: &TestApp, body: &str, n: usize) -> Vec<(u16, bool)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, url, body) = (
            app.client.clone(),
            app.url("/webhooks/stripe"),
            body.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let header = sign(
                WEBHOOK_SECRET,
                chrono::Utc::now().timestamp(),
                body.as_bytes(),
            );
            let response = client
                .post(url)
                .header("Stripe-Signature", header)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            (status, answer["duplicate"].as_bool().unwrap())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// `stripe listen --forward-to localhost:8080/webhooks/stripe` (the README's quick start): the
/// Stripe CLI's secret is `whsec_` and 64 hex digits, and it forwards with these headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_forwarded_by_the_stripe_cli_is_stored() {
    let cli_secret = "whsec_3f1c5e7a9b2d4f6081a3c5e7f9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7";
    let app = TestApp::spawn_with(
        crate::support::Backend::Sqlite,
        &[("STRIPE_WEBHOOK_SECRET", cli_secret)],
    )
    .await;
    // As the CLI forwards it: Stripe's pretty-printed event, with `request` and `pending_webhooks`.
    let body = serde_json::to_string_pretty(&json!({
        "id": "evt_1QcliForward000000000001", "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false,
        "pending_webhooks": 2, "request": {"id": "req_cli0000000001", "idempotency_key": null},
        "type": "customer.created",
        "data": {"object": customer("cus_cli_1", "cli@example.com")},
    }))
    .unwrap();
    let header = sign(cli_secret, chrono::Utc::now().timestamp(), body.as_bytes());
    assert!(
        header.starts_with("t=") && header.contains(",v1="),
        "{header}"
    );
    let answer = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("Stripe-Signature", header)
        .header(
            "User-Agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Accept", "*/*; q=0.5, application/xml")
        .header("Cache-Control", "no-cache")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"received": true, "duplicate": false})
    );
    let stored = stored_events(&app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "evt_1QcliForward000000000001");
    app.settle().await;
    assert_eq!(
        app.ledger().await["customers"][0]["email"],
        "cli@example.com"
    );
}
