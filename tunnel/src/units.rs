//! Human-written quantities in the config file: durations such as `"50ms"`
//! and rates such as `"20mbit"`.

use std::fmt;
use std::time::Duration;

/// Split `"1.5ms"` into `(1.5, "ms")`, accepting only plain decimal numbers
/// (no sign, exponent, `inf` or `NaN`).
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let dots = number.len() - digits;
    if digits == 0 || dots > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    value.is_finite().then_some((value, unit.trim()))
}

/// Parse a duration: a decimal number and a unit, one of `us`, `ms`, `s`,
/// `m` (minutes). `"50ms"`, `"1s"`, `"1.5s"`, `"250us"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let problem = || {
        format!("{text:?} is not a duration (a number and a unit: us, ms, s or m, e.g. \"50ms\")")
    };
    let (value, unit) = split_number(text).ok_or_else(problem)?;
    let seconds = match unit {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(problem()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| problem())
}

/// Write a duration the way the config file would (`50ms`, `1s`, `1.5s`).
pub fn format_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros.is_multiple_of(1_000_000) {
        format!("{}s", micros / 1_000_000)
    } else if micros.is_multiple_of(1_000) {
        let ms = micros / 1_000;
        if ms >= 1_000 {
            format!("{}s", duration.as_secs_f64())
        } else {
            format!("{ms}ms")
        }
    } else {
        format!("{micros}us")
    }
}

/// A link rate in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BitsPerSecond(pub u64);

impl fmt::Display for BitsPerSecond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.0;
        for (unit, scale) in [
            ("gbit", 1_000_000_000),
            ("mbit", 1_000_000),
            ("kbit", 1_000),
        ] {
            if bits >= scale && bits.is_multiple_of((scale / 1000).max(1)) {
                let value = bits as f64 / scale as f64;
                return write!(f, "{value}{unit}");
            }
        }
        write!(f, "{bits}bit")
    }
}

/// Parse a rate: a decimal number and one of `bit`, `kbit`, `mbit`, `gbit`
/// (bits per second, powers of 1000, as in `tc`), case-insensitive.
/// `"20mbit"`, `"1.5gbit"`, `"500kbit"`.
pub fn parse_rate(text: &str) -> Result<BitsPerSecond, String> {
    let problem = |hint: &str| {
        format!(
            "{text:?} is not a rate (a number and a unit: bit, kbit, mbit or gbit per second, e.g. \"20mbit\"){hint}"
        )
    };
    let (value, unit) = split_number(text).ok_or_else(|| problem(""))?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix("/s").unwrap_or(&unit);
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" | "kbps" | "mbps" | "gbps" => {
            return Err(problem(
                "; \"bps\" is ambiguous (tc reads it as bytes), write \"bit\"",
            ))
        }
        _ => return Err(problem("")),
    };
    let bits = (value * scale).round();
    if !(1.0..=1e12).contains(&bits) {
        return Err(format!(
            "{text:?} is out of range (1bit to 1000gbit per second)"
        ));
    }
    Ok(BitsPerSecond(bits as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        for bad in [
            "50",
            "ms",
            "-5ms",
            "5 parsecs",
            "1e3ms",
            "inf s",
            "NaNms",
            "1..2s",
            "",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
        assert_eq!(format_duration(Duration::from_millis(50)), "50ms");
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20mbit"), Ok(BitsPerSecond(20_000_000)));
        assert_eq!(parse_rate("20Mbit"), Ok(BitsPerSecond(20_000_000)));
        assert_eq!(parse_rate("1.5gbit"), Ok(BitsPerSecond(1_500_000_000)));
        assert_eq!(parse_rate("500kbit/s"), Ok(BitsPerSecond(500_000)));
        assert_eq!(parse_rate("9600bit"), Ok(BitsPerSecond(9600)));
        assert!(parse_rate("20mbps").unwrap_err().contains("ambiguous"));
        assert!(parse_rate("20").is_err());
        assert!(parse_rate("0mbit").unwrap_err().contains("out of range"));
        assert!(parse_rate("99999gbit").is_err());
        assert_eq!(BitsPerSecond(20_000_000).to_string(), "20mbit");
        assert_eq!(BitsPerSecond(1_500_000_000).to_string(), "1.5gbit");
        assert_eq!(BitsPerSecond(9600).to_string(), "9.6kbit");
        assert_eq!(BitsPerSecond(999).to_string(), "999bit");
    }
}
