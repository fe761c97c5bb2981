//! Behaviour of the TGP handshake outside the simulator: key agreement,
//! packet sizes, verification caching, replayed transcripts, unknown
//! keys, and untrusted bytes.

mod common;

use common::{identity, pair, pump, transmit, TEST_UNIX_TIME_MS};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::Duration;
use tgp_proto::handshake::{
    DropReason, Handshake, HandshakeConfig, HandshakeError, HandshakeEvent, Outcome,
};
use tgp_proto::wire::MAX_HANDSHAKE_PACKET;
use tgp_proto::Timestamp;

fn end_of(config: &HandshakeConfig) -> Timestamp {
    Timestamp::ZERO + config.deadline + config.linger + Duration::from_secs(1)
}

#[test]
fn lossless_handshake_establishes_with_identical_keys() {
    let config = HandshakeConfig::default();
    let (mut a, mut b) = pair(1, &config, Timestamp::ZERO);
    let sent = pump(&mut a, &mut b, end_of(&config), |_, p| Some(p.to_vec()));
    assert_eq!(a.outcome(), Outcome::Established);
    assert_eq!(b.outcome(), Outcome::Established);
    assert_eq!(a.receipt(), b.receipt());
    let (ka, kb) = (a.session_keys().unwrap(), b.session_keys().unwrap());
    assert_eq!(ka.send, kb.receive);
    assert_eq!(ka.receive, kb.send);
    assert_eq!(ka.session_id, kb.session_id);
    assert_ne!(ka.send, ka.receive);
    // With no loss and no delay the whole exchange is a handful of packets,
    // and flooding stops once both hold RECEIPT.
    assert!(
        sent.len() < 20,
        "sent {} packets; drops a={:?} b={:?}",
        sent.len(),
        tgp_proto::handshake::DropReason::ALL.map(|r| a.stats().drops(r)),
        tgp_proto::handshake::DropReason::ALL.map(|r| b.stats().drops(r))
    );
    assert!(a.is_finished() && b.is_finished());
    // Events: usable, then established at the deadline.
    let mut events = Vec::new();
    while let Some(e) = a.poll_event() {
        events.push(e);
    }
    assert!(matches!(events[0], HandshakeEvent::Usable(_)));
    assert_eq!(events[1], HandshakeEvent::Established);
}

#[test]
fn every_packet_fits_in_1200_bytes_at_every_phase() {
    let config = HandshakeConfig::default();
    // Drop every other packet so each side repeats every phase several times.
    let mut count = 0u32;
    let (mut a, mut b) = pair(2, &config, Timestamp::ZERO);
    let sent = pump(&mut a, &mut b, end_of(&config), |_, p| {
        count += 1;
        (!count.is_multiple_of(3)).then(|| p.to_vec())
    });
    assert!(a.has_receipt() && b.has_receipt());
    let mut kinds_seen = std::collections::BTreeSet::new();
    for (_, packet) in &sent {
        assert!(
            packet.len() <= MAX_HANDSHAKE_PACKET,
            "packet of {} bytes",
            packet.len()
        );
        let parsed = tgp_proto::wire::handshake::HandshakePacket::parse(packet).unwrap();
        for artifact in parsed.artifacts {
            kinds_seen.insert(artifact.kind);
        }
    }
    assert_eq!(
        kinds_seen.len(),
        7,
        "every proof level and the confirmation were sent"
    );
}

#[test]
fn flooded_duplicates_do_not_reverify_signatures() {
    let config = HandshakeConfig::default();
    let (mut a, mut b) = pair(3, &config, Timestamp::ZERO);
    let first = transmit(&mut a, Timestamp::ZERO).unwrap();
    b.handle_packet(Timestamp::ZERO, &first).result().unwrap();
    let verified = b.stats().signature_verifications;
    assert_eq!(verified, 1);
    for i in 0..100 {
        b.handle_packet(Timestamp::from_nanos(i), &first)
            .result()
            .unwrap();
    }
    assert_eq!(b.stats().signature_verifications, verified);
    assert_eq!(b.stats().duplicate_artifacts, 100);
    // A full handshake verifies each of the peer's six proofs exactly once,
    // however many copies arrive.
    let (mut a, mut b) = pair(4, &config, Timestamp::ZERO);
    let mut count = 0u32;
    pump(&mut a, &mut b, end_of(&config), |_, p| {
        count += 1;
        (!count.is_multiple_of(3)).then(|| p.to_vec())
    });
    assert!(a.has_receipt() && b.has_receipt());
    assert_eq!(a.stats().signature_verifications, 6);
    assert_eq!(b.stats().signature_verifications, 6);
}

#[test]
fn replayed_transcript_does_not_establish_a_new_session() {
    let config = HandshakeConfig::default();
    // Session 1, recorded in full.
    let (mut a1, mut b1) = pair(5, &config, Timestamp::ZERO);
    let transcript = pump(&mut a1, &mut b1, end_of(&config), |_, p| Some(p.to_vec()));
    assert!(a1.has_receipt());
    // Session 2: a fresh B with the same identities; the attacker replays
    // everything A said in session 1, in order, and A is not there.
    let mut victim = {
        // Same identities, fresh randomness, as after a restart.
        let alice = identity(10);
        let bob = identity(11);
        let mut rng = ChaCha20Rng::seed_from_u64(999);
        Handshake::new(
            Timestamp::ZERO,
            TEST_UNIX_TIME_MS + 5_000,
            bob,
            alice.verifying_key(),
            config.clone(),
            &mut rng,
        )
        .unwrap()
    };
    {
        let mut now = Timestamp::ZERO;
        for (from_a, packet) in &transcript {
            if *from_a {
                now += Duration::from_millis(1);
                let _ = victim.handle_packet(now, packet);
                while transmit(&mut victim, now).is_some() {}
            }
        }
        victim.handle_timeout(end_of(&config));
        assert!(!victim.has_receipt());
        assert_eq!(victim.outcome(), Outcome::Aborted);
        assert!(victim.highest_own_level() <= tgp_proto::handshake::artifact::Level::Double);
        assert!(victim.stats().drops(DropReason::WrongSession) > 0);
    }
}

#[test]
fn replay_injected_during_a_real_handshake_changes_nothing() {
    let config = HandshakeConfig::default();
    let (mut a1, mut b1) = pair(6, &config, Timestamp::ZERO);
    let old = pump(&mut a1, &mut b1, end_of(&config), |_, p| Some(p.to_vec()));
    let old_from_a: Vec<Vec<u8>> = old
        .into_iter()
        .filter(|(a, _)| *a)
        .map(|(_, p)| p)
        .collect();
    // Session 2: identities same, randomness fresh, A's clock a bit later.
    let alice = identity(12);
    let bob = identity(13);
    let mut rng = ChaCha20Rng::seed_from_u64(4242);
    let mut a2 = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS + 1_000,
        alice.clone(),
        bob.verifying_key(),
        config.clone(),
        &mut rng,
    )
    .unwrap();
    let mut b2 = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS + 1_000,
        bob,
        alice.verifying_key(),
        config.clone(),
        &mut rng,
    )
    .unwrap();
    // The replayed packets reach B first, then the real exchange runs with
    // old packets interleaved.
    for packet in &old_from_a {
        let _ = b2.handle_packet(Timestamp::ZERO, packet);
    }
    let mut index = 0;
    pump(&mut a2, &mut b2, end_of(&config), |from_a, p| {
        if !from_a {
            return Some(p.to_vec());
        }
        index += 1;
        Some(if index % 2 == 0 {
            old_from_a[index % old_from_a.len()].clone()
        } else {
            p.to_vec()
        })
    });
    assert!(a2.has_receipt() && b2.has_receipt());
    assert_eq!(a2.receipt(), b2.receipt());
    assert_ne!(a2.receipt(), a1.receipt());
}

#[test]
fn unknown_identity_is_rejected() {
    let config = HandshakeConfig::default();
    let (_a, mut b) = pair(7, &config, Timestamp::ZERO);
    // A stranger who knows B's public key tries to start a session.
    let stranger = identity(777);
    let b_key = identity(15).verifying_key();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut intruder = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS,
        stranger,
        b_key,
        config.clone(),
        &mut rng,
    )
    .unwrap();
    let mut now = Timestamp::ZERO;
    for _ in 0..50 {
        if let Some(packet) = transmit(&mut intruder, now) {
            assert_eq!(
                b.handle_packet(now, &packet).result(),
                Err(DropReason::UnknownPeer)
            );
        }
        now += config.flood_interval;
    }
    assert_eq!(b.stats().drops(DropReason::UnknownPeer), 50);
    assert_eq!(b.stats().signature_verifications, 0);
    assert!(b.highest_own_level() == tgp_proto::handshake::artifact::Level::Commitment);
}

#[test]
fn mismatched_parameters_and_skewed_clocks_are_refused() {
    let config = HandshakeConfig::default();
    let alice = identity(20);
    let bob = identity(21);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let other = HandshakeConfig {
        deadline: Duration::from_secs(30),
        ..config.clone()
    };
    let mut a = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS,
        alice.clone(),
        bob.verifying_key(),
        other,
        &mut rng,
    )
    .unwrap();
    let mut b = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS,
        bob.clone(),
        alice.verifying_key(),
        config.clone(),
        &mut rng,
    )
    .unwrap();
    let packet = transmit(&mut a, Timestamp::ZERO).unwrap();
    assert_eq!(
        b.handle_packet(Timestamp::ZERO, &packet).result(),
        Err(DropReason::ParameterMismatch)
    );
    let mut late = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS + 3_600_000,
        alice,
        bob.verifying_key(),
        config,
        &mut rng,
    )
    .unwrap();
    let packet = transmit(&mut late, Timestamp::ZERO).unwrap();
    assert_eq!(
        b.handle_packet(Timestamp::ZERO, &packet).result(),
        Err(DropReason::ClockSkew)
    );
}

#[test]
fn invalid_configurations_are_errors() {
    let alice = identity(30);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let result = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS,
        alice.clone(),
        alice.verifying_key(),
        HandshakeConfig::default(),
        &mut rng,
    );
    assert!(matches!(result, Err(HandshakeError::PeerIsSelf)));
    let config = HandshakeConfig {
        cutoff_margin: Duration::from_secs(10),
        ..Default::default()
    };
    let result = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS,
        alice,
        identity(31).verifying_key(),
        config,
        &mut rng,
    );
    assert!(matches!(result, Err(HandshakeError::MarginTooLong { .. })));
}

#[test]
fn no_final_confirmation_after_the_cutoff() {
    // Deliver nothing until after the cut-off, then everything: proofs up to
    // Q_CONF are built, but never Q_CONF_FINAL, and both sides abort.
    let config = HandshakeConfig::default();
    let (mut a, mut b) = pair(8, &config, Timestamp::ZERO);
    let cutoff = a.cutoff();
    let mut now = Timestamp::ZERO;
    while now <= cutoff {
        while transmit(&mut a, now).is_some() {}
        while transmit(&mut b, now).is_some() {}
        now += config.flood_interval;
    }
    let end = a.deadline();
    while now < end {
        let pa = transmit(&mut a, now);
        let pb = transmit(&mut b, now);
        if let Some(p) = pa {
            let _ = b.handle_packet(now, &p);
        }
        if let Some(p) = pb {
            let _ = a.handle_packet(now, &p);
        }
        now += config.flood_interval;
    }
    a.handle_timeout(end);
    b.handle_timeout(end);
    assert_eq!(a.outcome(), Outcome::Aborted);
    assert_eq!(b.outcome(), Outcome::Aborted);
    assert_eq!(
        a.highest_own_level(),
        tgp_proto::handshake::artifact::Level::Confirmation
    );
    assert!(!a.has_receipt() && !b.has_receipt());
}

#[test]
fn responder_aligns_its_deadline_with_the_initiator() {
    let config = HandshakeConfig::default();
    let alice = identity(40);
    let bob = identity(41);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut a = Handshake::new(
        Timestamp::ZERO,
        TEST_UNIX_TIME_MS,
        alice.clone(),
        bob.verifying_key(),
        config.clone(),
        &mut rng,
    )
    .unwrap();
    // A's first 400 packets are lost; B is created when one arrives, 2 s in.
    let mut packet = None;
    let mut now = Timestamp::ZERO;
    while now < Timestamp::ZERO + Duration::from_secs(2) {
        packet = transmit(&mut a, now).or(packet);
        now += config.flood_interval;
    }
    let responder = HandshakeConfig {
        align_start_to_peer: true,
        ..config.clone()
    };
    let mut b = Handshake::new(
        now,
        TEST_UNIX_TIME_MS + 2_000,
        bob,
        alice.verifying_key(),
        responder,
        &mut rng,
    )
    .unwrap();
    b.handle_packet(now, &packet.unwrap()).result().unwrap();
    let difference = b.deadline().as_nanos().abs_diff(a.deadline().as_nanos());
    assert!(
        difference <= Duration::from_millis(10).as_nanos() as u64,
        "deadlines differ by {difference} ns"
    );
}

fn valid_packets() -> Vec<Vec<u8>> {
    let config = HandshakeConfig::default();
    let (mut a, mut b) = pair(9, &config, Timestamp::ZERO);
    let mut count = 0u32;
    pump(&mut a, &mut b, end_of(&config), |_, p| {
        count += 1;
        (!count.is_multiple_of(3)).then(|| p.to_vec())
    })
    .into_iter()
    .filter(|(from_a, _)| *from_a)
    .map(|(_, p)| p)
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic_and_are_dropped(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let config = HandshakeConfig::default();
        let (_a, mut b) = pair(9, &config, Timestamp::ZERO);
        prop_assert!(b.handle_packet(Timestamp::ZERO, &bytes).result().is_err());
        prop_assert_eq!(b.stats().total_drops(), 1);
    }

    #[test]
    fn mutated_packets_never_panic_and_never_forge(
        which in 0usize..64,
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
        truncate in proptest::option::of(any::<usize>()),
    ) {
        let packets = valid_packets();
        let original = &packets[which % packets.len()];
        let mut mutated = original.clone();
        for (at, mask) in flips {
            let index = at % mutated.len();
            mutated[index] ^= mask;
        }
        if let Some(cut) = truncate {
            mutated.truncate(cut % (mutated.len() + 1));
        }
        let config = HandshakeConfig::default();
        let (_a, mut b) = pair(9, &config, Timestamp::ZERO);
        let result = b.handle_packet(Timestamp::ZERO, &mutated).result();
        if mutated[..] != original[..] {
            // A changed packet is either refused or (when only unsigned
            // header bytes such as the elapsed time changed) accepted with
            // exactly the proofs the original carried.
            if result.is_ok() {
                prop_assert_eq!(&mutated[..34], &original[..34]);
                prop_assert_eq!(&mutated[38..], &original[38..]);
            }
        }
    }
}
