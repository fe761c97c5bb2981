//! The link model of the simulator: configuration ([`LinkConfig`],
//! [`LossModel`]), per-link statistics ([`LinkStats`]) and the per-packet
//! pipeline (drop-tail queue → serialisation at a rate → loss → delay,
//! jitter, reordering → duplication).
//!
//! Every decision for a packet is taken when the packet enters the link:
//! the link is FIFO, so its state after `n` packets only depends on those
//! `n` packets, and deciding early is equivalent to deciding "on the wire"
//! while costing one heap event per delivered packet.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::VecDeque;
use std::time::Duration;
use tgp_proto::Timestamp;

/// How a link loses packets. The decision is taken after serialisation, so
/// a lost packet has still used the link's time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossModel {
    /// Never lose a packet.
    None,
    /// Lose each packet independently with `probability` (0.0 ..= 1.0).
    Random {
        /// Probability that one packet is lost.
        probability: f64,
    },
    /// Gilbert-Elliott: a two-state (good / bad) Markov chain, advanced once
    /// per packet that reaches the loss stage (queue drops do not move it),
    /// with a loss probability per state. It models bursty loss.
    ///
    /// For each packet the link first decides loss with the current state's
    /// probability, then moves to the other state with the transition
    /// probability. The first packet starts in a state drawn from the
    /// stationary distribution, so even short runs see the mean loss rate.
    ///
    /// Choosing parameters: with `p = good_to_bad` and `r = bad_to_good`
    /// the chain spends a fraction `p / (p + r)` of packets in the bad
    /// state, so the mean loss rate is
    /// `(r * loss_in_good + p * loss_in_bad) / (p + r)`. A stay in the bad
    /// state lasts on average `1 / r` packets and one in the good state
    /// `1 / p`. With `loss_in_good = 0` and `loss_in_bad = 1` (the simple
    /// Gilbert model) loss bursts last `1 / r` packets on average, and for
    /// a mean loss `L` and mean burst length `B` one takes `r = 1 / B`,
    /// `p = L / ((1 - L) * B)`; [`LossModel::bursty`] does exactly that.
    GilbertElliott {
        /// Per-packet probability of moving from the good to the bad state.
        good_to_bad: f64,
        /// Per-packet probability of moving from the bad to the good state.
        bad_to_good: f64,
        /// Loss probability while in the good state.
        loss_in_good: f64,
        /// Loss probability while in the bad state.
        loss_in_bad: f64,
    },
}

impl LossModel {
    /// A simple Gilbert model (no loss in the good state, every packet lost
    /// in the bad state) with mean loss rate `mean_loss` (0.0 ..= 1.0) and
    /// loss bursts of `mean_burst_len` packets on average (>= 1.0).
    ///
    /// The gaps between bursts are at least one packet long, so a mean burst
    /// length `B` can only give a mean loss up to `B / (B + 1)`. Above that
    /// the mean loss is kept and the bursts are made longer: the burst
    /// length used is `max(B, L / (1 - L))`. A mean loss of 1.0 loses
    /// everything.
    ///
    /// # Panics
    /// If `mean_loss` is outside 0.0 ..= 1.0 or `mean_burst_len` is not a
    /// finite number >= 1.0.
    pub fn bursty(mean_loss: f64, mean_burst_len: f64) -> LossModel {
        assert!(
            (0.0..=1.0).contains(&mean_loss),
            "LossModel::bursty: mean_loss must be in 0.0..=1.0, got {mean_loss}"
        );
        assert!(
            mean_burst_len.is_finite() && mean_burst_len >= 1.0,
            "LossModel::bursty: mean_burst_len must be a finite number >= 1.0, got {mean_burst_len}"
        );
        if mean_loss >= 1.0 {
            return LossModel::GilbertElliott {
                good_to_bad: 1.0,
                bad_to_good: 0.0,
                loss_in_good: 1.0,
                loss_in_bad: 1.0,
            };
        }
        let burst = mean_burst_len.max(mean_loss / (1.0 - mean_loss));
        let bad_to_good = 1.0 / burst;
        let good_to_bad = (mean_loss / ((1.0 - mean_loss) * burst)).min(1.0);
        LossModel::GilbertElliott {
            good_to_bad,
            bad_to_good,
            loss_in_good: 0.0,
            loss_in_bad: 1.0,
        }
    }

    /// The long-run fraction of packets this model loses.
    pub fn mean_loss(&self) -> f64 {
        match *self {
            LossModel::None => 0.0,
            LossModel::Random { probability } => probability,
            LossModel::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => {
                let bad = stationary_bad(good_to_bad, bad_to_good);
                (1.0 - bad) * loss_in_good + bad * loss_in_bad
            }
        }
    }

    fn validate(&self) {
        let check = |name: &str, p: f64| {
            assert!(
                (0.0..=1.0).contains(&p),
                "LossModel: {name} must be a probability in 0.0..=1.0, got {p}"
            );
        };
        match *self {
            LossModel::None => {}
            LossModel::Random { probability } => check("probability", probability),
            LossModel::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => {
                check("good_to_bad", good_to_bad);
                check("bad_to_good", bad_to_good);
                check("loss_in_good", loss_in_good);
                check("loss_in_bad", loss_in_bad);
            }
        }
    }
}

/// Fraction of packets a Gilbert-Elliott chain spends in the bad state; a
/// chain that never moves stays in the good state where it starts.
fn stationary_bad(good_to_bad: f64, bad_to_good: f64) -> f64 {
    let sum = good_to_bad + bad_to_good;
    if sum > 0.0 {
        good_to_bad / sum
    } else {
        0.0
    }
}

/// The behaviour of one direction of a hop. Build it with
/// [`LinkConfig::ideal`] and the `with_*` methods.
///
/// A datagram put on the link goes through, in order: the drop-tail queue
/// (dropped if it would have to wait and the waiting bytes would exceed
/// `queue_limit_bytes`), serialisation at `rate_bits_per_second`, the loss
/// model (so a lost datagram has used the link's time), propagation
/// `delay` plus jitter (plus `reorder_extra_delay` if reordered), and
/// duplication. Its queueing delay is the time it waited before its
/// serialisation started. The link is FIFO, so its whole fate is decided
/// when it enters; draws come from the link's own RNG stream.
///
/// The rate and queue apply to datagram bytes only (no IP/UDP header
/// overhead is added).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// How packets are lost.
    pub loss: LossModel,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Uniform extra delay in `[0, jitter]`. FIFO order is kept (a packet
    /// never arrives before the one sent before it) unless it is reordered.
    pub jitter: Duration,
    /// Chance a packet is held back by `reorder_extra_delay` and overtaken
    /// by the packets after it.
    pub reorder_probability: f64,
    /// Extra delay of a reordered packet.
    pub reorder_extra_delay: Duration,
    /// Chance a packet is delivered twice (both copies at the same time).
    pub duplicate_probability: f64,
    /// Serialisation rate in bits per second; `None` is unlimited.
    pub rate_bits_per_second: Option<u64>,
    /// Drop-tail limit, in bytes, of the queue in front of the rate stage:
    /// the packets waiting for serialisation to start (not the one being
    /// serialised). A packet that would have to wait and would push the
    /// queue over the limit is dropped. Only meaningful with a rate.
    pub queue_limit_bytes: usize,
}

impl LinkConfig {
    /// A link that only delays: no loss, no jitter, no reordering, no
    /// duplication, unlimited rate (and an unlimited queue, should a rate
    /// be set without [`LinkConfig::with_rate`]).
    pub fn ideal(delay: Duration) -> Self {
        LinkConfig {
            loss: LossModel::None,
            delay,
            jitter: Duration::ZERO,
            reorder_probability: 0.0,
            reorder_extra_delay: Duration::ZERO,
            duplicate_probability: 0.0,
            rate_bits_per_second: None,
            queue_limit_bytes: usize::MAX,
        }
    }

    /// This link with one-way propagation delay `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// This link with the given loss model.
    pub fn with_loss(mut self, loss: LossModel) -> Self {
        self.loss = loss;
        self
    }

    /// This link losing each packet independently with `probability`.
    pub fn with_random_loss(self, probability: f64) -> Self {
        self.with_loss(LossModel::Random { probability })
    }

    /// This link with bursty loss, see [`LossModel::bursty`].
    pub fn with_bursty_loss(self, mean_loss: f64, mean_burst_len: f64) -> Self {
        self.with_loss(LossModel::bursty(mean_loss, mean_burst_len))
    }

    /// This link serialising at `bits_per_second` behind a drop-tail queue
    /// of `queue_limit_bytes`.
    pub fn with_rate(mut self, bits_per_second: u64, queue_limit_bytes: usize) -> Self {
        self.rate_bits_per_second = Some(bits_per_second);
        self.queue_limit_bytes = queue_limit_bytes;
        self
    }

    /// This link with uniform jitter in `[0, jitter]` (FIFO kept).
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// This link holding back a packet with `probability` by `extra_delay`,
    /// so that later packets overtake it.
    pub fn with_reorder(mut self, probability: f64, extra_delay: Duration) -> Self {
        self.reorder_probability = probability;
        self.reorder_extra_delay = extra_delay;
        self
    }

    /// This link delivering a packet twice with `probability`.
    pub fn with_duplicate(mut self, probability: f64) -> Self {
        self.duplicate_probability = probability;
        self
    }

    /// Checks the probabilities and the rate.
    ///
    /// # Panics
    /// With a message naming the bad field.
    pub(crate) fn validate(&self) {
        self.loss.validate();
        for (name, p) in [
            ("reorder_probability", self.reorder_probability),
            ("duplicate_probability", self.duplicate_probability),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "LinkConfig: {name} must be a probability in 0.0..=1.0, got {p}"
            );
        }
        assert!(
            self.rate_bits_per_second != Some(0),
            "LinkConfig: rate_bits_per_second must not be zero (use None for unlimited)"
        );
    }
}

impl Default for LinkConfig {
    /// [`LinkConfig::ideal`] with no delay.
    fn default() -> Self {
        LinkConfig::ideal(Duration::ZERO)
    }
}

/// Width of one bucket of the queueing-delay histogram.
const HISTOGRAM_BUCKET_NANOS: u64 = 100_000;
/// Number of buckets: 100 µs each up to 10 s; longer delays share the last.
const HISTOGRAM_BUCKETS: usize = 100_000;

/// A bounded histogram of durations: 100 µs buckets up to 10 s, grown
/// lazily (a link that never queues holds one bucket), plus the exact
/// count, sum and maximum.
#[derive(Clone, Debug, Default)]
struct DelayHistogram {
    buckets: Vec<u64>,
    count: u64,
    sum_nanos: u128,
    max_nanos: u64,
}

impl DelayHistogram {
    fn record(&mut self, delay_nanos: u64) {
        let index = usize::try_from(delay_nanos / HISTOGRAM_BUCKET_NANOS)
            .unwrap_or(usize::MAX)
            .min(HISTOGRAM_BUCKETS - 1);
        if index >= self.buckets.len() {
            self.buckets.resize(index + 1, 0);
        }
        self.buckets[index] += 1;
        self.count += 1;
        self.sum_nanos += u128::from(delay_nanos);
        self.max_nanos = self.max_nanos.max(delay_nanos);
    }

    fn percentile(&self, q: f64) -> Duration {
        assert!(
            (0.0..=1.0).contains(&q),
            "queueing_delay_percentile: q must be in 0.0..=1.0 (0.99 for p99), got {q}"
        );
        if self.count == 0 {
            return Duration::ZERO;
        }
        // The smallest recorded value with at least `rank` values <= it.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let upper = if index == HISTOGRAM_BUCKETS - 1 {
                    self.max_nanos
                } else {
                    (index as u64 + 1) * HISTOGRAM_BUCKET_NANOS
                };
                return Duration::from_nanos(upper.min(self.max_nanos));
            }
        }
        Duration::from_nanos(self.max_nanos)
    }
}

/// What happened on one link so far.
///
/// Every datagram offered ends up in exactly one of `dropped_by_queue`,
/// `dropped_by_loss`, delivered (once, or twice when duplicated) or still
/// in flight.
#[derive(Clone, Debug, Default)]
pub struct LinkStats {
    /// Datagrams put on the link.
    pub offered_packets: u64,
    /// Bytes of the datagrams put on the link.
    pub offered_bytes: u64,
    /// Datagrams dropped because the queue was full (drop-tail).
    pub dropped_by_queue: u64,
    /// Datagrams lost by the loss model (after serialisation).
    pub dropped_by_loss: u64,
    /// Datagrams chosen to be delivered twice (each counts one extra
    /// delivery once it arrives).
    pub duplicated: u64,
    /// Datagrams handed to the receiving node, duplicates included.
    pub delivered_packets: u64,
    /// Bytes handed to the receiving node, duplicates included.
    pub delivered_bytes: u64,
    /// The largest number of bytes seen waiting in the queue.
    pub peak_queue_bytes: usize,
    queueing_delay: DelayHistogram,
}

impl LinkStats {
    /// The `q` quantile (0.0 ..= 1.0; 0.99 is p99) of the time packets
    /// accepted into the queue waited before their serialisation started.
    /// Resolution is 100 µs, rounded up but never above the largest delay
    /// seen; delays over 10 s are reported as the maximum. Zero if no packet
    /// was accepted yet.
    ///
    /// # Panics
    /// If `q` is outside 0.0 ..= 1.0.
    pub fn queueing_delay_percentile(&self, q: f64) -> Duration {
        self.queueing_delay.percentile(q)
    }

    /// The mean queueing delay (exact), zero if no packet was accepted.
    pub fn mean_queueing_delay(&self) -> Duration {
        match self.queueing_delay.count {
            0 => Duration::ZERO,
            n => Duration::from_nanos(
                u64::try_from(self.queueing_delay.sum_nanos / u128::from(n)).unwrap_or(u64::MAX),
            ),
        }
    }

    /// The largest queueing delay seen (exact).
    pub fn max_queueing_delay(&self) -> Duration {
        Duration::from_nanos(self.queueing_delay.max_nanos)
    }

    /// How many queueing delays were recorded (packets accepted by the
    /// queue, lost ones included).
    pub fn queueing_delay_samples(&self) -> u64 {
        self.queueing_delay.count
    }

    /// Datagrams accepted by the link that have neither arrived nor been
    /// lost yet (a duplicated one counts twice).
    pub fn in_flight(&self) -> u64 {
        (self.offered_packets + self.duplicated)
            .saturating_sub(self.dropped_by_queue + self.dropped_by_loss + self.delivered_packets)
    }

    /// Fraction of the packets that got through the queue that the loss
    /// model dropped; zero before any.
    pub fn loss_rate(&self) -> f64 {
        let serialised = self.offered_packets - self.dropped_by_queue;
        if serialised == 0 {
            0.0
        } else {
            self.dropped_by_loss as f64 / serialised as f64
        }
    }
}

/// The fate of one datagram put on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Dropped by the queue or the loss model.
    Dropped,
    /// Arrives at `at`; a second copy arrives at the same time if
    /// `duplicate`.
    Arrives { at: Timestamp, duplicate: bool },
}

/// One link's state: configuration, RNG stream, queue and statistics.
pub(crate) struct Link {
    config: LinkConfig,
    rng: ChaCha8Rng,
    /// Gilbert-Elliott state (`true` = bad); drawn on the first packet.
    bad_state: Option<bool>,
    /// When the rate stage finishes the last accepted packet.
    busy_until: Timestamp,
    /// Packets accepted but not yet started: (start time, bytes).
    waiting: VecDeque<(Timestamp, usize)>,
    waiting_bytes: usize,
    /// Arrival time of the last non-reordered packet (for FIFO with jitter).
    last_arrival: Timestamp,
    pub(crate) stats: LinkStats,
}

/// SplitMix64: spreads a 64-bit seed over a 256-bit ChaCha key.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG of link `link` in a simulation seeded with `seed`: the key comes
/// from the seed, the ChaCha stream number from the link id, so links never
/// share draws and adding a link does not change the others.
pub(crate) fn link_rng(seed: u64, link: u64) -> ChaCha8Rng {
    let mut state = seed;
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(link);
    rng
}

/// A uniform draw in `[0, 1)` with 53 bits of precision.
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// `true` with probability `p` (no draw when `p` is 0).
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && uniform(rng) < p
}

/// A uniform draw in `[0, max]`.
fn uniform_up_to(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    ((u128::from(rng.next_u64()) * (u128::from(max) + 1)) >> 64) as u64
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Time to serialise `bytes` at `bits_per_second`, rounded up to a
/// nanosecond.
pub(crate) fn serialisation_nanos(bytes: usize, bits_per_second: u64) -> u64 {
    let bits = bytes as u128 * 8 * 1_000_000_000;
    let rate = u128::from(bits_per_second);
    u64::try_from(bits.div_ceil(rate)).unwrap_or(u64::MAX)
}

impl Link {
    pub(crate) fn new(config: LinkConfig, rng: ChaCha8Rng) -> Self {
        config.validate();
        Link {
            config,
            rng,
            bad_state: None,
            busy_until: Timestamp::ZERO,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            last_arrival: Timestamp::ZERO,
            stats: LinkStats::default(),
        }
    }

    pub(crate) fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Replaces the configuration; the queue, the Gilbert-Elliott state and
    /// the statistics are kept. Packets already on the link keep the fate
    /// decided under the old configuration.
    pub(crate) fn set_config(&mut self, config: LinkConfig) {
        config.validate();
        self.config = config;
    }

    /// Puts a datagram of `len` bytes on the link at `now` and decides its
    /// fate.
    pub(crate) fn transmit(&mut self, now: Timestamp, len: usize) -> Fate {
        self.stats.offered_packets += 1;
        self.stats.offered_bytes += len as u64;

        // Queue and rate stage.
        let done = match self.config.rate_bits_per_second {
            None => {
                self.stats.queueing_delay.record(0);
                now
            }
            Some(rate) => {
                while let Some(&(start, bytes)) = self.waiting.front() {
                    if start > now {
                        break;
                    }
                    self.waiting.pop_front();
                    self.waiting_bytes -= bytes;
                }
                let start = self.busy_until.max(now);
                if start > now {
                    if self.waiting_bytes.saturating_add(len) > self.config.queue_limit_bytes {
                        self.stats.dropped_by_queue += 1;
                        return Fate::Dropped;
                    }
                    self.waiting.push_back((start, len));
                    self.waiting_bytes += len;
                    self.stats.peak_queue_bytes =
                        self.stats.peak_queue_bytes.max(self.waiting_bytes);
                }
                self.stats
                    .queueing_delay
                    .record(start.as_nanos() - now.as_nanos());
                self.busy_until = start + Duration::from_nanos(serialisation_nanos(len, rate));
                self.busy_until
            }
        };

        // Loss, after the packet used the link's time.
        if self.lose() {
            self.stats.dropped_by_loss += 1;
            return Fate::Dropped;
        }

        // Delay, jitter, reordering.
        let mut at = done + self.config.delay;
        if !self.config.jitter.is_zero() {
            at += Duration::from_nanos(uniform_up_to(&mut self.rng, nanos(self.config.jitter)));
        }
        if chance(&mut self.rng, self.config.reorder_probability) {
            at += self.config.reorder_extra_delay;
        } else {
            at = at.max(self.last_arrival);
            self.last_arrival = at;
        }

        let duplicate = chance(&mut self.rng, self.config.duplicate_probability);
        if duplicate {
            self.stats.duplicated += 1;
        }
        Fate::Arrives { at, duplicate }
    }

    fn lose(&mut self) -> bool {
        match self.config.loss {
            LossModel::None => false,
            LossModel::Random { probability } => chance(&mut self.rng, probability),
            LossModel::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => {
                let rng = &mut self.rng;
                let bad = *self
                    .bad_state
                    .get_or_insert_with(|| chance(rng, stationary_bad(good_to_bad, bad_to_good)));
                let lost = chance(rng, if bad { loss_in_bad } else { loss_in_good });
                let flip = chance(rng, if bad { bad_to_good } else { good_to_bad });
                self.bad_state = Some(bad != flip);
                lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursty_parameters_give_the_asked_mean_and_burst() {
        let LossModel::GilbertElliott {
            good_to_bad,
            bad_to_good,
            ..
        } = LossModel::bursty(0.1, 4.0)
        else {
            panic!("bursty must give a Gilbert-Elliott model");
        };
        assert!((bad_to_good - 0.25).abs() < 1e-12);
        assert!((good_to_bad - 0.1 * 0.25 / 0.9).abs() < 1e-12);
        assert!((LossModel::bursty(0.1, 4.0).mean_loss() - 0.1).abs() < 1e-12);
        // Impossible combination: mean kept, bursts lengthened.
        let m = LossModel::bursty(0.98, 2.0);
        assert!((m.mean_loss() - 0.98).abs() < 1e-9);
        assert_eq!(LossModel::bursty(1.0, 3.0).mean_loss(), 1.0);
        assert_eq!(LossModel::bursty(0.0, 3.0).mean_loss(), 0.0);
    }

    #[test]
    fn serialisation_time_is_exact_or_rounded_up() {
        // 1250 bytes at 10 Mbit/s: 1 ms.
        assert_eq!(serialisation_nanos(1250, 10_000_000), 1_000_000);
        assert_eq!(serialisation_nanos(1, 3), 2_666_666_667);
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = DelayHistogram::default();
        assert_eq!(h.percentile(0.5), Duration::ZERO);
        for ms in 1..=100u64 {
            h.record(ms * 1_000_000);
        }
        assert_eq!(h.percentile(0.5), Duration::from_micros(50_100));
        assert_eq!(h.percentile(0.99), Duration::from_micros(99_100));
        assert_eq!(h.percentile(1.0), Duration::from_millis(100));
        assert_eq!(h.percentile(0.0), Duration::from_micros(1_100));
        let mut zeros = DelayHistogram::default();
        zeros.record(0);
        assert_eq!(zeros.percentile(0.99), Duration::ZERO);
        assert_eq!(zeros.buckets.len(), 1);
        let mut long = DelayHistogram::default();
        long.record(60_000_000_000);
        assert_eq!(long.buckets.len(), HISTOGRAM_BUCKETS);
        assert_eq!(long.percentile(0.5), Duration::from_secs(60));
    }

    #[test]
    fn link_streams_differ_by_seed_and_link() {
        let a = link_rng(1, 0).next_u64();
        assert_eq!(a, link_rng(1, 0).next_u64());
        assert_ne!(a, link_rng(2, 0).next_u64());
        assert_ne!(a, link_rng(1, 1).next_u64());
    }

    #[test]
    fn drop_tail_counts_only_waiting_bytes() {
        // 1000 bytes at 8 Mbit/s: 1 ms each. Limit: one waiting packet.
        let config = LinkConfig::ideal(Duration::ZERO).with_rate(8_000_000, 1000);
        let mut link = Link::new(config, link_rng(0, 0));
        let t = Timestamp::ZERO;
        // Starts at once, waits 1 ms, dropped.
        assert!(matches!(link.transmit(t, 1000), Fate::Arrives { .. }));
        assert_eq!(
            link.transmit(t, 1000),
            Fate::Arrives {
                at: Timestamp::from_nanos(2_000_000),
                duplicate: false
            }
        );
        assert_eq!(link.transmit(t, 1000), Fate::Dropped);
        assert_eq!(link.stats.dropped_by_queue, 1);
        assert_eq!(link.stats.max_queueing_delay(), Duration::from_millis(1));
        // At 1 ms the second has started: room again.
        let t = Timestamp::from_nanos(1_000_000);
        assert_eq!(
            link.transmit(t, 1000),
            Fate::Arrives {
                at: Timestamp::from_nanos(3_000_000),
                duplicate: false
            }
        );
    }
}
