//! `/api/notifications`: chat channels (secrets masked), their test message and delivery log, and
//! the rules that route events to them. Ops only (the route table says so).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Json, Query};
use super::pagination::{Page, PageQuery};
use super::AppState;
use crate::auth::Principal;
use crate::notify::channels::{
    channel_view, delivery_view, rule_view, ChannelInput, NotifyError, RuleInput,
};
use crate::notify::interact::{
    interactivity_view, slack_user_view, InteractivityInput, SlackUserInput,
};
use crate::storage::notify as store;
use crate::storage::tokens::audit;
use crate::storage::{chat as chat_store, DbConnection, StorageError};

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

/// Reads up to `limit` rows after the cursor, in id order.
type LoadPage<R> = fn(&mut DbConnection, Option<&str>, i64) -> Result<Vec<R>, StorageError>;

/// One page of a list ordered by id: `load(after, limit)` reads one row more than the page, so
/// the answer knows whether a next page exists.
async fn paged<R: Send + 'static>(
    state: &AppState,
    query: PageQuery,
    load: LoadPage<R>,
    id: fn(&R) -> String,
    view: fn(&R) -> Value,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let after = query.after;
    let rows = state
        .db
        .run(move |conn| load(conn, after.as_deref(), limit + 1))
        .await?;
    let page = Page::from_rows(rows, limit, id);
    Ok(HttpResponse::Ok().json(json!({
        "data": page.data.iter().map(view).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

pub async fn list_channels(
    state: web::Data<AppState>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    paged(
        &state,
        query.into_inner(),
        store::list_channels,
        |c| c.id.clone(),
        channel_view,
    )
    .await
}

pub async fn get_channel(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = state.notifier.channel(&id).await?;
    Ok(HttpResponse::Ok().json(channel_view(&row)))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    limit: Option<i64>,
    after: Option<String>,
    /// The events one digest counted.
    digest: Option<String>,
}

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

pub async fn list_rules(
    state: web::Data<AppState>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    paged(
        &state,
        query.into_inner(),
        store::list_rules,
        |r| r.id.clone(),
        rule_view,
    )
    .await
}

pub async fn get_rule(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(rule_view(&state.notifier.rule(&id).await?)))
}

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

pub async fn get_interactivity(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = state.notifier.interactivity(&id).await?;
    Ok(HttpResponse::Ok().json(interactivity_view(&row, &state.config.public_url)))
}

pub async fn set_interactivity(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
    body: Json<InteractivityInput>,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .notifier
        .set_interactivity(&id, body.into_inner())
        .await?;
    audited(
        &state,
        &principal.name,
        "notify.interactivity.set",
        &id,
        json!({"escalation_channel_id": row.escalation_channel_id}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(interactivity_view(&row, &state.config.public_url)))
}

pub async fn delete_interactivity(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.notifier.remove_interactivity(&id).await?;
    audited(
        &state,
        &principal.name,
        "notify.interactivity.delete",
        &id,
        json!({}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn list_slack_users(
    state: web::Data<AppState>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    paged(
        &state,
        query.into_inner(),
        chat_store::list_slack_users,
        |u| u.slack_user_id.clone(),
        slack_user_view,
    )
    .await
}

pub async fn set_slack_user(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
    body: Json<SlackUserInput>,
) -> Result<HttpResponse, ApiError> {
    let row = state
        .notifier
        .set_slack_user(&id, body.into_inner())
        .await?;
    audited(
        &state,
        &principal.name,
        "notify.slack_user.set",
        &row.slack_user_id,
        json!({"role": row.role}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(slack_user_view(&row)))
}

pub async fn delete_slack_user(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.notifier.remove_slack_user(&id).await?;
    audited(
        &state,
        &principal.name,
        "notify.slack_user.delete",
        &id,
        json!({}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
