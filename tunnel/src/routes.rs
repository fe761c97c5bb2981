//! What a config asks of the host's routing and firewall, as [`Change`]s
//! for [`crate::host::HostChanges`]: the same things wg-quick does.
//!
//! - A route through the interface for every allowed prefix of every peer,
//!   except prefixes an interface address's subnet already covers (the
//!   kernel routes those).
//! - A full tunnel for `0.0.0.0/0` or `::/0` (with `table = "auto"`): the
//!   default route goes into a table of its own, `ip rule not fwmark T
//!   table T` sends everything not marked there, `ip rule table main
//!   suppress_prefixlength 0` lets the host's more specific routes (its
//!   LAN, the underlay's next hop) still win, and the underlay socket marks
//!   its packets with T so that they leave by the host's own routes. An
//!   nftables table restores the mark on the replies (so strict reverse-
//!   path filtering accepts them; `src_valid_mark` is turned on) and drops
//!   packets for the tunnel's addresses that arrive on another interface.
//! - Egress at a server (`masquerade = "eth0"`): the same nftables table
//!   NATs what the peers send out through eth0, and IP forwarding is
//!   turned on (and back off on down, if it was off).
//!
//! Building the changes touches nothing; only choosing a free table for a
//! full tunnel ([`choose_table`]) asks `ip`.

use crate::config::{Config, RouteTable};
use crate::host::{Change, Command, Step, Tool, Tools};
use anyhow::{bail, Result};
use tgp_adapters::IpNet;

/// The first table number tried for a full tunnel (wg-quick starts at
/// 51820; tgp's default port is 51900).
pub const FIRST_TABLE: u32 = 51900;
/// How many table numbers [`choose_table`] tries.
const TABLES_TRIED: u32 = 1000;

/// IPv4 or IPv6, as `ip -4` / `ip -6` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

/// Every peer's allowed prefixes, truncated to their network, in config
/// order.
fn allowed_prefixes(config: &Config) -> Vec<IpNet> {
    let mut prefixes: Vec<IpNet> = Vec::new();
    for prefix in config.peers.iter().flat_map(|p| &p.allowed_ips) {
        let prefix = prefix.trunc();
        if !prefixes.contains(&prefix) {
            prefixes.push(prefix);
        }
    }
    prefixes
}

/// The families a full tunnel covers: those with a default prefix among
/// the allowed IPs, when `table = "auto"`.
pub fn full_tunnel_families(config: &Config) -> Vec<Family> {
    if config.interface.table != RouteTable::Auto {
        return Vec::new();
    }
    let mut families = Vec::new();
    for prefix in allowed_prefixes(config) {
        let family = Family::of(&prefix);
        if prefix.prefix_len() == 0 && !families.contains(&family) {
            families.push(family);
        }
    }
    families
}

/// Whether an interface address's subnet already covers `prefix`.
fn covered_by_interface(config: &Config, prefix: &IpNet) -> bool {
    config
        .interface
        .addresses
        .iter()
        .any(|address| address.trunc().contains(prefix))
}

fn run(apply: Command, undo: Command) -> Step {
    Step::Run {
        apply,
        undo: Some(undo),
    }
}

/// Routes for the allowed prefixes (not the full tunnel's default routes).
pub fn route_changes(config: &Config) -> Vec<Change> {
    let interface = &config.interface.name;
    let table = match config.interface.table {
        RouteTable::Off => return Vec::new(),
        RouteTable::Auto => None,
        RouteTable::Table(number) => Some(number),
    };
    let mut changes = Vec::new();
    for prefix in allowed_prefixes(config) {
        if covered_by_interface(config, &prefix) {
            continue;
        }
        if prefix.prefix_len() == 0 && table.is_none() {
            continue; // the full tunnel's
        }
        let family = Family::of(&prefix);
        let table_args = table.map(|t| format!(" table {t}")).unwrap_or_default();
        let spec = format!("{prefix} dev {interface}{table_args}");
        changes.push(Change {
            key: format!("route {spec}"),
            steps: vec![run(
                Command::new(Tool::Ip, &format!("{} route add {spec}", family.flag())),
                Command::new(Tool::Ip, &format!("{} route del {spec}", family.flag())),
            )],
            replaces: false,
        });
    }
    changes
}

/// The full tunnel's routes and rules in `table` (also its socket mark).
pub fn full_tunnel_changes(config: &Config, table: u32) -> Vec<Change> {
    let interface = &config.interface.name;
    full_tunnel_families(config)
        .into_iter()
        .map(|family| {
            let f = family.flag();
            let default = match family {
                Family::V4 => "0.0.0.0/0",
                Family::V6 => "::/0",
            };
            let mut steps = vec![
                run(
                    Command::new(
                        Tool::Ip,
                        &format!("{f} route add {default} dev {interface} table {table}"),
                    ),
                    Command::new(
                        Tool::Ip,
                        &format!("{f} route del {default} dev {interface} table {table}"),
                    ),
                ),
                run(
                    Command::new(
                        Tool::Ip,
                        &format!("{f} rule add not fwmark {table} table {table}"),
                    ),
                    Command::new(
                        Tool::Ip,
                        &format!("{f} rule del not fwmark {table} table {table}"),
                    ),
                ),
                run(
                    Command::new(
                        Tool::Ip,
                        &format!("{f} rule add table main suppress_prefixlength 0"),
                    ),
                    Command::new(
                        Tool::Ip,
                        &format!("{f} rule del table main suppress_prefixlength 0"),
                    ),
                ),
            ];
            if family == Family::V4 {
                steps.push(Step::Sysctl {
                    key: "net.ipv4.conf.all.src_valid_mark".into(),
                    value: "1".into(),
                });
            }
            Change {
                key: format!("full tunnel {} table {table}", family.name()),
                steps,
                replaces: false,
            }
        })
        .collect()
}

/// The nftables table's name for an interface (nft identifiers take no
/// `-`).
pub fn nft_table_name(interface: &str) -> String {
    let name: String = interface
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("tgp_{name}")
}

/// Sources to NAT: the peers' allowed prefixes of one family. `None`: all
/// (a peer may send from anywhere).
fn masquerade_sources(config: &Config, family: Family) -> Option<Vec<IpNet>> {
    let prefixes: Vec<IpNet> = allowed_prefixes(config)
        .into_iter()
        .filter(|p| Family::of(p) == family)
        .collect();
    if prefixes.iter().any(|p| p.prefix_len() == 0) {
        None
    } else {
        Some(prefixes)
    }
}

/// The nftables table's text (what `nft -f -` reads), if the config needs
/// one: the full tunnel's mark and anti-spoofing rules (for
/// `full_tunnel_table`), the masquerade.
pub fn nft_ruleset(config: &Config, full_tunnel_table: Option<u32>) -> Option<String> {
    let interface = &config.interface.name;
    let name = nft_table_name(interface);
    let mut chains = String::new();
    let families = full_tunnel_families(config);
    if let (Some(table), false) = (full_tunnel_table, families.is_empty()) {
        let mut raw = String::new();
        for address in &config.interface.addresses {
            let family = Family::of(address);
            if families.contains(&family) {
                raw.push_str(&format!(
                    "\t\tiifname != \"{interface}\" {} daddr {} fib saddr type != local drop\n",
                    family.nft(),
                    address.addr()
                ));
            }
        }
        chains.push_str(&format!(
            "\tchain preraw {{\n\t\ttype filter hook prerouting priority raw; policy accept;\n{raw}\t}}\n\
             \tchain premangle {{\n\t\ttype filter hook prerouting priority mangle; policy accept;\n\
             \t\tmeta l4proto udp meta mark set ct mark\n\t}}\n\
             \tchain postmangle {{\n\t\ttype filter hook postrouting priority mangle; policy accept;\n\
             \t\tmeta l4proto udp meta mark {table} ct mark set meta mark\n\t}}\n"
        ));
    }
    if let Some(out) = &config.interface.masquerade {
        let mut rules = String::new();
        for family in [Family::V4, Family::V6] {
            match masquerade_sources(config, family) {
                None => rules.push_str(&format!(
                    "\t\toifname \"{out}\" meta nfproto {} masquerade\n",
                    family.name()
                )),
                Some(sources) if sources.is_empty() => {}
                Some(sources) => {
                    let list: Vec<String> = sources.iter().map(ToString::to_string).collect();
                    rules.push_str(&format!(
                        "\t\toifname \"{out}\" {} saddr {{ {} }} masquerade\n",
                        family.nft(),
                        list.join(", ")
                    ));
                }
            }
        }
        chains.push_str(&format!(
            "\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{rules}\t}}\n"
        ));
    }
    if chains.is_empty() {
        return None;
    }
    // Declaring the table, deleting it and writing it whole is one
    // transaction: a reload replaces the rules atomically.
    Some(format!(
        "table inet {name}\ndelete table inet {name}\ntable inet {name} {{\n{chains}}}\n"
    ))
}

/// The nftables change, if any.
fn nft_change(config: &Config, full_tunnel_table: Option<u32>) -> Option<Change> {
    let ruleset = nft_ruleset(config, full_tunnel_table)?;
    let name = nft_table_name(&config.interface.name);
    Some(Change {
        key: "nftables".into(),
        steps: vec![run(
            Command::new(Tool::Nft, "-f -").with_stdin(ruleset),
            Command::new(Tool::Nft, &format!("delete table inet {name}")),
        )],
        replaces: true,
    })
}

/// IP forwarding for the masquerade: IPv4 always, IPv6 when a peer has
/// IPv6 prefixes.
fn forwarding_changes(config: &Config) -> Vec<Change> {
    if config.interface.masquerade.is_none() {
        return Vec::new();
    }
    let mut changes = vec![Change {
        key: "forwarding ipv4".into(),
        steps: vec![Step::Sysctl {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
        }],
        replaces: false,
    }];
    if masquerade_sources(config, Family::V6).is_none_or(|s| !s.is_empty()) {
        changes.push(Change {
            key: "forwarding ipv6".into(),
            steps: vec![Step::Sysctl {
                key: "net.ipv6.conf.all.forwarding".into(),
                value: "1".into(),
            }],
            replaces: false,
        });
    }
    changes
}

/// Every routing and firewall change the config asks for. `table` is the
/// full tunnel's table (see [`choose_table`]); without nft the full tunnel
/// goes without its nftables rules (`nft_available`), and a masquerade
/// cannot be had (applying it fails, naming nft).
pub fn changes(config: &Config, table: Option<u32>, nft_available: bool) -> Vec<Change> {
    let mut changes = route_changes(config);
    if let Some(table) = table {
        changes.extend(full_tunnel_changes(config, table));
    }
    let needs_nft = config.interface.masquerade.is_some();
    if needs_nft || nft_available {
        changes.extend(nft_change(config, table));
    }
    changes.extend(forwarding_changes(config));
    changes
}

/// A routing table number no route uses yet, from [`FIRST_TABLE`] on (as
/// wg-quick chooses).
pub fn choose_table(tools: &Tools) -> Result<u32> {
    for table in FIRST_TABLE..FIRST_TABLE + TABLES_TRIED {
        let mut used = false;
        for family in ["-4", "-6"] {
            let listing = Command::new(Tool::Ip, &format!("{family} route show table {table}"))
                .output(tools)
                .unwrap_or_default();
            used |= !listing.trim().is_empty();
        }
        if !used {
            return Ok(table);
        }
    }
    bail!(
        "no free routing table between {FIRST_TABLE} and {}; set interface.table",
        FIRST_TABLE + TABLES_TRIED - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const KEY_A: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const KEY_B: &str = "dOlgAO9RGig+q7mbX3mubqVQCXB+SSJQBmTHtswp1Dg=";

    fn config(interface_extra: &str, allowed_a: &str, allowed_b: &str) -> Config {
        let text = format!(
            "[interface]\nname = \"tgp7\"\naddresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\n\
             listen_port = 51900\nprivate_key_file = \"k\"\n{interface_extra}\n\
             [[peer]]\npublic_key = \"{KEY_A}\"\nallowed_ips = [{allowed_a}]\n\
             [[peer]]\npublic_key = \"{KEY_B}\"\nallowed_ips = [{allowed_b}]\n"
        );
        Config::from_toml_str(&text, Path::new("/etc/tgp")).unwrap()
    }

    fn applies(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .flat_map(|c| &c.steps)
            .map(|s| match s {
                Step::Run { apply, .. } => apply.display(),
                Step::Sysctl { key, value } => format!("sysctl {key}={value}"),
            })
            .collect()
    }

    #[test]
    fn a_route_per_prefix_outside_the_interface_subnet() {
        let c = config(
            "",
            "\"10.77.0.2/32\", \"10.1.0.0/16\", \"fd77::2/128\"",
            "\"10.2.3.4/32\", \"10.77.0.0/16\", \"2001:db8::/48\"",
        );
        assert_eq!(
            applies(&changes(&c, None, true)),
            vec![
                "ip -4 route add 10.1.0.0/16 dev tgp7",
                "ip -4 route add 10.2.3.4/32 dev tgp7",
                "ip -4 route add 10.77.0.0/16 dev tgp7",
                "ip -6 route add 2001:db8::/48 dev tgp7",
            ]
        );
        let routes = route_changes(&c);
        match &routes[0].steps[0] {
            Step::Run { undo, .. } => assert_eq!(
                undo.as_ref().unwrap().display(),
                "ip -4 route del 10.1.0.0/16 dev tgp7"
            ),
            other => panic!("{other:?}"),
        }
        assert!(full_tunnel_families(&c).is_empty());
    }

    #[test]
    fn table_off_installs_nothing_and_a_number_names_the_table() {
        let c = config("table = \"off\"", "\"10.1.0.0/16\"", "\"0.0.0.0/0\"");
        assert!(changes(&c, None, true).is_empty());
        let c = config("table = 1234", "\"10.1.0.0/16\"", "\"0.0.0.0/0\"");
        assert_eq!(
            applies(&changes(&c, None, true)),
            vec![
                "ip -4 route add 10.1.0.0/16 dev tgp7 table 1234",
                "ip -4 route add 0.0.0.0/0 dev tgp7 table 1234",
            ]
        );
    }

    #[test]
    fn full_tunnel_is_policy_routing_like_wg_quick() {
        let c = config("", "\"0.0.0.0/0\", \"::/0\"", "\"10.9.0.0/16\"");
        assert_eq!(full_tunnel_families(&c), vec![Family::V4, Family::V6]);
        let all = changes(&c, Some(51900), true);
        let text = applies(&all);
        for expected in [
            "ip -4 route add 10.9.0.0/16 dev tgp7",
            "ip -4 route add 0.0.0.0/0 dev tgp7 table 51900",
            "ip -4 rule add not fwmark 51900 table 51900",
            "ip -4 rule add table main suppress_prefixlength 0",
            "sysctl net.ipv4.conf.all.src_valid_mark=1",
            "ip -6 route add ::/0 dev tgp7 table 51900",
            "ip -6 rule add not fwmark 51900 table 51900",
            "ip -6 rule add table main suppress_prefixlength 0",
            "nft -f -",
        ] {
            assert!(
                text.iter().any(|t| t == expected),
                "{expected} in {text:#?}"
            );
        }
        let ruleset = nft_ruleset(&c, Some(51900)).unwrap();
        assert!(ruleset.starts_with("table inet tgp_tgp7\ndelete table inet tgp_tgp7\n"));
        assert!(ruleset.contains("meta l4proto udp meta mark 51900 ct mark set meta mark"));
        assert!(
            ruleset.contains("iifname != \"tgp7\" ip daddr 10.77.0.1 fib saddr type != local drop")
        );
        assert!(
            ruleset.contains("iifname != \"tgp7\" ip6 daddr fd77::1 fib saddr type != local drop")
        );
        assert!(!ruleset.contains("masquerade"));
        // Without nft the full tunnel still routes.
        assert!(!applies(&changes(&c, Some(51900), false))
            .iter()
            .any(|t| t.starts_with("nft")));
    }

    #[test]
    fn masquerade_nats_the_peers_sources_and_forwards() {
        let c = config(
            "masquerade = \"eth0\"",
            "\"10.77.0.2/32\", \"fd77::2/128\"",
            "\"10.77.0.3/32\", \"10.5.0.0/16\"",
        );
        let ruleset = nft_ruleset(&c, None).unwrap();
        assert!(
            ruleset.contains(
                "oifname \"eth0\" ip saddr { 10.77.0.2/32, 10.77.0.3/32, 10.5.0.0/16 } masquerade"
            ),
            "{ruleset}"
        );
        assert!(ruleset.contains("oifname \"eth0\" ip6 saddr { fd77::2/128 } masquerade"));
        assert!(!ruleset.contains("preraw"));
        let text = applies(&changes(&c, None, false));
        assert!(text.contains(&"sysctl net.ipv4.ip_forward=1".to_string()));
        assert!(text.contains(&"sysctl net.ipv6.conf.all.forwarding=1".to_string()));
        assert!(
            text.contains(&"nft -f -".to_string()),
            "needed even when nft looked absent"
        );
        // IPv4 only: no IPv6 forwarding.
        let c = config(
            "masquerade = \"eth0\"",
            "\"10.77.0.2/32\"",
            "\"10.77.0.3/32\"",
        );
        let text = applies(&changes(&c, None, true));
        assert!(!text.iter().any(|t| t.contains("ipv6")), "{text:?}");
        // A peer that may send from anywhere: no source match.
        let c = config("masquerade = \"eth0\"", "\"0.0.0.0/0\"", "\"10.77.0.3/32\"");
        let ruleset = nft_ruleset(&c, Some(51900)).unwrap();
        assert!(ruleset.contains("oifname \"eth0\" meta nfproto ipv4 masquerade"));
    }

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(nft_table_name("tgp0"), "tgp_tgp0");
        assert_eq!(nft_table_name("wg-home.1"), "tgp_wg_home_1");
    }
}
