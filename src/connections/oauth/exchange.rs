//! The calls to Stripe's OAuth endpoints: exchanging a code or a refresh token for tokens, and
//! deauthorising an account. Each is sent once (a code is single-use, and a rolling refresh token
//! is spent by the first attempt Stripe receives): a lost answer is `Unreachable`, never retried.
//! Authenticated with HTTP Basic, the platform's or app's secret key as the user name, as
//! Stripe's examples do (`curl -u sk_…:`).

use serde_json::Value;

use super::token::{self, Grant, Refused};
use crate::domain::Secret;

#[derive(Debug)]
pub enum ExchangeError {
    Refused(Refused),
    /// No answer, or not Stripe's: nothing is known to have happened.
    Unreachable(String),
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    key: &Secret,
    form: &[(&str, &str)],
) -> Result<Value, ExchangeError> {
    let answer = http
        .post(url)
        .basic_auth(key.expose(), Some(""))
        .form(form)
        .send()
        .await
        // reqwest's message names the URL, never the Authorization header.
        .map_err(|e| ExchangeError::Unreachable(e.without_url().to_string()))?;
    let status = answer.status().as_u16();
    let body: Value = answer
        .json()
        .await
        .map_err(|_| ExchangeError::Unreachable(format!("HTTP {status} without JSON")))?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    if status >= 500 || status == 429 {
        return Err(ExchangeError::Unreachable(format!("HTTP {status}")));
    }
    Err(ExchangeError::Refused(token::parse_refusal(status, &body)))
}

/// `grant_type=authorization_code` or `refresh_token` at `url`.
pub async fn tokens(
    http: &reqwest::Client,
    url: &str,
    key: &Secret,
    grant: &[(&str, &str)],
) -> Result<Grant, ExchangeError> {
    let body = post(http, url, key, grant).await?;
    token::parse_grant(&body).ok_or_else(|| {
        ExchangeError::Unreachable("Stripe's token answer lacks a field billmirror needs".into())
    })
}

/// `POST {connect_base}/oauth/deauthorize`: the platform lets go of the account.
pub async fn deauthorize(
    http: &reqwest::Client,
    connect_base: &str,
    key: &Secret,
    client_id: &str,
    account: &str,
) -> Result<(), ExchangeError> {
    let url = format!("{}/oauth/deauthorize", connect_base.trim_end_matches('/'));
    post(
        http,
        &url,
        key,
        &[("client_id", client_id), ("stripe_user_id", account)],
    )
    .await
    .map(|_| ())
}
