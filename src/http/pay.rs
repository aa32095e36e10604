//! `GET /pay/{token}`: the Pay Now link. An open or past-due invoice redirects (303) to Stripe's
//! hosted invoice page, which takes the payment; otherwise a small page says why it cannot be
//! paid now. The token is 128 random bits, and the page shows nothing else about the invoice.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::domain::states::InvoiceStatus;
use crate::storage::invoices as store;

fn page(status: actix_web::http::StatusCode, title: &str, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Robots-Tag", "noindex"))
        .body(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title></head><body style=\"font-family: system-ui, sans-serif; \
             max-width: 32rem; margin: 4rem auto; padding: 0 1rem\"><h1>{title}</h1><p>{text}</p>\
             </body></html>"
        ))
}

/// The Pay Now link: open invoices redirect to Stripe's hosted page; otherwise a small page says
/// why it cannot be paid now.
#[utoipa::path(get, path = "/pay/{token}",
    params(("token" = String, Path, description = "The invoice's pay token (32 hex digits), from its `pay_url`.")),
    responses(
        (status = 303, description = "An open or past-due invoice: `Location` is Stripe's hosted invoice page."),
        (status = 200, description = "A page: already paid, cancelled, uncollectible or being prepared (then with `Retry-After`).", body = String, content_type = "text/html"),
        (status = 404, description = "A page: the link is not valid.", body = String, content_type = "text/html"),
        (status = 503, description = "A page: the database cannot be reached.", body = String, content_type = "text/html"),
    ))]
pub async fn pay(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let token = token.into_inner();
    // Tokens are 32 hex characters; anything else is not looked up at all.
    if token.len() != 32 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return page(
            StatusCode::NOT_FOUND,
            "No invoice here",
            "This payment link is not valid. Check that you copied all of it.",
        );
    }
    let found = state
        .db
        .run(move |conn| store::find_by_pay_token(conn, &token))
        .await;
    let invoice = match found {
        Ok(Some(invoice)) => invoice,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No invoice here",
                "This payment link is not valid. Check that you copied all of it.",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "the Pay Now page cannot read the database");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "We cannot show this invoice right now. Please try again in a few minutes.",
            );
        }
    };
    match (invoice.status, invoice.hosted_invoice_url.as_deref()) {
        (InvoiceStatus::Open | InvoiceStatus::PastDue, Some(url)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, url))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(("Referrer-Policy", "no-referrer"))
            .finish(),
        (InvoiceStatus::Paid, _) => page(
            StatusCode::OK,
            "Already paid",
            "This invoice has been paid. Thank you.",
        ),
        (InvoiceStatus::Void | InvoiceStatus::Deleted, _) => page(
            StatusCode::OK,
            "No longer payable",
            "This invoice was cancelled and does not need to be paid.",
        ),
        (InvoiceStatus::Uncollectible, _) => page(
            StatusCode::OK,
            "Please contact us",
            "This invoice cannot be paid online. Please contact the sender.",
        ),
        _ => {
            let mut response = page(
                StatusCode::OK,
                "Being prepared",
                "This invoice is being prepared. Please try again in a moment.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
    }
}
