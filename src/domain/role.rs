use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an API token may do. Each role includes every role before it, so the derived order is
/// the permission order: `Support < Finance < Ops < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the ledger.
    Support,
    /// Creates and voids invoices.
    Finance,
    /// Manages connections and the event inbox.
    Ops,
    /// Manages API tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Support, Role::Finance, Role::Ops, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Finance => "finance",
            Role::Ops => "ops",
            Role::Admin => "admin",
        }
    }

    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a role: use support, finance, ops or admin"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_includes_the_ones_before_it() {
        assert!(Role::Admin.allows(Role::Support));
        assert!(Role::Ops.allows(Role::Finance));
        assert!(Role::Finance.allows(Role::Finance));
        assert!(!Role::Finance.allows(Role::Ops));
        assert!(!Role::Support.allows(Role::Finance));
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .contains("support, finance, ops or admin"));
    }
}
