//! Pacing: when the next paced packet (data or repair) may leave, so that
//! packets go out at the rate controller's pace instead of in bursts.
//!
//! The schedule is a virtual clock: each packet moves it on by its
//! transmission time at the current rate. The caller's timer wakes it late
//! (a runtime's timer has a millisecond's granularity, and a busy host
//! schedules the process later still); packets that were due meanwhile may
//! leave at once, so lateness does not lower the rate, up to
//! [`LATE_CATCH_UP_LIMIT`] behind. After an idle spell (nothing was waiting
//! when the last packet left) the schedule restarts at "now" beyond
//! [`IDLE_CATCH_UP_LIMIT`], instead of sending a burst to catch up.

use crate::time::Timestamp;
use std::time::Duration;

/// How far behind schedule a sender that was never short of packets may
/// catch up (the wake-up was late). Measured through the daemon on a
/// 20 Mbit/s path with a 2-core host: wake-ups are often more than 2 ms
/// late, and a 2 ms limit paced at 0.78 of the rate it meant to.
const LATE_CATCH_UP_LIMIT: Duration = Duration::from_millis(10);

/// How far behind schedule a sender that was idle (nothing waited when its
/// last packet left) may catch up: an idle spell is not lateness.
const IDLE_CATCH_UP_LIMIT: Duration = Duration::from_millis(2);

/// How long `bytes` take at `bytes_per_second` (at most 10 s).
pub(crate) fn transmit_time(bytes: usize, bytes_per_second: f64) -> Duration {
    Duration::from_secs_f64((bytes as f64 / bytes_per_second.max(1.0)).min(10.0))
}

/// The pacing schedule.
pub(crate) struct Pacer {
    next_send_at: Timestamp,
    /// More paced packets were waiting (and the window was open) when the
    /// last one left: a gap until the next is the timer's lateness.
    backlogged: bool,
}

impl Pacer {
    pub(crate) fn new(now: Timestamp) -> Self {
        Pacer {
            next_send_at: now,
            backlogged: false,
        }
    }

    /// When the next paced packet may leave.
    pub(crate) fn next_send_at(&self) -> Timestamp {
        self.next_send_at
    }

    /// A paced packet of `size` bytes left at `now`; `more_waiting` says
    /// whether another paced packet could leave as soon as the pace allows.
    pub(crate) fn on_sent(
        &mut self,
        now: Timestamp,
        size: usize,
        bytes_per_second: f64,
        more_waiting: bool,
    ) {
        let limit = if self.backlogged {
            LATE_CATCH_UP_LIMIT
        } else {
            IDLE_CATCH_UP_LIMIT
        };
        let start = if self.next_send_at + limit < now {
            now
        } else {
            self.next_send_at
        };
        self.next_send_at = start + transmit_time(size, bytes_per_second);
        self.backlogged = more_waiting;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn packets_are_spaced_at_the_rate_without_catching_up_bursts_after_idle() {
        let mut pacer = Pacer::new(ms(0));
        assert_eq!(pacer.next_send_at(), ms(0));
        pacer.on_sent(ms(0), 1000, 100_000.0, false);
        assert_eq!(pacer.next_send_at(), ms(10));
        // Idle for a long time: the schedule restarts at now.
        pacer.on_sent(ms(100), 1000, 100_000.0, false);
        assert_eq!(pacer.next_send_at(), ms(110));
        // Idle, but only slightly late: the schedule holds.
        pacer.on_sent(ms(111), 1000, 100_000.0, false);
        assert_eq!(pacer.next_send_at(), ms(120));
    }

    #[test]
    fn a_late_wake_up_of_a_backlogged_sender_catches_up_within_the_limit() {
        let mut pacer = Pacer::new(ms(0));
        pacer.on_sent(ms(0), 1000, 1_000_000.0, true);
        assert_eq!(pacer.next_send_at(), ms(1));
        // Woken 5 ms late with packets waiting: they may leave at once,
        // so the average rate holds.
        let mut sent_at_six = 0;
        while pacer.next_send_at() <= ms(6) {
            pacer.on_sent(ms(6), 1000, 1_000_000.0, true);
            sent_at_six += 1;
        }
        assert_eq!(sent_at_six, 6);
        assert_eq!(pacer.next_send_at(), ms(7));
        // Far later than the limit: the schedule restarts.
        pacer.on_sent(ms(50), 1000, 1_000_000.0, true);
        assert_eq!(pacer.next_send_at(), ms(51));
    }
}
