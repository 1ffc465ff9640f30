//! Campaigns: `POST /v1/campaigns/{id}/send` (one message per recipient, appended to the log)
//! and `GET /v1/campaigns/{id}/events` (live counts by status, as server-sent events).
//!
//! A campaign's message ids are derived from the campaign and the recipient, so sending the
//! same recipients again (a retried request, a second call with an overlapping list) never
//! sends anyone twice, and a campaign reaches each recipient once. A live tenant's campaign on a
//! channel that cannot send yet (brand under review, no number, ...) is refused whole with 409
//! `channel_not_ready` and the next action, rather than accepted and then refused message by
//! message; or, with `when_not_ready: "hold"`, kept in the store until the channel is ready
//! (`crate::held` releases it) and counted as `held` meanwhile.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use common::quiet_hours::{self, Zone};
use common::readiness::{self, NotReady};
use common::rules;
use common::store::Tenant;
use common::{CampaignId, Channel, MessageStatus, Recipient};
use futures_util::{Stream, StreamExt as _};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::messages::{Destination, SubmitError, SubmitResponse, ensure_may_send, submit_envelopes};
use crate::{ApiError, AppState};

/// The most recipients one send call takes (larger campaigns send in several calls).
pub(crate) const MAX_RECIPIENTS: usize = 1_000;

crate::openapi::body!(
    /// `POST /v1/campaigns/{id}/send` body.
    CampaignSendRequest => crate::openapi::campaign_send(MAX_RECIPIENTS)
);
/// How often the events stream looks for changes.
const EVENTS_INTERVAL: Duration = Duration::from_millis(500);

fn campaign_id(raw: String) -> Result<CampaignId, ApiError> {
    CampaignId::parse(raw).map_err(|error| ApiError::invalid("campaign_id", error.to_string()))
}

/// The message id of a campaign's message to `to` on `channel`.
fn message_id(campaign: &CampaignId, channel: &str, to: &str) -> String {
    let digest = Sha256::digest(format!("{campaign}\n{channel}\n{to}").as_bytes());
    format!("c:{}", &hex::encode(digest)[..32])
}

/// `POST /v1/campaigns/{id}/send`: the body holds the message's fields shared by every
/// recipient (`channel`, `from`, `priority`, `body` or `template`, `subject`, `expires_at`,
/// `tags`), `recipients`: addresses, or objects `{"to", "contact_id", "variables"}` whose
/// `variables` fill the template for that recipient, `when_not_ready`: `reject` (the default)
/// or `hold`, and `send_at_local`: a time of day at which each recipient's message goes in its
/// own local time (its number's zone, else the tenant's `time_zone`), the first one from
/// `not_before` or now. Each recipient is answered accepted, held, duplicate (a retried send:
/// reached once) or rejected, as `POST /v1/messages` answers each envelope.
#[utoipa::path(
    operation_id = "campaigns_send",
    post,
    path = "/v1/campaigns/{id}/send",
    tag = "campaigns",
    params(("id" = String, Path, description = "the campaign id: 1-128 of `A-Z a-z 0-9 _ - . :`", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    request_body(content = CampaignSendRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "at least one recipient was accepted, held or exists already; each is answered accepted, held, duplicate or rejected", body = SubmitResponse),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 402, description = "subscription_inactive or plan_inactive: sending is refused", body = crate::error::ErrorBody),
        (status = 409, description = "channel_not_ready: a live tenant's channel cannot send yet and `when_not_ready` is `reject`, so nothing was accepted; `next_action` says what to do first (CHANNEL_NOT_CONFIGURED, WAIT_FOR_APPROVAL, ...)", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "every envelope was rejected (a SubmitResponse), or the request itself is invalid (an ErrorBody)", body = crate::messages::SubmitRejection),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn send(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(campaign): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let campaign = campaign_id(campaign)?;
    let tenant = ensure_may_send(&state, &caller.tenant_id).await?;
    let request: Value = serde_json::from_slice(&body).map_err(|error| ApiError::malformed(error.to_string()))?;
    let Value::Object(mut shared) = request else {
        return Err(ApiError::malformed("the body must be a JSON object"));
    };
    let recipients = match shared.remove("recipients") {
        Some(Value::Array(recipients)) if !recipients.is_empty() && recipients.len() <= MAX_RECIPIENTS => recipients,
        _ => {
            return Err(ApiError::invalid(
                "recipients",
                format!("must be an array of 1 to {MAX_RECIPIENTS} recipients"),
            ));
        }
    };
    let hold = match shared.remove("when_not_ready") {
        None => false,
        Some(Value::String(choice)) if choice == "reject" => false,
        Some(Value::String(choice)) if choice == "hold" => true,
        Some(_) => return Err(ApiError::invalid("when_not_ready", "must be reject or hold")),
    };
    let send_at_local = match shared.remove("send_at_local") {
        None => None,
        Some(Value::String(at)) => Some(
            quiet_hours::minute_of_day(&at)
                .ok_or_else(|| ApiError::invalid("send_at_local", rules::CLOCK_TIME.hint))?,
        ),
        Some(_) => return Err(ApiError::invalid("send_at_local", rules::CLOCK_TIME.hint)),
    };
    for reserved in ["message_id", "campaign_id", "to", "contact_id", "tenant_id"] {
        if shared.contains_key(reserved) {
            return Err(ApiError::invalid(
                reserved,
                "is set per recipient by the campaign; leave it out",
            ));
        }
    }
    let channel = shared
        .get("channel")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let destination = match not_ready(&state, &tenant, &channel).await? {
        None => Destination::Log,
        Some((channel, not_ready)) if hold => Destination::Hold {
            campaign: campaign.clone(),
            channel,
            next_action: not_ready.code(),
        },
        // Every message would be refused at admission with the same code: refuse them now.
        Some((channel, not_ready)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "channel_not_ready",
                format!(
                    "the {channel} channel cannot send yet, nothing was accepted: {}",
                    not_ready.next_step()
                ),
            )
            .with_field("channel")
            .with_next_action(not_ready.code()));
        }
    };
    let tenant_zone = match send_at_local {
        Some(_) => Some(
            state
                .store
                .tenant_settings(&tenant.id)
                .await?
                .unwrap_or_default()
                .time_zone,
        ),
        None => None,
    };
    let envelopes = recipients
        .into_iter()
        .map(|recipient| {
            let mut envelope = envelope(&campaign, &channel, &shared, recipient)?;
            if let (Some(at), Some(zone)) = (send_at_local, &tenant_zone) {
                at_local_time(&mut envelope, at, zone)?;
            }
            Ok(envelope)
        })
        .collect();
    let (status, response) = submit_envelopes(&state, &caller, envelopes, destination).await?;
    tracing::info!(
        tenant = %caller.tenant_id,
        %campaign,
        accepted = response.accepted,
        held = response.held,
        rejected = response.rejected,
        "campaign messages submitted"
    );
    Ok((status, Json(response)))
}

/// Why a live tenant's channel cannot send yet, if it cannot. A channel that does not parse is
/// left to each envelope's own check; demo tenants are always ready.
async fn not_ready(state: &AppState, tenant: &Tenant, channel: &str) -> Result<Option<(Channel, NotReady)>, ApiError> {
    let Ok(channel) = channel.parse::<Channel>() else {
        return Ok(None);
    };
    if tenant.is_demo {
        return Ok(None);
    }
    Ok(readiness::check(state.store.as_ref(), tenant, channel)
        .await?
        .err()
        .map(|not_ready| (channel, not_ready)))
}

/// One recipient's envelope: the shared fields, the recipient's own, and the derived ids; a
/// recipient object with a field it may not have is rejected.
fn envelope(
    campaign: &CampaignId,
    channel: &str,
    shared: &Map<String, Value>,
    recipient: Value,
) -> Result<Value, SubmitError> {
    let mut object = shared.clone();
    let (to, contact, variables) = match recipient {
        Value::String(to) => (Value::String(to), None, None),
        Value::Object(mut fields) => {
            let known = (
                fields.remove("to").unwrap_or(Value::Null),
                fields.remove("contact_id"),
                fields.remove("variables"),
            );
            if let Some(unknown) = fields.keys().next() {
                return Err(SubmitError {
                    code: "invalid_field",
                    message: format!("{unknown}: unknown field of a recipient (to, contact_id, variables)"),
                    field: Some(format!("recipients.{unknown}")),
                });
            }
            known
        }
        other => (other, None, None),
    };
    if let Some(address) = to.as_str() {
        object.insert(
            "message_id".into(),
            Value::String(message_id(campaign, channel, address)),
        );
    }
    object.insert("to".into(), to);
    object.insert("campaign_id".into(), Value::String(campaign.to_string()));
    if let Some(contact) = contact {
        object.insert("contact_id".into(), contact);
    }
    if let (Some(Value::Object(variables)), Some(Value::Object(template))) = (variables, object.get_mut("template")) {
        let merged = template.entry("variables").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(merged) = merged {
            merged.extend(variables);
        }
    }
    Ok(Value::Object(object))
}

/// Sets a recipient's `not_before` to the first `at` (minutes of the day) of its local time
/// (its number's zone, else the tenant's) from its `not_before` or now. An envelope whose fields
/// do not parse is left for its own check to answer; one that expired already is left to end
/// `expired`; one that would expire before its local time is rejected.
fn at_local_time(envelope: &mut Value, at: u16, tenant_zone: &Zone) -> Result<(), SubmitError> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    let (Some(channel), Some(to)) = (
        envelope["channel"]
            .as_str()
            .and_then(|channel| channel.parse::<Channel>().ok()),
        envelope["to"].as_str(),
    ) else {
        return Ok(());
    };
    let Ok(recipient) = Recipient::parse(channel, to) else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc();
    let expires_at = envelope["expires_at"]
        .as_str()
        .and_then(|given| OffsetDateTime::parse(given, rfc3339).ok());
    if expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Ok(());
    }
    let from = envelope["not_before"]
        .as_str()
        .and_then(|given| OffsetDateTime::parse(given, rfc3339).ok())
        .map_or(now, |given| given.max(now));
    let place = match &recipient {
        Recipient::Phone(number) => quiet_hours::place_of(number.as_str()),
        Recipient::Email(_) => None,
    };
    let zones: Vec<&Zone> = match place {
        Some(place) => place.zones.iter().collect(),
        None => vec![tenant_zone],
    };
    let due = quiet_hours::next_local(from, &zones, at);
    if expires_at.is_some_and(|expires_at| expires_at <= due) {
        return Err(SubmitError {
            code: "invalid_field",
            message: "expires_at: the message would expire before its local send time".to_owned(),
            field: Some("expires_at".to_owned()),
        });
    }
    if let Ok(due) = due.format(rfc3339) {
        envelope["not_before"] = Value::String(due);
    }
    Ok(())
}

/// One event of the stream: the campaign's counts by status.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct CampaignCounts {
    /// The campaign.
    pub campaign_id: String,
    /// Messages in all.
    pub total: u64,
    /// Messages per status (statuses with none left out), and `held`: those kept until the
    /// channel is ready.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub counts: Map<String, Value>,
}

async fn counts(state: &AppState, caller: &TenantCaller, campaign: &CampaignId) -> Result<CampaignCounts, ApiError> {
    let counts: Vec<(MessageStatus, u64)> = state.store.campaign_counts(&caller.tenant_id, campaign).await?;
    let held = state.store.held_count(&caller.tenant_id, campaign).await?;
    let mut by_status: Map<String, Value> = counts
        .iter()
        .map(|(status, count)| (status.as_str().to_owned(), json!(count)))
        .collect();
    if held > 0 {
        by_status.insert("held".to_owned(), json!(held));
    }
    Ok(CampaignCounts {
        campaign_id: campaign.to_string(),
        total: counts.iter().map(|(_, count)| count).sum::<u64>() + held,
        counts: by_status,
    })
}

/// `GET /v1/campaigns/{id}/events`: server-sent events named `counts`, one at once and one
/// whenever the counts change (looked at twice a second). Counts are the caller's tenant's
/// only: a campaign just sent (its messages still on their way from the log) or another
/// tenant's campaign shows zero. The stream ends when the server stops.
#[utoipa::path(
    operation_id = "campaigns_events",
    get,
    path = "/v1/campaigns/{id}/events",
    tag = "campaigns",
    params(("id" = String, Path, description = "the campaign id: 1-128 of `A-Z a-z 0-9 _ - . :`", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    responses(
        (status = 200, description = "server-sent events named `counts`, each a CampaignCounts object", content_type = "text/event-stream", body = crate::openapi::CountsEvent),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: campaign_id", body = crate::error::ErrorBody),
        (status = 429, description = "rate_limited, or too_many_streams: the tenant already holds admin.max_event_streams_per_tenant streams", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(campaign): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let campaign = campaign_id(campaign)?;
    // Held by the stream: its place is freed when the client goes away or the server stops.
    let place = state.limits.open_stream(&caller.tenant_id)?;
    let first = counts(&state, &caller, &campaign).await?;
    let stream = futures_util::stream::unfold(
        (state, caller, campaign, None::<CampaignCounts>, Some(first)),
        |(state, caller, campaign, mut last, mut pending)| async move {
            loop {
                if let Some(next) = pending.take()
                    && last.as_ref() != Some(&next)
                {
                    let event = Event::default()
                        .event("counts")
                        .json_data(&next)
                        .unwrap_or_else(|_| Event::default().event("counts"));
                    last = Some(next);
                    return Some((Ok(event), (state, caller, campaign, last, None)));
                }
                tokio::select! {
                    () = state.stopping.cancelled() => return None,
                    () = tokio::time::sleep(EVENTS_INTERVAL) => {}
                }
                match counts(&state, &caller, &campaign).await {
                    Ok(next) => pending = Some(next),
                    Err(error) => {
                        tracing::warn!(%campaign, error = %error, "campaign counts unavailable; retrying");
                    }
                }
            }
        },
    );
    let stream = stream.map(move |event| {
        let _held = &place;
        event
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
