//! The dispatcher: intake from the log, the engine, the recorder, and offsets committed only
//! once outcomes are durable.
//!
//! ```text
//! log --poll--> intake --admitted--> engine --provider calls--> (tasks)
//!                 |  parse, dead-letter,          |  pacing, fairness,
//!                 |  claim, admit, reserve quota  |  retries
//!                 v                               v
//!            status writer  <------------- recorder --> offsets done --> commit
//! ```
//!
//! Intake owns the consumer: it polls, registers every offset as in progress, parses
//! (malformed records go to the dead-letter topic with their reason), claims message ids
//! (a message already past `queued` is never sent again), admits, and hands admitted messages
//! to the engine. Refusals are recorded at once. The recorder writes every outcome through the
//! status writer and, once durable, marks its offset done; intake commits the moving commit
//! points every `commit_interval`, and pauses a partition whose in-progress count passes
//! `max_in_progress_per_partition` (resuming it at half), so memory stays bounded whatever the
//! backlog: what does not fit waits in the log.
//!
//! **Rebalances** (Kafka): on `Revoked`, intake asks the engine to hand the partitions over
//! (their queued messages go back unsent, their requests in flight answer), waits until every
//! outcome of theirs is durable, commits, and only then lets the consumer give them up; the
//! next owner resumes at that commit. On `Assigned`, new partitions stay paused for
//! `assignment_hold_ms`, so that a sender's first message from the new owner keeps its
//! distance from the last one the old owner sent.
//!
//! **Store outages**: claims, admission reads and dead-letter appends are retried with capped
//! backoff while the store or log is unavailable; nothing is committed past an outcome that is
//! not durable, and the batch resumes where it stopped when the backend returns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config::DispatcherSettings;
use common::log::{
    ConsumerEvent, LogConsumer, LogError, MessageLog, Offset, OutgoingRecord, Partition, Record, RecordPosition, Topic,
    partition_for,
};
use common::store::{
    Held, NewMessage, ScheduledMessage, StatusUpdate, Store, StoreError, Suppression, SuppressionReason,
};
use common::{Envelope, EnvelopeError};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::admission::{Directory, Providers, QuotaBook, segments_of};
use crate::claims::{Candidate, ClaimBook, Verdict};
use crate::engine::{Admitted, Engine, Finished, Handover, Report};
use crate::offsets::OffsetTracker;
use crate::status::{StatusWriter, StatusWriterStopped};

/// Admitted messages waiting for the engine to take them.
const ENGINE_INBOX: usize = 8_192;
/// Finished messages recorded in one status batch at most.
const RECORD_BATCH: usize = 8_192;
/// The first wait before retrying a store or log operation that failed; it doubles up to
/// [`RETRY_CAP`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between retries of a failed store or log operation.
const RETRY_CAP: Duration = Duration::from_secs(5);

/// Why the dispatcher stopped with an error.
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
    /// The engine or the recorder stopped while partitions were being handed over.
    #[error("the engine stopped during a partition handover")]
    EngineStopped,
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

    /// Runs until `cancel` fires, then stops taking work, lets the requests in flight answer,
    /// records their outcomes and commits what is durable. Messages still queued are handed
    /// back: their offsets stay uncommitted.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), DispatchError> {
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let quota = Arc::new(QuotaBook::default());
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let (admitted_tx, admitted_rx) = mpsc::channel(ENGINE_INBOX);
        let (handovers_tx, handovers_rx) = mpsc::unbounded_channel();
        let drain = CancellationToken::new();
        // Owned here: if this future is dropped (a crash, in tests), the engine and the recorder
        // go with it.
        let mut workers = JoinSet::new();
        workers.spawn(
            Engine::new(&self.settings, reports_tx)
                .with_handovers(handovers_rx)
                .run(admitted_rx, drain.clone()),
        );
        workers.spawn(record(
            reports_rx,
            self.status.clone(),
            Arc::clone(&self.store),
            Arc::clone(&tracker),
            Arc::clone(&quota),
        ));

        let mut consumer = self
            .log
            .consumer(Topic::Messages, &self.settings.consumer_group)
            .await?;
        tracing::info!(group = %self.settings.consumer_group, "dispatcher consuming");
        let mut intake = Intake {
            directory: Directory::new(
                Arc::clone(&self.store),
                self.providers.clone(),
                self.settings.pacing.clone(),
                Arc::clone(&quota),
            ),
            store: Arc::clone(&self.store),
            log: Arc::clone(&self.log),
            status: self.status.clone(),
            tracker: Arc::clone(&tracker),
            engine: admitted_tx,
            handovers: handovers_tx,
            quota: Arc::clone(&quota),
            claims: ClaimBook::new(self.settings.claims.clone()),
            settings: self.settings.clone(),
            paused: HashSet::new(),
            held: HashMap::new(),
            cancel: cancel.clone(),
        };
        let result = intake.run(consumer.as_mut()).await;

        drop(intake);
        drain.cancel();
        while workers.join_next().await.is_some() {}
        let commits = tracker.lock().expect("offset tracker").take_commits();
        consumer.commit(&commits).await?;
        if let Err(err) = quota.flush(self.store.as_ref()).await {
            // Usage counters lag until the next start; quota is still reserved before sending.
            tracing::warn!(error = %err, "could not write the last quota changes");
        }
        tracing::info!("dispatcher stopped");
        result
    }
}

struct Intake {
    directory: Directory,
    store: Arc<dyn Store>,
    log: Arc<dyn MessageLog>,
    status: StatusWriter,
    tracker: Arc<Mutex<OffsetTracker>>,
    engine: mpsc::Sender<Admitted>,
    handovers: mpsc::UnboundedSender<Handover>,
    quota: Arc<QuotaBook>,
    /// What was claimed on each assigned partition.
    claims: ClaimBook,
    settings: DispatcherSettings,
    /// Partitions paused by backpressure.
    paused: HashSet<Partition>,
    /// Newly assigned partitions paused until the instant given.
    held: HashMap<Partition, Instant>,
    cancel: CancellationToken,
}

impl Intake {
    async fn run(&mut self, consumer: &mut dyn LogConsumer) -> Result<(), DispatchError> {
        let mut last_commit = Instant::now();
        loop {
            let event = tokio::select! {
                () = self.cancel.cancelled() => return Ok(()),
                event = consumer.poll(self.settings.poll_batch, self.settings.poll_wait()) => event?,
            };
            match event {
                ConsumerEvent::Assigned(partitions) => {
                    if !self.assign(&partitions).await {
                        return Ok(()); // stopping
                    }
                    self.hold(consumer, partitions);
                }
                ConsumerEvent::Revoked(partitions) => self.hand_over(consumer, partitions).await?,
                ConsumerEvent::Records(records) => self.take(records).await?,
            }
            if last_commit.elapsed() >= self.settings.commit_interval() {
                self.commit(consumer).await?;
                last_commit = Instant::now();
            }
            self.release_holds(consumer);
            self.apply_backpressure(consumer);
        }
    }

    /// Takes newly assigned partitions on: their claim filters are rebuilt from the journal and
    /// their tenants' quota counts read again (a previous owner spent from them). `false` when
    /// the dispatcher stops while the store is unavailable.
    async fn assign(&mut self, partitions: &[Partition]) -> bool {
        if let Err(err) = self.quota.flush(self.store.as_ref()).await {
            tracing::warn!(error = %err, "could not write quota changes before an assignment; retried at the next flush");
        }
        self.quota
            .forget_partitions(partitions, self.log.partitions(Topic::Messages));
        for &partition in partitions {
            let mut backoff = RETRY_FIRST;
            while let Err(err) = self.claims.assign(self.store.as_ref(), partition).await {
                if !back_off(&mut backoff, "load_claims", &err, &self.cancel).await {
                    return false;
                }
            }
        }
        true
    }

    /// Keeps newly assigned partitions paused for `assignment_hold_ms`.
    fn hold(&mut self, consumer: &mut dyn LogConsumer, partitions: Vec<Partition>) {
        let hold = self.settings.assignment_hold();
        tracing::info!(?partitions, hold_ms = hold.as_millis() as u64, "partitions assigned");
        if hold.is_zero() {
            return;
        }
        consumer.pause(&partitions);
        let until = Instant::now() + hold;
        self.held
            .extend(partitions.into_iter().map(|partition| (partition, until)));
    }

    /// Resumes held partitions whose hold is over, unless backpressure pauses them.
    fn release_holds(&mut self, consumer: &mut dyn LogConsumer) {
        let now = Instant::now();
        let mut over = Vec::new();
        self.held.retain(|partition, until| {
            let done = *until <= now;
            if done {
                over.push(*partition);
            }
            !done
        });
        over.retain(|partition| !self.paused.contains(partition));
        if !over.is_empty() {
            consumer.resume(&over);
        }
    }

    /// Gives revoked partitions up: the engine hands their work back and finishes what is in
    /// flight, its outcomes become durable, and what is durable is committed while the
    /// partitions are still this consumer's.
    async fn hand_over(
        &mut self,
        consumer: &mut dyn LogConsumer,
        partitions: Vec<Partition>,
    ) -> Result<(), DispatchError> {
        let started = Instant::now();
        let (done, handed_over) = oneshot::channel();
        self.handovers
            .send(Handover {
                partitions: partitions.clone(),
                done,
            })
            .map_err(|_| DispatchError::EngineStopped)?;
        handed_over.await.map_err(|_| DispatchError::EngineStopped)?;
        self.commit(consumer).await?;
        self.tracker.lock().expect("offset tracker").forget(&partitions);
        self.claims.revoke(&partitions);
        for partition in &partitions {
            self.paused.remove(partition);
            self.held.remove(partition);
        }
        if let Err(err) = self.quota.flush(self.store.as_ref()).await {
            tracing::warn!(error = %err, "could not write quota given back at a handover; retried at the next flush");
        }
        tracing::info!(
            ?partitions,
            took_ms = started.elapsed().as_millis() as u64,
            "partitions revoked and handed over"
        );
        Ok(())
    }

    /// Commits the moving commit points and reports the lag behind each partition's end.
    async fn commit(&mut self, consumer: &mut dyn LogConsumer) -> Result<(), LogError> {
        let commits = self.tracker.lock().expect("offset tracker").take_commits();
        consumer.commit(&commits).await?;
        let ends = consumer.end_offsets().await?;
        let tracker = self.tracker.lock().expect("offset tracker");
        for (partition, end) in ends {
            let lag = end.saturating_sub(tracker.commit_point(partition));
            metrics::gauge!("dispatcher_consumer_lag_messages", "partition" => partition.to_string()).set(lag as f64);
        }
        Ok(())
    }

    /// Pauses partitions with too much in progress; resumes them at half.
    fn apply_backpressure(&mut self, consumer: &mut dyn LogConsumer) {
        let high = self.settings.max_in_progress_per_partition.max(1);
        let tracker = self.tracker.lock().expect("offset tracker");
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        for partition in 0..self.log.partitions(Topic::Messages) {
            let in_progress = tracker.in_progress(partition);
            if in_progress >= high && self.paused.insert(partition) {
                pause.push(partition);
            } else if in_progress <= high / 2 && self.paused.remove(&partition) {
                resume.push(partition);
            }
        }
        metrics::gauge!("dispatcher_in_progress_messages").set(tracker.total_in_progress() as f64);
        drop(tracker);
        if !pause.is_empty() {
            tracing::info!(partitions = ?pause, "pausing partitions until their backlog drains");
            consumer.pause(&pause);
        }
        if !resume.is_empty() {
            consumer.resume(&resume);
        }
    }

    /// Parses, claims and admits a batch; hands admitted messages to the engine and records
    /// the rest.
    async fn take(&mut self, records: Vec<Record>) -> Result<(), DispatchError> {
        metrics::counter!("dispatcher_records_total").increment(records.len() as u64);
        {
            let mut tracker = self.tracker.lock().expect("offset tracker");
            for record in &records {
                tracker.start(record.partition, record.offset);
            }
        }
        let mut done = Vec::new();
        let mut dead_letters = Vec::new();
        let mut misplaced = Vec::new();
        let mut parsed = Vec::with_capacity(records.len());
        let partitions = self.log.partitions(Topic::Messages);
        let now = OffsetDateTime::now_utc();
        let in_memory_until = now + Duration::from_millis(self.settings.scheduled_in_memory_ms);
        for record in records {
            let position = (record.partition, record.offset);
            if partition_for(&record.key, partitions) != record.partition {
                misplaced.push(OutgoingRecord {
                    key: record.key,
                    payload: record.payload,
                });
                done.push(position);
                continue;
            }
            match parse_record(&record) {
                Ok(envelope) => parsed.push((position, envelope)),
                Err(dead) => {
                    dead_letters.push(dead);
                    done.push(position);
                }
            }
        }
        if !dead_letters.is_empty() {
            metrics::counter!("dispatcher_dead_letters_total").increment(dead_letters.len() as u64);
            let mut backoff = RETRY_FIRST;
            while let Err(err) = self.log.append(Topic::DeadLetters, dead_letters.clone()).await {
                if !back_off(&mut backoff, "append_dead_letters", &err, &self.cancel).await {
                    return Ok(()); // stopping: the batch stays uncommitted
                }
            }
        }

        if !misplaced.is_empty() {
            // Its tenant's owner dispatches it; a copy moved twice (a crash before the commit)
            // is a duplicate its claim catches there.
            tracing::warn!(
                records = misplaced.len(),
                "records on another partition than their key's moved there"
            );
            metrics::counter!("dispatcher_misplaced_records_total").increment(misplaced.len() as u64);
            let mut backoff = RETRY_FIRST;
            while let Err(err) = self.log.append(Topic::Messages, misplaced.clone()).await {
                if !back_off(&mut backoff, "move_misplaced", &err, &self.cancel).await {
                    return Ok(()); // stopping: the batch stays uncommitted
                }
            }
        }

        // Quiet hours move a text's `not_before` to when its window opens; what is due later
        // than the dispatcher keeps in memory waits in the store's schedule.
        let envelopes: Vec<&Envelope> = parsed.iter().map(|(_, envelope)| envelope).collect();
        let mut backoff = RETRY_FIRST;
        let holds = loop {
            match self.directory.quiet_hours(&envelopes, now).await {
                Ok(holds) => break holds,
                Err(err) if back_off(&mut backoff, "quiet_hours", &err, &self.cancel).await => {}
                Err(_) => return Ok(()),
            }
        };
        drop(envelopes);
        let mut later = Vec::new();
        let mut kept = Vec::with_capacity(parsed.len());
        for ((position, mut envelope), hold) in parsed.into_iter().zip(holds) {
            if let Some(until) = hold {
                metrics::counter!("dispatcher_quiet_hours_held_total").increment(1);
                envelope.not_before = Some(envelope.not_before.map_or(until, |due| due.max(until)));
            }
            match envelope.not_before {
                Some(due_at) if due_at > in_memory_until => {
                    later.push(ScheduledMessage {
                        envelope: envelope.to_json(),
                        tenant_id: envelope.tenant_id,
                        message_id: envelope.message_id,
                        campaign_id: envelope.campaign_id,
                        due_at,
                    });
                    done.push(position);
                }
                _ => kept.push((position, envelope)),
            }
        }
        let parsed = kept;
        if !later.is_empty() {
            // Claimed when they come back due: until then a cancel may still take them.
            let mut backoff = RETRY_FIRST;
            while let Err(err) = self.store.schedule(&later).await {
                if !back_off(&mut backoff, "schedule", &err, &self.cancel).await {
                    return Ok(()); // stopping: the batch stays uncommitted
                }
            }
            metrics::counter!("dispatcher_scheduled_total").increment(later.len() as u64);
        }

        let Some(verdicts) = self.claim(&parsed, now).await else {
            return Ok(()); // stopping: the batch stays uncommitted
        };
        let mut positions = Vec::with_capacity(parsed.len());
        let mut envelopes = Vec::with_capacity(parsed.len());
        let mut accepted = Vec::with_capacity(parsed.len());
        for ((position, envelope), verdict) in parsed.into_iter().zip(verdicts) {
            match verdict {
                Verdict::New => accepted.push(now),
                Verdict::Unfinished { accepted_at } => accepted.push(accepted_at),
                Verdict::Skip { duplicate } => {
                    tracing::debug!(tenant = %envelope.tenant_id, message_id = %envelope.message_id, duplicate, "record skipped: its message id is already claimed");
                    metrics::counter!("dispatcher_duplicates_total").increment(1);
                    done.push(position);
                    continue;
                }
            }
            positions.push(position);
            envelopes.push(envelope);
        }

        let mut backoff = RETRY_FIRST;
        let decisions = loop {
            match self.directory.admit(&envelopes, now).await {
                Ok(decisions) => break decisions,
                Err(err) if back_off(&mut backoff, "admit", &err, &self.cancel).await => {}
                Err(_) => return Ok(()),
            }
        };
        let mut refusals = Vec::new();
        let admitted_at = Instant::now();
        for ((((partition, offset), envelope), decision), accepted_at) in
            positions.into_iter().zip(envelopes).zip(decisions).zip(accepted)
        {
            match decision {
                Ok((route, quota)) => {
                    let segments = segments_of(&envelope);
                    let admitted = Admitted {
                        envelope,
                        segments,
                        partition,
                        offset,
                        route,
                        quota,
                        admitted_at,
                        accepted_at,
                    };
                    if self.engine.send(admitted).await.is_err() {
                        tracing::warn!("engine stopped; leaving the rest of the batch to a later run");
                        break;
                    }
                }
                Err(refusal) => {
                    metrics::counter!("dispatcher_refusals_total", "reason" => refusal.code()).increment(1);
                    refusals.push(StatusUpdate {
                        held: Some(Held {
                            accepted_at,
                            campaign_id: envelope.campaign_id.clone(),
                        }),
                        tenant_id: envelope.tenant_id,
                        message_id: envelope.message_id,
                        status: refusal.status(),
                        at: now,
                        reason: Some(refusal.code().to_owned()),
                        provider_message_id: None,
                    });
                    done.push((partition, offset));
                }
            }
        }
        self.status.apply(refusals).await?;
        let mut tracker = self.tracker.lock().expect("offset tracker");
        for (partition, offset) in done {
            tracker.finish(partition, offset);
        }
        Ok(())
    }
}

impl Intake {
    /// Sorts parsed records into new messages, unfinished ones read again and records to skip,
    /// journals and claims the new ones (a claim the store refuses is a duplicate): one verdict
    /// per record. `None` when the dispatcher stops while the store is unavailable.
    async fn claim(&mut self, parsed: &[((Partition, Offset), Envelope)], now: OffsetDateTime) -> Option<Vec<Verdict>> {
        let candidates: Vec<Candidate<'_>> = parsed
            .iter()
            .map(|((partition, offset), envelope)| Candidate {
                position: RecordPosition {
                    partition: *partition,
                    offset: *offset,
                },
                tenant_id: &envelope.tenant_id,
                message_id: &envelope.message_id,
            })
            .collect();
        let store = self.store.as_ref();
        let mut backoff = RETRY_FIRST;
        let mut verdicts = loop {
            match self.claims.sort(store, &candidates).await {
                Ok(verdicts) => break verdicts,
                Err(err) if back_off(&mut backoff, "sort_claims", &err, &self.cancel).await => {}
                Err(_) => return None,
            }
        };
        let new: Vec<usize> = (0..verdicts.len())
            .filter(|&index| verdicts[index] == Verdict::New)
            .collect();
        if new.is_empty() {
            return Some(verdicts);
        }
        let new_candidates: Vec<Candidate<'_>> = new.iter().map(|&index| candidates[index]).collect();
        let mut backoff = RETRY_FIRST;
        while let Err(err) = self.claims.remember(store, &new_candidates).await {
            if !back_off(&mut backoff, "journal_claims", &err, &self.cancel).await {
                return None;
            }
        }
        let messages: Vec<NewMessage> = new
            .iter()
            .map(|&index| {
                let ((partition, offset), envelope) = &parsed[index];
                NewMessage::of(
                    envelope,
                    segments_of(envelope),
                    RecordPosition {
                        partition: *partition,
                        offset: *offset,
                    },
                    now,
                )
            })
            .collect();
        let mut backoff = RETRY_FIRST;
        let written = loop {
            match store.claim_messages(&messages).await {
                Ok(written) => break written,
                Err(err) if back_off(&mut backoff, "claim_messages", &err, &self.cancel).await => {}
                Err(_) => return None,
            }
        };
        for (index, written) in new.into_iter().zip(written) {
            if !written {
                verdicts[index] = Verdict::Skip { duplicate: true };
            }
        }
        Some(verdicts)
    }
}

/// Counts and logs a failed store or log operation, then waits `backoff` (doubled for the next
/// time, up to [`RETRY_CAP`]); `false` when the dispatcher is stopping instead.
async fn back_off(
    backoff: &mut Duration,
    operation: &'static str,
    err: &(dyn std::fmt::Display + Sync),
    cancel: &CancellationToken,
) -> bool {
    metrics::counter!("dispatcher_backend_errors_total", "operation" => operation).increment(1);
    tracing::warn!(operation, error = %err, retry_in_ms = backoff.as_millis() as u64, "backend unavailable; retrying");
    let waited = tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(*backoff) => true,
    };
    *backoff = (*backoff * 2).min(RETRY_CAP);
    waited
}

/// Records the engine's reports in batches: statuses first, then (once durable) recipients the
/// provider reports unsubscribed suppressed, quota released for messages never sent, and
/// offsets marked done; barriers are answered once everything before them is recorded.
async fn record(
    mut reports: mpsc::UnboundedReceiver<Report>,
    status: StatusWriter,
    store: Arc<dyn Store>,
    tracker: Arc<Mutex<OffsetTracker>>,
    quota: Arc<QuotaBook>,
) {
    while let Some(first) = reports.recv().await {
        let mut batch = Vec::new();
        let mut barriers = Vec::new();
        let mut next = Some(first);
        while let Some(report) = next.take() {
            match report {
                Report::Finished(finished) => batch.push(finished),
                Report::HandedBack { tenant_id, quota: hold } => {
                    if let Some(hold) = hold {
                        quota.release(&tenant_id, &hold);
                    }
                }
                Report::Barrier(done) => {
                    barriers.push(done);
                    break; // recorded once this batch is
                }
            }
            if batch.len() < RECORD_BATCH {
                next = reports.try_recv().ok();
            }
        }
        record_batch(batch, &status, store.as_ref(), &tracker, &quota).await;
        for barrier in barriers {
            let _ = barrier.send(());
        }
    }
}

/// Records one batch of finished messages.
async fn record_batch(
    batch: Vec<Finished>,
    status: &StatusWriter,
    store: &dyn Store,
    tracker: &Mutex<OffsetTracker>,
    quota: &QuotaBook,
) {
    if batch.is_empty() {
        return;
    }
    let now = OffsetDateTime::now_utc();
    let updates = batch
        .iter()
        .map(|finished| StatusUpdate {
            tenant_id: finished.envelope.tenant_id.clone(),
            message_id: finished.envelope.message_id.clone(),
            status: finished.status,
            at: now,
            reason: finished.reason.clone(),
            provider_message_id: finished.provider_message_id.clone(),
            held: Some(Held {
                accepted_at: finished.accepted_at,
                campaign_id: finished.envelope.campaign_id.clone(),
            }),
        })
        .collect();
    if status.apply(updates).await.is_err() {
        tracing::warn!(
            messages = batch.len(),
            "status writer stopped; their offsets stay uncommitted"
        );
        return;
    }
    for unsubscribed in batch.iter().filter(|finished| finished.opted_out) {
        let suppression = Suppression {
            tenant_id: unsubscribed.envelope.tenant_id.clone(),
            address: unsubscribed.envelope.to.to_string(),
            reason: SuppressionReason::ProviderUnsubscribed,
            source: Some(format!(
                "provider code {} on {}",
                unsubscribed.reason.as_deref().unwrap_or_default(),
                unsubscribed.envelope.message_id
            )),
            created_at: now,
        };
        if let Err(err) = store.suppress(&suppression).await {
            // The next send to this recipient gets the same code and tries again.
            tracing::warn!(error = %err, tenant_id = %suppression.tenant_id, "could not suppress an unsubscribed recipient");
        }
    }
    let mut tracker = tracker.lock().expect("offset tracker");
    for finished in batch {
        if let Some(hold) = &finished.release {
            quota.release(&finished.envelope.tenant_id, hold);
        }
        tracker.finish(finished.partition, finished.offset);
    }
}

/// Parses a record, or builds its dead-letter record.
fn parse_record(record: &Record) -> Result<Envelope, OutgoingRecord> {
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
        dead_letter(record, &err)
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
        Err(_) => body["payload_hex"] = serde_json::Value::from(hex::encode(&record.payload)),
    }
    OutgoingRecord {
        key: record.key.clone(),
        payload: serde_json::to_vec(&body).expect("JSON always encodes"),
    }
}
