//! Live reload (`tgp reload`, SIGHUP): re-reads the config file and
//! applies what changed while the tunnel runs — peers added and removed,
//! allowed IPs, class rules and TCP modes, routes, the full tunnel, DNS,
//! the masquerade.
//!
//! A peer whose public key and `endpoint` are unchanged keeps its session
//! and its split connections, whatever else of it changed; a peer whose
//! `endpoint` changed is replaced (a new session to the new address).
//! Nothing changes when the new file is invalid, when it changes what only
//! a restart can apply ([`restart_only_changes`]), or when a host change
//! fails (the host changes already made are undone): the running config
//! stays as it was and the answer says why.
//!
//! Peer ids are positions: removed peers leave (later ones move up), added
//! peers come last, so the running config's peer order can differ from
//! the file's.

use crate::config::{Config, Interface, Peer};
use crate::split::SplitMode;
use crate::system::HostSetup;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use tgp_adapters::AllowedIps;
use tgp_proto::endpoint::{Endpoint, PeerId, PeerSettings};
use tgp_proto::Timestamp;

/// What a reload changes.
pub struct Targets<'a> {
    /// The time now.
    pub now: Timestamp,
    /// This daemon's public key (a peer may not have it).
    pub own_public_key: [u8; 32],
    /// The running config; replaced by the new one.
    pub config: &'a mut Config,
    /// The endpoint: peers added and removed.
    pub endpoint: &'a mut Endpoint,
    /// Split mode: an engine per peer.
    pub split: &'a mut SplitMode,
    /// The routing table over the allowed IPs; rebuilt.
    pub allowed_ips: &'a mut AllowedIps,
    /// Host changes (routes, DNS, ...), when the daemon makes them.
    pub host: Option<&'a mut HostSetup>,
}

/// How the peer list changes.
#[derive(Debug)]
pub struct Plan {
    /// Running peer ids to remove, highest first.
    pub remove: Vec<PeerId>,
    /// Indices in the new file's peers to add, in file order.
    pub add: Vec<usize>,
    /// Kept peers whose allowed IPs or class rules changed.
    pub changed: usize,
    /// Kept peers that did not change at all.
    pub unchanged: usize,
    /// Peers replaced because their endpoint changed (counted in `remove`
    /// and `add` too).
    pub replaced: usize,
    /// The config to run: the new file's, its peers in the endpoint's
    /// order after the change.
    pub running: Config,
}

/// The interface settings a reload cannot apply, by key.
pub fn restart_only_changes(old: &Interface, new: &Interface) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(old.name != new.name, "name");
    check(old.addresses != new.addresses, "addresses");
    check(old.mtu != new.mtu, "mtu");
    check(old.listen_port != new.listen_port, "listen_port");
    check(
        old.private_key_file != new.private_key_file,
        "private_key_file",
    );
    check(old.rate_ceiling != new.rate_ceiling, "rate_ceiling");
    check(old.log_level != new.log_level, "log_level");
    check(
        old.split_max_streams != new.split_max_streams,
        "split_max_streams",
    );
    check(
        old.split_window_cap != new.split_window_cap,
        "split_window_cap",
    );
    check(old.metrics_listen != new.metrics_listen, "metrics_listen");
    keys
}

/// Works out the change from `running` to `new`, or why it cannot be
/// made live.
pub fn plan(running: &Config, new: Config, own_public_key: &[u8; 32]) -> Result<Plan> {
    let refused = restart_only_changes(&running.interface, &new.interface);
    if !refused.is_empty() {
        let keys: Vec<String> = refused.iter().map(|k| format!("interface.{k}")).collect();
        bail!(
            "{} changed; only a restart applies that (tgp down, then tgp up)",
            keys.join(", ")
        );
    }
    if let Some(index) = new
        .peers
        .iter()
        .position(|p| p.public_key.as_bytes() == own_public_key)
    {
        bail!("peer[{index}].public_key is this interface's own public key");
    }
    let mut remove = Vec::new();
    let mut kept: Vec<(PeerId, usize)> = Vec::new();
    let (mut changed, mut unchanged, mut replaced) = (0, 0, 0);
    for (id, old) in running.peers.iter().enumerate() {
        match new
            .peers
            .iter()
            .position(|p| p.public_key == old.public_key)
        {
            Some(index) if new.peers[index].endpoint == old.endpoint => {
                kept.push((id, index));
                if same_peer(old, &new.peers[index]) {
                    unchanged += 1;
                } else {
                    changed += 1;
                }
            }
            Some(_) => {
                replaced += 1;
                remove.push(id);
            }
            None => remove.push(id),
        }
    }
    remove.reverse();
    let add: Vec<usize> = (0..new.peers.len())
        .filter(|index| !kept.iter().any(|(_, k)| k == index))
        .collect();
    let peers: Vec<Peer> = kept
        .iter()
        .map(|&(_, index)| index)
        .chain(add.iter().copied())
        .map(|index| new.peers[index].clone())
        .collect();
    let running = Config {
        interface: new.interface,
        peers,
        source: new.source.or_else(|| running.source.clone()),
    };
    Ok(Plan {
        remove,
        add,
        changed,
        unchanged,
        replaced,
        running,
    })
}

fn same_peer(a: &Peer, b: &Peer) -> bool {
    a == b
}

/// Re-reads the running config's file and applies it. Returns the answer
/// for the user; on an error nothing was changed.
pub fn reload(targets: Targets<'_>) -> Result<String> {
    let path = targets
        .config
        .source
        .clone()
        .context("the tunnel was not started from a config file")?;
    if let Err(error) = std::fs::File::open(&path) {
        if error.kind() == std::io::ErrorKind::PermissionDenied {
            bail!(
                "cannot read {}: the daemon no longer runs as root; make the config \
                 readable by its user (it holds no secret: chmod 644, and let the \
                 user enter its directory), or start tgp up with --keep-root",
                path.display()
            );
        }
    }
    let new = Config::load(&path)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("{} is not a valid config", path.display()))?;
    let plan = plan(targets.config, new, &targets.own_public_key)?;
    let host_summary = match targets.host {
        Some(host) => Some(
            host.update(&plan.running)
                .context("changing the host's network set-up")?,
        ),
        None => None,
    };
    // From here on nothing fails.
    for &peer in &plan.remove {
        targets.endpoint.remove_peer(peer);
        targets.split.remove_peer(peer);
    }
    let added_from = plan.running.peers.len() - plan.add.len();
    for peer in &plan.running.peers[added_from..] {
        let settings = PeerSettings {
            identity: peer.public_key,
            endpoint: peer.endpoint,
        };
        // The plan refused our own key, and the config duplicates.
        if let Err(error) = targets.endpoint.add_peer(targets.now, settings) {
            tracing::error!(%error, "adding a peer on reload");
        }
        targets.split.add_peer(targets.now, &plan.running);
    }
    *targets.allowed_ips = plan.running.allowed_ips();
    *targets.config = plan.running;

    let mut answer = format!(
        "tgp: reloaded {}: peers unchanged {}, changed {}, added {}, removed {}",
        path.display(),
        plan.unchanged,
        plan.changed,
        plan.add.len() - plan.replaced,
        plan.remove.len() - plan.replaced,
    );
    if plan.replaced > 0 {
        let _ = write!(answer, ", replaced {} (endpoint changed)", plan.replaced);
    }
    if let Some(summary) = host_summary {
        for (sign, keys) in [
            ('+', &summary.added),
            ('~', &summary.replaced),
            ('-', &summary.removed),
        ] {
            for key in keys {
                let _ = write!(answer, "\n  {sign} {key}");
            }
        }
    }
    answer.push('\n');
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn key(n: u8) -> String {
        crate::keys::public_key_base64(&tgp_proto::crypto::SigningKey::from_bytes(&[n; 32]))
    }

    fn own_key() -> [u8; 32] {
        tgp_proto::crypto::SigningKey::from_bytes(&[9; 32])
            .verifying_key()
            .to_bytes()
    }

    fn config(interface_extra: &str, peers: &[(String, &str, &str)]) -> Config {
        let mut text = format!(
            "[interface]\naddresses = [\"10.77.0.1/24\"]\nlisten_port = 51900\n\
             private_key_file = \"k\"\n{interface_extra}\n"
        );
        for (key, allowed, extra) in peers {
            text.push_str(&format!(
                "[[peer]]\npublic_key = \"{key}\"\nallowed_ips = [{allowed}]\n{extra}\n"
            ));
        }
        Config::from_toml_str(&text, Path::new("/")).unwrap()
    }

    #[test]
    fn unchanged_config_changes_nothing() {
        let c = config(
            "",
            &[
                (key(1), "\"10.77.0.2/32\"", ""),
                (key(2), "\"10.77.0.3/32\"", ""),
            ],
        );
        let p = plan(&c, c.clone(), &own_key()).unwrap();
        assert!(p.remove.is_empty() && p.add.is_empty());
        assert_eq!((p.unchanged, p.changed, p.replaced), (2, 0, 0));
        assert_eq!(p.running, c);
    }

    #[test]
    fn peers_added_removed_and_changed_keep_the_endpoints_order() {
        let old = config(
            "",
            &[
                (key(1), "\"10.77.0.2/32\"", ""),
                (key(2), "\"10.77.0.3/32\"", ""),
                (key(3), "\"10.77.0.4/32\"", ""),
            ],
        );
        // The file now lists a new peer first, drops B, and widens C.
        let new = config(
            "",
            &[
                (key(4), "\"10.77.0.5/32\"", ""),
                (key(3), "\"10.77.0.4/32\", \"10.9.0.0/16\"", ""),
                (key(1), "\"10.77.0.2/32\"", ""),
            ],
        );
        let p = plan(&old, new, &own_key()).unwrap();
        assert_eq!(p.remove, vec![1], "B goes");
        assert_eq!(p.add, vec![0], "D comes");
        assert_eq!((p.unchanged, p.changed, p.replaced), (1, 1, 0));
        let keys: Vec<String> = p
            .running
            .peers
            .iter()
            .map(|peer| crate::keys::encode_key(peer.public_key.as_bytes()))
            .collect();
        // After removing id 1 the endpoint holds [A, C]; D is appended.
        assert_eq!(keys, vec![key(1), key(3), key(4)]);
        assert_eq!(p.running.peers[1].allowed_ips.len(), 2);
        let table = p.running.allowed_ips();
        assert_eq!(table.lookup("10.9.1.1".parse().unwrap()), Some(1));
        assert_eq!(table.lookup("10.77.0.5".parse().unwrap()), Some(2));
    }

    #[test]
    fn a_new_endpoint_replaces_the_peer() {
        let old = config(
            "",
            &[(key(1), "\"10.77.0.2/32\"", "endpoint = \"192.0.2.1:1\"")],
        );
        let new = config(
            "",
            &[(key(1), "\"10.77.0.2/32\"", "endpoint = \"192.0.2.2:1\"")],
        );
        let p = plan(&old, new, &own_key()).unwrap();
        assert_eq!(
            (p.remove.clone(), p.add.clone(), p.replaced),
            (vec![0], vec![0], 1)
        );
    }

    #[test]
    fn class_rules_and_host_settings_apply_live() {
        let old = config("", &[(key(1), "\"10.77.0.2/32\"", "")]);
        let new = config(
            "tcp_mode = \"segment\"\ndns = [\"10.77.0.1\"]\nmasquerade = \"eth0\"\ntable = \"off\"",
            &[(
                key(1),
                "\"10.77.0.2/32\"",
                "[[peer.class]]\nprotocol = \"udp\"\nports = [53]\nreliable = true",
            )],
        );
        let p = plan(&old, new, &own_key()).unwrap();
        assert_eq!((p.unchanged, p.changed), (0, 1));
        assert_eq!(p.running.peers[0].class_rules.rules.len(), 1);
        assert_eq!(p.running.interface.masquerade.as_deref(), Some("eth0"));
    }

    #[test]
    fn restart_only_settings_and_our_own_key_are_refused() {
        let old = config("", &[(key(1), "\"10.77.0.2/32\"", "")]);
        let new = config(
            "mtu = 1300\nrate_ceiling = \"5mbit\"",
            &[(key(1), "\"10.77.0.2/32\"", "")],
        );
        let error = plan(&old, new, &own_key()).unwrap_err().to_string();
        assert!(
            error.starts_with("interface.mtu, interface.rate_ceiling changed; only a restart"),
            "{error}"
        );
        let new = config(
            "",
            &[
                (key(1), "\"10.77.0.2/32\"", ""),
                (key(9), "\"10.77.0.9/32\"", ""),
            ],
        );
        let error = plan(&old, new, &own_key()).unwrap_err().to_string();
        assert_eq!(
            error,
            "peer[1].public_key is this interface's own public key"
        );
    }
}
