//! `tgp-bench`: measurements of tgp. `tgp-bench sim` runs the data plane in
//! the deterministic simulator and prints the table of the delivery issue;
//! `compare`, `latency`, `game`, `cpu` and `demo` measure real sockets over
//! an impaired path between network namespaces (netem/link); `report`
//! makes the tables and plots of a results directory; `bft` runs TGP-BFT
//! in the simulator.

mod bft;
mod compare;
mod game;
mod latency;
mod newreno;
mod paths;
mod plot;
mod procs;
mod repeat;
mod report;
mod results;
mod sim;
mod sim_tcp;
mod soak;
mod systems;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Measurements of tgp")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Data plane in the deterministic simulator: capacity fraction, wire
    /// overhead, deadline delivery, bottleneck queueing, sharing.
    Sim(sim::SimArgs),
    /// TGP-BFT agreement in the deterministic simulator: share of runs
    /// committed within a deadline, p50/p99 time, packets and bytes.
    Bft(bft::BftArgs),
    /// iperf3 goodput of every system over one impaired path per loss rate,
    /// with wire bytes per delivered byte and CPU seconds.
    Compare(compare::CompareArgs),
    /// Goodput through tgp and wireguard-go on an unimpaired path.
    Cpu(compare::CpuArgs),
    /// Plain TCP beside TCP through tgp at 10 % loss, 100 ms, 20 Mbit/s.
    Demo(compare::DemoArgs),
    /// Short exchanges (new TCP connection, 1 KB request, 1 KB response) per
    /// system: p50/p99/max time.
    Latency(latency::LatencyArgs),
    /// A stream of small UDP datagrams, raw and through tgp with a deadline
    /// class: `--profile game` (60 Hz × 100 bytes, 50 ms) or `voice`
    /// (50 Hz × 160 bytes, 150 ms).
    Game(game::GameArgs),
    /// The markdown tables and plots of a results directory (writes
    /// report.md and the SVGs, prints the report).
    Report(report::ReportArgs),
    /// 10 peers x 10 TCP flows through one server for 10 minutes, each
    /// daemon's RSS sampled every 10 s (flat after warm-up when state is
    /// bounded).
    Soak(soak::SoakArgs),
    /// Helper: request/response server (runs in a namespace).
    #[command(hide = true)]
    RrServer(latency::ServerArgs),
    /// Helper: request/response client.
    #[command(hide = true)]
    RrClient(latency::ClientArgs),
    /// Helper: game stream sender.
    #[command(hide = true)]
    GameSend(game::SendArgs),
    /// Helper: game stream receiver.
    #[command(hide = true)]
    GameRecv(game::RecvArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sim(args) => sim::run(&args),
        Command::Bft(args) => bft::run(&args),
        Command::Compare(args) => real(|| compare::run(&args)),
        Command::Cpu(args) => real(|| compare::cpu(&args)),
        Command::Demo(args) => real(|| compare::demo(&args)),
        Command::Latency(args) => real(|| latency::run(&args)),
        Command::Game(args) => real(|| game::run(&args)),
        Command::Report(args) => report::run(&args),
        Command::Soak(args) => real(|| soak::run_soak(&args)),
        Command::RrServer(args) => latency::server(&args),
        Command::RrClient(args) => latency::client(&args),
        Command::GameSend(args) => game::send(&args),
        Command::GameRecv(args) => game::recv(&args),
    }
}

/// Common start for the real-socket commands: logs, Ctrl-C handling, root.
fn real(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    procs::install_interrupt_handler();
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if uid.as_deref() != Some("0") {
        anyhow::bail!("this command builds network namespaces: run it as root");
    }
    f()
}
