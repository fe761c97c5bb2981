//! A compact histogram of durations with about 6 % resolution (log-linear
//! buckets over microseconds, 16 per power of two), for the added-delay
//! percentiles a data plane reports.

use std::time::Duration;

/// Sub-buckets per power of two.
const SUB_BUCKETS: u64 = 16;
/// Values below this many microseconds get a bucket each.
const LINEAR_BELOW: u64 = 2 * SUB_BUCKETS;
/// Buckets: exact below 32 µs, then 16 per doubling up to 2^40 µs (12 days).
const BUCKETS: usize = (LINEAR_BELOW + (40 - 5) * SUB_BUCKETS) as usize;

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR_BELOW {
        return micros as usize;
    }
    let exponent = 63 - u64::from(micros.leading_zeros()); // >= 5
    let mantissa = (micros >> (exponent - 4)) & (SUB_BUCKETS - 1);
    let index = LINEAR_BELOW + (exponent - 5) * SUB_BUCKETS + mantissa;
    (index as usize).min(BUCKETS - 1)
}

/// The largest value that falls in `bucket` (an upper bound).
fn bucket_upper(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR_BELOW {
        return bucket;
    }
    let exponent = (bucket - LINEAR_BELOW) / SUB_BUCKETS + 5;
    let mantissa = (bucket - LINEAR_BELOW) % SUB_BUCKETS;
    ((SUB_BUCKETS + mantissa + 1) << (exponent - 4)) - 1
}

/// Counts of durations in log-linear buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DelayHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl DelayHistogram {
    /// Records one duration.
    pub fn record(&mut self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket; zero
    /// when nothing was recorded.
    pub fn percentile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Duration::from_micros(bucket_upper(bucket));
            }
        }
        Duration::from_micros(bucket_upper(BUCKETS - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut histogram = DelayHistogram::default();
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        let p50 = histogram.percentile(0.5).as_secs_f64() * 1e3;
        let p99 = histogram.percentile(0.99).as_secs_f64() * 1e3;
        assert!((50.0..53.5).contains(&p50), "{p50}");
        assert!((99.0..106.0).contains(&p99), "{p99}");
        assert_eq!(DelayHistogram::default().percentile(0.5), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn a_value_lies_within_its_bucket(micros in any::<u64>()) {
            let bucket = bucket_of(micros);
            prop_assert!(bucket < BUCKETS);
            if bucket < BUCKETS - 1 {
                prop_assert!(micros <= bucket_upper(bucket));
                prop_assert!(bucket == 0 || micros > bucket_upper(bucket - 1));
                // Resolution: the bucket is at most 1/16 of its value wide.
                prop_assert!(bucket_upper(bucket) - micros <= micros / 16 + 1);
            }
        }
    }
}
