//! What one direction of a path should do ([`DirSpec`], and the
//! simulator's [`LinkConfig`] it becomes), and the command-line options
//! (`--loss 10%`, `--up-delay 25ms`, `--rate 20mbit`, …).
//!
//! The values are parsed by `tgp-units`, whose units follow `tc`: a
//! percentage may be written with or without `%` (`10%` and `10` both mean
//! ten per cent); durations need a unit (`ns`, `us`, `ms`, `s`, `min`; bare
//! `0` is allowed), at most an hour here; rates are in bits per second
//! (`bit`, `kbit`, `mbit`, `gbit`, case-insensitive; decimal multiples).

use std::fmt;
use std::time::Duration;
use tgp_sim::link::{LinkConfig, LossModel};
use tgp_units::{format_duration, BitsPerSecond};

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
    /// The loss model: Gilbert-Elliott bursts ([`LossModel::bursty`]: the
    /// bad state loses every packet, the good state none, `r = 1/burst`,
    /// `p = loss·r/(1−loss)`) with `burst`, else independent losses.
    ///
    /// # Panics
    /// On values [`DirSpec::validate`] refuses.
    pub fn loss_model(&self) -> LossModel {
        match self.burst {
            Some(len) => LossModel::bursty(self.loss, len),
            None if self.loss > 0.0 => LossModel::Random {
                probability: self.loss,
            },
            None => LossModel::None,
        }
    }

    /// The simulator's link model doing what this spec says: the rate stage
    /// with a queue of `queue` packets (the one being serialised included,
    /// so `queue - 1` waiting), the loss model, `delay ± jitter` keeping
    /// order, netem's reorder (skip the delay) and duplication.
    ///
    /// # Panics
    /// On values [`DirSpec::validate`] refuses.
    pub fn link_config(&self) -> LinkConfig {
        let mut config = LinkConfig::ideal(Duration::from_nanos(self.delay))
            .with_loss(self.loss_model())
            .with_symmetric_jitter(Duration::from_nanos(self.jitter))
            .with_reorder_skipping_delay(self.reorder)
            .with_duplicate(self.duplicate);
        if self.rate_bps > 0 {
            config = config
                .with_rate(self.rate_bps, usize::MAX)
                .with_queue_limit_packets(self.queue.saturating_sub(1));
        }
        config
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
            // Between two bursts there is at least one delivered packet.
            if self.loss < 1.0 && self.loss / (1.0 - self.loss) > len {
                return Err(SpecError(format!(
                    "loss {:.1}% with mean burst {len} is impossible: \
                     the mean burst must be at least loss/(1-loss) = {:.2}",
                    self.loss * 100.0,
                    self.loss / (1.0 - self.loss)
                )));
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
            " delay={} jitter={} rate={} queue={} reorder={}% duplicate={}%",
            format_duration(Duration::from_nanos(self.delay)),
            format_duration(Duration::from_nanos(self.jitter)),
            if self.rate_bps == 0 {
                "unlimited".to_string()
            } else {
                BitsPerSecond(self.rate_bps).to_string()
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

/// The longest delay or jitter accepted.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// A delay or jitter in nanoseconds, at most [`MAX_DURATION`].
fn parse_nanos(value: &str) -> Result<Nanos, SpecError> {
    let d = tgp_units::parse_duration(value).map_err(|e| SpecError(e.to_string()))?;
    if d > MAX_DURATION {
        return Err(SpecError(format!(
            "{value:?} is out of range (at most 1 hour)"
        )));
    }
    Ok(d.as_nanos() as Nanos)
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
    let percent =
        |value| tgp_units::parse_percent(value).map_err(|e| ctx(SpecError(e.to_string())));
    match key {
        "loss" => spec.loss = percent(value)?,
        "burst" => {
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| SpecError(format!("--burst: bad length {value:?}")))?;
            spec.burst = if v == 0.0 { None } else { Some(v) };
        }
        "delay" => spec.delay = parse_nanos(value).map_err(ctx)?,
        "jitter" => spec.jitter = parse_nanos(value).map_err(ctx)?,
        "rate" => {
            spec.rate_bps = tgp_units::parse_rate(value)
                .map_err(|e| ctx(SpecError(e.to_string())))?
                .0
        }
        "queue" => {
            spec.queue = value
                .trim()
                .parse()
                .map_err(|_| SpecError(format!("--queue: bad packet count {value:?}")))?
        }
        "reorder" => spec.reorder = percent(value)?,
        "duplicate" => spec.duplicate = percent(value)?,
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
    fn option_values_use_tgp_units() {
        let up = |name: &str, value: &str| p(&[(name, value)]).map(|(up, _)| up);
        assert_eq!(up("loss", "10%").unwrap().loss, 0.1);
        assert_eq!(up("loss", "10").unwrap().loss, 0.1);
        assert_eq!(up("reorder", "0.5%").unwrap().reorder, 0.005);
        assert!(up("loss", "101%").is_err());
        let err = up("duplicate", "x").unwrap_err().to_string();
        assert!(
            err.starts_with("--duplicate: \"x\" is not a percentage"),
            "{err}"
        );
        assert_eq!(up("delay", "50ms").unwrap().delay, 50_000_000);
        assert_eq!(up("delay", "500us").unwrap().delay, 500_000);
        assert_eq!(up("delay", "1.5s").unwrap().delay, 1_500_000_000);
        assert_eq!(up("jitter", "0").unwrap().jitter, 0);
        assert_eq!(up("jitter", "250ns").unwrap().jitter, 250);
        assert!(up("delay", "50").is_err());
        assert!(up("delay", "-1ms").is_err());
        assert!(up("delay", "2h").is_err());
        let err = up("delay", "61min").unwrap_err().to_string();
        assert!(err.contains("out of range (at most 1 hour)"), "{err}");
        assert_eq!(up("rate", "20mbit").unwrap().rate_bps, 20_000_000);
        assert_eq!(up("rate", "1Gbit").unwrap().rate_bps, 1_000_000_000);
        assert_eq!(up("rate", "500kbit").unwrap().rate_bps, 500_000);
        let err = up("rate", "20mbps").unwrap_err().to_string();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(up("rate", "20").is_err());
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
        let LossModel::GilbertElliott {
            good_to_bad,
            bad_to_good,
            loss_in_good,
            loss_in_bad,
        } = up.loss_model()
        else {
            panic!("--burst must give a Gilbert-Elliott model");
        };
        assert!((bad_to_good - 0.25).abs() < 1e-12);
        let stationary = good_to_bad / (good_to_bad + bad_to_good);
        assert!((stationary - 0.1).abs() < 1e-12);
        assert_eq!((loss_in_good, loss_in_bad), (0.0, 1.0));
        assert!((up.loss_model().mean_loss() - 0.1).abs() < 1e-12);
        // The boundary case loss/(1-loss) == burst is possible.
        assert!(p(&[("loss", "50%"), ("burst", "1")]).is_ok());
    }

    #[test]
    fn link_config_follows_the_spec() {
        let (up, down) = p(&[
            ("up-rate", "10mbit"),
            ("queue", "4"),
            ("delay", "20ms"),
            ("jitter", "2ms"),
            ("reorder", "1%"),
            ("duplicate", "2%"),
        ])
        .unwrap();
        let c = up.link_config();
        assert_eq!(c.rate_bits_per_second, Some(10_000_000));
        assert_eq!(c.queue_limit_packets, 3);
        assert_eq!(c.queue_limit_bytes, usize::MAX);
        assert_eq!(c.delay, Duration::from_millis(20));
        assert_eq!(c.jitter, Duration::from_millis(2));
        assert_eq!(c.jitter_mode, tgp_sim::link::JitterMode::PlusMinus);
        assert_eq!(c.reorder_mode, tgp_sim::link::ReorderMode::SkipDelay);
        assert_eq!(c.reorder_probability, 0.01);
        assert_eq!(c.duplicate_probability, 0.02);
        assert_eq!(c.loss, LossModel::None);
        assert_eq!(down.link_config().rate_bits_per_second, None);
        let shown = up.to_string();
        assert!(
            shown.contains("delay=20ms jitter=2ms rate=10mbit queue=4"),
            "{shown}"
        );
        assert!(down.to_string().contains("rate=unlimited"));
    }
}
