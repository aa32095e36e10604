//! "Connect with Stripe" in a real browser: sign in, start, authorise on the fake Stripe's page,
//! and land back on the Connections page connected.

use std::time::{Duration, Instant};

use billmirror::domain::Role;
use serde_json::Value;

use super::Browser;
use crate::oauth::{connection_of, oauth_app};
use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, OauthFlow, CONNECTED_ACCOUNT};

/// The browser's path and query once it starts with `prefix` (at most 15 s).
async fn wait_for_path(browser: &Browser, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let path = browser.path().await;
        if path.starts_with(prefix) {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "still at {path}, waiting for {prefix}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_backends! {
    /// The App flow: the install link, Stripe's Authorize button, back connected.
    async fn an_ops_person_installs_the_app_and_lands_back_connected(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::App).await;
        let (email, password) = app.user(Role::Ops);
        let browser = Browser::open(&app).await;
        browser.sign_in(&email, &password).await;
        wait_for_path(&browser, "/").await;

        browser.goto("/connections/oauth/start?mode=test").await;
        assert!(browser.text_of("h1").await.contains("Authorize access"), "on Stripe's page");
        browser.click("#authorize").await;
        let landing = wait_for_path(&browser, "/connections?").await;
        assert!(browser.text_of("#oauth-outcome").await.starts_with("Connected with Stripe, read-only"));
        let id = connection_of(&landing);
        let view: Value = app.get(&format!("/api/connections/{id}"), &app.admin_token).await.json().await.unwrap();
        assert_eq!(view["auth"], "app");
        assert_eq!(view["status"], "active");
        assert_eq!(view["stripe_account_id"], CONNECTED_ACCOUNT);
        assert_eq!(view["key_status"], "verified", "{view}");
        // Its page says it is read-only and offers no signing secrets of its own.
        browser.goto(&format!("/connections/{id}")).await;
        assert!(browser.text_of("#oauth-note").await.contains("read-only"));
        assert!(browser.client.find(fantoccini::Locator::Css("#register-endpoint")).await.is_err());
        // Its report can be run again, and it can be disconnected from here like any other.
        assert!(browser.client.find(fantoccini::Locator::Css("#validate-again")).await.is_ok());
        assert!(browser.client.find(fantoccini::Locator::Css("#disconnect")).await.is_ok());
        browser.close().await;
    }

    /// Deny on Stripe's page: back on the Connections page with `oauth_error=access_denied`.
    async fn denying_at_stripe_lands_back_with_the_reason(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::Connect).await;
        let (email, password) = app.user(Role::Admin);
        let browser = Browser::open(&app).await;
        browser.sign_in(&email, &password).await;
        wait_for_path(&browser, "/").await;
        browser.goto("/connections/oauth/start").await;
        browser.click("#deny").await;
        assert_eq!(wait_for_path(&browser, "/connections?").await, "/connections?oauth_error=access_denied");
        assert!(browser.text_of("#oauth-outcome").await.contains("access was denied on Stripe's page"));
        // The page offers the button again, and following it starts over.
        browser.click("#oauth-connect-test").await;
        assert!(browser.text_of("h1").await.contains("Authorize access"));
        browser.close().await;
    }
}
