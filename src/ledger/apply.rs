//! Applying one stored event: record which ledger objects it describes, then rebuild each of them
//! (and the objects that depend on them) from all their recorded events.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::keys::{self, Key, Kind};
use super::{catalog, customers, disputes, invoices, payments, refunds, subscriptions, Event};
use crate::storage::events::EventRow;
use crate::storage::schema::{ledger_event_keys, webhook_events};
use crate::storage::{DbConnection, StorageError};

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

impl From<diesel::result::Error> for ApplyError {
    fn from(e: diesel::result::Error) -> Self {
        ApplyError::Storage(e.into())
    }
}

/// Applies `row` inside the caller's transaction.
pub fn apply(conn: &mut DbConnection, row: &EventRow) -> Result<(), ApplyError> {
    let event = Event::parse(&row.payload).map_err(ApplyError::Payload)?;
    let keys = keys::keys_of(&event).map_err(ApplyError::Payload)?;
    for key in &keys {
        record_key(conn, &key.stored(&row.connection_id), &row.id)?;
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
    Ok(())
}

/// Records that `event_id` describes `key`; already recorded (a replay) is fine.
fn record_key(conn: &mut DbConnection, key: &str, event_id: &str) -> Result<(), ApplyError> {
    let row = (
        ledger_event_keys::ledger_key.eq(key),
        ledger_event_keys::event_id.eq(event_id),
    );
    match conn {
        DbConnection::Postgres(c) => diesel::insert_into(ledger_event_keys::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c)?,
        DbConnection::Sqlite(c) => diesel::insert_into(ledger_event_keys::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c)?,
    };
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
    lock(conn, &stored)?;
    let mut query = ledger_event_keys::table
        .inner_join(webhook_events::table)
        .filter(ledger_event_keys::ledger_key.eq(&stored))
        .select(webhook_events::payload)
        .into_boxed();
    if let Some((id, _)) = applying {
        query = query.filter(ledger_event_keys::event_id.ne(id));
    }
    let payloads: Vec<String> = query.load(conn)?;
    let mut events = payloads
        .iter()
        // Every recorded event parsed once already, when its own keys were recorded.
        .filter_map(|p| Event::parse(p).ok())
        .collect::<Vec<_>>();
    events.extend(applying.map(|(_, event)| event.clone()));
    let id = key.stripe_id.as_str();
    Ok(match key.kind {
        Kind::Customer => customers::rebuild(conn, connection_id, id, events)?,
        Kind::Subscription => subscriptions::rebuild(conn, connection_id, id, events)?,
        Kind::Invoice => invoices::rebuild(conn, connection_id, id, events)?,
        Kind::Payment => payments::rebuild(conn, connection_id, id, events)?,
        Kind::Refund => refunds::rebuild(conn, connection_id, id, events)?,
        Kind::Dispute => disputes::rebuild(conn, connection_id, id, events)?,
        Kind::Price => catalog::rebuild_price(conn, connection_id, id, events)?,
        Kind::Product => catalog::rebuild_product(conn, connection_id, id, events)?,
    })
}

/// Serialises rebuilds of one object across workers sharing PostgreSQL until the transaction
/// ends, so that two workers cannot each write a fold that misses the other's event. It never
/// waits: a worker that finds the object taken puts the event back (`Contended`), so workers that
/// each hold several objects cannot deadlock. SQLite transactions here already hold the database's
/// single write lock.
fn lock(conn: &mut DbConnection, key: &str) -> Result<(), ApplyError> {
    if let DbConnection::Postgres(pg) = conn {
        let taken: Vec<Locked> = diesel::sql_query(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked",
        )
        .bind::<Text, _>(key)
        .load(pg)?;
        if !taken.first().is_some_and(|t| t.locked) {
            return Err(ApplyError::Contended(key.to_owned()));
        }
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}
