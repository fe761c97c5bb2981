//! Results directories (`bench/results/<scenario>-<timestamp>/`), JSON and
//! CSV files, and a description of the machine the figures came from.

use crate::paths::repo_root;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The machine and software a run used.
#[derive(Serialize, Clone, Debug)]
pub struct Machine {
    /// `uname -srm`.
    pub kernel: String,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// UTC start time.
    pub started_utc: String,
    /// `git describe --always --dirty` of the repository.
    pub git: String,
    /// The command line.
    pub command: String,
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .current_dir(repo_root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    /// Describes this machine now.
    pub fn here() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Machine {
            kernel: sh("uname -srm"),
            cpu,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            started_utc: sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
            git: sh("git describe --always --dirty 2>/dev/null"),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
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
    /// Writes `file` to `--json` when given and, unless `--no-results`,
    /// `<stem>.json` and `<stem>.csv` (from `csv_rows`) into a new results
    /// directory `<dir_name>-<timestamp>`, which it returns for plots.
    pub fn write<R: Serialize>(
        &self,
        dir_name: &str,
        stem: &str,
        file: &impl Serialize,
        csv_rows: &[R],
    ) -> Result<Option<PathBuf>> {
        if let Some(json) = &self.json {
            write_json(json, file)?;
        }
        if self.no_results {
            return Ok(None);
        }
        let dir = new_dir(self.out.as_deref(), dir_name)?;
        write_json(&dir.join(format!("{stem}.json")), file)?;
        write_csv(&dir.join(format!("{stem}.csv")), csv_rows)?;
        Ok(Some(dir))
    }
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
