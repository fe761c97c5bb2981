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
    /// and the equations it still needs (its holes less the equations held
    /// for it).
    fn needs(&self) -> Vec<(u64, u64)> {
        let end = self.known_end();
        let mut needs = Vec::new();
        let mut span: Option<(u64, u64)> = None; // (first hole, holes)
        let close = |span: (u64, u64), needs: &mut Vec<(u64, u64)>| {
            let rows = self
                .decoder
                .rows_within(span.0..span.0.saturating_add(fec::MAX_WINDOW as u64))
                as u64;
            if span.1 > rows {
                needs.push((span.0, span.1 - rows));
            }
        };
        let mut at = self.cumulative;
        for resolved in self
            .resolved
            .iter_from(self.cumulative)
            .chain(std::iter::once(end..end))
        {
            for hole in at..resolved.start.min(end) {
                match span {
                    Some((first, holes)) if hole - first < fec::MAX_WINDOW as u64 => {
                        span = Some((first, holes + 1));
                    }
                    _ => {
                        if let Some(done) = span.take() {
                            close(done, &mut needs);
                            if needs.len() >= RECEIPT_MAX_NEEDS {
                                return needs;
                            }
                        }
                        span = Some((hole, 1));
                    }
                }
            }
            at = at.max(resolved.end);
            if at >= end {
                break;
            }
        }
        if let Some(done) = span {
            close(done, &mut needs);
        }
        needs.truncate(RECEIPT_MAX_NEEDS);
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
        let mut news = false;
        if self.is_known(seq) {
            stats.redundant_sources += 1;
            if self.decoder.has_source(seq) {
                return false;
            }
        } else {
            match Symbol::parse(symbol) {
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
            Err(fec::FecError::TooShort) => {
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
        }
    }

    /// An ABANDON frame: the sender gave these up. Whatever of them is not
    /// resolved here is abandoned. Returns whether anything was.
    pub(crate) fn on_abandon(&mut self, ranges: &[Range<u64>]) -> bool {
        // Only numbers the sender could have used (bounded work).
        let limit = self.known_end() + 65_536;
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
