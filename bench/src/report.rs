//! `tgp-bench report RESULTS_DIR`: the markdown tables and plots of a
//! results directory, made from its JSON alone, so that figures copied into
//! the READMEs come from one directory and cannot drift from it. Every
//! scenario's run ends by calling [`refresh`] on the directory it wrote, so
//! the report a run leaves and the one `report` makes later are the same.
//!
//! What it writes into the directory: `report.md` (the command that made
//! the results, the build and the machine, then the tables), and for
//! `compare` `goodput.svg` (copied to `<results root>/latest-compare-rtt<R>.svg`,
//! the plot the README embeds), for `latency` `cdf-loss<P>.svg` (copied to
//! `latest-latency-cdf-loss<P>.svg`). Summaries are recomputed from the
//! per-run rows, so directories made before `--repeat` (one run per cell)
//! report too.

use crate::compare::{CompareRow, COMPARE_FIGURES, CPU_FIGURES};
use crate::game::{GameRow, GAME_FIGURES};
use crate::latency::{LatencyRow, LATENCY_FIGURES};
use crate::repeat::{summarize, value, Figure, Spread, Summary};
use crate::results::{Machine, ResultsFile};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::de::DeserializeOwned;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Options of `tgp-bench report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A results directory (`bench/results/<scenario>-<time>/`).
    pub dir: PathBuf,
}

/// `tgp-bench report`: writes `report.md` and the plots, prints the report.
pub fn run(args: &ReportArgs) -> Result<()> {
    let report = Report::load(&args.dir)?;
    let written = report.write(&args.dir)?;
    print!("{}", report.markdown());
    eprintln!(
        "report: wrote {} in {}",
        written.join(", "),
        args.dir.display()
    );
    Ok(())
}

/// Makes `report.md` and the plots of `dir`; returns the files written.
pub fn refresh(dir: &Path) -> Result<Vec<String>> {
    Report::load(dir)?.write(dir)
}

/// A loaded results directory.
pub enum Report {
    /// `compare`.
    Compare(ResultsFile<CompareRow>),
    /// `cpu`.
    Cpu(ResultsFile<CompareRow>),
    /// `latency`.
    Latency(ResultsFile<LatencyRow>),
    /// `game`.
    Game(ResultsFile<GameRow>),
}

fn read<R: DeserializeOwned>(path: &Path) -> Result<ResultsFile<R>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
}

impl Report {
    /// Reads the scenario JSON of `dir` (`compare.json`, `cpu.json`,
    /// `latency.json` or `game.json`).
    pub fn load(dir: &Path) -> Result<Report> {
        if !dir.is_dir() {
            bail!(
                "{} is not a results directory (bench/results/<scenario>-<time>/)",
                dir.display()
            );
        }
        for name in ["compare", "cpu", "latency", "game"] {
            let path = dir.join(format!("{name}.json"));
            if !path.exists() {
                continue;
            }
            return Ok(match name {
                "compare" => Report::Compare(read(&path)?),
                "cpu" => Report::Cpu(read(&path)?),
                "latency" => Report::Latency(read(&path)?),
                _ => Report::Game(read(&path)?),
            });
        }
        Err(anyhow!(
            "no compare.json, cpu.json, latency.json or game.json in {}",
            dir.display()
        ))
    }

    fn machine(&self) -> &Machine {
        match self {
            Report::Compare(f) | Report::Cpu(f) => &f.machine,
            Report::Latency(f) => &f.machine,
            Report::Game(f) => &f.machine,
        }
    }

    /// Writes `report.md` and the plots into `dir` (and the `latest-*`
    /// copies beside it); returns what it wrote.
    pub fn write(&self, dir: &Path) -> Result<Vec<String>> {
        let mut written = vec!["report.md".to_string()];
        std::fs::write(dir.join("report.md"), self.markdown())
            .with_context(|| format!("write {}", dir.join("report.md").display()))?;
        let root = dir.parent().unwrap_or(Path::new("."));
        match self {
            Report::Compare(f) => {
                let cells = summarize(&f.rows, COMPARE_FIGURES);
                let (rtt, rate) = f
                    .rows
                    .first()
                    .map_or((0.0, 0.0), |r| (r.rtt_ms, r.rate_mbit));
                let svg = dir.join("goodput.svg");
                crate::plot::goodput(&svg, &cells, rtt, rate)?;
                let latest = root.join(format!("latest-compare-rtt{rtt}.svg"));
                std::fs::copy(&svg, &latest)
                    .with_context(|| format!("copy to {}", latest.display()))?;
                written.push("goodput.svg".into());
                written.push(latest.display().to_string());
            }
            Report::Latency(f) => {
                let rtt = f.rows.first().map_or(0.0, |r| r.rtt_ms);
                let mut losses: Vec<f64> = Vec::new();
                for r in &f.rows {
                    if !losses.contains(&r.loss_pct) {
                        losses.push(r.loss_pct);
                    }
                }
                for loss in losses {
                    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
                    for r in f
                        .rows
                        .iter()
                        .filter(|r| r.loss_pct == loss && r.status == "ok")
                    {
                        match series.iter_mut().find(|(n, _)| *n == r.system) {
                            Some((_, v)) => v.extend(&r.times_ms),
                            None => series.push((r.system.clone(), r.times_ms.clone())),
                        }
                    }
                    series.retain(|(_, v)| !v.is_empty());
                    if series.is_empty() {
                        continue;
                    }
                    let name = format!("cdf-loss{loss}.svg");
                    let svg = dir.join(&name);
                    crate::plot::cdf(
                        &svg,
                        &format!("exchange time CDF, {loss}% loss, {rtt} ms RTT"),
                        "time per exchange (ms, log scale)",
                        &series,
                    )?;
                    let latest = root.join(format!("latest-latency-cdf-loss{loss}.svg"));
                    std::fs::copy(&svg, &latest)
                        .with_context(|| format!("copy to {}", latest.display()))?;
                    written.push(name);
                    written.push(latest.display().to_string());
                }
            }
            Report::Cpu(_) | Report::Game(_) => {}
        }
        Ok(written)
    }

    /// The report: the command, how and where it ran, the tables.
    pub fn markdown(&self) -> String {
        let mut md = provenance(self.machine());
        match self {
            Report::Compare(f) => compare_tables(&mut md, f),
            Report::Cpu(f) => cpu_table(&mut md, f),
            Report::Latency(f) => latency_table(&mut md, f),
            Report::Game(f) => game_table(&mut md, f),
        }
        md
    }
}

/// The command (in a code span), then one line on the build and machine.
fn provenance(m: &Machine) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "`{}`\n", m.short_command());
    let mut facts = Vec::new();
    if !m.started_utc.is_empty() {
        facts.push(format!("started {}", m.started_utc));
    }
    let commit = if m.commit.is_empty() {
        m.git.clone()
    } else {
        m.commit.chars().take(10).collect()
    };
    if !commit.is_empty() {
        let dirty = if m.dirty {
            format!(
                " (work tree dirty: {} changed file{})",
                m.dirty_files.len(),
                if m.dirty_files.len() == 1 { "" } else { "s" }
            )
        } else if m.commit.is_empty() {
            String::new()
        } else {
            " (clean work tree)".to_string()
        };
        facts.push(format!("commit {commit}{dirty}"));
    }
    for b in &m.binaries {
        match &b.error {
            Some(e) => facts.push(format!("{}: {e}", b.role)),
            None => facts.push(format!(
                "{} {} build of {} (sha256 {})",
                b.role,
                b.profile,
                b.modified_utc,
                b.sha256.chars().take(12).collect::<String>()
            )),
        }
    }
    let mut machine = format!("{} CPUs", m.cpus);
    if !m.cpu.is_empty() {
        machine.push_str(&format!(", {}", m.cpu));
    }
    if !m.kernel.is_empty() {
        machine.push_str(&format!(", `{}`", m.kernel));
    }
    facts.push(machine);
    let modes: Vec<&str> = m
        .netem_modes
        .iter()
        .map(|x| match x.as_str() {
            "userspace" => "the userspace impairer tgp-impair (no sch_netem)",
            "tc" => "sch_netem (tc)",
            other => other,
        })
        .collect();
    if !modes.is_empty() {
        facts.push(format!("paths impaired by {}", modes.join(" and ")));
    }
    let _ = writeln!(s, "{}.\n", facts.join("; "));
    s
}

/// `median (…)` plus ` min–max` when more than one run measured.
fn with_range<R>(sp: Option<Spread>, f: &Figure<R>, runs_ok: usize) -> String {
    match sp {
        None => "failed".into(),
        Some(s) if runs_ok > 1 => format!(
            "{} {}–{}",
            value(Some(s.median), f.decimals, f.inf),
            value(Some(s.min), f.decimals, f.inf),
            value(Some(s.max), f.decimals, f.inf)
        ),
        Some(s) => value(Some(s.median), f.decimals, f.inf),
    }
}

/// `, F/N failed` when some (not all) runs failed; `failed (N/N)` when all.
fn failed_note(c: &Summary) -> String {
    if c.failed_runs == 0 {
        String::new()
    } else {
        format!(", {}/{} failed", c.failed_runs, c.runs)
    }
}

fn all_failed(c: &Summary) -> String {
    if c.runs > 1 {
        format!("failed ({}/{})", c.failed_runs, c.runs)
    } else {
        "failed".into()
    }
}

fn distinct<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v = Vec::new();
    for x in items {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

fn cell<'a>(cells: &'a [Summary], loss: f64, system: &str) -> Option<&'a Summary> {
    cells
        .iter()
        .find(|c| c.loss_pct == loss && c.system == system)
}

fn runs_phrase(cells: &[Summary]) -> String {
    let runs: Vec<usize> = distinct(cells.iter().map(|c| c.runs));
    match runs.as_slice() {
        [1] => "one run per cell".into(),
        [n] => format!("{n} runs per cell, interleaved across systems"),
        _ => "runs per cell as listed".into(),
    }
}

fn failures(md: &mut String, cells: &[Summary]) {
    let failed: Vec<&Summary> = cells.iter().filter(|c| c.failed_runs > 0).collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(md, "<details><summary>failed runs</summary>\n");
    for c in failed {
        // Runs that failed for the same reason share a line.
        let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
        for r in &c.reasons {
            let (run, why) = r
                .strip_prefix("run ")
                .and_then(|x| x.split_once(": "))
                .map_or(("?".to_string(), r.clone()), |(n, w)| {
                    (n.to_string(), w.to_string())
                });
            match grouped.iter_mut().find(|(w, _)| *w == why) {
                Some((_, runs)) => runs.push(run),
                None => grouped.push((why, vec![run])),
            }
        }
        for (why, runs) in grouped {
            let which = if runs.len() == 1 { "run" } else { "runs" };
            let _ = writeln!(
                md,
                "- {} at {} %, {which} {}: {why}",
                c.system,
                c.loss_pct,
                runs.join(", ")
            );
        }
    }
    let _ = writeln!(md, "\n</details>\n");
}

fn compare_tables(md: &mut String, f: &ResultsFile<CompareRow>) {
    let cells = summarize(&f.rows, COMPARE_FIGURES);
    let first = f.rows.first();
    let (rtt, rate, secs) = first.map_or((0.0, 0.0, 0), |r| (r.rtt_ms, r.rate_mbit, r.secs));
    let systems = distinct(cells.iter().map(|c| c.system.clone()));
    let losses = distinct(cells.iter().map(|c| c.loss_pct));
    let [goodput, wire, cpu] = [
        &COMPARE_FIGURES[0],
        &COMPARE_FIGURES[1],
        &COMPARE_FIGURES[2],
    ];
    let _ = writeln!(
        md,
        "compare, {rtt} ms round trip, {rate} Mbit/s, {secs} s of iperf3 per run, {}. \
         Goodput in Mbit/s at the receiver: the median of the runs that measured, in brackets \
         the median wire bytes (both directions, whole frames) per delivered byte, then the \
         smallest and largest run; `limit` = (1 − p) × rate; failed runs are counted.\n",
        runs_phrase(&cells)
    );
    let _ = writeln!(md, "| loss % | limit | {} |", systems.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "---|".repeat(systems.len()));
    for &loss in &losses {
        let mut line = format!("| {loss} | {:.1} |", (1.0 - loss / 100.0) * rate);
        for s in &systems {
            let text = match cell(&cells, loss, s) {
                None => "–".to_string(),
                Some(c) if c.all_failed() => all_failed(c),
                Some(c) => {
                    let ok = c.runs - c.failed_runs;
                    let g = c.get(goodput.key).map(|x| x.median);
                    let w = c.get(wire.key).map(|x| x.median);
                    let mut t = format!(
                        "{} ({}×)",
                        value(g, goodput.decimals, goodput.inf),
                        value(w, wire.decimals, wire.inf)
                    );
                    if ok > 1 {
                        let sp = c.get(goodput.key);
                        t.push_str(&format!(
                            " {}–{}",
                            value(sp.map(|x| x.min), goodput.decimals, goodput.inf),
                            value(sp.map(|x| x.max), goodput.decimals, goodput.inf)
                        ));
                    }
                    t + &failed_note(c)
                }
            };
            line.push_str(&format!(" {text} |"));
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(
        md,
        "\nCPU seconds per run (tunnel processes at both ends and both iperf3), median then min–max:\n"
    );
    let _ = writeln!(md, "| loss % | {} |", systems.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(systems.len()));
    for &loss in &losses {
        let mut line = format!("| {loss} |");
        for s in &systems {
            let text = match cell(&cells, loss, s) {
                None => "–".to_string(),
                Some(c) if c.all_failed() => all_failed(c),
                Some(c) => {
                    with_range(c.get(cpu.key), cpu, c.runs - c.failed_runs) + &failed_note(c)
                }
            };
            line.push_str(&format!(" {text} |"));
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md);
    added_delay_table(md, &cells, &losses);
    failures(md, &cells);
}

/// The delay tgp added to the path's one-way delay, for the systems that
/// measure it (tgp's): median p50 and p99 over the runs, then the p99's
/// smallest and largest run.
fn added_delay_table(md: &mut String, cells: &[Summary], losses: &[f64]) {
    const P50: &str = "added_delay_p50_ms";
    const P99: &str = "added_delay_p99_ms";
    let systems: Vec<String> = distinct(
        cells
            .iter()
            .filter(|c| c.get(P99).is_some())
            .map(|c| c.system.clone()),
    );
    if systems.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Delay added to the path's one-way delay per delivered segment, ms: median p50 / \
         median p99 over the runs, then the p99's smallest and largest run:\n"
    );
    let _ = writeln!(md, "| loss % | {} |", systems.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(systems.len()));
    for &loss in losses {
        let mut line = format!("| {loss} |");
        for s in &systems {
            let text = match cell(cells, loss, s).map(|c| (c.get(P50), c.get(P99))) {
                Some((Some(p50), Some(p99))) => format!(
                    "{:.0} / {:.0} {:.0}–{:.0}",
                    p50.median, p99.median, p99.min, p99.max
                ),
                _ => "–".to_string(),
            };
            line.push_str(&format!(" {text} |"));
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md);
}

fn cpu_table(md: &mut String, f: &ResultsFile<CompareRow>) {
    let cells = summarize(&f.rows, CPU_FIGURES);
    let secs = f.rows.first().map_or(0, |r| r.secs);
    let _ = writeln!(
        md,
        "cpu: no loss, delay or rate stage, {secs} s of iperf3 per run, {}; median, then \
         min–max.\n",
        runs_phrase(&cells)
    );
    let _ = writeln!(
        md,
        "| system | goodput Mbit/s | CPU s | Mbit per CPU s | CPU s per GB |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for c in &cells {
        if c.all_failed() {
            let _ = writeln!(md, "| {} | {} | | | |", c.system, all_failed(c));
            continue;
        }
        let ok = c.runs - c.failed_runs;
        let cols: Vec<String> = CPU_FIGURES
            .iter()
            .map(|fig| with_range(c.get(fig.key), fig, ok))
            .collect();
        let _ = writeln!(
            md,
            "| {}{} | {} |",
            c.system,
            failed_note(c),
            cols.join(" | ")
        );
    }
    let _ = writeln!(md);
    failures(md, &cells);
}

fn latency_table(md: &mut String, f: &ResultsFile<LatencyRow>) {
    let cells = summarize(&f.rows, LATENCY_FIGURES);
    let rtt = f.rows.first().map_or(0.0, |r| r.rtt_ms);
    let count = f.rows.iter().map(|r| r.attempted).max().unwrap_or(0);
    let systems = distinct(cells.iter().map(|c| c.system.clone()));
    let losses = distinct(cells.iter().map(|c| c.loss_pct));
    let _ = writeln!(
        md,
        "latency, {rtt} ms round trip, {count} exchanges per run, {}. p50 / p99 / max ms per \
         exchange (medians over the runs; `timeout`: the percentile fell on an exchange over \
         10 s), then the p99's smallest and largest run, the wire bytes per request and response \
         byte (median; where recorded), and the exchanges over 10 s of all runs.\n",
        runs_phrase(&cells)
    );
    let _ = writeln!(md, "| loss % | {} |", systems.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(systems.len()));
    for &loss in &losses {
        let mut line = format!("| {loss} |");
        for s in &systems {
            let text = match cell(&cells, loss, s) {
                None => "–".to_string(),
                Some(c) if c.all_failed() => all_failed(c),
                Some(c) => {
                    let med = |k: usize| {
                        let fig = &LATENCY_FIGURES[k];
                        value(c.get(fig.key).map(|x| x.median), 0, fig.inf)
                    };
                    let mut t = format!("{} / {} / {}", med(0), med(1), med(2));
                    if c.runs - c.failed_runs > 1 {
                        let p99 = c.get("p99_ms");
                        t.push_str(&format!(
                            " (p99 {}–{})",
                            value(p99.map(|x| x.min), 0, "timeout"),
                            value(p99.map(|x| x.max), 0, "timeout")
                        ));
                    }
                    if let Some(wire) = c.get("wire_per_goodput").map(|x| x.median) {
                        if wire.is_finite() {
                            t.push_str(&format!(", wire {wire:.2}"));
                        }
                    }
                    let rows: Vec<&LatencyRow> = f
                        .rows
                        .iter()
                        .filter(|r| r.loss_pct == loss && r.system == *s && r.status == "ok")
                        .collect();
                    let failed: u64 = rows.iter().map(|r| u64::from(r.failed_exchanges)).sum();
                    if failed > 0 {
                        let n: u64 = rows.iter().map(|r| u64::from(r.attempted)).sum();
                        t.push_str(&format!(", {failed}/{n} over 10 s"));
                    }
                    t + &failed_note(c)
                }
            };
            line.push_str(&format!(" {text} |"));
        }
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md);
    failures(md, &cells);
}

fn game_table(md: &mut String, f: &ResultsFile<GameRow>) {
    let cells = summarize(&f.rows, GAME_FIGURES);
    let first = f.rows.first();
    let (rtt, deadline) = first.map_or((0.0, 50.0), |r| (r.rtt_ms, r.deadline_ms));
    let (profile, hz, size) =
        first.map_or(("game", 60, 100), |r| (r.profile.as_str(), r.hz, r.size));
    let sent = f.rows.iter().map(|r| r.sent).max().unwrap_or(0);
    let _ = writeln!(
        md,
        "{profile}, {rtt} ms round trip, {hz} Hz × {size} bytes, {sent} datagrams per run, \
         deadline {deadline} ms, {}; medians, then the smallest and largest run. `wire / \
         goodput`: UDP payload bytes on the underlay (tgp: both ends, both directions; raw: \
         the datagrams sent) per payload byte received. `late` / `expired`: the tgp ends' drop \
         counters (arrived after the receiver's deadline clock; expired in the sender's \
         queue).\n",
        runs_phrase(&cells)
    );
    let _ = writeln!(
        md,
        "| loss % | system | on time (≤ {deadline} ms) | received | p50 ms | p99 ms | wire / goodput | tgp late / expired |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for c in &cells {
        if c.all_failed() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | | | | | |",
                c.loss_pct,
                c.system,
                all_failed(c)
            );
            continue;
        }
        let ok = c.runs - c.failed_runs;
        let rows: Vec<&GameRow> = f
            .rows
            .iter()
            .filter(|r| r.loss_pct == c.loss_pct && r.system == c.system && r.status == "ok")
            .collect();
        let med = |v: Vec<f64>| crate::repeat::spread(&v).map(|s| s.median);
        let received = med(rows.iter().map(|r| r.received as f64).collect());
        let late = med(rows
            .iter()
            .filter_map(|r| r.tgp_late)
            .map(|x| x as f64)
            .collect());
        let expired = med(rows
            .iter()
            .filter_map(|r| r.tgp_expired)
            .map(|x| x as f64)
            .collect());
        let counters = match (late, expired) {
            (Some(l), Some(e)) => format!("{l:.0} / {e:.0}"),
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "| {} | {}{} | {} | {}/{sent} | {} | {} | {} | {counters} |",
            c.loss_pct,
            c.system,
            failed_note(c),
            with_range(c.get("on_time"), &GAME_FIGURES[0], ok),
            value(received, 0, "inf"),
            with_range(c.get("p50_ms"), &GAME_FIGURES[2], ok),
            with_range(c.get("p99_ms"), &GAME_FIGURES[1], ok),
            c.get("wire_per_goodput").map_or("–".into(), |w| with_range(
                Some(w),
                &GAME_FIGURES[3],
                ok
            )),
        );
    }
    let _ = writeln!(md);
    failures(md, &cells);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{write_json, Binary};

    fn row(system: &str, loss: f64, run: usize, goodput: Option<f64>) -> CompareRow {
        CompareRow {
            system: system.into(),
            run,
            loss_pct: loss,
            rtt_ms: 100.0,
            rate_mbit: 20.0,
            status: if goodput.is_some() { "ok" } else { "failed" }.into(),
            reason: goodput.is_none().then(|| "tunnel not up".to_string()),
            goodput_mbit: goodput,
            delivered_bytes: goodput.map(|g| (g * 1e6 / 8.0 * 5.0) as u64),
            wire_bytes: goodput.map(|g| (g * 1e6 / 8.0 * 5.0 * 1.25) as u64),
            wire_per_goodput: goodput
                .map(|g| if g > 0.0 { 1.25 } else { f64::INFINITY })
                .filter(|w| w.is_finite()),
            cpu_s: goodput.map(|_| 0.5),
            retransmits: None,
            added_delay_p50_ms: None,
            added_delay_p99_ms: None,
            secs: 5,
        }
    }

    fn fixture(root: &Path) -> PathBuf {
        let dir = root.join("compare-rtt100-20260101T000000Z");
        std::fs::create_dir_all(&dir).unwrap();
        let machine = Machine {
            kernel: "Linux 6.1 x86_64".into(),
            cpu: "Test CPU".into(),
            cpus: 2,
            started_utc: "2026-01-01T00:00:00Z".into(),
            git: "abc1234-dirty".into(),
            commit: "abc1234def5678900000000000000000000000000".into(),
            dirty: true,
            dirty_files: vec![" M bench/src/x.rs".into()],
            bench_profile: "release".into(),
            binaries: vec![Binary {
                role: "tgp".into(),
                path: "/t/release/tgp".into(),
                profile: "release".into(),
                modified_utc: "2025-12-31T23:00:00Z".into(),
                sha256: "0123456789abcdef".repeat(4),
                error: None,
            }],
            netem_modes: vec!["userspace".into()],
            command: "/t/release/tgp-bench compare --loss 0,10 --secs 5 --repeat 3".into(),
            env: vec![],
            cwd: "/".into(),
        };
        let mut rows = Vec::new();
        for (loss, a, b) in [
            (0.0, [18.0, 17.0, 19.0], [None, None, None]),
            (10.0, [9.0, 11.0, 10.0], [Some(4.0), None, Some(0.0)]),
        ] {
            for run in 0..3 {
                let mut tgp = row("tgp-cubic", loss, run + 1, Some(a[run]));
                tgp.added_delay_p50_ms = Some(2.0 + run as f64);
                tgp.added_delay_p99_ms = Some(40.0 + 10.0 * run as f64);
                rows.push(tgp);
                rows.push(row("openvpn", loss, run + 1, b[run]));
            }
        }
        let file = ResultsFile {
            scenario: "compare".into(),
            machine,
            counting: String::new(),
            params: serde_json::Value::Null,
            cells: summarize(&rows, COMPARE_FIGURES),
            rows,
        };
        write_json(&dir.join("compare.json"), &file).unwrap();
        dir
    }

    #[test]
    fn compare_report_has_the_command_medians_ranges_and_failures() {
        let tmp =
            std::env::temp_dir().join(format!("tgp-bench-report-test-{}", std::process::id()));
        let dir = fixture(&tmp);
        let written = refresh(&dir).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.starts_with("`tgp-bench compare --loss 0,10 --secs 5 --repeat 3`"),
            "{md}"
        );
        assert!(
            md.contains("commit abc1234def (work tree dirty: 1 changed file)"),
            "{md}"
        );
        assert!(
            md.contains("tgp release build of 2025-12-31T23:00:00Z"),
            "{md}"
        );
        assert!(
            md.contains("the userspace impairer tgp-impair (no sch_netem)"),
            "{md}"
        );
        assert!(
            md.contains("| loss % | limit | tgp-cubic | openvpn |"),
            "{md}"
        );
        assert!(
            md.contains("| 0 | 20.0 | 18.00 (1.250×) 17.00–19.00 | failed (3/3) |"),
            "{md}"
        );
        // openvpn at 10 %: runs 4.0 and 0.0 measured (0.0 delivered nothing:
        // wire per goodput infinite), one failed.
        assert!(
            md.contains(
                "| 10 | 18.0 | 10.00 (1.250×) 9.00–11.00 | 2.00 (inf×) 0.00–4.00, 1/3 failed |"
            ),
            "{md}"
        );
        // Only tgp measures added delay; openvpn gets no column.
        assert!(
            md.contains("| loss % | tgp-cubic |\n|---|---|\n| 0 | 3 / 50 40–60 |"),
            "{md}"
        );
        assert!(
            md.contains("- openvpn at 10 %, run 2: tunnel not up"),
            "{md}"
        );
        assert!(dir.join("goodput.svg").exists());
        let latest = tmp.join("latest-compare-rtt100.svg");
        let svg = std::fs::read_to_string(&latest).unwrap();
        assert!(svg.contains("<svg") && svg.contains("tgp-cubic"));
        assert!(written
            .iter()
            .any(|w| w.ends_with("latest-compare-rtt100.svg")));
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn results_made_before_repeat_still_report() {
        let tmp = std::env::temp_dir().join(format!("tgp-bench-report-old-{}", std::process::id()));
        let dir = tmp.join("game-rtt50-x");
        std::fs::create_dir_all(&dir).unwrap();
        // The shape game.json had before --repeat: no run, no deadline, no
        // cells, a machine with six fields.
        let old = r#"{"scenario":"game","machine":{"kernel":"k","cpu":"c","cpus":2,
            "started_utc":"t","git":"71bf477","command":"/x/tgp-bench game --loss 0"},
            "counting":"…","rows":[
            {"system":"udp","loss_pct":0.0,"rtt_ms":50.0,"status":"ok","reason":null,
             "sent":1200,"received":1200,"on_time":0.9125,"p50_ms":26.9,"p99_ms":175.8,"max_ms":294.2},
            {"system":"tgp","loss_pct":0.0,"rtt_ms":50.0,"status":"ok","reason":null,
             "sent":1200,"received":358,"on_time":0.2933,"p50_ms":25.7,"p99_ms":70.3,"max_ms":91.7}]}"#;
        std::fs::write(dir.join("game.json"), old).unwrap();
        refresh(&dir).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.starts_with("`tgp-bench game --loss 0`"), "{md}");
        assert!(md.contains("commit 71bf477;"), "{md}");
        assert!(
            md.contains("| 0 | tgp | 0.293 | 358/1200 | 25.7 | 70.3 | – |  |"),
            "{md}"
        );
        assert!(md.contains("one run per cell"), "{md}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_directory_without_results_is_an_error_that_says_so() {
        let e = Report::load(Path::new("/nonexistent-tgp-bench"))
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("not a results directory"));
        let tmp =
            std::env::temp_dir().join(format!("tgp-bench-report-empty-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let e = Report::load(&tmp).err().unwrap();
        assert!(format!("{e:#}").contains("no compare.json"));
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
