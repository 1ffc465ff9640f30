//! The dispatcher's Prometheus metrics: each described with its unit, the series of known
//! labels set to zero at start (so that `rate()` and alerts see the first event, and a
//! dashboard shows zero rather than no data), and the bounded per-tenant counter.
//!
//! Names follow Prometheus conventions: `dispatcher_` prefix, base units as suffixes
//! (`_seconds`, `_messages`, `_requests`), `_total` on counters. The catalogue is in
//! [`describe`]; `deploy/grafana/` and `deploy/prometheus/` query these names.

use std::collections::HashMap;

use common::{Channel, MessageStatus, TenantId};
use metrics::{Counter, Unit, describe_counter, describe_gauge, describe_histogram};

use crate::admission::Refusal;

/// The `outcome` labels of `dispatcher_messages_total`.
pub(crate) const SEND_OUTCOMES: [&str; 4] = ["sent", "transient", "failed", "unknown"];

/// Describes every dispatcher metric and sets the series of known labels to zero.
pub(crate) fn describe() {
    describe_counter!(
        "dispatcher_records_total",
        Unit::Count,
        "records taken from the messages topic"
    );
    describe_counter!(
        "dispatcher_dead_letters_total",
        Unit::Count,
        "malformed records sent to the dead-letters topic"
    );
    describe_counter!(
        "dispatcher_misplaced_records_total",
        Unit::Count,
        "records found on another partition than their key's (a producer's own partitioner) and moved to their tenant's partition"
    );
    describe_counter!(
        "dispatcher_quiet_hours_held_total",
        Unit::Count,
        "texts held by quiet hours until the window of the recipient's local time opens"
    );
    describe_counter!(
        "dispatcher_scheduled_total",
        Unit::Count,
        "messages due later than dispatcher.scheduled_in_memory_ms handed to the store's schedule (the admin API appends them again when due)"
    );
    describe_counter!(
        "dispatcher_duplicates_total",
        Unit::Count,
        "records skipped because their message id was already claimed: another record's duplicate, or a record read again whose message is past queued"
    );
    describe_counter!(
        "dispatcher_claim_reads_total",
        Unit::Count,
        "stored claims read because a claim filter may have seen the id (duplicates and false positives; a new id costs none)"
    );
    describe_counter!(
        "dispatcher_refusals_total",
        Unit::Count,
        "messages refused at admission, by reason code"
    );
    describe_counter!(
        "dispatcher_messages_total",
        Unit::Count,
        "provider answers per message, by channel, provider and outcome (sent, transient, failed, unknown)"
    );
    describe_counter!(
        "dispatcher_tenant_messages_total",
        Unit::Count,
        "messages a provider accepted, by tenant (the first dispatcher.tenant_series tenants; the rest as other)"
    );
    describe_counter!(
        "dispatcher_retries_total",
        Unit::Count,
        "sends retried after a transient provider error, by reason"
    );
    describe_counter!(
        "dispatcher_status_changes_total",
        Unit::Count,
        "status changes recorded, by new status"
    );
    describe_counter!(
        "dispatcher_pacing_violations_total",
        Unit::Count,
        "cells a sender took when its last second already held all its rate allows (should stay 0)"
    );
    describe_counter!(
        "dispatcher_backend_errors_total",
        Unit::Count,
        "failed log or store calls of the intake, retried with backoff, by operation"
    );
    describe_counter!(
        "dispatcher_store_errors_total",
        Unit::Count,
        "failed store writes of the status writer, retried, by operation"
    );
    describe_counter!(
        "dispatcher_log_errors_total",
        Unit::Count,
        "failed appends of status events, retried, by operation"
    );
    describe_counter!(
        "dispatcher_reconciled_total",
        Unit::Count,
        "stuck messages the provider settled, by new status"
    );
    describe_counter!(
        "dispatcher_reconcile_unresolved_total",
        Unit::Count,
        "stuck messages the provider could not settle yet, by status"
    );
    describe_gauge!(
        "dispatcher_consumer_lag_messages",
        Unit::Count,
        "records of an owned partition not yet taken, by partition"
    );
    describe_gauge!(
        "dispatcher_in_progress_messages",
        Unit::Count,
        "records taken whose outcome is not yet durable"
    );
    describe_gauge!(
        "dispatcher_queued_messages",
        Unit::Count,
        "admitted messages waiting in the sender queues (the ready queue)"
    );
    describe_gauge!(
        "dispatcher_in_flight_requests",
        Unit::Count,
        "provider requests in flight"
    );
    describe_gauge!(
        "dispatcher_paced_senders",
        Unit::Count,
        "senders with pacing state (seen in the last period)"
    );
    describe_gauge!(
        "dispatcher_quotas_near_limit",
        Unit::Count,
        "tenant channels that used at least 90% of this month's quota"
    );
    describe_histogram!(
        "dispatcher_pacing_wait_seconds",
        Unit::Seconds,
        "from admission to release by pacing"
    );
    describe_histogram!(
        "dispatcher_provider_request_duration_seconds",
        Unit::Seconds,
        "provider request durations, by provider"
    );
    describe_histogram!(
        "dispatcher_status_batch_messages",
        Unit::Count,
        "status changes per store write"
    );

    for name in [
        "dispatcher_records_total",
        "dispatcher_dead_letters_total",
        "dispatcher_duplicates_total",
        "dispatcher_misplaced_records_total",
        "dispatcher_scheduled_total",
        "dispatcher_quiet_hours_held_total",
        "dispatcher_claim_reads_total",
        "dispatcher_pacing_violations_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    for operation in [
        "append_dead_letters",
        "move_misplaced",
        "schedule",
        "quiet_hours",
        "load_claims",
        "sort_claims",
        "journal_claims",
        "claim_messages",
        "admit",
    ] {
        metrics::counter!("dispatcher_backend_errors_total", "operation" => operation).absolute(0);
    }
    metrics::counter!("dispatcher_store_errors_total", "operation" => "apply_status").absolute(0);
    metrics::counter!("dispatcher_log_errors_total", "operation" => "publish_status").absolute(0);
    for refusal in Refusal::ALL {
        metrics::counter!("dispatcher_refusals_total", "reason" => refusal.code()).absolute(0);
    }
    for status in MessageStatus::ALL
        .into_iter()
        .filter(|status| *status != MessageStatus::Queued)
    {
        metrics::counter!("dispatcher_status_changes_total", "status" => status.as_str()).absolute(0);
    }
    for (channel, provider) in [
        (Channel::Sms, "twilio"),
        (Channel::Whatsapp, "twilio"),
        (Channel::Email, "ses"),
        (Channel::Sms, "demo"),
        (Channel::Whatsapp, "demo"),
        (Channel::Email, "demo"),
    ] {
        for outcome in SEND_OUTCOMES {
            metrics::counter!("dispatcher_messages_total", "channel" => channel.as_str(), "provider" => provider, "outcome" => outcome)
                .absolute(0);
        }
    }
    for gauge in [
        "dispatcher_in_progress_messages",
        "dispatcher_queued_messages",
        "dispatcher_in_flight_requests",
        "dispatcher_paced_senders",
        "dispatcher_quotas_near_limit",
    ] {
        metrics::gauge!(gauge).set(0.0);
    }
}

/// The label of tenants past the limit.
const OTHER: &str = "other";

/// `dispatcher_tenant_messages_total`: a counter per tenant for the first `limit` tenants seen,
/// one shared `other` for the rest, so the series stay bounded whatever the number of tenants.
pub(crate) struct TenantCounters {
    limit: usize,
    counters: HashMap<TenantId, Counter>,
    other: Counter,
}

impl TenantCounters {
    /// Counters for at most `limit` tenants.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            counters: HashMap::new(),
            other: metrics::counter!("dispatcher_tenant_messages_total", "tenant" => OTHER),
        }
    }

    /// Counts a message of `tenant` accepted by its provider.
    pub(crate) fn sent(&mut self, tenant: &TenantId) {
        if let Some(counter) = self.counters.get(tenant) {
            counter.increment(1);
        } else if self.counters.len() < self.limit {
            let counter = metrics::counter!("dispatcher_tenant_messages_total", "tenant" => tenant.as_str().to_owned());
            counter.increment(1);
            self.counters.insert(tenant.clone(), counter);
        } else {
            self.other.increment(1);
        }
    }
}
