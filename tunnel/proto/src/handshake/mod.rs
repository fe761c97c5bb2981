//! The TGP handshake: the Two Generals "Full Solve" between two peers that
//! know each other's Ed25519 identity keys, ending in an authenticated
//! session with per-direction keys.
//!
//! # The proofs
//!
//! Each side X builds, in order (see [`artifact`]):
//!
//! | proof | built when X holds | signs |
//! |---|---|---|
//! | C_X | — (at start) | version, both identity keys, 32 fresh random bytes, an X25519 ephemeral key, the session parameters, a timestamp, the session it continues (0 if fresh) |
//! | D_X | C_Y | h(C_X), h(C_Y) |
//! | T_X | D_X, D_Y | h(D_X), h(D_Y) |
//! | Q_X | T_X, T_Y | h(T_X), h(T_Y) |
//! | Q_CONF_X | Q_X | h(Q_X), h(T_Y) |
//! | Q_CONF_FINAL_X | Q_CONF_X, Q_CONF_Y, *before the cut-off* | h(Q_CONF_X), h(Q_CONF_Y) |
//! | RECEIPT | Q_CONF_FINAL_X, Q_CONF_FINAL_Y, *before the deadline* | (local) h(Q_CONF_FINAL_A ‖ Q_CONF_FINAL_B) |
//!
//! Every higher proof signs hashes plus a level tag, never the lower
//! proofs' bytes, so each is 128 bytes. A received proof is accepted only
//! when its signature verifies *and* both hashes link to proofs already
//! held: its signer's lower proof (verified earlier, usually stapled in the
//! same packet) and our own proof it claims to build on. Because our C
//! contains fresh randomness, a proof recorded in an earlier session links
//! to an old C and is refused ([`DropReason::WrongSession`]): a replayed
//! transcript cannot establish a new session. Signature checks are cached
//! by artifact hash, so a flooded duplicate costs a hash, not a signature
//! verification.
//!
//! # Flooding
//!
//! Every `flood_interval` a side sends one packet stapling each of its
//! proofs that the peer has not yet shown it holds (a peer proof of level L
//! shows it holds ours of level [`Level::peer_reference`]), so a single
//! received packet lets the peer catch up. Once a side holds RECEIPT it
//! adds a key-confirmation tag (HMAC under a key derived with the session
//! keys) and keeps stapling Q_CONF_FINAL until the peer's confirmation tag
//! (or, in a running tunnel, an authenticated data packet — see
//! [`Handshake::peer_confirmed`]) shows the peer holds RECEIPT too. After
//! that it stops flooding but still answers any packet that shows the peer
//! lacking something, until `linger` after the deadline.
//!
//! # Decision, cut-off and the bound on asymmetric outcomes
//!
//! A side may use the session as soon as it builds RECEIPT
//! ([`HandshakeEvent::Usable`]). The formal outcome is fixed at the
//! **deadline**: established if RECEIPT was built by then, aborted
//! otherwise. Neither side builds its own Q_CONF_FINAL after the **cut-off**
//! (deadline − margin).
//!
//! So a side X holding RECEIPT built Q_CONF_FINAL_X before its cut-off,
//! and the peer Y also built Q_CONF_FINAL_Y (X received it). The only
//! asymmetric outcome left is X established and Y aborted because Y never
//! received Q_CONF_FINAL_X before Y's deadline. X staples Q_CONF_FINAL_X to
//! every packet it floods from building it until it sees Y's confirmation,
//! which cannot come; that is at least `margin − one-way delay` of flooding
//! before Y's deadline (with both deadlines aligned), i.e. at least
//! `n = ⌊r · (margin − delay)⌋` copies at flood rate r. With independent
//! loss p per packet, the asymmetric outcome needs every one of them lost:
//!
//! > P(asymmetric) ≤ p^n ≈ p^(r·margin) per handshake (for either side,
//! > so at most 2·p^n for the pair).
//!
//! With the defaults (5 ms interval, 5 s margin, n ≈ 1000) that is below
//! 10⁻⁹ even at 98 % loss. It is not zero, and no finite protocol can make
//! it zero: this is the Two Generals impossibility (Gray 1978; Halpern and
//! Moses 1990) — whoever receives the last message first is done while the
//! other may not be. The protocol bounds that probability; it does not
//! escape it. Bursty loss, or an attacker dropping packets, is not
//! independent loss and the bound does not hold against them. The Protocol
//! of Theseus suite (`tests/theseus.rs`) measures the outcome across
//! 10,500 handshakes and shows the asymmetric rate that appears when the
//! margin is shrunk to zero.
//!
//! # Session keys
//!
//! HKDF-SHA256 over the X25519 shared secret of the two ephemeral keys,
//! salted with RECEIPT, one key per direction ([`crate::crypto`]). Both
//! sides derive identical keys.

pub mod artifact;

use crate::crypto::kdf::{
    confirmation_tag, confirmation_tag_is_valid, derive_session_secrets, DerivedSecrets,
};
use crate::crypto::keys::SessionKeys;
use crate::crypto::{Hash, SigningKey, VerifyingKey};
use crate::time::Timestamp;
use crate::wire::codec::CodecError;
use crate::wire::handshake::{ArtifactRef, HandshakePacket, HandshakePacketError};
use artifact::{
    artifact_hash, receipt, Commitment, Level, Proof, SessionParameters, DONE_KIND,
    PROTOCOL_VERSION,
};
use rand_core::{CryptoRng, RngCore};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

pub use crate::wire::handshake::peek_sender;

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
    pub const ALL: [DropReason; 15] = [
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

/// Handshake settings. Both sides must use the same `deadline`,
/// `cutoff_margin` and `max_datagram_size` (they are bound into the
/// commitments); the others are local.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// How often a side floods its proofs: the flood rate is 1 / interval.
    pub flood_interval: Duration,
    /// When the outcome is fixed, from the start of the handshake.
    pub deadline: Duration,
    /// Cut-off = deadline − margin: no own Q_CONF_FINAL is built after it.
    pub cutoff_margin: Duration,
    /// How long after the deadline an established side keeps answering.
    pub linger: Duration,
    /// The largest accepted difference between the peer's commitment
    /// timestamp and our clock.
    pub max_clock_skew: Duration,
    /// Largest UDP payload in the session (a session parameter).
    pub max_datagram_size: u16,
    /// Shift our start back to the peer's (from the elapsed time in its
    /// first authenticated packet), so a responder created on the first
    /// packet shares the initiator's deadline.
    pub align_start_to_peer: bool,
    /// The id of the session this handshake rekeys, bound into our
    /// commitment; `None` for a fresh session. Both sides naming the same
    /// session means the data plane continues under the new keys.
    pub continues_session: Option<u64>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            flood_interval: Duration::from_millis(5),
            deadline: Duration::from_secs(10),
            cutoff_margin: Duration::from_secs(5),
            linger: Duration::from_secs(10),
            max_clock_skew: Duration::from_secs(120),
            max_datagram_size: 1400,
            align_start_to_peer: false,
            continues_session: None,
        }
    }
}

impl HandshakeConfig {
    fn parameters(&self) -> SessionParameters {
        SessionParameters {
            deadline_ms: duration_ms(self.deadline),
            cutoff_margin_ms: duration_ms(self.cutoff_margin),
            max_datagram_size: self.max_datagram_size,
        }
    }
}

fn duration_ms(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Why a handshake could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Our own key was given as the peer's.
    #[error("the peer's identity key is our own; a peer must have its own key")]
    PeerIsSelf,
    /// The cut-off margin does not fit before the deadline.
    #[error("the cut-off margin ({margin:?}) must be shorter than the deadline ({deadline:?})")]
    MarginTooLong {
        /// The configured margin.
        margin: Duration,
        /// The configured deadline.
        deadline: Duration,
    },
    /// A zero flood interval would flood without limit.
    #[error("the flood interval must be greater than zero")]
    ZeroFloodInterval,
}

/// The formal outcome of a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The deadline has not passed.
    Pending,
    /// RECEIPT was built before the deadline.
    Established,
    /// The deadline passed without RECEIPT.
    Aborted,
}

/// What the handshake tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeEvent {
    /// RECEIPT is built: the session may carry data now.
    Usable(SessionKeys),
    /// The deadline passed with RECEIPT built.
    Established,
    /// The deadline passed without RECEIPT.
    Aborted,
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

    fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }
}

/// An artifact we hold: its wire body and its hash.
#[derive(Clone, Debug)]
struct Held {
    body: Vec<u8>,
    hash: Hash,
}

/// Most signature-verification results remembered for refused artifacts.
const REJECTED_CACHE_LIMIT: usize = 1024;

/// One side of one handshake. Sans-IO: feed it packets and time, take
/// packets and events out.
pub struct Handshake {
    config: HandshakeConfig,
    identity: SigningKey,
    own_key: [u8; 32],
    peer_key: VerifyingKey,
    peer_key_bytes: [u8; 32],
    we_are_first: bool,
    ephemeral: StaticSecret,
    started: Timestamp,
    aligned: bool,
    unix_time_at_start_ms: u64,
    own: [Option<Held>; 6],
    peer: [Option<Held>; 6],
    peer_commitment: Option<Commitment>,
    secrets: Option<DerivedSecrets>,
    receipt: Option<Hash>,
    own_confirmation: Option<Vec<u8>>,
    /// Highest level of ours the peer has shown it holds.
    peer_holds: Option<Level>,
    peer_confirmed: bool,
    outcome: Outcome,
    finished: bool,
    usable_at: Option<Timestamp>,
    last_send: Option<Timestamp>,
    answer_pending: bool,
    events: VecDeque<HandshakeEvent>,
    verified: HashSet<Hash>,
    rejected: HashSet<Hash>,
    stats: HandshakeStats,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("outcome", &self.outcome)
            .field("highest_own_level", &self.highest_own_level())
            .field("receipt", &self.receipt.is_some())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake at `now` with the peer whose identity key is
    /// `peer`. `unix_time_ms` is the wall-clock time now (bound into the
    /// commitment and compared with the peer's). `rng` draws the nonce and
    /// the ephemeral key; pass a CSPRNG (the simulator passes a seeded one).
    pub fn new(
        now: Timestamp,
        unix_time_ms: u64,
        identity: SigningKey,
        peer: VerifyingKey,
        config: HandshakeConfig,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, HandshakeError> {
        let own_key = identity.verifying_key().to_bytes();
        let peer_key_bytes = peer.to_bytes();
        if own_key == peer_key_bytes {
            return Err(HandshakeError::PeerIsSelf);
        }
        if config.cutoff_margin >= config.deadline {
            return Err(HandshakeError::MarginTooLong {
                margin: config.cutoff_margin,
                deadline: config.deadline,
            });
        }
        if config.flood_interval.is_zero() {
            return Err(HandshakeError::ZeroFloodInterval);
        }
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let mut ephemeral_bytes = [0u8; 32];
        rng.fill_bytes(&mut ephemeral_bytes);
        let ephemeral = StaticSecret::from(ephemeral_bytes);
        let commitment = Commitment {
            version: PROTOCOL_VERSION,
            signer: own_key,
            peer: peer_key_bytes,
            nonce,
            ephemeral: X25519Public::from(&ephemeral).to_bytes(),
            parameters: config.parameters(),
            unix_time_ms,
            continues_session: config.continues_session.unwrap_or(0),
        };
        let body = commitment.sign_and_encode(&identity);
        let hash = artifact_hash(Level::Commitment as u8, &own_key, &body);
        let mut own: [Option<Held>; 6] = Default::default();
        own[0] = Some(Held { body, hash });
        Ok(Handshake {
            config,
            identity,
            own_key,
            peer_key: peer,
            peer_key_bytes,
            we_are_first: own_key < peer_key_bytes,
            ephemeral,
            started: now,
            aligned: false,
            unix_time_at_start_ms: unix_time_ms,
            own,
            peer: Default::default(),
            peer_commitment: None,
            secrets: None,
            receipt: None,
            own_confirmation: None,
            peer_holds: None,
            peer_confirmed: false,
            outcome: Outcome::Pending,
            finished: false,
            usable_at: None,
            last_send: None,
            answer_pending: false,
            events: VecDeque::new(),
            verified: HashSet::new(),
            rejected: HashSet::new(),
            stats: HandshakeStats::default(),
        })
    }

    /// When the outcome is fixed.
    pub fn deadline(&self) -> Timestamp {
        self.started + self.config.deadline
    }

    /// After this, no own Q_CONF_FINAL is built.
    pub fn cutoff(&self) -> Timestamp {
        self.deadline().saturating_sub(self.config.cutoff_margin)
    }

    /// The formal outcome so far.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Whether RECEIPT has been built (the session is usable).
    pub fn has_receipt(&self) -> bool {
        self.receipt.is_some()
    }

    /// RECEIPT, once built; identical on both sides.
    pub fn receipt(&self) -> Option<&Hash> {
        self.receipt.as_ref()
    }

    /// When RECEIPT was built.
    pub fn usable_at(&self) -> Option<Timestamp> {
        self.usable_at
    }

    /// The session keys, once RECEIPT is built.
    pub fn session_keys(&self) -> Option<&SessionKeys> {
        self.secrets.as_ref().map(|s| &s.session_keys)
    }

    /// The session both commitments say this handshake continues (a
    /// rekey), once the peer's commitment is held; `None` when either side
    /// started fresh or they name different sessions.
    pub fn continued_session(&self) -> Option<u64> {
        let peer = self.peer_commitment.as_ref()?.continues_session;
        let own = self.config.continues_session?;
        (peer == own && own != 0).then_some(own)
    }

    /// The wall-clock start time (Unix ms) in the peer's commitment, once
    /// held. Commitments from one peer are only accepted in increasing
    /// order of this time.
    pub fn peer_commitment_time(&self) -> Option<u64> {
        self.peer_commitment.as_ref().map(|c| c.unix_time_ms)
    }

    /// Our own identity key.
    pub fn own_identity(&self) -> [u8; 32] {
        self.own_key
    }

    /// Counters.
    pub fn stats(&self) -> &HandshakeStats {
        &self.stats
    }

    /// The highest proof level this side has built.
    pub fn highest_own_level(&self) -> Level {
        Level::ALL
            .iter()
            .rev()
            .copied()
            .find(|level| self.own[level.index()].is_some())
            .unwrap_or(Level::Commitment)
    }

    /// Whether the handshake has nothing more to do: aborted, or
    /// established and past its linger time.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The owner saw an authenticated data packet under this session's
    /// keys: the peer holds RECEIPT, so flooding can stop.
    pub fn peer_confirmed(&mut self) {
        if self.receipt.is_some() {
            self.peer_confirmed = true;
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.events.pop_front()
    }

    /// Brings the deadline and linger decisions up to `now`.
    fn advance_time(&mut self, now: Timestamp) {
        if self.outcome == Outcome::Pending && now >= self.deadline() {
            if self.receipt.is_some() {
                self.outcome = Outcome::Established;
                self.events.push_back(HandshakeEvent::Established);
            } else {
                self.outcome = Outcome::Aborted;
                self.finished = true;
                self.events.push_back(HandshakeEvent::Aborted);
            }
        }
        if self.outcome == Outcome::Established && now >= self.deadline() + self.config.linger {
            self.finished = true;
        }
    }

    /// Handles a received handshake datagram. Returns how many new artifacts
    /// of the peer it carried (a packet that moved the handshake on came
    /// from the peer: the caller may treat its source as authenticated for
    /// roaming) and the reason it, or one of its artifacts, was dropped
    /// (also counted in [`Handshake::stats`]).
    pub fn handle_packet(&mut self, now: Timestamp, datagram: &[u8]) -> Received {
        self.stats.packets_received += 1;
        self.advance_time(now);
        let accepted_before = self.stats.artifacts_accepted;
        let result = self.process_packet(now, datagram);
        if let Err(reason) = result {
            self.stats.count_drop(reason);
        }
        Received {
            new_artifacts: (self.stats.artifacts_accepted - accepted_before) as u32,
            dropped: result.err(),
        }
    }

    fn process_packet(&mut self, now: Timestamp, datagram: &[u8]) -> Result<(), DropReason> {
        if self.finished {
            return Err(DropReason::Finished);
        }
        let mut packet = HandshakePacket::parse(datagram)?;
        if packet.sender != self.peer_key_bytes {
            return Err(DropReason::UnknownPeer);
        }
        packet.artifacts.sort_by_key(|a| a.kind);
        let mut outcome = Ok(());
        for &artifact in &packet.artifacts {
            if let Err(reason) = self.accept_artifact(now, artifact, packet.elapsed_ms) {
                outcome = Err(reason);
                break;
            }
            self.build_what_we_can(now);
        }
        // A peer that still staples proofs has not seen our confirmation
        // (a confirmed peer sends the confirmation alone). Only a packet
        // that was valid throughout earns an answer: make sure it
        // hears from us soon even after our own flooding has stopped. A
        // confirmation-only packet needs no answer, so this cannot ping-pong.
        let peer_still_working = packet.artifacts.iter().any(|a| a.kind != DONE_KIND);
        if outcome.is_ok() && peer_still_working && self.outcome != Outcome::Aborted {
            self.answer_pending = true;
        }
        outcome
    }

    fn accept_artifact(
        &mut self,
        now: Timestamp,
        artifact: ArtifactRef<'_>,
        peer_elapsed_ms: u32,
    ) -> Result<(), DropReason> {
        if artifact.kind == DONE_KIND {
            return self.accept_confirmation(artifact.body);
        }
        let level = Level::from_number(artifact.kind).ok_or(DropReason::Malformed)?;
        let hash = artifact_hash(artifact.kind, &self.peer_key_bytes, artifact.body);
        if let Some(held) = &self.peer[level.index()] {
            if held.hash == hash {
                self.stats.duplicate_artifacts += 1;
                self.note_peer_holds(level);
                return Ok(());
            }
        }
        if self.rejected.contains(&hash) {
            return Err(DropReason::BadSignature);
        }
        if level == Level::Commitment {
            self.accept_commitment(now, artifact.body, hash, peer_elapsed_ms)?;
        } else {
            self.accept_proof(level, artifact.body, hash)?;
        }
        self.stats.artifacts_accepted += 1;
        self.note_peer_holds(level);
        Ok(())
    }

    /// Verifies a signature unless this artifact's was verified before.
    fn check_signature(
        &mut self,
        hash: Hash,
        verify: impl FnOnce(&VerifyingKey) -> Result<(), DropReason>,
    ) -> Result<(), DropReason> {
        if self.verified.contains(&hash) {
            return Ok(());
        }
        self.stats.signature_verifications += 1;
        match verify(&self.peer_key) {
            Ok(()) => {
                self.verified.insert(hash);
                Ok(())
            }
            Err(reason) => {
                if self.rejected.len() >= REJECTED_CACHE_LIMIT {
                    self.rejected.clear();
                }
                self.rejected.insert(hash);
                Err(reason)
            }
        }
    }

    fn accept_commitment(
        &mut self,
        now: Timestamp,
        body: &[u8],
        hash: Hash,
        peer_elapsed_ms: u32,
    ) -> Result<(), DropReason> {
        let (commitment, signature) = Commitment::decode(body)?;
        if commitment.version != PROTOCOL_VERSION {
            return Err(DropReason::UnsupportedVersion);
        }
        if commitment.signer != self.peer_key_bytes || commitment.peer != self.own_key {
            return Err(DropReason::UnknownPeer);
        }
        if commitment.parameters != self.config.parameters() {
            return Err(DropReason::ParameterMismatch);
        }
        let our_unix_now = self
            .unix_time_at_start_ms
            .saturating_add(u64::try_from((now - self.started).as_millis()).unwrap_or(u64::MAX));
        let skew_ms = u64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if commitment.unix_time_ms.abs_diff(our_unix_now) > skew_ms {
            return Err(DropReason::ClockSkew);
        }
        if let Some(current) = &self.peer_commitment {
            // A different commitment from the peer: a restart on its side,
            // or a replay. Only a newer one may replace ours, and only while
            // nothing beyond D has been built on the old one.
            if commitment.unix_time_ms <= current.unix_time_ms {
                return Err(DropReason::StaleCommitment);
            }
            if self.highest_own_level() > Level::Double || self.outcome != Outcome::Pending {
                return Err(DropReason::NewerCommitment);
            }
        }
        self.check_signature(hash, |key| commitment.verify(key, &signature))?;
        if self.peer_commitment.is_some() {
            self.forget_peer_progress();
        }
        if self.config.align_start_to_peer && !self.aligned {
            self.aligned = true;
            let peer_elapsed =
                Duration::from_millis(u64::from(peer_elapsed_ms)).min(self.config.deadline);
            let peer_start = now.saturating_sub(peer_elapsed);
            if peer_start < self.started {
                self.started = peer_start;
            }
        }
        self.peer_commitment = Some(commitment);
        self.peer[Level::Commitment.index()] = Some(Held {
            body: body.to_vec(),
            hash,
        });
        Ok(())
    }

    /// Drops everything built on the peer's old commitment.
    fn forget_peer_progress(&mut self) {
        self.peer = Default::default();
        for level in &mut self.own[1..] {
            *level = None;
        }
        self.peer_holds = None;
    }

    fn accept_proof(&mut self, level: Level, body: &[u8], hash: Hash) -> Result<(), DropReason> {
        let (proof, signature) = Proof::decode(level, body)?;
        let lower = level.lower().ok_or(DropReason::Malformed)?;
        let reference = level.peer_reference().ok_or(DropReason::Malformed)?;
        let Some(peer_lower) = &self.peer[lower.index()] else {
            return Err(DropReason::MissingLowerProof);
        };
        if peer_lower.hash != proof.own_lower {
            return Err(DropReason::WrongSession);
        }
        match &self.own[reference.index()] {
            Some(own) if own.hash == proof.peer_reference => {}
            _ => return Err(DropReason::WrongSession),
        }
        if self.peer[level.index()].is_some() {
            // A second, different proof of a level we already hold: the
            // peer cannot sign two over the same links (Ed25519 is
            // deterministic), so this is not from this session.
            return Err(DropReason::WrongSession);
        }
        self.check_signature(hash, |key| proof.verify(key, &signature))?;
        self.peer[level.index()] = Some(Held {
            body: body.to_vec(),
            hash,
        });
        Ok(())
    }

    fn accept_confirmation(&mut self, body: &[u8]) -> Result<(), DropReason> {
        let (Some(receipt), Some(secrets)) = (&self.receipt, &self.secrets) else {
            return Err(DropReason::PrematureConfirmation);
        };
        if body.len() != artifact::DONE_LEN || body[..32] != receipt[..] {
            return Err(DropReason::BadConfirmation);
        }
        if !confirmation_tag_is_valid(&secrets.peer_confirmation_key, receipt, &body[32..]) {
            return Err(DropReason::BadConfirmation);
        }
        self.peer_confirmed = true;
        self.peer_holds = Some(Level::FinalConfirmation);
        Ok(())
    }

    fn note_peer_holds(&mut self, peer_level: Level) {
        if let Some(ours) = peer_level.peer_reference() {
            if self.peer_holds.is_none_or(|held| held < ours) {
                self.peer_holds = Some(ours);
            }
        }
    }

    fn peer_hash(&self, level: Level) -> Option<Hash> {
        self.peer[level.index()].as_ref().map(|h| h.hash)
    }

    fn own_hash(&self, level: Level) -> Option<Hash> {
        self.own[level.index()].as_ref().map(|h| h.hash)
    }

    /// Builds every proof whose inputs we now hold, then RECEIPT.
    fn build_what_we_can(&mut self, now: Timestamp) {
        if self.outcome != Outcome::Pending {
            return;
        }
        for level in &Level::ALL[1..] {
            let level = *level;
            if self.own[level.index()].is_some() {
                continue;
            }
            if level == Level::FinalConfirmation && now >= self.cutoff() {
                break;
            }
            let lower = level.lower().and_then(|l| self.own_hash(l));
            let reference = level.peer_reference().and_then(|l| self.peer_hash(l));
            let (Some(own_lower), Some(peer_reference)) = (lower, reference) else {
                break;
            };
            let proof = Proof {
                level,
                own_lower,
                peer_reference,
            };
            let body = proof.sign_and_encode(&self.identity);
            let hash = artifact_hash(level as u8, &self.own_key, &body);
            self.own[level.index()] = Some(Held { body, hash });
        }
        if self.receipt.is_none() {
            if let (Some(own_final), Some(peer_final)) = (
                self.own_hash(Level::FinalConfirmation),
                self.peer_hash(Level::FinalConfirmation),
            ) {
                self.build_receipt(now, own_final, peer_final);
            }
        }
    }

    fn build_receipt(&mut self, now: Timestamp, own_final: Hash, peer_final: Hash) {
        let Some(peer_commitment) = &self.peer_commitment else {
            return;
        };
        let receipt = if self.we_are_first {
            receipt(&own_final, &peer_final)
        } else {
            receipt(&peer_final, &own_final)
        };
        let shared = self
            .ephemeral
            .diffie_hellman(&X25519Public::from(peer_commitment.ephemeral));
        let secrets = derive_session_secrets(shared.as_bytes(), &receipt, self.we_are_first);
        let mut confirmation = receipt.to_vec();
        confirmation.extend_from_slice(&confirmation_tag(&secrets.own_confirmation_key, &receipt));
        self.events
            .push_back(HandshakeEvent::Usable(secrets.session_keys.clone()));
        self.receipt = Some(receipt);
        self.secrets = Some(secrets);
        self.own_confirmation = Some(confirmation);
        self.usable_at = Some(now);
    }

    fn flooding(&self) -> bool {
        !self.finished && !self.peer_confirmed && self.outcome != Outcome::Aborted
    }

    fn next_send(&self) -> Option<Timestamp> {
        if self.finished || !(self.flooding() || self.answer_pending) {
            return None;
        }
        Some(match self.last_send {
            Some(last) => last + self.config.flood_interval,
            None => self.started,
        })
    }

    /// When [`Handshake::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let decision = match self.outcome {
            Outcome::Pending => Some(self.deadline()),
            Outcome::Established if !self.finished => Some(self.deadline() + self.config.linger),
            _ => None,
        };
        [self.next_send(), decision].into_iter().flatten().min()
    }

    /// Time has reached a point given by [`Handshake::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance_time(now);
    }

    /// Appends the next packet to send to `buffer`, if one is due at
    /// `now`, and returns its length.
    pub fn poll_transmit(&mut self, now: Timestamp, buffer: &mut Vec<u8>) -> Option<usize> {
        self.advance_time(now);
        if self.next_send()? > now {
            return None;
        }
        let size = self.build_packet(now, buffer);
        self.last_send = Some(now);
        self.answer_pending = false;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += size as u64;
        Some(size)
    }

    /// Appends the packet we flood now: every proof of ours the peer has
    /// not shown it holds, and our key confirmation once we hold RECEIPT.
    fn build_packet(&self, now: Timestamp, buffer: &mut Vec<u8>) -> usize {
        let first_needed = self.peer_holds.map_or(0, |held| held.index() + 1);
        let mut artifacts: Vec<ArtifactRef<'_>> = Level::ALL[first_needed.min(6)..]
            .iter()
            .filter_map(|level| {
                self.own[level.index()].as_ref().map(|held| ArtifactRef {
                    kind: *level as u8,
                    body: &held.body,
                })
            })
            .collect();
        if let Some(confirmation) = &self.own_confirmation {
            artifacts.push(ArtifactRef {
                kind: DONE_KIND,
                body: confirmation,
            });
        }
        if artifacts.is_empty() {
            // Nothing new for the peer: repeat our commitment so the packet
            // still names this session.
            if let Some(commitment) = &self.own[0] {
                artifacts.push(ArtifactRef {
                    kind: 0,
                    body: &commitment.body,
                });
            }
        }
        let elapsed_ms = duration_ms(now - self.started);
        HandshakePacket {
            sender: self.own_key,
            elapsed_ms,
            artifacts,
        }
        .encode(buffer)
    }
}
