//! Thin events (Stripe's v2 `v2.core.event`, sent by event destinations): what billmirror makes
//! of them, as pure functions. A thin event carries no object, only `related_object` (`{id, type,
//! url}`); its v1 types are the snapshot types with a `v1.` prefix (`v1.customer.updated`). The
//! `fetch_thin_event` job (`sync::thin`) reads the event and the object from Stripe; this module
//! decides which thin types fold, which path may be read, and the event the ledger then folds.

use serde_json::{json, Value};

use crate::ledger;

/// The snapshot type a thin type stands for, when billmirror maps it: `v1.invoice.paid` →
/// `invoice.paid`. Every other thin type (`v1.billing.meter.no_meter_found`, `v2.…`) is stored
/// and ignored.
pub fn snapshot_type(thin_type: &str) -> Option<&str> {
    thin_type
        .strip_prefix("v1.")
        .filter(|snapshot| ledger::maps(snapshot))
}

/// The path under `/v1/` to read a related object from, as the client takes it
/// (`customers/cus_…`). Only a plain `/v1/` path of Stripe's own is followed: never another host,
/// a query, or a step up, whatever a payload says.
pub fn related_path(url: &str) -> Option<&str> {
    let path = url.strip_prefix("/v1/")?;
    let plain = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    path.split('/').all(plain).then_some(path)
}

/// The path of a thin event at Stripe (`core/events/evt_…`), for an id that is safe in a path.
pub fn event_path(thin_event_id: &str) -> Option<String> {
    let plain = !thin_event_id.is_empty()
        && thin_event_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    plain.then(|| format!("core/events/{thin_event_id}"))
}

/// The id of the event stored for what a thin event's fetch found: one per thin event, so a
/// fetch run twice (a crash, a retry) stores it once.
pub fn snapshot_event_id(thin_event_id: &str) -> String {
    format!("evt_bm_thin_{thin_event_id}")
}

/// The event the ledger folds for a thin event: Stripe's object as it is now, under the snapshot
/// type and at the thin event's `created`, so it sorts among the object's other events by when
/// the change happened. (The object read may be newer than the event; folding it at the event's
/// time is still right: a later event of the object carries a state at least as new.)
pub fn snapshot_event(
    thin_event_id: &str,
    snapshot_type: &str,
    created: i64,
    livemode: bool,
    object: Value,
) -> Value {
    json!({
        "id": snapshot_event_id(thin_event_id),
        "object": "event",
        "type": snapshot_type,
        "created": created,
        "livemode": livemode,
        "api_version": null,
        "thin_event": thin_event_id,
        "data": {"object": object},
    })
}

/// What a deleted object is folded as when Stripe answers 404 for it after a `….deleted` thin
/// event: its id and `deleted: true`, as Stripe shows a deleted object.
pub fn tombstone(related_id: &str, related_type: &str) -> Value {
    json!({"id": related_id, "object": related_type, "deleted": true})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_v1_thin_types_of_mapped_snapshot_types_fold() {
        assert_eq!(
            snapshot_type("v1.customer.updated"),
            Some("customer.updated")
        );
        assert_eq!(snapshot_type("v1.invoice.paid"), Some("invoice.paid"));
        assert_eq!(snapshot_type("v1.billing.meter.no_meter_found"), None);
        assert_eq!(snapshot_type("v2.core.event_destination.ping"), None);
        assert_eq!(
            snapshot_type("customer.updated"),
            None,
            "a snapshot type is not thin"
        );
    }

    #[test]
    fn only_plain_v1_paths_are_followed() {
        assert_eq!(related_path("/v1/customers/cus_1"), Some("customers/cus_1"));
        assert_eq!(
            related_path("/v1/invoices/in_1Nx-2"),
            Some("invoices/in_1Nx-2")
        );
        assert_eq!(
            event_path("evt_65R").as_deref(),
            Some("core/events/evt_65R")
        );
        assert_eq!(event_path("evt_1/../x"), None);
        for url in [
            "https://evil.example/v1/customers/cus_1",
            "//evil.example/v1/customers",
            "/v2/core/accounts/acct_1",
            "/v1/customers/../account",
            "/v1/customers/cus_1?expand[]=x",
            "/v1/customers//cus_1",
            "/v1/",
            "",
        ] {
            assert_eq!(related_path(url), None, "{url}");
        }
    }

    #[test]
    fn the_folded_event_is_the_object_now_at_the_thin_events_time() {
        let event = snapshot_event(
            "evt_65R",
            "customer.updated",
            1_796_292_000,
            false,
            json!({"id": "cus_1", "object": "customer", "email": "a@example.com"}),
        );
        let parsed = ledger::Event::parse(&event.to_string()).unwrap();
        assert_eq!(parsed.id, "evt_bm_thin_evt_65R");
        assert_eq!(parsed.event_type, "customer.updated");
        assert_eq!(parsed.created, 1_796_292_000);
        assert_eq!(parsed.object["email"], "a@example.com");
        assert_eq!(tombstone("in_1", "invoice")["deleted"], true);
    }
}
