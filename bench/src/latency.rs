//! `tgp-bench latency`: short request/response exchanges per system — a new
//! TCP connection, a 1 KB request, a 1 KB response, close — one after
//! another; p50/p99/max time per exchange (connect to last response byte),
//! and the bytes both ends' `eth0` sent per byte of request and response
//! delivered (`wire_per_goodput`: handshakes, ACKs, receipts, repair and
//! tail cover included).
//!
//! The client (`rr-client`, in NAME-b) and server (`rr-server`, in NAME-a)
//! are this binary's hidden subcommands; both select the system's congestion
//! control per socket (TCP_CONGESTION). An exchange that does not finish in
//! 10 s counts as failed; percentiles are over all exchanges with a failed
//! one counted as infinitely slow (printed as `timeout`).

use crate::compare::{parse_ms, parse_systems, print_run};
use crate::paths::{NetPath, PathSpec};
use crate::procs::{check_interrupt, listening, ns_cmd, wait_until, Proc};
use crate::repeat::{self, Figure, Measured, Plan, Scenario, Summary};
use crate::results::{Machine, ResultsFile, RunArgs};
use crate::systems::{self, Ctx, System, TgpOptions, TCP_SYSTEMS};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const RR_PORT: u16 = 5301;
const MSG: usize = 1024;
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `tgp-bench latency`.
#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// Loss rates in percent (each direction), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5,10")]
    pub loss: Vec<f64>,
    /// Round-trip time.
    #[arg(long, default_value = "50ms")]
    pub rtt: String,
    /// Link rate (also tgp's rate_ceiling).
    #[arg(long, default_value = "20mbit")]
    pub rate: String,
    /// Exchanges per system and loss rate.
    #[arg(long, default_value_t = 1000)]
    pub count: u32,
    /// Systems (default: all TCP systems).
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Repetitions, tgp options, where the figures go.
    #[command(flatten)]
    pub common: RunArgs,
}

/// One run of a cell: a system at a loss rate.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LatencyRow {
    /// System name.
    pub system: String,
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
    /// Exchanges attempted.
    pub attempted: u32,
    /// Exchanges that did not finish within 10 s.
    pub failed_exchanges: u32,
    /// Median, ms (None: failed cell or a timeout).
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Maximum, ms.
    pub max_ms: Option<f64>,
    /// Bytes both ends' `eth0` transmitted during the run (absent in
    /// results recorded before it was counted).
    #[serde(default)]
    pub wire_bytes: Option<u64>,
    /// `wire_bytes` over the request and response bytes of the exchanges
    /// that completed.
    #[serde(default)]
    pub wire_per_goodput: Option<f64>,
    /// Every completed exchange's time, ms (JSON only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times_ms: Vec<f64>,
}

fn first_run() -> usize {
    1
}

impl Measured for LatencyRow {
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

/// The figures `latency` summarises: p50, p99 and max per exchange, ms
/// (infinite, printed `timeout`, when the percentile falls on an exchange
/// that did not finish).
pub const LATENCY_FIGURES: &[Figure<LatencyRow>] = &[
    Figure {
        key: "p50_ms",
        short: "p50",
        decimals: 1,
        inf: "timeout",
        get: |r| r.p50_ms.unwrap_or(f64::INFINITY),
    },
    Figure {
        key: "p99_ms",
        short: "p99",
        decimals: 1,
        inf: "timeout",
        get: |r| r.p99_ms.unwrap_or(f64::INFINITY),
    },
    Figure {
        key: "max_ms",
        short: "max",
        decimals: 1,
        inf: "timeout",
        get: |r| r.max_ms.unwrap_or(f64::INFINITY),
    },
    Figure {
        key: "wire_per_goodput",
        short: "wire_per_goodput",
        decimals: 2,
        inf: "inf",
        get: |r| r.wire_per_goodput.unwrap_or(f64::INFINITY),
    },
];

/// The summary line's `failed=F/N`: exchanges that did not finish over
/// exchanges attempted, summed over the runs that measured.
pub fn failed_tail(rows: &[&LatencyRow]) -> String {
    let ok = rows.iter().filter(|r| r.ok());
    let (f, n) = ok.fold((0u64, 0u64), |(f, n), r| {
        (
            f + u64::from(r.failed_exchanges),
            n + u64::from(r.attempted),
        )
    });
    format!(" failed={f}/{n}")
}

#[derive(Serialize)]
struct CsvRow<'a> {
    system: &'a str,
    run: usize,
    loss_pct: f64,
    rtt_ms: f64,
    status: &'a str,
    reason: Option<&'a str>,
    attempted: u32,
    failed_exchanges: u32,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    wire_per_goodput: Option<f64>,
}

fn opt(x: Option<f64>, failed_cell: bool) -> String {
    match (x, failed_cell) {
        (_, true) => "failed".into(),
        (Some(v), _) => format!("{v:.1}"),
        (None, _) => "timeout".into(),
    }
}

impl LatencyRow {
    /// The printed line.
    pub fn line(&self) -> String {
        let f = self.status != "ok";
        let mut s = format!(
            "latency system={} loss={} p50_ms={} p99_ms={} max_ms={} wire_per_goodput={} failed={}/{}",
            self.system,
            self.loss_pct,
            opt(self.p50_ms, f),
            opt(self.p99_ms, f),
            opt(self.max_ms, f),
            match (self.wire_per_goodput, f) {
                (_, true) => "failed".to_string(),
                (Some(w), _) => format!("{w:.2}"),
                (None, _) => "inf".to_string(),
            },
            self.failed_exchanges,
            self.attempted
        );
        if let Some(r) = &self.reason {
            s.push_str(&format!(" reason={r:?}"));
        }
        s
    }
}

/// Percentile `q` of `times` plus `failed` infinitely slow ones; None when
/// it falls on a failed one.
fn percentile(times: &[f64], failed: u32, q: f64) -> Option<f64> {
    let n = times.len() + failed as usize;
    if n == 0 {
        return None;
    }
    let mut v = times.to_vec();
    v.sort_by(f64::total_cmp);
    let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    v.get(idx).copied()
}

/// What `rr-client` prints (JSON on stdout).
#[derive(Serialize, Deserialize)]
struct ClientReport {
    times_ms: Vec<f64>,
    failed: u32,
    attempted: u32,
    first_error: Option<String>,
}

/// `rr-client`'s report with the wire bytes the run cost.
struct CellReport {
    client: ClientReport,
    wire_bytes: u64,
}

/// Wire bytes per byte of request and response delivered by `completed`
/// exchanges (None when none completed).
fn wire_per_exchange_byte(wire_bytes: u64, completed: usize) -> Option<f64> {
    (completed > 0).then(|| wire_bytes as f64 / (completed as f64 * 2.0 * MSG as f64))
}

fn cell(
    system: System,
    path: &NetPath,
    ctx: &Ctx,
    count: u32,
    tgp: &TgpOptions,
    run: usize,
) -> LatencyRow {
    let spec = path.spec;
    let mut row = LatencyRow {
        system: system.name().into(),
        run,
        loss_pct: spec.loss_pct,
        rtt_ms: spec.rtt_ms,
        status: "failed".into(),
        reason: None,
        attempted: 0,
        failed_exchanges: 0,
        p50_ms: None,
        p99_ms: None,
        max_ms: None,
        wire_bytes: None,
        wire_per_goodput: None,
        times_ms: Vec::new(),
    };
    match cell_inner(system, path, ctx, count, tgp) {
        Ok(CellReport {
            client: rep,
            wire_bytes,
        }) => {
            row.wire_bytes = Some(wire_bytes);
            row.wire_per_goodput = wire_per_exchange_byte(wire_bytes, rep.times_ms.len());
            row.attempted = rep.attempted;
            row.failed_exchanges = rep.failed;
            row.p50_ms = percentile(&rep.times_ms, rep.failed, 0.50);
            row.p99_ms = percentile(&rep.times_ms, rep.failed, 0.99);
            row.max_ms = percentile(&rep.times_ms, rep.failed, 1.0);
            row.times_ms = rep.times_ms;
            if rep.attempted < count {
                row.reason = Some(format!(
                    "only {} of {count} exchanges in the time limit",
                    rep.attempted
                ));
            } else {
                row.status = "ok".into();
                row.reason = rep
                    .first_error
                    .map(|e| format!("{} exchanges failed, first: {e}", rep.failed));
            }
        }
        Err(e) => row.reason = Some(format!("{e:#}")),
    }
    row
}

fn cell_inner(
    system: System,
    path: &NetPath,
    ctx: &Ctx,
    count: u32,
    tgp: &TgpOptions,
) -> Result<CellReport> {
    let mut run = systems::start(system, path, ctx, RR_PORT, tgp)?;
    let me = std::env::current_exe()?.to_string_lossy().into_owned();
    let limit = (count as u64).max(120);
    let _server = Proc::spawn(
        "rr-server",
        &mut ns_cmd(
            &path.ns_a,
            &me,
            &[
                "rr-server",
                "--port",
                &RR_PORT.to_string(),
                "--cc",
                system.cc(),
                "--max-secs",
                &(limit + 60).to_string(),
            ],
        ),
        &ctx.log("rr-server"),
    )?;
    if !wait_until(Duration::from_secs(5), || {
        listening(&path.ns_a, RR_PORT, false)
    }) {
        check_interrupt()?;
        bail!("rr-server not listening after 5 s");
    }
    let log = ctx.log("rr-client");
    let wire0 = path.wire_tx_bytes()?;
    let mut client = Proc::spawn(
        "rr-client",
        &mut ns_cmd(
            &path.ns_b,
            &me,
            &[
                "rr-client",
                "--addr",
                &format!("{}:{}", run.host, run.port),
                "--count",
                &count.to_string(),
                "--cc",
                system.cc(),
                "--max-secs",
                &limit.to_string(),
            ],
        ),
        &log,
    )?;
    let (st, _) = client.wait(Duration::from_secs(limit + 30))?;
    let wire1 = path.wire_tx_bytes()?;
    if !st.success() {
        bail!("rr-client exited {st}: {}", client.log_tail(300));
    }
    run.check_alive()?;
    let text = std::fs::read_to_string(&log)?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow!("rr-client printed no report"))?;
    let client = serde_json::from_str(line).context("rr-client report")?;
    Ok(CellReport {
        client,
        wire_bytes: wire1.saturating_sub(wire0),
    })
}

struct LatencyScenario<'a, F> {
    ctx: &'a Ctx,
    count: u32,
    tgp: TgpOptions,
    each_run: F,
    each_cell: &'a mut dyn FnMut(&[&LatencyRow], &Summary),
}

impl<F: FnMut(&LatencyRow)> Scenario for LatencyScenario<'_, F> {
    type Row = LatencyRow;
    fn run(&mut self, system: System, path: &NetPath, run: usize) -> LatencyRow {
        cell(system, path, self.ctx, self.count, &self.tgp, run)
    }
    fn failed(
        &mut self,
        system: System,
        spec: &PathSpec,
        run: usize,
        reason: String,
    ) -> LatencyRow {
        LatencyRow {
            system: system.name().into(),
            run,
            loss_pct: spec.loss_pct,
            rtt_ms: spec.rtt_ms,
            status: "failed".into(),
            reason: Some(reason),
            attempted: 0,
            failed_exchanges: 0,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            wire_bytes: None,
            wire_per_goodput: None,
            times_ms: Vec::new(),
        }
    }
    fn each_run(&mut self, row: &LatencyRow) {
        (self.each_run)(row)
    }
    fn each_cell(&mut self, rows: &[&LatencyRow], summary: &Summary) {
        (self.each_cell)(rows, summary)
    }
    fn figures(&self) -> &[Figure<LatencyRow>] {
        LATENCY_FIGURES
    }
}

/// What the JSON says is counted.
pub const COUNTING: &str = "time from connect() to the last byte of the 1 KB response, new TCP connection per exchange, one at a time; an exchange over 10 s is failed and counts as infinitely slow in the percentiles; wire_per_goodput: bytes both ends' eth0 sent during the run (Ethernet frames, both directions, before the impairer drops any) over 2 KB per completed exchange";

/// The per-run CSV rows (without the exchange times).
fn csv_rows(rows: &[LatencyRow]) -> Vec<CsvRow<'_>> {
    rows.iter()
        .map(|r| CsvRow {
            system: &r.system,
            run: r.run,
            loss_pct: r.loss_pct,
            rtt_ms: r.rtt_ms,
            status: &r.status,
            reason: r.reason.as_deref(),
            attempted: r.attempted,
            failed_exchanges: r.failed_exchanges,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            max_ms: r.max_ms,
            wire_per_goodput: r.wire_per_goodput,
        })
        .collect()
}

/// `tgp-bench latency`.
pub fn run(args: &LatencyArgs) -> Result<()> {
    let mut machine = Machine::here();
    let rtt_ms = parse_ms(&args.rtt)?;
    let rate_mbit = crate::compare::parse_mbit(&args.rate)?;
    let systems = parse_systems(&args.systems, &TCP_SYSTEMS)?;
    if args.count == 0 || args.count > 100_000 {
        bail!("--count must be 1..=100000");
    }
    let common = &args.common;
    let repeat = common.repeat as usize;
    let ctx = Ctx::new(common.output.keep_logs)?;
    let pb = ProgressBar::new((args.loss.len() * systems.len() * repeat) as u64);
    let path = move |loss_pct| PathSpec {
        loss_pct,
        rtt_ms,
        rate_mbit: Some(rate_mbit),
    };
    let plan = Plan {
        losses: &args.loss,
        path: &path,
        systems: &systems,
        repeat,
    };
    let mut each_cell = |rows: &[&LatencyRow], summary: &Summary| {
        let head = format!(
            "latency system={} loss={}",
            summary.system, summary.loss_pct
        );
        let line = summary.line(&head, LATENCY_FIGURES, &failed_tail(rows));
        pb.suspend(|| println!("{line}"));
    };
    let mut scenario = LatencyScenario {
        ctx: &ctx,
        count: args.count,
        tgp: TgpOptions::new(common.ceiling(&args.rate)),
        each_run: |row: &LatencyRow| {
            print_run(&pb, repeat, row.run, &row.line());
            pb.inc(1);
        },
        each_cell: &mut each_cell,
    };
    let (rows, cells) = repeat::sweep(&plan, &mut scenario)?;
    let ceiling = scenario.tgp.rate_ceiling.clone();
    drop(scenario);
    pb.finish_and_clear();
    machine.finish();
    let file = ResultsFile {
        scenario: "latency".into(),
        machine,
        counting: COUNTING.into(),
        params: serde_json::json!({
            "rtt_ms": rtt_ms,
            "rate_mbit": rate_mbit,
            "count": args.count,
            "repeat": repeat,
            "rate_ceiling": ceiling,
            "systems": systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "losses": args.loss,
        }),
        rows,
        cells,
    };
    let csv = csv_rows(&file.rows);
    if let Some(dir) = common
        .output
        .write(&format!("latency-rtt{rtt_ms}"), &file, &csv)?
    {
        let written = crate::report::refresh(&dir)?;
        eprintln!("results in {} ({})", dir.display(), written.join(", "));
    }
    Ok(())
}

fn tcp_socket(addr: &SocketAddr, cc: &str) -> Result<Socket> {
    let s = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_tcp_congestion(cc.as_bytes())
        .with_context(|| format!("TCP_CONGESTION {cc}"))?;
    Ok(s)
}

/// Options of the hidden `rr-server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Port to listen on (all addresses).
    #[arg(long)]
    pub port: u16,
    /// Congestion control for accepted connections.
    #[arg(long, default_value = "cubic")]
    pub cc: String,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,
}

/// `rr-server`: answers each connection's 1 KB request with 1 KB.
pub fn server(args: &ServerArgs) -> Result<()> {
    let addr: SocketAddr = ([0, 0, 0, 0], args.port).into();
    let s = tcp_socket(&addr, &args.cc)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    let l: TcpListener = s.into();
    l.set_nonblocking(true)?;
    let end = Instant::now() + Duration::from_secs(args.max_secs);
    while Instant::now() < end {
        match l.accept() {
            Ok((c, _)) => {
                std::thread::spawn(move || {
                    let _ = answer(c);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn answer(mut c: TcpStream) -> Result<()> {
    c.set_nonblocking(false)?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    c.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    let mut buf = [0u8; MSG];
    c.read_exact(&mut buf)?;
    c.write_all(&[b'r'; MSG])?;
    // Wait for the client to close so our FIN is not the first one.
    let _ = c.read(&mut buf);
    Ok(())
}

/// Options of the hidden `rr-client`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Server address:port.
    #[arg(long)]
    pub addr: String,
    /// Exchanges.
    #[arg(long)]
    pub count: u32,
    /// Congestion control.
    #[arg(long, default_value = "cubic")]
    pub cc: String,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,
}

fn exchange(addr: &SocketAddr, cc: &str) -> Result<()> {
    let s = tcp_socket(addr, cc)?;
    s.connect_timeout(&SockAddr::from(*addr), EXCHANGE_TIMEOUT)?;
    let start = Instant::now();
    let mut c: TcpStream = s.into();
    c.set_nodelay(true)?;
    c.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    c.write_all(&[b'q'; MSG])?;
    let mut buf = [0u8; MSG];
    let mut got = 0;
    while got < MSG {
        let left = EXCHANGE_TIMEOUT
            .checked_sub(start.elapsed())
            .ok_or_else(|| anyhow!("timed out"))?;
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        let n = c.read(&mut buf[got..])?;
        if n == 0 {
            bail!("closed after {got} bytes");
        }
        got += n;
    }
    Ok(())
}

/// `rr-client`: runs the exchanges one after another, prints a JSON report.
pub fn client(args: &ClientArgs) -> Result<()> {
    let addr = args
        .addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow!("bad --addr"))?;
    let end = Instant::now() + Duration::from_secs(args.max_secs);
    let mut rep = ClientReport {
        times_ms: Vec::new(),
        failed: 0,
        attempted: 0,
        first_error: None,
    };
    for _ in 0..args.count {
        if Instant::now() >= end {
            break;
        }
        rep.attempted += 1;
        let t0 = Instant::now();
        match exchange(&addr, &args.cc) {
            Ok(()) if t0.elapsed() <= EXCHANGE_TIMEOUT => {
                rep.times_ms.push(t0.elapsed().as_secs_f64() * 1e3)
            }
            Ok(()) => rep.failed += 1,
            Err(e) => {
                rep.failed += 1;
                rep.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    println!("{}", serde_json::to_string(&rep)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_exchanges_count_as_infinitely_slow() {
        let times: Vec<f64> = (1..=98).map(f64::from).collect();
        assert_eq!(percentile(&times, 2, 0.5), Some(50.0));
        assert_eq!(percentile(&times, 2, 0.98), Some(98.0));
        assert_eq!(percentile(&times, 2, 0.99), None);
        assert_eq!(percentile(&times, 0, 1.0), Some(98.0));
        assert_eq!(percentile(&[], 0, 0.5), None);
    }

    #[test]
    fn wire_is_counted_against_the_exchanges_that_completed() {
        // Four exchanges of 2 KB each; 16 KB on the wire is 2 bytes per byte.
        assert_eq!(wire_per_exchange_byte(16 * 1024, 4), Some(2.0));
        assert_eq!(wire_per_exchange_byte(16 * 1024, 0), None);
    }
}
