//! WhatsApp for live tenants: senders registered through Twilio's Senders API
//! ([`senders`]) and templates approved through Twilio's Content API ([`templates`]).
//!
//! Sender routes: `POST` and `GET /v1/channels/whatsapp/senders`, `GET` and `DELETE
//! /v1/channels/whatsapp/senders/{number}`, `POST /v1/channels/whatsapp/senders/{number}/verify`,
//! and the signed `POST /webhooks/twilio/sender-status`.

pub mod senders;
pub mod templates;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use common::rules::{E164, EMAIL, LINE, PROSE, WABA_ID, WEBSITE};
use common::store::SenderProfile;
use common::store::SenderRegistration;
use common::{PhoneNumber, TenantId};
use serde::Serialize;

use self::senders::{Registration, SenderError, SenderView};
use crate::auth::TenantCaller;
use crate::form::{self, Field, Kind};
use crate::{ApiError, AppState};

/// The business verticals Twilio's Senders API accepts.
const VERTICALS: &[&str] = &[
    "Alcohol",
    "Automotive",
    "Beauty, Spa and Salon",
    "Clothing and Apparel",
    "Education",
    "Entertainment",
    "Event Planning and Service",
    "Finance and Banking",
    "Food and Grocery",
    "Hotel and Lodging",
    "Matrimony Service",
    "Medical and Health",
    "Non-profit",
    "Online Gambling",
    "OTC Drugs",
    "Other",
    "Physical Gambling",
    "Professional Services",
    "Public Service",
    "Restaurant",
    "Shopping and Retail",
    "Travel and Transportation",
];

/// The fields of `POST /v1/channels/whatsapp/senders`.
const SENDER_FIELDS: [Field; 11] = [
    Field::text("phone_number", &E164, true, "The number to send WhatsApp from, E.164."),
    Field::text(
        "waba_id",
        &WABA_ID,
        true,
        "The tenant's WhatsApp Business Account id, from Meta's embedded signup.",
    ),
    Field::text_within(
        "display_name",
        &LINE,
        3,
        128,
        true,
        "The display name recipients see (Meta's display name rules apply).",
    ),
    Field {
        name: "verification_method",
        kind: Kind::Choice(&["sms", "voice"]),
        required: false,
        description: "How Meta sends the number its verification code (default `sms`).",
    },
    Field::text_within("about", &LINE, 1, 139, false, "The profile's about text."),
    Field::text_within("address", &LINE, 1, 256, false, "The business address."),
    Field::text_within("description", &PROSE, 1, 512, false, "The business description."),
    Field::text_within(
        "logo_url",
        &WEBSITE,
        10,
        2_048,
        false,
        "A public HTTPS URL of the logo.",
    ),
    Field {
        name: "vertical",
        kind: Kind::Choice(VERTICALS),
        required: false,
        description: "The business vertical.",
    },
    Field {
        name: "emails",
        kind: Kind::Texts {
            rule: &EMAIL,
            min_chars: 5,
            max_chars: 254,
            min_items: 1,
            max_items: 2,
        },
        required: false,
        description: "Contact email addresses.",
    },
    Field {
        name: "websites",
        kind: Kind::Texts {
            rule: &WEBSITE,
            min_chars: 10,
            max_chars: 256,
            min_items: 1,
            max_items: 2,
        },
        required: false,
        description: "Websites.",
    },
];

/// The fields of `POST /v1/channels/whatsapp/senders/{number}/verify`.
const VERIFY_FIELDS: [Field; 1] = [Field::text(
    "code",
    &common::rules::VERIFICATION_CODE,
    true,
    "The code Meta sent the number.",
)];

crate::openapi::body!(
    /// `POST /v1/channels/whatsapp/senders` body.
    NewSenderRequest => crate::openapi::form_schema("A WhatsApp sender to register.", &SENDER_FIELDS)
);

crate::openapi::body!(
    /// `POST /v1/channels/whatsapp/senders/{number}/verify` body.
    VerifySenderRequest => crate::openapi::form_schema("Meta's verification code.", &VERIFY_FIELDS)
);

/// The tenant's WhatsApp senders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SenderList {
    /// Every sender, oldest first.
    pub senders: Vec<SenderView>,
}

/// The API's error for a sender operation's failure.
fn sender_error(error: SenderError) -> ApiError {
    use common::twilio::AccountOpError;
    match error {
        SenderError::Store(error) => error.into(),
        SenderError::NotFound => ApiError::not_found("sender_not_found", "no whatsapp sender with that number"),
        SenderError::NumberInUse(reason) => ApiError::new(
            StatusCode::CONFLICT,
            "number_in_use",
            format!("the number is in use: {reason}"),
        )
        .with_field("phone_number"),
        SenderError::AlreadyRegistered => ApiError::new(
            StatusCode::CONFLICT,
            "sender_exists",
            "the number is already registered; remove it first to register it again",
        )
        .with_field("phone_number"),
        SenderError::NoAccount => ApiError::new(
            StatusCode::CONFLICT,
            "channel_not_configured",
            "save the whatsapp channel's twilio credentials with POST /v1/channels/whatsapp (or finish sms onboarding) first",
        )
        .with_next_action("CHANNEL_NOT_CONFIGURED"),
        SenderError::CredentialsUnusable => ApiError::new(
            StatusCode::CONFLICT,
            "credentials_unusable",
            "the saved twilio credentials cannot be used: save them again",
        ),
        SenderError::NotAwaitingCode(status) => ApiError::new(
            StatusCode::CONFLICT,
            "sender_not_awaiting_code",
            format!("the sender is {status}, not waiting for a verification code"),
        ),
        SenderError::Twilio(AccountOpError::InvalidCredentials { .. }) => ApiError::new(
            StatusCode::CONFLICT,
            "credentials_refused",
            "twilio refused the saved credentials: save correct ones with POST /v1/channels/whatsapp",
        ),
        SenderError::Twilio(error @ AccountOpError::Rejected { .. }) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "provider_refused",
            format!("twilio refused it: {error}"),
        ),
        SenderError::Twilio(error) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            format!("twilio is unavailable, retry later: {error}"),
        ),
    }
}

/// A number from the path.
fn number_of(raw: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(raw).map_err(|_| ApiError::invalid("number", E164.hint))
}

/// Refuses demo tenants: their WhatsApp is simulated and always ready.
async fn live(state: &AppState, tenant: &TenantId) -> Result<(), ApiError> {
    if state.store.tenant(tenant).await?.is_some_and(|tenant| tenant.is_demo) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "demo_tenant",
            "a demo tenant's whatsapp is simulated: it needs no sender",
        ));
    }
    Ok(())
}

/// `POST /v1/channels/whatsapp/senders`: registers a number as a WhatsApp sender on the
/// tenant's Twilio account.
#[utoipa::path(
    operation_id = "whatsapp_senders_create",
    post,
    path = "/v1/channels/whatsapp/senders",
    tag = "channels",
    request_body(content = NewSenderRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "registered: the intent is stored and Twilio was asked (or will be, if it was unavailable); follow `status` and `next_action`", body = SenderView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 409, description = "sender_exists or number_in_use (`field`: phone_number); demo_tenant; channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    caller: TenantCaller,
    body: Bytes,
) -> Result<(StatusCode, Json<SenderView>), ApiError> {
    let fields = form::parse(&body, &SENDER_FIELDS)?;
    live(&state, &caller.tenant_id).await?;
    let number = number_of(&fields.required("phone_number")?)?;
    let profile = SenderProfile {
        name: fields.required("display_name")?,
        about: fields.text("about"),
        address: fields.text("address"),
        description: fields.text("description"),
        logo_url: fields.text("logo_url"),
        vertical: fields.text("vertical"),
        emails: fields.texts("emails").unwrap_or_default(),
        websites: fields.texts("websites").unwrap_or_default(),
    };
    let registration = Registration {
        number,
        details: SenderRegistration {
            waba_id: fields.required("waba_id")?,
            verification_method: fields.text("verification_method").unwrap_or_else(|| "sms".to_owned()),
            profile,
            create_in_flight: false,
            twilio_status: None,
            reason: None,
            attempts: 0,
        },
    };
    let row = state
        .senders
        .register(&caller.tenant_id, registration, &caller.key_id)
        .await
        .map_err(sender_error)?;
    Ok((StatusCode::ACCEPTED, Json(SenderView::of(&row))))
}

/// `GET /v1/channels/whatsapp/senders`: the tenant's WhatsApp senders.
#[utoipa::path(
    operation_id = "whatsapp_senders_list",
    get,
    path = "/v1/channels/whatsapp/senders",
    tag = "channels",
    responses(
        (status = 200, description = "every WhatsApp sender, with its status and next action", body = SenderList),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(State(state): State<AppState>, caller: TenantCaller) -> Result<Json<SenderList>, ApiError> {
    let rows = state.senders.list(&caller.tenant_id).await?;
    Ok(Json(SenderList {
        senders: rows.iter().map(SenderView::of).collect(),
    }))
}

/// `GET /v1/channels/whatsapp/senders/{number}`: one sender, fetched from Twilio first when
/// it is not online yet.
#[utoipa::path(
    operation_id = "whatsapp_senders_get",
    get,
    path = "/v1/channels/whatsapp/senders/{number}",
    tag = "channels",
    params(("number" = String, Path, description = "The sender's number, E.164", pattern = r"^\+[1-9][0-9]{1,14}$")),
    responses(
        (status = 200, description = "the sender", body = SenderView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "sender_not_found", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: the number is not E.164", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(number): Path<String>,
) -> Result<Json<SenderView>, ApiError> {
    let number = number_of(&number)?;
    let rows = state.senders.list(&caller.tenant_id).await?;
    let row = rows
        .into_iter()
        .find(|row| row.number == number)
        .ok_or_else(|| sender_error(SenderError::NotFound))?;
    Ok(Json(SenderView::of(&row)))
}

/// `DELETE /v1/channels/whatsapp/senders/{number}`: deletes the sender at Twilio and retires it.
#[utoipa::path(
    operation_id = "whatsapp_senders_delete",
    delete,
    path = "/v1/channels/whatsapp/senders/{number}",
    tag = "channels",
    params(("number" = String, Path, description = "The sender's number, E.164", pattern = r"^\+[1-9][0-9]{1,14}$")),
    responses(
        (status = 200, description = "removed: deleted at Twilio, kept here as `retired`", body = SenderView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "sender_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: the number is not E.164; provider_refused", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(number): Path<String>,
) -> Result<Json<SenderView>, ApiError> {
    let number = number_of(&number)?;
    let row = state
        .senders
        .remove(&caller.tenant_id, &number, &caller.key_id)
        .await
        .map_err(sender_error)?;
    Ok(Json(SenderView::of(&row)))
}

/// `POST /v1/channels/whatsapp/senders/{number}/verify`: gives Meta's verification code.
#[utoipa::path(
    operation_id = "whatsapp_senders_verify",
    post,
    path = "/v1/channels/whatsapp/senders/{number}/verify",
    tag = "channels",
    params(("number" = String, Path, description = "The sender's number, E.164", pattern = r"^\+[1-9][0-9]{1,14}$")),
    request_body(content = VerifySenderRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "the code was given to Twilio; the sender is fetched again", body = SenderView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "sender_not_found", body = crate::error::ErrorBody),
        (status = 409, description = "sender_not_awaiting_code; channel_not_configured, credentials_unusable or credentials_refused", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field; provider_refused: Twilio refused the code", body = crate::error::ErrorBody),
        (status = 503, description = "provider_unavailable or store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(number): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<SenderView>), ApiError> {
    let number = number_of(&number)?;
    let fields = form::parse(&body, &VERIFY_FIELDS)?;
    let row = state
        .senders
        .verify(&caller.tenant_id, &number, &fields.required("code")?, &caller.key_id)
        .await
        .map_err(sender_error)?;
    Ok((StatusCode::ACCEPTED, Json(SenderView::of(&row))))
}

fn count(outcome: &'static str) {
    metrics::counter!("admin_webhooks_total", "source" => "twilio_sender_status", "outcome" => outcome).increment(1);
}

/// `POST /webhooks/twilio/sender-status`: a sender's status changed (`AccountSid`,
/// `SenderSid`, `Status`; signed with the account's auth token). The sender is fetched from
/// Twilio at once; the fetched status, not the callback's, is what applies.
#[utoipa::path(
    operation_id = "whatsapp_sender_status_webhook",
    post,
    path = "/webhooks/twilio/sender-status",
    tag = "webhooks",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the public URL and the form, with the auth token of `AccountSid`")),
    request_body(content = crate::openapi::TwilioSenderStatusForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 204, description = "acted on (the sender is fetched from Twilio, whose answer applies) or ignored"),
        (status = 403, description = "invalid_signature: X-Twilio-Signature does not verify with any stored token of AccountSid", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub async fn sender_status_webhook(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    const SOURCE: &str = "twilio_sender_status";
    let form = crate::webhooks::twilio::verified(&state, SOURCE, &uri, &headers, &body).await?;
    let Some(sid) = form.get("SenderSid") else {
        count("ignored");
        return Ok(StatusCode::NO_CONTENT);
    };
    let mut applied = false;
    for tenant in &form.tenants {
        match state.senders.status_reported(tenant, sid).await {
            Ok(found) => applied |= found,
            Err(SenderError::Store(error)) => return Err(error.into()),
            Err(error) => tracing::warn!(%tenant, %error, "sender status not applied"),
        }
    }
    count(if applied { "applied" } else { "unknown_sender" });
    Ok(StatusCode::NO_CONTENT)
}
