//! FEC groups on the sending side: the sender's sequence space, building
//! groups from the segments taken off the queue, closing them (by count,
//! by class change or by timer) with their proactive repair, scheduling
//! fresh repair when receipts or the probe timer show a group still short,
//! expiring deadline members, and writing the DATA and REPAIR frames.
//!
//! A group is a contiguous run of sequence numbers, all of one class. It
//! lives until every member is resolved at the peer (delivered or
//! abandoned, as the receipts say).

use super::queue::QueuedSegment;
use super::repair::{self, GroupKind, RepairContext};
use crate::delivery::config::DataPlaneConfig;
use crate::delivery::fec;
use crate::delivery::receipt::OutgoingRecord;
use crate::time::Timestamp;
use crate::wire::frame::{Frame, Symbol, SymbolClass};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

struct TxMember {
    expires_at: Option<Timestamp>,
    /// The member's expiry has been acted on (abandoned if unresolved).
    expiry_handled: bool,
}

impl TxMember {
    /// Still worth repairing at `now`: a reliable member, or a deadline
    /// member before its deadline.
    fn alive_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

struct TxGroup {
    shards: Vec<Vec<u8>>,
    members: Vec<TxMember>,
    shard_len: usize,
    closed: bool,
    opened_at: Timestamp,
    deadline: bool,
    /// Some member is segment-mode TCP (see [`GroupKind::Segment`]).
    latency_sensitive: bool,
    next_repair_index: usize,
    next_resend: usize,
    pending_repairs: u32,
    pending_proactive: bool,
    last_packet: u64,
    last_sent_at: Timestamp,
    unresolved: usize,
    reported_need: Option<u64>,
}

impl TxGroup {
    fn k(&self) -> usize {
        self.shards.len()
    }

    fn kind(&self) -> GroupKind {
        if self.deadline {
            GroupKind::Deadline
        } else if self.latency_sensitive {
            GroupKind::Segment
        } else {
            GroupKind::Stream
        }
    }

    /// Whether some member is neither resolved at the peer nor past its
    /// deadline: only then is repair worth sending.
    fn has_live_member(&self, first: u64, outgoing: &OutgoingRecord, now: Timestamp) -> bool {
        self.members
            .iter()
            .enumerate()
            .any(|(i, member)| !outgoing.is_resolved(first + i as u64) && member.alive_at(now))
    }

    /// Waiting for nothing but a receipt: closed, no repair pending, some
    /// member unresolved.
    fn awaits_receipt(&self) -> bool {
        self.closed && self.pending_repairs == 0 && self.unresolved > 0
    }
}

/// What [`TxGroups::next_repair_frame`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RepairSent {
    /// A repair symbol scheduled when its group closed.
    Proactive,
    /// A fresh repair symbol a receipt or the probe timer asked for.
    Reactive,
    /// A source symbol again: the group ran out of repair indices.
    SourceResent,
}

/// The groups in flight, by first sequence number, and the queue of groups
/// with repair to send.
pub(crate) struct TxGroups {
    groups: BTreeMap<u64, TxGroup>,
    open: Option<u64>,
    repair_queue: VecDeque<u64>,
    next_seq: u64,
}

impl TxGroups {
    pub(crate) fn new() -> Self {
        TxGroups {
            groups: BTreeMap::new(),
            open: None,
            repair_queue: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// The next sequence number to use.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether no group is in flight.
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The lowest sequence number not yet resolved at the peer.
    pub(crate) fn lowest_unresolved(&self) -> u64 {
        self.groups.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// Whether some group has repair symbols to send.
    pub(crate) fn has_pending_repair(&self) -> bool {
        !self.repair_queue.is_empty()
    }

    /// When the open group closes by time: soon when nothing more is
    /// waiting, later while data keeps coming (it then fills by count).
    pub(crate) fn open_group_close_time(
        &self,
        config: &DataPlaneConfig,
        reliable_queued: bool,
    ) -> Option<Timestamp> {
        let group = self.groups.get(&self.open?)?;
        Some(if !reliable_queued || group.deadline {
            group.opened_at + config.fec_group_timeout
        } else {
            group.opened_at + config.fec_group_max_age
        })
    }

    /// Closes the open group if its time has come.
    pub(crate) fn close_open_group_if_due(
        &mut self,
        now: Timestamp,
        config: &DataPlaneConfig,
        context: RepairContext,
        reliable_queued: bool,
    ) {
        if let (Some(open), Some(at)) = (
            self.open,
            self.open_group_close_time(config, reliable_queued),
        ) {
            if now >= at {
                self.close(open, config, context);
            }
        }
    }

    /// Closes a group and schedules its proactive repair.
    fn close(&mut self, first: u64, config: &DataPlaneConfig, context: RepairContext) {
        if self.open == Some(first) {
            self.open = None;
        }
        let Some(group) = self.groups.get_mut(&first) else {
            return;
        };
        if group.closed {
            return;
        }
        let repairs = repair::proactive_repairs(config, context, group.k(), group.kind());
        group.closed = true;
        group.pending_repairs = repairs;
        group.pending_proactive = true;
        if repairs > 0 {
            self.repair_queue.push_back(first);
        }
    }

    fn schedule_reactive(&mut self, first: u64, count: u32) {
        if let Some(group) = self.groups.get_mut(&first) {
            group.pending_repairs = count;
            group.pending_proactive = false;
            self.repair_queue.push_back(first);
        }
    }

    /// Appends the next scheduled repair frame to `out`, if any group has
    /// one to send.
    pub(crate) fn next_repair_frame(
        &mut self,
        now: Timestamp,
        packet_number: u64,
        outgoing: &OutgoingRecord,
        out: &mut Vec<u8>,
    ) -> Option<RepairSent> {
        while let Some(&first) = self.repair_queue.front() {
            let Some(group) = self.groups.get_mut(&first) else {
                self.repair_queue.pop_front();
                continue;
            };
            if group.pending_repairs == 0 || group.unresolved == 0 {
                group.pending_repairs = 0;
                self.repair_queue.pop_front();
                continue;
            }
            let k = group.k();
            group.pending_repairs -= 1;
            if group.pending_repairs == 0 {
                self.repair_queue.pop_front();
            }
            group.last_packet = packet_number;
            group.last_sent_at = now;
            if repair::has_fresh_repair(k, group.next_repair_index) {
                let index = group.next_repair_index;
                group.next_repair_index += 1;
                let refs: Vec<&[u8]> = group.shards.iter().map(Vec::as_slice).collect();
                let shard = fec::encode_repair(&refs, index, group.shard_len);
                Frame::Repair {
                    group_first: first,
                    k: k as u8,
                    index: index as u8,
                    shard: &shard,
                }
                .encode(out);
                return Some(if group.pending_proactive {
                    RepairSent::Proactive
                } else {
                    RepairSent::Reactive
                });
            }
            // Out of fresh repair symbols: send again a source the peer
            // has not confirmed (round robin over those).
            let i = (0..k)
                .map(|step| (group.next_resend + step) % k)
                .find(|&i| !outgoing.is_resolved(first + i as u64))
                .unwrap_or(group.next_resend % k);
            group.next_resend = i + 1;
            let symbol = fec::symbol_of_shard(&group.shards[i]).unwrap_or(&[]);
            Frame::Data {
                seq: first + i as u64,
                group_index: i as u8,
                symbol,
            }
            .encode(out);
            return Some(RepairSent::SourceResent);
        }
        None
    }

    /// Gives `segment` the next sequence number, adds it to the open group
    /// (a new one if none is open, or if the open one holds the other
    /// class), appends its DATA frame to `out`, and closes the group when
    /// it is full or, for deadline traffic, when nothing more is queued.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_source(
        &mut self,
        now: Timestamp,
        packet_number: u64,
        segment: QueuedSegment,
        config: &DataPlaneConfig,
        context: RepairContext,
        more_deadline_queued: bool,
        out: &mut Vec<u8>,
    ) {
        let deadline = matches!(segment.class, SymbolClass::Deadline { .. });
        // Groups hold one class: close an open group of the other class.
        if let Some(open) = self.open {
            if self
                .groups
                .get(&open)
                .is_some_and(|g| g.deadline != deadline)
            {
                self.close(open, config, context);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let first = *self.open.get_or_insert(seq);
        let group = self.groups.entry(first).or_insert_with(|| TxGroup {
            shards: Vec::new(),
            members: Vec::new(),
            shard_len: 0,
            closed: false,
            opened_at: now,
            deadline,
            latency_sensitive: false,
            next_repair_index: 0,
            next_resend: 0,
            pending_repairs: 0,
            pending_proactive: true,
            last_packet: packet_number,
            last_sent_at: now,
            unresolved: 0,
            reported_need: None,
        });
        let mut symbol = Vec::with_capacity(segment.payload.len() + Symbol::MAX_OVERHEAD);
        Symbol {
            flow: segment.flow,
            class: segment.class,
            payload: &segment.payload,
        }
        .encode(&mut symbol);
        let target_k = repair::group_size(config, context.loss, deadline);
        group.latency_sensitive |= matches!(
            segment.class,
            SymbolClass::Reliable {
                bounded_hold: true,
                ..
            }
        );
        let index = group.shards.len();
        Frame::Data {
            seq,
            group_index: index as u8,
            symbol: &symbol,
        }
        .encode(out);
        let shard = fec::source_shard(&symbol);
        group.shard_len = group.shard_len.max(shard.len());
        group.shards.push(shard);
        group.members.push(TxMember {
            expires_at: segment.expires_at,
            expiry_handled: false,
        });
        group.unresolved += 1;
        group.last_packet = packet_number;
        group.last_sent_at = now;
        let full = group.shards.len() >= target_k || (deadline && !more_deadline_queued);
        if full {
            self.close(first, config, context);
        }
    }

    /// A receipt moved the peer's record: recount what is unresolved, free
    /// the groups resolved throughout, and ask for fresh repair where the
    /// receipt shows a closed group still short although it covers the
    /// group and acknowledges a packet sent after its last symbol.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_receipt(
        &mut self,
        now: Timestamp,
        largest_packet: u64,
        covered_below: u64,
        needs: &HashMap<u64, u64>,
        outgoing: &OutgoingRecord,
        config: &DataPlaneConfig,
        context: RepairContext,
    ) {
        let loss_factor = context.loss_factor();
        let mut finished = Vec::new();
        let mut reactive = Vec::new();
        for (&first, group) in &mut self.groups {
            let k = group.k();
            let end = first + k as u64;
            group.unresolved = k - outgoing.resolved_count(first..end);
            if group.closed && group.unresolved == 0 {
                finished.push(first);
                continue;
            }
            if !group.closed
                || group.pending_repairs > 0
                || largest_packet < group.last_packet
                || end > covered_below
            {
                continue;
            }
            if !group.has_live_member(first, outgoing, now) {
                continue;
            }
            let needed = needs
                .get(&first)
                .copied()
                .unwrap_or(group.unresolved as u64)
                .min(k as u64);
            group.reported_need = Some(needed);
            if needed == 0 {
                continue;
            }
            reactive.push((
                first,
                config.reactive_repair_count(needed, loss_factor, context.tail),
            ));
        }
        for (first, count) in reactive {
            self.schedule_reactive(first, count);
        }
        for first in finished {
            self.groups.remove(&first);
        }
    }

    /// The timers of the groups: abandon deadline members whose time is up
    /// (announced to the peer through `outgoing`'s pending abandonments),
    /// and schedule fresh repair for a closed group that no receipt has
    /// covered for `probe_timeout`.
    pub(crate) fn on_timeout(
        &mut self,
        now: Timestamp,
        probe_timeout: Duration,
        outgoing: &mut OutgoingRecord,
        config: &DataPlaneConfig,
        context: RepairContext,
    ) {
        let loss_factor = context.loss_factor();
        let mut reactive = Vec::new();
        for (&first, group) in &mut self.groups {
            for (i, member) in group.members.iter_mut().enumerate() {
                let seq = first + i as u64;
                if member.expiry_handled || member.expires_at.is_none_or(|e| e > now) {
                    continue;
                }
                member.expiry_handled = true;
                if !outgoing.is_resolved(seq) {
                    outgoing.abandon(seq);
                }
            }
            if !group.awaits_receipt() || now < group.last_sent_at + probe_timeout {
                continue;
            }
            group.last_sent_at = now;
            if !group.has_live_member(first, outgoing, now) {
                continue;
            }
            let needed = group
                .reported_need
                .unwrap_or(group.unresolved as u64)
                .min(group.unresolved as u64)
                .max(1);
            reactive.push((
                first,
                config.reactive_repair_count(needed, loss_factor, context.tail),
            ));
        }
        for (first, count) in reactive {
            self.schedule_reactive(first, count);
        }
    }

    /// When the probe timer of some group fires: a closed group with
    /// nothing pending that no receipt has resolved.
    pub(crate) fn next_probe(&self, probe_timeout: Duration) -> Option<Timestamp> {
        self.groups
            .values()
            .filter(|g| g.awaits_receipt())
            .map(|g| g.last_sent_at + probe_timeout)
            .min()
    }

    /// When the next unresolved deadline member expires.
    pub(crate) fn next_member_expiry(&self) -> Option<Timestamp> {
        self.groups
            .values()
            .filter(|g| g.unresolved > 0)
            .flat_map(|g| g.members.iter())
            .filter(|m| !m.expiry_handled)
            .filter_map(|m| m.expires_at)
            .min()
    }
}
