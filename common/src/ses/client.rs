//! [`SesClient`]: `SendEmail` and `SendBulkEmail` through `aws-sdk-sesv2`, one SDK client per
//! account, cached.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sesv2::types::{
    Body, BulkEmailContent, BulkEmailEntry, Content, Destination, EmailContent as SdkEmailContent, Message,
    MessageHeader, MessageTag, ReplacementEmailContent, ReplacementTemplate, Template,
};
use dashmap::DashMap;
use secrecy::{ExposeSecret, SecretString};

use super::outcome::{SesSendOutcome, bulk_status_outcome, sdk_error_outcome};
use crate::ids::{MessageId, TenantId};

/// The most entries SES takes in one `SendBulkEmail` call.
pub const MAX_BULK_ENTRIES: usize = 50;
/// The charset declared for subjects and bodies.
const CHARSET: &str = "UTF-8";
/// The provider name the SDK records for our static credentials.
const CREDENTIALS_PROVIDER: &str = "engageninja";

/// An invalid client configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SesError {
    /// The endpoint does not parse or is not an `http`/`https` URL with a host.
    #[error("invalid ses endpoint {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connect timeout is not shorter than the request timeout.
    #[error("the connect timeout ({connect:?}) must be shorter than the request timeout ({request:?})")]
    Timeouts {
        /// The connect timeout.
        connect: Duration,
        /// The request timeout.
        request: Duration,
    },
}

/// How long an [`SesClient`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SesTimeouts {
    /// The longest wait for DNS, TCP connect and the TLS handshake; a connect that takes
    /// longer is a transient failure.
    pub connect: Duration,
    /// The longest wait for a whole call, from connecting to the last byte of the answer; a
    /// call that takes longer has an unknown outcome.
    pub request: Duration,
}

impl Default for SesTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            request: Duration::from_secs(15),
        }
    }
}

/// How an [`SesClient`] connects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SesSettings {
    /// Overrides the regional AWS endpoint (`https://email.<region>.amazonaws.com`); tests
    /// point it at moto or the provider simulator.
    pub endpoint: Option<String>,
    /// Connect and request timeouts.
    pub timeouts: SesTimeouts,
}

impl From<&crate::config::SesSettings> for SesSettings {
    /// The client's settings from the process's `[providers.ses]`.
    fn from(settings: &crate::config::SesSettings) -> Self {
        Self {
            endpoint: settings.endpoint.clone(),
            ..Self::default()
        }
    }
}

/// An AWS account's SES credentials and sending options; `Debug` never shows the secret.
#[derive(Debug, Clone)]
pub struct SesAccount {
    /// The access key id (`AKIA...`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The region to send in (`us-east-1`); quotas are per region.
    pub region: String,
    /// The configuration set that routes the account's events (SNS destination), if any.
    pub configuration_set: Option<String>,
    /// Where unsubscribe requests by email go (the `mailto` of `List-Unsubscribe`); the
    /// sender address when absent.
    pub unsubscribe_mailbox: Option<String>,
    /// Whether transactional email carries the unsubscribe headers too (marketing always does).
    pub unsubscribe_transactional: bool,
}

impl SesAccount {
    /// An account from its keys and region, without a configuration set.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<SecretString>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            region: region.into(),
            configuration_set: None,
            unsubscribe_mailbox: None,
            unsubscribe_transactional: false,
        }
    }
}

/// What one email says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailContent {
    /// A subject and a text part, an HTML part, or both.
    Simple {
        /// The subject line.
        subject: String,
        /// The text part.
        text: Option<String>,
        /// The HTML part.
        html: Option<String>,
    },
    /// A template stored in SES.
    Template {
        /// The template's name.
        name: String,
        /// The values of its placeholders, as a JSON object.
        data: String,
    },
}

/// One email for `SendEmail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundEmail {
    /// The sender address (a verified identity of the account).
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// What it says.
    pub content: EmailContent,
    /// Headers added to the message (`List-Unsubscribe`, ...): name and value.
    pub headers: Vec<(String, String)>,
    /// Its tenant, sent as an email tag ([`super::tags`]).
    pub tenant_id: TenantId,
    /// Our message id, sent as an email tag ([`super::tags`]).
    pub message_id: MessageId,
}

/// One entry of a [`BulkEmail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkEntry {
    /// The recipients.
    pub to: Vec<String>,
    /// The values of the template's placeholders for this entry, as a JSON object.
    pub template_data: String,
    /// Headers added to this entry's message (`ReplacementHeaders`): name and value.
    pub headers: Vec<(String, String)>,
    /// Its tenant, sent as a replacement tag ([`super::tags`]).
    pub tenant_id: TenantId,
    /// Our message id, sent as a replacement tag ([`super::tags`]).
    pub message_id: MessageId,
}

/// Templated emails for one `SendBulkEmail` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkEmail {
    /// The sender address.
    pub from: String,
    /// The template's name.
    pub template: String,
    /// The default values of the placeholders, as a JSON object (`{}` for none).
    pub default_template_data: String,
    /// One entry per email, at most [`MAX_BULK_ENTRIES`] (SES refuses more with
    /// `BadRequestException`; the client does not check, so callers see SES's answer).
    pub entries: Vec<BulkEntry>,
}

/// A cached SDK client and the secret it was built with.
struct CachedClient {
    secret: SecretString,
    client: aws_sdk_sesv2::Client,
}

/// A client for SES v2's sending calls. It keeps one SDK client (with its connection pool) per
/// access key id and region, built on first use; credentials travel in the [`SesAccount`] of
/// each call. Cheap to clone.
#[derive(Clone)]
pub struct SesClient {
    settings: SesSettings,
    clients: Arc<DashMap<(String, String), CachedClient>>,
}

impl fmt::Debug for SesClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SesClient")
            .field("settings", &self.settings)
            .field("cached_clients", &self.clients.len())
            .finish()
    }
}

impl SesClient {
    /// A client with these settings.
    pub fn new(settings: SesSettings) -> Result<Self, SesError> {
        if let Some(endpoint) = &settings.endpoint {
            check_endpoint(endpoint)?;
        }
        let SesTimeouts { connect, request } = settings.timeouts;
        if connect >= request {
            return Err(SesError::Timeouts { connect, request });
        }
        Ok(Self {
            settings,
            clients: Arc::new(DashMap::new()),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &SesSettings {
        &self.settings
    }

    /// The SDK client for `account` (cached), for calls this client does not wrap (creating
    /// identities and templates at onboarding, tests).
    pub fn sdk_client(&self, account: &SesAccount) -> aws_sdk_sesv2::Client {
        let key = (account.access_key_id.clone(), account.region.clone());
        if let Some(cached) = self.clients.get(&key)
            && cached.secret.expose_secret() == account.secret_access_key.expose_secret()
        {
            return cached.client.clone();
        }
        let client = self.build(account);
        tracing::debug!(access_key_id = %account.access_key_id, region = %account.region, "ses client built");
        self.clients.insert(
            key,
            CachedClient {
                secret: account.secret_access_key.clone(),
                client: client.clone(),
            },
        );
        client
    }

    /// Builds an SDK client: static credentials, no SDK retries (see the module docs), our
    /// timeouts, the endpoint override if any.
    fn build(&self, account: &SesAccount) -> aws_sdk_sesv2::Client {
        let credentials = Credentials::new(
            account.access_key_id.clone(),
            account.secret_access_key.expose_secret().to_owned(),
            None,
            None,
            CREDENTIALS_PROVIDER,
        );
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.settings.timeouts.connect)
            .operation_timeout(self.settings.timeouts.request)
            .build();
        let mut config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(account.region.clone()))
            .credentials_provider(credentials)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(endpoint) = &self.settings.endpoint {
            config = config.endpoint_url(endpoint.clone());
        }
        aws_sdk_sesv2::Client::from_conf(config.build())
    }

    /// Sends one email with `SendEmail`; the account's configuration set goes with it.
    pub async fn send_email(&self, account: &SesAccount, email: &OutboundEmail) -> SesSendOutcome {
        let Ok(headers) = sdk_headers(&email.headers) else {
            return build_failure();
        };
        let content = match &email.content {
            EmailContent::Simple { subject, text, html } => {
                let parts = (
                    content_part(subject),
                    text.as_deref().map(content_part).transpose(),
                    html.as_deref().map(content_part).transpose(),
                );
                let (Ok(subject), Ok(text), Ok(html)) = parts else {
                    return build_failure();
                };
                SdkEmailContent::builder()
                    .simple(
                        Message::builder()
                            .subject(subject)
                            .body(Body::builder().set_text(text).set_html(html).build())
                            .set_headers(headers)
                            .build(),
                    )
                    .build()
            }
            EmailContent::Template { name, data } => SdkEmailContent::builder()
                .template(
                    Template::builder()
                        .template_name(name)
                        .template_data(data)
                        .set_headers(headers)
                        .build(),
                )
                .build(),
        };
        let Ok(tags) = sdk_tags(&email.tenant_id, &email.message_id) else {
            return build_failure();
        };
        let result = self
            .sdk_client(account)
            .send_email()
            .from_email_address(&email.from)
            .destination(destination(&email.to))
            .content(content)
            .set_configuration_set_name(account.configuration_set.clone())
            .set_email_tags(Some(tags))
            .send()
            .await;
        match result {
            Ok(output) => match output.message_id().filter(|id| !id.is_empty()) {
                Some(id) => SesSendOutcome::Accepted {
                    message_id: id.to_owned(),
                },
                None => SesSendOutcome::unknown("SES_RESPONSE_UNREADABLE"),
            },
            Err(error) => {
                let outcome = sdk_error_outcome(&error);
                tracing::debug!(
                    access_key_id = %account.access_key_id,
                    message_id = %email.message_id,
                    error = %aws_sdk_sesv2::error::DisplayErrorContext(&error),
                    ?outcome,
                    "ses send email failed"
                );
                outcome
            }
        }
    }

    /// Sends templated emails with one `SendBulkEmail` call; the answer has exactly one outcome
    /// per entry, in order. An error of the whole call applies to every entry.
    pub async fn send_bulk_email(&self, account: &SesAccount, bulk: &BulkEmail) -> Vec<SesSendOutcome> {
        let mut entries = Vec::with_capacity(bulk.entries.len());
        for entry in &bulk.entries {
            let (Ok(tags), Ok(headers)) = (
                sdk_tags(&entry.tenant_id, &entry.message_id),
                sdk_headers(&entry.headers),
            ) else {
                return vec![build_failure(); bulk.entries.len()];
            };
            entries.push(
                BulkEmailEntry::builder()
                    .destination(destination(&entry.to))
                    .set_replacement_tags(Some(tags))
                    .set_replacement_headers(headers)
                    .replacement_email_content(
                        ReplacementEmailContent::builder()
                            .replacement_template(
                                ReplacementTemplate::builder()
                                    .replacement_template_data(&entry.template_data)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            );
        }
        let default_content = BulkEmailContent::builder()
            .template(
                Template::builder()
                    .template_name(&bulk.template)
                    .template_data(&bulk.default_template_data)
                    .build(),
            )
            .build();
        let result = self
            .sdk_client(account)
            .send_bulk_email()
            .from_email_address(&bulk.from)
            .default_content(default_content)
            .set_bulk_email_entries(Some(entries))
            .set_configuration_set_name(account.configuration_set.clone())
            .send()
            .await;
        match result {
            Ok(output) => {
                let results = output.bulk_email_entry_results();
                let mut outcomes: Vec<SesSendOutcome> = results
                    .iter()
                    .take(bulk.entries.len())
                    .map(|result| {
                        let status = result.status().map_or("", |status| status.as_str());
                        bulk_status_outcome(status, result.message_id())
                    })
                    .collect();
                if outcomes.len() < bulk.entries.len() {
                    tracing::warn!(
                        access_key_id = %account.access_key_id,
                        entries = bulk.entries.len(),
                        results = results.len(),
                        "ses bulk answer has fewer results than entries"
                    );
                    outcomes.resize(bulk.entries.len(), SesSendOutcome::unknown("SES_RESPONSE_INCOMPLETE"));
                }
                outcomes
            }
            Err(error) => {
                let outcome = sdk_error_outcome(&error);
                tracing::debug!(
                    access_key_id = %account.access_key_id,
                    entries = bulk.entries.len(),
                    error = %aws_sdk_sesv2::error::DisplayErrorContext(&error),
                    ?outcome,
                    "ses send bulk email failed"
                );
                vec![outcome; bulk.entries.len()]
            }
        }
    }
}

/// The outcome of a request that could not be built (never sent).
fn build_failure() -> SesSendOutcome {
    SesSendOutcome::Transient {
        reason: "SES_REQUEST_BUILD".to_owned(),
        retry_after: None,
    }
}

/// A subject or body part in UTF-8.
fn content_part(data: &str) -> Result<Content, aws_sdk_sesv2::error::BuildError> {
    Content::builder().data(data).charset(CHARSET).build()
}

/// Added headers as the SDK takes them; `None` when there are none.
fn sdk_headers(headers: &[(String, String)]) -> Result<Option<Vec<MessageHeader>>, aws_sdk_sesv2::error::BuildError> {
    if headers.is_empty() {
        return Ok(None);
    }
    headers
        .iter()
        .map(|(name, value)| MessageHeader::builder().name(name).value(value).build())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The `To` addresses of one email.
fn destination(to: &[String]) -> Destination {
    Destination::builder().set_to_addresses(Some(to.to_vec())).build()
}

/// The tags naming a message's tenant and id, as the SDK takes them.
fn sdk_tags(tenant: &TenantId, message: &MessageId) -> Result<Vec<MessageTag>, aws_sdk_sesv2::error::BuildError> {
    super::tags::message_tags(tenant, message)
        .into_iter()
        .map(|(name, value)| MessageTag::builder().name(name).value(value).build())
        .collect()
}

/// Checks an endpoint override: `http` or `https`, with a host.
fn check_endpoint(raw: &str) -> Result<(), SesError> {
    let invalid = |reason: &str| SesError::InvalidEndpoint {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(raw).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(invalid("the url must have a host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(SesClient::new(SesSettings::default()).is_ok());
        let bad_url = SesSettings {
            endpoint: Some("ftp://example.com".into()),
            ..SesSettings::default()
        };
        assert!(matches!(SesClient::new(bad_url), Err(SesError::InvalidEndpoint { .. })));
        let bad_timeouts = SesSettings {
            timeouts: SesTimeouts {
                connect: Duration::from_secs(5),
                request: Duration::from_secs(5),
            },
            ..SesSettings::default()
        };
        assert!(matches!(SesClient::new(bad_timeouts), Err(SesError::Timeouts { .. })));
    }

    #[test]
    fn account_debug_never_shows_the_secret() {
        let account = SesAccount::new("AKIDEXAMPLE", "super-secret-key", "us-east-1");
        let printed = format!("{account:?}");
        assert!(printed.contains("AKIDEXAMPLE"));
        assert!(!printed.contains("super-secret-key"));
    }

    #[tokio::test]
    async fn clients_are_cached_per_key_and_region_and_rebuilt_for_a_new_secret() {
        let client = SesClient::new(SesSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..SesSettings::default()
        })
        .unwrap();
        let account = SesAccount::new("AKID1", "secret", "us-east-1");
        client.sdk_client(&account);
        client.sdk_client(&account);
        assert_eq!(client.clients.len(), 1);
        client.sdk_client(&SesAccount::new("AKID1", "secret", "eu-west-1"));
        assert_eq!(client.clients.len(), 2);
        client.sdk_client(&SesAccount::new("AKID1", "rotated", "us-east-1"));
        assert_eq!(client.clients.len(), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        // Port 9 (discard) on loopback: nothing listens, the connect is refused.
        let client = SesClient::new(SesSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..SesSettings::default()
        })
        .unwrap();
        let account = SesAccount::new("AKID1", "secret", "us-east-1");
        let email = OutboundEmail {
            from: "sender@example.com".into(),
            to: vec!["to@example.com".into()],
            content: EmailContent::Simple {
                subject: "s".into(),
                text: Some("t".into()),
                html: None,
            },
            headers: Vec::new(),
            tenant_id: TenantId::parse("acme").unwrap(),
            message_id: MessageId::parse("m1").unwrap(),
        };
        assert_eq!(
            client.send_email(&account, &email).await,
            SesSendOutcome::Transient {
                reason: "SES_CONNECT".into(),
                retry_after: None
            }
        );
    }
}
