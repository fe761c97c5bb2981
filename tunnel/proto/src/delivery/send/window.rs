//! The sending side's sliding window: every source symbol the peer has not
//! yet resolved, kept for repair, with the sender's sequence space; the
//! proactive repair each class earns as its sources go out; fresh repair
//! when the receiver reports missing equations or the probe timer fires;
//! and the DATA and REPAIR frames.
//!
//! A proactive repair covers up to [`fec::MAX_WINDOW`] recent unresolved
//! sources of one kind (see [`SourceKind`]); a fresh (reactive) repair
//! covers only the holes the latest receipt shows (missing below what it
//! reports received), so the receiver needs none of the sources around
//! them, however old.

use super::queue::QueuedSegment;
use super::repair::{self, RepairContext, SourceKind};
use crate::delivery::config::DataPlaneConfig;
use crate::delivery::fec::{self, RepairWindow};
use crate::delivery::receipt::OutgoingRecord;
use crate::time::Timestamp;
use crate::wire::frame::{Frame, Symbol, SymbolClass};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

struct TxSource {
    shard: Vec<u8>,
    kind: SourceKind,
    expires_at: Option<Timestamp>,
    /// When a symbol carrying or covering it last went out.
    last_sent_at: Timestamp,
}

/// A repair symbol sent that no receipt has shown yet.
#[derive(Clone, Copy, Debug)]
struct RepairInFlight {
    /// The packet that carried it.
    packet: u64,
    /// The first and last source it covers.
    first: u64,
    last: u64,
}

/// Most repairs [`TxWindow`] remembers in flight; beyond it the oldest are
/// forgotten (their span may then be asked for again a little early).
const REPAIRS_IN_FLIGHT_MAX: usize = 4096;

impl TxSource {
    /// Still worth repairing at `now`: not past its deadline.
    fn alive_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// What [`TxWindow::next_repair_frame`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RepairSent {
    /// A repair symbol earned by the sources sent.
    Proactive,
    /// A fresh repair symbol a receipt or the probe timer asked for.
    Reactive,
}

/// The sources in flight and the repair owed.
pub(crate) struct TxWindow {
    sources: BTreeMap<u64, TxSource>,
    /// The sources with a deadline, by when it passes: the expiry timer
    /// looks at the first, not at every source.
    expiring: BTreeSet<(Timestamp, u64)>,
    next_seq: u64,
    next_repair_id: u64,
    /// Proactive repair owed per kind, in symbols (fractional).
    credit: [f64; 3],
    /// Fresh repair owed: per span of holes, where it starts and how many
    /// symbols.
    reactive: Vec<(u64, u32)>,
    /// Spans of segment-mode or deadline holes are asked for again only
    /// once a receipt shows this packet (the last fresh repair over such
    /// holes): their rounds stay global, which the inner TCP of segment
    /// mode measured better with (per-span rounds repaired more often
    /// and cost it 0.1–0.25 of the limit at 10–20 % loss in `sim
    /// tcp-cubic` without a ceiling). Stream spans are topped up instead
    /// ([`TxWindow::repairs_in_flight`]).
    reactive_gate: u64,
    /// The latest receipt reported everything below this either received
    /// or missing: unresolved sources below it are holes.
    receipt_high: u64,
    /// When the tail of the reliable sources sent last gets its cover
    /// ([`repair::tail_cover`]), if nothing is queued behind them.
    tail_cover_at: Option<Timestamp>,
    /// Proactive repairs of reliable kinds written since the last source
    /// (a tail cover counts them as already sent).
    repairs_since_source: u32,
    /// Every repair sent that no receipt has shown yet, oldest first (at
    /// most [`REPAIRS_IN_FLIGHT_MAX`]): a stream span gets what its
    /// receipt asks beyond those over it.
    repairs_in_flight: VecDeque<RepairInFlight>,
}

impl TxWindow {
    pub(crate) fn new() -> Self {
        TxWindow {
            sources: BTreeMap::new(),
            expiring: BTreeSet::new(),
            next_seq: 0,
            next_repair_id: 0,
            credit: [0.0; 3],
            reactive: Vec::new(),
            reactive_gate: 0,
            receipt_high: 0,
            tail_cover_at: None,
            repairs_since_source: 0,
            repairs_in_flight: VecDeque::new(),
        }
    }

    /// The next sequence number to use.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether no source is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The lowest sequence number not yet resolved at the peer.
    pub(crate) fn lowest_unresolved(&self) -> u64 {
        self.sources.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// Whether repair waits to go out.
    pub(crate) fn has_pending_repair(&self) -> bool {
        !self.reactive.is_empty() || self.credit.iter().any(|&c| c >= 1.0)
    }

    /// Gives `segment` the next sequence number, appends its DATA frame to
    /// `out`, and earns its kind's proactive repair. With nothing queued
    /// behind (`more_queued` false) owed repair is rounded up, so the tail
    /// of a burst is covered at once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_source(
        &mut self,
        now: Timestamp,
        segment: QueuedSegment,
        config: &DataPlaneConfig,
        context: RepairContext,
        more_queued: bool,
        out: &mut Vec<u8>,
    ) {
        let kind = match segment.class {
            SymbolClass::Deadline { .. } => SourceKind::Deadline,
            SymbolClass::Reliable {
                bounded_hold: true, ..
            } => SourceKind::Segment,
            SymbolClass::Reliable { .. } => SourceKind::Stream,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut symbol = Vec::with_capacity(segment.payload.len() + Symbol::MAX_OVERHEAD);
        Symbol {
            flow: segment.flow,
            class: segment.class,
            payload: &segment.payload,
        }
        .encode(&mut symbol);
        Frame::Data {
            seq,
            symbol: &symbol,
        }
        .encode(out);
        if let Some(expires_at) = segment.expires_at {
            self.expiring.insert((expires_at, seq));
        }
        self.sources.insert(
            seq,
            TxSource {
                shard: fec::source_shard(&symbol),
                kind,
                expires_at: segment.expires_at,
                last_sent_at: now,
            },
        );
        if kind != SourceKind::Deadline {
            self.repairs_since_source = 0;
            self.tail_cover_at = (!more_queued).then(|| now + repair::tail_cover_delay(context));
        }
        let credit = &mut self.credit[kind.index()];
        *credit += repair::proactive_rate(config, context, kind);
        if !more_queued && *credit > 0.05 && kind != SourceKind::Deadline {
            *credit = credit.max(1.0);
        }
    }

    /// The unresolved sources of `kind` (any kind if `None`) alive at
    /// `now`, from `from` on, at most one window's worth.
    fn window_from(
        &self,
        range: std::ops::Range<u64>,
        kind: Option<SourceKind>,
        now: Timestamp,
        outgoing: &OutgoingRecord,
    ) -> Vec<u64> {
        let mut seqs = Vec::new();
        if range.start >= range.end {
            return seqs;
        }
        for (&seq, source) in self.sources.range(range) {
            if seqs
                .first()
                .is_some_and(|&f: &u64| seq - f >= fec::MAX_WINDOW as u64)
            {
                break;
            }
            if kind.is_some_and(|k| k != source.kind)
                || !source.alive_at(now)
                || outgoing.is_resolved(seq)
            {
                continue;
            }
            seqs.push(seq);
        }
        seqs
    }

    /// The recent window a proactive repair of `kind` covers: the last
    /// unresolved sources of that kind within `span` sequence numbers. For
    /// deadline sources, only those a repair sent now can still reach in
    /// time (expiring after `now` plus the one-way estimate), and always
    /// the newest [`repair::DEADLINE_KEEP`]: an equation over a source
    /// that will arrive late anyway only dilutes the repair of the others.
    fn recent_window(
        &self,
        kind: SourceKind,
        span: u64,
        now: Timestamp,
        one_way: Option<Duration>,
        outgoing: &OutgoingRecord,
    ) -> Vec<u64> {
        let from = self
            .next_seq
            .saturating_sub(span.min(fec::MAX_WINDOW as u64));
        let mut seqs = self.window_from(from..self.next_seq, Some(kind), now, outgoing);
        if let (SourceKind::Deadline, Some(one_way)) = (kind, one_way) {
            let arrival = now + one_way;
            let keep_from = seqs.len().saturating_sub(repair::DEADLINE_KEEP);
            let mut index = 0;
            seqs.retain(|seq| {
                index += 1;
                index > keep_from || self.sources.get(seq).is_some_and(|s| s.alive_at(arrival))
            });
        }
        seqs
    }

    fn write_repair(
        &mut self,
        now: Timestamp,
        packet_number: u64,
        seqs: &[u64],
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(window) = RepairWindow::from_seqs(seqs) else {
            return false;
        };
        let id = self.next_repair_id;
        self.next_repair_id += 1;
        let sources: Vec<(u64, &[u8])> = seqs
            .iter()
            .filter_map(|seq| self.sources.get(seq).map(|s| (*seq, s.shard.as_slice())))
            .collect();
        let shard = fec::encode_repair(id, &sources);
        Frame::Repair {
            first: window.first,
            mask: window.mask,
            id,
            shard: &shard,
        }
        .encode(out);
        for seq in seqs {
            if let Some(source) = self.sources.get_mut(seq) {
                source.last_sent_at = now;
            }
        }
        if self.repairs_in_flight.len() >= REPAIRS_IN_FLIGHT_MAX {
            self.repairs_in_flight.pop_front();
        }
        self.repairs_in_flight.push_back(RepairInFlight {
            packet: packet_number,
            first: window.first,
            last: seqs.last().copied().unwrap_or(window.first),
        });
        true
    }

    /// Appends the next repair frame owed to `out`: with `urgent`, only the
    /// proactive repair of deadline traffic; otherwise fresh repair over
    /// the holes, then the other kinds' proactive repair.
    pub(crate) fn next_repair_frame(
        &mut self,
        now: Timestamp,
        packet_number: u64,
        outgoing: &OutgoingRecord,
        context: RepairContext,
        urgent: bool,
        out: &mut Vec<u8>,
    ) -> Option<RepairSent> {
        if urgent {
            return self.proactive_frame(
                now,
                packet_number,
                SourceKind::Deadline,
                outgoing,
                context,
                out,
            );
        }
        while let Some((first, count)) = self.reactive.first_mut() {
            let first = *first;
            *count -= 1;
            if *count == 0 {
                self.reactive.remove(0);
            }
            let end = self
                .receipt_high
                .min(first.saturating_add(fec::MAX_WINDOW as u64));
            let holes = self.window_from(first..end, None, now, outgoing);
            if holes
                .first()
                .and_then(|seq| self.sources.get(seq))
                .is_some_and(|source| source.kind != SourceKind::Stream)
            {
                self.reactive_gate = packet_number;
            }
            if self.write_repair(now, packet_number, &holes, out) {
                return Some(RepairSent::Reactive);
            }
        }
        [SourceKind::Segment, SourceKind::Stream]
            .into_iter()
            .find_map(|kind| self.proactive_frame(now, packet_number, kind, outgoing, context, out))
    }

    /// A proactive repair of `kind`, if one is owed.
    fn proactive_frame(
        &mut self,
        now: Timestamp,
        packet_number: u64,
        kind: SourceKind,
        outgoing: &OutgoingRecord,
        context: RepairContext,
        out: &mut Vec<u8>,
    ) -> Option<RepairSent> {
        if self.credit[kind.index()] < 1.0 {
            return None;
        }
        self.credit[kind.index()] -= 1.0;
        let span = repair::proactive_span(context, kind);
        let seqs = self.recent_window(kind, span, now, context.one_way, outgoing);
        if self.write_repair(now, packet_number, &seqs, out) {
            if kind != SourceKind::Deadline {
                self.repairs_since_source += 1;
            }
            return Some(RepairSent::Proactive);
        }
        self.credit[kind.index()] = 0.0;
        None
    }

    /// A receipt moved the peer's record: forget the sources it resolved,
    /// note where its knowledge ends, and owe fresh repair for the
    /// equations it says a span of holes lacks.
    ///
    /// A segment-mode or deadline span is answered once the receipt shows
    /// every repair sent over segment-mode or deadline holes. A stream
    /// span is answered at once with what its need comes to beyond the
    /// repairs still in flight over it ([`repair::stream_reactive_count`]):
    /// its holes often show one receipt at a time (a queue that overflowed
    /// drops every fourth packet for a while), and answering each span
    /// once per round trip left most of them short, holding everything
    /// behind them a round trip more (`sim reliable`, 600 ms: added delay
    /// p50 2.5 s at 10 % loss, 0.9 s at 0 % after start-up's overflow).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_receipt(
        &mut self,
        receipt_high: u64,
        largest_packet: u64,
        covered_below: u64,
        needs: &[(u64, u64)],
        outgoing: &OutgoingRecord,
        config: &DataPlaneConfig,
        context: RepairContext,
    ) {
        let expiring = &mut self.expiring;
        self.sources.retain(|&seq, source| {
            let resolved = outgoing.is_resolved(seq);
            if let (true, Some(expires_at)) = (resolved, source.expires_at) {
                expiring.remove(&(expires_at, seq));
            }
            !resolved
        });
        self.receipt_high = self.receipt_high.max(receipt_high.min(covered_below));
        let gate_open = largest_packet >= self.reactive_gate && self.reactive.is_empty();
        while self
            .repairs_in_flight
            .front()
            .is_some_and(|repair| repair.packet <= largest_packet)
        {
            self.repairs_in_flight.pop_front();
        }
        for &(first, needed) in needs {
            if needed == 0 || first >= covered_below {
                continue;
            }
            if self.reactive.iter().any(|&(owed, _)| owed == first) {
                continue;
            }
            let end = self
                .receipt_high
                .min(first.saturating_add(fec::MAX_WINDOW as u64));
            if end <= first {
                continue;
            }
            let mut holes = self
                .sources
                .range(first..end)
                .filter(|(seq, _)| !outgoing.is_resolved(**seq))
                .peekable();
            let Some((_, oldest)) = holes.peek() else {
                continue;
            };
            let count = if oldest.kind == SourceKind::Stream {
                let last_hole = holes.last().map_or(first, |(seq, _)| *seq);
                let in_flight = self
                    .repairs_in_flight
                    .iter()
                    .filter(|repair| repair.first <= last_hole && repair.last >= first)
                    .count() as u32;
                let count = repair::stream_reactive_count(needed, context);
                if in_flight >= count {
                    continue;
                }
                count - in_flight
            } else if gate_open {
                config.reactive_repair_count(needed, context.loss_factor(), context.tail)
            } else {
                continue;
            };
            self.reactive.push((first, count));
        }
    }

    /// The timers of the window: abandon deadline sources whose time is up
    /// (announced to the peer through `outgoing`), and owe fresh repair
    /// when the oldest live source has gone `probe_timeout`
    /// without news.
    pub(crate) fn on_timeout(
        &mut self,
        now: Timestamp,
        probe_timeout: Duration,
        outgoing: &mut OutgoingRecord,
        config: &DataPlaneConfig,
        context: RepairContext,
    ) {
        // An expired source is abandoned (announced to the peer through
        // `outgoing`) and leaves the window: no repair will cover it, so
        // the window stays bounded by the deadlines even while the peer
        // never acknowledges.
        while let Some(&(expires_at, seq)) = self.expiring.first() {
            if expires_at > now {
                break;
            }
            self.expiring.pop_first();
            self.sources.remove(&seq);
            if !outgoing.is_resolved(seq) {
                outgoing.abandon(seq);
            }
        }
        if self.tail_cover_at.is_some_and(|at| at <= now) {
            self.tail_cover_at = None;
            self.cover_tail(now, outgoing, context);
        }
        if self.has_pending_repair() {
            return;
        }
        let Some((&oldest, source)) = self.sources.iter_mut().next() else {
            return;
        };
        if now < source.last_sent_at + probe_timeout {
            return;
        }
        source.last_sent_at = now;
        // No news for a probe timeout: whatever was sent up to now is lost
        // or its receipts are, so treat it all as holes.
        self.receipt_high = self.receipt_high.max(self.next_seq);
        let count = config.reactive_repair_count(1, context.loss_factor(), context.tail);
        self.reactive = vec![(oldest, count)];
    }

    /// The queue stayed empty after the last reliable source: owe the
    /// repair its tail needs ([`repair::tail_cover`]) over the sources sent
    /// within the last round trip, less what already went out after it.
    fn cover_tail(&mut self, now: Timestamp, outgoing: &OutgoingRecord, context: RepairContext) {
        let round_trip = context
            .one_way
            .map_or(Duration::from_millis(100), |one_way| one_way * 2);
        let mut kind = None;
        let mut burst = 0;
        for (&seq, source) in self.sources.iter().rev() {
            if source.kind == SourceKind::Deadline || outgoing.is_resolved(seq) {
                continue;
            }
            if now - source.last_sent_at > round_trip || burst > repair::TAIL_BURST_MAX {
                break;
            }
            kind.get_or_insert(source.kind);
            burst += 1;
        }
        let Some(kind) = kind else {
            return;
        };
        let owed = repair::tail_cover(context, burst).saturating_sub(self.repairs_since_source);
        let credit = &mut self.credit[kind.index()];
        *credit = credit.max(0.0) + owed as f64;
    }

    /// When the tail cover is due, if a reliable tail waits for one.
    pub(crate) fn next_tail_cover(&self) -> Option<Timestamp> {
        self.tail_cover_at
    }

    /// When the probe timer fires: the oldest live unresolved source's
    /// last transmission plus `probe_timeout`.
    pub(crate) fn next_probe(&self, probe_timeout: Duration) -> Option<Timestamp> {
        if self.has_pending_repair() {
            return None;
        }
        self.sources
            .values()
            .next()
            .map(|s| s.last_sent_at + probe_timeout)
    }

    /// When the next unresolved deadline source expires.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.expiring.first().map(|&(expires_at, _)| expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::{parse_frames, Receipt};

    fn context() -> RepairContext {
        RepairContext {
            loss: None,
            tail: false,
            one_way: None,
            reverse_loss: None,
        }
    }

    fn stream_segment(flow_seq: u64) -> QueuedSegment {
        QueuedSegment {
            flow: 1,
            class: SymbolClass::Reliable {
                flow_seq,
                created_micros: None,
                bounded_hold: false,
            },
            payload: vec![flow_seq as u8; 100],
            enqueued_at: Timestamp::ZERO,
            expires_at: None,
        }
    }

    /// Everything below 200 arrived but 5 and 100, each missing one
    /// equation; the receipt shows packets up to `largest_packet`.
    fn receipt(largest_packet: u64) -> Receipt {
        Receipt {
            cumulative: 5,
            ranges: vec![6..100, 101..200],
            needs: vec![(5, 1), (100, 1)],
            covered_below: u64::MAX,
            abandoned_complete_below: 200,
            largest_packet,
            ..Receipt::default()
        }
    }

    /// Applies `receipt` to the sender's record and gives it to `window`
    /// (everything below 200 reported), as the data plane does.
    fn take_receipt(window: &mut TxWindow, outgoing: &mut OutgoingRecord, receipt: &Receipt) {
        outgoing.apply(receipt, window.lowest_unresolved());
        let config = DataPlaneConfig::default();
        window.on_receipt(
            200,
            receipt.largest_packet,
            receipt.covered_below,
            &receipt.needs,
            outgoing,
            &config,
            context(),
        );
    }

    /// The first sequence number of the next repair, if one is owed.
    fn next_repair(window: &mut TxWindow, packet: u64, outgoing: &OutgoingRecord) -> Option<u64> {
        let mut out = Vec::new();
        window.next_repair_frame(
            Timestamp::ZERO,
            packet,
            outgoing,
            context(),
            false,
            &mut out,
        )?;
        match parse_frames(&out).ok()?.first()? {
            Frame::Repair { first, .. } => Some(*first),
            _ => None,
        }
    }

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    /// Sends `count` stream sources at `at`, the last with nothing queued
    /// behind it; returns the repairs owed when the tail cover is due.
    fn repairs_owed_for_a_tail(count: u64, loss: f64) -> u32 {
        let config = DataPlaneConfig::default();
        let context = RepairContext {
            loss: Some(loss),
            one_way: Some(Duration::from_millis(25)),
            ..context()
        };
        let mut window = TxWindow::new();
        let mut outgoing = OutgoingRecord::default();
        let mut out = Vec::new();
        for flow_seq in 0..count {
            let more = flow_seq + 1 < count;
            window.add_source(
                ms(0),
                stream_segment(flow_seq),
                &config,
                context,
                more,
                &mut out,
            );
        }
        window.credit = [0.0; 3];
        let Some(due) = window.next_tail_cover() else {
            return 0;
        };
        assert!(due > ms(0), "a moment's wait for more data");
        window.on_timeout(due, Duration::from_secs(1), &mut outgoing, &config, context);
        assert_eq!(window.next_tail_cover(), None, "one cover per tail");
        window.credit[SourceKind::Stream.index()].floor() as u32
    }

    #[test]
    fn a_short_exchange_gets_its_tail_covered_and_a_bulk_burst_does_not() {
        assert_eq!(repairs_owed_for_a_tail(1, 0.1), 2);
        assert!(repairs_owed_for_a_tail(4, 0.1) >= 2);
        assert_eq!(repairs_owed_for_a_tail(1, 0.0), 0, "a clean path");
        assert_eq!(
            repairs_owed_for_a_tail(repair::TAIL_BURST_MAX as u64 + 4, 0.1),
            0,
            "a bulk burst is left to the proactive rate and the receipts"
        );
    }

    #[test]
    fn more_data_behind_a_source_leaves_no_tail_to_cover() {
        let config = DataPlaneConfig::default();
        let mut window = TxWindow::new();
        let mut out = Vec::new();
        window.add_source(
            ms(0),
            stream_segment(0),
            &config,
            context(),
            false,
            &mut out,
        );
        assert!(window.next_tail_cover().is_some());
        window.add_source(ms(1), stream_segment(1), &config, context(), true, &mut out);
        assert_eq!(window.next_tail_cover(), None);
    }

    /// A window holding stream sources 0..200, none resolved yet.
    fn window_of_200_stream_sources() -> TxWindow {
        let config = DataPlaneConfig::default();
        let mut window = TxWindow::new();
        let mut out = Vec::new();
        for flow_seq in 0..200 {
            window.add_source(
                Timestamp::ZERO,
                stream_segment(flow_seq),
                &config,
                context(),
                true,
                &mut out,
            );
        }
        window
    }

    #[test]
    fn each_span_of_holes_waits_for_its_own_repair_only() {
        let mut window = window_of_200_stream_sources();
        let mut outgoing = OutgoingRecord::default();
        take_receipt(&mut window, &mut outgoing, &receipt(10));
        // Both spans are repaired, in packets 20 and 21.
        assert_eq!(next_repair(&mut window, 20, &outgoing), Some(5));
        assert_eq!(next_repair(&mut window, 21, &outgoing), Some(100));
        assert_eq!(next_repair(&mut window, 22, &outgoing), None);
        // A receipt that shows packet 20 but not 21, both spans still
        // short: 5's repair was lost, 100's may still arrive.
        take_receipt(&mut window, &mut outgoing, &receipt(20));
        assert_eq!(next_repair(&mut window, 30, &outgoing), Some(5));
        assert_eq!(next_repair(&mut window, 31, &outgoing), None);
        // The same receipt again asks for nothing new: packet 30 is not shown.
        take_receipt(&mut window, &mut outgoing, &receipt(20));
        assert_eq!(next_repair(&mut window, 32, &outgoing), None);
        // Once packet 31 shows, both are owed again.
        take_receipt(&mut window, &mut outgoing, &receipt(31));
        assert_eq!(next_repair(&mut window, 40, &outgoing), Some(5));
        assert_eq!(next_repair(&mut window, 41, &outgoing), Some(100));
    }

    #[test]
    fn a_stream_span_is_topped_up_as_its_holes_show() {
        let mut window = window_of_200_stream_sources();
        let mut outgoing = OutgoingRecord::default();
        let receipt_needing = |needed: u64, largest_packet: u64| Receipt {
            needs: vec![(5, needed)],
            ..receipt(largest_packet)
        };
        // The span at 5 first shows one hole: one repair, in packet 20.
        take_receipt(&mut window, &mut outgoing, &receipt_needing(1, 10));
        assert_eq!(next_repair(&mut window, 20, &outgoing), Some(5));
        assert_eq!(next_repair(&mut window, 21, &outgoing), None);
        // The next receipt (not yet showing packet 20) finds three holes
        // there: two more at once, not a round trip later.
        take_receipt(&mut window, &mut outgoing, &receipt_needing(3, 11));
        assert_eq!(next_repair(&mut window, 22, &outgoing), Some(5));
        assert_eq!(next_repair(&mut window, 23, &outgoing), Some(5));
        assert_eq!(next_repair(&mut window, 24, &outgoing), None);
        // The same need again: all three are in flight, nothing more.
        take_receipt(&mut window, &mut outgoing, &receipt_needing(3, 12));
        assert_eq!(next_repair(&mut window, 25, &outgoing), None);
        // A receipt that shows them all and still needs one: they were
        // lost or short, so one more.
        take_receipt(&mut window, &mut outgoing, &receipt_needing(1, 23));
        assert_eq!(next_repair(&mut window, 30, &outgoing), Some(5));
        assert_eq!(next_repair(&mut window, 31, &outgoing), None);
    }

    #[test]
    fn expired_deadline_sources_leave_the_window_without_any_receipt() {
        let config = DataPlaneConfig::default();
        let mut window = TxWindow::new();
        let mut outgoing = OutgoingRecord::default();
        let mut out = Vec::new();
        let deadline = Duration::from_millis(100);
        let mut most = 0;
        for ms in 0..10_000u64 {
            let now = Timestamp::from_duration(Duration::from_millis(ms));
            window.add_source(
                now,
                QueuedSegment {
                    flow: 2,
                    class: SymbolClass::Deadline {
                        deadline_micros: 100_000,
                        created_micros: ms * 1000,
                    },
                    payload: vec![9; 200],
                    enqueued_at: now,
                    expires_at: Some(now + deadline),
                },
                &config,
                context(),
                false,
                &mut out,
            );
            out.clear();
            if window.next_expiry().is_some_and(|at| at <= now) {
                window.on_timeout(
                    now,
                    Duration::from_secs(1),
                    &mut outgoing,
                    &config,
                    context(),
                );
            }
            most = most.max(window.sources.len());
        }
        // One source a millisecond, each alive for 100 ms.
        assert!(most <= 101, "{most} sources held");
        // Each was abandoned, to be announced: those that expired by the
        // last millisecond (created up to 9,899 ms).
        assert_eq!(outgoing.pending_abandoned(4), vec![0..9_900]);
    }
}
