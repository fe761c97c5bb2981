//! Property tests: no text makes a parser panic, every error says what is
//! expected, formatting and parsing round-trip, and parsing agrees with
//! integer arithmetic on generated numbers.

use proptest::prelude::*;
use std::time::Duration;
use tgp_units::{
    format_duration, format_size, parse_duration, parse_duration_default_unit, parse_percent,
    parse_rate, parse_size, BitsPerSecond, ParseError, TimeUnit, MAX_RATE,
};

/// Every error message quotes the text and either names the accepted forms
/// (with an example) or the range.
fn explains(err: &ParseError, text: &str) -> bool {
    let message = err.to_string();
    message.starts_with(&format!("{text:?}"))
        && (message.contains("e.g.") || message.contains("out of range"))
}

fn check_all(text: &str) -> Result<(), TestCaseError> {
    let results = [
        parse_rate(text).err(),
        parse_duration(text).err(),
        parse_duration_default_unit(text, TimeUnit::Millis).err(),
        parse_size(text).err(),
        parse_percent(text).err(),
    ];
    for err in results.iter().flatten() {
        prop_assert!(explains(err, text), "{text:?}: {err}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_never_panics(text in "\\PC{0,60}") {
        check_all(&text)?;
    }

    #[test]
    fn quantity_like_text_never_panics(text in "[ 0-9.]{0,30}[a-zA-Zµμ/% ]{0,6}") {
        check_all(&text)?;
    }

    #[test]
    fn long_numbers_never_panic(int in "[0-9]{0,80}", frac in "[0-9]{0,80}", unit in "(|ns|s|min|bit|gbit|b|GiB|%)") {
        check_all(&format!("{int}.{frac}{unit}"))?;
        check_all(&format!("{int}{unit}"))?;
    }

    #[test]
    fn durations_round_trip(nanos in any::<u64>()) {
        let d = Duration::from_nanos(nanos);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn rates_round_trip(bits in 1..=MAX_RATE.0) {
        let rate = BitsPerSecond(bits);
        prop_assert_eq!(parse_rate(&rate.to_string()), Ok(rate));
    }

    #[test]
    fn sizes_round_trip(bytes in any::<u64>()) {
        prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
    }

    #[test]
    fn decimal_milliseconds_are_exact(whole in 0u64..1_000_000, micros in 0u64..1000) {
        let expected = Duration::from_micros(whole * 1000 + micros);
        prop_assert_eq!(parse_duration(&format!("{whole}.{micros:03}ms")), Ok(expected));
        prop_assert_eq!(
            parse_duration_default_unit(&format!("{whole}.{micros:03}"), TimeUnit::Millis),
            Ok(expected)
        );
    }

    #[test]
    fn decimal_rates_are_exact(whole in 0u64..1000, thousandths in 0u64..1000) {
        let bits = whole * 1_000_000 + thousandths * 1000;
        let parsed = parse_rate(&format!("{whole}.{thousandths:03}mbit"));
        if bits == 0 {
            prop_assert!(parsed.is_err());
        } else {
            prop_assert_eq!(parsed, Ok(BitsPerSecond(bits)));
        }
    }

    #[test]
    fn percentages_stay_fractions(text in "[0-9]{1,3}(\\.[0-9]{0,4})?%?") {
        match parse_percent(&text) {
            Ok(p) => prop_assert!((0.0..=1.0).contains(&p), "{text}: {p}"),
            Err(e) => prop_assert!(e.to_string().contains("out of range"), "{text}: {e}"),
        }
    }
}
