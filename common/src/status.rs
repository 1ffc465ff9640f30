//! Message statuses and the forward-only precedence rule. Providers' statuses are mapped to
//! them beside each provider: `twilio::status`, `ses::events`.
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
///   stays delivered), and never another terminal. `Canceled` is a terminal that replaces
///   `Queued` only.
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
                          replace queued, unknown or sent, never delivered or read; canceled replaces \
                          only queued."
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
    /// Terminal: canceled by the tenant before it was handed to the dispatcher (a scheduled
    /// message); only ever replaces `queued`.
    Canceled,
}

impl MessageStatus {
    /// All statuses, for exhaustive tests and docs.
    pub const ALL: [MessageStatus; 11] = [
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
        MessageStatus::Canceled,
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
            MessageStatus::Canceled => "canceled",
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
                | MessageStatus::Canceled
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
            | MessageStatus::Suppressed
            | MessageStatus::Canceled => None,
        }
    }

    /// Whether a message currently in `self` may move to `next` (the forward-only rule).
    pub fn can_advance_to(self, next: MessageStatus) -> bool {
        match (self.chain_rank(), next.chain_rank()) {
            // Nothing moves out of a terminal status.
            (None, _) => false,
            // Along the chain: strictly upwards only (this also excludes self -> self).
            (Some(cur), Some(nxt)) => nxt > cur,
            // A cancel replaces only Queued: nothing was handed to a provider yet.
            (Some(cur), None) if next == MessageStatus::Canceled => cur == 0,
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

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::{
        Canceled, Delivered, Expired, Failed, Queued, Read, Rejected, Sent, Suppressed, Undelivered, Unknown,
    };
    use proptest::prelude::*;

    /// Every (from, to) pair the forward-only rule allows, written out by hand.
    /// Any pair not listed here must be refused.
    const ALLOWED: [(MessageStatus, MessageStatus); 26] = [
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
        (Queued, Canceled),
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

    const TERMINALS: [MessageStatus; 6] = [Failed, Undelivered, Expired, Rejected, Suppressed, Canceled];

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
                Queued | Unknown | Sent | Delivered | Read | Failed | Undelivered | Expired | Rejected | Suppressed
                | Canceled => {}
            }
        }
        assert_eq!(ALLOWED.len(), 26);
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
        assert_eq!(checked, 121);
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
        use crate::twilio::status::TwilioStatus;
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
