//! The provider seam: where a message leaves the dispatcher.
//!
//! Implementations: [`demo::DemoProvider`] (simulated end to end, for demo tenants). The real
//! Twilio and SES clients plug in behind the same trait.

pub mod demo;

use async_trait::async_trait;
use common::Envelope;

/// A message admitted and ready for its provider.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// The message.
    pub envelope: Envelope,
    /// Its SMS segments (1 for other channels).
    pub segments: u32,
}

/// What the provider made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Accepted; the provider's id for it.
    Accepted {
        /// The provider's message id, the key of its status callbacks.
        provider_message_id: String,
    },
    /// Refused for good, with the provider's error code.
    Failed {
        /// The provider's code.
        code: String,
    },
    /// The request went out but no answer came: reconcile, never resend blindly.
    Unknown {
        /// What happened.
        reason: String,
    },
}

/// Sends messages: one call takes a batch, and answers one outcome per message, in order.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// A short name for metrics and logs.
    fn name(&self) -> &'static str;

    /// Sends `batch`; the answer has exactly one outcome per message, in order.
    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome>;
}
