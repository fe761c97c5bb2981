//! `tgp-bench sim` scenarios with the simulator's Linux-like TCP model
//! (`tgp_sim::tcp`) as the traffic source, beside the saturating sender:
//! - `direct-cubic`: cubic straight over the lossy link, to calibrate the
//!   model against real kernels;
//! - `tcp-cubic`: cubic through tgp (segment mode), with the added delay
//!   of the data segments;
//! - `share-cubic`: one saturating tgp transfer and one direct cubic flow
//!   through one bottleneck.
//!
//! Paths as the other scenarios: 20 Mbit/s, 100 kB bottleneck queue,
//! random loss after serialisation both ways; round trip `--rtt`. Flows
//! last `--tcp-seconds`; goodput is what the receiving TCP delivered in
//! order over that time, and capacity_fraction = goodput / ((1 − p) × link
//! rate). MSS as on the real paths: 1448 bytes straight over Ethernet
//! (MTU 1500, timestamps on), 1288 through tgp (TUN MTU 1340).

use crate::sim::{addr, keys, link, SimArgs, LINK_BITS_PER_SECOND};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tgp_proto::delivery::{DataPlane, DataPlaneConfig};
use tgp_proto::Timestamp;
use tgp_sim::data_plane::{BulkSource, DataPlaneNode};
use tgp_sim::tcp::segment::HEADER_LEN;
use tgp_sim::tcp::{ExitReason, Receiver, Sender, TcpConfig, TcpEndpoint, TraceEvent};
use tgp_sim::tcp_flow::{percentile, DirectTcpNode, TunnelTcpNode};
use tgp_sim::Simulation;

/// Ethernet MTU of the plain path.
const DIRECT_MTU: usize = 1500;
/// The tunnel's MTU (`tgp up`'s default).
const TUN_MTU: usize = 1340;
/// The daemon's UDP payload limit (`tunnel/src/daemon.rs`).
const DAEMON_DATAGRAM_SIZE: usize = 1452;
/// The tgp flow the inner TCP's segments use.
const FLOW: u64 = 1;

/// Flow length: `--tcp-seconds`, or 10 s (15 s from a 600 ms round trip).
fn flow_seconds(args: &SimArgs) -> u64 {
    args.tcp_seconds
        .unwrap_or(if args.rtt >= 600 { 15 } else { 10 })
}

fn one_way(args: &SimArgs) -> Duration {
    Duration::from_millis(args.rtt) / 2
}

fn tcp_config(args: &SimArgs, mss: usize) -> TcpConfig {
    TcpConfig::default()
        .with_mss(mss as u32)
        .with_handshake_rtt(Duration::from_millis(args.rtt))
        .with_hystart(!args.no_hystart)
}

/// The data plane the inner TCP goes through: the daemon's configuration
/// with `rate_ceiling` = `--tcp-rate-ceiling-mbit` (0: none, the library
/// default).
fn plane_config(args: &SimArgs) -> DataPlaneConfig {
    if args.tcp_rate_ceiling_mbit == 0 {
        return DataPlaneConfig {
            max_datagram_size: DAEMON_DATAGRAM_SIZE,
            ..DataPlaneConfig::default()
        };
    }
    let ceiling = args.tcp_rate_ceiling_mbit * 1_000_000;
    DataPlaneConfig {
        rate_ceiling_bits_per_second: Some(ceiling),
        initial_rate_bits_per_second: ceiling,
        max_datagram_size: DAEMON_DATAGRAM_SIZE,
        ..DataPlaneConfig::default()
    }
}

/// Runs the TCP scenarios that `--skip` leaves.
pub fn run(args: &SimArgs) -> anyhow::Result<()> {
    let skip = |name: &str| args.skip.iter().any(|s| s == name);
    let seconds = flow_seconds(args);
    let ceiling = match args.tcp_rate_ceiling_mbit {
        0 => "none".to_owned(),
        c => format!("{c} Mbit/s"),
    };
    if !(skip("direct-cubic") && skip("tcp-cubic") && skip("share-cubic")) {
        println!(
            "# tcp model: cubic, {} ms RTT, {} s flows, HyStart {}, tgp rate_ceiling {}, median of {} seeds per cell",
            args.rtt,
            seconds,
            if args.no_hystart { "off" } else { "on" },
            ceiling,
            args.tcp_runs.max(1)
        );
    }
    let runs = args.tcp_runs.max(1);
    let seeds = || (0..runs).map(|i| args.seed.wrapping_add(i));
    if !skip("direct-cubic") {
        for &percent in &args.loss {
            let loss = f64::from(percent) / 100.0;
            let results: Vec<DirectResult> =
                seeds().map(|seed| direct_cubic(args, seed, loss)).collect();
            let spread = spread(results.iter().map(|r| r.capacity_fraction));
            let result = median_by(results, |r| r.capacity_fraction);
            println!(
                "sim direct-cubic loss={loss:.2} capacity_fraction={:.3}",
                result.capacity_fraction
            );
            eprintln!(
                "  ({}; capacity_fraction over {runs} seeds {spread})",
                result.summary
            );
            if args.verbose {
                eprintln!("{}", result.trace);
            }
        }
    }
    if !skip("tcp-cubic") {
        for &percent in &args.loss {
            let loss = f64::from(percent) / 100.0;
            let results = seeds()
                .map(|seed| tcp_cubic(args, seed, loss))
                .collect::<anyhow::Result<Vec<TunnelResult>>>()?;
            let spread = spread(results.iter().map(|r| r.capacity_fraction));
            let result = median_by(results, |r| r.capacity_fraction);
            println!(
                "sim tcp-cubic loss={loss:.2} capacity_fraction={:.3} added_delay_p50_ms={:.1} added_delay_p99_ms={:.1} wire_per_goodput={:.3} retransmits={}",
                result.capacity_fraction,
                result.added_p50.as_secs_f64() * 1e3,
                result.added_p99.as_secs_f64() * 1e3,
                result.wire_per_goodput,
                result.retransmits
            );
            eprintln!(
                "  ({}; capacity_fraction over {runs} seeds {spread})",
                result.summary
            );
            if args.verbose {
                eprintln!("{}", result.trace);
            }
        }
    }
    if !skip("share-cubic") {
        let (tgp, cubic) = share_cubic(args, true);
        println!("sim share-cubic tgp_fraction={tgp:.3} cubic_fraction={cubic:.3}");
        let (_, alone) = share_cubic(args, false);
        println!("sim share-cubic cubic_alone_capacity_fraction={alone:.3}");
    }
    Ok(())
}

/// The run with the median value of `key` (the lower middle one for an
/// even count), so that a printed line's figures come from one run.
fn median_by<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = (runs.len() - 1) / 2;
    runs.swap_remove(middle)
}

/// "min–max" of some values.
fn spread(values: impl Iterator<Item = f64>) -> String {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    format!("{lo:.3}–{hi:.3}")
}

struct DirectResult {
    capacity_fraction: f64,
    summary: String,
    trace: String,
}

fn capacity_fraction(bytes: u64, seconds: f64, loss: f64) -> f64 {
    let limit = (1.0 - loss) * LINK_BITS_PER_SECOND as f64;
    bytes as f64 * 8.0 / seconds / limit.max(1.0)
}

fn mbit(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds / 1e6
}

fn direct_cubic(args: &SimArgs, seed: u64, loss: f64) -> DirectResult {
    let wall = Instant::now();
    let seconds = flow_seconds(args);
    let mut sim = Simulation::new(seed);
    let one_way = one_way(args);
    let config = tcp_config(args, DIRECT_MTU - HEADER_LEN);
    let sender = DirectTcpNode::new(
        TcpEndpoint::Sender(Sender::new(config.clone(), Timestamp::ZERO, None)),
        addr(2),
        one_way,
    );
    let receiver = DirectTcpNode::new(
        TcpEndpoint::Receiver(Receiver::new(config)),
        addr(1),
        one_way,
    );
    let a = sim.add_node(addr(1), sender);
    let b = sim.add_node(addr(2), receiver);
    sim.connect(a, b, link(one_way, loss), link(one_way, loss));
    sim.run_until(Timestamp::from_duration(Duration::from_secs(seconds)));
    let tcp_sender = sim.node::<DirectTcpNode>(a).tcp.sender().expect("sender");
    let delivered = sim
        .node::<DirectTcpNode>(b)
        .tcp
        .receiver()
        .expect("receiver")
        .bytes_delivered();
    let secs = seconds as f64;
    let summary = format!(
        "direct-cubic loss={loss:.2} seed {seed}: {:.2} Mbit/s; {}; simulated {secs:.0} s in {:.1} s",
        mbit(delivered, secs),
        sender_summary(tcp_sender),
        wall.elapsed().as_secs_f64()
    );
    DirectResult {
        capacity_fraction: capacity_fraction(delivered, secs, loss),
        summary,
        trace: sender_trace(tcp_sender, (DIRECT_MTU - HEADER_LEN) as u32),
    }
}

struct TunnelResult {
    capacity_fraction: f64,
    added_p50: Duration,
    added_p99: Duration,
    wire_per_goodput: f64,
    retransmits: u64,
    summary: String,
    trace: String,
}

fn tcp_cubic(args: &SimArgs, seed: u64, loss: f64) -> anyhow::Result<TunnelResult> {
    let wall = Instant::now();
    let seconds = flow_seconds(args);
    let mut sim = Simulation::new(seed);
    let one_way = one_way(args);
    let (ka, kb) = keys();
    let plane_config = plane_config(args);
    let segment_limit = plane_config.max_segment_size();
    anyhow::ensure!(
        segment_limit > HEADER_LEN + 100,
        "the data plane's largest segment ({segment_limit} bytes) leaves no room for TCP segments; raise max_datagram_size"
    );
    let mss = TUN_MTU.min(segment_limit) - HEADER_LEN;
    let config = tcp_config(args, mss);
    let sender = TunnelTcpNode::new(
        TcpEndpoint::Sender(Sender::new(config.clone(), Timestamp::ZERO, None)),
        DataPlane::new(Timestamp::ZERO, ka, plane_config.clone()),
        addr(2),
        FLOW,
        one_way,
    );
    let receiver = TunnelTcpNode::new(
        TcpEndpoint::Receiver(Receiver::new(config)),
        DataPlane::new(Timestamp::ZERO, kb, plane_config),
        addr(1),
        FLOW,
        one_way,
    );
    let a = sim.add_node(addr(1), sender);
    let b = sim.add_node(addr(2), receiver);
    crate::sim::daemon_timers(&mut sim, args, &[a, b]);
    sim.connect(a, b, link(one_way, loss), link(one_way, loss));
    let mut plane_trace = String::new();
    let end = Duration::from_secs(seconds);
    if args.verbose {
        let mut t = Duration::ZERO;
        while t < end {
            t = (t + Duration::from_millis(500)).min(end);
            sim.run_until(Timestamp::from_duration(t));
            let node = sim.node::<TunnelTcpNode>(a);
            let s = node.plane.stats();
            let _ = writeln!(
                plane_trace,
                "    t={:.1} tgp: pacing={:.1}Mbit/s btl={:.1}Mbit/s srtt={:.0}ms loss_out={:.2} redundancy={:.2} queued={}B proactive={} reactive={} refused qf={} qd={}",
                t.as_secs_f64(),
                s.pacing_rate_bits_per_second as f64 / 1e6,
                s.bottleneck_bits_per_second as f64 / 1e6,
                s.smoothed_rtt.as_secs_f64() * 1e3,
                s.loss_outbound,
                s.redundancy,
                node.plane.queued_bytes(),
                s.proactive_repairs_sent,
                s.reactive_repairs_sent,
                node.refusals.queue_full,
                node.refusals.queue_delay,
            );
        }
    } else {
        sim.run_until(Timestamp::from_duration(end));
    }
    let sender_node = sim.node::<TunnelTcpNode>(a);
    let receiver_node = sim.node::<TunnelTcpNode>(b);
    let tcp_sender = sender_node.tcp.sender().expect("sender");
    let delivered = receiver_node
        .tcp
        .receiver()
        .expect("receiver")
        .bytes_delivered();
    anyhow::ensure!(
        receiver_node.report.payload_errors == 0 && receiver_node.report.decode_errors == 0,
        "the data plane delivered {} corrupt and {} unparsable segments",
        receiver_node.report.payload_errors,
        receiver_node.report.decode_errors
    );
    let delays = &receiver_node.report.added_delay_micros;
    let secs = seconds as f64;
    let refusals = &sender_node.refusals;
    let ack_refusals = &receiver_node.refusals;
    let plane = sender_node.plane.stats();
    let summary = format!(
        "tcp-cubic loss={loss:.2} seed {seed}: {:.2} Mbit/s; {}; refused qf={} qd={} (acks qf={} qd={}); tgp sent {} proactive {} reactive repairs; ack added delay p50 {:.1} ms; simulated {secs:.0} s in {:.1} s",
        mbit(delivered, secs),
        sender_summary(tcp_sender),
        refusals.queue_full,
        refusals.queue_delay,
        ack_refusals.queue_full,
        ack_refusals.queue_delay,
        plane.proactive_repairs_sent,
        plane.reactive_repairs_sent,
        percentile(&sender_node.report.ack_added_delay_micros, 0.5) as f64 / 1e3,
        wall.elapsed().as_secs_f64()
    );
    let mut trace = sender_trace(tcp_sender, mss as u32);
    trace.push_str(&plane_trace);
    Ok(TunnelResult {
        capacity_fraction: capacity_fraction(delivered, secs, loss),
        added_p50: Duration::from_micros(percentile(delays, 0.5)),
        added_p99: Duration::from_micros(percentile(delays, 0.99)),
        wire_per_goodput: plane.bytes_sent as f64 / delivered.max(1) as f64,
        retransmits: tcp_sender.stats().retransmits,
        summary,
        trace,
    })
}

fn exit_reason(reason: ExitReason) -> &'static str {
    match reason {
        ExitReason::HystartAckTrain => "HyStart ACK train",
        ExitReason::HystartDelay => "HyStart delay",
        ExitReason::Loss => "loss",
        ExitReason::Timeout => "RTO",
        ExitReason::LossProbe => "loss probe",
        ExitReason::SsthreshReached => "ssthresh reached",
    }
}

/// One line about a sender: slow-start exit, cwnd, recoveries.
fn sender_summary(sender: &Sender) -> String {
    let s = sender.stats();
    let exit = match s.slow_start_exit {
        Some((at, cwnd, reason)) => format!(
            "slow start ended at {:.2} s, cwnd {cwnd} ({})",
            at.since_origin().as_secs_f64(),
            exit_reason(reason)
        ),
        None => "still in slow start".to_owned(),
    };
    format!(
        "{exit}; cwnd max {} end {}; {} retransmits, {} recoveries, {} RTOs, {} loss probes, {} undos",
        s.max_cwnd,
        sender.cwnd(),
        s.retransmits,
        s.fast_recoveries,
        s.timeouts,
        s.loss_probes,
        s.undos
    )
}

/// The cwnd trace (every 500 ms) and the events, for `--verbose`.
fn sender_trace(sender: &Sender, mss: u32) -> String {
    let mut out = String::from("    cwnd (segments/kB) every 0.5 s:");
    let mut next = Duration::ZERO;
    for sample in sender.cwnd_trace() {
        let at = sample.at.since_origin();
        if at >= next {
            let _ = write!(
                out,
                " {:.1}s:{}/{}",
                at.as_secs_f64(),
                sample.cwnd,
                u64::from(sample.cwnd) * u64::from(mss) / 1000
            );
            next = at + Duration::from_millis(500);
        }
    }
    out.push('\n');
    let events = sender.events();
    let shown = events.len().min(40);
    for event in &events[..shown] {
        let line = match *event {
            TraceEvent::SlowStartExit { at, cwnd, reason } => format!(
                "t={:.3} slow start ends at cwnd {cwnd} ({})",
                at.since_origin().as_secs_f64(),
                exit_reason(reason)
            ),
            TraceEvent::Recovery { at, cwnd, ssthresh } => format!(
                "t={:.3} fast recovery: cwnd {cwnd} → ssthresh {ssthresh}",
                at.since_origin().as_secs_f64()
            ),
            TraceEvent::Timeout { at, cwnd, backoff } => format!(
                "t={:.3} RTO (cwnd was {cwnd}, backoff {backoff})",
                at.since_origin().as_secs_f64()
            ),
            TraceEvent::LossProbe { at, retransmit } => format!(
                "t={:.3} loss probe ({})",
                at.since_origin().as_secs_f64(),
                if retransmit { "retransmit" } else { "new data" }
            ),
            TraceEvent::Undo { at, cwnd } => {
                format!("t={:.3} undo: cwnd {cwnd}", at.since_origin().as_secs_f64())
            }
        };
        let _ = writeln!(out, "    {line}");
    }
    if events.len() > shown {
        let _ = writeln!(out, "    ... {} more events", events.len() - shown);
    }
    out
}

/// One saturating tgp transfer and one direct cubic flow through one
/// bottleneck (no random loss), as `share` does with NewReno. Returns
/// their shares of the goodput after a warm-up; without tgp, cubic's
/// goodput as a fraction of the link rate.
fn share_cubic(args: &SimArgs, with_tgp: bool) -> (f64, f64) {
    let mut sim = Simulation::new(args.seed);
    let (ka, kb) = keys();
    let config = DataPlaneConfig::default();
    let plane = DataPlane::new(Timestamp::ZERO, ka, config.clone());
    let segment = plane.max_segment_size();
    let tgp_sender = DataPlaneNode::new(plane, addr(2)).with_bulk(BulkSource::new(
        1,
        if with_tgp { u64::MAX / 2 } else { 0 },
        segment,
    ));
    let tgp_receiver = DataPlaneNode::new(DataPlane::new(Timestamp::ZERO, kb, config), addr(1));
    let one_way = one_way(args);
    let tcp = tcp_config(args, DIRECT_MTU - HEADER_LEN);
    let cubic_sender = DirectTcpNode::new(
        TcpEndpoint::Sender(Sender::new(tcp.clone(), Timestamp::ZERO, None)),
        addr(4),
        one_way,
    );
    let cubic_receiver =
        DirectTcpNode::new(TcpEndpoint::Receiver(Receiver::new(tcp)), addr(3), one_way);
    let a = sim.add_node(addr(1), tgp_sender);
    let b = sim.add_node(addr(2), tgp_receiver);
    crate::sim::daemon_timers(&mut sim, args, &[a, b]);
    let c = sim.add_node(addr(3), cubic_sender);
    let d = sim.add_node(addr(4), cubic_receiver);
    let bottleneck = sim.add_link(link(one_way, 0.0));
    let back = sim.add_link(link(one_way, 0.0));
    sim.route(a, b, bottleneck);
    sim.route(c, d, bottleneck);
    sim.route(b, a, back);
    sim.route(d, c, back);
    let cubic_bytes = |sim: &Simulation| {
        sim.node::<DirectTcpNode>(d)
            .tcp
            .receiver()
            .map_or(0, Receiver::bytes_delivered)
    };
    let warm_up = Duration::from_secs(args.share_seconds / 3);
    sim.run_until(Timestamp::from_duration(warm_up));
    let tgp_start = sim.node::<DataPlaneNode>(b).report.reliable_bytes;
    let cubic_start = cubic_bytes(&sim);
    sim.run_until(Timestamp::from_duration(Duration::from_secs(
        args.share_seconds,
    )));
    let tgp = (sim.node::<DataPlaneNode>(b).report.reliable_bytes - tgp_start) as f64;
    let cubic = (cubic_bytes(&sim) - cubic_start) as f64;
    if !with_tgp {
        let measured = (args.share_seconds as f64 - warm_up.as_secs_f64()).max(1.0);
        return (0.0, cubic * 8.0 / measured / LINK_BITS_PER_SECOND as f64);
    }
    let total = (tgp + cubic).max(1.0);
    (tgp / total, cubic / total)
}
