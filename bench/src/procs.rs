//! Child processes for the real-socket bench: every command runs with a
//! timeout, every long-running child is stopped when its guard drops, and
//! CPU time is read from `/proc/PID/stat` (also from a zombie, before it is
//! reaped).

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs a Ctrl-C / SIGTERM handler that makes every wait in this module
/// fail, so the guards (paths, processes) unwind and clean up.
pub fn install_interrupt_handler() {
    let r = ctrlc::set_handler(|| {
        eprintln!("tgp-bench: interrupted; cleaning up");
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
    if let Err(e) = r {
        tracing::warn!("no Ctrl-C handler: {e}");
    }
}

/// Fails once Ctrl-C was pressed.
pub fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Finished command: exit status and captured output.
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Runs `cmd` to completion, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = match child.wait_timeout(timeout)? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown} did not finish within {:?}", timeout);
        }
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs `cmd` and fails (with its stderr) unless it exits 0.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let shown = format!("{cmd:?}");
    let o = run(cmd, timeout)?;
    if !o.status.success() {
        bail!("{shown} failed ({}): {}", o.status, o.stderr.trim());
    }
    Ok(o.stdout)
}

/// `ip netns exec NS PROG ARGS…` (ip execs the program: the child's PID is
/// the program's).
pub fn ns_cmd(ns: &str, prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, prog]).args(args);
    c
}

fn clock_ticks() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// State letter and user+system CPU seconds of a process from
/// `/proc/PID/stat`.
pub fn proc_stat(pid: u32) -> Option<(char, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((state, (utime + stime) / clock_ticks()))
}

/// A long-running child with its output in a log file; stopped (SIGTERM,
/// then SIGKILL after 3 s) when dropped.
pub struct Proc {
    /// Short label for messages.
    pub label: String,
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// CPU seconds read when it became a zombie, if it did.
    final_cpu: Option<f64>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(label: &str, cmd: &mut Command, log: &Path) -> Result<Proc> {
        let f = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let f2 = f.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .with_context(|| format!("cannot start {label}: {cmd:?}"))?;
        tracing::debug!(label, pid = child.id(), "started");
        Ok(Proc {
            label: label.to_string(),
            child,
            log: log.to_path_buf(),
            final_cpu: None,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running; the exit status otherwise.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if let Some((state, cpu)) = proc_stat(self.pid()) {
            if state != 'Z' {
                return None;
            }
            self.final_cpu = Some(cpu);
        }
        self.child.try_wait().ok().flatten()
    }

    /// CPU seconds used so far (user + system).
    pub fn cpu_s(&self) -> Option<f64> {
        proc_stat(self.pid()).map(|(_, c)| c).or(self.final_cpu)
    }

    /// Waits up to `timeout` for it to exit; returns the status and the CPU
    /// seconds it used in all. On timeout it is killed and an error returned.
    pub fn wait(&mut self, timeout: Duration) -> Result<(ExitStatus, Option<f64>)> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                return Ok((st, self.final_cpu));
            }
            if let Err(e) = check_interrupt() {
                self.stop();
                return Err(e);
            }
            if Instant::now() >= end {
                self.stop();
                bail!("{} did not finish within {:?}", self.label, timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `n` bytes of its log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = s.len().saturating_sub(n);
        let start = (start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[start..].trim().replace('\n', " | ")
    }

    /// SIGTERM, wait up to 3 s, then SIGKILL; reaps it.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `probe` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= end || check_interrupt().is_err() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether something listens on TCP (or UDP with `udp`) `port` in `ns`.
pub fn listening(ns: &str, port: u16, udp: bool) -> bool {
    let flag = if udp { "-lun" } else { "-ltn" };
    let Ok(out) = run(
        &mut ns_cmd(ns, "ss", &[flag, &format!("sport = :{port}")]),
        Duration::from_secs(5),
    ) else {
        return false;
    };
    out.stdout.lines().count() > 1
}
