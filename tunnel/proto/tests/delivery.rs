//! Data-plane tests in the deterministic simulator: exactly-once in-order
//! delivery, deadlines, and identical bilateral records under loss,
//! reordering and duplication. Thresholds are loose so they never flake;
//! `tgp-bench sim` reports the real figures.

use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::delivery::{DataPlane, DataPlaneConfig};
use tgp_proto::{SessionKeys, Timestamp};
use tgp_sim::data_plane::{BulkSource, DataPlaneNode, PeriodicSource};
use tgp_sim::{LinkConfig, Simulation};

fn keys() -> (SessionKeys, SessionKeys) {
    SessionKeys::pair([0x11; 32], [0x22; 32], 0x5e55)
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

/// A pair over `link` both ways whose `a` sends `bytes` of bulk over
/// `flows` reliable flows to `b`.
fn bulk_pair(seed: u64, link: LinkConfig, config: DataPlaneConfig, flows: u64, bytes: u64) -> Pair {
    pair(seed, link.clone(), link, config, |a, b| {
        let size = a.plane.max_segment_size();
        (a.with_bulk(BulkSource::new(flows, bytes, size)), b)
    })
}

fn run_bulk(seed: u64, link: LinkConfig, bytes: u64, flows: u64, limit: Duration) -> Pair {
    let mut p = bulk_pair(seed, link, DataPlaneConfig::default(), flows, bytes);
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

fn settle(p: &mut Pair, seconds: u64) {
    let end = p.sim.now() + Duration::from_secs(seconds);
    p.sim.run_until(end);
}

fn records_match(p: &Pair) {
    let a = p.sim.node::<DataPlaneNode>(p.a).plane.delivery_record();
    let b = p.sim.node::<DataPlaneNode>(p.b).plane.delivery_record();
    assert_eq!(a.outgoing, b.incoming, "a→b records differ");
    assert_eq!(b.outgoing, a.incoming, "b→a records differ");
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

#[test]
fn both_directions_under_loss_reordering_and_duplication() {
    let link = LinkConfig::ideal(Duration::from_millis(30))
        .with_rate(10_000_000, 60_000)
        .with_random_loss(0.1)
        .with_reorder(0.05, Duration::from_millis(7))
        .with_duplicate(0.05)
        .with_jitter(Duration::from_millis(2));
    let bytes = 1_000_000;
    let mut p = pair(3, link.clone(), link, DataPlaneConfig::default(), |a, b| {
        let size = a.plane.max_segment_size();
        (
            a.with_bulk(BulkSource::new(4, bytes, size)),
            b.with_bulk(BulkSource::new(2, bytes, size / 3)),
        )
    });
    let (a, b) = (p.a, p.b);
    p.sim
        .run_while(Timestamp::from_duration(Duration::from_secs(60)), |sim| {
            sim.node::<DataPlaneNode>(a).report.reliable_bytes < bytes
                || sim.node::<DataPlaneNode>(b).report.reliable_bytes < bytes
        });
    settle(&mut p, 3);
    for (id, peer) in [(a, b), (b, a)] {
        let node = p.sim.node::<DataPlaneNode>(id);
        let sender = p.sim.node::<DataPlaneNode>(peer);
        assert_eq!(node.report.order_violations, 0);
        assert_eq!(node.report.reliable_bytes, bytes);
        assert_eq!(
            node.report.reliable_segments,
            sender.bulk.as_ref().unwrap().accepted_segments
        );
        assert!(
            node.plane.stats().drops.replayed > 0,
            "duplicates were discarded by the replay window"
        );
    }
    records_match(&p);
}

#[test]
fn bursty_loss_still_delivers_everything() {
    let link = LinkConfig::ideal(Duration::from_millis(25))
        .with_rate(8_000_000, 50_000)
        .with_bursty_loss(0.1, 4.0);
    let p = run_bulk(4, link, 1_000_000, 2, Duration::from_secs(60));
    assert_bulk_ok(&p, 1_000_000);
}

#[test]
fn heavy_loss_still_delivers_everything() {
    let link = LinkConfig::ideal(Duration::from_millis(20))
        .with_rate(10_000_000, 50_000)
        .with_random_loss(0.7);
    let p = run_bulk(5, link, 300_000, 1, Duration::from_secs(120));
    assert_bulk_ok(&p, 300_000);
}

fn game(seed: u64, loss: f64, reliable_too: bool) -> Pair {
    let link = LinkConfig::ideal(Duration::from_millis(20))
        .with_rate(20_000_000, 100_000)
        .with_random_loss(loss);
    let mut p = pair(
        seed,
        link.clone(),
        link,
        DataPlaneConfig::default(),
        |a, b| {
            let size = a.plane.max_segment_size();
            let a = a.with_periodic(PeriodicSource::new(
                9,
                Timestamp::from_duration(Duration::from_millis(5)),
                Duration::from_secs(1) / 60,
                100,
                Duration::from_millis(50),
                600,
            ));
            let a = if reliable_too {
                a.with_bulk(BulkSource::new(1, 2_000_000, size))
            } else {
                a
            };
            (a, b)
        },
    );
    p.sim
        .run_until(Timestamp::from_duration(Duration::from_secs(12)));
    settle(&mut p, 3);
    p
}

#[test]
fn deadline_stream_is_on_time_at_most_once_and_agreed() {
    let p = game(6, 0.2, false);
    let b = p.sim.node::<DataPlaneNode>(p.b);
    assert_eq!(b.report.deadline_duplicates, 0);
    assert!(
        b.report.deadline_segments >= 570,
        "delivered {}",
        b.report.deadline_segments
    );
    // Never later than the receiver's clock allows: the deadline (50 ms)
    // beyond the fastest delivery seen, so at most the base one-way delay
    // (10 ms) past the deadline, with 2 ms for the link's jitter.
    let late = b
        .report
        .deadline_latencies_micros
        .iter()
        .filter(|&&l| l > 62_000)
        .count();
    assert_eq!(late, 0);
    records_match(&p);
    let record = b.plane.delivery_record();
    assert_eq!(
        record.incoming.delivered.len() + record.incoming.abandoned.len(),
        p.sim.node::<DataPlaneNode>(p.a).plane.stats().segments_sent
    );
}

#[test]
fn deadline_flow_is_not_blocked_by_a_reliable_flow() {
    let p = game(7, 0.1, true);
    let b = p.sim.node::<DataPlaneNode>(p.b);
    assert_eq!(b.report.order_violations, 0);
    assert_eq!(b.report.reliable_bytes, 2_000_000);
    assert!(
        b.report.deadline_on_time >= 540,
        "on time {}",
        b.report.deadline_on_time
    );
    records_match(&p);
}

#[test]
fn rekey_mid_transfer_loses_nothing() {
    let link = LinkConfig::ideal(Duration::from_millis(20))
        .with_rate(10_000_000, 50_000)
        .with_random_loss(0.05);
    let bytes = 2_000_000;
    let mut p = bulk_pair(8, link, DataPlaneConfig::default(), 1, bytes);
    let (a, b) = (p.a, p.b);
    p.sim
        .run_until(Timestamp::from_duration(Duration::from_millis(700)));
    let new_a = SessionKeys {
        send: [0x33; 32],
        receive: [0x44; 32],
        session_id: 0x5e56,
    };
    let new_b = SessionKeys {
        send: [0x44; 32],
        receive: [0x33; 32],
        session_id: 0x5e56,
    };
    let now = p.sim.now();
    p.sim.node_mut::<DataPlaneNode>(a).plane.rekey(now, new_a);
    p.sim.run_until(now + Duration::from_millis(40));
    let now = p.sim.now();
    p.sim.node_mut::<DataPlaneNode>(b).plane.rekey(now, new_b);
    p.sim
        .run_while(Timestamp::from_duration(Duration::from_secs(30)), |sim| {
            sim.node::<DataPlaneNode>(b).report.reliable_bytes < bytes
        });
    settle(&mut p, 5);
    assert_bulk_ok(&p, bytes);
    // b rekeyed after a's first new packets arrived: those were dropped
    // as unknown and repaired like any loss.
    assert!(
        p.sim
            .node::<DataPlaneNode>(b)
            .plane
            .stats()
            .drops
            .unknown_session
            > 0
    );
}

#[test]
fn idle_session_stays_alive_cheaply_and_silence_is_detected() {
    let link = LinkConfig::ideal(Duration::from_millis(40));
    let mut p = pair(9, link.clone(), link, DataPlaneConfig::default(), |a, b| {
        (a, b)
    });
    let (a, b) = (p.a, p.b);
    p.sim
        .run_until(Timestamp::from_duration(Duration::from_secs(120)));
    for id in [a, b] {
        let node = p.sim.node::<DataPlaneNode>(id);
        assert!(!node.plane.peer_is_silent(p.sim.now()));
        let sent = node.plane.stats().datagrams_sent;
        assert!(sent <= 120 / 5 + 2, "{sent} keepalives in two minutes");
    }
    // Cut the path: both sides notice within the idle timeout.
    p.sim.set_transmit_filter(|_| tgp_sim::Verdict::Drop);
    let cut = p.sim.now();
    p.sim.run_until(cut + Duration::from_secs(40));
    for id in [a, b] {
        assert!(p
            .sim
            .node::<DataPlaneNode>(id)
            .plane
            .peer_is_silent(p.sim.now()));
    }
}

#[test]
fn garbage_forgeries_and_replays_are_dropped_and_counted() {
    let link = LinkConfig::ideal(Duration::from_millis(10)).with_rate(10_000_000, 50_000);
    let bytes = 200_000;
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut p = bulk_pair(10, link, DataPlaneConfig::default(), 1, bytes);
    let (a, b) = (p.a, p.b);
    let store = captured.clone();
    p.sim.set_transmit_filter(move |t| {
        if t.index % 7 == 0 {
            store.borrow_mut().push(t.datagram.to_vec());
        }
        tgp_sim::Verdict::Pass
    });
    p.sim
        .run_until(Timestamp::from_duration(Duration::from_millis(300)));
    let from: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let now = p.sim.now();
    for (i, datagram) in captured.borrow().iter().enumerate() {
        let at = now + Duration::from_micros(i as u64 * 10);
        p.sim.inject(at, from, b, datagram.clone());
        let mut forged = datagram.clone();
        // A fresh packet number (so the replay window lets it through to
        // authentication), and a flipped tag bit.
        forged[9] ^= 0x40;
        let last = forged.len() - 1;
        forged[last] ^= 1;
        p.sim.inject(at, from, b, forged);
        p.sim
            .inject(at, from, b, datagram[..datagram.len() / 2].to_vec());
        p.sim.inject(at, from, b, vec![0x02; i % 40]);
    }
    p.sim
        .run_while(Timestamp::from_duration(Duration::from_secs(20)), |sim| {
            sim.node::<DataPlaneNode>(b).report.reliable_bytes < bytes
        });
    settle(&mut p, 2);
    let drops = p.sim.node::<DataPlaneNode>(b).plane.stats().drops.clone();
    assert!(
        drops.replayed > 0 && drops.forged > 0 && drops.truncated > 0,
        "{drops:?}"
    );
    assert_bulk_ok(&p, bytes);
    let _ = a;
}

#[test]
fn rate_ceiling_caps_the_wire_rate() {
    let link = LinkConfig::ideal(Duration::from_millis(20)).with_rate(20_000_000, 100_000);
    let config = DataPlaneConfig {
        rate_ceiling_bits_per_second: Some(4_000_000),
        ..DataPlaneConfig::default()
    };
    let bytes = 2_000_000;
    let mut p = bulk_pair(11, link, config, 1, bytes);
    let (a, b) = (p.a, p.b);
    p.sim
        .run_while(Timestamp::from_duration(Duration::from_secs(30)), |sim| {
            sim.node::<DataPlaneNode>(b).report.reliable_bytes < bytes
        });
    let elapsed = p.sim.now().since_origin().as_secs_f64();
    let sent = p.sim.node::<DataPlaneNode>(a).plane.stats().bytes_sent as f64;
    let rate = sent * 8.0 / elapsed;
    assert!(rate <= 4_200_000.0, "sent at {rate} bit/s");
    assert!(rate >= 3_000_000.0, "sent at {rate} bit/s");
}

/// A daemon's timer wakes it late (a runtime's millisecond ticks, a busy
/// host): the packets that fell due meanwhile leave at once, so the pace
/// holds on average. With a 2 ms catch-up limit this sent at 0.58 of the
/// ceiling.
#[test]
fn late_wake_ups_do_not_lower_the_pace() {
    let link = LinkConfig::ideal(Duration::from_millis(20)).with_rate(20_000_000, 100_000);
    let config = DataPlaneConfig {
        rate_ceiling_bits_per_second: Some(8_000_000),
        ..DataPlaneConfig::default()
    };
    let bytes = 3_000_000;
    let mut p = bulk_pair(12, link, config, 1, bytes);
    let (a, b) = (p.a, p.b);
    let late = tgp_sim::WakeLateness {
        tick: Duration::from_millis(1),
        busy_probability: 0.5,
        busy_max: Duration::from_millis(8),
    };
    p.sim.set_wake_lateness(a, late);
    p.sim.set_wake_lateness(b, late);
    // From 1 s (start-up over) to 3 s: the sender is backlogged throughout.
    p.sim
        .run_until(Timestamp::from_duration(Duration::from_secs(1)));
    let before = p.sim.node::<DataPlaneNode>(a).plane.stats().bytes_sent;
    p.sim
        .run_until(Timestamp::from_duration(Duration::from_secs(3)));
    let sent = p.sim.node::<DataPlaneNode>(a).plane.stats().bytes_sent - before;
    let rate = sent as f64 * 8.0 / 2.0;
    assert!(rate >= 7_200_000.0, "paced at {rate} bit/s of 8 Mbit/s");
    assert!(rate <= 8_400_000.0, "paced at {rate} bit/s of 8 Mbit/s");
    assert!(p.sim.node::<DataPlaneNode>(b).report.reliable_bytes < bytes);
}

#[test]
fn queue_manager_refuses_segments_when_the_tunnel_is_the_bottleneck() {
    let (ka, _) = keys();
    let config = DataPlaneConfig {
        rate_ceiling_bits_per_second: Some(1_000_000),
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::new(Timestamp::ZERO, ka, config);
    let mut buffer = Vec::new();
    let mut refused = 0;
    let mut worst_wait = Duration::ZERO;
    for ms in 0..3_000u64 {
        let now = Timestamp::from_duration(Duration::from_millis(ms));
        // An inner sender offering 4 Mbit/s into a 1 Mbit/s tunnel.
        for _ in 0..1 {
            if plane
                .send_segment(now, 1, tgp_proto::DeliveryClass::Reliable, &[0u8; 500])
                .is_err()
            {
                refused += 1;
            }
        }
        loop {
            buffer.clear();
            if plane.poll_transmit(now, &mut buffer).is_none() {
                break;
            }
        }
        if plane.poll_timeout().is_some_and(|t| t <= now) {
            plane.handle_timeout(now);
        }
        let wait = Duration::from_secs_f64(plane.queued_bytes() as f64 * 8.0 / 1_000_000.0);
        if ms > 1_000 {
            worst_wait = worst_wait.max(wait);
        }
    }
    assert!(refused > 100, "only {refused} refusals");
    assert!(plane.stats().drops.queue_delay > 0);
    assert!(
        worst_wait < Duration::from_millis(800),
        "queue held {worst_wait:?}"
    );
}

#[test]
fn mixed_classes_over_a_hostile_link_across_seeds() {
    for seed in 20..23 {
        let link = LinkConfig::ideal(Duration::from_millis(15))
            .with_rate(10_000_000, 60_000)
            .with_bursty_loss(0.15, 3.0)
            .with_reorder(0.1, Duration::from_millis(5))
            .with_duplicate(0.1)
            .with_jitter(Duration::from_millis(3));
        let bytes = 400_000;
        let mut p = pair(
            seed,
            link.clone(),
            link,
            DataPlaneConfig::default(),
            |a, b| {
                let size = a.plane.max_segment_size();
                let a = a.with_bulk(BulkSource::new(3, bytes, size)).with_periodic(
                    PeriodicSource::new(
                        50,
                        Timestamp::ZERO,
                        Duration::from_millis(10),
                        80,
                        Duration::from_millis(60),
                        300,
                    ),
                );
                let b = b.with_bulk(BulkSource::new(1, bytes / 4, 700));
                (a, b)
            },
        );
        p.sim
            .run_until(Timestamp::from_duration(Duration::from_secs(15)));
        settle(&mut p, 3);
        let a = p.sim.node::<DataPlaneNode>(p.a);
        let b = p.sim.node::<DataPlaneNode>(p.b);
        assert_eq!(b.report.reliable_bytes, bytes, "seed {seed}");
        assert_eq!(a.report.reliable_bytes, bytes / 4, "seed {seed}");
        assert_eq!(a.report.order_violations + b.report.order_violations, 0);
        assert_eq!(b.report.deadline_duplicates, 0);
        assert!(
            b.report.deadline_segments >= 250,
            "seed {seed}: {}",
            b.report.deadline_segments
        );
        records_match(&p);
    }
}
