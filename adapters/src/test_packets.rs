//! Test helpers: well-formed packets built with etherparse's PacketBuilder.

use etherparse::{PacketBuilder, TcpOptionElement};

pub const V6_A: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const V6_B: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn tcp_options(mss: Option<u16>) -> Vec<TcpOptionElement> {
    // A realistic SYN option layout: MSS, SACK permitted, timestamps,
    // NOP, window scale.
    let mut options = Vec::new();
    if let Some(mss) = mss {
        options.push(TcpOptionElement::MaximumSegmentSize(mss));
    }
    options.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
    options.push(TcpOptionElement::Timestamp(1, 0));
    options.push(TcpOptionElement::Noop);
    options.push(TcpOptionElement::WindowScale(7));
    options
}

pub fn tcp_v4(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    mss: Option<u16>,
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1000, 64000);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(5);
    }
    let b = b.options(&tcp_options(mss)).unwrap();
    let payload: &[u8] = if syn { b"" } else { b"data" };
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

pub fn tcp_v6(
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    mss: Option<u16>,
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv6(src, dst, 64).tcp(sport, dport, 1000, 64000);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(5);
    }
    let b = b.options(&tcp_options(mss)).unwrap();
    let mut out = Vec::new();
    b.write(&mut out, b"").unwrap();
    out
}

pub fn udp_v4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub fn udp_v6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

pub fn icmp_echo_v4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut out, b"ping")
        .unwrap();
    out
}

pub fn icmp_echo_v6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv6(src, dst, 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut out, b"ping")
        .unwrap();
    out
}

/// Recompute the IPv4 header checksum after a test edited the header.
pub fn fix_ipv4_header_checksum(packet: &mut [u8]) {
    let header = etherparse::Ipv4HeaderSlice::from_slice(packet)
        .unwrap()
        .to_header();
    let sum = header.calc_header_checksum();
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}
