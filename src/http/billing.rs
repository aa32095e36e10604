//! Support's read-only views: `/api/billing-context?email=…[&email=…]`, `/api/customers` and
//! `/api/subscriptions`. Emails match without regard to letter case.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::{ApiError, ErrorBody};
use super::extract::Query;
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::billing;
use crate::domain::time::rfc3339;
use crate::domain::Email;
use crate::storage::billing as store;

/// Query pairs in order, so that `email` may repeat.
type Pairs = Query<Vec<(String, String)>>;

fn one<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn only(pairs: &[(String, String)], allowed: &[&str]) -> Result<(), ApiError> {
    match pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err(ApiError::unprocessable(
            "invalid_query",
            format!(
                "`{k}` is not a parameter here; they are {}.",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn parse_emails(pairs: &[(String, String)]) -> Result<Vec<String>, ApiError> {
    let mut emails = Vec::new();
    for (n, (_, value)) in pairs.iter().filter(|(k, _)| k == "email").enumerate() {
        let email = Email::parse(value).map_err(|p| {
            ApiError::unprocessable("invalid_email", format!("email {}: {p}.", n + 1))
        })?;
        if !emails.contains(&email.normalized()) {
            emails.push(email.normalized());
        }
    }
    if emails.is_empty() {
        return Err(ApiError::unprocessable(
            "email_required",
            "Give at least one email: /api/billing-context?email=ada@example.com.",
        ));
    }
    if emails.len() > 20 {
        return Err(ApiError::unprocessable(
            "too_many_emails",
            "Give at most 20 emails at once.",
        ));
    }
    Ok(emails)
}

/// Everything support needs about some customers: their customers in every connection, invoices,
/// subscriptions and payments, from the ledger.
#[utoipa::path(get, path = "/api/billing-context", params(("email" = Vec<String>, Query, description = "A customer's email; repeat for several (at most 20)."),
    ("refresh" = Option<bool>, Query, description = "Fetch these customers from Stripe first (waits up to 5 s)."),
), responses(
    (status = 200, description = "The customers' billing context (and `refreshed` with `refresh=true`).", body = serde_json::Value),
    (status = 422, description = "No or a bad email, too many, or an unknown parameter.", body = ErrorBody),
))]
pub async fn context(state: web::Data<AppState>, query: Pairs) -> Result<HttpResponse, ApiError> {
    only(&query, &["email", "refresh"])?;
    let emails = parse_emails(&query)?;
    let refresh = match one(&query, "refresh") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_query",
                format!("refresh must be true or false, not `{other}`."),
            ))
        }
    };
    let mut refreshed = None;
    if refresh {
        refreshed = Some(refresh_from_stripe(&state, &emails).await?);
    }
    let mut answer = billing::context(&state.db, emails, &state.config.public_url).await?;
    if let Some(refreshed) = refreshed {
        answer["refreshed"] = refreshed;
    }
    Ok(HttpResponse::Ok().json(answer))
}

/// Lists mirrored customers.
#[utoipa::path(get, path = "/api/customers", params(
    ("email" = Option<String>, Query, description = "Only this email's customers."),
    ("limit" = Option<i64>, Query, description = "1 to 500 (default 50)."),
    ("after" = Option<String>, Query, description = "The `next` of the previous page."),
), responses(
    (status = 200, description = "`{data: [{id, connection_id, email, name, deleted, created}], next}`.", body = serde_json::Value),
    (status = 422, description = "A bad parameter.", body = ErrorBody),
))]
pub async fn customers(state: web::Data<AppState>, query: Pairs) -> Result<HttpResponse, ApiError> {
    only(&query, &["email", "limit", "after"])?;
    let page = page_query(&query)?;
    let limit = page.limit()?;
    let email = one(&query, "email").map(str::to_owned);
    let rows = state
        .db
        .run(move |conn| {
            store::list_customers(conn, email.as_deref(), page.after.as_deref(), limit + 1)
        })
        .await?;
    let data: Vec<(String, serde_json::Value)> = rows
        .into_iter()
        .map(|(id, c)| {
            (
                id,
                json!({
                    "id": c.stripe_id, "connection_id": c.connection_id, "email": c.email,
                    "name": c.name, "deleted": c.deleted, "created": c.stripe_created.map(rfc3339),
                }),
            )
        })
        .collect();
    let page = Page::from_rows(data, limit, |(id, _)| id.clone());
    Ok(HttpResponse::Ok().json(json!({
        "data": page.data.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// Lists the subscriptions of some customers.
#[utoipa::path(get, path = "/api/subscriptions", params(("email" = Vec<String>, Query, description = "A customer's email; repeat for several (at most 20)."),
    ("status" = Option<String>, Query, description = "Only subscriptions in this Stripe status."),
), responses(
    (status = 200, description = "`{data: [...], next: null}`.", body = serde_json::Value),
    (status = 422, description = "No or a bad email, or an unknown parameter.", body = ErrorBody),
))]
pub async fn subscriptions(
    state: web::Data<AppState>,
    query: Pairs,
) -> Result<HttpResponse, ApiError> {
    only(&query, &["email", "status"])?;
    let emails = parse_emails(&query)?;
    let status = one(&query, "status").map(str::to_owned);
    let rows = state
        .db
        .run(move |conn| {
            let customers = store::customers_by_email(conn, &emails)?;
            let ids: Vec<String> = customers.into_iter().map(|c| c.stripe_id).collect();
            store::subscriptions_of(conn, &ids, status.as_deref())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "data": rows.iter().map(billing::subscription_json).collect::<Vec<_>>(),
        "next": null,
    })))
}

fn page_query(pairs: &[(String, String)]) -> Result<PageQuery, ApiError> {
    let limit = match one(pairs, "limit") {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            ApiError::unprocessable(
                "invalid_limit",
                format!("limit must be a number, not `{raw}`."),
            )
        })?),
    };
    Ok(PageQuery {
        limit,
        // Customers' row ids are made by the ledger's upsert, prefixed with the table's name.
        after: super::pagination::cursor(one(pairs, "after").map(str::to_owned), "customers", &[])?,
    })
}

/// Fetches these emails' customers from Stripe into the inbox and waits (briefly) for the apply
/// worker to fold them in, so the answer shows Stripe's current data.
pub(crate) async fn refresh_from_stripe(
    state: &AppState,
    emails: &[String],
) -> Result<serde_json::Value, ApiError> {
    let lookup = emails.to_vec();
    let known: Vec<(String, String)> = state
        .db
        .run(move |conn| store::customers_by_email(conn, &lookup))
        .await?
        .into_iter()
        .map(|c| (c.connection_id, c.stripe_id))
        .collect();
    let refreshed = crate::sync::refresh_customers(&state.db, &state.connections, emails, &known)
        .await
        .map_err(|e| match e {
            crate::sync::backfill::BackfillError::Connection(e) => ApiError::from(e),
            crate::sync::backfill::BackfillError::Storage(e) => ApiError::from(e),
            crate::sync::backfill::BackfillError::Invalid(m) => {
                ApiError::unprocessable("invalid_input", m)
            }
        })?;
    crate::ledger::worker::wait_until_applied(
        &state.db,
        &state.inbox.stored,
        Some(std::time::Duration::from_secs(5)),
    )
    .await?;
    Ok(refreshed)
}
