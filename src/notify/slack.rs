//! What Slack sends when someone clicks a button in one of our messages: checking that Slack
//! sent it (the signing secret), and reading the click. Pure, so both are tested without HTTP.
//!
//! Slack signs `v0:{X-Slack-Request-Timestamp}:{raw body}` with HMAC-SHA256 under the app's
//! signing secret and sends `v0=` and the hex digest in `X-Slack-Signature`. A request older or
//! newer than five minutes is refused, so a captured request cannot be replayed later; the
//! comparison is constant-time (`hmac`'s `verify_slice`).

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::domain::states::{ChatAction, Redaction};

/// How far a request's timestamp may be from our clock.
pub const WINDOW_SECS: i64 = 5 * 60;

/// The prefix of every action id billmirror puts on a button; others (link buttons) are Slack's
/// own business and are acknowledged without effect.
pub const ACTION_PREFIX: &str = "bm:";

/// Why a request is not taken as Slack's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A header is missing or not in Slack's shape.
    Malformed,
    /// The timestamp is more than five minutes from now.
    Stale,
    /// No configured signing secret gives this signature.
    BadSignature,
}

/// Whether `signature` is Slack's for `body` sent at `timestamp`, under `secret`, at `now`
/// (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    let at: i64 = timestamp.trim().parse().map_err(|_| Refusal::Malformed)?;
    if (now - at).abs() > WINDOW_SECS {
        return Err(Refusal::Stale);
    }
    let digest = signature
        .strip_prefix("v0=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(Refusal::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Refusal::Malformed)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&digest).map_err(|_| Refusal::BadSignature)
}

/// `v0=` and the hex HMAC: what Slack sends (tests and the fake Slack sign with it).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// One button click, as billmirror reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub action: ChatAction,
    /// The button's value: our delivery id of the message it is on.
    pub delivery_id: String,
    pub user_id: String,
    pub user_name: Option<String>,
    /// Slack's `action_ts`: the same in a retried request, different for another click.
    pub action_ts: String,
    pub response_url: Option<String>,
    /// Where the message is: the Slack channel and its `ts`.
    pub channel: Option<String>,
    pub message_ts: Option<String>,
}

/// What a verified request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// Clicks on our buttons (Slack sends one action per click).
    Clicks(Vec<Click>),
    /// Something we have no business with (a link button's click, another payload type).
    Ignored(String),
}

/// Reads Slack's form body (`payload=<json>`).
pub fn parse(body: &[u8]) -> Result<Interaction, String> {
    let payload = form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| value.into_owned())
        .ok_or("the body has no `payload` field")?;
    let payload: Value =
        serde_json::from_str(&payload).map_err(|e| format!("`payload` is not JSON: {e}"))?;
    let kind = payload["type"].as_str().unwrap_or("");
    if kind != "block_actions" {
        return Ok(Interaction::Ignored(format!("a `{kind}` payload")));
    }
    let user_id = payload["user"]["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or("the payload names no user")?
        .to_owned();
    // Free text from outside, shown in threads, messages and the audit log: scrubbed like any.
    let user_name = payload["user"]["username"]
        .as_str()
        .or(payload["user"]["name"].as_str())
        .map(|name| super::redact::scrub(name, Redaction::Full));
    let response_url = payload["response_url"].as_str().map(str::to_owned);
    let channel = payload["channel"]["id"]
        .as_str()
        .or(payload["container"]["channel_id"].as_str())
        .map(str::to_owned);
    let message_ts = payload["container"]["message_ts"]
        .as_str()
        .or(payload["message"]["ts"].as_str())
        .map(str::to_owned);
    let mut clicks = Vec::new();
    for action in payload["actions"].as_array().into_iter().flatten() {
        let Some(word) = action["action_id"]
            .as_str()
            .and_then(|id| id.strip_prefix(ACTION_PREFIX))
        else {
            continue;
        };
        let action_kind: ChatAction = word.parse()?;
        let delivery_id = action["value"]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or("a billmirror button without a value")?
            .to_owned();
        let action_ts = action["action_ts"]
            .as_str()
            .ok_or("an action without `action_ts`")?
            .to_owned();
        clicks.push(Click {
            action: action_kind,
            delivery_id,
            user_id: user_id.clone(),
            user_name: user_name.clone(),
            action_ts,
            response_url: response_url.clone(),
            channel: channel.clone(),
            message_ts: message_ts.clone(),
        });
    }
    if clicks.is_empty() {
        return Ok(Interaction::Ignored("no billmirror button".into()));
    }
    Ok(Interaction::Clicks(clicks))
}

/// The action id a button carries.
pub fn action_id(action: ChatAction) -> String {
    format!("{ACTION_PREFIX}{action}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's own example, from "Verifying requests from Slack".
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_documented_example_verifies() {
        let now = 1_531_420_618 + 10;
        assert_eq!(
            verify(
                DOC_SECRET.as_bytes(),
                DOC_TS,
                DOC_SIGNATURE,
                DOC_BODY.as_bytes(),
                now
            ),
            Ok(())
        );
        assert_eq!(
            sign(DOC_SECRET.as_bytes(), 1_531_420_618, DOC_BODY.as_bytes()),
            DOC_SIGNATURE
        );
    }

    #[test]
    fn a_changed_body_secret_or_time_is_refused() {
        let now = 1_531_420_618;
        let verify_with = |secret: &str, ts: &str, sig: &str, body: &str, now: i64| {
            verify(secret.as_bytes(), ts, sig, body.as_bytes(), now)
        };
        let tampered = DOC_BODY.replace("roadrunner", "coyote");
        assert_eq!(
            verify_with(DOC_SECRET, DOC_TS, DOC_SIGNATURE, &tampered, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify_with("another-secret", DOC_TS, DOC_SIGNATURE, DOC_BODY, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify_with(DOC_SECRET, DOC_TS, DOC_SIGNATURE, DOC_BODY, now + 301),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify_with(DOC_SECRET, DOC_TS, DOC_SIGNATURE, DOC_BODY, now - 301),
            Err(Refusal::Stale),
            "from the future too"
        );
        assert_eq!(
            verify_with(DOC_SECRET, DOC_TS, DOC_SIGNATURE, DOC_BODY, now + 300),
            Ok(())
        );
        for bad in ["", "a2114d57", "v1=a2114d57", "v0=zz"] {
            assert_eq!(
                verify_with(DOC_SECRET, DOC_TS, bad, DOC_BODY, now),
                Err(Refusal::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_with(DOC_SECRET, "soon", DOC_SIGNATURE, DOC_BODY, now),
            Err(Refusal::Malformed)
        );
    }

    fn form(payload: serde_json::Value) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    #[test]
    fn a_click_on_our_button_reads_back_and_link_buttons_are_ignored() {
        let payload = serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U123", "username": "ada", "team_id": "T1"},
            "container": {"type": "message", "message_ts": "1700000000.000101", "channel_id": "C1"},
            "channel": {"id": "C1", "name": "billing"},
            "response_url": "https://hooks.slack.com/actions/T1/1/abc",
            "actions": [{"action_id": "bm:retry_payment", "block_id": "b", "value": "ndl_1",
                         "type": "button", "action_ts": "1700000100.000200"}],
        });
        let Interaction::Clicks(clicks) = parse(&form(payload)).unwrap() else {
            panic!("a click");
        };
        assert_eq!(
            clicks,
            [Click {
                action: ChatAction::RetryPayment,
                delivery_id: "ndl_1".into(),
                user_id: "U123".into(),
                user_name: Some("ada".into()),
                action_ts: "1700000100.000200".into(),
                response_url: Some("https://hooks.slack.com/actions/T1/1/abc".into()),
                channel: Some("C1".into()),
                message_ts: Some("1700000000.000101".into()),
            }]
        );
        let link = serde_json::json!({
            "type": "block_actions", "user": {"id": "U123"},
            "actions": [{"action_id": "link_0", "type": "button", "action_ts": "1"}],
        });
        assert!(matches!(parse(&form(link)), Ok(Interaction::Ignored(_))));
        assert!(matches!(
            parse(&form(serde_json::json!({"type": "view_submission"}))),
            Ok(Interaction::Ignored(_))
        ));
        let planted = serde_json::json!({
            "type": "block_actions", "user": {"id": "U9", "username": "eve 4242424242424242 sk_live_51AbCdEfGhIjKlMn"},
            "actions": [{"action_id": "bm:mark_contacted", "value": "ndl_1", "action_ts": "1"}],
        });
        let Interaction::Clicks(clicks) = parse(&form(planted)).unwrap() else {
            panic!("a click");
        };
        assert_eq!(
            clicks[0].user_name.as_deref(),
            Some("eve [card number removed] [secret removed]")
        );
        assert!(parse(b"payload=not-json").is_err());
        assert!(parse(b"nothing=here").is_err());
        let unknown = serde_json::json!({
            "type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": "bm:delete_everything", "value": "x", "action_ts": "1"}],
        });
        assert!(parse(&form(unknown)).is_err());
    }
}
