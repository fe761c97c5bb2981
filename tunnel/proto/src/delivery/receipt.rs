//! Receipts and the bilateral records.
//!
//! Receiving side ([`ReceiptSchedule`], [`build_receipt`],
//! [`encode_within`]): what to tell the peer about its segments and when
//! (cumulative point, resolved and abandoned ranges, FEC groups still
//! short, packet-level feedback), riding on every packet while there is
//! news, alone after two eliciting packets or the receipt interval, and
//! flooded while the peer has not confirmed it; trimmed to fit the room in
//! a packet without ever claiming more than is known.
//!
//! Sending side ([`OutgoingRecord`]): what the peer's receipts say it got
//! of ours — the sender's copy of the bilateral record, built only from
//! receipts — with the confirmation (receipt-of-receipt) we owe and the
//! abandonments still to announce.

use super::ranges::RangeSet;
use crate::time::Timestamp;
use crate::wire::frame::{Frame, Receipt};
use std::ops::Range;
use std::time::Duration;

/// Most ranges a receipt lists.
pub(crate) const RECEIPT_MAX_RANGES: usize = 500;
/// Most abandoned ranges a receipt lists.
pub(crate) const RECEIPT_MAX_ABANDONED: usize = 24;
/// Most FEC needs a receipt lists.
pub(crate) const RECEIPT_MAX_NEEDS: usize = 64;
/// Bytes a confirmation frame needs at most.
pub(crate) const CONFIRM_FRAME_MAX: usize = 11;

/// What one direction of the session delivered and abandoned, in sequence
/// numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionRecord {
    /// Sequence numbers delivered to the receiving caller.
    pub delivered: RangeSet,
    /// Sequence numbers given up (deadline passed).
    pub abandoned: RangeSet,
}

/// The bilateral record of a session. Once both sides are quiet, one
/// side's `outgoing` equals the other's `incoming`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// What this side sent, as the peer's receipts reported it.
    pub outgoing: DirectionRecord,
    /// What this side received: delivered or abandoned here.
    pub incoming: DirectionRecord,
}

// ----------------------------------------------------------------------
// Receiving side
// ----------------------------------------------------------------------

/// When the receiver owes the peer a receipt.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReceiptSchedule {
    /// Something was resolved since the last receipt.
    pub news: bool,
    /// Packets with DATA, REPAIR or ABANDON since the last receipt.
    pub eliciting: u32,
    /// When the first of those arrived.
    pub first_unreported_at: Option<Timestamp>,
    /// When the last receipt went out.
    pub last_sent_at: Option<Timestamp>,
    /// Authentic packets since the last receipt.
    pub packets_since: u32,
    /// The peer holds our receipts' full record below this
    /// (its confirmation).
    pub peer_confirmed: u64,
}

impl ReceiptSchedule {
    /// An authentic packet arrived; `eliciting` if it carried something
    /// to acknowledge.
    pub(crate) fn on_packet(&mut self, now: Timestamp, eliciting: bool) {
        if eliciting {
            self.eliciting += 1;
            self.first_unreported_at.get_or_insert(now);
        }
    }

    /// Whether the next packet should carry a receipt if it has room: at
    /// once for packets with something to acknowledge or news; for packets
    /// that carried only control frames (the peer's receipts), at most once
    /// per `quiet_interval`. Those need no repair decision, only the
    /// peer's round-trip and loss samples, and a receipt on every packet of
    /// a sparse stream was about a tenth of its bytes.
    pub(crate) fn wants_receipt(&self, now: Timestamp, quiet_interval: Duration) -> bool {
        self.eliciting > 0
            || self.news
            || (self.packets_since > 0
                && self
                    .last_sent_at
                    .is_none_or(|at| now - at >= quiet_interval))
    }

    /// When a receipt is due because of what arrived: at once after two
    /// eliciting packets, otherwise `interval` after the first.
    pub(crate) fn ack_due_at(&self, interval: std::time::Duration) -> Option<Timestamp> {
        let first = self.first_unreported_at?;
        Some(if self.eliciting >= 2 {
            first
        } else {
            first + interval
        })
    }

    /// A receipt went out.
    pub(crate) fn on_sent(&mut self, now: Timestamp) {
        self.news = false;
        self.eliciting = 0;
        self.first_unreported_at = None;
        self.packets_since = 0;
        self.last_sent_at = Some(now);
    }
}

/// What a receipt is built from.
pub(crate) struct ReceiptInput<'a> {
    /// Everything below is resolved here.
    pub cumulative: u64,
    /// Resolved numbers (at and above `cumulative - 1`).
    pub resolved: &'a RangeSet,
    /// Numbers abandoned here.
    pub abandoned: &'a RangeSet,
    /// What decoding lacks: (oldest missing, equations needed).
    pub needs: Vec<(u64, u64)>,
    /// The peer's confirmation point.
    pub peer_confirmed: u64,
    /// Highest packet number received and when.
    pub largest_received: Option<(u64, Timestamp)>,
    /// Wire bytes received from the peer.
    pub bytes_received: u64,
    /// Loss measured on the peer's packets.
    pub loss: Option<f64>,
}

/// The full receipt (lists capped at their maxima).
pub(crate) fn build_receipt(now: Timestamp, input: ReceiptInput<'_>) -> Receipt {
    let cumulative = input.cumulative;
    let ranges: Vec<Range<u64>> = input
        .resolved
        .iter_from(cumulative)
        .filter(|r| r.start > cumulative)
        .take(RECEIPT_MAX_RANGES)
        .collect();
    let info_end = ranges.last().map_or(cumulative, |r| r.end);
    let confirmed_base = input.peer_confirmed;
    let mut abandoned: Vec<Range<u64>> = input
        .abandoned
        .iter_from(confirmed_base)
        .take(RECEIPT_MAX_ABANDONED + 1)
        .collect();
    let abandoned_complete_below = if abandoned.len() > RECEIPT_MAX_ABANDONED {
        abandoned.pop().map_or(info_end, |r| r.start)
    } else {
        info_end
    };
    let needs: Vec<(u64, u64)> = input
        .needs
        .iter()
        .copied()
        .take(RECEIPT_MAX_NEEDS)
        .collect();
    let mut covered_below = u64::MAX;
    if ranges.len() >= RECEIPT_MAX_RANGES {
        covered_below = info_end;
    }
    let covered_below =
        covered_below.min(input.resolved.end().max(cumulative).saturating_add(65_536));
    let (largest_packet, ack_delay_micros) = input
        .largest_received
        .map_or((0, 0), |(pn, at)| (pn, (now - at).as_micros() as u64));
    Receipt {
        cumulative,
        ranges,
        confirmed_base,
        abandoned_complete_below,
        abandoned,
        needs,
        covered_below,
        largest_packet,
        ack_delay_micros,
        bytes_received: input.bytes_received,
        loss_per_65536: (input.loss.unwrap_or(0.0) * 65536.0).min(65535.0) as u64,
    }
}

/// Encodes `receipt` into `scratch` (replacing its contents), trimming its
/// lists until it fits `room`; trimmed lists make the bounds it states
/// conservative. Returns whether it fits.
pub(crate) fn encode_within(mut receipt: Receipt, room: usize, scratch: &mut Vec<u8>) -> bool {
    loop {
        scratch.clear();
        Frame::Receipt(receipt.clone()).encode(scratch);
        if scratch.len() <= room
            || (receipt.ranges.is_empty()
                && receipt.needs.is_empty()
                && receipt.abandoned.is_empty())
        {
            break;
        }
        if !receipt.needs.is_empty() {
            receipt.needs.truncate(receipt.needs.len() / 2);
            let cut = receipt
                .needs
                .last()
                .map_or(receipt.cumulative, |&(f, _)| f.saturating_add(1));
            receipt.covered_below = receipt.covered_below.min(cut);
        } else if !receipt.abandoned.is_empty() {
            let dropped = receipt.abandoned.pop().map_or(0, |r| r.start);
            receipt.abandoned_complete_below = receipt.abandoned_complete_below.min(dropped);
        } else {
            receipt.ranges.truncate(receipt.ranges.len() / 2);
            let end = receipt.ranges.last().map_or(receipt.cumulative, |r| r.end);
            receipt.covered_below = receipt.covered_below.min(end);
            receipt.abandoned_complete_below = receipt
                .abandoned_complete_below
                .min(end.max(receipt.cumulative));
        }
    }
    scratch.len() <= room
}

// ----------------------------------------------------------------------
// Sending side
// ----------------------------------------------------------------------

/// The sender's view of what the peer resolved, from its receipts.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutgoingRecord {
    /// Delivered and abandoned, as far as the receipts' statuses are final.
    pub record: DirectionRecord,
    /// Resolved numbers above `known_point` (and a little below).
    resolved: RangeSet,
    /// Every number below is resolved and its status recorded.
    known_point: u64,
    /// A confirmation is owed.
    pub confirm_due: bool,
    /// When the last confirmation went out.
    pub last_confirm_sent_at: Option<Timestamp>,
    /// Abandonments not yet settled by the peer's receipts.
    abandon_pending: RangeSet,
}

/// Why a receipt was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImpossibleReceipt;

impl OutgoingRecord {
    /// Whether the peer has resolved `seq` (delivered or abandoned).
    pub(crate) fn is_resolved(&self, seq: u64) -> bool {
        seq < self.known_point || self.resolved.contains(seq)
    }

    /// The point below which the record is complete.
    pub(crate) fn known_point(&self) -> u64 {
        self.known_point
    }

    /// Records that we gave up `seq` (its deadline passed): announce it.
    pub(crate) fn abandon(&mut self, seq: u64) {
        self.abandon_pending.insert(seq);
    }

    /// Whether abandonments wait to be announced.
    pub(crate) fn abandon_due(&self) -> bool {
        !self.abandon_pending.is_empty()
    }

    /// Up to `count` pending abandoned ranges.
    pub(crate) fn pending_abandoned(&self, count: usize) -> Vec<Range<u64>> {
        self.abandon_pending.iter().take(count).collect()
    }

    /// Applies a receipt of the peer (checked with [`OutgoingRecord::check`]).
    /// `lowest_in_flight` is the first sequence number of our oldest group:
    /// resolution below it is no longer needed.
    pub(crate) fn apply(&mut self, receipt: &Receipt, lowest_in_flight: u64) {
        let mut resolved: Vec<Range<u64>> = Vec::with_capacity(receipt.ranges.len() + 1);
        if receipt.cumulative > 0 {
            resolved.push(0..receipt.cumulative);
        }
        resolved.extend(receipt.ranges.iter().cloned());
        // Statuses are final where the abandoned list is complete. Both
        // lists are ascending and disjoint (the parser builds them so), so
        // one merge walk does it: O(ranges + abandoned), not their product.
        let low = self.known_point;
        let high = receipt.abandoned_complete_below;
        let mut next_abandoned = 0;
        for range in &resolved {
            self.resolved.insert_range(range.clone());
            let clipped = range.start.max(low)..range.end.min(high);
            if clipped.start >= clipped.end {
                continue;
            }
            while receipt
                .abandoned
                .get(next_abandoned)
                .is_some_and(|a| a.end <= clipped.start)
            {
                next_abandoned += 1;
            }
            let mut at = clipped.start;
            let mut index = next_abandoned;
            while let Some(abandoned) = receipt.abandoned.get(index) {
                if abandoned.start >= clipped.end {
                    break;
                }
                let a = abandoned.start.max(clipped.start)..abandoned.end.min(clipped.end);
                if a.start > at {
                    self.record.delivered.insert_range(at..a.start);
                }
                self.record.abandoned.insert_range(a.clone());
                at = at.max(a.end);
                if abandoned.end > clipped.end {
                    // It reaches into the next resolved range too.
                    break;
                }
                index += 1;
            }
            next_abandoned = index;
            if at < clipped.end {
                self.record.delivered.insert_range(at..clipped.end);
            }
        }
        let known = receipt.cumulative.min(high).max(self.known_point);
        if known > self.known_point || receipt.confirmed_base < self.known_point {
            self.confirm_due = true;
        }
        self.known_point = known;
        let cut = lowest_in_flight.min(known);
        self.resolved.remove_below(cut);
        // Abandonments the peer has settled need no more announcing (one
        // range count each, not one look-up per number).
        let pending = std::mem::take(&mut self.abandon_pending);
        for r in pending.iter() {
            let above = r.start.max(self.known_point)..r.end;
            let settled = above.start >= above.end
                || self.resolved.count_within(above.clone()) == above.end - above.start;
            if !settled {
                self.abandon_pending.insert_range(r);
            }
        }
    }

    /// Whether a receipt could have been sent for our sequence space up to
    /// `next_seq`.
    pub(crate) fn check(receipt: &Receipt, next_seq: u64) -> Result<(), ImpossibleReceipt> {
        if receipt.cumulative > next_seq || receipt.ranges.last().is_some_and(|r| r.end > next_seq)
        {
            return Err(ImpossibleReceipt);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn receipt(cumulative: u64, ranges: Vec<Range<u64>>) -> Receipt {
        Receipt {
            cumulative,
            abandoned_complete_below: u64::MAX,
            covered_below: u64::MAX,
            ranges,
            ..Receipt::default()
        }
    }

    #[test]
    fn the_record_follows_receipts_and_owes_a_confirmation() {
        let mut out = OutgoingRecord::default();
        out.apply(&receipt(3, vec![5..7]), 0);
        assert!(out.is_resolved(2) && !out.is_resolved(3) && out.is_resolved(6));
        assert!(out.confirm_due);
        assert_eq!(out.known_point(), 3);
        assert_eq!(
            out.record.delivered.iter().collect::<Vec<_>>(),
            vec![0..3, 5..7]
        );
    }

    #[test]
    fn settled_abandonments_stop_being_announced() {
        let mut out = OutgoingRecord::default();
        out.abandon(4);
        out.abandon(9);
        assert!(out.abandon_due());
        out.apply(&receipt(5, vec![]), 0);
        assert_eq!(out.pending_abandoned(10), vec![9..10]);
    }

    /// The merge walk records exactly what the old nested loop did.
    #[test]
    fn applying_matches_a_number_by_number_model() {
        use proptest::prelude::*;
        proptest!(|(cum in 0u64..50, raw in proptest::collection::vec((1u64..6, 1u64..6), 0..12),
                    araw in proptest::collection::vec((0u64..6, 1u64..8), 0..12), complete in 0u64..200)| {
            let mut at = cum;
            let ranges: Vec<Range<u64>> = raw.iter().map(|&(g, l)| { let s = at + g; at = s + l; s..at }).collect();
            let mut at = 0;
            let abandoned: Vec<Range<u64>> = araw.iter().map(|&(g, l)| { let s = at + g; at = s + l; s..at }).collect();
            let r = Receipt { cumulative: cum, ranges: ranges.clone(), abandoned_complete_below: complete,
                              abandoned: abandoned.clone(), covered_below: u64::MAX, ..Receipt::default() };
            let mut out = OutgoingRecord::default();
            out.apply(&r, 0);
            for n in 0..250u64 {
                let resolved = n < cum || ranges.iter().any(|x| x.contains(&n));
                let final_ = resolved && n < complete;
                let is_abandoned = abandoned.iter().any(|x| x.contains(&n));
                prop_assert_eq!(out.record.abandoned.contains(n), final_ && is_abandoned, "abandoned {}", n);
                prop_assert_eq!(out.record.delivered.contains(n), final_ && !is_abandoned, "delivered {}", n);
            }
        });
    }

    #[test]
    fn what_receipts_list_is_what_the_parser_takes() {
        assert_eq!(RECEIPT_MAX_NEEDS, crate::wire::frame::MAX_NEEDS);
        const { assert!(RECEIPT_MAX_RANGES <= crate::wire::frame::MAX_LIST) };
        assert!(crate::delivery::fec::MAX_WINDOW as u64 <= crate::wire::frame::MAX_NEEDED);
    }

    #[test]
    fn a_receipt_past_what_was_sent_is_impossible() {
        assert!(OutgoingRecord::check(&receipt(11, vec![]), 10).is_err());
        assert!(OutgoingRecord::check(&receipt(2, vec![8..11]), 10).is_err());
        assert!(OutgoingRecord::check(&receipt(2, vec![8..10]), 10).is_ok());
    }

    #[test]
    fn trimming_keeps_a_receipt_within_its_room() {
        let ranges: Vec<Range<u64>> = (0..100).map(|i| 10 + i * 3..11 + i * 3).collect();
        let mut scratch = Vec::new();
        assert!(encode_within(receipt(5, ranges.clone()), 60, &mut scratch));
        assert!(scratch.len() <= 60);
        let mut full = Vec::new();
        assert!(encode_within(receipt(5, ranges), 10_000, &mut full));
        assert!(full.len() > 60);
    }
}
