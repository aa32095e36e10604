//! `/connections` (ops, as `/api/connections`): the connected Stripe accounts with a health
//! badge, *Connect Stripe* (`connect`), and each connection's page: its webhook URL and endpoint,
//! signing secrets, last key report, a day of webhook traffic and *Disconnect* after a step that
//! shows what keeps running in Stripe. Every action calls the same `Connections` service as the
//! JSON API; this module only turns its answers into pages.

mod chart;
mod connect;
mod health;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::form::Posted;
use super::view::{role_for, Nav, When};
use super::{require, WebError};
use crate::connections::{ConnectionError, ConnectionView};
use crate::domain::states::{ConnectionOrigin, ConnectionStatus, SecretStatus};
use crate::domain::Secret;
use crate::http::AppState;
use crate::people::sessions::Staff;
use crate::storage::connections::Affected;

pub use connect::{form as connect_form, submit as connect_submit};
use health::{health, Health, ReportView};

/// The role every connections page and form needs: the one `/api/connections` needs.
fn role() -> crate::domain::Role {
    role_for("/connections")
}

/// Connections are few; the page lists this many at most.
const LIST_LIMIT: i64 = 500;

/// A row of the list.
pub struct Listed {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub account: Option<String>,
    pub from_env: bool,
    pub health: Health,
    pub last_event: Option<When>,
    pub disconnected_at: Option<When>,
}

#[derive(Template)]
#[template(path = "connections.html")]
struct ListPage {
    nav: Nav,
    active: Vec<Listed>,
    disconnected: Vec<Listed>,
    notice: Option<String>,
    /// Stripe OAuth (issue 18) renders its panel here: pre-rendered HTML from its own askama
    /// template (escaped there), shown with `|safe`: `web::oauth::panel`.
    oauth_panel: Option<String>,
}

async fn list_page(
    state: &AppState,
    staff: &Staff,
    notice: Option<String>,
    oauth: &super::oauth::PanelQuery,
) -> Result<HttpResponse, WebError> {
    let views = state
        .connections
        .list(None, LIST_LIMIT)
        .await
        .map_err(internal)?;
    let (active, disconnected): (Vec<Listed>, Vec<Listed>) = views
        .iter()
        .map(|v| Listed {
            id: v.id.clone(),
            name: v.name.clone(),
            mode: v.mode.clone(),
            account: v.stripe_account_id.clone(),
            from_env: v.origin == ConnectionOrigin::Env,
            health: health(v),
            last_event: When::opt(v.webhook_health.last_event_at),
            disconnected_at: When::opt(v.disconnected_at),
        })
        .partition(|l| l.disconnected_at.is_none());
    super::ok(&ListPage {
        nav: Nav::new(staff, "/connections"),
        active,
        disconnected,
        notice,
        oauth_panel: Some(super::oauth::panel(
            state.connections.oauth_settings(),
            staff,
            oauth,
        )),
    })
}

pub async fn list(
    state: web::Data<AppState>,
    staff: Staff,
    req: HttpRequest,
) -> Result<HttpResponse, WebError> {
    require(&staff, role())?;
    let oauth = super::oauth::PanelQuery::read(req.query_string());
    list_page(&state, &staff, None, &oauth).await
}

/// A signing secret as the page lists it.
pub struct SecretRow {
    pub id: String,
    pub hint: String,
    pub active: bool,
    pub added: When,
    pub retired: Option<When>,
    pub last_signed: Option<When>,
}

#[derive(Template)]
#[template(path = "connection.html")]
struct DetailPage {
    nav: Nav,
    c: ConnectionView,
    health: Health,
    /// The API may change its keys and secrets (not the environment's, not a disconnected one,
    /// not one made with "Connect with Stripe").
    changeable: bool,
    /// Disconnect is offered: any active connection but the environment's (a Connect one is
    /// deauthorized in Stripe as it goes).
    disconnectable: bool,
    from_env: bool,
    /// Made with "Connect with Stripe": read-only, its events come through the Connect endpoint.
    oauth: bool,
    active: bool,
    secrets: Vec<SecretRow>,
    report: Option<ReportView>,
    chart: chart::Chart,
    created: When,
    last_event: Option<When>,
    disconnected_at: Option<When>,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// The sentence after an action, by the code its redirect carries (never text from the URL).
fn notice(done: &str) -> Option<&'static str> {
    Some(match done {
        "saved" => "Connected. If Stripe does not send this account's events here yet, register the webhook endpoint below.",
        "validated" => "The key report ran again; its result is below.",
        "endpoint_created" => "The webhook endpoint was created in Stripe and its signing secret kept.",
        "endpoint_updated" => "The webhook endpoint was already in Stripe; it now sends every event billmirror maps.",
        "secret_added" => "The signing secret was added; every active secret verifies until you retire the old one.",
        "secret_retired" => "The signing secret was retired; deliveries signed with it are refused from now on.",
        _ => return None,
    })
}

async fn detail_page(
    state: &AppState,
    staff: &Staff,
    id: &str,
    notice: Option<&'static str>,
    error: Option<(StatusCode, String)>,
) -> Result<HttpResponse, WebError> {
    let c = state.connections.view(id).await.map_err(internal)?;
    let hours = state.connections.activity(id).await.map_err(internal)?;
    let active = c.status == ConnectionStatus::Active;
    let from_env = c.origin == ConnectionOrigin::Env;
    let oauth = c.auth != crate::domain::states::ConnectionAuth::Key;
    let page = DetailPage {
        nav: Nav::new(staff, "/connections"),
        health: health(&c),
        changeable: active && !from_env && !oauth,
        disconnectable: active && !from_env,
        from_env,
        oauth,
        active,
        secrets: c
            .webhook_secrets
            .iter()
            .map(|s| SecretRow {
                id: s.id.clone(),
                hint: s.secret.clone(),
                active: s.status == SecretStatus::Active,
                added: When::new(s.created_at),
                retired: When::opt(s.retired_at),
                last_signed: When::opt(s.last_signed_event_at),
            })
            .collect(),
        report: c
            .last_report
            .as_ref()
            .and_then(|r| ReportView::from_json(r, When::opt(c.last_report_at))),
        chart: chart::chart(&hours),
        created: When::new(c.created_at),
        last_event: When::opt(c.webhook_health.last_event_at),
        disconnected_at: When::opt(c.disconnected_at),
        notice,
        error: error.as_ref().map(|(_, e)| e.clone()),
        c,
    };
    Ok(super::html(
        error.map_or(StatusCode::OK, |(status, _)| status),
        &page,
    ))
}

pub async fn detail(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    require(&staff, role())?;
    let done = super::form::query_values(&req, "done");
    let shown = done.first().and_then(|d| notice(d));
    detail_page(&state, &staff, &id, shown, None).await
}

/// A connection's page after an action: back to it with a notice when it worked, or with the
/// sentence saying why not.
async fn after(
    state: &AppState,
    staff: &Staff,
    id: &str,
    outcome: Result<&'static str, ConnectionError>,
) -> Result<HttpResponse, WebError> {
    match outcome {
        Ok(done) => Ok(super::see_other(&format!("/connections/{id}?done={done}"))),
        Err(e) => {
            let problem = sentence(e)?;
            detail_page(state, staff, id, None, Some(problem)).await
        }
    }
}

pub async fn validate(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, role())?;
    let outcome = state
        .connections
        .validate(&id, &staff.email)
        .await
        .map(|_| "validated");
    after(&state, &staff, &id, outcome).await
}

pub async fn register_endpoint(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, role())?;
    let outcome = state
        .connections
        .register_webhook_endpoint(&id, &staff.email)
        .await
        .map(|(_, outcome)| {
            if outcome == "created" {
                "endpoint_created"
            } else {
                "endpoint_updated"
            }
        });
    after(&state, &staff, &id, outcome).await
}

pub async fn add_secret(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let Posted { staff, form } = posted;
    require(&staff, role())?;
    let outcome = match form.raw("secret") {
        None => Err(ConnectionError::Invalid(
            "Paste the whsec_ signing secret to add.".into(),
        )),
        Some(secret) => state
            .connections
            .add_webhook_secret(&id, Secret::new(secret), &staff.email)
            .await
            .map(|_| "secret_added"),
    };
    after(&state, &staff, &id, outcome).await
}

pub async fn retire_secret(
    state: web::Data<AppState>,
    posted: Posted,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, role())?;
    let (id, secret_id) = path.into_inner();
    let outcome = state
        .connections
        .retire_webhook_secret(&id, &secret_id, &staff.email)
        .await
        .map(|_| "secret_retired");
    after(&state, &staff, &id, outcome).await
}

#[derive(Template)]
#[template(path = "connection_disconnect.html")]
struct DisconnectPage {
    nav: Nav,
    c: ConnectionView,
    impact: Affected,
}

/// The step before *Disconnect*: what keeps running in Stripe, then the button that does it.
pub async fn confirm_disconnect(
    state: web::Data<AppState>,
    staff: Staff,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    require(&staff, role())?;
    match state.connections.impact(&id).await {
        Ok(impact) => {
            let c = state.connections.view(&id).await.map_err(internal)?;
            super::ok(&DisconnectPage {
                nav: Nav::new(&staff, "/connections"),
                c,
                impact,
            })
        }
        Err(e) => {
            let problem = sentence(e)?;
            detail_page(&state, &staff, &id, None, Some(problem)).await
        }
    }
}

pub async fn disconnect(
    state: web::Data<AppState>,
    posted: Posted,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    require(&staff, role())?;
    match state.connections.disconnect(&id, &staff.email).await {
        Ok(affected) => {
            let said = crate::connections::disconnect_message(&affected);
            list_page(&state, &staff, Some(said), &Default::default()).await
        }
        Err(e) => {
            let problem = sentence(e)?;
            detail_page(&state, &staff, &id, None, Some(problem)).await
        }
    }
}

/// What a person reads when the service refuses, and the answer's status; a missing connection
/// is the not-found page, a broken database the error page.
fn sentence(error: ConnectionError) -> Result<(StatusCode, String), WebError> {
    Ok(match error {
        ConnectionError::NotFound => {
            return Err(WebError::NotFound("There is no such connection".into()))
        }
        ConnectionError::Unusable(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The keys cannot be used; each failing check says why.".into(),
        ),
        ConnectionError::Invalid(m) | ConnectionError::UnreachableUrl(m) => {
            (StatusCode::UNPROCESSABLE_ENTITY, m)
        }
        ConnectionError::Conflict(m) => (StatusCode::CONFLICT, m),
        ConnectionError::Stripe(e) if e.status() == Some(403) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("The connection's key may not do this: {e}"),
        ),
        ConnectionError::Stripe(e) if e.is_unavailable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}. Try again shortly."),
        ),
        ConnectionError::Stripe(e) => (StatusCode::BAD_GATEWAY, format!("Stripe refused: {e}")),
        ConnectionError::Storage(e) => return Err(e.into()),
        ConnectionError::Vault(e) => return Err(WebError::Internal(e.to_string())),
        ConnectionError::Revoked => (
            StatusCode::CONFLICT,
            "Stripe revoked this connection's authorisation: it no longer syncs. Connect the \
             account with Stripe again."
                .into(),
        ),
    })
}

/// For reads: only a missing connection or a broken store can fail them.
fn internal(error: ConnectionError) -> WebError {
    match sentence(error) {
        Err(e) => e,
        Ok((_, message)) => WebError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_need_the_role_the_api_needs() {
        let api: Vec<_> = crate::http::routes::api_routes()
            .into_iter()
            .filter(|r| r.path.starts_with("/api/connections"))
            .collect();
        assert!(api.len() >= 8, "the connections API moved");
        for route in api {
            assert_eq!(route.role, role(), "{} {}", route.method, route.path);
        }
    }

    #[test]
    fn notices_come_from_codes_never_from_the_url() {
        assert!(notice("saved").unwrap().starts_with("Connected."));
        assert_eq!(notice("<script>"), None);
    }
}
