//! `/events` (ops): the webhook inbox as `/api/events` reads it: counts by status, how far the
//! apply worker lags, the list with its filters, an event's payload, and *Replay*
//! (`webhook::replay`, the same function the API calls).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::form::query_first;
use super::form::{encode, Posted};
use super::invoices::ConnectionChoice;
use super::view::{role_for, Nav, When};
use super::{require, WebError};
use crate::domain::states::{EventStatus, JobKind};
use crate::domain::time;
use crate::http::AppState;
use crate::people::sessions::Staff;
use crate::storage::events::{self, EventFilter, EventRow};
use crate::webhook::replay::{self, ReplayError};

const PAGE_SIZE: i64 = 50;

pub struct EventView {
    pub id: String,
    pub stripe_event_id: String,
    pub connection_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: When,
    pub created: When,
    pub applied_at: Option<When>,
    pub next_attempt_at: Option<When>,
    pub signed_with: Option<String>,
    pub api_version: Option<String>,
}

impl From<&EventRow> for EventView {
    fn from(row: &EventRow) -> Self {
        EventView {
            id: row.id.clone(),
            stripe_event_id: row.stripe_event_id.clone(),
            connection_id: row.connection_id.clone(),
            event_type: row.event_type.clone(),
            object_id: row.object_id.clone(),
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error.clone(),
            received_at: When::new(row.received_at),
            created: When::new(row.stripe_created),
            applied_at: When::opt(row.applied_at),
            next_attempt_at: EventStatus::DUE
                .contains(&row.status)
                .then(|| When::new(row.next_attempt_at)),
            signed_with: row.signed_with.clone(),
            api_version: row.api_version.clone(),
        }
    }
}

/// How long the oldest event still to apply has waited, in words.
pub fn lag_words(seconds: i64) -> String {
    match seconds {
        s if s < 1 => "under a second".into(),
        s if s < 120 => format!("{s} seconds"),
        s if s < 7200 => format!("{} minutes", s / 60),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[derive(Default)]
pub struct Filters {
    pub status: String,
    pub event_type: String,
    pub connection_id: String,
}

impl Filters {
    fn query(&self) -> String {
        [
            ("status", &self.status),
            ("type", &self.event_type),
            ("connection_id", &self.connection_id),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}&", encode(v)))
        .collect()
    }
}

#[derive(Template)]
#[template(path = "events.html")]
struct ListPage {
    nav: Nav,
    counts: Vec<(EventStatus, i64)>,
    /// `None` when nothing waits to be applied.
    lag: Option<String>,
    filters: Filters,
    statuses: &'static [EventStatus],
    connections: Vec<ConnectionChoice>,
    events: Vec<EventView>,
    next: Option<String>,
    first_page: Option<String>,
    error: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
) -> Result<HttpResponse, WebError> {
    require(&staff, role_for("/events"))?;
    let filters = Filters {
        status: query_first(&req, "status"),
        event_type: query_first(&req, "type"),
        connection_id: query_first(&req, "connection_id"),
    };
    let after = query_first(&req, "after");
    let snapshot = state.db.run(crate::storage::metrics::snapshot).await?;
    let connections = state
        .db
        .run(|conn| crate::storage::connections::list(conn, None, 500))
        .await?
        .into_iter()
        .map(|c| ConnectionChoice {
            label: format!("{} ({})", c.name, c.id),
            id: c.id,
        })
        .collect();
    let mut page = ListPage {
        nav: Nav::new(&staff, "/events"),
        counts: EventStatus::ALL
            .iter()
            .map(|s| {
                let n = snapshot
                    .events_by_status
                    .iter()
                    .find(|(status, _)| status == s)
                    .map_or(0, |(_, n)| *n);
                (*s, n)
            })
            .collect(),
        lag: snapshot
            .oldest_unapplied
            .map(|at| lag_words((time::now() - at).num_seconds())),
        statuses: EventStatus::ALL,
        connections,
        events: Vec::new(),
        next: None,
        first_page: (!after.is_empty()).then(|| format!("/events?{}", filters.query())),
        error: None,
        filters,
    };
    let status = (!page.filters.status.is_empty())
        .then(|| page.filters.status.parse::<EventStatus>())
        .transpose()
        .map_err(|e| format!("The status filter: {e}."));
    let cursor = crate::http::pagination::cursor((!after.is_empty()).then_some(after), "ev", &[])
        .map_err(|_| {
            "The page link is not one from this list: start again from the first page.".to_owned()
        });
    match (status, cursor) {
        (Err(problem), _) | (_, Err(problem)) => page.error = Some(problem),
        (Ok(status), Ok(after)) => {
            let filter = EventFilter {
                status,
                event_type: (!page.filters.event_type.is_empty())
                    .then(|| page.filters.event_type.clone()),
                object_id: None,
                connection_id: (!page.filters.connection_id.is_empty())
                    .then(|| page.filters.connection_id.clone()),
                after,
            };
            let rows = state
                .db
                .run(move |conn| events::list(conn, &filter, PAGE_SIZE + 1))
                .await?;
            let more = rows.len() as i64 > PAGE_SIZE;
            page.events = rows
                .iter()
                .take(PAGE_SIZE as usize)
                .map(EventView::from)
                .collect();
            if more {
                page.next = page
                    .events
                    .last()
                    .map(|last| format!("/events?{}after={}", page.filters.query(), last.id));
            }
        }
    }
    let code = super::refused_or_ok(page.error.is_some());
    Ok(super::html(code, &page))
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    nav: Nav,
    event: EventView,
    payload: String,
    may_replay: bool,
    notice: Option<&'static str>,
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    require(&staff, role_for("/events"))?;
    let id = id.into_inner();
    let row = state
        .db
        .run(move |conn| events::find(conn, &id))
        .await?
        .ok_or_else(|| WebError::NotFound("There is no event with that id".into()))?;
    // Stored as Stripe sent it; shown indented (the template escapes it).
    let payload = serde_json::from_str::<serde_json::Value>(&row.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| row.payload.clone());
    let page = EventPage {
        nav: Nav::new(&staff, "/events"),
        may_replay: replay::worth_offering(row.status, &row.event_type),
        event: EventView::from(&row),
        payload,
        notice: (query_first(&req, "done") == "replayed")
            .then_some("Scheduled again: the apply worker takes it in a moment."),
    };
    super::ok(&page)
}

pub async fn replay(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, role_for("/events"))?;
    let (id, actor) = (id.into_inner(), staff.email.clone());
    let row = state
        .db
        .run(move |conn| Ok(replay::replay(conn, &id, &actor)))
        .await?
        .map_err(|e| match e {
            ReplayError::NotFound => WebError::NotFound("There is no event with that id".into()),
            ReplayError::NotMapped(_) => WebError::BadRequest(e.to_string()),
            ReplayError::Storage(e) => e.into(),
        })?;
    state.inbox.stored.notify_one();
    state.jobs.wake(JobKind::FetchThinEvent);
    Ok(super::see_other(&format!(
        "/events/{}?done=replayed",
        row.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_reads_in_the_unit_that_fits() {
        assert_eq!(lag_words(0), "under a second");
        assert_eq!(lag_words(45), "45 seconds");
        assert_eq!(lag_words(600), "10 minutes");
        assert_eq!(lag_words(3 * 3600), "3 hours");
        assert_eq!(lag_words(5 * 86_400), "5 days");
    }
}
