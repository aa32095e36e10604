//! Gives every error answer the documented JSON shape. Handlers already answer with `ApiError`;
//! this catches what actix-web itself makes inside the app with an empty body, such as the 405
//! of a route asked with a method it does not take, and an error an extractor returned without
//! our error handler.

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::ResponseError;

use super::error::ApiError;

pub async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // The method is copied, not the request: cloning an `HttpRequest` before routing would stop
    // the router from filling in its path parameters.
    let method = req.method().clone();
    let response = match next.call(req).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(error) => {
            // Rendered later by actix; replaced here only when it would be bare.
            let bare = error.error_response();
            let status = bare.status();
            if !matches!(bare.body().size(), BodySize::None | BodySize::Sized(0)) {
                return Err(error);
            }
            let (code, message) = describe(status, method.as_str());
            return Err(ApiError::new(status, code, message).into());
        }
    };
    let status = response.status();
    let empty = matches!(
        response.response().body().size(),
        BodySize::None | BodySize::Sized(0)
    );
    if !(status.is_client_error() || status.is_server_error()) || !empty {
        return Ok(response);
    }
    let (request, bare) = response.into_parts();
    let (code, message) = describe(status, method.as_str());
    let mut answer = ApiError::new(status, code, message).error_response();
    // Keep what the bare answer said in its headers (`Allow`, `Retry-After`).
    for (name, value) in bare.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, answer))
}

/// A stable code and a sentence for a status actix-web produced on its own.
fn describe(status: StatusCode, method: &str) -> (&'static str, String) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "The request is malformed.".to_owned()),
        StatusCode::NOT_FOUND => ("not_found", "There is no such route.".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("This route does not take {method} requests."),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "The request did not arrive in time.".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The body is larger than this route accepts.".to_owned(),
        ),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "The URI is too long.".to_owned()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "The body's Content-Type is not accepted here.".to_owned(),
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "The request's headers are too large.".to_owned(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "unavailable",
            "The service is unavailable right now; try again shortly.".to_owned(),
        ),
        s if s.is_server_error() => (
            "internal_error",
            "Something went wrong on our side.".to_owned(),
        ),
        s => (
            "http_error",
            format!(
                "The request was refused: {}.",
                s.canonical_reason().unwrap_or("client error")
            ),
        ),
    }
}
