//! `/api/invoices`: finance creates and voids payable invoices; support reads them, local and
//! mirrored. `POST` honours an `Idempotency-Key` header.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use super::pagination::Page;
use super::AppState;
use crate::auth::Principal;
use crate::domain::states::{InvoiceOrigin, InvoiceStatus, SyncState};
use crate::invoices::view::InvoiceView;
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

/// Creates an invoice here and pushes it to Stripe in the background.
#[utoipa::path(post, path = "/api/invoices",
    params(("Idempotency-Key" = Option<String>, Header, description = "Sending the same key again returns the first answer (`Idempotent-Replayed: true`).")),
    request_body = NewInvoiceBody,
    responses(
        (status = 201, description = "Created; `sync` says how the push goes.", body = InvoiceView),
        (status = 200, description = "Replayed for a repeated `Idempotency-Key`.", body = InvoiceView),
        (status = 400, description = "The body is not JSON (`invalid_json`) or a bad `Idempotency-Key`.", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `API_BODY_TIMEOUT_SECS` (`body_timeout`).", body = ErrorBody),
        (status = 422, description = "A field is wrong (its code, `details.field`) or the key was used for another request (`idempotency_key_reused`).", body = ErrorBody),
    ))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `draft`, `open`, `paid`, `void`, `uncollectible`…
    status: Option<String>,
    /// The customer's email (any letter case).
    email: Option<String>,
    /// `billmirror` or `stripe`.
    origin: Option<String>,
    connection_id: Option<String>,
    /// `pending`, `pushed`, `failed`, `cancelled` or `mirrored`.
    sync: Option<String>,
    /// 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// A new invoice (read field by field by `invoices::input`, so each refusal names its field;
/// this type only describes the body in `/openapi.json`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewInvoiceBody {
    /// Needed when several connections can push.
    connection_id: Option<String>,
    #[schema(inline)]
    customer: NewCustomerBody,
    /// ISO 4217, e.g. `eur`.
    currency: String,
    #[schema(inline)]
    lines: Vec<NewLineBody>,
    /// Days after finalizing (default 30); or give `due_date`.
    days_until_due: Option<u32>,
    /// `YYYY-MM-DD`.
    due_date: Option<String>,
    memo: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewCustomerBody {
    /// Finds or creates the Stripe customer with this email.
    email: String,
    name: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NewLineBody {
    description: String,
    quantity: i64,
    /// In the currency's minor units (cents).
    unit_amount: i64,
}

/// Lists invoices, local and mirrored, newest first.
#[utoipa::path(get, path = "/api/invoices", params(ListQuery), responses(
    (status = 200, description = "A page of invoices (without lines).", body = Page<InvoiceView>),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
    (status = 422, description = "A bad filter value (`invalid_status`, `invalid_origin`, `invalid_sync`, `invalid_limit`, `invalid_cursor`).", body = ErrorBody),
))]
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
    let sync = query
        .sync
        .map(|s| s.parse::<SyncState>())
        .transpose()
        .map_err(|e| ApiError::unprocessable("invalid_sync", format!("sync: {e}.")))?;
    let filter = InvoiceFilter {
        status,
        email: query.email.map(|e| e.trim().to_owned()),
        origin,
        connection_id: query.connection_id,
        sync,
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

/// One invoice with its lines, payments and timeline.
#[utoipa::path(get, path = "/api/invoices/{id}", params(("id" = String, Path, description = "The invoice's id (`inv_…`).")), responses(
    (status = 200, description = "The invoice.", body = InvoiceView),
    (status = 404, description = "No invoice has that id.", body = ErrorBody),
))]
pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(detail(&state, id.into_inner()).await?))
}

/// Voids an invoice (in Stripe too, when it was pushed).
#[utoipa::path(post, path = "/api/invoices/{id}/void", params(("id" = String, Path, description = "The invoice's id (`inv_…`).")), responses(
    (status = 200, description = "Voided.", body = InvoiceView),
    (status = 404, description = "No invoice has that id.", body = ErrorBody),
    (status = 409, description = "It cannot be voided in its state.", body = ErrorBody),
    (status = 502, description = "Stripe refused.", body = ErrorBody),
    (status = 503, description = "Stripe cannot be reached.", body = ErrorBody),
))]
pub async fn void(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    invoices::void(&state.db, &state.connections, &id, &principal.name).await?;
    Ok(HttpResponse::Ok().json(detail(&state, id.into_inner()).await?))
}

/// Pushes a failed invoice to Stripe again.
#[utoipa::path(post, path = "/api/invoices/{id}/retry", params(("id" = String, Path, description = "The invoice's id (`inv_…`).")), responses(
    (status = 200, description = "The push is queued again.", body = InvoiceView),
    (status = 404, description = "No invoice has that id.", body = ErrorBody),
    (status = 409, description = "Its push has not failed.", body = ErrorBody),
))]
pub async fn retry(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    invoices::retry_push(&state.db, &id, &principal.name).await?;
    state.jobs.wake(JobKind::PushInvoice);
    Ok(HttpResponse::Ok().json(detail(&state, id.into_inner()).await?))
}
