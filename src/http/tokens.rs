//! `/api/tokens`: admins create, list and revoke API tokens. A token's value appears once, in the
//! answer that creates it.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Json, Query};
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::{self, Principal, TokenError, TokenInfo};
use crate::domain::Role;
use crate::storage::tokens;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    role: String,
}

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
    let mut answer = serde_json::to_value(&issued.info).map_err(ApiError::internal)?;
    answer["token"] = json!(issued.token.expose());
    Ok(HttpResponse::Created().json(answer))
}

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
