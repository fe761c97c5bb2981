//! The TGP-BFT packet: parse and emit, nothing about meaning. Built on
//! tgp-proto's [`Reader`] and writers: big-endian fixed-width fields,
//! LEB128 varints. Parsing untrusted bytes returns an error, never panics
//! (property-tested below and in `tests/robustness.rs`).
//!
//! ```text
//! u8      packet type  = PACKET_TYPE_BFT (0x03)
//! u8      version      = 1
//! [8]     group tag    (first 8 bytes of the membership id)
//! u64     instance
//! u8      sender index
//! u8      flags        bit 0 committed, bit 1 has proposal, bit 2 has valid round,
//!                      bit 3 "I know you (the receiver) have committed"; others zero
//! varint  round        the sender's current round
//! varint  valid round  only with flag bit 2
//! [B]     prevotes     signers whose prevote of that round the sender holds
//! [B]     precommits   the same for precommits
//! u8      item count
//! items:
//!   u8 kind = 1 (proposal): varint round, [32] value, varint valid round + 1 (0: none), [64] signature
//!   u8 kind = 2 (prevotes) or 3 (precommits):
//!            varint round, [32] value, [B] signer bitmap (not empty),
//!            one [64] signature per set bit, in increasing signer order
//! ```
//!
//! B = ⌈n / 8⌉ bytes, bit i of the set in byte i / 8, mask `0x80 >> i % 8`;
//! bits at or past n must be zero. Everything before the items is the
//! sender's *status*: unsigned hints about what it holds, used only to
//! choose what to send it (never for safety).
//!
//! Votes for one (phase, round, value) travel as a signer bitmap plus the
//! signatures, and a set that does not fit one packet is split across
//! packets (each part is a valid item with its own bitmap). A commit
//! certificate of 21 signatures (n = 31) is 21 × 64 = 1344 bytes of
//! signatures: it goes as two precommit items in two packets (17 + 4
//! signatures). No packet is larger than [`MAX_PACKET`].

use crate::membership::{bit, members, Bitmap, MAX_MEMBERS};
use crate::message::{Phase, SignatureBytes, Value};
use tgp_proto::wire::codec::{put_u64, put_varint, varint_len, CodecError, Reader};

/// First byte of a TGP-BFT packet (0x01 is the handshake, 0x02 data).
pub const PACKET_TYPE_BFT: u8 = 0x03;

/// The wire version this crate speaks.
pub const WIRE_VERSION: u8 = 1;

/// Largest packet ever emitted: small enough to cross any path without IP
/// fragmentation (the handshake's limit too).
pub const MAX_PACKET: usize = 1200;

const FLAG_COMMITTED: u8 = 1;
const FLAG_HAS_PROPOSAL: u8 = 2;
const FLAG_HAS_VALID: u8 = 4;
const FLAG_KNOWS_RECEIVER_COMMITTED: u8 = 8;
const KIND_PROPOSAL: u8 = 1;
const KIND_PREVOTES: u8 = 2;
const KIND_PRECOMMITS: u8 = 3;

/// Why bytes are not a TGP-BFT packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("truncated packet")]
    Truncated,
    /// A field no valid packet has (flags, kinds, bitmaps, trailing bytes,
    /// a round over 32 bits).
    #[error("malformed packet")]
    Malformed,
    /// The first byte is not [`PACKET_TYPE_BFT`].
    #[error("not a TGP-BFT packet")]
    NotBft,
    /// A version other than [`WIRE_VERSION`].
    #[error("unsupported TGP-BFT version")]
    UnsupportedVersion,
}

impl From<CodecError> for WireError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated => WireError::Truncated,
            CodecError::BadVarint => WireError::Malformed,
        }
    }
}

/// The sender's unsigned status: what it holds, so peers send it only
/// what it lacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The sender's current round.
    pub round: u32,
    /// The sender holds a commit certificate.
    pub committed: bool,
    /// The sender holds the proposal of its current round.
    pub has_proposal: bool,
    /// The highest round in which the sender holds a polka.
    pub valid_round: Option<u32>,
    /// The sender knows that the receiver of this packet has committed.
    pub knows_receiver_committed: bool,
    /// Signers whose prevote of `round` the sender holds.
    pub prevotes: Bitmap,
    /// Signers whose precommit of `round` the sender holds.
    pub precommits: Bitmap,
}

/// The header: who sends, for which group and instance, and its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`crate::Membership::group_tag`].
    pub group: [u8; 8],
    /// The instance.
    pub instance: u64,
    /// The sender's member index (unauthenticated: the caller checks it
    /// against the source address, or the channel authenticates it).
    pub sender: u8,
    /// The sender's status.
    pub status: Status,
}

/// One signed artifact, or a set of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// The proposal of `round`, signed by that round's proposer.
    Proposal {
        /// The round (≥ 1).
        round: u32,
        /// The proposed value.
        value: Value,
        /// The round of the polka that justifies it, if any (< `round`).
        valid_round: Option<u32>,
        /// The proposer's signature.
        signature: SignatureBytes,
    },
    /// Votes of several signers for one (phase, round, value).
    Votes {
        /// Prevotes or precommits.
        phase: Phase,
        /// The round.
        round: u32,
        /// The value voted for.
        value: Value,
        /// The signers (not empty).
        signers: Bitmap,
        /// One signature per signer, in increasing signer order.
        signatures: Vec<SignatureBytes>,
    },
}

impl Item {
    /// Encoded size, with signer bitmaps of `bitmap_len` bytes.
    pub fn encoded_len(&self, bitmap_len: usize) -> usize {
        match self {
            Item::Proposal {
                round, valid_round, ..
            } => {
                1 + varint_len(u64::from(*round))
                    + 32
                    + varint_len(valid_round.map_or(0, |k| u64::from(k) + 1))
                    + 64
            }
            Item::Votes {
                round, signatures, ..
            } => 1 + varint_len(u64::from(*round)) + 32 + bitmap_len + 64 * signatures.len(),
        }
    }

    /// Encoded size of a votes item of `round` with `count` signatures.
    pub fn votes_len(round: u32, count: usize, bitmap_len: usize) -> usize {
        1 + varint_len(u64::from(round)) + 32 + bitmap_len + 64 * count
    }

    fn encode(&self, bitmap_len: usize, out: &mut Vec<u8>) {
        match self {
            Item::Proposal {
                round,
                value,
                valid_round,
                signature,
            } => {
                out.push(KIND_PROPOSAL);
                put_varint(out, u64::from(*round));
                out.extend_from_slice(value);
                put_varint(out, valid_round.map_or(0, |k| u64::from(k) + 1));
                out.extend_from_slice(signature);
            }
            Item::Votes {
                phase,
                round,
                value,
                signers,
                signatures,
            } => {
                out.push(match phase {
                    Phase::Prevote => KIND_PREVOTES,
                    Phase::Precommit => KIND_PRECOMMITS,
                });
                put_varint(out, u64::from(*round));
                out.extend_from_slice(value);
                put_bitmap(out, *signers, bitmap_len);
                for signature in signatures {
                    out.extend_from_slice(signature);
                }
            }
        }
    }

    fn parse(reader: &mut Reader<'_>, n: usize) -> Result<Item, WireError> {
        let kind = reader.u8()?;
        let round = read_round(reader)?;
        let value = reader.array::<32>()?;
        match kind {
            KIND_PROPOSAL => {
                let justification = reader.varint()?;
                let valid_round = match justification {
                    0 => None,
                    k => Some(u32::try_from(k - 1).map_err(|_| WireError::Malformed)?),
                };
                Ok(Item::Proposal {
                    round,
                    value,
                    valid_round,
                    signature: reader.array::<64>()?,
                })
            }
            KIND_PREVOTES | KIND_PRECOMMITS => {
                let signers = read_bitmap(reader, n)?;
                if signers == 0 {
                    return Err(WireError::Malformed);
                }
                let count = signers.count_ones() as usize;
                if reader.remaining() < 64 * count {
                    return Err(WireError::Truncated);
                }
                let signatures = (0..count)
                    .map(|_| reader.array::<64>())
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Item::Votes {
                    phase: if kind == KIND_PREVOTES {
                        Phase::Prevote
                    } else {
                        Phase::Precommit
                    },
                    round,
                    value,
                    signers,
                    signatures,
                })
            }
            _ => Err(WireError::Malformed),
        }
    }
}

/// One packet: header and items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Who sends, and its status.
    pub header: Header,
    /// The artifacts (at most 255).
    pub items: Vec<Item>,
}

impl Header {
    /// Encoded size with bitmaps of `bitmap_len` bytes, including the item
    /// count byte.
    pub fn encoded_len(&self, bitmap_len: usize) -> usize {
        2 + 8
            + 8
            + 1
            + 1
            + varint_len(u64::from(self.status.round))
            + self
                .status
                .valid_round
                .map_or(0, |k| varint_len(u64::from(k)))
            + 2 * bitmap_len
            + 1
    }

    fn encode(&self, bitmap_len: usize, out: &mut Vec<u8>) {
        let status = &self.status;
        out.push(PACKET_TYPE_BFT);
        out.push(WIRE_VERSION);
        out.extend_from_slice(&self.group);
        put_u64(out, self.instance);
        out.push(self.sender);
        let mut flags = 0;
        if status.committed {
            flags |= FLAG_COMMITTED;
        }
        if status.has_proposal {
            flags |= FLAG_HAS_PROPOSAL;
        }
        if status.valid_round.is_some() {
            flags |= FLAG_HAS_VALID;
        }
        if status.knows_receiver_committed {
            flags |= FLAG_KNOWS_RECEIVER_COMMITTED;
        }
        out.push(flags);
        put_varint(out, u64::from(status.round));
        if let Some(k) = status.valid_round {
            put_varint(out, u64::from(k));
        }
        put_bitmap(out, status.prevotes, bitmap_len);
        put_bitmap(out, status.precommits, bitmap_len);
    }
}

impl Packet {
    /// Appends the packet to `out` for a membership of `n`; returns its
    /// length. Items beyond 255 are not encoded; the caller keeps packets
    /// within [`MAX_PACKET`].
    pub fn encode(&self, n: usize, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let bitmap_len = n.div_ceil(8);
        self.header.encode(bitmap_len, out);
        let count = self.items.len().min(255);
        out.push(count as u8);
        for item in &self.items[..count] {
            item.encode(bitmap_len, out);
        }
        out.len() - start
    }

    /// Parses a packet of a membership of `n` members (1 ..= 128).
    pub fn parse(bytes: &[u8], n: usize) -> Result<Packet, WireError> {
        let n = n.clamp(1, MAX_MEMBERS);
        let mut reader = Reader::new(bytes);
        if reader.u8()? != PACKET_TYPE_BFT {
            return Err(WireError::NotBft);
        }
        if reader.u8()? != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion);
        }
        let group = reader.array::<8>()?;
        let instance = reader.u64()?;
        let sender = reader.u8()?;
        let flags = reader.u8()?;
        if flags
            & !(FLAG_COMMITTED | FLAG_HAS_PROPOSAL | FLAG_HAS_VALID | FLAG_KNOWS_RECEIVER_COMMITTED)
            != 0
        {
            return Err(WireError::Malformed);
        }
        let round = read_round(&mut reader)?;
        let valid_round = if flags & FLAG_HAS_VALID != 0 {
            Some(read_round(&mut reader)?)
        } else {
            None
        };
        let prevotes = read_bitmap(&mut reader, n)?;
        let precommits = read_bitmap(&mut reader, n)?;
        let count = reader.u8()?;
        let mut items = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            items.push(Item::parse(&mut reader, n)?);
        }
        if !reader.is_empty() {
            return Err(WireError::Malformed);
        }
        Ok(Packet {
            header: Header {
                group,
                instance,
                sender,
                status: Status {
                    round,
                    committed: flags & FLAG_COMMITTED != 0,
                    has_proposal: flags & FLAG_HAS_PROPOSAL != 0,
                    valid_round,
                    knows_receiver_committed: flags & FLAG_KNOWS_RECEIVER_COMMITTED != 0,
                    prevotes,
                    precommits,
                },
            },
            items,
        })
    }
}

fn read_round(reader: &mut Reader<'_>) -> Result<u32, WireError> {
    u32::try_from(reader.varint()?).map_err(|_| WireError::Malformed)
}

fn put_bitmap(out: &mut Vec<u8>, bitmap: Bitmap, len: usize) {
    let start = out.len();
    out.resize(start + len, 0);
    for index in members(bitmap) {
        if index / 8 < len {
            out[start + index / 8] |= 0x80 >> (index % 8);
        }
    }
}

fn read_bitmap(reader: &mut Reader<'_>, n: usize) -> Result<Bitmap, WireError> {
    let bytes = reader.take(n.div_ceil(8))?;
    let mut bitmap: Bitmap = 0;
    for (byte_index, byte) in bytes.iter().enumerate() {
        for bit_index in 0..8 {
            if byte & (0x80 >> bit_index) != 0 {
                let index = byte_index * 8 + bit_index;
                if index >= n {
                    return Err(WireError::Malformed);
                }
                bitmap |= bit(index);
            }
        }
    }
    Ok(bitmap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(n: usize) -> Packet {
        Packet {
            header: Header {
                group: [7; 8],
                instance: 99,
                sender: 2,
                status: Status {
                    round: 300,
                    committed: false,
                    has_proposal: true,
                    valid_round: Some(4),
                    knows_receiver_committed: true,
                    prevotes: 0b1011,
                    precommits: 1 << (n - 1),
                },
            },
            items: vec![
                Item::Proposal {
                    round: 300,
                    value: [1; 32],
                    valid_round: Some(4),
                    signature: [2; 64],
                },
                Item::Votes {
                    phase: Phase::Precommit,
                    round: 4,
                    value: [3; 32],
                    signers: 0b101,
                    signatures: vec![[4; 64], [5; 64]],
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_lengths() {
        for n in [1, 4, 8, 9, 31, 128] {
            let mut packet = sample(n.max(4));
            if n < 4 {
                packet.header.status.prevotes = 1;
                packet.header.status.precommits = 0;
                if let Item::Votes {
                    signers,
                    signatures,
                    ..
                } = &mut packet.items[1]
                {
                    *signers = 1;
                    signatures.truncate(1);
                }
            }
            let mut out = vec![0xAA];
            let len = packet.encode(n, &mut out);
            assert_eq!(len, out.len() - 1);
            let bitmap_len = n.div_ceil(8);
            let expected = packet.header.encoded_len(bitmap_len)
                + packet
                    .items
                    .iter()
                    .map(|i| i.encoded_len(bitmap_len))
                    .sum::<usize>();
            assert_eq!(len, expected);
            assert_eq!(Packet::parse(&out[1..], n).unwrap(), packet, "n = {n}");
        }
    }

    #[test]
    fn refuses_what_no_valid_packet_has() {
        let n = 31;
        let mut good = Vec::new();
        sample(n).encode(n, &mut good);
        assert_eq!(
            Packet::parse(&good[..good.len() - 1], n),
            Err(WireError::Truncated)
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Packet::parse(&trailing, n), Err(WireError::Malformed));
        let mut other_type = good.clone();
        other_type[0] = 0x01;
        assert_eq!(Packet::parse(&other_type, n), Err(WireError::NotBft));
        let mut other_version = good.clone();
        other_version[1] = 2;
        assert_eq!(
            Packet::parse(&other_version, n),
            Err(WireError::UnsupportedVersion)
        );
        let mut bad_flags = good.clone();
        bad_flags[19] |= 0x40;
        assert_eq!(Packet::parse(&bad_flags, n), Err(WireError::Malformed));
        // A prevote bitmap bit at index 31 (n = 31: indices 0..=30).
        let mut high_bit = Vec::new();
        let mut packet = sample(n);
        packet.items.clear();
        packet.encode(n, &mut high_bit);
        let bitmaps_at = high_bit.len() - 1 - 8;
        high_bit[bitmaps_at + 3] |= 0x01;
        assert_eq!(Packet::parse(&high_bit, n), Err(WireError::Malformed));
        // An empty vote set.
        let mut empty = sample(n);
        if let Item::Votes {
            signers,
            signatures,
            ..
        } = &mut empty.items[1]
        {
            *signers = 0;
            signatures.clear();
        }
        let mut bytes = Vec::new();
        empty.encode(n, &mut bytes);
        assert_eq!(Packet::parse(&bytes, n), Err(WireError::Malformed));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300), n in 1usize..130) {
            let _ = Packet::parse(&bytes, n);
        }

        #[test]
        fn mutations_never_panic(at in any::<usize>(), flip in any::<u8>(), cut in any::<usize>(), n in prop::sample::select(vec![4usize, 7, 10, 31])) {
            let mut bytes = Vec::new();
            sample(n).encode(n, &mut bytes);
            let at = at % bytes.len();
            bytes[at] ^= flip;
            let _ = Packet::parse(&bytes, n);
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = Packet::parse(&bytes, n);
        }
    }
}
