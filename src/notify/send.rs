//! Posting to a chat service and reading its answer as one of four outcomes: posted, wait
//! (`429` and its `Retry-After`), broken (the service refused the channel for good: 400, 403,
//! 404, 410, or Slack's `channel_not_found`, `is_archived`, `invalid_auth`…) or try again
//! later (5xx, timeouts). Nothing here logs a body, a URL or a token: webhook URLs are secrets.

use std::time::Duration;

use serde_json::Value;

use crate::domain::Secret;

/// What a post came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Posted; Slack's `ts` of the message, when the service gives one.
    Ok { ts: Option<String> },
    /// The service asks to wait this long before posting again.
    Wait(Duration),
    /// The channel cannot take messages until a person fixes it; the reason is a stable word.
    Broken(String),
    /// May pass: try again later.
    Retry(String),
}

/// Slack's errors that no retry fixes: the channel or the token is gone or not allowed.
const SLACK_BROKEN: &[&str] = &[
    "channel_not_found",
    "channel_is_archived",
    "is_archived",
    "not_in_channel",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "missing_scope",
    "no_permission",
    "restricted_action",
    "invalid_payload",
    "invalid_blocks",
    "no_service",
    "no_team",
    "team_disabled",
    "action_prohibited",
    "posting_to_general_channel_denied",
    "msg_too_long",
];

/// Reads the answer to a post: its status, `Retry-After` and body.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Posted {
    if status == 429 {
        let seconds = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1);
        return Posted::Wait(Duration::from_secs(seconds.max(1)));
    }
    // Slack's Web API answers 200 with `{"ok": false, "error": …}`; its webhooks answer a word.
    let json: Option<Value> = serde_json::from_str(body).ok();
    let slack_error = json
        .as_ref()
        .filter(|j| j["ok"] == Value::Bool(false))
        .and_then(|j| j["error"].as_str())
        .map(str::to_owned);
    let word = slack_error.clone().or_else(|| {
        let text = body.trim();
        (!text.is_empty()
            && text.len() <= 64
            && text.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .then(|| text.to_owned())
    });
    if (200..300).contains(&status) {
        return match slack_error {
            None => Posted::Ok {
                ts: json
                    .as_ref()
                    .and_then(|j| j["ts"].as_str())
                    .map(str::to_owned),
            },
            Some(error) if error == "ratelimited" => Posted::Wait(Duration::from_secs(1)),
            Some(error) if SLACK_BROKEN.contains(&error.as_str()) => Posted::Broken(error),
            Some(error) => Posted::Retry(format!("Slack answered {error}")),
        };
    }
    if matches!(status, 400 | 401 | 403 | 404 | 410) {
        let reason = match word {
            Some(word) => word,
            None => format!("http_{status}"),
        };
        return Posted::Broken(reason);
    }
    Posted::Retry(format!("the service answered {status}"))
}

/// A post over HTTP: the client reused by every channel.
#[derive(Clone)]
pub struct Poster {
    client: reqwest::Client,
}

impl Poster {
    pub fn new(timeout: Duration) -> Poster {
        Poster {
            client: reqwest::Client::builder()
                .timeout(timeout)
                // A webhook URL that redirects elsewhere is not followed with our body.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    /// POSTs `body` to `url` with `headers`; `bearer` is Slack's bot token.
    pub async fn post(
        &self,
        url: &str,
        bearer: Option<&Secret>,
        headers: &[(&str, String)],
        body: String,
    ) -> Posted {
        let mut request = self
            .client
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token.expose());
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = response.text().await.unwrap_or_default();
                classify(status, retry_after.as_deref(), &text)
            }
            // reqwest's error names the URL, which may be the secret: only its kind is kept.
            Err(e) if e.is_timeout() => Posted::Retry("the service did not answer in time".into()),
            Err(e) if e.is_connect() => Posted::Retry("the service cannot be reached".into()),
            Err(_) => Posted::Retry("the request to the service failed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_as_posted_wait_broken_or_retry() {
        assert_eq!(
            classify(200, None, r#"{"ok":true,"ts":"1.2"}"#),
            Posted::Ok {
                ts: Some("1.2".into())
            }
        );
        assert_eq!(classify(200, None, "ok"), Posted::Ok { ts: None });
        assert_eq!(classify(202, None, ""), Posted::Ok { ts: None });
        assert_eq!(
            classify(429, Some("7"), ""),
            Posted::Wait(Duration::from_secs(7))
        );
        assert_eq!(
            classify(429, None, ""),
            Posted::Wait(Duration::from_secs(1))
        );
        assert_eq!(
            classify(200, None, r#"{"ok":false,"error":"channel_not_found"}"#),
            Posted::Broken("channel_not_found".into())
        );
        assert_eq!(
            classify(404, None, "channel_not_found"),
            Posted::Broken("channel_not_found".into())
        );
        assert_eq!(
            classify(410, None, "channel_is_archived"),
            Posted::Broken("channel_is_archived".into())
        );
        assert_eq!(
            classify(400, None, "invalid_payload"),
            Posted::Broken("invalid_payload".into())
        );
        assert_eq!(
            classify(403, None, "<html>nope</html>"),
            Posted::Broken("http_403".into())
        );
        assert!(matches!(classify(503, None, ""), Posted::Retry(_)));
        assert!(matches!(
            classify(200, None, r#"{"ok":false,"error":"internal_error"}"#),
            Posted::Retry(_)
        ));
    }
}
