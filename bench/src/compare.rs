//! `tgp-bench compare`, `cpu` and `demo`: iperf3 goodput of every system
//! over the same impaired path, with bytes on the wire per byte delivered and
//! CPU seconds.
//!
//! What is counted, per cell (one system at one loss rate):
//! - goodput: the bytes the iperf3 *receiver* got (`end.sum_received`) over
//!   its measuring time; data flows from the client in NAME-b to the server
//!   in NAME-a.
//! - wire bytes: the bytes both ends' `eth0` transmitted during the cell
//!   (kernel interface counters: Ethernet frames with headers, counted
//!   before the impairer drops any), i.e. data, ACKs, receipts, repair,
//!   keepalives and iperf3's control connection, both directions.
//!   `wire_per_goodput` = wire bytes / bytes delivered (`inf` when nothing
//!   was delivered; null in the JSON, with `delivered_bytes` 0).
//! - cpu_s: user+system CPU seconds of the tunnel's processes at both ends
//!   (tgp, kcptun client+server, wireguard-go) plus both iperf3 processes,
//!   from /proc/PID/stat. Kernel work done in softirq context (the kernel
//!   TCP stack, wireguard-go's TUN I/O is counted as its system time) is not
//!   attributed to any process and is not in the figure; the impairer is not
//!   counted.

use crate::paths::{NetPath, PathSpec};
use crate::procs::{check_interrupt, listening, ns_cmd, wait_until, Proc};
use crate::repeat::{self, Figure, Measured, Plan, Scenario, Summary};
use crate::results::{fig, Machine, ResultsFile, RunArgs};
use crate::systems::{self, Ctx, Running, System, TgpOptions, TCP_SYSTEMS};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const IPERF_PORT: u16 = 5201;

/// Parses "100ms", "0.6s", "600" (a bare number is ms; tgp-units' syntax)
/// into milliseconds, at most 60 s.
pub fn parse_ms(s: &str) -> Result<f64> {
    let d = tgp_units::parse_duration_default_unit(s, tgp_units::TimeUnit::Millis)?;
    if d > Duration::from_secs(60) {
        bail!("{s:?} is out of range (at most 60s)");
    }
    Ok(d.as_nanos() as f64 / 1e6)
}

/// Parses "20mbit", "1gbit", "500kbit" (tgp-units' syntax) into Mbit/s.
pub fn parse_mbit(s: &str) -> Result<f64> {
    Ok(tgp_units::parse_rate(s)?.0 as f64 / 1e6)
}

/// Parses a comma-separated system list, or all TCP systems when empty.
pub fn parse_systems(list: &[String], default: &[System]) -> Result<Vec<System>> {
    if list.is_empty() {
        return Ok(default.to_vec());
    }
    list.iter().map(|s| System::parse(s)).collect()
}

/// Options of `tgp-bench compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Loss rates in percent (each direction), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5,10,20,30,50,70,90")]
    pub loss: Vec<f64>,
    /// Round-trip time (half of it each way).
    #[arg(long, default_value = "100ms")]
    pub rtt: String,
    /// Link rate (also tgp's rate_ceiling).
    #[arg(long, default_value = "20mbit")]
    pub rate: String,
    /// Seconds of iperf3 per cell.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Systems (default: all): tcp-cubic,tcp-bbr,tgp-cubic,tgp-bbr,
    /// tgp-split-cubic,tgp-split-bbr,kcptun,kcptun-tuned,wireguard-go,openvpn.
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Repetitions, tgp options, where the figures go.
    #[command(flatten)]
    pub common: RunArgs,
}

/// One run of one cell of the comparison.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CompareRow {
    /// System name.
    pub system: String,
    /// Which run of the cell (1-based; 1 in results made before `--repeat`).
    #[serde(default = "first_run")]
    pub run: usize,
    /// Loss per direction, percent.
    pub loss_pct: f64,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// Link rate, Mbit/s (0 = no rate stage).
    pub rate_mbit: f64,
    /// "ok" or "failed".
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Receiver goodput, Mbit/s.
    pub goodput_mbit: Option<f64>,
    /// Bytes the receiver got.
    pub delivered_bytes: Option<u64>,
    /// Bytes both ends transmitted on eth0 during the cell.
    pub wire_bytes: Option<u64>,
    /// wire_bytes / delivered_bytes.
    pub wire_per_goodput: Option<f64>,
    /// CPU seconds (tunnel processes + both iperf3).
    pub cpu_s: Option<f64>,
    /// Sender's TCP retransmissions (outer TCP for plain TCP, inner otherwise).
    pub retransmits: Option<u64>,
    /// tgp only: the delay the tunnel added to the path's one-way delay,
    /// p50 and p99 (ms), at the end that received the data.
    #[serde(default)]
    pub added_delay_p50_ms: Option<f64>,
    /// See `added_delay_p50_ms`.
    #[serde(default)]
    pub added_delay_p99_ms: Option<f64>,
    /// iperf3 seconds.
    pub secs: u64,
}

fn first_run() -> usize {
    1
}

impl Measured for CompareRow {
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

/// The figures `compare` summarises: goodput, wire bytes per delivered byte
/// (infinite when nothing was delivered), CPU seconds.
pub const COMPARE_FIGURES: &[Figure<CompareRow>] = &[
    Figure {
        key: "goodput_mbit",
        short: "goodput",
        decimals: 2,
        inf: "inf",
        get: |r| r.goodput_mbit.unwrap_or(f64::NAN),
    },
    Figure {
        key: "wire_per_goodput",
        short: "wire_per_goodput",
        decimals: 3,
        inf: "inf",
        get: |r| r.wire_per_goodput.unwrap_or(f64::INFINITY),
    },
    Figure {
        key: "cpu_s",
        short: "cpu_s",
        decimals: 2,
        inf: "inf",
        get: |r| r.cpu_s.unwrap_or(f64::NAN),
    },
    Figure {
        key: "cpu_s_per_gb",
        short: "cpu_s_per_gb",
        decimals: 1,
        inf: "inf",
        get: |r| r.cpu_s_per_gb().unwrap_or(f64::NAN),
    },
    Figure {
        key: "added_delay_p50_ms",
        short: "added_delay_p50_ms",
        decimals: 1,
        inf: "inf",
        get: |r| r.added_delay_p50_ms.unwrap_or(f64::NAN),
    },
    Figure {
        key: "added_delay_p99_ms",
        short: "added_delay_p99_ms",
        decimals: 1,
        inf: "inf",
        get: |r| r.added_delay_p99_ms.unwrap_or(f64::NAN),
    },
];

/// The figures `cpu` summarises: goodput, CPU seconds, Mbit per CPU second,
/// CPU seconds per GB delivered.
pub const CPU_FIGURES: &[Figure<CompareRow>] = &[
    Figure {
        key: "goodput_mbit",
        short: "goodput",
        decimals: 1,
        inf: "inf",
        get: |r| r.goodput_mbit.unwrap_or(f64::NAN),
    },
    Figure {
        key: "cpu_s",
        short: "cpu_s",
        decimals: 2,
        inf: "inf",
        get: |r| r.cpu_s.unwrap_or(f64::NAN),
    },
    Figure {
        key: "mbit_per_cpu_s",
        short: "mbit_per_cpu_s",
        decimals: 1,
        inf: "inf",
        get: |r| r.mbit_per_cpu_s().unwrap_or(f64::NAN),
    },
    Figure {
        key: "cpu_s_per_gb",
        short: "cpu_s_per_gb",
        decimals: 2,
        inf: "inf",
        get: |r| r.cpu_s_per_gb().unwrap_or(f64::NAN),
    },
];

impl CompareRow {
    /// The row of a run that could not be measured.
    pub fn failed(system: System, spec: &PathSpec, secs: u64, reason: String) -> CompareRow {
        CompareRow {
            system: system.name().to_string(),
            run: 1,
            loss_pct: spec.loss_pct,
            rtt_ms: spec.rtt_ms,
            rate_mbit: spec.rate_mbit.unwrap_or(0.0),
            status: "failed".into(),
            reason: Some(reason),
            goodput_mbit: None,
            delivered_bytes: None,
            wire_bytes: None,
            wire_per_goodput: None,
            cpu_s: None,
            retransmits: None,
            added_delay_p50_ms: None,
            added_delay_p99_ms: None,
            secs,
        }
    }

    /// Megabits delivered per counted CPU second.
    pub fn mbit_per_cpu_s(&self) -> Option<f64> {
        match (self.goodput_mbit, self.cpu_s) {
            (Some(g), Some(c)) if c > 0.0 => Some(g * self.secs as f64 / c),
            _ => None,
        }
    }

    /// Counted CPU seconds per gigabyte (10^9 bytes) the receiver got;
    /// infinite when a run that measured delivered nothing, as for the
    /// wire figure, so the field is always on the line.
    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        match (self.delivered_bytes, self.cpu_s) {
            (Some(0), Some(_)) => Some(f64::INFINITY),
            (Some(bytes), Some(c)) => Some(c / (bytes as f64 / 1e9)),
            _ => None,
        }
    }

    /// The start of the summary line (`compare system=… rtt_ms=… rate_mbit=…`).
    pub fn head(&self) -> String {
        format!(
            "compare system={} loss={} rtt_ms={} rate_mbit={}",
            self.system, self.loss_pct, self.rtt_ms, self.rate_mbit
        )
    }

    /// The `cpu` scenario's line for this run.
    pub fn cpu_line(&self) -> String {
        let mut line = format!(
            "cpu system={} goodput_mbit={} cpu_s={} mbit_per_cpu_s={} cpu_s_per_gb={}",
            self.system,
            fig(self.goodput_mbit, 1),
            fig(self.cpu_s, 2),
            fig(self.mbit_per_cpu_s(), 1),
            fig(self.cpu_s_per_gb(), 2)
        );
        if let Some(r) = &self.reason {
            line.push_str(&format!(" reason={r:?}"));
        }
        line
    }

    /// The line printed for this run.
    pub fn line(&self) -> String {
        let mut s = format!(
            "compare system={} loss={} rtt_ms={} rate_mbit={} goodput_mbit={} wire_per_goodput={} cpu_s={}",
            self.system,
            self.loss_pct,
            self.rtt_ms,
            self.rate_mbit,
            fig(self.goodput_mbit, 2),
            match (self.wire_per_goodput, self.status.as_str()) {
                // Nothing delivered: every wire byte was spent for nothing.
                (None, "ok") => "inf".to_string(),
                (w, _) => fig(w, 3),
            },
            fig(self.cpu_s, 2)
        );
        if let (Some(p50), Some(p99)) = (self.added_delay_p50_ms, self.added_delay_p99_ms) {
            s.push_str(&format!(
                " added_delay_p50_ms={p50:.1} added_delay_p99_ms={p99:.1}"
            ));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!(" reason={:?}", r));
        }
        s
    }
}

/// What one iperf3 run measured.
struct IperfMeasured {
    goodput_mbit: f64,
    delivered: u64,
    wire: u64,
    cpu_s: f64,
    retransmits: Option<u64>,
    added_delay_ms: Option<(f64, f64)>,
}

fn iperf(path: &NetPath, run: &mut Running, ctx: &Ctx, secs: u64) -> Result<IperfMeasured> {
    run.check_alive()?;
    let wire0 = path.wire_tx_bytes()?;
    let cpu0 = run.cpu_s();
    let port = IPERF_PORT.to_string();
    let mut server = Proc::spawn(
        "iperf3 server",
        &mut ns_cmd(&path.ns_a, "iperf3", &["-s", "-1", "-p", &port]),
        &ctx.log("iperf3-s"),
    )?;
    if !wait_until(Duration::from_secs(5), || {
        listening(&path.ns_a, IPERF_PORT, false)
    }) {
        check_interrupt()?;
        bail!(
            "iperf3 server not listening after 5 s: {}",
            server.log_tail(200)
        );
    }
    let client_log = ctx.log("iperf3-c");
    let mut client = Proc::spawn(
        "iperf3 client",
        &mut ns_cmd(
            &path.ns_b,
            "iperf3",
            &[
                "-c",
                &run.host,
                "-p",
                &run.port.to_string(),
                "-t",
                &secs.to_string(),
                "-J",
                "-C",
                run.system.cc(),
                "--connect-timeout",
                "10000",
            ],
        ),
        &client_log,
    )?;
    let (status, client_cpu) = client
        .wait(Duration::from_secs(secs + 60))
        .context("iperf3 client")?;
    let server_cpu = match server.wait(Duration::from_secs(15)) {
        Ok((_, c)) => c,
        Err(_) => None,
    };
    let wire1 = path.wire_tx_bytes()?;
    let cpu1 = run.cpu_s();
    let text = std::fs::read_to_string(&client_log)?;
    let json = text
        .find('{')
        .and_then(|i| text.rfind('}').map(|j| &text[i..=j]))
        .ok_or_else(|| {
            anyhow!(
                "iperf3 ({status}) printed no JSON: {}",
                client.log_tail(300)
            )
        })?;
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3 JSON")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {e}");
    }
    if !status.success() {
        bail!("iperf3 exited {status}");
    }
    let cc = v["end"]["sender_tcp_congestion"].as_str().unwrap_or("");
    if cc != run.system.cc() {
        bail!(
            "iperf3 sender used congestion control {cc:?}, not {} (is tcp_{} available?)",
            run.system.cc(),
            run.system.cc()
        );
    }
    let recv = &v["end"]["sum_received"];
    let delivered = recv["bytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("iperf3 JSON has no end.sum_received.bytes"))?;
    let bps = recv["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3 JSON has no end.sum_received.bits_per_second"))?;
    run.check_alive()?;
    let added_delay_ms = run.tgp_added_delay_ms();
    Ok(IperfMeasured {
        goodput_mbit: bps / 1e6,
        delivered,
        wire: wire1.saturating_sub(wire0),
        cpu_s: (cpu1 - cpu0) + client_cpu.unwrap_or(0.0) + server_cpu.unwrap_or(0.0),
        retransmits: v["end"]["sum_sent"]["retransmits"].as_u64(),
        added_delay_ms,
    })
}

/// Runs one system on an existing path; never fails: a failure is a row.
pub fn run_cell(
    system: System,
    path: &NetPath,
    ctx: &Ctx,
    secs: u64,
    tgp: &TgpOptions,
    run: usize,
) -> CompareRow {
    let spec = path.spec;
    let res = systems::start(system, path, ctx, IPERF_PORT, tgp)
        .and_then(|mut r| iperf(path, &mut r, ctx, secs));
    match res {
        Ok(m) => CompareRow {
            system: system.name().to_string(),
            run,
            loss_pct: spec.loss_pct,
            rtt_ms: spec.rtt_ms,
            rate_mbit: spec.rate_mbit.unwrap_or(0.0),
            status: "ok".into(),
            reason: None,
            goodput_mbit: Some(m.goodput_mbit),
            delivered_bytes: Some(m.delivered),
            wire_bytes: Some(m.wire),
            wire_per_goodput: (m.delivered > 0).then(|| m.wire as f64 / m.delivered as f64),
            cpu_s: Some(m.cpu_s),
            retransmits: m.retransmits,
            added_delay_p50_ms: m.added_delay_ms.map(|d| d.0),
            added_delay_p99_ms: m.added_delay_ms.map(|d| d.1),
            secs,
        },
        Err(e) => CompareRow {
            run,
            ..CompareRow::failed(system, &spec, secs, format!("{e:#}"))
        },
    }
}

/// A sweep: one path per loss rate; on it `repeat` rounds of `systems`.
pub struct Sweep<'a> {
    /// Loss rates, percent.
    pub losses: &'a [f64],
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// Link rate, Mbit/s (None: no rate stage).
    pub rate_mbit: Option<f64>,
    /// How the tgp systems are configured.
    pub tgp: TgpOptions,
    /// Systems, in order.
    pub systems: &'a [System],
    /// iperf3 seconds per cell.
    pub secs: u64,
    /// Runs per cell.
    pub repeat: usize,
}

struct IperfScenario<'a, F, G> {
    ctx: &'a Ctx,
    secs: u64,
    tgp: &'a TgpOptions,
    figures: &'static [Figure<CompareRow>],
    each_run: F,
    each_cell: G,
}

impl<F: FnMut(&CompareRow), G: FnMut(&[&CompareRow], &Summary)> Scenario
    for IperfScenario<'_, F, G>
{
    type Row = CompareRow;
    fn run(&mut self, system: System, path: &NetPath, run: usize) -> CompareRow {
        run_cell(system, path, self.ctx, self.secs, self.tgp, run)
    }
    fn failed(
        &mut self,
        system: System,
        spec: &PathSpec,
        run: usize,
        reason: String,
    ) -> CompareRow {
        CompareRow {
            run,
            ..CompareRow::failed(system, spec, self.secs, reason)
        }
    }
    fn each_run(&mut self, row: &CompareRow) {
        (self.each_run)(row)
    }
    fn each_cell(&mut self, rows: &[&CompareRow], summary: &Summary) {
        (self.each_cell)(rows, summary)
    }
    fn figures(&self) -> &[Figure<CompareRow>] {
        self.figures
    }
}

/// Runs a sweep; `each_run` sees every run's row as it is measured,
/// `each_cell` every cell's rows and summary once its runs are done.
pub fn sweep(
    sw: &Sweep,
    ctx: &Ctx,
    figures: &'static [Figure<CompareRow>],
    each_run: impl FnMut(&CompareRow),
    each_cell: impl FnMut(&[&CompareRow], &Summary),
) -> Result<(Vec<CompareRow>, Vec<Summary>)> {
    let (rtt_ms, rate_mbit) = (sw.rtt_ms, sw.rate_mbit);
    let path = move |loss_pct| PathSpec {
        loss_pct,
        rtt_ms,
        rate_mbit,
    };
    let plan = Plan {
        losses: sw.losses,
        path: &path,
        systems: sw.systems,
        repeat: sw.repeat,
    };
    let mut scenario = IperfScenario {
        ctx,
        secs: sw.secs,
        tgp: &sw.tgp,
        figures,
        each_run,
        each_cell,
    };
    repeat::sweep(&plan, &mut scenario)
}

/// Prints a run's line (indented, `run K/N:`) when cells repeat.
pub fn print_run(pb: &ProgressBar, repeat: usize, run: usize, line: &str) {
    if repeat > 1 {
        pb.suspend(|| println!("  run {run}/{repeat}: {line}"));
    }
}

fn progress(n: u64) -> ProgressBar {
    let pb = ProgressBar::new(n);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} cells, {elapsed} elapsed, ~{eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// What the JSON says is counted.
pub const COUNTING: &str = "goodput: iperf3 receiver bytes (end.sum_received) over its time, client in NAME-b sending to server in NAME-a; wire bytes: tx bytes of both ends' eth0 (Ethernet frames, before the impairer's loss) during the cell, both directions; cpu_s: user+sys of the tunnel processes at both ends plus both iperf3 processes (/proc/PID/stat), softirq work and the impairer not counted";

/// `tgp-bench compare`.
pub fn run(args: &CompareArgs) -> Result<()> {
    let mut machine = Machine::here();
    let rtt_ms = parse_ms(&args.rtt)?;
    let rate_mbit = parse_mbit(&args.rate)?;
    let systems = parse_systems(&args.systems, &TCP_SYSTEMS)?;
    if args.secs == 0 || args.secs > 600 {
        bail!("--secs must be 1..=600");
    }
    let common = &args.common;
    let repeat = common.repeat as usize;
    let ctx = Ctx::new(common.output.keep_logs)?;
    let pb = progress((args.loss.len() * systems.len() * repeat) as u64);
    let sw = Sweep {
        losses: &args.loss,
        rtt_ms,
        rate_mbit: Some(rate_mbit),
        tgp: TgpOptions::new(common.ceiling(&args.rate)),
        systems: &systems,
        secs: args.secs,
        repeat,
    };
    let (rows, cells) = sweep(
        &sw,
        &ctx,
        COMPARE_FIGURES,
        |row| {
            print_run(&pb, repeat, row.run, &row.line());
            pb.inc(1);
        },
        |rows, summary| {
            let head = rows.first().map(|r| r.head()).unwrap_or_default();
            pb.suspend(|| println!("{}", summary.line(&head, COMPARE_FIGURES, "")));
        },
    )?;
    pb.finish_and_clear();
    machine.finish();
    let file = ResultsFile {
        scenario: "compare".into(),
        machine,
        counting: COUNTING.into(),
        params: serde_json::json!({
            "rtt_ms": rtt_ms,
            "rate_mbit": rate_mbit,
            "secs": args.secs,
            "repeat": repeat,
            "rate_ceiling": sw.tgp.rate_ceiling,
            "systems": systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "losses": args.loss,
        }),
        rows,
        cells,
    };
    if let Some(dir) = common
        .output
        .write(&format!("compare-rtt{rtt_ms}"), &file, &file.rows)?
    {
        let written = crate::report::refresh(&dir)?;
        eprintln!("results in {} ({})", dir.display(), written.join(", "));
    }
    if ctx.keep {
        eprintln!("logs kept in {}", ctx.dir.display());
    }
    Ok(())
}

/// Options of `tgp-bench cpu`.
#[derive(Args, Debug)]
pub struct CpuArgs {
    /// Seconds of iperf3 per system.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// tgp's rate_ceiling on this unimpaired path.
    #[arg(long, default_value = "10gbit")]
    pub ceiling: String,
    /// Systems (default: tcp-cubic,tgp-cubic,wireguard-go,boringtun,openvpn;
    /// boringtun needs boringtun-cli, `cargo install boringtun-cli`, and is
    /// shown as not installed without it).
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// Repetitions, tgp options, where the figures go.
    #[command(flatten)]
    pub common: RunArgs,
}

/// The default systems of `cpu`.
pub const CPU_SYSTEMS: [System; 5] = [
    System::TcpCubic,
    System::TgpCubic,
    System::WireguardGo,
    System::Boringtun,
    System::Openvpn,
];

/// `tgp-bench cpu`: goodput through the tunnels (plain TCP as the
/// reference) on a path with no loss, delay or rate limit.
pub fn cpu(args: &CpuArgs) -> Result<()> {
    let mut machine = Machine::here();
    let common = &args.common;
    let repeat = common.repeat as usize;
    let systems = parse_systems(&args.systems, &CPU_SYSTEMS)?;
    if args.secs == 0 || args.secs > 600 {
        bail!("--secs must be 1..=600");
    }
    let ctx = Ctx::new(common.output.keep_logs)?;
    let sw = Sweep {
        losses: &[0.0],
        rtt_ms: 0.0,
        rate_mbit: None,
        tgp: TgpOptions::new(common.ceiling(&args.ceiling)),
        systems: &systems,
        secs: args.secs,
        repeat,
    };
    let pb = ProgressBar::hidden();
    let (rows, cells) = sweep(
        &sw,
        &ctx,
        CPU_FIGURES,
        |row| print_run(&pb, repeat, row.run, &row.cpu_line()),
        |_, summary| {
            let head = format!("cpu system={}", summary.system);
            println!("{}", summary.line(&head, CPU_FIGURES, ""));
        },
    )?;
    machine.finish();
    let file = ResultsFile {
        scenario: "cpu".into(),
        machine,
        counting: COUNTING.into(),
        params: serde_json::json!({
            "secs": args.secs,
            "repeat": repeat,
            "rate_ceiling": sw.tgp.rate_ceiling,
            "systems": systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
        }),
        rows,
        cells,
    };
    if let Some(dir) = common.output.write("cpu", &file, &file.rows)? {
        let written = crate::report::refresh(&dir)?;
        eprintln!("results in {} ({})", dir.display(), written.join(", "));
    }
    Ok(())
}

/// Options of `tgp-bench demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Seconds of iperf3 per system.
    #[arg(long, default_value_t = 12)]
    pub secs: u64,
}

/// `tgp-bench demo`: plain TCP beside TCP through tgp at 10 % loss, 100 ms,
/// 20 Mbit/s.
pub fn demo(args: &DemoArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let mut missing = Vec::new();
    for p in ["ip", "iperf3", "ss", "ping", "sysctl"] {
        if !crate::paths::have(p) {
            missing.push(p);
        }
    }
    if !missing.is_empty() {
        bail!("missing {missing:?}: run scripts/setup");
    }
    crate::paths::workspace_bin("TGP_BIN", "tgp")?;
    let (loss, rtt, rate) = (10.0, 100.0, 20.0);
    println!(
        "demo: {loss}% loss each way, {rtt} ms round trip, {rate} Mbit/s; iperf3 for {} s per system",
        args.secs
    );
    let ctx = Ctx::new(false)?;
    let sw = Sweep {
        losses: &[loss],
        rtt_ms: rtt,
        rate_mbit: Some(rate),
        // As a user runs it: split mode (the default), no rate_ceiling.
        tgp: TgpOptions::new(None),
        systems: &[System::TcpCubic, System::TgpSplitCubic],
        secs: args.secs,
        repeat: 1,
    };
    let (rows, _) = sweep(
        &sw,
        &ctx,
        COMPARE_FIGURES,
        |row| println!("{}", row.line()),
        |_, _| {},
    )?;
    let limit = (1.0 - loss / 100.0) * rate;
    let g = |name: &str| {
        rows.iter()
            .find(|r| r.system == name)
            .and_then(|r| r.goodput_mbit)
    };
    println!();
    println!(
        "plain TCP (cubic):        {} Mbit/s",
        fig(g("tcp-cubic"), 2)
    );
    println!(
        "TCP (cubic) through tgp:  {} Mbit/s (split mode, no rate_ceiling)",
        fig(g("tgp-split-cubic"), 2)
    );
    println!("(1 - p) x rate limit:     {limit:.2} Mbit/s");
    match (g("tcp-cubic"), g("tgp-split-cubic")) {
        (Some(a), Some(b)) if a > 0.0 => println!(
            "tgp / plain TCP:          {:.1}x; tgp reaches {:.0}% of the limit",
            b / a,
            100.0 * b / limit
        ),
        _ => println!("tgp / plain TCP:          n/a (a run failed, see above)"),
    }
    println!("({:.0} s)", started.elapsed().as_secs_f64());
    if rows.iter().any(|r| r.status != "ok") {
        bail!("a demo run failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_rates_parse() {
        assert_eq!(parse_ms("100ms").unwrap(), 100.0);
        assert_eq!(parse_ms("0.6s").unwrap(), 600.0);
        assert_eq!(parse_ms("20").unwrap(), 20.0);
        assert!(parse_ms("fast").is_err());
        assert!(parse_ms("-5ms").is_err());
        assert_eq!(parse_mbit("20mbit").unwrap(), 20.0);
        assert_eq!(parse_mbit("1gbit").unwrap(), 1000.0);
        assert_eq!(parse_mbit("500kbit").unwrap(), 0.5);
        assert!(parse_mbit("20mbps").is_err());
        assert!(parse_mbit("0mbit").is_err());
    }

    #[test]
    fn failed_cells_print_failed_and_the_reason() {
        let spec = path_at(10.0, 100.0);
        let row = CompareRow::failed(System::Kcptun, &spec, 10, "no kcptun".into());
        assert_eq!(
            row.line(),
            "compare system=kcptun loss=10 rtt_ms=100 rate_mbit=20 goodput_mbit=failed \
             wire_per_goodput=failed cpu_s=failed reason=\"no kcptun\""
        );
        let mut ok = row.clone();
        ok.status = "ok".into();
        ok.reason = None;
        ok.goodput_mbit = Some(0.0);
        ok.cpu_s = Some(0.5);
        assert!(ok
            .line()
            .ends_with("goodput_mbit=0.00 wire_per_goodput=inf cpu_s=0.50"));
    }

    #[test]
    fn systems_parse_by_name() {
        for s in TCP_SYSTEMS {
            assert_eq!(System::parse(s.name()).unwrap(), s);
        }
        assert!(parse_systems(&["tgp-bbr".into(), "nope".into()], &TCP_SYSTEMS).is_err());
        assert_eq!(parse_systems(&[], &TCP_SYSTEMS).unwrap().len(), 10);
    }

    #[test]
    fn a_repeated_cell_prints_its_median_and_spread() {
        let spec = path_at(10.0, 100.0);
        let mut rows = Vec::new();
        for (run, g) in [(1, Some(9.0)), (2, None), (3, Some(11.0))] {
            let mut r = CompareRow::failed(System::TgpCubic, &spec, 10, "tunnel not up".into());
            r.run = run;
            if let Some(g) = g {
                r.status = "ok".into();
                r.reason = None;
                r.goodput_mbit = Some(g);
                r.wire_per_goodput = Some(g / 8.0);
                r.cpu_s = Some(g / 10.0);
            }
            rows.push(r);
        }
        let cells = repeat::summarize(&rows, COMPARE_FIGURES);
        assert_eq!(cells.len(), 1);
        assert_eq!(
            cells[0].line(&rows[0].head(), COMPARE_FIGURES, ""),
            "compare system=tgp-cubic loss=10 rtt_ms=100 rate_mbit=20 goodput_mbit=10.00 \
             wire_per_goodput=1.250 cpu_s=1.00 runs=3 goodput_min=9.00 goodput_max=11.00 \
             wire_per_goodput_min=1.125 wire_per_goodput_max=1.375 cpu_s_min=0.90 cpu_s_max=1.10 \
             failed_runs=1 reason=\"run 2: tunnel not up\""
        );
    }

    /// A run of `system` that measured, with no figures yet.
    /// A 20 Mbit/s path at `loss_pct` and `rtt_ms`.
    fn path_at(loss_pct: f64, rtt_ms: f64) -> PathSpec {
        PathSpec {
            loss_pct,
            rtt_ms,
            rate_mbit: Some(20.0),
        }
    }

    fn measured(system: System, spec: &PathSpec, secs: u64) -> CompareRow {
        let mut r = CompareRow::failed(system, spec, secs, String::new());
        r.status = "ok".into();
        r.reason = None;
        r
    }

    #[test]
    fn a_tgp_cell_prints_its_added_delay() {
        let spec = path_at(1.0, 100.0);
        let mut r = measured(System::TgpSplitCubic, &spec, 10);
        r.goodput_mbit = Some(15.0);
        r.wire_per_goodput = Some(1.1);
        r.cpu_s = Some(2.0);
        r.added_delay_p50_ms = Some(3.25);
        r.added_delay_p99_ms = Some(21.0);
        assert!(
            r.line()
                .ends_with("added_delay_p50_ms=3.2 added_delay_p99_ms=21.0"),
            "{}",
            r.line()
        );
        let cells = repeat::summarize(&[r.clone()], COMPARE_FIGURES);
        let line = cells[0].line(&r.head(), COMPARE_FIGURES, "");
        assert!(line.contains(" added_delay_p99_ms=21.0 "), "{line}");
    }

    #[test]
    fn a_run_that_delivered_nothing_still_prints_its_cpu_per_gb() {
        let spec = path_at(10.0, 50.0);
        let mut r = measured(System::WireguardGo, &spec, 3);
        r.goodput_mbit = Some(0.0);
        r.delivered_bytes = Some(0);
        r.wire_per_goodput = None;
        r.cpu_s = Some(0.11);
        let cells = repeat::summarize(&[r.clone()], COMPARE_FIGURES);
        let line = cells[0].line(&r.head(), COMPARE_FIGURES, "");
        assert!(line.contains(" cpu_s_per_gb=inf "), "{line}");
        assert!(
            r.cpu_line().ends_with(" cpu_s_per_gb=inf"),
            "{}",
            r.cpu_line()
        );
    }
}
