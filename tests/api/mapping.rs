//! Real payloads land in the ledger as the mapping promises, in old and basil API shapes: each
//! story of `fixtures/stripe/stories` is delivered over HTTP and its final ledger checked field by
//! field; each single fixture of `fixtures/stripe/events` is applied without error.

use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::TestApp;

fn story(name: &str) -> Vec<String> {
    let path = format!(
        "{}/fixtures/stripe/stories/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let story: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string_pretty(e).unwrap())
        .collect()
}

async fn deliver_story(app: &TestApp, name: &str) -> Value {
    for body in story(name) {
        assert_eq!(app.deliver(&body).await.status(), 200);
    }
    app.settle().await;
    app.ledger().await
}

fn assert_paid_after_failure(ledger: &Value, prefix: &str) {
    let customer = &ledger["customers"][0];
    assert_eq!(customer["id"], format!("cus_{prefix}"));
    assert_eq!(customer["email_normalized"], "ada.lovelace@example.com");

    let subscription = &ledger["subscriptions"][0];
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["customer"], format!("cus_{prefix}"));

    let invoice = &ledger["invoices"][0];
    assert_eq!(invoice["id"], format!("in_{prefix}"));
    assert_eq!(invoice["status"], "paid");
    assert_eq!(invoice["amount_paid"], 2000);
    assert_eq!(invoice["amount_remaining"], 0);
    assert_eq!(invoice["attempt_count"], 2);
    assert_eq!(invoice["subscription"], format!("sub_{prefix}"));
    assert_eq!(
        invoice["lines"],
        json!([["1 × Pro (at $20.00 / month)", 1, 2000]])
    );
    assert!(invoice["paid_at"].is_string());

    let payments = ledger["payments"].as_array().unwrap();
    assert_eq!(
        payments.len(),
        1,
        "the PaymentIntent, its charge and the invoice are one payment: {payments:?}"
    );
    let payment = &payments[0];
    assert_eq!(payment["id"], format!("pi_{prefix}"));
    assert_eq!(payment["status"], "partially_refunded");
    assert_eq!(payment["amount"], 2000);
    assert_eq!(payment["amount_refunded"], 500);
    assert_eq!(payment["charge"], format!("ch_{prefix}"));
    assert_eq!(payment["invoice"], format!("in_{prefix}"));
    assert_eq!(
        (
            payment["card_brand"].as_str(),
            payment["card_last4"].as_str()
        ),
        (Some("visa"), Some("4242"))
    );
    assert_eq!(
        payment["failure_message"],
        Value::Null,
        "the earlier failure is history once paid"
    );

    assert_eq!(
        ledger["refunds"],
        json!([{"id": format!("re_{prefix}"), "status": "succeeded", "amount": 500,
        "charge": format!("ch_{prefix}"), "reason": "requested_by_customer"}])
    );
    let dispute = &ledger["disputes"][0];
    assert_eq!(dispute["status"], "lost");
    assert_eq!(dispute["amount"], 1500);
    assert_eq!(dispute["reason"], "fraudulent");
    assert!(dispute["evidence_due_by"].is_string());
}

on_both_backends! {
    async fn a_payment_that_failed_then_succeeded_old_shape(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let ledger = deliver_story(&app, "paid_after_failure_old.json").await;
        assert_paid_after_failure(&ledger, "bmold");
    }

    async fn a_payment_that_failed_then_succeeded_basil_shape(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let ledger = deliver_story(&app, "paid_after_failure_basil.json").await;
        assert_paid_after_failure(&ledger, "bmbasil");
    }

    async fn a_failed_payment_marks_the_invoice_past_due_with_its_reason(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        // The old story up to and including the failed payment.
        for body in story("paid_after_failure_old.json").into_iter().take(6) {
            assert_eq!(app.deliver(&body).await.status(), 200);
        }
        app.settle().await;
        let ledger = app.ledger().await;
        let invoice = &ledger["invoices"][0];
        assert_eq!(invoice["status"], "past_due");
        assert_eq!(invoice["attempt_count"], 1);
        assert!(invoice["next_payment_attempt"].is_string());
        assert_eq!(invoice["last_payment_error"], "Your card has insufficient funds.");
        assert_eq!(ledger["payments"][0]["status"], "failed");
    }

    async fn a_voided_invoice_and_a_cancelled_subscription(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let ledger = deliver_story(&app, "void_and_cancel.json").await;
        assert_eq!(ledger["invoices"][0]["status"], "void");
        let subscription = &ledger["subscriptions"][0];
        assert_eq!(subscription["status"], "canceled");
        assert_eq!(subscription["cancel_at_period_end"], true);
        assert!(subscription["ended_at"].is_string() && subscription["canceled_at"].is_string());
    }

    async fn every_fixture_payload_applies(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/stripe/events");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "json") {
                let mut event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                // Delivered to a test-mode connection.
                event["livemode"] = json!(false);
                let response = app.deliver(&serde_json::to_string_pretty(&event).unwrap()).await;
                assert_eq!(response.status(), 200, "{}", path.display());
                count += 1;
            }
        }
        assert!(count >= 30, "only {count} fixtures");
        app.settle().await;
        let ops = app.token(billmirror::domain::Role::Ops);
        for status in ["retrying", "dead", "pending"] {
            let events: Value = app.get(&format!("/api/events?status={status}"), &ops).await.json().await.unwrap();
            assert_eq!(events["data"], json!([]), "{status}: {events}");
        }
        let ledger = app.ledger().await;
        for table in ["customers", "subscriptions", "invoices", "payments", "refunds", "disputes"] {
            assert!(!ledger[table].as_array().unwrap().is_empty(), "{table} stays empty");
        }
    }
}
