//! Per-flow ordering of reliable segments: each flow's segments are
//! delivered in the order of their flow positions, exactly once; a flow
//! never waits for another.

use crate::delivery::FlowId;
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
struct RxFlow {
    next: u64,
    /// Segments that arrived ahead of `next`: flow position → (sequence
    /// number, payload).
    waiting: BTreeMap<u64, (u64, Vec<u8>)>,
}

/// The reliable flows seen from the peer.
#[derive(Default)]
pub(crate) struct FlowReorder {
    flows: HashMap<FlowId, RxFlow>,
}

impl FlowReorder {
    /// A reliable segment at `position` in `flow` (sequence number `seq`)
    /// arrived; hands every segment of the flow that is now in order to
    /// `deliver`, lowest position first.
    pub(crate) fn accept(
        &mut self,
        flow: FlowId,
        position: u64,
        seq: u64,
        payload: &[u8],
        mut deliver: impl FnMut(Vec<u8>),
    ) {
        let state = self.flows.entry(flow).or_default();
        if position >= state.next {
            state
                .waiting
                .entry(position)
                .or_insert_with(|| (seq, payload.to_vec()));
        }
        while let Some(entry) = state.waiting.first_entry() {
            if *entry.key() != state.next {
                break;
            }
            let (_, payload) = entry.remove();
            state.next += 1;
            deliver(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_position_order_once_and_flows_do_not_wait() {
        let mut reorder = FlowReorder::default();
        let mut out = Vec::new();
        reorder.accept(1, 1, 10, b"b", |p| out.push(p));
        assert!(out.is_empty());
        reorder.accept(2, 0, 11, b"x", |p| out.push(p));
        assert_eq!(out, vec![b"x".to_vec()]);
        reorder.accept(1, 0, 12, b"a", |p| out.push(p));
        reorder.accept(1, 0, 13, b"a", |p| out.push(p));
        assert_eq!(out, vec![b"x".to_vec(), b"a".to_vec(), b"b".to_vec()]);
    }
}
