//! Helpers shared by the integration tests: a group of members with known
//! keys, signed artifacts, and packets in and out of one replica.

#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use std::time::Duration;
use tgp_bft::message::{proposal_digest, sign, vote_digest};
use tgp_bft::wire::{Header, Item, Packet, Status};
use tgp_bft::{BftConfig, Membership, Phase, Received, Replica, Value};
use tgp_proto::Timestamp;

/// The instance every helper uses.
pub const INSTANCE: u64 = 1;

/// `n` members with keys derived from their index.
pub struct Group {
    pub keys: Vec<SigningKey>,
    pub membership: Membership,
}

pub fn value(tag: u8) -> Value {
    [tag; 32]
}

pub fn at_ms(ms: u64) -> Timestamp {
    Timestamp::from_duration(Duration::from_millis(ms))
}

impl Group {
    pub fn new(n: usize) -> Self {
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| {
                let mut seed = [0x5a; 32];
                seed[0] = i as u8;
                SigningKey::from_bytes(&seed)
            })
            .collect();
        let membership = Membership::new(keys.iter().map(SigningKey::verifying_key).collect())
            .expect("distinct keys");
        Group { keys, membership }
    }

    /// Member `index`'s replica, started at time 0, wanting `input`.
    pub fn replica(&self, index: usize, input: Value, config: BftConfig) -> Replica {
        Replica::new(
            Timestamp::ZERO,
            self.membership.clone(),
            self.keys[index].clone(),
            INSTANCE,
            input,
            config,
        )
        .expect("member")
    }

    /// One item with the votes of `signers` for (phase, round, value).
    pub fn votes(&self, signers: &[usize], phase: Phase, round: u32, value: Value) -> Item {
        let digest = vote_digest(self.membership.id(), INSTANCE, phase, round, &value);
        let mut sorted = signers.to_vec();
        sorted.sort_unstable();
        Item::Votes {
            phase,
            round,
            value,
            signers: sorted.iter().fold(0, |acc, s| acc | (1u128 << s)),
            signatures: sorted
                .iter()
                .map(|&s| sign(&self.keys[s], &digest))
                .collect(),
        }
    }

    /// The proposal of `round`, signed by its proposer.
    pub fn proposal(&self, round: u32, value: Value, valid_round: Option<u32>) -> Item {
        let proposer = self.membership.proposer(INSTANCE, round);
        let digest = proposal_digest(self.membership.id(), INSTANCE, round, valid_round, &value);
        Item::Proposal {
            round,
            value,
            valid_round,
            signature: sign(&self.keys[proposer], &digest),
        }
    }

    /// A packet from `sender` carrying `items`, with an empty status.
    pub fn packet(&self, sender: usize, items: Vec<Item>) -> Vec<u8> {
        self.packet_with(sender, Status::default(), items)
    }

    pub fn packet_with(&self, sender: usize, status: Status, items: Vec<Item>) -> Vec<u8> {
        let packet = Packet {
            header: Header {
                group: self.membership.group_tag(),
                instance: INSTANCE,
                sender: sender as u8,
                status,
            },
            items,
        };
        let mut bytes = Vec::new();
        packet.encode(self.membership.len(), &mut bytes);
        bytes
    }

    /// Delivers `items` to `replica` from `sender` at `now`; none may be
    /// dropped.
    pub fn deliver(&self, replica: &mut Replica, now: Timestamp, sender: usize, items: Vec<Item>) {
        let got = self.deliver_raw(replica, now, sender, items);
        assert_eq!(got.first_drop, None, "{got:?}");
    }

    /// Delivers `items` and returns what the packet did.
    pub fn deliver_raw(
        &self,
        replica: &mut Replica,
        now: Timestamp,
        sender: usize,
        items: Vec<Item>,
    ) -> Received {
        let bytes = self.packet(sender, items);
        replica.handle_datagram(now, Some(sender), &bytes)
    }
}

/// Everything `replica` sends at `now`, parsed: (to, bytes, packet).
pub fn drain(replica: &mut Replica, now: Timestamp) -> Vec<(usize, Vec<u8>, Packet)> {
    let n = replica.membership().len();
    let mut out = Vec::new();
    loop {
        let mut buffer = Vec::new();
        let Some(transmit) = replica.poll_transmit(now, &mut buffer) else {
            return out;
        };
        assert_eq!(transmit.len, buffer.len());
        let packet = Packet::parse(&buffer, n).expect("a replica emits valid packets");
        out.push((transmit.to, buffer, packet));
    }
}
