//! The root monitor of an unprivileged daemon. When `tgp up` gives up
//! root, the process started as root stays root as a monitor and runs the
//! daemon as its child (the same binary, with a hidden `--monitored`
//! flag): the daemon sets everything up, then drops to the user keeping
//! only `CAP_NET_ADMIN`; the monitor, when the daemon exits or crashes,
//! undoes the host changes only root can undo (forwarding sysctls, DNS,
//! the state file in `/run/tgp`, the control socket). The monitor parses
//! nothing from the network or the control socket: it forwards SIGINT,
//! SIGTERM and SIGHUP to the daemon, waits for it, and cleans up from the
//! state file.

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

/// The hidden flag that marks the daemon a monitor started.
pub const MONITORED_FLAG: &str = "--monitored";

/// Runs `daemon` (the `tgp up` command line with [`MONITORED_FLAG`]) as a
/// child, forwarding signals to it; when it ends, undoes what it left
/// (the state file of `interface`, the control socket at
/// `control_socket`). Returns the daemon's exit code (128 + the signal if
/// one killed it).
pub fn run(daemon: Command, interface: &str, control_socket: PathBuf) -> Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the monitor's runtime")?;
    let mut daemon = tokio::process::Command::from(daemon);
    let code = runtime.block_on(async {
        let mut child = daemon
            .kill_on_drop(false)
            .spawn()
            .context("starting the daemon")?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .context("the daemon has no pid")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        let mut hangup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
        loop {
            let forwarded = tokio::select! {
                status = child.wait() => break status.context("waiting for the daemon"),
                _ = interrupt.recv() => Signal::SIGINT,
                _ = terminate.recv() => Signal::SIGTERM,
                _ = hangup.recv() => Signal::SIGHUP,
            };
            if let Err(error) = kill(pid, forwarded) {
                warn!(%error, signal = %forwarded, "forwarding a signal to the daemon");
            }
        }
    })?;
    let code = match (
        code.code(),
        std::os::unix::process::ExitStatusExt::signal(&code),
    ) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(signal)) => {
            warn!(signal, "the daemon was killed");
            128u8.saturating_add(signal.clamp(0, 127) as u8)
        }
        (None, None) => 1,
    };
    match crate::system::cleanup_after_dead_daemon(interface) {
        Ok(line) => info!("{}", line.trim_end().trim_start_matches("tgp: ")),
        Err(error) => warn!(error = format!("{error:#}"), "cleaning up after the daemon"),
    }
    crate::control::remove_socket(&control_socket);
    Ok(code)
}

/// In the daemon a monitor started: end with SIGTERM when the monitor
/// dies (then the next `tgp up` or `tgp down` cleans up); fails if it is
/// already gone.
pub fn follow_monitor() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .context("asking for SIGTERM when the monitor dies")?;
    if nix::unistd::getppid() == Pid::from_raw(1) {
        anyhow::bail!("the monitor ended before the daemon started");
    }
    Ok(())
}
