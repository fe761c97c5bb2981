//! The engine in the deterministic simulator (`tgp-sim`), with Byzantine
//! adversaries and a scenario runner, shared by the crate's tests and
//! `tgp-bench bft` (feature `sim`).
//!
//! A [`Scenario`] is n members on a full mesh of seeded links (own delay,
//! loss and jitter per direction), some of them Byzantine ([`Fault`]):
//! - [`Fault::Silent`]: sends nothing;
//! - [`Fault::Equivocate`]: all equivocators collude: they split the
//!   honest members into two sides and show each side its own value, as
//!   prevotes and precommits of the rounds around the latest one they see,
//!   and as proposals when it is their turn (with and without a claimed
//!   justification);
//! - [`Fault::Forge`]: random bytes, votes under other members' indices
//!   with wrong signatures, own signatures over other messages, proposals
//!   in others' turns, invalid proposals, wrong group, instance or version,
//!   truncated and bit-flipped copies of real packets, rounds past the
//!   limit, a false sender index;
//! - [`Fault::Replay`]: re-sends recorded packets of earlier rounds (under
//!   its own index or the original one) and packets of another instance
//!   (as they were, or with the instance rewritten).
//!
//! [`run`] drives one scenario and returns what every honest member
//! decided, when, and what the run cost ([`RunResult`]).

use crate::config::BftConfig;
use crate::membership::{bit, Membership};
use crate::message::{
    proposal_digest, sign, verify, vote_digest, Phase, SignatureBytes, Value, Verifier,
};
use crate::replica::Replica;
use crate::stats::DropReason;
use crate::wire::{Header, Item, Packet, Status, MAX_PACKET};
use ed25519_dalek::SigningKey;
use ed25519_dalek::VerifyingKey;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tgp_proto::crypto::Hash;
use tgp_proto::Timestamp;
use tgp_sim::{LinkConfig, Node, NodeId, Simulation, Verdict};

/// The simulator address of member `index`.
pub fn address(index: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(
            10,
            1,
            (index / 250) as u8,
            (index % 250) as u8 + 1,
        )),
        7000,
    )
}

/// The member at simulator address `address`, if it is one of ours.
pub fn member_at(address: SocketAddr) -> Option<usize> {
    match address {
        SocketAddr::V4(v4) if v4.port() == 7000 => {
            let [a, b, c, d] = v4.ip().octets();
            (a == 10 && b == 1 && d >= 1).then(|| usize::from(c) * 250 + usize::from(d) - 1)
        }
        _ => None,
    }
}

/// What a Byzantine member does (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Sends nothing.
    Silent,
    /// Shows each half of the honest members another value.
    Equivocate,
    /// Sends forged and malformed packets.
    Forge,
    /// Replays old rounds and another instance.
    Replay,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 4] = [
        Fault::Silent,
        Fault::Equivocate,
        Fault::Forge,
        Fault::Replay,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Silent => "silent",
            Fault::Equivocate => "equivocate",
            Fault::Forge => "forge",
            Fault::Replay => "replay",
        }
    }
}

/// One memo of Ed25519 results shared by all members of a run: every
/// signature is still checked by Ed25519, once per run instead of once per
/// member (the answers are the same; the run is faster).
#[derive(Clone, Default)]
pub struct SharedVerifier(Arc<Mutex<HashMap<SignedDigest, bool>>>);

/// (key, digest, signature).
type SignedDigest = ([u8; 32], Hash, SignatureBytes);

impl Verifier for SharedVerifier {
    fn verify(&mut self, key: &VerifyingKey, digest: &Hash, signature: &SignatureBytes) -> bool {
        let mut memo = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *memo
            .entry((key.to_bytes(), *digest, *signature))
            .or_insert_with(|| verify(key, digest, signature))
    }
}

/// An honest member in the simulator: a [`Replica`] started at `start`.
pub struct HonestNode {
    start: Timestamp,
    setup: Option<(Membership, SigningKey, u64, Value, BftConfig)>,
    verifier: Option<SharedVerifier>,
    replica: Option<Replica>,
}

impl HonestNode {
    /// A member that starts its replica at `start`; before that it drops
    /// whatever arrives (it is not up yet).
    pub fn new(
        start: Timestamp,
        membership: Membership,
        identity: SigningKey,
        instance: u64,
        input: Value,
        config: BftConfig,
    ) -> Self {
        HonestNode {
            start,
            setup: Some((membership, identity, instance, input, config)),
            verifier: None,
            replica: None,
        }
    }

    /// This member checks signatures through `verifier` (shared with
    /// others) instead of on its own.
    pub fn with_verifier(mut self, verifier: SharedVerifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The replica, once started.
    pub fn replica(&self) -> Option<&Replica> {
        self.replica.as_ref()
    }

    fn start_if_due(&mut self, now: Timestamp) {
        if now < self.start {
            return;
        }
        if let Some((membership, identity, instance, input, config)) = self.setup.take() {
            self.replica = Replica::new(now, membership, identity, instance, input, config).ok();
            if let (Some(replica), Some(verifier)) = (&mut self.replica, self.verifier.take()) {
                replica.set_verifier(Box::new(verifier));
            }
        }
    }
}

impl Node for HonestNode {
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) {
        self.start_if_due(now);
        if let Some(replica) = &mut self.replica {
            let _ = replica.handle_datagram(now, member_at(from), datagram);
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        self.start_if_due(now);
        let replica = self.replica.as_mut()?;
        let mut buffer = Vec::new();
        let transmit = replica.poll_transmit(now, &mut buffer)?;
        Some((address(transmit.to), buffer))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match &self.replica {
            Some(replica) => replica.poll_timeout(),
            None => self.setup.as_ref().map(|_| self.start),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.start_if_due(now);
        if let Some(replica) = &mut self.replica {
            replica.handle_timeout(now);
        }
    }
}

/// What every Byzantine member of a run shares (they collude).
#[derive(Clone)]
pub struct Plot {
    /// The two values shown.
    pub values: [Value; 2],
    /// Which value each member is shown (0 or 1).
    pub side: Vec<u8>,
    /// Packets of another instance, signed by honest members, for replay.
    pub foreign: Vec<Vec<u8>>,
}

/// A Byzantine member in the simulator.
pub struct ByzantineNode {
    fault: Fault,
    index: usize,
    key: SigningKey,
    membership: Membership,
    instance: u64,
    max_rounds: u32,
    interval: Duration,
    plot: Plot,
    rng: ChaCha8Rng,
    next_tick: Timestamp,
    observed_round: u32,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    recorded: VecDeque<(Timestamp, Vec<u8>)>,
    /// Signatures made so far (Ed25519 is deterministic: memoized to keep
    /// the simulation fast).
    signed: HashMap<Hash, SignatureBytes>,
}

const RECORDED_LIMIT: usize = 256;

impl ByzantineNode {
    /// Member `index` (with `key`) behaving as `fault`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fault: Fault,
        index: usize,
        key: SigningKey,
        membership: Membership,
        instance: u64,
        config: &BftConfig,
        plot: Plot,
        seed: u64,
    ) -> Self {
        ByzantineNode {
            fault,
            index,
            key,
            membership,
            instance,
            max_rounds: config.max_rounds,
            interval: config.flood_interval,
            plot,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_tick: Timestamp::ZERO,
            observed_round: 0,
            outbox: VecDeque::new(),
            recorded: VecDeque::new(),
            signed: HashMap::new(),
        }
    }

    fn header(&self, round: u32) -> Header {
        Header {
            group: self.membership.group_tag(),
            instance: self.instance,
            sender: self.index as u8,
            status: Status {
                round,
                ..Status::default()
            },
        }
    }

    fn sign(&mut self, digest: Hash) -> SignatureBytes {
        let key = &self.key;
        *self
            .signed
            .entry(digest)
            .or_insert_with(|| sign(key, &digest))
    }

    fn vote(&mut self, phase: Phase, round: u32, value: Value) -> Item {
        let digest = vote_digest(self.membership.id(), self.instance, phase, round, &value);
        Item::Votes {
            phase,
            round,
            value,
            signers: bit(self.index),
            signatures: vec![self.sign(digest)],
        }
    }

    fn proposal(&mut self, round: u32, value: Value, valid_round: Option<u32>) -> Item {
        let digest = proposal_digest(
            self.membership.id(),
            self.instance,
            round,
            valid_round,
            &value,
        );
        Item::Proposal {
            round,
            value,
            valid_round,
            signature: self.sign(digest),
        }
    }

    fn encode(&self, packet: &Packet) -> Vec<u8> {
        let mut out = Vec::new();
        packet.encode(self.membership.len(), &mut out);
        out
    }

    /// One of 2 junk values (few, so that signatures over them are made
    /// once and memoized).
    fn random_value(&mut self) -> Value {
        let mut value = [0u8; 32];
        value[..8].copy_from_slice(&(self.rng.next_u64() % 2).to_be_bytes());
        value[8] = self.index as u8;
        value
    }

    fn pick(&mut self, below: usize) -> usize {
        (self.rng.next_u64() % below.max(1) as u64) as usize
    }

    fn tick(&mut self) {
        let n = self.membership.len();
        let me = self.index;
        for peer in (0..n).filter(|p| *p != me) {
            let packets = match self.fault {
                Fault::Silent => Vec::new(),
                Fault::Equivocate => self.equivocate(peer),
                Fault::Forge => vec![self.forge()],
                Fault::Replay => self.replay(),
            };
            for packet in packets {
                self.outbox.push_back((address(peer), packet));
            }
        }
    }

    fn equivocate(&mut self, peer: usize) -> Vec<Vec<u8>> {
        let value = self.plot.values[usize::from(self.plot.side[peer] & 1)];
        let last = self.max_rounds - 1;
        let mut items = Vec::new();
        for round in self.observed_round.saturating_sub(1)..=(self.observed_round + 1).min(last) {
            items.push(self.vote(Phase::Prevote, round, value));
            items.push(self.vote(Phase::Precommit, round, value));
            if round >= 1 && self.membership.proposer(self.instance, round) == self.index {
                let justification = (self.plot.side[peer] & 1 == 1).then(|| round - 1);
                items.push(self.proposal(round, value, justification));
            }
        }
        let packet = Packet {
            header: self.header(self.observed_round),
            items,
        };
        vec![self.encode(&packet)]
    }

    fn forge(&mut self) -> Vec<u8> {
        let n = self.membership.len();
        let round = self.observed_round;
        let mut header = self.header(round);
        let value = self.random_value();
        let other = (self.index + 1 + self.pick(n - 1)) % n;
        let mut random_signature = [0u8; 64];
        self.rng.fill_bytes(&mut random_signature);
        let choice = self.pick(11);
        let items = match choice {
            0 => {
                let len = self.pick(300);
                let mut bytes = vec![0u8; len];
                self.rng.fill_bytes(&mut bytes);
                return bytes;
            }
            // Votes under another member's index.
            1 => vec![Item::Votes {
                phase: if self.pick(2) == 0 {
                    Phase::Prevote
                } else {
                    Phase::Precommit
                },
                round,
                value,
                signers: bit(other),
                signatures: vec![random_signature],
            }],
            // Our signature, over another round's message.
            2 => {
                let digest = vote_digest(
                    self.membership.id(),
                    self.instance,
                    Phase::Precommit,
                    round + 1,
                    &value,
                );
                vec![Item::Votes {
                    phase: Phase::Precommit,
                    round,
                    value,
                    signers: bit(self.index),
                    signatures: vec![sign(&self.key, &digest)],
                }]
            }
            // A proposal in a round that is not ours (a forger never makes
            // a valid artifact: it only sends what must be refused).
            3 => {
                let mut r = round.max(1);
                while self.membership.proposer(self.instance, r) == self.index {
                    r += 1;
                }
                if r < self.max_rounds {
                    vec![self.proposal(r, value, None)]
                } else {
                    vec![self.proposal(0, value, None)]
                }
            }
            // Invalid proposals.
            4 => vec![
                self.proposal(0, value, None),
                self.proposal(round + 1, value, Some(round + 1)),
            ],
            // Wrong group, instance or version (fixed below).
            5 | 6 => vec![self.vote(Phase::Prevote, round, value)],
            // A mutated or truncated copy of a real packet.
            7 | 8 => {
                if let Some(bytes) = self.recorded_packet(false).filter(|b| !b.is_empty()) {
                    let mut bytes = bytes;
                    if bytes.len() > 19 {
                        bytes[18] = self.index as u8;
                    }
                    let at = self.pick(bytes.len());
                    if self.pick(2) == 0 {
                        bytes[at] ^= 1 << self.pick(8);
                    } else {
                        bytes.truncate(at);
                    }
                    return bytes;
                }
                vec![Item::Votes {
                    phase: Phase::Prevote,
                    round,
                    value,
                    signers: bit(self.index),
                    signatures: vec![random_signature],
                }]
            }
            // Past the round limit.
            9 => {
                let beyond = self.max_rounds + self.pick(5) as u32;
                vec![self.vote(Phase::Prevote, beyond, value)]
            }
            // Claiming to be another member.
            _ => {
                header.sender = other as u8;
                vec![self.vote(Phase::Prevote, round, value)]
            }
        };
        let mut bytes = self.encode(&Packet { header, items });
        // Cases 5 and 6 carry a valid vote: always under a wrong group,
        // instance or version.
        let corruption = if matches!(choice, 5 | 6) {
            self.pick(3)
        } else {
            self.pick(4)
        };
        match corruption {
            0 => bytes[2] ^= 0x55,  // group tag
            1 => bytes[17] ^= 0x01, // instance
            2 => bytes[1] = 2,      // version
            _ => {}
        }
        bytes
    }

    fn recorded_packet(&mut self, old_only: bool) -> Option<Vec<u8>> {
        let latest = self.recorded.back().map(|(t, _)| *t)?;
        let candidates: Vec<usize> = (0..self.recorded.len())
            .filter(|&i| !old_only || self.recorded[i].0 + Duration::from_millis(200) <= latest)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let pick = candidates[self.pick(candidates.len())];
        Some(self.recorded[pick].1.clone())
    }

    fn replay(&mut self) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        for _ in 0..2 {
            if let Some(mut bytes) = self.recorded_packet(true) {
                if self.pick(4) != 0 && bytes.len() > 19 {
                    bytes[18] = self.index as u8;
                }
                packets.push(bytes);
            }
        }
        if !self.plot.foreign.is_empty() && self.pick(2) == 0 {
            let which = self.pick(self.plot.foreign.len());
            let mut bytes = self.plot.foreign[which].clone();
            if self.pick(2) == 0 && bytes.len() > 18 {
                bytes[10..18].copy_from_slice(&self.instance.to_be_bytes());
            }
            packets.push(bytes);
        }
        packets
    }
}

impl Node for ByzantineNode {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        if let Ok(packet) = Packet::parse(datagram, self.membership.len()) {
            if packet.header.instance == self.instance {
                let seen = packet.header.status.round.min(self.max_rounds - 1);
                self.observed_round = self.observed_round.max(seen);
            }
        }
        if matches!(self.fault, Fault::Replay | Fault::Forge) && datagram.len() <= MAX_PACKET {
            if self.recorded.len() >= RECORDED_LIMIT {
                self.recorded.pop_front();
            }
            self.recorded.push_back((now, datagram.to_vec()));
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        if self.fault != Fault::Silent && now >= self.next_tick {
            self.next_tick = now + self.interval;
            self.tick();
        }
        self.outbox.pop_front()
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        (self.fault != Fault::Silent).then_some(self.next_tick)
    }

    fn handle_timeout(&mut self, _now: Timestamp) {}
}

/// One simulated agreement.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Members.
    pub n: usize,
    /// Seed of everything: keys, inputs, links, adversaries.
    pub seed: u64,
    /// Random loss per link (each direction).
    pub loss: f64,
    /// Mean one-way delay.
    pub delay: Duration,
    /// Each link's delay is drawn uniformly in `delay ± delay_spread`.
    pub delay_spread: Duration,
    /// Jitter per packet (uniform, FIFO kept).
    pub jitter: Duration,
    /// Honest members want different values (else all want the same).
    pub competing: bool,
    /// The Byzantine members' behaviours (at most n; their indices are
    /// drawn from the seed).
    pub faults: Vec<Fault>,
    /// Members start at a uniform random time in `[0, start_spread]`.
    pub start_spread: Duration,
    /// Stop if not every honest member has decided by then.
    pub deadline: Duration,
    /// After every honest member decided, run this much longer (to count
    /// the post-decision flood and catch a late conflicting certificate).
    pub after_decision: Duration,
    /// The replicas' settings.
    pub config: BftConfig,
    /// The instance number.
    pub instance: u64,
    /// Members share one memo of signature checks ([`SharedVerifier`]):
    /// the same decisions, faster runs.
    pub share_verification: bool,
    /// Print every honest member's round and held prevotes every 10 ms of
    /// virtual time to stderr (for debugging a run).
    pub trace: bool,
}

impl Scenario {
    /// n members, no faults, no loss, 20 ± 10 ms links with 5 ms jitter,
    /// the same input everywhere, default settings, a 30 s deadline.
    pub fn new(n: usize, seed: u64) -> Self {
        Scenario {
            n,
            seed,
            loss: 0.0,
            delay: Duration::from_millis(20),
            delay_spread: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            competing: false,
            faults: Vec::new(),
            start_spread: Duration::ZERO,
            deadline: Duration::from_secs(30),
            after_decision: Duration::from_millis(200),
            config: BftConfig::default(),
            instance: 1,
            share_verification: true,
            trace: false,
        }
    }
}

/// What one honest member ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HonestOutcome {
    /// Its index.
    pub index: usize,
    /// Its input.
    pub input: Value,
    /// (value, round, time) of its decision.
    pub decided: Option<(Value, u32, Duration)>,
    /// Its certificate verifies against the membership.
    pub certificate_valid: bool,
    /// Its lock at the end: (round, value) of its last precommit.
    pub locked: Option<(u32, Value)>,
    /// Its highest polka at the end.
    pub valid: Option<(u32, Value)>,
    /// Equivocations it saw.
    pub equivocations_seen: u64,
}

/// What a run showed.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The scenario's seed.
    pub seed: u64,
    /// Indices of the Byzantine members.
    pub byzantine: Vec<usize>,
    /// Every honest member.
    pub honest: Vec<HonestOutcome>,
    /// The values the Byzantine members showed.
    pub byzantine_values: [Value; 2],
    /// When the last honest member decided, if all did before the deadline.
    pub all_decided_at: Option<Duration>,
    /// Conflicting certificates seen by honest members (0 unless more than
    /// f are Byzantine).
    pub conflicting_certificates: u64,
    /// Packets and bytes sent by honest members.
    pub honest_packets: u64,
    /// Bytes sent by honest members.
    pub honest_bytes: u64,
    /// Packets sent by every member.
    pub all_packets: u64,
    /// Bytes sent by every member.
    pub all_bytes: u64,
    /// The largest datagram anybody sent (honest members only).
    pub max_honest_packet: usize,
    /// Drops counted by honest members, by reason.
    pub drops: Vec<(DropReason, u64)>,
    /// Signature verifications by honest members.
    pub verifications: u64,
    /// The highest round an honest member reached.
    pub max_round: u32,
    /// Signatures made by honest members.
    pub honest_signatures: u64,
    /// Ed25519 verifications actually computed for the run (with
    /// [`Scenario::share_verification`], once per distinct signature).
    pub shared_verifications: u64,
}

impl RunResult {
    /// No two honest members decided different values.
    pub fn agreement(&self) -> bool {
        let mut decided = self.honest.iter().filter_map(|h| h.decided.map(|d| d.0));
        match decided.next() {
            None => true,
            Some(first) => decided.all(|v| v == first),
        }
    }

    /// Every honest decision is some member's value (an honest input or a
    /// value a Byzantine member pushed) and carries a valid certificate.
    pub fn valid_decisions(&self) -> bool {
        self.honest.iter().all(|h| match h.decided {
            None => true,
            Some((value, _, _)) => {
                h.certificate_valid
                    && (self.honest.iter().any(|o| o.input == value)
                        || self.byzantine_values.contains(&value))
            }
        })
    }

    /// Drops for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, c)| *c)
    }
}

#[derive(Default)]
struct Traffic {
    honest_packets: u64,
    honest_bytes: u64,
    all_packets: u64,
    all_bytes: u64,
    max_honest_packet: usize,
}

fn random_value(rng: &mut ChaCha8Rng) -> Value {
    let mut value = [0u8; 32];
    rng.fill_bytes(&mut value);
    value
}

fn uniform(rng: &mut ChaCha8Rng, low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = (high - low).as_nanos() as u64;
    low + Duration::from_nanos(rng.next_u64() % (span + 1))
}

/// Packets of instance `instance ^ 0xffff` signed by honest members, as a
/// recording of an earlier instance would hold.
fn foreign_packets(
    rng: &mut ChaCha8Rng,
    keys: &[SigningKey],
    membership: &Membership,
    honest: &[usize],
    instance: u64,
    sender: usize,
) -> Vec<Vec<u8>> {
    let other = instance ^ 0xffff;
    (0..4u32)
        .map(|round| {
            let value = random_value(rng);
            let items = honest
                .iter()
                .take(4)
                .map(|&signer| {
                    let digest = vote_digest(membership.id(), other, Phase::Prevote, round, &value);
                    Item::Votes {
                        phase: Phase::Prevote,
                        round,
                        value,
                        signers: bit(signer),
                        signatures: vec![sign(&keys[signer], &digest)],
                    }
                })
                .collect();
            let packet = Packet {
                header: Header {
                    group: membership.group_tag(),
                    instance: other,
                    sender: sender as u8,
                    status: Status {
                        round,
                        ..Status::default()
                    },
                },
                items,
            };
            let mut bytes = Vec::new();
            packet.encode(membership.len(), &mut bytes);
            bytes
        })
        .collect()
}

/// Runs `scenario` to the end and reports.
///
/// # Panics
/// If the scenario has no member or more members than a membership allows.
pub fn run(scenario: &Scenario) -> RunResult {
    let n = scenario.n;
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x7467_702d_6266_7421);
    let keys: Vec<SigningKey> = (0..n)
        .map(|_| SigningKey::from_bytes(&random_value(&mut rng)))
        .collect();
    let membership = Membership::new(keys.iter().map(SigningKey::verifying_key).collect())
        .expect("scenario: valid membership");
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let byzantine: Vec<usize> = order[..scenario.faults.len().min(n)].to_vec();
    let honest: Vec<usize> = (0..n).filter(|i| !byzantine.contains(i)).collect();
    let common = random_value(&mut rng);
    let inputs: Vec<Value> = (0..n)
        .map(|_| {
            if scenario.competing {
                random_value(&mut rng)
            } else {
                common
            }
        })
        .collect();
    let shown = [
        inputs[honest.first().copied().unwrap_or(0)],
        if scenario.competing && honest.len() > 1 {
            inputs[honest[1]]
        } else {
            random_value(&mut rng)
        },
    ];
    let side: Vec<u8> = (0..n).map(|_| (rng.next_u64() & 1) as u8).collect();
    let foreign = byzantine
        .first()
        .map(|&b| foreign_packets(&mut rng, &keys, &membership, &honest, scenario.instance, b))
        .unwrap_or_default();
    let plot = Plot {
        values: shown,
        side,
        foreign,
    };

    let verifier = SharedVerifier::default();
    let mut sim = Simulation::new(scenario.seed);
    let mut ids: Vec<NodeId> = Vec::with_capacity(n);
    for index in 0..n {
        let id = if let Some(position) = byzantine.iter().position(|&b| b == index) {
            sim.add_node(
                address(index),
                ByzantineNode::new(
                    scenario.faults[position],
                    index,
                    keys[index].clone(),
                    membership.clone(),
                    scenario.instance,
                    &scenario.config,
                    plot.clone(),
                    rng.next_u64(),
                ),
            )
        } else {
            let start = uniform(&mut rng, Duration::ZERO, scenario.start_spread);
            let mut node = HonestNode::new(
                Timestamp::from_duration(start),
                membership.clone(),
                keys[index].clone(),
                scenario.instance,
                inputs[index],
                scenario.config.clone(),
            );
            if scenario.share_verification {
                node = node.with_verifier(verifier.clone());
            }
            sim.add_node(address(index), node)
        };
        ids.push(id);
    }
    let low = scenario.delay.saturating_sub(scenario.delay_spread);
    let high = scenario.delay + scenario.delay_spread;
    for a in 0..n {
        for b in a + 1..n {
            let link = |rng: &mut ChaCha8Rng| {
                let mut config =
                    LinkConfig::ideal(uniform(rng, low, high)).with_jitter(scenario.jitter);
                if scenario.loss > 0.0 {
                    config = config.with_random_loss(scenario.loss);
                }
                config
            };
            let ab = link(&mut rng);
            let ba = link(&mut rng);
            sim.connect(ids[a], ids[b], ab, ba);
        }
    }
    let traffic = Rc::new(RefCell::new(Traffic::default()));
    let counter = Rc::clone(&traffic);
    let honest_flags: Vec<bool> = (0..n).map(|i| !byzantine.contains(&i)).collect();
    sim.set_transmit_filter(move |transmit| {
        let mut t = counter.borrow_mut();
        let len = transmit.datagram.len();
        t.all_packets += 1;
        t.all_bytes += len as u64;
        if member_at(transmit.from).is_some_and(|i| honest_flags.get(i) == Some(&true)) {
            t.honest_packets += 1;
            t.honest_bytes += len as u64;
            t.max_honest_packet = t.max_honest_packet.max(len);
        }
        Verdict::Pass
    });

    let all_decided = |sim: &Simulation| {
        honest.iter().all(|&i| {
            sim.node::<HonestNode>(ids[i])
                .replica()
                .is_some_and(|r| r.decision().is_some())
        })
    };
    let deadline = Timestamp::from_duration(scenario.deadline);
    let step = Duration::from_millis(10);
    let mut decided = false;
    while sim.now() < deadline {
        let next = (sim.now() + step).min(deadline);
        sim.run_until(next);
        if scenario.trace {
            let line: Vec<String> = honest
                .iter()
                .map(|&i| match sim.node::<HonestNode>(ids[i]).replica() {
                    Some(r) => format!(
                        "{i}:r{}{}{}",
                        r.round(),
                        if r.decision().is_some() { "D" } else { "" },
                        (0..n)
                            .map(
                                |m| if r.vote_of(crate::Phase::Prevote, r.round(), m).is_some() {
                                    '+'
                                } else {
                                    '.'
                                }
                            )
                            .collect::<String>()
                    ),
                    None => format!("{i}:-"),
                })
                .collect();
            eprintln!(
                "{:>6} ms {}",
                sim.now().since_origin().as_millis(),
                line.join(" ")
            );
        }
        if all_decided(&sim) {
            decided = true;
            break;
        }
    }
    if decided {
        sim.run_for(scenario.after_decision);
    }

    let mut drops: Vec<(DropReason, u64)> = DropReason::ALL.iter().map(|r| (*r, 0)).collect();
    let mut outcomes = Vec::with_capacity(honest.len());
    let mut conflicting = 0;
    let mut verifications = 0;
    let mut max_round = 0;
    let mut honest_signatures = 0;
    for &index in &honest {
        let replica = sim.node::<HonestNode>(ids[index]).replica();
        let decided = replica.and_then(|r| r.decision()).map(|d| {
            (
                d.value,
                d.round,
                d.at.since_origin(),
                d.certificate.verify(&membership).is_ok(),
            )
        });
        if let Some(replica) = replica {
            let stats = replica.stats();
            conflicting += stats.conflicting_certificates;
            honest_signatures += stats.signatures_made;
            verifications += stats.signature_verifications;
            max_round = max_round.max(replica.round());
            for (reason, count) in &mut drops {
                *count += stats.drops(*reason);
            }
        }
        outcomes.push(HonestOutcome {
            index,
            input: inputs[index],
            decided: decided.map(|(v, r, t, _)| (v, r, t)),
            certificate_valid: decided.is_some_and(|d| d.3),
            locked: replica.and_then(Replica::locked),
            valid: replica.and_then(Replica::valid),
            equivocations_seen: replica.map_or(0, |r| r.stats().equivocations_seen),
        });
    }
    let all_decided_at = outcomes
        .iter()
        .map(|o| o.decided.map(|d| d.2))
        .collect::<Option<Vec<_>>>()
        .and_then(|times| times.into_iter().max());
    let traffic = traffic.borrow();
    RunResult {
        seed: scenario.seed,
        byzantine,
        honest: outcomes,
        byzantine_values: shown,
        all_decided_at,
        conflicting_certificates: conflicting,
        honest_packets: traffic.honest_packets,
        honest_bytes: traffic.honest_bytes,
        all_packets: traffic.all_packets,
        all_bytes: traffic.all_bytes,
        max_honest_packet: traffic.max_honest_packet,
        drops,
        verifications,
        max_round,
        honest_signatures,
        shared_verifications: verifier.0.lock().map_or(0, |memo| memo.len() as u64),
    }
}
