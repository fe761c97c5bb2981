//! The daemon's host set-up in one place: on `up` it undoes what a crashed
//! daemon left for the same interface, then applies what the config asks
//! ([`crate::routes`]: routes, the full tunnel, nftables, forwarding;
//! [`crate::dns`]); on reload it applies the difference; dropped, it undoes
//! everything.

use crate::config::Config;
use crate::host::{self, Change, HostChanges, Tool, Tools, UpdateSummary};
use crate::{dns, routes};
use anyhow::{Context, Result};
use std::path::Path;
use tracing::{info, warn};

/// What the daemon changed on the host, undone when dropped.
pub struct HostSetup {
    tools: Tools,
    dns_backend: Option<dns::Backend>,
    changes: HostChanges,
}

impl HostSetup {
    /// Cleans up after a crashed daemon of this interface and applies what
    /// `config` asks, with the system's tools and state directory.
    pub fn up(config: &Config) -> Result<HostSetup> {
        HostSetup::up_with(Tools::system(), &state_directory(), config)
    }

    /// [`HostSetup::up`] with other tools and another state directory.
    pub fn up_with(tools: Tools, directory: &Path, config: &Config) -> Result<HostSetup> {
        let interface = &config.interface.name;
        if let Some(count) = host::cleanup_stale(&tools, directory, interface)? {
            info!(
                interface,
                changes = count,
                "cleaned up after an earlier tgp"
            );
        }
        let dns_backend = dns::Backend::detect(&tools);
        let changes = HostChanges::new(tools.clone(), directory, interface)?;
        let mut setup = HostSetup {
            tools,
            dns_backend,
            changes,
        };
        setup.update(config)?;
        Ok(setup)
    }

    /// The socket mark of the full tunnel, when there is one.
    pub fn fwmark(&self) -> Option<u32> {
        self.changes.table()
    }

    /// Makes the host match `config`; on failure what this call did is
    /// undone and the earlier state stays.
    pub fn update(&mut self, config: &Config) -> Result<UpdateSummary> {
        let families = routes::full_tunnel_families(config);
        let chose_table = if !families.is_empty() && self.changes.table().is_none() {
            let table = routes::choose_table(&self.tools)?;
            info!(table, "full tunnel: routing table and socket mark");
            self.changes.set_table(Some(table))?;
            true
        } else {
            false
        };
        let table = if families.is_empty() {
            None
        } else {
            self.changes.table()
        };
        let wanted = self.wanted(config, table);
        match self.changes.update(&wanted) {
            Ok(summary) => {
                if table.is_none() && self.changes.table().is_some() {
                    self.changes.set_table(None)?;
                }
                Ok(summary)
            }
            Err(error) => {
                if chose_table {
                    self.changes.set_table(None).ok();
                }
                Err(error)
            }
        }
    }

    fn wanted(&self, config: &Config, table: Option<u32>) -> Vec<Change> {
        let nft = self.tools.has(Tool::Nft);
        if table.is_some() && !nft {
            warn!("full tunnel without nft: no reply marking or anti-spoofing rules (install nftables)");
        }
        let mut wanted = routes::changes(config, table, nft);
        match dns::change(config, self.dns_backend.as_ref(), table.is_some()) {
            Some(change) => wanted.push(change),
            None => {
                if let Some(warning) = dns::unavailable_warning(config) {
                    if self.dns_backend.is_none() {
                        warn!("{warning}");
                    }
                }
            }
        }
        wanted
    }

    /// The keys of the changes in force (for status and logs).
    pub fn keys(&self) -> Vec<&str> {
        self.changes.keys()
    }

    /// Before the daemon gives up root: the state file stays open for
    /// writing (reloads still record their changes), and the changes are
    /// left in place when this is dropped, for the root monitor to undo
    /// ([`crate::monitor`]; an unprivileged daemon could not undo all).
    pub fn leave_to_monitor(&mut self) -> Result<()> {
        self.changes.leave_to_monitor()
    }

    /// Undoes everything now (also done when dropped).
    pub fn down(mut self) {
        self.changes.undo_everything();
    }
}

/// Sets the underlay socket's mark (`SO_MARK`) for the full tunnel's
/// policy routing; `None` clears it.
pub fn mark_socket(socket: &tokio::net::UdpSocket, mark: Option<u32>) -> Result<()> {
    let socket = socket2::SockRef::from(socket);
    let wanted = mark.unwrap_or(0);
    if socket.mark().unwrap_or(0) == wanted {
        return Ok(());
    }
    socket.set_mark(wanted).with_context(|| {
        format!("marking the underlay socket with fwmark {wanted} (needs CAP_NET_ADMIN)")
    })
}

/// Where the host state files are: the control sockets' directory of this
/// network namespace (two tunnels with one interface name in two
/// namespaces do not share a state file).
pub fn state_directory() -> std::path::PathBuf {
    crate::control::namespace_directory()
}

/// `tgp down` for a daemon that is gone: undoes what it left behind.
/// Returns a line for the user.
pub fn cleanup_after_dead_daemon(interface: &str) -> Result<String> {
    let directory = state_directory();
    match host::cleanup_stale(&Tools::system(), &directory, interface)
        .with_context(|| format!("cleaning up after the tgp daemon of {interface}"))?
    {
        Some(count) => Ok(format!(
            "tgp: the daemon of {interface} is not running; undid the {count} host changes it left\n"
        )),
        None => Ok(format!(
            "tgp: the daemon of {interface} is not running, and it left nothing behind\n"
        )),
    }
}

/// Interfaces whose daemons left host changes behind.
pub fn interfaces_left_behind() -> Vec<String> {
    host::stale_interfaces(&state_directory())
}
