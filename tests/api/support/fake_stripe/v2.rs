//! The fake's `/v2` side: thin events (`v2.core.event`) as an event destination sends them, and
//! `GET /v2/core/events/{id}`, as strict as Stripe's documentation of API v2: secret keys only (a
//! restricted key is refused), a `Stripe-Version` header on every request, JSON errors, and 404
//! for an event the key's account does not have.

use serde_json::{json, Value};

use super::{error, Access, KeyInfo, State};

/// The resource a v1 object lives under: `customer` → `customers`.
fn resource_of(object_type: &str) -> String {
    format!("{object_type}s")
}

/// Makes a thin event about `related` (`(id, object type)`) and keeps it for
/// `GET /v2/core/events/{id}`. Its `created` is now, in RFC 3339 with milliseconds as Stripe
/// writes it.
pub(super) fn thin_event(
    s: &mut State,
    account: &str,
    thin_type: &str,
    related: Option<(&str, &str)>,
) -> Value {
    let id = s.new_id("evt_test");
    let related_object = related.map(|(object_id, object_type)| {
        json!({"id": object_id, "type": object_type,
               "url": format!("/v1/{}/{object_id}", resource_of(object_type))})
    });
    let event = json!({
        "id": id, "object": "v2.core.event", "type": thin_type,
        "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "livemode": false, "context": null,
        "reason": {"type": "request", "request": {"id": "req_fake", "idempotency_key": null}},
        "related_object": related_object,
    });
    s.objects
        .entry(account.to_owned())
        .or_default()
        .entry("v2_events".to_owned())
        .or_default()
        .insert(id, event.clone());
    event
}

/// Answers a `/v2/…` request (`rest` is the path after `/v2/`).
pub(super) fn respond(
    s: &mut State,
    info: &KeyInfo,
    method: &str,
    rest: &str,
    stripe_version: Option<&str>,
) -> (u16, Value) {
    if matches!(info.access, Access::Restricted(_)) {
        return error(
            401,
            "invalid_request_error",
            Some("secret_key_required"),
            "This API can only be accessed with a secret key, not a restricted key (fake).",
            None,
        );
    }
    if stripe_version.is_none_or(|v| v.trim().is_empty()) {
        return error(
            400,
            "invalid_request_error",
            Some("stripe_version_required"),
            "Requests to /v2 must specify a Stripe-Version header (fake).",
            None,
        );
    }
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["core", "events", id]) => {
            let found = s
                .objects
                .get(&info.account)
                .and_then(|a| a.get("v2_events"))
                .and_then(|events| events.get(*id))
                .cloned();
            match found {
                Some(mut event) => {
                    // The retrieved event carries what the push left out.
                    event["changes"] = Value::Null;
                    event["snapshot_event"] = Value::Null;
                    (200, event)
                }
                None => error(
                    404,
                    "invalid_request_error",
                    Some("not_found"),
                    &format!("No such v2.core.event: '{id}'"),
                    None,
                ),
            }
        }
        _ => error(
            404,
            "invalid_request_error",
            Some("not_found"),
            &format!("Unrecognized request URL ({method}: /v2/{rest})."),
            None,
        ),
    }
}
