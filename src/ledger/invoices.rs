//! Invoices and their lines, from `invoice.*` and `invoice_payment.paid`, plus the payments that
//! point at them. Status only moves forward: `draft` → `open` → `past_due` → `uncollectible` →
//! `paid`, and `void`/`deleted` end it, so a late `invoice.updated` cannot reopen a paid invoice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::apply::ApplyError;
use super::fold::Fold;
use super::json::{self, as_id, as_string, as_time, take};
use super::keys::listed;
use super::Event;
use crate::domain::states::{InvoiceOrigin, InvoiceStatus};
use crate::domain::time;
use crate::storage::invoices as store;
use crate::storage::ledger::{
    self as ledger_store, InvoiceFields as Fields, KnownInvoice as Ours, LinkedPayment,
    MirroredLine,
};
use crate::storage::DbConnection;

/// The status an event says the invoice has reached; a status word Stripe may add later is none.
fn status_of(event: &Event) -> Option<InvoiceStatus> {
    let stated = event.object["status"]
        .as_str()
        .and_then(|s| s.parse::<InvoiceStatus>().ok());
    Some(match event.event_type.as_str() {
        "invoice.deleted" => InvoiceStatus::Deleted,
        "invoice.voided" => InvoiceStatus::Void,
        "invoice.marked_uncollectible" => InvoiceStatus::Uncollectible,
        "invoice.paid" | "invoice.payment_succeeded" | "invoice_payment.paid" => {
            InvoiceStatus::Paid
        }
        "invoice.payment_failed" if stated != Some(InvoiceStatus::Paid) => InvoiceStatus::PastDue,
        _ => stated?,
    })
}

/// What an invoice's events say, folded, with the payments pointing at it.
#[derive(Debug)]
pub struct Folded {
    pub fields: Fields,
    /// Our invoice's id, when our metadata names it (an invoice billmirror pushed).
    pub local_id: Option<String>,
    lines: Option<KeptLines>,
    /// Stripe's PDF of the invoice, from the newest event that has one.
    pub pdf: Option<String>,
}

/// Writes what invoice `stripe_id`'s fold gives: into our row when it is one billmirror pushed,
/// else into its mirrored row with Stripe's lines. `None` (only an invoice payment so far) writes
/// nothing: the invoice itself will come, and fold this in then.
pub fn write_folded(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    folded: Option<Folded>,
) -> Result<(), ApplyError> {
    let Some(Folded {
        fields,
        local_id,
        lines,
        pdf,
    }) = folded
    else {
        return Ok(());
    };
    let currency = fields.currency.clone();
    let written = write(conn, connection_id, stripe_id, local_id.as_deref(), fields)?;
    if let Some(url) = &pdf {
        let (Written::Ours(id) | Written::Mirrored(id)) = &written;
        store::set_pdf(conn, id, url)?;
    }
    if let (Some(lines), Written::Mirrored(id)) = (lines, &written) {
        ledger_store::replace_lines(conn, id, &mirrored_lines(&lines.items, &currency))?;
        if lines.complete {
            store::mark_lines_complete(conn, id)?;
        } else {
            let known = i32::try_from(lines.items.len()).unwrap_or(i32::MAX);
            store::mark_lines_incomplete(conn, id, connection_id, stripe_id, known)?;
        }
    }
    Ok(())
}

/// Invoice `stripe_id` from all its events, in any order, and the payments pointing at it; `None`
/// while only invoice payments have been seen.
#[cfg(test)]
pub fn fold(stripe_id: &str, events: &mut [Event], linked: &[LinkedPayment]) -> Option<Folded> {
    let invoice = Invoice::new(stripe_id, linked.to_vec());
    let folded = super::fold::fold_all(&invoice, events);
    invoice.finish(&folded.state)
}

/// The invoice fold. What it reads from other rows is not part of its state: the payments
/// pointing at the invoice are read afresh for each apply and folded in at finish, and the row's
/// own fields (`keep_what_we_know`) when it is written.
pub struct Invoice {
    stripe_id: String,
    linked: Vec<LinkedPayment>,
}

impl Invoice {
    /// The fold of invoice `stripe_id`, with the payments now pointing at it (oldest first).
    pub fn new(stripe_id: &str, linked: Vec<LinkedPayment>) -> Invoice {
        Invoice {
            stripe_id: stripe_id.to_owned(),
            linked,
        }
    }
}

/// An invoice's fold state: what its events say so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    fields: Fields,
    local_id: Option<String>,
    lines: Option<KeptLines>,
    seen_invoice: bool,
    pdf: Option<String>,
}

impl Fold for Invoice {
    type State = State;
    type Fields = Option<Folded>;

    fn start(&self) -> State {
        State {
            fields: Fields {
                stripe_id: Some(self.stripe_id.clone()),
                status: InvoiceStatus::Draft,
                ..Fields::default()
            },
            local_id: None,
            lines: None,
            seen_invoice: false,
            pdf: None,
        }
    }

    fn rank(&self, event: &Event) -> u8 {
        status_of(event).map_or(0, InvoiceStatus::rank)
    }

    fn step(&self, state: &mut State, event: &Event) {
        let f = &mut state.fields;
        let o = &event.object;
        if let Some(status) = status_of(event) {
            if status.rank() >= f.status.rank() {
                f.status = status;
            }
        }
        if event.event_type.starts_with("invoice_payment.") {
            f.amount_paid = f
                .amount_paid
                .max(json::i64(o, &["amount_paid"]).unwrap_or(0));
            f.paid_at = f
                .paid_at
                .or(json::time(o, &["status_transitions", "paid_at"]));
            return;
        }
        state.seen_invoice = true;
        take(&mut f.number, o, "number", as_string);
        take(&mut f.stripe_customer_id, o, "customer", as_id);
        take(&mut f.customer_email, o, "customer_email", as_string);
        take(&mut f.customer_name, o, "customer_name", as_string);
        take(&mut f.stripe_subscription_id, o, "subscription", as_id);
        if let Some(sub) = json::id(o, &["parent", "subscription_details", "subscription"]) {
            f.stripe_subscription_id = Some(sub);
        }
        take(&mut f.due_date, o, "due_date", as_time);
        take(
            &mut f.hosted_invoice_url,
            o,
            "hosted_invoice_url",
            as_string,
        );
        take(
            &mut f.next_payment_attempt,
            o,
            "next_payment_attempt",
            as_time,
        );
        take(&mut f.stripe_created, o, "created", as_time);
        if let Some(url) = json::str(o, &["invoice_pdf"]) {
            state.pdf = Some(url);
        }
        if let Some(currency) = json::str(o, &["currency"]) {
            f.currency = currency;
        }
        f.total = json::i64(o, &["total"]).unwrap_or(f.total);
        f.amount_due = json::i64(o, &["amount_due"]).unwrap_or(f.amount_due);
        f.amount_remaining = json::i64(o, &["amount_remaining"]).unwrap_or(f.amount_remaining);
        // Counters and transition times only ever grow or get filled in.
        f.amount_paid = f
            .amount_paid
            .max(json::i64(o, &["amount_paid"]).unwrap_or(0));
        let attempts = json::i64(o, &["attempt_count"]).and_then(|n| i32::try_from(n).ok());
        f.attempt_count = f.attempt_count.max(attempts.unwrap_or(0));
        let transitions = |name: &str| json::time(o, &["status_transitions", name]);
        f.finalized_at = f.finalized_at.or(transitions("finalized_at"));
        f.paid_at = f.paid_at.or(transitions("paid_at"));
        f.voided_at = f.voided_at.or(transitions("voided_at"));
        if let Some(seen) = Lines::of(o) {
            let known = state.lines.as_ref().map(KeptLines::view);
            if !Lines::keeps_known(known.as_ref(), &seen) {
                // The state owns the lines it keeps: it outlives the event.
                state.lines = Some(KeptLines {
                    items: seen.items.to_vec(),
                    complete: seen.complete,
                });
            }
        }
        if let Some(id) = json::str(o, &["metadata", "billmirror_invoice_id"]) {
            state.local_id = Some(id);
        }
    }

    fn finish(&self, state: &State) -> Option<Folded> {
        if !state.seen_invoice {
            return None;
        }
        let now = time::now();
        let mut f = Fields {
            observed_at: now,
            updated_at: now,
            ..state.fields.clone()
        };
        apply_payments(&self.linked, &mut f);
        if f.status == InvoiceStatus::Paid {
            f.amount_remaining = 0;
            f.next_payment_attempt = None;
            f.last_payment_error = None;
        }
        f.customer_email_normalized = f
            .customer_email
            .as_deref()
            .map(crate::domain::email::normalize);
        Some(Folded {
            fields: f,
            local_id: state.local_id.clone(),
            lines: state.lines.clone(),
            pdf: state.pdf.clone(),
        })
    }
}

/// The lines a fold keeps: the list the newest event worth keeping showed (see
/// [`Lines::prefer`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeptLines {
    items: Vec<Value>,
    complete: bool,
}

impl KeptLines {
    fn view(&self) -> Lines<'_> {
        Lines {
            items: &self.items,
            complete: self.complete,
        }
    }
}

/// The lines one event shows: Stripe's payloads carry the first page only, saying so with
/// `has_more: true`.
#[derive(Debug, Clone, Copy)]
struct Lines<'e> {
    items: &'e [Value],
    complete: bool,
}

impl<'e> Lines<'e> {
    fn of(object: &'e Value) -> Option<Lines<'e>> {
        let list = object.get("lines").filter(|l| l.is_object())?;
        Some(Lines {
            items: listed(object, "lines"),
            complete: list["has_more"] != true,
        })
    }

    /// The list to keep after seeing `seen`, events taken in fold order: a complete list is the
    /// truth of its moment; a truncated page replaces what is known only when it shows more, so
    /// a longer list is never shrunk to a first page.
    #[cfg(test)]
    fn prefer(known: Option<Lines<'e>>, seen: Lines<'e>) -> Lines<'e> {
        match known {
            Some(known) if Lines::keeps_known(Some(&known), &seen) => known,
            _ => seen,
        }
    }

    /// Whether [`Lines::prefer`] keeps `known` over `seen`.
    fn keeps_known(known: Option<&Lines<'_>>, seen: &Lines<'_>) -> bool {
        known.is_some_and(|known| !seen.complete && known.items.len() >= seen.items.len())
    }
}

/// Folds in what the payments pointing at this invoice say: a succeeded one means it is paid, the
/// latest failed one gives the reason shown while it is past due.
fn apply_payments(linked: &[LinkedPayment], f: &mut Fields) {
    for payment in linked {
        match payment.status.as_str() {
            "succeeded" | "refunded" | "partially_refunded" => {
                if f.status.rank() < InvoiceStatus::Paid.rank() {
                    f.status = InvoiceStatus::Paid;
                }
                f.amount_paid = f.amount_paid.max(payment.amount);
                f.paid_at = f.paid_at.or(payment.stripe_created);
            }
            "failed" => {
                f.last_payment_error = payment
                    .failure_message
                    .clone()
                    .or(f.last_payment_error.take())
            }
            _ => {}
        }
    }
}

/// Which row an invoice's events were written to.
enum Written {
    /// One billmirror made, by its row id: its lines are the ones we pushed, never replaced by
    /// Stripe's.
    Ours(String),
    /// One mirrored from Stripe, by its row id: Stripe's lines are its lines.
    Mirrored(String),
}

/// Folds what the row already holds into the fields the events gave. Status never moves back
/// (the push worker may have finalized before Stripe's `invoice.finalized` arrived), and an event
/// that omits the customer's email or name does not erase the one we invoiced. For an invoice
/// billmirror made, our amounts stand while Stripe's events only show a draft: Stripe echoes
/// `invoice.created` with no lines and a zero total, and items added one by one in between.
/// Once Stripe's events show it finalized, Stripe's amounts are the ones billed (the push
/// checked they equal ours before finalizing). A draft of ours deleted in Stripe leaves our
/// row voided, pointing at nothing.
fn keep_what_we_know(existing: Ours, f: &mut Fields) {
    // Judged on Stripe's events alone, before our own status is folded in.
    let stripe_shows_a_draft =
        (f.status == InvoiceStatus::Draft || f.status.is_ended()) && f.finalized_at.is_none();
    if existing.status.rank() > f.status.rank() {
        f.status = existing.status;
    }
    if f.customer_email.is_none() && existing.customer_email.is_some() {
        f.customer_email = existing.customer_email;
        f.customer_email_normalized = existing.customer_email_normalized;
    }
    if f.customer_name.is_none() {
        f.customer_name = existing.customer_name;
    }
    if existing.origin != InvoiceOrigin::Billmirror {
        return;
    }
    if stripe_shows_a_draft {
        f.total = existing.total;
        f.amount_due = existing.amount_due;
        f.amount_remaining = existing.amount_remaining;
    }
    if f.status == InvoiceStatus::Deleted {
        f.status = InvoiceStatus::Void;
        f.stripe_id = None;
    }
}

/// Writes the invoice row: ours when our metadata names it (an invoice billmirror pushed), else
/// the mirrored row for this Stripe id, created on first sight.
fn write(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    local_id: Option<&str>,
    mut f: Fields,
) -> Result<Written, ApplyError> {
    match ledger_store::invoice_row_for(conn, connection_id, stripe_id, local_id)? {
        Some((id, known)) => {
            let ours = known.origin == InvoiceOrigin::Billmirror;
            keep_what_we_know(known, &mut f);
            // A mirrored invoice was made when Stripe made it, not when we heard of it.
            let created = (!ours).then_some(f.stripe_created).flatten();
            ledger_store::update_invoice(conn, &id, &f, created)?;
            Ok(if ours {
                Written::Ours(id)
            } else {
                Written::Mirrored(id)
            })
        }
        None => Ok(Written::Mirrored(ledger_store::insert_mirrored_invoice(
            conn,
            connection_id,
            &f,
        )?)),
    }
}

/// Stripe's lines as stored: amounts in minor units, the unit amount wherever this API version
/// puts it.
fn mirrored_lines(lines: &[Value], currency: &str) -> Vec<MirroredLine> {
    lines
        .iter()
        .map(|line| MirroredLine {
            stripe_id: json::str(line, &["id"]),
            description: json::str(line, &["description"]).unwrap_or_default(),
            quantity: json::i64(line, &["quantity"]).unwrap_or(1),
            unit_amount: json::i64(line, &["price", "unit_amount"])
                // Since basil the unit amount is a decimal string under `pricing`.
                .or_else(|| {
                    json::str(line, &["pricing", "unit_amount_decimal"])
                        .and_then(|d| d.parse().ok())
                })
                .or_else(|| json::i64(line, &["plan", "amount"])),
            amount: json::i64(line, &["amount"]).unwrap_or(0),
            currency: json::str(line, &["currency"]).unwrap_or_else(|| currency.to_owned()),
            stripe_price_id: json::id(line, &["price"])
                .or_else(|| json::str(line, &["pricing", "price_details", "price"]))
                .or_else(|| json::id(line, &["plan"])),
            period_start: json::time(line, &["period", "start"]),
            period_end: json::time(line, &["period", "end"]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(origin: InvoiceOrigin, status: InvoiceStatus, total: i64) -> Ours {
        Ours {
            origin,
            status,
            customer_email: Some("pat@example.com".to_owned()),
            customer_email_normalized: Some("pat@example.com".to_owned()),
            customer_name: Some("Pat".to_owned()),
            total,
            amount_due: total,
            amount_remaining: total,
        }
    }

    fn echo(status: InvoiceStatus, total: i64) -> Fields {
        Fields {
            stripe_id: Some("in_1".to_owned()),
            status,
            total,
            amount_due: total,
            amount_remaining: total,
            ..Fields::default()
        }
    }

    #[test]
    fn a_paid_event_makes_the_invoice_paid_whatever_its_status_field_says() {
        use crate::ledger::fixtures::event;
        let created = event("invoice.created__basil__stripe-openapi-fixtures3-2025-03-31.basil");
        let paid = event("invoice.paid__basil__stripe-openapi-fixtures3-2025-03-31.basil");
        let mut events = [paid, created];
        let folded = fold("in_1Pgc6tB7WZ01zgkWu9fdqL6I", &mut events, &[]).unwrap();
        assert_eq!(folded.fields.status, InvoiceStatus::Paid);
        assert_eq!(folded.fields.amount_remaining, 0);
        assert_eq!(folded.fields.total, 1000);
        let lines = folded.lines.unwrap();
        assert_eq!((lines.items.len(), lines.complete), (1, true));
    }

    #[test]
    fn a_succeeded_payment_pointing_at_an_open_invoice_pays_it() {
        use crate::ledger::fixtures::event;
        let finalized =
            event("invoice.finalized__basil__stripe-openapi-fixtures3-2025-03-31.basil");
        let id = finalized.object["id"].as_str().unwrap().to_owned();
        let linked = [LinkedPayment {
            status: "succeeded".into(),
            failure_message: None,
            amount: 1000,
            stripe_created: time::from_unix(1_700_000_000),
        }];
        let mut events = [finalized];
        let folded = fold(&id, &mut events, &linked).unwrap();
        assert_eq!(folded.fields.status, InvoiceStatus::Paid);
        assert_eq!(folded.fields.paid_at, time::from_unix(1_700_000_000));
    }

    #[test]
    fn a_first_page_never_replaces_a_longer_list_but_a_complete_one_does() {
        let all: Vec<Value> = (0..362).map(|n| serde_json::json!({"id": n})).collect();
        let complete = |n: usize| Lines {
            items: &all[..n],
            complete: true,
        };
        let page = |n: usize| Lines {
            items: &all[..n],
            complete: false,
        };
        let kept = |known: Option<Lines>, seen: Lines| {
            let l = Lines::prefer(known, seen);
            (l.items.len(), l.complete)
        };
        assert_eq!(kept(Some(complete(362)), page(10)), (362, true));
        assert_eq!(kept(None, page(10)), (10, false));
        assert_eq!(kept(Some(page(10)), page(20)), (20, false));
        assert_eq!(
            kept(Some(complete(5)), page(10)),
            (10, false),
            "more lines than known"
        );
        assert_eq!(
            kept(Some(page(10)), complete(3)),
            (3, true),
            "a complete list is the truth of its moment"
        );
    }

    #[test]
    fn stripes_empty_draft_does_not_replace_our_amounts_even_after_we_finalized() {
        for local_status in [InvoiceStatus::Draft, InvoiceStatus::Open] {
            let mut f = echo(InvoiceStatus::Draft, 0);
            keep_what_we_know(ours(InvoiceOrigin::Billmirror, local_status, 6_000), &mut f);
            assert_eq!(
                (f.total, f.amount_due, f.amount_remaining),
                (6_000, 6_000, 6_000)
            );
            assert_eq!(f.status, local_status, "status never moves back");
            assert_eq!(f.customer_email.as_deref(), Some("pat@example.com"));
        }
    }

    #[test]
    fn once_stripe_shows_it_finalized_stripes_amounts_are_billed() {
        let mut f = echo(InvoiceStatus::Open, 6_000);
        f.finalized_at = time::from_unix(1_700_000_000);
        f.amount_remaining = 1_000;
        keep_what_we_know(
            ours(InvoiceOrigin::Billmirror, InvoiceStatus::Open, 6_000),
            &mut f,
        );
        assert_eq!(f.amount_remaining, 1_000);
    }

    #[test]
    fn a_mirrored_invoice_takes_stripes_amounts_and_our_deleted_draft_is_void_and_unlinked() {
        let mut mirrored = echo(InvoiceStatus::Draft, 0);
        keep_what_we_know(
            ours(InvoiceOrigin::Stripe, InvoiceStatus::Draft, 6_000),
            &mut mirrored,
        );
        assert_eq!(mirrored.total, 0);

        let mut deleted = echo(InvoiceStatus::Deleted, 0);
        keep_what_we_know(
            ours(InvoiceOrigin::Billmirror, InvoiceStatus::Void, 6_000),
            &mut deleted,
        );
        assert_eq!(
            (deleted.status, deleted.stripe_id),
            (InvoiceStatus::Void, None)
        );
        assert_eq!(deleted.total, 6_000);
    }
}
