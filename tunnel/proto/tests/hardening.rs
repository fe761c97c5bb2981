//! What strangers and replays cannot do to an endpoint, sans-IO and
//! deterministic: replays after a restart draw at most three times their
//! bytes and never move the peer; replays against a live session cost no
//! signature check; forged fresh commitments are held to the admission
//! budgets while the session carries on; a client gets through a loaded
//! responder with a cookie; a silent session is freed.

mod common;

use common::{identity, TEST_UNIX_TIME_MS};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tgp_proto::crypto::SigningKey;
use tgp_proto::endpoint::{
    AdmissionConfig, DatagramOutcome, Endpoint, EndpointConfig, PeerSettings, SessionState,
};
use tgp_proto::wire::handshake::HandshakePacket;
use tgp_proto::{DeliveryClass, Timestamp};

const CLIENT: &str = "10.0.0.1:4500";
const SERVER: &str = "10.0.0.2:4500";
const ATTACKER: &str = "10.6.6.6:4500";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

struct Keys {
    client: SigningKey,
    server: SigningKey,
}

fn keys() -> Keys {
    Keys {
        client: identity(1),
        server: identity(2),
    }
}

fn server(keys: &Keys, now: Timestamp, config: EndpointConfig, seed: u8) -> Endpoint {
    Endpoint::new(
        now,
        TEST_UNIX_TIME_MS + now.as_nanos() / 1_000_000,
        keys.server.clone(),
        config,
        vec![PeerSettings {
            identity: keys.client.verifying_key(),
            endpoint: None,
        }],
        [seed; 32],
    )
}

fn client(keys: &Keys, now: Timestamp, seed: u8) -> Endpoint {
    Endpoint::new(
        now,
        TEST_UNIX_TIME_MS + now.as_nanos() / 1_000_000,
        keys.client.clone(),
        EndpointConfig::default(),
        vec![PeerSettings {
            identity: keys.server.verifying_key(),
            endpoint: Some(addr(SERVER)),
        }],
        [seed; 32],
    )
}

/// Bytes an endpoint sent, per destination.
#[derive(Default)]
struct Books {
    sent_to: HashMap<SocketAddr, u64>,
}

/// Runs an endpoint's timers and drains what it sends; returns the
/// datagrams with their destinations.
fn step(endpoint: &mut Endpoint, now: Timestamp, books: &mut Books) -> Vec<(SocketAddr, Vec<u8>)> {
    if endpoint.poll_timeout().is_some_and(|t| t <= now) {
        endpoint.handle_timeout(now);
    }
    let mut out = Vec::new();
    let mut buffer = Vec::new();
    while let Some(transmit) = endpoint.poll_transmit(now, &mut buffer) {
        *books.sent_to.entry(transmit.destination).or_default() += transmit.size as u64;
        out.push((transmit.destination, std::mem::take(&mut buffer)));
        assert!(out.len() < 10_000);
    }
    while endpoint.poll_delivery().is_some() {}
    while endpoint.poll_event().is_some() {}
    out
}

/// Client and server exchange for `duration` in 1 ms steps from `start`
/// (no loss); returns the end time and the client's datagrams in order.
fn exchange(
    client: &mut Endpoint,
    server: &mut Endpoint,
    start: Timestamp,
    duration: Duration,
    server_books: &mut Books,
) -> (Timestamp, Vec<Vec<u8>>) {
    let mut now = start;
    let mut recorded = Vec::new();
    let mut client_books = Books::default();
    while now < start + duration {
        now += ms(1);
        for (to, mut datagram) in step(client, now, &mut client_books) {
            recorded.push(datagram.clone());
            if to == addr(SERVER) {
                server.handle_datagram(now, addr(CLIENT), &mut datagram);
            }
        }
        for (to, mut datagram) in step(server, now, server_books) {
            if to == addr(CLIENT) {
                client.handle_datagram(now, addr(SERVER), &mut datagram);
            }
        }
    }
    (now, recorded)
}

fn up(endpoint: &Endpoint) -> bool {
    endpoint
        .peer_status(0)
        .is_some_and(|s| s.state == SessionState::Up)
}

fn first_commitment(recorded: &[Vec<u8>]) -> Vec<u8> {
    recorded
        .iter()
        .find(|d| HandshakePacket::parse(d).is_ok_and(|p| p.artifacts.iter().any(|a| a.kind == 0)))
        .cloned()
        .expect("the client sent its commitment")
}

#[test]
fn a_replay_after_a_restart_draws_at_most_three_times_its_bytes_and_moves_nothing() {
    let keys = keys();
    let mut books = Books::default();
    let mut c = client(&keys, Timestamp::ZERO, 3);
    let mut s = server(&keys, Timestamp::ZERO, EndpointConfig::default(), 4);
    let (now, recorded) = exchange(&mut c, &mut s, Timestamp::ZERO, ms(500), &mut books);
    assert!(up(&c) && up(&s));
    let captured = first_commitment(&recorded);
    // The server restarts; the real client is offline. An attacker replays
    // the captured first packet once from its own address: without the
    // limit the responder would flood it every 5 ms until its deadline
    // (about 2000 packets).
    let mut s = server(&keys, now, EndpointConfig::default(), 5);
    let mut books = Books::default();
    let mut now = now;
    s.handle_datagram(now, addr(ATTACKER), &mut captured.clone());
    for _ in 0..20_000 {
        now += ms(1);
        step(&mut s, now, &mut books);
    }
    let sent = books.sent_to.get(&addr(ATTACKER)).copied().unwrap_or(0);
    let received = captured.len() as u64;
    assert!(sent > 0, "the responder answered the commitment");
    assert!(sent <= 3 * received, "sent {sent} for {received}");
    // Replayed again and again: each copy adds to the budget, none to the
    // signature work, and the peer's address never moves there.
    let mut received = received;
    for i in 0..10_000u64 {
        if i % 2 == 0 {
            now += ms(1);
        }
        received += captured.len() as u64;
        s.handle_datagram(now, addr(ATTACKER), &mut captured.clone());
        step(&mut s, now, &mut books);
        assert_ne!(s.peer_status(0).unwrap().endpoint, Some(addr(ATTACKER)));
    }
    for _ in 0..20_000 {
        now += ms(1);
        step(&mut s, now, &mut books);
    }
    let sent = books.sent_to.get(&addr(ATTACKER)).copied().unwrap_or(0);
    assert!(sent <= 3 * received, "sent {sent} for {received}");
    assert!(
        s.drops().handshake_verifications <= 1,
        "one signature check for one distinct commitment, not {}",
        s.drops().handshake_verifications
    );
    assert_eq!(s.peer_status(0).unwrap().state, SessionState::Idle);
}

#[test]
fn replays_against_a_live_session_cost_no_signature_check() {
    let keys = keys();
    let mut books = Books::default();
    let mut c = client(&keys, Timestamp::ZERO, 3);
    let mut s = server(&keys, Timestamp::ZERO, EndpointConfig::default(), 4);
    let (now, recorded) = exchange(&mut c, &mut s, Timestamp::ZERO, ms(500), &mut books);
    let captured = first_commitment(&recorded);
    let verifications = s.drops().handshake_verifications;
    let mut attacker_books = Books::default();
    for _ in 0..10_000 {
        let outcome = s.handle_datagram(now, addr(ATTACKER), &mut captured.clone());
        assert!(matches!(
            outcome,
            DatagramOutcome::Handshake {
                progressed: false,
                ..
            }
        ));
        for (to, _) in step(&mut s, now, &mut attacker_books) {
            assert_ne!(to, addr(ATTACKER));
        }
    }
    assert_eq!(s.drops().handshake_verifications, verifications);
    // The session still carries data.
    c.send_packet(now, 0, 1, DeliveryClass::Reliable, b"still here")
        .unwrap();
    exchange(&mut c, &mut s, now, ms(100), &mut books);
    assert!(up(&s) && up(&c));
    assert!(s.data_plane(0).unwrap().stats().segments_delivered > 0);
}

/// A forged packet: the captured commitment with a fresh timestamp and a
/// new nonce (a valid layout for the configured key; the signature cannot
/// match), from `source`.
fn forge(captured: &[u8], unix_time_ms: u64, nonce: u64) -> Vec<u8> {
    let mut forged = captured.to_vec();
    // Header 39 bytes, then kind, length (3 bytes), then the commitment:
    // version 1, signer 32, peer 32, nonce 32, ephemeral 32, parameters 10,
    // time 8.
    let body = 39 + 3;
    let nonce_at = body + 1 + 32 + 32;
    forged[nonce_at..nonce_at + 8].copy_from_slice(&nonce.to_be_bytes());
    let time_at = body + 1 + 32 + 32 + 32 + 32 + 10;
    forged[time_at..time_at + 8].copy_from_slice(&unix_time_ms.to_be_bytes());
    forged
}

#[test]
fn forged_fresh_commitments_are_held_to_the_budgets() {
    let keys = keys();
    let mut books = Books::default();
    let mut c = client(&keys, Timestamp::ZERO, 3);
    let mut s = server(&keys, Timestamp::ZERO, EndpointConfig::default(), 4);
    let (mut now, recorded) = exchange(&mut c, &mut s, Timestamp::ZERO, ms(500), &mut books);
    let captured = first_commitment(&recorded);
    let start = now;
    let before = s.drops().handshake_verifications;
    // 50,000 forged packets per second for 2 s, from 1000 spoofed sources,
    // while the session carries traffic.
    let mut attacker_books = Books::default();
    let mut delivered_before = 0;
    for i in 0..100_000u64 {
        if i % 50 == 0 {
            now += ms(1);
            c.send_packet(now, 0, 1, DeliveryClass::Reliable, &[1; 500])
                .ok();
            let (later, _) = exchange(&mut c, &mut s, now, ms(1), &mut books);
            now = later;
            delivered_before = s.data_plane(0).unwrap().stats().segments_delivered;
        }
        let unix = TEST_UNIX_TIME_MS + now.as_nanos() / 1_000_000;
        let source = SocketAddr::from(([10, 9, (i % 1000 / 250) as u8, (i % 250) as u8], 9999));
        s.handle_datagram(now, source, &mut forge(&captured, unix, i));
        step(&mut s, now, &mut attacker_books);
    }
    let seconds = (now - start).as_secs_f64();
    let verified = s.drops().handshake_verifications - before;
    let config = AdmissionConfig::default();
    let budget = config.verification_burst + config.verifications_per_second * seconds;
    assert!(
        (verified as f64) <= budget + 1.0,
        "{verified} signature checks in {seconds:.1} s (budget {budget:.0})"
    );
    assert!(s.drops().retries_sent > 0, "cookies were asked for");
    // Retries are smaller than what they answer.
    for (to, bytes) in &attacker_books.sent_to {
        if *to != addr(CLIENT) {
            assert!(*bytes <= 66 * 100_000, "{to}: {bytes}");
        }
    }
    assert!(up(&s) && up(&c));
    assert!(
        delivered_before >= 1500,
        "the session carried on: {delivered_before}"
    );
}

#[test]
fn a_client_gets_through_a_loaded_responder_with_a_cookie() {
    let keys = keys();
    let mut books = Books::default();
    let config = EndpointConfig {
        admission: AdmissionConfig {
            always_require_cookie: true,
            ..AdmissionConfig::default()
        },
        ..EndpointConfig::default()
    };
    let mut c = client(&keys, Timestamp::ZERO, 3);
    let mut s = server(&keys, Timestamp::ZERO, config, 4);
    let (_, _) = exchange(&mut c, &mut s, Timestamp::ZERO, ms(1000), &mut books);
    assert!(s.drops().retries_sent >= 1);
    assert!(up(&c) && up(&s), "the handshake completed with a cookie");
    assert_eq!(s.peer_status(0).unwrap().endpoint, Some(addr(CLIENT)));
}

#[test]
fn a_session_silent_for_long_is_freed() {
    let keys = keys();
    let mut books = Books::default();
    let config = EndpointConfig {
        dead_session_timeout: Duration::from_secs(60),
        ..EndpointConfig::default()
    };
    let mut c = client(&keys, Timestamp::ZERO, 3);
    let mut s = server(&keys, Timestamp::ZERO, config, 4);
    let (mut now, _) = exchange(&mut c, &mut s, Timestamp::ZERO, ms(500), &mut books);
    assert!(up(&s));
    // The client vanishes; the server keeps trying to send it data.
    for _ in 0..70 {
        now += Duration::from_secs(1);
        s.send_packet(now, 0, 1, DeliveryClass::Reliable, &[0; 400])
            .ok();
        step(&mut s, now, &mut books);
        while let Some(t) = s.poll_timeout().filter(|&t| t <= now) {
            s.handle_timeout(t.max(now));
            step(&mut s, now, &mut books);
        }
    }
    assert!(s.data_plane(0).is_none(), "the session's state is freed");
    assert_ne!(s.peer_status(0).unwrap().state, SessionState::Up);
}

mod edges {
    use super::*;
    use proptest::prelude::*;

    fn edge_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            (u64::MAX - 3)..=u64::MAX,
            (TEST_UNIX_TIME_MS - 200_000)..(TEST_UNIX_TIME_MS + 200_000),
            any::<u64>()
        ]
    }

    fn edge_u32() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(0u32),
            (u32::MAX - 3)..=u32::MAX,
            0u32..20_000,
            any::<u32>()
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Commitment times and elapsed times at their edges, with a cookie
        /// or not, never panic, and each distinct commitment costs at most
        /// one signature check.
        #[test]
        fn edge_times_never_panic(times in proptest::collection::vec((edge_u64(), edge_u32(), any::<bool>()), 1..12)) {
            let keys = keys();
            let mut books = Books::default();
            let mut c = client(&keys, Timestamp::ZERO, 3);
            let mut s = server(&keys, Timestamp::ZERO, EndpointConfig::default(), 4);
            let (now, recorded) = exchange(&mut c, &mut s, Timestamp::ZERO, ms(30), &mut books);
            let captured = first_commitment(&recorded);
            let mut fresh = server(&keys, now, EndpointConfig::default(), 9);
            for (i, &(unix, elapsed, cookie)) in times.iter().enumerate() {
                let mut packet = forge(&captured, unix, i as u64);
                packet[34..38].copy_from_slice(&elapsed.to_be_bytes());
                if cookie {
                    tgp_proto::wire::handshake::append_cookie(&mut packet, 0, &[7; 16]);
                }
                fresh.handle_datagram(now, addr(ATTACKER), &mut packet);
                step(&mut fresh, now + ms(i as u64), &mut books);
            }
            prop_assert!(fresh.drops().handshake_verifications <= times.len() as u64);
        }
    }
}
