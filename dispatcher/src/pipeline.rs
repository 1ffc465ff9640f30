//! The dispatch loop: poll a batch from the log, parse, claim, admit, send, record the outcome
//! durably, and only then commit the batch's offsets.
//!
//! The walk of one batch:
//! 1. parse each record (simd-json); a malformed one goes to the dead-letter topic with its reason;
//! 2. claim every message id in the store (insert-if-absent): a message already past `queued`
//!    is a redelivery and is never sent again;
//! 3. admit: tenant known and active, scheduled sends, expiry, suppression, a provider for the
//!    channel; every refusal is a terminal status with a stable reason code;
//! 4. send the admitted messages through their provider, in batches;
//! 5. write every outcome through the status writer and wait until it is durable;
//! 6. commit, per partition, the offset after the batch's last record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use common::config::DispatcherSettings;
use common::envelope::Content;
use common::log::{ConsumerEvent, LogConsumer, LogError, MessageLog, Offset, OutgoingRecord, Partition, Record, Topic};
use common::segments::count_segments;
use common::store::{Claim, NewMessage, StatusUpdate, Store, StoreError, Tenant, TenantStatus};
use common::{Channel, Envelope, EnvelopeError, MessageStatus, TenantId};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::provider::{OutboundMessage, Provider, SendOutcome};
use crate::status::{StatusWriter, StatusWriterStopped};

/// Why the dispatch loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The message log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The status writer stopped.
    #[error(transparent)]
    Status(#[from] StatusWriterStopped),
}

/// A stable reason code for a message refused at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant does not exist.
    TenantUnknown,
    /// The tenant is suspended.
    TenantSuspended,
    /// The recipient is on the tenant's suppression list.
    RecipientSuppressed,
    /// The message expired before it could be sent.
    Expired,
    /// The channel has no provider ready for this tenant.
    ChannelNotReady,
    /// `not_before` lies in the future and this build does not defer messages yet.
    ScheduledSendUnsupported,
}

impl Refusal {
    /// The stable code stored as the status reason.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::TenantUnknown => "TENANT_UNKNOWN",
            Refusal::TenantSuspended => "TENANT_SUSPENDED",
            Refusal::RecipientSuppressed => "RECIPIENT_SUPPRESSED",
            Refusal::Expired => "EXPIRED",
            Refusal::ChannelNotReady => "CHANNEL_NOT_READY",
            Refusal::ScheduledSendUnsupported => "SCHEDULED_SEND_UNSUPPORTED",
        }
    }

    /// The terminal status the refusal ends in.
    pub fn status(self) -> MessageStatus {
        match self {
            Refusal::RecipientSuppressed => MessageStatus::Suppressed,
            Refusal::Expired => MessageStatus::Expired,
            _ => MessageStatus::Rejected,
        }
    }
}

/// Which provider serves which tenant and channel.
#[derive(Clone)]
pub struct Providers {
    /// The simulated provider every demo tenant uses.
    pub demo: Arc<dyn Provider>,
}

impl Providers {
    /// The provider for `tenant` on `channel`, if one is ready.
    fn for_tenant(&self, tenant: &Tenant, _channel: Channel) -> Option<&Arc<dyn Provider>> {
        tenant.is_demo.then_some(&self.demo)
    }
}

/// Consumes the message log and dispatches what it reads.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    log: Arc<dyn MessageLog>,
    providers: Providers,
    status: StatusWriter,
    settings: DispatcherSettings,
}

impl Dispatcher {
    /// Assembles a dispatcher.
    pub fn new(
        store: Arc<dyn Store>,
        log: Arc<dyn MessageLog>,
        providers: Providers,
        status: StatusWriter,
        settings: DispatcherSettings,
    ) -> Self {
        Self {
            store,
            log,
            providers,
            status,
            settings,
        }
    }

    /// Runs until `cancel` fires; the batch in hand is finished and committed first.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), DispatchError> {
        let mut consumer = self
            .log
            .consumer(Topic::Messages, &self.settings.consumer_group)
            .await?;
        tracing::info!(group = %self.settings.consumer_group, "dispatcher consuming");
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => break,
                event = consumer.poll(self.settings.poll_batch, self.settings.poll_wait()) => event?,
            };
            match event {
                ConsumerEvent::Assigned(partitions) => tracing::info!(?partitions, "partitions assigned"),
                ConsumerEvent::Revoked(partitions) => tracing::info!(?partitions, "partitions revoked"),
                ConsumerEvent::Records(records) if records.is_empty() => {}
                ConsumerEvent::Records(records) => self.dispatch_batch(records, consumer.as_mut()).await?,
            }
        }
        tracing::info!("dispatcher stopped");
        Ok(())
    }

    async fn dispatch_batch(&self, records: Vec<Record>, consumer: &mut dyn LogConsumer) -> Result<(), DispatchError> {
        let started = std::time::Instant::now();
        let commit = next_offsets(&records);
        let count = records.len();
        let mut dead_letters = Vec::new();
        let mut envelopes = Vec::with_capacity(records.len());
        for record in records {
            match parse_record(record) {
                Ok(envelope) => envelopes.push(envelope),
                Err(dead) => dead_letters.push(dead),
            }
        }
        if !dead_letters.is_empty() {
            metrics::counter!("dispatcher_dead_letters_total").increment(dead_letters.len() as u64);
            self.log.append(Topic::DeadLetters, dead_letters).await?;
        }
        let updates = self.dispatch_envelopes(envelopes).await?;
        self.status.apply(updates).await?;
        consumer.commit(&commit).await?;
        metrics::histogram!("dispatcher_batch_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("dispatcher_records_total").increment(count as u64);
        Ok(())
    }

    /// Claims, admits and sends; returns every status change to record.
    async fn dispatch_envelopes(&self, envelopes: Vec<Envelope>) -> Result<Vec<StatusUpdate>, DispatchError> {
        let now = OffsetDateTime::now_utc();
        let claims = self
            .store
            .claim_messages(&envelopes.iter().map(|e| new_message(e, now)).collect::<Vec<_>>())
            .await?;
        let mut fresh = Vec::with_capacity(envelopes.len());
        let mut taken = HashSet::with_capacity(envelopes.len());
        for (envelope, claim) in envelopes.into_iter().zip(claims) {
            // A message still `queued` was claimed by a run that stopped before its outcome was
            // durable: it is dispatched again, once, even if the batch holds it twice.
            let first_in_batch = taken.insert((envelope.tenant_id.clone(), envelope.message_id.clone()));
            let unfinished = matches!(claim, Claim::New | Claim::Existing(MessageStatus::Queued));
            if unfinished && first_in_batch {
                fresh.push(envelope);
            } else {
                tracing::debug!(message_id = %envelope.message_id, ?claim, "redelivered message skipped");
                metrics::counter!("dispatcher_duplicates_total").increment(1);
            }
        }
        let tenants = self.tenants_of(&fresh).await?;
        let suppressed = self.suppressed_among(&fresh).await?;
        let mut updates = Vec::with_capacity(fresh.len());
        let mut by_provider: BTreeMap<&'static str, (Arc<dyn Provider>, Vec<OutboundMessage>)> = BTreeMap::new();
        for envelope in fresh {
            let tenant = tenants.get(&envelope.tenant_id).and_then(Option::as_ref);
            let provider = tenant.and_then(|tenant| self.providers.for_tenant(tenant, envelope.channel));
            let refusal = admit(&envelope, tenant, provider.is_some(), &suppressed, now);
            match (refusal, provider) {
                (None, Some(provider)) => {
                    let segments = segments_of(&envelope);
                    by_provider
                        .entry(provider.name())
                        .or_insert_with(|| (Arc::clone(provider), Vec::new()))
                        .1
                        .push(OutboundMessage { envelope, segments });
                }
                (refusal, _) => {
                    let refusal = refusal.unwrap_or(Refusal::ChannelNotReady);
                    metrics::counter!("dispatcher_messages_total", "channel" => envelope.channel.as_str(), "outcome" => refusal.code())
                        .increment(1);
                    updates.push(update(
                        &envelope,
                        refusal.status(),
                        Some(refusal.code().to_owned()),
                        None,
                        now,
                    ));
                }
            }
        }
        for (name, (provider, batch)) in by_provider {
            let outcomes = provider.send(&batch).await;
            debug_assert_eq!(outcomes.len(), batch.len(), "providers answer once per message");
            let sent_at = OffsetDateTime::now_utc();
            for (message, outcome) in batch.iter().zip(outcomes) {
                let envelope = &message.envelope;
                let (status, reason, provider_id, label) = match outcome {
                    SendOutcome::Accepted { provider_message_id } => {
                        (MessageStatus::Sent, None, Some(provider_message_id), "sent")
                    }
                    SendOutcome::Failed { code } => (MessageStatus::Failed, Some(code), None, "failed"),
                    SendOutcome::Unknown { reason } => (MessageStatus::Unknown, Some(reason), None, "unknown"),
                };
                metrics::counter!("dispatcher_messages_total", "channel" => envelope.channel.as_str(), "outcome" => label, "provider" => name)
                    .increment(1);
                updates.push(update(envelope, status, reason, provider_id, sent_at));
            }
        }
        Ok(updates)
    }

    async fn tenants_of(&self, envelopes: &[Envelope]) -> Result<HashMap<TenantId, Option<Tenant>>, StoreError> {
        let mut tenants = HashMap::new();
        for envelope in envelopes {
            if !tenants.contains_key(&envelope.tenant_id) {
                let tenant = self.store.tenant(&envelope.tenant_id).await?;
                tenants.insert(envelope.tenant_id.clone(), tenant);
            }
        }
        Ok(tenants)
    }

    /// The suppressed (tenant, address) pairs among the batch's recipients.
    async fn suppressed_among(&self, envelopes: &[Envelope]) -> Result<HashMap<TenantId, Vec<String>>, StoreError> {
        let mut recipients: HashMap<&TenantId, Vec<String>> = HashMap::new();
        for envelope in envelopes {
            recipients
                .entry(&envelope.tenant_id)
                .or_default()
                .push(envelope.to.to_string());
        }
        let mut suppressed = HashMap::new();
        for (tenant, addresses) in recipients {
            let found = self.store.suppressed_among(tenant, &addresses).await?;
            if !found.is_empty() {
                suppressed.insert(tenant.clone(), found);
            }
        }
        Ok(suppressed)
    }
}

/// Admission checks, in order; `None` when the message may be sent.
fn admit(
    envelope: &Envelope,
    tenant: Option<&Tenant>,
    has_provider: bool,
    suppressed: &HashMap<TenantId, Vec<String>>,
    now: OffsetDateTime,
) -> Option<Refusal> {
    let Some(tenant) = tenant else {
        return Some(Refusal::TenantUnknown);
    };
    if tenant.status == TenantStatus::Suspended {
        return Some(Refusal::TenantSuspended);
    }
    if !has_provider {
        return Some(Refusal::ChannelNotReady);
    }
    let is_suppressed = suppressed
        .get(&envelope.tenant_id)
        .is_some_and(|addresses| addresses.iter().any(|address| address == envelope.to.as_str()));
    if is_suppressed {
        return Some(Refusal::RecipientSuppressed);
    }
    if envelope.is_expired(now) {
        return Some(Refusal::Expired);
    }
    if envelope.not_before.is_some_and(|not_before| not_before > now) {
        return Some(Refusal::ScheduledSendUnsupported);
    }
    None
}

fn segments_of(envelope: &Envelope) -> u32 {
    match (&envelope.content, envelope.channel) {
        (Content::Body(body), Channel::Sms) => count_segments(body).segments,
        _ => 1,
    }
}

fn new_message(envelope: &Envelope, now: OffsetDateTime) -> NewMessage {
    NewMessage {
        tenant_id: envelope.tenant_id.clone(),
        message_id: envelope.message_id.clone(),
        campaign_id: envelope.campaign_id.clone(),
        channel: envelope.channel,
        recipient: envelope.to.to_string(),
        priority: envelope.priority,
        segments: segments_of(envelope),
        accepted_at: now,
    }
}

fn update(
    envelope: &Envelope,
    status: MessageStatus,
    reason: Option<String>,
    provider_message_id: Option<String>,
    at: OffsetDateTime,
) -> StatusUpdate {
    StatusUpdate {
        tenant_id: envelope.tenant_id.clone(),
        message_id: envelope.message_id.clone(),
        status,
        at,
        reason,
        provider_message_id,
    }
}

/// Per partition, the offset after the last record of the batch.
fn next_offsets(records: &[Record]) -> Vec<(Partition, Offset)> {
    let mut next: BTreeMap<Partition, Offset> = BTreeMap::new();
    for record in records {
        let entry = next.entry(record.partition).or_default();
        *entry = (*entry).max(record.offset + 1);
    }
    next.into_iter().collect()
}

/// Parses a record, or builds its dead-letter record.
fn parse_record(record: Record) -> Result<Envelope, OutgoingRecord> {
    let parsed = Envelope::parse(&record.payload).and_then(|envelope| {
        if envelope.tenant_id.as_str().as_bytes() == record.key.as_slice() {
            Ok(envelope)
        } else {
            Err(EnvelopeError::Field {
                field: "tenant_id".to_owned(),
                reason: "does not match the record key the log partitioned it by".to_owned(),
            })
        }
    });
    parsed.map_err(|err| {
        tracing::warn!(partition = record.partition, offset = record.offset, code = err.code(), error = %err, "malformed record sent to the dead-letter topic");
        dead_letter(&record, &err)
    })
}

/// A dead-letter record: the reason, where the record came from, and its bytes.
fn dead_letter(record: &Record, err: &EnvelopeError) -> OutgoingRecord {
    let mut body = serde_json::json!({
        "error": { "code": err.code(), "message": err.to_string(), "field": err.field() },
        "source": { "topic": Topic::Messages.name(), "partition": record.partition, "offset": record.offset },
    });
    match std::str::from_utf8(&record.payload) {
        Ok(text) => body["payload"] = serde_json::Value::from(text),
        Err(_) => body["payload_hex"] = serde_json::Value::from(hex_encode(&record.payload)),
    }
    OutgoingRecord {
        key: record.key.clone(),
        payload: serde_json::to_vec(&body).expect("JSON always encodes"),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
