//! Tolerant reading of Stripe objects: a missing or differently typed field is `None`, never an
//! error, because every API version adds, moves or drops fields.

use chrono::NaiveDateTime;
use serde_json::Value;

use crate::domain::time;

pub fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

pub fn str(value: &Value, path: &[&str]) -> Option<String> {
    at(value, path)?.as_str().map(text)
}

/// Every string the ledger stores comes through here. A `\u0000` in Stripe's JSON decodes to a
/// NUL, which PostgreSQL's TEXT cannot hold: the fold would fail on every attempt and the event
/// end `dead`. The NUL carries no meaning in a name or description, so it is dropped; the event's
/// payload keeps it, escaped, as Stripe sent it.
fn text(value: &str) -> String {
    value.replace('\0', "")
}

pub fn i64(value: &Value, path: &[&str]) -> Option<i64> {
    at(value, path)?.as_i64()
}

pub fn bool(value: &Value, path: &[&str]) -> Option<bool> {
    at(value, path)?.as_bool()
}

/// A Unix timestamp field as a stored time.
pub fn time(value: &Value, path: &[&str]) -> Option<NaiveDateTime> {
    time::from_unix(i64(value, path)?)
}

/// An expandable reference: Stripe sends either the id or the whole object with its id.
pub fn id(value: &Value, path: &[&str]) -> Option<String> {
    match at(value, path)? {
        Value::String(id) => Some(text(id)),
        object @ Value::Object(_) => str(object, &["id"]),
        _ => None,
    }
}

/// Overwrites `slot` with the field's value when the object carries the field (a `null` clears
/// it); keeps it when the field is absent, as in partial objects of some event types.
pub fn take<T>(
    slot: &mut Option<T>,
    object: &Value,
    key: &str,
    read: impl Fn(&Value) -> Option<T>,
) {
    if let Some(value) = object.get(key) {
        *slot = read(value);
    }
}

pub fn as_string(value: &Value) -> Option<String> {
    value.as_str().map(text)
}

pub fn as_time(value: &Value) -> Option<NaiveDateTime> {
    time::from_unix(value.as_i64()?)
}

pub fn as_id(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(text(id)),
        Value::Object(_) => str(value, &["id"]),
        _ => None,
    }
}
