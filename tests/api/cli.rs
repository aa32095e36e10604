//! The `billmirror` binary as an operator runs it: configuration errors, migrate, tokens, serve
//! and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::on_both_backends;
use crate::support::TestDb;

fn billmirror(database_url: &str, args: &[&str]) -> Output {
    command(database_url).args(args).output().unwrap()
}

/// The binary with a clean environment: only what the test sets, run in a directory with no `.env`.
fn command(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_billmirror"));
    command
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("LOG_LEVEL", "warn")
        .current_dir(std::env::temp_dir());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_bad_setting_stops_the_start_naming_the_variable() {
    let output = command("mysql://localhost/billing")
        .env("DATABASE_POOL_SIZE", "0")
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(
        stderr.contains("DATABASE_POOL_SIZE"),
        "both problems are listed: {stderr}"
    );
}

#[test]
fn a_postgres_password_never_appears_in_an_error() {
    let output = billmirror(
        "postgres://billing:hunter2hunter2@127.0.0.1:1/none",
        &["migrate"],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

on_both_backends! {
    async fn tokens_are_managed_from_the_command_line(backend: Backend) {
        let db = TestDb::create(backend);
        let url = db.url();
        let migrated = billmirror(&url, &["migrate"]);
        assert!(migrated.status.success(), "{}", text(&migrated.stderr));

        let created = billmirror(&url, &["token", "create", "--name", "nightly-export", "--role", "support"]);
        assert!(created.status.success(), "{:?}: {}", created.status, text(&created.stderr));
        let token = text(&created.stdout).trim().to_owned();
        assert!(token.starts_with("bm_"), "{token}");

        let listed = text(&billmirror(&url, &["token", "list"]).stdout);
        assert!(listed.contains("nightly-export") && listed.contains("active"), "{listed}");
        assert!(!listed.contains(&token), "{listed}");

        let bad_role = billmirror(&url, &["token", "create", "--name", "x", "--role", "root"]);
        assert!(!bad_role.status.success());
        assert!(text(&bad_role.stderr).contains("not a role"));

        assert!(billmirror(&url, &["token", "revoke", "nightly-export"]).status.success());
        assert!(text(&billmirror(&url, &["token", "list"]).stdout).contains("revoked"));
        let missing = billmirror(&url, &["token", "revoke", "nightly-export-2"]);
        assert_eq!(missing.status.code(), Some(1));
    }

    async fn users_are_managed_from_the_command_line(backend: Backend) {
        let db = TestDb::create(backend);
        let url = db.url();
        let created = billmirror(&url, &["user", "create", "--email", "Ops@Example.com", "--role", "ops"]);
        assert!(created.status.success(), "{}", text(&created.stderr));
        let password = text(&created.stdout).trim().to_owned();
        assert_eq!(password.len(), 24, "{password}");

        let listed = text(&billmirror(&url, &["user", "list"]).stdout);
        assert!(listed.contains("ops@example.com") && listed.contains("active"), "{listed}");
        assert!(!listed.contains(&password) && !listed.contains("argon2"), "{listed}");

        let taken = billmirror(&url, &["user", "create", "--email", "ops@example.com", "--role", "admin"]);
        assert!(!taken.status.success());
        assert!(text(&taken.stderr).contains("already exists"), "{}", text(&taken.stderr));

        let reset = billmirror(&url, &["user", "reset-password", "ops@example.com"]);
        assert!(reset.status.success(), "{}", text(&reset.stderr));
        let new_password = text(&reset.stdout).trim().to_owned();
        assert!(new_password.len() == 24 && new_password != password);
        let stored = {
            let db = db.open_migrated();
            let mut conn = db.blocking().unwrap();
            billmirror::storage::users::find_by_email(&mut conn, "ops@example.com").unwrap().unwrap()
        };
        assert!(billmirror::people::passwords::verify(&new_password, &stored.password_hash));
        assert!(!billmirror::people::passwords::verify(&password, &stored.password_hash));

        assert!(billmirror(&url, &["user", "disable", "ops@example.com"]).status.success());
        assert!(text(&billmirror(&url, &["user", "list"]).stdout).contains("disabled"));
        let missing = billmirror(&url, &["user", "disable", "nobody@example.com"]);
        assert_eq!(missing.status.code(), Some(1));
        assert!(text(&missing.stderr).contains("no user has the email"));
    }

    async fn serve_prints_the_first_token_once_and_stops_on_sigterm(backend: Backend) {
        let db = TestDb::create(backend);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let mut child = command(&db.url())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("BILLMIRROR_MASTER_KEY", crate::support::MASTER_KEY)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut before_token = Vec::new();
        let token = stdout
            .lines()
            .map(Result::unwrap)
            .inspect(|line| before_token.push(line.clone()))
            .find_map(|line| line.trim().strip_prefix("bm_").map(|rest| format!("bm_{rest}")))
            .expect("serve prints the first admin token");
        // The web UI's first admin comes first, with its password.
        let password = before_token.iter()
            .find_map(|line| line.trim().strip_prefix("password: ").map(str::to_owned))
            .expect("serve prints the first admin user's password");
        assert!(before_token.iter().any(|l| l.contains("email:    admin@billmirror.local")), "{before_token:?}");

        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match client.get(format!("{base}/healthz")).send().await {
                Ok(r) if r.status() == 200 => break,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                other => panic!("serve never became healthy: {other:?}"),
            }
        }
        let anonymous = client.get(format!("{base}/api/tokens")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let authorised = client.get(format!("{base}/api/tokens")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(authorised.status(), 200);

        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "serve exits cleanly on SIGTERM: {:?}", output.status);
        assert!(!text(&output.stderr).contains(&token), "the token is never logged");
        assert!(!text(&output.stderr).contains(&password), "the password is never logged");

        // A second start finds a token and prints none (it then fails on a port already taken).
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let again = command(&db.url()).env("BIND", taken.local_addr().unwrap().to_string())
            .env("BILLMIRROR_MASTER_KEY", crate::support::MASTER_KEY).arg("serve").output().unwrap();
        assert!(!text(&again.stdout).contains("bm_"), "{}", text(&again.stdout));
        assert!(!text(&again.stdout).contains("password"), "{}", text(&again.stdout));
        assert!(text(&again.stderr).contains("BIND"), "{}", text(&again.stderr));
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn serve_on_postgres_without_a_master_key_stops_before_touching_anything() {
    let db = TestDb::create(crate::support::Backend::Postgres);
    let bind = format!("127.0.0.1:{}", free_port());
    let output = command(&db.url())
        .env("BIND", &bind)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a configuration error");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("BILLMIRROR_MASTER_KEY is not set"),
        "{stderr}"
    );
    assert!(
        !text(&output.stdout).contains("bm_"),
        "no admin token was made or printed"
    );
    assert!(!stderr.contains("serving"), "{stderr}");
    // Nothing was migrated: the check came before the database was opened.
    use diesel::prelude::*;
    let mut conn = diesel::PgConnection::establish(&db.url()).unwrap();
    let tables: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(tables, 0, "serve touched the database");
    // And the port was never bound (it is free for us now).
    std::net::TcpListener::bind(&bind).unwrap();
}

/// One raw HTTP/1.1 exchange; returns the whole answer.
fn raw_request(stream: &mut std::net::TcpStream, request: &[u8]) -> String {
    use std::io::{Read, Write};
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn wait_healthy(bind: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(bind) {
            let answer = raw_request(
                &mut stream,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "serve never became healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ctrl-C is as gentle as SIGTERM: a webhook whose body is still arriving when SIGINT comes is
/// read, stored and answered, and then serve exits cleanly.
#[test]
fn ctrl_c_lets_an_in_flight_request_finish() {
    use std::io::Write;
    let db = TestDb::create(crate::support::Backend::Sqlite);
    let bind = format!("127.0.0.1:{}", free_port());
    let mut child = command(&db.url())
        .env("BIND", &bind)
        .env("STRIPE_WEBHOOK_SECRET", crate::support::WEBHOOK_SECRET)
        .env("SHUTDOWN_TIMEOUT_SECS", "20")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(&bind);

    let body = serde_json::json!({"id": "evt_sigint_1", "object": "event", "type": "customer.created",
        "created": 1_700_000_000, "livemode": false, "api_version": "2024-06-20",
        "data": {"object": {"id": "cus_sigint_1", "object": "customer", "email": "int@example.com"}}})
    .to_string();
    let signature = billmirror::webhook::signature::sign(
        crate::support::WEBHOOK_SECRET,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    let mut stream = std::net::TcpStream::connect(&bind).unwrap();
    let head = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nStripe-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve waits for the request in flight"
    );
    let answer = raw_request(&mut stream, rest);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""duplicate":false"#), "{answer}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("PUBLIC_URL is not set"), "warned: {stderr}");
    // New connections were refused meanwhile, and the event is stored.
    assert!(std::net::TcpStream::connect(&bind).is_err());
    let stored: i64 = {
        use billmirror::storage::schema::webhook_events::dsl::*;
        use diesel::prelude::*;
        let db = db.open();
        let mut conn = db.blocking().unwrap();
        webhook_events
            .filter(stripe_event_id.eq("evt_sigint_1"))
            .count()
            .get_result(&mut *conn)
            .unwrap()
    };
    assert_eq!(stored, 1);
}

#[test]
fn check_keys_prints_each_check_and_fails_on_a_bad_key() {
    let output = command("sqlite:///nonexistent/never-opened.db")
        .args([
            "check-keys",
            "--secret-key",
            "-",
            "--publishable-key",
            "pk_live_51HxYzAbCdEfGhIjKlMn4f2a",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"sk_test_51HxYzAbCdEfGhIjKlMn4f2a \n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(
            "FAIL  secret_key_format        The secret key ends with a space: remove it."
        ),
        "{stdout}"
    );
    assert!(stdout.contains("skip  authentication"), "{stdout}");
    assert!(
        !stdout.contains("51HxYzAbCd"),
        "no key is printed: {stdout}"
    );
}

/// Keys from the environment are checked as they are set: a trailing space is reported (as the
/// API reports it), and keys of two modes give the report rather than a configuration error.
#[test]
fn check_keys_reports_on_environment_keys_as_they_are() {
    let output = command("sqlite:///nonexistent/never-opened.db")
        .env("STRIPE_SECRET_KEY", "sk_test_51HxYzAbCdEfGhIjKlMn4f2a ")
        .env("STRIPE_PUBLISHABLE_KEY", "pk_live_51HxYzAbCdEfGhIjKlMn4f2a")
        .arg("check-keys")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("FAIL  secret_key_format        The secret key ends with a space"),
        "{stdout}"
    );
    assert!(!stderr.contains("invalid configuration"), "{stderr}");

    let mixed = command("sqlite:///nonexistent/never-opened.db")
        .env("STRIPE_SECRET_KEY", "sk_live_51HxYzAbCdEfGhIjKlMn4f2a")
        .env("STRIPE_PUBLISHABLE_KEY", "pk_test_51HxYzAbCdEfGhIjKlMn4f2a")
        .env("STRIPE_API_BASE", "http://127.0.0.1:9")
        .env("STRIPE_MAX_ATTEMPTS", "1")
        .args(["check-keys", "--json"])
        .output()
        .unwrap();
    assert_eq!(mixed.status.code(), Some(1), "{}", text(&mixed.stderr));
    let report: serde_json::Value = serde_json::from_slice(&mixed.stdout).unwrap();
    let mode = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mode_match")
        .unwrap();
    assert_eq!(mode["status"], "fail", "{report}");
}

/// With Stripe unreachable the wait is announced first, and the cause is stated once.
#[test]
fn check_keys_says_it_is_asking_stripe_and_why_it_could_not() {
    let output = command("sqlite:///nonexistent/never-opened.db")
        .env("STRIPE_SECRET_KEY", "sk_test_51HxYzAbCdEfGhIjKlMn4f2a")
        .env("STRIPE_API_BASE", "http://127.0.0.1:9")
        .env("STRIPE_MAX_ATTEMPTS", "1")
        .arg("check-keys")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.starts_with("checking with Stripe…"), "{stderr}");
    let said = format!("{stdout}{stderr}");
    // Once in the failing check, once in each check it skipped; never "reached: …reached".
    assert_eq!(said.matches("could not be reached").count(), 4, "{said}");
    assert_eq!(said.matches("connection failed").count(), 1, "{said}");
    assert!(
        stdout.contains("(the connection failed (Connection refused"),
        "{stdout}"
    );
    assert_eq!(
        said.matches("the key report has failing checks").count(),
        1,
        "{said}"
    );
}

/// A wrong argument is refused before anything starts: no database, no worker, one message.
#[test]
fn sync_refuses_an_unknown_resource_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let output = command(&format!("sqlite://{}", db.display()))
        .args([
            "sync",
            "--connection",
            "env",
            "--only",
            "customers,customer",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("invalid value 'customer' for '--only <RESOURCE>'"),
        "{stderr}"
    );
    assert!(stderr.contains("payment_intents"), "{stderr}");
    assert!(stderr.lines().count() < 10, "{stderr}");
    assert!(!db.exists(), "the database was not even created");

    let unknown = command(&format!("sqlite://{}", db.display()))
        .args(["sync", "--connection", "conn_nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = text(&unknown.stderr);
    assert!(
        stderr.contains("no connection has the id `conn_nope`"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn help_version_and_completions() {
    let help = text(&billmirror("sqlite://unused.db", &["serve", "--help"]).stdout);
    for name in [
        "BIND",
        "DATABASE_URL",
        "PUBLIC_URL",
        "BILLMIRROR_MASTER_KEY",
    ] {
        assert!(help.contains(name), "{name}: {help}");
    }
    let help = text(&billmirror("sqlite://unused.db", &["check-keys", "--help"]).stdout);
    assert!(help.contains("[env: STRIPE_SECRET_KEY]"), "{help}");
    let top = text(&billmirror("sqlite://unused.db", &["--help"]).stdout);
    for sub in [
        "serve",
        "migrate",
        "check-keys",
        "sync",
        "token",
        "completions",
    ] {
        assert!(top.contains(&format!("  {sub} ")), "{sub}: {top}");
    }
    let version = billmirror("sqlite://unused.db", &["--version"]);
    assert_eq!(
        text(&version.stdout).trim(),
        concat!("billmirror ", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = billmirror("sqlite://unused.db", &["completions", shell]);
        assert!(script.status.success());
        assert!(text(&script.stdout).contains("check-keys"), "{shell}");
    }
}

#[test]
fn backup_copies_a_sqlite_database_and_refuses_postgres() {
    let db = TestDb::create(crate::support::Backend::Sqlite);
    let url = db.url();
    assert!(billmirror(&url, &["migrate"]).status.success());
    let created = billmirror(
        &url,
        &[
            "token",
            "create",
            "--name",
            "before-backup",
            "--role",
            "ops",
        ],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));

    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let output = billmirror(&url, &["backup", copy.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("master key") && stderr.contains(".key"),
        "{stderr}"
    );

    // The copy opens on its own and holds the rows.
    use diesel::prelude::*;
    let mut conn = diesel::SqliteConnection::establish(copy.to_str().unwrap()).unwrap();
    let names: Vec<String> = billmirror::storage::schema::api_tokens::table
        .select(billmirror::storage::schema::api_tokens::name)
        .load(&mut conn)
        .unwrap();
    assert_eq!(names, ["before-backup"]);

    let again = billmirror(&url, &["backup", copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("exists already"));

    let postgres = TestDb::create(crate::support::Backend::Postgres);
    let refused = billmirror(
        &postgres.url(),
        &["backup", dir.path().join("pg.db").to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("pg_dump"),
        "{}",
        text(&refused.stderr)
    );
}
