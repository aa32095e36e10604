//! Hostile and unlucky input: concurrent duplicates, NUL and control characters, deep nesting,
//! slow or huge bodies, malformed HTTP, two instances starting at once, garbage cursors, a
//! database that cannot write or is locked. Each answers in the documented JSON shape, never a
//! 500, and nothing is acknowledged that cannot be applied.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billmirror::http::routes::api_routes;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::{error_code, Backend, TestApp, WEBHOOK_SECRET};

fn event(id: &str, event_type: &str, object: Value) -> String {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "type": event_type,
        "data": {"object": object},
    })
    .to_string()
}

fn customer(id: &str, name: &str) -> Value {
    json!({"id": id, "object": "customer", "email": "hostile@example.com", "name": name, "created": 1_700_000_000})
}

async fn stored_ids(app: &TestApp) -> Vec<String> {
    app.db
        .run(|conn| {
            use billmirror::storage::schema::webhook_events::dsl::*;
            Ok(webhook_events
                .select(stripe_event_id)
                .order(stripe_event_id)
                .load(conn)?)
        })
        .await
        .unwrap()
}

/// One HTTP/1.1 exchange written by hand: the status, the body, and whether the server closed
/// the connection after answering.
struct Raw {
    status: u16,
    /// The status line and headers, lower-cased.
    head: String,
    body: String,
    elapsed: Duration,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn address(app: &TestApp) -> String {
    app.base_url.trim_start_matches("http://").to_owned()
}

/// Writes `head` (and `body`), then reads until the server closes the connection (at most
/// `wait`). The requests say `Connection: close`, so a complete answer ends with the close.
fn raw_exchange(app: &TestApp, head: &str, body: &[u8], wait: Duration) -> Raw {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address(app)).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    // A server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "no complete answer within {wait:?} ({e}); got {:?}",
                String::from_utf8_lossy(&answer)
            ),
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
        elapsed,
    }
}

// 1. Concurrent duplicates on PostgreSQL.

/// A second instance of the app on `app`'s database; returns its base URL.
async fn second_instance(app: &TestApp) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let state = billmirror::app::state(app.config(&[]), app.db.clone())
        .await
        .unwrap();
    tokio::spawn(billmirror::http::server(state, listener).unwrap());
    base_url
}

/// Stripe retries, and two instances receive the same events at once: every delivery is
/// answered 200 and each event is stored once, with no batch lost to a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_concurrent_duplicates_from_many_clients_store_each_event_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let instances = [app.base_url.clone(), second_instance(&app).await];
    // Three rounds: a deadlock needs two batches to meet mid-insert, which one round may miss.
    const EVENTS: usize = 800;
    for round in 0..3 {
        let bodies: Vec<String> = (0..EVENTS)
            .map(|n| {
                let id = format!("evt_dup_{round}_{n:04}");
                event(
                    &id,
                    "customer.created",
                    customer(&format!("cus_dup_{round}_{n:04}"), "Dup"),
                )
            })
            .collect();
        // Each event twice at once, once to each instance: sixteen events in one order to one
        // instance and in the opposite order to the other, so that concurrent batches hold the same
        // keys in different orders.
        let deliveries: Vec<(usize, usize)> = (0..EVENTS)
            .collect::<Vec<_>>()
            .chunks(16)
            .flat_map(|chunk| {
                let forward = chunk.iter().map(|&n| (n, 0));
                let backward = chunk.iter().rev().map(|&n| (n, 1));
                forward
                    .zip(backward)
                    .flat_map(|(a, b)| [a, b])
                    .collect::<Vec<_>>()
            })
            .collect();
        let gate = Arc::new(tokio::sync::Semaphore::new(32));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (n, instance) in deliveries {
            let (client, url, body, gate) = (
                app.client.clone(),
                format!("{}/webhooks/stripe", instances[instance]),
                bodies[n].clone(),
                gate.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let header = billmirror::webhook::signature::sign(
                    WEBHOOK_SECRET,
                    chrono::Utc::now().timestamp(),
                    body.as_bytes(),
                );
                let response = client
                    .post(url)
                    .header("Stripe-Signature", header)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                (n, status, answer["duplicate"].as_bool())
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        let failed: Vec<_> = answers.iter().filter(|(_, s, _)| *s != 200).collect();
        assert!(
            failed.is_empty(),
            "{} of {} deliveries failed: {:?}",
            failed.len(),
            answers.len(),
            &failed[..failed.len().min(5)]
        );
        let new = answers.iter().filter(|(_, _, d)| *d == Some(false)).count();
        assert_eq!(new, EVENTS, "each event is new exactly once");
        eprintln!(
            "round {round}: {} deliveries from 32 clients to two instances in {:?}",
            answers.len(),
            started.elapsed()
        );
    }
    let stored = stored_ids(&app).await;
    assert_eq!(stored.len(), 3 * EVENTS);
}

on_both_backends! {
    // 2. NUL and control characters.

    /// An identifying field with a control character is refused at ingest, whatever the
    /// backend, and an innocent event delivered at the same moment is stored.
    async fn hostile_control_characters_in_identifying_fields_are_refused_with_400(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut with_api_version = serde_json::from_str::<Value>(&event("evt_api", "customer.created", customer("cus_api", "A"))).unwrap();
        with_api_version["api_version"] = json!("2024-06-20\u{0}");
        let bad = [
            event("evt_nul\u{0}id", "customer.created", customer("cus_a", "A")),
            event("evt_nul_type", "customer.created\u{0}", customer("cus_b", "B")),
            event("evt_nul_object", "customer.created", customer("cus_\u{0}c", "C")),
            event("evt_esc_id\u{1b}", "customer.created", customer("cus_d", "D")),
            with_api_version.to_string(),
        ];
        let good = event("evt_innocent", "customer.created", customer("cus_innocent", "Innocent"));
        let mut tasks = Vec::new();
        for body in bad.iter().chain([&good]) {
            let body = body.clone();
            let (client, url) = (app.client.clone(), app.url("/webhooks/stripe"));
            tasks.push(tokio::spawn(async move {
                let header = billmirror::webhook::signature::sign(WEBHOOK_SECRET, chrono::Utc::now().timestamp(), body.as_bytes());
                let response = client.post(url).header("Stripe-Signature", header).body(body).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        let (innocent, refused) = answers.split_last().unwrap();
        assert_eq!(innocent.0, 200, "{innocent:?}");
        for (status, body) in refused {
            assert_eq!(*status, 400, "{body}");
            assert_eq!(body["error"]["code"], "invalid_characters", "{body}");
        }
        // A raw NUL byte is not JSON at all, and PostgreSQL could not store the text.
        let raw = event("evt_raw", "customer.created", customer("cus_raw", "Raw")).replace("Raw", "R\0w");
        let response = app.deliver(&raw).await;
        assert_eq!(response.status(), 400);
        assert_eq!(error_code(response).await, "invalid_payload");

        assert_eq!(stored_ids(&app).await, ["evt_innocent"], "nothing refused is stored");
    }

    /// A NUL inside a customer's name is stored in the payload as Stripe sent it (the JSON
    /// escape) and the customer lands in the ledger with the name minus the NUL.
    async fn hostile_a_nul_in_a_customer_name_is_folded_without_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let body = event("evt_nul_name", "customer.created", customer("cus_nul_name", "Ada\u{0} Lovelace"));
        assert!(body.contains("\\u0000"), "serde_json escapes it: {body}");
        let response = app.deliver(&body).await;
        assert_eq!(response.status(), 200);
        app.settle().await;

        let ops = app.token(billmirror::domain::Role::Ops);
        let stored: Value = app.get("/api/events/evt_nul_name", &ops).await.json().await.unwrap();
        assert_eq!(stored["status"], "applied", "{stored}");
        assert_eq!(stored["payload"]["data"]["object"]["name"], "Ada\u{0} Lovelace", "the payload is intact");
        let ledger = app.ledger().await;
        assert_eq!(ledger["customers"][0]["id"], "cus_nul_name", "{ledger}");
        assert_eq!(ledger["customers"][0]["name"], "Ada Lovelace", "{ledger}");
    }

    /// `%00` in a path segment answers 404 and in a query parameter 422, in the JSON shape, on
    /// every route of the table (and the public ones): never a 500.
    async fn hostile_nul_in_paths_and_filters_never_answers_500(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut routes: Vec<(reqwest::Method, String)> = api_routes()
            .into_iter()
            .map(|r| (reqwest::Method::from_bytes(r.method.as_str().as_bytes()).unwrap(), r.path.to_owned()))
            .collect();
        routes.push((reqwest::Method::GET, "/pay/{token}".into()));
        routes.push((reqwest::Method::POST, "/webhooks/stripe/{connection_id}".into()));
        let mut checked = 0;
        for (method, template) in &routes {
            // A NUL in the path names nothing (404); a route without path parameters gets it in
            // a query parameter instead (422).
            let (url, status, code) = if template.contains('{') {
                let path = template
                    .split('/')
                    .map(|segment| if segment.starts_with('{') { "evt%00x" } else { segment })
                    .collect::<Vec<_>>()
                    .join("/");
                (path, 404, "not_found")
            } else {
                (format!("{template}?after=ab%00c"), 422, "invalid_parameter")
            };
            let response = app.client.request(method.clone(), app.url(&url)).bearer_auth(&app.admin_token).json(&json!({})).send().await.unwrap();
            let answered = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(answered, status, "{method} {url}: {body}");
            assert_eq!(body["error"]["code"], code, "{method} {url}: {body}");
            assert!(body["error"]["message"].is_string(), "{method} {url}: {body}");
            checked += 1;
        }
        assert_eq!(checked, api_routes().len() + 2);
        // Each filter by name.
        for filter in [
            "/api/events?type=x%00", "/api/events?object_id=%00", "/api/events?status=%00",
            "/api/invoices?email=a%00%40b.c", "/api/invoices?connection_id=%00",
            "/api/customers?email=%00", "/api/billing-context?email=a%00@b.c",
            "/api/subscriptions?email=a%00@b.c",
        ] {
            let response = app.get(filter, &app.admin_token).await;
            assert_eq!(response.status(), 422, "{filter}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "invalid_parameter", "{filter}");
            let field = filter.split('?').nth(1).unwrap().split('=').next().unwrap();
            assert_eq!(body["error"]["details"]["field"], field, "{filter}");
        }
    }

    // 3. Deep nesting.

    /// What ingest acknowledges, apply can parse: nesting beyond the limit is refused with 400,
    /// nesting within it is stored and applied.
    async fn hostile_deeply_nested_payloads_are_refused_at_ingest(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let levels = 100_000;
        let deep = format!(
            r#"{{"id":"evt_deep","object":"event","type":"customer.created","created":1700000000,"livemode":false,"data":{{"object":{{"id":"cus_deep","object":"customer","metadata":{}1{}}}}}}}"#,
            r#"{"a":"#.repeat(levels),
            "}".repeat(levels)
        );
        let response = app.deliver(&deep).await;
        assert_eq!(response.status(), 400);
        assert_eq!(error_code(response).await, "payload_too_deep");

        // 4 levels of envelope, then 50 of metadata: within the limit.
        let mut nested = json!(1);
        for _ in 0..50 {
            nested = json!({"a": nested});
        }
        let mut object = customer("cus_shallow", "Shallow");
        object["description"] = json!("[[[[{{{{ brackets in a string do not count ]]]]");
        object["extra"] = nested;
        let response = app.deliver(&event("evt_shallow", "customer.created", object)).await;
        assert_eq!(response.status(), 200);
        app.settle().await;
        let ops = app.token(billmirror::domain::Role::Ops);
        let stored: Value = app.get("/api/events/evt_shallow", &ops).await.json().await.unwrap();
        assert_eq!(stored["status"], "applied", "{stored}");
        assert_eq!(stored_ids(&app).await, ["evt_shallow"]);
    }

    // 7. Cursors.

    /// A cursor that never came from a list is a 422 naming `after`, on every list.
    async fn hostile_a_garbage_cursor_is_refused_naming_after(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for list in ["/api/tokens", "/api/connections", "/api/events", "/api/invoices", "/api/customers"] {
            for cursor in ["%%%", "zzz", "tok_0193", "ev_0193A1B2C3D4E5F60718293A4B5C6D7E", "%27%20OR%201%3D1"] {
                let url = format!("{list}?after={cursor}");
                let response = app.get(&url, &app.admin_token).await;
                assert_eq!(response.status(), 422, "{url}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "invalid_cursor", "{url}");
                assert_eq!(body["error"]["details"]["field"], "after", "{url}");
                assert!(body["error"]["message"].as_str().unwrap().contains("after"), "{url}");
            }
        }
        // A real cursor still pages.
        app.token(billmirror::domain::Role::Support);
        let first: Value = app.get("/api/tokens?limit=1", &app.admin_token).await.json().await.unwrap();
        let next = first["next"].as_str().expect("two tokens: a next page");
        let second = app.get(&format!("/api/tokens?limit=1&after={next}"), &app.admin_token).await;
        assert_eq!(second.status(), 200);
    }
}

// 4. Slow and huge bodies, written by hand over TCP.

fn webhook_head(app: &TestApp, content_length: &str) -> String {
    format!(
        "POST /webhooks/stripe HTTP/1.1\r\nHost: {}\r\nStripe-Signature: t=1,v1=00\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n",
        address(app)
    )
}

/// A client that sends part of its body and stops is answered 408 and the connection closed,
/// within the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_body_that_stops_arriving_is_answered_408_and_closed() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("WEBHOOK_BODY_TIMEOUT_SECS", "1")]).await;
    let head = webhook_head(&app, "1000");
    let app = Arc::new(app);
    let raw = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            raw_exchange(&app, &head, &[b'{'; 100], Duration::from_secs(10))
        })
        .await
        .unwrap()
    };
    assert_eq!(raw.status, 408, "{}", raw.body);
    assert_eq!(raw.json()["error"]["code"], "body_timeout");
    assert!(
        raw.elapsed < Duration::from_secs(5),
        "answered and closed in {:?}",
        raw.elapsed
    );
    eprintln!("408 after {:?}", raw.elapsed);
}

on_both_backends! {
    /// An `/api` client that sends its headers and part of a JSON body, then stops, is answered
    /// 408 `body_timeout` within API_BODY_TIMEOUT_SECS and the connection is closed, although it
    /// asked to keep it open; no token is made from the half body.
    async fn hostile_an_api_body_that_stops_arriving_is_answered_408_and_closed(backend: Backend) {
        let app = Arc::new(TestApp::spawn_with(backend, &[("API_BODY_TIMEOUT_SECS", "1")]).await);
        let head = format!(
            "POST /api/tokens HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n",
            address(&app),
            app.admin_token
        );
        let raw = {
            let app = app.clone();
            tokio::task::spawn_blocking(move || {
                raw_exchange(&app, &head, br#"{"name": "half", "ro"#, Duration::from_secs(10))
            })
            .await
            .unwrap()
        };
        assert_eq!(raw.status, 408, "{}", raw.body);
        assert_eq!(raw.json()["error"]["code"], "body_timeout");
        assert!(raw.json()["error"]["message"].as_str().unwrap().contains("API_BODY_TIMEOUT_SECS"));
        // The client is told, and `raw_exchange` reads until the server closes: a kept-alive
        // connection would take `wait`.
        assert!(raw.head.contains("connection: close"), "{}", raw.head);
        assert!(raw.elapsed < Duration::from_secs(5), "answered and closed in {:?}", raw.elapsed);
        let tokens: Value = app.get("/api/tokens", &app.admin_token).await.json().await.unwrap();
        assert!(tokens["data"].as_array().unwrap().iter().all(|t| t["name"] != "half"));
    }
}

/// A declared body over WEBHOOK_MAX_BODY_BYTES is refused at once, before any of it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let app = Arc::new(TestApp::spawn(Backend::Sqlite).await);
    let head = webhook_head(&app, "10737418240");
    let raw = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || raw_exchange(&app, &head, b"", Duration::from_secs(5)))
            .await
            .unwrap()
    };
    assert_eq!(raw.status, 413, "{}", raw.body);
    assert_eq!(raw.json()["error"]["code"], "payload_too_large");
    assert!(raw.elapsed < Duration::from_secs(2), "{:?}", raw.elapsed);
}

// 5. Errors actix would answer bare.

/// Long URIs, large header blocks and unsupported methods answer in the JSON shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_level_refusals_answer_in_the_json_shape() {
    let app = Arc::new(TestApp::spawn(Backend::Sqlite).await);
    let host = address(&app);
    let long_uri = format!(
        "GET /api/events?type={} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        "x".repeat(10_000)
    );
    let big_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "y".repeat(40_000)
    );
    let wrong_method =
        format!("GET /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let wrong_api_method =
        format!("PUT /api/tokens HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    for (request, status, code) in [
        (long_uri, 414, "uri_too_long"),
        (big_headers, 431, "headers_too_large"),
        (wrong_method, 405, "method_not_allowed"),
        (wrong_api_method, 405, "method_not_allowed"),
    ] {
        let app = app.clone();
        let raw = tokio::task::spawn_blocking(move || {
            raw_exchange(&app, &request, b"", Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert_eq!(raw.status, status, "{code}: {}", raw.body);
        assert_eq!(raw.json()["error"]["code"], code);
        assert!(raw.json()["error"]["message"].is_string());
    }
}

/// What actix's HTTP/1 codec answers itself, before the app sees the request, stays bare: pinned
/// here so that docs/API.md ("Hostile requests") says what really happens, and so that an actix
/// upgrade that offers a hook shows up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_refusals_of_the_http_codec_itself_are_bare_as_documented() {
    let app = Arc::new(TestApp::spawn(Backend::Sqlite).await);
    let host = address(&app);
    let conflicting = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    );
    let huge_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "y".repeat(140_000)
    );
    for (request, status) in [(conflicting, 400), (huge_head, 431)] {
        let app = app.clone();
        let raw = tokio::task::spawn_blocking(move || {
            raw_exchange(&app, &request, b"", Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert_eq!(raw.status, status);
        assert_eq!(raw.body, "", "the codec's answer has no body");
    }
}

// 6. Two instances starting together.

/// Two `serve` processes started at the same moment on a fresh PostgreSQL database both come
/// up: migrations, the first admin token and the environment's connection are written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_two_instances_starting_together_on_a_fresh_database_both_come_up() {
    use std::process::{Command, Stdio};
    for round in 0..5 {
        let db = crate::support::TestDb::create(Backend::Postgres);
        let mut children = Vec::new();
        let mut bases = Vec::new();
        for _ in 0..2 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            bases.push(format!("http://127.0.0.1:{port}"));
            let child = Command::new(env!("CARGO_BIN_EXE_billmirror"))
                .env_clear()
                .env("DATABASE_URL", db.url())
                .env("LOG_LEVEL", "warn")
                .env("BIND", format!("127.0.0.1:{port}"))
                .env("BILLMIRROR_MASTER_KEY", crate::support::MASTER_KEY)
                .env(
                    "STRIPE_SECRET_KEY",
                    "sk_test_51HxYzAbCdEfGhIjKlMn4f2aTwoInstances",
                )
                .env(
                    "STRIPE_PUBLISHABLE_KEY",
                    crate::support::ENV_PUBLISHABLE_KEY,
                )
                .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
                .env("STRIPE_API_BASE", "http://127.0.0.1:9")
                .env("STRIPE_TIMEOUT_SECS", "1")
                .env("STRIPE_MAX_ATTEMPTS", "1")
                .current_dir(std::env::temp_dir())
                .arg("serve")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push(child);
        }
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut up = [false, false];
        while up != [true, true] {
            for (n, child) in children.iter_mut().enumerate() {
                if up[n] {
                    continue;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    let mut stderr = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut stderr)
                        .unwrap();
                    panic!("round {round}: instance {n} stopped ({status}): {stderr}");
                }
                let ready = client
                    .get(format!("{}/readyz", bases[n]))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                up[n] = ready.is_ok_and(|r| r.status() == 200);
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: not both up: {up:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for child in &mut children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for mut child in children {
            let _ = child.wait();
        }
        let mut conn = PgConnection::establish(&db.url()).unwrap();
        let tokens: i64 = diesel::sql_query("SELECT count(*) AS n FROM api_tokens")
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n;
        assert_eq!(tokens, 1, "round {round}: one first admin token");
    }
}

/// The same start-up writes without the migration lock in between: on a migrated database the
/// two instances' first token and environment connection are written at the very same moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_two_app_states_built_together_on_one_database_both_succeed() {
    for round in 0..8 {
        let test_db = crate::support::TestDb::create(Backend::Postgres);
        test_db.open_migrated();
        let vars = [(
            "STRIPE_SECRET_KEY",
            "sk_test_51HxYzAbCdEfGhIjKlMn4f2aTwoInstances",
        )];
        let start = |n: usize| {
            let config = crate::support::config_for(&test_db, &vars);
            let db = test_db.open();
            async move {
                let first_token = {
                    let db = db.clone();
                    tokio::task::spawn_blocking(move || {
                        billmirror::auth::ensure_initial_admin(&mut db.blocking().unwrap(), None)
                            .map(|issued| issued.is_some())
                    })
                    .await
                    .unwrap()
                };
                let state = billmirror::app::state(config, db).await;
                (
                    n,
                    first_token.map_err(|e| e.to_string()),
                    state.map(drop).map_err(|e| format!("{e:#}")),
                )
            }
        };
        let (a, b) = tokio::join!(tokio::spawn(start(0)), tokio::spawn(start(1)));
        let (a, b) = (a.unwrap(), b.unwrap());
        for (n, token, state) in [&a, &b] {
            assert!(token.is_ok(), "round {round}: instance {n}: {token:?}");
            assert!(state.is_ok(), "round {round}: instance {n}: {state:?}");
        }
        let created = [&a, &b].iter().filter(|(_, t, _)| t == &Ok(true)).count();
        assert_eq!(created, 1, "round {round}: one first admin token");
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

// 7. Readiness and locks.

/// /readyz says 503 while SQLite takes no writes (here: another process holds the write lock),
/// and ready again once it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_readyz_is_503_while_sqlite_cannot_write() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let path = app.test_db.url().trim_start_matches("sqlite://").to_owned();
    let mut other = SqliteConnection::establish(&path).unwrap();
    other.batch_execute("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    other.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A webhook behind a PostgreSQL table lock is answered 503 with Retry-After within seconds,
/// and stored once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_a_webhook_behind_a_table_lock_answers_503_with_retry_after() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mut locker = PgConnection::establish(&app.test_db.url()).unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let body = event(
        "evt_locked",
        "customer.created",
        customer("cus_locked", "Locked"),
    );
    let header = billmirror::webhook::signature::sign(
        WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    let started = Instant::now();
    let response = app
        .client
        .post(app.url("/webhooks/stripe"))
        .header("Stripe-Signature", header)
        .body(body.clone())
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("answered within 20 s");
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "unavailable");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    eprintln!("503 after {waited:?} behind the lock");
    locker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(app.deliver(&body).await.status(), 200);
}
