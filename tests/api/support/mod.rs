//! What every integration test shares: a throwaway database on either backend, the real app on
//! port 0, and a macro that runs one test body against SQLite and PostgreSQL.

pub mod db;
pub mod fake_chat;
pub mod fake_stripe;

use std::collections::HashMap;
use std::net::TcpListener;

use billmirror::app;
use billmirror::auth;
use billmirror::config::Config;
use billmirror::domain::states::EventStatus;
use billmirror::domain::Role;
use billmirror::http;
use billmirror::storage::Db;
use billmirror::webhook::signature::sign;
pub use db::{Backend, TestDb};

/// Declares each test once and runs it on both backends, as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$doc:meta])* async fn $name:ident($backend:ident: Backend) $body:block)*) => {$(
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::support::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::support::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

/// The webhook secret of the connection configured from the environment in every test app.
pub const WEBHOOK_SECRET: &str = "whsec_billmirror_test_secret_0001";

/// The publishable key of the environment's connection in every test app: it makes that
/// connection a test-mode one. No `STRIPE_SECRET_KEY` is set by default, so the environment's
/// connection only receives webhooks; a test that pushes or syncs through it sets one.
pub const ENV_PUBLISHABLE_KEY: &str = "pk_test_billmirror0000000000000000";

/// The master key every test app seals its secrets with.
pub const MASTER_KEY: &str = "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";

/// The real app serving real HTTP on 127.0.0.1, over its own database, with its workers running.
pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub db: Db,
    pub admin_token: String,
    pub test_db: TestDb,
    pub connections: billmirror::connections::Connections,
    /// Set by a test that leaves work unfinished on purpose (Stripe kept down to the end).
    pub unfinished_work_expected: bool,
    /// How long the drop check waits for the workers to finish what is pending.
    pub drop_grace: std::time::Duration,
    _workers: app::Workers,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, &[]).await
    }

    /// Starts the app with its Stripe API pointed at `fake`.
    pub async fn spawn_with_stripe(backend: Backend, fake: &fake_stripe::FakeStripe) -> TestApp {
        TestApp::spawn_with(backend, &[("STRIPE_API_BASE", &fake.base_url)]).await
    }

    pub async fn spawn_with(backend: Backend, extra_vars: &[(&str, &str)]) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        TestApp::spawn_on(backend, listener, extra_vars).await
    }

    /// Starts the app with `PUBLIC_URL` its own address, for redirects that must come back to
    /// it (an OAuth callback).
    pub async fn spawn_at_own_url(backend: Backend, extra_vars: &[(&str, &str)]) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let own = format!("http://{}", listener.local_addr().unwrap());
        let mut vars = extra_vars.to_vec();
        vars.push(("PUBLIC_URL", &own));
        TestApp::spawn_on(backend, listener, &vars).await
    }

    async fn spawn_on(
        backend: Backend,
        listener: TcpListener,
        extra_vars: &[(&str, &str)],
    ) -> TestApp {
        let test_db = TestDb::create(backend);
        let config = config_for(&test_db, extra_vars);
        let db = test_db.open_migrated();
        let admin_token = {
            let mut conn = db.blocking().unwrap();
            auth::ensure_initial_admin(&mut conn, None)
                .unwrap()
                .expect("a fresh database has no token")
                .token
        };
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let state = app::state(config, db.clone()).await.unwrap();
        let workers = app::Workers::start(&state);
        let connections = state.connections.clone();
        let server = http::server(state, listener).unwrap();
        tokio::spawn(server);
        TestApp {
            base_url,
            client: reqwest::Client::new(),
            db,
            admin_token: admin_token.expose().to_owned(),
            test_db,
            connections,
            unfinished_work_expected: false,
            drop_grace: std::time::Duration::from_secs(15),
            _workers: workers,
        }
    }

    /// Events still to apply (pending, or retrying after a failure) and jobs still to run.
    pub fn unfinished_work(&self) -> Result<(i64, i64), String> {
        let mut conn = self.db.blocking().map_err(|e| e.to_string())?;
        let events: i64 = billmirror::storage::events::count_by_status(&mut conn)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(status, _)| EventStatus::DUE.contains(status))
            .map(|(_, n)| n)
            .sum();
        let jobs = billmirror::storage::jobs::open(&mut conn).map_err(|e| e.to_string())?;
        Ok((events, jobs))
    }

    /// The configuration this app would have with `extra_vars`: to start another instance on
    /// its database.
    pub fn config(&self, extra_vars: &[(&str, &str)]) -> Config {
        config_for(&self.test_db, extra_vars)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A new token with `role`, created the way the CLI does.
    pub fn token(&self, role: Role) -> String {
        let mut conn = self.db.blocking().unwrap();
        let name = format!("test-{role}-{}", uuid::Uuid::new_v4().simple());
        auth::create_token(&mut conn, &name[..40], role, "test", None)
            .unwrap()
            .token
            .expose()
            .to_owned()
    }

    /// A new web UI user with `role`, made the way the CLI does: (email, password).
    pub fn user(&self, role: Role) -> (String, String) {
        let mut conn = self.db.blocking().unwrap();
        let email = format!(
            "{role}-{}@example.com",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let created =
            billmirror::people::create_user(&mut conn, &email, role, None, "test").unwrap();
        (created.info.email, created.password.expose().to_owned())
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts `body` to `/webhooks/stripe` signed now with the environment connection's secret.
    pub async fn deliver(&self, body: &str) -> reqwest::Response {
        self.deliver_to("/webhooks/stripe", WEBHOOK_SECRET, body)
            .await
    }

    /// Posts `body` to `path` signed now with `secret`, as Stripe would.
    pub async fn deliver_to(&self, path: &str, secret: &str, body: &str) -> reqwest::Response {
        let header = sign(secret, chrono::Utc::now().timestamp(), body.as_bytes());
        self.client
            .post(self.url(path))
            .header("Stripe-Signature", header)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// Waits until the apply worker has no due event left (at most 20 s).
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let due = self
                .db
                .run(|conn| {
                    use billmirror::storage::schema::webhook_events::dsl::*;
                    use diesel::prelude::*;
                    Ok(webhook_events
                        .filter(status.eq("pending"))
                        .count()
                        .get_result::<i64>(conn)?)
                })
                .await
                .unwrap();
            if due == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{due} events still pending"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The mirrored ledger of the environment connection.
    pub async fn ledger(&self) -> serde_json::Value {
        self.db
            .run(|conn| billmirror::storage::snapshot::snapshot(conn, "env"))
            .await
            .unwrap()
    }
}

/// A test app's configuration over `test_db`; `extra_vars` win, and an empty value unsets one.
pub fn config_for(test_db: &TestDb, extra_vars: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_PUBLISHABLE_KEY", ENV_PUBLISHABLE_KEY),
        ("BILLMIRROR_MASTER_KEY", MASTER_KEY),
        // Nothing listens there: a test that talks to Stripe names its fake.
        ("STRIPE_API_BASE", "http://127.0.0.1:9"),
        ("STRIPE_RETRY_BACKOFF_MS", "5"),
        ("JOB_RETRY_BACKOFF_MS", "5"),
        ("STRIPE_TIMEOUT_SECS", "2"),
        ("STRIPE_RATE_LIMIT", "0"),
        ("PUBLIC_URL", "https://billmirror.example.com"),
    ]
    .iter()
    .chain(extra_vars)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.retain(|_, v| !v.is_empty());
    vars.insert("DATABASE_URL".into(), test_db.url());
    vars.insert("DATABASE_POOL_SIZE".into(), "4".into());
    Config::from_vars(&vars).expect("test configuration is valid")
}

/// A test ends with nothing left to do: every event applied (or parked as dead) and every job
/// settled, as crates.io's test app checks its background jobs. Work still pending after a short
/// grace fails the test; a test that means to leave work sets `unfinished_work_expected`.
impl Drop for TestApp {
    fn drop(&mut self) {
        if std::thread::panicking() || self.unfinished_work_expected {
            return;
        }
        let deadline = std::time::Instant::now() + self.drop_grace;
        loop {
            match self.unfinished_work() {
                Ok((0, 0)) => return,
                Ok((events, jobs)) if std::time::Instant::now() > deadline => panic!(
                    "the test left {events} event(s) unapplied and {jobs} job(s) unsettled; \
                     settle them, or set `unfinished_work_expected` if that is the point"
                ),
                // The database is gone (a test of an outage): nothing to check.
                Err(_) => return,
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
}

/// Reads an error answer and returns its stable code.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error answers are JSON");
    body["error"]["code"]
        .as_str()
        .expect("error answers carry a code")
        .to_owned()
}
