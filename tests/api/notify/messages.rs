//! Every message kind on every kind of channel; Slack threads and updates of the first message.

use billmirror::domain::Role;
use serde_json::json;

use super::*;
use crate::on_both_backends;
use crate::support::fake_chat::{FakeChat, SIGNING_SECRET};
use crate::support::TestApp;

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

    async fn a_disputes_updates_and_outcome_go_into_its_thread_and_subscriptions_are_news(backend: Backend) {
        let fake = FakeChat::start().await;
        let app = TestApp::spawn(backend).await;
        let ops = app.token(Role::Ops);
        let slack = slack_app(&app, &ops, &fake, 600).await;
        make_rule(&app, &ops, &slack, &["dispute", "subscription"]).await;
        let dispute = |status: &str| json!({"id": "dp_th", "object": "dispute", "amount": 3000, "currency": "usd",
            "charge": "ch_th", "reason": "product_not_received", "status": status,
            "evidence_details": {"due_by": now() + 7 * 86_400}});
        app.deliver(&event("evt_dp_1", "charge.dispute.created", now(), dispute("needs_response"), None)).await;
        fake.wait_for("/slack/api/chat.postMessage", 1).await;
        app.deliver(&event("evt_dp_2", "charge.dispute.updated", now(), dispute("under_review"), Some(json!({"status": "needs_response"})))).await;
        fake.wait_for("/slack/api/chat.postMessage", 2).await;
        app.deliver(&event("evt_dp_3", "charge.dispute.closed", now(), dispute("won"), None)).await;
        let posts = fake.wait_for("/slack/api/chat.postMessage", 3).await;
        let root_ts = "1700000000.000101";
        assert!(header(&posts[0]).starts_with("Dispute opened: 30.00 USD") && posts[0].json.get("thread_ts").is_none());
        assert!(slack_texts(&posts[0]).contains("the product was not received") && slack_texts(&posts[0]).contains("(in 7 days)"));
        assert!(header(&posts[1]).starts_with("Dispute updated") && posts[1].json["thread_ts"] == root_ts, "{:?}", posts[1].json);
        assert!(header(&posts[2]).starts_with("Dispute closed: 30.00 USD: won") && posts[2].json["thread_ts"] == root_ts, "{}", header(&posts[2]));
        let updates = fake.wait_for("/slack/api/chat.update", 2).await;
        assert!(updates.iter().all(|u| u.json["ts"] == root_ts));
        assert!(slack_texts(&updates[0]).contains("Dispute updated: under review"), "{}", slack_texts(&updates[0]));
        assert!(slack_texts(&updates[1]).contains("Dispute closed: won"), "{}", slack_texts(&updates[1]));
        assert!(header(&updates[1]).starts_with("Dispute opened"), "the first message keeps its subject");

        let subscription = |id: &str, status: &str, cancel: bool| json!({"id": id, "object": "subscription",
            "customer": "cus_sub", "status": status, "cancel_at_period_end": cancel, "created": now() - 1000,
            "items": {"data": [{"id": "si_1", "quantity": 2, "price": {"id": "price_1", "nickname": "Team", "unit_amount": 1500, "currency": "eur", "product": "prod_1"}}]}});
        app.deliver(&event("evt_sub_due", "customer.subscription.updated", now(), subscription("sub_due", "past_due", false), Some(json!({"status": "active"})))).await;
        app.deliver(&event("evt_sub_end", "customer.subscription.updated", now(), subscription("sub_end", "active", true), Some(json!({"cancel_at_period_end": false})))).await;
        // Only the quantity changed: no news.
        app.deliver(&event("evt_sub_qty", "customer.subscription.updated", now(), subscription("sub_qty", "active", false), Some(json!({"quantity": 1})))).await;
        let posts = fake.wait_for("/slack/api/chat.postMessage", 5).await;
        settle_all(&app).await;
        assert_eq!(fake.to("/slack/api/chat.postMessage").len(), 5);
        let mut headers: Vec<String> = posts[3..].iter().map(header).collect();
        headers.sort();
        assert_eq!(headers, ["Subscription past due", "Subscription set to cancel"]);
        let due = posts.iter().find(|p| header(p) == "Subscription past due").unwrap();
        assert!(slack_texts(due).contains("Team") && slack_texts(due).contains("30.00 EUR") && slack_texts(due).contains("past due"), "{}", slack_texts(due));
    }
}
