//! The data plane: flooded bilateral delivery of segments after the
//! handshake, as a sans-IO state machine ([`DataPlane`], one per session).
//!
//! What it owns:
//! - sealing and opening packets under the session keys, and rekeying
//!   without losing anything in flight ([`keys`]);
//! - the two delivery classes ([`DeliveryClass`]): `Reliable` (exactly once,
//!   in order per flow, flows independent) and `Deadline(d)` (at most once,
//!   never late, abandoned by both sides when it cannot make it);
//! - redundancy instead of waiting: systematic Reed-Solomon FEC ([`fec`])
//!   over small groups closed by count or a short timer, proactive repair
//!   sized to the loss the receiver measures, and fresh repair symbols for
//!   whatever is still missing within about one round trip;
//! - bilateral receipts ([`receipt`]): cumulative point and ranges on
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
//! least queueing); it cannot tell the one-way delay from the clock offset,
//! so it counts a segment late only when it took longer than its deadline
//! beyond the fastest delivery seen. A segment that arrives (or is decoded) after its mapped deadline
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
//! by default: surplus symbols are the only waste); a deadline window gets
//! enough that each of its datagrams is lost for good with probability at
//! most [`DataPlaneConfig::deadline_residual_target`] under an upper
//! estimate of the loss, since it cannot wait for a second chance. When a receipt that
//! covers a group and acknowledges a packet sent after the group's last
//! symbol shows it still short by `n`, the sender queues about `n/(1−p)`
//! fresh repair symbols ([`DataPlaneConfig::reactive_repair_factor`];
//! for a stream, less what is still in flight over it, as soon as a
//! receipt shows more holes), ahead of new data; if no receipt covers it for two round trips, the
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

mod config;
pub mod fec;
mod histogram;
mod keys;
mod ranges;
mod rate;
mod receipt;
mod recv;
mod send;
mod stats;
mod timer;
mod transmit;

pub use config::DataPlaneConfig;
pub use histogram::DelayHistogram;
pub use ranges::RangeSet;
pub use receipt::{DeliveryRecord, DirectionRecord};
pub use recv::Delivered;
pub use send::queue::SendError;
pub use stats::{DataPlaneStats, DropCounts};

use crate::class::DeliveryClass;
use crate::crypto::aead::OpenError;
use crate::crypto::keys::SessionKeys;
use crate::time::Timestamp;
use crate::wire::frame::{self, Frame, Receipt, SymbolClass};
use keys::PacketKeys;
use rate::{RateConfig, RateController};
use receipt::{OutgoingRecord, ReceiptInput, ReceiptSchedule};
use recv::loss::LossMeter;
use recv::Receiver;
use send::aqm::{Target, Verdict};
use send::flight::InFlight;
use send::pacing::Pacer;
use send::queue::{QueuedSegment, SendQueue};
use send::window::TxWindow;
use std::time::Duration;
use timer::Timer;

/// A flow chosen by the caller (e.g. a hash of the 5-tuple). Reliable
/// segments are ordered within a flow; flows never wait for each other.
pub type FlowId = u64;

/// A reliable segment carries its send time (for the added-delay
/// measurement) at most this often.
pub const STAMP_INTERVAL: Duration = Duration::from_millis(10);

/// The send queue's sojourn target as a fraction of the round trip. The
/// send queue is the bottleneck buffer an inner TCP sees, and a single
/// cubic flow keeps its path full only if the queue it may build before a
/// drop is about (1 − β)/β ≈ 0.43 of the path's delay (β = 0.7: after a
/// drop its window is 0.7 of what it was). A tenth (CoDel's usual ratio)
/// cost segment mode a tenth of its goodput at 1-30 % loss in the
/// simulator.
const QUEUE_TARGET_RTT_FRACTION: f64 = 0.4;

/// Shortest reorder hold of a segment-mode flow.
pub const REORDER_HOLD_MIN: Duration = Duration::from_millis(4);
/// Longest reorder hold of a segment-mode flow.
pub const REORDER_HOLD_MAX: Duration = Duration::from_millis(16);

/// How long, at the pacing rate, the bytes a stream may queue last
/// ([`DataPlane::stream_room`]).
pub const STREAM_QUEUE_TARGET: Duration = Duration::from_millis(20);

/// An authentic, fresh data packet that [`DataPlane::handle_datagram`]
/// took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The session whose keys opened it (the current one, or an old one
    /// during a rekey's grace time).
    pub session_id: u64,
    /// Whether its frames parsed (an authentic packet whose frames did not
    /// is counted as `malformed` and otherwise ignored).
    pub frames_ok: bool,
}

fn micros(t: Timestamp) -> u64 {
    t.as_nanos() / 1000
}

/// One session's data plane. See the module documentation.
pub struct DataPlane {
    config: DataPlaneConfig,
    keys: PacketKeys,
    stats: DataPlaneStats,
    rate: RateController,
    // Sending side.
    queue: SendQueue,
    window: TxWindow,
    flight: InFlight,
    pacer: Pacer,
    outgoing: OutgoingRecord,
    /// Loss of our packets as the peer's receipts report it.
    peer_loss: Option<f64>,
    // Receiving side.
    receiver: Receiver,
    receipts: ReceiptSchedule,
    loss_meter: LossMeter,
    wire_bytes_received: u64,
    // Liveness.
    last_heard_at: Timestamp,
    last_sent_at: Timestamp,
    /// Reused buffer for encoding receipts and abandonments.
    scratch: Vec<u8>,
    /// When the next reliable segment gets a send time.
    next_stamp_at: Timestamp,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("next_seq", &self.window.next_seq())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
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
                max_loss: config.loss_cap(),
            },
        );
        DataPlane {
            keys: PacketKeys::new(config.aead, &keys),
            config,
            stats: DataPlaneStats::default(),
            rate,
            queue: SendQueue::new(now),
            window: TxWindow::new(),
            flight: InFlight::new(now),
            pacer: Pacer::new(now),
            outgoing: OutgoingRecord::default(),
            peer_loss: None,
            receiver: Receiver::default(),
            receipts: ReceiptSchedule::default(),
            loss_meter: LossMeter::default(),
            wire_bytes_received: 0,
            last_heard_at: now,
            last_sent_at: now,
            scratch: Vec::new(),
            next_stamp_at: now,
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
            outgoing: self.outgoing.record.clone(),
            incoming: self.receiver.record().clone(),
        }
    }

    /// Whether nothing authentic arrived from the peer for the idle timeout.
    pub fn peer_is_silent(&self, now: Timestamp) -> bool {
        now - self.last_heard_at >= self.config.idle_timeout
    }

    /// Bytes waiting in the send queue.
    pub fn queued_bytes(&self) -> usize {
        self.queue.queued_bytes()
    }

    /// Whether everything sent is resolved at the peer and confirmed, and
    /// nothing waits to be sent.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.window.is_empty()
            && self.outgoing.known_point() == self.window.next_seq()
    }

    /// Whether packets sealed under `session_id`'s keys still open here
    /// (the current session, or an old one within its rekey grace time).
    pub fn opens(&self, session_id: u64) -> bool {
        self.keys.opens(session_id)
    }

    /// Replaces the session keys (after a new handshake). Packets sealed
    /// under the old keys still open for [`DataPlaneConfig::rekey_grace`];
    /// sequence spaces, groups and receipts carry on, so nothing in flight
    /// is lost.
    pub fn rekey(&mut self, now: Timestamp, keys: SessionKeys) {
        self.keys.rekey(now, &keys, self.config.rekey_grace);
    }

    // ------------------------------------------------------------------
    // Taking segments from the caller
    // ------------------------------------------------------------------

    /// Queues a segment for the peer. `flow` orders `Reliable` segments;
    /// `class` says how to deliver it.
    pub fn send_segment(
        &mut self,
        now: Timestamp,
        flow: FlowId,
        class: DeliveryClass,
        segment: &[u8],
    ) -> Result<(), SendError> {
        self.check_size(segment)?;
        let by_delay = (self.rate.pacing_bytes_per_second()
            * self.config.send_queue_max_delay.as_secs_f64()) as usize;
        let limit = self
            .config
            .send_queue_limit_bytes
            .min(by_delay.max(64 * 1024));
        if self.queue.would_exceed(segment.len(), limit) {
            self.stats.drops.queue_full += 1;
            return Err(SendError::QueueFull);
        }
        // The queue manager signals an inner TCP through drops; deadline
        // traffic has its own queue, served first, and its own expiry.
        let manage = !matches!(class, DeliveryClass::Deadline(_));
        if let (true, Verdict::Backlogged { drop }) =
            (manage, self.queue.offer(now, self.queue_target()))
        {
            self.rate.on_send_backlog(now);
            if drop {
                self.stats.drops.queue_delay += 1;
                return Err(SendError::QueueDelay);
            }
        }
        let (class, expires_at) = match class {
            DeliveryClass::Reliable | DeliveryClass::Segment => (
                SymbolClass::Reliable {
                    flow_seq: self.queue.next_flow_position(flow),
                    created_micros: self.stamp(now),
                    bounded_hold: class == DeliveryClass::Segment,
                },
                None,
            ),
            DeliveryClass::Deadline(deadline) => (
                SymbolClass::Deadline {
                    deadline_micros: u64::try_from(deadline.as_micros()).unwrap_or(u64::MAX),
                    created_micros: micros(now),
                },
                Some(now + deadline),
            ),
        };
        self.enqueue(now, flow, class, segment, expires_at);
        Ok(())
    }

    /// The queue manager's target: [`QUEUE_TARGET_RTT_FRACTION`] of the
    /// round trip tolerated (within the configured bounds), for about a
    /// round trip.
    pub(super) fn queue_target(&self) -> Target {
        let srtt = self.rate.smoothed_rtt();
        Target {
            delay: self.round_trip_share(QUEUE_TARGET_RTT_FRACTION),
            interval: srtt.clamp(Duration::from_millis(50), Duration::from_millis(500)),
        }
    }

    /// How long a segment may wait in the send queue before the wait says
    /// the pace is below demand (the rate controller then probes up): a
    /// tenth of the round trip, within the queue manager's bounds.
    pub(super) fn backlog_delay(&self) -> Duration {
        self.round_trip_share(0.1)
    }

    /// `fraction` of the smoothed round trip, within the queue manager's
    /// delay bounds.
    fn round_trip_share(&self, fraction: f64) -> Duration {
        self.rate.smoothed_rtt().mul_f64(fraction).clamp(
            self.config.send_queue_delay_target_min,
            self.config.send_queue_delay_target_max,
        )
    }

    /// The send time to stamp on a reliable segment taken at `now`, about
    /// once per [`STAMP_INTERVAL`].
    fn stamp(&mut self, now: Timestamp) -> Option<u64> {
        if now < self.next_stamp_at {
            return None;
        }
        self.next_stamp_at = now + STAMP_INTERVAL;
        Some(micros(now))
    }

    fn check_size(&mut self, segment: &[u8]) -> Result<(), SendError> {
        let max = self.max_segment_size();
        if segment.len() > max {
            self.stats.drops.too_large += 1;
            return Err(SendError::TooLarge {
                size: segment.len(),
                max,
            });
        }
        Ok(())
    }

    fn enqueue(
        &mut self,
        now: Timestamp,
        flow: FlowId,
        class: SymbolClass,
        segment: &[u8],
        expires_at: Option<Timestamp>,
    ) {
        self.queue.push(QueuedSegment {
            flow,
            class,
            payload: segment.to_vec(),
            enqueued_at: now,
            expires_at,
        });
        self.rate.set_backlog(self.queue.queued_bytes());
        self.stats.segments_queued += 1;
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
        target.saturating_sub(self.queue.queued_bytes())
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
        self.check_size(segment)?;
        if self
            .queue
            .would_exceed(segment.len(), self.config.send_queue_limit_bytes)
        {
            self.stats.drops.queue_full += 1;
            return Err(SendError::QueueFull);
        }
        let class = SymbolClass::Reliable {
            flow_seq: self.queue.next_flow_position(flow),
            created_micros: self.stamp(now),
            bounded_hold: false,
        };
        self.enqueue(now, flow, class, segment, None);
        Ok(())
    }

    /// The next delivered segment, if any.
    pub fn poll_delivery(&mut self) -> Option<Delivered> {
        self.receiver.poll_delivery()
    }

    // ------------------------------------------------------------------
    // Receiving
    // ------------------------------------------------------------------

    /// A UDP payload arrived from the peer; it is opened in place (the
    /// buffer is overwritten). Anything that is not an authentic, fresh
    /// data packet of this session is counted and dropped, and the reason
    /// returned.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        datagram: &mut [u8],
    ) -> Result<Received, OpenError> {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        let size = datagram.len();
        let opened = match self.keys.open_in_place(datagram) {
            Ok(opened) => opened,
            Err(error) => {
                self.stats.drops.count_open_error(error);
                return Err(error);
            }
        };
        let session_id = opened.session_id;
        let Ok(frames) = frame::parse_frames(opened.body) else {
            self.stats.drops.malformed += 1;
            return Ok(Received {
                session_id,
                frames_ok: false,
            });
        };
        self.on_authentic_packet(now, opened.packet_number, size);
        let mut eliciting = false;
        for frame in frames {
            eliciting |= matches!(
                frame,
                Frame::Data { .. } | Frame::Repair { .. } | Frame::Abandon { .. }
            );
            self.on_frame(now, frame);
        }
        self.receipts.on_packet(now, eliciting);
        Ok(Received {
            session_id,
            frames_ok: true,
        })
    }

    fn on_authentic_packet(&mut self, now: Timestamp, packet_number: u64, size: usize) {
        self.last_heard_at = now;
        self.wire_bytes_received += size as u64;
        self.receipts.packets_since += 1;
        self.loss_meter.on_packet(now, packet_number);
        self.stats.loss_inbound = self.loss_meter.estimate().unwrap_or(0.0);
    }

    /// How long a hole may hold a segment-mode flow here: an eighth of the
    /// minimum round trip, within [`REORDER_HOLD_MIN`, `REORDER_HOLD_MAX`]
    /// (HyStart reads more than that as congestion).
    fn reorder_hold(&self) -> Duration {
        (self.rate.min_rtt() / 8).clamp(REORDER_HOLD_MIN, REORDER_HOLD_MAX)
    }

    fn on_frame(&mut self, now: Timestamp, frame: Frame<'_>) {
        let news = match frame {
            Frame::Data { seq, symbol } => self.receiver.on_data(now, seq, symbol, &mut self.stats),
            Frame::Repair {
                first,
                mask,
                id,
                shard,
            } => self.receiver.on_repair(
                now,
                fec::RepairWindow { first, mask },
                id,
                shard,
                &mut self.stats,
            ),
            Frame::Receipt(receipt) => {
                self.on_receipt(now, &receipt);
                false
            }
            Frame::Confirm { point } => {
                self.receipts.peer_confirmed = self
                    .receipts
                    .peer_confirmed
                    .max(point.min(self.receiver.known_end()));
                false
            }
            Frame::Abandon { ranges } => self.receiver.on_abandon(&ranges),
            Frame::Ping => false,
        };
        self.receipts.news |= news;
    }

    fn build_receipt(&self, now: Timestamp) -> Receipt {
        receipt::build_receipt(
            now,
            ReceiptInput {
                peer_confirmed: self.receipts.peer_confirmed,
                largest_received: self.loss_meter.largest_received(),
                bytes_received: self.wire_bytes_received,
                loss: self.loss_meter.estimate(),
                ..self.receiver.receipt_input()
            },
        )
    }

    /// Whether our receipts still hold something the peer has not
    /// confirmed, or we are still waiting for something (holes, groups
    /// short of symbols): then receipts are flooded on a timer.
    fn receipt_unconfirmed(&self) -> bool {
        self.receiver
            .receipt_unconfirmed(self.receipts.peer_confirmed)
    }

    // ------------------------------------------------------------------
    // Receipts from the peer (sending side)
    // ------------------------------------------------------------------

    fn on_receipt(&mut self, now: Timestamp, receipt: &Receipt) {
        if OutgoingRecord::check(receipt, self.window.next_seq()).is_err() {
            self.stats.drops.malformed += 1;
            return;
        }
        if let Some(sample) = self.flight.on_ack(
            now,
            receipt.largest_packet,
            Duration::from_micros(receipt.ack_delay_micros),
            self.keys.next_packet_number(),
        ) {
            self.rate.on_sample(now, sample);
        }
        let loss = receipt.loss_per_65536 as f64 / 65536.0;
        self.peer_loss = Some(loss);
        self.stats.loss_outbound = loss;
        self.rate.set_peer_loss(now, loss);
        self.rate
            .on_peer_bytes_received(now, receipt.bytes_received);
        self.outgoing
            .apply(receipt, self.window.lowest_unresolved());
        let context = self.repair_context();
        let receipt_high = receipt.ranges.last().map_or(receipt.cumulative, |r| r.end);
        self.window.on_receipt(
            receipt_high,
            receipt.largest_packet,
            receipt.covered_below,
            &receipt.needs,
            &self.outgoing,
            &self.config,
            context,
        );
        self.update_rate_stats();
    }

    fn update_rate_stats(&mut self) {
        self.stats.pacing_rate_bits_per_second = (self.rate.pacing_bytes_per_second() * 8.0) as u64;
        self.stats.bottleneck_bits_per_second =
            (self.rate.bottleneck_bytes_per_second() * 8.0) as u64;
        self.stats.min_rtt = self.rate.min_rtt();
        self.stats.smoothed_rtt = self.rate.smoothed_rtt();
        let p = self.outbound_loss().unwrap_or(0.0);
        self.stats.redundancy = p / (1.0 - p);
    }

    // ------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------

    /// When [`DataPlane::handle_timeout`] (or [`DataPlane::poll_transmit`])
    /// next has work.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        Timer::ALL
            .into_iter()
            .filter_map(|timer| self.timer_deadline(timer))
            .min()
    }

    /// The time from [`DataPlane::poll_timeout`] has come: repair what
    /// receipts have not covered within a round trip, abandon expired
    /// deadline segments, let held segment-mode flows go on, retire old
    /// keys.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.keys.retire(now);
        let hold = self.reorder_hold();
        self.receiver.release(now, hold, &mut self.stats);
        self.drop_expired(now);
        let probe_timeout = self.probe_timeout();
        let context = self.repair_context();
        self.window.on_timeout(
            now,
            probe_timeout,
            &mut self.outgoing,
            &self.config,
            context,
        );
    }
}
