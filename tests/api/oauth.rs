//! "Connect with Stripe" against the fake Stripe's OAuth server, over real HTTP with a cookie
//! session: both flows end to end, every error code, state misuse, rolling refresh with two
//! instances refreshing at once, Connect webhooks routed by `account`, and revocation from
//! Stripe's side (by event and by a refused call). The browser test is in `browser::oauth`.

use std::collections::HashMap;

use billmirror::domain::Role;
use billmirror::sync::{backfill, BackfillOptions};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, OauthFlow, ACCOUNT, CONNECTED_ACCOUNT, SECRET_KEY};
use crate::support::{Backend, TestApp};

pub const PLATFORM_CLIENT_ID: &str = "ca_fake_platform";
pub const APP_CLIENT_ID: &str = "ca_fake_app";
pub const APP_ACCOUNT: &str = "acct_fake_app";
pub const APP_KEY: &str = "sk_test_51FakeStripeAppAccountKey00000000";
pub const CONNECT_SECRET: &str = "whsec_connect_test_secret_0001";

/// An app whose "Connect with Stripe" uses `flow` against `fake`, and the fake told about it.
pub async fn oauth_app(backend: Backend, fake: &FakeStripe, flow: OauthFlow) -> TestApp {
    oauth_app_with(backend, fake, flow, &[]).await
}

/// [`oauth_app`] with more settings (`extra` wins).
pub async fn oauth_app_with(
    backend: Backend,
    fake: &FakeStripe,
    flow: OauthFlow,
    extra: &[(&str, &str)],
) -> TestApp {
    let install = format!(
        "{}/oauth/v2/test/authorize?client_id={APP_CLIENT_ID}",
        fake.base_url
    );
    let mut vars = vec![
        ("STRIPE_API_BASE", fake.base_url.as_str()),
        ("STRIPE_CONNECT_BASE", fake.base_url.as_str()),
        ("STRIPE_CONNECT_WEBHOOK_SECRET_TEST", CONNECT_SECRET),
    ];
    match flow {
        OauthFlow::Connect => vars.extend([
            ("STRIPE_OAUTH_FLOW", "connect"),
            ("STRIPE_CONNECT_CLIENT_ID", PLATFORM_CLIENT_ID),
            ("STRIPE_PLATFORM_SECRET_KEY", SECRET_KEY),
        ]),
        OauthFlow::App => vars.extend([
            ("STRIPE_OAUTH_FLOW", "app"),
            ("STRIPE_PLATFORM_SECRET_KEY", APP_KEY),
            ("STRIPE_APP_INSTALL_LINK_TEST", install.as_str()),
        ]),
    }
    vars.extend(extra.iter().copied());
    let app = TestApp::spawn_at_own_url(backend, &vars).await;
    let callback = app.url("/connections/oauth/callback");
    match flow {
        OauthFlow::Connect => {
            fake.register_oauth_client(flow, PLATFORM_CLIENT_ID, ACCOUNT, &[&callback])
        }
        OauthFlow::App => {
            fake.add_account(APP_ACCOUNT);
            fake.add_key(
                APP_KEY,
                APP_ACCOUNT,
                crate::support::fake_stripe::Access::Full,
            );
            fake.register_oauth_client(flow, APP_CLIENT_ID, APP_ACCOUNT, &[&callback]);
        }
    }
    app
}

/// A signed-in person of `role`: their session cookie and user id.
pub async fn session(app: &TestApp, role: Role) -> (String, String) {
    let (email, password) = app.user(role);
    let opened = app
        .db
        .run(move |conn| {
            Ok(billmirror::people::sessions::sign_in(
                conn,
                &email,
                &password,
                "127.0.0.1",
            ))
        })
        .await
        .unwrap()
        .unwrap();
    (
        format!("{}={}", billmirror::web::SESSION_COOKIE, opened.id),
        opened.staff.user_id,
    )
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// `GET /connections/oauth/start` as `cookie`: where billmirror sends the browser.
async fn start(app: &TestApp, cookie: &str) -> String {
    let response = no_redirects()
        .get(app.url("/connections/oauth/start?mode=test"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "start redirects to Stripe");
    location(&response)
}

/// Opens Stripe's page at `url` and presses `button` (`authorize` or `deny`), as a browser
/// would: the fake's answer is the redirect back to billmirror's callback.
async fn decide(url: &str, button: &str) -> String {
    let page = reqwest::get(url).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let form = html
        .split("<form")
        .find(|f| f.contains(&format!("id=\"{button}\"")))
        .expect("the page has the button");
    let fields: Vec<(String, String)> = form
        .split("<input type=\"hidden\" ")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                let start = input.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                input[start..]
                    .split('"')
                    .next()
                    .unwrap()
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    let origin = url.split("/oauth").next().unwrap();
    let answer = no_redirects()
        .post(format!("{origin}/oauth/authorize/decide"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302, "Stripe's page redirects back");
    location(&answer)
}

/// Follows Stripe's redirect into billmirror's callback as `cookie`: where it lands.
async fn callback(_app: &TestApp, cookie: &str, url: &str) -> String {
    let response = no_redirects()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        303,
        "the callback redirects to the Connections page"
    );
    let landing = location(&response);
    assert!(landing.starts_with("/connections?"), "{landing}");
    landing
}

/// Start, authorise and come back: the landing URL.
pub async fn connect(app: &TestApp, cookie: &str) -> String {
    let stripe = start(app, cookie).await;
    let back = decide(&stripe, "authorize").await;
    callback(app, cookie, &back).await
}

pub fn connection_of(landing: &str) -> String {
    let query: HashMap<String, String> =
        form_urlencoded::parse(landing.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(
        query.get("oauth").map(String::as_str),
        Some("connected"),
        "{landing}"
    );
    query["connection"].clone()
}

/// Whether `text` holds a refresh token as the fake makes them (`rt_` and 32 hex digits).
/// Whether the connection's row holds a sealed (access token, refresh token).
async fn sealed_tokens(app: &TestApp, id: &str) -> (bool, bool) {
    let id = id.to_owned();
    app.db
        .run(move |conn| {
            use billmirror::storage::schema::connections;
            use diesel::prelude::*;
            let (access, refresh): (Option<String>, Option<String>) = connections::table
                .find(&id)
                .select((connections::secret_key_enc, connections::refresh_token_enc))
                .first(conn)?;
            Ok((access.is_some(), refresh.is_some()))
        })
        .await
        .unwrap()
}

fn holds_refresh_token(text: &str) -> bool {
    text.match_indices("rt_").any(|(at, _)| {
        let rest = &text[at + 3..];
        rest.len() >= 32 && rest[..32].chars().all(|c| c.is_ascii_hexdigit())
    })
}

async fn connections(app: &TestApp) -> Vec<Value> {
    let admin = app.admin_token.clone();
    let body: Value = app
        .get("/api/connections", &admin)
        .await
        .json()
        .await
        .unwrap();
    body["data"].as_array().cloned().unwrap_or_default()
}

async fn audit(app: &TestApp, subject: &str) -> Vec<(String, Value)> {
    let subject = subject.to_owned();
    app.db
        .run(move |conn| billmirror::storage::tokens::audit_entries(conn, &subject))
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.action, serde_json::from_str(&row.details).unwrap()))
        .collect()
}

async fn wait_for_status(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let view: Value = app
            .get(&format!("/api/connections/{id}"), &app.admin_token)
            .await
            .json()
            .await
            .unwrap();
        if view["status"] == status {
            return view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} : {view}",
            view["status"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn event(id: &str, kind: &str, account: Option<&str>, object: Value) -> String {
    let mut event = json!({"id": id, "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "type": kind, "data": {"object": object}});
    if let Some(account) = account {
        event["account"] = json!(account);
    }
    event.to_string()
}

fn customer(id: &str) -> Value {
    json!({"id": id, "object": "customer", "email": format!("{id}@example.com"), "name": "Grace", "created": 1_700_000_000})
}

async fn set_expired(app: &TestApp, id: &str) {
    let id = id.to_owned();
    app.db
        .run(move |conn| {
            use billmirror::storage::schema::connections;
            use diesel::prelude::*;
            diesel::update(connections::table.find(&id))
                .set(
                    connections::access_expires_at
                        .eq(billmirror::domain::time::now() - chrono::Duration::minutes(1)),
                )
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
}

on_both_backends! {
    /// Connect: authorised, saved read-only with no access token kept, read with the platform
    /// key and `Stripe-Account`, refused for pushes, deauthorised at Stripe on disconnect.
    async fn the_connect_flow_connects_reads_refuses_pushes_and_deauthorizes(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::Connect).await;
        let (cookie, _) = session(&app, Role::Ops).await;
        let landing = connect(&app, &cookie).await;
        let id = connection_of(&landing);
        assert!(id.starts_with("conn_"), "{landing}");

        let view: Value = app.get(&format!("/api/connections/{id}"), &app.admin_token).await.json().await.unwrap();
        assert_eq!(view["auth"], "connect");
        assert_eq!(view["status"], "active");
        assert_eq!(view["mode"], "test");
        assert_eq!(view["stripe_account_id"], CONNECTED_ACCOUNT);
        assert_eq!(view["can_push"], false);
        assert_eq!(view["secret_key"], Value::Null, "Connect reads with the platform key: no token kept");
        assert_eq!(sealed_tokens(&app, &id).await, (false, false), "nor its refresh token, which could mint one");
        assert_eq!(view["key_status"], "verified", "{view}");
        let permissions = view["last_report"]["checks"].as_array().unwrap().iter().find(|c| c["name"] == "permissions").unwrap().clone();
        assert_eq!(permissions["code"], "read_only", "{permissions}");
        let text = view.to_string();
        assert!(!text.contains("sk_test_oauth") && !holds_refresh_token(&text), "no token in the answer: {text}");
        assert_eq!(view["webhook_url"], app.url("/webhooks/stripe/connect/test"), "its events come through the Connect endpoint");
        let exchange = fake.calls().into_iter().find(|c| c.path == "/oauth/token").unwrap();
        assert_eq!(exchange.params["grant_type"], "authorization_code");

        // Reads go to the connected account's data, not the platform's.
        fake.seed(CONNECTED_ACCOUNT, "customers", vec![customer("cus_connected1")]);
        fake.seed(ACCOUNT, "customers", vec![customer("cus_platform1")]);
        let options = BackfillOptions { only: vec!["customers".into()], since: None };
        let report = backfill(&app.db, &app.connections, &id, &options, |_| {}).await.unwrap();
        assert_eq!(report[0].objects, 1, "{report:?}");
        app.settle().await;
        let cid = id.clone();
        let mirrored: Vec<String> = app.db.run(move |conn| {
            use billmirror::storage::schema::customers;
            use diesel::prelude::*;
            Ok(customers::table.filter(customers::connection_id.eq(&cid)).select(customers::stripe_id).load(conn)?)
        }).await.unwrap();
        assert_eq!(mirrored, vec!["cus_connected1".to_owned()]);

        let finance = app.token(Role::Finance);
        let refused = app.post_json("/api/invoices", &finance, &json!({
            "connection_id": id, "customer": {"email": "pat@example.com"}, "currency": "usd",
            "lines": [{"description": "Seat", "unit_amount": 1000, "quantity": 1}], "days_until_due": 14,
        })).await;
        assert_eq!(refused.status(), 422);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "connection_read_only", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("read-only"), "{body}");

        let ops = app.token(Role::Ops);
        let own_endpoint = app.post_json(&format!("/api/connections/{id}/webhook-endpoint"), &ops, &json!({})).await;
        assert_eq!(own_endpoint.status(), 409, "events come through the Connect endpoint");

        assert!(fake.is_authorized(CONNECTED_ACCOUNT));
        assert_eq!(app.delete(&format!("/api/connections/{id}"), &ops).await.status(), 200);
        assert!(!fake.is_authorized(CONNECTED_ACCOUNT), "disconnecting deauthorised billmirror at Stripe");
        let deauth = fake.calls().into_iter().find(|c| c.path == "/oauth/deauthorize").unwrap();
        assert_eq!(deauth.params["client_id"], PLATFORM_CLIENT_ID);
        assert_eq!(deauth.params["stripe_user_id"], CONNECTED_ACCOUNT);
    }

    /// The App flow over HTTP: the access token (kept sealed) reads the account, and connecting
    /// the same account again re-authorises the same connection.
    async fn the_app_flow_connects_with_an_access_token_and_reconnects_in_place(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::App).await;
        let (cookie, _) = session(&app, Role::Admin).await;
        let stripe = start(&app, &cookie).await;
        assert!(stripe.starts_with(&format!("{}/oauth/v2/test/authorize?client_id={APP_CLIENT_ID}&state=", fake.base_url)), "{stripe}");
        let id = connection_of(&callback(&app, &cookie, &decide(&stripe, "authorize").await).await);
        let view: Value = app.get(&format!("/api/connections/{id}"), &app.admin_token).await.json().await.unwrap();
        assert_eq!(view["auth"], "app");
        assert_eq!(view["key_status"], "verified", "{view}");
        assert!(view["secret_key"].as_str().unwrap().starts_with("sk_test_…"), "masked: {view}");
        let exchange = fake.calls().into_iter().find(|c| c.path == "/v1/oauth/token").unwrap();
        assert_eq!(exchange.params["grant_type"], "authorization_code");

        // Catch-up lists the connected account's events with the access token.
        let seen = json!({"id": "evt_app_1", "object": "event", "api_version": "2024-06-20",
            "created": chrono::Utc::now().timestamp(), "livemode": false, "type": "customer.created",
            "data": {"object": customer("cus_app1")}});
        fake.seed(CONNECTED_ACCOUNT, "events", vec![seen]);
        let since = chrono::Utc::now() - chrono::Duration::hours(1);
        let caught = billmirror::sync::catch_up(&app.db, &app.connections, &id, since).await.unwrap();
        assert_eq!((caught.listed, caught.new), (1, 1), "{caught:?}");
        app.settle().await;

        let again = connection_of(&connect(&app, &cookie).await);
        assert_eq!(again, id, "the same account connects into the same connection");
        assert_eq!(connections(&app).await.iter().filter(|c| c["auth"] == "app").count(), 1);

        // Stripe has no deauthorize call for Apps: disconnecting drops both tokens instead.
        assert_eq!(sealed_tokens(&app, &id).await, (true, true));
        let gone = app.delete(&format!("/api/connections/{id}"), &app.token(Role::Ops)).await;
        assert!(gone.status().is_success(), "{}", gone.status());
        assert_eq!(sealed_tokens(&app, &id).await, (false, false), "a disconnected App connection keeps no token");
    }

    /// Each failure lands on `/connections?oauth_error=CODE` and saves nothing.
    async fn every_failure_lands_with_its_code_and_saves_nothing(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::Connect).await;
        let (cookie, _) = session(&app, Role::Ops).await;
        let before = connections(&app).await.len();

        let denied = decide(&start(&app, &cookie).await, "deny").await;
        assert!(denied.contains("error=access_denied"), "{denied}");
        assert_eq!(callback(&app, &cookie, &denied).await, "/connections?oauth_error=access_denied");

        let back = decide(&start(&app, &cookie).await, "authorize").await;
        fake.expire_codes();
        assert_eq!(callback(&app, &cookie, &back).await, "/connections?oauth_error=invalid_grant", "an expired code");

        // A used code with a fresh state: Stripe refuses the code.
        let used = decide(&start(&app, &cookie).await, "authorize").await;
        let id = connection_of(&callback(&app, &cookie, &used).await);
        let ops = app.token(Role::Ops);
        app.delete(&format!("/api/connections/{id}"), &ops).await;
        let fresh = decide(&start(&app, &cookie).await, "authorize").await;
        let code = |url: &str| form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes()).find(|(k, _)| k == "code").unwrap().1.into_owned();
        let replayed = fresh.replace(&code(&fresh), &code(&used));
        assert_eq!(callback(&app, &cookie, &replayed).await, "/connections?oauth_error=invalid_grant", "a used code");
        let before = before + 1; // the disconnected one stays listed

        fake.override_livemode(Some(true));
        let back = decide(&start(&app, &cookie).await, "authorize").await;
        assert_eq!(callback(&app, &cookie, &back).await, "/connections?oauth_error=mode_mismatch");
        fake.override_livemode(None);

        let back = decide(&start(&app, &cookie).await, "authorize").await;
        fake.go_down(503);
        assert_eq!(callback(&app, &cookie, &back).await, "/connections?oauth_error=unreachable");
        fake.recover();

        let back = decide(&start(&app, &cookie).await, "authorize").await;
        fake.revoke_key(SECRET_KEY, "api_key_expired");
        assert_eq!(callback(&app, &cookie, &back).await, "/connections?oauth_error=invalid_client");

        let listed = connections(&app).await;
        assert_eq!(listed.len(), before, "nothing half-saved: {listed:?}");
        assert!(listed.iter().all(|c| c["status"] != "active" || c["auth"] == "key"));
    }

    /// Unknown, reused and other people's states are refused and audited; a support person
    /// cannot start at all.
    async fn state_misuse_is_refused_and_audited(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::Connect).await;
        let (alice, alice_id) = session(&app, Role::Ops).await;
        let (bob, bob_id) = session(&app, Role::Ops).await;

        let unknown = app.url("/connections/oauth/callback?code=ac_x&state=0123456789abcdef");
        assert_eq!(callback(&app, &alice, &unknown).await, "/connections?oauth_error=state");
        let missing = app.url("/connections/oauth/callback?code=ac_x");
        assert_eq!(callback(&app, &alice, &missing).await, "/connections?oauth_error=state");

        // Alice's authorisation brought back by Bob: refused, and spent for Alice too.
        let alices = decide(&start(&app, &alice).await, "authorize").await;
        assert_eq!(callback(&app, &bob, &alices).await, "/connections?oauth_error=state");
        assert_eq!(callback(&app, &alice, &alices).await, "/connections?oauth_error=state");

        // Used once, refused the second time.
        let once = decide(&start(&app, &alice).await, "authorize").await;
        connection_of(&callback(&app, &alice, &once).await);
        assert_eq!(callback(&app, &alice, &once).await, "/connections?oauth_error=state");

        let reasons = |entries: Vec<(String, Value)>| -> Vec<String> {
            entries.into_iter().filter(|(a, _)| a == "connection.oauth_state_refused").map(|(_, d)| d["reason"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(reasons(audit(&app, &alice_id).await), ["unknown", "missing", "reused", "reused"]);
        assert_eq!(reasons(audit(&app, &bob_id).await), ["other_user"]);

        let (support, _) = session(&app, Role::Support).await;
        let refused = no_redirects().get(app.url("/connections/oauth/start")).header("cookie", &support).send().await.unwrap();
        assert_eq!(refused.status(), 403);
        let anonymous = no_redirects().get(app.url("/connections/oauth/start")).send().await.unwrap();
        assert_eq!(anonymous.status(), 303);
        assert!(location(&anonymous).starts_with("/login"));
    }

    /// Two instances refresh one App connection at once: one spends the rolling refresh token,
    /// the other waits and re-reads; both then read with the new token.
    async fn two_instances_refreshing_at_once_spend_the_refresh_token_once(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::App).await;
        let (cookie, _) = session(&app, Role::Ops).await;
        let id = connection_of(&connect(&app, &cookie).await);
        let install = format!("{}/oauth/v2/test/authorize?client_id={APP_CLIENT_ID}", fake.base_url);
        let other = billmirror::app::state(
            app.config(&[
                ("STRIPE_API_BASE", &fake.base_url), ("STRIPE_OAUTH_FLOW", "app"),
                ("STRIPE_PLATFORM_SECRET_KEY", APP_KEY), ("STRIPE_APP_INSTALL_LINK_TEST", &install),
            ]),
            app.db.clone(),
        ).await.unwrap();
        let refreshes = || fake.calls().iter().filter(|c| c.path == "/v1/oauth/token" && c.params["grant_type"] == "refresh_token").count();

        set_expired(&app, &id).await;
        let ahead = chrono::Duration::minutes(5);
        let (a, b) = tokio::join!(app.connections.refresh_tokens(&id, ahead), other.connections.refresh_tokens(&id, ahead));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(refreshes(), 1, "one instance refreshed");
        assert_eq!(a.token_version, 2);
        assert_eq!(a.token_version, b.token_version, "the other read the winner's tokens");
        assert_eq!(a.secret_key_enc, b.secret_key_enc);

        // Both read with the new token.
        for connections in [&app.connections, &other.connections] {
            assert!(connections.validate(&id, "test").await.unwrap().ok);
        }
        // The stored refresh token is the new one: the old one was spent, yet this works.
        set_expired(&app, &id).await;
        let ops = app.token(Role::Ops);
        let validated = app.post_json(&format!("/api/connections/{id}/validate"), &ops, &json!({})).await;
        assert_eq!(validated.status(), 200, "{}", validated.text().await.unwrap());
        assert_eq!(refreshes(), 2, "an expiring token is refreshed before a read");
        let view = wait_for_status(&app, &id, "active").await;
        assert_eq!(view["auth"], "app");
    }

    /// Connect events go to the connection of their `account`; an account that is not
    /// connected is refused (400, counted); `account.application.deauthorized` revokes.
    async fn connect_webhooks_route_by_account_and_deauthorization_revokes(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::Connect).await;
        let (cookie, _) = session(&app, Role::Ops).await;
        let id = connection_of(&connect(&app, &cookie).await);
        let path = "/webhooks/stripe/connect/test";

        let routed = app.deliver_to(path, CONNECT_SECRET, &event("evt_c1", "customer.created", Some(CONNECTED_ACCOUNT), customer("cus_routed"))).await;
        assert_eq!(routed.status(), 200);
        app.settle().await;
        let cid = id.clone();
        let stored: i64 = app.db.run(move |conn| {
            use billmirror::storage::schema::customers;
            use diesel::prelude::*;
            Ok(customers::table.filter(customers::connection_id.eq(&cid)).filter(customers::stripe_id.eq("cus_routed")).count().get_result(conn)?)
        }).await.unwrap();
        assert_eq!(stored, 1, "the event reached the account's connection");

        let stranger = app.deliver_to(path, CONNECT_SECRET, &event("evt_c2", "customer.created", Some("acct_not_connected"), customer("cus_x"))).await;
        assert_eq!(stranger.status(), 400);
        assert_eq!(crate::support::error_code(stranger).await, "unconnected_account");
        let no_account = app.deliver_to(path, CONNECT_SECRET, &event("evt_c3", "customer.created", None, customer("cus_y"))).await;
        assert_eq!(crate::support::error_code(no_account).await, "missing_account");
        let forged = app.deliver_to(path, "whsec_someone_else_000000", &event("evt_c4", "customer.created", Some(CONNECTED_ACCOUNT), customer("cus_z"))).await;
        assert_eq!(forged.status(), 400);
        assert_eq!(app.deliver_to("/webhooks/stripe/connect/live", CONNECT_SECRET, "{}").await.status(), 404);
        // Rejections are written in the background: wait for the count.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let counted: Vec<String> = app.db.run(|conn| {
                use billmirror::storage::schema::webhook_rejections;
                use diesel::prelude::*;
                Ok(webhook_rejections::table.filter(webhook_rejections::connection_id.eq("connect_test")).select(webhook_rejections::reason).load(conn)?)
            }).await.unwrap();
            if counted.contains(&"unconnected_account".to_owned()) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not counted: {counted:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        let deauthorized = fake.deauthorize_in_dashboard(CONNECTED_ACCOUNT);
        let answer = app.deliver_to(path, CONNECT_SECRET, &deauthorized.to_string()).await;
        assert_eq!(answer.status(), 200);
        let view = wait_for_status(&app, &id, "revoked").await;
        assert!(view["revoked_at"].is_string());
        assert!(audit(&app, &id).await.iter().any(|(a, d)| a == "connection.revoked" && d["reason"] == "account.application.deauthorized"));
        let options = BackfillOptions { only: vec!["customers".into()], since: None };
        let stopped = backfill(&app.db, &app.connections, &id, &options, |_| {}).await;
        assert!(stopped.unwrap_err().to_string().contains("revoked"), "no more reads");
        let after = app.deliver_to(path, CONNECT_SECRET, &event("evt_c5", "customer.created", Some(CONNECTED_ACCOUNT), customer("cus_late"))).await;
        assert_eq!(crate::support::error_code(after).await, "unconnected_account");
    }

    /// An App authorisation removed at Stripe without an event reaching billmirror: the next
    /// read answers 401 and the connection is revoked.
    async fn a_rolled_platform_key_revokes_no_connect_connection(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::Connect).await;
        let (cookie, _) = session(&app, Role::Ops).await;
        let id = connection_of(&connect(&app, &cookie).await);
        // Stripe now answers 401 to the platform key: that key is wrong, not the account gone.
        fake.revoke_key(SECRET_KEY, "api_key_expired");
        let ops = app.token(Role::Ops);
        let report: Value = app.post_json(&format!("/api/connections/{id}/validate"), &ops, &json!({})).await.json().await.unwrap();
        assert_eq!(report["ok"], false, "{report}");
        // The refusal is handled in the background: give it time to (wrongly) revoke.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let view: Value = app.get(&format!("/api/connections/{id}"), &app.admin_token).await.json().await.unwrap();
        assert_eq!(view["status"], "active", "{view}");
        assert!(!audit(&app, &id).await.iter().any(|(a, _)| a == "connection.revoked"));
    }

    async fn a_refused_read_revokes_the_connection(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = oauth_app(backend, &fake, OauthFlow::App).await;
        let (cookie, _) = session(&app, Role::Ops).await;
        let id = connection_of(&connect(&app, &cookie).await);
        fake.deauthorize_in_dashboard(CONNECTED_ACCOUNT);
        let ops = app.token(Role::Ops);
        let report: Value = app.post_json(&format!("/api/connections/{id}/validate"), &ops, &json!({})).await.json().await.unwrap();
        assert_eq!(report["ok"], false, "{report}");
        let view = wait_for_status(&app, &id, "revoked").await;
        assert_eq!(view["secret_key"], Value::Null, "a revoked connection keeps no token");
        assert!(audit(&app, &id).await.iter().any(|(a, d)| a == "connection.revoked" && d["reason"] == "Stripe answered 401"));
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(&format!("billmirror_connection_key_report_ok{{connection=\"{id}\"}} 0")), "the health report shows it failing");
        let again = app.post_json(&format!("/api/connections/{id}/validate"), &ops, &json!({})).await;
        assert_eq!(again.status(), 409);
        assert_eq!(crate::support::error_code(again).await, "connection_revoked");
    }
}
