//! `tgp-bench`: measurements of tgp. `tgp-bench sim` runs the data plane in
//! the deterministic simulator and prints the table of the delivery issue;
//! the real-socket comparisons come with their own issue.

mod newreno;
mod sim;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Sim(args) => sim::run(&args),
    }
}
