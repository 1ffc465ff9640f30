//! The shapes of the strings the API accepts, each written once as a regular expression that
//! means the same to ECMA-262 (the OpenAPI document's `pattern`), Python and Rust: explicit
//! ASCII classes only, no `\d`, `\s`, `\w` or lookaround. The admin API checks the fields it
//! parses by hand with [`TextRule::check`] and publishes the same rule in its document, so the
//! two cannot differ. The parsers of the hot path (phone numbers, email addresses, ids) keep
//! their hand-written code; the tests below hold them to the rule they publish.

use std::sync::OnceLock;

use regex::Regex;

/// A string field's rule: a pattern, and a length in characters (Unicode scalar values, as
/// JSON Schema's `minLength` and `maxLength` count them).
pub struct TextRule {
    /// The anchored pattern.
    pub pattern: &'static str,
    /// The fewest characters.
    pub min_chars: usize,
    /// The most characters.
    pub max_chars: usize,
    /// What a valid value looks like, for error messages and the document.
    pub hint: &'static str,
    /// A second pattern the value must also match (JSON Schema: `allOf` of the two), for what
    /// one portable pattern cannot say.
    pub also: Option<&'static str>,
    regex: OnceLock<Regex>,
    also_regex: OnceLock<Regex>,
}

impl TextRule {
    const fn new(pattern: &'static str, min_chars: usize, max_chars: usize, hint: &'static str) -> Self {
        Self {
            pattern,
            min_chars,
            max_chars,
            hint,
            also: None,
            regex: OnceLock::new(),
            also_regex: OnceLock::new(),
        }
    }

    const fn and_also(mut self, pattern: &'static str) -> Self {
        self.also = Some(pattern);
        self
    }

    /// Whether `raw` follows the rule.
    pub fn matches(&self, raw: &str) -> bool {
        self.matches_within(raw, self.min_chars, self.max_chars)
    }

    /// Whether `raw` follows the rule with other length bounds (in characters).
    pub fn matches_within(&self, raw: &str, min_chars: usize, max_chars: usize) -> bool {
        let compiled = |cell: &OnceLock<Regex>, pattern| {
            cell.get_or_init(|| Regex::new(pattern).expect("a rule's pattern compiles"))
                .is_match(raw)
        };
        (min_chars..=max_chars).contains(&raw.chars().count())
            && compiled(&self.regex, self.pattern)
            && self.also.is_none_or(|also| compiled(&self.also_regex, also))
    }

    /// `Err` with the rule's hint unless `raw` follows it.
    pub fn check(&self, raw: &str) -> Result<(), &'static str> {
        if self.matches(raw) { Ok(()) } else { Err(self.hint) }
    }
}

/// An E.164 phone number.
pub static E164: TextRule = TextRule::new(
    r"^\+[1-9][0-9]{1,14}$",
    3,
    16,
    "must be an E.164 phone number such as +14155550100 (a '+', then 2 to 15 digits, the first not 0)",
);

/// A WhatsApp address: E.164, with or without Twilio's `whatsapp:` prefix.
pub static WHATSAPP_ADDRESS: TextRule = TextRule::new(
    r"^(whatsapp:)?\+[1-9][0-9]{1,14}$",
    3,
    25,
    "must be an E.164 phone number such as +14155550100, optionally as whatsapp:+14155550100",
);

/// An SMS sender: an E.164 number, or a Twilio Messaging Service SID.
pub static SMS_SENDER: TextRule = TextRule::new(
    r"^(\+[1-9][0-9]{1,14}|MG[0-9a-fA-F]{32})$",
    3,
    34,
    "must be an E.164 phone number or a Messaging Service SID (MG followed by 32 hexadecimal digits)",
);

/// [`EMAIL`]'s pattern without its anchors, shared with [`RECIPIENT`].
macro_rules! email_pattern {
    () => {
        r"[!#-'*+/-9=?A-Z^-~-]+(\.[!#-'*+/-9=?A-Z^-~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
    };
}

/// An email address of the common `local@domain.tld` form: the local part's characters (ASCII,
/// none of `@"(),:;<>[\]`, dots only between them), at most 64 of them, then a dotted host name.
pub static EMAIL: TextRule = TextRule::new(
    concat!("^", email_pattern!(), "$"),
    5,
    254,
    "must be an email address such as ana@example.com (at most 64 characters before the '@')",
)
.and_also(r"^[^@]{1,64}@");

/// A recipient: an E.164 phone number (SMS and WhatsApp) or an email address.
pub static RECIPIENT: TextRule = TextRule::new(
    concat!(r"^(\+[1-9][0-9]{1,14}|", email_pattern!(), ")$"),
    3,
    254,
    "must be an E.164 phone number such as +14155550100 or an email address such as ana@example.com",
)
.and_also(r"^(\+|[^@]{1,64}@)");

/// A message, campaign or contact id.
pub static MESSAGE_ID: TextRule =
    TextRule::new(r"^[A-Za-z0-9_.:-]+$", 1, 128, "must be 1 to 128 of A-Z a-z 0-9 _ - . :");

/// A tenant id.
pub static TENANT_ID: TextRule = TextRule::new(r"^[A-Za-z0-9_-]+$", 1, 64, "must be 1 to 64 of A-Z a-z 0-9 _ -");

/// A template's id: an SES template name or a Twilio Content SID.
pub static TEMPLATE_ID: TextRule = TextRule::new(r"^[A-Za-z0-9_-]+$", 1, 256, "must be 1 to 256 of A-Z a-z 0-9 _ -");

/// An email subject: one line.
pub static SUBJECT: TextRule = TextRule::new(
    r"^[^\x00-\x1f\x7f]+$",
    1,
    998,
    "must be 1 to 998 characters on one line (no control characters)",
);

/// A time of day, `HH:MM` (00:00 to 24:00).
pub static CLOCK_TIME: TextRule = TextRule::new(
    r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
    5,
    5,
    "must be a time of day such as 08:00 (00:00 to 24:00)",
);

/// An RFC 3339 timestamp (`2026-11-24T12:00:00Z`, `2026-11-24T07:00:00.5-05:00`).
pub static TIMESTAMP: TextRule = TextRule::new(
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
    20,
    35,
    "must be an RFC 3339 timestamp such as 2026-11-24T12:00:00Z",
);

/// A name or a line of an address: starts with a visible character, no control characters.
pub static LINE: TextRule = TextRule::new(
    r"^[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$",
    1,
    255,
    "must be 1 to 255 characters on one line, starting with a visible one",
);

/// A description: starts with a visible character; tabs and line breaks allowed, no other
/// control characters.
pub static PROSE: TextRule = TextRule::new(
    r"^[^\x00-\x20\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
    1,
    4_096,
    "must be text starting with a visible character, without control characters other than tabs and line breaks",
);

/// A secret (auth token, secret access key): printable ASCII without spaces.
pub static SECRET: TextRule = TextRule::new(r"^[!-~]+$", 1, 256, "must be 1 to 256 printable ASCII characters");

/// A US Employer Identification Number.
pub static EIN: TextRule = TextRule::new(r"^[0-9]{2}-[0-9]{7}$", 10, 10, "must be an EIN such as 12-3456789");

/// A US ZIP code: 5 digits or ZIP+4.
pub static ZIP: TextRule = TextRule::new(
    r"^[0-9]{5}(-[0-9]{4})?$",
    5,
    10,
    "must be a ZIP code: 5 digits, or ZIP+4 such as 94105-1234",
);

/// A website: http or https, a dotted host name, then an optional path of printable ASCII.
pub static WEBSITE: TextRule = TextRule::new(
    r"^https?://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+([/?#][!-~]*)?$",
    10,
    2_048,
    "must be an http or https URL such as https://example.com",
);

/// A WhatsApp Business Account id (Meta's, digits).
pub static WABA_ID: TextRule = TextRule::new(
    r"^[0-9]+$",
    5,
    32,
    "must be 5 to 32 digits (Meta's WhatsApp Business Account id)",
);

/// A WhatsApp template's name: lowercase letters, digits and underscores (Meta's rule).
pub static WHATSAPP_TEMPLATE_NAME: TextRule = TextRule::new(
    r"^[a-z0-9_]+$",
    1,
    512,
    "must be 1 to 512 lowercase letters, digits and underscores",
);

/// A template's language: ISO 639-1, optionally with a region (`en`, `en_US`, `pt_BR`).
pub static LANGUAGE: TextRule = TextRule::new(
    r"^[a-z]{2,3}(_[A-Z]{2})?$",
    2,
    6,
    "must be a language code such as en or en_US",
);

/// A template variable's name: `1`, `2`, ... or a word.
pub static VARIABLE_NAME: TextRule = TextRule::new(r"^[A-Za-z0-9_]+$", 1, 64, "must be 1 to 64 of A-Z a-z 0-9 _");

/// A verification code Meta sends a WhatsApp number: digits.
pub static VERIFICATION_CODE: TextRule = TextRule::new(r"^[0-9]+$", 4, 8, "must be 4 to 8 digits");

/// A Twilio Content SID (a WhatsApp template).
pub static CONTENT_SID: TextRule = TextRule::new(
    r"^HX[0-9a-fA-F]{32}$",
    34,
    34,
    "must be HX followed by 32 hexadecimal digits",
);

/// A Twilio account SID.
pub static ACCOUNT_SID: TextRule = TextRule::new(
    r"^AC[0-9a-fA-F]{32}$",
    34,
    34,
    "must be AC followed by 32 hexadecimal digits",
);

/// An AWS access key id.
pub static ACCESS_KEY_ID: TextRule = TextRule::new(r"^[A-Za-z0-9]+$", 16, 128, "must be 16 to 128 letters and digits");

/// An AWS region, such as `us-east-1`.
pub static AWS_REGION: TextRule = TextRule::new(
    r"^[a-z0-9]+(-[a-z0-9]+){2,}$",
    5,
    32,
    "must be an AWS region such as us-east-1",
);

/// An SES configuration set's name.
pub static CONFIGURATION_SET: TextRule = TextRule::new(
    r"^[A-Za-z0-9_-]+$",
    1,
    64,
    "must be 1 to 64 letters, digits, '-' and '_'",
);

/// An SNS topic's ARN: `arn:aws:sns:<region>:<12-digit account>:<name>`.
pub static SNS_TOPIC_ARN: TextRule = TextRule::new(
    r"^arn:(aws|aws-cn|aws-us-gov):sns:[a-z0-9]+(-[a-z0-9]+){2,}:[0-9]{12}:[A-Za-z0-9_-]{1,256}$",
    26,
    256,
    "must be an SNS topic ARN: arn:aws:sns:<region>:<account>:<name>",
);

/// A plan id.
pub static PLAN_ID: TextRule = TextRule::new(
    r"^[A-Za-z0-9_-]+$",
    1,
    64,
    "must be 1 to 64 letters, digits, '-' and '_'",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{EmailAddress, PhoneNumber};
    use crate::channel::{Channel, Sender};
    use crate::ids::{MessageId, TenantId};
    use proptest::prelude::*;

    /// Strings near the edge of each rule: pieces of valid values, glued at random.
    fn near(pieces: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(pieces), 0..12).prop_map(|parts| parts.concat())
    }

    const PHONE_PIECES: &[&str] = &[
        "+",
        "1",
        "0",
        "9",
        "415555",
        "whatsapp:",
        " ",
        "\n",
        "a",
        "MG",
        "0123456789abcdef",
    ];
    const EMAIL_PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        ".",
        "@",
        "-",
        "example",
        "com",
        "'",
        "\"",
        " ",
        "\n",
        "_",
        "é",
        "..",
        "xn--",
        "~",
        "abcdefghijklmnopqrstuvwxyzabcdefghij",
    ];
    const ID_PIECES: &[&str] = &["a", "Z", "0", "_", "-", ".", ":", "/", " ", "é", "\n"];

    proptest! {
        #[test]
        fn phone_numbers_follow_their_rules(raw in near(PHONE_PIECES)) {
            prop_assert_eq!(PhoneNumber::parse(raw.clone()).is_ok(), E164.matches(&raw), "{:?}", raw);
            prop_assert_eq!(PhoneNumber::parse_whatsapp(&raw).is_ok(), WHATSAPP_ADDRESS.matches(&raw), "{:?}", raw);
            prop_assert_eq!(Sender::parse(Channel::Sms, &raw).is_ok(), SMS_SENDER.matches(&raw), "{:?}", raw);
        }

        #[test]
        fn email_addresses_follow_their_rule(raw in near(EMAIL_PIECES)) {
            prop_assert_eq!(EmailAddress::parse(raw.clone()).is_ok(), EMAIL.matches(&raw), "{:?}", raw);
        }

        #[test]
        fn ids_follow_their_rules(raw in near(ID_PIECES)) {
            prop_assert_eq!(MessageId::parse(raw.clone()).is_ok(), MESSAGE_ID.matches(&raw), "{:?}", raw);
            prop_assert_eq!(TenantId::parse(raw.clone()).is_ok(), TENANT_ID.matches(&raw), "{:?}", raw);
        }

        #[test]
        fn timestamps_that_follow_the_rule_parse(
            date in "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])",
            time in "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?",
            zone in "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])",
        ) {
            let raw = format!("{date}{time}{zone}");
            prop_assert!(TIMESTAMP.matches(&raw), "{:?}", raw);
            let parsed = time::OffsetDateTime::parse(&raw, &time::format_description::well_known::Rfc3339);
            prop_assert!(parsed.is_ok(), "{:?}: {:?}", raw, parsed);
        }
    }

    #[test]
    fn every_pattern_compiles_and_is_anchored() {
        for rule in [
            &E164,
            &WHATSAPP_ADDRESS,
            &SMS_SENDER,
            &EMAIL,
            &RECIPIENT,
            &MESSAGE_ID,
            &TENANT_ID,
            &TEMPLATE_ID,
            &SUBJECT,
            &TIMESTAMP,
            &LINE,
            &PROSE,
            &SECRET,
            &EIN,
            &ZIP,
            &WEBSITE,
            &ACCOUNT_SID,
            &ACCESS_KEY_ID,
            &AWS_REGION,
            &CONFIGURATION_SET,
            &SNS_TOPIC_ARN,
            &PLAN_ID,
        ] {
            assert!(
                rule.pattern.starts_with('^') && rule.pattern.ends_with('$'),
                "{}",
                rule.pattern
            );
            assert!(Regex::new(rule.pattern).is_ok(), "{}", rule.pattern);
            assert!(
                rule.also
                    .is_none_or(|also| also.starts_with('^') && Regex::new(also).is_ok())
            );
        }
        assert!(EMAIL.matches("ana.maria+news@Example.co.uk"));
        assert!(!EMAIL.matches("ana..maria@example.com"));
        assert!(!EMAIL.matches(&format!("{}@example.com", "a".repeat(65))));
        assert!(RECIPIENT.matches("+14155550100") && RECIPIENT.matches("ana@example.com"));
        assert!(!RECIPIENT.matches("14155550100") && !RECIPIENT.matches(&format!("{}@example.com", "a".repeat(65))));
        assert!(LINE.matches("Acme Inc "));
        assert!(!LINE.matches(" Acme Inc"));
        assert!(!LINE.matches("   "));
        assert!(!LINE.matches("Acme\nInc"));
        assert!(PROSE.matches("We send\norder updates.\t"));
        assert!(!PROSE.matches("\n\t "));
        assert!(WEBSITE.matches("https://example.com/about?x=1"));
        assert!(!WEBSITE.matches("https://localhost"));
        assert!(SNS_TOPIC_ARN.matches("arn:aws:sns:us-east-1:123456789012:acme-events"));
    }
}
