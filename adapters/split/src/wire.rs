//! The stream protocol: the messages two split engines exchange, each
//! carried as the payload of one `Reliable` tgp segment
//! (`Endpoint::send_stream`), and the flow ids they travel under.
//!
//! Every message starts with a type byte and the 32-bit stream id; the
//! segment's length delimits the message (one message per segment).
//!
//! ```text
//! OPEN   0x01 id:u32 family:u8(4|6) src:4|16 dst:4|16 src_port:u16 dst_port:u16
//!             credit:u64 first_bytes...
//! DATA   0x02 id:u32 bytes...
//! FIN    0x03 id:u32
//! RST    0x04 id:u32 reason:u8
//! CREDIT 0x05 id:u32 limit:u64
//! ```
//!
//! All integers are big-endian. `credit` and `limit` are absolute byte
//! offsets into the stream the *receiver of the message* sends: "you may
//! send up to byte `limit`". Absolute limits are idempotent and never
//! overflow in practice (u64).
//!
//! Flow ids: the top bit ([`STREAM_FLOW_BIT`]) marks a stream message (an
//! IP packet's flow id in segment mode always has it clear); the next bit
//! ([`OPENER_FLOW_BIT`]) says whether the *sender of this message* opened
//! the stream, so the two ends' stream ids never collide; the low bits are
//! a lane. Streams share a bounded set of lanes (tgp keeps per-flow state
//! that it never frees, so one flow per connection would grow without
//! bound); a stream stays on one lane for its life, so its messages stay in
//! order, and the engine picks a free lane for each new stream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Top bit of a tgp flow id: the segment is a stream message, not an IP
/// packet.
pub const STREAM_FLOW_BIT: u64 = 1 << 63;
/// Set when the sender of the message opened the stream.
pub const OPENER_FLOW_BIT: u64 = 1 << 62;
/// Number of lanes (flow ids) streams are spread over, per opener.
pub const LANES: u64 = 1024;

/// Bytes a stream may send before the receiver's first CREDIT arrives
/// (protocol constant: both ends must agree).
pub const INITIAL_CREDIT: u64 = 256 * 1024;

/// Longest message header ([`Message::Open`] over IPv6).
pub const MAX_HEADER_LEN: usize = 1 + 4 + 1 + 16 + 16 + 2 + 2 + 8;
/// Header of a [`Message::Data`].
pub const DATA_HEADER_LEN: usize = 5;

const TYPE_OPEN: u8 = 1;
const TYPE_DATA: u8 = 2;
const TYPE_FIN: u8 = 3;
const TYPE_RST: u8 = 4;
const TYPE_CREDIT: u8 = 5;

/// Whether a tgp flow id carries stream messages.
pub fn is_stream_flow(flow: u64) -> bool {
    flow & STREAM_FLOW_BIT != 0
}

/// The flow id for a message on `lane`; `sender_opened` when the sender of
/// the message opened the stream.
pub fn stream_flow(lane: u16, sender_opened: bool) -> u64 {
    let opener = if sender_opened { OPENER_FLOW_BIT } else { 0 };
    STREAM_FLOW_BIT | opener | (u64::from(lane) % LANES)
}

/// What a stream flow id says: (lane, whether the sender opened the stream).
/// `None` for a flow id without [`STREAM_FLOW_BIT`] or with a lane out of
/// range.
pub fn parse_stream_flow(flow: u64) -> Option<(u16, bool)> {
    if !is_stream_flow(flow) {
        return None;
    }
    let lane = flow & !(STREAM_FLOW_BIT | OPENER_FLOW_BIT);
    if lane >= LANES {
        return None;
    }
    Some((lane as u16, flow & OPENER_FLOW_BIT != 0))
}

/// Why a stream was reset; carried in RST and counted in the stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetReason {
    /// The local TCP peer reset its connection (or the local socket was
    /// aborted for another local reason, such as its own timeout).
    Reset,
    /// The destination refused the connection (answered the SYN with RST).
    Refused,
    /// The destination did not answer the SYN in time.
    Timeout,
    /// The far engine is at its connection cap.
    Cap,
    /// The stream was idle too long.
    Idle,
    /// The other end broke the stream protocol (e.g. exceeded its credit).
    Protocol,
    /// The peer's daemon restarted (all of its streams are gone).
    PeerRestart,
    /// The OPEN named a source address the peer may not use.
    Forbidden,
    /// A reason this build does not know (from a newer peer).
    Other(u8),
}

impl ResetReason {
    /// Every reason with a name, for counters.
    pub const ALL: [ResetReason; 8] = [
        ResetReason::Reset,
        ResetReason::Refused,
        ResetReason::Timeout,
        ResetReason::Cap,
        ResetReason::Idle,
        ResetReason::Protocol,
        ResetReason::PeerRestart,
        ResetReason::Forbidden,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            ResetReason::Reset => 1,
            ResetReason::Refused => 2,
            ResetReason::Timeout => 3,
            ResetReason::Cap => 4,
            ResetReason::Idle => 5,
            ResetReason::Protocol => 6,
            ResetReason::PeerRestart => 7,
            ResetReason::Forbidden => 8,
            ResetReason::Other(code) => code,
        }
    }

    /// From the wire code.
    pub fn from_code(code: u8) -> Self {
        ResetReason::ALL
            .into_iter()
            .find(|r| r.code() == code)
            .unwrap_or(ResetReason::Other(code))
    }

    /// A short lowercase name for `tgp status`.
    pub fn name(self) -> &'static str {
        match self {
            ResetReason::Reset => "reset",
            ResetReason::Refused => "refused",
            ResetReason::Timeout => "timeout",
            ResetReason::Cap => "cap",
            ResetReason::Idle => "idle",
            ResetReason::Protocol => "protocol",
            ResetReason::PeerRestart => "peer_restart",
            ResetReason::Forbidden => "forbidden",
            ResetReason::Other(_) => "other",
        }
    }
}

/// One stream message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Open a stream: connect from `src` to `dst` at the far end.
    Open {
        /// Stream id, chosen by the opener.
        id: u32,
        /// The original client address and port.
        src: SocketAddr,
        /// The original destination address and port.
        dst: SocketAddr,
        /// The far end may send up to this many bytes back.
        credit: u64,
        /// The first bytes the client sent.
        data: &'a [u8],
    },
    /// Stream bytes.
    Data {
        /// Stream id.
        id: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// No more bytes in this direction (a TCP FIN).
    Fin {
        /// Stream id.
        id: u32,
    },
    /// The stream is gone in both directions.
    Rst {
        /// Stream id.
        id: u32,
        /// Why.
        reason: ResetReason,
    },
    /// The receiver of this message may send up to byte `limit`.
    Credit {
        /// Stream id.
        id: u32,
        /// Absolute byte offset.
        limit: u64,
    },
}

/// Why a message did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its header.
    #[error("stream message truncated")]
    Truncated,
    /// An unknown type byte.
    #[error("unknown stream message type {0}")]
    UnknownType(u8),
    /// An OPEN with an address family other than 4 or 6.
    #[error("unknown address family {0} in OPEN")]
    BadFamily(u8),
    /// Bytes after a message that has no payload.
    #[error("trailing bytes after a stream message")]
    Trailing,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

impl<'a> Message<'a> {
    /// Parses one message. Never panics, whatever the bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, WireError> {
        let mut r = Reader { bytes };
        let kind = r.u8()?;
        let id = r.u32()?;
        match kind {
            TYPE_OPEN => {
                let family = r.u8()?;
                let (src_ip, dst_ip) = match family {
                    4 => {
                        let s: [u8; 4] = r.take(4)?.try_into().map_err(|_| WireError::Truncated)?;
                        let d: [u8; 4] = r.take(4)?.try_into().map_err(|_| WireError::Truncated)?;
                        (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)))
                    }
                    6 => {
                        let s: [u8; 16] =
                            r.take(16)?.try_into().map_err(|_| WireError::Truncated)?;
                        let d: [u8; 16] =
                            r.take(16)?.try_into().map_err(|_| WireError::Truncated)?;
                        (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
                    }
                    other => return Err(WireError::BadFamily(other)),
                };
                let src_port = r.u16()?;
                let dst_port = r.u16()?;
                let credit = r.u64()?;
                Ok(Message::Open {
                    id,
                    src: SocketAddr::new(src_ip, src_port),
                    dst: SocketAddr::new(dst_ip, dst_port),
                    credit,
                    data: r.bytes,
                })
            }
            TYPE_DATA => Ok(Message::Data { id, data: r.bytes }),
            TYPE_FIN => {
                r.finish()?;
                Ok(Message::Fin { id })
            }
            TYPE_RST => {
                let reason = ResetReason::from_code(r.u8()?);
                r.finish()?;
                Ok(Message::Rst { id, reason })
            }
            TYPE_CREDIT => {
                let limit = r.u64()?;
                r.finish()?;
                Ok(Message::Credit { id, limit })
            }
            other => Err(WireError::UnknownType(other)),
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        match self {
            Message::Open { id, .. }
            | Message::Data { id, .. }
            | Message::Fin { id }
            | Message::Rst { id, .. }
            | Message::Credit { id, .. } => *id,
        }
    }

    /// Appends the encoded message to `out`. An OPEN whose `src` and `dst`
    /// are of different families is encoded with both mapped to IPv6.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Message::Open {
                id,
                src,
                dst,
                credit,
                data,
            } => {
                out.push(TYPE_OPEN);
                out.extend_from_slice(&id.to_be_bytes());
                match (src.ip(), dst.ip()) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        out.push(4);
                        out.extend_from_slice(&s.octets());
                        out.extend_from_slice(&d.octets());
                    }
                    (s, d) => {
                        out.push(6);
                        out.extend_from_slice(&v6(s).octets());
                        out.extend_from_slice(&v6(d).octets());
                    }
                }
                out.extend_from_slice(&src.port().to_be_bytes());
                out.extend_from_slice(&dst.port().to_be_bytes());
                out.extend_from_slice(&credit.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Data { id, data } => {
                out.push(TYPE_DATA);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Fin { id } => {
                out.push(TYPE_FIN);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Message::Rst { id, reason } => {
                out.push(TYPE_RST);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(reason.code());
            }
            Message::Credit { id, limit } => {
                out.push(TYPE_CREDIT);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&limit.to_be_bytes());
            }
        }
    }

    /// The encoded message as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

/// Header length of an OPEN between addresses of this family.
pub fn open_header_len(ipv6: bool) -> usize {
    if ipv6 {
        MAX_HEADER_LEN
    } else {
        MAX_HEADER_LEN - 24
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flow_ids() {
        let f = stream_flow(7, true);
        assert!(is_stream_flow(f));
        assert_eq!(parse_stream_flow(f), Some((7, true)));
        assert_eq!(
            parse_stream_flow(stream_flow(1023, false)),
            Some((1023, false))
        );
        assert_eq!(parse_stream_flow(5), None);
        assert_eq!(parse_stream_flow(STREAM_FLOW_BIT | 5000), None);
    }

    #[test]
    fn open_header_lengths() {
        for (src, dst) in [("10.0.0.1:1", "10.0.0.2:2"), ("[fd00::1]:1", "[fd00::2]:2")] {
            let m = Message::Open {
                id: 1,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                credit: 9,
                data: &[],
            };
            assert_eq!(m.to_vec().len(), open_header_len(src.starts_with('[')));
        }
    }

    #[test]
    fn rejects_bad_messages() {
        assert_eq!(Message::parse(&[]), Err(WireError::Truncated));
        assert_eq!(Message::parse(&[3, 0, 0, 0]), Err(WireError::Truncated));
        assert_eq!(
            Message::parse(&[9, 0, 0, 0, 1]),
            Err(WireError::UnknownType(9))
        );
        assert_eq!(
            Message::parse(&[3, 0, 0, 0, 1, 0]),
            Err(WireError::Trailing)
        );
        assert_eq!(
            Message::parse(&[1, 0, 0, 0, 1, 5]),
            Err(WireError::BadFamily(5))
        );
        assert_eq!(
            Message::parse(&[4, 0, 0, 0, 1, 200]),
            Ok(Message::Rst {
                id: 1,
                reason: ResetReason::Other(200)
            })
        );
    }

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(m) = Message::parse(&bytes) {
                // What parses re-encodes to the same bytes.
                prop_assert_eq!(m.to_vec(), bytes);
            }
        }

        #[test]
        fn round_trips(
            id in any::<u32>(),
            v6 in any::<bool>(),
            a in addr(), b in addr(),
            ports in any::<(u16, u16)>(),
            number in any::<u64>(),
            code in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let (a, b) = if v6 {
                (IpAddr::V6(super::v6(a)), IpAddr::V6(super::v6(b)))
            } else {
                match (a, b) {
                    (IpAddr::V4(_), IpAddr::V4(_)) => (a, b),
                    _ => (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
                }
            };
            let messages = [
                Message::Open { id, src: SocketAddr::new(a, ports.0), dst: SocketAddr::new(b, ports.1), credit: number, data: &data },
                Message::Data { id, data: &data },
                Message::Fin { id },
                Message::Rst { id, reason: ResetReason::from_code(code) },
                Message::Credit { id, limit: number },
            ];
            for m in messages {
                let bytes = m.to_vec();
                prop_assert_eq!(Message::parse(&bytes), Ok(m));
            }
        }
    }
}
