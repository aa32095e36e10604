//! async-stripe's typed requests, sent through our transport. Its `StripeClient` trait hands a
//! client the method, the path and the form- or query-encoded parameters, and takes back the raw
//! answer; implementing it over [`StripeClient`] keeps our timeout, retries (`Retry-After`,
//! `Stripe-Should-Retry`, jitter), rate limit, key scrubbing and metrics for typed calls too.
//!
//! Idempotency: a POST sent with `RequestStrategy::Idempotent(key)` carries that key on every
//! attempt; any other POST gets a fresh key of ours (so our retries stay safe), and async-stripe's
//! own retry strategies are ignored: ours apply.
//!
//! Answers: `send` deserializes into async-stripe's types, which fail a whole call when Stripe
//! (or an older API version) omits a field they think required; [`send_tolerant`] sends a typed
//! request and reads the answer as JSON, which is what billmirror does where it maps only a few
//! fields.

use serde_json::Value;
use stripe_client_core::{
    CustomizedStripeRequest, RequestStrategy, StripeClientErr, StripeMethod, StripeRequest,
};

use super::client::{StripeClient, StripeError};
use crate::domain::ids;

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

/// Sends a typed request and reads the answer as JSON. A POST carries `idempotency_key` (or a
/// fresh one of ours when none is given).
pub async fn send_tolerant<R: StripeRequest>(
    client: &StripeClient,
    request: &R,
    idempotency_key: Option<&str>,
) -> Result<Value, StripeError> {
    send_built(client, request.build(), idempotency_key).await
}

/// The form a typed POST request sends, as pairs: for callers that send it through their own
/// idempotent step (`invoices::push` keys each step and replaces the key after a 5xx).
pub fn form_of<R: StripeRequest>(request: &R) -> Vec<(String, String)> {
    let built = request.build();
    built
        .body
        .map(|e| {
            form_urlencoded::parse(e.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn send_built(
    client: &StripeClient,
    request: stripe_client_core::RequestBuilder,
    idempotency_key: Option<&str>,
) -> Result<Value, StripeError> {
    let path = request.path.trim_start_matches('/');
    // async-stripe's paths start with `/v1/`; ours are relative to it.
    let path = path.strip_prefix("v1/").unwrap_or(path);
    let pairs = |encoded: Option<String>| -> Vec<(String, String)> {
        encoded
            .map(|e| {
                form_urlencoded::parse(e.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    match request.method {
        StripeMethod::Get => {
            let query = pairs(request.query);
            let query: Vec<(&str, String)> =
                query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            client.get(path, &query).await
        }
        StripeMethod::Post => {
            let mut form = pairs(request.body);
            form.extend(pairs(request.query));
            match idempotency_key {
                Some(key) => client.post(path, &form, key).await,
                None => client.post(path, &form, &ids::new_id("typed")).await,
            }
        }
        StripeMethod::Delete => {
            let key = idempotency_key.map_or_else(|| ids::new_id("typed"), str::to_owned);
            client.delete(path, &key).await
        }
    }
}
