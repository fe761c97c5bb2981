//! The configuration file: TOML, read in two steps.
//!
//! 1. serde maps the text onto raw structs that deny unknown keys; errors
//!    are reported with the full key path (via `serde_path_to_error`) and
//!    the line.
//! 2. Validation turns raw strings into typed values (prefixes, durations,
//!    rates, keys, socket addresses) and collects every problem, each
//!    naming its key, e.g. `peer[0].allowed_ips[1]: "10.0.0.300/32" is not
//!    an IP prefix`.
//!
//! ```toml
//! [interface]
//! name = "tgp0"                          # default "tgp0"
//! addresses = ["10.77.0.1/24", "fd77::1/64"]
//! mtu = 1380                             # default 1380
//! listen_port = 51900                    # optional: a client may omit it
//! private_key_file = "/etc/tgp/private.key"   # relative to this file
//! rate_ceiling = "20mbit"
//!
//! [[peer]]
//! public_key = "base64 of 32 bytes"
//! endpoint = "203.0.113.7:51900"         # optional: a server learns it
//! allowed_ips = ["10.77.0.2/32", "fd77::2/128"]
//!
//! [[peer.class]]                         # optional, first match wins
//! protocol = "udp"                       # "tcp", "udp" or "icmp"
//! ports = [3478, "5000-5100"]            # either side; omit for all ports
//! deadline = "50ms"                      # or: reliable = true
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use tgp_adapters::{AllowedIps, ClassRule, ClassRules, IpNet, PortRange, RuleProtocol};
use tgp_proto::DeliveryClass;

use crate::keys::decode_public_key;
use crate::units::{parse_duration, parse_rate, BitsPerSecond};

/// Interface name used when the config gives none.
pub const DEFAULT_INTERFACE_NAME: &str = "tgp0";
/// Tunnel MTU used when the config gives none. Provisional: leaves room for
/// outer IPv6 + UDP (48 bytes) and the TGP header and AEAD tag on a
/// 1500-byte path; revisit once the wire format is final.
pub const DEFAULT_MTU: u16 = 1380;
/// Smallest MTU accepted (the IPv4 minimum datagram size every host takes).
pub const MIN_MTU_IPV4: u16 = 576;
/// Smallest MTU accepted when the interface has an IPv6 address (RFC 8200).
pub const MIN_MTU_IPV6: u16 = 1280;
/// Longest deadline a class rule may give.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);
/// Linux IFNAMSIZ − 1.
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// One problem in a config file, naming the key it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Full key path, like `peer[0].allowed_ips[1]`; empty for TOML syntax
    /// errors, which carry their position in `message`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// 1-based line of the offending text, when known.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.key, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Every problem found in a config file (at least one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One error on one line; several as a count and an indented list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [only] => write!(f, "{only}"),
            all => {
                write!(f, "{} problems:", all.len())?;
                for error in all {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
        }
    }
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The local side.
    pub interface: Interface,
    /// The peers, in file order (their index is the [`tgp_adapters::PeerIndex`]).
    pub peers: Vec<Peer>,
}

/// The `[interface]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// TUN device name.
    pub name: String,
    /// Addresses with their on-link prefix, e.g. `10.77.0.1/24`.
    pub addresses: Vec<IpNet>,
    /// TUN MTU (inner packet size limit).
    pub mtu: u16,
    /// UDP port to listen on; `None` for a random one (clients).
    pub listen_port: Option<u16>,
    /// The private key file, resolved against the config file's directory.
    pub private_key_file: PathBuf,
    /// Never send faster than this.
    pub rate_ceiling: BitsPerSecond,
}

/// One `[[peer]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's Ed25519 public key.
    pub public_key: VerifyingKey,
    /// Where to reach it; `None` until it contacts us.
    pub endpoint: Option<SocketAddr>,
    /// Inner prefixes routed to this peer and accepted from it.
    pub allowed_ips: Vec<IpNet>,
    /// Delivery classes for its traffic.
    pub class_rules: ClassRules,
}

impl Config {
    /// Read and validate a config file. Relative paths inside it are
    /// resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml_str(&text, base).map_err(LoadError::Invalid)
    }

    /// Validate config text; relative paths are resolved against `base_dir`.
    /// Touches no files.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let raw = deserialize_raw(text).map_err(|e| ConfigErrors(vec![e]))?;
        let mut v = Validator::default();
        let config = v.config(raw, base_dir);
        match config {
            Some(config) if v.errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors(v.errors)),
        }
    }

    /// The routing table over all peers' allowed IPs.
    pub fn allowed_ips(&self) -> AllowedIps {
        let mut table = AllowedIps::new();
        for (index, peer) in self.peers.iter().enumerate() {
            for prefix in &peer.allowed_ips {
                table.insert(*prefix, index);
            }
        }
        table
    }
}

/// Why [`Config::load`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The contents are not a valid config.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

// ---------------------------------------------------------------------------
// Step 1: TOML onto raw structs.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interface: RawInterface,
    #[serde(default)]
    peer: Vec<RawPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Option<String>,
    addresses: Vec<String>,
    mtu: Option<u16>,
    listen_port: Option<u16>,
    private_key_file: String,
    rate_ceiling: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    public_key: String,
    endpoint: Option<String>,
    allowed_ips: Vec<String>,
    #[serde(default)]
    class: Vec<RawClassRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassRule {
    protocol: String,
    #[serde(default)]
    ports: Vec<toml::Value>,
    deadline: Option<String>,
    reliable: Option<bool>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// Deserialize, turning serde's messages into ones that name the full key.
fn deserialize_raw(text: &str) -> Result<RawConfig, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError {
        key: String::new(),
        message: format!("not valid TOML: {}", e.message()),
        line: e.span().map(|s| line_of(text, s.start)),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|s| line_of(text, s.start));
        let message = inner.message().to_owned();
        let (key, message) = explain_serde_error(&path, &message);
        ConfigError { key, message, line }
    })
}

/// serde reports "missing field `x`" at the parent table and "unknown field
/// `y`, expected ..." at the key itself; say both in the file's terms.
fn explain_serde_error(path: &str, message: &str) -> (String, String) {
    let at = if path == "." { "" } else { path };
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let key = if at.is_empty() {
            field.to_owned()
        } else {
            format!("{at}.{field}")
        };
        return (key, "missing required key".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let message = match rest.split_once("`, ") {
            Some((_field, expected)) => format!("unknown key; {expected}"),
            None => "unknown key".to_owned(),
        };
        return (at.to_owned(), message);
    }
    (at.to_owned(), message.to_owned())
}

// ---------------------------------------------------------------------------
// Step 2: validation.

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
            line: None,
        });
    }

    fn config(&mut self, raw: RawConfig, base_dir: &Path) -> Option<Config> {
        let interface = self.interface(raw.interface, base_dir);
        let mut peers = Vec::new();
        let mut seen_keys: HashMap<[u8; 32], usize> = HashMap::new();
        let mut seen_prefixes: HashMap<IpNet, String> = HashMap::new();
        for (index, raw_peer) in raw.peer.into_iter().enumerate() {
            let key = format!("peer[{index}]");
            if let Some(peer) = self.peer(&key, raw_peer) {
                if let Some(first) = seen_keys.insert(peer.public_key.to_bytes(), index) {
                    self.error(
                        format!("{key}.public_key"),
                        format!("the same key as peer[{first}]; each peer must be listed once"),
                    );
                }
                for (i, prefix) in peer.allowed_ips.iter().enumerate() {
                    let here = format!("{key}.allowed_ips[{i}]");
                    if let Some(earlier) = seen_prefixes.insert(prefix.trunc(), here.clone()) {
                        self.error(
                            here,
                            format!("{prefix} is already given at {earlier}; a prefix routes to one peer"),
                        );
                    }
                }
                peers.push(peer);
            }
        }
        Some(Config {
            interface: interface?,
            peers,
        })
    }

    fn interface(&mut self, raw: RawInterface, base_dir: &Path) -> Option<Interface> {
        let errors_before = self.errors.len();
        let name = raw
            .name
            .unwrap_or_else(|| DEFAULT_INTERFACE_NAME.to_owned());
        if name.is_empty()
            || name.len() > MAX_INTERFACE_NAME_LEN
            || name == "."
            || name == ".."
            || name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            self.error(
                "interface.name",
                format!("{name:?} is not a usable interface name (1-15 characters, no '/', ':' or spaces)"),
            );
        }

        let mut addresses = Vec::new();
        if raw.addresses.is_empty() {
            self.error(
                "interface.addresses",
                "needs at least one address, like \"10.77.0.1/24\"",
            );
        }
        for (i, text) in raw.addresses.iter().enumerate() {
            match text.parse::<IpNet>() {
                Ok(net) => addresses.push(net),
                Err(_) => self.error(
                    format!("interface.addresses[{i}]"),
                    format!("{text:?} is not an address with prefix length, like \"10.77.0.1/24\" or \"fd77::1/64\""),
                ),
            }
        }

        let mtu = raw.mtu.unwrap_or(DEFAULT_MTU);
        let has_v6 = addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
        let min_mtu = if has_v6 { MIN_MTU_IPV6 } else { MIN_MTU_IPV4 };
        if mtu < min_mtu {
            let why = if has_v6 { " (IPv6 needs 1280)" } else { "" };
            self.error(
                "interface.mtu",
                format!("{mtu} is below the minimum of {min_mtu}{why}"),
            );
        }

        if raw.listen_port == Some(0) {
            self.error(
                "interface.listen_port",
                "0 is not a port; leave listen_port out to use a random port",
            );
        }

        if raw.private_key_file.trim().is_empty() {
            self.error("interface.private_key_file", "is empty");
        }
        let private_key_file = base_dir.join(&raw.private_key_file);

        let rate_ceiling = match parse_rate(&raw.rate_ceiling) {
            Ok(rate) => Some(rate),
            Err(message) => {
                self.error("interface.rate_ceiling", message);
                None
            }
        };

        (self.errors.len() == errors_before).then(|| Interface {
            name,
            addresses,
            mtu,
            listen_port: raw.listen_port,
            private_key_file,
            rate_ceiling: rate_ceiling.unwrap_or(BitsPerSecond(0)),
        })
    }

    fn peer(&mut self, key: &str, raw: RawPeer) -> Option<Peer> {
        let errors_before = self.errors.len();
        let public_key = match decode_public_key(&raw.public_key) {
            Ok(k) => Some(k),
            Err(e) => {
                self.error(
                    format!("{key}.public_key"),
                    format!("{:?} {e}", raw.public_key),
                );
                None
            }
        };

        let endpoint = raw.endpoint.as_ref().and_then(|text| match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    format!("{key}.endpoint"),
                    format!("{text:?} is not an IP address and port, like \"203.0.113.7:51900\" or \"[2001:db8::7]:51900\" (host names are not supported yet)"),
                );
                None
            }
        });

        let mut allowed_ips = Vec::new();
        if raw.allowed_ips.is_empty() {
            self.error(
                format!("{key}.allowed_ips"),
                "is empty; list the inner addresses this peer may use, like \"10.77.0.2/32\"",
            );
        }
        for (i, text) in raw.allowed_ips.iter().enumerate() {
            match text.parse::<IpNet>() {
                Ok(net) => allowed_ips.push(net),
                Err(_) => self.error(
                    format!("{key}.allowed_ips[{i}]"),
                    format!(
                        "{text:?} is not an IP prefix (like \"10.77.0.2/32\" or \"fd77::/64\")"
                    ),
                ),
            }
        }

        let mut rules = Vec::new();
        for (i, raw_rule) in raw.class.into_iter().enumerate() {
            if let Some(rule) = self.class_rule(&format!("{key}.class[{i}]"), raw_rule) {
                rules.push(rule);
            }
        }

        let public_key = public_key?;
        (self.errors.len() == errors_before).then(|| Peer {
            public_key,
            endpoint,
            allowed_ips,
            class_rules: ClassRules::new(rules),
        })
    }

    fn class_rule(&mut self, key: &str, raw: RawClassRule) -> Option<ClassRule> {
        let errors_before = self.errors.len();
        let protocol = match raw.protocol.parse::<RuleProtocol>() {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(format!("{key}.protocol"), e.to_string());
                None
            }
        };
        let mut ports = Vec::new();
        if protocol == Some(RuleProtocol::Icmp) && !raw.ports.is_empty() {
            self.error(format!("{key}.ports"), "ICMP has no ports; remove them");
        }
        for (i, value) in raw.ports.iter().enumerate() {
            let here = format!("{key}.ports[{i}]");
            let parsed = match value {
                toml::Value::Integer(n) => u16::try_from(*n).ok().map(PortRange::single),
                toml::Value::String(s) => s.parse::<PortRange>().ok(),
                _ => None,
            };
            match parsed {
                Some(range) => ports.push(range),
                None => self.error(
                    here,
                    format!("{value} is not a port (0-65535) or a port range like \"5000-5100\""),
                ),
            }
        }
        let class = match (raw.deadline, raw.reliable) {
            (Some(text), None) => match parse_duration(&text) {
                Ok(d) if d.is_zero() => {
                    self.error(format!("{key}.deadline"), "must be longer than zero");
                    None
                }
                Ok(d) if d > MAX_DEADLINE => {
                    self.error(
                        format!("{key}.deadline"),
                        format!("{text:?} is longer than the 60s maximum"),
                    );
                    None
                }
                Ok(d) => Some(DeliveryClass::Deadline(d)),
                Err(message) => {
                    self.error(format!("{key}.deadline"), message);
                    None
                }
            },
            (None, Some(true)) => Some(DeliveryClass::Reliable),
            (None, Some(false)) => {
                self.error(
                    format!("{key}.reliable"),
                    "false says nothing; give deadline = \"100ms\" (or similar) instead",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.error(key, "give either deadline or reliable, not both");
                None
            }
            (None, None) => {
                self.error(
                    format!("{key}.deadline"),
                    "missing: a class rule needs deadline = \"50ms\" (or similar) or reliable = true",
                );
                None
            }
        };
        let (protocol, class) = (protocol?, class?);
        (self.errors.len() == errors_before).then_some(ClassRule {
            protocol,
            ports,
            class,
        })
    }
}

#[cfg(test)]
mod tests;
