//! The replica: one member's state machine for one instance. Owns the
//! round state, the lock and the valid polka, the voting rules, taking in
//! packets (parse, check, verify each artifact once) and the timers. The
//! sending side (what to flood to whom) is in [`crate::flood`].

use crate::config::{BftConfig, ConfigError};
use crate::membership::members;
use crate::membership::Membership;
use crate::message::{
    proposal_digest, sign, vote_digest, Certificate, Ed25519Verifier, Phase, SignatureBytes, Value,
    Verifier,
};
use crate::stats::{BftStats, DropReason, Received};
use crate::store::{HeldProposal, Inserted, RoundState};
use crate::wire::{Item, Packet, Status};
use ed25519_dalek::SigningKey;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use tgp_proto::crypto::{domain_hash, Hash};
use tgp_proto::Timestamp;

/// Most failed-verification results remembered (so a flooded forgery costs
/// a hash, not a verification); the set is emptied when full.
const REJECTED_CACHE_LIMIT: usize = 4096;

/// Why a replica could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BftError {
    /// The identity key is not in the membership.
    #[error("this replica's identity key is not one of the membership's keys")]
    NotAMember,
    /// A setting that cannot work.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
}

/// The decision: a value, the round whose precommits decided it, when, and
/// the certificate that proves it to anyone holding the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The decided value.
    pub value: Value,
    /// The round of the certificate.
    pub round: u32,
    /// When this replica decided.
    pub at: Timestamp,
    /// A quorum of precommits for (instance, round, value).
    pub certificate: Certificate,
}

/// A datagram [`Replica::poll_transmit`] appended to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The member index to send it to.
    pub to: usize,
    /// Its length in bytes.
    pub len: usize,
}

/// What a replica knows of one peer, and what it sent it: bounded (two
/// timestamps per member, a few fields).
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerView {
    /// The status of the peer's last packet, and when it came.
    pub(crate) status: Option<Status>,
    pub(crate) status_at: Option<Timestamp>,
    /// The peer has said it committed.
    pub(crate) committed: bool,
    /// After our decision: the peer's last packet asks for an answer (it
    /// has not committed, or does not know that we have).
    pub(crate) answer_pending: bool,
    /// We have sent the peer a status saying we committed.
    pub(crate) told_committed: bool,
    /// When we last sent the peer anything, and the status it carried.
    pub(crate) last_sent: Option<Timestamp>,
    pub(crate) last_status_sent: Option<Status>,
    /// The round the send times below refer to.
    pub(crate) sent_round: u32,
    /// When we last sent the peer each member's prevote and precommit of
    /// `sent_round`.
    pub(crate) sent_votes: [Vec<Option<Sent>>; 2],
    /// When we last sent the proposal of `sent_round`.
    pub(crate) sent_proposal: Option<Sent>,
    /// The round of the last polka we sent, and when.
    pub(crate) sent_polka: Option<(u32, Sent)>,
    /// When we last sent our certificate.
    pub(crate) sent_certificate: Option<Sent>,
    /// The earlier round of the peer's we last helped it catch up in, and
    /// when.
    pub(crate) sent_catch_up: Option<(u32, Sent)>,
}

/// Most doublings of the retransmission spacing.
const MAX_BACKOFF: u32 = 3;

/// When an artifact last went to a peer, and how often it went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    at: Timestamp,
    times: u32,
}

impl Sent {
    /// The record after sending (again) at `now`.
    pub(crate) fn after(previous: Option<Sent>, now: Timestamp) -> Sent {
        Sent {
            at: now,
            times: previous.map_or(1, |p| p.times.saturating_add(1)),
        }
    }

    /// Whether it may go again at `now`: `spacing` after the first send,
    /// doubling with every further one, up to 2^MAX_BACKOFF times.
    pub(crate) fn due(previous: Option<Sent>, now: Timestamp, spacing: Duration) -> bool {
        previous.is_none_or(|p| {
            let doublings = (p.times - 1).min(MAX_BACKOFF);
            now >= p.at + spacing.saturating_mul(1 << doublings)
        })
    }
}

impl PeerView {
    fn new(n: usize) -> Self {
        PeerView {
            sent_votes: [vec![None; n], vec![None; n]],
            ..PeerView::default()
        }
    }
}

/// One member's replica of one agreement instance. Sans-IO: feed it
/// datagrams and time, take datagrams out; it never reads a clock.
pub struct Replica {
    pub(crate) config: BftConfig,
    pub(crate) membership: Membership,
    identity: SigningKey,
    pub(crate) index: usize,
    pub(crate) instance: u64,
    input: Value,
    pub(crate) round: u32,
    round_started: Timestamp,
    pub(crate) rounds: Vec<RoundState>,
    locked: Option<(u32, Value)>,
    pub(crate) valid: Option<(u32, Value)>,
    pub(crate) decision: Option<Decision>,
    /// Highest round each member has (verifiably) signed something in.
    signer_rounds: Vec<Option<u32>>,
    pub(crate) peers: Vec<PeerView>,
    pub(crate) next_tick: Option<Timestamp>,
    pub(crate) last_tick: Option<Timestamp>,
    pub(crate) ticks: u64,
    pub(crate) tick_queue: VecDeque<usize>,
    pub(crate) outbox: VecDeque<(usize, Vec<u8>)>,
    rejected: HashSet<Hash>,
    verifier: Box<dyn Verifier>,
    pub(crate) finished: bool,
    pub(crate) stats: BftStats,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("index", &self.index)
            .field("instance", &self.instance)
            .field("round", &self.round)
            .field("locked", &self.locked.map(|(r, _)| r))
            .field("decided", &self.decision.as_ref().map(|d| d.round))
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Starts member `identity`'s replica of `instance` at `now`, wanting
    /// `input` decided. It prevotes `input` in round 0 at once.
    pub fn new(
        now: Timestamp,
        membership: Membership,
        identity: SigningKey,
        instance: u64,
        input: Value,
        config: BftConfig,
    ) -> Result<Self, BftError> {
        config.validate()?;
        let index = membership
            .index_of(&identity.verifying_key())
            .ok_or(BftError::NotAMember)?;
        let n = membership.len();
        let mut replica = Replica {
            config,
            membership,
            identity,
            index,
            instance,
            input,
            round: 0,
            round_started: now,
            rounds: vec![RoundState::default()],
            locked: None,
            valid: None,
            decision: None,
            signer_rounds: vec![None; n],
            peers: vec![PeerView::new(n); n],
            next_tick: Some(now),
            last_tick: None,
            ticks: 0,
            tick_queue: VecDeque::new(),
            outbox: VecDeque::new(),
            rejected: HashSet::new(),
            verifier: Box::new(Ed25519Verifier),
            finished: false,
            stats: BftStats::default(),
        };
        replica.progress(now);
        Ok(replica)
    }

    /// Replaces how signatures are checked (see [`Verifier`]).
    pub fn set_verifier(&mut self, verifier: Box<dyn Verifier>) {
        self.verifier = verifier;
    }

    /// This replica's member index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The instance.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The current round.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The lock: (round, value) of the last precommit, if any.
    pub fn locked(&self) -> Option<(u32, Value)> {
        self.locked
    }

    /// The highest polka held: (round, value).
    pub fn valid(&self) -> Option<(u32, Value)> {
        self.valid
    }

    /// The value of `member`'s vote in `phase` of `round`, if held (the
    /// first one, should it have equivocated).
    pub fn vote_of(&self, phase: Phase, round: u32, member: usize) -> Option<Value> {
        if member >= self.membership.len() {
            return None;
        }
        let votes = self.rounds.get(round as usize)?.phase(phase);
        votes
            .sets
            .iter()
            .find(|set| set.signers & crate::membership::bit(member) != 0)
            .map(|set| set.value)
    }

    /// Rounds for which state is held (at most `max_rounds`).
    pub fn rounds_held(&self) -> usize {
        self.rounds.len()
    }

    /// The decision, once a certificate is held.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// Whether the replica has nothing more to do: decided, lingered and
    /// answered for [`BftConfig::answer_for`].
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Counters.
    pub fn stats(&self) -> &BftStats {
        &self.stats
    }

    /// When [`Replica::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.finished {
            return None;
        }
        let round_end = (self.decision.is_none() && self.round + 1 < self.config.max_rounds)
            .then(|| self.round_deadline());
        let finish = self
            .decision
            .as_ref()
            .map(|d| d.at + self.config.linger + self.config.answer_for);
        [self.next_tick, round_end, finish]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time has reached a point given by [`Replica::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
    }

    /// Handles a received datagram. `from` is the member the caller knows
    /// it came from (by source address or authenticated channel), if it
    /// knows: a packet whose sender index differs is dropped. Never panics;
    /// every drop is counted in [`Replica::stats`].
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: Option<usize>,
        datagram: &[u8],
    ) -> Received {
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        self.advance(now);
        let mut received = Received::default();
        if let Err(reason) = self.process_packet(now, from, datagram, &mut received) {
            self.drop_for(reason, &mut received);
        }
        self.progress(now);
        received
    }

    fn drop_for(&mut self, reason: DropReason, received: &mut Received) {
        self.stats.count_drop(reason);
        received.drops += 1;
        received.first_drop.get_or_insert(reason);
    }

    fn process_packet(
        &mut self,
        now: Timestamp,
        from: Option<usize>,
        datagram: &[u8],
        received: &mut Received,
    ) -> Result<(), DropReason> {
        if self.finished {
            return Err(DropReason::Finished);
        }
        let packet = Packet::parse(datagram, self.membership.len())?;
        let header = packet.header;
        if header.group != self.membership.group_tag() {
            return Err(DropReason::WrongGroup);
        }
        if header.instance != self.instance {
            return Err(DropReason::WrongInstance);
        }
        let sender = usize::from(header.sender);
        if sender >= self.membership.len() || sender == self.index {
            return Err(DropReason::UnknownSender);
        }
        if from.is_some_and(|f| f != sender) {
            return Err(DropReason::SenderMismatch);
        }
        self.note_status(now, sender, header.status);
        for item in packet.items {
            self.accept_item(now, item, received);
        }
        Ok(())
    }

    /// Remembers a peer's status (an unsigned hint: it only decides what we
    /// send that peer).
    fn note_status(&mut self, now: Timestamp, sender: usize, status: Status) {
        let peer = &mut self.peers[sender];
        peer.status = Some(status);
        peer.status_at = Some(now);
        peer.committed |= status.committed;
        if self.decision.is_some() && !(status.committed && status.knows_receiver_committed) {
            peer.answer_pending = true;
            if self.next_tick.is_none() {
                let earliest = self
                    .last_tick
                    .map_or(now, |t| t + self.config.flood_interval);
                self.next_tick = Some(earliest.max(now));
            }
        }
    }

    fn accept_item(&mut self, now: Timestamp, item: Item, received: &mut Received) {
        match item {
            Item::Proposal {
                round,
                value,
                valid_round,
                signature,
            } => match self.accept_proposal(now, round, value, valid_round, signature) {
                Ok(true) => received.new_artifacts += 1,
                Ok(false) => received.duplicates += 1,
                Err(reason) => self.drop_for(reason, received),
            },
            Item::Votes {
                phase,
                round,
                value,
                signers,
                signatures,
            } => {
                if round >= self.config.max_rounds {
                    self.drop_for(DropReason::RoundTooHigh, received);
                    return;
                }
                for (signer, signature) in members(signers).zip(signatures) {
                    match self.accept_vote(now, phase, round, value, signer, signature) {
                        Ok(true) => received.new_artifacts += 1,
                        Ok(false) => received.duplicates += 1,
                        Err(reason) => self.drop_for(reason, received),
                    }
                }
            }
        }
    }

    fn ensure_round(&mut self, round: u32) {
        let needed = round as usize + 1;
        if self.rounds.len() < needed {
            self.rounds.resize_with(needed, RoundState::default);
        }
    }

    /// `Ok(true)` if new, `Ok(false)` if already held.
    fn accept_proposal(
        &mut self,
        now: Timestamp,
        round: u32,
        value: Value,
        valid_round: Option<u32>,
        signature: SignatureBytes,
    ) -> Result<bool, DropReason> {
        if round >= self.config.max_rounds {
            return Err(DropReason::RoundTooHigh);
        }
        if round == 0 || valid_round.is_some_and(|k| k >= round) {
            return Err(DropReason::InvalidProposal);
        }
        self.ensure_round(round);
        let held = self.rounds[round as usize].proposal;
        if held.is_some_and(|p| p.value == value && p.valid_round == valid_round) {
            self.stats.duplicates += 1;
            return Ok(false);
        }
        let proposer = self.membership.proposer(self.instance, round);
        let digest = proposal_digest(
            self.membership.id(),
            self.instance,
            round,
            valid_round,
            &value,
        );
        self.check_signature(proposer, &digest, &signature)?;
        if held.is_some() {
            return Err(DropReason::Equivocation);
        }
        self.rounds[round as usize].proposal = Some(HeldProposal {
            value,
            valid_round,
            signature,
            since: now,
        });
        self.note_signer_round(proposer, round);
        self.stats.artifacts_accepted += 1;
        Ok(true)
    }

    /// `Ok(true)` if new, `Ok(false)` if already held.
    fn accept_vote(
        &mut self,
        now: Timestamp,
        phase: Phase,
        round: u32,
        value: Value,
        signer: usize,
        signature: SignatureBytes,
    ) -> Result<bool, DropReason> {
        self.ensure_round(round);
        if let Some(decision) = &self.decision {
            // Once decided, only a precommit quorum for another value
            // still matters (as evidence of more than f Byzantine members).
            if phase == Phase::Prevote || decision.value == value {
                self.stats.ignored_after_decision += 1;
                return Ok(false);
            }
        }
        let votes = self.rounds[round as usize].phase(phase);
        if votes.has(signer, &value) {
            self.stats.duplicates += 1;
            return Ok(false);
        }
        if !votes.room_for(signer) {
            return Err(DropReason::Equivocation);
        }
        let digest = vote_digest(self.membership.id(), self.instance, phase, round, &value);
        self.check_signature(signer, &digest, &signature)?;
        self.store_vote(now, phase, round, value, signer, signature);
        self.stats.artifacts_accepted += 1;
        Ok(true)
    }

    /// Verifies `signer`'s signature of `digest`, unless the same bytes
    /// failed before.
    fn check_signature(
        &mut self,
        signer: usize,
        digest: &Hash,
        signature: &SignatureBytes,
    ) -> Result<(), DropReason> {
        let key = self
            .membership
            .key(signer)
            .ok_or(DropReason::UnknownSender)?;
        let artifact = domain_hash(b"tgp-bft artifact", &[digest, &[signer as u8], signature]);
        if self.rejected.contains(&artifact) {
            return Err(DropReason::BadSignature);
        }
        self.stats.signature_verifications += 1;
        if self.verifier.verify(key, digest, signature) {
            return Ok(());
        }
        if self.rejected.len() >= REJECTED_CACHE_LIMIT {
            self.rejected.clear();
        }
        self.rejected.insert(artifact);
        Err(DropReason::BadSignature)
    }

    /// Stores a verified (or own) vote and acts on a quorum it completes.
    fn store_vote(
        &mut self,
        now: Timestamp,
        phase: Phase,
        round: u32,
        value: Value,
        signer: usize,
        signature: SignatureBytes,
    ) {
        self.ensure_round(round);
        let inserted = self.rounds[round as usize]
            .phase_mut(phase)
            .insert(now, signer, value, signature);
        let Inserted::New {
            count,
            equivocation,
        } = inserted
        else {
            return;
        };
        if equivocation {
            self.stats.equivocations_seen += 1;
        }
        self.note_signer_round(signer, round);
        if count == self.membership.quorum() {
            self.on_quorum(now, phase, round, value);
        }
    }

    fn on_quorum(&mut self, now: Timestamp, phase: Phase, round: u32, value: Value) {
        match phase {
            Phase::Prevote => {
                if self.valid.is_none_or(|(k, _)| round > k) {
                    self.valid = Some((round, value));
                }
            }
            Phase::Precommit => match &self.decision {
                None => self.decide(now, round, value),
                Some(decision) if decision.value != value => {
                    self.stats.conflicting_certificates += 1;
                }
                Some(_) => {}
            },
        }
    }

    fn decide(&mut self, now: Timestamp, round: u32, value: Value) {
        let quorum = self.membership.quorum();
        let Some(set) = self.rounds[round as usize].precommits.set(&value) else {
            return;
        };
        let certificate = Certificate {
            instance: self.instance,
            round,
            value,
            signatures: set.signatures.iter().take(quorum).copied().collect(),
        };
        self.decision = Some(Decision {
            value,
            round,
            at: now,
            certificate,
        });
        self.urgent(now);
    }

    fn note_signer_round(&mut self, signer: usize, round: u32) {
        let slot = &mut self.signer_rounds[signer];
        if slot.is_none_or(|r| round > r) {
            *slot = Some(round);
        }
    }

    /// Floods soon: at the next tick or `min_gap` after the last one.
    fn urgent(&mut self, now: Timestamp) {
        let soon = self
            .last_tick
            .map_or(now, |t| (t + self.config.min_gap).max(now));
        self.next_tick = Some(self.next_tick.map_or(soon, |t| t.min(soon)));
    }

    fn round_deadline(&self) -> Timestamp {
        self.round_started + self.config.round_duration(self.round)
    }

    /// Brings the round timer, the tick and the end of life up to `now`.
    fn advance(&mut self, now: Timestamp) {
        if self.finished {
            return;
        }
        if self.decision.is_none()
            && self.round + 1 < self.config.max_rounds
            && now >= self.round_deadline()
        {
            self.enter_round(now, self.round + 1);
            self.progress(now);
        }
        if let Some(decision) = &self.decision {
            if now >= decision.at + self.config.linger + self.config.answer_for {
                self.finished = true;
                self.next_tick = None;
                self.tick_queue.clear();
                self.outbox.clear();
                return;
            }
        }
        if self.next_tick.is_some_and(|t| now >= t) {
            self.start_tick(now);
        }
    }

    /// The (f+1)-th highest round any other member has signed in: at least
    /// one honest member has reached it, so we may too.
    fn skip_target(&self) -> Option<u32> {
        let mut rounds: Vec<u32> = self
            .signer_rounds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.index)
            .filter_map(|(_, r)| *r)
            .filter(|r| *r > self.round)
            .collect();
        let needed = self.membership.f() + 1;
        if rounds.len() < needed {
            return None;
        }
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        Some(rounds[needed - 1])
    }

    /// Moves to `round`; its proposer proposes.
    fn enter_round(&mut self, now: Timestamp, round: u32) {
        let round = round.min(self.config.max_rounds - 1);
        self.ensure_round(round);
        self.round = round;
        self.round_started = now;
        self.stats.rounds_entered += 1;
        if round >= 1
            && self.membership.proposer(self.instance, round) == self.index
            && self.rounds[round as usize].proposal.is_none()
        {
            let (value, valid_round) = match self.highest_polka_below(round) {
                Some((k, v)) => (v, Some(k)),
                None => (self.valid.map_or(self.input, |(_, v)| v), None),
            };
            let digest = proposal_digest(
                self.membership.id(),
                self.instance,
                round,
                valid_round,
                &value,
            );
            let signature = sign(&self.identity, &digest);
            self.stats.signatures_made += 1;
            self.rounds[round as usize].proposal = Some(HeldProposal {
                value,
                valid_round,
                signature,
                since: now,
            });
            self.note_signer_round(self.index, round);
        }
        self.urgent(now);
    }

    /// The highest round below `round` with a polka, and its value.
    fn highest_polka_below(&self, round: u32) -> Option<(u32, Value)> {
        let quorum = self.membership.quorum();
        (0..round.min(self.rounds.len() as u32))
            .rev()
            .find_map(|k| {
                self.rounds[k as usize]
                    .prevotes
                    .quorum_value(quorum)
                    .map(|set| (k, set.value))
            })
    }

    /// What to prevote in the current round, if anything yet.
    ///
    /// Round 0 has no proposer: every replica prevotes its own input (the
    /// paper's PROPOSE). In round r ≥ 1, the proposal (v, vr) of the
    /// round's proposer is prevoted when
    /// - vr is none, and we are not locked, or locked on v; or
    /// - vr = k < r, we hold a polka for v in round k, and our lock is from
    ///   round k or earlier, or on v.
    fn prevote_choice(&self, round: u32) -> Option<Value> {
        if round == 0 {
            return Some(self.input);
        }
        let proposal = self.rounds[round as usize].proposal?;
        let value = proposal.value;
        #[cfg(feature = "fault-injection")]
        if self.config.ignore_locks {
            return Some(value);
        }
        let acceptable = match proposal.valid_round {
            None => self.locked.is_none_or(|(_, locked)| locked == value),
            Some(k) => {
                let polka = self
                    .rounds
                    .get(k as usize)
                    .is_some_and(|state| state.prevotes.count(&value) >= self.membership.quorum());
                polka
                    && self
                        .locked
                        .is_none_or(|(lr, locked)| lr <= k || locked == value)
            }
        };
        acceptable.then_some(value)
    }

    /// No value can reach a polka in `round` any more: even if every
    /// member not heard from prevoted the leading value, it would fall
    /// short.
    fn no_polka_possible(&self, round: u32) -> bool {
        let votes = &self.rounds[round as usize].prevotes;
        let seen = votes.voters.count_ones() as usize;
        seen > 0 && votes.max_count() + (self.membership.len() - seen) < self.membership.quorum()
    }

    fn cast(&mut self, now: Timestamp, phase: Phase, round: u32, value: Value) {
        let digest = vote_digest(self.membership.id(), self.instance, phase, round, &value);
        let signature = sign(&self.identity, &digest);
        self.stats.signatures_made += 1;
        self.store_vote(now, phase, round, value, self.index, signature);
        self.urgent(now);
    }

    /// Applies every rule that the state now allows, until none does.
    pub(crate) fn progress(&mut self, now: Timestamp) {
        let quorum = self.membership.quorum();
        // Each pass either acts (bounded: two votes per round, one round
        // change per round) or stops.
        for _ in 0..4 * (self.config.max_rounds as usize + 1) {
            if self.decision.is_some() || self.finished {
                return;
            }
            if let Some(target) = self.skip_target() {
                self.enter_round(now, target);
                continue;
            }
            let round = self.round;
            let state = &self.rounds[round as usize];
            if !state.prevotes.voted(self.index) {
                if let Some(value) = self.prevote_choice(round) {
                    self.cast(now, Phase::Prevote, round, value);
                    continue;
                }
            }
            let state = &self.rounds[round as usize];
            if !state.precommits.voted(self.index) {
                if let Some(set) = state.prevotes.quorum_value(quorum) {
                    let value = set.value;
                    self.locked = Some((round, value));
                    self.cast(now, Phase::Precommit, round, value);
                    continue;
                }
            }
            if round + 1 < self.config.max_rounds && self.no_polka_possible(round) {
                self.enter_round(now, round + 1);
                continue;
            }
            return;
        }
    }
}
