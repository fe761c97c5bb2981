//! The sender's clock as seen here: maps a segment's creation time,
//! stamped in the sender's clock, to this side's clock, so the receiver can
//! tell whether a deadline segment is still on time, and how much delay
//! the tunnel added to a segment.
//!
//! The mapping is the smallest `arrival − stamped creation` seen on a
//! directly received (not decoded) segment: clock offset plus least one-way
//! delay plus least queueing. A segment's expiry here is its creation plus
//! its deadline plus that offset: it is late when it took longer than its
//! deadline *beyond the fastest delivery seen*. The base one-way delay
//! itself cannot be told from the clock offset (half the round trip is
//! wrong on asymmetric paths, and under queueing on the way back), so it is
//! not subtracted: an on-time segment is never dropped, and a late one is
//! delivered at most the base one-way delay late (the sender already drops
//! what its deadline passed in its queue). The delay added to a segment is
//! its `delivery − creation` less that smallest offset.

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
    /// any observation.
    pub(crate) fn expiry_here(&self, deadline_micros: u64, created_micros: u64) -> Option<u64> {
        let offset = self.offset_micros?;
        let expiry = i128::from(created_micros) + i128::from(deadline_micros) + offset;
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
    ) -> bool {
        self.expiry_here(deadline_micros, created_micros)
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
        // Created at sender 100 ms with a 50 ms deadline: on time until it
        // took 50 ms longer than the fastest delivery (20 ms at best).
        assert!(clock.on_time(ms(5_100 + 20 + 49), 50_000, created(100)));
        assert!(!clock.on_time(ms(5_100 + 20 + 51), 50_000, created(100)));
        assert!(SenderClock::default().on_time(ms(1), 0, 0));
        // Delivered 30 ms later than the fastest segment.
        assert_eq!(
            clock.added_delay(ms(5_200 + 20 + 30), created(200)),
            Some(Duration::from_millis(30))
        );
    }
}
