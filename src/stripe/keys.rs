//! The offline half of the key report: what can be told from a key's text alone. Pure functions,
//! no I/O. Each check names exactly what is wrong and where, and never repeats the key itself
//! (only its kind and, once it looks like a key, its masked form).

use super::report::{Check, CheckName};
use crate::domain::secret::mask;

/// Live or test: the two worlds of a Stripe account, which a connection's keys must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Live,
    Test,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }

    pub fn parse(value: &str) -> Option<Mode> {
        match value {
            "live" => Some(Mode::Live),
            "test" => Some(Mode::Test),
            _ => None,
        }
    }
}

/// What a Stripe credential is, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Publishable(Mode),
    Secret(Mode),
    Restricted(Mode),
    WebhookSecret,
}

impl KeyKind {
    /// The prefix as Stripe writes it, for messages: `pk_test_`, `whsec_`.
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Publishable(Mode::Live) => "pk_live_",
            KeyKind::Publishable(Mode::Test) => "pk_test_",
            KeyKind::Secret(Mode::Live) => "sk_live_",
            KeyKind::Secret(Mode::Test) => "sk_test_",
            KeyKind::Restricted(Mode::Live) => "rk_live_",
            KeyKind::Restricted(Mode::Test) => "rk_test_",
            KeyKind::WebhookSecret => "whsec_",
        }
    }

    pub fn mode(self) -> Option<Mode> {
        match self {
            KeyKind::Publishable(m) | KeyKind::Secret(m) | KeyKind::Restricted(m) => Some(m),
            KeyKind::WebhookSecret => None,
        }
    }

    /// `test secret key`, `webhook signing secret`.
    fn noun(self) -> String {
        match self {
            KeyKind::Publishable(m) => format!("{} publishable key", m.as_str()),
            KeyKind::Secret(m) => format!("{} secret key", m.as_str()),
            KeyKind::Restricted(m) => format!("{} restricted key", m.as_str()),
            KeyKind::WebhookSecret => "webhook signing secret".to_owned(),
        }
    }

    /// `a test secret key (sk_test_)`.
    fn describe(self) -> String {
        format!("a {} ({})", self.noun(), self.prefix())
    }

    /// Reads the kind from the start of a key; `Err` carries what was found instead.
    pub fn of(key: &str) -> Result<KeyKind, PrefixProblem> {
        if key.starts_with("whsec_") {
            return Ok(KeyKind::WebhookSecret);
        }
        let Some((kind, rest)) = key.split_once('_') else {
            return Err(PrefixProblem::Unknown(leading(key)));
        };
        let make: fn(Mode) -> KeyKind = match kind {
            "pk" => KeyKind::Publishable,
            "sk" => KeyKind::Secret,
            "rk" => KeyKind::Restricted,
            _ => return Err(PrefixProblem::Unknown(leading(key))),
        };
        if rest.starts_with("live_") {
            Ok(make(Mode::Live))
        } else if rest.starts_with("test_") {
            Ok(make(Mode::Test))
        } else {
            Err(PrefixProblem::NoMode(format!("{kind}_")))
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum PrefixProblem {
    /// The start of the value up to its first `_` (at most 8 characters).
    Unknown(String),
    /// `sk_`, `pk_` or `rk_` not followed by `live_` or `test_`.
    NoMode(String),
}

fn leading(key: &str) -> String {
    let head: String = key.chars().take_while(|c| *c != '_').take(8).collect();
    if key[head.len()..].starts_with('_') {
        format!("{head}_")
    } else {
        head
    }
}

/// The three fields of a connection's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    PublishableKey,
    SecretKey,
    WebhookSecret,
}

impl Field {
    fn label(self) -> &'static str {
        match self {
            Field::PublishableKey => "publishable key",
            Field::SecretKey => "secret key",
            Field::WebhookSecret => "webhook secret",
        }
    }

    fn check_name(self) -> CheckName {
        match self {
            Field::PublishableKey => CheckName::PublishableKeyFormat,
            Field::SecretKey => CheckName::SecretKeyFormat,
            Field::WebhookSecret => CheckName::WebhookSecretFormat,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Field::PublishableKey => "pk_live_ or pk_test_",
            Field::SecretKey => "sk_live_, sk_test_, rk_live_ or rk_test_",
            Field::WebhookSecret => "whsec_",
        }
    }

    fn accepts(self, kind: KeyKind) -> bool {
        matches!(
            (self, kind),
            (Field::PublishableKey, KeyKind::Publishable(_))
                | (
                    Field::SecretKey,
                    KeyKind::Secret(_) | KeyKind::Restricted(_)
                )
                | (Field::WebhookSecret, KeyKind::WebhookSecret)
        )
    }
}

/// Checks one field's text. `Ok` holds the kind and the pass message; `Err` the failure, with a
/// stable code (`empty`, `whitespace`, `quoted`, `wrong_kind`, `unknown_prefix`, `malformed`).
pub fn check_format(field: Field, value: &str) -> Result<KeyKind, (&'static str, String)> {
    let label = field.label();
    let the = format!("The {label}");
    if value.is_empty() {
        return Err(("empty", format!("{the} is empty: paste it again.")));
    }
    if value.chars().all(char::is_whitespace) {
        return Err((
            "empty",
            format!("{the} holds only whitespace: paste the key itself."),
        ));
    }
    if let Some(problem) = quotes(value) {
        return Err(("quoted", format!("{the} {problem}: remove them.")));
    }
    if let Some(problem) = whitespace(value) {
        return Err(("whitespace", format!("{the} {problem}")));
    }
    let kind = match KeyKind::of(value) {
        Ok(kind) => kind,
        Err(PrefixProblem::Unknown(head)) => {
            let start = if head.is_empty() {
                "does not start with a Stripe prefix".to_owned()
            } else {
                format!("starts with `{head}`, which is not a Stripe key prefix")
            };
            return Err((
                "unknown_prefix",
                format!("{the} {start}: a {label} starts with {}.", field.expected()),
            ));
        }
        Err(PrefixProblem::NoMode(prefix)) => {
            return Err((
                "unknown_prefix",
                format!(
                    "{the} starts with `{prefix}` but not with `{prefix}live_` or `{prefix}test_`: \
                     copy the whole key from the Stripe Dashboard (Developers → API keys)."
                ),
            ))
        }
    };
    if !field.accepts(kind) {
        return Err(("wrong_kind", wrong_kind(field, kind)));
    }
    let body = &value[kind.prefix().len()..];
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || (field == Field::WebhookSecret && "_+/=".contains(c))
    };
    if let Some((at, c)) = value
        .char_indices()
        .skip(kind.prefix().len())
        .find(|(_, c)| !allowed(*c))
    {
        return Err((
            "malformed",
            format!(
                "{the} contains {} at character {}, which no Stripe key has: copy it again.",
                describe_char(c),
                value[..at].chars().count() + 1
            ),
        ));
    }
    // Stripe's shortest keys (from 2011) have 24 characters after the prefix; today's about 99.
    const MIN_BODY: usize = 16;
    if body.len() < MIN_BODY {
        return Err((
            "malformed",
            format!(
                "{the} is too short to be a Stripe key ({} plus {} characters): it was probably \
                 cut off when it was copied.",
                kind.prefix(),
                body.len()
            ),
        ));
    }
    Ok(kind)
}

fn wrong_kind(field: Field, kind: KeyKind) -> String {
    let label = field.label();
    let fix = match (field, kind) {
        (Field::SecretKey, KeyKind::Publishable(m)) => format!(
            "paste the secret key (sk_{}_…) shown beside it in the Dashboard",
            m.as_str()
        ),
        (Field::PublishableKey, KeyKind::Secret(_) | KeyKind::Restricted(_)) => {
            "put it in the secret key field, and the pk_ key here".to_owned()
        }
        (_, KeyKind::WebhookSecret) => {
            "a whsec_ secret belongs in the webhook secret field; paste the API key here".to_owned()
        }
        (Field::WebhookSecret, _) => "paste the endpoint's signing secret (whsec_…) from the \
             Dashboard's webhook page; API keys go in the key fields"
            .to_owned(),
        _ => format!("a {label} starts with {}", field.expected()),
    };
    format!("The {label} field holds {}: {fix}.", kind.describe())
}

/// Names quotes around a value: a frequent leftover of copying from a `.env` or JSON file.
fn quotes(value: &str) -> Option<&'static str> {
    let quote = |c: char| matches!(c, '"' | '\'' | '`' | '“' | '”' | '‘' | '’');
    let trimmed = value.trim();
    let first = trimmed.chars().next().is_some_and(quote);
    let last = trimmed.chars().last().is_some_and(quote);
    match (first, last) {
        (true, true) => Some("is wrapped in quotes"),
        (true, false) => Some("starts with a quote"),
        (false, true) => Some("ends with a quote"),
        (false, false) => None,
    }
}

/// Says where whitespace or an invisible character sits, and what it is.
fn whitespace(value: &str) -> Option<String> {
    let invisible = |c: char| c.is_whitespace() || c.is_control() || is_zero_width(c);
    let first = value.chars().next()?;
    if invisible(first) {
        return Some(format!("starts with {}: remove it.", describe_char(first)));
    }
    let last = value.chars().last()?;
    if invisible(last) {
        return Some(format!("ends with {}: remove it.", describe_char(last)));
    }
    value
        .chars()
        .enumerate()
        .find(|(_, c)| invisible(*c))
        .map(|(at, c)| {
            format!(
                "contains {} at character {}: a key has none; copy it again in one piece.",
                describe_char(c),
                at + 1
            )
        })
}

fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        '\t' => "a tab".to_owned(),
        '\n' | '\r' => "a line break".to_owned(),
        '\u{00A0}' => "a non-breaking space".to_owned(),
        c if is_zero_width(c) => "an invisible zero-width character".to_owned(),
        c if c.is_whitespace() => format!("a space character (U+{:04X})", c as u32),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        c => format!("`{c}`"),
    }
}

/// The format check of one field as a report line. `None` (field not given) is a failure only for
/// the secret key, which every connection needs.
pub fn format_check(field: Field, value: Option<&str>) -> (Check, Option<KeyKind>) {
    let name = field.check_name();
    let Some(value) = value else {
        return match field {
            Field::SecretKey => (
                Check::fail(
                    name,
                    "missing",
                    "No secret key was given: paste the sk_ or rk_ key from the Stripe Dashboard \
                     (Developers → API keys).",
                ),
                None,
            ),
            Field::PublishableKey => (
                Check::skipped(
                    name,
                    "No publishable key was given; billmirror does not need one (Stripe's hosted \
                     invoice page takes the payment).",
                ),
                None,
            ),
            Field::WebhookSecret => (
                Check::skipped(
                    name,
                    "No webhook signing secret was given: register the endpoint with POST \
                     /api/connections/{id}/webhook-endpoint, or add the endpoint's whsec_ secret.",
                ),
                None,
            ),
        };
    };
    match check_format(field, value) {
        Ok(kind) => {
            let note = match kind {
                KeyKind::Restricted(_) => "; its permissions are checked below",
                _ => "",
            };
            let message = format!("A {} ({}){note}.", kind.noun(), mask(value));
            (Check::pass(name, message), Some(kind))
        }
        Err((code, message)) => (Check::fail(name, code, message), None),
    }
}

/// Compares the modes of the keys that passed their format checks.
pub fn mode_check(publishable: Option<KeyKind>, secret: Option<KeyKind>) -> Check {
    let name = CheckName::ModeMatch;
    let Some(secret) = secret else {
        return Check::skipped(name, "The modes are compared once the secret key is valid.");
    };
    let secret_mode = secret.mode().unwrap_or(Mode::Test);
    let Some(publishable) = publishable else {
        return Check::pass(
            name,
            format!("The secret key is a {} key.", secret_mode.as_str()),
        );
    };
    let publishable_mode = publishable.mode().unwrap_or(Mode::Test);
    if publishable_mode == secret_mode {
        return Check::pass(
            name,
            format!("Both keys are {} keys.", secret_mode.as_str()),
        );
    }
    Check::fail(
        name,
        "mode_mismatch",
        format!(
            "The publishable key is a {} key ({}) but the secret key is {} ({}): use both keys \
             from the same mode (the Dashboard's test-mode switch).",
            publishable_mode.as_str(),
            publishable.prefix(),
            secret_mode.as_str(),
            secret.prefix()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SK: &str = "sk_test_51HxYzAbCdEfGhIjKlMn4f2a";

    fn fails(field: Field, value: &str) -> (&'static str, String) {
        check_format(field, value).expect_err(value)
    }

    #[test]
    fn a_well_formed_key_passes_with_its_kind() {
        assert_eq!(
            check_format(Field::SecretKey, SK),
            Ok(KeyKind::Secret(Mode::Test))
        );
        assert_eq!(
            check_format(Field::SecretKey, "rk_live_51HxYzAbCdEfGhIjKlMn4f2a"),
            Ok(KeyKind::Restricted(Mode::Live))
        );
        let (check, _) = format_check(Field::SecretKey, Some(SK));
        assert_eq!(check.message, "A test secret key (sk_test_…4f2a).");
    }

    #[test]
    fn whitespace_is_named_with_where_it_sits() {
        let (code, message) = fails(Field::SecretKey, &format!("{SK} "));
        assert_eq!(code, "whitespace");
        assert_eq!(message, "The secret key ends with a space: remove it.");
        let (_, message) = fails(Field::SecretKey, &format!("\n{SK}"));
        assert_eq!(
            message,
            "The secret key starts with a line break: remove it."
        );
        let (_, message) = fails(Field::SecretKey, "sk_test_51HxYz AbCdEfGhIjKl");
        assert!(message.contains("a space at character 15"), "{message}");
        let (_, message) = fails(Field::PublishableKey, "pk_test_51HxYz\u{200B}AbCdEfGhIjKl");
        assert!(message.contains("invisible zero-width"), "{message}");
    }

    #[test]
    fn quotes_and_emptiness_are_told_apart() {
        assert_eq!(fails(Field::SecretKey, &format!("\"{SK}\"")).0, "quoted");
        assert_eq!(fails(Field::SecretKey, "").0, "empty");
        assert_eq!(fails(Field::SecretKey, "   ").0, "empty");
    }

    #[test]
    fn the_wrong_kind_of_key_in_a_field_says_which_kind_it_is() {
        let (code, message) = fails(Field::SecretKey, "pk_test_51HxYzAbCdEfGhIjKlMn4f2a");
        assert_eq!(code, "wrong_kind");
        assert!(
            message.starts_with("The secret key field holds a test publishable key (pk_test_)"),
            "{message}"
        );
        let (code, message) = fails(Field::SecretKey, "whsec_abcdefghijklmnopqrstuvwx");
        assert_eq!(code, "wrong_kind");
        assert!(message.contains("webhook signing secret"), "{message}");
        assert_eq!(fails(Field::WebhookSecret, SK).0, "wrong_kind");
    }

    #[test]
    fn unknown_prefixes_and_cut_keys_are_refused() {
        let (code, message) = fails(Field::SecretKey, "sq_test_51HxYzAbCdEfGhIjKlMn");
        assert_eq!(code, "unknown_prefix");
        assert!(message.contains("`sq_`"), "{message}");
        let (code, message) = fails(Field::SecretKey, "sk_prod_51HxYzAbCdEfGhIjKlMn");
        assert_eq!(code, "unknown_prefix");
        assert!(message.contains("sk_live_"), "{message}");
        assert_eq!(fails(Field::SecretKey, "sk_test_51Hx").0, "malformed");
        assert_eq!(
            fails(Field::SecretKey, "sk_test_51HxYzAb-dEfGhIjKlMn").0,
            "malformed"
        );
    }

    #[test]
    fn a_mode_mix_up_names_both_modes() {
        let check = mode_check(
            Some(KeyKind::Publishable(Mode::Test)),
            Some(KeyKind::Secret(Mode::Live)),
        );
        assert_eq!(check.code, Some("mode_mismatch"));
        assert!(check.message.starts_with(
            "The publishable key is a test key (pk_test_) but the secret key is live (sk_live_)"
        ));
    }

    #[test]
    fn messages_never_repeat_a_key() {
        for value in [
            format!("{SK} "),
            format!("'{SK}'"),
            "sk_test_51HxYzAb-dEfGhIjKlMn".into(),
        ] {
            let (_, message) = fails(Field::SecretKey, &value);
            assert!(!message.contains("51HxYz"), "{message}");
        }
    }
}
