//! Refuses, before routing, requests no handler should see: a NUL (`%00`) in the path or the
//! query, and URIs or header blocks beyond our limits. Checked once here rather than per route.
//!
//! Why NUL: PostgreSQL's TEXT cannot hold it, so any lookup or filter carrying one fails inside
//! the database and would surface as a 500 on every route that takes an id or a filter. No id
//! billmirror or Stripe makes contains one, so a path with it names nothing (404) and a filter
//! with it is a client mistake (422).
//!
//! Why the size limits: actix's HTTP/1 codec refuses heads over 128 KiB itself, with an empty
//! body the app never sees. Refusing well below that here answers nearly every oversized request
//! in our JSON shape (docs/API.md says which cases remain).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::ResponseError;
use serde_json::json;

use super::error::ApiError;

/// Longest path and query accepted; longer is 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header block accepted (names, values and separators); larger is 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

pub async fn refuse_hostile(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    match refusal(&req) {
        Some(error) => Ok(req
            .into_response(error.error_response())
            .map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

fn refusal(req: &ServiceRequest) -> Option<ApiError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("The URI is {uri_len} bytes long; at most {MAX_URI_BYTES} are accepted."),
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "The headers take {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted."
            ),
        ));
    }
    if has_nul(req.uri().path()) {
        return Some(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Nothing has that id: ids never contain a NUL character (%00).",
        ));
    }
    let query = req.query_string();
    if has_nul(query) {
        let field = query
            .split('&')
            .find(|pair| has_nul(pair))
            .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
            .unwrap_or_default()
            .to_owned();
        return Some(
            ApiError::unprocessable(
                "invalid_parameter",
                format!("The query parameter `{field}` contains a NUL character (%00)."),
            )
            .with_details(json!({ "field": field })),
        );
    }
    None
}

/// Whether percent-encoded text decodes to a NUL (the raw byte cannot occur: the HTTP parser
/// refuses it in a request line).
fn has_nul(encoded: &str) -> bool {
    encoded.contains("%00")
}
