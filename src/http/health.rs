//! Liveness, readiness and metrics: the routes a process supervisor and Prometheus call.

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::AppState;
use crate::domain::states::EventStatus;
use crate::storage::events;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .db
        .check_ready()
        .await
        .map_err(ApiError::unavailable)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ready"))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // The inbox by status, read at scrape time; a database outage leaves the last values.
    match state.db.run(events::count_by_status).await {
        Ok(counts) => {
            for status in EventStatus::ALL {
                let count = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("webhook_events", "status" => status.as_str()).set(count as f64);
            }
        }
        Err(e) => tracing::warn!("cannot count webhook events for /metrics: {e}"),
    }
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
