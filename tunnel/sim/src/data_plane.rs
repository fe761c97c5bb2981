//! A simulator endpoint around a [`DataPlane`], with traffic sources and
//! delivery checks, shared by the delivery tests and the `tgp-bench sim`
//! benchmark.
//!
//! Segments carry their own identity in their first 16 bytes so the
//! receiving node can check what it gets: for `Reliable` traffic the flow
//! position and flow id (checked for exactly-once, in-order delivery per
//! flow); for `Deadline` traffic an index and the creation time (checked
//! for duplicates and lateness against the simulator's clock).

use crate::Node;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::delivery::{DataPlane, FlowId};
use tgp_proto::DeliveryClass;
use tgp_proto::Timestamp;

/// A saturating `Reliable` transfer over `flows` flows, round robin.
#[derive(Clone, Debug)]
pub struct BulkSource {
    /// Number of flows (ids 0..flows).
    pub flows: u64,
    /// Bytes to transfer in total.
    pub total_bytes: u64,
    /// Bytes per segment (at least 16).
    pub segment_size: usize,
    /// Bytes accepted by the data plane so far.
    pub accepted_bytes: u64,
    /// Segments accepted so far.
    pub accepted_segments: u64,
    next_flow: u64,
    flow_next: Vec<u64>,
}

impl BulkSource {
    /// A transfer of `total_bytes` in `segment_size` segments over `flows`.
    pub fn new(flows: u64, total_bytes: u64, segment_size: usize) -> Self {
        BulkSource {
            flows: flows.max(1),
            total_bytes,
            segment_size: segment_size.max(16),
            accepted_bytes: 0,
            accepted_segments: 0,
            next_flow: 0,
            flow_next: vec![0; flows.max(1) as usize],
        }
    }

    /// Whether every byte has been accepted.
    pub fn done(&self) -> bool {
        self.accepted_bytes >= self.total_bytes
    }

    fn top_up(&mut self, now: Timestamp, plane: &mut DataPlane) {
        let watermark =
            ((plane.stats().pacing_rate_bits_per_second / 8) as usize / 100).max(32 * 1024);
        while !self.done() && plane.queued_bytes() < watermark {
            let size =
                (self.total_bytes - self.accepted_bytes).min(self.segment_size as u64) as usize;
            let size = size.max(16);
            let flow = self.next_flow;
            let position = self.flow_next[flow as usize];
            let mut segment = vec![0xa5u8; size];
            segment[..8].copy_from_slice(&position.to_be_bytes());
            segment[8..16].copy_from_slice(&flow.to_be_bytes());
            if plane
                .send_segment(now, flow, DeliveryClass::Reliable, &segment)
                .is_err()
            {
                break;
            }
            self.flow_next[flow as usize] += 1;
            self.next_flow = (flow + 1) % self.flows;
            self.accepted_bytes += size as u64;
            self.accepted_segments += 1;
        }
    }
}

/// A periodic `Deadline` stream (a game): `count` segments of `size`
/// bytes every `interval`.
#[derive(Clone, Debug)]
pub struct PeriodicSource {
    /// The flow.
    pub flow: FlowId,
    /// Time between segments.
    pub interval: Duration,
    /// Bytes per segment (at least 16).
    pub size: usize,
    /// Deadline of each segment.
    pub deadline: Duration,
    /// Segments to send.
    pub count: u64,
    /// Segments offered so far.
    pub offered: u64,
    /// Segments the data plane accepted.
    pub accepted: u64,
    next_at: Timestamp,
}

impl PeriodicSource {
    /// A stream starting at `start`.
    pub fn new(
        flow: FlowId,
        start: Timestamp,
        interval: Duration,
        size: usize,
        deadline: Duration,
        count: u64,
    ) -> Self {
        PeriodicSource {
            flow,
            interval,
            size: size.max(16),
            deadline,
            count,
            offered: 0,
            accepted: 0,
            next_at: start,
        }
    }

    fn next_time(&self) -> Option<Timestamp> {
        (self.offered < self.count).then_some(self.next_at)
    }

    fn tick(&mut self, now: Timestamp, plane: &mut DataPlane) {
        while self.offered < self.count && now >= self.next_at {
            let mut segment = vec![0x5au8; self.size];
            segment[..8].copy_from_slice(&self.offered.to_be_bytes());
            segment[8..16].copy_from_slice(&now.as_nanos().to_be_bytes());
            if plane
                .send_segment(
                    now,
                    self.flow,
                    DeliveryClass::Deadline(self.deadline),
                    &segment,
                )
                .is_ok()
            {
                self.accepted += 1;
            }
            self.offered += 1;
            self.next_at += self.interval;
        }
    }
}

/// What a node checked about the segments delivered to it.
#[derive(Clone, Debug, Default)]
pub struct DeliveryReport {
    /// Reliable segments delivered.
    pub reliable_segments: u64,
    /// Reliable payload bytes delivered.
    pub reliable_bytes: u64,
    /// Reliable segments delivered twice or out of order within their flow.
    pub order_violations: u64,
    /// Deadline segments delivered.
    pub deadline_segments: u64,
    /// Deadline payload bytes delivered.
    pub deadline_bytes: u64,
    /// Deadline segments delivered within their deadline by the simulator's
    /// clock.
    pub deadline_on_time: u64,
    /// Deadline segments delivered more than once.
    pub deadline_duplicates: u64,
    /// Deadline delivery latencies in microseconds, in arrival order.
    pub deadline_latencies_micros: Vec<u64>,
    /// When the last segment was delivered.
    pub last_delivery_at: Timestamp,
    flow_next: HashMap<FlowId, u64>,
    deadline_seen: HashSet<u64>,
}

/// A [`Node`] wrapping a [`DataPlane`] that talks to one peer.
pub struct DataPlaneNode {
    /// The data plane under test.
    pub plane: DataPlane,
    /// Where its datagrams go.
    pub peer: SocketAddr,
    /// Bulk traffic to send, if any.
    pub bulk: Option<BulkSource>,
    /// Periodic deadline traffic to send, if any.
    pub periodic: Option<PeriodicSource>,
    /// Checks of what was delivered here.
    pub report: DeliveryReport,
    buffer: Vec<u8>,
}

impl DataPlaneNode {
    /// A node sending to `peer`, with no traffic of its own.
    pub fn new(plane: DataPlane, peer: SocketAddr) -> Self {
        DataPlaneNode {
            plane,
            peer,
            bulk: None,
            periodic: None,
            report: DeliveryReport::default(),
            buffer: Vec::with_capacity(2048),
        }
    }

    /// Adds a bulk source.
    pub fn with_bulk(mut self, bulk: BulkSource) -> Self {
        self.bulk = Some(bulk);
        self
    }

    /// Adds a periodic deadline source.
    pub fn with_periodic(mut self, periodic: PeriodicSource) -> Self {
        self.periodic = Some(periodic);
        self
    }

    fn drain_deliveries(&mut self, now: Timestamp) {
        while let Some(delivered) = self.plane.poll_delivery() {
            let report = &mut self.report;
            report.last_delivery_at = now;
            let segment = &delivered.segment;
            let head = |range: std::ops::Range<usize>| {
                segment
                    .get(range)
                    .and_then(|b| b.try_into().ok())
                    .map_or(u64::MAX, u64::from_be_bytes)
            };
            match delivered.class {
                DeliveryClass::Reliable | DeliveryClass::Segment => {
                    let position = head(0..8);
                    let flow = head(8..16);
                    let next = report.flow_next.entry(flow).or_insert(0);
                    // Segment mode may reorder; strict flows may not.
                    let strict = delivered.class == DeliveryClass::Reliable;
                    if (strict && position != *next) || flow != delivered.flow {
                        report.order_violations += 1;
                    }
                    *next = (*next).max(position.saturating_add(1));
                    report.reliable_segments += 1;
                    report.reliable_bytes += segment.len() as u64;
                }
                DeliveryClass::Deadline(deadline) => {
                    let index = head(0..8);
                    let created = Timestamp::from_nanos(head(8..16));
                    if !report.deadline_seen.insert(index) {
                        report.deadline_duplicates += 1;
                        continue;
                    }
                    let latency = now - created;
                    report.deadline_segments += 1;
                    report.deadline_bytes += segment.len() as u64;
                    if latency <= deadline {
                        report.deadline_on_time += 1;
                    }
                    report
                        .deadline_latencies_micros
                        .push(latency.as_micros() as u64);
                }
            }
        }
    }
}

impl Node for DataPlaneNode {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, datagram: &[u8]) {
        // The data plane opens packets in place: give it a copy.
        self.buffer.clear();
        self.buffer.extend_from_slice(datagram);
        let _ = self.plane.handle_datagram(now, &mut self.buffer);
        self.drain_deliveries(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        if let Some(bulk) = &mut self.bulk {
            bulk.top_up(now, &mut self.plane);
        }
        let mut datagram = Vec::with_capacity(2048);
        self.plane.poll_transmit(now, &mut datagram)?;
        Some((self.peer, datagram))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let periodic = self.periodic.as_ref().and_then(PeriodicSource::next_time);
        match (self.plane.poll_timeout(), periodic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(periodic) = &mut self.periodic {
            periodic.tick(now, &mut self.plane);
        }
        self.plane.handle_timeout(now);
        self.drain_deliveries(now);
    }
}
