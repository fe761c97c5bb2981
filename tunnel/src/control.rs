//! The control socket: how `tgp status` and `tgp down` talk to a running
//! `tgp up`. One Unix stream socket per interface and network namespace:
//! `/run/tgp/<interface>.sock` in the host's namespace, and
//! `/run/tgp/net-<inode>/<interface>.sock` in any other (the inode of
//! `/proc/self/ns/net`; `ip netns exec` shares `/run`, so two tunnels with
//! the same interface name in two namespaces would otherwise collide), in
//! directories only root may enter; or wherever `--control PATH` says. A
//! client writes one line (`status`, `status json`, `reload` or `down`)
//! and reads the answer until the daemon closes the connection.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tgp_adapters::DropCounters;
use tgp_proto::delivery::DelayHistogram;
use tgp_proto::endpoint::{Endpoint, SessionState};
use tgp_proto::handshake::DropReason as HandshakeDrop;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Where control sockets live.
pub const CONTROL_DIRECTORY: &str = "/run/tgp";

/// A request from a client, with the channel for its answer.
pub enum ControlRequest {
    /// Print the status.
    Status(oneshot::Sender<String>),
    /// Stop the daemon.
    Down(oneshot::Sender<String>),
    /// The status as JSON (`tgp status --json`).
    StatusJson(oneshot::Sender<String>),
    /// Re-read the config file and apply what changed (`tgp reload`).
    Reload(oneshot::Sender<String>),
    /// Prometheus metrics, for the metrics endpoint.
    Metrics(oneshot::Sender<String>),
}

impl ControlRequest {
    /// The request a control line asks for, answered through `reply`.
    pub fn from_line(line: &str, reply: oneshot::Sender<String>) -> Option<ControlRequest> {
        match line.trim() {
            "status" => Some(ControlRequest::Status(reply)),
            "status json" => Some(ControlRequest::StatusJson(reply)),
            "reload" => Some(ControlRequest::Reload(reply)),
            "down" => Some(ControlRequest::Down(reply)),
            _ => None,
        }
    }
}

/// The directory of this network namespace's control sockets:
/// [`CONTROL_DIRECTORY`] in the namespace of PID 1, a subdirectory named
/// after the namespace's inode in any other, and also when PID 1's
/// namespace cannot be read (as from inside `ip netns exec` on some
/// kernels): a daemon and its clients in one namespace always agree.
pub fn namespace_directory() -> PathBuf {
    let Ok(own) = std::fs::read_link("/proc/self/ns/net") else {
        return PathBuf::from(CONTROL_DIRECTORY);
    };
    if std::fs::read_link("/proc/1/ns/net").is_ok_and(|init| init == own) {
        return PathBuf::from(CONTROL_DIRECTORY);
    }
    // "net:[4026532281]" -> "net-4026532281"
    let inode: String = own
        .to_string_lossy()
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect();
    Path::new(CONTROL_DIRECTORY).join(format!("net-{inode}"))
}

/// The control socket's default path for an interface (in this network
/// namespace's directory).
pub fn socket_path(interface: &str) -> PathBuf {
    namespace_directory().join(format!("{interface}.sock"))
}

/// Removes the socket file when the daemon stops.
pub struct SocketGuard {
    path: PathBuf,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        remove_socket(&self.path);
    }
}

/// Removes a control socket, and its network namespace's directory
/// (`/run/tgp/net-<inode>/`) once nothing else is left in it (namespaces
/// come and go; their directories must not pile up).
pub fn remove_socket(path: &Path) {
    let _ = std::fs::remove_file(path);
    if let Some(directory) = path.parent() {
        let in_namespace_directory = directory.parent() == Some(Path::new(CONTROL_DIRECTORY))
            && directory
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("net-"));
        if in_namespace_directory {
            // Fails, and is meant to, while another file is in it.
            let _ = std::fs::remove_dir(directory);
        }
    }
}

/// Listens on the interface's control socket (`path`, or the default for
/// this network namespace) and forwards requests to the daemon's loop.
/// Fails if another daemon already serves it.
pub fn serve(
    interface: &str,
    path: Option<&Path>,
    requests: mpsc::Sender<ControlRequest>,
) -> Result<SocketGuard> {
    let path = path.map_or_else(|| socket_path(interface), Path::to_path_buf);
    if path.parent() == Some(namespace_directory().as_path()) {
        for directory in [PathBuf::from(CONTROL_DIRECTORY), namespace_directory()] {
            std::fs::create_dir_all(&directory)
                .with_context(|| format!("creating {}", directory.display()))?;
            std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {} to root", directory.display()))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            bail!(
                "a tgp daemon already runs for interface {interface} (control socket {}); \
                 stop it with `tgp down --interface {interface}`",
                path.display()
            );
        }
        // Left behind by a daemon that crashed.
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let _ = answer(stream, requests).await;
            });
        }
    });
    Ok(SocketGuard { path })
}

async fn answer(stream: UnixStream, requests: mpsc::Sender<ControlRequest>) -> Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(reader.take(256));
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await??;
    let (reply_tx, reply_rx) = oneshot::channel();
    let request = match ControlRequest::from_line(&line, reply_tx) {
        Some(request) => request,
        None => {
            let message = format!(
                "tgp: unknown control request {:?}; expected status, status json, reload or down\n",
                line.trim()
            );
            writer.write_all(message.as_bytes()).await?;
            return Ok(());
        }
    };
    requests.send(request).await.ok();
    if let Ok(reply) = reply_rx.await {
        writer.write_all(reply.as_bytes()).await?;
    }
    writer.shutdown().await?;
    Ok(())
}

/// Sends one request to the daemon at `control` (a socket path), or of
/// `interface`, or the only daemon running in this network namespace, and
/// returns its answer.
pub async fn request(
    interface: Option<&str>,
    control: Option<&Path>,
    command: &str,
) -> Result<String> {
    let path = match (control, interface) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(name)) => socket_path(name),
        (None, None) => only_socket()?,
    };
    let mut stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "connecting to {} (is `tgp up` running, and are you root?)",
            path.display()
        )
    })?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .context("the daemon did not answer within 10 s")??;
    Ok(answer)
}

fn only_socket() -> Result<PathBuf> {
    let directory = namespace_directory();
    let shown = directory.display();
    let entries = std::fs::read_dir(&directory).with_context(|| {
        format!("no tgp daemon is running in this network namespace ({shown} cannot be read; are you root?)")
    })?;
    let sockets: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    match sockets.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no tgp daemon is running (no socket in {shown})"),
        many => bail!(
            "{} tgp daemons are running; name one with --interface ({})",
            many.len(),
            many.iter()
                .filter_map(|p| p.file_stem())
                .map(|s| s.to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What the status text is made of.
pub struct StatusInput<'a> {
    /// The running config.
    pub config: &'a Config,
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// Packets the adapters dropped.
    pub adapter_drops: &'a DropCounters,
    /// IP packets read from the TUN.
    pub packets_from_tun: u64,
    /// IP packets written to the TUN.
    pub packets_to_tun: u64,
    /// ICMP unreachable errors written back to the TUN.
    pub icmp_errors_sent: u64,
    /// How late the daemon's timer woke it.
    pub timer_lateness: &'a DelayHistogram,
    /// Split mode's engines.
    pub split: &'a crate::split::SplitMode,
    /// The socket's local address.
    pub listen: Option<std::net::SocketAddr>,
    /// How long the daemon has run.
    pub uptime: Duration,
}

/// "p50 X ms  p99 Y ms" of `histogram`, with `decimals` digits.
fn p50_p99_ms(histogram: &DelayHistogram, decimals: usize) -> String {
    let ms = |q: f64| histogram.percentile(q).as_secs_f64() * 1e3;
    format!(
        "p50 {:.*} ms  p99 {:.*} ms",
        decimals,
        ms(0.5),
        decimals,
        ms(0.99)
    )
}

/// The text `tgp status` prints.
pub fn format_status(input: StatusInput<'_>) -> String {
    let mut out = String::new();
    let listen = input
        .listen
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    let _ = writeln!(
        out,
        "interface {}: listening on {listen}, up {:.0} s, tun packets in {} out {}, icmp errors sent {}",
        input.config.interface.name,
        input.uptime.as_secs_f64(),
        input.packets_from_tun,
        input.packets_to_tun,
        input.icmp_errors_sent,
    );
    if input.timer_lateness.count() > 0 {
        let _ = writeln!(
            out,
            "  timer: {} wake-ups, late by {}",
            input.timer_lateness.count(),
            p50_p99_ms(input.timer_lateness, 2),
        );
    }
    let drops = input.endpoint.drops();
    let adapter: Vec<String> = input
        .adapter_drops
        .iter()
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{name}={count}"))
        .collect();
    let _ = writeln!(
        out,
        "  drops: not_tgp={} unknown_peer={} unknown_session={} stale_handshake={} no_session={} send_refused={} {}",
        drops.not_tgp,
        drops.unknown_peer,
        drops.unknown_session,
        drops.stale_handshake,
        drops.no_session,
        drops.send_refused,
        adapter.join(" "),
    );
    for peer in 0..input.endpoint.peer_count() {
        let Some(status) = input.endpoint.peer_status(peer) else {
            continue;
        };
        let state = match status.state {
            SessionState::Idle => "idle",
            SessionState::Handshaking => "handshaking",
            SessionState::Up => "up",
        };
        let endpoint = status
            .endpoint
            .map_or_else(|| "(unknown)".to_string(), |a| a.to_string());
        let _ = writeln!(
            out,
            "peer {}\n  state: {state}  endpoint: {endpoint}  sessions: {}  waiting packets: {}",
            crate::keys::encode_key(&status.identity),
            status.sessions_started,
            status.pending_packets,
        );
        if let Some(data) = &status.data {
            let _ = writeln!(
                out,
                "  rtt: {:.1} ms (min {:.1} ms)  loss in: {:.1} %  loss out: {:.1} %  redundancy: {:.2}  rate: {:.2} Mbit/s (bottleneck {:.2})",
                data.smoothed_rtt.as_secs_f64() * 1e3,
                data.min_rtt.as_secs_f64() * 1e3,
                data.loss_inbound * 100.0,
                data.loss_outbound * 100.0,
                data.redundancy,
                data.pacing_rate_bits_per_second as f64 / 1e6,
                data.bottleneck_bits_per_second as f64 / 1e6,
            );
            let _ = writeln!(
                out,
                "  out: {} packets {} bytes  in: {} packets {} bytes  delivered: {} segments {} bytes  fec recovered: {}",
                data.datagrams_sent,
                data.bytes_sent,
                data.datagrams_received,
                data.bytes_received,
                data.segments_delivered,
                data.bytes_delivered,
                data.fec_recovered,
            );
            let _ = writeln!(
                out,
                "  repair sent: proactive {} fresh {}  redundant in: sources {} repairs {}",
                data.proactive_repairs_sent,
                data.reactive_repairs_sent,
                data.redundant_sources,
                data.redundant_repairs,
            );
            let _ = writeln!(
                out,
                "  paced: {} datagrams, {} short of data, {} below the rate estimate",
                data.paced_sent, data.paced_short_of_data, data.paced_below_estimate,
            );
            if data.added_delay.count() > 0 {
                let _ = writeln!(
                    out,
                    "  added delay (what the tunnel added to the path's one-way delay, {} samples): {}",
                    data.added_delay.count(),
                    p50_p99_ms(&data.added_delay, 1),
                );
            }
            let d = &data.drops;
            let _ = writeln!(
                out,
                "  data drops: truncated={} forged={} replayed={} stale={} malformed={} queue_full={} queue_delay={} too_large={} expired={} late={}",
                d.truncated, d.forged, d.replayed, d.stale, d.malformed, d.queue_full, d.queue_delay, d.too_large, d.expired_in_queue, d.arrived_late,
            );
        }
        if let Some(split) = input.split.stats(peer) {
            let reasons = |counts: &tgp_split::ResetCounts| {
                let all: Vec<String> = counts
                    .nonzero()
                    .iter()
                    .map(|(name, n)| format!("{name}={n}"))
                    .collect();
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(" ")
                }
            };
            let _ = writeln!(
                out,
                "  split: streams {} (accepted {}, opened by peer {}, connected {})  bytes out {} in {}  buffered {}  window {}  refused at cap {}  malformed {}",
                split.open_streams,
                split.accepted,
                split.opened_by_peer,
                split.connected,
                split.bytes_to_peer,
                split.bytes_from_peer,
                split.buffered_bytes,
                split.window,
                split.refused_at_cap,
                split.malformed,
            );
            let _ = writeln!(
                out,
                "  split resets: sent {}  received {}",
                reasons(&split.resets_sent),
                reasons(&split.resets_received),
            );
        }
        if let Some(handshake) = &status.handshake {
            let reasons: Vec<String> = HandshakeDrop::ALL
                .iter()
                .filter(|r| handshake.drops(**r) > 0)
                .map(|r| format!("{}={}", r.name(), handshake.drops(*r)))
                .collect();
            let _ = writeln!(
                out,
                "  handshake: sent {} received {} signature checks {}  drops: {}",
                handshake.packets_sent,
                handshake.packets_received,
                handshake.signature_verifications,
                if reasons.is_empty() {
                    "none".to_string()
                } else {
                    reasons.join(" ")
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tunnel::server_with_traffic;

    #[test]
    fn status_text_shows_the_added_delay() {
        let server = server_with_traffic();
        let text = format_status(server.input());
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("added delay"))
            .unwrap_or_else(|| panic!("no added delay line in:\n{text}"));
        assert!(line.contains("p50 ") && line.contains("p99 "), "{line}");
    }
}
