//! The HTTP shell: actix-web routes, the token check, error answers, request metrics. Handlers
//! parse input, call a service and shape the answer; the rules live in the modules they call.

mod auth;
pub(crate) mod billing;
mod connections;
pub mod error;
mod error_body;
mod events;
pub mod extract;
mod guard;
mod health;
mod invoices;
mod jobs;
mod metrics;
mod notifications;
pub mod openapi;
pub mod pagination;
mod pay;
mod reconcile;
pub mod routes;
mod slack;
mod tokens;
mod webhooks;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::connections::Connections;
use crate::storage::Db;
use crate::webhook::inbox::Inbox;
use crate::webhook::Endpoints;
use error::{extractor_error, ApiError};

/// What every handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    /// The connections that accept webhooks, with their secrets.
    pub endpoints: Endpoints,
    pub inbox: Inbox,
    pub connections: Connections,
    /// Rung after enqueueing a job, so its runner starts it at once.
    pub jobs: crate::jobs::Wakers,
    /// Chat notifications: channels, rules, test messages.
    pub notifier: crate::notify::Notifier,
}

/// Builds the server on an already bound listener (tests bind port 0). It does not listen for
/// signals: actix would stop at once on SIGINT; `serve` stops it gracefully on SIGTERM and SIGINT
/// alike (`shutdown`), letting in-flight requests finish within the shutdown timeout.
pub fn server(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let shutdown_timeout = state.config.shutdown_timeout.as_secs();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            // Handlers read bodies and queries with `extract::{Json, Query}`, which name the field;
            // these catch any use of actix's own extractors with the same words, minus the path.
            .app_data(web::JsonConfig::default().error_handler(|e, _| match e {
                actix_web::error::JsonPayloadError::Deserialize(e) => {
                    ApiError::bad_request("invalid_json", extract::describe(&e.to_string())).into()
                }
                other => extractor_error("invalid_json")(other.to_string()),
            }))
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                ApiError::bad_request("invalid_query", extract::describe(&e.to_string())).into()
            }))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| extractor_error("invalid_path")(e.to_string())),
            )
            // The last wrapped runs first: metrics see every answer, the guard refuses hostile
            // requests before routing, and whatever actix answers bare is given a JSON body.
            .wrap(from_fn(error_body::json_errors))
            .wrap(from_fn(guard::refuse_hostile))
            .wrap(from_fn(metrics::record))
            .wrap(from_fn(crate::web::csp::security_headers))
            .configure(routes::configure)
            .configure(crate::web::configure)
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(shutdown_timeout)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// No route matched: the JSON error shape where programs call (`/api`, Stripe's and Slack's
/// webhooks), the HTML error page everywhere else, where a person followed a link.
async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    if crate::web::is_for_people(req.path()) {
        return crate::web::WebError::NotFound("There is no page at this address".into())
            .error_response();
    }
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "There is no such route.",
    )
    .error_response()
}
