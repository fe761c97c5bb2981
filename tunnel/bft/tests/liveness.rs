//! Termination and cost in the simulator, with default settings: round 0
//! decides when honest inputs agree; competing inputs decide in a later
//! round; lossy links and f Byzantine members of every kind only delay the
//! decision; the paper's single leaderless round never decides competing
//! inputs; flooding stops after the linger. Every run is deterministic
//! (seeded), so the thresholds below cannot flake.

use std::time::Duration;
use tgp_bft::sim::{run, Fault, Scenario};
use tgp_bft::wire::MAX_PACKET;

fn scenario(n: usize, seed: u64, loss: f64, competing: bool, fault: Option<Fault>) -> Scenario {
    let mut s = Scenario::new(n, seed);
    s.loss = loss;
    s.competing = competing;
    s.faults = fault.map_or_else(Vec::new, |f| vec![f; (n - 1) / 3]);
    s
}

#[test]
fn agreeing_inputs_decide_in_round_zero_in_two_message_delays() {
    for n in [4, 7, 10] {
        for seed in 0..20 {
            let r = run(&scenario(n, seed, 0.0, false, None));
            let at = r.all_decided_at.expect("decided");
            // Links are 20 ± 10 ms (+ up to 5 ms jitter): prevote, then
            // precommit, is two one-way delays plus flood gaps.
            assert!(
                at <= Duration::from_millis(150),
                "n = {n} seed = {seed}: {at:?}"
            );
            assert!(r.honest.iter().all(|h| h.decided.is_some_and(|d| d.1 == 0)));
            assert!(r.max_honest_packet <= MAX_PACKET);
        }
    }
}

#[test]
fn competing_inputs_decide_in_round_one() {
    for n in [4, 7, 10] {
        for seed in 0..20 {
            let r = run(&scenario(n, seed, 0.0, true, None));
            let at = r.all_decided_at.expect("decided");
            assert!(
                at <= Duration::from_millis(400),
                "n = {n} seed = {seed}: {at:?}"
            );
            // All inputs differ: no polka in round 0; the early exit moves
            // everyone to round 1, whose proposer is honest.
            assert!(
                r.honest.iter().all(|h| h.decided.is_some_and(|d| d.1 == 1)),
                "{:?}",
                r.honest
            );
            assert!(r.agreement());
        }
    }
}

#[test]
fn lossy_links_and_f_byzantine_members_only_delay_the_decision() {
    let mut slowest = Duration::ZERO;
    let mut runs = 0;
    for n in [4, 7, 10] {
        for loss in [0.1, 0.3, 0.5] {
            for fault in Fault::ALL {
                for competing in [false, true] {
                    for seed in 0..3 {
                        let s = scenario(n, seed, loss, competing, Some(fault));
                        let r = run(&s);
                        runs += 1;
                        assert!(r.agreement() && r.valid_decisions());
                        let at = r.all_decided_at.unwrap_or_else(|| {
                            panic!("no decision in {:?}: {s:?}\n{:?}", s.deadline, r.honest)
                        });
                        slowest = slowest.max(at);
                    }
                }
            }
        }
    }
    println!("liveness: {runs} runs, all decided, slowest {slowest:?}");
}

#[test]
fn thirty_one_members_decide_at_half_loss_with_ten_equivocators() {
    for seed in 0..2 {
        let r = run(&scenario(31, seed, 0.5, true, Some(Fault::Equivocate)));
        assert!(r.agreement() && r.valid_decisions());
        let at = r.all_decided_at.expect("decided");
        assert!(at <= Duration::from_secs(10), "{at:?}");
        assert!(r.max_honest_packet <= MAX_PACKET);
    }
}

#[test]
fn the_papers_single_leaderless_round_never_decides_competing_inputs() {
    for seed in 0..5 {
        let mut s = scenario(4, seed, 0.0, true, None);
        s.config.max_rounds = 1;
        s.deadline = Duration::from_secs(10);
        let r = run(&s);
        assert!(
            r.honest.iter().all(|h| h.decided.is_none()),
            "shares split: nothing reaches a quorum"
        );
        // The same, with agreeing inputs, decides at once.
        let mut s = scenario(4, seed, 0.0, false, None);
        s.config.max_rounds = 1;
        assert!(run(&s).all_decided_at.is_some());
    }
}

#[test]
fn flooding_stops_after_the_linger() {
    for (n, fault) in [(4, None), (7, Some(Fault::Silent)), (10, None)] {
        let mut short = scenario(n, 1, 0.2, true, fault);
        short.after_decision = short.config.linger + Duration::from_millis(500);
        let mut long = short.clone();
        long.after_decision = Duration::from_secs(10);
        let (a, b) = (run(&short), run(&long));
        assert!(a.all_decided_at.is_some());
        assert_eq!(a.all_decided_at, b.all_decided_at);
        assert_eq!(
            a.honest_packets, b.honest_packets,
            "n = {n}: honest members kept sending after every one decided and the linger ended"
        );
    }
}

#[test]
fn sharing_verification_does_not_change_a_run() {
    for (n, fault) in [
        (4, Fault::Forge),
        (7, Fault::Equivocate),
        (7, Fault::Replay),
    ] {
        let shared = scenario(n, 3, 0.3, true, Some(fault));
        let mut alone = shared.clone();
        alone.share_verification = false;
        let (a, b) = (run(&shared), run(&alone));
        assert_eq!(a.honest, b.honest);
        assert_eq!(
            (a.honest_packets, a.honest_bytes),
            (b.honest_packets, b.honest_bytes)
        );
        assert_eq!(a.drops, b.drops);
        assert!(a.shared_verifications < b.verifications);
    }
}
