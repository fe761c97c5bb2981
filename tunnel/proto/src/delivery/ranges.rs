//! A set of `u64` numbers kept as disjoint half-open ranges: the shape of
//! receipts (a cumulative point plus ranges) and of delivery records.

use std::collections::BTreeMap;
use std::ops::Range;

/// A set of `u64` stored as disjoint, non-adjacent half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    /// start → end (exclusive).
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: u64) -> bool {
        self.ranges
            .range(..=value)
            .next_back()
            .is_some_and(|(_, &end)| value < end)
    }

    /// Adds one number; returns whether it was new.
    pub fn insert(&mut self, value: u64) -> bool {
        if self.contains(value) {
            return false;
        }
        self.insert_range(value..value.saturating_add(1));
        true
    }

    /// Adds every number of `range`.
    pub fn insert_range(&mut self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        let mut start = range.start;
        let mut end = range.end;
        // Merge with a range that starts before and reaches `start`.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        // Merge with every range that starts inside [start, end].
        let overlapping: Vec<u64> = self.ranges.range(start..=end).map(|(&s, _)| s).collect();
        for s in overlapping {
            if let Some(e) = self.ranges.remove(&s) {
                end = end.max(e);
            }
        }
        self.ranges.insert(start, end);
    }

    /// Removes every number below `point`.
    pub fn remove_below(&mut self, point: u64) {
        let below: Vec<(u64, u64)> = self.ranges.range(..point).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in below {
            self.ranges.remove(&s);
            if e > point {
                self.ranges.insert(point, e);
            }
        }
    }

    /// How many numbers of `range` are in the set.
    pub fn count_within(&self, range: std::ops::Range<u64>) -> u64 {
        self.iter_from(range.start)
            .take_while(|r| r.start < range.end)
            .map(|r| {
                r.end
                    .min(range.end)
                    .saturating_sub(r.start.max(range.start))
            })
            .sum()
    }

    /// The ranges, lowest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }

    /// The ranges that intersect `[from, u64::MAX)`, clipped to it.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = Range<u64>> + '_ {
        let first = self
            .ranges
            .range(..from)
            .next_back()
            .filter(|(_, &e)| e > from)
            .map(|(_, &e)| from..e);
        first
            .into_iter()
            .chain(self.ranges.range(from..).map(|(&s, &e)| s..e))
    }

    /// The end of the range that starts at or covers `point`, if `point` is
    /// in the set; otherwise `point` itself. With `point` the lowest number
    /// not yet known, this advances a cumulative point.
    pub fn contiguous_end_from(&self, point: u64) -> u64 {
        match self.ranges.range(..=point).next_back() {
            Some((_, &e)) if e > point => e,
            _ => point,
        }
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// One past the highest number in the set, or 0 when empty.
    pub fn end(&self) -> u64 {
        self.ranges.iter().next_back().map_or(0, |(_, &e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((0u64..200, 1u64..10), 0..100), cut in 0u64..220) {
            let mut set = RangeSet::new();
            let mut model = BTreeSet::new();
            for (start, len) in ops {
                set.insert_range(start..start + len);
                model.extend(start..start + len);
            }
            for v in 0..220 {
                prop_assert_eq!(set.contains(v), model.contains(&v));
            }
            prop_assert_eq!(set.len(), model.len() as u64);
            let mut previous_end = None;
            for r in set.iter() {
                prop_assert!(r.start < r.end);
                if let Some(e) = previous_end { prop_assert!(r.start > e); }
                previous_end = Some(r.end);
            }
            let from: Vec<u64> = set.iter_from(cut).flatten().collect();
            let expected: Vec<u64> = model.range(cut..).copied().collect();
            prop_assert_eq!(from, expected);
            set.remove_below(cut);
            for v in 0..220 {
                prop_assert_eq!(set.contains(v), v >= cut && model.contains(&v));
            }
        }
    }
}
