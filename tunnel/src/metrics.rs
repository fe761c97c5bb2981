//! The optional Prometheus endpoint (`metrics_listen = "127.0.0.1:9586"`):
//! per-peer counters and gauges from a [`Snapshot`], encoded by the
//! `prometheus-client` crate in the OpenMetrics text format, served at
//! `GET /metrics`.
//!
//! Every scrape asks the daemon's loop for a fresh snapshot (through the
//! same channel as the control socket), so nothing is shared between
//! tasks. The HTTP side is written here rather than pulled in (hyper and
//! friends would double the daemon's dependencies for one read-only
//! route): one request per connection, a request head of at most 8 KiB
//! read within 5 s, at most 16 connections at once, `Connection: close`.
//! There is no authentication: listen on loopback, or firewall the port.
//!
//! Metric names (labels `interface`, and `peer` = the peer's public key):
//! `tgp_uptime_seconds`, `tgp_tun_packets_total{direction}`,
//! `tgp_icmp_errors_sent_total`, `tgp_drops_total{layer, reason}`,
//! `tgp_peers`, `tgp_peer_session_up`, `tgp_peer_sessions_started_total`,
//! `tgp_peer_pending_packets`, `tgp_peer_packets_total{direction}`,
//! `tgp_peer_bytes_total{direction}`, `tgp_peer_delivered_bytes_total`,
//! `tgp_peer_delivered_segments_total`, `tgp_peer_fec_recovered_total`,
//! `tgp_peer_loss_ratio{direction}`, `tgp_peer_rtt_seconds`,
//! `tgp_peer_min_rtt_seconds`, `tgp_peer_redundancy_ratio`,
//! `tgp_peer_pacing_rate_bits_per_second`,
//! `tgp_peer_bottleneck_bits_per_second`, `tgp_peer_drops_total{reason}`,
//! `tgp_peer_added_delay_seconds{quantile}`,
//! `tgp_peer_added_delay_samples_total`, `tgp_peer_repairs_sent_total{kind}`,
//! `tgp_peer_redundant_received_total{kind}`,
//! `tgp_peer_paced_datagrams_total{outcome}`,
//! `tgp_timer_lateness_seconds{quantile}`, `tgp_timer_wake_ups_total`,
//! `tgp_peer_handshake_packets_total{direction}`,
//! `tgp_peer_handshake_drops_total{reason}`,
//! `tgp_peer_split_open_streams`, `tgp_peer_split_bytes_total{direction}`.
//! Data-plane counters start again at zero with a new session (Prometheus'
//! `rate()` handles such resets).

use crate::control::ControlRequest;
use crate::snapshot::{DelaySnapshot, Snapshot};
use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, info};

/// The Content-Type of what [`encode_snapshot`] makes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const MAX_REQUEST_HEAD: usize = 8192;
const MAX_CONNECTIONS: usize = 16;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Families registered once per scrape, filled from the snapshot.
struct Families {
    registry: Registry,
}

impl Families {
    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let family = Family::<Labels, Counter>::default();
        self.registry.register(name, help, family.clone());
        family
    }

    fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>) -> Family<Labels, FloatGauge> {
        let family = Family::<Labels, FloatGauge>::default();
        match unit {
            Some(unit) => self
                .registry
                .register_with_unit(name, help, unit, family.clone()),
            None => self.registry.register(name, help, family.clone()),
        }
        family
    }
}

fn with(labels: &Labels, more: &[(&'static str, &str)]) -> Labels {
    let mut all = labels.clone();
    all.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    all
}

fn count(family: &Family<Labels, Counter>, labels: Labels, value: u64) {
    family.get_or_create(&labels).inc_by(value);
}

fn set(family: &Family<Labels, FloatGauge>, labels: Labels, value: f64) {
    family.get_or_create(&labels).set(value);
}

/// One gauge per quantile of `delay`, labelled `quantile`.
fn set_quantiles(family: &Family<Labels, FloatGauge>, labels: &Labels, delay: &DelaySnapshot) {
    for q in &delay.quantiles {
        let quantile = q.quantile.to_string();
        set(family, with(labels, &[("quantile", &quantile)]), q.seconds);
    }
}

/// Encodes a snapshot as OpenMetrics text (ends with `# EOF`).
pub fn encode_snapshot(snapshot: &Snapshot) -> String {
    let mut m = Families {
        registry: Registry::default(),
    };
    let base: Labels = vec![("interface", snapshot.interface.clone())];

    let uptime = m.gauge("tgp_uptime", "Time since tgp up", Some(Unit::Seconds));
    set(&uptime, base.clone(), snapshot.uptime_seconds);
    let tun = m.counter(
        "tgp_tun_packets",
        "IP packets read from (in) and written to (out) the TUN",
    );
    count(
        &tun,
        with(&base, &[("direction", "in")]),
        snapshot.tun_packets_in,
    );
    count(
        &tun,
        with(&base, &[("direction", "out")]),
        snapshot.tun_packets_out,
    );
    let icmp = m.counter(
        "tgp_icmp_errors_sent",
        "ICMP unreachable errors written to the TUN",
    );
    count(&icmp, base.clone(), snapshot.icmp_errors_sent);
    let lateness = m.gauge(
        "tgp_timer_lateness",
        "How late the daemon's timer woke it, by quantile",
        Some(Unit::Seconds),
    );
    set_quantiles(&lateness, &base, &snapshot.timer_lateness);
    let wake_ups = m.counter("tgp_timer_wake_ups", "Timer wake-ups of the daemon");
    count(&wake_ups, base.clone(), snapshot.timer_lateness.samples);
    let drops = m.counter(
        "tgp_drops",
        "Packets dropped outside any session, by layer (endpoint: datagrams; adapter: IP packets) and reason",
    );
    for (reason, n) in &snapshot.endpoint_drops {
        count(
            &drops,
            with(&base, &[("layer", "endpoint"), ("reason", reason)]),
            *n,
        );
    }
    for (reason, n) in &snapshot.adapter_drops {
        count(
            &drops,
            with(&base, &[("layer", "adapter"), ("reason", reason)]),
            *n,
        );
    }
    let peers = m.gauge("tgp_peers", "Configured peers", None);
    set(&peers, base.clone(), snapshot.peers.len() as f64);

    let up = m.gauge(
        "tgp_peer_session_up",
        "1 while a session with the peer is usable",
        None,
    );
    let sessions = m.counter(
        "tgp_peer_sessions_started",
        "Sessions set up with the peer, rekeys included",
    );
    let pending = m.gauge(
        "tgp_peer_pending_packets",
        "IP packets waiting for a session",
        None,
    );
    let packets = m.counter(
        "tgp_peer_packets",
        "Datagrams of the current session, sent and received",
    );
    let bytes = m.counter(
        "tgp_peer_bytes",
        "UDP payload bytes of the current session, sent and received",
    );
    let delivered_bytes = m.counter(
        "tgp_peer_delivered_bytes",
        "Payload bytes delivered to this side",
    );
    let delivered = m.counter(
        "tgp_peer_delivered_segments",
        "Segments delivered to this side",
    );
    let fec = m.counter("tgp_peer_fec_recovered", "Source symbols recovered by FEC");
    let loss = m.gauge(
        "tgp_peer_loss",
        "Loss of the peer's packets measured here (inbound) and of ours as the peer reports (outbound)",
        Some(Unit::Ratios),
    );
    let rtt = m.gauge(
        "tgp_peer_rtt",
        "Smoothed round-trip time",
        Some(Unit::Seconds),
    );
    let min_rtt = m.gauge(
        "tgp_peer_min_rtt",
        "Least round-trip time",
        Some(Unit::Seconds),
    );
    let redundancy = m.gauge(
        "tgp_peer_redundancy",
        "Proactive repair symbols per source symbol",
        Some(Unit::Ratios),
    );
    let pacing = m.gauge(
        "tgp_peer_pacing_rate",
        "Pacing rate",
        Some(Unit::Other("bits_per_second".into())),
    );
    let bottleneck = m.gauge(
        "tgp_peer_bottleneck",
        "Bottleneck rate estimate",
        Some(Unit::Other("bits_per_second".into())),
    );
    let data_drops = m.counter(
        "tgp_peer_drops",
        "Data-plane drops of the current session, by reason",
    );
    let delay = m.gauge(
        "tgp_peer_added_delay",
        "Delay the tunnel added to what it delivered here, by quantile",
        Some(Unit::Seconds),
    );
    let delay_samples = m.counter(
        "tgp_peer_added_delay_samples",
        "Added-delay samples recorded",
    );
    let repairs = m.counter(
        "tgp_peer_repairs_sent",
        "Repair symbols sent: proactive (earned by sources) and reactive (for holes)",
    );
    let redundant = m.counter(
        "tgp_peer_redundant_received",
        "Symbols that arrived with nothing left to do, sources and repairs",
    );
    let paced = m.counter(
        "tgp_peer_paced_datagrams",
        "Datagrams the pacer let out (sent), of which short of data or paced below the estimate",
    );
    let hs_packets = m.counter(
        "tgp_peer_handshake_packets",
        "Packets of the current or last handshake",
    );
    let hs_drops = m.counter("tgp_peer_handshake_drops", "Handshake drops, by reason");
    let split_streams = m.gauge(
        "tgp_peer_split_open_streams",
        "Split-mode streams open",
        None,
    );
    let split_bytes = m.counter(
        "tgp_peer_split_bytes",
        "Split-mode stream bytes to and from the peer",
    );

    for peer in &snapshot.peers {
        let p = with(&base, &[("peer", &peer.public_key)]);
        set(&up, p.clone(), if peer.state == "up" { 1.0 } else { 0.0 });
        count(&sessions, p.clone(), peer.sessions_started);
        set(&pending, p.clone(), peer.pending_packets as f64);
        if let Some(d) = &peer.data {
            count(&packets, with(&p, &[("direction", "sent")]), d.packets_sent);
            count(
                &packets,
                with(&p, &[("direction", "received")]),
                d.packets_received,
            );
            count(&bytes, with(&p, &[("direction", "sent")]), d.bytes_sent);
            count(
                &bytes,
                with(&p, &[("direction", "received")]),
                d.bytes_received,
            );
            count(&delivered_bytes, p.clone(), d.bytes_delivered);
            count(&delivered, p.clone(), d.segments_delivered);
            count(&fec, p.clone(), d.fec_recovered);
            set(&loss, with(&p, &[("direction", "inbound")]), d.loss_inbound);
            set(
                &loss,
                with(&p, &[("direction", "outbound")]),
                d.loss_outbound,
            );
            set(&rtt, p.clone(), d.rtt_seconds);
            set(&min_rtt, p.clone(), d.min_rtt_seconds);
            set(&redundancy, p.clone(), d.redundancy);
            set(&pacing, p.clone(), d.pacing_rate_bits_per_second as f64);
            set(&bottleneck, p.clone(), d.bottleneck_bits_per_second as f64);
            for (reason, n) in &d.drops {
                count(&data_drops, with(&p, &[("reason", reason)]), *n);
            }
            set_quantiles(&delay, &p, &d.added_delay);
            count(&delay_samples, p.clone(), d.added_delay.samples);
            for (family, counts) in [
                (&repairs, &d.repairs_sent),
                (&redundant, &d.redundant_received),
            ] {
                for (kind, n) in counts {
                    count(family, with(&p, &[("kind", kind)]), *n);
                }
            }
            for (outcome, n) in &d.paced {
                count(&paced, with(&p, &[("outcome", outcome)]), *n);
            }
        }
        if let Some(h) = &peer.handshake {
            count(
                &hs_packets,
                with(&p, &[("direction", "sent")]),
                h.packets_sent,
            );
            count(
                &hs_packets,
                with(&p, &[("direction", "received")]),
                h.packets_received,
            );
            for (reason, n) in &h.drops {
                count(&hs_drops, with(&p, &[("reason", reason)]), *n);
            }
        }
        if let Some(s) = &peer.split {
            set(&split_streams, p.clone(), s.open_streams as f64);
            count(
                &split_bytes,
                with(&p, &[("direction", "to_peer")]),
                s.bytes_to_peer,
            );
            count(
                &split_bytes,
                with(&p, &[("direction", "from_peer")]),
                s.bytes_from_peer,
            );
        }
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &m.registry);
    text
}

/// Listens on `address` and answers `GET /metrics` with what the daemon's
/// loop encodes for [`ControlRequest::Metrics`].
pub async fn serve(address: SocketAddr, requests: mpsc::Sender<ControlRequest>) -> Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("interface.metrics_listen: cannot listen on {address}"))?;
    info!(%address, "metrics at http://{address}/metrics");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        while let Ok((stream, from)) = listener.accept().await {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(%from, "metrics: too many connections; closing one");
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, requests)).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

/// What the request head asks for: the method and the path.
fn request_target(head: &str) -> Option<(&str, &str)> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    version.starts_with("HTTP/").then_some(())?;
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

async fn answer(mut stream: TcpStream, requests: mpsc::Sender<ControlRequest>) -> Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&head);
    match request_target(&head) {
        Some(("GET", "/metrics")) => {
            let (reply, answer) = oneshot::channel();
            requests.send(ControlRequest::Metrics(reply)).await.ok();
            match answer.await {
                Ok(text) => respond(&mut stream, "200 OK", CONTENT_TYPE, &text).await,
                Err(_) => {
                    respond(
                        &mut stream,
                        "503 Service Unavailable",
                        "text/plain",
                        "tgp is going down\n",
                    )
                    .await
                }
            }
        }
        Some(("GET", _)) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "tgp: metrics are at /metrics\n",
            )
            .await
        }
        Some(_) => respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await,
        None => respond(&mut stream, "400 Bad Request", "text/plain", "").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests;
