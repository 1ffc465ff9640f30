//! Per-tenant locks: the changes of one tenant's onboarding workflow, or of its WhatsApp
//! senders, are made one at a time (by the runner, a webhook, or a request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use common::TenantId;

/// One async lock per tenant, made on first use.
#[derive(Debug, Default)]
pub(crate) struct TenantLocks(Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>);

impl TenantLocks {
    /// The lock of `tenant`.
    pub(crate) fn of(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(tenant.clone()).or_default())
    }
}
