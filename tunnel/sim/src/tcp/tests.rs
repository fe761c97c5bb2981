//! Behaviour of the TCP model: a sender and a receiver joined by a tiny
//! deterministic path (one-way delay, optional serialisation rate with an
//! unbounded queue, and a per-segment fate chosen by the test for data;
//! ACKs always arrive).

use super::segment::Segment;
use super::{CaState, ExitReason, Receiver, Sender, TcpConfig, TraceEvent};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tgp_proto::Timestamp;

const MSS: u32 = 1448;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Delay(Duration),
}

/// `fate(segment index, transmission number of that segment, send time)`.
type FateFn = Box<dyn FnMut(u64, usize, Timestamp) -> Fate>;

struct Harness {
    sender: Sender,
    receiver: Receiver,
    now: Timestamp,
    one_way: Duration,
    rate_bits_per_second: Option<u64>,
    link_free: Timestamp,
    /// (arrival, order) → (to the receiver, segment).
    wire: BTreeMap<(Timestamp, u64), (bool, Segment)>,
    order: u64,
    fate: FateFn,
    transmissions: HashMap<u64, usize>,
    max_in_flight_bytes: u64,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn at_ms(n: u64) -> Timestamp {
    Timestamp::from_duration(ms(n))
}

impl Harness {
    fn new(config: TcpConfig, total: Option<u64>, one_way: Duration) -> Self {
        let config = config.with_handshake_rtt(one_way * 2);
        Harness {
            sender: Sender::new(config.clone(), Timestamp::ZERO, total),
            receiver: Receiver::new(config),
            now: Timestamp::ZERO,
            one_way,
            rate_bits_per_second: None,
            link_free: Timestamp::ZERO,
            wire: BTreeMap::new(),
            order: 0,
            fate: Box::new(|_, _, _| Fate::Deliver),
            transmissions: HashMap::new(),
            max_in_flight_bytes: 0,
        }
    }

    fn with_rate(mut self, bits_per_second: u64) -> Self {
        self.rate_bits_per_second = Some(bits_per_second);
        self
    }

    fn with_fate(mut self, fate: impl FnMut(u64, usize, Timestamp) -> Fate + 'static) -> Self {
        self.fate = Box::new(fate);
        self
    }

    fn put(&mut self, at: Timestamp, to_receiver: bool, segment: Segment) {
        self.order += 1;
        self.wire.insert((at, self.order), (to_receiver, segment));
    }

    fn drain(&mut self) {
        while let Some(seg) = self.sender.poll_segment(self.now) {
            let index = seg.seq / u64::from(MSS);
            let count = self.transmissions.entry(seg.seq).or_insert(0);
            let nth = *count;
            *count += 1;
            let fate = (self.fate)(index, nth, self.now);
            let departs = match self.rate_bits_per_second {
                Some(rate) => {
                    let start = self.link_free.max(self.now);
                    let bits = seg.wire_len() as u64 * 8;
                    let done = start + Duration::from_nanos(bits * 1_000_000_000 / rate);
                    self.link_free = done;
                    done
                }
                None => self.now,
            };
            let arrives = departs + self.one_way;
            match fate {
                Fate::Drop => {}
                Fate::Deliver => self.put(arrives, true, seg),
                Fate::Delay(d) => self.put(arrives + d, true, seg),
            }
        }
        let in_flight = (self.sender.in_flight() as u64) * u64::from(MSS);
        self.max_in_flight_bytes = self.max_in_flight_bytes.max(in_flight);
        while let Some(ack) = self.receiver.poll_segment(self.now) {
            let at = self.now + self.one_way;
            self.put(at, false, ack);
        }
    }

    fn run_until(&mut self, end: Timestamp) {
        for _ in 0..5_000_000 {
            self.drain();
            let next = [
                self.wire.keys().next().map(|k| k.0),
                self.sender.poll_timeout(),
                self.receiver.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = self.now.max(end);
                return;
            };
            self.now = self.now.max(next);
            if let Some((&key, _)) = self.wire.iter().next().filter(|(k, _)| k.0 <= self.now) {
                let (to_receiver, seg) = self.wire.remove(&key).expect("present");
                if to_receiver {
                    self.receiver.handle_segment(self.now, &seg);
                } else {
                    self.sender.handle_segment(self.now, &seg);
                }
            } else {
                self.sender.handle_timeout(self.now);
                self.receiver.handle_timeout(self.now);
            }
        }
        panic!("harness did not reach {end}");
    }
}

#[test]
fn slow_start_doubles_cwnd_every_round_trip() {
    let mut h = Harness::new(TcpConfig::default().with_mss(MSS), None, ms(50));
    assert_eq!(h.sender.cwnd(), 10);
    for round in 1..=5u32 {
        // Mid-way between the ACKs of round `round` and the next.
        h.run_until(at_ms(u64::from(round) * 100 + 50));
        let expected = 10 << round;
        let cwnd = h.sender.cwnd();
        assert!(
            cwnd.abs_diff(expected) <= 2,
            "round {round}: cwnd {cwnd}, expected {expected}"
        );
    }
    assert_eq!(h.sender.stats().slow_start_exit, None);
    assert_eq!(h.sender.stats().retransmits, 0);
}

/// RTT 100 ms, then +40 ms from 250 ms on (before cwnd reaches 80): the
/// round's minimum RTT exceeds 100 + 12.5 ms and HyStart leaves slow start
/// with cwnd near 160; no loss needed.
#[test]
fn hystart_leaves_slow_start_on_a_delay_step() {
    let step = |_, _, sent: Timestamp| {
        if sent >= at_ms(250) {
            Fate::Delay(ms(40))
        } else {
            Fate::Deliver
        }
    };
    let mut h = Harness::new(TcpConfig::default().with_mss(MSS), None, ms(50)).with_fate(step);
    h.run_until(at_ms(700));
    let (_, cwnd, reason) = h.sender.stats().slow_start_exit.expect("slow start ended");
    assert_eq!(reason, ExitReason::HystartDelay);
    assert!((80..=240).contains(&cwnd), "exit at cwnd {cwnd}");
    assert_eq!(h.sender.ssthresh(), cwnd);
    // Then CUBIC without a previous maximum: about 5 % per RTT (seven
    // 140 ms round trips: at most 1.05^7 ≈ 1.4×, far from doubling).
    h.run_until(at_ms(1700));
    let later = h.sender.cwnd();
    assert!(
        later > cwnd && later * 10 < cwnd * 16,
        "exit at {cwnd}, then {later}"
    );
    assert_eq!(h.sender.stats().retransmits, 0);

    // Without HyStart the same path keeps doubling.
    let config = TcpConfig::default().with_mss(MSS).with_hystart(false);
    let mut h = Harness::new(config, None, ms(50)).with_fate(step);
    h.run_until(at_ms(800));
    assert_eq!(h.sender.stats().slow_start_exit, None);
    assert!(h.sender.cwnd() > 500, "cwnd {}", h.sender.cwnd());
}

#[test]
fn one_loss_gives_one_fast_retransmit_and_a_beta_cut() {
    let total = 3000 * u64::from(MSS);
    let drop_one = |index, nth, _| {
        if index == 300 && nth == 0 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    };
    let mut h = Harness::new(TcpConfig::default().with_mss(MSS), Some(total), ms(50))
        .with_rate(20_000_000)
        .with_fate(drop_one);
    h.run_until(at_ms(10_000));
    assert!(h.sender.is_done());
    assert_eq!(h.receiver.bytes_delivered(), total);
    let stats = h.sender.stats();
    assert_eq!(stats.retransmits, 1, "{stats:?}");
    assert_eq!(stats.fast_recoveries, 1, "{stats:?}");
    assert_eq!(stats.timeouts, 0, "{stats:?}");
    let cut = h
        .sender
        .events()
        .iter()
        .find_map(|e| match e {
            TraceEvent::Recovery { cwnd, ssthresh, .. } => Some((*cwnd, *ssthresh)),
            _ => None,
        })
        .expect("a recovery");
    assert_eq!(cut.1, cut.0 * 717 / 1024, "β cut {cut:?}");
}

#[test]
fn a_lost_tail_is_repaired_by_a_loss_probe() {
    let total = 100 * u64::from(MSS);
    let drop_last_once = |index, nth, _| {
        if index == 99 && nth == 0 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    };
    let mut h = Harness::new(TcpConfig::default().with_mss(MSS), Some(total), ms(50))
        .with_fate(drop_last_once);
    h.run_until(at_ms(5_000));
    assert!(h.sender.is_done());
    let stats = h.sender.stats();
    assert_eq!(
        (stats.loss_probes, stats.timeouts, stats.retransmits),
        (1, 0, 1),
        "{stats:?}"
    );
}

#[test]
fn a_tail_lost_twice_needs_a_retransmission_timeout() {
    let total = 100 * u64::from(MSS);
    let drop_last_twice = |index, nth, _| {
        if index == 99 && nth < 2 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    };
    let mut h = Harness::new(TcpConfig::default().with_mss(MSS), Some(total), ms(50))
        .with_fate(drop_last_twice);
    h.run_until(at_ms(5_000));
    assert!(h.sender.is_done());
    assert_eq!(h.receiver.bytes_delivered(), total);
    let stats = h.sender.stats();
    assert_eq!((stats.loss_probes, stats.timeouts), (1, 1), "{stats:?}");
    let (probe_at, timeout_at) = {
        let events = h.sender.events();
        let probe = events.iter().find_map(|e| match e {
            TraceEvent::LossProbe { at, .. } => Some(*at),
            _ => None,
        });
        let timeout = events.iter().find_map(|e| match e {
            TraceEvent::Timeout { at, .. } => Some(*at),
            _ => None,
        });
        (probe.expect("a probe"), timeout.expect("a timeout"))
    };
    // The RTO follows the probe by about SRTT + 200 ms.
    let gap = timeout_at - probe_at;
    assert!(
        gap >= ms(250) && gap <= ms(400),
        "RTO {gap:?} after the probe"
    );
    // After the timeout cwnd restarted from 1 (in flight + 1).
    assert!(h.sender.events().iter().any(|e| matches!(
        e,
        TraceEvent::SlowStartExit {
            reason: ExitReason::Timeout,
            ..
        }
    )));
}

/// The first reordering looks like a loss (RACK's window is 0 until
/// reordering is seen): one spurious retransmission, undone. After that
/// the window is min_rtt/4 (25 ms): later 10 ms reorderings cost nothing.
#[test]
fn reordering_within_the_rack_window_is_not_a_loss_once_seen() {
    let late = [400u64, 4000, 6000, 8000];
    let reorder = move |index, nth, _| {
        if nth == 0 && late.contains(&index) {
            Fate::Delay(ms(10))
        } else {
            Fate::Deliver
        }
    };
    let config = TcpConfig {
        receive_window: 200 * MSS,
        ..TcpConfig::default().with_mss(MSS)
    };
    let mut h = Harness::new(config, None, ms(50))
        .with_rate(20_000_000)
        .with_fate(reorder);
    h.run_until(at_ms(6_000));
    let stats = h.sender.stats().clone();
    eprintln!("{stats:?}\n{:?}", h.sender.events());
    assert!(
        h.transmissions.contains_key(&(8000 * u64::from(MSS))),
        "the transfer did not reach the last reordering"
    );
    assert!(stats.retransmits <= 1, "{stats:?}");
    assert!(stats.fast_recoveries <= 1, "{stats:?}");
    assert!(h.sender.reordering_seen(), "reordering not detected");
    assert_eq!(stats.timeouts, 0);
    // The cut of the spurious recovery was undone.
    if stats.fast_recoveries == 1 {
        assert_eq!(stats.undos, 1, "{stats:?}");
    }
    assert_ne!(h.sender.state(), CaState::Recovery);
}

#[test]
fn the_receive_window_bounds_what_is_in_flight() {
    let config = TcpConfig {
        receive_window: 20 * MSS,
        ..TcpConfig::default().with_mss(MSS)
    };
    let mut h = Harness::new(config, None, ms(50));
    h.run_until(at_ms(2_000));
    assert!(h.max_in_flight_bytes <= u64::from(20 * MSS));
    // Window-limited: about 20 segments per 100 ms.
    let delivered = h.receiver.bytes_delivered() / u64::from(MSS);
    assert!((300..=420).contains(&delivered), "{delivered} segments");
}

mod receiver {
    use super::*;
    use crate::tcp::SackBlock;

    fn data(index: u64) -> Segment {
        Segment {
            seq: index * u64::from(MSS),
            payload_len: MSS,
            ts_val: 7,
            ..Segment::default()
        }
    }

    /// A receiver whose window does not grow (its clamp is the first
    /// window), so only the delayed-ACK rules decide.
    fn receiver() -> Receiver {
        let config = TcpConfig {
            receive_window: 65_535,
            ..TcpConfig::default()
                .with_mss(MSS)
                .with_handshake_rtt(ms(100))
        };
        Receiver::new(config)
    }

    /// Autotuning raises the window clamp after one receiver RTT (100 ms);
    /// every segment that then grows the window is ACKed at once.
    #[test]
    fn every_segment_that_grows_the_window_is_acked_at_once() {
        // The clamp ends 40 segments above 64 kB: 20 segments grow it.
        let config = TcpConfig {
            receive_window: 65_535 + 40 * MSS,
            ..TcpConfig::default()
                .with_mss(MSS)
                .with_handshake_rtt(ms(100))
        };
        let mut r = Receiver::new(config);
        let mut acked = Vec::new();
        for i in 0..100u64 {
            let now = at_ms(2 * i);
            r.handle_segment(now, &data(i));
            if let Some(ack) = r.poll_segment(now) {
                acked.push((i, ack.window));
            }
        }
        let immediate =
            |range: std::ops::Range<u64>| range.clone().all(|i| acked.iter().any(|&(j, _)| j == i));
        // 16 quick ACKs, then one per two segments until 100 ms...
        assert!(immediate(0..16), "{acked:?}");
        assert!(!acked
            .iter()
            .any(|&(i, _)| (16..50).contains(&i) && i % 2 == 0));
        // ...then 20 immediate ones while the window grows, then again one
        // per two.
        assert!(immediate(50..70), "{acked:?}");
        assert!(
            !acked.iter().any(|&(i, _)| i >= 70 && i % 2 == 0),
            "{acked:?}"
        );
        let last = acked.last().expect("acks").1;
        assert_eq!(u64::from(last), 65_535 + 40 * u64::from(MSS));
    }

    #[test]
    fn quick_acks_then_every_second_segment_then_the_timer() {
        let mut r = receiver();
        let mut acks = Vec::new();
        for i in 0..31u64 {
            let now = at_ms(i);
            r.handle_segment(now, &data(i));
            if let Some(ack) = r.poll_segment(now) {
                acks.push((i, ack.ack));
            }
        }
        // 16 quick ACKs, one per segment; then one per two.
        assert_eq!(acks.len(), 16 + 7, "{acks:?}");
        assert!(acks[..16]
            .iter()
            .all(|&(i, ack)| ack == (i + 1) * u64::from(MSS)));
        assert!(acks[16..].windows(2).all(|w| w[1].0 - w[0].0 == 2));
        // The 31st segment waits for the delayed-ACK timer.
        assert_eq!(acks.last().expect("acks").0, 29);
        let due = r.poll_timeout().expect("delayed ACK armed");
        assert_eq!(due, at_ms(30) + ms(40));
        r.handle_timeout(due);
        let ack = r.poll_segment(due).expect("delayed ACK");
        assert_eq!(ack.ack, 31 * u64::from(MSS));
        assert_eq!(r.stats().delayed_acks, 1);
    }

    #[test]
    fn sack_blocks_newest_first_and_dsack_for_duplicates() {
        let mut r = receiver();
        let b = |from: u64, to: u64| SackBlock::new(from * u64::from(MSS), to * u64::from(MSS));
        for (t, i) in [0u64, 1, 3, 4, 6, 8, 10].into_iter().enumerate() {
            let now = at_ms(t as u64);
            r.handle_segment(now, &data(i));
            while r.poll_segment(now).is_some() {}
        }
        r.handle_segment(at_ms(20), &data(12));
        let ack = r
            .poll_segment(at_ms(20))
            .expect("out of order: ACK at once");
        assert_eq!(ack.ack, 2 * u64::from(MSS));
        assert_eq!(ack.sack, vec![b(12, 13), b(10, 11), b(8, 9)]);
        // A duplicate of delivered data: DSACK first.
        r.handle_segment(at_ms(21), &data(1));
        let ack = r.poll_segment(at_ms(21)).expect("duplicate: ACK at once");
        assert_eq!(ack.sack[0], b(1, 2));
        assert_eq!(ack.sack.len(), 3);
        // Filling the first hole moves the edge to the next hole.
        r.handle_segment(at_ms(22), &data(2));
        let ack = r.poll_segment(at_ms(22)).expect("ACK");
        assert_eq!(ack.ack, 5 * u64::from(MSS));
        assert!(ack.sack.iter().all(|s| s.start > ack.ack));
    }
}
