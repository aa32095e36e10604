//! Liveness, readiness and metrics: the routes a process supervisor and Prometheus call.

use actix_web::{web, HttpResponse};

use super::error::ApiError;
use super::AppState;

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
    crate::telemetry::gauges::refresh(&state.db).await;
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
