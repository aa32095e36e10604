//! `make bench`: webhook ingest and apply throughput, measured over real HTTP against the release
//! binary on SQLite and PostgreSQL.
//!
//! For each backend and concurrency (1, 8, 32, 64) it starts `billmirror serve` on a fresh
//! database, posts distinct signed events built from the real payloads in `fixtures/stripe/events`
//! (3-7 KB, pretty-printed as Stripe sends them) over keep-alive connections, and reports accepted
//! events/s, p50/p99 acknowledgement latency, apply throughput, the apply lag after the last
//! acknowledgement, and the server's peak RSS. Set `BENCH_EVENTS` to change the event count.
//!
//! Then the multi-instance rows (`multi.rs`): one and two `serve` processes on one PostgreSQL
//! database, every event delivered twice (to both instances when there are two) and invoices
//! created on each, pushed to the test suite's fake Stripe. `BENCH_MULTI=off` skips them,
//! `BENCH_MULTI=only` runs nothing else; `BENCH_MULTI_EVENTS` sets their event count.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool: a failure should stop it loudly

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/api/support/fake_stripe/mod.rs"]
#[allow(dead_code)]
mod fake_stripe;
#[path = "ingest/multi.rs"]
mod multi;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use billmirror::storage::{DatabaseTarget, Db};
use billmirror::webhook::signature::sign;
use diesel::prelude::*;
use diesel::{Connection, PgConnection};
use serde_json::Value;

use common::list_from_env;

const SECRET: &str = "whsec_benchmark_secret_0000000000";
const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn main() {
    let events_per_run: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let templates = templates();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let multi_mode = std::env::var("BENCH_MULTI").unwrap_or_default();
    if multi_mode != "only" {
        single_table(&runtime, events_per_run, &templates);
    }
    if multi_mode != "off" {
        let events = std::env::var("BENCH_MULTI_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4_000);
        multi::table(&runtime, events, &templates);
    }
}

fn single_table(runtime: &tokio::runtime::Runtime, events_per_run: usize, templates: &[Value]) {
    let mut ceilings = std::collections::HashMap::new();
    for concurrency in list_from_env("BENCH_CONCURRENCY", "1,8,32,64")
        .iter()
        .map(|c| c.parse::<usize>().expect("a number"))
    {
        let (per_s, p99) = runtime.block_on(ceiling(concurrency, events_per_run, templates));
        println!("bare actix-web handler, concurrency {concurrency}: {per_s:.0} accepted/s, ack p99 {p99:.2} ms");
        ceilings.insert(concurrency, per_s);
    }
    // BENCH_SERVER_BIN=/path/to/billmirror measures another build (say, the one before a change)
    // with this same generator, in the same window.
    let binary = server_binary();
    println!("server: {binary}");
    println!("| backend | events | concurrency | n | accepted/s | share of bare actix | ack p50 ms | ack p99 ms | applied/s | apply lag after last ack s | peak RSS MB | server CPU µs/event | PostgreSQL CPU µs/event |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    // BENCH_BACKENDS=postgres, BENCH_CONCURRENCY=32, BENCH_MODES=mapped: run a subset, e.g. under
    // a profiler. `mapped`: events the ledger folds; `unmapped`: the same payloads under a type
    // billmirror stores as `ignored` (ingest alone).
    let backends = list_from_env("BENCH_BACKENDS", "sqlite,postgres");
    let concurrencies = list_from_env("BENCH_CONCURRENCY", "1,8,32,64");
    let modes = list_from_env("BENCH_MODES", "mapped,unmapped");
    let repeats = common::number_from_env("BENCH_REPEATS", 1);
    for backend in backends.iter().map(String::as_str) {
        for mode in modes.iter().map(String::as_str) {
            for concurrency in concurrencies
                .iter()
                .map(|c| c.parse::<usize>().expect("a number"))
            {
                let n = if concurrency == 1 {
                    events_per_run / 10
                } else {
                    events_per_run
                };
                for _ in 0..repeats {
                    let r = runtime.block_on(run(backend, mode, concurrency, n, templates));
                    let share = ceilings.get(&concurrency).map_or(String::from("-"), |c| {
                        format!("{:.1} %", 100.0 * r.accepted_per_s / c)
                    });
                    let per_event = |s: f64| s * 1e6 / n as f64;
                    let pg = if backend == "postgres" {
                        format!("{:.0}", per_event(r.postgres_cpu_s))
                    } else {
                        "-".into()
                    };
                    println!(
                        "| {backend} | {mode} | {concurrency} | {n} | {:.0} | {share} | {:.2} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} | {pg} |",
                        r.accepted_per_s, r.p50_ms, r.p99_ms, r.applied_per_s, r.lag_s, r.peak_rss_mb,
                        per_event(r.server_cpu_s)
                    );
                }
            }
        }
    }
}

/// The `billmirror` binary to measure: `BENCH_SERVER_BIN`, else this build's.
fn server_binary() -> String {
    std::env::var("BENCH_SERVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_billmirror").into())
}

/// An event type billmirror stores and never folds (`ignored`).
const UNMAPPED_TYPE: &str = "balance.available";

struct RunResult {
    accepted_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    applied_per_s: f64,
    lag_s: f64,
    peak_rss_mb: f64,
    server_cpu_s: f64,
    /// CPU seconds of every PostgreSQL process during the run (0 on SQLite).
    postgres_cpu_s: f64,
}

/// The real payloads, parsed; each run rewrites their ids so every event is new.
fn templates() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/stripe/events");
    let mut templates: Vec<Value> = std::fs::read_dir(dir)
        .expect("fixtures/stripe/events exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
        .filter(|v: &Value| v["data"]["object"]["id"].is_string())
        .collect();
    templates.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_owned());
    assert!(!templates.is_empty(), "no event fixtures found in {dir}");
    templates
}

/// Event `n` of a run: a template whose every Stripe id gets the suffix `{run}{n}`, so each event
/// is distinct and describes objects of its own, as in a real stream of many customers.
fn body(templates: &[Value], run: &str, n: usize) -> String {
    let mut event = templates[n % templates.len()].clone();
    suffix_ids(&mut event, &format!("{run}{n}"));
    // Some sample files carry made-up event ids that do not look like Stripe's.
    event["id"] = Value::String(format!("evt_{run}_{n}"));
    event["livemode"] = Value::Bool(false);
    serde_json::to_string_pretty(&event).unwrap()
}

fn suffix_ids(value: &mut Value, suffix: &str) {
    match value {
        Value::String(s) if looks_like_stripe_id(s) => s.push_str(suffix),
        Value::Array(items) => items.iter_mut().for_each(|v| suffix_ids(v, suffix)),
        Value::Object(map) => map.values_mut().for_each(|v| suffix_ids(v, suffix)),
        _ => {}
    }
}

fn looks_like_stripe_id(s: &str) -> bool {
    s.split_once('_').is_some_and(|(prefix, rest)| {
        (2..=6).contains(&prefix.len())
            && prefix.bytes().all(|b| b.is_ascii_lowercase())
            && rest.len() >= 6
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

async fn run(
    backend: &str,
    mode: &str,
    concurrency: usize,
    n: usize,
    templates: &[Value],
) -> RunResult {
    let run_id = format!(
        "b{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("run")
    );
    let (database_url, _guard) = database(backend, &run_id);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = start_server(&database_url, port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    wait_healthy(&client, &base).await;

    let now = chrono::Utc::now().timestamp();
    let bodies: Arc<Vec<(String, String)>> = Arc::new(
        (0..n)
            .map(|i| {
                let mut body = body(templates, &run_id, i);
                if mode == "unmapped" {
                    let mut event: Value = serde_json::from_str(&body).unwrap();
                    event["type"] = Value::String(UNMAPPED_TYPE.into());
                    body = serde_json::to_string_pretty(&event).unwrap();
                }
                let header = sign(SECRET, now, body.as_bytes());
                (body, header)
            })
            .collect(),
    );
    let postgres_before = postgres_cpu_seconds();
    let started = Instant::now();
    let mut latencies = load(
        &client,
        &format!("{base}/webhooks/stripe"),
        bodies,
        concurrency,
    )
    .await;
    let acked = started.elapsed();
    let db = Db::connect(&DatabaseTarget::parse(Some(&database_url)).unwrap(), 1).unwrap();
    loop {
        let left = db
            .run(|conn| {
                use billmirror::storage::schema::webhook_events::dsl::*;
                Ok(webhook_events
                    .filter(status.eq_any(["pending", "retrying"]))
                    .count()
                    .get_result::<i64>(conn)?)
            })
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let applied = started.elapsed();
    let postgres_cpu_s = if backend == "postgres" {
        postgres_cpu_seconds() - postgres_before
    } else {
        0.0
    };
    let peak_rss_mb = peak_rss_kb(server.id()) as f64 / 1024.0;
    let server_cpu_s = cpu_seconds(server.id());
    stop(&mut server);

    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    RunResult {
        accepted_per_s: n as f64 / acked.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        applied_per_s: n as f64 / applied.as_secs_f64(),
        lag_s: (applied - acked).as_secs_f64(),
        peak_rss_mb,
        server_cpu_s,
        postgres_cpu_s,
    }
}

/// Posts every body from `concurrency` keep-alive clients; each answer must be 200. Returns the
/// latencies.
async fn load(
    client: &reqwest::Client,
    url: &str,
    bodies: Arc<Vec<(String, String)>>,
    concurrency: usize,
) -> Vec<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, bodies, next, url) =
            (client.clone(), bodies.clone(), next.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((body, header)) = bodies.get(i) else {
                    break;
                };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("Stripe-Signature", header)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    response.status(),
                    200,
                    "{}",
                    response.text().await.unwrap_or_default()
                );
                response.bytes().await.unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies
}

/// The ceiling: a bare actix-web handler answering 200 to the same requests from the same
/// generator, in this process on its own thread. Accepted/s and ack p99 ms.
async fn ceiling(concurrency: usize, n: usize, templates: &[Value]) -> (f64, f64) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(|| {
                actix_web::App::new().route(
                    "/webhooks/stripe",
                    actix_web::web::post().to(|_: actix_web::web::Bytes| async {
                        actix_web::HttpResponse::Ok().body("{}")
                    }),
                )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let bodies: Arc<Vec<(String, String)>> = Arc::new(
        (0..n)
            .map(|i| {
                let body = body(templates, "ceiling", i);
                let header = sign(SECRET, now, body.as_bytes());
                (body, header)
            })
            .collect(),
    );
    let started = Instant::now();
    let mut latencies = load(
        &client,
        &format!("http://127.0.0.1:{port}/webhooks/stripe"),
        bodies,
        concurrency,
    )
    .await;
    let elapsed = started.elapsed();
    latencies.sort();
    let p99 = latencies[((latencies.len() as f64 * 0.99) as usize).min(latencies.len() - 1)];
    (n as f64 / elapsed.as_secs_f64(), p99.as_secs_f64() * 1000.0)
}

/// A fresh database; the guard drops the PostgreSQL one (or the SQLite directory) afterwards.
fn database(backend: &str, run_id: &str) -> (String, Box<dyn std::any::Any>) {
    if backend == "sqlite" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        return (url, Box::new(dir));
    }
    let name = format!("billmirror_bench_{run_id}");
    let mut admin = PgConnection::establish(PG_SERVER).expect("PostgreSQL at 127.0.0.1:5432");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .unwrap();
    struct DropDb(String);
    impl Drop for DropDb {
        fn drop(&mut self) {
            if let Ok(mut admin) = PgConnection::establish(PG_SERVER) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0))
                        .execute(&mut admin);
            }
        }
    }
    // Plain TCP on loopback, as a local database is usually reached; libpq would otherwise
    // negotiate TLS with this server and spend its CPU on encryption.
    (
        format!("postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable"),
        Box::new(DropDb(name)),
    )
}

/// `billmirror serve` on `port`; `extra` adds or overrides environment variables.
fn start_server(database_url: &str, port: u16, extra: &[(&str, &str)]) -> Child {
    Command::new(server_binary())
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        // Required with PostgreSQL; SQLite would otherwise make a key file beside the database.
        .env(
            "BILLMIRROR_MASTER_KEY",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
        )
        .env("DATABASE_POOL_SIZE", "16")
        .env("LOG_LEVEL", "warn")
        .envs(extra.iter().copied())
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("billmirror did not start");
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time the process has used, in seconds (Linux clock ticks are 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// User plus system CPU seconds of every process named `postgres` (the server and its backends,
/// which come and go: a backend that ended during the run is missed, so this is a lower bound).
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "postgres").then(|| cpu_seconds(pid))
        })
        .sum()
}

fn stop(server: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}
