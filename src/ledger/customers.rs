//! Customers, linked by Stripe id; the email is also kept lower-cased for lookups.

use super::fold::Fold;
use super::json::{self, as_string, as_time, take};
use super::Event;
use crate::domain::email;
use crate::storage::ledger::CustomerFields as Fields;

/// The customer fold: the row's fields themselves are the state.
pub struct Customer;

impl Fold for Customer {
    type State = Fields;
    type Fields = Fields;

    fn start(&self) -> Fields {
        Fields::default()
    }

    fn rank(&self, _: &Event) -> u8 {
        0
    }

    fn step(&self, f: &mut Fields, event: &Event) {
        let o = &event.object;
        take(&mut f.email, o, "email", as_string);
        take(&mut f.name, o, "name", as_string);
        take(&mut f.stripe_created, o, "created", as_time);
        // Deletion is final: a late `customer.updated` cannot bring a customer back.
        f.deleted |=
            event.event_type == "customer.deleted" || json::bool(o, &["deleted"]) == Some(true);
    }

    fn finish(&self, state: &Fields) -> Fields {
        let now = crate::domain::time::now();
        Fields {
            email_normalized: state.email.as_deref().map(email::normalize),
            observed_at: now,
            updated_at: now,
            ..state.clone()
        }
    }
}

#[cfg(test)]
/// A customer from all its events, in any order.
pub fn fold(events: &mut [Event]) -> Fields {
    Customer.finish(&super::fold::fold_all(&Customer, events).state)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ledger::fixtures::{event, variant};

    #[test]
    fn a_deleted_customer_stays_deleted_and_its_email_is_kept_lower_cased() {
        let created = event("customer.created__basil__stripe-openapi-fixtures3-2025-03-31.basil");
        // Every later snapshot carries the email; a null in one would clear it.
        let created = variant(
            &created,
            "evt_1",
            "customer.created",
            created.created,
            json!({"email": " Pat@Example.COM "}),
        );
        let updated = variant(
            &created,
            "evt_2",
            "customer.updated",
            created.created + 10,
            json!({"email": " Pat@Example.COM ", "name": "Pat"}),
        );
        let deleted = variant(
            &created,
            "evt_3",
            "customer.deleted",
            created.created + 20,
            json!({}),
        );
        let late = variant(
            &created,
            "evt_4",
            "customer.updated",
            created.created + 30,
            json!({"name": "Pat D."}),
        );
        for mut events in [
            vec![
                created.clone(),
                updated.clone(),
                deleted.clone(),
                late.clone(),
            ],
            vec![late, deleted, updated, created],
        ] {
            let f = fold(&mut events);
            assert!(f.deleted);
            assert_eq!(f.name.as_deref(), Some("Pat D."));
            assert_eq!(f.email_normalized.as_deref(), Some("pat@example.com"));
        }
    }
}
