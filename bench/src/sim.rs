//! `tgp-bench sim`: the data plane in the deterministic simulator.
//!
//! Scenarios (all links: 20 Mbit/s, bounded bottleneck queue, random loss
//! after serialisation, same loss both ways):
//! - a saturating `Reliable` transfer (default 20 MB) per loss rate over a
//!   100 ms round trip;
//! - a game stream (60 datagrams/s of 100 bytes, `Deadline(50 ms)`) over a
//!   20 ms one-way delay per loss rate;
//! - one tgp transfer sharing the bottleneck with one NewReno-like flow;
//! - the simulator's Linux-like cubic model straight over the link, through
//!   tgp, and sharing the bottleneck with tgp ([`crate::sim_tcp`]).

use crate::newreno::{RenoReceiver, RenoSender, PAYLOAD_BYTES};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tgp_proto::delivery::{DataPlane, DataPlaneConfig};
use tgp_proto::{SessionKeys, Timestamp};
use tgp_sim::data_plane::{BulkSource, DataPlaneNode, PeriodicSource};
use tgp_sim::{LinkConfig, NodeId, Simulation, WakeLateness};

/// Options of the `sim` subcommand.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Megabytes (10^6 bytes) per reliable transfer.
    #[arg(long, default_value_t = 20)]
    pub megabytes: u64,
    /// Loss rates in percent.
    #[arg(long, value_delimiter = ',', default_values_t = [0u32, 1, 5, 10, 20, 30, 50, 70, 90])]
    pub loss: Vec<u32>,
    /// Game stream length in seconds.
    #[arg(long, default_value_t = 100)]
    pub game_seconds: u64,
    /// Seconds of the shared-bottleneck run.
    #[arg(long, default_value_t = 60)]
    pub share_seconds: u64,
    /// Simulator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the data planes' statistics after each run.
    #[arg(long)]
    pub verbose: bool,
    /// Skip scenarios: any of reliable, deadline, share, direct-cubic,
    /// tcp-cubic, share-cubic.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Seconds of each TCP-model flow (default 10; 15 from --rtt 600).
    #[arg(long)]
    pub tcp_seconds: Option<u64>,
    /// Round-trip time of the TCP-model scenarios, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub rtt: u64,
    /// rate_ceiling of the data plane the TCP model goes through, Mbit/s
    /// (as `tgp up` with `rate_ceiling`); 0: none (the library default).
    #[arg(long, default_value_t = 20)]
    pub tcp_rate_ceiling_mbit: u64,
    /// Runs per TCP-model cell, with seeds --seed, --seed + 1, ...; each
    /// line shows the run with the median capacity fraction.
    #[arg(long, default_value_t = 5)]
    pub tcp_runs: u64,
    /// Timers of the tunnel's nodes fire exactly. By default they fire as a
    /// daemon's do on a busy host (`WakeLateness::busy_host`: 1 ms ticks,
    /// one wake-up in five up to 5 ms later still).
    #[arg(long)]
    pub exact_timers: bool,
    /// Turn HyStart off in the TCP model (like
    /// /sys/module/tcp_cubic/parameters/hystart = 0).
    #[arg(long)]
    pub no_hystart: bool,
}

pub(crate) const LINK_BITS_PER_SECOND: u64 = 20_000_000;
/// Bottleneck queue: 40 ms at the link rate.
const QUEUE_BYTES: usize = 100_000;

/// Gives the tunnel's nodes `ids` a daemon's timers (see
/// [`SimArgs::exact_timers`]).
pub(crate) fn daemon_timers(sim: &mut Simulation, args: &SimArgs, ids: &[NodeId]) {
    if !args.exact_timers {
        for &id in ids {
            sim.set_wake_lateness(id, WakeLateness::busy_host());
        }
    }
}

pub(crate) fn keys() -> (SessionKeys, SessionKeys) {
    SessionKeys::pair([0x11; 32], [0x22; 32], 0x7470_0001)
}

pub(crate) fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 4000))
}

pub(crate) fn link(one_way: Duration, loss: f64) -> LinkConfig {
    let link = LinkConfig::ideal(one_way).with_rate(LINK_BITS_PER_SECOND, QUEUE_BYTES);
    if loss > 0.0 {
        link.with_random_loss(loss)
    } else {
        link
    }
}

/// Runs every scenario and prints the table.
pub fn run(args: &SimArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "# tgp-bench sim: {} Mbit/s link, {} kB bottleneck queue, random loss both ways, seed {}",
        LINK_BITS_PER_SECOND / 1_000_000,
        QUEUE_BYTES / 1000,
        args.seed
    );
    let skip = |name: &str| args.skip.iter().any(|s| s == name);
    if !skip("reliable") {
        let mut queueing = Vec::new();
        for &percent in &args.loss {
            let loss = f64::from(percent) / 100.0;
            let result = reliable(args, loss)?;
            println!(
                "sim reliable loss={loss:.2} capacity_fraction={:.3} wire_per_goodput={:.3} residual={} added_delay_p50_ms={:.0} added_delay_p99_ms={:.0}",
                result.capacity_fraction,
                result.wire_per_goodput,
                result.residual,
                result.added_delay_p50.as_secs_f64() * 1e3,
                result.added_delay_p99.as_secs_f64() * 1e3,
            );
            eprintln!(
                "  (simulated {:.1} s in {:.1} s; reverse wire {:.3} of goodput; records match: {}; repairs per source: proactive {:.3} reactive {:.3}, redundant at the receiver {:.3})",
                result.simulated.as_secs_f64(),
                result.wall.as_secs_f64(),
                result.reverse_wire_per_goodput,
                result.records_match,
                result.proactive_per_source,
                result.reactive_per_source,
                result.redundant_per_source,
            );
            queueing.push((loss, result.queue_p50, result.queue_p95));
        }
        for (loss, p50, p95) in queueing {
            println!(
                "sim queueing loss={loss:.2} bottleneck_p50_ms={:.1} bottleneck_p95_ms={:.1}",
                p50.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3
            );
        }
    }
    if !skip("deadline") {
        for &percent in &args.loss {
            let loss = f64::from(percent) / 100.0;
            let (on_time, wire) = deadline(args, loss);
            println!("sim deadline loss={loss:.2} on_time={on_time:.4} wire_per_goodput={wire:.3}");
        }
    }
    if !skip("share") {
        let (tgp, reno) = share(args, true);
        println!("sim share tgp_fraction={tgp:.3} newreno_fraction={reno:.3}");
        // For scale: what the NewReno flow achieves alone on that link.
        let (_, alone) = share(args, false);
        println!("sim share newreno_alone_capacity_fraction={alone:.3}");
    }
    crate::sim_tcp::run(args)?;
    eprintln!("# total wall time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

struct ReliableResult {
    capacity_fraction: f64,
    wire_per_goodput: f64,
    reverse_wire_per_goodput: f64,
    residual: u64,
    queue_p50: Duration,
    queue_p95: Duration,
    /// What the tunnel added to the one-way delay of what it delivered
    /// (holes waiting for repair hold the bytes behind them).
    added_delay_p50: Duration,
    added_delay_p99: Duration,
    simulated: Duration,
    wall: Duration,
    records_match: bool,
    /// Repair symbols per source sent: proactive, reactive, and those the
    /// receiver found of no use.
    proactive_per_source: f64,
    reactive_per_source: f64,
    redundant_per_source: f64,
}

fn reliable(args: &SimArgs, loss: f64) -> anyhow::Result<ReliableResult> {
    let wall = Instant::now();
    let bytes = args.megabytes * 1_000_000;
    let mut sim = Simulation::new(args.seed);
    let (ka, kb) = keys();
    let config = DataPlaneConfig::default();
    let sender_plane = DataPlane::new(Timestamp::ZERO, ka, config.clone());
    let segment = sender_plane.max_segment_size();
    let sender =
        DataPlaneNode::new(sender_plane, addr(2)).with_bulk(BulkSource::new(1, bytes, segment));
    let receiver = DataPlaneNode::new(DataPlane::new(Timestamp::ZERO, kb, config), addr(1));
    let a = sim.add_node(addr(1), sender);
    let b = sim.add_node(addr(2), receiver);
    daemon_timers(&mut sim, args, &[a, b]);
    let one_way = Duration::from_millis(args.rtt / 2);
    let (forward, _) = sim.connect(a, b, link(one_way, loss), link(one_way, loss));
    // Generous limit: ten times the time at the physical limit, plus a minute.
    let ideal = bytes as f64 * 8.0 / (LINK_BITS_PER_SECOND as f64 * (1.0 - loss).max(0.01));
    let limit = Timestamp::from_duration(Duration::from_secs_f64(ideal * 10.0 + 60.0));
    if args.verbose {
        for step in 1..400 {
            if sim.node::<DataPlaneNode>(b).report.reliable_bytes >= bytes {
                break;
            }
            sim.run_until(Timestamp::from_duration(Duration::from_millis(200 * step)));
            let s = sim.node::<DataPlaneNode>(a).plane.stats();
            eprintln!(
                "t={:.1} sent={} pacing={} btl={} rtt={:?} loss_out={:.2} reactive={} proactive={} delivered={} received={} recovered={} queue_drops={}",
                sim.now().since_origin().as_secs_f64(),
                s.datagrams_sent,
                s.pacing_rate_bits_per_second,
                s.bottleneck_bits_per_second,
                s.smoothed_rtt,
                s.loss_outbound,
                s.reactive_repairs_sent,
                s.proactive_repairs_sent,
                sim.node::<DataPlaneNode>(b).report.reliable_bytes,
                sim.node::<DataPlaneNode>(b).plane.stats().datagrams_received,
                sim.node::<DataPlaneNode>(b).plane.stats().fec_recovered,
                sim.link_stats(forward).dropped_by_queue,
            );
        }
    }
    sim.run_while(limit, |sim| {
        sim.node::<DataPlaneNode>(b).report.reliable_bytes < bytes
    });
    let finished = sim.node::<DataPlaneNode>(b).report.last_delivery_at;
    // Let receipts and confirmations settle, then compare the records.
    sim.run_until(sim.now() + Duration::from_secs(5));
    let sender = sim.node::<DataPlaneNode>(a);
    let receiver = sim.node::<DataPlaneNode>(b);
    let delivered = receiver.report.reliable_bytes;
    anyhow::ensure!(receiver.report.order_violations == 0, "order violated");
    let accepted = sender.bulk.as_ref().map_or(0, |b| b.accepted_segments);
    let goodput = delivered as f64 / finished.since_origin().as_secs_f64().max(1e-9);
    let limit_rate = (1.0 - loss) * LINK_BITS_PER_SECOND as f64 / 8.0;
    let stats = sim.link_stats(forward);
    if args.verbose {
        eprintln!(
            "sender {:#?}\nreceiver {:#?}\nlink {:#?}",
            sender.plane.stats(),
            receiver.plane.stats(),
            stats
        );
    }
    let sources = sender.plane.stats().segments_sent.max(1) as f64;
    let per_source = |count: u64| count as f64 / sources;
    let records_match =
        sender.plane.delivery_record().outgoing == receiver.plane.delivery_record().incoming;
    Ok(ReliableResult {
        capacity_fraction: goodput / limit_rate,
        wire_per_goodput: sender.plane.stats().bytes_sent as f64 / delivered.max(1) as f64,
        reverse_wire_per_goodput: receiver.plane.stats().bytes_sent as f64
            / delivered.max(1) as f64,
        residual: accepted.saturating_sub(receiver.report.reliable_segments),
        queue_p50: stats.queueing_delay_percentile(0.5),
        queue_p95: stats.queueing_delay_percentile(0.95),
        added_delay_p50: receiver.plane.stats().added_delay.percentile(0.5),
        added_delay_p99: receiver.plane.stats().added_delay.percentile(0.99),
        simulated: finished.since_origin(),
        wall: wall.elapsed(),
        records_match,
        proactive_per_source: per_source(sender.plane.stats().proactive_repairs_sent),
        reactive_per_source: per_source(sender.plane.stats().reactive_repairs_sent),
        redundant_per_source: per_source(receiver.plane.stats().redundant_repairs),
    })
}

fn deadline(args: &SimArgs, loss: f64) -> (f64, f64) {
    let mut sim = Simulation::new(args.seed);
    let (ka, kb) = keys();
    let config = DataPlaneConfig::default();
    let count = args.game_seconds * 60;
    let source = PeriodicSource::new(
        7,
        Timestamp::from_duration(Duration::from_millis(10)),
        Duration::from_secs(1) / 60,
        100,
        Duration::from_millis(50),
        count,
    );
    let sender = DataPlaneNode::new(DataPlane::new(Timestamp::ZERO, ka, config.clone()), addr(2))
        .with_periodic(source);
    let receiver = DataPlaneNode::new(DataPlane::new(Timestamp::ZERO, kb, config), addr(1));
    let a = sim.add_node(addr(1), sender);
    let b = sim.add_node(addr(2), receiver);
    daemon_timers(&mut sim, args, &[a, b]);
    let one_way = Duration::from_millis(20);
    sim.connect(a, b, link(one_way, loss), link(one_way, loss));
    sim.run_until(Timestamp::from_duration(Duration::from_secs(
        args.game_seconds + 2,
    )));
    let sender = sim.node::<DataPlaneNode>(a);
    let receiver = sim.node::<DataPlaneNode>(b);
    if args.verbose {
        let late: Vec<u64> = receiver
            .report
            .deadline_latencies_micros
            .iter()
            .copied()
            .filter(|&l| l > 50_000)
            .collect();
        eprintln!(
            "deadline loss={loss}: offered {count}, delivered {}, on time {}, late {:?}\nsender {:#?}\nreceiver {:#?}",
            receiver.report.deadline_segments,
            receiver.report.deadline_on_time,
            late,
            sender.plane.stats(),
            receiver.plane.stats()
        );
    }
    let on_time = receiver.report.deadline_on_time as f64 / count as f64;
    let wire =
        sender.plane.stats().bytes_sent as f64 / receiver.report.deadline_bytes.max(1) as f64;
    (on_time, wire)
}

/// One tgp transfer and one NewReno flow through one bottleneck (no random
/// loss). Returns their shares of the goodput after a warm-up; without
/// tgp, returns NewReno's goodput as a fraction of the link rate.
fn share(args: &SimArgs, with_tgp: bool) -> (f64, f64) {
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
    let reno_sender = RenoSender::new(addr(4), Timestamp::ZERO);
    let reno_receiver = RenoReceiver::new(addr(3));
    let a = sim.add_node(addr(1), tgp_sender);
    let b = sim.add_node(addr(2), tgp_receiver);
    daemon_timers(&mut sim, args, &[a, b]);
    let c = sim.add_node(addr(3), reno_sender);
    let d = sim.add_node(addr(4), reno_receiver);
    let one_way = Duration::from_millis(50);
    let bottleneck = sim.add_link(link(one_way, 0.0));
    let back = sim.add_link(link(one_way, 0.0));
    sim.route(a, b, bottleneck);
    sim.route(c, d, bottleneck);
    sim.route(b, a, back);
    sim.route(d, c, back);
    let warm_up = Duration::from_secs(args.share_seconds / 3);
    sim.run_until(Timestamp::from_duration(warm_up));
    let tgp_start = sim.node::<DataPlaneNode>(b).report.reliable_bytes;
    let reno_start = sim.node::<RenoReceiver>(d).delivered_packets;
    sim.run_until(Timestamp::from_duration(Duration::from_secs(
        args.share_seconds,
    )));
    let tgp = (sim.node::<DataPlaneNode>(b).report.reliable_bytes - tgp_start) as f64;
    let reno =
        ((sim.node::<RenoReceiver>(d).delivered_packets - reno_start) * PAYLOAD_BYTES) as f64;
    if !with_tgp {
        let measured = (args.share_seconds as f64 - warm_up.as_secs_f64()).max(1.0);
        return (0.0, reno * 8.0 / measured / LINK_BITS_PER_SECOND as f64);
    }
    let total = (tgp + reno).max(1.0);
    (tgp / total, reno / total)
}
