//! Choosing a delivery class per packet: TCP is reliable (ToTG), UDP and
//! ICMP get a deadline (UoTG), and configured rules override that by
//! protocol and port.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tgp_proto::DeliveryClass;

use crate::packet::{PacketSummary, TransportProtocol};

/// Default deadline for UDP: a late voice or game packet is a useless one.
pub const DEFAULT_UDP_DEADLINE: Duration = Duration::from_millis(100);
/// Default deadline for ICMP: long enough for ping to show the real path.
pub const DEFAULT_ICMP_DEADLINE: Duration = Duration::from_secs(1);
/// Default deadline for every other protocol (GRE, ESP, SCTP, ...): they
/// carry their own recovery, like UDP.
pub const DEFAULT_OTHER_DEADLINE: Duration = Duration::from_millis(100);

/// The protocol a [`ClassRule`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP for IPv4 and ICMPv6 alike.
    Icmp,
}

impl RuleProtocol {
    /// Whether a packet of `protocol` is covered.
    pub fn matches(self, protocol: TransportProtocol) -> bool {
        matches!(
            (self, protocol),
            (RuleProtocol::Tcp, TransportProtocol::Tcp)
                | (RuleProtocol::Udp, TransportProtocol::Udp)
                | (RuleProtocol::Icmp, TransportProtocol::Icmpv4)
                | (RuleProtocol::Icmp, TransportProtocol::Icmpv6)
        )
    }

    /// The lowercase name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            RuleProtocol::Tcp => "tcp",
            RuleProtocol::Udp => "udp",
            RuleProtocol::Icmp => "icmp",
        }
    }
}

impl fmt::Display for RuleProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A protocol name that is not `tcp`, `udp` or `icmp`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a protocol (expected \"tcp\", \"udp\" or \"icmp\")")]
pub struct UnknownProtocol(pub String);

impl FromStr for RuleProtocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(RuleProtocol::Tcp),
            "udp" => Ok(RuleProtocol::Udp),
            "icmp" => Ok(RuleProtocol::Icmp),
            other => Err(UnknownProtocol(other.to_owned())),
        }
    }
}

/// An inclusive range of ports, `first..=last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// `first..=last`; `None` if `first > last`.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first <= last).then_some(PortRange { first, last })
    }

    /// Exactly one port.
    pub fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// The lowest port in the range.
    pub fn first(self) -> u16 {
        self.first
    }

    /// The highest port in the range.
    pub fn last(self) -> u16 {
        self.last
    }

    /// Whether `port` lies in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A port or port range that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a port (0-65535) or a port range like \"5000-5100\"")]
pub struct BadPortRange(pub String);

impl FromStr for PortRange {
    type Err = BadPortRange;

    /// `"443"` or `"5000-5100"` (whitespace around the dash is allowed).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPortRange(s.to_owned());
        let port = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
        match s.split_once('-') {
            None => Ok(PortRange::single(port(s)?)),
            Some((a, b)) => PortRange::new(port(a)?, port(b)?).ok_or_else(bad),
        }
    }
}

/// One rule: packets of `protocol` whose source or destination port lies in
/// one of `ports` (any port if `ports` is empty) get `class`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassRule {
    /// Protocol the rule applies to.
    pub protocol: RuleProtocol,
    /// Port ranges, matched against either side; empty means every port
    /// (and for ICMP, which has no ports, must be empty to ever match).
    pub ports: Vec<PortRange>,
    /// The class the matching packets get.
    pub class: DeliveryClass,
}

impl ClassRule {
    /// Whether the rule covers this packet. A rule with ports never matches
    /// a packet without ports (ICMP, IP fragments).
    pub fn matches(&self, packet: &PacketSummary) -> bool {
        if !self.protocol.matches(packet.protocol) {
            return false;
        }
        if self.ports.is_empty() {
            return true;
        }
        match packet.ports {
            Some(p) => self
                .ports
                .iter()
                .any(|r| r.contains(p.src) || r.contains(p.dst)),
            None => false,
        }
    }
}

/// The class of packets no rule matches, per protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassDefaults {
    /// TCP: [`DeliveryClass::Segment`] (reliable; the inner TCP puts its
    /// segments back in order, so a hole holds a flow only briefly).
    pub tcp: DeliveryClass,
    /// UDP: deadline [`DEFAULT_UDP_DEADLINE`].
    pub udp: DeliveryClass,
    /// ICMP and ICMPv6: deadline [`DEFAULT_ICMP_DEADLINE`].
    pub icmp: DeliveryClass,
    /// Everything else: deadline [`DEFAULT_OTHER_DEADLINE`].
    pub other: DeliveryClass,
}

impl Default for ClassDefaults {
    fn default() -> Self {
        ClassDefaults {
            tcp: DeliveryClass::Segment,
            udp: DeliveryClass::Deadline(DEFAULT_UDP_DEADLINE),
            icmp: DeliveryClass::Deadline(DEFAULT_ICMP_DEADLINE),
            other: DeliveryClass::Deadline(DEFAULT_OTHER_DEADLINE),
        }
    }
}

/// An ordered rule list plus defaults. The first matching rule wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassRules {
    /// Rules, tried in order.
    pub rules: Vec<ClassRule>,
    /// Used when no rule matches.
    pub defaults: ClassDefaults,
}

impl ClassRules {
    /// `rules` over the default classes.
    pub fn new(rules: Vec<ClassRule>) -> Self {
        ClassRules {
            rules,
            defaults: ClassDefaults::default(),
        }
    }

    /// The delivery class for a packet.
    pub fn classify(&self, packet: &PacketSummary) -> DeliveryClass {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(packet)) {
            return rule.class;
        }
        match packet.protocol {
            TransportProtocol::Tcp => self.defaults.tcp,
            TransportProtocol::Udp => self.defaults.udp,
            TransportProtocol::Icmpv4 | TransportProtocol::Icmpv6 => self.defaults.icmp,
            TransportProtocol::Other(_) => self.defaults.other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse;
    use crate::test_packets::*;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    fn ms(n: u64) -> DeliveryClass {
        DeliveryClass::Deadline(Duration::from_millis(n))
    }

    #[test]
    fn defaults() {
        let rules = ClassRules::default();
        let tcp = parse(&tcp_v4(A, B, 1, 2, false, true, None)).unwrap();
        let udp = parse(&udp_v6(V6_A, V6_B, 1, 2, b"x")).unwrap();
        let icmp4 = parse(&icmp_echo_v4(A, B)).unwrap();
        let icmp6 = parse(&icmp_echo_v6(V6_A, V6_B)).unwrap();
        assert_eq!(rules.classify(&tcp), DeliveryClass::Segment);
        assert_eq!(rules.classify(&udp), ms(100));
        assert_eq!(rules.classify(&icmp4), ms(1000));
        assert_eq!(rules.classify(&icmp6), ms(1000));
    }

    #[test]
    fn port_rules_match_either_side_first_wins() {
        let rules = ClassRules::new(vec![
            ClassRule {
                protocol: RuleProtocol::Udp,
                ports: vec![PortRange::new(5000, 5100).unwrap(), PortRange::single(3478)],
                class: ms(50),
            },
            ClassRule {
                protocol: RuleProtocol::Udp,
                ports: vec![],
                class: DeliveryClass::Reliable,
            },
        ]);
        let to_port = parse(&udp_v4(A, B, 40000, 5050, b"x")).unwrap();
        let from_port = parse(&udp_v4(A, B, 3478, 40000, b"x")).unwrap();
        let other = parse(&udp_v4(A, B, 40000, 40001, b"x")).unwrap();
        let tcp = parse(&tcp_v4(A, B, 40000, 5050, false, true, None)).unwrap();
        assert_eq!(rules.classify(&to_port), ms(50));
        assert_eq!(rules.classify(&from_port), ms(50));
        assert_eq!(rules.classify(&other), DeliveryClass::Reliable);
        assert_eq!(rules.classify(&tcp), DeliveryClass::Segment);
    }

    #[test]
    fn port_rule_never_matches_portless_packets() {
        let rule = ClassRule {
            protocol: RuleProtocol::Icmp,
            ports: vec![PortRange::new(0, 65535).unwrap()],
            class: ms(5),
        };
        assert!(!rule.matches(&parse(&icmp_echo_v4(A, B)).unwrap()));
    }

    #[test]
    fn port_range_parsing() {
        assert_eq!("443".parse(), Ok(PortRange::single(443)));
        assert_eq!("5000-5100".parse(), Ok(PortRange::new(5000, 5100).unwrap()));
        assert_eq!(
            "5000 - 5100".parse(),
            Ok(PortRange::new(5000, 5100).unwrap())
        );
        assert!("5100-5000".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
        assert!("".parse::<PortRange>().is_err());
        assert!("1-2-3".parse::<PortRange>().is_err());
        assert_eq!(PortRange::new(1, 2).unwrap().to_string(), "1-2");
        assert_eq!("udp".parse(), Ok(RuleProtocol::Udp));
        assert!("UDP".parse::<RuleProtocol>().is_err());
    }
}
