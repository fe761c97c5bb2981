//! An endpoint (a server with one configured client, and a client that
//! knows the server) fed arbitrary datagrams from arbitrary addresses,
//! with time moving: never panics, never loops, never sends oversized
//! datagrams.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::endpoint::{Endpoint, EndpointConfig, PeerSettings};
use tgp_proto::Timestamp;

const UNIX_MS: u64 = 1_750_000_000_000;

fuzz_target!(|data: &[u8]| {
    let server_key = SigningKey::from_bytes(&[1; 32]);
    let client_key = SigningKey::from_bytes(&[2; 32]);
    let server_address: SocketAddr = "10.0.0.2:4500".parse().unwrap();
    let mut endpoints = [
        Endpoint::new(
            Timestamp::ZERO,
            UNIX_MS,
            server_key.clone(),
            EndpointConfig::default(),
            vec![PeerSettings { identity: client_key.verifying_key(), endpoint: None }],
            [3; 32],
        ),
        Endpoint::new(
            Timestamp::ZERO,
            UNIX_MS,
            client_key,
            EndpointConfig::default(),
            vec![PeerSettings { identity: server_key.verifying_key(), endpoint: Some(server_address) }],
            [4; 32],
        ),
    ];
    let mut now = Timestamp::ZERO;
    let mut buffer = Vec::new();
    // Records: [control][len][bytes]: control bit 0 picks the endpoint,
    // bits 1-2 the first byte (as given, 0x01, 0x02, 0x03), bits 3-4 the
    // source address, bits 5-7 milliseconds to advance.
    let mut rest = data;
    let mut count = 0;
    while let [control, len, tail @ ..] = rest {
        count += 1;
        if count > 300 {
            break;
        }
        let len = usize::from(*len).min(tail.len());
        let mut datagram = tail[..len].to_vec();
        rest = &tail[len..];
        match (control >> 1) & 3 {
            0 => {}
            kind => {
                if let Some(first) = datagram.first_mut() {
                    *first = kind;
                }
            }
        }
        let from: SocketAddr = match (control >> 3) & 3 {
            0 => "10.0.0.1:4500",
            1 => "10.6.6.6:4500",
            2 => "[fd00::1]:9",
            _ => "10.0.0.2:4500",
        }
        .parse()
        .unwrap();
        now += Duration::from_millis(u64::from(control >> 5) * 7);
        let endpoint = &mut endpoints[usize::from(control & 1)];
        let _ = endpoint.handle_datagram(now, from, &mut datagram);
        if endpoint.poll_timeout().is_some_and(|t| t <= now) {
            endpoint.handle_timeout(now);
        }
        let mut sent = 0;
        loop {
            buffer.clear();
            let Some(transmit) = endpoint.poll_transmit(now, &mut buffer) else { break };
            assert!(transmit.size <= 1400 && transmit.size == buffer.len());
            sent += 1;
            assert!(sent < 10_000, "poll_transmit never stops");
        }
        while endpoint.poll_delivery().is_some() {}
        while endpoint.poll_event().is_some() {}
    }
});
