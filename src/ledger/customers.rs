//! Customers, linked by Stripe id; the email is also kept lower-cased for lookups.

use super::json::{self, as_string, as_time, take};
use super::keys::sort_for_fold;
use super::Event;
use crate::storage::ledger::CustomerFields as Fields;

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A customer from all its events, in any order.
pub fn fold(events: &mut [Event]) -> Fields {
    sort_for_fold(events, |_| 0);
    let now = crate::domain::time::now();
    let mut f = Fields {
        observed_at: now,
        updated_at: now,
        ..Fields::default()
    };
    for event in events.iter() {
        let o = &event.object;
        take(&mut f.email, o, "email", as_string);
        take(&mut f.name, o, "name", as_string);
        take(&mut f.stripe_created, o, "created", as_time);
        // Deletion is final: a late `customer.updated` cannot bring a customer back.
        f.deleted |=
            event.event_type == "customer.deleted" || json::bool(o, &["deleted"]) == Some(true);
    }
    f.email_normalized = f.email.as_deref().map(normalize_email);
    f
}
