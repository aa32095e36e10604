//! `/api/jobs`: the background job queue for ops: what is waiting, what stopped and why, and a
//! way to run a failed or dead job again.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::Principal;
use crate::jobs::{self, JobKind, JobState, RetryError};
use crate::storage::jobs::{self as store, JobRow};
use crate::storage::tokens::audit;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A job kind, e.g. `push_invoice`.
    kind: Option<String>,
    /// `pending`, `done`, `failed` or `dead`.
    status: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

/// A filter value that must be one word of a state enum.
fn parsed<T: std::str::FromStr<Err = String>>(
    name: &'static str,
    value: Option<String>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse()
                .map_err(|e| ApiError::unprocessable("invalid_filter", format!("{name}: {e}.")))
        })
        .transpose()
}

/// Lists background jobs.
#[utoipa::path(get, path = "/api/jobs", params(ListQuery), responses(
    (status = 200, description = "A page of jobs.", body = Page<JobRow>),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
    (status = 422, description = "A bad filter value (`invalid_filter`) or limit.", body = ErrorBody),
))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = PageQuery {
        limit: query.limit,
        after: None,
    }
    .limit()?;
    let kind: Option<JobKind> = parsed("kind", query.kind)?;
    let status: Option<JobState> = parsed("status", query.status)?;
    let after = query.after;
    let rows = state
        .db
        .run(move |conn| store::list(conn, kind, status, after.as_deref(), limit + 1))
        .await?;
    Ok(HttpResponse::Ok().json(Page::from_rows(rows, limit, |j| j.id.clone())))
}

/// One job.
#[utoipa::path(get, path = "/api/jobs/{id}", params(("id" = String, Path, description = "The job's id.")), responses(
    (status = 200, description = "The job.", body = JobRow),
    (status = 404, description = "No job has that id.", body = ErrorBody),
))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let job = state
        .db
        .run(move |conn| store::find(conn, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    Ok(HttpResponse::Ok().json(job))
}

/// Runs a failed or dead job again.
#[utoipa::path(post, path = "/api/jobs/{id}/retry", params(("id" = String, Path, description = "The job's id.")), responses(
    (status = 202, description = "Queued again.", body = JobRow),
    (status = 404, description = "No job has that id.", body = ErrorBody),
    (status = 409, description = "The job has not stopped (`job_not_stopped`).", body = ErrorBody),
))]
pub async fn retry(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (id, actor) = (id.into_inner(), principal.name.clone());
    let job = state
        .db
        .run(move |conn| {
            Ok(conn.write_transaction(|conn| {
                let job = jobs::retry(conn, &id)?;
                audit(
                    conn,
                    &actor,
                    "job.retry",
                    &job.id,
                    serde_json::json!({"kind": job.kind, "subject_id": job.subject_id}),
                )?;
                Ok::<_, RetryError>(job)
            }))
        })
        .await?
        .map_err(|e| match e {
            RetryError::NotFound => ApiError::not_found("job"),
            RetryError::NotStopped(_) => ApiError::conflict("job_not_stopped", e.to_string()),
            RetryError::Storage(e) => ApiError::internal(e),
        })?;
    state.jobs.wake(job.kind);
    Ok(HttpResponse::Accepted().json(job))
}
