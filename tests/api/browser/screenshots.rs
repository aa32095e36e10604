//! `make screenshots`: a PNG of every page, at 1440 px (desktop) and 360 px (narrow) wide, in
//! `target/screenshots/` (or `SCREENSHOTS_DIR`). It signs in as an admin (who sees every page),
//! seeds data through the fake Stripe and webhooks, then visits every page of `web::view::PAGES`
//! (so a page added there is photographed without touching this file), the pages without a place
//! in the navigation ([`OTHER_PAGES`]: add yours there), the sign-in page and the sidebar.
//!
//! It is a generator, not a test of behaviour, so `make test` does not run it (`#[ignore]`);
//! `make screenshots` does. It still fails when a page does not answer 200 or a PNG comes out
//! at the wrong width.

use std::path::PathBuf;

use billmirror::domain::Role;
use serde_json::{json, Value};

use super::Browser;
use crate::support::fake_stripe::{FakeStripe, SECRET_KEY};
use crate::support::{Backend, TestApp};

/// Pages not in the navigation: (file name, path). `{connection}` is the seeded connection's id.
const OTHER_PAGES: &[(&str, &str)] = &[
    ("customers-pat", "/customers?email=pat@example.com"),
    ("connection-new", "/connections/new"),
    ("connection-detail", "/connections/{connection}"),
    (
        "connection-disconnect",
        "/connections/{connection}/disconnect",
    ),
    ("connection-env", "/connections/env"),
    ("not-found", "/no/such/page"),
];

const WIDTHS: [(&str, u32); 2] = [("desktop", 1440), ("narrow", 360)];

const HOOK_SECRET: &str = "whsec_screenshots000000000000000000001";

fn out_dir() -> PathBuf {
    std::env::var_os("SCREENSHOTS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"),
        PathBuf::from,
    )
}

/// `/` → `home`, `/connections` → `connections`, `/users` → `users`.
fn file_name(href: &str) -> String {
    let name = href.trim_matches('/').replace('/', "-");
    if name.is_empty() {
        "home".into()
    } else {
        name
    }
}

/// A PNG's width, from its IHDR chunk.
fn png_width(png: &[u8]) -> u32 {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    u32::from_be_bytes(png[16..20].try_into().unwrap())
}

fn event(id: &str, kind: &str, object: Value) -> String {
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "created": chrono::Utc::now().timestamp(),
        "livemode": false, "type": kind, "data": {"object": object}}).to_string()
}

/// A customer with a failed and a good payment on the environment's connection, and a
/// connection (made against the fake Stripe) with a day of webhook traffic.
async fn seed(app: &TestApp) -> String {
    let customer = json!({"id": "cus_pat", "object": "customer", "email": "pat@example.com", "name": "Pat Doe", "created": 1_700_000_000});
    app.deliver(&event("evt_s1", "customer.created", customer))
        .await;
    for (n, status) in [(1, "failed"), (2, "succeeded")] {
        let charge = json!({"id": format!("ch_{n}"), "object": "charge", "amount": 6000, "currency": "usd",
            "customer": "cus_pat", "payment_intent": "pi_1", "status": status, "created": 1_700_000_200 + n,
            "disputed": false, "amount_refunded": 0, "failure_message": (status == "failed").then_some("Your card has insufficient funds."),
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}}});
        app.deliver(&event(
            &format!("evt_ch{n}"),
            &format!("charge.{status}"),
            charge,
        ))
        .await;
    }
    let ops = app.token(Role::Ops);
    let made: Value = app
        .post_json("/api/connections", &ops, &json!({"name": "Shop (test)", "secret_key": SECRET_KEY, "webhook_secret": HOOK_SECRET}))
        .await.json().await.unwrap();
    let id = made["id"]
        .as_str()
        .expect("the connection is made")
        .to_owned();
    let hook = format!("/webhooks/stripe/{id}");
    for n in 0..6 {
        let customer = json!({"id": format!("cus_c{n}"), "object": "customer", "email": format!("c{n}@example.com"), "created": 1_700_000_000});
        app.deliver_to(
            &hook,
            HOOK_SECRET,
            &event(&format!("evt_c{n}"), "customer.created", customer),
        )
        .await;
    }
    let subscription = json!({"id": "sub_1", "object": "subscription", "customer": "cus_c0", "status": "active",
        "created": 1_700_000_000, "items": {"data": []}});
    app.deliver_to(
        &hook,
        HOOK_SECRET,
        &event("evt_sub", "customer.subscription.created", subscription),
    )
    .await;
    app.deliver_to(
        &hook,
        "whsec_wrong0000000000000000000000000000",
        &event("evt_bad", "customer.created", json!({})),
    )
    .await;
    app.settle().await;
    id
}

async fn shoot(browser: &Browser, width: u32, path: &str, file: &PathBuf) {
    // Short first, so a short page is not measured in the tall window of the page before.
    browser.client.set_window_size(width, 700).await.unwrap();
    browser.goto(path).await;
    // The whole page, not just the first screen: the window as tall as the document.
    // The window's own frame takes some of its height: add it back.
    let sizes = browser.client
        .execute("return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]", vec![])
        .await.unwrap();
    let content = sizes[0].as_u64().unwrap_or(800).clamp(400, 12_000);
    let frame = sizes[1].as_u64().unwrap_or(0).min(400);
    browser
        .client
        .set_window_size(width, (content + frame) as u32)
        .await
        .unwrap();
    let png = browser.client.screenshot().await.unwrap();
    assert_eq!(png_width(&png), width, "{path} at {width} px");
    std::fs::write(file, &png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a generator run by `make screenshots`, not part of `make test`"]
async fn every_page_at_desktop_and_narrow_widths() {
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn_with_stripe(Backend::Sqlite, &fake).await;
    let connection = seed(&app).await;
    let (_, key) = app
        .db
        .run(|conn| billmirror::people::sidebar_keys::create(conn, "screenshots"))
        .await
        .unwrap();
    let (email, password) = app.user(Role::Admin);
    let dir = out_dir();
    std::fs::create_dir_all(&dir).unwrap();

    let mut pages: Vec<(String, String)> = billmirror::web::view::PAGES
        .iter()
        .map(|(href, _, _)| (file_name(href), (*href).to_owned()))
        .collect();
    pages.extend(OTHER_PAGES.iter().map(|(name, path)| {
        (
            (*name).to_owned(),
            path.replace("{connection}", &connection),
        )
    }));
    pages.push((
        "sidebar".into(),
        format!("/sidebar?key={}&email=pat@example.com", key.expose()),
    ));

    let mut written = 0;
    for (label, width) in WIDTHS {
        let browser = Browser::open_sized(&app, width, 900).await;
        shoot(
            &browser,
            width,
            "/login",
            &dir.join(format!("login-{label}.png")),
        )
        .await;
        browser.sign_in(&email, &password).await;
        for (name, path) in &pages {
            let cookie = browser.session_cookie().await;
            let started = std::time::Instant::now();
            let answer = reqwest::Client::new()
                .get(app.url(path))
                .header("Cookie", cookie)
                .send()
                .await
                .unwrap();
            if label == "desktop" {
                println!("{name}: answered in {} ms", started.elapsed().as_millis());
            }
            let expected = if name == "not-found" { 404 } else { 200 };
            assert_eq!(answer.status(), expected, "{path}");
            shoot(
                &browser,
                width,
                path,
                &dir.join(format!("{name}-{label}.png")),
            )
            .await;
            written += 1;
        }
        written += 1;
        browser.close().await;
    }
    assert_eq!(written, 2 * (pages.len() + 1));
    println!("{written} screenshots in {}", dir.display());
}
