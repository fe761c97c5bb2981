//! Simulator nodes that carry one flow of the [`crate::tcp`] model: a TCP
//! end talking straight over a link ([`DirectTcpNode`], for calibration
//! against real kernels), or a TCP end behind a tgp [`DataPlane`]
//! ([`TunnelTcpNode`]), the way a kernel TCP reaches the network through
//! `tgp up`: every segment the TCP emits (header and synthetic payload,
//! [`crate::tcp::segment`]) goes to [`DataPlane::send_segment`] as
//! `Reliable` on one flow (a refusal is a loss the TCP must recover
//! from), and what the data plane delivers goes to the TCP. ACKs take the
//! reverse data plane.
//!
//! Both nodes record, per data segment arriving at a receiver, the
//! *added delay*: arrival time minus the time the segment was handed on
//! (`send_segment`, or the link for direct flows) minus the path's base
//! one-way delay — tgp's queueing, FEC waits, repair round trips and
//! reordering holds (plus bottleneck queueing and serialisation).

use crate::tcp::segment::{self, payload_matches};
use crate::tcp::TcpEndpoint;
use crate::Node;
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::delivery::{DataPlane, FlowId, SendError};
use tgp_proto::{DeliveryClass, Timestamp};

/// What a flow node saw arrive.
#[derive(Clone, Debug, Default)]
pub struct FlowReport {
    /// Data segments that arrived (at a receiver).
    pub data_segments: u64,
    /// ACK segments that arrived (at a sender).
    pub ack_segments: u64,
    /// Added delay of each data segment, microseconds, in arrival order.
    pub added_delay_micros: Vec<u64>,
    /// Added delay of each ACK, microseconds, in arrival order.
    pub ack_added_delay_micros: Vec<u64>,
    /// Data segments that began below the highest byte seen before them
    /// (retransmissions and reordering).
    pub late_segments: u64,
    /// Segments that arrived after one handed on later than them (the
    /// path or the tunnel reordered them).
    pub reordered: u64,
    /// Datagrams or deliveries that did not parse as segments.
    pub decode_errors: u64,
    /// Data segments whose payload was not the stream's bytes.
    pub payload_errors: u64,
    /// When the last segment arrived.
    pub last_arrival: Timestamp,
    highest_end: u64,
    latest_stamp: Timestamp,
}

impl FlowReport {
    fn record(
        &mut self,
        now: Timestamp,
        bytes: &[u8],
        base_delay: Duration,
        tcp: &mut TcpEndpoint,
    ) {
        let decoded = match segment::decode(bytes) {
            Ok(decoded) => decoded,
            Err(_) => {
                self.decode_errors += 1;
                return;
            }
        };
        self.last_arrival = now;
        if decoded.stamp < self.latest_stamp {
            self.reordered += 1;
        }
        self.latest_stamp = self.latest_stamp.max(decoded.stamp);
        let added = (now - decoded.stamp).saturating_sub(base_delay).as_micros() as u64;
        let seg = &decoded.segment;
        if seg.payload_len > 0 {
            self.data_segments += 1;
            self.added_delay_micros.push(added);
            if seg.seq < self.highest_end {
                self.late_segments += 1;
            }
            self.highest_end = self.highest_end.max(seg.end());
            if !payload_matches(seg.seq, decoded.payload) {
                self.payload_errors += 1;
            }
        } else {
            self.ack_segments += 1;
            self.ack_added_delay_micros.push(added);
        }
        tcp.handle_segment(now, seg);
    }
}

/// The `q`-quantile (0..=1) of `values` (nearest rank), 0 if empty.
pub fn percentile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A TCP end whose segments are datagrams on a link.
#[derive(Debug)]
pub struct DirectTcpNode {
    /// The TCP end.
    pub tcp: TcpEndpoint,
    /// Where its segments go.
    pub peer: SocketAddr,
    /// The link's one-way propagation delay, subtracted from the added
    /// delay.
    pub base_delay: Duration,
    /// What arrived here.
    pub report: FlowReport,
    buffer: Vec<u8>,
}

impl DirectTcpNode {
    /// A node sending `tcp`'s segments to `peer` over a link of one-way
    /// delay `base_delay`.
    pub fn new(tcp: TcpEndpoint, peer: SocketAddr, base_delay: Duration) -> Self {
        DirectTcpNode {
            tcp,
            peer,
            base_delay,
            report: FlowReport::default(),
            buffer: Vec::with_capacity(2048),
        }
    }
}

impl Node for DirectTcpNode {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        self.report
            .record(now, datagram, self.base_delay, &mut self.tcp);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        let seg = self.tcp.poll_segment(now)?;
        segment::encode(&seg, now, &mut self.buffer);
        Some((self.peer, self.buffer.clone()))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.tcp.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.tcp.handle_timeout(now);
    }
}

/// Segments [`DataPlane::send_segment`] refused, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// The send queue was full.
    pub queue_full: u64,
    /// The queue manager dropped it.
    pub queue_delay: u64,
    /// Larger than the data plane's largest segment.
    pub too_large: u64,
    /// No session.
    pub no_session: u64,
}

impl Refusals {
    /// All refusals.
    pub fn total(&self) -> u64 {
        self.queue_full + self.queue_delay + self.too_large + self.no_session
    }

    fn count(&mut self, error: SendError) {
        match error {
            SendError::QueueFull => self.queue_full += 1,
            SendError::QueueDelay => self.queue_delay += 1,
            SendError::TooLarge { .. } => self.too_large += 1,
            SendError::NoSession => self.no_session += 1,
        }
    }
}

/// A TCP end behind a tgp data plane (segment mode).
pub struct TunnelTcpNode {
    /// The TCP end.
    pub tcp: TcpEndpoint,
    /// The data plane its segments go through.
    pub plane: DataPlane,
    /// Where the data plane's datagrams go.
    pub peer: SocketAddr,
    /// The tgp flow the segments are sent on.
    pub flow: FlowId,
    /// The delivery class they get: [`DeliveryClass::Segment`] as the
    /// daemon gives TCP in segment mode (set with
    /// [`TunnelTcpNode::with_class`]).
    pub class: DeliveryClass,
    /// The path's one-way propagation delay, subtracted from the added
    /// delay.
    pub base_delay: Duration,
    /// What arrived here.
    pub report: FlowReport,
    /// Segments the data plane refused.
    pub refusals: Refusals,
    /// Segments the data plane accepted.
    pub accepted: u64,
    segment_buffer: Vec<u8>,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for TunnelTcpNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelTcpNode")
            .field("tcp", &self.tcp)
            .field("peer", &self.peer)
            .field("refusals", &self.refusals)
            .finish_non_exhaustive()
    }
}

impl TunnelTcpNode {
    /// A node whose `tcp` talks through `plane` to the data plane at
    /// `peer`, on tgp flow `flow`; `base_delay` is the path's one-way
    /// propagation delay.
    pub fn new(
        tcp: TcpEndpoint,
        plane: DataPlane,
        peer: SocketAddr,
        flow: FlowId,
        base_delay: Duration,
    ) -> Self {
        TunnelTcpNode {
            tcp,
            plane,
            peer,
            flow,
            class: DeliveryClass::Segment,
            base_delay,
            report: FlowReport::default(),
            refusals: Refusals::default(),
            accepted: 0,
            segment_buffer: Vec::with_capacity(2048),
            buffer: Vec::with_capacity(2048),
        }
    }

    /// The same node, sending its segments with `class`.
    pub fn with_class(mut self, class: DeliveryClass) -> Self {
        self.class = class;
        self
    }

    /// Hands every segment the data plane delivered to the TCP, one at a
    /// time, and whatever the TCP answers to each to the data plane before
    /// the next (a kernel behind a TUN device processes, and ACKs, each
    /// packet as it is written).
    fn drain_deliveries(&mut self, now: Timestamp) {
        while let Some(delivered) = self.plane.poll_delivery() {
            self.report
                .record(now, &delivered.segment, self.base_delay, &mut self.tcp);
            self.pump(now);
        }
    }

    /// Gives the data plane every segment the TCP wants to send now.
    fn pump(&mut self, now: Timestamp) {
        while let Some(seg) = self.tcp.poll_segment(now) {
            segment::encode(&seg, now, &mut self.segment_buffer);
            match self
                .plane
                .send_segment(now, self.flow, self.class, &self.segment_buffer)
            {
                Ok(()) => self.accepted += 1,
                Err(error) => self.refusals.count(error),
            }
        }
    }
}

impl Node for TunnelTcpNode {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        // The data plane opens packets in place: give it a copy.
        self.buffer.clear();
        self.buffer.extend_from_slice(datagram);
        let _ = self.plane.handle_datagram(now, &mut self.buffer);
        self.drain_deliveries(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        self.pump(now);
        let mut datagram = Vec::with_capacity(2048);
        self.plane.poll_transmit(now, &mut datagram)?;
        Some((self.peer, datagram))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.plane.poll_timeout(), self.tcp.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.tcp.handle_timeout(now);
        self.plane.handle_timeout(now);
        self.drain_deliveries(now);
    }
}
