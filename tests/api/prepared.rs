//! The apply worker's statements are prepared once per connection, not built and prepared again
//! for every event: re-preparing was the largest cost of applying an event after parsing it
//! (issue 15). Diesel reports each statement it keeps (`CacheQuery`); every statement the worker
//! runs per event must be one of those.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use billmirror::ledger;
use billmirror::storage::{events, DbConnection};
use billmirror::webhook::{self, Envelope};
use diesel::connection::{Connection, InstrumentationEvent};
use serde_json::Value;

use crate::on_both_backends;
use crate::support::TestDb;

/// Every event of every story in `fixtures/stripe/stories`: invoices, payments with several
/// attempts, refunds, disputes, subscriptions and customers.
fn story_events() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/stripe/stories");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .flat_map(|path| {
            let story: Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            story["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| serde_json::to_string_pretty(e).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn deliver_all(conn: &mut DbConnection, connection_id: &str, bodies: &[String]) {
    events::ensure_connection(
        conn,
        connection_id,
        "test",
        "test",
        billmirror::domain::states::ConnectionOrigin::Api,
    )
    .unwrap();
    for body in bodies {
        let envelope = Envelope::parse(body.as_bytes()).unwrap();
        let maps = ledger::maps(&envelope.event_type);
        let row = webhook::inbox_row(connection_id, envelope, body.clone(), "test", None, maps);
        events::insert_new(conn, [&row]).unwrap();
    }
}

fn apply_all(conn: &mut DbConnection) -> usize {
    let mut applied = 0;
    loop {
        let pass =
            ledger::worker::apply_due(conn, Default::default(), Duration::from_secs(1)).unwrap();
        assert_eq!(pass.failed, 0, "an event failed to apply");
        if pass.applied == 0 {
            return applied;
        }
        applied += pass.applied;
    }
}

/// What the connection ran and what it kept, by statement text.
#[derive(Default)]
struct Seen {
    kept: HashSet<String>,
    ran: Vec<String>,
    recording: bool,
}

fn watch(conn: &mut DbConnection) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = seen.clone();
    conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
        let mut seen = sink.lock().unwrap();
        match event {
            InstrumentationEvent::CacheQuery { sql, .. } => {
                seen.kept.insert(sql.to_owned());
            }
            InstrumentationEvent::StartQuery { query, .. } if seen.recording => {
                let text = query.to_string();
                let sql = text.split(" -- binds:").next().unwrap_or("").to_owned();
                seen.ran.push(sql);
            }
            _ => {}
        }
    });
    seen
}

/// Statements a pass runs once per batch, whose text cannot be kept: transaction control and
/// settings, and on SQLite the two statements with one `?` per claimed event.
fn once_per_batch(sql: &str) -> bool {
    let sql = sql.trim_start();
    ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "SET LOCAL"]
        .iter()
        .any(|start| sql.starts_with(start))
        // PostgreSQL's claim of due ids names the queue index's predicate as literal SQL.
        || sql.contains("FOR UPDATE SKIP LOCKED")
        || sql.replace('`', "\"").contains("\"webhook_events\".\"id\" IN (")
}

on_both_backends! {
    async fn applying_events_reuses_statements_prepared_once(backend: Backend) {
        let db = TestDb::create(backend);
        let pool = db.open_migrated();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.blocking().unwrap();
            let seen = watch(&mut conn);
            let bodies = story_events();
            // The first connection's events prepare what applying needs.
            deliver_all(&mut conn, "conn_first", &bodies);
            assert_eq!(apply_all(&mut conn), bodies.len());
            // The same events for another connection take the same paths: nothing new to prepare.
            deliver_all(&mut conn, "conn_second", &bodies);
            seen.lock().unwrap().recording = true;
            assert_eq!(apply_all(&mut conn), bodies.len());
            let seen = seen.lock().unwrap();
            let per_event: Vec<&String> = seen
                .ran
                .iter()
                .filter(|sql| !once_per_batch(sql))
                .collect();
            assert!(
                per_event.len() >= 3 * bodies.len(),
                "the watch saw what applying ran ({} statements for {} events)",
                per_event.len(),
                bodies.len()
            );
            let prepared_again: BTreeSet<&String> = per_event
                .into_iter()
                .filter(|sql| !seen.kept.contains(*sql))
                .collect();
            assert!(
                prepared_again.is_empty(),
                "statements prepared again for every event:\n{}",
                prepared_again.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
            );
        })
        .await
        .unwrap();
    }
}
