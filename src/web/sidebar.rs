//! `/sidebar`: the billing context, compact, for an iframe beside a helpdesk conversation.
//!
//! Authorised by the sidebar key in its URL (`?key=bmsb_…`), never by anything the framing page
//! says. The emails come from `?email=` (repeatable), or, without one, from a Chatwoot Dashboard
//! App: the page's script posts `chatwoot-dashboard-app:fetch-info` to its parent, reads the
//! `appContext` message and reloads itself with every email of the contact. The CSP's
//! `frame-ancestors` is `SIDEBAR_FRAME_ANCESTORS`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::context::{self, Context};
use super::form::query_values;
use super::WebError;
use crate::http::AppState;
use crate::people::sidebar_keys;

#[derive(Template)]
#[template(path = "sidebar.html")]
struct SidebarPage {
    key: String,
    ctx: Option<Context>,
    /// Why nothing is shown (no key, a bad email), in plain words.
    problem: Option<String>,
    /// No email yet: the script asks the helpdesk for the contact.
    waiting: bool,
}

fn answer(state: &AppState, status: StatusCode, page: &SidebarPage) -> HttpResponse {
    let mut response = super::html(status, page);
    let policy = super::csp::policy(&state.config.sidebar_frame_ancestors);
    if let Ok(value) = header::HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    let key = query_values(&req, "key")
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut page = SidebarPage {
        key: key.clone(),
        ctx: None,
        problem: None,
        waiting: false,
    };
    let lookup = key.clone();
    let valid = state
        .db
        .run(move |conn| sidebar_keys::check(conn, &lookup))
        .await?;
    if !valid {
        page.key.clear();
        page.problem = Some(
            "This sidebar's key is missing, unknown or revoked: an admin makes a new sidebar URL \
             under Users and tokens."
                .into(),
        );
        return Ok(answer(&state, StatusCode::UNAUTHORIZED, &page));
    }
    let typed = query_values(&req, "email");
    match context::parse_emails(typed.iter().map(String::as_str)) {
        Err(problem) => {
            page.problem = Some(format!("Cannot look up: {problem}."));
            return Ok(answer(&state, StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
        Ok(emails) if emails.is_empty() => {
            if query_values(&req, "none").is_empty() {
                page.waiting = true;
            } else {
                page.problem = Some(
                    "The conversation's contact has no email, so no customer can be looked up."
                        .into(),
                );
            }
        }
        Ok(emails) => page.ctx = Some(context::load(&state, emails).await?),
    }
    Ok(answer(&state, StatusCode::OK, &page))
}
