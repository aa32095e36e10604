use std::fmt;

/// A secret value (Stripe key, webhook secret, API token, master key) that prints only masked,
/// so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value: call only where it is sent to Stripe, hashed or encrypted.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Keeps a secret's kind and its last four characters: `sk_live_…4f2a`. The kind is the known
/// Stripe or billmirror prefix; a value too short to hide anything shows only `…`.
pub fn mask(value: &str) -> String {
    const PREFIXES: [&str; 9] = [
        "sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_", "whsec_", "bm_",
        "acct_",
    ];
    let value = value.trim();
    let prefix = PREFIXES
        .iter()
        .find(|p| value.starts_with(**p))
        .copied()
        .unwrap_or("");
    let rest = &value[prefix.len()..];
    let chars: Vec<char> = rest.chars().collect();
    if chars.len() < 12 {
        return format!("{prefix}…");
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_kind_and_the_last_four_characters() {
        assert_eq!(mask("sk_live_51HxYzAbCdEfGh4f2a"), "sk_live_…4f2a");
        assert_eq!(mask("whsec_abcdefghijklmnop1234"), "whsec_…1234");
        assert_eq!(mask("sk_test_short"), "sk_test_…");
        assert_eq!(mask("no-known-prefix-but-long"), "…long");
    }

    #[test]
    fn a_secret_never_prints_its_value() {
        let secret = Secret::new("sk_test_51HxYzAbCdEfGhIjKlMn9z9z");
        let shown = format!("{secret} {secret:?}");
        assert!(!shown.contains("AbCdEf"), "{shown}");
        assert!(shown.contains("sk_test_…9z9z"));
    }
}
