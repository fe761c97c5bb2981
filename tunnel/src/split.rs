//! Split mode in the daemon: one [`SplitEngine`] per peer, and the glue
//! between it, the TUN and the [`Endpoint`]. It owns no protocol logic.
//!
//! - TCP packets from the TUN go to the peer's engine when they belong to
//!   one of its connections (either role), or when the class rules put a
//!   new connection in split mode; everything else stays in segment mode.
//! - Deliveries whose flow id has the stream bit are stream messages for
//!   the engine; the rest are IP packets as before.
//! - Engine messages go out through `Endpoint::send_stream` within
//!   `Endpoint::stream_room`, whenever the daemon flushes (after every
//!   socket read, TUN read and timer), so the pacer stays fed.
//! - A fresh session with a peer that had one before (the peer's daemon
//!   restarted, or the old session could not be continued) resets that
//!   peer's split connections: the stream state at the other end is gone,
//!   and so are the messages in flight. A rekey continues the session and
//!   loses nothing.

use std::time::Duration;

use tgp_adapters::{AllowedIps, PacketSummary, TransportProtocol};
use tgp_proto::endpoint::{DownReason, Endpoint, Event, PeerId};
use tgp_proto::Timestamp;
use tgp_split::{ResetReason, SplitConfig, SplitEngine, SplitStats};

use crate::config::{Config, TcpMode};

fn engine(now: Timestamp, config: &Config, seed: u64) -> SplitEngine {
    SplitEngine::new(
        now,
        SplitConfig {
            mtu: usize::from(config.interface.mtu),
            max_streams: config.interface.split_max_streams,
            max_window: config.interface.split_window_cap,
            seed,
            ..SplitConfig::default()
        },
    )
}

/// How often the engines learn the sessions' rate and RTT.
const PATH_UPDATE_INTERVAL: Duration = Duration::from_millis(200);

/// Every peer's split engine.
pub struct SplitMode {
    engines: Vec<SplitEngine>,
    had_session: Vec<bool>,
    next_path_update: Timestamp,
    /// Per peer: bytes received from it at the last path update, and when.
    inbound: Vec<Option<(Timestamp, u64)>>,
    max_message: usize,
    seed: u64,
    engines_made: u64,
}

impl SplitMode {
    /// Engines for every peer of `config` (a peer may open streams towards
    /// us whatever our own rules say). `seed` seeds the stacks' initial
    /// sequence numbers; `max_message` is `Endpoint::max_packet_size`.
    pub fn new(now: Timestamp, config: &Config, seed: u64, max_message: usize) -> Self {
        let engines = (0..config.peers.len())
            .map(|peer| engine(now, config, seed.wrapping_add(peer as u64)))
            .collect();
        SplitMode {
            engines,
            had_session: vec![false; config.peers.len()],
            next_path_update: now,
            inbound: vec![None; config.peers.len()],
            max_message,
            seed,
            engines_made: config.peers.len() as u64,
        }
    }

    /// An engine for a peer added by a reload (it takes the next id, as in
    /// `Endpoint::add_peer`).
    pub fn add_peer(&mut self, now: Timestamp, config: &Config) {
        let seed = self.seed.wrapping_add(self.engines_made);
        self.engines_made += 1;
        self.engines.push(engine(now, config, seed));
        self.had_session.push(false);
        self.inbound.push(None);
    }

    /// Drops a removed peer's engine (its connections go with it); later
    /// peers' ids shift down, as in `Endpoint::remove_peer`.
    pub fn remove_peer(&mut self, peer: PeerId) {
        if peer < self.engines.len() {
            self.engines.remove(peer);
            self.had_session.remove(peer);
            self.inbound.remove(peer);
        }
    }

    /// A packet from the TUN routed to `peer`. True when split mode took
    /// it (the caller then does nothing more with it).
    pub fn handle_tun_packet(
        &mut self,
        now: Timestamp,
        config: &Config,
        peer: PeerId,
        summary: &PacketSummary,
        packet: &[u8],
    ) -> bool {
        if summary.protocol != TransportProtocol::Tcp || summary.fragment {
            return false;
        }
        let (Some(engine), Some(settings)) = (self.engines.get_mut(peer), config.peers.get(peer))
        else {
            return false;
        };
        let covered = settings.tcp_mode(config.interface.tcp_mode, summary) == TcpMode::Split;
        engine.handle_tun_packet(now, packet, covered)
    }

    /// A stream message delivered from `peer`. An OPEN may only use a client
    /// address the peer's allowed IPs cover.
    pub fn handle_stream_message(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        flow: u64,
        message: &[u8],
        allowed_ips: &AllowedIps,
    ) {
        if let Some(engine) = self.engines.get_mut(peer) {
            engine.handle_stream_message(now, flow, message, |source| {
                allowed_ips.lookup(source) == Some(peer)
            });
        }
    }

    /// Reacts to session events: a fresh session after an earlier one resets
    /// the peer's streams.
    pub fn handle_event(&mut self, now: Timestamp, event: &Event) {
        match event {
            Event::SessionUp {
                peer,
                rekeyed: false,
                ..
            } => {
                if let Some(had) = self.had_session.get_mut(*peer) {
                    if *had {
                        self.engines[*peer].reset_all(now, ResetReason::PeerRestart);
                    }
                    *had = true;
                }
            }
            Event::SessionDown {
                peer,
                reason: DownReason::Replaced,
            } => {
                if let Some(engine) = self.engines.get_mut(*peer) {
                    engine.reset_all(now, ResetReason::PeerRestart);
                }
            }
            _ => {}
        }
    }

    /// Hands the engines' messages to their sessions, each within its
    /// room. True when anything was handed over.
    pub fn send_messages(&mut self, now: Timestamp, endpoint: &mut Endpoint) -> bool {
        if now >= self.next_path_update {
            self.next_path_update = now + PATH_UPDATE_INTERVAL;
            for (peer, engine) in self.engines.iter_mut().enumerate() {
                if let Some(data) = endpoint.data_plane(peer) {
                    let stats = data.stats();
                    // Credit is granted by the receiving end, whose own pace
                    // is the reverse direction's (often just acknowledgements):
                    // size windows by what actually arrives too.
                    let received = stats.bytes_received;
                    let inbound = match self.inbound[peer].replace((now, received)) {
                        Some((at, bytes)) if now > at && received >= bytes => {
                            ((received - bytes) as f64 * 8.0 / (now - at).as_secs_f64()) as u64
                        }
                        _ => 0,
                    };
                    let rate = stats
                        .pacing_rate_bits_per_second
                        .max(inbound.saturating_mul(3) / 2);
                    engine.set_path(rate, stats.smoothed_rtt);
                }
            }
        }
        let mut sent = false;
        for (peer, engine) in self.engines.iter_mut().enumerate() {
            if endpoint.data_plane(peer).is_none() {
                continue;
            }
            loop {
                let room = endpoint.stream_room(peer);
                let Some((flow, message)) = engine.poll_stream_message(now, room, self.max_message)
                else {
                    break;
                };
                if endpoint.send_stream(now, peer, flow, &message).is_err() {
                    engine.requeue(flow, message);
                    break;
                }
                sent = true;
            }
        }
        sent
    }

    /// The next IP packet an engine wants written to the TUN.
    pub fn poll_tun_packet(&mut self, now: Timestamp) -> Option<Vec<u8>> {
        self.engines
            .iter_mut()
            .find_map(|engine| engine.poll_tun_packet(now))
    }

    /// When [`SplitMode::handle_timeout`] should next run.
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        self.engines
            .iter_mut()
            .filter_map(|engine| engine.poll_timeout())
            .min()
    }

    /// Runs the engines' timers that are due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for engine in &mut self.engines {
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                engine.handle_timeout(now);
            }
        }
    }

    /// A peer's split counters.
    pub fn stats(&self, peer: PeerId) -> Option<&SplitStats> {
        self.engines.get(peer).map(|engine| engine.stats())
    }
}

#[cfg(test)]
mod reconfigure_tests {
    use super::*;

    fn config(peers: usize) -> Config {
        let mut text = String::from(
            "[interface]\naddresses = [\"10.77.0.1/24\"]\nlisten_port = 1\nprivate_key_file = \"k\"\n",
        );
        for n in 0..peers {
            let key = crate::keys::public_key_base64(&tgp_proto::crypto::SigningKey::from_bytes(
                &[n as u8 + 1; 32],
            ));
            text.push_str(&format!(
                "[[peer]]\npublic_key = \"{key}\"\nallowed_ips = [\"10.77.0.{}/32\"]\n",
                n + 2
            ));
        }
        Config::from_toml_str(&text, std::path::Path::new("/")).unwrap()
    }

    #[test]
    fn per_peer_state_follows_added_and_removed_peers() {
        let now = Timestamp::ZERO;
        let mut split = SplitMode::new(now, &config(2), 7, 1200);
        split.add_peer(now, &config(3));
        split.add_peer(now, &config(4));
        split.remove_peer(0);
        split.remove_peer(9);
        let lengths = [
            split.engines.len(),
            split.had_session.len(),
            split.inbound.len(),
        ];
        assert_eq!(lengths, [3, 3, 3]);
        assert!(split.stats(2).is_some() && split.stats(3).is_none());
        // Every peer's engine is reachable by the per-peer paths.
        for peer in 0..3 {
            split.handle_event(
                now,
                &Event::SessionUp {
                    peer,
                    session_id: 1,
                    rekeyed: false,
                },
            );
        }
        assert!(split.had_session.iter().all(|h| *h));
    }
}
