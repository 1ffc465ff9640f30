//! Message statuses, the forward-only precedence rule, and the Twilio / SES status mappings.
//!
//! Provider callbacks arrive out of order and more than once, so a stored status is only ever
//! replaced through [`MessageStatus::advance`], which applies the forward-only rule documented
//! on [`MessageStatus`].

use std::fmt;
use std::str::FromStr;

/// A status string (ours, Twilio's or SES's) that is not recognised; holds the offending input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("unknown status: {0:?}")]
pub struct UnknownStatus(pub String);

/// Where a message stands.
///
/// # The forward-only rule
///
/// A stored status is only replaced by a status that may follow it
/// ([`MessageStatus::can_advance_to`]); anything else is ignored ([`MessageStatus::advance`]):
///
/// - The happy chain ranks `Queued(0) < Unknown(1) < Sent(2) < Delivered(3) < Read(4)`. Moving to
///   a strictly higher rank on the chain is allowed; equal or lower is not (a late `sent` never
///   overwrites `delivered`; duplicates are no-ops).
/// - The failure terminals (`Failed`, `Undelivered`, `Expired`, `Rejected`, `Suppressed`) may
///   replace `Queued`, `Unknown` or `Sent`, but never `Delivered` or `Read` (a delivered message
///   stays delivered), and never another terminal.
/// - Nothing moves out of a terminal status, and a status never "advances" to itself.
/// - `Unknown` (outcome of the provider call not known) may be followed by anything of higher
///   rank or by a failure: reconciliation resolves it.
///
/// `Read` is final in practice: nothing outranks it. The rule is a strict partial order, so
/// applying a sequence of updates with `advance` never moves backwards and repeating an update
/// that was already applied never changes the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "A message's status. It only moves forward: queued, unknown, sent, delivered, read; \
                          a terminal failure (failed, undelivered, expired, rejected, suppressed) may \
                          replace queued, unknown or sent, never delivered or read."
    )
)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Accepted by us, not yet handed to a provider.
    Queued,
    /// The provider call's outcome is unknown (timeout after the request was written); awaits reconciliation.
    Unknown,
    /// The provider accepted it.
    Sent,
    /// The handset / mailbox got it.
    Delivered,
    /// Read receipt (WhatsApp read, email open or click).
    Read,
    /// Terminal: the provider or we refused it permanently.
    Failed,
    /// Terminal: the carrier could not deliver / hard bounce.
    Undelivered,
    /// Terminal: validity ran out before it could be sent.
    Expired,
    /// Terminal: refused at admission (tenant, channel, quota, ...).
    Rejected,
    /// Terminal: recipient opted out / suppressed.
    Suppressed,
}

impl MessageStatus {
    /// All statuses, for exhaustive tests and docs.
    pub const ALL: [MessageStatus; 10] = [
        MessageStatus::Queued,
        MessageStatus::Unknown,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Failed,
        MessageStatus::Undelivered,
        MessageStatus::Expired,
        MessageStatus::Rejected,
        MessageStatus::Suppressed,
    ];

    /// The statuses that wait for the provider to settle them, in the order reconciliation
    /// asks about them.
    pub const RECONCILED: [MessageStatus; 2] = [MessageStatus::Sent, MessageStatus::Unknown];

    /// The stable lowercase name (also the serde name), e.g. "delivered".
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Unknown => "unknown",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => "failed",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Expired => "expired",
            MessageStatus::Rejected => "rejected",
            MessageStatus::Suppressed => "suppressed",
        }
    }

    /// True for statuses after which nothing may change (failed, undelivered, expired, rejected, suppressed). Note Read is also final in practice: nothing outranks it.
    pub fn is_terminal(self) -> bool {
        self.is_failure()
    }

    /// True for the failure statuses.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            MessageStatus::Failed
                | MessageStatus::Undelivered
                | MessageStatus::Expired
                | MessageStatus::Rejected
                | MessageStatus::Suppressed
        )
    }

    /// Rank on the happy chain; `None` for the failure terminals.
    fn chain_rank(self) -> Option<u8> {
        match self {
            MessageStatus::Queued => Some(0),
            MessageStatus::Unknown => Some(1),
            MessageStatus::Sent => Some(2),
            MessageStatus::Delivered => Some(3),
            MessageStatus::Read => Some(4),
            MessageStatus::Failed
            | MessageStatus::Undelivered
            | MessageStatus::Expired
            | MessageStatus::Rejected
            | MessageStatus::Suppressed => None,
        }
    }

    /// Whether a message currently in `self` may move to `next` (the forward-only rule).
    pub fn can_advance_to(self, next: MessageStatus) -> bool {
        match (self.chain_rank(), next.chain_rank()) {
            // Nothing moves out of a terminal status.
            (None, _) => false,
            // Along the chain: strictly upwards only (this also excludes self -> self).
            (Some(cur), Some(nxt)) => nxt > cur,
            // A failure replaces Queued, Unknown or Sent, never Delivered or Read.
            (Some(cur), None) => cur <= 2,
        }
    }

    /// Applies the forward-only rule: returns `next` if it may replace `self`, else `self`.
    #[must_use]
    pub fn advance(self, next: MessageStatus) -> MessageStatus {
        if self.can_advance_to(next) { next } else { self }
    }
}

impl FromStr for MessageStatus {
    type Err = UnknownStatus;

    /// Parses the stable lowercase names produced by [`MessageStatus::as_str`] (exact match).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    use MessageStatus::{Delivered, Expired, Failed, Queued, Read, Rejected, Sent, Suppressed, Undelivered, Unknown};
    use proptest::prelude::*;

    /// Every (from, to) pair the forward-only rule allows, written out by hand.
    /// Any pair not listed here must be refused.
    const ALLOWED: [(MessageStatus, MessageStatus); 25] = [
        // Queued: everything above it on the chain, and every failure.
        (Queued, Unknown),
        (Queued, Sent),
        (Queued, Delivered),
        (Queued, Read),
        (Queued, Failed),
        (Queued, Undelivered),
        (Queued, Expired),
        (Queued, Rejected),
        (Queued, Suppressed),
        // Unknown: higher chain ranks and every failure (reconciliation).
        (Unknown, Sent),
        (Unknown, Delivered),
        (Unknown, Read),
        (Unknown, Failed),
        (Unknown, Undelivered),
        (Unknown, Expired),
        (Unknown, Rejected),
        (Unknown, Suppressed),
        // Sent: delivered, read, and every failure.
        (Sent, Delivered),
        (Sent, Read),
        (Sent, Failed),
        (Sent, Undelivered),
        (Sent, Expired),
        (Sent, Rejected),
        (Sent, Suppressed),
        // Delivered: only read. Read and the terminals: nothing.
        (Delivered, Read),
    ];

    const TERMINALS: [MessageStatus; 5] = [Failed, Undelivered, Expired, Rejected, Suppressed];

    /// Independent chain rank for the tests; `None` for terminals.
    fn test_rank(s: MessageStatus) -> Option<u8> {
        [Queued, Unknown, Sent, Delivered, Read]
            .iter()
            .position(|c| *c == s)
            .map(|p| u8::try_from(p).unwrap())
    }

    #[test]
    fn all_lists_are_complete_and_distinct() {
        for (i, a) in MessageStatus::ALL.iter().enumerate() {
            for b in &MessageStatus::ALL[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Exhaustiveness is enforced by this match: adding a variant breaks compilation here.
        for s in MessageStatus::ALL {
            match s {
                Queued | Unknown | Sent | Delivered | Read | Failed | Undelivered | Expired | Rejected | Suppressed => {
                }
            }
        }
        assert_eq!(ALLOWED.len(), 25);
    }

    #[test]
    fn terminal_and_failure_sets() {
        for s in MessageStatus::ALL {
            let expected = TERMINALS.contains(&s);
            assert_eq!(s.is_terminal(), expected, "{s}");
            assert_eq!(s.is_failure(), expected, "{s}");
        }
    }

    #[test]
    fn precedence_every_ordered_pair_matches_explicit_table() {
        let mut checked = 0;
        for a in MessageStatus::ALL {
            for b in MessageStatus::ALL {
                let allowed = ALLOWED.contains(&(a, b));
                let reverse_allowed = ALLOWED.contains(&(b, a));
                assert_eq!(a.can_advance_to(b), allowed, "{a} -> {b}");
                assert_eq!(b.can_advance_to(a), reverse_allowed, "{b} -> {a}");
                let expected = if allowed { b } else { a };
                assert_eq!(a.advance(b), expected, "advance({a}, {b})");
                let expected_rev = if reverse_allowed { a } else { b };
                assert_eq!(b.advance(a), expected_rev, "advance({b}, {a})");
                // Never both directions; never to itself.
                assert!(!(allowed && reverse_allowed), "{a} <-> {b}");
                if a == b {
                    assert!(!allowed, "{a} -> itself");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 100);
    }

    #[test]
    fn nothing_leaves_a_terminal_and_nothing_replaces_delivered_with_failure() {
        for t in TERMINALS {
            for next in MessageStatus::ALL {
                assert_eq!(t.advance(next), t);
            }
        }
        for t in TERMINALS {
            assert_eq!(Delivered.advance(t), Delivered);
            assert_eq!(Read.advance(t), Read);
        }
        for next in MessageStatus::ALL {
            assert_eq!(Read.advance(next), Read);
        }
    }

    #[test]
    fn advance_is_idempotent_after_a_later_duplicate() {
        for a in MessageStatus::ALL {
            for b in MessageStatus::ALL {
                let once = a.advance(b);
                assert_eq!(once.advance(b), once, "{a} then {b} twice");
                // A duplicate of the starting status arriving later changes nothing either.
                assert_eq!(once.advance(a), once, "{a} then {b} then {a}");
            }
        }
    }

    #[test]
    fn late_sent_never_overwrites_delivered() {
        assert_eq!(Delivered.advance(Sent), Delivered);
        assert_eq!(Read.advance(Sent), Read);
        assert_eq!(Sent.advance(Delivered).advance(Sent), Delivered);
        // Out-of-order Twilio callbacks: delivered arrives before sent.
        let mut s = Queued;
        for t in [TwilioStatus::Delivered, TwilioStatus::Sent, TwilioStatus::Sending] {
            s = s.advance(t.to_message_status().unwrap());
        }
        assert_eq!(s, Delivered);
    }

    #[test]
    fn unknown_is_resolved_by_reconciliation() {
        for next in [
            Sent,
            Delivered,
            Read,
            Failed,
            Undelivered,
            Expired,
            Rejected,
            Suppressed,
        ] {
            assert_eq!(Unknown.advance(next), next);
        }
        assert_eq!(Unknown.advance(Queued), Unknown);
        assert_eq!(Unknown.advance(Unknown), Unknown);
    }

    #[test]
    fn from_str_display_and_serde_round_trip() {
        for s in MessageStatus::ALL {
            let name = s.as_str();
            assert_eq!(s.to_string(), name);
            assert_eq!(name.parse::<MessageStatus>(), Ok(s));
            assert_eq!(name, name.to_lowercase());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            let back: MessageStatus = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s);
        }
        for bad in [
            "",
            "Delivered",
            "DELIVERED",
            " sent",
            "sent ",
            "bogus",
            "partially_delivered",
        ] {
            assert_eq!(
                bad.parse::<MessageStatus>(),
                Err(UnknownStatus(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<MessageStatus>("\"bogus\"").is_err());
    }

    #[test]
    fn unknown_status_error_message_names_the_input() {
        let err = "nope".parse::<MessageStatus>().unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

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

    fn any_status() -> impl Strategy<Value = MessageStatus> {
        prop::sample::select(MessageStatus::ALL.to_vec())
    }

    fn apply(start: MessageStatus, seq: &[MessageStatus]) -> MessageStatus {
        seq.iter().fold(start, |s, &next| s.advance(next))
    }

    proptest! {
        #[test]
        fn sequences_never_go_backwards(
            start in any_status(),
            seq in prop::collection::vec(any_status(), 0..40),
        ) {
            let mut cur = start;
            for next in seq {
                let after = cur.advance(next);
                prop_assert!(after == cur || after == next);
                if cur.is_terminal() {
                    prop_assert_eq!(after, cur, "left terminal {}", cur);
                }
                match (test_rank(cur), test_rank(after)) {
                    (Some(r0), Some(r1)) => prop_assert!(r1 >= r0, "{} -> {}", cur, after),
                    // Chain -> terminal only from Queued, Unknown or Sent.
                    (Some(r0), None) => prop_assert!(after == cur || r0 <= 2, "{} -> {}", cur, after),
                    (None, Some(_)) => prop_assert!(false, "terminal {} -> {}", cur, after),
                    (None, None) => prop_assert_eq!(after, cur),
                }
                cur = after;
            }
        }

        #[test]
        fn later_duplicates_do_not_change_the_result(
            start in any_status(),
            seq in prop::collection::vec(any_status(), 0..40),
            dups in prop::collection::vec(
                (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
                0..20,
            ),
        ) {
            let expected = apply(start, &seq);

            // Re-deliver already-seen statuses at any later point.
            let mut noisy = seq.clone();
            for (src, dst) in dups {
                if noisy.is_empty() {
                    break;
                }
                let i = src.index(noisy.len());
                let j = i + 1 + dst.index(noisy.len() - i);
                let item = noisy[i];
                noisy.insert(j, item);
            }
            prop_assert_eq!(apply(start, &noisy), expected);

            // Keeping only the first occurrence of each status gives the same result.
            let mut deduped: Vec<MessageStatus> = Vec::new();
            for s in &seq {
                if !deduped.contains(s) {
                    deduped.push(*s);
                }
            }
            prop_assert_eq!(apply(start, &deduped), expected);

            // Every status delivered twice in a row gives the same result.
            let doubled: Vec<MessageStatus> = seq.iter().flat_map(|&s| [s, s]).collect();
            prop_assert_eq!(apply(start, &doubled), expected);
        }
    }
}
