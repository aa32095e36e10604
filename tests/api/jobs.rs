//! The job queue: each runner takes only its own kind, a job that keeps failing ends `dead` and is
//! listed and retried through the API, and a test cannot end with work left over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use billmirror::domain::backoff::Backoff;
use billmirror::domain::time;
use billmirror::domain::Role;
use billmirror::jobs::{self, Handler, JobKind, JobRow, JobState, NewJob, Outcome, Policy};
use billmirror::storage::jobs as store;
use billmirror::storage::{Db, DbConnection};
use serde_json::Value;

use crate::invoices::{connect, create, invoice_body, wait_for};
use crate::on_both_backends;
use crate::support::fake_stripe::{FakeStripe, SECRET_KEY};
use crate::support::{error_code, TestApp, TestDb};

fn enqueue(conn: &mut DbConnection, kind: JobKind, subject: &str) {
    store::enqueue(
        conn,
        &NewJob {
            kind,
            subject_id: subject,
            connection_id: "conn_x",
            payload: None,
            dedupe_key: subject,
        },
    )
    .unwrap();
}

/// A `complete_invoice_lines` handler that only records what it was given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(JobKind, String)>>>);

impl Handler for Recorder {
    const KIND: JobKind = JobKind::CompleteInvoiceLines;

    async fn run(&self, job: JobRow) -> Outcome {
        self.0.lock().unwrap().push((job.kind, job.subject_id));
        Outcome::Done
    }
}

fn quick_policy() -> Policy {
    Policy {
        concurrency: 2,
        lease: chrono::TimeDelta::minutes(5),
        backoff: Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
            jitter: true,
        },
        max_attempts: 3,
    }
}

async fn state_of(db: &Db, id: &str) -> JobState {
    let id = id.to_owned();
    db.run(move |conn| store::find(conn, &id))
        .await
        .unwrap()
        .unwrap()
        .status
}

on_both_backends! {
    async fn each_runner_claims_only_its_own_kind(backend: Backend) {
        let test_db = TestDb::create(backend);
        let db = test_db.open_migrated();
        let (push, lines) = db
            .run(|conn| {
                enqueue(conn, JobKind::PushInvoice, "inv_push");
                enqueue(conn, JobKind::CompleteInvoiceLines, "inv_lines");
                // The same work enqueued again while it waits stays one job.
                enqueue(conn, JobKind::CompleteInvoiceLines, "inv_lines");
                let push = store::find_for(conn, JobKind::PushInvoice, "inv_push")?.unwrap();
                let lines = store::find_for(conn, JobKind::CompleteInvoiceLines, "inv_lines")?.unwrap();
                Ok((push.id, lines.id))
            })
            .await
            .unwrap();
        let listed = db.run(|conn| store::list(conn, None, None, None, 10)).await.unwrap();
        assert_eq!(listed.len(), 2, "deduplicated: {listed:?}");

        // Claims by kind.
        let now = time::now();
        let claimed = db
            .run(move |conn| store::claim(conn, JobKind::PushInvoice, now, now + chrono::TimeDelta::minutes(5)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((claimed.kind, claimed.id.as_str()), (JobKind::PushInvoice, push.as_str()));
        let again = db
            .run(move |conn| store::claim(conn, JobKind::PushInvoice, now, now + chrono::TimeDelta::minutes(5)))
            .await
            .unwrap();
        assert!(again.is_none(), "the push job is leased and there is no other: {again:?}");

        // A runner of the other kind takes its own job and never the push job.
        let recorder = Recorder::default();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let runner = tokio::spawn(jobs::run(
            db.clone(),
            recorder.clone(),
            quick_policy(),
            Arc::default(),
            stopped,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while state_of(&db, &lines).await != JobState::Done {
            assert!(Instant::now() < deadline, "the lines runner never finished its job");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        runner.await.unwrap();
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [(JobKind::CompleteInvoiceLines, "inv_lines".to_owned())]
        );
        assert_eq!(state_of(&db, &push).await, JobState::Pending, "not the lines runner's to take");
    }

    async fn a_job_that_keeps_failing_ends_dead_and_is_retried_through_the_api(backend: Backend) {
        let fake = FakeStripe::start().await;
        let app = TestApp::spawn_with(
            backend,
            &[("STRIPE_API_BASE", &fake.base_url), ("JOB_MAX_ATTEMPTS", "2"), ("STRIPE_MAX_ATTEMPTS", "1")],
        )
        .await;
        let connection = connect(&app, SECRET_KEY).await;
        let finance = app.token(Role::Finance);
        let ops = app.token(Role::Ops);
        fake.go_down(503);
        let mut body = invoice_body("dead@example.com");
        body["connection_id"] = connection.clone().into();
        let invoice = create(&app, &finance, &body).await;
        let id = invoice["id"].as_str().unwrap().to_owned();
        let failed = wait_for(&app, &id, 20, |i| i["sync"] == "failed").await;
        let error = failed["sync_error"].as_str().unwrap();
        assert!(error.starts_with("gave up after 2 attempts; the last error: "), "{error}");

        let dead: Value = app.get("/api/jobs?status=dead", &ops).await.json().await.unwrap();
        let listed = dead["data"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{dead}");
        assert_eq!((listed[0]["kind"].as_str(), listed[0]["subject_id"].as_str()), (Some("push_invoice"), Some(id.as_str())));
        assert_eq!(listed[0]["attempts"], 2);
        let job = listed[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(app.get("/api/jobs?status=Dead", &ops).await.status(), 422);
        assert_eq!(app.get("/api/jobs", &finance).await.status(), 403, "jobs are for ops");

        fake.recover();
        let retried = app.post_json(&format!("/api/jobs/{job}/retry"), &ops, &Value::Null).await;
        assert_eq!(retried.status(), 202);
        wait_for(&app, &id, 20, |i| i["status"] == "open" && i["sync"] == "pushed").await;
        let again = app.post_json(&format!("/api/jobs/{job}/retry"), &ops, &Value::Null).await;
        assert_eq!(error_code(again).await, "job_not_stopped");
        let missing = app.post_json("/api/jobs/job_nope/retry", &ops, &Value::Null).await;
        assert_eq!(missing.status(), 404);
    }

    async fn a_test_cannot_end_with_work_left_over(backend: Backend) {
        let mut app = TestApp::spawn(backend).await;
        // Not due for an hour (in the transaction that enqueues it, so no runner sees it due): it
        // stays pending whatever the runners do.
        app.db
            .run(|conn| {
                conn.write_transaction(|conn| {
                    enqueue(conn, JobKind::PushInvoice, "inv_never");
                    let job = store::find_for(conn, JobKind::PushInvoice, "inv_never")?.unwrap();
                    store::finish(conn, &job.id, JobState::Pending, None, time::now() + chrono::TimeDelta::hours(1))
                })
            })
            .await
            .unwrap();
        assert_eq!(app.unfinished_work().unwrap(), (0, 1));
        app.drop_grace = Duration::from_millis(100);
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(app)));
        let message = dropped.expect_err("dropping an app with work left fails the test");
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("0 event(s) unapplied and 1 job(s) unsettled"), "{message}");
    }
}
