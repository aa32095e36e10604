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
        let token = stdout
            .lines()
            .map(Result::unwrap)
            .find_map(|line| line.trim().strip_prefix("bm_").map(|rest| format!("bm_{rest}")))
            .expect("serve prints the first admin token");

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

        // A second start finds a token and prints none (it then fails on a port already taken).
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let again = command(&db.url()).env("BIND", taken.local_addr().unwrap().to_string()).arg("serve").output().unwrap();
        assert!(!text(&again.stdout).contains("bm_"), "{}", text(&again.stdout));
        assert!(text(&again.stderr).contains("BIND"), "{}", text(&again.stderr));
    }
}

#[test]
fn serve_on_postgres_without_a_master_key_refuses_to_start_naming_it() {
    let db = TestDb::create(crate::support::Backend::Postgres);
    let output = billmirror(&db.url(), &["serve"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("BILLMIRROR_MASTER_KEY is not set"),
        "{stderr}"
    );
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
