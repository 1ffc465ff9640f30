//! SES events, delivered by SNS: `POST /webhooks/ses`.
//!
//! Every message is checked before it does anything; one that fails answers 403, is counted
//! under its code, and changes nothing:
//!
//! - the topic: one of the platform's (`providers.ses.sns_topic_arns`, events for any tenant),
//!   or, at `POST /webhooks/ses?tenant=<id>`, the one that tenant's verified email channel
//!   names (`sns_topic_arn`), whose events may only name that tenant's messages
//!   (`unexpected_topic`, `foreign_tenant`): a tenant's own AWS account can publish anything
//!   to its topic;
//! - the age: published at most `providers.ses.sns_max_age_secs` ago (`stale_message`);
//! - the signature ([`SnsVerifier`]: certificate URL rule, RSA signature); a message without
//!   one is refused like a wrong one (`invalid_signature`).
//!
//! Then:
//!
//! - `SubscriptionConfirmation`: the `SubscribeURL` is fetched (after the same URL rule, so a
//!   forged confirmation cannot make us fetch anything else, and without following redirects),
//!   which confirms the subscription.
//! - `Notification`: applied once per SNS `MessageId` (a replay changes nothing). The SES
//!   event in `Message` moves the message its tags name (the dispatcher tags every email with
//!   its tenant and message id: [`common::ses::tags`]) (`Send` -> sent, `Delivery` ->
//!   delivered, `Open`/`Click` -> read, permanent `Bounce` -> undelivered, `Reject`/`Rendering
//!   Failure` -> failed; never backwards). A permanent bounce or a complaint suppresses the
//!   recipient of that message if the event names it, never another address it lists. An
//!   event for a message we do not know answers 204 and is counted.
//! - `UnsubscribeConfirmation`: logged; someone removed the subscription.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use common::config::SesSettings;
use common::credentials::{SNS_TOPIC_ARN, setting};
use common::ses::events::{SesBounceType, SesEventType};
use common::ses::sns::{
    CertUrlPolicy, CertificateSource, SnsError, SnsMessage, SnsVerifier, TYPE_NOTIFICATION,
    TYPE_SUBSCRIPTION_CONFIRMATION, TYPE_UNSUBSCRIBE_CONFIRMATION,
};
use common::ses::tags::message_of_tags;
use common::store::{StatusUpdate, Suppression, SuppressionReason};
use common::telemetry::untrusted;
use common::{Channel, EmailAddress, MessageId, TenantId};
use serde::Deserialize;
use time::OffsetDateTime;

use super::count;
use crate::{ApiError, AppState};

const SOURCE: &str = "ses";
/// The longest SNS `MessageId` accepted (SNS writes a 36-character UUID).
const MAX_SNS_MESSAGE_ID: usize = 64;
/// The largest certificate accepted from a `SigningCertURL`.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// Fetches signing certificates and confirmation URLs over HTTP(S), with short timeouts and no
/// redirects.
pub(crate) struct HttpCertificates {
    http: reqwest::Client,
}

impl HttpCertificates {
    /// A fetcher with a 5 s timeout.
    pub(crate) fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http })
    }
}

#[async_trait]
impl CertificateSource for HttpCertificates {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, SnsError> {
        let failed = |reason: String| SnsError::CertificateFetch {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| failed(error.to_string()))?;
        let body = response.bytes().await.map_err(|error| failed(error.to_string()))?;
        if body.len() > MAX_CERTIFICATE_BYTES {
            return Err(failed(format!("larger than {MAX_CERTIFICATE_BYTES} bytes")));
        }
        Ok(body.to_vec())
    }
}

/// The verifier the settings describe: the expected topics, and the certificate URL rule (AWS's,
/// unless a simulator's exact certificate URL is configured).
pub(crate) fn verifier(settings: &SesSettings) -> Result<SnsVerifier, reqwest::Error> {
    let policy = settings
        .sns_cert_url
        .clone()
        .map_or(CertUrlPolicy::Aws, CertUrlPolicy::Exact);
    Ok(SnsVerifier::new(
        settings.sns_topic_arns.iter().cloned(),
        Arc::new(HttpCertificates::new()?),
    )
    .with_cert_url_policy(policy)
    .with_max_age(Duration::from_secs(settings.sns_max_age_secs)))
}

/// The parts of an SES event this service reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesEvent {
    event_type: Option<String>,
    notification_type: Option<String>,
    mail: SesMail,
    bounce: Option<SesBounce>,
    complaint: Option<SesComplaint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesMail {
    message_id: String,
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesBounce {
    bounce_type: String,
    #[serde(default)]
    bounced_recipients: Vec<SesRecipient>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesComplaint {
    #[serde(default)]
    complained_recipients: Vec<SesRecipient>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SesRecipient {
    email_address: String,
}

/// `POST /webhooks/ses` query: the tenant whose own topic this subscription is for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SesQuery {
    /// The tenant whose email channel names the topic (`sns_topic_arn`); absent for the
    /// platform's topics (`providers.ses.sns_topic_arns`).
    pub tenant: Option<String>,
}

/// A refusal: 403 with `code`, counted under it.
fn refused(code: &'static str, message: &'static str) -> ApiError {
    count(SOURCE, code);
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

/// `POST /webhooks/ses`.
#[utoipa::path(
    operation_id = "ses_events_ses",
    post,
    path = "/webhooks/ses",
    tag = "webhooks",
    params(SesQuery),
    request_body(content = crate::openapi::SnsMessageRequest, description = "an SNS message, signed in its `Signature` field (SNS posts it as text/plain)", content_type = "text/plain"),
    responses(
        (status = 204, description = "applied, confirmed, or ignored (also a notification already processed, which changes nothing)"),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 403, description = "invalid_signature: the SNS message does not verify (no or a wrong Signature); unexpected_topic: the topic is neither the platform's nor the named tenant's; stale_message: published longer ago than providers.ses.sns_max_age_secs; foreign_tenant: the event names a message of another tenant than the topic's", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: an unknown Type, a bad SubscribeURL or MessageId, or a Message that is no SES event", body = crate::error::ErrorBody),
        (status = 502, description = "subscription_confirmation_failed: SNS retries", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn ses(
    State(state): State<AppState>,
    Query(query): Query<SesQuery>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let message: SnsMessage = serde_json::from_slice(&body).map_err(|error| {
        count(SOURCE, "malformed");
        ApiError::malformed(error.to_string())
    })?;
    // The topic first (cheap, and a message from an unknown topic fetches nothing): the
    // platform's own, or the one the named tenant stored with its email channel.
    let owner = match query.tenant.as_deref().map(TenantId::parse) {
        None => None,
        Some(Ok(tenant)) => Some(tenant),
        Some(Err(_)) => return Err(refused("unexpected_topic", "the topic is not one this API accepts")),
    };
    let topic_accepted = match &owner {
        None => state.sns.expects_topic(&message.topic_arn),
        Some(tenant) => tenant_topic(&state, tenant).await?.as_deref() == Some(message.topic_arn.as_str()),
    };
    if !topic_accepted {
        tracing::warn!(topic = %untrusted(&message.topic_arn), tenant = ?owner, "sns message from a topic not accepted here");
        return Err(refused("unexpected_topic", "the topic is not one this API accepts"));
    }
    match state.sns.verify_signature(&message).await {
        Ok(()) => {}
        Err(SnsError::Stale(_)) => {
            return Err(refused("stale_message", "the SNS message was published too long ago"));
        }
        Err(error) => {
            tracing::warn!(topic = message.topic_arn, %error, "sns message does not verify");
            return Err(refused("invalid_signature", "the SNS message does not verify"));
        }
    }
    match message.message_type.as_str() {
        TYPE_SUBSCRIPTION_CONFIRMATION => confirm(&state, &message).await,
        TYPE_UNSUBSCRIBE_CONFIRMATION => {
            count(SOURCE, "unsubscribed");
            tracing::warn!(
                topic = message.topic_arn,
                "sns subscription removed; ses events will stop"
            );
            Ok(StatusCode::NO_CONTENT)
        }
        TYPE_NOTIFICATION => notification(&state, &message, owner.as_ref()).await,
        other => {
            count(SOURCE, "malformed");
            Err(ApiError::invalid(
                "Type",
                format!("unknown SNS message type {:?}", untrusted(other)),
            ))
        }
    }
}

/// The SNS topic a tenant's verified email channel names, if any.
async fn tenant_topic(state: &AppState, tenant: &TenantId) -> Result<Option<String>, ApiError> {
    let row = state.store.credentials(tenant, Channel::Email).await?;
    Ok(row
        .filter(|row| row.is_verified)
        .and_then(|row| setting(&row, SNS_TOPIC_ARN).map(str::to_owned)))
}

/// Confirms a subscription by fetching its `SubscribeURL`.
async fn confirm(state: &AppState, message: &SnsMessage) -> Result<StatusCode, ApiError> {
    let url = message
        .subscribe_url
        .as_deref()
        .ok_or_else(|| ApiError::invalid("SubscribeURL", "a subscription confirmation needs SubscribeURL"))?;
    state
        .sns
        .cert_url_policy()
        .check_subscribe_url(url)
        .map_err(|error| ApiError::invalid("SubscribeURL", error.to_string()))?;
    // No redirects: the URL passed the rule, where it might redirect to did not.
    let confirmed = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| error.to_string());
    let confirmed = match confirmed {
        Ok(client) => match client.get(url).send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("answered {}", answer.status())),
            Err(error) => Err(error.to_string()),
        },
        Err(error) => Err(error),
    };
    match confirmed {
        Ok(()) => {
            count(SOURCE, "subscription_confirmed");
            tracing::info!(topic = message.topic_arn, "sns subscription confirmed");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(error) => {
            count(SOURCE, "subscription_failed");
            tracing::warn!(topic = message.topic_arn, %error, "sns subscription confirmation failed");
            // 5xx: SNS sends the confirmation again.
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "subscription_confirmation_failed",
                "the subscription could not be confirmed; SNS will retry",
            ))
        }
    }
}

/// Applies one SES event, once per SNS `MessageId`, to the message its tags name; `owner`, the
/// tenant whose own topic brought it, must be that message's tenant.
async fn notification(
    state: &AppState,
    message: &SnsMessage,
    owner: Option<&TenantId>,
) -> Result<StatusCode, ApiError> {
    let event: SesEvent = serde_json::from_str(&message.message).map_err(|error| {
        count(SOURCE, "malformed");
        ApiError::invalid("Message", format!("not an SES event: {error}"))
    })?;
    let kind = event
        .event_type
        .as_deref()
        .or(event.notification_type.as_deref())
        .and_then(|kind| SesEventType::parse(kind).ok());
    let Some(kind) = kind else {
        count(SOURCE, "ignored");
        return Ok(StatusCode::NO_CONTENT);
    };
    let ses_id = event.mail.message_id.as_str();
    let Some((tenant, message_id)) = message_of_tags(&event.mail.tags) else {
        count(SOURCE, "unknown_message");
        tracing::info!(ses_id = %untrusted(ses_id), "ses event without our message in its tags");
        return Ok(StatusCode::NO_CONTENT);
    };
    if owner.is_some_and(|owner| *owner != tenant) {
        tracing::warn!(owner = ?owner, %tenant, "ses event from a tenant's topic names another tenant's message");
        return Err(refused(
            "foreign_tenant",
            "the event names a message of another tenant than the topic's",
        ));
    }
    if message.message_id.is_empty() || message.message_id.len() > MAX_SNS_MESSAGE_ID {
        count(SOURCE, "malformed");
        return Err(ApiError::invalid("MessageId", "must be 1 to 64 characters"));
    }
    let event_id = format!("sns:{}", message.message_id);
    if state.store.event_processed(&tenant, &event_id).await? {
        count(SOURCE, "replayed");
        tracing::info!(%tenant, %message_id, "sns notification already processed");
        return Ok(StatusCode::NO_CONTENT);
    }
    let bounce_type = event
        .bounce
        .as_ref()
        .and_then(|bounce| SesBounceType::parse(&bounce.bounce_type).ok());
    let outcome = kind.outcome(bounce_type);
    let now = OffsetDateTime::now_utc();
    if outcome.suppress_recipient {
        suppress_recipient(state, &event, &tenant, &message_id, now).await?;
    }
    if let Some(status) = outcome.status {
        let reason = status
            .is_failure()
            .then(|| format!("SES_{}", kind.as_str().to_ascii_uppercase().replace(' ', "_")));
        state
            .statuses
            .apply(vec![StatusUpdate {
                tenant_id: tenant.clone(),
                message_id: message_id.clone(),
                status,
                at: now,
                reason,
                provider_message_id: Some(ses_id.to_owned()),
                held: None,
            }])
            .await?;
    }
    state.store.mark_event_processed(&tenant, &event_id, now).await?;
    count(SOURCE, "applied");
    tracing::debug!(%tenant, %message_id, event = kind.as_str(), "ses event applied");
    Ok(StatusCode::NO_CONTENT)
}

/// Suppresses the recipient of the message a bounce or complaint names, if the event lists
/// it: never any other address the event lists.
async fn suppress_recipient(
    state: &AppState,
    event: &SesEvent,
    tenant: &TenantId,
    message_id: &MessageId,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let (recipients, reason) = match (&event.bounce, &event.complaint) {
        (Some(bounce), _) => (&bounce.bounced_recipients, SuppressionReason::Bounce),
        (None, Some(complaint)) => (&complaint.complained_recipients, SuppressionReason::Complaint),
        (None, None) => return Ok(()),
    };
    let Some(record) = state.store.message(tenant, message_id).await? else {
        return Ok(());
    };
    let named = recipients.iter().any(|recipient| {
        EmailAddress::parse(&recipient.email_address)
            .is_ok_and(|address| address.as_str().eq_ignore_ascii_case(&record.recipient))
    });
    if !named {
        count(SOURCE, "foreign_recipient");
        tracing::warn!(%tenant, %message_id, "ses event does not name its message's recipient; nothing suppressed");
        return Ok(());
    }
    state
        .store
        .suppress(&Suppression {
            tenant_id: tenant.clone(),
            address: record.recipient,
            reason,
            source: Some(event.mail.message_id.clone()),
            created_at: now,
        })
        .await?;
    Ok(())
}
