//! The parsers that see untrusted input, fed arbitrary bytes: none panics, and every failure is a
//! typed error (a code or a sentence), never a crash of the worker that called it.

use std::time::Duration;

use billmirror::domain::Secret;
use billmirror::ledger::Event;
use billmirror::stripe::keys::{check_format, format_check, mode_check, Field};
use billmirror::webhook::signature::{sign, verify};
use billmirror::webhook::Envelope;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Header-shaped noise: pieces Stripe's header is made of, in any order and amount.
fn header_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("t=".to_owned()),
        Just("v1=".to_owned()),
        Just("v0=".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        "[0-9]{0,25}",
        "[0-9a-f]{0,70}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// JSON-shaped noise around an event's fields.
fn body_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        (
            any::<String>(),
            any::<String>(),
            any::<i64>(),
            any::<bool>()
        )
            .prop_map(|(id, kind, created, live)| {
                serde_json::json!({"id": id, "object": "event", "type": kind, "created": created,
                                   "livemode": live, "data": {"object": {"id": id}}})
                .to_string()
                .into_bytes()
            }),
        "[\\[\\]{}\":,0-9a-z ]{0,200}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_signature_check_never_panics_and_never_accepts_noise(
        header in header_like(),
        body in any::<Vec<u8>>(),
        secret in "whsec_[A-Za-z0-9]{0,40}",
        now in any::<i64>(),
    ) {
        let secrets = [Secret::new(secret)];
        match verify(&header, &body, &secrets, now, Duration::from_secs(300)) {
            Ok(_) => prop_assert!(false, "noise verified: {header:?}"),
            Err(e) => prop_assert!(!e.code().is_empty()),
        }
    }

    #[test]
    fn a_real_signature_verifies_whatever_the_body(
        body in any::<Vec<u8>>(),
        secret in "whsec_[A-Za-z0-9]{1,40}",
        t in 0i64..4_000_000_000,
    ) {
        let header = sign(&secret, t, &body);
        let secrets = [Secret::new(secret)];
        prop_assert_eq!(verify(&header, &body, &secrets, t, Duration::from_secs(300)).ok(), Some(0));
    }

    #[test]
    fn the_envelope_and_the_event_parsers_never_panic(body in body_like()) {
        match Envelope::parse(&body) {
            Ok(envelope) => prop_assert!(!envelope.id.trim().is_empty()),
            Err(reason) => prop_assert!(!reason.to_string().is_empty()),
        }
        if let Ok(text) = std::str::from_utf8(&body) {
            match Event::parse(text) {
                Ok(event) => prop_assert!(event.object.is_object()),
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }
    }

    #[test]
    fn the_key_checks_never_panic_and_say_what_is_wrong(
        value in prop_oneof![
            any::<String>(),
            "(sk|pk|rk|whsec)_(live|test)?_?[A-Za-z0-9 \u{200b}\"']{0,60}",
        ],
    ) {
        for field in [Field::SecretKey, Field::PublishableKey, Field::WebhookSecret] {
            if let Err((code, message)) = check_format(field, &value) {
                prop_assert!(!code.is_empty() && !message.is_empty());
            }
            let (check, kind) = format_check(field, Some(&value));
            prop_assert!(!check.message.is_empty() || kind.is_some());
            let _ = mode_check(kind, kind);
        }
    }
}
