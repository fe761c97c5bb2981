//! A sans-IO, Linux-like TCP *model* for the simulator: what an inner TCP
//! (a kernel's cubic) does with the delay, loss and reordering a tunnel
//! shows it. Not a TCP/IP stack: no handshake, no FIN, no checksums; a
//! segment is a small header (sequence and ACK numbers, window,
//! timestamps, SACK blocks) and a payload whose size the model knows and
//! whose bytes are synthetic. Time comes in as an argument.
//!
//! What it models, after Linux (`net/ipv4/tcp_input.c`, `tcp_output.c`,
//! `tcp_recovery.c`, `tcp_timer.c`, `tcp_cubic.c`):
//! - [`Sender`]: initial window 10, an MSS, CUBIC with HyStart
//!   ([`cubic`]), the SACK scoreboard with RACK loss detection (reordering
//!   window 0 until reordering is seen, then min_rtt/4 steps grown by
//!   DSACKs), proportional rate reduction in recovery, tail loss probes,
//!   RTO (RFC 6298 estimator with Linux's 200 ms floor, exponential
//!   backoff) with F-RTO, undo of spurious reductions by DSACK and
//!   timestamps. No pacing (Linux cubic without `fq`): bursts as cwnd
//!   allows. The handshake is not simulated; its RTT sample can be given
//!   ([`TcpConfig::handshake_rtt`]).
//! - [`Receiver`]: delayed ACKs (every second full segment or after the
//!   delayed-ACK timeout, 16 quick ACKs at the start), immediate ACKs for
//!   out-of-order data and when a hole fills, SACK compression after
//!   three duplicate ACKs, up to 3 SACK blocks with DSACK first, a receive
//!   window that grows from 64 kB to a fixed clamp (every segment that grows
//!   it is ACKed at once, as in Linux).
//!
//! Files by concern: [`segment`] (format), `rtt` (RTT and RTO), [`cubic`]
//! (congestion control), [`sender`] (transmission, timers, ACK
//! processing), `recovery` (scoreboard, RACK, recovery state machine,
//! undo), [`receiver`].

pub mod cubic;
pub mod receiver;
mod recovery;
mod rtt;
pub mod segment;
pub mod sender;
#[cfg(test)]
mod tests;

pub use receiver::{Receiver, ReceiverStats};
pub use segment::{Decoded, SackBlock, Segment, SegmentError};
pub use sender::{CaState, CwndSample, ExitReason, Sender, SenderStats, TraceEvent};

use std::time::Duration;
use tgp_proto::Timestamp;

/// Tunables of both ends. [`Default`] is Linux's defaults with a 1348-byte
/// MSS (1400-byte packets with timestamps).
#[derive(Clone, Debug, PartialEq)]
pub struct TcpConfig {
    /// Payload bytes of a full segment.
    pub mss: u32,
    /// Initial congestion window, segments.
    pub initial_window: u32,
    /// Floor of the retransmission timeout.
    pub rto_min: Duration,
    /// Ceiling of the retransmission timeout.
    pub rto_max: Duration,
    /// RTO before any RTT sample.
    pub rto_initial: Duration,
    /// HyStart (`/sys/module/tcp_cubic/parameters/hystart`).
    pub hystart: bool,
    /// Tail loss probes (`tcp_early_retrans` = 3).
    pub tail_loss_probe: bool,
    /// F-RTO (`tcp_frto`).
    pub frto: bool,
    /// Largest receive window the receiver advertises, bytes (it starts
    /// at 64 kB and grows to this).
    pub receive_window: u32,
    /// Delayed-ACK timeout (`TCP_ATO_MIN`).
    pub delayed_ack: Duration,
    /// Quick ACKs at the start and after a gap (`TCP_MAX_QUICKACKS`).
    pub quick_acks: u32,
    /// Longest an out-of-order ACK waits to be compressed with the next
    /// (`tcp_comp_sack_delay_ns`; also at most 5 % of the RTT).
    pub sack_compress_delay: Duration,
    /// Most ACKs compressed into one (`tcp_comp_sack_nr`).
    pub sack_compress_max: u32,
    /// The RTT the SYN exchange measured, taken as both ends' first sample
    /// (`None`: start without one, RTO = [`TcpConfig::rto_initial`]).
    pub handshake_rtt: Option<Duration>,
    /// Interval of the sender's cwnd trace ([`Sender::cwnd_trace`]);
    /// `None` records none.
    pub trace_interval: Option<Duration>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mss: 1348,
            initial_window: 10,
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(120),
            rto_initial: Duration::from_secs(1),
            hystart: true,
            tail_loss_probe: true,
            frto: true,
            receive_window: 6 * 1024 * 1024,
            delayed_ack: Duration::from_millis(40),
            quick_acks: 16,
            sack_compress_delay: Duration::from_millis(1),
            sack_compress_max: 44,
            handshake_rtt: None,
            trace_interval: Some(Duration::from_millis(100)),
        }
    }
}

impl TcpConfig {
    /// This configuration with payload `mss` bytes per full segment.
    pub fn with_mss(mut self, mss: u32) -> Self {
        self.mss = mss;
        self
    }

    /// This configuration with the handshake's RTT sample.
    pub fn with_handshake_rtt(mut self, rtt: Duration) -> Self {
        self.handshake_rtt = Some(rtt);
        self
    }

    /// This configuration with HyStart on or off.
    pub fn with_hystart(mut self, hystart: bool) -> Self {
        self.hystart = hystart;
        self
    }
}

/// One end of a one-way transfer: the side that sends data or the side
/// that receives it and acknowledges.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum TcpEndpoint {
    /// Sends data, reads ACKs.
    Sender(Sender),
    /// Reads data, sends ACKs.
    Receiver(Receiver),
}

impl TcpEndpoint {
    /// A segment from the peer arrived.
    pub fn handle_segment(&mut self, now: Timestamp, segment: &Segment) {
        match self {
            TcpEndpoint::Sender(s) => s.handle_segment(now, segment),
            TcpEndpoint::Receiver(r) => r.handle_segment(now, segment),
        }
    }

    /// The next segment to send now, if any.
    pub fn poll_segment(&mut self, now: Timestamp) -> Option<Segment> {
        match self {
            TcpEndpoint::Sender(s) => s.poll_segment(now),
            TcpEndpoint::Receiver(r) => r.poll_segment(now),
        }
    }

    /// When [`TcpEndpoint::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match self {
            TcpEndpoint::Sender(s) => s.poll_timeout(),
            TcpEndpoint::Receiver(r) => r.poll_timeout(),
        }
    }

    /// Runs whatever timer is due at `now` (nothing if none is).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        match self {
            TcpEndpoint::Sender(s) => s.handle_timeout(now),
            TcpEndpoint::Receiver(r) => r.handle_timeout(now),
        }
    }

    /// The sender, if this is one.
    pub fn sender(&self) -> Option<&Sender> {
        match self {
            TcpEndpoint::Sender(s) => Some(s),
            TcpEndpoint::Receiver(_) => None,
        }
    }

    /// The receiver, if this is one.
    pub fn receiver(&self) -> Option<&Receiver> {
        match self {
            TcpEndpoint::Receiver(r) => Some(r),
            TcpEndpoint::Sender(_) => None,
        }
    }
}

/// Microseconds of a timestamp.
fn micros(t: Timestamp) -> u64 {
    t.as_nanos() / 1000
}

/// The timestamp at `us` microseconds.
fn at_micros(us: u64) -> Timestamp {
    Timestamp::from_nanos(us.saturating_mul(1000))
}

/// The TCP timestamp clock (milliseconds, offset by one so that 0 never
/// appears: 0 means "no echo").
fn ts_clock(us: u64) -> u32 {
    (us / 1000 + 1) as u32
}
