//! `GET /openapi.json`: the HTTP API described from the handlers' own types at compile time
//! (utoipa). Each handler carries a `#[utoipa::path]` with its path, parameters, body and
//! answers, and is listed in [`ApiDoc`]; what every `/api` route shares (the bearer token, the
//! role it needs, the 401 and 403 answers, its tag) is added here from the route table, so it
//! cannot disagree with the check actually made. A test compares the document with the route
//! table, both ways.

use std::sync::LazyLock;

use actix_web::http::Method;
use actix_web::HttpResponse;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{
    billing, connections, events, health, invoices, jobs, notifications, pay, reconcile, routes,
    slack, tokens, webhooks,
};

/// The name of the bearer-token scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "billmirror",
        description = "Keeps a billing ledger in sync with Stripe. Every `/api` route takes an \
                       API token as `Authorization: Bearer <token>`; each operation names the \
                       smallest role it needs (support < finance < ops < admin). Errors answer \
                       `{\"error\": {\"code\", \"message\", \"details\"?}}`."
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        document,
        pay::pay,
        webhooks::receive_env,
        webhooks::receive_for,
        webhooks::receive_connect,
        tokens::list,
        tokens::create,
        tokens::revoke,
        connections::check,
        connections::create,
        connections::list,
        connections::get,
        connections::disconnect,
        connections::validate,
        connections::register_webhook_endpoint,
        connections::add_webhook_secret,
        connections::retire_webhook_secret,
        reconcile::start,
        reconcile::get,
        invoices::create,
        invoices::list,
        invoices::get,
        invoices::void,
        invoices::retry,
        billing::context,
        billing::customers,
        billing::subscriptions,
        events::list,
        events::get,
        events::replay,
        jobs::list,
        jobs::get,
        jobs::retry,
        notifications::create_channel,
        notifications::list_channels,
        notifications::get_channel,
        notifications::update_channel,
        notifications::delete_channel,
        notifications::test_channel,
        notifications::deliveries,
        notifications::create_rule,
        notifications::list_rules,
        notifications::get_rule,
        notifications::update_rule,
        notifications::delete_rule,
        notifications::get_interactivity,
        notifications::set_interactivity,
        notifications::delete_interactivity,
        notifications::list_slack_users,
        notifications::set_slack_user,
        notifications::delete_slack_user,
        slack::interactions,
    ),
    components(schemas(ErrorBody)),
    modifiers(&FromRouteTable)
)]
pub struct ApiDoc;

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"the OpenAPI document cannot be built: {e}\"}}"))
});

/// This document: the HTTP API in OpenAPI 3.1.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// Adds what the route table knows to each operation.
struct FromRouteTable;

impl Modify for FromRouteTable {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`bm_…`) from `POST /api/tokens` or the one-time admin \
                         token printed at first start.",
                    ))
                    .build(),
            ),
        );
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build()
        };
        for route in routes::api_routes() {
            let Some(operation) = operation(doc, &route.method, route.path) else {
                // The test names it; the document is still served.
                continue;
            };
            operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            let role = format!("Needs the `{}` role or a larger one.", route.role.as_str());
            operation.description = Some(match operation.description.take() {
                Some(text) if !text.is_empty() => format!("{text}\n\n{role}"),
                _ => role,
            });
            operation.tags = Some(vec![tag(route.path).to_owned()]);
            let responses = &mut operation.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                ResponseBuilder::new()
                    .description("No token, or an unknown or revoked one (`unauthorized`).")
                    .content("application/json", error())
                    .build()
                    .into()
            });
            responses.entry("403".into()).or_insert_with(|| {
                ResponseBuilder::new()
                    .description("The token's role is too small (`forbidden`).")
                    .content("application/json", error())
                    .build()
                    .into()
            });
        }
        for route in routes::other_routes() {
            if let Some(operation) = operation(doc, &route.method, route.path) {
                operation.tags = Some(vec!["service".to_owned()]);
            }
        }
    }
}

/// The operation the document holds for this method and path, if it holds one.
fn operation<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    method: &Method,
    path: &str,
) -> Option<&'a mut Operation> {
    let item: &mut PathItem = doc.paths.paths.get_mut(path)?;
    let slot = match *method {
        Method::GET => &mut item.get,
        Method::POST => &mut item.post,
        Method::PUT => &mut item.put,
        Method::PATCH => &mut item.patch,
        Method::DELETE => &mut item.delete,
        _ => return None,
    };
    slot.as_mut()
}

/// `/api/notifications/channels/{id}` → `notifications`: one tag per resource family.
fn tag(path: &str) -> &str {
    path.trim_start_matches("/api/")
        .split('/')
        .next()
        .unwrap_or("api")
}
