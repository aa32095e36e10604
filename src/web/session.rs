//! The session cookie and the [`Staff`] extractor: a page that takes `Staff` is shown only to a
//! signed-in person; the others are sent to `/login` and brought back afterwards.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::error::WebError;
use crate::http::AppState;
use crate::people::sessions::{self, Staff};

pub const SESSION_COOKIE: &str = "bm_session";
/// Holds the sign-in form's CSRF token before there is a session (double submit).
pub const LOGIN_COOKIE: &str = "bm_login";

/// A cookie only our pages send back: HttpOnly, SameSite=Lax, Secure when billmirror is served
/// over https (`PUBLIC_URL`), for the whole site, ending with the browser.
pub fn cookie(name: &'static str, value: String, state: &AppState) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.public_url.starts_with("https://"))
        .finish()
}

/// A cookie that tells the browser to forget `name`.
pub fn removal(name: &'static str, state: &AppState) -> Cookie<'static> {
    let mut gone = cookie(name, String::new(), state);
    gone.make_removal();
    gone
}

pub fn state(req: &HttpRequest) -> Result<web::Data<AppState>, WebError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| WebError::Internal("AppState is not registered".into()))
}

/// The path and query to come back to after signing in.
fn here(req: &HttpRequest) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
}

impl FromRequest for Staff {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Staff, WebError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let sign_in = || WebError::SignIn { next: here(&req) };
            let id = req
                .cookie(SESSION_COOKIE)
                .map(|c| c.value().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(sign_in)?;
            let state = state(&req)?;
            state
                .db
                .run(move |conn| sessions::authenticate(conn, &id))
                .await?
                .ok_or_else(sign_in)
        })
    }
}

/// Where to go after signing in: only a path on this site (never `//elsewhere` or a URL).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.starts_with("/login")
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/invoices?status=open")),
            "/invoices?status=open"
        );
        assert_eq!(safe_next(Some("//evil.example.com")), "/");
        assert_eq!(safe_next(Some("https://evil.example.com")), "/");
        assert_eq!(safe_next(Some("/\\evil.example.com")), "/");
        assert_eq!(safe_next(Some("/login")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
