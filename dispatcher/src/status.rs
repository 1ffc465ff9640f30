//! The status writer: one task that batches status changes from every source, applies them to
//! the store under the forward-only rule, and publishes the ones that changed something: in
//! process (for live views) and, when configured, on the log's status-events topic.

use std::sync::Arc;
use std::time::Duration;

use common::log::{MessageLog, OutgoingRecord, Topic};
use common::store::{StatusUpdate, Store, StoreError};
use futures_util::future::BoxFuture;
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

/// Where applied changes are published, and refused ones dead-lettered.
struct Publish {
    events: broadcast::Sender<StatusUpdate>,
    topic: Option<Arc<dyn MessageLog>>,
    dead_letters: Option<Arc<dyn MessageLog>>,
}

impl StatusWriter {
    /// Starts the writer; changes that took effect are published on `events` and, when
    /// `topic` is given, appended to that log's status-events topic; changes the store refuses
    /// for good go to `dead_letters`' dead-letter topic with the reason.
    pub fn start(
        store: Arc<dyn Store>,
        events: broadcast::Sender<StatusUpdate>,
        topic: Option<Arc<dyn MessageLog>>,
        dead_letters: Option<Arc<dyn MessageLog>>,
        tracker: &TaskTracker,
    ) -> Self {
        let (queue, submissions) = mpsc::channel(1024);
        tracker.spawn(run(
            store,
            submissions,
            Publish {
                events,
                topic,
                dead_letters,
            },
        ));
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
impl common::store::StatusSink for StatusWriter {
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
        let (applied, refused) = apply_with_retry(|batch| store.apply_status(batch), &updates).await;
        if !refused.is_empty() {
            metrics::counter!("dispatcher_dead_letters_total").increment(refused.len() as u64);
            let records: Vec<OutgoingRecord> = refused
                .iter()
                .map(|(update, reason)| refused_record(update, reason))
                .collect();
            match &publish.dead_letters {
                Some(log) => publish_with_retry(log.as_ref(), Topic::DeadLetters, records).await,
                None => tracing::error!(
                    count = records.len(),
                    "status changes refused by the store, and no log to dead-letter them"
                ),
            }
        }
        metrics::histogram!("dispatcher_status_batch_messages").record(updates.len() as f64);
        let changed: Vec<StatusUpdate> = updates
            .into_iter()
            .zip(applied)
            .filter_map(|(update, changed)| changed.then_some(update))
            .collect();
        if let Some(log) = &publish.topic {
            publish_with_retry(log.as_ref(), Topic::StatusEvents, event_records(&changed)).await;
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
/// nothing is dropped and nothing is acknowledged until it is written. A permanent error (data
/// the store refuses, which no retry fixes) is not retried: the batch is applied one update at
/// a time, and each update the store refuses for good is answered `false` and returned with
/// the reason, for the dead-letter topic.
async fn apply_with_retry<'a, F>(apply: F, updates: &'a [StatusUpdate]) -> (Vec<bool>, Vec<(StatusUpdate, String)>)
where
    F: Fn(&'a [StatusUpdate]) -> BoxFuture<'a, Result<Vec<bool>, StoreError>>,
{
    match apply_transient(&apply, updates).await {
        Ok(applied) => (applied, Vec::new()),
        Err(_) if updates.len() > 1 => {
            let (mut applied, mut refused) = (Vec::with_capacity(updates.len()), Vec::new());
            for update in updates {
                match apply_transient(&apply, std::slice::from_ref(update)).await {
                    Ok(one) => applied.push(one.first().copied().unwrap_or(false)),
                    Err(error) => {
                        applied.push(false);
                        refused.push((update.clone(), error.to_string()));
                    }
                }
            }
            (applied, refused)
        }
        Err(error) => (
            vec![false; updates.len()],
            updates.iter().map(|u| (u.clone(), error.to_string())).collect(),
        ),
    }
}

/// Applies `updates`, retrying while the error is transient; answers a permanent error.
async fn apply_transient<'a, F>(apply: &F, updates: &'a [StatusUpdate]) -> Result<Vec<bool>, StoreError>
where
    F: Fn(&'a [StatusUpdate]) -> BoxFuture<'a, Result<Vec<bool>, StoreError>>,
{
    let mut backoff = Duration::from_millis(50);
    loop {
        match apply(updates).await {
            Ok(applied) => return Ok(applied),
            Err(err @ (StoreError::Invalid(_) | StoreError::Conflict(_))) => {
                metrics::counter!("dispatcher_store_errors_total", "operation" => "apply_status").increment(1);
                tracing::error!(error = %err, updates = updates.len(), "status write refused for good");
                return Err(err);
            }
            Err(err) => {
                metrics::counter!("dispatcher_store_errors_total", "operation" => "apply_status").increment(1);
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "status write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A status change the store refused for good, as a dead-letter record: JSON, keyed by tenant.
fn refused_record(update: &StatusUpdate, reason: &str) -> OutgoingRecord {
    let body = serde_json::json!({
        "error": { "code": "status_refused_by_store", "message": reason },
        "source": "status_writer",
        "status_change": StatusEvent::of(update),
    });
    OutgoingRecord {
        key: update.tenant_id.as_str().as_bytes().to_vec(),
        payload: serde_json::to_vec(&body).expect("JSON always encodes"),
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

impl<'a> StatusEvent<'a> {
    /// The event of one status change.
    pub fn of(update: &'a StatusUpdate) -> Self {
        Self {
            tenant_id: update.tenant_id.as_str(),
            message_id: update.message_id.as_str(),
            status: update.status.as_str(),
            at: update.at,
            reason: update.reason.as_deref(),
            provider_message_id: update.provider_message_id.as_deref(),
        }
    }
}

/// A batch of status changes as status-events records: JSON, keyed by tenant.
pub fn event_records(changed: &[StatusUpdate]) -> Vec<OutgoingRecord> {
    changed
        .iter()
        .map(|update| OutgoingRecord {
            key: update.tenant_id.as_str().as_bytes().to_vec(),
            payload: serde_json::to_vec(&StatusEvent::of(update)).expect("a status event always encodes"),
        })
        .collect()
}

/// Appends records to `topic` (status events, dead letters), retrying while the log is
/// unavailable.
async fn publish_with_retry(log: &dyn MessageLog, topic: Topic, records: Vec<OutgoingRecord>) {
    if records.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(50);
    while let Err(err) = log.append(topic, records.clone()).await {
        metrics::counter!("dispatcher_log_errors_total", "operation" => "publish_status").increment(1);
        tracing::warn!(error = %err, %topic, retry_in_ms = backoff.as_millis() as u64, "status writer append failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use common::status::MessageStatus;
    use common::{MessageId, TenantId};
    use time::OffsetDateTime;

    use super::*;

    fn update(id: &str) -> StatusUpdate {
        StatusUpdate {
            tenant_id: TenantId::parse("acme").unwrap(),
            message_id: MessageId::parse(id).unwrap(),
            status: MessageStatus::Delivered,
            at: OffsetDateTime::now_utc(),
            reason: None,
            provider_message_id: None,
            held: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_is_set_aside_and_the_rest_is_applied() {
        // The store is down twice, then refuses m-2 for good whenever it is in the batch.
        let calls = Mutex::new(0_u32);
        let apply = |batch: &[StatusUpdate]| -> BoxFuture<'_, Result<Vec<bool>, StoreError>> {
            let mut calls = calls.lock().unwrap();
            *calls += 1;
            let answer = if *calls <= 2 {
                Err(StoreError::Backend("down".to_owned()))
            } else if batch.iter().any(|u| u.message_id.as_str() == "m-2") {
                Err(StoreError::Invalid("refused".to_owned()))
            } else {
                Ok(vec![true; batch.len()])
            };
            Box::pin(async move { answer })
        };
        let (applied, refused) = apply_with_retry(apply, &[update("m-1"), update("m-2"), update("m-3")]).await;
        assert_eq!(applied, [true, false, true]);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0.message_id.as_str(), "m-2");
        assert!(refused[0].1.contains("refused"));
        let record: serde_json::Value =
            serde_json::from_slice(&refused_record(&refused[0].0, &refused[0].1).payload).unwrap();
        assert_eq!(record["error"]["code"], "status_refused_by_store");
        assert_eq!(record["status_change"]["message_id"], "m-2");
    }
}
