//! The configuration file: TOML, read in two steps.
//!
//! 1. serde maps the text onto raw structs that deny unknown keys; errors
//!    are reported with the full key path (via `serde_path_to_error`) and
//!    the line.
//! 2. Validation turns raw strings into typed values (prefixes, durations,
//!    rates, keys, socket addresses) and collects every problem, each
//!    naming its key and line, e.g. `peer[0].allowed_ips[1]:
//!    "10.0.0.300/32" is not an IP prefix (...) (line 12)`.
//!
//! ```toml
//! [interface]
//! name = "tgp0"                          # default "tgp0"
//! addresses = ["10.77.0.1/24", "fd77::1/64"]
//! mtu = 1340                             # default 1340
//! listen_port = 51900                    # optional: a client may omit it
//! private_key_file = "/etc/tgp/private.key"   # relative to this file
//! rate_ceiling = "20mbit"                # optional: never send faster; default: measured
//! log_level = "info"                     # optional: error, warn, info, debug, trace
//!                                        # (RUST_LOG, when set, wins)
//! tcp_mode = "split"                     # optional: "split" (default) or "segment"
//! split_max_streams = 4096               # optional: split connections at once, per peer
//! split_window_cap = "16MiB"             # optional: largest stream window (buffer) each way
//! table = "auto"                         # optional: "auto" (default): a route per allowed
//!                                        # prefix, a full tunnel for 0.0.0.0/0 or ::/0;
//!                                        # "off": no routes; a number or "main": that table
//! dns = ["10.77.0.1", "corp.example"]    # optional: name servers and search domains, set
//!                                        # through resolvectl or resolvconf while up
//! masquerade = "eth0"                    # optional: NAT the peers' traffic leaving eth0
//!                                        # (nftables; also turns IP forwarding on)
//! metrics_listen = "127.0.0.1:9586"      # optional: Prometheus text at /metrics
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
//!
//! [[peer.class]]
//! protocol = "tcp"
//! ports = [22]
//! mode = "segment"                       # TCP only: "split" or "segment";
//!                                        # omitted: interface.tcp_mode
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
use toml::Spanned;

use crate::keys::decode_public_key;
use tgp_units::{parse_duration, parse_rate, BitsPerSecond};

/// Interface name used when the config gives none.
pub const DEFAULT_INTERFACE_NAME: &str = "tgp0";
/// Tunnel MTU used when the config gives none. Provisional: leaves room for
/// outer IPv6 + UDP (48 bytes) and the TGP header and AEAD tag on a
/// 1500-byte path; revisit once the wire format is final.
pub const DEFAULT_MTU: u16 = 1340;
/// Smallest MTU accepted (the IPv4 minimum datagram size every host takes).
pub const MIN_MTU_IPV4: u16 = 576;
/// Smallest MTU accepted when the interface has an IPv6 address (RFC 8200).
pub const MIN_MTU_IPV6: u16 = 1280;
/// Longest deadline a class rule may give.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);
/// Split connections per peer at once, when the config gives no number.
pub const DEFAULT_SPLIT_MAX_STREAMS: usize = 4096;
/// Most split connections per peer a config may ask for.
pub const MAX_SPLIT_MAX_STREAMS: usize = 65_536;
/// Largest stream window when the config gives none.
pub const DEFAULT_SPLIT_WINDOW_CAP: u64 = 16 << 20;
/// Bounds of `split_window_cap`: at least the initial credit, at most 1 GiB.
pub const SPLIT_WINDOW_CAP_RANGE: (u64, u64) = (256 << 10, 1 << 30);
/// The main routing table's number.
pub const MAIN_TABLE: u32 = 254;
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
    /// The file it was read from (absolute when it could be made so), for
    /// `tgp reload`; `None` for config text that came from elsewhere.
    pub source: Option<PathBuf>,
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
    /// Never send faster than this; `None` (the default): the rate
    /// controller finds the path's rate itself.
    pub rate_ceiling: Option<BitsPerSecond>,
    /// Log level (`error`, `warn`, `info`, `debug` or `trace`); `RUST_LOG`
    /// overrides it.
    pub log_level: String,
    /// How TCP is carried where no class rule says (`tcp_mode`).
    pub tcp_mode: TcpMode,
    /// Split connections per peer at once (`split_max_streams`).
    pub split_max_streams: usize,
    /// Largest stream window each way, bytes (`split_window_cap`).
    pub split_window_cap: u64,
    /// Which routes `tgp up` installs (`table`).
    pub table: RouteTable,
    /// Name servers and search domains while the tunnel is up (`dns`).
    pub dns: Dns,
    /// NAT the peers' traffic that leaves through this interface (`masquerade`).
    pub masquerade: Option<String>,
    /// Where the Prometheus endpoint listens (`metrics_listen`).
    pub metrics_listen: Option<SocketAddr>,
}

/// Which routes `tgp up` installs for the peers' allowed IPs (like
/// wg-quick's `Table`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTable {
    /// A route per allowed prefix in the main table; a default route
    /// (`0.0.0.0/0`, `::/0`) makes a full tunnel: its own table, chosen
    /// free, with policy rules so the underlay's packets (marked) still
    /// use the host's routes.
    Auto,
    /// No routes at all.
    Off,
    /// Every route, the default ones too, in this table; no policy rules.
    Table(u32),
}

/// The `dns` key, split into addresses and names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dns {
    /// Name servers.
    pub servers: Vec<std::net::IpAddr>,
    /// Search domains.
    pub search: Vec<String>,
}

impl Dns {
    /// Whether the key sets nothing.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty()
    }
}

/// How TCP connections are carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpMode {
    /// Each TCP segment travels as an IP packet; the end hosts' TCPs run
    /// end to end over the tunnel.
    Segment,
    /// Each end terminates the connection locally and the bytes travel as a
    /// tgp stream (tgp-split).
    Split,
}

impl TcpMode {
    fn parse(text: &str) -> Option<TcpMode> {
        match text {
            "segment" => Some(TcpMode::Segment),
            "split" => Some(TcpMode::Split),
            _ => None,
        }
    }
}

/// Log levels `interface.log_level` accepts.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

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
    /// The `mode` of each class rule (same order as `class_rules.rules`);
    /// `None` where the rule gives none.
    pub rule_tcp_modes: Vec<Option<TcpMode>>,
}

impl Peer {
    /// How a TCP packet's connection is carried: the mode of the first
    /// class rule that matches it, else `default` (the interface's).
    pub fn tcp_mode(&self, default: TcpMode, packet: &tgp_adapters::PacketSummary) -> TcpMode {
        for (rule, mode) in self.class_rules.rules.iter().zip(&self.rule_tcp_modes) {
            if rule.matches(packet) {
                return mode.unwrap_or(default);
            }
        }
        default
    }
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
        let mut config = Config::from_toml_str(&text, base).map_err(LoadError::Invalid)?;
        config.source = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        // Relative key paths stay valid if the daemon's directory changes.
        if config.interface.private_key_file.is_relative() {
            if let Ok(absolute) = std::fs::canonicalize(&config.interface.private_key_file) {
                config.interface.private_key_file = absolute;
            }
        }
        Ok(config)
    }

    /// Validate config text; relative paths are resolved against `base_dir`.
    /// Touches no files.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let lines = Lines::new(text);
        let raw = deserialize_raw(text, &lines).map_err(|e| ConfigErrors(vec![e]))?;
        let mut v = Validator {
            lines: &lines,
            errors: Vec::new(),
        };
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
// Step 1: TOML onto raw structs. Values that validation looks at keep their
// position in the text, so that its errors can give a line too.

type Text = Spanned<String>;

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
    name: Option<Text>,
    addresses: Spanned<Vec<Text>>,
    mtu: Option<Spanned<u16>>,
    listen_port: Option<Spanned<u16>>,
    private_key_file: Text,
    rate_ceiling: Option<Text>,
    log_level: Option<Text>,
    tcp_mode: Option<Text>,
    split_max_streams: Option<Spanned<i64>>,
    split_window_cap: Option<Text>,
    table: Option<Spanned<toml::Value>>,
    dns: Option<Spanned<Vec<Text>>>,
    masquerade: Option<Text>,
    metrics_listen: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    public_key: Text,
    endpoint: Option<Text>,
    allowed_ips: Spanned<Vec<Text>>,
    #[serde(default)]
    class: Vec<Spanned<RawClassRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClassRule {
    protocol: Text,
    #[serde(default)]
    ports: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    deadline: Option<Text>,
    reliable: Option<Spanned<bool>>,
    mode: Option<Text>,
}

/// 1-based line numbers from byte offsets.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|start| *start <= offset)
    }
}

/// Deserialize, turning serde's messages into ones that name the full key.
fn deserialize_raw(text: &str, lines: &Lines) -> Result<RawConfig, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError {
        key: String::new(),
        message: format!("not valid TOML: {}", e.message()),
        line: e.span().map(|s| lines.line(s.start)),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // Spanned values add an internal segment to the path; hide it.
        let path = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let inner = e.into_inner();
        let line = inner.span().map(|s| lines.line(s.start));
        let (key, message) = explain_serde_error(&path, inner.message());
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

struct Validator<'a> {
    lines: &'a Lines,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    /// Record a problem with `key`, whose value starts at byte `at`.
    fn error(&mut self, key: impl Into<String>, at: usize, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
            line: Some(self.lines.line(at)),
        });
    }

    fn config(&mut self, raw: RawConfig, base_dir: &Path) -> Option<Config> {
        let listens_on_random_port = raw.interface.listen_port.is_none();
        let interface = self.interface(raw.interface, base_dir);
        let mut peers = Vec::new();
        let mut seen_keys: HashMap<[u8; 32], usize> = HashMap::new();
        let mut seen_prefixes: HashMap<IpNet, String> = HashMap::new();
        for (index, raw_peer) in raw.peer.into_iter().enumerate() {
            let key = format!("peer[{index}]");
            let key_at = raw_peer.public_key.span().start;
            let prefix_positions: Vec<usize> = raw_peer
                .allowed_ips
                .get_ref()
                .iter()
                .map(|p| p.span().start)
                .collect();
            let Some(peer) = self.peer(&key, raw_peer) else {
                continue;
            };
            if let Some(first) = seen_keys.insert(peer.public_key.to_bytes(), index) {
                self.error(
                    format!("{key}.public_key"),
                    key_at,
                    format!("the same key as peer[{first}]; each peer must be listed once"),
                );
            }
            for (i, (prefix, at)) in peer.allowed_ips.iter().zip(prefix_positions).enumerate() {
                let here = format!("{key}.allowed_ips[{i}]");
                if let Some(earlier) = seen_prefixes.insert(prefix.trunc(), here.clone()) {
                    self.error(
                        here,
                        at,
                        format!(
                            "{prefix} is already given at {earlier}; a prefix routes to one peer"
                        ),
                    );
                }
            }
            if peer.endpoint.is_none() && listens_on_random_port {
                self.error(
                    format!("{key}.endpoint"),
                    key_at,
                    "missing, and interface.listen_port is not set either: the peer could \
                     never find us; give the peer an endpoint or the interface a listen_port",
                );
            }
            peers.push(peer);
        }
        Some(Config {
            interface: interface?,
            peers,
            source: None,
        })
    }

    fn interface(&mut self, raw: RawInterface, base_dir: &Path) -> Option<Interface> {
        let errors_before = self.errors.len();
        let name = match raw.name {
            None => DEFAULT_INTERFACE_NAME.to_owned(),
            Some(name) => {
                let at = name.span().start;
                let name = name.into_inner();
                if !is_usable_interface_name(&name) {
                    self.error(
                        "interface.name",
                        at,
                        format!(
                            "{name:?} is not a usable interface name \
                             (1-15 characters, no '/', ':' or spaces)"
                        ),
                    );
                }
                name
            }
        };

        let mut addresses = Vec::new();
        if raw.addresses.get_ref().is_empty() {
            self.error(
                "interface.addresses",
                raw.addresses.span().start,
                "needs at least one address, like \"10.77.0.1/24\"",
            );
        }
        for (i, text) in raw.addresses.into_inner().into_iter().enumerate() {
            match text.get_ref().parse::<IpNet>() {
                Ok(net) => addresses.push(net),
                Err(_) => self.error(
                    format!("interface.addresses[{i}]"),
                    text.span().start,
                    format!(
                        "{:?} is not an address with prefix length, \
                         like \"10.77.0.1/24\" or \"fd77::1/64\"",
                        text.get_ref()
                    ),
                ),
            }
        }

        let has_v6 = addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
        let mtu = match raw.mtu {
            None => DEFAULT_MTU,
            Some(mtu) => {
                let (at, mtu) = (mtu.span().start, mtu.into_inner());
                let min_mtu = if has_v6 { MIN_MTU_IPV6 } else { MIN_MTU_IPV4 };
                if mtu < min_mtu {
                    let why = if has_v6 { " (IPv6 needs 1280)" } else { "" };
                    self.error(
                        "interface.mtu",
                        at,
                        format!("{mtu} is below the minimum of {min_mtu}{why}"),
                    );
                }
                mtu
            }
        };

        let listen_port = raw.listen_port.map(|port| {
            if *port.get_ref() == 0 {
                self.error(
                    "interface.listen_port",
                    port.span().start,
                    "0 is not a port; leave listen_port out to use a random port",
                );
            }
            port.into_inner()
        });

        if raw.private_key_file.get_ref().trim().is_empty() {
            self.error(
                "interface.private_key_file",
                raw.private_key_file.span().start,
                "is empty",
            );
        }
        let private_key_file = base_dir.join(raw.private_key_file.get_ref());

        let rate_ceiling = raw.rate_ceiling.as_ref().and_then(|text| {
            parse_rate(text.get_ref())
                .map_err(|message| {
                    self.error(
                        "interface.rate_ceiling",
                        text.span().start,
                        message.to_string(),
                    );
                })
                .ok()
        });

        let log_level = match &raw.log_level {
            Some(level) if !LOG_LEVELS.contains(&level.get_ref().as_str()) => {
                self.error(
                    "interface.log_level",
                    level.span().start,
                    format!(
                        "{:?} is not a log level; use one of {}",
                        level.get_ref(),
                        LOG_LEVELS.join(", ")
                    ),
                );
                String::new()
            }
            Some(level) => level.get_ref().clone(),
            None => "info".to_string(),
        };

        let tcp_mode = match &raw.tcp_mode {
            None => TcpMode::Split,
            Some(text) => TcpMode::parse(text.get_ref()).unwrap_or_else(|| {
                self.error(
                    "interface.tcp_mode",
                    text.span().start,
                    format!(
                        "{:?} is not a TCP mode; use \"segment\" or \"split\"",
                        text.get_ref()
                    ),
                );
                TcpMode::Segment
            }),
        };
        let split_max_streams = match &raw.split_max_streams {
            None => DEFAULT_SPLIT_MAX_STREAMS,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if (1..=MAX_SPLIT_MAX_STREAMS).contains(&n) => n,
                _ => {
                    self.error(
                        "interface.split_max_streams",
                        n.span().start,
                        format!(
                            "{} is out of range; give 1 to {MAX_SPLIT_MAX_STREAMS}",
                            n.get_ref()
                        ),
                    );
                    DEFAULT_SPLIT_MAX_STREAMS
                }
            },
        };
        let split_window_cap = match &raw.split_window_cap {
            None => DEFAULT_SPLIT_WINDOW_CAP,
            Some(text) => {
                let (low, high) = SPLIT_WINDOW_CAP_RANGE;
                match parse_bytes(text.get_ref()) {
                    Ok(n) if (low..=high).contains(&n) => n,
                    Ok(_) => {
                        self.error(
                            "interface.split_window_cap",
                            text.span().start,
                            format!("{:?} is out of range; give 256KiB to 1GiB", text.get_ref()),
                        );
                        DEFAULT_SPLIT_WINDOW_CAP
                    }
                    Err(message) => {
                        self.error("interface.split_window_cap", text.span().start, message);
                        DEFAULT_SPLIT_WINDOW_CAP
                    }
                }
            }
        };

        let table = raw.table.as_ref().map_or(RouteTable::Auto, |value| {
            self.route_table(value).unwrap_or(RouteTable::Auto)
        });
        let dns = raw.dns.map(|list| self.dns(list)).unwrap_or_default();
        let masquerade = raw.masquerade.and_then(|text| {
            let at = text.span().start;
            let name = text.into_inner();
            if is_usable_interface_name(&name) {
                Some(name)
            } else {
                self.error(
                    "interface.masquerade",
                    at,
                    format!(
                        "{name:?} is not an interface name; give the interface the peers' \
                         traffic leaves through, like \"eth0\""
                    ),
                );
                None
            }
        });
        let metrics_listen = raw.metrics_listen.and_then(|text| {
            text.get_ref()
                .parse::<SocketAddr>()
                .map_err(|_| {
                    self.error(
                        "interface.metrics_listen",
                        text.span().start,
                        format!(
                            "{:?} is not an IP address and port, like \"127.0.0.1:9586\"",
                            text.get_ref()
                        ),
                    );
                })
                .ok()
        });

        (self.errors.len() == errors_before).then_some(Interface {
            name,
            addresses,
            mtu,
            listen_port,
            private_key_file,
            rate_ceiling,
            log_level,
            tcp_mode,
            split_max_streams,
            split_window_cap,
            table,
            dns,
            masquerade,
            metrics_listen,
        })
    }

    fn route_table(&mut self, value: &Spanned<toml::Value>) -> Option<RouteTable> {
        let at = value.span().start;
        let parsed = match value.get_ref() {
            toml::Value::String(s) if s == "auto" => Some(RouteTable::Auto),
            toml::Value::String(s) if s == "off" => Some(RouteTable::Off),
            toml::Value::String(s) if s == "main" => Some(RouteTable::Table(MAIN_TABLE)),
            toml::Value::Integer(n) => u32::try_from(*n)
                .ok()
                .filter(|n| *n != 0)
                .map(RouteTable::Table),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                "interface.table",
                at,
                format!(
                    "{} is not a routing table; give \"auto\", \"off\", \"main\" \
                     or a table number (1 to 4294967295)",
                    value.get_ref()
                ),
            );
        }
        parsed
    }

    fn dns(&mut self, list: Spanned<Vec<Text>>) -> Dns {
        let mut dns = Dns::default();
        for (i, text) in list.into_inner().into_iter().enumerate() {
            let entry = text.get_ref().trim();
            if let Ok(address) = entry.parse::<std::net::IpAddr>() {
                dns.servers.push(address);
            } else if is_domain_name(entry) {
                dns.search.push(entry.trim_end_matches('.').to_owned());
            } else {
                self.error(
                    format!("interface.dns[{i}]"),
                    text.span().start,
                    format!(
                        "{:?} is neither an IP address (a name server) nor a domain name \
                         (a search domain)",
                        text.get_ref()
                    ),
                );
            }
        }
        dns
    }

    fn peer(&mut self, key: &str, raw: RawPeer) -> Option<Peer> {
        let errors_before = self.errors.len();
        let public_key = decode_public_key(raw.public_key.get_ref())
            .map_err(|e| {
                self.error(
                    format!("{key}.public_key"),
                    raw.public_key.span().start,
                    format!("{:?} {e}", raw.public_key.get_ref()),
                );
            })
            .ok();

        let endpoint = raw.endpoint.and_then(|text| {
            text.get_ref()
                .parse::<SocketAddr>()
                .map_err(|_| {
                    self.error(
                        format!("{key}.endpoint"),
                        text.span().start,
                        format!(
                            "{:?} is not an IP address and port, like \"203.0.113.7:51900\" \
                             or \"[2001:db8::7]:51900\" (host names are not supported yet)",
                            text.get_ref()
                        ),
                    );
                })
                .ok()
        });

        let mut allowed_ips = Vec::new();
        if raw.allowed_ips.get_ref().is_empty() {
            self.error(
                format!("{key}.allowed_ips"),
                raw.allowed_ips.span().start,
                "is empty; list the inner addresses this peer may use, like \"10.77.0.2/32\"",
            );
        }
        for (i, text) in raw.allowed_ips.into_inner().into_iter().enumerate() {
            match text.get_ref().parse::<IpNet>() {
                Ok(net) => allowed_ips.push(net),
                Err(_) => self.error(
                    format!("{key}.allowed_ips[{i}]"),
                    text.span().start,
                    format!(
                        "{:?} is not an IP prefix (like \"10.77.0.2/32\" or \"fd77::/64\")",
                        text.get_ref()
                    ),
                ),
            }
        }

        let mut rules = Vec::new();
        let mut rule_tcp_modes = Vec::new();
        for (i, raw_rule) in raw.class.into_iter().enumerate() {
            if let Some((rule, mode)) = self.class_rule(&format!("{key}.class[{i}]"), raw_rule) {
                rules.push(rule);
                rule_tcp_modes.push(mode);
            }
        }

        let public_key = public_key?;
        (self.errors.len() == errors_before).then(|| Peer {
            public_key,
            endpoint,
            allowed_ips,
            class_rules: ClassRules::new(rules),
            rule_tcp_modes,
        })
    }

    fn class_rule(
        &mut self,
        key: &str,
        raw: Spanned<RawClassRule>,
    ) -> Option<(ClassRule, Option<TcpMode>)> {
        let errors_before = self.errors.len();
        let rule_at = raw.span().start;
        let raw = raw.into_inner();
        let protocol = raw
            .protocol
            .get_ref()
            .parse::<RuleProtocol>()
            .map_err(|e| {
                self.error(
                    format!("{key}.protocol"),
                    raw.protocol.span().start,
                    e.to_string(),
                );
            })
            .ok();

        let mut ports = Vec::new();
        if let Some(raw_ports) = raw.ports {
            if protocol == Some(RuleProtocol::Icmp) && !raw_ports.get_ref().is_empty() {
                self.error(
                    format!("{key}.ports"),
                    raw_ports.span().start,
                    "ICMP has no ports; remove them",
                );
            }
            for (i, value) in raw_ports.into_inner().into_iter().enumerate() {
                let parsed = match value.get_ref() {
                    toml::Value::Integer(n) => u16::try_from(*n).ok().map(PortRange::single),
                    toml::Value::String(s) => s.parse::<PortRange>().ok(),
                    _ => None,
                };
                match parsed {
                    Some(range) => ports.push(range),
                    None => self.error(
                        format!("{key}.ports[{i}]"),
                        value.span().start,
                        format!(
                            "{} is not a port (0-65535) or a port range like \"5000-5100\"",
                            value.get_ref()
                        ),
                    ),
                }
            }
        }

        let mode = raw.mode.as_ref().and_then(|text| {
            let at = text.span().start;
            if protocol.is_some_and(|p| p != RuleProtocol::Tcp) {
                self.error(
                    format!("{key}.mode"),
                    at,
                    "applies to TCP rules only (protocol = \"tcp\")",
                );
                return None;
            }
            let mode = TcpMode::parse(text.get_ref());
            if mode.is_none() {
                self.error(
                    format!("{key}.mode"),
                    at,
                    format!(
                        "{:?} is not a TCP mode; use \"segment\" or \"split\"",
                        text.get_ref()
                    ),
                );
            }
            mode
        });
        if mode == Some(TcpMode::Split) {
            if let Some(deadline) = &raw.deadline {
                self.error(
                    format!("{key}.deadline"),
                    deadline.span().start,
                    "split mode carries a byte stream reliably; remove the deadline",
                );
            }
        }
        // TCP carried reliably is segment-mode delivery: the inner TCP
        // reorders, so a hole holds the flow only briefly.
        let reliable_class = if protocol == Some(RuleProtocol::Tcp) {
            DeliveryClass::Segment
        } else {
            DeliveryClass::Reliable
        };
        let class = match (raw.deadline, raw.reliable) {
            (None, None) if raw.mode.is_some() => Some(reliable_class),
            (Some(text), None) => {
                let at = text.span().start;
                match parse_duration(text.get_ref()) {
                    Ok(d) if d.is_zero() => {
                        self.error(format!("{key}.deadline"), at, "must be longer than zero");
                        None
                    }
                    Ok(d) if d > MAX_DEADLINE => {
                        self.error(
                            format!("{key}.deadline"),
                            at,
                            format!("{:?} is longer than the 60s maximum", text.get_ref()),
                        );
                        None
                    }
                    Ok(d) => Some(DeliveryClass::Deadline(d)),
                    Err(message) => {
                        self.error(format!("{key}.deadline"), at, message.to_string());
                        None
                    }
                }
            }
            (None, Some(reliable)) if *reliable.get_ref() => Some(reliable_class),
            (None, Some(reliable)) => {
                self.error(
                    format!("{key}.reliable"),
                    reliable.span().start,
                    "false says nothing; give deadline = \"100ms\" (or similar) instead",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.error(key, rule_at, "give either deadline or reliable, not both");
                None
            }
            (None, None) => {
                self.error(
                    format!("{key}.deadline"),
                    rule_at,
                    "missing: a class rule needs deadline = \"50ms\" (or similar) \
                     or reliable = true",
                );
                None
            }
        };
        let (protocol, class) = (protocol?, class?);
        (self.errors.len() == errors_before).then_some((
            ClassRule {
                protocol,
                ports,
                class,
            },
            mode,
        ))
    }
}

/// A byte count: a number with an optional unit `B`, `KiB`, `MiB` or `GiB`
/// (powers of 1024; `k`, `M`, `G` mean the same), like `"8MiB"`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad =
        || format!("{text:?} is not a size; give a number and a unit, like \"8MiB\" or \"512KiB\"");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" | "kiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    number.checked_mul(scale).ok_or_else(bad)
}

/// A DNS name: dot-separated labels of 1-63 letters, digits, hyphens and
/// underscores, not starting or ending with a hyphen, 253 bytes at most;
/// at least one letter (so that a mistyped address is not taken for one).
fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.chars().any(|c| c.is_ascii_alphabetic())
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Linux accepts 1-15 bytes without '/', ':' (alias syntax) or whitespace.
fn is_usable_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests;
