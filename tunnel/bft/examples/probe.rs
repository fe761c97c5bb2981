//! Ad-hoc probe of single scenarios (development aid).
use std::time::Instant;
use tgp_bft::sim::{run, Fault, Scenario};

fn main() {
    let mut n = 4;
    let mut loss = 0.0;
    let mut competing = false;
    let mut fault = None;
    let mut runs = 3;
    let mut first = 0;
    for arg in std::env::args().skip(1) {
        let (k, v) = arg.split_once('=').unwrap_or((&arg, ""));
        match k {
            "n" => n = v.parse().unwrap(),
            "loss" => loss = v.parse().unwrap(),
            "c" => competing = true,
            "runs" => runs = v.parse().unwrap(),
            "seed" => first = v.parse().unwrap(),
            "fault" => {
                fault = Some(match v {
                    "silent" => Fault::Silent,
                    "equivocate" => Fault::Equivocate,
                    "forge" => Fault::Forge,
                    _ => Fault::Replay,
                })
            }
            _ => panic!("unknown {k}"),
        }
    }
    for seed in first..first + runs {
        let mut s = Scenario::new(n, seed);
        s.loss = loss;
        s.competing = competing;
        if let Some(f) = fault {
            s.faults = vec![f; (n - 1) / 3];
        }
        let t = Instant::now();
        let r = run(&s);
        println!(
            "seed={seed} agree={} valid={} all_at={:?} rounds={} pk={} bytes={} maxpk={} verif={} wall={:?} drops={:?}",
            r.agreement(),
            r.valid_decisions(),
            r.all_decided_at.map(|d| d.as_millis()),
            r.max_round,
            r.honest_packets,
            r.honest_bytes,
            r.max_honest_packet,
            r.verifications,
            t.elapsed(),
            r.drops.iter().filter(|(_, c)| *c > 0).map(|(r, c)| format!("{}={c}", r.name())).collect::<Vec<_>>()
        );
    }
}
