//! The metrics text parses as Prometheus exposition, and carries the
//! snapshot's figures.

use super::*;
use crate::test_tunnel::{client_public_key, server_with_traffic};

/// One sample: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: LabelList,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{k="v",...}` with OpenMetrics escapes; returns the labels and the rest.
type LabelList = Vec<(String, String)>;

fn parse_labels(text: &str) -> Result<(LabelList, &str), String> {
    let mut labels = Vec::new();
    let mut rest = text.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after) = rest.split_once("=\"").ok_or("no =\"")?;
        if !is_metric_name(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses OpenMetrics text strictly: every line is `# HELP`, `# TYPE`,
/// `# UNIT` or a sample of a family whose TYPE came before it (a counter's
/// samples end in `_total`), no series twice, `# EOF` last.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut seen = std::collections::HashSet::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    if lines.last() != Some(&"# EOF") {
        return Err("does not end with # EOF".into());
    }
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name, rest) = (words.next(), words.next(), words.next());
            let name = name
                .filter(|n| is_metric_name(n))
                .ok_or(format!("{line:?}"))?;
            match (kind, rest) {
                (Some("TYPE"), Some(t)) if ["counter", "gauge"].contains(&t) => {
                    types.insert(name.to_owned(), t.to_owned());
                }
                (Some("HELP" | "UNIT"), Some(_)) => {}
                _ => return Err(format!("bad comment {line:?}")),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or(format!("{line:?}"))?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(|e| format!("{e} in {line:?}"))?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let value: f64 = rest
            .strip_prefix(' ')
            .and_then(|v| v.parse().ok())
            .ok_or(format!("bad value in {line:?}"))?;
        let family = match types.get(name) {
            Some(t) if t == "gauge" => name,
            _ => match name.strip_suffix("_total") {
                Some(family) if types.get(family).is_some_and(|t| t == "counter") => family,
                _ => return Err(format!("no TYPE before {line:?}")),
            },
        };
        let _ = family;
        if !seen.insert((name.to_owned(), format!("{labels:?}"))) {
            return Err(format!("series twice: {line:?}"));
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

#[test]
fn the_strict_parser_refuses_broken_text() {
    assert!(parse("# TYPE a gauge\na 1\n# EOF\n").is_ok());
    for bad in [
        "# TYPE a gauge\na 1\n",
        "a 1\n# EOF\n",
        "# TYPE a gauge\na{x=\"1} 1\n# EOF\n",
        "# TYPE a gauge\na x\n# EOF\n",
        "# TYPE a counter\na 1\n# EOF\n",
        "# TYPE a gauge\na 1\na 2\n# EOF\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    let parsed = parse("# TYPE a gauge\na{k=\"x=\\\"y\\\\\",l=\"\"} 2.5\n# EOF\n").unwrap();
    assert_eq!(parsed[0].labels[0], ("k".into(), "x=\"y\\".into()));
    assert_eq!(parsed[0].value, 2.5);
}

#[test]
fn metrics_parse_and_carry_the_snapshot() {
    let server = server_with_traffic();
    let snapshot = Snapshot::collect(&server.input());
    let text = encode_snapshot(&snapshot);
    let scrape = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let peer = client_public_key();
    let p = |more: &[(&'static str, &'static str)]| {
        let mut all = vec![("interface", "tgp5"), ("peer", peer.as_str())];
        all.extend_from_slice(more);
        all
    };
    let data = snapshot.peers[0].data.as_ref().unwrap();
    assert_eq!(sample(&scrape, "tgp_peer_session_up", &p(&[])), 1.0);
    assert_eq!(
        sample(
            &scrape,
            "tgp_peer_bytes_total",
            &p(&[("direction", "received")])
        ),
        data.bytes_received as f64
    );
    assert!(data.bytes_received > 200 * 100, "{}", data.bytes_received);
    assert_eq!(
        sample(
            &scrape,
            "tgp_peer_packets_total",
            &p(&[("direction", "sent")])
        ),
        data.packets_sent as f64
    );
    assert_eq!(
        sample(&scrape, "tgp_peer_rtt_seconds", &p(&[])),
        data.rtt_seconds
    );
    assert_eq!(
        sample(
            &scrape,
            "tgp_peer_loss_ratios",
            &p(&[("direction", "inbound")])
        ),
        data.loss_inbound
    );
    assert!(sample(&scrape, "tgp_peer_pacing_rate_bits_per_second", &p(&[])) > 0.0);
    assert_eq!(
        sample(&scrape, "tgp_peer_drops_total", &p(&[("reason", "forged")])),
        0.0
    );
    assert!(sample(&scrape, "tgp_peer_added_delay_samples_total", &p(&[])) > 0.0);
    sample(
        &scrape,
        "tgp_peer_added_delay_seconds",
        &p(&[("quantile", "0.99")]),
    );
    assert_eq!(
        sample(
            &scrape,
            "tgp_peer_repairs_sent_total",
            &p(&[("kind", "proactive")])
        ),
        data.repairs_sent["proactive"] as f64
    );
    sample(
        &scrape,
        "tgp_peer_redundant_received_total",
        &p(&[("kind", "repairs")]),
    );
    assert_eq!(
        sample(
            &scrape,
            "tgp_peer_paced_datagrams_total",
            &p(&[("outcome", "sent")])
        ),
        data.paced["sent"] as f64
    );
    assert!(data.paced["sent"] > 0);
    assert_eq!(
        sample(
            &scrape,
            "tgp_timer_wake_ups_total",
            &[("interface", "tgp5")]
        ),
        snapshot.timer_lateness.samples as f64
    );
    sample(
        &scrape,
        "tgp_timer_lateness_seconds",
        &[("interface", "tgp5"), ("quantile", "0.5")],
    );
    assert!(
        sample(
            &scrape,
            "tgp_peer_handshake_packets_total",
            &p(&[("direction", "sent")])
        ) > 0.0
    );
    assert_eq!(
        sample(
            &scrape,
            "tgp_drops_total",
            &[
                ("interface", "tgp5"),
                ("layer", "adapter"),
                ("reason", "no_route")
            ]
        ),
        1.0
    );
    assert_eq!(
        sample(&scrape, "tgp_tun_packets_total", &[("direction", "out")]),
        34.0
    );
    assert_eq!(sample(&scrape, "tgp_peers", &[]), 1.0);
}

#[test]
fn request_lines_are_read_strictly() {
    assert_eq!(
        request_target("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(("GET", "/metrics"))
    );
    assert_eq!(
        request_target("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
        Some(("GET", "/metrics"))
    );
    assert_eq!(request_target("GET /metrics\r\n\r\n"), None);
    assert_eq!(request_target(""), None);
    assert_eq!(request_target("\u{0}\u{1} garbage"), None);
}

#[tokio::test]
async fn the_endpoint_answers_get_metrics_over_http() {
    let (tx, mut rx) = mpsc::channel(4);
    // A port found free may be taken before `serve` binds it (other tests
    // and processes on the machine): try another, a bounded number of times.
    let mut served = None;
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        match serve(address, tx.clone()).await {
            Ok(()) => {
                served = Some(address);
                break;
            }
            Err(error) if format!("{error:#}").contains("in use") => continue,
            Err(error) => panic!("{error:#}"),
        }
    }
    let address = served.expect("a free port within 20 tries");
    drop(tx);
    tokio::spawn(async move {
        while let Some(request) = rx.recv().await {
            if let ControlRequest::Metrics(reply) = request {
                let _ = reply.send("# EOF\n".to_string());
            }
        }
    });
    let get = |path: &'static str| async move {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let answer = get("/metrics").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains(CONTENT_TYPE));
    assert!(answer.ends_with("\r\n\r\n# EOF\n"), "{answer}");
    assert!(get("/other").await.starts_with("HTTP/1.1 404"));
}

proptest::proptest! {
    /// Any request head is answered without a panic.
    #[test]
    fn request_heads_never_panic(head in "\\PC{0,200}") {
        let _ = request_target(&head);
    }
}
