//! Identifier newtypes: tenants, messages, campaigns and contacts; and the shape of Twilio's SIDs.
//!
//! Each is parsed once at the edge; everything past it holds only valid ids.

use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("must not be empty")]
    Empty,
    /// The string is longer than the kind allows.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The maximum length in bytes.
        max: usize,
    },
    /// The string holds a character outside the allowed set.
    #[error("may only contain {allowed}")]
    BadCharacter {
        /// A human description of the allowed set.
        allowed: &'static str,
    },
}

/// Whether `raw` is a Twilio SID (the one provider id the domain parses: a Messaging Service
/// as an SMS sender) with one of these two-letter prefixes: the prefix and 32
/// hexadecimal digits (`AC` an account, `SM`/`MM` a message, `MG` a Messaging Service).
pub fn is_twilio_sid(raw: &str, prefixes: &[&str]) -> bool {
    raw.len() == 34
        && prefixes.iter().any(|prefix| raw.starts_with(prefix))
        && raw.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)
}

fn check_id(raw: &str, max: usize, extra: &'static [u8], allowed: &'static str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > max {
        return Err(IdError::TooLong { max });
    }
    let valid = raw.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if !valid {
        return Err(IdError::BadCharacter { allowed });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, extra = $extra:expr, allowed = $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest value accepted, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Parses an identifier, rejecting empty, overlong or oddly spelled values.
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check_id(&raw, $max, $extra, $allowed)?;
                Ok(Self(raw))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A tenant: one customer business and everything it owns.
    TenantId,
    max = 64,
    extra = b"_-",
    allowed = "ASCII letters, digits, '_' and '-'"
);

string_id!(
    /// A message's id, chosen by the producer: the idempotency key of a send.
    MessageId,
    max = 128,
    extra = b"_-.:",
    allowed = "ASCII letters, digits, '_', '-', '.' and ':'"
);

string_id!(
    /// A campaign, as named by the campaign service.
    CampaignId,
    max = 128,
    extra = b"_-.:",
    allowed = "ASCII letters, digits, '_', '-', '.' and ':'"
);

string_id!(
    /// A contact (recipient record) in the campaign service.
    ContactId,
    max = 128,
    extra = b"_-.:",
    allowed = "ASCII letters, digits, '_', '-', '.' and ':'"
);

impl MessageId {
    /// A fresh, time-ordered id for messages created without one.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_ids() {
        assert_eq!(TenantId::parse("acme-corp_1").unwrap().as_str(), "acme-corp_1");
        assert!(MessageId::parse("msg:2026.11-24_x").is_ok());
        assert!(CampaignId::parse("spring-sale").is_ok());
        assert!(ContactId::parse("c.42").is_ok());
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(TenantId::parse(""), Err(IdError::Empty));
        assert_eq!(TenantId::parse("a".repeat(65)), Err(IdError::TooLong { max: 64 }));
        assert!(matches!(
            TenantId::parse("acme corp"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            TenantId::parse("acme.corp"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(MessageId::parse("m/1"), Err(IdError::BadCharacter { .. })));
        assert!(matches!(MessageId::parse("é"), Err(IdError::BadCharacter { .. })));
        assert!(MessageId::parse("m".repeat(128)).is_ok());
        assert!(MessageId::parse("m".repeat(129)).is_err());
    }

    #[test]
    fn generated_message_ids_parse() {
        let id = MessageId::generate();
        assert_eq!(MessageId::parse(id.as_str()), Ok(id));
    }

    #[test]
    fn serde_goes_through_parse() {
        let ok: TenantId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(ok.as_str(), "acme");
        assert!(serde_json::from_str::<TenantId>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"acme\"");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = TenantId::parse(s.clone());
            let _ = MessageId::parse(s.clone());
            let _ = CampaignId::parse(s.clone());
            let _ = ContactId::parse(s);
        }

        #[test]
        fn valid_ids_round_trip(s in "[A-Za-z0-9_-]{1,64}") {
            let id = TenantId::parse(s.clone()).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(TenantId::parse(id.to_string()).unwrap(), id);
        }

        #[test]
        fn message_ids_round_trip(s in "[A-Za-z0-9_.:-]{1,128}") {
            let id = MessageId::parse(s.clone()).unwrap();
            prop_assert_eq!(String::from(id), s);
        }
    }
}
