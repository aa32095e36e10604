//! The Connections pages in a real browser: Connect Stripe (a failing check shown, then good keys
//! saved without their secrets ever in the page), a connection's page (webhook URL, chart,
//! secrets, endpoint, key report) and Disconnect after its impact, role gating and CSRF.

use billmirror::domain::Role;
use diesel::prelude::*;
use fantoccini::Locator;
use serde_json::{json, Value};

use super::Browser;
use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::TestApp;

const PK_TEST: &str = "pk_test_51FakeStripePublishable0000000000";
const WEBHOOK_SECRET: &str = "whsec_browserSecret00000000000000000001";

/// Posts a form with the browser's session from outside the browser.
async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url(path))
        .header("Cookie", cookie)
        .form(pairs)
        .send()
        .await
        .unwrap()
}

async fn count(browser: &Browser, css: &str) -> u64 {
    let script = format!("return document.querySelectorAll({}).length", json!(css));
    browser
        .client
        .execute(&script, vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

async fn attribute(browser: &Browser, css: &str, name: &str) -> String {
    browser
        .client
        .wait()
        .at_most(std::time::Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
        .attr(name)
        .await
        .unwrap()
        .unwrap_or_default()
}

/// The text of `css` once it holds `needle`: after a click, the next page may still be loading
/// while the old one answers.
async fn until_text(browser: &Browser, css: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = match browser.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{css}` never held `{needle}`: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn connections_in_db(app: &TestApp) -> i64 {
    app.db
        .run(|conn| {
            use billmirror::storage::schema::connections;
            Ok(connections::table
                .filter(connections::origin.eq("api"))
                .count()
                .get_result(conn)?)
        })
        .await
        .unwrap()
}

/// A subscription that keeps billing in Stripe after a disconnect.
fn subscription_created() -> String {
    json!({"id": "evt_sub_1", "object": "event", "created": chrono::Utc::now().timestamp(), "livemode": false,
        "type": "customer.subscription.created", "data": {"object": {"id": "sub_1", "object": "subscription",
        "customer": "cus_1", "status": "active", "created": 1_700_000_000, "items": {"data": []}}}}).to_string()
}

on_both_backends! {
    async fn ops_validates_a_bad_key_then_saves_good_keys_that_never_reach_the_page(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let (email, password) = app.user(Role::Ops);
        let browser = Browser::open(&app).await;
        browser.sign_in(&email, &password).await;
        assert!(browser.text_of("header nav").await.contains("Connections"));
        browser.goto("/connections").await;
        browser.click("#connect-stripe").await;
        until_text(&browser, "h1", "Connect Stripe").await;
        assert_eq!(browser.path().await, "/connections/new");

        // A key with a trailing space: the failing check says exactly what is wrong.
        browser.fill("#publishable_key", PK_TEST).await;
        browser.fill("#secret_key", &format!("{SECRET_KEY} ")).await;
        browser.click("#validate").await;
        until_text(&browser, "#key-report", "ends with a space").await;
        let failing = "#key-report li[data-check=secret_key_format]";
        assert_eq!(attribute(&browser, failing, "data-status").await, "fail");
        assert!(browser.text_of(failing).await.contains("The secret key ends with a space: remove it."));
        assert_eq!(attribute(&browser, "#key-report li[data-check=authentication]", "data-status").await, "skipped");
        assert_eq!(connections_in_db(&app).await, 0, "Validate saves nothing");

        // The good key and a signing secret: every check passes or warns; nothing secret in the page.
        browser.fill("#secret_key", SECRET_KEY).await;
        browser.fill("#webhook_secret", WEBHOOK_SECRET).await;
        browser.click("#validate").await;
        until_text(&browser, "#key-report li[data-check=authentication]", "Stripe accepted the key").await;
        assert_eq!(attribute(&browser, "#key-report li[data-check=authentication]", "data-status").await, "pass");
        assert_eq!(count(&browser, "#key-report li[data-status=fail]").await, 0);
        assert_eq!(browser.text_of("#kept-secret-key").await, "sk_test_…0000");
        assert_eq!(browser.text_of("#kept-webhook-secret").await, "whsec_…0001");
        let source = browser.client.source().await.unwrap();
        for secret in [SECRET_KEY, WEBHOOK_SECRET, "FakeStripeDefaultKey", "browserSecret"] {
            assert!(!source.contains(secret), "the page holds `{secret}`");
        }
        assert_eq!(attribute(&browser, "#secret_key", "value").await, "");

        // Save with the secret fields left blank: the draft kept them.
        browser.click("#save").await;
        if browser.client.find(Locator::Css("#connect-error")).await.is_ok() {
            panic!("Save refused: {}", browser.text_of("#connect-error").await);
        }
        assert!(browser.text_of("#connection-notice").await.starts_with("Connected."));
        let path = browser.path().await;
        assert!(path.starts_with("/connections/conn_") && path.ends_with("?done=saved"), "{path}");
        assert_eq!(connections_in_db(&app).await, 1);
        let drafts: i64 = app.db.run(|conn| {
            use billmirror::storage::schema::connection_drafts;
            Ok(connection_drafts::table.count().get_result(conn)?)
        }).await.unwrap();
        assert_eq!(drafts, 0, "the draft is gone once saved");
        let id = path.trim_start_matches("/connections/").split('?').next().unwrap().to_owned();
        let saved = app.connections.view(&id).await.unwrap();
        assert_eq!(saved.webhook_secrets.len(), 1, "the kept webhook secret was saved");
        assert_eq!(saved.secret_key.as_deref(), Some("sk_test_…0000"));

        browser.goto("/connections").await;
        let row = browser.text_of(&format!("#connections tr[data-connection={id}]")).await;
        assert!(row.contains("acct_fake_default (test)") && row.contains(ACCOUNT) && row.contains("healthy"), "{row}");
        browser.close().await;
    }

    async fn a_connections_page_shows_its_webhooks_and_disconnects_after_showing_the_impact(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        let ops = app.token(Role::Ops);
        let made: Value = app.post_json("/api/connections", &ops, &json!({"secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET})).await.json().await.unwrap();
        let id = made["id"].as_str().unwrap().to_owned();
        let hook = format!("/webhooks/stripe/{id}");
        assert_eq!(app.deliver_to(&hook, WEBHOOK_SECRET, &subscription_created()).await.status(), 200);
        assert_eq!(app.deliver_to(&hook, "whsec_notTheRightOne000000000000000000", &subscription_created()).await.status(), 400);
        app.settle().await;
        // Refusals are recorded off the request path.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while app.connections.view(&id).await.unwrap().webhook_health.signature_failures_last_24h == 0 {
            assert!(std::time::Instant::now() < deadline, "the refusal was never recorded");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        let (email, password) = app.user(Role::Ops);
        let browser = Browser::open(&app).await;
        browser.sign_in(&email, &password).await;
        browser.goto("/connections").await;
        browser.click(&format!("#connections tr[data-connection={id}] a")).await;
        assert_eq!(browser.text_of("#webhook-url").await, format!("https://billmirror.example.com/webhooks/stripe/{id}"));
        assert_eq!(browser.text_of("#health").await, "signature failures");
        assert_eq!(count(&browser, "#webhook-chart rect.deliveries").await, 1);
        assert_eq!(count(&browser, "#webhook-chart rect.failures").await, 1);
        assert_eq!(count(&browser, "#webhook-chart title, #webhook-chart desc").await, 26, "a title and a description, and a title per hour");
        assert!(browser.text_of("#chart-summary").await.starts_with("1 delivery and 1 signature failure in the last 24 hours"));
        assert_eq!(browser.text_of("#dead-events").await, "0");
        assert_eq!(attribute(&browser, "#dead-events", "href").await, "/events?status=dead");

        // Register the endpoint: Stripe makes it and its secret is kept beside the first one.
        browser.click("#register-endpoint").await;
        until_text(&browser, "#connection-notice", "created in Stripe").await;
        assert_eq!(fake.objects(ACCOUNT, "webhook_endpoints").len(), 1);
        assert_eq!(count(&browser, "#secrets tbody tr").await, 2);
        // Retire the first secret (listed last: newest first).
        browser.click("#secrets tbody tr:nth-child(2) button").await;
        until_text(&browser, "#connection-notice", "retired").await;
        assert_eq!(count(&browser, "#secrets tbody button").await, 1, "only the active secret can be retired");
        browser.click("#validate-again").await;
        until_text(&browser, "#connection-notice", "ran again").await;
        assert_eq!(attribute(&browser, "#key-report li[data-check=webhook_endpoint]", "data-status").await, "pass");

        // Disconnect: first what keeps running in Stripe, then the button that does it.
        browser.click("#disconnect").await;
        until_text(&browser, "h1", "Disconnect ").await;
        assert_eq!(browser.path().await, format!("/connections/{id}/disconnect"));
        assert_eq!(browser.text_of("#impact-subscriptions").await, "1");
        assert_eq!(browser.text_of("#impact-open-invoices").await, "0");
        assert_eq!(app.connections.view(&id).await.unwrap().disconnected_at, None, "nothing happened yet");
        browser.click("#confirm-disconnect").await;
        let said = browser.text_of("#connections-notice").await;
        assert!(said.contains("Disconnected") && said.contains("1 active subscription(s)"), "{said}");
        assert_eq!(count(&browser, &format!("#connections tr[data-connection={id}]")).await, 0);
        assert!(browser.text_of("#disconnected").await.contains("1 disconnected"));
        assert!(app.connections.view(&id).await.unwrap().disconnected_at.is_some());
        browser.close().await;
    }

    async fn support_neither_sees_nor_posts_connections_and_forms_need_the_csrf_token(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (support, support_password) = app.user(Role::Support);
        let browser = Browser::open(&app).await;
        browser.sign_in(&support, &support_password).await;
        assert!(!browser.text_of("header nav").await.contains("Connections"));
        for page in ["/connections", "/connections/new", "/connections/env"] {
            browser.goto(page).await;
            assert!(browser.text_of("h1").await.contains("Not allowed"), "{page}");
        }
        browser.goto("/").await;
        let csrf = browser.csrf_token().await;
        let cookie = browser.session_cookie().await;
        let refused = post_form(&app, "/connections/new", &cookie, &[("csrf_token", &csrf), ("action", "save"), ("secret_key", SECRET_KEY)]).await;
        assert_eq!(refused.status(), 403);
        let refused = post_form(&app, "/connections/env/validate", &cookie, &[("csrf_token", &csrf)]).await;
        assert_eq!(refused.status(), 403);
        browser.click("header form[action='/logout'] button").await;

        let (ops, ops_password) = app.user(Role::Ops);
        browser.sign_in(&ops, &ops_password).await;
        browser.goto("/connections/new").await;
        let csrf = browser.csrf_token().await;
        let cookie = browser.session_cookie().await;
        for token in ["", "0000000000000000000000000000000000000000000000000000000000000000"] {
            let refused = post_form(&app, "/connections/new", &cookie, &[("csrf_token", token), ("action", "validate"), ("secret_key", "sk_test_x ")]).await;
            assert_eq!(refused.status(), 403);
            assert!(refused.text().await.unwrap().contains("did not come from this site"));
        }
        // The page's own token is accepted: the refusals were about the token alone.
        let accepted = post_form(&app, "/connections/new", &cookie, &[("csrf_token", &csrf), ("action", "validate"), ("secret_key", "sk_test_x ")]).await;
        assert_eq!(accepted.status(), 200);
        assert!(accepted.text().await.unwrap().contains("data-check=\"secret_key_format\" data-status=\"fail\""));
        browser.close().await;
    }
}
