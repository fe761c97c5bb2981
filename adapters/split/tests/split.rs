//! Split mode end to end in one process: client host stack → near engine →
//! stream channel → far engine → server host stack, and back.

mod support;

use std::time::Duration;

use sha2::{Digest, Sha256};
use smoltcp::socket::tcp::State;
use support::*;
use tgp_split::wire::INITIAL_CREDIT;
use tgp_split::{ResetReason, SplitConfig};

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn assert_no_state(p: &mut Pair) {
    for (name, engine) in [("near", &p.near), ("far", &p.far)] {
        let s = engine.stats();
        assert_eq!(
            s.open_streams,
            0,
            "{name}: streams left: {s:?} {:#?}",
            engine.describe_streams()
        );
        assert_eq!(s.sockets, 0, "{name}: sockets left: {s:?}");
        assert_eq!(s.buffered_bytes, 0, "{name}: bytes left: {s:?}");
    }
}

/// Runs one exchange: the client sends `up` and closes, the server sends
/// `down` and closes; both read everything. Returns the virtual ms taken.
fn exchange(p: &mut Pair, server_ip: &str, up: &[u8], down: &[u8], port: u16) -> u64 {
    let listener = p.server.listen(80);
    let c = p.connect(server_ip, 80, port);
    let mut client = App::new(c, up.to_vec());
    let mut server = App::new(listener, down.to_vec());
    let start = p.now;
    let done = p.run_until(60_000, |p| {
        client.pump(&mut p.client);
        server.pump(&mut p.server);
        client.finished(&mut p.client) && server.finished(&mut p.server)
    });
    assert!(
        done,
        "exchange did not finish: client got {} of {}, server got {} of {}; near {:?} far {:?}",
        client.received.len(),
        down.len(),
        server.received.len(),
        up.len(),
        p.near.stats(),
        p.far.stats()
    );
    assert_eq!(
        (client.received.len(), server.received.len()),
        (down.len(), up.len()),
        "lengths; near {:?} far {:?}",
        p.near.stats(),
        p.far.stats()
    );
    assert_eq!(
        sha(&client.received),
        sha(down),
        "client received other bytes"
    );
    assert_eq!(
        sha(&server.received),
        sha(up),
        "server received other bytes"
    );
    // Like a kernel, keep the sockets until their closing handshake is over.
    p.run_until(3000, |p| {
        [
            p.client.socket(c).state(),
            p.server.socket(listener).state(),
        ]
        .iter()
        .all(|s| matches!(s, State::Closed | State::TimeWait))
    });
    p.run(30); // a TIME-WAIT socket's last (delayed) ACK
    p.client.sockets.remove(c);
    p.server.sockets.remove(listener);
    (p.now - start).as_millis() as u64
}

#[test]
fn transfer_both_ways_with_matching_checksums() {
    let mut p = Pair::new();
    let up = pattern(1, 1_500_000);
    let down = pattern(2, 1_000_000);
    let ms = exchange(&mut p, SERVER_V4, &up, &down, 40000);
    // 2.5 MB over 20 Mbit/s each way takes ~0.6 s; allow slack, but a
    // stall (e.g. waiting for RTOs) would show.
    assert!(ms < 3000, "took {ms} ms");
    p.run(200);
    assert_no_state(&mut p);
    assert_eq!(p.near.stats().bytes_to_peer, up.len() as u64);
    assert_eq!(p.far.stats().bytes_to_peer, down.len() as u64);
    assert_eq!(p.near.stats().resets_sent.total(), 0);
    assert_eq!(p.far.stats().resets_sent.total(), 0);
}

#[test]
fn ipv6_transfer() {
    let mut p = Pair::new();
    let up = pattern(3, 300_000);
    let down = pattern(4, 400_000);
    exchange(&mut p, SERVER_V6, &up, &down, 40001);
    p.run(200);
    assert_no_state(&mut p);
}

#[test]
fn goodput_keeps_up_with_the_channel() {
    // One direction, 5 MB: the engines must keep the 20 Mbit/s channel
    // busy (credit covers the BDP, the scheduler fills the room).
    let mut p = Pair::new();
    let down = pattern(5, 5_000_000);
    let ms = exchange(&mut p, SERVER_V4, b"GET", &down, 40002);
    let mbit = down.len() as f64 * 8.0 / (ms as f64 * 1000.0);
    assert!(mbit > 15.0, "{mbit:.1} Mbit/s in {ms} ms");
}

#[test]
fn half_close_client_still_reads_the_whole_response() {
    let mut p = Pair::new();
    let listener = p.server.listen(80);
    let c = p.connect(SERVER_V4, 80, 40010);
    let request = pattern(6, 1000);
    let response = pattern(7, 600_000);
    let mut client = App::new(c, request.clone());
    // The server writes nothing until the request has ended (FIN).
    let mut server = App::new(listener, Vec::new());
    server.close_after_write = false;
    let mut responded = false;
    let done = p.run_until(30_000, |p| {
        client.pump(&mut p.client);
        server.pump(&mut p.server);
        let s = p.server.socket(listener);
        if !responded && s.state() == State::CloseWait && !s.can_recv() {
            assert_eq!(server.received, request, "request incomplete at its FIN");
            server.out = response.clone();
            server.close_after_write = true;
            responded = true;
        }
        responded && client.finished(&mut p.client) && server.finished(&mut p.server)
    });
    assert!(
        done,
        "client got {} of {}",
        client.received.len(),
        response.len()
    );
    assert_eq!(sha(&client.received), sha(&response));
    p.run(200);
    assert_no_state(&mut p);
}

#[test]
fn closed_port_resets_the_client_promptly() {
    let mut p = Pair::new();
    let c = p.connect(SERVER_V4, 81, 40020); // nothing listens on 81
    let mut was_established = false;
    let reset = p.run_until(5000, |p| {
        let s = p.client.socket(c);
        was_established |= s.state() == State::Established;
        was_established && s.state() == State::Closed
    });
    assert!(reset, "client not reset: {:?}", p.client.socket(c).state());
    // One round trip (40 ms) plus local hops.
    let ms = p.now.as_nanos() / 1_000_000;
    assert!(ms < 200, "reset after {ms} ms");
    assert_eq!(p.far.stats().resets_sent.get(ResetReason::Refused), 1);
    assert_eq!(p.near.stats().resets_received.get(ResetReason::Refused), 1);
    p.run(100);
    assert_no_state(&mut p);
}

#[test]
fn unanswered_connect_times_out_and_resets_the_client() {
    let far = SplitConfig {
        connect_timeout: Duration::from_secs(2),
        ..SplitConfig::default()
    };
    let mut p = Pair::with_config(SplitConfig::default(), far);
    // No host owns 10.0.0.9: the SYNs go unanswered.
    let c = p.connect("10.0.0.9", 80, 40021);
    let reset = p.run_until(10_000, |p| {
        let s = p.client.socket(c);
        s.state() == State::Closed
    });
    assert!(reset);
    let ms = p.now.as_nanos() / 1_000_000;
    assert!((1900..3000).contains(&ms), "reset after {ms} ms");
    assert_eq!(p.far.stats().resets_sent.get(ResetReason::Timeout), 1);
    p.run(100);
    assert_no_state(&mut p);
}

#[test]
fn slow_reader_bounds_buffers_and_blocks_the_sender() {
    let mut p = Pair::new();
    let listener = p.server.listen(80);
    let c = p.connect(SERVER_V4, 80, 40030);
    let up = pattern(8, 8_000_000);
    let mut client = App::new(c, up.clone());
    let mut server = App::new(listener, Vec::new());
    server.close_after_write = false;
    server.read_limit_per_step = 50; // 50 kB/s against a 2.5 MB/s channel
    let mut max_buffered = 0;
    let mut max_in_flight = 0;
    p.run_until(4000, |p| {
        client.pump(&mut p.client);
        server.pump(&mut p.server);
        max_buffered =
            max_buffered.max(p.near.stats().buffered_bytes + p.far.stats().buffered_bytes);
        let in_flight: usize = p.to_far.in_flight.iter().map(|m| m.2.len()).sum();
        max_in_flight = max_in_flight.max(in_flight);
        false
    });
    let window = p.far.stats().window as usize;
    assert!(window >= INITIAL_CREDIT as usize);
    assert!(
        max_buffered <= window + 2000,
        "far engine buffered {max_buffered} bytes (window {window})"
    );
    // Everything the client wrote sits in bounded buffers: the client's
    // socket (256 k), the near socket (128 k), the window, the far socket
    // (128 k) and the server socket (256 k).
    let bound = 256 * 1024 + 128 * 1024 + window + 128 * 1024 + 256 * 1024 + 4096;
    assert!(
        client.written <= server.received.len() + bound,
        "client wrote {} with the server having read {}",
        client.written,
        server.received.len()
    );
    assert!(!p.client.socket(c).can_send(), "the sender is not blocked");
    // The channel holds its 20 ms delay plus a 20 ms burst of its rate.
    assert!(max_in_flight <= 101_300, "{max_in_flight} bytes in flight");
    // Now read fast: everything arrives intact.
    server.read_limit_per_step = usize::MAX;
    let done = p.run_until(30_000, |p| {
        client.pump(&mut p.client);
        server.pump(&mut p.server);
        server.received.len() == up.len()
    });
    assert!(done);
    assert_eq!(
        server.received.len(),
        up.len(),
        "near {:?} far {:?}",
        p.near.stats(),
        p.far.stats()
    );
    assert_eq!(sha(&server.received), sha(&up));
}

#[test]
fn many_short_connections_leave_no_state() {
    let mut p = Pair::new();
    for i in 0..300u16 {
        let up = pattern(u64::from(i), 1000);
        let down = pattern(u64::from(i) + 1000, 1000);
        exchange(&mut p, SERVER_V4, &up, &down, 41000 + i);
    }
    p.run(200);
    assert_no_state(&mut p);
    assert_eq!(p.near.stats().accepted, 300);
    assert_eq!(p.far.stats().connected, 300);
    assert_eq!(p.near.stats().resets_sent.total(), 0);
    assert_eq!(p.far.stats().resets_sent.total(), 0);
}

#[test]
fn a_reused_four_tuple_opens_a_new_connection() {
    let mut p = Pair::new();
    for round in 0..3 {
        let up = pattern(round, 5000);
        let down = pattern(round + 10, 5000);
        exchange(&mut p, SERVER_V4, &up, &down, 42000);
    }
    p.run(200);
    assert_no_state(&mut p);
}

#[test]
fn the_connection_cap_resets_new_syns() {
    let near = SplitConfig {
        max_streams: 3,
        ..SplitConfig::default()
    };
    let mut p = Pair::with_config(near, SplitConfig::default());
    let listeners: Vec<_> = (0..5).map(|_| p.server.listen(80)).collect();
    let clients: Vec<_> = (0..5)
        .map(|i| p.connect(SERVER_V4, 80, 43000 + i))
        .collect();
    p.run(500);
    let established = clients
        .iter()
        .filter(|c| p.client.socket(**c).state() == State::Established)
        .count();
    let closed = clients
        .iter()
        .filter(|c| p.client.socket(**c).state() == State::Closed)
        .count();
    assert_eq!((established, closed), (3, 2));
    assert_eq!(p.near.stats().refused_at_cap, 2);
    assert_eq!(p.near.stats().open_streams, 3);
    let _ = listeners;
}

#[test]
fn reset_all_resets_every_local_connection() {
    let mut p = Pair::new();
    let listener = p.server.listen(80);
    let c = p.connect(SERVER_V4, 80, 44000);
    let mut client = App::new(c, pattern(9, 10_000_000));
    let mut server = App::new(listener, Vec::new());
    p.run_until(500, |p| {
        client.pump(&mut p.client);
        server.pump(&mut p.server);
        false
    });
    assert!(server.received.len() > 100_000);
    let now = p.now;
    p.near.reset_all(now, ResetReason::PeerRestart);
    p.far.reset_all(now, ResetReason::PeerRestart);
    let reset = p.run_until(100, |p| {
        p.client.socket(c).state() == State::Closed
            && p.server.socket(listener).state() == State::Closed
    });
    assert!(
        reset,
        "client {:?} server {:?}",
        p.client.socket(c).state(),
        p.server.socket(listener).state()
    );
    assert_eq!(
        p.near.stats().resets_received.get(ResetReason::PeerRestart),
        1
    );
    p.run(100);
    assert_no_state(&mut p);
}

#[test]
fn idle_streams_are_reset() {
    let cfg = SplitConfig {
        idle_timeout: Duration::from_secs(3),
        ..SplitConfig::default()
    };
    let mut p = Pair::with_config(cfg.clone(), cfg);
    let listener = p.server.listen(80);
    let c = p.connect(SERVER_V4, 80, 45000);
    p.run(100);
    assert_eq!(p.client.socket(c).state(), State::Established);
    let reset = p.run_until(6000, |p| p.client.socket(c).state() == State::Closed);
    assert!(reset);
    let ms = p.now.as_nanos() / 1_000_000;
    assert!((3000..5500).contains(&ms), "reset after {ms} ms");
    p.run(100);
    assert_eq!(p.server.socket(listener).state(), State::Closed);
    assert_no_state(&mut p);
}

#[test]
fn an_interactive_exchange_is_not_stuck_behind_a_bulk_download() {
    let mut p = Pair::new();
    let bulk_listener = p.server.listen(80);
    let bulk = p.connect(SERVER_V4, 80, 46000);
    let mut bulk_client = App::new(bulk, b"GET".to_vec());
    let mut bulk_server = App::new(bulk_listener, pattern(10, 20_000_000));
    p.run_until(1000, |p| {
        bulk_client.pump(&mut p.client);
        bulk_server.pump(&mut p.server);
        false
    });
    assert!(bulk_client.received.len() > 1_000_000);
    // Ping-pong on a second connection while the download runs.
    let listener = p.server.listen(80);
    let c = p.connect(SERVER_V4, 80, 46001);
    p.run_until(500, |p| {
        bulk_client.pump(&mut p.client);
        bulk_server.pump(&mut p.server);
        p.server.socket(listener).state() == State::Established
    });
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let start = p.now;
        p.client.socket(c).send_slice(&[round; 100]).unwrap();
        let mut echoed = 0;
        let ok = p.run_until(2000, |p| {
            bulk_client.pump(&mut p.client);
            bulk_server.pump(&mut p.server);
            let mut buf = [0u8; 200];
            let s = p.server.socket(listener);
            if let Ok(n) = s.recv_slice(&mut buf) {
                if n > 0 {
                    s.send_slice(&buf[..n]).unwrap();
                }
            }
            if let Ok(n) = p.client.socket(c).recv_slice(&mut buf) {
                echoed += n;
            }
            echoed == 100
        });
        assert!(ok, "round {round}: no echo");
        worst = worst.max(p.now - start);
    }
    // Round trip 40 ms; a fair scheduler adds at most a few messages.
    assert!(worst < Duration::from_millis(100), "worst echo {worst:?}");
}

mod untrusted {
    use super::*;
    use proptest::prelude::*;
    use tgp_proto::Timestamp;
    use tgp_split::wire::{stream_flow, Message};
    use tgp_split::SplitEngine;

    proptest! {
        #[test]
        fn random_messages_and_packets_never_panic(
            inputs in proptest::collection::vec(
                (any::<bool>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..120)),
                1..60,
            ),
        ) {
            let mut engine = SplitEngine::new(Timestamp::ZERO, SplitConfig::default());
            let mut now = Timestamp::ZERO;
            for (as_packet, flow, bytes) in inputs {
                now += Duration::from_millis(3);
                if as_packet {
                    let _ = engine.handle_tun_packet(now, &bytes, true);
                } else {
                    // Half of the time a valid stream flow id, so that the
                    // message parser and stream logic see the bytes.
                    let flow = if flow & 1 == 0 { stream_flow(flow as u16, flow & 2 == 0) } else { flow };
                    engine.handle_stream_message(now, flow, &bytes, |_| flow & 4 == 0);
                }
                while engine.poll_stream_message(now, 10_000, 1300).is_some() {}
                while engine.poll_tun_packet(now).is_some() {}
                if engine.poll_timeout().is_some_and(|t| t <= now) {
                    engine.handle_timeout(now);
                }
            }
        }

        #[test]
        fn opens_with_random_tuples_never_panic(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), ports in any::<(u16, u16)>(),
            data in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut engine = SplitEngine::new(Timestamp::ZERO, SplitConfig::default());
            let open = Message::Open {
                id: 1,
                src: (std::net::Ipv4Addr::from(src), ports.0).into(),
                dst: (std::net::Ipv4Addr::from(dst), ports.1).into(),
                credit: 1000,
                data: &data,
            };
            engine.handle_stream_message(Timestamp::ZERO, stream_flow(3, true), &open.to_vec(), |_| true);
            let mut now = Timestamp::ZERO;
            for _ in 0..20 {
                now += Duration::from_millis(500);
                engine.handle_timeout(now);
                while engine.poll_stream_message(now, 10_000, 1300).is_some() {}
                while engine.poll_tun_packet(now).is_some() {}
            }
        }
    }
}

#[test]
fn the_engine_wide_budget_limits_what_slow_readers_hold() {
    // Four slow readers; a budget of 1 MiB over all streams.
    let far = SplitConfig {
        max_buffered: 1 << 20,
        ..SplitConfig::default()
    };
    let mut p = Pair::with_config(SplitConfig::default(), far);
    p.far.set_path(200_000_000, Duration::from_millis(40)); // window 8 MB
    let mut apps = Vec::new();
    for i in 0..4u16 {
        let listener = p.server.listen(80);
        let c = p.connect(SERVER_V4, 80, 47000 + i);
        let mut client = App::new(c, pattern(u64::from(i), 4_000_000));
        client.close_after_write = false;
        let mut server = App::new(listener, Vec::new());
        server.close_after_write = false;
        server.read_limit_per_step = 10;
        apps.push((client, server));
    }
    let mut max_buffered = 0;
    p.run_until(5000, |p| {
        for (client, server) in &mut apps {
            client.pump(&mut p.client);
            server.pump(&mut p.server);
        }
        max_buffered = max_buffered.max(p.far.stats().buffered_bytes);
        false
    });
    // At most the budget plus one grant step, and each stream's initial
    // credit may exceed it.
    let bound = (1 << 20) + 4 * INITIAL_CREDIT as usize;
    assert!(max_buffered <= bound, "buffered {max_buffered} > {bound}");
    assert!(max_buffered > 0);
}
