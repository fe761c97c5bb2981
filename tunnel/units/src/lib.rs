//! `tgp-units`: the one parser (and formatter) for the quantities people
//! write in tgp's config file, on `netem/link`'s command line and in the
//! bench's options: rates, durations, sizes and percentages.
//!
//! | quantity | parse | format | forms |
//! |---|---|---|---|
//! | rate (bits per second) | [`parse_rate`] | [`BitsPerSecond`]'s `Display` | `20mbit`, `1.5gbit`, `500kbit/s`, `9600bit` |
//! | duration | [`parse_duration`], [`parse_duration_default_unit`] | [`format_duration`] | `50ms`, `1.5s`, `250us`, `250µs`, `10ns`, `2m`, `2min`, `0` |
//! | size (bytes) | [`parse_size`] | [`format_size`] | `1400`, `1400b`, `64k`, `64kB`, `1MiB`, `2GiB` |
//! | percentage | [`parse_percent`] | — | `10%`, `10`, `0.5%` |
//!
//! The rules, for all of them:
//! - a plain decimal number (digits with at most one `.`: `1.5`, `.5`,
//!   `5.`), then the unit, optionally separated by spaces; spaces around
//!   the whole are ignored. No sign, no exponent (`1e3`), no `inf`/`NaN`.
//! - units are case-insensitive (`20Mbit`, `50MS`).
//! - rates count bits with decimal multiples, as `tc` does (`kbit` = 1000
//!   bit/s); `bps`, which `tc` reads as *bytes* per second, is refused with a
//!   hint. A rate needs a unit and must lie within 1 bit/s ..= 1000 Gbit/s.
//! - durations need a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`/`min` for
//!   minutes), except `0`; [`parse_duration_default_unit`] also takes a
//!   bare number in a unit the caller chooses (the bench's `--rtt 20` is
//!   20 ms). At most `u64::MAX` nanoseconds (about 584 years).
//! - sizes are bytes; a bare number is bytes; `k`/`kb`, `m`/`mb`, `g`/`gb`
//!   are powers of 1000 (like the rates), `KiB`, `MiB`, `GiB` powers of 1024.
//! - percentages are 0 ..= 100, with or without `%` (`tc`'s convention: a
//!   bare number is per cent), returned as a fraction (0.0 ..= 1.0).
//!
//! The arithmetic is exact (decimal digits times an integer scale, rounded
//! to the nearest unit: nanosecond, bit per second, byte), so `0.1ms` is
//! exactly 100 µs. Nothing here panics, whatever the text: every failure is
//! a [`ParseError`] that quotes the text and says what was expected.

use std::fmt;
use std::time::Duration;

/// Why a quantity could not be parsed. The message quotes the text and says
/// what is expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not a number followed by one of the accepted units.
    #[error("{text:?} is not {what} ({expected})")]
    Malformed {
        /// The text as given.
        text: String,
        /// The quantity with its article: "a rate", "a duration", ….
        what: &'static str,
        /// The accepted forms, with an example.
        expected: String,
    },
    /// A rate written in `bps` (bytes per second to `tc`, bits to many
    /// people).
    #[error(
        "{text:?} is not a rate ({RATE_FORMS}); \"bps\" is ambiguous (tc reads it as bytes), write \"bit\""
    )]
    AmbiguousBps {
        /// The text as given.
        text: String,
    },
    /// Well formed, but outside the range the quantity allows.
    #[error("{text:?} is out of range ({range})")]
    OutOfRange {
        /// The text as given.
        text: String,
        /// The allowed range, in words.
        range: &'static str,
    },
}

const RATE_FORMS: &str = "a number and a unit: bit, kbit, mbit or gbit per second, e.g. \"20mbit\"";
const DURATION_FORMS: &str = "a number and a unit: ns, us, ms, s or min, e.g. \"50ms\"";
const SIZE_FORMS: &str = "a number of bytes, optionally with a unit: b, k, m, g (powers of 1000) \
                          or KiB, MiB, GiB (powers of 1024), e.g. \"64KiB\"";
const PERCENT_FORMS: &str = "a number from 0 to 100, optionally with %, e.g. \"10%\"";

fn malformed(text: &str, what: &'static str, expected: impl Into<String>) -> ParseError {
    ParseError::Malformed {
        text: text.to_owned(),
        what,
        expected: expected.into(),
    }
}

fn out_of_range(text: &str, range: &'static str) -> ParseError {
    ParseError::OutOfRange {
        text: text.to_owned(),
        range,
    }
}

/// A plain decimal number as written: its integer and fraction digits.
#[derive(Clone, Copy, Debug)]
struct Decimal<'a> {
    int: &'a str,
    frac: &'a str,
}

/// Fraction digits taken into account; later ones are far below the
/// rounding unit of every quantity here (10^-19 of the largest scale, a
/// minute, is 6·10^-9 ns).
const MAX_FRAC_DIGITS: usize = 19;

impl Decimal<'_> {
    /// The number times `scale`, rounded to the nearest integer (halves up);
    /// `None` if it does not fit in a `u128`.
    fn times(self, scale: u128) -> Option<u128> {
        let mut int: u128 = 0;
        for digit in self.int.bytes() {
            int = int.checked_mul(10)?.checked_add(u128::from(digit - b'0'))?;
        }
        let frac_digits = &self.frac[..self.frac.len().min(MAX_FRAC_DIGITS)];
        let mut frac: u128 = 0;
        for digit in frac_digits.bytes() {
            frac = frac * 10 + u128::from(digit - b'0');
        }
        // frac < 10^19 < 2^64 and scale <= 2^64, so frac * scale fits.
        let denominator = 10u128.pow(frac_digits.len() as u32);
        let frac_part = frac.checked_mul(scale)?.checked_add(denominator / 2)? / denominator;
        int.checked_mul(scale)?.checked_add(frac_part)
    }

    /// True if every digit is 0.
    fn is_zero(self) -> bool {
        self.int.bytes().chain(self.frac.bytes()).all(|d| d == b'0')
    }

    /// The number as a float (for percentages).
    fn to_f64(self) -> f64 {
        // "0<digits>.<digits>0" is always valid float syntax; the fallback
        // is never taken.
        format!("0{}.{}0", self.int, self.frac)
            .parse()
            .unwrap_or(f64::NAN)
    }
}

/// Splits `" 1.5 ms "` into the number `1.5` and the unit `"ms"`
/// (lowercased). `None` unless the text starts with a plain decimal number.
fn split_number(text: &str) -> Option<(Decimal<'_>, String)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || int.len() + frac.len() == 0 {
        return None;
    }
    Some((Decimal { int, frac }, unit.trim().to_lowercase()))
}

// ---- rates ---------------------------------------------------------------

/// A link rate in bits per second.
///
/// `Display` writes it the way [`parse_rate`] reads it: the largest of
/// `gbit`, `mbit`, `kbit` that needs at most three decimals, else `bit`
/// (`20mbit`, `1.5gbit`, `9.6kbit`, `999bit`).
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
                return write!(f, "{}{unit}", decimal(bits, scale));
            }
        }
        write!(f, "{bits}bit")
    }
}

/// `value / scale` as a decimal without trailing zeros (`scale` a power of
/// ten).
fn decimal(value: u64, scale: u64) -> String {
    let (whole, part) = (value / scale, value % scale);
    if part == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{part:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The largest rate [`parse_rate`] accepts: 1000 Gbit/s.
pub const MAX_RATE: BitsPerSecond = BitsPerSecond(1_000_000_000_000);

/// Parses a rate: a decimal number and one of `bit`, `kbit`, `mbit`, `gbit`
/// (bits per second, powers of 1000, as in `tc`), optionally followed by
/// `/s`, case-insensitive: `"20mbit"`, `"1.5gbit"`, `"500kbit/s"`,
/// `"9600bit"`. Rounded to a whole bit per second; 1 bit/s ..= 1000 Gbit/s.
///
/// ```
/// use tgp_units::{parse_rate, BitsPerSecond};
/// assert_eq!(parse_rate("20mbit"), Ok(BitsPerSecond(20_000_000)));
/// assert!(parse_rate("20mbps").unwrap_err().to_string().contains("ambiguous"));
/// ```
pub fn parse_rate(text: &str) -> Result<BitsPerSecond, ParseError> {
    let problem = || malformed(text, "a rate", RATE_FORMS);
    let (number, unit) = split_number(text).ok_or_else(problem)?;
    let unit = unit.strip_suffix("/s").unwrap_or(&unit).trim_end();
    let scale = match unit {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        "bps" | "kbps" | "mbps" | "gbps" => {
            return Err(ParseError::AmbiguousBps {
                text: text.to_owned(),
            })
        }
        _ => return Err(problem()),
    };
    let range = || out_of_range(text, "1bit to 1000gbit per second");
    let bits = number.times(scale).ok_or_else(range)?;
    if !(1..=u128::from(MAX_RATE.0)).contains(&bits) {
        return Err(range());
    }
    Ok(BitsPerSecond(bits as u64))
}

// ---- durations -----------------------------------------------------------

/// A unit of time, for the bare numbers of [`parse_duration_default_unit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    /// Nanoseconds (`ns`).
    Nanos,
    /// Microseconds (`us`).
    Micros,
    /// Milliseconds (`ms`).
    Millis,
    /// Seconds (`s`).
    Seconds,
    /// Minutes (`min`).
    Minutes,
}

impl TimeUnit {
    fn nanos(self) -> u128 {
        match self {
            TimeUnit::Nanos => 1,
            TimeUnit::Micros => 1_000,
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Minutes => 60_000_000_000,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            TimeUnit::Nanos => "ns",
            TimeUnit::Micros => "us",
            TimeUnit::Millis => "ms",
            TimeUnit::Seconds => "s",
            TimeUnit::Minutes => "min",
        }
    }

    fn from_symbol(unit: &str) -> Option<TimeUnit> {
        Some(match unit {
            "ns" => TimeUnit::Nanos,
            "us" | "µs" | "μs" => TimeUnit::Micros,
            "ms" => TimeUnit::Millis,
            "s" => TimeUnit::Seconds,
            "m" | "min" => TimeUnit::Minutes,
            _ => return None,
        })
    }
}

/// Parses a duration: a decimal number and a unit, one of `ns`, `us` (or
/// `µs`), `ms`, `s`, `m` or `min` (minutes), case-insensitive; `0` needs no
/// unit. `"50ms"`, `"1s"`, `"1.5s"`, `"250us"`, `"2m"`. Rounded to the
/// nearest nanosecond; at most `u64::MAX` ns.
///
/// ```
/// use std::time::Duration;
/// use tgp_units::parse_duration;
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("50").unwrap_err().to_string().contains("is not a duration"));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    parse_duration_inner(text, None)
}

/// [`parse_duration`], but a bare number is in `unit` (`"20"` with
/// [`TimeUnit::Millis`] is 20 ms), for options whose unit is customary.
pub fn parse_duration_default_unit(text: &str, unit: TimeUnit) -> Result<Duration, ParseError> {
    parse_duration_inner(text, Some(unit))
}

fn parse_duration_inner(text: &str, bare: Option<TimeUnit>) -> Result<Duration, ParseError> {
    let problem = || match bare {
        None => malformed(text, "a duration", DURATION_FORMS),
        Some(unit) => malformed(
            text,
            "a duration",
            format!("{DURATION_FORMS}; a bare number is in {}", unit.symbol()),
        ),
    };
    let (number, symbol) = split_number(text).ok_or_else(problem)?;
    let unit = match (symbol.as_str(), bare) {
        ("", Some(unit)) => unit,
        ("", None) if number.is_zero() => return Ok(Duration::ZERO),
        (symbol, _) => TimeUnit::from_symbol(symbol).ok_or_else(problem)?,
    };
    let range = || out_of_range(text, "at most 584 years");
    let nanos = number.times(unit.nanos()).ok_or_else(range)?;
    let nanos = u64::try_from(nanos).map_err(|_| range())?;
    Ok(Duration::from_nanos(nanos))
}

/// Writes a duration the way [`parse_duration`] reads it, exactly: whole
/// seconds as `s`, whole milliseconds as `ms` below a second and as a
/// decimal number of seconds above (`1.5s`), else `us`, else `ns`.
/// Durations beyond `u64::MAX` ns are written as that maximum.
pub fn format_duration(duration: Duration) -> String {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if nanos % 1_000 != 0 {
        return format!("{nanos}ns");
    }
    let micros = nanos / 1_000;
    if micros % 1_000_000 == 0 {
        format!("{}s", micros / 1_000_000)
    } else if micros % 1_000 == 0 {
        let ms = micros / 1_000;
        if ms >= 1_000 {
            format!("{}s", decimal(ms, 1_000))
        } else {
            format!("{ms}ms")
        }
    } else {
        format!("{micros}us")
    }
}

// ---- sizes ---------------------------------------------------------------

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Parses a size in bytes: a decimal number, optionally with a unit: `b`;
/// `k`/`kb`, `m`/`mb`, `g`/`gb` (powers of 1000); `kib`, `mib`, `gib`
/// (powers of 1024); case-insensitive. `"1400"`, `"64k"`, `"1MiB"`,
/// `"1.5kB"`. Rounded to the nearest byte; at most `u64::MAX`.
///
/// ```
/// use tgp_units::parse_size;
/// assert_eq!(parse_size("64KiB"), Ok(65_536));
/// assert_eq!(parse_size("64k"), Ok(64_000));
/// ```
pub fn parse_size(text: &str) -> Result<u64, ParseError> {
    let problem = || malformed(text, "a size", SIZE_FORMS);
    let (number, unit) = split_number(text).ok_or_else(problem)?;
    let scale = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        _ => return Err(problem()),
    };
    let range = || out_of_range(text, "at most 16 EiB");
    let bytes = number.times(u128::from(scale)).ok_or_else(range)?;
    u64::try_from(bytes).map_err(|_| range())
}

/// Writes a size the way [`parse_size`] reads it, exactly: in the largest
/// of `GiB`, `MiB`, `KiB` that divides it, else the largest of `GB`, `MB`,
/// `kB`, else in bytes (`64KiB`, `100kB`, `1400B`).
pub fn format_size(bytes: u64) -> String {
    if bytes != 0 {
        for (unit, scale) in [
            ("GiB", GIB),
            ("MiB", MIB),
            ("KiB", KIB),
            ("GB", 1_000_000_000),
            ("MB", 1_000_000),
            ("kB", 1_000),
        ] {
            if bytes.is_multiple_of(scale) {
                return format!("{}{unit}", bytes / scale);
            }
        }
    }
    format!("{bytes}B")
}

// ---- percentages ---------------------------------------------------------

/// Parses a percentage, 0 ..= 100, with or without `%`, as a fraction:
/// `"10%"`, `"10"`, `"0.5%"` → 0.10, 0.10, 0.005.
///
/// ```
/// assert_eq!(tgp_units::parse_percent("10%"), Ok(0.1));
/// ```
pub fn parse_percent(text: &str) -> Result<f64, ParseError> {
    let problem = || malformed(text, "a percentage", PERCENT_FORMS);
    let (number, unit) = split_number(text).ok_or_else(problem)?;
    if !(unit.is_empty() || unit == "%") {
        return Err(problem());
    }
    let value = number.to_f64();
    if !(0.0..=100.0).contains(&value) {
        return Err(out_of_range(text, "0 to 100 %"));
    }
    Ok(value / 100.0)
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
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5 ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("500ns"), Ok(Duration::from_nanos(500)));
        assert_eq!(parse_duration("50MS"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("0.1ms"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.0"), Ok(Duration::ZERO));
        assert!(parse_duration("0.4").is_err());
        assert_eq!(
            parse_duration("1.0000000004ns"),
            Ok(Duration::from_nanos(1))
        );
        assert_eq!(parse_duration("1.5ns"), Ok(Duration::from_nanos(2)));
        for bad in [
            "50",
            "ms",
            "-5ms",
            "-1ms",
            "+5ms",
            "5 parsecs",
            "1e3ms",
            "inf s",
            "NaNms",
            "1..2s",
            "1.2.3s",
            ".ms",
            "",
            "   ",
        ] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
            assert!(err.contains("e.g. \"50ms\""), "{bad}: {err}");
        }
        assert_eq!(
            parse_duration("50").unwrap_err().to_string(),
            "\"50\" is not a duration (a number and a unit: ns, us, ms, s or min, e.g. \"50ms\")"
        );
        let err = parse_duration("600000 years").unwrap_err().to_string();
        assert!(err.contains("is not a duration"), "{err}");
        let err = parse_duration("600000000min").unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        let huge = "9".repeat(60) + "s";
        assert!(parse_duration(&huge)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
    }

    #[test]
    fn durations_with_a_default_unit() {
        let ms = |t| parse_duration_default_unit(t, TimeUnit::Millis);
        assert_eq!(ms("20"), Ok(Duration::from_millis(20)));
        assert_eq!(ms("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(ms("0.6s"), Ok(Duration::from_millis(600)));
        assert_eq!(ms("250us"), Ok(Duration::from_micros(250)));
        let err = ms("fast").unwrap_err().to_string();
        assert!(err.contains("a bare number is in ms"), "{err}");
        assert!(ms("-5ms").is_err());
    }

    #[test]
    fn duration_formatting() {
        assert_eq!(format_duration(Duration::from_millis(50)), "50ms");
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(1001)), "1.001s");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
        assert_eq!(format_duration(Duration::from_nanos(1500)), "1500ns");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20mbit"), Ok(BitsPerSecond(20_000_000)));
        assert_eq!(parse_rate("20Mbit"), Ok(BitsPerSecond(20_000_000)));
        assert_eq!(parse_rate("1Gbit"), Ok(BitsPerSecond(1_000_000_000)));
        assert_eq!(parse_rate("1.5gbit"), Ok(BitsPerSecond(1_500_000_000)));
        assert_eq!(parse_rate("500kbit"), Ok(BitsPerSecond(500_000)));
        assert_eq!(parse_rate("500kbit/s"), Ok(BitsPerSecond(500_000)));
        assert_eq!(parse_rate("9600bit"), Ok(BitsPerSecond(9600)));
        assert_eq!(parse_rate(" 20 mbit "), Ok(BitsPerSecond(20_000_000)));
        assert_eq!(parse_rate("1000gbit"), Ok(MAX_RATE));
        assert!(parse_rate("20mbps")
            .unwrap_err()
            .to_string()
            .contains("ambiguous"));
        assert!(parse_rate("20Mbps")
            .unwrap_err()
            .to_string()
            .contains("ambiguous"));
        let bare = parse_rate("20").unwrap_err().to_string();
        assert!(bare.contains("is not a rate"), "{bare}");
        assert!(bare.contains("e.g. \"20mbit\""), "{bare}");
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1mbit").is_err());
        assert!(parse_rate("0mbit")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(parse_rate("0.0001bit").is_err());
        assert!(parse_rate("99999gbit").is_err());
        assert!(parse_rate("1000.001gbit").is_err());
    }

    #[test]
    fn rate_formatting() {
        assert_eq!(BitsPerSecond(20_000_000).to_string(), "20mbit");
        assert_eq!(BitsPerSecond(1_500_000_000).to_string(), "1.5gbit");
        assert_eq!(BitsPerSecond(9600).to_string(), "9.6kbit");
        assert_eq!(BitsPerSecond(999).to_string(), "999bit");
        assert_eq!(BitsPerSecond(1_234_567).to_string(), "1234.567kbit");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1400"), Ok(1400));
        assert_eq!(parse_size("1400b"), Ok(1400));
        assert_eq!(parse_size("1400B"), Ok(1400));
        assert_eq!(parse_size("64k"), Ok(64_000));
        assert_eq!(parse_size("64kB"), Ok(64_000));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "k", "-1k", "64kbit", "1e3", "64 parsecs"] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("is not a size"), "{bad}: {err}");
            assert!(err.contains("e.g. \"64KiB\""), "{bad}: {err}");
        }
        assert!(parse_size("17179869184GiB")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert_eq!(format_size(65_536), "64KiB");
        assert_eq!(format_size(100_000), "100kB");
        assert_eq!(format_size(1400), "1400B");
        assert_eq!(format_size(0), "0B");
        assert_eq!(format_size(3 << 30), "3GiB");
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent("10"), Ok(0.1));
        assert_eq!(parse_percent("0.5%"), Ok(0.005));
        assert_eq!(parse_percent("100%"), Ok(1.0));
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert_eq!(parse_percent(" 10 % "), Ok(0.1));
        assert!(parse_percent("101%")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        for bad in ["x", "", "%", "-1%", "10%%", "1e1"] {
            let err = parse_percent(bad).unwrap_err().to_string();
            assert!(err.contains("is not a percentage"), "{bad}: {err}");
        }
    }
}
