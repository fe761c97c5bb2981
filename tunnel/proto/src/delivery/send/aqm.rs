//! The send queue's active queue manager: CoDel-like, it refuses a segment
//! now and then once the oldest queued segment has waited too long for a
//! whole interval, more often the longer that lasts, so an inner TCP sees
//! congestion as single losses instead of a tail drop.

use crate::time::Timestamp;
use std::time::Duration;

/// What the queue manager aims at: the sojourn time it tolerates, and how
/// long the queue may stand above it before the first refusal (about a
/// round trip: the time a TCP needs to answer a drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// Tolerated sojourn time of the oldest queued segment.
    pub delay: Duration,
    /// How long it must be exceeded before segments are refused.
    pub interval: Duration,
}

/// What the queue manager says about a segment offered now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The queue is within its target.
    Below,
    /// The queue has stood above its target: `drop` says whether this
    /// segment is refused.
    Backlogged {
        /// Refuse this segment.
        drop: bool,
    },
}

/// CoDel-like state: when the queue went above target, and the drops since.
#[derive(Clone, Debug)]
pub(crate) struct QueueManager {
    dropping_since: Option<Timestamp>,
    drops: u32,
    next_drop: Timestamp,
}

impl QueueManager {
    pub(crate) fn new(now: Timestamp) -> Self {
        QueueManager {
            dropping_since: None,
            drops: 0,
            next_drop: now,
        }
    }

    /// A segment is offered while the oldest queued one has waited
    /// `head_age`; above `target` for an interval, segments are refused at
    /// a rate growing with the square root of the drop count.
    pub(crate) fn on_offer(
        &mut self,
        now: Timestamp,
        head_age: Duration,
        target: Target,
    ) -> Verdict {
        if head_age <= target.delay {
            self.dropping_since = None;
            self.drops = 0;
            return Verdict::Below;
        }
        let since = *self.dropping_since.get_or_insert(now);
        if now - since < target.interval || now < self.next_drop {
            return Verdict::Backlogged { drop: false };
        }
        self.drops += 1;
        self.next_drop = now + target.interval.div_f64(f64::from(self.drops).sqrt());
        Verdict::Backlogged { drop: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn refuses_only_after_a_standing_queue_and_more_often_as_it_stays() {
        let target = Target {
            delay: Duration::from_millis(50),
            interval: Duration::from_millis(100),
        };
        let mut manager = QueueManager::new(at(0));
        assert_eq!(
            manager.on_offer(at(0), Duration::from_millis(10), target),
            Verdict::Below
        );
        let mut drops = Vec::new();
        for ms in 1..=400 {
            if manager.on_offer(at(ms), Duration::from_millis(80), target)
                == (Verdict::Backlogged { drop: true })
            {
                drops.push(ms);
            }
        }
        assert_eq!(
            drops.first(),
            Some(&101),
            "first refusal after one interval"
        );
        let gaps: Vec<u64> = drops.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2).all(|g| g[1] <= g[0]),
            "gaps shrink: {gaps:?}"
        );
        assert_eq!(
            manager.on_offer(at(401), Duration::from_millis(1), target),
            Verdict::Below
        );
    }
}
