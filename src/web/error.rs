//! What a page answers when it cannot show itself: a redirect to sign in, or a small HTML page
//! saying what went wrong (never a JSON body: a person reads it).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::domain::Role;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No live session: go to `/login`, then come back to `next`.
    #[error("sign in first")]
    SignIn { next: String },
    #[error("this needs the {0} role")]
    Forbidden(Role),
    #[error("the form expired or did not come from this site; reload the page and try again")]
    Csrf,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("something went wrong on our side")]
    Internal(String),
}

impl From<StorageError> for WebError {
    fn from(e: StorageError) -> Self {
        WebError::Internal(e.to_string())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::SignIn { .. } => StatusCode::SEE_OTHER,
            WebError::Forbidden(_) | WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let WebError::SignIn { next } = self {
            let target = format!("/login?next={}", super::form::encode(next));
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, target))
                .finish();
        }
        if let WebError::Internal(detail) = self {
            tracing::error!(error = %detail, "a page failed");
        }
        let title = match self {
            WebError::Forbidden(_) => "Not allowed",
            WebError::Csrf => "Form refused",
            WebError::NotFound(_) => "Not found",
            WebError::BadRequest(_) => "Cannot do that",
            _ => "Error",
        };
        let page = ErrorPage {
            title,
            message: self.to_string(),
        };
        super::html(self.status_code(), &page)
    }
}
