//! Small reference nodes for exercising links: a [`Pinger`] that sends
//! numbered datagrams on a fixed schedule and a [`Sink`] that records what
//! arrives. Useful as cross traffic or to measure a link.

use crate::Node;
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::Timestamp;

/// Sends `count` datagrams to one address, the `n`-th (from 0) at
/// `start + n * interval`. Each datagram is `size` bytes (at least 8): the
/// sequence number `n` as little-endian `u64`, then zeros. Ignores what it
/// receives.
#[derive(Clone, Debug)]
pub struct Pinger {
    to: SocketAddr,
    count: u64,
    interval: Duration,
    size: usize,
    start: Timestamp,
    /// Datagrams made due by `handle_timeout` (sent or waiting).
    due: u64,
    sent: u64,
}

impl Pinger {
    /// A pinger sending `count` datagrams of `size` bytes (raised to 8) to
    /// `to`, one every `interval`, starting at time zero.
    pub fn new(to: SocketAddr, count: u64, interval: Duration, size: usize) -> Self {
        Pinger {
            to,
            count,
            interval,
            size: size.max(8),
            start: Timestamp::ZERO,
            due: 0,
            sent: 0,
        }
    }

    /// The same pinger, sending its first datagram at `start`.
    pub fn starting_at(mut self, start: Timestamp) -> Self {
        self.start = start;
        self
    }

    /// When datagram `seq` is scheduled to be sent.
    pub fn send_time(&self, seq: u64) -> Timestamp {
        let offset = self.interval.as_nanos().saturating_mul(u128::from(seq));
        self.start + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// Datagrams sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

impl Node for Pinger {
    fn handle_datagram(&mut self, _now: Timestamp, _from: SocketAddr, _datagram: &[u8]) {}

    fn poll_transmit(&mut self, _now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        if self.sent >= self.due {
            return None;
        }
        let mut datagram = vec![0; self.size];
        datagram[..8].copy_from_slice(&self.sent.to_le_bytes());
        self.sent += 1;
        Some((self.to, datagram))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        (self.due < self.count).then(|| self.send_time(self.due))
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        while self.due < self.count && self.send_time(self.due) <= now {
            self.due += 1;
        }
    }
}

/// One datagram recorded by a [`Sink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// When it arrived.
    pub time: Timestamp,
    /// Who sent it.
    pub from: SocketAddr,
    /// Its first 8 bytes as a little-endian `u64` (the [`Pinger`] sequence
    /// number), if it is that long.
    pub seq: Option<u64>,
    /// Its length in bytes.
    pub len: usize,
}

/// Records every datagram it receives; never sends.
#[derive(Clone, Debug, Default)]
pub struct Sink {
    arrivals: Vec<Arrival>,
}

impl Sink {
    /// Everything received, in arrival order.
    pub fn arrivals(&self) -> &[Arrival] {
        &self.arrivals
    }

    /// Total bytes received.
    pub fn bytes(&self) -> u64 {
        self.arrivals.iter().map(|a| a.len as u64).sum()
    }
}

impl Node for Sink {
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) {
        let seq = datagram
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        self.arrivals.push(Arrival {
            time: now,
            from,
            seq,
            len: datagram.len(),
        });
    }

    fn poll_transmit(&mut self, _now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        None
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    fn handle_timeout(&mut self, _now: Timestamp) {}
}
