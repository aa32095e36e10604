//! `/api/events`: the webhook inbox for ops: list, inspect, replay.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::Principal;
use crate::domain::states::{EventStatus, JobKind};
use crate::domain::time;
use crate::storage::events::{self, EventFilter, EventRow};
use crate::webhook::replay::{self, ReplayError};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `applied`, `ignored`, `retrying` or `dead`.
    status: Option<String>,
    /// A Stripe event type, e.g. `invoice.paid`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The Stripe object the event is about.
    object_id: Option<String>,
    /// The connection that received it (`env` for the environment's).
    connection_id: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// An event as listed: what happened to it, not its payload.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Event)]
pub struct Summary {
    id: String,
    stripe_event_id: String,
    connection_id: String,
    #[serde(rename = "type")]
    event_type: String,
    api_version: Option<String>,
    object_id: Option<String>,
    status: EventStatus,
    attempts: i32,
    last_error: Option<String>,
    signed_with: Option<String>,
    created: String,
    received_at: String,
    next_attempt_at: Option<String>,
    applied_at: Option<String>,
}

impl From<&EventRow> for Summary {
    fn from(row: &EventRow) -> Self {
        let due = EventStatus::DUE.contains(&row.status);
        Summary {
            id: row.id.clone(),
            stripe_event_id: row.stripe_event_id.clone(),
            connection_id: row.connection_id.clone(),
            event_type: row.event_type.clone(),
            api_version: row.api_version.clone(),
            object_id: row.object_id.clone(),
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error.clone(),
            signed_with: row.signed_with.clone(),
            created: time::rfc3339(row.stripe_created),
            received_at: time::rfc3339(row.received_at),
            next_attempt_at: due.then(|| time::rfc3339(row.next_attempt_at)),
            applied_at: row.applied_at.map(time::rfc3339),
        }
    }
}

/// Lists the webhook inbox, newest first.
#[utoipa::path(get, path = "/api/events", params(ListQuery), responses(
    (status = 200, description = "A page of events (without payloads).", body = Page<Summary>),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
    (status = 422, description = "A bad filter value or cursor.", body = ErrorBody),
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
    let status = query
        .status
        .map(|s| s.parse::<EventStatus>())
        .transpose()
        .map_err(|e| ApiError::unprocessable("invalid_status", format!("status: {e}.")))?;
    let filter = EventFilter {
        status,
        event_type: query.event_type,
        object_id: query.object_id,
        connection_id: query.connection_id,
        after: super::pagination::cursor(query.after, "ev", &[])?,
    };
    let rows = state
        .db
        .run(move |conn| events::list(conn, &filter, limit + 1))
        .await?;
    let page = Page::from_rows(rows.iter().map(Summary::from).collect(), limit, |s| {
        s.id.clone()
    });
    Ok(HttpResponse::Ok().json(page))
}

/// One event with its payload as Stripe sent it.
#[utoipa::path(get, path = "/api/events/{id}", params(("id" = String, Path, description = "The event's id here (`ev_…`).")), responses(
    (status = 200, description = "The event's summary plus `payload`.", body = Summary),
    (status = 404, description = "No event has that id.", body = ErrorBody),
))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let row = state
        .db
        .run(move |conn| events::find(conn, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    let mut answer = serde_json::to_value(Summary::from(&row)).map_err(ApiError::internal)?;
    // The payload as Stripe sent it; stored verbatim, so it always parses.
    answer["payload"] = serde_json::from_str(&row.payload).unwrap_or(Value::String(row.payload));
    Ok(HttpResponse::Ok().json(answer))
}

/// Applies an event again (e.g. a dead one after a fix).
#[utoipa::path(post, path = "/api/events/{id}/replay", params(("id" = String, Path, description = "The event's id here (`ev_…`).")), responses(
    (status = 202, description = "Scheduled.", body = Summary),
    (status = 404, description = "No event has that id.", body = ErrorBody),
    (status = 409, description = "billmirror does not map this event type (`not_mapped`).", body = ErrorBody),
))]
pub async fn replay(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let actor = principal.name.clone();
    let row = state
        .db
        .run(move |conn| Ok(replay::replay(conn, &id, &actor)))
        .await?
        .map_err(|e| match e {
            ReplayError::NotFound => ApiError::not_found("event"),
            ReplayError::NotMapped(_) => ApiError::conflict("not_mapped", format!("{e}.")),
            ReplayError::Storage(e) => e.into(),
        })?;
    state.inbox.stored.notify_one();
    state.jobs.wake(JobKind::FetchThinEvent);
    Ok(HttpResponse::Accepted().json(Summary::from(&row)))
}
