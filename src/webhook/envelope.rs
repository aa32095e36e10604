//! The few envelope fields ingest needs from a Stripe event, read tolerantly: unknown fields and
//! API versions are fine, only what identifies the event is required.

use serde::Deserialize;

/// How deeply arrays and objects may nest in an event. Applying an event parses its payload with
/// serde_json, which stops at 128 levels; an event stored beyond that would be acknowledged and
/// then never apply. Real Stripe events nest a dozen levels at most.
pub const MAX_DEPTH: usize = 64;

/// Why a body is not an event ingest can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("{0}")]
    Invalid(String),
    /// An identifying field holds a control character (NUL included, which PostgreSQL's TEXT
    /// cannot store at all); the event could never be stored, listed or looked up reliably.
    #[error("the event's `{0}` contains a control character")]
    ControlCharacter(&'static str),
    #[error("the event nests arrays and objects more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    /// Unix seconds (a thin event's RFC 3339 time, to the second).
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The id of `data.object`, or of a thin event's `related_object`.
    pub object_id: Option<String>,
    /// `object: "v2.core.event"`: a thin event, which carries no object, only a reference to one.
    pub thin: bool,
    /// A thin event's `related_object`, when it has one.
    pub related_object: Option<RelatedObject>,
}

/// What a thin event is about: `{id: "cus_…", type: "customer", url: "/v1/customers/cus_…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RelatedObject {
    pub id: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub url: String,
}

/// A snapshot event's `created` is Unix seconds; a thin event's is an RFC 3339 string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Created {
    Unix(i64),
    Text(String),
}

#[derive(Deserialize)]
struct Raw {
    id: String,
    object: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    created: Created,
    livemode: bool,
    api_version: Option<String>,
    data: Option<RawData>,
    related_object: Option<RelatedObject>,
}

#[derive(Deserialize)]
struct RawData {
    object: Option<RawObject>,
}

#[derive(Deserialize)]
struct RawObject {
    id: Option<String>,
}

/// The `object` of a thin event (Stripe's v2 Event object).
pub const THIN_OBJECT: &str = "v2.core.event";

impl Envelope {
    /// Reads the envelope, or says why the body is not an event that can be stored and applied.
    pub fn parse(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let invalid = |problem: &str| EnvelopeError::Invalid(problem.to_owned());
        // The stored payload is this text: PostgreSQL's TEXT cannot hold a NUL byte. (JSON allows
        // none outside strings and none unescaped inside, so this only names the problem early.)
        if body.contains(&0) {
            return Err(invalid("the body contains a NUL byte"));
        }
        if exceeds_depth(body, MAX_DEPTH) {
            return Err(EnvelopeError::TooDeep);
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| EnvelopeError::Invalid(format!("the body is not a Stripe event: {e}")))?;
        let thin = match raw.object.as_deref() {
            None | Some("event") => false,
            Some(THIN_OBJECT) => true,
            Some(_) => {
                return Err(invalid(
                    "the body's `object` is neither `event` nor `v2.core.event`",
                ))
            }
        };
        // Stripe's ids start with `evt_`, but a signed event is authentic whatever its id looks
        // like; refusing it would only make Stripe retry it for days.
        if raw.id.trim().is_empty() || raw.id.len() > 255 {
            return Err(invalid("the event has no usable `id`"));
        }
        if raw.event_type.is_empty() || raw.event_type.len() > 255 {
            return Err(invalid("the event has no `type`"));
        }
        let created = match (&raw.created, thin) {
            (Created::Unix(seconds), false) => *seconds,
            (Created::Text(text), true) => chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|_| invalid("the thin event's `created` is not an RFC 3339 time"))?
                .timestamp(),
            (_, false) => return Err(invalid("the event's `created` is not a Unix time")),
            (_, true) => {
                return Err(invalid(
                    "the thin event's `created` is not an RFC 3339 time",
                ))
            }
        };
        // A snapshot event is its object; a thin event names one (or none, for some v2 types).
        let object_id = if thin {
            raw.related_object.as_ref().map(|r| r.id.clone())
        } else {
            let object = raw
                .data
                .and_then(|d| d.object)
                .ok_or_else(|| invalid("the event has no `data.object`"))?;
            object.id
        };
        let related = raw.related_object.as_ref().filter(|_| thin);
        // These become columns that are filtered on and shown, or a path we ask Stripe for; a
        // decoded `\u0000` in them would make PostgreSQL refuse the whole batch, and other
        // control characters are never real.
        let fields = [
            ("id", Some(&raw.id)),
            ("type", Some(&raw.event_type)),
            ("api_version", raw.api_version.as_ref()),
            (
                if thin {
                    "related_object.id"
                } else {
                    "data.object.id"
                },
                object_id.as_ref(),
            ),
            ("related_object.type", related.map(|r| &r.object_type)),
            ("related_object.url", related.map(|r| &r.url)),
        ];
        for (name, value) in fields {
            if value.is_some_and(|v| v.chars().any(char::is_control)) {
                return Err(EnvelopeError::ControlCharacter(name));
            }
        }
        Ok(Envelope {
            id: raw.id,
            event_type: raw.event_type,
            created,
            livemode: raw.livemode,
            api_version: raw.api_version.filter(|_| !thin),
            object_id,
            thin,
            related_object: if thin { raw.related_object } else { None },
        })
    }
}

/// Whether arrays and objects nest more than `max` levels anywhere in `body`: a byte scan of the
/// brackets outside strings, so it costs no parse and cannot itself run out of stack. Only ever
/// called on bodies that are then parsed as JSON, so malformed text need not be judged here.
pub fn exceeds_depth(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!exceeds_depth(br#"{"a":[{"b":"[[[[{{{{"}]}"#, 3));
        assert!(exceeds_depth(br#"{"a":[{"b":[1]}]}"#, 3));
        assert!(!exceeds_depth(br#"{"a":"\"[[[[[[","b":{}}"#, 2));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(exceeds_depth(deep.as_bytes(), MAX_DEPTH));
    }

    #[test]
    fn control_characters_in_identifying_fields_are_refused() {
        let event = |id: &str, object_id: &str| {
            serde_json::json!({"id": id, "object": "event", "type": "customer.created",
                "created": 1, "livemode": false, "data": {"object": {"id": object_id}}})
            .to_string()
        };
        assert_eq!(
            Envelope::parse(event("evt_\u{0}1", "cus_1").as_bytes()),
            Err(EnvelopeError::ControlCharacter("id"))
        );
        assert_eq!(
            Envelope::parse(event("evt_1", "cus\u{1b}1").as_bytes()),
            Err(EnvelopeError::ControlCharacter("data.object.id"))
        );
        assert!(Envelope::parse(event("evt_1", "cus_1").as_bytes()).is_ok());
    }

    #[test]
    fn reads_an_event_and_ignores_what_it_does_not_know() {
        let body = br#"{"id":"evt_1","object":"event","type":"thing.happened","created":1700000000,
            "livemode":false,"api_version":"2099-01-01.future","new_field":{"a":1},
            "data":{"object":{"id":"th_1","object":"thing"}}}"#;
        let envelope = Envelope::parse(body).unwrap();
        assert_eq!(envelope.id, "evt_1");
        assert_eq!(envelope.event_type, "thing.happened");
        assert_eq!(envelope.object_id.as_deref(), Some("th_1"));
        assert_eq!(envelope.api_version.as_deref(), Some("2099-01-01.future"));
    }

    #[test]
    fn reads_a_thin_event_with_its_related_object_and_rfc3339_time() {
        let body = br#"{"id":"evt_test_65R9","object":"v2.core.event","type":"v1.customer.updated",
            "created":"2026-12-03T10:00:00.123Z","livemode":false,"context":null,
            "reason":{"type":"request","request":{"id":"req_1","idempotency_key":null}},
            "related_object":{"id":"cus_1","type":"customer","url":"/v1/customers/cus_1"}}"#;
        let envelope = Envelope::parse(body).unwrap();
        assert!(envelope.thin);
        assert_eq!(envelope.event_type, "v1.customer.updated");
        assert_eq!(envelope.created, 1_796_292_000);
        assert_eq!(envelope.object_id.as_deref(), Some("cus_1"));
        let related = envelope.related_object.unwrap();
        assert_eq!(
            (related.object_type.as_str(), related.url.as_str()),
            ("customer", "/v1/customers/cus_1")
        );
        // Some v2 types have no related object at all.
        let bare =
            br#"{"id":"evt_2","object":"v2.core.event","type":"v2.core.event_destination.ping",
            "created":"2026-12-03T10:00:00Z","livemode":false,"related_object":null}"#;
        assert_eq!(Envelope::parse(bare).unwrap().object_id, None);
    }

    #[test]
    fn a_thin_event_must_say_its_time_in_rfc3339_and_a_snapshot_one_in_seconds() {
        for body in [
            &br#"{"id":"evt_1","object":"v2.core.event","type":"x","created":1700000000,"livemode":false}"#[..],
            br#"{"id":"evt_1","object":"v2.core.event","type":"x","created":"yesterday","livemode":false}"#,
            br#"{"id":"evt_1","object":"event","type":"x","created":"2026-12-03T10:00:00Z","livemode":false,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","object":"v2.core.event","type":"x","created":"2026-12-03T10:00:00Z","livemode":false,
                "related_object":{"id":"cus\u00001","type":"customer","url":"/v1/customers/cus_1"}}"#,
        ] {
            assert!(Envelope::parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        for body in [
            &b"not json"[..],
            br#"{"id":"evt_1","type":"x","created":1,"livemode":false}"#,
            br#"{"id":"","object":"event","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","object":"charge","type":"x","created":1,"livemode":false,"data":{"object":{}}}"#,
        ] {
            assert!(Envelope::parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
