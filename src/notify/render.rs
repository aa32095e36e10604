//! A message's content, whatever the channel: a title, fields, a line of context and links, made
//! from an event's facts (or a digest's members) with money shown by `money::display` and every
//! text redacted. Pure; `format` turns a `Message` into each service's JSON.

use chrono::DateTime;

use super::facts::{Facts, What};
use super::redact::{person, scrub};
use crate::domain::money::display;
use crate::domain::states::{ChatAction, Redaction};

/// How bad the news is: the colour of a Slack attachment or a Teams card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Warning,
    Danger,
    Neutral,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header: what happened, with the amount.
    pub title: String,
    /// One line saying it all: the plain-text fallback and notification preview.
    pub text: String,
    /// A status line above the fields (an update of a thread's first message).
    pub status: Option<String>,
    pub fields: Vec<(String, String)>,
    pub context: Vec<String>,
    pub links: Vec<Link>,
    /// Buttons that ask billmirror to act; shown only where clicks come back to us (a Slack app
    /// channel with interactivity), with `action_value` as their value.
    pub actions: Vec<ChatAction>,
    /// Our delivery id of the message the buttons are on.
    pub action_value: Option<String>,
    pub tone: Tone,
}

/// Where links point.
#[derive(Debug, Clone)]
pub struct Links {
    /// billmirror's address (`PUBLIC_URL`).
    pub public_url: String,
}

impl Links {
    fn dashboard(&self, livemode: bool, path: &str) -> String {
        let mode = if livemode { "" } else { "test/" };
        format!("https://dashboard.stripe.com/{mode}{path}")
    }
}

fn money(amount: Option<i64>, currency: Option<&str>) -> Option<String> {
    Some(display(amount?, currency?))
}

/// "8 Dec 2026 10:46 UTC": words between the numbers, so no date reads as a long number to
/// `redact::scrub`.
fn when(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%-d %b %Y %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// "in 3 days", "in 2 days 5 hours", "in 45 minutes", "2 hours ago": two units at most, rounded
/// to the smaller, so a deadline one second short of three days reads "in 3 days".
pub fn time_left(from: i64, to: i64) -> String {
    let seconds = to - from;
    let magnitude = seconds.abs();
    let unit = |n: i64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let shown = if magnitude >= 86_400 {
        let hours = (magnitude + 1800) / 3600;
        match (hours / 24, hours % 24) {
            (days, 0) => unit(days, "day"),
            (days, hours) => format!("{} {}", unit(days, "day"), unit(hours, "hour")),
        }
    } else if magnitude >= 3600 {
        let minutes = (magnitude + 30) / 60;
        match (minutes / 60, minutes % 60) {
            (hours, 0) => unit(hours, "hour"),
            (hours, minutes) => format!("{} {}", unit(hours, "hour"), unit(minutes, "minute")),
        }
    } else {
        unit(((magnitude + 30) / 60).max(1), "minute")
    };
    if seconds >= 0 {
        format!("in {shown}")
    } else {
        format!("{shown} ago")
    }
}

/// A decline or failure code in words, as support would say it to the customer.
pub fn decline_in_words(code: &str) -> String {
    match code {
        "insufficient_funds" => "insufficient funds",
        "card_declined" | "generic_decline" => "the bank declined the card without saying why",
        "do_not_honor" => "the bank declined the card (do not honor)",
        "expired_card" => "the card has expired",
        "incorrect_cvc" | "invalid_cvc" => "the security code (CVC) is wrong",
        "incorrect_number" | "invalid_number" => "the card number is wrong",
        "lost_card" => "the card was reported lost",
        "stolen_card" => "the card was reported stolen",
        "fraudulent" => "the bank suspects fraud",
        "card_velocity_exceeded" | "withdrawal_count_limit_exceeded" => {
            "the card's spending limit was reached"
        }
        "authentication_required" => "the bank requires the customer to authenticate",
        "processing_error" => "an error while processing the card; a retry may succeed",
        "try_again_later" => "the bank asked to try again later",
        "currency_not_supported" => "the card does not support this currency",
        "pickup_card" => "the bank asked to keep the card (pick up card)",
        "invoice_payment_intent_requires_action" => "the customer must confirm the payment",
        other => return other.replace('_', " "),
    }
    .to_owned()
}

fn dispute_reason_in_words(reason: &str) -> String {
    match reason {
        "fraudulent" => "the cardholder says they did not make the payment",
        "duplicate" => "charged twice for the same thing",
        "product_not_received" => "the product was not received",
        "product_unacceptable" => "the product was unacceptable",
        "subscription_canceled" => "charged after canceling the subscription",
        "unrecognized" => "the cardholder does not recognise the payment",
        "credit_not_processed" => "a promised refund or credit was not processed",
        "general" => "no particular reason given",
        other => return other.replace('_', " "),
    }
    .to_owned()
}

fn refund_reason_in_words(reason: &str) -> String {
    match reason {
        "requested_by_customer" => "requested by the customer".to_owned(),
        "expired_uncaptured_charge" => "the charge was never captured".to_owned(),
        other => other.replace('_', " "),
    }
}

fn card(f: &Facts) -> Option<String> {
    let last4 = f
        .card_last4
        .as_deref()
        .filter(|l| l.len() == 4 && l.chars().all(|c| c.is_ascii_digit()))?;
    let brand = f.card_brand.as_deref().unwrap_or("card");
    Some(format!("{} ending {last4}", capitalise(brand)))
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The message for one event's facts, at `now` (Unix seconds), showing people at `level`.
pub fn render(f: &Facts, links: &Links, level: Redaction, now: i64) -> Message {
    let amount = money(f.amount, f.currency.as_deref());
    let who = person(
        f.customer_name.as_deref(),
        f.customer_email.as_deref(),
        level,
    )
    .unwrap_or_else(|| "a customer".to_owned());
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut push = |label: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            fields.push((label.to_owned(), value));
        }
    };
    let mut dashboard: Option<(String, String)> = None;
    let (title, text, tone) = match f.what {
        What::InvoicePaid => {
            let kind = if f.subscription_id.is_some() {
                "subscription"
            } else {
                "one-time"
            };
            push("Customer", Some(who.clone()));
            push("Invoice", f.invoice_number.clone().or(f.invoice_id.clone()));
            push("Amount", amount.clone());
            push("Type", Some(kind.to_owned()));
            push("Plan", f.plan_name.clone());
            if f.attempt_count.is_some_and(|n| n > 1) {
                push(
                    "Attempts",
                    f.attempt_count.map(|n| format!("paid on attempt {n}")),
                );
            }
            dashboard = f
                .invoice_id
                .as_ref()
                .map(|id| ("Open in Stripe".into(), format!("invoices/{id}")));
            (
                format!("Invoice paid: {}", amount.clone().unwrap_or_default()),
                format!(
                    "{who} paid {} ({kind})",
                    amount.unwrap_or_else(|| "an invoice".into())
                ),
                Tone::Good,
            )
        }
        What::PaymentFailed => {
            let reason = f
                .decline_code
                .as_deref()
                .or(f.failure_code.as_deref())
                .map(decline_in_words);
            push("Customer", Some(who.clone()));
            push("Amount", amount.clone());
            push("Reason", reason.clone());
            push(
                "Bank's message",
                f.failure_message.as_ref().map(|m| scrub(m, level)),
            );
            push("Card", card(f));
            push("Invoice", f.invoice_number.clone().or(f.invoice_id.clone()));
            push("Attempt", f.attempt_count.map(|n| n.to_string()));
            push(
                "Next retry",
                Some(match f.next_retry {
                    Some(at) => format!("{} ({})", when(at), time_left(now, at)),
                    None if f.subscription_id.is_some() => {
                        "none: Stripe's retries are over; the subscription follows your settings for unpaid invoices".to_owned()
                    }
                    None => "none scheduled".to_owned(),
                }),
            );
            if let Some(sub) = &f.subscription_id {
                let plan = f.plan_name.clone().unwrap_or_else(|| sub.clone());
                let status = f.subscription_status.as_deref().unwrap_or("past_due");
                push("Subscription", Some(format!("{plan}: now {status}")));
            }
            dashboard = match (&f.invoice_id, &f.payment_intent_id) {
                (Some(id), _) => Some(("Open in Stripe".into(), format!("invoices/{id}"))),
                (None, Some(pi)) => Some(("Open in Stripe".into(), format!("payments/{pi}"))),
                _ => None,
            };
            (
                format!("Payment failed: {}", amount.clone().unwrap_or_default()),
                format!(
                    "A payment of {} by {who} failed{}",
                    amount.unwrap_or_else(|| "an amount".into()),
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
                Tone::Danger,
            )
        }
        What::DisputeOpened | What::DisputeUpdated | What::DisputeClosed => {
            let reason = f.reason.as_deref().map(dispute_reason_in_words);
            push("Customer", Some(who.clone()));
            push("Amount", amount.clone());
            push("Reason", reason);
            push("Status", f.status.as_ref().map(|s| s.replace('_', " ")));
            push("Charge", f.charge_id.clone());
            push("Card", card(f));
            if f.what != What::DisputeClosed {
                push(
                    "Evidence due",
                    f.evidence_due_by
                        .map(|at| format!("{} ({})", when(at), time_left(now, at))),
                );
            }
            dashboard = Some((
                "Add evidence in Stripe".into(),
                format!("disputes/{}", f.object_id),
            ));
            let (title, tone) = match f.what {
                What::DisputeOpened => ("Dispute opened", Tone::Danger),
                What::DisputeClosed => (
                    "Dispute closed",
                    match f.status.as_deref() {
                        Some("won") => Tone::Good,
                        _ => Tone::Warning,
                    },
                ),
                _ => ("Dispute updated", Tone::Warning),
            };
            let outcome = match (f.what, f.status.as_deref()) {
                (What::DisputeClosed, Some(status)) => format!(": {status}"),
                _ => String::new(),
            };
            (
                format!("{title}: {}{outcome}", amount.clone().unwrap_or_default()),
                format!(
                    "{title} on a payment of {} by {who}{outcome}",
                    amount.unwrap_or_default()
                ),
                tone,
            )
        }
        What::CustomerUpdated => {
            push("Customer", Some(who.clone()));
            push("Changed", Some(f.changes.join(", ")));
            if f.changes.iter().any(|c| c == "email") {
                push(
                    "New email",
                    person(None, f.customer_email.as_deref(), level),
                );
            }
            dashboard = Some((
                "Open in Stripe".into(),
                format!("customers/{}", f.object_id),
            ));
            (
                "Customer billing details updated".to_owned(),
                format!("{who} changed their {}", f.changes.join(", ")),
                Tone::Neutral,
            )
        }
        What::SubscriptionCanceled
        | What::SubscriptionPastDue
        | What::SubscriptionCancelScheduled => {
            let plan = f
                .plan_name
                .clone()
                .unwrap_or_else(|| "a subscription".to_owned());
            push("Customer", Some(who.clone()));
            push("Plan", Some(plan.clone()));
            push("Amount", amount.clone());
            push(
                "Status",
                f.subscription_status.as_ref().map(|s| s.replace('_', " ")),
            );
            push("Reason", f.reason.as_ref().map(|r| r.replace('_', " ")));
            dashboard = Some((
                "Open in Stripe".into(),
                format!("subscriptions/{}", f.object_id),
            ));
            let (title, verb, tone) = match f.what {
                What::SubscriptionCanceled => ("Subscription canceled", "canceled", Tone::Warning),
                What::SubscriptionPastDue => {
                    ("Subscription past due", "is past due on", Tone::Danger)
                }
                _ => ("Subscription set to cancel", "set to cancel", Tone::Warning),
            };
            (title.to_owned(), format!("{who} {verb} {plan}"), tone)
        }
        What::RefundIssued => {
            let full = match f.refund_full {
                Some(true) => "full",
                Some(false) => "partial",
                None => "refund",
            };
            push("Customer", Some(who.clone()));
            push("Amount", amount.clone());
            push("Refund", Some(full.to_owned()));
            push(
                "Of a payment of",
                money(f.charge_amount, f.currency.as_deref()),
            );
            push("Reason", f.reason.as_deref().map(refund_reason_in_words));
            push("Card", card(f));
            dashboard = f
                .payment_intent_id
                .as_ref()
                .or(f.charge_id.as_ref())
                .map(|id| ("Open in Stripe".into(), format!("payments/{id}")));
            (
                format!("Refund issued: {}", amount.clone().unwrap_or_default()),
                format!("A {full} refund of {} to {who}", amount.unwrap_or_default()),
                Tone::Neutral,
            )
        }
        What::Ops => {
            let title = f
                .title
                .clone()
                .unwrap_or_else(|| "billmirror needs attention".into());
            push("Details", f.description.as_ref().map(|d| scrub(d, level)));
            let tone = match f.status.as_deref() {
                Some("recovered") => Tone::Good,
                _ => Tone::Warning,
            };
            (title.clone(), title, tone)
        }
    };
    if let Some(description) = f.description.as_ref().filter(|_| f.what != What::Ops) {
        fields.push(("Description".into(), scrub(description, level)));
    }
    let mut message_links: Vec<Link> = Vec::new();
    if let Some((label, path)) = dashboard {
        message_links.push(Link {
            label,
            url: links.dashboard(f.livemode, &path),
        });
    }
    if let Some(id) = &f.local_invoice_id {
        message_links.push(Link {
            label: "Open in billmirror".into(),
            url: format!("{}/api/invoices/{id}", links.public_url),
        });
    }
    let mode = if f.livemode { "live" } else { "test" };
    let actions = actions_for(f);
    Message {
        title: scrub(&title, level),
        text: scrub(&text, level),
        status: f
            .escalated_by
            .as_ref()
            .map(|who| scrub(&format!("Escalated to legal/finance by {who}"), level)),
        fields: fields
            .into_iter()
            .map(|(l, v)| (l, scrub(&v, level)))
            .collect(),
        context: vec![format!(
            "{} · {mode} · connection {} · {}",
            when(f.occurred_at),
            f.connection_id,
            f.event_id
        )],
        links: message_links,
        actions,
        action_value: None,
        tone,
    }
}

/// The buttons a message about these facts offers: the next steps the issue names for each
/// kind, where the facts have what the step needs.
pub fn actions_for(f: &Facts) -> Vec<ChatAction> {
    let mut actions = Vec::new();
    match f.what {
        What::InvoicePaid if f.customer_id.is_some() => actions.push(ChatAction::MarkContacted),
        What::PaymentFailed => {
            if f.invoice_id.is_some() {
                actions.push(ChatAction::RetryPayment);
                actions.push(ChatAction::SendInvoice);
            }
            if f.customer_id.is_some() {
                actions.push(ChatAction::AssignBillingQueue);
            }
        }
        What::DisputeOpened => actions.push(ChatAction::Escalate),
        _ => {}
    }
    actions
}

/// A button's label.
pub fn action_label(action: ChatAction) -> &'static str {
    match action {
        ChatAction::RetryPayment => "Retry payment now",
        ChatAction::SendInvoice => "Send invoice email",
        ChatAction::MarkContacted => "Mark customer contacted",
        ChatAction::AssignBillingQueue => "Assign to billing queue",
        ChatAction::Escalate => "Notify legal/finance",
    }
}

/// The line a thread's first message gains when a later event about the same object arrives:
/// "Paid after 2 attempts".
pub fn status_line(latest: &Facts) -> String {
    let amount = money(latest.amount, latest.currency.as_deref()).unwrap_or_default();
    match latest.what {
        What::InvoicePaid => match latest.attempt_count {
            Some(n) if n > 1 => format!("✅ Paid after {n} attempts"),
            _ => format!("✅ Paid {amount}"),
        },
        What::PaymentFailed => match latest.attempt_count {
            Some(n) => format!("❌ Failed again (attempt {n})"),
            None => "❌ Failed again".to_owned(),
        },
        What::DisputeClosed => format!(
            "Dispute closed: {}",
            latest.status.as_deref().unwrap_or("closed")
        ),
        What::DisputeUpdated => format!(
            "Dispute updated: {}",
            latest
                .status
                .as_deref()
                .unwrap_or("updated")
                .replace('_', " ")
        ),
        What::RefundIssued => format!("↩ Refunded {amount}"),
        What::SubscriptionCanceled => "Subscription canceled".to_owned(),
        What::SubscriptionPastDue => "Subscription past due".to_owned(),
        What::Ops if latest.status.as_deref() == Some("recovered") => {
            format!("✅ {}", latest.title.as_deref().unwrap_or("Recovered"))
        }
        _ => "Updated".to_owned(),
    }
}

/// One event a digest counts.
#[derive(Debug, Clone)]
pub struct Member {
    pub facts: Facts,
}

/// How many of a digest's members are shown one by one.
pub const DIGEST_SHOWN: usize = 5;

/// A message counting `members`: how many of each kind, the largest few, and how many more, with
/// a link to the full list. `stale` members are events too old to announce one by one.
pub fn render_digest(
    members: &[Member],
    stale: bool,
    list_url: &str,
    level: Redaction,
    now: i64,
) -> Message {
    let count = members.len();
    let mut kinds: Vec<(&'static str, usize)> = Vec::new();
    for m in members {
        let label = digest_label(m.facts.what);
        match kinds.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => kinds.push((label, 1)),
        }
    }
    let tally = kinds
        .iter()
        .map(|(label, n)| format!("{n} {}", plural(label, *n)))
        .collect::<Vec<_>>()
        .join(", ");
    let oldest = members
        .iter()
        .map(|m| m.facts.occurred_at)
        .min()
        .unwrap_or(now);
    let span = if stale {
        format!("older than announcements, since {}", when(oldest))
    } else {
        let minutes = ((now - oldest).max(0) + 59) / 60;
        if minutes <= 1 {
            "in the last minute".to_owned()
        } else {
            format!("in the last {minutes} minutes")
        }
    };
    let mut largest: Vec<&Member> = members.iter().collect();
    largest.sort_by_key(|m| std::cmp::Reverse(m.facts.amount.unwrap_or(0)));
    let shown: Vec<(String, String)> = largest
        .iter()
        .take(DIGEST_SHOWN)
        .map(|m| {
            let f = &m.facts;
            let who = person(
                f.customer_name.as_deref(),
                f.customer_email.as_deref(),
                level,
            )
            .unwrap_or_else(|| "a customer".into());
            (
                money(f.amount, f.currency.as_deref()).unwrap_or_else(|| "—".into()),
                scrub(&format!("{who} · {}", digest_label(f.what)), level),
            )
        })
        .collect();
    let more = count.saturating_sub(shown.len());
    let lead = if count > DIGEST_SHOWN {
        format!("the {} largest", shown.len())
    } else {
        "each".to_owned()
    };
    let title = format!("{tally} {span}");
    let text = if more > 0 {
        format!("{title}: {lead} below, and {more} more")
    } else {
        format!("{title}: {lead} below")
    };
    let mut context = vec![format!("{count} events counted in this message")];
    if stale {
        context.push("These events arrived late (a catch-up or a backlog), so they are summarised instead of announced one by one.".into());
    }
    Message {
        title,
        text,
        status: None,
        fields: shown,
        context,
        links: vec![Link {
            label: format!("All {count} in billmirror"),
            url: list_url.to_owned(),
        }],
        actions: Vec::new(),
        action_value: None,
        tone: Tone::Warning,
    }
}

fn digest_label(what: What) -> &'static str {
    match what {
        What::InvoicePaid => "invoice paid",
        What::PaymentFailed => "payment failed",
        What::DisputeOpened => "dispute opened",
        What::DisputeUpdated => "dispute updated",
        What::DisputeClosed => "dispute closed",
        What::CustomerUpdated => "customer updated",
        What::SubscriptionCanceled => "subscription canceled",
        What::SubscriptionPastDue => "subscription past due",
        What::SubscriptionCancelScheduled => "subscription set to cancel",
        What::RefundIssued => "refund issued",
        What::Ops => "ops alert",
    }
}

/// "payment failed" → "payments failed" when `n` is not 1.
fn plural(label: &str, n: usize) -> String {
    if n == 1 {
        return label.to_owned();
    }
    match label.split_once(' ') {
        Some((noun, rest)) => format!("{noun}s {rest}"),
        None => format!("{label}s"),
    }
}

/// The message `POST /api/notifications/channels/{id}/test` sends.
pub fn test_message(channel_name: &str) -> Message {
    Message {
        title: "billmirror test message".into(),
        text: format!("billmirror can post to {channel_name}"),
        status: None,
        fields: vec![("Channel".into(), channel_name.to_owned())],
        context: vec!["Sent because someone asked for a test message.".into()],
        links: Vec::new(),
        actions: Vec::new(),
        action_value: None,
        tone: Tone::Good,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Event;
    use crate::notify::facts::extract;
    use serde_json::{json, Value};

    const NOW: i64 = 1_700_000_000;

    fn links() -> Links {
        Links {
            public_url: "https://billmirror.example.com".into(),
        }
    }

    fn facts(event_type: &str, object: Value, previous: Value) -> Facts {
        let event = Event {
            id: "evt_1".into(),
            event_type: event_type.into(),
            created: NOW,
            object,
        };
        extract(&event, false, "env", &previous).unwrap()
    }

    fn field<'m>(m: &'m Message, label: &str) -> &'m str {
        m.fields
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {label} in {m:?}"))
    }

    #[test]
    fn an_invoice_paid_message_names_customer_number_amount_and_kind_with_links() {
        let mut f = facts(
            "invoice.paid",
            json!({"id": "in_1", "amount_paid": 42499, "currency": "usd",
            "number": "ABC-0001", "customer_name": "Ada Lovelace", "customer_email": "ada@example.com",
            "subscription": "sub_1"}),
            Value::Null,
        );
        f.local_invoice_id = Some("inv_9".into());
        let m = render(&f, &links(), Redaction::Masked, NOW);
        assert_eq!(m.title, "Invoice paid: 424.99 USD");
        assert_eq!(field(&m, "Customer"), "A*** L*** (a***@example.com)");
        assert_eq!(
            (field(&m, "Invoice"), field(&m, "Type")),
            ("ABC-0001", "subscription")
        );
        assert_eq!(
            m.links[0].url,
            "https://dashboard.stripe.com/test/invoices/in_1"
        );
        assert_eq!(
            m.links[1].url,
            "https://billmirror.example.com/api/invoices/inv_9"
        );
        f.livemode = true;
        f.subscription_id = None;
        let live = render(&f, &links(), Redaction::Full, NOW);
        assert_eq!(
            live.links[0].url,
            "https://dashboard.stripe.com/invoices/in_1"
        );
        assert_eq!(field(&live, "Type"), "one-time");
        assert_eq!(field(&live, "Customer"), "Ada Lovelace (ada@example.com)");
    }

    #[test]
    fn a_payment_failed_message_says_why_in_words_and_what_comes_next() {
        let mut f = facts(
            "invoice.payment_failed",
            json!({"id": "in_1", "amount_due": 4900, "currency": "eur",
            "attempt_count": 2, "next_payment_attempt": NOW + 3 * 86_400, "subscription": "sub_1"}),
            Value::Null,
        );
        f.decline_code = Some("insufficient_funds".into());
        f.card_brand = Some("visa".into());
        f.card_last4 = Some("4242".into());
        f.plan_name = Some("Pro".into());
        let m = render(&f, &links(), Redaction::Hidden, NOW);
        assert_eq!(m.title, "Payment failed: 49.00 EUR");
        assert_eq!(field(&m, "Reason"), "insufficient funds");
        assert_eq!(field(&m, "Card"), "Visa ending 4242");
        assert_eq!(field(&m, "Attempt"), "2");
        assert!(field(&m, "Next retry").ends_with("(in 3 days)"), "{m:?}");
        assert_eq!(field(&m, "Subscription"), "Pro: now past_due");
        assert_eq!(field(&m, "Customer"), "a customer", "hidden");
        f.next_retry = None;
        assert!(
            field(&render(&f, &links(), Redaction::Hidden, NOW), "Next retry")
                .starts_with("none: Stripe's retries are over")
        );
    }

    #[test]
    fn a_dispute_message_gives_the_deadline_and_time_left() {
        let f = facts(
            "charge.dispute.created",
            json!({"id": "dp_1", "amount": 3000, "currency": "usd",
            "charge": "ch_1", "reason": "fraudulent", "status": "needs_response",
            "evidence_details": {"due_by": NOW + 5 * 3600}}),
            Value::Null,
        );
        let m = render(&f, &links(), Redaction::Masked, NOW);
        assert_eq!(m.title, "Dispute opened: 30.00 USD");
        assert_eq!(
            field(&m, "Reason"),
            "the cardholder says they did not make the payment"
        );
        assert!(field(&m, "Evidence due").ends_with("(in 5 hours)"));
        assert_eq!(
            m.links[0].url,
            "https://dashboard.stripe.com/test/disputes/dp_1"
        );
    }

    #[test]
    fn customer_refund_and_subscription_messages() {
        let f = facts(
            "customer.updated",
            json!({"id": "cus_1", "email": "new@example.com", "name": "Ada"}),
            json!({"email": "old@example.com", "address": {}}),
        );
        let m = render(&f, &links(), Redaction::Masked, NOW);
        assert_eq!(field(&m, "Changed"), "email, billing address");
        assert_eq!(field(&m, "New email"), "n***@example.com");
        let f = facts(
            "charge.refunded",
            json!({"id": "ch_1", "amount": 5000, "amount_refunded": 5000,
            "currency": "usd", "refunds": {"data": [{"amount": 5000, "reason": "requested_by_customer"}]}}),
            Value::Null,
        );
        let m = render(&f, &links(), Redaction::Masked, NOW);
        assert_eq!(
            (field(&m, "Refund"), field(&m, "Reason")),
            ("full", "requested by the customer")
        );
        let f = facts(
            "customer.subscription.deleted",
            json!({"id": "sub_1", "status": "canceled"}),
            Value::Null,
        );
        assert_eq!(
            render(&f, &links(), Redaction::Masked, NOW).title,
            "Subscription canceled"
        );
    }

    #[test]
    fn free_text_is_scrubbed_in_every_field() {
        let f = facts(
            "invoice.payment_failed",
            json!({"id": "in_1", "amount_due": 100, "currency": "usd",
            "description": "card 4242 4242 4242 4242 key sk_live_51HxYzAbCdEfGh4f2a mail ada@example.com",
            "customer_name": "Ada 4000056655665556"}),
            Value::Null,
        );
        let m = render(&f, &links(), Redaction::Masked, NOW);
        let all = format!("{m:?}");
        for leaked in [
            "4242 4242",
            "sk_live_51",
            "ada@example.com",
            "4000056655665556",
        ] {
            assert!(!all.contains(leaked), "{leaked} in {all}");
        }
    }

    #[test]
    fn a_digest_counts_every_member_and_shows_the_largest() {
        let members: Vec<Member> = (1..=23)
            .map(|n| {
                let mut f = facts(
                    "invoice.payment_failed",
                    json!({"id": format!("in_{n}"), "amount_due": n * 100, "currency": "usd"}),
                    Value::Null,
                );
                f.occurred_at = NOW - 30;
                Member { facts: f }
            })
            .collect();
        let m = render_digest(&members, false, "https://x/list", Redaction::Masked, NOW);
        assert_eq!(m.title, "23 payments failed in the last minute");
        assert!(
            m.text.ends_with("the 5 largest below, and 18 more"),
            "{}",
            m.text
        );
        assert_eq!(m.fields.len(), 5);
        assert_eq!(m.fields[0].0, "23.00 USD");
        assert_eq!(m.context[0], "23 events counted in this message");
    }

    #[test]
    fn dates_survive_scrubbing() {
        let shown = when(1_796_726_760);
        assert_eq!(scrub(&shown, Redaction::Hidden), shown);
        assert_eq!(shown, "8 Dec 2026 10:46 UTC");
    }

    #[test]
    fn times_left_read_naturally() {
        assert_eq!(time_left(0, 3 * 86_400 + 5), "in 3 days");
        assert_eq!(time_left(5, 3 * 86_400), "in 3 days", "one second short");
        assert_eq!(time_left(0, 2 * 86_400 + 5 * 3600), "in 2 days 5 hours");
        assert_eq!(time_left(0, 3600), "in 1 hour");
        assert_eq!(time_left(0, 5400), "in 1 hour 30 minutes");
        assert_eq!(time_left(0, 30), "in 1 minute");
        assert_eq!(time_left(7200, 0), "2 hours ago");
        assert_eq!(
            status_line(&facts(
                "invoice.paid",
                json!({"id": "in_1", "attempt_count": 2}),
                Value::Null
            )),
            "✅ Paid after 2 attempts"
        );
    }
}
