//! Changes `tgp up` makes to the host outside its own interface — routes,
//! policy rules, an nftables table, sysctls, DNS — and how each is undone.
//!
//! A [`Change`] is a list of [`Step`]s, each naming the command that makes
//! it and the one that reverses it. [`HostChanges`] applies changes, keeps
//! what undoes those applied, and records that in a state file
//! (`/run/tgp/<interface>.host.json`) after every step, so that what a
//! crashed daemon left behind can be undone by the next `tgp up` or
//! `tgp down` ([`cleanup_stale`]). On reload it applies the difference
//! between two sets of changes ([`HostChanges::update`]); a failure undoes
//! what that update did and leaves the earlier set in place.
//!
//! The commands are those of iproute2 (`ip`), nftables (`nft`),
//! `resolvconf` and `resolvectl`, run like wg-quick runs them (and logged
//! like it, `[#] ip -4 route add ...`), so what tgp did can be read and
//! repeated by hand. Only these four programs can be named in a state file.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tracing::{info, warn};

/// Where state files live (the control sockets' directory).
pub const STATE_DIRECTORY: &str = "/run/tgp";

/// A program a step may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    /// iproute2's `ip`.
    Ip,
    /// nftables' `nft`.
    Nft,
    /// `resolvconf` (Debian's or openresolv).
    Resolvconf,
    /// systemd-resolved's `resolvectl`.
    Resolvectl,
}

impl Tool {
    /// The program's name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Ip => "ip",
            Tool::Nft => "nft",
            Tool::Resolvconf => "resolvconf",
            Tool::Resolvectl => "resolvectl",
        }
    }

    /// Where the program is: `PATH`, then the usual system directories
    /// (a `PATH` without `/usr/sbin` is common under sudo).
    pub fn find(self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join(self.program()))
            .find(|candidate| is_executable(candidate))
    }
}

/// Where the tools are found: the system's `PATH` (and the usual
/// directories), or only one directory (tests put stand-ins there).
#[derive(Clone, Debug, Default)]
pub struct Tools {
    only_in: Option<PathBuf>,
}

impl Tools {
    /// The system's tools.
    pub fn system() -> Tools {
        Tools::default()
    }

    /// Only the programs in `directory`.
    pub fn only_in(directory: impl Into<PathBuf>) -> Tools {
        Tools {
            only_in: Some(directory.into()),
        }
    }

    /// Where `tool` is, if installed.
    pub fn find(&self, tool: Tool) -> Option<PathBuf> {
        match &self.only_in {
            Some(dir) => Some(dir.join(tool.program())).filter(|p| is_executable(p)),
            None => tool.find(),
        }
    }

    /// Whether `tool` is installed.
    pub fn has(&self, tool: Tool) -> bool {
        self.find(tool).is_some()
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// One command: a program, its arguments, and optionally its standard input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The program.
    pub tool: Tool,
    /// Its arguments.
    pub args: Vec<String>,
    /// Written to its standard input, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

impl Command {
    /// `tool` with `args` (whitespace-separated words).
    pub fn new(tool: Tool, args: &str) -> Command {
        Command {
            tool,
            args: args.split_whitespace().map(str::to_owned).collect(),
            stdin: None,
        }
    }

    /// The same command with `input` on its standard input.
    pub fn with_stdin(mut self, input: impl Into<String>) -> Command {
        self.stdin = Some(input.into());
        self
    }

    /// Runs it and returns its standard output.
    pub fn output(&self, tools: &Tools) -> Result<String> {
        let output = std::process::Command::new(self.program(tools)?)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.display()))?;
        self.check(&output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Where its tool is installed.
    fn program(&self, tools: &Tools) -> Result<PathBuf> {
        tools
            .find(self.tool)
            .with_context(|| format!("{} is not installed", self.tool.program()))
    }

    /// Fails with the program's own message when it failed.
    fn check(&self, output: &std::process::Output) -> Result<()> {
        if !output.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// How it is logged: `ip -4 route add 10.0.0.0/8 dev tgp0`.
    pub fn display(&self) -> String {
        let mut text = self.tool.program().to_owned();
        for arg in &self.args {
            text.push(' ');
            text.push_str(arg);
        }
        text
    }

    /// Runs it; fails with the program's own message when it fails.
    pub fn run(&self, tools: &Tools) -> Result<()> {
        info!("[#] {}", self.display());
        let mut child = std::process::Command::new(self.program(tools)?)
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.display()))?;
        if let (Some(input), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .with_context(|| format!("writing to {}", self.tool.program()))?;
        }
        let output = child
            .wait_with_output()
            .with_context(|| format!("waiting for {}", self.display()))?;
        self.check(&output)
    }
}

/// One step of a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run `apply`; `undo` reverses it (`None`: an earlier step's undo
    /// covers it).
    Run {
        /// What makes the change.
        apply: Command,
        /// What reverses it.
        undo: Option<Command>,
    },
    /// Set a sysctl (`net.ipv4.ip_forward`); its old value is restored.
    Sysctl {
        /// The key, dotted.
        key: String,
        /// The value to set.
        value: String,
    },
}

/// What undoes one applied step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// Run this command.
    Run(Command),
    /// Write this value back to this sysctl.
    Sysctl {
        /// The key, dotted.
        key: String,
        /// The value it had.
        value: String,
    },
}

impl Undo {
    fn run(&self, tools: &Tools) -> Result<()> {
        match self {
            Undo::Run(command) => command.run(tools),
            Undo::Sysctl { key, value } => {
                info!("[#] sysctl -w {key}={value}");
                write_sysctl(key, value)
            }
        }
    }
}

fn sysctl_path(key: &str) -> Result<PathBuf> {
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        || key.contains("..")
    {
        bail!("{key:?} is not a sysctl key");
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

fn read_sysctl(key: &str) -> Result<String> {
    let path = sysctl_path(key)?;
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned())
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key)?;
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

/// A named set of steps, applied in order and undone in reverse. Two
/// changes with the same key are the same thing on the host: when
/// `replaces` is set, applying the new one replaces the old one in place
/// (an nftables table written whole, DNS settings for one link), so the old
/// one's undo must not run after it; otherwise the key says everything
/// (a route's key is the route).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What it is, e.g. `route 10.1.0.0/16` or `nftables`.
    pub key: String,
    /// Its steps.
    pub steps: Vec<Step>,
    /// Whether a change with this key replaces the earlier one in place.
    pub replaces: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AppliedChange {
    key: String,
    /// Undo actions in the order they must run.
    undo: Vec<Undo>,
    #[serde(skip)]
    applied: Option<Change>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    interface: String,
    pid: u32,
    /// The full tunnel's routing table and socket mark, when there is one.
    #[serde(default)]
    table: Option<u32>,
    changes: Vec<AppliedChange>,
}

/// The state file of an interface.
pub fn state_path(directory: &Path, interface: &str) -> PathBuf {
    directory.join(format!("{interface}.host.json"))
}

/// The changes applied for one interface, undone when dropped.
pub struct HostChanges {
    tools: Tools,
    interface: String,
    state_path: PathBuf,
    table: Option<u32>,
    applied: Vec<AppliedChange>,
    /// The state file, held open from before the daemon gave up root.
    held: Option<std::fs::File>,
    /// Dropped, leave the changes for the root monitor to undo.
    left_to_monitor: bool,
}

impl HostChanges {
    /// Nothing applied yet; the state file will be `directory/<interface>.host.json`.
    pub fn new(tools: Tools, directory: &Path, interface: &str) -> Result<HostChanges> {
        std::fs::create_dir_all(directory)
            .with_context(|| format!("creating {}", directory.display()))?;
        Ok(HostChanges {
            tools,
            interface: interface.to_owned(),
            state_path: state_path(directory, interface),
            table: None,
            applied: Vec::new(),
            held: None,
            left_to_monitor: false,
        })
    }

    /// Holds the state file open (written in place from now on, as the
    /// directory may no longer be writable) and leaves the changes in
    /// place when dropped.
    pub fn leave_to_monitor(&mut self) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.state_path)
            .with_context(|| format!("opening {}", self.state_path.display()))?;
        self.held = Some(file);
        self.left_to_monitor = true;
        self.save()
    }

    /// The full tunnel's table (and mark), once chosen.
    pub fn table(&self) -> Option<u32> {
        self.table
    }

    /// Records the full tunnel's table.
    pub fn set_table(&mut self, table: Option<u32>) -> Result<()> {
        self.table = table;
        self.save()
    }

    /// The keys of the changes in force, in the order applied.
    pub fn keys(&self) -> Vec<&str> {
        self.applied.iter().map(|c| c.key.as_str()).collect()
    }

    /// Makes the host match `wanted`: applies what is new or changed, then
    /// undoes what is no longer wanted. If a step fails, what this call
    /// applied is undone and the earlier changes stay in force.
    pub fn update(&mut self, wanted: &[Change]) -> Result<UpdateSummary> {
        let mut summary = UpdateSummary::default();
        let mut added: Vec<usize> = Vec::new();
        // Earlier changes replaced in place: (their index, the old record).
        let mut replaced: Vec<(usize, AppliedChange)> = Vec::new();
        for change in wanted {
            let current = self.applied.iter().position(|a| a.key == change.key);
            if let Some(index) = current {
                if self.applied[index].applied.as_ref() == Some(change) {
                    continue;
                }
                if !change.replaces {
                    // The key names the whole change (a route's key is
                    // the route), so this is the same change.
                    continue;
                }
            }
            match apply_change(&self.tools, change) {
                Ok(undo) => {
                    let record = AppliedChange {
                        key: change.key.clone(),
                        undo,
                        applied: Some(change.clone()),
                    };
                    match current {
                        Some(index) if change.replaces => {
                            let old = std::mem::replace(&mut self.applied[index], record);
                            replaced.push((index, old));
                            summary.replaced.push(change.key.clone());
                        }
                        _ => {
                            self.applied.push(record);
                            added.push(self.applied.len() - 1);
                            summary.added.push(change.key.clone());
                        }
                    }
                    self.save_or_warn();
                }
                Err(error) => {
                    self.roll_back(added, replaced);
                    return Err(error.context(format!("applying {}", change.key)));
                }
            }
        }
        let unwanted: Vec<usize> = (0..self.applied.len())
            .filter(|&i| !wanted.iter().any(|c| c.key == self.applied[i].key))
            .collect();
        for index in unwanted.into_iter().rev() {
            let change = self.applied.remove(index);
            summary.removed.push(change.key.clone());
            undo_all(&self.tools, &change.undo);
            self.save_or_warn();
        }
        Ok(summary)
    }

    fn roll_back(&mut self, added: Vec<usize>, replaced: Vec<(usize, AppliedChange)>) {
        for index in added.into_iter().rev() {
            let change = self.applied.remove(index);
            undo_all(&self.tools, &change.undo);
        }
        for (index, old) in replaced.into_iter().rev() {
            if let Some(change) = &old.applied {
                if let Err(error) = apply_change(&self.tools, change) {
                    warn!(%error, key = %old.key, "could not restore the earlier setting");
                }
            }
            self.applied[index] = old;
        }
        self.save_or_warn();
    }

    /// Undoes every change, newest first, and removes the state file.
    pub fn undo_everything(&mut self) {
        while let Some(change) = self.applied.pop() {
            undo_all(&self.tools, &change.undo);
        }
        self.table = None;
        let _ = std::fs::remove_file(&self.state_path);
    }

    fn save(&self) -> Result<()> {
        let state = StateFile {
            interface: self.interface.clone(),
            pid: std::process::id(),
            table: self.table,
            changes: self.applied.clone(),
        };
        let text = serde_json::to_string_pretty(&state).context("encoding the state file")?;
        if let Some(mut file) = self.held.as_ref() {
            use std::io::{Seek, Write};
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(text.as_bytes()))
                .with_context(|| format!("writing {}", self.state_path.display()))?;
            return Ok(());
        }
        let temporary = self.state_path.with_extension("json.tmp");
        std::fs::write(&temporary, text)
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.state_path)
            .with_context(|| format!("writing {}", self.state_path.display()))
    }

    fn save_or_warn(&self) {
        if let Err(error) = self.save() {
            warn!(
                error = format!("{error:#}"),
                "cannot record the host changes; a crash would leave them behind"
            );
        }
    }
}

impl Drop for HostChanges {
    fn drop(&mut self) {
        if self.left_to_monitor {
            return;
        }
        self.undo_everything();
    }
}

/// What [`HostChanges::update`] did, by change key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Applied anew.
    pub added: Vec<String>,
    /// Replaced in place.
    pub replaced: Vec<String>,
    /// Undone.
    pub removed: Vec<String>,
}

impl UpdateSummary {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.replaced.is_empty() && self.removed.is_empty()
    }
}

/// Applies every step; on a failure undoes the steps already done.
fn apply_change(tools: &Tools, change: &Change) -> Result<Vec<Undo>> {
    let mut undo = Vec::new();
    for step in &change.steps {
        let result = match step {
            Step::Run {
                apply,
                undo: reverse,
            } => apply.run(tools).map(|()| reverse.clone().map(Undo::Run)),
            Step::Sysctl { key, value } => apply_sysctl(key, value),
        };
        match result {
            Ok(Some(action)) => undo.insert(0, action),
            Ok(None) => {}
            Err(error) => {
                undo_all(tools, &undo);
                return Err(error);
            }
        }
    }
    Ok(undo)
}

fn apply_sysctl(key: &str, value: &str) -> Result<Option<Undo>> {
    let old = read_sysctl(key)?;
    if old == value {
        return Ok(None);
    }
    info!("[#] sysctl -w {key}={value}");
    write_sysctl(key, value)?;
    Ok(Some(Undo::Sysctl {
        key: key.to_owned(),
        value: old,
    }))
}

/// Runs undo actions in order; a failure is logged and the rest still run
/// (a route that is already gone with its interface is not a problem).
fn undo_all(tools: &Tools, undo: &[Undo]) {
    for action in undo {
        if let Err(error) = action.run(tools) {
            warn!(error = format!("{error:#}"), "undoing a host change");
        }
    }
}

/// Whether a process with this pid runs the tgp binary.
fn is_tgp_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "tgp")
}

/// Undoes what a daemon that is no longer running left for `interface`
/// (its state file). Returns how many changes were undone; `None` when
/// there was no state file. Refuses while the daemon that wrote it still
/// runs (unless it is this process).
pub fn cleanup_stale(tools: &Tools, directory: &Path, interface: &str) -> Result<Option<usize>> {
    let path = state_path(directory, interface);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let state: StateFile = match serde_json::from_str(&text) {
        Ok(state) => state,
        Err(error) => {
            warn!(%error, path = %path.display(), "unreadable state file; removing it");
            std::fs::remove_file(&path).ok();
            return Ok(Some(0));
        }
    };
    if state.pid != std::process::id() && is_tgp_process(state.pid) {
        bail!(
            "the tgp daemon for {interface} (pid {}) still runs; stop it with \
             `tgp down --interface {interface}`",
            state.pid
        );
    }
    info!(
        interface,
        changes = state.changes.len(),
        "undoing what an earlier tgp left behind"
    );
    for change in state.changes.iter().rev() {
        undo_all(tools, &change.undo);
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(Some(state.changes.len()))
}

/// The state files in `directory`, by interface name.
pub fn stale_interfaces(directory: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".host.json"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_display_like_a_shell_line() {
        let c = Command::new(Tool::Ip, "-4 route add 10.1.0.0/16 dev tgp0");
        assert_eq!(c.display(), "ip -4 route add 10.1.0.0/16 dev tgp0");
        assert_eq!(c.args.len(), 6);
    }

    #[test]
    fn sysctl_keys_cannot_leave_proc_sys() {
        assert!(sysctl_path("net.ipv4.ip_forward").is_ok());
        assert_eq!(
            sysctl_path("net.ipv4.conf.tgp-0.forwarding").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/tgp-0/forwarding")
        );
        for bad in ["", "../etc/passwd", "net/../../x", "a..b", "net.ipv4 x"] {
            assert!(sysctl_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_file_round_trips_and_names_only_known_tools() {
        let state = StateFile {
            interface: "tgp0".into(),
            pid: 1,
            table: Some(51900),
            changes: vec![AppliedChange {
                key: "route 10.1.0.0/16".into(),
                undo: vec![
                    Undo::Run(Command::new(Tool::Ip, "route del 10.1.0.0/16 dev tgp0")),
                    Undo::Sysctl {
                        key: "net.ipv4.ip_forward".into(),
                        value: "0".into(),
                    },
                ],
                applied: None,
            }],
        };
        let text = serde_json::to_string(&state).unwrap();
        let back: StateFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.changes[0].undo, state.changes[0].undo);
        assert_eq!(back.table, Some(51900));
        let evil = text.replace("\"ip\"", "\"sh\"");
        assert!(serde_json::from_str::<StateFile>(&evil).is_err());
    }

    #[test]
    fn cleanup_of_a_missing_or_broken_state_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            cleanup_stale(&Tools::only_in(dir.path()), dir.path(), "tgp9").unwrap(),
            None
        );
        std::fs::write(state_path(dir.path(), "tgp9"), "{ not json").unwrap();
        assert_eq!(
            cleanup_stale(&Tools::only_in(dir.path()), dir.path(), "tgp9").unwrap(),
            Some(0)
        );
        assert!(!state_path(dir.path(), "tgp9").exists());
        assert!(stale_interfaces(dir.path()).is_empty());
    }

    fn write_state(dir: &Path, pid: u32) {
        let state = StateFile {
            interface: "tgp9".into(),
            pid,
            table: None,
            changes: vec![AppliedChange {
                key: "nothing".into(),
                undo: vec![],
                applied: None,
            }],
        };
        std::fs::write(
            state_path(dir, "tgp9"),
            serde_json::to_string(&state).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn cleanup_undoes_a_dead_daemons_changes_and_spares_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        // A live process named tgp (sleep through a symlink named tgp; a
        // copy written here could fail to run with ETXTBSY while another
        // test thread forks with the copy's descriptor open): its state is
        // left.
        let fake = dir.path().join("tgp");
        std::os::unix::fs::symlink("/bin/sleep", &fake).unwrap();
        let mut live = std::process::Command::new(&fake).arg("30").spawn().unwrap();
        // spawn() returns before the child has exec'd (its name is the
        // test's until then): wait, boundedly, until it is named tgp.
        for _ in 0..500 {
            if is_tgp_process(live.id()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        write_state(dir.path(), live.id());
        let tools = Tools::only_in(dir.path());
        let error = cleanup_stale(&tools, dir.path(), "tgp9").unwrap_err();
        assert!(error.to_string().contains("still runs"), "{error}");
        assert_eq!(stale_interfaces(dir.path()), vec!["tgp9".to_string()]);
        live.kill().unwrap();
        live.wait().unwrap();
        // Once it is gone, its changes are undone.
        assert_eq!(cleanup_stale(&tools, dir.path(), "tgp9").unwrap(), Some(1));
        assert!(stale_interfaces(dir.path()).is_empty());
        // A pid that is not tgp (init) does not hold its state either.
        write_state(dir.path(), 1);
        assert_eq!(cleanup_stale(&tools, dir.path(), "tgp9").unwrap(), Some(1));
    }

    /// A stand-in `ip` that logs its arguments (and input) and fails when
    /// they contain FAIL.
    fn fake_tools(dir: &Path) -> (Tools, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let log = dir.join("log");
        for tool in ["ip", "nft"] {
            let script = dir.join(tool);
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> '{}'\ncase \"$*\" in *FAIL*) exit 1;; esac\n",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        (Tools::only_in(dir), log)
    }

    fn route(prefix: &str) -> Change {
        Change {
            key: format!("route {prefix}"),
            steps: vec![Step::Run {
                apply: Command::new(Tool::Ip, &format!("route add {prefix}")),
                undo: Some(Command::new(Tool::Ip, &format!("route del {prefix}"))),
            }],
            replaces: false,
        }
    }

    fn table(content: &str) -> Change {
        Change {
            key: "nftables".into(),
            steps: vec![Step::Run {
                apply: Command::new(Tool::Nft, &format!("-f {content}")),
                undo: Some(Command::new(Tool::Nft, "delete table")),
            }],
            replaces: true,
        }
    }

    fn take_log(log: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let _ = std::fs::remove_file(log);
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn update_applies_the_difference_and_a_failure_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (tools, log) = fake_tools(dir.path());
        let state = state_path(dir.path(), "tgp9");
        let mut host = HostChanges::new(tools, dir.path(), "tgp9").unwrap();
        host.update(&[route("a"), route("b"), table("one")])
            .unwrap();
        assert_eq!(
            take_log(&log),
            ["ip route add a", "ip route add b", "nft -f one"]
        );
        let recorded: StateFile =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
        assert_eq!(recorded.changes.len(), 3);
        assert_eq!(
            recorded.changes[1].undo,
            [Undo::Run(Command::new(Tool::Ip, "route del b"))]
        );

        // Same again: nothing runs.
        let summary = host
            .update(&[route("a"), route("b"), table("one")])
            .unwrap();
        assert!(summary.is_empty());
        assert!(take_log(&log).is_empty());

        // b goes, c comes, the table is replaced in place (its old undo
        // must not run: it would delete the new table).
        let summary = host
            .update(&[route("a"), route("c"), table("two")])
            .unwrap();
        assert_eq!(
            take_log(&log),
            ["ip route add c", "nft -f two", "ip route del b"]
        );
        assert_eq!(summary.added, ["route c"]);
        assert_eq!(summary.replaced, ["nftables"]);
        assert_eq!(summary.removed, ["route b"]);

        // A failing step: what this update did is undone, the table
        // restored, and nothing is removed.
        let error = host
            .update(&[route("d"), table("three"), route("FAIL")])
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("applying route FAIL"),
            "{error:#}"
        );
        assert_eq!(
            take_log(&log),
            [
                "ip route add d",
                "nft -f three",
                "ip route add FAIL",
                "ip route del d",
                "nft -f two"
            ]
        );
        assert_eq!(host.keys(), ["route a", "nftables", "route c"]);

        // Dropped: everything undone, newest first; the state file goes.
        drop(host);
        assert_eq!(
            take_log(&log),
            ["ip route del c", "nft delete table", "ip route del a"]
        );
        assert!(!state.exists());
    }

    #[test]
    fn a_crashed_daemons_changes_are_undone_from_its_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let (tools, log) = fake_tools(dir.path());
        let mut host = HostChanges::new(tools.clone(), dir.path(), "tgp9").unwrap();
        host.update(&[route("a"), table("one")]).unwrap();
        take_log(&log);
        // A crash: the process dies without undoing.
        std::mem::forget(host);
        // This process is alive and is a test binary, not "tgp": cleanup
        // proceeds (it also would for its own pid).
        assert_eq!(cleanup_stale(&tools, dir.path(), "tgp9").unwrap(), Some(2));
        assert_eq!(take_log(&log), ["nft delete table", "ip route del a"]);
        assert_eq!(cleanup_stale(&tools, dir.path(), "tgp9").unwrap(), None);
    }
}
