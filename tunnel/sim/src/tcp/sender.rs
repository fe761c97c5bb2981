//! The sending side of the model: what goes out and when (new data,
//! retransmissions, tail loss probes), the one transmission timer Linux
//! multiplexes (RTO, RACK reordering timeout, loss probe), ACK processing
//! (`tcp_ack`) and the congestion-control glue (`tcp_cong_control`, PRR).
//! Loss detection and the recovery state machine are in `recovery`.
//!
//! Windows are counted in segments, as in Linux. The application always
//! has data (iperf3) unless a byte count is given.

use super::cubic::{Cubic, HystartExit, INFINITE_SSTHRESH};
use super::rtt::{Micros, RttEstimator};
use super::segment::Segment;
use super::{at_micros, micros, ts_clock, TcpConfig};
use std::collections::VecDeque;
use std::time::Duration;
use tgp_proto::Timestamp;

/// `sysctl_tcp_reordering`: the initial reordering degree, segments.
const SYSCTL_REORDERING: u32 = 3;
/// `TCP_TIMEOUT_MIN`: 2 jiffies at HZ = 1000.
pub(super) const TIMEOUT_MIN: Micros = 2_000;

/// ACK processing flags (`FLAG_*` of `tcp_input.c`).
pub(super) mod flag {
    pub const DATA: u32 = 0x01;
    pub const WIN_UPDATE: u32 = 0x02;
    pub const DATA_ACKED: u32 = 0x04;
    pub const RETRANS_DATA_ACKED: u32 = 0x08;
    pub const DATA_SACKED: u32 = 0x20;
    pub const LOST_RETRANS: u32 = 0x80;
    pub const ORIG_SACK_ACKED: u32 = 0x200;
    pub const SND_UNA_ADVANCED: u32 = 0x400;
    pub const DSACKING_ACK: u32 = 0x800;
    pub const SET_XMIT_TIMER: u32 = 0x1000;
    pub const DSACK_TLP: u32 = 0x20000;
    pub const ACKED: u32 = DATA_ACKED;
    pub const NOT_DUP: u32 = DATA | WIN_UPDATE | ACKED;
    pub const CA_ALERT: u32 = DATA_SACKED | DSACKING_ACK;
    pub const FORWARD_PROGRESS: u32 = ACKED | DATA_SACKED;
}

/// Linux's congestion-avoidance states (`TCP_CA_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CaState {
    /// Nothing unusual.
    Open,
    /// SACKs or duplicate ACKs seen, no loss yet.
    Disorder,
    /// cwnd reduced without loss recovery (after a tail loss probe).
    Cwr,
    /// Fast recovery.
    Recovery,
    /// After a retransmission timeout.
    Loss,
}

/// Why slow start ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// HyStart's ACK-train test.
    HystartAckTrain,
    /// HyStart's delay test.
    HystartDelay,
    /// A loss started fast recovery.
    Loss,
    /// A retransmission timeout.
    Timeout,
    /// A tail loss probe revealed a loss.
    LossProbe,
    /// cwnd reached ssthresh (slow start after a timeout).
    SsthreshReached,
}

/// Something the sender did, for the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// Slow start ended.
    SlowStartExit {
        /// When.
        at: Timestamp,
        /// cwnd then, segments.
        cwnd: u32,
        /// Why.
        reason: ExitReason,
    },
    /// Fast recovery started (a β cut).
    Recovery {
        /// When.
        at: Timestamp,
        /// cwnd before the cut.
        cwnd: u32,
        /// The new ssthresh.
        ssthresh: u32,
    },
    /// A retransmission timeout fired.
    Timeout {
        /// When.
        at: Timestamp,
        /// cwnd before it.
        cwnd: u32,
        /// Timeouts in a row.
        backoff: u32,
    },
    /// A tail loss probe was sent.
    LossProbe {
        /// When.
        at: Timestamp,
        /// Whether it retransmitted the last segment (else new data).
        retransmit: bool,
    },
    /// A cwnd reduction was undone as spurious.
    Undo {
        /// When.
        at: Timestamp,
        /// cwnd after the undo.
        cwnd: u32,
    },
}

/// One point of the cwnd trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CwndSample {
    /// When.
    pub at: Timestamp,
    /// Congestion window, segments.
    pub cwnd: u32,
    /// Slow-start threshold, segments (0x7fffffff: not set).
    pub ssthresh: u32,
    /// Segments believed in flight.
    pub in_flight: u32,
    /// Congestion-avoidance state.
    pub state: CaState,
    /// Smoothed RTT.
    pub srtt: Duration,
}

/// Counters of a [`Sender`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Data segments sent, retransmissions included.
    pub segments_sent: u64,
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    /// Segments retransmitted (fast, after timeout, and loss probes).
    pub retransmits: u64,
    /// Fast recoveries entered.
    pub fast_recoveries: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Tail loss probes sent.
    pub loss_probes: u64,
    /// Spurious reductions undone.
    pub undos: u64,
    /// ACKs carrying a DSACK.
    pub dsacks: u64,
    /// ACKs received.
    pub acks_received: u64,
    /// Largest cwnd, segments.
    pub max_cwnd: u32,
    /// The first end of slow start: when, cwnd, why.
    pub slow_start_exit: Option<(Timestamp, u32, ExitReason)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimerKind {
    Retrans,
    ReoTimeout,
    LossProbe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rexmit {
    None,
    Lost,
    New,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    NewData,
    RetransmitLast,
}

/// A segment sent and not yet cumulatively acknowledged, with its
/// scoreboard tags (`TCPCB_*`).
#[derive(Clone, Copy, Debug)]
pub(super) struct TxSeg {
    pub seq: u64,
    pub len: u32,
    /// Last (re)transmission.
    pub xmit: Micros,
    /// SACKed.
    pub sacked: bool,
    /// A retransmission is in flight (`SACKED_RETRANS`).
    pub retrans: bool,
    /// Marked lost.
    pub lost: bool,
    /// Ever retransmitted (`EVER_RETRANS`).
    pub ever_retrans: bool,
    /// `delivered` when last sent.
    pub delivered_at_send: u64,
    /// TSval it was last sent with.
    pub ts: u32,
}

impl TxSeg {
    pub fn end(&self) -> u64 {
        self.seq + u64::from(self.len)
    }
}

/// RACK's state (`struct tcp_rack`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Rack {
    pub mstamp: Micros,
    pub end_seq: u64,
    pub rtt: Micros,
    pub reo_wnd_steps: u32,
    pub reo_wnd_persist: u32,
    pub dsack_seen: bool,
    pub last_delivered: u64,
    pub advanced: bool,
}

/// The sending side. See the module documentation.
#[derive(Debug)]
pub struct Sender {
    pub(super) cfg: TcpConfig,
    pub(super) mss: u32,
    total: Option<u64>,
    start: Micros,
    /// Current time of the event being handled.
    pub(super) now: Micros,

    pub(super) snd_una: u64,
    pub(super) snd_nxt: u64,
    pub(super) snd_wnd: u64,
    pub(super) max_window: u64,

    // Scoreboard.
    pub(super) q: VecDeque<TxSeg>,
    pub(super) sacked_out: u32,
    pub(super) lost_out: u32,
    pub(super) retrans_out: u32,
    /// End of the highest SACKed segment (meaningful while sacked_out > 0).
    pub(super) fack: u64,
    pub(super) delivered: u64,
    /// Segments marked lost so far (`tp->lost`).
    pub(super) lost_count: u64,
    pub(super) reordering: u32,
    pub(super) reord_seen: u32,
    pub(super) rack: Rack,

    // Congestion control.
    pub(super) cwnd: u32,
    pub(super) cwnd_cnt: u32,
    pub(super) ssthresh: u32,
    pub(super) prior_cwnd: u32,
    pub(super) prior_ssthresh: u32,
    pub(super) state: CaState,
    pub(super) high_seq: u64,
    pub(super) undo_marker: Option<u64>,
    pub(super) undo_retrans: i64,
    pub(super) retrans_stamp: Option<u32>,
    pub(super) prr_delivered: u32,
    pub(super) prr_out: u32,
    pub(super) retransmits: u32,
    pub(super) total_retrans: u64,
    pub(super) dsack_dups: u64,
    pub(super) tlp_high_seq: Option<u64>,
    pub(super) tlp_retrans: bool,
    pub(super) frto: bool,
    pub(super) rexmit: Rexmit,
    pub(super) cc: Cubic,
    pub(super) rtt: RttEstimator,
    is_cwnd_limited: bool,
    max_packets_out: u32,
    cwnd_usage_seq: u64,

    pub(super) timer: Option<(TimerKind, Micros)>,
    /// TSecr of the ACK being processed (`None`: no echo).
    pub(super) ack_tsecr: Option<u32>,
    ts_recent: u32,
    pending_probe: Option<Probe>,
    sent_new_in_burst: bool,

    pub(super) stats: SenderStats,
    trace: Vec<CwndSample>,
    next_trace: Micros,
    pub(super) events: Vec<TraceEvent>,
}

/// Most trace events kept.
const MAX_EVENTS: usize = 100_000;

impl Sender {
    /// A sender that starts at `start` (the handshake done) and sends
    /// `total_bytes` (`None`: without end).
    pub fn new(config: TcpConfig, start: Timestamp, total_bytes: Option<u64>) -> Self {
        let start = micros(start);
        let mut rtt = RttEstimator::new(config.rto_initial, config.rto_min, config.rto_max);
        if let Some(handshake) = config.handshake_rtt {
            let m = handshake.as_micros() as Micros;
            rtt.update_min(m, false);
            rtt.sample(m, 0, 0);
        }
        // The peer's first advertised window (64 kB, see the receiver).
        let window = u64::from(config.receive_window).min(65_535);
        Sender {
            mss: config.mss.max(1),
            total: total_bytes,
            start,
            now: start,
            snd_una: 0,
            snd_nxt: 0,
            snd_wnd: window,
            max_window: window,
            q: VecDeque::new(),
            sacked_out: 0,
            lost_out: 0,
            retrans_out: 0,
            fack: 0,
            delivered: 0,
            lost_count: 0,
            reordering: SYSCTL_REORDERING,
            reord_seen: 0,
            rack: Rack {
                mstamp: 0,
                end_seq: 0,
                rtt: 0,
                reo_wnd_steps: 1,
                reo_wnd_persist: 0,
                dsack_seen: false,
                last_delivered: 0,
                advanced: false,
            },
            cwnd: config.initial_window.max(1),
            cwnd_cnt: 0,
            ssthresh: INFINITE_SSTHRESH,
            prior_cwnd: 0,
            prior_ssthresh: 0,
            state: CaState::Open,
            high_seq: 0,
            undo_marker: None,
            undo_retrans: -1,
            retrans_stamp: None,
            prr_delivered: 0,
            prr_out: 0,
            retransmits: 0,
            total_retrans: 0,
            dsack_dups: 0,
            tlp_high_seq: None,
            tlp_retrans: false,
            frto: false,
            rexmit: Rexmit::None,
            cc: Cubic::new(config.hystart, start, 0),
            rtt,
            is_cwnd_limited: false,
            max_packets_out: 0,
            cwnd_usage_seq: 0,
            timer: None,
            ack_tsecr: None,
            ts_recent: 0,
            pending_probe: None,
            sent_new_in_burst: false,
            stats: SenderStats::default(),
            trace: Vec::new(),
            next_trace: start,
            events: Vec::new(),
            cfg: config,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// cwnd over time, one sample per [`TcpConfig::trace_interval`] (taken
    /// at the first event after each interval).
    pub fn cwnd_trace(&self) -> &[CwndSample] {
        &self.trace
    }

    /// Slow-start exits, recoveries, timeouts, loss probes and undos, in
    /// order.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// Congestion window, segments.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// Slow-start threshold, segments.
    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    /// Congestion-avoidance state.
    pub fn state(&self) -> CaState {
        self.state
    }

    /// Bytes acknowledged cumulatively.
    pub fn bytes_acked(&self) -> u64 {
        self.snd_una
    }

    /// Smoothed RTT.
    pub fn srtt(&self) -> Duration {
        Duration::from_micros(self.rtt.srtt())
    }

    /// The retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        Duration::from_micros(self.rtt.rto())
    }

    /// Whether reordering was detected (RACK's window is then at least
    /// min_rtt/4).
    pub fn reordering_seen(&self) -> bool {
        self.reord_seen > 0
    }

    /// Whether every byte of a finite transfer is acknowledged.
    pub fn is_done(&self) -> bool {
        self.total.is_some_and(|t| self.snd_una >= t)
    }

    /// Segments believed in the network (`tcp_packets_in_flight`).
    pub fn in_flight(&self) -> u32 {
        (self.q.len() as u32 + self.retrans_out).saturating_sub(self.sacked_out + self.lost_out)
    }

    pub(super) fn packets_out(&self) -> u32 {
        self.q.len() as u32
    }

    pub(super) fn in_cwnd_reduction(&self) -> bool {
        matches!(self.state, CaState::Cwr | CaState::Recovery)
    }

    pub(super) fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    pub(super) fn ts_now(&self) -> u32 {
        ts_clock(self.now)
    }

    pub(super) fn event(&mut self, event: TraceEvent) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        }
    }

    /// Records the end of slow start if `ssthresh` now ends it.
    pub(super) fn note_slow_start_exit(&mut self, was_in_slow_start: bool, reason: ExitReason) {
        // After a timeout cwnd restarts below ssthresh: that ends slow start
        // too (a new one begins).
        if was_in_slow_start && (!self.in_slow_start() || reason == ExitReason::Timeout) {
            let at = at_micros(self.now);
            self.stats
                .slow_start_exit
                .get_or_insert((at, self.cwnd, reason));
            self.event(TraceEvent::SlowStartExit {
                at,
                cwnd: self.cwnd,
                reason,
            });
        }
    }

    pub(super) fn has_unsent(&self) -> bool {
        self.total.is_none_or(|t| self.snd_nxt < t)
    }

    pub(super) fn next_len(&self) -> u32 {
        match self.total {
            Some(t) => t.saturating_sub(self.snd_nxt).min(u64::from(self.mss)) as u32,
            None => self.mss,
        }
    }

    pub(super) fn window_allows(&self, len: u32) -> bool {
        self.snd_nxt + u64::from(len) <= self.snd_una + self.snd_wnd
    }

    fn data_segment(&self, seq: u64, len: u32, ts: u32) -> Segment {
        Segment {
            seq,
            ack: 0,
            window: self.cfg.receive_window,
            ts_val: ts,
            ts_ecr: self.ts_recent,
            sack: Vec::new(),
            payload_len: len,
        }
    }

    // ------------------------------------------------------------------
    // The endpoint interface
    // ------------------------------------------------------------------

    /// An ACK from the receiver.
    pub fn handle_segment(&mut self, now: Timestamp, segment: &Segment) {
        self.now = micros(now).max(self.now);
        if self.now < self.start {
            return;
        }
        self.handle_ack(segment);
        self.sample_trace();
    }

    /// When [`Sender::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.now < self.start {
            return Some(at_micros(self.start));
        }
        self.timer.map(|(_, at)| at_micros(at))
    }

    /// Runs the transmission timer if it is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = micros(now).max(self.now);
        let Some((kind, at)) = self.timer else {
            return;
        };
        if self.now < at {
            return;
        }
        match kind {
            TimerKind::Retrans => {
                self.timer = None;
                self.retransmit_timer();
            }
            TimerKind::ReoTimeout => self.rack_reo_timeout(),
            TimerKind::LossProbe => self.loss_probe_timer(),
        }
        self.sample_trace();
    }

    /// The next segment to send now: a loss probe, then retransmissions of
    /// segments marked lost, then new data, as cwnd and the receive window
    /// allow. Call until it returns `None` after every event.
    pub fn poll_segment(&mut self, now: Timestamp) -> Option<Segment> {
        self.now = micros(now).max(self.now);
        if self.now < self.start {
            return None;
        }
        if let Some(probe) = self.pending_probe.take() {
            if let Some(segment) = self.send_probe(probe) {
                return Some(segment);
            }
        }
        if self.rexmit == Rexmit::New {
            if let Some(segment) = self.try_send_new(false) {
                return Some(segment);
            }
            if self.snd_nxt > self.high_seq {
                self.finish_burst();
                return None;
            }
            self.frto = false;
            self.rexmit = Rexmit::Lost;
        }
        if self.rexmit == Rexmit::Lost {
            if let Some(segment) = self.try_retransmit() {
                return Some(segment);
            }
        }
        if let Some(segment) = self.try_send_new(false) {
            return Some(segment);
        }
        self.finish_burst();
        None
    }

    fn sample_trace(&mut self) {
        let Some(interval) = self.cfg.trace_interval else {
            return;
        };
        if self.now >= self.next_trace {
            self.trace.push(CwndSample {
                at: at_micros(self.now),
                cwnd: self.cwnd,
                ssthresh: self.ssthresh,
                in_flight: self.in_flight(),
                state: self.state,
                srtt: self.srtt(),
            });
            self.next_trace = self.now + (interval.as_micros() as Micros).max(1);
        }
    }

    // ------------------------------------------------------------------
    // Transmission
    // ------------------------------------------------------------------

    /// New data (`tcp_write_xmit`); `probe` ignores cwnd (a loss probe).
    fn try_send_new(&mut self, probe: bool) -> Option<Segment> {
        if !self.has_unsent() {
            return None;
        }
        if !probe && self.in_flight() >= self.cwnd {
            return None;
        }
        let len = self.next_len();
        if len == 0 || !self.window_allows(len) {
            return None;
        }
        let prior_packets = self.packets_out();
        let ts = self.ts_now();
        let seq = self.snd_nxt;
        self.q.push_back(TxSeg {
            seq,
            len,
            xmit: self.now,
            sacked: false,
            retrans: false,
            lost: false,
            ever_retrans: false,
            delivered_at_send: self.delivered,
            ts,
        });
        self.snd_nxt += u64::from(len);
        self.stats.segments_sent += 1;
        self.stats.bytes_sent += u64::from(len);
        if self.in_cwnd_reduction() {
            self.prr_out += 1;
        }
        // tcp_event_new_data_sent.
        if prior_packets == 0 || matches!(self.timer, Some((TimerKind::LossProbe, _))) {
            self.rearm_rto();
        }
        if !probe {
            self.sent_new_in_burst = true;
        }
        Some(self.data_segment(seq, len, ts))
    }

    /// One step of `tcp_xmit_retransmit_queue`: the first segment marked
    /// lost and not yet retransmitted, if cwnd allows.
    fn try_retransmit(&mut self) -> Option<Segment> {
        if self.in_flight() >= self.cwnd || self.retrans_out >= self.lost_out {
            return None;
        }
        let idx = self
            .q
            .iter()
            .position(|s| s.lost && !s.retrans && !s.sacked)?;
        let ts = self.ts_now();
        let delivered = self.delivered;
        let now = self.now;
        let seg = &mut self.q[idx];
        seg.retrans = true;
        seg.ever_retrans = true;
        seg.xmit = now;
        seg.ts = ts;
        seg.delivered_at_send = delivered;
        let (seq, len) = (seg.seq, seg.len);
        self.retrans_out += 1;
        self.total_retrans += 1;
        self.stats.retransmits += 1;
        self.stats.segments_sent += 1;
        self.retrans_stamp.get_or_insert(ts);
        self.undo_retrans = self.undo_retrans.max(0) + 1;
        if self.in_cwnd_reduction() {
            self.prr_out += 1;
        }
        if idx == 0 && !matches!(self.timer, Some((TimerKind::ReoTimeout, _))) {
            self.timer = Some((TimerKind::Retrans, self.now + self.rtt.rto()));
        }
        Some(self.data_segment(seq, len, ts))
    }

    /// Sends the loss probe the timer decided on (`tcp_send_loss_probe`).
    fn send_probe(&mut self, probe: Probe) -> Option<Segment> {
        let segment = match probe {
            Probe::NewData => {
                self.tlp_retrans = false;
                self.try_send_new(true)
            }
            Probe::RetransmitLast => {
                let ts = self.ts_now();
                let now = self.now;
                let last = self.q.back_mut()?;
                last.ever_retrans = true;
                last.xmit = now;
                last.ts = ts;
                let (seq, len) = (last.seq, last.len);
                self.total_retrans += 1;
                self.stats.retransmits += 1;
                self.stats.segments_sent += 1;
                self.tlp_retrans = true;
                Some(self.data_segment(seq, len, ts))
            }
        };
        if segment.is_some() {
            self.tlp_high_seq = Some(self.snd_nxt);
            self.stats.loss_probes += 1;
            self.event(TraceEvent::LossProbe {
                at: at_micros(self.now),
                retransmit: probe == Probe::RetransmitLast,
            });
            self.timer = None;
        }
        self.rearm_rto();
        segment
    }

    /// End of a transmission burst: schedule a loss probe after new data
    /// and track whether cwnd limits the sender (`tcp_cwnd_validate`).
    fn finish_burst(&mut self) {
        self.rexmit = Rexmit::None;
        let limited = self.in_flight() >= self.cwnd;
        if self.sent_new_in_burst {
            self.sent_new_in_burst = false;
            self.schedule_loss_probe(false);
        }
        if self.snd_una >= self.cwnd_usage_seq
            || limited
            || (!self.is_cwnd_limited && self.packets_out() > self.max_packets_out)
        {
            self.is_cwnd_limited = limited;
            self.max_packets_out = self.packets_out();
            self.cwnd_usage_seq = self.snd_nxt;
        }
    }

    fn is_cwnd_limited(&self) -> bool {
        if self.is_cwnd_limited {
            return true;
        }
        self.in_slow_start() && self.cwnd < 2 * self.max_packets_out
    }

    // ------------------------------------------------------------------
    // Timers
    // ------------------------------------------------------------------

    /// Time left until the head's RTO would fire (`tcp_rto_delta_us`).
    pub(super) fn rto_delta(&self) -> i64 {
        match self.q.front() {
            Some(head) => (head.xmit + self.rtt.rto()) as i64 - self.now as i64,
            None => self.rtt.rto() as i64,
        }
    }

    /// `tcp_rearm_rto`.
    pub(super) fn rearm_rto(&mut self) {
        if self.q.is_empty() {
            self.timer = None;
            return;
        }
        let rto = match self.timer {
            Some((TimerKind::ReoTimeout | TimerKind::LossProbe, _)) => {
                self.rto_delta().max(1) as Micros
            }
            _ => self.rtt.rto(),
        };
        self.timer = Some((TimerKind::Retrans, self.now + rto));
    }

    /// `tcp_schedule_loss_probe`: a probe 2 SRTT after the last send (plus
    /// 200 ms with a single segment out), never after the RTO.
    pub(super) fn schedule_loss_probe(&mut self, advancing_rto: bool) -> bool {
        if !self.cfg.tail_loss_probe
            || self.q.is_empty()
            || !matches!(self.state, CaState::Open | CaState::Cwr)
        {
            return false;
        }
        let mut timeout = if self.rtt.has_sample() {
            let extra = if self.q.len() == 1 {
                self.cfg.rto_min.as_micros() as Micros
            } else {
                TIMEOUT_MIN
            };
            2 * self.rtt.srtt() + extra
        } else {
            1_000_000
        };
        let delta = if advancing_rto {
            self.rtt.rto() as i64
        } else {
            self.rto_delta()
        };
        if delta > 0 {
            timeout = timeout.min(delta as Micros);
        }
        self.timer = Some((TimerKind::LossProbe, self.now + timeout));
        true
    }

    /// `tcp_set_xmit_timer`.
    pub(super) fn set_xmit_timer(&mut self) {
        if !self.schedule_loss_probe(true) {
            self.rearm_rto();
        }
    }

    /// The loss-probe timer fired: decide the probe; it goes out with the
    /// next [`Sender::poll_segment`].
    fn loss_probe_timer(&mut self) {
        if self.tlp_high_seq.is_some() {
            // One probe per tail loss episode.
            self.rearm_rto();
            return;
        }
        if self.has_unsent() && self.window_allows(self.next_len()) && self.next_len() > 0 {
            self.pending_probe = Some(Probe::NewData);
        } else if !self.q.is_empty() {
            self.pending_probe = Some(Probe::RetransmitLast);
        } else {
            self.rearm_rto();
        }
    }

    /// `tcp_retransmit_timer`.
    fn retransmit_timer(&mut self) {
        if self.q.is_empty() {
            return;
        }
        self.tlp_high_seq = None;
        self.stats.timeouts += 1;
        self.event(TraceEvent::Timeout {
            at: at_micros(self.now),
            cwnd: self.cwnd,
            backoff: self.rtt.backoff,
        });
        let was_in_slow_start = self.in_slow_start();
        self.enter_loss();
        self.note_slow_start_exit(was_in_slow_start, ExitReason::Timeout);
        self.retransmits += 1;
        // The head goes out with the next poll (cwnd = in flight + 1).
        self.rexmit = Rexmit::Lost;
        self.rtt.back_off();
        self.timer = Some((TimerKind::Retrans, self.now + self.rtt.rto()));
    }

    // ------------------------------------------------------------------
    // ACK processing
    // ------------------------------------------------------------------

    /// `tcp_ack`.
    fn handle_ack(&mut self, seg: &Segment) {
        use flag::*;
        self.stats.acks_received += 1;
        self.rexmit = Rexmit::None;
        self.ack_tsecr = (seg.ts_ecr != 0).then_some(seg.ts_ecr);
        self.ts_recent = seg.ts_val;
        let ack = seg.ack;
        let prior_snd_una = self.snd_una;
        let mut flag = 0;
        if ack < prior_snd_una {
            // An old ACK: only its SACK blocks count.
            if ack + self.max_window >= prior_snd_una && !seg.sack.is_empty() {
                let mut st = SackState::new(self.snd_nxt);
                flag |= self.sacktag(seg, prior_snd_una, &mut st);
                self.fastretrans_alert(prior_snd_una, 0, &mut flag);
            }
            return;
        }
        if ack > self.snd_nxt {
            return;
        }
        if ack > prior_snd_una {
            flag |= SND_UNA_ADVANCED;
            self.retransmits = 0;
        }
        let prior_fack = self.highest_sack_seq();
        let prior_delivered = self.delivered;
        let prior_lost = self.lost_count;
        let nwin = u64::from(seg.window);
        if ack > prior_snd_una || nwin > self.snd_wnd {
            flag |= WIN_UPDATE;
            self.snd_wnd = nwin;
            self.max_window = self.max_window.max(nwin);
        }
        if seg.payload_len > 0 {
            flag |= DATA;
        }
        self.snd_una = ack;
        let mut st = SackState::new(self.snd_nxt);
        if !seg.sack.is_empty() {
            flag |= self.sacktag(seg, prior_snd_una, &mut st);
        }
        self.delivered += st.sack_delivered;
        if self.q.is_empty() {
            // Nothing was outstanding.
            if flag & DSACKING_ACK != 0 {
                self.fastretrans_alert(prior_snd_una, 0, &mut flag);
            }
            if self.tlp_high_seq.is_some() {
                self.process_tlp_ack(ack, flag);
            }
            return;
        }
        flag |= self.clean_rtx_queue(prior_fack, prior_snd_una, &mut st);
        self.rack_update_reo_wnd(st.prior_delivered);
        if self.tlp_high_seq.is_some() {
            self.process_tlp_ack(ack, flag);
        }
        if flag & NOT_DUP == 0 || flag & CA_ALERT != 0 || self.state != CaState::Open {
            let num_dupack = u32::from(flag & (SND_UNA_ADVANCED | NOT_DUP | DSACKING_ACK) == 0);
            self.fastretrans_alert(prior_snd_una, num_dupack, &mut flag);
        }
        if flag & SET_XMIT_TIMER != 0 {
            self.set_xmit_timer();
        }
        let delivered = (self.delivered - prior_delivered) as u32;
        let lost = (self.lost_count - prior_lost) as u32;
        self.cong_control(delivered, lost, flag);
    }

    /// `tcp_process_tlp_ack`.
    fn process_tlp_ack(&mut self, ack: u64, flag: u32) {
        use flag::*;
        let Some(high) = self.tlp_high_seq else {
            return;
        };
        if ack < high {
            return;
        }
        if !self.tlp_retrans || flag & DSACK_TLP != 0 {
            self.tlp_high_seq = None;
        } else if ack > high {
            // The probe repaired a loss: reduce cwnd once.
            let was_in_slow_start = self.in_slow_start();
            self.init_cwnd_reduction();
            self.state = CaState::Cwr;
            self.end_cwnd_reduction();
            self.note_slow_start_exit(was_in_slow_start, ExitReason::LossProbe);
            self.try_keep_open();
        } else if flag & (SND_UNA_ADVANCED | NOT_DUP | DATA_SACKED) == 0 {
            self.tlp_high_seq = None;
        }
    }

    /// HyStart and CUBIC's view of an ACK (`tcp_ca_ops.pkts_acked`).
    pub(super) fn cc_pkts_acked(&mut self, rtt: Option<Micros>) {
        let srtt = self.rtt.srtt().max(1) as f64 / 1e6;
        let ratio = if self.cwnd < self.ssthresh / 2 {
            2.0
        } else {
            1.2
        };
        let rate =
            ratio * f64::from(self.mss) * f64::from(self.cwnd.max(self.packets_out())) / srtt;
        let was_in_slow_start = self.in_slow_start();
        let exit = self.cc.pkts_acked(
            self.now,
            rtt,
            self.cwnd,
            &mut self.ssthresh,
            self.snd_una,
            self.snd_nxt,
            rate,
        );
        if let Some(exit) = exit {
            let reason = match exit {
                HystartExit::AckTrain => ExitReason::HystartAckTrain,
                HystartExit::Delay => ExitReason::HystartDelay,
            };
            self.note_slow_start_exit(was_in_slow_start, reason);
        }
    }

    /// `tcp_cong_control` without a `cong_control` hook: PRR in recovery,
    /// else CUBIC's increase when the ACK allows it.
    fn cong_control(&mut self, acked_sacked: u32, newly_lost: u32, flag: u32) {
        if self.in_cwnd_reduction() {
            self.cwnd_reduction(acked_sacked, newly_lost, flag);
        } else {
            let may_raise = if self.reordering > SYSCTL_REORDERING {
                flag & flag::FORWARD_PROGRESS != 0
            } else {
                flag & flag::DATA_ACKED != 0
            };
            if may_raise {
                let was_in_slow_start = self.in_slow_start();
                let limited = self.is_cwnd_limited();
                self.cc.cong_avoid(
                    self.now,
                    &mut self.cwnd,
                    &mut self.cwnd_cnt,
                    self.ssthresh,
                    acked_sacked,
                    limited,
                );
                self.note_slow_start_exit(was_in_slow_start, ExitReason::SsthreshReached);
            }
        }
        self.stats.max_cwnd = self.stats.max_cwnd.max(self.cwnd);
    }

    /// `tcp_cwnd_reduction` (RFC 6937 PRR, Linux's variant).
    pub(super) fn cwnd_reduction(&mut self, newly_acked_sacked: u32, newly_lost: u32, flag: u32) {
        if newly_acked_sacked == 0 || self.prior_cwnd == 0 {
            return;
        }
        let in_flight = i64::from(self.in_flight());
        let delta = i64::from(self.ssthresh) - in_flight;
        self.prr_delivered += newly_acked_sacked;
        let mut sndcnt: i64 = if delta < 0 {
            let dividend = u64::from(self.ssthresh) * u64::from(self.prr_delivered)
                + u64::from(self.prior_cwnd)
                - 1;
            (dividend / u64::from(self.prior_cwnd)) as i64 - i64::from(self.prr_out)
        } else {
            let mut n = (i64::from(self.prr_delivered) - i64::from(self.prr_out))
                .max(i64::from(newly_acked_sacked));
            if flag & flag::SND_UNA_ADVANCED != 0 && newly_lost == 0 {
                n += 1;
            }
            n.min(delta)
        };
        // Force a fast retransmit upon entering fast recovery.
        sndcnt = sndcnt.max(i64::from(self.prr_out == 0));
        self.cwnd = (in_flight + sndcnt).max(1) as u32;
    }

    /// `tcp_init_cwnd_reduction`.
    pub(super) fn init_cwnd_reduction(&mut self) {
        self.high_seq = self.snd_nxt;
        self.tlp_high_seq = None;
        self.cwnd_cnt = 0;
        self.prior_cwnd = self.cwnd;
        self.prr_delivered = 0;
        self.prr_out = 0;
        self.ssthresh = self.cc.ssthresh(self.cwnd);
    }

    /// `tcp_end_cwnd_reduction`.
    pub(super) fn end_cwnd_reduction(&mut self) {
        if self.ssthresh < INFINITE_SSTHRESH
            && (self.state == CaState::Cwr || self.undo_marker.is_some())
        {
            self.cwnd = self.ssthresh;
        }
    }
}

/// What SACK processing and the cleaning of the retransmission queue
/// found in one ACK (`struct tcp_sacktag_state` and the rate sample).
#[derive(Clone, Copy, Debug)]
pub(super) struct SackState {
    pub first_sackt: Option<Micros>,
    pub last_sackt: Option<Micros>,
    /// Lowest newly (S)ACKed never-retransmitted sequence below the highest
    /// SACK: a sign of reordering.
    pub reord: u64,
    pub sack_delivered: u64,
    pub flag: u32,
    /// `delivered` when the most recently sent newly delivered segment was
    /// sent (0: none).
    pub prior_delivered: u64,
}

impl SackState {
    pub fn new(snd_nxt: u64) -> Self {
        SackState {
            first_sackt: None,
            last_sackt: None,
            reord: snd_nxt,
            sack_delivered: 0,
            flag: 0,
            prior_delivered: 0,
        }
    }
}
