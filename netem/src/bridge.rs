//! The layer-2 bridge: two interfaces, one [`Link`] per direction, and four
//! threads.
//!
//! For each direction a receiving thread reads frames from the ingress
//! interface's packet socket and hands them to the direction's [`Link`]
//! (under a mutex); a scheduling thread sleeps on a condition variable until
//! the next delivery is due (nanosecond timeouts, with the timer slack set
//! to 1 µs, so deliveries are timed to tens of microseconds rather than
//! tokio's milliseconds) and sends the due frames out of the egress
//! interface. The model never looks inside a frame, so odd frames cannot
//! make it panic; frames too long for the buffer are counted and dropped.

use crate::model::{DirStats, Link, Verdict};
use crate::spec::{DirSpec, Nanos};
use crate::sys::{self, PacketSocket};
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest frame accepted (offloads must be off, so frames are ≤ MTU + 18).
pub const MAX_FRAME: usize = 65_536;
/// How often blocked threads re-check the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// SCHED_FIFO priority of the sending threads, when the process runs under
/// SCHED_FIFO (`netem/link` starts it with `chrt -f 20`).
const TX_FIFO_PRIORITY: i32 = 30;
/// Most frames sent per lock acquisition.
const BATCH: usize = 64;

/// What to bridge and how to impair it.
#[derive(Clone, Debug)]
pub struct Config {
    /// Interface towards side a.
    pub a: String,
    /// Interface towards side b.
    pub b: String,
    /// Impairments of frames from a to b.
    pub up: DirSpec,
    /// Impairments of frames from b to a.
    pub down: DirSpec,
    /// Seed of the random choices (each direction draws from its own
    /// stream of it).
    pub seed: u64,
}

/// Counters kept by the I/O threads, beside the model's [`DirStats`].
#[derive(Debug, Default)]
struct IoCounters {
    truncated: AtomicU64,
    ignored: AtomicU64,
    rx_errors: AtomicU64,
    tx_errors: AtomicU64,
    kernel_drops: AtomicU64,
    late_sum_ns: AtomicU64,
    late_max_ns: AtomicU64,
    late_over_1ms: AtomicU64,
    sent: AtomicU64,
}

/// A snapshot of one direction's counters.
#[derive(Clone, Debug, Default)]
pub struct DirReport {
    /// "up" (a→b) or "down" (b→a).
    pub name: &'static str,
    /// The model's counters.
    pub model: DirStats,
    /// Frames longer than [`MAX_FRAME`], dropped.
    pub truncated: u64,
    /// Frames ignored (our own transmissions, other interfaces).
    pub ignored: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Frames the kernel refused to send.
    pub tx_errors: u64,
    /// Frames the kernel dropped before we read them (socket buffer full).
    pub kernel_drops: u64,
    /// Frames sent.
    pub sent: u64,
    /// Mean lateness of sends against their due time, in µs.
    pub late_mean_us: f64,
    /// Largest lateness, in µs.
    pub late_max_us: f64,
    /// Frames sent more than 1 ms after their due time.
    pub late_over_1ms: u64,
    /// Frames waiting for delivery.
    pub pending: usize,
}

struct Dir {
    name: &'static str,
    link: Mutex<Link<Vec<u8>>>,
    wake: Condvar,
    io: IoCounters,
}

impl Dir {
    fn lock(&self) -> MutexGuard<'_, Link<Vec<u8>>> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self) -> DirReport {
        let (model, pending) = {
            let l = self.lock();
            (l.stats(), l.pending())
        };
        let sent = self.io.sent.load(Ordering::Relaxed);
        let late_sum = self.io.late_sum_ns.load(Ordering::Relaxed);
        DirReport {
            name: self.name,
            model,
            truncated: self.io.truncated.load(Ordering::Relaxed),
            ignored: self.io.ignored.load(Ordering::Relaxed),
            rx_errors: self.io.rx_errors.load(Ordering::Relaxed),
            tx_errors: self.io.tx_errors.load(Ordering::Relaxed),
            kernel_drops: self.io.kernel_drops.load(Ordering::Relaxed),
            sent,
            late_mean_us: if sent == 0 {
                0.0
            } else {
                late_sum as f64 / sent as f64 / 1000.0
            },
            late_max_us: self.io.late_max_ns.load(Ordering::Relaxed) as f64 / 1000.0,
            late_over_1ms: self.io.late_over_1ms.load(Ordering::Relaxed),
            pending,
        }
    }
}

/// A running bridge.
pub struct Bridge {
    dirs: [Arc<Dir>; 2],
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

fn now_ns(start: Instant) -> Nanos {
    start.elapsed().as_nanos().min(u64::MAX as u128) as Nanos
}

fn rx_loop(
    dir: Arc<Dir>,
    sock: Arc<PacketSocket>,
    start: Instant,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_stats.elapsed() >= Duration::from_secs(1) {
            dir.io
                .kernel_drops
                .fetch_add(sock.take_kernel_drops(), Ordering::Relaxed);
            last_stats = Instant::now();
        }
        let got = match sock.recv(&mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                dir.io.rx_errors.fetch_add(1, Ordering::Relaxed);
                if sys::ifindex(sock.name()).is_err() {
                    eprintln!(
                        "tgp-impair: interface {} is gone ({e}); stopping",
                        sock.name()
                    );
                    failed.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if got.outgoing || got.ifindex != sock.ifindex() {
            dir.io.ignored.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if got.wire_len > got.len {
            dir.io.truncated.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let frame = buf[..got.len].to_vec();
        let verdict = dir.lock().arrive(now_ns(start), frame.len(), frame);
        if verdict == Verdict::Scheduled {
            dir.wake.notify_one();
        }
    }
    dir.io
        .kernel_drops
        .fetch_add(sock.take_kernel_drops(), Ordering::Relaxed);
}

fn tx_loop(dir: Arc<Dir>, sock: Arc<PacketSocket>, start: Instant, stop: Arc<AtomicBool>) {
    // Sending on time matters more than receiving (the kernel buffers
    // received frames); a no-op unless the process runs under SCHED_FIFO.
    sys::raise_fifo_priority(TX_FIFO_PRIORITY);
    let mut batch: Vec<(Nanos, Vec<u8>)> = Vec::with_capacity(BATCH);
    let mut link = dir.lock();
    while !stop.load(Ordering::Relaxed) {
        let now = now_ns(start);
        while batch.len() < BATCH {
            match link.pop_due(now) {
                Some(d) => batch.push(d),
                None => break,
            }
        }
        if !batch.is_empty() {
            drop(link);
            for (due, frame) in batch.drain(..) {
                match sock.send(&frame) {
                    Ok(_) => {
                        let late = now_ns(start).saturating_sub(due);
                        dir.io.sent.fetch_add(1, Ordering::Relaxed);
                        dir.io.late_sum_ns.fetch_add(late, Ordering::Relaxed);
                        dir.io.late_max_ns.fetch_max(late, Ordering::Relaxed);
                        if late > 1_000_000 {
                            dir.io.late_over_1ms.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        dir.io.tx_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            link = dir.lock();
            continue;
        }
        let wait = match link.next_deadline() {
            Some(due) => Duration::from_nanos(due.saturating_sub(now)).min(POLL),
            None => POLL,
        };
        link = dir
            .wake
            .wait_timeout(link, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

impl Bridge {
    /// Opens both interfaces and starts the four threads. Fails (without
    /// starting anything) when an interface cannot be opened.
    pub fn start(cfg: &Config) -> io::Result<Bridge> {
        let sock_a = Arc::new(
            PacketSocket::bind(&cfg.a, POLL)
                .map_err(|e| io::Error::new(e.kind(), format!("interface {}: {e}", cfg.a)))?,
        );
        let sock_b = Arc::new(
            PacketSocket::bind(&cfg.b, POLL)
                .map_err(|e| io::Error::new(e.kind(), format!("interface {}: {e}", cfg.b)))?,
        );
        // Each direction draws from its own stream of the seed.
        let mk = |name, spec: &DirSpec, stream| {
            Arc::new(Dir {
                name,
                link: Mutex::new(Link::new(spec.clone(), cfg.seed, stream)),
                wake: Condvar::new(),
                io: IoCounters::default(),
            })
        };
        let up = mk("up", &cfg.up, 0);
        let down = mk("down", &cfg.down, 1);
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut threads = Vec::new();
        for (dir, rx, tx) in [(&up, &sock_a, &sock_b), (&down, &sock_b, &sock_a)] {
            let (d, s, st, f) = (dir.clone(), rx.clone(), stop.clone(), failed.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("rx-{}", dir.name))
                    .spawn(move || rx_loop(d, s, started, st, f))?,
            );
            let (d, s, st) = (dir.clone(), tx.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tx-{}", dir.name))
                    .spawn(move || tx_loop(d, s, started, st))?,
            );
        }
        Ok(Bridge {
            dirs: [up, down],
            stop,
            failed,
            threads,
            started,
        })
    }

    /// Counters of both directions now.
    pub fn report(&self) -> [DirReport; 2] {
        [self.dirs[0].report(), self.dirs[1].report()]
    }

    /// True once a thread stopped the bridge (an interface disappeared).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// True when the bridge stopped because of an error.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Seconds since the bridge started.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Stops the threads and returns the final counters.
    pub fn shutdown(mut self) -> [DirReport; 2] {
        self.stop.store(true, Ordering::Relaxed);
        for d in &self.dirs {
            d.wake.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.report()
    }
}

/// The counters as a JSON object (hand-written: flat numbers only).
pub fn report_json(reports: &[DirReport; 2], uptime_s: f64, running: bool) -> String {
    let mut s = format!("{{\"uptime_s\":{uptime_s:.3},\"running\":{running}");
    for r in reports {
        let m = &r.model;
        let _ = write!(
            s,
            ",\"{}\":{{\"rx_packets\":{},\"rx_bytes\":{},\"queue_drops\":{},\"lost\":{},\
             \"overflow\":{},\"reordered\":{},\"duplicated\":{},\"delivered\":{},\
             \"delivered_bytes\":{},\"sent\":{},\"tx_errors\":{},\"rx_errors\":{},\
             \"truncated\":{},\"ignored\":{},\"kernel_drops\":{},\"pending\":{},\
             \"late_mean_us\":{:.1},\"late_max_us\":{:.1},\"late_over_1ms\":{}}}",
            r.name,
            m.rx_packets,
            m.rx_bytes,
            m.queue_drops,
            m.lost,
            m.overflow,
            m.reordered,
            m.duplicated,
            m.delivered,
            m.delivered_bytes,
            r.sent,
            r.tx_errors,
            r.rx_errors,
            r.truncated,
            r.ignored,
            r.kernel_drops,
            r.pending,
            r.late_mean_us,
            r.late_max_us,
            r.late_over_1ms
        );
    }
    s.push('}');
    s
}

/// The counters as a short human-readable table.
pub fn report_text(reports: &[DirReport; 2]) -> String {
    let mut s = String::from(
        "dir    rx_pkts  q_drops     lost reordered  dup'd     sent tx_err k_drops  late_mean_us late_max_us >1ms_late\n",
    );
    for r in reports {
        let m = &r.model;
        let _ = writeln!(
            s,
            "{:<5} {:>8} {:>8} {:>8} {:>9} {:>6} {:>8} {:>6} {:>7} {:>13.1} {:>11.1} {:>9}",
            r.name,
            m.rx_packets,
            m.queue_drops,
            m.lost,
            m.reordered,
            m.duplicated,
            r.sent,
            r.tx_errors,
            r.kernel_drops,
            r.late_mean_us,
            r.late_max_us,
            r.late_over_1ms
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_report_has_both_directions() {
        let mut r = [DirReport::default(), DirReport::default()];
        r[0].name = "up";
        r[1].name = "down";
        r[0].model.lost = 3;
        r[1].late_over_1ms = 2;
        let j = report_json(&r, 1.5, true);
        assert!(j.starts_with("{\"uptime_s\":1.500,\"running\":true,\"up\":{"));
        assert!(j.contains("\"lost\":3"));
        assert!(j.contains("\"late_over_1ms\":2}}"));
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        assert_eq!(report_text(&r).lines().count(), 3);
    }
}
