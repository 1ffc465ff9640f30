//! Channels, priorities, recipients and sender identities.

use std::fmt;
use std::str::FromStr;

use crate::address::{AddressError, EmailAddress, PhoneNumber};

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// SMS through Twilio.
    Sms,
    /// WhatsApp through Twilio.
    Whatsapp,
    /// Email through AWS SES.
    Email,
}

/// A string that names no channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of sms, whatsapp, email")]
pub struct UnknownChannel;

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Whatsapp, Channel::Email];

    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
        }
    }

    /// Whether the channel reports reads (WhatsApp read receipts, email opens).
    pub fn has_read_receipts(self) -> bool {
        matches!(self, Channel::Whatsapp | Channel::Email)
    }
}

impl FromStr for Channel {
    type Err = UnknownChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(Channel::Sms),
            "whatsapp" => Ok(Channel::Whatsapp),
            "email" => Ok(Channel::Email),
            _ => Err(UnknownChannel),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's lane: transactional traffic (one-time passwords, receipts) goes before marketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Time-critical messages the recipient asked for; served first.
    Transactional,
    /// Campaign traffic; served after transactional messages of the same tenant.
    #[default]
    Marketing,
}

impl Priority {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Transactional => "transactional",
            Priority::Marketing => "marketing",
        }
    }
}

/// Who receives a message, in the form its channel needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum Recipient {
    /// A phone number (SMS or WhatsApp).
    Phone(PhoneNumber),
    /// An email address.
    Email(EmailAddress),
}

impl Recipient {
    /// Parses a recipient for `channel`: E.164 for SMS, E.164 or `whatsapp:+E164` for WhatsApp,
    /// an email address for email.
    pub fn parse(channel: Channel, raw: &str) -> Result<Self, AddressError> {
        match channel {
            Channel::Sms => PhoneNumber::parse(raw).map(Recipient::Phone),
            Channel::Whatsapp => PhoneNumber::parse_whatsapp(raw).map(Recipient::Phone),
            Channel::Email => EmailAddress::parse(raw).map(Recipient::Email),
        }
    }

    /// The canonical address, the key of the suppression list.
    pub fn as_str(&self) -> &str {
        match self {
            Recipient::Phone(number) => number.as_str(),
            Recipient::Email(address) => address.as_str(),
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid sender for its channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    /// The address part is invalid.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// Not a Twilio Messaging Service SID.
    #[error("must be an E.164 number or a Messaging Service SID (MG followed by 32 hex digits)")]
    NotMessagingService,
}

/// A sender identity: the number, Messaging Service or address a message goes out from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(untagged)]
pub enum Sender {
    /// An SMS or WhatsApp sender number.
    Phone(PhoneNumber),
    /// A Twilio Messaging Service (`MG` + 32 hex digits) that picks the number itself.
    MessagingService(String),
    /// An email sender address.
    Email(EmailAddress),
}

impl Sender {
    /// Parses a sender for `channel`: for SMS an E.164 number or a Messaging Service SID, for
    /// WhatsApp a number (either form), for email an address.
    pub fn parse(channel: Channel, raw: &str) -> Result<Self, SenderError> {
        match channel {
            Channel::Sms if raw.starts_with("MG") => {
                if crate::ids::is_twilio_sid(raw, &["MG"]) {
                    Ok(Sender::MessagingService(raw.to_owned()))
                } else {
                    Err(SenderError::NotMessagingService)
                }
            }
            Channel::Sms => Ok(Sender::Phone(PhoneNumber::parse(raw)?)),
            Channel::Whatsapp => Ok(Sender::Phone(PhoneNumber::parse_whatsapp(raw)?)),
            Channel::Email => Ok(Sender::Email(EmailAddress::parse(raw)?)),
        }
    }

    /// The sender as a string.
    pub fn as_str(&self) -> &str {
        match self {
            Sender::Phone(number) => number.as_str(),
            Sender::MessagingService(sid) => sid,
            Sender::Email(address) => address.as_str(),
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a sender number, which sets its default rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderKind {
    /// A US 10DLC long code.
    LongCode,
    /// A toll-free number.
    TollFree,
    /// A short code.
    ShortCode,
    /// A WhatsApp sender.
    Whatsapp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn channel_names_round_trip() {
        for channel in Channel::ALL {
            assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
            assert_eq!(serde_json::to_string(&channel).unwrap(), format!("\"{channel}\""));
        }
        assert_eq!("SMS".parse::<Channel>(), Err(UnknownChannel));
        assert_eq!("fax".parse::<Channel>(), Err(UnknownChannel));
    }

    #[test]
    fn transactional_sorts_first() {
        assert!(Priority::Transactional < Priority::Marketing);
        assert_eq!(
            serde_json::from_str::<Priority>("\"transactional\"").unwrap(),
            Priority::Transactional
        );
        assert!(serde_json::from_str::<Priority>("\"urgent\"").is_err());
    }

    #[test]
    fn recipients_follow_the_channel() {
        assert!(matches!(
            Recipient::parse(Channel::Sms, "+14155550100"),
            Ok(Recipient::Phone(_))
        ));
        assert!(Recipient::parse(Channel::Sms, "whatsapp:+14155550100").is_err());
        assert_eq!(
            Recipient::parse(Channel::Whatsapp, "whatsapp:+14155550100")
                .unwrap()
                .as_str(),
            "+14155550100"
        );
        assert!(matches!(
            Recipient::parse(Channel::Email, "ana@example.com"),
            Ok(Recipient::Email(_))
        ));
        assert!(Recipient::parse(Channel::Email, "+14155550100").is_err());
    }

    #[test]
    fn senders_follow_the_channel() {
        let service = format!("MG{}", "a1".repeat(16));
        assert_eq!(
            Sender::parse(Channel::Sms, &service),
            Ok(Sender::MessagingService(service.clone()))
        );
        assert_eq!(
            Sender::parse(Channel::Sms, "MG123"),
            Err(SenderError::NotMessagingService)
        );
        assert!(Sender::parse(Channel::Whatsapp, &service).is_err());
        assert!(matches!(
            Sender::parse(Channel::Sms, "+14155550100"),
            Ok(Sender::Phone(_))
        ));
        assert!(matches!(
            Sender::parse(Channel::Email, "news@example.com"),
            Ok(Sender::Email(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".*") {
            for channel in Channel::ALL {
                let _ = Recipient::parse(channel, &s);
                let _ = Sender::parse(channel, &s);
            }
            let _ = s.parse::<Channel>();
        }

        #[test]
        fn senders_round_trip(s in "\\+[1-9][0-9]{1,14}") {
            let sender = Sender::parse(Channel::Sms, &s).unwrap();
            prop_assert_eq!(Sender::parse(Channel::Sms, sender.as_str()).unwrap(), sender);
        }
    }
}
