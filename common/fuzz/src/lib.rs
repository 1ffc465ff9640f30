//! The checks each input of a parser of untrusted bytes must pass: no panic, and nothing the
//! parser answers may grow beyond a bound set by its input (no unbounded allocation from a
//! small request). Run by the AFL++ targets (`src/bin/`, coverage-guided: `.ci/fuzz.sh`) and by
//! the property tests of `common/tests/parsers_fuzz.rs` (every test run), from the same seed
//! corpora (`common/tests/corpus/<parser>/`).

use common::envelope::Envelope;
use common::ses::sns::{CertUrlPolicy, SnsMessage, check_cert_url, string_to_sign};
use common::telemetry::untrusted;
use common::twilio::signature::verify;
use common::twilio::{WebhookForm, callback_target};

/// The message envelope: what parses encodes again at a bounded size and parses back the same;
/// an error's text is bounded.
pub(crate) fn envelope(bytes: &[u8]) {
    match Envelope::parse(bytes) {
        Ok(envelope) => {
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

/// The Twilio webhook form (and the same bytes as the callback URL's query): bounded parts,
/// a truncated log value, and no signature that verifies by accident.
pub(crate) fn twilio_form(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
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

/// The SNS message: its string to sign is bounded, and the certificate and subscription URL
/// rules answer without panicking.
pub(crate) fn sns(bytes: &[u8]) {
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
