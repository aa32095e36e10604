//! Connecting Stripe accounts: the key report check by check against the fake Stripe, saving,
//! rotating secrets, registering the webhook endpoint, disconnecting, and secrets kept secret.

use billmirror::domain::Role;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_stripe::{Access, FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::{error_code, TestApp};

const PUBLIC: &str = "https://billmirror.example.com";
const PK_TEST: &str = "pk_test_51FakeStripePublishable0000000000";

/// The check of that name in a report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

fn assert_check(report: &Value, name: &str, status: &str, message_part: &str) {
    let found = check(report, name);
    assert_eq!(found["status"], status, "{name}: {found}");
    let message = found["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "{name}: `{message}` lacks `{message_part}`"
    );
}

async fn key_report(app: &TestApp, body: Value) -> Value {
    let ops = app.token(Role::Ops);
    let response = app.post_json("/api/connections/check", &ops, &body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// An endpoint that receives every event, as billmirror would register it.
fn add_good_endpoint(fake: &FakeStripe) {
    fake.add_webhook_endpoint(
        ACCOUNT,
        &format!("{PUBLIC}/webhooks/stripe/conn_x"),
        &["*"],
        true,
    );
}

on_both_backends! {
    async fn each_offline_failure_names_the_check_and_says_what_is_wrong(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let sk = SECRET_KEY;
        let cases: Vec<(Value, &str, &str, &str)> = vec![
            (json!({"secret_key": format!("{sk} ")}), "secret_key_format", "whitespace",
             "The secret key ends with a space: remove it."),
            (json!({"secret_key": format!("\t{sk}")}), "secret_key_format", "whitespace",
             "The secret key starts with a tab: remove it."),
            (json!({"secret_key": format!("{}\n{}", &sk[..20], &sk[20..])}), "secret_key_format", "whitespace",
             "contains a line break at character 21"),
            (json!({"secret_key": format!("\"{sk}\"")}), "secret_key_format", "quoted",
             "The secret key is wrapped in quotes: remove them."),
            (json!({"secret_key": ""}), "secret_key_format", "empty", "The secret key is empty"),
            (json!({"publishable_key": PK_TEST}), "secret_key_format", "missing", "No secret key was given"),
            (json!({"secret_key": PK_TEST}), "secret_key_format", "wrong_kind",
             "The secret key field holds a test publishable key (pk_test_)"),
            (json!({"secret_key": "whsec_abcdefghijklmnopqrstuvwxyz012345"}), "secret_key_format", "wrong_kind",
             "holds a webhook signing secret (whsec_)"),
            (json!({"secret_key": sk, "publishable_key": sk}), "publishable_key_format", "wrong_kind",
             "The publishable key field holds a test secret key (sk_test_)"),
            (json!({"secret_key": sk, "webhook_secret": sk}), "webhook_secret_format", "wrong_kind",
             "The webhook secret field holds a test secret key"),
            (json!({"secret_key": sk, "webhook_secrets": ["whsec_abcdefghijklmnopqrstuvwxyz0", "whsec_abc def"]}),
             "webhook_secret_format", "whitespace", "Webhook secret 2 of 2: The webhook secret contains a space"),
            (json!({"secret_key": "sx_test_51FakeStripeDefaultKey000000000000"}), "secret_key_format", "unknown_prefix",
             "starts with `sx_`, which is not a Stripe key prefix"),
            (json!({"secret_key": "sk_prod_51FakeStripeDefaultKey000000000000"}), "secret_key_format", "unknown_prefix",
             "not with `sk_live_` or `sk_test_`"),
            (json!({"secret_key": "sk_test_51Fake"}), "secret_key_format", "malformed", "too short"),
            (json!({"secret_key": "sk_live_51FakeStripeDefaultKey000000000000", "publishable_key": PK_TEST}),
             "mode_match", "mode_mismatch",
             "The publishable key is a test key (pk_test_) but the secret key is live (sk_live_)"),
        ];
        for (body, name, code, message) in cases {
            let report = key_report(&app, body.clone()).await;
            assert_eq!(report["ok"], false, "{body}");
            assert_check(&report, name, "fail", message);
            assert_eq!(check(&report, name)["code"], code, "{body}");
        }
        // A secret key that fails its format check is never sent to Stripe.
        let before = fake.calls().len();
        let report = key_report(&app, json!({"secret_key": format!("{sk} ")})).await;
        assert_check(&report, "authentication", "skipped", "until the secret key passes");
        assert_eq!(fake.calls().len(), before, "{:?}", fake.calls());
    }

    async fn good_keys_pass_every_check_online(backend: Backend) {
        let fake = FakeStripe::start().await;
        add_good_endpoint(&fake);
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let report = key_report(&app, json!({
            "secret_key": SECRET_KEY, "publishable_key": PK_TEST,
            "webhook_secret": "whsec_abcdefghijklmnopqrstuvwxyz012345",
        })).await;
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["mode"], "test");
        assert_eq!(report["stripe_account_id"], ACCOUNT);
        assert_check(&report, "secret_key_format", "pass", "A test secret key (sk_test_…0000)");
        assert_check(&report, "mode_match", "pass", "Both keys are test keys.");
        assert_check(&report, "authentication", "pass", "account acct_fake_default (Fake Shop)");
        assert_check(&report, "permissions", "pass", "every permission");
        assert_check(&report, "account_status", "pass", "Charges and payouts are enabled");
        assert_check(&report, "webhook_endpoint", "pass", "is enabled and sends every event type, in API version 2025-03-31.basil");
    }

    async fn a_revoked_or_unknown_key_fails_authentication_and_skips_the_rest(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let unknown = key_report(&app, json!({"secret_key": "sk_test_51SomeoneElsesKey0000000000000000"})).await;
        assert_check(&unknown, "authentication", "fail", "Stripe does not recognise this key");
        assert_eq!(check(&unknown, "authentication")["code"], "key_rejected");
        assert_check(&unknown, "permissions", "skipped", "Stripe refused the secret key");

        fake.revoke_key(SECRET_KEY, "api_key_expired");
        let expired = key_report(&app, json!({"secret_key": SECRET_KEY})).await;
        assert_check(&expired, "authentication", "fail", "Stripe says this key has expired");
        // Stripe's own message quotes part of the key; ours never does.
        assert!(!expired.to_string().contains("51FakeStripe"), "{expired}");
    }

    async fn stripe_being_unreachable_is_not_reported_as_a_bad_key(backend: Backend) {
        // The default test app points at a port where nothing listens.
        let app = TestApp::spawn(backend).await;
        let report = key_report(&app, json!({"secret_key": SECRET_KEY})).await;
        assert_check(&report, "authentication", "fail", "Stripe could not be reached, so the key was not checked");
        assert_eq!(check(&report, "authentication")["code"], "stripe_unreachable");
        assert_check(&report, "webhook_endpoint", "skipped", "Stripe could not be reached");

        let fake = FakeStripe::start().await;
        fake.go_down(503);
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let report = key_report(&app, json!({"secret_key": SECRET_KEY})).await;
        assert_eq!(check(&report, "authentication")["code"], "stripe_unreachable");
        // 503 is retried: every attempt reached the fake.
        assert_eq!(fake.calls().len(), 5, "STRIPE_MAX_ATTEMPTS defaults to 5");
        fake.recover();
        let report = key_report(&app, json!({"secret_key": SECRET_KEY})).await;
        assert_check(&report, "authentication", "pass", "Stripe accepted the key");
    }

    async fn a_read_only_restricted_key_can_mirror_but_not_push(backend: Backend) {
        let fake = FakeStripe::start().await;
        let key = "rk_test_51FakeReadOnlyKey00000000000000000";
        fake.add_key(key, ACCOUNT, Access::read_only());
        add_good_endpoint(&fake);
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let report = key_report(&app, json!({"secret_key": key})).await;
        assert_check(&report, "secret_key_format", "pass", "A test restricted key (rk_test_…0000); its permissions are checked below.");
        assert_check(&report, "permissions", "warn",
            "lacks Customers: write, Invoices: write, Invoice Items: write: billmirror can mirror this account but cannot push invoices");
        assert_eq!(report["can_push"], false);
        assert_eq!(report["ok"], true, "a read-only key is usable for mirroring");
        // The write probes created nothing.
        assert!(fake.objects(ACCOUNT, "customers").is_empty());
    }

    async fn a_restricted_key_missing_a_read_permission_is_named(backend: Backend) {
        let fake = FakeStripe::start().await;
        let key = "rk_test_51FakeNoDisputesKey000000000000000";
        let mut permissions: Vec<String> = ["customers", "products", "prices", "subscriptions", "invoices",
            "invoiceitems", "charges", "payment_intents", "refunds", "events", "webhook_endpoints"]
            .iter().map(|r| format!("{r}:write")).collect();
        permissions.retain(|p| p != "events:write");
        permissions.push("events:read".into());
        fake.add_key(key, ACCOUNT, Access::restricted(&permissions.iter().map(String::as_str).collect::<Vec<_>>()));
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let report = key_report(&app, json!({"secret_key": key})).await;
        assert_check(&report, "permissions", "fail", "The restricted key lacks Disputes: read: billmirror cannot mirror");
        assert_eq!(check(&report, "permissions")["code"], "missing_permissions");
        assert_eq!(report["can_push"], true);
        assert_eq!(report["ok"], false);
    }

    async fn account_problems_become_sentences(backend: Backend) {
        let fake = FakeStripe::start().await;
        add_good_endpoint(&fake);
        fake.update_account(ACCOUNT, json!({
            "charges_enabled": false, "payouts_enabled": false, "details_submitted": false,
            "requirements": {"currently_due": ["external_account", "individual.id_number"],
                             "disabled_reason": "requirements.past_due"},
        }));
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let report = key_report(&app, json!({"secret_key": SECRET_KEY})).await;
        let status = check(&report, "account_status");
        assert_eq!(status["status"], "fail");
        assert_eq!(status["code"], "charges_disabled");
        let message = status["message"].as_str().unwrap();
        for part in [
            "Stripe has disabled charges on this account, so customers cannot pay its invoices (required information is past due).",
            "Payouts are disabled",
            "onboarding is not finished",
            "Stripe needs this information now: external_account, individual.id_number",
        ] {
            assert!(message.contains(part), "{message} lacks {part}");
        }

        fake.update_account(ACCOUNT, json!({"charges_enabled": true, "details_submitted": true,
            "requirements": {"currently_due": [], "disabled_reason": null}}));
        let report = key_report(&app, json!({"secret_key": SECRET_KEY})).await;
        assert_check(&report, "account_status", "warn", "Payouts are disabled: money collected stays in the Stripe balance.");
    }

    async fn the_webhook_endpoint_must_exist_be_enabled_and_send_the_mapped_events(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let body = json!({"secret_key": SECRET_KEY});
        let none = key_report(&app, body.clone()).await;
        assert_check(&none, "webhook_endpoint", "warn",
            "No webhook endpoint in this Stripe account points at https://billmirror.example.com/webhooks/stripe/…");

        let url = format!("{PUBLIC}/webhooks/stripe/conn_a");
        let id = fake.add_webhook_endpoint(ACCOUNT, &url, &["customer.created", "invoice.paid"], true);
        let partial = key_report(&app, body.clone()).await;
        assert_check(&partial, "webhook_endpoint", "warn", "does not send customer.updated, customer.deleted");
        assert_eq!(check(&partial, "webhook_endpoint")["code"], "events_missing");

        fake.add_webhook_endpoint(ACCOUNT, "https://elsewhere.example.com/hook", &["*"], true);
        let still_partial = key_report(&app, body.clone()).await;
        assert_eq!(check(&still_partial, "webhook_endpoint")["code"], "events_missing", "other URLs do not count");
        // Disabled in Stripe: no events reach billmirror at all.
        disable(&fake, &id).await;
        let disabled = key_report(&app, body).await;
        assert_check(&disabled, "webhook_endpoint", "fail", "is disabled, so Stripe sends billmirror no events");
    }

    async fn a_connection_is_saved_only_with_usable_keys_and_shows_them_masked(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);

        let refused = app.post_json("/api/connections", &ops, &json!({"secret_key": format!("{SECRET_KEY}\n")})).await;
        assert_eq!(refused.status(), 422);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "keys_unusable");
        assert_check(&body["error"]["details"]["report"], "secret_key_format", "fail", "ends with a line break");

        fake.add_key("sk_test_51FakeRevokedKey0000000000000000000", ACCOUNT, Access::Full);
        fake.revoke_key("sk_test_51FakeRevokedKey0000000000000000000", "api_key_expired");
        let rejected = app.post_json("/api/connections", &ops, &json!({"secret_key": "sk_test_51FakeRevokedKey0000000000000000000"})).await;
        assert_eq!(rejected.status(), 422, "Stripe refused the key: nothing to save");

        let created = app.post_json("/api/connections", &ops, &json!({
            "name": "Shop (test)", "secret_key": SECRET_KEY, "publishable_key": PK_TEST,
            "webhook_secret": "whsec_abcdefghijklmnopqrstuvwxyz012345",
        })).await;
        assert_eq!(created.status(), 201);
        let view: Value = created.json().await.unwrap();
        let id = view["id"].as_str().unwrap();
        assert_eq!(view["secret_key"], "sk_test_…0000");
        assert_eq!(view["publishable_key"], "pk_test_…0000");
        assert_eq!(view["webhook_secrets"][0]["secret"], "whsec_…2345");
        assert_eq!(view["webhook_url"], format!("{PUBLIC}/webhooks/stripe/{id}"));
        assert_eq!(view["stripe_account_id"], ACCOUNT);
        assert_eq!(view["can_push"], true);
        assert_eq!(view["last_report"]["ok"], true, "{}", view["last_report"]);
        assert_eq!(check(&view["last_report"], "webhook_endpoint")["code"], "no_endpoint");
        assert!(view["last_report_at"].is_string());

        let listed: Value = app.get("/api/connections", &ops).await.json().await.unwrap();
        let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&id) && ids.contains(&"env"), "{ids:?}");

        let twin = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await;
        assert_eq!(twin.status(), 409, "one account and mode is connected once");

        // Encrypted at rest: the database holds neither the key nor the secret.
        let id_owned = id.to_owned();
        let (sealed_key, sealed_secret): (Option<String>, String) = app.db.run(move |conn| {
            use billmirror::storage::schema::{connections, webhook_secrets};
            let key = connections::table.find(&id_owned).select(connections::secret_key_enc).first(conn)?;
            let secret = webhook_secrets::table.filter(webhook_secrets::connection_id.eq(&id_owned))
                .select(webhook_secrets::secret_enc).first(conn)?;
            Ok((key, secret))
        }).await.unwrap();
        assert!(!sealed_key.unwrap().contains("FakeStripe"));
        assert!(!sealed_secret.contains("abcdefghijklmnop"));

        // Every change is audited under the acting token's name.
        let id_owned = id.to_owned();
        let audit = app.db.run(move |conn| billmirror::storage::tokens::audit_entries(conn, &id_owned)).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].action, "connection.create");
        assert!(audit[0].actor.starts_with("test-ops-"), "{}", audit[0].actor);
        assert!(!audit[0].details.contains("FakeStripe"), "{}", audit[0].details);
    }

    async fn a_connection_receives_and_applies_webhooks_at_its_own_url(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let old_secret = "whsec_oldSecretForRotation000000000001";
        let view: Value = app.post_json("/api/connections", &ops, &json!({
            "secret_key": SECRET_KEY, "webhook_secret": old_secret,
        })).await.json().await.unwrap();
        let id = view["id"].as_str().unwrap().to_owned();
        let path = format!("/webhooks/stripe/{id}");

        let delivered = deliver(&app, &path, old_secret, &customer_created("evt_conn_1", "cus_conn_1")).await;
        assert_eq!(delivered.status(), 200);
        app.settle().await;
        let cid = id.clone();
        let owner: String = app.db.run(move |conn| {
            use billmirror::storage::schema::customers;
            Ok(customers::table.filter(customers::stripe_id.eq("cus_conn_1"))
                .filter(customers::connection_id.eq(&cid)).select(customers::email).first::<Option<String>>(conn)?.unwrap())
        }).await.unwrap();
        assert_eq!(owner, "ada@example.com");

        // The environment's secret does not sign for this connection.
        let foreign = deliver(&app, &path, crate::support::WEBHOOK_SECRET, &customer_created("evt_conn_2", "cus_conn_2")).await;
        assert_eq!(foreign.status(), 400);
        assert_eq!(error_code(foreign).await, "signature_mismatch");

        // Rotation: add the new secret, see it sign, retire the old one.
        let new_secret = "whsec_newSecretForRotation000000000000";
        let added = app.post_json(&format!("/api/connections/{id}/webhook-secrets"), &ops, &json!({"secret": new_secret})).await;
        assert_eq!(added.status(), 201);
        assert_eq!(deliver(&app, &path, new_secret, &customer_created("evt_conn_3", "cus_conn_3")).await.status(), 200);
        // Refusals are counted off the request path, so wait for the one above to be recorded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let view: Value = loop {
            let view: Value = app.get(&format!("/api/connections/{id}"), &ops).await.json().await.unwrap();
            if view["webhook_health"]["signature_failures_last_24h"] == 1 || std::time::Instant::now() > deadline {
                break view;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let secrets = view["webhook_secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[0]["secret"], "whsec_…0000");
        assert!(secrets.iter().all(|s| s["last_signed_event_at"].is_string()), "both have signed: {secrets:?}");
        let health = &view["webhook_health"];
        assert_eq!(health["events_last_24h"], 2);
        assert_eq!(health["signature_failures_last_24h"], 1);
        assert_eq!(health["dead_events"], 0);
        assert!(health["last_event_at"].is_string());

        assert_eq!(secrets[1]["secret"], "whsec_…0001", "newest first");
        let old_id = secrets[1]["id"].as_str().unwrap().to_owned();
        let retired = app.delete(&format!("/api/connections/{id}/webhook-secrets/{old_id}"), &ops).await;
        assert_eq!(retired.status(), 200);
        let stale = deliver(&app, &path, old_secret, &customer_created("evt_conn_4", "cus_conn_4")).await;
        assert_eq!(stale.status(), 400, "a retired secret no longer verifies");
    }

    async fn registering_the_webhook_endpoint_stores_the_secret_stripe_returns(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let view: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await.json().await.unwrap();
        let id = view["id"].as_str().unwrap().to_owned();
        let registered = app.post_json(&format!("/api/connections/{id}/webhook-endpoint"), &ops, &json!({})).await;
        assert_eq!(registered.status(), 201);
        let view: Value = registered.json().await.unwrap();
        assert_eq!(view["webhook_endpoint"], "created");
        assert_eq!(view["webhook_secrets"].as_array().unwrap().len(), 1);

        let endpoints = fake.objects(ACCOUNT, "webhook_endpoints");
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0]["url"], format!("{PUBLIC}/webhooks/stripe/{id}"));
        let events: Vec<&str> = endpoints[0]["enabled_events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert!(events.contains(&"invoice.payment_failed") && events.contains(&"customer.subscription.deleted"));
        let call = fake.calls().into_iter().find(|c| c.method == "POST" && c.path == "/v1/webhook_endpoints").unwrap();
        assert_eq!(call.idempotency_key.as_deref(), Some(format!("billmirror:{id}:webhook-endpoint:0").as_str()));

        // The secret Stripe returned signs deliveries billmirror accepts.
        let secret = endpoints[0]["secret"].as_str().unwrap();
        let path = format!("/webhooks/stripe/{id}");
        assert_eq!(deliver(&app, &path, secret, &customer_created("evt_we_1", "cus_we_1")).await.status(), 200);

        let report: Value = app.post_json(&format!("/api/connections/{id}/validate"), &ops, &json!({})).await.json().await.unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_check(&report, "webhook_endpoint", "pass", "sends every event type billmirror maps, in API version 2026-09-30.clover");

        // Registering again completes the existing endpoint instead of making a second one.
        let again = app.post_json(&format!("/api/connections/{id}/webhook-endpoint"), &ops, &json!({})).await;
        assert_eq!(again.status(), 200);
        assert_eq!(fake.objects(ACCOUNT, "webhook_endpoints").len(), 1);
    }

    async fn disconnecting_stops_webhooks_keeps_the_ledger_and_says_what_is_affected(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let secret = "whsec_disconnectSecret0000000000000000";
        let view: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY, "webhook_secret": secret})).await.json().await.unwrap();
        let id = view["id"].as_str().unwrap().to_owned();
        let path = format!("/webhooks/stripe/{id}");
        let subscription = json!({"id": "sub_d1", "object": "subscription", "customer": "cus_d1", "status": "active",
            "created": 1_700_000_000, "items": {"data": []}});
        let event = json!({"id": "evt_d1", "object": "event", "created": 1_700_000_000, "livemode": false,
            "type": "customer.subscription.created", "data": {"object": subscription}}).to_string();
        assert_eq!(deliver(&app, &path, secret, &event).await.status(), 200);
        app.settle().await;

        let support = app.token(Role::Support);
        assert_eq!(app.delete(&format!("/api/connections/{id}"), &support).await.status(), 403);
        let answer = app.delete(&format!("/api/connections/{id}"), &ops).await;
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["affected"]["active_subscriptions"], 1);
        assert!(answer["message"].as_str().unwrap().contains("1 active subscription(s)"));

        let late = deliver(&app, &path, secret, &customer_created("evt_d2", "cus_d2")).await;
        assert_eq!(late.status(), 404);
        let view: Value = app.get(&format!("/api/connections/{id}"), &ops).await.json().await.unwrap();
        assert_eq!(view["status"], "disconnected");
        assert!(view["disconnected_at"].is_string());
        let cid = id.clone();
        let kept: i64 = app.db.run(move |conn| {
            use billmirror::storage::schema::subscriptions;
            Ok(subscriptions::table.filter(subscriptions::connection_id.eq(&cid)).count().get_result(conn)?)
        }).await.unwrap();
        assert_eq!(kept, 1, "the ledger stays");
        assert_eq!(app.delete(&format!("/api/connections/{id}"), &ops).await.status(), 409);
        assert_eq!(app.delete("/api/connections/env", &ops).await.status(), 409);
        assert_eq!(app.delete("/api/connections/conn_nope", &ops).await.status(), 404);
    }

    async fn the_key_report_is_rerun_on_its_interval(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url), ("KEY_RECHECK_INTERVAL", "1s")]).await;
        let ops = app.token(Role::Ops);
        let view: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY})).await.json().await.unwrap();
        let id = view["id"].as_str().unwrap().to_owned();
        assert_eq!(check(&view["last_report"], "authentication")["status"], "pass");
        fake.revoke_key(SECRET_KEY, "api_key_expired");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let view: Value = app.get(&format!("/api/connections/{id}"), &ops).await.json().await.unwrap();
            if check(&view["last_report"], "authentication")["status"] == "fail" {
                assert_check(&view["last_report"], "authentication", "fail", "expired");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the recheck never ran: {view}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

async fn disable(fake: &FakeStripe, endpoint_id: &str) {
    let client = reqwest::Client::new();
    let response = client
        .post(format!(
            "{}/v1/webhook_endpoints/{endpoint_id}",
            fake.base_url
        ))
        .bearer_auth(SECRET_KEY)
        .form(&[("disabled", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn customer_created(event_id: &str, customer_id: &str) -> String {
    json!({
        "id": event_id, "object": "event", "api_version": "2025-03-31.basil",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "type": "customer.created",
        "data": {"object": {"id": customer_id, "object": "customer", "email": "ada@example.com",
                 "name": "Ada", "created": 1_700_000_000}},
    })
    .to_string()
}

async fn deliver(app: &TestApp, path: &str, secret: &str, body: &str) -> reqwest::Response {
    app.deliver_to(path, secret, body).await
}

/// A webhook URL on loopback would be accepted by Stripe and then fail every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_webhook_url_is_never_registered_in_stripe() {
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn_with(
        crate::support::Backend::Sqlite,
        &[
            ("STRIPE_API_BASE", &fake.base_url),
            ("PUBLIC_URL", "http://127.0.0.1:8080"),
        ],
    )
    .await;
    let ops = app.token(Role::Ops);
    let view: Value = app
        .post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY}))
        .await
        .json()
        .await
        .unwrap();
    let id = view["id"].as_str().unwrap();
    let refused = app
        .post_json(
            &format!("/api/connections/{id}/webhook-endpoint"),
            &ops,
            &json!({}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "public_url_unreachable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("PUBLIC_URL") && message.contains("loopback"),
        "{message}"
    );
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| c.path.starts_with("/v1/webhook_endpoints") && c.method == "POST"),
        "nothing was sent to Stripe"
    );
}
