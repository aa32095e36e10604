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

mod oauth;
mod resources;
mod shapes;
mod v2;

#[allow(unused_imports)] // the benches include this module but use no OAuth
pub use oauth::{Flow as OauthFlow, CONNECTED_ACCOUNT};

pub use resources::parse_form;
use resources::*;

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
    /// When an OAuth access token stops working.
    expires: Option<std::time::Instant>,
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
    /// The `Stripe-Version` header, when one was sent.
    pub stripe_version: Option<String>,
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
    /// The destination takes thin events (`v1.customer.created`, …) instead of snapshots.
    thin_payloads: bool,
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
    /// OAuth clients, codes, grants and refresh tokens.
    oauth: oauth::OauthState,
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
                    expires: None,
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

    /// As [`FakeStripe::send_webhooks_to`], with thin events (`v2.core.event`, type
    /// `v1.{snapshot type}`) in place of snapshot events, as an event destination of thin
    /// payloads sends them.
    pub fn send_thin_webhooks_to(&self, url: &str, secret: &str) {
        self.with(|s| {
            s.webhook = Some((url.to_owned(), secret.to_owned()));
            s.thin_payloads = true;
        });
    }

    /// A thin event of `thin_type` about `related` (`(id, object type)`), kept for
    /// `GET /v2/core/events/{id}`, for the test to deliver.
    pub fn thin_event(
        &self,
        account: &str,
        thin_type: &str,
        related: Option<(&str, &str)>,
    ) -> Value {
        self.with(|s| v2::thin_event(s, account, thin_type, related))
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
    if let Some(answer) = oauth::handle(&state, &req, &body) {
        return answer;
    }
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
    let stripe_version = req
        .headers()
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stripe_account = req
        .headers()
        .get("stripe-account")
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
                stripe_version.as_deref(),
                stripe_account.as_deref(),
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
            stripe_version: stripe_version.clone(),
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
#[allow(clippy::too_many_arguments)] // one per part of the request the fake judges
fn respond(
    s: &mut State,
    method: &str,
    path: &str,
    key: &str,
    idempotency_key: Option<&str>,
    stripe_version: Option<&str>,
    stripe_account: Option<&str>,
    params: &Value,
    fault: Option<Fault>,
) -> Answer {
    let Some(mut info) = s.keys.get(key).cloned() else {
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
    if info
        .expires
        .is_some_and(|at| std::time::Instant::now() >= at)
    {
        let (status, body) = error(
            401,
            "invalid_request_error",
            Some("api_key_expired"),
            &format!("Expired API Key provided: {}", star(key)),
            None,
        );
        return Answer::fresh(status, body);
    }
    if let Some(connected) = stripe_account {
        // A platform's own key acting on an account connected to it; nothing else may.
        let access = matches!(info.access, Access::Full)
            .then(|| s.oauth.access_for(&info.account, connected))
            .flatten();
        let Some(access) = access else {
            let (status, body) = error(
                403,
                "invalid_request_error",
                Some("account_invalid"),
                &format!(
                    "The provided key '{}' does not have access to account '{connected}' (or \
                     that account does not exist). Application access may have been revoked.",
                    star(key)
                ),
                None,
            );
            return Answer::fresh(status, body);
        };
        info = KeyInfo {
            account: connected.to_owned(),
            access,
            revoked: None,
            expires: None,
        };
    }
    if let Some(rest) = path.strip_prefix("/v2/") {
        let (status, body) = match fault {
            Some(Fault::ServerError) => error(
                500,
                "api_error",
                None,
                "An unknown error occurred (fake).",
                None,
            ),
            _ => v2::respond(s, &info, method, rest, stripe_version),
        };
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
