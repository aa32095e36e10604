//! `/api/notifications`: chat channels (secrets masked), their test message and delivery log, and
//! the rules that route events to them. Ops only (the route table says so).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::Principal;
use crate::notify::channels::{
    channel_view, delivery_view, rule_view, ChannelInput, NotifyError, RuleInput,
};
use crate::storage::notify as store;
use crate::storage::tokens::audit;

impl From<NotifyError> for ApiError {
    fn from(error: NotifyError) -> Self {
        match error {
            NotifyError::Invalid {
                code,
                field,
                message,
            } => ApiError::unprocessable(code, message).with_details(json!({ "field": field })),
            NotifyError::NotFound(what) => ApiError::not_found(what),
            NotifyError::InUse(message) => ApiError::conflict("channel_in_use", message),
            NotifyError::Storage(e) => e.into(),
        }
    }
}

/// Writes an audit entry for a change ops made.
async fn audited(
    state: &AppState,
    actor: &str,
    action: &'static str,
    subject: &str,
    details: Value,
) -> Result<(), ApiError> {
    let (actor, subject) = (actor.to_owned(), subject.to_owned());
    state
        .db
        .run(move |conn| audit(conn, &actor, action, &subject, details))
        .await?;
    Ok(())
}

/// Adds a chat channel (Slack app, Slack-format or Teams webhook, generic signed webhook).
#[utoipa::path(post, path = "/api/notifications/channels", request_body = ChannelInput, responses(
    (status = 201, description = "Created; the secret is shown masked.", body = serde_json::Value),
    (status = 400, description = "The body is not JSON or has an unknown field (`invalid_json`).", body = ErrorBody),
    (status = 422, description = "A bad value (its code, `details.field`).", body = ErrorBody),
))]
pub async fn create_channel(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    body: Json<ChannelInput>,
) -> Result<HttpResponse, ApiError> {
    let row = state.notifier.create_channel(body.into_inner()).await?;
    audited(
        &state,
        &principal.name,
        "notify.channel.create",
        &row.id,
        json!({"kind": row.kind}),
    )
    .await?;
    Ok(HttpResponse::Created().json(channel_view(&row)))
}

/// Lists chat channels.
#[utoipa::path(get, path = "/api/notifications/channels", params(PageQuery), responses(
    (status = 200, description = "`{data: [channel], next}`.", body = serde_json::Value),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
))]
pub async fn list_channels(
    state: web::Data<AppState>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let after = query.into_inner().after;
    let rows = state
        .db
        .run(move |conn| store::list_channels(conn, after.as_deref(), limit + 1))
        .await?;
    let page = Page::from_rows(rows, limit, |c| c.id.clone());
    Ok(HttpResponse::Ok().json(json!({
        "data": page.data.iter().map(channel_view).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// One channel with its health.
#[utoipa::path(get, path = "/api/notifications/channels/{id}", params(("id" = String, Path, description = "The channel's id.")), responses(
    (status = 200, description = "`{id, kind, name, secret (masked), target, api_base, redaction, rate_per_minute, health, created_at, updated_at}`.", body = serde_json::Value),
    (status = 404, description = "No channel has that id.", body = ErrorBody),
))]
pub async fn get_channel(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = state.notifier.channel(&id).await?;
    Ok(HttpResponse::Ok().json(channel_view(&row)))
}

/// Changes a channel's fields (`status: active` repairs a broken one).
#[utoipa::path(patch, path = "/api/notifications/channels/{id}", params(("id" = String, Path, description = "The channel's id.")), request_body = ChannelInput, responses(
    (status = 200, description = "The channel.", body = serde_json::Value),
    (status = 404, description = "No channel has that id.", body = ErrorBody),
    (status = 400, description = "The body is not JSON or has an unknown field (`invalid_json`).", body = ErrorBody),
    (status = 422, description = "A bad value (its code, `details.field`).", body = ErrorBody),
))]
pub async fn update_channel(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
    body: Json<ChannelInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    let changed_secret = input.secret.is_some();
    let row = state.notifier.update_channel(&id, input).await?;
    audited(
        &state,
        &principal.name,
        "notify.channel.update",
        &row.id,
        json!({"secret_changed": changed_secret}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(channel_view(&row)))
}

/// Deletes a channel no rule uses.
#[utoipa::path(delete, path = "/api/notifications/channels/{id}", params(("id" = String, Path, description = "The channel's id.")), responses(
    (status = 204, description = "Deleted."),
    (status = 404, description = "No channel has that id.", body = ErrorBody),
    (status = 409, description = "A rule still uses it (`channel_in_use`).", body = ErrorBody),
))]
pub async fn delete_channel(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.notifier.delete_channel(&id).await?;
    audited(
        &state,
        &principal.name,
        "notify.channel.delete",
        &id,
        json!({}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sends a test message now and says how it went.
#[utoipa::path(post, path = "/api/notifications/channels/{id}/test", params(("id" = String, Path, description = "The channel's id.")), responses(
    (status = 200, description = "`{ok, error, delivery, channel}`.", body = serde_json::Value),
    (status = 404, description = "No channel has that id.", body = ErrorBody),
))]
pub async fn test_channel(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let delivery = state.notifier.test_channel(&id).await?;
    let ok = delivery.status == crate::domain::states::DeliveryState::Sent;
    audited(
        &state,
        &principal.name,
        "notify.channel.test",
        &id,
        json!({"ok": ok}),
    )
    .await?;
    let channel = state.notifier.channel(&id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "ok": ok,
        "error": delivery.last_error,
        "delivery": delivery_view(&delivery),
        "channel": channel_view(&channel),
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    limit: Option<i64>,
    after: Option<String>,
    /// The events one digest counted.
    digest: Option<String>,
}

/// A channel's delivery log.
#[utoipa::path(get, path = "/api/notifications/channels/{id}/deliveries", params(("id" = String, Path, description = "The channel's id."), DeliveriesQuery), responses(
    (status = 200, description = "`{data: [delivery], next}`.", body = serde_json::Value),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
    (status = 404, description = "No channel has that id.", body = ErrorBody),
))]
pub async fn deliveries(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = PageQuery {
        limit: query.limit,
        after: None,
    }
    .limit()?;
    let rows = state
        .notifier
        .deliveries(&id, query.digest, query.after, limit + 1)
        .await?;
    let page = Page::from_rows(rows, limit, |d| d.id.clone());
    Ok(HttpResponse::Ok().json(json!({
        "data": page.data.iter().map(delivery_view).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// Adds a rule routing event families to a channel.
#[utoipa::path(post, path = "/api/notifications/rules", request_body = RuleInput, responses(
    (status = 201, description = "Created.", body = serde_json::Value),
    (status = 400, description = "The body is not JSON or has an unknown field (`invalid_json`).", body = ErrorBody),
    (status = 422, description = "A bad value (its code, `details.field`).", body = ErrorBody),
))]
pub async fn create_rule(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    body: Json<RuleInput>,
) -> Result<HttpResponse, ApiError> {
    let row = state.notifier.create_rule(body.into_inner()).await?;
    audited(
        &state,
        &principal.name,
        "notify.rule.create",
        &row.id,
        rule_view(&row),
    )
    .await?;
    Ok(HttpResponse::Created().json(rule_view(&row)))
}

/// Lists rules.
#[utoipa::path(get, path = "/api/notifications/rules", params(PageQuery), responses(
    (status = 200, description = "`{data: [rule], next}`.", body = serde_json::Value),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
))]
pub async fn list_rules(
    state: web::Data<AppState>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let after = query.into_inner().after;
    let rows = state
        .db
        .run(move |conn| store::list_rules(conn, after.as_deref(), limit + 1))
        .await?;
    let page = Page::from_rows(rows, limit, |r| r.id.clone());
    Ok(HttpResponse::Ok().json(json!({
        "data": page.data.iter().map(rule_view).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// One rule.
#[utoipa::path(get, path = "/api/notifications/rules/{id}", params(("id" = String, Path, description = "The rule's id.")), responses(
    (status = 200, description = "`{id, name, channel_id, families, connection_ids, mode, min_amount, redaction, enabled, created_at, updated_at}`.", body = serde_json::Value),
    (status = 404, description = "No rule has that id.", body = ErrorBody),
))]
pub async fn get_rule(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rule_view(&state.notifier.rule(&id).await?)))
}

/// Changes a rule's fields.
#[utoipa::path(patch, path = "/api/notifications/rules/{id}", params(("id" = String, Path, description = "The rule's id.")), request_body = RuleInput, responses(
    (status = 200, description = "The rule.", body = serde_json::Value),
    (status = 404, description = "No rule has that id.", body = ErrorBody),
    (status = 400, description = "The body is not JSON or has an unknown field (`invalid_json`).", body = ErrorBody),
    (status = 422, description = "A bad value (its code, `details.field`).", body = ErrorBody),
))]
pub async fn update_rule(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
    body: Json<RuleInput>,
) -> Result<HttpResponse, ApiError> {
    let row = state.notifier.update_rule(&id, body.into_inner()).await?;
    audited(
        &state,
        &principal.name,
        "notify.rule.update",
        &row.id,
        rule_view(&row),
    )
    .await?;
    Ok(HttpResponse::Ok().json(rule_view(&row)))
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/api/notifications/rules/{id}", params(("id" = String, Path, description = "The rule's id.")), responses(
    (status = 204, description = "Deleted."),
    (status = 404, description = "No rule has that id.", body = ErrorBody),
))]
pub async fn delete_rule(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.notifier.delete_rule(&id).await?;
    audited(
        &state,
        &principal.name,
        "notify.rule.delete",
        &id,
        json!({}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
