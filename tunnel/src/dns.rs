//! The `dns` key: name servers and search domains while the tunnel is up,
//! set the way the host manages DNS, as a [`Change`] for
//! [`crate::host::HostChanges`] (undone on down).
//!
//! - systemd-resolved (`resolvectl` present and resolved running): the
//!   interface's link gets the servers and domains; a full tunnel also
//!   gets the `~.` routing domain and the default route, so every query
//!   goes through the tunnel. Undone by `resolvectl revert`.
//! - `resolvconf` (Debian's or openresolv): as wg-quick does,
//!   `resolvconf -a <interface> -m 0 -x` with `nameserver` and `search`
//!   lines on its input, with the interface-order prefix when
//!   `/etc/resolvconf/interface-order` has one. Undone by
//!   `resolvconf -d <interface> -f`.
//! - Neither: nothing is changed and a warning says so.

use crate::config::Config;
use crate::host::{Change, Command, Step, Tool, Tools};
use std::path::Path;

/// How the host manages DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// systemd-resolved, through `resolvectl`.
    Resolvectl,
    /// `resolvconf`; the interface name gets this prefix (from
    /// `/etc/resolvconf/interface-order`, e.g. `tun.`), often empty.
    Resolvconf {
        /// Prefix of the interface name resolvconf files it under.
        prefix: String,
    },
}

/// Directory systemd-resolved creates while it runs.
const RESOLVED_RUNTIME: &str = "/run/systemd/resolve";
/// resolvconf's list of interface name patterns, in priority order.
const INTERFACE_ORDER: &str = "/etc/resolvconf/interface-order";

impl Backend {
    /// What this host has, if anything: resolvectl while systemd-resolved
    /// runs, else resolvconf.
    pub fn detect(tools: &Tools) -> Option<Backend> {
        if tools.has(Tool::Resolvectl) && Path::new(RESOLVED_RUNTIME).is_dir() {
            return Some(Backend::Resolvectl);
        }
        if tools.has(Tool::Resolvconf) {
            let order = std::fs::read_to_string(INTERFACE_ORDER).unwrap_or_default();
            return Some(Backend::Resolvconf {
                prefix: interface_order_prefix(&order),
            });
        }
        None
    }
}

/// The prefix wg-quick derives from resolvconf's interface-order file: the
/// first pattern of the form `name*` gives `name.`.
pub fn interface_order_prefix(order: &str) -> String {
    order
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_suffix('*'))
        .find(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(|name| format!("{name}."))
        .unwrap_or_default()
}

/// The DNS change for `config`, or `None` when it sets no DNS. With no
/// backend it is `None` too; [`unavailable_warning`] says why.
pub fn change(config: &Config, backend: Option<&Backend>, full_tunnel: bool) -> Option<Change> {
    let dns = &config.interface.dns;
    if dns.is_empty() {
        return None;
    }
    let interface = &config.interface.name;
    let servers: Vec<String> = dns.servers.iter().map(ToString::to_string).collect();
    let steps = match backend? {
        Backend::Resolvectl => {
            let revert = Command::new(Tool::Resolvectl, &format!("revert {interface}"));
            let mut domains = dns.search.clone();
            if full_tunnel {
                domains.push("~.".into());
            }
            let mut steps = Vec::new();
            if !servers.is_empty() {
                steps.push(Step::Run {
                    apply: Command::new(
                        Tool::Resolvectl,
                        &format!("dns {interface} {}", servers.join(" ")),
                    ),
                    undo: Some(revert.clone()),
                });
            }
            if !domains.is_empty() {
                steps.push(Step::Run {
                    apply: Command::new(
                        Tool::Resolvectl,
                        &format!("domain {interface} {}", domains.join(" ")),
                    ),
                    undo: Some(revert.clone()),
                });
            }
            if full_tunnel {
                steps.push(Step::Run {
                    apply: Command::new(
                        Tool::Resolvectl,
                        &format!("default-route {interface} true"),
                    ),
                    undo: Some(revert),
                });
            }
            steps
        }
        Backend::Resolvconf { prefix } => {
            let mut input: String = servers
                .iter()
                .map(|s| format!("nameserver {s}\n"))
                .collect();
            if !dns.search.is_empty() {
                input.push_str(&format!("search {}\n", dns.search.join(" ")));
            }
            vec![Step::Run {
                apply: Command::new(Tool::Resolvconf, &format!("-a {prefix}{interface} -m 0 -x"))
                    .with_stdin(input),
                undo: Some(Command::new(
                    Tool::Resolvconf,
                    &format!("-d {prefix}{interface} -f"),
                )),
            }]
        }
    };
    Some(Change {
        key: "dns".into(),
        steps,
        replaces: true,
    })
}

/// The warning for a config with `dns` on a host without a DNS manager.
pub fn unavailable_warning(config: &Config) -> Option<String> {
    (!config.interface.dns.is_empty()).then(|| {
        "interface.dns is set, but neither resolvectl (with systemd-resolved running) nor \
         resolvconf is installed: DNS is left as it is; install resolvconf or \
         systemd-resolved to have tgp set it"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dns: &str) -> Config {
        let text = format!(
            "[interface]\nname = \"tgp7\"\naddresses = [\"10.77.0.2/24\"]\n\
             private_key_file = \"k\"\ndns = [{dns}]\n"
        );
        Config::from_toml_str(&text, Path::new("/etc/tgp")).unwrap()
    }

    fn commands(change: &Change) -> Vec<(String, Option<String>, Option<String>)> {
        change
            .steps
            .iter()
            .map(|s| match s {
                Step::Run { apply, undo } => (
                    apply.display(),
                    apply.stdin.clone(),
                    undo.as_ref().map(Command::display),
                ),
                Step::Sysctl { .. } => panic!("no sysctl for DNS"),
            })
            .collect()
    }

    #[test]
    fn resolvconf_gets_what_wg_quick_gives_it() {
        let c = config("\"10.77.0.1\", \"fd77::1\", \"corp.example\", \"lan\"");
        let backend = Backend::Resolvconf {
            prefix: "tun.".into(),
        };
        let change = change(&c, Some(&backend), false).unwrap();
        assert!(change.replaces);
        assert_eq!(
            commands(&change),
            vec![(
                "resolvconf -a tun.tgp7 -m 0 -x".to_string(),
                Some("nameserver 10.77.0.1\nnameserver fd77::1\nsearch corp.example lan\n".into()),
                Some("resolvconf -d tun.tgp7 -f".to_string()),
            )]
        );
    }

    #[test]
    fn resolvectl_sets_the_link_and_a_full_tunnel_takes_every_query() {
        let c = config("\"10.77.0.1\", \"corp.example\"");
        let split = change(&c, Some(&Backend::Resolvectl), false).unwrap();
        let names: Vec<String> = commands(&split).into_iter().map(|c| c.0).collect();
        assert_eq!(
            names,
            vec![
                "resolvectl dns tgp7 10.77.0.1",
                "resolvectl domain tgp7 corp.example"
            ]
        );
        let full = change(&c, Some(&Backend::Resolvectl), true).unwrap();
        let all = commands(&full);
        assert_eq!(all[1].0, "resolvectl domain tgp7 corp.example ~.");
        assert_eq!(all[2].0, "resolvectl default-route tgp7 true");
        assert!(all
            .iter()
            .all(|c| c.2.as_deref() == Some("resolvectl revert tgp7")));
    }

    #[test]
    fn no_dns_or_no_backend_changes_nothing() {
        let c = Config::from_toml_str(
            "[interface]\naddresses = [\"10.77.0.2/24\"]\nprivate_key_file = \"k\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert!(change(&c, Some(&Backend::Resolvectl), true).is_none());
        assert!(unavailable_warning(&c).is_none());
        let c = config("\"10.77.0.1\"");
        assert!(change(&c, None, false).is_none());
        assert!(unavailable_warning(&c)
            .unwrap()
            .contains("neither resolvectl"));
    }

    #[test]
    fn interface_order_prefix_is_the_first_wildcard_name() {
        assert_eq!(interface_order_prefix(""), "");
        assert_eq!(
            interface_order_prefix("# comment\nlo.inet*\nlo.dnsmasq\ntun*\ntap*\n"),
            "tun."
        );
        assert_eq!(interface_order_prefix("eth*\n"), "eth.");
    }

    proptest::proptest! {
        /// Any interface-order file gives a prefix that is a name and a dot,
        /// or nothing.
        #[test]
        fn interface_order_never_panics(order in "\\PC{0,200}") {
            let prefix = interface_order_prefix(&order);
            proptest::prop_assert!(
                prefix.is_empty()
                    || (prefix.ends_with('.')
                        && prefix[..prefix.len() - 1]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-'))
            );
        }
    }
}
