//! A loss-based TCP-like flow as simulator nodes, to share a bottleneck
//! with tgp: Reno congestion control (slow start, additive increase,
//! halving on loss, retransmission timeout) with SACK-based loss recovery
//! as every modern TCP has. Packets carry a sequence number; the receiver
//! answers every packet with a cumulative acknowledgement and up to eight
//! SACK blocks.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::Timestamp;
use tgp_sim::Node;

/// Bytes per data packet on the wire (payload counted as goodput).
pub const PACKET_BYTES: usize = 1240;
/// Payload bytes per data packet.
pub const PAYLOAD_BYTES: u64 = 1200;
const SACK_BLOCKS: usize = 8;

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

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
    sacked: BTreeSet<u64>,
    retransmitted: BTreeSet<u64>,
    hole_cursor: u64,
    srtt: Option<Duration>,
    rto: Duration,
    rto_at: Option<Timestamp>,
    sent_at: HashMap<u64, Timestamp>,
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
            sacked: BTreeSet::new(),
            retransmitted: BTreeSet::new(),
            hole_cursor: 0,
            srtt: None,
            rto: Duration::from_secs(1),
            rto_at: None,
            sent_at: HashMap::new(),
            start,
        }
    }

    fn packet(seq: u64) -> Vec<u8> {
        let mut packet = vec![0u8; PACKET_BYTES];
        packet[..8].copy_from_slice(&seq.to_be_bytes());
        packet
    }

    /// Packets believed in the network: sent, not acknowledged, not
    /// SACKed, not presumed lost (holes below the highest SACK) unless
    /// retransmitted.
    fn pipe(&self) -> f64 {
        let outstanding = self.high_sent.saturating_sub(self.snd_una);
        // Holes below the highest SACK, less those already retransmitted.
        let presumed_lost = self.sacked.iter().next_back().map_or(0, |&h| {
            (h - self.snd_una)
                .saturating_sub(self.sacked.len() as u64 - 1)
                .saturating_sub(self.retransmitted.len() as u64)
        });
        outstanding.saturating_sub(self.sacked.len() as u64 + presumed_lost) as f64
    }

    fn next_hole(&mut self) -> Option<u64> {
        let highest = *self.sacked.iter().next_back()?;
        let mut seq = self.hole_cursor.max(self.snd_una);
        while seq < highest {
            if !self.sacked.contains(&seq) && !self.retransmitted.contains(&seq) {
                self.hole_cursor = seq + 1;
                return Some(seq);
            }
            seq += 1;
        }
        self.hole_cursor = seq;
        None
    }
}

impl Node for RenoSender {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        let Some(cum) = read_u64(datagram, 0) else {
            return;
        };
        let blocks = usize::from(*datagram.get(8).unwrap_or(&0)).min(SACK_BLOCKS);
        for i in 0..blocks {
            if let (Some(start), Some(end)) = (
                read_u64(datagram, 9 + 16 * i),
                read_u64(datagram, 17 + 16 * i),
            ) {
                for seq in start.max(cum)..end.min(self.high_sent) {
                    self.sacked.insert(seq);
                }
            }
        }
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
            self.sacked = self.sacked.split_off(&cum);
            self.retransmitted = self.retransmitted.split_off(&cum);
            self.next_seq = self.next_seq.max(cum);
            self.dupacks = 0;
            match self.recover {
                Some(recover) if cum > recover => {
                    self.recover = None;
                    self.retransmitted.clear();
                    self.cwnd = self.ssthresh;
                }
                Some(_) => {}
                None if self.cwnd < self.ssthresh => self.cwnd += 1.0,
                None => self.cwnd += 1.0 / self.cwnd,
            }
            self.rto_at = (self.snd_una < self.high_sent).then_some(now + self.rto);
        } else if cum == self.snd_una && self.high_sent > self.snd_una {
            self.dupacks += 1;
            if self.dupacks >= 3 && self.recover.is_none() {
                let flight = (self.high_sent - self.snd_una) as f64;
                self.ssthresh = (flight / 2.0).max(2.0);
                self.cwnd = self.ssthresh;
                self.recover = Some(self.high_sent.saturating_sub(1));
                self.hole_cursor = self.snd_una;
            }
        }
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        if now < self.start || self.pipe() >= self.cwnd {
            return None;
        }
        if self.recover.is_some() {
            if let Some(hole) = self.next_hole() {
                self.retransmitted.insert(hole);
                self.rto_at = Some(now + self.rto);
                return Some((self.peer, Self::packet(hole)));
            }
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
        if self.high_sent == 0 {
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
                self.sacked.clear();
                self.retransmitted.clear();
                // Everything outstanding is presumed lost: go back.
                self.next_seq = self.snd_una;
                self.high_sent = self.snd_una;
                self.rto = (self.rto * 2).min(Duration::from_secs(10));
                self.rto_at = Some(now + self.rto);
            }
        }
    }
}

/// The receiving side: acknowledges every packet cumulatively, with SACK
/// blocks for what arrived beyond a hole.
pub struct RenoReceiver {
    peer: SocketAddr,
    next_expected: u64,
    out_of_order: BTreeSet<u64>,
    pending_acks: u32,
    /// Packets delivered in order so far.
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

    fn sack_blocks(&self) -> Vec<(u64, u64)> {
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        for &seq in &self.out_of_order {
            match blocks.last_mut() {
                Some((_, end)) if *end == seq => *end += 1,
                _ => blocks.push((seq, seq + 1)),
            }
        }
        // The highest blocks matter most to the sender.
        blocks.into_iter().rev().take(SACK_BLOCKS).collect()
    }
}

impl Node for RenoReceiver {
    fn handle_datagram(&mut self, _now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        let Some(seq) = read_u64(datagram, 0) else {
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
        let blocks = self.sack_blocks();
        let mut ack = Vec::with_capacity(40 + 16 * blocks.len());
        ack.extend_from_slice(&self.next_expected.to_be_bytes());
        ack.push(blocks.len() as u8);
        for (start, end) in blocks {
            ack.extend_from_slice(&start.to_be_bytes());
            ack.extend_from_slice(&end.to_be_bytes());
        }
        ack.resize(ack.len().max(40), 0);
        Some((self.peer, ack))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    fn handle_timeout(&mut self, _now: Timestamp) {}
}
