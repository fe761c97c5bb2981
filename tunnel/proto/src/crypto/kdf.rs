//! Derivations of the handshake: domain-separated hashing of proof
//! artifacts, the HKDF derivation of session keys from the X25519 shared
//! secret, and the key-confirmation tag.
//!
//! Everything here is deterministic given its inputs; randomness (nonces,
//! ephemeral keys) is drawn by the caller's RNG in the handshake.

use super::keys::SessionKeys;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Hashes `parts` under a domain tag, so that a digest made for one purpose
/// can never be mistaken for one made for another.
pub fn domain_hash(domain: &[u8], parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    // Length-prefix the domain so that no domain is a prefix of another.
    hasher.update([domain.len() as u8]);
    hasher.update(domain);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Everything the handshake derives once RECEIPT exists (wiped when
/// dropped).
pub struct DerivedSecrets {
    /// The per-direction data keys, seen from this side.
    pub session_keys: SessionKeys,
    /// Key for this side's key-confirmation tag (see [`confirmation_tag`]).
    pub own_confirmation_key: [u8; 32],
    /// Key for the peer's key-confirmation tag.
    pub peer_confirmation_key: [u8; 32],
}

impl Drop for DerivedSecrets {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.own_confirmation_key);
        zeroize::Zeroize::zeroize(&mut self.peer_confirmation_key);
    }
}

/// Derives the session secrets: HKDF-SHA256 with RECEIPT as salt and the
/// X25519 shared secret as input keying material. `we_are_first` says
/// whether this side's identity key sorts first; the first side's send key
/// is the second side's receive key, so both derive the same pair.
pub fn derive_session_secrets(
    shared_secret: &[u8; 32],
    receipt: &Hash,
    we_are_first: bool,
) -> DerivedSecrets {
    let hkdf = Hkdf::<Sha256>::new(Some(receipt), shared_secret);
    let mut okm = [0u8; 32 * 4 + 8];
    hkdf.expand(b"tgp v1 session keys", &mut okm)
        .expect("136 bytes is far below HKDF-SHA256's 8160-byte limit");
    let take = |index: usize| -> [u8; 32] {
        let mut key = [0u8; 32];
        key.copy_from_slice(&okm[index * 32..index * 32 + 32]);
        key
    };
    let (first_to_second, second_to_first) = (take(0), take(1));
    let (first_confirms, second_confirms) = (take(2), take(3));
    let mut session_id = [0u8; 8];
    session_id.copy_from_slice(&okm[128..136]);
    zeroize::Zeroize::zeroize(&mut okm);
    let session_id = u64::from_be_bytes(session_id);
    if we_are_first {
        DerivedSecrets {
            session_keys: SessionKeys {
                send: first_to_second,
                receive: second_to_first,
                session_id,
            },
            own_confirmation_key: first_confirms,
            peer_confirmation_key: second_confirms,
        }
    } else {
        DerivedSecrets {
            session_keys: SessionKeys {
                send: second_to_first,
                receive: first_to_second,
                session_id,
            },
            own_confirmation_key: second_confirms,
            peer_confirmation_key: first_confirms,
        }
    }
}

/// The key-confirmation tag a side sends to show it holds RECEIPT and the
/// session keys: HMAC-SHA256 under that side's confirmation key.
pub fn confirmation_tag(confirmation_key: &[u8; 32], receipt: &Hash) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, confirmation_key);
    let tag = ring::hmac::sign(&key, receipt);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks a key-confirmation tag in constant time.
pub fn confirmation_tag_is_valid(confirmation_key: &[u8; 32], receipt: &Hash, tag: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, confirmation_key);
    ring::hmac::verify(&key, receipt, tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_mirrored_keys() {
        let secret = [7u8; 32];
        let receipt = [9u8; 32];
        let first = derive_session_secrets(&secret, &receipt, true);
        let second = derive_session_secrets(&secret, &receipt, false);
        assert_eq!(first.session_keys.send, second.session_keys.receive);
        assert_eq!(first.session_keys.receive, second.session_keys.send);
        assert_ne!(first.session_keys.send, first.session_keys.receive);
        assert_eq!(
            first.session_keys.session_id,
            second.session_keys.session_id
        );
        assert_eq!(first.own_confirmation_key, second.peer_confirmation_key);
    }

    #[test]
    fn domains_separate_hashes() {
        assert_ne!(domain_hash(b"a", &[b"bc"]), domain_hash(b"ab", &[b"c"]));
    }

    #[test]
    fn confirmation_tag_checks() {
        let key = [1u8; 32];
        let receipt = [2u8; 32];
        let tag = confirmation_tag(&key, &receipt);
        assert!(confirmation_tag_is_valid(&key, &receipt, &tag));
        assert!(!confirmation_tag_is_valid(&[3u8; 32], &receipt, &tag));
        assert!(!confirmation_tag_is_valid(&key, &receipt, &tag[..31]));
    }
}
