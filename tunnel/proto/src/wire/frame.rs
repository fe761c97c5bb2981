//! Frames inside the sealed body of a data packet, and the source symbol
//! that carries one segment. Parsing untrusted bytes returns
//! [`FrameError`], never panics.
//!
//! ```text
//! DATA     0x01 seq:v len:v symbol[len]
//! REPAIR   0x02 first:v mask:u64 id:v len:v shard[len]   (sliding-window repair over
//!               first + i for every bit i of mask; bit 0 set)
//! RECEIPT  0x03 cumulative:v ranges confirmed_base:v abandoned_complete_below:v
//!               abandoned-ranges needs covered_below:v largest_packet:v ack_delay_us:v
//!               bytes_received:v loss_per_65536:v
//! CONFIRM  0x04 point:v                      (receipt-of-receipt)
//! ABANDON  0x05 ranges                        (sender gave these up)
//! PING     0x06                               (keepalive)
//! ranges = count:v then (gap from previous end:v, length:v) per range
//! needs  = count:v (<= 64) then (oldest_missing:v, needed:v <= 64): equations the receiver lacks
//! symbol = flow:v class:u8 (0: flow_seq:v | 1: deadline_us:v created_us:v
//!                           | 2: flow_seq:v created_us:v
//!                           | 4: flow_seq:v | 6: flow_seq:v created_us:v) payload
//!          reliable classes: bit 1 = stamped with created_us, bit 2 = bounded
//!          hold (segment mode) instead of strict order
//! v = LEB128 varint of a u64
//! ```

use super::codec::{put_u64, put_varint, CodecError, Reader};
use std::ops::Range;
use thiserror::Error;

const FRAME_DATA: u8 = 0x01;
const FRAME_REPAIR: u8 = 0x02;
const FRAME_RECEIPT: u8 = 0x03;
const FRAME_CONFIRM: u8 = 0x04;
const FRAME_ABANDON: u8 = 0x05;
const FRAME_PING: u8 = 0x06;

/// Most ranges a single frame may list.
pub const MAX_LIST: usize = 512;
/// Most needs a receipt may list (a receiver lists at most this many).
pub const MAX_NEEDS: usize = 64;
/// Most equations one need may ask for: a span of holes lies within one
/// repair window of 64 sequence numbers. (A larger value only makes a
/// sender loop over repair it cannot build.)
pub const MAX_NEEDED: u64 = 64;

/// A malformed frame or symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The bytes ended inside a field.
    #[error("frame truncated")]
    Truncated,
    /// A varint longer than 10 bytes or over 64 bits.
    #[error("malformed varint")]
    BadVarint,
    /// An unknown frame type or symbol class.
    #[error("unknown frame or class type {0:#04x}")]
    UnknownType(u8),
    /// A value outside its allowed range (overflow, too many entries,
    /// inconsistent group).
    #[error("field out of range")]
    OutOfRange,
}

/// A receipt: what the receiver has resolved (delivered or abandoned) of
/// the peer's segment sequence, plus packet-level feedback for the rate
/// controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Every sequence number below this is resolved.
    pub cumulative: u64,
    /// Resolved ranges above `cumulative`, ascending and disjoint.
    pub ranges: Vec<Range<u64>>,
    /// The sender has confirmed (receipt-of-receipt) everything below
    /// this; abandoned numbers below it are no longer listed.
    pub confirmed_base: u64,
    /// `abandoned` lists every abandoned number in
    /// `[confirmed_base, abandoned_complete_below)`.
    pub abandoned_complete_below: u64,
    /// Resolved-by-abandonment ranges (deadline segments given up).
    pub abandoned: Vec<Range<u64>>,
    /// What decoding lacks, per span of holes (missing numbers within one
    /// repair window of the span's first), oldest first: (the span's first
    /// hole, repair symbols over the span's holes it needs to recover them
    /// all).
    pub needs: Vec<(u64, u64)>,
    /// `ranges` and `needs` are complete below this sequence number (lists
    /// longer than a packet are cut; beyond the cut the receipt says
    /// nothing).
    pub covered_below: u64,
    /// Highest packet number received from the peer.
    pub largest_packet: u64,
    /// Microseconds between receiving `largest_packet` and sending this.
    pub ack_delay_micros: u64,
    /// Total data-plane bytes received from the peer (wire bytes).
    pub bytes_received: u64,
    /// Loss of the peer's packets measured here, in 1/65536.
    pub loss_per_65536: u64,
}

/// One frame of a packet body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A source symbol sent as is (systematic FEC).
    Data {
        /// Sequence number of the segment in the sender's space.
        seq: u64,
        /// The encoded [`Symbol`].
        symbol: &'a [u8],
    },
    /// A sliding-window repair symbol: a random linear combination of the
    /// source symbols its window names.
    Repair {
        /// The lowest sequence number covered.
        first: u64,
        /// Bit `i` covers `first + i` (bit 0 is set).
        mask: u64,
        /// The repair's id: its coefficients derive from it.
        id: u64,
        /// The combined shard.
        shard: &'a [u8],
    },
    /// The sender's receipt for what it received.
    Receipt(Receipt),
    /// Receipt-of-receipt: the peer's receipts are known here up to `point`.
    Confirm {
        /// Everything below this is recorded here from the peer's receipts.
        point: u64,
    },
    /// The sender abandoned these (deadline passed).
    Abandon {
        /// Abandoned sequence ranges.
        ranges: Vec<Range<u64>>,
    },
    /// Keepalive; carries nothing.
    Ping,
}

/// How a segment inside a symbol is to be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolClass {
    /// In order within the flow, at position `flow_seq`.
    Reliable {
        /// Position of the segment in its flow.
        flow_seq: u64,
        /// When the segment was handed to the sender, in the sender's
        /// clock, on the segments the sender samples for the added-delay
        /// measurement.
        created_micros: Option<u64>,
        /// Segment mode: a hole holds the flow only briefly
        /// ([`crate::DeliveryClass::Segment`]); otherwise strict order.
        bounded_hold: bool,
    },
    /// Before the deadline; stamped with the sender's clock.
    Deadline {
        /// The deadline, counted from `created_micros`.
        deadline_micros: u64,
        /// When the segment was handed to the sender, in the sender's clock.
        created_micros: u64,
    },
}

/// A source symbol: one segment with what the receiver needs to deliver it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// The caller's flow.
    pub flow: u64,
    /// Delivery class and its parameters.
    pub class: SymbolClass,
    /// The segment.
    pub payload: &'a [u8],
}

impl From<CodecError> for FrameError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated => FrameError::Truncated,
            CodecError::BadVarint => FrameError::BadVarint,
        }
    }
}

fn read_count(reader: &mut Reader<'_>) -> Result<usize, FrameError> {
    let count = reader.varint()?;
    if count > MAX_LIST as u64 {
        return Err(FrameError::OutOfRange);
    }
    Ok(count as usize)
}

fn read_ranges(reader: &mut Reader<'_>, floor: u64) -> Result<Vec<Range<u64>>, FrameError> {
    let count = read_count(reader)?;
    let mut ranges = Vec::with_capacity(count);
    let mut previous_end = floor;
    for _ in 0..count {
        let start = previous_end
            .checked_add(reader.varint()?)
            .ok_or(FrameError::OutOfRange)?;
        let len = reader.varint()?;
        if len == 0 {
            return Err(FrameError::OutOfRange);
        }
        let end = start.checked_add(len).ok_or(FrameError::OutOfRange)?;
        ranges.push(start..end);
        previous_end = end;
    }
    Ok(ranges)
}

fn put_ranges(out: &mut Vec<u8>, floor: u64, ranges: &[Range<u64>]) {
    put_varint(out, ranges.len() as u64);
    let mut previous_end = floor;
    for range in ranges {
        put_varint(out, range.start.saturating_sub(previous_end));
        put_varint(out, range.end.saturating_sub(range.start));
        previous_end = range.end;
    }
}

impl Frame<'_> {
    /// Appends the frame's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Data { seq, symbol } => {
                out.push(FRAME_DATA);
                put_varint(out, *seq);
                put_varint(out, symbol.len() as u64);
                out.extend_from_slice(symbol);
            }
            Frame::Repair {
                first,
                mask,
                id,
                shard,
            } => {
                out.push(FRAME_REPAIR);
                put_varint(out, *first);
                put_u64(out, *mask);
                put_varint(out, *id);
                put_varint(out, shard.len() as u64);
                out.extend_from_slice(shard);
            }
            Frame::Receipt(receipt) => {
                out.push(FRAME_RECEIPT);
                put_varint(out, receipt.cumulative);
                put_ranges(out, receipt.cumulative, &receipt.ranges);
                put_varint(out, receipt.confirmed_base);
                put_varint(out, receipt.abandoned_complete_below);
                put_ranges(out, receipt.confirmed_base, &receipt.abandoned);
                put_varint(out, receipt.needs.len() as u64);
                for &(first, needed) in &receipt.needs {
                    put_varint(out, first);
                    put_varint(out, needed);
                }
                put_varint(out, receipt.covered_below);
                put_varint(out, receipt.largest_packet);
                put_varint(out, receipt.ack_delay_micros);
                put_varint(out, receipt.bytes_received);
                put_varint(out, receipt.loss_per_65536);
            }
            Frame::Confirm { point } => {
                out.push(FRAME_CONFIRM);
                put_varint(out, *point);
            }
            Frame::Abandon { ranges } => {
                out.push(FRAME_ABANDON);
                put_ranges(out, 0, ranges);
            }
            Frame::Ping => out.push(FRAME_PING),
        }
    }
}

/// Parses every frame of a packet body.
pub fn parse_frames(body: &[u8]) -> Result<Vec<Frame<'_>>, FrameError> {
    let mut reader = Reader::new(body);
    let mut frames = Vec::new();
    while !reader.is_empty() {
        let kind = reader.u8()?;
        let frame = match kind {
            FRAME_DATA => {
                let seq = reader.varint()?;
                let len = reader.varint()?;
                Frame::Data {
                    seq,
                    symbol: reader.take_u64(len)?,
                }
            }
            FRAME_REPAIR => {
                let first = reader.varint()?;
                let mask = reader.u64()?;
                if mask & 1 == 0 || first.checked_add(63).is_none() {
                    return Err(FrameError::OutOfRange);
                }
                let id = reader.varint()?;
                let len = reader.varint()?;
                let shard = reader.take_u64(len)?;
                if shard.len() < 2 {
                    return Err(FrameError::OutOfRange);
                }
                Frame::Repair {
                    first,
                    mask,
                    id,
                    shard,
                }
            }
            FRAME_RECEIPT => {
                let cumulative = reader.varint()?;
                let ranges = read_ranges(&mut reader, cumulative)?;
                let confirmed_base = reader.varint()?;
                let abandoned_complete_below = reader.varint()?;
                let abandoned = read_ranges(&mut reader, confirmed_base)?;
                let count = read_count(&mut reader)?;
                if count > MAX_NEEDS {
                    return Err(FrameError::OutOfRange);
                }
                let mut needs = Vec::with_capacity(count);
                for _ in 0..count {
                    let (first, needed) = (reader.varint()?, reader.varint()?);
                    if needed > MAX_NEEDED {
                        return Err(FrameError::OutOfRange);
                    }
                    needs.push((first, needed));
                }
                Frame::Receipt(Receipt {
                    cumulative,
                    ranges,
                    confirmed_base,
                    abandoned_complete_below,
                    abandoned,
                    needs,
                    covered_below: reader.varint()?,
                    largest_packet: reader.varint()?,
                    ack_delay_micros: reader.varint()?,
                    bytes_received: reader.varint()?,
                    loss_per_65536: reader.varint()?,
                })
            }
            FRAME_CONFIRM => Frame::Confirm {
                point: reader.varint()?,
            },
            FRAME_ABANDON => Frame::Abandon {
                ranges: read_ranges(&mut reader, 0)?,
            },
            FRAME_PING => Frame::Ping,
            other => return Err(FrameError::UnknownType(other)),
        };
        frames.push(frame);
    }
    Ok(frames)
}

impl<'a> Symbol<'a> {
    /// Appends the symbol's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.flow);
        match self.class {
            SymbolClass::Reliable {
                flow_seq,
                created_micros,
                bounded_hold,
            } => {
                out.push(u8::from(created_micros.is_some()) << 1 | u8::from(bounded_hold) << 2);
                put_varint(out, flow_seq);
                if let Some(created) = created_micros {
                    put_varint(out, created);
                }
            }
            SymbolClass::Deadline {
                deadline_micros,
                created_micros,
            } => {
                out.push(1);
                put_varint(out, deadline_micros);
                put_varint(out, created_micros);
            }
        }
        out.extend_from_slice(self.payload);
    }

    /// Parses a symbol.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let mut reader = Reader::new(bytes);
        let flow = reader.varint()?;
        let class = match reader.u8()? {
            class @ (0 | 2 | 4 | 6) => {
                let flow_seq = reader.varint()?;
                let created_micros = if class & 2 != 0 {
                    Some(reader.varint()?)
                } else {
                    None
                };
                SymbolClass::Reliable {
                    flow_seq,
                    created_micros,
                    bounded_hold: class & 4 != 0,
                }
            }
            1 => SymbolClass::Deadline {
                deadline_micros: reader.varint()?,
                created_micros: reader.varint()?,
            },
            other => return Err(FrameError::UnknownType(other)),
        };
        Ok(Symbol {
            flow,
            class,
            payload: reader.rest(),
        })
    }

    /// Largest encoding overhead of a symbol beyond its payload.
    pub const MAX_OVERHEAD: usize = 10 + 1 + 10 + 10;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges_strategy() -> impl Strategy<Value = Vec<Range<u64>>> {
        proptest::collection::vec((0u64..1000, 1u64..1000), 0..20).prop_map(|pairs| {
            let mut at = 0;
            pairs
                .into_iter()
                .map(|(gap, len)| {
                    let start = at + gap + 1;
                    at = start + len;
                    start..at
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_frames(&bytes);
            let _ = Symbol::parse(&bytes);
        }

        #[test]
        fn round_trip(seq in 300u64..u64::MAX - 64, gi in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 2..50),
                      ranges in ranges_strategy(), abandoned in ranges_strategy(), point in any::<u64>(),
                      needs in proptest::collection::vec((any::<u64>(), 0..=MAX_NEEDED), 0..5)) {
            let receipt = Receipt {
                cumulative: 0,
                ranges: ranges.clone(),
                confirmed_base: 0,
                abandoned_complete_below: point,
                abandoned: abandoned.clone(),
                needs,
                covered_below: seq,
                largest_packet: point,
                ack_delay_micros: 17,
                bytes_received: seq,
                loss_per_65536: 1234,
            };
            let frames = vec![
                Frame::Data { seq, symbol: &payload },
                Frame::Repair { first: seq, mask: gi | 1, id: point, shard: &payload },
                Frame::Receipt(receipt),
                Frame::Confirm { point },
                Frame::Abandon { ranges },
                Frame::Ping,
            ];
            let mut out = Vec::new();
            for f in &frames { f.encode(&mut out); }
            prop_assert_eq!(parse_frames(&out).unwrap(), frames);
        }

        #[test]
        fn mutated_frames_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..50), index in any::<usize>(), value in any::<u8>()) {
            let mut out = Vec::new();
            Frame::Receipt(Receipt { cumulative: 5, ranges: vec![7..9, 20..30], needs: vec![(5, 2)], ..Receipt::default() }).encode(&mut out);
            let mut greedy = Vec::new();
            Frame::Receipt(Receipt { needs: vec![(5, MAX_NEEDED + 1)], ..Receipt::default() }).encode(&mut greedy);
            prop_assert_eq!(parse_frames(&greedy), Err(FrameError::OutOfRange));
            let mut many = Vec::new();
            Frame::Receipt(Receipt { needs: vec![(5, 1); MAX_NEEDS + 1], ..Receipt::default() }).encode(&mut many);
            prop_assert_eq!(parse_frames(&many), Err(FrameError::OutOfRange));
            Frame::Data { seq: 9, symbol: &payload }.encode(&mut out);
            let index = index % out.len();
            out[index] = value;
            let _ = parse_frames(&out);
            let _ = parse_frames(&out[..index]);
        }

        #[test]
        fn symbol_round_trip(flow in any::<u64>(), a in any::<u64>(), b in any::<u64>(), deadline in any::<bool>(),
                             payload in proptest::collection::vec(any::<u8>(), 0..50)) {
            let class = if deadline { SymbolClass::Deadline { deadline_micros: a, created_micros: b } } else { SymbolClass::Reliable { flow_seq: a, created_micros: (b % 2 == 0).then_some(b), bounded_hold: b % 3 == 0 } };
            let symbol = Symbol { flow, class, payload: &payload };
            let mut out = Vec::new();
            symbol.encode(&mut out);
            prop_assert!(out.len() <= payload.len() + Symbol::MAX_OVERHEAD);
            prop_assert_eq!(Symbol::parse(&out).unwrap(), symbol);
        }
    }
}
