//! Taking in the peer's packets: parsing, verifying every artifact once
//! (signature and both hash links, cached by hash), and accepting
//! commitments, proofs and the key confirmation.

use super::artifact::{artifact_hash, Commitment, Level, Proof, DONE_KIND, PROTOCOL_VERSION};
use super::{DropReason, Handshake, Held, Outcome, Received, REJECTED_CACHE_LIMIT};
use crate::crypto::kdf::confirmation_tag_is_valid;
use crate::crypto::{Hash, VerifyingKey};
use crate::time::Timestamp;
use crate::wire::handshake::{ArtifactRef, HandshakePacket, COOKIE_KIND, DONE_LEN};
use std::time::Duration;

impl Handshake {
    /// Handles a received handshake datagram. Returns how many new artifacts
    /// of the peer it carried (a packet that moved the handshake on came
    /// from the peer: the caller may treat its source as authenticated for
    /// roaming) and the reason it, or one of its artifacts, was dropped
    /// (also counted in [`Handshake::stats`]).
    pub fn handle_packet(&mut self, now: Timestamp, datagram: &[u8]) -> Received {
        self.stats.packets_received += 1;
        self.advance_time(now);
        let accepted_before = self.stats.artifacts_accepted;
        let proofs_before = self.peer_proofs_accepted;
        let result = self.process_packet(now, datagram);
        if let Err(reason) = result {
            self.stats.count_drop(reason);
        }
        Received {
            new_artifacts: (self.stats.artifacts_accepted - accepted_before) as u32,
            proves_peer: self.peer_proofs_accepted > proofs_before,
            dropped: result.err(),
        }
    }

    fn process_packet(&mut self, now: Timestamp, datagram: &[u8]) -> Result<(), DropReason> {
        if self.finished {
            return Err(DropReason::Finished);
        }
        let mut packet = HandshakePacket::parse(datagram)?;
        if packet.sender != self.peer_key_bytes {
            return Err(DropReason::UnknownPeer);
        }
        // A cookie proves only the sender's address, to the endpoint; it
        // is no part of the handshake.
        packet.artifacts.retain(|a| a.kind != COOKIE_KIND);
        packet.artifacts.sort_by_key(|a| a.kind);
        let mut outcome = Ok(());
        for &artifact in &packet.artifacts {
            if let Err(reason) = self.accept_artifact(now, artifact, packet.elapsed_ms) {
                outcome = Err(reason);
                break;
            }
            self.build_what_we_can(now);
        }
        // A peer that still staples proofs has not seen our confirmation
        // (a confirmed peer sends the confirmation alone). Only a packet
        // that was valid throughout earns an answer: make sure it
        // hears from us soon even after our own flooding has stopped. A
        // confirmation-only packet needs no answer, so this cannot ping-pong.
        let peer_still_working = packet
            .artifacts
            .iter()
            .any(|a| a.kind != DONE_KIND && a.kind != COOKIE_KIND);
        if outcome.is_ok() && peer_still_working && self.outcome != Outcome::Aborted {
            self.answer_pending = true;
        }
        outcome
    }

    fn accept_artifact(
        &mut self,
        now: Timestamp,
        artifact: ArtifactRef<'_>,
        peer_elapsed_ms: u32,
    ) -> Result<(), DropReason> {
        if artifact.kind == DONE_KIND {
            return self.accept_confirmation(artifact.body);
        }
        let level = Level::from_number(artifact.kind).ok_or(DropReason::Malformed)?;
        let hash = artifact_hash(artifact.kind, &self.peer_key_bytes, artifact.body);
        if let Some(held) = &self.peer[level.index()] {
            if held.hash == hash {
                self.stats.duplicate_artifacts += 1;
                self.note_peer_holds(level);
                return Ok(());
            }
        }
        if self.rejected.contains(&hash) {
            return Err(DropReason::BadSignature);
        }
        if level == Level::Commitment {
            self.accept_commitment(now, artifact.body, hash, peer_elapsed_ms)?;
        } else {
            self.accept_proof(level, artifact.body, hash)?;
        }
        self.stats.artifacts_accepted += 1;
        self.note_peer_holds(level);
        Ok(())
    }

    /// Verifies a signature unless this artifact's was verified before.
    fn check_signature(
        &mut self,
        hash: Hash,
        verify: impl FnOnce(&VerifyingKey) -> Result<(), DropReason>,
    ) -> Result<(), DropReason> {
        if self.verified.contains(&hash) {
            return Ok(());
        }
        self.stats.signature_verifications += 1;
        match verify(&self.peer_key) {
            Ok(()) => {
                self.verified.insert(hash);
                Ok(())
            }
            Err(reason) => {
                if self.rejected.len() >= REJECTED_CACHE_LIMIT {
                    self.rejected.clear();
                }
                self.rejected.insert(hash);
                Err(reason)
            }
        }
    }

    fn accept_commitment(
        &mut self,
        now: Timestamp,
        body: &[u8],
        hash: Hash,
        peer_elapsed_ms: u32,
    ) -> Result<(), DropReason> {
        let (commitment, signature) = Commitment::decode(body)?;
        if commitment.version != PROTOCOL_VERSION {
            return Err(DropReason::UnsupportedVersion);
        }
        if commitment.signer != self.peer_key_bytes || commitment.peer != self.own_key {
            return Err(DropReason::UnknownPeer);
        }
        if commitment.parameters != self.config.parameters() {
            return Err(DropReason::ParameterMismatch);
        }
        let our_unix_now = self
            .unix_time_at_start_ms
            .saturating_add(u64::try_from((now - self.started).as_millis()).unwrap_or(u64::MAX));
        let skew_ms = u64::try_from(self.config.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if commitment.unix_time_ms.abs_diff(our_unix_now) > skew_ms {
            return Err(DropReason::ClockSkew);
        }
        if let Some(current) = &self.peer_commitment {
            // A different commitment from the peer: a restart on its side,
            // or a replay. Only a newer one may replace ours, and only while
            // nothing beyond D has been built on the old one.
            if commitment.unix_time_ms <= current.unix_time_ms {
                return Err(DropReason::StaleCommitment);
            }
            if self.highest_own_level() > Level::Double || self.outcome != Outcome::Pending {
                return Err(DropReason::NewerCommitment);
            }
        }
        self.check_signature(hash, |key| commitment.verify(key, &signature))?;
        if self.peer_commitment.is_some() {
            self.forget_peer_progress();
        }
        if self.config.align_start_to_peer && !self.aligned {
            self.aligned = true;
            let peer_elapsed = Duration::from_millis(plausible_elapsed_ms(
                peer_elapsed_ms,
                our_unix_now.saturating_sub(commitment.unix_time_ms),
                skew_ms,
                self.config
                    .deadline
                    .saturating_sub(self.config.cutoff_margin),
            ));
            let peer_start = now.saturating_sub(peer_elapsed);
            if peer_start < self.started {
                self.started = peer_start;
            }
        }
        self.peer_commitment = Some(commitment);
        self.peer[Level::Commitment.index()] = Some(Held {
            body: body.to_vec(),
            hash,
        });
        Ok(())
    }

    /// Drops everything built on the peer's old commitment.
    fn forget_peer_progress(&mut self) {
        self.peer = Default::default();
        for level in &mut self.own[1..] {
            *level = None;
        }
        self.peer_holds = None;
    }

    fn accept_proof(&mut self, level: Level, body: &[u8], hash: Hash) -> Result<(), DropReason> {
        let (proof, signature) = Proof::decode(level, body)?;
        let lower = level.lower().ok_or(DropReason::Malformed)?;
        let reference = level.peer_reference().ok_or(DropReason::Malformed)?;
        let Some(peer_lower) = &self.peer[lower.index()] else {
            return Err(DropReason::MissingLowerProof);
        };
        if peer_lower.hash != proof.own_lower {
            return Err(DropReason::WrongSession);
        }
        match &self.own[reference.index()] {
            Some(own) if own.hash == proof.peer_reference => {}
            _ => return Err(DropReason::WrongSession),
        }
        if self.peer[level.index()].is_some() {
            // A second, different proof of a level we already hold: the
            // peer cannot sign two over the same links (Ed25519 is
            // deterministic), so this is not from this session.
            return Err(DropReason::WrongSession);
        }
        self.check_signature(hash, |key| proof.verify(key, &signature))?;
        self.peer[level.index()] = Some(Held {
            body: body.to_vec(),
            hash,
        });
        self.peer_proofs_accepted += 1;
        Ok(())
    }

    fn accept_confirmation(&mut self, body: &[u8]) -> Result<(), DropReason> {
        let (Some(receipt), Some(secrets)) = (&self.receipt, &self.secrets) else {
            return Err(DropReason::PrematureConfirmation);
        };
        if body.len() != DONE_LEN || body[..32] != receipt[..] {
            return Err(DropReason::BadConfirmation);
        }
        if !confirmation_tag_is_valid(&secrets.peer_confirmation_key, receipt, &body[32..]) {
            return Err(DropReason::BadConfirmation);
        }
        self.peer_confirmed = true;
        self.peer_holds = Some(Level::FinalConfirmation);
        Ok(())
    }
}

/// How far back a responder may move its start for the peer's unsigned
/// `elapsed_ms`: never before the peer's cut-off (so a forged value cannot
/// make it abort at once: a peer that is past its cut-off cannot complete
/// anyway), and never further from what the signed commitment time says
/// (`signed_elapsed_ms`, in our clock) than the allowed clock skew.
pub(crate) fn plausible_elapsed_ms(
    claimed_ms: u32,
    signed_elapsed_ms: u64,
    skew_ms: u64,
    cutoff_offset: Duration,
) -> u64 {
    let cutoff_ms = u64::try_from(cutoff_offset.as_millis()).unwrap_or(u64::MAX);
    let low = signed_elapsed_ms.saturating_sub(skew_ms);
    let high = signed_elapsed_ms.saturating_add(skew_ms);
    u64::from(claimed_ms)
        .clamp(low.min(high), high)
        .min(cutoff_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_is_held_to_the_cutoff_and_the_signed_time() {
        let cutoff = Duration::from_secs(5);
        // Honest: as claimed.
        assert_eq!(plausible_elapsed_ms(40, 45, 1000, cutoff), 40);
        // A forged large value cannot pass the cut-off...
        assert_eq!(
            plausible_elapsed_ms(u32::MAX, 100_000, 200_000, cutoff),
            5000
        );
        // ...nor stray from the signed start time by more than the skew.
        assert_eq!(plausible_elapsed_ms(4000, 10, 100, cutoff), 110);
        assert_eq!(plausible_elapsed_ms(0, 3000, 100, cutoff), 2900);
    }
}
