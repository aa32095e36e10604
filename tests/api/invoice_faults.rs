//! What Stripe does to a push that the happy path never shows: the webhook echo of our own
//! invoice arriving mid-push, 500s that Stripe stores under an idempotency key and replays,
//! one person typed three ways, invoices longer than a page, and a void in the middle.

use std::time::Duration;

use billmirror::domain::Role;
use serde_json::{json, Value};

use crate::invoices::{connect, create, deliver, invoice_body, wait_for, SIGNING};
use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, Fault, ACCOUNT, SECRET_KEY};
use crate::support::TestApp;

/// Events of `event_type` the app has applied.
async fn applied(app: &TestApp, kind: &'static str) -> i64 {
    app.db
        .run(move |conn| {
            use billmirror::storage::schema::webhook_events::dsl::*;
            use diesel::prelude::*;
            Ok(webhook_events
                .filter(event_type.eq(kind))
                .filter(status.eq("applied"))
                .count()
                .get_result::<i64>(conn)?)
        })
        .await
        .unwrap()
}

async fn wait_applied(app: &TestApp, kind: &'static str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while applied(app, kind).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} was applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stripe sends its events for this connection to the app, signed.
fn webhooks_to(app: &TestApp, fake: &FakeStripe, connection: &str) {
    fake.send_webhooks_to(&app.url(&format!("/webhooks/stripe/{connection}")), SIGNING);
}

fn posts_to(fake: &FakeStripe, path: &str) -> Vec<crate::support::fake_stripe::Call> {
    fake.calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path == path && c.status == 200)
        .collect()
}

on_both_backends! {
    async fn our_invoice_keeps_its_lines_and_total_through_stripes_echo_and_stored_500s(backend: Backend) {
        let fake = FakeStripe::start().await;
        // The retries' backoff stays at most a second, so the push resumes soon after the faults
        // clear however long a loaded machine took to get there (the default cap is 10 minutes).
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("JOB_RETRY_MAX_SECS", "1")]).await;
        let connection = connect(&app, SECRET_KEY).await;
        webhooks_to(&app, &fake, &connection);
        // Every invoice item Stripe is asked for answers a 500, stored under its key.
        fake.fail_next("POST", "/v1/invoiceitems", Fault::ServerError, 1_000);
        let finance = app.token(Role::Finance);
        let id = create(&app, &finance, &invoice_body("echo@example.com")).await["id"].as_str().unwrap().to_owned();

        // Stripe's `invoice.created` for our draft (no lines, total 0) arrives mid-push.
        wait_applied(&app, "invoice.created").await;
        let echo = fake.events(ACCOUNT).into_iter().find(|e| e["type"] == "invoice.created").unwrap();
        assert_eq!(echo["data"]["object"]["total"], 0, "{echo}");
        // The invoice is linked before its first item fails: wait for both, not just the link.
        let mid = wait_for(&app, &id, 20, |i| i["stripe_invoice_id"].is_string() && i["sync_error"].is_string()).await;
        assert_eq!(mid["total"], 42_499, "{mid}");
        assert_eq!(mid["lines"].as_array().unwrap().len(), 2, "{mid}");
        assert_eq!(mid["sync"], "pending");
        assert!(mid["sync_error"].as_str().unwrap().contains("new key"), "{mid}");

        fake.clear_targeted_faults();
        let pushed = wait_for(&app, &id, 60, |i| i["sync"] == "pushed").await;
        assert_eq!((pushed["status"].as_str(), pushed["total"].as_i64()), (Some("open"), Some(42_499)), "{pushed}");
        let remote = fake.objects(ACCOUNT, "invoices");
        assert_eq!(remote.len(), 1);
        assert_eq!(remote[0]["total"], 42_499, "Stripe bills our total");
        assert_eq!(remote[0]["lines"]["data"].as_array().unwrap().len(), 2);
        // Each retried line went out under a new key once its stored 500 was seen.
        let item_keys: Vec<String> = fake.calls().into_iter()
            .filter(|c| c.method == "POST" && c.path == "/v1/invoiceitems")
            .filter_map(|c| c.idempotency_key).collect();
        assert!(item_keys.iter().any(|k| k.contains(":r1")), "{item_keys:?}");

        // Stripe's own events (created, updated per item, finalized) and then the payment.
        wait_applied(&app, "invoice.finalized").await;
        for event in fake.pay_invoice(ACCOUNT, remote[0]["id"].as_str().unwrap()) {
            deliver(&app, &connection, &event).await;
        }
        app.settle().await;
        let paid = wait_for(&app, &id, 20, |i| i["status"] == "paid").await;
        assert_eq!((paid["total"].as_i64(), paid["amount_paid"].as_i64()), (Some(42_499), Some(42_499)), "{paid}");
        assert_eq!(paid["lines"].as_array().unwrap().len(), 2, "{paid}");
    }

    async fn a_draft_that_differs_from_ours_is_not_finalized(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        connect(&app, SECRET_KEY).await;
        // While the finalize cannot get through, someone adds an item to the draft in Stripe.
        fake.fail_next("POST", "/v1/invoices/*/finalize", Fault::Unavailable, 100_000);
        let finance = app.token(Role::Finance);
        let id = create(&app, &finance, &invoice_body("differs@example.com")).await["id"].as_str().unwrap().to_owned();
        let linked = wait_for(&app, &id, 20, |i| i["stripe_invoice_id"].is_string() && i["sync_error"].is_string()).await;
        let stripe_id = linked["stripe_invoice_id"].as_str().unwrap().to_owned();
        let extra = reqwest::Client::new()
            .post(format!("{}/v1/invoiceitems", fake.base_url))
            .bearer_auth(SECRET_KEY)
            .form(&[("invoice", stripe_id.as_str()), ("customer", "x"), ("currency", "usd"), ("quantity", "1"), ("unit_amount_decimal", "700")])
            .send().await.unwrap();
        assert_eq!(extra.status(), 200);
        let failed = wait_for(&app, &id, 30, |i| i["sync"] == "failed").await;
        let error = failed["sync_error"].as_str().unwrap();
        assert!(error.contains("has 3 lines totalling 431.99 USD") && error.contains("has 2 lines totalling 424.99 USD"), "{error}");
        assert_eq!(fake.objects(ACCOUNT, "invoices")[0]["status"], "draft", "never finalized");
    }

    async fn stored_500s_on_every_step_are_looked_up_then_sent_under_a_new_key(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("STRIPE_MAX_ATTEMPTS", "1")]).await;
        connect(&app, SECRET_KEY).await;
        // Each step first gets a 500 before Stripe did anything, then one after it did the
        // work; Stripe keeps either answer for the key.
        for path in ["/v1/customers", "/v1/invoices", "/v1/invoiceitems", "/v1/invoices/*/finalize"] {
            fake.fail_next("POST", path, Fault::ServerError, 1);
            fake.fail_next("POST", path, Fault::ServerErrorAfterWork, 1);
        }
        let finance = app.token(Role::Finance);
        let first = create(&app, &finance, &invoice_body("stored@example.com")).await["id"].as_str().unwrap().to_owned();
        let second = create(&app, &finance, &invoice_body("stored@example.com")).await["id"].as_str().unwrap().to_owned();
        for id in [&first, &second] {
            let pushed = wait_for(&app, id, 60, |i| i["sync"] == "pushed").await;
            assert_eq!(pushed["status"], "open", "{pushed}");
        }
        assert_eq!(fake.objects(ACCOUNT, "customers").len(), 1, "one customer for the address");
        let invoices = fake.objects(ACCOUNT, "invoices");
        assert_eq!(invoices.len(), 2, "one Stripe invoice each");
        for invoice in &invoices {
            assert_eq!(invoice["lines"]["data"].as_array().unwrap().len(), 2, "no line twice: {invoice}");
            assert_eq!((invoice["total"].as_i64(), invoice["status"].as_str()), (Some(42_499), Some("open")));
        }
        assert_eq!(fake.objects(ACCOUNT, "invoiceitems").len(), 4);
    }

    async fn one_stripe_customer_per_person_whatever_the_letter_case(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        connect(&app, SECRET_KEY).await;
        // Search finds nothing made in the last minute; the exact email list must.
        fake.set_search_lag(Duration::from_secs(60));
        fake.seed(ACCOUNT, "customers", vec![json!({"id": "cus_0000made_in_stripe", "object": "customer",
            "email": "Sam@Example.COM", "name": "Sam", "metadata": {}})]);
        let finance = app.token(Role::Finance);
        let mut ids = Vec::new();
        for email in ["Pat@Example.com", "pat@example.com", "PAT@EXAMPLE.COM"] {
            ids.push(create(&app, &finance, &invoice_body(email)).await["id"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            let pushed = wait_for(&app, id, 30, |i| i["sync"] != "pending").await;
            assert_eq!(pushed["sync"], "pushed", "{pushed}");
        }
        fake.set_search_lag(Duration::ZERO);
        let sam = create(&app, &finance, &invoice_body("sam@example.com")).await["id"].as_str().unwrap().to_owned();
        let pushed = wait_for(&app, &sam, 30, |i| i["sync"] != "pending").await;
        assert_eq!(pushed["customer"]["stripe_customer_id"], "cus_0000made_in_stripe", "{pushed}");

        let customers = fake.objects(ACCOUNT, "customers");
        assert_eq!(customers.len(), 2, "Sam's own and one for Pat: {customers:?}");
        let pat: Vec<&Value> = customers.iter().filter(|c| c["email"] == "pat@example.com").collect();
        assert_eq!(pat.len(), 1);
        let pat_id = pat[0]["id"].as_str().unwrap();
        let remote = fake.objects(ACCOUNT, "invoices");
        assert_eq!(remote.iter().filter(|i| i["customer"] == pat_id).count(), 3);
        assert_eq!(posts_to(&fake, "/v1/customers").len(), 1, "one create for three spellings");
    }

    async fn an_invoice_of_250_lines_is_pushed_whole_and_a_resumed_push_adds_none_twice(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("STRIPE_MAX_ATTEMPTS", "1")]).await;
        connect(&app, SECRET_KEY).await;
        // Every call as if a day had passed: keys protect nothing. The finalize is done but its
        // answer is lost, so a second attempt reads every item again before deciding.
        fake.forget_keys_always();
        fake.fail_next("POST", "/v1/invoices/*/finalize", Fault::DropAfterWork, 1);
        let finance = app.token(Role::Finance);
        let mut body = invoice_body("long@example.com");
        body["lines"] = (0..250).map(|n| json!({"description": format!("Item {n}"), "quantity": 1, "unit_amount": 100 + n})).collect();
        let created = create(&app, &finance, &body).await;
        let total: i64 = (0..250).map(|n| 100 + n).sum();
        assert_eq!(created["total"], total);
        let id = created["id"].as_str().unwrap();
        let pushed = wait_for(&app, id, 120, |i| i["sync"] != "pending").await;
        assert_eq!(pushed["sync"], "pushed", "{}", pushed["sync_error"]);
        assert_eq!(pushed["lines"].as_array().unwrap().len(), 250);
        let remote = fake.objects(ACCOUNT, "invoices");
        assert_eq!(remote[0]["lines"]["data"].as_array().unwrap().len(), 250, "every line once");
        assert_eq!(remote[0]["total"], total);
        assert_eq!(posts_to(&fake, "/v1/invoiceitems").len(), 250);
        let pages = fake.calls().into_iter().filter(|c| c.method == "GET" && c.path == "/v1/invoiceitems").count();
        assert!(pages >= 4, "both attempts read all three pages of items: {pages}");
    }

    async fn a_void_during_the_push_leaves_nothing_in_stripe(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("STRIPE_TIMEOUT_SECS", "10")]).await;
        connect(&app, SECRET_KEY).await;
        // The first line takes a while: the invoice is voided meanwhile.
        fake.fail_next("POST", "/v1/invoiceitems", Fault::SlowAfterWork { delay: Duration::from_millis(1500) }, 1);
        let finance = app.token(Role::Finance);
        let id = create(&app, &finance, &invoice_body("voided@example.com")).await["id"].as_str().unwrap().to_owned();
        wait_for(&app, &id, 20, |i| i["stripe_invoice_id"].is_string()).await;
        let voided = app.post_json(&format!("/api/invoices/{id}/void"), &finance, &json!({})).await;
        assert_eq!(voided.status(), 200, "{:?}", voided.text().await);
        let done = wait_for(&app, &id, 20, |i| i["sync"] == "cancelled").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let done = wait_for(&app, &id, 20, |i| i["sync"] == "cancelled" && i == &done).await;
        assert_eq!(done["status"], "void");
        assert_eq!(done["stripe_invoice_id"], Value::Null, "no link to a deleted draft: {done}");
        assert!(fake.objects(ACCOUNT, "invoices").is_empty(), "the draft is deleted");
        assert!(fake.objects(ACCOUNT, "invoiceitems").is_empty(), "no item left to bill later");
        assert_eq!(posts_to(&fake, "/v1/invoiceitems").len(), 1, "nothing was added after the void");
    }
}
