//! The New invoice form as a person fills it in: amounts typed in the currency's major unit
//! (`124.50`), read exactly into minor units (no float anywhere), turned into the same JSON body
//! `POST /api/invoices` takes, so `invoices::input` stays the one authority on what is valid. Its
//! refusals (`lines[1].unit_amount …`) are put back beside the field the person typed in. Pure.

use serde_json::{json, Map, Value};

use super::form::Form;
use crate::domain::money::{display, MAX_AMOUNT};
use crate::domain::Currency;
use crate::invoices::input::InputError;

/// One line as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineInput {
    pub description: String,
    pub quantity: String,
    pub amount: String,
}

impl LineInput {
    fn is_blank(&self) -> bool {
        self.description.is_empty() && self.quantity.is_empty() && self.amount.is_empty()
    }
}

/// How the due date is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DueChoice {
    #[default]
    Days,
    Date,
}

/// What the form's buttons ask for. Without script, adding or removing a line posts the form and
/// it comes back with one line more or less; the script does the same in the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Create,
    AddLine,
    RemoveLine(usize),
}

/// The form's fields as typed, to show again after a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceForm {
    pub email: String,
    pub name: String,
    pub connection_id: String,
    pub currency: String,
    pub lines: Vec<LineInput>,
    pub due: DueChoice,
    pub days_until_due: String,
    pub due_date: String,
    pub memo: String,
    /// Made when the empty form is shown: posting the same form twice makes one invoice.
    pub idempotency_key: String,
}

/// A sentence for one field of the form (`email`, `currency`, `line.2.amount`, `lines`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The body for `invoices::create`, and for each of its lines the form row it came from (blank
/// rows are skipped, so `lines[n]` may be row `n + k`).
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub body: Value,
    pub rows: Vec<usize>,
}

impl InvoiceForm {
    pub fn blank(idempotency_key: String) -> InvoiceForm {
        InvoiceForm {
            email: String::new(),
            name: String::new(),
            connection_id: String::new(),
            currency: "usd".into(),
            lines: vec![LineInput::default()],
            due: DueChoice::Days,
            days_until_due: "30".into(),
            due_date: String::new(),
            memo: String::new(),
            idempotency_key,
        }
    }

    pub fn read(form: &Form) -> InvoiceForm {
        let text = |name: &str| form.get(name).unwrap_or_default().to_owned();
        let (descriptions, quantities, amounts) = (
            form.all("line_description"),
            form.all("line_quantity"),
            form.all("line_amount"),
        );
        let rows = descriptions.len().max(quantities.len()).max(amounts.len());
        let cell = |values: &[&str], n: usize| values.get(n).copied().unwrap_or("").to_owned();
        let mut lines: Vec<LineInput> = (0..rows)
            .map(|n| LineInput {
                description: cell(&descriptions, n),
                quantity: cell(&quantities, n),
                amount: cell(&amounts, n),
            })
            .collect();
        if lines.is_empty() {
            lines.push(LineInput::default());
        }
        InvoiceForm {
            email: text("email"),
            name: text("name"),
            connection_id: text("connection_id"),
            currency: text("currency").to_ascii_lowercase(),
            lines,
            due: if form.get("due") == Some("date") {
                DueChoice::Date
            } else {
                DueChoice::Days
            },
            days_until_due: text("days_until_due"),
            due_date: text("due_date"),
            memo: text("memo"),
            idempotency_key: text("idempotency_key"),
        }
    }

    pub fn due_is_date(&self) -> bool {
        self.due == DueChoice::Date
    }

    /// Applies an add or remove; there is always at least one row.
    pub fn apply(&mut self, intent: Intent) {
        match intent {
            Intent::AddLine => self.lines.push(LineInput::default()),
            Intent::RemoveLine(n) if n < self.lines.len() => {
                self.lines.remove(n);
                if self.lines.is_empty() {
                    self.lines.push(LineInput::default());
                }
            }
            _ => {}
        }
    }

    /// The total of the lines that read, in minor units, with the currency's display.
    pub fn total_display(&self) -> Option<String> {
        let mut total: i64 = 0;
        for line in self.lines.iter().filter(|l| !l.is_blank()) {
            let amount = parse_amount(&line.amount, &self.currency).ok()?;
            let quantity = parse_quantity(&line.quantity).ok()?;
            total = total.checked_add(amount.checked_mul(quantity)?)?;
        }
        Currency::parse(&self.currency).map(|c| display(total, c.code()))
    }

    /// The API body, or every problem the form itself can see (amounts that do not read, a
    /// missing due date). The domain checks the rest.
    pub fn prepare(&self) -> Result<Prepared, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut lines = Vec::new();
        let mut rows = Vec::new();
        for (n, line) in self.lines.iter().enumerate() {
            if line.is_blank() {
                continue;
            }
            let quantity = parse_quantity(&line.quantity)
                .map_err(|m| errors.push(error(format!("line.{n}.quantity"), m)))
                .ok();
            let amount = parse_amount(&line.amount, &self.currency)
                .map_err(|m| errors.push(error(format!("line.{n}.amount"), m)))
                .ok();
            if let (Some(quantity), Some(amount)) = (quantity, amount) {
                lines.push(json!({"description": line.description, "quantity": quantity, "unit_amount": amount}));
                rows.push(n);
            }
        }
        let mut body = Map::new();
        body.insert(
            "customer".into(),
            json!({"email": self.email, "name": self.name}),
        );
        body.insert("currency".into(), json!(self.currency));
        body.insert("lines".into(), Value::Array(lines));
        match self.due {
            DueChoice::Days if !self.days_until_due.is_empty() => {
                match self.days_until_due.parse::<u32>() {
                    Ok(days) => {
                        body.insert("days_until_due".into(), json!(days));
                    }
                    Err(_) => errors.push(error(
                        "days_until_due",
                        "Give a whole number of days, from 1 to 365.",
                    )),
                }
            }
            DueChoice::Days => {}
            DueChoice::Date if self.due_date.is_empty() => {
                errors.push(error("due_date", "Choose the date the invoice is due."))
            }
            DueChoice::Date => {
                body.insert("due_date".into(), json!(self.due_date));
            }
        }
        if !self.memo.is_empty() {
            body.insert("memo".into(), json!(self.memo));
        }
        if !self.connection_id.is_empty() {
            body.insert("connection_id".into(), json!(self.connection_id));
        }
        if errors.is_empty() {
            Ok(Prepared {
                body: Value::Object(body),
                rows,
            })
        } else {
            Err(errors)
        }
    }
}

impl Prepared {
    /// The domain's refusal, beside the field it is about, as a sentence without the API's
    /// field name (`lines[0].unit_amount must end in 0 …` → `Must end in 0 …` beside that price).
    pub fn place(&self, refusal: &InputError) -> FieldError {
        let problem = refusal
            .message
            .strip_prefix(refusal.field.as_str())
            .map_or(refusal.message.as_str(), str::trim);
        let mut sentence = String::new();
        let mut chars = problem.chars();
        if let Some(first) = chars.next() {
            sentence.extend(first.to_uppercase());
            sentence.push_str(chars.as_str());
        }
        error(self.form_field(&refusal.field), sentence)
    }

    fn form_field(&self, api_field: &str) -> String {
        if let Some(rest) = api_field.strip_prefix("lines[") {
            if let Some((index, part)) = rest.split_once(']') {
                if let Some(row) = index.parse::<usize>().ok().and_then(|i| self.rows.get(i)) {
                    let part = match part.trim_start_matches('.') {
                        "description" => "description",
                        "quantity" => "quantity",
                        _ => "amount",
                    };
                    return format!("line.{row}.{part}");
                }
            }
            return "lines".into();
        }
        match api_field {
            "customer.email" => "email",
            "customer.name" => "name",
            "currency" | "lines" | "days_until_due" | "due_date" | "memo" | "connection_id" => {
                api_field
            }
            _ => "form",
        }
        .into()
    }
}

/// Reads an amount typed in the major unit of `currency` into minor units, exactly: `124.5` in
/// a two-decimal currency is 12450.
pub fn parse_amount(typed: &str, currency: &str) -> Result<i64, String> {
    let exponent = Currency::parse(currency).map_or(2, Currency::exponent);
    let code = currency.to_ascii_uppercase();
    let typed = typed.trim();
    if typed.is_empty() {
        return Err("Give the price of one item.".into());
    }
    let (whole, fraction) = typed.split_once('.').unwrap_or((typed, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || (whole.is_empty() && fraction.is_empty()) {
        let example = match exponent {
            0 => "1250".to_owned(),
            e => format!("1250.{}", "0".repeat(e as usize)),
        };
        return Err(format!(
            "`{typed}` is not an amount: write digits with a point before the decimals and no other signs, such as {example}."
        ));
    }
    if fraction.len() > exponent as usize {
        return Err(if exponent == 0 {
            format!("{code} has no decimals: give a whole amount.")
        } else {
            format!("{code} has {exponent} decimals; `{typed}` has more.")
        });
    }
    let too_large = || {
        format!(
            "Is more than Stripe's limit for one amount ({}).",
            display(MAX_AMOUNT, currency)
        )
    };
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let fraction_minor: i64 = if fraction.is_empty() {
        0
    } else {
        let scale = 10i64.pow(exponent - fraction.len() as u32);
        fraction.parse::<i64>().map_err(|_| too_large())? * scale
    };
    let minor = whole
        .checked_mul(10i64.pow(exponent))
        .and_then(|w| w.checked_add(fraction_minor))
        .ok_or_else(too_large)?;
    if minor == 0 {
        return Err("Must be more than zero.".into());
    }
    if minor > MAX_AMOUNT {
        return Err(too_large());
    }
    Ok(minor)
}

/// A quantity: a whole number, one when left blank.
pub fn parse_quantity(typed: &str) -> Result<i64, String> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(1);
    }
    match typed.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "`{typed}` is not a quantity: give a whole number of items, 1 or more."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &str) -> InvoiceForm {
        InvoiceForm::read(&Form::parse(pairs.as_bytes()))
    }

    #[test]
    fn amounts_read_exactly_in_each_currencys_minor_unit() {
        assert_eq!(parse_amount("124.5", "usd"), Ok(12_450));
        assert_eq!(parse_amount("124", "usd"), Ok(12_400));
        assert_eq!(parse_amount("0.07", "usd"), Ok(7));
        assert_eq!(parse_amount(".5", "usd"), Ok(50));
        assert_eq!(parse_amount("1000", "jpy"), Ok(1000));
        assert_eq!(parse_amount("1.5", "kwd"), Ok(1500));
        assert_eq!(parse_amount("0.1", "usd"), Ok(10), "no float rounding");
        assert_eq!(parse_amount("999999.99", "usd"), Ok(MAX_AMOUNT));
        assert!(parse_amount("1000000", "usd")
            .unwrap_err()
            .contains("(999,999.99 USD)"));
        assert!(parse_amount("10.5", "jpy")
            .unwrap_err()
            .contains("JPY has no decimals"));
        assert!(parse_amount("1.234", "eur")
            .unwrap_err()
            .contains("EUR has 2 decimals"));
        for bad in ["-5", "1,250.00", "12,50", "1e3", "abc", ".", "1.2.3"] {
            assert!(
                parse_amount(bad, "usd")
                    .unwrap_err()
                    .contains("is not an amount"),
                "{bad}"
            );
        }
        assert_eq!(
            parse_amount("0.00", "usd"),
            Err("Must be more than zero.".into())
        );
        assert!(
            parse_amount("99999999999999999999", "usd").is_err(),
            "no overflow"
        );
    }

    #[test]
    fn blank_rows_are_skipped_and_refusals_land_beside_the_row_typed() {
        let f = form(
            "email=ada%40example.com&currency=USD&due=days&days_until_due=14\
             &line_description=&line_quantity=&line_amount=\
             &line_description=Tuning&line_quantity=3&line_amount=125\
             &line_description=Travel&line_quantity=&line_amount=49.99",
        );
        let prepared = f.prepare().unwrap();
        assert_eq!(prepared.rows, vec![1, 2]);
        assert_eq!(
            prepared.body["lines"],
            json!([{"description": "Tuning", "quantity": 3, "unit_amount": 12_500},
                   {"description": "Travel", "quantity": 1, "unit_amount": 4_999}])
        );
        assert_eq!(prepared.body["days_until_due"], 14);
        assert_eq!(prepared.body["currency"], "usd");
        assert_eq!(f.total_display().as_deref(), Some("424.99 USD"));

        let placed = prepared.place(&InputError {
            code: "invalid_input",
            field: "lines[1].description".into(),
            message: "lines[1].description is required.".into(),
        });
        assert_eq!(placed, error("line.2.description", "Is required."));
        let placed = prepared.place(&InputError {
            code: "invalid_email",
            field: "customer.email".into(),
            message: "customer.email is missing an @.".into(),
        });
        assert_eq!(placed.field, "email");
    }

    #[test]
    fn the_form_names_what_it_cannot_read_itself() {
        let f = form(
            "currency=jpy&due=date&due_date=&line_description=A&line_quantity=two&line_amount=10.5",
        );
        let errors = f.prepare().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["line.0.quantity", "line.0.amount", "due_date"]);
        assert_eq!(
            errors[1].message,
            "JPY has no decimals: give a whole amount."
        );
    }

    #[test]
    fn lines_are_added_and_removed_but_one_always_stays() {
        let mut f = InvoiceForm::blank("k".into());
        f.apply(Intent::AddLine);
        assert_eq!(f.lines.len(), 2);
        f.apply(Intent::RemoveLine(0));
        f.apply(Intent::RemoveLine(0));
        f.apply(Intent::RemoveLine(7));
        assert_eq!(f.lines.len(), 1);
    }
}
