//! Session keys: what a finished handshake hands to the data plane. Every
//! copy is wiped when dropped (`zeroize`); so are the confirmation keys,
//! the HKDF output, the X25519 ephemeral secret and the shared secret
//! (x25519-dalek's `zeroize` feature), and the identity key
//! (ed25519-dalek's). ring wipes its own expanded AEAD keys.

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

impl SessionKeys {
    /// Both ends of one session from its two direction keys, as a
    /// handshake would derive them: the first side sends with
    /// `first_to_second`, the second with `second_to_first`. For tests and
    /// the simulator, which set sessions up without a handshake.
    pub fn pair(
        first_to_second: [u8; 32],
        second_to_first: [u8; 32],
        session_id: u64,
    ) -> (SessionKeys, SessionKeys) {
        (
            SessionKeys {
                send: first_to_second,
                receive: second_to_first,
                session_id,
            },
            SessionKeys {
                send: second_to_first,
                receive: first_to_second,
                session_id,
            },
        )
    }
}

impl Drop for SessionKeys {
    /// Key material does not outlive the keys (every copy is wiped).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.send);
        zeroize::Zeroize::zeroize(&mut self.receive);
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SessionKeys")
            .field("session_id", &format_args!("{:016x}", self.session_id))
            .finish_non_exhaustive()
    }
}
