//! The data plane: flooded bilateral delivery of segments after the
//! handshake, as a sans-IO state machine ([`DataPlane`], one per session).
//!
//! What it owns:
//! - sealing and opening packets ([`crate::packet_protection`]) under the
//!   session keys, and rekeying without losing anything in flight;
//! - the two delivery classes ([`DeliveryClass`]): `Reliable` (exactly once,
//!   in order per flow, flows independent) and `Deadline(d)` (at most once,
//!   never late, abandoned by both sides when it cannot make it);
//! - redundancy instead of waiting: systematic Reed-Solomon FEC ([`fec`])
//!   over small groups closed by count or a short timer, proactive repair
//!   sized to the loss the receiver measures, and fresh repair symbols for
//!   whatever is still missing within about one round trip;
//! - bilateral receipts ([`frame::Receipt`]): cumulative point and ranges on
//!   every packet, flooded when idle, confirmed by the sender
//!   (receipt-of-receipt) so both ends free their state and hold the same
//!   [`DeliveryRecord`];
//! - pacing under a BBR-like rate controller ([`rate`]) with an optional
//!   ceiling and an anti-amplification cap; a bounded send queue with an
//!   active queue manager;
//! - keepalive and liveness.
//!
//! # Sequence spaces and time base
//!
//! Every segment the sender takes from its queue gets the next number of
//! one per-direction *sequence* space; FEC groups are contiguous runs of
//! it. Receipts and delivery records speak in sequence numbers. Reliable
//! segments also carry their position in their flow.
//!
//! A `Deadline(d)` segment's deadline runs from when
//! [`DataPlane::send_segment`] took it, in the sender's clock. The
//! receiver maps the sender's clock to its own with the smallest observed
//! `arrival − stamped creation` (offset plus least one-way delay plus
//! least queueing), minus half the minimum round trip as the one-way
//! delay. A segment that arrives (or is decoded) after its mapped deadline
//! is not delivered and is recorded as abandoned; the sender stops
//! repairing it at its own deadline and tells the receiver, which records
//! as abandoned whatever it had not delivered. The receiver's record is
//! authoritative; the sender's record is built only from receipts.
//!
//! # Redundancy
//!
//! Source symbols go out as they come (systematic code), each in its own
//! packet. A group closes when it reaches its size — up to
//! [`DataPlaneConfig::fec_max_group`], fewer at high loss so that the
//! expected repair plus a few fresh rounds stay within GF(2^8)'s 256
//! symbols — or [`DataPlaneConfig::fec_group_timeout`] after its first
//! symbol when nothing more is queued (at most
//! [`DataPlaneConfig::fec_group_max_age`] while data keeps coming, so bulk
//! traffic gets large groups and interactive traffic low latency).
//!
//! On closing, a reliable group gets the expected number of repair
//! symbols for the loss the receiver reports (`k·p/(1−p)`) adjusted by
//! [`DataPlaneConfig::repair_margin`] standard deviations (slightly below
//! by default: surplus symbols are the only waste); a deadline group gets
//! enough that it fails with probability at most
//! [`DataPlaneConfig::deadline_residual_target`] under an upper estimate of
//! the loss, since it cannot wait for a second chance. When a receipt that
//! covers a group and acknowledges a packet sent after the group's last
//! symbol shows it still short by `n`, the sender queues about `n/(1−p)`
//! fresh repair symbols ([`DataPlaneConfig::reactive_repair_factor`]),
//! ahead of new data; if no receipt covers it for two round trips, the
//! same happens on a timer. No back-off: every round trip gets fresh
//! symbols. With nothing queued behind (the tail of a transfer) both
//! amounts aim above the expected need instead, since no later data hides
//! another round trip. A group that has used all 255 − k repair indices
//! sends its unconfirmed sources again.
//!
//! # Receipts
//!
//! A receipt (cumulative point, resolved ranges, abandoned ranges, FEC
//! groups still short, largest packet number and ack delay, bytes received,
//! measured loss) rides on every packet sent while there is news, goes
//! alone after two data packets or 5 ms, and is flooded on a timer (about
//! four per round trip after loss) while the peer has not confirmed it or
//! something is still missing. The sender answers with a confirmation
//! (receipt-of-receipt) of the point below which it holds the receipts'
//! full record; the receiver then stops listing what lies below it.
//!
//! # Overhead per packet
//!
//! 33 bytes of protection (17-byte header + 16-byte tag), a DATA frame
//! header of 4–15 bytes, a symbol header of 3–31 bytes, and receipts or
//! confirmations of the reverse direction when there is something to say
//! (typically 10–40 bytes). [`DataPlane::max_segment_size`] leaves room for
//! all of them.

pub mod fec;
pub mod frame;
pub mod ranges;
pub mod rate;

use crate::class::DeliveryClass;
use crate::keys::SessionKeys;
use crate::packet_protection::{
    AeadAlgorithm, OpenError, PacketHeader, PacketOpener, PacketSealer, PROTECTION_OVERHEAD,
};
use crate::time::Timestamp;
use frame::{Frame, Receipt, Symbol, SymbolClass};
use ranges::RangeSet;
use rate::{RateConfig, RateController, RateSample};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::time::Duration;
use thiserror::Error;

/// A flow chosen by the caller (e.g. a hash of the 5-tuple). Reliable
/// segments are ordered within a flow; flows never wait for each other.
pub type FlowId = u64;

/// Space kept in every packet for receipts and other control frames.
const CONTROL_RESERVE: usize = 16;
/// Largest DATA/REPAIR frame header (type, varints, indices).
const SYMBOL_FRAME_HEADER: usize = 1 + 10 + 1 + 1 + 3;
/// Packets per window of the receiver's loss meter.
const LOSS_WINDOW_PACKETS: u64 = 64;
/// Most ranges a receipt lists.
const RECEIPT_MAX_RANGES: usize = 160;
/// Most abandoned ranges a receipt lists.
const RECEIPT_MAX_ABANDONED: usize = 24;
/// Most FEC needs a receipt lists.
const RECEIPT_MAX_NEEDS: usize = 64;
/// How long, at the pacing rate, the bytes a stream may queue last
/// ([`DataPlane::stream_room`]).
pub const STREAM_QUEUE_TARGET: Duration = Duration::from_millis(20);

/// Tunables of a [`DataPlane`]. [`Default`] suits a 1400-byte path.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// Never send faster than this, bits per second (`rate` option).
    pub rate_ceiling_bits_per_second: Option<u64>,
    /// Pacing rate before anything is measured, bits per second.
    pub initial_rate_bits_per_second: u64,
    /// Largest UDP payload to emit, in bytes.
    pub max_datagram_size: usize,
    /// Bytes the send queue may hold; beyond it [`SendError::QueueFull`].
    pub send_queue_limit_bytes: usize,
    /// Sojourn time in the send queue above which the queue manager starts
    /// refusing segments (CoDel-like), so an inner TCP sees congestion.
    pub send_queue_delay_target: Duration,
    /// The send queue never holds more than this long at the current
    /// pacing rate (nor less than 64 kB): a sender that ignores the queue
    /// manager's drops meets a full queue instead of an ever longer one.
    pub send_queue_max_delay: Duration,
    /// Send a keepalive when nothing was sent for this long.
    pub keepalive_interval: Duration,
    /// The peer is silent when nothing authentic arrived for this long.
    pub idle_timeout: Duration,
    /// Most source symbols in one FEC group.
    pub fec_max_group: usize,
    /// A reliable FEC group closes this long after its first symbol when
    /// no more data is waiting (otherwise it fills by count: bulk traffic
    /// gets large groups, interactive traffic low latency)...
    pub fec_group_timeout: Duration,
    /// ...and at the latest this long after its first symbol.
    pub fec_group_max_age: Duration,
    /// Proactive repair of a reliable group beyond the expected losses, in
    /// standard deviations of the loss count; negative values send a
    /// little less and leave the rest to fresh repair on request, which
    /// wastes less (surplus symbols are the only waste).
    pub repair_margin: f64,
    /// Fresh repair sent when a receipt shows a group still short by `n`:
    /// `max(1, round(n / (1 − loss) × reactive_repair_factor))`. Below 1
    /// it undershoots a little and leaves the rest to the next round trip,
    /// which wastes less at high loss (every symbol beyond what the group
    /// needs is waste); 1 aims at the expected need.
    pub reactive_repair_factor: f64,
    /// Target probability that a deadline group fails with proactive
    /// repair alone.
    pub deadline_residual_target: f64,
    /// Loss assumed for deadline traffic before any is measured, and as a
    /// floor.
    pub deadline_loss_floor: f64,
    /// Highest loss the redundancy and the anti-amplification cap honour
    /// (0..1; values above 0.99 count as 0.99).
    pub max_loss: f64,
    /// Queueing delay above the minimum RTT that counts as congestion.
    pub queue_delay_target: Duration,
    /// Receipts are sent at least this often while there is news.
    pub receipt_interval: Duration,
    /// Most segments between the oldest unconfirmed one and the newest.
    pub max_unresolved_segments: u64,
    /// How long an old session's keys still open packets after a rekey.
    pub rekey_grace: Duration,
    /// The AEAD; both ends must agree.
    pub aead: AeadAlgorithm,
}

impl DataPlaneConfig {
    fn reactive_repair_count(&self, needed: u64, loss_factor: f64, tail: bool) -> u32 {
        // At the tail nothing later hides another round trip: overshoot.
        let factor = if tail {
            self.reactive_repair_factor.max(1.0) * 1.25
        } else {
            self.reactive_repair_factor
        };
        ((needed as f64 * loss_factor * factor).round() as u32).max(1)
    }
}

impl DataPlaneConfig {
    /// Largest segment a data plane with this configuration accepts: the
    /// datagram size less protection, frame headers and the room kept for
    /// control frames.
    pub fn max_segment_size(&self) -> usize {
        self.max_datagram_size
            .saturating_sub(PROTECTION_OVERHEAD + SYMBOL_FRAME_HEADER + 2 + CONTROL_RESERVE)
            .saturating_sub(Symbol::MAX_OVERHEAD)
    }
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            rate_ceiling_bits_per_second: None,
            initial_rate_bits_per_second: 2_000_000,
            max_datagram_size: 1400,
            send_queue_limit_bytes: 1 << 20,
            send_queue_delay_target: Duration::from_millis(50),
            send_queue_max_delay: Duration::from_millis(250),
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            fec_max_group: 64,
            fec_group_timeout: Duration::from_millis(5),
            fec_group_max_age: Duration::from_millis(50),
            repair_margin: -1.0,
            reactive_repair_factor: 0.8,
            deadline_residual_target: 5e-4,
            deadline_loss_floor: 0.02,
            max_loss: 0.95,
            queue_delay_target: Duration::from_millis(10),
            receipt_interval: Duration::from_millis(5),
            max_unresolved_segments: 16_384,
            rekey_grace: Duration::from_secs(3),
            aead: AeadAlgorithm::Aes256Gcm,
        }
    }
}

/// Why [`DataPlane::send_segment`] refused a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum SendError {
    /// Larger than [`DataPlane::max_segment_size`].
    #[error("segment of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The segment's size.
        size: usize,
        /// The largest accepted.
        max: usize,
    },
    /// The send queue is at its byte limit.
    #[error("send queue full")]
    QueueFull,
    /// The queue manager dropped it: segments wait too long (congestion).
    #[error("dropped by the queue manager")]
    QueueDelay,
    /// No session is usable with the peer (streams are not held).
    #[error("no session with the peer")]
    NoSession,
}

/// A segment handed to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The flow the sender gave.
    pub flow: FlowId,
    /// The class the sender gave.
    pub class: DeliveryClass,
    /// The bytes.
    pub segment: Vec<u8>,
}

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
    /// Source symbols sent again because a group ran out of repair indices.
    pub sources_resent: u64,
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
}

/// What one direction of the session delivered and abandoned, in sequence
/// numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionRecord {
    /// Sequence numbers delivered to the receiving caller.
    pub delivered: RangeSet,
    /// Sequence numbers given up (deadline passed).
    pub abandoned: RangeSet,
}

/// The bilateral record of a session. Once both sides are quiet, one
/// side's `outgoing` equals the other's `incoming`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// What this side sent, as the peer's receipts reported it.
    pub outgoing: DirectionRecord,
    /// What this side received: delivered or abandoned here.
    pub incoming: DirectionRecord,
}

struct QueuedSegment {
    flow: FlowId,
    class: SymbolClass,
    payload: Vec<u8>,
    enqueued_at: Timestamp,
    expires_at: Option<Timestamp>,
}

struct TxMember {
    expires_at: Option<Timestamp>,
}

struct TxGroup {
    first: u64,
    shards: Vec<Vec<u8>>,
    members: Vec<TxMember>,
    shard_len: usize,
    closed: bool,
    opened_at: Timestamp,
    deadline: bool,
    next_repair_index: usize,
    next_resend: usize,
    pending_repairs: u32,
    pending_proactive: bool,
    last_packet: u64,
    last_sent_at: Timestamp,
    unresolved: usize,
    reported_need: Option<u64>,
}

impl TxGroup {
    fn k(&self) -> usize {
        self.shards.len()
    }
}

struct SentPacket {
    sent_at: Timestamp,
    cumulative_sent: u64,
    last_ack_at: Timestamp,
    last_ack_serviced: u64,
    last_ack_packet_sent_at: Timestamp,
    app_limited: bool,
}

#[derive(Default)]
struct RxGroup {
    k: Option<usize>,
    sources: BTreeMap<usize, Vec<u8>>,
    repairs: Vec<(usize, Vec<u8>)>,
    complete: bool,
}

#[derive(Default)]
struct RxFlow {
    next: u64,
    waiting: BTreeMap<u64, (u64, Vec<u8>)>,
}

struct Opener {
    opener: PacketOpener,
    retire_at: Option<Timestamp>,
}

/// One session's data plane. See the module documentation.
pub struct DataPlane {
    config: DataPlaneConfig,
    sealer: PacketSealer,
    openers: Vec<Opener>,
    stats: DataPlaneStats,
    rate: RateController,

    // --- sending side ---
    deadline_queue: VecDeque<QueuedSegment>,
    reliable_queue: VecDeque<QueuedSegment>,
    queued_bytes: usize,
    aqm_dropping_since: Option<Timestamp>,
    aqm_drops: u32,
    aqm_next_drop: Timestamp,
    flow_next: HashMap<FlowId, u64>,
    next_seq: u64,
    groups: BTreeMap<u64, TxGroup>,
    open_group: Option<u64>,
    repair_queue: VecDeque<u64>,
    sent: VecDeque<(u64, SentPacket)>,
    cumulative_sent: u64,
    last_ack_at: Timestamp,
    last_ack_serviced: u64,
    last_ack_packet_sent_at: Timestamp,
    expired_serviced: u64,
    largest_acked: Option<u64>,
    next_send_at: Timestamp,
    last_sent_at: Timestamp,
    peer_loss: Option<f64>,
    out_record: DirectionRecord,
    out_resolved: RangeSet,
    out_known_point: u64,
    confirm_due: bool,
    last_confirm_sent_at: Option<Timestamp>,
    abandon_pending: RangeSet,

    // --- receiving side ---
    in_record: DirectionRecord,
    in_resolved: RangeSet,
    in_cumulative: u64,
    rx_groups: BTreeMap<u64, RxGroup>,
    flows: HashMap<FlowId, RxFlow>,
    deliveries: VecDeque<Delivered>,
    peer_confirmed: u64,
    receipt_news: bool,
    receipt_eliciting: u32,
    first_unreported_at: Option<Timestamp>,
    last_receipt_sent_at: Option<Timestamp>,
    packets_since_receipt: u32,
    largest_received: Option<(u64, Timestamp)>,
    wire_bytes_received: u64,
    loss_window_start: u64,
    loss_window_count: u64,
    loss_estimate: Option<f64>,
    clock_offset_micros: Option<i128>,
    last_heard_at: Timestamp,
    body: Vec<u8>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("next_seq", &self.next_seq)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn micros(t: Timestamp) -> u64 {
    t.as_nanos() / 1000
}

fn secs_f64(bytes: usize, rate: f64) -> Duration {
    Duration::from_secs_f64((bytes as f64 / rate.max(1.0)).min(10.0))
}

/// Smallest number of repair symbols such that a group of `k` sources
/// fails (fewer than `k` of `k + r` arrive) with probability at most
/// `target`, when each symbol is lost independently with probability `p`.
fn repairs_for_residual(k: usize, p: f64, target: f64, max: usize) -> usize {
    let p = p.clamp(0.0, 0.99);
    if p <= 0.0 {
        return 0;
    }
    for r in 0..=max {
        let n = k + r;
        // P(fewer than k arrive) = Σ_{a<k} C(n,a) q^a p^(n−a), q = 1 − p.
        let q = 1.0 - p;
        let mut failure = 0.0;
        let mut coefficient = 1.0f64; // C(n, a)
        for a in 0..k {
            if a > 0 {
                coefficient *= (n - a + 1) as f64 / a as f64;
            }
            failure += coefficient * q.powi(a as i32) * p.powi((n - a) as i32);
        }
        if failure <= target {
            return r;
        }
    }
    max
}

impl DataPlane {
    /// A data plane for a session with `keys`, starting at `now`.
    pub fn new(now: Timestamp, keys: SessionKeys, config: DataPlaneConfig) -> Self {
        let rate = RateController::new(
            now,
            RateConfig {
                ceiling_bits_per_second: config.rate_ceiling_bits_per_second,
                initial_bits_per_second: config.initial_rate_bits_per_second,
                queue_delay_target: config.queue_delay_target,
                max_loss: config.max_loss,
            },
        );
        DataPlane {
            sealer: PacketSealer::new(config.aead, &keys),
            openers: vec![Opener {
                opener: PacketOpener::new(config.aead, &keys),
                retire_at: None,
            }],
            config,
            stats: DataPlaneStats::default(),
            rate,
            deadline_queue: VecDeque::new(),
            reliable_queue: VecDeque::new(),
            queued_bytes: 0,
            aqm_dropping_since: None,
            aqm_drops: 0,
            aqm_next_drop: now,
            flow_next: HashMap::new(),
            next_seq: 0,
            groups: BTreeMap::new(),
            open_group: None,
            repair_queue: VecDeque::new(),
            sent: VecDeque::new(),
            cumulative_sent: 0,
            last_ack_at: now,
            last_ack_serviced: 0,
            last_ack_packet_sent_at: now,
            expired_serviced: 0,
            largest_acked: None,
            next_send_at: now,
            last_sent_at: now,
            peer_loss: None,
            out_record: DirectionRecord::default(),
            out_resolved: RangeSet::new(),
            out_known_point: 0,
            confirm_due: false,
            last_confirm_sent_at: None,
            abandon_pending: RangeSet::new(),
            in_record: DirectionRecord::default(),
            in_resolved: RangeSet::new(),
            in_cumulative: 0,
            rx_groups: BTreeMap::new(),
            flows: HashMap::new(),
            deliveries: VecDeque::new(),
            peer_confirmed: 0,
            receipt_news: false,
            receipt_eliciting: 0,
            first_unreported_at: None,
            last_receipt_sent_at: None,
            packets_since_receipt: 0,
            largest_received: None,
            wire_bytes_received: 0,
            loss_window_start: 0,
            loss_window_count: 0,
            loss_estimate: None,
            clock_offset_micros: None,
            last_heard_at: now,
            body: Vec::new(),
        }
    }

    /// The largest segment [`DataPlane::send_segment`] accepts.
    pub fn max_segment_size(&self) -> usize {
        self.config.max_segment_size()
    }

    /// Counters and estimates.
    pub fn stats(&self) -> &DataPlaneStats {
        &self.stats
    }

    /// The bilateral record: what the peer's receipts say it got of ours,
    /// and what we got of the peer's.
    pub fn delivery_record(&self) -> DeliveryRecord {
        DeliveryRecord {
            outgoing: self.out_record.clone(),
            incoming: self.in_record.clone(),
        }
    }

    /// Whether nothing authentic arrived from the peer for the idle timeout.
    pub fn peer_is_silent(&self, now: Timestamp) -> bool {
        now - self.last_heard_at >= self.config.idle_timeout
    }

    /// Bytes waiting in the send queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether everything sent is resolved at the peer and confirmed, and
    /// nothing waits to be sent.
    pub fn is_idle(&self) -> bool {
        self.deadline_queue.is_empty()
            && self.reliable_queue.is_empty()
            && self.groups.is_empty()
            && self.out_known_point == self.next_seq
    }

    /// Replaces the session keys (after a new handshake). Packets sealed
    /// under the old keys still open for [`DataPlaneConfig::rekey_grace`];
    /// sequence spaces, groups and receipts carry on, so nothing in flight
    /// is lost.
    pub fn rekey(&mut self, now: Timestamp, keys: SessionKeys) {
        let next = self.sealer.next_packet_number();
        self.sealer = PacketSealer::new(self.config.aead, &keys).starting_at(next);
        let retire_at = now + self.config.rekey_grace;
        for opener in &mut self.openers {
            opener.retire_at.get_or_insert(retire_at);
        }
        self.openers.insert(
            0,
            Opener {
                opener: PacketOpener::new(self.config.aead, &keys),
                retire_at: None,
            },
        );
    }

    /// Queues a segment for the peer. `flow` orders `Reliable` segments;
    /// `class` says how to deliver it.
    pub fn send_segment(
        &mut self,
        now: Timestamp,
        flow: FlowId,
        class: DeliveryClass,
        segment: &[u8],
    ) -> Result<(), SendError> {
        let max = self.max_segment_size();
        if segment.len() > max {
            self.stats.drops.too_large += 1;
            return Err(SendError::TooLarge {
                size: segment.len(),
                max,
            });
        }
        let by_delay = (self.rate.pacing_bytes_per_second()
            * self.config.send_queue_max_delay.as_secs_f64()) as usize;
        let limit = self
            .config
            .send_queue_limit_bytes
            .min(by_delay.max(64 * 1024));
        if self.queued_bytes + segment.len() > limit {
            self.stats.drops.queue_full += 1;
            return Err(SendError::QueueFull);
        }
        if self.aqm_should_drop(now) {
            self.stats.drops.queue_delay += 1;
            return Err(SendError::QueueDelay);
        }
        let (symbol_class, expires_at) = match class {
            DeliveryClass::Reliable => {
                let next = self.flow_next.entry(flow).or_insert(0);
                let flow_seq = *next;
                *next += 1;
                (SymbolClass::Reliable { flow_seq }, None)
            }
            DeliveryClass::Deadline(deadline) => (
                SymbolClass::Deadline {
                    deadline_micros: u64::try_from(deadline.as_micros()).unwrap_or(u64::MAX),
                    created_micros: micros(now),
                },
                Some(now + deadline),
            ),
        };
        let queued = QueuedSegment {
            flow,
            class: symbol_class,
            payload: segment.to_vec(),
            enqueued_at: now,
            expires_at,
        };
        self.queued_bytes += segment.len();
        self.stats.segments_queued += 1;
        match class {
            DeliveryClass::Reliable => self.reliable_queue.push_back(queued),
            DeliveryClass::Deadline(_) => self.deadline_queue.push_back(queued),
        }
        Ok(())
    }

    /// Bytes a caller that must never have a segment refused (a split-mode
    /// stream, which cannot resend what the tunnel drops) may queue now:
    /// enough to keep the pacer busy for [`STREAM_QUEUE_TARGET`] at the
    /// current rate, less what is already queued. Bytes beyond it stay
    /// with the caller, whose own flow control then pushes back.
    pub fn stream_room(&self) -> usize {
        let target =
            (self.rate.pacing_bytes_per_second() * STREAM_QUEUE_TARGET.as_secs_f64()) as usize;
        let target = target
            .max(4 * self.config.max_datagram_size)
            .min(self.config.send_queue_limit_bytes);
        target.saturating_sub(self.queued_bytes)
    }

    /// Queues a `Reliable` segment of a byte stream. Unlike
    /// [`DataPlane::send_segment`] the queue manager never refuses it (a
    /// stream is not a TCP that resends what is dropped); the caller keeps
    /// within [`DataPlane::stream_room`]. Refused only when too large or
    /// beyond the send queue's byte limit.
    pub fn send_stream_segment(
        &mut self,
        now: Timestamp,
        flow: FlowId,
        segment: &[u8],
    ) -> Result<(), SendError> {
        let max = self.max_segment_size();
        if segment.len() > max {
            self.stats.drops.too_large += 1;
            return Err(SendError::TooLarge {
                size: segment.len(),
                max,
            });
        }
        if self.queued_bytes + segment.len() > self.config.send_queue_limit_bytes {
            self.stats.drops.queue_full += 1;
            return Err(SendError::QueueFull);
        }
        let next = self.flow_next.entry(flow).or_insert(0);
        let flow_seq = *next;
        *next += 1;
        self.queued_bytes += segment.len();
        self.stats.segments_queued += 1;
        self.reliable_queue.push_back(QueuedSegment {
            flow,
            class: SymbolClass::Reliable { flow_seq },
            payload: segment.to_vec(),
            enqueued_at: now,
            expires_at: None,
        });
        Ok(())
    }

    /// CoDel-like: once the oldest queued segment has waited longer than
    /// the target for a whole interval, refuse segments at a rate growing
    /// with the square root of the drop count.
    fn aqm_should_drop(&mut self, now: Timestamp) -> bool {
        let head_age = self
            .reliable_queue
            .front()
            .map(|s| now - s.enqueued_at)
            .unwrap_or_default();
        if head_age <= self.config.send_queue_delay_target {
            self.aqm_dropping_since = None;
            self.aqm_drops = 0;
            return false;
        }
        self.rate.on_send_backlog(now);
        let interval = Duration::from_millis(100);
        let since = *self.aqm_dropping_since.get_or_insert(now);
        if now - since < interval || now < self.aqm_next_drop {
            return false;
        }
        self.aqm_drops += 1;
        self.aqm_next_drop = now + interval.div_f64(f64::from(self.aqm_drops).sqrt());
        true
    }

    /// The next delivered segment, if any.
    pub fn poll_delivery(&mut self) -> Option<Delivered> {
        self.deliveries.pop_front()
    }

    // ------------------------------------------------------------------
    // Receiving
    // ------------------------------------------------------------------

    /// A UDP payload arrived from the peer. Anything that is not an
    /// authentic, fresh data packet of this session is counted and dropped.
    pub fn handle_datagram(&mut self, now: Timestamp, datagram: &[u8]) {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        let header = match PacketHeader::parse(datagram) {
            Ok(header) => header,
            Err(error) => return self.count_open_error(error),
        };
        let Some(opener) = self
            .openers
            .iter_mut()
            .find(|o| o.opener.session_id() == header.session_id)
        else {
            return self.count_open_error(OpenError::UnknownSession);
        };
        let packet_number = match opener.opener.open(datagram) {
            Ok((packet_number, body)) => {
                self.body.clear();
                self.body.extend_from_slice(body);
                packet_number
            }
            Err(error) => return self.count_open_error(error),
        };
        let body = std::mem::take(&mut self.body);
        match frame::parse_frames(&body) {
            Ok(frames) => {
                self.on_authentic_packet(now, packet_number, datagram.len());
                let mut eliciting = false;
                for frame in frames {
                    eliciting |= matches!(
                        frame,
                        Frame::Data { .. } | Frame::Repair { .. } | Frame::Abandon { .. }
                    );
                    self.on_frame(now, frame);
                }
                if eliciting {
                    self.receipt_eliciting += 1;
                    self.first_unreported_at.get_or_insert(now);
                }
            }
            Err(_) => self.stats.drops.malformed += 1,
        }
        self.body = body;
    }

    fn count_open_error(&mut self, error: OpenError) {
        let drops = &mut self.stats.drops;
        match error {
            OpenError::Truncated => drops.truncated += 1,
            OpenError::NotData => drops.not_data += 1,
            OpenError::UnknownSession => drops.unknown_session += 1,
            OpenError::Forged => drops.forged += 1,
            OpenError::Replayed => drops.replayed += 1,
            OpenError::Stale => drops.stale += 1,
        }
    }

    fn on_authentic_packet(&mut self, now: Timestamp, packet_number: u64, size: usize) {
        self.last_heard_at = now;
        self.wire_bytes_received += size as u64;
        self.packets_since_receipt += 1;
        match self.largest_received {
            Some((largest, _)) if largest >= packet_number => {}
            None => {
                self.largest_received = Some((packet_number, now));
                self.loss_window_start = packet_number;
            }
            Some(_) => self.largest_received = Some((packet_number, now)),
        }
        // Loss meter: windows of LOSS_WINDOW_PACKETS packet numbers.
        if packet_number >= self.loss_window_start {
            self.loss_window_count += 1;
        }
        let largest = self.largest_received.map_or(0, |(l, _)| l);
        while largest >= self.loss_window_start + LOSS_WINDOW_PACKETS {
            let window_loss = 1.0
                - (self.loss_window_count.min(LOSS_WINDOW_PACKETS) as f64
                    / LOSS_WINDOW_PACKETS as f64);
            self.loss_estimate = Some(match self.loss_estimate {
                None => window_loss,
                Some(old) => old * 0.875 + window_loss * 0.125,
            });
            self.loss_window_start += LOSS_WINDOW_PACKETS;
            // The packet that closed the window counts in the window it
            // falls in.
            self.loss_window_count = u64::from(
                largest >= self.loss_window_start
                    && largest < self.loss_window_start + LOSS_WINDOW_PACKETS,
            );
        }
        self.stats.loss_inbound = self.loss_estimate.unwrap_or(0.0);
    }

    fn on_frame(&mut self, now: Timestamp, frame: Frame<'_>) {
        match frame {
            Frame::Data {
                seq,
                group_index,
                symbol,
            } => self.on_data(now, seq, usize::from(group_index), symbol, true),
            Frame::Repair {
                group_first,
                k,
                index,
                shard,
            } => self.on_repair(now, group_first, usize::from(k), usize::from(index), shard),
            Frame::Receipt(receipt) => self.on_receipt(now, &receipt),
            Frame::Confirm { point } => {
                self.peer_confirmed = self
                    .peer_confirmed
                    .max(point.min(self.in_resolved.end().max(self.in_cumulative)));
            }
            Frame::Abandon { ranges } => self.on_abandon(&ranges),
            Frame::Ping => {}
        }
    }

    fn rx_group_prunable(&self, first: u64, group: &RxGroup) -> bool {
        group.complete || first.saturating_add(group.k.unwrap_or(256) as u64) <= self.in_cumulative
    }

    fn on_data(&mut self, now: Timestamp, seq: u64, index: usize, symbol: &[u8], direct: bool) {
        let first = seq - index as u64;
        if first.saturating_add(256) <= self.in_cumulative {
            self.stats.redundant_sources += 1;
            return;
        }
        let known = self.in_resolved.contains(seq) || seq < self.in_cumulative;
        if known {
            self.stats.redundant_sources += 1;
        } else {
            match Symbol::parse(symbol) {
                Ok(parsed) => self.resolve(now, seq, parsed, direct),
                Err(_) => {
                    self.stats.drops.malformed += 1;
                    return;
                }
            }
        }
        let group = self.rx_groups.entry(first).or_default();
        if !group.complete && group.k.is_none_or(|k| index < k) {
            group
                .sources
                .entry(index)
                .or_insert_with(|| fec::source_shard(symbol));
        }
        self.try_decode(now, first);
    }

    fn on_repair(&mut self, now: Timestamp, first: u64, k: usize, index: usize, shard: &[u8]) {
        if first.saturating_add(k as u64) <= self.in_cumulative {
            self.stats.redundant_repairs += 1;
            return;
        }
        let group = self.rx_groups.entry(first).or_default();
        if group.k.is_some_and(|known| known != k) || group.sources.keys().any(|&i| i >= k) {
            self.stats.drops.malformed += 1;
            return;
        }
        group.k = Some(k);
        if group.complete
            || group.sources.len() + group.repairs.len() >= k
            || group.repairs.iter().any(|(j, _)| *j == index)
        {
            self.stats.redundant_repairs += 1;
            return;
        }
        group.repairs.push((index, shard.to_vec()));
        self.try_decode(now, first);
    }

    fn try_decode(&mut self, now: Timestamp, first: u64) {
        let Some(group) = self.rx_groups.get_mut(&first) else {
            return;
        };
        let Some(k) = group.k else { return };
        if group.sources.len() >= k {
            group.complete = true;
            group.repairs.clear();
            group.sources.clear();
            return;
        }
        if group.sources.len() + group.repairs.len() < k {
            return;
        }
        let shard_len = group.repairs.first().map_or(0, |(_, s)| s.len());
        let sources: Vec<Option<&[u8]>> = (0..k)
            .map(|i| group.sources.get(&i).map(Vec::as_slice))
            .collect();
        let repairs: Vec<(usize, &[u8])> = group
            .repairs
            .iter()
            .map(|(j, s)| (*j, s.as_slice()))
            .collect();
        let decoded = fec::decode(k, &sources, &repairs, shard_len);
        group.complete = true;
        group.repairs.clear();
        group.sources.clear();
        match decoded {
            Ok(recovered) => {
                for (i, shard) in recovered {
                    let seq = first + i as u64;
                    if self.in_resolved.contains(seq) || seq < self.in_cumulative {
                        continue;
                    }
                    let parsed = fec::symbol_of_shard(&shard)
                        .ok()
                        .and_then(|s| Symbol::parse(s).ok());
                    match parsed {
                        Some(symbol) => {
                            self.stats.fec_recovered += 1;
                            self.resolve(now, seq, symbol, false);
                        }
                        None => self.stats.drops.malformed += 1,
                    }
                }
            }
            Err(_) => {
                self.stats.drops.malformed += 1;
                if let Some(group) = self.rx_groups.get_mut(&first) {
                    group.complete = false;
                }
            }
        }
    }

    fn deadline_expiry_here(&self, deadline_micros: u64, created_micros: u64) -> Option<u64> {
        let offset = self.clock_offset_micros?;
        let one_way = if self.rate.has_rtt() {
            i128::try_from(self.rate.min_rtt().as_micros() / 2).unwrap_or(0)
        } else {
            0
        };
        let expiry = i128::from(created_micros) + i128::from(deadline_micros) + offset - one_way;
        Some(u64::try_from(expiry.max(0)).unwrap_or(u64::MAX))
    }

    fn resolve(&mut self, now: Timestamp, seq: u64, symbol: Symbol<'_>, direct: bool) {
        self.in_resolved.insert(seq);
        self.receipt_news = true;
        match symbol.class {
            SymbolClass::Reliable { flow_seq } => {
                self.in_record.delivered.insert(seq);
                let flow = self.flows.entry(symbol.flow).or_default();
                if flow_seq >= flow.next {
                    flow.waiting
                        .entry(flow_seq)
                        .or_insert_with(|| (seq, symbol.payload.to_vec()));
                }
                while let Some(entry) = flow.waiting.first_entry() {
                    if *entry.key() != flow.next {
                        break;
                    }
                    let (_, payload) = entry.remove();
                    flow.next += 1;
                    self.stats.segments_delivered += 1;
                    self.stats.bytes_delivered += payload.len() as u64;
                    self.deliveries.push_back(Delivered {
                        flow: symbol.flow,
                        class: DeliveryClass::Reliable,
                        segment: payload,
                    });
                }
            }
            SymbolClass::Deadline {
                deadline_micros,
                created_micros,
            } => {
                if direct {
                    let sample = i128::from(micros(now)) - i128::from(created_micros);
                    self.clock_offset_micros =
                        Some(self.clock_offset_micros.map_or(sample, |o| o.min(sample)));
                }
                let on_time = self
                    .deadline_expiry_here(deadline_micros, created_micros)
                    .is_none_or(|expiry| micros(now) <= expiry);
                if on_time {
                    self.in_record.delivered.insert(seq);
                    self.stats.segments_delivered += 1;
                    self.stats.bytes_delivered += symbol.payload.len() as u64;
                    self.deliveries.push_back(Delivered {
                        flow: symbol.flow,
                        class: DeliveryClass::Deadline(Duration::from_micros(deadline_micros)),
                        segment: symbol.payload.to_vec(),
                    });
                } else {
                    self.stats.drops.arrived_late += 1;
                    self.in_record.abandoned.insert(seq);
                }
            }
        }
        self.advance_in_cumulative();
    }

    fn advance_in_cumulative(&mut self) {
        let advanced = self.in_resolved.contiguous_end_from(self.in_cumulative);
        if advanced != self.in_cumulative {
            self.in_cumulative = advanced;
            self.in_resolved.remove_below(advanced.saturating_sub(1));
            let cumulative = self.in_cumulative;
            let prunable: Vec<u64> = self
                .rx_groups
                .iter()
                .filter(|(&first, g)| first.saturating_add(g.k.unwrap_or(256) as u64) <= cumulative)
                .map(|(&first, _)| first)
                .collect();
            for first in prunable {
                self.rx_groups.remove(&first);
            }
        }
    }

    fn on_abandon(&mut self, ranges: &[Range<u64>]) {
        // Only numbers the sender could have used (bounded work).
        let limit = self.in_resolved.end().max(self.in_cumulative) + 65_536;
        for range in ranges {
            let range = range.start.max(self.in_cumulative)..range.end.min(limit);
            if range.start >= range.end {
                continue;
            }
            let mut at = range.start;
            let covered: Vec<Range<u64>> = self
                .in_resolved
                .iter_from(range.start)
                .take_while(|r| r.start < range.end)
                .collect();
            let mut gaps = Vec::new();
            for r in covered {
                if r.start > at {
                    gaps.push(at..r.start.min(range.end));
                }
                at = at.max(r.end);
            }
            if at < range.end {
                gaps.push(at..range.end);
            }
            for gap in gaps {
                self.in_record.abandoned.insert_range(gap.clone());
                self.in_resolved.insert_range(gap);
                self.receipt_news = true;
            }
        }
        self.advance_in_cumulative();
        let cumulative = self.in_cumulative;
        let resolved = &self.in_resolved;
        self.rx_groups.retain(|&first, g| {
            let k = g.k.unwrap_or(256) as u64;
            !(first + k <= cumulative
                || (g.k.is_some()
                    && (first..first + k).all(|s| s < cumulative || resolved.contains(s))))
        });
    }

    fn build_receipt(&self, now: Timestamp) -> Receipt {
        let cumulative = self.in_cumulative;
        let ranges: Vec<Range<u64>> = self
            .in_resolved
            .iter_from(cumulative)
            .filter(|r| r.start > cumulative)
            .take(RECEIPT_MAX_RANGES)
            .collect();
        let info_end = ranges.last().map_or(cumulative, |r| r.end);
        let confirmed_base = self.peer_confirmed;
        let mut abandoned: Vec<Range<u64>> = self
            .in_record
            .abandoned
            .iter_from(confirmed_base)
            .take(RECEIPT_MAX_ABANDONED + 1)
            .collect();
        let abandoned_complete_below = if abandoned.len() > RECEIPT_MAX_ABANDONED {
            abandoned.pop().map_or(info_end, |r| r.start)
        } else {
            info_end
        };
        let needs: Vec<(u64, u64)> = self
            .rx_groups
            .iter()
            .filter(|(&first, g)| !self.rx_group_prunable(first, g) && g.k.is_some())
            .filter_map(|(&first, g)| {
                let k = g.k?;
                let have = g.sources.len() + g.repairs.len();
                (have < k).then_some((first, (k - have) as u64))
            })
            .take(RECEIPT_MAX_NEEDS)
            .collect();
        let mut covered_below = u64::MAX;
        if ranges.len() >= RECEIPT_MAX_RANGES {
            covered_below = info_end;
        }
        if needs.len() >= RECEIPT_MAX_NEEDS {
            if let Some(&(first, _)) = needs.last() {
                let k = self.rx_groups.get(&first).and_then(|g| g.k).unwrap_or(0);
                covered_below = covered_below.min(first + k as u64);
            }
        }
        let covered_below = covered_below.min(self.in_resolved.end().max(cumulative) + 65_536);
        let (largest_packet, ack_delay_micros) = self
            .largest_received
            .map_or((0, 0), |(pn, at)| (pn, (now - at).as_micros() as u64));
        Receipt {
            cumulative,
            ranges,
            confirmed_base,
            abandoned_complete_below,
            abandoned,
            needs,
            covered_below,
            largest_packet,
            ack_delay_micros,
            bytes_received: self.wire_bytes_received,
            loss_per_65536: (self.loss_estimate.unwrap_or(0.0) * 65536.0).min(65535.0) as u64,
        }
    }

    /// Whether our receipts still hold something the peer has not
    /// confirmed, or we are still waiting for something (holes, groups
    /// short of symbols): then receipts are flooded on a timer.
    fn receipt_unconfirmed(&self) -> bool {
        self.peer_confirmed < self.in_resolved.end().max(self.in_cumulative)
            || self.in_resolved.end() > self.in_cumulative
            || self
                .rx_groups
                .iter()
                .any(|(&first, g)| self.rx_group_waiting(first, g))
    }

    /// Whether a receive group may still need something from the sender.
    /// A group whose size is unknown (no repair symbol arrived, as at zero
    /// loss) and whose known members all lie below the cumulative point is
    /// waiting for nothing: counting it as open would flood receipts on an
    /// idle session forever.
    fn rx_group_waiting(&self, first: u64, group: &RxGroup) -> bool {
        if self.rx_group_prunable(first, group) {
            return false;
        }
        match group.k {
            Some(_) => true,
            None => {
                let highest = group
                    .sources
                    .keys()
                    .next_back()
                    .map_or(first, |&index| first + index as u64);
                highest >= self.in_cumulative || !group.repairs.is_empty()
            }
        }
    }

    // ------------------------------------------------------------------
    // Receipts from the peer (sending side)
    // ------------------------------------------------------------------

    fn on_receipt(&mut self, now: Timestamp, receipt: &Receipt) {
        if receipt.cumulative > self.next_seq
            || receipt.ranges.last().is_some_and(|r| r.end > self.next_seq)
        {
            self.stats.drops.malformed += 1;
            return;
        }
        self.on_packet_ack(now, receipt);
        let loss = receipt.loss_per_65536 as f64 / 65536.0;
        self.peer_loss = Some(loss);
        self.stats.loss_outbound = loss;
        self.rate.set_peer_loss(loss);
        self.rate
            .on_peer_bytes_received(now, receipt.bytes_received);

        // Resolution: every number the receipt covers is settled at the peer.
        let mut resolved: Vec<Range<u64>> = Vec::with_capacity(receipt.ranges.len() + 1);
        if receipt.cumulative > 0 {
            resolved.push(0..receipt.cumulative);
        }
        resolved.extend(receipt.ranges.iter().cloned());
        // Statuses are final where the abandoned list is complete.
        let low = self.out_known_point;
        let high = receipt.abandoned_complete_below;
        for range in &resolved {
            self.out_resolved.insert_range(range.clone());
            let clipped = range.start.max(low)..range.end.min(high);
            if clipped.start >= clipped.end {
                continue;
            }
            let mut at = clipped.start;
            for abandoned in &receipt.abandoned {
                let a = abandoned.start.max(clipped.start)..abandoned.end.min(clipped.end);
                if a.start >= a.end {
                    continue;
                }
                if a.start > at {
                    self.out_record.delivered.insert_range(at..a.start);
                }
                self.out_record.abandoned.insert_range(a.clone());
                at = a.end;
            }
            if at < clipped.end {
                self.out_record.delivered.insert_range(at..clipped.end);
            }
        }
        let known = receipt.cumulative.min(high).max(self.out_known_point);
        if known > self.out_known_point || receipt.confirmed_base < self.out_known_point {
            self.confirm_due = true;
        }
        self.out_known_point = known;
        let out_resolved_cut = self
            .groups
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seq)
            .min(known);
        self.out_resolved.remove_below(out_resolved_cut);
        // Abandonments the peer has settled need no more announcing.
        let pending = std::mem::take(&mut self.abandon_pending);
        for r in pending.iter() {
            let settled = (r.start..r.end).all(|s| s < known || self.out_resolved.contains(s));
            if !settled {
                self.abandon_pending.insert_range(r);
            }
        }

        // Free resolved groups; request repairs for groups still short.
        let needs: HashMap<u64, u64> = receipt.needs.iter().copied().collect();
        let tail = self.reliable_queue.is_empty();
        let loss_factor = 1.0 / (1.0 - self.outbound_loss().unwrap_or(0.0));
        let mut finished = Vec::new();
        for (&first, group) in &mut self.groups {
            let k = group.k();
            let end = first + k as u64;
            let resolved_count = if end <= known {
                k
            } else {
                (first..end)
                    .filter(|&s| s < known || self.out_resolved.contains(s))
                    .count()
            };
            group.unresolved = k - resolved_count;
            if group.closed && group.unresolved == 0 {
                finished.push(first);
                continue;
            }
            if !group.closed
                || group.pending_repairs > 0
                || receipt.largest_packet < group.last_packet
                || end > receipt.covered_below
            {
                continue;
            }
            let live = (0..k).any(|i| {
                !((first + i as u64) < known || self.out_resolved.contains(first + i as u64))
                    && group.members[i].expires_at.is_none_or(|e| e > now)
            });
            if !live {
                continue;
            }
            let needed = needs
                .get(&first)
                .copied()
                .unwrap_or(group.unresolved as u64)
                .min(k as u64);
            group.reported_need = Some(needed);
            if needed == 0 {
                continue;
            }
            group.pending_repairs = self.config.reactive_repair_count(needed, loss_factor, tail);
            group.pending_proactive = false;
            self.repair_queue.push_back(first);
        }
        for first in finished {
            self.groups.remove(&first);
        }
        self.update_rate_stats();
    }

    fn on_packet_ack(&mut self, now: Timestamp, receipt: &Receipt) {
        let largest = receipt.largest_packet;
        if largest >= self.sealer.next_packet_number()
            || self.largest_acked.is_some_and(|l| l >= largest)
        {
            return;
        }
        // Drop records up to the acknowledged packet, keeping its own.
        while self.sent.len() > 1 && self.sent.front().is_some_and(|(pn, _)| *pn < largest) {
            self.sent.pop_front();
        }
        let Some((pn, packet)) = self.sent.pop_front() else {
            return;
        };
        if pn != largest {
            self.sent.push_front((pn, packet));
            return;
        }
        self.largest_acked = Some(largest);
        let raw_rtt = now - packet.sent_at;
        let ack_delay = Duration::from_micros(receipt.ack_delay_micros);
        let rtt = if raw_rtt > ack_delay {
            raw_rtt - ack_delay
        } else {
            raw_rtt
        };
        let serviced = packet.cumulative_sent;
        let interval =
            (now - packet.last_ack_at).max(packet.sent_at - packet.last_ack_packet_sent_at);
        let rate = (interval > Duration::from_micros(100) && serviced > packet.last_ack_serviced)
            .then(|| (serviced - packet.last_ack_serviced) as f64 / interval.as_secs_f64());
        self.last_ack_at = now;
        self.last_ack_serviced = serviced;
        self.last_ack_packet_sent_at = packet.sent_at;
        let sample = RateSample {
            rtt,
            serviced_bytes_per_second: rate,
            app_limited: packet.app_limited,
            acked_packet: largest,
            next_packet: self.sealer.next_packet_number(),
            bytes_in_flight: self.cumulative_sent - serviced,
        };
        self.rate.on_sample(now, sample);
    }

    fn update_rate_stats(&mut self) {
        self.stats.pacing_rate_bits_per_second = (self.rate.pacing_bytes_per_second() * 8.0) as u64;
        self.stats.bottleneck_bits_per_second =
            (self.rate.bottleneck_bytes_per_second() * 8.0) as u64;
        self.stats.min_rtt = self.rate.min_rtt();
        self.stats.smoothed_rtt = self.rate.smoothed_rtt();
        let p = self
            .peer_loss
            .unwrap_or(0.0)
            .min(self.config.max_loss.clamp(0.0, 0.99));
        self.stats.redundancy = p / (1.0 - p);
    }

    // ------------------------------------------------------------------
    // Sending
    // ------------------------------------------------------------------

    /// Bytes sent and not yet known to have arrived or been lost: a
    /// packet counts as gone once a later one is acknowledged, or once it
    /// is older than [`DataPlane::loss_timeout`] (so a lost tail of
    /// packets cannot close the window for good).
    fn bytes_in_flight(&self) -> u64 {
        self.cumulative_sent - self.last_ack_serviced.max(self.expired_serviced)
    }

    /// How long after sending a packet without news of it it counts as
    /// lost for the window.
    fn loss_timeout(&self) -> Duration {
        self.rate.smoothed_rtt() * 5 / 4
            + self.config.receipt_interval * 4
            + Duration::from_millis(10)
    }

    fn expire_in_flight(&mut self, now: Timestamp) {
        let timeout = self.loss_timeout();
        while self
            .sent
            .front()
            .is_some_and(|(_, p)| p.sent_at + timeout <= now)
        {
            if let Some((_, packet)) = self.sent.pop_front() {
                self.expired_serviced = self.expired_serviced.max(packet.cumulative_sent);
            }
        }
    }

    fn lowest_unresolved(&self) -> u64 {
        self.groups.keys().next().copied().unwrap_or(self.next_seq)
    }

    fn window_open(&self) -> bool {
        self.bytes_in_flight() < self.rate.congestion_window(self.config.max_datagram_size)
    }

    fn has_new_data(&self) -> bool {
        !self.deadline_queue.is_empty()
            || (!self.reliable_queue.is_empty()
                && self.next_seq - self.lowest_unresolved() < self.config.max_unresolved_segments)
    }

    fn wants_to_send_paced(&self) -> bool {
        !self.repair_queue.is_empty() || self.has_new_data()
    }

    /// Loss of our packets: as the peer reports it, or until it has, the
    /// loss we see on the peer's packets (paths are often symmetric).
    fn outbound_loss(&self) -> Option<f64> {
        self.peer_loss
            .or(self.loss_estimate)
            .map(|p| p.min(self.config.max_loss.clamp(0.0, 0.99)))
    }

    fn group_size_for(&self, deadline: bool) -> usize {
        let Some(p) = self.outbound_loss() else {
            return if deadline { 1 } else { 8 };
        };
        // Leave room below the 256-symbol limit of GF(2^8) for the
        // expected repair plus a few rounds of fresh repair.
        let by_loss = (0.7 * 255.0 * (1.0 - p)).floor() as usize;
        let max = if deadline {
            8
        } else {
            self.config.fec_max_group
        };
        by_loss.clamp(1, max.clamp(1, 128))
    }

    fn proactive_repairs(&self, group: &TxGroup) -> u32 {
        let k = group.k();
        let measured = self.outbound_loss().unwrap_or(0.0);
        if group.deadline {
            let p = match self.outbound_loss() {
                None => self.config.deadline_loss_floor.max(0.3),
                // An upper estimate: the measurement is noisy and a
                // deadline group cannot wait for a second chance.
                Some(p) => (p * 1.3 + 0.01).max(self.config.deadline_loss_floor),
            }
            .min(self.config.max_loss.clamp(0.0, 0.99));
            repairs_for_residual(k, p, self.config.deadline_residual_target, 255 - k) as u32
        } else {
            // Sent symbols needed on average for k to arrive, and the
            // spread of the loss count, both in sent symbols.
            let expected = k as f64 * measured / (1.0 - measured);
            let spread = (k as f64 * measured).sqrt() / (1.0 - measured);
            // With nothing queued behind this group, no later data hides a
            // repair round trip: aim above the expected loss instead.
            let margin = if self.reliable_queue.is_empty() {
                self.config.repair_margin.abs().max(1.0)
            } else {
                self.config.repair_margin
            };
            let repairs = (expected + margin * spread).round().max(0.0);
            (repairs as usize).min(255 - k) as u32
        }
    }

    /// When the open group closes by time: soon when nothing more is
    /// waiting, later while data keeps coming (it then fills by count).
    fn group_close_time(&self, group: &TxGroup) -> Timestamp {
        if self.reliable_queue.is_empty() || group.deadline {
            group.opened_at + self.config.fec_group_timeout
        } else {
            group.opened_at + self.config.fec_group_max_age
        }
    }

    fn close_group(&mut self, first: u64) {
        if self.open_group == Some(first) {
            self.open_group = None;
        }
        let repairs = match self.groups.get(&first) {
            Some(group) if !group.closed => self.proactive_repairs(group),
            _ => return,
        };
        if let Some(group) = self.groups.get_mut(&first) {
            group.closed = true;
            group.pending_repairs = repairs;
            group.pending_proactive = true;
            if repairs > 0 {
                self.repair_queue.push_back(first);
            }
        }
    }

    fn drop_expired_queued(&mut self, now: Timestamp) {
        while let Some(front) = self.deadline_queue.front() {
            if front.expires_at.is_some_and(|e| e <= now) {
                self.queued_bytes -= front.payload.len();
                self.deadline_queue.pop_front();
                self.stats.drops.expired_in_queue += 1;
            } else {
                break;
            }
        }
    }

    /// Writes the next frame carrying a symbol (repair first, then new
    /// data) into `self.body`. Returns whether one was written.
    fn next_symbol_frame(&mut self, now: Timestamp, packet_number: u64) -> bool {
        while let Some(&first) = self.repair_queue.front() {
            let Some(group) = self.groups.get_mut(&first) else {
                self.repair_queue.pop_front();
                continue;
            };
            if group.pending_repairs == 0 || group.unresolved == 0 {
                group.pending_repairs = 0;
                self.repair_queue.pop_front();
                continue;
            }
            let k = group.k();
            group.pending_repairs -= 1;
            if group.pending_repairs == 0 {
                self.repair_queue.pop_front();
            }
            group.last_packet = packet_number;
            group.last_sent_at = now;
            if k + group.next_repair_index < fec::MAX_SYMBOLS {
                let index = group.next_repair_index;
                group.next_repair_index += 1;
                let refs: Vec<&[u8]> = group.shards.iter().map(Vec::as_slice).collect();
                let shard = fec::encode_repair(&refs, index, group.shard_len);
                Frame::Repair {
                    group_first: first,
                    k: k as u8,
                    index: index as u8,
                    shard: &shard,
                }
                .encode(&mut self.body);
                if group.pending_proactive {
                    self.stats.proactive_repairs_sent += 1;
                } else {
                    self.stats.reactive_repairs_sent += 1;
                }
            } else {
                // Out of fresh repair symbols: send again a source the
                // peer has not confirmed (round robin over those).
                let known = self.out_known_point;
                let resolved = &self.out_resolved;
                let missing = |i: usize| {
                    let seq = first + i as u64;
                    !(seq < known || resolved.contains(seq))
                };
                let i = (0..k)
                    .map(|step| (group.next_resend + step) % k)
                    .find(|&i| missing(i))
                    .unwrap_or(group.next_resend % k);
                group.next_resend = i + 1;
                let symbol = fec::symbol_of_shard(&group.shards[i]).unwrap_or(&[]);
                Frame::Data {
                    seq: first + i as u64,
                    group_index: i as u8,
                    symbol,
                }
                .encode(&mut self.body);
                self.stats.sources_resent += 1;
            }
            return true;
        }
        self.drop_expired_queued(now);
        let from_deadline = !self.deadline_queue.is_empty();
        let segment = if from_deadline {
            self.deadline_queue.pop_front()
        } else if self.has_new_data() {
            self.reliable_queue.pop_front()
        } else {
            None
        };
        let Some(segment) = segment else {
            return false;
        };
        self.queued_bytes -= segment.payload.len();
        let deadline = matches!(segment.class, SymbolClass::Deadline { .. });
        // Groups hold one class: close an open group of the other class.
        if let Some(open) = self.open_group {
            if self
                .groups
                .get(&open)
                .is_some_and(|g| g.deadline != deadline)
            {
                self.close_group(open);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let first = match self.open_group {
            Some(first) => first,
            None => {
                self.groups.insert(
                    seq,
                    TxGroup {
                        first: seq,
                        shards: Vec::new(),
                        members: Vec::new(),
                        shard_len: 0,
                        closed: false,
                        opened_at: now,
                        deadline,
                        next_repair_index: 0,
                        next_resend: 0,
                        pending_repairs: 0,
                        pending_proactive: true,
                        last_packet: packet_number,
                        last_sent_at: now,
                        unresolved: 0,
                        reported_need: None,
                    },
                );
                self.open_group = Some(seq);
                seq
            }
        };
        let mut symbol = Vec::with_capacity(segment.payload.len() + Symbol::MAX_OVERHEAD);
        Symbol {
            flow: segment.flow,
            class: segment.class,
            payload: &segment.payload,
        }
        .encode(&mut symbol);
        let target_k = self.group_size_for(deadline);
        let more_deadline = !self.deadline_queue.is_empty();
        let Some(group) = self.groups.get_mut(&first) else {
            return false;
        };
        let index = group.shards.len();
        Frame::Data {
            seq,
            group_index: index as u8,
            symbol: &symbol,
        }
        .encode(&mut self.body);
        let shard = fec::source_shard(&symbol);
        group.shard_len = group.shard_len.max(shard.len());
        group.shards.push(shard);
        group.members.push(TxMember {
            expires_at: segment.expires_at,
        });
        group.unresolved += 1;
        group.last_packet = packet_number;
        group.last_sent_at = now;
        let full = group.shards.len() >= target_k || (deadline && !more_deadline);
        debug_assert_eq!(group.first, first);
        self.stats.segments_sent += 1;
        if full {
            self.close_group(first);
        }
        true
    }

    fn receipt_due(&self, now: Timestamp) -> bool {
        if self.largest_received.is_none() {
            return false;
        }
        if self.receipt_eliciting >= 2
            || self
                .first_unreported_at
                .is_some_and(|at| now - at >= self.config.receipt_interval)
        {
            return true;
        }
        self.receipt_unconfirmed()
            && !self.peer_is_silent(now)
            && self
                .last_receipt_sent_at
                .is_none_or(|at| now - at >= self.flood_interval())
    }

    /// How often receipts are flooded while the peer has not confirmed
    /// them: often enough that about four arrive per round trip despite
    /// the loss the peer measures on our packets.
    fn flood_interval(&self) -> Duration {
        let arrive = 1.0
            - self
                .stats
                .loss_outbound
                .min(self.config.max_loss.clamp(0.0, 0.99));
        (self.rate.smoothed_rtt() / 4)
            .mul_f64(arrive)
            .max(Duration::from_millis(1))
    }

    /// A confirmation alone in a packet goes at most once per half round
    /// trip: the peer floods receipts until it hears one, and answering
    /// each of them would double the chatter.
    fn standalone_confirm_allowed(&self, now: Timestamp) -> bool {
        self.last_confirm_sent_at
            .is_none_or(|at| now - at >= self.rate.smoothed_rtt() / 2)
    }

    fn abandon_due(&self) -> bool {
        !self.abandon_pending.is_empty()
    }

    fn keepalive_due(&self, now: Timestamp) -> bool {
        now - self.last_sent_at >= self.config.keepalive_interval
    }

    /// Appends control frames (receipt, confirmation, abandonments) that
    /// fit in `room` bytes.
    fn append_control(&mut self, now: Timestamp, room: usize, force_receipt: bool) {
        let start = self.body.len();
        let want_receipt = force_receipt
            || self.receipt_eliciting > 0
            || self.receipt_news
            || self.packets_since_receipt > 0
            || self.receipt_unconfirmed();
        if want_receipt && self.largest_received.is_some() {
            let mut receipt = self.build_receipt(now);
            let mut encoded = Vec::new();
            loop {
                encoded.clear();
                Frame::Receipt(receipt.clone()).encode(&mut encoded);
                if encoded.len() <= room
                    || (receipt.ranges.is_empty()
                        && receipt.needs.is_empty()
                        && receipt.abandoned.is_empty())
                {
                    break;
                }
                // Trim lists to fit; trimmed abandoned ranges make the
                // status bound conservative.
                if !receipt.needs.is_empty() {
                    receipt.needs.truncate(receipt.needs.len() / 2);
                    let cut = receipt
                        .needs
                        .last()
                        .map_or(receipt.cumulative, |&(f, _)| f + 1);
                    receipt.covered_below = receipt.covered_below.min(cut);
                } else if !receipt.abandoned.is_empty() {
                    let dropped = receipt.abandoned.pop().map_or(0, |r| r.start);
                    receipt.abandoned_complete_below =
                        receipt.abandoned_complete_below.min(dropped);
                } else {
                    receipt.ranges.truncate(receipt.ranges.len() / 2);
                    let end = receipt.ranges.last().map_or(receipt.cumulative, |r| r.end);
                    receipt.covered_below = receipt.covered_below.min(end);
                    receipt.abandoned_complete_below = receipt
                        .abandoned_complete_below
                        .min(end.max(receipt.cumulative));
                }
            }
            if encoded.len() <= room {
                self.body.extend_from_slice(&encoded);
                self.receipt_news = false;
                self.receipt_eliciting = 0;
                self.first_unreported_at = None;
                self.packets_since_receipt = 0;
                self.last_receipt_sent_at = Some(now);
            }
        }
        let used = self.body.len() - start;
        if (self.confirm_due || self.out_known_point > 0) && room.saturating_sub(used) >= 11 {
            Frame::Confirm {
                point: self.out_known_point,
            }
            .encode(&mut self.body);
            self.confirm_due = false;
            self.last_confirm_sent_at = Some(now);
        }
        let used = self.body.len() - start;
        if self.abandon_due() && room.saturating_sub(used) > 24 {
            let budget = (room - used - 4) / 20;
            let ranges: Vec<Range<u64>> = self.abandon_pending.iter().take(budget.max(1)).collect();
            let mut encoded = Vec::new();
            Frame::Abandon { ranges }.encode(&mut encoded);
            if encoded.len() <= room - used {
                self.body.extend_from_slice(&encoded);
            }
        }
    }

    /// The next datagram for the peer, written into `buffer` (replacing
    /// its contents), if one is due at `now`. Data and repair are paced
    /// and windowed; receipts, confirmations and keepalives go when due.
    pub fn poll_transmit(&mut self, now: Timestamp, buffer: &mut Vec<u8>) -> bool {
        self.body.clear();
        let packet_number = self.sealer.next_packet_number();
        self.expire_in_flight(now);
        let paced_ok = now >= self.next_send_at && self.window_open();
        let mut paced = false;
        if paced_ok && self.next_symbol_frame(now, packet_number) {
            paced = true;
        }
        let max_body = self
            .config
            .max_datagram_size
            .saturating_sub(PROTECTION_OVERHEAD);
        if paced {
            let room = max_body.saturating_sub(self.body.len());
            self.append_control(now, room, false);
        } else {
            let control_due = self.receipt_due(now)
                || (self.confirm_due
                    && self.largest_received.is_some()
                    && self.standalone_confirm_allowed(now)
                    && !self.wants_to_send_paced())
                || (self.abandon_due()
                    && self
                        .last_receipt_sent_at
                        .is_none_or(|at| now - at >= self.flood_interval())
                    && now >= self.next_send_at)
                || self.keepalive_due(now);
            if !control_due {
                return false;
            }
            self.append_control(now, max_body, true);
            if self.body.is_empty() {
                Frame::Ping.encode(&mut self.body);
            }
            if self.abandon_due() {
                self.last_receipt_sent_at = Some(now);
            }
        }
        let Ok(sealed_number) = self.sealer.seal(&self.body, buffer) else {
            return false;
        };
        debug_assert_eq!(sealed_number, packet_number);
        let size = buffer.len();
        self.cumulative_sent += size as u64;
        // Short of data: nothing waits in the send queues (a few pending
        // repair symbols do not make a sender busy). Rate samples taken
        // then may raise the estimate but never lower it.
        let app_limited = self.deadline_queue.is_empty() && self.reliable_queue.is_empty();
        self.sent.push_back((
            packet_number,
            SentPacket {
                sent_at: now,
                cumulative_sent: self.cumulative_sent,
                last_ack_at: self.last_ack_at,
                last_ack_serviced: self.last_ack_serviced,
                last_ack_packet_sent_at: self.last_ack_packet_sent_at,
                app_limited,
            },
        ));
        // Bound the record of unacknowledged packets.
        while self.sent.len() > 1 << 16 {
            self.sent.pop_front();
        }
        if paced {
            let rate = self.rate.pacing_bytes_per_second();
            let start = if self.next_send_at + Duration::from_millis(2) < now {
                now
            } else {
                self.next_send_at
            };
            self.next_send_at = start + secs_f64(size, rate);
        }
        self.last_sent_at = now;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += size as u64;
        true
    }

    // ------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------

    fn probe_timeout(&self) -> Duration {
        // Two round trips: receipts are flooded several times per round
        // trip, so a group with no news for this long has really lost its
        // tail (a spurious timeout would resend what the peer holds).
        self.rate.smoothed_rtt() * 2 + Duration::from_millis(10)
    }

    /// When [`DataPlane::handle_timeout`] (or [`DataPlane::poll_transmit`])
    /// next has work.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut earliest: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| {
            earliest = Some(earliest.map_or(t, |e: Timestamp| e.min(t)));
        };
        if self.wants_to_send_paced() {
            if self.window_open() {
                consider(self.next_send_at);
            } else if let Some((_, oldest)) = self.sent.front() {
                consider((oldest.sent_at + self.loss_timeout()).max(self.next_send_at));
            }
        }
        if let Some(open) = self.open_group.and_then(|f| self.groups.get(&f)) {
            consider(self.group_close_time(open));
        }
        if self.largest_received.is_some() {
            if self.receipt_eliciting > 0 {
                if let Some(at) = self.first_unreported_at {
                    consider(at + self.config.receipt_interval);
                }
            }
            if self.receipt_unconfirmed() {
                let at = self
                    .last_receipt_sent_at
                    .map_or(self.last_heard_at, |at| at + self.flood_interval());
                if !self.peer_is_silent(at) {
                    consider(at);
                }
            }
        }
        if self.abandon_due() {
            consider(
                self.last_receipt_sent_at
                    .map_or(self.last_sent_at, |at| at + self.flood_interval())
                    .max(self.next_send_at),
            );
        }
        if self.confirm_due && self.largest_received.is_some() && !self.wants_to_send_paced() {
            consider(
                self.last_confirm_sent_at
                    .map_or(self.last_heard_at, |at| at + self.rate.smoothed_rtt() / 2),
            );
        }
        consider(self.last_sent_at + self.config.keepalive_interval);
        let pto = self.probe_timeout();
        for group in self.groups.values() {
            if group.closed && group.pending_repairs == 0 && group.unresolved > 0 {
                consider(group.last_sent_at + pto);
            }
            for member in &group.members {
                if let Some(expiry) = member.expires_at {
                    // ZERO marks an expiry already handled.
                    if group.unresolved > 0 && expiry != Timestamp::ZERO {
                        consider(expiry);
                    }
                }
            }
        }
        if let Some(front) = self.deadline_queue.front().and_then(|s| s.expires_at) {
            consider(front);
        }
        for opener in &self.openers {
            if let Some(at) = opener.retire_at {
                consider(at);
            }
        }
        earliest
    }

    /// The time from [`DataPlane::poll_timeout`] has come: close FEC
    /// groups, repair what receipts have not covered within a round trip,
    /// abandon expired deadline segments, retire old keys.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(open) = self.open_group {
            if self
                .groups
                .get(&open)
                .is_some_and(|g| now >= self.group_close_time(g))
            {
                self.close_group(open);
            }
        }
        self.openers
            .retain(|o| o.retire_at.is_none_or(|at| now < at));
        self.drop_expired_queued(now);
        let pto = self.probe_timeout();
        let known = self.out_known_point;
        let loss_factor = 1.0 / (1.0 - self.outbound_loss().unwrap_or(0.0));
        let tail = self.reliable_queue.is_empty();
        for (&first, group) in &mut self.groups {
            // Abandon expired deadline members.
            for (i, member) in group.members.iter_mut().enumerate() {
                let seq = first + i as u64;
                if let Some(expiry) = member.expires_at {
                    if expiry <= now {
                        member.expires_at = Some(Timestamp::ZERO);
                        if !(seq < known || self.out_resolved.contains(seq)) {
                            self.abandon_pending.insert(seq);
                        }
                    }
                }
            }
            if !group.closed || group.pending_repairs > 0 || group.unresolved == 0 {
                continue;
            }
            if now < group.last_sent_at + pto {
                continue;
            }
            let live = (0..group.k()).any(|i| {
                let seq = first + i as u64;
                !(seq < known || self.out_resolved.contains(seq))
                    && group.members[i].expires_at.is_none_or(|e| e > now)
            });
            if !live {
                group.last_sent_at = now;
                continue;
            }
            let needed = group
                .reported_need
                .unwrap_or(group.unresolved as u64)
                .min(group.unresolved as u64)
                .max(1);
            group.pending_repairs = self.config.reactive_repair_count(needed, loss_factor, tail);
            group.pending_proactive = false;
            group.last_sent_at = now;
            self.repair_queue.push_back(first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_repairs_grow_with_loss() {
        assert_eq!(repairs_for_residual(1, 0.0, 1e-3, 50), 0);
        assert_eq!(repairs_for_residual(1, 0.1, 2e-3, 50), 2);
        assert!(repairs_for_residual(8, 0.3, 1e-3, 200) > repairs_for_residual(8, 0.1, 1e-3, 200));
    }
}
