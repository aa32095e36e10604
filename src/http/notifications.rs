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

/// The end of every change ops make here: the audit entry (who, what, which, details), then the
/// answer. A change is answered only once it is audited.
async fn audited(
    state: &AppState,
    principal: &Principal,
    action: &'static str,
    subject: &str,
    details: Value,
    answer: HttpResponse,
) -> Result<HttpResponse, ApiError> {
    let (actor, subject) = (principal.name.clone(), subject.to_owned());
    state
        .db
        .run(move |conn| audit(conn, &actor, action, &subject, details))
        .await?;
    Ok(answer)
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
        &principal,
        "notify.channel.create",
        &row.id,
        json!({"kind": row.kind}),
        HttpResponse::Created().json(channel_view(&row)),
    )
    .await
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

/// Lists chat channels.
#[utoipa::path(get, path = "/api/notifications/channels", params(PageQuery), responses(
    (status = 200, description = "`{data: [channel], next}`.", body = serde_json::Value),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
))]
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
        &principal,
        "notify.channel.update",
        &row.id,
        json!({"secret_changed": changed_secret}),
        HttpResponse::Ok().json(channel_view(&row)),
    )
    .await
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
        &principal,
        "notify.channel.delete",
        &id,
        json!({}),
        HttpResponse::NoContent().finish(),
    )
    .await
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
    let channel = state.notifier.channel(&id).await?;
    audited(
        &state,
        &principal,
        "notify.channel.test",
        &id,
        json!({"ok": ok}),
        HttpResponse::Ok().json(json!({
            "ok": ok,
            "error": delivery.last_error,
            "delivery": delivery_view(&delivery),
            "channel": channel_view(&channel),
        })),
    )
    .await
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
        &principal,
        "notify.rule.create",
        &row.id,
        rule_view(&row),
        HttpResponse::Created().json(rule_view(&row)),
    )
    .await
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
    paged(
        &state,
        query.into_inner(),
        store::list_rules,
        |r| r.id.clone(),
        rule_view,
    )
    .await
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
        &principal,
        "notify.rule.update",
        &row.id,
        rule_view(&row),
        HttpResponse::Ok().json(rule_view(&row)),
    )
    .await
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
        &principal,
        "notify.rule.delete",
        &id,
        json!({}),
        HttpResponse::NoContent().finish(),
    )
    .await
}

/// A Slack app channel's interactivity: the signing secret (masked), the escalation channel and
/// the request URL to paste into the Slack app.
#[utoipa::path(get, path = "/api/notifications/channels/{id}/interactivity", params(("id" = String, Path, description = "The channel's id.")), responses(
    (status = 200, description = "`{channel_id, signing_secret (masked), escalation_channel_id, request_url, updated_at}`.", body = serde_json::Value),
    (status = 404, description = "No such channel, or no interactivity set for it.", body = ErrorBody),
))]
pub async fn get_interactivity(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = state.notifier.interactivity(&id).await?;
    Ok(HttpResponse::Ok().json(interactivity_view(&row, &state.config.public_url)))
}

/// Sets (or replaces) a Slack app channel's signing secret and escalation channel.
#[utoipa::path(put, path = "/api/notifications/channels/{id}/interactivity", params(("id" = String, Path, description = "The channel's id.")), request_body = InteractivityInput, responses(
    (status = 200, description = "The interactivity, secret masked.", body = serde_json::Value),
    (status = 404, description = "No channel has that id.", body = ErrorBody),
    (status = 422, description = "Not a Slack app channel, an empty secret, or an unknown escalation channel.", body = ErrorBody),
))]
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
        &principal,
        "notify.interactivity.set",
        &id,
        json!({"escalation_channel_id": row.escalation_channel_id}),
        HttpResponse::Ok().json(interactivity_view(&row, &state.config.public_url)),
    )
    .await
}

/// Turns a channel's buttons off: clicks are no longer accepted.
#[utoipa::path(delete, path = "/api/notifications/channels/{id}/interactivity", params(("id" = String, Path, description = "The channel's id.")), responses(
    (status = 204, description = "Removed."),
    (status = 404, description = "No such channel, or no interactivity set for it.", body = ErrorBody),
))]
pub async fn delete_interactivity(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.notifier.remove_interactivity(&id).await?;
    audited(
        &state,
        &principal,
        "notify.interactivity.delete",
        &id,
        json!({}),
        HttpResponse::NoContent().finish(),
    )
    .await
}

/// Slack users and the billmirror role each acts with from chat.
#[utoipa::path(get, path = "/api/notifications/slack-users", params(PageQuery), responses(
    (status = 200, description = "`{data: [{slack_user_id, role, name, updated_at}], next}`.", body = serde_json::Value),
    (status = 400, description = "A bad query parameter (`invalid_query`).", body = ErrorBody),
))]
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

/// Maps a Slack user id (`U…`) to a billmirror role.
#[utoipa::path(put, path = "/api/notifications/slack-users/{id}", params(("id" = String, Path, description = "The Slack user id (`U…`).")), request_body = SlackUserInput, responses(
    (status = 200, description = "`{slack_user_id, role, name, updated_at}`.", body = serde_json::Value),
    (status = 422, description = "An unknown role or a malformed Slack user id.", body = ErrorBody),
))]
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
        &principal,
        "notify.slack_user.set",
        &row.slack_user_id,
        json!({"role": row.role}),
        HttpResponse::Ok().json(slack_user_view(&row)),
    )
    .await
}

/// Forgets a Slack user's role: their clicks act with the least role again.
#[utoipa::path(delete, path = "/api/notifications/slack-users/{id}", params(("id" = String, Path, description = "The Slack user id (`U…`).")), responses(
    (status = 204, description = "Removed."),
    (status = 404, description = "No role is stored for that user.", body = ErrorBody),
))]
pub async fn delete_slack_user(
    state: web::Data<AppState>,
    principal: web::ReqData<Principal>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.notifier.remove_slack_user(&id).await?;
    audited(
        &state,
        &principal,
        "notify.slack_user.delete",
        &id,
        json!({}),
        HttpResponse::NoContent().finish(),
    )
    .await
}
