//! The status writer: one task that batches status changes from every source, applies them to
//! the store under the forward-only rule, and publishes the ones that changed something.

use std::time::Duration;

use common::store::{StatusUpdate, Store};
use std::sync::Arc;
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

impl StatusWriter {
    /// Starts the writer; changes that took effect are published on `events`.
    pub fn start(store: Arc<dyn Store>, events: broadcast::Sender<StatusUpdate>, tracker: &TaskTracker) -> Self {
        let (queue, submissions) = mpsc::channel(1024);
        tracker.spawn(run(store, submissions, events));
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

async fn run(
    store: Arc<dyn Store>,
    mut submissions: mpsc::Receiver<Submission>,
    events: broadcast::Sender<StatusUpdate>,
) {
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
        metrics::histogram!("dispatcher_status_batch_size").record(updates.len() as f64);
        for (update, changed) in updates.into_iter().zip(applied) {
            if changed {
                metrics::counter!("dispatcher_status_changes_total", "status" => update.status.as_str()).increment(1);
                let _ = events.send(update);
            }
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
