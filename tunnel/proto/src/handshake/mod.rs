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
mod config;
mod drop;
mod flood;
mod receive;

pub use config::HandshakeConfig;
pub use drop::{DropReason, HandshakeStats, Received};

use crate::crypto::kdf::{confirmation_tag, derive_session_secrets, DerivedSecrets};
use crate::crypto::keys::SessionKeys;
use crate::crypto::{Hash, SigningKey, VerifyingKey};
use crate::time::Timestamp;
use artifact::{artifact_hash, receipt, Commitment, Level, Proof, PROTOCOL_VERSION};
use rand_core::{CryptoRng, RngCore};
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

pub use crate::wire::handshake::peek_sender;

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
    /// Peer proofs above the commitment accepted so far.
    peer_proofs_accepted: u64,
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
        zeroize::Zeroize::zeroize(&mut ephemeral_bytes);
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
            peer_proofs_accepted: 0,
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

    /// The artifact hash of the peer's commitment we hold, if any.
    pub fn peer_commitment_hash(&self) -> Option<Hash> {
        self.peer_hash(Level::Commitment)
    }

    /// The artifact hash of our own commitment (a retry packet echoes it).
    pub fn own_commitment_hash(&self) -> Hash {
        self.own_hash(Level::Commitment).unwrap_or_default()
    }

    /// Records that the artifact with this hash was verified by the owner
    /// (the endpoint checks a commitment's signature once, before it
    /// creates a handshake for it), so it is not verified twice.
    pub(crate) fn trust_verified(&mut self, hash: Hash) {
        self.verified.insert(hash);
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
}
