//! Applying one stored event: record which ledger objects it describes, then rebuild each of them
//! (and the objects that depend on them) from all their recorded events; then enqueue the chat
//! notifications it makes.

use super::fold::{self, Fold, Folded};
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
    // Only invoices and payments still re-read their events each time (their folds also read
    // other rows); the other kinds fold the new event into their kept state.
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
            let mut events = recorded_events(conn, &stored, applying)?;
            invoices::rebuild(conn, connection_id, id, &mut events)?
        }
        Kind::Payment => {
            let (payment, tried) = payments::fold(&mut recorded_events(conn, &stored, applying)?);
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

/// Every event recorded for the object `stored`, parsed, the one being applied included.
fn recorded_events(
    conn: &mut DbConnection,
    stored: &str,
    applying: Option<(&str, &Event)>,
) -> Result<Vec<Event>, ApplyError> {
    let payloads = ledger_store::payloads_of(conn, stored, applying.map(|(id, _)| id))?;
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
/// order, is replayed, or the object predates kept folds) every recorded event is folded again.
fn fold_kept<F: Fold>(
    conn: &mut DbConnection,
    stored: &str,
    fold: &F,
    applying: Option<(&str, &Event)>,
) -> Result<F::Fields, ApplyError> {
    let kept = ledger_store::fold_of(conn, stored)?;
    let stepped = match (applying, kept) {
        (Some((_, event)), StoredFold::None) => Some(fold::fold_first(fold, event)),
        (Some((_, event)), StoredFold::Kept(text)) => {
            // A state that no longer reads (its shape changed) is rebuilt like a missing one.
            serde_json::from_str::<Folded<F::State>>(&text)
                .ok()
                .and_then(|mut folded| {
                    fold::fold_into(fold, &mut folded, event)
                        .ok()
                        .map(|()| folded)
                })
        }
        _ => None,
    };
    let folded = match stepped {
        Some(folded) => folded,
        None => fold::fold_all(fold, &mut recorded_events(conn, stored, applying)?),
    };
    let text = serde_json::to_string(&folded)
        .map_err(|e| ApplyError::Payload(format!("cannot keep the fold of {stored}: {e}")))?;
    ledger_store::keep_fold(conn, stored, &text)?;
    Ok(fold.finish(&folded.state))
}
