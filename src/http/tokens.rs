//! `/api/tokens`: admins create, list and revoke API tokens. A token's value appears once, in the
//! answer that creates it.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::{self, Principal, TokenError, TokenInfo};
use crate::domain::Role;
use crate::storage::tokens;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Unique among tokens.
    name: String,
    /// `support`, `finance`, `ops` or `admin`.
    role: String,
}

/// A new token: its value appears here once and never again.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// The bearer token (`bm_…`).
    token: String,
}

/// Creates an API token.
#[utoipa::path(post, path = "/api/tokens", request_body = CreateToken, responses(
    (status = 201, description = "Created; `token` is shown only here.", body = CreatedToken),
    (status = 400, description = "The body is not JSON or has an unknown field (`invalid_json`).", body = ErrorBody),
    (status = 409, description = "A token has this name (`name_taken`).", body = ErrorBody),
    (status = 422, description = "Bad role or name (`invalid_role`, `invalid_name`).", body = ErrorBody),
))]
pub async fn create(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    body: Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    let CreateToken { name, role } = body.into_inner();
    let role: Role = role
        .parse()
        .map_err(|e| ApiError::unprocessable("invalid_role", format!("role: {e}.")))?;
    let actor = principal.name.clone();
    let issued = state
        .db
        .run(move |conn| Ok(auth::create_token(conn, &name, role, &actor, None)))
        .await?
        .map_err(|e| match e {
            TokenError::Invalid(m) => {
                ApiError::unprocessable("invalid_name", format!("name: {m}."))
            }
            TokenError::NameTaken(name) => ApiError::conflict(
                "name_taken",
                format!("A token named `{name}` already exists."),
            ),
            TokenError::Storage(e) => e.into(),
        })?;
    tracing::info!(token.id = %issued.info.id, token.role = %role, actor = %principal.name, "token created");
    Ok(HttpResponse::Created().json(CreatedToken {
        info: issued.info,
        token: issued.token.expose().to_owned(),
    }))
}

/// Lists API tokens (values never, only a hint).
#[utoipa::path(get, path = "/api/tokens", params(PageQuery), responses(
    (status = 200, description = "A page of tokens.", body = Page<TokenInfo>),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
    (status = 422, description = "Bad `limit` or `after` (`invalid_limit`, `invalid_cursor`).", body = ErrorBody),
))]
pub async fn list(
    state: web::Data<AppState>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let after = super::pagination::cursor(query.after.clone(), "tok", &[])?;
    let rows = state
        .db
        .run(move |conn| tokens::page(conn, after.as_deref(), limit + 1))
        .await?;
    let page = Page::from_rows(
        rows.into_iter().map(TokenInfo::from).collect(),
        limit,
        |t| t.id.clone(),
    );
    Ok(HttpResponse::Ok().json(page))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(delete, path = "/api/tokens/{id}", params(("id" = String, Path, description = "The token's id (`tok_…`).")), responses(
    (status = 200, description = "Revoked.", body = TokenInfo),
    (status = 404, description = "No token has that id.", body = ErrorBody),
))]
pub async fn revoke(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = principal.name.clone();
    let id = id.into_inner();
    let revoked = state
        .db
        .run(move |conn| auth::revoke_token(conn, &id, &actor))
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    tracing::info!(token.id = %revoked.id, actor = %principal.name, "token revoked");
    Ok(HttpResponse::Ok().json(revoked))
}
