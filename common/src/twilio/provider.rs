//! Twilio (SMS and WhatsApp) behind the [`Provider`] trait.
//!
//! - [`super::request`]: the form body of "create message" ([`create_message_form`]), on the
//!   hot path.
//! - [`super::client`]: [`TwilioClient`], the HTTP client (create and fetch), the rule that
//!   decides between a transient failure (safe to resend) and an unknown outcome (never resend
//!   blindly), and Twilio's error codes with their [`ErrorClass`].
//! - Here: [`TwilioProvider`], which sends each message of a batch as its own request (Twilio
//!   takes one message per request), concurrently, with the tenant's credentials from a
//!   [`TwilioCredentials`] source.
//!
//! # Outcomes
//!
//! | Twilio's answer | [`SendOutcome`] |
//! |---|---|
//! | created | `Accepted { provider_message_id: sid }` |
//! | [`ErrorClass::Transient`] (429, 5xx but 504, 21611, 63017, connect errors) | `Transient { reason, retry_after }` |
//! | [`ErrorClass::Permanent`] (21211, 21614, unlisted codes) | `Failed { code }` (Twilio's code, or `HTTP_<status>`) |
//! | [`ErrorClass::SuppressRecipient`] (21610) | `OptedOut { code: "21610" }`: failed, and the recorder suppresses the recipient (`SuppressionReason::ProviderUnsubscribed`); the provider has no store access |
//! | [`ErrorClass::NeedsAttention`] (30034, 20003/401) | `Failed { code }`, logged as a warning: the tenant's setup must be fixed |
//! | [`ErrorClass::WhatsappWindow`] (63016) | `Failed { code: "63016" }`: only a template can reach the recipient now |
//! | timeout or lost connection after connecting, 504, a 2xx without a `sid` | `Unknown { reason }` |
//! | no credentials for the tenant | `Failed { code: "CHANNEL_NOT_CONFIGURED" }` |
//! | the credential source is unavailable | `Transient { reason: "TWILIO_CREDENTIALS_UNAVAILABLE" }` |
//!
//! Reconciliation fetches a message by its SID, or, for an `unknown` one whose create answer
//! was lost, lists the recipient's messages (`TwilioProvider::lookup`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use time::OffsetDateTime;

use super::request::create_message_form;
use super::status::TwilioStatus;
use super::whatsapp::ApprovalStatus;
use super::{
    CreateOutcome, ErrorClass, FetchOutcome, ListOutcome, ListedMessage, StatusCallbackField, TwilioAccount,
    TwilioClient,
};
use crate::address::WHATSAPP_PREFIX;
use crate::credentials::{ACCOUNT_SID, setting};
use crate::provider::{CredentialError, Lookup, OutboundMessage, Provider, SendOutcome, TemplateProblem};
use crate::store::{ChannelCredentials, MessageRecord};
use crate::{Channel, MessageStatus, TenantId};

/// Where a tenant's Twilio account credentials come from (the store's sealed channel
/// credentials, or one platform account). Called once per message sent or looked up, so an
/// implementation that reads a store should cache.
#[async_trait]
pub trait TwilioCredentials: Send + Sync {
    /// The account to send the tenant's messages on `channel` (SMS or WhatsApp) with.
    async fn credentials(&self, tenant: &TenantId, channel: Channel) -> Result<TwilioAccount, CredentialError>;
}

/// The same account for every tenant (a platform-wide account); `Debug` redacts the token.
#[derive(Debug, Clone)]
pub struct StaticCredentials(pub TwilioAccount);

#[async_trait]
impl TwilioCredentials for StaticCredentials {
    async fn credentials(&self, _tenant: &TenantId, _channel: Channel) -> Result<TwilioAccount, CredentialError> {
        Ok(self.0.clone())
    }
}

/// How long a usable template (approved, for WhatsApp) is trusted without asking again.
const TEMPLATE_TTL: Duration = Duration::from_secs(60);
/// How long a template that cannot be sent (missing, or not approved yet) is trusted.
pub const UNUSABLE_TEMPLATE_TTL: Duration = Duration::from_secs(10);
/// The most templates remembered; past it the memory starts afresh.
const MAX_TEMPLATES_KNOWN: usize = 10_000;

/// A template in an account, as one channel uses it: account SID, Content SID, channel.
type TemplateKey = (String, String, Channel);

/// What the Content API says about a template.
#[derive(Debug)]
struct TemplateFacts {
    /// Approved for WhatsApp (always true for SMS, which needs no approval).
    approved: bool,
    /// The variables it declares.
    variables: Vec<String>,
}

/// Sends SMS and WhatsApp messages through Twilio's Messages API.
pub struct TwilioProvider {
    client: TwilioClient,
    credentials: Arc<dyn TwilioCredentials>,
    status_callback: Option<StatusCallbackField>,
    /// What Twilio said about templates, by account, Content SID and channel.
    templates: DashMap<TemplateKey, (Instant, Option<Arc<TemplateFacts>>)>,
}

impl fmt::Debug for TwilioProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioProvider")
            .field("client", &self.client)
            .field("status_callback", &self.status_callback)
            .finish_non_exhaustive()
    }
}

impl TwilioProvider {
    /// A provider sending through `client` with the credentials `credentials` hands out, asking
    /// Twilio to report statuses to `status_callback` with each message's tenant and id added
    /// to the query ([`crate::twilio::callback`]): the signed URL names the message.
    pub fn new(client: TwilioClient, credentials: Arc<dyn TwilioCredentials>, status_callback: Option<String>) -> Self {
        Self {
            client,
            credentials,
            status_callback: status_callback.as_deref().map(StatusCallbackField::new),
            templates: DashMap::new(),
        }
    }

    /// Asks the Content API about a template; `None` when Twilio cannot tell now.
    async fn template_facts(
        &self,
        account: &TwilioAccount,
        channel: Channel,
        id: &str,
    ) -> Option<Option<Arc<TemplateFacts>>> {
        let content = match self.client.fetch_content(account, id).await {
            Ok(content) => content,
            Err(error) if error.is_not_found() => return Some(None),
            Err(error) => {
                tracing::debug!(account_sid = %account.account_sid, template = id, %error, "could not ask twilio about a template");
                return None;
            }
        };
        let approved = if channel == Channel::Whatsapp {
            match self.client.fetch_approvals(account, id).await {
                Ok(approval) => approval.status == ApprovalStatus::Approved,
                Err(error) => {
                    tracing::debug!(account_sid = %account.account_sid, template = id, %error, "could not ask twilio about a template's approval");
                    return None;
                }
            }
        } else {
            true
        };
        Some(Some(Arc::new(TemplateFacts {
            approved,
            variables: content.variables.into_keys().collect(),
        })))
    }

    /// The HTTP client.
    pub fn client(&self) -> &TwilioClient {
        &self.client
    }

    /// Sends one message; see the module docs for the outcomes.
    async fn send_one(&self, message: &OutboundMessage) -> SendOutcome {
        let envelope = &message.envelope;
        let tenant = &envelope.tenant_id;
        let message_id = &envelope.message_id;
        let account = match self.credentials.credentials(tenant, envelope.channel).await {
            Ok(account) => account,
            Err(CredentialError::NotConfigured) => {
                tracing::warn!(%tenant, %message_id, "tenant has no twilio credentials");
                return SendOutcome::Failed {
                    code: "CHANNEL_NOT_CONFIGURED".to_owned(),
                };
            }
            Err(CredentialError::Unavailable(error)) => {
                tracing::warn!(%tenant, %message_id, %error, "twilio credentials unavailable");
                return SendOutcome::Transient {
                    reason: "TWILIO_CREDENTIALS_UNAVAILABLE".to_owned(),
                    retry_after: None,
                };
            }
        };
        let form = create_message_form(message, self.status_callback.as_ref(), OffsetDateTime::now_utc());
        match self.client.create_message(&account, form).await {
            CreateOutcome::Accepted { sid } => {
                tracing::debug!(%tenant, %message_id, sid, "twilio accepted message");
                SendOutcome::Accepted {
                    provider_message_id: sid,
                }
            }
            CreateOutcome::Transient { reason, retry_after } => {
                tracing::debug!(%tenant, %message_id, reason, ?retry_after, "twilio send failed transiently");
                SendOutcome::Transient { reason, retry_after }
            }
            CreateOutcome::Rejected(error) => {
                let code = error.code_label();
                match error.class {
                    ErrorClass::NeedsAttention => tracing::warn!(
                        %tenant,
                        %message_id,
                        code,
                        more_info = error.more_info.as_deref(),
                        "twilio refused the tenant's setup, the tenant must act"
                    ),
                    class => tracing::debug!(%tenant, %message_id, code, ?class, "twilio refused message"),
                }
                match error.class {
                    ErrorClass::SuppressRecipient => SendOutcome::OptedOut { code },
                    _ => SendOutcome::Failed { code },
                }
            }
            CreateOutcome::Unknown { reason } => {
                tracing::warn!(%tenant, %message_id, reason, "twilio send outcome unknown, left to reconciliation");
                SendOutcome::Unknown { reason }
            }
        }
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &'static str {
        "twilio"
    }

    /// The Twilio account (`AC...`): its requests in flight are capped together.
    fn account_of(&self, credentials: &ChannelCredentials) -> Option<String> {
        setting(credentials, ACCOUNT_SID).map(str::to_owned)
    }

    /// One message per request: Twilio has no batch create.
    fn max_batch(&self) -> usize {
        1
    }

    /// Asks the Content API (`GET /v1/Content/{Sid}`, and for WhatsApp its approval requests)
    /// whether the template exists in the tenant's account, is approved for WhatsApp, and which
    /// variables it declares; what Twilio said is kept a minute for a usable template and
    /// [`UNUSABLE_TEMPLATE_TTL`] otherwise, so that an approval is soon seen. `None` when the
    /// account or Twilio cannot be reached.
    async fn check_template(
        &self,
        tenant: &TenantId,
        channel: Channel,
        id: &str,
        variables: &BTreeMap<String, String>,
    ) -> Option<Result<(), TemplateProblem>> {
        let account = self.credentials.credentials(tenant, channel).await.ok()?;
        let key = (account.account_sid.clone(), id.to_owned(), channel);
        let cached = self.templates.get(&key).and_then(|known| {
            let ttl = if known.1.as_deref().is_some_and(|facts| facts.approved) {
                TEMPLATE_TTL
            } else {
                UNUSABLE_TEMPLATE_TTL
            };
            (known.0.elapsed() < ttl).then(|| known.1.clone())
        });
        let facts = match cached {
            Some(facts) => facts,
            None => {
                let facts = self.template_facts(&account, channel, id).await?;
                if self.templates.len() >= MAX_TEMPLATES_KNOWN {
                    self.templates.clear();
                }
                self.templates.insert(key, (Instant::now(), facts.clone()));
                facts
            }
        };
        let Some(facts) = facts else {
            return Some(Err(TemplateProblem::NotFound));
        };
        if !facts.approved {
            return Some(Err(TemplateProblem::NotApproved));
        }
        if facts.variables.iter().any(|name| !variables.contains_key(name)) {
            return Some(Err(TemplateProblem::VariablesMissing));
        }
        Some(Ok(()))
    }

    /// Sends every message of the batch as its own request, all at once (the engine bounds the
    /// requests in flight per account); outcomes come back in the batch's order.
    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        futures_util::future::join_all(batch.iter().map(|message| self.send_one(message))).await
    }

    /// Fetches the message by its Twilio SID and maps Twilio's status to ours; the error code is
    /// kept for failures. An `unknown` message without a SID (its create answer was lost) is
    /// looked for among the account's messages to its recipient (`find_without_sid`); any
    /// other message without one: [`Lookup::NotFound`]. Anything that prevents an answer
    /// (credentials, transport, an unexpected status): [`Lookup::Unavailable`].
    async fn lookup(&self, message: &MessageRecord) -> Lookup {
        let tenant = &message.tenant_id;
        let sid = message.provider_message_id.as_deref();
        if sid.is_none() && message.status != MessageStatus::Unknown {
            return Lookup::NotFound;
        }
        let account = match self.credentials.credentials(tenant, message.channel).await {
            Ok(account) => account,
            Err(error) => {
                tracing::warn!(%tenant, sid, %error, "twilio lookup without credentials");
                return Lookup::Unavailable;
            }
        };
        let Some(sid) = sid else {
            return self.find_without_sid(message, &account).await;
        };
        match self.client.fetch_message(&account, sid).await {
            FetchOutcome::Found(found) => match our_status(&found.status, found.error_code) {
                Some((status, code)) => Lookup::Status(status, code),
                None => {
                    tracing::warn!(%tenant, sid, twilio_status = found.status, "twilio status has no outbound meaning");
                    Lookup::Unavailable
                }
            },
            FetchOutcome::NotFound => Lookup::NotFound,
            FetchOutcome::Unavailable { reason } => {
                tracing::debug!(%tenant, sid, reason, "twilio lookup unavailable");
                Lookup::Unavailable
            }
        }
    }
}

/// How long before its answer was lost a message found by its recipient may have been
/// created: the request's own time (the client's timeout) and clock skew between us and
/// Twilio, generously.
pub const FOUND_BEFORE: Duration = Duration::from_secs(300);
/// How long after its answer was lost a message found by its recipient may have been created
/// (clock skew).
pub const FOUND_AFTER: Duration = Duration::from_secs(120);
/// The recipient's messages asked for at once, newest first.
const FIND_PAGE_SIZE: u32 = 100;

impl TwilioProvider {
    /// An `unknown` message without a SID: the account's outbound messages to its recipient
    /// created around the moment the answer was lost (from [`FOUND_BEFORE`] before it to
    /// [`FOUND_AFTER`] after). Exactly one: it is ours, adopted with its SID and status
    /// ([`Lookup::Found`]). None, with the page reaching back past that window: Twilio never
    /// created it ([`Lookup::NeverCreated`]). Two or more (the tenant sent the recipient
    /// another message meanwhile; the sender is not kept to tell them apart), or a page that
    /// does not reach back far enough: it stays `unknown` ([`Lookup::Unavailable`]), for an
    /// operator rather than a guess. The account is the tenant's own, so only its messages
    /// are candidates.
    async fn find_without_sid(&self, message: &MessageRecord, account: &TwilioAccount) -> Lookup {
        let tenant = &message.tenant_id;
        let message_id = &message.message_id;
        let lost_at = message
            .history
            .iter()
            .rev()
            .find(|change| change.status == MessageStatus::Unknown)
            .map_or(message.updated_at, |change| change.at);
        let to = match message.channel {
            Channel::Whatsapp => format!("{WHATSAPP_PREFIX}{}", message.recipient),
            Channel::Sms | Channel::Email => message.recipient.clone(),
        };
        let (messages, more) = match self.client.list_messages_to(account, &to, FIND_PAGE_SIZE).await {
            ListOutcome::Page { messages, more } => (messages, more),
            ListOutcome::Unavailable { reason } => {
                tracing::debug!(%tenant, %message_id, reason, "twilio list unavailable");
                return Lookup::Unavailable;
            }
        };
        let window = (lost_at - FOUND_BEFORE)..=(lost_at + FOUND_AFTER);
        let candidates: Vec<&ListedMessage> = messages
            .iter()
            .filter(|listed| {
                listed.direction.starts_with("outbound")
                    && listed.date_created.is_some_and(|created| window.contains(&created))
            })
            .collect();
        let reaches_back = !more
            || messages
                .iter()
                .filter_map(|listed| listed.date_created)
                .any(|created| created < *window.start());
        match candidates.as_slice() {
            [found] => match our_status(&found.status, found.error_code) {
                Some((status, reason)) => {
                    tracing::info!(%tenant, %message_id, sid = found.sid, "twilio message found by its recipient");
                    Lookup::Found {
                        provider_message_id: found.sid.clone(),
                        status,
                        reason,
                    }
                }
                None => Lookup::Unavailable,
            },
            [] if reaches_back => Lookup::NeverCreated,
            candidates => {
                tracing::warn!(
                    %tenant,
                    %message_id,
                    candidates = candidates.len(),
                    reaches_back,
                    "an unknown twilio message cannot be told apart; left for an operator"
                );
                Lookup::Unavailable
            }
        }
    }
}

/// Twilio's status as ours, with the error code kept for failures; `None` for statuses with
/// no outbound meaning.
fn our_status(twilio: &str, error_code: Option<u32>) -> Option<(MessageStatus, Option<String>)> {
    let status = TwilioStatus::parse(twilio)
        .ok()
        .and_then(TwilioStatus::to_message_status)?;
    let code = error_code.filter(|_| status.is_failure()).map(|code| code.to_string());
    Some((status, code))
}
