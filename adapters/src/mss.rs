//! TCP MSS clamping: rewrite the MSS option of SYN and SYN-ACK segments so
//! that neither end ever sends a segment larger than the tunnel carries,
//! and inner TCP never fragments.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::packet::{transport_offset, IpVersion};

/// IPv4 header (20) + TCP header (20) without options.
const IPV4_TCP_OVERHEAD: u16 = 40;
/// IPv6 header (40) + TCP header (20) without options.
const IPV6_TCP_OVERHEAD: u16 = 60;
/// TCP option kinds.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
/// Offset of the checksum field in the TCP header.
const TCP_CHECKSUM_OFFSET: usize = 16;
/// TCP header without options.
const TCP_MIN_HEADER: usize = 20;

/// The largest MSS that fits a tunnel MTU: MTU − 40 for IPv4, MTU − 60 for
/// IPv6 (0 if the MTU is smaller than the headers).
pub fn mss_for_mtu(tunnel_mtu: u16, version: IpVersion) -> u16 {
    match version {
        IpVersion::V4 => tunnel_mtu.saturating_sub(IPV4_TCP_OVERHEAD),
        IpVersion::V6 => tunnel_mtu.saturating_sub(IPV6_TCP_OVERHEAD),
    }
}

/// If `packet` is an unfragmented IPv4 or IPv6 TCP segment with SYN set
/// (SYN or SYN-ACK) whose MSS option exceeds `max_mss`, lower it to
/// `max_mss` and fix the TCP checksum incrementally (RFC 1624). Returns
/// whether the packet changed. Anything else, including malformed bytes,
/// is left alone (never panics).
///
/// A SYN without an MSS option is left alone too: the implied defaults
/// (536 for IPv4, 1220 for IPv6) already fit every tunnel MTU of at least
/// 576 / 1280.
pub fn clamp_tcp_mss(packet: &mut [u8], max_mss: u16) -> bool {
    let Some((tcp_start, header_len)) = tcp_syn_header(packet) else {
        return false;
    };
    let Some(tcp_header) = packet.get_mut(tcp_start..tcp_start + header_len) else {
        return false;
    };
    let Some(mss_at) = find_mss_option(tcp_header) else {
        return false;
    };
    let old = [tcp_header[mss_at], tcp_header[mss_at + 1]];
    if u16::from_be_bytes(old) <= max_mss {
        return false;
    }
    // The checksum covers 16-bit words aligned to the TCP header start (the
    // pseudo-header has even length). The MSS value may sit at an odd
    // offset after single-byte NOPs, so update over the aligned words that
    // contain it.
    let span_start = mss_at & !1;
    let span_end = (mss_at + 2 + 1) & !1;
    let old_sum = ones_complement_sum(&tcp_header[span_start..span_end]);
    tcp_header[mss_at..mss_at + 2].copy_from_slice(&max_mss.to_be_bytes());
    let new_sum = ones_complement_sum(&tcp_header[span_start..span_end]);
    let checksum_bytes = &mut tcp_header[TCP_CHECKSUM_OFFSET..TCP_CHECKSUM_OFFSET + 2];
    let old_checksum = u16::from_be_bytes([checksum_bytes[0], checksum_bytes[1]]);
    let new_checksum = incremental_checksum(old_checksum, old_sum, new_sum);
    checksum_bytes.copy_from_slice(&new_checksum.to_be_bytes());
    true
}

/// Start and length of the TCP header of an unfragmented TCP SYN, if the
/// packet is one.
fn tcp_syn_header(packet: &[u8]) -> Option<(usize, usize)> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let net = sliced.net.as_ref()?;
    let is_fragment = match net {
        NetSlice::Ipv4(v4) => v4.payload().fragmented,
        NetSlice::Ipv6(v6) => v6.payload().fragmented,
        NetSlice::Arp(_) => return None,
    };
    if is_fragment {
        return None;
    }
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return None;
    };
    if !tcp.syn() {
        return None;
    }
    let header_len = usize::from(tcp.data_offset()) * 4;
    if header_len < TCP_MIN_HEADER {
        return None;
    }
    Some((transport_offset(net)?, header_len))
}

/// Offset (within the TCP header) of the 2-byte value of the first
/// well-formed MSS option, walking the options with full bounds checks.
fn find_mss_option(tcp_header: &[u8]) -> Option<usize> {
    let mut at = TCP_MIN_HEADER;
    while at < tcp_header.len() {
        match tcp_header[at] {
            OPT_END => return None,
            OPT_NOP => at += 1,
            kind => {
                let len = usize::from(*tcp_header.get(at + 1)?);
                if len < 2 || at + len > tcp_header.len() {
                    return None; // malformed option list: touch nothing
                }
                if kind == OPT_MSS {
                    return (len == 4).then_some(at + 2);
                }
                at += len;
            }
        }
    }
    None
}

/// One's complement sum of big-endian 16-bit words (`bytes.len()` even).
fn ones_complement_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    fold(sum)
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with `m`/`m'` the one's
/// complement sums of the old and new words.
fn incremental_checksum(old_checksum: u16, old_sum: u16, new_sum: u16) -> u16 {
    let sum = u32::from(!old_checksum) + u32::from(!old_sum) + u32::from(new_sum);
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_packets::*;
    use etherparse::{Ipv4Slice, Ipv6Slice, TcpOptionElement, TcpSlice};

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    fn mss_and_checksum_ok(packet: &[u8]) -> (Option<u16>, bool) {
        let sliced = SlicedPacket::from_ip(packet).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("not tcp")
        };
        let mss = tcp.options_iterator().find_map(|o| match o {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
            _ => None,
        });
        let ok = match sliced.net.unwrap() {
            NetSlice::Ipv4(v4) => {
                let h = v4.header();
                tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap() == tcp.checksum()
            }
            NetSlice::Ipv6(v6) => {
                let h = v6.header();
                tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap() == tcp.checksum()
            }
            NetSlice::Arp(_) => unreachable!(),
        };
        (mss, ok)
    }

    #[test]
    fn mss_for_mtu_subtracts_headers() {
        assert_eq!(mss_for_mtu(1400, IpVersion::V4), 1360);
        assert_eq!(mss_for_mtu(1400, IpVersion::V6), 1340);
        assert_eq!(mss_for_mtu(30, IpVersion::V6), 0);
    }

    #[test]
    fn clamps_ipv4_syn_and_fixes_checksum() {
        let mut p = tcp_v4(A, B, 40000, 443, true, false, Some(1460));
        assert_eq!(mss_and_checksum_ok(&p), (Some(1460), true));
        assert!(clamp_tcp_mss(&mut p, 1340));
        assert_eq!(mss_and_checksum_ok(&p), (Some(1340), true));
        // Already small enough: untouched.
        let before = p.clone();
        assert!(!clamp_tcp_mss(&mut p, 1400));
        assert_eq!(p, before);
        // The IPv4 header is untouched and still valid.
        Ipv4Slice::from_slice(&p).unwrap();
    }

    #[test]
    fn clamps_ipv4_syn_ack_and_ipv6_syn() {
        let mut p = tcp_v4(A, B, 443, 40000, true, true, Some(1460));
        assert!(clamp_tcp_mss(&mut p, 1000));
        assert_eq!(mss_and_checksum_ok(&p), (Some(1000), true));

        let mut p = tcp_v6(V6_A, V6_B, 40000, 443, true, false, Some(1440));
        assert!(clamp_tcp_mss(&mut p, mss_for_mtu(1280, IpVersion::V6)));
        assert_eq!(mss_and_checksum_ok(&p), (Some(1220), true));
        Ipv6Slice::from_slice(&p).unwrap();
    }

    #[test]
    fn odd_aligned_mss_option_checksum_is_right() {
        // NOP before MSS puts the MSS value at an odd offset.
        let mut packet = Vec::new();
        etherparse::PacketBuilder::ipv4(A, B, 64)
            .tcp(1, 2, 3, 4)
            .syn()
            .options_raw(&[1, 2, 4, 0x05, 0xb4, 1, 1, 0])
            .unwrap()
            .write(&mut packet, &[])
            .unwrap();
        for max in [1200u16, 0x04ff, 0x0001, 0x05b3] {
            let mut p = packet.clone();
            assert!(clamp_tcp_mss(&mut p, max));
            assert_eq!(mss_and_checksum_ok(&p), (Some(max), true), "max {max}");
        }
    }

    #[test]
    fn leaves_non_syn_and_non_tcp_alone() {
        for mut p in [
            tcp_v4(A, B, 1, 2, false, true, Some(1460)),
            tcp_v4(A, B, 1, 2, true, false, None),
            udp_v4(A, B, 1, 2, &[2, 4, 5, 0xb4]),
            icmp_echo_v6(V6_A, V6_B),
            vec![],
            vec![0x45],
        ] {
            let before = p.clone();
            assert!(!clamp_tcp_mss(&mut p, 500));
            assert_eq!(p, before);
        }
    }

    #[test]
    fn malformed_option_list_is_left_alone() {
        let mut packet = Vec::new();
        // An option with length 0 before the MSS: walking must stop.
        etherparse::PacketBuilder::ipv4(A, B, 64)
            .tcp(1, 2, 3, 4)
            .syn()
            .options_raw(&[8, 0, 2, 4, 0x05, 0xb4, 0, 0])
            .unwrap()
            .write(&mut packet, &[])
            .unwrap();
        let before = packet.clone();
        assert!(!clamp_tcp_mss(&mut packet, 500));
        assert_eq!(packet, before);
        TcpSlice::from_slice(&packet[20..]).unwrap();
    }
}
