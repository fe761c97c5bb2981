//! The TCP model end to end in the simulator: through a tgp data plane on
//! a clean link, and straight over a lossy one.

use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::delivery::{DataPlane, DataPlaneConfig};
use tgp_proto::{SessionKeys, Timestamp};
use tgp_sim::tcp::segment::HEADER_LEN;
use tgp_sim::tcp::{Receiver, Sender, TcpConfig, TcpEndpoint};
use tgp_sim::tcp_flow::{DirectTcpNode, TunnelTcpNode};
use tgp_sim::{LinkConfig, NodeId, Simulation};

const RATE: u64 = 20_000_000;
const QUEUE: usize = 100_000;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 4000))
}

fn link(one_way: Duration, loss: f64) -> LinkConfig {
    let link = LinkConfig::ideal(one_way).with_rate(RATE, QUEUE);
    if loss > 0.0 {
        link.with_random_loss(loss)
    } else {
        link
    }
}

fn keys() -> (SessionKeys, SessionKeys) {
    let a = SessionKeys {
        send: [1; 32],
        receive: [2; 32],
        session_id: 9,
    };
    let b = SessionKeys {
        send: [2; 32],
        receive: [1; 32],
        session_id: 9,
    };
    (a, b)
}

/// A simulation with two tunnel TCP nodes joined by a clean link of
/// `one_way` delay each way, their data planes on `plane_config` and their
/// TCP with the data plane's segment size: `a` runs what `endpoint_a`
/// builds from that TCP configuration, `b` a receiver. Returns the
/// simulation, the two node ids and the TCP configuration.
fn tunnel_pair(
    seed: u64,
    one_way: Duration,
    plane_config: DataPlaneConfig,
    endpoint_a: impl FnOnce(TcpConfig) -> TcpEndpoint,
) -> (Simulation, NodeId, NodeId, TcpConfig) {
    let mss = (1340usize.min(plane_config.max_segment_size()) - HEADER_LEN) as u32;
    let tcp = TcpConfig::default()
        .with_mss(mss)
        .with_handshake_rtt(one_way * 2);
    let (ka, kb) = keys();
    let mut sim = Simulation::new(seed);
    let node_a = TunnelTcpNode::new(
        endpoint_a(tcp.clone()),
        DataPlane::new(Timestamp::ZERO, ka, plane_config.clone()),
        addr(2),
        1,
        one_way,
    );
    let node_b = TunnelTcpNode::new(
        TcpEndpoint::Receiver(Receiver::new(tcp.clone())),
        DataPlane::new(Timestamp::ZERO, kb, plane_config),
        addr(1),
        1,
        one_way,
    );
    let a = sim.add_node(addr(1), node_a);
    let b = sim.add_node(addr(2), node_b);
    sim.connect(a, b, link(one_way, 0.0), link(one_way, 0.0));
    (sim, a, b, tcp)
}

#[test]
fn cubic_through_tgp_completes_a_transfer_in_order_on_a_clean_link() {
    let one_way = Duration::from_millis(25);
    let total = 3_000_000;
    let plane_config = DataPlaneConfig {
        rate_ceiling_bits_per_second: Some(RATE),
        initial_rate_bits_per_second: RATE,
        max_datagram_size: 1452,
        ..DataPlaneConfig::default()
    };
    let (mut sim, a, b, _) = tunnel_pair(3, one_way, plane_config, |tcp| {
        TcpEndpoint::Sender(Sender::new(tcp, Timestamp::ZERO, Some(total)))
    });
    let limit = Timestamp::from_duration(Duration::from_secs(30));
    sim.run_while(limit, |sim| {
        !sim.node::<TunnelTcpNode>(a)
            .tcp
            .sender()
            .expect("sender")
            .is_done()
    });
    let sender = sim.node::<TunnelTcpNode>(a);
    let receiver = sim.node::<TunnelTcpNode>(b);
    assert!(
        sender.tcp.sender().expect("sender").is_done(),
        "transfer unfinished"
    );
    assert_eq!(
        receiver.tcp.receiver().expect("receiver").bytes_delivered(),
        total
    );
    let report = &receiver.report;
    assert_eq!(report.payload_errors, 0);
    assert_eq!(report.decode_errors, 0);
    // tgp delivers one flow's segments in the order it took them.
    assert_eq!(report.reordered, 0);
    assert_eq!(sender.report.reordered, 0, "ACKs reordered");
    // At 20 Mbit/s, 3 MB take about 1.2 s; allow a slow start and more.
    let took = sim.now().since_origin();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Clean link: what tgp adds to the one-way delay stays small at the
    // median (queueing in its send queue during slow start is allowed).
    let mut delays = report.added_delay_micros.clone();
    delays.sort_unstable();
    let median = delays[delays.len() / 2];
    assert!(median < 50_000, "median added delay {median} µs");
}

/// Goodput of a 10 s direct cubic flow at `loss`, bytes per second.
fn direct_goodput(loss: f64, seed: u64) -> f64 {
    let one_way = Duration::from_millis(50);
    let tcp = TcpConfig::default()
        .with_mss(1448)
        .with_handshake_rtt(one_way * 2);
    let mut sim = Simulation::new(seed);
    let sender = DirectTcpNode::new(
        TcpEndpoint::Sender(Sender::new(tcp.clone(), Timestamp::ZERO, None)),
        addr(2),
        one_way,
    );
    let receiver = DirectTcpNode::new(TcpEndpoint::Receiver(Receiver::new(tcp)), addr(1), one_way);
    let a = sim.add_node(addr(1), sender);
    let b = sim.add_node(addr(2), receiver);
    sim.connect(a, b, link(one_way, loss), link(one_way, loss));
    sim.run_until(Timestamp::from_duration(Duration::from_secs(10)));
    let delivered = sim
        .node::<DirectTcpNode>(b)
        .tcp
        .receiver()
        .expect("receiver")
        .bytes_delivered();
    delivered as f64 / 10.0
}

#[test]
fn direct_cubic_at_one_percent_loss_is_far_below_a_clean_link() {
    let clean = direct_goodput(0.0, 1);
    assert!(
        clean * 8.0 > 0.7 * RATE as f64,
        "clean link: {:.1} Mbit/s",
        clean * 8e-6
    );
    for seed in 1..=3 {
        let lossy = direct_goodput(0.01, seed);
        assert!(
            lossy < clean / 2.0,
            "seed {seed}: {:.1} Mbit/s at 1 % vs {:.1} clean",
            lossy * 8e-6,
            clean * 8e-6
        );
        assert!(lossy > 0.0, "seed {seed}: nothing delivered at 1 % loss");
    }
}

/// Seconds the transfer `sim` is running takes from now, through node `a`'s
/// sender to node `b`'s receiver (10 s at most).
fn transfer_seconds(sim: &mut Simulation, a: usize, b: usize, tcp: &TcpConfig, total: u64) -> f64 {
    let start = sim.now();
    sim.node_mut::<TunnelTcpNode>(a).tcp =
        TcpEndpoint::Sender(Sender::new(tcp.clone(), start, Some(total)));
    sim.node_mut::<TunnelTcpNode>(b).tcp = TcpEndpoint::Receiver(Receiver::new(tcp.clone()));
    let limit = start + Duration::from_secs(10);
    sim.run_while(limit, |sim| {
        !sim.node::<TunnelTcpNode>(a)
            .tcp
            .sender()
            .expect("sender")
            .is_done()
    });
    (sim.now() - start).as_secs_f64()
}

#[test]
fn a_connection_after_a_pause_is_as_fast_as_the_first_without_a_ceiling() {
    // One session, two transfers 2 s apart (as two downloads through a
    // long-lived tunnel): the second must not start from the trickle that
    // arrived during the pause.
    let one_way = Duration::from_millis(50);
    let total = 6_000_000;
    let plane_config = DataPlaneConfig {
        max_datagram_size: 1452,
        ..DataPlaneConfig::default()
    };
    let (mut sim, a, b, tcp) = tunnel_pair(5, one_way, plane_config, |tcp| {
        TcpEndpoint::Receiver(Receiver::new(tcp))
    });
    let first = transfer_seconds(&mut sim, a, b, &tcp, total);
    sim.run_for(Duration::from_secs(2));
    let second = transfer_seconds(&mut sim, a, b, &tcp, total);
    assert!(first < 9.0, "first transfer took {first:.2} s");
    assert!(
        second < first * 1.25,
        "second transfer took {second:.2} s, the first {first:.2} s"
    );
}
