//! A customer's billing context as the Customers page and the sidebar show it: the same answer as
//! `GET /api/billing-context` (`crate::billing::context`), read into typed rows for the templates.

use serde::Deserialize;

use super::view::When;
use super::WebError;
use crate::domain::Email;
use crate::http::AppState;

/// At most this many emails at once, as the API allows.
pub const MAX_EMAILS: usize = 20;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Method {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub brand: Option<String>,
    pub last4: Option<String>,
}

impl Method {
    pub fn describe(&self) -> String {
        match (&self.brand, &self.last4, &self.kind) {
            (Some(brand), Some(last4), _) => format!("{brand} ····{last4}"),
            (_, _, Some(kind)) => kind.clone(),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Customer {
    pub id: String,
    pub connection_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Deserialize)]
pub struct Attempt {
    pub status: String,
    pub amount_display: String,
    pub failure_code: Option<String>,
    pub decline_code: Option<String>,
    pub failure_message: Option<String>,
    #[serde(default)]
    pub method: Method,
    #[serde(deserialize_with = "when")]
    pub created: Option<When>,
}

#[derive(Debug, Deserialize)]
pub struct DisputeFlag {
    pub status: String,
    pub reason: Option<String>,
    #[serde(deserialize_with = "when")]
    pub evidence_due_by: Option<When>,
}

#[derive(Debug, Deserialize)]
pub struct Payment {
    pub amount_display: String,
    pub status: String,
    pub description: Option<String>,
    pub failure_message: Option<String>,
    #[serde(default)]
    pub method: Method,
    pub refund: Option<String>,
    pub dispute: Option<DisputeFlag>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    #[serde(deserialize_with = "when")]
    pub created: Option<When>,
}

#[derive(Debug, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub status: String,
    pub plan_name: Option<String>,
    pub interval: Option<String>,
    pub interval_count: Option<i64>,
    pub amount_display: Option<String>,
    #[serde(default)]
    pub cancel_at_period_end: bool,
    #[serde(deserialize_with = "when")]
    pub next_invoice_date: Option<When>,
}

#[derive(Debug, Deserialize)]
pub struct Invoice {
    pub id: String,
    pub number: Option<String>,
    pub status: String,
    pub sync: String,
    pub total_display: String,
    pub pay_url: Option<String>,
    pub hosted_invoice_url: Option<String>,
    #[serde(deserialize_with = "when")]
    pub due_date: Option<When>,
}

#[derive(Debug, Deserialize)]
pub struct Refund {
    pub amount_display: String,
    pub reason: Option<String>,
    pub status: String,
    pub full: Option<bool>,
    #[serde(deserialize_with = "when")]
    pub created: Option<When>,
}

#[derive(Debug, Deserialize)]
pub struct Dispute {
    pub amount_display: String,
    pub reason: Option<String>,
    pub status: String,
    #[serde(deserialize_with = "when")]
    pub evidence_due_by: Option<When>,
}

#[derive(Debug, Deserialize)]
pub struct Context {
    pub emails: Vec<String>,
    pub customers: Vec<Customer>,
    pub payments: Vec<Payment>,
    #[serde(default)]
    pub payments_truncated: bool,
    pub subscriptions: Vec<Subscription>,
    pub invoices: Vec<Invoice>,
    pub refunds: Vec<Refund>,
    pub disputes: Vec<Dispute>,
}

impl Context {
    /// Nothing at all is known for these emails.
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty() && self.invoices.is_empty()
    }
}

fn when<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<When>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.and_then(|iso| When::parse(&iso)))
}

/// Splits what a person typed (commas, spaces, semicolons or new lines between addresses) into
/// checked, lower-cased, distinct emails.
pub fn parse_emails<'a>(typed: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut emails = Vec::new();
    for raw in typed
        .into_iter()
        .flat_map(|t| t.split(|c: char| c == ',' || c == ';' || c.is_whitespace()))
        .filter(|t| !t.is_empty())
    {
        let email = Email::parse(raw).map_err(|p| format!("the email {p}"))?;
        if !emails.contains(&email.normalized()) {
            emails.push(email.normalized());
        }
    }
    if emails.len() > MAX_EMAILS {
        return Err(format!("give at most {MAX_EMAILS} emails at once"));
    }
    Ok(emails)
}

/// The context for checked emails, from the ledger.
pub async fn load(state: &AppState, emails: Vec<String>) -> Result<Context, WebError> {
    let answer = crate::billing::context(&state.db, emails, &state.config.public_url).await?;
    serde_json::from_value(answer)
        .map_err(|e| WebError::Internal(format!("the billing context did not read back: {e}")))
}

/// Asks Stripe for these emails' customers first, as `?refresh=true` does in the API.
pub async fn refresh(state: &AppState, emails: &[String]) -> Result<(), WebError> {
    crate::http::billing::refresh_from_stripe(state, emails)
        .await
        .map(|_| ())
        .map_err(|e| WebError::BadRequest(format!("Stripe could not be asked: {}", e.message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_emails_split_check_and_deduplicate() {
        assert_eq!(
            parse_emails(["Pat@Example.com, pat@example.com;\nsam@example.org"]).unwrap(),
            vec!["pat@example.com", "sam@example.org"]
        );
        assert!(parse_emails(["not-an-email"]).is_err());
        assert!(parse_emails([""]).unwrap().is_empty());
    }
}
