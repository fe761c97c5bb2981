//! Ed25519 identity keys and their files.
//!
//! A private key file holds the 32-byte Ed25519 seed as standard base64
//! (44 characters, like a WireGuard key) and a newline. A public key is the
//! base64 of the 32-byte verifying key.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use zeroize::{Zeroize, Zeroizing};

/// Length in bytes of a private key (seed) and of a public key.
pub const KEY_LEN: usize = 32;

/// A key string that is not a valid key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not standard base64 (with `=` padding).
    #[error("is not base64")]
    NotBase64,
    /// Decodes to the wrong number of bytes.
    #[error("decodes to {0} bytes, an Ed25519 key has 32")]
    WrongLength(usize),
    /// 32 bytes, but not a point on the curve.
    #[error("is not a valid Ed25519 public key")]
    NotOnCurve,
}

/// A private key file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be created, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The file already exists; keys are never overwritten.
    #[error("{path} already exists; refusing to overwrite a key (remove it first if you mean it)")]
    Exists {
        /// The file.
        path: String,
    },
    /// The file's contents are not a private key.
    #[error("{path}: the private key {source}")]
    BadKey {
        /// The file.
        path: String,
        /// Why the contents are not a key.
        source: KeyError,
    },
}

/// A new random private key from the operating system's CSPRNG.
pub fn generate_private_key() -> SigningKey {
    SigningKey::generate(&mut OsRng)
}

/// Base64 of 32 key bytes.
pub fn encode_key(bytes: &[u8; KEY_LEN]) -> String {
    BASE64.encode(bytes)
}

/// The base64 public key of a private key.
pub fn public_key_base64(private: &SigningKey) -> String {
    encode_key(private.verifying_key().as_bytes())
}

fn decode_32(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = Zeroizing::new(
        BASE64
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64)?,
    );
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength(bytes.len()))
}

/// Parse a base64 private key (the seed); surrounding whitespace is ignored.
/// The seed's copies are wiped (the key itself wipes on drop).
pub fn decode_private_key(text: &str) -> Result<SigningKey, KeyError> {
    decode_32(text).map(|mut seed| {
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        key
    })
}

/// Parse a base64 public key; surrounding whitespace is ignored.
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = decode_32(text)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotOnCurve)
}

/// What a private key file contains: base64 seed and a newline (wiped
/// when dropped).
pub fn private_key_file_contents(private: &SigningKey) -> Zeroizing<String> {
    let seed = Zeroizing::new(private.to_bytes());
    let encoded = Zeroizing::new(encode_key(&seed));
    Zeroizing::new(format!("{}\n", encoded.as_str()))
}

/// Create `path` with mode 0600 and write a new private key into it.
/// Refuses if the file exists (even if empty). Returns the key.
pub fn write_new_private_key_file(path: &Path) -> Result<SigningKey, KeyFileError> {
    let shown = path.display().to_string();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: shown.clone(),
                }
            } else {
                KeyFileError::Io {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
    let key = generate_private_key();
    let written = file
        .write_all(private_key_file_contents(&key).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // Do not leave a half-written key behind.
        let _ = std::fs::remove_file(path);
        return Err(KeyFileError::Io {
            path: shown,
            source,
        });
    }
    Ok(key)
}

/// Read a private key file.
pub fn read_private_key_file(path: &Path) -> Result<SigningKey, KeyFileError> {
    let shown = path.display().to_string();
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
                path: shown.clone(),
                source,
            })?,
        );
    decode_private_key(&text).map_err(|source| KeyFileError::BadKey {
        path: shown,
        source,
    })
}

/// Whether group or others may access the file (a private key should be
/// mode 0600 or stricter).
pub fn is_readable_by_others(path: &Path) -> io::Result<bool> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = generate_private_key();
        let text = private_key_file_contents(&key);
        assert_eq!(text.len(), 45);
        assert!(text.ends_with('\n'));
        let back = decode_private_key(&text).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        let public = decode_public_key(&public_key_base64(&key)).unwrap();
        assert_eq!(public, key.verifying_key());
    }

    #[test]
    fn known_seed_gives_known_public_key() {
        // RFC 8032 section 7.1, test 1.
        let seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
        let public = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        let key = decode_private_key(seed).unwrap();
        assert_eq!(public_key_base64(&key), public);
    }

    #[test]
    fn bad_keys_say_why() {
        assert_eq!(
            decode_public_key("not base64!").unwrap_err(),
            KeyError::NotBase64
        );
        assert_eq!(
            decode_public_key("AAAA").unwrap_err(),
            KeyError::WrongLength(3)
        );
        assert_eq!(
            decode_private_key(&BASE64.encode([1u8; 31])).unwrap_err(),
            KeyError::WrongLength(31)
        );
    }

    #[test]
    fn genkey_file_is_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = write_new_private_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!is_readable_by_others(&path).unwrap());
        assert_eq!(
            read_private_key_file(&path).unwrap().to_bytes(),
            key.to_bytes()
        );
        assert!(matches!(
            write_new_private_key_file(&path),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(
            read_private_key_file(&path).unwrap().to_bytes(),
            key.to_bytes()
        );
    }
}
