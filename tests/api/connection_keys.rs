//! What a connection knows about its secret key: a key Stripe never checked is `unverified`, not
//! read-only; one secret key is connected once, whether Stripe answers or not; and the
//! environment's account (`STRIPE_SECRET_KEY`) is a full connection that pushes, syncs and is
//! re-checked like the others.

use std::time::{Duration, Instant};

use billmirror::domain::Role;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::invoices::{connect, invoice_body, wait_for};
use crate::on_both_backends;
use crate::support::fake_stripe::{Access, FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::{TestApp, MASTER_KEY};

/// A second account's key, so that a test can connect two accounts to one fake.
const OTHER_ACCOUNT: &str = "acct_fake_other";
const OTHER_KEY: &str = "sk_test_51FakeStripeOtherAccount0000000000";

async fn view(app: &TestApp, id: &str) -> Value {
    let ops = app.token(Role::Ops);
    let response = app.get(&format!("/api/connections/{id}"), &ops).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls a connection until `done` holds (at most 20 s).
async fn wait_for_connection(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = view(app, id).await;
        if done(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {found}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_invoice(app: &TestApp, body: &Value) -> (u16, Value) {
    let finance = app.token(Role::Finance);
    let response = app.post_json("/api/invoices", &finance, body).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

fn with_connection(mut body: Value, id: &str) -> Value {
    body["connection_id"] = json!(id);
    body
}

/// What the database holds about a connection's key: (sealed key, fingerprint, key_status).
async fn stored_key(app: &TestApp, id: &str) -> (Option<String>, Option<String>, String) {
    let id = id.to_owned();
    app.db
        .run(move |conn| {
            use billmirror::storage::schema::connections;
            Ok(connections::table
                .find(&id)
                .select((
                    connections::secret_key_enc,
                    connections::secret_key_fingerprint,
                    connections::key_status,
                ))
                .first(conn)?)
        })
        .await
        .unwrap()
}

on_both_backends! {
    async fn a_key_stripe_never_checked_is_unverified_not_read_only(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);

        // Saved while Stripe is down: nothing is known about the key, so it is not "read-only".
        fake.go_down(503);
        let id = connect(&app, SECRET_KEY).await;
        let saved = view(&app, &id).await;
        assert_eq!(saved["can_push"], false);
        assert_eq!(saved["key_status"], "unverified", "{saved}");
        let (status, refused) = post_invoice(&app, &invoice_body("ada@example.com")).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["error"]["code"], "connection_unverified", "{refused}");
        assert_eq!(refused["error"]["details"]["field"], "connection_id");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("POST /api/connections/{id}/validate")), "{message}");

        // Stripe is back: the report runs again, the key is verified and may push.
        fake.recover();
        let report: Value = app.post_json(&format!("/api/connections/{id}/validate"), &ops, &json!({})).await.json().await.unwrap();
        assert_eq!(report["can_push"], true, "{report}");
        let checked = view(&app, &id).await;
        assert_eq!((checked["key_status"].as_str(), checked["can_push"].as_bool()), (Some("verified"), Some(true)), "{checked}");
        let (status, created) = post_invoice(&app, &invoice_body("ada@example.com")).await;
        assert_eq!(status, 201, "{created}");
        let pushed = wait_for(&app, created["id"].as_str().unwrap(), 20, |i| i["sync"] == "pushed").await;
        assert_eq!(pushed["status"], "open");

        // An outage during a later check teaches nothing new: the verified key still pushes.
        fake.go_down(503);
        let report: Value = app.post_json(&format!("/api/connections/{id}/validate"), &ops, &json!({})).await.json().await.unwrap();
        assert_eq!(report["checks"][4]["code"], "stripe_unreachable", "{report}");
        let still = view(&app, &id).await;
        assert_eq!((still["key_status"].as_str(), still["can_push"].as_bool()), (Some("verified"), Some(true)), "{still}");
        assert_eq!(still["last_report"]["checks"][4]["code"], "stripe_unreachable", "the report itself is kept");
        let (status, accepted) = post_invoice(&app, &invoice_body("bob@example.com")).await;
        assert_eq!(status, 201, "{accepted}");
        fake.recover();

        // Only a key Stripe checked and found without write permission is read-only.
        fake.add_account(OTHER_ACCOUNT);
        let read_only_key = "rk_test_51FakeReadOnlyOtherAccount00000000";
        fake.add_key(read_only_key, OTHER_ACCOUNT, Access::read_only());
        let read_only = connect(&app, read_only_key).await;
        assert_eq!(view(&app, &read_only).await["key_status"], "verified");
        let (status, refused) = post_invoice(&app, &with_connection(invoice_body("ada@example.com"), &read_only)).await;
        assert_eq!(status, 422);
        assert_eq!(refused["error"]["code"], "connection_read_only", "{refused}");

        // A key Stripe refused says so, not "read-only" and not "unverified".
        fake.revoke_key(read_only_key, "api_key_expired");
        app.post_json(&format!("/api/connections/{read_only}/validate"), &ops, &json!({})).await;
        assert_eq!(view(&app, &read_only).await["key_status"], "rejected");
        let (_, refused) = post_invoice(&app, &with_connection(invoice_body("ada@example.com"), &read_only)).await;
        assert_eq!(refused["error"]["code"], "connection_key_rejected", "{refused}");
    }

    async fn one_secret_key_is_connected_once_whether_stripe_answers_or_not(backend: Backend) {
        let fake = FakeStripe::start().await;
        let env_key = "sk_test_51FakeStripeEnvironmentKey000000000";
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("STRIPE_SECRET_KEY", env_key)]).await;
        let ops = app.token(Role::Ops);
        fake.go_down(503);

        let first = connect(&app, SECRET_KEY).await;
        let twin = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await;
        assert_eq!(twin.status(), 409, "Stripe cannot say whose key it is, but it is the same key");
        let body: Value = twin.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("already connected as {first}")), "{message}");
        assert!(!body.to_string().contains("FakeStripeDefault"), "the key is never repeated: {body}");

        // The environment's key is taken too.
        let env_twin = app.post_json("/api/connections", &ops, &json!({"secret_key": env_key})).await;
        assert_eq!(env_twin.status(), 409);
        let body: Value = env_twin.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("already connected as env"), "{body}");

        // Two requests with one new key at the same moment: one connection.
        let other = json!({"secret_key": OTHER_KEY});
        let send = || app.post_json("/api/connections", &ops, &other);
        let (a, b) = tokio::join!(send(), send());
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [201, 409]);

        // Only a keyed fingerprint is stored, never the key.
        let (sealed, fingerprint, _) = stored_key(&app, &first).await;
        let fingerprint = fingerprint.unwrap();
        assert_eq!(fingerprint.len(), 64);
        assert!(!fingerprint.contains("FakeStripe") && !sealed.unwrap().contains("FakeStripe"));

        // Once disconnected, the key may be connected again.
        assert_eq!(app.delete(&format!("/api/connections/{first}"), &ops).await.status(), 200);
        let again = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await;
        assert_eq!(again.status(), 201);
    }

    async fn the_environments_account_pushes_syncs_and_is_checked_like_any_connection(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("STRIPE_SECRET_KEY", SECRET_KEY)]).await;
        let ops = app.token(Role::Ops);

        // Its key report ran in the background at start and is stored like an API connection's.
        let env = wait_for_connection(&app, "env", |c| c["last_report"].is_object()).await;
        assert_eq!(env["origin"], "env");
        assert_eq!(env["secret_key"], "sk_test_…0000");
        assert_eq!(env["key_status"], "verified", "{env}");
        assert_eq!(env["can_push"], true);
        assert_eq!(env["stripe_account_id"], ACCOUNT);
        assert_eq!(env["webhook_url"], "https://billmirror.example.com/webhooks/stripe");
        let listed: Value = app.get("/api/connections", &ops).await.json().await.unwrap();
        let listed_env = listed["data"].as_array().unwrap().iter().find(|c| c["id"] == "env").unwrap().clone();
        assert_eq!(listed_env["last_report"]["stripe_account_id"], ACCOUNT, "{listed_env}");
        assert!(listed_env["webhook_health"].is_object());

        // It takes invoices without being named, and pushes them to its account.
        let (status, created) = post_invoice(&app, &invoice_body("ada@example.com")).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["connection_id"], "env");
        let pushed = wait_for(&app, created["id"].as_str().unwrap(), 20, |i| i["sync"] == "pushed").await;
        assert_eq!(pushed["status"], "open");
        assert_eq!(fake.objects(ACCOUNT, "invoices").len(), 1);

        // validate works on it; changing its keys or disconnecting it through the API does not.
        let report = app.post_json("/api/connections/env/validate", &ops, &json!({})).await;
        assert_eq!(report.status(), 200);
        assert_eq!(report.json::<Value>().await.unwrap()["can_push"], true);
        for refused in [
            app.post_json("/api/connections/env/webhook-secrets", &ops, &json!({"secret": "whsec_abcdefghijklmnopqrstuvwxyz012345"})).await,
            app.post_json("/api/connections/env/webhook-endpoint", &ops, &json!({})).await,
            app.delete("/api/connections/env", &ops).await,
        ] {
            assert_eq!(refused.status(), 409);
            let body: Value = refused.json().await.unwrap();
            assert!(body["error"]["message"].as_str().unwrap().contains("configured from the environment"), "{body}");
        }

        // The backfill and the catch-up read its account.
        fake.seed(ACCOUNT, "customers", vec![json!({"id": "cus_env_1", "object": "customer", "email": "grace@example.com", "created": 1_700_000_000})]);
        let options = billmirror::sync::BackfillOptions { only: vec!["customers".into()], since: None };
        let reports = billmirror::sync::backfill(&app.db, &app.connections, "env", &options, |_| {}).await.unwrap();
        assert_eq!(reports[0].outcome, "complete", "{reports:?}");
        let missed = json!({"id": "evt_env_missed", "object": "event", "api_version": "2024-06-20",
            "created": chrono::Utc::now().timestamp() - 60, "livemode": false, "type": "customer.created",
            "data": {"object": {"id": "cus_env_missed", "object": "customer", "email": "missed@example.com", "created": 1_700_000_000}}});
        fake.seed(ACCOUNT, "events", vec![missed]);
        let since = chrono::Utc::now() - chrono::Duration::days(1);
        let caught = billmirror::sync::catch_up(&app.db, &app.connections, "env", since).await.unwrap();
        assert!(caught.new >= 1, "{caught:?}");
        app.settle().await;
        let support = app.token(Role::Support);
        for (email, customer) in [("grace@example.com", "cus_env_1"), ("missed@example.com", "cus_env_missed")] {
            let context: Value = app.get(&format!("/api/billing-context?email={email}"), &support).await.json().await.unwrap();
            assert_eq!(context["customers"][0]["id"], customer, "{context}");
        }

        // And from the command line, which reads the sealed key from the database alone.
        fake.seed(ACCOUNT, "customers", vec![json!({"id": "cus_env_2", "object": "customer", "email": "cli@example.com", "created": 1_700_000_001})]);
        let (db_url, fake_url) = (app.test_db.url(), fake.base_url.clone());
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_billmirror"))
                .env_clear()
                .env("DATABASE_URL", &db_url)
                .env("BILLMIRROR_MASTER_KEY", MASTER_KEY)
                .env("STRIPE_API_BASE", &fake_url)
                .env("LOG_LEVEL", "warn")
                .current_dir(std::env::temp_dir())
                .args(["sync", "--connection", "env", "--only", "customers"])
                .output()
                .unwrap()
        }).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("customers        complete"), "{stdout}");
        let context: Value = app.get("/api/billing-context?email=cli@example.com", &support).await.json().await.unwrap();
        assert_eq!(context["customers"][0]["id"], "cus_env_2", "{context}");
    }

    async fn the_environments_row_follows_stripe_secret_key_across_starts(backend: Backend) {
        // Stripe is unreachable: the start neither waits for nor fails on the key report.
        let first_key = "sk_test_51FakeStripeFirstEnvKey00000000000";
        let started = Instant::now();
        let app = TestApp::spawn_with(backend, &[("STRIPE_SECRET_KEY", first_key)]).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        let env = wait_for_connection(&app, "env", |c| c["last_report"].is_object()).await;
        assert_eq!(env["secret_key"], "sk_test_…0000");
        assert_eq!(env["key_status"], "unverified", "{env}");
        let (_, refused) = post_invoice(&app, &invoice_body("ada@example.com")).await;
        assert_eq!(refused["error"]["code"], "connection_unverified", "{refused}");
        let (sealed, first_print, _) = stored_key(&app, "env").await;
        assert!(!sealed.unwrap().contains("FirstEnvKey"));

        // Two more instances start together with the same key: nothing changes, nothing fails.
        let same = || billmirror::app::state(app.config(&[("STRIPE_SECRET_KEY", first_key)]), app.db.clone());
        let (a, b) = tokio::join!(same(), same());
        a.unwrap();
        b.unwrap();
        assert_eq!(stored_key(&app, "env").await.1, first_print);
        assert!(view(&app, "env").await["last_report"].is_object(), "an unchanged key keeps its report");

        // A new key: the row takes it and forgets what was known about the old one.
        let second_key = "sk_test_51FakeStripeSecondEnvKey0000000009";
        let (a, b) = tokio::join!(
            billmirror::app::state(app.config(&[("STRIPE_SECRET_KEY", second_key)]), app.db.clone()),
            billmirror::app::state(app.config(&[("STRIPE_SECRET_KEY", second_key)]), app.db.clone()),
        );
        a.unwrap();
        b.unwrap();
        let env = view(&app, "env").await;
        assert_eq!(env["secret_key"], "sk_test_…0009");
        assert_eq!(env["last_report"], Value::Null);
        assert_eq!(env["key_status"], "unverified");
        assert_ne!(stored_key(&app, "env").await.1, first_print);
        let ids: i64 = app.db.run(|conn| {
            use billmirror::storage::schema::connections;
            Ok(connections::table.filter(connections::origin.eq("env")).count().get_result(conn)?)
        }).await.unwrap();
        assert_eq!(ids, 1);

        // STRIPE_* unset: the environment's connection stops; set again, it is back.
        let none = [("STRIPE_SECRET_KEY", ""), ("STRIPE_PUBLISHABLE_KEY", ""), ("STRIPE_WEBHOOK_SECRET", "")];
        billmirror::app::state(app.config(&none), app.db.clone()).await.unwrap();
        assert_eq!(view(&app, "env").await["status"], "disconnected");
        let (_, refused) = post_invoice(&app, &invoice_body("ada@example.com")).await;
        assert_eq!(refused["error"]["code"], "no_connection", "{refused}");
        billmirror::app::state(app.config(&[("STRIPE_SECRET_KEY", second_key)]), app.db.clone()).await.unwrap();
        assert_eq!(view(&app, "env").await["status"], "active");
    }
}
