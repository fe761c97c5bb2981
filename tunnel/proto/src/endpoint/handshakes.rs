//! Setting sessions up: starting handshakes, answering a peer that starts
//! one (as responder, only for a commitment that passed the cheap checks
//! and admission ([`super::admission`]) and then verified, newer than any
//! seen), the addresses a handshake floods and their amplification
//! budgets, retries (cookies) both ways, and turning a handshake's events
//! into sessions (fresh or rekeyed), retries with back-off, and the
//! packets held meanwhile.

use super::admission::Verdict;
use super::session::Session;
use super::{DatagramOutcome, DownReason, Endpoint, EndpointDrop, Event, PeerId};
use crate::crypto::keys::SessionKeys;
use crate::crypto::Hash;
use crate::handshake::artifact::{artifact_hash, Commitment, Level, PROTOCOL_VERSION};
use crate::handshake::{peek_sender, DropReason as HandshakeDrop, Handshake, HandshakeEvent};
use crate::time::Timestamp;
use crate::wire::handshake::{HandshakePacket, COOKIE_KIND};
use crate::wire::retry::RetryPacket;
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
            let p = &mut self.peers[peer];
            p.replace_handshake(handshake);
            p.cookie = None;
            match p.address {
                Some(address) => p.paths.reset_to(address, true),
                None => p.paths = Default::default(),
            }
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
        self.peers[peer].paths.on_received(from, datagram.len());
        // A commitment no handshake of this peer holds would cost a
        // signature check: it must pass admission first.
        let admitted = match self.admit(now, from, peer, datagram) {
            Ok(admitted) => admitted,
            Err(reason) => {
                return DatagramOutcome::Handshake {
                    peer,
                    progressed: false,
                    dropped: Some(reason),
                }
            }
        };
        let p = &mut self.peers[peer];
        if let Some(lingering) = &mut p.lingering {
            // Packets of the old session are answered there; others are
            // refused there without effect (and without signature work:
            // it is past D, so a new commitment is refused before).
            let _ = lingering.handle_packet(now, datagram);
        }
        let (mut progressed, mut proves_peer, mut dropped) = (false, false, None);
        let needs_new_handshake = match &mut p.handshake {
            Some(handshake) if !handshake.is_finished() => {
                if let Some(hash) = admitted {
                    handshake.trust_verified(hash);
                }
                let received = handshake.handle_packet(now, datagram);
                progressed = received.progressed();
                proves_peer = received.proves_peer;
                dropped = received.dropped;
                received.dropped == Some(HandshakeDrop::NewerCommitment)
            }
            _ => true,
        };
        if needs_new_handshake {
            match admitted {
                Some(hash) if self.start_responder(now, peer, from, hash, datagram) => {
                    progressed = true;
                    dropped = None;
                }
                _ => {
                    self.drops.stale_handshake += 1;
                    dropped = Some(HandshakeDrop::StaleCommitment);
                }
            }
        } else if progressed {
            let p = &mut self.peers[peer];
            if let Some(time) = p.handshake.as_ref().and_then(|h| h.peer_commitment_time()) {
                p.newest_peer_commitment = p.newest_peer_commitment.max(time);
            }
            if proves_peer {
                // A proof linked to our fresh commitment: the source
                // receives what we send there.
                p.paths.validate(from);
                self.note_authentic_source(peer, from);
            } else if admitted.is_some() {
                let known = p.address == Some(from);
                p.paths.add_candidate(from, known, datagram.len());
            }
        }
        self.drain_handshake_events(now, peer);
        DatagramOutcome::Handshake {
            peer,
            progressed,
            dropped,
        }
    }

    /// The cheap checks and the admission of a handshake packet's
    /// commitment, if it carries one that no handshake of `peer` holds:
    /// layout, keys, parameters, clock skew, newer than any seen from the
    /// peer, not known to be forged; then [`Admission::check`] (under load
    /// a retry is queued instead); then its one signature check. Returns
    /// the hash of a commitment verified here (`None` if the packet carries
    /// none that is new), or why the packet goes no further.
    fn admit(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        peer: PeerId,
        datagram: &[u8],
    ) -> Result<Option<Hash>, HandshakeDrop> {
        let packet = HandshakePacket::parse(datagram)?;
        let Some(body) = packet
            .artifacts
            .iter()
            .find(|a| a.kind == Level::Commitment as u8)
            .map(|a| a.body)
        else {
            return Ok(None);
        };
        let (commitment, signature) = Commitment::decode(body)?;
        let p = &self.peers[peer];
        // Commitments of one peer are taken in increasing order of their
        // signed start time, and every one a handshake took moved the
        // marker: anything not newer is a flooded copy of one a handshake
        // holds (same time; let it through, it costs a hash there) or a
        // replay, refused here for the price of a comparison.
        let time = |h: &Option<Handshake>| h.as_ref().and_then(|h| h.peer_commitment_time());
        let live_time = p
            .handshake
            .as_ref()
            .filter(|h| !h.is_finished())
            .and_then(|h| h.peer_commitment_time())
            .unwrap_or(0);
        if commitment.unix_time_ms <= p.newest_peer_commitment.max(live_time) {
            let same_time =
                [time(&p.handshake), time(&p.lingering)].contains(&Some(commitment.unix_time_ms));
            if same_time {
                let hash = artifact_hash(Level::Commitment as u8, &p.identity_bytes, body);
                let held = |h: &Option<Handshake>| {
                    h.as_ref().and_then(|h| h.peer_commitment_hash()) == Some(hash)
                };
                if held(&p.handshake) || held(&p.lingering) {
                    return Ok(None);
                }
            }
            self.drops.stale_handshake += 1;
            return Err(HandshakeDrop::StaleCommitment);
        }
        let hash = artifact_hash(Level::Commitment as u8, &p.identity_bytes, body);
        if self.admission.is_rejected(&hash) {
            return Err(HandshakeDrop::BadSignature);
        }
        if commitment.version != PROTOCOL_VERSION {
            return Err(HandshakeDrop::UnsupportedVersion);
        }
        if commitment.signer != p.identity_bytes || commitment.peer != self.own_identity {
            return Err(HandshakeDrop::UnknownPeer);
        }
        if commitment.parameters != self.config.handshake.parameters() {
            return Err(HandshakeDrop::ParameterMismatch);
        }
        let skew_ms =
            u64::try_from(self.config.handshake.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if commitment.unix_time_ms.abs_diff(self.unix_time_ms(now)) > skew_ms {
            return Err(HandshakeDrop::ClockSkew);
        }
        let cookie = packet
            .artifacts
            .iter()
            .find(|a| a.kind == COOKIE_KIND)
            .map(|a| a.body);
        match self.admission.check(now, from, cookie) {
            Verdict::Verify => {}
            Verdict::Retry => {
                if self
                    .admission
                    .queue_retry(now, from, self.own_identity, &hash)
                {
                    self.drops.retries_sent += 1;
                }
                return Err(HandshakeDrop::CookieRequired);
            }
            Verdict::Limited => {
                self.drops.handshake_rate_limited += 1;
                return Err(HandshakeDrop::RateLimited);
            }
        }
        self.drops.handshake_verifications += 1;
        if commitment
            .verify(&self.peers[peer].settings.identity, &signature)
            .is_err()
        {
            self.admission.reject(hash);
            return Err(HandshakeDrop::BadSignature);
        }
        Ok(Some(hash))
    }

    /// The peer began a handshake we have no live state for, with a
    /// commitment verified and admitted: answer it with a new handshake,
    /// flooding `from` only within its amplification budget until it
    /// proves that it receives there. Returns whether it did.
    fn start_responder(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        from: SocketAddr,
        commitment: Hash,
        datagram: &[u8],
    ) -> bool {
        let Some(mut candidate) = self.new_handshake(now, peer, true) else {
            return false;
        };
        candidate.trust_verified(commitment);
        let _ = candidate.handle_packet(now, datagram);
        let Some(commitment_time) = candidate.peer_commitment_time() else {
            return false;
        };
        let p = &mut self.peers[peer];
        p.newest_peer_commitment = p.newest_peer_commitment.max(commitment_time);
        p.replace_handshake(candidate);
        p.cookie = None;
        let known = p.address == Some(from);
        p.paths.reset_to(from, known);
        p.paths.on_received(from, datagram.len());
        true
    }

    /// A retry packet: a responder under load asks us to prove our address.
    /// Taken only for the commitment of our running handshake, from an
    /// address we flood.
    pub(super) fn handle_retry(&mut self, from: SocketAddr, datagram: &[u8]) -> DatagramOutcome {
        let Ok(retry) = RetryPacket::parse(datagram) else {
            return DatagramOutcome::Dropped(EndpointDrop::NotTgp);
        };
        let Some(peer) = self.peer_by_identity(&retry.responder) else {
            return DatagramOutcome::Dropped(EndpointDrop::UnknownPeer);
        };
        let p = &mut self.peers[peer];
        let ours = p
            .handshake
            .as_ref()
            .filter(|h| !h.is_finished())
            .is_some_and(|h| h.own_commitment_hash()[..16] == retry.echo);
        let flooded = p.paths.paths().iter().any(|path| path.address == from);
        if !ours || !flooded {
            self.drops.stale_retry += 1;
            return DatagramOutcome::Handshake {
                peer,
                progressed: false,
                dropped: Some(HandshakeDrop::WrongSession),
            };
        }
        p.cookie = Some((from, retry.cookie));
        DatagramOutcome::Handshake {
            peer,
            progressed: true,
            dropped: None,
        }
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
