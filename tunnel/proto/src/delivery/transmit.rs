//! Building each datagram: paced data and repair first (repair before new
//! data), then the control frames that fit (receipt, confirmation,
//! abandonments), or control frames alone when one is due; sealing in
//! the caller's buffer.

use super::receipt::{self, CONFIRM_FRAME_MAX};
use super::send::queue::QueuedSegment;
use super::send::repair::RepairContext;
use super::send::window::RepairSent;
use super::timer::Timer;
use super::DataPlane;
use crate::crypto::aead::PROTECTION_OVERHEAD;
use crate::time::Timestamp;
use crate::wire::data::HEADER_LEN;
use crate::wire::frame::Frame;
use std::time::Duration;

impl DataPlane {
    /// Random loss of our packets, what proactive repair covers: the
    /// peer's reports while no queue stood (loss from a queue we overflow
    /// is for the rate to fix, not for more redundancy), or until there is
    /// one, the peer's latest report, or until that, the loss we see on
    /// the peer's packets (paths are often symmetric).
    pub(super) fn outbound_loss(&self) -> Option<f64> {
        self.rate
            .random_loss()
            .or(self.peer_loss)
            .or(self.loss_meter.estimate())
            .map(|p| p.min(self.config.loss_cap()))
    }

    pub(super) fn repair_context(&self) -> RepairContext {
        RepairContext {
            loss: self.outbound_loss(),
            tail: self.queue.reliable_is_empty(),
            one_way: self.rate.measured_min_rtt().map(|rtt| rtt / 2),
            reverse_loss: self.loss_meter.estimate(),
        }
    }

    pub(super) fn window_open(&self) -> bool {
        self.flight.bytes_in_flight() < self.rate.congestion_window(self.config.max_datagram_size)
    }

    /// Whether the sequence space may grow: reliable segments wait while
    /// the oldest unresolved one is too far behind.
    pub(super) fn reliable_allowed(&self) -> bool {
        self.window.next_seq() - self.window.lowest_unresolved()
            < self.config.max_unresolved_segments
    }

    pub(super) fn has_new_data(&self) -> bool {
        self.queue.has_deadline() || (!self.queue.reliable_is_empty() && self.reliable_allowed())
    }

    pub(super) fn wants_to_send_paced(&self) -> bool {
        self.window.has_pending_repair() || self.has_new_data()
    }

    /// Appends the next frame carrying a symbol to `out`, most urgent
    /// first: repair of deadline traffic, new deadline segments, then
    /// other repair (fresh repair before proactive), then new reliable
    /// segments. Returns whether one was written.
    pub(super) fn next_symbol_frame(
        &mut self,
        now: Timestamp,
        packet_number: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        let context = self.repair_context();
        for urgent in [true, false] {
            if let Some(sent) = self.window.next_repair_frame(
                now,
                packet_number,
                &self.outgoing,
                context,
                urgent,
                out,
            ) {
                match sent {
                    RepairSent::Proactive => self.stats.proactive_repairs_sent += 1,
                    RepairSent::Reactive => self.stats.reactive_repairs_sent += 1,
                }
                return true;
            }
            if urgent {
                self.drop_expired(now);
                if let Some(segment) = self.queue.pop(false) {
                    self.send_source(now, segment, out);
                    return true;
                }
            }
        }
        let Some(segment) = self.queue.pop(self.reliable_allowed()) else {
            return false;
        };
        self.send_source(now, segment, out);
        true
    }

    /// Drops the deadline segments that expired in the queue: the pace is
    /// below demand, so the rate controller probes up.
    pub(super) fn drop_expired(&mut self, now: Timestamp) {
        let expired = self.queue.drop_expired(now);
        if expired > 0 {
            self.stats.drops.expired_in_queue += expired;
            self.rate.on_send_backlog(now);
        }
    }

    fn send_source(&mut self, now: Timestamp, segment: QueuedSegment, out: &mut Vec<u8>) {
        self.rate.set_backlog(self.queue.queued_bytes());
        // Segments that waited longer than the backlog delay: the pace is
        // below demand (streams included, which the queue manager never
        // refuses).
        if now - segment.enqueued_at > self.backlog_delay() {
            self.rate.on_send_backlog(now);
        }
        let context = self.repair_context();
        let more_queued = !self.queue.is_empty();
        self.window
            .add_source(now, segment, &self.config, context, more_queued, out);
        self.stats.segments_sent += 1;
    }

    /// Short of data: less than one more datagram waits in the send queue
    /// (a sparse stream with a datagram or two queued is not held back by
    /// the pace). Rate samples taken then may raise the estimate but never
    /// lower it.
    pub(super) fn app_limited(&self) -> bool {
        self.queue.queued_bytes() < self.config.max_datagram_size
    }

    /// How often receipts are flooded while the peer has not confirmed
    /// them: often enough that about four arrive per round trip despite
    /// the loss the peer measures on our packets.
    pub(super) fn flood_interval(&self) -> Duration {
        let arrive = 1.0 - self.stats.loss_outbound.min(self.config.loss_cap());
        (self.rate.smoothed_rtt() / 4)
            .mul_f64(arrive)
            .max(Duration::from_millis(1))
    }

    /// Appends the control frames (receipt, confirmation, abandonments)
    /// that fit in `room` bytes to `out`.
    pub(super) fn append_control(
        &mut self,
        now: Timestamp,
        room: usize,
        force_receipt: bool,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        let want_receipt = force_receipt
            || self
                .receipts
                .wants_receipt(now, self.rate.smoothed_rtt() / 2)
            || self.receipt_unconfirmed();
        if want_receipt && self.loss_meter.largest_received().is_some() {
            let receipt = self.build_receipt(now);
            if receipt::encode_within(receipt, room, &mut self.scratch) {
                out.extend_from_slice(&self.scratch);
                self.receipts.on_sent(now);
            }
        }
        let used = out.len() - start;
        if (self.outgoing.confirm_due || self.outgoing.known_point() > 0)
            && room.saturating_sub(used) >= CONFIRM_FRAME_MAX
        {
            Frame::Confirm {
                point: self.outgoing.known_point(),
            }
            .encode(out);
            self.outgoing.confirm_due = false;
            self.outgoing.last_confirm_sent_at = Some(now);
        }
        let used = out.len() - start;
        if self.outgoing.abandon_due() && room.saturating_sub(used) > 24 {
            let budget = (room - used - 4) / 20;
            let ranges = self.outgoing.pending_abandoned(budget.max(1));
            self.scratch.clear();
            Frame::Abandon { ranges }.encode(&mut self.scratch);
            if self.scratch.len() <= room - used {
                out.extend_from_slice(&self.scratch);
            }
        }
    }

    /// Appends the next datagram for the peer to `buffer`, if one is due
    /// at `now`, and returns its length. Data and repair are paced and
    /// windowed; receipts, confirmations and keepalives go when due.
    pub fn poll_transmit(&mut self, now: Timestamp, buffer: &mut Vec<u8>) -> Option<usize> {
        let start = buffer.len();
        buffer.resize(start + HEADER_LEN, 0);
        let body_start = buffer.len();
        let packet_number = self.keys.next_packet_number();
        self.flight
            .expire(now, self.loss_timeout(), self.silent_from());
        let paced =
            self.timer_due(Timer::Pace, now) && self.next_symbol_frame(now, packet_number, buffer);
        let max_body = self
            .config
            .max_datagram_size
            .saturating_sub(PROTECTION_OVERHEAD);
        if paced {
            let room = max_body.saturating_sub(buffer.len() - body_start);
            self.append_control(now, room, false, buffer);
        } else {
            let control_due = [
                Timer::ReceiptAck,
                Timer::ReceiptFlood,
                Timer::Confirm,
                Timer::Abandon,
                Timer::Keepalive,
            ]
            .into_iter()
            .any(|timer| self.timer_due(timer, now));
            if !control_due {
                buffer.truncate(start);
                return None;
            }
            self.append_control(now, max_body, true, buffer);
            if buffer.len() == body_start {
                Frame::Ping.encode(buffer);
            }
            if self.outgoing.abandon_due() {
                self.receipts.last_sent_at = Some(now);
            }
        }
        if self.keys.seal_in_place(buffer, start).is_err() {
            buffer.truncate(start);
            return None;
        }
        let size = buffer.len() - start;
        let app_limited = self.app_limited();
        self.flight.on_sent(packet_number, now, size, app_limited);
        if paced {
            let pace = self.rate.pacing_bytes_per_second();
            let more_waiting = self.wants_to_send_paced() && self.window_open();
            self.pacer.on_sent(now, size, pace, more_waiting);
            self.stats.paced_sent += 1;
            if app_limited {
                self.stats.paced_short_of_data += 1;
            }
            if pace < 0.99 * self.rate.bottleneck_bytes_per_second() {
                self.stats.paced_below_estimate += 1;
            }
        }
        self.last_sent_at = now;
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += size as u64;
        Some(size)
    }
}
