//! `tgp-bench bft`: TGP-BFT (the `tgp-bft` crate) in the deterministic
//! simulator. Per member count, loss rate and input mode (all honest
//! members want the same value, or each wants its own: competing
//! proposals), many seeded runs; per cell it prints the share of runs in
//! which every honest member decided within the deadline, p50/p99 of the
//! time until the last honest member decided, and the packets and bytes
//! honest members sent (per member and in all, mean per run, counted until
//! the linger after the last decision is over).
//!
//! Links: a full mesh, each direction its own seeded link of 20 ± 10 ms
//! one-way delay, up to 5 ms jitter and the given random loss; default
//! replica settings (`BftConfig::default()`).

use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tgp_bft::sim::{run as run_scenario, Fault, Scenario};
use tgp_bft::BftConfig;

/// Options of the `bft` subcommand.
#[derive(clap::Args, Debug)]
pub struct BftArgs {
    /// Member counts.
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 7, 10, 31])]
    pub n: Vec<usize>,
    /// Loss rates per link, in percent.
    #[arg(long, value_delimiter = ',', default_values_t = [0u32, 10, 30, 50])]
    pub loss: Vec<u32>,
    /// Runs per cell for n below 31 (seeds --seed, --seed + 1, ...).
    #[arg(long, default_value_t = 200)]
    pub runs: u64,
    /// Runs per cell for n of 31 and more.
    #[arg(long, default_value_t = 40)]
    pub runs_large: u64,
    /// A run counts as committed when every honest member decided within
    /// this many milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub deadline_ms: u64,
    /// f = ⌊(n−1)/3⌋ Byzantine members: none, silent, equivocate, forge,
    /// replay, or mixed (the kinds in turn).
    #[arg(long, default_value = "none")]
    pub byzantine: String,
    /// Also run the paper's design: one leaderless round, no proposer, no
    /// round change (`max_rounds = 1`).
    #[arg(long)]
    pub paper: bool,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn faults(kind: &str, f: usize) -> anyhow::Result<Vec<Fault>> {
    Ok(match kind {
        "none" => Vec::new(),
        "silent" => vec![Fault::Silent; f],
        "equivocate" => vec![Fault::Equivocate; f],
        "forge" => vec![Fault::Forge; f],
        "replay" => vec![Fault::Replay; f],
        "mixed" => (0..f).map(|i| Fault::ALL[i % Fault::ALL.len()]).collect(),
        other => bail!(
            "unknown --byzantine {other:?}: use none, silent, equivocate, forge, replay or mixed"
        ),
    })
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ms(value: Option<Duration>) -> String {
    value.map_or_else(
        || "-".to_string(),
        |d| format!("{:.0}", d.as_secs_f64() * 1e3),
    )
}

struct Cell {
    committed: f64,
    times: Vec<Duration>,
    packets_per_run: f64,
    bytes_per_run: f64,
    honest: usize,
    mean_round: f64,
}

fn cell(
    args: &BftArgs,
    n: usize,
    loss: f64,
    competing: bool,
    config: &BftConfig,
) -> anyhow::Result<Cell> {
    let runs = if n >= 31 { args.runs_large } else { args.runs }.max(1);
    let f = (n - 1) / 3;
    let faults = faults(&args.byzantine, f)?;
    let mut times = Vec::new();
    let (mut packets, mut bytes, mut rounds) = (0u64, 0u64, 0u64);
    let mut committed = 0u64;
    for k in 0..runs {
        let mut scenario = Scenario::new(n, args.seed + k);
        scenario.loss = loss;
        scenario.competing = competing;
        scenario.faults = faults.clone();
        scenario.deadline = Duration::from_millis(args.deadline_ms);
        scenario.after_decision = config.linger + Duration::from_millis(200);
        scenario.config = config.clone();
        let result = run_scenario(&scenario);
        if !result.agreement() {
            bail!(
                "honest members disagreed (n = {n}, seed = {}): a safety bug",
                args.seed + k
            );
        }
        if let Some(at) = result.all_decided_at {
            committed += 1;
            times.push(at);
        }
        packets += result.honest_packets;
        bytes += result.honest_bytes;
        rounds += result
            .honest
            .iter()
            .filter_map(|h| h.decided.map(|d| u64::from(d.1)))
            .max()
            .unwrap_or(u64::from(result.max_round));
    }
    times.sort_unstable();
    Ok(Cell {
        committed: committed as f64 / runs as f64,
        times,
        packets_per_run: packets as f64 / runs as f64,
        bytes_per_run: bytes as f64 / runs as f64,
        honest: n - f.min(faults.len()),
        mean_round: rounds as f64 / runs as f64,
    })
}

/// Runs every cell and prints one line per cell.
pub fn run(args: &BftArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    faults(&args.byzantine, 1).context("checking --byzantine")?;
    if let Some(bad) = args
        .n
        .iter()
        .find(|n| **n == 0 || **n > tgp_bft::MAX_MEMBERS)
    {
        bail!(
            "--n {bad}: member counts must be 1 to {}",
            tgp_bft::MAX_MEMBERS
        );
    }
    let config = BftConfig::default();
    println!(
        "# tgp-bench bft: full mesh, 20 +- 10 ms one-way, 5 ms jitter, random loss per link; \
         flood every {} ms, round 0 lasts {} ms (+{} ms per round); deadline {} ms; \
         byzantine={}; seeds from {}; per-node and total counts are honest members' packets \
         and bytes per run, until the {} ms linger after the last decision",
        config.flood_interval.as_millis(),
        config.round_timeout.as_millis(),
        config.round_timeout_step.as_millis(),
        args.deadline_ms,
        args.byzantine,
        args.seed,
        config.linger.as_millis(),
    );
    let mut variants = vec![("bft", config.clone())];
    if args.paper {
        variants.push((
            "bft-paper",
            BftConfig {
                max_rounds: 1,
                ..config.clone()
            },
        ));
    }
    for (label, variant) in &variants {
        for &n in &args.n {
            for &percent in &args.loss {
                let loss = f64::from(percent) / 100.0;
                for competing in [false, true] {
                    let cell_started = Instant::now();
                    let c = cell(args, n, loss, competing, variant)?;
                    let honest = c.honest.max(1) as f64;
                    println!(
                        "{label} n={n} loss={loss:.2} competing={competing} committed={:.3} \
                         p50_ms={} p99_ms={} msgs_per_node={:.0} bytes_per_node={:.0} \
                         msgs_total={:.0} bytes_total={:.0} mean_round={:.2}",
                        c.committed,
                        ms(percentile(&c.times, 0.50)),
                        ms(percentile(&c.times, 0.99)),
                        c.packets_per_run / honest,
                        c.bytes_per_run / honest,
                        c.packets_per_run,
                        c.bytes_per_run,
                        c.mean_round,
                    );
                    eprintln!("  ({:.1} s)", cell_started.elapsed().as_secs_f64());
                }
            }
        }
    }
    eprintln!("# total wall time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
