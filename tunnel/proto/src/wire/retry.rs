//! The retry (cookie reply) packet: what a responder under load sends
//! instead of doing any signature work for a handshake packet whose source
//! has not proven it receives at its address.
//!
//! ```text
//! 0      type = 0x03 (PACKET_TYPE_RETRY)
//! 1      protocol version
//! 2..34  responder's Ed25519 identity key
//! 34..50 echo: the first 16 bytes of the artifact hash of the commitment
//!        that prompted it (an off-path sender cannot know it)
//! 50..66 cookie: 16 bytes the initiator staples to its next handshake
//!        packets to this address (artifact kind COOKIE_KIND)
//! ```
//! 66 bytes: always smaller than the packet it answers (which carries a
//! 178-byte commitment), so a retry amplifies nothing.
//!
//! This module owns the layout; what the cookie is and when it is asked
//! for belong to the endpoint (`endpoint::admission`).

use super::codec::Reader;
use super::handshake::{HandshakePacketError, PROTOCOL_VERSION};
use super::PACKET_TYPE_RETRY;

/// Bytes of a retry packet.
pub const RETRY_LEN: usize = 2 + 32 + 16 + 16;
/// Bytes of a cookie.
pub const COOKIE_LEN: usize = 16;

/// A parsed retry packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPacket {
    /// The responder's identity key.
    pub responder: [u8; 32],
    /// The first 16 bytes of the hash of the commitment it answers.
    pub echo: [u8; 16],
    /// The cookie to staple.
    pub cookie: [u8; COOKIE_LEN],
}

impl RetryPacket {
    /// Parses a datagram. Never panics; every malformed input is an error.
    pub fn parse(datagram: &[u8]) -> Result<Self, HandshakePacketError> {
        let mut reader = Reader::new(datagram);
        if reader.u8()? != PACKET_TYPE_RETRY {
            return Err(HandshakePacketError::NotHandshake);
        }
        if reader.u8()? != PROTOCOL_VERSION {
            return Err(HandshakePacketError::UnsupportedVersion);
        }
        let packet = RetryPacket {
            responder: reader.array()?,
            echo: reader.array()?,
            cookie: reader.array()?,
        };
        if !reader.is_empty() {
            return Err(HandshakePacketError::Malformed);
        }
        Ok(packet)
    }

    /// Appends the packet to `out` and returns its length.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        out.push(PACKET_TYPE_RETRY);
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(&self.responder);
        out.extend_from_slice(&self.echo);
        out.extend_from_slice(&self.cookie);
        RETRY_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(responder in any::<[u8; 32]>(), echo in any::<[u8; 16]>(), cookie in any::<[u8; 16]>()) {
            let packet = RetryPacket { responder, echo, cookie };
            let mut out = Vec::new();
            prop_assert_eq!(packet.encode(&mut out), RETRY_LEN);
            prop_assert_eq!(out.len(), RETRY_LEN);
            prop_assert_eq!(RetryPacket::parse(&out), Ok(packet));
            out.push(0);
            prop_assert_eq!(RetryPacket::parse(&out), Err(HandshakePacketError::Malformed));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = RetryPacket::parse(&bytes);
        }
    }
}
