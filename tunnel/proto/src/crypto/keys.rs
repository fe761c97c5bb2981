//! Session keys: what a finished handshake hands to the data plane.

/// Per-direction symmetric keys of one session, derived by the handshake
/// (HKDF-SHA256 over the X25519 shared secret, salted with RECEIPT).
/// Both peers derive the same pair, each seeing it from its own side:
/// one's `send` is the other's `receive`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Key that seals what this side sends.
    pub send: [u8; 32],
    /// Key that opens what the peer sends.
    pub receive: [u8; 32],
    /// Identifier of the session, the same on both sides (taken from
    /// RECEIPT); carried in data packet headers so that an old and a new
    /// session can overlap during a rekey.
    pub session_id: u64,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SessionKeys")
            .field("session_id", &format_args!("{:016x}", self.session_id))
            .finish_non_exhaustive()
    }
}
