//! Flooding: when the handshake sends, and what each packet staples (every
//! proof of ours the peer has not shown it holds, and the key
//! confirmation once we hold RECEIPT).

use super::artifact::{Level, DONE_KIND};
use super::config::duration_ms;
use super::{Handshake, Outcome};
use crate::time::Timestamp;
use crate::wire::handshake::{ArtifactRef, HandshakePacket};

impl Handshake {
    fn flooding(&self) -> bool {
        !self.finished && !self.peer_confirmed && self.outcome != Outcome::Aborted
    }

    fn next_send(&self) -> Option<Timestamp> {
        if self.finished || !(self.flooding() || self.answer_pending) {
            return None;
        }
        Some(match self.last_send {
            Some(last) => last + self.config.flood_interval,
            None => self.started,
        })
    }

    /// When [`Handshake::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let decision = match self.outcome {
            Outcome::Pending => Some(self.deadline()),
            Outcome::Established if !self.finished => Some(self.deadline() + self.config.linger),
            _ => None,
        };
        [self.next_send(), decision].into_iter().flatten().min()
    }

    /// Time has reached a point given by [`Handshake::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance_time(now);
    }

    /// Appends the next packet to send to `buffer`, if one is due at
    /// `now`, and returns its length.
    pub fn poll_transmit(&mut self, now: Timestamp, buffer: &mut Vec<u8>) -> Option<usize> {
        self.advance_time(now);
        if self.next_send()? > now {
            return None;
        }
        let size = self.build_packet(now, buffer);
        self.last_send = Some(now);
        self.answer_pending = false;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += size as u64;
        Some(size)
    }

    /// Appends the packet we flood now: every proof of ours the peer has
    /// not shown it holds, and our key confirmation once we hold RECEIPT.
    fn build_packet(&self, now: Timestamp, buffer: &mut Vec<u8>) -> usize {
        let first_needed = self.peer_holds.map_or(0, |held| held.index() + 1);
        let mut artifacts: Vec<ArtifactRef<'_>> = Level::ALL[first_needed.min(6)..]
            .iter()
            .filter_map(|level| {
                self.own[level.index()].as_ref().map(|held| ArtifactRef {
                    kind: *level as u8,
                    body: &held.body,
                })
            })
            .collect();
        if let Some(confirmation) = &self.own_confirmation {
            artifacts.push(ArtifactRef {
                kind: DONE_KIND,
                body: confirmation,
            });
        }
        if artifacts.is_empty() {
            // Nothing new for the peer: repeat our commitment so the packet
            // still names this session.
            if let Some(commitment) = &self.own[0] {
                artifacts.push(ArtifactRef {
                    kind: 0,
                    body: &commitment.body,
                });
            }
        }
        let elapsed_ms = duration_ms(now - self.started);
        HandshakePacket {
            sender: self.own_key,
            elapsed_ms,
            artifacts,
        }
        .encode(buffer)
    }
}
