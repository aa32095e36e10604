//! Within each channel's limits: its rate and 429 `Retry-After`, broken channels shown on their
//! health and not retried, bursts counted into digests, late events summarised.

use std::time::Duration;

use billmirror::domain::Role;
use serde_json::{json, Value};

use super::*;
use crate::on_both_backends;
use crate::support::fake_chat::{Answer, FakeChat, Request, SIGNING_SECRET};
use crate::support::TestApp;

on_both_backends! {
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

    async fn every_kind_of_channel_breaks_on_a_refusal_for_good_and_a_slack_429_waits(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let slack = slack_app(&app, &ops, &fake, 600).await;
        let teams = make_channel(&app, &ops, &json!({"kind": "teams", "name": "finance",
            "secret": fake.url("/teams/forbidden"), "rate_per_minute": 600})).await;
        let generic = make_channel(&app, &ops, &json!({"kind": "webhook", "name": "crm",
            "secret": SIGNING_SECRET, "target": fake.url("/generic/refuses"), "rate_per_minute": 600})).await;
        for channel in [&slack, &teams, &generic] {
            make_rule(&app, &ops, channel, &["payment_failed"]).await;
        }
        fake.fail("/slack/api/chat.postMessage", Answer::RateLimited(2), Some(1));
        fake.fail("/teams/forbidden", Answer::Status(403, "<html>Forbidden</html>"), None);
        fake.fail("/generic/refuses", Answer::Status(400, "invalid_payload"), None);
        app.deliver(&event("evt_brk", "invoice.payment_failed", now(), failed_invoice("in_brk", 100, 1), None)).await;
        settle_all(&app).await;

        let slack_posts = fake.to("/slack/api/chat.postMessage");
        assert_eq!(slack_posts.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200], "posted after the 429");
        assert!(slack_posts[1].at - slack_posts[0].at >= Duration::from_millis(1900), "Retry-After: 2 was waited");
        let health = |id: String| {
            let app = &app;
            let ops = ops.clone();
            async move { app.get(&format!("/api/notifications/channels/{id}"), &ops).await.json::<Value>().await.unwrap()["health"].clone() }
        };
        assert_eq!(health(slack.clone()).await["status"], "active", "a 429 is not a broken channel");
        let teams_health = health(teams.clone()).await;
        assert_eq!((teams_health["status"].as_str(), teams_health["broken_reason"].as_str()), (Some("broken"), Some("http_403")));
        let generic_health = health(generic.clone()).await;
        assert_eq!((generic_health["status"].as_str(), generic_health["broken_reason"].as_str()), (Some("broken"), Some("invalid_payload")));
        assert_eq!((fake.to("/teams/").len(), fake.to("/generic/").len()), (1, 1), "a refusal for good is not retried");
        let failed: Value = app.get("/api/jobs?kind=notify&status=failed", &ops).await.json().await.unwrap();
        assert_eq!(failed["data"].as_array().unwrap().len(), 2, "{failed}");
    }
}
