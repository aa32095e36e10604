//! What ops manage through `/api/notifications`: channels (each secret checked for its kind,
//! sealed by the vault, shown only masked), rules, a channel's test message and its delivery
//! log. Input is checked here, field by field, into stable error codes.

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::deliver::secret_context;
use super::format::secret_key_bytes;
use super::Notifier;
use crate::domain::money::{display, Currency};
use crate::domain::states::{
    ChannelKind, ChannelStatus, DeliveryKind, DeliveryState, Family, Redaction, RuleMode,
};
use crate::domain::time::rfc3339;
use crate::domain::{ids, secret, time, Secret};
use crate::storage::notify::{self as store, ChannelRow, DeliveryRow, RuleRow};
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A field the request got wrong: its stable code and the field's name.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: &'static str,
        message: String,
    },
    #[error("no {0} has that id")]
    NotFound(&'static str),
    #[error("{0}")]
    InUse(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn invalid(code: &'static str, field: &'static str, message: impl Into<String>) -> NotifyError {
    NotifyError::Invalid {
        code,
        field,
        message: message.into(),
    }
}

/// Reads a present `null` as `Some(None)`, so an update can clear a field.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A channel to create, or the fields of one to change. Not `Debug`: it holds the secret.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    pub kind: Option<ChannelKind>,
    pub name: Option<String>,
    /// Slack app: the bot token (`xoxb-…`); Slack-format and Teams webhooks: the webhook URL;
    /// generic webhook: the signing secret (`whsec_…`).
    pub secret: Option<String>,
    /// Slack app: the channel id; generic webhook: its URL.
    pub target: Option<String>,
    /// Slack app: the Web API's base URL (tests point it at a fake Slack).
    #[serde(default, deserialize_with = "nullable")]
    pub api_base: Option<Option<String>>,
    pub redaction: Option<Redaction>,
    pub rate_per_minute: Option<i32>,
    /// `active` repairs a broken channel (its failed messages are retried through `/api/jobs`).
    pub status: Option<ChannelStatus>,
}

fn http_url(value: &str, field: &'static str) -> Result<String, NotifyError> {
    let value = value.trim();
    let parsed = reqwest::Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    match parsed {
        Some(_) => Ok(value.to_owned()),
        None => Err(invalid(
            "invalid_url",
            field,
            format!("`{field}` must be an http or https URL."),
        )),
    }
}

/// A secret as answers show it: a webhook URL as its host and last four characters, a token
/// or signing secret as its kind and last four.
pub fn mask_secret(kind: ChannelKind, value: &str) -> String {
    let tail: String = {
        let chars: Vec<char> = value.trim().chars().collect();
        if chars.len() >= 16 {
            chars[chars.len() - 4..].iter().collect()
        } else {
            String::new()
        }
    };
    match kind {
        ChannelKind::SlackWebhook | ChannelKind::Teams => match reqwest::Url::parse(value.trim()) {
            Ok(url) => format!(
                "{}://{}/…{tail}",
                url.scheme(),
                url.host_str().unwrap_or("")
            ),
            Err(_) => "…".to_owned(),
        },
        ChannelKind::SlackApp => match value.trim().get(..5) {
            Some(prefix @ ("xoxb-" | "xoxp-")) => format!("{prefix}…{tail}"),
            _ => format!("…{tail}"),
        },
        ChannelKind::Webhook => secret::mask(value),
    }
}

/// Checks the secret, target and base URL a kind needs; returns them cleaned.
fn check_kind(
    kind: ChannelKind,
    secret: &str,
    target: Option<&str>,
    api_base: Option<&str>,
) -> Result<(Option<String>, Option<String>), NotifyError> {
    let secret = secret.trim();
    let target = target.map(str::trim).filter(|t| !t.is_empty());
    if api_base.is_some() && kind != ChannelKind::SlackApp {
        return Err(invalid(
            "invalid_input",
            "api_base",
            "`api_base` is only for a Slack app channel.",
        ));
    }
    match kind {
        ChannelKind::SlackApp => {
            if !secret.starts_with("xoxb-") || secret.len() < 12 {
                return Err(invalid("invalid_secret", "secret", "A Slack app channel needs the app's bot token (xoxb-…), from OAuth & Permissions."));
            }
            let Some(target) = target.filter(|t| !t.contains(char::is_whitespace)) else {
                return Err(invalid("invalid_target", "target", "A Slack app channel needs `target`: the channel's id (C0123ABCD), in which the app was invited."));
            };
            let base = api_base.map(|b| http_url(b, "api_base")).transpose()?;
            Ok((Some(target.to_owned()), base))
        }
        ChannelKind::SlackWebhook | ChannelKind::Teams => {
            http_url(secret, "secret")?;
            if target.is_some() {
                return Err(invalid(
                    "invalid_target",
                    "target",
                    "This kind of channel takes its webhook URL as `secret` and no `target`.",
                ));
            }
            Ok((None, None))
        }
        ChannelKind::Webhook => {
            if secret_key_bytes(secret).is_none() {
                return Err(invalid("invalid_secret", "secret", "A webhook channel needs a Standard Webhooks signing secret: whsec_ followed by base64."));
            }
            let Some(target) = target else {
                return Err(invalid(
                    "invalid_target",
                    "target",
                    "A webhook channel needs `target`: the URL to post to.",
                ));
            };
            Ok((Some(http_url(target, "target")?), None))
        }
    }
}

fn check_name(name: &str) -> Result<String, NotifyError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid(
            "invalid_input",
            "name",
            "`name` must be 1 to 100 characters.",
        ));
    }
    Ok(name.to_owned())
}

fn check_rate(rate: i32) -> Result<i32, NotifyError> {
    if !(1..=600).contains(&rate) {
        return Err(invalid(
            "invalid_input",
            "rate_per_minute",
            "`rate_per_minute` must be 1 to 600 (Slack allows about 60).",
        ));
    }
    Ok(rate)
}

pub fn channel_view(row: &ChannelRow) -> Value {
    let t = |at: Option<chrono::NaiveDateTime>| at.map(rfc3339);
    json!({
        "id": row.id, "kind": row.kind, "name": row.name, "secret": row.secret_hint,
        "target": row.target, "api_base": row.api_base, "redaction": row.redaction,
        "rate_per_minute": row.rate_per_minute,
        "health": {
            "status": row.status, "broken_reason": row.broken_reason,
            "last_ok_at": t(row.last_ok_at), "last_failure_at": t(row.last_failure_at),
            "last_error": row.last_error,
        },
        "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
    })
}

pub fn delivery_view(row: &DeliveryRow) -> Value {
    json!({
        "id": row.id, "kind": row.kind, "status": row.status, "family": row.family,
        "event_id": row.event_id, "rule_id": row.rule_id, "connection_id": row.connection_id,
        "subject": row.subject, "amount": row.amount, "currency": row.currency,
        "amount_display": row.amount.zip(row.currency.as_deref()).map(|(a, c)| display(a, c)),
        "events_counted": match row.kind { DeliveryKind::Digest => i64::from(row.members), DeliveryKind::Event => 1, DeliveryKind::Test => 0 },
        "digest_id": row.digest_id, "message_id": row.provider_message_id, "thread_ts": row.thread_ts,
        "attempts": row.attempts, "last_error": row.last_error,
        "occurred_at": rfc3339(row.occurred_at), "created_at": rfc3339(row.created_at),
        "sent_at": row.sent_at.map(rfc3339),
    })
}

/// A rule to create, or the fields of one to change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: Option<String>,
    pub channel_id: Option<String>,
    pub families: Option<Vec<Family>>,
    /// `null` (or absent on create): every connection.
    #[serde(default, deserialize_with = "nullable")]
    pub connection_ids: Option<Option<Vec<String>>>,
    pub mode: Option<RuleMode>,
    #[serde(default, deserialize_with = "nullable")]
    pub min_amount: Option<Option<MinAmount>>,
    /// `null`: the channel's.
    #[serde(default, deserialize_with = "nullable")]
    pub redaction: Option<Option<Redaction>>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MinAmount {
    pub amount: i64,
    pub currency: String,
}

pub fn rule_view(row: &RuleRow) -> Value {
    let families: Vec<&str> = row.families.split(',').filter(|f| !f.is_empty()).collect();
    let connections: Option<Vec<&str>> = row
        .connection_ids
        .as_deref()
        .map(|c| c.split(',').filter(|f| !f.is_empty()).collect());
    json!({
        "id": row.id, "name": row.name, "channel_id": row.channel_id, "families": families,
        "connection_ids": connections, "mode": row.mode,
        "min_amount": row.min_amount.zip(row.min_currency.as_deref()).map(|(a, c)| json!({"amount": a, "currency": c, "amount_display": display(a, c)})),
        "redaction": row.redaction, "enabled": row.enabled,
        "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
    })
}

impl Notifier {
    pub async fn create_channel(&self, input: ChannelInput) -> Result<ChannelRow, NotifyError> {
        let kind = input.kind.ok_or_else(|| {
            invalid(
                "invalid_input",
                "kind",
                "`kind` is required: slack_app, slack_webhook, teams or webhook.",
            )
        })?;
        let name = check_name(input.name.as_deref().unwrap_or(""))?;
        let secret = input
            .secret
            .ok_or_else(|| invalid("invalid_secret", "secret", "`secret` is required."))?;
        let (target, api_base) = check_kind(
            kind,
            &secret,
            input.target.as_deref(),
            input.api_base.flatten().as_deref(),
        )?;
        let rate = check_rate(input.rate_per_minute.unwrap_or(60))?;
        if input.status.is_some() {
            return Err(invalid(
                "invalid_input",
                "status",
                "A new channel is active.",
            ));
        }
        let now = time::now();
        let id = ids::new_id("nch");
        let secret = Secret::new(secret.trim());
        let row = ChannelRow {
            secret_enc: self.vault.seal(&secret, &secret_context(&id)),
            secret_hint: mask_secret(kind, secret.expose()),
            id,
            kind,
            name,
            target,
            api_base,
            redaction: input.redaction.unwrap_or(Redaction::Masked),
            rate_per_minute: rate,
            status: ChannelStatus::Active,
            broken_reason: None,
            last_ok_at: None,
            last_failure_at: None,
            last_error: None,
            next_send_at: now,
            created_at: now,
            updated_at: now,
        };
        let stored = row.clone();
        self.db
            .run(move |conn| store::insert_channel(conn, &stored))
            .await?;
        tracing::info!(channel.id = %row.id, kind = %row.kind, "chat channel created");
        Ok(row)
    }

    pub async fn channel(&self, id: &str) -> Result<ChannelRow, NotifyError> {
        let id = id.to_owned();
        self.db
            .run(move |conn| store::find_channel(conn, &id))
            .await?
            .ok_or(NotifyError::NotFound("channel"))
    }

    pub async fn update_channel(
        &self,
        id: &str,
        input: ChannelInput,
    ) -> Result<ChannelRow, NotifyError> {
        let mut row = self.channel(id).await?;
        if input.kind.is_some_and(|k| k != row.kind) {
            return Err(invalid(
                "kind_fixed",
                "kind",
                "A channel's kind cannot change: make a new channel.",
            ));
        }
        if let Some(name) = &input.name {
            row.name = check_name(name)?;
        }
        let secret = match &input.secret {
            Some(secret) => Secret::new(secret.trim()),
            None => self
                .vault
                .open(&row.secret_enc, &secret_context(&row.id))
                .map_err(|e| NotifyError::Storage(StorageError::Unavailable(e.to_string())))?,
        };
        let target = input.target.clone().or(row.target.clone());
        let api_base = match &input.api_base {
            Some(base) => base.clone(),
            None => row.api_base.clone(),
        };
        let (target, api_base) = check_kind(
            row.kind,
            secret.expose(),
            target.as_deref(),
            api_base.as_deref(),
        )?;
        row.target = target;
        row.api_base = api_base;
        if input.secret.is_some() {
            row.secret_enc = self.vault.seal(&secret, &secret_context(&row.id));
            row.secret_hint = mask_secret(row.kind, secret.expose());
        }
        if let Some(rate) = input.rate_per_minute {
            row.rate_per_minute = check_rate(rate)?;
        }
        if let Some(level) = input.redaction {
            row.redaction = level;
        }
        match input.status {
            Some(ChannelStatus::Active) => {
                row.status = ChannelStatus::Active;
                row.broken_reason = None;
            }
            Some(ChannelStatus::Broken) => {
                return Err(invalid(
                    "invalid_input",
                    "status",
                    "Only `active` can be set: a channel is broken by its service's refusals.",
                ));
            }
            None => {}
        }
        row.updated_at = time::now();
        let stored = row.clone();
        self.db
            .run(move |conn| store::update_channel(conn, &stored))
            .await?;
        Ok(row)
    }

    /// Deletes a channel no rule posts to; its waiting messages are dropped (their jobs end
    /// `cancelled`).
    pub async fn delete_channel(&self, id: &str) -> Result<(), NotifyError> {
        let id = id.to_owned();
        self.db
            .run(move |conn| {
                Ok(conn.write_transaction(|conn| {
                    if store::find_channel(conn, &id)?.is_none() {
                        return Err(NotifyError::NotFound("channel"));
                    }
                    let rules = store::rules_of_channel(conn, &id)?;
                    if rules > 0 {
                        return Err(NotifyError::InUse(format!("{rules} rule(s) post to this channel: delete them or move them to another channel first.")));
                    }
                    store::delete_channel(conn, &id)?;
                    Ok(())
                }))
            })
            .await?
    }

    /// Posts a test message now, whatever the channel's state, and records how it went (a
    /// success repairs a broken channel). Returns the delivery.
    pub async fn test_channel(&self, id: &str) -> Result<DeliveryRow, NotifyError> {
        let channel = self.channel(id).await?;
        let now = time::now();
        let delivery = DeliveryRow {
            status: DeliveryState::Sending,
            attempts: 1,
            ..DeliveryRow::new(DeliveryKind::Test, &channel.id, "{}".into(), now)
        };
        let delivery_id = delivery.id.clone();
        let stored = delivery.clone();
        self.db
            .run(move |conn| store::insert_delivery(conn, &stored))
            .await?;
        self.post(&channel, &delivery).await?;
        let key = delivery_id.clone();
        let row = self
            .db
            .run(move |conn| {
                // A test message is not queued behind others: waiting or failing, it is over.
                store::move_delivery(
                    conn,
                    &key,
                    DeliveryState::Pending,
                    DeliveryState::Failed,
                    None,
                )?;
                store::find_delivery(conn, &key)
            })
            .await?
            .ok_or(NotifyError::NotFound("delivery"))?;
        Ok(row)
    }

    pub async fn deliveries(
        &self,
        channel_id: &str,
        digest: Option<String>,
        after: Option<String>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, NotifyError> {
        self.channel(channel_id).await?;
        let id = channel_id.to_owned();
        Ok(self
            .db
            .run(move |conn| {
                store::list_deliveries(conn, &id, digest.as_deref(), after.as_deref(), limit)
            })
            .await?)
    }

    pub async fn create_rule(&self, input: RuleInput) -> Result<RuleRow, NotifyError> {
        let now = time::now();
        let mut row = RuleRow {
            id: ids::new_id("nru"),
            name: String::new(),
            channel_id: input.channel_id.clone().ok_or_else(|| {
                invalid("invalid_input", "channel_id", "`channel_id` is required.")
            })?,
            families: String::new(),
            connection_ids: None,
            mode: RuleMode::Any,
            min_amount: None,
            min_currency: None,
            redaction: None,
            enabled: true,
            created_at: now,
            updated_at: now,
        };
        if input.families.is_none() {
            return Err(invalid("invalid_input", "families", "`families` is required: payment_failed, invoice_paid, dispute, customer_updated, subscription, refund, ops."));
        }
        row.name = input.name.clone().unwrap_or_else(|| "rule".to_owned());
        apply_rule(&mut row, input)?;
        self.check_channel_exists(&row.channel_id).await?;
        let stored = row.clone();
        self.db
            .run(move |conn| store::insert_rule(conn, &stored))
            .await?;
        Ok(row)
    }

    async fn check_channel_exists(&self, id: &str) -> Result<(), NotifyError> {
        match self.channel(id).await {
            Err(NotifyError::NotFound(_)) => Err(invalid(
                "unknown_channel",
                "channel_id",
                "No channel has that id.",
            )),
            other => other.map(|_| ()),
        }
    }

    pub async fn rule(&self, id: &str) -> Result<RuleRow, NotifyError> {
        let id = id.to_owned();
        self.db
            .run(move |conn| store::find_rule(conn, &id))
            .await?
            .ok_or(NotifyError::NotFound("rule"))
    }

    pub async fn update_rule(&self, id: &str, input: RuleInput) -> Result<RuleRow, NotifyError> {
        let mut row = self.rule(id).await?;
        apply_rule(&mut row, input)?;
        self.check_channel_exists(&row.channel_id).await?;
        row.updated_at = time::now();
        let stored = row.clone();
        self.db
            .run(move |conn| store::update_rule(conn, &stored))
            .await?;
        Ok(row)
    }

    pub async fn delete_rule(&self, id: &str) -> Result<(), NotifyError> {
        let id = id.to_owned();
        if self
            .db
            .run(move |conn| store::delete_rule(conn, &id))
            .await?
        {
            Ok(())
        } else {
            Err(NotifyError::NotFound("rule"))
        }
    }
}

/// Writes the given fields of `input` into `row`, checking each.
fn apply_rule(row: &mut RuleRow, input: RuleInput) -> Result<(), NotifyError> {
    if let Some(name) = &input.name {
        row.name = check_name(name)?;
    }
    if let Some(channel) = input.channel_id {
        row.channel_id = channel;
    }
    if let Some(families) = input.families {
        if families.is_empty() {
            return Err(invalid(
                "invalid_input",
                "families",
                "`families` names at least one family.",
            ));
        }
        let mut words: Vec<&str> = families.iter().map(|f| f.as_str()).collect();
        words.sort_unstable();
        words.dedup();
        row.families = words.join(",");
    }
    if let Some(connections) = input.connection_ids {
        row.connection_ids = match connections {
            None => None,
            Some(ids)
                if ids.is_empty()
                    || ids
                        .iter()
                        .any(|id| id.trim().is_empty() || id.contains(',')) =>
            {
                return Err(invalid(
                    "invalid_input",
                    "connection_ids",
                    "`connection_ids` lists connection ids, or is null for every connection.",
                ));
            }
            Some(ids) => Some(ids.iter().map(|id| id.trim()).collect::<Vec<_>>().join(",")),
        };
    }
    if let Some(mode) = input.mode {
        row.mode = mode;
    }
    if let Some(min) = input.min_amount {
        match min {
            None => (row.min_amount, row.min_currency) = (None, None),
            Some(min) => {
                let currency = Currency::parse(&min.currency).ok_or_else(|| {
                    invalid(
                        "invalid_currency",
                        "min_amount.currency",
                        "`min_amount.currency` is not a currency Stripe charges in.",
                    )
                })?;
                if min.amount < 0 {
                    return Err(invalid(
                        "invalid_amount",
                        "min_amount.amount",
                        "`min_amount.amount` is a whole number of minor units, 0 or more.",
                    ));
                }
                (row.min_amount, row.min_currency) =
                    (Some(min.amount), Some(currency.code().to_owned()));
            }
        }
    }
    if let Some(level) = input.redaction {
        row.redaction = level;
    }
    if let Some(enabled) = input.enabled {
        row.enabled = enabled;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_checks_what_it_needs() {
        let ok = check_kind(
            ChannelKind::SlackApp,
            "xoxb-1234-abcdefgh",
            Some("C0123"),
            None,
        )
        .unwrap();
        assert_eq!(ok, (Some("C0123".into()), None));
        assert!(
            check_kind(
                ChannelKind::SlackApp,
                "xoxp-1234-abcdefgh",
                Some("C0123"),
                None
            )
            .is_err(),
            "a bot token"
        );
        assert!(
            check_kind(ChannelKind::SlackApp, "xoxb-1234-abcdefgh", None, None).is_err(),
            "a channel"
        );
        assert!(check_kind(
            ChannelKind::SlackWebhook,
            "https://hooks.slack.com/services/T/B/x",
            None,
            None
        )
        .is_ok());
        assert!(check_kind(ChannelKind::Teams, "not a url", None, None).is_err());
        assert!(check_kind(
            ChannelKind::Teams,
            "https://x.example/h",
            None,
            Some("https://slack")
        )
        .is_err());
        assert!(check_kind(
            ChannelKind::Webhook,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            Some("https://hooks.example.com/in"),
            None
        )
        .is_ok());
        assert!(check_kind(
            ChannelKind::Webhook,
            "whsec_not base64!",
            Some("https://hooks.example.com/in"),
            None
        )
        .is_err());
    }

    #[test]
    fn secrets_show_masked() {
        assert_eq!(
            mask_secret(
                ChannelKind::SlackWebhook,
                "https://hooks.slack.com/services/T0/B0/abcdefghijklmnopWXYZ"
            ),
            "https://hooks.slack.com/…WXYZ"
        );
        assert_eq!(
            mask_secret(ChannelKind::SlackApp, "xoxb-123456789-abcdefghWXYZ"),
            "xoxb-…WXYZ"
        );
        assert_eq!(
            mask_secret(
                ChannelKind::Webhook,
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            ),
            "whsec_…LaSw"
        );
    }
}
