//! An email address as billmirror stores and matches it: trimmed, with one `@`, a local part and
//! a dotted domain, no spaces; matched without regard to letter case.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    address: String,
}

impl Email {
    pub fn parse(value: &str) -> Result<Email, String> {
        let address = value.trim();
        if address.is_empty() {
            return Err("is empty".into());
        }
        if address.len() > 254 {
            return Err("is longer than 254 characters".into());
        }
        if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("contains a space or an invisible character".into());
        }
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(format!("`{address}` has no @"));
        };
        if local.is_empty() || local.contains('@') {
            return Err(format!("`{address}` is not a single address"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty() || l.starts_with('-')) {
            return Err(format!("`{address}` has no valid domain after the @"));
        }
        Ok(Email {
            address: address.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The form emails are matched in: lower case.
    pub fn normalized(&self) -> String {
        normalize(&self.address)
    }
}

/// The one form every email is matched in, whether typed here or sent by Stripe: trimmed and lower
/// case, so `Pat@Example.com ` and `pat@example.com` are one person.
pub fn normalize(address: &str) -> String {
    address.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_addresses_parse_and_bad_ones_say_why() {
        assert_eq!(
            Email::parse(" Ada@Example.com ").unwrap().as_str(),
            "Ada@Example.com"
        );
        assert_eq!(
            Email::parse("Ada@Example.com").unwrap().normalized(),
            "ada@example.com"
        );
        assert!(Email::parse("ada.example.com")
            .unwrap_err()
            .contains("no @"));
        assert!(Email::parse("ada@localhost")
            .unwrap_err()
            .contains("domain"));
        assert!(Email::parse("a da@example.com")
            .unwrap_err()
            .contains("space"));
        assert!(Email::parse("@example.com").is_err());
        assert!(Email::parse("a@b@example.com").is_err());
    }
}
