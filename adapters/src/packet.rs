//! Parsing an inner IP packet (as read from the TUN device) into the few
//! facts the adapters need: addresses, protocol, ports and the flow.

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::drop::DropReason;

/// IP protocol number of TCP.
pub const IP_PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IP_PROTO_UDP: u8 = 17;
/// IP protocol number of ICMP (for IPv4).
pub const IP_PROTO_ICMPV4: u8 = 1;
/// IP protocol number of ICMPv6.
pub const IP_PROTO_ICMPV6: u8 = 58;

/// Why [`parse`] refused a packet.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Zero bytes.
    #[error("empty packet")]
    Empty,
    /// The version nibble is neither 4 nor 6.
    #[error("IP version {0} is neither 4 nor 6")]
    UnknownIpVersion(u8),
    /// etherparse found the IP header, an extension header or the transport
    /// header truncated or inconsistent.
    #[error("malformed IP packet: {0}")]
    Malformed(#[from] etherparse::err::packet::SliceError),
}

impl ParseError {
    /// The counter this error is counted under.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            ParseError::Empty | ParseError::Malformed(_) => DropReason::Malformed,
            ParseError::UnknownIpVersion(_) => DropReason::UnknownIpVersion,
        }
    }
}

/// IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The transport protocol of a packet, as far as the adapters care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// TCP (protocol 6).
    Tcp,
    /// UDP (protocol 17).
    Udp,
    /// ICMP for IPv4 (protocol 1).
    Icmpv4,
    /// ICMPv6 (protocol 58).
    Icmpv6,
    /// Anything else, by IP protocol number (the last next-header for IPv6).
    Other(u8),
}

impl TransportProtocol {
    /// Map an IP protocol number.
    pub fn from_ip_number(number: u8) -> Self {
        match number {
            IP_PROTO_TCP => TransportProtocol::Tcp,
            IP_PROTO_UDP => TransportProtocol::Udp,
            IP_PROTO_ICMPV4 => TransportProtocol::Icmpv4,
            IP_PROTO_ICMPV6 => TransportProtocol::Icmpv6,
            other => TransportProtocol::Other(other),
        }
    }

    /// The IP protocol number.
    pub fn ip_number(self) -> u8 {
        match self {
            TransportProtocol::Tcp => IP_PROTO_TCP,
            TransportProtocol::Udp => IP_PROTO_UDP,
            TransportProtocol::Icmpv4 => IP_PROTO_ICMPV4,
            TransportProtocol::Icmpv6 => IP_PROTO_ICMPV6,
            TransportProtocol::Other(n) => n,
        }
    }
}

/// Source and destination port of a TCP or UDP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports {
    /// Source port.
    pub src: u16,
    /// Destination port.
    pub dst: u16,
}

/// Segment-mode flow ids ([`FlowKey::id`]) keep to these bits; the top bit
/// marks split-mode stream messages (tgp-split's `STREAM_FLOW_BIT`).
pub const SEGMENT_FLOW_MASK: u64 = !(1 << 63);

/// The 5-tuple that names a flow, in one direction.
///
/// Packets without ports (ICMP, other protocols, and every IP fragment,
/// since only reassembly would reveal the ports) use port 0 on both sides,
/// so all fragments between two hosts for one protocol share a flow and stay
/// in order relative to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Source port, or 0.
    pub src_port: u16,
    /// Destination port, or 0.
    pub dst_port: u16,
}

impl FlowKey {
    /// A stable 64-bit id of this flow: FNV-1a over a fixed byte encoding
    /// of the 5-tuple. The same tuple gives the same id in every process,
    /// build and platform (unlike `std`'s hasher), so ids can be logged and
    /// compared across hosts. Not collision-resistant against an adversary;
    /// it is a label, not a security boundary.
    ///
    /// The top bit is always clear: flow ids with it set
    /// ([`SEGMENT_FLOW_MASK`]'s complement) carry split-mode stream
    /// messages, not IP packets.
    pub fn id(&self) -> u64 {
        const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut hash = FNV_OFFSET;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
        };
        for addr in [self.src, self.dst] {
            match addr {
                IpAddr::V4(a) => {
                    eat(&[4]);
                    eat(&a.octets());
                }
                IpAddr::V6(a) => {
                    eat(&[6]);
                    eat(&a.octets());
                }
            }
        }
        eat(&[self.protocol]);
        eat(&self.src_port.to_be_bytes());
        eat(&self.dst_port.to_be_bytes());
        hash & SEGMENT_FLOW_MASK
    }
}

/// What [`parse`] learned about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSummary {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol (for IPv6, after the extension headers).
    pub protocol: TransportProtocol,
    /// Ports of an unfragmented TCP or UDP packet.
    pub ports: Option<Ports>,
    /// The packet is an IP fragment (first or later); its transport header
    /// was not looked at.
    pub fragment: bool,
    /// TCP with the SYN flag (SYN or SYN-ACK): a candidate for MSS clamping.
    pub tcp_syn: bool,
    /// The flow this packet belongs to.
    pub flow: FlowKey,
    /// `flow.id()`, computed once.
    pub flow_id: u64,
}

/// Parse an inner IP packet. Never panics, whatever the bytes.
///
/// Strict: length fields must agree with the slice (bytes beyond the IP
/// total length are ignored), and TCP/UDP/ICMP headers of unfragmented
/// packets must be complete.
pub fn parse(packet: &[u8]) -> Result<PacketSummary, ParseError> {
    let first = *packet.first().ok_or(ParseError::Empty)?;
    let version_nibble = first >> 4;
    if version_nibble != 4 && version_nibble != 6 {
        return Err(ParseError::UnknownIpVersion(version_nibble));
    }
    let sliced = SlicedPacket::from_ip(packet)?;
    let (version, src, dst, ip_payload) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => (
            IpVersion::V4,
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.payload(),
        ),
        Some(NetSlice::Ipv6(v6)) => (
            IpVersion::V6,
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.payload(),
        ),
        // from_ip only ever yields IPv4 or IPv6; treat anything else as
        // malformed rather than trusting that forever.
        Some(NetSlice::Arp(_)) | None => return Err(ParseError::UnknownIpVersion(version_nibble)),
    };
    let protocol = TransportProtocol::from_ip_number(ip_payload.ip_number.0);
    let fragment = ip_payload.fragmented;
    let (ports, tcp_syn) = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => (
            Some(Ports {
                src: tcp.source_port(),
                dst: tcp.destination_port(),
            }),
            tcp.syn(),
        ),
        Some(TransportSlice::Udp(udp)) => (
            Some(Ports {
                src: udp.source_port(),
                dst: udp.destination_port(),
            }),
            false,
        ),
        _ => (None, false),
    };
    let flow = FlowKey {
        src,
        dst,
        protocol: protocol.ip_number(),
        src_port: ports.map_or(0, |p| p.src),
        dst_port: ports.map_or(0, |p| p.dst),
    };
    Ok(PacketSummary {
        version,
        src,
        dst,
        protocol,
        ports,
        fragment,
        tcp_syn,
        flow,
        flow_id: flow.id(),
    })
}

/// Where the transport header starts in an IP packet that etherparse has
/// sliced: the IP header plus any extension headers.
pub(crate) fn transport_offset(net: &NetSlice<'_>) -> Option<usize> {
    match net {
        NetSlice::Ipv4(v4) => {
            let auth_len = v4.extensions().auth.map_or(0, |a| a.slice().len());
            Some(v4.header().slice().len() + auth_len)
        }
        NetSlice::Ipv6(v6) => Some(v6.header().slice().len() + v6.extensions().slice().len()),
        NetSlice::Arp(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_packets::*;

    #[test]
    fn parses_ipv4_tcp() {
        let p = tcp_v4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443, true, false, None);
        let s = parse(&p).unwrap();
        assert_eq!(s.version, IpVersion::V4);
        assert_eq!(s.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(s.protocol, TransportProtocol::Tcp);
        assert_eq!(
            s.ports,
            Some(Ports {
                src: 40000,
                dst: 443
            })
        );
        assert!(s.tcp_syn);
        assert!(!s.fragment);
        assert_eq!(s.flow.protocol, 6);
        assert_eq!(s.flow_id, s.flow.id());
    }

    #[test]
    fn parses_ipv6_udp_and_icmp() {
        let p = udp_v6(V6_A, V6_B, 5000, 53, b"hello");
        let s = parse(&p).unwrap();
        assert_eq!(s.version, IpVersion::V6);
        assert_eq!(s.protocol, TransportProtocol::Udp);
        assert_eq!(s.ports, Some(Ports { src: 5000, dst: 53 }));
        assert!(!s.tcp_syn);

        let s = parse(&icmp_echo_v6(V6_A, V6_B)).unwrap();
        assert_eq!(s.protocol, TransportProtocol::Icmpv6);
        assert_eq!(s.ports, None);
        assert_eq!((s.flow.src_port, s.flow.dst_port), (0, 0));

        let s = parse(&icmp_echo_v4([10, 0, 0, 1], [10, 0, 0, 2])).unwrap();
        assert_eq!(s.protocol, TransportProtocol::Icmpv4);
    }

    #[test]
    fn flow_id_is_stable_and_directional() {
        let a = parse(&udp_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x")).unwrap();
        let b = parse(&udp_v4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1,
            2,
            b"other payload",
        ))
        .unwrap();
        let back = parse(&udp_v4([10, 0, 0, 2], [10, 0, 0, 1], 2, 1, b"x")).unwrap();
        assert_eq!(a.flow_id, b.flow_id);
        assert_ne!(a.flow_id, back.flow_id);
        let pinned = FlowKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 17,
            src_port: 1,
            dst_port: 2,
        };
        assert_eq!(pinned.id(), a.flow_id);
        assert_eq!(pinned.id(), PINNED_FLOW_ID & SEGMENT_FLOW_MASK);
    }

    /// FNV-1a of the documented byte encoding (family tag, address, family
    /// tag, address, protocol, ports big-endian), computed by a separate
    /// const implementation: guards against accidental encoding changes.
    const PINNED_FLOW_ID: u64 = reference_fnv1a(&[4, 10, 0, 0, 1, 4, 10, 0, 0, 2, 17, 0, 1, 0, 2]);

    const fn reference_fnv1a(bytes: &[u8]) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        hash
    }

    proptest::proptest! {
        #[test]
        fn segment_flow_ids_never_set_the_stream_bit(
            a in proptest::prelude::any::<[u8; 16]>(),
            b in proptest::prelude::any::<[u8; 4]>(),
            protocol in proptest::prelude::any::<u8>(),
            ports in proptest::prelude::any::<(u16, u16)>(),
        ) {
            let key = FlowKey {
                src: IpAddr::from(a),
                dst: IpAddr::from(b),
                protocol,
                src_port: ports.0,
                dst_port: ports.1,
            };
            proptest::prop_assert_eq!(key.id() & !SEGMENT_FLOW_MASK, 0);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse(&[]), Err(ParseError::Empty)));
        assert!(matches!(
            parse(&[0x50, 0, 0, 0]),
            Err(ParseError::UnknownIpVersion(5))
        ));
        let mut p = udp_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"abc");
        p.truncate(p.len() - 2); // total length now lies
        let e = parse(&p).unwrap_err();
        assert_eq!(e.drop_reason(), DropReason::Malformed);
        assert!(parse(&p[..10]).is_err());
    }

    #[test]
    fn fragments_have_no_ports() {
        let mut p = udp_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"abcdefgh");
        // Set "more fragments" and fix the IPv4 header checksum.
        p[6] |= 0x20;
        fix_ipv4_header_checksum(&mut p);
        let s = parse(&p).unwrap();
        assert!(s.fragment);
        assert_eq!(s.ports, None);
        assert_eq!(s.protocol, TransportProtocol::Udp);
    }
}
