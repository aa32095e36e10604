//! Money is integer minor units plus an ISO 4217 currency, never a float. `Currency` holds only
//! codes Stripe charges in, and knows how many decimals each one has at Stripe (zero for JPY,
//! three for KWD, two for ISK although ISO says zero).

use std::fmt;

/// A lower-case ISO 4217 code that Stripe supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency(&'static str);

/// Currencies Stripe can charge in (its published list of presentment currencies).
const SUPPORTED: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf",
    "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb",
    "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg",
    "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf", "krw",
    "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk",
    "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr",
    "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub",
    "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb",
    "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

/// Currencies without a minor unit at Stripe (the web form's script reads these too).
pub const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies with three decimals at Stripe.
pub const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// The largest amount Stripe accepts for one charge or invoice, in minor units (eight digits:
/// 999,999.99 in a two-decimal currency).
pub const MAX_AMOUNT: i64 = 99_999_999;

impl Currency {
    /// Reads a code in either case; `None` for anything Stripe does not charge in.
    pub fn parse(code: &str) -> Option<Currency> {
        let lower = code.trim().to_ascii_lowercase();
        SUPPORTED.iter().find(|c| **c == lower).map(|c| Currency(c))
    }

    pub fn code(self) -> &'static str {
        self.0
    }

    /// Decimal places of the minor unit, as Stripe counts them.
    pub fn exponent(self) -> u32 {
        if ZERO_DECIMAL.contains(&self.0) {
            0
        } else if THREE_DECIMAL.contains(&self.0) {
            3
        } else {
            2
        }
    }

    /// Stripe wants three-decimal amounts rounded to ten minor units (the last digit zero).
    pub fn accepts_minor(self, amount: i64) -> bool {
        self.exponent() != 3 || amount % 10 == 0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Shows minor units as a person reads them: `19.99 USD`, `1,000 JPY`, `1.500 KWD`.
pub fn display(amount: i64, currency: &str) -> String {
    let exponent = Currency::parse(currency).map_or(2, Currency::exponent);
    let sign = if amount < 0 { "-" } else { "" };
    let magnitude = amount.unsigned_abs();
    let divisor = 10u64.pow(exponent);
    let whole = group_thousands(magnitude / divisor);
    let code = currency.to_ascii_uppercase();
    if exponent == 0 {
        format!("{sign}{whole} {code}")
    } else {
        let fraction = magnitude % divisor;
        format!(
            "{sign}{whole}.{fraction:0width$} {code}",
            width = exponent as usize
        )
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_with_each_currencys_decimals() {
        assert_eq!(display(1999, "usd"), "19.99 USD");
        assert_eq!(display(100_000, "jpy"), "100,000 JPY");
        assert_eq!(display(1500, "kwd"), "1.500 KWD");
        assert_eq!(display(5, "eur"), "0.05 EUR");
        assert_eq!(display(123_456_789, "usd"), "1,234,567.89 USD");
        assert_eq!(display(-250, "gbp"), "-2.50 GBP");
        assert_eq!(display(0, "krw"), "0 KRW");
    }

    #[test]
    fn only_stripe_currencies_parse_and_know_their_exponent() {
        assert_eq!(Currency::parse("USD").map(Currency::code), Some("usd"));
        assert_eq!(Currency::parse("jpy").map(Currency::exponent), Some(0));
        assert_eq!(Currency::parse("isk").map(Currency::exponent), Some(2));
        assert_eq!(Currency::parse("bhd").map(Currency::exponent), Some(3));
        assert!(Currency::parse("xyz").is_none());
        assert!(Currency::parse("").is_none());
        let kwd = Currency::parse("kwd").unwrap();
        assert!(kwd.accepts_minor(1500) && !kwd.accepts_minor(1505));
    }
}
