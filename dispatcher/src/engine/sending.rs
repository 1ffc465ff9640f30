//! Provider calls: released messages go out as tasks, their outcomes come back here, and
//! transient failures wait out their backoff before they are queued again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{Channel, MessageStatus};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::queues::Queued;
use super::{Engine, Meta, Timer};
use common::provider::{OutboundMessage, SendOutcome};

/// A provider call's result, back from its task.
pub(super) struct Completion {
    pub(super) account: Arc<str>,
    pub(super) provider: &'static str,
    pub(super) channel: Channel,
    pub(super) messages: Vec<OutboundMessage>,
    pub(super) metas: Vec<Meta>,
    pub(super) outcomes: Vec<SendOutcome>,
}

impl Engine {
    /// Groups released messages into provider requests and starts them.
    pub(super) fn send(&mut self, released: Vec<Queued>) {
        type GroupKey = (Arc<str>, &'static str, Channel, Option<String>);
        let mut groups: HashMap<GroupKey, Vec<Queued>> = HashMap::new();
        for queued in released {
            let provider = &queued.meta.route.provider;
            let key = (
                Arc::clone(&queued.meta.route.account),
                provider.name(),
                queued.message.envelope.channel,
                provider.batch_key(&queued.message),
            );
            groups.entry(key).or_default().push(queued);
        }
        for ((account, provider_name, channel, _), mut group) in groups {
            let provider = Arc::clone(&group[0].meta.route.provider);
            let max_batch = provider.max_batch().max(1);
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(max_batch));
                let batch = std::mem::replace(&mut group, rest);
                let (messages, metas): (Vec<OutboundMessage>, Vec<Meta>) =
                    batch.into_iter().map(|queued| (queued.message, queued.meta)).unzip();
                self.in_flight += 1;
                self.gates.accounts.entry(Arc::clone(&account)).or_default().in_flight += 1;
                for meta in &metas {
                    *self.handover.in_flight_by_partition.entry(meta.partition).or_default() += 1;
                }
                let provider = Arc::clone(&provider);
                let completions = self.completions_tx.clone();
                let account = Arc::clone(&account);
                let call_starts = self.gates.pacer.call_starts();
                tokio::spawn(async move {
                    for meta in metas.iter().filter(|meta| meta.rate.is_some()) {
                        call_starts.started(&meta.sender_key);
                    }
                    let started = Instant::now();
                    let outcomes = provider.send(&messages).await;
                    metrics::histogram!("dispatcher_provider_request_duration_seconds", "provider" => provider_name)
                        .record(started.elapsed().as_secs_f64());
                    let _ = completions.send(Completion {
                        account,
                        provider: provider_name,
                        channel,
                        messages,
                        metas,
                        outcomes,
                    });
                });
            }
        }
    }

    pub(super) fn on_completion(&mut self, completion: Completion) {
        self.in_flight -= 1;
        if let Some(account) = self.gates.accounts.get_mut(&completion.account) {
            account.in_flight -= 1;
            let blocked = std::mem::take(&mut account.blocked);
            for key in blocked {
                self.wake(&key);
            }
        }
        let Completion {
            provider,
            channel,
            messages,
            metas,
            mut outcomes,
            ..
        } = completion;
        if outcomes.len() != messages.len() {
            tracing::error!(
                provider,
                expected = messages.len(),
                got = outcomes.len(),
                "provider answered the wrong number of outcomes"
            );
            outcomes.resize(
                messages.len(),
                SendOutcome::Unknown {
                    reason: "PROVIDER_ANSWER_MISSING".to_owned(),
                },
            );
        }
        for ((message, meta), outcome) in messages.into_iter().zip(metas).zip(outcomes) {
            let label = match &outcome {
                SendOutcome::Accepted { .. } => "sent",
                SendOutcome::Transient { .. } => "transient",
                SendOutcome::Failed { .. } | SendOutcome::OptedOut { .. } => "failed",
                SendOutcome::Unknown { .. } => "unknown",
            };
            metrics::counter!("dispatcher_messages_total", "channel" => channel.as_str(), "provider" => provider, "outcome" => label)
                .increment(1);
            if label == "sent" {
                self.tenant_counters.sent(&message.envelope.tenant_id);
            }
            if let Some(count) = self.handover.in_flight_by_partition.get_mut(&meta.partition) {
                *count -= 1;
                if *count == 0 {
                    self.handover.in_flight_by_partition.remove(&meta.partition);
                }
            }
            let queued = Queued { message, meta };
            match outcome {
                SendOutcome::Accepted { provider_message_id } => {
                    self.finish(queued, MessageStatus::Sent, None, Some(provider_message_id), false);
                }
                SendOutcome::Failed { code } => self.finish(queued, MessageStatus::Failed, Some(code), None, true),
                SendOutcome::OptedOut { code } => self.finish_opted_out(queued, code),
                SendOutcome::Unknown { reason } => {
                    self.finish(queued, MessageStatus::Unknown, Some(reason), None, false)
                }
                SendOutcome::Transient { .. } if self.is_stale(&queued.meta) => self.hand_back(queued),
                SendOutcome::Transient { reason, retry_after } => self.retry(queued, &reason, retry_after),
            }
        }
        if !self.handover.pending_handovers.is_empty() {
            self.complete_handovers();
        }
    }

    pub(super) fn retry(&mut self, mut queued: Queued, reason: &str, retry_after: Option<Duration>) {
        queued.meta.attempts += 1;
        let Some(delay) = self.retry.delay(queued.meta.attempts, retry_after, &mut rand::rng()) else {
            self.finish(
                queued,
                MessageStatus::Failed,
                Some(format!("RETRIES_EXHAUSTED: {reason}")),
                None,
                true,
            );
            return;
        };
        let retry_at = OffsetDateTime::now_utc() + delay;
        if queued
            .message
            .envelope
            .expires_at
            .is_some_and(|expires_at| expires_at <= retry_at)
        {
            self.finish(queued, MessageStatus::Expired, Some("EXPIRED".to_owned()), None, true);
            return;
        }
        metrics::counter!("dispatcher_retries_total", "reason" => reason.to_owned()).increment(1);
        queued.meta.cells = 0;
        self.queues.queued += 1;
        self.timers.insert(Timer::Retry(Box::new(queued)), delay);
    }
}
