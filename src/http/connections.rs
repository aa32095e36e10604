//! `/api/connections`: ops check keys, save connections, rotate webhook secrets, register the
//! webhook endpoint and disconnect. Bodies are read as JSON values and picked apart here, so that
//! no parser error can quote a pasted key back.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::extract::{Json, Query};
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::Principal;
use crate::connections::{ConnectionError, NewConnection};
use crate::domain::Secret;
use crate::stripe::report::KeyInput;

impl From<ConnectionError> for ApiError {
    fn from(error: ConnectionError) -> Self {
        match error {
            ConnectionError::NotFound => ApiError::not_found("connection"),
            ConnectionError::Unusable(report) => ApiError::unprocessable(
                "keys_unusable",
                "The keys cannot be used; each failing check says why.",
            )
            .with_details(json!({ "report": *report })),
            ConnectionError::Invalid(message) => ApiError::unprocessable("invalid_input", message),
            ConnectionError::Conflict(message) => ApiError::conflict("conflict", message),
            ConnectionError::UnreachableUrl(message) => {
                ApiError::unprocessable("public_url_unreachable", message)
            }
            ConnectionError::Stripe(e) if e.status() == Some(403) => ApiError::unprocessable(
                "stripe_permission",
                format!("The connection's key may not do this: {e}"),
            ),
            ConnectionError::Stripe(e) if e.is_unavailable() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stripe_unavailable",
                format!("{e}. Try again shortly."),
            ),
            ConnectionError::Stripe(e) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "stripe_error", e.to_string())
            }
            ConnectionError::Storage(e) => e.into(),
            ConnectionError::Vault(e) => ApiError::internal(e),
        }
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "The body must be a JSON object."))
}

fn string_field(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::unprocessable(
            "invalid_input",
            format!("{name} must be a string."),
        )),
    }
}

/// The credentials of a check or create body. Values are kept exactly as sent: stray spaces
/// are for the report to find, not for us to hide.
fn key_input(body: &Map<String, Value>, allowed: &[&str]) -> Result<KeyInput, ApiError> {
    if let Some(unknown) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::unprocessable(
            "invalid_input",
            format!(
                "Unknown field `{unknown}`; the fields are {}.",
                allowed.join(", ")
            ),
        ));
    }
    let mut webhook_secrets: Vec<Secret> = string_field(body, "webhook_secret")?
        .into_iter()
        .map(Secret::new)
        .collect();
    match body.get("webhook_secrets") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let secret = item.as_str().ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_input",
                        "webhook_secrets must be a list of strings.",
                    )
                })?;
                webhook_secrets.push(Secret::new(secret));
            }
        }
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_input",
                "webhook_secrets must be a list of strings.",
            ))
        }
    }
    Ok(KeyInput {
        publishable_key: string_field(body, "publishable_key")?,
        secret_key: string_field(body, "secret_key")?.map(Secret::new),
        webhook_secrets,
    })
}

const KEY_FIELDS: [&str; 4] = [
    "publishable_key",
    "secret_key",
    "webhook_secret",
    "webhook_secrets",
];

pub async fn check(
    state: web::Data<AppState>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let keys = key_input(object(&body)?, &KEY_FIELDS)?;
    let report = state.connections.check(&keys).await;
    Ok(HttpResponse::Ok().json(report))
}

pub async fn create(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let body = object(&body)?;
    let mut allowed = KEY_FIELDS.to_vec();
    allowed.push("name");
    let keys = key_input(body, &allowed)?;
    let name = string_field(body, "name")?;
    let view = state
        .connections
        .create(NewConnection { name, keys }, &principal.name)
        .await?;
    Ok(HttpResponse::Created().json(view))
}

pub async fn list(
    state: web::Data<AppState>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let after = super::pagination::cursor(
        query.after.clone(),
        "conn",
        &[crate::webhook::ENV_CONNECTION_ID],
    )?;
    let views = state.connections.list(after, limit + 1).await?;
    Ok(HttpResponse::Ok().json(Page::from_rows(views, limit, |v| v.id.clone())))
}

pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.connections.view(&id).await?))
}

pub async fn validate(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let report = state.connections.validate(&id, &principal.name).await?;
    Ok(HttpResponse::Ok().json(report))
}

pub async fn disconnect(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let affected = state.connections.disconnect(&id, &principal.name).await?;
    let message = format!(
        "Disconnected: billmirror no longer receives this account's events or pushes invoices to \
         it; the ledger keeps its rows. Still running in Stripe: {} active subscription(s) and {} \
         open invoice(s); {} invoice(s) created here were not pushed and will not be.",
        affected.active_subscriptions, affected.open_invoices, affected.unpushed_invoices
    );
    Ok(HttpResponse::Ok().json(json!({
        "id": id.as_str(),
        "status": "disconnected",
        "affected": affected,
        "message": message,
    })))
}

pub async fn register_webhook_endpoint(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (view, outcome) = state
        .connections
        .register_webhook_endpoint(&id, &principal.name)
        .await?;
    let status = if outcome == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut answer = serde_json::to_value(view).map_err(ApiError::internal)?;
    answer["webhook_endpoint"] = json!(outcome);
    Ok(HttpResponse::build(status).json(answer))
}

pub async fn add_webhook_secret(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let body = object(&body)?;
    let secret = string_field(body, "secret")?.ok_or_else(|| {
        ApiError::unprocessable("invalid_input", "secret: give the whsec_ signing secret.")
    })?;
    let view = state
        .connections
        .add_webhook_secret(&id, Secret::new(secret), &principal.name)
        .await?;
    Ok(HttpResponse::Created().json(view))
}

pub async fn retire_webhook_secret(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, secret_id) = path.into_inner();
    let view = state
        .connections
        .retire_webhook_secret(&id, &secret_id, &principal.name)
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
