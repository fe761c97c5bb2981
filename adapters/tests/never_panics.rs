//! Property tests: no parser in tgp-adapters panics, whatever the bytes,
//! and MSS clamping keeps TCP checksums right on valid packets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use proptest::prelude::*;
use tgp_adapters::{
    clamp_tcp_mss, icmp_unreachable, parse, AllowedIps, ClassRules, ICMPV4_ERROR_MAX_LEN,
    ICMPV6_ERROR_MAX_LEN,
};

const ROUTER_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const ROUTER_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1));

/// Run every entry point on `bytes`; only panics would fail the test.
fn exercise(bytes: &[u8]) {
    let mut table = AllowedIps::new();
    table.insert("0.0.0.0/0".parse().unwrap(), 0);
    table.insert("::/0".parse().unwrap(), 1);
    if let Ok(summary) = parse(bytes) {
        let _ = ClassRules::default().classify(&summary);
        let _ = table.route(&summary);
        let _ = table.check_source(&summary, 0);
    }
    for router in [ROUTER_V4, ROUTER_V6] {
        if let Some(reply) = icmp_unreachable(bytes, router) {
            assert!(reply.len() <= ICMPV6_ERROR_MAX_LEN);
            if router.is_ipv4() {
                assert!(reply.len() <= ICMPV4_ERROR_MAX_LEN);
            }
            SlicedPacket::from_ip(&reply).expect("our ICMP errors parse");
        }
    }
    let mut copy = bytes.to_vec();
    let changed = clamp_tcp_mss(&mut copy, 536);
    if !changed {
        assert_eq!(
            copy, bytes,
            "clamp_tcp_mss changed bytes but said it did not"
        );
    }
}

/// A valid packet of a random kind, version and size.
fn valid_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..5,
        any::<bool>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(kind, v6, a, b, sport, dport, mss, payload)| {
            let mut out = Vec::new();
            let mut a6 = [0xfdu8; 16];
            let mut b6 = [0xfdu8; 16];
            a6[12..].copy_from_slice(&a);
            b6[12..].copy_from_slice(&b);
            macro_rules! finish {
                ($start:expr) => {{
                    let start = $start;
                    match kind {
                        0 | 1 => start
                            .tcp(sport, dport, 1, 1000)
                            .syn()
                            .options(&[
                                TcpOptionElement::Noop,
                                TcpOptionElement::MaximumSegmentSize(mss),
                                TcpOptionElement::WindowScale(7),
                            ])
                            .unwrap()
                            .write(&mut out, &payload)
                            .unwrap(),
                        2 => start
                            .tcp(sport, dport, 1, 1000)
                            .write(&mut out, &payload)
                            .unwrap(),
                        3 => start.udp(sport, dport).write(&mut out, &payload).unwrap(),
                        _ if !v6 => start
                            .icmpv4_echo_request(sport, dport)
                            .write(&mut out, &payload)
                            .unwrap(),
                        _ => start
                            .icmpv6_echo_request(sport, dport)
                            .write(&mut out, &payload)
                            .unwrap(),
                    }
                }};
            }
            if v6 {
                finish!(PacketBuilder::ipv6(a6, b6, 64));
            } else {
                finish!(PacketBuilder::ipv4(a, b, 64));
            }
            out
        })
}

fn tcp_checksum_ok(packet: &[u8]) -> bool {
    let Ok(sliced) = SlicedPacket::from_ip(packet) else {
        return false;
    };
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return true;
    };
    let computed = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => {
            tcp.calc_checksum_ipv4(v4.header().source(), v4.header().destination())
        }
        Some(NetSlice::Ipv6(v6)) => {
            tcp.calc_checksum_ipv6(v6.header().source(), v6.header().destination())
        }
        _ => return false,
    };
    computed.ok() == Some(tcp.checksum())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_with_ip_version_never_panic(
        v6 in any::<bool>(),
        mut bytes in proptest::collection::vec(any::<u8>(), 1..200),
    ) {
        bytes[0] = (bytes[0] & 0x0f) | if v6 { 0x60 } else { 0x45 };
        exercise(&bytes);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        packet in valid_packet(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        truncate_to in any::<usize>(),
    ) {
        let mut bytes = packet;
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        exercise(&bytes);
        bytes.truncate(truncate_to % (bytes.len() + 1));
        exercise(&bytes);
    }

    #[test]
    fn valid_packets_parse_and_clamp_keeps_checksums(
        packet in valid_packet(),
        max_mss in any::<u16>(),
    ) {
        prop_assert!(parse(&packet).is_ok());
        let mut clamped = packet.clone();
        let changed = clamp_tcp_mss(&mut clamped, max_mss);
        prop_assert!(tcp_checksum_ok(&clamped));
        prop_assert_eq!(changed, clamped != packet);
        exercise(&packet);
    }
}
