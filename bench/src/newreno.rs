//! A loss-based TCP-like flow (NewReno: slow start, congestion avoidance,
//! fast retransmit and recovery, retransmission timeout) as simulator
//! nodes, to share a bottleneck with tgp. Packets carry a sequence number;
//! the receiver answers every packet with a cumulative acknowledgement.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::sim::Node;
use tgp_proto::Timestamp;

/// Bytes per data packet on the wire (payload counted as goodput).
pub const PACKET_BYTES: usize = 1240;
/// Payload bytes per data packet.
pub const PAYLOAD_BYTES: u64 = 1200;

/// The sending side.
pub struct RenoSender {
    peer: SocketAddr,
    cwnd: f64,
    ssthresh: f64,
    next_seq: u64,
    snd_una: u64,
    high_sent: u64,
    dupacks: u32,
    recover: Option<u64>,
    retransmit: Option<u64>,
    srtt: Option<Duration>,
    rto: Duration,
    rto_at: Option<Timestamp>,
    sent_at: std::collections::HashMap<u64, Timestamp>,
    start: Timestamp,
}

impl RenoSender {
    /// A sender to `peer` that starts at `start`.
    pub fn new(peer: SocketAddr, start: Timestamp) -> Self {
        RenoSender {
            peer,
            cwnd: 10.0,
            ssthresh: f64::INFINITY,
            next_seq: 0,
            snd_una: 0,
            high_sent: 0,
            dupacks: 0,
            recover: None,
            retransmit: None,
            srtt: None,
            rto: Duration::from_secs(1),
            rto_at: None,
            sent_at: std::collections::HashMap::new(),
            start,
        }
    }

    fn packet(seq: u64) -> Vec<u8> {
        let mut packet = vec![0u8; PACKET_BYTES];
        packet[..8].copy_from_slice(&seq.to_be_bytes());
        packet
    }
}

impl Node for RenoSender {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        let Some(cum) = datagram
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return;
        };
        if cum > self.snd_una {
            if let Some(sent) = self.sent_at.get(&(cum - 1)) {
                let sample = now - *sent;
                let srtt = self.srtt.map_or(sample, |s| (s * 7 + sample) / 8);
                self.srtt = Some(srtt);
                self.rto = (srtt * 2).max(Duration::from_millis(200));
            }
            for seq in self.snd_una..cum {
                self.sent_at.remove(&seq);
            }
            self.snd_una = cum;
            self.next_seq = self.next_seq.max(cum);
            self.dupacks = 0;
            match self.recover {
                Some(recover) if cum > recover => {
                    self.recover = None;
                    self.cwnd = self.ssthresh;
                }
                Some(_) => self.retransmit = Some(cum),
                None if self.cwnd < self.ssthresh => self.cwnd += 1.0,
                None => self.cwnd += 1.0 / self.cwnd,
            }
            self.rto_at = (self.snd_una < self.high_sent).then_some(now + self.rto);
        } else if cum == self.snd_una && self.high_sent > self.snd_una {
            self.dupacks += 1;
            if self.dupacks == 3 && self.recover.is_none() {
                let flight = (self.high_sent - self.snd_una) as f64;
                self.ssthresh = (flight / 2.0).max(2.0);
                self.cwnd = self.ssthresh + 3.0;
                self.recover = Some(self.high_sent.saturating_sub(1));
                self.retransmit = Some(self.snd_una);
            } else if self.recover.is_some() {
                self.cwnd += 1.0;
            }
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        if now < self.start {
            return None;
        }
        if let Some(seq) = self.retransmit.take() {
            self.rto_at = Some(now + self.rto);
            return Some((self.peer, Self::packet(seq)));
        }
        let in_flight = self.next_seq.saturating_sub(self.snd_una) as f64;
        if in_flight >= self.cwnd {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.high_sent = self.high_sent.max(self.next_seq);
        self.sent_at.insert(seq, now);
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rto);
        }
        Some((self.peer, Self::packet(seq)))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        if self.snd_una == 0 && self.high_sent == 0 {
            return Some(self.start);
        }
        self.rto_at
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(at) = self.rto_at {
            if now >= at && self.snd_una < self.high_sent {
                let flight = (self.high_sent - self.snd_una) as f64;
                self.ssthresh = (flight / 2.0).max(2.0);
                self.cwnd = 1.0;
                self.recover = None;
                self.dupacks = 0;
                self.next_seq = self.snd_una;
                self.rto = (self.rto * 2).min(Duration::from_secs(10));
                self.rto_at = Some(now + self.rto);
            }
        }
    }
}

/// The receiving side: acknowledges every packet cumulatively.
pub struct RenoReceiver {
    peer: SocketAddr,
    next_expected: u64,
    out_of_order: BTreeSet<u64>,
    pending_acks: u32,
    /// (time, in-order packets received) samples, one per advance.
    pub delivered_packets: u64,
}

impl RenoReceiver {
    /// A receiver acknowledging to `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        RenoReceiver {
            peer,
            next_expected: 0,
            out_of_order: BTreeSet::new(),
            pending_acks: 0,
            delivered_packets: 0,
        }
    }
}

impl Node for RenoReceiver {
    fn handle_datagram(&mut self, _now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        let Some(seq) = datagram
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return;
        };
        if seq >= self.next_expected {
            self.out_of_order.insert(seq);
            while self.out_of_order.remove(&self.next_expected) {
                self.next_expected += 1;
            }
            self.delivered_packets = self.next_expected;
        }
        self.pending_acks += 1;
    }

    fn poll_transmit(&mut self, _now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        if self.pending_acks == 0 {
            return None;
        }
        self.pending_acks -= 1;
        let mut ack = vec![0u8; 40];
        ack[..8].copy_from_slice(&self.next_expected.to_be_bytes());
        Some((self.peer, ack))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    fn handle_timeout(&mut self, _now: Timestamp) {}
}
