//! Property tests: config and unit parsing never panic, whatever the text.

use std::path::Path;

use proptest::prelude::*;
use tgp_tunnel::config::Config;
use tgp_tunnel::keys::{decode_private_key, decode_public_key};
use tgp_units::{parse_duration, parse_rate};

const EXAMPLE: &str = include_str!("../examples/server.toml");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        let _ = Config::from_toml_str(&text, Path::new("/"));
        let _ = parse_duration(&text);
        let _ = parse_rate(&text);
        let _ = decode_public_key(&text);
        let _ = decode_private_key(&text);
    }

    #[test]
    fn quantity_like_text_never_panics(text in "[0-9.]{0,30}[a-zµ/ ]{0,6}") {
        let _ = parse_duration(&text);
        let _ = parse_rate(&text);
    }

    #[test]
    fn mutated_example_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), "\\PC{0,3}"), 1..6),
    ) {
        let mut text = EXAMPLE.to_owned();
        for (at, insert) in edits {
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let end = (cut + insert.len()).min(text.len());
            let mut end = end;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(cut..end, &insert);
        }
        if let Err(errors) = Config::from_toml_str(&text, Path::new("/")) {
            prop_assert!(!errors.0.is_empty());
            prop_assert!(!errors.to_string().is_empty());
        }
    }
}
