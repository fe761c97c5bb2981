//! Why a handshake packet (or an artifact in it) was dropped, what one
//! packet did ([`Received`]), and the handshake's counters
//! ([`HandshakeStats`]).

use crate::wire::codec::CodecError;
use crate::wire::handshake::HandshakePacketError;

/// Why a received handshake packet (or one artifact in it) was dropped.
/// Every drop is counted in [`HandshakeStats::drops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Shorter than its own length fields say.
    #[error("truncated packet")]
    Truncated,
    /// Lengths, counts or kinds that no valid packet has.
    #[error("malformed packet")]
    Malformed,
    /// Not a handshake packet at all.
    #[error("not a handshake packet")]
    NotHandshake,
    /// A protocol version we do not speak.
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    /// Sent by, or addressed to, an identity key other than the configured
    /// peer's and ours.
    #[error("unknown identity key")]
    UnknownPeer,
    /// A signature that does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A proof whose hashes do not link to this session's proofs (a replay
    /// from an earlier session, or a forgery).
    #[error("proof belongs to another session")]
    WrongSession,
    /// A proof whose signer's lower proof we do not hold.
    #[error("lower proof missing")]
    MissingLowerProof,
    /// A commitment with session parameters other than ours.
    #[error("session parameters differ")]
    ParameterMismatch,
    /// A commitment whose timestamp is too far from our clock.
    #[error("commitment timestamp outside the allowed clock skew")]
    ClockSkew,
    /// A commitment not newer than the one we hold.
    #[error("stale commitment")]
    StaleCommitment,
    /// A newer commitment than ours from the peer (it restarted, or began a
    /// new handshake), arriving after this handshake went past D: the owner
    /// should start a new handshake for it.
    #[error("newer commitment: the peer started a new handshake")]
    NewerCommitment,
    /// A key-confirmation tag that does not verify.
    #[error("bad key confirmation")]
    BadConfirmation,
    /// A key-confirmation tag we cannot check yet (we hold no RECEIPT).
    #[error("key confirmation before RECEIPT")]
    PrematureConfirmation,
    /// The handshake has aborted or finished lingering.
    #[error("handshake already finished")]
    Finished,
    /// A new commitment from an address that has not proven it receives,
    /// while the responder is under load: a retry (cookie) was sent
    /// instead of any signature work.
    #[error("cookie required: the responder is under load")]
    CookieRequired,
    /// A new commitment beyond the handshake work allowed per source or in
    /// all (dropped before any signature work).
    #[error("handshake rate limit")]
    RateLimited,
}

impl From<HandshakePacketError> for DropReason {
    fn from(error: HandshakePacketError) -> Self {
        match error {
            HandshakePacketError::Truncated => DropReason::Truncated,
            HandshakePacketError::Malformed => DropReason::Malformed,
            HandshakePacketError::NotHandshake => DropReason::NotHandshake,
            HandshakePacketError::UnsupportedVersion => DropReason::UnsupportedVersion,
        }
    }
}

impl From<CodecError> for DropReason {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated => DropReason::Truncated,
            CodecError::BadVarint => DropReason::Malformed,
        }
    }
}

impl DropReason {
    /// Every reason, for listing counters.
    pub const ALL: [DropReason; 17] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::NotHandshake,
        DropReason::UnsupportedVersion,
        DropReason::UnknownPeer,
        DropReason::BadSignature,
        DropReason::WrongSession,
        DropReason::MissingLowerProof,
        DropReason::ParameterMismatch,
        DropReason::ClockSkew,
        DropReason::StaleCommitment,
        DropReason::NewerCommitment,
        DropReason::BadConfirmation,
        DropReason::PrematureConfirmation,
        DropReason::Finished,
        DropReason::CookieRequired,
        DropReason::RateLimited,
    ];

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// A short stable name for logs and `tgp status`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::NotHandshake => "not_handshake",
            DropReason::UnsupportedVersion => "unsupported_version",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::BadSignature => "bad_signature",
            DropReason::WrongSession => "wrong_session",
            DropReason::MissingLowerProof => "missing_lower_proof",
            DropReason::ParameterMismatch => "parameter_mismatch",
            DropReason::ClockSkew => "clock_skew",
            DropReason::StaleCommitment => "stale_commitment",
            DropReason::NewerCommitment => "newer_commitment",
            DropReason::BadConfirmation => "bad_confirmation",
            DropReason::PrematureConfirmation => "premature_confirmation",
            DropReason::Finished => "finished",
            DropReason::CookieRequired => "cookie_required",
            DropReason::RateLimited => "rate_limited",
        }
    }
}

/// What one received packet did to a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Received {
    /// Artifacts of the peer accepted for the first time: the packet moved
    /// the handshake on (so it came from the peer, not from a replay of
    /// what we already hold).
    pub new_artifacts: u32,
    /// Among them a proof of level D or higher: it links to our own fresh
    /// proofs, so its sender received what we sent (the source address is
    /// validated; a commitment alone proves nothing, it may be a replay).
    pub proves_peer: bool,
    /// Why the packet, or its artifacts after the ones accepted, was
    /// dropped.
    pub dropped: Option<DropReason>,
}

impl Received {
    /// `Err` with the drop reason if any part of the packet was dropped.
    pub fn result(self) -> Result<(), DropReason> {
        self.dropped.map_or(Ok(()), Err)
    }

    /// Whether the packet carried anything new.
    pub fn progressed(self) -> bool {
        self.new_artifacts > 0
    }
}

/// Counters of one handshake.
#[derive(Clone, Debug, Default)]
pub struct HandshakeStats {
    /// Packets sent.
    pub packets_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Packets received (valid or not).
    pub packets_received: u64,
    /// Peer artifacts accepted after verification.
    pub artifacts_accepted: u64,
    /// Peer artifacts received again after acceptance (flooded copies).
    pub duplicate_artifacts: u64,
    /// Ed25519 signature verifications performed.
    pub signature_verifications: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    drops: [u64; DropReason::ALL.len()],
}

impl HandshakeStats {
    /// How many packets or artifacts were dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops, summed.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(super) fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }
}
