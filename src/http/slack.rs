//! `POST /slack/interactions`: Slack's requests when someone clicks a button in one of our
//! messages. Authenticated by the Slack app's signature, not by a token. Answered at once with
//! an empty 200 (Slack waits at most three seconds); the click's job does the work and answers
//! in the thread, or, for a refusal, to the clicker alone.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::notify::interact::InteractionError;
use crate::notify::slack::Refusal;

/// Slack's interaction payloads are a few kilobytes; a message's worth of blocks at most.
const MAX_BODY: usize = 256 * 1024;

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A button clicked in one of our Slack messages.
#[utoipa::path(post, path = "/slack/interactions",
    params(
        ("X-Slack-Signature" = String, Header, description = "`v0=` hex HMAC-SHA256 of `v0:{timestamp}:{body}` with the Slack app's signing secret."),
        ("X-Slack-Request-Timestamp" = String, Header, description = "Unix seconds; refused when more than 5 minutes away from now."),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`payload=<JSON>`, as Slack sends `block_actions`."),
    responses(
        (status = 200, description = "Accepted (empty body); the click's job answers in the thread, or to the clicker alone when refused."),
        (status = 400, description = "Not a Slack interaction payload (`invalid_payload`).", body = super::error::ErrorBody),
        (status = 401, description = "`missing_signature`, `stale_timestamp` or `invalid_signature`.", body = super::error::ErrorBody),
        (status = 413, description = "A body over 256 KiB.", body = super::error::ErrorBody),
    ),
)]
pub async fn interactions(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let wait = state.config.webhooks.body_timeout;
    let body = match tokio::time::timeout(wait, payload.to_bytes_limited(MAX_BODY)).await {
        Ok(Ok(Ok(body))) => body,
        Ok(Ok(Err(e))) => {
            return Err(ApiError::bad_request(
                "unreadable_body",
                format!("The body could not be read: {e}."),
            ))
        }
        Ok(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The body is larger than {MAX_BODY} bytes."),
            ))
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "The body did not arrive in time.",
            ))
        }
    };
    let received = state
        .notifier
        .receive_interaction(
            header(&req, "x-slack-request-timestamp"),
            header(&req, "x-slack-signature"),
            body.to_vec(),
        )
        .await;
    match received {
        Ok(_) => Ok(HttpResponse::Ok().finish()),
        Err(InteractionError::Unsigned(refusal)) => {
            let (code, message) = match refusal {
                Refusal::Malformed => (
                    "missing_signature",
                    "X-Slack-Request-Timestamp and X-Slack-Signature (v0=…) are required.",
                ),
                Refusal::Stale => (
                    "stale_timestamp",
                    "X-Slack-Request-Timestamp is more than five minutes from now.",
                ),
                Refusal::BadSignature => (
                    "invalid_signature",
                    "The signature matches no Slack app configured for interactivity.",
                ),
            };
            tracing::warn!(reason = code, "a Slack interaction was refused");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, code, message))
        }
        Err(InteractionError::Invalid(why)) => Err(ApiError::bad_request(
            "invalid_payload",
            format!("The interaction payload is not Slack's: {why}."),
        )),
        Err(InteractionError::Storage(e)) => Err(e.into()),
    }
}
