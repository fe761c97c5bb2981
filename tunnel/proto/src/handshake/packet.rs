//! The handshake packet: a small header naming the sender, then the
//! artifacts it staples.
//!
//! ```text
//! 0      type = 0x01 (PACKET_TYPE_HANDSHAKE)
//! 1      protocol version
//! 2..34  sender's Ed25519 identity key
//! 34..38 sender's elapsed handshake time, ms (u32 LE; lets a responder
//!        align its deadline with the initiator's)
//! 38     artifact count (1..=7)
//! then per artifact: kind (u8: 0..=5 proof levels, 6 = key confirmation),
//!                    body length (u16 LE), body
//! ```
//! The worst case (all six proofs and the confirmation) is 983 bytes, under
//! [`MAX_HANDSHAKE_PACKET`](crate::wire::MAX_HANDSHAKE_PACKET).

use super::artifact::{
    Level, Reader, COMMITMENT_LEN, DONE_KIND, DONE_LEN, PROOF_LEN, PROTOCOL_VERSION,
};
use super::DropReason;
use crate::wire::PACKET_TYPE_HANDSHAKE;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 39;
/// Most artifacts one packet may carry: six proofs and the confirmation.
pub const MAX_ARTIFACTS: usize = 7;

/// One stapled artifact, borrowed from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArtifactRef<'a> {
    /// Kind number: a [`Level`] or [`DONE_KIND`].
    pub kind: u8,
    /// The artifact body.
    pub body: &'a [u8],
}

/// A parsed handshake packet, borrowing from the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakePacket<'a> {
    /// The sender's identity key.
    pub sender: [u8; 32],
    /// The sender's elapsed handshake time in milliseconds.
    pub elapsed_ms: u32,
    /// The artifacts, in the order they appear.
    pub artifacts: Vec<ArtifactRef<'a>>,
}

fn expected_body_len(kind: u8) -> Option<usize> {
    match kind {
        DONE_KIND => Some(DONE_LEN),
        0 => Some(COMMITMENT_LEN),
        _ => Level::from_number(kind).map(|_| PROOF_LEN),
    }
}

/// Reads only the sender's identity key, so that an endpoint serving many
/// peers can find whose packet this is before doing any other work.
pub fn peek_sender(datagram: &[u8]) -> Result<[u8; 32], DropReason> {
    let mut reader = Reader::new(datagram);
    check_type_and_version(&mut reader)?;
    reader.array::<32>()
}

fn check_type_and_version(reader: &mut Reader<'_>) -> Result<(), DropReason> {
    if reader.byte()? != PACKET_TYPE_HANDSHAKE {
        return Err(DropReason::NotHandshake);
    }
    if reader.byte()? != PROTOCOL_VERSION {
        return Err(DropReason::UnsupportedVersion);
    }
    Ok(())
}

impl<'a> HandshakePacket<'a> {
    /// Parses a datagram. Never panics; every malformed input is an error.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, DropReason> {
        let mut reader = Reader::new(datagram);
        check_type_and_version(&mut reader)?;
        let sender = reader.array::<32>()?;
        let elapsed_ms = u32::from_le_bytes(reader.array::<4>()?);
        let count = usize::from(reader.byte()?);
        if count == 0 || count > MAX_ARTIFACTS {
            return Err(DropReason::Malformed);
        }
        let mut artifacts = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = reader.byte()?;
            let length = usize::from(u16::from_le_bytes(reader.array::<2>()?));
            if expected_body_len(kind) != Some(length) {
                return Err(DropReason::Malformed);
            }
            let body = reader.take(length)?;
            artifacts.push(ArtifactRef { kind, body });
        }
        if !reader.is_empty() {
            return Err(DropReason::Malformed);
        }
        Ok(HandshakePacket {
            sender,
            elapsed_ms,
            artifacts,
        })
    }

    /// Encodes the packet. The caller keeps within [`MAX_ARTIFACTS`]; the
    /// length of each body is checked by the parser on the other side.
    pub fn encode(&self) -> Vec<u8> {
        let body_bytes: usize = self.artifacts.iter().map(|a| 3 + a.body.len()).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + body_bytes);
        out.push(PACKET_TYPE_HANDSHAKE);
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(&self.elapsed_ms.to_le_bytes());
        out.push(self.artifacts.len() as u8);
        for artifact in &self.artifacts {
            out.push(artifact.kind);
            out.extend_from_slice(&(artifact.body.len() as u16).to_le_bytes());
            out.extend_from_slice(artifact.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_HANDSHAKE_PACKET;

    #[test]
    fn worst_case_packet_fits_the_limit() {
        let commitment = vec![0u8; COMMITMENT_LEN];
        let proof = vec![0u8; PROOF_LEN];
        let done = vec![0u8; DONE_LEN];
        let mut artifacts = vec![ArtifactRef {
            kind: 0,
            body: &commitment,
        }];
        for level in 1..=5 {
            artifacts.push(ArtifactRef {
                kind: level,
                body: &proof,
            });
        }
        artifacts.push(ArtifactRef {
            kind: DONE_KIND,
            body: &done,
        });
        let packet = HandshakePacket {
            sender: [1; 32],
            elapsed_ms: 5,
            artifacts,
        };
        let bytes = packet.encode();
        assert_eq!(bytes.len(), 983);
        assert!(bytes.len() <= MAX_HANDSHAKE_PACKET);
        assert_eq!(HandshakePacket::parse(&bytes), Ok(packet));
    }

    #[test]
    fn rejects_wrong_lengths_and_trailing_bytes() {
        let proof = vec![0u8; PROOF_LEN];
        let packet = HandshakePacket {
            sender: [1; 32],
            elapsed_ms: 0,
            artifacts: vec![ArtifactRef {
                kind: 2,
                body: &proof,
            }],
        };
        let mut bytes = packet.encode();
        bytes.push(0);
        assert_eq!(HandshakePacket::parse(&bytes), Err(DropReason::Malformed));
        bytes.truncate(bytes.len() - 2);
        assert_eq!(HandshakePacket::parse(&bytes), Err(DropReason::Truncated));
    }
}
