//! Why a packet, an item or a signature was dropped ([`DropReason`]), what
//! one packet did ([`Received`]), and a replica's counters ([`BftStats`]).

use crate::wire::WireError;

/// Why a received packet (or one artifact in it) was dropped. Every drop
/// is counted in [`BftStats::drops`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Shorter than its own fields say.
    #[error("truncated packet")]
    Truncated,
    /// Fields no valid packet has.
    #[error("malformed packet")]
    Malformed,
    /// Not a TGP-BFT packet.
    #[error("not a TGP-BFT packet")]
    NotBft,
    /// A wire version we do not speak.
    #[error("unsupported version")]
    UnsupportedVersion,
    /// For another membership (group tag differs).
    #[error("packet for another group")]
    WrongGroup,
    /// For another instance.
    #[error("packet for another instance")]
    WrongInstance,
    /// A sender index outside the membership, or our own.
    #[error("unknown sender index")]
    UnknownSender,
    /// The sender index differs from the member the caller says the
    /// datagram came from.
    #[error("sender index does not match the source")]
    SenderMismatch,
    /// A signature that does not verify (a forgery, or an artifact of
    /// another instance or membership).
    #[error("bad signature")]
    BadSignature,
    /// A round at or past `max_rounds`.
    #[error("round beyond max_rounds")]
    RoundTooHigh,
    /// A proposal in round 0 (which has none) or justified by a round not
    /// before its own.
    #[error("invalid proposal")]
    InvalidProposal,
    /// A third vote of one signer in one (phase, round), or a second
    /// proposal of one proposer in one round (both validly signed or not:
    /// not stored).
    #[error("equivocation beyond what is kept")]
    Equivocation,
    /// The replica has finished (decided, lingered and answered).
    #[error("replica finished")]
    Finished,
}

impl From<WireError> for DropReason {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Truncated => DropReason::Truncated,
            WireError::Malformed => DropReason::Malformed,
            WireError::NotBft => DropReason::NotBft,
            WireError::UnsupportedVersion => DropReason::UnsupportedVersion,
        }
    }
}

impl DropReason {
    /// Every reason, for listing counters.
    pub const ALL: [DropReason; 13] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::NotBft,
        DropReason::UnsupportedVersion,
        DropReason::WrongGroup,
        DropReason::WrongInstance,
        DropReason::UnknownSender,
        DropReason::SenderMismatch,
        DropReason::BadSignature,
        DropReason::RoundTooHigh,
        DropReason::InvalidProposal,
        DropReason::Equivocation,
        DropReason::Finished,
    ];

    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// A short stable name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::NotBft => "not_bft",
            DropReason::UnsupportedVersion => "unsupported_version",
            DropReason::WrongGroup => "wrong_group",
            DropReason::WrongInstance => "wrong_instance",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::SenderMismatch => "sender_mismatch",
            DropReason::BadSignature => "bad_signature",
            DropReason::RoundTooHigh => "round_too_high",
            DropReason::InvalidProposal => "invalid_proposal",
            DropReason::Equivocation => "equivocation",
            DropReason::Finished => "finished",
        }
    }
}

/// What one received packet did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Received {
    /// Artifacts (votes, proposals) accepted for the first time.
    pub new_artifacts: u32,
    /// Artifacts already held (flooded copies).
    pub duplicates: u32,
    /// Drops in this packet: the whole packet (then nothing else counts)
    /// or individual artifacts.
    pub drops: u32,
    /// The first drop's reason.
    pub first_drop: Option<DropReason>,
}

/// Counters of one replica.
#[derive(Clone, Debug, Default)]
pub struct BftStats {
    /// Packets sent.
    pub packets_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Packets received (valid or not).
    pub packets_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Artifacts accepted after verification.
    pub artifacts_accepted: u64,
    /// Artifacts received again (cost a lookup, no verification).
    pub duplicates: u64,
    /// Votes not verified because they no longer matter: prevotes, and
    /// precommits for the decided value, arriving after the decision.
    pub ignored_after_decision: u64,
    /// Ed25519 verifications performed.
    pub signature_verifications: u64,
    /// Signatures this replica made.
    pub signatures_made: u64,
    /// Signers seen voting for two values in one (phase, round): proof of
    /// a Byzantine member (both votes are kept).
    pub equivocations_seen: u64,
    /// Quorums of precommits for a value other than the decided one: only
    /// possible with more than f Byzantine members. Never seen in the
    /// simulation suite (asserted).
    pub conflicting_certificates: u64,
    /// Rounds entered after round 0.
    pub rounds_entered: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    drops: [u64; DropReason::ALL.len()],
}

impl BftStats {
    /// Drops for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }
}
