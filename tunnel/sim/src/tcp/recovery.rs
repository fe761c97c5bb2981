//! Loss recovery of the [`Sender`]: the SACK scoreboard
//! (`tcp_sacktag_write_queue`, `tcp_clean_rtx_queue`, DSACK), RACK loss
//! detection (`net/ipv4/tcp_recovery.c`), the congestion-avoidance state
//! machine (`tcp_fastretrans_alert`, `tcp_enter_recovery`,
//! `tcp_enter_loss`, `tcp_process_loss` with F-RTO) and the undo of
//! spurious reductions (`tcp_try_undo_*`), ported from Linux for
//! one-segment-per-packet queues (no TSO, so no splitting or shifting).
//! RACK is Linux's only loss detection with SACK (no dupthresh, no FACK).

use super::at_micros;
use super::rtt::Micros;
use super::segment::{SackBlock, Segment};
use super::sender::{
    flag, CaState, ExitReason, Rexmit, SackState, Sender, TimerKind, TraceEvent, TIMEOUT_MIN,
};

/// `TCP_RACK_RECOVERY_THRESH`: recoveries a grown reordering window lasts.
const RACK_RECOVERY_THRESH: u32 = 16;
/// `sysctl_tcp_max_reordering`.
const MAX_REORDERING: u32 = 300;

/// Whether (t1, seq1) was sent after (t2, seq2) (`tcp_skb_sent_after`).
fn sent_after(t1: Micros, t2: Micros, seq1: u64, seq2: u64) -> bool {
    t1 > t2 || (t1 == t2 && seq1 > seq2)
}

impl Sender {
    /// `tcp_highest_sack_seq`: the end of the highest SACKed segment, or
    /// snd_una with nothing SACKed.
    pub(super) fn highest_sack_seq(&self) -> u64 {
        if self.sacked_out == 0 {
            self.snd_una
        } else {
            self.fack
        }
    }

    fn tsecr_before(&self, when: u32) -> bool {
        self.ack_tsecr
            .is_some_and(|ecr| (ecr.wrapping_sub(when) as i32) < 0)
    }

    /// The echoed timestamp predates the first retransmission: the
    /// original arrived (`tcp_packet_delayed`).
    fn packet_delayed(&self) -> bool {
        self.retrans_stamp
            .is_some_and(|stamp| self.tsecr_before(stamp))
    }

    fn any_retrans_done(&self) -> bool {
        self.retrans_out > 0 || self.q.front().is_some_and(|s| s.ever_retrans)
    }

    // ------------------------------------------------------------------
    // SACK scoreboard
    // ------------------------------------------------------------------

    /// `tcp_sacktag_write_queue`.
    pub(super) fn sacktag(&mut self, seg: &Segment, prior_snd_una: u64, st: &mut SackState) -> u32 {
        st.flag = 0;
        st.reord = self.snd_nxt;
        let found_dup = self.check_dsack(&seg.sack, seg.ack, prior_snd_una, st);
        if self.q.is_empty() {
            return st.flag;
        }
        let mut blocks: Vec<(SackBlock, bool)> = Vec::with_capacity(seg.sack.len());
        for (i, &block) in seg.sack.iter().enumerate() {
            let dup = i == 0 && found_dup;
            if !self.sack_block_valid(dup, block) || block.end <= prior_snd_una {
                continue;
            }
            blocks.push((block, dup));
        }
        blocks.sort_by_key(|(b, _)| b.start);
        for (block, dup) in blocks {
            let first = self.q.partition_point(|s| s.seq < block.start);
            let mut idx = first;
            while idx < self.q.len() && self.q[idx].end() <= block.end {
                self.sacktag_one(idx, dup, st);
                idx += 1;
            }
        }
        if self.state != CaState::Loss || self.undo_marker.is_some() {
            self.check_sack_reordering(st.reord);
        }
        st.flag
    }

    /// `tcp_is_sackblock_valid`.
    fn sack_block_valid(&self, dup: bool, b: SackBlock) -> bool {
        if b.end > self.snd_nxt || b.start >= b.end || b.start >= self.snd_nxt {
            return false;
        }
        if b.start > self.snd_una {
            return true;
        }
        let Some(undo_marker) = self.undo_marker else {
            return false;
        };
        if !dup || b.end > self.snd_una {
            return false;
        }
        if b.start >= undo_marker {
            return true;
        }
        if b.end <= undo_marker {
            return false;
        }
        b.start + self.max_window >= b.end
    }

    /// `tcp_check_dsack`: the first block is a DSACK if it lies below the
    /// ACK or inside the second block.
    fn check_dsack(
        &mut self,
        blocks: &[SackBlock],
        ack: u64,
        prior_snd_una: u64,
        st: &mut SackState,
    ) -> bool {
        let Some(&b0) = blocks.first() else {
            return false;
        };
        if b0.start >= ack {
            match blocks.get(1) {
                Some(b1) if b0.end <= b1.end && b0.start >= b1.start => {}
                _ => return false,
            }
        }
        let dup_segs = self.dsack_seen(b0, st);
        if dup_segs == 0 {
            return false;
        }
        self.stats.dsacks += 1;
        if let Some(undo_marker) = self.undo_marker {
            if self.undo_retrans > 0 && b0.end <= prior_snd_una && b0.end > undo_marker {
                self.undo_retrans = (self.undo_retrans - dup_segs as i64).max(0);
            }
        }
        true
    }

    /// `tcp_dsack_seen`.
    fn dsack_seen(&mut self, b: SackBlock, st: &mut SackState) -> u64 {
        if b.start >= b.end {
            return 0;
        }
        let len = b.end - b.start;
        if len > self.max_window {
            return 0;
        }
        let mss = u64::from(self.mss);
        let dup_segs = if len > mss {
            len.div_ceil(mss)
        } else {
            if self.tlp_high_seq == Some(b.end) {
                st.flag |= flag::DSACK_TLP;
            }
            1
        };
        self.dsack_dups += dup_segs;
        if self.dsack_dups > self.total_retrans {
            return 0;
        }
        if self.reord_seen > 0 && st.flag & flag::DSACK_TLP == 0 {
            self.rack.dsack_seen = true;
        }
        st.flag |= flag::DSACKING_ACK;
        st.sack_delivered += dup_segs;
        dup_segs
    }

    /// `tcp_sacktag_one` for the segment at `idx`.
    fn sacktag_one(&mut self, idx: usize, dup: bool, st: &mut SackState) {
        let s = self.q[idx];
        if dup && s.ever_retrans {
            if self.undo_marker.is_some_and(|m| s.end() > m) && self.undo_retrans > 0 {
                self.undo_retrans -= 1;
            }
            if s.sacked && s.seq < st.reord {
                st.reord = s.seq;
            }
        }
        if s.end() <= self.snd_una {
            return;
        }
        let mut s = s;
        if !s.sacked {
            self.rack_advance(s.ever_retrans, s.end(), s.xmit);
            if s.retrans {
                if s.lost {
                    s.lost = false;
                    s.retrans = false;
                    self.lost_out -= 1;
                    self.retrans_out -= 1;
                }
            } else {
                if !s.ever_retrans {
                    if s.seq < self.highest_sack_seq() && s.seq < st.reord {
                        st.reord = s.seq;
                    }
                    if s.end() <= self.high_seq {
                        st.flag |= flag::ORIG_SACK_ACKED;
                    }
                    st.first_sackt.get_or_insert(s.xmit);
                    st.last_sackt = Some(s.xmit);
                }
                if s.lost {
                    s.lost = false;
                    self.lost_out -= 1;
                }
            }
            s.sacked = true;
            st.flag |= flag::DATA_SACKED;
            if self.sacked_out == 0 || s.end() > self.fack {
                self.fack = s.end();
            }
            self.sacked_out += 1;
            st.sack_delivered += 1;
            st.prior_delivered = st.prior_delivered.max(s.delivered_at_send);
        }
        if dup && s.retrans {
            s.retrans = false;
            self.retrans_out -= 1;
        }
        self.q[idx] = s;
    }

    /// `tcp_check_sack_reordering`: a never-retransmitted segment below
    /// the highest SACK was delivered late.
    pub(super) fn check_sack_reordering(&mut self, low_seq: u64) {
        let fack = self.highest_sack_seq();
        if low_seq >= fack {
            return;
        }
        let metric = fack - low_seq;
        let mss = u64::from(self.mss);
        if metric > u64::from(self.reordering) * mss {
            self.reordering = (metric.div_ceil(mss) as u32).min(MAX_REORDERING);
        }
        self.reord_seen += 1;
    }

    /// `tcp_clean_rtx_queue`: drops what the cumulative ACK covers, takes
    /// the RTT samples and feeds CUBIC/HyStart.
    pub(super) fn clean_rtx_queue(
        &mut self,
        prior_fack: u64,
        prior_snd_una: u64,
        st: &mut SackState,
    ) -> u32 {
        use flag::*;
        let mut flag = 0;
        let mut first_ackt: Option<Micros> = None;
        let mut last_ackt: Option<Micros> = None;
        let mut reord = self.snd_nxt;
        while let Some(&s) = self.q.front() {
            if s.end() > self.snd_una {
                break;
            }
            if s.ever_retrans {
                if s.retrans {
                    self.retrans_out -= 1;
                }
                flag |= RETRANS_DATA_ACKED;
            } else if !s.sacked {
                last_ackt = Some(s.xmit);
                first_ackt.get_or_insert(s.xmit);
                reord = reord.min(s.seq);
                if s.end() <= self.high_seq {
                    flag |= ORIG_SACK_ACKED;
                }
            }
            if s.sacked {
                self.sacked_out -= 1;
            } else {
                self.delivered += 1;
                st.prior_delivered = st.prior_delivered.max(s.delivered_at_send);
                let spurious = s.ever_retrans && self.tsecr_before(s.ts);
                if !spurious {
                    self.rack_advance(s.ever_retrans, s.end(), s.xmit);
                }
            }
            if s.lost {
                self.lost_out -= 1;
            }
            self.q.pop_front();
            flag |= DATA_ACKED;
        }
        if self.sacked_out == 0 {
            self.fack = self.snd_una;
        }
        let now = self.now;
        let (mut seq_rtt, mut ca_rtt) = (None, None);
        if let (Some(first), Some(last)) = (first_ackt, last_ackt) {
            if flag & RETRANS_DATA_ACKED == 0 {
                seq_rtt = Some(now.saturating_sub(first));
                ca_rtt = Some(now.saturating_sub(last));
            }
        }
        let mut sack_rtt = None;
        if let (Some(first), Some(last)) = (st.first_sackt, st.last_sackt) {
            sack_rtt = Some(now.saturating_sub(first));
            ca_rtt = Some(now.saturating_sub(last));
        }
        let (rtt_update, cc_rtt) = self.ack_update_rtt(flag, seq_rtt, sack_rtt, ca_rtt);
        if flag & ACKED != 0 {
            flag |= SET_XMIT_TIMER;
            if reord < prior_fack {
                self.check_sack_reordering(reord);
            }
        } else if let (Some(head), true, Some(sack_rtt)) = (self.q.front(), rtt_update, sack_rtt) {
            // Do not re-arm the RTO on a SACK RTT measured from data sent
            // after the head was last sent.
            if sack_rtt > now.saturating_sub(head.xmit) {
                flag |= SET_XMIT_TIMER;
            }
        }
        let _ = prior_snd_una;
        self.cc_pkts_acked(cc_rtt);
        flag
    }

    /// `tcp_ack_update_rtt`: ACK timing first (Karn: not over
    /// retransmitted data), else the timestamp echo. Returns whether the
    /// estimator took a sample, and congestion control's RTT sample.
    fn ack_update_rtt(
        &mut self,
        flag: u32,
        seq_rtt: Option<Micros>,
        sack_rtt: Option<Micros>,
        mut ca_rtt: Option<Micros>,
    ) -> (bool, Option<Micros>) {
        let mut seq_rtt = seq_rtt.or(sack_rtt);
        if seq_rtt.is_none() && flag & flag::ACKED != 0 {
            if let Some(ecr) = self.ack_tsecr {
                let delta = self.ts_now().wrapping_sub(ecr);
                if delta < (i32::MAX as u32) / 1000 {
                    let m = Micros::from(delta.max(1)) * 1000;
                    seq_rtt = Some(m);
                    ca_rtt = Some(m);
                }
            }
        }
        let Some(m) = seq_rtt else {
            return (false, ca_rtt);
        };
        self.rtt.update_min(ca_rtt.unwrap_or(m), false);
        self.rtt.sample(m, self.snd_una, self.snd_nxt);
        (true, ca_rtt)
    }

    // ------------------------------------------------------------------
    // RACK
    // ------------------------------------------------------------------

    /// `tcp_rack_advance`: a segment sent at `xmit` was (S)ACKed.
    fn rack_advance(&mut self, ever_retrans: bool, end_seq: u64, xmit: Micros) {
        let rtt = self.now.saturating_sub(xmit);
        let min_rtt = self.rtt.min_rtt().unwrap_or(Micros::MAX);
        if ever_retrans && rtt < min_rtt {
            // Ambiguous: maybe the original was ACKed.
            return;
        }
        self.rack.advanced = true;
        self.rack.rtt = rtt;
        if sent_after(xmit, self.rack.mstamp, end_seq, self.rack.end_seq) {
            self.rack.mstamp = xmit;
            self.rack.end_seq = end_seq;
        }
    }

    /// `tcp_rack_reo_wnd`.
    pub(super) fn rack_reo_wnd(&self) -> Micros {
        if self.reord_seen == 0 {
            if self.state >= CaState::Recovery {
                return 0;
            }
            if self.sacked_out >= self.reordering {
                return 0;
            }
        }
        let min_rtt = self.rtt.min_rtt().unwrap_or(0);
        ((min_rtt >> 2) * Micros::from(self.rack.reo_wnd_steps)).min(self.rtt.srtt())
    }

    /// `tcp_rack_detect_loss`: marks lost every segment sent before the
    /// most recently delivered one and not delivered within RACK's RTT plus
    /// the reordering window; returns the longest wait left for the rest.
    fn rack_detect_loss(&mut self) -> Micros {
        let reo_wnd = self.rack_reo_wnd();
        let mut timeout: Micros = 0;
        for idx in 0..self.q.len() {
            let s = self.q[idx];
            if s.sacked || (s.lost && !s.retrans) {
                continue;
            }
            if !sent_after(self.rack.mstamp, s.xmit, self.rack.end_seq, s.end()) {
                continue;
            }
            let elapsed = self.now.saturating_sub(s.xmit);
            let remaining = (self.rack.rtt + reo_wnd) as i64 - elapsed as i64;
            if remaining <= 0 {
                self.mark_lost(idx);
            } else {
                timeout = timeout.max(remaining as Micros);
            }
        }
        timeout
    }

    /// `tcp_rack_mark_lost`; true if it armed the reordering timer.
    fn rack_mark_lost(&mut self) -> bool {
        if !self.rack.advanced {
            return false;
        }
        self.rack.advanced = false;
        let timeout = self.rack_detect_loss();
        if timeout > 0 {
            let when = (timeout + TIMEOUT_MIN).min(self.rtt.rto());
            self.timer = Some((TimerKind::ReoTimeout, self.now + when));
            return true;
        }
        false
    }

    /// `tcp_rack_reo_timeout`: the reordering timer fired.
    pub(super) fn rack_reo_timeout(&mut self) {
        let prior_in_flight = self.in_flight();
        let prior_lost = self.lost_count;
        self.rack_detect_loss();
        if prior_in_flight != self.in_flight() {
            if self.state != CaState::Recovery {
                self.enter_recovery();
                let lost = (self.lost_count - prior_lost) as u32;
                self.cwnd_reduction(1, lost, 0);
            }
            self.rexmit = Rexmit::Lost;
        }
        if !matches!(self.timer, Some((TimerKind::Retrans, _))) {
            self.rearm_rto();
        }
    }

    /// `tcp_rack_update_reo_wnd`: DSACKs grow the reordering window by a
    /// step (at most once per round trip); it lasts 16 recoveries.
    pub(super) fn rack_update_reo_wnd(&mut self, prior_delivered: u64) {
        if prior_delivered == 0 {
            return;
        }
        if prior_delivered < self.rack.last_delivered {
            self.rack.dsack_seen = false;
        }
        if self.rack.dsack_seen {
            self.rack.reo_wnd_steps = (self.rack.reo_wnd_steps + 1).min(0xff);
            self.rack.dsack_seen = false;
            self.rack.last_delivered = self.delivered;
            self.rack.reo_wnd_persist = RACK_RECOVERY_THRESH;
        } else if self.rack.reo_wnd_persist == 0 {
            self.rack.reo_wnd_steps = 1;
        }
    }

    /// `tcp_mark_skb_lost`.
    pub(super) fn mark_lost(&mut self, idx: usize) {
        let s = &mut self.q[idx];
        if s.sacked {
            return;
        }
        if s.lost {
            if s.retrans {
                // A retransmission lost again.
                s.retrans = false;
                self.retrans_out -= 1;
                self.lost_count += 1;
            }
        } else {
            s.lost = true;
            self.lost_out += 1;
            self.lost_count += 1;
        }
    }

    // ------------------------------------------------------------------
    // State machine
    // ------------------------------------------------------------------

    /// `tcp_fastretrans_alert` for SACK with RACK.
    pub(super) fn fastretrans_alert(
        &mut self,
        prior_snd_una: u64,
        num_dupack: u32,
        ack_flag: &mut u32,
    ) {
        let flag = *ack_flag;
        if self.q.is_empty() && self.sacked_out > 0 {
            self.sacked_out = 0;
        }
        if self.state == CaState::Open {
            self.retrans_stamp = None;
        } else if self.snd_una >= self.high_seq {
            match self.state {
                // CWR holds until something above high_seq is ACKed.
                CaState::Cwr if self.snd_una != self.high_seq => {
                    self.end_cwnd_reduction();
                    self.state = CaState::Open;
                }
                CaState::Recovery => {
                    self.try_undo_recovery();
                    self.end_cwnd_reduction();
                }
                _ => {}
            }
        }
        let mut default_path = false;
        match self.state {
            CaState::Recovery => {
                if flag & flag::SND_UNA_ADVANCED != 0 && self.try_undo_partial(prior_snd_una) {
                    return;
                }
                if self.try_undo_dsack() {
                    self.try_keep_open();
                }
                self.identify_packet_loss(ack_flag);
                if self.state != CaState::Recovery {
                    if !self.time_to_recover() {
                        return;
                    }
                    self.enter_recovery();
                }
            }
            CaState::Loss => {
                self.process_loss(flag, num_dupack);
                self.identify_packet_loss(ack_flag);
                if !(self.state == CaState::Open || *ack_flag & flag::LOST_RETRANS != 0) {
                    return;
                }
                default_path = true;
            }
            _ => default_path = true,
        }
        if default_path {
            if self.state <= CaState::Disorder {
                self.try_undo_dsack();
            }
            self.identify_packet_loss(ack_flag);
            if !self.time_to_recover() {
                self.try_to_open();
                return;
            }
            self.enter_recovery();
        }
        self.rexmit = Rexmit::Lost;
    }

    fn time_to_recover(&self) -> bool {
        self.lost_out > 0
    }

    fn identify_packet_loss(&mut self, ack_flag: &mut u32) {
        if self.q.is_empty() {
            return;
        }
        let prior_retrans = self.retrans_out;
        if self.rack_mark_lost() {
            *ack_flag &= !flag::SET_XMIT_TIMER;
        }
        if prior_retrans > self.retrans_out {
            *ack_flag |= flag::LOST_RETRANS;
        }
    }

    /// `tcp_enter_recovery`.
    pub(super) fn enter_recovery(&mut self) {
        let was_in_slow_start = self.in_slow_start();
        let cwnd = self.cwnd;
        self.stats.fast_recoveries += 1;
        self.prior_ssthresh = 0;
        self.init_undo();
        if !self.in_cwnd_reduction() {
            self.prior_ssthresh = self.current_ssthresh();
            self.init_cwnd_reduction();
        }
        self.state = CaState::Recovery;
        self.note_slow_start_exit(was_in_slow_start, ExitReason::Loss);
        let at = at_micros(self.now);
        let ssthresh = self.ssthresh;
        self.event(TraceEvent::Recovery { at, cwnd, ssthresh });
    }

    fn current_ssthresh(&self) -> u32 {
        if self.in_cwnd_reduction() {
            self.ssthresh
        } else {
            self.ssthresh.max((self.cwnd >> 1) + (self.cwnd >> 2))
        }
    }

    fn init_undo(&mut self) {
        self.undo_marker = Some(self.snd_una);
        self.undo_retrans = if self.retrans_out > 0 {
            i64::from(self.retrans_out)
        } else {
            -1
        };
    }

    /// `tcp_enter_loss`: an RTO marks everything lost (but what was sent
    /// within RACK's RTT, except the head), cuts ssthresh once per window
    /// and restarts from cwnd = in flight + 1.
    pub(super) fn enter_loss(&mut self) {
        let new_recovery = self.state < CaState::Recovery;
        // tcp_timeout_mark_lost.
        for idx in 0..self.q.len() {
            let s = self.q[idx];
            if idx > 0 {
                let age = self.now.saturating_sub(s.xmit);
                if self.rack.rtt > age {
                    continue;
                }
            }
            self.mark_lost(idx);
        }
        if self.state <= CaState::Disorder
            || self.snd_una >= self.high_seq
            || (self.state == CaState::Loss && self.retransmits == 0)
        {
            self.prior_ssthresh = self.current_ssthresh();
            self.prior_cwnd = self.cwnd;
            self.ssthresh = self.cc.ssthresh(self.cwnd);
            self.init_undo();
        }
        self.cwnd = self.in_flight() + 1;
        self.cwnd_cnt = 0;
        self.state = CaState::Loss;
        self.cc.on_enter_loss(self.now, self.snd_nxt);
        self.high_seq = self.snd_nxt;
        self.frto = self.cfg.frto && (new_recovery || self.retransmits > 0);
    }

    /// `tcp_process_loss`: ACKs after an RTO, with F-RTO.
    fn process_loss(&mut self, flag: u32, num_dupack: u32) {
        let recovered = self.snd_una >= self.high_seq;
        if flag & flag::SND_UNA_ADVANCED != 0 && self.try_undo_loss(false) {
            return;
        }
        if self.frto {
            if flag & flag::ORIG_SACK_ACKED != 0 && self.try_undo_loss(true) {
                return;
            }
            if self.snd_nxt > self.high_seq {
                if flag & flag::DATA_SACKED != 0 || num_dupack > 0 {
                    self.frto = false;
                }
            } else if flag & flag::SND_UNA_ADVANCED != 0 && !recovered {
                self.high_seq = self.snd_nxt;
                let has_new = self.total_unsent();
                if has_new {
                    self.rexmit = Rexmit::New;
                    return;
                }
                self.frto = false;
            }
        }
        if recovered {
            self.try_undo_recovery();
            return;
        }
        self.rexmit = Rexmit::Lost;
    }

    /// Whether new data could be sent (F-RTO step 2b).
    fn total_unsent(&self) -> bool {
        self.has_unsent() && self.snd_nxt < self.snd_una + self.snd_wnd
    }

    // ------------------------------------------------------------------
    // Undo
    // ------------------------------------------------------------------

    fn may_undo(&self) -> bool {
        self.undo_marker.is_some() && (self.undo_retrans == 0 || self.packet_delayed())
    }

    /// `tcp_undo_cwnd_reduction`.
    fn undo_cwnd_reduction(&mut self, unmark_loss: bool) {
        if unmark_loss {
            for s in self.q.iter_mut() {
                s.lost = false;
            }
            self.lost_out = 0;
        }
        if self.prior_ssthresh != 0 {
            // tcp_reno_undo_cwnd, which cubic uses.
            self.cwnd = self.cwnd.max(self.prior_cwnd);
            if self.prior_ssthresh > self.ssthresh {
                self.ssthresh = self.prior_ssthresh;
            }
        }
        self.undo_marker = None;
        self.rack.advanced = true;
        self.stats.undos += 1;
        let at = at_micros(self.now);
        let cwnd = self.cwnd;
        self.event(TraceEvent::Undo { at, cwnd });
    }

    /// `tcp_try_undo_recovery` (with SACK it always ends in Open).
    fn try_undo_recovery(&mut self) {
        if self.may_undo() {
            self.undo_cwnd_reduction(false);
        } else if self.rack.reo_wnd_persist > 0 {
            self.rack.reo_wnd_persist -= 1;
        }
        self.state = CaState::Open;
    }

    /// `tcp_try_undo_dsack`: DSACKs show every retransmission spurious.
    fn try_undo_dsack(&mut self) -> bool {
        if self.undo_marker.is_some() && self.undo_retrans == 0 {
            self.rack.reo_wnd_persist = (self.rack.reo_wnd_persist + 1).min(RACK_RECOVERY_THRESH);
            self.undo_cwnd_reduction(false);
            return true;
        }
        false
    }

    /// `tcp_try_undo_loss`.
    fn try_undo_loss(&mut self, frto_undo: bool) -> bool {
        if frto_undo || self.may_undo() {
            self.undo_cwnd_reduction(true);
            self.retransmits = 0;
            self.state = CaState::Open;
            return true;
        }
        false
    }

    /// `tcp_try_undo_partial`: a hole filled by the delayed original.
    fn try_undo_partial(&mut self, prior_snd_una: u64) -> bool {
        if self.undo_marker.is_some() && self.packet_delayed() {
            self.check_sack_reordering(prior_snd_una);
            if self.retrans_out > 0 {
                return true;
            }
            if !self.any_retrans_done() {
                self.retrans_stamp = None;
            }
            self.undo_cwnd_reduction(true);
            self.try_keep_open();
        }
        false
    }

    /// `tcp_try_keep_open`.
    pub(super) fn try_keep_open(&mut self) {
        let state = if self.sacked_out + self.lost_out > 0 || self.any_retrans_done() {
            CaState::Disorder
        } else {
            CaState::Open
        };
        if self.state != state {
            self.state = state;
            self.high_seq = self.snd_nxt;
        }
    }

    /// `tcp_try_to_open`.
    fn try_to_open(&mut self) {
        if !self.any_retrans_done() {
            self.retrans_stamp = None;
        }
        if self.state != CaState::Cwr {
            self.try_keep_open();
        }
    }
}
