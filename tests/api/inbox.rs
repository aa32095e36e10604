//! On SQLite the inbox writer applies the events it stores in the same commit (issue 15); on
//! PostgreSQL it only stores them. No apply worker runs in these tests, so whatever is applied was
//! applied by the inbox. The ledger it builds is the one the apply worker builds from the same
//! events, and an event that cannot be applied is still stored and acknowledged, and left pending
//! for the worker.

use std::sync::Arc;
use std::time::Duration;

use billmirror::domain::states::{ConnectionOrigin, EventStatus};
use billmirror::ledger;
use billmirror::storage::snapshot::snapshot;
use billmirror::storage::{events, Db, DbConnection};
use billmirror::webhook::inbox::Inbox;
use billmirror::webhook::{self, Envelope};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::on_both_backends;
use crate::support::{Backend, TestDb};

/// The events of the story in `fixtures/stripe/stories/{name}`, in order.
fn story(name: &str) -> Vec<String> {
    let path = format!(
        "{}/fixtures/stripe/stories/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let story: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    story["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string_pretty(e).unwrap())
        .collect()
}

fn row(connection_id: &str, body: &str) -> events::EventRow {
    let envelope = Envelope::parse(body.as_bytes()).unwrap();
    let maps = ledger::maps(&envelope.event_type);
    webhook::inbox_row(
        connection_id,
        envelope,
        body.to_owned(),
        "webhook",
        None,
        maps,
    )
}

async fn connection(db: &Db, id: &'static str) {
    db.run(move |conn| events::ensure_connection(conn, id, id, "test", ConnectionOrigin::Api))
        .await
        .unwrap();
}

async fn status_of(db: &Db, id: String) -> (EventStatus, i32) {
    let row = db
        .run(move |conn| events::find(conn, &id))
        .await
        .unwrap()
        .unwrap();
    (row.status, row.attempts)
}

async fn ledger_of(db: &Db, connection_id: &'static str) -> Value {
    db.run(move |conn| snapshot(conn, connection_id))
        .await
        .unwrap()
}

/// What the apply worker builds from the same events, stored one by one and applied in order.
fn applied_by_the_worker(conn: &mut DbConnection, connection_id: &str, bodies: &[String]) {
    events::ensure_connection(
        conn,
        connection_id,
        connection_id,
        "test",
        ConnectionOrigin::Api,
    )
    .unwrap();
    for body in bodies {
        events::insert_new(conn, [&row(connection_id, body)]).unwrap();
        ledger::worker::apply_due(conn, Default::default(), Duration::from_secs(1)).unwrap();
    }
}

on_both_backends! {
    async fn a_delivery_is_applied_in_the_commit_that_stores_it_on_sqlite_only(backend: Backend) {
        let db = TestDb::create(backend);
        let pool = db.open_migrated();
        let inbox = Inbox::start(pool.clone(), Arc::new(Notify::new()));
        let bodies = story("paid_after_failure_basil.json");
        connection(&pool, "conn_inbox").await;
        let sqlite = matches!(backend, Backend::Sqlite);
        for body in &bodies {
            let stored = row("conn_inbox", body);
            let id = stored.id.clone();
            assert!(inbox.store(stored).await.unwrap(), "a new event");
            // Answered only after the commit, which on SQLite applied it; PostgreSQL's writers
            // leave it to the apply workers.
            let expected = if sqlite { (EventStatus::Applied, 1) } else { (EventStatus::Pending, 0) };
            assert_eq!(status_of(&pool, id).await, expected);
        }
        // A second delivery is a duplicate: stored (and applied) once.
        assert!(!inbox.store(row("conn_inbox", &bodies[0])).await.unwrap());
        if !sqlite {
            let pass = pool
                .run(|conn| ledger::worker::apply_due(conn, Default::default(), Duration::from_secs(5)))
                .await
                .unwrap();
            assert_eq!(pass.applied, bodies.len(), "{pass:?}");
        }

        let by_worker = bodies.clone();
        pool.run(move |conn| {
            applied_by_the_worker(conn, "conn_worker", &by_worker);
            Ok(())
        })
        .await
        .unwrap();
        let (inbox_ledger, worker_ledger) =
            (ledger_of(&pool, "conn_inbox").await, ledger_of(&pool, "conn_worker").await);
        assert!(!inbox_ledger["invoices"].as_array().unwrap().is_empty(), "{inbox_ledger}");
        assert_eq!(inbox_ledger, worker_ledger);
    }

}

/// Only SQLite's writer applies what it stores (see the first test for PostgreSQL's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_applied_is_stored_and_left_to_the_worker_on_sqlite() {
    {
        let db = TestDb::create(Backend::Sqlite);
        let pool = db.open_migrated();
        let inbox = Arc::new(Inbox::start(pool.clone(), Arc::new(Notify::new())));
        connection(&pool, "conn_inbox").await;
        let bodies = story("void_and_cancel.json");
        // A customer event whose object has no id: its keys cannot be found, so it fails to apply.
        let broken = serde_json::to_string_pretty(&json!({
            "id": "evt_broken_customer", "object": "event", "type": "customer.updated",
            "created": 1_700_000_000, "livemode": false, "api_version": "2025-03-31.basil",
            "data": {"object": {"object": "customer", "email": "x@example.com"}},
        }))
        .unwrap();
        // Delivered at once, so the broken event usually shares a batch (a commit) with good ones;
        // however they are batched, each is stored and acknowledged.
        let mut rows: Vec<events::EventRow> = bodies.iter().map(|b| row("conn_inbox", b)).collect();
        rows.insert(1, row("conn_inbox", &broken));
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let stores: Vec<_> = rows
            .into_iter()
            .map(|r| {
                let inbox = inbox.clone();
                tokio::spawn(async move { inbox.store(r).await })
            })
            .collect();
        for store in stores {
            assert!(store.await.unwrap().unwrap(), "every event is stored");
        }
        // The broken one is left untried: its attempts are the worker's to count. The good ones
        // were applied with their delivery, unless their batch's time ran out first (the first
        // event of a batch is always applied): those are left pending, untried, for the worker.
        let mut applied_in_place = 0;
        for (n, id) in ids.iter().enumerate() {
            let (status, attempts) = status_of(&pool, id.clone()).await;
            if n == 1 {
                assert_eq!(
                    (status, attempts),
                    (EventStatus::Pending, 0),
                    "the broken event"
                );
            } else if status == EventStatus::Applied {
                assert_eq!(attempts, 1, "event {n}");
                applied_in_place += 1;
            } else {
                assert_eq!((status, attempts), (EventStatus::Pending, 0), "event {n}");
            }
        }
        assert!(
            applied_in_place > 0,
            "no event was applied with its delivery"
        );
        // The worker then takes what is left: the good ones apply, the broken one fails and is
        // scheduled again.
        let pass = pool
            .run(|conn| ledger::worker::apply_due(conn, Default::default(), Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(pass.failed, 1, "{pass:?}");
        assert_eq!(pass.applied, ids.len() - 1 - applied_in_place, "{pass:?}");
        let (status, attempts) = status_of(&pool, ids[1].clone()).await;
        assert_eq!((status, attempts), (EventStatus::Retrying, 1));
    }
}
