//! The model's segment and its byte format.
//!
//! A [`Segment`] holds what the TCP model reads from a header: sequence and
//! acknowledgement numbers (64-bit byte offsets, no wrap-around), the
//! receive window, the timestamp option (TSval/TSecr in milliseconds, as
//! Linux sends them) and up to [`MAX_SACK_BLOCKS`] SACK blocks, plus the
//! payload length. Payload bytes are synthetic: byte `i` of the stream is
//! [`payload_byte`]`(i)`, so a receiver can check what it got.
//!
//! On the wire a segment takes exactly the bytes a real IPv4 TCP segment
//! with timestamps would: [`HEADER_LEN`] (20 IP + 20 TCP + 12 timestamp
//! option) plus, with SACK blocks, 4 + 8 per block, then the payload. The
//! model's fields are written at the start of that header space (they take
//! `44 + 8 × blocks` bytes, always within it) and the rest is zero:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | magic `0x54` |
//! | 1 | 1 | reserved (0) |
//! | 2 | 1 | SACK block count |
//! | 3 | 1 | reserved (0) |
//! | 4 | 2 | header length (big endian) |
//! | 6 | 2 | reserved (0) |
//! | 8 | 8 | sequence number |
//! | 16 | 8 | acknowledgement number |
//! | 24 | 4 | receive window, bytes |
//! | 28 | 4 | TSval |
//! | 32 | 4 | TSecr |
//! | 36 | 8 | stamp: simulator time the segment was handed on, ns (not a TCP field) |
//! | 44 | 8 each | SACK blocks: low 32 bits of start and end, relative to the ACK number like real TCP's 32-bit sequence space |

use std::fmt;
use tgp_proto::Timestamp;
use thiserror::Error;

/// Bytes of a segment's headers without SACK: IPv4 (20), TCP (20) and the
/// timestamp option with its padding (12).
pub const HEADER_LEN: usize = 52;
/// Most SACK blocks the format carries (TCP's option space holds 4 without
/// timestamps; Linux sends at most 3 with them).
pub const MAX_SACK_BLOCKS: usize = 4;
/// Bytes of the model's own fields at the start of the header space.
const FIELDS_LEN: usize = 44;
const MAGIC: u8 = 0x54;

/// A SACK block: the byte range `start..end` arrived out of order (or, as
/// the first block of an ACK, a duplicate: DSACK).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackBlock {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl SackBlock {
    /// The block `start..end`.
    pub fn new(start: u64, end: u64) -> Self {
        SackBlock { start, end }
    }
}

impl fmt::Display for SackBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// One TCP segment as the model sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number of the first payload byte.
    pub seq: u64,
    /// Cumulative acknowledgement: the next byte expected from the peer.
    pub ack: u64,
    /// Receive window, bytes (window scaling is not modelled: the value is
    /// the scaled one).
    pub window: u32,
    /// Timestamp value, milliseconds of the sender's clock.
    pub ts_val: u32,
    /// Timestamp echo reply (0: none).
    pub ts_ecr: u32,
    /// SACK blocks, DSACK first when there is one.
    pub sack: Vec<SackBlock>,
    /// Payload bytes.
    pub payload_len: u32,
}

impl Segment {
    /// Bytes of headers on the wire.
    pub fn header_len(&self) -> usize {
        if self.sack.is_empty() {
            HEADER_LEN
        } else {
            HEADER_LEN + 4 + 8 * self.sack.len()
        }
    }

    /// Bytes on the wire (headers and payload).
    pub fn wire_len(&self) -> usize {
        self.header_len() + self.payload_len as usize
    }

    /// One past the last payload byte.
    pub fn end(&self) -> u64 {
        self.seq + u64::from(self.payload_len)
    }
}

/// Byte `offset` of the synthetic stream every sender sends.
pub fn payload_byte(offset: u64) -> u8 {
    // A period (251, prime) that no segment size divides, so a segment
    // placed at the wrong offset is caught.
    (offset % 251) as u8
}

/// Whether `payload` is what the stream holds from byte `seq` on.
pub fn payload_matches(seq: u64, payload: &[u8]) -> bool {
    payload
        .iter()
        .enumerate()
        .all(|(i, &b)| b == payload_byte(seq + i as u64))
}

/// Why bytes are not a segment of this format.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SegmentError {
    /// Shorter than the model's fields.
    #[error("segment of {len} bytes is shorter than the {min}-byte header")]
    TooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        min: usize,
    },
    /// The first byte is not the format's magic.
    #[error("bad magic byte {0:#04x}: not a TCP model segment")]
    BadMagic(u8),
    /// More SACK blocks than the format carries.
    #[error("{0} SACK blocks, at most {MAX_SACK_BLOCKS} allowed")]
    TooManySackBlocks(u8),
    /// The header length is too small for the fields or beyond the bytes.
    #[error("header length {header} does not fit (needs {min}..={len})")]
    BadHeaderLength {
        /// Header length given.
        header: usize,
        /// Least possible.
        min: usize,
        /// Bytes available.
        len: usize,
    },
    /// A SACK edge lies before sequence number 0.
    #[error("SACK block edge before the start of the sequence space")]
    SackOutOfRange,
}

/// A parsed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The header fields.
    pub segment: Segment,
    /// The stamp written by [`encode`].
    pub stamp: Timestamp,
    /// The payload bytes.
    pub payload: &'a [u8],
}

/// Writes `segment` (header, then its synthetic payload) into `out`,
/// replacing its contents, with `stamp` in the simulator field. `out` ends
/// up [`Segment::wire_len`] bytes long.
///
/// # Panics
/// If `segment` has more than [`MAX_SACK_BLOCKS`] SACK blocks (a bug in
/// the caller, not untrusted input).
pub fn encode(segment: &Segment, stamp: Timestamp, out: &mut Vec<u8>) {
    assert!(
        segment.sack.len() <= MAX_SACK_BLOCKS,
        "tcp::segment::encode: {} SACK blocks, at most {MAX_SACK_BLOCKS}",
        segment.sack.len()
    );
    let header = segment.header_len();
    out.clear();
    out.resize(segment.wire_len(), 0);
    out[0] = MAGIC;
    out[2] = segment.sack.len() as u8;
    out[4..6].copy_from_slice(&(header as u16).to_be_bytes());
    out[8..16].copy_from_slice(&segment.seq.to_be_bytes());
    out[16..24].copy_from_slice(&segment.ack.to_be_bytes());
    out[24..28].copy_from_slice(&segment.window.to_be_bytes());
    out[28..32].copy_from_slice(&segment.ts_val.to_be_bytes());
    out[32..36].copy_from_slice(&segment.ts_ecr.to_be_bytes());
    out[36..44].copy_from_slice(&stamp.as_nanos().to_be_bytes());
    for (i, block) in segment.sack.iter().enumerate() {
        let at = FIELDS_LEN + 8 * i;
        out[at..at + 4].copy_from_slice(&(block.start as u32).to_be_bytes());
        out[at + 4..at + 8].copy_from_slice(&(block.end as u32).to_be_bytes());
    }
    for (i, byte) in out[header..].iter_mut().enumerate() {
        *byte = payload_byte(segment.seq + i as u64);
    }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Rebuilds a 64-bit sequence number from its low 32 bits, taking the one
/// within 2^31 of `reference` (as TCP compares 32-bit sequence numbers).
fn unwrap_seq(low: u32, reference: u64) -> Result<u64, SegmentError> {
    let delta = i64::from(low.wrapping_sub(reference as u32) as i32);
    reference
        .checked_add_signed(delta)
        .ok_or(SegmentError::SackOutOfRange)
}

/// Parses bytes written by [`encode`]. Never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, SegmentError> {
    if bytes.len() < FIELDS_LEN {
        return Err(SegmentError::TooShort {
            len: bytes.len(),
            min: FIELDS_LEN,
        });
    }
    if bytes[0] != MAGIC {
        return Err(SegmentError::BadMagic(bytes[0]));
    }
    let blocks = bytes[2];
    if usize::from(blocks) > MAX_SACK_BLOCKS {
        return Err(SegmentError::TooManySackBlocks(blocks));
    }
    let blocks = usize::from(blocks);
    let header = usize::from(be_u16(bytes, 4));
    let min = FIELDS_LEN + 8 * blocks;
    if header < min || header > bytes.len() {
        return Err(SegmentError::BadHeaderLength {
            header,
            min,
            len: bytes.len(),
        });
    }
    let ack = be_u64(bytes, 16);
    let mut sack = Vec::with_capacity(blocks);
    for i in 0..blocks {
        let at = FIELDS_LEN + 8 * i;
        let start = unwrap_seq(be_u32(bytes, at), ack)?;
        let end = unwrap_seq(be_u32(bytes, at + 4), ack)?;
        sack.push(SackBlock { start, end });
    }
    let payload = &bytes[header..];
    Ok(Decoded {
        segment: Segment {
            seq: be_u64(bytes, 8),
            ack,
            window: be_u32(bytes, 24),
            ts_val: be_u32(bytes, 28),
            ts_ecr: be_u32(bytes, 32),
            sack,
            payload_len: payload.len() as u32,
        },
        stamp: Timestamp::from_nanos(be_u64(bytes, 36)),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment_strategy() -> impl Strategy<Value = Segment> {
        (
            0u64..1 << 40,
            0u64..1 << 40,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec((-(1i64 << 30)..1 << 30, 0u64..1 << 20), 0..=MAX_SACK_BLOCKS),
            0u32..3000,
        )
            .prop_map(|(seq, ack, window, ts_val, ts_ecr, blocks, payload_len)| {
                let sack = blocks
                    .into_iter()
                    .map(|(offset, len)| {
                        let start = ack.saturating_add_signed(offset);
                        SackBlock::new(start, start + len)
                    })
                    .collect();
                Segment {
                    seq,
                    ack,
                    window,
                    ts_val,
                    ts_ecr,
                    sack,
                    payload_len,
                }
            })
    }

    proptest! {
        #[test]
        fn round_trips(segment in segment_strategy(), stamp in any::<u64>()) {
            let mut bytes = Vec::new();
            encode(&segment, Timestamp::from_nanos(stamp), &mut bytes);
            prop_assert_eq!(bytes.len(), segment.wire_len());
            let decoded = decode(&bytes).expect("own encoding parses");
            prop_assert!(payload_matches(segment.seq, decoded.payload));
            prop_assert_eq!(decoded.stamp, Timestamp::from_nanos(stamp));
            prop_assert_eq!(decoded.segment, segment);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            segment in segment_strategy(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = Vec::new();
            encode(&segment, Timestamp::ZERO, &mut bytes);
            for (index, value) in flips {
                let i = index.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn wire_sizes_match_real_tcp() {
        let mut segment = Segment {
            payload_len: 1448,
            ..Segment::default()
        };
        assert_eq!(segment.wire_len(), 1500);
        segment.payload_len = 0;
        segment.sack = vec![SackBlock::new(1, 2); 3];
        assert_eq!(segment.wire_len(), 52 + 4 + 24);
    }

    #[test]
    fn rejects_foreign_bytes() {
        assert!(matches!(
            decode(&[0u8; 10]),
            Err(SegmentError::TooShort { .. })
        ));
        assert_eq!(decode(&[0u8; 60]), Err(SegmentError::BadMagic(0)));
        let mut bytes = Vec::new();
        encode(&Segment::default(), Timestamp::ZERO, &mut bytes);
        bytes[2] = 9;
        assert_eq!(decode(&bytes), Err(SegmentError::TooManySackBlocks(9)));
        bytes[2] = 0;
        bytes[4..6].copy_from_slice(&500u16.to_be_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(SegmentError::BadHeaderLength { .. })
        ));
    }
}
