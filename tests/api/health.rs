use crate::on_both_backends;
use crate::support::{error_code, TestApp};

on_both_backends! {
    async fn healthz_answers_ok_without_a_token(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }

    async fn readyz_is_503_when_migrations_are_pending(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

        billmirror::storage::migrate::revert_all(&mut app.db.blocking().unwrap()).unwrap();
        let response = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(error_code(response).await, "unavailable");
    }

    async fn metrics_count_requests_by_route_and_status(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.client.get(app.url("/api/tokens/{missing}")).send().await.unwrap();
        app.get("/api/tokens", &app.admin_token).await;
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(text.contains(r#"http_requests_total{route="/api/tokens",method="GET",status="200"}"#), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    }

    async fn unknown_routes_get_a_json_404(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.client.get(app.url("/nowhere")).send().await.unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(error_code(response).await, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_postgres_stops_answering() {
    let app = TestApp::spawn(crate::support::Backend::Postgres).await;
    app.test_db.drop_now();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("billmirror_test_"),
        "the cause stays in the log: {body}"
    );
}
