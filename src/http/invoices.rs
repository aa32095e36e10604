//! `/api/invoices`: finance creates and voids payable invoices; support reads them, local and
//! mirrored. `POST` honours an `Idempotency-Key` header.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Json, Query};
use super::pagination::Page;
use super::AppState;
use crate::auth::Principal;
use crate::domain::states::{InvoiceOrigin, InvoiceStatus};
use crate::invoices::{self, view, InvoiceError};
use crate::jobs::JobKind;
use crate::storage::invoices::{self as store, InvoiceFilter};

impl From<InvoiceError> for ApiError {
    fn from(error: InvoiceError) -> Self {
        match error {
            InvoiceError::Input(e) => {
                ApiError::unprocessable(e.code, e.message).with_details(json!({"field": e.field}))
            }
            InvoiceError::NotFound => ApiError::not_found("invoice"),
            InvoiceError::Conflict(code, message) => ApiError::conflict(code, message),
            InvoiceError::KeyReused => ApiError::unprocessable(
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request: use a new key \
                 for a new invoice.",
            ),
            InvoiceError::Connection(e) => e.into(),
            InvoiceError::Storage(e) => e.into(),
        }
    }
}

async fn detail(state: &AppState, id: String) -> Result<view::InvoiceView, ApiError> {
    let public_url = state.config.public_url.clone();
    state
        .db
        .run(move |conn| match store::find(conn, &id)? {
            Some(row) => view::detail(conn, row, &public_url).map(Some),
            None => Ok(None),
        })
        .await?
        .ok_or_else(|| ApiError::not_found("invoice"))
}

pub async fn create(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    req: HttpRequest,
    body: Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value.to_str().unwrap_or_default().trim();
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    "The Idempotency-Key header must hold 1 to 255 visible ASCII characters.",
                ));
            }
            Some(key.to_owned())
        }
    };
    let (id, created) = invoices::create(&state.db, &principal, key, body.into_inner()).await?;
    if created {
        state.jobs.wake(JobKind::PushInvoice);
        tracing::info!(invoice.id = %id, actor = %principal.name, "invoice created");
    }
    let view = detail(&state, id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = HttpResponse::build(status);
    if !created {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    email: Option<String>,
    origin: Option<String>,
    connection_id: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = super::pagination::PageQuery {
        limit: query.limit,
        after: None,
    }
    .limit()?;
    let status = query
        .status
        .map(|s| s.parse::<InvoiceStatus>())
        .transpose()
        .map_err(|e| ApiError::unprocessable("invalid_status", format!("status: {e}.")))?;
    let origin = query
        .origin
        .map(|o| o.parse::<InvoiceOrigin>())
        .transpose()
        .map_err(|e| ApiError::unprocessable("invalid_origin", format!("origin: {e}.")))?;
    let filter = InvoiceFilter {
        status,
        email: query.email.map(|e| e.trim().to_owned()),
        origin,
        connection_id: query.connection_id,
    };
    let after = super::pagination::cursor(query.after, "inv", &[])?;
    let rows = state
        .db
        .run(move |conn| store::list(conn, &filter, after.as_deref(), limit + 1))
        .await?;
    let public_url = &state.config.public_url;
    let views = rows
        .into_iter()
        .map(|r| view::summary(r, public_url))
        .collect();
    Ok(
        HttpResponse::Ok().json(Page::from_rows(views, limit, |v: &view::InvoiceView| {
            v.id.clone()
        })),
    )
}

pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(detail(&state, id.into_inner()).await?))
}

pub async fn void(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    invoices::void(&state.db, &state.connections, &id, &principal.name).await?;
    Ok(HttpResponse::Ok().json(detail(&state, id.into_inner()).await?))
}

pub async fn retry(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    invoices::retry_push(&state.db, &id, &principal.name).await?;
    state.jobs.wake(JobKind::PushInvoice);
    Ok(HttpResponse::Ok().json(detail(&state, id.into_inner()).await?))
}
