//! The reconciliation job: every `interval`, asks the provider about messages that have sat in
//! `sent` (no delivery report came) or `unknown` (the send's answer was lost) for longer than
//! `stuck_after`, and applies what it says through the forward-only rule.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::config::ReconcileSettings;
use common::store::{ProviderKind, StatusUpdate, Store, StoreError};
use common::{Channel, MessageStatus, TenantId};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::admission::Providers;
use crate::status::StatusWriter;
use common::provider::Lookup;

/// The reason of a message failed because the provider never created it: nothing was sent,
/// and its id is taken, so sending it again takes a new message id.
pub const NEVER_CREATED: &str = "PROVIDER_NEVER_CREATED";

/// Runs the job until `cancel` fires; a run that fails is logged and retried next interval.
pub async fn run(
    store: Arc<dyn Store>,
    providers: Providers,
    status: StatusWriter,
    settings: ReconcileSettings,
    cancel: CancellationToken,
) {
    if settings.interval_secs == 0 {
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(settings.interval_secs));
    ticks.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match reconcile_once(store.as_ref(), &providers, &status, &settings).await {
            Ok(changed) => tracing::info!(changed, "reconciliation run finished"),
            Err(err) => tracing::warn!(error = %err, "reconciliation run failed"),
        }
    }
}

/// One run: returns how many messages got a new status.
pub async fn reconcile_once(
    store: &dyn Store,
    providers: &Providers,
    status: &StatusWriter,
    settings: &ReconcileSettings,
) -> Result<usize, StoreError> {
    let before = OffsetDateTime::now_utc() - Duration::from_secs(settings.stuck_after_secs);
    let stuck = store.stuck_messages(before, settings.batch).await?;
    let mut demo: HashMap<TenantId, bool> = HashMap::new();
    let mut kinds: HashMap<(TenantId, Channel), Option<ProviderKind>> = HashMap::new();
    let mut updates = Vec::new();
    for message in stuck {
        let is_demo = match demo.get(&message.tenant_id) {
            Some(known) => *known,
            None => {
                let is_demo = store
                    .tenant(&message.tenant_id)
                    .await?
                    .is_some_and(|tenant| tenant.is_demo);
                demo.insert(message.tenant_id.clone(), is_demo);
                is_demo
            }
        };
        let provider = if is_demo {
            Some(&providers.demo)
        } else {
            // The provider the tenant's channel sends through: its credentials say which.
            let key = (message.tenant_id.clone(), message.channel);
            let kind = match kinds.get(&key) {
                Some(kind) => *kind,
                None => {
                    let kind = store
                        .credentials(&message.tenant_id, message.channel)
                        .await?
                        .map(|credentials| credentials.provider);
                    kinds.insert(key, kind);
                    kind
                }
            };
            kind.and_then(|kind| providers.live.get(&kind))
        };
        let Some(provider) = provider else { continue };
        let (new_status, reason, provider_message_id) = match provider.lookup(&message).await {
            Lookup::Status(new_status, reason) => (new_status, reason, None),
            Lookup::Found {
                provider_message_id,
                status,
                reason,
            } => (status, reason, Some(provider_message_id)),
            Lookup::NeverCreated => (MessageStatus::Failed, Some(NEVER_CREATED.to_owned()), None),
            // A provider that cannot tell: the message may or may not exist there, so it stays
            // where it is for an operator rather than be failed.
            Lookup::NotFound | Lookup::Unavailable => {
                metrics::counter!("dispatcher_reconcile_unresolved_total", "status" => message.status.as_str())
                    .increment(1);
                continue;
            }
        };
        metrics::counter!("dispatcher_reconciled_total", "status" => new_status.as_str()).increment(1);
        updates.push(StatusUpdate {
            tenant_id: message.tenant_id,
            message_id: message.message_id,
            status: new_status,
            at: OffsetDateTime::now_utc(),
            reason,
            provider_message_id,
            held: None,
        });
    }
    let changed = updates
        .iter()
        .filter(|update| update.status != MessageStatus::Sent)
        .count();
    if status.apply(updates).await.is_err() {
        return Err(StoreError::Backend("the status writer stopped".to_owned()));
    }
    Ok(changed)
}
