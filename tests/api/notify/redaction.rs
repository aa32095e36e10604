//! Nothing secret or personal leaves in a message or a log line.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::on_both_backends;
use crate::support::fake_chat::{FakeChat, BOT_TOKEN, SIGNING_SECRET};

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
            // An ops alert on the first webhook refused for its signature, checked often.
            .env("NOTIFY_ALERTS_INTERVAL", "200ms")
            .env("NOTIFY_ALERT_SIGNATURE_FAILURES", "1")
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
            // Slow enough (one post in five seconds) that the planted events are counted into a
            // digest, which shows the largest of them.
            json!({"kind": "webhook", "name": "digests", "secret": SIGNING_SECRET, "target": fake.url("/generic/digest"), "rate_per_minute": 12}),
        ];
        let mut ids = Vec::new();
        for channel in channels {
            let answer = client.post(format!("{base}/api/notifications/channels")).bearer_auth(ADMIN).json(&channel).send().await.unwrap();
            let text = answer.text().await.unwrap();
            let created: Value = serde_json::from_str(&text).unwrap();
            answers.push_str(&text);
            let id = created["id"].as_str().unwrap().to_owned();
            let families: Vec<&str> = ALL_FAMILIES.iter().copied().chain(["ops"]).collect();
            let rule = json!({"channel_id": id, "families": families});
            answers.push_str(&client.post(format!("{base}/api/notifications/rules")).bearer_auth(ADMIN).json(&rule).send().await.unwrap().text().await.unwrap());
            ids.push(id);
        }
        for body in planted_events() {
            let header = billmirror::webhook::signature::sign(crate::support::WEBHOOK_SECRET, now(), body.as_bytes());
            let answer = client.post(format!("{base}/webhooks/stripe")).header("Stripe-Signature", header).body(body).send().await.unwrap();
            assert_eq!(answer.status(), 200);
        }
        // A forged webhook carrying the same planted data: refused, and an ops alert says so.
        let forged = planted_events().remove(0);
        let refused = client.post(format!("{base}/webhooks/stripe")).header("Stripe-Signature", "t=1,v1=00").body(forged).send().await.unwrap();
        assert_eq!(refused.status(), 400);
        for prefix in ["/slack/api/chat.postMessage", "/hooks/", "/teams/", "/generic/crm"] {
            fake.wait_for(prefix, 7).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let digests = fake.to("/generic/digest");
            let counted: i64 = digests.iter().map(|p| p.json["data"]["events_counted"].as_i64().unwrap_or(0)).sum();
            if counted >= 7 {
                assert!(digests.iter().any(|p| p.json["type"] == "billmirror.notification.digest"), "a digest was posted: {digests:#?}");
                break;
            }
            assert!(Instant::now() < deadline, "the slow channel counted {counted} of 7: {digests:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
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
        assert!(bodies.contains("Webhook signature failures"), "the ops alert was posted: {bodies}");
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
