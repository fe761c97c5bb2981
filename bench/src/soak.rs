//! `tgp-bench soak`: one server and `--peers` clients, each in its own
//! network namespace with its own `tgp up`, every client carrying
//! `--flows` TCP flows (iperf3 -P, paced) through its tunnel for
//! `--seconds`; the daemons' resident memory (VmRSS) is sampled every
//! `--sample` seconds. A daemon whose state is bounded shows a flat line
//! after warm-up; `--max-growth-kb` turns that into a pass/fail check (the
//! short version in CI).

use crate::paths::{have, workspace_bin};
use crate::procs::{check_interrupt, ns_cmd, run, run_ok, wait_until, Proc};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Arguments of `tgp-bench soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Clients (each a peer of the server).
    #[arg(long, default_value_t = 10)]
    peers: usize,
    /// TCP flows per client.
    #[arg(long, default_value_t = 10)]
    flows: usize,
    /// How long the traffic runs, seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Sample interval, seconds.
    #[arg(long, default_value_t = 10)]
    sample: u64,
    /// Samples taken before this many seconds are warm-up.
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// Pace of each flow, kbit/s.
    #[arg(long, default_value_t = 200)]
    kbit_per_flow: u64,
    /// Fail if any daemon's RSS grows by more than this (kB) from the
    /// end of warm-up to the end.
    #[arg(long)]
    max_growth_kb: Option<u64>,
    /// Instead: in this process, a data plane sending reliable and
    /// deadline traffic for this many simulated minutes to a peer that
    /// keeps sending (it is heard from) but never acknowledges; this
    /// process's RSS sampled every simulated `--sample` seconds.
    #[arg(long)]
    unacknowledged_minutes: Option<u64>,
}

/// The unacknowledging peer: see [`SoakArgs::unacknowledged_minutes`].
fn unacknowledged(args: &SoakArgs, minutes: u64) -> Result<()> {
    use tgp_proto::crypto::aead::{AeadAlgorithm, PacketSealer};
    use tgp_proto::wire::frame::Frame;
    use tgp_proto::{DataPlane, DataPlaneConfig, DeliveryClass, SessionKeys, Timestamp};
    let (a, b) = SessionKeys::pair([1; 32], [2; 32], 5);
    let mut sender = DataPlane::new(Timestamp::ZERO, a, DataPlaneConfig::default());
    let mut peer = PacketSealer::new(AeadAlgorithm::Aes256Gcm, &b);
    let mut ping = Vec::new();
    Frame::Ping.encode(&mut ping);
    let mut buffer = Vec::new();
    let mut datagram = Vec::new();
    let mut now = Timestamp::ZERO;
    let step = Duration::from_millis(1);
    let self_pid = std::process::id();
    println!(
        "unacknowledged peer: {minutes} simulated minutes, this process's RSS every {} s (kB)",
        args.sample
    );
    println!(
        "{:>6} {:>10} {:>14} {:>12}",
        "t (s)", "RSS", "segments sent", "queued B"
    );
    let end = Duration::from_secs(minutes * 60);
    let mut next_sample = Duration::ZERO;
    let mut samples = Vec::new();
    while now.since_origin() <= end {
        check_interrupt()?;
        let _ = sender.send_segment(now, 1, DeliveryClass::Reliable, &[7; 1000]);
        let _ = sender.send_segment(
            now,
            2,
            DeliveryClass::Deadline(Duration::from_millis(100)),
            &[9; 200],
        );
        if sender.poll_timeout().is_some_and(|t| t <= now) {
            sender.handle_timeout(now);
        }
        for _ in 0..64 {
            buffer.clear();
            if sender.poll_transmit(now, &mut buffer).is_none() {
                break;
            }
        }
        // The peer is heard from every 10 ms: a keepalive, no receipt.
        if now.as_nanos().is_multiple_of(10_000_000) {
            peer.seal(&ping, &mut datagram).ok();
            let _ = sender.handle_datagram(now, &mut datagram);
        }
        if now.since_origin() >= next_sample {
            let rss = rss_kb(self_pid).unwrap_or(0);
            println!(
                "{:>6} {rss:>10} {:>14} {:>12}",
                now.since_origin().as_secs(),
                sender.stats().segments_sent,
                sender.queued_bytes()
            );
            samples.push(rss);
            next_sample += Duration::from_secs(args.sample);
        }
        now += step;
    }
    let warm = samples.len() / 3;
    let growth = samples[warm..]
        .iter()
        .max()
        .copied()
        .unwrap_or(0)
        .saturating_sub(samples.get(warm).copied().unwrap_or(0));
    println!("after the first third: RSS grew by {growth} kB");
    if let Some(limit) = args.max_growth_kb {
        if growth > limit {
            bail!("RSS grew by {growth} kB (more than {limit}) with an unacknowledging peer");
        }
    }
    Ok(())
}

/// Deletes the namespaces when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    run_ok(Command::new("ip").args(args), Duration::from_secs(10)).map(|_| ())
}

fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    run_ok(
        &mut ns_cmd(ns, args[0], &args[1..]),
        Duration::from_secs(10),
    )
    .map(|_| ())
}

fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn write_config(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Runs the soak; see the module documentation.
pub fn run_soak(args: &SoakArgs) -> Result<()> {
    if let Some(minutes) = args.unacknowledged_minutes {
        return unacknowledged(args, minutes);
    }
    if !have("iperf3") {
        bail!("iperf3 is missing (run scripts/setup)");
    }
    if args.peers == 0 || args.peers > 200 || args.flows == 0 || args.flows > 128 {
        bail!("--peers must be 1..=200 and --flows 1..=128");
    }
    let tgp = workspace_bin("TGP_BIN", "tgp")?;
    let id = std::process::id() % 100_000;
    let work = PathBuf::from(format!("/tmp/tgp-soak-{id}"));
    std::fs::create_dir_all(&work)?;
    let server_ns = format!("tgsk{id}s");
    let client_ns: Vec<String> = (0..args.peers).map(|i| format!("tgsk{id}c{i}")).collect();
    let mut all = vec![server_ns.clone()];
    all.extend(client_ns.iter().cloned());
    let _namespaces = Namespaces(all.clone());
    for ns in &all {
        ip(&["netns", "add", ns])?;
        in_ns(ns, &["ip", "link", "set", "lo", "up"])?;
    }
    let port = 52000;
    let key = |name: &str| -> Result<String> {
        let file = work.join(format!("{name}.key"));
        let _ = std::fs::remove_file(&file);
        run_ok(
            Command::new(&tgp).args(["genkey", "-o"]).arg(&file),
            Duration::from_secs(10),
        )?;
        Ok(run_ok(
            Command::new(&tgp).arg("pubkey").arg(&file),
            Duration::from_secs(10),
        )?
        .trim()
        .to_string())
    };
    let server_key = key("server")?;
    let mut server_config = format!(
        "[interface]\nname = \"tgsk{id}s\"\naddresses = [\"10.75.0.1/16\"]\nlisten_port = {port}\n\
         private_key_file = \"{}\"\n",
        work.join("server.key").display()
    );
    for (i, ns) in client_ns.iter().enumerate() {
        let (a, b) = (format!("sks{id}{i}"), format!("skc{id}{i}"));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])?;
        ip(&["link", "set", &a, "netns", &server_ns])?;
        ip(&["link", "set", &b, "netns", ns])?;
        let subnet = format!("10.94.{i}");
        in_ns(
            &server_ns,
            &["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", &a],
        )?;
        in_ns(
            ns,
            &["ip", "addr", "add", &format!("{subnet}.2/24"), "dev", &b],
        )?;
        in_ns(&server_ns, &["ip", "link", "set", &a, "up"])?;
        in_ns(ns, &["ip", "link", "set", &b, "up"])?;
        let client_key = key(&format!("client{i}"))?;
        server_config.push_str(&format!(
            "\n[[peer]]\npublic_key = \"{client_key}\"\nallowed_ips = [\"10.75.1.{i}/32\"]\n"
        ));
        write_config(
            &work.join(format!("client{i}.toml")),
            &format!(
                "[interface]\nname = \"tgsk{id}c{i}\"\naddresses = [\"10.75.1.{i}/16\"]\n\
                 private_key_file = \"{}\"\n\n[[peer]]\npublic_key = \"{server_key}\"\n\
                 allowed_ips = [\"10.75.0.1/32\"]\nendpoint = \"{subnet}.1:{port}\"\n",
                work.join(format!("client{i}.key")).display()
            ),
        )?;
    }
    write_config(&work.join("server.toml"), &server_config)?;
    let up = |ns: &str, config: &str, log: &str| -> Result<Proc> {
        let config = work.join(config);
        let config = config.to_string_lossy().to_string();
        Proc::spawn(
            log,
            // --keep-root: one process per daemon, whose RSS is the
            // daemon's (not a root monitor's).
            &mut ns_cmd(ns, &tgp.to_string_lossy(), &["up", "--keep-root", &config]),
            &work.join(format!("{log}.log")),
        )
    };
    let server = up(&server_ns, "server.toml", "server")?;
    let mut clients = Vec::new();
    for (i, ns) in client_ns.iter().enumerate() {
        clients.push(up(ns, &format!("client{i}.toml"), &format!("client{i}"))?);
    }
    for ns in &client_ns {
        let ok = wait_until(Duration::from_secs(20), || {
            run(
                &mut ns_cmd(ns, "ping", &["-c1", "-W1", "-q", "10.75.0.1"]),
                Duration::from_secs(3),
            )
            .is_ok_and(|o| o.status.success())
        });
        if !ok {
            bail!("no tunnel from {ns}: {}", server.log_tail(400));
        }
    }
    let mut traffic = Vec::new();
    for (i, ns) in client_ns.iter().enumerate() {
        let p = (5300 + i).to_string();
        traffic.push(Proc::spawn(
            "iperf3-s",
            &mut ns_cmd(&server_ns, "iperf3", &["-s", "-p", &p, "-B", "10.75.0.1"]),
            &work.join(format!("iperf3-s{i}.log")),
        )?);
        let _ = ns;
    }
    std::thread::sleep(Duration::from_millis(500));
    let total = args.seconds + 5;
    for (i, ns) in client_ns.iter().enumerate() {
        let p = (5300 + i).to_string();
        let rate = format!("{}K", args.kbit_per_flow);
        let flows = args.flows.to_string();
        traffic.push(Proc::spawn(
            "iperf3-c",
            &mut ns_cmd(
                ns,
                "iperf3",
                &[
                    "-c",
                    "10.75.0.1",
                    "-p",
                    &p,
                    "-P",
                    &flows,
                    "-b",
                    &rate,
                    "-t",
                    &total.to_string(),
                ],
            ),
            &work.join(format!("iperf3-c{i}.log")),
        )?);
    }
    println!(
        "soak: {} peers x {} flows at {} kbit/s each, {} s, RSS every {} s (kB)",
        args.peers, args.flows, args.kbit_per_flow, args.seconds, args.sample
    );
    println!(
        "{:>6} {:>12} {:>16} {:>12}",
        "t (s)", "server RSS", "max client RSS", "server CPU s"
    );
    let started = Instant::now();
    let mut samples: Vec<(u64, u64, u64)> = Vec::new();
    loop {
        check_interrupt()?;
        let t = started.elapsed().as_secs();
        let server_rss = rss_kb(server.pid()).context("the server daemon exited")?;
        let client_rss = clients
            .iter()
            .filter_map(|c| rss_kb(c.pid()))
            .max()
            .unwrap_or(0);
        println!(
            "{t:>6} {server_rss:>12} {client_rss:>16} {:>12.1}",
            server.cpu_s().unwrap_or(0.0)
        );
        samples.push((t, server_rss, client_rss));
        if t >= args.seconds {
            break;
        }
        let next = Duration::from_secs((t / args.sample + 1) * args.sample);
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    let after_warmup: Vec<&(u64, u64, u64)> =
        samples.iter().filter(|s| s.0 >= args.warmup).collect();
    let (Some(first), Some(last)) = (after_warmup.first(), after_warmup.last()) else {
        bail!("no sample after warm-up; run longer than --warmup");
    };
    let growth = |pick: fn(&(u64, u64, u64)) -> u64| {
        after_warmup
            .iter()
            .map(|s| pick(s))
            .max()
            .unwrap_or(0)
            .saturating_sub(pick(first))
    };
    let (server_growth, client_growth) = (growth(|s| s.1), growth(|s| s.2));
    println!(
        "after warm-up ({} s to {} s): server RSS {} -> {} kB (max growth {} kB), clients' max {} -> {} kB (max growth {} kB)",
        first.0, last.0, first.1, last.1, server_growth, first.2, last.2, client_growth
    );
    drop(traffic);
    drop(clients);
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    if let Some(limit) = args.max_growth_kb {
        if server_growth > limit || client_growth > limit {
            bail!("RSS grew by more than {limit} kB after warm-up");
        }
        println!("soak: RSS growth within {limit} kB after warm-up");
    }
    Ok(())
}
