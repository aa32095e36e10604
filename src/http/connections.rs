//! `/api/connections`: ops check keys, save connections, rotate webhook secrets, register the
//! webhook endpoint and disconnect. Bodies are read as JSON values and picked apart here, so that
//! no parser error can quote a pasted key back.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::Principal;
use crate::connections::{ConnectionError, ConnectionView, NewConnection};
use crate::domain::Secret;
use crate::stripe::report::{KeyInput, KeyReport};

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
            ConnectionError::Revoked => ApiError::conflict(
                "connection_revoked",
                "Stripe revoked this connection's authorisation: it no longer syncs. Connect the \
                 account with Stripe again.",
            ),
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

/// The credentials a check or a new connection takes (read by hand from a JSON value, so that no
/// parser error quotes a key back; this type only describes them in `/openapi.json`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Keys {
    /// `pk_live_…` or `pk_test_…`.
    publishable_key: Option<String>,
    /// `sk_…` or a restricted `rk_…` key.
    secret_key: Option<String>,
    /// A `whsec_…` signing secret.
    webhook_secret: Option<String>,
    /// Several signing secrets (during a rotation).
    webhook_secrets: Option<Vec<String>>,
}

/// A new connection: its keys (as in a check) and a name.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewConnectionBody {
    /// Shown in lists; made from the account's name when not given.
    name: Option<String>,
    publishable_key: Option<String>,
    secret_key: Option<String>,
    webhook_secret: Option<String>,
    webhook_secrets: Option<Vec<String>>,
}

/// A webhook signing secret to add.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewSecretBody {
    /// `whsec_…`.
    secret: String,
}

const KEY_FIELDS: [&str; 4] = [
    "publishable_key",
    "secret_key",
    "webhook_secret",
    "webhook_secrets",
];

/// Checks keys without saving them: formats, mode, authentication, permissions, account status
/// and the webhook endpoint, each with a verdict.
#[utoipa::path(post, path = "/api/connections/check", request_body = Keys, responses(
    (status = 200, description = "The report (`ok` false when a check failed).", body = KeyReport),
    (status = 400, description = "The body is not a JSON object (`invalid_json`).", body = ErrorBody),
    (status = 422, description = "An unknown field or a value of the wrong type (`invalid_input`).", body = ErrorBody),
))]
pub async fn check(
    state: web::Data<AppState>,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let keys = key_input(object(&body)?, &KEY_FIELDS)?;
    let report = state.connections.check(&keys).await;
    Ok(HttpResponse::Ok().json(report))
}

/// Saves a connection once its keys pass the checks; secrets are encrypted at rest.
#[utoipa::path(post, path = "/api/connections", request_body = NewConnectionBody, responses(
    (status = 201, description = "Created.", body = ConnectionView),
    (status = 400, description = "The body is not a JSON object (`invalid_json`).", body = ErrorBody),
    (status = 409, description = "The same key or account is already connected (`conflict`).", body = ErrorBody),
    (status = 422, description = "Unusable keys (`keys_unusable`, with the report in `details`) or bad input (`invalid_input`).", body = ErrorBody),
    (status = 503, description = "Stripe or the database cannot be reached.", body = ErrorBody),
))]
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

/// Lists connections, keys masked.
#[utoipa::path(get, path = "/api/connections", params(PageQuery), responses(
    (status = 200, description = "A page of connections.", body = Page<ConnectionView>),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
    (status = 422, description = "Bad `limit` or `after`.", body = ErrorBody),
))]
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

/// One connection, with its webhook health and last key report.
#[utoipa::path(get, path = "/api/connections/{id}", params(("id" = String, Path, description = "The connection's id (`conn_…`, or `env` for the one from the environment).")), responses(
    (status = 200, description = "The connection.", body = ConnectionView),
    (status = 404, description = "No connection has that id.", body = ErrorBody),
))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.connections.view(&id).await?))
}

/// Runs the key report again on the saved keys.
#[utoipa::path(post, path = "/api/connections/{id}/validate", params(("id" = String, Path, description = "The connection's id (`conn_…`, or `env` for the one from the environment).")), responses(
    (status = 200, description = "The report.", body = KeyReport),
    (status = 404, description = "No connection has that id.", body = ErrorBody),
))]
pub async fn validate(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let report = state.connections.validate(&id, &principal.name).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Disconnects: no more events or pushes; the ledger keeps its rows.
#[utoipa::path(delete, path = "/api/connections/{id}", params(("id" = String, Path, description = "The connection's id (`conn_…`, or `env` for the one from the environment).")), responses(
    (status = 200, description = "Disconnected: `{id, status, affected, message}`, where `affected` counts what still runs in Stripe.", body = serde_json::Value),
    (status = 404, description = "No connection has that id.", body = ErrorBody),
    (status = 409, description = "It cannot be disconnected (e.g. the environment's).", body = ErrorBody),
))]
pub async fn disconnect(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let affected = state.connections.disconnect(&id, &principal.name).await?;
    let message = crate::connections::disconnect_message(&affected);
    Ok(HttpResponse::Ok().json(json!({
        "id": id.as_str(),
        "status": "disconnected",
        "affected": affected,
        "message": message,
    })))
}

/// Registers (or updates) the webhook endpoint in Stripe for this connection and keeps its secret.
#[utoipa::path(post, path = "/api/connections/{id}/webhook-endpoint", params(("id" = String, Path, description = "The connection's id (`conn_…`, or `env` for the one from the environment).")), responses(
    (status = 201, description = "Created in Stripe: the connection, with `webhook_endpoint` saying `created`.", body = ConnectionView),
    (status = 200, description = "Already there or updated: `webhook_endpoint` says which.", body = ConnectionView),
    (status = 404, description = "No connection has that id.", body = ErrorBody),
    (status = 422, description = "`PUBLIC_URL` is loopback (`public_url_unreachable`) or the key may not do this (`stripe_permission`).", body = ErrorBody),
    (status = 502, description = "Stripe refused (`stripe_error`).", body = ErrorBody),
    (status = 503, description = "Stripe cannot be reached (`stripe_unavailable`).", body = ErrorBody),
))]
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

/// Adds a webhook signing secret (for a rotation: both verify until the old one is retired).
#[utoipa::path(post, path = "/api/connections/{id}/webhook-secrets", params(("id" = String, Path, description = "The connection's id (`conn_…`, or `env` for the one from the environment).")), request_body = NewSecretBody, responses(
    (status = 201, description = "Added.", body = ConnectionView),
    (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
    (status = 404, description = "No connection has that id.", body = ErrorBody),
    (status = 422, description = "No secret, or not a `whsec_` one (`invalid_input`).", body = ErrorBody),
))]
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

/// Retires a webhook signing secret: deliveries signed with it are refused from now on.
#[utoipa::path(delete, path = "/api/connections/{id}/webhook-secrets/{secret_id}", params(("id" = String, Path, description = "The connection's id (`conn_…`, or `env` for the one from the environment)."),
    ("secret_id" = String, Path, description = "The secret's id, from the connection's `webhook_secrets`."),
), responses(
    (status = 200, description = "Retired.", body = ConnectionView),
    (status = 404, description = "No such connection or secret.", body = ErrorBody),
    (status = 409, description = "It is the last active secret.", body = ErrorBody),
))]
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
