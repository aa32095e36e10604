//! Channels and rules through `/api/notifications`: ops only, every bad value refused with its
//! code, secrets masked, routing by family, connection, mode and minimum amount.

use billmirror::domain::Role;
use serde_json::{json, Value};

use super::*;
use crate::on_both_backends;
use crate::support::fake_chat::{FakeChat, BOT_TOKEN, SIGNING_SECRET};
use crate::support::{error_code, TestApp};

on_both_backends! {
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
