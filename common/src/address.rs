//! Addresses: E.164 phone numbers (also in the `whatsapp:` form) and email addresses.

use std::fmt;

/// Why a string is not a valid address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not an E.164 number.
    #[error("must be an E.164 phone number such as +14155550100 (a '+', then 2 to 15 digits, the first not 0)")]
    NotE164,
    /// Not a usable email address.
    #[error("must be an email address such as ana@example.com ({0})")]
    Email(&'static str),
}

/// A phone number in E.164 form, e.g. `+14155550100`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

/// The prefix Twilio uses for WhatsApp addresses.
pub const WHATSAPP_PREFIX: &str = "whatsapp:";

impl PhoneNumber {
    /// Parses a strict E.164 number: `+`, then 2 to 15 digits, the first not 0.
    pub fn parse(raw: impl Into<String>) -> Result<Self, AddressError> {
        let raw = raw.into();
        let digits = raw.strip_prefix('+').ok_or(AddressError::NotE164)?;
        let valid =
            (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if !valid {
            return Err(AddressError::NotE164);
        }
        Ok(Self(raw))
    }

    /// Parses either `+E164` or the WhatsApp form `whatsapp:+E164`.
    pub fn parse_whatsapp(raw: &str) -> Result<Self, AddressError> {
        Self::parse(raw.strip_prefix(WHATSAPP_PREFIX).unwrap_or(raw))
    }

    /// The number as `+E164`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number in Twilio's WhatsApp address form, `whatsapp:+E164`.
    pub fn whatsapp_address(&self) -> String {
        format!("{WHATSAPP_PREFIX}{}", self.0)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = AddressError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<PhoneNumber> for String {
    fn from(number: PhoneNumber) -> String {
        number.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address: one `@`, a local part of at most 64 bytes, a dotted domain; the domain is
/// kept in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address of the common `local@domain.tld` form (no display names, no comments).
    pub fn parse(raw: impl Into<String>) -> Result<Self, AddressError> {
        let raw = raw.into();
        if raw.len() > 254 {
            return Err(AddressError::Email("at most 254 characters"));
        }
        let (local, domain) = raw.rsplit_once('@').ok_or(AddressError::Email("an '@' is missing"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(AddressError::Email("the part before '@' must be 1 to 64 characters"));
        }
        let local_ok = local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"@\"(),:;<>[\\]".contains(&b))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(AddressError::Email(
                "the part before '@' has a character that is not allowed",
            ));
        }
        let labels_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !labels_ok {
            return Err(AddressError::Email(
                "the domain must be a dotted host name such as example.com",
            ));
        }
        let canonical = format!("{local}@{}", domain.to_ascii_lowercase());
        Ok(Self(canonical))
    }

    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = AddressError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<EmailAddress> for String {
    fn from(address: EmailAddress) -> String {
        address.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phone_numbers() {
        assert_eq!(PhoneNumber::parse("+14155550100").unwrap().as_str(), "+14155550100");
        assert!(PhoneNumber::parse("+447911123456").is_ok());
        for bad in [
            "",
            "+",
            "14155550100",
            "+1",
            "+04155550100",
            "+1415555010012345",
            "+1 415 555 0100",
            "+1-415",
            "++14155550100",
            "+1415555010a",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(AddressError::NotE164), "{bad:?}");
        }
    }

    #[test]
    fn whatsapp_form() {
        let number = PhoneNumber::parse_whatsapp("whatsapp:+14155550100").unwrap();
        assert_eq!(number.as_str(), "+14155550100");
        assert_eq!(number.whatsapp_address(), "whatsapp:+14155550100");
        assert_eq!(PhoneNumber::parse_whatsapp("+14155550100").unwrap(), number);
        assert!(PhoneNumber::parse_whatsapp("whatsapp:14155550100").is_err());
        assert!(PhoneNumber::parse("whatsapp:+14155550100").is_err());
    }

    #[test]
    fn email_addresses() {
        assert_eq!(
            EmailAddress::parse("Ana.Lima+news@Example.COM").unwrap().as_str(),
            "Ana.Lima+news@example.com"
        );
        assert!(EmailAddress::parse("a@b.co").is_ok());
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "ana@@example.com",
            "ana lima@example.com",
            "ana@exa mple.com",
            ".ana@example.com",
            "ana..b@example.com",
            "ana@-example.com",
            "ana@example..com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert!(EmailAddress::parse(format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(EmailAddress::parse(format!("a@{}.com", "b".repeat(250))).is_err());
    }

    proptest! {
        #[test]
        fn phone_parse_never_panics(s in ".*") {
            let _ = PhoneNumber::parse(s.clone());
            let _ = PhoneNumber::parse_whatsapp(&s);
        }

        #[test]
        fn phone_round_trips(s in "\\+[1-9][0-9]{1,14}") {
            let number = PhoneNumber::parse(s.clone()).unwrap();
            prop_assert_eq!(number.as_str(), s.as_str());
            prop_assert_eq!(PhoneNumber::parse_whatsapp(&number.whatsapp_address()).unwrap(), number);
        }

        #[test]
        fn email_parse_never_panics(s in ".*") {
            let _ = EmailAddress::parse(s);
        }

        #[test]
        fn email_round_trips(local in "[a-z0-9+_-]{1,20}", domain in "[a-z0-9]{1,20}\\.[a-z]{2,6}") {
            let raw = format!("{local}@{domain}");
            let address = EmailAddress::parse(raw.clone()).unwrap();
            prop_assert_eq!(address.as_str(), raw.as_str());
            prop_assert_eq!(EmailAddress::parse(address.to_string()).unwrap(), address);
        }
    }
}
