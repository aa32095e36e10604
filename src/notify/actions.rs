//! The `chat_action` job: what a click from chat asked, done once, then said where it was
//! asked. A refused click gets an ephemeral explanation through Slack's `response_url`, seen only
//! by the clicker. An allowed one calls Stripe (retry the payment, send the invoice) under an
//! idempotency key of its own, or records a follow-up on the customer, or posts the message to
//! the escalation channel; then the result is written to the click's row and the audit log in
//! one transaction, posted in the message's thread, and the message itself gains a status line
//! (`chat.update`).

use serde_json::json;

use super::deliver::{facts_of, secret_context, SLACK_API};
use super::facts::Facts;
use super::format;
use super::interact::{actor, subject_of};
use super::queue::{about, queue};
use super::render;
use super::send::Posted;
use super::Notifier;
use crate::connections::Connections;
use crate::domain::states::{ChatAction, ChatActionState, FollowUpKind, JobKind};
use crate::domain::{ids, time};
use crate::jobs::{Handler, JobRow, Outcome};
use crate::storage::chat::{self as store, ChatActionRow, FollowUpRow};
use crate::storage::notify::{self as notify_store, ChannelRow, DeliveryRow};
use crate::storage::tokens::audit;
use crate::storage::{DbConnection, StorageError};
use crate::stripe::typed;

/// Runs the clicks' jobs: the notifier posts, the connections reach Stripe.
#[derive(Clone)]
pub struct ChatActor {
    notifier: Notifier,
    connections: Connections,
}

impl ChatActor {
    pub fn new(notifier: Notifier, connections: Connections) -> ChatActor {
        ChatActor {
            notifier,
            connections,
        }
    }
}

impl Handler for ChatActor {
    const KIND: JobKind = JobKind::ChatAction;

    async fn run(&self, job: JobRow) -> Outcome {
        self.act(&job).await
    }
}

/// How the work ended: the click's state and a sentence for the thread.
struct Done {
    state: ChatActionState,
    result: String,
}

impl ChatActor {
    async fn act(&self, job: &JobRow) -> Outcome {
        let db = &self.notifier.db;
        let id = job.subject_id.clone();
        let found = db
            .run(move |conn| {
                let Some(action) = store::find_action(conn, &id)? else {
                    return Ok(None);
                };
                let delivery = notify_store::find_delivery(conn, &action.delivery_id)?;
                let channel = notify_store::find_channel(conn, &action.channel_id)?;
                let facts = match &delivery {
                    Some(d) => facts_of(conn, &d.facts)?,
                    None => None,
                };
                Ok::<_, StorageError>(Some((action, delivery, channel, facts)))
            })
            .await;
        let (action, delivery, channel, facts) = match found {
            Ok(Some((a, Some(d), Some(c), Some(f)))) => (a, d, c, f),
            Ok(_) => return Outcome::Cancelled("the click's message or channel is gone".into()),
            Err(e) => return e.into(),
        };
        match action.status {
            ChatActionState::Refused => self.tell_clicker(&action).await,
            ChatActionState::Pending => {
                let done = match self.work(&action, &facts, job.attempts).await {
                    Ok(done) => done,
                    Err(outcome) => return outcome,
                };
                if let Err(e) = self.record(&action, &delivery, &facts, &done).await {
                    return e.into();
                }
                self.show_in_thread(&action, &channel, &delivery, &facts, &done)
                    .await;
                Outcome::Done
            }
            // Recorded by an attempt that died before it ended.
            ChatActionState::Done | ChatActionState::Failed => Outcome::Done,
        }
    }

    /// The refusal, seen only by the clicker.
    async fn tell_clicker(&self, action: &ChatActionRow) -> Outcome {
        let Some(url) = action.response_url.as_deref() else {
            return Outcome::Done;
        };
        let body = json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": action.result.clone().unwrap_or_else(|| "Refused.".into()),
        });
        match self
            .notifier
            .poster
            .post(url, None, &[], body.to_string())
            .await
        {
            Posted::Ok { .. } => Outcome::Done,
            Posted::Wait(_) | Posted::Retry(_) => {
                Outcome::Retry("Slack did not take the ephemeral answer yet".into())
            }
            // `response_url`s expire after 30 minutes and five uses.
            Posted::Broken(word) => Outcome::Failed(format!("Slack refused the answer: {word}")),
        }
    }

    /// Does what was asked; `Err` is the job's outcome when it must be tried again.
    async fn work(
        &self,
        action: &ChatActionRow,
        facts: &Facts,
        attempt: i32,
    ) -> Result<Done, Outcome> {
        match action.action {
            ChatAction::RetryPayment | ChatAction::SendInvoice => {
                self.call_stripe(action, facts, attempt).await
            }
            ChatAction::MarkContacted => Ok(Done {
                state: ChatActionState::Done,
                result: "marked the customer as contacted".into(),
            }),
            ChatAction::AssignBillingQueue => Ok(Done {
                state: ChatActionState::Done,
                result: "assigned the customer to the billing queue".into(),
            }),
            ChatAction::Escalate => Ok(Done {
                state: ChatActionState::Done,
                result: "notified legal/finance".into(),
            }),
        }
    }

    async fn call_stripe(
        &self,
        action: &ChatActionRow,
        facts: &Facts,
        attempt: i32,
    ) -> Result<Done, Outcome> {
        let Some(invoice) = facts.invoice_id.clone() else {
            return Ok(failed("the message names no invoice"));
        };
        let connection_id = facts.connection_id.clone();
        let row = match self
            .notifier
            .db
            .run(move |conn| crate::storage::connections::find(conn, &connection_id))
            .await
        {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(failed("the connection no longer exists")),
            Err(e) => return Err(e.into()),
        };
        let client = match self.connections.client_for(&row).await {
            Ok(client) => client,
            Err(e) => return Ok(failed(&format!("the connection cannot call Stripe: {e}"))),
        };
        // A later attempt may follow one that succeeded and died before its record: an invoice
        // already paid is the payment retried, not an error.
        if attempt > 1 && action.action == ChatAction::RetryPayment {
            let retrieve = stripe_billing::invoice::RetrieveInvoice::new(invoice.as_str());
            if let Ok(current) = typed::send(&client, &retrieve, None).await {
                if current.status == Some(stripe_shared::InvoiceStatus::Paid) {
                    return Ok(Done {
                        state: ChatActionState::Done,
                        result: "retried the payment: the invoice is paid".into(),
                    });
                }
            }
        }
        // One key per click (a fresh one after a stored 5xx, which Stripe would only replay).
        let key = if attempt > 1 {
            format!("chat:{}:r{attempt}", action.id)
        } else {
            format!("chat:{}", action.id)
        };
        let answer = match action.action {
            ChatAction::RetryPayment => {
                let pay = stripe_billing::invoice::PayInvoice::new(invoice.as_str());
                typed::send(&client, &pay, Some(&key)).await
            }
            _ => {
                let send = stripe_billing::invoice::SendInvoiceInvoice::new(invoice.as_str());
                typed::send(&client, &send, Some(&key)).await
            }
        };
        match answer {
            Ok(answer) => {
                let status = answer
                    .status
                    .as_ref()
                    .map_or("unknown", |s| s.as_str())
                    .to_owned();
                Ok(Done {
                    state: ChatActionState::Done,
                    result: match action.action {
                        ChatAction::RetryPayment if status == "paid" => {
                            "retried the payment: the invoice is paid".into()
                        }
                        ChatAction::RetryPayment => {
                            format!("retried the payment: the invoice is {status}")
                        }
                        _ => "sent the invoice email to the customer".into(),
                    },
                })
            }
            Err(e) if e.is_unavailable() => Err(Outcome::Retry(format!(
                "Stripe is unavailable: {}",
                e.cause()
            ))),
            Err(e) => Ok(failed(&format!("Stripe refused: {}", e.cause()))),
        }
    }

    /// The click's result, its audit entry, and what it leaves behind (a follow-up, an
    /// escalation), in one transaction.
    async fn record(
        &self,
        action: &ChatActionRow,
        delivery: &DeliveryRow,
        facts: &Facts,
        done: &Done,
    ) -> Result<(), StorageError> {
        let (action, delivery, facts) = (action.clone(), delivery.clone(), facts.clone());
        let (state, result) = (done.state, done.result.clone());
        let escalated = self
            .notifier
            .db
            .run(move |conn| {
                conn.write_transaction(|conn| {
                    let who = actor(&action.slack_user_id, action.slack_user_name.as_deref());
                    let mut escalated = false;
                    if state == ChatActionState::Done {
                        escalated = leave_behind(conn, &action, &delivery, &facts, &who)?;
                    }
                    store::finish_action(conn, &action.id, state, &result)?;
                    audit(
                        conn,
                        &who,
                        &format!("chat.{}", action.action),
                        &subject_of(action.action, &facts),
                        json!({"via": "slack", "slack_user": action.slack_user_id,
                               "role": action.role, "result": state, "detail": result,
                               "action_id": action.id, "channel_id": action.channel_id}),
                    )?;
                    Ok::<_, StorageError>(escalated)
                })
            })
            .await?;
        if escalated {
            self.notifier.wakers.wake(JobKind::Notify);
        }
        Ok(())
    }

    /// Says in the message's thread who did what and how it went, and puts the same line on the
    /// message itself. Losing either loses no work: the audit log has it.
    async fn show_in_thread(
        &self,
        action: &ChatActionRow,
        channel: &ChannelRow,
        delivery: &DeliveryRow,
        facts: &Facts,
        done: &Done,
    ) {
        let Some(ts) = delivery.provider_message_id.clone() else {
            return;
        };
        let Ok(token) = self
            .notifier
            .vault
            .open(&channel.secret_enc, &secret_context(&channel.id))
        else {
            return;
        };
        let base = channel
            .api_base
            .as_deref()
            .unwrap_or(SLACK_API)
            .trim_end_matches('/')
            .to_owned();
        let target = channel.target.clone().unwrap_or_default();
        let who = match &action.slack_user_name {
            Some(name) => format!("<@{}> ({name})", action.slack_user_id),
            None => format!("<@{}>", action.slack_user_id),
        };
        let mark = if done.state == ChatActionState::Done {
            "✅"
        } else {
            "⚠️"
        };
        let line = format!("{mark} {who}, as {}, {}", action.role, done.result);
        let thread = delivery.thread_ts.clone().unwrap_or_else(|| ts.clone());
        let reply = json!({"channel": target, "thread_ts": thread, "text": line,
                           "unfurl_links": false});
        let posted = self
            .notifier
            .poster
            .post(
                &format!("{base}/chat.postMessage"),
                Some(&token),
                &[],
                reply.to_string(),
            )
            .await;
        if !matches!(posted, Posted::Ok { .. }) {
            tracing::info!(channel.id = %channel.id, "a chat action's result was not posted in its thread: {posted:?}");
        }
        let links = self.notifier.settings.links();
        let level = delivery.redaction.unwrap_or(channel.redaction);
        let mut message = render::render(facts, &links, level, chrono::Utc::now().timestamp());
        message.status = Some(format!(
            "{mark} {} by {}: {}",
            render::action_label(action.action),
            action
                .slack_user_name
                .as_deref()
                .unwrap_or(&action.slack_user_id),
            done.result
        ));
        message.action_value = Some(delivery.id.clone());
        let update = format::slack_update(&message, &target, &ts);
        let updated = self
            .notifier
            .poster
            .post(
                &format!("{base}/chat.update"),
                Some(&token),
                &[],
                update.to_string(),
            )
            .await;
        if !matches!(updated, Posted::Ok { .. }) {
            tracing::info!(channel.id = %channel.id, "a clicked message was not updated: {updated:?}");
        }
    }
}

fn failed(why: &str) -> Done {
    Done {
        state: ChatActionState::Failed,
        result: format!("could not do it: {why}"),
    }
}

/// What a done click leaves in billmirror: a follow-up on the customer, or the message queued
/// for the escalation channel; `true` when a message was queued.
fn leave_behind(
    conn: &mut DbConnection,
    action: &ChatActionRow,
    delivery: &DeliveryRow,
    facts: &Facts,
    who: &str,
) -> Result<bool, StorageError> {
    let follow_up = match action.action {
        ChatAction::MarkContacted => Some(FollowUpKind::Contacted),
        ChatAction::AssignBillingQueue => Some(FollowUpKind::AssignedToBillingQueue),
        _ => None,
    };
    if let (Some(kind), Some(customer)) = (follow_up, &facts.customer_id) {
        store::insert_follow_up(
            conn,
            &FollowUpRow {
                id: ids::new_id("fup"),
                connection_id: facts.connection_id.clone(),
                customer_id: customer.clone(),
                kind,
                invoice_id: facts.invoice_id.clone(),
                actor: who.to_owned(),
                created_at: time::now(),
            },
        )?;
    }
    if action.action != ChatAction::Escalate {
        return Ok(false);
    }
    let Some(target) =
        store::find_interactivity(conn, &action.channel_id)?.and_then(|s| s.escalation_channel_id)
    else {
        return Ok(false);
    };
    let mut copy = facts.clone();
    copy.escalated_by = Some(format!(
        "{} ({})",
        action
            .slack_user_name
            .as_deref()
            .unwrap_or(&action.slack_user_id),
        action.role
    ));
    let now = time::now();
    let row = DeliveryRow {
        // Its own message in the escalation channel, not a reply in a thread there.
        subject: None,
        occurred_at: now,
        ..about(
            &copy,
            &target,
            format!("escalate:{}", action.id),
            delivery.redaction,
            now,
        )
    };
    queue(conn, &row)
}
