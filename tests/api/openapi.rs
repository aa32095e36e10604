//! `/openapi.json` describes exactly the route table: every `/api` route and every other route,
//! each with its method, and nothing more; the document has the shape OpenAPI 3 requires.

use std::collections::BTreeSet;

use billmirror::http::routes::{api_routes, other_routes};
use serde_json::Value;

use crate::support::{Backend, TestApp};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    // Served without a token: it holds no data, only the API's shape.
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Every `(method, path)` the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (key, _) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&key.as_str()) {
                found.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_every_route_of_the_route_table_and_nothing_else() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = document(&app).await;

    let api: BTreeSet<(String, String)> = api_routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let others: BTreeSet<(String, String)> = other_routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let table: BTreeSet<_> = api.union(&others).cloned().collect();
    assert_eq!(
        table.len(),
        api_routes().len() + other_routes().len(),
        "a route is in the table twice"
    );
    let described = operations(&doc);
    let missing: Vec<_> = table.difference(&described).collect();
    let extra: Vec<_> = described.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "routes without a description in /openapi.json: {missing:?}"
    );
    assert!(extra.is_empty(), "described but not routed: {extra:?}");

    // Each /api operation carries the token requirement and the role the table checks.
    for route in api_routes() {
        let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        assert_eq!(
            op["security"],
            serde_json::json!([{"bearer": []}]),
            "{} {}",
            route.method,
            route.path
        );
        let description = op["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(&format!("`{}` role", route.role.as_str())),
            "{} {}: {description}",
            route.method,
            route.path
        );
        for status in ["401", "403"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{} {} lacks {status}",
                route.method,
                route.path
            );
        }
    }
    for route in other_routes() {
        let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        assert!(
            op.get("security").is_none(),
            "{} takes no token",
            route.path
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_has_the_shape_openapi_3_requires() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "{version}");
    assert_eq!(doc["info"]["title"], "billmirror");
    assert!(doc["info"]["version"].is_string());

    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        assert!(
            schemas.contains_key(name),
            "$ref {reference} points at no schema"
        );
    }

    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path}: no responses"));
            assert!(!responses.is_empty(), "{method} {path}: no responses");
            for (status, response) in responses {
                assert!(
                    status.len() == 3
                        && status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                    "{method} {path}: status {status}"
                );
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}: a response needs a description"
                );
            }
            // Every `{name}` in the path is declared as a required path parameter, and no other.
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .inspect(|p| assert_eq!(p["required"], true, "{method} {path}"))
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let mut want = templated.clone();
            let mut got = declared.clone();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(want, got, "{method} {path}: path parameters");
            if ["post", "patch"].contains(&method.as_str()) {
                if let Some(body) = op.get("requestBody") {
                    assert!(
                        body["content"].is_object(),
                        "{method} {path}: requestBody.content"
                    );
                }
            }
        }
    }

    // The error shape the document promises is the one answers have.
    let error = &schemas["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]));
    let answer = app.client.get(app.url("/api/tokens")).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let body: Value = answer.json().await.unwrap();
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
