//! Helpers shared by the handshake test suites: deterministic identities,
//! handshake construction, and a simulator node wrapping a handshake.

#![allow(dead_code)] // each test binary uses a different subset

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::net::SocketAddr;
use tgp_proto::crypto::SigningKey;
use tgp_proto::handshake::{Handshake, HandshakeConfig, HandshakeEvent};
use tgp_proto::Timestamp;
use tgp_sim::Node;

/// Wall-clock time both sides pretend it is at the start of a test.
pub const TEST_UNIX_TIME_MS: u64 = 1_800_000_000_000;

/// A deterministic identity from a seed.
pub fn identity(seed: u64) -> SigningKey {
    SigningKey::generate(&mut ChaCha20Rng::seed_from_u64(seed ^ 0x1d3e_a7c1))
}

/// Two handshakes that expect each other, started at `now`.
pub fn pair(seed: u64, config: &HandshakeConfig, now: Timestamp) -> (Handshake, Handshake) {
    let alice = identity(seed.wrapping_mul(2));
    let bob = identity(seed.wrapping_mul(2) + 1);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let a = Handshake::new(
        now,
        TEST_UNIX_TIME_MS,
        alice.clone(),
        bob.verifying_key(),
        config.clone(),
        &mut rng,
    )
    .expect("valid config");
    let b = Handshake::new(
        now,
        TEST_UNIX_TIME_MS,
        bob,
        alice.verifying_key(),
        config.clone(),
        &mut rng,
    )
    .expect("valid config");
    (a, b)
}

/// A simulator node running one handshake towards one peer address.
/// Records every event with its time and every packet it sent.
pub struct HandshakeNode {
    /// The handshake under test.
    pub handshake: Handshake,
    /// Where its packets go.
    pub peer: SocketAddr,
    /// Events with the time they were polled.
    pub events: Vec<(Timestamp, HandshakeEvent)>,
    /// Largest packet sent.
    pub largest_packet: usize,
    /// Keep a copy of every packet sent (for replay tests).
    pub record: Option<Vec<Vec<u8>>>,
}

impl HandshakeNode {
    /// Wraps a handshake.
    pub fn new(handshake: Handshake, peer: SocketAddr) -> Self {
        HandshakeNode {
            handshake,
            peer,
            events: Vec::new(),
            largest_packet: 0,
            record: None,
        }
    }

    fn drain_events(&mut self, now: Timestamp) {
        while let Some(event) = self.handshake.poll_event() {
            self.events.push((now, event));
        }
    }
}

impl Node for HandshakeNode {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        let _ = self.handshake.handle_packet(now, datagram);
        self.drain_events(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        let packet = transmit(&mut self.handshake, now)?;
        self.drain_events(now);
        self.largest_packet = self.largest_packet.max(packet.len());
        if let Some(record) = &mut self.record {
            record.push(packet.clone());
        }
        Some((self.peer, packet))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.handshake.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.handshake.handle_timeout(now);
        self.drain_events(now);
    }
}

/// Runs two handshakes against each other over a perfect, instant link
/// (no simulator), in virtual time, until both are finished or `end`.
/// `deliver(from_a, packet)` may drop or alter packets; returns every
/// packet sent, tagged with its sender (true = a).
pub fn pump(
    a: &mut Handshake,
    b: &mut Handshake,
    end: Timestamp,
    mut deliver: impl FnMut(bool, &[u8]) -> Option<Vec<u8>>,
) -> Vec<(bool, Vec<u8>)> {
    let mut now = Timestamp::ZERO;
    let mut sent = Vec::new();
    for _ in 0..1_000_000 {
        let mut progressed = true;
        while progressed {
            progressed = false;
            while let Some(packet) = transmit(a, now) {
                sent.push((true, packet.clone()));
                if let Some(p) = deliver(true, &packet) {
                    let _ = b.handle_packet(now, &p);
                }
                progressed = true;
            }
            while let Some(packet) = transmit(b, now) {
                sent.push((false, packet.clone()));
                if let Some(p) = deliver(false, &packet) {
                    let _ = a.handle_packet(now, &p);
                }
                progressed = true;
            }
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= end => {
                now = t.max(now);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            _ => return sent,
        }
    }
    panic!("pump did not settle");
}

/// The next packet `handshake` sends at `now`, in a buffer of its own.
pub fn transmit(handshake: &mut Handshake, now: Timestamp) -> Option<Vec<u8>> {
    let mut packet = Vec::new();
    handshake.poll_transmit(now, &mut packet)?;
    Some(packet)
}
