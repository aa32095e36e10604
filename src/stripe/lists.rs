//! The Stripe lists billmirror mirrors (backfill, catch-up, drift, the billing context's
//! refresh), as async-stripe's typed list requests. Every page is parsed into async-stripe's
//! type (so an answer without a field Stripe documents as always there fails the call, naming
//! the type) and handed on as the JSON Stripe sent: the ledger folds listed objects exactly as it
//! folds webhook payloads, tolerant of fields and versions it does not know.

use serde_json::Value;
use stripe_types::RangeQueryTs;

use super::client::{ListPage, StripeClient, StripeError};
use super::typed;

/// What a list is narrowed to; all `None` lists everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only objects created at or after this Unix time.
    pub created_gte: Option<i64>,
    /// Only this customer's objects (subscriptions, invoices, charges, payment intents).
    pub customer: Option<String>,
    /// Only customers with exactly this email.
    pub email: Option<String>,
}

impl Filter {
    pub fn since(created_gte: Option<i64>) -> Filter {
        Filter {
            created_gte,
            ..Filter::default()
        }
    }

    pub fn customer(customer: &str) -> Filter {
        Filter {
            customer: Some(customer.to_owned()),
            ..Filter::default()
        }
    }

    pub fn email(email: &str) -> Filter {
        Filter {
            email: Some(email.to_owned()),
            ..Filter::default()
        }
    }

    fn created(&self) -> Option<RangeQueryTs> {
        self.created_gte.map(RangeQueryTs::gte)
    }
}

/// Builds the typed request of a list, applying the filters it takes, and sends it for one page.
macro_rules! typed_page {
    ($client:expr, $after:expr, $filter:expr, $request:expr, [$($narrow:ident),*]) => {{
        #[allow(unused_mut)]
        let mut request = $request;
        $(request = typed_page!(@$narrow request, $filter);)*
        typed::page($client, &request, $after)
            .await
            .map(typed::Page::into_list_page)
    }};
    (@created $request:ident, $filter:expr) => {
        match $filter.created() {
            Some(created) => $request.created(created),
            None => $request,
        }
    };
    (@customer $request:ident, $filter:expr) => {
        match &$filter.customer {
            Some(customer) => $request.customer(customer.as_str()),
            None => $request,
        }
    };
    (@email $request:ident, $filter:expr) => {
        match &$filter.email {
            Some(email) => $request.email(email.as_str()),
            None => $request,
        }
    };
}

/// One page (up to 100 objects) of `resource` (`customers`, `invoices`, `events`, …), after the
/// object `after`.
pub async fn page(
    client: &StripeClient,
    resource: &str,
    filter: &Filter,
    after: Option<&str>,
) -> Result<ListPage, StripeError> {
    use stripe_billing::invoice::ListInvoice;
    use stripe_billing::subscription::{ListSubscription, ListSubscriptionStatus};
    use stripe_core::charge::ListCharge;
    use stripe_core::customer::ListCustomer;
    use stripe_core::dispute::ListDispute;
    use stripe_core::event::ListEvent;
    use stripe_core::payment_intent::ListPaymentIntent;
    use stripe_core::refund::ListRefund;
    use stripe_product::price::ListPrice;
    use stripe_product::product::ListProduct;

    let f = filter;
    match resource {
        "customers" => typed_page!(client, after, f, ListCustomer::new(), [created, email]),
        "products" => typed_page!(client, after, f, ListProduct::new(), [created]),
        "prices" => typed_page!(client, after, f, ListPrice::new(), [created]),
        // Without `status=all` Stripe lists only subscriptions that have not been canceled.
        "subscriptions" => typed_page!(
            client,
            after,
            f,
            ListSubscription::new().status(ListSubscriptionStatus::All),
            [created, customer]
        ),
        "invoices" => typed_page!(client, after, f, ListInvoice::new(), [created, customer]),
        "charges" => typed_page!(client, after, f, ListCharge::new(), [created, customer]),
        "payment_intents" => {
            typed_page!(
                client,
                after,
                f,
                ListPaymentIntent::new(),
                [created, customer]
            )
        }
        "refunds" => typed_page!(client, after, f, ListRefund::new(), [created]),
        "disputes" => typed_page!(client, after, f, ListDispute::new(), [created]),
        "events" => typed_page!(client, after, f, ListEvent::new(), [created]),
        other => Err(StripeError::Unreachable(format!(
            "billmirror does not list `{other}` from Stripe"
        ))),
    }
}

/// Every object of `resource` that `filter` lets through, page after page.
pub async fn all(
    client: &StripeClient,
    resource: &str,
    filter: &Filter,
) -> Result<Vec<Value>, StripeError> {
    let mut objects = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = page(client, resource, filter, after.as_deref()).await?;
        after = page.next_after();
        objects.extend(page.data);
        if after.is_none() {
            return Ok(objects);
        }
    }
}

/// Every line of an invoice (`GET /v1/invoices/{id}/lines`), as Stripe sent them.
pub async fn invoice_lines(
    client: &StripeClient,
    invoice_id: &str,
) -> Result<Vec<Value>, StripeError> {
    let request = stripe_billing::invoice_line_item::ListInvoiceInvoiceLineItem::new(invoice_id);
    Ok(typed::list_all(client, &request).await?.raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_list_billmirror_does_not_mirror_is_refused_before_any_call() {
        // An address nothing listens on: the refusal must come before any request.
        let client = StripeClient::new(
            crate::domain::Secret::new("sk_test_unused"),
            crate::stripe::ClientSettings {
                api_base: "http://127.0.0.1:9".into(),
                timeout: std::time::Duration::from_millis(50),
                max_attempts: 1,
                backoff: crate::domain::backoff::Backoff {
                    base: std::time::Duration::from_millis(1),
                    cap: std::time::Duration::from_millis(1),
                    jitter: false,
                },
                requests_per_second: 100.0,
            },
        )
        .unwrap();
        let error = page(&client, "payouts", &Filter::default(), None)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("does not list `payouts`"), "{error}");
    }
}
