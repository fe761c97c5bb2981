//! What one direction of a path should do, and parsing of the command-line
//! forms (`--loss 10%`, `--up-delay 25ms`, `--rate 20mbit`, …).
//!
//! Units follow `tc`: a percentage may be written with or without `%`
//! (`10%` and `10` both mean ten per cent); durations need a unit (`ns`,
//! `us`, `ms`, `s`; bare `0` is allowed); rates are in bits per second
//! (`bit`, `kbit`, `mbit`, `gbit`, case-insensitive; decimal multiples).

use std::fmt;

/// Nanoseconds of (virtual or monotonic) time.
pub type Nanos = u64;

/// Default drop-tail queue length of the rate stage, in packets.
pub const DEFAULT_QUEUE: usize = 100;

/// The impairments of one direction of a path.
#[derive(Clone, Debug, PartialEq)]
pub struct DirSpec {
    /// Mean loss probability, 0..=1.
    pub loss: f64,
    /// Mean loss-burst length in packets (Gilbert-Elliott); `None` means
    /// independent losses.
    pub burst: Option<f64>,
    /// Fixed one-way delay.
    pub delay: Nanos,
    /// Jitter: each packet's delay varies uniformly within ±jitter. Order
    /// is kept (a packet waits for its predecessor), so a dense flow sees
    /// delays nearer `delay + jitter`; use `reorder` for reordering.
    pub jitter: Nanos,
    /// Link rate in bits per second, counting whole Ethernet frames as seen
    /// on the veth (header included, no preamble or FCS); 0 = unlimited.
    pub rate_bps: u64,
    /// Drop-tail queue of the rate stage, in packets (the one being
    /// serialised included). Only used when `rate_bps > 0`.
    pub queue: usize,
    /// Probability that a packet skips the delay stage and so overtakes
    /// the packets still in flight (netem's semantics).
    pub reorder: f64,
    /// Probability that a delivered packet is delivered twice.
    pub duplicate: f64,
}

impl Default for DirSpec {
    fn default() -> Self {
        DirSpec {
            loss: 0.0,
            burst: None,
            delay: 0,
            jitter: 0,
            rate_bps: 0,
            queue: DEFAULT_QUEUE,
            reorder: 0.0,
            duplicate: 0.0,
        }
    }
}

impl DirSpec {
    /// Gilbert-Elliott transition probabilities `(p, r)`: good→bad and
    /// bad→good per packet, such that the stationary loss is `loss` and the
    /// mean burst is `burst` packets. `None` when bursts are not asked for.
    pub fn gilbert_elliott(&self) -> Option<(f64, f64)> {
        let len = self.burst?;
        let r = 1.0 / len;
        let p = if self.loss >= 1.0 {
            1.0
        } else {
            self.loss * r / (1.0 - self.loss)
        };
        Some((p, r))
    }

    /// Checks the combination of values.
    pub fn validate(&self) -> Result<(), SpecError> {
        for (name, v) in [
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(SpecError(format!("{name} must be within 0..100%")));
            }
        }
        if let Some(len) = self.burst {
            if !len.is_finite() || len < 1.0 {
                return Err(SpecError("burst must be at least 1 packet".into()));
            }
            if let Some((p, _)) = self.gilbert_elliott() {
                if p > 1.0 && self.loss < 1.0 {
                    return Err(SpecError(format!(
                        "loss {:.1}% with mean burst {len} is impossible: \
                         the mean burst must be at least loss/(1-loss) = {:.2}",
                        self.loss * 100.0,
                        self.loss / (1.0 - self.loss)
                    )));
                }
            }
        }
        if self.rate_bps > 0 && self.queue == 0 {
            return Err(SpecError("queue must be at least 1 packet".into()));
        }
        Ok(())
    }
}

impl fmt::Display for DirSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "loss={}%", self.loss * 100.0)?;
        if let Some(b) = self.burst {
            write!(f, " burst={b}")?;
        }
        write!(
            f,
            " delay={}us jitter={}us rate={} queue={} reorder={}% duplicate={}%",
            self.delay / 1000,
            self.jitter / 1000,
            if self.rate_bps == 0 {
                "unlimited".to_string()
            } else {
                format!("{}bit", self.rate_bps)
            },
            self.queue,
            self.reorder * 100.0,
            self.duplicate * 100.0
        )
    }
}

/// A bad impairment value or option.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// Parses a percentage: `10%`, `10`, `0.5%` → 0.10, 0.10, 0.005.
pub fn parse_percent(s: &str) -> Result<f64, SpecError> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t);
    let v: f64 = t
        .parse()
        .map_err(|_| SpecError(format!("bad percentage {s:?} (e.g. 10%)")))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(SpecError(format!("percentage {s:?} is outside 0..100")));
    }
    Ok(v / 100.0)
}

/// Parses a duration with a unit: `50ms`, `500us`, `1.5s`, `0`.
pub fn parse_duration(s: &str) -> Result<Nanos, SpecError> {
    let t = s.trim().to_ascii_lowercase();
    if t == "0" {
        return Ok(0);
    }
    let (num, mult) = if let Some(n) = t.strip_suffix("ns") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix("ms") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e9)
    } else {
        return Err(SpecError(format!(
            "duration {s:?} needs a unit: ns, us, ms or s"
        )));
    };
    let v: f64 = num
        .parse()
        .map_err(|_| SpecError(format!("bad duration {s:?} (e.g. 50ms)")))?;
    if !v.is_finite() || v < 0.0 || v > 3600.0 * 1e9 / mult {
        return Err(SpecError(format!("duration {s:?} is out of range")));
    }
    Ok((v * mult).round() as Nanos)
}

/// Parses a rate in bits per second: `20mbit`, `500kbit`, `1gbit`, `9600bit`.
pub fn parse_rate(s: &str) -> Result<u64, SpecError> {
    let t = s.trim().to_ascii_lowercase();
    if t.ends_with("bps") {
        return Err(SpecError(format!(
            "rate {s:?}: use bits (kbit, mbit, gbit); tc's 'bps' means bytes and is not accepted"
        )));
    }
    let (num, mult) = if let Some(n) = t.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = t.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix("bit") {
        (n, 1.0)
    } else {
        return Err(SpecError(format!(
            "rate {s:?} needs a unit: bit, kbit, mbit or gbit"
        )));
    };
    let v: f64 = num
        .parse()
        .map_err(|_| SpecError(format!("bad rate {s:?} (e.g. 20mbit)")))?;
    if !v.is_finite() || v < 0.0 || v * mult > 1e12 {
        return Err(SpecError(format!("rate {s:?} is out of range")));
    }
    Ok((v * mult).round() as u64)
}

/// The impairment option names (without `--`, `up-` or `down-`).
pub const OPTIONS: &[&str] = &[
    "loss",
    "burst",
    "delay",
    "jitter",
    "rate",
    "queue",
    "reorder",
    "duplicate",
];

fn apply(spec: &mut DirSpec, key: &str, value: &str) -> Result<(), SpecError> {
    let ctx = |e: SpecError| SpecError(format!("--{key}: {e}"));
    match key {
        "loss" => spec.loss = parse_percent(value).map_err(ctx)?,
        "burst" => {
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| SpecError(format!("--burst: bad length {value:?}")))?;
            spec.burst = if v == 0.0 { None } else { Some(v) };
        }
        "delay" => spec.delay = parse_duration(value).map_err(ctx)?,
        "jitter" => spec.jitter = parse_duration(value).map_err(ctx)?,
        "rate" => spec.rate_bps = parse_rate(value).map_err(ctx)?,
        "queue" => {
            spec.queue = value
                .trim()
                .parse()
                .map_err(|_| SpecError(format!("--queue: bad packet count {value:?}")))?
        }
        "reorder" => spec.reorder = parse_percent(value).map_err(ctx)?,
        "duplicate" => spec.duplicate = parse_percent(value).map_err(ctx)?,
        _ => return Err(SpecError(format!("unknown option --{key}"))),
    }
    Ok(())
}

/// Which direction(s) an option applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Both directions (`--loss`).
    Both,
    /// a → b only (`--up-loss`).
    Up,
    /// b → a only (`--down-loss`).
    Down,
}

/// Splits an option name such as `up-loss` into its scope and base name, if
/// it is an impairment option.
pub fn split_option(name: &str) -> Option<(Scope, &str)> {
    let (scope, base) = if let Some(b) = name.strip_prefix("up-") {
        (Scope::Up, b)
    } else if let Some(b) = name.strip_prefix("down-") {
        (Scope::Down, b)
    } else {
        (Scope::Both, name)
    };
    OPTIONS.contains(&base).then_some((scope, base))
}

/// Builds the two directions (up = a→b, down = b→a) from `(name, value)`
/// pairs such as `("loss", "10%")` or `("down-delay", "30ms")`. Options for
/// both directions apply first, so a per-direction option always wins,
/// whatever the order.
pub fn build(pairs: &[(String, String)]) -> Result<(DirSpec, DirSpec), SpecError> {
    let mut up = DirSpec::default();
    let mut down = DirSpec::default();
    for pass in [Scope::Both, Scope::Up, Scope::Down] {
        for (name, value) in pairs {
            let (scope, base) =
                split_option(name).ok_or_else(|| SpecError(format!("unknown option --{name}")))?;
            if scope != pass {
                continue;
            }
            match scope {
                Scope::Both => {
                    apply(&mut up, base, value)?;
                    apply(&mut down, base, value)?;
                }
                Scope::Up => apply(&mut up, base, value)?,
                Scope::Down => apply(&mut down, base, value)?,
            }
        }
    }
    up.validate().map_err(|e| SpecError(format!("up: {e}")))?;
    down.validate()
        .map_err(|e| SpecError(format!("down: {e}")))?;
    Ok((up, down))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Result<(DirSpec, DirSpec), SpecError> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        build(&v)
    }

    #[test]
    fn units() {
        assert_eq!(parse_percent("10%").unwrap(), 0.1);
        assert_eq!(parse_percent("10").unwrap(), 0.1);
        assert!(parse_percent("101%").is_err());
        assert!(parse_percent("x").is_err());
        assert_eq!(parse_duration("50ms").unwrap(), 50_000_000);
        assert_eq!(parse_duration("500us").unwrap(), 500_000);
        assert_eq!(parse_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert!(parse_duration("50").is_err());
        assert!(parse_duration("-1ms").is_err());
        assert_eq!(parse_rate("20mbit").unwrap(), 20_000_000);
        assert_eq!(parse_rate("1Gbit").unwrap(), 1_000_000_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert!(parse_rate("20mbps").is_err());
        assert!(parse_rate("20").is_err());
    }

    #[test]
    fn per_direction_overrides_both_whatever_the_order() {
        let (up, down) = p(&[
            ("up-loss", "1%"),
            ("loss", "10%"),
            ("delay", "25ms"),
            ("down-delay", "5ms"),
        ])
        .unwrap();
        assert_eq!(up.loss, 0.01);
        assert_eq!(down.loss, 0.1);
        assert_eq!(up.delay, 25_000_000);
        assert_eq!(down.delay, 5_000_000);
    }

    #[test]
    fn rejects_unknown_and_impossible() {
        assert!(p(&[("lost", "1%")]).is_err());
        assert!(p(&[("loss", "60%"), ("burst", "1")]).is_err());
        assert!(p(&[("burst", "0.5")]).is_err());
        assert!(p(&[("rate", "1mbit"), ("queue", "0")]).is_err());
        assert!(p(&[("loss", "10%"), ("burst", "4")]).is_ok());
    }

    #[test]
    fn gilbert_elliott_keeps_mean_loss() {
        let (up, _) = p(&[("loss", "10%"), ("burst", "4")]).unwrap();
        let (gb, bg) = up.gilbert_elliott().unwrap();
        assert!((bg - 0.25).abs() < 1e-12);
        let stationary = gb / (gb + bg);
        assert!((stationary - 0.1).abs() < 1e-12);
    }
}
