//! The parsers that read untrusted bytes, under generated input: the message envelope, the
//! Twilio webhook form (with its callback URL and signature check) and the SNS message (with
//! its string to sign and certificate URL rules). Inputs are the seed corpora in
//! `tests/corpus/<parser>/` as they are, mutated (bytes replaced, inserted, cut), and arbitrary
//! bytes. Each must answer without panicking, and nothing it answers may grow beyond a bound
//! set by its input (no unbounded allocation from a small request).
//!
//! A failing case is kept by proptest in `proptest-regressions/` and replayed first next time;
//! a case worth keeping for good belongs in the corpus. `PROPTEST_CASES` runs more cases. The
//! same checks run coverage-guided under AFL++ (`common/fuzz/`, `.ci/fuzz.sh`), from the same
//! corpora.

use std::path::Path;

use proptest::prelude::*;

/// The checks, shared with the AFL++ targets of `common/fuzz/`.
#[path = "../fuzz/src/lib.rs"]
mod checks;

use checks::{envelope, sns, twilio_form};

/// The seed inputs of one parser.
fn corpus(parser: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(parser);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} has no seeds", dir.display());
    seeds
}

/// Seeds as they are, seeds with a few bytes replaced, inserted or cut, and arbitrary bytes.
fn inputs(parser: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(parser);
    let count = seeds.len();
    let edits = prop::collection::vec((any::<usize>(), any::<u8>(), 0..3_u8), 0..8);
    let mutated = (0..count, edits, any::<usize>()).prop_map(move |(index, edits, cut)| {
        let mut bytes = seeds[index].clone();
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        if cut % 4 == 0 {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        bytes
    });
    prop_oneof![4 => mutated, 1 => prop::collection::vec(any::<u8>(), 0..2048)]
}

/// Every seed, exactly as it is in the corpus.
#[test]
fn the_seed_corpora_parse_without_panicking() {
    corpus("envelope").iter().for_each(|seed| envelope(seed));
    corpus("twilio_form").iter().for_each(|seed| twilio_form(seed));
    corpus("sns").iter().for_each(|seed| sns(seed));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn envelopes_never_panic(bytes in inputs("envelope")) {
        envelope(&bytes);
    }

    #[test]
    fn twilio_webhook_forms_never_panic(bytes in inputs("twilio_form")) {
        twilio_form(&bytes);
    }

    #[test]
    fn sns_messages_never_panic(bytes in inputs("sns")) {
        sns(&bytes);
    }
}
