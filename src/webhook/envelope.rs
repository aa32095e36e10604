//! The few envelope fields ingest needs from a Stripe event, read tolerantly: unknown fields and
//! API versions are fine, only what identifies the event is required.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
    /// The id of `data.object`, when it has one.
    pub object_id: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    id: String,
    object: Option<String>,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    livemode: bool,
    api_version: Option<String>,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: RawObject,
}

#[derive(Deserialize)]
struct RawObject {
    id: Option<String>,
}

impl Envelope {
    /// Reads the envelope, or says in a sentence why the body is not a Stripe event.
    pub fn parse(body: &[u8]) -> Result<Envelope, String> {
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| format!("the body is not a Stripe event: {e}"))?;
        if raw.object.as_deref().is_some_and(|o| o != "event") {
            return Err("the body's `object` is not `event`".to_owned());
        }
        // Stripe's ids start with `evt_`, but a signed event is authentic whatever its id looks
        // like; refusing it would only make Stripe retry it for days.
        if raw.id.trim().is_empty() || raw.id.len() > 255 {
            return Err("the event has no usable `id`".to_owned());
        }
        if raw.event_type.is_empty() || raw.event_type.len() > 255 {
            return Err("the event has no `type`".to_owned());
        }
        Ok(Envelope {
            id: raw.id,
            event_type: raw.event_type,
            created: raw.created,
            livemode: raw.livemode,
            api_version: raw.api_version,
            object_id: raw.data.object.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
