//! Message submission and status: `POST /v1/messages`, `GET /v1/messages/{id}` (a message
//! still in the schedule answers `queued` with `scheduled_for`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError, KEYWORD_REPLY_TAG};
use common::log::{OutgoingRecord, Topic};
use common::store::{HeldMessage, MessageRecord, ScheduledMessage, StatusChange};
use common::{CampaignId, Channel, MessageId, MessageStatus};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::TenantCaller;
use crate::error::ApiError;

/// The most envelopes one request may carry.
pub(crate) const MAX_BATCH: usize = 1_000;

crate::openapi::body!(
    /// `POST /v1/messages` body.
    SubmitRequest => crate::openapi::submit(MAX_BATCH)
);

/// A 422 answer of a submission: every envelope rejected (each with its reason), or the request
/// itself invalid.
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum SubmitRejection {
    /// Every envelope was rejected.
    AllRejected(SubmitResponse),
    /// The request is invalid (`messages` missing, empty or too long).
    Invalid(crate::error::ErrorBody<'static>),
}

/// The answer for one submitted envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SubmitResult {
    /// Its position in the request.
    pub index: usize,
    /// Its message id (generated when the envelope had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `accepted`, `held` (kept until its channel is ready: a campaign sent with
    /// `when_not_ready: "hold"`), `duplicate` (a message with this id exists already: nothing is
    /// sent again) or `rejected`.
    pub status: &'static str,
    /// The status of the message already stored under this id (`duplicate` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_status: Option<MessageStatus>,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SubmitError>,
}

/// Why one envelope was rejected.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SubmitError {
    /// A stable code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// The offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The answer to a submission.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SubmitResponse {
    /// How many were accepted (appended to the log).
    pub accepted: usize,
    /// How many were held until their channel is ready (campaigns only).
    pub held: usize,
    /// How many carry the id of a message that exists already (not appended: sent at most once).
    pub duplicates: usize,
    /// How many were rejected.
    pub rejected: usize,
    /// What the channel needs before held messages go (`WAIT_FOR_APPROVAL`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<&'static str>,
    /// One result per envelope, in request order.
    pub results: Vec<SubmitResult>,
}

/// Where the new envelopes of a submission go.
pub(crate) enum Destination {
    /// Appended to the log, to be sent.
    Log,
    /// Held in the store until the campaign's channel is ready (`held`).
    Hold {
        /// The campaign.
        campaign: CampaignId,
        /// The channel that is not ready.
        channel: Channel,
        /// What it needs first.
        next_action: &'static str,
    },
}

/// 402 unless the tenant's subscription is active and its plan (if any) exists: sending routes
/// refuse up front rather than accept messages the dispatcher would refuse one by one.
pub(crate) async fn ensure_may_send(
    state: &AppState,
    tenant: &common::TenantId,
) -> Result<common::store::Tenant, ApiError> {
    let payment_required = |code, message: &str| ApiError::new(StatusCode::PAYMENT_REQUIRED, code, message);
    let Some(tenant) = state.store.tenant(tenant).await? else {
        return Err(ApiError::unauthorized());
    };
    if tenant.status == common::store::TenantStatus::Suspended {
        return Err(payment_required(
            "subscription_inactive",
            "the subscription is inactive; sending is paused until it is reactivated",
        ));
    }
    if let Some(plan) = &tenant.plan_id
        && state.store.plan(plan).await?.is_none()
    {
        return Err(payment_required(
            "plan_inactive",
            "the tenant's plan no longer exists; choose a plan to send again",
        ));
    }
    Ok(tenant)
}

/// `POST /v1/messages`: `{"messages": [envelope, ...]}`. Each envelope is validated on its own;
/// `version` and `tenant_id` may be left out (the key's tenant is used), `message_id` too (one is
/// generated, but then a retried request sends twice: give your own for idempotency). An
/// envelope whose id exists already is answered `duplicate` with its current status.
#[utoipa::path(
    operation_id = "messages_submit",
    post,
    path = "/v1/messages",
    tag = "messages",
    request_body(content = SubmitRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "at least one envelope was accepted or exists already; each is answered accepted, duplicate or rejected", body = SubmitResponse),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 402, description = "subscription_inactive or plan_inactive: sending is refused", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "every envelope was rejected (a SubmitResponse), or the request itself is invalid (an ErrorBody)", body = SubmitRejection),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn submit(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    ensure_may_send(&state, &caller.tenant_id).await?;
    let request: Value = serde_json::from_slice(&body).map_err(|err| ApiError::malformed(err.to_string()))?;
    let Value::Object(mut request) = request else {
        return Err(ApiError::malformed("the body must be a JSON object"));
    };
    if let Some(unknown) = request.keys().find(|key| *key != "messages") {
        return Err(ApiError::invalid(unknown.clone(), "unknown field"));
    }
    let Some(Value::Array(items)) = request.remove("messages") else {
        return Err(ApiError::invalid("messages", "must be an array of message envelopes"));
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "messages",
            format!("must hold 1 to {MAX_BATCH} envelopes"),
        ));
    }
    let items = items.into_iter().map(Ok).collect();
    let (status, response) = submit_envelopes(&state, &caller, items, Destination::Log).await?;
    Ok((status, Json(response)))
}

/// Validates each envelope on its own and appends the valid ones to the log in one append (or
/// holds them in one store write): 202 when at least one was accepted, held or found to exist
/// already, else 422. An envelope whose id is already claimed is answered `duplicate` with the
/// stored status and not appended; one read per id, and when that read fails the envelope is
/// appended anyway (the dispatcher's claim still sends each id at most once).
pub(crate) async fn submit_envelopes(
    state: &AppState,
    caller: &TenantCaller,
    items: Vec<Result<Value, SubmitError>>,
    destination: Destination,
) -> Result<(StatusCode, SubmitResponse), ApiError> {
    let total = items.len();
    let mut results = Vec::with_capacity(total);
    let mut valid = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item.and_then(|item| prepare(item, caller)) {
            Ok(envelope) => {
                results.push(SubmitResult {
                    index,
                    message_id: Some(envelope.message_id.to_string()),
                    status: "accepted",
                    existing_status: None,
                    error: None,
                });
                valid.push((index, envelope));
            }
            Err(error) => results.push(SubmitResult {
                index,
                message_id: None,
                status: "rejected",
                existing_status: None,
                error: Some(error),
            }),
        }
    }
    let existing = existing_statuses(state, &valid).await;
    let mut records = Vec::with_capacity(valid.len());
    let mut held = Vec::new();
    let mut duplicates = 0;
    let now = OffsetDateTime::now_utc();
    for ((index, envelope), existing) in valid.into_iter().zip(existing) {
        if let Some(status) = existing {
            results[index].status = "duplicate";
            results[index].existing_status = Some(status);
            duplicates += 1;
            continue;
        }
        match &destination {
            Destination::Log => records.push(OutgoingRecord::for_tenant(&envelope.tenant_id, envelope.to_json())),
            Destination::Hold { campaign, channel, .. } => {
                results[index].status = "held";
                held.push(HeldMessage {
                    tenant_id: envelope.tenant_id.clone(),
                    campaign_id: campaign.clone(),
                    channel: *channel,
                    message_id: envelope.message_id.clone(),
                    envelope: envelope.to_json(),
                    held_at: now,
                });
            }
        }
    }
    let (accepted, held_count) = (records.len(), held.len());
    let rejected = total - accepted - held_count - duplicates;
    if !records.is_empty() {
        state.log.append(Topic::Messages, records).await?;
    }
    if !held.is_empty() {
        state.store.hold_messages(&held).await?;
    }
    for (outcome, count) in [
        ("accepted", accepted),
        ("held", held_count),
        ("duplicate", duplicates),
        ("rejected", rejected),
    ] {
        metrics::counter!("admin_messages_submitted_total", "outcome" => outcome).increment(count as u64);
    }
    let status = if accepted + held_count + duplicates == 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::ACCEPTED
    };
    let next_action = match destination {
        Destination::Hold { next_action, .. } if held_count > 0 => Some(next_action),
        _ => None,
    };
    Ok((
        status,
        SubmitResponse {
            accepted,
            held: held_count,
            duplicates,
            rejected,
            next_action,
            results,
        },
    ))
}

/// The stored status of each envelope's id, in order (`None`: not claimed yet, or unknown
/// because the store could not be read).
async fn existing_statuses(state: &AppState, valid: &[(usize, Envelope)]) -> Vec<Option<MessageStatus>> {
    let ids: Vec<_> = valid
        .iter()
        .map(|(_, envelope)| (envelope.tenant_id.clone(), envelope.message_id.clone()))
        .collect();
    if ids.is_empty() {
        return Vec::new();
    }
    match state.store.claims(&ids).await {
        Ok(claims) => claims
            .into_iter()
            .map(|claim| claim.map(|claim| claim.status))
            .collect(),
        Err(error) => {
            tracing::warn!(%error, envelopes = ids.len(), "could not look for duplicates; appending all");
            vec![None; ids.len()]
        }
    }
}

/// Fills in what the HTTP form lets a caller leave out, then parses the envelope.
fn prepare(item: Value, caller: &TenantCaller) -> Result<Envelope, SubmitError> {
    let Value::Object(mut object) = item else {
        return Err(SubmitError {
            code: "malformed_json",
            message: "each message must be an object".into(),
            field: None,
        });
    };
    match object.get("tenant_id") {
        None => {
            object.insert("tenant_id".into(), Value::from(caller.tenant_id.as_str()));
        }
        Some(given) if given.as_str() == Some(caller.tenant_id.as_str()) => {}
        Some(_) => {
            return Err(SubmitError {
                code: "tenant_mismatch",
                message: "tenant_id must be left out or equal the API key's tenant".into(),
                field: Some("tenant_id".into()),
            });
        }
    }
    let version = object.entry("version").or_insert(Value::from(ENVELOPE_VERSION));
    // JSON Schema's `integer` admits `1.0`; the log's envelope says `1`.
    if version.as_f64() == Some(ENVELOPE_VERSION as f64) {
        *version = Value::from(ENVELOPE_VERSION);
    }
    object
        .entry("message_id")
        .or_insert_with(|| Value::from(MessageId::generate().to_string()));
    let bytes = serde_json::to_vec(&object).expect("a JSON map always encodes");
    let envelope = Envelope::parse(&bytes).map_err(|err: EnvelopeError| SubmitError {
        code: err.code(),
        message: err.to_string(),
        field: err.field().map(str::to_owned),
    })?;
    if envelope.is_keyword_reply() {
        // The tag lets a message past suppressions: only the product's own replies carry it.
        return Err(SubmitError {
            code: "invalid_field",
            message: format!("tags.{KEYWORD_REPLY_TAG}: is reserved for the replies to HELP, STOP and START"),
            field: Some(format!("tags.{KEYWORD_REPLY_TAG}")),
        });
    }
    Ok(envelope)
}

/// A message's status and history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MessageView {
    /// Its id.
    pub message_id: String,
    /// Its channel.
    pub channel: common::Channel,
    /// Its recipient.
    pub recipient: String,
    /// Its campaign.
    pub campaign_id: Option<String>,
    /// Its current status.
    pub status: MessageStatus,
    /// The reason code of the current status.
    pub reason: Option<String>,
    /// SMS segments billed (1 for other channels).
    pub segments: u32,
    /// The provider's id.
    pub provider_message_id: Option<String>,
    /// Every status it went through, oldest first.
    pub history: Vec<StatusChange>,
    /// Whether it belongs to a demo tenant (simulated, never really sent).
    pub demo: bool,
    /// When a message still waiting in the schedule is due (it is `queued` until then).
    #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_for: Option<OffsetDateTime>,
}

/// The view of a stored message.
pub(crate) fn view(record: MessageRecord, demo: bool) -> MessageView {
    MessageView {
        message_id: record.message_id.to_string(),
        channel: record.channel,
        recipient: record.recipient,
        campaign_id: record.campaign_id.map(String::from),
        status: record.status,
        reason: record.reason,
        segments: record.segments,
        provider_message_id: record.provider_message_id,
        history: record.history,
        demo,
        scheduled_for: None,
    }
}

/// The view of a message waiting in the schedule: `queued`, with no history yet.
fn scheduled_view(message: &ScheduledMessage, demo: bool) -> Result<MessageView, ApiError> {
    let envelope = message.parse_envelope()?;
    Ok(MessageView {
        message_id: envelope.message_id.to_string(),
        channel: envelope.channel,
        recipient: envelope.to.to_string(),
        campaign_id: envelope.campaign_id.map(String::from),
        status: MessageStatus::Queued,
        reason: None,
        segments: 1,
        provider_message_id: None,
        history: Vec::new(),
        demo,
        scheduled_for: Some(message.due_at),
    })
}

/// `GET /v1/messages/{id}`: the message's status and history, if it is the caller's.
#[utoipa::path(
    operation_id = "messages_get",
    get,
    path = "/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "the message id")),
    responses(
        (status = 200, description = "the message's status and history", body = MessageView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "message_not_found: no message with that id for this tenant", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    let not_found = || ApiError::not_found("message_not_found", "no message with that id for this tenant");
    let id = MessageId::parse(id).map_err(|_| not_found())?;
    let demo = state
        .store
        .tenant(&caller.tenant_id)
        .await?
        .is_some_and(|tenant| tenant.is_demo);
    match state.store.message(&caller.tenant_id, &id).await? {
        Some(record) => Ok(Json(view(record, demo))),
        None => match state.store.scheduled(&caller.tenant_id, &id).await? {
            Some(message) => Ok(Json(scheduled_view(&message, demo)?)),
            None => Err(not_found()),
        },
    }
}
