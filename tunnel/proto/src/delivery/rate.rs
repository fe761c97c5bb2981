//! The rate controller: how fast the data plane may put bytes on the wire,
//! with no rate configured.
//!
//! BBR-like: it estimates the bottleneck rate — the max-filtered rate at
//! which the path *serviced* our packets (arrived, or lost after the
//! bottleneck), measured between receipts — and the minimum round-trip
//! time, and paces at a gain times that rate.
//!
//! - **Start-up** doubles the rate each round (gain 2.89) while the
//!   estimate keeps growing by a quarter per round, and drains whatever the
//!   sender has queued within a quarter round trip; rounds in which the
//!   sender was short of data (an inner TCP still in slow start) do not
//!   count against growth, so a slowly opening TCP is never mistaken for
//!   the path's limit. It ends when a queue starts to build, or after three
//!   backlogged rounds without growth; its samples are then capped by what
//!   arrived (a long path overshoots by several times before the queue
//!   shows), and a short drain follows.
//! - **Probing**: one round in eight at 1.25, one at 0.75 (only if there is
//!   a queue to drain), the rest at 1.
//!   When the send queue backs up while the path shows no queue (demand
//!   above the estimate), a probe up runs: 1.25 for a round, and while the
//!   estimate follows, half as much again each round (up to the start-up
//!   gain); at capacity it costs one round at 1.25. A probe that found no
//!   more bandwidth makes the next wait twice as long (1 s to 16 s).
//! - **Random loss is not congestion**: loss never lowers the rate.
//!   Congestion shows as queueing delay: while the round trip exceeds the
//!   minimum by more than the queue-delay target, no sample may raise the
//!   estimate, a backlogged sample may lower it, and pacing runs at 0.9.
//! - **What arrives bounds the estimate under congestion**: while a queue
//!   stands, a serviced-rate sample is capped by what the peer reports
//!   receiving, divided by the loss measured while the path showed no
//!   queue (random loss), with a tenth of headroom (more in start-up).
//!   A sender far above the path (an initial rate or ceiling too high)
//!   overflows a queue, and the serviced rate counts what the queue
//!   dropped; what arrives does not.
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

const PROBE_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
const STARTUP_GAIN: f64 = 2.89;
const DRAIN_GAIN: f64 = 0.5;
const CONGESTED_GAIN: f64 = 0.9;
/// First gain of a probe up; each round that finds more multiplies it by
/// [`PROBE_UP_GROWTH`], up to the start-up gain.
const PROBE_UP_GAIN: f64 = 1.25;
const PROBE_UP_GROWTH: f64 = 1.5;
/// Shortest and longest look-back of the queueing-delay signal.
const RECENT_RTT_MIN: Duration = Duration::from_millis(10);
const RECENT_RTT_MAX: Duration = Duration::from_millis(50);
/// How long the minimum round trip is remembered.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Shortest and longest wait between backlog-driven searches.
const SEARCH_REST_MIN: Duration = Duration::from_secs(1);
const SEARCH_REST_MAX: Duration = Duration::from_secs(16);
/// Least time a queue must stand before it counts as another flow's.
const CONTENDED_AFTER: Duration = Duration::from_secs(1);
/// Loss above the random loss that, in a contended queue, is overflow.
const CONTENDED_LOSS_MARGIN: f64 = 0.005;
/// How far the rate backs off at a contended queue's overflow (cubic's).
const CONTENDED_BACKOFF: f64 = 0.5;
/// What a contended rate gains per round trip each round trip: a
/// datagram, as a TCP window's additive increase.
const CONTENDED_STEP_BYTES: f64 = 1300.0;

/// How long the best arrival rate of a sender that filled the path keeps
/// the anti-amplification cap up ([`RateController::amplification_cap`]).
const AMPLIFICATION_WINDOW: Duration = Duration::from_secs(10);

/// Shortest and longest look-back of the bounds on random loss
/// ([`RateController::set_peer_loss`]): four round trips within them.
const LOSS_REPORT_WINDOW_MIN: Duration = Duration::from_secs(1);
const LOSS_REPORT_WINDOW_MAX: Duration = Duration::from_secs(4);

/// Loss above the random loss by this much (and by half the random loss)
/// is the bottleneck's queue overflowing: we send above the path's rate.
const OVERFLOW_LOSS_MARGIN: f64 = 0.02;

/// Sharing a queue that another flow holds.
#[derive(Clone, Copy, Debug)]
struct Contended {
    /// Pacing rate, bytes per second.
    rate: f64,
    /// When the rate last grew.
    updated: Timestamp,
    /// When overflow last cut it.
    last_cut: Option<Timestamp>,
}

impl Contended {
    /// Backs off for an overflow, once per one and a half round trips
    /// (one overflow shows for a round trip).
    fn cut(&mut self, now: Timestamp, rtt: Duration) {
        if self.last_cut.is_none_or(|at| now - at > rtt * 3 / 2) {
            self.last_cut = Some(now);
            self.rate *= CONTENDED_BACKOFF;
        }
    }
}

/// Which phase the controller is in.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RateMode {
    /// Doubling each round until the rate stops growing.
    Startup,
    /// Draining the queue built during startup.
    Drain,
    /// Steady state: pacing at the estimate with periodic probes.
    ProbeBandwidth,
    /// Demand is above the estimate: probing up at a gain that grows each
    /// round while the estimate follows.
    ProbeUp {
        /// This round's gain.
        gain: f64,
        /// The estimate when the round began.
        start: f64,
    },
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

/// The minimum over a sliding time window (a monotonic deque).
#[derive(Clone, Debug)]
struct WindowedMin<T = Duration> {
    samples: VecDeque<(Timestamp, T)>,
}

impl<T> Default for WindowedMin<T> {
    fn default() -> Self {
        WindowedMin {
            samples: VecDeque::new(),
        }
    }
}

impl<T: PartialOrd + Copy> WindowedMin<T> {
    fn push(&mut self, now: Timestamp, value: T, window: Duration) {
        while self.samples.back().is_some_and(|&(_, v)| v >= value) {
            self.samples.pop_back();
        }
        self.samples.push_back((now, value));
        self.expire(now, window);
    }

    /// Forgets the samples older than `window`.
    fn expire(&mut self, now: Timestamp, window: Duration) {
        while self.samples.front().is_some_and(|&(t, _)| now - t > window) {
            self.samples.pop_front();
        }
    }

    fn get(&self) -> Option<T> {
        self.samples.front().map(|&(_, v)| v)
    }
}

/// Maximum of timed samples over a window.
fn windowed_max(
    samples: &mut VecDeque<(Timestamp, f64)>,
    now: Timestamp,
    window: Duration,
) -> Option<f64> {
    while samples.front().is_some_and(|&(t, _)| now - t > window) {
        samples.pop_front();
    }
    samples.iter().map(|&(_, r)| r).reduce(f64::max)
}

/// The maximum rate over a sliding time window, read in constant time: a
/// [`WindowedMin`] of the negated rates. (The arrival rate is read for
/// every packet sent; a scan of ten seconds of samples cost a thousand
/// comparisons each time.)
#[derive(Clone, Debug, Default)]
struct WindowedMaxRate(WindowedMin<f64>);

impl WindowedMaxRate {
    fn push(&mut self, now: Timestamp, rate: f64, window: Duration) {
        self.0.push(now, -rate, window);
    }

    fn expire(&mut self, now: Timestamp, window: Duration) {
        self.0.expire(now, window);
    }

    fn get(&self) -> Option<f64> {
        self.0.get().map(|negated| -negated)
    }
}

/// A BBR-like estimator of bottleneck rate and minimum RTT.
#[derive(Clone, Debug)]
pub struct RateController {
    config: RateConfig,
    mode: RateMode,
    bandwidth_samples: VecDeque<(Timestamp, f64)>,
    bottleneck: f64,
    min_rtt: WindowedMin,
    smoothed_rtt: Option<Duration>,
    /// The least round trip of the last few samples
    /// ([`RateController::recent_window`]): what a queue shows in, as a
    /// single sample's jitter does not.
    recent_rtt: WindowedMin,
    full_bandwidth: f64,
    rounds_without_growth: u32,
    round_end_packet: u64,
    /// Some sample of the current round came from a backlogged sender.
    round_backlogged: bool,
    cycle_index: usize,
    cycle_started: Timestamp,
    arrived_samples: WindowedMaxRate,
    /// The arrival samples taken while the sender filled the path (a
    /// backlogged sample reached the estimate within two round trips),
    /// over [`AMPLIFICATION_WINDOW`]: they keep the anti-amplification cap
    /// up through a pause.
    arrived_filled_samples: WindowedMaxRate,
    arrived_anchor: Option<(Timestamp, u64)>,
    peer_loss: f64,
    /// Loss reported while the path showed no queue: random loss.
    clean_loss: Option<f64>,
    /// The least and (negated) the most loss the peer reported over the
    /// last [`LOSS_REPORT_WINDOW_MIN`]..=[`LOSS_REPORT_WINDOW_MAX`]: random
    /// loss lies below every report (overflow only adds to it), so
    /// `clean_loss` is kept between them, which corrects it where the path
    /// never shows itself free of a queue (a ceiling at the link's rate).
    reported_loss_low: WindowedMin<f64>,
    reported_loss_high: WindowedMin<f64>,
    /// When loss reports began to come without a pause longer than the
    /// window, and when the last came.
    loss_reports_since: Option<(Timestamp, Timestamp)>,
    /// When a round trip last showed a queue (above half the target).
    queue_seen_at: Option<Timestamp>,
    /// Since when the queue has stood without a break (above half the
    /// target on every sample) and without shrinking, and how deep it was
    /// then.
    queue_since: Option<(Timestamp, Duration)>,
    /// The queue has stood longer than our own could have: another flow
    /// holds it (a loss-based TCP fills any buffer), and yielding to it
    /// would only hand it the link. Then the rate follows TCP's rule.
    contended: Option<Contended>,
    /// When a report last showed overflow (the estimate is bounded by what
    /// arrived for two round trips after).
    overflow_cut_at: Option<Timestamp>,
    /// When a backlogged sample last reached the estimate (the sender
    /// pushed the path, not an application's demand).
    pushed_at: Option<Timestamp>,
    /// When a backlog last sent the controller searching, and the estimate
    /// then.
    last_search: Option<(Timestamp, f64)>,
    /// Wait before the next backlog-driven search.
    search_rest: Duration,
    /// Bytes waiting in the sender's queue.
    backlog: usize,
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
            min_rtt: WindowedMin::default(),
            smoothed_rtt: None,
            recent_rtt: WindowedMin::default(),
            full_bandwidth: 0.0,
            rounds_without_growth: 0,
            round_end_packet: 0,
            round_backlogged: false,
            cycle_index: 0,
            cycle_started: now,
            arrived_samples: WindowedMaxRate::default(),
            arrived_filled_samples: WindowedMaxRate::default(),
            arrived_anchor: None,
            peer_loss: 0.0,
            clean_loss: None,
            reported_loss_low: WindowedMin::default(),
            reported_loss_high: WindowedMin::default(),
            loss_reports_since: None,
            queue_seen_at: None,
            queue_since: None,
            contended: None,
            overflow_cut_at: None,
            pushed_at: None,
            last_search: None,
            search_rest: SEARCH_REST_MIN,
            backlog: 0,
        }
    }

    /// Minimum RTT seen in the last 10 s (100 ms before any sample).
    pub fn min_rtt(&self) -> Duration {
        self.min_rtt.get().unwrap_or(Duration::from_millis(100))
    }

    /// Minimum RTT seen in the last 10 s, once there is a sample.
    pub fn measured_min_rtt(&self) -> Option<Duration> {
        self.min_rtt.get()
    }

    /// Smoothed RTT (100 ms before any sample).
    pub fn smoothed_rtt(&self) -> Duration {
        self.smoothed_rtt.unwrap_or(Duration::from_millis(100))
    }

    /// The bottleneck estimate, bytes per second.
    pub fn bottleneck_bytes_per_second(&self) -> f64 {
        self.bottleneck
    }

    /// The send queue backs up (segments wait longer than the queue
    /// manager's target) while the path shows no standing queue: demand is
    /// above the estimate, which may be low (an inner TCP that backed off
    /// measured itself, not the path). Search upwards again as at
    /// start-up, at most once per rest interval; a search that found no
    /// more bandwidth doubles the interval.
    pub fn on_send_backlog(&mut self, now: Timestamp) {
        if self.mode != RateMode::ProbeBandwidth || self.congested() || self.contended.is_some() {
            return;
        }
        if let Some((at, bandwidth)) = self.last_search {
            if now - at < self.search_rest {
                return;
            }
            self.search_rest = if self.bottleneck < bandwidth * 1.1 {
                (self.search_rest * 2).min(SEARCH_REST_MAX)
            } else {
                SEARCH_REST_MIN
            };
        }
        self.mode = RateMode::ProbeUp {
            gain: PROBE_UP_GAIN,
            start: self.bottleneck,
        };
        self.last_search = Some((now, self.bottleneck));
    }

    /// Records how many bytes wait in the sender's queue. In start-up, with
    /// no evidence yet of the path's limit, pacing drains them within a
    /// quarter of the minimum round trip (an inner TCP in slow start is not
    /// held back by a rate it has not outgrown yet), still within the
    /// anti-amplification cap.
    pub fn set_backlog(&mut self, queued_bytes: usize) {
        self.backlog = queued_bytes;
    }

    /// Records the loss the peer measured on our packets (0..1). It counts
    /// as random loss only when the packets it covers met no queue: none
    /// seen for two round trips (the peer measures over a window of
    /// packets sent a round trip ago, so an overflow shows in its reports
    /// after the queue itself has drained).
    pub fn set_peer_loss(&mut self, now: Timestamp, loss: f64) {
        self.peer_loss = loss.clamp(0.0, 1.0);
        self.on_contended_loss(now);
        // Overflow while we push the path is not its random loss.
        let overflow = self.on_overflow_loss(now);
        let quiet = !overflow
            && self
                .queue_seen_at
                .is_none_or(|at| now - at > self.smoothed_rtt() * 2);
        if self.min_rtt.get().is_some() && quiet {
            let clean = self.clean_loss.get_or_insert(self.peer_loss);
            *clean += (self.peer_loss - *clean) / 8.0;
        }
        let window =
            (self.smoothed_rtt() * 4).clamp(LOSS_REPORT_WINDOW_MIN, LOSS_REPORT_WINDOW_MAX);
        self.reported_loss_low.push(now, self.peer_loss, window);
        self.reported_loss_high.push(now, -self.peer_loss, window);
        // Bounds only from a full window of reports without a pause (a
        // pause starts it again): the first receipts report no loss
        // before the peer has measured any.
        let since = match self.loss_reports_since {
            Some((since, last)) if now - last <= window => since,
            _ => now,
        };
        self.loss_reports_since = Some((since, now));
        if let (true, Some(low), Some(high)) = (
            now - since >= window,
            self.reported_loss_low.get(),
            self.reported_loss_high.get(),
        ) {
            let clean = self.clean_loss.get_or_insert(low);
            *clean = clean.clamp(low, -high);
        }
    }

    /// Records the peer's running count of bytes received from us.
    pub fn on_peer_bytes_received(&mut self, now: Timestamp, total: u64) {
        match self.arrived_anchor {
            None => self.arrived_anchor = Some((now, total)),
            Some((at, bytes)) => {
                let elapsed = now - at;
                if elapsed >= self.min_rtt().max(Duration::from_millis(20)) / 2 && total >= bytes {
                    let rate = (total - bytes) as f64 / elapsed.as_secs_f64();
                    self.arrived_samples.push(now, rate, self.filter_window());
                    let filled = self
                        .pushed_at
                        .is_some_and(|at| now - at <= self.smoothed_rtt() * 2);
                    if filled {
                        self.arrived_filled_samples
                            .push(now, rate, AMPLIFICATION_WINDOW);
                    }
                    self.arrived_anchor = Some((now, total));
                }
            }
        }
        let window = self.filter_window();
        self.arrived_samples.expire(now, window);
        self.arrived_filled_samples
            .expire(now, AMPLIFICATION_WINDOW);
    }

    /// Loss well above the random loss while the queue is ours: the path's
    /// buffer overflows because we send above its rate (a shallow buffer
    /// overflows before any queueing delay shows, and delivery-rate
    /// samples then count what it dropped). The estimate falls to what
    /// arrived, and a search stops. Returns
    /// whether the report was such overflow.
    fn on_overflow_loss(&mut self, now: Timestamp) -> bool {
        // Only against a known random loss: before it is measured, any
        // loss could be random.
        let Some(random) = self.clean_loss else {
            return false;
        };
        if self.peer_loss <= random * 1.5 + OVERFLOW_LOSS_MARGIN
            || self.contended.is_some()
            || self.mode == RateMode::Startup
        {
            return false;
        }
        let rtt = self.smoothed_rtt();
        // An application's demand below the estimate (a TCP's window)
        // overflows nothing of the path's: what arrives is its demand,
        // and a noisy report is just noise.
        if self.pushed_at.is_none_or(|at| now - at > rtt * 2) {
            return false;
        }
        // Samples stay bounded for two round trips after each such report.
        self.overflow_cut_at = Some(now);
        let Some(arrived) = self.arrived_rate() else {
            return true;
        };
        if arrived < self.bottleneck {
            for sample in self.bandwidth_samples.iter_mut() {
                sample.1 = sample.1.min(arrived);
            }
            self.bottleneck = arrived;
            if matches!(self.mode, RateMode::ProbeUp { .. }) {
                self.end_probe(now);
            }
        }
        true
    }

    /// Sharing a queue another flow holds, loss above the random loss is
    /// the queue overflowing: back off as a TCP would, at most once per
    /// one and a half round trips (the reports lag a round trip).
    fn on_contended_loss(&mut self, now: Timestamp) {
        let random = self.clean_loss.unwrap_or(0.0);
        let overflow = self.peer_loss > random + CONTENDED_LOSS_MARGIN;
        let rtt = self.smoothed_rtt();
        if let Some(contended) = self.contended.as_mut() {
            if overflow {
                contended.cut(now, rtt);
            }
        }
    }

    /// The random loss of the path: the peer's reports while no queue
    /// stood (overflow loss excluded), if any came yet.
    pub fn random_loss(&self) -> Option<f64> {
        self.clean_loss
    }

    fn filter_window(&self) -> Duration {
        (self.smoothed_rtt() * 10).max(Duration::from_secs(1))
    }

    /// Queueing delay: the least round trip of the last few samples above
    /// the minimum. A queue delays every packet; jitter (a scheduler's
    /// hiccup at either end, a userspace hop, a receipt held back) delays
    /// some, and one such sample read as a queue ended start-up on a clean
    /// 600 ms path at a quarter of its rate.
    fn queue_delay(&self) -> Duration {
        self.recent_rtt
            .get()
            .unwrap_or_default()
            .saturating_sub(self.min_rtt())
    }

    /// How far back [`Self::queue_delay`] looks: a quarter of the minimum
    /// round trip, within 10..=50 ms (a few receipts; a queue that builds
    /// shows within it, a round trip after it began, either way).
    fn recent_window(&self) -> Duration {
        (self.min_rtt() / 4).clamp(RECENT_RTT_MIN, RECENT_RTT_MAX)
    }

    /// Follows the queue: one that outlives what pacing below the arrival
    /// rate would drain is another flow's, and the rate then grows by a
    /// datagram per round trip each round trip (as a TCP's window) until
    /// the queue overflows; when the queue drains, the estimate resumes
    /// from the rate reached.
    fn track_contention(&mut self, now: Timestamp, app_limited: bool) {
        if self.queue_delay() <= self.config.queue_delay_target / 2 {
            self.queue_since = None;
            if let Some(contended) = self.contended.take() {
                self.bandwidth_samples.clear();
                self.bandwidth_samples.push_back((now, contended.rate));
                self.bottleneck = contended.rate;
            }
            return;
        }
        self.queue_seen_at = Some(now);
        let queue = self.queue_delay();
        // A queue that shrinks is ours draining (pacing below what
        // arrives): the wait starts again from its new depth.
        let since = match self.queue_since {
            Some((since, depth)) if queue >= depth * 3 / 4 => since,
            _ => {
                self.queue_since = Some((now, queue));
                now
            }
        };
        let rtt = self.smoothed_rtt().max(Duration::from_millis(1));
        match self.contended.as_mut() {
            // Only overflow (loss) cuts the rate: the other flow fills the
            // buffer whatever we do, so its depth says nothing about us.
            Some(contended) => {
                let elapsed = (now - contended.updated).as_secs_f64();
                contended.rate += CONTENDED_STEP_BYTES * elapsed / rtt.as_secs_f64().powi(2);
                contended.updated = now;
            }
            None if !app_limited
                && self.mode == RateMode::ProbeBandwidth
                && now - since > (rtt * 4).max(CONTENDED_AFTER) =>
            {
                self.contended = Some(Contended {
                    rate: self
                        .bottleneck
                        .min(self.arrived_rate().unwrap_or(self.bottleneck)),
                    updated: now,
                    last_cut: None,
                });
            }
            None => {}
        }
    }

    /// The best recent arrival rate over the random loss: what we put
    /// through the path.
    fn arrived_rate(&self) -> Option<f64> {
        let arrived = self.arrived_samples.get()?;
        let loss = self.clean_loss.unwrap_or(0.0).min(self.config.max_loss);
        Some(arrived / (1.0 - loss))
    }

    /// Whether the path shows a queue that we should drain: one that
    /// stands above the target and is not held by another flow.
    fn congested(&self) -> bool {
        self.queue_standing() && self.contended.is_none()
    }

    fn queue_standing(&self) -> bool {
        self.min_rtt.get().is_some() && self.queue_delay() > self.config.queue_delay_target
    }

    /// The most the path can have serviced, judging by what arrived: the
    /// best recent arrival rate over the random loss, with headroom (more
    /// in start-up, where arrivals lag a doubling rate by a round).
    fn arrival_bound(&self) -> Option<f64> {
        let arrived = self.arrived_rate()?;
        let headroom = if self.mode == RateMode::Startup {
            2.5
        } else {
            1.1
        };
        Some(arrived * headroom)
    }

    /// Feeds one measurement.
    pub fn on_sample(&mut self, now: Timestamp, sample: RateSample) {
        let recent = self.recent_window();
        self.recent_rtt.push(now, sample.rtt, recent);
        self.smoothed_rtt = Some(match self.smoothed_rtt {
            None => sample.rtt,
            Some(s) => (s * 7 + sample.rtt) / 8,
        });
        self.min_rtt.push(now, sample.rtt, MIN_RTT_WINDOW);
        self.track_contention(now, sample.app_limited);
        let congested = self.congested();
        let estimate_before = self.bottleneck;
        let mut pushed = false;
        if let Some(mut rate) = sample.serviced_bytes_per_second {
            // Under a standing queue the serviced rate may count what the
            // queue dropped (we may be the ones overflowing it): what
            // arrived bounds it.
            if let (true, Some(bound)) = (self.queue_standing(), self.arrival_bound()) {
                rate = rate.min(bound);
            }
            // Just after an overflow the samples count what the buffer
            // dropped too: what arrived bounds them, with no headroom.
            let rtt = self.smoothed_rtt();
            if let (true, Some(arrived)) = (
                self.overflow_cut_at.is_some_and(|at| now - at <= rtt * 2),
                self.arrived_rate(),
            ) {
                rate = rate.min(arrived);
            }
            // While a queue stands, samples may not raise the estimate.
            // A lower sample lowers it only when the path shows a standing
            // queue and the sender was backlogged: a sender short of data
            // (an inner TCP that backed off, a sparse stream) measures its
            // own rate, not the path's, and random loss is not congestion.
            let raises = rate > self.bottleneck;
            let allowed = if raises {
                !congested
            } else {
                !sample.app_limited && congested
            };
            // A backlogged sample that kept up with the estimate: the
            // sender pushed the path (a slow-starting TCP's burst leaves a
            // moment's backlog, but delivers far below the estimate).
            pushed = !sample.app_limited && rate >= 0.9 * estimate_before;
            if allowed && rate.is_finite() && rate > 0.0 {
                self.bandwidth_samples.push_back((now, rate));
            }
        }
        let window = self.filter_window();
        if let Some(max) = windowed_max(&mut self.bandwidth_samples, now, window) {
            self.bottleneck = max;
        }
        self.round_backlogged |= pushed;
        if pushed {
            self.pushed_at = Some(now);
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
                    } else if self.round_backlogged {
                        // Only a round in which we had data to send can
                        // show that the path stopped growing.
                        self.rounds_without_growth += 1;
                    }
                    self.round_backlogged = false;
                }
                // Leave at the first sign of a standing queue: at this gain
                // the queue grows fast, and the signal is a round trip old.
                // Only a backlogged sample tells: an idle or sparse sender
                // sees jitter, not a queue it built.
                let queue_building = !sample.app_limited
                    && self.min_rtt.get().is_some()
                    && self.queue_delay() > self.config.queue_delay_target / 2;
                if self.rounds_without_growth >= 3 || queue_building {
                    self.mode = RateMode::Drain;
                }
                if queue_building {
                    self.clamp_to_arrivals();
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
            RateMode::ProbeUp { gain, start } => {
                let queue_building =
                    !sample.app_limited && self.queue_delay() > self.config.queue_delay_target / 2;
                if queue_building {
                    self.end_probe(now);
                } else if round_start {
                    self.mode = if self.bottleneck >= start * 1.1 {
                        RateMode::ProbeUp {
                            gain: (gain * PROBE_UP_GROWTH).min(STARTUP_GAIN),
                            start: self.bottleneck,
                        }
                    } else {
                        self.end_probe(now);
                        self.mode
                    };
                }
            }
            RateMode::ProbeBandwidth => {
                if round_start {
                    self.round_backlogged = false;
                }
                if now - self.cycle_started >= self.min_rtt() {
                    self.cycle_index = (self.cycle_index + 1) % PROBE_GAINS.len();
                    self.cycle_started = now;
                }
            }
        }
    }

    /// Leaving start-up: its samples may count what an overflowing queue
    /// dropped (the congestion signal is a round trip old, and the rate
    /// doubled meanwhile; on a long path that is several times the link).
    /// What arrived bounds them, now with the cruising headroom.
    fn clamp_to_arrivals(&mut self) {
        if let Some(bound) = self.arrival_bound() {
            for (_, rate) in self.bandwidth_samples.iter_mut() {
                *rate = rate.min(bound);
            }
            self.bottleneck = self.bottleneck.min(bound);
        }
    }

    /// Back to cruising, through the drain phase (which runs only if the
    /// probe left a queue).
    fn end_probe(&mut self, now: Timestamp) {
        self.mode = RateMode::ProbeBandwidth;
        self.cycle_index = 1;
        self.cycle_started = now;
    }

    fn bdp(&self) -> u64 {
        (self.bottleneck * self.min_rtt().as_secs_f64()) as u64
    }

    fn gain(&self) -> f64 {
        match self.mode {
            RateMode::Startup => STARTUP_GAIN,
            RateMode::Drain => DRAIN_GAIN,
            RateMode::ProbeUp { gain, .. } => gain,
            RateMode::ProbeBandwidth if self.congested() => CONGESTED_GAIN,
            RateMode::ProbeBandwidth => {
                let mut gain = PROBE_GAINS[self.cycle_index];
                // The down phase drains what the up phase queued; with no
                // queue to drain (the probe was capped, or found room) it
                // would only waste the link.
                if gain < 1.0 && self.queue_delay() < Duration::from_millis(2) {
                    gain = 1.0;
                }
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
    ///
    /// It scales the best recent arrival rate, or the best of the last
    /// [`AMPLIFICATION_WINDOW`] taken while the sender filled the path if
    /// that is higher: after a pause (between two transfers on a
    /// long-lived session) what arrives is the trickle the sender had, and
    /// a cap on that alone would make the next connection's slow start
    /// find room growing by half a window per round trip, its first
    /// windows queued and refused. Only a filled path vouches for its rate
    /// that long: a sender short of data measures its bursts.
    pub fn amplification_cap(&self) -> Option<f64> {
        let arrived = self
            .arrived_samples
            .get()
            .into_iter()
            .chain(self.arrived_filled_samples.get())
            .reduce(f64::max)?;
        let loss = self.peer_loss.min(self.config.max_loss);
        // Start-up doubles per round and arrivals lag it by one: allow 3x
        // there (QUIC's limit before validation), 1.5x otherwise.
        let headroom = if self.mode == RateMode::Startup {
            3.0
        } else {
            1.5
        };
        Some(arrived / (1.0 - loss) * headroom)
    }

    /// Current pacing rate in bytes per second.
    pub fn pacing_bytes_per_second(&self) -> f64 {
        let mut rate = match &self.contended {
            Some(contended) => contended.rate,
            // Draining a queue of our own: below what arrives, or the
            // queue would stand (the estimate may run a tenth above it).
            None if self.congested() && self.mode == RateMode::ProbeBandwidth => {
                let arrived = self.arrived_rate().unwrap_or(self.bottleneck);
                CONGESTED_GAIN * self.bottleneck.min(arrived)
            }
            None => self.gain() * self.bottleneck,
        };
        if self.mode == RateMode::Startup {
            // Drain the backlog, but at most at twice the start-up pace: a
            // burst is not evidence of the path's rate.
            let drain = self.backlog as f64 / (self.min_rtt() / 4).as_secs_f64().max(1e-3);
            rate = rate.max(drain.min(2.0 * rate));
        }
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

    #[test]
    fn windowed_max_rate_is_the_largest_sample_within_the_window() {
        let window = Duration::from_millis(100);
        let mut max = WindowedMaxRate::default();
        assert_eq!(max.get(), None);
        max.push(at(0), 5.0, window);
        max.push(at(10), 9.0, window);
        max.push(at(20), 3.0, window);
        assert_eq!(max.get(), Some(9.0));
        // 9 ages out; 3 (younger) is all that is left.
        max.expire(at(115), window);
        assert_eq!(max.get(), Some(3.0));
        max.push(at(130), 4.0, window);
        assert_eq!(max.get(), Some(4.0));
        max.expire(at(300), window);
        assert_eq!(max.get(), None);
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
            rate.set_peer_loss(at(i * 100), 0.3);
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
            rate.set_peer_loss(at(i * 100), 0.0);
            rate.on_peer_bytes_received(at(i * 100), i * 10_000);
        }
        // At most 1.5 × what arrives (100 kB/s), not the claimed 100 MB/s.
        assert!(rate.pacing_bytes_per_second() <= 150_000.0 * 1.01);
    }

    #[test]
    fn a_pause_between_transfers_keeps_the_rate_for_the_next() {
        let mut rate = RateController::new(at(0), config());
        let mut received = 0;
        for i in 0..50 {
            rate.on_sample(at(i * 100), sample(2_500_000.0, i * 10));
            rate.set_peer_loss(at(i * 100), 0.0);
            received += 250_000;
            rate.on_peer_bytes_received(at(i * 100), received);
        }
        // A trickle (keepalives, a TCP handshake): 1 kB/s, a sample per 0.1 s.
        let trickle =
            |rate: &mut RateController, received: &mut u64, steps: std::ops::Range<u64>| {
                for i in steps {
                    let mut idle = sample(1_000.0, i * 10);
                    idle.app_limited = true;
                    rate.on_sample(at(i * 100), idle);
                    *received += 100;
                    rate.on_peer_bytes_received(at(i * 100), *received);
                }
            };
        trickle(&mut rate, &mut received, 50..70);
        assert!(
            rate.pacing_bytes_per_second() >= 2_000_000.0,
            "{} B/s after a pause",
            rate.pacing_bytes_per_second()
        );
        // What arrived long ago no longer vouches for the path.
        trickle(&mut rate, &mut received, 70..200);
        assert!(rate.amplification_cap().unwrap() < 10_000.0);
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

    fn with_rtt(mut sample: RateSample, rtt_ms: u64) -> RateSample {
        sample.rtt = Duration::from_millis(rtt_ms);
        sample
    }

    #[test]
    fn a_slow_starting_senders_bursts_do_not_end_start_up() {
        let mut rate = RateController::new(at(0), config());
        // Backlogged for a moment at each burst, but delivering a tenth of
        // the initial rate: the sender is not pushing the path yet.
        for i in 0..40 {
            rate.on_sample(at(i * 100), sample(12_500.0, i * 10));
        }
        assert_eq!(rate.mode, RateMode::Startup);
        // Once it pushes at the estimate without growth, start-up ends.
        for i in 40..80 {
            rate.on_sample(at(i * 100), sample(125_000.0, i * 10));
        }
        assert_ne!(rate.mode, RateMode::Startup);
    }

    #[test]
    fn an_overshooting_start_up_is_cut_back_to_what_arrived() {
        let mut rate = RateController::new(at(0), config());
        // Serviced-rate samples growing to 38 MB/s (they count what an
        // overflowing queue dropped) while 2.5 MB/s arrives, then the
        // queue shows.
        for i in 0..10 {
            let serviced = 1_000_000.0 * 1.5f64.powi(i as i32);
            rate.on_sample(at(i * 100), sample(serviced, i * 10));
            rate.on_peer_bytes_received(at(i * 100), i * 250_000);
        }
        assert_eq!(rate.mode, RateMode::Startup);
        rate.on_sample(at(1_000), with_rtt(sample(10_000_000.0, 100), 150));
        assert_eq!(rate.mode, RateMode::Drain);
        assert!(rate.bottleneck_bytes_per_second() <= 2_500_000.0 * 1.1 * 1.01);
    }

    #[test]
    fn one_delayed_receipt_is_jitter_and_a_queue_delays_them_all() {
        let mut rate = RateController::new(at(0), config());
        // Receipts every 5 ms on a 100 ms path, the estimate doubling
        // each round.
        let mut ms = 0;
        let mut packet = 0;
        let mut next = |rtt: u64, rate: &mut RateController| {
            ms += 5;
            packet += 1;
            let serviced = 100_000.0 * 2f64.powf(packet as f64 / 10.0);
            rate.on_sample(at(ms), with_rtt(sample(serviced, packet), rtt));
        };
        for _ in 0..40 {
            next(100, &mut rate);
        }
        // One receipt 30 ms late (a scheduler's hiccup): still start-up.
        next(130, &mut rate);
        next(100, &mut rate);
        assert_eq!(rate.mode, RateMode::Startup);
        // Every receipt 30 ms late for a few receipts: a queue ends it
        // (and the drain, with nothing in flight in these samples, at once).
        for _ in 0..8 {
            next(130, &mut rate);
        }
        assert_ne!(rate.mode, RateMode::Startup);
    }

    #[test]
    fn loss_reported_after_a_queue_is_not_random_loss() {
        let mut rate = RateController::new(at(0), config());
        for i in 0..20 {
            rate.on_sample(at(i * 100), sample(2_500_000.0, i * 10));
            rate.set_peer_loss(at(i * 100), 0.01);
        }
        let random = rate.random_loss().unwrap();
        assert!((random - 0.01).abs() < 0.005);
        // A queue stands, drains, and the overflow shows in the reports
        // for the next round trips: not random loss.
        rate.on_sample(at(2_000), with_rtt(sample(2_500_000.0, 200), 160));
        for i in 0..3 {
            rate.on_sample(at(2_050 + i * 50), sample(2_500_000.0, 210 + i * 10));
            rate.set_peer_loss(at(2_050 + i * 50), 0.4);
        }
        assert!(rate.random_loss().unwrap() < 0.02);
        // Reports long after the queue drained count again.
        for i in 0..40 {
            rate.set_peer_loss(at(3_000 + i * 50), 0.2);
        }
        assert!(rate.random_loss().unwrap() > 0.15);
    }

    #[test]
    fn random_loss_follows_the_reports_where_a_queue_always_stands() {
        let mut rate = RateController::new(at(0), config());
        // The first receipts say no loss (the peer has measured none yet),
        // and from then on a queue a little above the target stands on
        // every sample (a ceiling at the link's rate): never quiet.
        rate.on_sample(at(0), sample(2_500_000.0, 0));
        rate.set_peer_loss(at(0), 0.0);
        assert_eq!(rate.random_loss(), Some(0.0));
        for i in 1..100 {
            rate.on_sample(at(i * 50), with_rtt(sample(2_500_000.0, i * 10), 115));
            rate.set_peer_loss(at(i * 50), if i % 2 == 0 { 0.09 } else { 0.11 });
        }
        let random = rate.random_loss().unwrap();
        assert!((0.085..=0.11).contains(&random), "{random}");
        // Reports below it bring it down again, queue or not.
        for i in 100..200 {
            rate.on_sample(at(i * 50), with_rtt(sample(2_500_000.0, i * 10), 115));
            rate.set_peer_loss(at(i * 50), 0.02);
        }
        let random = rate.random_loss().unwrap();
        assert!((0.015..=0.025).contains(&random), "{random}");
    }

    #[test]
    fn a_queue_another_flow_holds_is_shared_as_a_tcp_would() {
        let mut rate = RateController::new(at(0), config());
        for i in 0..30 {
            rate.on_sample(at(i * 100), sample(2_500_000.0, i * 10));
            rate.set_peer_loss(at(i * 100), 0.01);
            rate.on_peer_bytes_received(at(i * 100), i * 250_000);
        }
        assert!(rate.contended.is_none());
        // Another flow fills the buffer: 60 ms of queue that pacing below
        // what arrives does not drain, for seconds.
        for i in 30..60 {
            rate.on_sample(at(i * 100), with_rtt(sample(1_250_000.0, i * 10), 160));
            rate.set_peer_loss(at(i * 100), 0.01);
            rate.on_peer_bytes_received(at(i * 100), i * 250_000);
        }
        let shared = rate.contended.expect("a standing queue is another flow's");
        // Without overflow the rate grows by about a datagram per round trip.
        assert!(rate.pacing_bytes_per_second() >= shared.rate * 0.99);
        let before = rate.pacing_bytes_per_second();
        rate.on_sample(at(6_000), with_rtt(sample(1_250_000.0, 600), 160));
        assert!(rate.pacing_bytes_per_second() > before);
        // Overflow (loss above the random loss) halves it, once per round trip
        // and a half however many reports show it.
        let before = rate.pacing_bytes_per_second();
        rate.set_peer_loss(at(6_010), 0.05);
        rate.set_peer_loss(at(6_020), 0.05);
        let after = rate.pacing_bytes_per_second();
        assert!(after <= before * CONTENDED_BACKOFF * 1.01 && after >= before * 0.4);
        // Random loss alone does not cut it.
        let before = rate.pacing_bytes_per_second();
        rate.set_peer_loss(at(7_000), 0.012);
        assert!(rate.pacing_bytes_per_second() >= before);
        // The other flow leaves: the queue drains and the estimate resumes
        // from the shared rate.
        rate.on_sample(at(7_100), sample(2_500_000.0, 700));
        assert!(rate.contended.is_none());
        assert!(rate.bottleneck_bytes_per_second() > 0.0);
    }

    #[test]
    fn a_queue_of_our_own_that_drains_is_not_another_flows() {
        let mut rate = RateController::new(at(0), config());
        for i in 0..30 {
            rate.on_sample(at(i * 100), sample(2_500_000.0, i * 10));
            rate.on_peer_bytes_received(at(i * 100), i * 250_000);
        }
        // A deep queue (ours, from an overshoot) that shrinks steadily
        // for seconds: still ours, so no TCP-like sharing.
        for i in 0..40u64 {
            let queue_ms = 600 - i * 14;
            rate.on_sample(
                at(3_000 + i * 100),
                with_rtt(sample(2_500_000.0, 300 + i * 10), 100 + queue_ms),
            );
            rate.on_peer_bytes_received(at(3_000 + i * 100), 750_000 + i * 250_000);
        }
        assert!(rate.contended.is_none());
    }

    #[test]
    fn overflow_above_the_random_loss_cuts_the_estimate_to_what_arrived() {
        let mut rate = RateController::new(at(0), config());
        // 1 % random loss at 2.5 MB/s, the sender pushing the path.
        for i in 0..30 {
            rate.on_sample(at(i * 100), sample(2_500_000.0, i * 10));
            rate.set_peer_loss(at(i * 100), 0.01);
            rate.on_peer_bytes_received(at(i * 100), i * 247_500);
        }
        let before = rate.bottleneck_bytes_per_second();
        // Samples now claim 3.5 MB/s (they count what a shallow buffer
        // dropped), 2.5 MB/s still arrives and the loss jumps to 25 %.
        for i in 30..40 {
            rate.on_sample(at(i * 100), sample(3_500_000.0, i * 10));
            rate.on_peer_bytes_received(at(i * 100), 29 * 247_500 + (i - 29) * 250_000);
            rate.set_peer_loss(at(i * 100), 0.25);
        }
        assert!(
            rate.bottleneck_bytes_per_second() <= before * 1.05,
            "{} against {before}",
            rate.bottleneck_bytes_per_second()
        );
        // A sender short of data (an application's demand) is not cut by
        // the same reports.
        let mut idle = RateController::new(at(0), config());
        for i in 0..40 {
            let mut s = sample(2_500_000.0, i * 10);
            s.app_limited = i >= 20;
            idle.on_sample(at(i * 100), s);
            idle.set_peer_loss(at(i * 100), if i >= 25 { 0.25 } else { 0.01 });
            idle.on_peer_bytes_received(at(i * 100), i * 100_000);
        }
        assert!(idle.overflow_cut_at.is_none());
    }
}
