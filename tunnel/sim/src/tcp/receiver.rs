//! The receiving side of the model, after Linux's `tcp_data_queue`,
//! `tcp_data_queue_ofo`, `tcp_sack_new_ofo_skb`, `tcp_event_data_recv`
//! and `__tcp_ack_snd_check`: in-order data is delivered at once (the
//! application reads everything), out-of-order data waits and is SACKed.
//!
//! When to ACK:
//! - immediately when more than one full segment is unacknowledged, in
//!   quick-ACK mode (the first 16 ACKs, and after duplicate data or a gap
//!   longer than the RTO), when a hole fills (the out-of-order queue
//!   empties), and for out-of-order data — but after three such ACKs for
//!   the same `rcv_nxt`, further ones are compressed for up to
//!   min(1 ms, RTT/20) or 44 ACKs;
//! - otherwise after the delayed-ACK timeout (40 ms; Linux's adaptive
//!   `ato`, doubled each time the timer fires, at most the RTT or 500 ms);
//! - and, as `tcp_grow_window` does, at once for every segment that still
//!   grows the advertised window (`rcv_ssthresh`, from 64 kB, by two
//!   segments per segment) towards the window clamp. The clamp follows
//!   receive-buffer autotuning (`tcp_rcv_space_adjust`, "DRS"): once per
//!   receiver RTT it becomes 2 × the bytes read in that RTT + 16 segments,
//!   plus twice the growth over the previous RTT, never shrinking, at most
//!   [`TcpConfig::receive_window`].
//!
//! ACKs echo the timestamp of the last segment that advanced the left
//! edge (`ts_recent`) and carry up to 3 SACK blocks, a DSACK first.

use super::rtt::Micros;
use super::segment::{SackBlock, Segment};
use super::{at_micros, micros, ts_clock, TcpConfig};
use std::collections::BTreeMap;
use tgp_proto::Timestamp;

/// The first advertised window (`tcp_rmem[1]` = 128 kB of buffer).
const INITIAL_RCV_SSTHRESH: u64 = 65_535;
/// SACK blocks remembered (`TCP_NUM_SACKS`).
const NUM_SACKS: usize = 4;
/// SACK blocks sent with timestamps (40 bytes of options − 12) / 8.
const SACKS_SENT: usize = 3;
/// `TCP_FASTRETRANS_THRESH`.
const FASTRETRANS_THRESH: u32 = 3;
/// `TCP_SACK_BLOCKS_EXPECTED`.
const SACK_BLOCKS_EXPECTED: usize = 2;

/// Counters of a [`Receiver`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Bytes delivered in order to the application.
    pub bytes_delivered: u64,
    /// Data segments received.
    pub segments_received: u64,
    /// Data segments that arrived beyond a hole.
    pub out_of_order: u64,
    /// Data segments entirely received before (answered with a DSACK).
    pub duplicates: u64,
    /// ACKs sent.
    pub acks_sent: u64,
    /// ACKs sent by the delayed-ACK timer.
    pub delayed_acks: u64,
}

/// The receiving side. See the module documentation.
#[derive(Debug)]
pub struct Receiver {
    cfg: TcpConfig,
    now: Micros,
    rcv_nxt: u64,
    /// `rcv_nxt` when the last ACK was sent.
    rcv_wup: u64,
    /// Out-of-order data: start → end, disjoint and not adjacent.
    ooo: BTreeMap<u64, u64>,
    /// `selective_acks`, most recent first.
    sacks: Vec<SackBlock>,
    dsack: Option<SackBlock>,
    ts_recent: u32,
    /// The window advertised while it grows (`rcv_ssthresh`).
    rcv_ssthresh: u64,
    /// What autotuning lets the window grow to (`window_clamp`).
    window_clamp: u64,
    /// Bytes read in the last autotuning interval (`rcvq_space.space`).
    rcvq_space: u64,
    /// `rcv_nxt` and time at the start of the interval.
    rcvq_seq: u64,
    rcvq_time: Micros,
    ack_scheduled: bool,
    ack_now: bool,
    delack_at: Option<Micros>,
    quick: u32,
    ato: Micros,
    lrcvtime: Option<Micros>,
    rcv_mss: u32,
    /// `TCP_ATO_MIN`, from [`TcpConfig::delayed_ack`].
    ato_min: Micros,
    compressed_ack: u32,
    compressed_ack_rcv_nxt: u64,
    dup_ack_counter: u32,
    comp_at: Option<Micros>,
    /// Receiver's RTT estimate (from the handshake and timestamp echoes,
    /// `rcv_rtt_est`).
    rcv_rtt: Micros,
    last_tsecr: u32,
    /// The receiver's own RTO (bounds `ato`).
    rto: Micros,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver expecting byte 0 first.
    pub fn new(config: TcpConfig) -> Self {
        let rtt = config.handshake_rtt.map_or(0, |d| d.as_micros() as Micros);
        let rto_min = config.rto_min.as_micros() as Micros;
        let rto = if rtt > 0 {
            rtt + (2 * rtt).max(rto_min)
        } else {
            config.rto_initial.as_micros() as Micros
        };
        Receiver {
            now: 0,
            rcv_nxt: 0,
            rcv_wup: 0,
            ooo: BTreeMap::new(),
            sacks: Vec::new(),
            dsack: None,
            ts_recent: 0,
            rcv_ssthresh: INITIAL_RCV_SSTHRESH.min(u64::from(config.receive_window)),
            window_clamp: INITIAL_RCV_SSTHRESH.min(u64::from(config.receive_window)),
            rcvq_space: (10 * u64::from(config.mss))
                .min(INITIAL_RCV_SSTHRESH)
                .min(u64::from(config.receive_window)),
            rcvq_seq: 0,
            rcvq_time: 0,
            ack_scheduled: false,
            ack_now: false,
            delack_at: None,
            quick: 0,
            ato: 0,
            lrcvtime: None,
            rcv_mss: 536.min(config.mss),
            ato_min: config.delayed_ack.as_micros() as Micros,
            compressed_ack: 0,
            compressed_ack_rcv_nxt: 0,
            dup_ack_counter: 0,
            comp_at: None,
            rcv_rtt: rtt,
            last_tsecr: 0,
            rto,
            stats: ReceiverStats::default(),
            cfg: config,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// Bytes received in order (the next byte expected).
    pub fn bytes_delivered(&self) -> u64 {
        self.rcv_nxt
    }

    /// A data segment arrived.
    pub fn handle_segment(&mut self, now: Timestamp, seg: &Segment) {
        self.now = micros(now).max(self.now);
        if seg.payload_len == 0 {
            return;
        }
        self.stats.segments_received += 1;
        if seg.seq <= self.rcv_wup {
            self.ts_recent = seg.ts_val;
        }
        if seg.ts_ecr != 0 && seg.ts_ecr != self.last_tsecr && seg.payload_len >= self.rcv_mss {
            self.last_tsecr = seg.ts_ecr;
            let delta = ts_clock(self.now).wrapping_sub(seg.ts_ecr);
            if delta < 1 << 30 {
                let sample = Micros::from(delta.max(1)) * 1000;
                self.rcv_rtt = if self.rcv_rtt == 0 {
                    sample
                } else {
                    (7 * self.rcv_rtt + sample) / 8
                };
            }
        }
        self.dsack = None;
        let (start, end) = (seg.seq, seg.end());
        let window_end = self.rcv_nxt + u64::from(self.cfg.receive_window);
        if start == self.rcv_nxt || (start < self.rcv_nxt && end > self.rcv_nxt) {
            if start < self.rcv_nxt {
                // Partly old.
                self.dsack_set(start, self.rcv_nxt);
            }
            self.deliver(end);
            self.event_data_recv(seg.payload_len);
            if !self.ooo.is_empty() {
                self.ofo_queue();
                if self.ooo.is_empty() {
                    // RFC 5681 4.2: ACK at once when a gap fills.
                    self.ack_now = true;
                }
            }
            if !self.sacks.is_empty() {
                self.sack_remove();
            }
        } else if end <= self.rcv_nxt {
            // A retransmission of what arrived: DSACK, ACK at once.
            self.stats.duplicates += 1;
            self.dsack_set(start, end);
            self.enter_quickack_mode();
            self.ack_scheduled = true;
        } else if start >= window_end {
            self.enter_quickack_mode();
            self.ack_scheduled = true;
        } else {
            self.stats.out_of_order += 1;
            self.data_queue_ofo(start, end);
            self.grow_window(seg.payload_len);
        }
        self.ack_snd_check();
    }

    fn deliver(&mut self, end: u64) {
        if end > self.rcv_nxt {
            self.stats.bytes_delivered += end - self.rcv_nxt;
            self.rcv_nxt = end;
            // The application reads at once.
            self.rcv_space_adjust();
        }
    }

    /// `tcp_rcv_space_adjust` with `tcp_moderate_rcvbuf`: Linux sizes the
    /// buffer so that the window (half the buffer, `tcp_adv_win_scale` 1,
    /// with 2·MSS of buffer per MSS of data) is this.
    fn rcv_space_adjust(&mut self) {
        if self.rcv_rtt == 0 || self.now.saturating_sub(self.rcvq_time) < self.rcv_rtt {
            return;
        }
        let copied = self.rcv_nxt - self.rcvq_seq;
        if copied > self.rcvq_space {
            let mss = u64::from(self.cfg.mss);
            let mut rcvwin = 2 * copied + 16 * mss;
            let grow = rcvwin * (copied - self.rcvq_space) / self.rcvq_space.max(1);
            rcvwin += 2 * grow;
            let clamp = (rcvwin / mss * mss).min(u64::from(self.cfg.receive_window));
            self.window_clamp = self.window_clamp.max(clamp);
            self.rcvq_space = copied;
        }
        self.rcvq_seq = self.rcv_nxt;
        self.rcvq_time = self.now;
    }

    /// `tcp_event_data_recv`: schedules an ACK, tracks the peer's MSS and
    /// adapts the delayed-ACK timeout.
    fn event_data_recv(&mut self, len: u32) {
        self.ack_scheduled = true;
        if len >= self.rcv_mss {
            self.rcv_mss = len.min(self.cfg.mss);
        }
        match self.lrcvtime {
            None => {
                self.incr_quickack();
                self.ato = self.ato_min;
            }
            Some(last) => {
                let m = self.now.saturating_sub(last);
                if m <= self.ato_min / 2 {
                    self.ato = (self.ato >> 1) + self.ato_min / 2;
                } else if m < self.ato {
                    self.ato = ((self.ato >> 1) + m).min(self.rto);
                } else if m > self.rto {
                    self.incr_quickack();
                }
            }
        }
        self.lrcvtime = Some(self.now);
        self.grow_window(len);
    }

    /// `tcp_grow_window`: while the advertised window is below its clamp,
    /// each segment of 128 bytes or more grows it by two segments and asks
    /// for an immediate ACK.
    fn grow_window(&mut self, len: u32) {
        let clamp = self.window_clamp;
        if len < 128 || self.rcv_ssthresh >= clamp {
            return;
        }
        let incr = (2 * u64::from(self.cfg.mss)).max(2 * u64::from(len));
        self.rcv_ssthresh = (self.rcv_ssthresh + incr).min(clamp);
        self.quick = self.quick.max(1);
    }

    fn incr_quickack(&mut self) {
        let quickacks = (self.cfg.receive_window / (2 * self.rcv_mss.max(1))).max(2);
        let quickacks = quickacks.min(self.cfg.quick_acks);
        if quickacks > self.quick {
            self.quick = quickacks;
        }
    }

    fn enter_quickack_mode(&mut self) {
        self.incr_quickack();
        self.ato = self.ato_min;
    }

    fn dsack_set(&mut self, start: u64, end: u64) {
        self.dsack = Some(SackBlock::new(start, end));
    }

    fn dsack_extend(&mut self, start: u64, end: u64) {
        match &mut self.dsack {
            None => self.dsack_set(start, end),
            Some(d) => {
                sack_extend(d, start, end);
            }
        }
    }

    /// `tcp_ofo_queue`: moves what now follows `rcv_nxt` in order.
    fn ofo_queue(&mut self) {
        let mut dsack_high = self.rcv_nxt;
        while let Some((&start, &end)) = self.ooo.first_key_value() {
            if start > self.rcv_nxt {
                break;
            }
            if start < dsack_high {
                let dsack = dsack_high;
                if end < dsack_high {
                    dsack_high = end;
                }
                self.dsack_extend(start, dsack);
            }
            self.ooo.pop_first();
            self.deliver(end);
        }
    }

    /// `tcp_data_queue_ofo`: stores out-of-order data, noting duplicates.
    fn data_queue_ofo(&mut self, start: u64, end: u64) {
        self.ack_scheduled = true;
        if self.ooo.is_empty() {
            self.sacks.clear();
            self.sacks.push(SackBlock::new(start, end));
            self.ooo.insert(start, end);
            return;
        }
        // Overlaps with what is stored become DSACKs.
        let mut new_start = start;
        let mut new_end = end;
        let overlapping: Vec<(u64, u64)> = self
            .ooo
            .range(..=end)
            .filter(|&(&s, &e)| e >= start && s <= end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for &(s, e) in &overlapping {
            let (lo, hi) = (s.max(start), e.min(end));
            if lo < hi {
                self.dsack_extend(lo, hi);
            }
            new_start = new_start.min(s);
            new_end = new_end.max(e);
        }
        let covered = overlapping.iter().any(|&(s, e)| s <= start && e >= end);
        if covered {
            self.stats.duplicates += 1;
        }
        for (s, _) in overlapping {
            self.ooo.remove(&s);
        }
        self.ooo.insert(new_start, new_end);
        self.sack_new_ofo_skb(start, end);
    }

    /// `tcp_sack_new_ofo_skb`: the block with the newest data goes first.
    fn sack_new_ofo_skb(&mut self, start: u64, end: u64) {
        let cur = self.sacks.len();
        if cur == 0 {
            self.sacks.push(SackBlock::new(start, end));
            return;
        }
        for i in 0..cur {
            if sack_extend(&mut self.sacks[i], start, end) {
                if i >= SACK_BLOCKS_EXPECTED {
                    self.compress_send_ack();
                }
                let block = self.sacks.remove(i);
                self.sacks.insert(0, block);
                if cur > 1 {
                    self.sack_maybe_coalesce();
                }
                return;
            }
        }
        if cur >= SACK_BLOCKS_EXPECTED {
            self.compress_send_ack();
        }
        if cur >= NUM_SACKS {
            self.sacks.pop();
        }
        self.sacks.insert(0, SackBlock::new(start, end));
    }

    fn sack_maybe_coalesce(&mut self) {
        let mut i = 1;
        while i < self.sacks.len() {
            let other = self.sacks[i];
            if sack_extend(&mut self.sacks[0], other.start, other.end) {
                self.sacks.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// `tcp_sack_remove`: blocks `rcv_nxt` has passed go.
    fn sack_remove(&mut self) {
        if self.ooo.is_empty() {
            self.sacks.clear();
            return;
        }
        let rcv_nxt = self.rcv_nxt;
        self.sacks.retain(|b| rcv_nxt < b.start);
    }

    fn compress_send_ack(&mut self) {
        if self.compressed_ack == 0 {
            return;
        }
        self.compressed_ack = 0;
        self.comp_at = None;
        self.ack_now = true;
    }

    /// `__tcp_ack_snd_check`.
    fn ack_snd_check(&mut self) {
        if !self.ack_scheduled {
            return;
        }
        if self.rcv_nxt - self.rcv_wup > u64::from(self.rcv_mss) || self.quick > 0 || self.ack_now {
            self.ack_now = true;
            return;
        }
        if self.ooo.is_empty() {
            self.send_delayed_ack();
            return;
        }
        if self.compressed_ack >= self.cfg.sack_compress_max {
            self.ack_now = true;
            return;
        }
        if self.compressed_ack_rcv_nxt != self.rcv_nxt {
            self.compressed_ack_rcv_nxt = self.rcv_nxt;
            self.dup_ack_counter = 0;
        }
        if self.dup_ack_counter < FASTRETRANS_THRESH {
            self.dup_ack_counter += 1;
            self.ack_now = true;
            return;
        }
        self.compressed_ack += 1;
        if self.comp_at.is_none() {
            let max = self.cfg.sack_compress_delay.as_micros() as Micros;
            let delay = if self.rcv_rtt > 0 {
                max.min(self.rcv_rtt / 20)
            } else {
                max
            };
            self.comp_at = Some(self.now + delay.max(1));
        }
    }

    /// `tcp_send_delayed_ack`.
    fn send_delayed_ack(&mut self) {
        let mut ato = self.ato.max(self.ato_min);
        if ato > self.ato_min {
            let mut max_ato: Micros = 500_000;
            if self.rcv_rtt > 0 {
                max_ato = max_ato.min(self.rcv_rtt.max(self.ato_min));
            }
            ato = ato.min(max_ato);
        }
        let mut at = self.now + ato;
        if let Some(existing) = self.delack_at {
            // The timer is about to fire anyway: ACK now.
            if existing <= self.now + (ato >> 2) {
                self.ack_now = true;
                return;
            }
            at = at.min(existing);
        }
        self.delack_at = Some(at);
    }

    /// The next ACK to send, if one is due now.
    pub fn poll_segment(&mut self, now: Timestamp) -> Option<Segment> {
        self.now = micros(now).max(self.now);
        if !self.ack_now {
            return None;
        }
        Some(self.make_ack())
    }

    fn make_ack(&mut self) -> Segment {
        let mut sack = Vec::with_capacity(SACKS_SENT);
        if let Some(d) = self.dsack {
            sack.push(d);
        }
        for block in &self.sacks {
            if sack.len() == SACKS_SENT {
                break;
            }
            sack.push(*block);
        }
        self.rcv_wup = self.rcv_nxt;
        self.ack_scheduled = false;
        self.ack_now = false;
        self.delack_at = None;
        self.comp_at = None;
        self.compressed_ack = 0;
        if self.quick > 0 {
            self.quick -= 1;
            if self.quick == 0 {
                self.ato = self.ato_min;
            }
        }
        self.stats.acks_sent += 1;
        Segment {
            seq: 0,
            ack: self.rcv_nxt,
            window: self.rcv_ssthresh as u32,
            ts_val: ts_clock(self.now),
            ts_ecr: self.ts_recent,
            sack,
            payload_len: 0,
        }
    }

    /// When [`Receiver::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.delack_at, self.comp_at) {
            (Some(a), Some(b)) => Some(at_micros(a.min(b))),
            (a, b) => a.or(b).map(at_micros),
        }
    }

    /// Runs the delayed-ACK or SACK-compression timer if due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = micros(now).max(self.now);
        if self.comp_at.is_some_and(|at| at <= self.now) {
            self.comp_at = None;
            if self.compressed_ack > 0 {
                self.ack_now = true;
            }
        }
        if self.delack_at.is_some_and(|at| at <= self.now) {
            self.delack_at = None;
            if self.ack_scheduled {
                // Delayed ACK missed: inflate ATO.
                self.ato = (self.ato << 1).min(self.rto);
                self.stats.delayed_acks += 1;
                self.ack_now = true;
            }
        }
    }
}

/// `tcp_sack_extend`: grows `block` by `start..end` if they touch.
fn sack_extend(block: &mut SackBlock, start: u64, end: u64) -> bool {
    if start <= block.end && block.start <= end {
        block.start = block.start.min(start);
        block.end = block.end.max(end);
        true
    } else {
        false
    }
}
