//! Quotas and pre-send checks: `GET /v1/usage` and `POST /v1/campaigns/{id}/preflight`.
//!
//! Usage counts what the dispatcher reserved this month (SMS in segments, other channels in
//! messages) against the plan's monthly quota. Preflight answers what the send screen shows
//! before a campaign goes out: whether the channel is ready (and what to do if not), which
//! recipients are invalid or suppressed, segments and estimated cost, whether the quota
//! covers it, and how long the tenant's senders take to drain it at their pace.

use std::collections::{BTreeMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use common::config::PacingSettings;
use common::readiness::{self, Ready};
use common::segments::{SmsEncoding, count_segments};
use common::store::{Tenant, period_of};
use common::{CampaignId, Channel, Priority, Recipient};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::{ApiError, AppState};

/// Most recipients one preflight checks.
pub(crate) const MAX_PREFLIGHT_RECIPIENTS: usize = 10_000;

/// List prices used for estimates, in US dollars (Twilio US SMS per segment, WhatsApp per
/// message, SES per email). Estimates only: the provider's invoice is what counts.
fn unit_price(channel: Channel) -> f64 {
    match channel {
        Channel::Sms => 0.0083,
        Channel::Whatsapp => 0.005,
        Channel::Email => 0.0001,
    }
}

/// One channel's use of its quota.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChannelUsage {
    /// Used this period (segments for SMS, messages otherwise).
    pub used: u64,
    /// The plan's monthly quota; `None`: no quota applies.
    pub quota: Option<u64>,
    /// What is left; `None`: no quota applies.
    pub remaining: Option<u64>,
    /// `segments` or `messages`.
    pub unit: &'static str,
}

/// `GET /v1/usage` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UsageView {
    /// The month (`YYYY-MM`, UTC).
    pub period: String,
    /// The tenant's plan.
    pub plan_id: Option<String>,
    /// Per channel.
    #[schema(value_type = BTreeMap<String, ChannelUsage>)]
    pub channels: BTreeMap<Channel, ChannelUsage>,
    /// Whether the tenant is a demo tenant (no quota applies, traffic is simulated).
    pub demo: bool,
}

/// `GET /v1/usage` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsageQuery {
    /// A month (`YYYY-MM`); the current one when absent.
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub period: Option<String>,
}

fn unit(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "segments",
        Channel::Whatsapp | Channel::Email => "messages",
    }
}

async fn tenant_of(state: &AppState, caller: &TenantCaller) -> Result<Tenant, ApiError> {
    state
        .store
        .tenant(&caller.tenant_id)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

/// The plan's quota per channel (empty: none).
async fn quotas(state: &AppState, tenant: &Tenant) -> Result<BTreeMap<Channel, u64>, ApiError> {
    if tenant.is_demo {
        return Ok(BTreeMap::new());
    }
    Ok(match &tenant.plan_id {
        Some(plan) => state
            .store
            .plan(plan)
            .await?
            .map(|plan| plan.monthly_quota)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    })
}

fn is_period(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.len() == 7
        && bytes[4] == b'-'
        && raw[..4].bytes().all(|b| b.is_ascii_digit())
        && matches!(raw[5..].parse::<u8>(), Ok(1..=12))
}

/// `GET /v1/usage`.
#[utoipa::path(
    operation_id = "usage_usage",
    get,
    path = "/v1/usage",
    tag = "usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "quota use per channel", body = UsageView),
        (status = 400, description = "the query string does not parse", body = String, content_type = "text/plain"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: period is not YYYY-MM", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn usage(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    let period = match query.period {
        Some(period) if is_period(&period) => period,
        Some(_) => return Err(ApiError::invalid("period", "must be a month as YYYY-MM")),
        None => period_of(OffsetDateTime::now_utc()),
    };
    let tenant = tenant_of(&state, &caller).await?;
    let quotas = quotas(&state, &tenant).await?;
    let mut channels = BTreeMap::new();
    for channel in Channel::ALL {
        let used = state.store.usage(&tenant.id, channel, &period).await?;
        let quota = quotas.get(&channel).copied();
        channels.insert(
            channel,
            ChannelUsage {
                used,
                quota,
                remaining: quota.map(|quota| quota.saturating_sub(used)),
                unit: unit(channel),
            },
        );
    }
    Ok(Json(UsageView {
        period,
        plan_id: tenant.plan_id,
        channels,
        demo: tenant.is_demo,
    }))
}

/// `POST /v1/campaigns/{id}/preflight` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PreflightRequest {
    channel: Channel,
    recipients: Vec<String>,
    /// The campaign's lane: `marketing` (the default, as for a send) or `transactional`.
    #[serde(default)]
    priority: Priority,
    /// The text (SMS, WhatsApp free-form, email text part): segments are counted from it.
    #[serde(default)]
    body: Option<String>,
}

/// Whether the channel can send now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChannelReadiness {
    /// Ready to send.
    pub ready: bool,
    /// Why not (`WAIT_FOR_APPROVAL`, ...).
    pub code: Option<&'static str>,
    /// What to do about it.
    pub next_step: Option<&'static str>,
}

/// A recipient that cannot be sent to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct InvalidRecipient {
    /// Its position in the request.
    pub index: usize,
    /// Why.
    pub error: String,
}

/// The recipients, sorted out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RecipientCheck {
    /// How many were given.
    pub total: usize,
    /// Those that are not valid addresses for the channel.
    pub invalid: Vec<InvalidRecipient>,
    /// Those on the suppression list (opted out, bounced, complained).
    pub suppressed: Vec<String>,
    /// Whether the tenant's settings require an opt-in to the channel for this campaign (a
    /// marketing one).
    pub consent_required: bool,
    /// Those without a recorded opt-in to the channel, where one is required: they would end
    /// `rejected` with `CONSENT_MISSING`.
    pub without_consent: Vec<String>,
    /// How many would be sent (valid, not suppressed, consented where required, duplicates
    /// counted once).
    pub sendable: usize,
}

/// Segments of the message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SegmentEstimate {
    /// Per message (1 for WhatsApp and email).
    pub per_message: u32,
    /// SMS: the encoding the text needs.
    #[schema(value_type = Option<String>, example = "gsm7")]
    pub encoding: Option<SmsEncoding>,
    /// For every sendable recipient.
    pub total: u64,
}

/// The quota against the campaign.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QuotaCheck {
    /// `segments` or `messages`.
    pub unit: &'static str,
    /// The plan's monthly quota; `None`: no quota applies.
    pub quota: Option<u64>,
    /// Used this month.
    pub used: u64,
    /// Left this month; `None`: no quota applies.
    pub remaining: Option<u64>,
    /// Whether what is left covers the campaign.
    pub sufficient: bool,
}

/// How long the senders take at their pace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DrainEstimate {
    /// Sender numbers (or addresses) sharing the campaign.
    pub senders: usize,
    /// Their combined pace, in messages (SMS: segments) per second.
    pub per_second: f64,
    /// Seconds to send everything at that pace.
    pub seconds: f64,
}

/// What quiet hours do to the campaign, were it sent now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QuietHoursCheck {
    /// Recipients whose local time is outside the window: their texts would be held.
    pub held: usize,
    /// When the last of them opens; `null` when none is held.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

/// `POST /v1/campaigns/{id}/preflight` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Preflight {
    /// The campaign.
    pub campaign_id: String,
    /// The channel.
    pub channel: Channel,
    /// Whether the channel can send.
    pub channel_ready: ChannelReadiness,
    /// The recipients, sorted out.
    pub recipients: RecipientCheck,
    /// Segments.
    pub segments: SegmentEstimate,
    /// Estimated provider cost in US dollars (list prices; an estimate).
    pub estimated_cost_usd: f64,
    /// The quota.
    pub quota: QuotaCheck,
    /// How long sending takes; `None` when the channel is not ready.
    pub drain: Option<DrainEstimate>,
    /// Recipients quiet hours would hold, and until when.
    pub quiet_hours: QuietHoursCheck,
    /// Whether the tenant is a demo tenant.
    pub demo: bool,
    /// Shown for demo tenants: nothing is really sent.
    pub demo_notice: Option<&'static str>,
}

/// The combined pace of a ready channel's senders.
fn drain(pacing: &PacingSettings, channel: Channel, ready: &Ready, units: u64) -> DrainEstimate {
    let trust_score = ready.brand.as_ref().and_then(|brand| brand.trust_score);
    let (senders, per_second) = match channel {
        Channel::Email => (1, pacing.email),
        Channel::Sms | Channel::Whatsapp => (
            ready.numbers.len(),
            ready
                .numbers
                .iter()
                .map(|number| {
                    number
                        .rate_per_second
                        .unwrap_or_else(|| pacing.number_rate(number.kind, trust_score))
                })
                .sum(),
        ),
    };
    let seconds = if per_second > 0.0 {
        units as f64 / per_second
    } else {
        f64::INFINITY
    };
    DrainEstimate {
        senders,
        per_second,
        seconds,
    }
}

/// `POST /v1/campaigns/{id}/preflight`.
#[utoipa::path(
    operation_id = "usage_preflight",
    post,
    path = "/v1/campaigns/{id}/preflight",
    tag = "campaigns",
    params(("id" = String, Path, description = "the campaign id: 1-128 of `A-Z a-z 0-9 _ - . :`", pattern = "^[A-Za-z0-9_.:-]{1,128}$")),
    request_body(content = PreflightRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "readiness, recipients, segments, cost, quota and drain estimates", body = Preflight),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: `field` and `fields` name what is wrong", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn preflight(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(campaign): Path<String>,
    body: Bytes,
) -> Result<Json<Preflight>, ApiError> {
    let campaign = CampaignId::parse(campaign).map_err(|error| ApiError::invalid("campaign_id", error.to_string()))?;
    let request: PreflightRequest = crate::platform::json_body(&body)?;
    if request.recipients.len() > MAX_PREFLIGHT_RECIPIENTS {
        return Err(ApiError::invalid(
            "recipients",
            format!("at most {MAX_PREFLIGHT_RECIPIENTS} recipients per preflight"),
        ));
    }
    let channel = request.channel;
    let tenant = tenant_of(&state, &caller).await?;

    let settings = state.store.tenant_settings(&tenant.id).await?.unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let mut quiet_hours = QuietHoursCheck { held: 0, until: None };
    let mut invalid = Vec::new();
    let mut valid: Vec<String> = Vec::new();
    for (index, raw) in request.recipients.iter().enumerate() {
        match Recipient::parse(channel, raw) {
            Ok(recipient) => {
                // Demo tenants' traffic is simulated: quiet hours never hold it.
                let hold = (!tenant.is_demo)
                    .then(|| settings.quiet_until(&recipient, request.priority, &state.pacing.quiet_hours_states, now))
                    .flatten();
                if let Some(until) = hold {
                    quiet_hours.held += 1;
                    quiet_hours.until = quiet_hours.until.max(Some(until));
                }
                valid.push(recipient.as_str().to_owned());
            }
            Err(error) => invalid.push(InvalidRecipient {
                index,
                error: error.to_string(),
            }),
        }
    }
    valid.sort_unstable();
    valid.dedup();
    let suppressed = state.store.suppressed_among(&tenant.id, &valid).await?;
    let consent_required = settings.requires_consent(request.priority);
    let without_consent = if consent_required {
        let suppressed: HashSet<&String> = suppressed.iter().collect();
        let unsuppressed: Vec<String> = valid
            .iter()
            .filter(|address| !suppressed.contains(address))
            .cloned()
            .collect();
        let consented = state.store.consented_among(&tenant.id, channel, &unsuppressed).await?;
        let consented: HashSet<String> = consented.into_iter().collect();
        unsuppressed
            .into_iter()
            .filter(|address| !consented.contains(address))
            .collect()
    } else {
        Vec::new()
    };
    let sendable = valid.len() - suppressed.len() - without_consent.len();

    let (per_message, encoding) = match (channel, request.body.as_deref()) {
        (Channel::Sms, Some(text)) => {
            let count = count_segments(text);
            (count.segments, Some(count.encoding))
        }
        (Channel::Sms, None) => (1, None),
        (Channel::Whatsapp | Channel::Email, _) => (1, None),
    };
    let units = u64::from(per_message) * sendable as u64;

    let ready = if tenant.is_demo {
        None
    } else {
        Some(readiness::check(state.store.as_ref(), &tenant, channel).await?)
    };
    let channel_ready = match &ready {
        None | Some(Ok(_)) => ChannelReadiness {
            ready: true,
            code: None,
            next_step: None,
        },
        Some(Err(not_ready)) => ChannelReadiness {
            ready: false,
            code: Some(not_ready.code()),
            next_step: Some(not_ready.next_step()),
        },
    };
    let drain = match &ready {
        Some(Ok(ready)) => Some(drain(&state.pacing, channel, ready, units)),
        None => Some(DrainEstimate {
            senders: 1,
            per_second: state.pacing.demo,
            seconds: units as f64 / state.pacing.demo.max(f64::MIN_POSITIVE),
        }),
        Some(Err(_)) => None,
    };

    let quota = quotas(&state, &tenant).await?.get(&channel).copied();
    let used = state.store.usage(&tenant.id, channel, &period_of(now)).await?;
    let remaining = quota.map(|quota| quota.saturating_sub(used));
    Ok(Json(Preflight {
        campaign_id: campaign.to_string(),
        channel,
        channel_ready,
        recipients: RecipientCheck {
            total: request.recipients.len(),
            invalid,
            suppressed,
            consent_required,
            without_consent,
            sendable,
        },
        segments: SegmentEstimate {
            per_message,
            encoding,
            total: units,
        },
        estimated_cost_usd: (units as f64 * unit_price(channel) * 10_000.0).round() / 10_000.0,
        quota: QuotaCheck {
            unit: unit(channel),
            quota,
            used,
            remaining,
            sufficient: remaining.is_none_or(|remaining| remaining >= units),
        },
        drain,
        quiet_hours,
        demo: tenant.is_demo,
        demo_notice: tenant
            .is_demo
            .then_some("demo tenant: messages are simulated and never reach a carrier"),
    }))
}
