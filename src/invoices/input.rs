//! `POST /api/invoices` bodies parsed into a `NewInvoice` that cannot hold a bad value. Every
//! refusal names its field (`lines[2].unit_amount`) and says what would be accepted. Pure: the
//! caller supplies today's date.

use chrono::NaiveDate;
use serde_json::{Map, Value};

use crate::domain::money::{display, MAX_AMOUNT};
use crate::domain::{Currency, Email};

#[derive(Debug, Clone, PartialEq)]
pub struct NewInvoice {
    pub connection_id: Option<String>,
    pub email: Email,
    pub name: Option<String>,
    pub currency: Currency,
    pub lines: Vec<NewLine>,
    pub due: Due,
    pub memo: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewLine {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    /// `quantity × unit_amount`, checked against Stripe's limit.
    pub amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    DaysAfterFinalizing(u32),
    On(NaiveDate),
}

impl NewInvoice {
    pub fn total(&self) -> i64 {
        self.lines.iter().map(|l| l.amount).sum()
    }
}

/// A refusal: a stable code, the field, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

fn refuse(code: &'static str, field: impl Into<String>, problem: impl AsRef<str>) -> InputError {
    let field = field.into();
    InputError {
        message: format!("{field} {}", problem.as_ref()),
        code,
        field,
    }
}

const MAX_LINES: usize = 250;
const FIELDS: [&str; 7] = [
    "connection_id",
    "customer",
    "currency",
    "lines",
    "days_until_due",
    "due_date",
    "memo",
];

pub fn parse(body: &Value, today: NaiveDate) -> Result<NewInvoice, InputError> {
    let body = body
        .as_object()
        .ok_or_else(|| refuse("invalid_input", "the body", "must be a JSON object."))?;
    no_unknown_fields(body, &FIELDS, "")?;

    let customer = body
        .get("customer")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            refuse(
                "invalid_input",
                "customer",
                "is required: {\"email\": …, \"name\"?: …}.",
            )
        })?;
    no_unknown_fields(customer, &["email", "name"], "customer.")?;
    let email = text(customer, "email", "customer.email")?
        .ok_or_else(|| refuse("invalid_email", "customer.email", "is required."))?;
    let email = Email::parse(&email)
        .map_err(|p| refuse("invalid_email", "customer.email", format!("{p}.")))?;
    let name = bounded_text(customer, "name", "customer.name", 256)?;

    let code = text(body, "currency", "currency")?.ok_or_else(|| {
        refuse(
            "invalid_currency",
            "currency",
            "is required (an ISO 4217 code such as usd).",
        )
    })?;
    let currency = Currency::parse(&code).ok_or_else(|| {
        refuse(
            "invalid_currency",
            "currency",
            format!("`{code}` is not a currency Stripe charges in; use an ISO 4217 code such as usd, eur or jpy."),
        )
    })?;

    let lines = lines(body, currency)?;
    let total = lines
        .iter()
        .try_fold(0i64, |sum, l| sum.checked_add(l.amount))
        .filter(|t| *t <= MAX_AMOUNT)
        .ok_or_else(|| {
            refuse(
                "total_too_large",
                "lines",
                format!(
                    "add up to more than Stripe's limit for one invoice ({}): split it into several invoices.",
                    display(MAX_AMOUNT, currency.code())
                ),
            )
        })?;
    debug_assert!(total > 0);

    let due = due(body, today)?;
    let memo = bounded_text(body, "memo", "memo", 5000)?;
    let connection_id = text(body, "connection_id", "connection_id")?;
    Ok(NewInvoice {
        connection_id,
        email,
        name,
        currency,
        lines,
        due,
        memo,
    })
}

fn no_unknown_fields(
    object: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
) -> Result<(), InputError> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(refuse(
            "invalid_input",
            format!("{prefix}{unknown}"),
            format!("is not a field here; the fields are {}.", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn text(object: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>, InputError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(refuse("invalid_input", field, "must be a string.")),
    }
}

fn bounded_text(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
    max: usize,
) -> Result<Option<String>, InputError> {
    let value = text(object, key, field)?;
    if value.as_ref().is_some_and(|v| v.chars().count() > max) {
        return Err(refuse(
            "invalid_input",
            field,
            format!("is longer than {max} characters."),
        ));
    }
    Ok(value)
}

/// A whole, positive number of minor units (or items), at most `max`.
fn count(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
    max: i64,
    unit: &str,
) -> Result<i64, InputError> {
    let value = object
        .get(key)
        .ok_or_else(|| refuse("invalid_amount", field, "is required."))?;
    let Some(n) = value.as_i64() else {
        let problem = if value.is_f64() || value.is_u64() {
            format!("must be a whole number of {unit}, not {value}.")
        } else {
            format!("must be a number of {unit}.")
        };
        return Err(refuse("invalid_amount", field, problem));
    };
    if n < 1 {
        return Err(refuse(
            "invalid_amount",
            field,
            format!("must be at least 1, not {n}."),
        ));
    }
    if n > max {
        return Err(refuse(
            "amount_too_large",
            field,
            format!("must be at most {max}, not {n}."),
        ));
    }
    Ok(n)
}

fn lines(body: &Map<String, Value>, currency: Currency) -> Result<Vec<NewLine>, InputError> {
    let items = match body.get("lines") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(refuse(
                "no_lines",
                "lines",
                "is required: at least one line.",
            ))
        }
        Some(_) => return Err(refuse("invalid_input", "lines", "must be a list.")),
    };
    if items.is_empty() {
        return Err(refuse(
            "no_lines",
            "lines",
            "is empty: an invoice needs at least one line.",
        ));
    }
    if items.len() > MAX_LINES {
        return Err(refuse(
            "invalid_input",
            "lines",
            format!(
                "has {} lines; Stripe takes at most {MAX_LINES}.",
                items.len()
            ),
        ));
    }
    let unit = if currency.exponent() == 0 {
        format!("{} (it has no minor unit)", currency.code().to_uppercase())
    } else {
        "minor units (cents)".to_owned()
    };
    items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let at = format!("lines[{n}]");
            let item = item
                .as_object()
                .ok_or_else(|| refuse("invalid_input", at.clone(), "must be an object."))?;
            no_unknown_fields(item, &["description", "quantity", "unit_amount"], &format!("{at}."))?;
            let description = bounded_text(item, "description", &format!("{at}.description"), 500)?
                .ok_or_else(|| refuse("invalid_input", format!("{at}.description"), "is required."))?;
            let quantity = count(item, "quantity", &format!("{at}.quantity"), 1_000_000, "items")?;
            let unit_amount = count(item, "unit_amount", &format!("{at}.unit_amount"), MAX_AMOUNT, &unit)?;
            if !currency.accepts_minor(unit_amount) {
                return Err(refuse(
                    "invalid_amount",
                    format!("{at}.unit_amount"),
                    format!("must end in 0 in {}: Stripe rounds three-decimal currencies to ten minor units.", currency.code().to_uppercase()),
                ));
            }
            let amount = quantity
                .checked_mul(unit_amount)
                .filter(|a| *a <= MAX_AMOUNT)
                .ok_or_else(|| {
                    refuse(
                        "amount_too_large",
                        at.clone(),
                        format!(
                            "comes to more than Stripe's limit ({}): {quantity} × {}.",
                            display(MAX_AMOUNT, currency.code()),
                            display(unit_amount, currency.code())
                        ),
                    )
                })?;
            Ok(NewLine {
                description,
                quantity,
                unit_amount,
                amount,
            })
        })
        .collect()
}

fn due(body: &Map<String, Value>, today: NaiveDate) -> Result<Due, InputError> {
    match (body.get("days_until_due"), body.get("due_date")) {
        (Some(d), Some(_)) if !d.is_null() => Err(refuse(
            "invalid_due",
            "days_until_due",
            "and due_date cannot both be given: choose one.",
        )),
        (Some(days), _) if !days.is_null() => match days.as_u64() {
            Some(n @ 1..=365) => Ok(Due::DaysAfterFinalizing(n as u32)),
            _ => Err(refuse(
                "invalid_due",
                "days_until_due",
                format!("must be a whole number of days from 1 to 365, not {days}."),
            )),
        },
        (_, Some(Value::String(date))) => {
            let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d").map_err(|_| {
                refuse(
                    "invalid_due",
                    "due_date",
                    format!("`{date}` is not a date written as YYYY-MM-DD."),
                )
            })?;
            if date <= today {
                return Err(refuse(
                    "invalid_due",
                    "due_date",
                    format!("{date} is not in the future."),
                ));
            }
            if date > today + chrono::Duration::days(5 * 366) {
                return Err(refuse(
                    "invalid_due",
                    "due_date",
                    format!("{date} is more than five years away."),
                ));
            }
            Ok(Due::On(date))
        }
        (_, Some(Value::Null) | None) => Ok(Due::DaysAfterFinalizing(30)),
        (_, Some(_)) => Err(refuse(
            "invalid_due",
            "due_date",
            "must be a date string, YYYY-MM-DD.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
    }

    fn body(changes: Value) -> Value {
        let mut base = json!({
            "customer": {"email": "ada@example.com", "name": "Ada"},
            "currency": "usd",
            "lines": [{"description": "Consulting", "quantity": 2, "unit_amount": 5000}],
        });
        for (k, v) in changes.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    fn refused(changes: Value) -> InputError {
        parse(&body(changes), today()).unwrap_err()
    }

    #[test]
    fn a_good_body_becomes_an_invoice_with_checked_totals() {
        let invoice = parse(&body(json!({})), today()).unwrap();
        assert_eq!(invoice.total(), 10_000);
        assert_eq!(invoice.due, Due::DaysAfterFinalizing(30));
        assert_eq!(invoice.currency.code(), "usd");
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = refused(json!({"currency": "usx"}));
        assert_eq!((e.code, e.field.as_str()), ("invalid_currency", "currency"));
        let e = refused(json!({"lines": [{"description": "x", "quantity": 1, "unit_amount": 0}]}));
        assert_eq!(e.message, "lines[0].unit_amount must be at least 1, not 0.");
        let e = refused(json!({"lines": [{"description": "x", "quantity": 1, "unit_amount": -5}]}));
        assert_eq!(e.code, "invalid_amount");
        let e =
            refused(json!({"lines": [{"description": "x", "quantity": 1, "unit_amount": 19.99}]}));
        assert!(
            e.message
                .contains("whole number of minor units (cents), not 19.99"),
            "{}",
            e.message
        );
        let e = refused(
            json!({"lines": [{"description": "x", "quantity": 1, "unit_amount": 100_000_000}]}),
        );
        assert_eq!(
            (e.code, e.field.as_str()),
            ("amount_too_large", "lines[0].unit_amount")
        );
        let e = refused(
            json!({"lines": [{"description": "x", "quantity": 2, "unit_amount": 60_000_000}]}),
        );
        assert_eq!((e.code, e.field.as_str()), ("amount_too_large", "lines[0]"));
        assert!(e.message.contains("999,999.99 USD"), "{}", e.message);
        let e = refused(json!({"lines": [
            {"description": "x", "quantity": 1, "unit_amount": 60_000_000},
            {"description": "y", "quantity": 1, "unit_amount": 60_000_000}]}));
        assert_eq!(e.code, "total_too_large");
        let e = refused(
            json!({"lines": [{"description": "x", "quantity": 9_223_372_036_854_775_807i64, "unit_amount": 2}]}),
        );
        assert_eq!(e.code, "amount_too_large", "no overflow: {e:?}");
        assert_eq!(refused(json!({"lines": []})).code, "no_lines");
        let e = refused(json!({"customer": {"email": "ada.example.com"}}));
        assert_eq!(
            (e.code, e.field.as_str()),
            ("invalid_email", "customer.email")
        );
        assert_eq!(refused(json!({"days_until_due": 0})).code, "invalid_due");
        assert_eq!(
            refused(json!({"due_date": "2026-12-01"})).code,
            "invalid_due"
        );
        assert_eq!(
            refused(json!({"due_date": "2026-13-01"})).code,
            "invalid_due"
        );
        assert_eq!(
            refused(json!({"due_date": "2027-01-05", "days_until_due": 3})).code,
            "invalid_due"
        );
        assert_eq!(refused(json!({"colour": "red"})).field, "colour");
    }

    #[test]
    fn zero_and_three_decimal_currencies_are_understood() {
        let jpy = parse(&body(json!({"currency": "JPY", "lines": [{"description": "x", "quantity": 1, "unit_amount": 1000}]})), today()).unwrap();
        assert_eq!(jpy.total(), 1000);
        let e = refused(
            json!({"currency": "jpy", "lines": [{"description": "x", "quantity": 1, "unit_amount": 10.5}]}),
        );
        assert!(
            e.message.contains("JPY (it has no minor unit)"),
            "{}",
            e.message
        );
        let e = refused(
            json!({"currency": "kwd", "lines": [{"description": "x", "quantity": 1, "unit_amount": 1505}]}),
        );
        assert!(e.message.contains("must end in 0 in KWD"), "{}", e.message);
    }
}
