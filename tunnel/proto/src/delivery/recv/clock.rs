//! The sender's clock as seen here: maps a segment's creation time,
//! stamped in the sender's clock, to this side's clock, so the receiver can
//! tell whether a deadline segment is still on time, and how much delay
//! the tunnel added to a segment.
//!
//! The mapping is the smallest `arrival − stamped creation` seen on a
//! directly received (not decoded) segment: clock offset plus least one-way
//! delay plus least queueing. A segment's expiry here is its creation plus
//! its deadline plus that offset, less the one-way delay (half the minimum
//! round trip), so a segment is late exactly when it took longer than its
//! deadline. The delay added to a segment is its `delivery − creation`
//! less that smallest offset.

use crate::time::Timestamp;
use std::time::Duration;

fn micros(t: Timestamp) -> u64 {
    t.as_nanos() / 1000
}

/// The sender-to-receiver clock mapping.
#[derive(Clone, Debug, Default)]
pub(crate) struct SenderClock {
    offset_micros: Option<i128>,
}

impl SenderClock {
    /// A segment created at `created_micros` (sender's clock) arrived
    /// directly at `now`.
    pub(crate) fn observe(&mut self, now: Timestamp, created_micros: u64) {
        let sample = i128::from(micros(now)) - i128::from(created_micros);
        self.offset_micros = Some(self.offset_micros.map_or(sample, |o| o.min(sample)));
    }

    /// When, in this side's microseconds, a segment expires; `None` before
    /// any observation. `one_way` is the path's one-way delay if known.
    pub(crate) fn expiry_here(
        &self,
        deadline_micros: u64,
        created_micros: u64,
        one_way: Option<Duration>,
    ) -> Option<u64> {
        let offset = self.offset_micros?;
        let one_way = one_way.map_or(0, |d| i128::try_from(d.as_micros()).unwrap_or(0));
        let expiry = i128::from(created_micros) + i128::from(deadline_micros) + offset - one_way;
        Some(u64::try_from(expiry.max(0)).unwrap_or(u64::MAX))
    }

    /// How much longer than the least seen a segment created at
    /// `created_micros` took to be delivered at `now`.
    pub(crate) fn added_delay(&self, now: Timestamp, created_micros: u64) -> Option<Duration> {
        let offset = self.offset_micros?;
        let taken = i128::from(micros(now)) - i128::from(created_micros);
        let added = u64::try_from((taken - offset).max(0)).unwrap_or(u64::MAX);
        Some(Duration::from_micros(added))
    }

    /// Whether a segment is on time at `now` (always, before any
    /// observation).
    pub(crate) fn on_time(
        &self,
        now: Timestamp,
        deadline_micros: u64,
        created_micros: u64,
        one_way: Option<Duration>,
    ) -> bool {
        self.expiry_here(deadline_micros, created_micros, one_way)
            .is_none_or(|expiry| micros(now) <= expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn late_means_longer_than_the_deadline_whatever_the_clock_offset() {
        let mut clock = SenderClock::default();
        // The sender's clock is 5 s behind; one way takes 20 ms.
        let created = |sender_ms: u64| sender_ms * 1000;
        clock.observe(ms(5_020), created(0));
        let one_way = Some(Duration::from_millis(20));
        // Created at sender 100 ms with a 50 ms deadline: on time until it
        // is 50 ms old here.
        assert!(clock.on_time(ms(5_100 + 49), 50_000, created(100), one_way));
        assert!(!clock.on_time(ms(5_100 + 51), 50_000, created(100), one_way));
        assert!(SenderClock::default().on_time(ms(1), 0, 0, None));
        // Delivered 30 ms later than the fastest segment.
        assert_eq!(
            clock.added_delay(ms(5_200 + 20 + 30), created(200)),
            Some(Duration::from_millis(30))
        );
    }
}
