//! The repair policy: how much repair each kind of source earns as it goes
//! out, how wide a window a repair covers, and how many fresh symbols to
//! send when the receiver reports missing equations. Pure functions of the
//! measured loss and the configuration.

use crate::delivery::config::{DataPlaneConfig, LOSS_HARD_CAP};
use crate::delivery::fec;

/// What the policy needs to know of the sender's situation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RepairContext {
    /// Loss of our packets (capped), if measured.
    pub loss: Option<f64>,
    /// Nothing reliable is queued behind: no later data hides another
    /// round trip.
    pub tail: bool,
    /// Estimated one-way delay to the peer (half the least round trip),
    /// once measured.
    pub one_way: Option<std::time::Duration>,
    /// Loss measured on the peer's packets to us, if any: paths are often
    /// symmetric, and early in a session it is measured over more packets
    /// than the peer's first reports of ours.
    pub reverse_loss: Option<f64>,
}

impl RepairContext {
    /// `1 / (1 − loss)`: sent symbols per arriving one.
    pub(crate) fn loss_factor(&self) -> f64 {
        1.0 / (1.0 - self.loss.unwrap_or(0.0))
    }
}

/// What a source carries, which decides its proactive repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// Deadline segments: no second chance.
    Deadline,
    /// Segment-mode TCP: a repair round trip shows in the inner TCP.
    Segment,
    /// Byte streams (strictly ordered reliable flows).
    Stream,
}

impl SourceKind {
    /// Index into per-kind arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            SourceKind::Deadline => 0,
            SourceKind::Segment => 1,
            SourceKind::Stream => 2,
        }
    }
}

/// Live deadline sources a repair is expected to cover: the stream's
/// datagrams within one deadline, for typical game and voice rates.
const DEADLINE_WINDOW: usize = 3;

/// The newest live deadline sources a proactive repair always covers, even
/// those the one-way estimate says arrive late (an asymmetric path makes
/// half the round trip longer than the forward delay).
pub(crate) const DEADLINE_KEEP: usize = 2;

/// Repair symbols each source of `kind` earns.
///
/// - A stream keeps the sender busy, so a repair round trip costs it no
///   throughput: a little below the expected loss, the rest on request
///   (surplus symbols are the only waste).
/// - Segment-mode TCP: above the expected loss by
///   [`DataPlaneConfig::segment_repair_factor`], so that equations outrun
///   losses and a hole is filled within a few packets, inside the
///   receiver's reorder hold.
/// - Deadline traffic cannot wait: enough that a datagram is lost for good
///   (lost, and not recoverable from the rest of its window of live
///   datagrams and the repair over it) with probability at most the
///   residual target under an upper estimate of the loss. The target is
///   per datagram, as the on-time share is counted; aiming it at the whole
///   window's decoding (a datagram that arrived needs no repair) spent up
///   to one repair in three more than the on-time figure asks for.
pub(crate) fn proactive_rate(
    config: &DataPlaneConfig,
    context: RepairContext,
    kind: SourceKind,
) -> f64 {
    let measured = context.loss.unwrap_or(0.0);
    match kind {
        SourceKind::Stream => 0.8 * measured / (1.0 - measured),
        SourceKind::Segment => {
            let p = (measured * 1.1 + 0.002).min(config.loss_cap());
            config.segment_repair_factor * p / (1.0 - p)
        }
        SourceKind::Deadline => {
            let p = match context.loss {
                None => config.deadline_loss_floor.max(0.3),
                // An upper estimate: the measurement is noisy and a
                // deadline datagram cannot wait for a second chance.
                Some(p) => (p * 1.1 + 0.005).max(config.deadline_loss_floor),
            }
            .min(config.loss_cap());
            let k = DEADLINE_WINDOW;
            let rate = repairs_for_source_residual(k, p, config.deadline_residual_target, 255 - k)
                as f64
                / k as f64;
            // Once loss is seen, every source gets a repair within the
            // newest DEADLINE_KEEP (the ones a repair sent now reaches in
            // time): at one repair in three, a third of the sources of a
            // fast stream had none (sim, 1 % loss: 0.998 on time).
            if measured >= config.deadline_loss_floor / 2.0 {
                rate.max(1.0 / DEADLINE_KEEP as f64)
            } else {
                rate
            }
        }
    }
}

/// Fresh repair symbols for a span of stream holes whose receipt says it
/// lacks `needed` equations: as many as arrive as `needed` at the measured
/// loss. A stream's receiver holds everything behind a hole until it is
/// filled, so a span left short waits another round trip; asking for less
/// (the segment kinds' [`DataPlaneConfig::reactive_repair_factor`]) saved
/// 1–8 % of the wire in `sim reliable` at 100 ms (and 0–2 % of capacity at
/// 10–50 % loss, 7 % at 70 %) but doubled the delay holes added (p50 254
/// against 162 ms at 10 % loss, 402 against 201 ms at 30 %, mean of four
/// seeds), and with repairs counted in flight it left every span one
/// short at 0 % loss, to be asked for one round trip at a time.
pub(crate) fn stream_reactive_count(needed: u64, context: RepairContext) -> u32 {
    ((needed as f64 * context.loss_factor()).round() as u32).max(1)
}

/// Most sources a tail cover protects: a message (a request, a reply, a
/// handshake), not the end of a bulk burst, which the proactive rate and
/// the receipts behind it already serve.
pub(crate) const TAIL_BURST_MAX: usize = 16;

/// Probability a source of a covered tail is left for the probe timeout
/// (lost, and not recoverable from the rest of the tail and its cover).
const TAIL_RESIDUAL: f64 = 2e-3;

/// Loss assumed for a tail cover before any is measured.
const TAIL_UNMEASURED_LOSS: f64 = 0.1;

/// How long the send queue must stay empty after a reliable source before
/// its tail is covered: an eighth of the round trip, within 1..=20 ms (a
/// stream that goes on within it needs no cover; a cover that comes later
/// delays a lost tail by that much, against a probe timeout of two round
/// trips).
pub(crate) fn tail_cover_delay(context: RepairContext) -> std::time::Duration {
    use std::time::Duration;
    context.one_way.map_or(Duration::from_millis(5), |one_way| {
        (one_way / 4).clamp(Duration::from_millis(1), Duration::from_millis(20))
    })
}

/// Repair symbols that cover the tail of a reliable exchange: `burst`
/// sources went out within the last round trip and nothing follows them,
/// so a lost one shows to no receipt and waits for the probe timeout (two
/// round trips) — the p99 of a short exchange. Enough that each is lost
/// for good with probability at most [`TAIL_RESIDUAL`] under an upper
/// estimate of the loss, at most `2 × burst + 2`; none past
/// [`TAIL_BURST_MAX`].
pub(crate) fn tail_cover(context: RepairContext, burst: usize) -> u32 {
    if burst == 0 || burst > TAIL_BURST_MAX {
        return 0;
    }
    // Either direction's measurement: a cover costs a message a few
    // packets, a miss costs it two round trips.
    let measured = match (context.loss, context.reverse_loss) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0).max(b.unwrap_or(0.0))),
    };
    let p = measured
        .map_or(TAIL_UNMEASURED_LOSS, |p| p * 1.1 + 0.001)
        .min(LOSS_HARD_CAP);
    repairs_for_source_residual(burst, p, TAIL_RESIDUAL, 2 * burst + 2) as u32
}

/// How many recent sequence numbers a proactive repair of `kind` reaches
/// back: a few repair intervals, so that every source is covered by
/// several repairs, within one window.
pub(crate) fn proactive_span(context: RepairContext, kind: SourceKind) -> u64 {
    if kind == SourceKind::Deadline {
        return fec::MAX_WINDOW as u64;
    }
    let p = context.loss.unwrap_or(0.0).max(1.0 / 64.0);
    ((3.0 / p).ceil() as u64).clamp(8, fec::MAX_WINDOW as u64)
}

/// Smallest number of repair symbols `r` over a window of `k` sources such
/// that one given source is lost for good with probability at most
/// `target`, when each symbol is lost independently with probability `p`:
/// the source is lost and fewer than `k` of the other `k − 1 + r` symbols
/// arrive (any `k` symbols decode the window).
pub(crate) fn repairs_for_source_residual(k: usize, p: f64, target: f64, max: usize) -> usize {
    let p = p.clamp(0.0, LOSS_HARD_CAP);
    if p <= 0.0 || k == 0 {
        return 0;
    }
    let q = 1.0 - p;
    for r in 0..=max {
        let others = k - 1 + r;
        // P(fewer than k of `others` arrive) = Σ_{a<k} C(others,a) q^a p^(others−a).
        let mut short = 0.0;
        let mut coefficient = 1.0f64; // C(others, a)
        for a in 0..k.min(others + 1) {
            if a > 0 {
                coefficient *= (others - a + 1) as f64 / a as f64;
            }
            short += coefficient * q.powi(a as i32) * p.powi((others - a) as i32);
        }
        if p * short <= target {
            return r;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_repairs_grow_with_loss() {
        assert_eq!(repairs_for_source_residual(1, 0.0, 1e-3, 50), 0);
        // One source: lost (0.1) and every one of r copies lost: 0.1^(r+1).
        assert_eq!(repairs_for_source_residual(1, 0.1, 2e-3, 50), 2);
        assert_eq!(repairs_for_source_residual(1, 0.1, 1.1e-2, 50), 1);
        // Three sources, 1 % loss: one repair leaves 0.01 × (1 − 0.99³) ≈
        // 3e-4 per source.
        assert_eq!(repairs_for_source_residual(3, 0.01, 5e-4, 50), 1);
        assert_eq!(repairs_for_source_residual(3, 0.01, 2e-4, 50), 2);
        assert!(
            repairs_for_source_residual(8, 0.3, 1e-3, 200)
                > repairs_for_source_residual(8, 0.1, 1e-3, 200)
        );
        assert_eq!(repairs_for_source_residual(3, 0.5, 1e-12, 4), 4);
    }

    #[test]
    fn a_tail_is_covered_by_the_loss_and_a_bulk_burst_is_not() {
        let at = |loss: Option<f64>| RepairContext {
            loss,
            tail: true,
            one_way: Some(std::time::Duration::from_millis(25)),
            reverse_loss: None,
        };
        // A clean path needs no cover; one lost packet in a hundred does.
        assert_eq!(tail_cover(at(Some(0.0)), 1), 0);
        assert_eq!(tail_cover(at(Some(0.01)), 1), 1);
        // 10 %: one repair leaves ~1.2 % of single-packet tails waiting.
        assert_eq!(tail_cover(at(Some(0.1)), 1), 2);
        assert!(tail_cover(at(Some(0.1)), 8) > tail_cover(at(Some(0.1)), 1));
        assert!(tail_cover(at(None), 1) >= 1, "unmeasured loss is not zero");
        let reverse = RepairContext {
            reverse_loss: Some(0.1),
            ..at(Some(0.0))
        };
        assert_eq!(tail_cover(reverse, 1), 2, "the worse direction counts");
        assert_eq!(tail_cover(at(Some(0.5)), 1), 4, "bounded: 2 × burst + 2");
        assert_eq!(tail_cover(at(Some(0.1)), TAIL_BURST_MAX + 1), 0);
        assert_eq!(tail_cover(at(Some(0.1)), 0), 0);
        assert_eq!(
            tail_cover_delay(at(None)),
            std::time::Duration::from_millis(6) + std::time::Duration::from_micros(250)
        );
    }

    #[test]
    fn rates_follow_the_loss_and_the_kind() {
        let config = DataPlaneConfig::default();
        let at = |loss: f64| RepairContext {
            loss: Some(loss),
            tail: false,
            one_way: None,
            reverse_loss: None,
        };
        let expected = 0.1 / 0.9;
        let stream = proactive_rate(&config, at(0.1), SourceKind::Stream);
        let segment = proactive_rate(&config, at(0.1), SourceKind::Segment);
        assert!(stream < expected && stream > expected / 2.0, "{stream}");
        assert!(segment > expected, "{segment}");
        assert_eq!(proactive_rate(&config, at(0.0), SourceKind::Stream), 0.0);
        assert!(
            proactive_rate(&config, at(0.3), SourceKind::Deadline)
                > proactive_rate(&config, at(0.05), SourceKind::Deadline)
        );
        assert!(proactive_span(at(0.1), SourceKind::Segment) >= 8);
        assert_eq!(
            proactive_span(at(0.001), SourceKind::Stream),
            fec::MAX_WINDOW as u64
        );
    }
}
