//! Per-flow ordering of reliable segments: each flow's segments are
//! delivered in the order of their flow positions, exactly once; a flow
//! never waits for another.
//!
//! Strict flows (byte streams) wait for every hole. Bounded flows (segment
//! mode, [`crate::DeliveryClass::Segment`]) wait for a hole at most the
//! reorder hold from when the oldest segment behind it arrived; then the
//! waiting segments go on, and a skipped segment is delivered when it
//! arrives.

use crate::delivery::FlowId;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

struct Waiting {
    payload: Vec<u8>,
    created_micros: Option<u64>,
    arrived: Timestamp,
}

#[derive(Default)]
struct RxFlow {
    next: u64,
    /// Segments that arrived ahead of `next`, by flow position.
    waiting: BTreeMap<u64, Waiting>,
    /// The hold timer, when this bounded flow waits: when the oldest
    /// waiting segment arrived.
    held_since: Option<Timestamp>,
}

/// The reliable flows seen from the peer.
#[derive(Default)]
pub(crate) struct FlowReorder {
    flows: HashMap<FlowId, RxFlow>,
    /// Bounded flows waiting for a hole, by when their wait began.
    holds: BTreeSet<(Timestamp, FlowId)>,
}

impl FlowReorder {
    /// A reliable segment at `position` in `flow` arrived at `now` (with its
    /// send time if the sender stamped it); hands every segment of the flow
    /// that may now go to `deliver`, lowest position first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept(
        &mut self,
        now: Timestamp,
        flow: FlowId,
        position: u64,
        created_micros: Option<u64>,
        bounded: bool,
        payload: &[u8],
        mut deliver: impl FnMut(Vec<u8>, Option<u64>),
    ) {
        let state = self.flows.entry(flow).or_default();
        if position < state.next {
            // Sequence numbers resolve once, so this one was never
            // delivered: a bounded flow went on without it.
            if bounded {
                deliver(payload.to_vec(), created_micros);
            }
            return;
        }
        state.waiting.entry(position).or_insert_with(|| Waiting {
            payload: payload.to_vec(),
            created_micros,
            arrived: now,
        });
        while let Some(entry) = state.waiting.first_entry() {
            if *entry.key() != state.next {
                break;
            }
            let waiting = entry.remove();
            state.next += 1;
            deliver(waiting.payload, waiting.created_micros);
        }
        Self::rearm(&mut self.holds, flow, state, bounded);
    }

    /// Moves the flow's hold timer to its oldest waiting segment.
    fn rearm(
        holds: &mut BTreeSet<(Timestamp, FlowId)>,
        flow: FlowId,
        state: &mut RxFlow,
        bounded: bool,
    ) {
        let since = if bounded {
            state.waiting.values().map(|w| w.arrived).min()
        } else {
            None
        };
        if state.held_since != since {
            if let Some(old) = state.held_since {
                holds.remove(&(old, flow));
            }
            if let Some(new) = since {
                holds.insert((new, flow));
            }
            state.held_since = since;
        }
    }

    /// When the next bounded flow's hold of `hold` ends.
    pub(crate) fn next_release(&self, hold: Duration) -> Option<Timestamp> {
        self.holds.first().map(|&(since, _)| since + hold)
    }

    /// Releases every bounded flow that has waited `hold` for a hole: its
    /// waiting segments go to `deliver` in position order, skipping holes.
    pub(crate) fn release(
        &mut self,
        now: Timestamp,
        hold: Duration,
        mut deliver: impl FnMut(FlowId, Vec<u8>, Option<u64>),
    ) {
        while let Some(&(since, flow)) = self.holds.first() {
            if since + hold > now {
                break;
            }
            self.holds.remove(&(since, flow));
            let Some(state) = self.flows.get_mut(&flow) else {
                continue;
            };
            state.held_since = None;
            for (position, waiting) in std::mem::take(&mut state.waiting) {
                state.next = position + 1;
                deliver(flow, waiting.payload, waiting.created_micros);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn delivers_in_position_order_once_and_flows_do_not_wait() {
        let mut reorder = FlowReorder::default();
        let mut out = Vec::new();
        reorder.accept(ms(0), 1, 1, None, false, b"b", |p, _| out.push(p));
        assert!(out.is_empty());
        reorder.accept(ms(0), 2, 0, None, false, b"x", |p, _| out.push(p));
        assert_eq!(out, vec![b"x".to_vec()]);
        reorder.accept(ms(0), 1, 0, Some(7), false, b"a", |p, _| out.push(p));
        reorder.accept(ms(0), 1, 0, None, false, b"a", |p, _| out.push(p));
        assert_eq!(out, vec![b"x".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            reorder.next_release(Duration::from_millis(5)),
            None,
            "strict flows never release"
        );
    }

    #[test]
    fn a_bounded_flow_waits_for_a_hole_only_for_the_hold() {
        let hold = Duration::from_millis(5);
        let mut reorder = FlowReorder::default();
        let mut out = Vec::new();
        reorder.accept(ms(0), 1, 0, None, true, b"0", |p, _| out.push(p));
        reorder.accept(ms(10), 1, 2, None, true, b"2", |p, _| out.push(p));
        reorder.accept(ms(12), 1, 3, None, true, b"3", |p, _| out.push(p));
        assert_eq!(out, vec![b"0".to_vec()]);
        assert_eq!(reorder.next_release(hold), Some(ms(15)));
        reorder.release(ms(14), hold, |_, p, _| out.push(p));
        assert_eq!(out.len(), 1);
        reorder.release(ms(15), hold, |_, p, _| out.push(p));
        assert_eq!(out, vec![b"0".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        // The missing segment goes on when it arrives, and later ones
        // follow in order.
        reorder.accept(ms(40), 1, 1, None, true, b"1", |p, _| out.push(p));
        reorder.accept(ms(41), 1, 4, None, true, b"4", |p, _| out.push(p));
        assert_eq!(out.last(), Some(&b"4".to_vec()));
        assert_eq!(out.len(), 5);
        assert_eq!(reorder.next_release(hold), None);
    }
}
