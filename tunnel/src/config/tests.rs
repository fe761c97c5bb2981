//! Config validation tests: every error names its key.

use super::*;

const PEER_KEY: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

const GOOD: &str = r#"
[interface]
name = "tgp0"
addresses = ["10.77.0.1/24", "fd77::1/64"]
mtu = 1400
listen_port = 51900
private_key_file = "private.key"
rate_ceiling = "20mbit"

[[peer]]
public_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
endpoint = "203.0.113.7:51900"
allowed_ips = ["10.77.0.2/32", "fd77::2/128"]

[[peer.class]]
protocol = "udp"
ports = [3478, "5000-5100"]
deadline = "50ms"

[[peer.class]]
protocol = "icmp"
reliable = true
"#;

fn errors(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, Path::new("/etc/tgp")) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(text: &str, expected_prefix: &str) {
    let all = errors(text);
    assert!(
        all.iter().any(|e| e.starts_with(expected_prefix)),
        "no error starting with {expected_prefix:?} in {all:#?}"
    );
}

fn minimal(peer: &str) -> String {
    format!(
        "[interface]\naddresses = [\"10.77.0.1/24\"]\nprivate_key_file = \"k\"\nrate_ceiling = \"10mbit\"\n{peer}"
    )
}

#[test]
fn good_config_is_typed() {
    let c = Config::from_toml_str(GOOD, Path::new("/etc/tgp")).unwrap();
    assert_eq!(c.interface.name, "tgp0");
    assert_eq!(c.interface.mtu, 1400);
    assert_eq!(c.interface.listen_port, Some(51900));
    assert_eq!(
        c.interface.private_key_file,
        Path::new("/etc/tgp/private.key")
    );
    assert_eq!(c.interface.rate_ceiling, Some(BitsPerSecond(20_000_000)));
    assert_eq!(c.interface.addresses.len(), 2);
    let peer = &c.peers[0];
    assert_eq!(peer.endpoint, Some("203.0.113.7:51900".parse().unwrap()));
    assert_eq!(peer.allowed_ips.len(), 2);
    let rules = &peer.class_rules.rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].protocol, RuleProtocol::Udp);
    assert_eq!(
        rules[0].ports,
        vec![PortRange::single(3478), PortRange::new(5000, 5100).unwrap()]
    );
    assert_eq!(
        rules[0].class,
        DeliveryClass::Deadline(Duration::from_millis(50))
    );
    assert_eq!(rules[1].class, DeliveryClass::Reliable);
    let table = c.allowed_ips();
    assert_eq!(table.lookup("fd77::2".parse().unwrap()), Some(0));
    assert_eq!(table.lookup("10.77.0.3".parse().unwrap()), None);
}

#[test]
fn defaults_apply() {
    let c = Config::from_toml_str(&minimal(""), Path::new("/x")).unwrap();
    assert_eq!(c.interface.name, DEFAULT_INTERFACE_NAME);
    assert_eq!(c.interface.mtu, DEFAULT_MTU);
    assert_eq!(c.interface.listen_port, None);
    assert!(c.peers.is_empty());
    let peer = format!(
        "listen_port = 1\n[[peer]]\npublic_key = \"{PEER_KEY}\"\nallowed_ips = [\"10.77.0.2/32\"]\n"
    );
    let c = Config::from_toml_str(&minimal(&peer), Path::new("/x")).unwrap();
    assert_eq!(c.peers[0].endpoint, None);
    assert_eq!(c.peers[0].class_rules, ClassRules::default());
}

#[test]
fn unknown_key_at_top_level() {
    let text = format!("colour = \"blue\"\n{GOOD}");
    let all = errors(&text);
    assert_eq!(all.len(), 1);
    assert!(all[0].starts_with("colour: unknown key"), "{all:?}");
    assert!(all[0].contains("(line 1)"), "{all:?}");
}

#[test]
fn unknown_key_in_interface_and_peer_and_class() {
    assert_error(
        &GOOD.replace("mtu = 1400", "mtu = 1400\nmtuu = 1"),
        "interface.mtuu: unknown key",
    );
    assert_error(
        &format!("{GOOD}\n[[peer]]\npublic_key = \"{PEER_KEY}\"\nallowed_ips = []\npersistent_keepalive = 25\n"),
        "peer[1].persistent_keepalive: unknown key",
    );
    assert_error(
        &GOOD.replace("deadline = \"50ms\"", "deadline = \"50ms\"\nprio = 1"),
        "peer[0].class[0].prio: unknown key",
    );
}

#[test]
fn missing_required_keys() {
    assert_error(
        &format!("[[peer]]\npublic_key = \"{PEER_KEY}\"\nallowed_ips = []\n"),
        "interface: missing required key",
    );
    assert_error(
        &GOOD.replace(
            "public_key = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"",
            "",
        ),
        "peer[0].public_key: missing required key",
    );
    assert_error(
        &GOOD.replace("reliable = true", ""),
        "peer[0].class[1].deadline: missing",
    );
}

#[test]
fn bad_prefix_names_its_index() {
    assert_error(
        &GOOD.replace("\"fd77::2/128\"", "\"fd77::2/128\", \"10.0.0.300/32\""),
        "peer[0].allowed_ips[2]: \"10.0.0.300/32\" is not an IP prefix",
    );
    assert_error(
        &GOOD.replace("\"10.77.0.1/24\"", "\"10.77.0.1\""),
        "interface.addresses[0]: \"10.77.0.1\" is not an address with prefix length",
    );
}

#[test]
fn bad_duration_and_rate() {
    assert_error(
        &GOOD.replace("\"50ms\"", "\"50\""),
        "peer[0].class[0].deadline: \"50\" is not a duration",
    );
    assert_error(
        &GOOD.replace("\"50ms\"", "\"2m\""),
        "peer[0].class[0].deadline: \"2m\" is longer than the 60s maximum",
    );
    assert_error(
        &GOOD.replace("\"20mbit\"", "\"fast\""),
        "interface.rate_ceiling: \"fast\" is not a rate",
    );
}

#[test]
fn bad_key_length_and_encoding() {
    assert_error(
        &GOOD.replace(PEER_KEY, "AAAA"),
        "peer[0].public_key: \"AAAA\" decodes to 3 bytes, an Ed25519 key has 32",
    );
    assert_error(
        &GOOD.replace(PEER_KEY, "not base64!"),
        "peer[0].public_key: \"not base64!\" is not base64",
    );
}

#[test]
fn wrong_types_name_the_key() {
    assert_error(
        &GOOD.replace("mtu = 1400", "mtu = \"big\""),
        "interface.mtu: invalid type",
    );
    assert_error(
        &GOOD.replace("mtu = 1400", "mtu = 100000"),
        "interface.mtu: invalid value",
    );
    assert_error(
        &GOOD.replace("[3478, \"5000-5100\"]", "[3478, \"5100-5000\", true]"),
        "peer[0].class[0].ports[1]: \"5100-5000\" is not a port",
    );
    assert_error(
        &GOOD.replace("[3478, \"5000-5100\"]", "[3478, 70000]"),
        "peer[0].class[0].ports[1]: 70000 is not a port",
    );
}

#[test]
fn other_semantic_errors() {
    assert_error(
        &GOOD.replace("mtu = 1400", "mtu = 1200"),
        "interface.mtu: 1200 is below the minimum of 1280",
    );
    assert_error(
        &GOOD.replace("listen_port = 51900", "listen_port = 0"),
        "interface.listen_port: 0 is not a port",
    );
    assert_error(
        &GOOD.replace("name = \"tgp0\"", "name = \"a/b\""),
        "interface.name: \"a/b\" is not a usable interface name",
    );
    assert_error(
        &GOOD.replace("\"203.0.113.7:51900\"", "\"vpn.example.com:51900\""),
        "peer[0].endpoint: \"vpn.example.com:51900\" is not an IP address and port",
    );
    assert_error(
        &GOOD.replace("protocol = \"udp\"", "protocol = \"sctp\""),
        "peer[0].class[0].protocol: \"sctp\" is not a protocol",
    );
    assert_error(
        &GOOD.replace("reliable = true", "reliable = true\nports = [1]"),
        "peer[0].class[1].ports: ICMP has no ports",
    );
    assert_error(
        &GOOD.replace("reliable = true", "reliable = true\ndeadline = \"1s\""),
        "peer[0].class[1]: give either deadline or reliable",
    );
    let twice = format!(
        "{GOOD}\n[[peer]]\npublic_key = \"{PEER_KEY}\"\nallowed_ips = [\"10.77.0.2/32\"]\n"
    );
    assert_error(&twice, "peer[1].public_key: the same key as peer[0]");
    assert_error(
        &GOOD
            .replace("listen_port = 51900", "")
            .replace("endpoint = \"203.0.113.7:51900\"", ""),
        "peer[0].endpoint: missing, and interface.listen_port is not set either",
    );
    assert_error(
        &twice,
        "peer[1].allowed_ips[0]: 10.77.0.2/32 is already given at peer[0].allowed_ips[0]",
    );
}

#[test]
fn several_errors_are_all_reported() {
    let text = GOOD
        .replace("\"20mbit\"", "\"fast\"")
        .replace("\"50ms\"", "\"soon\"")
        .replace("\"fd77::2/128\"", "\"fd77::zz/128\"");
    assert_eq!(errors(&text).len(), 3, "{:#?}", errors(&text));
}

#[test]
fn toml_syntax_error_has_a_line() {
    let all = errors("[interface\naddresses = []\n");
    assert!(all[0].starts_with("not valid TOML"), "{all:?}");
    assert!(all[0].contains("(line 1)"), "{all:?}");
}

#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in ["server.toml", "client.toml"] {
        let path = dir.join(name);
        if let Err(e) = Config::load(&path) {
            panic!("{}: {e}", path.display());
        }
    }
    let server = Config::load(&dir.join("server.toml")).unwrap();
    let client = Config::load(&dir.join("client.toml")).unwrap();
    assert!(server.interface.listen_port.is_some());
    assert!(
        server.peers.iter().all(|p| p.endpoint.is_none()),
        "a server learns endpoints"
    );
    assert!(client.peers.iter().all(|p| p.endpoint.is_some()));
}

#[test]
fn validation_errors_give_lines() {
    let text = r#"[interface]
addresses = ["10.77.0.1/24"]
private_key_file = "k"
rate_ceiling = "20mbit"

[[peer]]
public_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
allowed_ips = [
  "10.0.0.2/32",
  "10.0.0.300/32",
]

[[peer.class]]
protocol = "udp"
ports = [1, "9-3"]
"#;
    let all = errors(text);
    assert_eq!(
        all,
        [
            "peer[0].allowed_ips[1]: \"10.0.0.300/32\" is not an IP prefix \
             (like \"10.77.0.2/32\" or \"fd77::/64\") (line 10)",
            "peer[0].class[0].ports[1]: \"9-3\" is not a port (0-65535) or a port range \
             like \"5000-5100\" (line 15)",
            "peer[0].class[0].deadline: missing: a class rule needs deadline = \"50ms\" \
             (or similar) or reliable = true (line 13)",
        ]
    );
}

#[test]
fn several_errors_display_as_a_list() {
    let text = GOOD
        .replace("\"20mbit\"", "\"fast\"")
        .replace("\"50ms\"", "\"soon\"");
    let shown = Config::from_toml_str(&text, Path::new("/"))
        .unwrap_err()
        .to_string();
    assert!(
        shown.starts_with("2 problems:\n  interface.rate_ceiling: "),
        "{shown}"
    );
    assert!(shown.contains("\n  peer[0].class[0].deadline: "), "{shown}");
}

#[test]
fn log_level_defaults_to_info_and_rejects_unknown_levels() {
    let c = Config::from_toml_str(GOOD, Path::new("/etc/tgp")).unwrap();
    assert_eq!(c.interface.log_level, "info");
    let bad = GOOD.replace(
        "rate_ceiling = \"20mbit\"",
        "rate_ceiling = \"20mbit\"\nlog_level = \"chatty\"",
    );
    let shown = Config::from_toml_str(&bad, Path::new("/etc/tgp"))
        .unwrap_err()
        .to_string();
    assert!(
        shown.contains("interface.log_level: \"chatty\" is not a log level"),
        "{shown}"
    );
}

fn with_peer_rules(interface_extra: &str, rules: &str) -> String {
    minimal(&format!(
        "listen_port = 1\n{interface_extra}\n[[peer]]\npublic_key = \"{PEER_KEY}\"\nallowed_ips = [\"10.77.0.2/32\"]\n{rules}"
    ))
}

#[test]
fn tcp_mode_defaults_to_split_and_rules_choose_per_port() {
    let c = Config::from_toml_str(&minimal(""), Path::new("/x")).unwrap();
    assert_eq!(c.interface.tcp_mode, TcpMode::Split);
    let segment =
        Config::from_toml_str(&minimal("tcp_mode = \"segment\""), Path::new("/x")).unwrap();
    assert_eq!(segment.interface.tcp_mode, TcpMode::Segment);
    assert_eq!(c.interface.split_max_streams, DEFAULT_SPLIT_MAX_STREAMS);
    assert_eq!(c.interface.split_window_cap, DEFAULT_SPLIT_WINDOW_CAP);

    let text = with_peer_rules(
        "tcp_mode = \"split\"\nsplit_max_streams = 100\nsplit_window_cap = \"2MiB\"",
        "[[peer.class]]\nprotocol = \"tcp\"\nports = [22]\nmode = \"segment\"\n\
         [[peer.class]]\nprotocol = \"tcp\"\nports = [80]\nreliable = true\n\
         [[peer.class]]\nprotocol = \"udp\"\nports = [5001]\ndeadline = \"50ms\"\n",
    );
    let c = Config::from_toml_str(&text, Path::new("/x")).unwrap();
    assert_eq!(c.interface.tcp_mode, TcpMode::Split);
    assert_eq!(c.interface.split_max_streams, 100);
    assert_eq!(c.interface.split_window_cap, 2 << 20);
    let peer = &c.peers[0];
    assert_eq!(
        peer.rule_tcp_modes,
        vec![Some(TcpMode::Segment), None, None]
    );
    assert_eq!(peer.class_rules.rules[0].class, DeliveryClass::Segment);
    let tcp = |port: u16| {
        let mut p = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1,
        ];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        tgp_adapters::parse(&p).unwrap()
    };
    let default = c.interface.tcp_mode;
    assert_eq!(peer.tcp_mode(default, &tcp(22)), TcpMode::Segment);
    assert_eq!(peer.tcp_mode(default, &tcp(80)), TcpMode::Split);
    assert_eq!(peer.tcp_mode(default, &tcp(5001)), TcpMode::Split);
    assert_eq!(
        peer.tcp_mode(TcpMode::Segment, &tcp(5001)),
        TcpMode::Segment
    );
}

#[test]
fn tcp_mode_errors_name_their_keys() {
    assert_error(
        &with_peer_rules("tcp_mode = \"fast\"", ""),
        "interface.tcp_mode: \"fast\" is not a TCP mode",
    );
    assert_error(
        &with_peer_rules("split_max_streams = 0", ""),
        "interface.split_max_streams: 0 is out of range",
    );
    assert_error(
        &with_peer_rules("split_window_cap = \"1KiB\"", ""),
        "interface.split_window_cap: \"1KiB\" is out of range",
    );
    assert_error(
        &with_peer_rules("split_window_cap = \"lots\"", ""),
        "interface.split_window_cap: \"lots\" is not a size",
    );
    assert_error(
        &with_peer_rules("", "[[peer.class]]\nprotocol = \"udp\"\nmode = \"split\"\n"),
        "peer[0].class[0].mode: applies to TCP rules only",
    );
    assert_error(
        &with_peer_rules("", "[[peer.class]]\nprotocol = \"tcp\"\nmode = \"fast\"\n"),
        "peer[0].class[0].mode: \"fast\" is not a TCP mode",
    );
    assert_error(
        &with_peer_rules(
            "",
            "[[peer.class]]\nprotocol = \"tcp\"\nmode = \"split\"\ndeadline = \"50ms\"\n",
        ),
        "peer[0].class[0].deadline: split mode carries a byte stream reliably",
    );
    let all = errors(&with_peer_rules("tcp_mode = 5", ""));
    assert!(all[0].starts_with("interface.tcp_mode"), "{all:?}");
}

#[test]
fn rate_ceiling_is_optional() {
    let c = Config::from_toml_str(
        &GOOD.replace("rate_ceiling = \"20mbit\"", ""),
        Path::new("/x"),
    )
    .unwrap();
    assert_eq!(c.interface.rate_ceiling, None);
}

#[test]
fn operations_keys_default_to_off() {
    let c = Config::from_toml_str(&minimal(""), Path::new("/x")).unwrap();
    assert_eq!(c.interface.table, RouteTable::Auto);
    assert!(c.interface.dns.is_empty());
    assert_eq!(c.interface.masquerade, None);
    assert_eq!(c.interface.metrics_listen, None);
    assert_eq!(c.source, None);
}

#[test]
fn operations_keys_are_typed() {
    let text = minimal(
        "table = 1234\n\
         dns = [\"10.77.0.1\", \"fd77::1\", \"corp.example.\", \"lan\"]\n\
         masquerade = \"eth0\"\n\
         metrics_listen = \"127.0.0.1:9586\"\n",
    );
    let c = Config::from_toml_str(&text, Path::new("/x")).unwrap();
    let i = &c.interface;
    assert_eq!(i.table, RouteTable::Table(1234));
    assert_eq!(
        i.dns.servers,
        vec![
            "10.77.0.1".parse::<std::net::IpAddr>().unwrap(),
            "fd77::1".parse().unwrap()
        ]
    );
    assert_eq!(i.dns.search, vec!["corp.example", "lan"]);
    assert_eq!(i.masquerade.as_deref(), Some("eth0"));
    assert_eq!(i.metrics_listen, Some("127.0.0.1:9586".parse().unwrap()));
    for (value, table) in [
        ("\"off\"", RouteTable::Off),
        ("\"auto\"", RouteTable::Auto),
        ("\"main\"", RouteTable::Table(MAIN_TABLE)),
    ] {
        let c = Config::from_toml_str(&minimal(&format!("table = {value}\n")), Path::new("/x"))
            .unwrap();
        assert_eq!(c.interface.table, table, "table = {value}");
    }
}

#[test]
fn operations_key_errors_name_their_keys() {
    for (line, expected) in [
        ("table = 0", "interface.table: 0 is not a routing table"),
        ("table = -3", "interface.table: -3 is not a routing table"),
        (
            "table = \"sometimes\"",
            "interface.table: \"sometimes\" is not a routing table",
        ),
        (
            "table = 4294967296",
            "interface.table: 4294967296 is not a routing table",
        ),
        (
            "dns = [\"10.77.0.1\", \"10.77.0.300\"]",
            "interface.dns[1]: \"10.77.0.300\" is neither an IP address",
        ),
        (
            "dns = [\"bad name\"]",
            "interface.dns[0]: \"bad name\" is neither",
        ),
        (
            "dns = [\"-x.example\"]",
            "interface.dns[0]: \"-x.example\" is neither",
        ),
        ("dns = \"10.0.0.1\"", "interface.dns"),
        (
            "masquerade = \"eth 0\"",
            "interface.masquerade: \"eth 0\" is not an interface name",
        ),
        (
            "metrics_listen = \"localhost:9586\"",
            "interface.metrics_listen: \"localhost:9586\" is not an IP address and port",
        ),
    ] {
        assert_error(&minimal(&format!("{line}\n")), expected);
    }
    let all = errors(&minimal("table = \"x\"\ndns = [\"\"]\n"));
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|e| e.contains("(line ")), "{all:?}");
}

#[test]
fn load_remembers_an_absolute_source_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, minimal("")).unwrap();
    std::fs::write(dir.path().join("k"), "").unwrap();
    let c = Config::load(&path).unwrap();
    let source = c.source.expect("load sets source");
    assert!(source.is_absolute());
    assert_eq!(source, std::fs::canonicalize(&path).unwrap());
    assert!(c.interface.private_key_file.is_absolute());
}

#[test]
fn full_tunnel_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let server = Config::load(&dir.join("full-tunnel-server.toml")).unwrap();
    let client = Config::load(&dir.join("full-tunnel-client.toml")).unwrap();
    assert_eq!(server.interface.masquerade.as_deref(), Some("eth0"));
    assert!(server.peers.iter().all(|p| p.endpoint.is_none()));
    assert_eq!(client.interface.table, RouteTable::Auto);
    assert_eq!(client.interface.dns.servers.len(), 2);
    let all: Vec<String> = client.peers[0]
        .allowed_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(all, ["0.0.0.0/0", "::/0"]);
    // The server's key in the client is the one the server's peers would
    // be given, and the laptops' keys differ.
    assert_ne!(server.peers[0].public_key, server.peers[1].public_key);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Whatever the dns entries, table, masquerade and metrics_listen
    /// values say, validation never panics, and an error names its key.
    #[test]
    fn operations_keys_never_panic(
        dns in proptest::collection::vec("\\PC{0,40}", 0..4),
        table in "\\PC{0,12}",
        number in proptest::prelude::any::<i64>(),
        masquerade in "\\PC{0,20}",
        listen in "\\PC{0,24}",
    ) {
        let quoted: Vec<String> = dns.iter().map(|d| format!("{:?}", d)).collect();
        for table_value in [format!("{table:?}"), number.to_string()] {
            let text = minimal(&format!(
                "dns = [{}]\ntable = {table_value}\nmasquerade = {masquerade:?}\nmetrics_listen = {listen:?}\n",
                quoted.join(", ")
            ));
            if let Err(ConfigErrors(errors)) = Config::from_toml_str(&text, Path::new("/x")) {
                for e in errors {
                    proptest::prop_assert!(
                        e.key.is_empty() || e.key.starts_with("interface."),
                        "{e}"
                    );
                }
            }
        }
    }
}
