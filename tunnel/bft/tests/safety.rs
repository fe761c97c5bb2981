//! Safety under attack: across many seeded simulated runs, with f
//! Byzantine members (equivocating, silent, forging, replaying), lossy
//! links, skewed starts, competing inputs, and round timeouts short enough
//! that rounds overlap and locks matter, no two honest members decide
//! different values, every decision carries a valid certificate of a
//! member's value, no honest member ever holds a conflicting certificate,
//! and no packet exceeds 1200 bytes.
//!
//! CI runs 10,000 runs (n = 4: 8,500 in two halves; n = 7: 1,300;
//! n = 10: 170; n = 31: 30), about 35 s of CPU. `TGP_BFT_SAFETY_SCALE=10`
//! multiplies every count, for the long report
//! (`TGP_BFT_SAFETY_SCALE=10 cargo test --release -p tgp-bft --test safety -- --nocapture`).
//!
//! The last test breaks the lock rule on purpose (feature
//! `fault-injection`) and shows the same adversaries then make honest
//! members disagree: the suite can fail.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::Duration;
use tgp_bft::sim::{run, Fault, RunResult, Scenario};
use tgp_bft::wire::MAX_PACKET;
use tgp_bft::DropReason;

fn scale() -> u64 {
    std::env::var("TGP_BFT_SAFETY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, options: &[T]) -> T {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

/// A hostile scenario drawn from `seed`.
fn stress(n: usize, seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n as u64);
    let f = (n - 1) / 3;
    let mut s = Scenario::new(n, seed);
    s.loss = pick(&mut rng, &[0.0, 0.05, 0.2, 0.35, 0.5]);
    s.competing = rng.next_u64() % 3 != 0;
    s.faults = (0..f)
        .map(|_| {
            pick(
                &mut rng,
                &[
                    Fault::Equivocate,
                    Fault::Equivocate,
                    Fault::Equivocate,
                    Fault::Silent,
                    Fault::Forge,
                    Fault::Replay,
                ],
            )
        })
        .collect();
    let ms = |v: u64| Duration::from_millis(v);
    s.delay = ms(pick(&mut rng, &[5, 15, 30, 60]));
    s.delay_spread = s.delay.mul_f64(pick(&mut rng, &[0.0, 0.5, 0.9]));
    s.jitter = ms(pick(&mut rng, &[0, 5, 20]));
    s.start_spread = ms(pick(&mut rng, &[0, 30, 150]));
    s.config.round_timeout = ms(pick(&mut rng, &[20, 40, 80, 200, 500]));
    s.config.round_timeout_step = ms(pick(&mut rng, &[10, 20, 40]));
    s.config.flood_interval = ms(pick(&mut rng, &[10, 20]));
    s.config.max_rounds = pick(&mut rng, &[16, 64]);
    s.deadline = Duration::from_millis(2_500);
    s.after_decision = ms(150);
    s
}

#[derive(Default)]
struct Tally {
    runs: u64,
    all_decided: u64,
    later_round: u64,
    lock_conflicts: u64,
    equivocations: u64,
    drops: u64,
    forged: u64,
}

fn check(result: &RunResult, scenario: &Scenario, tally: &mut Tally) {
    assert!(
        result.agreement(),
        "honest members disagree: n = {} seed = {} {scenario:?}\n{:?}",
        scenario.n,
        scenario.seed,
        result.honest
    );
    assert!(result.valid_decisions(), "invalid decision: {scenario:?}");
    assert_eq!(result.conflicting_certificates, 0, "{scenario:?}");
    assert!(result.max_honest_packet <= MAX_PACKET, "{scenario:?}");
    tally.runs += 1;
    tally.all_decided += u64::from(result.all_decided_at.is_some());
    tally.later_round += u64::from(
        result
            .honest
            .iter()
            .any(|h| h.decided.is_some_and(|d| d.1 > 0)),
    );
    let mut locks = result.honest.iter().filter_map(|h| h.locked.map(|l| l.1));
    if let Some(first) = locks.next() {
        tally.lock_conflicts += u64::from(locks.any(|v| v != first));
    }
    tally.equivocations += result
        .honest
        .iter()
        .map(|h| h.equivocations_seen)
        .sum::<u64>();
    tally.drops += result.drops.iter().map(|(_, c)| c).sum::<u64>();
    tally.forged += result.drops(DropReason::BadSignature);
}

fn suite(n: usize, seeds: std::ops::Range<u64>) -> Tally {
    let mut tally = Tally::default();
    let seeds = seeds.start * scale()..seeds.end * scale();
    for seed in seeds {
        let scenario = stress(n, seed);
        let result = run(&scenario);
        check(&result, &scenario, &mut tally);
    }
    println!(
        "safety n={n} runs={} all_decided={} decided_after_round_0={} runs_with_conflicting_locks={} \
         equivocations_seen={} drops={} bad_signatures={} disagreements=0",
        tally.runs,
        tally.all_decided,
        tally.later_round,
        tally.lock_conflicts,
        tally.equivocations,
        tally.drops,
        tally.forged
    );
    tally
}

/// The suite must exercise what it claims to: most runs decide, many
/// after round 0, honest members often end locked on different values,
/// and the adversaries are seen equivocating and forging.
fn assert_exercised(t: &Tally) {
    assert!(
        t.all_decided * 10 >= t.runs * 6,
        "too few runs decided: {}",
        t.all_decided
    );
    assert!(
        t.later_round * 10 >= t.runs,
        "too few runs needed a later round"
    );
    assert!(t.equivocations > 0 && t.forged > 0);
}

#[test]
fn safety_n4_first_half() {
    let t = suite(4, 0..4_250);
    assert_exercised(&t);
    assert!(
        t.lock_conflicts > 0,
        "no run had honest members locked on different values"
    );
}

#[test]
fn safety_n4_second_half() {
    assert_exercised(&suite(4, 4_250..8_500));
}

#[test]
fn safety_n7() {
    let t = suite(7, 0..1_300);
    assert_exercised(&t);
    assert!(
        t.lock_conflicts > 0,
        "no run had honest members locked on different values"
    );
}

#[test]
fn safety_n10() {
    assert_exercised(&suite(10, 0..170));
}

#[test]
fn safety_n31() {
    assert_exercised(&suite(31, 0..30));
}

/// With the lock rule broken, the same adversaries split the honest
/// members: proof that the suite would catch a broken lock.
#[test]
fn the_suite_catches_a_broken_lock_rule() {
    let mut disagreements = 0;
    let mut tried = 0;
    for seed in 0..3_000 {
        let mut scenario = stress(4, seed);
        scenario.config.ignore_locks = true;
        let result = run(&scenario);
        tried += 1;
        if !result.agreement() {
            disagreements += 1;
            if disagreements >= 2 {
                break;
            }
        }
    }
    println!("broken lock rule: {disagreements} disagreements in {tried} runs");
    assert!(
        disagreements > 0,
        "the adversaries never exploited a broken lock in {tried} runs"
    );
}
