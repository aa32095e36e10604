//! Applying one stored event: record which ledger objects it describes, then fold it into each of
//! them (and rebuild the objects that depend on them) from their kept fold states; then enqueue
//! the chat notifications it makes.

use super::fold::{self, Fold, Folded, Position};
use super::keys::{self, Key, Kind};
use super::{catalog, customers, disputes, invoices, payments, refunds, subscriptions, Event};
use crate::notify::rules::Rule;
use crate::storage::events::EventRow;
use crate::storage::ledger::{self as ledger_store, StoredFold};
use crate::storage::{attempts, DbConnection, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The payload lacks what its type needs. Retrying will not help until the code changes, but
    /// the event is kept and can be replayed.
    #[error("{0}")]
    Payload(String),
    /// Another worker is rebuilding an object this event touches; try again shortly.
    #[error("another worker holds ledger object {0}")]
    Contended(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Applies `row` inside the caller's transaction. `rules` are the enabled notification rules
/// (`notify::rules::enabled`), read once for the caller's batch.
pub fn apply(conn: &mut DbConnection, row: &EventRow, rules: &[Rule]) -> Result<(), ApplyError> {
    let event = Event::parse(&row.payload).map_err(ApplyError::Payload)?;
    apply_parsed(conn, row, &event, rules)
}

/// [`apply`] with `row`'s payload already parsed (the inbox parses it on the request's thread).
pub fn apply_parsed(
    conn: &mut DbConnection,
    row: &EventRow,
    event: &Event,
    rules: &[Rule],
) -> Result<(), ApplyError> {
    let keys = keys::keys_of(event).map_err(ApplyError::Payload)?;
    // Two workers sharing PostgreSQL must not each write a fold that misses the other's event. A
    // worker that finds an object taken puts its event back instead of waiting, so workers that
    // each hold several objects cannot deadlock. The event's own objects are taken as their keys
    // are recorded (one statement each); the objects that depend on them, in `rebuild`.
    for key in &keys {
        let stored = key.stored(&row.connection_id);
        if !ledger_store::record_key_and_lock(conn, &stored, &row.id)? {
            return Err(ApplyError::Contended(stored));
        }
    }
    let mut queue = keys.clone();
    let mut done = Vec::new();
    while let Some(key) = queue.pop() {
        if done.contains(&key) {
            continue;
        }
        // The event being applied is already parsed: it is not read back for its own keys.
        let own = keys.contains(&key);
        let applying = own.then_some((row.id.as_str(), event));
        let dependents = rebuild(conn, &row.connection_id, &key, applying, own)?;
        done.push(key);
        queue.extend(dependents);
    }
    // Chat notifications the event makes are enqueued in this transaction: applied once,
    // announced once.
    crate::notify::produce(conn, row, event, rules)?;
    Ok(())
}

/// Rebuilds one object from its events; returns the objects whose state depends on it.
/// `applying` is the event being applied (our id and its parsed form) when it describes `key`;
/// `locked` says the object is already taken (see [`apply_parsed`]).
fn rebuild(
    conn: &mut DbConnection,
    connection_id: &str,
    key: &Key,
    applying: Option<(&str, &Event)>,
    locked: bool,
) -> Result<Vec<Key>, ApplyError> {
    let stored = key.stored(connection_id);
    if !locked && !ledger_store::try_lock_object(conn, &stored)? {
        return Err(ApplyError::Contended(stored));
    }
    // Every kind folds the new event into its kept state (`fold_kept`).
    let id = key.stripe_id.as_str();
    let mut dependents = Vec::new();
    match key.kind {
        Kind::Customer => {
            let fields = fold_kept(conn, &stored, &customers::Customer, applying)?;
            ledger_store::upsert_customer(conn, connection_id, id, &fields)?
        }
        Kind::Subscription => {
            let fields = fold_kept(conn, &stored, &subscriptions::Subscription, applying)?;
            ledger_store::upsert_subscription(conn, connection_id, id, &fields)?
        }
        Kind::Invoice => {
            // The payments pointing at it change without an event of its own: read afresh and
            // folded in at finish, never kept in its state.
            let linked = ledger_store::payments_of_invoice(conn, connection_id, id)?;
            let invoice = invoices::Invoice::new(id, linked);
            let folded = fold_kept(conn, &stored, &invoice, applying)?;
            invoices::write_folded(conn, connection_id, id, folded)?
        }
        Kind::Payment => {
            let (payment, tried) = fold_kept(conn, &stored, &payments::Payment, applying)?;
            let rows = payments::attempt_rows(connection_id, id, &payment.currency, tried);
            ledger_store::upsert_payment(conn, connection_id, id, &payment)?;
            attempts::write_all(conn, &rows)?;
            // The invoice it pays is paid by it.
            dependents.extend(
                payment
                    .stripe_invoice_id
                    .map(|invoice| Key::new(Kind::Invoice, invoice)),
            );
        }
        Kind::Refund => {
            let fields = fold_kept(conn, &stored, &refunds::Refund(id.to_owned()), applying)?;
            ledger_store::upsert_refund(conn, connection_id, id, &fields)?
        }
        Kind::Dispute => {
            let fields = fold_kept(conn, &stored, &disputes::Dispute, applying)?;
            ledger_store::upsert_dispute(conn, connection_id, id, &fields)?
        }
        Kind::Price => {
            let fields = fold_kept(conn, &stored, &catalog::Price, applying)?;
            ledger_store::upsert_price(conn, connection_id, id, &fields)?
        }
        Kind::Product => {
            let fields = fold_kept(conn, &stored, &catalog::Product, applying)?;
            ledger_store::upsert_product(conn, connection_id, id, &fields)?
        }
    }
    Ok(dependents)
}

/// The events recorded for the object `stored`, parsed, the one being applied included; with
/// `since` (Unix seconds), only those created in or after that second.
fn recorded_events(
    conn: &mut DbConnection,
    stored: &str,
    applying: Option<(&str, &Event)>,
    since: Option<i64>,
) -> Result<Vec<Event>, ApplyError> {
    let payloads = ledger_store::payloads_of(conn, stored, applying.map(|(id, _)| id), since)?;
    let mut events = payloads
        .iter()
        // Every recorded event parsed once already, when its own keys were recorded.
        .filter_map(|p| Event::parse(p).ok())
        .collect::<Vec<_>>();
    events.extend(applying.map(|(_, event)| event.clone()));
    Ok(events)
}

/// The object's fields with the event being applied folded in, and its new fold state kept. The
/// event is stepped into the kept state when it sorts after every event that state includes (the
/// usual case: constant cost, however many events the object has); otherwise (it arrived out of
/// order, or is replayed) the object is re-folded from the newest snapshot before the event
/// (`refold`). With no event to apply (a dependent object), the kept state is the object's.
fn fold_kept<F: Fold>(
    conn: &mut DbConnection,
    stored: &str,
    fold: &F,
    applying: Option<(&str, &Event)>,
) -> Result<F::Fields, ApplyError> {
    // A state that no longer reads (its shape changed) is rebuilt like an unknown one.
    let kept = match ledger_store::fold_of(conn, stored)? {
        StoredFold::None => Some(Folded::start(fold)),
        StoredFold::Kept(text) => serde_json::from_str::<Folded<F::State>>(&text).ok(),
        StoredFold::Unknown => None,
    };
    let folded = match (applying, kept) {
        (None, Some(kept)) => return Ok(fold.finish(&kept.state)),
        (Some((_, event)), Some(mut kept)) => match fold::fold_into(fold, &mut kept, event) {
            Ok(()) => {
                if kept.snapshot_due() {
                    keep_snapshot(conn, stored, &kept)?;
                }
                kept
            }
            Err(fold::OutOfOrder) => {
                let late = Position::of(event, fold.rank(event));
                refold(conn, stored, fold, applying, Some(&late))?
            }
        },
        (_, None) => refold(conn, stored, fold, applying, None)?,
    };
    ledger_store::keep_fold(conn, stored, &to_text(stored, &folded)?)?;
    Ok(fold.finish(&folded.state))
}

/// How many of the newest snapshots at or before a late event's second are read to find one that
/// sorts before it (more share that second only when that many snapshots' worth of events do).
const SNAPSHOTS_READ: i64 = 3;

/// Re-folds the object from the newest snapshot that sorts before `late` (from its first event
/// when there is none, or `late` is not known), reading only the events from the snapshot's
/// second on; the snapshots that may include `late` are dropped and those the re-fold passes
/// kept again.
fn refold<F: Fold>(
    conn: &mut DbConnection,
    stored: &str,
    fold: &F,
    applying: Option<(&str, &Event)>,
    late: Option<&Position>,
) -> Result<Folded<F::State>, ApplyError> {
    let mut from = None;
    if let Some(late) = late {
        for (_, text) in
            ledger_store::snapshots_before(conn, stored, late.created(), SNAPSHOTS_READ)?
        {
            // A snapshot that no longer reads is passed over like one that sorts after `late`.
            let snapshot = serde_json::from_str::<Folded<F::State>>(&text).ok();
            if let Some(snapshot) =
                snapshot.filter(|s| s.through.as_ref().is_some_and(|t| t < late))
            {
                from = Some(snapshot);
                break;
            }
        }
    }
    ledger_store::drop_snapshots_from(conn, stored, late.map(Position::created))?;
    let from = from.unwrap_or_else(|| Folded::start(fold));
    let since = from.through.as_ref().map(Position::created);
    let events = recorded_events(conn, stored, applying, since)?;
    let mut snapshots = Vec::new();
    let folded = fold::fold_on(fold, from, &events, |due| {
        snapshots.push(to_snapshot(stored, due))
    });
    for snapshot in snapshots {
        let (events, created, text) = snapshot?;
        ledger_store::keep_snapshot(conn, stored, events, created, &text)?;
    }
    Ok(folded)
}

fn keep_snapshot<S: serde::Serialize>(
    conn: &mut DbConnection,
    stored: &str,
    folded: &Folded<S>,
) -> Result<(), ApplyError> {
    let (events, created, text) = to_snapshot(stored, folded)?;
    ledger_store::keep_snapshot(conn, stored, events, created, &text)?;
    Ok(())
}

/// A snapshot's row: how many events it includes, its newest event's second, the state.
fn to_snapshot<S: serde::Serialize>(
    stored: &str,
    folded: &Folded<S>,
) -> Result<(i64, i64, String), ApplyError> {
    let created = folded.through.as_ref().map_or(0, Position::created);
    let events = i64::try_from(folded.events).unwrap_or(i64::MAX);
    Ok((events, created, to_text(stored, folded)?))
}

fn to_text<S: serde::Serialize>(stored: &str, folded: &Folded<S>) -> Result<String, ApplyError> {
    serde_json::to_string(folded)
        .map_err(|e| ApplyError::Payload(format!("cannot keep the fold of {stored}: {e}")))
}
