//! The systems under test and how each is started on a [`NetPath`]: plain
//! kernel TCP, TCP through tgp, kcptun (forwarding one TCP port over KCP),
//! and wireguard-go.

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
    /// kcptun, `--mode fast3`, defaults otherwise.
    Kcptun,
    /// kcptun, fast3 with `--sndwnd 1024 --rcvwnd 1024`.
    KcptunTuned,
    /// wireguard-go.
    WireguardGo,
    /// Raw UDP, no tunnel (game scenario only).
    Udp,
    /// UDP through tgp (game scenario only).
    TgpUdp,
}

/// Every TCP system, in table order.
pub const TCP_SYSTEMS: [System; 7] = [
    System::TcpCubic,
    System::TcpBbr,
    System::TgpCubic,
    System::TgpBbr,
    System::Kcptun,
    System::KcptunTuned,
    System::WireguardGo,
];

impl System {
    /// Name used in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            System::TcpCubic => "tcp-cubic",
            System::TcpBbr => "tcp-bbr",
            System::TgpCubic => "tgp-cubic",
            System::TgpBbr => "tgp-bbr",
            System::Kcptun => "kcptun",
            System::KcptunTuned => "kcptun-tuned",
            System::WireguardGo => "wireguard-go",
            System::Udp => "udp",
            System::TgpUdp => "tgp",
        }
    }

    /// Parses a name from [`System::name`].
    pub fn parse(s: &str) -> Result<System> {
        TCP_SYSTEMS
            .iter()
            .chain([System::Udp, System::TgpUdp].iter())
            .copied()
            .find(|x| x.name() == s)
            .ok_or_else(|| anyhow!("unknown system {s:?}"))
    }

    /// The inner TCP congestion control.
    pub fn cc(self) -> &'static str {
        match self {
            System::TcpBbr | System::TgpBbr => "bbr",
            _ => "cubic",
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
}

impl Running {
    /// CPU seconds of all its processes so far.
    pub fn cpu_s(&self) -> f64 {
        self.procs.iter().filter_map(|p| p.cpu_s()).sum()
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
/// UDP port of the game stream (tgp gives it a 50 ms deadline class).
pub const GAME_PORT: u16 = 27015;

/// Starts `system` on `path`, a server on `ns_a` listening on `server_port`.
/// `rate_ceiling` is tgp's configured ceiling.
pub fn start(
    system: System,
    path: &NetPath,
    ctx: &Ctx,
    server_port: u16,
    rate_ceiling: &str,
) -> Result<Running> {
    path.set_cc(system.cc());
    let mut r = Running {
        system,
        procs: Vec::new(),
        host: path.a.clone(),
        port: server_port,
    };
    match system {
        System::TcpCubic | System::TcpBbr | System::Udp => {}
        System::TgpCubic | System::TgpBbr | System::TgpUdp => {
            start_tgp(&mut r, path, ctx, rate_ceiling)?
        }
        System::Kcptun | System::KcptunTuned => start_kcptun(&mut r, path, ctx, server_port)?,
        System::WireguardGo => start_wg(&mut r, path, ctx)?,
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

fn start_tgp(r: &mut Running, path: &NetPath, ctx: &Ctx, ceiling: &str) -> Result<()> {
    let tgp = workspace_bin("TGP_BIN", "tgp")?;
    let (key_a, pub_a, key_b, pub_b) = tgp_keys(ctx, &tgp)?;
    let name = unique("tg");
    let class =
        format!("[[peer.class]]\nprotocol = \"udp\"\nports = [{GAME_PORT}]\ndeadline = \"50ms\"\n");
    let cfg_a = format!(
        "[interface]\nname = \"{name}a\"\naddresses = [\"{TGP_A}/24\"]\nmtu = 1340\n\
         listen_port = 51900\nprivate_key_file = \"{}\"\nrate_ceiling = \"{ceiling}\"\n\n\
         [[peer]]\npublic_key = \"{pub_b}\"\nallowed_ips = [\"{TGP_B}/32\"]\n{class}",
        key_a.display()
    );
    let cfg_b = format!(
        "[interface]\nname = \"{name}b\"\naddresses = [\"{TGP_B}/24\"]\nmtu = 1340\n\
         listen_port = 51901\nprivate_key_file = \"{}\"\nrate_ceiling = \"{ceiling}\"\n\n\
         [[peer]]\npublic_key = \"{pub_a}\"\nendpoint = \"{}:51900\"\nallowed_ips = [\"{TGP_A}/32\"]\n{class}",
        key_b.display(),
        path.a
    );
    let fa = ctx.dir.join(format!("{name}a.toml"));
    let fb = ctx.dir.join(format!("{name}b.toml"));
    std::fs::write(&fa, cfg_a)?;
    std::fs::write(&fb, cfg_b)?;
    let tgp_s = tgp.to_string_lossy().into_owned();
    r.procs.push(Proc::spawn(
        "tgp (a)",
        &mut ns_cmd(&path.ns_a, &tgp_s, &["up", &fa.to_string_lossy()]),
        &ctx.log("tgp-a"),
    )?);
    r.procs.push(Proc::spawn(
        "tgp (b)",
        &mut ns_cmd(&path.ns_b, &tgp_s, &["up", &fb.to_string_lossy()]),
        &ctx.log("tgp-b"),
    )?);
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

fn start_wg(r: &mut Running, path: &NetPath, ctx: &Ctx) -> Result<()> {
    for (prog, pkg) in [("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools")] {
        if !have(prog) {
            bail!("{prog} not installed (Debian package {pkg}; run scripts/setup)");
        }
    }
    let [(key_a, pub_a), (key_b, pub_b)] = wg_keys(ctx)?;
    let name = unique("wg");
    let t = Duration::from_secs(10);
    for (side, ns) in [("a", &path.ns_a), ("b", &path.ns_b)] {
        let dev = format!("{name}{side}");
        let mut cmd = ns_cmd(ns, "wireguard-go", &["-f", &dev]);
        cmd.env("WG_PROCESS_FOREGROUND", "1");
        r.procs.push(Proc::spawn(
            &format!("wireguard-go ({side})"),
            &mut cmd,
            &ctx.log(&format!("wg{side}")),
        )?);
        let ok = wait_until(Duration::from_secs(10), || {
            run(&mut ns_cmd(ns, "ip", &["link", "show", &dev]), t)
                .map(|o| o.status.success())
                .unwrap_or(false)
                && Path::new(&format!("/var/run/wireguard/{dev}.sock")).exists()
        });
        r.check_alive()?;
        if !ok {
            bail!("wireguard-go made no interface {dev} within 10 s");
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
