//! One tgp endpoint: every peer that shares one UDP socket, each with its
//! handshake and its data plane. Sans-IO like the rest of the crate: the
//! daemon (or the simulator) feeds it datagrams, IP packets and time, and
//! takes datagrams, IP packets and events out.
//!
//! What it owns, per peer:
//! - **Session set-up**: starts a handshake when it knows the peer's
//!   address (and again after a failed attempt, a second later), answers a
//!   peer that starts one (as responder, its deadline aligned to the
//!   peer's), and holds IP packets (a bounded number) until the session is
//!   usable.
//! - **Rekeying**: after `rekey_interval` the side whose identity key sorts
//!   first starts a new handshake that names the current session; when
//!   both commitments name it, the data plane carries on under the new keys
//!   and nothing in flight is lost.
//! - **Restarts**: a peer that restarted sends a commitment naming no
//!   session; the new handshake then starts a fresh data plane (what was in
//!   flight is lost and the inner TCP resends it). Commitments from one
//!   peer are accepted only in increasing order of their signed start time,
//!   so a replayed old handshake cannot start anything.
//! - **Roaming**: when authenticated, fresh packets of a peer arrive from a
//!   new address, replies follow them. A replayed packet is refused by the
//!   replay window (data) or adds no new proof (handshake), so it cannot
//!   move the peer.
//! - **Liveness**: when what we send goes unanswered for
//!   `unresponsive_timeout` (the peer restarted and lost the session, or
//!   the path broke), a new handshake starts if the peer's address is
//!   known; it continues the session if the peer still holds it. A session
//!   whose peer stays silent for the data plane's idle timeout is reported
//!   down. Failed attempts are retried after `retry_interval`, doubling up
//!   to `max_retry_interval` while they keep failing, so a vanished peer is
//!   not flooded forever.

use crate::class::DeliveryClass;
use crate::crypto::SigningKey;
use crate::delivery::{DataPlane, FlowId, SendError};
use crate::time::Timestamp;
use crate::wire::data::DataHeader;
use crate::wire::handshake::append_cookie;
use crate::wire::retry::COOKIE_LEN;
use crate::wire::{PACKET_TYPE_DATA, PACKET_TYPE_HANDSHAKE, PACKET_TYPE_RETRY};
use admission::Admission;
use peer::Peer;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

pub mod admission;
mod config;
mod events;
mod handshakes;
mod peer;
pub mod reconfigure;
mod session;
mod status;

pub use admission::AdmissionConfig;
pub use config::{EndpointConfig, PeerSettings};
pub use events::{DatagramOutcome, Delivery, DownReason, EndpointDrop, Event, Transmit};
pub use status::{EndpointDrops, PeerStatus, SessionState};

/// Index of a peer among those given to [`Endpoint::new`], in their order,
/// skipping any that were refused (our own key, or a duplicate).
pub type PeerId = usize;

/// All peers on one socket. See the module documentation.
pub struct Endpoint {
    identity: SigningKey,
    own_identity: [u8; 32],
    config: EndpointConfig,
    peers: Vec<Peer>,
    by_identity: HashMap<[u8; 32], PeerId>,
    by_session: HashMap<u64, PeerId>,
    rng: ChaCha20Rng,
    /// Wall-clock time (Unix ms) at [`Timestamp::ZERO`].
    unix_time_at_origin_ms: u64,
    events: VecDeque<Event>,
    deliveries: VecDeque<Delivery>,
    drops: EndpointDrops,
    next_transmitter: usize,
    admission: Admission,
}

impl Endpoint {
    /// Creates an endpoint at `now`. `unix_time_ms` is the wall-clock time
    /// at `now`; `seed` seeds the CSPRNG that draws handshake nonces and
    /// ephemeral keys (the daemon passes 32 bytes from the OS; the
    /// simulator a fixed seed). Handshakes start at once with every peer
    /// whose address is known.
    pub fn new(
        now: Timestamp,
        unix_time_ms: u64,
        identity: SigningKey,
        config: EndpointConfig,
        peers: Vec<PeerSettings>,
        seed: [u8; 32],
    ) -> Self {
        let own_identity = identity.verifying_key().to_bytes();
        let unix_time_at_origin_ms = unix_time_ms.saturating_sub(now.as_nanos() / 1_000_000);
        let mut rng = ChaCha20Rng::from_seed(seed);
        let admission = Admission::new(now, config.admission.clone(), &mut rng);
        let mut endpoint = Endpoint {
            identity,
            own_identity,
            config,
            peers: Vec::new(),
            by_identity: HashMap::new(),
            by_session: HashMap::new(),
            rng,
            unix_time_at_origin_ms,
            events: VecDeque::new(),
            deliveries: VecDeque::new(),
            drops: EndpointDrops::default(),
            next_transmitter: 0,
            admission,
        };
        for settings in peers {
            let identity_bytes = settings.identity.to_bytes();
            if identity_bytes == own_identity || endpoint.by_identity.contains_key(&identity_bytes)
            {
                // Our own key or a duplicate cannot be a (second) peer; the
                // daemon's config check reports these before we get here.
                continue;
            }
            let id = endpoint.peers.len();
            endpoint.by_identity.insert(identity_bytes, id);
            endpoint.peers.push(Peer::new(settings));
        }
        for peer in 0..endpoint.peers.len() {
            if endpoint.peers[peer].address.is_some() {
                endpoint.start_handshake(now, peer, false);
            }
        }
        endpoint
    }

    /// How many peers there are.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The peer with this identity key, if it is one of ours.
    pub fn peer_by_identity(&self, identity: &[u8; 32]) -> Option<PeerId> {
        self.by_identity.get(identity).copied()
    }

    /// Drops counted before any peer state saw the datagram.
    pub fn drops(&self) -> &EndpointDrops {
        &self.drops
    }

    /// Largest IP packet a session carries in one segment.
    pub fn max_packet_size(&self) -> usize {
        self.config.data_plane.max_segment_size()
    }

    /// A snapshot of one peer for `tgp status`.
    pub fn peer_status(&self, peer: PeerId) -> Option<PeerStatus> {
        let p = self.peers.get(peer)?;
        let state = if p.session.is_some() {
            SessionState::Up
        } else if p.handshake.as_ref().is_some_and(|h| !h.is_finished()) {
            SessionState::Handshaking
        } else {
            SessionState::Idle
        };
        Some(PeerStatus {
            identity: p.identity_bytes,
            state,
            endpoint: p.address,
            session_id: p.session.as_ref().map(|s| s.session_id),
            data: p.session.as_ref().map(|s| s.data.stats().clone()),
            handshake: p
                .handshake
                .as_ref()
                .map(|h| h.stats().clone())
                .or_else(|| p.last_handshake_stats.clone()),
            sessions_started: p.sessions_started,
            pending_packets: p.pending.len(),
        })
    }

    /// The data plane of a peer's current session (for tests and
    /// detailed status).
    pub fn data_plane(&self, peer: PeerId) -> Option<&DataPlane> {
        self.peers.get(peer)?.session.as_ref().map(|s| &s.data)
    }

    fn unix_time_ms(&self, now: Timestamp) -> u64 {
        self.unix_time_at_origin_ms + now.as_nanos() / 1_000_000
    }

    /// Hands an IP packet from the TUN to `peer`'s session. Without a
    /// usable session the packet is held (up to a limit) and a handshake
    /// starts if the peer's address is known.
    pub fn send_packet(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        flow: FlowId,
        class: DeliveryClass,
        packet: &[u8],
    ) -> Result<(), SendError> {
        let Some(p) = self.peers.get_mut(peer) else {
            self.drops.no_session += 1;
            return Ok(());
        };
        if let Some(session) = &mut p.session {
            let result = session.data.send_segment(now, flow, class, packet);
            if result.is_err() {
                self.drops.send_refused += 1;
            }
            return result;
        }
        if p.address.is_none() || p.pending.len() >= self.config.pending_packet_limit {
            self.drops.no_session += 1;
            return Ok(());
        }
        p.pending.push_back((flow, class, packet.to_vec()));
        if !p.handshake_in_progress() && p.retry_at.is_none() {
            self.start_handshake(now, peer, false);
        }
        Ok(())
    }

    /// Bytes a stream may hand to `peer`'s session now without being
    /// refused ([`DataPlane::stream_room`]); 0 without a usable session.
    pub fn stream_room(&self, peer: PeerId) -> usize {
        self.peers
            .get(peer)
            .and_then(|p| p.session.as_ref())
            .map_or(0, |s| s.data.stream_room())
    }

    /// Hands a stream's bytes to `peer`'s session as a `Reliable` segment
    /// of `flow` that the queue manager never drops
    /// ([`DataPlane::send_stream_segment`]). Without a usable session it
    /// is refused ([`SendError::NoSession`]), not held: the caller keeps
    /// the bytes.
    pub fn send_stream(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        flow: FlowId,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let session = self
            .peers
            .get_mut(peer)
            .and_then(|p| p.session.as_mut())
            .ok_or(SendError::NoSession)?;
        session.data.send_stream_segment(now, flow, bytes)
    }

    /// Handles a datagram that arrived on the socket from `from`. A data
    /// packet is opened in place (the buffer is overwritten). Returns what
    /// became of it; drops are also counted.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> DatagramOutcome {
        let outcome = match datagram.first() {
            Some(&PACKET_TYPE_HANDSHAKE) => self.handle_handshake_packet(now, from, datagram),
            Some(&PACKET_TYPE_DATA) => self.handle_data_packet(now, from, datagram),
            Some(&PACKET_TYPE_RETRY) => self.handle_retry(from, datagram),
            _ => DatagramOutcome::Dropped(EndpointDrop::NotTgp),
        };
        if let DatagramOutcome::Dropped(reason) = outcome {
            let drops = &mut self.drops;
            match reason {
                EndpointDrop::NotTgp => drops.not_tgp += 1,
                EndpointDrop::Truncated => drops.truncated += 1,
                EndpointDrop::UnknownPeer => drops.unknown_peer += 1,
                EndpointDrop::UnknownSession => drops.unknown_session += 1,
                // Counted by the session's data plane.
                EndpointDrop::Data(_) => {}
            }
        }
        outcome
    }

    fn note_authentic_source(&mut self, peer: PeerId, from: SocketAddr) {
        let p = &mut self.peers[peer];
        if let Some(time) = p.handshake.as_ref().and_then(|h| h.peer_commitment_time()) {
            p.newest_peer_commitment = p.newest_peer_commitment.max(time);
        }
        if p.address != Some(from) {
            let old = p.address.replace(from);
            self.events.push_back(Event::PeerMoved {
                peer,
                from: old,
                to: from,
            });
        }
    }

    fn handle_data_packet(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> DatagramOutcome {
        let Ok(header) = DataHeader::parse(datagram) else {
            return DatagramOutcome::Dropped(EndpointDrop::Truncated);
        };
        let Some(&peer) = self.by_session.get(&header.session_id) else {
            return DatagramOutcome::Dropped(EndpointDrop::UnknownSession);
        };
        let p = &mut self.peers[peer];
        let Some(session) = &mut p.session else {
            return DatagramOutcome::Dropped(EndpointDrop::UnknownSession);
        };
        let received = match session.data.handle_datagram(now, datagram) {
            Ok(received) => received,
            Err(error) => return DatagramOutcome::Dropped(EndpointDrop::Data(error)),
        };
        session.heard_from_peer(now);
        while let Some(delivered) = session.data.poll_delivery() {
            self.deliveries.push_back(Delivery {
                peer,
                flow: delivered.flow,
                segment: delivered.segment,
            });
        }
        if received.session_id == session.session_id {
            if let Some(handshake) = &mut p.handshake {
                handshake.peer_confirmed();
            }
        }
        self.note_authentic_source(peer, from);
        DatagramOutcome::Data {
            peer,
            session_id: received.session_id,
        }
    }

    /// Appends the next datagram to send, if any is due, to `buffer` and
    /// returns where it goes and its length. Peers take turns.
    pub fn poll_transmit(&mut self, now: Timestamp, buffer: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((destination, retry)) = self.admission.poll_retry() {
            buffer.extend_from_slice(&retry);
            return Some(Transmit {
                destination,
                size: retry.len(),
            });
        }
        let count = self.peers.len();
        for offset in 0..count {
            let peer = (self.next_transmitter + offset) % count;
            if let Some(transmit) = self.poll_peer_transmit(now, peer, buffer) {
                self.next_transmitter = (peer + 1) % count;
                return Some(transmit);
            }
        }
        None
    }

    fn poll_peer_transmit(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        buffer: &mut Vec<u8>,
    ) -> Option<Transmit> {
        let start = buffer.len();
        let p = &mut self.peers[peer];
        if let Some(lingering) = &mut p.lingering {
            if let Some(size) = lingering.poll_transmit(now, buffer) {
                while lingering.poll_event().is_some() {}
                match p.address {
                    Some(destination) => return Some(Transmit { destination, size }),
                    None => buffer.truncate(start),
                }
            }
        }
        if let Some(handshake) = &mut p.handshake {
            if let Some(size) = handshake.poll_transmit(now, buffer) {
                self.drain_handshake_events(now, peer);
                // Floods go to the paths the handshake tries, each within
                // its amplification budget until it proves it receives.
                let factor = self.admission.amplification_factor();
                let p = &mut self.peers[peer];
                let Some(destination) = p.paths.pick(size + 3 + COOKIE_LEN, factor) else {
                    buffer.truncate(start);
                    return None;
                };
                let mut size = size;
                if let Some((address, cookie)) = &p.cookie {
                    if *address == destination && append_cookie(buffer, start, cookie) {
                        size += 3 + COOKIE_LEN;
                    }
                }
                return Some(Transmit { destination, size });
            }
        }
        let p = &mut self.peers[peer];
        let destination = p.address?;
        let session = p.session.as_mut()?;
        let size = session.data.poll_transmit(now, buffer)?;
        session.first_unanswered_send.get_or_insert(now);
        Some(Transmit { destination, size })
    }

    /// The next segment that arrived through a session, with its peer and
    /// flow. (Sessions deliver only while handling a datagram or a timeout,
    /// and both drain what they delivered into this queue.)
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn we_rekey(&self, peer: &Peer) -> bool {
        self.own_identity < peer.identity_bytes
    }

    /// When [`Endpoint::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.peers
            .iter()
            .flat_map(|p| {
                [
                    p.handshake.as_ref().and_then(|h| h.poll_timeout()),
                    p.lingering.as_ref().and_then(|h| h.poll_timeout()),
                    p.session.as_ref().and_then(|s| s.data.poll_timeout()),
                    p.retry_at,
                    p.rekey_at(self.config.rekey_interval, self.we_rekey(p)),
                    p.unanswered_at(self.config.unresponsive_timeout),
                    p.session
                        .as_ref()
                        .map(|s| s.last_heard_at + self.config.dead_session_timeout),
                ]
            })
            .flatten()
            .min()
    }

    /// Time has reached a point given by [`Endpoint::poll_timeout`].
    /// (Silence of a peer is checked here too; the data plane's keepalive
    /// timer makes sure this runs at least once per keepalive interval.)
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.admission.rotate(now, &mut self.rng);
        for peer in 0..self.peers.len() {
            if let Some(handshake) = &mut self.peers[peer].handshake {
                handshake.handle_timeout(now);
            }
            let p = &mut self.peers[peer];
            if let Some(lingering) = &mut p.lingering {
                lingering.handle_timeout(now);
                while lingering.poll_event().is_some() {}
                if lingering.is_finished() {
                    p.lingering = None;
                }
            }
            self.drain_handshake_events(now, peer);
            let p = &mut self.peers[peer];
            if let Some(session) = &mut p.session {
                session.data.handle_timeout(now);
                while let Some(delivered) = session.data.poll_delivery() {
                    self.deliveries.push_back(Delivery {
                        peer,
                        flow: delivered.flow,
                        segment: delivered.segment,
                    });
                }
                // Old session ids whose keys the data plane retired.
                for id in session.retire_ids() {
                    self.by_session.remove(&id);
                }
            }
            self.check_liveness_and_timers(now, peer);
        }
    }

    fn check_liveness_and_timers(&mut self, now: Timestamp, peer: PeerId) {
        let rekey_at =
            self.peers[peer].rekey_at(self.config.rekey_interval, self.we_rekey(&self.peers[peer]));
        let unanswered_at = self.peers[peer].unanswered_at(self.config.unresponsive_timeout);
        let p = &mut self.peers[peer];
        let running = p.handshake_in_progress();
        let mut start = false;
        if p.session
            .as_ref()
            .is_some_and(|s| now >= s.last_heard_at + self.config.dead_session_timeout)
        {
            // Silent far beyond the idle timeout: free what the session
            // holds (queues, windows, records) instead of keeping it for
            // a peer that may never come back.
            if let Some(old) = p.session.take() {
                for id in old.ids() {
                    self.by_session.remove(id);
                }
                if !old.reported_silent {
                    self.events.push_back(Event::SessionDown {
                        peer,
                        reason: DownReason::PeerSilent,
                    });
                }
            }
        }
        if let Some(session) = &mut p.session {
            if !session.reported_silent && session.data.peer_is_silent(now) {
                session.reported_silent = true;
                self.events.push_back(Event::SessionDown {
                    peer,
                    reason: DownReason::PeerSilent,
                });
                start = p.address.is_some() && !running;
            }
            if unanswered_at.is_some_and(|t| t <= now) {
                // Whatever the outcome, do not fire again for this silence.
                session.first_unanswered_send = None;
                start = true;
            }
            if rekey_at.is_some_and(|t| t <= now) {
                start = true;
            }
            if session.keys_worn() && !running {
                // Whichever side: the keys near their AEAD usage limit.
                start |= p.address.is_some();
            }
        }
        if p.retry_at.is_some_and(|t| t <= now) {
            p.retry_at = None;
            let wanted =
                p.session.is_some() || !p.pending.is_empty() || p.settings.endpoint.is_some();
            start |= wanted && p.address.is_some() && !running;
        }
        if start {
            self.start_handshake(now, peer, false);
        }
    }
}
