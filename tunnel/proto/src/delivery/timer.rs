//! Every timer of the data plane, in one table: [`Timer`] names them and
//! [`DataPlane::timer_deadline`] is the one place that says when each is
//! due. [`DataPlane::poll_timeout`] is the earliest of them, and
//! [`DataPlane::poll_transmit`] and [`DataPlane::handle_timeout`] act on a
//! timer exactly when its deadline has come ([`DataPlane::timer_due`]), so
//! the wake-ups and the checks cannot disagree.

use super::DataPlane;
use crate::time::Timestamp;
use std::time::Duration;

/// The data plane's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The next paced packet (data or repair) may leave: when the pacer
    /// allows and the window is open (or reopens as old packets expire).
    Pace,
    /// A receipt is owed for what arrived: at once after two eliciting
    /// packets, otherwise the receipt interval after the first.
    ReceiptAck,
    /// Receipts are flooded while something is unconfirmed or missing, and
    /// the peer is not silent.
    ReceiptFlood,
    /// Abandonments are announced, flooded like receipts, at the pace.
    Abandon,
    /// A confirmation alone in a packet, at most once per half round trip.
    Confirm,
    /// Nothing sent for the keepalive interval.
    Keepalive,
    /// The oldest unresolved source has gone a probe timeout without
    /// news: fresh repair.
    Probe,
    /// Nothing was queued behind the last reliable source for a moment:
    /// repair covers its tail before any receipt could ask.
    TailCover,
    /// A deadline segment in flight reaches its deadline: abandon it.
    MemberExpiry,
    /// A queued deadline segment reaches its deadline: drop it.
    QueueExpiry,
    /// An old key's grace time ends.
    KeyRetire,
    /// A segment-mode flow has waited its reorder hold for a hole.
    ReorderRelease,
}

impl Timer {
    /// Every timer.
    pub(crate) const ALL: [Timer; 12] = [
        Timer::Pace,
        Timer::ReceiptAck,
        Timer::ReceiptFlood,
        Timer::Abandon,
        Timer::Confirm,
        Timer::Keepalive,
        Timer::Probe,
        Timer::TailCover,
        Timer::MemberExpiry,
        Timer::QueueExpiry,
        Timer::KeyRetire,
        Timer::ReorderRelease,
    ];
}

impl DataPlane {
    /// How long after sending a packet without news of it it counts as
    /// lost for the window.
    pub(super) fn loss_timeout(&self) -> Duration {
        self.rate.smoothed_rtt() * 5 / 4
            + self.config.receipt_interval * 4
            + Duration::from_millis(10)
    }

    /// From when the peer counts as silent for the window: packets that
    /// would count as lost after it stay in flight (a peer that is gone, or
    /// restarted without our session, closes the window instead of
    /// absorbing everything sent).
    pub(super) fn silent_from(&self) -> Timestamp {
        self.last_heard_at + self.loss_timeout() * 2
    }

    /// Two round trips: receipts are flooded several times per round trip,
    /// so a group with no news for this long has really lost its tail (a
    /// spurious timeout would resend what the peer holds).
    pub(super) fn probe_timeout(&self) -> Duration {
        self.rate.smoothed_rtt() * 2 + Duration::from_millis(10)
    }

    /// When `timer` is due, if it is armed.
    pub(crate) fn timer_deadline(&self, timer: Timer) -> Option<Timestamp> {
        let heard = self.loss_meter.largest_received().is_some();
        match timer {
            Timer::Pace => {
                if !self.wants_to_send_paced() {
                    None
                } else if self.window_open() {
                    Some(self.pacer.next_send_at())
                } else {
                    // The window reopens when the oldest packet expires, if
                    // it expires while the peer is still heard from;
                    // otherwise news of the peer wakes us.
                    self.flight
                        .oldest_sent_at()
                        .map(|sent| sent + self.loss_timeout())
                        .filter(|&expiry| expiry < self.silent_from())
                        .map(|expiry| expiry.max(self.pacer.next_send_at()))
                }
            }
            Timer::ReceiptAck => {
                if heard {
                    self.receipts.ack_due_at(self.config.receipt_interval)
                } else {
                    None
                }
            }
            Timer::ReceiptFlood => {
                if !heard || !self.receipt_unconfirmed() {
                    return None;
                }
                let at = self
                    .receipts
                    .last_sent_at
                    .map_or(self.last_heard_at, |at| at + self.flood_interval());
                (!self.peer_is_silent(at)).then_some(at)
            }
            // Abandonments ride on the next packet; alone only when no
            // packet went out for a flood interval. (Timed from the last
            // packet, not the last receipt: receipts no longer ride on
            // every packet, and a sender whose deadlines run out before
            // the receipts come sent an abandonment alone per datagram.)
            Timer::Abandon => self.outgoing.abandon_due().then(|| {
                (self.last_sent_at + self.flood_interval()).max(self.pacer.next_send_at())
            }),
            Timer::Confirm => {
                if self.outgoing.confirm_due && heard && !self.wants_to_send_paced() {
                    Some(
                        self.outgoing
                            .last_confirm_sent_at
                            .map_or(self.last_heard_at, |at| at + self.rate.smoothed_rtt() / 2),
                    )
                } else {
                    None
                }
            }
            Timer::Keepalive => Some(self.last_sent_at + self.config.keepalive_interval),
            Timer::Probe => self.window.next_probe(self.probe_timeout()),
            Timer::TailCover => self.window.next_tail_cover(),
            Timer::MemberExpiry => self.window.next_expiry(),
            Timer::QueueExpiry => self.queue.next_expiry(),
            Timer::KeyRetire => self.keys.next_retirement(),
            Timer::ReorderRelease => self.receiver.next_release(self.reorder_hold()),
        }
    }

    /// Whether `timer` is armed and its deadline has come by `now`.
    pub(crate) fn timer_due(&self, timer: Timer, now: Timestamp) -> bool {
        self.timer_deadline(timer).is_some_and(|at| at <= now)
    }
}
