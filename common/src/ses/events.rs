//! SES events (as event publishing and the older notifications name them) and what each means
//! for our message and its recipient.

use crate::status::{MessageStatus, UnknownStatus};

/// An SES event type as it appears in SES event publishing (`eventType`) or the older notifications (`notificationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SesEventType {
    /// `Send`: SES accepted the send request.
    Send,
    /// `Delivery`: the receiving mail server accepted the mail.
    Delivery,
    /// `Bounce`: the receiving mail server rejected the mail.
    Bounce,
    /// `Complaint`: the recipient marked the mail as spam.
    Complaint,
    /// `Reject`: SES refused to send it (e.g. virus detected).
    Reject,
    /// `Open`: the recipient opened the mail.
    Open,
    /// `Click`: the recipient clicked a link in the mail.
    Click,
    /// `Rendering Failure`: the template could not be rendered.
    RenderingFailure,
    /// `DeliveryDelay`: delivery is delayed; SES keeps trying.
    DeliveryDelay,
    /// `Subscription`: the recipient changed their subscription preferences.
    Subscription,
}

/// SES bounce type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SesBounceType {
    /// Hard bounce: the address will not accept mail.
    Permanent,
    /// Soft bounce: a temporary problem; SES retries.
    Transient,
    /// SES could not determine the bounce reason.
    Undetermined,
}

/// What one SES event means for a message and its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SesOutcome {
    /// The status the message moves to, if any.
    pub status: Option<MessageStatus>,
    /// Whether the recipient address must be added to the tenant's suppression list.
    pub suppress_recipient: bool,
}

impl SesEventType {
    /// Every SES event type.
    pub const ALL: [SesEventType; 10] = [
        SesEventType::Send,
        SesEventType::Delivery,
        SesEventType::Bounce,
        SesEventType::Complaint,
        SesEventType::Reject,
        SesEventType::Open,
        SesEventType::Click,
        SesEventType::RenderingFailure,
        SesEventType::DeliveryDelay,
        SesEventType::Subscription,
    ];

    /// Parses SES's spelling ("Send", "Delivery", "Bounce", "Complaint", "Reject", "Open", "Click", "Rendering Failure", "DeliveryDelay", "Subscription"); also accepts "RenderingFailure".
    pub fn parse(s: &str) -> Result<Self, UnknownStatus> {
        if s == "RenderingFailure" {
            return Ok(SesEventType::RenderingFailure);
        }
        SesEventType::ALL
            .into_iter()
            .find(|event| event.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }

    /// SES's spelling in event publishing, e.g. "Rendering Failure".
    pub fn as_str(self) -> &'static str {
        match self {
            SesEventType::Send => "Send",
            SesEventType::Delivery => "Delivery",
            SesEventType::Bounce => "Bounce",
            SesEventType::Complaint => "Complaint",
            SesEventType::Reject => "Reject",
            SesEventType::Open => "Open",
            SesEventType::Click => "Click",
            SesEventType::RenderingFailure => "Rendering Failure",
            SesEventType::DeliveryDelay => "DeliveryDelay",
            SesEventType::Subscription => "Subscription",
        }
    }

    /// Maps the event (with its bounce type for Bounce; ignored otherwise) to its outcome.
    pub fn outcome(self, bounce: Option<SesBounceType>) -> SesOutcome {
        let (status, suppress_recipient) = match self {
            SesEventType::Send => (Some(MessageStatus::Sent), false),
            SesEventType::Delivery => (Some(MessageStatus::Delivered), false),
            // A click implies the mail was opened.
            SesEventType::Open | SesEventType::Click => (Some(MessageStatus::Read), false),
            SesEventType::Bounce => match bounce {
                Some(SesBounceType::Permanent) => (Some(MessageStatus::Undelivered), true),
                // Soft or unclassified bounce: SES retries; nothing changes yet.
                Some(SesBounceType::Transient | SesBounceType::Undetermined) | None => (None, false),
            },
            // The mail was delivered; a complaint does not undo that, but we stop mailing them.
            SesEventType::Complaint => (None, true),
            SesEventType::Reject | SesEventType::RenderingFailure => (Some(MessageStatus::Failed), false),
            SesEventType::DeliveryDelay | SesEventType::Subscription => (None, false),
        };
        SesOutcome {
            status,
            suppress_recipient,
        }
    }
}

impl SesBounceType {
    /// Every SES bounce type.
    pub const ALL: [SesBounceType; 3] = [
        SesBounceType::Permanent,
        SesBounceType::Transient,
        SesBounceType::Undetermined,
    ];

    /// Parses "Permanent", "Transient", "Undetermined".
    pub fn parse(s: &str) -> Result<Self, UnknownStatus> {
        SesBounceType::ALL
            .into_iter()
            .find(|bounce| bounce.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }

    /// SES's spelling of the bounce type.
    pub fn as_str(self) -> &'static str {
        match self {
            SesBounceType::Permanent => "Permanent",
            SesBounceType::Transient => "Transient",
            SesBounceType::Undetermined => "Undetermined",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::{Delivered, Failed, Read, Sent, Undelivered};

    fn outcome(status: Option<MessageStatus>, suppress_recipient: bool) -> SesOutcome {
        SesOutcome {
            status,
            suppress_recipient,
        }
    }

    #[test]
    fn ses_mapping_is_as_specified() {
        use SesEventType as E;
        let bounces = [
            None,
            Some(SesBounceType::Permanent),
            Some(SesBounceType::Transient),
            Some(SesBounceType::Undetermined),
        ];
        // Events whose outcome ignores the bounce type.
        let fixed: [(SesEventType, &str, SesOutcome); 9] = [
            (E::Send, "Send", outcome(Some(Sent), false)),
            (E::Delivery, "Delivery", outcome(Some(Delivered), false)),
            (E::Complaint, "Complaint", outcome(None, true)),
            (E::Reject, "Reject", outcome(Some(Failed), false)),
            (E::Open, "Open", outcome(Some(Read), false)),
            (E::Click, "Click", outcome(Some(Read), false)),
            (E::RenderingFailure, "Rendering Failure", outcome(Some(Failed), false)),
            (E::DeliveryDelay, "DeliveryDelay", outcome(None, false)),
            (E::Subscription, "Subscription", outcome(None, false)),
        ];
        for (event, name, expected) in fixed {
            assert_eq!(SesEventType::parse(name), Ok(event));
            assert_eq!(event.as_str(), name);
            for b in bounces {
                assert_eq!(event.outcome(b), expected, "{name} with {b:?}");
            }
        }
        assert_eq!(SesEventType::parse("Bounce"), Ok(E::Bounce));
        assert_eq!(
            E::Bounce.outcome(Some(SesBounceType::Permanent)),
            outcome(Some(Undelivered), true)
        );
        assert_eq!(E::Bounce.outcome(Some(SesBounceType::Transient)), outcome(None, false));
        assert_eq!(
            E::Bounce.outcome(Some(SesBounceType::Undetermined)),
            outcome(None, false)
        );
        assert_eq!(E::Bounce.outcome(None), outcome(None, false));
        assert_eq!(fixed.len() + 1, SesEventType::ALL.len());
        for e in SesEventType::ALL {
            assert_eq!(SesEventType::parse(e.as_str()), Ok(e));
        }
        assert_eq!(SesEventType::parse("RenderingFailure"), Ok(E::RenderingFailure));
        for bad in ["", "send", "BOUNCE", "Rendering  Failure", "Delivery Delay", "bogus"] {
            assert_eq!(SesEventType::parse(bad), Err(UnknownStatus(bad.to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn ses_bounce_type_parses() {
        assert_eq!(SesBounceType::parse("Permanent"), Ok(SesBounceType::Permanent));
        assert_eq!(SesBounceType::parse("Transient"), Ok(SesBounceType::Transient));
        assert_eq!(SesBounceType::parse("Undetermined"), Ok(SesBounceType::Undetermined));
        for b in SesBounceType::ALL {
            assert_eq!(SesBounceType::parse(b.as_str()), Ok(b));
        }
        for bad in ["", "permanent", "Hard", "bogus"] {
            assert_eq!(SesBounceType::parse(bad), Err(UnknownStatus(bad.to_owned())), "{bad:?}");
        }
    }
}
