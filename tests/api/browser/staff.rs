//! The invoices, events, audit log and API token pages in a real browser: an invoice made until
//! Stripe has it open, voided after a confirmation; a dead event replayed; the audit log; tokens
//! shown once and revoked; what support may not see or post; a `<script>` customer as text.

use std::time::{Duration, Instant};

use billmirror::domain::Role;
use fantoccini::Locator;
use serde_json::json;

use super::Browser;
use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::TestApp;

/// Posts a form with the browser's session from outside it (a forged or replayed post).
async fn post_form(app: &TestApp, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> u16 {
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
        .status()
        .as_u16()
}

async fn count(browser: &Browser, css: &str) -> serde_json::Value {
    browser
        .client
        .execute(
            &format!("return document.querySelectorAll({css:?}).length"),
            vec![],
        )
        .await
        .unwrap()
}

async fn exists(browser: &Browser, css: &str) -> bool {
    count(browser, css).await != json!(0)
}

async fn attr(browser: &Browser, css: &str, name: &str) -> String {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
        .attr(name)
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn select(browser: &Browser, css: &str, value: &str) {
    browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// Waits (without reloading) until `css`'s text satisfies `done`: after a click, the next page
/// may not be there yet.
async fn until(browser: &Browser, css: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline {
        // The element may belong to the page being left: a stale one is simply read again.
        if let Ok(element) = browser.client.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if done(&text) {
                    return text;
                }
                seen = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` stayed `{seen}`");
}

/// Waits until the browser is on a page whose path and query contain `needle`.
async fn until_path(browser: &Browser, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.path().await.contains(needle) {
        assert!(Instant::now() < deadline, "never reached `{needle}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads the page until `css`'s text is `want` (the invoice page also reloads itself while
/// its push runs).
async fn until_text(browser: &Browser, css: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = browser.text_of(css).await;
        if text == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` stayed `{text}`, not `{want}`"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        browser.client.refresh().await.unwrap();
    }
}

on_both_backends! {
    async fn finance_makes_an_invoice_until_stripe_has_it_open_then_voids_it_and_the_audit_log_shows_it(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with_stripe(backend, &fake).await;
        crate::invoices::connect(&app, SECRET_KEY).await;
        let (finance, password) = app.user(Role::Finance);
        let browser = Browser::open(&app).await;
        browser.sign_in(&finance, &password).await;
        browser.goto("/invoices").await;
        assert_eq!(attr(&browser, "#new-invoice", "href").await, "/invoices/new");
        browser.goto("/invoices/new").await;

        browser.fill("#email", "ada.example.com").await;
        browser.fill("#name", "Ada Lovelace").await;
        browser.fill("#line-0-description", "Analytical engine tuning").await;
        browser.fill("#line-0-quantity", "3").await;
        browser.fill("#line-0-amount", "125").await;
        browser.click("#add-line").await;
        browser.fill("#line-1-description", "Travel").await;
        browser.fill("#line-1-amount", "49.99").await;
        assert_eq!(browser.text_of("#invoice-total").await, "424.99 USD", "the live total, in cents");
        browser.fill("#line-1-amount", "49.999").await;
        assert!(browser.text_of("#invoice-total").await.contains("does not read"));
        browser.fill("#line-1-amount", "49.99").await;
        browser.fill("#days_until_due", "14").await;
        browser.click("#make-invoice").await;

        // The server refuses the email beside its field and keeps every line typed.
        assert!(!browser.text_of("#email-error").await.is_empty());
        assert_eq!(attr(&browser, "#line-1-description", "value").await, "Travel");
        assert_eq!(browser.text_of("#invoice-total").await, "424.99 USD");
        browser.fill("#email", "Ada@Example.com").await;
        browser.click("#make-invoice").await;

        until_text(&browser, "#invoice-status", "open").await;
        assert!(browser.path().await.starts_with("/invoices/inv_"), "{}", browser.path().await);
        assert_eq!(browser.text_of("#invoice-sync").await, "pushed");
        assert_eq!(browser.text_of("#invoice-total").await, "424.99 USD");
        assert!(browser.text_of("#pay-url").await.starts_with("https://billmirror.example.com/pay/"));
        assert!(attr(&browser, "#hosted-link", "href").await.starts_with("https://invoice.stripe.com/"));
        assert!(attr(&browser, "#pdf-link", "href").await.ends_with("/pdf"));
        let lines = browser.text_of("#lines").await;
        assert!(lines.contains("Travel") && lines.contains("49.99 USD") && lines.contains("375.00 USD"), "{lines}");
        assert!(browser.text_of("#timeline").await.contains(&format!("invoice.create by {finance}")));
        let number = browser.text_of("#invoice-title").await;
        assert!(number.starts_with("FAKE-"), "{number}");

        // Void asks first; then Stripe has it void too.
        assert!(!browser.client.find(Locator::Css("#confirm-void")).await.unwrap().is_displayed().await.unwrap());
        browser.click("#void summary").await;
        browser.click("#confirm-void").await;
        assert_eq!(browser.text_of("#notice").await, "Voided.");
        assert_eq!(browser.text_of("#invoice-status").await, "void");
        assert!(!exists(&browser, "#confirm-void").await);
        assert_eq!(fake.objects(ACCOUNT, "invoices")[0]["status"], "void");

        // Without script, Add a line posts the form back with one more row and the server's total;
        // nothing is made.
        let (csrf, cookie) = (browser.csrf_token().await, browser.session_cookie().await);
        let back = reqwest::Client::new().post(app.url("/invoices")).header("Cookie", &cookie)
            .form(&[("csrf_token", csrf.as_str()), ("email", "x@example.com"), ("currency", "jpy"),
                    ("line_description", "A"), ("line_quantity", "2"), ("line_amount", "1500"), ("intent", "add_line")])
            .send().await.unwrap();
        assert_eq!(back.status(), 200);
        let body = back.text().await.unwrap();
        assert!(body.contains(r#"id="line-1-description""#) && body.contains("3,000 JPY"), "{body}");
        assert_eq!(fake.objects(ACCOUNT, "invoices").len(), 1);

        // The list's filters, from the form.
        browser.goto("/invoices").await;
        select(&browser, "#f-status", "void").await;
        browser.fill("#f-email", "ADA@example.com").await;
        browser.click("form.filters button[type=submit]").await;
        until_path(&browser, "status=void").await;
        assert!(browser.text_of("#invoices").await.contains(&number));
        browser.goto("/invoices?status=open").await;
        assert!(browser.text_of("#no-invoices").await.contains("match these filters"));
        browser.goto("/invoices?sync=pushed&email=someone-else@example.com").await;
        assert!(exists(&browser, "#no-invoices").await);
        browser.goto("/invoices?status=lost").await;
        assert!(browser.text_of("#list-error").await.contains("The status filter"));

        // Finance does not see the ops pages; an admin's audit log shows the sign-in and the void.
        assert!(!browser.text_of("header nav").await.contains("Audit log"));
        browser.goto("/audit").await;
        assert!(browser.text_of("h1").await.contains("Not allowed"));
        browser.goto("/").await;
        browser.click("header form[action='/logout'] button").await;
        until(&browser, "h1", |h| h.contains("Sign in")).await;
        let (admin, admin_password) = app.user(Role::Admin);
        browser.sign_in(&admin, &admin_password).await;
        assert!(until(&browser, "header nav", |nav| nav.contains("Audit log")).await.contains("Events"));
        browser.goto("/audit").await;
        browser.fill("#f-actor", &finance).await;
        browser.click("form.filters button[type=submit]").await;
        until_path(&browser, "actor=").await;
        let log = browser.text_of("#audit").await;
        assert!(!log.contains("admin-"), "only the actor's entries: {log}");
        for action in ["user.sign_in", "invoice.create", "invoice.void"] {
            assert!(log.contains(action), "{action} missing: {log}");
        }
        browser.goto("/audit?action=invoice.void").await;
        assert_eq!(count(&browser, "#audit tbody tr").await, json!(1));
        assert_eq!(browser.text_of("#audit .actor").await, finance);
        browser.close().await;
    }

    async fn ops_replays_a_dead_event_from_the_events_page(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("MAX_EVENT_ATTEMPTS", "1")]).await;
        // A mapped type whose object has no id cannot be applied: it dies at once.
        let broken = json!({"id": "evt_broken", "object": "event", "api_version": "2024-06-20", "created": 1_700_000_000,
            "livemode": false, "type": "customer.created",
            "data": {"object": {"object": "customer", "description": "<script>document.title='owned'</script>"}}});
        assert_eq!(app.deliver(&broken.to_string()).await.status(), 200);
        app.settle().await;

        let (ops, password) = app.user(Role::Ops);
        let browser = Browser::open(&app).await;
        browser.sign_in(&ops, &password).await;
        until(&browser, "header nav", |nav| nav.contains("Events")).await;
        browser.goto("/events").await;
        assert_eq!(browser.text_of("#event-counts .count[data-status=dead]").await, "1");
        assert_eq!(browser.text_of("#apply-lag").await, "Nothing waits to be applied.");
        select(&browser, "#f-status", "dead").await;
        select(&browser, "#f-connection", "env").await;
        browser.fill("#f-type", "customer.created").await;
        browser.click("form.filters button[type=submit]").await;
        until_path(&browser, "status=dead&type=customer.created&connection_id=env").await;
        browser.click("#events a[href^='/events/']").await;

        assert_eq!(browser.text_of("#event-status").await, "dead");
        assert!(browser.text_of("#event-error").await.contains("no id"));
        let payload = browser.text_of("#payload").await;
        assert!(payload.contains("\"description\": \"<script>document.title='owned'</script>\""), "{payload}");
        assert_eq!(count(&browser, "script").await, json!(1), "the payload is text");
        assert_ne!(browser.client.title().await.unwrap(), "owned");

        browser.click("#replay").await;
        assert!(browser.text_of("#notice").await.contains("Scheduled again"));
        let id = browser.path().await.trim_start_matches("/events/").split('?').next().unwrap().to_owned();
        let audited = app.db.run({ let id = id.clone(); move |conn| billmirror::storage::tokens::audit_entries(conn, &id) }).await.unwrap();
        assert_eq!(audited.iter().map(|a| (a.action.as_str(), a.actor.as_str())).collect::<Vec<_>>(), [("event.replay", ops.as_str())]);
        app.settle().await;
        browser.client.refresh().await.unwrap();
        assert_eq!(browser.text_of("#event-status").await, "dead", "still broken, tried once more");

        browser.goto("/events?connection_id=elsewhere").await;
        assert!(exists(&browser, "#no-events").await);
        browser.close().await;
    }

    async fn an_admin_makes_a_token_shown_once_and_revokes_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (admin, password) = app.user(Role::Admin);
        let browser = Browser::open(&app).await;
        browser.sign_in(&admin, &password).await;
        browser.goto("/users").await;
        browser.fill("#token-name", "nightly-export").await;
        select(&browser, "#token-role", "support").await;
        browser.click("form[action='/users/tokens'] button[type=submit]").await;
        let token = browser.text_of("#token-value").await;
        assert!(token.starts_with("bm_"), "{token}");
        assert_eq!(app.get("/api/invoices", &token).await.status(), 200, "the token works");

        browser.goto("/users").await;
        let source = browser.client.source().await.unwrap();
        assert!(!source.contains(&token), "shown once only");
        let row = browser.text_of("#tokens tr[data-token='nightly-export']").await;
        assert!(row.contains("support") && row.contains("active") && row.contains('…'), "masked: {row}");

        browser.fill("#token-name", "nightly-export").await;
        browser.click("form[action='/users/tokens'] button[type=submit]").await;
        assert!(browser.text_of("#token-error").await.contains("already exists"));

        // Revoking asks first (the page's confirm); accepted here.
        browser.client.execute("window.confirm = () => true", vec![]).await.unwrap();
        browser.click("#tokens tr[data-token='nightly-export'] button.danger").await;
        until(&browser, "#tokens tr[data-token='nightly-export']", |row| row.contains("revoked")).await;
        assert_eq!(app.get("/api/invoices", &token).await.status(), 401, "revoked at once");
        browser.close().await;
    }

    async fn support_reads_invoices_but_neither_sees_nor_may_post_new_void_or_replay(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let name = "<script>document.title='owned'</script><b>bold</b>";
        let mirrored = json!({"id": "evt_in_xss", "object": "event", "api_version": "2024-06-20", "created": 1_700_000_000,
            "livemode": false, "type": "invoice.finalized", "data": {"object": {"id": "in_xss", "object": "invoice",
            "status": "open", "currency": "eur", "total": 1000, "amount_due": 1000, "amount_remaining": 1000,
            "customer_email": "mallory@example.com", "customer_name": name}}});
        assert_eq!(app.deliver(&mirrored.to_string()).await.status(), 200);
        app.settle().await;

        let (support, password) = app.user(Role::Support);
        let browser = Browser::open(&app).await;
        browser.sign_in(&support, &password).await;
        let nav = browser.text_of("header nav").await;
        assert!(nav.contains("Invoices") && !nav.contains("Events") && !nav.contains("Audit log"), "{nav}");
        browser.click("header nav a[href='/invoices']").await;
        assert_eq!(browser.text_of("#invoices .customer").await, name);
        assert!(!exists(&browser, "#new-invoice").await);
        assert_eq!(count(&browser, "script").await, json!(1));
        assert_eq!(count(&browser, "b").await, json!(0));
        until_path(&browser, "/invoices").await;
        browser.click("#invoices a[href^='/invoices/']").await;
        assert_eq!(browser.text_of("#invoice-customer").await, name);
        assert_eq!(browser.text_of("#invoice-total").await, "10.00 EUR");
        assert!(!exists(&browser, "#confirm-void").await && !exists(&browser, "#retry-push").await);
        assert_eq!(count(&browser, "script").await, json!(1));
        assert_ne!(browser.client.title().await.unwrap(), "owned");
        let invoice = browser.path().await;

        for page in ["/invoices/new", "/events", "/audit"] {
            browser.goto(page).await;
            assert!(browser.text_of("h1").await.contains("Not allowed"), "{page}");
        }

        // The server refuses the forms too, with a valid session and CSRF token.
        browser.goto("/invoices").await;
        let csrf = browser.csrf_token().await;
        let cookie = browser.session_cookie().await;
        let made = post_form(&app, "/invoices", &cookie, &[("csrf_token", &csrf), ("email", "x@example.com"),
            ("currency", "usd"), ("line_description", "x"), ("line_amount", "5"), ("intent", "create")]).await;
        assert_eq!(made, 403);
        assert_eq!(post_form(&app, &format!("{invoice}/void"), &cookie, &[("csrf_token", &csrf)]).await, 403);
        assert_eq!(post_form(&app, "/events/evt_in_xss/replay", &cookie, &[("csrf_token", &csrf)]).await, 403);
        let rows = app.db.run(|conn| billmirror::storage::invoices::list(conn, &Default::default(), None, 10)).await.unwrap();
        assert_eq!(rows.len(), 1, "nothing was made");
        assert_eq!(rows[0].status.as_str(), "open", "nor voided");
        browser.close().await;
    }
}
