//! The provider seam: where a message leaves the dispatcher. Each provider implements
//! [`Provider`] in its own folder ([`crate::twilio`], [`crate::ses`]); the dispatcher keeps the
//! demo provider and registers them all by [`crate::store::ProviderKind`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::store::{ChannelCredentials, MessageRecord};
use crate::{Channel, Envelope, MessageStatus, Sender, TenantId};
use async_trait::async_trait;

/// Why a tenant's provider credentials could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The tenant has no credentials for the channel: its messages cannot be sent.
    #[error("the tenant has no credentials for the channel")]
    NotConfigured,
    /// The credentials could not be read now (store down, key unavailable); worth retrying.
    #[error("the credentials could not be read: {0}")]
    Unavailable(String),
}

/// A message admitted, paced and ready for its provider.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// The message.
    pub envelope: Envelope,
    /// The sender chosen for it.
    pub sender: Sender,
    /// Its SMS segments (1 for other channels).
    pub segments: u32,
    /// When pacing released it (the instant its sender's rate is accounted at).
    pub paced_at: tokio::time::Instant,
    /// When its claim accepted it (what a status written without a read needs).
    pub accepted_at: time::OffsetDateTime,
}

/// What the provider made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted; the provider's id for it.
    Accepted {
        /// The provider's message id, the key of its status callbacks.
        provider_message_id: String,
    },
    /// Not processed this time (throttled, overloaded, unreachable before the request was
    /// written): safe to send again later.
    Transient {
        /// What happened, for logs and metrics (a stable, low-cardinality label).
        reason: String,
        /// How long the provider asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Refused for good, with the provider's error code.
    Failed {
        /// The provider's code.
        code: String,
    },
    /// Refused for good because the recipient opted out with the provider (Twilio 21610): the
    /// message fails with the provider's code and the recipient is suppressed for the tenant.
    OptedOut {
        /// The provider's code.
        code: String,
    },
    /// The request went out but no answer came: reconcile, never resend blindly.
    Unknown {
        /// What happened.
        reason: String,
    },
}

/// What a provider says about a message when asked directly (reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Its current status there, with the provider's code for failures.
    Status(MessageStatus, Option<String>),
    /// The provider has no such message.
    NotFound,
    /// A message whose id was never recorded (its send's answer was lost), found by the
    /// provider with certainty: its id and status there.
    Found {
        /// The provider's id, recorded from now on.
        provider_message_id: String,
        /// Its status there.
        status: MessageStatus,
        /// The provider's code for a failure.
        reason: Option<String>,
    },
    /// A message whose send's answer was lost, and which the provider is sure it never
    /// created: nothing was sent.
    NeverCreated,
    /// The provider could not be asked now, or its answer was not conclusive.
    Unavailable,
}

/// Why a message's template cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateProblem {
    /// The tenant's account holds no template with that id.
    NotFound,
    /// The template is not approved for WhatsApp (pending, rejected, paused or never
    /// submitted).
    NotApproved,
    /// The message does not give every variable the template declares.
    VariablesMissing,
}

/// Sends messages: one call takes a batch, and answers one outcome per message, in order.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for metrics and logs.
    fn name(&self) -> &'static str;

    /// The most messages one call may carry (one request each for Twilio, 50 for SES bulk).
    fn max_batch(&self) -> usize {
        1
    }

    /// What messages must share to go in one request (SES bulk: template, sender and
    /// configuration set); `None` when any may go together.
    fn batch_key(&self, _message: &OutboundMessage) -> Option<String> {
        None
    }

    /// The provider account `credentials` send through: the key its requests in flight are
    /// capped by. `None`: one account per tenant and channel.
    fn account_of(&self, _credentials: &ChannelCredentials) -> Option<String> {
        None
    }

    /// Whether a message on `channel` may use template `id` with `variables`: `Some(Err(_))`
    /// refuses it before any send; `None` when this provider cannot tell now (the send goes
    /// ahead and the provider answers).
    async fn check_template(
        &self,
        _tenant: &TenantId,
        _channel: Channel,
        _id: &str,
        _variables: &BTreeMap<String, String>,
    ) -> Option<Result<(), TemplateProblem>> {
        None
    }

    /// Sends `batch`; the answer has exactly one outcome per message, in order.
    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome>;

    /// Asks for the current status of a message stuck in `sent` or `unknown`.
    async fn lookup(&self, message: &MessageRecord) -> Lookup;
}
