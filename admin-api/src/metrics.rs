//! The admin API's Prometheus metrics: described with their units, and the series of known
//! labels set to zero at start so that rates and alerts see the first event.

use metrics::{Unit, describe_counter};

/// The webhook sources and the outcomes each can count.
const WEBHOOK_OUTCOMES: [(&str, &[&str]); 5] = [
    (
        "twilio_status",
        &[
            "applied",
            "ignored",
            "unknown_message",
            "malformed",
            "malformed_account",
            "invalid_signature",
            "foreign_tenant",
        ],
    ),
    (
        "twilio_inbound",
        &[
            "applied",
            "replayed",
            "ignored",
            "malformed",
            "malformed_account",
            "invalid_signature",
        ],
    ),
    (
        "ses",
        &[
            "applied",
            "replayed",
            "ignored",
            "unknown_message",
            "malformed",
            "invalid_signature",
            "unexpected_topic",
            "stale_message",
            "foreign_tenant",
            "foreign_recipient",
        ],
    ),
    (
        "twilio_brand_status",
        &["applied", "unknown_brand", "malformed_account", "invalid_signature"],
    ),
    ("unsubscribe", &["applied", "repeated", "invalid_token"]),
];

/// Describes every admin API metric and sets the series of known labels to zero.
pub(crate) fn describe() {
    describe_counter!(
        "admin_messages_submitted_total",
        Unit::Count,
        "envelopes submitted over POST /v1/messages and campaign sends, by outcome (accepted, held, duplicate, rejected)"
    );
    describe_counter!(
        "admin_held_messages_released_total",
        Unit::Count,
        "held campaign messages appended to the log once their channel was ready"
    );
    metrics::counter!("admin_held_messages_released_total").absolute(0);
    describe_counter!(
        "admin_scheduled_messages_released_total",
        Unit::Count,
        "scheduled messages appended to the log as they came due"
    );
    metrics::counter!("admin_scheduled_messages_released_total").absolute(0);
    describe_counter!(
        "admin_webhooks_total",
        Unit::Count,
        "provider webhooks, by source and outcome (applied, invalid_signature, unknown_message, ...)"
    );
    describe_counter!(
        "admin_limited_total",
        Unit::Count,
        "requests refused by an abuse limit, by limit (requests, credential_checks, event_streams, timeout)"
    );
    for limit in ["requests", "credential_checks", "event_streams", "timeout"] {
        metrics::counter!("admin_limited_total", "limit" => limit).absolute(0);
    }
    for outcome in ["accepted", "held", "duplicate", "rejected"] {
        metrics::counter!("admin_messages_submitted_total", "outcome" => outcome).absolute(0);
    }
    for (source, outcomes) in WEBHOOK_OUTCOMES {
        for outcome in outcomes {
            metrics::counter!("admin_webhooks_total", "source" => source, "outcome" => *outcome).absolute(0);
        }
    }
}
