//! Campaigns held until their channel is ready (`POST /v1/campaigns/{id}/send` with
//! `when_not_ready: "hold"`): their messages wait in the store, each as the envelope it will
//! be, and a background task looks at the held campaigns every `admin.held_release_interval_ms`.
//! A campaign whose channel is ready (credentials verified; for SMS the brand approved and a
//! number active) is released: its messages are appended to the log a page at a time, each page
//! forgotten once appended, and the release audited. A crash between the two appends a page
//! again, which the dispatcher's claims send once; so does a second admin API releasing the
//! same campaign. A suspended tenant's campaigns stay held.

use std::sync::Arc;
use std::time::Duration;

use common::log::{LogError, MessageLog, OutgoingRecord, Topic};
use common::readiness;
use common::store::{Store, StoreError, TenantStatus};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Held campaigns looked at per round.
const CAMPAIGNS_PER_ROUND: usize = 1_000;
/// Messages appended per log append.
const PAGE: usize = 1_000;

/// Why a release round (of held campaigns, or of scheduled messages) stopped early; the next
/// round tries again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReleaseError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Releases held campaigns whose channel is ready, every `interval`, until `stop`.
pub(crate) async fn run(store: Arc<dyn Store>, log: Arc<dyn MessageLog>, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = release_ready(store.as_ref(), log.as_ref()).await {
            tracing::warn!(%error, "releasing held campaigns failed; retried at the next round");
        }
    }
}

/// One round: releases every held campaign whose channel is ready now; answers how many
/// messages went to the log.
pub(crate) async fn release_ready(store: &dyn Store, log: &dyn MessageLog) -> Result<usize, ReleaseError> {
    let mut released = 0;
    for (tenant_id, campaign, channel) in store.held_campaigns(CAMPAIGNS_PER_ROUND).await? {
        // A deleted tenant's held messages went with it.
        let Some(tenant) = store.tenant(&tenant_id).await? else {
            continue;
        };
        if tenant.status == TenantStatus::Suspended
            || (!tenant.is_demo && readiness::check(store, &tenant, channel).await?.is_err())
        {
            continue;
        }
        let mut messages = 0;
        loop {
            let page = store.held_messages(&tenant_id, &campaign, channel, PAGE).await?;
            if page.is_empty() {
                break;
            }
            let records = page
                .iter()
                .map(|held| OutgoingRecord::for_tenant(&tenant_id, held.envelope.clone()))
                .collect();
            log.append(Topic::Messages, records).await?;
            let ids: Vec<_> = page.into_iter().map(|held| held.message_id).collect();
            store.release_held(&tenant_id, &campaign, channel, &ids).await?;
            messages += ids.len();
        }
        crate::audit::append(
            store,
            &tenant_id,
            "system",
            "campaign.released",
            json!({ "campaign_id": campaign, "channel": channel, "messages": messages }),
        )
        .await?;
        tracing::info!(tenant = %tenant_id, %campaign, %channel, messages, "held campaign released");
        metrics::counter!("admin_held_messages_released_total").increment(messages as u64);
        released += messages;
    }
    Ok(released)
}
