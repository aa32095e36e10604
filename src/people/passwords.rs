//! Passwords: argon2id hashes in the PHC string format (the parameters travel with the hash, so
//! they can be raised later without breaking old hashes).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::domain::ids;
use crate::domain::secret::Secret;

pub const MIN_LENGTH: usize = 12;

/// A random password for a new user or a reset: 24 hex characters (96 bits).
pub fn generate() -> Secret {
    Secret::new(hex::encode(ids::random_bytes::<12>()))
}

pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LENGTH {
        return Err(format!("a password has at least {MIN_LENGTH} characters"));
    }
    if password.len() > 1024 {
        return Err("a password has at most 1024 bytes".into());
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation).
pub fn hash(password: &str) -> String {
    let salt_bytes = ids::random_bytes::<16>();
    let hashed = SaltString::encode_b64(&salt_bytes).and_then(|salt| {
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
    });
    match hashed {
        Ok(hash) => hash,
        // Only an out-of-range parameter fails, and the defaults are in range. An empty hash
        // never verifies, so a failure here locks the account rather than opening it.
        Err(e) => {
            tracing::error!(error = %e, "argon2 could not hash a password");
            String::new()
        }
    }
}

pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the time a real check takes, for an email with no user, so the answer's timing does
/// not tell which emails have accounts.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("billmirror-no-such-user"));
    let _ = verify(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!verify("anything", ""));
        assert_ne!(stored, hash("correct horse battery"), "salted");
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("twelve chars").is_ok());
        assert_eq!(generate().expose().len(), 24);
    }
}
