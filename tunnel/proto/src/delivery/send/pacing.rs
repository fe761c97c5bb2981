//! Pacing: when the next paced packet (data or repair) may leave, so that
//! packets go out at the rate controller's pace instead of in bursts.

use crate::time::Timestamp;
use std::time::Duration;

/// A pacer that falls back to "now" after an idle spell longer than this,
/// instead of sending a burst to catch up.
const CATCH_UP_LIMIT: Duration = Duration::from_millis(2);

/// How long `bytes` take at `bytes_per_second` (at most 10 s).
pub(crate) fn transmit_time(bytes: usize, bytes_per_second: f64) -> Duration {
    Duration::from_secs_f64((bytes as f64 / bytes_per_second.max(1.0)).min(10.0))
}

/// The pacing schedule.
pub(crate) struct Pacer {
    next_send_at: Timestamp,
}

impl Pacer {
    pub(crate) fn new(now: Timestamp) -> Self {
        Pacer { next_send_at: now }
    }

    /// When the next paced packet may leave.
    pub(crate) fn next_send_at(&self) -> Timestamp {
        self.next_send_at
    }

    /// A paced packet of `size` bytes left at `now`.
    pub(crate) fn on_sent(&mut self, now: Timestamp, size: usize, bytes_per_second: f64) {
        let start = if self.next_send_at + CATCH_UP_LIMIT < now {
            now
        } else {
            self.next_send_at
        };
        self.next_send_at = start + transmit_time(size, bytes_per_second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_spaced_at_the_rate_without_catching_up_bursts() {
        let ms = |ms: u64| Timestamp::from_duration(Duration::from_millis(ms));
        let mut pacer = Pacer::new(ms(0));
        assert_eq!(pacer.next_send_at(), ms(0));
        pacer.on_sent(ms(0), 1000, 100_000.0);
        assert_eq!(pacer.next_send_at(), ms(10));
        // Idle for a long time: the schedule restarts at now.
        pacer.on_sent(ms(100), 1000, 100_000.0);
        assert_eq!(pacer.next_send_at(), ms(110));
    }
}
