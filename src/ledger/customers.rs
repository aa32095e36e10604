//! Customers, linked by Stripe id; the email is also kept lower-cased for lookups.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::json::{self, as_string, as_time, take};
use super::keys::{sort_for_fold, Key};
use super::{upsert, Event};
use crate::storage::schema::customers;
use crate::storage::DbConnection;

#[derive(Debug, Default, AsChangeset, Insertable)]
#[diesel(table_name = customers, treat_none_as_null = true)]
struct Fields {
    email: Option<String>,
    email_normalized: Option<String>,
    name: Option<String>,
    deleted: bool,
    stripe_created: Option<NaiveDateTime>,
    observed_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn rebuild(
    conn: &mut DbConnection,
    connection_id: &str,
    stripe_id: &str,
    mut events: Vec<Event>,
) -> Result<Vec<Key>, diesel::result::Error> {
    sort_for_fold(&mut events, |_| 0);
    let now = crate::domain::time::now();
    let mut f = Fields {
        observed_at: now,
        updated_at: now,
        ..Fields::default()
    };
    for event in &events {
        let o = &event.object;
        take(&mut f.email, o, "email", as_string);
        take(&mut f.name, o, "name", as_string);
        take(&mut f.stripe_created, o, "created", as_time);
        // Deletion is final: a late `customer.updated` cannot bring a customer back.
        f.deleted |=
            event.event_type == "customer.deleted" || json::bool(o, &["deleted"]) == Some(true);
    }
    f.email_normalized = f.email.as_deref().map(normalize_email);
    upsert!(conn, customers, connection_id, stripe_id, &f);
    Ok(Vec::new())
}
