//! ICMP "destination unreachable" for packets the tunnel has no route for,
//! as any router would send: ICMPv4 type 3 code 0 (net unreachable,
//! RFC 792 / RFC 1812) and ICMPv6 type 1 code 0 (no route, RFC 4443).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{icmpv4, icmpv6, Icmpv4Type, Icmpv6Type, IpSlice, PacketBuilder};

use crate::packet::{IP_PROTO_ICMPV4, IP_PROTO_ICMPV6};

/// RFC 1812 4.3.2.3: an ICMPv4 error, IP header included, is at most 576
/// bytes.
pub const ICMPV4_ERROR_MAX_LEN: usize = 576;
/// RFC 4443 2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
pub const ICMPV6_ERROR_MAX_LEN: usize = 1280;
/// IPv4 header (no options) + ICMP header.
const ICMPV4_OVERHEAD: usize = 20 + 8;
/// IPv6 header + ICMPv6 header.
const ICMPV6_OVERHEAD: usize = 40 + 8;
/// Hop limit / TTL of the packets we originate.
const ORIGINATED_TTL: u8 = 64;

/// Build the "no route" ICMP error for `original` (a packet read from the
/// TUN whose destination no peer serves), sent from `router_addr` (the
/// tunnel interface's own address of the same IP version) back to the
/// original sender, quoting as much of the original as fits in 576 (IPv4)
/// or 1280 (IPv6) bytes. Checksums are computed.
///
/// Returns `None` where the RFCs forbid an error message or none can be
/// built: `original` does not parse as IP; `router_addr` is of the other IP
/// version; the original is itself an ICMP error message; it is an IPv4
/// fragment other than the first; or its source is not a unicast host
/// (unspecified, multicast, broadcast) or its destination is multicast or
/// broadcast (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4(e)).
pub fn icmp_unreachable(original: &[u8], router_addr: IpAddr) -> Option<Vec<u8>> {
    let ip = IpSlice::from_slice(original).ok()?;
    let payload = ip.payload();
    let first_payload_byte = payload.payload.first().copied();
    match (&ip, router_addr) {
        (IpSlice::Ipv4(v4), IpAddr::V4(router)) => {
            let header = v4.header();
            let src = header.source_addr();
            let dst = header.destination_addr();
            if header.fragments_offset().value() != 0
                || !is_unicast_v4(src)
                || dst.is_multicast()
                || dst.is_broadcast()
            {
                return None;
            }
            if payload.ip_number.0 == IP_PROTO_ICMPV4 && is_icmpv4_error(first_payload_byte) {
                return None;
            }
            let quote_len = usize::from(header.total_len())
                .min(original.len())
                .min(ICMPV4_ERROR_MAX_LEN - ICMPV4_OVERHEAD);
            let builder = PacketBuilder::ipv4(router.octets(), src.octets(), ORIGINATED_TTL)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    icmpv4::DestUnreachableHeader::Network,
                ));
            let mut out = Vec::with_capacity(builder.size(quote_len));
            builder.write(&mut out, &original[..quote_len]).ok()?;
            Some(out)
        }
        (IpSlice::Ipv6(v6), IpAddr::V6(router)) => {
            let header = v6.header();
            let src = header.source_addr();
            let dst = header.destination_addr();
            if !is_unicast_v6(src) || dst.is_multicast() {
                return None;
            }
            if payload.ip_number.0 == IP_PROTO_ICMPV6
                && !payload.fragmented
                && is_icmpv6_error(first_payload_byte)
            {
                return None;
            }
            let ip_len = header.slice().len() + usize::from(header.payload_length());
            let quote_len = ip_len
                .min(original.len())
                .min(ICMPV6_ERROR_MAX_LEN - ICMPV6_OVERHEAD);
            let builder = PacketBuilder::ipv6(router.octets(), src.octets(), ORIGINATED_TTL)
                .icmpv6(Icmpv6Type::DestinationUnreachable(
                    icmpv6::DestUnreachableCode::NoRoute,
                ));
            let mut out = Vec::with_capacity(builder.size(quote_len));
            builder.write(&mut out, &original[..quote_len]).ok()?;
            Some(out)
        }
        _ => None,
    }
}

fn is_unicast_v4(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast())
}

fn is_unicast_v6(addr: Ipv6Addr) -> bool {
    !(addr.is_unspecified() || addr.is_multicast())
}

/// ICMPv4 error types (RFC 1122 3.2.2): unreachable, source quench,
/// redirect, time exceeded, parameter problem. A missing type byte counts
/// as an error so that we never answer what we cannot read.
fn is_icmpv4_error(icmp_type: Option<u8>) -> bool {
    icmp_type.is_none_or(|t| matches!(t, 3 | 4 | 5 | 11 | 12))
}

/// ICMPv6 error messages have types 0-127 (RFC 4443 2.1).
fn is_icmpv6_error(icmp_type: Option<u8>) -> bool {
    icmp_type.is_none_or(|t| t < 128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_packets::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    const HOST: [u8; 4] = [10, 0, 0, 5];
    const NOWHERE: [u8; 4] = [192, 0, 2, 1];
    const ROUTER_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const ROUTER_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 0xfe));

    #[test]
    fn ipv4_net_unreachable_quotes_original_and_checksums_verify() {
        let original = udp_v4(HOST, NOWHERE, 4000, 53, b"question");
        let reply = icmp_unreachable(&original, ROUTER_V4).unwrap();
        let sliced = SlicedPacket::from_ip(&reply).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!("not ipv4")
        };
        let header = ip.header().to_header();
        assert_eq!(header.calc_header_checksum(), header.header_checksum);
        assert_eq!(header.source, [10, 0, 0, 1]);
        assert_eq!(header.destination, HOST);
        let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
            panic!("not icmpv4")
        };
        assert_eq!(icmp.type_u8(), 3);
        assert_eq!(icmp.code_u8(), 0);
        assert_eq!(icmp.payload(), &original[..]);
        assert_eq!(
            icmp.icmp_type().calc_checksum(icmp.payload()),
            icmp.checksum()
        );
    }

    #[test]
    fn ipv6_no_route_checksums_verify() {
        let original = tcp_v6(V6_A, V6_B, 4000, 80, true, false, Some(1440));
        let reply = icmp_unreachable(&original, ROUTER_V6).unwrap();
        let sliced = SlicedPacket::from_ip(&reply).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!("not ipv6")
        };
        let (src, dst) = (ip.header().source(), ip.header().destination());
        assert_eq!(dst, V6_A);
        let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
            panic!("not icmpv6")
        };
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (1, 0));
        assert_eq!(icmp.payload(), &original[..]);
        assert_eq!(
            icmp.icmp_type()
                .calc_checksum(src, dst, icmp.payload())
                .unwrap(),
            icmp.checksum()
        );
    }

    #[test]
    fn size_limits_hold() {
        let big = udp_v4(HOST, NOWHERE, 1, 2, &[7u8; 1400]);
        let reply = icmp_unreachable(&big, ROUTER_V4).unwrap();
        assert_eq!(reply.len(), ICMPV4_ERROR_MAX_LEN);
        assert_eq!(&reply[28..], &big[..548]);

        let big6 = udp_v6(V6_A, V6_B, 1, 2, &[7u8; 3000]);
        let reply6 = icmp_unreachable(&big6, ROUTER_V6).unwrap();
        assert_eq!(reply6.len(), ICMPV6_ERROR_MAX_LEN);
        SlicedPacket::from_ip(&reply6).unwrap();
    }

    #[test]
    fn never_answers_errors_multicast_or_wrong_family() {
        let original = udp_v4(HOST, NOWHERE, 4000, 53, b"q");
        let error = icmp_unreachable(&original, ROUTER_V4).unwrap();
        assert_eq!(icmp_unreachable(&error, ROUTER_V4), None);
        assert_eq!(icmp_unreachable(&original, ROUTER_V6), None);
        assert_eq!(
            icmp_unreachable(&udp_v4(HOST, [224, 0, 0, 251], 5353, 5353, b"m"), ROUTER_V4),
            None
        );
        assert_eq!(
            icmp_unreachable(&udp_v4([0, 0, 0, 0], NOWHERE, 68, 67, b"d"), ROUTER_V4),
            None
        );
        let error6 = icmp_unreachable(&udp_v6(V6_A, V6_B, 1, 2, b"x"), ROUTER_V6).unwrap();
        assert_eq!(icmp_unreachable(&error6, ROUTER_V6), None);
        let mut multicast6 = V6_B;
        multicast6[0] = 0xff;
        assert_eq!(
            icmp_unreachable(&udp_v6(V6_A, multicast6, 1, 2, b"x"), ROUTER_V6),
            None
        );
        // Echo requests are answered.
        assert!(icmp_unreachable(&icmp_echo_v4(HOST, NOWHERE), ROUTER_V4).is_some());
        assert!(icmp_unreachable(&icmp_echo_v6(V6_A, V6_B), ROUTER_V6).is_some());
        assert_eq!(icmp_unreachable(&[], ROUTER_V4), None);
    }

    #[test]
    fn later_fragments_are_not_answered() {
        let mut p = udp_v4(HOST, NOWHERE, 1, 2, b"abcdefgh");
        p[7] = 1; // fragment offset 1 (8 bytes)
        fix_ipv4_header_checksum(&mut p);
        assert_eq!(icmp_unreachable(&p, ROUTER_V4), None);
    }
}
