//! Mutations of valid, correctly signed traffic: a recorded client ↔
//! server exchange (handshake, data, rekey-free) is replayed into a fresh
//! server, packet by packet, with fuzzer-chosen replays, bit flips,
//! truncations, splices, edited `elapsed_ms`, other source addresses and
//! time jumps. Never panics, never loops, and what the server sends to an
//! address that never sent it anything authentic stays within three times
//! what it received from there.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tgp_proto::endpoint::{Endpoint, EndpointConfig, PeerSettings};
use tgp_proto::{DeliveryClass, Timestamp};

const UNIX_MS: u64 = 1_750_000_000_000;

fn client_address() -> SocketAddr {
    "10.0.0.1:4500".parse().unwrap()
}
fn server_address() -> SocketAddr {
    "10.0.0.2:4500".parse().unwrap()
}

fn server() -> Endpoint {
    Endpoint::new(
        Timestamp::ZERO,
        UNIX_MS,
        SigningKey::from_bytes(&[1; 32]),
        EndpointConfig::default(),
        vec![PeerSettings {
            identity: SigningKey::from_bytes(&[2; 32]).verifying_key(),
            endpoint: None,
        }],
        [3; 32],
    )
}

/// (time, datagram) the client sent the server, in order.
fn transcript() -> &'static Vec<(Timestamp, Vec<u8>)> {
    static TRANSCRIPT: OnceLock<Vec<(Timestamp, Vec<u8>)>> = OnceLock::new();
    TRANSCRIPT.get_or_init(|| {
        let mut server = server();
        let mut client = Endpoint::new(
            Timestamp::ZERO,
            UNIX_MS,
            SigningKey::from_bytes(&[2; 32]),
            EndpointConfig::default(),
            vec![PeerSettings {
                identity: SigningKey::from_bytes(&[1; 32]).verifying_key(),
                endpoint: Some(server_address()),
            }],
            [4; 32],
        );
        let mut recorded = Vec::new();
        let mut buffer = Vec::new();
        let mut now = Timestamp::ZERO;
        for step in 0..600u32 {
            now += Duration::from_millis(1);
            if step % 20 == 10 {
                let _ = client.send_packet(now, 0, 7, DeliveryClass::Reliable, &[step as u8; 200]);
                let _ = client.send_packet(now, 0, 8, DeliveryClass::Deadline(Duration::from_millis(50)), &[1; 100]);
            }
            for endpoint in [&mut client, &mut server] {
                if endpoint.poll_timeout().is_some_and(|t| t <= now) {
                    endpoint.handle_timeout(now);
                }
            }
            loop {
                buffer.clear();
                let Some(t) = client.poll_transmit(now, &mut buffer) else { break };
                let _ = t;
                recorded.push((now, buffer.clone()));
                let _ = server.handle_datagram(now, client_address(), &mut buffer.clone());
            }
            loop {
                buffer.clear();
                if server.poll_transmit(now, &mut buffer).is_none() {
                    break;
                }
                let _ = client.handle_datagram(now, server_address(), &mut buffer);
            }
            while client.poll_delivery().is_some() {}
            while server.poll_delivery().is_some() {}
        }
        recorded
    })
}

fuzz_target!(|data: &[u8]| {
    let transcript = transcript();
    if transcript.is_empty() {
        return;
    }
    let mut server = server();
    let mut buffer = Vec::new();
    let mut now = Timestamp::ZERO;
    // Per address: bytes received from it, bytes sent to it.
    let mut books: HashMap<SocketAddr, (u64, u64)> = HashMap::new();
    let (&prefix, mut rest) = match data.split_first() {
        Some(split) => split,
        None => return,
    };
    // Play an honest prefix first (0..=all of the transcript).
    let prefix = usize::from(prefix) * transcript.len() / 255;
    for (at, datagram) in &transcript[..prefix] {
        now = now.max(*at);
        let _ = server.handle_datagram(now, client_address(), &mut datagram.clone());
        drain(&mut server, now, &mut buffer, &mut books);
    }
    let attacker: SocketAddr = "10.6.6.6:4500".parse().unwrap();
    let mut validated = false;
    let mut ops = 0;
    while let [index, kind, arg, tail @ ..] = rest {
        rest = tail;
        ops += 1;
        if ops > 200 {
            break;
        }
        let (_, original) = &transcript[usize::from(*index) * transcript.len() / 256];
        let mut datagram = original.clone();
        let mut from = client_address();
        match kind % 8 {
            0 => {}
            1 => {
                if !datagram.is_empty() {
                    let at = usize::from(*arg) * datagram.len() / 256;
                    datagram[at] ^= rest.first().copied().unwrap_or(1).max(1);
                }
            }
            2 => datagram.truncate(usize::from(*arg) * datagram.len() / 256),
            3 => {
                let n = usize::from(*arg).min(rest.len());
                let at = datagram.len() / 2;
                datagram.truncate(at);
                datagram.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
            }
            4 => {
                if datagram.len() > 38 && datagram[0] == 1 {
                    datagram[34..38].copy_from_slice(&(u32::from(*arg) * 40).to_be_bytes());
                }
            }
            5 => from = "10.6.6.6:4500".parse().unwrap(),
            6 => from = SocketAddr::from(([10, 7, 0, *arg], 4000 + u16::from(*arg))),
            _ => {
                now += Duration::from_millis(u64::from(*arg) * 20);
                continue;
            }
        }
        books.entry(from).or_default().0 += datagram.len() as u64;
        let _ = server.handle_datagram(now, from, &mut datagram);
        // The fuzzed server draws the same nonces as the recorded one, so
        // replayed proofs can be genuinely new to it: an address the peer
        // moved to has proven itself, and the 3x limit no longer applies.
        if server.peer_status(0).and_then(|s| s.endpoint) == Some(attacker) {
            validated = true;
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        drain(&mut server, now, &mut buffer, &mut books);
    }
    // Let the server's timers run out a while (it must stop by itself).
    for _ in 0..50 {
        let Some(t) = server.poll_timeout() else { break };
        now = now.max(t);
        server.handle_timeout(now);
        drain(&mut server, now, &mut buffer, &mut books);
    }
    if let (false, Some(&(received, sent))) = (validated, books.get(&attacker)) {
        // The attacker never proves anything: at most 3x what it sent.
        assert!(sent <= 3 * received, "sent {sent} bytes to an unvalidated address that sent {received}");
    }
});

fn drain(
    server: &mut Endpoint,
    now: Timestamp,
    buffer: &mut Vec<u8>,
    books: &mut HashMap<SocketAddr, (u64, u64)>,
) {
    let mut sent = 0;
    loop {
        buffer.clear();
        let Some(transmit) = server.poll_transmit(now, buffer) else { break };
        assert!(transmit.size <= 1452);
        books.entry(transmit.destination).or_default().1 += transmit.size as u64;
        sent += 1;
        assert!(sent < 10_000, "poll_transmit never stops");
    }
    while server.poll_delivery().is_some() {}
    while server.poll_event().is_some() {}
}
