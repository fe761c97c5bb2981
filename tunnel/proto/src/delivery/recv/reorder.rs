//! Per-flow ordering of reliable segments: each flow's segments are
//! delivered in the order of their flow positions, exactly once; a flow
//! never waits for another.
//!
//! Strict flows (byte streams) wait for every hole. Bounded flows (segment
//! mode, [`crate::DeliveryClass::Segment`]) wait for a hole at most the
//! reorder hold from when the oldest segment behind it arrived; then the
//! waiting segments go on, and a skipped segment is delivered when it
//! arrives.
//!
//! # Bounded state
//!
//! A flow's state is forgotten when it is idle (nothing waiting) and more
//! than [`MAX_FLOWS`] flows are known, oldest activity first, so one
//! session that sees 100,000 TCP connections keeps only the recent ones.
//! Forgetting is safe because of one fact: a flow's segments take
//! sequence numbers in the order of their flow positions. When a segment
//! arrives for a flow with no state, at position `p` > 0 and sequence
//! number `s`, the positions below `p` have sequence numbers below `s`;
//! once every sequence number below `s` is resolved (the receiver's
//! cumulative point reaches `s`), those positions either arrived through
//! this state or were resolved before it existed (delivered, then
//! forgotten). So the flow waits for positions below `p` only until the
//! cumulative point passes `s` ([`FlowReorder::settle`]); a flow that was
//! never forgotten behaves exactly as before.

use crate::delivery::FlowId;
use crate::time::Timestamp;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Flows whose state is kept while idle; beyond it the least recently
/// active idle ones are forgotten (down to three quarters of it).
pub(crate) const MAX_FLOWS: usize = 4096;

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
    /// The state was created by a segment at this position (above `next`)
    /// with this sequence number and unresolved numbers below it: whether
    /// the positions below it were resolved before is known once the
    /// cumulative point reaches that number.
    unsettled_at: Option<(u64, u64)>,
    /// When a segment of the flow last arrived.
    last_active: Timestamp,
}

/// The reliable flows seen from the peer.
#[derive(Default)]
pub(crate) struct FlowReorder {
    flows: HashMap<FlowId, RxFlow>,
    /// Bounded flows waiting for a hole, by when their wait began.
    holds: BTreeSet<(Timestamp, FlowId)>,
    /// Flows whose lower positions are unsettled, by the sequence number
    /// the cumulative point must reach.
    unsettled: BTreeSet<(u64, FlowId)>,
    /// Segments waiting in all flows.
    waiting: usize,
}

impl FlowReorder {
    /// A reliable segment at `position` in `flow`, sequence number `seq`,
    /// arrived at `now` (with its send time if the sender stamped it);
    /// `cumulative` is the receiver's cumulative point before it. Hands
    /// every segment of the flow that may now go to `deliver`, lowest
    /// position first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept(
        &mut self,
        now: Timestamp,
        flow: FlowId,
        position: u64,
        seq: u64,
        cumulative: u64,
        created_micros: Option<u64>,
        bounded: bool,
        payload: &[u8],
        mut deliver: impl FnMut(Vec<u8>, Option<u64>),
    ) {
        let state = match self.flows.entry(flow) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let mut state = RxFlow {
                    last_active: now,
                    ..RxFlow::default()
                };
                if position > 0 {
                    if cumulative >= seq {
                        // Every lower position is resolved already.
                        state.next = position;
                    } else {
                        state.unsettled_at = Some((seq, position));
                        self.unsettled.insert((seq, flow));
                    }
                }
                entry.insert(state)
            }
        };
        state.last_active = now;
        if position < state.next {
            // Sequence numbers resolve once, so this one was never
            // delivered: a bounded flow went on without it.
            if bounded {
                deliver(payload.to_vec(), created_micros);
            }
            return;
        }
        if let std::collections::btree_map::Entry::Vacant(entry) = state.waiting.entry(position) {
            entry.insert(Waiting {
                payload: payload.to_vec(),
                created_micros,
                arrived: now,
            });
            self.waiting += 1;
        }
        self.waiting -= Self::deliver_run(state, &mut deliver);
        Self::rearm(&mut self.holds, flow, state, bounded);
        self.compact();
    }

    /// Delivers the waiting segments from `next` on; returns how many.
    fn deliver_run(state: &mut RxFlow, deliver: &mut impl FnMut(Vec<u8>, Option<u64>)) -> usize {
        let mut delivered = 0;
        while let Some(entry) = state.waiting.first_entry() {
            if *entry.key() != state.next {
                break;
            }
            let waiting = entry.remove();
            state.next += 1;
            delivered += 1;
            deliver(waiting.payload, waiting.created_micros);
        }
        delivered
    }

    /// Every sequence number below `cumulative` is resolved: flows whose
    /// lower positions were unsettled below it go on from the first
    /// position they were seen at.
    pub(crate) fn settle(
        &mut self,
        cumulative: u64,
        mut deliver: impl FnMut(FlowId, bool, Vec<u8>, Option<u64>),
    ) {
        while let Some(&(seq, flow)) = self.unsettled.first() {
            if seq > cumulative {
                break;
            }
            self.unsettled.remove(&(seq, flow));
            let Some(state) = self.flows.get_mut(&flow) else {
                continue;
            };
            let Some((at, position)) = state.unsettled_at else {
                continue;
            };
            if at != seq {
                continue;
            }
            state.unsettled_at = None;
            // Positions below the first one seen that have not arrived
            // since were resolved before the state existed: the ones that
            // did arrive go on in order, skipping those, then the flow
            // goes on from there as ever.
            let bounded = state.held_since.is_some();
            let below: Vec<u64> = state.waiting.range(..position).map(|(&p, _)| p).collect();
            for p in below {
                if let Some(waiting) = state.waiting.remove(&p) {
                    self.waiting -= 1;
                    deliver(flow, bounded, waiting.payload, waiting.created_micros);
                }
            }
            state.next = state.next.max(position);
            let delivered = Self::deliver_run(state, &mut |payload, created| {
                deliver(flow, bounded, payload, created)
            });
            self.waiting -= delivered;
            Self::rearm(&mut self.holds, flow, state, bounded);
        }
    }

    /// Forgets the least recently active idle flows while more than
    /// [`MAX_FLOWS`] are known.
    fn compact(&mut self) {
        if self.flows.len() <= MAX_FLOWS {
            return;
        }
        let mut idle: Vec<(Timestamp, FlowId)> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                f.waiting.is_empty() && f.held_since.is_none() && f.unsettled_at.is_none()
            })
            .map(|(&id, f)| (f.last_active, id))
            .collect();
        idle.sort_unstable();
        let excess = self.flows.len().saturating_sub(MAX_FLOWS * 3 / 4);
        for (_, id) in idle.into_iter().take(excess) {
            self.flows.remove(&id);
        }
    }

    /// How many flows are known, and how many segments wait in them.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.flows.len(), self.waiting)
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
                state.next = position.saturating_add(1);
                self.waiting -= 1;
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
        reorder.accept(ms(0), 1, 1, 1, 0, None, false, b"b", |p, _| out.push(p));
        assert!(out.is_empty());
        reorder.accept(ms(0), 2, 0, 0, 0, None, false, b"x", |p, _| out.push(p));
        assert_eq!(out, vec![b"x".to_vec()]);
        reorder.accept(ms(0), 1, 0, 0, 0, Some(7), false, b"a", |p, _| out.push(p));
        reorder.accept(ms(0), 1, 0, 0, 0, None, false, b"a", |p, _| out.push(p));
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
        reorder.accept(ms(0), 1, 0, 0, 0, None, true, b"0", |p, _| out.push(p));
        reorder.accept(ms(10), 1, 2, 2, 0, None, true, b"2", |p, _| out.push(p));
        reorder.accept(ms(12), 1, 3, 3, 0, None, true, b"3", |p, _| out.push(p));
        assert_eq!(out, vec![b"0".to_vec()]);
        assert_eq!(reorder.next_release(hold), Some(ms(15)));
        reorder.release(ms(14), hold, |_, p, _| out.push(p));
        assert_eq!(out.len(), 1);
        reorder.release(ms(15), hold, |_, p, _| out.push(p));
        assert_eq!(out, vec![b"0".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        // The missing segment goes on when it arrives, and later ones
        // follow in order.
        reorder.accept(ms(40), 1, 1, 1, 0, None, true, b"1", |p, _| out.push(p));
        reorder.accept(ms(41), 1, 4, 4, 0, None, true, b"4", |p, _| out.push(p));
        assert_eq!(out.last(), Some(&b"4".to_vec()));
        assert_eq!(out.len(), 5);
        assert_eq!(reorder.next_release(hold), None);
    }
}
