//! Where an admitted message goes: its provider and account, the tenant's pool of senders with
//! their rates, and the brand's daily cap.

use std::sync::Arc;

use common::Sender;

use crate::pacing::{Rate, SenderKey};
use common::provider::Provider;

/// One sender of a tenant's pool.
#[derive(Clone)]
pub struct PoolSender {
    /// Its pacing identity.
    pub key: SenderKey,
    /// What the provider is told to send from.
    pub sender: Sender,
    /// Its rate in cells per second; `None` leaves it unpaced.
    pub rate: Option<Rate>,
}

/// A brand's daily cap, in segments.
#[derive(Debug, Clone)]
pub struct DailyCap {
    /// Whose cap it is.
    pub brand: Arc<str>,
    /// Segments per UTC day.
    pub segments: u64,
}

/// How one tenant's messages on one channel are sent.
#[derive(Clone)]
pub struct Route {
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// The provider account, the key of the concurrency cap.
    pub account: Arc<str>,
    /// Requests in flight at once on that account.
    pub account_concurrency: usize,
    /// The senders to choose from; never empty.
    pub senders: Vec<PoolSender>,
    /// The brand's daily cap, for SMS.
    pub daily_cap: Option<DailyCap>,
}

impl Route {
    /// The pool sender with this key.
    pub fn sender(&self, key: &str) -> Option<&PoolSender> {
        self.senders.iter().find(|sender| &*sender.key == key)
    }
}
