//! Security headers on every answer: no MIME sniffing, no referrer beyond our origin, and on HTML
//! pages a Content-Security-Policy that allows only our own script and stylesheet (no inline
//! script anywhere) and no framing, except `/sidebar`, which a helpdesk frames.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;

const BASE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'";

/// The whole policy, with who may frame the page.
pub fn policy(frame_ancestors: &str) -> String {
    format!("{BASE_POLICY}; frame-ancestors {frame_ancestors}")
}

/// Checks `SIDEBAR_FRAME_ANCESTORS`: CSP source expressions separated by spaces (`'none'`,
/// `'self'`, or origins like `https://desk.example.com` and `https://*.example.com`). Anything
/// that could end the directive (`;`, `,`, quotes elsewhere) is refused.
pub fn frame_ancestors(value: &str) -> Result<String, String> {
    let sources: Vec<&str> = value.split_whitespace().collect();
    if sources.is_empty() {
        return Err("is empty: use 'none' or one or more origins".into());
    }
    for source in &sources {
        let keyword = matches!(*source, "'none'" | "'self'");
        let origin = (source.starts_with("https://") || source.starts_with("http://"))
            && source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:/*".contains(c));
        if !keyword && !origin {
            return Err(format!(
                "has `{source}`, which is not 'none', 'self' or an http(s):// origin"
            ));
        }
    }
    if sources.len() > 1 && sources.contains(&"'none'") {
        return Err("mixes 'none' with other sources".into());
    }
    Ok(sources.join(" "))
}

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    // A page that chose its own policy (the sidebar) keeps it.
    if is_html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(value) = HeaderValue::from_str(&policy("'none'")) {
            headers.insert(header::CONTENT_SECURITY_POLICY, value);
        }
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if is_html {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ancestors_takes_origins_and_keywords_only() {
        assert_eq!(frame_ancestors("'none'").unwrap(), "'none'");
        assert_eq!(
            frame_ancestors(" https://app.chatwoot.com   https://*.example.com ").unwrap(),
            "https://app.chatwoot.com https://*.example.com"
        );
        assert!(frame_ancestors("https://x.com; script-src *").is_err());
        assert!(frame_ancestors("*").is_err());
        assert!(frame_ancestors("'none' https://x.com").is_err());
        assert!(frame_ancestors("").is_err());
    }

    #[test]
    fn the_policy_allows_no_inline_script() {
        let p = policy("'none'");
        assert!(p.contains("script-src 'self';") && !p.contains("unsafe-inline"));
        assert!(p.ends_with("frame-ancestors 'none'"));
    }
}
