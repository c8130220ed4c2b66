//! The master secret: where it comes from (passphrase through argon2id, a key file, the environment,
//! or a development key file created on first start) and how it is derived.

use std::fmt;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::{CryptoError, Result, SecretBytes};

/// Name of the development key file created in a new data directory when no secret is configured.
pub const DEV_KEY_FILE: &str = "master.key";

/// Where the master secret comes from.
#[derive(Clone)]
pub enum MasterSource {
    /// A passphrase, stretched with argon2id; the salt and parameters live in the key store.
    Passphrase(String),
    /// A file holding 64 hexadecimal characters (32 bytes).
    KeyFile(PathBuf),
    /// 64 hexadecimal characters given directly (for `LETHE_MASTER_KEY`).
    Hex(String),
    /// `<data-dir>/master.key`, created on first start. For development only: the key sits next
    /// to the data it protects.
    DevKeyFile,
}

impl fmt::Debug for MasterSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
            Self::KeyFile(p) => f.debug_tuple("KeyFile").field(p).finish(),
            Self::Hex(_) => f.write_str("Hex(<redacted>)"),
            Self::DevKeyFile => f.write_str("DevKeyFile"),
        }
    }
}

impl MasterSource {
    /// Reads the source from the environment: `LETHE_MASTER_KEY` (hex), `LETHE_MASTER_KEY_FILE`,
    /// `LETHE_PASSPHRASE`, in that order; otherwise the development key file.
    pub fn from_env() -> Self {
        if let Ok(hex) = std::env::var("LETHE_MASTER_KEY") {
            Self::Hex(hex)
        } else if let Ok(path) = std::env::var("LETHE_MASTER_KEY_FILE") {
            Self::KeyFile(PathBuf::from(path))
        } else if let Ok(pass) = std::env::var("LETHE_PASSPHRASE") {
            Self::Passphrase(pass)
        } else {
            Self::DevKeyFile
        }
    }
}

/// Parameters of argon2id, stored with the key store so that a passphrase keeps deriving the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: String,
}

impl KdfParams {
    /// The minimum Lethe accepts: OWASP's argon2id floor (19 MiB, 2 passes, 1 lane).
    pub const MIN_M_KIB: u32 = 19 * 1024;
    pub const MIN_T: u32 = 2;

    /// Fresh parameters with a random salt.
    pub fn fresh() -> Self {
        Self {
            algorithm: "argon2id".into(),
            m_kib: Self::MIN_M_KIB,
            t: Self::MIN_T,
            p: 1,
            salt: hex::encode(crate::random_bytes::<16>()),
        }
    }

    /// Derives the master secret from a passphrase.
    ///
    /// # Errors
    /// Parameters below the floor, a bad salt, or an argon2 failure.
    pub fn derive(&self, passphrase: &str) -> Result<SecretBytes> {
        if self.algorithm != "argon2id" || self.m_kib < Self::MIN_M_KIB || self.t < Self::MIN_T || self.p < 1 {
            return Err(CryptoError::Kdf(format!(
                "argon2id with m >= {} KiB and t >= {} required",
                Self::MIN_M_KIB,
                Self::MIN_T
            )));
        }
        let salt = hex::decode(&self.salt).map_err(|e| CryptoError::Kdf(format!("salt: {e}")))?;
        let params = Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, &mut out)
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(SecretBytes::new(out))
    }
}

pub(crate) fn parse_hex_key(text: &str) -> Result<SecretBytes> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| CryptoError::InvalidMasterSecret("expected 64 hexadecimal characters".into()))?;
    Ok(SecretBytes::new(out))
}

pub(crate) fn read_key_file(path: &Path) -> Result<SecretBytes> {
    let text = std::fs::read_to_string(path).map_err(CryptoError::io(path))?;
    parse_hex_key(&text).map_err(|_| CryptoError::Malformed {
        path: path.to_owned(),
        reason: "expected 64 hexadecimal characters".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_is_deterministic_and_salted() {
        let p = KdfParams::fresh();
        let a = p.derive("correct horse").unwrap();
        let b = p.derive("correct horse").unwrap();
        assert_eq!(a, b);
        let other = KdfParams::fresh();
        assert_ne!(other.derive("correct horse").unwrap(), a);
        assert_ne!(p.derive("wrong horse").unwrap(), a);
    }

    #[test]
    fn weak_kdf_parameters_are_refused() {
        let mut p = KdfParams::fresh();
        p.m_kib = 1024;
        assert!(matches!(p.derive("x"), Err(CryptoError::Kdf(_))));
    }

    #[test]
    fn hex_keys_parse_strictly() {
        assert!(parse_hex_key(&"ab".repeat(32)).is_ok());
        assert!(parse_hex_key("abc").is_err());
        assert!(parse_hex_key(&"zz".repeat(32)).is_err());
    }
}
