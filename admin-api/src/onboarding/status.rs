//! The workflow over HTTP: `GET /v1/channels/sms/status` (where the tenant stands and what to do
//! next), `POST /v1/channels/sms/resubmit` (after a rejection, or once an operator fixed what
//! needed attention) and Twilio's `POST /webhooks/twilio/brand-status`.
//!
//! `next_action.code` is one of: `CONFIGURE_BUSINESS_INFO` (submit `POST /v1/business-info`),
//! `WAIT_FOR_PROVISIONING` (the platform is working, or retrying while Twilio is unavailable),
//! `WAIT_FOR_APPROVAL` (the brand is being vetted), `UPDATE_BUSINESS_INFO` (the brand was
//! rejected: fix the form with `PUT /v1/business-info`, then resubmit), `BRAND_SUSPENDED` (the
//! carriers suspended the brand after approving it: the same), `CAMPAIGN_SUSPENDED` (the A2P
//! campaign is no longer verified: SMS is held until it is again), `CONTACT_SUPPORT` (an
//! operator must act; `reason` says why), `NONE` (SMS is ready). A ready workflow keeps
//! watching its brand and campaign (`onboarding.watch_interval_secs`, and at once on a
//! brand-status webhook).
//!
//! The brand-status webhook is signed like every Twilio webhook (the token of the account named
//! in `AccountSid`, checked by `crate::webhooks`); it carries `BrandRegistrationSid`,
//! `BrandStatus` and `BrandScore` or `FailureReason`. A brand the signing account's tenants do
//! not wait for answers 204 and is counted, so Twilio stops retrying.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::TenantId;
use common::store::{BrandStatus, NumberStatus};
use common::telemetry::untrusted;
use serde::Serialize;
use time::OffsetDateTime;

use super::{OnboardingError, Step, keys};
use crate::auth::TenantCaller;
use crate::{ApiError, AppState};

/// What the tenant should do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NextAction {
    /// A stable code.
    pub code: &'static str,
    /// What it means, for a person.
    pub message: String,
}

/// Where a tenant's SMS onboarding stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SmsStatus {
    /// `not_started`, `in_progress`, `awaiting_approval`, `ready`, `campaign_suspended`, `rejected`,
    /// `suspended`, `needs_attention`.
    pub status: &'static str,
    /// The workflow step (`None` before business information is submitted).
    pub step: Option<Step>,
    /// The 10DLC brand's status.
    #[schema(value_type = Option<String>, example = "approved")]
    pub brand_status: Option<BrandStatus>,
    /// Why it was rejected, stopped, or is retrying.
    pub reason: Option<String>,
    /// Failed attempts of the current step while Twilio is unavailable.
    pub attempts: u32,
    /// When the workflow next moves on its own.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The brand registration's SID.
    pub brand_sid: Option<String>,
    /// The carriers' trust score.
    pub trust_score: Option<u8>,
    /// The SMS number, once bought.
    pub phone_number: Option<String>,
    /// Whether that number sends.
    pub phone_number_active: bool,
    /// What to do next.
    pub next_action: NextAction,
    /// Whether the tenant is a demo tenant (its approval and number are simulated).
    pub demo: bool,
}

fn action(code: &'static str, message: impl Into<String>) -> NextAction {
    NextAction {
        code,
        message: message.into(),
    }
}

/// Reads where a tenant's SMS onboarding stands.
pub async fn sms_status(state: &AppState, tenant: &TenantId) -> Result<SmsStatus, ApiError> {
    let Some(brand) = state.store.brand(tenant).await? else {
        let has_info = state.store.business_info(tenant).await?.is_some();
        return Ok(SmsStatus {
            demo: crate::business_info::is_demo(state, tenant).await?,
            status: "not_started",
            step: None,
            brand_status: None,
            reason: None,
            attempts: 0,
            next_attempt_at: None,
            brand_sid: None,
            trust_score: None,
            phone_number: None,
            phone_number_active: false,
            next_action: if has_info {
                action(
                    "WAIT_FOR_PROVISIONING",
                    "registration has not started yet; saving the business information again with \
                     PUT /v1/business-info starts it",
                )
            } else {
                action(
                    "CONFIGURE_BUSINESS_INFO",
                    "SMS needs a verified business: submit your business information with POST /v1/business-info",
                )
            },
        });
    };
    let step = Step::parse(&brand.workflow_step);
    let due = state.store.workflow_due(tenant).await?;
    let phone_number = brand.twilio_sids.get(keys::PHONE_NUMBER_E164).cloned();
    let numbers = state.store.sender_numbers(tenant).await?;
    let phone_number_active = phone_number.as_ref().is_some_and(|number| {
        numbers
            .iter()
            .any(|row| row.number.as_str() == number && row.status == NumberStatus::Active)
    });
    let campaign_suspended = numbers.iter().any(|row| row.status == NumberStatus::Suspended);
    let (status, next_action) = match step {
        Some(Step::Ready) if campaign_suspended => (
            "campaign_suspended",
            action(
                "CAMPAIGN_SUSPENDED",
                "twilio no longer reports your A2P campaign verified (see reason): SMS is held and resumes by \
                 itself once it is verified again",
            ),
        ),
        Some(Step::Ready) => ("ready", action("NONE", "SMS is ready to send")),
        Some(Step::Rejected) if brand.status == BrandStatus::Suspended => (
            "suspended",
            action(
                "BRAND_SUSPENDED",
                "the carriers suspended your 10DLC brand (see reason): correct your business information with \
                 PUT /v1/business-info, then resubmit with POST /v1/channels/sms/resubmit",
            ),
        ),
        Some(Step::Rejected) => (
            "rejected",
            action(
                "UPDATE_BUSINESS_INFO",
                "the 10DLC brand was rejected (see reason): correct your business information with \
                 PUT /v1/business-info, then resubmit with POST /v1/channels/sms/resubmit",
            ),
        ),
        Some(Step::NeedsAttention) => (
            "needs_attention",
            action(
                "CONTACT_SUPPORT",
                "registration stopped and needs an operator (see reason); once the cause is fixed, \
                 POST /v1/channels/sms/resubmit resumes it",
            ),
        ),
        Some(Step::DemoReview) => (
            "awaiting_approval",
            action(
                "WAIT_FOR_APPROVAL",
                "demo tenant: the 10DLC approval is simulated and arrives shortly after business info is submitted",
            ),
        ),
        Some(Step::AwaitingApproval) => (
            "awaiting_approval",
            action(
                "WAIT_FOR_APPROVAL",
                "your business was submitted to the carriers for 10DLC vetting, which usually takes 1 to 48 hours",
            ),
        ),
        Some(_) if brand.workflow_attempts > 0 => (
            "in_progress",
            action(
                "WAIT_FOR_PROVISIONING",
                "twilio is unavailable; registration is retried automatically (see next_attempt_at)",
            ),
        ),
        Some(_) => (
            "in_progress",
            action("WAIT_FOR_PROVISIONING", "registration with twilio is in progress"),
        ),
        None => (
            "needs_attention",
            action("CONTACT_SUPPORT", "the registration's state is not recognised"),
        ),
    };
    Ok(SmsStatus {
        demo: crate::business_info::is_demo(state, tenant).await?,
        status,
        step,
        brand_status: Some(brand.status),
        reason: brand.status_reason.clone(),
        attempts: brand.workflow_attempts,
        next_attempt_at: due,
        brand_sid: brand.twilio_sids.get(keys::BRAND).cloned(),
        trust_score: brand.trust_score,
        phone_number,
        phone_number_active,
        next_action,
    })
}

/// `GET /v1/channels/sms/status`.
#[utoipa::path(
    operation_id = "onboarding_get_status",
    get,
    path = "/v1/channels/sms/status",
    tag = "onboarding",
    responses(
        (status = 200, description = "where the 10DLC registration stands and what to do next", body = SmsStatus),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_status(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<SmsStatus>, ApiError> {
    Ok(Json(sms_status(&state, &caller.tenant_id).await?))
}

/// `POST /v1/channels/sms/resubmit`: 202 with the new status. After a rejection, new Trust Hub
/// bundles and a new brand registration are built from the current business information;
/// after `needs_attention`, the stopped step is tried again. 404 `business_info_not_found`
/// before any submission; 409 `nothing_to_resubmit` while the workflow moves or once it is
/// ready; 409 `onboarding_uncertain` while an operator must first check Twilio.
#[utoipa::path(
    operation_id = "onboarding_resubmit",
    post,
    path = "/v1/channels/sms/resubmit",
    tag = "onboarding",
    responses(
        (status = 202, description = "resubmitted; the new status", body = SmsStatus),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "business_info_not_found: nothing submitted yet", body = crate::error::ErrorBody),
        (status = 409, description = "nothing_to_resubmit, onboarding_uncertain or onboarding_state_invalid", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn resubmit(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<(StatusCode, Json<SmsStatus>), ApiError> {
    match state.onboarding.resubmit(&caller.tenant_id, &caller.key_id).await {
        Ok(_) => Ok((StatusCode::ACCEPTED, Json(sms_status(&state, &caller.tenant_id).await?))),
        Err(OnboardingError::NotStarted) => Err(ApiError::not_found(
            "business_info_not_found",
            "no business information yet; submit it with POST /v1/business-info",
        )),
        Err(error @ OnboardingError::NothingToResubmit(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_resubmit",
            error.to_string(),
        )),
        Err(error @ OnboardingError::Uncertain(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "onboarding_uncertain",
            error.to_string(),
        )),
        Err(OnboardingError::Store(error)) => Err(error.into()),
        Err(error @ OnboardingError::UnknownStep(_)) => {
            tracing::error!(tenant = %caller.tenant_id, %error, "onboarding resubmission failed");
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "onboarding_state_invalid",
                error.to_string(),
            ))
        }
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("admin_webhooks_total", "source" => "twilio_brand_status", "outcome" => outcome).increment(1);
}

/// `POST /webhooks/twilio/brand-status`: 204 once acted on or ignored (a callback without
/// `BrandRegistrationSid` and `BrandStatus`, such as a bundle's, is ignored); 403 when the
/// signature does not verify. A callback for a brand under review makes the workflow fetch the
/// brand from Twilio at once; the fetched status, not the callback's, is what applies.
#[utoipa::path(
    operation_id = "onboarding_brand_status_webhook",
    post,
    path = "/webhooks/twilio/brand-status",
    tag = "webhooks",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the public URL and the form, with the auth token of `AccountSid`")),
    request_body(content = crate::openapi::TwilioBrandStatusForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 204, description = "acted on (the brand is fetched from Twilio, whose answer applies) or ignored"),
        (status = 403, description = "invalid_signature: X-Twilio-Signature does not verify with any stored token of AccountSid", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub async fn brand_status_webhook(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    const SOURCE: &str = "twilio_brand_status";
    let form = crate::webhooks::twilio::verified(&state, SOURCE, &uri, &headers, &body).await?;
    let (Some(brand_sid), Some(status)) = (form.get("BrandRegistrationSid"), form.get("BrandStatus")) else {
        // Bundle status callbacks (the customer profile's StatusCallback) carry no brand.
        count("ignored");
        return Ok(StatusCode::NO_CONTENT);
    };
    let mut applied = false;
    for tenant in &form.tenants {
        match state.onboarding.brand_status_reported(tenant, brand_sid, status).await {
            Ok(true) => applied = true,
            Ok(false) => {}
            Err(OnboardingError::Store(error)) => return Err(error.into()),
            Err(error) => tracing::warn!(%tenant, %error, "brand status not applied"),
        }
    }
    count(if applied { "applied" } else { "unknown_brand" });
    tracing::info!(
        brand_sid = %untrusted(brand_sid),
        status = %untrusted(status),
        applied,
        "brand status callback"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/business-info/status`: where the 10DLC registration stands (the same answer as
/// `GET /v1/channels/sms/status`).
#[utoipa::path(
    operation_id = "business_info_status",
    get,
    path = "/v1/business-info/status",
    tag = "onboarding",
    responses(
        (status = 200, description = "where the 10DLC registration stands", body = SmsStatus),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn business_info_status(
    State(state): State<AppState>,
    caller: TenantCaller,
) -> Result<Json<SmsStatus>, ApiError> {
    Ok(Json(sms_status(&state, &caller.tenant_id).await?))
}
