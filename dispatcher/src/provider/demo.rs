//! The demo provider: no message leaves the machine. Each is `sent` at once, then `delivered`
//! after 3 to 5 s and, where the channel has read receipts, `read` after 5 to 10 s (ranges
//! configurable). One timer task drives every pending status; no task sleeps per message.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use common::MessageStatus;
use common::config::DemoSettings;
use common::store::{Held, MessageRecord, StatusUpdate};
use futures_util::StreamExt;
use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::time::DelayQueue;

use crate::status::StatusWriter;
use common::provider::{Lookup, OutboundMessage, Provider, SendOutcome};

/// Simulates a provider for demo tenants.
pub struct DemoProvider {
    schedule: mpsc::UnboundedSender<(Duration, StatusUpdate)>,
    delivered_after: Range<Duration>,
    read_after: Range<Duration>,
}

impl DemoProvider {
    /// Starts the provider's timer task, which hands due statuses to `status`.
    pub fn start(
        settings: &DemoSettings,
        status: StatusWriter,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let (schedule, requests) = mpsc::unbounded_channel();
        tracker.spawn(run_timers(requests, status, cancel));
        Self {
            schedule,
            delivered_after: settings.delivered_after(),
            read_after: settings.read_after(),
        }
    }
}

#[async_trait]
impl Provider for DemoProvider {
    fn name(&self) -> &'static str {
        "demo"
    }

    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut rng = rand::rng();
        batch
            .iter()
            .map(|message| {
                let provider_message_id = format!("demo-{}", uuid::Uuid::new_v4().simple());
                let envelope = &message.envelope;
                let delivered_in = rng.random_range(self.delivered_after.clone());
                let update = |status| StatusUpdate {
                    tenant_id: envelope.tenant_id.clone(),
                    message_id: envelope.message_id.clone(),
                    status,
                    at: OffsetDateTime::now_utc(),
                    reason: None,
                    provider_message_id: None,
                    // This provider has just accepted it, so these only move it up the chain
                    // (`delivered`, then `read`): written without a read, the status rows keep
                    // the forward-only order whatever arrives first.
                    held: Some(Held {
                        accepted_at: message.accepted_at,
                        campaign_id: envelope.campaign_id.clone(),
                    }),
                };
                let _ = self.schedule.send((delivered_in, update(MessageStatus::Delivered)));
                if envelope.channel.has_read_receipts() {
                    let read_in = rng
                        .random_range(self.read_after.clone())
                        .max(delivered_in + Duration::from_millis(1));
                    let _ = self.schedule.send((read_in, update(MessageStatus::Read)));
                }
                SendOutcome::Accepted { provider_message_id }
            })
            .collect()
    }

    /// A demo message that lost its simulated statuses (the process stopped before they were
    /// due) was delivered, as far as anyone can tell.
    async fn lookup(&self, message: &MessageRecord) -> Lookup {
        match message.provider_message_id {
            Some(_) => Lookup::Status(MessageStatus::Delivered, None),
            None => Lookup::NotFound,
        }
    }
}

/// Holds every pending simulated status in one delay queue and emits them when due, in
/// batches.
async fn run_timers(
    mut requests: mpsc::UnboundedReceiver<(Duration, StatusUpdate)>,
    status: StatusWriter,
    cancel: CancellationToken,
) {
    let mut pending: DelayQueue<StatusUpdate> = DelayQueue::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            request = requests.recv() => match request {
                Some((delay, update)) => { pending.insert(update, delay); }
                None => break,
            },
            Some(expired) = pending.next(), if !pending.is_empty() => {
                let mut due = vec![expired.into_inner()];
                while due.len() < 4096 {
                    match futures_util::FutureExt::now_or_never(pending.next()) {
                        Some(Some(more)) => due.push(more.into_inner()),
                        _ => break,
                    }
                }
                let now = OffsetDateTime::now_utc();
                for update in &mut due {
                    update.at = now;
                }
                status.submit(due).await;
            }
        }
    }
    if !pending.is_empty() {
        tracing::info!(
            pending = pending.len(),
            "demo provider stopping with simulated statuses still pending"
        );
    }
}
