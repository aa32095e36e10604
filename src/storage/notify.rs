//! Chat notifications' tables: channels (their secret arrives sealed by the vault), rules, and
//! deliveries, one row per (event, rule) or digest, unique on its key so a message is posted once
//! ever. Also what a message reads from the ledger to say more than its event does.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    customers, invoices, notify_channels, notify_deliveries, notify_rules, notify_rules_version,
    payment_attempts, payments, subscriptions,
};
use super::{DbConnection, StorageError};
use crate::domain::states::{
    ChannelKind, ChannelStatus, DeliveryKind, DeliveryState, Family, Redaction, RuleMode,
};
use crate::domain::{ids, time};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = notify_channels, treat_none_as_null = true)]
pub struct ChannelRow {
    pub id: String,
    pub kind: ChannelKind,
    pub name: String,
    /// The bot token (Slack app), webhook URL (Slack-format, Teams) or signing secret (generic
    /// webhook), sealed by the vault for this row.
    pub secret_enc: String,
    /// The masked secret, for answers.
    pub secret_hint: String,
    /// The Slack channel id (Slack app) or the URL (generic webhook).
    pub target: Option<String>,
    /// Slack's Web API base for this channel; `None` is Slack's own.
    pub api_base: Option<String>,
    pub redaction: Redaction,
    pub rate_per_minute: i32,
    pub status: ChannelStatus,
    pub broken_reason: Option<String>,
    pub last_ok_at: Option<NaiveDateTime>,
    pub last_failure_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    /// Nothing is posted to the channel before this: its rate, or the service's `Retry-After`.
    pub next_send_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = notify_rules, treat_none_as_null = true)]
pub struct RuleRow {
    pub id: String,
    pub name: String,
    pub channel_id: String,
    /// Family words, comma-separated.
    pub families: String,
    /// Connection ids, comma-separated; `None` is every connection.
    pub connection_ids: Option<String>,
    pub mode: RuleMode,
    pub min_amount: Option<i64>,
    pub min_currency: Option<String>,
    /// Overrides the channel's redaction.
    pub redaction: Option<Redaction>,
    pub enabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = notify_deliveries)]
pub struct DeliveryRow {
    pub id: String,
    /// `{stripe event id}:{rule id}` for an event: one message per event and rule, ever.
    pub dedupe_key: String,
    pub kind: DeliveryKind,
    pub channel_id: String,
    pub rule_id: Option<String>,
    pub connection_id: Option<String>,
    /// Stripe's event id.
    pub event_id: Option<String>,
    pub family: Option<Family>,
    /// The object a thread is about (`invoice:in_…`): follow-ups go into its first message.
    pub subject: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// What the message says, as `notify::facts::Facts` JSON: fields read from the event, never
    /// its payload.
    pub facts: String,
    pub redaction: Option<Redaction>,
    /// When Stripe made the event (a digest: its newest member).
    pub occurred_at: NaiveDateTime,
    pub status: DeliveryState,
    /// The digest that counted this event.
    pub digest_id: Option<String>,
    /// How many events a digest counts.
    pub members: i32,
    /// Slack's `ts` of the posted message (the webhook id for a generic webhook).
    pub provider_message_id: Option<String>,
    /// The thread this message was posted in (the first message's `ts`).
    pub thread_ts: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

impl DeliveryRow {
    /// A new delivery of `kind` to `channel_id`, waiting for its job: a fresh id, known by
    /// `{kind}:{id}` until the caller gives it another key, about nothing in particular, nothing
    /// sent and nothing counted yet. Callers set what it is about with struct update syntax.
    pub fn new(
        kind: DeliveryKind,
        channel_id: &str,
        facts: String,
        now: NaiveDateTime,
    ) -> DeliveryRow {
        let id = ids::new_id("ndl");
        DeliveryRow {
            dedupe_key: format!("{kind}:{id}"),
            id,
            kind,
            channel_id: channel_id.to_owned(),
            rule_id: None,
            connection_id: None,
            event_id: None,
            family: None,
            subject: None,
            amount: None,
            currency: None,
            facts,
            redaction: None,
            occurred_at: now,
            status: DeliveryState::Pending,
            digest_id: None,
            members: 0,
            provider_message_id: None,
            thread_ts: None,
            attempts: 0,
            last_error: None,
            created_at: now,
            sent_at: None,
            updated_at: now,
        }
    }
}

// Channels.

pub fn insert_channel(conn: &mut DbConnection, row: &ChannelRow) -> Result<(), StorageError> {
    diesel::insert_into(notify_channels::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_channel(conn: &mut DbConnection, id: &str) -> Result<Option<ChannelRow>, StorageError> {
    Ok(notify_channels::table
        .find(id)
        .select(ChannelRow::as_select())
        .first(conn)
        .optional()?)
}

/// Channels in the order they were made; `after` is the previous page's last id.
pub fn list_channels(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<ChannelRow>, StorageError> {
    let mut query = notify_channels::table
        .select(ChannelRow::as_select())
        .order(notify_channels::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(notify_channels::id.gt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

pub fn update_channel(conn: &mut DbConnection, row: &ChannelRow) -> Result<(), StorageError> {
    diesel::update(notify_channels::table.find(&row.id))
        .set(row)
        .execute(conn)?;
    Ok(())
}

/// Deletes a channel; its waiting deliveries are skipped (their jobs then end `cancelled`).
pub fn delete_channel(conn: &mut DbConnection, id: &str) -> Result<bool, StorageError> {
    diesel::update(
        notify_deliveries::table
            .filter(notify_deliveries::channel_id.eq(id))
            .filter(notify_deliveries::status.eq(DeliveryState::Pending)),
    )
    .set((
        notify_deliveries::status.eq(DeliveryState::Skipped),
        notify_deliveries::updated_at.eq(time::now()),
    ))
    .execute(conn)?;
    Ok(diesel::delete(notify_channels::table.find(id)).execute(conn)? == 1)
}

/// Takes the channel's next turn to post: `true` when it was due and is now the caller's, the
/// next one `interval` later. One statement, so two runners (or instances) never share a turn.
pub fn take_turn(
    conn: &mut DbConnection,
    id: &str,
    now: NaiveDateTime,
    interval: chrono::TimeDelta,
) -> Result<bool, StorageError> {
    let taken = diesel::update(
        notify_channels::table
            .find(id)
            .filter(notify_channels::next_send_at.le(now)),
    )
    .set(notify_channels::next_send_at.eq(now + interval))
    .execute(conn)?;
    Ok(taken == 1)
}

/// Nothing is posted to the channel before `until` (a `Retry-After`).
pub fn hold_channel(
    conn: &mut DbConnection,
    id: &str,
    until: NaiveDateTime,
) -> Result<(), StorageError> {
    diesel::update(
        notify_channels::table
            .find(id)
            .filter(notify_channels::next_send_at.lt(until)),
    )
    .set(notify_channels::next_send_at.eq(until))
    .execute(conn)?;
    Ok(())
}

/// Records how the channel's last post went: `Ok` clears its failure; a failure is kept with
/// its reason, and `broken` stops the channel until a person repairs it.
pub fn record_health(
    conn: &mut DbConnection,
    id: &str,
    outcome: Result<(), (&str, bool)>,
) -> Result<(), StorageError> {
    let now = time::now();
    let target = notify_channels::table.find(id);
    match outcome {
        Ok(()) => diesel::update(target)
            .set((
                notify_channels::last_ok_at.eq(Some(now)),
                notify_channels::status.eq(ChannelStatus::Active),
                notify_channels::broken_reason.eq(None::<String>),
                notify_channels::updated_at.eq(now),
            ))
            .execute(conn)?,
        Err((error, broken)) => {
            diesel::update(target)
                .set((
                    notify_channels::last_failure_at.eq(Some(now)),
                    notify_channels::last_error.eq(Some(error)),
                    notify_channels::updated_at.eq(now),
                ))
                .execute(conn)?;
            if broken {
                diesel::update(target)
                    .set((
                        notify_channels::status.eq(ChannelStatus::Broken),
                        notify_channels::broken_reason.eq(Some(error)),
                    ))
                    .execute(conn)?;
            }
            1
        }
    };
    Ok(())
}

// Rules.

pub fn insert_rule(conn: &mut DbConnection, row: &RuleRow) -> Result<(), StorageError> {
    conn.write_transaction(|conn| {
        diesel::insert_into(notify_rules::table)
            .values(row)
            .execute(conn)?;
        bump_rules_version(conn)
    })
}

/// The rules' current version: a new random word after every change; `None` before the first.
pub fn rules_version(conn: &mut DbConnection) -> Result<Option<String>, StorageError> {
    Ok(crate::on_backend!(conn, c => notify_rules_version::table
        .find(1)
        .select(notify_rules_version::version)
        .first(c)
        .optional()?))
}

/// Gives the rules a new version, in the transaction that changed them.
fn bump_rules_version(conn: &mut DbConnection) -> Result<(), StorageError> {
    let version = uuid::Uuid::new_v4().simple().to_string();
    let updated = diesel::update(notify_rules_version::table.find(1))
        .set(notify_rules_version::version.eq(&version))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(notify_rules_version::table)
            .values((
                notify_rules_version::id.eq(1),
                notify_rules_version::version.eq(&version),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn find_rule(conn: &mut DbConnection, id: &str) -> Result<Option<RuleRow>, StorageError> {
    Ok(notify_rules::table
        .find(id)
        .select(RuleRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_rules(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RuleRow>, StorageError> {
    let mut query = notify_rules::table
        .select(RuleRow::as_select())
        .order(notify_rules::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(notify_rules::id.gt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// The rules every applied event is matched against.
pub fn enabled_rules(conn: &mut DbConnection) -> Result<Vec<RuleRow>, StorageError> {
    Ok(notify_rules::table
        .filter(notify_rules::enabled.eq(true))
        .select(RuleRow::as_select())
        .order(notify_rules::id.asc())
        .load(conn)?)
}

pub fn update_rule(conn: &mut DbConnection, row: &RuleRow) -> Result<(), StorageError> {
    conn.write_transaction(|conn| {
        diesel::update(notify_rules::table.find(&row.id))
            .set(row)
            .execute(conn)?;
        bump_rules_version(conn)
    })
}

pub fn delete_rule(conn: &mut DbConnection, id: &str) -> Result<bool, StorageError> {
    conn.write_transaction(|conn| {
        let deleted = diesel::delete(notify_rules::table.find(id)).execute(conn)? == 1;
        bump_rules_version(conn)?;
        Ok(deleted)
    })
}

/// How many rules post to the channel.
pub fn rules_of_channel(conn: &mut DbConnection, channel_id: &str) -> Result<i64, StorageError> {
    Ok(notify_rules::table
        .filter(notify_rules::channel_id.eq(channel_id))
        .count()
        .get_result(conn)?)
}

// Deliveries.

/// Inserts the delivery unless its key is already stored; `true` when it is new. The unique key
/// decides, so a duplicate event, a replay or two instances racing store one row.
pub fn insert_delivery(conn: &mut DbConnection, row: &DeliveryRow) -> Result<bool, StorageError> {
    let inserted = match conn {
        DbConnection::Postgres(c) => diesel::insert_into(notify_deliveries::table)
            .values(row)
            .on_conflict(notify_deliveries::dedupe_key)
            .do_nothing()
            .execute(c)?,
        DbConnection::Sqlite(c) => diesel::insert_into(notify_deliveries::table)
            .values(row)
            .on_conflict(notify_deliveries::dedupe_key)
            .do_nothing()
            .execute(c)?,
    };
    Ok(inserted == 1)
}

pub fn find_delivery(
    conn: &mut DbConnection,
    id: &str,
) -> Result<Option<DeliveryRow>, StorageError> {
    Ok(notify_deliveries::table
        .find(id)
        .select(DeliveryRow::as_select())
        .first(conn)
        .optional()?)
}

/// Moves a delivery from `from` to `to`; `false` when it was not in `from` (another runner, or
/// a digest, took it first).
pub fn move_delivery(
    conn: &mut DbConnection,
    id: &str,
    from: DeliveryState,
    to: DeliveryState,
    error: Option<&str>,
) -> Result<bool, StorageError> {
    let moved = diesel::update(
        notify_deliveries::table
            .find(id)
            .filter(notify_deliveries::status.eq(from)),
    )
    .set((
        notify_deliveries::status.eq(to),
        notify_deliveries::last_error.eq(error),
        notify_deliveries::updated_at.eq(time::now()),
    ))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Removes a delivery that never counted anything (a digest another runner emptied first).
pub fn delete_delivery(conn: &mut DbConnection, id: &str) -> Result<(), StorageError> {
    diesel::delete(notify_deliveries::table.find(id)).execute(conn)?;
    Ok(())
}

/// Takes a pending delivery to `sending` and counts the attempt, in one statement; `false` when
/// it was no longer pending (counted into a digest, or taken by another runner).
pub fn start_sending(conn: &mut DbConnection, id: &str) -> Result<bool, StorageError> {
    let moved = diesel::update(
        notify_deliveries::table
            .find(id)
            .filter(notify_deliveries::status.eq(DeliveryState::Pending)),
    )
    .set((
        notify_deliveries::status.eq(DeliveryState::Sending),
        notify_deliveries::attempts.eq(notify_deliveries::attempts + 1),
        notify_deliveries::last_error.eq(None::<String>),
        notify_deliveries::updated_at.eq(time::now()),
    ))
    .execute(conn)?;
    Ok(moved == 1)
}

/// The delivery was posted: the service's id for the message and the thread it went into.
pub fn mark_sent(
    conn: &mut DbConnection,
    id: &str,
    message_id: Option<&str>,
    thread_ts: Option<&str>,
) -> Result<(), StorageError> {
    let now = time::now();
    diesel::update(notify_deliveries::table.find(id))
        .set((
            notify_deliveries::status.eq(DeliveryState::Sent),
            notify_deliveries::provider_message_id.eq(message_id),
            notify_deliveries::thread_ts.eq(thread_ts),
            notify_deliveries::last_error.eq(None::<String>),
            notify_deliveries::sent_at.eq(Some(now)),
            notify_deliveries::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Event deliveries of a channel waiting for their turn; `stale` picks those that occurred
/// before `cutoff` (too old to announce one by one), else the others.
pub fn count_waiting(
    conn: &mut DbConnection,
    channel_id: &str,
    stale: bool,
    cutoff: NaiveDateTime,
) -> Result<i64, StorageError> {
    let query = notify_deliveries::table
        .filter(notify_deliveries::channel_id.eq(channel_id))
        .filter(notify_deliveries::kind.eq(DeliveryKind::Event))
        .filter(notify_deliveries::status.eq(DeliveryState::Pending))
        .into_boxed();
    let query = if stale {
        query.filter(notify_deliveries::occurred_at.lt(cutoff))
    } else {
        query.filter(notify_deliveries::occurred_at.ge(cutoff))
    };
    Ok(query.count().get_result(conn)?)
}

/// Counts every waiting event delivery of the channel picked as [`count_waiting`] does into the
/// digest `digest` (already inserted) and returns how many it took. One statement: an event is
/// in one digest or posted alone, never both, never neither.
pub fn absorb_into_digest(
    conn: &mut DbConnection,
    digest: &str,
    channel_id: &str,
    stale: bool,
    cutoff: NaiveDateTime,
) -> Result<i64, StorageError> {
    let now = time::now();
    let set = (
        notify_deliveries::status.eq(DeliveryState::Digested),
        notify_deliveries::digest_id.eq(Some(digest)),
        notify_deliveries::updated_at.eq(now),
    );
    let base = notify_deliveries::table
        .filter(notify_deliveries::channel_id.eq(channel_id))
        .filter(notify_deliveries::kind.eq(DeliveryKind::Event))
        .filter(notify_deliveries::status.eq(DeliveryState::Pending));
    let taken = if stale {
        diesel::update(base.filter(notify_deliveries::occurred_at.lt(cutoff)))
            .set(set)
            .execute(conn)?
    } else {
        diesel::update(base.filter(notify_deliveries::occurred_at.ge(cutoff)))
            .set(set)
            .execute(conn)?
    };
    let taken = i64::try_from(taken).unwrap_or(i64::MAX);
    let newest: Option<NaiveDateTime> = notify_deliveries::table
        .filter(notify_deliveries::digest_id.eq(digest))
        .select(diesel::dsl::max(notify_deliveries::occurred_at))
        .first(conn)?;
    diesel::update(notify_deliveries::table.find(digest))
        .set((
            notify_deliveries::members.eq(i32::try_from(taken).unwrap_or(i32::MAX)),
            notify_deliveries::occurred_at.eq(newest.unwrap_or(now)),
        ))
        .execute(conn)?;
    Ok(taken)
}

/// The events a digest counts.
pub fn members_of(conn: &mut DbConnection, digest: &str) -> Result<Vec<DeliveryRow>, StorageError> {
    Ok(notify_deliveries::table
        .filter(notify_deliveries::digest_id.eq(digest))
        .select(DeliveryRow::as_select())
        .order(notify_deliveries::id.asc())
        .load(conn)?)
}

/// The first message posted to the channel about `subject`, which later ones thread under.
pub fn thread_root(
    conn: &mut DbConnection,
    channel_id: &str,
    subject: &str,
    except: &str,
) -> Result<Option<DeliveryRow>, StorageError> {
    Ok(notify_deliveries::table
        .filter(notify_deliveries::channel_id.eq(channel_id))
        .filter(notify_deliveries::subject.eq(subject))
        .filter(notify_deliveries::kind.eq(DeliveryKind::Event))
        .filter(notify_deliveries::status.eq(DeliveryState::Sent))
        .filter(notify_deliveries::thread_ts.is_null())
        .filter(notify_deliveries::provider_message_id.is_not_null())
        .filter(notify_deliveries::id.ne(except))
        .select(DeliveryRow::as_select())
        .order(notify_deliveries::id.asc())
        .first(conn)
        .optional()?)
}

/// A channel's delivery log, newest first; `digest` lists the events one digest counted.
pub fn list_deliveries(
    conn: &mut DbConnection,
    channel_id: &str,
    digest: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StorageError> {
    let mut query = notify_deliveries::table
        .filter(notify_deliveries::channel_id.eq(channel_id))
        .select(DeliveryRow::as_select())
        .order(notify_deliveries::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(digest) = digest {
        query = query.filter(notify_deliveries::digest_id.eq(digest.to_owned()));
    }
    if let Some(after) = after {
        query = query.filter(notify_deliveries::id.lt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

// What a message reads from the ledger.

/// Two optional texts: a customer's (name, email), a card's (brand, last 4).
pub type TextPair = (Option<String>, Option<String>);

/// A failed attempt, as a payment-failed message tells it.
#[derive(Debug, Clone, Queryable)]
pub struct FailedAttempt {
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
}

/// A customer's name and email, as mirrored.
pub fn customer(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
) -> Result<Option<TextPair>, StorageError> {
    Ok(customers::table
        .filter(customers::connection_id.eq(connection_id))
        .filter(customers::stripe_id.eq(stripe_id))
        .select((customers::name, customers::email))
        .first(conn)
        .optional()?)
}

/// An invoice's billmirror id and number, by its Stripe id.
pub fn invoice(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
) -> Result<Option<(String, Option<String>)>, StorageError> {
    Ok(invoices::table
        .filter(invoices::connection_id.eq(connection_id))
        .filter(invoices::stripe_id.eq(stripe_id))
        .select((invoices::id, invoices::number))
        .first(conn)
        .optional()?)
}

/// A subscription's plan name and status.
pub fn subscription(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
) -> Result<Option<(Option<String>, String)>, StorageError> {
    Ok(subscriptions::table
        .filter(subscriptions::connection_id.eq(connection_id))
        .filter(subscriptions::stripe_id.eq(stripe_id))
        .select((subscriptions::plan_name, subscriptions::status))
        .first(conn)
        .optional()?)
}

/// The newest failed attempt of the payments of an invoice, a PaymentIntent or a charge.
pub fn last_failed_attempt(
    conn: &mut DbConnection,
    connection_id: &str,
    invoice: Option<&str>,
    payment: Option<&str>,
) -> Result<Option<FailedAttempt>, StorageError> {
    let mut payment_ids: Vec<String> = payment.map(str::to_owned).into_iter().collect();
    if let Some(invoice) = invoice {
        payment_ids.extend(
            payments::table
                .filter(payments::connection_id.eq(connection_id))
                .filter(payments::stripe_invoice_id.eq(invoice))
                .select(payments::stripe_id)
                .load::<String>(conn)?,
        );
    }
    if payment_ids.is_empty() {
        return Ok(None);
    }
    Ok(payment_attempts::table
        .filter(payment_attempts::connection_id.eq(connection_id))
        .filter(
            payment_attempts::payment_stripe_id
                .eq_any(&payment_ids)
                .or(payment_attempts::charge_id.eq_any(&payment_ids)),
        )
        .filter(payment_attempts::status.eq("failed"))
        .select((
            payment_attempts::failure_code,
            payment_attempts::decline_code,
            payment_attempts::failure_message,
            payment_attempts::card_brand,
            payment_attempts::card_last4,
        ))
        .order(payment_attempts::stripe_created.desc())
        .first(conn)
        .optional()?)
}

/// The card a payment (PaymentIntent or charge id) was made with: brand and last 4.
pub fn card_of_payment(
    conn: &mut DbConnection,
    connection_id: &str,
    ids: &[&str],
) -> Result<Option<TextPair>, StorageError> {
    Ok(payments::table
        .filter(payments::connection_id.eq(connection_id))
        .filter(
            payments::stripe_id
                .eq_any(ids)
                .or(payments::charge_id.eq_any(ids)),
        )
        .select((payments::card_brand, payments::card_last4))
        .first(conn)
        .optional()?)
}
