//! Clicks from Slack, on the request's side: check that Slack sent it, read the click, decide
//! whether the clicker may do it, and store it with a `chat_action` job, all within Slack's three
//! seconds. Nothing slow happens here: the job calls Stripe, posts the refusal or the result, and
//! updates the message.
//!
//! Also what ops manage for it: a Slack app channel's interactivity (its app's signing secret,
//! sealed; the escalation channel) and which billmirror role each Slack user has. A Slack user
//! nobody mapped is `support`, the least role.

use serde::Deserialize;
use serde_json::{json, Value};

use super::deliver::facts_of;
use super::facts::Facts;
use super::slack::{self, Click, Interaction, Refusal};
use super::Notifier;
use crate::domain::states::{ChannelKind, ChatAction, ChatActionState, ConnectionStatus, JobKind};
use crate::domain::{ids, secret, time, Role, Secret};
use crate::jobs::{enqueue, NewJob};
use crate::storage::chat::{self as store, ChatActionRow, InteractivityRow, SlackUserRow};
use crate::storage::notify as notify_store;
use crate::storage::tokens::audit;
use crate::storage::{DbConnection, StorageError};

use super::channels::NotifyError;

/// Why a request to `/slack/interactions` is refused.
#[derive(Debug, thiserror::Error)]
pub enum InteractionError {
    #[error("the request is not signed by a Slack app billmirror knows")]
    Unsigned(Refusal),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The role a click needs.
pub fn required_role(action: ChatAction) -> Role {
    match action {
        ChatAction::RetryPayment | ChatAction::SendInvoice => Role::Finance,
        ChatAction::MarkContacted | ChatAction::AssignBillingQueue | ChatAction::Escalate => {
            Role::Support
        }
    }
}

/// The vault context a channel's Slack signing secret is sealed under.
pub fn signing_context(channel_id: &str) -> String {
    format!("{channel_id}/slack_signing_secret")
}

/// How the audit log and the thread name a Slack user.
pub fn actor(user_id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("slack:{user_id} ({name})"),
        None => format!("slack:{user_id}"),
    }
}

/// The Stripe id an action is about, as the audit log's subject.
pub fn subject_of(action: ChatAction, facts: &Facts) -> String {
    match action {
        ChatAction::RetryPayment | ChatAction::SendInvoice => facts.invoice_id.clone(),
        ChatAction::MarkContacted | ChatAction::AssignBillingQueue => facts.customer_id.clone(),
        ChatAction::Escalate => None,
    }
    .unwrap_or_else(|| facts.object_id.clone())
}

/// What the clicker sees when refused, or `None` when the click may go ahead. Pure but for
/// what `conn` says about the connection and the escalation channel.
fn refusal(
    conn: &mut DbConnection,
    action: ChatAction,
    role: Role,
    facts: &Facts,
    settings: &InteractivityRow,
) -> Result<Option<String>, StorageError> {
    let needed = required_role(action);
    if !role.allows(needed) {
        return Ok(Some(format!(
            "You can't do that from Slack: it needs the billmirror role `{needed}`, and your \
             Slack user has `{role}`. Ask an ops person to map your Slack user \
             (/api/notifications/slack-users)."
        )));
    }
    match action {
        ChatAction::RetryPayment | ChatAction::SendInvoice => {
            if facts.invoice_id.is_none() {
                return Ok(Some("This message names no invoice to act on.".into()));
            }
            let connection = crate::storage::connections::find(conn, &facts.connection_id)?;
            let writable = connection
                .as_ref()
                .is_some_and(|c| c.status == ConnectionStatus::Active && c.can_push);
            if !writable {
                return Ok(Some(format!(
                    "The Stripe connection {} cannot write (its key is read-only, or it is \
                     disconnected), so billmirror cannot do this.",
                    facts.connection_id
                )));
            }
        }
        ChatAction::MarkContacted | ChatAction::AssignBillingQueue => {
            if facts.customer_id.is_none() {
                return Ok(Some("This message names no customer.".into()));
            }
        }
        ChatAction::Escalate => {
            let target = match &settings.escalation_channel_id {
                Some(id) => notify_store::find_channel(conn, id)?,
                None => None,
            };
            if target.is_none() {
                return Ok(Some(
                    "No escalation channel is configured for this Slack channel; ask ops to set \
                     one (/api/notifications/channels/{id}/interactivity)."
                        .into(),
                ));
            }
        }
    }
    Ok(None)
}

impl Notifier {
    /// Checks a request to `/slack/interactions` and stores each click with its job. Returns
    /// how many clicks were taken (0: a link button, a retried request, something else).
    pub async fn receive_interaction(
        &self,
        timestamp: Option<String>,
        signature: Option<String>,
        body: Vec<u8>,
    ) -> Result<usize, InteractionError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(InteractionError::Unsigned(Refusal::Malformed));
        };
        let configured = self.db.run(store::all_interactivity).await?;
        let now = chrono::Utc::now().timestamp();
        // Every configured app's secret is tried: the request says which app it is only in the
        // body, which is not read before it is verified.
        let mut signed_for: Vec<InteractivityRow> = Vec::new();
        let mut worst = Refusal::BadSignature;
        for row in configured {
            let Ok(secret) = self
                .vault
                .open(&row.signing_secret_enc, &signing_context(&row.channel_id))
            else {
                tracing::warn!(channel.id = %row.channel_id, "a Slack signing secret cannot be opened");
                continue;
            };
            match slack::verify(
                secret.expose().as_bytes(),
                &timestamp,
                &signature,
                &body,
                now,
            ) {
                Ok(()) => signed_for.push(row),
                Err(Refusal::BadSignature) => {}
                Err(other) => worst = other,
            }
        }
        if signed_for.is_empty() {
            return Err(InteractionError::Unsigned(worst));
        }
        let clicks = match slack::parse(&body).map_err(InteractionError::Invalid)? {
            Interaction::Ignored(what) => {
                tracing::debug!(what = %what, "a Slack interaction with nothing for billmirror to do");
                return Ok(0);
            }
            Interaction::Clicks(clicks) => clicks,
        };
        let taken = self
            .db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    let mut taken = 0;
                    for click in &clicks {
                        if store_click(conn, click, &signed_for)? {
                            taken += 1;
                        }
                    }
                    Ok::<_, StorageError>(taken)
                })
            })
            .await?;
        if taken > 0 {
            self.wakers.wake(JobKind::ChatAction);
        }
        Ok(taken)
    }
}

/// Stores one click (refused or to do) with its job; `false` when Slack sent it before or it is
/// not on a message of a channel whose app signed the request.
fn store_click(
    conn: &mut DbConnection,
    click: &Click,
    signed_for: &[InteractivityRow],
) -> Result<bool, StorageError> {
    let Some(delivery) = notify_store::find_delivery(conn, &click.delivery_id)? else {
        tracing::warn!(delivery.id = %click.delivery_id, "a click on a message billmirror does not know");
        return Ok(false);
    };
    let Some(settings) = signed_for
        .iter()
        .find(|s| s.channel_id == delivery.channel_id)
    else {
        tracing::warn!(channel.id = %delivery.channel_id, "a click signed by another channel's Slack app");
        return Ok(false);
    };
    let Some(facts) = facts_of(conn, &delivery.facts)? else {
        return Ok(false);
    };
    let role = store::find_slack_user(conn, &click.user_id)?
        .and_then(|u| u.role.parse::<Role>().ok())
        .unwrap_or(Role::Support);
    let refused = refusal(conn, click.action, role, &facts, settings)?;
    let now = time::now();
    let row = ChatActionRow {
        id: ids::new_id("cac"),
        dedupe_key: format!("slack:{}:{}", click.user_id, click.action_ts),
        action: click.action,
        delivery_id: delivery.id.clone(),
        channel_id: delivery.channel_id.clone(),
        connection_id: Some(facts.connection_id.clone()),
        slack_user_id: click.user_id.clone(),
        slack_user_name: click.user_name.clone(),
        role: role.as_str().to_owned(),
        response_url: click.response_url.clone(),
        status: if refused.is_some() {
            ChatActionState::Refused
        } else {
            ChatActionState::Pending
        },
        result: refused.clone(),
        created_at: now,
        updated_at: now,
    };
    if !store::insert_action(conn, &row)? {
        tracing::info!(action = %click.action, "a click Slack sent again; acted on once");
        return Ok(false);
    }
    if let Some(why) = &refused {
        audit(
            conn,
            &actor(&click.user_id, click.user_name.as_deref()),
            &format!("chat.{}", click.action),
            &subject_of(click.action, &facts),
            json!({"via": "slack", "slack_user": click.user_id, "role": role, "result": "refused",
                   "reason": why, "action_id": row.id, "channel_id": delivery.channel_id}),
        )?;
    }
    enqueue(
        conn,
        &NewJob {
            kind: JobKind::ChatAction,
            subject_id: &row.id,
            connection_id: &facts.connection_id,
            payload: None,
            dedupe_key: &row.id,
        },
    )?;
    Ok(true)
}

// What ops manage.

/// A channel's interactivity to set. Not `Debug`: it holds the secret.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractivityInput {
    /// The Slack app's signing secret (Basic Information → App Credentials).
    pub signing_secret: String,
    /// The billmirror channel "Notify legal/finance" posts to.
    pub escalation_channel_id: Option<String>,
}

pub fn interactivity_view(row: &InteractivityRow, public_url: &str) -> Value {
    json!({
        "channel_id": row.channel_id,
        "signing_secret": row.signing_secret_hint,
        "escalation_channel_id": row.escalation_channel_id,
        "request_url": format!("{}/slack/interactions", public_url.trim_end_matches('/')),
        "created_at": time::rfc3339(row.created_at),
        "updated_at": time::rfc3339(row.updated_at),
    })
}

/// A Slack user's role to set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackUserInput {
    pub role: String,
    pub name: Option<String>,
}

pub fn slack_user_view(row: &SlackUserRow) -> Value {
    json!({
        "slack_user_id": row.slack_user_id, "role": row.role, "name": row.name,
        "created_at": time::rfc3339(row.created_at), "updated_at": time::rfc3339(row.updated_at),
    })
}

fn invalid(code: &'static str, field: &'static str, message: impl Into<String>) -> NotifyError {
    NotifyError::Invalid {
        code,
        field,
        message: message.into(),
    }
}

impl Notifier {
    /// Sets a Slack app channel's signing secret (sealed) and escalation channel.
    pub async fn set_interactivity(
        &self,
        channel_id: &str,
        input: InteractivityInput,
    ) -> Result<InteractivityRow, NotifyError> {
        let channel = self.channel(channel_id).await?;
        if channel.kind != ChannelKind::SlackApp {
            return Err(invalid(
                "not_a_slack_app",
                "channel",
                "Only a Slack app channel has buttons that act; this channel is another kind.",
            ));
        }
        let signing = input.signing_secret.trim().to_owned();
        // Slack's signing secrets are 32 hexadecimal characters.
        if signing.len() < 16 || !signing.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(
                "invalid_secret",
                "signing_secret",
                "`signing_secret` must be the Slack app's signing secret (Basic Information → \
                 App Credentials), 32 hexadecimal characters.",
            ));
        }
        if let Some(target) = &input.escalation_channel_id {
            if target == channel_id {
                return Err(invalid(
                    "invalid_input",
                    "escalation_channel_id",
                    "Escalations go to another channel than the one they come from.",
                ));
            }
            if self.channel(target).await.is_err() {
                return Err(invalid(
                    "unknown_channel",
                    "escalation_channel_id",
                    "`escalation_channel_id` names no channel.",
                ));
            }
        }
        let now = time::now();
        let row = InteractivityRow {
            channel_id: channel_id.to_owned(),
            signing_secret_enc: self
                .vault
                .seal(&Secret::new(signing.clone()), &signing_context(channel_id)),
            signing_secret_hint: secret::mask(&signing),
            escalation_channel_id: input.escalation_channel_id,
            created_at: now,
            updated_at: now,
        };
        let stored = row.clone();
        self.db
            .run(move |conn| store::upsert_interactivity(conn, &stored))
            .await?;
        let id = channel_id.to_owned();
        self.db
            .run(move |conn| store::find_interactivity(conn, &id))
            .await?
            .ok_or(NotifyError::NotFound("interactivity"))
    }

    pub async fn interactivity(&self, channel_id: &str) -> Result<InteractivityRow, NotifyError> {
        let id = channel_id.to_owned();
        self.db
            .run(move |conn| store::find_interactivity(conn, &id))
            .await?
            .ok_or(NotifyError::NotFound("interactivity for that channel"))
    }

    pub async fn remove_interactivity(&self, channel_id: &str) -> Result<(), NotifyError> {
        let id = channel_id.to_owned();
        if !self
            .db
            .run(move |conn| store::delete_interactivity(conn, &id))
            .await?
        {
            return Err(NotifyError::NotFound("interactivity for that channel"));
        }
        Ok(())
    }

    pub async fn set_slack_user(
        &self,
        slack_user_id: &str,
        input: SlackUserInput,
    ) -> Result<SlackUserRow, NotifyError> {
        let id = slack_user_id.trim();
        // Slack's user ids: U… or W…, upper-case letters and digits.
        if id.len() < 3
            || id.len() > 32
            || !id.starts_with(['U', 'W'])
            || !id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(invalid(
                "invalid_slack_user",
                "slack_user_id",
                "A Slack user id looks like U012AB3CD (Profile → ⋮ → Copy member ID).",
            ));
        }
        let role: Role = input
            .role
            .parse()
            .map_err(|e: String| invalid("invalid_role", "role", e))?;
        let name = input
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        if name.as_ref().is_some_and(|n| n.chars().count() > 100) {
            return Err(invalid(
                "invalid_input",
                "name",
                "`name` is at most 100 characters.",
            ));
        }
        let now = time::now();
        let row = SlackUserRow {
            slack_user_id: id.to_owned(),
            role: role.as_str().to_owned(),
            name,
            created_at: now,
            updated_at: now,
        };
        let stored = row.clone();
        let key = id.to_owned();
        self.db
            .run(move |conn| {
                store::upsert_slack_user(conn, &stored)?;
                store::find_slack_user(conn, &key)
            })
            .await?
            .ok_or(NotifyError::NotFound("Slack user"))
    }

    pub async fn remove_slack_user(&self, slack_user_id: &str) -> Result<(), NotifyError> {
        let id = slack_user_id.to_owned();
        if !self
            .db
            .run(move |conn| store::delete_slack_user(conn, &id))
            .await?
        {
            return Err(NotifyError::NotFound("Slack user"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_moving_clicks_need_finance_and_the_rest_support() {
        assert_eq!(required_role(ChatAction::RetryPayment), Role::Finance);
        assert_eq!(required_role(ChatAction::SendInvoice), Role::Finance);
        for action in [
            ChatAction::MarkContacted,
            ChatAction::AssignBillingQueue,
            ChatAction::Escalate,
        ] {
            assert_eq!(required_role(action), Role::Support);
        }
        assert!(!Role::Support.allows(required_role(ChatAction::RetryPayment)));
        assert!(Role::Ops.allows(required_role(ChatAction::SendInvoice)));
    }
}
