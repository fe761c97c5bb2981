//! Counters and estimates a data plane reports ([`DataPlaneStats`]), with
//! its drops by reason ([`DropCounts`]).

use super::histogram::DelayHistogram;
use crate::crypto::aead::OpenError;
use std::time::Duration;

/// Packets and segments dropped, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Datagrams too short to be data packets.
    pub truncated: u64,
    /// Datagrams that are not data packets.
    pub not_data: u64,
    /// Data packets of a session we hold no keys for.
    pub unknown_session: u64,
    /// Packets that failed authentication.
    pub forged: u64,
    /// Packets already received (replays, flooded duplicates).
    pub replayed: u64,
    /// Packets older than the replay window.
    pub stale: u64,
    /// Authentic packets whose frames did not parse.
    pub malformed: u64,
    /// Segments refused because the send queue was full.
    pub queue_full: u64,
    /// Segments refused by the queue manager.
    pub queue_delay: u64,
    /// Segments refused as too large.
    pub too_large: u64,
    /// Deadline segments that expired before leaving the send queue.
    pub expired_in_queue: u64,
    /// Deadline segments that arrived after their deadline.
    pub arrived_late: u64,
}

/// Counters and estimates of a [`DataPlane`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataPlaneStats {
    /// Datagrams emitted.
    pub datagrams_sent: u64,
    /// Bytes emitted (UDP payload).
    pub bytes_sent: u64,
    /// Datagrams received (any).
    pub datagrams_received: u64,
    /// Bytes received (any).
    pub bytes_received: u64,
    /// Segments accepted by `send_segment`.
    pub segments_queued: u64,
    /// Segments sent for the first time.
    pub segments_sent: u64,
    /// Segments handed to the caller.
    pub segments_delivered: u64,
    /// Payload bytes handed to the caller.
    pub bytes_delivered: u64,
    /// Proactive repair symbols sent.
    pub proactive_repairs_sent: u64,
    /// Reactive (fresh, requested) repair symbols sent.
    pub reactive_repairs_sent: u64,
    /// Paced datagrams (data or repair) sent with less than one more
    /// datagram waiting in the send queue: the source, not the pace, set
    /// the rate then.
    pub paced_short_of_data: u64,
    /// Paced datagrams sent while the pace was below the bottleneck
    /// estimate (draining a queue, or a probe's down phase).
    pub paced_below_estimate: u64,
    /// Paced datagrams sent in all.
    pub paced_sent: u64,
    /// Source symbols recovered by FEC decoding here.
    pub fec_recovered: u64,
    /// Source symbols received that were already known.
    pub redundant_sources: u64,
    /// Repair symbols received for groups already complete or full.
    pub redundant_repairs: u64,
    /// Drops by reason.
    pub drops: DropCounts,
    /// Loss of the peer's packets measured here (0..1).
    pub loss_inbound: f64,
    /// Loss of our packets as the peer reports it (0..1).
    pub loss_outbound: f64,
    /// Current proactive repair per source symbol for reliable groups.
    pub redundancy: f64,
    /// Current pacing rate, bits per second.
    pub pacing_rate_bits_per_second: u64,
    /// Bottleneck estimate, bits per second.
    pub bottleneck_bits_per_second: u64,
    /// Minimum round-trip time.
    pub min_rtt: Duration,
    /// Smoothed round-trip time.
    pub smoothed_rtt: Duration,
    /// Delay the tunnel added to the segments it delivered here: from the
    /// peer's `send_segment` to our delivery, less the least such time
    /// seen (the path's base one-way delay). Sampled: every deadline
    /// segment, and a reliable segment about every
    /// [`STAMP_INTERVAL`](super::STAMP_INTERVAL).
    pub added_delay: DelayHistogram,
}

impl DropCounts {
    /// Counts a datagram that did not open.
    pub(crate) fn count_open_error(&mut self, error: OpenError) {
        match error {
            OpenError::Truncated => self.truncated += 1,
            OpenError::NotData => self.not_data += 1,
            OpenError::UnknownSession => self.unknown_session += 1,
            OpenError::Forged => self.forged += 1,
            OpenError::Replayed => self.replayed += 1,
            OpenError::Stale => self.stale += 1,
        }
    }
}
