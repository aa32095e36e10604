//! The billing context by email, and the backfill from Stripe's history, on both backends.

use billmirror::domain::Role;
use billmirror::sync::{backfill, BackfillOptions};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, Fault, ACCOUNT, SECRET_KEY};
use crate::support::TestApp;

fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": created,
           "livemode": false, "type": kind, "data": {"object": object}})
    .to_string()
}

fn customer(id: &str, email: &str) -> Value {
    json!({"id": id, "object": "customer", "email": email, "name": "Ada Lovelace", "created": 1_700_000_000})
}

fn charge(
    id: &str,
    customer: &str,
    amount: i64,
    created: i64,
    refunded: i64,
    disputed: bool,
) -> Value {
    json!({
        "id": id, "object": "charge", "amount": amount, "currency": "usd", "customer": customer,
        "payment_intent": format!("pi_{id}"), "status": "succeeded", "paid": true, "created": created,
        "amount_refunded": refunded, "refunded": refunded >= amount && refunded > 0, "disputed": disputed,
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
    })
}

fn refund(id: &str, charge: &str, amount: i64, reason: &str) -> Value {
    json!({"id": id, "object": "refund", "amount": amount, "currency": "usd", "charge": charge,
           "payment_intent": format!("pi_{charge}"), "reason": reason, "status": "succeeded", "created": 1_700_100_000})
}

fn dispute(id: &str, charge: &str, status: &str, due_by: i64) -> Value {
    json!({"id": id, "object": "dispute", "amount": 3000, "currency": "usd", "charge": charge,
           "payment_intent": format!("pi_{charge}"), "reason": "fraudulent", "status": status,
           "evidence_details": {"due_by": due_by}, "created": 1_700_200_000})
}

fn subscription(id: &str, customer: &str, cancel_at_period_end: bool) -> Value {
    json!({
        "id": id, "object": "subscription", "customer": customer, "status": "active",
        "created": 1_700_000_000, "current_period_start": 1_764_547_200, "current_period_end": 1_767_225_600,
        "cancel_at_period_end": cancel_at_period_end,
        "items": {"data": [{"id": format!("si_{id}"), "quantity": 1,
            "price": {"id": "price_pro", "object": "price", "nickname": "Pro", "unit_amount": 2900, "currency": "usd",
                      "product": "prod_pro", "recurring": {"interval": "month", "interval_count": 1}}}]},
    })
}

on_both_backends! {
    async fn the_context_merges_customers_and_emails_whatever_their_case(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let bodies = [
            event("evt_c1", "customer.created", 1_700_000_000, customer("cus_a1", "Ada@Example.com")),
            event("evt_c2", "customer.created", 1_700_000_001, customer("cus_a2", "ada@example.COM")),
            event("evt_c3", "customer.created", 1_700_000_002, customer("cus_a3", "ada@work.example")),
            event("evt_c4", "customer.created", 1_700_000_003, customer("cus_bob", "bob@example.com")),
            event("evt_p1", "charge.succeeded", 1_700_000_010, charge("ch_full", "cus_a1", 5000, 1_700_000_010, 0, false)),
            event("evt_p1r", "charge.refunded", 1_700_100_000, charge("ch_full", "cus_a1", 5000, 1_700_000_010, 5000, false)),
            event("evt_r1", "refund.created", 1_700_100_000, refund("re_full", "ch_full", 5000, "requested_by_customer")),
            event("evt_p2", "charge.succeeded", 1_700_000_020, charge("ch_part", "cus_a2", 8000, 1_700_000_020, 0, false)),
            event("evt_p2r", "charge.refunded", 1_700_100_001, charge("ch_part", "cus_a2", 8000, 1_700_000_020, 2000, false)),
            event("evt_r2", "refund.created", 1_700_100_001, refund("re_part", "ch_part", 2000, "duplicate")),
            event("evt_p3", "charge.succeeded", 1_700_000_030, charge("ch_lost", "cus_a3", 3000, 1_700_000_030, 0, true)),
            event("evt_d1", "charge.dispute.created", 1_700_200_000, dispute("dp_lost", "ch_lost", "needs_response", 1_700_900_000)),
            event("evt_d1c", "charge.dispute.closed", 1_700_300_000, dispute("dp_lost", "ch_lost", "lost", 1_700_900_000)),
            event("evt_p4", "charge.succeeded", 1_700_000_040, charge("ch_open", "cus_a1", 3000, 1_700_000_040, 0, true)),
            event("evt_d2", "charge.dispute.created", 1_700_200_001, dispute("dp_open", "ch_open", "needs_response", 1_701_000_000)),
            event("evt_p5", "charge.succeeded", 1_700_000_050, charge("ch_bob", "cus_bob", 100, 1_700_000_050, 0, false)),
            event("evt_s1", "customer.subscription.created", 1_700_000_060, subscription("sub_renews", "cus_a1", false)),
            event("evt_s2", "customer.subscription.created", 1_700_000_061, subscription("sub_ending", "cus_a3", true)),
        ];
        for body in &bodies {
            assert_eq!(app.deliver(body).await.status(), 200);
        }
        app.settle().await;

        let support = app.token(Role::Support);
        let response = app.get("/api/billing-context?email=ADA@example.com&email=Ada@Work.Example", &support).await;
        assert_eq!(response.status(), 200);
        let context: Value = response.json().await.unwrap();
        assert_eq!(context["emails"], json!(["ada@example.com", "ada@work.example"]));
        let mut customers: Vec<&str> = context["customers"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        customers.sort();
        assert_eq!(customers, ["cus_a1", "cus_a2", "cus_a3"], "bob is not Ada");

        let payments = context["payments"].as_array().unwrap();
        let ids: Vec<&str> = payments.iter().map(|p| p["charge"].as_str().unwrap()).collect();
        assert_eq!(ids, ["ch_open", "ch_lost", "ch_part", "ch_full"], "newest first");
        let by = |id: &str| payments.iter().find(|p| p["charge"] == id).unwrap().clone();
        assert_eq!((by("ch_full")["status"].as_str(), by("ch_full")["refund"].as_str()), (Some("refunded"), Some("full")));
        assert_eq!((by("ch_part")["status"].as_str(), by("ch_part")["refund"].as_str()), (Some("partially_refunded"), Some("partial")));
        assert_eq!(by("ch_part")["amount_refunded"], 2000);
        assert_eq!(by("ch_lost")["disputed"], true);
        assert_eq!(by("ch_open")["method"], json!({"type": "card", "brand": "visa", "last4": "4242"}));

        let refunds = context["refunds"].as_array().unwrap();
        let refund = |id: &str| refunds.iter().find(|r| r["id"] == id).unwrap().clone();
        assert_eq!((refund("re_full")["full"].as_bool(), refund("re_full")["reason"].as_str()), (Some(true), Some("requested_by_customer")));
        assert_eq!(refund("re_part")["full"], false);

        let disputes = context["disputes"].as_array().unwrap();
        let dispute = |id: &str| disputes.iter().find(|d| d["id"] == id).unwrap().clone();
        assert_eq!(dispute("dp_lost")["status"], "lost");
        assert_eq!(dispute("dp_open")["status"], "needs_response");
        assert_eq!(dispute("dp_open")["evidence_due_by"], "2023-11-26T12:00:00Z");
        assert_eq!(dispute("dp_open")["reason"], "fraudulent");

        let subscriptions = context["subscriptions"].as_array().unwrap();
        let sub = |id: &str| subscriptions.iter().find(|s| s["id"] == id).unwrap().clone();
        assert_eq!(sub("sub_renews")["next_invoice_date"], "2026-01-01T00:00:00Z");
        assert_eq!(sub("sub_renews")["plan_name"], "Pro");
        assert_eq!(sub("sub_renews")["interval"], "month");
        assert_eq!(sub("sub_ending")["next_invoice_date"], Value::Null, "it ends at the period's end");
        assert_eq!(sub("sub_ending")["cancel_at_period_end"], true);

        let listed: Value = app.get("/api/customers?email=ADA@EXAMPLE.COM", &support).await.json().await.unwrap();
        assert_eq!(listed["data"].as_array().unwrap().len(), 2);
        let subs: Value = app.get("/api/subscriptions?email=ada@work.example&status=active", &support).await.json().await.unwrap();
        assert_eq!(subs["data"].as_array().unwrap().len(), 1);

        let bad = app.get("/api/billing-context?email=not-an-email", &support).await;
        assert_eq!(bad.status(), 422);
        assert_eq!(app.get("/api/billing-context", &support).await.status(), 422);
    }

    async fn an_interrupted_backfill_resumes_without_duplicates_or_gaps(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let created: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await.json().await.unwrap();
        let connection = created["id"].as_str().unwrap().to_owned();
        let customers: Vec<Value> = (0..250).map(|n| customer(&format!("cus_bf{n:05}"), &format!("c{n}@example.com"))).collect();
        fake.seed(ACCOUNT, "customers", customers);
        let charges: Vec<Value> = (0..120).map(|n| charge(&format!("ch_bf{n:05}"), &format!("cus_bf{:05}", n % 250), 1000 + n, 1_700_000_000 + n, 0, false)).collect();
        fake.seed(ACCOUNT, "charges", charges);
        let mut long = json!({"id": "in_bf_long", "object": "invoice", "customer": "cus_bf00001", "status": "open", "currency": "usd",
            "total": 2500, "amount_due": 2500, "amount_remaining": 2500, "created": 1_700_000_000});
        let lines: Vec<Value> = (0..25).map(|n| json!({"id": format!("il_{n:03}"), "object": "line_item", "amount": 100, "currency": "usd", "quantity": 1, "description": format!("Line {n}")})).collect();
        long["lines"] = json!({"object": "list", "data": lines[..10], "has_more": true});
        long["all_lines"] = json!(lines);
        fake.seed(ACCOUNT, "invoices", vec![long]);

        // The third customers page and every retry of it fail: the run stops half-way.
        let before = fake.calls().len();
        fake.queue_faults(&[Fault::Pass, Fault::Pass, Fault::ServerError, Fault::ServerError, Fault::ServerError, Fault::ServerError, Fault::ServerError]);
        let options = BackfillOptions { only: vec!["customers".into(), "charges".into(), "invoices".into()], since: None };
        let first = backfill(&app.db, &app.connections, &connection, &options, |_| {}).await.unwrap();
        assert_eq!(first[0].outcome, "stopped", "{first:?}");
        assert_eq!(first[0].objects, 200);
        assert_eq!(first.len(), 1, "the run stops at the unavailable resource");

        let mid = fake.calls().len();
        let mut seen = Vec::new();
        let second = backfill(&app.db, &app.connections, &connection, &options, |p| seen.push(p.clone())).await.unwrap();
        assert!(second.iter().all(|r| r.outcome == "complete"), "{second:?}");
        assert_eq!(second[0].objects, 250);
        assert_eq!(second[0].new_events, 50, "the first 200 are not stored again");
        assert_eq!(fake.calls()[before..mid].iter().filter(|c| c.path == "/v1/customers").count(), 7, "two pages, then five attempts at the third");
        let resumed = fake.calls()[mid..].iter().find(|c| c.path == "/v1/customers").unwrap().clone();
        assert_eq!(resumed.params["starting_after"], "cus_bf00050", "resumed after the last stored page");
        assert!(seen.iter().any(|p| p.resource == "invoices"), "progress is reported per page");
        app.settle().await;

        let counts = app.db.run({
            let connection = connection.clone();
            move |conn| {
                use billmirror::storage::schema::{customers, invoice_lines, invoices, payments};
                use diesel::prelude::*;
                let c: i64 = customers::table.filter(customers::connection_id.eq(&connection)).count().get_result(conn)?;
                let p: i64 = payments::table.filter(payments::connection_id.eq(&connection)).count().get_result(conn)?;
                let l: i64 = invoice_lines::table.inner_join(invoices::table).filter(invoices::stripe_id.eq("in_bf_long")).count().get_result(conn)?;
                Ok((c, p, l))
            }
        }).await.unwrap();
        assert_eq!(counts, (250, 120, 25), "every customer and charge once, and all 25 lines");

        // A third run after a complete one starts over and finds nothing new.
        let third = backfill(&app.db, &app.connections, &connection, &options, |_| {}).await.unwrap();
        assert!(third.iter().all(|r| r.outcome == "complete" && r.new_events == 0), "{third:?}");

        let support = app.token(Role::Support);
        let context: Value = app.get("/api/billing-context?email=C7@example.com", &support).await.json().await.unwrap();
        assert_eq!(context["customers"][0]["id"], "cus_bf00007");
        assert_eq!(context["payments"].as_array().unwrap().len(), 1);
    }

    async fn a_permission_error_on_one_resource_lets_the_others_continue(backend: Backend) {
        let fake = FakeStripe::start().await;
        let key = "rk_test_51FakeNoDisputesBackfill000000000000";
        let mut permissions: Vec<String> = ["customers", "charges", "invoices", "subscriptions", "products", "prices",
            "payment_intents", "refunds", "events", "webhook_endpoints", "invoiceitems"].iter().map(|r| format!("{r}:read")).collect();
        permissions.push("customers:write".into());
        fake.add_key(key, ACCOUNT, crate::support::fake_stripe::Access::restricted(&permissions.iter().map(String::as_str).collect::<Vec<_>>()));
        fake.seed(ACCOUNT, "customers", vec![customer("cus_perm", "p@example.com")]);
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let created: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": key})).await.json().await.unwrap();
        let connection = created["id"].as_str().unwrap().to_owned();
        let reports = backfill(&app.db, &app.connections, &connection, &BackfillOptions::default(), |_| {}).await.unwrap();
        let disputes = reports.iter().find(|r| r.resource == "disputes").unwrap();
        assert_eq!(disputes.outcome, "permission_denied");
        assert!(disputes.message.as_deref().unwrap().contains("may not read disputes"));
        assert_eq!(reports.len(), 9, "every resource was tried");
        assert!(reports.iter().filter(|r| r.resource != "disputes").all(|r| r.outcome == "complete"), "{reports:?}");
    }

    async fn missed_events_are_recovered_from_the_events_api_and_duplicates_are_harmless(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let created: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await.json().await.unwrap();
        let connection = created["id"].as_str().unwrap().to_owned();
        let now = chrono::Utc::now().timestamp();
        let events: Vec<Value> = (0..3).map(|n| serde_json::from_str(&event(&format!("evt_missed{n}"), "customer.created", now - 3600,
            customer(&format!("cus_missed{n}"), &format!("m{n}@example.com")))).unwrap()).collect();
        let old: Value = serde_json::from_str(&event("evt_old", "customer.created", now - 40 * 86_400, customer("cus_old", "o@example.com"))).unwrap();
        fake.seed(ACCOUNT, "events", events.into_iter().chain([old]).collect());
        let since = chrono::Utc::now() - chrono::Duration::days(3);
        let first = billmirror::sync::catch_up(&app.db, &app.connections, &connection, since).await.unwrap();
        assert_eq!((first.listed, first.new), (3, 3));
        let again = billmirror::sync::catch_up(&app.db, &app.connections, &connection, since).await.unwrap();
        assert_eq!((again.new, again.duplicates), (0, 3));
        app.settle().await;
        let support = app.token(Role::Support);
        let context: Value = app.get("/api/billing-context?email=m1@example.com", &support).await.json().await.unwrap();
        assert_eq!(context["customers"][0]["id"], "cus_missed1");
    }

    async fn refresh_fetches_the_customers_current_data_from_stripe(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await;
        fake.seed(ACCOUNT, "customers", vec![customer("cus_fresh", "fresh@example.com")]);
        fake.seed(ACCOUNT, "charges", vec![charge("ch_fresh", "cus_fresh", 777, 1_700_000_000, 0, false)]);
        let support = app.token(Role::Support);
        let stale: Value = app.get("/api/billing-context?email=fresh@example.com", &support).await.json().await.unwrap();
        assert_eq!(stale["customers"].as_array().unwrap().len(), 0);
        let fresh: Value = app.get("/api/billing-context?email=fresh@example.com&refresh=true", &support).await.json().await.unwrap();
        assert_eq!(fresh["customers"][0]["id"], "cus_fresh", "{fresh}");
        assert_eq!(fresh["payments"][0]["amount"], 777);
        assert_eq!(fresh["refreshed"]["changed"], 2);
    }
}

on_both_backends! {
    async fn listings_and_webhooks_fold_by_time_so_neither_undoes_newer_data(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let secret = "whsec_backfillOrderingSecret0000000000";
        let created: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY, "webhook_secret": secret})).await.json().await.unwrap();
        let connection = created["id"].as_str().unwrap().to_owned();
        let now = chrono::Utc::now().timestamp();
        let deliver = |body: String| {
            let header = billmirror::webhook::signature::sign(secret, chrono::Utc::now().timestamp(), body.as_bytes());
            let request = app.client.post(app.url(&format!("/webhooks/stripe/{connection}"))).header("Stripe-Signature", header).body(body);
            async move { assert_eq!(request.send().await.unwrap().status(), 200) }
        };
        // Stripe still lists the old emails (its listing is as of now).
        fake.seed(ACCOUNT, "customers", vec![customer("cus_newer", "old@example.com"), customer("cus_older", "listed@example.com")]);
        // A change made after the listing, delivered before the backfill runs…
        deliver(event("evt_after", "customer.updated", now + 120, customer("cus_newer", "new@example.com"))).await;
        let options = BackfillOptions { only: vec!["customers".into()], since: None };
        backfill(&app.db, &app.connections, &connection, &options, |_| {}).await.unwrap();
        // …and a stale webhook from before the listing, delivered after it.
        deliver(event("evt_before", "customer.updated", now - 120, customer("cus_older", "stale@example.com"))).await;
        app.settle().await;
        let support = app.token(Role::Support);
        let newer: Value = app.get("/api/billing-context?email=new@example.com", &support).await.json().await.unwrap();
        assert_eq!(newer["customers"][0]["id"], "cus_newer", "the listing did not undo a newer change: {newer}");
        let listed: Value = app.get("/api/billing-context?email=listed@example.com", &support).await.json().await.unwrap();
        assert_eq!(listed["customers"][0]["id"], "cus_older", "a stale webhook did not undo the listing: {listed}");
    }
}

on_both_backends! {
    async fn the_sync_command_backfills_and_catches_up_from_the_command_line(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let created: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await.json().await.unwrap();
        let connection = created["id"].as_str().unwrap().to_owned();
        fake.seed(ACCOUNT, "customers", (0..130).map(|n| customer(&format!("cus_cli{n:04}"), &format!("cli{n}@example.com"))).collect());
        let fake_url = fake.base_url.clone();
        let db_url = app.test_db.url();
        let run = move |args: Vec<String>| {
            std::process::Command::new(env!("CARGO_BIN_EXE_billmirror"))
                .env_clear()
                .env("DATABASE_URL", &db_url)
                .env("BILLMIRROR_MASTER_KEY", crate::support::MASTER_KEY)
                .env("STRIPE_API_BASE", &fake_url)
                .env("LOG_LEVEL", "warn")
                .current_dir(std::env::temp_dir())
                .args(args)
                .output()
                .unwrap()
        };
        let args = vec!["sync".to_owned(), "--connection".to_owned(), connection.clone(), "--only".to_owned(), "customers,charges".to_owned()];
        let output = tokio::task::spawn_blocking({ let run = run.clone(); move || run(args) }).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("customers        complete"), "{stdout}");
        assert!(stdout.contains("130 objects"), "{stdout}");
        let support = app.token(Role::Support);
        let context: Value = app.get("/api/billing-context?email=cli129@example.com", &support).await.json().await.unwrap();
        assert_eq!(context["customers"][0]["id"], "cus_cli0129", "the command applied what it stored");

        let bad = vec!["sync".to_owned(), "--connection".to_owned(), "conn_nope".to_owned()];
        let output = tokio::task::spawn_blocking({ let run = run.clone(); move || run(bad) }).await.unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("no connection has the id `conn_nope`"));

        let events = vec!["sync".to_owned(), "--connection".to_owned(), connection, "--events".to_owned(), "--since".to_owned(), "2d".to_owned()];
        let output = tokio::task::spawn_blocking(move || run(events)).await.unwrap();
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout).contains("events: 0 listed"), "{}", String::from_utf8_lossy(&output.stdout));
    }
}
