//! The daemon behind `tgp up`: moves bytes between the kernel (a TUN
//! device and a UDP socket) and the sans-IO [`Endpoint`], which makes every
//! protocol decision. It owns no protocol logic.
//!
//! One task runs the loop: read the TUN (outbound IP packets: parse,
//! route by allowed IPs, classify, clamp the MSS, hand to the endpoint),
//! read the socket (datagrams for the endpoint), fire the endpoint's
//! timer, answer the control socket, and after each of these send what the
//! endpoint wants sent and write what it delivered to the TUN.

use crate::config::Config;
use crate::control::{self, ControlRequest};
use crate::split::SplitMode;
use crate::system::HostSetup;
use crate::tun_io::{self, TunIo, TunReceive};
use crate::udp_io::{self, UdpIo};
use anyhow::{bail, Context, Result};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tgp_adapters::{
    clamp_tcp_mss, icmp_unreachable, mss_for_mtu, parse, AllowedIps, DropCounters, DropReason,
};
use tgp_proto::crypto::SigningKey;
use tgp_proto::delivery::{DataPlaneConfig, DelayHistogram};
use tgp_proto::endpoint::{Endpoint, EndpointConfig, Event, PeerId, PeerSettings};
use tgp_proto::handshake::HandshakeConfig;
use tgp_proto::Timestamp;
use tgp_split::is_stream_flow;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use tun_rs::DeviceBuilder;

/// The largest UDP payload tgp sends: fits a 1500-byte underlay MTU over
/// IPv6 (1500 − 40 − 8) without fragmentation.
pub const MAX_DATAGRAM_SIZE: usize = 1452;

/// Most datagrams or TUN packets handled in one go before the loop looks
/// at its other sources again.
const BATCH: usize = 64;

/// Maps the monotonic clock onto protocol timestamps.
struct Clock {
    origin: Instant,
}

impl Clock {
    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.origin.elapsed())
    }

    fn instant(&self, timestamp: Timestamp) -> Instant {
        self.origin + timestamp.since_origin()
    }
}

/// The endpoint configuration the daemon runs with. Both sides of a
/// tunnel must agree on the handshake parameters bound into commitments
/// (deadline, margin, datagram size); these are fixed here, not per
/// config file.
pub fn endpoint_config(config: &Config) -> EndpointConfig {
    let defaults = EndpointConfig::default();
    EndpointConfig {
        handshake: HandshakeConfig {
            max_datagram_size: MAX_DATAGRAM_SIZE as u16,
            ..HandshakeConfig::default()
        },
        data_plane: DataPlaneConfig {
            rate_ceiling_bits_per_second: config.interface.rate_ceiling.map(|c| c.0),
            // With a ceiling, start at the rate the user says the link has
            // (queueing delay brings the estimate down where the link is
            // slower). Without one, start low and let start-up find it.
            initial_rate_bits_per_second: config
                .interface
                .rate_ceiling
                .map_or(defaults.data_plane.initial_rate_bits_per_second, |c| c.0),
            max_datagram_size: MAX_DATAGRAM_SIZE,
            ..defaults.data_plane.clone()
        },
        ..defaults
    }
}

/// Everything the loop owns.
struct Tunnel {
    /// Routes, DNS, firewall: undone when the tunnel is dropped (first,
    /// while the interface still exists).
    host: HostSetup,
    own_public_key: [u8; 32],
    config: Config,
    clock: Clock,
    endpoint: Endpoint,
    /// The TUN device; it batches with offloads (see [`crate::tun_io`]).
    tun: TunIo,
    /// The underlay socket; it batches (see [`crate::udp_io`]).
    udp: UdpIo,
    allowed_ips: AllowedIps,
    split: SplitMode,
    adapter_drops: DropCounters,
    packets_from_tun: u64,
    packets_to_tun: u64,
    icmp_errors_sent: u64,
    /// How late the timer woke the loop (after the time it was set for).
    timer_lateness: DelayHistogram,
    started: Instant,
}

/// How `tgp up` runs, beyond its config file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The control socket's path (default: [`control::socket_path`]).
    pub control: Option<std::path::PathBuf>,
    /// The user to become once everything that needs root is set up (the
    /// TUN interface, the UDP socket, the control socket, the host's
    /// routes, rules and DNS); `None` keeps root. The daemon keeps
    /// `CAP_NET_ADMIN` (reloads change routes, rules and nftables), and
    /// leaves the host changes for its root monitor to undo
    /// ([`crate::monitor`], which `tgp up` forks off first).
    pub user: Option<String>,
    /// Whether a root monitor started this daemon (it follows the monitor
    /// out when the monitor dies).
    pub monitored: bool,
}

/// Gives up root for `user`: the bounding set down to `CAP_NET_ADMIN`,
/// supplementary groups, group, user (real, effective and saved), then
/// `CAP_NET_ADMIN` alone (ambient too, so `ip` and `nft` run by a reload
/// have it), and no way back (`no_new_privs`; a later `setuid(0)` must
/// fail, or this refuses to go on). Does nothing when not root.
fn drop_privileges(user: &str) -> Result<()> {
    use caps::{CapSet, Capability, CapsHashSet};
    use nix::unistd::{getuid, setgroups, setresgid, setresuid, setuid, Uid, User};
    if !getuid().is_root() {
        return Ok(());
    }
    let account = User::from_name(user)
        .with_context(|| format!("looking up user {user}"))?
        .with_context(|| {
            format!("user {user} does not exist; create it, name another with --user, or use --keep-root")
        })?;
    if account.uid.is_root() {
        bail!("--user {user} is root; name an unprivileged user or use --keep-root");
    }
    let kept = Capability::CAP_NET_ADMIN;
    for capability in caps::all() {
        if capability != kept {
            caps::drop(None, CapSet::Bounding, capability)
                .with_context(|| format!("dropping {capability} from the bounding set"))?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).context("keeping capabilities across setuid")?;
    setgroups(&[account.gid]).context("dropping supplementary groups")?;
    setresgid(account.gid, account.gid, account.gid).context("setting the group")?;
    setresuid(account.uid, account.uid, account.uid).context("setting the user")?;
    let only: CapsHashSet = [kept].into_iter().collect();
    for set in [CapSet::Permitted, CapSet::Effective, CapSet::Inheritable] {
        caps::set(None, set, &only).with_context(|| format!("keeping only {kept} ({set:?})"))?;
    }
    caps::raise(None, CapSet::Ambient, kept).with_context(|| format!("making {kept} ambient"))?;
    nix::sys::prctl::set_keepcaps(false).context("clearing keepcaps")?;
    nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    if setuid(Uid::from_raw(0)).is_ok() {
        bail!("still able to regain root after dropping privileges; refusing to run");
    }
    info!(
        user,
        uid = account.uid.as_raw(),
        "dropped root privileges (CAP_NET_ADMIN kept)"
    );
    Ok(())
}

/// Brings the tunnel up and runs it until SIGINT, SIGTERM or `tgp down`.
/// The TUN interface and the control socket are removed on the way out.
pub async fn run(config: Config, identity: SigningKey, options: RunOptions) -> Result<()> {
    let key_file = &config.interface.private_key_file;
    if crate::keys::is_readable_by_others(key_file).unwrap_or(false) {
        warn!(
            file = %key_file.display(),
            "the private key is readable by other users; chmod 600 it"
        );
    }
    let endpoint_config = endpoint_config(&config);
    let peers: Vec<PeerSettings> = config
        .peers
        .iter()
        .map(|peer| PeerSettings {
            identity: peer.public_key,
            endpoint: peer.endpoint,
        })
        .collect();
    let clock = Clock {
        origin: Instant::now(),
    };
    let unix_time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_millis() as u64;
    let own_public_key = identity.verifying_key().to_bytes();
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let endpoint = Endpoint::new(
        clock.now(),
        unix_time_ms,
        identity,
        endpoint_config,
        peers,
        seed,
    );
    let max_packet = endpoint.max_packet_size();
    if usize::from(config.interface.mtu) > max_packet {
        bail!(
            "interface.mtu = {} is larger than one tgp segment carries ({max_packet} bytes); \
             set interface.mtu to {max_packet} or less",
            config.interface.mtu
        );
    }
    let tun = TunIo::open(|| tun_builder(&config), tun_io::offload_from_env())
        .context("creating the TUN interface (are you root?)")?;
    let udp = UdpIo::bind(config.interface.listen_port, udp_io::Mode::from_env())
        .await
        .with_context(|| {
            format!(
                "binding the UDP socket (port {}); is another daemon using it?",
                config.interface.listen_port.unwrap_or(0)
            )
        })?;
    info!(
        interface = %config.interface.name,
        listen = %udp.socket().local_addr()?,
        peers = config.peers.len(),
        "tunnel up"
    );
    let (control_tx, mut control_rx) = mpsc::channel::<ControlRequest>(8);
    let control_guard = control::serve(
        &config.interface.name,
        options.control.as_deref(),
        control_tx.clone(),
    )
    .context("opening the control socket")?;
    let host = HostSetup::up(&config).context("setting up routes, DNS and firewall rules")?;
    crate::system::mark_socket(udp.socket(), host.fwmark())?;
    if let Some(address) = config.interface.metrics_listen {
        crate::metrics::serve(address, control_tx).await?;
    }
    let mut host = host;
    let root = nix::unistd::getuid().is_root();
    if let Some(user) = options.user.as_deref().filter(|_| root) {
        host.leave_to_monitor()
            .context("keeping the host state file open")?;
        drop_privileges(user)?;
        if options.monitored {
            // Changing credentials cleared the parent-death signal.
            crate::monitor::follow_monitor()?;
        }
    }
    let split_seed = u64::from_le_bytes(seed[..8].try_into().unwrap_or([0; 8])) ^ 0x5eed;
    let split = SplitMode::new(clock.now(), &config, split_seed, max_packet);
    let mut tunnel = Tunnel {
        host,
        own_public_key,
        allowed_ips: config.allowed_ips(),
        split,
        config,
        clock,
        endpoint,
        tun,
        udp,
        adapter_drops: DropCounters::new(),
        packets_from_tun: 0,
        packets_to_tun: 0,
        icmp_errors_sent: 0,
        timer_lateness: DelayHistogram::default(),
        started: Instant::now(),
    };
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tun_receive = TunReceive::new(tunnel.config.interface.mtu);
    loop {
        tunnel.flush().await?;
        let wake_at = [tunnel.endpoint.poll_timeout(), tunnel.split.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let wake = wake_at
            .map(|t| tunnel.clock.instant(t))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            result = tunnel.tun.recv(&mut tun_receive) => {
                match result {
                    Ok(()) => {}
                    // A super-packet tun-rs cannot split (its own error,
                    // not the kernel's) is dropped, not fatal.
                    Err(error) if error.raw_os_error().is_none() => {
                        debug!(%error, "reading the TUN interface");
                        tunnel.adapter_drops.record(DropReason::Malformed);
                    }
                    Err(error) => return Err(error).context("reading the TUN interface"),
                }
                let mut handled = 0;
                loop {
                    for index in 0..tun_receive.len() {
                        tunnel.handle_tun_packet(tun_receive.packet(index)).await?;
                    }
                    handled += tun_receive.len().max(1);
                    if handled >= BATCH {
                        break;
                    }
                    match tunnel.tun.try_recv(&mut tun_receive) {
                        Ok(()) => {}
                        Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                        Err(error) if error.raw_os_error().is_none() => {
                            debug!(%error, "reading the TUN interface");
                            tunnel.adapter_drops.record(DropReason::Malformed);
                        }
                        Err(error) => return Err(error).context("reading the TUN interface"),
                    }
                }
            }
            result = tunnel.udp.readable() => {
                if let Err(error) = result {
                    warn!(%error, "waiting for the UDP socket");
                }
                let Tunnel { udp, endpoint, clock, .. } = &mut tunnel;
                udp.receive(BATCH, |datagram, from| {
                    let _ = endpoint.handle_datagram(clock.now(), from, datagram);
                });
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = tunnel.clock.now();
                if let Some(wake_at) = wake_at {
                    tunnel.timer_lateness.record(now.saturating_duration_since(wake_at));
                }
                if tunnel.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    tunnel.endpoint.handle_timeout(now);
                }
                tunnel.split.handle_timeout(now);
            }
            Some(request) = control_rx.recv() => {
                match request {
                    ControlRequest::Status(reply) => { let _ = reply.send(tunnel.status_text()); }
                    ControlRequest::Down(reply) => {
                        let _ = reply.send("tgp: going down\n".to_string());
                        info!("down requested over the control socket");
                        break;
                    }
                    ControlRequest::StatusJson(reply) => {
                        let _ = reply.send(crate::snapshot::Snapshot::collect(&tunnel.status_input()).to_json());
                    }
                    ControlRequest::Metrics(reply) => {
                        let snapshot = crate::snapshot::Snapshot::collect(&tunnel.status_input());
                        let _ = reply.send(crate::metrics::encode_snapshot(&snapshot));
                    }
                    ControlRequest::Reload(reply) => { let _ = reply.send(tunnel.reload()); }
                }
            }
            _ = hangup.recv() => { info!("SIGHUP: reloading"); tunnel.reload(); }
            _ = interrupt.recv() => { info!("SIGINT: going down"); break; }
            _ = terminate.recv() => { info!("SIGTERM: going down"); break; }
        }
    }
    drop(control_guard);
    drop(tunnel);
    info!("tunnel down; interface removed");
    Ok(())
}

fn tun_builder(config: &Config) -> DeviceBuilder {
    let mut builder = DeviceBuilder::new()
        .name(&config.interface.name)
        .mtu(config.interface.mtu);
    let mut have_v4 = false;
    let mut v6 = Vec::new();
    for network in &config.interface.addresses {
        match network.addr() {
            IpAddr::V4(address) if !have_v4 => {
                builder = builder.ipv4(address, network.prefix_len(), None);
                have_v4 = true;
            }
            IpAddr::V6(address) => v6.push((address, network.prefix_len())),
            IpAddr::V4(address) => {
                warn!(%address, "only the first IPv4 address is configured on the interface")
            }
        }
    }
    if !v6.is_empty() {
        builder = builder.ipv6_tuple(&v6);
    }
    builder
}

impl Tunnel {
    /// An IP packet the kernel routed into the tunnel.
    async fn handle_tun_packet(&mut self, packet: &mut [u8]) -> Result<()> {
        self.packets_from_tun += 1;
        let summary = match parse(packet) {
            Ok(summary) => summary,
            Err(error) => {
                self.adapter_drops.record(error.drop_reason());
                return Ok(());
            }
        };
        let peer = match self.allowed_ips.route(&summary) {
            Ok(peer) => peer,
            Err(reason) => {
                self.adapter_drops.record(reason);
                if reason == DropReason::NoRoute {
                    self.send_unreachable(packet, summary.dst).await?;
                }
                return Ok(());
            }
        };
        let now = self.clock.now();
        if self
            .split
            .handle_tun_packet(now, &self.config, peer, &summary, packet)
        {
            return Ok(());
        }
        if summary.tcp_syn {
            clamp_tcp_mss(
                packet,
                mss_for_mtu(self.config.interface.mtu, summary.version),
            );
        }
        let class = self.config.peers[peer].class_rules.classify(&summary);
        // A refused packet is counted by the endpoint; the inner TCP sees
        // the loss and slows down, which is the point of refusing it.
        let _ = self
            .endpoint
            .send_packet(now, peer, summary.flow_id, class, packet);
        Ok(())
    }

    /// Answers a packet with no route like a router would. The error comes
    /// from the unreachable destination's address: the kernel drops an
    /// ICMP error whose source is one of its own addresses (a martian), and
    /// there is no other router on a point-to-point tunnel.
    async fn send_unreachable(&mut self, packet: &[u8], summary_destination: IpAddr) -> Result<()> {
        if let Some(error) = icmp_unreachable(packet, summary_destination) {
            self.icmp_errors_sent += 1;
            self.write_tun(&error).await?;
        }
        Ok(())
    }

    /// Writes (or, with offloads, queues until the end of
    /// [`Tunnel::flush`]) a packet to the TUN. The kernel refuses some
    /// packets (e.g. for an address family the interface has no address
    /// of); those are logged and dropped.
    async fn write_tun(&mut self, packet: &[u8]) -> Result<()> {
        let written = self
            .tun
            .write(packet)
            .await
            .context("writing to the TUN interface")?;
        if written {
            self.packets_to_tun += 1;
        }
        Ok(())
    }

    /// Sends what the endpoint wants sent, writes what it delivered, logs
    /// its events.
    async fn flush(&mut self) -> Result<()> {
        loop {
            let now = self.clock.now();
            let mut progressed = false;
            while let Some(transmit) = self.endpoint.poll_transmit(now, self.udp.send_buffer()) {
                progressed = true;
                self.udp.queue(transmit.destination, transmit.size);
                if self.udp.queue_full() {
                    self.udp.send_queued().await;
                }
            }
            self.udp.send_queued().await;
            while let Some(delivery) = self.endpoint.poll_delivery() {
                progressed = true;
                if is_stream_flow(delivery.flow) {
                    self.split.handle_stream_message(
                        now,
                        delivery.peer,
                        delivery.flow,
                        &delivery.segment,
                        &self.allowed_ips,
                    );
                    continue;
                }
                let mut packet = delivery.segment;
                self.deliver(delivery.peer, &mut packet).await?;
            }
            while let Some(event) = self.endpoint.poll_event() {
                self.log_event(&event);
                self.split.handle_event(now, &event);
            }
            progressed |= self.split.send_messages(now, &mut self.endpoint);
            while let Some(packet) = self.split.poll_tun_packet(now) {
                progressed = true;
                self.write_tun(&packet).await?;
            }
            if !progressed {
                return self
                    .tun
                    .flush()
                    .await
                    .context("writing to the TUN interface");
            }
        }
    }

    /// An IP packet that came through the tunnel from `peer`.
    async fn deliver(&mut self, peer: PeerId, packet: &mut [u8]) -> Result<()> {
        let summary = match parse(packet) {
            Ok(summary) => summary,
            Err(error) => {
                self.adapter_drops.record(error.drop_reason());
                return Ok(());
            }
        };
        if let Err(reason) = self.allowed_ips.check_source(&summary, peer) {
            self.adapter_drops.record(reason);
            return Ok(());
        }
        if summary.tcp_syn {
            clamp_tcp_mss(
                packet,
                mss_for_mtu(self.config.interface.mtu, summary.version),
            );
        }
        self.write_tun(packet).await
    }

    fn log_event(&self, event: &Event) {
        let name = |peer: &PeerId| peer_name(&self.config, *peer);
        match event {
            Event::SessionUp {
                peer,
                session_id,
                rekeyed,
            } => info!(
                peer = %name(peer),
                session = format_args!("{session_id:016x}"),
                rekeyed,
                "session up"
            ),
            Event::SessionDown { peer, reason } => {
                warn!(peer = %name(peer), ?reason, "session down")
            }
            Event::HandshakeFailed { peer } => {
                warn!(peer = %name(peer), "handshake failed; retrying")
            }
            Event::PeerMoved { peer, from, to } => {
                info!(peer = %name(peer), ?from, %to, "peer moved")
            }
        }
    }

    /// Re-reads the config file and applies what changed (see
    /// [`crate::reload`]); returns the answer for the user.
    fn reload(&mut self) -> String {
        let result = crate::reload::reload(crate::reload::Targets {
            now: self.clock.now(),
            own_public_key: self.own_public_key,
            config: &mut self.config,
            endpoint: &mut self.endpoint,
            split: &mut self.split,
            allowed_ips: &mut self.allowed_ips,
            host: Some(&mut self.host),
        });
        if let Err(error) = crate::system::mark_socket(self.udp.socket(), self.host.fwmark()) {
            warn!(error = format!("{error:#}"), "marking the underlay socket");
        }
        match result {
            Ok(answer) => {
                info!("{}", answer.trim_end());
                answer
            }
            Err(error) => {
                warn!(
                    error = format!("{error:#}"),
                    "reload failed; the running config is unchanged"
                );
                format!("tgp: reload failed: {error:#}; the running config is unchanged\n")
            }
        }
    }

    fn status_text(&self) -> String {
        control::format_status(self.status_input())
    }

    fn status_input(&self) -> control::StatusInput<'_> {
        control::StatusInput {
            config: &self.config,
            endpoint: &self.endpoint,
            adapter_drops: &self.adapter_drops,
            packets_from_tun: self.packets_from_tun,
            packets_to_tun: self.packets_to_tun,
            icmp_errors_sent: self.icmp_errors_sent,
            timer_lateness: &self.timer_lateness,
            split: &self.split,
            listen: self.udp.socket().local_addr().ok(),
            uptime: self.started.elapsed(),
        }
    }
}

/// A short name for a peer in logs: the start of its public key.
pub fn peer_name(config: &Config, peer: PeerId) -> String {
    config
        .peers
        .get(peer)
        .map(|p| {
            crate::keys::encode_key(&p.public_key.to_bytes())
                .chars()
                .take(8)
                .collect()
        })
        .unwrap_or_else(|| format!("#{peer}"))
}
