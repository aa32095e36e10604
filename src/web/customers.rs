//! `/customers` (support): a customer's billing context by one or more emails, and *refresh from
//! Stripe*.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::context::{self, Context};
use super::form::{query_values, Posted};
use super::view::{role_for, Nav};
use super::{require, WebError};
use crate::http::AppState;
use crate::people::sessions::Staff;

#[derive(Template)]
#[template(path = "customers.html")]
struct CustomersPage {
    nav: Nav,
    typed: String,
    query: String,
    ctx: Option<Context>,
    error: Option<String>,
    refreshed: bool,
}

/// `email=a&email=b`, to link back to the same lookup.
pub fn email_query(emails: &[String]) -> String {
    emails
        .iter()
        .map(|e| format!("email={}", super::form::encode(e)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn show(
    state: &AppState,
    staff: &Staff,
    typed: Vec<String>,
    refreshed: bool,
) -> Result<HttpResponse, WebError> {
    let joined = typed.join(", ");
    let mut page = CustomersPage {
        nav: Nav::new(staff, "/customers"),
        typed: joined,
        query: String::new(),
        ctx: None,
        error: None,
        refreshed,
    };
    match context::parse_emails(typed.iter().map(String::as_str)) {
        Err(problem) => page.error = Some(problem),
        Ok(emails) if emails.is_empty() => {}
        Ok(emails) => {
            page.query = email_query(&emails);
            page.ctx = Some(context::load(state, emails).await?);
        }
    }
    let status = super::refused_or_ok(page.error.is_some());
    Ok(super::html(status, &page))
}

pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    staff: Staff,
) -> Result<HttpResponse, WebError> {
    require(&staff, role_for("/customers"))?;
    let refreshed = !query_values(&req, "refreshed").is_empty();
    show(&state, &staff, query_values(&req, "email"), refreshed).await
}

pub async fn refresh(state: web::Data<AppState>, posted: Posted) -> Result<HttpResponse, WebError> {
    let Posted { staff, form } = posted;
    require(&staff, role_for("/customers"))?;
    let emails = context::parse_emails(form.all("email")).map_err(WebError::BadRequest)?;
    if emails.is_empty() {
        return Err(WebError::BadRequest("Give at least one email.".into()));
    }
    context::refresh(&state, &emails).await?;
    Ok(super::see_other(&format!(
        "/customers?{}&refreshed=1",
        email_query(&emails)
    )))
}
