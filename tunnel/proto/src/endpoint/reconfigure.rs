//! Changing an endpoint's peer list while it runs (the daemon's live
//! reload): [`Endpoint::add_peer`] and [`Endpoint::remove_peer`]. Every
//! other peer keeps its handshake, session and timers untouched.
//!
//! Peer ids are indices: removing a peer shifts the ids of the peers after
//! it down by one (in queued events and deliveries too), so the owner must
//! shift its own per-peer tables the same way.

use super::peer::Peer;
use super::{Endpoint, Event, PeerId, PeerSettings};
use crate::time::Timestamp;

/// Why [`Endpoint::add_peer`] refused a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddPeerError {
    /// The identity is this endpoint's own.
    #[error("the peer's identity key is this endpoint's own")]
    OwnIdentity,
    /// The identity is already one of the peers.
    #[error("the peer's identity key is already peer {0}")]
    Duplicate(PeerId),
}

impl Endpoint {
    /// Adds a peer at `now`; it gets the next id (`peer_count()` before the
    /// call). A handshake starts at once if its address is known.
    pub fn add_peer(
        &mut self,
        now: Timestamp,
        settings: PeerSettings,
    ) -> Result<PeerId, AddPeerError> {
        let identity = settings.identity.to_bytes();
        if identity == self.own_identity {
            return Err(AddPeerError::OwnIdentity);
        }
        if let Some(&existing) = self.by_identity.get(&identity) {
            return Err(AddPeerError::Duplicate(existing));
        }
        let id = self.peers.len();
        self.by_identity.insert(identity, id);
        self.peers.push(Peer::new(settings));
        if self.peers[id].address.is_some() {
            self.start_handshake(now, id, false);
        }
        Ok(id)
    }

    /// Removes a peer with its session, handshakes and held packets, and
    /// returns its settings (`None` if there is no such peer). Its queued
    /// events and deliveries are dropped; the ids of later peers shift
    /// down by one. Its session's packets are refused from now on as of an
    /// unknown session (the remote side times out as after a restart).
    pub fn remove_peer(&mut self, peer: PeerId) -> Option<PeerSettings> {
        if peer >= self.peers.len() {
            return None;
        }
        let removed = self.peers.remove(peer);
        self.by_identity.remove(&removed.identity_bytes);
        self.by_session.retain(|_, owner| *owner != peer);
        let shift = |id: &mut PeerId| {
            if *id > peer {
                *id -= 1;
            }
        };
        self.by_identity.values_mut().for_each(shift);
        self.by_session.values_mut().for_each(shift);
        self.events.retain(|event| event_peer(event) != peer);
        for event in &mut self.events {
            shift(event_peer_mut(event));
        }
        self.deliveries.retain(|delivery| delivery.peer != peer);
        for delivery in &mut self.deliveries {
            shift(&mut delivery.peer);
        }
        shift(&mut self.next_transmitter);
        if self.next_transmitter >= self.peers.len() {
            self.next_transmitter = 0;
        }
        Some(removed.settings)
    }
}

fn event_peer(event: &Event) -> PeerId {
    match event {
        Event::SessionUp { peer, .. }
        | Event::SessionDown { peer, .. }
        | Event::HandshakeFailed { peer }
        | Event::PeerMoved { peer, .. } => *peer,
    }
}

fn event_peer_mut(event: &mut Event) -> &mut PeerId {
    match event {
        Event::SessionUp { peer, .. }
        | Event::SessionDown { peer, .. }
        | Event::HandshakeFailed { peer }
        | Event::PeerMoved { peer, .. } => peer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;
    use crate::endpoint::{EndpointConfig, SessionState};
    use crate::DeliveryClass;
    use std::net::SocketAddr;
    use std::time::Duration;

    const UNIX_MS: u64 = 1_800_000_000_000;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    struct Node {
        endpoint: Endpoint,
        address: SocketAddr,
        delivered: Vec<(PeerId, Vec<u8>)>,
    }

    fn node(own: u8, port: u16, peers: &[(u8, Option<u16>)]) -> Node {
        let peers = peers
            .iter()
            .map(|&(byte, peer_port)| PeerSettings {
                identity: key(byte).verifying_key(),
                endpoint: peer_port.map(address),
            })
            .collect();
        Node {
            endpoint: Endpoint::new(
                Timestamp::ZERO,
                UNIX_MS,
                key(own),
                EndpointConfig::default(),
                peers,
                [own; 32],
            ),
            address: address(port),
            delivered: Vec::new(),
        }
    }

    /// Runs every node for `duration` in 1 ms steps over a lossless,
    /// instant network.
    fn run(nodes: &mut [Node], start: Timestamp, duration: Duration) -> Timestamp {
        let mut now = start;
        let end = start + duration;
        while now < end {
            let mut in_flight = Vec::new();
            for node in nodes.iter_mut() {
                let mut buffer = Vec::new();
                while let Some(transmit) = node.endpoint.poll_transmit(now, &mut buffer) {
                    let datagram = buffer[buffer.len() - transmit.size..].to_vec();
                    in_flight.push((node.address, transmit.destination, datagram));
                    buffer.clear();
                }
            }
            for (from, to, mut datagram) in in_flight {
                if let Some(node) = nodes.iter_mut().find(|n| n.address == to) {
                    let _ = node.endpoint.handle_datagram(now, from, &mut datagram);
                }
            }
            now += Duration::from_millis(1);
            for node in nodes.iter_mut() {
                if node.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    node.endpoint.handle_timeout(now);
                }
                while let Some(delivery) = node.endpoint.poll_delivery() {
                    node.delivered.push((delivery.peer, delivery.segment));
                }
                while node.endpoint.poll_event().is_some() {}
            }
        }
        now
    }

    fn session_of(node: &Node, peer: PeerId) -> Option<u64> {
        node.endpoint.peer_status(peer).and_then(|s| s.session_id)
    }

    #[test]
    fn adding_and_removing_peers_leaves_other_sessions_alone() {
        // Server 1 knows clients 2 and 3; both clients know the server.
        let mut nodes = vec![
            node(1, 1000, &[(2, None), (3, None)]),
            node(2, 2000, &[(1, Some(1000))]),
            node(3, 3000, &[(1, Some(1000))]),
            node(4, 4000, &[(1, Some(1000))]),
        ];
        let now = run(&mut nodes, Timestamp::ZERO, Duration::from_secs(2));
        let client3 = session_of(&nodes[0], 1).expect("client 3 has a session");
        assert!(session_of(&nodes[0], 0).is_some(), "client 2 has a session");
        // Client 4 is unknown so far.
        assert_eq!(nodes[0].endpoint.peer_count(), 2);
        assert!(session_of(&nodes[3], 0).is_none());

        let unknown_before = nodes[0].endpoint.drops().unknown_session;
        // Remove client 2 (id 0): client 3 moves to id 0 with its session.
        let removed = nodes[0].endpoint.remove_peer(0).expect("peer 0 exists");
        assert_eq!(removed.identity, key(2).verifying_key());
        assert_eq!(nodes[0].endpoint.peer_count(), 1);
        assert_eq!(session_of(&nodes[0], 0), Some(client3));
        assert_eq!(
            nodes[0]
                .endpoint
                .peer_by_identity(&key(3).verifying_key().to_bytes()),
            Some(0)
        );
        assert!(nodes[0].endpoint.remove_peer(5).is_none());

        // Add client 4: it gets id 1 and a session once it calls.
        let id = nodes[0]
            .endpoint
            .add_peer(
                now,
                PeerSettings {
                    identity: key(4).verifying_key(),
                    endpoint: None,
                },
            )
            .expect("client 4 is new");
        assert_eq!(id, 1);
        assert_eq!(
            nodes[0].endpoint.add_peer(
                now,
                PeerSettings {
                    identity: key(3).verifying_key(),
                    endpoint: None,
                }
            ),
            Err(AddPeerError::Duplicate(0))
        );
        assert_eq!(
            nodes[0].endpoint.add_peer(
                now,
                PeerSettings {
                    identity: key(1).verifying_key(),
                    endpoint: None,
                }
            ),
            Err(AddPeerError::OwnIdentity)
        );
        let now = run(&mut nodes, now, Duration::from_secs(3));
        assert!(session_of(&nodes[0], 1).is_some(), "client 4 has a session");
        assert_eq!(
            session_of(&nodes[0], 0),
            Some(client3),
            "client 3 kept its session through both changes"
        );

        // Data still flows to client 3 at its new id, and from client 4.
        nodes[0]
            .endpoint
            .send_packet(now, 0, 7, DeliveryClass::Reliable, b"to three")
            .unwrap();
        nodes[3]
            .endpoint
            .send_packet(now, 0, 7, DeliveryClass::Reliable, b"from four")
            .unwrap();
        let _ = run(&mut nodes, now, Duration::from_millis(200));
        assert!(nodes[2].delivered.iter().any(|(_, p)| p == b"to three"));
        assert!(nodes[0]
            .delivered
            .iter()
            .any(|(peer, p)| *peer == 1 && p == b"from four"));
        // Client 2 still sends under its old session; the server no
        // longer knows it.
        assert!(
            nodes[0].endpoint.drops().unknown_session > unknown_before,
            "the removed peer's packets are refused"
        );
        assert_eq!(
            nodes[0].endpoint.peer_status(0).map(|s| s.state),
            Some(SessionState::Up)
        );
    }
}
