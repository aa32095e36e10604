//! Ops alerts against a fake Slack over real HTTP: each alert is sent once when its condition
//! starts, not again while it holds, once when it clears (in the first message's thread), and
//! again when it comes back; two instances on one database announce each change once.

use std::time::{Duration, Instant};

use billmirror::domain::Role;
use serde_json::{json, Value};

use super::*;
use crate::invoices::{invoice_body, wait_for};
use crate::oauth::{connect, connection_of, oauth_app_with, session, CONNECT_SECRET};
use crate::on_both_backends;
use crate::support::fake_chat::{FakeChat, Request};
use crate::support::fake_stripe::{
    Access, FakeStripe, OauthFlow, ACCOUNT, CONNECTED_ACCOUNT, SECRET_KEY,
};
use crate::support::TestApp;

/// Checked every 100 ms; three signature failures in a 3 s window fire, as one dead event does,
/// and a push pending for a second is stuck.
const FAST_ALERTS: [(&str, &str); 5] = [
    ("NOTIFY_ALERTS_INTERVAL", "100ms"),
    ("NOTIFY_ALERT_SIGNATURE_FAILURES", "3"),
    ("NOTIFY_ALERT_SIGNATURE_WINDOW", "3s"),
    ("NOTIFY_ALERT_DEAD_EVENTS", "1"),
    ("NOTIFY_ALERT_PUSH_STUCK_AFTER", "1s"),
];

fn with_fast_alerts<'a>(more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    FAST_ALERTS
        .iter()
        .copied()
        .chain(more.iter().copied())
        .collect()
}

/// A Slack app channel taking the `ops` family.
async fn ops_channel(app: &TestApp, chat: &FakeChat) -> String {
    let ops = app.token(Role::Ops);
    let channel = slack_app(app, &ops, chat, 600).await;
    make_rule(app, &ops, &channel, &["ops"]).await;
    channel
}

/// Accepted Slack posts whose header starts with one of `titles`.
fn posts_titled(chat: &FakeChat, titles: &[&str]) -> Vec<Request> {
    chat.to("/slack/api/chat.postMessage")
        .into_iter()
        .filter(Request::accepted)
        .filter(|r| titles.iter().any(|t| header(r).starts_with(t)))
        .collect()
}

/// Waits until `n` posts carry one of `titles` (at most 20 s), then returns them.
async fn wait_titled(chat: &FakeChat, titles: &[&str], n: usize) -> Vec<Request> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let posts = posts_titled(chat, titles);
        if posts.len() >= n {
            return posts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} posts titled {titles:?}: {:#?}",
            posts.len(),
            chat.to("/slack/api/chat.postMessage")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits long enough for a dozen checks, then says how many posts carry one of `titles`.
async fn after_a_while(chat: &FakeChat, titles: &[&str]) -> usize {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    posts_titled(chat, titles).len()
}

async fn refused_signatures(app: &TestApp, n: usize, tag: &str) {
    for i in 0..n {
        let body = event(
            &format!("evt_forged_{tag}_{i}"),
            "customer.created",
            now(),
            json!({"id": "cus_x", "object": "customer"}),
            None,
        );
        let refused = app
            .deliver_to(
                "/webhooks/stripe",
                "whsec_not_the_right_secret_000000",
                &body,
            )
            .await;
        assert_eq!(refused.status(), 400);
    }
}

fn is_root(post: &Request) -> bool {
    post.json.get("thread_ts").is_none()
}

/// The `ts` the fake gave the `n`-th accepted post (counting from 0) to the channel.
fn ts_of(chat: &FakeChat, post: &Request) -> String {
    let posted: Vec<Request> = chat
        .to("/slack/api/chat.postMessage")
        .into_iter()
        .filter(Request::accepted)
        .collect();
    let n = posted.iter().position(|p| p.body == post.body).unwrap() as u64;
    let ts = 1_700_000_000_000_101 + n;
    format!("{}.{:06}", ts / 1_000_000, ts % 1_000_000)
}

const SIGNATURES: [&str; 2] = [
    "Webhook signature failures",
    "Webhook signatures verify again",
];
const DEAD: [&str; 2] = ["Events could not be applied", "No dead events left"];

on_both_backends! {
    async fn signature_failures_and_dead_events_alert_once_per_change(backend: Backend) {
        let chat = FakeChat::start().await;
        let app = TestApp::spawn_with(backend, &with_fast_alerts(&[("MAX_EVENT_ATTEMPTS", "1")])).await;
        ops_channel(&app, &chat).await;

        // Two refusals are below the threshold: nothing.
        refused_signatures(&app, 2, "a").await;
        assert_eq!(after_a_while(&chat, &SIGNATURES).await, 0, "below the threshold");
        // The third fires the alert, once, however many checks see it.
        refused_signatures(&app, 1, "b").await;
        let fired = wait_titled(&chat, &SIGNATURES, 1).await;
        assert!(header(&fired[0]).starts_with("Webhook signature failures: "), "{}", header(&fired[0]));
        let shown = slack_texts(&fired[0]);
        assert!(shown.contains("3 webhooks to connection") && shown.contains("signing secret"), "{shown}");
        assert!(is_root(&fired[0]));
        assert_eq!(after_a_while(&chat, &SIGNATURES).await, 1, "not again while it holds");
        // The window empties: the recovery answers in the alert's thread.
        let recovered = wait_titled(&chat, &SIGNATURES, 2).await;
        assert!(header(&recovered[1]).starts_with("Webhook signatures verify again"), "{}", header(&recovered[1]));
        assert_eq!(recovered[1].json["thread_ts"], ts_of(&chat, &fired[0]).as_str());
        // The first message says it is over (updated just after the reply is posted).
        let root = ts_of(&chat, &fired[0]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !chat.to("/slack/api/chat.update").iter().any(|u| {
            u.accepted() && u.json["ts"] == root.as_str() && slack_texts(u).contains("✅ Webhook signatures verify again")
        }) {
            assert!(Instant::now() < deadline, "the first message was not updated: {:#?}", chat.to("/slack/api/chat.update"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A relapse is a new alert, in a thread of its own.
        refused_signatures(&app, 3, "c").await;
        let again = wait_titled(&chat, &SIGNATURES, 3).await;
        assert!(header(&again[2]).starts_with("Webhook signature failures: ") && is_root(&again[2]));

        // An event that cannot be applied dies on its one attempt: the dead-events alert fires.
        let broken = |id: &str| event(id, "customer.created", now(), json!({"object": "customer"}), None);
        assert_eq!(app.deliver(&broken("evt_dead_1")).await.status(), 200);
        let dead = wait_titled(&chat, &DEAD, 1).await;
        assert!(slack_texts(&dead[0]).contains("1 event of connection"), "{}", slack_texts(&dead[0]));
        // A second dead event while it fires is no news.
        assert_eq!(app.deliver(&broken("evt_dead_2")).await.status(), 200);
        assert_eq!(after_a_while(&chat, &DEAD).await, 1);
        // Both fixed (as a new version would read them) and replayed: none is left dead.
        let ops = app.token(Role::Ops);
        for id in ["evt_dead_1", "evt_dead_2"] {
            let key = id.to_owned();
            app.db.run(move |conn| {
                use billmirror::storage::schema::webhook_events::dsl::*;
                use diesel::prelude::*;
                let fixed = event(&key, "customer.created", now(), json!({"id": format!("cus_{key}"), "object": "customer"}), None);
                diesel::update(webhook_events.filter(stripe_event_id.eq(&key))).set(payload.eq(fixed)).execute(conn)?;
                Ok(())
            }).await.unwrap();
            let replayed = app.post_json(&format!("/api/events/{id}/replay"), &ops, &Value::Null).await;
            assert_eq!(replayed.status(), 202);
        }
        let cleared = wait_titled(&chat, &DEAD, 2).await;
        assert!(header(&cleared[1]).starts_with("No dead events left"));
        assert_eq!(cleared[1].json["thread_ts"], ts_of(&chat, &dead[0]).as_str());
        // And it comes back.
        assert_eq!(app.deliver(&broken("evt_dead_3")).await.status(), 200);
        let relapse = wait_titled(&chat, &DEAD, 3).await;
        assert!(header(&relapse[2]).starts_with("Events could not be applied") && is_root(&relapse[2]));
        settle_all(&app).await;
    }

    async fn a_failing_key_report_alerts_once_and_again_after_recovery(backend: Backend) {
        let chat = FakeChat::start().await;
        let stripe = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &with_fast_alerts(&[
            ("STRIPE_API_BASE", &stripe.base_url), ("STRIPE_SECRET_KEY", SECRET_KEY),
        ])).await;
        ops_channel(&app, &chat).await;
        let ops = app.token(Role::Ops);
        let validate = || async {
            let report: Value = app.post_json("/api/connections/env/validate", &ops, &json!({})).await.json().await.unwrap();
            report
        };
        const KEY: [&str; 2] = ["Stripe key report failing", "Stripe key report passes again"];
        // A report that passes is no news.
        assert_eq!(validate().await["ok"], true);
        assert_eq!(after_a_while(&chat, &KEY).await, 0);

        stripe.revoke_key(SECRET_KEY, "api_key_expired");
        assert_eq!(validate().await["ok"], false);
        let fired = wait_titled(&chat, &KEY, 1).await;
        let shown = slack_texts(&fired[0]);
        assert!(header(&fired[0]).starts_with("Stripe key report failing: ") && shown.contains("GET /api/connections/env"), "{shown}");
        assert!(!shown.contains("FakeStripeDefaultKey"), "the key never shows: {shown}");
        // Still failing at the next report: no news.
        assert_eq!(validate().await["ok"], false);
        assert_eq!(after_a_while(&chat, &KEY).await, 1);

        stripe.add_key(SECRET_KEY, ACCOUNT, Access::Full);
        assert_eq!(validate().await["ok"], true);
        let recovered = wait_titled(&chat, &KEY, 2).await;
        assert!(header(&recovered[1]).starts_with("Stripe key report passes again"));
        assert_eq!(recovered[1].json["thread_ts"], ts_of(&chat, &fired[0]).as_str());

        stripe.revoke_key(SECRET_KEY, "api_key_expired");
        validate().await;
        let relapse = wait_titled(&chat, &KEY, 3).await;
        assert!(header(&relapse[2]).starts_with("Stripe key report failing") && is_root(&relapse[2]));
        assert_eq!(after_a_while(&chat, &KEY).await, 3);
        settle_all(&app).await;
    }

    async fn a_connection_revoked_in_stripe_alerts_once(backend: Backend) {
        let chat = FakeChat::start().await;
        let stripe = FakeStripe::start().await;
        let app = oauth_app_with(backend, &stripe, OauthFlow::Connect, &FAST_ALERTS).await;
        ops_channel(&app, &chat).await;
        let (cookie, _) = session(&app, Role::Ops).await;
        let id = connection_of(&connect(&app, &cookie).await);
        const KEY: [&str; 2] = ["Stripe key report failing", "Stripe key report passes again"];
        // Read-only is what such a connection is: its report warns, it does not fail.
        assert_eq!(after_a_while(&chat, &KEY).await, 0);

        // The account owner removes billmirror in their Dashboard; Stripe says so by webhook.
        let deauthorized = stripe.deauthorize_in_dashboard(CONNECTED_ACCOUNT);
        let answer = app.deliver_to("/webhooks/stripe/connect/test", CONNECT_SECRET, &deauthorized.to_string()).await;
        assert_eq!(answer.status(), 200);
        let fired = wait_titled(&chat, &KEY, 1).await;
        let shown = slack_texts(&fired[0]);
        assert!(shown.contains("was revoked in Stripe") && shown.contains(&id), "{shown}");
        assert_eq!(after_a_while(&chat, &KEY).await, 1, "once, not at every check");
        settle_all(&app).await;
    }

    async fn a_stuck_push_alerts_once_and_again_after_recovery(backend: Backend) {
        let chat = FakeChat::start().await;
        let stripe = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &with_fast_alerts(&[
            ("STRIPE_API_BASE", &stripe.base_url), ("STRIPE_SECRET_KEY", SECRET_KEY),
            ("JOB_RETRY_MAX_SECS", "1"),
        ])).await;
        ops_channel(&app, &chat).await;
        let ops = app.token(Role::Ops);
        let report: Value = app.post_json("/api/connections/env/validate", &ops, &json!({})).await.json().await.unwrap();
        assert_eq!(report["can_push"], true, "{report}");
        const PUSH: [&str; 2] = ["Invoice push stuck", "Invoice pushes moving again"];
        let finance = app.token(Role::Finance);
        let create = |email: &'static str| {
            let (app, finance) = (&app, finance.clone());
            async move {
                let created = app.post_json("/api/invoices", &finance, &invoice_body(email)).await;
                assert_eq!(created.status(), 201);
                created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
            }
        };

        stripe.go_down(503);
        let first = create("ada@example.com").await;
        let fired = wait_titled(&chat, &PUSH, 1).await;
        let shown = slack_texts(&fired[0]);
        assert!(shown.contains(&format!("invoice {first}")) && shown.contains("1 invoice push of connection"), "{shown}");
        assert_eq!(after_a_while(&chat, &PUSH).await, 1, "not again while it is stuck");

        stripe.recover();
        wait_for(&app, &first, 30, |i| i["sync"] == "pushed").await;
        let recovered = wait_titled(&chat, &PUSH, 2).await;
        assert!(header(&recovered[1]).starts_with("Invoice pushes moving again"));
        assert_eq!(recovered[1].json["thread_ts"], ts_of(&chat, &fired[0]).as_str());

        stripe.go_down(503);
        let second = create("bob@example.com").await;
        let relapse = wait_titled(&chat, &PUSH, 3).await;
        assert!(slack_texts(&relapse[2]).contains(&format!("invoice {second}")) && is_root(&relapse[2]));
        stripe.recover();
        wait_for(&app, &second, 30, |i| i["sync"] == "pushed").await;
        wait_titled(&chat, &PUSH, 4).await;
        settle_all(&app).await;
    }

    async fn two_instances_on_one_database_announce_each_change_once(backend: Backend) {
        let chat = FakeChat::start().await;
        let fast = with_fast_alerts(&[("NOTIFY_ALERTS_INTERVAL", "20ms")]);
        let app = TestApp::spawn_with(backend, &fast).await;
        ops_channel(&app, &chat).await;
        // A second instance: its own pool and workers, its checker racing the first's.
        let db = app.test_db.open_migrated();
        let state = billmirror::app::state(app.config(&fast), db).await.unwrap();
        let second = billmirror::app::Workers::start(&state);

        refused_signatures(&app, 3, "x").await;
        wait_titled(&chat, &SIGNATURES, 1).await;
        assert_eq!(after_a_while(&chat, &SIGNATURES).await, 1, "one message for one change");
        let both = wait_titled(&chat, &SIGNATURES, 2).await;
        assert!(header(&both[1]).starts_with("Webhook signatures verify again"));
        assert_eq!(after_a_while(&chat, &SIGNATURES).await, 2, "one message for the recovery");
        second.stop().await;
        settle_all(&app).await;
    }
}
