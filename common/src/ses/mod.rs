//! AWS SES v2 as the services use it: a thin client on `aws-sdk-sesv2` ([`SesClient`]) that
//! sends one email (`SendEmail`) or up to 50 templated ones (`SendBulkEmail`), each tagged with
//! its tenant and message id ([`tags`]), and maps every answer (or its absence) to an
//! [`SesSendOutcome`] per message: what the dispatcher may safely do next. SES events come
//! back as SNS notifications, whose signatures [`sns`] verifies; [`events`] says what each
//! means for the message. [`provider`] is the [`crate::provider::Provider`] the dispatcher
//! sends email through; [`templates`] manages a tenant's email templates.
//!
//! # Transient or unknown: the rule
//!
//! The rule of `common::twilio::client` holds here too: sending an email twice annoys the
//! recipient, so a failure only counts as transient (safe to send again) when SES cannot have
//! processed the request. Only a failure *while connecting* (DNS, TCP connect, TLS handshake,
//! connect timeout) proves nothing was sent; once a connection exists, any failure may have
//! happened after SES read the request. The SDK's own retries are switched off (the dispatcher
//! retries, with backoff, within the message's validity), so a request is written at most once
//! per call.
//!
//! # The mapping table
//!
//! A whole-call answer applies to every message of the call; a `SendBulkEmail` answer maps each
//! entry's `Status` on its own.
//!
//! | what happened | outcome | label |
//! |---|---|---|
//! | `SendEmail` 2xx with a `MessageId`; bulk entry `SUCCESS` with a `MessageId` | `Accepted` | |
//! | `TooManyRequestsException` (HTTP 429), `Throttling`, `ThrottlingException` | `Transient` | `SES_THROTTLED` |
//! | bulk entry `ACCOUNT_THROTTLED` | `Transient` | `SES_ACCOUNT_THROTTLED` |
//! | bulk entry `TRANSIENT_FAILURE` | `Transient` | `SES_TRANSIENT_FAILURE` |
//! | HTTP 500, 502, 503 and other 5xx except 504 | `Transient` (honouring `Retry-After`) | `SES_HTTP_<status>` |
//! | connect error (DNS, TCP, TLS handshake, connect timeout) | `Transient` | `SES_CONNECT` |
//! | the request could not be built (never sent) | `Transient` | `SES_REQUEST_BUILD` |
//! | `MessageRejected`; bulk `MESSAGE_REJECTED` | `Rejected`, `Permanent` | `SES_MESSAGE_REJECTED` |
//! | `MailFromDomainNotVerifiedException`; bulk `MAIL_FROM_DOMAIN_NOT_VERIFIED` | `Rejected`, `Permanent` | `SES_MAIL_FROM_DOMAIN_NOT_VERIFIED` |
//! | `BadRequestException` (HTTP 400: invalid input, more than 50 bulk entries) | `Rejected`, `Permanent` | `SES_BAD_REQUEST` |
//! | bulk `FAILED`; bulk `INVALID_PARAMETER` | `Rejected`, `Permanent` | `SES_FAILED`, `SES_INVALID_PARAMETER` |
//! | any other 4xx | `Rejected`, `Permanent` | `SES_HTTP_<status>` |
//! | `SendingPausedException`; bulk `ACCOUNT_SENDING_PAUSED`, `CONFIGURATION_SET_SENDING_PAUSED` | `Rejected`, `NeedsAttention` | `SES_SENDING_PAUSED` |
//! | `AccountSuspendedException`; bulk `ACCOUNT_SUSPENDED` | `Rejected`, `NeedsAttention` | `SES_ACCOUNT_SUSPENDED` |
//! | `LimitExceededException` | `Rejected`, `NeedsAttention` | `SES_LIMIT_EXCEEDED` |
//! | bulk `ACCOUNT_DAILY_QUOTA_EXCEEDED` (the 24 h quota: waiting minutes does not help) | `Rejected`, `NeedsAttention` | `SES_DAILY_QUOTA_EXCEEDED` |
//! | `NotFoundException`; bulk `TEMPLATE_NOT_FOUND`, `CONFIGURATION_SET_NOT_FOUND`, `INVALID_SENDING_POOL_NAME` (the tenant's setup) | `Rejected`, `NeedsAttention` | `SES_NOT_FOUND`, `SES_TEMPLATE_NOT_FOUND`, ... |
//! | HTTP 401/403, `UnrecognizedClientException`, `InvalidClientTokenId`, `SignatureDoesNotMatch`, `AccessDeniedException`, `MissingAuthenticationTokenException` | `Rejected`, `NeedsAttention` | `SES_AUTH` |
//! | HTTP 504 (a gateway gave up waiting for SES, which may still have sent it) | `Unknown` | `SES_HTTP_504` |
//! | timeout once connected, connection lost mid-exchange | `Unknown` | `SES_TIMEOUT`, `SES_CONNECTION_LOST` |
//! | 2xx without a `MessageId`, an unreadable answer, fewer bulk results than entries, an unrecognized bulk status | `Unknown` | `SES_RESPONSE_UNREADABLE`, `SES_RESPONSE_INCOMPLETE`, `SES_ENTRY_STATUS_UNRECOGNIZED` |
//!
//! Facts come from `shared/reference/providers.md` ("AWS SES v2"); `NotFoundException`,
//! the 401/403 family and 504 are classified by analogy (unconfirmed).

mod client;
pub mod events;
mod outcome;
pub mod provider;
pub mod sns;
pub mod tags;
pub mod templates;

pub use client::{
    BulkEmail, BulkEntry, EmailContent, MAX_BULK_ENTRIES, OutboundEmail, SesAccount, SesClient, SesError, SesSettings,
    SesTimeouts,
};
pub use outcome::{RejectClass, SesSendOutcome, bulk_status_outcome};

use crate::credentials::{
    self, ACCESS_KEY_ID, CONFIGURATION_SET, CredentialsError, Keyring, REGION, UNSUBSCRIBE_MAILBOX,
    UNSUBSCRIBE_TRANSACTIONAL, setting,
};
use crate::store::{ChannelCredentials, ProviderKind};

/// The SES account a stored row holds, its secret key opened with `keyring`.
pub fn open_account(keyring: &Keyring, credentials: &ChannelCredentials) -> Result<SesAccount, CredentialsError> {
    if credentials.provider != ProviderKind::Ses {
        return Err(CredentialsError::WrongProvider {
            expected: ProviderKind::Ses,
            found: credentials.provider,
        });
    }
    let key = setting(credentials, ACCESS_KEY_ID).ok_or(CredentialsError::MissingSetting(ACCESS_KEY_ID))?;
    let region = setting(credentials, REGION).ok_or(CredentialsError::MissingSetting(REGION))?;
    let mut account = SesAccount::new(key, credentials::open(keyring, credentials)?, region);
    account.configuration_set = setting(credentials, CONFIGURATION_SET).map(str::to_owned);
    account.unsubscribe_mailbox = setting(credentials, UNSUBSCRIBE_MAILBOX).map(str::to_owned);
    account.unsubscribe_transactional = credentials
        .settings
        .get(UNSUBSCRIBE_TRANSACTIONAL)
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(account)
}
