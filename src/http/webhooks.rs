//! `POST /webhooks/stripe[/{connection_id}]`: verify, store, then answer. The answer codes are the
//! table in docs/API.md; nothing is stored for a 4xx.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::telemetry::catalog;
use crate::webhook::{self, Rejection, ENV_CONNECTION_ID};

/// Stripe's webhooks for the connection configured from the environment (`STRIPE_*`).
#[utoipa::path(post, path = "/webhooks/stripe",
    params(("Stripe-Signature" = String, Header, description = "`t=…,v1=…`, signed with the endpoint's `whsec_…` secret.")),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A Stripe event exactly as Stripe (or `stripe listen`) sends it; the raw bytes are verified against `Stripe-Signature`."),
    responses(
        (status = 200, description = "Stored (or already known: `duplicate` true).", body = Received),
        (status = 400, description = "Bad or missing signature, stale timestamp, or not an event (see docs/API.md for each code).", body = ErrorBody),
        (status = 404, description = "No connection with this id accepts webhooks (`unknown_connection`).", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `WEBHOOK_BODY_TIMEOUT_SECS` (`body_timeout`); the connection is closed.", body = ErrorBody),
        (status = 413, description = "The body is over `WEBHOOK_MAX_BODY_BYTES` (`payload_too_large`).", body = ErrorBody),
        (status = 503, description = "The database cannot be reached; Stripe retries.", body = ErrorBody),
    ))]
pub async fn receive_env(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    receive(&state, ENV_CONNECTION_ID, &req, payload).await
}

/// Stripe's webhooks for a connection made through the API.
#[utoipa::path(post, path = "/webhooks/stripe/{connection_id}",
    params(
        ("connection_id" = String, Path, description = "The connection's id (`conn_…`)."),
        ("Stripe-Signature" = String, Header, description = "`t=…,v1=…`, signed with one of the connection's webhook secrets."),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A Stripe event exactly as Stripe (or `stripe listen`) sends it; the raw bytes are verified against `Stripe-Signature`."),
    responses(
        (status = 200, description = "Stored (or already known: `duplicate` true).", body = Received),
        (status = 400, description = "Bad or missing signature, stale timestamp, or not an event (see docs/API.md for each code).", body = ErrorBody),
        (status = 404, description = "No connection with this id accepts webhooks (`unknown_connection`).", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `WEBHOOK_BODY_TIMEOUT_SECS` (`body_timeout`); the connection is closed.", body = ErrorBody),
        (status = 413, description = "The body is over `WEBHOOK_MAX_BODY_BYTES` (`payload_too_large`).", body = ErrorBody),
        (status = 503, description = "The database cannot be reached; Stripe retries.", body = ErrorBody),
    ))]
pub async fn receive_for(
    state: web::Data<AppState>,
    connection_id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    receive(&state, &connection_id, &req, payload).await
}

async fn receive(
    state: &AppState,
    connection_id: &str,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(endpoint) = state.endpoints.get(connection_id) else {
        count_rejection("unknown", "unknown_connection");
        let hint = if connection_id == ENV_CONNECTION_ID {
            " No connection is configured from the environment: set STRIPE_WEBHOOK_SECRET."
        } else {
            ""
        };
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_connection",
            format!("There is no connection with this id.{hint}"),
        ));
    };
    let limit = state.config.webhooks.max_body_bytes;
    // A declared length over the limit is refused before a byte of the body is read.
    if declared_length(req).is_some_and(|length| length > limit as u64) {
        reject(state, connection_id, "payload_too_large");
        return Ok(closing(too_large(limit)));
    }
    // actix bounds only the wait for the headers; a client that stops halfway through its body
    // would otherwise hold the request, and a graceful shutdown, for as long as it likes.
    let wait = state.config.webhooks.body_timeout;
    let body = match tokio::time::timeout(wait, read_body(payload, limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            reject(state, connection_id, error.code);
            return Ok(closing(error));
        }
        Err(_) => {
            reject(state, connection_id, "body_timeout");
            return Ok(closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "The body did not arrive within {} s (WEBHOOK_BODY_TIMEOUT_SECS).",
                    wait.as_secs()
                ),
            )));
        }
    };
    let signature = req
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let verified = webhook::verify_delivery(
        &endpoint,
        signature,
        &body,
        chrono::Utc::now().timestamp(),
        state.config.webhooks.tolerance,
    );
    let (envelope, signed_with) = match verified {
        Ok(verified) => verified,
        Err(rejection) => {
            reject(state, connection_id, rejection.code());
            tracing::warn!(
                connection.id = connection_id,
                reason = rejection.code(),
                "webhook refused"
            );
            return Err(ApiError::bad_request(rejection.code(), rejection.message()));
        }
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        let rejection = Rejection::InvalidPayload("the body is not UTF-8".into());
        reject(state, connection_id, rejection.code());
        return Err(ApiError::bad_request(rejection.code(), rejection.message()));
    };
    let maps = webhook::maps(&envelope);
    let stripe_event_id = envelope.id.clone();
    let row = webhook::inbox_row(
        connection_id,
        envelope,
        body,
        "webhook",
        Some(signed_with),
        maps,
    );
    let new = state.inbox.store(row).await?;
    metrics::gauge!(catalog::WEBHOOK_LAST_RECEIVED, "connection" => connection_id.to_owned())
        .set(chrono::Utc::now().timestamp() as f64);
    metrics::counter!(
        catalog::WEBHOOK_EVENTS_RECEIVED,
        "connection" => connection_id.to_owned(),
        "outcome" => if !new { "duplicate" } else if maps { "stored" } else { "ignored" },
    )
    .increment(1);
    tracing::debug!(connection.id = connection_id, stripe.event_id = %stripe_event_id, duplicate = !new, "webhook stored");
    Ok(HttpResponse::Ok().json(Received {
        received: true,
        duplicate: !new,
    }))
}

/// The answer to a delivery that was stored.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Received {
    received: bool,
    /// The event was already in the inbox: nothing new was stored.
    duplicate: bool,
}

/// Reads the body up to `limit` bytes; a larger one is refused without reading it all.
async fn read_body(payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(ApiError::bad_request(
            "unreadable_body",
            format!("The body could not be read: {e}."),
        )),
        Err(_) => Err(too_large(limit)),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The body is larger than {limit} bytes (WEBHOOK_MAX_BODY_BYTES)."),
    )
}

/// The `Content-Length` the client announced, when it announced one that reads as a number.
fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The error answer, with the connection closed after it.
fn closing(error: ApiError) -> HttpResponse {
    use actix_web::ResponseError;
    error.closing().error_response()
}

fn reject(state: &AppState, connection_id: &str, reason: &'static str) {
    count_rejection(connection_id, reason);
    state.inbox.record_rejection(connection_id, reason);
}

fn count_rejection(connection_id: &str, reason: &'static str) {
    metrics::counter!(
        catalog::WEBHOOK_REJECTIONS,
        "connection" => connection_id.to_owned(),
        "reason" => reason,
    )
    .increment(1);
}
