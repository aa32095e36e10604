//! The staff web UI and the helpdesk sidebar: server-rendered HTML (askama templates in
//! `templates/`, checked at compile time), one stylesheet and one script served from the binary.
//! Pages call the same services as the JSON API; they add sessions, CSRF tokens and role checks
//! for people in browsers.

mod assets;
mod audit;
mod connections;
mod context;
pub mod csp;
mod customers;
mod error;
mod events;
pub mod form;
mod home;
mod invoice_form;
mod invoices;
mod login;
pub mod oauth;
mod session;
mod sidebar;
mod users;
pub mod view;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;

pub use error::WebError;
pub use session::SESSION_COOKIE;

/// Every page route. Each handler checks the role itself (`require`), so a role that does not see
/// a button cannot post its form either.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{file}", web::get().to(assets::serve))
        .route("/login", web::get().to(login::form))
        .route("/login", web::post().to(login::submit))
        .route("/logout", web::post().to(login::logout))
        .route(
            "/logout/everywhere",
            web::post().to(login::logout_everywhere),
        )
        .route("/", web::get().to(home::page))
        .route("/connections/oauth/start", web::get().to(oauth::start))
        .route(
            "/connections/oauth/callback",
            web::get().to(oauth::callback),
        )
        .route("/connections", web::get().to(connections::list))
        .route("/connections/new", web::get().to(connections::connect_form))
        .route(
            "/connections/new",
            web::post().to(connections::connect_submit),
        )
        .route("/connections/{id}", web::get().to(connections::detail))
        .route(
            "/connections/{id}/validate",
            web::post().to(connections::validate),
        )
        .route(
            "/connections/{id}/webhook-endpoint",
            web::post().to(connections::register_endpoint),
        )
        .route(
            "/connections/{id}/webhook-secrets",
            web::post().to(connections::add_secret),
        )
        .route(
            "/connections/{id}/webhook-secrets/{secret_id}/retire",
            web::post().to(connections::retire_secret),
        )
        .route(
            "/connections/{id}/disconnect",
            web::get().to(connections::confirm_disconnect),
        )
        .route(
            "/connections/{id}/disconnect",
            web::post().to(connections::disconnect),
        )
        .route("/customers", web::get().to(customers::page))
        .route("/customers/refresh", web::post().to(customers::refresh))
        .route("/sidebar", web::get().to(sidebar::page))
        .route("/invoices", web::get().to(invoices::list))
        .route("/invoices", web::post().to(invoices::create))
        .route("/invoices/new", web::get().to(invoices::new_form))
        .route("/invoices/{id}", web::get().to(invoices::show))
        .route("/invoices/{id}/void", web::post().to(invoices::void))
        .route("/invoices/{id}/retry", web::post().to(invoices::retry))
        .route("/events", web::get().to(events::list))
        .route("/events/{id}", web::get().to(events::show))
        .route("/events/{id}/replay", web::post().to(events::replay))
        .route("/audit", web::get().to(audit::page))
        .route(
            "/users/sidebar-keys",
            web::post().to(users::create_sidebar_key),
        )
        .route(
            "/users/sidebar-keys/{id}/revoke",
            web::post().to(users::revoke_sidebar_key),
        )
        .route("/users/tokens", web::post().to(users::create_token))
        .route(
            "/users/tokens/{id}/revoke",
            web::post().to(users::revoke_token),
        )
        .route("/users", web::get().to(users::page))
        .route("/users", web::post().to(users::create))
        .route("/users/{id}/disable", web::post().to(users::disable))
        .route("/users/{id}/enable", web::post().to(users::enable));
}

/// Whether an unknown `path` is answered with the HTML error page (a person followed a link)
/// rather than the JSON error shape (a program called `/api`, or Stripe or Slack a webhook).
pub fn is_for_people(path: &str) -> bool {
    const FOR_PROGRAMS: [&str; 3] = ["/api", "/webhooks", "/slack"];
    !FOR_PROGRAMS.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Refuses a person whose role is below `role`, whatever page or form they reached.
pub fn require(
    staff: &crate::people::sessions::Staff,
    role: crate::domain::Role,
) -> Result<(), WebError> {
    if staff.may(role) {
        Ok(())
    } else {
        tracing::warn!(user = %staff.email, role = %staff.role, needed = %role, "refused a page to a role below it");
        Err(WebError::Forbidden(role))
    }
}

/// Renders a template as an HTML answer with `status`.
/// A page showing why what was asked was refused (a bad filter, a form's error) answers 422, so
/// scripts and tests see the refusal; otherwise 200.
pub fn refused_or_ok(refused: bool) -> StatusCode {
    if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    }
}

pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "a template failed to render");
            HttpResponse::InternalServerError()
                .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
                .body("The page could not be shown.")
        }
    }
}

pub fn ok(page: &impl Template) -> Result<HttpResponse, WebError> {
    Ok(html(StatusCode::OK, page))
}

/// After a form: go to `to` (POST-redirect-GET), so reloading does not post again.
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::is_for_people;

    #[test]
    fn unknown_paths_for_programs_keep_the_json_answer() {
        for path in [
            "/api",
            "/api/nothing",
            "/webhooks/stripe/x/y",
            "/slack",
            "/slack/x",
        ] {
            assert!(!is_for_people(path), "{path}");
        }
        for path in [
            "/",
            "/nothing",
            "/connections/x/y",
            "/apis",
            "/api-docs",
            "/webhooksx",
        ] {
            assert!(is_for_people(path), "{path}");
        }
    }
}
