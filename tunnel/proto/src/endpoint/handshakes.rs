//! Setting sessions up: starting handshakes, answering a peer that starts
//! one (as responder, only for a verified commitment newer than any seen),
//! and turning a handshake's events into sessions (fresh or rekeyed),
//! retries with back-off, and the packets held meanwhile.

use super::session::Session;
use super::{DatagramOutcome, DownReason, Endpoint, EndpointDrop, Event, PeerId};
use crate::crypto::keys::SessionKeys;
use crate::handshake::{peek_sender, DropReason as HandshakeDrop, Handshake, HandshakeEvent};
use crate::time::Timestamp;
use std::net::SocketAddr;

impl Endpoint {
    pub(super) fn new_handshake(
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

    pub(super) fn start_handshake(&mut self, now: Timestamp, peer: PeerId, responder: bool) {
        if let Some(handshake) = self.new_handshake(now, peer, responder) {
            self.peers[peer].replace_handshake(handshake);
        }
    }

    pub(super) fn handle_handshake_packet(
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

    pub(super) fn drain_handshake_events(&mut self, now: Timestamp, peer: PeerId) {
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
}
