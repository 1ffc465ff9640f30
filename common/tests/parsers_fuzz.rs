//! The parsers that read untrusted bytes, under generated input: the message envelope, the
//! Twilio webhook form (with its callback URL and signature check) and the SNS message (with
//! its string to sign and certificate URL rules). Inputs are the seed corpora in
//! `tests/corpus/<parser>/` as they are, mutated (bytes replaced, inserted, cut), and arbitrary
//! bytes. Each must answer without panicking, and nothing it answers may grow beyond a bound
//! set by its input (no unbounded allocation from a small request).
//!
//! A failing case is kept by proptest in `proptest-regressions/` and replayed first next time;
//! a case worth keeping for good belongs in the corpus. `PROPTEST_CASES` runs more cases.

use std::path::Path;

use common::envelope::Envelope;
use common::signature::sns::{CertUrlPolicy, SnsMessage, check_cert_url, string_to_sign};
use common::signature::twilio::verify;
use common::telemetry::untrusted;
use common::twilio::{WebhookForm, callback_target};
use proptest::prelude::*;

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

fn envelope(bytes: &[u8]) {
    match Envelope::parse(bytes) {
        Ok(envelope) => {
            // What parses is encoded again at a bounded size, and parses back the same.
            let encoded = envelope.to_json();
            assert!(encoded.len() <= 4 * bytes.len() + 1024);
            assert_eq!(Envelope::parse(&encoded).unwrap(), envelope);
        }
        Err(error) => assert!(
            error.to_string().len() <= 1024,
            "error of {} bytes",
            error.to_string().len()
        ),
    }
}

fn twilio_form(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    // The same bytes as the callback URL's query.
    if let Some((tenant, message)) = callback_target(Some(&text)) {
        assert!(tenant.as_str().len() + message.as_str().len() <= bytes.len());
    }
    let Some(form) = WebhookForm::parse(bytes) else {
        return;
    };
    assert_eq!(form.account.as_str().len(), 34);
    assert!(form.params.len() <= bytes.len() + 1);
    assert!(untrusted(&text).chars().count() <= 67);
    let signature = form.get("Signature").unwrap_or("bm90IGEgc2lnbmF0dXJl");
    assert!(!verify(
        "token",
        "https://example.com/webhooks/twilio/status",
        &form.params,
        signature
    ));
}

fn sns(bytes: &[u8]) {
    let Ok(message) = serde_json::from_slice::<SnsMessage>(bytes) else {
        return;
    };
    if let Ok(signed) = string_to_sign(&message) {
        assert!(signed.len() <= 2 * bytes.len() + 256);
    }
    let _ = check_cert_url(&message.signing_cert_url);
    if let Some(url) = &message.subscribe_url {
        let _ = CertUrlPolicy::Aws.check_subscribe_url(url);
    }
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
