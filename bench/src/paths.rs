//! The impaired path (`netem/link`) as a guard that removes its namespaces
//! when dropped, and where the bench finds the repository, its binaries and
//! its scratch directory.

use crate::procs::{ns_cmd, run, run_ok};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The repository root: `$TGP_ROOT`, else the one this crate was built from.
pub fn repo_root() -> PathBuf {
    if let Some(r) = std::env::var_os("TGP_ROOT") {
        return PathBuf::from(r);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory (`$CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => {
            let t = PathBuf::from(t);
            if t.is_absolute() {
                t
            } else {
                repo_root().join(t)
            }
        }
        None => repo_root().join("target"),
    }
}

/// A release binary of this workspace: `$ENV_VAR`, else next to the running
/// `tgp-bench`, else in the target directory.
pub fn workspace_bin(env_var: &str, name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    if let Ok(me) = std::env::current_exe() {
        if let Some(dir) = me.parent() {
            tried.push(dir.join(name));
        }
    }
    tried.push(target_dir().join("release").join(name));
    for p in &tried {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    bail!(
        "{name} not found (tried {tried:?}); build it with cargo build --release, or set {env_var}"
    )
}

/// Whether a program is on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

static NETEM_MODES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The modes (`userspace`: tgp-impair; `tc`: sch_netem) `netem/link up`
/// reported for the paths built so far by this process.
pub fn netem_modes_used() -> Vec<String> {
    NETEM_MODES.lock().map(|m| m.clone()).unwrap_or_default()
}

fn note_netem_mode(mode: &str) {
    if let Ok(mut m) = NETEM_MODES.lock() {
        if !m.iter().any(|x| x == mode) {
            m.push(mode.to_string());
        }
    }
}

/// A short name unique to this process and call: `PREFIX` + PID + counter.
/// With a prefix of up to 3 characters and a 1-character suffix added by the
/// caller it fits an interface name (15).
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 1_000_000)
}

/// Path parameters.
#[derive(Clone, Copy, Debug)]
pub struct PathSpec {
    /// Random loss per direction, percent.
    pub loss_pct: f64,
    /// Round-trip time, ms (half in each direction).
    pub rtt_ms: f64,
    /// Link rate, Mbit/s; `None` for no rate stage.
    pub rate_mbit: Option<f64>,
}

/// A live `netem/link` path; `netem/link down` runs when it drops.
pub struct NetPath {
    /// The link's name.
    pub name: String,
    /// Namespace of side a (servers run here).
    pub ns_a: String,
    /// Namespace of side b (clients run here).
    pub ns_b: String,
    /// IPv4 address of a's eth0.
    pub a: String,
    /// IPv4 address of b's eth0.
    pub b: String,
    /// The parameters it was built with.
    pub spec: PathSpec,
    /// How it impairs: `userspace` (tgp-impair) or `tc` (sch_netem).
    pub mode: String,
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl NetPath {
    /// Builds the path (`netem/link up`).
    pub fn up(spec: PathSpec) -> Result<NetPath> {
        let name = format!("tb{}", unique(""));
        let link = repo_root().join("netem/link");
        let mut cmd = Command::new(&link);
        cmd.args([
            "up",
            &name,
            "--loss",
            &format!("{}%", fmt_num(spec.loss_pct)),
        ]);
        let one_way_us = (spec.rtt_ms * 500.0).round() as u64;
        if one_way_us > 0 {
            cmd.args(["--delay", &format!("{one_way_us}us")]);
        }
        if let Some(r) = spec.rate_mbit {
            cmd.args(["--rate", &format!("{}mbit", fmt_num(r))]);
        }
        if std::env::var_os("TGP_IMPAIR").is_none() {
            if let Ok(p) = workspace_bin("TGP_IMPAIR", "tgp-impair") {
                cmd.env("TGP_IMPAIR", p);
            }
        }
        // Construct the guard first so a half-built path is removed too.
        let mut path = NetPath {
            name: name.clone(),
            ns_a: format!("{name}-a"),
            ns_b: format!("{name}-b"),
            a: String::new(),
            b: String::new(),
            spec,
            mode: String::new(),
        };
        let out = run(&mut cmd, Duration::from_secs(180))?;
        if !out.status.success() {
            bail!("netem/link up {name} failed: {}", out.stderr.trim());
        }
        for tok in out.stdout.split_whitespace() {
            if let Some((k, v)) = tok.split_once('=') {
                let v = v.trim_matches(|c| c == '\'' || c == '"').to_string();
                match k {
                    "a" => path.a = v,
                    "b" => path.b = v,
                    "ns_a" => path.ns_a = v,
                    "ns_b" => path.ns_b = v,
                    "mode" => path.mode = v,
                    _ => {}
                }
            }
        }
        if path.a.is_empty() || path.b.is_empty() {
            return Err(anyhow!(
                "netem/link up printed no addresses: {:?}",
                out.stdout
            ));
        }
        if !path.mode.is_empty() {
            note_netem_mode(&path.mode);
        }
        tracing::info!(
            name,
            loss = spec.loss_pct,
            rtt = spec.rtt_ms,
            mode = path.mode,
            "path up"
        );
        Ok(path)
    }

    /// Bytes sent by both ends' eth0 (Ethernet frames as the kernel counts
    /// them: header and payload, no FCS), before the impairer drops any.
    pub fn wire_tx_bytes(&self) -> Result<u64> {
        Ok(tx_bytes(&self.ns_a, "eth0")? + tx_bytes(&self.ns_b, "eth0")?)
    }

    /// Tries to set the namespaces' default TCP congestion control; the
    /// kernel may refuse it in a namespace (when the algorithm is not in
    /// tcp_allowed_congestion_control), so the tools also select it per
    /// socket (iperf3 -C, TCP_CONGESTION) and check what they got.
    pub fn set_cc(&self, cc: &str) {
        for ns in [&self.ns_a, &self.ns_b] {
            let r = run_ok(
                &mut ns_cmd(
                    ns,
                    "sysctl",
                    &["-q", "-w", &format!("net.ipv4.tcp_congestion_control={cc}")],
                ),
                Duration::from_secs(10),
            );
            if let Err(e) = r {
                tracing::debug!("default congestion control not set: {e:#}");
            }
        }
    }
}

impl Drop for NetPath {
    fn drop(&mut self) {
        let link = repo_root().join("netem/link");
        match run(
            Command::new(link).args(["down", &self.name]),
            Duration::from_secs(60),
        ) {
            Ok(o) if o.status.success() => {}
            Ok(o) => tracing::warn!(name = self.name, err = o.stderr.trim(), "link down failed"),
            Err(e) => tracing::warn!(name = self.name, "link down failed: {e:#}"),
        }
    }
}

/// Transmitted bytes of `dev` in `ns` (`ip -s -j link show`).
pub fn tx_bytes(ns: &str, dev: &str) -> Result<u64> {
    let out = run_ok(
        &mut ns_cmd(ns, "ip", &["-s", "-j", "link", "show", dev]),
        Duration::from_secs(10),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -j output")?;
    v[0]["stats64"]["tx"]["bytes"]
        .as_u64()
        .ok_or_else(|| anyhow!("no tx bytes for {dev} in {ns}: {out}"))
}
