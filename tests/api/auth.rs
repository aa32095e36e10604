//! Every `/api` route checks its token and role; tokens are shown once, stored hashed, revocable.

use billmirror::domain::Role;
use billmirror::http::routes::api_routes;
use reqwest::Method;
use serde_json::json;

use crate::on_both_backends;
use crate::support::{error_code, TestApp};

/// A concrete path for a route template: `{id}` becomes a value that matches nothing.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| {
            if part.starts_with('{') {
                "no-such-id"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

on_both_backends! {
    async fn every_api_route_refuses_missing_bad_and_too_weak_tokens(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let routes = api_routes();
        assert!(!routes.is_empty());
        for route in routes {
            assert!(route.path.starts_with("/api/"), "{} is not under /api", route.path);
            let url = app.url(&concrete(route.path));
            let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();

            let anonymous = app.client.request(method.clone(), &url).json(&json!({})).send().await.unwrap();
            assert_eq!(anonymous.status(), 401, "{} {} without a token", route.method, route.path);
            assert_eq!(error_code(anonymous).await, "unauthorized");

            let forged = app.client.request(method.clone(), &url).bearer_auth("bm_0000").send().await.unwrap();
            assert_eq!(forged.status(), 401, "{} {} with an unknown token", route.method, route.path);

            for weaker in Role::ALL.into_iter().filter(|r| *r < route.role) {
                let token = app.token(weaker);
                let answer = app.client.request(method.clone(), &url).bearer_auth(&token).json(&json!({})).send().await.unwrap();
                assert_eq!(answer.status(), 403, "{} {} as {weaker}", route.method, route.path);
                assert_eq!(error_code(answer).await, "forbidden");
            }
        }
    }

    async fn a_created_token_works_once_shown_and_never_listed(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.post_json("/api/tokens", &app.admin_token, &json!({"name": "support-desk", "role": "support"})).await;
        assert_eq!(created.status(), 201);
        let created: serde_json::Value = created.json().await.unwrap();
        let token = created["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("bm_") && token.len() == 67, "{token}");
        assert_eq!(created["role"], "support");

        // A support token reads nothing admin-only.
        assert_eq!(app.get("/api/tokens", &token).await.status(), 403);

        let listed = app.get("/api/tokens", &app.admin_token).await.text().await.unwrap();
        assert!(listed.contains("support-desk"));
        assert!(!listed.contains(&token), "the token value is never listed");
        assert!(!listed.contains(&token[3..]), "nor its hex part");
    }

    async fn a_revoked_token_is_refused(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let token = app.token(Role::Admin);
        assert_eq!(app.get("/api/tokens", &token).await.status(), 200);
        let list: serde_json::Value = app.get("/api/tokens", &app.admin_token).await.json().await.unwrap();
        let id = list["data"].as_array().unwrap().iter()
            .find(|t| t["name"].as_str().unwrap().starts_with("test-admin"))
            .unwrap()["id"].as_str().unwrap().to_owned();

        let revoked = app.client.delete(app.url(&format!("/api/tokens/{id}"))).bearer_auth(&app.admin_token).send().await.unwrap();
        assert_eq!(revoked.status(), 200);
        assert_eq!(app.get("/api/tokens", &token).await.status(), 401);
    }

    async fn token_input_errors_name_the_field(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let bad_role = app.post_json("/api/tokens", &app.admin_token, &json!({"name": "x", "role": "root"})).await;
        assert_eq!(bad_role.status(), 422);
        assert_eq!(error_code(bad_role).await, "invalid_role");

        app.post_json("/api/tokens", &app.admin_token, &json!({"name": "twice", "role": "ops"})).await;
        let again = app.post_json("/api/tokens", &app.admin_token, &json!({"name": "twice", "role": "ops"})).await;
        assert_eq!(again.status(), 409);
        assert_eq!(error_code(again).await, "name_taken");

        let unknown_field = app.post_json("/api/tokens", &app.admin_token, &json!({"name": "y", "role": "ops", "admin": true})).await;
        assert_eq!(unknown_field.status(), 400);

        let missing = app.client.delete(app.url("/api/tokens/nope")).bearer_auth(&app.admin_token).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }

    async fn the_initial_admin_is_created_once(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let mut conn = app.db.blocking().unwrap();
        let again = billmirror::auth::ensure_initial_admin(&mut conn, None).unwrap();
        assert!(again.is_none(), "a database with tokens gets no new admin");
    }
}

/// Client mistakes are answered as docs/API.md says: a stable code and a sentence naming the
/// parameter or field, in our words rather than a library's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_bodies_are_named_in_plain_words() {
    let app = TestApp::spawn(crate::support::Backend::Sqlite).await;
    let admin = app.admin_token.clone();

    let answer = app.get("/api/tokens?limit=abc", &admin).await;
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query");
    assert_eq!(body["error"]["message"], "`limit`: must be a whole number.");
    assert_eq!(body["error"]["details"]["field"], "limit");

    let answer = app.get("/api/events?limit=10&colour=red", &admin).await;
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("`colour` is not a known field"),
        "{message}"
    );

    let answer = app
        .client
        .post(app.url("/api/tokens"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body("{\"name\": \"x\", \"role\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The request body is not valid JSON"),
        "{message}"
    );
    assert!(!message.to_lowercase().contains("deserialize"), "{message}");

    let answer = app
        .post_json("/api/tokens", &admin, &json!({"name": "x", "role": 3}))
        .await;
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["message"], "`role`: must be text.");
    let answer = app
        .post_json("/api/tokens", &admin, &json!({"name": "x"}))
        .await;
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["message"], "`role` is missing.");

    // `curl -d '{…}'` sends a form content type with a JSON body: it is read as JSON.
    let answer = app
        .client
        .post(app.url("/api/tokens"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(r#"{"name": "from-curl", "role": "support"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
}
