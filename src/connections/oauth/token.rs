//! Stripe's answers at its OAuth token endpoints, read into types: a grant (the tokens and whose
//! account they open), or the reason it was refused.

use serde_json::Value;

use crate::domain::Secret;

/// Access tokens of Stripe Apps last an hour; Stripe's answer does not always say so.
pub const DEFAULT_ACCESS_LIFETIME_SECS: i64 = 3600;

/// What an authorisation code or a refresh token was exchanged for.
#[derive(Debug)]
pub struct Grant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub stripe_user_id: String,
    pub publishable_key: Option<String>,
    pub scope: Option<String>,
    pub livemode: bool,
    /// Seconds the access token lives.
    pub expires_in: i64,
}

/// Why Stripe refused an exchange, as the callback's `oauth_error` codes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The code (or refresh token) is unknown, expired, used already, or of another platform.
    InvalidGrant,
    /// The client id or the key does not belong to this platform or app.
    InvalidClient,
    /// Anything else Stripe refused (`invalid_request`, `invalid_scope`…).
    Other,
}

/// Reads a 2xx token answer. `None` when a field billmirror needs is missing.
pub fn parse_grant(body: &Value) -> Option<Grant> {
    let text = |name: &str| {
        body[name]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Some(Grant {
        access_token: Secret::new(text("access_token")?),
        refresh_token: text("refresh_token").map(Secret::new),
        stripe_user_id: text("stripe_user_id").filter(|id| id.starts_with("acct_"))?,
        publishable_key: text("stripe_publishable_key"),
        scope: text("scope"),
        livemode: body["livemode"].as_bool()?,
        expires_in: body["expires_in"]
            .as_i64()
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_ACCESS_LIFETIME_SECS),
    })
}

/// Reads an error answer: Connect's `{"error": "invalid_grant", "error_description": …}` or the
/// API's `{"error": {"code": …, "type": …}}`; a 401 without either is a refused client.
pub fn parse_refusal(status: u16, body: &Value) -> Refused {
    let code = body["error"]
        .as_str()
        .or_else(|| body["error"]["code"].as_str())
        .or_else(|| body["error"]["type"].as_str());
    match code {
        Some("invalid_grant") => Refused::InvalidGrant,
        Some("invalid_client") => Refused::InvalidClient,
        None if status == 401 => Refused::InvalidClient,
        _ => Refused::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_connect_grant_reads_its_account_mode_and_tokens() {
        let grant = parse_grant(&json!({
            "access_token": "sk_test_abc", "refresh_token": "rt_abc", "token_type": "bearer",
            "stripe_user_id": "acct_1", "stripe_publishable_key": "pk_test_1",
            "scope": "read_only", "livemode": false,
        }))
        .unwrap();
        assert_eq!(grant.stripe_user_id, "acct_1");
        assert_eq!(grant.access_token.expose(), "sk_test_abc");
        assert_eq!(grant.refresh_token.unwrap().expose(), "rt_abc");
        assert!(!grant.livemode);
        assert_eq!(grant.expires_in, DEFAULT_ACCESS_LIFETIME_SECS);
        assert_eq!(grant.scope.as_deref(), Some("read_only"));
    }

    #[test]
    fn a_grant_without_account_token_or_mode_is_not_a_grant() {
        assert!(parse_grant(&json!({"access_token": "x", "livemode": true})).is_none());
        assert!(parse_grant(&json!({"stripe_user_id": "acct_1", "livemode": true})).is_none());
        assert!(parse_grant(&json!({"access_token": "x", "stripe_user_id": "acct_1"})).is_none());
        assert!(parse_grant(
            &json!({"access_token": "x", "stripe_user_id": "cus_1", "livemode": true})
        )
        .is_none());
    }

    #[test]
    fn refusals_read_from_either_error_shape() {
        assert_eq!(
            parse_refusal(400, &json!({"error": "invalid_grant"})),
            Refused::InvalidGrant
        );
        assert_eq!(
            parse_refusal(
                400,
                &json!({"error": {"code": "invalid_grant", "type": "invalid_request_error"}})
            ),
            Refused::InvalidGrant
        );
        assert_eq!(
            parse_refusal(401, &json!({"error": "invalid_client"})),
            Refused::InvalidClient
        );
        assert_eq!(parse_refusal(401, &json!(null)), Refused::InvalidClient);
        assert_eq!(
            parse_refusal(400, &json!({"error": "invalid_scope"})),
            Refused::Other
        );
    }
}
