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
use crate::crypto::aead::OpenError;
use crate::crypto::keys::SessionKeys;
use crate::crypto::{SigningKey, VerifyingKey};
use crate::delivery::{DataPlane, DataPlaneConfig, DataPlaneStats, FlowId, SendError};
use crate::handshake::{
    peek_sender, DropReason as HandshakeDrop, Handshake, HandshakeConfig, HandshakeEvent,
    HandshakeStats,
};
use crate::time::Timestamp;
use crate::wire::data::DataHeader;
use crate::wire::{PACKET_TYPE_DATA, PACKET_TYPE_HANDSHAKE};
use peer::Peer;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use session::Session;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

mod peer;
mod session;

/// Index of a peer among those given to [`Endpoint::new`], in their order,
/// skipping any that were refused (our own key, or a duplicate).
pub type PeerId = usize;

/// Settings of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Handshake settings (deadline, cut-off margin, flood rate).
    pub handshake: HandshakeConfig,
    /// Data plane settings (rate ceiling, datagram size, queue limits).
    pub data_plane: DataPlaneConfig,
    /// A session is rekeyed after this long.
    pub rekey_interval: Duration,
    /// Wait after a failed handshake before trying again.
    pub retry_interval: Duration,
    /// Longest wait between attempts while they keep failing.
    pub max_retry_interval: Duration,
    /// Start a new handshake when what we sent has gone unanswered this
    /// long. Must exceed the data plane's keepalive interval plus a round
    /// trip, or idle sessions rekey needlessly.
    pub unresponsive_timeout: Duration,
    /// IP packets held per peer while no session is usable.
    pub pending_packet_limit: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            handshake: HandshakeConfig::default(),
            data_plane: DataPlaneConfig {
                keepalive_interval: Duration::from_secs(1),
                ..DataPlaneConfig::default()
            },
            rekey_interval: Duration::from_secs(120),
            retry_interval: Duration::from_secs(1),
            max_retry_interval: Duration::from_secs(30),
            unresponsive_timeout: Duration::from_secs(3),
            pending_packet_limit: 256,
        }
    }
}

/// What the endpoint knows of a peer in advance.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// The peer's Ed25519 identity key.
    pub identity: VerifyingKey,
    /// Where to reach it; `None` for a peer that will call us (a server
    /// learns its clients' addresses).
    pub endpoint: Option<SocketAddr>,
}

/// A datagram [`Endpoint::poll_transmit`] appended to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length: the last `size` bytes of the buffer.
    pub size: usize,
}

/// What [`Endpoint::handle_datagram`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// An authentic, fresh data packet of `peer`'s session.
    Data {
        /// Whose.
        peer: PeerId,
        /// The session whose keys opened it.
        session_id: u64,
    },
    /// A handshake packet from `peer` (its identity key is configured).
    Handshake {
        /// Whose.
        peer: PeerId,
        /// It carried proofs not seen before (it moved a handshake on, or
        /// started one as responder).
        progressed: bool,
        /// Why it, or part of it, was dropped.
        dropped: Option<HandshakeDrop>,
    },
    /// Dropped before any peer state took it.
    Dropped(EndpointDrop),
}

/// Why a datagram was dropped before any peer's state took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointDrop {
    /// Neither a handshake nor a data packet.
    NotTgp,
    /// A data packet too short to carry its header and tag.
    Truncated,
    /// A handshake packet from an identity we do not know.
    UnknownPeer,
    /// A data packet of a session no peer has.
    UnknownSession,
    /// A data packet of a peer's session that did not open.
    Data(OpenError),
}

/// A segment that arrived through a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The peer it came from.
    pub peer: PeerId,
    /// The flow the peer's sender gave it.
    pub flow: FlowId,
    /// The segment: an IP packet, or a stream's bytes.
    pub segment: Vec<u8>,
}

/// Why a session went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Nothing authentic arrived for the idle timeout.
    PeerSilent,
    /// The peer restarted: the old session was replaced by a fresh one.
    Replaced,
}

/// Something the owner may want to log or act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A session with the peer is usable (new, or rekeyed).
    SessionUp {
        /// Which peer.
        peer: PeerId,
        /// The new session's id.
        session_id: u64,
        /// Whether it continues the previous session (a rekey).
        rekeyed: bool,
    },
    /// A session went down.
    SessionDown {
        /// Which peer.
        peer: PeerId,
        /// Why.
        reason: DownReason,
    },
    /// A handshake attempt ended without a session.
    HandshakeFailed {
        /// Which peer.
        peer: PeerId,
    },
    /// The peer's packets now come from another address.
    PeerMoved {
        /// Which peer.
        peer: PeerId,
        /// The old address, if one was known.
        from: Option<SocketAddr>,
        /// The new address.
        to: SocketAddr,
    },
}

/// Datagrams the endpoint dropped before any peer state saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointDrops {
    /// Neither a handshake nor a data packet.
    pub not_tgp: u64,
    /// Data packets too short for a header and a tag.
    pub truncated: u64,
    /// A handshake packet from an identity we do not know.
    pub unknown_peer: u64,
    /// A data packet of a session no peer has.
    pub unknown_session: u64,
    /// A handshake packet that could not start a new handshake (stale,
    /// replayed or forged commitment).
    pub stale_handshake: u64,
    /// IP packets dropped because no session was usable and the hold
    /// queue was full, or the peer's address is unknown.
    pub no_session: u64,
    /// IP packets the data plane refused (queue full or too large).
    pub send_refused: u64,
}

/// The state of a peer's session, for `tgp status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No session and no handshake running.
    Idle,
    /// A handshake is running and no session is usable yet.
    Handshaking,
    /// A session is usable.
    Up,
}

/// A snapshot of one peer.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    /// The peer's identity key.
    pub identity: [u8; 32],
    /// Session state.
    pub state: SessionState,
    /// Where its packets come from and ours go.
    pub endpoint: Option<SocketAddr>,
    /// The current session's id.
    pub session_id: Option<u64>,
    /// Data plane counters and estimates (RTT, loss each way, redundancy,
    /// rate, bytes and packets, drops by reason), if a session exists.
    pub data: Option<DataPlaneStats>,
    /// Counters of the current or last handshake.
    pub handshake: Option<HandshakeStats>,
    /// Sessions set up with this peer so far (rekeys included).
    pub sessions_started: u64,
    /// IP packets waiting for a session.
    pub pending_packets: usize,
}

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
        let mut endpoint = Endpoint {
            identity,
            own_identity,
            config,
            peers: Vec::new(),
            by_identity: HashMap::new(),
            by_session: HashMap::new(),
            rng: ChaCha20Rng::from_seed(seed),
            unix_time_at_origin_ms,
            events: VecDeque::new(),
            deliveries: VecDeque::new(),
            drops: EndpointDrops::default(),
            next_transmitter: 0,
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

    fn new_handshake(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        responder: bool,
    ) -> Option<Handshake> {
        let p = &self.peers[peer];
        let mut config = self.config.handshake.clone();
        config.align_start_to_peer = responder;
        config.continues_session = p.session.as_ref().map(|s| s.session_id);
        let unix_time_ms = self.unix_time_ms(now);
        Handshake::new(
            now,
            unix_time_ms,
            self.identity.clone(),
            p.settings.identity,
            config,
            &mut self.rng,
        )
        .ok()
    }

    fn start_handshake(&mut self, now: Timestamp, peer: PeerId, responder: bool) {
        if let Some(handshake) = self.new_handshake(now, peer, responder) {
            self.peers[peer].replace_handshake(handshake);
        }
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

    fn handle_handshake_packet(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        datagram: &[u8],
    ) -> DatagramOutcome {
        let Some(peer) = peek_sender(datagram)
            .ok()
            .and_then(|key| self.peer_by_identity(&key))
        else {
            return DatagramOutcome::Dropped(EndpointDrop::UnknownPeer);
        };
        if let Some(lingering) = &mut self.peers[peer].lingering {
            // Packets of the old session are answered there; others are
            // refused there without effect.
            let _ = lingering.handle_packet(now, datagram);
        }
        let (mut progressed, mut dropped) = (false, None);
        let needs_new_handshake = match &mut self.peers[peer].handshake {
            Some(handshake) if !handshake.is_finished() => {
                let received = handshake.handle_packet(now, datagram);
                progressed = received.progressed();
                dropped = received.dropped;
                if progressed {
                    self.note_authentic_source(peer, from);
                }
                received.dropped == Some(HandshakeDrop::NewerCommitment)
            }
            _ => true,
        };
        if needs_new_handshake {
            if self.try_responder(now, peer, from, datagram) {
                progressed = true;
                dropped = None;
            } else {
                dropped = Some(HandshakeDrop::StaleCommitment);
            }
        }
        self.drain_handshake_events(now, peer);
        DatagramOutcome::Handshake {
            peer,
            progressed,
            dropped,
        }
    }

    /// The peer began a handshake we have no live state for: answer it
    /// with a new one, but only if its commitment verifies and is newer
    /// than any seen from this peer. Returns whether it did.
    fn try_responder(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        from: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        let Some(mut candidate) = self.new_handshake(now, peer, true) else {
            return false;
        };
        let _ = candidate.handle_packet(now, datagram);
        let commitment_time = candidate.peer_commitment_time().unwrap_or(0);
        if commitment_time <= self.peers[peer].newest_peer_commitment {
            self.drops.stale_handshake += 1;
            return false;
        }
        let p = &mut self.peers[peer];
        p.newest_peer_commitment = commitment_time;
        p.replace_handshake(candidate);
        self.note_authentic_source(peer, from);
        true
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
        session.heard_from_peer();
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

    fn drain_handshake_events(&mut self, now: Timestamp, peer: PeerId) {
        loop {
            let Some(event) = self.peers[peer]
                .handshake
                .as_mut()
                .and_then(|h| h.poll_event())
            else {
                return;
            };
            match event {
                HandshakeEvent::Usable(keys) => self.session_usable(now, peer, keys),
                HandshakeEvent::Established => {}
                HandshakeEvent::Aborted => {
                    let p = &mut self.peers[peer];
                    let backoff = self
                        .config
                        .retry_interval
                        .saturating_mul(1 << p.failed_attempts.min(16))
                        .min(self.config.max_retry_interval);
                    p.failed_attempts = p.failed_attempts.saturating_add(1);
                    p.retry_at = Some(now + backoff);
                    if p.session.is_none() {
                        self.events.push_back(Event::HandshakeFailed { peer });
                    }
                }
            }
        }
    }

    fn session_usable(&mut self, now: Timestamp, peer: PeerId, keys: SessionKeys) {
        let p = &mut self.peers[peer];
        let continued = p.handshake.as_ref().and_then(|h| h.continued_session());
        let session_id = keys.session_id;
        p.failed_attempts = 0;
        let rekeyed = match &mut p.session {
            Some(session) if continued == Some(session.session_id) => {
                session.rekey(now, keys);
                true
            }
            _ => {
                if let Some(old) = p.session.take() {
                    self.events.push_back(Event::SessionDown {
                        peer,
                        reason: DownReason::Replaced,
                    });
                    for id in old.ids() {
                        self.by_session.remove(id);
                    }
                }
                p.session = Some(Session::new(now, keys, self.config.data_plane.clone()));
                false
            }
        };
        p.sessions_started += 1;
        self.by_session.insert(session_id, peer);
        self.events.push_back(Event::SessionUp {
            peer,
            session_id,
            rekeyed,
        });
        let p = &mut self.peers[peer];
        if let Some(session) = &mut p.session {
            while let Some((flow, class, packet)) = p.pending.pop_front() {
                if session
                    .data
                    .send_segment(now, flow, class, &packet)
                    .is_err()
                {
                    self.drops.send_refused += 1;
                }
            }
        }
    }

    /// Appends the next datagram to send, if any is due, to `buffer` and
    /// returns where it goes and its length. Peers take turns.
    pub fn poll_transmit(&mut self, now: Timestamp, buffer: &mut Vec<u8>) -> Option<Transmit> {
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
                // A responder always knows the address; an initiator only
                // starts with one. Without one the packet has nowhere to go.
                let destination = self.peers[peer].address;
                if destination.is_none() {
                    buffer.truncate(start);
                }
                return destination.map(|destination| Transmit { destination, size });
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
                ]
            })
            .flatten()
            .min()
    }

    /// Time has reached a point given by [`Endpoint::poll_timeout`].
    /// (Silence of a peer is checked here too; the data plane's keepalive
    /// timer makes sure this runs at least once per keepalive interval.)
    pub fn handle_timeout(&mut self, now: Timestamp) {
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
