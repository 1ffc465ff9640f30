//! The status writer: one task that batches status changes from every source, applies them to
//! the store under the forward-only rule, and publishes the ones that changed something: in
//! process (for live views) and, when configured, on the log's status-events topic.

use std::sync::Arc;
use std::time::Duration;

use common::log::{MessageLog, OutgoingRecord, Topic};
use common::store::{StatusUpdate, Store, StoreError};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// The most updates applied in one store batch.
const MAX_BATCH: usize = 8_192;

/// Why statuses could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("status writer stopped before the statuses were durable")]
pub struct StatusWriterStopped;

struct Submission {
    updates: Vec<StatusUpdate>,
    durable: Option<oneshot::Sender<()>>,
}

/// A handle to the status writer task; cheap to clone. The task ends once every handle is gone
/// and its queue is drained.
#[derive(Clone)]
pub struct StatusWriter {
    queue: mpsc::Sender<Submission>,
}

/// Where applied changes are published.
struct Publish {
    events: broadcast::Sender<StatusUpdate>,
    topic: Option<Arc<dyn MessageLog>>,
}

impl StatusWriter {
    /// Starts the writer; changes that took effect are published on `events` and, when
    /// `topic` is given, appended to that log's status-events topic.
    pub fn start(
        store: Arc<dyn Store>,
        events: broadcast::Sender<StatusUpdate>,
        topic: Option<Arc<dyn MessageLog>>,
        tracker: &TaskTracker,
    ) -> Self {
        let (queue, submissions) = mpsc::channel(1024);
        tracker.spawn(run(store, submissions, Publish { events, topic }));
        Self { queue }
    }

    /// Applies `updates` and returns once they are durable in the store.
    pub async fn apply(&self, updates: Vec<StatusUpdate>) -> Result<(), StatusWriterStopped> {
        if updates.is_empty() {
            return Ok(());
        }
        let (durable, done) = oneshot::channel();
        self.queue
            .send(Submission {
                updates,
                durable: Some(durable),
            })
            .await
            .map_err(|_| StatusWriterStopped)?;
        done.await.map_err(|_| StatusWriterStopped)
    }

    /// Queues `updates` without waiting for them to be written.
    pub async fn submit(&self, updates: Vec<StatusUpdate>) {
        if self.queue.send(Submission { updates, durable: None }).await.is_err() {
            tracing::warn!("status writer stopped; dropping simulated statuses");
        }
    }
}

/// The admin API's webhooks apply provider callbacks through the writer, so that they are
/// published like every other change.
#[async_trait::async_trait]
impl admin_api::webhooks::StatusSink for StatusWriter {
    async fn apply(&self, updates: Vec<StatusUpdate>) -> Result<(), StoreError> {
        StatusWriter::apply(self, updates)
            .await
            .map_err(|StatusWriterStopped| StoreError::Backend("the status writer has stopped".to_owned()))
    }
}

async fn run(store: Arc<dyn Store>, mut submissions: mpsc::Receiver<Submission>, publish: Publish) {
    while let Some(first) = submissions.recv().await {
        let mut updates = first.updates;
        let mut waiting: Vec<oneshot::Sender<()>> = first.durable.into_iter().collect();
        while updates.len() < MAX_BATCH {
            match submissions.try_recv() {
                Ok(more) => {
                    updates.extend(more.updates);
                    waiting.extend(more.durable);
                }
                Err(_) => break,
            }
        }
        let applied = apply_with_retry(store.as_ref(), &updates).await;
        metrics::histogram!("dispatcher_status_batch_messages").record(updates.len() as f64);
        let changed: Vec<StatusUpdate> = updates
            .into_iter()
            .zip(applied)
            .filter_map(|(update, changed)| changed.then_some(update))
            .collect();
        if let Some(log) = &publish.topic {
            publish_with_retry(log.as_ref(), &changed).await;
        }
        for update in changed {
            metrics::counter!("dispatcher_status_changes_total", "status" => update.status.as_str()).increment(1);
            let _ = publish.events.send(update);
        }
        for durable in waiting {
            let _ = durable.send(());
        }
    }
}

/// Applies a batch, retrying with capped exponential backoff while the store is unavailable:
/// nothing is dropped and nothing is acknowledged until it is written.
async fn apply_with_retry(store: &dyn Store, updates: &[StatusUpdate]) -> Vec<bool> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.apply_status(updates).await {
            Ok(applied) => return applied,
            Err(err) => {
                metrics::counter!("dispatcher_store_errors_total", "operation" => "apply_status").increment(1);
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "status write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A status change as published on the status-events topic (JSON, keyed by tenant).
#[derive(Debug, Serialize)]
pub struct StatusEvent<'a> {
    /// The tenant.
    pub tenant_id: &'a str,
    /// The message.
    pub message_id: &'a str,
    /// The status it reached.
    pub status: &'a str,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// Its reason code.
    pub reason: Option<&'a str>,
    /// The provider's id for the message.
    pub provider_message_id: Option<&'a str>,
}

/// A batch of status changes as status-events records: JSON, keyed by tenant.
pub fn event_records(changed: &[StatusUpdate]) -> Vec<OutgoingRecord> {
    changed
        .iter()
        .map(|update| OutgoingRecord {
            key: update.tenant_id.as_str().as_bytes().to_vec(),
            payload: serde_json::to_vec(&StatusEvent {
                tenant_id: update.tenant_id.as_str(),
                message_id: update.message_id.as_str(),
                status: update.status.as_str(),
                at: update.at,
                reason: update.reason.as_deref(),
                provider_message_id: update.provider_message_id.as_deref(),
            })
            .expect("a status event always encodes"),
        })
        .collect()
}

/// Appends changes to the status-events topic, retrying while the log is unavailable.
async fn publish_with_retry(log: &dyn MessageLog, changed: &[StatusUpdate]) {
    if changed.is_empty() {
        return;
    }
    let records = event_records(changed);
    let mut backoff = Duration::from_millis(50);
    while let Err(err) = log.append(Topic::StatusEvents, records.clone()).await {
        metrics::counter!("dispatcher_log_errors_total", "operation" => "publish_status").increment(1);
        tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "status event publish failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
