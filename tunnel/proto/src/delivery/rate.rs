//! The rate controller: how fast the data plane may put bytes on the wire.
//!
//! BBR-like: it estimates the bottleneck rate (max-filtered rate at which
//! the path *serviced* our packets — arrived or lost after the bottleneck —
//! measured between receipts) and the minimum round-trip time, and paces at
//! a gain times that rate, probing up for one round in eight. Random loss
//! does not lower the rate. Congestion shows as queueing delay: while the
//! round trip exceeds the minimum by more than the queue-delay target, no
//! sample may raise the estimate and the sender drains.
//!
//! Two caps keep it honest: the optional configured ceiling, and an
//! anti-amplification cap — never more than the rate the peer reports
//! receiving, scaled by the redundancy the measured loss needs
//! (`arrived / (1 − loss)`, with loss capped at `max_loss`), times a small
//! headroom. A peer that overstates bandwidth still cannot make us send
//! more than what arrives times that bounded factor.

use crate::time::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

const PROBE_GAINS: [f64; 8] = [1.1, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
const STARTUP_GAIN: f64 = 2.89;
const DRAIN_GAIN: f64 = 0.5;
const CONGESTED_GAIN: f64 = 0.9;

/// Which phase the controller is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RateMode {
    /// Doubling each round until the rate stops growing.
    Startup,
    /// Draining the queue built during startup.
    Drain,
    /// Steady state: pacing at the estimate with periodic probes.
    ProbeBandwidth,
}

/// Tunables of the rate controller.
#[derive(Clone, Debug)]
pub struct RateConfig {
    /// Hard cap in bits per second, if any.
    pub ceiling_bits_per_second: Option<u64>,
    /// Rate before any measurement, bits per second.
    pub initial_bits_per_second: u64,
    /// Queueing delay above the minimum RTT treated as congestion.
    pub queue_delay_target: Duration,
    /// Highest loss fraction the anti-amplification cap honours (already
    /// within 0..0.99: [`DataPlaneConfig::loss_cap`](super::DataPlaneConfig)).
    pub max_loss: f64,
}

/// One completed measurement delivered by a receipt.
#[derive(Clone, Copy, Debug)]
pub struct RateSample {
    /// Round-trip time of the newest acknowledged packet (ack delay removed).
    pub rtt: Duration,
    /// Bytes per second the path serviced over the sample interval.
    pub serviced_bytes_per_second: Option<f64>,
    /// Whether the sender was short of data when the packet left.
    pub app_limited: bool,
    /// The newest acknowledged packet number.
    pub acked_packet: u64,
    /// The next packet number the sender will use.
    pub next_packet: u64,
    /// Bytes in flight after this receipt.
    pub bytes_in_flight: u64,
}

/// A BBR-like estimator of bottleneck rate and minimum RTT.
#[derive(Clone, Debug)]
pub struct RateController {
    config: RateConfig,
    mode: RateMode,
    bandwidth_samples: VecDeque<(Timestamp, f64)>,
    bottleneck: f64,
    min_rtt: Option<Duration>,
    min_rtt_at: Timestamp,
    smoothed_rtt: Option<Duration>,
    latest_rtt: Duration,
    /// When a send backlog last sent the controller back to start-up.
    last_backlog_restart: Option<Timestamp>,
    full_bandwidth: f64,
    rounds_without_growth: u32,
    round_end_packet: u64,
    cycle_index: usize,
    cycle_started: Timestamp,
    arrived_samples: VecDeque<(Timestamp, f64)>,
    arrived_anchor: Option<(Timestamp, u64)>,
    peer_loss: f64,
}

impl RateController {
    /// A controller starting at the configured initial rate.
    pub fn new(now: Timestamp, config: RateConfig) -> Self {
        let initial = config.initial_bits_per_second as f64 / 8.0;
        RateController {
            config,
            mode: RateMode::Startup,
            bandwidth_samples: VecDeque::new(),
            bottleneck: initial,
            min_rtt: None,
            min_rtt_at: now,
            smoothed_rtt: None,
            latest_rtt: Duration::ZERO,
            last_backlog_restart: None,
            full_bandwidth: 0.0,
            rounds_without_growth: 0,
            round_end_packet: 0,
            cycle_index: 0,
            cycle_started: now,
            arrived_samples: VecDeque::new(),
            arrived_anchor: None,
            peer_loss: 0.0,
        }
    }

    /// Minimum RTT seen in the last 10 s (100 ms before any sample).
    pub fn min_rtt(&self) -> Duration {
        self.min_rtt.unwrap_or(Duration::from_millis(100))
    }

    /// Smoothed RTT (100 ms before any sample).
    pub fn smoothed_rtt(&self) -> Duration {
        self.smoothed_rtt.unwrap_or(Duration::from_millis(100))
    }

    /// Whether any RTT sample has been taken.
    pub fn has_rtt(&self) -> bool {
        self.smoothed_rtt.is_some()
    }

    /// The bottleneck estimate, bytes per second.
    pub fn bottleneck_bytes_per_second(&self) -> f64 {
        self.bottleneck
    }

    /// The send queue backs up (the queue manager is about to refuse
    /// segments) while the path shows no standing queue and the estimate
    /// has fallen below half the configured ceiling: this side is the
    /// bottleneck, not the path (an inner TCP backed off while a delay
    /// spike read as congestion, and the estimate followed it down). Search
    /// upwards again as at start-up, at most every two seconds, instead of
    /// creeping up one probe at a time. Without a ceiling (no statement of
    /// the link's rate) the controller keeps probing as usual.
    pub fn on_send_backlog(&mut self, now: Timestamp) {
        let collapsed = self
            .config
            .ceiling_bits_per_second
            .is_some_and(|ceiling| self.bottleneck * 8.0 < ceiling as f64 * 0.5);
        let rested = self
            .last_backlog_restart
            .is_none_or(|at| now - at >= Duration::from_secs(2));
        if self.mode == RateMode::ProbeBandwidth && !self.congested() && collapsed && rested {
            self.mode = RateMode::Startup;
            self.full_bandwidth = self.bottleneck;
            self.rounds_without_growth = 0;
            self.last_backlog_restart = Some(now);
        }
    }

    /// Records the loss the peer measured on our packets (0..1).
    pub fn set_peer_loss(&mut self, loss: f64) {
        self.peer_loss = loss.clamp(0.0, 1.0);
    }

    /// Records the peer's running count of bytes received from us.
    pub fn on_peer_bytes_received(&mut self, now: Timestamp, total: u64) {
        match self.arrived_anchor {
            None => self.arrived_anchor = Some((now, total)),
            Some((at, bytes)) => {
                let elapsed = now - at;
                if elapsed >= self.min_rtt().max(Duration::from_millis(20)) / 2 && total >= bytes {
                    let rate = (total - bytes) as f64 / elapsed.as_secs_f64();
                    self.arrived_samples.push_back((now, rate));
                    self.arrived_anchor = Some((now, total));
                }
            }
        }
        let window = self.filter_window();
        while self
            .arrived_samples
            .front()
            .is_some_and(|&(t, _)| now - t > window)
        {
            self.arrived_samples.pop_front();
        }
    }

    fn filter_window(&self) -> Duration {
        (self.smoothed_rtt() * 10).max(Duration::from_secs(1))
    }

    fn queue_delay(&self) -> Duration {
        self.latest_rtt.saturating_sub(self.min_rtt())
    }

    fn congested(&self) -> bool {
        self.min_rtt.is_some() && self.queue_delay() > self.config.queue_delay_target
    }

    /// Feeds one measurement.
    pub fn on_sample(&mut self, now: Timestamp, sample: RateSample) {
        self.latest_rtt = sample.rtt;
        self.smoothed_rtt = Some(match self.smoothed_rtt {
            None => sample.rtt,
            Some(s) => (s * 7 + sample.rtt) / 8,
        });
        if self.min_rtt.is_none_or(|m| sample.rtt <= m)
            || now - self.min_rtt_at > Duration::from_secs(10)
        {
            self.min_rtt = Some(sample.rtt);
            self.min_rtt_at = now;
        }
        let congested = self.congested();
        if let Some(rate) = sample.serviced_bytes_per_second {
            // While a queue stands, samples may not raise the estimate.
            // A lower sample lowers it only when the path shows a standing
            // queue: a sender short of data (an inner TCP that backed off)
            // measures its own rate, not the path's, and random loss is not
            // congestion either.
            let raises = rate > self.bottleneck;
            let allowed = if raises {
                !congested
            } else {
                !sample.app_limited && congested
            };
            if allowed && rate.is_finite() && rate > 0.0 {
                self.bandwidth_samples.push_back((now, rate));
            }
        }
        let window = self.filter_window();
        while self
            .bandwidth_samples
            .front()
            .is_some_and(|&(t, _)| now - t > window)
        {
            self.bandwidth_samples.pop_front();
        }
        if let Some(max) = self
            .bandwidth_samples
            .iter()
            .map(|&(_, r)| r)
            .reduce(f64::max)
        {
            self.bottleneck = max;
        }
        let round_start = sample.acked_packet >= self.round_end_packet;
        if round_start {
            self.round_end_packet = sample.next_packet;
        }
        match self.mode {
            RateMode::Startup => {
                if round_start {
                    if self.bottleneck >= self.full_bandwidth * 1.25 {
                        self.full_bandwidth = self.bottleneck;
                        self.rounds_without_growth = 0;
                    } else {
                        self.rounds_without_growth += 1;
                    }
                }
                // Leave at the first sign of a standing queue: at this gain
                // the queue grows fast, and the signal is a round trip old.
                let queue_building = self.min_rtt.is_some()
                    && self.queue_delay() > self.config.queue_delay_target / 2;
                if self.rounds_without_growth >= 3 || queue_building {
                    self.mode = RateMode::Drain;
                }
            }
            RateMode::Drain => {
                if sample.bytes_in_flight <= self.bdp()
                    || self.queue_delay() < Duration::from_millis(3)
                {
                    self.mode = RateMode::ProbeBandwidth;
                    self.cycle_index = 2;
                    self.cycle_started = now;
                }
            }
            RateMode::ProbeBandwidth => {
                if now - self.cycle_started >= self.min_rtt() {
                    self.cycle_index = (self.cycle_index + 1) % PROBE_GAINS.len();
                    self.cycle_started = now;
                }
            }
        }
    }

    fn bdp(&self) -> u64 {
        (self.bottleneck * self.min_rtt().as_secs_f64()) as u64
    }

    fn gain(&self) -> f64 {
        match self.mode {
            RateMode::Startup => STARTUP_GAIN,
            RateMode::Drain => DRAIN_GAIN,
            RateMode::ProbeBandwidth if self.congested() => CONGESTED_GAIN,
            RateMode::ProbeBandwidth => {
                let gain = PROBE_GAINS[self.cycle_index];
                // Cruising with a queue of half the target: the estimate
                // runs a little high (noisy samples through a max filter);
                // shave it so the queue drains instead of standing.
                if gain == 1.0 && self.queue_delay() > self.config.queue_delay_target / 2 {
                    0.97
                } else {
                    gain
                }
            }
        }
    }

    /// The anti-amplification cap in bytes per second, if measured.
    pub fn amplification_cap(&self) -> Option<f64> {
        let arrived = self
            .arrived_samples
            .iter()
            .map(|&(_, r)| r)
            .reduce(f64::max)?;
        let loss = self.peer_loss.min(self.config.max_loss);
        Some(arrived / (1.0 - loss) * 1.5)
    }

    /// Current pacing rate in bytes per second.
    pub fn pacing_bytes_per_second(&self) -> f64 {
        let mut rate = self.gain() * self.bottleneck;
        if let Some(cap) = self.amplification_cap() {
            // Never below the initial rate, so a quiet peer cannot stall us.
            rate = rate.min(cap.max(self.config.initial_bits_per_second as f64 / 8.0));
        }
        if let Some(ceiling) = self.config.ceiling_bits_per_second {
            rate = rate.min(ceiling as f64 / 8.0);
        }
        rate.max(1000.0)
    }

    /// Most bytes allowed in flight (not yet known arrived or lost).
    pub fn congestion_window(&self, packet_size: usize) -> u64 {
        let gain = if self.mode == RateMode::Startup {
            3.0
        } else {
            2.0
        };
        // Allow for receipts arriving late or rarely (loss on the way back).
        let bdp = self.pacing_bytes_per_second().max(self.bottleneck)
            * (self.min_rtt() + Duration::from_millis(20)).as_secs_f64();
        (gain * bdp) as u64 + 16 * packet_size as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RateConfig {
        RateConfig {
            ceiling_bits_per_second: None,
            initial_bits_per_second: 1_000_000,
            queue_delay_target: Duration::from_millis(10),
            max_loss: 0.95,
        }
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    fn sample(rate: f64, packet: u64) -> RateSample {
        RateSample {
            rtt: Duration::from_millis(100),
            serviced_bytes_per_second: Some(rate),
            app_limited: false,
            acked_packet: packet,
            next_packet: packet + 10,
            bytes_in_flight: 0,
        }
    }

    #[test]
    fn random_loss_does_not_lower_the_rate() {
        let mut rate = RateController::new(at(0), config());
        for i in 0..50 {
            rate.on_sample(at(i * 100), sample(2_500_000.0, i * 10));
            rate.set_peer_loss(0.3);
            rate.on_peer_bytes_received(at(i * 100), i * 175_000);
        }
        assert!(rate.bottleneck_bytes_per_second() >= 2_400_000.0);
        assert!(rate.pacing_bytes_per_second() >= 2_000_000.0);
    }

    #[test]
    fn a_peer_overstating_its_bandwidth_cannot_make_us_amplify() {
        let mut rate = RateController::new(at(0), config());
        // The peer acknowledges as if 100 MB/s went through, but reports
        // receiving only 100 kB/s with no loss.
        for i in 0..50 {
            rate.on_sample(at(i * 100), sample(100_000_000.0, i * 10));
            rate.set_peer_loss(0.0);
            rate.on_peer_bytes_received(at(i * 100), i * 10_000);
        }
        // At most 1.5 × what arrives (100 kB/s), not the claimed 100 MB/s.
        assert!(rate.pacing_bytes_per_second() <= 150_000.0 * 1.01);
    }

    #[test]
    fn the_ceiling_holds() {
        let mut rate = RateController::new(
            at(0),
            RateConfig {
                ceiling_bits_per_second: Some(8_000_000),
                ..config()
            },
        );
        for i in 0..50 {
            rate.on_sample(at(i * 100), sample(10_000_000.0, i * 10));
            rate.on_peer_bytes_received(at(i * 100), i * 1_000_000);
        }
        assert!(rate.pacing_bytes_per_second() <= 1_000_000.0);
    }
}
