//! The cryptography of tgp, each piece with its own tests:
//! - identities: Ed25519 signing and verifying keys (ed25519-dalek);
//! - [`kdf`]: domain-separated hashing, HKDF-SHA256 session secrets from
//!   the X25519 shared secret salted with RECEIPT, key-confirmation tags;
//! - [`keys`]: the per-direction session keys a handshake hands over;
//! - [`aead`]: sealing and opening data packets in the caller's buffer
//!   (AES-256-GCM or ChaCha20-Poly1305, via ring);
//! - [`replay`]: the sliding replay window.

pub mod aead;
pub mod kdf;
pub mod keys;
pub mod replay;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use kdf::{domain_hash, Hash};
