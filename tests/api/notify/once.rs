//! One message per event and rule, ever: duplicates, replays and backfill announce nothing twice,
//! and a rule change takes effect on the next event.

use std::time::Duration;

use billmirror::domain::Role;
use serde_json::{json, Value};

use super::*;
use crate::on_both_backends;
use crate::support::fake_chat::{FakeChat, SIGNING_SECRET};
use crate::support::TestApp;

on_both_backends! {
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
