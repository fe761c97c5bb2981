//! The one model of an impaired link, shared by the simulator
//! ([`crate::Simulation`]) and netem's userspace impairer (`tgp-impair`):
//! configuration ([`LinkConfig`], [`LossModel`], [`JitterMode`],
//! [`ReorderMode`]), statistics ([`LinkStats`]) and the per-packet pipeline
//! ([`Link`]: drop-tail queue → serialisation at a rate → loss → delay,
//! jitter, reordering → duplication), with its seeded RNG ([`link_rng`]).
//!
//! It is pure: configuration, RNG and state in, a packet's [`Fate`] and
//! delivery time out; time is passed in, nothing here holds packets. The
//! simulator puts the deliveries in its event heap, the impairer in its
//! heap of frames waiting to be sent.
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

/// How jitter spreads a packet's delay around the propagation `delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitterMode {
    /// Uniform extra delay in `[0, jitter]`: the delay is never below
    /// `delay` (the simulator's links).
    UpTo,
    /// Uniform in `[delay - jitter, delay + jitter]`, but never before the
    /// packet's serialisation ends (netem's `delay D J`).
    PlusMinus,
}

/// What a reordered packet does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReorderMode {
    /// It is held back by [`LinkConfig::reorder_extra_delay`] beyond its
    /// jittered delay, so the packets after it overtake it.
    HoldBack,
    /// It skips the delay and jitter and arrives when its serialisation
    /// ends, overtaking the packets in flight (netem's `reorder`: no effect
    /// without a delay).
    SkipDelay,
}

/// The behaviour of one direction of a hop. Build it with
/// [`LinkConfig::ideal`] and the `with_*` methods.
///
/// A datagram put on the link goes through, in order: the drop-tail queue
/// (dropped if it would have to wait and the waiting packets would exceed
/// `queue_limit_bytes` or `queue_limit_packets`), serialisation at
/// `rate_bits_per_second`, the loss model (so a lost datagram has used the
/// link's time), propagation `delay` plus jitter (see [`JitterMode`]; or
/// the [`ReorderMode`] if reordered), and duplication. Its queueing delay is the time it waited before its
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
    /// Jitter: uniform extra delay in `[0, jitter]`, or within `±jitter`
    /// (see `jitter_mode`). FIFO order is kept (a packet never arrives
    /// before the one sent before it) unless it is reordered.
    pub jitter: Duration,
    /// How `jitter` spreads the delay.
    pub jitter_mode: JitterMode,
    /// Chance a packet is reordered (see `reorder_mode`).
    pub reorder_probability: f64,
    /// What a reordered packet does.
    pub reorder_mode: ReorderMode,
    /// Extra delay of a reordered packet under [`ReorderMode::HoldBack`].
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
    /// Drop-tail limit of the same queue in packets (waiting ones, not the
    /// one being serialised); a packet is dropped when it would break
    /// either limit. Only meaningful with a rate.
    pub queue_limit_packets: usize,
}

impl LinkConfig {
    /// A link that only delays: no loss, no jitter, no reordering, no
    /// duplication, unlimited rate (and an unlimited queue, should a rate
    /// be set without [`LinkConfig::with_rate`]). Jitter, if set later, is
    /// [`JitterMode::UpTo`] and reordering [`ReorderMode::HoldBack`].
    pub fn ideal(delay: Duration) -> Self {
        LinkConfig {
            loss: LossModel::None,
            delay,
            jitter: Duration::ZERO,
            jitter_mode: JitterMode::UpTo,
            reorder_probability: 0.0,
            reorder_mode: ReorderMode::HoldBack,
            reorder_extra_delay: Duration::ZERO,
            duplicate_probability: 0.0,
            rate_bits_per_second: None,
            queue_limit_bytes: usize::MAX,
            queue_limit_packets: usize::MAX,
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

    /// This link also limiting its queue to `packets` waiting packets
    /// (beside the byte limit of [`LinkConfig::with_rate`]).
    pub fn with_queue_limit_packets(mut self, packets: usize) -> Self {
        self.queue_limit_packets = packets;
        self
    }

    /// This link with uniform jitter in `[0, jitter]` (FIFO kept).
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self.jitter_mode = JitterMode::UpTo;
        self
    }

    /// This link with uniform jitter within `±jitter` around the delay,
    /// never before the end of serialisation (FIFO kept), as netem does.
    pub fn with_symmetric_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self.jitter_mode = JitterMode::PlusMinus;
        self
    }

    /// This link holding back a packet with `probability` by `extra_delay`,
    /// so that later packets overtake it.
    pub fn with_reorder(mut self, probability: f64, extra_delay: Duration) -> Self {
        self.reorder_probability = probability;
        self.reorder_mode = ReorderMode::HoldBack;
        self.reorder_extra_delay = extra_delay;
        self
    }

    /// This link letting a packet skip the delay with `probability`, so it
    /// overtakes the packets in flight (netem's `reorder`).
    pub fn with_reorder_skipping_delay(mut self, probability: f64) -> Self {
        self.reorder_probability = probability;
        self.reorder_mode = ReorderMode::SkipDelay;
        self.reorder_extra_delay = Duration::ZERO;
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
    /// Datagrams reordered (held back or skipping the delay, see
    /// [`ReorderMode`]).
    pub reordered: u64,
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
    /// Counts one datagram of `bytes` handed to the receiver (a duplicate
    /// counts once more).
    pub fn record_delivery(&mut self, bytes: usize) {
        self.delivered_packets += 1;
        self.delivered_bytes += bytes as u64;
    }

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
pub enum Fate {
    /// Dropped by the drop-tail queue (counted in
    /// [`LinkStats::dropped_by_queue`]).
    QueueFull,
    /// Lost by the loss model after serialisation (counted in
    /// [`LinkStats::dropped_by_loss`]).
    Lost,
    /// Arrives at `at`; a second copy arrives at the same time if
    /// `duplicate`.
    Arrives {
        /// When it arrives at the far end.
        at: Timestamp,
        /// Whether a second copy arrives too.
        duplicate: bool,
    },
}

/// One link's state: configuration, RNG stream, queue and statistics. It
/// decides fates; the caller holds the packets until their arrival time and
/// reports each delivery with [`Link::record_delivery`].
#[derive(Clone, Debug)]
pub struct Link {
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
    stats: LinkStats,
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
pub fn link_rng(seed: u64, link: u64) -> ChaCha8Rng {
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
pub(crate) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && uniform(rng) < p
}

/// A uniform draw in `[0, max]`.
pub(crate) fn uniform_up_to(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    ((u128::from(rng.next_u64()) * (u128::from(max) + 1)) >> 64) as u64
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Time to serialise `bytes` at `bits_per_second`, rounded up to a
/// nanosecond.
fn serialisation_nanos(bytes: usize, bits_per_second: u64) -> u64 {
    let bits = bytes as u128 * 8 * 1_000_000_000;
    let rate = u128::from(bits_per_second);
    u64::try_from(bits.div_ceil(rate)).unwrap_or(u64::MAX)
}

impl Link {
    /// A link following `config`, drawing from `rng` (for example
    /// [`link_rng`]), idle at time zero.
    ///
    /// # Panics
    /// If a probability in `config` is outside 0.0 ..= 1.0 or the rate is 0,
    /// with a message naming the field.
    pub fn new(config: LinkConfig, rng: ChaCha8Rng) -> Self {
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

    /// The configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Replaces the configuration; the queue, the Gilbert-Elliott state and
    /// the statistics are kept. Packets already on the link keep the fate
    /// decided under the old configuration.
    ///
    /// # Panics
    /// As [`Link::new`], on an invalid configuration.
    pub fn set_config(&mut self, config: LinkConfig) {
        config.validate();
        self.config = config;
    }

    /// What happened on the link so far.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Counts one datagram of `bytes` handed to the receiver, see
    /// [`LinkStats::record_delivery`].
    pub fn record_delivery(&mut self, bytes: usize) {
        self.stats.record_delivery(bytes);
    }

    /// Puts a datagram of `len` bytes on the link at `now` and decides its
    /// fate. `now` must not go back between calls.
    ///
    /// The random draws, in this order, each only when its stage is
    /// active: the loss model's (for a packet that got through the queue),
    /// then the jitter, the reorder and the duplicate decisions (for a
    /// packet not lost).
    pub fn transmit(&mut self, now: Timestamp, len: usize) -> Fate {
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
                    if self.waiting_bytes.saturating_add(len) > self.config.queue_limit_bytes
                        || self.waiting.len() >= self.config.queue_limit_packets
                    {
                        self.stats.dropped_by_queue += 1;
                        return Fate::QueueFull;
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
            return Fate::Lost;
        }

        // Delay, jitter, reordering.
        let mut at = done + self.config.delay;
        if !self.config.jitter.is_zero() {
            let jitter = nanos(self.config.jitter);
            match self.config.jitter_mode {
                JitterMode::UpTo => {
                    at += Duration::from_nanos(uniform_up_to(&mut self.rng, jitter));
                }
                JitterMode::PlusMinus => {
                    let spread = uniform_up_to(&mut self.rng, jitter.saturating_mul(2));
                    at = (at + Duration::from_nanos(spread))
                        .saturating_sub(Duration::from_nanos(jitter))
                        .max(done);
                }
            }
        }
        if chance(&mut self.rng, self.config.reorder_probability) {
            self.stats.reordered += 1;
            match self.config.reorder_mode {
                ReorderMode::HoldBack => at += self.config.reorder_extra_delay,
                ReorderMode::SkipDelay => at = done,
            }
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
        assert_eq!(link.transmit(t, 1000), Fate::QueueFull);
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

    /// Offers `n` packets of `len` bytes, one every `gap`, and returns the
    /// arrival times of the ones that arrive (by packet index).
    fn offer(link: &mut Link, n: u64, gap: Duration, len: usize) -> Vec<(u64, Timestamp)> {
        (0..n)
            .filter_map(|i| {
                let now = Timestamp::ZERO + gap * i as u32;
                match link.transmit(now, len) {
                    Fate::Arrives { at, .. } => Some((i, at)),
                    Fate::QueueFull | Fate::Lost => None,
                }
            })
            .collect()
    }

    #[test]
    fn packet_limit_counts_only_waiting_packets() {
        // 1000 bytes at 8 Mbit/s: 1 ms each; two waiting packets at most,
        // whatever their size.
        let config = LinkConfig::ideal(Duration::ZERO)
            .with_rate(8_000_000, usize::MAX)
            .with_queue_limit_packets(2);
        let mut link = Link::new(config, link_rng(0, 0));
        let fates: Vec<Fate> = (0..5)
            .map(|_| link.transmit(Timestamp::ZERO, 1000))
            .collect();
        // One serialising, two waiting, two dropped.
        assert!(fates[..3].iter().all(|f| matches!(f, Fate::Arrives { .. })));
        assert_eq!(&fates[3..], &[Fate::QueueFull, Fate::QueueFull]);
        assert_eq!(link.stats().dropped_by_queue, 2);
        // At 1 ms one waiting packet has started: room for one more.
        let t = Timestamp::from_nanos(1_000_000);
        assert!(matches!(link.transmit(t, 1000), Fate::Arrives { .. }));
        assert_eq!(link.transmit(t, 1000), Fate::QueueFull);
    }

    #[test]
    fn symmetric_jitter_stays_within_bounds_and_keeps_order() {
        let config = LinkConfig::ideal(Duration::from_millis(50))
            .with_symmetric_jitter(Duration::from_millis(5));
        let mut link = Link::new(config, link_rng(1, 0));
        let gap = Duration::from_millis(10);
        let out = offer(&mut link, 10_000, gap, 100);
        assert_eq!(out.len(), 10_000);
        let mut below = 0;
        let mut sum = 0u128;
        for w in out.windows(2) {
            assert!(w[1].1 >= w[0].1, "order kept");
        }
        for &(i, at) in &out {
            let sent = Timestamp::ZERO + gap * i as u32;
            let delay = at.saturating_duration_since(sent);
            assert!(
                (Duration::from_millis(45)..=Duration::from_millis(55)).contains(&delay),
                "{delay:?}"
            );
            below += u32::from(delay < Duration::from_millis(50));
            sum += delay.as_nanos();
        }
        // Symmetric: about half below the delay, mean at the delay.
        assert!((4_000..6_000).contains(&below), "{below}");
        let mean_ms = sum as f64 / out.len() as f64 / 1e6;
        assert!((mean_ms - 50.0).abs() < 0.2, "{mean_ms}");
        // Never before the end of serialisation, even with jitter > delay.
        let config = LinkConfig::ideal(Duration::from_millis(1))
            .with_symmetric_jitter(Duration::from_millis(5));
        let mut link = Link::new(config, link_rng(2, 0));
        for (i, at) in offer(&mut link, 1000, gap, 100) {
            assert!(at >= Timestamp::ZERO + gap * i as u32);
        }
    }

    #[test]
    fn reorder_modes() {
        let gap = Duration::from_millis(1);
        // Skipping the delay: a reordered packet arrives when sent.
        let config = LinkConfig::ideal(Duration::from_millis(10)).with_reorder_skipping_delay(0.05);
        let mut link = Link::new(config, link_rng(3, 0));
        let out = offer(&mut link, 20_000, gap, 100);
        let skipped = out
            .iter()
            .filter(|&&(i, at)| at == Timestamp::ZERO + gap * i as u32)
            .count() as u64;
        assert_eq!(skipped, link.stats().reordered);
        let fraction = skipped as f64 / 20_000.0;
        assert!((fraction - 0.05).abs() < 0.005, "{fraction}");
        // Holding back: a reordered packet arrives 30 ms late.
        let config = LinkConfig::ideal(Duration::from_millis(10))
            .with_reorder(0.05, Duration::from_millis(30));
        let mut link = Link::new(config, link_rng(3, 0));
        let out = offer(&mut link, 20_000, gap, 100);
        let held = out
            .iter()
            .filter(|&&(i, at)| at == Timestamp::ZERO + gap * i as u32 + Duration::from_millis(40))
            .count() as u64;
        assert_eq!(held, link.stats().reordered);
        assert!(held > 800, "{held}");
    }
}
