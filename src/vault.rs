//! Secrets at rest: Stripe secret keys and webhook signing secrets are stored sealed with
//! AES-256-GCM under a master key that never enters the database. Each value is bound to where it
//! belongs (connection and field) as associated data, so a sealed value copied into another row
//! does not open there.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::domain::{ids, Secret};
use crate::storage::DatabaseTarget;

const VERSION: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "BILLMIRROR_MASTER_KEY is not set: with PostgreSQL it is required (64 hex characters; \
         `openssl rand -hex 32` makes one), so that every instance opens the same secrets"
    )]
    MasterKeyRequired,
    #[error("the master key file {path} cannot be used: {problem}")]
    KeyFile { path: String, problem: String },
    #[error(
        "a stored secret does not open with this master key: BILLMIRROR_MASTER_KEY (or the key \
         file) is not the one the secrets were sealed with"
    )]
    WrongKey,
    #[error("a stored secret is damaged: {0}")]
    Damaged(&'static str),
}

/// Where the master key came from, for the one start-up line that says so.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    ExistingFile(PathBuf),
    CreatedFile(PathBuf),
}

#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
    /// Keys the fingerprints of secret keys; derived from the master key, so a copy of the
    /// database alone cannot confirm a guessed key against a fingerprint.
    fingerprint_key: [u8; 32],
}

/// The label the fingerprint key is derived under: one master key, separate keys per use.
const FINGERPRINT_LABEL: &[u8] = b"billmirror/secret-key-fingerprint/v1";

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length; `new_from_slice` cannot fail for HMAC.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Parses 64 hexadecimal characters into the 32-byte key; `None` for anything else.
pub fn parse_master_key(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key.trim()).ok()?.try_into().ok()
}

impl Vault {
    pub fn new(key: [u8; 32]) -> Vault {
        Vault {
            cipher: Aes256Gcm::new(&key.into()),
            fingerprint_key: hmac_sha256(&key, FINGERPRINT_LABEL),
        }
    }

    /// A stable, keyed fingerprint of a secret (hex HMAC-SHA256): equal secrets have equal
    /// fingerprints, and the secret cannot be read back from it. Used to connect a key only once.
    pub fn fingerprint(&self, secret: &Secret) -> String {
        hex::encode(hmac_sha256(
            &self.fingerprint_key,
            secret.expose().as_bytes(),
        ))
    }

    /// The vault for this configuration: the configured key; else, on SQLite, the key file
    /// beside the database, created on first use with mode 0600; with PostgreSQL a configured
    /// key is required (instances share the database but not a file).
    pub fn load(
        master_key: Option<&Secret>,
        database: &DatabaseTarget,
    ) -> Result<(Vault, KeySource), VaultError> {
        if let Some(key) = master_key {
            let key = parse_master_key(key.expose()).ok_or(VaultError::WrongKey)?;
            return Ok((Vault::new(key), KeySource::Environment));
        }
        let DatabaseTarget::Sqlite(db_path) = database else {
            return Err(VaultError::MasterKeyRequired);
        };
        let path = PathBuf::from(format!("{db_path}.key"));
        let problem = |problem: String| VaultError::KeyFile {
            path: path.display().to_string(),
            problem,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = parse_master_key(&text)
                    .ok_or_else(|| problem("it does not hold 64 hex characters".into()))?;
                Ok((Vault::new(key), KeySource::ExistingFile(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ids::random_bytes::<32>();
                write_private(&path, &hex::encode(key)).map_err(|e| problem(e.to_string()))?;
                Ok((Vault::new(key), KeySource::CreatedFile(path)))
            }
            Err(e) => Err(problem(e.to_string())),
        }
    }

    /// Seals `secret` for the place named by `context` (`connection_id/field`).
    pub fn seal(&self, secret: &Secret, context: &str) -> String {
        let nonce = ids::random_bytes::<12>();
        let payload = Payload {
            msg: secret.expose().as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only for inputs of gigabytes; a key is a hundred bytes.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        format!("{VERSION}.{}.{}", hex::encode(nonce), hex::encode(sealed))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, VaultError> {
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(nonce), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VaultError::Damaged("unknown format"));
        };
        let nonce = hex::decode(nonce).map_err(|_| VaultError::Damaged("bad nonce"))?;
        let body = hex::decode(body).map_err(|_| VaultError::Damaged("bad body"))?;
        if nonce.len() != 12 {
            return Err(VaultError::Damaged("bad nonce"));
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| VaultError::WrongKey)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| VaultError::Damaged("not UTF-8"))
    }
}

/// Creates `path` readable and writable by its owner only, failing if it already exists.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_in_its_place() {
        let vault = Vault::new([7; 32]);
        let secret = Secret::new("sk_test_51HxYzAbCdEfGhIjKlMn4f2a");
        let sealed = vault.seal(&secret, "conn_1/secret_key");
        assert!(!sealed.contains("51HxYz"));
        assert_eq!(vault.open(&sealed, "conn_1/secret_key").unwrap(), secret);
        assert!(vault.open(&sealed, "conn_2/secret_key").is_err());
        assert!(Vault::new([8; 32])
            .open(&sealed, "conn_1/secret_key")
            .is_err());
        // Two seals of one value differ: the nonce is fresh each time.
        assert_ne!(sealed, vault.seal(&secret, "conn_1/secret_key"));
    }

    #[test]
    fn a_fingerprint_is_stable_keyed_and_reveals_nothing() {
        let vault = Vault::new([7; 32]);
        let key = Secret::new("sk_test_51HxYzAbCdEfGhIjKlMn4f2a");
        let print = vault.fingerprint(&key);
        assert_eq!(print.len(), 64);
        assert_eq!(print, Vault::new([7; 32]).fingerprint(&key));
        assert!(!print.contains("51HxYz"));
        assert_ne!(
            print,
            vault.fingerprint(&Secret::new("sk_test_51HxYzAbCdEfGhIjKlMn4f2b"))
        );
        assert_ne!(
            print,
            Vault::new([8; 32]).fingerprint(&key),
            "keyed by the master key"
        );
    }

    #[test]
    fn without_a_configured_key_sqlite_gets_a_private_key_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db").display().to_string();
        let target = DatabaseTarget::Sqlite(db.clone());
        let (first, source) = Vault::load(None, &target).unwrap();
        let path = PathBuf::from(format!("{db}.key"));
        assert_eq!(source, KeySource::CreatedFile(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = Vault::load(None, &target).unwrap();
        assert_eq!(source, KeySource::ExistingFile(path));
        let sealed = first.seal(&Secret::new("whsec_x"), "c/w");
        assert_eq!(second.open(&sealed, "c/w").unwrap().expose(), "whsec_x");
    }

    #[test]
    fn postgres_requires_a_configured_master_key() {
        let target = DatabaseTarget::Postgres("postgres://u@h/db".into());
        assert!(matches!(
            Vault::load(None, &target),
            Err(VaultError::MasterKeyRequired)
        ));
    }
}
