//! Tests of the deterministic network simulator (`tgp_sim`): the
//! link model (loss, delay, jitter, reordering, duplication, rate and
//! drop-tail queue), determinism, the transmit filter, injection, shared
//! links and the event loop's guards.

use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::Timestamp;
use tgp_sim::nodes::{Arrival, Pinger, Sink};
use tgp_sim::{LinkConfig, LinkId, LossModel, Node, NodeId, Simulation, Transmit, Verdict};

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 4000 + u16::from(n)))
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_duration(Duration::from_secs(s))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A pinger (node 0) sending `count` datagrams of `size` bytes every
/// `interval` over `config` to a sink (node 1). Returns the simulation, the
/// sink's id and the forward link.
fn one_way(
    seed: u64,
    count: u64,
    interval: Duration,
    size: usize,
    config: LinkConfig,
) -> (Simulation, NodeId, LinkId) {
    let mut sim = Simulation::new(seed);
    let pinger = sim.add_node(addr(1), Pinger::new(addr(2), count, interval, size));
    let sink = sim.add_node(addr(2), Sink::default());
    let (link, _) = sim.connect(pinger, sink, config, LinkConfig::ideal(ms(10)));
    (sim, sink, link)
}

/// Runs until every datagram had time to arrive.
fn run_all(sim: &mut Simulation, count: u64, interval: Duration) {
    let last = Timestamp::from_nanos(interval.as_nanos() as u64 * count);
    sim.run_until(last + Duration::from_secs(30));
}

fn arrivals(sim: &Simulation, sink: NodeId) -> Vec<Arrival> {
    sim.node::<Sink>(sink).arrivals().to_vec()
}

fn everything_link() -> LinkConfig {
    LinkConfig::ideal(ms(20))
        .with_random_loss(0.05)
        .with_jitter(ms(5))
        .with_reorder(0.02, ms(10))
        .with_duplicate(0.01)
        .with_rate(5_000_000, 20_000)
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    let run = |seed| {
        let (mut sim, sink, link) = one_way(seed, 5_000, ms(1), 700, everything_link());
        run_all(&mut sim, 5_000, ms(1));
        let stats = sim.link_stats(link).clone();
        (arrivals(&sim, sink), format!("{stats:?}"))
    };
    let (a, a_stats) = run(42);
    let (b, b_stats) = run(42);
    let (c, _) = run(43);
    assert!(a.len() > 4_000, "{}", a.len());
    assert_eq!(a, b);
    assert_eq!(a_stats, b_stats);
    assert_ne!(a, c);
}

#[test]
fn adding_a_link_does_not_change_another_links_draws() {
    let run = |extra_links: usize| {
        // The measured link is built first (link ids are positions); the
        // others come after it.
        let mut sim = Simulation::new(9);
        let pinger = sim.add_node(addr(1), Pinger::new(addr(2), 2_000, ms(1), 100));
        let sink = sim.add_node(addr(2), Sink::default());
        let link = sim.add_link(
            LinkConfig::ideal(ms(5))
                .with_random_loss(0.3)
                .with_jitter(ms(2)),
        );
        sim.route(pinger, sink, link);
        for _ in 0..extra_links {
            sim.add_link(LinkConfig::ideal(ms(1)).with_random_loss(0.5));
        }
        // Cross traffic on another link must not disturb it either.
        let other = sim.add_node(addr(3), Pinger::new(addr(4), 2_000, ms(1), 100));
        let other_sink = sim.add_node(addr(4), Sink::default());
        if extra_links > 0 {
            sim.connect(
                other,
                other_sink,
                LinkConfig::ideal(ms(3)).with_random_loss(0.2),
                LinkConfig::ideal(ms(3)),
            );
        }
        sim.run_until(secs(5));
        arrivals(&sim, sink)
    };
    assert_eq!(run(0), run(3));
}

#[test]
fn random_loss_matches_the_configured_rate() {
    for (seed, p) in [(1, 0.01), (2, 0.1), (3, 0.3), (4, 0.5)] {
        let n = 100_000;
        let (mut sim, sink, link) = one_way(
            seed,
            n,
            Duration::from_micros(100),
            64,
            LinkConfig::ideal(ms(1)).with_random_loss(p),
        );
        run_all(&mut sim, n, Duration::from_micros(100));
        let received = sim.node::<Sink>(sink).arrivals().len() as u64;
        let stats = sim.link_stats(link);
        assert_eq!(stats.offered_packets, n);
        assert_eq!(stats.dropped_by_loss + received, n);
        assert_eq!(stats.delivered_packets, received);
        let measured = stats.dropped_by_loss as f64 / n as f64;
        assert!((measured - p).abs() < 0.01, "p = {p}, measured {measured}");
    }
}

/// Loss runs (consecutive missing sequence numbers) in a sink's log.
fn loss_bursts(arrivals: &[Arrival], n: u64) -> Vec<u64> {
    let mut got = vec![false; n as usize];
    for a in arrivals {
        got[a.seq.unwrap() as usize] = true;
    }
    let mut bursts = Vec::new();
    let mut run = 0;
    for g in got {
        if g {
            if run > 0 {
                bursts.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        bursts.push(run);
    }
    bursts
}

#[test]
fn gilbert_elliott_matches_mean_loss_and_burst_length() {
    for (seed, loss, burst) in [(5, 0.05, 3.0), (6, 0.1, 4.0), (7, 0.3, 2.0)] {
        let n = 100_000;
        let (mut sim, sink, link) = one_way(
            seed,
            n,
            Duration::from_micros(100),
            64,
            LinkConfig::ideal(ms(1)).with_loss(LossModel::bursty(loss, burst)),
        );
        run_all(&mut sim, n, Duration::from_micros(100));
        let stats = sim.link_stats(link);
        let measured = stats.dropped_by_loss as f64 / n as f64;
        assert!(
            (measured - loss).abs() < 0.01,
            "loss {loss}: measured {measured}"
        );
        let bursts = loss_bursts(sim.node::<Sink>(sink).arrivals(), n);
        let mean_burst = bursts.iter().sum::<u64>() as f64 / bursts.len() as f64;
        assert!(
            (mean_burst - burst).abs() < 0.15 * burst,
            "burst {burst}: measured {mean_burst}"
        );
    }
}

#[test]
fn random_loss_bursts_are_short() {
    let n = 100_000;
    let (mut sim, sink, _) = one_way(
        8,
        n,
        Duration::from_micros(100),
        64,
        LinkConfig::ideal(ms(1)).with_random_loss(0.1),
    );
    run_all(&mut sim, n, Duration::from_micros(100));
    let bursts = loss_bursts(sim.node::<Sink>(sink).arrivals(), n);
    let mean_burst = bursts.iter().sum::<u64>() as f64 / bursts.len() as f64;
    // Geometric: 1 / (1 - p) = 1.11.
    assert!((mean_burst - 1.111).abs() < 0.05, "{mean_burst}");
}

#[test]
fn delay_and_jitter_stay_in_bounds_and_fifo_is_kept() {
    let n = 20_000;
    let interval = Duration::from_micros(500);
    let (mut sim, sink, _) = one_way(
        10,
        n,
        interval,
        100,
        LinkConfig::ideal(ms(40)).with_jitter(ms(10)),
    );
    run_all(&mut sim, n, interval);
    let log = arrivals(&sim, sink);
    assert_eq!(log.len() as u64, n);
    let reference = Pinger::new(addr(2), n, interval, 100);
    let mut min = Duration::MAX;
    let mut max = Duration::ZERO;
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a.seq, Some(i as u64), "FIFO broken at {i}");
        let one_way = a.time - reference.send_time(i as u64);
        assert!(one_way >= ms(40) && one_way <= ms(50), "{one_way:?}");
        min = min.min(one_way);
        max = max.max(one_way);
    }
    // Dense traffic: FIFO pushes arrivals towards the top of the range.
    assert!(max > ms(49), "{max:?}");
    assert!(min < ms(46), "{min:?}");

    // Sparse traffic (interval > jitter): the jitter is uniform.
    let n = 5_000;
    let interval = ms(20);
    let (mut sim, sink, _) = one_way(
        10,
        n,
        interval,
        100,
        LinkConfig::ideal(ms(40)).with_jitter(ms(10)),
    );
    run_all(&mut sim, n, interval);
    let reference = Pinger::new(addr(2), n, interval, 100);
    let delays: Vec<Duration> = arrivals(&sim, sink)
        .iter()
        .map(|a| a.time - reference.send_time(a.seq.unwrap()))
        .collect();
    assert_eq!(delays.len() as u64, n);
    let min = *delays.iter().min().unwrap();
    let max = *delays.iter().max().unwrap();
    let mean = delays.iter().sum::<Duration>() / n as u32;
    assert!(
        min >= ms(40) && min < ms(40) + Duration::from_micros(100),
        "{min:?}"
    );
    assert!(
        max <= ms(50) && max > ms(50) - Duration::from_micros(100),
        "{max:?}"
    );
    assert!(mean > ms(44) && mean < ms(46), "{mean:?}");
}

#[test]
fn ideal_link_delivers_exactly_after_the_delay() {
    let (mut sim, sink, _) = one_way(11, 10, ms(7), 100, LinkConfig::ideal(ms(33)));
    run_all(&mut sim, 10, ms(7));
    let log = arrivals(&sim, sink);
    assert_eq!(log.len(), 10);
    for (i, a) in log.iter().enumerate() {
        assert_eq!(a.time, Timestamp::from_duration(ms(7 * i as u64 + 33)));
        assert_eq!(a.from, addr(1));
        assert_eq!(a.len, 100);
    }
}

#[test]
fn reordering_happens_only_when_configured() {
    let n = 20_000;
    let interval = ms(1);
    let inversions = |config: LinkConfig| {
        let (mut sim, sink, _) = one_way(12, n, interval, 100, config);
        run_all(&mut sim, n, interval);
        let log = arrivals(&sim, sink);
        assert_eq!(log.len() as u64, n);
        // Packets that arrive after a higher sequence number.
        let mut highest = 0;
        let mut late = 0;
        for a in &log {
            let seq = a.seq.unwrap();
            if seq < highest {
                late += 1;
            }
            highest = highest.max(seq);
        }
        late
    };
    assert_eq!(inversions(LinkConfig::ideal(ms(20)).with_jitter(ms(3))), 0);
    let late = inversions(
        LinkConfig::ideal(ms(20))
            .with_jitter(ms(3))
            .with_reorder(0.05, ms(10)),
    );
    // About 5 % of 20,000.
    assert!((700..1_300).contains(&late), "{late}");
}

#[test]
fn duplicates_are_delivered_and_counted() {
    let n = 20_000;
    let (mut sim, sink, link) = one_way(
        13,
        n,
        ms(1),
        100,
        LinkConfig::ideal(ms(5)).with_duplicate(0.1),
    );
    run_all(&mut sim, n, ms(1));
    let stats = sim.link_stats(link);
    let log = arrivals(&sim, sink);
    assert!(
        (1_700..2_300).contains(&stats.duplicated),
        "{}",
        stats.duplicated
    );
    assert_eq!(log.len() as u64, n + stats.duplicated);
    assert_eq!(stats.delivered_packets, n + stats.duplicated);
    assert_eq!(stats.delivered_bytes, 100 * (n + stats.duplicated));
    assert_eq!(stats.in_flight(), 0);
    let twice = log.windows(2).filter(|w| w[0].seq == w[1].seq).count() as u64;
    assert_eq!(twice, stats.duplicated);
}

#[test]
fn rate_limited_link_delivers_at_the_rate_and_drops_tail() {
    // 1200-byte datagrams every 5 ms (1.92 Mbit/s) into 1 Mbit/s behind a
    // 30,000-byte queue, for 60 s.
    let n = 12_000;
    let interval = ms(5);
    let rate = 1_000_000;
    let (mut sim, sink, link) = one_way(
        14,
        n,
        interval,
        1200,
        LinkConfig::ideal(ms(50)).with_rate(rate, 30_000),
    );
    run_all(&mut sim, n, interval);
    let log = arrivals(&sim, sink);
    let stats = sim.link_stats(link);
    let first = log.first().unwrap().time;
    let last = log.last().unwrap().time;
    let bits = (log.len() as f64 - 1.0) * 1200.0 * 8.0;
    let throughput = bits / (last - first).as_secs_f64();
    assert!(
        (throughput - rate as f64).abs() < 0.02 * rate as f64,
        "{throughput}"
    );
    // About 1 - 1/1.92 = 48 % dropped by the queue, none by loss.
    let dropped = stats.dropped_by_queue as f64 / n as f64;
    assert!((dropped - 0.479).abs() < 0.02, "{dropped}");
    assert_eq!(stats.dropped_by_loss, 0);
    assert_eq!(stats.delivered_packets + stats.dropped_by_queue, n);
    assert!(stats.peak_queue_bytes <= 30_000);
    // A full 30,000-byte queue drains in 240 ms: the standing queue.
    let p50 = stats.queueing_delay_percentile(0.5);
    let p99 = stats.queueing_delay_percentile(0.99);
    assert!(p50 > ms(200) && p50 <= ms(241), "{p50:?}");
    assert!(p99 > ms(200) && p99 <= ms(241), "{p99:?}");
    assert!(stats.max_queueing_delay() <= ms(241));
    // Arrival spacing is the serialisation time, 9.6 ms, once queued.
    let gap = log[200].time - log[199].time;
    assert_eq!(gap, Duration::from_micros(9_600));
}

#[test]
fn rate_limited_link_below_its_rate_neither_drops_nor_queues() {
    // 1200 bytes every 12 ms = 0.8 Mbit/s into 1 Mbit/s.
    let n = 5_000;
    let (mut sim, sink, link) = one_way(
        15,
        n,
        ms(12),
        1200,
        LinkConfig::ideal(ms(50)).with_rate(1_000_000, 5_000),
    );
    run_all(&mut sim, n, ms(12));
    let stats = sim.link_stats(link);
    assert_eq!(stats.dropped_by_queue, 0);
    assert_eq!(stats.queueing_delay_percentile(1.0), Duration::ZERO);
    let log = arrivals(&sim, sink);
    assert_eq!(log.len() as u64, n);
    // Delay + serialisation (9.6 ms).
    assert_eq!(
        log[0].time,
        Timestamp::from_duration(Duration::from_micros(59_600))
    );
}

#[test]
fn lost_packets_still_use_the_link() {
    // Two back-to-back 1250-byte packets at 10 Mbit/s: 1 ms each. With
    // everything lost the queue still fills.
    let (mut sim, _, link) = one_way(
        16,
        100,
        Duration::ZERO,
        1250,
        LinkConfig::ideal(ms(1))
            .with_random_loss(1.0)
            .with_rate(10_000_000, 10 * 1250),
    );
    run_all(&mut sim, 1, Duration::ZERO);
    let stats = sim.link_stats(link);
    // One in service plus ten waiting; the rest dropped by the queue.
    assert_eq!(stats.dropped_by_queue, 89);
    assert_eq!(stats.dropped_by_loss, 11);
    assert_eq!(stats.max_queueing_delay(), ms(10));
}

#[test]
fn transmit_filter_drops_exactly_the_chosen_index() {
    let (mut sim, sink, link) = one_way(17, 20, ms(1), 50, LinkConfig::ideal(ms(3)));
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let record = seen.clone();
    sim.set_transmit_filter(move |t: &Transmit| {
        record
            .borrow_mut()
            .push((t.index, t.time, t.from, t.to, t.datagram.len()));
        if t.index == 5 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    });
    run_all(&mut sim, 20, ms(1));
    let got: Vec<u64> = arrivals(&sim, sink)
        .iter()
        .map(|a| a.seq.unwrap())
        .collect();
    let expected: Vec<u64> = (0..20).filter(|&i| i != 5).collect();
    assert_eq!(got, expected);
    assert_eq!(sim.filtered_drops(), 1);
    assert_eq!(sim.transmitted(), 20);
    assert_eq!(sim.link_stats(link).offered_packets, 19);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 20);
    for (i, &(index, time, from, to, len)) in seen.iter().enumerate() {
        assert_eq!(index, i as u64);
        assert_eq!(time, Timestamp::from_duration(ms(i as u64)));
        assert_eq!((from, to, len), (addr(1), addr(2), 50));
    }
}

#[test]
fn inject_delivers_at_the_given_time() {
    let mut sim = Simulation::new(18);
    let sink = sim.add_node(addr(2), Sink::default());
    let at = Timestamp::from_nanos(1_234_567_891);
    sim.inject(at, addr(9), sink, vec![7; 30]);
    sim.run_until(at.saturating_sub(Duration::from_nanos(1)));
    assert!(sim.node::<Sink>(sink).arrivals().is_empty());
    sim.run_until(secs(2));
    let log = arrivals(&sim, sink);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].time, at);
    assert_eq!(log[0].from, addr(9));
    assert_eq!(log[0].len, 30);
    assert_eq!(sim.now(), secs(2));
    // In the past: delivered now.
    sim.inject(secs(1), addr(9), sink, vec![1; 8]);
    sim.run_until(secs(3));
    assert_eq!(arrivals(&sim, sink)[1].time, secs(2));
}

#[test]
fn shared_link_shares_the_queue() {
    // Two pingers, each 0.8 Mbit/s, to two sinks over one 1 Mbit/s link.
    let build = |shared: bool| {
        let mut sim = Simulation::new(19);
        let p1 = sim.add_node(addr(1), Pinger::new(addr(3), 2_000, ms(12), 1200));
        let p2 = sim.add_node(
            addr(2),
            Pinger::new(addr(4), 2_000, ms(12), 1200).starting_at(Timestamp::from_nanos(5_300_000)),
        );
        let s1 = sim.add_node(addr(3), Sink::default());
        let s2 = sim.add_node(addr(4), Sink::default());
        let config = LinkConfig::ideal(ms(10)).with_rate(1_000_000, 12_000);
        let l1 = sim.add_link(config.clone());
        let l2 = if shared { l1 } else { sim.add_link(config) };
        sim.route(p1, s1, l1);
        sim.route(p2, s2, l2);
        sim.run_until(secs(40));
        (sim, s1, s2, l1, l2)
    };
    let (sim, s1, s2, l1, _) = build(true);
    let stats = sim.link_stats(l1);
    assert_eq!(stats.offered_packets, 4_000);
    let d1 = arrivals(&sim, s1).len() as u64;
    let d2 = arrivals(&sim, s2).len() as u64;
    assert_eq!(d1 + d2, stats.delivered_packets);
    // 1.6 Mbit/s offered to 1 Mbit/s: about 37 % dropped, from both flows.
    assert!(d1 < 1_700 && d2 < 1_700, "{d1} {d2}");
    let dropped = stats.dropped_by_queue as f64 / 4_000.0;
    assert!((dropped - 0.375).abs() < 0.03, "{dropped}");
    assert!(stats.queueing_delay_percentile(0.5) > ms(50));

    let (sim, s1, s2, l1, l2) = build(false);
    assert_eq!(arrivals(&sim, s1).len(), 2_000);
    assert_eq!(arrivals(&sim, s2).len(), 2_000);
    assert_eq!(sim.link_stats(l1).dropped_by_queue, 0);
    assert_eq!(sim.link_stats(l2).dropped_by_queue, 0);
}

#[test]
fn unrouted_datagrams_are_counted() {
    let mut sim = Simulation::new(20);
    // To an address nobody has.
    sim.add_node(addr(1), Pinger::new(addr(7), 3, ms(1), 10));
    // To a node with no route.
    sim.add_node(addr(2), Pinger::new(addr(3), 4, ms(1), 10));
    let sink = sim.add_node(addr(3), Sink::default());
    sim.run_until(secs(1));
    assert_eq!(sim.unrouted_drops(), 7);
    assert!(arrivals(&sim, sink).is_empty());
}

#[test]
fn run_while_reports_why_it_stopped() {
    let (mut sim, sink, _) = one_way(21, 100, ms(10), 10, LinkConfig::ideal(ms(5)));
    let stopped = sim.run_while(secs(10), |s| s.node::<Sink>(sink).arrivals().len() < 3);
    assert!(stopped);
    assert_eq!(arrivals(&sim, sink).len(), 3);
    // The third arrives at 20 ms + 5 ms.
    assert_eq!(sim.now(), Timestamp::from_duration(ms(25)));
    let stopped = sim.run_while(Timestamp::from_duration(ms(40)), |_| true);
    assert!(!stopped);
    assert_eq!(sim.now(), Timestamp::from_duration(ms(40)));
    assert_eq!(arrivals(&sim, sink).len(), 4);
    // Already false: stops before any event.
    assert!(sim.run_while(secs(10), |_| false));
    assert_eq!(sim.now(), Timestamp::from_duration(ms(40)));
}

#[test]
fn node_mut_changes_take_effect_on_the_next_run() {
    /// Sends one datagram whenever told to.
    struct Manual {
        to: SocketAddr,
        queued: Vec<Vec<u8>>,
    }
    impl Node for Manual {
        fn handle_datagram(&mut self, _: Timestamp, _: SocketAddr, _: &[u8]) {}
        fn poll_transmit(&mut self, _: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
            self.queued.pop().map(|d| (self.to, d))
        }
        fn poll_timeout(&self) -> Option<Timestamp> {
            None
        }
        fn handle_timeout(&mut self, _: Timestamp) {}
    }
    let mut sim = Simulation::new(22);
    let m = sim.add_node(
        addr(1),
        Manual {
            to: addr(2),
            queued: Vec::new(),
        },
    );
    let sink = sim.add_node(addr(2), Sink::default());
    sim.connect(
        m,
        sink,
        LinkConfig::ideal(ms(10)),
        LinkConfig::ideal(ms(10)),
    );
    sim.run_until(secs(1));
    sim.node_mut::<Manual>(m).queued.push(vec![0; 8]);
    sim.run_until(secs(2));
    let log = arrivals(&sim, sink);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].time, secs(1) + ms(10));
}

#[test]
#[should_panic(expected = "is a tgp_sim::nodes::Sink, not a tgp_sim::nodes::Pinger")]
fn wrong_node_type_panics_clearly() {
    let mut sim = Simulation::new(23);
    let sink = sim.add_node(addr(2), Sink::default());
    sim.node::<Pinger>(sink);
}

/// A buggy node whose timeout is always in the past.
struct Spinner;

impl Node for Spinner {
    fn handle_datagram(&mut self, _: Timestamp, _: SocketAddr, _: &[u8]) {}
    fn poll_transmit(&mut self, _: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        None
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        Some(Timestamp::ZERO)
    }
    fn handle_timeout(&mut self, _: Timestamp) {}
}

#[test]
#[should_panic(expected = "Simulation stuck")]
fn a_node_with_a_timeout_in_the_past_cannot_spin_forever() {
    let mut sim = Simulation::new(24);
    sim.add_node(addr(1), Spinner);
    sim.run_until(secs(1));
}

#[test]
fn timeouts_fire_at_their_time_not_before() {
    /// Records when its timeouts fire; wants one every 3 ms up to 5.
    #[derive(Default)]
    struct Ticker {
        fired: Vec<Timestamp>,
    }
    impl Node for Ticker {
        fn handle_datagram(&mut self, _: Timestamp, _: SocketAddr, _: &[u8]) {}
        fn poll_transmit(&mut self, _: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
            None
        }
        fn poll_timeout(&self) -> Option<Timestamp> {
            (self.fired.len() < 5)
                .then(|| Timestamp::from_duration(ms(3 * (self.fired.len() as u64 + 1))))
        }
        fn handle_timeout(&mut self, now: Timestamp) {
            self.fired.push(now);
        }
    }
    let mut sim = Simulation::new(25);
    let t = sim.add_node(addr(1), Ticker::default());
    sim.run_until(secs(1));
    let fired = &sim.node::<Ticker>(t).fired;
    let expected: Vec<Timestamp> = (1..=5)
        .map(|i| Timestamp::from_duration(ms(3 * i)))
        .collect();
    assert_eq!(fired, &expected);
}

/// A client that sends a request and retransmits it every 200 ms until the
/// server echoes it: a stand-in for a handshake, for the cost test below.
struct Retrier {
    server: SocketAddr,
    next: Option<Timestamp>,
    due: bool,
    done: bool,
}

impl Node for Retrier {
    fn handle_datagram(&mut self, _: Timestamp, _: SocketAddr, _: &[u8]) {
        self.done = true;
        self.next = None;
    }
    fn poll_transmit(&mut self, _: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.due).then(|| (self.server, vec![1; 120]))
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.next
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        if !self.done {
            self.due = true;
            self.next = Some(now + ms(200));
        }
    }
}

/// Echoes every datagram back to its sender.
#[derive(Default)]
struct Echo {
    queued: Vec<(SocketAddr, Vec<u8>)>,
}

impl Node for Echo {
    fn handle_datagram(&mut self, _: Timestamp, from: SocketAddr, datagram: &[u8]) {
        self.queued.push((from, datagram.to_vec()));
    }
    fn poll_transmit(&mut self, _: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        self.queued.pop()
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }
    fn handle_timeout(&mut self, _: Timestamp) {}
}

#[test]
fn retrying_exchanges_complete_at_any_loss_below_one() {
    let mut completed = 0;
    for seed in 0..200u64 {
        let loss = (seed % 50) as f64 / 50.0 * 0.98;
        let mut sim = Simulation::new(seed);
        let client = sim.add_node(
            addr(1),
            Retrier {
                server: addr(2),
                next: Some(Timestamp::ZERO),
                due: false,
                done: false,
            },
        );
        let server = sim.add_node(addr(2), Echo::default());
        let link = LinkConfig::ideal(ms(25)).with_random_loss(loss);
        sim.connect(client, server, link.clone(), link);
        let stopped = sim.run_while(secs(3_600), |s| !s.node::<Retrier>(client).done);
        completed += u32::from(stopped);
    }
    assert_eq!(completed, 200);
}

/// Cost of the simulator itself; run with
/// `cargo test --release -p tgp-proto --test sim cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn cost_of_many_small_runs_and_one_big_one() {
    let start = std::time::Instant::now();
    let mut events = 0;
    for seed in 0..10_500u64 {
        let loss = (seed % 50) as f64 / 50.0 * 0.98;
        let mut sim = Simulation::new(seed);
        let client = sim.add_node(
            addr(1),
            Retrier {
                server: addr(2),
                next: Some(Timestamp::ZERO),
                due: false,
                done: false,
            },
        );
        let server = sim.add_node(addr(2), Echo::default());
        let link = LinkConfig::ideal(ms(25)).with_random_loss(loss);
        sim.connect(client, server, link.clone(), link);
        assert!(sim.run_while(secs(3_600), |s| !s.node::<Retrier>(client).done));
        events += sim.transmitted();
    }
    eprintln!(
        "10,500 retrying exchanges: {:?} ({events} datagrams)",
        start.elapsed()
    );

    // 1,000,000 datagrams of 1250 bytes (1.25 GB) at 20 Mbit/s with loss,
    // jitter and a queue.
    let start = std::time::Instant::now();
    let n = 1_000_000;
    let (mut sim, sink, link) = one_way(
        1,
        n,
        Duration::from_micros(450),
        1250,
        LinkConfig::ideal(ms(50))
            .with_random_loss(0.01)
            .with_jitter(ms(2))
            .with_rate(20_000_000, 250_000),
    );
    run_all(&mut sim, n, Duration::from_micros(450));
    eprintln!(
        "1,000,000 datagrams over a 20 Mbit/s link: {:?} ({} delivered, p99 queueing {:?})",
        start.elapsed(),
        sim.node::<Sink>(sink).arrivals().len(),
        sim.link_stats(link).queueing_delay_percentile(0.99)
    );
}

/// Moves its timer on every datagram, earlier or later, and checks that
/// the simulator never lets a deadline pass unnoticed nor fires early.
#[derive(Default)]
struct Fickle {
    deadline: Option<Timestamp>,
    received: u64,
    fired: u64,
}

impl Node for Fickle {
    fn handle_datagram(&mut self, now: Timestamp, _: SocketAddr, datagram: &[u8]) {
        if let Some(d) = self.deadline {
            assert!(d >= now, "deadline {d} passed unnoticed (now {now})");
        }
        let seq = u64::from_le_bytes(datagram[..8].try_into().unwrap());
        self.received += 1;
        // Pseudo-random moves between 0 and 49 ms ahead; every tenth
        // datagram an idle-style timer far ahead.
        self.deadline = Some(if seq % 10 == 0 {
            now + Duration::from_secs(30)
        } else {
            now + ms(seq * 7_919 % 50)
        });
    }
    fn poll_transmit(&mut self, _: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        None
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadline
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        let d = self.deadline.expect("handle_timeout without a timeout");
        assert_eq!(now, d, "timeout fired at the wrong time");
        self.deadline = None;
        self.fired += 1;
    }
}

#[test]
fn moving_timers_fire_exactly_on_time_and_do_not_pile_up() {
    let n = 50_000;
    let mut sim = Simulation::new(26);
    let pinger = sim.add_node(addr(1), Pinger::new(addr(2), n, ms(2), 16));
    let fickle = sim.add_node(addr(2), Fickle::default());
    sim.connect(
        pinger,
        fickle,
        LinkConfig::ideal(ms(10))
            .with_jitter(ms(30))
            .with_reorder(0.1, ms(40)),
        LinkConfig::ideal(ms(10)),
    );
    let mut peak = 0;
    let end = Timestamp::from_duration(ms(2 * n)) + Duration::from_secs(60);
    sim.run_while(end, |s| {
        peak = peak.max(s.pending_events());
        true
    });
    let node = sim.node::<Fickle>(fickle);
    assert_eq!(node.received, n);
    assert!(node.fired > 1_000, "{}", node.fired);
    assert_eq!(node.deadline, None);
    // In flight: ~40 ms / 2 ms datagrams plus a few timers, not one stale
    // timer per datagram.
    assert!(peak < 200, "{peak}");
}

#[test]
fn simultaneous_events_keep_their_scheduling_order() {
    let mut sim = Simulation::new(27);
    let sink = sim.add_node(addr(2), Sink::default());
    let at = secs(1);
    for i in 0..100u64 {
        sim.inject(at, addr(9), sink, i.to_le_bytes().to_vec());
    }
    sim.run_until(secs(2));
    let seqs: Vec<u64> = arrivals(&sim, sink)
        .iter()
        .map(|a| a.seq.unwrap())
        .collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    assert!(arrivals(&sim, sink).iter().all(|a| a.time == at));
}

#[test]
fn rebinding_changes_the_source_address_and_unroutes_the_old_one() {
    let mut sim = Simulation::new(28);
    let pinger = sim.add_node(addr(1), Pinger::new(addr(2), 10, ms(100), 16));
    let sink = sim.add_node(addr(2), Sink::default());
    let back = sim.add_node(addr(3), Pinger::new(addr(1), 10, ms(100), 16));
    sim.connect(
        pinger,
        sink,
        LinkConfig::ideal(ms(10)),
        LinkConfig::ideal(ms(10)),
    );
    sim.connect(
        back,
        pinger,
        LinkConfig::ideal(ms(10)),
        LinkConfig::ideal(ms(10)),
    );
    sim.run_until(Timestamp::from_duration(ms(450)));
    sim.rebind(pinger, addr(5));
    assert_eq!(sim.address(pinger), addr(5));
    assert_eq!(sim.node_id(addr(5)), Some(pinger));
    assert_eq!(sim.node_id(addr(1)), None);
    sim.run_until(secs(2));
    let from: Vec<SocketAddr> = arrivals(&sim, sink).iter().map(|a| a.from).collect();
    assert_eq!(from[..5], [addr(1); 5]);
    assert_eq!(from[5..], [addr(5); 5]);
    // `back` keeps sending to the old address: unrouted from 500 ms on.
    assert_eq!(sim.unrouted_drops(), 5);
}

#[test]
#[should_panic(expected = "more than 1000 steps")]
fn a_node_that_never_stops_transmitting_hits_the_step_limit() {
    /// Always has another datagram.
    struct Babbler;
    impl Node for Babbler {
        fn handle_datagram(&mut self, _: Timestamp, _: SocketAddr, _: &[u8]) {}
        fn poll_transmit(&mut self, _: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
            Some((addr(9), vec![0]))
        }
        fn poll_timeout(&self) -> Option<Timestamp> {
            None
        }
        fn handle_timeout(&mut self, _: Timestamp) {}
    }
    let mut sim = Simulation::new(29);
    sim.set_max_steps_per_instant(1_000);
    sim.add_node(addr(1), Babbler);
    sim.run_until(secs(1));
}

#[test]
fn wake_lateness_rounds_timers_up_to_the_tick_and_delays_some_further() {
    use tgp_sim::WakeLateness;
    // A pinger due every 2.5 ms: with 1 ms ticks each send leaves at the
    // next whole millisecond, never before it was due; with a busy host
    // some leave later still, within the bound.
    let interval = Duration::from_micros(2_500);
    let run = |lateness: WakeLateness| {
        let mut sim = Simulation::new(7);
        let pinger = sim.add_node(addr(1), Pinger::new(addr(2), 400, interval, 64));
        let sink = sim.add_node(addr(2), Sink::default());
        sim.connect(
            pinger,
            sink,
            LinkConfig::ideal(ms(10)),
            LinkConfig::ideal(ms(10)),
        );
        sim.set_wake_lateness(pinger, lateness);
        run_all(&mut sim, 400, interval);
        let got = arrivals(&sim, sink);
        assert_eq!(got.len(), 400);
        got.iter()
            .map(|a| {
                let seq = a.seq.expect("numbered");
                let due = Duration::from_micros(2_500 * seq) + ms(10);
                a.time.saturating_duration_since(Timestamp::ZERO + due)
            })
            .collect::<Vec<_>>()
    };
    let ticks = run(WakeLateness {
        tick: ms(1),
        busy_probability: 0.0,
        busy_max: Duration::ZERO,
    });
    assert!(ticks.iter().all(|&late| late < ms(1)));
    assert!(ticks.iter().any(|&late| late >= Duration::from_micros(400)));
    let busy = run(WakeLateness::busy_host());
    assert!(busy.iter().all(|&late| late <= ms(6)));
    let delayed = busy.iter().filter(|&&late| late >= ms(1)).count();
    assert!(
        (20..200).contains(&delayed),
        "{delayed} of 400 delayed beyond the tick"
    );
}
