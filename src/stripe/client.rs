//! The one way billmirror talks to Stripe: a small client over HTTPS with a timeout on every
//! request, retries only where Stripe allows them, `Retry-After` honoured, a client-side rate
//! limit per connection, and an `Idempotency-Key` on every POST (the signature of [`post`] makes
//! one mandatory).
//!
//! Why not async-stripe's transport: its final error drops the `Retry-After` and
//! `Stripe-Should-Retry` headers, it sets no timeout, and its built-in retries have no jitter.
//! async-stripe's typed requests and responses go through this client instead (`stripe::typed`,
//! with the `Stripe-Version` its types describe); the untyped calls left are the permission
//! probes of the key report (whose answers are not read), the v2 thin events and the object a
//! thin event points at (any type, folded as a webhook payload).
//!
//! Errors never carry a secret: the key travels only in the `Authorization` header, and Stripe's
//! own messages (which may quote part of a key) are scrubbed before they are kept.
//!
//! [`post`]: StripeClient::post

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use super::rate_limit::RateLimiter;
use crate::domain::backoff::Backoff;
use crate::domain::ids;
use crate::domain::secret::{mask, Secret};

/// How a client behaves; one per connection.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `https://api.stripe.com` in production; the fake Stripe's address in tests.
    pub api_base: String,
    pub timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Between attempts of one call, unless Stripe says `Retry-After`.
    pub backoff: Backoff,
    /// Requests per second this client sends at most.
    pub requests_per_second: f64,
}

impl ClientSettings {
    pub const STRIPE_API_BASE: &'static str = "https://api.stripe.com";

    /// Below Stripe's own limits (100/s live, 25/s test) so that billmirror never provokes them.
    pub fn default_rate(live: bool) -> f64 {
        if live {
            80.0
        } else {
            20.0
        }
    }
}

/// What went wrong talking to Stripe, once retries are spent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeError {
    /// Stripe answered with an error object.
    #[error("Stripe answered {status} ({kind}{}): {message}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Api {
        status: u16,
        /// `type`: `invalid_request_error`, `authentication_error`, `rate_limit_error`, …
        kind: String,
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
    /// No usable answer: the connection failed, timed out, or the answer was not Stripe's JSON.
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
}

impl StripeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            StripeError::Api { status, .. } => Some(*status),
            StripeError::Unreachable(_) => None,
        }
    }

    /// 429 or 5xx after every retry, or no answer at all: a Stripe-side problem, not ours.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StripeError::Api { status, .. } => *status == 429 || *status >= 500,
            StripeError::Unreachable(_) => true,
        }
    }

    /// A 5xx answer. To a request with an `Idempotency-Key` it is the answer Stripe stored under
    /// that key: sending the key again only replays it.
    pub fn is_server_error(&self) -> bool {
        matches!(self, StripeError::Api { status, .. } if *status >= 500)
    }

    /// Why, without the "Stripe could not be reached" that a caller has already said.
    pub fn cause(&self) -> String {
        match self {
            StripeError::Unreachable(cause) => cause.clone(),
            api => api.to_string(),
        }
    }

    /// Stripe refused the credentials: 401, or 403 `account_invalid` (the key may no longer act
    /// on the connected account named in `Stripe-Account`).
    pub fn is_refused_credential(&self) -> bool {
        match self {
            StripeError::Api { status: 401, .. } => true,
            StripeError::Api {
                status: 403, code, ..
            } => code.as_deref() == Some("account_invalid"),
            _ => false,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            StripeError::Api { code, .. } => code.as_deref(),
            StripeError::Unreachable(_) => None,
        }
    }
}

/// The API version billmirror asks for on `/v2` requests, which take none by default: v2 objects
/// are shaped by the `Stripe-Version` header of each request (its v1 calls keep the account's
/// default version, as webhooks do).
pub const V2_API_VERSION: &str = "2026-09-30.endive";

/// Which of Stripe's API namespaces a request goes to. `/v2` takes and answers JSON, is versioned
/// per request, and accepts secret keys only (not restricted ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    V1,
    V2,
}

impl Namespace {
    fn prefix(self) -> &'static str {
        match self {
            Namespace::V1 => "/v1",
            Namespace::V2 => "/v2",
        }
    }
}

/// One attempt's outcome, before the retry decision.
struct Failure {
    error: StripeError,
    retry: bool,
    retry_after: Option<Duration>,
}

/// Told when Stripe refuses the credentials themselves (401, or 403 `account_invalid` for a
/// connected account): how an OAuth connection learns that its authorisation was revoked.
pub type RefusedHook = std::sync::Arc<dyn Fn(&StripeError) + Send + Sync>;

pub struct StripeClient {
    http: reqwest::Client,
    key: Secret,
    settings: ClientSettings,
    limiter: RateLimiter,
    /// `Stripe-Account`: a Connect platform reading a connected account with its own key.
    account: Option<String>,
    on_refused: Option<RefusedHook>,
}

impl StripeClient {
    pub fn new(key: Secret, settings: ClientSettings) -> Result<StripeClient, StripeError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("billmirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::Unreachable(format!("the HTTP client cannot start: {e}")))?;
        Ok(StripeClient {
            http,
            limiter: RateLimiter::new(settings.requests_per_second),
            key,
            settings,
            account: None,
            on_refused: None,
        })
    }

    /// Every request acts on the connected account `account` (`Stripe-Account: acct_…`).
    pub fn for_account(mut self, account: &str) -> StripeClient {
        self.account = Some(account.to_owned());
        self
    }

    /// `hook` is called whenever Stripe refuses the credentials (see [`RefusedHook`]).
    pub fn on_refused(mut self, hook: RefusedHook) -> StripeClient {
        self.on_refused = Some(hook);
        self
    }

    /// The key this client sends, masked: for log lines and answers.
    pub fn key_hint(&self) -> String {
        self.key.masked()
    }

    /// `GET /v1/{path}` with query parameters.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, StripeError> {
        self.send(Namespace::V1, reqwest::Method::GET, path, query, None)
            .await
    }

    /// `GET /v2/{path}` (`core/events/evt_…`), with the `Stripe-Version` v2 requests carry.
    pub async fn get_v2(&self, path: &str) -> Result<Value, StripeError> {
        self.send(
            Namespace::V2,
            reqwest::Method::GET,
            path,
            &[] as &[(&str, &str)],
            None,
        )
        .await
    }

    /// `POST /v1/{path}` with form parameters (`metadata[billmirror_id]`, `lines[0][amount]`…).
    /// The idempotency key makes retries, ours and Stripe's, safe: Stripe replays the first
    /// answer to a key for 24 hours.
    pub async fn post(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        self.send(
            Namespace::V1,
            reqwest::Method::POST,
            path,
            form,
            Some(idempotency_key),
        )
        .await
    }

    /// A POST that changes nothing, such as a permission probe: it still carries a fresh key.
    pub async fn post_once(
        &self,
        path: &str,
        form: &[(String, String)],
    ) -> Result<Value, StripeError> {
        let key = ids::new_id("probe");
        self.post(path, form, &key).await
    }

    pub async fn delete(&self, path: &str, idempotency_key: &str) -> Result<Value, StripeError> {
        self.send(
            Namespace::V1,
            reqwest::Method::DELETE,
            path,
            &[] as &[(String, String)],
            Some(idempotency_key),
        )
        .await
    }

    async fn send<K: AsRef<str>, V: AsRef<str>>(
        &self,
        namespace: Namespace,
        method: reqwest::Method,
        path: &str,
        params: &[(K, V)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, StripeError> {
        let version = (namespace == Namespace::V2).then_some(V2_API_VERSION);
        self.send_versioned(namespace, method, path, params, idempotency_key, version)
            .await
    }

    /// A v1 call with the `Stripe-Version` that async-stripe's types describe (see
    /// `stripe::typed`): its answer then has every field those types require.
    pub(super) async fn send_typed<K: AsRef<str>, V: AsRef<str>>(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(K, V)],
        idempotency_key: Option<&str>,
        version: &str,
    ) -> Result<Value, StripeError> {
        self.send_versioned(
            Namespace::V1,
            method,
            path,
            params,
            idempotency_key,
            Some(version),
        )
        .await
    }

    async fn send_versioned<K: AsRef<str>, V: AsRef<str>>(
        &self,
        namespace: Namespace,
        method: reqwest::Method,
        path: &str,
        params: &[(K, V)],
        idempotency_key: Option<&str>,
        version: Option<&str>,
    ) -> Result<Value, StripeError> {
        let url = format!(
            "{}{}/{}",
            self.settings.api_base.trim_end_matches('/'),
            namespace.prefix(),
            path.trim_start_matches('/')
        );
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        let endpoint = template_in(namespace.prefix(), path);
        let mut attempt = 1;
        loop {
            self.limiter.acquire().await;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.key.expose());
            request = if method == reqwest::Method::GET {
                request.query(&pairs)
            } else {
                request.form(&pairs)
            };
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(account) = &self.account {
                request = request.header("Stripe-Account", account);
            }
            if let Some(version) = version {
                request = request.header("Stripe-Version", version);
            }
            let started = std::time::Instant::now();
            let (status, outcome) = match request.send().await {
                Ok(response) => (Some(response.status().as_u16()), read(response).await),
                Err(e) => (
                    None,
                    Err(Failure {
                        // reqwest's message names the URL, never the headers that hold the key.
                        error: StripeError::Unreachable(describe_transport_error(&e)),
                        retry: true,
                        retry_after: None,
                    }),
                ),
            };
            record_call(&endpoint, &method, status, started.elapsed());
            let failure = match outcome {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !failure.retry || attempt >= self.settings.max_attempts {
                if let (Some(hook), true) =
                    (&self.on_refused, failure.error.is_refused_credential())
                {
                    hook(&failure.error);
                }
                return Err(failure.error);
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| self.settings.backoff.delay(attempt))
                .min(self.settings.backoff.cap.max(Duration::from_secs(1)) * 4);
            tracing::debug!(
                stripe.path = path,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "retrying a Stripe call"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// One page of a Stripe list.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub data: Vec<Value>,
    pub has_more: bool,
}

impl ListPage {
    /// The id of the page's last item: where the next page starts.
    pub fn last_id(&self) -> Option<String> {
        self.data
            .last()
            .and_then(|item| item["id"].as_str())
            .map(str::to_owned)
    }

    /// Where the next page starts, when there is one.
    pub fn next_after(&self) -> Option<String> {
        self.last_id().filter(|_| self.has_more)
    }
}

async fn read(response: reqwest::Response) -> Result<Value, Failure> {
    let status = response.status().as_u16();
    let should_retry = header_bool(response.headers(), "stripe-should-retry");
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map_err(|e| Failure {
        error: StripeError::Unreachable(describe_transport_error(&e)),
        retry: true,
        retry_after: None,
    })?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|e| Failure {
            error: StripeError::Unreachable(format!("Stripe's answer is not JSON: {e}")),
            retry: false,
            retry_after: None,
        });
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let text = |field: &str| error[field].as_str().map(scrub);
    let error = StripeError::Api {
        status,
        kind: text("type").unwrap_or_else(|| "api_error".to_owned()),
        code: text("code"),
        message: text("message").unwrap_or_else(|| format!("HTTP {status} without a message")),
        param: text("param"),
    };
    // Stripe's header wins; otherwise 429 and 5xx may be retried, other 4xx never (a 409
    // idempotency conflict retried would only conflict again).
    let retry = should_retry.unwrap_or(status == 429 || status >= 500);
    Err(Failure {
        error,
        retry,
        retry_after,
    })
}

/// Counts one attempt and its latency. The status is Stripe's (`error` when none came).
fn record_call(endpoint: &str, method: &reqwest::Method, status: Option<u16>, took: Duration) {
    use crate::telemetry::catalog;
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    metrics::counter!(
        catalog::STRIPE_REQUESTS,
        "endpoint" => endpoint.to_owned(),
        "method" => method.to_string(),
        "status" => status,
    )
    .increment(1);
    metrics::histogram!(
        catalog::STRIPE_REQUEST_DURATION,
        "endpoint" => endpoint.to_owned(),
        "method" => method.to_string(),
    )
    .record(took.as_secs_f64());
}

/// `/v1/invoices/{id}/lines` for `invoices/in_1Nx…/lines`: object ids become `{id}`, so the
/// metric's labels stay few. Stripe's own path words are lower-case letters and `_`; its ids
/// carry digits or capitals (`cus_NffrFeUfNV2Hib`, `in_1Nx…`).
pub fn endpoint_template(path: &str) -> String {
    template_in("/v1", path)
}

fn template_in(prefix: &str, path: &str) -> String {
    let mut template = String::from(prefix);
    for segment in path.trim_matches('/').split('/').filter(|s| !s.is_empty()) {
        template.push('/');
        let is_word = segment.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        template.push_str(if is_word { segment } else { "{id}" });
    }
    template
}

fn header_bool(headers: &HeaderMap, name: &str) -> Option<bool> {
    match headers.get(name)?.to_str().ok()? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `Retry-After` in seconds (Stripe sends seconds, not HTTP dates).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(300.0)))
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "the request timed out"
    } else if error.is_connect() {
        "the connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    };
    // The source chain says why (refused, reset, DNS) without the URL's query.
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({})", scrub(&cause))
    }
}

/// Replaces anything that looks like a Stripe credential with its masked form.
pub fn scrub(text: &str) -> String {
    const PREFIXES: [&str; 4] = ["sk_", "rk_", "pk_", "whsec_"];
    text.split_inclusive(|c: char| c.is_whitespace() || "'\"`,;()".contains(c))
        .map(|word| {
            let core = word.trim_end_matches(|c: char| c.is_whitespace() || "'\"`,;()".contains(c));
            let trimmed = core.trim_start_matches(|c: char| "'\"`(".contains(c));
            if PREFIXES.iter().any(|p| trimmed.starts_with(p)) {
                word.replacen(trimmed, &mask(trimmed), 1)
            } else {
                word.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_every_key_in_a_message() {
        let text = "Invalid API Key provided: sk_test_51HxYzAbCdEfGhIjKlMn4f2a; also 'rk_live_abcdefghijklmnop1234'.";
        let clean = scrub(text);
        assert!(
            !clean.contains("51HxYz") && !clean.contains("abcdefgh"),
            "{clean}"
        );
        assert!(
            clean.contains("sk_test_…4f2a") && clean.contains("rk_live_…1234"),
            "{clean}"
        );
        assert_eq!(
            scrub("No such customer: 'cus_123'"),
            "No such customer: 'cus_123'"
        );
    }

    #[test]
    fn endpoints_are_named_by_template_without_ids() {
        assert_eq!(endpoint_template("account"), "/v1/account");
        assert_eq!(
            endpoint_template("invoices/in_1NxAbC/lines"),
            "/v1/invoices/{id}/lines"
        );
        assert_eq!(
            endpoint_template("/webhook_endpoints/we_123"),
            "/v1/webhook_endpoints/{id}"
        );
        assert_eq!(
            endpoint_template("customers/search"),
            "/v1/customers/search"
        );
        assert_eq!(
            endpoint_template("invoices/in_1Nx/finalize"),
            "/v1/invoices/{id}/finalize"
        );
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
