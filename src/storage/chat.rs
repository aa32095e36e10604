//! Actions from chat: each Slack app channel's interactivity settings (its signing secret arrives
//! sealed by the vault), the Slack user → role mapping, one row per click (unique on Slack's
//! `{user}:{action_ts}`) and the follow-ups a click records on a customer. (Which ops alerts are
//! firing: `ops_alerts`.)

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    customer_follow_ups, notify_chat_actions, notify_interactivity, notify_slack_users,
};
use super::{DbConnection, StorageError};
use crate::domain::states::{ChatAction, ChatActionState, FollowUpKind};
use crate::domain::time;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = notify_interactivity, treat_none_as_null = true)]
pub struct InteractivityRow {
    pub channel_id: String,
    /// The Slack app's signing secret, sealed by the vault for this channel.
    pub signing_secret_enc: String,
    pub signing_secret_hint: String,
    /// The billmirror channel "notify legal/finance" posts to.
    pub escalation_channel_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = notify_slack_users, treat_none_as_null = true)]
pub struct SlackUserRow {
    pub slack_user_id: String,
    /// A billmirror role's word.
    pub role: String,
    pub name: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = notify_chat_actions)]
pub struct ChatActionRow {
    pub id: String,
    /// `slack:{user}:{action_ts}`: Slack's retry of a request carries the same one.
    pub dedupe_key: String,
    pub action: ChatAction,
    /// The message whose button was clicked.
    pub delivery_id: String,
    pub channel_id: String,
    pub connection_id: Option<String>,
    pub slack_user_id: String,
    pub slack_user_name: Option<String>,
    /// The billmirror role the Slack user had when clicking.
    pub role: String,
    /// Slack's `response_url`: where ephemeral answers go. A capability: never shown.
    pub response_url: Option<String>,
    pub status: ChatActionState,
    /// What happened, in a sentence (the thread says it too).
    pub result: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = customer_follow_ups)]
pub struct FollowUpRow {
    pub id: String,
    pub connection_id: String,
    /// Stripe's customer id.
    pub customer_id: String,
    pub kind: FollowUpKind,
    pub invoice_id: Option<String>,
    /// Who, as the audit log names them (`slack:U123 (Ada)`).
    pub actor: String,
    pub created_at: NaiveDateTime,
}

// Interactivity.

pub fn upsert_interactivity(
    conn: &mut DbConnection,
    row: &InteractivityRow,
) -> Result<(), StorageError> {
    let existing = find_interactivity(conn, &row.channel_id)?;
    match existing {
        Some(old) => {
            let row = InteractivityRow {
                created_at: old.created_at,
                ..row.clone()
            };
            diesel::update(notify_interactivity::table.find(&row.channel_id))
                .set(&row)
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(notify_interactivity::table)
                .values(row)
                .execute(conn)?;
        }
    }
    Ok(())
}

pub fn find_interactivity(
    conn: &mut DbConnection,
    channel_id: &str,
) -> Result<Option<InteractivityRow>, StorageError> {
    Ok(notify_interactivity::table
        .find(channel_id)
        .select(InteractivityRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn all_interactivity(conn: &mut DbConnection) -> Result<Vec<InteractivityRow>, StorageError> {
    Ok(notify_interactivity::table
        .select(InteractivityRow::as_select())
        .order(notify_interactivity::channel_id.asc())
        .load(conn)?)
}

pub fn delete_interactivity(
    conn: &mut DbConnection,
    channel_id: &str,
) -> Result<bool, StorageError> {
    Ok(diesel::delete(notify_interactivity::table.find(channel_id)).execute(conn)? == 1)
}

// Slack users.

pub fn upsert_slack_user(conn: &mut DbConnection, row: &SlackUserRow) -> Result<(), StorageError> {
    match find_slack_user(conn, &row.slack_user_id)? {
        Some(old) => {
            let row = SlackUserRow {
                created_at: old.created_at,
                ..row.clone()
            };
            diesel::update(notify_slack_users::table.find(&row.slack_user_id))
                .set(&row)
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(notify_slack_users::table)
                .values(row)
                .execute(conn)?;
        }
    }
    Ok(())
}

pub fn find_slack_user(
    conn: &mut DbConnection,
    slack_user_id: &str,
) -> Result<Option<SlackUserRow>, StorageError> {
    Ok(notify_slack_users::table
        .find(slack_user_id)
        .select(SlackUserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_slack_users(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<SlackUserRow>, StorageError> {
    let mut query = notify_slack_users::table
        .select(SlackUserRow::as_select())
        .order(notify_slack_users::slack_user_id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(notify_slack_users::slack_user_id.gt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

pub fn delete_slack_user(
    conn: &mut DbConnection,
    slack_user_id: &str,
) -> Result<bool, StorageError> {
    Ok(diesel::delete(notify_slack_users::table.find(slack_user_id)).execute(conn)? == 1)
}

// Clicks.

/// Stores the click unless its key is already there; `true` when it is new.
pub fn insert_action(conn: &mut DbConnection, row: &ChatActionRow) -> Result<bool, StorageError> {
    let inserted = match conn {
        DbConnection::Postgres(c) => diesel::insert_into(notify_chat_actions::table)
            .values(row)
            .on_conflict(notify_chat_actions::dedupe_key)
            .do_nothing()
            .execute(c)?,
        DbConnection::Sqlite(c) => diesel::insert_into(notify_chat_actions::table)
            .values(row)
            .on_conflict(notify_chat_actions::dedupe_key)
            .do_nothing()
            .execute(c)?,
    };
    Ok(inserted == 1)
}

pub fn find_action(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<ChatActionRow>, StorageError> {
    Ok(notify_chat_actions::table
        .find(id)
        .select(ChatActionRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn finish_action(
    conn: &mut DbConnection,
    id: &str,
    status: ChatActionState,
    result: &str,
) -> Result<(), StorageError> {
    diesel::update(notify_chat_actions::table.find(id))
        .set((
            notify_chat_actions::status.eq(status),
            notify_chat_actions::result.eq(Some(result)),
            notify_chat_actions::updated_at.eq(time::now()),
        ))
        .execute(conn)?;
    Ok(())
}

// Follow-ups.

pub fn insert_follow_up(conn: &mut DbConnection, row: &FollowUpRow) -> Result<(), StorageError> {
    diesel::insert_into(customer_follow_ups::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The follow-ups of these customers (Stripe ids), newest first.
pub fn follow_ups_of(
    conn: &mut DbConnection,
    customer_ids: &[String],
) -> Result<Vec<FollowUpRow>, StorageError> {
    if customer_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(customer_follow_ups::table
        .filter(customer_follow_ups::customer_id.eq_any(customer_ids))
        .select(FollowUpRow::as_select())
        .order((
            customer_follow_ups::created_at.desc(),
            customer_follow_ups::id.desc(),
        ))
        .load(conn)?)
}
