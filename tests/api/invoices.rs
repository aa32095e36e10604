//! Payable invoices end to end against the fake Stripe: created here, pushed exactly once through
//! faults and forgotten idempotency keys, paid by webhook, voided, refused with named fields.

use std::time::{Duration, Instant};

use billmirror::domain::Role;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_stripe::{Access, FakeStripe, Fault, ACCOUNT, SECRET_KEY};
use crate::support::TestApp;

pub const SIGNING: &str = "whsec_invoiceTestsSigningSecret000000";

/// An API connection to the fake's account, with a signing secret; returns its id.
pub async fn connect(app: &TestApp, key: &str) -> String {
    let ops = app.token(Role::Ops);
    let response = app
        .post_json(
            "/api/connections",
            &ops,
            &json!({"secret_key": key, "webhook_secret": SIGNING}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    view["id"].as_str().unwrap().to_owned()
}

pub fn invoice_body(email: &str) -> Value {
    json!({
        "customer": {"email": email, "name": "Ada Lovelace"},
        "currency": "usd",
        "lines": [
            {"description": "Analytical engine tuning", "quantity": 3, "unit_amount": 12_500},
            {"description": "Travel", "quantity": 1, "unit_amount": 4_999},
        ],
        "days_until_due": 14,
        "memo": "Thank you for your business.",
    })
}

pub async fn create(app: &TestApp, token: &str, body: &Value) -> Value {
    let response = app.post_json("/api/invoices", token, body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.unwrap()
}

/// Polls an invoice until `done` holds (at most `seconds`).
pub async fn wait_for(
    app: &TestApp,
    id: &str,
    seconds: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let support = app.token(Role::Support);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let invoice: Value = app
            .get(&format!("/api/invoices/{id}"), &support)
            .await
            .json()
            .await
            .unwrap();
        if done(&invoice) {
            return invoice;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {invoice}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn deliver(app: &TestApp, connection: &str, event: &Value) {
    let path = format!("/webhooks/stripe/{connection}");
    let response = app.deliver_to(&path, SIGNING, &event.to_string()).await;
    assert_eq!(response.status(), 200);
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

on_both_backends! {
    async fn an_invoice_is_pushed_paid_by_webhook_and_shows_its_payment(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let connection = connect(&app, SECRET_KEY).await;
        let finance = app.token(Role::Finance);

        let created = create(&app, &finance, &invoice_body("Ada@Example.com")).await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["total"], 42_499);
        assert_eq!(created["total_display"], "424.99 USD");
        assert_eq!(created["lines"].as_array().unwrap().len(), 2);
        let pay_url = created["pay_url"].as_str().unwrap().to_owned();
        assert!(pay_url.starts_with("https://billmirror.example.com/pay/"));
        assert!(!pay_url.contains(&id), "the link does not reveal the invoice id");

        let pushed = wait_for(&app, &id, 20, |i| i["sync"] == "pushed").await;
        assert_eq!(pushed["status"], "open");
        let stripe_id = pushed["stripe_invoice_id"].as_str().unwrap().to_owned();
        assert!(pushed["number"].as_str().unwrap().starts_with("FAKE-"));
        let hosted = pushed["hosted_invoice_url"].as_str().unwrap().to_owned();

        let invoices = fake.objects(ACCOUNT, "invoices");
        assert_eq!(invoices.len(), 1);
        let remote = &invoices[0];
        assert_eq!(remote["metadata"]["billmirror_invoice_id"], id.as_str());
        assert_eq!(remote["collection_method"], "send_invoice");
        assert_eq!(remote["days_until_due"], 14);
        assert_eq!(remote["total"], 42_499);
        let customers = fake.objects(ACCOUNT, "customers");
        assert_eq!(customers.len(), 1);
        // One customer per person: made under the normalised address, then named.
        assert_eq!(customers[0]["email"], "ada@example.com");
        assert_eq!(customers[0]["name"], "Ada Lovelace");
        let posts: Vec<_> = fake.calls().into_iter().filter(|c| c.method == "POST").collect();
        assert!(posts.iter().all(|c| c.idempotency_key.as_deref().is_some_and(|k| k.starts_with("bm:"))), "{posts:?}");

        // Pay Now: to Stripe's hosted page while open.
        let token_path = pay_url.trim_start_matches("https://billmirror.example.com");
        let redirect = no_redirects().get(app.url(token_path)).send().await.unwrap();
        assert_eq!(redirect.status(), 303);
        assert_eq!(redirect.headers()["location"], hosted.as_str());

        // The customer pays; Stripe's webhooks come back.
        for event in fake.pay_invoice(ACCOUNT, &stripe_id) {
            deliver(&app, &connection, &event).await;
        }
        app.settle().await;
        let paid = wait_for(&app, &id, 10, |i| i["status"] == "paid").await;
        assert_eq!(paid["amount_paid"], 42_499);
        assert_eq!(paid["origin"], "billmirror");
        let payments = paid["payments"].as_array().unwrap();
        assert_eq!(payments.len(), 1, "{paid}");
        assert_eq!(payments[0]["status"], "succeeded");
        assert_eq!(payments[0]["amount"], 42_499);
        let timeline: Vec<&str> = paid["timeline"].as_array().unwrap().iter().map(|t| t["what"].as_str().unwrap()).collect();
        for step in ["invoice.create", "invoice.pushed", "invoice.finalized", "invoice.paid"] {
            assert!(timeline.contains(&step), "{timeline:?}");
        }

        // The echo linked back to our invoice: no second, mirrored row.
        let support = app.token(Role::Support);
        let mirrored: Value = app.get("/api/invoices?origin=stripe", &support).await.json().await.unwrap();
        assert_eq!(mirrored["data"].as_array().unwrap().len(), 0, "{mirrored}");
        let by_email: Value = app.get("/api/invoices?email=ADA@example.com&status=paid", &support).await.json().await.unwrap();
        assert_eq!(by_email["data"].as_array().unwrap().len(), 1, "{by_email}");

        let page = no_redirects().get(app.url(token_path)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let text = page.text().await.unwrap();
        assert!(text.contains("Already paid") && !text.contains("424.99") && !text.contains("Ada"), "{text}");

        // An invoice created directly in Stripe is mirrored and flagged so.
        let foreign = json!({"id": "evt_foreign_1", "object": "event", "created": 1_700_000_000, "livemode": false,
            "type": "invoice.finalized", "data": {"object": {"id": "in_foreign_1", "object": "invoice", "status": "open",
            "currency": "eur", "total": 1000, "amount_due": 1000, "amount_remaining": 1000, "customer_email": "bob@example.com"}}});
        deliver(&app, &connection, &foreign).await;
        app.settle().await;
        let mirrored: Value = app.get("/api/invoices?origin=stripe", &support).await.json().await.unwrap();
        assert_eq!(mirrored["data"][0]["stripe_invoice_id"], "in_foreign_1");
        assert_eq!(mirrored["data"][0]["pay_url"], Value::Null);
    }

    async fn bad_invoices_are_refused_naming_the_field(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let finance = app.token(Role::Finance);
        let none = app.post_json("/api/invoices", &finance, &invoice_body("a@example.com")).await;
        assert_eq!(none.status(), 422);
        let none: Value = none.json().await.unwrap();
        assert_eq!(none["error"]["code"], "no_connection");

        let read_only_key = "rk_test_51FakeReadOnlyInvoiceKey0000000000";
        fake.add_key(read_only_key, ACCOUNT, Access::read_only());
        let read_only = connect(&app, read_only_key).await;
        let mut body = invoice_body("a@example.com");
        body["connection_id"] = json!(read_only);
        let refused: Value = app.post_json("/api/invoices", &finance, &body).await.json().await.unwrap();
        assert_eq!(refused["error"]["code"], "connection_read_only");
        assert_eq!(refused["error"]["details"]["field"], "connection_id");

        let cases = [
            (json!({"currency": "usdd"}), "invalid_currency", "currency"),
            (json!({"lines": [{"description": "x", "quantity": 1, "unit_amount": 0}]}), "invalid_amount", "lines[0].unit_amount"),
            (json!({"lines": [{"description": "x", "quantity": 1, "unit_amount": -100}]}), "invalid_amount", "lines[0].unit_amount"),
            (json!({"lines": [{"description": "x", "quantity": 1, "unit_amount": 100_000_000}]}), "amount_too_large", "lines[0].unit_amount"),
            (json!({"lines": [{"description": "x", "quantity": 9_000_000_000_000i64, "unit_amount": 90_000_000}]}), "amount_too_large", "lines[0].quantity"),
            (json!({"lines": [{"description": "x", "quantity": 100, "unit_amount": 90_000_000}]}), "amount_too_large", "lines[0]"),
            (json!({"lines": []}), "no_lines", "lines"),
            (json!({"customer": {"email": "not-an-email"}}), "invalid_email", "customer.email"),
        ];
        for (changes, code, field) in cases {
            let mut body = invoice_body("a@example.com");
            for (k, v) in changes.as_object().unwrap() {
                body[k] = v.clone();
            }
            let response = app.post_json("/api/invoices", &finance, &body).await;
            assert_eq!(response.status(), 422, "{changes}");
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["error"]["code"], code, "{answer}");
            assert_eq!(answer["error"]["details"]["field"], field, "{answer}");
            assert!(answer["error"]["message"].as_str().unwrap().starts_with(field), "{answer}");
        }

        let support = app.token(Role::Support);
        assert_eq!(app.post_json("/api/invoices", &support, &invoice_body("a@example.com")).await.status(), 403);
    }

    async fn an_idempotency_key_makes_retries_and_races_return_one_invoice(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        connect(&app, SECRET_KEY).await;
        let finance = app.token(Role::Finance);
        let body = invoice_body("race@example.com");
        let send = |key: &'static str, body: Value| {
            let request = app.client.post(app.url("/api/invoices")).bearer_auth(&finance).header("Idempotency-Key", key).json(&body);
            async move { request.send().await.unwrap() }
        };
        let (a, b) = tokio::join!(send("order-1", body.clone()), send("order-1", body.clone()));
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        let a: Value = a.json().await.unwrap();
        let b: Value = b.json().await.unwrap();
        assert_eq!(a["id"], b["id"], "{a} {b}");
        assert!(statuses.contains(&201) && statuses.contains(&200), "{statuses:?}");
        let again = send("order-1", body.clone()).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let mut other = body.clone();
        other["memo"] = json!("changed");
        let reused = send("order-1", other).await;
        assert_eq!(reused.status(), 422);
        let support = app.token(Role::Support);
        let all: Value = app.get("/api/invoices", &support).await.json().await.unwrap();
        assert_eq!(all["data"].as_array().unwrap().len(), 1);
        let id = a["id"].as_str().unwrap();
        wait_for(&app, id, 20, |i| i["sync"] == "pushed").await;
        assert_eq!(fake.objects(ACCOUNT, "invoices").len(), 1);
    }

    async fn two_hundred_invoices_push_exactly_once_while_stripe_fails_a_third_of_calls(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &[
            ("STRIPE_API_BASE", &fake.base_url), ("STRIPE_TIMEOUT_SECS", "1"),
        ]).await;
        let connection = connect(&app, SECRET_KEY).await;
        // Stripe's own events for every invoice come back while it is being pushed, and search
        // lags writes as Stripe's does.
        fake.send_webhooks_to(&app.url(&format!("/webhooks/stripe/{connection}")), SIGNING);
        fake.set_search_lag(Duration::from_secs(30));
        fake.set_fault_rate(0.3, &[
            Fault::Unavailable,
            // Stored under the key and replayed, before and after Stripe did the work.
            Fault::ServerError,
            Fault::ServerErrorAfterWork,
            Fault::RateLimited { retry_after: 0 },
            Fault::DropAfterWork,
            Fault::SlowAfterWork { delay: Duration::from_millis(1300) },
        ]);
        let finance = app.token(Role::Finance);
        let mut ids = Vec::new();
        for n in 0..200 {
            // One person, typed three ways.
            let email = match n % 3 {
                0 => format!("customer{}@example.com", n % 20),
                1 => format!("Customer{}@Example.com", n % 20),
                _ => format!("CUSTOMER{}@EXAMPLE.COM", n % 20),
            };
            let mut body = invoice_body(&email);
            body["lines"] = json!([{"description": format!("Order {n}"), "quantity": 1, "unit_amount": 1000 + n}]);
            ids.push(create(&app, &finance, &body).await["id"].as_str().unwrap().to_owned());
        }
        let support = app.token(Role::Support);
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let all: Value = app.get("/api/invoices?limit=500", &support).await.json().await.unwrap();
            let pending = all["data"].as_array().unwrap().iter().filter(|i| i["sync"] == "pending").count();
            if pending == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{pending} still pending");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let all: Value = app.get("/api/invoices?limit=500", &support).await.json().await.unwrap();
        let all = all["data"].as_array().unwrap();
        assert_eq!(all.len(), 200);
        assert!(all.iter().all(|i| i["sync"] == "pushed" && i["status"] == "open"), "{:?}",
            all.iter().filter(|i| i["sync"] != "pushed").collect::<Vec<_>>());

        let calls = fake.calls();
        let faults = calls.iter().filter(|c| c.status >= 429).count();
        assert!(faults > 100, "faults were injected: {faults}");
        let remote = fake.objects(ACCOUNT, "invoices");
        assert_eq!(remote.len(), 200, "exactly one Stripe invoice per invoice");
        let mut ours: Vec<&str> = remote.iter().map(|i| i["metadata"]["billmirror_invoice_id"].as_str().unwrap()).collect();
        ours.sort();
        ours.dedup();
        assert_eq!(ours.len(), 200);
        assert!(remote.iter().all(|i| i["lines"]["data"].as_array().unwrap().len() == 1), "one item each");
        // Each Stripe invoice bills our line and total, and ours still shows them.
        app.settle().await;
        let ours: std::collections::HashMap<&str, &Value> = all.iter().map(|i| (i["id"].as_str().unwrap(), i)).collect();
        for invoice in &remote {
            let local = ours[invoice["metadata"]["billmirror_invoice_id"].as_str().unwrap()];
            assert_eq!(invoice["total"], local["total"], "{invoice} {local}");
            assert_eq!(invoice["status"], "open");
        }
        for id in ids.iter().step_by(17) {
            let detail: Value = app.get(&format!("/api/invoices/{id}"), &support).await.json().await.unwrap();
            assert_eq!(detail["lines"].as_array().unwrap().len(), 1, "{detail}");
            assert_eq!(detail["lines"][0]["amount"], detail["total"], "{detail}");
            assert!(detail["total"].as_i64().unwrap() >= 1000, "{detail}");
        }
        assert!(fake.events(ACCOUNT).len() > 600, "Stripe's echoes were sent");
        let customers = fake.objects(ACCOUNT, "customers");
        let mut emails: Vec<&str> = customers.iter().map(|c| c["email"].as_str().unwrap()).collect();
        emails.sort();
        emails.dedup();
        assert_eq!((customers.len(), emails.len()), (20, 20), "one customer per normalised email");
    }

    async fn a_push_resumed_after_stripe_forgot_its_keys_creates_no_duplicate(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("STRIPE_MAX_ATTEMPTS", "1")]).await;
        connect(&app, SECRET_KEY).await;
        fake.forget_keys_always();
        // The invoice and its first line are made in Stripe, but both answers are lost; each
        // attempt comes as if a day had passed, so no idempotency key protects the next one.
        fake.queue_faults(&[Fault::Pass, Fault::Pass, Fault::Pass, Fault::DropAfterWork,
            Fault::Pass, Fault::Pass, Fault::DropAfterWork]);
        let finance = app.token(Role::Finance);
        let created = create(&app, &finance, &invoice_body("late@example.com")).await;
        let id = created["id"].as_str().unwrap();
        wait_for(&app, id, 20, |i| i["sync"] == "pushed").await;
        let remote = fake.objects(ACCOUNT, "invoices");
        assert_eq!(remote.len(), 1, "{remote:?}");
        assert_eq!(remote[0]["lines"]["data"].as_array().unwrap().len(), 2, "two lines, none twice");
        assert_eq!(remote[0]["status"], "open");
        let creates = fake.calls().into_iter().filter(|c| c.method == "POST" && c.path == "/v1/invoices").count();
        assert_eq!(creates, 1, "the resumed push found the invoice instead of creating it again");
    }

    async fn a_refused_push_shows_stripes_message_and_can_be_retried(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        connect(&app, SECRET_KEY).await;
        fake.queue_faults(&[Fault::BadRequest]);
        let finance = app.token(Role::Finance);
        let id = create(&app, &finance, &invoice_body("refused@example.com")).await["id"].as_str().unwrap().to_owned();
        let failed = wait_for(&app, &id, 20, |i| i["sync"] == "failed").await;
        assert!(failed["sync_error"].as_str().unwrap().contains("Amount must be no more than $999,999.99"), "{failed}");
        let after_connect = fake.calls().into_iter().skip_while(|c| c.path != "/v1/customers").count();
        assert_eq!(after_connect, 1, "a 400 is not retried");
        let retried = app.post_json(&format!("/api/invoices/{id}/retry"), &finance, &json!({})).await;
        assert_eq!(retried.status(), 200);
        let pushed = wait_for(&app, &id, 20, |i| i["sync"] == "pushed").await;
        assert_eq!(pushed["sync_error"], Value::Null);
        let again = app.post_json(&format!("/api/invoices/{id}/retry"), &finance, &json!({})).await;
        assert_eq!(again.status(), 409);
    }

    async fn voiding_cancels_an_unsent_push_voids_a_sent_one_and_refuses_a_paid_one(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let connection = connect(&app, SECRET_KEY).await;
        let finance = app.token(Role::Finance);

        fake.go_down(503);
        let unsent = create(&app, &finance, &invoice_body("v1@example.com")).await;
        let unsent_id = unsent["id"].as_str().unwrap();
        let pay = unsent["pay_url"].as_str().unwrap().trim_start_matches("https://billmirror.example.com").to_owned();
        let preparing = no_redirects().get(app.url(&pay)).send().await.unwrap();
        assert_eq!(preparing.status(), 200);
        assert_eq!(preparing.headers()["retry-after"], "5");
        assert!(preparing.text().await.unwrap().contains("being prepared"));
        let voided: Value = app.post_json(&format!("/api/invoices/{unsent_id}/void"), &finance, &json!({})).await.json().await.unwrap();
        assert_eq!((voided["status"].as_str(), voided["sync"].as_str()), (Some("void"), Some("cancelled")));
        fake.recover();

        let sent = create(&app, &finance, &invoice_body("v2@example.com")).await;
        let sent_id = sent["id"].as_str().unwrap();
        let pushed = wait_for(&app, sent_id, 30, |i| i["sync"] == "pushed").await;
        let voided = app.post_json(&format!("/api/invoices/{sent_id}/void"), &finance, &json!({})).await;
        assert_eq!(voided.status(), 200);
        let remote = fake.objects(ACCOUNT, "invoices");
        assert_eq!(remote.len(), 1, "the unsent invoice never reached Stripe");
        assert_eq!(remote[0]["status"], "void");
        assert_eq!(remote[0]["id"], pushed["stripe_invoice_id"]);

        let paid = create(&app, &finance, &invoice_body("v3@example.com")).await;
        let paid_id = paid["id"].as_str().unwrap();
        let pushed = wait_for(&app, paid_id, 30, |i| i["sync"] == "pushed").await;
        for event in fake.pay_invoice(ACCOUNT, pushed["stripe_invoice_id"].as_str().unwrap()) {
            deliver(&app, &connection, &event).await;
        }
        wait_for(&app, paid_id, 10, |i| i["status"] == "paid").await;
        let refused = app.post_json(&format!("/api/invoices/{paid_id}/void"), &finance, &json!({})).await;
        assert_eq!(refused.status(), 409);
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["error"]["code"], "invoice_paid");
    }

    async fn zero_decimal_amounts_are_shown_right(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        connect(&app, SECRET_KEY).await;
        let finance = app.token(Role::Finance);
        let mut body = invoice_body("yen@example.com");
        body["currency"] = json!("JPY");
        body["lines"] = json!([{"description": "Tea", "quantity": 2, "unit_amount": 1500}]);
        let created = create(&app, &finance, &body).await;
        assert_eq!(created["currency"], "jpy");
        assert_eq!(created["total"], 3000);
        assert_eq!(created["total_display"], "3,000 JPY");
        assert_eq!(created["lines"][0]["amount_display"], "3,000 JPY");
        let unknown = no_redirects().get(app.url("/pay/00000000000000000000000000000000")).send().await.unwrap();
        assert_eq!(unknown.status(), 404);
    }
}
