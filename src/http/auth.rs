//! The bearer-token check every `/api` route passes before its handler (and before its body is
//! even parsed): 401 for a missing, unknown or revoked token, 403 for too small a role.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use super::error::ApiError;
use super::AppState;
use crate::auth::{self, Principal};
use crate::domain::Role;

pub async fn require_role(
    required: Role,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let token = bearer_token(&req).ok_or_else(ApiError::unauthorized)?;
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("AppState is not registered"))?
        .clone();
    let principal = state
        .db
        .run(move |conn| auth::authenticate(conn, &token))
        .await
        .map_err(ApiError::from)?
        .ok_or_else(ApiError::unauthorized)?;
    if !principal.role.allows(required) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "This needs the {required} role; the token `{}` has {}.",
                principal.name, principal.role
            ),
        )
        .into());
    }
    req.extensions_mut().insert::<Principal>(principal);
    next.call(req).await
}

fn bearer_token(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
