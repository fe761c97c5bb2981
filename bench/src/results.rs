//! Results directories (`bench/results/<scenario>-<timestamp>/`), JSON and
//! CSV files, a description of the machine, the repository and the binaries
//! the figures came from, and the options every scenario shares.

use crate::paths::{repo_root, workspace_bin};
use crate::repeat::Summary;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The machine and software a run used, and how it was started: written
/// into every results directory (as `machine` in the scenario's JSON and as
/// `meta.json`) and printed by `tgp-bench report` beside the tables.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct Machine {
    /// `uname -srm`.
    pub kernel: String,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// UTC start time.
    pub started_utc: String,
    /// `git describe --always --dirty` of the repository at the start.
    pub git: String,
    /// Full commit hash of the repository's HEAD at the start.
    pub commit: String,
    /// Whether the work tree had changes against HEAD (tracked files).
    pub dirty: bool,
    /// The changed paths (`git status --porcelain`, at most 30).
    pub dirty_files: Vec<String>,
    /// Build profile of this tgp-bench (`release` or `debug`).
    pub bench_profile: String,
    /// The binaries the run used, with their profile, time and hash.
    pub binaries: Vec<Binary>,
    /// How the impaired paths were made: `userspace` (tgp-impair bridges
    /// the namespaces; the kernel has no sch_netem) or `tc` (sch_netem), as
    /// `netem/link up` reported for each path of the run.
    pub netem_modes: Vec<String>,
    /// The command line, shell-quoted.
    pub command: String,
    /// Environment that shapes the run (`TGP_*`, `CARGO_TARGET_DIR`).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
}

/// A binary a run used.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(default)]
pub struct Binary {
    /// What it is (`tgp`, `tgp-impair`, `tgp-bench`).
    pub role: String,
    /// Its path.
    pub path: String,
    /// Build profile read from its path (`…/release/…`, `…/debug/…`), or
    /// `unknown`.
    pub profile: String,
    /// Modification time, UTC.
    pub modified_utc: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Why it could not be described (not found, unreadable).
    pub error: Option<String>,
}

fn sh(cmd: &str) -> String {
    sh_lines(cmd).trim().to_string()
}

/// A shell command's output, leading blanks kept (`git status --porcelain`
/// starts lines with a space).
fn sh_lines(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .current_dir(repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
        .unwrap_or_default()
}

/// Quotes `arg` for a POSIX shell when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    sh(&format!("date -u -d @{secs} +%Y-%m-%dT%H:%M:%SZ"))
}

impl Binary {
    /// Describes the binary at `path`.
    pub fn describe(role: &str, path: &Path) -> Binary {
        let shown = path.display().to_string();
        let profile = if shown.contains("/release/") {
            "release"
        } else if shown.contains("/debug/") {
            "debug"
        } else {
            "unknown"
        };
        let mut b = Binary {
            role: role.to_string(),
            path: shown,
            profile: profile.to_string(),
            ..Binary::default()
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                b.sha256 = Sha256::digest(&bytes)
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect();
                if let Ok(m) = std::fs::metadata(path).and_then(|m| m.modified()) {
                    b.modified_utc = utc(m);
                }
            }
            Err(e) => b.error = Some(format!("cannot read {}: {e}", path.display())),
        }
        b
    }
}

impl Machine {
    /// Describes this machine, the repository and the binaries now.
    pub fn here() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let status = sh_lines("git status --porcelain --untracked-files=no 2>/dev/null");
        let dirty_files: Vec<String> = status.lines().take(30).map(str::to_string).collect();
        let mut binaries = Vec::new();
        if let Ok(me) = std::env::current_exe() {
            binaries.push(Binary::describe("tgp-bench", &me));
        }
        for (var, name) in [("TGP_BIN", "tgp"), ("TGP_IMPAIR", "tgp-impair")] {
            match workspace_bin(var, name) {
                Ok(p) => binaries.push(Binary::describe(name, &p)),
                Err(e) => binaries.push(Binary {
                    role: name.to_string(),
                    error: Some(format!("{e:#}")),
                    ..Binary::default()
                }),
            }
        }
        let env = std::env::vars()
            .filter(|(k, _)| k.starts_with("TGP_") || k == "CARGO_TARGET_DIR")
            .collect();
        Machine {
            kernel: sh("uname -srm"),
            cpu,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            started_utc: sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
            git: sh("git describe --always --dirty 2>/dev/null"),
            commit: sh("git rev-parse HEAD 2>/dev/null"),
            dirty: !dirty_files.is_empty(),
            dirty_files,
            bench_profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
            binaries,
            netem_modes: Vec::new(),
            command: std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
            env,
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }

    /// Notes how the run's paths were made (call after the run).
    pub fn finish(&mut self) {
        self.netem_modes = crate::paths::netem_modes_used();
    }

    /// The command as a user would type it: `tgp-bench` for the binary's
    /// path, the options unchanged.
    pub fn short_command(&self) -> String {
        let mut parts = self.command.splitn(2, ' ');
        let exe = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("");
        let name = exe.rsplit('/').next().unwrap_or(exe);
        if rest.is_empty() {
            name.to_string()
        } else {
            format!("{name} {rest}")
        }
    }
}

/// Options every real-socket scenario takes: repetitions, tgp's rate
/// ceiling, and where the figures go.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Runs per cell, interleaved across systems (A, B, C, A, B, C…); lines
    /// show the median and min–max over the runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
    /// Leave `rate_ceiling` out of the tgp systems' configs.
    #[arg(long)]
    pub no_rate_ceiling: bool,
    /// Where the figures go.
    #[command(flatten)]
    pub output: OutputArgs,
}

impl RunArgs {
    /// tgp's `rate_ceiling` for a path of `rate` (None: left out).
    pub fn ceiling(&self, rate: &str) -> Option<String> {
        (!self.no_rate_ceiling).then(|| rate.to_string())
    }
}

/// The output options every scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Also write every figure to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Results root (default: <repo>/bench/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write no results directory (JSON, CSV, plots).
    #[arg(long)]
    pub no_results: bool,
    /// Keep the scratch directory with the tunnels' logs.
    #[arg(long)]
    pub keep_logs: bool,
}

impl OutputArgs {
    /// Writes `file` to `--json` when given and, unless `--no-results`, into
    /// a new results directory `<dir_name>-<timestamp>`: `<scenario>.json`
    /// (everything), `<scenario>.csv` (`csv_rows`, one per run), `cells.csv`
    /// (the summaries) and `meta.json` (the machine, build and command).
    /// Returns the directory, for `report`.
    pub fn write<R: Serialize, C: Serialize>(
        &self,
        dir_name: &str,
        file: &ResultsFile<R>,
        csv_rows: &[C],
    ) -> Result<Option<PathBuf>> {
        if let Some(json) = &self.json {
            write_json(json, file)?;
        }
        if self.no_results {
            return Ok(None);
        }
        let dir = new_dir(self.out.as_deref(), dir_name)?;
        write_json(&dir.join(format!("{}.json", file.scenario)), file)?;
        write_json(&dir.join("meta.json"), &file.machine)?;
        write_csv(&dir.join(format!("{}.csv", file.scenario)), csv_rows)?;
        write_cells_csv(&dir.join("cells.csv"), &file.cells)?;
        Ok(Some(dir))
    }
}

/// A scenario's JSON file: what ran, every run's row and every cell's
/// summary.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ResultsFile<R> {
    /// `compare`, `latency`, `game` or `cpu`.
    pub scenario: String,
    /// Machine, repository, binaries, command.
    pub machine: Machine,
    /// What is counted, in words.
    #[serde(default)]
    pub counting: String,
    /// The scenario's parameters (round trip, rate, seconds, repeat, …).
    #[serde(default)]
    pub params: serde_json::Value,
    /// Every run, in the order measured.
    pub rows: Vec<R>,
    /// Per cell (system × loss rate): runs, failed runs, median, min, max.
    #[serde(default)]
    pub cells: Vec<Summary>,
}

/// Writes summaries as CSV: system, loss, runs, failed runs, then median,
/// min and max of each figure, then the failure reasons.
pub fn write_cells_csv(path: &Path, cells: &[Summary]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("write {}", path.display()))?;
    let keys: Vec<String> = cells
        .first()
        .map(|c| c.figures.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut header = vec![
        "system".to_string(),
        "loss_pct".into(),
        "runs".into(),
        "failed_runs".into(),
    ];
    for k in &keys {
        for stat in ["median", "min", "max"] {
            header.push(format!("{k}_{stat}"));
        }
    }
    header.push("reasons".into());
    w.write_record(&header)?;
    for c in cells {
        let mut rec = vec![
            c.system.clone(),
            c.loss_pct.to_string(),
            c.runs.to_string(),
            c.failed_runs.to_string(),
        ];
        for k in &keys {
            let sp = c.get(k);
            for v in [sp.map(|s| s.median), sp.map(|s| s.min), sp.map(|s| s.max)] {
                rec.push(v.map_or_else(String::new, |x| x.to_string()));
            }
        }
        rec.push(c.reasons.join(" | "));
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}

/// Makes `<root>/<scenario>-<UTC timestamp>` where root is `out` or
/// `<repo>/bench/results`.
pub fn new_dir(out: Option<&Path>, scenario: &str) -> Result<PathBuf> {
    let root = results_root(out);
    let dir = root.join(format!("{scenario}-{}", sh("date -u +%Y%m%dT%H%M%SZ")));
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    Ok(dir)
}

/// `out` or `<repo>/bench/results`.
pub fn results_root(out: Option<&Path>) -> PathBuf {
    out.map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("bench/results"))
}

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let s = serde_json::to_string_pretty(value)?;
    std::fs::write(path, s + "\n").with_context(|| format!("write {}", path.display()))
}

/// Writes `rows` as CSV with a header.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("write {}", path.display()))?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// Formats an optional figure: the number, or `failed`.
pub fn fig(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(v) => format!("{v:.decimals$}"),
        None => "failed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quoted_for_a_shell() {
        assert_eq!(shell_quote("--loss"), "--loss");
        assert_eq!(shell_quote("0,10"), "0,10");
        assert_eq!(
            shell_quote("/x/target/release/tgp-bench"),
            "/x/target/release/tgp-bench"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        let m = Machine {
            command: "/work/target/release/tgp-bench compare --loss 0,10 'a b'".into(),
            ..Machine::default()
        };
        assert_eq!(m.short_command(), "tgp-bench compare --loss 0,10 'a b'");
    }

    #[test]
    fn binaries_are_described_by_profile_time_and_hash() {
        let dir =
            std::env::temp_dir().join(format!("tgp-bench-meta-{}/release", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tgp");
        std::fs::write(&file, b"abc").unwrap();
        let b = Binary::describe("tgp", &file);
        assert_eq!(b.profile, "release");
        assert_eq!(
            b.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(
            b.modified_utc.starts_with("20") && b.modified_utc.ends_with('Z'),
            "{b:?}"
        );
        assert!(b.error.is_none());
        let missing = Binary::describe("tgp", &dir.join("nope"));
        assert!(missing.error.unwrap().contains("cannot read"));
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn the_machine_records_repository_build_and_command() {
        let m = Machine::here();
        assert!(m.cpus >= 1);
        assert_eq!(
            m.bench_profile,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        if repo_root().join(".git").exists() {
            assert_eq!(m.commit.len(), 40, "{m:?}");
            assert!(m.commit.chars().all(|c| c.is_ascii_hexdigit()));
        } else {
            assert!(m.commit.is_empty() && !m.dirty);
        }
        assert_eq!(m.dirty, !m.dirty_files.is_empty());
        assert!(
            m.git.contains("-dirty") == m.dirty || m.git.is_empty(),
            "{m:?}"
        );
        assert!(!m.command.is_empty() && !m.started_utc.is_empty());
        assert!(m
            .binaries
            .iter()
            .any(|b| b.role == "tgp-bench" && b.error.is_none()));
        assert!(m.binaries.iter().any(|b| b.role == "tgp"));
        // What a run writes, a report reads back.
        let back: Machine = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.commit, m.commit);
        // Results written before these fields existed still parse.
        let old: Machine = serde_json::from_str(
            r#"{"kernel":"k","cpu":"c","cpus":2,"started_utc":"t","git":"g","command":"x"}"#,
        )
        .unwrap();
        assert_eq!((old.cpus, old.git.as_str(), old.dirty), (2, "g", false));
    }
}
