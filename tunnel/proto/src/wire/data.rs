//! The clear header of a sealed data packet.
//!
//! ```text
//! [type 0x02: u8][session_id: u64 BE][packet number: u64 BE]   header, in clear, authenticated (AAD)
//! [ciphertext of the body ...][tag: 16 bytes]                   AEAD-sealed body (frames, see [`super::frame`])
//! ```
//!
//! This module owns the layout; sealing and opening belong to
//! `crypto::aead`, and what the body means to the data plane.

use super::codec::{put_u64, Reader};
use super::PACKET_TYPE_DATA;
use thiserror::Error;

/// Bytes of clear header in front of every data packet: type, session id,
/// packet number.
pub const HEADER_LEN: usize = 1 + 8 + 8;
/// Bytes of the AEAD authentication tag at the end of every data packet.
pub const TAG_LEN: usize = 16;

/// Why bytes are not a data packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum DataHeaderError {
    /// Shorter than a header plus a tag.
    #[error("datagram too short to be a data packet")]
    Truncated,
    /// The first byte is not [`PACKET_TYPE_DATA`].
    #[error("not a data packet")]
    NotData,
}

/// The clear header of a data packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    /// Which session's keys sealed the packet.
    pub session_id: u64,
    /// The packet number, also the AEAD nonce.
    pub packet_number: u64,
}

impl DataHeader {
    /// Reads the clear header of a data packet without authenticating it.
    /// Checks that a tag can follow.
    pub fn parse(datagram: &[u8]) -> Result<Self, DataHeaderError> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(DataHeaderError::Truncated);
        }
        let mut reader = Reader::new(datagram);
        let kind = reader.u8().map_err(|_| DataHeaderError::Truncated)?;
        if kind != PACKET_TYPE_DATA {
            return Err(DataHeaderError::NotData);
        }
        let session_id = reader.u64().map_err(|_| DataHeaderError::Truncated)?;
        let packet_number = reader.u64().map_err(|_| DataHeaderError::Truncated)?;
        Ok(DataHeader {
            session_id,
            packet_number,
        })
    }

    /// Appends the header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(PACKET_TYPE_DATA);
        put_u64(out, self.session_id);
        put_u64(out, self.packet_number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(session_id in any::<u64>(), packet_number in any::<u64>()) {
            let header = DataHeader { session_id, packet_number };
            let mut out = Vec::new();
            header.encode(&mut out);
            prop_assert_eq!(out.len(), HEADER_LEN);
            out.extend_from_slice(&[0; TAG_LEN]);
            prop_assert_eq!(DataHeader::parse(&out), Ok(header));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = DataHeader::parse(&bytes);
        }
    }

    #[test]
    fn too_short_or_other_kind_is_refused() {
        assert_eq!(
            DataHeader::parse(&[PACKET_TYPE_DATA; 32]),
            Err(DataHeaderError::Truncated)
        );
        assert_eq!(
            DataHeader::parse(&[0x01; 40]),
            Err(DataHeaderError::NotData)
        );
    }
}
