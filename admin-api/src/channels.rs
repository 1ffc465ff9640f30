//! A tenant's channel credentials: `POST/GET/DELETE /v1/channels/{sms|whatsapp|email}`.
//!
//! SMS and WhatsApp take a Twilio account (`account_sid`, `auth_token`); email takes AWS keys
//! (`access_key_id`, `secret_access_key`, `region`), the sender address (`from_address`) and an
//! optional SES configuration set (`configuration_set`, whose SNS destination brings events
//! back), and how one-click unsubscribe works for its mail (`unsubscribe_mailbox`,
//! `unsubscribe_transactional`). The secret is sealed with AES-256-GCM before it is stored and is never answered or
//! logged. On save the credentials are checked against the provider (Twilio: fetch the
//! account; SES: fetch the account's sending status), and the answer says whether they
//! passed (`is_verified`) or why not (`verification_error`); the dispatcher sends only with
//! verified credentials. Every change is audited, without the secret.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::address::EmailAddress;
use common::credentials::Keyring;
use common::credentials::{
    ACCESS_KEY_ID, ACCOUNT_SID, CONFIGURATION_SET, FROM_ADDRESS, REGION, SNS_TOPIC_ARN, UNSUBSCRIBE_MAILBOX,
    UNSUBSCRIBE_TRANSACTIONAL, seal, setting,
};
use common::ses::SesClient;
use common::store::{ChannelCredentials, ProviderKind};
use common::twilio::TwilioClient;
use common::twilio::accounts::{AccountOpError, AccountStatus};
use common::{Channel, rules};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::form::{self, Field, Kind};
use crate::{ApiError, AppState};

/// A channel's credentials as answered: everything but the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ChannelView {
    /// The channel.
    pub channel: Channel,
    /// The provider serving it.
    #[schema(value_type = String, example = "twilio")]
    pub provider: ProviderKind,
    /// The non-secret settings (account SID, access key id, region, sender, configuration set).
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Whether the provider accepted the credentials when they were saved.
    pub is_verified: bool,
    /// Why the provider did not accept them.
    pub verification_error: Option<String>,
    /// When they were saved.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<ChannelCredentials> for ChannelView {
    fn from(row: ChannelCredentials) -> Self {
        Self {
            channel: row.channel,
            provider: row.provider,
            settings: row.settings,
            is_verified: row.is_verified,
            verification_error: row.verification_error,
            updated_at: row.updated_at,
        }
    }
}

fn channel_of(raw: &str) -> Result<Channel, ApiError> {
    raw.parse::<Channel>()
        .map_err(|_| ApiError::not_found("route_not_found", "channels are sms, whatsapp and email"))
}

/// The fields of Twilio credentials (`sms`, `whatsapp`), as parsed and documented.
pub(crate) const TWILIO_FIELDS: [Field; 2] = [
    Field::text(ACCOUNT_SID, &rules::ACCOUNT_SID, true, "The Twilio account's SID."),
    Field::text(
        "auth_token",
        &rules::SECRET,
        true,
        "The account's auth token (sealed, never answered).",
    ),
];

/// The fields of SES credentials (`email`), as parsed and documented.
pub(crate) const SES_FIELDS: [Field; 8] = [
    Field::text(ACCESS_KEY_ID, &rules::ACCESS_KEY_ID, true, "The AWS access key id."),
    Field::text(
        "secret_access_key",
        &rules::SECRET,
        true,
        "The secret key (sealed, never answered).",
    ),
    Field::text(REGION, &rules::AWS_REGION, true, "The AWS region, such as `us-east-1`."),
    Field::text(FROM_ADDRESS, &rules::EMAIL, true, "The sender address."),
    Field::text(
        CONFIGURATION_SET,
        &rules::CONFIGURATION_SET,
        false,
        "An SES configuration set whose SNS destination brings events back.",
    ),
    Field::text(
        SNS_TOPIC_ARN,
        &rules::SNS_TOPIC_ARN,
        false,
        "The tenant's own SNS topic of that destination, subscribed to \
         `POST /webhooks/ses?tenant=<tenant id>`: its events are accepted for this tenant only.",
    ),
    Field::text(
        UNSUBSCRIBE_MAILBOX,
        &rules::EMAIL,
        false,
        "Where unsubscribe requests by email go (the `mailto` of `List-Unsubscribe`); the sender \
         address when absent.",
    ),
    Field {
        name: UNSUBSCRIBE_TRANSACTIONAL,
        kind: Kind::Flag,
        required: false,
        description: "Whether transactional email carries the one-click unsubscribe headers too \
                      (marketing email always does); false when absent.",
    },
];

crate::openapi::body!(
    /// `POST /v1/channels/sms` and `/v1/channels/whatsapp` body.
    TwilioCredentialsRequest => crate::openapi::form_schema("A Twilio account's credentials.", &TWILIO_FIELDS)
);

crate::openapi::body!(
    /// `POST /v1/channels/email` body.
    SesCredentialsRequest => crate::openapi::form_schema("AWS credentials and the email sender.", &SES_FIELDS)
);

/// Validates a body and builds the sealed, not yet verified row.
fn parse_credentials(
    state: &AppState,
    caller: &TenantCaller,
    channel: Channel,
    body: &[u8],
) -> Result<ChannelCredentials, ApiError> {
    match channel {
        Channel::Sms | Channel::Whatsapp => {
            let fields = form::parse(body, &TWILIO_FIELDS)?;
            Ok(seal(
                &state.keyring,
                &caller.tenant_id,
                channel,
                ProviderKind::Twilio,
                json!({ ACCOUNT_SID: fields.required(ACCOUNT_SID)? }),
                &SecretString::from(fields.required("auth_token")?),
            ))
        }
        Channel::Email => {
            let fields = form::parse(body, &SES_FIELDS)?;
            let secret = fields.required("secret_access_key")?;
            let from = EmailAddress::parse(fields.required(FROM_ADDRESS)?)
                .map_err(|error| ApiError::invalid(FROM_ADDRESS, error.to_string()))?;
            let (key, region) = (fields.required(ACCESS_KEY_ID)?, fields.required(REGION)?);
            let configuration_set = fields.text(CONFIGURATION_SET);
            let topic = fields.text(SNS_TOPIC_ARN);
            let mut settings = json!({ ACCESS_KEY_ID: key, REGION: region, FROM_ADDRESS: from.as_str() });
            if let Some(set) = configuration_set {
                settings[CONFIGURATION_SET] = Value::String(set);
            }
            if let Some(topic) = topic {
                settings[SNS_TOPIC_ARN] = Value::String(topic);
            }
            if let Some(mailbox) = fields.text(UNSUBSCRIBE_MAILBOX) {
                let mailbox = EmailAddress::parse(mailbox)
                    .map_err(|error| ApiError::invalid(UNSUBSCRIBE_MAILBOX, error.to_string()))?;
                settings[UNSUBSCRIBE_MAILBOX] = Value::String(mailbox.as_str().to_owned());
            }
            if fields.flag(UNSUBSCRIBE_TRANSACTIONAL) {
                settings[UNSUBSCRIBE_TRANSACTIONAL] = Value::Bool(true);
            }
            Ok(seal(
                &state.keyring,
                &caller.tenant_id,
                channel,
                ProviderKind::Ses,
                settings,
                &SecretString::from(secret),
            ))
        }
    }
}

/// Asks the provider whether the credentials work; `Err` holds the reason shown to the tenant.
async fn verify(state: &AppState, row: &ChannelCredentials) -> Result<(), String> {
    check(&state.keyring, &state.twilio, &state.ses, row).await
}

/// [`verify`] with the clients at hand (the legacy importer has no `AppState`).
pub(crate) async fn check(
    keyring: &Keyring,
    twilio: &TwilioClient,
    ses: &SesClient,
    row: &ChannelCredentials,
) -> Result<(), String> {
    match row.provider {
        ProviderKind::Twilio => {
            let account = common::twilio::open_account(keyring, row).map_err(|error| error.to_string())?;
            match twilio.fetch_account(&account, &account.account_sid).await {
                Ok(info) if info.status == AccountStatus::Active => Ok(()),
                Ok(info) => Err(format!("the twilio account is {}", info.status.as_str())),
                Err(AccountOpError::InvalidCredentials { .. }) => {
                    Err("twilio refused the account SID and auth token".to_owned())
                }
                Err(error) => Err(format!("could not verify with twilio, save again later: {error}")),
            }
        }
        ProviderKind::Ses => {
            let account = common::ses::open_account(keyring, row).map_err(|error| error.to_string())?;
            match ses.sdk_client(&account).get_account().send().await {
                Ok(answer) if answer.sending_enabled() => Ok(()),
                Ok(_) => Err("sending is paused on this SES account".to_owned()),
                Err(error) => Err(format!(
                    "ses refused or could not check the credentials: {}",
                    aws_sdk_sesv2::error::DisplayErrorContext(&error)
                )),
            }
        }
    }
}

/// Refuses a Twilio account that is the platform's own or that another tenant's verified
/// credentials hold: its webhooks would be signed with a token this tenant also knows.
async fn account_is_free(state: &AppState, caller: &TenantCaller, account: &str) -> Result<(), ApiError> {
    let taken = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "account_in_use",
            "this Twilio account belongs to another tenant or to the platform",
        )
        .with_field(ACCOUNT_SID)
    };
    if state.onboarding.settings().master_account_sid.as_deref() == Some(account) {
        return Err(taken());
    }
    let holders = state.store.credentials_by_account(account).await?;
    if holders.iter().any(|row| row.tenant_id != caller.tenant_id) {
        tracing::warn!(tenant = %caller.tenant_id, "credentials refused: the account belongs to another tenant");
        return Err(taken());
    }
    Ok(())
}

/// `POST /v1/channels/{channel}`: saves (or replaces) the channel's credentials and verifies
/// them; 201 with the view, verified or not.
#[utoipa::path(
    operation_id = "channels_save",
    post,
    path = "/v1/channels/{channel}",
    tag = "channels",
    params(("channel" = common::Channel, Path, description = "`sms`, `whatsapp` or `email`")),
    request_body(content = TwilioCredentialsRequest, description = "Twilio credentials for `sms` and `whatsapp`, SES credentials for `email`", content_type = "application/json"),
    responses(
        (status = 201, description = "saved; `is_verified` says whether the provider accepted them", body = ChannelView),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "route_not_found: not a channel", body = crate::error::ErrorBody),
        (status = 409, description = "account_in_use: the Twilio account is the platform's or another tenant's (`field`: account_sid)", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: every failing field is listed in `fields`", body = crate::error::ErrorBody),
        (status = 429, description = "rate_limited, or credential_checks_exhausted: the tenant's credential checks this hour are used up (admin.credential_checks_per_tenant_per_hour); Retry-After says when", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn save(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(channel): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let channel = channel_of(&channel)?;
    let mut row = parse_credentials(&state, &caller, channel, &body)?;
    if let Some(account) = setting(&row, ACCOUNT_SID) {
        account_is_free(&state, &caller, account).await?;
    }
    state.limits.credential_check(&caller.tenant_id)?;
    match verify(&state, &row).await {
        Ok(()) => row.is_verified = true,
        Err(reason) => row.verification_error = Some(reason),
    }
    state.store.put_credentials(&row).await?;
    let identity = setting(&row, ACCOUNT_SID).or_else(|| setting(&row, ACCESS_KEY_ID));
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "channel_credentials.saved",
        json!({
            "channel": channel,
            "account": identity,
            "is_verified": row.is_verified,
            "key_id": row.key_id,
        }),
    )
    .await?;
    tracing::info!(tenant = %caller.tenant_id, %channel, verified = row.is_verified, "channel credentials saved");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// `GET /v1/channels/{channel}`: the channel's credentials, without the secret.
#[utoipa::path(
    operation_id = "channels_get",
    get,
    path = "/v1/channels/{channel}",
    tag = "channels",
    params(("channel" = common::Channel, Path, description = "`sms`, `whatsapp` or `email`")),
    responses(
        (status = 200, description = "the channel's credentials, without the secret", body = ChannelView),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "channel_not_configured, or route_not_found: not a channel", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(channel): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    let channel = channel_of(&channel)?;
    let row = state
        .store
        .credentials(&caller.tenant_id, channel)
        .await?
        .ok_or_else(|| ApiError::not_found("channel_not_configured", "no credentials for this channel"))?;
    Ok(Json(row.into()))
}

/// `DELETE /v1/channels/{channel}`: removes the credentials; the channel stops sending.
#[utoipa::path(
    operation_id = "channels_delete",
    delete,
    path = "/v1/channels/{channel}",
    tag = "channels",
    params(("channel" = common::Channel, Path, description = "`sms`, `whatsapp` or `email`")),
    responses(
        (status = 204, description = "removed; the channel stops sending"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 404, description = "channel_not_configured, or route_not_found: not a channel", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: TenantCaller,
    Path(channel): Path<String>,
) -> Result<StatusCode, ApiError> {
    let channel = channel_of(&channel)?;
    if !state.store.delete_credentials(&caller.tenant_id, channel).await? {
        return Err(ApiError::not_found(
            "channel_not_configured",
            "no credentials for this channel",
        ));
    }
    crate::audit::record(
        &state,
        &caller.tenant_id,
        &caller.key_id,
        "channel_credentials.deleted",
        json!({ "channel": channel }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_topic_arns_are_checked() {
        let arn = |raw| rules::SNS_TOPIC_ARN.matches(raw);
        assert!(arn("arn:aws:sns:us-east-1:123456789012:ses-events"));
        assert!(!arn("arn:aws:sns:us-east-1:1234:ses-events"));
        assert!(!arn("arn:aws:sqs:us-east-1:123456789012:ses-events"));
        assert!(!arn("arn:aws:sns:us-east-1:123456789012:a:b"));
        let region = |raw| rules::AWS_REGION.matches(raw);
        assert!(region("us-east-1"));
        assert!(region("ap-southeast-2"));
        assert!(!region("US-EAST-1"));
        assert!(!region("useast1"));
    }
}
