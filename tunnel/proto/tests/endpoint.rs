//! The endpoint in the simulator: sessions that carry packets both ways
//! under loss, rekeying without losing a packet, restarts of either side,
//! roaming, and the things that must not work (unknown keys, replays).

mod common;

use common::{identity, TEST_UNIX_TIME_MS};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tgp_proto::crypto::SigningKey;
use tgp_proto::endpoint::{
    DownReason, Endpoint, EndpointConfig, Event, PeerSettings, SessionState,
};
use tgp_proto::{DeliveryClass, Timestamp};
use tgp_sim::{LinkConfig, Node, Simulation, Verdict};

const CLIENT: &str = "10.0.0.1:4500";
const CLIENT_MOVED: &str = "10.9.9.9:4501";
const SERVER: &str = "10.0.0.2:4500";
const ATTACKER: &str = "10.6.6.6:4500";

fn address(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// An endpoint with one peer and a traffic source: `to_send` packets of
/// `packet_size` bytes on flow 1, numbered, offered as fast as the session
/// takes them (a refused packet is offered again, like a TCP resend).
struct EndpointNode {
    endpoint: Endpoint,
    to_send: u32,
    next_to_send: u32,
    packet_size: usize,
    /// Sequence numbers received, in arrival order.
    received: Vec<u32>,
    events: Vec<(Timestamp, Event)>,
    offer_at: Option<Timestamp>,
}

impl EndpointNode {
    fn new(
        own: SigningKey,
        peer: &SigningKey,
        peer_address: Option<SocketAddr>,
        config: EndpointConfig,
        seed: u8,
    ) -> Self {
        Self::starting_at(Timestamp::ZERO, own, peer, peer_address, config, seed)
    }

    /// A node (re)started at `now`, its wall clock advanced to match.
    fn starting_at(
        now: Timestamp,
        own: SigningKey,
        peer: &SigningKey,
        peer_address: Option<SocketAddr>,
        config: EndpointConfig,
        seed: u8,
    ) -> Self {
        let endpoint = Endpoint::new(
            now,
            TEST_UNIX_TIME_MS + now.as_nanos() / 1_000_000,
            own,
            config,
            vec![PeerSettings {
                identity: peer.verifying_key(),
                endpoint: peer_address,
            }],
            [seed; 32],
        );
        EndpointNode {
            endpoint,
            to_send: 0,
            next_to_send: 0,
            packet_size: 1000,
            received: Vec::new(),
            events: Vec::new(),
            offer_at: None,
        }
    }

    fn sending(mut self, count: u32) -> Self {
        self.to_send = count;
        self.offer_at = Some(Timestamp::ZERO);
        self
    }

    fn offer(&mut self, now: Timestamp) {
        if self.to_send == self.next_to_send {
            self.offer_at = None;
            return;
        }
        let up = self
            .endpoint
            .peer_status(0)
            .is_some_and(|s| s.state == SessionState::Up);
        if up {
            while self.next_to_send < self.to_send {
                let mut packet = vec![0u8; self.packet_size];
                packet[..4].copy_from_slice(&self.next_to_send.to_be_bytes());
                match self
                    .endpoint
                    .send_packet(now, 0, 1, DeliveryClass::Reliable, &packet)
                {
                    Ok(()) => self.next_to_send += 1,
                    Err(_) => break,
                }
            }
        }
        self.offer_at = (self.next_to_send < self.to_send).then(|| now + Duration::from_millis(1));
    }

    fn collect(&mut self, now: Timestamp) {
        while let Some(delivery) = self.endpoint.poll_delivery() {
            let packet = delivery.segment;
            let sequence = u32::from_be_bytes(packet[..4].try_into().unwrap());
            self.received.push(sequence);
        }
        while let Some(event) = self.endpoint.poll_event() {
            self.events.push((now, event));
        }
    }

    fn sessions_up(&self) -> Vec<(u64, bool)> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::SessionUp {
                    session_id,
                    rekeyed,
                    ..
                } => Some((*session_id, *rekeyed)),
                _ => None,
            })
            .collect()
    }
}

impl Node for EndpointNode {
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) {
        let _ = self
            .endpoint
            .handle_datagram(now, from, &mut datagram.to_vec());
        self.collect(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<(SocketAddr, Vec<u8>)> {
        if self.offer_at.is_some_and(|t| t <= now) {
            self.offer(now);
        }
        let mut datagram = Vec::new();
        let transmit = self.endpoint.poll_transmit(now, &mut datagram);
        self.collect(now);
        transmit.map(|t| (t.destination, datagram))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        [self.endpoint.poll_timeout(), self.offer_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.endpoint.handle_timeout(now);
        if self.offer_at.is_some_and(|t| t <= now) {
            self.offer(now);
        }
        self.collect(now);
    }
}

fn assert_in_order_exactly_once(received: &[u32], expected: u32, who: &str) {
    assert_eq!(
        received.len() as u32,
        expected,
        "{who} received {} of {expected}",
        received.len()
    );
    for (index, sequence) in received.iter().enumerate() {
        assert_eq!(
            *sequence, index as u32,
            "{who}: packet {index} out of order"
        );
    }
}

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig::ideal(Duration::from_millis(20))
        .with_random_loss(loss)
        .with_rate(20_000_000, 200_000)
}

/// A client that knows the server's address and a server that does not
/// know the client's, joined by `link` both ways.
fn client_and_server(
    config: &EndpointConfig,
    link: LinkConfig,
    client_sends: u32,
    server_sends: u32,
) -> (Simulation, usize, usize) {
    let (client_key, server_key) = (identity(100), identity(101));
    let mut sim = Simulation::new(7);
    let client = sim.add_node(
        address(CLIENT),
        EndpointNode::new(
            client_key.clone(),
            &server_key,
            Some(address(SERVER)),
            config.clone(),
            1,
        )
        .sending(client_sends),
    );
    let server = sim.add_node(
        address(SERVER),
        EndpointNode::new(server_key, &client_key, None, config.clone(), 2).sending(server_sends),
    );
    sim.connect(client, server, link.clone(), link);
    (sim, client, server)
}

#[test]
fn session_carries_packets_both_ways_under_loss() {
    let config = EndpointConfig::default();
    let (mut sim, client, server) = client_and_server(&config, lossy(0.10), 3000, 3000);
    sim.run_while(Timestamp::from_duration(Duration::from_secs(60)), |sim| {
        sim.node::<EndpointNode>(client).received.len() < 3000
            || sim.node::<EndpointNode>(server).received.len() < 3000
    });
    assert_in_order_exactly_once(&sim.node::<EndpointNode>(server).received, 3000, "server");
    assert_in_order_exactly_once(&sim.node::<EndpointNode>(client).received, 3000, "client");
    let server_node = sim.node::<EndpointNode>(server);
    assert_eq!(
        server_node.endpoint.peer_status(0).unwrap().endpoint,
        Some(address(CLIENT))
    );
    assert_eq!(server_node.sessions_up().len(), 1);
}

#[test]
fn rekeying_loses_nothing() {
    let config = EndpointConfig {
        rekey_interval: Duration::from_secs(2),
        ..Default::default()
    };
    // 2 Mbit/s: 10,000 packets of 1000 bytes take about 40 s.
    let link = LinkConfig::ideal(Duration::from_millis(20))
        .with_random_loss(0.05)
        .with_rate(2_000_000, 50_000);
    let (mut sim, client, server) = client_and_server(&config, link, 10_000, 0);
    sim.run_while(Timestamp::from_duration(Duration::from_secs(120)), |sim| {
        sim.node::<EndpointNode>(server).received.len() < 10_000
    });
    assert_in_order_exactly_once(&sim.node::<EndpointNode>(server).received, 10_000, "server");
    let ups = sim.node::<EndpointNode>(client).sessions_up();
    let rekeys = ups.iter().filter(|(_, rekeyed)| *rekeyed).count();
    assert!(rekeys >= 10, "expected a rekey every ~2 s, saw {ups:?}");
    let mut ids: Vec<u64> = ups.iter().map(|(id, _)| *id).collect();
    ids.dedup();
    assert_eq!(ids.len(), ups.len(), "every session has a new id");
    let server_ups = sim.node::<EndpointNode>(server).sessions_up();
    assert_eq!(ups, server_ups, "both sides agree on every session");
}

fn restart_test(restart_client: bool) {
    let config = EndpointConfig::default();
    let link = lossy(0.05);
    let (client_key, server_key) = (identity(100), identity(101));
    let (mut sim, client, server) = client_and_server(&config, link, 0, 0);
    sim.run_until(Timestamp::from_duration(Duration::from_secs(2)));
    assert!(sim
        .node::<EndpointNode>(client)
        .endpoint
        .peer_status(0)
        .is_some_and(|s| s.state == SessionState::Up));
    let restart_at = sim.now();
    // The restarted side comes back with the same key and no memory; then
    // the client sends 8000 packets (enough that the old session, which
    // sends at least at the initial rate until the silence shows, cannot
    // take them all).
    if restart_client {
        *sim.node_mut::<EndpointNode>(client) = EndpointNode::starting_at(
            restart_at,
            client_key,
            &server_key,
            Some(address(SERVER)),
            config.clone(),
            9,
        );
    } else {
        *sim.node_mut::<EndpointNode>(server) =
            EndpointNode::starting_at(restart_at, server_key, &client_key, None, config.clone(), 9);
    }
    {
        let node = sim.node_mut::<EndpointNode>(client);
        node.to_send = 8000;
        node.offer_at = Some(restart_at);
    }
    sim.run_while(restart_at + Duration::from_secs(60), |sim| {
        sim.node::<EndpointNode>(server).received.last() != Some(&7999)
    });
    let server_node = sim.node::<EndpointNode>(server);
    // What was queued in a session the restart destroyed is lost (a real
    // inner TCP sends it again); everything after arrives once, in order.
    let received = &server_node.received;
    let first = *received.first().expect("packets after the restart");
    assert_eq!(received.last(), Some(&7999));
    assert!(
        received.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "a contiguous run from {first} to 7999"
    );
    assert!(
        received.len() >= 500,
        "only {} of 8000 arrived",
        received.len()
    );
    println!(
        "{} of 8000 packets arrived after the restart",
        received.len()
    );
    // The blackout: from the restart until the new session was up.
    let (up_at, _) = server_node
        .events
        .iter()
        .rev()
        .find(|(_, e)| matches!(e, Event::SessionUp { rekeyed: false, .. }))
        .expect("a fresh session after the restart");
    let blackout = *up_at - restart_at;
    let limit = if restart_client { 1 } else { 6 };
    assert!(
        blackout < Duration::from_secs(limit),
        "blackout of {blackout:?}"
    );
    let side = if restart_client { "client" } else { "server" };
    println!("restart of the {side}: blackout {blackout:?}");
    if !restart_client {
        // The client noticed its packets went unanswered and re-handshook;
        // it replaced its old session with the fresh one.
        let client_node = sim.node::<EndpointNode>(client);
        assert!(client_node.events.iter().any(|(_, e)| matches!(
            e,
            Event::SessionDown {
                reason: DownReason::Replaced,
                ..
            }
        )));
    }
}

#[test]
fn client_restart_gets_a_fresh_session_quickly() {
    restart_test(true);
}

#[test]
fn server_restart_gets_a_fresh_session_within_seconds() {
    restart_test(false);
}

#[test]
fn roaming_follows_authenticated_packets_and_replays_do_not_move_the_peer() {
    let config = EndpointConfig::default();
    let (mut sim, client, server) = client_and_server(&config, lossy(0.05), 4000, 0);
    // Record the client's data packets to replay later.
    let recorded: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let sink = recorded.clone();
    sim.set_transmit_filter(move |transmit| {
        if transmit.datagram.first() == Some(&tgp_proto::wire::PACKET_TYPE_DATA)
            && sink.borrow().len() < 50
        {
            sink.borrow_mut().push(transmit.datagram.to_vec());
        }
        Verdict::Pass
    });
    sim.run_while(Timestamp::from_duration(Duration::from_secs(30)), |sim| {
        sim.node::<EndpointNode>(server).received.len() < 1000
    });
    // The client moves (a phone from Wi-Fi to mobile) mid-transfer.
    sim.rebind(client, address(CLIENT_MOVED));
    sim.run_while(Timestamp::from_duration(Duration::from_secs(60)), |sim| {
        sim.node::<EndpointNode>(server).received.len() < 4000
    });
    let server_node = sim.node::<EndpointNode>(server);
    assert_in_order_exactly_once(&server_node.received, 4000, "server");
    assert_eq!(
        server_node.endpoint.peer_status(0).unwrap().endpoint,
        Some(address(CLIENT_MOVED))
    );
    assert!(server_node.events.iter().any(|(_, e)| matches!(
        e,
        Event::PeerMoved { to, .. } if *to == address(CLIENT_MOVED)
    )));
    // An attacker replays recorded packets from its own address: nothing
    // moves, the replays are counted as such.
    let replays = recorded.borrow().clone();
    assert!(!replays.is_empty());
    let now = sim.now();
    for (index, packet) in replays.into_iter().enumerate() {
        sim.inject(
            now + Duration::from_micros(index as u64),
            address(ATTACKER),
            server,
            packet,
        );
    }
    sim.run_for(Duration::from_millis(100));
    let server_node = sim.node::<EndpointNode>(server);
    assert_eq!(
        server_node.endpoint.peer_status(0).unwrap().endpoint,
        Some(address(CLIENT_MOVED))
    );
    let drops = &server_node.endpoint.data_plane(0).unwrap().stats().drops;
    assert!(drops.replayed + drops.stale >= 1);
}

#[test]
fn unknown_identity_gets_no_session_and_replayed_handshakes_start_nothing() {
    let config = EndpointConfig::default();
    let (client_key, server_key) = (identity(100), identity(101));
    let stranger_key = identity(666);
    let mut sim = Simulation::new(8);
    let server = sim.add_node(
        address(SERVER),
        EndpointNode::new(server_key.clone(), &client_key, None, config.clone(), 2),
    );
    let stranger = sim.add_node(
        address(ATTACKER),
        EndpointNode::new(
            stranger_key,
            &server_key,
            Some(address(SERVER)),
            config.clone(),
            3,
        ),
    );
    sim.connect(stranger, server, lossy(0.0), lossy(0.0));
    sim.run_until(Timestamp::from_duration(Duration::from_secs(3)));
    let server_node = sim.node::<EndpointNode>(server);
    assert!(server_node.endpoint.drops().unknown_peer > 10);
    assert_eq!(
        server_node.endpoint.peer_status(0).unwrap().state,
        SessionState::Idle
    );
    assert!(server_node.sessions_up().is_empty());

    // A genuine session, recorded; then its handshake is replayed from
    // elsewhere after it is established: nothing new starts.
    let (mut sim, client, server) = client_and_server(&config, lossy(0.0), 0, 0);
    let recorded: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let sink = recorded.clone();
    sim.set_transmit_filter(move |transmit| {
        if transmit.datagram.first() == Some(&tgp_proto::wire::PACKET_TYPE_HANDSHAKE) {
            sink.borrow_mut().push(transmit.datagram.to_vec());
        }
        Verdict::Pass
    });
    // Replay once while the handshake still lingers (the copies are plain
    // duplicates) and once after it finished (they would have to start a
    // new handshake, and are refused as stale).
    let client_address = address(CLIENT);
    for at_seconds in [2, 25] {
        sim.run_until(Timestamp::from_duration(Duration::from_secs(at_seconds)));
        let replays: Vec<Vec<u8>> = recorded.borrow().clone();
        let now = sim.now();
        for (index, packet) in replays.into_iter().enumerate() {
            let at = now + Duration::from_micros(index as u64);
            sim.inject(at, address(ATTACKER), server, packet);
        }
        sim.run_for(Duration::from_secs(1));
        let server_node = sim.node::<EndpointNode>(server);
        assert_eq!(server_node.sessions_up().len(), 1, "no new session");
        let status = server_node.endpoint.peer_status(0).unwrap();
        assert_eq!(status.endpoint, Some(client_address));
    }
    let server_node = sim.node::<EndpointNode>(server);
    assert!(server_node.endpoint.drops().stale_handshake > 0);
    assert_eq!(sim.node::<EndpointNode>(client).sessions_up().len(), 1);
}

/// A node that sends a 60 Hz stream of 100-byte deadline datagrams for a
/// while, then goes quiet; the session must stay alive afterwards.
#[test]
fn session_stays_alive_after_a_deadline_stream_under_loss() {
    let config = EndpointConfig::default();
    let (mut sim, client, server) = client_and_server(&config, lossy(0.10), 0, 0);
    sim.run_until(Timestamp::from_duration(Duration::from_secs(1)));
    let start = sim.now();
    let mut next = start;
    for sequence in 0u32..300 {
        sim.run_until(next);
        let mut packet = vec![0u8; 100];
        packet[..4].copy_from_slice(&sequence.to_be_bytes());
        let node = sim.node_mut::<EndpointNode>(client);
        let class = DeliveryClass::Deadline(Duration::from_millis(50));
        let _ = node.endpoint.send_packet(next, 0, 2, class, &packet);
        next += Duration::from_micros(16_667);
    }
    sim.run_for(Duration::from_secs(45));
    let received = sim.node::<EndpointNode>(server).received.len();
    let events = &sim.node::<EndpointNode>(client).events;
    let silent = events.iter().any(|(_, e)| {
        matches!(
            e,
            Event::SessionDown {
                reason: DownReason::PeerSilent,
                ..
            }
        )
    });
    let client_stats = sim
        .node::<EndpointNode>(client)
        .endpoint
        .peer_status(0)
        .unwrap();
    let server_stats = sim
        .node::<EndpointNode>(server)
        .endpoint
        .peer_status(0)
        .unwrap();
    println!(
        "deadline stream: {received}/300 delivered; client sent {} datagrams, server sent {}",
        client_stats.data.as_ref().map_or(0, |d| d.datagrams_sent),
        server_stats.data.as_ref().map_or(0, |d| d.datagrams_sent),
    );
    assert!(
        received >= 270,
        "only {received} of 300 deadline datagrams arrived"
    );
    assert!(
        !silent,
        "the session went silent after the stream: {events:?}"
    );
}

/// An idle session costs a few packets a second (keepalives), not a
/// stream of receipts answering receipts.
#[test]
fn idle_sessions_stay_cheap() {
    let config = EndpointConfig::default();
    let (mut sim, client, server) = client_and_server(&config, lossy(0.0), 200, 200);
    sim.run_until(Timestamp::from_duration(Duration::from_secs(5)));
    let sent = |sim: &Simulation, node| {
        sim.node::<EndpointNode>(node)
            .endpoint
            .peer_status(0)
            .and_then(|s| s.data)
            .map_or(0, |d| d.datagrams_sent)
    };
    let (client_before, server_before) = (sent(&sim, client), sent(&sim, server));
    sim.run_for(Duration::from_secs(20));
    let client_rate = (sent(&sim, client) - client_before) as f64 / 20.0;
    let server_rate = (sent(&sim, server) - server_before) as f64 / 20.0;
    println!("idle: client sends {client_rate:.1} packets/s, server {server_rate:.1} packets/s");
    assert!(
        client_rate <= 5.0 && server_rate <= 5.0,
        "idle traffic: {client_rate} and {server_rate} packets/s"
    );
}
