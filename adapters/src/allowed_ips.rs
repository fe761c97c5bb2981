//! The routing table between inner addresses and peers: longest-prefix
//! match from IP prefix to peer index, for IPv4 and IPv6 (like WireGuard's
//! AllowedIPs). Outbound it picks the peer for a destination; inbound it
//! checks that a peer may use the source address it sent from.

use std::net::IpAddr;

use ipnet::IpNet;
use prefix_trie::joint::map::JointPrefixMap;

use crate::drop::DropReason;
use crate::packet::PacketSummary;

/// Index of a peer in the daemon's peer list.
pub type PeerIndex = usize;

/// Longest-prefix-match table from IP prefix to peer.
#[derive(Clone, Debug, Default)]
pub struct AllowedIps {
    table: JointPrefixMap<IpNet, PeerIndex>,
}

impl AllowedIps {
    /// An empty table: no route anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Route `prefix` to `peer`. Host bits beyond the prefix length are
    /// ignored (`10.0.0.7/24` means `10.0.0.0/24`). Returns the peer that
    /// had exactly this prefix before, if any (it is replaced).
    pub fn insert(&mut self, prefix: IpNet, peer: PeerIndex) -> Option<PeerIndex> {
        self.table.insert(prefix.trunc(), peer)
    }

    /// Remove exactly `prefix` (not the prefixes inside it); returns its peer.
    pub fn remove(&mut self, prefix: IpNet) -> Option<PeerIndex> {
        self.table.remove(&prefix.trunc())
    }

    /// The peer with exactly this prefix, if any.
    pub fn get_exact(&self, prefix: IpNet) -> Option<PeerIndex> {
        self.table.get(&prefix.trunc()).copied()
    }

    /// Number of prefixes in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table has no prefixes.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The peer whose most specific prefix contains `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<PeerIndex> {
        self.table
            .get_lpm(&IpNet::from(addr))
            .map(|(_, peer)| *peer)
    }

    /// Outbound (TUN → peer): the peer to send this packet to, or
    /// [`DropReason::NoRoute`] (answer with
    /// [`icmp_unreachable`](crate::icmp_unreachable)).
    pub fn route(&self, packet: &PacketSummary) -> Result<PeerIndex, DropReason> {
        self.lookup(packet.dst).ok_or(DropReason::NoRoute)
    }

    /// Inbound (peer → TUN): whether `from_peer` may send a packet with
    /// this source address; [`DropReason::SourceNotAllowed`] if not.
    pub fn check_source(
        &self,
        packet: &PacketSummary,
        from_peer: PeerIndex,
    ) -> Result<(), DropReason> {
        match self.lookup(packet.src) {
            Some(peer) if peer == from_peer => Ok(()),
            _ => Err(DropReason::SourceNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse;
    use crate::test_packets::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_ipv4() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), 0);
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        t.insert(net("10.1.2.3/32"), 3);
        assert_eq!(t.lookup(ip("8.8.8.8")), Some(0));
        assert_eq!(t.lookup(ip("10.200.0.1")), Some(1));
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(2));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(3));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some(2));
        assert_eq!(t.lookup(ip("fd00::1")), None, "families are separate");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn longest_prefix_wins_ipv6() {
        let mut t = AllowedIps::new();
        t.insert(net("fd77::/16"), 1);
        t.insert(net("fd77::/64"), 2);
        t.insert(net("fd77::2/128"), 3);
        assert_eq!(t.lookup(ip("fd77::2")), Some(3));
        assert_eq!(t.lookup(ip("fd77::3")), Some(2));
        assert_eq!(t.lookup(ip("fd77:0:0:1::3")), Some(1));
        assert_eq!(t.lookup(ip("fd78::1")), None);
        assert_eq!(t.lookup(ip("10.0.0.1")), None);
    }

    #[test]
    fn host_bits_are_ignored_and_replace_reports_old_peer() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(net("10.0.0.7/24"), 1), None);
        assert_eq!(t.lookup(ip("10.0.0.200")), Some(1));
        assert_eq!(t.get_exact(net("10.0.0.0/24")), Some(1));
        assert_eq!(t.insert(net("10.0.0.0/24"), 2), Some(1));
        assert_eq!(t.remove(net("10.0.0.9/24")), Some(2));
        assert!(t.is_empty());
        assert_eq!(t.lookup(ip("10.0.0.200")), None);
    }

    #[test]
    fn route_and_check_source() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.2/32"), 0);
        t.insert(net("10.0.0.3/32"), 1);
        let to_peer0 = parse(&udp_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x")).unwrap();
        let nowhere = parse(&udp_v4([10, 0, 0, 1], [10, 0, 0, 9], 1, 2, b"x")).unwrap();
        assert_eq!(t.route(&to_peer0), Ok(0));
        assert_eq!(t.route(&nowhere), Err(DropReason::NoRoute));
        let from_peer1 = parse(&udp_v4([10, 0, 0, 3], [10, 0, 0, 1], 1, 2, b"x")).unwrap();
        assert_eq!(t.check_source(&from_peer1, 1), Ok(()));
        assert_eq!(
            t.check_source(&from_peer1, 0),
            Err(DropReason::SourceNotAllowed)
        );
    }
}
