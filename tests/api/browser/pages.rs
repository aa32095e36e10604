//! Signing in and out, roles, CSRF and escaping, in a real browser against the real app.

use billmirror::domain::Role;

use super::Browser;
use crate::on_both_backends;
use crate::support::TestApp;

/// Audit actions recorded for a subject (a user id or a typed email).
async fn audit_actions(app: &TestApp, subject: &str) -> Vec<String> {
    let subject = subject.to_owned();
    app.db
        .run(move |conn| billmirror::storage::tokens::audit_entries(conn, &subject))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.action)
        .collect()
}

async fn user_id(app: &TestApp, email: &str) -> String {
    let email = email.to_owned();
    app.db
        .run(move |conn| billmirror::storage::users::find_by_email(conn, &email))
        .await
        .unwrap()
        .unwrap()
        .id
}

/// Posts a form as the browser's session would, from outside the browser.
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

on_both_backends! {
    async fn a_person_signs_in_with_the_right_password_only_and_signs_out(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (email, password) = app.user(Role::Finance);
        let browser = Browser::open(&app).await;

        // A page asks for a session first and comes back to itself afterwards.
        browser.goto("/?from=bookmark").await;
        assert_eq!(browser.path().await, "/login?next=%2F%3Ffrom%3Dbookmark");

        browser.fill("#email", &email).await;
        browser.fill("#password", "not the password").await;
        browser.submit("form[action='/login'] button[type=submit]").await;
        assert!(browser.text_of("#login-error").await.contains("the email or the password is wrong"));
        // Sign-in keeps where the person was going (a hidden field of the form).
        browser.fill("#email", &email.to_uppercase()).await;
        browser.fill("#password", &password).await;
        browser.submit("form[action='/login'] button[type=submit]").await;
        assert_eq!(browser.path().await, "/?from=bookmark");
        let header = browser.text_of("header .who").await;
        assert!(header.contains(&email) && header.contains("finance"), "{header}");
        let cookie = browser.client.get_named_cookie(billmirror::web::SESSION_COOKIE).await.unwrap();
        assert_eq!(cookie.http_only(), Some(true));

        let id = user_id(&app, &email).await;
        assert_eq!(audit_actions(&app, &email).await, vec!["user.sign_in_failed"]);
        assert_eq!(audit_actions(&app, &id).await, vec!["user.create", "user.sign_in"]);

        browser.submit("header form[action='/logout'] button").await;
        assert!(browser.path().await.starts_with("/login"));
        browser.goto("/").await;
        assert!(browser.path().await.starts_with("/login"), "the session ended");
        assert!(audit_actions(&app, &id).await.contains(&"user.sign_out".to_owned()));
        browser.close().await;
    }

    async fn sign_out_everywhere_ends_the_other_browsers_sessions(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (email, password) = app.user(Role::Support);
        let first = Browser::open(&app).await;
        let second = Browser::open(&app).await;
        first.sign_in(&email, &password).await;
        second.sign_in(&email, &password).await;
        let second_cookie = second.session_cookie().await;
        second.close().await;

        first.submit("form[action='/logout/everywhere'] button").await;
        assert!(first.path().await.starts_with("/login"));
        let answer = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
            .get(app.url("/")).header("Cookie", second_cookie).send().await.unwrap();
        assert_eq!(answer.status(), 303, "the other browser's session is gone too");
        first.close().await;
    }

    async fn a_support_user_neither_sees_nor_may_post_admin_pages(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (email, password) = app.user(Role::Support);
        let browser = Browser::open(&app).await;
        browser.sign_in(&email, &password).await;
        let nav = browser.text_of("header nav").await;
        assert!(nav.contains("Customers"), "{nav}");
        for hidden in ["Users and tokens", "Connections", "Events", "Audit log"] {
            assert!(!nav.contains(hidden), "{hidden} is shown to support: {nav}");
        }
        browser.goto("/users").await;
        assert!(browser.text_of("h1").await.contains("Not allowed"));

        // The server refuses the form even with a valid session and CSRF token.
        browser.goto("/").await;
        let csrf = browser.csrf_token().await;
        let cookie = browser.session_cookie().await;
        let answer = post_form(&app, "/users", &cookie, &[("csrf_token", &csrf), ("email", "new@example.com"), ("role", "admin")]).await;
        assert_eq!(answer.status(), 403);
        let made = app.db.run(|conn| billmirror::storage::users::find_by_email(conn, "new@example.com")).await.unwrap();
        assert!(made.is_none());
        browser.close().await;
    }

    async fn forms_without_the_sessions_csrf_token_are_refused(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (email, password) = app.user(Role::Admin);
        let browser = Browser::open(&app).await;
        browser.sign_in(&email, &password).await;
        browser.goto("/users").await;
        let csrf = browser.csrf_token().await;
        let cookie = browser.session_cookie().await;

        let missing = post_form(&app, "/users", &cookie, &[("email", "a@example.com"), ("role", "support")]).await;
        assert_eq!(missing.status(), 403);
        assert!(missing.text().await.unwrap().contains("did not come from this site"));
        let wrong = post_form(&app, "/users", &cookie, &[("csrf_token", "0".repeat(64).as_str()), ("email", "a@example.com"), ("role", "support")]).await;
        assert_eq!(wrong.status(), 403);
        assert!(app.db.run(|conn| billmirror::storage::users::find_by_email(conn, "a@example.com")).await.unwrap().is_none());

        // The page's own token is accepted: the refusals above were about the token alone.
        let right = post_form(&app, "/users", &cookie, &[("csrf_token", &csrf), ("email", "a@example.com"), ("role", "support")]).await;
        assert_eq!(right.status(), 200);
        assert!(app.db.run(|conn| billmirror::storage::users::find_by_email(conn, "a@example.com")).await.unwrap().is_some());

        // Sign-out is a form too.
        let logout = post_form(&app, "/logout", &cookie, &[]).await;
        assert_eq!(logout.status(), 403);
        browser.close().await;
    }

    async fn an_admin_adds_a_user_who_then_signs_in_with_the_password_shown_once(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let (email, password) = app.user(Role::Admin);
        let browser = Browser::open(&app).await;
        browser.sign_in(&email, &password).await;
        browser.goto("/users").await;
        browser.fill("#new-email", "Desk@Example.com").await;
        browser.client.find(fantoccini::Locator::Css("#new-role")).await.unwrap().select_by_value("support").await.unwrap();
        browser.submit("form[action='/users'] button[type=submit]").await;
        let shown = browser.text_of("#created-password").await;
        assert_eq!(shown.len(), 24);
        browser.submit("header form[action='/logout'] button").await;
        browser.sign_in("desk@example.com", &shown).await;
        assert!(browser.text_of("header .who").await.contains("support"));
        browser.close().await;
    }
}

/// Sign-in is refused after five wrong passwords for an email, even with the right one, and the
/// refusal is audited. Over plain HTTP: no browser needed to count failures.
mod rate_limit {
    use super::*;

    async fn attempt(
        app: &TestApp,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::StatusCode {
        let page = client.get(app.url("/login")).send().await.unwrap();
        let cookie = page
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let token = cookie.split_once('=').unwrap().1.to_owned();
        client
            .post(app.url("/login"))
            .header("Cookie", cookie)
            .form(&[
                ("csrf_token", token.as_str()),
                ("email", email),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
            .status()
    }

    on_both_backends! {
        async fn sign_in_is_throttled_per_email_after_repeated_failures(backend: Backend) {
            let app = TestApp::spawn(backend).await;
            let (email, password) = app.user(Role::Support);
            let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            for _ in 0..5 {
                assert_eq!(attempt(&app, &client, &email, "wrong-password!").await, 401);
            }
            assert_eq!(attempt(&app, &client, &email, &password).await, 429);
            assert!(audit_actions(&app, &email).await.contains(&"user.sign_in_throttled".to_owned()));
            // Another person is not locked out by it.
            let (other, other_password) = app.user(Role::Support);
            assert_eq!(attempt(&app, &client, &other, &other_password).await, 303);
        }
    }
}

fn customer_event(id: &str, customer: serde_json::Value) -> String {
    serde_json::json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": 1_700_000_100,
        "livemode": false, "type": "customer.created", "data": {"object": customer}})
    .to_string()
}

fn charge_event(id: &str, charge: serde_json::Value) -> String {
    serde_json::json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": 1_700_000_200,
        "livemode": false, "type": "charge.failed", "data": {"object": charge}})
    .to_string()
}

mod customers {
    use super::*;

    on_both_backends! {
        async fn a_customer_named_script_renders_as_text(backend: Backend) {
            let app = TestApp::spawn(backend).await;
            let name = "<script>document.title='owned'</script><b>bold</b>";
            let delivered = app.deliver(&customer_event("evt_xss", serde_json::json!({
                "id": "cus_xss", "object": "customer", "email": "mallory@example.com",
                "name": name, "created": 1_700_000_000}))).await;
            assert!(delivered.status().is_success());
            app.settle().await;
            let (email, password) = app.user(Role::Support);
            let browser = Browser::open(&app).await;
            browser.sign_in(&email, &password).await;
            browser.goto("/customers?email=MALLORY@example.com").await;
            assert_eq!(browser.text_of("#customers .customer-name").await, name);
            let scripts = browser.client.execute("return document.querySelectorAll('script').length", vec![]).await.unwrap();
            assert_eq!(scripts, serde_json::json!(1), "only billmirror's own script");
            assert_eq!(browser.client.execute("return document.querySelectorAll('b').length", vec![]).await.unwrap(), serde_json::json!(0));
            assert_ne!(browser.client.title().await.unwrap(), "owned");
            browser.close().await;
        }

        async fn the_billing_context_page_shows_payments_attempts_and_says_when_nothing_matches(backend: Backend) {
            let app = TestApp::spawn(backend).await;
            app.deliver(&customer_event("evt_c1", serde_json::json!({
                "id": "cus_pat", "object": "customer", "email": "Pat@Example.com",
                "name": "Pat Doe", "created": 1_700_000_000}))).await;
            app.deliver(&charge_event("evt_ch1", serde_json::json!({
                "id": "ch_1", "object": "charge", "amount": 6000, "currency": "usd", "customer": "cus_pat",
                "payment_intent": "pi_1", "status": "failed", "created": 1_700_000_200, "disputed": false,
                "amount_refunded": 0, "failure_code": "card_declined",
                "failure_message": "Your card has insufficient funds.",
                "outcome": {"type": "issuer_declined", "reason": "insufficient_funds"},
                "payment_method_details": {"type": "card", "card": {"brand": "mastercard", "last4": "0341"}}}))).await;
            app.settle().await;
            let (email, password) = app.user(Role::Support);
            let browser = Browser::open(&app).await;
            browser.sign_in(&email, &password).await;
            browser.goto("/customers").await;
            browser.fill("#emails", "nobody@example.com, pat@example.com").await;
            browser.submit("form[action='/customers'] button[type=submit]").await;
            assert_eq!(browser.text_of("#customers .customer-name").await, "Pat Doe");
            let payments = browser.text_of("#payments").await;
            assert!(payments.contains("60.00 USD") && payments.contains("failed"), "{payments}");
            assert!(payments.contains("Your card has insufficient funds."), "{payments}");
            assert!(payments.contains("mastercard ····0341"), "{payments}");

            browser.goto("/customers?email=nobody@example.com").await;
            let none = browser.text_of("#no-match").await;
            assert!(none.contains("No Stripe customer has this email") && none.contains("emails match without case"), "{none}");
            browser.close().await;
        }
    }
}

mod sidebar {
    use super::*;

    /// A helpdesk page that frames the sidebar and answers `fetch-info` like a Chatwoot
    /// Dashboard App host: with an `appContext` message, as a JSON string.
    fn helpdesk_page(sidebar_url: &str) -> String {
        format!(
            r#"<!doctype html><html><body><h1>Conversation</h1>
<iframe id="billing" src="{sidebar_url}" width="420" height="700"></iframe>
<script>
window.addEventListener("message", function (event) {{
  if (event.data === "chatwoot-dashboard-app:fetch-info") {{
    event.source.postMessage(JSON.stringify({{event: "appContext", data: {{
      contact: {{id: 7, name: "Pat", email: "nobody@example.net", additional_emails: ["PAT@example.com"]}},
      conversation: {{id: 1}}, currentAgent: {{id: 2, name: "Agent"}}}}}}), "*");
  }}
}});
</script></body></html>"#
        )
    }

    on_both_backends! {
        async fn the_sidebar_in_a_helpdesk_iframe_shows_the_contacts_billing_context(backend: Backend) {
            let helpdesk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let helpdesk_origin = format!("http://{}", helpdesk.local_addr().unwrap());
            let app = TestApp::spawn_with(backend, &[("SIDEBAR_FRAME_ANCESTORS", &helpdesk_origin)]).await;
            app.deliver(&customer_event("evt_c1", serde_json::json!({
                "id": "cus_pat", "object": "customer", "email": "pat@example.com",
                "name": "Pat Doe", "created": 1_700_000_000}))).await;
            app.settle().await;
            let (_, key) = app.db.run(|conn| billmirror::people::sidebar_keys::create(conn, "test")).await.unwrap();
            let page = helpdesk_page(&app.url(&format!("/sidebar?key={}", key.expose())));
            let server = actix_web::HttpServer::new(move || {
                let page = page.clone();
                actix_web::App::new().default_service(actix_web::web::to(move || {
                    let page = page.clone();
                    async move { actix_web::HttpResponse::Ok().content_type("text/html").body(page) }
                }))
            }).workers(1).listen(helpdesk).unwrap().run();
            tokio::spawn(server);

            // Without a key, or with a wrong one, the sidebar shows nothing but why.
            let bare = reqwest::get(app.url("/sidebar?email=pat@example.com")).await.unwrap();
            assert_eq!(bare.status(), 401);
            let policy = bare.headers()["content-security-policy"].to_str().unwrap().to_owned();
            assert!(policy.ends_with(&format!("frame-ancestors {helpdesk_origin}")), "{policy}");
            assert!(!bare.text().await.unwrap().contains("Pat Doe"));

            let browser = Browser::open(&app).await;
            browser.client.goto(&helpdesk_origin).await.unwrap();
            browser.client.enter_frame(0).await.unwrap();
            assert_eq!(browser.text_of("#customers .customer-name").await, "Pat Doe");
            let heading = browser.text_of("h1").await;
            assert!(heading.contains("nobody@example.net") && heading.contains("pat@example.com"), "every email of the contact: {heading}");

            // Revoked, the same URL shows nothing.
            let keys = app.db.run(billmirror::storage::users::sidebar_keys).await.unwrap();
            let id = keys[0].id.clone();
            app.db.run(move |conn| billmirror::people::sidebar_keys::revoke(conn, &id, "test")).await.unwrap();
            browser.client.enter_parent_frame().await.unwrap();
            browser.client.refresh().await.unwrap();
            browser.client.enter_frame(0).await.unwrap();
            assert!(browser.text_of("#sidebar-problem").await.contains("revoked"));
            browser.close().await;
        }

        async fn the_sidebar_says_plainly_when_no_customer_has_the_email(backend: Backend) {
            let app = TestApp::spawn(backend).await;
            let (_, key) = app.db.run(|conn| billmirror::people::sidebar_keys::create(conn, "test")).await.unwrap();
            let answer = reqwest::get(app.url(&format!("/sidebar?key={}&email=ghost@example.com", key.expose()))).await.unwrap();
            assert_eq!(answer.status(), 200);
            assert!(answer.headers()["content-security-policy"].to_str().unwrap().ends_with("frame-ancestors 'none'"));
            let body = answer.text().await.unwrap();
            assert!(body.contains("No Stripe customer has this email") && body.contains("emails match without case"), "{body}");
        }
    }
}
