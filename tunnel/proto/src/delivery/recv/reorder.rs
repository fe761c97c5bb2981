//! Per-flow ordering of reliable segments: each flow's segments are
//! delivered in the order of their flow positions, exactly once; a flow
//! never waits for another.

use crate::delivery::FlowId;
use std::collections::{BTreeMap, HashMap};

#[derive(Default)]
struct RxFlow {
    next: u64,
    /// Segments that arrived ahead of `next`: flow position → (payload,
    /// send time if stamped).
    waiting: BTreeMap<u64, (Vec<u8>, Option<u64>)>,
}

/// The reliable flows seen from the peer.
#[derive(Default)]
pub(crate) struct FlowReorder {
    flows: HashMap<FlowId, RxFlow>,
}

impl FlowReorder {
    /// A reliable segment at `position` in `flow` arrived (with its send
    /// time if the sender stamped it); hands every segment of the flow that
    /// is now in order to `deliver`, lowest position first.
    pub(crate) fn accept(
        &mut self,
        flow: FlowId,
        position: u64,
        created_micros: Option<u64>,
        payload: &[u8],
        mut deliver: impl FnMut(Vec<u8>, Option<u64>),
    ) {
        let state = self.flows.entry(flow).or_default();
        if position >= state.next {
            state
                .waiting
                .entry(position)
                .or_insert_with(|| (payload.to_vec(), created_micros));
        }
        while let Some(entry) = state.waiting.first_entry() {
            if *entry.key() != state.next {
                break;
            }
            let (payload, created) = entry.remove();
            state.next += 1;
            deliver(payload, created);
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
        reorder.accept(1, 1, None, b"b", |p, _| out.push(p));
        assert!(out.is_empty());
        reorder.accept(2, 0, None, b"x", |p, _| out.push(p));
        assert_eq!(out, vec![b"x".to_vec()]);
        reorder.accept(1, 0, Some(7), b"a", |p, _| out.push(p));
        reorder.accept(1, 0, None, b"a", |p, _| out.push(p));
        assert_eq!(out, vec![b"x".to_vec(), b"a".to_vec(), b"b".to_vec()]);
    }
}
