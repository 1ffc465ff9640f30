//! Email through AWS SES v2 behind the [`Provider`] trait.
//!
//! - [`super`]: [`SesClient`] (`SendEmail`, `SendBulkEmail`, one SDK client per account),
//!   the rule that decides between a transient failure (safe to resend) and an unknown outcome
//!   (never resend blindly), and the table mapping SES's errors and bulk entry statuses.
//! - Here: [`SesProvider`], which sends a batch of templated messages of one tenant, template
//!   and sender as one `SendBulkEmail` call (up to 50), a lone templated message and every
//!   free-text message with `SendEmail`, with the tenant's account from an [`SesCredentials`]
//!   source.
//!
//! # Batches
//!
//! [`SesProvider::batch_key`] is the tenant, the template and the sender of a templated message
//! (the tenant's account fixes the configuration set, so messages of one key share it); a
//! message with its own parts ([`Content::Email`]: text, HTML or both) gets a key of its own
//! and goes alone. `send` still groups its batch by that key, so a batch that mixes keys is
//! sent correctly too.
//!
//! # One-click unsubscribe
//!
//! Every marketing email (and transactional email too, when the tenant's email channel sets
//! `unsubscribe_transactional`) carries `List-Unsubscribe` and `List-Unsubscribe-Post`
//! ([`crate::unsubscribe`]): as `Headers` of the simple or templated content of `SendEmail`,
//! and as each entry's `ReplacementHeaders` in `SendBulkEmail`, since every recipient has a
//! link of its own.
//!
//! # Outcomes
//!
//! Each message (each bulk entry) maps on its own:
//!
//! | SES's answer ([`SesSendOutcome`]) | [`SendOutcome`] |
//! |---|---|
//! | `Accepted { message_id }` | `Accepted { provider_message_id: message_id }` (the `mail.messageId` of SES events) |
//! | `Transient { reason, retry_after }` (throttling, `TRANSIENT_FAILURE`, 5xx but 504, connect errors) | `Transient { reason, retry_after }` |
//! | `Rejected { code, Permanent }` (`MessageRejected`, `BadRequestException`, `FAILED`, ...) | `Failed { code }` |
//! | `Rejected { code, NeedsAttention }` (sending paused, suspended, daily quota, credentials) | `Failed { code }`, logged as a warning: the tenant's account must be fixed |
//! | `Unknown { reason }` (timeout once connected, lost answer, 504) | `Unknown { reason }` |
//! | recipient or sender not an email address | `Failed { code: "SES_NOT_EMAIL" }` |
//! | no credentials for the tenant | `Failed { code: "CHANNEL_NOT_CONFIGURED" }` |
//! | the credential source is unavailable | `Transient { reason: "SES_CREDENTIALS_UNAVAILABLE" }` |

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;

use super::{
    BulkEmail, BulkEntry, EmailContent, MAX_BULK_ENTRIES, OutboundEmail, RejectClass, SesAccount, SesClient,
    SesSendOutcome,
};
use crate::credentials::{ACCESS_KEY_ID, setting};
use crate::provider::{CredentialError, Lookup, OutboundMessage, Provider, SendOutcome, TemplateProblem};
use crate::store::{ChannelCredentials, MessageRecord};
use crate::unsubscribe::UnsubscribeLinks;
use crate::{Channel, Content, Priority, Sender, TenantId};

/// Where a tenant's SES account comes from (the store's sealed channel credentials, or one
/// platform account). Called once per group of messages sent, so an implementation that reads
/// a store should cache.
#[async_trait]
pub trait SesCredentials: Send + Sync {
    /// The account to send the tenant's email with.
    async fn credentials(&self, tenant: &TenantId) -> Result<SesAccount, CredentialError>;
}

/// The same account for every tenant (a platform-wide account); `Debug` redacts the secret.
#[derive(Debug, Clone)]
pub struct StaticSesCredentials(pub SesAccount);

#[async_trait]
impl SesCredentials for StaticSesCredentials {
    async fn credentials(&self, _tenant: &TenantId) -> Result<SesAccount, CredentialError> {
        Ok(self.0.clone())
    }
}

/// How long whether a tenant's template exists is trusted.
const TEMPLATE_TTL: Duration = Duration::from_secs(60);
/// The most (account, region, template) answers kept; past it the cache starts over, so names
/// made up by a producer cannot grow it without bound.
const MAX_TEMPLATES_KNOWN: usize = 10_000;

/// Sends email through SES v2.
pub struct SesProvider {
    client: SesClient,
    credentials: Arc<dyn SesCredentials>,
    /// Makes the one-click unsubscribe headers; `None`: email goes without them.
    unsubscribe: Option<UnsubscribeLinks>,
    /// Whether each (access key, region, template) exists, and when that was learned.
    templates: DashMap<(String, String, String), (Instant, bool)>,
}

impl fmt::Debug for SesProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SesProvider")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Messages of one batch that go in one request: their positions in the batch.
struct Group<'a> {
    tenant: &'a TenantId,
    kind: GroupKind<'a>,
    positions: Vec<usize>,
}

/// What a group's messages share.
enum GroupKind<'a> {
    /// One templated message or more: same template and sender.
    Template { template: &'a str, from: &'a str },
    /// One free-text message.
    Body,
}

impl SesProvider {
    /// A provider sending through `client` with the accounts `credentials` hands out, adding
    /// one-click unsubscribe headers made by `unsubscribe` to marketing email.
    pub fn new(client: SesClient, credentials: Arc<dyn SesCredentials>, unsubscribe: Option<UnsubscribeLinks>) -> Self {
        Self {
            client,
            credentials,
            unsubscribe,
            templates: DashMap::new(),
        }
    }

    /// The headers `message` gets: the unsubscribe pair when it is marketing, or when the
    /// tenant asked for them on transactional email too.
    fn headers(&self, account: &SesAccount, message: &OutboundMessage) -> Vec<(String, String)> {
        let envelope = &message.envelope;
        let Some(links) = &self.unsubscribe else {
            return Vec::new();
        };
        if envelope.priority == Priority::Transactional && !account.unsubscribe_transactional {
            return Vec::new();
        }
        let mailbox = account.unsubscribe_mailbox.as_deref().unwrap_or(match &message.sender {
            Sender::Email(from) => from.as_str(),
            _ => "",
        });
        links.headers(&envelope.tenant_id, &recipient(message), mailbox).into()
    }

    /// The SES client.
    pub fn client(&self) -> &SesClient {
        &self.client
    }

    /// Splits a batch into requests: templated messages by tenant, template and sender, at most
    /// [`MAX_BULK_ENTRIES`] each; every free-text message alone. Messages without an email
    /// sender or recipient are answered at once in `outcomes`.
    fn groups<'a>(batch: &'a [OutboundMessage], outcomes: &mut [Option<SendOutcome>]) -> Vec<Group<'a>> {
        let mut groups: Vec<Group<'a>> = Vec::new();
        let mut open: BTreeMap<(&TenantId, &str, &str), usize> = BTreeMap::new();
        for (position, message) in batch.iter().enumerate() {
            let envelope = &message.envelope;
            let (Sender::Email(from), Some(_)) = (&message.sender, envelope.email_recipient()) else {
                tracing::warn!(message_id = %envelope.message_id, "ses message without an email sender or recipient");
                outcomes[position] = Some(SendOutcome::Failed {
                    code: "SES_NOT_EMAIL".to_owned(),
                });
                continue;
            };
            let tenant = &envelope.tenant_id;
            match &envelope.content {
                Content::Body(_) | Content::Email(_) => groups.push(Group {
                    tenant,
                    kind: GroupKind::Body,
                    positions: vec![position],
                }),
                Content::Template { id, .. } => {
                    let key = (tenant, id.as_str(), from.as_str());
                    match open.get(&key) {
                        Some(&index) if groups[index].positions.len() < MAX_BULK_ENTRIES => {
                            groups[index].positions.push(position);
                        }
                        _ => {
                            open.insert(key, groups.len());
                            groups.push(Group {
                                tenant,
                                kind: GroupKind::Template {
                                    template: id,
                                    from: from.as_str(),
                                },
                                positions: vec![position],
                            });
                        }
                    }
                }
            }
        }
        groups
    }

    /// Sends one group and answers one outcome per message of it, in its order.
    async fn send_group(&self, batch: &[OutboundMessage], group: &Group<'_>) -> Vec<SendOutcome> {
        let tenant = group.tenant;
        let account = match self.credentials.credentials(tenant).await {
            Ok(account) => account,
            Err(CredentialError::NotConfigured) => {
                tracing::warn!(%tenant, messages = group.positions.len(), "tenant has no ses credentials");
                return vec![
                    SendOutcome::Failed {
                        code: "CHANNEL_NOT_CONFIGURED".to_owned(),
                    };
                    group.positions.len()
                ];
            }
            Err(CredentialError::Unavailable(error)) => {
                tracing::warn!(%tenant, %error, "ses credentials unavailable");
                return vec![
                    SendOutcome::Transient {
                        reason: "SES_CREDENTIALS_UNAVAILABLE".to_owned(),
                        retry_after: None,
                    };
                    group.positions.len()
                ];
            }
        };
        let messages: Vec<&OutboundMessage> = group.positions.iter().map(|&position| &batch[position]).collect();
        let outcomes = match (&group.kind, messages.as_slice()) {
            (GroupKind::Template { template, from }, many) if many.len() > 1 => {
                let bulk = BulkEmail {
                    from: (*from).to_owned(),
                    template: (*template).to_owned(),
                    default_template_data: "{}".to_owned(),
                    entries: many
                        .iter()
                        .map(|message| BulkEntry {
                            to: vec![recipient(message)],
                            template_data: template_data(message),
                            headers: self.headers(&account, message),
                            tenant_id: message.envelope.tenant_id.clone(),
                            message_id: message.envelope.message_id.clone(),
                        })
                        .collect(),
                };
                self.client.send_bulk_email(&account, &bulk).await
            }
            (_, messages) => {
                let mut outcomes = Vec::with_capacity(messages.len());
                for message in messages {
                    let email = outbound_email(message, self.headers(&account, message));
                    outcomes.push(self.client.send_email(&account, &email).await);
                }
                outcomes
            }
        };
        messages
            .iter()
            .zip(outcomes)
            .map(|(message, outcome)| to_send_outcome(message, outcome))
            .collect()
    }
}

/// The recipient address (checked to be an email before grouping).
fn recipient(message: &OutboundMessage) -> String {
    message
        .envelope
        .email_recipient()
        .map(|address| address.as_str().to_owned())
        .unwrap_or_default()
}

/// The template variables as the JSON object SES expects.
/// Whether a template SES holds (or not) may be used.
fn found(exists: bool) -> Result<(), TemplateProblem> {
    if exists { Ok(()) } else { Err(TemplateProblem::NotFound) }
}

fn template_data(message: &OutboundMessage) -> String {
    match &message.envelope.content {
        Content::Template { variables, .. } => serde_json::to_string(variables).unwrap_or_else(|_| "{}".to_owned()),
        Content::Body(_) | Content::Email(_) => "{}".to_owned(),
    }
}

/// A `SendEmail` request for one message, with its added headers.
fn outbound_email(message: &OutboundMessage, headers: Vec<(String, String)>) -> OutboundEmail {
    let envelope = &message.envelope;
    let from = match &message.sender {
        Sender::Email(address) => address.as_str().to_owned(),
        other => other.to_string(),
    };
    let content = match &envelope.content {
        Content::Email(parts) => EmailContent::Simple {
            subject: envelope.subject.clone().unwrap_or_default(),
            text: parts.text.clone(),
            html: parts.html.clone(),
        },
        // Email envelopes never carry a bare body; sent as a text part should one come.
        Content::Body(text) => EmailContent::Simple {
            subject: envelope.subject.clone().unwrap_or_default(),
            text: Some(text.clone()),
            html: None,
        },
        Content::Template { id, .. } => EmailContent::Template {
            name: id.clone(),
            data: template_data(message),
        },
    };
    OutboundEmail {
        from,
        to: vec![recipient(message)],
        content,
        headers,
        tenant_id: envelope.tenant_id.clone(),
        message_id: envelope.message_id.clone(),
    }
}

/// Maps SES's outcome for one message and logs it.
fn to_send_outcome(message: &OutboundMessage, outcome: SesSendOutcome) -> SendOutcome {
    let tenant = &message.envelope.tenant_id;
    let message_id = &message.envelope.message_id;
    match outcome {
        SesSendOutcome::Accepted { message_id: ses_id } => {
            tracing::debug!(%tenant, %message_id, ses_id, "ses accepted message");
            SendOutcome::Accepted {
                provider_message_id: ses_id,
            }
        }
        SesSendOutcome::Transient { reason, retry_after } => {
            tracing::debug!(%tenant, %message_id, reason, ?retry_after, "ses send failed transiently");
            SendOutcome::Transient { reason, retry_after }
        }
        SesSendOutcome::Rejected { code, class } => {
            match class {
                RejectClass::NeedsAttention => tracing::warn!(
                    %tenant,
                    %message_id,
                    code,
                    "ses refused the tenant's account, the tenant must act"
                ),
                RejectClass::Permanent => tracing::debug!(%tenant, %message_id, code, "ses refused message"),
            }
            SendOutcome::Failed { code }
        }
        SesSendOutcome::Unknown { reason } => {
            tracing::warn!(%tenant, %message_id, reason, "ses send outcome unknown, left to reconciliation");
            SendOutcome::Unknown { reason }
        }
    }
}

#[async_trait]
impl Provider for SesProvider {
    fn name(&self) -> &'static str {
        "ses"
    }

    /// The AWS access key: its requests in flight are capped together.
    fn account_of(&self, credentials: &ChannelCredentials) -> Option<String> {
        setting(credentials, ACCESS_KEY_ID).map(str::to_owned)
    }

    /// `SendBulkEmail` takes up to 50 entries.
    fn max_batch(&self) -> usize {
        MAX_BULK_ENTRIES
    }

    /// Templated messages: tenant, template and sender (the tenant's account fixes the
    /// configuration set). Free text: the message's own id, so it goes alone.
    fn batch_key(&self, message: &OutboundMessage) -> Option<String> {
        let envelope = &message.envelope;
        Some(match &envelope.content {
            Content::Template { id, .. } => format!(
                "ses-template\u{1f}{}\u{1f}{id}\u{1f}{}",
                envelope.tenant_id, message.sender
            ),
            Content::Body(_) | Content::Email(_) => format!("ses-body\u{1f}{}", envelope.message_id),
        })
    }

    /// Sends each group of the batch (see the module docs) concurrently; outcomes come back in
    /// the batch's order.
    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut outcomes: Vec<Option<SendOutcome>> = vec![None; batch.len()];
        let groups = Self::groups(batch, &mut outcomes);
        let answers = futures_util::future::join_all(groups.iter().map(|group| self.send_group(batch, group))).await;
        for (group, answer) in groups.iter().zip(answers) {
            for (&position, outcome) in group.positions.iter().zip(answer) {
                outcomes[position] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                // Every position is either answered at grouping or belongs to exactly one group,
                // whose answer has one outcome per message; this is only a safety net.
                outcome.unwrap_or_else(|| SendOutcome::Unknown {
                    reason: "SES_NO_OUTCOME".to_owned(),
                })
            })
            .collect()
    }

    /// Asks SES (`GetEmailTemplate`) at most once a minute per account, region and template
    /// whether it holds the template (SES leaves a placeholder without a value empty);
    /// `None` when the account or SES cannot be reached.
    async fn check_template(
        &self,
        tenant: &TenantId,
        _channel: Channel,
        id: &str,
        _variables: &BTreeMap<String, String>,
    ) -> Option<Result<(), TemplateProblem>> {
        let account = self.credentials.credentials(tenant).await.ok()?;
        // Templates belong to an account in a region, whichever tenant sends with it.
        let key = (account.access_key_id.clone(), account.region.clone(), id.to_owned());
        if let Some(known) = self.templates.get(&key)
            && known.0.elapsed() < TEMPLATE_TTL
        {
            return Some(found(known.1));
        }
        match self.client.template_exists(&account, id).await {
            Ok(exists) => {
                if self.templates.len() >= MAX_TEMPLATES_KNOWN {
                    self.templates.clear();
                }
                self.templates.insert(key, (Instant::now(), exists));
                Some(found(exists))
            }
            Err(error) => {
                tracing::debug!(%tenant, template = id, %error, "could not ask ses whether a template exists");
                None
            }
        }
    }

    /// SES has no fetch-by-id: an email's fate is only known from its events (SNS), so a
    /// message stuck in `sent` or `unknown` cannot be looked up.
    async fn lookup(&self, _message: &MessageRecord) -> Lookup {
        Lookup::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::ses::SesSettings;
    use crate::{Envelope, MessageId};

    use super::*;

    fn message(id: &str, tenant: &str, content: serde_json::Value) -> OutboundMessage {
        let mut json = serde_json::json!({
            "version": 1,
            "message_id": id,
            "tenant_id": tenant,
            "channel": "email",
            "to": "someone@example.com",
            "from": "news@example.com",
        });
        for (key, value) in content.as_object().unwrap() {
            json[key] = value.clone();
        }
        let envelope = Envelope::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
        OutboundMessage {
            sender: envelope.from.clone().unwrap(),
            envelope,
            segments: 1,
            paced_at: tokio::time::Instant::now(),
            accepted_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn provider() -> SesProvider {
        let client = SesClient::new(SesSettings::default()).unwrap();
        let account = SesAccount::new("AKID", "secret", "us-east-1");
        SesProvider::new(client, Arc::new(StaticSesCredentials(account)), None)
    }

    #[test]
    fn marketing_email_carries_one_click_unsubscribe_and_transactional_only_when_asked() {
        let keyring = crate::credentials::Keyring::parse(&secrecy::SecretString::from(
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
        ))
        .unwrap();
        let keyring = Arc::new(keyring);
        let client = SesClient::new(SesSettings::default()).unwrap();
        let mut account = SesAccount::new("AKID", "secret", "us-east-1");
        let links = UnsubscribeLinks::new("https://api.example.com", Arc::clone(&keyring));
        let provider = SesProvider::new(client, Arc::new(StaticSesCredentials(account.clone())), Some(links));
        let marketing = message("m1", "t1", body());
        let headers = provider.headers(&account, &marketing);
        let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["List-Unsubscribe", "List-Unsubscribe-Post"]);
        assert!(
            headers[0].1.ends_with("<mailto:news@example.com?subject=unsubscribe>"),
            "{}",
            headers[0].1
        );
        let token = headers[0].1.split(['/', '>']).nth(4).unwrap();
        let whom = crate::unsubscribe::open(&keyring, token).unwrap();
        assert_eq!(
            (whom.tenant_id.as_str(), whom.address.as_str()),
            ("t1", "someone@example.com")
        );

        let mut transactional = body();
        transactional["priority"] = serde_json::json!("transactional");
        let transactional = message("m2", "t1", transactional);
        assert!(provider.headers(&account, &transactional).is_empty());
        account.unsubscribe_transactional = true;
        account.unsubscribe_mailbox = Some("unsubscribe@example.com".into());
        let headers = provider.headers(&account, &transactional);
        assert!(
            headers[0]
                .1
                .ends_with("<mailto:unsubscribe@example.com?subject=unsubscribe>")
        );
    }

    fn template(name: &str) -> serde_json::Value {
        serde_json::json!({"template": {"id": name, "variables": {"name": "Ada"}}})
    }

    fn body() -> serde_json::Value {
        serde_json::json!({"body": "hello", "subject": "hi"})
    }

    #[tokio::test]
    async fn batch_keys_group_templates_and_isolate_free_text() {
        let provider = provider();
        let a = provider.batch_key(&message("m1", "t1", template("welcome")));
        let b = provider.batch_key(&message("m2", "t1", template("welcome")));
        let other_tenant = provider.batch_key(&message("m3", "t2", template("welcome")));
        let other_template = provider.batch_key(&message("m4", "t1", template("bye")));
        assert_eq!(a, b);
        assert_ne!(a, other_tenant);
        assert_ne!(a, other_template);
        let free1 = provider.batch_key(&message("m5", "t1", body()));
        let free2 = provider.batch_key(&message("m6", "t1", body()));
        assert_ne!(free1, free2);
        assert_eq!(provider.max_batch(), 50);
    }

    #[tokio::test]
    async fn groups_split_by_key_and_at_fifty() {
        let mut batch: Vec<OutboundMessage> = (0..51)
            .map(|i| message(&format!("m{i}"), "t1", template("welcome")))
            .collect();
        batch.push(message("free", "t1", body()));
        batch.push(message("other", "t1", template("bye")));
        let mut outcomes = vec![None; batch.len()];
        let groups = SesProvider::groups(&batch, &mut outcomes);
        let sizes: Vec<usize> = groups.iter().map(|group| group.positions.len()).collect();
        assert_eq!(sizes, vec![50, 1, 1, 1]);
        assert_eq!(groups[1].positions, vec![50]);
        assert!(matches!(groups[2].kind, GroupKind::Body));
        assert!(outcomes.iter().all(Option::is_none));
    }

    #[test]
    fn template_data_is_a_json_object() {
        let message = message("m1", "t1", template("welcome"));
        let data: BTreeMap<String, String> = serde_json::from_str(&template_data(&message)).unwrap();
        assert_eq!(data.get("name").map(String::as_str), Some("Ada"));
        let email = outbound_email(&message, Vec::new());
        assert_eq!(email.to, vec!["someone@example.com".to_owned()]);
        assert_eq!(email.message_id, MessageId::parse("m1").unwrap());
    }

    #[tokio::test]
    async fn lookup_is_unavailable() {
        let now = time::OffsetDateTime::now_utc();
        let record = MessageRecord {
            tenant_id: TenantId::parse("t1").unwrap(),
            message_id: MessageId::parse("m1").unwrap(),
            campaign_id: None,
            channel: crate::Channel::Email,
            recipient: "someone@example.com".into(),
            priority: crate::Priority::Transactional,
            segments: 1,
            status: crate::MessageStatus::Sent,
            reason: None,
            provider_message_id: Some("0100".into()),
            accepted_at: now,
            updated_at: now,
            history: Vec::new(),
        };
        assert_eq!(provider().lookup(&record).await, Lookup::Unavailable);
        assert_eq!(provider().name(), "ses");
    }
}
