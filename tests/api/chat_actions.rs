//! Buttons in Slack messages that act, over real HTTP between a fake Slack, billmirror and a
//! fake Stripe: a signed click runs once and is audited and shown in the thread; a forged,
//! stale or unsigned request is refused; a click beyond the clicker's role is explained to them
//! alone and calls nothing; follow-ups show in the billing context; escalations reach their
//! channel.

use std::time::{Duration, Instant};

use billmirror::domain::Role;
use billmirror::notify::slack::sign;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_chat::{FakeChat, Request, BOT_TOKEN, SLACK_SIGNING_SECRET};
use crate::support::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::{error_code, TestApp};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(id: &str, kind: &str, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": now(),
           "livemode": false, "type": kind, "data": {"object": object}})
    .to_string()
}

/// The open invoice whose payment failed, as the fake Stripe holds it and as the event says.
fn open_invoice() -> Value {
    json!({"id": "in_fail", "object": "invoice", "status": "open", "currency": "usd",
           "customer": "cus_ada", "customer_name": "Ada Lovelace", "customer_email": "ada@example.com",
           "number": "NR-0001", "amount_due": 4900, "amount_remaining": 4900, "total": 4900,
           "attempt_count": 1, "next_payment_attempt": now() + 3 * 86_400,
           "collection_method": "send_invoice", "created": now() - 100})
}

struct Setup {
    stripe: FakeStripe,
    chat: FakeChat,
    app: TestApp,
    ops: String,
    /// The posted "payment failed" message and its `ts`.
    message: Value,
    ts: String,
}

async fn setup(backend: crate::support::Backend) -> Setup {
    let stripe = FakeStripe::start().await;
    stripe.seed(ACCOUNT, "invoices", vec![open_invoice()]);
    let chat = FakeChat::start().await;
    let app = TestApp::spawn_with(
        backend,
        &[
            ("STRIPE_API_BASE", &stripe.base_url),
            ("STRIPE_SECRET_KEY", SECRET_KEY),
        ],
    )
    .await;
    let ops = app.token(Role::Ops);
    // The environment's key report runs in the background at start: wait until it may write.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let env: Value = app
            .get("/api/connections/env", &ops)
            .await
            .json()
            .await
            .unwrap();
        if env["can_push"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the key never verified: {env}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = make_slack_channel(&app, &ops, &chat, "C0BILLING").await;
    let legal = make_slack_channel(&app, &ops, &chat, "C0LEGAL").await;
    let rule = app
        .post_json(
            "/api/notifications/rules",
            &ops,
            &json!({"name": "billing", "channel_id": channel,
                    "families": ["payment_failed", "invoice_paid", "dispute"]}),
        )
        .await;
    assert_eq!(rule.status(), 201);
    let set = put_json(
        &app,
        &format!("/api/notifications/channels/{channel}/interactivity"),
        &ops,
        &json!({"signing_secret": SLACK_SIGNING_SECRET, "escalation_channel_id": legal}),
    )
    .await;
    assert_eq!(set.status(), 200);
    let view: Value = set.json().await.unwrap();
    assert_eq!(
        view["request_url"],
        "https://billmirror.example.com/slack/interactions"
    );
    assert!(
        !view.to_string().contains(SLACK_SIGNING_SECRET),
        "the secret is masked: {view}"
    );
    // The customer in the ledger, then the failure.
    let customer = json!({"id": "cus_ada", "object": "customer", "email": "ada@example.com",
                          "name": "Ada Lovelace", "created": now() - 1000});
    assert_eq!(
        app.deliver(&event("evt_cus", "customer.created", customer))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.deliver(&event("evt_fail", "invoice.payment_failed", open_invoice()))
            .await
            .status(),
        200
    );
    let posted = chat.wait_for("/slack/api/chat.postMessage", 1).await;
    let message = posted[0].json.clone();
    let ts = slack_ts(&chat, 0);
    Setup {
        stripe,
        chat,
        app,
        ops,
        message,
        ts,
    }
}

async fn make_slack_channel(app: &TestApp, ops: &str, chat: &FakeChat, target: &str) -> String {
    let created = app
        .post_json(
            "/api/notifications/channels",
            ops,
            &json!({"kind": "slack_app", "name": target, "secret": BOT_TOKEN, "target": target,
                    "api_base": chat.slack_api(), "rate_per_minute": 600}),
        )
        .await;
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn put_json(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .put(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `ts` the fake Slack gave the `n`th message posted (they count up from a known start).
fn slack_ts(_chat: &FakeChat, n: u64) -> String {
    let at = 1_700_000_000_000_100 + n + 1;
    format!("{}.{:06}", at / 1_000_000, at % 1_000_000)
}

/// Posts `body` to `/slack/interactions` as Slack does, signed at `at` with `secret`.
async fn post_interaction(app: &TestApp, body: &str, secret: &str, at: i64) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/slack/interactions"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Slack-Request-Timestamp", at.to_string())
        .header(
            "X-Slack-Signature",
            sign(secret.as_bytes(), at, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn map_user(s: &Setup, user: &str, role: &str, name: &str) {
    let mapped = put_json(
        &s.app,
        &format!("/api/notifications/slack-users/{user}"),
        &s.ops,
        &json!({"role": role, "name": name}),
    )
    .await;
    assert_eq!(mapped.status(), 200);
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

fn stripe_posts(stripe: &FakeStripe, path: &str) -> usize {
    stripe
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path == path)
        .count()
}

async fn audit_of(app: &TestApp, subject: &str) -> Vec<(String, String, Value)> {
    let subject = subject.to_owned();
    app.db
        .run(move |conn| billmirror::storage::tokens::audit_entries(conn, &subject))
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.actor, a.action, serde_json::from_str(&a.details).unwrap()))
        .collect()
}

fn thread_replies(chat: &FakeChat, ts: &str) -> Vec<Request> {
    chat.to("/slack/api/chat.postMessage")
        .into_iter()
        .filter(|r| r.json["thread_ts"] == ts)
        .collect()
}

on_both_backends! {
    async fn a_signed_click_by_finance_retries_the_payment_once_audits_it_and_says_so(backend: Backend) {
        let s = setup(backend).await;
        // The message carries the buttons the handlers understand, links stay links.
        let buttons: Vec<Value> = s.message["blocks"].as_array().unwrap().iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .collect();
        let ids: Vec<&str> = buttons.iter().filter_map(|b| b["action_id"].as_str()).collect();
        assert!(ids.contains(&"bm:retry_payment") && ids.contains(&"bm:send_invoice")
            && ids.contains(&"bm:assign_billing_queue"), "{ids:?}");
        assert!(buttons.iter().any(|b| b["url"].as_str().is_some_and(|u| u.contains("dashboard.stripe.com"))));

        map_user(&s, "U0FINANCE", "finance", "fiona").await;
        let body = s.chat.interaction(("U0FINANCE", "fiona"), &s.message, &s.ts, "bm:retry_payment", "1700000200.000001");
        let started = Instant::now();
        let answered = post_interaction(&s.app, &body, SLACK_SIGNING_SECRET, now()).await;
        assert_eq!(answered.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(3), "answered within Slack's 3 s");
        // Slack retries a request it thinks went unanswered: the same body, signed again.
        let again = post_interaction(&s.app, &body, SLACK_SIGNING_SECRET, now()).await;
        assert_eq!(again.status(), 200);

        let replies = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let replies = thread_replies(&s.chat, &s.ts);
                if !replies.is_empty() { break replies; }
                assert!(Instant::now() < deadline, "no reply in the thread");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        settle_all(&s.app).await;
        assert_eq!(stripe_posts(&s.stripe, "/v1/invoices/in_fail/pay"), 1, "acted once");
        let invoice = s.stripe.objects(ACCOUNT, "invoices").into_iter().find(|i| i["id"] == "in_fail").unwrap();
        assert_eq!(invoice["status"], "paid");
        assert_eq!(replies.len(), 1, "one reply for one click");
        let reply = replies[0].json["text"].as_str().unwrap();
        assert!(reply.contains("<@U0FINANCE>") && reply.contains("as finance") && reply.contains("the invoice is paid"), "{reply}");
        // The message itself says it.
        let update = s.chat.to("/slack/api/chat.update").into_iter()
            .find(|r| r.json["ts"] == s.ts.as_str() && r.json["blocks"].to_string().contains("Retry payment now by fiona"))
            .expect("the message was updated");
        assert!(update.accepted());
        // The audit log: who in chat, which role, what, the result.
        let audit = audit_of(&s.app, "in_fail").await;
        let entry = audit.iter().find(|(_, action, _)| action == "chat.retry_payment").expect("audited");
        assert_eq!(entry.0, "slack:U0FINANCE (fiona)");
        assert_eq!(entry.2["role"], "finance");
        assert_eq!(entry.2["result"], "done");
        assert_eq!(audit.iter().filter(|(_, a, _)| a == "chat.retry_payment").count(), 1);

        // Sending the invoice: Stripe's own endpoint, once.
        let send = s.chat.interaction(("U0FINANCE", "fiona"), &s.message, &s.ts, "bm:send_invoice", "1700000300.000001");
        assert_eq!(post_interaction(&s.app, &send, SLACK_SIGNING_SECRET, now()).await.status(), 200);
        let deadline = Instant::now() + Duration::from_secs(20);
        while thread_replies(&s.chat, &s.ts).len() < 2 {
            assert!(Instant::now() < deadline, "no second reply");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        settle_all(&s.app).await;
        assert_eq!(stripe_posts(&s.stripe, "/v1/invoices/in_fail/send"), 1);
        assert!(s.stripe.events(ACCOUNT).iter().any(|e| e["type"] == "invoice.sent"));
        let second = thread_replies(&s.chat, &s.ts)[1].json["text"].as_str().unwrap().to_owned();
        assert!(second.contains("sent the invoice email"), "{second}");
    }

    async fn forged_stale_and_unsigned_clicks_are_refused_and_do_nothing(backend: Backend) {
        let s = setup(backend).await;
        map_user(&s, "U0FINANCE", "finance", "fiona").await;
        let body = s.chat.interaction(("U0FINANCE", "fiona"), &s.message, &s.ts, "bm:retry_payment", "1700000200.000001");

        let forged = post_interaction(&s.app, &body, "0000000000000000aaaaaaaaaaaaaaaa", now()).await;
        assert_eq!(forged.status(), 401);
        assert_eq!(error_code(forged).await, "invalid_signature");

        // Signed with the right secret, but six minutes ago (a captured request replayed).
        let stale = post_interaction(&s.app, &body, SLACK_SIGNING_SECRET, now() - 360).await;
        assert_eq!(stale.status(), 401);
        assert_eq!(error_code(stale).await, "stale_timestamp");

        // A body changed after signing.
        let at = now();
        let tampered = reqwest::Client::new()
            .post(s.app.url("/slack/interactions"))
            .header("X-Slack-Request-Timestamp", at.to_string())
            .header("X-Slack-Signature", sign(SLACK_SIGNING_SECRET.as_bytes(), at, body.as_bytes()))
            .body(body.replace("retry_payment", "send_invoice"))
            .send().await.unwrap();
        assert_eq!(tampered.status(), 401);

        let unsigned = reqwest::Client::new()
            .post(s.app.url("/slack/interactions"))
            .body(body.clone())
            .send().await.unwrap();
        assert_eq!(unsigned.status(), 401);
        assert_eq!(error_code(unsigned).await, "missing_signature");

        settle_all(&s.app).await;
        assert_eq!(stripe_posts(&s.stripe, "/v1/invoices/in_fail/pay"), 0);
        assert_eq!(stripe_posts(&s.stripe, "/v1/invoices/in_fail/send"), 0);
        assert!(thread_replies(&s.chat, &s.ts).is_empty());
        assert!(s.chat.to("/slack/response/").is_empty());
    }

    async fn a_click_beyond_the_users_role_is_explained_to_them_alone_and_calls_nothing(backend: Backend) {
        let s = setup(backend).await;
        // U0STRANGER was never mapped: the least role, support.
        let body = s.chat.interaction(("U0STRANGER", "sam"), &s.message, &s.ts, "bm:retry_payment", "1700000200.000009");
        assert_eq!(post_interaction(&s.app, &body, SLACK_SIGNING_SECRET, now()).await.status(), 200);
        let answers = s.chat.wait_for("/slack/response/", 1).await;
        settle_all(&s.app).await;
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].json["response_type"], "ephemeral");
        let text = answers[0].json["text"].as_str().unwrap();
        assert!(text.contains("`finance`") && text.contains("`support`"), "{text}");
        assert_eq!(stripe_posts(&s.stripe, "/v1/invoices/in_fail/pay"), 0, "nothing called");
        assert!(thread_replies(&s.chat, &s.ts).is_empty(), "nothing said in the channel");
        let audit = audit_of(&s.app, "in_fail").await;
        let entry = audit.iter().find(|(_, a, _)| a == "chat.retry_payment").expect("the refusal is audited");
        assert_eq!(entry.0, "slack:U0STRANGER (sam)");
        assert_eq!((entry.2["role"].as_str(), entry.2["result"].as_str()), (Some("support"), Some("refused")));
    }

    async fn a_finance_click_is_refused_when_the_connection_cannot_write_and_a_planted_name_is_scrubbed(backend: Backend) {
        let s = setup(backend).await;
        map_user(&s, "U0FINANCE", "finance", "fiona").await;
        // Stripe refuses the key now: the next report says so, and the connection may not write.
        s.stripe.revoke_key(SECRET_KEY, "api_key_expired");
        let report: Value = s.app.post_json("/api/connections/env/validate", &s.ops, &json!({})).await.json().await.unwrap();
        assert_eq!(report["can_push"], false, "{report}");
        // Slack's payload names the clicker; a name carrying a card number is free text like any.
        let body = s.chat.interaction(("U0FINANCE", "fiona 4242424242424242"), &s.message, &s.ts, "bm:retry_payment", "1700000700.000001");
        assert_eq!(post_interaction(&s.app, &body, SLACK_SIGNING_SECRET, now()).await.status(), 200);
        let answers = s.chat.wait_for("/slack/response/", 1).await;
        settle_all(&s.app).await;
        assert_eq!(answers[0].json["response_type"], "ephemeral");
        let text = answers[0].json["text"].as_str().unwrap();
        assert!(text.contains("cannot write"), "{text}");
        assert_eq!(stripe_posts(&s.stripe, "/v1/invoices/in_fail/pay"), 0, "nothing called");
        let audit = audit_of(&s.app, "in_fail").await;
        let entry = audit.iter().find(|(_, a, _)| a == "chat.retry_payment").expect("audited");
        assert_eq!((entry.2["role"].as_str(), entry.2["result"].as_str()), (Some("finance"), Some("refused")));
        assert_eq!(entry.0, "slack:U0FINANCE (fiona [card number removed])");
        let said: String = s.chat.requests().iter().map(|r| r.body.clone()).collect();
        assert!(!said.contains("4242424242424242") && !format!("{audit:?}").contains("4242424242424242"));
    }

    async fn contacted_and_queued_customers_show_in_the_billing_context_and_escalations_reach_legal(backend: Backend) {
        let s = setup(backend).await;
        map_user(&s, "U0SUPPORT", "support", "sue").await;
        let assign = s.chat.interaction(("U0SUPPORT", "sue"), &s.message, &s.ts, "bm:assign_billing_queue", "1700000400.000001");
        assert_eq!(post_interaction(&s.app, &assign, SLACK_SIGNING_SECRET, now()).await.status(), 200);

        // The invoice is paid later: that message offers "mark contacted".
        let mut paid = open_invoice();
        paid["status"] = json!("paid");
        paid["amount_paid"] = json!(4900);
        s.app.deliver(&event("evt_paid", "invoice.paid", paid)).await;
        // A dispute: its message offers "notify legal/finance".
        let dispute = json!({"id": "dp_1", "object": "dispute", "amount": 3000, "currency": "usd",
            "charge": "ch_1", "reason": "fraudulent", "status": "needs_response",
            "evidence_details": {"due_by": now() + 5 * 86_400}});
        s.app.deliver(&event("evt_dp", "charge.dispute.created", dispute)).await;
        // The paid message goes into the failure's thread; each message's `ts` is its rank.
        let find = |needle: &str| {
            let posted: Vec<Request> = s.chat.to("/slack/api/chat.postMessage").into_iter().filter(Request::accepted).collect();
            posted.iter().enumerate()
                .find(|(_, r)| r.json["blocks"].to_string().contains(needle))
                .map(|(n, r)| (n as u64, r.json.clone()))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let ((n_dispute, dispute_message), (n_paid, paid_message)) = loop {
            if let (Some(d), Some(p)) = (find("bm:escalate"), find("bm:mark_contacted")) {
                break (d, p);
            }
            assert!(Instant::now() < deadline, "the paid and dispute messages never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let contact = s.chat.interaction(("U0SUPPORT", "sue"), &paid_message, &slack_ts(&s.chat, n_paid), "bm:mark_contacted", "1700000500.000001");
        assert_eq!(post_interaction(&s.app, &contact, SLACK_SIGNING_SECRET, now()).await.status(), 200);
        let escalate = s.chat.interaction(("U0SUPPORT", "sue"), &dispute_message, &slack_ts(&s.chat, n_dispute), "bm:escalate", "1700000600.000001");
        assert_eq!(post_interaction(&s.app, &escalate, SLACK_SIGNING_SECRET, now()).await.status(), 200);

        let deadline = Instant::now() + Duration::from_secs(20);
        let escalated = loop {
            let found = s.chat.to("/slack/api/chat.postMessage").into_iter()
                .find(|r| r.json["channel"] == "C0LEGAL");
            if let Some(found) = found { break found; }
            assert!(Instant::now() < deadline, "nothing reached the escalation channel");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        settle_all(&s.app).await;
        let shown = escalated.json["blocks"].to_string();
        assert!(shown.contains("Dispute opened") && shown.contains("Escalated to legal/finance by sue (support)"), "{shown}");

        let support = s.app.token(Role::Support);
        let context: Value = s.app.get("/api/billing-context?email=ada@example.com", &support).await.json().await.unwrap();
        let follow_ups = context["customers"][0]["follow_ups"].as_array().unwrap().clone();
        let kinds: Vec<&str> = follow_ups.iter().map(|f| f["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.len(), 2, "{follow_ups:?}");
        assert!(kinds.contains(&"contacted") && kinds.contains(&"assigned_to_billing_queue"), "{kinds:?}");
        assert!(follow_ups.iter().all(|f| f["by"] == "slack:U0SUPPORT (sue)" && f["invoice"] == "in_fail"));
        // Nothing of this touched Stripe.
        assert!(s.stripe.calls().iter().all(|c| c.method != "POST" || !c.path.starts_with("/v1/invoices/")));
    }
}
