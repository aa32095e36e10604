//! Counts every request by route pattern, method and status, records its latency, and logs it.
//! The log line carries the route pattern, never the query string or headers, which may hold
//! emails or tokens.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::telemetry::catalog;

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // The pattern (`/api/tokens/{id}`), not the path, so ids do not explode the label set.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let result = next.call(req).await;
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    let labels = [
        ("route", route),
        ("method", method),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!(catalog::HTTP_REQUESTS, &labels).increment(1);
    let elapsed = started.elapsed();
    metrics::histogram!(catalog::HTTP_REQUEST_DURATION, &labels[..2]).record(elapsed.as_secs_f64());
    let [(_, route), (_, method), (_, status)] = &labels;
    tracing::debug!(%method, %route, %status, elapsed_ms = elapsed.as_millis() as u64, "request");
    result
}
