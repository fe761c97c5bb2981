//! One direction of the userspace impairer: the simulator's link model
//! ([`tgp_sim::link`], the same one `tgp-sim` runs) decides each frame's
//! fate, and a heap holds the frames until their delivery time.
//!
//! A frame that arrives at time `now` goes through, in this order (see
//! [`DirSpec::link_config`] for how the options map onto the model):
//!
//! 1. **rate**: a drop-tail queue of `queue` packets (the one being
//!    serialised included) in front of a link that serialises `rate_bps`
//!    bits per second. A packet that finds the queue full is dropped
//!    (`queue_drops`). Otherwise its transmission ends at
//!    `max(now, busy_until) + len·8/rate`.
//! 2. **loss**: independent, or Gilbert-Elliott bursts. The decision comes
//!    after the rate stage: a lost packet has used the link's time, so the
//!    goodput stays at or below (1 − p) × rate whatever the sender offers.
//! 3. **delay and jitter**: delivery at `tx_end + delay ± jitter` (never
//!    before `tx_end`), never before an earlier packet (jitter keeps order).
//! 4. **reorder**: with probability `reorder` a packet skips step 3 and is
//!    delivered at `tx_end`, overtaking the packets in flight (netem's
//!    semantics: it has an effect only when there is a delay).
//! 5. **duplicate**: with probability `duplicate` a surviving packet is
//!    delivered twice.
//!
//! Before all that, a frame is dropped (`overflow`) when [`MAX_PENDING`]
//! frames already wait for delivery, so that an unlimited rate with a long
//! delay cannot exhaust memory; such a frame never reaches the model.
//!
//! Every decision is taken at arrival, so [`Link::arrive`] and
//! [`Link::pop_due`] are pure functions of their inputs and the seed: the
//! unit tests run them over virtual time, deterministically, without root.

use crate::spec::{DirSpec, Nanos};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use tgp_proto::Timestamp;
use tgp_sim::link::{self, Fate, LinkStats};

/// Packets waiting for delivery beyond which new ones are dropped
/// (`overflow`), so an unlimited rate with a long delay cannot exhaust
/// memory.
pub const MAX_PENDING: usize = 200_000;

/// Counters of one direction: the model's [`LinkStats`] under the names of
/// the impairer's reports, and the overflow drops.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Frames that arrived.
    pub rx_packets: u64,
    /// Bytes of the frames that arrived.
    pub rx_bytes: u64,
    /// Dropped because the rate stage's queue was full.
    pub queue_drops: u64,
    /// Dropped by the loss model.
    pub lost: u64,
    /// Dropped because too many packets were waiting for delivery.
    pub overflow: u64,
    /// Packets that skipped the delay (reordered).
    pub reordered: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Frames handed out for delivery (copies included).
    pub delivered: u64,
    /// Bytes handed out for delivery.
    pub delivered_bytes: u64,
}

impl DirStats {
    fn new(model: &LinkStats, overflow: u64, overflow_bytes: u64) -> Self {
        DirStats {
            rx_packets: model.offered_packets + overflow,
            rx_bytes: model.offered_bytes + overflow_bytes,
            queue_drops: model.dropped_by_queue,
            lost: model.dropped_by_loss,
            overflow,
            reordered: model.reordered,
            duplicated: model.duplicated,
            delivered: model.delivered_packets,
            delivered_bytes: model.delivered_bytes,
        }
    }
}

/// What happened to an arriving packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Scheduled for delivery (once or twice).
    Scheduled,
    /// The rate stage's queue was full.
    QueueFull,
    /// Lost by the loss model.
    Lost,
    /// Too many packets pending delivery.
    Overflow,
}

struct Pending<T> {
    at: Nanos,
    seq: u64,
    len: usize,
    pkt: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Pending<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction of an impaired path, holding packets of type `T`.
pub struct Link<T> {
    spec: DirSpec,
    model: link::Link,
    overflow: u64,
    overflow_bytes: u64,
    seq: u64,
    pending: BinaryHeap<Pending<T>>,
}

impl<T: Clone> Link<T> {
    /// A link doing what `spec` says (which must have passed
    /// [`DirSpec::validate`]), its random choices fixed by `seed` and
    /// `stream` (the direction: each direction of a path draws from its own
    /// stream of the seed, see [`link::link_rng`]).
    ///
    /// # Panics
    /// On a spec that [`DirSpec::validate`] refuses.
    pub fn new(spec: DirSpec, seed: u64, stream: u64) -> Self {
        let model = link::Link::new(spec.link_config(), link::link_rng(seed, stream));
        Link {
            spec,
            model,
            overflow: 0,
            overflow_bytes: 0,
            seq: 0,
            pending: BinaryHeap::new(),
        }
    }

    /// The spec this link follows.
    pub fn spec(&self) -> &DirSpec {
        &self.spec
    }

    /// A packet of `len` bytes arrives at `now`. `now` must not go back in
    /// time between calls.
    pub fn arrive(&mut self, now: Nanos, len: usize, pkt: T) -> Verdict {
        if self.pending.len() >= MAX_PENDING {
            self.overflow += 1;
            self.overflow_bytes += len as u64;
            return Verdict::Overflow;
        }
        match self.model.transmit(Timestamp::from_nanos(now), len) {
            Fate::QueueFull => Verdict::QueueFull,
            Fate::Lost => Verdict::Lost,
            Fate::Arrives { at, duplicate } => {
                let at = at.as_nanos();
                if duplicate {
                    self.push(at, len, pkt.clone());
                }
                self.push(at, len, pkt);
                Verdict::Scheduled
            }
        }
    }

    fn push(&mut self, at: Nanos, len: usize, pkt: T) {
        let seq = self.seq;
        self.seq += 1;
        self.pending.push(Pending { at, seq, len, pkt });
    }

    /// When the next packet is due, if any is pending.
    pub fn next_deadline(&self) -> Option<Nanos> {
        self.pending.peek().map(|p| p.at)
    }

    /// The next packet due at or before `now`, with the time it was due.
    pub fn pop_due(&mut self, now: Nanos) -> Option<(Nanos, T)> {
        if self.pending.peek()?.at > now {
            return None;
        }
        let p = self.pending.pop()?;
        self.model.record_delivery(p.len);
        Some((p.at, p.pkt))
    }

    /// Packets waiting for delivery.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The counters so far.
    pub fn stats(&self) -> DirStats {
        DirStats::new(self.model.stats(), self.overflow, self.overflow_bytes)
    }

    /// The model's own statistics (queueing delays included).
    pub fn model_stats(&self) -> &LinkStats {
        self.model.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{build, DirSpec};

    const MS: Nanos = 1_000_000;

    fn spec(pairs: &[(&str, &str)]) -> DirSpec {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        build(&v).unwrap().0
    }

    /// Offers `n` packets of `len` bytes, one every `gap` ns, and drains
    /// every delivery; returns (sequence number, delivery time) in delivery
    /// order.
    fn run(link: &mut Link<u64>, n: u64, gap: Nanos, len: usize) -> Vec<(u64, Nanos)> {
        let mut out = Vec::new();
        let mut t = 0;
        for i in 0..n {
            t = i * gap;
            while let Some((at, s)) = link.pop_due(t) {
                out.push((s, at));
            }
            link.arrive(t, len, i);
        }
        while let Some(d) = link.next_deadline() {
            t = t.max(d);
            while let Some((at, s)) = link.pop_due(t) {
                out.push((s, at));
            }
        }
        out
    }

    #[test]
    fn no_impairment_delivers_everything_at_once() {
        let mut l = Link::new(DirSpec::default(), 1, 0);
        let out = run(&mut l, 1000, MS, 100);
        assert_eq!(out.len(), 1000);
        for (i, &(s, at)) in out.iter().enumerate() {
            assert_eq!(s, i as u64);
            assert_eq!(at, i as u64 * MS);
        }
    }

    #[test]
    fn independent_loss_rate() {
        let mut l = Link::new(spec(&[("loss", "10%")]), 2, 0);
        let n = 100_000;
        let out = run(&mut l, n, 1000, 100);
        let loss = 1.0 - out.len() as f64 / n as f64;
        assert!((loss - 0.10).abs() < 0.005, "loss {loss}");
        assert_eq!(l.stats().lost + l.stats().delivered, n);
    }

    #[test]
    fn gilbert_elliott_mean_loss_and_burst_length() {
        let mut l = Link::new(spec(&[("loss", "10%"), ("burst", "4")]), 3, 0);
        let n = 200_000u64;
        let out = run(&mut l, n, 1000, 100);
        let mut delivered = vec![false; n as usize];
        for (s, _) in &out {
            delivered[*s as usize] = true;
        }
        let lost = delivered.iter().filter(|d| !**d).count();
        let mut bursts = 0;
        for i in 0..n as usize {
            if !delivered[i] && (i == 0 || delivered[i - 1]) {
                bursts += 1;
            }
        }
        let loss = lost as f64 / n as f64;
        let mean_burst = lost as f64 / bursts as f64;
        assert!((loss - 0.10).abs() < 0.01, "loss {loss}");
        assert!((mean_burst - 4.0).abs() < 0.3, "burst {mean_burst}");
    }

    #[test]
    fn independent_loss_has_short_bursts() {
        let mut l = Link::new(spec(&[("loss", "10%")]), 4, 0);
        let n = 100_000u64;
        let out = run(&mut l, n, 1000, 100);
        let mut delivered = vec![false; n as usize];
        for (s, _) in &out {
            delivered[*s as usize] = true;
        }
        let lost = delivered.iter().filter(|d| !**d).count();
        let bursts = (0..n as usize)
            .filter(|&i| !delivered[i] && (i == 0 || delivered[i - 1]))
            .count();
        // geometric: mean 1/(1-p) = 1.11
        let mean_burst = lost as f64 / bursts as f64;
        assert!((mean_burst - 1.111).abs() < 0.05, "burst {mean_burst}");
    }

    #[test]
    fn rate_serialises_back_to_back_packets() {
        // 1250-byte frames at 10 Mbit/s: 1 ms each.
        let mut l = Link::new(spec(&[("rate", "10mbit"), ("queue", "1000")]), 5, 0);
        for i in 0..100 {
            assert_eq!(l.arrive(0, 1250, i), Verdict::Scheduled);
        }
        let mut times = Vec::new();
        while let Some(d) = l.next_deadline() {
            let (at, _) = l.pop_due(d).unwrap();
            times.push(at);
        }
        assert_eq!(times.len(), 100);
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t, (i as u64 + 1) * MS);
        }
    }

    #[test]
    fn drop_tail_queue() {
        let mut l = Link::new(spec(&[("rate", "10mbit"), ("queue", "4")]), 6, 0);
        let verdicts: Vec<Verdict> = (0..10).map(|i| l.arrive(0, 1250, i)).collect();
        assert_eq!(
            verdicts
                .iter()
                .filter(|v| **v == Verdict::Scheduled)
                .count(),
            4
        );
        assert_eq!(l.stats().queue_drops, 6);
        // After one serialisation time, one slot is free again.
        assert_eq!(l.arrive(MS, 1250, 10), Verdict::Scheduled);
        assert_eq!(l.arrive(MS, 1250, 11), Verdict::QueueFull);
    }

    #[test]
    fn lost_packets_use_the_links_time() {
        // Offer twice the link rate with 50 % loss: the goodput must be
        // (1 - p) x rate, not min(rate, (1 - p) x offered).
        let mut l = Link::new(
            spec(&[("rate", "10mbit"), ("queue", "100000"), ("loss", "50%")]),
            7,
            0,
        );
        let n = 20_000;
        let out = run(&mut l, n, MS / 2, 1250);
        let last = out.iter().map(|&(_, at)| at).max().unwrap();
        // n packets x 1 ms of link time, whether lost or not.
        assert!(last <= n * MS && last > (n - 10) * MS, "last {last}");
        let goodput_fraction = out.len() as f64 / n as f64;
        assert!((goodput_fraction - 0.5).abs() < 0.02);
    }

    #[test]
    fn goodput_bounded_under_overload_with_finite_queue() {
        let mut l = Link::new(
            spec(&[("rate", "10mbit"), ("queue", "50"), ("loss", "10%")]),
            8,
            0,
        );
        // 3x overload for 10 s of virtual time.
        let gap = MS / 3;
        let n = 30_000;
        let out = run(&mut l, n, gap, 1250);
        let secs = 10.0;
        let goodput_bps = out.len() as f64 * 1250.0 * 8.0 / secs;
        let bound = 0.9 * 10e6;
        assert!(goodput_bps <= bound * 1.02, "{goodput_bps}");
        assert!(goodput_bps >= bound * 0.97, "{goodput_bps}");
    }

    #[test]
    fn delay_and_jitter_keep_order_and_bounds() {
        let mut l = Link::new(spec(&[("delay", "50ms"), ("jitter", "5ms")]), 9, 0);
        let n = 10_000;
        let gap = 10 * MS;
        let out = run(&mut l, n, gap, 100);
        assert_eq!(out.len() as u64, n);
        let mut sum = 0.0;
        for (i, &(s, at)) in out.iter().enumerate() {
            assert_eq!(s, i as u64, "order kept");
            let d = at - s * gap;
            assert!((45 * MS..=55 * MS).contains(&d), "delay {d}");
            sum += d as f64;
        }
        let mean = sum / n as f64 / MS as f64;
        assert!((mean - 50.0).abs() < 0.2, "mean {mean}");
    }

    #[test]
    fn reorder_fraction() {
        let mut l = Link::new(spec(&[("delay", "10ms"), ("reorder", "5%")]), 10, 0);
        let n = 20_000;
        let out = run(&mut l, n, MS, 100);
        assert_eq!(out.len() as u64, n);
        let overtakers = out.windows(2).filter(|w| w[1].0 < w[0].0).count() as f64;
        // Each reordered packet overtakes the ~10 packets in flight: it
        // breaks the increasing sequence once, as seen from the receiver.
        let frac = l.stats().reordered as f64 / n as f64;
        assert!((frac - 0.05).abs() < 0.005, "reordered {frac}");
        assert!(overtakers > 0.5 * frac * n as f64);
    }

    #[test]
    fn duplicate_fraction() {
        let mut l = Link::new(spec(&[("duplicate", "2%")]), 11, 0);
        let n = 50_000;
        let out = run(&mut l, n, MS, 100);
        let extra = out.len() as f64 / n as f64 - 1.0;
        assert!((extra - 0.02).abs() < 0.003, "extra {extra}");
        assert_eq!(l.stats().duplicated as usize, out.len() - n as usize);
    }

    #[test]
    fn same_seed_same_outcome() {
        let s = spec(&[
            ("loss", "10%"),
            ("burst", "3"),
            ("delay", "20ms"),
            ("jitter", "3ms"),
            ("rate", "5mbit"),
            ("queue", "20"),
            ("reorder", "1%"),
            ("duplicate", "1%"),
        ]);
        let a = run(&mut Link::new(s.clone(), 42, 0), 5000, MS / 2, 700);
        let b = run(&mut Link::new(s.clone(), 42, 0), 5000, MS / 2, 700);
        let c = run(&mut Link::new(s, 43, 0), 5000, MS / 2, 700);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
