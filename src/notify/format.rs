//! A `Message` in each service's format, within its limits: Slack Block Kit (at most 50 blocks,
//! 3,000 characters per section text, a plain `text` fallback), a Slack-format incoming webhook
//! (Block Kit and `attachments`, which Mattermost reads instead), a Teams Adaptive Card, and the
//! generic webhook's JSON signed per Standard Webhooks. Pure.

use base64::Engine;
use serde_json::{json, Value};

use super::render::{action_label, Message, Tone};
use super::slack::action_id;
use crate::domain::states::ChatAction;

/// Slack's most blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's longest section text.
pub const MAX_SECTION: usize = 3000;
/// Slack's longest header text.
const MAX_HEADER: usize = 150;
/// Fields Slack shows in one section.
const FIELDS_PER_SECTION: usize = 10;

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's mrkdwn treats `&`, `<` and `>` as markup.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message as Block Kit blocks: header, status, fields, context, and one actions block with
/// the URL buttons and, when `interactive` (a Slack app whose clicks come back to billmirror) and
/// the message says which delivery it is, the buttons that act (`bm:{action}`, valued with the
/// delivery id). The actions block is kept when the others are cut to Slack's 50.
pub fn slack_blocks(m: &Message, interactive: bool) -> Vec<Value> {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&m.title, MAX_HEADER), "emoji": true},
    })];
    if let Some(status) = &m.status {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*{}*", escape(status)), MAX_SECTION)}}));
    }
    for chunk in m.fields.chunks(FIELDS_PER_SECTION) {
        // Each field is its own text of at most 2,000 characters.
        let fields: Vec<Value> = chunk
            .iter()
            .map(|(label, value)| json!({"type": "mrkdwn", "text": cut(&format!("*{}*\n{}", escape(label), escape(value)), 2000)}))
            .collect();
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !m.context.is_empty() {
        let elements: Vec<Value> = m
            .context
            .iter()
            .take(10)
            .map(|c| json!({"type": "mrkdwn", "text": cut(&escape(c), MAX_SECTION)}))
            .collect();
        blocks.push(json!({"type": "context", "elements": elements}));
    }
    let mut buttons: Vec<Value> = m
        .links
        .iter()
        .take(5)
        .enumerate()
        .map(|(n, link)| json!({"type": "button", "action_id": format!("link_{n}"), "text": {"type": "plain_text", "text": cut(&link.label, 75)}, "url": link.url}))
        .collect();
    if let (true, Some(value)) = (interactive, &m.action_value) {
        for action in &m.actions {
            let mut button = json!({
                "type": "button",
                "action_id": action_id(*action),
                "text": {"type": "plain_text", "text": action_label(*action)},
                "value": value,
            });
            if *action == ChatAction::RetryPayment {
                button["style"] = json!("primary");
            }
            buttons.push(button);
        }
    }
    if buttons.is_empty() {
        blocks.truncate(MAX_BLOCKS);
    } else {
        blocks.truncate(MAX_BLOCKS - 1);
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks
}

fn colour(tone: Tone) -> &'static str {
    match tone {
        Tone::Good => "#2eb67d",
        Tone::Warning => "#ecb22e",
        Tone::Danger => "#e01e5a",
        Tone::Neutral => "#6b6f76",
    }
}

/// `chat.postMessage`'s body; `thread_ts` posts it as a reply in that thread.
pub fn slack_app(m: &Message, channel: &str, thread_ts: Option<&str>) -> Value {
    let mut body = json!({
        "channel": channel,
        "text": cut(&m.text, MAX_SECTION),
        "blocks": slack_blocks(m, true),
        "unfurl_links": false,
        "unfurl_media": false,
    });
    if let Some(ts) = thread_ts {
        body["thread_ts"] = json!(ts);
    }
    body
}

/// `chat.update`'s body: the message at `ts` replaced by `m`.
pub fn slack_update(m: &Message, channel: &str, ts: &str) -> Value {
    json!({"channel": channel, "ts": ts, "text": cut(&m.text, MAX_SECTION), "blocks": slack_blocks(m, true)})
}

/// An incoming webhook's body: Block Kit for Slack, `attachments` for Mattermost and Rocket.Chat
/// (which ignore blocks), and `text` for anything else. No threads; links are URL buttons.
pub fn slack_webhook(m: &Message) -> Value {
    let fields: Vec<Value> = m
        .fields
        .iter()
        .map(|(label, value)| json!({"title": label, "value": cut(value, 2000), "short": value.chars().count() < 40}))
        .collect();
    let mut footer = m.context.join(" · ");
    if !m.links.is_empty() {
        let links: Vec<String> = m
            .links
            .iter()
            .map(|l| format!("<{}|{}>", l.url, l.label))
            .collect();
        footer = format!("{footer}\n{}", links.join(" · "));
    }
    json!({
        "text": cut(&m.text, MAX_SECTION),
        "blocks": slack_blocks(m, false),
        "attachments": [{
            "fallback": cut(&m.text, MAX_SECTION),
            "color": colour(m.tone),
            "title": cut(&m.title, MAX_HEADER),
            "title_link": m.links.first().map(|l| l.url.clone()),
            "text": m.status.clone().unwrap_or_default(),
            "fields": fields,
            "footer": cut(&footer, MAX_SECTION),
        }],
    })
}

/// A Teams Workflows webhook's body: one Adaptive Card.
pub fn teams(m: &Message) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
        "text": m.title, "color": match m.tone { Tone::Good => "Good", Tone::Danger => "Attention", Tone::Warning => "Warning", Tone::Neutral => "Default" }}),
    ];
    if let Some(status) = &m.status {
        body.push(json!({"type": "TextBlock", "wrap": true, "weight": "Bolder", "text": status}));
    }
    body.push(json!({"type": "TextBlock", "wrap": true, "text": m.text}));
    if !m.fields.is_empty() {
        let facts: Vec<Value> = m
            .fields
            .iter()
            .map(|(t, v)| json!({"title": t, "value": v}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    for line in &m.context {
        body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true, "size": "Small", "text": line}));
    }
    let actions: Vec<Value> = m
        .links
        .iter()
        .map(|l| json!({"type": "Action.OpenUrl", "title": l.label, "url": l.url}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            },
        }],
    })
}

/// The generic webhook's JSON: the rendered fields, for others to build on.
pub fn generic(
    m: &Message,
    id: &str,
    kind: &str,
    family: Option<&str>,
    count: i64,
    at: i64,
) -> Value {
    let fields: serde_json::Map<String, Value> = m
        .fields
        .iter()
        .map(|(l, v)| (l.clone(), json!(v)))
        .collect();
    json!({
        "type": format!("billmirror.notification.{kind}"),
        "timestamp": at,
        "data": {
            "id": id,
            "family": family,
            "title": m.title,
            "text": m.text,
            "status": m.status,
            "fields": fields,
            "context": m.context,
            "links": m.links.iter().map(|l| json!({"label": l.label, "url": l.url})).collect::<Vec<_>>(),
            "events_counted": count,
        },
    })
}

/// The Standard Webhooks signature header value, `v1,<base64 HMAC-SHA256>`, of
/// `"{id}.{timestamp}.{body}"` keyed by the secret's base64 part after `whsec_`. `None` when the
/// secret is not of that form.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    use hmac::{Hmac, Mac};
    let key = secret_key_bytes(secret)?;
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Some(format!("v1,{signature}"))
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_key_bytes(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.trim().strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::render::{test_message, Link};

    fn big_message() -> Message {
        Message {
            title: "T".repeat(400),
            text: "x".repeat(5000),
            status: Some("s".repeat(5000)),
            fields: (0..300)
                .map(|n| (format!("f{n}"), "v".repeat(3000)))
                .collect(),
            context: vec!["c".into()],
            links: vec![Link {
                label: "Open".into(),
                url: "https://example.com".into(),
            }],
            actions: vec![ChatAction::RetryPayment, ChatAction::SendInvoice],
            action_value: Some("ndl_1".into()),
            tone: Tone::Danger,
        }
    }

    #[test]
    fn slack_messages_stay_within_slacks_limits() {
        let body = slack_app(&big_message(), "C123", Some("1700000000.000100"));
        let blocks = body["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        assert_eq!(body["thread_ts"], "1700000000.000100");
        assert!(body["text"].as_str().unwrap().chars().count() <= MAX_SECTION);
        for block in blocks {
            if let Some(text) = block["text"]["text"].as_str() {
                assert!(text.chars().count() <= MAX_SECTION);
            }
            for field in block["fields"].as_array().into_iter().flatten() {
                assert!(field["text"].as_str().unwrap().chars().count() <= 2000);
            }
        }
        assert_eq!(blocks[0]["type"], "header");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        // The buttons survive the cut: the link stays a link, the actions carry our ids.
        let actions = blocks.last().unwrap();
        assert_eq!(actions["type"], "actions");
        let elements = actions["elements"].as_array().unwrap();
        assert_eq!(elements[0]["url"], "https://example.com");
        assert!(elements[0].get("value").is_none());
        assert_eq!(elements[1]["action_id"], "bm:retry_payment");
        assert_eq!(elements[1]["value"], "ndl_1");
        assert_eq!(elements[2]["action_id"], "bm:send_invoice");
    }

    #[test]
    fn action_buttons_appear_only_where_clicks_come_back() {
        let m = big_message();
        let hook = slack_webhook(&m);
        let elements = hook["blocks"].as_array().unwrap().last().unwrap()["elements"].clone();
        assert_eq!(
            elements.as_array().unwrap().len(),
            1,
            "links only: {elements}"
        );
        let no_value = Message {
            action_value: None,
            ..big_message()
        };
        let app = slack_app(&no_value, "C1", None);
        let last = app["blocks"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["elements"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn an_incoming_webhook_gets_blocks_and_attachments_and_no_thread() {
        let body = slack_webhook(&test_message("#billing"));
        assert!(body["blocks"].is_array() && body["attachments"][0]["fields"].is_array());
        assert!(body.get("thread_ts").is_none());
        assert_eq!(body["text"], "billmirror can post to #billing");
    }

    #[test]
    fn teams_gets_an_adaptive_card() {
        let body = teams(&big_message());
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(attachment["content"]["type"], "AdaptiveCard");
        assert_eq!(
            attachment["content"]["actions"][0]["type"],
            "Action.OpenUrl"
        );
    }

    #[test]
    fn the_standard_webhooks_signature_matches_the_specs_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(secret, id, 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert!(standard_signature("not-a-secret", id, 1, body).is_none());
    }
}
