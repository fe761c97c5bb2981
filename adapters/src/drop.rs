//! Why a packet was dropped, with a stable name per reason so that the
//! daemon can count drops and report them in `tgp status`.

use std::fmt;

/// Why the adapters refused a packet. Every drop is counted under one of
/// these reasons; [`DropReason::name`] is the stable key used in statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The bytes are not a well-formed IPv4 or IPv6 packet (truncated,
    /// inconsistent length fields, broken extension headers, ...).
    Malformed,
    /// The first nibble is neither 4 nor 6.
    UnknownIpVersion,
    /// Outbound: no peer's allowed IPs cover the destination. The sender is
    /// answered with ICMP unreachable where the RFCs allow it.
    NoRoute,
    /// Inbound: the source address is not among the allowed IPs of the peer
    /// the packet came from (spoofed or misconfigured).
    SourceNotAllowed,
}

impl DropReason {
    /// Every reason, in a fixed order (the order of [`DropCounters::iter`]).
    pub const ALL: [DropReason; 4] = [
        DropReason::Malformed,
        DropReason::UnknownIpVersion,
        DropReason::NoRoute,
        DropReason::SourceNotAllowed,
    ];

    /// A stable, lowercase, snake_case name for statistics and logs. These
    /// names are an interface: do not rename them.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownIpVersion => "unknown_ip_version",
            DropReason::NoRoute => "no_route",
            DropReason::SourceNotAllowed => "source_not_allowed",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::Malformed => 0,
            DropReason::UnknownIpVersion => 1,
            DropReason::NoRoute => 2,
            DropReason::SourceNotAllowed => 3,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One counter per [`DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one dropped packet.
    pub fn record(&mut self, reason: DropReason) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.saturating_add(1);
    }

    /// How many packets were dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// All drops together.
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// `(name, count)` for every reason, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (r.name(), self.get(*r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_stable() {
        let names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "malformed",
                "unknown_ip_version",
                "no_route",
                "source_not_allowed"
            ]
        );
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn counters_count() {
        let mut c = DropCounters::new();
        c.record(DropReason::NoRoute);
        c.record(DropReason::NoRoute);
        c.record(DropReason::Malformed);
        assert_eq!(c.get(DropReason::NoRoute), 2);
        assert_eq!(c.get(DropReason::SourceNotAllowed), 0);
        assert_eq!(c.total(), 3);
        assert_eq!(
            c.iter().find(|(n, _)| *n == "no_route"),
            Some(("no_route", 2))
        );
    }
}
