//! async-stripe's typed requests and responses, sent through our transport. Its `StripeClient`
//! trait hands a client the method, the path and the form- or query-encoded parameters, and
//! takes back the raw answer; implementing it over [`StripeClient`] keeps our timeout, retries
//! (`Retry-After`, `Stripe-Should-Retry`, jitter), rate limit, key scrubbing and metrics for
//! typed calls too. The helpers below ([`send`], [`send_raw`], [`page`], [`list_all`],
//! [`search_all`]) do the same without async-stripe's own `send`, so that a call can carry one
//! of our idempotency keys and so that a failed parse names the type and the call.
//!
//! Idempotency: a POST sent with a key carries that key on every attempt; any other POST gets a
//! fresh key of ours (so our retries stay safe). async-stripe's own retry strategies are
//! ignored: ours apply.
//!
//! Versions: every typed call sends `Stripe-Version` [`API_VERSION`], the version async-stripe's
//! types were generated from, so Stripe answers with every field those types require (an
//! account's default version may be years older, and older objects lack fields the types cannot
//! do without). Webhooks and the Events API are not affected: events keep the version they were
//! made in, which is why event payloads stay `serde_json::Value` (see `webhook::Envelope`).
//!
//! Tolerance: an enum value Stripe adds later (a new invoice status, currency or event type)
//! parses as that enum's `Unknown(String)` variant, and fields the types do not know are
//! skipped; a required field missing fails the call with a message naming the type. Answers
//! that go to the ledger ([`send_raw`], [`page`]) are parsed typed and kept as the JSON Stripe
//! sent, because the ledger folds JSON exactly as it folds webhook payloads.

use std::any::type_name;

use serde_json::Value;
use stripe_client_core::{
    CustomizedStripeRequest, RequestBuilder, RequestStrategy, StripeClientErr, StripeMethod,
    StripeRequest,
};
use stripe_types::{AsCursorOpt, List, Object, SearchList};

use super::client::{endpoint_template, ListPage, StripeClient, StripeError};
use crate::domain::ids;

/// The Stripe API version async-stripe's types describe (`stripe_client_core::VERSION`), sent
/// with every typed call.
pub const API_VERSION: &str = "2026-09-30.endive";

impl StripeClientErr for StripeError {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        StripeError::Unreachable(format!("Stripe's answer could not be read: {msg}"))
    }
}

impl stripe_client_core::StripeClient for StripeClient {
    type Err = StripeError;

    async fn execute(&self, req: CustomizedStripeRequest) -> Result<bytes::Bytes, StripeError> {
        let (request, config) = req.into_pieces();
        if config.account_id.is_some() {
            // billmirror holds each account's own key; acting for another account is not a thing
            // it does, and silently dropping the header would act on the wrong account.
            return Err(StripeError::Unreachable(
                "a typed request asked for another account (Stripe-Account), which billmirror does \
                 not send"
                    .into(),
            ));
        }
        let key = match config.request_strategy {
            Some(RequestStrategy::Idempotent(key)) => Some(key.as_str().to_owned()),
            _ => None,
        };
        let answer = send_built(self, request, key.as_deref()).await?;
        serde_json::to_vec(&answer)
            .map(bytes::Bytes::from)
            .map_err(|e| StripeError::Unreachable(e.to_string()))
    }
}

/// Sends a typed request and parses the answer into async-stripe's type. A POST carries
/// `idempotency_key` (or a fresh one of ours when none is given).
pub async fn send<R>(
    client: &StripeClient,
    request: &R,
    idempotency_key: Option<&str>,
) -> Result<R::Output, StripeError>
where
    R: StripeRequest,
    R::Output: miniserde::Deserialize,
{
    Ok(send_raw(client, request, idempotency_key).await?.0)
}

/// [`send`], also returning the answer as the JSON Stripe sent: for answers the ledger keeps.
pub async fn send_raw<R>(
    client: &StripeClient,
    request: &R,
    idempotency_key: Option<&str>,
) -> Result<(R::Output, Value), StripeError>
where
    R: StripeRequest,
    R::Output: miniserde::Deserialize,
{
    let built = request.build();
    let call = describe(&built);
    let answer = send_built(client, built, idempotency_key).await?;
    Ok((parse(&answer, &call)?, answer))
}

/// One page of a typed list request: at most 100 items (Stripe's most), after the item `after`.
pub async fn page<R, T>(
    client: &StripeClient,
    request: &R,
    after: Option<&str>,
) -> Result<Page<T>, StripeError>
where
    R: StripeRequest<Output = List<T>>,
    List<T>: miniserde::Deserialize,
    T: Object,
{
    let mut built = request.build();
    let mut extra = vec![("limit", "100")];
    if let Some(after) = after {
        extra.push(("starting_after", after));
    }
    add_query(&mut built, &extra);
    let call = describe(&built);
    let mut answer = send_built(client, built, None).await?;
    let list: List<T> = parse(&answer, &call)?;
    let raw = match answer["data"].take() {
        Value::Array(raw) => raw,
        _ => Vec::new(),
    };
    Ok(Page {
        items: list.data,
        raw,
        has_more: list.has_more,
    })
}

/// Every item of a typed list request, page after page.
pub async fn list_all<R, T>(client: &StripeClient, request: &R) -> Result<Page<T>, StripeError>
where
    R: StripeRequest<Output = List<T>>,
    List<T>: miniserde::Deserialize,
    T: Object,
{
    let mut all = page(client, request, None).await?;
    while let Some(after) = all.next_after() {
        let next = page(client, request, Some(&after)).await?;
        all.items.extend(next.items);
        all.raw.extend(next.raw);
        all.has_more = next.has_more;
    }
    Ok(all)
}

/// Every result of a typed search request, following its `next_page` token.
pub async fn search_all<R, T>(client: &StripeClient, request: &R) -> Result<Vec<T>, StripeError>
where
    R: StripeRequest<Output = SearchList<T>>,
    SearchList<T>: miniserde::Deserialize,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut built = request.build();
        let mut extra = vec![("limit", "100")];
        if let Some(token) = &token {
            extra.push(("page", token.as_str()));
        }
        add_query(&mut built, &extra);
        let call = describe(&built);
        let answer = send_built(client, built, None).await?;
        let found: SearchList<T> = parse(&answer, &call)?;
        items.extend(found.data);
        token = found.next_page.filter(|_| found.has_more);
        if token.is_none() {
            return Ok(items);
        }
    }
}

/// A page of typed items, with the same items as Stripe sent them.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `items` as JSON, in the same order.
    pub raw: Vec<Value>,
    pub has_more: bool,
}

impl<T: Object> Page<T> {
    /// Where the next page starts, when there is one: the id of this page's last item.
    pub fn next_after(&self) -> Option<String> {
        if !self.has_more {
            return None;
        }
        self.items
            .last()
            .and_then(|item| item.id().as_cursor_opt())
            .map(str::to_owned)
    }

    /// The page as the untyped pager's: the JSON items for the ledger.
    pub fn into_list_page(self) -> ListPage {
        ListPage {
            has_more: self.next_after().is_some(),
            data: self.raw,
        }
    }
}

/// The form a typed POST request sends, as pairs: for callers that send it through their own
/// idempotent step (`invoices::push` keys each step and replaces the key after a 5xx).
pub fn form_of<R: StripeRequest>(request: &R) -> Vec<(String, String)> {
    pairs(request.build().body)
}

/// Parses a JSON answer into async-stripe's type; a failure names the type and the call.
pub fn parse<T: miniserde::Deserialize>(answer: &Value, call: &str) -> Result<T, StripeError> {
    miniserde::json::from_str(&answer.to_string()).map_err(|_| {
        let name = type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or_default()
            .trim_end_matches('>');
        StripeError::Unreachable(format!(
            "Stripe's answer to {call} does not have the shape of async-stripe's {name} (a field \
             it requires is missing or of another type; typed calls ask for API version \
             {API_VERSION})"
        ))
    })
}

/// `GET /v1/invoices/{id}`: the call, for messages (ids left out, as in the metrics).
fn describe(request: &RequestBuilder) -> String {
    let method = match request.method {
        StripeMethod::Get => "GET",
        StripeMethod::Post => "POST",
        StripeMethod::Delete => "DELETE",
    };
    format!("{method} {}", endpoint_template(relative(&request.path)))
}

/// async-stripe's paths start with `/v1/`; ours are relative to it.
fn relative(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    path.strip_prefix("v1/").unwrap_or(path)
}

fn add_query(request: &mut RequestBuilder, extra: &[(&str, &str)]) {
    let mut query = request.query.take().unwrap_or_default();
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    encoded.extend_pairs(extra);
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&encoded.finish());
    request.query = Some(query);
}

fn pairs(encoded: Option<String>) -> Vec<(String, String)> {
    encoded
        .map(|e| {
            form_urlencoded::parse(e.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn send_built(
    client: &StripeClient,
    request: RequestBuilder,
    idempotency_key: Option<&str>,
) -> Result<Value, StripeError> {
    let path = relative(&request.path);
    match request.method {
        StripeMethod::Get => {
            let query = pairs(request.query);
            client
                .send_typed(reqwest::Method::GET, path, &query, None, API_VERSION)
                .await
        }
        StripeMethod::Post => {
            let mut form = pairs(request.body);
            form.extend(pairs(request.query));
            let key = idempotency_key.map_or_else(|| ids::new_id("typed"), str::to_owned);
            client
                .send_typed(reqwest::Method::POST, path, &form, Some(&key), API_VERSION)
                .await
        }
        StripeMethod::Delete => {
            let key = idempotency_key.map_or_else(|| ids::new_id("typed"), str::to_owned);
            client
                .send_typed(
                    reqwest::Method::DELETE,
                    path,
                    &[] as &[(String, String)],
                    Some(&key),
                    API_VERSION,
                )
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_sent_is_the_one_the_types_describe() {
        assert_eq!(API_VERSION, stripe_client_core::VERSION.as_str());
    }

    #[test]
    fn a_status_stripe_adds_later_parses_as_unknown() {
        let status: stripe_shared::InvoiceStatus =
            parse(&serde_json::json!("in_review"), "GET /v1/invoices/{id}").unwrap();
        assert_eq!(status.as_str(), "in_review");
        assert!(matches!(
            status,
            stripe_shared::InvoiceStatus::Unknown(ref v) if v == "in_review"
        ));
    }

    #[test]
    fn a_missing_required_field_names_the_type_and_the_call() {
        let error = parse::<stripe_shared::Customer>(
            &serde_json::json!({"id": "cus_1", "object": "customer"}),
            "GET /v1/customers/{id}",
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(error.contains("GET /v1/customers/{id}"), "{error}");
        assert!(error.contains("async-stripe's Customer"), "{error}");
    }

    #[test]
    fn list_pages_ask_for_100_after_the_cursor() {
        let mut built = stripe_core::customer::ListCustomer::new()
            .email("a@example.com")
            .build();
        add_query(&mut built, &[("limit", "100"), ("starting_after", "cus_9")]);
        let query = pairs(built.query);
        assert!(query.contains(&("email".into(), "a@example.com".into())));
        assert!(query.contains(&("limit".into(), "100".into())));
        assert!(query.contains(&("starting_after".into(), "cus_9".into())));
    }
}
