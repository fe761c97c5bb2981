//! ToTG and UoTG adapters: pure functions over inner IP packets.
//!
//! - [`parse`] reads an IPv4/IPv6 packet from the TUN into a
//!   [`PacketSummary`]: addresses, protocol, ports, the 5-tuple [`FlowKey`]
//!   and a stable `u64` flow id.
//! - [`ClassRules::classify`] picks its [`DeliveryClass`](tgp_proto::DeliveryClass):
//!   TCP reliable (ToTG), UDP and ICMP deadline-bounded (UoTG), overridden by
//!   protocol/port rules.
//! - [`clamp_tcp_mss`] lowers the MSS of TCP SYNs to what the tunnel MTU
//!   carries ([`mss_for_mtu`]), so inner TCP never fragments.
//! - [`AllowedIps`] maps inner prefixes to peers (longest prefix match);
//!   [`icmp_unreachable`] answers packets with no route.
//! - Every refused packet has a countable [`DropReason`].
//!
//! Nothing here does I/O or keeps time; untrusted bytes never panic.

mod allowed_ips;
mod class;
mod drop;
mod icmp;
mod mss;
mod packet;
#[cfg(test)]
mod test_packets;

pub use allowed_ips::{AllowedIps, PeerIndex};
pub use class::{
    BadPortRange, ClassDefaults, ClassRule, ClassRules, PortRange, RuleProtocol, UnknownProtocol,
    DEFAULT_ICMP_DEADLINE, DEFAULT_OTHER_DEADLINE, DEFAULT_UDP_DEADLINE,
};
pub use drop::{DropCounters, DropReason};
pub use icmp::{icmp_unreachable, ICMPV4_ERROR_MAX_LEN, ICMPV6_ERROR_MAX_LEN};
pub use ipnet::IpNet;
pub use mss::{clamp_tcp_mss, mss_for_mtu};
pub use packet::{
    parse, FlowKey, IpVersion, PacketSummary, ParseError, Ports, TransportProtocol,
    IP_PROTO_ICMPV4, IP_PROTO_ICMPV6, IP_PROTO_TCP, IP_PROTO_UDP, SEGMENT_FLOW_MASK,
};
