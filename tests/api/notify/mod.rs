//! Chat notifications against fake Slack, Teams and webhook servers over real HTTP, by theme:
//! every message kind and Slack threads (`messages`), exactly once under duplicates, replays and
//! rule changes (`once`), rates, 429s, broken channels, digests and late events (`pacing`), the
//! API (`api`), nothing secret or personal in any message or log line (`redaction`), and ops
//! alerts (`ops_alerts`). What they share is here.

mod api;
mod messages;
mod once;
mod ops_alerts;
mod pacing;
mod redaction;

use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::support::fake_chat::{FakeChat, Request, BOT_TOKEN, SIGNING_SECRET};
use crate::support::TestApp;

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn event(id: &str, kind: &str, created: i64, object: Value, previous: Option<Value>) -> String {
    let mut data = json!({"object": object});
    if let Some(previous) = previous {
        data["previous_attributes"] = previous;
    }
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": created,
           "livemode": false, "type": kind, "data": data})
    .to_string()
}

pub fn failed_invoice(id: &str, amount: i64, attempt: i64) -> Value {
    json!({"id": id, "object": "invoice", "status": "open", "currency": "usd", "customer": "cus_ada",
           "customer_name": "Ada Lovelace", "customer_email": "ada@example.com", "number": format!("NR-{id}"),
           "amount_due": amount, "total": amount, "attempt_count": attempt,
           "next_payment_attempt": now() + 3 * 86_400, "subscription": "sub_pro"})
}

pub fn paid_invoice(id: &str, amount: i64, attempt: i64) -> Value {
    json!({"id": id, "object": "invoice", "status": "paid", "currency": "usd", "customer": "cus_ada",
           "customer_name": "Ada Lovelace", "customer_email": "ada@example.com", "number": format!("NR-{id}"),
           "amount_paid": amount, "total": amount, "attempt_count": attempt, "subscription": "sub_pro"})
}

/// One event of each kind of news.
pub fn one_of_each() -> Vec<String> {
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

pub const ALL_FAMILIES: [&str; 6] = [
    "payment_failed",
    "invoice_paid",
    "dispute",
    "customer_updated",
    "subscription",
    "refund",
];

pub async fn make_channel(app: &TestApp, ops: &str, body: &Value) -> String {
    let created = app
        .post_json("/api/notifications/channels", ops, body)
        .await;
    assert_eq!(created.status(), 201, "{body}");
    let created: Value = created.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

pub async fn make_rule(app: &TestApp, ops: &str, channel: &str, families: &[&str]) -> String {
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

pub async fn slack_app(app: &TestApp, ops: &str, fake: &FakeChat, rate: i64) -> String {
    make_channel(
        app,
        ops,
        &json!({"kind": "slack_app", "name": "#billing", "secret": BOT_TOKEN,
        "target": "C0BILLING", "api_base": fake.slack_api(), "rate_per_minute": rate}),
    )
    .await
}

pub async fn deliver_all(app: &TestApp, bodies: &[String]) {
    for body in bodies {
        assert_eq!(app.deliver(body).await.status(), 200);
    }
}

/// Waits until no event is left to apply and no job to run (at most 30 s).
pub async fn settle_all(app: &TestApp) {
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
pub fn slack_texts(request: &Request) -> String {
    request.json["blocks"].to_string()
}

pub fn header(request: &Request) -> String {
    request.json["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub async fn deliveries(app: &TestApp, ops: &str, channel: &str) -> Vec<Value> {
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

pub fn verify_standard_signature(request: &Request) {
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

/// Runs every future at once and returns their outputs in order.
pub async fn futures_join_all<F: std::future::Future>(
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
