//! `tgp-bench game`: a stream of small UDP datagrams from NAME-b to NAME-a,
//! raw and through tgp (where the stream's port has a deadline class). The
//! `--profile` sets the stream: `game` (the default) is 60 Hz × 100 bytes
//! with a 50 ms deadline, `voice` (an RTP voice call) 50 Hz × 160 bytes
//! with a 150 ms deadline; `--deadline` overrides the profile's. Each
//! datagram carries its sequence number and send time (CLOCK_REALTIME,
//! shared by the namespaces); the receiver notes each sequence number's
//! first arrival.
//!
//! `on_time` = datagrams that arrived within the deadline of being sent /
//! datagrams sent; latency percentiles are one-way, over the datagrams that
//! arrived. `wire_per_goodput` = UDP payload bytes the system put on the
//! underlay during the stream / inner payload bytes delivered: for tgp, the
//! growth of both ends' `bytes_sent` (`tgp status`, both directions: data,
//! repair, receipts, keepalives) from just before the stream to its end;
//! for raw UDP the sender's datagrams (sent / received). For tgp, both
//! ends' `tgp status` is read at the end of the stream and kept in the
//! JSON; its drop counters `late` (arrived after the receiver's deadline
//! clock said it expired) and `expired` (expired in the sender's queue) are
//! printed as `tgp_late` and `tgp_expired`.

use crate::compare::{parse_mbit, parse_ms, print_run};
use crate::paths::{NetPath, PathSpec};
use crate::procs::{check_interrupt, listening, ns_cmd, wait_until, Proc};
use crate::repeat::{self, Figure, Measured, Plan, Scenario, Summary};
use crate::results::{Machine, ResultsFile, RunArgs};
use crate::systems::{self, Ctx, System, TgpOptions, GAME_PORT};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The smallest datagram: sequence number and send time.
const HEADER: usize = 16;

/// A stream's shape: rate, size and the deadline that counts as on time.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// 60 datagrams a second of 100 bytes, 50 ms deadline.
    Game,
    /// 50 datagrams a second of 160 bytes (G.711, 20 ms frames), 150 ms
    /// deadline.
    Voice,
}

impl Profile {
    /// Name in lines, results directories and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Game => "game",
            Profile::Voice => "voice",
        }
    }
    /// Datagrams a second.
    pub fn hz(self) -> u64 {
        match self {
            Profile::Game => 60,
            Profile::Voice => 50,
        }
    }
    /// UDP payload bytes of one datagram.
    pub fn size(self) -> usize {
        match self {
            Profile::Game => 100,
            Profile::Voice => 160,
        }
    }
    /// The deadline when `--deadline` is not given.
    pub fn deadline(self) -> &'static str {
        match self {
            Profile::Game => "50ms",
            Profile::Voice => "150ms",
        }
    }
}

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
    /// Seconds of stream per system.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// The stream: game (60 Hz × 100 bytes, 50 ms deadline) or voice
    /// (50 Hz × 160 bytes, 150 ms deadline).
    #[arg(long, value_enum, default_value = "game")]
    pub profile: Profile,
    /// The deadline: tgp's class for the stream's port, and what counts as
    /// on time (default: the profile's).
    #[arg(long)]
    pub deadline: Option<String>,
    /// Repetitions, tgp options, where the figures go.
    #[command(flatten)]
    pub common: RunArgs,
}

/// One run of a cell.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GameRow {
    /// "udp" (raw) or "tgp".
    pub system: String,
    /// The stream's profile, `game` or `voice` (`game` in results made
    /// before `--profile`).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Datagrams a second.
    #[serde(default = "default_hz")]
    pub hz: u64,
    /// UDP payload bytes of a datagram.
    #[serde(default = "default_size")]
    pub size: u64,
    /// Which run of the cell (1-based).
    #[serde(default = "first_run")]
    pub run: usize,
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
    /// The deadline, ms (50 in results made before `--deadline`).
    #[serde(default = "default_deadline")]
    pub deadline_ms: f64,
    /// Share received within the deadline of sending.
    pub on_time: Option<f64>,
    /// One-way latency percentiles over received datagrams, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Maximum, ms.
    pub max_ms: Option<f64>,
    /// UDP payload bytes on the underlay during the stream (tgp: both
    /// ends' `bytes_sent` growth, both directions; raw: the datagrams sent).
    #[serde(default)]
    pub wire_bytes: Option<u64>,
    /// wire_bytes / (received × size); None in results made before it.
    #[serde(default)]
    pub wire_per_goodput: Option<f64>,
    /// tgp only: datagrams the ends dropped as `late` (summed).
    #[serde(default)]
    pub tgp_late: Option<u64>,
    /// tgp only: datagrams the ends dropped as `expired` in the send queue.
    #[serde(default)]
    pub tgp_expired: Option<u64>,
    /// tgp only: `tgp status` of each end at the end of the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tgp_status: Vec<(String, String)>,
}

fn first_run() -> usize {
    1
}

fn default_deadline() -> f64 {
    50.0
}

fn default_profile() -> String {
    "game".into()
}

fn default_hz() -> u64 {
    60
}

fn default_size() -> u64 {
    100
}

impl Measured for GameRow {
    fn system(&self) -> &str {
        &self.system
    }
    fn loss_pct(&self) -> f64 {
        self.loss_pct
    }
    fn ok(&self) -> bool {
        self.status == "ok"
    }
    fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// The figures `game` summarises: on-time share, p99 and p50 one-way ms
/// (infinite when nothing arrived), underlay bytes per delivered byte
/// (infinite when nothing arrived; NaN, left out of the median, in results
/// made before it).
pub const GAME_FIGURES: &[Figure<GameRow>] = &[
    Figure {
        key: "on_time",
        short: "on_time",
        decimals: 3,
        inf: "inf",
        get: |r| r.on_time.unwrap_or(f64::NAN),
    },
    Figure {
        key: "p99_ms",
        short: "p99",
        decimals: 1,
        inf: "inf",
        get: |r| r.p99_ms.unwrap_or(f64::INFINITY),
    },
    Figure {
        key: "p50_ms",
        short: "p50",
        decimals: 1,
        inf: "inf",
        get: |r| r.p50_ms.unwrap_or(f64::INFINITY),
    },
    Figure {
        key: "wire_per_goodput",
        short: "wire_per_goodput",
        decimals: 2,
        inf: "inf",
        get: |r| match (r.wire_per_goodput, r.wire_bytes) {
            (Some(w), _) => w,
            (None, Some(_)) => f64::INFINITY,
            (None, None) => f64::NAN,
        },
    },
];

/// The summary line's `received=R/N` (median of the runs that measured)
/// and, for tgp, the medians of its `late` and `expired` counters.
pub fn game_tail(rows: &[&GameRow]) -> String {
    let ok: Vec<&&GameRow> = rows.iter().filter(|r| r.ok()).collect();
    let med = |v: Vec<f64>| repeat::spread(&v).map(|s| s.median);
    let received = med(ok.iter().map(|r| r.received as f64).collect());
    let sent = ok.first().map_or(0, |r| r.sent);
    let mut s = match received {
        Some(r) => format!(" received={r:.0}/{sent}"),
        None => " received=failed".to_string(),
    };
    let late: Vec<f64> = ok
        .iter()
        .filter_map(|r| r.tgp_late)
        .map(|x| x as f64)
        .collect();
    let expired: Vec<f64> = ok
        .iter()
        .filter_map(|r| r.tgp_expired)
        .map(|x| x as f64)
        .collect();
    if let (Some(l), Some(e)) = (med(late), med(expired)) {
        s.push_str(&format!(" tgp_late={l:.0} tgp_expired={e:.0}"));
    }
    s
}

/// Sums the `out: N packets B bytes` counters (UDP payload bytes sent) of
/// `tgp status` outputs; None when an output has none (the end had no
/// session or the status failed).
pub fn status_bytes_sent(status: &[(String, String)]) -> Option<u64> {
    let mut total = 0u64;
    for (_, text) in status {
        // `out: N packets B bytes` (not `loss out: P %`).
        let toks: Vec<&str> = text.split_whitespace().collect();
        let bytes = toks.windows(5).find_map(|w| match w {
            ["out:", _, "packets", bytes, "bytes"] => Some(*bytes),
            _ => None,
        })?;
        total = total.saturating_add(bytes.parse::<u64>().ok()?);
    }
    (!status.is_empty()).then_some(total)
}

/// Sums the `late=` and `expired=` drop counters of `tgp status` outputs.
pub fn status_counters(status: &[(String, String)]) -> (Option<u64>, Option<u64>) {
    let mut late = None;
    let mut expired = None;
    for (_, text) in status {
        for tok in text.split_whitespace() {
            let num = |p: &str| tok.strip_prefix(p).and_then(|v| v.parse::<u64>().ok());
            if let Some(v) = num("late=") {
                late = Some(late.unwrap_or(0) + v);
            }
            if let Some(v) = num("expired=") {
                expired = Some(expired.unwrap_or(0) + v);
            }
        }
    }
    (late, expired)
}

impl GameRow {
    fn failed(
        system: System,
        spec: &PathSpec,
        stream: &Stream,
        run: usize,
        reason: String,
    ) -> GameRow {
        GameRow {
            system: system.name().into(),
            profile: stream.profile.name().into(),
            hz: stream.profile.hz(),
            size: stream.profile.size() as u64,
            run,
            loss_pct: spec.loss_pct,
            rtt_ms: spec.rtt_ms,
            status: "failed".into(),
            reason: Some(reason),
            sent: 0,
            received: 0,
            deadline_ms: stream.deadline_ms,
            on_time: None,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            wire_bytes: None,
            wire_per_goodput: None,
            tgp_late: None,
            tgp_expired: None,
            tgp_status: Vec::new(),
        }
    }

    /// The printed line.
    pub fn line(&self) -> String {
        let f = |x: Option<f64>, d: usize| match x {
            Some(v) if self.status == "ok" => format!("{v:.d$}"),
            _ => "failed".into(),
        };
        let wire = match (self.wire_per_goodput, self.wire_bytes) {
            (Some(w), _) => Some(w),
            (None, Some(_)) => Some(f64::INFINITY),
            (None, None) => None,
        };
        let mut s = format!(
            "{} system={} loss={} on_time={} p99_ms={} p50_ms={} wire_per_goodput={} received={}/{}",
            self.profile,
            self.system,
            self.loss_pct,
            f(self.on_time, 3),
            f(self.p99_ms, 1),
            f(self.p50_ms, 1),
            match wire {
                Some(w) if w.is_infinite() => "inf".into(),
                w => f(w, 2),
            },
            self.received,
            self.sent
        );
        if let (Some(l), Some(e)) = (self.tgp_late, self.tgp_expired) {
            s.push_str(&format!(" tgp_late={l} tgp_expired={e}"));
        }
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

/// What a run streams: the profile and the deadline (also tgp's class).
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    /// Rate and size.
    pub profile: Profile,
    /// What counts as on time, ms.
    pub deadline_ms: f64,
}

fn cell_inner(
    system: System,
    path: &NetPath,
    ctx: &Ctx,
    secs: u64,
    stream: &Stream,
    tgp: &TgpOptions,
    run_no: usize,
) -> Result<GameRow> {
    let mut run = systems::start(system, path, ctx, GAME_PORT, tgp)?;
    let me = std::env::current_exe()?.to_string_lossy().into_owned();
    let profile = stream.profile;
    let count = secs * profile.hz();
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
    let before = run.tgp_status();
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
                "--hz",
                &profile.hz().to_string(),
                "--size",
                &profile.size().to_string(),
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
    let tgp_status = run.tgp_status();
    run.check_alive()?;
    let (tgp_late, tgp_expired) = status_counters(&tgp_status);
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
    let deadline_ms = stream.deadline_ms;
    let on_time = lat.iter().filter(|&&ms| ms <= deadline_ms).count() as f64 / count as f64;
    let size = profile.size() as u64;
    let wire_bytes = if run.tgp_interfaces.is_empty() {
        Some(count * size)
    } else {
        let after = status_bytes_sent(&tgp_status)
            .ok_or_else(|| anyhow!("tgp status has no byte counters: {tgp_status:?}"))?;
        let before = status_bytes_sent(&before).unwrap_or(0);
        Some(after.saturating_sub(before))
    };
    let delivered = lat.len() as u64 * size;
    Ok(GameRow {
        system: system.name().into(),
        profile: profile.name().into(),
        hz: profile.hz(),
        size,
        run: run_no,
        loss_pct: path.spec.loss_pct,
        rtt_ms: path.spec.rtt_ms,
        status: "ok".into(),
        reason: None,
        sent: count,
        received: lat.len() as u64,
        deadline_ms,
        on_time: Some(on_time),
        p50_ms: pct(&lat, 0.5),
        p99_ms: pct(&lat, 0.99),
        max_ms: lat.last().copied(),
        wire_bytes,
        wire_per_goodput: wire_bytes
            .filter(|_| delivered > 0)
            .map(|w| w as f64 / delivered as f64),
        tgp_late,
        tgp_expired,
        tgp_status,
    })
}

struct GameScenario<'a> {
    ctx: &'a Ctx,
    secs: u64,
    stream: Stream,
    tgp: TgpOptions,
    repeat: usize,
}

impl Scenario for GameScenario<'_> {
    type Row = GameRow;
    fn run(&mut self, system: System, path: &NetPath, run: usize) -> GameRow {
        cell_inner(
            system,
            path,
            self.ctx,
            self.secs,
            &self.stream,
            &self.tgp,
            run,
        )
        .unwrap_or_else(|e| {
            GameRow::failed(system, &path.spec, &self.stream, run, format!("{e:#}"))
        })
    }
    fn failed(&mut self, system: System, spec: &PathSpec, run: usize, reason: String) -> GameRow {
        GameRow::failed(system, spec, &self.stream, run, reason)
    }
    fn each_run(&mut self, row: &GameRow) {
        print_run(
            &indicatif::ProgressBar::hidden(),
            self.repeat,
            row.run,
            &row.line(),
        );
    }
    fn each_cell(&mut self, rows: &[&GameRow], summary: &Summary) {
        let head = format!(
            "{} system={} loss={}",
            self.stream.profile.name(),
            summary.system,
            summary.loss_pct
        );
        println!("{}", summary.line(&head, GAME_FIGURES, &game_tail(rows)));
    }
    fn figures(&self) -> &[Figure<GameRow>] {
        GAME_FIGURES
    }
}

/// `tgp-bench game`.
pub fn run(args: &GameArgs) -> Result<()> {
    let mut machine = Machine::here();
    let rtt_ms = parse_ms(&args.rtt)?;
    let rate_mbit = parse_mbit(&args.rate)?;
    let profile = args.profile;
    let deadline_ms = parse_ms(args.deadline.as_deref().unwrap_or(profile.deadline()))?;
    if args.secs == 0 || args.secs > 600 {
        bail!("--secs must be 1..=600");
    }
    if !(1.0..=10_000.0).contains(&deadline_ms) {
        bail!("--deadline must be 1ms..=10s");
    }
    let common = &args.common;
    let repeat = common.repeat as usize;
    let ctx = Ctx::new(common.output.keep_logs)?;
    let mut tgp = TgpOptions::new(common.ceiling(&args.rate));
    tgp.game_deadline_ms = deadline_ms;
    let path = move |loss_pct| PathSpec {
        loss_pct,
        rtt_ms,
        rate_mbit: Some(rate_mbit),
    };
    let systems = [System::Udp, System::TgpUdp];
    let plan = Plan {
        losses: &args.loss,
        path: &path,
        systems: &systems,
        repeat,
    };
    let mut scenario = GameScenario {
        ctx: &ctx,
        secs: args.secs,
        stream: Stream {
            profile,
            deadline_ms,
        },
        tgp,
        repeat,
    };
    let (rows, cells) = repeat::sweep(&plan, &mut scenario)?;
    machine.finish();
    let file = ResultsFile {
        scenario: "game".into(),
        machine,
        counting: format!("{} profile: {} Hz, {}-byte UDP datagrams NAME-b -> NAME-a; on_time = arrived within {deadline_ms} ms of sending / sent; percentiles one-way over arrived datagrams; tgp gives the port a {deadline_ms} ms deadline class; wire_per_goodput = UDP payload bytes on the underlay during the stream (tgp: growth of both ends' bytes_sent in tgp status, both directions; raw udp: the datagrams sent) / payload bytes of the datagrams received; tgp_late/tgp_expired: the tgp ends' drop counters (tgp status) at the end of the stream", profile.name(), profile.hz(), profile.size()),
        params: serde_json::json!({
            "rtt_ms": rtt_ms,
            "rate_mbit": rate_mbit,
            "secs": args.secs,
            "profile": profile.name(),
            "hz": profile.hz(),
            "size": profile.size(),
            "deadline_ms": deadline_ms,
            "repeat": repeat,
            "rate_ceiling": scenario.tgp.rate_ceiling,
            "losses": args.loss,
        }),
        rows,
        cells,
    };
    let csv: Vec<GameRow> = file
        .rows
        .iter()
        .map(|r| GameRow {
            tgp_status: Vec::new(),
            ..r.clone()
        })
        .collect();
    if let Some(dir) =
        common
            .output
            .write(&format!("{}-rtt{rtt_ms}", profile.name()), &file, &csv)?
    {
        let written = crate::report::refresh(&dir)?;
        eprintln!("results in {} ({})", dir.display(), written.join(", "));
    }
    if ctx.keep {
        eprintln!("logs kept in {}", ctx.dir.display());
    }
    Ok(())
}

/// Options of the hidden `game-send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Destination address:port.
    #[arg(long)]
    pub addr: String,
    /// Datagrams to send.
    #[arg(long)]
    pub count: u64,
    /// Datagrams a second.
    #[arg(long, default_value_t = 60)]
    pub hz: u64,
    /// UDP payload bytes of each (16 to 1400).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
}

/// `game-send`: `count` datagrams at `hz` on an absolute schedule.
pub fn send(args: &SendArgs) -> Result<()> {
    let addr = args
        .addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("bad --addr"))?;
    if !(HEADER..=1400).contains(&args.size) || !(1..=1000).contains(&args.hz) {
        bail!("--size must be {HEADER}..=1400 and --hz 1..=1000");
    }
    let sock = UdpSocket::bind(("0.0.0.0", 0))?;
    let start = Instant::now();
    let mut buf = vec![0u8; args.size];
    for seq in 0..args.count.min(args.hz * 600) {
        let due = start + Duration::from_secs_f64(seq as f64 / args.hz as f64);
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
            Ok((n, _)) if n >= HEADER => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(out_bytes: u64, late: u64) -> String {
        format!(
            "interface tg1a\npeer ABC\n  state: up  endpoint: 10.1.1.2:51901  sessions: 1  waiting packets: 0\n  \
             rtt: 50.1 ms (min 50.0 ms)  loss in: 0.0 %  loss out: 0.0 %  redundancy: 0.50  rate: 20.00 Mbit/s (bottleneck 20.00)\n  \
             out: 12 packets {out_bytes} bytes  in: 7 packets 999 bytes  delivered: 3 segments 300 bytes  fec recovered: 0\n  \
             data drops: truncated=0 forged=0 replayed=0 stale=0 malformed=0 queue_full=0 queue_delay=0 too_large=0 expired=2 late={late}\n"
        )
    }

    fn ok_row(system: &str, received: u64, wire: Option<u64>) -> GameRow {
        let stream = Stream {
            profile: Profile::Voice,
            deadline_ms: 150.0,
        };
        let spec = PathSpec {
            loss_pct: 10.0,
            rtt_ms: 50.0,
            rate_mbit: None,
        };
        let mut r = GameRow::failed(System::TgpUdp, &spec, &stream, 1, String::new());
        r.system = system.into();
        r.status = "ok".into();
        r.reason = None;
        r.sent = 1000;
        r.received = received;
        r.on_time = Some(0.95);
        r.p50_ms = Some(26.0);
        r.p99_ms = Some(40.0);
        r.wire_bytes = wire;
        r.wire_per_goodput = wire
            .filter(|_| received > 0)
            .map(|w| w as f64 / (received * r.size) as f64);
        r
    }

    #[test]
    fn bytes_sent_sum_over_both_ends_and_need_every_end() {
        let both = vec![
            ("a".to_string(), status(1000, 1)),
            ("b".to_string(), status(234, 2)),
        ];
        assert_eq!(status_bytes_sent(&both), Some(1234));
        assert_eq!(status_counters(&both), (Some(3), Some(4)));
        let one_failed = vec![
            ("a".to_string(), status(1000, 0)),
            (
                "b".to_string(),
                "tgp status failed (exit 1): no socket".to_string(),
            ),
        ];
        assert_eq!(status_bytes_sent(&one_failed), None);
        assert_eq!(status_bytes_sent(&[]), None);
        let garbled = vec![(
            "a".to_string(),
            "loss out: 1.0 %  out: 12 packets x bytes".to_string(),
        )];
        assert_eq!(status_bytes_sent(&garbled), None);
        let cut = vec![("a".to_string(), "out: 12".to_string())];
        assert_eq!(status_bytes_sent(&cut), None);
    }

    #[test]
    fn lines_name_the_profile_and_print_wire_per_goodput() {
        // 900 voice datagrams of 160 bytes delivered for 360000 wire bytes.
        let r = ok_row("tgp", 900, Some(360_000));
        assert_eq!(
            r.line(),
            "voice system=tgp loss=10 on_time=0.950 p99_ms=40.0 p50_ms=26.0 \
             wire_per_goodput=2.50 received=900/1000"
        );
        let nothing = ok_row("tgp", 0, Some(5000));
        assert!(
            nothing.line().contains("wire_per_goodput=inf"),
            "{}",
            nothing.line()
        );
        let rows = [
            ok_row("udp", 900, Some(160_000)),
            ok_row("udp", 800, Some(160_000)),
        ];
        let refs: Vec<&GameRow> = rows.iter().collect();
        let s = Summary::of(&refs, GAME_FIGURES);
        let w = s.get("wire_per_goodput").unwrap();
        assert!((w.min - 1000.0 / 900.0).abs() < 1e-9 && (w.max - 1.25).abs() < 1e-9);
    }

    #[test]
    fn profiles_have_the_documented_shape() {
        assert_eq!((Profile::Game.hz(), Profile::Game.size()), (60, 100));
        assert_eq!((Profile::Voice.hz(), Profile::Voice.size()), (50, 160));
        assert_eq!(parse_ms(Profile::Voice.deadline()).unwrap(), 150.0);
        assert_eq!(parse_ms(Profile::Game.deadline()).unwrap(), 50.0);
    }
}
