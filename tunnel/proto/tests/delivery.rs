//! Data-plane tests in the deterministic simulator: exactly-once in-order
//! delivery, deadlines, and identical bilateral records under loss,
//! reordering and duplication. Thresholds are loose so they never flake;
//! `tgp-bench sim` reports the real figures.

use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::delivery::node::{BulkSource, DataPlaneNode, PeriodicSource};
use tgp_proto::delivery::{DataPlane, DataPlaneConfig};
use tgp_proto::sim::{LinkConfig, Simulation};
use tgp_proto::{SessionKeys, Timestamp};

fn keys() -> (SessionKeys, SessionKeys) {
    let a = SessionKeys {
        send: [0x11; 32],
        receive: [0x22; 32],
        session_id: 0x5e55,
    };
    let b = SessionKeys {
        send: [0x22; 32],
        receive: [0x11; 32],
        session_id: 0x5e55,
    };
    (a, b)
}

struct Pair {
    sim: Simulation,
    a: usize,
    b: usize,
}

fn pair(
    seed: u64,
    a_to_b: LinkConfig,
    b_to_a: LinkConfig,
    config: DataPlaneConfig,
    setup: impl FnOnce(DataPlaneNode, DataPlaneNode) -> (DataPlaneNode, DataPlaneNode),
) -> Pair {
    let mut sim = Simulation::new(seed);
    let a_addr: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:4000".parse().unwrap();
    let (ka, kb) = keys();
    let node_a = DataPlaneNode::new(DataPlane::new(Timestamp::ZERO, ka, config.clone()), b_addr);
    let node_b = DataPlaneNode::new(DataPlane::new(Timestamp::ZERO, kb, config), a_addr);
    let (node_a, node_b) = setup(node_a, node_b);
    let a = sim.add_node(a_addr, node_a);
    let b = sim.add_node(b_addr, node_b);
    sim.connect(a, b, a_to_b, b_to_a);
    Pair { sim, a, b }
}

fn run_bulk(seed: u64, link: LinkConfig, bytes: u64, flows: u64, limit: Duration) -> Pair {
    let mut p = pair(
        seed,
        link.clone(),
        link,
        DataPlaneConfig::default(),
        |a, b| {
            let size = a.plane.max_segment_size();
            (a.with_bulk(BulkSource::new(flows, bytes, size)), b)
        },
    );
    let (a, b) = (p.a, p.b);
    let end = Timestamp::from_duration(limit);
    p.sim.run_while(end, |sim| {
        sim.node::<DataPlaneNode>(b).report.reliable_bytes < bytes
    });
    // Let receipts and confirmations settle.
    let settle = p.sim.now() + Duration::from_secs(3);
    p.sim.run_until(settle);
    let _ = a;
    p
}

fn assert_bulk_ok(p: &Pair, bytes: u64) {
    let a = p.sim.node::<DataPlaneNode>(p.a);
    let b = p.sim.node::<DataPlaneNode>(p.b);
    eprintln!("a stats {:#?}", a.plane.stats());
    eprintln!("b stats {:#?}", b.plane.stats());
    assert_eq!(b.report.order_violations, 0);
    assert_eq!(b.report.reliable_bytes, bytes, "every byte delivered");
    assert_eq!(
        b.report.reliable_segments,
        a.bulk.as_ref().unwrap().accepted_segments
    );
    let ra = a.plane.delivery_record();
    let rb = b.plane.delivery_record();
    assert_eq!(ra.outgoing, rb.incoming, "bilateral records match");
    assert_eq!(rb.outgoing, ra.incoming);
    assert!(a.plane.is_idle(), "sender settled");
}

#[test]
fn reliable_bulk_clean_link() {
    let link = LinkConfig::ideal(Duration::from_millis(20)).with_rate(20_000_000, 100_000);
    let p = run_bulk(1, link, 2_000_000, 1, Duration::from_secs(30));
    assert_bulk_ok(&p, 2_000_000);
}

#[test]
fn reliable_bulk_under_loss() {
    let link = LinkConfig::ideal(Duration::from_millis(20))
        .with_rate(20_000_000, 100_000)
        .with_random_loss(0.2);
    let p = run_bulk(2, link, 2_000_000, 3, Duration::from_secs(60));
    assert_bulk_ok(&p, 2_000_000);
}
