//! Applying one stored event: record which ledger objects it describes, then rebuild each of them
//! (and the objects that depend on them) from all their recorded events; then enqueue the chat
//! notifications it makes.

use super::keys::{self, Key, Kind};
use super::{catalog, customers, disputes, invoices, payments, refunds, subscriptions, Event};
use crate::storage::events::EventRow;
use crate::storage::ledger as ledger_store;
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

/// Applies `row` inside the caller's transaction.
pub fn apply(conn: &mut DbConnection, row: &EventRow) -> Result<(), ApplyError> {
    let event = Event::parse(&row.payload).map_err(ApplyError::Payload)?;
    let keys = keys::keys_of(&event).map_err(ApplyError::Payload)?;
    for key in &keys {
        ledger_store::record_key(conn, &key.stored(&row.connection_id), &row.id)?;
    }
    let mut queue = keys.clone();
    let mut done = Vec::new();
    while let Some(key) = queue.pop() {
        if done.contains(&key) {
            continue;
        }
        // The event being applied is already parsed: it is not read back for its own keys.
        let applying = keys.contains(&key).then_some((row.id.as_str(), &event));
        let dependents = rebuild(conn, &row.connection_id, &key, applying)?;
        done.push(key);
        queue.extend(dependents);
    }
    // Chat notifications the event makes are enqueued in this transaction: applied once,
    // announced once.
    crate::notify::produce(conn, row, &event)?;
    Ok(())
}

/// Rebuilds one object from its events; returns the objects whose state depends on it.
/// `applying` is the event being applied (our id and its parsed form) when it describes `key`.
fn rebuild(
    conn: &mut DbConnection,
    connection_id: &str,
    key: &Key,
    applying: Option<(&str, &Event)>,
) -> Result<Vec<Key>, ApplyError> {
    let stored = key.stored(connection_id);
    // Two workers sharing PostgreSQL must not each write a fold that misses the other's event. A
    // worker that finds the object taken puts its event back instead of waiting, so workers that
    // each hold several objects cannot deadlock.
    if !ledger_store::try_lock_object(conn, &stored)? {
        return Err(ApplyError::Contended(stored));
    }
    let payloads = ledger_store::payloads_of(conn, &stored, applying.map(|(id, _)| id))?;
    let mut events = payloads
        .iter()
        // Every recorded event parsed once already, when its own keys were recorded.
        .filter_map(|p| Event::parse(p).ok())
        .collect::<Vec<_>>();
    events.extend(applying.map(|(_, event)| event.clone()));
    let id = key.stripe_id.as_str();
    let mut dependents = Vec::new();
    match key.kind {
        Kind::Customer => {
            ledger_store::upsert_customer(conn, connection_id, id, &customers::fold(&mut events))?
        }
        Kind::Subscription => ledger_store::upsert_subscription(
            conn,
            connection_id,
            id,
            &subscriptions::fold(&mut events),
        )?,
        Kind::Invoice => invoices::rebuild(conn, connection_id, id, &mut events)?,
        Kind::Payment => {
            let (payment, tried) = payments::fold(&mut events);
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
            ledger_store::upsert_refund(conn, connection_id, id, &refunds::fold(id, &mut events))?
        }
        Kind::Dispute => {
            ledger_store::upsert_dispute(conn, connection_id, id, &disputes::fold(&mut events))?
        }
        Kind::Price => {
            ledger_store::upsert_price(conn, connection_id, id, &catalog::fold_price(&mut events))?
        }
        Kind::Product => ledger_store::upsert_product(
            conn,
            connection_id,
            id,
            &catalog::fold_product(&mut events),
        )?,
    }
    Ok(dependents)
}
