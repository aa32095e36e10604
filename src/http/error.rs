//! The one error type handlers return, and how it becomes a JSON answer. Client mistakes get a
//! 4xx with a stable code and a sentence to act on; our own faults get a fixed 500/503 body while
//! the cause goes to the log, once, here.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;

use crate::storage::StorageError;

/// What a 503 asks the client to wait before trying again.
const RETRY_AFTER_SECS: u32 = 5;

/// Every error answer's body, as `/openapi.json` shows it: `{"error": {"code", "message",
/// "details"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorFields<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorFields<'a> {
    /// Stable: clients branch on it (`not_found`, `invalid_json`, `forbidden`…).
    pub code: &'a str,
    /// A sentence for a person.
    pub message: &'a str,
    /// More about it when there is more, e.g. `{"field": "lines[0].quantity"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a Value>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Close the connection after this answer: what is left of the request, if it ever comes,
    /// is not worth reading, and the client must not send its next request behind it.
    pub close_connection: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            close_connection: false,
        }
    }

    pub fn closing(mut self) -> Self {
        self.close_connection = true;
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("No {what} has that id."),
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send a valid API token as `Authorization: Bearer <token>`.",
        )
    }

    /// Our own fault: the cause is logged, the client sees a fixed message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side.",
        )
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "database unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service cannot reach its database right now; try again shortly.",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut answer = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Tells Stripe and other clients the fault is passing: try again shortly.
            answer.insert_header((actix_web::http::header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        if self.close_connection {
            answer.force_close();
        }
        answer.json(ErrorBody {
            error: ErrorFields {
                code: self.code,
                message: &self.message,
                details: self.details.as_ref(),
            },
        })
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable(_) => ApiError::unavailable(error),
            _ => ApiError::internal(error),
        }
    }
}

/// Turns actix's own extractor failures (bad JSON, bad query, bad path) into our error format.
pub fn extractor_error(code: &'static str) -> impl Fn(String) -> actix_web::Error + Clone {
    move |problem| ApiError::bad_request(code, problem).into()
}
