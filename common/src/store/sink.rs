//! Where status changes from provider webhooks go: the one seam the admin API and the
//! dispatcher share when they run in one process.

use std::sync::Arc;

use async_trait::async_trait;

use super::{StatusUpdate, Store, StoreError};

/// Where status changes go: the store alone, or the dispatcher's status writer (which also
/// publishes them) when both services run in one process.
#[async_trait]
pub trait StatusSink: Send + Sync {
    /// Applies `updates` under the forward-only rule.
    async fn apply(&self, updates: Vec<StatusUpdate>) -> Result<(), StoreError>;
}

/// Applies status changes straight to the store.
pub struct StoreStatusSink(pub Arc<dyn Store>);

#[async_trait]
impl StatusSink for StoreStatusSink {
    async fn apply(&self, updates: Vec<StatusUpdate>) -> Result<(), StoreError> {
        self.0.apply_status(&updates).await.map(drop)
    }
}
