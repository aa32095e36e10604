//! What support sees is what Stripe knows: disputes flag their payments, every attempt of a
//! payment is listed with its decline reason, a truncated list never shrinks what is known, and
//! mirrored invoices carry Stripe's dates. On both backends.

use billmirror::domain::Role;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::TestApp;

fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": created,
           "livemode": false, "type": kind, "data": {"object": object}})
    .to_string()
}

fn customer(id: &str, email: &str) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": "Pat Doe", "created": 1_700_000_000})
}

/// A charge of PaymentIntent `pi`, as `charge.*` events carry it; `disputed` is left false, as
/// Stripe's `charge.succeeded` says before any dispute.
fn charge(id: &str, pi: &str, status: &str, created: i64) -> Value {
    let mut charge = json!({
        "id": id, "object": "charge", "amount": 6000, "currency": "usd", "customer": "cus_pat",
        "payment_intent": pi, "status": status, "created": created, "disputed": false,
        "amount_refunded": 0, "failure_code": null, "failure_message": null,
        "outcome": {"type": "authorized", "reason": null},
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
    });
    if status == "failed" {
        charge["failure_code"] = json!("card_declined");
        charge["failure_message"] = json!("Your card has insufficient funds.");
        charge["outcome"] = json!({"type": "issuer_declined", "reason": "insufficient_funds"});
        charge["payment_method_details"]["card"] = json!({"brand": "mastercard", "last4": "0341"});
    }
    charge
}

fn dispute(id: &str, charge: &str, pi: Option<&str>, status: &str) -> Value {
    json!({"id": id, "object": "dispute", "amount": 6000, "currency": "usd", "charge": charge,
           "payment_intent": pi, "reason": "fraudulent", "status": status,
           "evidence_details": {"due_by": 1_701_000_000}, "created": 1_700_200_000})
}

async fn context(app: &TestApp, email: &str) -> Value {
    let support = app.token(Role::Support);
    let response = app
        .get(&format!("/api/billing-context?email={email}"), &support)
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn lines(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("il_{i:04}"), "object": "line_item", "amount": 100,
                        "currency": "usd", "quantity": 1, "description": format!("Seat {i}")})
        })
        .collect()
}

fn invoice(id: &str, status: &str, lines: &[Value], has_more: bool) -> Value {
    json!({"id": id, "object": "invoice", "customer": "cus_pat", "customer_email": "pat@example.com",
           "status": status, "currency": "usd", "total": 36_200, "amount_due": 36_200,
           "amount_remaining": 36_200, "created": 1_700_000_000,
           "lines": {"object": "list", "data": lines, "has_more": has_more,
                     "url": format!("/v1/invoices/{id}/lines")}})
}

async fn invoice_by_stripe_id(app: &TestApp, stripe_id: &str) -> Value {
    let support = app.token(Role::Support);
    let list: Value = app
        .get("/api/invoices?limit=100", &support)
        .await
        .json()
        .await
        .unwrap();
    let id = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["stripe_invoice_id"] == stripe_id)
        .unwrap_or_else(|| panic!("{stripe_id} is not listed: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get(&format!("/api/invoices/{id}"), &support)
        .await
        .json()
        .await
        .unwrap()
}

on_both_backends! {
    async fn a_payment_with_a_dispute_is_flagged_without_a_charge_updated(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let bodies = [
            event("evt_c", "customer.created", 1_700_000_000, customer("cus_pat", "pat@example.com")),
            event("evt_1", "charge.succeeded", 1_700_000_010, charge("ch_open", "pi_open", "succeeded", 1_700_000_010)),
            event("evt_2", "charge.succeeded", 1_700_000_020, charge("ch_lost", "pi_lost", "succeeded", 1_700_000_020)),
            event("evt_3", "charge.succeeded", 1_700_000_030, charge("ch_fine", "pi_fine", "succeeded", 1_700_000_030)),
            // Since basil a dispute names its PaymentIntent; older ones only the charge.
            event("evt_4", "charge.dispute.created", 1_700_200_000, dispute("dp_open", "ch_open", Some("pi_open"), "needs_response")),
            event("evt_5", "charge.dispute.created", 1_700_200_001, dispute("dp_lost", "ch_lost", None, "needs_response")),
            event("evt_6", "charge.dispute.closed", 1_700_300_000, dispute("dp_lost", "ch_lost", None, "lost")),
        ];
        for body in &bodies {
            assert_eq!(app.deliver(body).await.status(), 200);
        }
        app.settle().await;
        let context = context(&app, "pat@example.com").await;
        let payments = context["payments"].as_array().unwrap();
        let by = |charge: &str| payments.iter().find(|p| p["charge"] == charge).unwrap().clone();
        assert_eq!(by("ch_open")["disputed"], true);
        assert_eq!(by("ch_open")["dispute"]["id"], "dp_open");
        assert_eq!(by("ch_open")["dispute"]["status"], "needs_response");
        assert_eq!(by("ch_open")["dispute"]["evidence_due_by"], "2023-11-26T12:00:00Z");
        assert_eq!(by("ch_lost")["disputed"], true);
        assert_eq!(by("ch_lost")["dispute"]["status"], "lost");
        assert_eq!(by("ch_fine")["disputed"], false);
        assert_eq!(by("ch_fine")["dispute"], Value::Null);
    }

    async fn every_attempt_of_a_payment_is_listed_with_its_decline_reason(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let failed_intent = json!({
            "id": "pi_pat", "object": "payment_intent", "amount": 6000, "currency": "usd",
            "customer": "cus_pat", "status": "requires_payment_method", "created": 1_700_000_000,
            "latest_charge": "ch_declined",
            "last_payment_error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "charge": "ch_declined", "message": "Your card has insufficient funds."},
        });
        let mut succeeded_intent = failed_intent.clone();
        succeeded_intent["status"] = json!("succeeded");
        succeeded_intent["latest_charge"] = json!("ch_paid");
        succeeded_intent["last_payment_error"] = Value::Null;
        let bodies = [
            event("evt_c", "customer.created", 1_700_000_000, customer("cus_pat", "pat@example.com")),
            // Delivered out of order: the success before the failure it followed.
            event("evt_4", "payment_intent.succeeded", 1_700_000_200, succeeded_intent),
            event("evt_3", "charge.succeeded", 1_700_000_200, charge("ch_paid", "pi_pat", "succeeded", 1_700_000_200)),
            event("evt_2", "payment_intent.payment_failed", 1_700_000_100, failed_intent),
            event("evt_1", "charge.failed", 1_700_000_100, charge("ch_declined", "pi_pat", "failed", 1_700_000_100)),
        ];
        for body in &bodies {
            assert_eq!(app.deliver(body).await.status(), 200);
        }
        app.settle().await;
        let context = context(&app, "PAT@example.com").await;
        let payments = context["payments"].as_array().unwrap();
        assert_eq!(payments.len(), 1, "one payment: {payments:?}");
        let payment = &payments[0];
        assert_eq!(payment["status"], "succeeded");
        let attempts = payment["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        assert_eq!(attempts[0]["charge"], "ch_declined");
        assert_eq!(attempts[0]["status"], "failed");
        assert_eq!(attempts[0]["failure_code"], "card_declined");
        assert_eq!(attempts[0]["decline_code"], "insufficient_funds");
        assert_eq!(attempts[0]["failure_message"], "Your card has insufficient funds.");
        assert_eq!(attempts[0]["method"], json!({"type": "card", "brand": "mastercard", "last4": "0341"}));
        assert_eq!(attempts[0]["amount_display"], "60.00 USD");
        assert_eq!(attempts[0]["created"], "2023-11-14T22:15:00Z");
        assert_eq!(attempts[1]["charge"], "ch_paid");
        assert_eq!(attempts[1]["status"], "succeeded");
        assert_eq!(attempts[1]["decline_code"], Value::Null);
        assert_eq!(attempts[1]["method"]["last4"], "4242");
    }

    async fn a_truncated_list_of_lines_never_shrinks_a_longer_known_one(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let all = lines(362);
        let bodies = [
            event("evt_c", "customer.created", 1_700_000_000, customer("cus_pat", "pat@example.com")),
            event("evt_1", "invoice.created", 1_700_000_000, invoice("in_long", "draft", &all, false)),
            event("evt_2", "invoice.finalized", 1_700_000_100, invoice("in_long", "open", &all[..10], true)),
            event("evt_3", "invoice.updated", 1_700_000_200, invoice("in_long", "open", &all[..10], true)),
        ];
        for body in &bodies {
            assert_eq!(app.deliver(body).await.status(), 200);
        }
        app.settle().await;
        let detail = invoice_by_stripe_id(&app, "in_long").await;
        assert_eq!(detail["lines"].as_array().unwrap().len(), 362);
        assert_eq!(detail["lines_complete"], true);
        assert_eq!(detail["status"], "open");
    }

    async fn lines_cut_by_stripe_are_read_in_the_background_until_complete(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let secret = "whsec_lines_reader_test_secret_000001";
        let created: Value = app
            .post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY, "webhook_secret": secret}))
            .await
            .json()
            .await
            .unwrap();
        let connection = created["id"].as_str().unwrap().to_owned();
        let all = lines(25);
        let mut seeded = invoice("in_cut", "open", &all[..10], true);
        seeded["all_lines"] = json!(all);
        fake.seed(ACCOUNT, "invoices", vec![seeded]);

        // Stripe's event shows the first ten lines and says there are more.
        let body = event("evt_cut", "invoice.finalized", 1_700_000_100, invoice("in_cut", "open", &all[..10], true));
        let path = format!("/webhooks/stripe/{connection}");
        assert_eq!(app.deliver_to(&path, secret, &body).await.status(), 200);

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let detail = loop {
            app.settle().await;
            let detail = invoice_by_stripe_id(&app, "in_cut").await;
            if detail["lines_complete"] == true {
                break detail;
            }
            assert_eq!(detail["lines"].as_array().unwrap().len(), 10, "the first page meanwhile");
            assert!(std::time::Instant::now() < deadline, "the lines were never completed: {detail}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let descriptions: Vec<&str> = detail["lines"].as_array().unwrap().iter().map(|l| l["description"].as_str().unwrap()).collect();
        assert_eq!(descriptions.len(), 25);
        assert_eq!((descriptions[0], descriptions[24]), ("Seat 0", "Seat 24"));
        assert!(fake.calls().iter().any(|c| c.path == "/v1/invoices/in_cut/lines"), "read from Stripe's lines endpoint");

        // A later event's first page does not undo the completed list.
        let later = event("evt_later", "invoice.updated", 1_700_000_200, invoice("in_cut", "open", &all[..10], true));
        assert_eq!(app.deliver_to(&path, secret, &later).await.status(), 200);
        app.settle().await;
        let detail = invoice_by_stripe_id(&app, "in_cut").await;
        assert_eq!(detail["lines"].as_array().unwrap().len(), 25);
    }

    async fn a_mirrored_invoice_carries_stripes_dates_and_says_it_is_mirrored(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut paid = invoice("in_stripe", "paid", &lines(2), false);
        paid["status_transitions"] = json!({"finalized_at": 1_700_000_100, "paid_at": 1_700_000_200});
        let bodies = [
            event("evt_1", "invoice.created", 1_700_000_000, invoice("in_stripe", "draft", &lines(2), false)),
            event("evt_2", "invoice.paid", 1_700_000_200, paid),
        ];
        for body in &bodies {
            assert_eq!(app.deliver(body).await.status(), 200);
        }
        app.settle().await;
        let detail = invoice_by_stripe_id(&app, "in_stripe").await;
        assert_eq!(detail["created_at"], "2023-11-14T22:13:20Z", "Stripe's `created`, not our clock");
        assert_eq!(detail["sync"], "mirrored");
        assert_eq!(detail["origin"], "stripe");
        let timeline: Vec<&str> = detail["timeline"].as_array().unwrap().iter().map(|t| t["what"].as_str().unwrap()).collect();
        assert_eq!(timeline, ["invoice.finalized", "invoice.paid"]);
    }
}
