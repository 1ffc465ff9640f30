//! SES events, delivered by SNS: `POST /webhooks/ses`.
//!
//! Every message is verified first ([`SnsVerifier`]: expected topic, certificate URL rule,
//! RSA signature); one that fails answers 403 and changes nothing. Then:
//!
//! - `SubscriptionConfirmation`: the `SubscribeURL` is fetched (after the same URL rule, so a
//!   forged confirmation cannot make us fetch anything else), which confirms the subscription.
//! - `Notification`: the SES event in `Message` moves the message its tags name (the dispatcher
//!   tags every email with its tenant and message id: [`common::ses::tags`]) (`Send` -> sent, `Delivery` -> delivered, `Open`/`Click` -> read, permanent `Bounce` ->
//!   undelivered, `Reject`/`Rendering Failure` -> failed; never backwards). Permanent bounces
//!   and complaints suppress the recipients named in the event. An event for a message we do
//!   not know answers 204 and is counted.
//! - `UnsubscribeConfirmation`: logged; someone removed the subscription.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::EmailAddress;
use common::config::SesSettings;
use common::ses::tags::message_of_tags;
use common::signature::sns::{
    CertUrlPolicy, CertificateSource, SnsError, SnsMessage, SnsVerifier, TYPE_NOTIFICATION,
    TYPE_SUBSCRIPTION_CONFIRMATION, TYPE_UNSUBSCRIBE_CONFIRMATION,
};
use common::status::{SesBounceType, SesEventType};
use common::store::{StatusUpdate, Suppression, SuppressionReason};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::webhooks::count;
use crate::{ApiError, AppState};

const SOURCE: &str = "ses";
/// The largest certificate accepted from a `SigningCertURL`.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// Fetches signing certificates and confirmation URLs over HTTP(S), with short timeouts and no
/// redirects.
pub struct HttpCertificates {
    http: reqwest::Client,
}

impl HttpCertificates {
    /// A fetcher with a 5 s timeout.
    pub fn new() -> Result<Self, reqwest::Error> {
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
pub fn verifier(settings: &SesSettings) -> Result<SnsVerifier, reqwest::Error> {
    let policy = settings
        .sns_cert_url
        .clone()
        .map_or(CertUrlPolicy::Aws, CertUrlPolicy::Exact);
    Ok(SnsVerifier::new(
        settings.sns_topic_arns.iter().cloned(),
        Arc::new(HttpCertificates::new()?),
    )
    .with_cert_url_policy(policy))
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

/// `POST /webhooks/ses`.
#[utoipa::path(
    operation_id = "ses_events_ses",
    post,
    path = "/webhooks/ses",
    tag = "webhooks",
    request_body(content = crate::openapi::SnsMessageRequest, description = "an SNS message, signed in its `Signature` field (SNS posts it as text/plain)", content_type = "text/plain"),
    responses(
        (status = 204, description = "applied, confirmed, or ignored"),
        (status = 400, description = "malformed_json: the body is not the JSON expected", body = crate::error::ErrorBody),
        (status = 403, description = "invalid_signature: the SNS message does not verify", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: an unknown Type, a bad SubscribeURL or a Message that is no SES event", body = crate::error::ErrorBody),
        (status = 502, description = "subscription_confirmation_failed: SNS retries", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub async fn ses(State(state): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let message: SnsMessage = serde_json::from_slice(&body).map_err(|error| {
        count(SOURCE, "malformed");
        ApiError::malformed(error.to_string())
    })?;
    if let Err(error) = state.sns.verify(&message).await {
        count(SOURCE, "invalid_signature");
        tracing::warn!(topic = message.topic_arn, %error, "sns message does not verify");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "the SNS message does not verify",
        ));
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
        TYPE_NOTIFICATION => notification(&state, &message).await,
        other => {
            count(SOURCE, "malformed");
            Err(ApiError::invalid("Type", format!("unknown SNS message type {other:?}")))
        }
    }
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
    let confirmed = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    match confirmed {
        Ok(_) => {
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

/// Applies one SES event.
async fn notification(state: &AppState, message: &SnsMessage) -> Result<StatusCode, ApiError> {
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
        tracing::info!(ses_id, "ses event without our message in its tags");
        return Ok(StatusCode::NO_CONTENT);
    };
    let bounce_type = event
        .bounce
        .as_ref()
        .and_then(|bounce| SesBounceType::parse(&bounce.bounce_type).ok());
    let outcome = kind.outcome(bounce_type);
    let now = OffsetDateTime::now_utc();
    if outcome.suppress_recipient {
        let (recipients, reason) = match (&event.bounce, &event.complaint) {
            (Some(bounce), _) => (&bounce.bounced_recipients, SuppressionReason::Bounce),
            (None, Some(complaint)) => (&complaint.complained_recipients, SuppressionReason::Complaint),
            (None, None) => (&Vec::new(), SuppressionReason::Bounce),
        };
        for recipient in recipients {
            let Ok(address) = EmailAddress::parse(&recipient.email_address) else {
                tracing::warn!(%tenant, ses_id, "ses event names an invalid recipient address");
                continue;
            };
            state
                .store
                .suppress(&Suppression {
                    tenant_id: tenant.clone(),
                    address: address.as_str().to_owned(),
                    reason,
                    source: Some(ses_id.to_owned()),
                    created_at: now,
                })
                .await?;
        }
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
    count(SOURCE, "applied");
    tracing::debug!(%tenant, %message_id, event = kind.as_str(), "ses event applied");
    Ok(StatusCode::NO_CONTENT)
}
