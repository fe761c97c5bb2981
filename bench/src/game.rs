//! `tgp-bench game`: a 60 Hz stream of 100-byte UDP datagrams from NAME-b
//! to NAME-a, raw and through tgp (where the game's port has a 50 ms
//! deadline class). Each datagram carries its sequence number and send time
//! (CLOCK_REALTIME, shared by the namespaces); the receiver notes each
//! sequence number's first arrival.
//!
//! `on_time` = datagrams that arrived within 50 ms of being sent / datagrams
//! sent; latency percentiles are one-way, over the datagrams that arrived.

use crate::compare::{parse_mbit, parse_ms};
use crate::paths::{NetPath, PathSpec};
use crate::procs::{check_interrupt, listening, ns_cmd, wait_until, Proc};
use crate::results::Machine;
use crate::systems::{self, Ctx, System, GAME_PORT};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SIZE: usize = 100;
const ON_TIME_MS: f64 = 50.0;

/// Options of `tgp-bench game`.
#[derive(Args, Debug)]
pub struct GameArgs {
    /// Loss rates in percent (each direction), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,5,10,30")]
    pub loss: Vec<f64>,
    /// Round-trip time.
    #[arg(long, default_value = "50ms")]
    pub rtt: String,
    /// Link rate (also tgp's rate_ceiling).
    #[arg(long, default_value = "20mbit")]
    pub rate: String,
    /// Seconds of stream per system (60 datagrams a second).
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Where the figures go.
    #[command(flatten)]
    pub output: crate::results::OutputArgs,
}

/// One cell.
#[derive(Serialize, Clone, Debug)]
pub struct GameRow {
    /// "udp" (raw) or "tgp".
    pub system: String,
    /// Loss per direction, percent.
    pub loss_pct: f64,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// "ok" or "failed".
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Datagrams sent.
    pub sent: u64,
    /// Distinct datagrams received.
    pub received: u64,
    /// Share received within 50 ms of sending.
    pub on_time: Option<f64>,
    /// One-way latency percentiles over received datagrams, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Maximum, ms.
    pub max_ms: Option<f64>,
}

impl GameRow {
    /// The printed line.
    pub fn line(&self) -> String {
        let f = |x: Option<f64>, d: usize| match x {
            Some(v) if self.status == "ok" => format!("{v:.d$}"),
            _ => "failed".into(),
        };
        let mut s = format!(
            "game system={} loss={} on_time={} p99_ms={} p50_ms={} received={}/{}",
            self.system,
            self.loss_pct,
            f(self.on_time, 3),
            f(self.p99_ms, 1),
            f(self.p50_ms, 1),
            self.received,
            self.sent
        );
        if let Some(r) = &self.reason {
            s.push_str(&format!(" reason={r:?}"));
        }
        s
    }
}

#[derive(Serialize, Deserialize)]
struct RecvReport {
    /// (sequence, one-way ms) of first arrivals.
    arrivals: Vec<(u64, f64)>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn pct(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[idx])
}

fn cell_inner(system: System, path: &NetPath, ctx: &Ctx, secs: u64, rate: &str) -> Result<GameRow> {
    let run = systems::start(system, path, ctx, GAME_PORT, rate)?;
    let me = std::env::current_exe()?.to_string_lossy().into_owned();
    let count = secs * 60;
    let log = ctx.log("game-recv");
    let mut recv = Proc::spawn(
        "game-recv",
        &mut ns_cmd(
            &path.ns_a,
            &me,
            &[
                "game-recv",
                "--port",
                &GAME_PORT.to_string(),
                "--secs",
                &(secs + 3).to_string(),
            ],
        ),
        &log,
    )?;
    if !wait_until(Duration::from_secs(5), || {
        listening(&path.ns_a, GAME_PORT, true)
    }) {
        check_interrupt()?;
        bail!("game-recv not listening after 5 s");
    }
    let mut send = Proc::spawn(
        "game-send",
        &mut ns_cmd(
            &path.ns_b,
            &me,
            &[
                "game-send",
                "--addr",
                &format!("{}:{}", run.host, GAME_PORT),
                "--count",
                &count.to_string(),
            ],
        ),
        &ctx.log("game-send"),
    )?;
    let (st, _) = send.wait(Duration::from_secs(secs + 30))?;
    if !st.success() {
        bail!("game-send exited {st}: {}", send.log_tail(300));
    }
    let (st, _) = recv.wait(Duration::from_secs(30))?;
    if !st.success() {
        bail!("game-recv exited {st}: {}", recv.log_tail(300));
    }
    let text = std::fs::read_to_string(&log)?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("game-recv printed no report"))?;
    let rep: RecvReport = serde_json::from_str(line).context("game-recv report")?;
    let mut lat: Vec<f64> = rep
        .arrivals
        .iter()
        .filter(|(s, _)| *s < count)
        .map(|&(_, ms)| ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let on_time = lat.iter().filter(|&&ms| ms <= ON_TIME_MS).count() as f64 / count as f64;
    Ok(GameRow {
        system: system.name().into(),
        loss_pct: path.spec.loss_pct,
        rtt_ms: path.spec.rtt_ms,
        status: "ok".into(),
        reason: None,
        sent: count,
        received: lat.len() as u64,
        on_time: Some(on_time),
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        max_ms: lat.last().copied(),
    })
}

#[derive(Serialize)]
struct GameFile<'a> {
    scenario: &'static str,
    machine: Machine,
    counting: &'static str,
    rows: &'a [GameRow],
}

/// `tgp-bench game`.
pub fn run(args: &GameArgs) -> Result<()> {
    let machine = Machine::here();
    let rtt_ms = parse_ms(&args.rtt)?;
    let rate_mbit = parse_mbit(&args.rate)?;
    if args.secs == 0 || args.secs > 600 {
        bail!("--secs must be 1..=600");
    }
    let ctx = Ctx::new(args.output.keep_logs)?;
    let mut rows = Vec::new();
    for &loss in &args.loss {
        check_interrupt()?;
        let spec = PathSpec {
            loss_pct: loss,
            rtt_ms,
            rate_mbit: Some(rate_mbit),
        };
        let path = NetPath::up(spec);
        for s in [System::Udp, System::TgpUdp] {
            check_interrupt()?;
            let res = match &path {
                Ok(p) => cell_inner(s, p, &ctx, args.secs, &args.rate),
                Err(e) => Err(anyhow!("path: {e:#}")),
            };
            check_interrupt()?;
            let row = res.unwrap_or_else(|e| GameRow {
                system: s.name().into(),
                loss_pct: loss,
                rtt_ms,
                status: "failed".into(),
                reason: Some(format!("{e:#}")),
                sent: 0,
                received: 0,
                on_time: None,
                p50_ms: None,
                p99_ms: None,
                max_ms: None,
            });
            println!("{}", row.line());
            rows.push(row);
        }
    }
    let file = GameFile {
        scenario: "game",
        machine,
        counting: "60 Hz, 100-byte UDP datagrams NAME-b -> NAME-a; on_time = arrived within 50 ms of sending / sent; percentiles one-way over arrived datagrams; tgp gives the port a 50 ms deadline class",
        rows: &rows,
    };
    if let Some(dir) = args
        .output
        .write(&format!("game-rtt{rtt_ms}"), "game", &file, &rows)?
    {
        eprintln!("results in {}", dir.display());
    }
    Ok(())
}

/// Options of the hidden `game-send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Destination address:port.
    #[arg(long)]
    pub addr: String,
    /// Datagrams to send at 60 Hz.
    #[arg(long)]
    pub count: u64,
}

/// `game-send`: `count` datagrams at 60 Hz on an absolute schedule.
pub fn send(args: &SendArgs) -> Result<()> {
    let addr = args
        .addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("bad --addr"))?;
    let sock = UdpSocket::bind(("0.0.0.0", 0))?;
    let start = Instant::now();
    let mut buf = [0u8; SIZE];
    for seq in 0..args.count.min(60 * 600) {
        let due = start + Duration::from_secs_f64(seq as f64 / 60.0);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        buf[..8].copy_from_slice(&seq.to_be_bytes());
        buf[8..16].copy_from_slice(&now_ns().to_be_bytes());
        // A refused or failed send is a lost datagram, as for a game.
        let _ = sock.send_to(&buf, addr);
    }
    Ok(())
}

/// Options of the hidden `game-recv`.
#[derive(Args, Debug)]
pub struct RecvArgs {
    /// Port to listen on (all addresses).
    #[arg(long)]
    pub port: u16,
    /// Seconds to listen.
    #[arg(long)]
    pub secs: u64,
}

/// `game-recv`: notes first arrivals for `secs`, prints a JSON report.
pub fn recv(args: &RecvArgs) -> Result<()> {
    let sock = UdpSocket::bind(("0.0.0.0", args.port))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let end = Instant::now() + Duration::from_secs(args.secs.min(700));
    let mut first: HashMap<u64, f64> = HashMap::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 16 => {
                let now = now_ns();
                let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                let sent = u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes"));
                let ms = now.saturating_sub(sent) as f64 / 1e6;
                first.entry(seq).or_insert(ms);
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut arrivals: Vec<(u64, f64)> = first.into_iter().collect();
    arrivals.sort_by_key(|a| a.0);
    println!("{}", serde_json::to_string(&RecvReport { arrivals })?);
    Ok(())
}
