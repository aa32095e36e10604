//! Secrets stay secret: the real binary, logging at debug level, serves every connection route
//! against the fake Stripe; no key, signing secret, master key or token appears in any answer or
//! log line.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use billmirror::webhook::signature::sign;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, ACCOUNT, SECRET_KEY};
use crate::support::{TestDb, MASTER_KEY};

const ADMIN: &str = "bm_secrets_test_admin_token_0123456789";
const WEBHOOK_SECRET: &str = "whsec_SecretsTestSigningSecret0000000001";
const ROTATED_SECRET: &str = "whsec_SecretsTestRotatedSecret000000002";

on_both_backends! {
    async fn no_secret_appears_in_any_answer_or_log_line_of_the_connection_routes(backend: Backend) {
        let fake = FakeStripe::start().await;
        let db = TestDb::create(backend);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_billmirror"))
            .env_clear()
            .env("DATABASE_URL", db.url())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("LOG_LEVEL", "debug")
            .env("BILLMIRROR_ADMIN_TOKEN", ADMIN)
            .env("BILLMIRROR_MASTER_KEY", MASTER_KEY)
            .env("STRIPE_API_BASE", &fake.base_url)
            .env("STRIPE_RETRY_BACKOFF_MS", "5")
            // A loopback webhook URL is never registered in Stripe.
            .env("PUBLIC_URL", "https://billmirror.example.com")
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

        let answers = std::cell::RefCell::new(String::new());
        let call = |method: reqwest::Method, path: String, body: Option<Value>| {
            let mut request = client.request(method, format!("{base}{path}")).bearer_auth(ADMIN);
            if let Some(body) = body {
                request = request.json(&body);
            }
            request
        };
        let send = async |request: reqwest::RequestBuilder| -> Value {
            let response = request.send().await.unwrap();
            let text = response.text().await.unwrap();
            answers.borrow_mut().push_str(&text);
            answers.borrow_mut().push('\n');
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        use reqwest::Method;
        for secret_key in [format!("{SECRET_KEY} "), format!("'{SECRET_KEY}'"), SECRET_KEY.to_owned()] {
            send(call(Method::POST, "/api/connections/check".into(), Some(json!({
                "secret_key": secret_key, "publishable_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
            })))).await;
        }
        send(call(Method::POST, "/api/connections".into(), Some(json!({"secret_key": format!("{SECRET_KEY}\n")})))).await;
        send(call(Method::POST, "/api/connections".into(), Some(json!({"secret_key": 42, "webhook_secrets": WEBHOOK_SECRET})))).await;
        let created = send(call(Method::POST, "/api/connections".into(), Some(json!({
            "secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
        })))).await;
        let id = created["id"].as_str().expect("the connection was created").to_owned();
        send(call(Method::GET, "/api/connections".into(), None)).await;
        send(call(Method::GET, format!("/api/connections/{id}"), None)).await;
        send(call(Method::POST, format!("/api/connections/{id}/validate"), None)).await;
        send(call(Method::POST, format!("/api/connections/{id}/webhook-endpoint"), None)).await;
        send(call(Method::POST, format!("/api/connections/{id}/webhook-secrets"), Some(json!({"secret": ROTATED_SECRET})))).await;
        send(call(Method::POST, format!("/api/connections/{id}/webhook-secrets"), Some(json!({"secret": ROTATED_SECRET})))).await;
        let view = send(call(Method::GET, format!("/api/connections/{id}"), None)).await;
        let oldest = view["webhook_secrets"].as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_owned();
        send(call(Method::DELETE, format!("/api/connections/{id}/webhook-secrets/{oldest}"), None)).await;
        // Deliveries signed right and wrong.
        let event = json!({"id": "evt_s1", "object": "event", "created": 1_700_000_000, "livemode": false,
            "type": "customer.created", "data": {"object": {"id": "cus_s1", "object": "customer"}}}).to_string();
        for secret in [ROTATED_SECRET, WEBHOOK_SECRET] {
            let header = sign(secret, chrono::Utc::now().timestamp(), event.as_bytes());
            let response = client.post(format!("{base}/webhooks/stripe/{id}")).header("Stripe-Signature", header)
                .body(event.clone()).send().await.unwrap();
            let text = response.text().await.unwrap();
            answers.borrow_mut().push_str(&text);
        }
        send(call(Method::DELETE, format!("/api/connections/{id}"), None)).await;

        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let mut logs = String::new();
        child.stdout.take().unwrap().read_to_string(&mut logs).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
        child.wait().unwrap();

        let answers = answers.into_inner();
        let registered = fake.objects(ACCOUNT, "webhook_endpoints");
        let stripe_secret = registered[0]["secret"].as_str().unwrap().to_owned();
        assert!(logs.contains("connection created"), "the log was captured: {logs}");
        for (what, secret) in [
            ("secret key", SECRET_KEY.to_owned()),
            ("webhook secret", WEBHOOK_SECRET.to_owned()),
            ("rotated secret", ROTATED_SECRET.to_owned()),
            ("secret Stripe returned", stripe_secret),
            ("master key", MASTER_KEY.to_owned()),
            ("admin token", ADMIN.to_owned()),
        ] {
            // The masked form keeps a prefix and the last four characters; the middle never shows.
            let middle = &secret[8..secret.len() - 4];
            assert!(!answers.contains(middle), "the {what} appears in an answer:\n{answers}");
            assert!(!logs.contains(middle), "the {what} appears in the log:\n{logs}");
        }
    }
}
