//! Round-trip time estimation and the retransmission timeout, as Linux
//! computes them (`tcp_rtt_estimator`, `tcp_set_rto` in
//! `net/ipv4/tcp_input.c`): RFC 6298's smoothed RTT and mean deviation
//! with Linux's refinements — the deviation term never drops below the
//! minimum RTO within a window, so RTO ≈ SRTT + max(4 × RTTVAR, 200 ms);
//! the first sample gives RTO = 3 × RTT (but at least SRTT + 200 ms).
//! Exponential backoff doubles the RTO per timeout until a valid sample.

use std::time::Duration;

/// Microseconds.
pub(crate) type Micros = u64;

/// The estimator of one sender.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    /// Smoothed RTT × 8 (0: no sample yet).
    srtt8: u64,
    /// Mean deviation × 4.
    mdev: u64,
    /// Largest `mdev` in the current window.
    mdev_max: u64,
    /// The deviation term of the RTO.
    rttvar: u64,
    /// End of the window over which `mdev_max` is taken.
    rtt_seq: u64,
    min_rtt: Option<Micros>,
    rto: Micros,
    rto_min: Micros,
    rto_max: Micros,
    /// Timeouts since the last valid sample.
    pub(crate) backoff: u32,
}

impl RttEstimator {
    pub(crate) fn new(initial_rto: Duration, rto_min: Duration, rto_max: Duration) -> Self {
        RttEstimator {
            srtt8: 0,
            mdev: 0,
            mdev_max: 0,
            rttvar: 0,
            rtt_seq: 0,
            min_rtt: None,
            rto: initial_rto.as_micros() as Micros,
            rto_min: rto_min.as_micros() as Micros,
            rto_max: rto_max.as_micros() as Micros,
            backoff: 0,
        }
    }

    /// Smoothed RTT (0 before any sample).
    pub(crate) fn srtt(&self) -> Micros {
        self.srtt8 >> 3
    }

    /// Whether a sample was taken.
    pub(crate) fn has_sample(&self) -> bool {
        self.srtt8 != 0
    }

    /// Lowest RTT seen (Linux keeps a 5-minute windowed minimum; flows here
    /// are shorter).
    pub(crate) fn min_rtt(&self) -> Option<Micros> {
        self.min_rtt
    }

    /// The current retransmission timeout, backoff included.
    pub(crate) fn rto(&self) -> Micros {
        self.rto
    }

    /// Feeds the congestion-control RTT sample to the minimum filter.
    /// `maybe_delayed` samples above the minimum are skipped, as Linux
    /// skips samples that probably waited for a delayed ACK.
    pub(crate) fn update_min(&mut self, sample: Micros, maybe_delayed: bool) {
        let sample = sample.max(1);
        match self.min_rtt {
            Some(min) if maybe_delayed && sample > min => {}
            Some(min) if min <= sample => {}
            _ => self.min_rtt = Some(sample),
        }
    }

    /// A valid RTT sample `m` (ACK timing or timestamp echo). `snd_una` and
    /// `snd_nxt` delimit the window over which the deviation peak is kept.
    /// Recomputes the RTO and resets the backoff.
    pub(crate) fn sample(&mut self, m: Micros, snd_una: u64, snd_nxt: u64) {
        let m = m.max(1) as i64;
        if self.srtt8 != 0 {
            let mut err = m - (self.srtt8 >> 3) as i64;
            let srtt8 = self.srtt8 as i64 + err;
            if err < 0 {
                err = -err - (self.mdev >> 2) as i64;
                if err > 0 {
                    err >>= 3;
                }
            } else {
                err -= (self.mdev >> 2) as i64;
            }
            self.mdev = (self.mdev as i64 + err).max(0) as u64;
            if self.mdev > self.mdev_max {
                self.mdev_max = self.mdev;
                if self.mdev_max > self.rttvar {
                    self.rttvar = self.mdev_max;
                }
            }
            if snd_una > self.rtt_seq {
                if self.mdev_max < self.rttvar {
                    self.rttvar -= (self.rttvar - self.mdev_max) >> 2;
                }
                self.rtt_seq = snd_nxt;
                self.mdev_max = self.rto_min;
            }
            self.srtt8 = srtt8.max(1) as u64;
        } else {
            self.srtt8 = (m as u64) << 3;
            self.mdev = (m as u64) << 1;
            self.rttvar = self.mdev.max(self.rto_min);
            self.mdev_max = self.rttvar;
            self.rtt_seq = snd_nxt;
        }
        self.rto = (self.srtt() + self.rttvar).min(self.rto_max);
        self.backoff = 0;
    }

    /// A retransmission timeout fired: double the RTO.
    pub(crate) fn back_off(&mut self) {
        self.backoff += 1;
        self.rto = (self.rto * 2).min(self.rto_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimator() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(120),
        )
    }

    #[test]
    fn first_sample_gives_three_rtts_or_srtt_plus_min_rto() {
        let mut e = estimator();
        e.sample(100_000, 0, 10);
        assert_eq!(e.srtt(), 100_000);
        assert_eq!(e.rto(), 300_000);
        let mut e = estimator();
        e.sample(20_000, 0, 10);
        assert_eq!(e.rto(), 220_000);
    }

    #[test]
    fn steady_rtt_converges_to_srtt_plus_min_rto() {
        let mut e = estimator();
        for i in 0..200u64 {
            e.sample(100_000, i * 10, i * 10 + 10);
        }
        assert!((e.srtt() as i64 - 100_000).abs() < 1000);
        assert!(e.rto() >= 300_000 && e.rto() < 310_000, "{}", e.rto());
    }

    #[test]
    fn backoff_doubles_until_a_sample() {
        let mut e = estimator();
        e.sample(100_000, 0, 10);
        e.back_off();
        e.back_off();
        assert_eq!(e.rto(), 1_200_000);
        assert_eq!(e.backoff, 2);
        e.sample(100_000, 20, 30);
        assert_eq!(e.backoff, 0);
        assert!(e.rto() < 400_000);
    }
}
