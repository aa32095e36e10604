//! A fake of every chat service billmirror posts to, on one real HTTP server on 127.0.0.1:0:
//! Slack's Web API (`/slack/api/chat.postMessage`, `/slack/api/chat.update`, answering `ts`s),
//! Slack-format incoming webhooks (`/hooks/{name}`), Teams Workflows webhooks (`/teams/{name}`)
//! and generic webhooks (`/generic/{name}`). It records every request (path, headers, body,
//! when it came) and answers with faults on demand: 429 with `Retry-After`, Slack's
//! `channel_not_found`, a 404/410 with a word, a 500.
//!
//! As strict as Slack's docs: `chat.update` only finds a message this fake posted to that channel
//! (`message_not_found`), a message needs `text` or `blocks` (`no_text`), an actions block holds
//! at most 25 elements whose `action_id` is at most 255 characters and a button's `value` at most
//! 2,000 (`invalid_blocks`). Interactivity: [`FakeChat::interaction`] builds the `block_actions`
//! payload Slack sends when a button is clicked, with a `response_url` on this server
//! (`/slack/response/{n}`) that takes JSON with `text` or `blocks`, a `response_type` of
//! `ephemeral` or `in_channel`, and at most five posts (then `used_url`), as Slack's does.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub json: Value,
    pub at: Instant,
    /// What the fake answered.
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Answered 2xx (and, for Slack's Web API, `ok: true`).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How to answer the next request to a path.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 429 with `Retry-After: {0}`.
    RateLimited(u64),
    /// Slack's Web API: 200 `{"ok": false, "error": word}`.
    SlackError(&'static str),
    /// This status with this body.
    Status(u16, &'static str),
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// (path prefix, answer, times left; `None` for ever).
    faults: VecDeque<(String, Answer, Option<usize>)>,
    next_ts: u64,
    /// (channel, ts) of every message posted through `chat.postMessage`.
    posted: Vec<(String, String)>,
    /// Posts each `response_url` took.
    response_uses: std::collections::HashMap<String, usize>,
    next_response: u64,
}

#[derive(Clone)]
pub struct FakeChat {
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

/// The bot token every test's Slack app channel uses.
pub const BOT_TOKEN: &str = "xoxb-1111111111-2222222222-FakeBotTokenSecret42";
/// The Slack app's signing secret (Basic Information → App Credentials).
pub const SLACK_SIGNING_SECRET: &str = "8f742231b10e8888abcd99aa00bb85a5";
/// A Standard Webhooks signing secret.
pub const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl FakeChat {
    pub async fn start() -> FakeChat {
        let state = Arc::new(Mutex::new(State {
            next_ts: 1_700_000_000_000_100,
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        FakeChat { base_url, state }
    }

    /// Slack's Web API base for a Slack app channel.
    pub fn slack_api(&self) -> String {
        format!("{}/slack/api", self.base_url)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The next `times` requests whose path starts with `prefix` get `answer` (`None`: all).
    pub fn fail(&self, prefix: &str, answer: Answer, times: Option<usize>) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push_back((prefix.to_owned(), answer, times));
    }

    pub fn heal(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to paths starting with `prefix`.
    pub fn to(&self, prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// The `block_actions` payload Slack sends when `user` clicks the button `action_id` of the
    /// message at `ts`, with a fresh `response_url` on this server; the form body, unsigned.
    pub fn interaction(
        &self,
        user: (&str, &str),
        message: &Value,
        ts: &str,
        action_id: &str,
        action_ts: &str,
    ) -> String {
        let button = message["blocks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .find(|e| e["action_id"] == action_id)
            .unwrap_or_else(|| panic!("no button {action_id} in {message:#}"));
        let response = {
            let mut state = self.state.lock().unwrap();
            state.next_response += 1;
            format!("{}/slack/response/{}", self.base_url, state.next_response)
        };
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user.0, "username": user.1, "name": user.1, "team_id": "T0FAKE"},
            "api_app_id": "A0FAKE",
            "team": {"id": "T0FAKE", "domain": "fake"},
            "container": {"type": "message", "message_ts": ts, "channel_id": message["channel"], "is_ephemeral": false},
            "channel": {"id": message["channel"], "name": "billing"},
            "message": {"type": "message", "ts": ts, "text": message["text"], "blocks": message["blocks"]},
            "response_url": response,
            "trigger_id": "1.2.3",
            "actions": [{
                "type": "button", "action_id": action_id, "block_id": "b1",
                "text": button["text"], "value": button["value"], "action_ts": action_ts,
            }],
        });
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
    }

    /// Waits until `prefix` has received `n` accepted requests (at most 20 s) and returns them.
    pub async fn wait_for(&self, prefix: &str, n: usize) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Request> = self
                .to(prefix)
                .into_iter()
                .filter(Request::accepted)
                .collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{prefix} received {} accepted requests, not {n}: {:#?}",
                got.len(),
                self.to(prefix)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    req: HttpRequest,
    body: Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let path = req.path().to_owned();
    let text = String::from_utf8_lossy(&body).into_owned();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let mut state = state.lock().unwrap();
    let fault = state
        .faults
        .iter_mut()
        .find(|(prefix, _, left)| path.starts_with(prefix.as_str()) && *left != Some(0))
        .map(|(_, answer, left)| {
            if let Some(n) = left {
                *n -= 1;
            }
            answer.clone()
        });
    let slack_api = path.starts_with("/slack/api/");
    let (status, answer) = match fault {
        Some(Answer::RateLimited(seconds)) => (
            429,
            HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", seconds.to_string()))
                .body("rate_limited"),
        ),
        Some(Answer::SlackError(word)) => (
            299,
            HttpResponse::Ok().json(json!({"ok": false, "error": word})),
        ),
        Some(Answer::Status(code, word)) => (
            code,
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).body(word),
        ),
        None if slack_api => {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if auth != format!("Bearer {BOT_TOKEN}") {
                (
                    299,
                    HttpResponse::Ok().json(json!({"ok": false, "error": "invalid_auth"})),
                )
            } else {
                let request: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let channel = request["channel"].as_str().unwrap_or("").to_owned();
                let refused = slack_refusal(&request).or_else(|| {
                    (path.ends_with("chat.update")
                        && !state.posted.iter().any(|(c, ts)| {
                            *c == channel && Some(ts.as_str()) == request["ts"].as_str()
                        }))
                    .then_some("message_not_found")
                });
                if let Some(word) = refused {
                    (
                        299,
                        HttpResponse::Ok().json(json!({"ok": false, "error": word})),
                    )
                } else {
                    let ts = if path.ends_with("chat.update") {
                        request["ts"].as_str().unwrap_or("").to_owned()
                    } else {
                        state.next_ts += 1;
                        let n = state.next_ts;
                        let ts = format!("{}.{:06}", n / 1_000_000, n % 1_000_000);
                        state.posted.push((channel.clone(), ts.clone()));
                        ts
                    };
                    (
                        200,
                        HttpResponse::Ok().json(json!({"ok": true, "channel": channel, "ts": ts})),
                    )
                }
            }
        }
        None if path.starts_with("/slack/response/") => {
            let request: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let json_body = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let uses = state.response_uses.entry(path.clone()).or_default();
            *uses += 1;
            let kind_ok = match request.get("response_type") {
                None => true,
                Some(kind) => kind == "ephemeral" || kind == "in_channel",
            };
            if *uses > 5 {
                (404, HttpResponse::NotFound().body("used_url"))
            } else if !json_body || !kind_ok || slack_refusal(&request).is_some() {
                (400, HttpResponse::BadRequest().body("invalid_payload"))
            } else {
                (200, HttpResponse::Ok().body("ok"))
            }
        }
        None if path.starts_with("/teams/") => (202, HttpResponse::Accepted().finish()),
        None => (200, HttpResponse::Ok().body("ok")),
    };
    state.requests.push(Request {
        path,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        body: text,
        at: Instant::now(),
        // A Slack error is answered 200 but refused: recorded as 299 so `accepted` is false.
        status: if status == 299 { 400 } else { status },
    });
    answer
}

/// What Slack's Web API says of a message body it would refuse: no text nor blocks, or actions
/// beyond Block Kit's limits.
fn slack_refusal(request: &Value) -> Option<&'static str> {
    let has_text = request["text"].as_str().is_some_and(|t| !t.is_empty());
    let blocks = request["blocks"].as_array();
    if !has_text && blocks.is_none_or(|b| b.is_empty()) {
        return Some("no_text");
    }
    for block in blocks.into_iter().flatten() {
        if block["type"] != "actions" {
            continue;
        }
        let elements = block["elements"].as_array()?;
        if elements.is_empty() || elements.len() > 25 {
            return Some("invalid_blocks");
        }
        for element in elements {
            let id_ok = element["action_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty() && id.len() <= 255);
            let value_ok = element["value"].as_str().is_none_or(|v| v.len() <= 2000);
            let label_ok = element["text"]["text"]
                .as_str()
                .is_some_and(|t| t.chars().count() <= 75);
            if !id_ok || !value_ok || !label_ok {
                return Some("invalid_blocks");
            }
        }
    }
    None
}
