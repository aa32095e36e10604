//! A fake Stripe API: a real HTTP server on 127.0.0.1:0 that keeps state, answers with
//! Stripe-shaped JSON and errors, honours `Idempotency-Key` as Stripe does (the first answer to a
//! key is replayed for as long as the key is remembered, a 500 included), checks restricted keys'
//! permissions, caps list pages at 100, cuts an invoice's embedded `lines` to ten as Stripe does,
//! lags its search index behind writes, records the events Stripe would send (and posts them,
//! signed, to a webhook URL when given one), records every call, and fails on demand (5xx, 429,
//! slow answers, dropped connections after the work was done).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Map, Value};

/// What a key may do.
#[derive(Debug, Clone)]
pub enum Access {
    /// A secret key: everything.
    Full,
    /// A restricted key: `customers:read`, `invoices:write` (write includes read)…
    Restricted(HashSet<String>),
}

impl Access {
    pub fn restricted(permissions: &[&str]) -> Access {
        Access::Restricted(permissions.iter().map(|p| p.to_string()).collect())
    }

    /// Read access to everything billmirror mirrors, and no write access.
    pub fn read_only() -> Access {
        Access::restricted(
            &READABLE
                .map(|r| format!("{r}:read"))
                .each_ref()
                .map(String::as_str),
        )
    }

    fn allows(&self, resource: &str, write: bool) -> bool {
        match self {
            Access::Full => true,
            Access::Restricted(set) => {
                set.contains(&format!("{resource}:write"))
                    || (!write && set.contains(&format!("{resource}:read")))
            }
        }
    }
}

const READABLE: [&str; 12] = [
    "customers",
    "products",
    "prices",
    "subscriptions",
    "invoices",
    "invoiceitems",
    "charges",
    "payment_intents",
    "refunds",
    "disputes",
    "events",
    "webhook_endpoints",
];

#[derive(Debug, Clone)]
struct KeyInfo {
    account: String,
    access: Access,
    /// `None` while usable; else the 401 code Stripe answers with.
    revoked: Option<&'static str>,
}

/// A failure to inject into the next matching requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// No fault: lets a queued sequence skip a request.
    Pass,
    /// 400 before doing anything, as Stripe answers a parameter it refuses.
    BadRequest,
    /// 503 from in front of the API: nothing ran, nothing is stored under the key.
    Unavailable,
    /// 500 before doing anything. As at Stripe, a POST's 500 is the answer stored under its
    /// `Idempotency-Key` (sent with `Stripe-Should-Retry: false`): the key replays it.
    ServerError,
    /// Does the work, then answers 500, stored under the key like any first answer.
    ServerErrorAfterWork,
    /// 429 with `Retry-After` (seconds) before doing anything.
    RateLimited { retry_after: u64 },
    /// Does the work, then answers only after `delay` (longer than the client's timeout).
    SlowAfterWork { delay: Duration },
    /// Does the work, then drops the connection in the middle of the answer.
    DropAfterWork,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub params: Value,
    pub status: u16,
}

/// A fault for the next `count` requests whose method and path match.
#[derive(Debug, Clone)]
struct Targeted {
    method: String,
    path_prefix: String,
    fault: Fault,
    count: usize,
}

#[derive(Clone)]
struct Replay {
    params: Value,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, KeyInfo>,
    accounts: HashMap<String, Value>,
    /// resource → id → object, per account.
    objects: HashMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
    replays: HashMap<(String, String), Replay>,
    in_flight: HashSet<(String, String)>,
    calls: Vec<Call>,
    queued_faults: VecDeque<Fault>,
    targeted_faults: Vec<Targeted>,
    /// Objects made less than this long ago are not found by `/search` yet (Stripe: "under a
    /// minute"), as each object's insertion moment in `indexed_at` says.
    search_lag: Duration,
    indexed_at: HashMap<String, std::time::Instant>,
    /// Where events are posted, signed with the secret, when a test asks for webhooks.
    webhook: Option<(String, String)>,
    /// Events made by the request being handled, to post once the state is unlocked.
    outgoing: Vec<Value>,
    /// A share of requests (0..1) that fail with one of `random_faults`, from a seeded sequence.
    fault_rate: f64,
    random_faults: Vec<Fault>,
    rng: u64,
    next_id: u64,
    down: Option<u16>,
    /// Every request comes more than 24 hours after the last: no key is remembered.
    amnesia: bool,
    /// How long an idempotent POST takes to execute; a second request with its key meanwhile
    /// gets Stripe's 409 `idempotency_key_in_use`.
    processing_delay: Option<Duration>,
}

impl State {
    fn draw(&mut self) -> f64 {
        // xorshift64*: repeatable, good enough to pick faults.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next_fault(&mut self, method: &str, path: &str) -> Option<Fault> {
        if let Some(target) = self
            .targeted_faults
            .iter_mut()
            .find(|t| t.count > 0 && t.method == method && path_matches(&t.path_prefix, path))
        {
            target.count -= 1;
            return Some(target.fault);
        }
        if let Some(fault) = self.queued_faults.pop_front() {
            return Some(fault);
        }
        if self.fault_rate > 0.0 && !self.random_faults.is_empty() && self.draw() < self.fault_rate
        {
            let pick = (self.draw() * self.random_faults.len() as f64) as usize;
            return self.random_faults.get(pick).copied();
        }
        None
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_fake{:08}", self.next_id)
    }
}

#[derive(Clone)]
pub struct FakeStripe {
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

/// The test-mode secret key every fake has, with full access to account `acct_fake_default`.
pub const SECRET_KEY: &str = "sk_test_51FakeStripeDefaultKey000000000000";
pub const ACCOUNT: &str = "acct_fake_default";

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let state = Arc::new(Mutex::new(State {
            rng: 0x9E37_79B9_7F4A_7C15,
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        let fake = FakeStripe { base_url, state };
        fake.add_account(ACCOUNT);
        fake.add_key(SECRET_KEY, ACCOUNT, Access::Full);
        fake
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// An account in good standing; change it with [`FakeStripe::update_account`].
    pub fn add_account(&self, id: &str) {
        let account = json!({
            "id": id, "object": "account", "business_profile": {"name": "Fake Shop"},
            "charges_enabled": true, "payouts_enabled": true, "details_submitted": true,
            "requirements": {"currently_due": [], "disabled_reason": null},
        });
        self.with(|s| s.accounts.insert(id.to_owned(), account));
    }

    pub fn update_account(&self, id: &str, changes: Value) {
        self.with(|s| merge(s.accounts.get_mut(id).unwrap(), &changes));
    }

    pub fn add_key(&self, key: &str, account: &str, access: Access) {
        self.with(|s| {
            s.keys.insert(
                key.to_owned(),
                KeyInfo {
                    account: account.to_owned(),
                    access,
                    revoked: None,
                },
            )
        });
    }

    /// The key stops working: `api_key_expired` (rolled) or anything else (unknown).
    pub fn revoke_key(&self, key: &str, code: &'static str) {
        self.with(|s| s.keys.get_mut(key).unwrap().revoked = Some(code));
    }

    pub fn add_webhook_endpoint(
        &self,
        account: &str,
        url: &str,
        events: &[&str],
        enabled: bool,
    ) -> String {
        self.with(|s| {
            let id = s.new_id("we");
            let endpoint = json!({
                "id": id, "object": "webhook_endpoint", "url": url,
                "status": if enabled {"enabled"} else {"disabled"},
                "enabled_events": events, "api_version": "2025-03-31.basil",
                "secret": format!("whsec_{}", id),
            });
            s.objects
                .entry(account.to_owned())
                .or_default()
                .entry("webhook_endpoints".into())
                .or_default()
                .insert(id.clone(), endpoint);
            id
        })
    }

    /// Puts objects into a resource as if they had been made in Stripe (ids sort by age).
    pub fn seed(&self, account: &str, resource: &str, objects: Vec<Value>) {
        self.with(|s| {
            let store = s
                .objects
                .entry(account.to_owned())
                .or_default()
                .entry(resource.to_owned())
                .or_default();
            for object in objects {
                store.insert(object["id"].as_str().unwrap().to_owned(), object);
            }
        });
    }

    pub fn objects(&self, account: &str, resource: &str) -> Vec<Value> {
        self.with(|s| {
            s.objects
                .get(account)
                .and_then(|a| a.get(resource))
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// The customer pays: the invoice becomes paid, and the events Stripe would send are returned
    /// (`invoice.paid`, then `payment_intent.succeeded`) for the test to deliver, signed.
    pub fn pay_invoice(&self, account: &str, id: &str) -> Vec<Value> {
        self.with(|s| {
            let intent_id = s.new_id("pi");
            let charge_id = s.new_id("ch");
            let invoice = s.objects.get_mut(account).unwrap().get_mut("invoices").unwrap().get_mut(id).unwrap();
            let now = chrono::Utc::now().timestamp();
            let total = invoice["total"].as_i64().unwrap_or(0);
            invoice["status"] = json!("paid");
            invoice["amount_paid"] = json!(total);
            invoice["amount_remaining"] = json!(0);
            invoice["payment_intent"] = json!(intent_id);
            invoice["charge"] = json!(charge_id);
            invoice["status_transitions"]["paid_at"] = json!(now);
            let invoice = invoice.clone();
            let intent = json!({
                "id": intent_id, "object": "payment_intent", "amount": total, "amount_received": total,
                "currency": invoice["currency"], "customer": invoice["customer"], "invoice": id,
                "status": "succeeded", "created": now, "latest_charge": charge_id,
                "payment_method_types": ["card"],
            });
            let event = |n: u64, kind: &str, object: &Value| json!({
                "id": format!("evt_fake_{}_{n}", id), "object": "event", "api_version": "2024-06-20",
                "created": now, "livemode": false, "type": kind, "data": {"object": object},
            });
            vec![event(1, "invoice.paid", &invoice), event(2, "payment_intent.succeeded", &intent)]
        })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    pub fn queue_faults(&self, faults: &[Fault]) {
        self.with(|s| s.queued_faults.extend(faults.iter().copied()));
    }

    /// The next `count` requests of `method` to `path` fail so; a `*` segment matches any one
    /// segment (`/v1/invoices/*/finalize`).
    pub fn fail_next(&self, method: &str, path_prefix: &str, fault: Fault, count: usize) {
        self.with(|s| {
            s.targeted_faults.push(Targeted {
                method: method.to_owned(),
                path_prefix: path_prefix.to_owned(),
                fault,
                count,
            })
        });
    }

    /// Drops every targeted fault not yet used.
    pub fn clear_targeted_faults(&self) {
        self.with(|s| s.targeted_faults.clear());
    }

    /// How long a new object stays invisible to `/v1/customers/search`.
    pub fn set_search_lag(&self, lag: Duration) {
        self.with(|s| s.search_lag = lag);
    }

    /// From now on every event is also posted to `url`, signed with `secret`, each after a short
    /// random delay, so that they arrive out of order and in the middle of whatever the caller
    /// is doing, as Stripe's do.
    pub fn send_webhooks_to(&self, url: &str, secret: &str) {
        self.with(|s| s.webhook = Some((url.to_owned(), secret.to_owned())));
    }

    /// The events Stripe would have sent so far, oldest first.
    pub fn events(&self, account: &str) -> Vec<Value> {
        self.objects(account, "events")
    }

    pub fn set_fault_rate(&self, rate: f64, faults: &[Fault]) {
        self.with(|s| {
            s.fault_rate = rate;
            s.random_faults = faults.to_vec();
        });
    }

    /// Every request answers `status` (e.g. 503) until [`FakeStripe::recover`].
    pub fn go_down(&self, status: u16) {
        self.with(|s| s.down = Some(status));
    }

    pub fn recover(&self) {
        self.with(|s| s.down = None);
    }

    pub fn set_processing_delay(&self, delay: Duration) {
        self.with(|s| s.processing_delay = Some(delay));
    }

    /// From now on every request is answered as if a day had passed since the one before.
    pub fn forget_keys_always(&self) {
        self.with(|s| s.amnesia = true);
    }

    /// As if 24 hours passed: Stripe no longer remembers any idempotency key.
    pub fn forget_idempotency_keys(&self) {
        self.with(|s| s.replays.clear());
    }
}

fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> (u16, Value) {
    (
        status,
        json!({"error": {"type": kind, "code": code, "message": message, "param": param}}),
    )
}

async fn handle(
    state: web::Data<Arc<Mutex<State>>>,
    req: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let raw = if method == "GET" {
        req.query_string().to_owned()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let params = parse_form(&raw);
    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    // Marks the key in flight for the processing delay, as a long-running request does at Stripe.
    let in_flight = {
        let mut s = state.lock().unwrap();
        match (s.processing_delay, method.as_str(), &idempotency_key) {
            (Some(delay), "POST", Some(idem)) => {
                let scope = (key.clone(), idem.clone());
                if s.replays.contains_key(&scope) || s.in_flight.contains(&scope) {
                    None
                } else {
                    s.in_flight.insert(scope.clone());
                    Some((scope, delay))
                }
            }
            _ => None,
        }
    };
    if let Some((_, delay)) = &in_flight {
        tokio::time::sleep(*delay).await;
    }
    let (answer, fault, outgoing) = {
        let mut s = state.lock().unwrap();
        if let Some((scope, _)) = &in_flight {
            s.in_flight.remove(scope);
        }
        let fault = if s.down.is_some() {
            None
        } else {
            s.next_fault(&method, &path)
        };
        let refused = match (s.down, fault) {
            (Some(status), _) => Some(error(
                status,
                "api_error",
                None,
                "Stripe is down (fake).",
                None,
            )),
            (None, Some(Fault::BadRequest)) => Some(error(
                400,
                "invalid_request_error",
                Some("amount_too_large"),
                "Amount must be no more than $999,999.99 (fake).",
                Some("amount"),
            )),
            (None, Some(Fault::Unavailable)) => Some(error(
                503,
                "api_error",
                None,
                "The service is temporarily unavailable (fake).",
                None,
            )),
            (None, Some(Fault::RateLimited { .. })) => Some(error(
                429,
                "rate_limit_error",
                Some("rate_limit"),
                "Too many requests hit the API too quickly.",
                None,
            )),
            _ => None,
        };
        let answer = match refused {
            Some((status, body)) => Answer::fresh(status, body),
            None => respond(
                &mut s,
                &method,
                &path,
                &key,
                idempotency_key.as_deref(),
                &params,
                fault,
            ),
        };
        s.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            idempotency_key: idempotency_key.clone(),
            params: params.clone(),
            status: answer.status,
        });
        let outgoing = std::mem::take(&mut s.outgoing);
        let webhook = s.webhook.clone();
        (answer, fault, webhook.map(|w| (w, outgoing)))
    };
    if let Some(((url, secret), events)) = outgoing {
        for event in events {
            tokio::spawn(post_event(url.clone(), secret.clone(), event));
        }
    }

    let mut response = HttpResponse::build(StatusCode::from_u16(answer.status).unwrap());
    response.insert_header(("request-id", "req_fake"));
    if answer.replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    if answer.stored && answer.status >= 500 {
        // Retrying the same key can only replay this answer.
        response.insert_header(("stripe-should-retry", "false"));
    }
    match fault {
        Some(Fault::RateLimited { retry_after }) => {
            response.insert_header(("retry-after", retry_after.to_string()));
        }
        Some(Fault::SlowAfterWork { delay }) => tokio::time::sleep(delay).await,
        Some(Fault::DropAfterWork) => {
            response.content_type("application/json");
            return response.body(BrokenBody);
        }
        _ => {}
    }
    response.json(answer.body)
}

/// Posts one event as Stripe does: signed now, retried a few times until answered 2xx.
async fn post_event(url: String, secret: String, event: Value) {
    let jitter = {
        let [a] = billmirror::domain::ids::random_bytes::<1>();
        Duration::from_millis(u64::from(a) % 40)
    };
    tokio::time::sleep(jitter).await;
    let body = event.to_string();
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let header = billmirror::webhook::signature::sign(
            &secret,
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        let sent = client
            .post(&url)
            .header("Stripe-Signature", header)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A body that fails after the headers went out: the server drops the connection.
struct BrokenBody;

impl MessageBody for BrokenBody {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other("dropped by the fake"))))
    }
}

/// What the fake answers, and how the idempotency layer was involved.
struct Answer {
    status: u16,
    body: Value,
    /// The answer stored under the request's key, replayed.
    replayed: bool,
    /// The answer is now stored under the request's key.
    stored: bool,
}

impl Answer {
    fn fresh(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            replayed: false,
            stored: false,
        }
    }
}

/// Authentication, permissions and idempotency, then the resource itself.
fn respond(
    s: &mut State,
    method: &str,
    path: &str,
    key: &str,
    idempotency_key: Option<&str>,
    params: &Value,
    fault: Option<Fault>,
) -> Answer {
    let Some(info) = s.keys.get(key).cloned() else {
        let (status, body) = error(
            401,
            "invalid_request_error",
            None,
            &format!("Invalid API Key provided: {}", star(key)),
            None,
        );
        return Answer::fresh(status, body);
    };
    if let Some(code) = info.revoked {
        let (status, body) = error(
            401,
            "invalid_request_error",
            Some(code),
            &format!("Expired API Key provided: {}", star(key)),
            None,
        );
        return Answer::fresh(status, body);
    }
    let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let resource = parts[0];
    let write = method != "GET";
    if resource != "account" && !info.access.allows(resource, write) {
        let (status, body) = error(
            403,
            "invalid_request_error",
            Some("permission_error"),
            &format!(
                "The provided key '{}' does not have the required permissions for this endpoint \
                 on account '{}'. Having the 'rak_{resource}_{}' permission would allow this \
                 request to continue.",
                star(key),
                info.account,
                if write { "write" } else { "read" }
            ),
            None,
        );
        return Answer::fresh(status, body);
    }
    if s.amnesia {
        s.replays.clear();
    }
    // Stripe keys idempotent POSTs and DELETEs alike.
    let scope = idempotency_key
        .filter(|_| method != "GET")
        .map(|k| (key.to_owned(), k.to_owned()));
    if let Some(scope) = &scope {
        if let Some(replay) = s.replays.get(scope) {
            if replay.params != *params {
                let (status, body) = error(
                    400,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    None,
                );
                return Answer::fresh(status, body);
            }
            return Answer {
                status: replay.status,
                body: replay.body.clone(),
                replayed: true,
                stored: true,
            };
        }
        if s.in_flight.contains(scope) {
            let (status, body) = error(
                409,
                "idempotency_error",
                Some("idempotency_key_in_use"),
                "There is currently another in-progress request using this Idempotent Key.",
                None,
            );
            return Answer::fresh(status, body);
        }
    }
    let server_error = || {
        error(
            500,
            "api_error",
            None,
            "An unknown error occurred (fake).",
            None,
        )
    };
    let (status, body) = match fault {
        Some(Fault::ServerError) => server_error(),
        Some(Fault::ServerErrorAfterWork) => {
            execute(s, &info.account, method, &parts, params);
            server_error()
        }
        _ => execute(s, &info.account, method, &parts, params),
    };
    let body = present(body);
    let stored = scope.is_some();
    if let Some(scope) = scope {
        // Stripe keeps the answer of any request that began executing, errors included.
        s.replays.insert(
            scope,
            Replay {
                params: params.clone(),
                status,
                body: body.clone(),
            },
        );
    }
    Answer {
        status,
        body,
        replayed: false,
        stored,
    }
}

/// How many lines Stripe embeds in an invoice; the rest are at `/v1/invoices/{id}/lines`.
const EMBEDDED_LINES: usize = 10;

/// An object (or a list of them) as Stripe shows it: an invoice embeds its first ten lines,
/// with `has_more` saying whether there are more.
fn present(mut body: Value) -> Value {
    if body["object"] == "list" || body["object"] == "search_result" {
        if let Some(items) = body["data"].as_array_mut() {
            for item in items {
                *item = present(item.take());
            }
        }
        return body;
    }
    if body["object"] == "event" {
        let object = body["data"]["object"].take();
        body["data"]["object"] = present(object);
        return body;
    }
    if body["object"] == "invoice" {
        // Seeded invoices may keep every line under `all_lines`, embedding only some.
        let all = body["all_lines"].as_array().map(Vec::len);
        if let Some(lines) = body["lines"]["data"].as_array_mut() {
            let total = all.unwrap_or(lines.len()).max(lines.len());
            lines.truncate(EMBEDDED_LINES);
            body["lines"]["has_more"] = json!(total > EMBEDDED_LINES);
            body["lines"]["total_count"] = json!(total);
        }
        if let Some(id) = body["id"].as_str() {
            body["lines"]["url"] = json!(format!("/v1/invoices/{id}/lines"));
        }
        if let Some(map) = body.as_object_mut() {
            map.remove("all_lines");
        }
    }
    body
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let (want, got): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
}

fn star(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let prefix: String = key.chars().take(8).collect();
    format!("{prefix}****{tail}")
}

fn prefix_of(resource: &str) -> &'static str {
    match resource {
        "customers" => "cus",
        "invoices" => "in",
        "invoiceitems" => "ii",
        "webhook_endpoints" => "we",
        "products" => "prod",
        "prices" => "price",
        _ => "obj",
    }
}

fn execute(
    s: &mut State,
    account: &str,
    method: &str,
    parts: &[&str],
    params: &Value,
) -> (u16, Value) {
    if parts == ["account"] {
        return (200, s.accounts.get(account).cloned().unwrap_or(Value::Null));
    }
    let resource = parts[0].to_owned();
    if method == "GET" {
        if let Err(refusal) = page_limit(params) {
            return refusal;
        }
    }
    match (method, parts.len()) {
        ("GET", 2) if resource == "customers" && parts[1] == "search" => {
            search_customers(s, account, params)
        }
        ("GET", 1) => {
            let limit = page_limit(params).ok().flatten().unwrap_or(10);
            let after = params["starting_after"].as_str();
            let created_gte: Option<i64> = params["created"]["gte"]
                .as_str()
                .and_then(|g| g.parse().ok());
            let filters: Vec<(&String, &Value)> = params
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, v)| {
                            let paging = ["limit", "starting_after", "expand", "created"]
                                .contains(&k.as_str());
                            let every_status = k.as_str() == "status" && v.as_str() == Some("all");
                            !(paging || every_status)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let matching: Vec<Value> = s
                .objects
                .get(account)
                .and_then(|a| a.get(&resource))
                .map(|m| {
                    m.iter()
                        .rev()
                        .skip_while(|(id, _)| after.is_some_and(|a| id.as_str() >= a))
                        .map(|(_, o)| o)
                        .filter(|o| filters.iter().all(|(k, v)| &&o[k.as_str()] == v))
                        .filter(|o| {
                            created_gte.is_none_or(|gte| o["created"].as_i64().unwrap_or(0) >= gte)
                        })
                        // One more than a page tells whether there are more.
                        .take(limit + 1)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let has_more = matching.len() > limit;
            let data: Vec<Value> = matching.into_iter().take(limit).collect();
            (
                200,
                json!({"object": "list", "data": data, "has_more": has_more, "url": format!("/v1/{resource}")}),
            )
        }
        ("POST", 1) => {
            let id = s.new_id(prefix_of(&resource));
            let mut object = params.clone();
            object["id"] = json!(id);
            object["object"] = json!(resource.trim_end_matches('s'));
            if resource == "invoices" {
                object["status"] = json!("draft");
                object["total"] = json!(0);
                object["amount_due"] = json!(0);
                object["amount_paid"] = json!(0);
                object["amount_remaining"] = json!(0);
                object["lines"] = json!({"object": "list", "data": []});
            }
            if resource == "invoiceitems" {
                let quantity: i64 = params["quantity"]
                    .as_str()
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1);
                let unit: i64 = params["unit_amount_decimal"]
                    .as_str()
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(0);
                object["amount"] = json!(quantity * unit);
                object["quantity"] = json!(quantity);
                let invoice = params["invoice"].as_str().unwrap_or_default().to_owned();
                let Some(target) = s
                    .objects
                    .get_mut(account)
                    .and_then(|a| a.get_mut("invoices"))
                    .and_then(|m| m.get_mut(&invoice))
                else {
                    return error(
                        400,
                        "invalid_request_error",
                        Some("resource_missing"),
                        &format!("No such invoice: '{invoice}'"),
                        Some("invoice"),
                    );
                };
                if target["status"] != "draft" {
                    return error(
                        400,
                        "invalid_request_error",
                        Some("invoice_not_editable"),
                        "The invoice is not a draft.",
                        Some("invoice"),
                    );
                }
                for field in ["total", "amount_due", "amount_remaining"] {
                    target[field] = json!(target[field].as_i64().unwrap_or(0) + quantity * unit);
                }
                let mut line = object.clone();
                line["id"] = json!(format!("il_{}", id));
                target["lines"]["data"].as_array_mut().unwrap().push(line);
            }
            if resource == "webhook_endpoints" {
                object["status"] = json!("enabled");
                object["secret"] = json!(format!("whsec_fakeSecretFor{}", id.replace('_', "")));
                object["api_version"] = json!("2026-09-30.clover");
            }
            s.indexed_at.insert(id.clone(), std::time::Instant::now());
            s.objects
                .entry(account.to_owned())
                .or_default()
                .entry(resource.clone())
                .or_default()
                .insert(id, object.clone());
            match resource.as_str() {
                "customers" => emit(s, account, "customer.created", &object),
                "invoices" => emit(s, account, "invoice.created", &object),
                "invoiceitems" => {
                    emit(s, account, "invoiceitem.created", &object);
                    let invoice = params["invoice"].as_str().unwrap_or_default();
                    if let Some(target) = s.objects[account]["invoices"].get(invoice).cloned() {
                        emit(s, account, "invoice.updated", &target);
                    }
                }
                _ => {}
            }
            (200, object)
        }
        (_, 2) => {
            let id = parts[1];
            let found = s
                .objects
                .get_mut(account)
                .and_then(|a| a.get_mut(&resource))
                .and_then(|m| m.get_mut(id));
            let Some(object) = found else {
                return error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such {}: '{id}'", resource.trim_end_matches('s')),
                    Some("id"),
                );
            };
            if method == "DELETE" && resource == "invoiceitems" {
                let item = object.clone();
                let invoice = item["invoice"].as_str().unwrap_or_default().to_owned();
                let account_objects = s.objects.get_mut(account).unwrap();
                if let Some(target) = account_objects
                    .get_mut("invoices")
                    .and_then(|m| m.get_mut(&invoice))
                {
                    if target["status"] != "draft" {
                        return error(
                            400,
                            "invalid_request_error",
                            Some("invoice_not_editable"),
                            "The invoice item is on an invoice that is not a draft.",
                            None,
                        );
                    }
                    let amount = item["amount"].as_i64().unwrap_or(0);
                    for field in ["total", "amount_due", "amount_remaining"] {
                        target[field] = json!(target[field].as_i64().unwrap_or(0) - amount);
                    }
                    let line_id = format!("il_{id}");
                    if let Some(lines) = target["lines"]["data"].as_array_mut() {
                        lines.retain(|l| l["id"] != line_id.as_str());
                    }
                }
                account_objects
                    .get_mut("invoiceitems")
                    .map(|m| m.remove(id));
                return (
                    200,
                    json!({"id": id, "object": "invoiceitem", "deleted": true}),
                );
            }
            if method == "DELETE" {
                if object["status"] != "draft" {
                    return error(
                        400,
                        "invalid_request_error",
                        None,
                        "Only draft invoices can be deleted.",
                        None,
                    );
                }
                let deleted = json!({"id": id, "object": "invoice", "deleted": true});
                let gone = s
                    .objects
                    .get_mut(account)
                    .and_then(|a| a.get_mut(&resource))
                    .and_then(|m| m.remove(id));
                if let Some(gone) = gone {
                    // Stripe does not delete a deleted draft's items: they become pending
                    // again, and would be billed on the customer's next invoice.
                    if let Some(items) = s
                        .objects
                        .get_mut(account)
                        .and_then(|a| a.get_mut("invoiceitems"))
                    {
                        for item in items.values_mut().filter(|i| i["invoice"] == id) {
                            item["invoice"] = Value::Null;
                        }
                    }
                    emit(s, account, "invoice.deleted", &gone);
                }
                return (200, deleted);
            }
            if method == "POST" {
                let mut changes = params.clone();
                if let Some(disabled) = changes.as_object_mut().and_then(|m| m.remove("disabled")) {
                    object["status"] = json!(if disabled == "true" {
                        "disabled"
                    } else {
                        "enabled"
                    });
                }
                merge(object, &changes);
                let object = object.clone();
                match resource.as_str() {
                    "customers" => emit(s, account, "customer.updated", &object),
                    "invoices" => emit(s, account, "invoice.updated", &object),
                    _ => {}
                }
                return (200, object);
            }
            (200, object.clone())
        }
        ("GET", 3) if resource == "invoices" && parts[2] == "lines" => {
            let Some(invoice) = s
                .objects
                .get(account)
                .and_then(|a| a.get("invoices"))
                .and_then(|m| m.get(parts[1]))
            else {
                return error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    "No such invoice",
                    Some("id"),
                );
            };
            let limit = page_limit(params).ok().flatten().unwrap_or(10);
            let after = params["starting_after"].as_str();
            // Seeded invoices may keep every line under `all_lines`, listing only ten inline.
            let lines: Vec<Value> = invoice["all_lines"]
                .as_array()
                .or(invoice["lines"]["data"].as_array())
                .cloned()
                .unwrap_or_default();
            let rest: Vec<Value> = match after {
                Some(a) => lines
                    .iter()
                    .skip_while(|l| l["id"] != a)
                    .skip(1)
                    .cloned()
                    .collect(),
                None => lines,
            };
            let has_more = rest.len() > limit;
            (
                200,
                json!({"object": "list", "data": rest.into_iter().take(limit).collect::<Vec<_>>(), "has_more": has_more}),
            )
        }
        ("POST", 3) if resource == "invoices" => invoice_action(s, account, parts[1], parts[2]),
        _ => error(
            404,
            "invalid_request_error",
            None,
            "Unrecognized request URL (fake).",
            None,
        ),
    }
}

fn invoice_action(s: &mut State, account: &str, id: &str, action: &str) -> (u16, Value) {
    s.next_id += 1;
    let number = format!("FAKE-{:04}", s.next_id);
    let Some(invoice) = s
        .objects
        .get_mut(account)
        .and_then(|a| a.get_mut("invoices"))
        .and_then(|m| m.get_mut(id))
    else {
        return error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such invoice: '{id}'"),
            Some("id"),
        );
    };
    let now = chrono::Utc::now().timestamp();
    match (action, invoice["status"].as_str()) {
        ("finalize", Some("draft")) => {
            invoice["status"] = json!("open");
            invoice["number"] = json!(number);
            invoice["hosted_invoice_url"] =
                json!(format!("https://invoice.stripe.com/i/acct_fake/{id}"));
            invoice["status_transitions"] = json!({"finalized_at": now});
            let days: i64 = invoice["days_until_due"]
                .as_str()
                .and_then(|d| d.parse().ok())
                .unwrap_or(30);
            invoice["due_date"] = json!(now + days * 86_400);
        }
        ("void", Some("open")) => {
            invoice["status"] = json!("void");
            invoice["status_transitions"]["voided_at"] = json!(now);
        }
        (_, status) => {
            return error(
                400,
                "invalid_request_error",
                None,
                &format!(
                    "You can't {action} an invoice that is {}.",
                    status.unwrap_or("unknown")
                ),
                None,
            )
        }
    }
    let invoice = invoice.clone();
    let kind = if action == "finalize" {
        "invoice.finalized"
    } else {
        "invoice.voided"
    };
    emit(s, account, kind, &invoice);
    (200, invoice)
}

/// Records the event Stripe sends for a change (listable at `/v1/events`), and queues it for the
/// webhook endpoint when there is one.
fn emit(s: &mut State, account: &str, kind: &str, object: &Value) {
    let id = s.new_id("evt");
    let event = json!({
        "id": id, "object": "event", "api_version": "2026-09-30.clover",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "type": kind, "data": {"object": present(object.clone())},
    });
    s.objects
        .entry(account.to_owned())
        .or_default()
        .entry("events".to_owned())
        .or_default()
        .insert(id, event.clone());
    if s.webhook.is_some() {
        s.outgoing.push(event);
    }
}

/// A list's `limit`: 1 to 100, as Stripe accepts; `Ok(None)` when not given.
fn page_limit(params: &Value) -> Result<Option<usize>, (u16, Value)> {
    let Some(raw) = params["limit"].as_str() else {
        return Ok(None);
    };
    match raw.parse::<usize>() {
        Ok(limit) if (1..=100).contains(&limit) => Ok(Some(limit)),
        _ => Err(error(
            400,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            Some("limit"),
        )),
    }
}

/// `GET /v1/customers/search`: clauses `email:'…'` (any letter case) and `metadata['k']:'v'`,
/// joined by `OR` or `AND`. Objects made within the search lag are not found yet.
fn search_customers(s: &mut State, account: &str, params: &Value) -> (u16, Value) {
    let query = params["query"].as_str().unwrap_or_default();
    let any: Vec<&str> = query.split(" OR ").collect();
    let mut groups: Vec<Vec<(String, String)>> = Vec::new();
    for group in any {
        let mut clauses = Vec::new();
        for clause in group.split(" AND ") {
            let Some((field, value)) = clause.trim().split_once(':') else {
                return invalid_query(query);
            };
            let value = value.trim_matches(|c| c == '\'' || c == '"');
            let field = match field.strip_prefix("metadata[") {
                Some(rest) => format!(
                    "metadata.{}",
                    rest.trim_end_matches(']')
                        .trim_matches(|c| c == '\'' || c == '"')
                ),
                None if field == "email" => "email".to_owned(),
                None => return invalid_query(query),
            };
            clauses.push((field, value.to_owned()));
        }
        groups.push(clauses);
    }
    let limit = page_limit(params).ok().flatten().unwrap_or(10);
    let lag = s.search_lag;
    let visible = |id: &str| s.indexed_at.get(id).is_none_or(|at| at.elapsed() >= lag);
    let matches = |o: &Value| {
        groups.iter().any(|clauses| {
            clauses
                .iter()
                .all(|(field, value)| match field.strip_prefix("metadata.") {
                    Some(key) => o["metadata"][key].as_str() == Some(value.as_str()),
                    None => o["email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(value)),
                })
        })
    };
    let found: Vec<Value> = s
        .objects
        .get(account)
        .and_then(|a| a.get("customers"))
        .map(|m| {
            m.iter()
                .rev()
                .filter(|(id, o)| visible(id) && o["deleted"] != true && matches(o))
                .map(|(_, o)| o.clone())
                .collect()
        })
        .unwrap_or_default();
    // Stripe's search pages by an opaque `page` token; this one is the offset.
    let offset: usize = params["page"]
        .as_str()
        .and_then(|p| p.strip_prefix("offset_"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let has_more = found.len() > offset + limit;
    let next_page = has_more.then(|| format!("offset_{}", offset + limit));
    (
        200,
        json!({"object": "search_result",
               "data": found.into_iter().skip(offset).take(limit).collect::<Vec<_>>(),
               "has_more": has_more, "next_page": next_page, "url": "/v1/customers/search"}),
    )
}

fn invalid_query(query: &str) -> (u16, Value) {
    error(
        400,
        "invalid_request_error",
        Some("parameter_invalid_string"),
        &format!("The search query `{query}` is not supported (fake)."),
        Some("query"),
    )
}

fn merge(target: &mut Value, changes: &Value) {
    if let (Some(target), Some(changes)) = (target.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// Parses Stripe's form encoding (`a[b]=1&list[0]=x`) into JSON; every value stays a string.
pub fn parse_form(raw: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in form_pairs(raw) {
        let mut path: Vec<String> = Vec::new();
        let (head, rest) = key
            .split_once('[')
            .map_or((key.as_str(), ""), |(h, r)| (h, r));
        path.push(head.to_owned());
        for part in rest.split('[') {
            let part = part.trim_end_matches(']');
            if !rest.is_empty() {
                path.push(part.to_owned());
            }
        }
        let mut node = &mut root;
        for (n, segment) in path.iter().enumerate() {
            let last = n + 1 == path.len();
            let next_is_index = path.get(n + 1).is_some_and(|p| p.parse::<usize>().is_ok());
            let child = if let Ok(index) = segment.parse::<usize>() {
                if !node.is_array() {
                    *node = Value::Array(Vec::new());
                }
                let array = node.as_array_mut().unwrap();
                while array.len() <= index {
                    array.push(Value::Null);
                }
                &mut array[index]
            } else {
                if !node.is_object() {
                    *node = Value::Object(Map::new());
                }
                node.as_object_mut()
                    .unwrap()
                    .entry(segment.clone())
                    .or_insert(Value::Null)
            };
            if last {
                *child = Value::String(value.clone());
            } else if child.is_null() {
                *child = if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                };
            }
            node = child;
        }
    }
    root
}

fn form_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
