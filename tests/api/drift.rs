//! The drift report: drift made on purpose (a lost webhook, an event folded from a stale order, an
//! object Stripe never sent, one Stripe no longer has) is named exactly, with the last event the
//! ledger heard, and `repair` brings the ledger back in step. On both backends.

use std::time::{Duration, Instant};

use billmirror::domain::Role;
use billmirror::sync::{backfill, BackfillOptions};
use serde_json::{json, Value};

use crate::invoices::{connect, deliver};
use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::TestApp;

fn customer(id: &str, name: &str) -> Value {
    json!({"id": id, "object": "customer", "email": format!("{id}@example.com"), "name": name,
           "created": 1_700_000_000})
}

fn subscription(status: &str) -> Value {
    json!({"id": "sub_drift", "object": "subscription", "customer": "cus_a", "status": status,
           "created": 1_700_000_000, "cancel_at_period_end": false,
           "items": {"data": [{"id": "si_1", "quantity": 1, "current_period_end": 1_767_225_600,
               "price": {"id": "price_1", "unit_amount": 900, "currency": "usd",
                         "recurring": {"interval": "month", "interval_count": 1}}}]}})
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "api_version": "2025-03-31.basil", "created": created,
           "livemode": false, "type": kind, "data": {"object": object}})
}

/// Starts a report and waits until it is done.
async fn reconcile(app: &TestApp, connection: &str, repair: bool) -> Value {
    let ops = app.token(Role::Ops);
    let response = app
        .post_json(
            &format!("/api/connections/{connection}/reconcile"),
            &ops,
            &json!({"repair": repair}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let run: Value = response.json().await.unwrap();
    let id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run: Value = app
            .get(&format!("/api/reconcile-runs/{id}"), &ops)
            .await
            .json()
            .await
            .unwrap();
        if run["status"] == "done" {
            return run;
        }
        assert_ne!(run["status"], "failed", "{run}");
        assert!(
            Instant::now() < deadline,
            "the report never finished: {run}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every difference as `(resource, id, kind, fields that differ)`.
fn named(run: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let mut all = Vec::new();
    for (resource, drift) in run["report"]["resources"].as_object().unwrap() {
        for d in drift["differences"].as_array().unwrap() {
            let fields = d["fields"].as_array().map_or(Vec::new(), |f| {
                f.iter()
                    .map(|f| f["field"].as_str().unwrap().to_owned())
                    .collect()
            });
            all.push((
                resource.clone(),
                d["id"].as_str().unwrap().to_owned(),
                d["kind"].as_str().unwrap().to_owned(),
                fields,
            ));
        }
    }
    all.sort();
    all
}

on_both_backends! {
    async fn drift_made_on_purpose_is_named_exactly_and_repaired(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let connection = connect(&app, SECRET_KEY).await;
        fake.seed(ACCOUNT, "customers", vec![customer("cus_a", "Ada"), customer("cus_b", "Bea")]);
        fake.seed(ACCOUNT, "subscriptions", vec![subscription("active")]);
        let options = BackfillOptions { only: vec!["customers".into(), "subscriptions".into()], since: None };
        backfill(&app.db, &app.connections, &connection, &options, |_| {}).await.unwrap();
        app.settle().await;
        let clean = reconcile(&app, &connection, false).await;
        assert_eq!(named(&clean), [], "a fresh backfill has no drift: {clean}");
        assert_eq!(clean["report"]["resources"]["customers"]["in_stripe"], 2);

        // A lost webhook: Stripe canceled the subscription; the ledger never heard.
        fake.seed(ACCOUNT, "subscriptions", vec![subscription("canceled")]);
        // A stale order: a customer known only from webhooks, whose two updates in one second
        // were folded the wrong way round.
        fake.seed(ACCOUNT, "customers", vec![customer("cus_d", "Dee")]);
        let minute_ago = chrono::Utc::now().timestamp() - 60;
        deliver(&app, &connection, &event("evt_d_right", "customer.updated", minute_ago, customer("cus_d", "Dee"))).await;
        deliver(&app, &connection, &event("evt_d_stale", "customer.updated", minute_ago, customer("cus_d", "Dee Old"))).await;
        // One Stripe never sent, and one Stripe does not have.
        fake.seed(ACCOUNT, "customers", vec![customer("cus_c", "Cy")]);
        deliver(&app, &connection, &event("evt_ghost", "customer.created", minute_ago, customer("cus_ghost", "Ghost"))).await;
        app.settle().await;

        let drift = reconcile(&app, &connection, false).await;
        assert_eq!(
            named(&drift),
            [
                ("customers".into(), "cus_c".into(), "missing_here".into(), vec![]),
                ("customers".into(), "cus_d".into(), "differs".into(), vec!["name".into()]),
                ("customers".into(), "cus_ghost".into(), "missing_there".into(), vec![]),
                ("subscriptions".into(), "sub_drift".into(), "differs".into(), vec!["status".into()]),
            ],
            "{drift}"
        );
        let customers = drift["report"]["resources"]["customers"]["differences"].as_array().unwrap();
        let d = customers.iter().find(|d| d["id"] == "cus_d").unwrap();
        assert_eq!(d["fields"][0], json!({"field": "name", "ledger": "Dee Old", "stripe": "Dee"}));
        assert_eq!(d["last_event"]["id"], "evt_d_stale", "the last event the ledger heard");
        assert_eq!(drift["differences"], 4);
        for resource in ["invoices", "payments", "disputes"] {
            assert_eq!(drift["report"]["resources"][resource]["outcome"], "compared");
        }

        let repaired = reconcile(&app, &connection, true).await;
        assert_eq!(repaired["report"]["resources"]["customers"]["repaired"], 2, "cus_c and cus_d");
        assert_eq!(repaired["report"]["resources"]["subscriptions"]["repaired"], 1);
        app.settle().await;
        let after = reconcile(&app, &connection, false).await;
        assert_eq!(
            named(&after),
            [("customers".into(), "cus_ghost".into(), "missing_there".into(), vec![])],
            "repair cannot make Stripe have what it lacks: {after}"
        );

        // The same report from the command line: the drift printed, exit code 1.
        let (db_url, fake_url, id) = (app.test_db.url(), fake.base_url.clone(), connection.clone());
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_billmirror"))
                .env_clear()
                .env("DATABASE_URL", &db_url)
                .env("BILLMIRROR_MASTER_KEY", crate::support::MASTER_KEY)
                .env("STRIPE_API_BASE", &fake_url)
                .env("LOG_LEVEL", "warn")
                .current_dir(std::env::temp_dir())
                .args(["reconcile", "--connection", &id])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("customers cus_ghost MissingThere"), "{stdout}");
        assert!(stdout.contains("1 difference(s)"), "{stdout}");

        let ops = app.token(Role::Ops);
        let missing = app.post_json("/api/connections/conn_nope/reconcile", &ops, &json!({})).await;
        assert_eq!(missing.status(), 404);
        assert_eq!(app.get("/api/reconcile-runs/rec_nope", &ops).await.status(), 404);
    }
}
