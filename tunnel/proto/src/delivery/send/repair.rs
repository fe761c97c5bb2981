//! The repair policy: how large FEC groups are, how many repair symbols a
//! group gets proactively when it closes, and how many fresh ones when a
//! receipt or a timer shows it still short. Pure functions of the measured
//! loss, the group and the configuration.

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
}

impl RepairContext {
    /// `1 / (1 − loss)`: sent symbols per arriving one.
    pub(crate) fn loss_factor(&self) -> f64 {
        1.0 / (1.0 - self.loss.unwrap_or(0.0))
    }
}

/// Source symbols a new group may hold: fewer at high loss, so that the
/// expected repair plus a few rounds of fresh repair stay below GF(2^8)'s
/// 256 symbols.
pub(crate) fn group_size(config: &DataPlaneConfig, loss: Option<f64>, deadline: bool) -> usize {
    let Some(p) = loss else {
        return if deadline { 1 } else { 8 };
    };
    let by_loss = (0.7 * 255.0 * (1.0 - p)).floor() as usize;
    let max = if deadline { 8 } else { config.fec_max_group };
    by_loss.clamp(1, max.clamp(1, 128))
}

/// Repair symbols a group of `k` sources gets when it closes.
///
/// Deadline and segment-mode groups get enough that the group fails with
/// probability at most their residual target under an upper estimate of
/// the loss; stream groups about the expected loss (see [`GroupKind`]).
pub(crate) fn proactive_repairs(
    config: &DataPlaneConfig,
    context: RepairContext,
    k: usize,
    kind: GroupKind,
) -> u32 {
    let measured = context.loss.unwrap_or(0.0);
    match kind {
        GroupKind::Deadline => {
            let p = match context.loss {
                None => config.deadline_loss_floor.max(0.3),
                // An upper estimate: the measurement is noisy and a
                // deadline group cannot wait for a second chance.
                Some(p) => (p * 1.3 + 0.01).max(config.deadline_loss_floor),
            }
            .min(config.loss_cap());
            repairs_for_residual(k, p, config.deadline_residual_target, 255 - k) as u32
        }
        GroupKind::Segment => {
            // Enough that the group rarely needs a repair round trip: a
            // group that waits for one holds the inner TCP's segments
            // behind it, which it reads as congestion or reordering.
            let p = (measured * 1.2 + 0.002).min(config.loss_cap());
            let target = if context.tail {
                config.reliable_residual_target / 10.0
            } else {
                config.reliable_residual_target
            };
            repairs_for_residual(k, p, target, 255 - k) as u32
        }
        GroupKind::Stream => {
            // A stream keeps the sender busy, so a repair round trip costs
            // it no throughput: send about the expected loss less a
            // standard deviation, and leave the rest to fresh repair on
            // request (surplus symbols are the only waste). With nothing
            // queued behind, aim above the expected loss instead.
            let expected = k as f64 * measured / (1.0 - measured);
            let spread = (k as f64 * measured).sqrt() / (1.0 - measured);
            let margin = if context.tail { 1.0 } else { -1.0 };
            let repairs = (expected + margin * spread).round().max(0.0);
            (repairs as usize).min(255 - k) as u32
        }
    }
}

/// What a group carries, which decides its proactive repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupKind {
    /// Deadline segments: no second chance.
    Deadline,
    /// Segment-mode TCP: a repair round trip shows in the inner TCP.
    Segment,
    /// Byte streams (strictly ordered reliable flows).
    Stream,
}

/// Whether a group of `k` may still get a fresh repair symbol (otherwise
/// it sends its unconfirmed sources again).
pub(crate) fn has_fresh_repair(k: usize, next_repair_index: usize) -> bool {
    k + next_repair_index < fec::MAX_SYMBOLS
}

/// Smallest number of repair symbols such that a group of `k` sources
/// fails (fewer than `k` of `k + r` arrive) with probability at most
/// `target`, when each symbol is lost independently with probability `p`.
pub(crate) fn repairs_for_residual(k: usize, p: f64, target: f64, max: usize) -> usize {
    let p = p.clamp(0.0, LOSS_HARD_CAP);
    if p <= 0.0 {
        return 0;
    }
    for r in 0..=max {
        let n = k + r;
        // P(fewer than k arrive) = Σ_{a<k} C(n,a) q^a p^(n−a), q = 1 − p.
        let q = 1.0 - p;
        let mut failure = 0.0;
        let mut coefficient = 1.0f64; // C(n, a)
        for a in 0..k {
            if a > 0 {
                coefficient *= (n - a + 1) as f64 / a as f64;
            }
            failure += coefficient * q.powi(a as i32) * p.powi((n - a) as i32);
        }
        if failure <= target {
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
        assert_eq!(repairs_for_residual(1, 0.0, 1e-3, 50), 0);
        assert_eq!(repairs_for_residual(1, 0.1, 2e-3, 50), 2);
        assert!(repairs_for_residual(8, 0.3, 1e-3, 200) > repairs_for_residual(8, 0.1, 1e-3, 200));
    }

    #[test]
    fn groups_shrink_at_high_loss_and_start_small() {
        let config = DataPlaneConfig::default();
        assert_eq!(group_size(&config, None, false), 8);
        assert_eq!(group_size(&config, None, true), 1);
        assert_eq!(group_size(&config, Some(0.0), false), 64);
        assert!(group_size(&config, Some(0.9), false) < 20);
        assert_eq!(group_size(&config, Some(0.0), true), 8);
    }

    #[test]
    fn reliable_groups_get_about_the_expected_loss() {
        let config = DataPlaneConfig::default();
        let steady = RepairContext {
            loss: Some(0.1),
            tail: false,
        };
        let tail = RepairContext {
            loss: Some(0.1),
            tail: true,
        };
        let r = proactive_repairs(&config, steady, 64, GroupKind::Segment);
        assert!((8..=20).contains(&r), "{r}");
        assert!(proactive_repairs(&config, tail, 64, GroupKind::Segment) > r);
        let clean = RepairContext {
            loss: Some(0.0),
            tail: false,
        };
        assert!(proactive_repairs(&config, clean, 64, GroupKind::Segment) <= 1);
        let stream = proactive_repairs(&config, steady, 64, GroupKind::Stream);
        assert!((3..=8).contains(&stream), "{stream}");
    }
}
