//! The systems under test and how each is started on a [`NetPath`]: plain
//! kernel TCP, TCP through tgp (as a packet tunnel, and with `tcp_mode =
//! "split"`), kcptun (forwarding one TCP port over KCP), wireguard-go,
//! boringtun (`boringtun-cli`, configured with `wg` like wireguard-go) and
//! OpenVPN (UDP, static key).

use crate::paths::{have, unique, workspace_bin, NetPath};
use crate::procs::{listening, ns_cmd, run, run_ok, wait_until, Proc};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One system of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Plain kernel TCP, cubic.
    TcpCubic,
    /// Plain kernel TCP, bbr.
    TcpBbr,
    /// Kernel TCP (cubic) through tgp.
    TgpCubic,
    /// Kernel TCP (bbr) through tgp.
    TgpBbr,
    /// Kernel TCP (cubic) through tgp with `tcp_mode = "split"`.
    TgpSplitCubic,
    /// Kernel TCP (bbr) through tgp with `tcp_mode = "split"`.
    TgpSplitBbr,
    /// kcptun, `--mode fast3`, defaults otherwise.
    Kcptun,
    /// kcptun, fast3 with `--sndwnd 1024 --rcvwnd 1024`.
    KcptunTuned,
    /// wireguard-go.
    WireguardGo,
    /// boringtun (`boringtun-cli`, Cloudflare's userspace WireGuard in
    /// Rust); not in [`TCP_SYSTEMS`], `cpu` runs it.
    Boringtun,
    /// OpenVPN over UDP with a static key.
    Openvpn,
    /// Raw UDP, no tunnel (game scenario only).
    Udp,
    /// UDP through tgp (game scenario only).
    TgpUdp,
}

/// Every TCP system, in table order.
pub const TCP_SYSTEMS: [System; 10] = [
    System::TcpCubic,
    System::TcpBbr,
    System::TgpCubic,
    System::TgpBbr,
    System::TgpSplitCubic,
    System::TgpSplitBbr,
    System::Kcptun,
    System::KcptunTuned,
    System::WireguardGo,
    System::Openvpn,
];

impl System {
    /// Name used in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            System::TcpCubic => "tcp-cubic",
            System::TcpBbr => "tcp-bbr",
            System::TgpCubic => "tgp-cubic",
            System::TgpBbr => "tgp-bbr",
            System::TgpSplitCubic => "tgp-split-cubic",
            System::TgpSplitBbr => "tgp-split-bbr",
            System::Kcptun => "kcptun",
            System::KcptunTuned => "kcptun-tuned",
            System::WireguardGo => "wireguard-go",
            System::Boringtun => "boringtun",
            System::Openvpn => "openvpn",
            System::Udp => "udp",
            System::TgpUdp => "tgp",
        }
    }

    /// Parses a name from [`System::name`].
    pub fn parse(s: &str) -> Result<System> {
        TCP_SYSTEMS
            .iter()
            .chain([System::Boringtun, System::Udp, System::TgpUdp].iter())
            .copied()
            .find(|x| x.name() == s)
            .ok_or_else(|| anyhow!("unknown system {s:?}"))
    }

    /// The inner TCP congestion control.
    pub fn cc(self) -> &'static str {
        match self {
            System::TcpBbr | System::TgpBbr | System::TgpSplitBbr => "bbr",
            _ => "cubic",
        }
    }
}

/// How the tgp systems are configured.
#[derive(Clone, Debug)]
pub struct TgpOptions {
    /// `rate_ceiling` (None: the key is left out).
    pub rate_ceiling: Option<String>,
    /// Deadline of the game port's class.
    pub game_deadline_ms: f64,
}

impl TgpOptions {
    /// `rate_ceiling` = `ceiling`, the game port at a 50 ms deadline.
    pub fn new(ceiling: Option<String>) -> TgpOptions {
        TgpOptions {
            rate_ceiling: ceiling,
            game_deadline_ms: 50.0,
        }
    }
}

/// Per-run scratch state: a directory for configs, keys and logs.
pub struct Ctx {
    /// Scratch directory (removed on drop unless `keep`).
    pub dir: PathBuf,
    /// Keep the scratch directory (logs) after the run.
    pub keep: bool,
}

impl Ctx {
    /// Makes `/tmp/tgp-bench-PID`.
    pub fn new(keep: bool) -> Result<Ctx> {
        let dir = std::env::temp_dir().join(format!("tgp-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(Ctx { dir, keep })
    }

    /// A log file path in the scratch directory.
    pub fn log(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{}.log", unique(label)))
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A started system: its processes (stopped on drop) and where a client in
/// `ns_b` connects to reach a server on `ns_a` port `server_port`.
pub struct Running {
    /// The system.
    pub system: System,
    /// Tunnel (or forwarder) processes, both ends.
    pub procs: Vec<Proc>,
    /// Address the client dials.
    pub host: String,
    /// Port the client dials.
    pub port: u16,
    /// tgp's ends (for `tgp status`): network namespace and interface.
    pub tgp_interfaces: Vec<(String, String)>,
}

impl Running {
    /// CPU seconds of all its processes so far.
    pub fn cpu_s(&self) -> f64 {
        self.procs.iter().filter_map(|p| p.cpu_s()).sum()
    }

    /// The added delay (p50, p99, ms) that tgp measured where most
    /// segments were delivered (the data's receiving end), from both
    /// ends' `tgp status --json`; None for other systems or when no end
    /// recorded any.
    pub fn tgp_added_delay_ms(&self) -> Option<(f64, f64)> {
        let mut best: Option<(u64, f64, f64)> = None;
        for (_, out) in self.each_tgp_status(&["--json"]) {
            let Some(json) = out
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            else {
                continue;
            };
            for peer in json["peers"].as_array().into_iter().flatten() {
                let delay = &peer["data"]["added_delay"];
                let samples = delay["samples"].as_u64().unwrap_or(0);
                let at = |q: f64| {
                    delay["quantiles"].as_array()?.iter().find_map(|e| {
                        ((e["quantile"].as_f64()? - q).abs() < 1e-9)
                            .then(|| e["seconds"].as_f64())
                            .flatten()
                    })
                };
                if let (Some(p50), Some(p99)) = (at(0.5), at(0.99)) {
                    if samples > 0 && best.is_none_or(|(n, _, _)| samples > n) {
                        best = Some((samples, p50 * 1e3, p99 * 1e3));
                    }
                }
            }
        }
        best.map(|(_, p50, p99)| (p50, p99))
    }

    /// `tgp status` of each tgp end (interface name and its output or
    /// the error), for the record; empty for other systems.
    pub fn tgp_status(&self) -> Vec<(String, String)> {
        self.each_tgp_status(&[])
            .into_iter()
            .map(|(name, out)| (name, out.unwrap_or_else(|error| error)))
            .collect()
    }

    /// `tgp status EXTRA -i NAME` inside each tgp end's namespace (the
    /// control sockets are per namespace): interface name and its output,
    /// or why it failed; empty for other systems or without a tgp binary.
    fn each_tgp_status(
        &self,
        extra: &[&str],
    ) -> Vec<(String, std::result::Result<String, String>)> {
        let Ok(tgp) = workspace_bin("TGP_BIN", "tgp") else {
            return Vec::new();
        };
        let tgp = tgp.to_string_lossy();
        self.tgp_interfaces
            .iter()
            .map(|(ns, name)| {
                let mut args = vec!["status"];
                args.extend_from_slice(extra);
                args.extend_from_slice(&["-i", name]);
                let out = match run(&mut ns_cmd(ns, &tgp, &args), Duration::from_secs(5)) {
                    Ok(o) if o.status.success() => Ok(o.stdout),
                    Ok(o) => Err(format!(
                        "tgp status failed ({}): {}",
                        o.status,
                        o.stderr.trim()
                    )),
                    Err(e) => Err(format!("tgp status: {e:#}")),
                };
                (name.clone(), out)
            })
            .collect()
    }

    /// Fails if one of its processes has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            if let Some(st) = p.exited() {
                bail!("{} exited ({st}): {}", p.label, p.log_tail(300));
            }
        }
        Ok(())
    }
}

const KCP_PORT: u16 = 29900;
const KCP_LOCAL: u16 = 12948;
/// Inner addresses of tgp's tunnel.
pub const TGP_A: &str = "10.77.0.1";
const TGP_B: &str = "10.77.0.2";
const WG_A: &str = "10.78.0.1";
const WG_B: &str = "10.78.0.2";
const OVPN_A: &str = "10.79.0.1";
const OVPN_B: &str = "10.79.0.2";
const OVPN_PORT: u16 = 1194;
/// UDP port of the game stream (tgp gives it a 50 ms deadline class).
pub const GAME_PORT: u16 = 27015;

/// Starts `system` on `path`, a server on `ns_a` listening on `server_port`,
/// tgp configured by `tgp`.
pub fn start(
    system: System,
    path: &NetPath,
    ctx: &Ctx,
    server_port: u16,
    tgp: &TgpOptions,
) -> Result<Running> {
    path.set_cc(system.cc());
    let mut r = Running {
        system,
        procs: Vec::new(),
        host: path.a.clone(),
        port: server_port,
        tgp_interfaces: Vec::new(),
    };
    match system {
        System::TcpCubic | System::TcpBbr | System::Udp => {}
        System::TgpCubic | System::TgpBbr | System::TgpUdp => {
            start_tgp(&mut r, path, ctx, tgp, false)?
        }
        System::TgpSplitCubic | System::TgpSplitBbr => start_tgp(&mut r, path, ctx, tgp, true)?,
        System::Kcptun | System::KcptunTuned => start_kcptun(&mut r, path, ctx, server_port)?,
        System::WireguardGo => start_wg(&mut r, path, ctx, WgDaemon::WireguardGo)?,
        System::Boringtun => start_wg(&mut r, path, ctx, WgDaemon::Boringtun)?,
        System::Openvpn => start_openvpn(&mut r, path, ctx)?,
    }
    Ok(r)
}

fn ping_until_up(r: &mut Running, ns: &str, addr: &str, tries: u32) -> Result<()> {
    for _ in 0..tries {
        r.check_alive()?;
        let ok = run(
            &mut ns_cmd(ns, "ping", &["-c1", "-W1", addr]),
            Duration::from_secs(5),
        )
        .map(|o| o.status.success())
        .unwrap_or(false);
        if ok {
            return Ok(());
        }
    }
    bail!("tunnel not up: no ping reply from {addr} in {tries} tries")
}

fn tgp_keys(ctx: &Ctx, tgp: &Path) -> Result<(PathBuf, String, PathBuf, String)> {
    let mut out = Vec::new();
    for side in ["a", "b"] {
        let key = ctx.dir.join(format!("tgp-{side}.key"));
        if !key.exists() {
            run_ok(
                Command::new(tgp).args(["genkey", "-o"]).arg(&key),
                Duration::from_secs(10),
            )?;
        }
        let public = run_ok(
            Command::new(tgp).arg("pubkey").arg(&key),
            Duration::from_secs(10),
        )?
        .trim()
        .to_string();
        out.push((key, public));
    }
    let (b, a) = (out.pop().expect("two"), out.pop().expect("two"));
    Ok((a.0, a.1, b.0, b.1))
}

/// The two ends' configs: `[interface]` with `rate_ceiling` unless left
/// out and `tcp_mode` = "split" or "segment", one peer each, the game port
/// in a deadline class.
fn tgp_configs(
    name: &str,
    keys: (&Path, &str, &Path, &str),
    peer_a: &str,
    tgp: &TgpOptions,
    split: bool,
) -> (String, String) {
    let (key_a, pub_a, key_b, pub_b) = keys;
    let mut extra = String::new();
    if let Some(c) = &tgp.rate_ceiling {
        extra.push_str(&format!("rate_ceiling = \"{c}\"\n"));
    }
    extra.push_str(if split {
        "tcp_mode = \"split\"\n"
    } else {
        "tcp_mode = \"segment\"\n"
    });
    let class = format!(
        "[[peer.class]]\nprotocol = \"udp\"\nports = [{GAME_PORT}]\ndeadline = \"{}ms\"\n",
        tgp.game_deadline_ms
    );
    let cfg_a = format!(
        "[interface]\nname = \"{name}a\"\naddresses = [\"{TGP_A}/24\"]\nmtu = 1340\n\
         listen_port = 51900\nprivate_key_file = \"{}\"\n{extra}\n\
         [[peer]]\npublic_key = \"{pub_b}\"\nallowed_ips = [\"{TGP_B}/32\"]\n{class}",
        key_a.display()
    );
    let cfg_b = format!(
        "[interface]\nname = \"{name}b\"\naddresses = [\"{TGP_B}/24\"]\nmtu = 1340\n\
         listen_port = 51901\nprivate_key_file = \"{}\"\n{extra}\n\
         [[peer]]\npublic_key = \"{pub_a}\"\nendpoint = \"{peer_a}:51900\"\nallowed_ips = [\"{TGP_A}/32\"]\n{class}",
        key_b.display()
    );
    (cfg_a, cfg_b)
}

fn start_tgp(
    r: &mut Running,
    path: &NetPath,
    ctx: &Ctx,
    tgp_opts: &TgpOptions,
    split: bool,
) -> Result<()> {
    let tgp = workspace_bin("TGP_BIN", "tgp")?;
    let (key_a, pub_a, key_b, pub_b) = tgp_keys(ctx, &tgp)?;
    let name = unique("tg");
    let (cfg_a, cfg_b) = tgp_configs(
        &name,
        (&key_a, &pub_a, &key_b, &pub_b),
        &path.a,
        tgp_opts,
        split,
    );
    let fa = ctx.dir.join(format!("{name}a.toml"));
    let fb = ctx.dir.join(format!("{name}b.toml"));
    std::fs::write(&fa, cfg_a)?;
    std::fs::write(&fb, cfg_b)?;
    let tgp_s = tgp.to_string_lossy().into_owned();
    r.procs.push(Proc::spawn(
        "tgp (a)",
        &mut ns_cmd(
            &path.ns_a,
            &tgp_s,
            &["up", "--keep-root", &fa.to_string_lossy()],
        ),
        &ctx.log("tgp-a"),
    )?);
    r.procs.push(Proc::spawn(
        "tgp (b)",
        &mut ns_cmd(
            &path.ns_b,
            &tgp_s,
            &["up", "--keep-root", &fb.to_string_lossy()],
        ),
        &ctx.log("tgp-b"),
    )?);
    r.tgp_interfaces = vec![
        (path.ns_a.clone(), format!("{name}a")),
        (path.ns_b.clone(), format!("{name}b")),
    ];
    r.host = TGP_A.to_string();
    ping_until_up(r, &path.ns_b, TGP_A, 30)
}

fn start_kcptun(r: &mut Running, path: &NetPath, ctx: &Ctx, server_port: u16) -> Result<()> {
    for prog in ["kcptun-server", "kcptun-client"] {
        if !have(prog) {
            bail!("{prog} not installed (Debian package kcptun; run scripts/setup)");
        }
    }
    let mut extra: Vec<&str> = vec!["--mode", "fast3", "--quiet"];
    if r.system == System::KcptunTuned {
        extra.extend(["--sndwnd", "1024", "--rcvwnd", "1024"]);
    }
    let listen = format!(":{KCP_PORT}");
    let target = format!("127.0.0.1:{server_port}");
    let mut args = vec!["-l", &listen, "-t", &target];
    args.extend(&extra);
    r.procs.push(Proc::spawn(
        "kcptun-server",
        &mut ns_cmd(&path.ns_a, "kcptun-server", &args),
        &ctx.log("kcps"),
    )?);
    let local = format!("127.0.0.1:{KCP_LOCAL}");
    let remote = format!("{}:{KCP_PORT}", path.a);
    let mut args = vec!["-l", &local, "-r", &remote];
    args.extend(&extra);
    r.procs.push(Proc::spawn(
        "kcptun-client",
        &mut ns_cmd(&path.ns_b, "kcptun-client", &args),
        &ctx.log("kcpc"),
    )?);
    let up = wait_until(Duration::from_secs(10), || {
        listening(&path.ns_b, KCP_LOCAL, false) && listening(&path.ns_a, KCP_PORT, true)
    });
    r.check_alive()?;
    if !up {
        bail!("kcptun did not start listening within 10 s");
    }
    r.host = "127.0.0.1".to_string();
    r.port = KCP_LOCAL;
    Ok(())
}

fn wg_keys(ctx: &Ctx) -> Result<[(PathBuf, String); 2]> {
    let mut out = Vec::new();
    for side in ["a", "b"] {
        let key = ctx.dir.join(format!("wg-{side}.key"));
        if !key.exists() {
            let k = run_ok(Command::new("wg").arg("genkey"), Duration::from_secs(10))?;
            std::fs::write(&key, k.trim())?;
        }
        let public = run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(format!("wg pubkey < {}", key.display())),
            Duration::from_secs(10),
        )?;
        out.push((key, public.trim().to_string()));
    }
    let b = out.pop().expect("two");
    let a = out.pop().expect("two");
    Ok([a, b])
}

/// The userspace WireGuard daemons; both are configured with `wg` over
/// the same UAPI socket (`/var/run/wireguard/DEV.sock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WgDaemon {
    WireguardGo,
    /// `boringtun-cli` from PATH, or `$BORINGTUN` (its default of 4
    /// threads is kept).
    Boringtun,
}

impl WgDaemon {
    fn program(self) -> String {
        match self {
            WgDaemon::WireguardGo => "wireguard-go".into(),
            WgDaemon::Boringtun => {
                std::env::var("BORINGTUN").unwrap_or_else(|_| "boringtun-cli".into())
            }
        }
    }

    /// Why it cannot run here, if it cannot.
    fn missing(self) -> Option<String> {
        let program = self.program();
        let installed = have(&program) || Path::new(&program).is_file();
        match self {
            _ if installed => None,
            WgDaemon::WireguardGo => Some(
                "wireguard-go not installed (Debian package wireguard-go; run scripts/setup)"
                    .into(),
            ),
            WgDaemon::Boringtun => Some(format!(
                "{program} not installed (cargo install boringtun-cli, or set BORINGTUN to its path)"
            )),
        }
    }
}

fn start_wg(r: &mut Running, path: &NetPath, ctx: &Ctx, daemon: WgDaemon) -> Result<()> {
    if let Some(why) = daemon.missing() {
        bail!("{why}");
    }
    if !have("wg") {
        bail!("wg not installed (Debian package wireguard-tools; run scripts/setup)");
    }
    let program = daemon.program();
    let [(key_a, pub_a), (key_b, pub_b)] = wg_keys(ctx)?;
    let name = unique(match daemon {
        WgDaemon::WireguardGo => "wg",
        WgDaemon::Boringtun => "bt",
    });
    let t = Duration::from_secs(10);
    for (side, ns) in [("a", &path.ns_a), ("b", &path.ns_b)] {
        let dev = format!("{name}{side}");
        let mut cmd = match daemon {
            WgDaemon::WireguardGo => {
                let mut cmd = ns_cmd(ns, &program, &["-f", &dev]);
                cmd.env("WG_PROCESS_FOREGROUND", "1");
                cmd
            }
            WgDaemon::Boringtun => {
                let log = ctx.log(&format!("{name}{side}-boringtun"));
                let log = log.to_string_lossy().into_owned();
                ns_cmd(
                    ns,
                    &program,
                    &["-f", "--disable-drop-privileges", "-l", &log, &dev],
                )
            }
        };
        r.procs.push(Proc::spawn(
            &format!("{program} ({side})"),
            &mut cmd,
            &ctx.log(&format!("{name}{side}")),
        )?);
        let ok = wait_until(Duration::from_secs(10), || {
            run(&mut ns_cmd(ns, "ip", &["link", "show", &dev]), t)
                .map(|o| o.status.success())
                .unwrap_or(false)
                && Path::new(&format!("/var/run/wireguard/{dev}.sock")).exists()
        });
        r.check_alive()?;
        if !ok {
            bail!("{program} made no interface {dev} within 10 s");
        }
    }
    let (dev_a, dev_b) = (format!("{name}a"), format!("{name}b"));
    let key_a = key_a.to_string_lossy().into_owned();
    let key_b = key_b.to_string_lossy().into_owned();
    let endpoint = format!("{}:51820", path.a);
    run_ok(
        &mut ns_cmd(
            &path.ns_a,
            "wg",
            &[
                "set",
                &dev_a,
                "listen-port",
                "51820",
                "private-key",
                &key_a,
                "peer",
                &pub_b,
                "allowed-ips",
                &format!("{WG_B}/32"),
            ],
        ),
        t,
    )?;
    run_ok(
        &mut ns_cmd(
            &path.ns_b,
            "wg",
            &[
                "set",
                &dev_b,
                "private-key",
                &key_b,
                "peer",
                &pub_a,
                "allowed-ips",
                &format!("{WG_A}/32"),
                "endpoint",
                &endpoint,
                "persistent-keepalive",
                "25",
            ],
        ),
        t,
    )?;
    for (ns, dev, addr) in [(&path.ns_a, &dev_a, WG_A), (&path.ns_b, &dev_b, WG_B)] {
        run_ok(
            &mut ns_cmd(
                ns,
                "ip",
                &["addr", "add", &format!("{addr}/24"), "dev", dev],
            ),
            t,
        )?;
        run_ok(
            &mut ns_cmd(ns, "ip", &["link", "set", dev, "mtu", "1420", "up"]),
            t,
        )?;
    }
    r.host = WG_A.to_string();
    ping_until_up(r, &path.ns_b, WG_A, 30)
}

/// OpenVPN in UDP mode with a static key (`--secret`; deprecated in 2.6 and
/// to be removed in 2.7, which will need TLS with certificates instead):
/// point-to-point `tun` at both ends, `--cipher AES-256-CBC` (static-key
/// mode has no AEAD; HMAC-SHA1 is its default auth), every other option at
/// its default (tun MTU 1500, `mssfix 1492`, no compression).
fn start_openvpn(r: &mut Running, path: &NetPath, ctx: &Ctx) -> Result<()> {
    if !have("openvpn") {
        bail!("openvpn not installed (Debian package openvpn; run scripts/setup)");
    }
    let key = ctx.dir.join("openvpn-static.key");
    if !key.exists() {
        run_ok(
            Command::new("openvpn")
                .args(["--genkey", "secret"])
                .arg(&key),
            Duration::from_secs(10),
        )
        .context("openvpn --genkey secret")?;
    }
    let key_s = key.to_string_lossy().into_owned();
    let name = unique("ov");
    let port = OVPN_PORT.to_string();
    let remote = path.a.clone();
    for (side, ns, dev, local, peer) in [
        ("a", &path.ns_a, format!("{name}a"), OVPN_A, OVPN_B),
        ("b", &path.ns_b, format!("{name}b"), OVPN_B, OVPN_A),
    ] {
        let mut args = vec![
            "--dev",
            &dev,
            "--dev-type",
            "tun",
            "--proto",
            "udp",
            "--ifconfig",
            local,
            peer,
            "--secret",
            &key_s,
            if side == "a" { "0" } else { "1" },
            "--cipher",
            "AES-256-CBC",
            "--verb",
            "3",
        ];
        if side == "a" {
            args.extend(["--lport", &port]);
        } else {
            args.extend(["--remote", &remote, &port, "--nobind"]);
        }
        r.procs.push(Proc::spawn(
            &format!("openvpn ({side})"),
            &mut ns_cmd(ns, "openvpn", &args),
            &ctx.log(&format!("ovpn{side}")),
        )?);
    }
    r.host = OVPN_A.to_string();
    ping_until_up(r, &path.ns_b, OVPN_A, 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_ceiling_options_shape_both_configs() {
        let keys = (Path::new("/k/a"), "PUBA", Path::new("/k/b"), "PUBB");
        let with = TgpOptions::new(Some("20mbit".into()));
        let (a, b) = tgp_configs("tg1", keys, "10.1.1.1", &with, true);
        for cfg in [&a, &b] {
            let iface = cfg.split("[[peer]]").next().unwrap();
            assert!(iface.contains("rate_ceiling = \"20mbit\""), "{cfg}");
            assert!(iface.contains("tcp_mode = \"split\""), "{cfg}");
            assert!(cfg.contains("deadline = \"50ms\""), "{cfg}");
        }
        assert!(b.contains("endpoint = \"10.1.1.1:51900\""));
        assert!(a.contains("public_key = \"PUBB\"") && b.contains("public_key = \"PUBA\""));
        let mut without = TgpOptions::new(None);
        without.game_deadline_ms = 30.0;
        let (a, b) = tgp_configs("tg1", keys, "10.1.1.1", &without, false);
        for cfg in [&a, &b] {
            assert!(!cfg.contains("rate_ceiling"), "{cfg}");
            assert!(cfg.contains("tcp_mode = \"segment\""), "{cfg}");
            assert!(cfg.contains("deadline = \"30ms\""), "{cfg}");
        }
    }

    #[test]
    fn every_system_has_a_distinct_name_and_its_congestion_control() {
        let mut names: Vec<&str> = TCP_SYSTEMS.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TCP_SYSTEMS.len());
        assert_eq!(System::parse("tgp-split-bbr").unwrap().cc(), "bbr");
        assert_eq!(System::parse("tgp-split-cubic").unwrap().cc(), "cubic");
        assert_eq!(System::parse("openvpn").unwrap(), System::Openvpn);
        assert_eq!(System::parse("boringtun").unwrap(), System::Boringtun);
        assert!(!TCP_SYSTEMS.iter().any(|s| s.name() == "boringtun"));
    }
}
