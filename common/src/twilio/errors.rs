//! Twilio's error codes, classified by what the dispatcher does about them.
//!
//! Twilio answers a refused request with a JSON body `{code, message, more_info, status}`; the
//! same codes come back later as `ErrorCode` in status callbacks and as `error_code` on a fetched
//! message. [`classify`] turns a code into an [`ErrorClass`]; [`KNOWN_CODES`] is the table it
//! reads, with the reason for each entry. Facts come from `shared/reference/providers.md`
//! unless an entry says otherwise.

/// What the dispatcher does about a Twilio error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Twilio did not process the request (throttled, overloaded, a queue full): sending the same
    /// message again later, with backoff, is safe and may succeed.
    Transient,
    /// This message can never succeed as sent (bad or unreachable recipient, carrier refusal):
    /// fail it.
    Permanent,
    /// The recipient replied STOP (21610): fail the message and suppress the address, since every
    /// later message to it would be refused too.
    SuppressRecipient,
    /// The tenant's setup is at fault (an unregistered 10DLC number, rejected credentials): fail
    /// the message and tell the tenant; nothing sent from that setup can succeed until it is fixed.
    NeedsAttention,
    /// A WhatsApp free-form message outside the 24 h customer service window (63016): fail it;
    /// only an approved template (`ContentSid`) can reach the recipient now.
    WhatsappWindow,
}

impl ErrorClass {
    /// Whether the same message may be sent again later.
    pub fn is_retryable(self) -> bool {
        self == ErrorClass::Transient
    }
}

/// One row of the classification table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownCode {
    /// Twilio's error code.
    pub code: u32,
    /// What to do about it.
    pub class: ErrorClass,
    /// What it means, and why it is in its class.
    pub meaning: &'static str,
}

const fn row(code: u32, class: ErrorClass, meaning: &'static str) -> KnownCode {
    KnownCode { code, class, meaning }
}

/// Every code with a deliberate class; any other code is [`ErrorClass::Permanent`].
pub const KNOWN_CODES: &[KnownCode] = &[
    // Transient: Twilio did not take the message, or it failed for want of capacity.
    row(
        20429,
        ErrorClass::Transient,
        "too many concurrent requests on the account (HTTP 429): not processed, always safe to retry",
    ),
    row(
        20500,
        ErrorClass::Transient,
        "internal server error (not in providers.md; unconfirmed): retried like any 5xx",
    ),
    row(
        20503,
        ErrorClass::Transient,
        "service unavailable (not in providers.md; unconfirmed): retried like any 5xx",
    ),
    row(
        21611,
        ErrorClass::Transient,
        "the From number's queue (10 hours of traffic) is full: rejected at create, so nothing was \
         queued; it drains at the number's rate, so a later retry within the message's validity can \
         succeed, and the retry budget still ends it",
    ),
    row(
        30001,
        ErrorClass::Transient,
        "queue overflow after creation (arrives in status callbacks): the message never left Twilio, \
         so a new send later is safe",
    ),
    row(
        63017,
        ErrorClass::Transient,
        "over 2,000 messages/s across the account and its subaccounts: a rate limit, not a verdict \
         on the message",
    ),
    // Permanent: this message to this recipient cannot succeed.
    row(21211, ErrorClass::Permanent, "invalid To number"),
    row(21614, ErrorClass::Permanent, "To is not a mobile number"),
    row(30003, ErrorClass::Permanent, "unreachable destination handset"),
    row(30006, ErrorClass::Permanent, "landline or unreachable carrier"),
    row(
        30007,
        ErrorClass::Permanent,
        "carrier filtering: resending the same content gets filtered again",
    ),
    row(
        30036,
        ErrorClass::Permanent,
        "validity period expired before the message could be sent",
    ),
    // The recipient opted out.
    row(
        21610,
        ErrorClass::SuppressRecipient,
        "recipient unsubscribed (replied STOP)",
    ),
    // The tenant must act.
    row(
        20003,
        ErrorClass::NeedsAttention,
        "authentication failed, HTTP 401 (Twilio's error dictionary, not in providers.md): the \
         tenant's credentials are wrong or revoked",
    ),
    row(
        30034,
        ErrorClass::NeedsAttention,
        "message from an unregistered US 10DLC number: such traffic is fully blocked since \
         2023-09-01 until the brand and campaign are registered",
    ),
    // WhatsApp's session rule.
    row(
        63016,
        ErrorClass::WhatsappWindow,
        "WhatsApp free-form message outside the 24 h window: send an approved template instead",
    ),
];

/// The class of a Twilio error code. Codes not in [`KNOWN_CODES`] are
/// [`ErrorClass::Permanent`]: a refusal Twilio did not tell us is temporary would be refused
/// again if the same request were sent again.
pub fn classify(code: u32) -> ErrorClass {
    describe(code).map_or(ErrorClass::Permanent, |known| known.class)
}

/// The table row of a code, if it has one.
pub fn describe(code: u32) -> Option<&'static KnownCode> {
    KNOWN_CODES.iter().find(|known| known.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_the_brief_names_has_its_class() {
        let expected = [
            (20429, ErrorClass::Transient),
            (20500, ErrorClass::Transient),
            (20503, ErrorClass::Transient),
            (63017, ErrorClass::Transient),
            (21611, ErrorClass::Transient),
            (21211, ErrorClass::Permanent),
            (21614, ErrorClass::Permanent),
            (30003, ErrorClass::Permanent),
            (30006, ErrorClass::Permanent),
            (30007, ErrorClass::Permanent),
            (21610, ErrorClass::SuppressRecipient),
            (30034, ErrorClass::NeedsAttention),
            (20003, ErrorClass::NeedsAttention),
            (63016, ErrorClass::WhatsappWindow),
        ];
        for (code, class) in expected {
            assert_eq!(classify(code), class, "code {code}");
        }
    }

    #[test]
    fn unlisted_codes_are_permanent() {
        for code in [0, 1, 21212, 99999, u32::MAX] {
            assert_eq!(classify(code), ErrorClass::Permanent, "code {code}");
            assert!(describe(code).is_none());
        }
    }

    #[test]
    fn the_table_lists_each_code_once_and_explains_it() {
        let mut seen = HashSet::new();
        for known in KNOWN_CODES {
            assert!(seen.insert(known.code), "{} listed twice", known.code);
            assert!(!known.meaning.is_empty());
            assert_eq!(describe(known.code), Some(known));
        }
    }

    #[test]
    fn only_transient_codes_are_retryable() {
        for known in KNOWN_CODES {
            assert_eq!(known.class.is_retryable(), known.class == ErrorClass::Transient);
        }
    }
}
