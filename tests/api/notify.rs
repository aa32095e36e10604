//! Chat notifications against fake Slack, Teams and webhook servers over real HTTP: every message
//! kind on every kind of channel, Slack threads and updates, rates and 429s, broken channels,
//! digests that count every event, late events summarised, exactly once under duplicates and
//! replays, the API, and nothing secret or personal in any message or log line.

use std::time::{Duration, Instant};

use base64::Engine;
use billmirror::domain::Role;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_chat::{Answer, FakeChat, Request, BOT_TOKEN, SIGNING_SECRET};
use crate::support::{error_code, TestApp};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(id: &str, kind: &str, created: i64, object: Value, previous: Option<Value>) -> String {
    let mut data = json!({"object": object});
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": created,
           "livemode": false, "type": kind, "data": data})
    .to_string()
}

fn failed_invoice(id: &str, amount: i64, attempt: i64) -> Value {
    json!({"id": id, "object": "invoice", "status": "open", "currency": "usd", "customer": "cus_ada",
           "customer_name": "Ada Lovelace", "customer_email": "ada@example.com", "number": format!("NR-{id}"),
           "amount_due": amount, "total": amount, "attempt_count": attempt,
           "next_payment_attempt": now() + 3 * 86_400, "subscription": "sub_pro"})
}

fn paid_invoice(id: &str, amount: i64, attempt: i64) -> Value {
    json!({"id": id, "object": "invoice", "status": "paid", "currency": "usd", "customer": "cus_ada",
           "customer_name": "Ada Lovelace", "customer_email": "ada@example.com", "number": format!("NR-{id}"),
           "amount_paid": amount, "total": amount, "attempt_count": attempt, "subscription": "sub_pro"})
}

/// One event of each kind of news.
fn one_of_each() -> Vec<String> {
    let t = now();
    vec![
        event(
            "evt_k_paid",
            "invoice.paid",
            t,
            paid_invoice("in_k1", 42499, 1),
            None,
        ),
        event(
            "evt_k_failed",
            "invoice.payment_failed",
            t,
            failed_invoice("in_k2", 4900, 1),
            None,
        ),
        event(
            "evt_k_dispute",
            "charge.dispute.created",
            t,
            json!({"id": "dp_k", "object": "dispute", "amount": 3000,
            "currency": "usd", "charge": "ch_k", "reason": "fraudulent", "status": "needs_response",
            "evidence_details": {"due_by": t + 5 * 86_400 + 600}}),
            None,
        ),
        event(
            "evt_k_customer",
            "customer.updated",
            t,
            json!({"id": "cus_k", "object": "customer",
            "email": "new@example.com", "name": "Ada Lovelace"}),
            Some(json!({"email": "old@example.com"})),
        ),
        event(
            "evt_k_sub",
            "customer.subscription.deleted",
            t,
            json!({"id": "sub_k", "object": "subscription",
            "customer": "cus_k", "status": "canceled", "created": t - 1000,
            "items": {"data": [{"id": "si_k", "quantity": 1, "price": {"id": "price_k", "nickname": "Pro", "unit_amount": 2900, "currency": "usd", "product": "prod_k"}}]}}),
            None,
        ),
        event(
            "evt_k_refund",
            "charge.refunded",
            t,
            json!({"id": "ch_r", "object": "charge", "amount": 5000,
            "amount_refunded": 2000, "currency": "usd", "status": "succeeded", "paid": true, "created": t,
            "refunds": {"data": [{"id": "re_k", "amount": 2000, "reason": "duplicate"}]}}),
            None,
        ),
    ]
}

const ALL_FAMILIES: [&str; 6] = [
    "payment_failed",
    "invoice_paid",
    "dispute",
    "customer_updated",
    "subscription",
    "refund",
];

async fn make_channel(app: &TestApp, ops: &str, body: &Value) -> String {
    let created = app
        .post_json("/api/notifications/channels", ops, body)
        .await;
    assert_eq!(created.status(), 201, "{body}");
    let created: Value = created.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn make_rule(app: &TestApp, ops: &str, channel: &str, families: &[&str]) -> String {
    let created = app
        .post_json(
            "/api/notifications/rules",
            ops,
            &json!({"name": "all", "channel_id": channel, "families": families}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn slack_app(app: &TestApp, ops: &str, fake: &FakeChat, rate: i64) -> String {
    make_channel(
        app,
        ops,
        &json!({"kind": "slack_app", "name": "#billing", "secret": BOT_TOKEN,
        "target": "C0BILLING", "api_base": fake.slack_api(), "rate_per_minute": rate}),
    )
    .await
}

async fn deliver_all(app: &TestApp, bodies: &[String]) {
    for body in bodies {
        assert_eq!(app.deliver(body).await.status(), 200);
    }
}

/// Waits until no event is left to apply and no job to run (at most 30 s).
async fn settle_all(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = app.unfinished_work().unwrap();
        if left == (0, 0) {
            return;
        }
        assert!(Instant::now() < deadline, "work left: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every text a Slack message shows, header and fields.
fn slack_texts(request: &Request) -> String {
    request.json["blocks"].to_string()
}

fn header(request: &Request) -> String {
    request.json["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn deliveries(app: &TestApp, ops: &str, channel: &str) -> Vec<Value> {
    let page: Value = app
        .get(
            &format!("/api/notifications/channels/{channel}/deliveries?limit=500"),
            ops,
        )
        .await
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().clone()
}

fn verify_standard_signature(request: &Request) {
    let id = request.header("webhook-id").expect("webhook-id");
    let timestamp = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp");
    let signature = request
        .header("webhook-signature")
        .expect("webhook-signature");
    let key = base64::engine::general_purpose::STANDARD
        .decode(SIGNING_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{}", request.body).as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(
        signature,
        format!("v1,{expected}"),
        "the signature covers id, timestamp and body"
    );
    assert!((now() - timestamp.parse::<i64>().unwrap()).abs() < 60);
}

on_both_backends! {
    async fn every_message_kind_reaches_every_kind_of_channel(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let slack = slack_app(&app, &ops, &fake, 600).await;
        let hook = make_channel(&app, &ops, &json!({"kind": "slack_webhook", "name": "mattermost",
            "secret": fake.url("/hooks/T0/B0/hookpathsecret"), "rate_per_minute": 600})).await;
        let teams = make_channel(&app, &ops, &json!({"kind": "teams", "name": "finance",
            "secret": fake.url("/teams/flowsecret"), "rate_per_minute": 600})).await;
        let generic = make_channel(&app, &ops, &json!({"kind": "webhook", "name": "crm",
            "secret": SIGNING_SECRET, "target": fake.url("/generic/crm"), "rate_per_minute": 600})).await;
        for channel in [&slack, &hook, &teams, &generic] {
            make_rule(&app, &ops, channel, &ALL_FAMILIES).await;
        }
        deliver_all(&app, &one_of_each()).await;

        let posted = fake.wait_for("/slack/api/chat.postMessage", 6).await;
        let mut headers: Vec<String> = posted.iter().map(header).collect();
        headers.sort();
        assert_eq!(headers, [
            "Customer billing details updated",
            "Dispute opened: 30.00 USD",
            "Invoice paid: 424.99 USD",
            "Payment failed: 49.00 USD",
            "Refund issued: 20.00 USD",
            "Subscription canceled",
        ]);
        for request in &posted {
            assert_eq!(request.json["channel"], "C0BILLING");
            assert!(request.json["text"].as_str().is_some_and(|t| !t.is_empty()), "a plain-text fallback");
            assert!(request.json["blocks"].as_array().unwrap().len() <= 50);
            assert!(request.json.get("thread_ts").is_none(), "each about another object");
        }
        let failed = posted.iter().find(|r| header(r).starts_with("Payment failed")).unwrap();
        let texts = slack_texts(failed);
        for expected in ["A*** L*** (a***@example.com)", "NR-in_k2", "Next retry", "(in 3 days)", "Subscription"] {
            assert!(texts.contains(expected), "{expected} in {texts}");
        }
        let paid = posted.iter().find(|r| header(r).starts_with("Invoice paid")).unwrap();
        assert!(slack_texts(paid).contains("subscription") && slack_texts(paid).contains("https://dashboard.stripe.com/test/invoices/in_k1"));
        let dispute = posted.iter().find(|r| header(r).starts_with("Dispute")).unwrap();
        assert!(slack_texts(dispute).contains("(in 5 days)"), "{}", slack_texts(dispute));
        let refund = posted.iter().find(|r| header(r).starts_with("Refund")).unwrap();
        assert!(slack_texts(refund).contains("partial"));

        for request in fake.wait_for("/hooks/", 6).await {
            assert!(request.json["blocks"].is_array(), "Slack reads blocks");
            assert!(request.json["attachments"][0]["fields"].is_array(), "Mattermost reads attachments");
            assert!(request.json.get("thread_ts").is_none());
        }
        for request in fake.wait_for("/teams/", 6).await {
            let card = &request.json["attachments"][0];
            assert_eq!(card["contentType"], "application/vnd.microsoft.card.adaptive");
            assert_eq!(card["content"]["type"], "AdaptiveCard");
        }
        let generic_posts = fake.wait_for("/generic/", 6).await;
        let mut families: Vec<String> = generic_posts.iter().map(|r| r.json["data"]["family"].as_str().unwrap().to_owned()).collect();
        families.sort();
        assert_eq!(families, ["customer_updated", "dispute", "invoice_paid", "payment_failed", "refund", "subscription"]);
        for request in &generic_posts {
            verify_standard_signature(request);
            assert_eq!(request.json["data"]["events_counted"], 1);
        }
        settle_all(&app).await;
        let log = deliveries(&app, &ops, &generic).await;
        assert_eq!(log.len(), 6);
        assert!(log.iter().all(|d| d["status"] == "sent" && d["attempts"] == 1), "{log:?}");
    }

    async fn follow_ups_go_into_the_slack_thread_and_update_its_first_message(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let slack = slack_app(&app, &ops, &fake, 600).await;
        make_rule(&app, &ops, &slack, &["payment_failed", "invoice_paid"]).await;

        app.deliver(&event("evt_t1", "invoice.payment_failed", now(), failed_invoice("in_thread", 9900, 1), None)).await;
        let first = fake.wait_for("/slack/api/chat.postMessage", 1).await;
        assert!(first[0].json.get("thread_ts").is_none(), "the first message starts the thread");
        // The fake's first `ts`.
        let root_ts = "1700000000.000101".to_owned();
        app.deliver(&event("evt_t2", "invoice.payment_failed", now(), failed_invoice("in_thread", 9900, 2), None)).await;
        fake.wait_for("/slack/api/chat.postMessage", 2).await;
        app.deliver(&event("evt_t3", "invoice.paid", now(), paid_invoice("in_thread", 9900, 3), None)).await;
        let posts = fake.wait_for("/slack/api/chat.postMessage", 3).await;
        assert_eq!(posts[1].json["thread_ts"], root_ts.as_str());
        assert_eq!(posts[2].json["thread_ts"], root_ts.as_str());
        assert!(header(&posts[2]).starts_with("Invoice paid"));

        let updates = fake.wait_for("/slack/api/chat.update", 2).await;
        assert!(updates.iter().all(|u| u.json["ts"] == root_ts.as_str() && u.json["channel"] == "C0BILLING"));
        assert!(slack_texts(&updates[0]).contains("Failed again (attempt 2)"), "{}", slack_texts(&updates[0]));
        assert!(slack_texts(&updates[1]).contains("Paid after 3 attempts"), "{}", slack_texts(&updates[1]));
        assert!(header(&updates[1]).starts_with("Payment failed"), "the first message keeps its subject");
        settle_all(&app).await;
    }

    async fn duplicates_replays_and_backfill_never_notify_twice(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let generic = make_channel(&app, &ops, &json!({"kind": "webhook", "name": "crm",
            "secret": SIGNING_SECRET, "target": fake.url("/generic/crm"), "rate_per_minute": 600})).await;
        make_rule(&app, &ops, &generic, &["payment_failed"]).await;
        // A second rule to the same channel is a second message: one per event and rule.
        make_rule(&app, &ops, &generic, &["payment_failed", "invoice_paid"]).await;

        let body = event("evt_once", "invoice.payment_failed", now(), failed_invoice("in_once", 1000, 1), None);
        let (a, b) = tokio::join!(app.deliver(&body), app.deliver(&body));
        assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
        app.deliver(&body).await;
        settle_all(&app).await;
        assert_eq!(fake.wait_for("/generic/", 2).await.len(), 2);

        // A replay applies the event again and announces nothing.
        let replayed = app.post_json("/api/events/evt_once/replay", &ops, &Value::Null).await;
        assert_eq!(replayed.status(), 202);
        app.settle().await;
        settle_all(&app).await;
        // An object listed by the backfill is a snapshot, not news.
        app.db.run(|conn| {
            let envelope = billmirror::webhook::envelope::Envelope {
                id: "evt_backfill_1".into(), event_type: "invoice.payment_failed".into(), created: now(),
                livemode: false, api_version: None, object_id: Some("in_listed".into()), thin: false, related_object: None,
            };
            let payload = event("evt_backfill_1", "invoice.payment_failed", now(), failed_invoice("in_listed", 5000, 1), None);
            let row = billmirror::webhook::inbox_row("env", envelope, payload, "backfill", None, true);
            billmirror::storage::events::insert_new(conn, [&row])?;
            Ok(())
        }).await.unwrap();
        app.settle().await;
        settle_all(&app).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let posts = fake.to("/generic/");
        assert_eq!(posts.len(), 2, "one message per rule, ever: {posts:#?}");
        let mut ids: Vec<&str> = posts.iter().map(|p| p.header("webhook-id").unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 2);
    }

    async fn rate_limits_and_retry_after_are_honoured(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        // 120 a minute: one post every half second.
        let hook = make_channel(&app, &ops, &json!({"kind": "slack_webhook", "name": "rated",
            "secret": fake.url("/hooks/rated"), "rate_per_minute": 120})).await;
        make_rule(&app, &ops, &hook, &["payment_failed"]).await;
        fake.fail("/hooks/rated", Answer::RateLimited(2), Some(1));
        let t = now();
        let bodies: Vec<String> = (1..=4)
            .map(|n| event(&format!("evt_rate_{n}"), "invoice.payment_failed", t, failed_invoice(&format!("in_rate_{n}"), n * 100, 1), None))
            .collect();
        deliver_all(&app, &bodies).await;
        fake.wait_for("/hooks/rated", 4).await;
        settle_all(&app).await;
        let requests = fake.to("/hooks/rated");
        assert_eq!(requests.len(), 5, "four messages and the one refused with 429");
        assert_eq!(requests[0].status, 429);
        let after_429 = requests[1].at - requests[0].at;
        assert!(after_429 >= Duration::from_millis(1900), "Retry-After: 2 was waited: {after_429:?}");
        for pair in requests.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap >= Duration::from_millis(450), "posts spaced by the channel's rate: {gap:?}");
        }
        let channel: Value = app.get(&format!("/api/notifications/channels/{hook}"), &ops).await.json().await.unwrap();
        assert_eq!(channel["health"]["status"], "active", "a 429 does not break a channel");
    }

    async fn a_broken_channel_shows_on_its_health_and_is_not_retried(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let slack = slack_app(&app, &ops, &fake, 600).await;
        let hook = make_channel(&app, &ops, &json!({"kind": "slack_webhook", "name": "archived",
            "secret": fake.url("/hooks/archived"), "rate_per_minute": 600})).await;
        make_rule(&app, &ops, &slack, &["payment_failed"]).await;
        make_rule(&app, &ops, &hook, &["payment_failed"]).await;
        fake.fail("/slack/api/chat.postMessage", Answer::SlackError("channel_not_found"), None);
        fake.fail("/hooks/archived", Answer::Status(410, "channel_is_archived"), None);

        app.deliver(&event("evt_b1", "invoice.payment_failed", now(), failed_invoice("in_b1", 100, 1), None)).await;
        settle_all(&app).await;
        let health = |id: String| {
            let app = &app;
            let ops = ops.clone();
            async move { app.get(&format!("/api/notifications/channels/{id}"), &ops).await.json::<Value>().await.unwrap()["health"].clone() }
        };
        let slack_health = health(slack.clone()).await;
        assert_eq!((slack_health["status"].as_str(), slack_health["broken_reason"].as_str()), (Some("broken"), Some("channel_not_found")));
        let hook_health = health(hook.clone()).await;
        assert_eq!((hook_health["status"].as_str(), hook_health["broken_reason"].as_str()), (Some("broken"), Some("channel_is_archived")));
        let failed: Value = app.get("/api/jobs?kind=notify&status=failed", &ops).await.json().await.unwrap();
        assert_eq!(failed["data"].as_array().unwrap().len(), 2, "waiting for a person, not retried: {failed}");

        // Later events for a broken channel are not posted at all.
        app.deliver(&event("evt_b2", "invoice.payment_failed", now(), failed_invoice("in_b2", 100, 1), None)).await;
        settle_all(&app).await;
        assert_eq!(fake.to("/slack/api/chat.postMessage").len(), 1);
        assert_eq!(fake.to("/hooks/archived").len(), 1);

        // Repaired: the test message goes through and the channel is healthy again.
        fake.heal();
        let tested: Value = app.post_json(&format!("/api/notifications/channels/{slack}/test"), &ops, &Value::Null).await.json().await.unwrap();
        assert_eq!(tested["ok"], true, "{tested}");
        assert_eq!(tested["channel"]["health"]["status"], "active");
        assert_eq!(fake.to("/slack/api/chat.postMessage").len(), 2);
        // A test to a channel that still refuses says why.
        fake.fail("/hooks/archived", Answer::Status(404, "channel_not_found"), None);
        let tested: Value = app.post_json(&format!("/api/notifications/channels/{hook}/test"), &ops, &Value::Null).await.json().await.unwrap();
        assert_eq!((tested["ok"].as_bool(), tested["error"].as_str()), (Some(false), Some("channel_not_found")));
    }

    async fn a_burst_becomes_digests_that_count_every_event(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        // Slack's pace: one a second, so more than five waiting is a burst.
        let generic = make_channel(&app, &ops, &json!({"kind": "webhook", "name": "burst",
            "secret": SIGNING_SECRET, "target": fake.url("/generic/burst"), "rate_per_minute": 60})).await;
        make_rule(&app, &ops, &generic, &["payment_failed"]).await;
        let t = now();
        let bodies: Vec<String> = (1..=40)
            .map(|n| event(&format!("evt_burst_{n}"), "invoice.payment_failed", t, failed_invoice(&format!("in_burst_{n}"), n * 100, 1), None))
            .collect();
        let sends = bodies.iter().map(|b| app.deliver(b));
        for answer in futures_join_all(sends).await {
            assert_eq!(answer.status(), 200);
        }
        settle_all(&app).await;

        let posts = fake.to("/generic/burst");
        let counted: i64 = posts.iter().map(|p| p.json["data"]["events_counted"].as_i64().unwrap()).sum();
        assert_eq!(counted, 40, "every event counted in some message: {posts:#?}");
        assert!(posts.len() <= 8, "a burst is a few digests, not 40 posts: {}", posts.len());
        let digest = posts
            .iter()
            .filter(|p| p.json["type"] == "billmirror.notification.digest")
            .max_by_key(|p| p.json["data"]["events_counted"].as_i64())
            .expect("a digest");
        let title = digest.json["data"]["title"].as_str().unwrap();
        assert!(title.contains("payments failed"), "{title}");
        let text = digest.json["data"]["text"].as_str().unwrap();
        assert!(text.contains("the 5 largest below, and"), "{text}");
        assert_eq!(digest.json["data"]["fields"].as_object().unwrap().len(), 5);
        for pair in posts.windows(2) {
            assert!(pair[1].at - pair[0].at >= Duration::from_millis(950), "within the channel's rate");
        }
        // The log accounts for each event: posted alone or in a digest that was posted.
        let log = deliveries(&app, &ops, &generic).await;
        let events: Vec<&Value> = log.iter().filter(|d| d["kind"] == "event").collect();
        assert_eq!(events.len(), 40);
        for e in &events {
            match e["status"].as_str() {
                Some("sent") => {}
                Some("digested") => {
                    let digest = log.iter().find(|d| d["id"] == e["digest_id"]).unwrap();
                    assert_eq!(digest["status"], "sent");
                }
                other => panic!("an event neither posted nor counted: {other:?}"),
            }
        }
        let digest_id = digest.header("webhook-id").unwrap();
        let members: Value = app.get(&format!("/api/notifications/channels/{generic}/deliveries?digest={digest_id}&limit=500"), &ops).await.json().await.unwrap();
        assert_eq!(members["data"].as_array().unwrap().len() as i64, digest.json["data"]["events_counted"].as_i64().unwrap());
    }

    async fn events_older_than_notify_max_age_are_summarised(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn_with(backend, &[("NOTIFY_MAX_AGE", "10m")]).await;
        let ops = app.token(Role::Ops);
        let generic = make_channel(&app, &ops, &json!({"kind": "webhook", "name": "late",
            "secret": SIGNING_SECRET, "target": fake.url("/generic/late"), "rate_per_minute": 600})).await;
        make_rule(&app, &ops, &generic, &["payment_failed", "invoice_paid"]).await;
        let old = now() - 3 * 3600;
        let mut bodies: Vec<String> = (1..=3)
            .map(|n| event(&format!("evt_old_{n}"), "invoice.payment_failed", old + n, failed_invoice(&format!("in_old_{n}"), 700, 1), None))
            .collect();
        bodies.push(event("evt_old_paid", "invoice.paid", old, paid_invoice("in_old_p", 800, 1), None));
        bodies.push(event("evt_fresh", "invoice.paid", now(), paid_invoice("in_fresh", 900, 1), None));
        deliver_all(&app, &bodies).await;
        settle_all(&app).await;
        let posts = fake.to("/generic/late");
        let singles: Vec<&Request> = posts.iter().filter(|p| p.json["type"] == "billmirror.notification.event").collect();
        let digests: Vec<&Request> = posts.iter().filter(|p| p.json["type"] == "billmirror.notification.digest").collect();
        assert_eq!(singles.len(), 1, "only the fresh event is announced: {posts:#?}");
        assert!(singles[0].json["data"]["title"].as_str().unwrap().contains("9.00 USD"));
        let counted: i64 = digests.iter().map(|d| d.json["data"]["events_counted"].as_i64().unwrap()).sum();
        assert_eq!(counted, 4, "the late ones are counted in a summary");
        let summary = digests[0].json["data"].to_string();
        assert!(summary.contains("summarised instead of announced"), "{summary}");
    }

    async fn channels_and_rules_are_managed_by_ops_with_secrets_masked(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let finance = app.token(Role::Finance);
        let hook_url = fake.url("/hooks/T0/B0/VerySecretHookPath1234");
        let body = json!({"kind": "slack_webhook", "name": "#sales", "secret": hook_url});
        assert_eq!(app.post_json("/api/notifications/channels", &finance, &body).await.status(), 403);
        let created = app.post_json("/api/notifications/channels", &ops, &body).await;
        assert_eq!(created.status(), 201);
        let created = created.text().await.unwrap();
        assert!(!created.contains("VerySecretHookPath"), "{created}");
        let created: Value = serde_json::from_str(&created).unwrap();
        assert_eq!(created["secret"], "http://127.0.0.1/…1234");
        assert_eq!((created["redaction"].as_str(), created["rate_per_minute"].as_i64()), (Some("masked"), Some(60)));
        let id = created["id"].as_str().unwrap().to_owned();

        for (bad, code) in [
            (json!({"kind": "slack_app", "name": "x", "secret": "xoxp-user-token-123"}), "invalid_secret"),
            (json!({"kind": "slack_app", "name": "x", "secret": BOT_TOKEN}), "invalid_target"),
            (json!({"kind": "teams", "name": "x", "secret": "not a url"}), "invalid_url"),
            (json!({"kind": "webhook", "name": "x", "secret": "whsec_!!", "target": "https://x.example"}), "invalid_secret"),
            (json!({"kind": "webhook", "name": "x", "secret": SIGNING_SECRET}), "invalid_target"),
            (json!({"kind": "slack_webhook", "name": "", "secret": hook_url}), "invalid_input"),
            (json!({"kind": "slack_webhook", "name": "x", "secret": hook_url, "rate_per_minute": 0}), "invalid_input"),
        ] {
            let answer = app.post_json("/api/notifications/channels", &ops, &bad).await;
            assert_eq!(answer.status(), 422, "{bad}");
            assert_eq!(error_code(answer).await, code, "{bad}");
        }
        let patched = app.client.patch(app.url(&format!("/api/notifications/channels/{id}")))
            .bearer_auth(&ops).json(&json!({"name": "#sales-eu", "redaction": "hidden", "rate_per_minute": 30}))
            .send().await.unwrap();
        assert_eq!(patched.status(), 200);
        let patched: Value = patched.json().await.unwrap();
        assert_eq!((patched["name"].as_str(), patched["redaction"].as_str(), patched["secret"].clone()), (Some("#sales-eu"), Some("hidden"), created["secret"].clone()));
        let listed = app.get("/api/notifications/channels", &ops).await.text().await.unwrap();
        assert!(listed.contains("#sales-eu") && !listed.contains("VerySecretHookPath"));

        let rule = app.post_json("/api/notifications/rules", &ops, &json!({"channel_id": id, "families": ["payment_failed", "dispute"],
            "connection_ids": ["env"], "mode": "test", "min_amount": {"amount": 5000, "currency": "USD"}, "redaction": "hidden"})).await;
        assert_eq!(rule.status(), 201);
        let rule: Value = rule.json().await.unwrap();
        assert_eq!(rule["families"], json!(["dispute", "payment_failed"]));
        assert_eq!(rule["min_amount"], json!({"amount": 5000, "currency": "usd", "amount_display": "50.00 USD"}));
        let rule_id = rule["id"].as_str().unwrap();
        for (bad, code) in [
            (json!({"channel_id": "nch_nope", "families": ["dispute"]}), "unknown_channel"),
            (json!({"channel_id": id, "families": []}), "invalid_input"),
            (json!({"channel_id": id, "families": ["dispute"], "min_amount": {"amount": 1, "currency": "xyz"}}), "invalid_currency"),
        ] {
            let answer = app.post_json("/api/notifications/rules", &ops, &bad).await;
            assert_eq!(error_code(answer).await, code, "{bad}");
        }
        let unknown_family = app.post_json("/api/notifications/rules", &ops, &json!({"channel_id": id, "families": ["weather"]})).await;
        assert_eq!(unknown_family.status(), 400);
        // Minimum amount and mode route: a small failure is not announced, a large one is.
        app.deliver(&event("evt_small", "invoice.payment_failed", now(), failed_invoice("in_small", 4999, 1), None)).await;
        app.deliver(&event("evt_large", "invoice.payment_failed", now(), failed_invoice("in_large", 5000, 1), None)).await;
        settle_all(&app).await;
        let posts = fake.wait_for("/hooks/T0", 1).await;
        assert_eq!(posts.len(), 1);
        assert!(posts[0].body.contains("50.00 USD") && posts[0].body.contains("a customer"), "hidden redaction: {}", posts[0].body);

        let in_use = app.delete(&format!("/api/notifications/channels/{id}"), &ops).await;
        assert_eq!(in_use.status(), 409);
        assert_eq!(error_code(in_use).await, "channel_in_use");
        let patched = app.client.patch(app.url(&format!("/api/notifications/rules/{rule_id}")))
            .bearer_auth(&ops).json(&json!({"enabled": false, "min_amount": null})).send().await.unwrap();
        let patched: Value = patched.json().await.unwrap();
        assert_eq!((patched["enabled"].as_bool(), patched["min_amount"].is_null()), (Some(false), true));
        assert_eq!(app.delete(&format!("/api/notifications/rules/{rule_id}"), &ops).await.status(), 204);
        assert_eq!(app.delete(&format!("/api/notifications/channels/{id}"), &ops).await.status(), 204);
        assert_eq!(app.get(&format!("/api/notifications/channels/{id}"), &ops).await.status(), 404);
    }
}

/// Runs every future at once and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (n, future) in pinned.iter_mut().enumerate() {
            if outputs[n].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => outputs[n] = Some(out),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// What the redaction test plants in every free-text field, and must never see again.
const PLANTED_CARD: &str = "4242424242424242";
const PLANTED_SPACED_CARD: &str = "4000 0566 5566 5556";
const PLANTED_AMEX: &str = "378282246310005";
const PLANTED_EMAIL: &str = "ada.lovelace@example.com";
const PLANTED_NAME: &str = "Ada Lovelace";
const PLANTED_PHONE: &str = "+1 415 555 0199";
const PLANTED_STREET: &str = "12 Secret Garden Road";
const PLANTED_TAX_ID: &str = "DE987654321";
const PLANTED_FINGERPRINT: &str = "Xt5EWLLDS7FJjR1c";
const PLANTED_STRIPE_KEY: &str = "sk_live_51PlantedSecretKeyAbCdEf0123";
const PLANTED_SIGNING: &str = "whsec_PlantedSigningSecret0123456789";
const HOOK_SECRET_PATH: &str = "HookPathThatIsTheSecret42";

/// Every free-text field of each payload carries a card number, an email and a secret.
fn planted_events() -> Vec<String> {
    let t = now();
    let free = |n: usize| {
        format!("note {n}: card {PLANTED_CARD}, {PLANTED_SPACED_CARD} or {PLANTED_AMEX}, mail {PLANTED_EMAIL}, call {PLANTED_PHONE}, key {PLANTED_STRIPE_KEY} {PLANTED_SIGNING}, VAT {PLANTED_TAX_ID}")
    };
    let address = json!({"line1": PLANTED_STREET, "city": "London", "postal_code": "NW1 6XE", "country": "GB"});
    let card = json!({"brand": "visa", "last4": "4242", "fingerprint": PLANTED_FINGERPRINT, "exp_month": 12, "exp_year": 2030});
    let billing = json!({"name": PLANTED_NAME, "email": PLANTED_EMAIL, "phone": PLANTED_PHONE, "address": address});
    let metadata = json!({"note": free(0), "card": PLANTED_CARD, "key": PLANTED_STRIPE_KEY});
    vec![
        event(
            "evt_p1",
            "invoice.payment_failed",
            t,
            json!({
            "id": "in_p1", "object": "invoice", "status": "open", "currency": "usd", "customer": "cus_p",
            "customer_name": format!("{PLANTED_NAME} {PLANTED_CARD}"), "customer_email": PLANTED_EMAIL,
            "customer_phone": PLANTED_PHONE, "customer_address": address, "customer_shipping": {"address": address, "name": PLANTED_NAME},
            "customer_tax_ids": [{"type": "eu_vat", "value": PLANTED_TAX_ID}], "description": free(1), "footer": free(2),
            "metadata": metadata, "amount_due": 4900, "attempt_count": 1, "number": "INV-0001",
            "last_finalization_error": {"code": "card_declined", "message": free(3)}, "subscription": "sub_p"}),
            None,
        ),
        event(
            "evt_p2",
            "payment_intent.payment_failed",
            t,
            json!({
            "id": "pi_p2", "object": "payment_intent", "invoice": null, "amount": 2500, "currency": "eur",
            "customer": "cus_p", "description": free(4), "metadata": metadata, "receipt_email": PLANTED_EMAIL,
            "shipping": {"address": address, "name": PLANTED_NAME, "phone": PLANTED_PHONE},
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": free(5),
                "payment_method": {"id": "pm_p", "card": card, "billing_details": billing}}}),
            None,
        ),
        event(
            "evt_p3",
            "customer.updated",
            t,
            json!({
            "id": "cus_p", "object": "customer", "name": PLANTED_NAME, "email": PLANTED_EMAIL, "phone": PLANTED_PHONE,
            "address": address, "description": free(6), "metadata": metadata,
            "invoice_settings": {"default_payment_method": "pm_p", "footer": free(7)}}),
            Some(
                json!({"email": "old.address@example.com", "phone": "+44 20 7946 0000", "address": {"line1": "1 Old Street"},
                "invoice_settings": {"default_payment_method": "pm_old"}}),
            ),
        ),
        event(
            "evt_p4",
            "charge.refunded",
            t,
            json!({
            "id": "ch_p4", "object": "charge", "amount": 5000, "amount_refunded": 5000, "currency": "usd",
            "customer": "cus_p", "status": "succeeded", "paid": true, "created": t, "description": free(8),
            "billing_details": billing, "receipt_email": PLANTED_EMAIL, "metadata": metadata,
            "payment_method_details": {"type": "card", "card": card},
            "refunds": {"data": [{"id": "re_p", "amount": 5000, "reason": "requested_by_customer", "description": free(9)}]}}),
            None,
        ),
        event(
            "evt_p5",
            "charge.dispute.created",
            t,
            json!({
            "id": "dp_p", "object": "dispute", "amount": 3000, "currency": "usd", "charge": "ch_p4",
            "reason": "fraudulent", "status": "needs_response", "metadata": metadata,
            "evidence": {"customer_email_address": PLANTED_EMAIL, "customer_name": PLANTED_NAME, "billing_address": PLANTED_STREET,
                "uncategorized_text": free(10)}, "evidence_details": {"due_by": t + 86_400}}),
            None,
        ),
        event(
            "evt_p6",
            "invoice.paid",
            t,
            json!({
            "id": "in_p6", "object": "invoice", "status": "paid", "currency": "usd", "customer": "cus_p",
            "customer_name": PLANTED_NAME, "customer_email": PLANTED_EMAIL, "customer_phone": PLANTED_PHONE,
            "customer_address": address, "description": free(11), "amount_paid": 9900, "attempt_count": 1, "number": "INV-0002"}),
            None,
        ),
    ]
}

on_both_backends! {
    /// Like the secrets test: the real binary logging at debug level, every kind of channel, and
    /// payloads with card numbers, emails, phones, addresses, tax ids and secrets in every
    /// free-text field; none of it appears in any outgoing body or any log line.
    async fn nothing_secret_or_personal_leaves_in_a_message_or_a_log_line(backend: Backend) {
        use std::io::Read;
        use std::process::{Command, Stdio};
        const ADMIN: &str = "bm_notify_redaction_admin_token_0123456789";
        let fake = FakeChat::start().await;
        let db = crate::support::TestDb::create(backend);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_billmirror"))
            .env_clear()
            .env("DATABASE_URL", db.url())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "debug")
            .env("BILLMIRROR_ADMIN_TOKEN", ADMIN)
            .env("BILLMIRROR_MASTER_KEY", crate::support::MASTER_KEY)
            .env("STRIPE_WEBHOOK_SECRET", crate::support::WEBHOOK_SECRET)
            .env("STRIPE_PUBLISHABLE_KEY", crate::support::ENV_PUBLISHABLE_KEY)
            .env("STRIPE_API_BASE", "http://127.0.0.1:9")
            .current_dir(std::env::temp_dir())
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "serve never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut answers = String::new();
        let hook_url = fake.url(&format!("/hooks/T0/B0/{HOOK_SECRET_PATH}"));
        let teams_url = fake.url(&format!("/teams/{HOOK_SECRET_PATH}"));
        let channels = [
            json!({"kind": "slack_app", "name": "#billing", "secret": BOT_TOKEN, "target": "C0BILLING", "api_base": fake.slack_api(), "rate_per_minute": 600}),
            json!({"kind": "slack_webhook", "name": "mattermost", "secret": hook_url, "rate_per_minute": 600}),
            json!({"kind": "teams", "name": "finance", "secret": teams_url, "rate_per_minute": 600}),
            json!({"kind": "webhook", "name": "crm", "secret": SIGNING_SECRET, "target": fake.url("/generic/crm"), "rate_per_minute": 600}),
        ];
        let mut ids = Vec::new();
        for channel in channels {
            let answer = client.post(format!("{base}/api/notifications/channels")).bearer_auth(ADMIN).json(&channel).send().await.unwrap();
            let text = answer.text().await.unwrap();
            let created: Value = serde_json::from_str(&text).unwrap();
            answers.push_str(&text);
            let id = created["id"].as_str().unwrap().to_owned();
            let rule = json!({"channel_id": id, "families": ALL_FAMILIES});
            answers.push_str(&client.post(format!("{base}/api/notifications/rules")).bearer_auth(ADMIN).json(&rule).send().await.unwrap().text().await.unwrap());
            ids.push(id);
        }
        for body in planted_events() {
            let header = billmirror::webhook::signature::sign(crate::support::WEBHOOK_SECRET, now(), body.as_bytes());
            let answer = client.post(format!("{base}/webhooks/stripe")).header("Stripe-Signature", header).body(body).send().await.unwrap();
            assert_eq!(answer.status(), 200);
        }
        for prefix in ["/slack/api/chat.postMessage", "/hooks/", "/teams/", "/generic/"] {
            fake.wait_for(prefix, 6).await;
        }
        for id in &ids {
            answers.push_str(&client.get(format!("{base}/api/notifications/channels/{id}")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap());
            answers.push_str(&client.get(format!("{base}/api/notifications/channels/{id}/deliveries")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap());
            answers.push_str(&client.post(format!("{base}/api/notifications/channels/{id}/test")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap());
        }
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let mut logs = String::new();
        child.stdout.take().unwrap().read_to_string(&mut logs).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
        child.wait().unwrap();

        let bodies: String = fake.requests().iter().map(|r| format!("{}\n{:?}\n", r.body, r.headers)).collect();
        // The check can fail: the messages were captured and do carry the masked forms.
        assert!(logs.contains("notification posted"), "the log was captured: {logs}");
        assert!(bodies.contains("a***@example.com") && bodies.contains("A*** L***"), "{bodies}");
        assert!(bodies.contains("Visa ending 4242") && bodies.contains("[card number removed]"), "{bodies}");
        let spaced_card = PLANTED_SPACED_CARD.replace(' ', "");
        let forbidden: Vec<(&str, String)> = vec![
            ("card number", PLANTED_CARD.to_owned()),
            ("spaced card number", PLANTED_SPACED_CARD.to_owned()),
            ("card digits", spaced_card),
            ("amex", PLANTED_AMEX.to_owned()),
            ("email", PLANTED_EMAIL.to_owned()),
            ("email's local part", "lovelace@".to_owned()),
            ("old email", "old.address".to_owned()),
            ("name", PLANTED_NAME.to_owned()),
            ("phone", "415 555 0199".to_owned()),
            ("old phone", "20 7946 0000".to_owned()),
            ("street", "Secret Garden".to_owned()),
            ("old street", "Old Street".to_owned()),
            ("postal code", "NW1 6XE".to_owned()),
            ("tax id", PLANTED_TAX_ID.to_owned()),
            ("fingerprint", PLANTED_FINGERPRINT.to_owned()),
            ("Stripe key", "PlantedSecretKey".to_owned()),
            ("signing secret", "PlantedSigningSecret".to_owned()),
        ];
        for (what, value) in &forbidden {
            assert!(!bodies.contains(value.as_str()), "the {what} appears in a message:\n{bodies}");
        }
        for (what, value) in forbidden.iter().chain(&[
            ("bot token", "FakeBotTokenSecret".to_owned()),
            ("webhook URL", HOOK_SECRET_PATH.to_owned()),
            ("channel signing secret", SIGNING_SECRET[8..SIGNING_SECRET.len() - 4].to_owned()),
        ]) {
            assert!(!logs.contains(value.as_str()), "the {what} appears in the log:\n{logs}");
            // Answers show the channels' secrets masked, never whole.
            if !["email", "name"].contains(what) {
                assert!(!answers.contains(value.as_str()), "the {what} appears in an answer:\n{answers}");
            }
        }
    }
}

on_both_backends! {
    /// The rules are kept in memory by version; a change through the API makes a new version,
    /// so the very next event follows it (turned off, moved to another family, deleted).
    async fn a_rule_change_takes_effect_on_the_next_event(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let slack = slack_app(&app, &ops, &fake, 600).await;
        let rule = make_rule(&app, &ops, &slack, &["payment_failed"]).await;
        let failed = |n: i64| event(&format!("evt_rc_{n}"), "invoice.payment_failed", now(),
            failed_invoice(&format!("in_rc_{n}"), 1000 + n, 1), None);
        let paid = |n: i64| event(&format!("evt_rcp_{n}"), "invoice.paid", now(),
            paid_invoice(&format!("in_rcp_{n}"), 2000 + n, 1), None);
        let patch = |body: Value| {
            let (app, ops, rule) = (&app, &ops, &rule);
            async move {
                let changed = reqwest::Client::new()
                    .patch(app.url(&format!("/api/notifications/rules/{rule}")))
                    .bearer_auth(ops).json(&body).send().await.unwrap();
                assert_eq!(changed.status(), 200, "{body}");
            }
        };
        deliver_all(&app, &[failed(1)]).await;
        fake.wait_for("/slack/api/chat.postMessage", 1).await;

        // Disabled: the next failure is not announced.
        patch(json!({"enabled": false})).await;
        deliver_all(&app, &[failed(2)]).await;
        settle_all(&app).await;
        assert_eq!(fake.to("/slack/api/chat.postMessage").len(), 1);

        // Enabled for paid invoices only: a failure is not announced, a payment is.
        patch(json!({"enabled": true, "families": ["invoice_paid"]})).await;
        deliver_all(&app, &[failed(3), paid(1)]).await;
        let posted = fake.wait_for("/slack/api/chat.postMessage", 2).await;
        settle_all(&app).await;
        assert_eq!(fake.to("/slack/api/chat.postMessage").len(), 2);
        assert!(header(&posted[1]).starts_with("Invoice paid"), "{}", header(&posted[1]));

        // Deleted: nothing more.
        assert_eq!(app.delete(&format!("/api/notifications/rules/{rule}"), &ops).await.status(), 204);
        deliver_all(&app, &[paid(2)]).await;
        settle_all(&app).await;
        assert_eq!(fake.to("/slack/api/chat.postMessage").len(), 2);
    }
}
