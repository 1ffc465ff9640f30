//! Twilio's message statuses as it spells them, and what each means for our message.

use crate::status::{MessageStatus, UnknownStatus};

/// A Twilio message status as Twilio spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TwilioStatus {
    /// `queued`: Twilio holds it in its queue (initial status without a Messaging Service).
    Queued,
    /// `sending`: Twilio is handing it to the carrier.
    Sending,
    /// `sent`: the carrier accepted it.
    Sent,
    /// `failed`: the message could not be sent.
    Failed,
    /// `delivered`: the carrier confirmed delivery.
    Delivered,
    /// `undelivered`: the carrier could not deliver it.
    Undelivered,
    /// `receiving`: inbound message being received.
    Receiving,
    /// `received`: inbound message received.
    Received,
    /// `accepted`: a Messaging Service accepted it (initial status with a Messaging Service).
    Accepted,
    /// `scheduled`: scheduled for later sending.
    Scheduled,
    /// `read`: WhatsApp read receipt.
    Read,
    /// `partially_delivered`: some parts were delivered.
    PartiallyDelivered,
    /// `canceled`: a scheduled message was canceled.
    Canceled,
}

impl TwilioStatus {
    /// Every Twilio status.
    pub const ALL: [TwilioStatus; 13] = [
        TwilioStatus::Queued,
        TwilioStatus::Sending,
        TwilioStatus::Sent,
        TwilioStatus::Failed,
        TwilioStatus::Delivered,
        TwilioStatus::Undelivered,
        TwilioStatus::Receiving,
        TwilioStatus::Received,
        TwilioStatus::Accepted,
        TwilioStatus::Scheduled,
        TwilioStatus::Read,
        TwilioStatus::PartiallyDelivered,
        TwilioStatus::Canceled,
    ];

    /// Parses Twilio's lowercase spelling ("partially_delivered", ...); errors with UnknownStatus.
    pub fn parse(s: &str) -> Result<Self, UnknownStatus> {
        TwilioStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }

    /// Twilio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TwilioStatus::Queued => "queued",
            TwilioStatus::Sending => "sending",
            TwilioStatus::Sent => "sent",
            TwilioStatus::Failed => "failed",
            TwilioStatus::Delivered => "delivered",
            TwilioStatus::Undelivered => "undelivered",
            TwilioStatus::Receiving => "receiving",
            TwilioStatus::Received => "received",
            TwilioStatus::Accepted => "accepted",
            TwilioStatus::Scheduled => "scheduled",
            TwilioStatus::Read => "read",
            TwilioStatus::PartiallyDelivered => "partially_delivered",
            TwilioStatus::Canceled => "canceled",
        }
    }

    /// Our status for an outbound message in this Twilio status; None for inbound-only statuses (receiving, received).
    pub fn to_message_status(self) -> Option<MessageStatus> {
        match self {
            // Twilio has it, whichever stage of its own pipeline it is in.
            TwilioStatus::Queued
            | TwilioStatus::Accepted
            | TwilioStatus::Scheduled
            | TwilioStatus::Sending
            | TwilioStatus::Sent => Some(MessageStatus::Sent),
            TwilioStatus::Delivered | TwilioStatus::PartiallyDelivered => Some(MessageStatus::Delivered),
            TwilioStatus::Read => Some(MessageStatus::Read),
            TwilioStatus::Undelivered => Some(MessageStatus::Undelivered),
            TwilioStatus::Failed | TwilioStatus::Canceled => Some(MessageStatus::Failed),
            TwilioStatus::Receiving | TwilioStatus::Received => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::{Delivered, Failed, Read, Sent, Undelivered};

    #[test]
    fn twilio_mapping_is_as_specified() {
        use TwilioStatus as T;
        let expected: [(TwilioStatus, &str, Option<MessageStatus>); 13] = [
            (T::Queued, "queued", Some(Sent)),
            (T::Sending, "sending", Some(Sent)),
            (T::Sent, "sent", Some(Sent)),
            (T::Failed, "failed", Some(Failed)),
            (T::Delivered, "delivered", Some(Delivered)),
            (T::Undelivered, "undelivered", Some(Undelivered)),
            (T::Receiving, "receiving", None),
            (T::Received, "received", None),
            (T::Accepted, "accepted", Some(Sent)),
            (T::Scheduled, "scheduled", Some(Sent)),
            (T::Read, "read", Some(Read)),
            (T::PartiallyDelivered, "partially_delivered", Some(Delivered)),
            (T::Canceled, "canceled", Some(Failed)),
        ];
        assert_eq!(TwilioStatus::ALL.len(), expected.len());
        for (status, name, mapped) in expected {
            assert!(TwilioStatus::ALL.contains(&status));
            assert_eq!(status.as_str(), name);
            assert_eq!(TwilioStatus::parse(name), Ok(status));
            assert_eq!(status.to_message_status(), mapped, "{name}");
        }
        for t in TwilioStatus::ALL {
            assert_eq!(TwilioStatus::parse(t.as_str()), Ok(t));
        }
        for bad in ["", "Queued", "DELIVERED", "partially-delivered", "cancelled", "bogus"] {
            assert_eq!(TwilioStatus::parse(bad), Err(UnknownStatus(bad.to_owned())), "{bad:?}");
        }
    }
}
