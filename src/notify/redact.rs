//! What a chat message may show of a person and of free text. Names and emails follow the
//! channel's (or rule's) redaction level; free text (descriptions, failure messages) loses
//! anything shaped like a card number (Luhn-valid, 13–19 digits), any other long number (phones,
//! tax ids, account numbers), any Stripe, Slack or billmirror secret, and emails are masked in it.
//! Pure, and applied to every text a message carries.

use crate::domain::states::Redaction;

pub const CARD_REMOVED: &str = "[card number removed]";
pub const NUMBER_REMOVED: &str = "[number removed]";
pub const SECRET_REMOVED: &str = "[secret removed]";

/// `ada@example.com` → `a***@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.trim().split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// `Ada Lovelace` → `A*** L***`.
pub fn mask_name(name: &str) -> String {
    name.split_whitespace()
        .map(|word| {
            let first: String = word.chars().take(1).collect();
            format!("{first}***")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a customer is named in a message at `level`; free text either way.
pub fn person(name: Option<&str>, email: Option<&str>, level: Redaction) -> Option<String> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let email = email.map(str::trim).filter(|e| !e.is_empty());
    let shown = match level {
        Redaction::Hidden => return None,
        Redaction::Masked => match (name, email) {
            (Some(n), Some(e)) => format!("{} ({})", mask_name(n), mask_email(e)),
            (Some(n), None) => mask_name(n),
            (None, Some(e)) => mask_email(e),
            (None, None) => return None,
        },
        Redaction::Full => match (name, email) {
            (Some(n), Some(e)) => format!("{n} ({e})"),
            (Some(n), None) => n.to_owned(),
            (None, Some(e)) => e.to_owned(),
            (None, None) => return None,
        },
    };
    Some(scrub(&shown, Redaction::Full))
}

/// Secret prefixes: Stripe keys and signing secrets, Slack tokens, billmirror API tokens.
const SECRET_PREFIXES: &[&str] = &[
    "sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_", "xoxb-", "xoxp-", "xoxa-", "xoxr-",
    "xoxs-", "xapp-", "bm_",
];

/// Free text with card numbers, long numbers and secrets removed, and emails masked unless
/// `level` shows them in full.
pub fn scrub(text: &str, level: Redaction) -> String {
    let without_secrets = remove_secrets(text);
    let without_numbers = remove_glued_numbers(&remove_numbers(&without_secrets));
    mask_emails(&without_numbers, level)
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn remove_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let at_word_start = out.chars().last().is_none_or(|c| !is_word(c));
        if at_word_start {
            if let Some(prefix) = SECRET_PREFIXES.iter().find(|p| rest.starts_with(**p)) {
                let tail = &rest[prefix.len()..];
                let len = tail
                    .find(|c: char| !(is_word(c) || matches!(c, '+' | '/' | '=')))
                    .unwrap_or(tail.len());
                // A prefix followed by a few characters is a word, not a secret.
                if len >= 6 {
                    out.push_str(SECRET_REMOVED);
                    rest = &tail[len..];
                    continue;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Replaces each standalone run of digits (spaces, dashes, dots and brackets allowed between
/// them) holding 7 or more digits: a Luhn-valid 13–19 digit run is a card number; any other is
/// a phone, tax id or account number. Shorter numbers (amounts, counts, years) stay.
fn remove_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number = (chars[i].is_ascii_digit() || chars[i] == '+')
            && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_'));
        if !starts_number {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut end = i;
        let mut digits = String::new();
        let mut last_digit = i;
        while end < chars.len() {
            let c = chars[end];
            if c.is_ascii_digit() {
                digits.push(c);
                last_digit = end;
            } else if !(matches!(c, ' ' | '-' | '.' | '(' | ')' | '+')) {
                break;
            }
            end += 1;
        }
        // Trailing separators belong to the text after the number.
        let end = last_digit + 1;
        let glued = chars
            .get(end)
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_');
        if digits.len() >= 7 && !glued {
            let replacement = if (13..=19).contains(&digits.len()) && luhn(&digits) {
                CARD_REMOVED
            } else {
                NUMBER_REMOVED
            };
            out.push_str(replacement);
        } else {
            out.extend(&chars[i..end.max(i + 1)]);
        }
        i = end.max(i + 1);
    }
    out
}

/// Replaces words made of letters and 7 or more digits in a row (`DE123456789`, a VAT id). Ids
/// with an underscore (`in_1MtHbE…`, `cus_…`) are Stripe's and stay.
fn remove_glued_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let mut run = 0;
        let mut longest = 0;
        for c in word.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        let has_letter = word.chars().any(|c| c.is_ascii_alphabetic());
        if longest >= 7 && has_letter && !word.contains('_') {
            out.push_str(NUMBER_REMOVED);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The Luhn check card numbers pass.
pub fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (n, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if n % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

fn mask_emails(text: &str, level: Redaction) -> String {
    if level == Redaction::Full || !text.contains('@') {
        return text.to_owned();
    }
    let email_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-');
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for at in (0..chars.len()).filter(|&i| chars[i] == '@') {
        if at < copied {
            continue;
        }
        let mut start = at;
        while start > copied && email_char(chars[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < chars.len() && email_char(chars[end]) {
            end += 1;
        }
        // A sentence's full stop is not part of the domain.
        while end > at + 1 && chars[end - 1] == '.' {
            end -= 1;
        }
        let domain: String = chars[at + 1..end].iter().collect();
        if start == at || !domain.contains('.') {
            continue;
        }
        out.extend(&chars[copied..start]);
        let email: String = chars[start..end].iter().collect();
        out.push_str(&match level {
            Redaction::Hidden => "[email removed]".to_owned(),
            _ => mask_email(&email),
        });
        copied = end;
    }
    out.extend(&chars[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_emails_follow_the_level() {
        assert_eq!(mask_email("ada@example.com"), "a***@example.com");
        assert_eq!(mask_name("Ada King Lovelace"), "A*** K*** L***");
        let (name, email) = (Some("Ada Lovelace"), Some("ada@example.com"));
        assert_eq!(
            person(name, email, Redaction::Masked).unwrap(),
            "A*** L*** (a***@example.com)"
        );
        assert_eq!(
            person(name, email, Redaction::Full).unwrap(),
            "Ada Lovelace (ada@example.com)"
        );
        assert_eq!(person(name, email, Redaction::Hidden), None);
        assert_eq!(person(None, None, Redaction::Full), None);
    }

    #[test]
    fn card_numbers_in_free_text_are_removed_and_other_numbers_stay() {
        for card in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4000-0566-5566-5556",
            "378282246310005",
        ] {
            let text = scrub(&format!("paid with {card}, thanks"), Redaction::Full);
            assert_eq!(text, format!("paid with {CARD_REMOVED}, thanks"), "{card}");
        }
        // Long numbers that fail Luhn are still removed: phones, tax ids.
        assert_eq!(
            scrub("call +1 (415) 555-0100 now", Redaction::Full),
            format!("call {NUMBER_REMOVED} now")
        );
        assert_eq!(
            scrub("VAT DE123456789", Redaction::Full),
            format!("VAT {NUMBER_REMOVED}")
        );
        assert_eq!(
            scrub("tax id 123456789", Redaction::Full),
            format!("tax id {NUMBER_REMOVED}")
        );
        // Amounts, years, invoice numbers and ids stay.
        let kept = "Invoice ABC-0001 of 2026 for 1,250.00 USD, attempt 3, in_fake00000012 ch_3MmlLrLkdIwHu7ix0snN0B15";
        assert_eq!(scrub(kept, Redaction::Full), kept);
    }

    #[test]
    fn secrets_in_free_text_are_removed() {
        let text = "key sk_live_51HxYzAbCdEfGh4f2a, secret whsec_abc123DEF456+/=, token xoxb-1234-5678-abcdef and bm_abcdefghijkl";
        let scrubbed = scrub(text, Redaction::Full);
        for secret in ["sk_live_51", "whsec_abc", "xoxb-1234", "bm_abcdef"] {
            assert!(!scrubbed.contains(secret), "{secret} in {scrubbed}");
        }
        assert_eq!(scrubbed.matches(SECRET_REMOVED).count(), 4, "{scrubbed}");
        // Words that merely start like one stay.
        assert_eq!(scrub("a bm_ note", Redaction::Full), "a bm_ note");
    }

    #[test]
    fn emails_in_free_text_are_masked_unless_shown_in_full() {
        let text = "contact ada@example.com (or <bob@example.org>).";
        assert_eq!(
            scrub(text, Redaction::Masked),
            "contact a***@example.com (or <b***@example.org>)."
        );
        assert_eq!(
            scrub(text, Redaction::Hidden),
            "contact [email removed] (or <[email removed]>)."
        );
        assert_eq!(scrub(text, Redaction::Full), text);
    }

    #[test]
    fn the_luhn_check_is_the_real_one() {
        assert!(luhn("4242424242424242"));
        assert!(!luhn("4242424242424241"));
        assert!(luhn("79927398713"));
        assert!(!luhn(""));
    }
}
