//! The handshake packet: a small header naming the sender, then the
//! artifacts it staples.
//!
//! ```text
//! 0      type = 0x01 (PACKET_TYPE_HANDSHAKE)
//! 1      protocol version
//! 2..34  sender's Ed25519 identity key
//! 34..38 sender's elapsed handshake time, ms (u32 BE; lets a responder
//!        align its deadline with the initiator's)
//! 38     artifact count (1..=8)
//! then per artifact: kind (u8: 0..=5 proof levels, 6 = key confirmation,
//!                    7 = cookie), body length (u16 BE), body
//! ```
//! The worst case (all six proofs, the confirmation and a cookie) is 1002
//! bytes, under [`MAX_HANDSHAKE_PACKET`](super::MAX_HANDSHAKE_PACKET).
//!
//! `elapsed_ms` is not signed: a receiver never lets it move a deadline
//! further than the signed commitment time and the cut-off allow. The
//! cookie is not signed either: it only proves the sender's address (see
//! [`super::retry`]).
//!
//! This module owns the layout only; what the artifacts mean, and the
//! signatures in them, belong to the handshake.

use super::codec::{put_u16, put_u32, CodecError, Reader};
use super::PACKET_TYPE_HANDSHAKE;
use thiserror::Error;

/// The protocol version carried in every commitment and packet header.
pub const PROTOCOL_VERSION: u8 = 1;
/// Artifact kind of the highest proof level (Q_CONF_FINAL); kinds
/// `0..=MAX_PROOF_KIND` are the proof levels C, D, T, Q, Q_CONF,
/// Q_CONF_FINAL.
pub const MAX_PROOF_KIND: u8 = 5;
/// Wire kind number of the key-confirmation marker ("I hold RECEIPT").
pub const DONE_KIND: u8 = 6;
/// Encoded length of the session parameters in a commitment.
pub const SESSION_PARAMETERS_LEN: usize = 10;
/// Length of a commitment body in bytes.
pub const COMMITMENT_LEN: usize = 1 + 32 + 32 + 32 + 32 + SESSION_PARAMETERS_LEN + 8 + 8 + 64;
/// Length of a D, T, Q, Q_CONF or Q_CONF_FINAL body in bytes.
pub const PROOF_LEN: usize = 32 + 32 + 64;
/// Length of the key-confirmation marker body: RECEIPT and an HMAC tag.
pub const DONE_LEN: usize = 32 + 32;
/// Wire kind number of a cookie (from a retry packet; proves the sender's
/// address to a responder under load, carries no proof).
pub const COOKIE_KIND: u8 = 7;

/// Why bytes are not a handshake packet this side can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum HandshakePacketError {
    /// Shorter than its own length fields say.
    #[error("truncated packet")]
    Truncated,
    /// Lengths, counts or kinds that no valid packet has.
    #[error("malformed packet")]
    Malformed,
    /// Not a handshake packet at all.
    #[error("not a handshake packet")]
    NotHandshake,
    /// A protocol version we do not speak.
    #[error("unsupported protocol version")]
    UnsupportedVersion,
}

impl From<CodecError> for HandshakePacketError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated => HandshakePacketError::Truncated,
            CodecError::BadVarint => HandshakePacketError::Malformed,
        }
    }
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 39;
/// Most artifacts one packet may carry: six proofs, the confirmation and a
/// cookie.
pub const MAX_ARTIFACTS: usize = 8;

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

/// Offset of the artifact count in a handshake packet.
pub const COUNT_OFFSET: usize = 38;

/// Appends a cookie artifact to the encoded handshake packet at
/// `packet` (which must be one [`HandshakePacket::encode`] wrote). Returns
/// whether there was room for one more artifact.
pub fn append_cookie(
    packet: &mut Vec<u8>,
    start: usize,
    cookie: &[u8; super::retry::COOKIE_LEN],
) -> bool {
    let Some(count) = packet.get_mut(start + COUNT_OFFSET) else {
        return false;
    };
    if usize::from(*count) >= MAX_ARTIFACTS {
        return false;
    }
    *count += 1;
    packet.push(COOKIE_KIND);
    put_u16(packet, cookie.len() as u16);
    packet.extend_from_slice(cookie);
    true
}

fn expected_body_len(kind: u8) -> Option<usize> {
    match kind {
        DONE_KIND => Some(DONE_LEN),
        COOKIE_KIND => Some(super::retry::COOKIE_LEN),
        0 => Some(COMMITMENT_LEN),
        1..=MAX_PROOF_KIND => Some(PROOF_LEN),
        _ => None,
    }
}

/// Reads only the sender's identity key, so that an endpoint serving many
/// peers can find whose packet this is before doing any other work.
pub fn peek_sender(datagram: &[u8]) -> Result<[u8; 32], HandshakePacketError> {
    let mut reader = Reader::new(datagram);
    check_type_and_version(&mut reader)?;
    Ok(reader.array::<32>()?)
}

fn check_type_and_version(reader: &mut Reader<'_>) -> Result<(), HandshakePacketError> {
    if reader.u8()? != PACKET_TYPE_HANDSHAKE {
        return Err(HandshakePacketError::NotHandshake);
    }
    if reader.u8()? != PROTOCOL_VERSION {
        return Err(HandshakePacketError::UnsupportedVersion);
    }
    Ok(())
}

impl<'a> HandshakePacket<'a> {
    /// Parses a datagram. Never panics; every malformed input is an error.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, HandshakePacketError> {
        let mut reader = Reader::new(datagram);
        check_type_and_version(&mut reader)?;
        let sender = reader.array::<32>()?;
        let elapsed_ms = reader.u32()?;
        let count = usize::from(reader.u8()?);
        if count == 0 || count > MAX_ARTIFACTS {
            return Err(HandshakePacketError::Malformed);
        }
        let mut artifacts = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = reader.u8()?;
            let length = usize::from(reader.u16()?);
            if expected_body_len(kind) != Some(length) {
                return Err(HandshakePacketError::Malformed);
            }
            let body = reader.take(length)?;
            artifacts.push(ArtifactRef { kind, body });
        }
        if !reader.is_empty() {
            return Err(HandshakePacketError::Malformed);
        }
        Ok(HandshakePacket {
            sender,
            elapsed_ms,
            artifacts,
        })
    }

    /// Bytes [`HandshakePacket::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self
                .artifacts
                .iter()
                .map(|a| 3 + a.body.len())
                .sum::<usize>()
    }

    /// Appends the packet to `out` and returns its length. The caller keeps
    /// within [`MAX_ARTIFACTS`]; the length of each body is checked by the
    /// parser on the other side.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.reserve(self.encoded_len());
        out.push(PACKET_TYPE_HANDSHAKE);
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(&self.sender);
        put_u32(out, self.elapsed_ms);
        out.push(self.artifacts.len() as u8);
        for artifact in &self.artifacts {
            out.push(artifact.kind);
            put_u16(out, artifact.body.len() as u16);
            out.extend_from_slice(artifact.body);
        }
        out.len() - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_HANDSHAKE_PACKET;

    fn encode(packet: &HandshakePacket<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        packet.encode(&mut out);
        out
    }

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
        let bytes = encode(&packet);
        assert_eq!(bytes.len(), 983);
        assert!(bytes.len() <= MAX_HANDSHAKE_PACKET);
        assert_eq!(HandshakePacket::parse(&bytes), Ok(packet));
        let mut with_cookie = bytes.clone();
        assert!(append_cookie(&mut with_cookie, 0, &[9; 16]));
        assert_eq!(with_cookie.len(), 1002);
        assert!(with_cookie.len() <= MAX_HANDSHAKE_PACKET);
        let parsed = HandshakePacket::parse(&with_cookie).unwrap();
        assert_eq!(parsed.artifacts.len(), 8);
        assert_eq!(parsed.artifacts[7].kind, COOKIE_KIND);
        assert!(
            !append_cookie(&mut with_cookie, 0, &[9; 16]),
            "no ninth artifact"
        );
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
        let mut bytes = encode(&packet);
        bytes.push(0);
        assert_eq!(
            HandshakePacket::parse(&bytes),
            Err(HandshakePacketError::Malformed)
        );
        bytes.truncate(bytes.len() - 2);
        assert_eq!(
            HandshakePacket::parse(&bytes),
            Err(HandshakePacketError::Truncated)
        );
    }
}
