//! The `notify` job: post one delivery (an event's message, or a digest) to its channel, once,
//! within the channel's rate.
//!
//! Each channel has a next turn (`next_send_at`); a runner takes it in one statement, so posts to
//! one channel are spaced by its rate whatever the number of runners or instances, and a `429`
//! pushes it back by `Retry-After`. A delivery whose channel has more events waiting than it can
//! post in a few seconds does not wait its turn: every waiting event of the channel is counted
//! into one digest (one statement moves them), whose own job posts it at the next turn. Events
//! older than `NOTIFY_MAX_AGE` go into a summary digest the same way. So every event ends in a
//! message of its own or is counted in exactly one digest.
//!
//! A crash between the post and its record leaves the delivery `sending`; its job runs again
//! after the lease and posts it again (a rare double rather than a silent loss; the generic
//! webhook's `webhook-id` lets a receiver drop it).

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::json;

use super::facts::{Facts, What};
use super::format;
use super::render::{self, Member, Message};
use super::send::Posted;
use super::Notifier;
use crate::domain::states::{
    ChannelKind, ChannelStatus, DeliveryKind, DeliveryState, JobKind, Redaction,
};
use crate::domain::{time, Secret};
use crate::jobs::{enqueue, Handler, JobRow, NewJob, Outcome};
use crate::storage::notify::{self as store, ChannelRow, DeliveryRow};
use crate::storage::{DbConnection, StorageError};

/// Slack's Web API when a channel names no other.
pub const SLACK_API: &str = "https://slack.com/api";

/// How long one attempt may wait for its channel's turn before it gives the runner back.
const MAX_WAIT: Duration = Duration::from_secs(120);

impl Handler for Notifier {
    const KIND: JobKind = JobKind::Notify;

    async fn run(&self, job: JobRow) -> Outcome {
        self.deliver(&job.subject_id).await
    }
}

/// The time between two posts to a channel.
pub fn interval(rate_per_minute: i32) -> TimeDelta {
    TimeDelta::milliseconds(60_000 / i64::from(rate_per_minute.max(1)))
}

/// Events waiting for one channel beyond which they are counted into a digest: what the channel
/// posts in five seconds, and never fewer than 3.
pub fn burst(rate_per_minute: i32) -> i64 {
    (i64::from(rate_per_minute) / 12).max(3)
}

/// The strictest of two redaction levels.
fn strictest(a: Redaction, b: Redaction) -> Redaction {
    let rank = |r| match r {
        Redaction::Full => 0,
        Redaction::Masked => 1,
        Redaction::Hidden => 2,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

/// Whether a delivery may post now.
enum Turn {
    /// Its turn is taken and it is `sending`.
    Post,
    /// The channel's next turn is later.
    Wait,
    /// It is no longer pending (counted into a digest, or taken by another runner).
    Gone,
}

/// What a post needs, read from the database before any HTTP is done.
struct Prepared {
    message: Message,
    /// Slack app: the thread's first message (its `ts`) and that message updated.
    thread: Option<(String, Message)>,
    events_counted: i64,
}

impl Notifier {
    /// Runs one delivery to its end: posted, counted in a digest, or stopped.
    pub async fn deliver(&self, id: &str) -> Outcome {
        let started = Instant::now();
        loop {
            let key = id.to_owned();
            let (delivery, channel) = match self
                .db
                .run(move |conn| {
                    let delivery = store::find_delivery(conn, &key)?;
                    let channel = match &delivery {
                        Some(d) => store::find_channel(conn, &d.channel_id)?,
                        None => None,
                    };
                    Ok((delivery, channel))
                })
                .await
            {
                Ok(found) => found,
                Err(e) => return e.into(),
            };
            let Some(delivery) = delivery else {
                return Outcome::Cancelled("the delivery no longer exists".into());
            };
            match delivery.status {
                DeliveryState::Pending => {}
                DeliveryState::Sending => {
                    // Only this job posts this delivery, and it is not posting: an attempt died
                    // mid-post.
                    tracing::warn!(delivery.id = %delivery.id, "a post was interrupted; posting again");
                    if let Err(e) = self
                        .moved(id, DeliveryState::Sending, DeliveryState::Pending, None)
                        .await
                    {
                        return e.into();
                    }
                    continue;
                }
                _ => return Outcome::Done,
            }
            let Some(channel) = channel else {
                let _ = self
                    .moved(id, DeliveryState::Pending, DeliveryState::Skipped, None)
                    .await;
                return Outcome::Cancelled("its channel was deleted".into());
            };
            if channel.status == ChannelStatus::Broken {
                let reason = channel.broken_reason.clone().unwrap_or_default();
                let why = format!("the channel is broken ({reason}); repair it, then retry");
                if let Err(e) = self
                    .moved(
                        id,
                        DeliveryState::Pending,
                        DeliveryState::Failed,
                        Some(&why),
                    )
                    .await
                {
                    return e.into();
                }
                return Outcome::Failed(why);
            }
            let now = time::now();
            if delivery.kind == DeliveryKind::Event {
                match self.digest_if_needed(&delivery, &channel, now).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return e.into(),
                }
            }
            // Rendered just before the channel's turn is taken, so that the post leaves right at
            // its turn: a slow render (a digest of hundreds) does not push one post towards the
            // next. Rendered again after a wait, so a thread started meanwhile is seen.
            let ready = match self.prepare(&channel, &delivery).await {
                Ok(ready) => ready,
                Err(e) => return e.into(),
            };
            // The channel's turn, counted from the moment it is taken (not from before the
            // render), and the post started, in one transaction: nothing waits between the two.
            let (channel_id, step, key) = (
                channel.id.clone(),
                interval(channel.rate_per_minute),
                id.to_owned(),
            );
            let turn = self
                .db
                .run(move |conn| {
                    conn.write_transaction(|conn| {
                        if !store::take_turn(conn, &channel_id, time::now(), step)? {
                            return Ok(Turn::Wait);
                        }
                        // Counted into a digest meanwhile: its turn is lost, rarely.
                        Ok(match store::start_sending(conn, &key)? {
                            true => Turn::Post,
                            false => Turn::Gone,
                        })
                    })
                })
                .await;
            match turn {
                Ok(Turn::Post) => {}
                Ok(Turn::Gone) => continue,
                Ok(Turn::Wait) => {
                    if started.elapsed() > MAX_WAIT {
                        return Outcome::Retry("still waiting for the channel's turn".into());
                    }
                    let wait = (channel.next_send_at - time::now())
                        .to_std()
                        .unwrap_or_default()
                        .clamp(Duration::from_millis(10), Duration::from_secs(30));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return e.into(),
            }
            match self.post_prepared(&channel, &delivery, &ready).await {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => continue,
                Err(e) => {
                    let _ = self
                        .moved(id, DeliveryState::Sending, DeliveryState::Pending, None)
                        .await;
                    return e.into();
                }
            }
        }
    }

    async fn moved(
        &self,
        id: &str,
        from: DeliveryState,
        to: DeliveryState,
        error: Option<&str>,
    ) -> Result<bool, StorageError> {
        let (id, error) = (id.to_owned(), error.map(str::to_owned));
        self.db
            .run(move |conn| store::move_delivery(conn, &id, from, to, error.as_deref()))
            .await
    }

    /// Counts the channel's waiting events into a digest when they are too many for its rate,
    /// or when this one is too old to announce alone; `true` when it made one.
    async fn digest_if_needed(
        &self,
        delivery: &DeliveryRow,
        channel: &ChannelRow,
        now: chrono::NaiveDateTime,
    ) -> Result<bool, StorageError> {
        let cutoff =
            now - TimeDelta::from_std(self.settings.max_age).unwrap_or(TimeDelta::hours(1));
        let stale = delivery.occurred_at < cutoff;
        let channel_id = channel.id.clone();
        let limit = burst(channel.rate_per_minute);
        let made = self
            .db
            .run(move |conn| {
                if !stale && store::count_waiting(conn, &channel_id, false, cutoff)? <= limit {
                    return Ok(None);
                }
                conn.write_transaction(|conn| make_digest(conn, &channel_id, stale, cutoff, now))
            })
            .await?;
        if let Some((digest, members)) = &made {
            tracing::info!(delivery.id = %digest, channel.id = %channel.id, members, stale, "events counted into a digest");
            self.wakers.wake(JobKind::Notify);
        }
        Ok(made.is_some())
    }

    /// Renders and posts a delivery that is `sending`, and records how it went: `Some` outcome
    /// when the job is over, `None` to take the channel's next turn (a `429`).
    pub(super) async fn post(
        &self,
        channel: &ChannelRow,
        delivery: &DeliveryRow,
    ) -> Result<Option<Outcome>, StorageError> {
        let prepared = self.prepare(channel, delivery).await?;
        self.post_prepared(channel, delivery, &prepared).await
    }

    /// Reads and renders what a delivery will post.
    async fn prepare(
        &self,
        channel: &ChannelRow,
        delivery: &DeliveryRow,
    ) -> Result<Prepared, StorageError> {
        let (channel, delivery, settings) =
            (channel.clone(), delivery.clone(), self.settings.clone());
        self.db
            .run(move |conn| prepare(conn, &channel, &delivery, &settings))
            .await
    }

    /// Posts a delivery that is `sending` (its attempt counted), rendered beforehand, and records
    /// how it went.
    async fn post_prepared(
        &self,
        channel: &ChannelRow,
        delivery: &DeliveryRow,
        prepared: &Prepared,
    ) -> Result<Option<Outcome>, StorageError> {
        let secret = match self
            .vault
            .open(&channel.secret_enc, &secret_context(&channel.id))
        {
            Ok(secret) => secret,
            Err(e) => {
                let why = format!("the channel's secret cannot be opened: {e}");
                self.finish_broken(channel, delivery, "secret_unreadable")
                    .await?;
                return Ok(Some(Outcome::Failed(why)));
            }
        };
        let (posted, thread_ts) = self.send(channel, &secret, delivery, prepared).await;
        let id = delivery.id.clone();
        match posted {
            Posted::Ok { ts } => {
                let channel_id = channel.id.clone();
                self.db
                    .run(move |conn| {
                        conn.write_transaction(|conn| {
                            store::mark_sent(conn, &id, ts.as_deref(), thread_ts.as_deref())?;
                            store::record_health(conn, &channel_id, Ok(()))
                        })
                    })
                    .await?;
                tracing::info!(delivery.id = %delivery.id, channel.id = %channel.id, kind = %delivery.kind, events = prepared.events_counted, "notification posted");
                Ok(Some(Outcome::Done))
            }
            Posted::Wait(wait) => {
                let channel_id = channel.id.clone();
                let until =
                    time::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::seconds(1));
                self.db
                    .run(move |conn| {
                        conn.write_transaction(|conn| {
                            store::move_delivery(
                                conn,
                                &id,
                                DeliveryState::Sending,
                                DeliveryState::Pending,
                                Some("rate limited"),
                            )?;
                            store::hold_channel(conn, &channel_id, until)?;
                            store::record_health(conn, &channel_id, Err(("rate_limited", false)))
                        })
                    })
                    .await?;
                tracing::info!(channel.id = %channel.id, wait_ms = wait.as_millis() as u64, "the chat service asked to wait");
                Ok(None)
            }
            Posted::Broken(reason) => {
                self.finish_broken(channel, delivery, &reason).await?;
                Ok(Some(Outcome::Failed(format!(
                    "the channel refused the message: {reason}"
                ))))
            }
            Posted::Retry(why) => {
                let channel_id = channel.id.clone();
                let error = why.clone();
                self.db
                    .run(move |conn| {
                        conn.write_transaction(|conn| {
                            store::move_delivery(
                                conn,
                                &id,
                                DeliveryState::Sending,
                                DeliveryState::Pending,
                                Some(&error),
                            )?;
                            store::record_health(conn, &channel_id, Err((&error, false)))
                        })
                    })
                    .await?;
                tracing::info!(channel.id = %channel.id, delivery.id = %delivery.id, error = %why, "a post will be retried");
                Ok(Some(Outcome::Retry(why)))
            }
        }
    }

    async fn finish_broken(
        &self,
        channel: &ChannelRow,
        delivery: &DeliveryRow,
        reason: &str,
    ) -> Result<(), StorageError> {
        let (id, channel_id, reason) = (delivery.id.clone(), channel.id.clone(), reason.to_owned());
        tracing::warn!(channel.id = %channel.id, reason = %reason, "the chat channel is broken; its messages wait for a person");
        self.db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    store::move_delivery(
                        conn,
                        &id,
                        DeliveryState::Sending,
                        DeliveryState::Failed,
                        Some(&reason),
                    )?;
                    store::record_health(conn, &channel_id, Err((&reason, true)))
                })
            })
            .await
    }

    /// Posts the prepared message in the channel's format; returns how it went and the thread
    /// it went into.
    async fn send(
        &self,
        channel: &ChannelRow,
        secret: &Secret,
        delivery: &DeliveryRow,
        prepared: &Prepared,
    ) -> (Posted, Option<String>) {
        let message = &prepared.message;
        match channel.kind {
            ChannelKind::SlackApp => {
                let base = channel
                    .api_base
                    .as_deref()
                    .unwrap_or(SLACK_API)
                    .trim_end_matches('/')
                    .to_owned();
                let target = channel.target.clone().unwrap_or_default();
                let thread_ts = prepared.thread.as_ref().map(|(ts, _)| ts.clone());
                let body = format::slack_app(message, &target, thread_ts.as_deref());
                let posted = self
                    .poster
                    .post(
                        &format!("{base}/chat.postMessage"),
                        Some(secret),
                        &[],
                        body.to_string(),
                    )
                    .await;
                if let (Posted::Ok { .. }, Some((ts, root))) = (&posted, &prepared.thread) {
                    // The first message shows the latest state; a failed update loses nothing.
                    let update = format::slack_update(root, &target, ts);
                    let updated = self
                        .poster
                        .post(
                            &format!("{base}/chat.update"),
                            Some(secret),
                            &[],
                            update.to_string(),
                        )
                        .await;
                    if !matches!(updated, Posted::Ok { .. }) {
                        tracing::info!(channel.id = %channel.id, "the thread's first message was not updated: {updated:?}");
                    }
                }
                (posted, thread_ts)
            }
            ChannelKind::SlackWebhook => {
                let body = format::slack_webhook(message);
                (
                    self.poster
                        .post(secret.expose(), None, &[], body.to_string())
                        .await,
                    None,
                )
            }
            ChannelKind::Teams => {
                let body = format::teams(message);
                (
                    self.poster
                        .post(secret.expose(), None, &[], body.to_string())
                        .await,
                    None,
                )
            }
            ChannelKind::Webhook => {
                let at = chrono::Utc::now().timestamp();
                let family = delivery.family.map(|f| f.as_str());
                let body = format::generic(
                    message,
                    &delivery.id,
                    delivery.kind.as_str(),
                    family,
                    prepared.events_counted,
                    at,
                )
                .to_string();
                let Some(signature) =
                    format::standard_signature(secret.expose(), &delivery.id, at, &body)
                else {
                    return (Posted::Broken("invalid_signing_secret".into()), None);
                };
                let headers = [
                    ("webhook-id", delivery.id.clone()),
                    ("webhook-timestamp", at.to_string()),
                    ("webhook-signature", signature),
                ];
                let url = channel.target.clone().unwrap_or_default();
                (self.poster.post(&url, None, &headers, body).await, None)
            }
        }
    }
}

/// The vault context a channel's secret is sealed under.
pub fn secret_context(channel_id: &str) -> String {
    format!("{channel_id}/notify_secret")
}

/// Creates a digest of the channel's waiting events (stale ones, or the others) and its job;
/// `None` when another runner took them all first.
fn make_digest(
    conn: &mut DbConnection,
    channel_id: &str,
    stale: bool,
    cutoff: chrono::NaiveDateTime,
    now: chrono::NaiveDateTime,
) -> Result<Option<(String, i64)>, StorageError> {
    let digest = DeliveryRow::new(
        DeliveryKind::Digest,
        channel_id,
        json!({"stale": stale}).to_string(),
        now,
    );
    let id = digest.id.clone();
    store::insert_delivery(conn, &digest)?;
    let members = store::absorb_into_digest(conn, &id, channel_id, stale, cutoff)?;
    if members == 0 {
        store::delete_delivery(conn, &id)?;
        return Ok(None);
    }
    enqueue(
        conn,
        &NewJob {
            kind: JobKind::Notify,
            subject_id: &id,
            connection_id: "",
            payload: None,
            dedupe_key: &digest.dedupe_key,
        },
    )?;
    Ok(Some((id, members)))
}

/// Facts stored with a delivery, completed from the ledger: what the event did not say (the
/// customer's name, the invoice's number, the card and decline of the failed attempt, the
/// subscription's plan and status) is read now, after the events around it were applied.
pub fn facts_of(conn: &mut DbConnection, stored: &str) -> Result<Option<Facts>, StorageError> {
    let Ok(mut f) = serde_json::from_str::<Facts>(stored) else {
        return Ok(None);
    };
    let connection = f.connection_id.clone();
    if let Some(customer) = f.customer_id.clone() {
        if f.customer_name.is_none() || f.customer_email.is_none() {
            if let Some((name, email)) = store::customer(conn, &connection, &customer)? {
                f.customer_name = f.customer_name.take().or(name);
                f.customer_email = f.customer_email.take().or(email);
            }
        }
    }
    if let Some(invoice) = f.invoice_id.clone() {
        if let Some((local, number)) = store::invoice(conn, &connection, &invoice)? {
            f.local_invoice_id = Some(local);
            f.invoice_number = f.invoice_number.take().or(number);
        }
    }
    if let Some(subscription) = f.subscription_id.clone() {
        if let Some((plan, status)) = store::subscription(conn, &connection, &subscription)? {
            f.plan_name = f.plan_name.take().or(plan);
            if f.what == What::PaymentFailed || f.subscription_status.is_none() {
                f.subscription_status = Some(status);
            }
        }
    }
    if f.what == What::PaymentFailed && (f.card_last4.is_none() || f.decline_code.is_none()) {
        let payment = f.payment_intent_id.clone().or(f.charge_id.clone());
        if let Some(attempt) = store::last_failed_attempt(
            conn,
            &connection,
            f.invoice_id.as_deref(),
            payment.as_deref(),
        )? {
            f.failure_code = f.failure_code.take().or(attempt.failure_code);
            f.decline_code = f.decline_code.take().or(attempt.decline_code);
            f.failure_message = f.failure_message.take().or(attempt.failure_message);
            f.card_brand = f.card_brand.take().or(attempt.card_brand);
            f.card_last4 = f.card_last4.take().or(attempt.card_last4);
        }
    }
    if matches!(
        f.what,
        What::DisputeOpened | What::DisputeUpdated | What::DisputeClosed | What::RefundIssued
    ) && f.card_last4.is_none()
    {
        let ids: Vec<&str> = [f.payment_intent_id.as_deref(), f.charge_id.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !ids.is_empty() {
            if let Some((brand, last4)) = store::card_of_payment(conn, &connection, &ids)? {
                f.card_brand = brand;
                f.card_last4 = last4;
            }
        }
    }
    Ok(Some(f))
}

fn prepare(
    conn: &mut DbConnection,
    channel: &ChannelRow,
    delivery: &DeliveryRow,
    settings: &super::Settings,
) -> Result<Prepared, StorageError> {
    let now = chrono::Utc::now().timestamp();
    let links = settings.links();
    let level = delivery.redaction.unwrap_or(channel.redaction);
    match delivery.kind {
        DeliveryKind::Event => {
            let Some(facts) = facts_of(conn, &delivery.facts)? else {
                return Ok(Prepared {
                    message: render::test_message(&channel.name),
                    thread: None,
                    events_counted: 1,
                });
            };
            let mut message = render::render(&facts, &links, level, now);
            // Buttons that act only where Slack sends the clicks back to us.
            let interactive = channel.kind == ChannelKind::SlackApp
                && crate::storage::chat::find_interactivity(conn, &channel.id)?.is_some();
            if interactive {
                message.action_value = Some(delivery.id.clone());
            }
            let mut thread = None;
            if channel.kind == ChannelKind::SlackApp {
                if let Some(subject) = &delivery.subject {
                    if let Some(root) =
                        store::thread_root(conn, &channel.id, subject, &delivery.id)?
                    {
                        if let (Some(ts), Some(root_facts)) = (
                            root.provider_message_id.clone(),
                            facts_of(conn, &root.facts)?,
                        ) {
                            let root_level = root.redaction.unwrap_or(channel.redaction);
                            let mut updated = render::render(&root_facts, &links, root_level, now);
                            updated.status = Some(render::status_line(&facts));
                            if interactive {
                                updated.action_value = Some(root.id.clone());
                            }
                            thread = Some((ts, updated));
                        }
                    }
                }
            }
            Ok(Prepared {
                message,
                thread,
                events_counted: 1,
            })
        }
        DeliveryKind::Digest => {
            let rows = store::members_of(conn, &delivery.id)?;
            let stale = serde_json::from_str::<serde_json::Value>(&delivery.facts)
                .ok()
                .and_then(|v| v["stale"].as_bool())
                .unwrap_or(false);
            let mut level = channel.redaction;
            let mut members = Vec::with_capacity(rows.len());
            for row in &rows {
                level = strictest(level, row.redaction.unwrap_or(channel.redaction));
                // The few shown are completed from the ledger; the others are only counted.
                let facts = serde_json::from_str::<Facts>(&row.facts).ok();
                if let Some(facts) = facts {
                    members.push(Member { facts });
                }
            }
            members.sort_by_key(|m| std::cmp::Reverse(m.facts.amount.unwrap_or(0)));
            for member in members.iter_mut().take(render::DIGEST_SHOWN) {
                let stored = serde_json::to_string(&member.facts).unwrap_or_default();
                if let Some(full) = facts_of(conn, &stored)? {
                    member.facts = full;
                }
            }
            let list = format!(
                "{}/api/notifications/channels/{}/deliveries?digest={}",
                settings.public_url, channel.id, delivery.id
            );
            let message = render::render_digest(&members, stale, &list, level, now);
            Ok(Prepared {
                message,
                thread: None,
                events_counted: i64::from(delivery.members),
            })
        }
        DeliveryKind::Test => Ok(Prepared {
            message: render::test_message(&channel.name),
            thread: None,
            events_counted: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channels_rate_spaces_its_posts_and_sets_its_burst() {
        assert_eq!(interval(60), TimeDelta::seconds(1));
        assert_eq!(interval(120), TimeDelta::milliseconds(500));
        assert_eq!(interval(0), TimeDelta::seconds(60), "never divides by zero");
        assert_eq!(burst(60), 5);
        assert_eq!(burst(6), 3);
        assert_eq!(burst(600), 50);
        assert_eq!(
            strictest(Redaction::Full, Redaction::Hidden),
            Redaction::Hidden
        );
        assert_eq!(
            strictest(Redaction::Masked, Redaction::Full),
            Redaction::Masked
        );
    }
}
