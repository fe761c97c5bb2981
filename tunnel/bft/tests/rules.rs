//! The voting rules of one replica, driven with crafted, validly signed
//! artifacts: prevote and precommit, the lock and its justification, the
//! proposer carrying the highest polka forward, round skips and the early
//! exit, equivocation, verification once per artifact, drop reasons, packet
//! sizes and the certificate in parts, and the post-decision flood.

mod common;

use common::{at_ms, drain, value, Group};
use std::time::Duration;
use tgp_bft::wire::{Item, Status, MAX_PACKET};
use tgp_bft::{BftConfig, BftError, Certificate, DropReason, Phase, Replica};
use tgp_proto::Timestamp;

const A: u8 = 0xA;
const B: u8 = 0xB;
const C: u8 = 0xC;

#[test]
fn round_zero_prevotes_the_input_then_locks_precommits_and_decides() {
    let g = Group::new(4);
    let mut r = g.replica(0, value(A), BftConfig::default());
    assert_eq!(r.vote_of(Phase::Prevote, 0, 0), Some(value(A)));
    assert_eq!(r.vote_of(Phase::Precommit, 0, 0), None);
    g.deliver(
        &mut r,
        at_ms(10),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 0, value(A))],
    );
    assert_eq!(r.locked(), Some((0, value(A))));
    assert_eq!(r.valid(), Some((0, value(A))));
    assert_eq!(r.vote_of(Phase::Precommit, 0, 0), Some(value(A)));
    assert!(r.decision().is_none());
    g.deliver(
        &mut r,
        at_ms(20),
        2,
        vec![g.votes(&[1, 3], Phase::Precommit, 0, value(A))],
    );
    let decision = r.decision().expect("a quorum of precommits decides");
    assert_eq!((decision.value, decision.round), (value(A), 0));
    assert_eq!(decision.at, at_ms(20));
    assert_eq!(decision.certificate.verify(&g.membership), Ok(()));
    assert_eq!(decision.certificate.signatures.len(), 3);
}

#[test]
fn a_locked_replica_refuses_another_value_without_a_later_polka() {
    let g = Group::new(4);
    let mut r = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r,
        at_ms(10),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 0, value(A))],
    );
    assert_eq!(r.locked(), Some((0, value(A))));
    // Round 1 (proposer 2) proposes B without justification; a prevote of
    // member 3 in round 1 makes f + 1 = 2 members there, so we follow.
    assert_eq!(g.membership.proposer(common::INSTANCE, 1), 2);
    g.deliver(
        &mut r,
        at_ms(20),
        2,
        vec![
            g.proposal(1, value(B), None),
            g.votes(&[3], Phase::Prevote, 1, value(B)),
        ],
    );
    assert_eq!(r.round(), 1);
    assert_eq!(
        r.vote_of(Phase::Prevote, 1, 0),
        None,
        "locked on A: no prevote for B"
    );
    // A justification naming round 0 does not help: round 0's polka is A's.
    let mut r2 = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r2,
        at_ms(10),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 0, value(A))],
    );
    g.deliver(
        &mut r2,
        at_ms(20),
        2,
        vec![
            g.proposal(1, value(B), Some(0)),
            g.votes(&[3], Phase::Prevote, 1, value(B)),
        ],
    );
    assert_eq!(r2.round(), 1);
    assert_eq!(r2.vote_of(Phase::Prevote, 1, 0), None);
    // The same proposal of A is prevoted: the lock is on A.
    let mut r3 = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r3,
        at_ms(10),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 0, value(A))],
    );
    g.deliver(
        &mut r3,
        at_ms(20),
        2,
        vec![
            g.proposal(1, value(A), None),
            g.votes(&[3], Phase::Prevote, 1, value(B)),
        ],
    );
    assert_eq!(r3.vote_of(Phase::Prevote, 1, 0), Some(value(A)));
}

#[test]
fn a_polka_from_a_round_after_the_lock_justifies_another_value() {
    let g = Group::new(4);
    let mut r = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r,
        at_ms(10),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 0, value(A))],
    );
    assert_eq!(r.locked(), Some((0, value(A))));
    // Round 2 (proposer 3): B, justified by a polka for B in round 1.
    g.deliver(
        &mut r,
        at_ms(20),
        3,
        vec![
            g.proposal(2, value(B), Some(1)),
            g.votes(&[1], Phase::Prevote, 2, value(C)),
        ],
    );
    assert_eq!(r.round(), 2);
    assert_eq!(
        r.vote_of(Phase::Prevote, 2, 0),
        None,
        "the polka of round 1 is missing"
    );
    g.deliver(
        &mut r,
        at_ms(30),
        1,
        vec![g.votes(&[1, 2, 3], Phase::Prevote, 1, value(B))],
    );
    assert_eq!(r.valid(), Some((1, value(B))));
    assert_eq!(r.vote_of(Phase::Prevote, 2, 0), Some(value(B)));
    assert_eq!(
        r.locked(),
        Some((0, value(A))),
        "only a polka in the current round relocks"
    );
}

#[test]
fn the_proposer_carries_the_highest_polka_forward() {
    let g = Group::new(4);
    // Member 0 proposes in round 3 of instance 1.
    assert_eq!(g.membership.proposer(common::INSTANCE, 3), 0);
    let mut r = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r,
        at_ms(10),
        1,
        vec![g.votes(&[1, 2, 3], Phase::Prevote, 1, value(B))],
    );
    g.deliver(
        &mut r,
        at_ms(11),
        1,
        vec![g.votes(&[1, 2, 3], Phase::Prevote, 2, value(C))],
    );
    assert_eq!(r.round(), 2);
    g.deliver(
        &mut r,
        at_ms(12),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 3, value(A))],
    );
    assert_eq!(r.round(), 3);
    let sent = drain(&mut r, at_ms(20));
    let proposals: Vec<_> = sent
        .iter()
        .flat_map(|(_, _, p)| p.items.iter())
        .filter_map(|item| match item {
            Item::Proposal {
                round,
                value,
                valid_round,
                ..
            } => Some((*round, *value, *valid_round)),
            _ => None,
        })
        .collect();
    assert!(!proposals.is_empty());
    assert!(
        proposals.iter().all(|p| *p == (3, value(C), Some(2))),
        "{proposals:?}"
    );
}

#[test]
fn skips_to_a_round_only_once_f_plus_one_members_are_there() {
    let g = Group::new(7); // f = 2
    let mut r = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r,
        at_ms(1),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 5, value(B))],
    );
    assert_eq!(r.round(), 0, "f members can be Byzantine");
    g.deliver(
        &mut r,
        at_ms(2),
        3,
        vec![g.votes(&[3], Phase::Precommit, 9, value(B))],
    );
    assert_eq!(r.round(), 5, "the (f+1)-th highest round");
}

#[test]
fn moves_on_early_when_no_value_can_reach_a_polka() {
    let g = Group::new(4);
    let mut r = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r,
        at_ms(1),
        1,
        vec![g.votes(&[1], Phase::Prevote, 0, value(B))],
    );
    assert_eq!(
        r.round(),
        0,
        "members 2 and 3 could still make A or B a polka"
    );
    g.deliver(
        &mut r,
        at_ms(2),
        2,
        vec![g.votes(&[2], Phase::Prevote, 0, value(C))],
    );
    assert_eq!(
        r.round(),
        1,
        "three different values of four: no polka possible"
    );
}

#[test]
fn round_timers_grow_and_stop_at_max_rounds() {
    let g = Group::new(4);
    let config = BftConfig {
        round_timeout: Duration::from_millis(100),
        round_timeout_step: Duration::from_millis(50),
        max_rounds: 3,
        ..BftConfig::default()
    };
    let mut r = g.replica(0, value(A), config);
    let mut now = Timestamp::ZERO;
    let mut entered = Vec::new();
    for _ in 0..2_000 {
        let Some(next) = r.poll_timeout() else { break };
        if next > at_ms(2_000) {
            break;
        }
        now = next.max(now);
        r.handle_timeout(now);
        let _ = drain(&mut r, now);
        if entered.last() != Some(&r.round()) {
            entered.push(r.round());
            println!("round {} at {now}", r.round());
        }
    }
    // Round 0 lasts 100 ms, round 1 150 ms; round 2 is the last.
    assert_eq!(entered, vec![0, 1, 2]);
    assert_eq!(r.rounds_held(), 3);
    assert!(
        r.poll_timeout().is_some(),
        "still flooding in the last round"
    );
}

#[test]
fn keeps_one_equivocation_and_refuses_a_third_value() {
    let g = Group::new(4);
    let mut r = g.replica(0, value(A), BftConfig::default());
    let got = g.deliver_raw(
        &mut r,
        at_ms(1),
        1,
        vec![
            g.votes(&[1], Phase::Prevote, 0, value(B)),
            g.votes(&[1], Phase::Prevote, 0, value(C)),
            g.votes(&[1], Phase::Prevote, 0, value(0xD)),
        ],
    );
    assert_eq!(got.new_artifacts, 2);
    assert_eq!(got.first_drop, Some(DropReason::Equivocation));
    assert_eq!(r.stats().equivocations_seen, 1);
    assert_eq!(r.stats().drops(DropReason::Equivocation), 1);
    assert_eq!(r.vote_of(Phase::Prevote, 0, 1), Some(value(B)));
}

#[test]
fn verifies_each_artifact_once() {
    let g = Group::new(4);
    let mut r = g.replica(0, value(A), BftConfig::default());
    let vote = g.votes(&[1], Phase::Prevote, 0, value(B));
    g.deliver(&mut r, at_ms(1), 1, vec![vote.clone()]);
    let verified = r.stats().signature_verifications;
    assert_eq!(verified, 1);
    for k in 0..5 {
        let got = g.deliver_raw(&mut r, at_ms(2 + k), 2, vec![vote.clone()]);
        assert_eq!((got.new_artifacts, got.duplicates), (0, 1));
    }
    assert_eq!(r.stats().signature_verifications, verified);
    // A forgery: verified once, then recognised.
    let Item::Votes {
        phase,
        round,
        value: v,
        signers,
        mut signatures,
    } = g.votes(&[3], Phase::Prevote, 0, value(C))
    else {
        unreachable!()
    };
    signatures[0][5] ^= 1;
    let forged = Item::Votes {
        phase,
        round,
        value: v,
        signers,
        signatures,
    };
    for k in 0..5 {
        let got = g.deliver_raw(&mut r, at_ms(10 + k), 2, vec![forged.clone()]);
        assert_eq!(got.first_drop, Some(DropReason::BadSignature));
    }
    assert_eq!(r.stats().signature_verifications, verified + 1);
    assert_eq!(r.stats().drops(DropReason::BadSignature), 5);
    assert_eq!(r.vote_of(Phase::Prevote, 0, 3), None);
}

#[test]
fn decides_on_an_earlier_rounds_certificate_and_counts_a_conflicting_one() {
    let g = Group::new(4);
    let mut r = g.replica(0, value(A), BftConfig::default());
    g.deliver(
        &mut r,
        at_ms(1),
        1,
        vec![g.votes(&[1, 2], Phase::Prevote, 3, value(C))],
    );
    assert_eq!(r.round(), 3);
    g.deliver(
        &mut r,
        at_ms(2),
        1,
        vec![g.votes(&[1, 2, 3], Phase::Precommit, 1, value(B))],
    );
    let decision = r.decision().expect("decided");
    assert_eq!((decision.value, decision.round), (value(B), 1));
    // Only more than f Byzantine members could sign this.
    g.deliver(
        &mut r,
        at_ms(3),
        1,
        vec![g.votes(&[1, 2, 3], Phase::Precommit, 2, value(C))],
    );
    assert_eq!(r.stats().conflicting_certificates, 1);
    assert_eq!(
        r.decision().unwrap().value,
        value(B),
        "a decision never changes"
    );
}

fn drop_of(
    r: &mut Replica,
    now: Timestamp,
    from: Option<usize>,
    bytes: &[u8],
) -> Option<DropReason> {
    r.handle_datagram(now, from, bytes).first_drop
}

#[test]
fn every_drop_is_counted_by_reason() {
    let g = Group::new(4);
    let config = BftConfig {
        max_rounds: 8,
        linger: Duration::from_millis(10),
        answer_for: Duration::from_millis(10),
        ..BftConfig::default()
    };
    let mut r = g.replica(0, value(A), config);
    let good = g.packet(1, vec![g.votes(&[1], Phase::Prevote, 0, value(B))]);
    let t = at_ms(1);
    let cases: Vec<(DropReason, Option<usize>, Vec<u8>)> = vec![
        (
            DropReason::Truncated,
            Some(1),
            good[..good.len() - 3].to_vec(),
        ),
        (
            DropReason::Malformed,
            Some(1),
            [good.clone(), vec![0]].concat(),
        ),
        (DropReason::NotBft, Some(1), vec![0x01; 40]),
        (DropReason::UnsupportedVersion, Some(1), {
            let mut b = good.clone();
            b[1] = 9;
            b
        }),
        (DropReason::WrongGroup, Some(1), {
            let mut b = good.clone();
            b[2] ^= 1;
            b
        }),
        (DropReason::WrongInstance, Some(1), {
            let mut b = good.clone();
            b[17] ^= 1;
            b
        }),
        (DropReason::UnknownSender, None, g.packet(0, vec![])),
        (DropReason::SenderMismatch, Some(2), good.clone()),
        (DropReason::BadSignature, Some(1), {
            let mut b = good.clone();
            let at = b.len() - 10;
            b[at] ^= 1;
            b
        }),
        (
            DropReason::RoundTooHigh,
            Some(1),
            g.packet(1, vec![g.votes(&[1], Phase::Prevote, 8, value(B))]),
        ),
        (
            DropReason::InvalidProposal,
            Some(1),
            g.packet(1, vec![g.proposal(2, value(B), Some(2))]),
        ),
    ];
    for (reason, from, bytes) in &cases {
        assert_eq!(
            drop_of(&mut r, t, *from, bytes),
            Some(*reason),
            "{reason:?}"
        );
        assert_eq!(r.stats().drops(*reason), 1, "{reason:?}");
    }
    // A second, different proposal of one round's proposer.
    g.deliver(&mut r, t, 1, vec![g.proposal(1, value(B), None)]);
    let second = g.packet(1, vec![g.proposal(1, value(C), None)]);
    assert_eq!(
        drop_of(&mut r, t, Some(1), &second),
        Some(DropReason::Equivocation)
    );
    // Finished: decided, lingered and answered.
    g.deliver(
        &mut r,
        at_ms(2),
        1,
        vec![g.votes(&[1, 2, 3], Phase::Precommit, 0, value(B))],
    );
    assert!(r.decision().is_some());
    r.handle_timeout(at_ms(100));
    assert!(r.is_finished());
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(
        drop_of(&mut r, at_ms(101), Some(1), &good),
        Some(DropReason::Finished)
    );
    assert_eq!(r.stats().total_drops(), cases.len() as u64 + 2);
}

#[test]
fn refuses_a_foreign_key_and_unworkable_settings() {
    let g = Group::new(4);
    let other = Group::new(5);
    let err = Replica::new(
        Timestamp::ZERO,
        g.membership.clone(),
        other.keys[4].clone(),
        1,
        value(A),
        BftConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, BftError::NotAMember));
    let zero = BftConfig {
        flood_interval: Duration::ZERO,
        ..BftConfig::default()
    };
    assert!(matches!(
        Replica::new(
            Timestamp::ZERO,
            g.membership.clone(),
            g.keys[0].clone(),
            1,
            value(A),
            zero
        ),
        Err(BftError::Config(_))
    ));
}

#[test]
fn a_certificate_of_21_goes_in_two_packets_of_at_most_1200_bytes() {
    let g = Group::new(31);
    let mut r = g.replica(0, value(A), BftConfig::default());
    let signers: Vec<usize> = (1..=21).collect();
    g.deliver(
        &mut r,
        at_ms(1),
        1,
        vec![g.votes(&signers, Phase::Precommit, 0, value(A))],
    );
    assert!(r.decision().is_some());
    assert!(
        drain(&mut r, at_ms(2))
            .iter()
            .all(|(to, _, p)| *to != 5 || p.items.is_empty()),
        "no certificate before a status of peer 5, fresh since the decision, shows it undecided"
    );
    g.deliver(&mut r, at_ms(30), 5, vec![]);
    let sent = drain(&mut r, at_ms(45));
    let to_five: Vec<_> = sent.iter().filter(|(to, _, _)| *to == 5).collect();
    assert_eq!(to_five.len(), 2, "21 signatures do not fit one packet");
    let mut parts = Vec::new();
    for (_, bytes, packet) in &to_five {
        assert!(bytes.len() <= MAX_PACKET, "{}", bytes.len());
        assert!(packet.header.status.committed);
        for item in &packet.items {
            if let Item::Votes {
                phase: Phase::Precommit,
                round: 0,
                value: v,
                signers,
                signatures,
            } = item
            {
                assert_eq!(*v, value(A));
                let indices = (0..31).filter(|i| signers & (1u128 << i) != 0);
                parts.extend(
                    indices
                        .zip(signatures.iter().copied())
                        .map(|(i, s)| (i as u8, s)),
                );
            }
        }
    }
    parts.sort_by_key(|(i, _)| *i);
    let certificate = Certificate {
        instance: common::INSTANCE,
        round: 0,
        value: value(A),
        signatures: parts,
    };
    assert_eq!(certificate.verify(&g.membership), Ok(()));
    assert!(sent.iter().all(|(_, b, _)| b.len() <= MAX_PACKET));
}

#[test]
fn after_deciding_it_floods_for_the_linger_then_only_answers() {
    let g = Group::new(4);
    let config = BftConfig {
        linger: Duration::from_millis(200),
        answer_for: Duration::from_secs(2),
        ..BftConfig::default()
    };
    let mut r = g.replica(0, value(A), config);
    g.deliver(
        &mut r,
        at_ms(1),
        1,
        vec![g.votes(&[1, 2, 3], Phase::Precommit, 0, value(A))],
    );
    let _ = drain(&mut r, at_ms(1));
    // Every peer says it is undecided, after our decision.
    for peer in 1..4 {
        g.deliver(&mut r, at_ms(25), peer, vec![]);
    }
    let mut peers: Vec<usize> = drain(&mut r, at_ms(25))
        .iter()
        .filter(|(_, _, p)| !p.items.is_empty())
        .map(|(to, _, _)| *to)
        .collect();
    peers.sort_unstable();
    peers.dedup();
    assert_eq!(
        peers,
        vec![1, 2, 3],
        "the certificate goes to every undecided peer"
    );
    // Peer 1 says it has committed and knows we have: nothing more for it.
    let done = Status {
        committed: true,
        knows_receiver_committed: true,
        ..Status::default()
    };
    r.handle_datagram(at_ms(30), Some(1), &g.packet_with(1, done, vec![]))
        .first_drop
        .map_or(Ok(()), Err)
        .unwrap();
    // Peers 2 and 3 keep saying they are undecided until 150 ms.
    let mut during = Vec::new();
    for t in (30..600).step_by(5) {
        if t % 50 == 0 && t <= 150 {
            for peer in 2..4 {
                g.deliver(&mut r, at_ms(t), peer, vec![]);
            }
        }
        during.extend(
            drain(&mut r, at_ms(t))
                .into_iter()
                .map(|(to, _, _)| (to, t)),
        );
    }
    assert!(during.iter().all(|(to, _)| *to != 1), "peer 1 committed");
    assert!(during.iter().any(|(to, _)| *to == 2));
    // After the linger (201 ms), only answers to the undecided peers that
    // asked, at most one each (retransmissions back off: 40, 80, 160 ms).
    let late: Vec<_> = during.iter().filter(|(_, t)| *t > 201).collect();
    assert!(late.len() <= 2, "{during:?}");
    assert!(
        late.iter()
            .all(|(to, t)| (*to == 2 || *to == 3) && *t < 400),
        "{during:?}"
    );
    // After the linger, a packet of an undecided peer gets one answer.
    r.handle_datagram(at_ms(700), Some(3), &g.packet(3, vec![]))
        .first_drop
        .map_or(Ok(()), Err)
        .unwrap();
    let answer: Vec<_> = (0..10)
        .flat_map(|k| drain(&mut r, at_ms(700 + 10 * k)))
        .collect();
    assert!(!answer.is_empty());
    assert!(answer.iter().all(|(to, _, _)| *to == 3));
    assert!(
        answer.iter().any(|(_, _, p)| !p.items.is_empty()),
        "with the certificate"
    );
    r.handle_timeout(at_ms(2_300));
    assert!(r.is_finished());
}
