//! `Stripe-Signature` verification, a pure function: HMAC-SHA256 over `"{t}.{raw body}"` keyed
//! with the whole `whsec_…` string, any `v1` may match any active secret (rotation), every other
//! scheme ignored, the timestamp checked in both directions, comparisons in constant time.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("The Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("The signature timestamp is {skew_secs} s away from our clock, beyond the {tolerance_secs} s tolerance")]
    OutsideTolerance { skew_secs: i64, tolerance_secs: u64 },
    #[error("No v1 signature matches any active webhook secret of this connection")]
    Mismatch,
    #[error("No v1 signature matches any active webhook secret of this connection")]
    NoSecret,
}

impl SignatureError {
    /// The stable error code of the API (see docs/API.md, "Webhook ingest answers").
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Malformed(_) => "malformed_signature",
            SignatureError::OutsideTolerance { .. } => "timestamp_outside_tolerance",
            SignatureError::Mismatch | SignatureError::NoSecret => "signature_mismatch",
        }
    }
}

/// The parts of a `Stripe-Signature` header billmirror uses.
struct Header<'h> {
    timestamp: &'h str,
    v1: Vec<&'h str>,
}

fn parse(header: &str) -> Result<Header<'_>, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let Some((scheme, value)) = item.trim().split_once('=') else {
            return Err(SignatureError::Malformed("an item has no `=`"));
        };
        match scheme {
            "t" if timestamp.is_some() => {
                return Err(SignatureError::Malformed("the timestamp `t` appears twice"))
            }
            "t" => timestamp = Some(value),
            "v1" => v1.push(value),
            // v0 (Stripe's test scheme) and any future scheme are ignored, as Stripe's libraries do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("there is no timestamp `t`"))?;
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed(
            "the timestamp `t` is not a number",
        ));
    }
    if v1.is_empty() {
        return Err(SignatureError::Malformed("there is no `v1` signature"));
    }
    Ok(Header { timestamp, v1 })
}

/// Verifies `header` for `body` against `secrets` at time `now` (unix seconds). Returns the index
/// of the secret that matched, so a rotation can be followed.
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Duration,
) -> Result<usize, SignatureError> {
    let header = parse(header)?;
    let timestamp: i64 = header
        .timestamp
        .parse()
        .map_err(|_| SignatureError::Malformed("the timestamp `t` is out of range"))?;
    let signatures: Vec<Vec<u8>> = header
        .v1
        .iter()
        // A v1 that is not hex cannot match; another v1 still may.
        .filter_map(|v| hex::decode(v).ok())
        .collect();

    let mut matched = None;
    let mut any_secret = false;
    for (index, secret) in secrets.iter().enumerate() {
        if secret.expose().is_empty() {
            continue;
        }
        any_secret = true;
        let expected = sign_with(secret.expose(), header.timestamp, body);
        // Every candidate is compared, so the time taken does not depend on which one matched.
        for signature in &signatures {
            if bool::from(expected.as_slice().ct_eq(signature)) && matched.is_none() {
                matched = Some(index);
            }
        }
    }
    if !any_secret {
        return Err(SignatureError::NoSecret);
    }
    let matched = matched.ok_or(SignatureError::Mismatch)?;

    let skew = now.saturating_sub(timestamp);
    let tolerance_secs = tolerance.as_secs();
    if skew.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::OutsideTolerance {
            skew_secs: skew,
            tolerance_secs,
        });
    }
    Ok(matched)
}

fn sign_with(secret: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Builds a `Stripe-Signature` header value as Stripe does: for tests, the fake Stripe and the
/// load generator.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(sign_with(secret, &timestamp.to_string(), body))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);
    const BODY: &[u8] = br#"{"id": "evt_1", "object": "event"}"#;

    fn secrets(values: &[&str]) -> Vec<Secret> {
        values.iter().map(|v| Secret::new(*v)).collect()
    }

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let header = sign("whsec_one", 1_000, BODY);
        assert_eq!(
            verify(&header, BODY, &secrets(&["whsec_one"]), 1_000, TOLERANCE),
            Ok(0)
        );
    }

    #[test]
    fn any_v1_may_match_any_secret_during_a_rotation() {
        let old = sign("whsec_old", 1_000, BODY);
        let new = sign("whsec_new", 1_000, BODY);
        let v1_new = new.split_once(",v1=").unwrap().1;
        let header = format!("{old},v1={v1_new},v0=abc");
        let both = secrets(&["whsec_new", "whsec_old"]);
        assert_eq!(verify(&header, BODY, &both, 1_000, TOLERANCE), Ok(0));
        assert_eq!(verify(&old, BODY, &both, 1_000, TOLERANCE), Ok(1));
    }

    #[test]
    fn a_changed_body_or_another_secret_does_not_verify() {
        let header = sign("whsec_one", 1_000, BODY);
        let tampered = br#"{"id": "evt_2", "object": "event"}"#;
        assert_eq!(
            verify(
                &header,
                tampered,
                &secrets(&["whsec_one"]),
                1_000,
                TOLERANCE
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, BODY, &secrets(&["whsec_two"]), 1_000, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_timestamp_is_checked_in_both_directions() {
        let header = sign("whsec_one", 1_000, BODY);
        let one = secrets(&["whsec_one"]);
        assert_eq!(verify(&header, BODY, &one, 1_300, TOLERANCE), Ok(0));
        assert_eq!(verify(&header, BODY, &one, 700, TOLERANCE), Ok(0));
        assert!(matches!(
            verify(&header, BODY, &one, 1_301, TOLERANCE),
            Err(SignatureError::OutsideTolerance { skew_secs: 301, .. })
        ));
        assert!(matches!(
            verify(&header, BODY, &one, 699, TOLERANCE),
            Err(SignatureError::OutsideTolerance {
                skew_secs: -301,
                ..
            })
        ));
    }

    #[test]
    fn only_v1_counts() {
        let header = sign("whsec_one", 1_000, BODY).replace("v1=", "v0=");
        assert_eq!(
            verify(&header, BODY, &secrets(&["whsec_one"]), 1_000, TOLERANCE),
            Err(SignatureError::Malformed("there is no `v1` signature"))
        );
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        let one = secrets(&["whsec_one"]);
        for (header, problem) in [
            ("", "an item has no `=`"),
            ("v1=abcd", "there is no timestamp `t`"),
            ("t=12a,v1=abcd", "the timestamp `t` is not a number"),
            ("t=1,t=2,v1=abcd", "the timestamp `t` appears twice"),
            ("t=1000", "there is no `v1` signature"),
            (
                "t=99999999999999999999999,v1=ab",
                "the timestamp `t` is out of range",
            ),
        ] {
            assert_eq!(
                verify(header, BODY, &one, 1_000, TOLERANCE),
                Err(SignatureError::Malformed(problem)),
                "{header}"
            );
        }
    }

    #[test]
    fn an_empty_secret_never_verifies_anything() {
        // The HMAC of an empty key is computable by anyone, so it must never count.
        let header = sign("", 1_000, BODY);
        assert_eq!(
            verify(&header, BODY, &secrets(&[""]), 1_000, TOLERANCE),
            Err(SignatureError::NoSecret)
        );
        assert_eq!(
            verify(&header, BODY, &[], 1_000, TOLERANCE),
            Err(SignatureError::NoSecret)
        );
    }

    /// Vectors made once by Stripe's own Python library (fixtures/stripe/make_signatures.py).
    #[test]
    fn stripes_own_library_agrees() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/stripe/signatures.json"
        ))
        .unwrap();
        let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
        let vectors = fixture["vectors"].as_array().expect("a `vectors` list");
        assert!(vectors.len() >= 5);
        for v in vectors {
            let outcome = verify(
                v["header"].as_str().unwrap(),
                v["payload"].as_str().unwrap().as_bytes(),
                &secrets(&[v["secret"].as_str().unwrap()]),
                v["now"].as_i64().unwrap(),
                Duration::from_secs(v["tolerance"].as_u64().unwrap()),
            );
            assert_eq!(
                outcome.is_ok(),
                v["valid"].as_bool().unwrap(),
                "{}: {outcome:?}",
                v["name"]
            );
        }
    }
}
