//! Scheduled messages: the release of those the store keeps until they are due, and their
//! cancel (`DELETE /v1/messages/{id}`, `DELETE /v1/campaigns/{id}/schedule`).
//!
//! The dispatcher keeps a message whose `not_before` is near in memory and hands one due later
//! to the store's schedule, unclaimed. Every `admin.schedule_release_interval_ms` the release
//! here takes what is due by the next round (and a second more) and appends it to the log,
//! where the dispatcher claims it and holds it until its time; each page is forgotten once
//! appended. A crash between the two appends a page twice, which the claims send once.
//!
//! A cancel takes a message out of the schedule until its release has begun (the store lets one
//! of the two win, never both) and records it `canceled` with reason `CANCELED`, under a claim
//! no log record holds, so that a copy of it that still reaches the dispatcher is a duplicate.
//! A message already handed to the dispatcher cannot be canceled: 409.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::log::{MessageLog, OutgoingRecord, RecordPosition, Topic};
use common::store::{Held, NewMessage, ScheduleCancel, ScheduledMessage, StatusUpdate, Store, StoreError};
use common::{CampaignId, MessageId, MessageStatus, TenantId};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::auth::TenantCaller;
use crate::held::ReleaseError;
use crate::messages::{MessageView, view};
use crate::{ApiError, AppState};

/// Messages released, or canceled, per store call and log append.
const PAGE: usize = 1_000;
/// The reason code of a canceled message.
const CANCELED: &str = "CANCELED";

/// Releases due scheduled messages every `interval`, until `stop`.
pub(crate) async fn run(store: Arc<dyn Store>, log: Arc<dyn MessageLog>, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let due_before = OffsetDateTime::now_utc() + interval + Duration::from_secs(1);
        if let Err(error) = release_due(store.as_ref(), log.as_ref(), due_before).await {
            tracing::warn!(%error, "releasing scheduled messages failed; retried at the next round");
        }
    }
}

/// One round: appends every scheduled message due by `due_before` to the log; answers how many.
/// Messages of a deleted tenant are forgotten unsent; a suspended tenant's go, and the
/// dispatcher refuses them as it refuses the rest of its messages.
pub(crate) async fn release_due(
    store: &dyn Store,
    log: &dyn MessageLog,
    due_before: OffsetDateTime,
) -> Result<usize, ReleaseError> {
    let mut released = 0;
    let mut tenants: HashMap<TenantId, bool> = HashMap::new();
    loop {
        let page = store.due_scheduled(due_before, PAGE).await?;
        if page.is_empty() {
            break;
        }
        let mut records = Vec::with_capacity(page.len());
        for message in &page {
            let exists = match tenants.get(&message.tenant_id) {
                Some(exists) => *exists,
                None => {
                    let exists = store.tenant(&message.tenant_id).await?.is_some();
                    tenants.insert(message.tenant_id.clone(), exists);
                    exists
                }
            };
            if exists {
                records.push(OutgoingRecord::for_tenant(&message.tenant_id, message.envelope.clone()));
            }
        }
        let count = records.len();
        if count > 0 {
            log.append(Topic::Messages, records).await?;
        }
        store.forget_scheduled(&page).await?;
        metrics::counter!("admin_scheduled_messages_released_total").increment(count as u64);
        released += count;
    }
    if released > 0 {
        tracing::info!(messages = released, "scheduled messages released");
    }
    Ok(released)
}

/// `DELETE /v1/messages/{id}`: cancels a scheduled message that has not been handed to the
/// dispatcher yet; it ends `canceled`. Canceling a canceled message answers it again.
#[utoipa::path(
    operation_id = "messages_cancel",
    delete,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "the message id")),
    responses(
        (status = 200, description = "the message, now (or already) canceled", body = MessageView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "message_not_found: no message with that id for this tenant", body = crate::error::ErrorBody),
        (status = 409, description = "message_not_cancelable: the message was handed to the dispatcher already (its time came, or it was never scheduled); `status` in the message says where it stands", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn cancel_message(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let not_found = || ApiError::not_found("message_not_found", "no message with that id for this tenant");
    let id = MessageId::parse(id).map_err(|_| not_found())?;
    let store = state.store.as_ref();
    match store.cancel_scheduled(&caller.tenant_id, &id).await? {
        ScheduleCancel::Canceled(message) => {
            record_canceled(store, &[message]).await?;
            crate::audit::record(
                &state,
                &caller.tenant_id,
                &caller.key_id,
                "message.canceled",
                json!({ "message_id": id.as_str() }),
            )
            .await?;
        }
        ScheduleCancel::Releasing => {
            return Err(not_cancelable(
                "its time has come: it is being handed to the dispatcher",
            ));
        }
        ScheduleCancel::NotScheduled => {}
    }
    let record = store.message(&caller.tenant_id, &id).await?.ok_or_else(not_found)?;
    if record.status != MessageStatus::Canceled {
        return Err(not_cancelable(&format!(
            "it was handed to the dispatcher already and is {}",
            record.status
        )));
    }
    let demo = store
        .tenant(&caller.tenant_id)
        .await?
        .is_some_and(|tenant| tenant.is_demo);
    Ok(Json(view(record, demo)))
}

/// What canceling a campaign's schedule did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ScheduleCanceled {
    /// Messages taken out of the schedule: they end `canceled`.
    pub canceled: usize,
    /// Messages whose time had come while canceling: they are sent.
    pub released: usize,
}

/// `DELETE /v1/campaigns/{id}/schedule`: cancels every message of the campaign still waiting in
/// the schedule (audited as `campaign.schedule_canceled`); those already handed to the
/// dispatcher go on. Canceling again answers zero.
#[utoipa::path(
    operation_id = "campaigns_cancel_schedule",
    delete,
    path = "/v1/campaigns/{id}/schedule",
    tag = "campaigns",
    params(("id" = String, Path, description = "the campaign id: 1-128 of `A-Z a-z 0-9 _ - . :`", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses(
        (status = 200, description = "what was canceled", body = ScheduleCanceled),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: the campaign id is not valid", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn cancel_campaign(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(campaign): Path<String>,
) -> Result<(StatusCode, Json<ScheduleCanceled>), ApiError> {
    let campaign = CampaignId::parse(campaign).map_err(|error| ApiError::invalid("campaign_id", error.to_string()))?;
    let store = state.store.as_ref();
    let mut answer = ScheduleCanceled {
        canceled: 0,
        released: 0,
    };
    let mut after: Option<MessageId> = None;
    loop {
        let ids = store
            .scheduled_in_campaign(&caller.tenant_id, &campaign, after.as_ref(), PAGE)
            .await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let mut canceled = Vec::with_capacity(ids.len());
        for id in &ids {
            match store.cancel_scheduled(&caller.tenant_id, id).await? {
                ScheduleCancel::Canceled(message) => canceled.push(message),
                ScheduleCancel::Releasing => answer.released += 1,
                ScheduleCancel::NotScheduled => {}
            }
        }
        record_canceled(store, &canceled).await?;
        answer.canceled += canceled.len();
        after = Some(last);
    }
    if answer.canceled > 0 {
        crate::audit::record(
            &state,
            &caller.tenant_id,
            &caller.key_id,
            "campaign.schedule_canceled",
            json!({ "campaign_id": campaign.as_str(), "canceled": answer.canceled }),
        )
        .await?;
    }
    tracing::info!(tenant = %caller.tenant_id, %campaign, canceled = answer.canceled, "campaign schedule canceled");
    Ok((StatusCode::OK, Json(answer)))
}

fn not_cancelable(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "message_not_cancelable",
        format!("the message cannot be canceled: {why}"),
    )
}

/// Records messages taken out of the schedule as `canceled`: each claimed under no record's
/// position (a copy that still reaches the dispatcher is a duplicate there), then moved from
/// `queued`. One whose id was claimed already (sent without the schedule) keeps its status.
async fn record_canceled(store: &dyn Store, messages: &[ScheduledMessage]) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let mut claims = Vec::with_capacity(messages.len());
    for message in messages {
        let envelope = message.parse_envelope()?;
        // Never sent, never billed: one segment.
        claims.push(NewMessage::of(&envelope, 1, RecordPosition::OFF_LOG, now));
    }
    let written = store.claim_messages(&claims).await?;
    let updates: Vec<StatusUpdate> = claims
        .into_iter()
        .zip(written)
        .filter(|(_, written)| *written)
        .map(|(claim, _)| StatusUpdate {
            tenant_id: claim.tenant_id,
            message_id: claim.message_id,
            status: MessageStatus::Canceled,
            at: now,
            reason: Some(CANCELED.to_owned()),
            provider_message_id: None,
            held: Some(Held {
                accepted_at: now,
                campaign_id: claim.campaign_id,
            }),
        })
        .collect();
    store.apply_status(&updates).await?;
    Ok(())
}
