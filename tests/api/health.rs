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
        assert!(text.contains(r#"billmirror_http_requests_total{route="/api/tokens",method="GET",status="200"}"#), "{text}");
        assert!(text.contains("billmirror_http_request_duration_seconds_bucket"), "{text}");
    }

    /// Programs (`/api`, Stripe's and Slack's webhooks) get the JSON error shape; a person who
    /// followed a link elsewhere gets the HTML error page.
    async fn unknown_routes_get_a_json_404_for_programs_and_an_html_one_for_people(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        for path in ["/api/nowhere", "/api", "/webhooks/nowhere", "/slack/nowhere"] {
            let response = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(error_code(response).await, "not_found", "{path}");
        }
        for path in ["/nowhere", "/connections/conn_x/nowhere", "/apis"] {
            let response = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8", "{path}");
            assert!(response.headers().contains_key("content-security-policy"), "{path}");
            let page = response.text().await.unwrap();
            assert!(page.contains("<h1>Not found</h1>") && page.contains("There is no page at this address."), "{path}: {page}");
        }
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

/// Every family on /metrics follows Prometheus's naming rules, has a HELP line, and the figures
/// an on-call person needs are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_prometheus_naming_rules_and_cover_what_on_call_needs() {
    use crate::support::fake_stripe::{FakeStripe, SECRET_KEY};
    use billmirror::domain::Role;
    let fake = FakeStripe::start().await;
    let app = TestApp::spawn_with_stripe(crate::support::Backend::Sqlite, &fake).await;
    // A Stripe call, a webhook, a rejection and a request or two.
    let ops = app.token(Role::Ops);
    let saved = app
        .post_json(
            "/api/connections",
            &ops,
            &serde_json::json!({"secret_key": SECRET_KEY}),
        )
        .await;
    assert_eq!(saved.status(), 201);
    let event =
        serde_json::json!({"id": "evt_metrics_1", "object": "event", "type": "customer.created",
        "created": 1_700_000_000, "livemode": false,
        "data": {"object": {"id": "cus_m1", "object": "customer", "email": "m@example.com"}}})
        .to_string();
    assert_eq!(app.deliver(&event).await.status(), 200);
    app.client
        .post(app.url("/webhooks/stripe"))
        .body("{}")
        .send()
        .await
        .unwrap();
    app.settle().await;

    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut helped = std::collections::BTreeSet::new();
    let mut families = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.trim().is_empty(), "{name} has an empty HELP");
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                families.keys().any(|f| name == f
                    || name
                        .strip_prefix(f.as_str())
                        .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
                "{name} has no TYPE line"
            );
            if let Some(labels) = line
                .split_once('{')
                .map(|(_, l)| l.split_once('}').unwrap().0)
            {
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let label = pair.split('=').next().unwrap();
                    assert!(
                        label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                        "{name}: label {label}"
                    );
                }
            }
        }
    }
    for (name, kind) in &families {
        assert!(
            name.starts_with("billmirror_"),
            "{name} lacks the billmirror_ prefix"
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name} is not snake_case"
        );
        assert!(helped.contains(name), "{name} has no HELP line");
        match kind.as_str() {
            "counter" => assert!(
                name.ends_with("_total"),
                "counter {name} must end in _total"
            ),
            _ => assert!(
                !name.ends_with("_total"),
                "{kind} {name} must not end in _total"
            ),
        }
        let is_time = ["duration", "latency", "age", "timestamp", "lag"]
            .iter()
            .any(|w| name.contains(w));
        if kind == "histogram" || is_time {
            assert!(
                name.ends_with("_seconds"),
                "{name} measures time: it must end in _seconds"
            );
        }
    }
    for wanted in [
        "billmirror_http_requests_total",
        "billmirror_http_request_duration_seconds",
        "billmirror_webhook_events_received_total",
        "billmirror_webhook_rejections_total",
        "billmirror_webhook_last_received_timestamp_seconds",
        "billmirror_webhook_events",
        "billmirror_events_oldest_unapplied_age_seconds",
        "billmirror_jobs",
        "billmirror_stripe_requests_total",
        "billmirror_stripe_request_duration_seconds",
        "billmirror_connection_key_report_ok",
        "billmirror_connection_can_push",
    ] {
        assert!(
            families.contains_key(wanted),
            "{wanted} missing from:\n{text}"
        );
    }
    assert!(
        text.contains(r#"billmirror_webhook_events{status="dead"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"billmirror_jobs{kind="push_invoice",state="dead"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"billmirror_stripe_requests_total{endpoint="/v1/account",method="GET",status="200"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"le="30""#),
        "latency buckets reach 30 s: {text}"
    );
    assert!(
        !text.contains("cus_m1") && !text.contains("evt_metrics_1"),
        "no ids in labels"
    );
}
