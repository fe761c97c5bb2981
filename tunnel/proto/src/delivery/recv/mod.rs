//! The receiving side of the data plane: what arrived of the peer's
//! sequence space and what became of it.
//!
//! [`Receiver`] resolves each sequence number once — delivered (in order
//! per flow for reliable segments, on time for deadline ones) or abandoned
//! (late, or given up by the sender) — and keeps the incoming half of the
//! bilateral record. Its parts: the sliding-window decoder
//! ([`WindowDecoder`](super::fec::WindowDecoder)), per-flow
//! ordering ([`reorder`]), the sender's clock ([`clock`]: deadlines and
//! the added-delay measurement) and the loss
//! meter ([`loss`], fed by the glue for every authentic packet).
//!
//! # Bounds
//!
//! An authentic peer may still misbehave, so nothing here grows with what
//! it sends: DATA and REPAIR frames are taken only within
//! [`RECEIVE_WINDOW`] of the cumulative point (reliable segments, which may
//! wait for a hole, within [`RELIABLE_WINDOW`]: twice the sender's default
//! `max_unresolved_segments`), so the resolved ranges, the waiting
//! segments and the decoder's equations stay bounded; flows are compacted
//! ([`reorder`]); the decoder has its own bounds ([`fec`]); sequence
//! arithmetic saturates, so numbers near `u64::MAX` are refused, not
//! wrapped.

pub(crate) mod clock;
pub(crate) mod loss;
pub(crate) mod reorder;

use super::fec::{self, RepairOutcome, RepairWindow, WindowDecoder};
use super::ranges::RangeSet;
use super::receipt::{DirectionRecord, ReceiptInput, RECEIPT_MAX_NEEDS};
use super::stats::DataPlaneStats;
use super::FlowId;
use crate::class::DeliveryClass;
use crate::time::Timestamp;
use crate::wire::frame::{Symbol, SymbolClass};
use clock::SenderClock;
use reorder::FlowReorder;
use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

/// How far beyond the cumulative point a DATA or REPAIR frame may reach.
/// Deadline traffic does not wait for holes, so this bounds only the
/// resolved ranges and the decoder's reach.
pub(crate) const RECEIVE_WINDOW: u64 = 1 << 18;
/// How far beyond the cumulative point a reliable segment may be: it may
/// wait in its flow for a hole, so this bounds the segments waiting. Twice
/// the default `max_unresolved_segments` (an honest sender stays within
/// that of the receiver's cumulative point).
pub(crate) const RELIABLE_WINDOW: u64 = 1 << 15;
/// Most spans of holes a receipt's needs are worked out over (the oldest
/// first; a receipt lists at most [`RECEIPT_MAX_NEEDS`] of them).
const SPANS_COUNTED: usize = 4 * RECEIPT_MAX_NEEDS;

/// A segment handed to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The flow the sender gave.
    pub flow: FlowId,
    /// The class the sender gave.
    pub class: DeliveryClass,
    /// The bytes.
    pub segment: Vec<u8>,
}

/// Hands a reliable segment to the caller, counting it and its added
/// delay.
#[allow(clippy::too_many_arguments)]
fn deliver(
    deliveries: &mut VecDeque<Delivered>,
    clock: &SenderClock,
    stats: &mut DataPlaneStats,
    now: Timestamp,
    flow: FlowId,
    class: DeliveryClass,
    segment: Vec<u8>,
    created_micros: Option<u64>,
) {
    stats.segments_delivered += 1;
    stats.bytes_delivered += segment.len() as u64;
    if let Some(added) = created_micros.and_then(|c| clock.added_delay(now, c)) {
        stats.added_delay.record(added);
    }
    deliveries.push_back(Delivered {
        flow,
        class,
        segment,
    });
}

/// Everything the receiving side holds.
#[derive(Default)]
pub(crate) struct Receiver {
    /// Delivered and abandoned here.
    record: DirectionRecord,
    /// Resolved numbers at and above `cumulative - 1`.
    resolved: RangeSet,
    /// Every number below is resolved.
    cumulative: u64,
    decoder: WindowDecoder,
    flows: FlowReorder,
    clock: SenderClock,
    deliveries: VecDeque<Delivered>,
    /// Segments (and bytes) delivered where no stats were at hand (flows
    /// settled by an ABANDON frame), counted at the next chance.
    uncounted: (u64, u64),
}

impl Receiver {
    /// The incoming half of the bilateral record.
    pub(crate) fn record(&self) -> &DirectionRecord {
        &self.record
    }

    /// The next delivered segment.
    pub(crate) fn poll_delivery(&mut self) -> Option<Delivered> {
        self.deliveries.pop_front()
    }

    /// Whether `seq` lies below `window` beyond the cumulative point (and
    /// below `u64::MAX`, which no range can end after).
    fn in_window(&self, seq: u64, window: u64) -> bool {
        seq < self.cumulative.saturating_add(window) && seq < u64::MAX
    }

    /// Counts what was delivered without stats at hand.
    fn count_deferred(&mut self, stats: &mut DataPlaneStats) {
        let (segments, bytes) = std::mem::take(&mut self.uncounted);
        stats.segments_delivered += segments;
        stats.bytes_delivered += bytes;
    }

    /// How much the receiver holds: (known flows, segments waiting in
    /// them, resolved ranges, decoder equations). For bounds tests.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize, usize, usize) {
        let (flows, waiting) = self.flows.size();
        (
            flows,
            waiting,
            self.resolved.iter().count(),
            self.decoder.rows(),
        )
    }

    /// Whether `seq` is resolved here.
    fn is_known(&self, seq: u64) -> bool {
        seq < self.cumulative || self.resolved.contains(seq)
    }

    /// The end of what is known here: nothing at or above it is resolved.
    pub(crate) fn known_end(&self) -> u64 {
        self.resolved.end().max(self.cumulative)
    }

    /// Whether a receipt still has something to say: resolution the peer
    /// has not confirmed, or holes.
    pub(crate) fn receipt_unconfirmed(&self, peer_confirmed: u64) -> bool {
        peer_confirmed < self.known_end() || self.resolved.end() > self.cumulative
    }

    /// What a receipt is built from (the glue adds the packet-level parts).
    pub(crate) fn receipt_input(&self) -> ReceiptInput<'_> {
        ReceiptInput {
            cumulative: self.cumulative,
            resolved: &self.resolved,
            abandoned: &self.record.abandoned,
            needs: self.needs(),
            peer_confirmed: 0,
            largest_received: None,
            bytes_received: 0,
            loss: None,
        }
    }

    /// What decoding lacks, per span of holes (missing numbers within one
    /// repair window of each other, oldest first): the span's first hole
    /// and the equations it still needs.
    ///
    /// The count is the rank deficit of the whole system up to each span
    /// (its holes and every older span's, less the equations held over
    /// them alone), of which each span asks for the part the older spans
    /// did not. An equation that straddles two spans (a proactive repair
    /// over the end of one and the start of the next) so counts once, for
    /// the later span: it determines the later span's hole once the older
    /// span is solved, which in-order delivery waits for anyway. Counting
    /// only the equations confined to each span asked for it twice (a
    /// surplus repair per straddling equation: `sim reliable` at 50 % loss
    /// spent 2.31 wire bytes per byte where the exact count spends less).
    /// The deficit of a prefix may fall where a later span holds more
    /// equations than holes (their surplus reaches back through
    /// straddlers), so each span asks for the least deficit of any prefix
    /// that contains it, less what the older spans asked.
    fn needs(&self) -> Vec<(u64, u64)> {
        let end = self.known_end();
        // (first hole, holes) of each span, oldest first.
        let mut spans: Vec<(u64, u64)> = Vec::new();
        let mut at = self.cumulative;
        'walk: for resolved in self
            .resolved
            .iter_from(self.cumulative)
            .chain(std::iter::once(end..end))
        {
            for hole in at..resolved.start.min(end) {
                match spans.last_mut() {
                    Some((first, holes)) if hole - *first < fec::MAX_WINDOW as u64 => *holes += 1,
                    _ => {
                        if spans.len() >= SPANS_COUNTED {
                            break 'walk;
                        }
                        spans.push((hole, 1));
                    }
                }
            }
            at = at.max(resolved.end);
            if at >= end {
                break;
            }
        }
        // The rank deficit of each prefix of spans.
        let ends: Vec<u64> = spans
            .iter()
            .map(|&(first, _)| first.saturating_add(fec::MAX_WINDOW as u64))
            .collect();
        let rows = self
            .decoder
            .rows_confined_below_each(self.cumulative, &ends);
        let mut holes_below = 0u64;
        let deficits: Vec<u64> = spans
            .iter()
            .zip(&rows)
            .map(|(&(_, holes), &rows)| {
                holes_below += holes;
                holes_below.saturating_sub(rows as u64)
            })
            .collect();
        let mut least_after = u64::MAX;
        let mut least: Vec<u64> = deficits
            .iter()
            .rev()
            .map(|&deficit| {
                least_after = least_after.min(deficit);
                least_after
            })
            .collect();
        least.reverse();
        let mut asked = 0u64;
        let mut needs = Vec::new();
        for (&(first, _), &deficit) in spans.iter().zip(&least) {
            if deficit > asked {
                needs.push((first, deficit - asked));
                asked = deficit;
                if needs.len() >= RECEIPT_MAX_NEEDS {
                    break;
                }
            }
        }
        needs
    }

    /// A DATA frame: source symbol `seq`. Returns whether anything was
    /// resolved.
    pub(crate) fn on_data(
        &mut self,
        now: Timestamp,
        seq: u64,
        symbol: &[u8],
        stats: &mut DataPlaneStats,
    ) -> bool {
        self.count_deferred(stats);
        let mut news = false;
        if !self.in_window(seq, RECEIVE_WINDOW) {
            // No honest sender is this far ahead (or this near u64::MAX).
            stats.drops.malformed += 1;
            return false;
        }
        if self.is_known(seq) {
            stats.redundant_sources += 1;
            if self.decoder.has_source(seq) {
                return false;
            }
        } else {
            match Symbol::parse(symbol) {
                Ok(parsed)
                    if matches!(parsed.class, SymbolClass::Reliable { .. })
                        && !self.in_window(seq, RELIABLE_WINDOW) =>
                {
                    stats.drops.malformed += 1;
                    return false;
                }
                Ok(parsed) => {
                    self.resolve(now, seq, parsed, true, stats);
                    news = true;
                }
                Err(_) => {
                    stats.drops.malformed += 1;
                    return false;
                }
            }
        }
        self.decoder.add_source(seq, fec::source_shard(symbol));
        news | self.take_recovered(now, stats)
    }

    /// A REPAIR frame over `window`, with id `id`. Returns whether anything
    /// was resolved.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_repair(
        &mut self,
        now: Timestamp,
        window: RepairWindow,
        id: u64,
        shard: &[u8],
        stats: &mut DataPlaneStats,
    ) -> bool {
        self.count_deferred(stats);
        let last = window.seqs().last().unwrap_or(window.first);
        if !self.in_window(last, RECEIVE_WINDOW) {
            stats.drops.malformed += 1;
            return false;
        }
        // A covered source resolved here but no longer kept cannot be
        // subtracted: the repair is of no use (the sender covers holes only,
        // so this happens only when a receipt crossed the repair).
        if window
            .seqs()
            .any(|seq| self.is_known(seq) && !self.decoder.has_source(seq))
        {
            stats.redundant_repairs += 1;
            return false;
        }
        match self.decoder.add_repair(window, id, shard) {
            Ok(RepairOutcome::Useful) => self.take_recovered(now, stats),
            Ok(RepairOutcome::Redundant) | Err(fec::FecError::OutOfRange) => {
                stats.redundant_repairs += 1;
                false
            }
            Err(fec::FecError::TooShort | fec::FecError::TooLong) => {
                stats.drops.malformed += 1;
                false
            }
        }
    }

    /// Resolves the sources the decoder recovered.
    fn take_recovered(&mut self, now: Timestamp, stats: &mut DataPlaneStats) -> bool {
        let mut news = false;
        while let Some((seq, shard)) = self.decoder.poll_recovered() {
            if self.is_known(seq) {
                continue;
            }
            let parsed = fec::symbol_of_shard(&shard).and_then(|s| Symbol::parse(s).ok());
            match parsed {
                Some(symbol) => {
                    stats.fec_recovered += 1;
                    self.resolve(now, seq, symbol, false, stats);
                    news = true;
                }
                None => stats.drops.malformed += 1,
            }
        }
        news
    }

    fn resolve(
        &mut self,
        now: Timestamp,
        seq: u64,
        symbol: Symbol<'_>,
        direct: bool,
        stats: &mut DataPlaneStats,
    ) {
        self.resolved.insert(seq);
        match symbol.class {
            SymbolClass::Reliable {
                flow_seq,
                created_micros,
                bounded_hold,
            } => {
                self.record.delivered.insert(seq);
                if let (true, Some(created)) = (direct, created_micros) {
                    self.clock.observe(now, created);
                }
                let class = if bounded_hold {
                    DeliveryClass::Segment
                } else {
                    DeliveryClass::Reliable
                };
                let deliveries = &mut self.deliveries;
                let clock = &self.clock;
                self.flows.accept(
                    now,
                    symbol.flow,
                    flow_seq,
                    seq,
                    self.cumulative,
                    created_micros,
                    bounded_hold,
                    symbol.payload,
                    |payload, created| {
                        deliver(
                            deliveries,
                            clock,
                            stats,
                            now,
                            symbol.flow,
                            class,
                            payload,
                            created,
                        );
                    },
                );
            }
            SymbolClass::Deadline {
                deadline_micros,
                created_micros,
            } => {
                if direct {
                    self.clock.observe(now, created_micros);
                }
                if self.clock.on_time(now, deadline_micros, created_micros) {
                    self.record.delivered.insert(seq);
                    stats.segments_delivered += 1;
                    stats.bytes_delivered += symbol.payload.len() as u64;
                    if let Some(added) = self.clock.added_delay(now, created_micros) {
                        stats.added_delay.record(added);
                    }
                    self.deliveries.push_back(Delivered {
                        flow: symbol.flow,
                        class: DeliveryClass::Deadline(Duration::from_micros(deadline_micros)),
                        segment: symbol.payload.to_vec(),
                    });
                } else {
                    stats.drops.arrived_late += 1;
                    self.record.abandoned.insert(seq);
                }
            }
        }
        self.advance_cumulative();
    }

    /// When a bounded flow's hold of `hold` next ends.
    pub(crate) fn next_release(&self, hold: Duration) -> Option<Timestamp> {
        self.flows.next_release(hold)
    }

    /// Lets bounded flows that waited `hold` for a hole go on.
    pub(crate) fn release(&mut self, now: Timestamp, hold: Duration, stats: &mut DataPlaneStats) {
        self.count_deferred(stats);
        let deliveries = &mut self.deliveries;
        let clock = &self.clock;
        self.flows.release(now, hold, |flow, payload, created| {
            deliver(
                deliveries,
                clock,
                stats,
                now,
                flow,
                DeliveryClass::Segment,
                payload,
                created,
            );
        });
    }

    fn advance_cumulative(&mut self) {
        let advanced = self.resolved.contiguous_end_from(self.cumulative);
        if advanced != self.cumulative {
            self.cumulative = advanced;
            self.resolved.remove_below(advanced.saturating_sub(1));
            self.decoder.resolved_below(advanced);
            let deliveries = &mut self.deliveries;
            let uncounted = &mut self.uncounted;
            self.flows
                .settle(advanced, |flow, bounded, payload, _created| {
                    uncounted.0 += 1;
                    uncounted.1 += payload.len() as u64;
                    deliveries.push_back(Delivered {
                        flow,
                        class: if bounded {
                            DeliveryClass::Segment
                        } else {
                            DeliveryClass::Reliable
                        },
                        segment: payload,
                    });
                });
        }
    }

    /// An ABANDON frame: the sender gave these up. Whatever of them is not
    /// resolved here is abandoned. Returns whether anything was.
    pub(crate) fn on_abandon(&mut self, ranges: &[Range<u64>]) -> bool {
        // Only numbers the sender could have used (bounded work).
        let limit = self.known_end().saturating_add(65_536);
        let mut news = false;
        for range in ranges {
            let range = range.start.max(self.cumulative)..range.end.min(limit);
            if range.start >= range.end {
                continue;
            }
            let mut at = range.start;
            let covered: Vec<Range<u64>> = self
                .resolved
                .iter_from(range.start)
                .take_while(|r| r.start < range.end)
                .collect();
            let mut gaps = Vec::new();
            for r in covered {
                if r.start > at {
                    gaps.push(at..r.start.min(range.end));
                }
                at = at.max(r.end);
            }
            if at < range.end {
                gaps.push(at..range.end);
            }
            for gap in gaps {
                self.record.abandoned.insert_range(gap.clone());
                self.decoder.forget(gap.clone());
                self.resolved.insert_range(gap);
                news = true;
            }
        }
        self.advance_cumulative();
        news
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::wire::frame::Symbol;

    fn reliable(flow: u64, flow_seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Symbol {
            flow,
            class: SymbolClass::Reliable {
                flow_seq,
                created_micros: None,
                bounded_hold: false,
            },
            payload,
        }
        .encode(&mut out);
        out
    }

    fn drain(receiver: &mut Receiver) -> Vec<(FlowId, Vec<u8>)> {
        std::iter::from_fn(|| receiver.poll_delivery())
            .map(|d| (d.flow, d.segment))
            .collect()
    }

    /// Repair over `seqs` of the reliable symbols `reliable(0, seq, [seq])`.
    fn repair_over(seqs: &[u64], id: u64) -> (fec::RepairWindow, Vec<u8>) {
        let shards: Vec<Vec<u8>> = seqs
            .iter()
            .map(|&seq| fec::source_shard(&reliable(0, seq, &[seq as u8])))
            .collect();
        let sources: Vec<(u64, &[u8])> = seqs
            .iter()
            .zip(&shards)
            .map(|(&s, shard)| (s, shard.as_slice()))
            .collect();
        (
            fec::RepairWindow::from_seqs(seqs).unwrap(),
            fec::encode_repair(id, &sources),
        )
    }

    #[test]
    fn an_equation_over_two_spans_of_holes_is_counted_once() {
        let mut receiver = Receiver::default();
        let mut stats = DataPlaneStats::default();
        let holes = [10u64, 60, 80, 100];
        for seq in (0..200u64).filter(|seq| !holes.contains(seq)) {
            receiver.on_data(
                Timestamp::ZERO,
                seq,
                &reliable(0, seq, &[seq as u8]),
                &mut stats,
            );
        }
        // Two spans: 10 and 60; then 80 and 100 (more than a window after 10).
        assert_eq!(receiver.needs(), vec![(10, 2), (80, 2)]);
        // One equation over 60 and 80 (a proactive repair across the two):
        // once the first span is solved it determines 80, so the second
        // span lacks one, not two.
        let (window, shard) = repair_over(&[60, 80], 1);
        receiver.on_repair(Timestamp::ZERO, window, 1, &shard, &mut stats);
        assert_eq!(receiver.needs(), vec![(10, 2), (80, 1)]);
        // Two equations over the second span solve it, and the straddling
        // one then determines 60: the first span lacks one.
        for (id, seqs) in [(2, &[80u64, 100][..]), (3, &[80, 100][..])] {
            let (window, shard) = repair_over(seqs, id);
            receiver.on_repair(Timestamp::ZERO, window, id, &shard, &mut stats);
        }
        assert_eq!(receiver.needs(), vec![(10, 1)]);
        // What that says is enough: one more equation over the first span
        // recovers all four.
        let (window, shard) = repair_over(&[10, 60], 4);
        receiver.on_repair(Timestamp::ZERO, window, 4, &shard, &mut stats);
        assert_eq!(receiver.needs(), vec![]);
        assert_eq!(drain(&mut receiver).len(), 200);
    }

    #[test]
    fn a_hundred_thousand_flows_leave_bounded_state() {
        let mut receiver = Receiver::default();
        let mut stats = DataPlaneStats::default();
        let mut seq = 0;
        let mut delivered = 0;
        for flow in 0..100_000u64 {
            for position in 0..3 {
                let symbol = reliable(flow, position, &flow.to_be_bytes());
                assert!(receiver.on_data(Timestamp::ZERO, seq, &symbol, &mut stats));
                seq += 1;
            }
            delivered += drain(&mut receiver).len();
            let (flows, waiting, ranges, _) = receiver.size();
            assert!(flows <= reorder::MAX_FLOWS + 1, "{flows} flows kept");
            assert_eq!(waiting, 0);
            assert!(ranges <= 2);
        }
        assert_eq!(delivered, 300_000);
        assert_eq!(stats.segments_delivered, 300_000);
    }

    #[test]
    fn a_forgotten_flow_goes_on_where_it_was() {
        let mut receiver = Receiver::default();
        let mut stats = DataPlaneStats::default();
        let mut seq = 0;
        let mut send = |receiver: &mut Receiver, flow, position, seq: &mut u64| {
            let symbol = reliable(flow, position, &[position as u8]);
            receiver.on_data(Timestamp::ZERO, *seq, &symbol, &mut stats);
            *seq += 1;
        };
        for position in 0..4 {
            send(&mut receiver, 7, position, &mut seq);
        }
        for flow in 1000..1000 + 2 * reorder::MAX_FLOWS as u64 {
            send(&mut receiver, flow, 0, &mut seq);
        }
        drain(&mut receiver);
        // Flow 7 was forgotten; its next segment is delivered at once.
        send(&mut receiver, 7, 4, &mut seq);
        assert_eq!(drain(&mut receiver), vec![(7, vec![4])]);
        // Forgotten again, it comes back behind a hole of its own: it waits
        // for the hole, then goes on in order.
        for flow in 10_000..10_000 + 2 * reorder::MAX_FLOWS as u64 {
            send(&mut receiver, flow, 0, &mut seq);
        }
        drain(&mut receiver);
        let hole = seq;
        seq += 1;
        send(&mut receiver, 7, 6, &mut seq);
        assert!(
            drain(&mut receiver).is_empty(),
            "position 5 is still missing"
        );
        let mut at = hole;
        send(&mut receiver, 7, 5, &mut at);
        assert_eq!(drain(&mut receiver), vec![(7, vec![5]), (7, vec![6])]);
    }

    #[test]
    fn a_new_flow_behind_another_flows_hole_waits_only_for_its_own() {
        let mut receiver = Receiver::default();
        let mut stats = DataPlaneStats::default();
        // Seq 0 (flow 1) is lost; flow 2 starts at position 0 and goes.
        let symbol = reliable(2, 0, b"a");
        receiver.on_data(Timestamp::ZERO, 1, &symbol, &mut stats);
        assert_eq!(drain(&mut receiver), vec![(2, b"a".to_vec())]);
        // Flow 3 seen first at position 1, behind the hole: it waits
        // until the hole (which might be its position 0) resolves.
        let symbol = reliable(3, 1, b"y");
        receiver.on_data(Timestamp::ZERO, 2, &symbol, &mut stats);
        assert!(drain(&mut receiver).is_empty());
        let symbol = reliable(1, 0, b"x");
        receiver.on_data(Timestamp::ZERO, 0, &symbol, &mut stats);
        // Seq 0 was flow 1's: flow 3's position 0 came before we knew it.
        assert_eq!(
            drain(&mut receiver),
            vec![(1, b"x".to_vec()), (3, b"y".to_vec())]
        );
    }

    #[test]
    fn numbers_far_ahead_or_near_the_end_are_refused() {
        let mut receiver = Receiver::default();
        let mut stats = DataPlaneStats::default();
        let symbol = reliable(1, 0, b"x");
        for seq in [
            u64::MAX,
            u64::MAX - 1,
            RECEIVE_WINDOW,
            RELIABLE_WINDOW,
            1 << 40,
        ] {
            assert!(!receiver.on_data(Timestamp::ZERO, seq, &symbol, &mut stats));
        }
        assert_eq!(stats.drops.malformed, 5);
        assert_eq!(receiver.known_end(), 0);
        // Repairs too, and abandonments up to u64::MAX only reach what the
        // sender could have used.
        let window = RepairWindow {
            first: u64::MAX - 3,
            mask: 0b1011,
        };
        assert!(!receiver.on_repair(Timestamp::ZERO, window, 1, &[0; 8], &mut stats));
        assert!(receiver.on_abandon(&[0..u64::MAX]));
        assert_eq!(receiver.known_end(), 65_536);
        assert!(!receiver.on_abandon(&[u64::MAX - 10..u64::MAX]));
        assert_eq!(receiver.known_end(), 65_536);
    }

    #[test]
    fn a_peer_scattering_sequence_numbers_keeps_state_bounded() {
        let mut receiver = Receiver::default();
        let mut stats = DataPlaneStats::default();
        let mut x: u64 = 0x9e37_79b9;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let symbol = reliable(x % 1000, x % 5000, b"p");
            receiver.on_data(Timestamp::ZERO, x % (1 << 20), &symbol, &mut stats);
        }
        let (flows, waiting, ranges, rows) = receiver.size();
        assert!(waiting as u64 <= RELIABLE_WINDOW);
        assert!(ranges as u64 <= RELIABLE_WINDOW);
        assert!(flows <= 1000 && rows <= fec::MAX_ROWS);
    }
}
