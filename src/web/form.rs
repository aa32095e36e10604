//! Posted forms: the body's pairs in order (a name may repeat, as invoice lines do), read only
//! after the session's CSRF token matched. Every POST handler takes [`Posted`], so no form can
//! skip the check.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::error::WebError;
use crate::people::sessions::Staff;

/// Largest form body accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub const CSRF_FIELD: &str = "csrf_token";

#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form {
            pairs: form_urlencoded::parse(body).into_owned().collect(),
        }
    }

    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first value of `name` exactly as posted, untrimmed (pasted keys: stray spaces are for
    /// the key report to find, not for us to hide); `None` when absent or empty.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`, in order, blanks included (so repeated fields stay aligned).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .collect()
    }

    pub fn required(&self, name: &str, label: &str) -> Result<&str, WebError> {
        self.get(name)
            .ok_or_else(|| WebError::BadRequest(format!("{label} is required.")))
    }
}

/// Equal in constant time, and never equal when empty.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A form posted by a signed-in person with their session's CSRF token.
pub struct Posted {
    pub staff: Staff,
    pub form: Form,
}

impl FromRequest for Posted {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<Posted, WebError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let staff = Staff::from_request(&req, &mut Payload::None).await?;
            let body = body
                .await
                .map_err(|e| WebError::BadRequest(format!("The form could not be read: {e}")))?;
            if body.len() > MAX_FORM_BYTES {
                return Err(WebError::BadRequest("The form is too large.".into()));
            }
            let form = Form::parse(&body);
            if !tokens_match(form.get(CSRF_FIELD).unwrap_or(""), &staff.csrf_token) {
                tracing::warn!(user = %staff.email, path = %req.path(), "refused a form without a valid CSRF token");
                return Err(WebError::Csrf);
            }
            Ok(Posted { staff, form })
        })
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Every value of query parameter `name`, in order (`email=a&email=b`).
pub fn query_values(req: &HttpRequest, name: &str) -> Vec<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The first value of query parameter `name`, trimmed; empty when absent (a list filter).
pub fn query_first(req: &HttpRequest, name: &str) -> String {
    query_values(req, name)
        .into_iter()
        .next()
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_repeated_fields_in_order() {
        let form = Form::parse(b"a=1&line=x&line=&line=y+z&csrf_token=t%26");
        assert_eq!(form.all("line"), vec!["x", "", "y z"]);
        assert_eq!(form.get("a"), Some("1"));
        assert_eq!(form.get("missing"), None);
        assert_eq!(form.get(CSRF_FIELD), Some("t&"));
    }

    #[test]
    fn csrf_tokens_match_exactly_and_never_when_empty() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("", ""));
        assert!(!tokens_match("ab", "abc"));
    }
}
