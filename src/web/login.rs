//! `/login` and `/logout`: signing in with an email and a password, signing out of this browser
//! or of every browser at once.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::form::{tokens_match, Form, Posted, CSRF_FIELD};
use super::session::{cookie, removal, safe_next, LOGIN_COOKIE, SESSION_COOKIE};
use super::WebError;
use crate::domain::ids;
use crate::http::AppState;
use crate::people::sessions::{self, SignInError, Staff};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
}

fn login_page(
    state: &AppState,
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
    status: actix_web::http::StatusCode,
) -> HttpResponse {
    let mut answer = super::html(
        status,
        &LoginPage {
            csrf: csrf.clone(),
            next,
            email,
            error,
        },
    );
    if let Err(e) = answer.add_cookie(&cookie(LOGIN_COOKIE, csrf, state)) {
        tracing::error!(error = %e, "cannot set the sign-in cookie");
    }
    answer
}

fn query_next(req: &HttpRequest) -> Option<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
}

pub async fn form(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    let next = safe_next(query_next(&req).as_deref());
    if Staff::from_request_opt(&req).await.is_some() {
        return Ok(super::see_other(&next));
    }
    let csrf = req
        .cookie(LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 64)
        .unwrap_or_else(|| hex::encode(ids::random_bytes::<32>()));
    Ok(login_page(
        &state,
        csrf,
        next,
        String::new(),
        None,
        actix_web::http::StatusCode::OK,
    ))
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let form = Form::parse(&body);
    let expected = req
        .cookie(LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if !tokens_match(form.get(CSRF_FIELD).unwrap_or(""), &expected) {
        return Err(WebError::Csrf);
    }
    let next = safe_next(form.get("next"));
    let email = form.get("email").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let ip = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    let typed = email.clone();
    let outcome = state
        .db
        .run(move |conn| Ok(sessions::sign_in(conn, &typed, &password, &ip)))
        .await?;
    match outcome {
        Ok(new) => {
            let mut answer = super::see_other(&next);
            let set = answer
                .add_cookie(&cookie(SESSION_COOKIE, new.id, &state))
                .and_then(|()| answer.add_cookie(&removal(LOGIN_COOKIE, &state)));
            if let Err(e) = set {
                return Err(WebError::Internal(format!(
                    "cannot set the session cookie: {e}"
                )));
            }
            Ok(answer)
        }
        Err(SignInError::Storage(e)) => Err(e.into()),
        Err(refused) => {
            let status = match refused {
                SignInError::TooManyFailures { .. } => {
                    actix_web::http::StatusCode::TOO_MANY_REQUESTS
                }
                _ => actix_web::http::StatusCode::UNAUTHORIZED,
            };
            Ok(login_page(
                &state,
                expected,
                next,
                email,
                Some(format!("Not signed in: {refused}.")),
                status,
            ))
        }
    }
}

fn signed_out(state: &AppState) -> Result<HttpResponse, WebError> {
    let mut answer = super::see_other("/login");
    answer
        .add_cookie(&removal(SESSION_COOKIE, state))
        .map_err(|e| WebError::Internal(e.to_string()))?;
    Ok(answer)
}

pub async fn logout(state: web::Data<AppState>, posted: Posted) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    state
        .db
        .run(move |conn| sessions::sign_out(conn, &staff))
        .await?;
    signed_out(&state)
}

pub async fn logout_everywhere(
    state: web::Data<AppState>,
    posted: Posted,
) -> Result<HttpResponse, WebError> {
    let staff = posted.staff;
    state
        .db
        .run(move |conn| sessions::sign_out_everywhere(conn, &staff))
        .await?;
    signed_out(&state)
}

impl Staff {
    /// The signed-in person, if any, without sending anyone to `/login`.
    pub async fn from_request_opt(req: &HttpRequest) -> Option<Staff> {
        use actix_web::FromRequest;
        Staff::from_request(req, &mut actix_web::dev::Payload::None)
            .await
            .ok()
    }
}
