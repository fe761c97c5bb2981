//! For unit tests: a server-side endpoint with a live session and some
//! traffic behind it, built in memory (two endpoints, a lossless instant
//! network, time in 1 ms steps).

use crate::config::Config;
use crate::control::StatusInput;
use crate::split::SplitMode;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tgp_adapters::{DropCounters, DropReason};
use tgp_proto::crypto::SigningKey;
use tgp_proto::delivery::DelayHistogram;
use tgp_proto::endpoint::{Endpoint, EndpointConfig, PeerSettings};
use tgp_proto::{DeliveryClass, Timestamp};

/// The server side of a tunnel that has carried traffic.
pub struct ServerSide {
    /// The server's config.
    pub config: Config,
    /// The server's endpoint.
    pub endpoint: Endpoint,
    /// Its split mode (idle).
    pub split: SplitMode,
    /// Adapter drops (one `no_route` counted).
    pub drops: DropCounters,
    /// Timer lateness (none recorded).
    pub timer_lateness: DelayHistogram,
}

impl ServerSide {
    /// What status, JSON and metrics are made from.
    pub fn input(&self) -> StatusInput<'_> {
        StatusInput {
            config: &self.config,
            endpoint: &self.endpoint,
            adapter_drops: &self.drops,
            packets_from_tun: 12,
            packets_to_tun: 34,
            icmp_errors_sent: 1,
            timer_lateness: &self.timer_lateness,
            split: &self.split,
            listen: Some("[::]:51900".parse().unwrap()),
            uptime: Duration::from_secs(5),
        }
    }
}

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32])
}

/// The client's public key, base64.
pub fn client_public_key() -> String {
    crate::keys::public_key_base64(&key(2))
}

/// A server with one client that connected and sent 100 deadline packets
/// and 100 reliable ones.
pub fn server_with_traffic() -> ServerSide {
    let server_address: SocketAddr = "10.0.0.1:51900".parse().unwrap();
    let client_address: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let text = format!(
        "[interface]\nname = \"tgp5\"\naddresses = [\"10.77.0.1/24\"]\nlisten_port = 51900\n\
         private_key_file = \"k\"\n[[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.2/32\"]\n",
        client_public_key()
    );
    let config = Config::from_toml_str(&text, Path::new("/")).unwrap();
    let make = |own: u8, peer: u8, address: Option<SocketAddr>| {
        Endpoint::new(
            Timestamp::ZERO,
            1_800_000_000_000,
            key(own),
            EndpointConfig::default(),
            vec![PeerSettings {
                identity: key(peer).verifying_key(),
                endpoint: address,
            }],
            [own; 32],
        )
    };
    let mut server = make(1, 2, None);
    let mut client = make(2, 1, Some(server_address));
    let mut now = Timestamp::ZERO;
    let step = |now: Timestamp, server: &mut Endpoint, client: &mut Endpoint| {
        exchange(now, client, server, client_address);
        exchange(now, server, client, server_address);
        for endpoint in [&mut *server, &mut *client] {
            if endpoint.poll_timeout().is_some_and(|t| t <= now) {
                endpoint.handle_timeout(now);
            }
            while endpoint.poll_delivery().is_some() {}
            while endpoint.poll_event().is_some() {}
        }
    };
    for _ in 0..5000 {
        step(now, &mut server, &mut client);
        now += Duration::from_millis(1);
        if server.data_plane(0).is_some() && client.data_plane(0).is_some() {
            break;
        }
    }
    assert!(server.data_plane(0).is_some(), "no session within 5 s");
    for i in 0..200u32 {
        let class = if i % 2 == 0 {
            DeliveryClass::Deadline(Duration::from_millis(100))
        } else {
            DeliveryClass::Reliable
        };
        let _ = client.send_packet(now, 0, u64::from(i % 2), class, &[i as u8; 200]);
        let _ = server.send_packet(now, 0, 1, DeliveryClass::Reliable, &[7; 100]);
        step(now, &mut server, &mut client);
        now += Duration::from_millis(1);
    }
    for _ in 0..500 {
        step(now, &mut server, &mut client);
        now += Duration::from_millis(1);
    }
    let split = SplitMode::new(now, &config, 1, server.max_packet_size());
    let mut drops = DropCounters::new();
    drops.record(DropReason::NoRoute);
    ServerSide {
        config,
        endpoint: server,
        split,
        drops,
        timer_lateness: DelayHistogram::default(),
    }
}

/// Hands everything `sender` wants sent to `receiver`, at once.
fn exchange(now: Timestamp, sender: &mut Endpoint, receiver: &mut Endpoint, from: SocketAddr) {
    let mut buffer = Vec::new();
    let mut datagrams = Vec::new();
    while let Some(t) = sender.poll_transmit(now, &mut buffer) {
        datagrams.push(buffer[buffer.len() - t.size..].to_vec());
        buffer.clear();
    }
    for mut datagram in datagrams {
        let _ = receiver.handle_datagram(now, from, &mut datagram);
    }
}
