//! Drift reports: `POST /api/connections/{id}/reconcile` starts one as a job, and
//! `GET /api/reconcile-runs/{id}` shows where it stands and what it found.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::extract::{parse_json, Body};
use super::AppState;
use crate::auth::Principal;
use crate::connections::ConnectionError;
use crate::domain::time;
use crate::jobs::JobKind;
use crate::storage::reconcile::{self as store, RunRow};
use crate::storage::tokens::audit;
use crate::sync::reconcile::{self, ReconcileError, Report};

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Feed Stripe's current objects for every difference through the inbox.
    #[serde(default)]
    repair: bool,
}

fn run_json(run: &RunRow) -> Value {
    let report: Report = serde_json::from_str(&run.report).unwrap_or_default();
    json!({
        "id": run.id, "connection_id": run.connection_id, "status": run.status,
        "repair": run.repair, "error": run.error, "differences": report.differences(),
        "done": report.resources.keys().collect::<Vec<_>>(),
        "resources": reconcile::RESOURCES, "report": report,
        "created_at": time::rfc3339(run.created_at), "updated_at": time::rfc3339(run.updated_at),
    })
}

/// Starts a drift report (a job) comparing the ledger with Stripe; an empty body is `{"repair": false}`.
#[utoipa::path(post, path = "/api/connections/{id}/reconcile",
    params(("id" = String, Path, description = "The connection's id.")),
    request_body(content = StartRequest, description = "Optional."),
    responses(
        (status = 202, description = "Started: the run, `status` `queued` (see `GET /api/reconcile-runs/{id}`).", body = serde_json::Value),
        (status = 400, description = "The body is not JSON or has an unknown field (`invalid_json`).", body = ErrorBody),
        (status = 404, description = "No active connection has that id.", body = ErrorBody),
    ))]
pub async fn start(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
    Body(body): Body,
) -> Result<HttpResponse, ApiError> {
    // No body asks for a report without repair.
    let request: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest::default()
    } else {
        parse_json(&body)?
    };
    let repair = request.repair;
    let run = reconcile::start(&state.db, &id, repair)
        .await
        .map_err(|e| match e {
            ReconcileError::Connection(ConnectionError::NotFound) => {
                ApiError::not_found("active connection")
            }
            ReconcileError::Connection(e) => e.into(),
            ReconcileError::Storage(e) => e.into(),
        })?;
    let (actor, run_id, connection) = (
        principal.name.clone(),
        run.id.clone(),
        run.connection_id.clone(),
    );
    state
        .db
        .run(move |conn| {
            audit(
                conn,
                &actor,
                "connection.reconcile",
                &connection,
                json!({"run": run_id, "repair": repair}),
            )
        })
        .await?;
    state.jobs.wake(JobKind::Reconcile);
    Ok(HttpResponse::Accepted().json(run_json(&run)))
}

/// A drift report: where it stands and the differences found.
#[utoipa::path(get, path = "/api/reconcile-runs/{id}",
    params(("id" = String, Path, description = "The run's id.")),
    responses(
        (status = 200, description = "`{id, connection_id, status, repair, error, differences, done, resources, report, created_at, updated_at}`.", body = serde_json::Value),
        (status = 404, description = "No drift report has that id.", body = ErrorBody),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let run = state
        .db
        .run(move |conn| store::find_run(conn, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("drift report"))?;
    Ok(HttpResponse::Ok().json(run_json(&run)))
}
