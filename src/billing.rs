//! A customer's billing context at a glance, by email: every Stripe customer on every connection
//! whose email matches without regard to letter case, merged, with their payments, subscriptions,
//! invoices, refunds and disputes. Read from the ledger; `refresh` asks Stripe first.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::domain::money::display;
use crate::domain::time::rfc3339;
use crate::invoices::view;
use crate::storage::attempts::{self, AttemptRow};
use crate::storage::billing::{self as store, DisputeRow, PaymentRow, SubscriptionRow};
use crate::storage::{Backend, Db, DbConnection, StorageError};

/// How many of the newest payments and invoices the context shows.
pub const SHOWN: i64 = 100;

fn t(at: Option<chrono::NaiveDateTime>) -> Value {
    at.map_or(Value::Null, |at| Value::String(rfc3339(at)))
}

/// When Stripe will next invoice the subscription, if it will.
pub fn next_invoice_date(s: &SubscriptionRow) -> Option<chrono::NaiveDateTime> {
    let renews = matches!(
        s.status.as_str(),
        "active" | "trialing" | "past_due" | "unpaid"
    );
    if !renews || s.cancel_at_period_end || s.ended_at.is_some() {
        return None;
    }
    let next = if s.status == "trialing" {
        s.trial_end.or(s.current_period_end)
    } else {
        s.current_period_end
    };
    // A cancellation scheduled before the period ends means no further invoice.
    match (next, s.cancel_at) {
        (Some(next), Some(cancel)) if cancel <= next => None,
        (next, _) => next,
    }
}

pub fn subscription_json(s: &SubscriptionRow) -> Value {
    json!({
        "id": s.stripe_id, "connection_id": s.connection_id, "customer": s.stripe_customer_id,
        "status": s.status, "plan_name": s.plan_name, "interval": s.billing_interval,
        "interval_count": s.interval_count, "quantity": s.quantity,
        "amount": s.amount, "currency": s.currency,
        "amount_display": s.amount.zip(s.currency.as_deref()).map(|(a, c)| display(a, c)),
        "current_period_end": t(s.current_period_end),
        "next_invoice_date": t(next_invoice_date(s)),
        "cancel_at_period_end": s.cancel_at_period_end, "cancel_at": t(s.cancel_at),
        "canceled_at": t(s.canceled_at), "ended_at": t(s.ended_at), "trial_end": t(s.trial_end),
    })
}

/// One attempt (charge) of a payment: what support reads to say why a card was declined.
pub fn attempt_json(a: &AttemptRow) -> Value {
    // An error reported without a charge is keyed by its event: that is no charge id to show.
    let charge = (!a.charge_id.starts_with("evt_")).then_some(&a.charge_id);
    json!({
        "charge": charge, "status": a.status, "amount": a.amount, "currency": a.currency,
        "amount_display": display(a.amount, &a.currency),
        "failure_code": a.failure_code, "decline_code": a.decline_code,
        "failure_message": a.failure_message,
        "method": {"type": a.method_type, "brand": a.card_brand, "last4": a.card_last4},
        "created": t(a.stripe_created),
    })
}

/// The dispute a payment is flagged with: Stripe does not always send the `charge.updated` that
/// sets `disputed`, so the disputes pointing at the payment decide it too.
pub fn dispute_flag(d: &DisputeRow) -> Value {
    json!({"id": d.stripe_id, "status": d.status, "reason": d.reason,
           "evidence_due_by": t(d.evidence_due_by)})
}

fn payment_json(p: &PaymentRow, attempts: &[&AttemptRow], dispute: Option<&DisputeRow>) -> Value {
    let refund = match p.amount_refunded {
        0 => Value::Null,
        r if r >= p.amount => json!("full"),
        _ => json!("partial"),
    };
    json!({
        "id": p.stripe_id, "connection_id": p.connection_id, "customer": p.stripe_customer_id,
        "payment_intent": p.payment_intent_id, "charge": p.charge_id, "invoice": p.stripe_invoice_id,
        "amount": p.amount, "currency": p.currency, "amount_display": display(p.amount, &p.currency),
        "created": t(p.stripe_created), "status": p.status, "failure_code": p.failure_code,
        "failure_message": p.failure_message,
        "method": {"type": p.method_type, "brand": p.card_brand, "last4": p.card_last4},
        "amount_refunded": p.amount_refunded, "refund": refund,
        "disputed": p.disputed || dispute.is_some(), "dispute": dispute.map(dispute_flag),
        "attempts": attempts.iter().map(|a| attempt_json(a)).collect::<Vec<_>>(),
        "description": p.description,
    })
}

/// Everything the context shows, as read from the ledger.
struct Lists {
    customers: Vec<store::CustomerRow>,
    payments: Vec<PaymentRow>,
    subscriptions: Vec<SubscriptionRow>,
    invoices: Vec<crate::storage::invoices::InvoiceRow>,
    refunds: Vec<store::RefundRow>,
    disputes: Vec<DisputeRow>,
    attempts: Vec<AttemptRow>,
    /// What people recorded on these customers from chat ("contacted", "billing queue").
    follow_ups: Vec<crate::storage::chat::FollowUpRow>,
}

fn stripe_ids(payments: &[PaymentRow]) -> Vec<String> {
    payments.iter().map(|p| p.stripe_id.clone()).collect()
}

fn payment_ids(payments: &[PaymentRow]) -> (Vec<String>, Vec<String>) {
    let charges = payments
        .iter()
        .filter_map(|p| p.charge_id.clone())
        .collect();
    let intents = payments
        .iter()
        .filter_map(|p| p.payment_intent_id.clone())
        .collect();
    (charges, intents)
}

/// On one connection, one query after the other: SQLite answers in-process, so this is fastest.
fn read_in_turn(conn: &mut DbConnection, emails: &[String]) -> Result<Lists, StorageError> {
    let customers = store::customers_by_email(conn, emails)?;
    let ids: Vec<String> = customers.iter().map(|c| c.stripe_id.clone()).collect();
    let payments = store::payments_of(conn, &ids, SHOWN + 1)?;
    let shown = &payments[..payments.len().min(SHOWN as usize)];
    let (charges, intents) = payment_ids(shown);
    Ok(Lists {
        follow_ups: crate::storage::chat::follow_ups_of(conn, &ids)?,
        attempts: attempts::of_payments(conn, &stripe_ids(shown))?,
        subscriptions: store::subscriptions_of(conn, &ids, None)?,
        invoices: store::invoices_of(conn, &ids, emails, SHOWN)?,
        refunds: store::refunds_of(conn, &charges, &intents)?,
        disputes: store::disputes_of(conn, &charges, &intents)?,
        customers,
        payments,
    })
}

/// The independent queries side by side on pooled connections: on PostgreSQL the round trips,
/// not the (indexed) queries, are most of the time.
async fn read_side_by_side(db: &Db, emails: Vec<String>) -> Result<Lists, StorageError> {
    let lookup = emails.clone();
    let customers = db
        .run(move |conn| store::customers_by_email(conn, &lookup))
        .await?;
    let ids: Vec<String> = customers.iter().map(|c| c.stripe_id.clone()).collect();
    let (payments, follow_ups, subscriptions, invoices) = tokio::try_join!(
        db.run({
            let ids = ids.clone();
            move |conn| store::payments_of(conn, &ids, SHOWN + 1)
        }),
        db.run({
            let ids = ids.clone();
            move |conn| crate::storage::chat::follow_ups_of(conn, &ids)
        }),
        db.run({
            let ids = ids.clone();
            move |conn| store::subscriptions_of(conn, &ids, None)
        }),
        db.run(move |conn| store::invoices_of(conn, &ids, &emails, SHOWN)),
    )?;
    let shown = &payments[..payments.len().min(SHOWN as usize)];
    let (charges, intents) = payment_ids(shown);
    let shown_ids = stripe_ids(shown);
    let (refunds, disputes, attempts) = tokio::try_join!(
        db.run({
            let (charges, intents) = (charges.clone(), intents.clone());
            move |conn| store::refunds_of(conn, &charges, &intents)
        }),
        db.run(move |conn| store::disputes_of(conn, &charges, &intents)),
        db.run(move |conn| attempts::of_payments(conn, &shown_ids)),
    )?;
    Ok(Lists {
        follow_ups,
        attempts,
        customers,
        payments,
        subscriptions,
        invoices,
        refunds,
        disputes,
    })
}

/// The context for these emails (already checked and lower-cased).
pub async fn context(
    db: &Db,
    emails: Vec<String>,
    public_url: &str,
) -> Result<Value, StorageError> {
    let lists = match db.backend() {
        Backend::Sqlite => {
            let lookup = emails.clone();
            db.run(move |conn| read_in_turn(conn, &lookup)).await?
        }
        Backend::Postgres => read_side_by_side(db, emails.clone()).await?,
    };
    let Lists {
        customers,
        payments,
        subscriptions,
        invoices,
        refunds,
        disputes,
        attempts,
        follow_ups,
    } = lists;
    let payments_truncated = payments.len() as i64 > SHOWN;
    let payments = &payments[..payments.len().min(SHOWN as usize)];

    // A refund or dispute names its charge or PaymentIntent; show which payment that is.
    let mut payment_of: HashMap<&str, &PaymentRow> = HashMap::new();
    for p in payments {
        for id in [&p.charge_id, &p.payment_intent_id].into_iter().flatten() {
            payment_of.insert(id.as_str(), p);
        }
    }
    let owner = |charge: &Option<String>, intent: &Option<String>| {
        charge
            .as_deref()
            .and_then(|c| payment_of.get(c))
            .or_else(|| intent.as_deref().and_then(|i| payment_of.get(i)))
            .copied()
    };

    Ok(json!({
        "emails": emails,
        "customers": customers.iter().map(|c| json!({
            "id": c.stripe_id, "connection_id": c.connection_id, "email": c.email, "name": c.name,
            "deleted": c.deleted, "created": t(c.stripe_created),
            // Newest first: who contacted the customer or queued them, from chat.
            "follow_ups": follow_ups.iter()
                .filter(|f| f.connection_id == c.connection_id && f.customer_id == c.stripe_id)
                .map(|f| json!({"kind": f.kind, "by": f.actor, "invoice": f.invoice_id, "at": rfc3339(f.created_at)}))
                .collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "payments": payments.iter().map(|p| {
            let tried: Vec<&AttemptRow> = attempts.iter()
                .filter(|a| a.connection_id == p.connection_id && a.payment_stripe_id == p.stripe_id)
                .collect();
            // The newest dispute of the payment, whichever of its ids the dispute names.
            let dispute = disputes.iter().find(|d| {
                d.connection_id == p.connection_id
                    && ((d.charge_id.is_some() && d.charge_id == p.charge_id)
                        || (d.payment_intent_id.is_some() && d.payment_intent_id == p.payment_intent_id))
            });
            payment_json(p, &tried, dispute)
        }).collect::<Vec<_>>(),
        "payments_truncated": payments_truncated,
        "subscriptions": subscriptions.iter().map(subscription_json).collect::<Vec<_>>(),
        "invoices": invoices.into_iter().map(|i| view::summary(i, public_url)).collect::<Vec<_>>(),
        "refunds": refunds.iter().map(|r| {
            let paid = owner(&r.charge_id, &r.payment_intent_id);
            json!({
                "id": r.stripe_id, "connection_id": r.connection_id,
                "payment": paid.map(|p| p.stripe_id.clone()), "charge": r.charge_id,
                "amount": r.amount, "currency": r.currency, "amount_display": display(r.amount, &r.currency),
                "reason": r.reason, "status": r.status, "created": t(r.stripe_created),
                "full": paid.map(|p| r.amount >= p.amount),
            })
        }).collect::<Vec<_>>(),
        "disputes": disputes.iter().map(|d| json!({
            "id": d.stripe_id, "connection_id": d.connection_id,
            "payment": owner(&d.charge_id, &d.payment_intent_id).map(|p| p.stripe_id.clone()),
            "charge": d.charge_id, "amount": d.amount, "currency": d.currency,
            "amount_display": display(d.amount, &d.currency), "reason": d.reason, "status": d.status,
            "evidence_due_by": t(d.evidence_due_by), "created": t(d.stripe_created),
        })).collect::<Vec<_>>(),
    }))
}
