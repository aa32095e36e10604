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
    let (envelope, body, signed_with) =
        match verified(state, &endpoint, connection_id, req, payload).await? {
            Ok(verified) => verified,
            Err(answer) => return Ok(answer),
        };
    store(state, connection_id, envelope, body, signed_with).await
}

/// A delivery read within its limits and verified against `endpoint`'s secrets: the envelope,
/// the body and the hint of the secret that signed it. A refusal is an `Err` (counted against
/// `counted_as`), or an answer that closes the connection (`Ok(Err(…))`).
async fn verified(
    state: &AppState,
    endpoint: &webhook::Endpoint,
    counted_as: &str,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Result<(webhook::Envelope, String, String), HttpResponse>, ApiError> {
    let connection_id = counted_as;
    let limit = state.config.webhooks.max_body_bytes;
    // A declared length over the limit is refused before a byte of the body is read.
    if declared_length(req).is_some_and(|length| length > limit as u64) {
        reject(state, connection_id, "payload_too_large");
        return Ok(Err(closing(too_large(limit))));
    }
    // actix bounds only the wait for the headers; a client that stops halfway through its body
    // would otherwise hold the request, and a graceful shutdown, for as long as it likes.
    let wait = state.config.webhooks.body_timeout;
    let body = match tokio::time::timeout(wait, read_body(payload, limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            reject(state, connection_id, error.code);
            return Ok(Err(closing(error)));
        }
        Err(_) => {
            reject(state, connection_id, "body_timeout");
            return Ok(Err(closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "The body did not arrive within {} s (WEBHOOK_BODY_TIMEOUT_SECS).",
                    wait.as_secs()
                ),
            ))));
        }
    };
    let signature = req
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let verified = webhook::verify_delivery(
        endpoint,
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
    Ok(Ok((envelope, body, signed_with)))
}

/// Stores a verified event for `connection_id` and answers Stripe.
async fn store(
    state: &AppState,
    connection_id: &str,
    envelope: webhook::Envelope,
    body: String,
    signed_with: String,
) -> Result<HttpResponse, ApiError> {
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

/// Stripe's Connect webhooks for every account connected with "Connect with Stripe" in one mode.
#[utoipa::path(post, path = "/webhooks/stripe/connect/{mode}",
    params(
        ("mode" = String, Path, description = "`live` or `test`: the mode of the platform's Connect endpoint."),
        ("Stripe-Signature" = String, Header, description = "`t=…,v1=…`, signed with the Connect endpoint's secret (`STRIPE_CONNECT_WEBHOOK_SECRET_LIVE` or `_TEST`)."),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A Connect event: a Stripe event with a top-level `account` (`acct_…`) naming the connected account it is about."),
    responses(
        (status = 200, description = "Stored for that account's connection (or already known), or an `account.application.deauthorized` taken: the connection is revoked.", body = Received),
        (status = 400, description = "Bad or missing signature, not an event, no `account` (`missing_account`), or an account that is not connected (`unconnected_account`, counted).", body = ErrorBody),
        (status = 404, description = "No Connect endpoint is configured for this mode (`unknown_connection`).", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time (`body_timeout`).", body = ErrorBody),
        (status = 413, description = "The body is over `WEBHOOK_MAX_BODY_BYTES` (`payload_too_large`).", body = ErrorBody),
        (status = 503, description = "The database cannot be reached; Stripe retries.", body = ErrorBody),
    ))]
pub async fn receive_connect(
    state: web::Data<AppState>,
    mode: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    use crate::stripe::Mode;
    let offer = Mode::parse(&mode).and_then(|mode| {
        state
            .config
            .oauth
            .as_ref()?
            .mode(mode)
            .filter(|m| !m.webhook_secrets.is_empty())
    });
    let Some(offer) = offer else {
        count_rejection("unknown", "unknown_connection");
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_connection",
            "No Connect webhook endpoint of this mode is configured: set \
             STRIPE_CONNECT_WEBHOOK_SECRET_LIVE or STRIPE_CONNECT_WEBHOOK_SECRET_TEST.",
        ));
    };
    // Counted under the endpoint until the event says which connection it belongs to.
    let counted_as = format!("connect_{}", offer.mode.as_str());
    let endpoint = webhook::Endpoint {
        connection_id: counted_as.clone(),
        mode: Some(offer.mode.as_str()),
        secrets: offer.webhook_secrets.clone(),
    };
    let (envelope, body, signed_with) =
        match verified(&state, &endpoint, &counted_as, &req, payload).await? {
            Ok(verified) => verified,
            Err(answer) => return Ok(answer),
        };
    let account = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["account"].as_str().map(str::to_owned))
        .filter(|a| a.starts_with("acct_"));
    let Some(account) = account else {
        reject(&state, &counted_as, "missing_account");
        return Err(ApiError::bad_request(
            "missing_account",
            "A Connect event names its account in a top-level `account` (acct_…); this one does not.",
        ));
    };
    let connection = state
        .connections
        .oauth_connection_of(&account, offer.mode)
        .await?;
    if envelope.event_type == "account.application.deauthorized" {
        if let Some(row) = &connection {
            state
                .connections
                .revoke(&row.id, "account.application.deauthorized")
                .await;
        }
        // Also when the connection is gone already (disconnected here first): Stripe need not retry.
        return Ok(HttpResponse::Ok().json(Received {
            received: true,
            duplicate: connection.is_none(),
        }));
    }
    let Some(connection) = connection else {
        reject(&state, &counted_as, "unconnected_account");
        tracing::warn!(stripe.account = %account, mode = offer.mode.as_str(), "a Connect event for an account that is not connected");
        return Err(ApiError::bad_request(
            "unconnected_account",
            format!(
                "The account {account} is not connected in {} mode.",
                offer.mode.as_str()
            ),
        ));
    };
    store(&state, &connection.id, envelope, body, signed_with).await
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
