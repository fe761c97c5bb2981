//! A machine-readable snapshot of a running tunnel, built from the same
//! [`StatusInput`] as the `tgp status` text: `tgp status --json` prints it
//! as JSON, and [`crate::metrics`] turns it into Prometheus metrics.
//!
//! Data-plane counters belong to the current session: a new session with
//! a peer (not a rekey) starts them from zero again.

use crate::control::StatusInput;
use serde::Serialize;
use std::collections::BTreeMap;
use tgp_proto::delivery::DelayHistogram;
use tgp_proto::endpoint::SessionState;
use tgp_proto::handshake::DropReason as HandshakeDrop;

/// Percentiles of a delay (added delay, timer lateness) that are reported.
pub const DELAY_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

/// The whole tunnel.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// The interface name.
    pub interface: String,
    /// The underlay socket's address.
    pub listen: Option<String>,
    /// Seconds since `tgp up`.
    pub uptime_seconds: f64,
    /// IP packets read from the TUN.
    pub tun_packets_in: u64,
    /// IP packets written to the TUN.
    pub tun_packets_out: u64,
    /// ICMP errors written back to the TUN.
    pub icmp_errors_sent: u64,
    /// How late the daemon's timer woke it (a busy host paces late).
    pub timer_lateness: DelaySnapshot,
    /// Datagrams the endpoint dropped before any peer saw them, by reason.
    pub endpoint_drops: BTreeMap<&'static str, u64>,
    /// IP packets the adapters dropped, by reason.
    pub adapter_drops: BTreeMap<&'static str, u64>,
    /// Every peer.
    pub peers: Vec<PeerSnapshot>,
}

/// One peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerSnapshot {
    /// Base64 public key.
    pub public_key: String,
    /// `idle`, `handshaking` or `up`.
    pub state: &'static str,
    /// Where its packets come from.
    pub endpoint: Option<String>,
    /// The current session's id (16 hex digits); a rekey changes it.
    pub session_id: Option<String>,
    /// Its allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Sessions set up so far (rekeys included).
    pub sessions_started: u64,
    /// IP packets waiting for a session.
    pub pending_packets: usize,
    /// The current session's data plane.
    pub data: Option<DataSnapshot>,
    /// The current or last handshake.
    pub handshake: Option<HandshakeSnapshot>,
    /// Split mode's counters.
    pub split: Option<SplitSnapshot>,
}

/// A session's data plane.
#[derive(Clone, Debug, Serialize)]
pub struct DataSnapshot {
    /// Smoothed round-trip time, seconds.
    pub rtt_seconds: f64,
    /// Least round-trip time, seconds.
    pub min_rtt_seconds: f64,
    /// Loss of the peer's packets measured here (0..1).
    pub loss_inbound: f64,
    /// Loss of ours as the peer reports it (0..1).
    pub loss_outbound: f64,
    /// Proactive repair per source symbol.
    pub redundancy: f64,
    /// Pacing rate, bits per second.
    pub pacing_rate_bits_per_second: u64,
    /// Bottleneck estimate, bits per second.
    pub bottleneck_bits_per_second: u64,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Bytes received (UDP payload).
    pub bytes_received: u64,
    /// Segments delivered to this side.
    pub segments_delivered: u64,
    /// Payload bytes delivered to this side.
    pub bytes_delivered: u64,
    /// Source symbols recovered by FEC.
    pub fec_recovered: u64,
    /// Drops by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Delay the tunnel added to what it delivered here.
    pub added_delay: DelaySnapshot,
    /// Repair symbols sent: `proactive` (earned as sources went out) and
    /// `reactive` (fresh, for holes a receipt or the probe timer showed).
    pub repairs_sent: BTreeMap<&'static str, u64>,
    /// Symbols that arrived with nothing left to do: `sources` (already
    /// recovered) and `repairs` (their window already complete).
    pub redundant_received: BTreeMap<&'static str, u64>,
    /// Datagrams the pacer let out (`sent`), of which the sender was
    /// `short_of_data`, or paced `below_estimate` of the bottleneck.
    pub paced: BTreeMap<&'static str, u64>,
}

/// Percentiles of a delay histogram.
#[derive(Clone, Debug, Serialize)]
pub struct DelaySnapshot {
    /// Samples recorded.
    pub samples: u64,
    /// One entry for each of [`DELAY_QUANTILES`].
    pub quantiles: Vec<DelayQuantile>,
}

/// One percentile of a delay.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DelayQuantile {
    /// Which (0.5 is the median).
    pub quantile: f64,
    /// The delay, seconds (the upper bound of its histogram bucket).
    pub seconds: f64,
}

/// A handshake's counters.
#[derive(Clone, Debug, Serialize)]
pub struct HandshakeSnapshot {
    /// Packets sent.
    pub packets_sent: u64,
    /// Packets received.
    pub packets_received: u64,
    /// Signature verifications.
    pub signature_verifications: u64,
    /// Drops by reason (every reason, zeros too).
    pub drops: BTreeMap<&'static str, u64>,
}

/// Split mode's counters for one peer.
#[derive(Clone, Debug, Serialize)]
pub struct SplitSnapshot {
    /// Streams open now.
    pub open_streams: usize,
    /// Local connections accepted.
    pub accepted: u64,
    /// Streams the peer opened.
    pub opened_by_peer: u64,
    /// Far-end connections that reached their destination.
    pub connected: u64,
    /// Stream bytes sent to the peer.
    pub bytes_to_peer: u64,
    /// Stream bytes from the peer.
    pub bytes_from_peer: u64,
    /// Bytes waiting for a local socket.
    pub buffered_bytes: usize,
    /// The stream window in force, bytes.
    pub window: u64,
    /// Connections refused at the stream cap.
    pub refused_at_cap: u64,
    /// Messages that broke the protocol.
    pub malformed: u64,
    /// Resets sent, by reason.
    pub resets_sent: BTreeMap<&'static str, u64>,
    /// Resets received, by reason.
    pub resets_received: BTreeMap<&'static str, u64>,
}

impl DelaySnapshot {
    /// The samples and [`DELAY_QUANTILES`] of `histogram`.
    pub fn of(histogram: &DelayHistogram) -> DelaySnapshot {
        DelaySnapshot {
            samples: histogram.count(),
            quantiles: DELAY_QUANTILES
                .iter()
                .map(|&quantile| DelayQuantile {
                    quantile,
                    seconds: histogram.percentile(quantile).as_secs_f64(),
                })
                .collect(),
        }
    }
}

impl Snapshot {
    /// Takes a snapshot.
    pub fn collect(input: &StatusInput<'_>) -> Snapshot {
        let drops = input.endpoint.drops();
        let endpoint_drops = BTreeMap::from([
            ("not_tgp", drops.not_tgp),
            ("truncated", drops.truncated),
            ("unknown_peer", drops.unknown_peer),
            ("unknown_session", drops.unknown_session),
            ("stale_handshake", drops.stale_handshake),
            ("no_session", drops.no_session),
            ("send_refused", drops.send_refused),
        ]);
        let peers = (0..input.endpoint.peer_count())
            .filter_map(|peer| peer_snapshot(input, peer))
            .collect();
        Snapshot {
            interface: input.config.interface.name.clone(),
            listen: input.listen.map(|a| a.to_string()),
            uptime_seconds: input.uptime.as_secs_f64(),
            tun_packets_in: input.packets_from_tun,
            tun_packets_out: input.packets_to_tun,
            icmp_errors_sent: input.icmp_errors_sent,
            timer_lateness: DelaySnapshot::of(input.timer_lateness),
            endpoint_drops,
            adapter_drops: input.adapter_drops.iter().collect(),
            peers,
        }
    }

    /// The snapshot as pretty-printed JSON, with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
        text.push('\n');
        text
    }
}

fn peer_snapshot(input: &StatusInput<'_>, peer: usize) -> Option<PeerSnapshot> {
    let status = input.endpoint.peer_status(peer)?;
    let state = match status.state {
        SessionState::Idle => "idle",
        SessionState::Handshaking => "handshaking",
        SessionState::Up => "up",
    };
    let data = status.data.as_ref().map(|d| {
        let x = &d.drops;
        DataSnapshot {
            rtt_seconds: d.smoothed_rtt.as_secs_f64(),
            min_rtt_seconds: d.min_rtt.as_secs_f64(),
            loss_inbound: d.loss_inbound,
            loss_outbound: d.loss_outbound,
            redundancy: d.redundancy,
            pacing_rate_bits_per_second: d.pacing_rate_bits_per_second,
            bottleneck_bits_per_second: d.bottleneck_bits_per_second,
            packets_sent: d.datagrams_sent,
            bytes_sent: d.bytes_sent,
            packets_received: d.datagrams_received,
            bytes_received: d.bytes_received,
            segments_delivered: d.segments_delivered,
            bytes_delivered: d.bytes_delivered,
            fec_recovered: d.fec_recovered,
            drops: BTreeMap::from([
                ("truncated", x.truncated),
                ("not_data", x.not_data),
                ("unknown_session", x.unknown_session),
                ("forged", x.forged),
                ("replayed", x.replayed),
                ("stale", x.stale),
                ("malformed", x.malformed),
                ("queue_full", x.queue_full),
                ("queue_delay", x.queue_delay),
                ("too_large", x.too_large),
                ("expired_in_queue", x.expired_in_queue),
                ("arrived_late", x.arrived_late),
            ]),
            added_delay: DelaySnapshot::of(&d.added_delay),
            repairs_sent: BTreeMap::from([
                ("proactive", d.proactive_repairs_sent),
                ("reactive", d.reactive_repairs_sent),
            ]),
            redundant_received: BTreeMap::from([
                ("sources", d.redundant_sources),
                ("repairs", d.redundant_repairs),
            ]),
            paced: BTreeMap::from([
                ("sent", d.paced_sent),
                ("short_of_data", d.paced_short_of_data),
                ("below_estimate", d.paced_below_estimate),
            ]),
        }
    });
    let handshake = status.handshake.as_ref().map(|h| HandshakeSnapshot {
        packets_sent: h.packets_sent,
        packets_received: h.packets_received,
        signature_verifications: h.signature_verifications,
        drops: HandshakeDrop::ALL
            .iter()
            .map(|r| (r.name(), h.drops(*r)))
            .collect(),
    });
    let split = input.split.stats(peer).map(|s| SplitSnapshot {
        open_streams: s.open_streams,
        accepted: s.accepted,
        opened_by_peer: s.opened_by_peer,
        connected: s.connected,
        bytes_to_peer: s.bytes_to_peer,
        bytes_from_peer: s.bytes_from_peer,
        buffered_bytes: s.buffered_bytes,
        window: s.window,
        refused_at_cap: s.refused_at_cap,
        malformed: s.malformed,
        resets_sent: s.resets_sent.nonzero().into_iter().collect(),
        resets_received: s.resets_received.nonzero().into_iter().collect(),
    });
    Some(PeerSnapshot {
        public_key: crate::keys::encode_key(&status.identity),
        state,
        endpoint: status.endpoint.map(|a| a.to_string()),
        session_id: status.session_id.map(|id| format!("{id:016x}")),
        allowed_ips: input
            .config
            .peers
            .get(peer)
            .map(|p| p.allowed_ips.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        sessions_started: status.sessions_started,
        pending_packets: status.pending_packets,
        data,
        handshake,
        split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tunnel::{client_public_key, server_with_traffic};
    use serde_json::Value;

    #[test]
    fn json_status_has_every_figure_of_a_live_session() {
        let server = server_with_traffic();
        let json: Value = serde_json::from_str(&Snapshot::collect(&server.input()).to_json())
            .expect("status --json is JSON");
        assert_eq!(json["interface"], "tgp5");
        assert_eq!(json["listen"], "[::]:51900");
        assert_eq!(json["tun_packets_out"], 34);
        assert_eq!(json["adapter_drops"]["no_route"], 1);
        assert_eq!(json["endpoint_drops"]["unknown_peer"], 0);
        let peer = &json["peers"][0];
        assert_eq!(peer["public_key"], client_public_key().as_str());
        assert_eq!(peer["state"], "up");
        assert_eq!(peer["endpoint"], "10.0.0.2:40000");
        assert_eq!(peer["session_id"].as_str().unwrap().len(), 16);
        assert_eq!(peer["allowed_ips"][0], "10.77.0.2/32");
        assert!(peer["sessions_started"].as_u64().unwrap() >= 1);
        let data = &peer["data"];
        assert!(data["packets_received"].as_u64().unwrap() >= 100, "{data}");
        assert!(
            data["bytes_delivered"].as_u64().unwrap() >= 100 * 200,
            "{data}"
        );
        assert!(data["rtt_seconds"].as_f64().unwrap() >= 0.0);
        assert!(data["loss_inbound"].as_f64().unwrap() < 0.05, "{data}");
        assert!(data["pacing_rate_bits_per_second"].as_u64().unwrap() > 0);
        assert_eq!(data["drops"]["forged"], 0);
        assert_eq!(data["drops"].as_object().unwrap().len(), 12);
        let delay = &data["added_delay"];
        assert!(delay["samples"].as_u64().unwrap() > 0, "{delay}");
        assert_eq!(
            delay["quantiles"].as_array().unwrap().len(),
            DELAY_QUANTILES.len()
        );
        assert_eq!(delay["quantiles"][0]["quantile"], 0.5);
        assert!(delay["quantiles"][3]["seconds"].as_f64().unwrap() >= 0.0);
        assert!(data["repairs_sent"]["proactive"].is_u64(), "{data}");
        assert!(data["repairs_sent"]["reactive"].is_u64(), "{data}");
        assert!(data["redundant_received"]["repairs"].is_u64(), "{data}");
        let paced = &data["paced"];
        assert!(paced["sent"].as_u64().unwrap() > 0, "{paced}");
        assert!(
            paced["short_of_data"].as_u64().unwrap() <= paced["sent"].as_u64().unwrap(),
            "{paced}"
        );
        assert!(paced["below_estimate"].is_u64(), "{paced}");
        assert!(json["timer_lateness"]["samples"].is_u64());
        assert_eq!(
            json["timer_lateness"]["quantiles"]
                .as_array()
                .unwrap()
                .len(),
            DELAY_QUANTILES.len()
        );
        assert!(peer["handshake"]["packets_sent"].as_u64().unwrap() > 0);
        assert_eq!(peer["split"]["open_streams"], 0);
        assert!(peer["split"]["window"].as_u64().unwrap() > 0);
        assert_eq!(peer["split"]["connected"], 0);
    }
}
