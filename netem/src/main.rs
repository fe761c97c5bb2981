//! `tgp-impair`: the userspace link impairer.
//!
//! Bridges two interfaces at layer 2 (AF_PACKET) and impairs each direction:
//! frames arriving on `--a` leave through `--b` impaired by the `up` spec,
//! frames arriving on `--b` leave through `--a` impaired by the `down` spec.
//! Run inside the middle namespace that `netem/link up` builds; see
//! `netem/README.md`.

use std::process::ExitCode;
use std::time::{Duration, Instant};
use tgp_netem::bridge::{report_json, report_text, Bridge, Config};
use tgp_netem::spec::{self, split_option};
use tgp_netem::sys;

const USAGE: &str = "\
usage: tgp-impair --a IFACE --b IFACE [IMPAIRMENTS] [--seed N] [--stats FILE] [--pidfile FILE]
       tgp-impair --check [IMPAIRMENTS]

IMPAIRMENTS (each also as --up-NAME for a->b only, --down-NAME for b->a only):
  --loss P        mean loss, e.g. 10%            --burst LEN   mean loss burst (Gilbert-Elliott)
  --delay D       one-way delay, e.g. 25ms       --jitter D    +-D uniform, order kept
  --rate R        e.g. 20mbit (L2 frame bytes)   --queue N     drop-tail packets (default 100)
  --reorder P     skip the delay, e.g. 1%        --duplicate P e.g. 1%

Order on each direction: rate+queue, then loss, then delay/jitter (or reorder), then duplicate.
--stats FILE gets a JSON snapshot every second and on exit (SIGTERM/SIGINT).
--pidfile FILE is written once both interfaces are open.
";

struct Args {
    a: Option<String>,
    b: Option<String>,
    seed: Option<u64>,
    stats: Option<String>,
    pidfile: Option<String>,
    check: bool,
    impairments: Vec<(String, String)>,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut args = Args {
        a: None,
        b: None,
        seed: None,
        stats: None,
        pidfile: None,
        check: false,
        impairments: Vec::new(),
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let Some(name) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        if name == "check" {
            args.check = true;
            continue;
        }
        if name == "help" || name == "h" {
            return Err(String::new());
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("--{name} needs a value"))?,
        };
        match name {
            "a" => args.a = Some(value),
            "b" => args.b = Some(value),
            "seed" => {
                args.seed = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--seed: bad number {value:?}"))?,
                )
            }
            "stats" => args.stats = Some(value),
            "pidfile" => args.pidfile = Some(value),
            _ if split_option(name).is_some() => args.impairments.push((name.to_string(), value)),
            _ => return Err(format!("unknown option --{name}")),
        }
    }
    Ok(args)
}

fn write_atomic(path: &str, contents: &str) {
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, contents).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tgp-impair: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (up, down) = match spec::build(&args.impairments) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tgp-impair: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("up:   {up}\ndown: {down}");
        return ExitCode::SUCCESS;
    }
    let (Some(a), Some(b)) = (args.a, args.b) else {
        eprintln!("tgp-impair: --a and --b are required\n{USAGE}");
        return ExitCode::from(2);
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });

    sys::set_timer_slack(1_000);
    if let Err(e) = sys::install_stop_handlers() {
        eprintln!("tgp-impair: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    let cfg = Config {
        a,
        b,
        up,
        down,
        seed,
    };
    let bridge = match Bridge::start(&cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "tgp-impair: {e} (needs root / CAP_NET_RAW, and the interfaces in this namespace)"
            );
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "tgp-impair: bridging {} <-> {} (seed {seed})\n  up   ({} -> {}): {}\n  down ({} -> {}): {}",
        cfg.a, cfg.b, cfg.a, cfg.b, cfg.up, cfg.b, cfg.a, cfg.down
    );
    if let Some(p) = &args.pidfile {
        write_atomic(p, &format!("{}\n", std::process::id()));
    }

    let mut last_write = Instant::now();
    while !sys::stop_requested() && !bridge.stopped() {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(path) = &args.stats {
            if last_write.elapsed() >= Duration::from_secs(1) {
                write_atomic(path, &report_json(&bridge.report(), bridge.uptime(), true));
                last_write = Instant::now();
            }
        }
    }
    let failed = bridge.failed();
    let uptime = bridge.uptime();
    let reports = bridge.shutdown();
    if let Some(path) = &args.stats {
        write_atomic(path, &report_json(&reports, uptime, false));
    }
    eprint!(
        "tgp-impair: stopped after {uptime:.1}s\n{}",
        report_text(&reports)
    );
    if failed {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
