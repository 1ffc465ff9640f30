//! Demo tenants: the plan they are all on (`demo.monthly_quota` a month per channel), the
//! bootstrap tenant the all-in-one stack creates on its first start (only when
//! `demo.bootstrap` asks; the standalone admin API never does), and the cleanup that deletes
//! demo tenants past their retention period.

use common::store::{AuditEntry, Plan, Store, StoreError, Tenant, TenantStatus};
use common::{Channel, TenantId};
use time::OffsetDateTime;

use crate::auth::create_api_key;

/// The bootstrap demo tenant's API key, made on the first start only.
pub struct BootstrapKey {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The secret key, to show once.
    pub secret: String,
}

impl std::fmt::Debug for BootstrapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapKey")
            .field("tenant_id", &self.tenant_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// The plan every demo tenant is on.
pub const DEMO_PLAN: &str = "demo";

/// Creates or updates the `demo` plan: `monthly_quota` a month on every channel.
pub async fn put_demo_plan(store: &dyn Store, monthly_quota: u64) -> Result<(), StoreError> {
    store
        .put_plan(&Plan {
            id: DEMO_PLAN.to_owned(),
            name: "Demo".to_owned(),
            monthly_quota: Channel::ALL
                .into_iter()
                .map(|channel| (channel, monthly_quota))
                .collect(),
        })
        .await
}

/// Creates the demo tenant `tenant_id`, on the demo plan, and an API key for it unless the
/// tenant exists already.
pub async fn bootstrap_demo_tenant(
    store: &dyn Store,
    tenant_id: &TenantId,
) -> Result<Option<BootstrapKey>, StoreError> {
    if store.tenant(tenant_id).await?.is_some() {
        return Ok(None);
    }
    let now = OffsetDateTime::now_utc();
    store
        .create_tenant(&Tenant {
            id: tenant_id.clone(),
            name: "Demo tenant".to_owned(),
            is_demo: true,
            status: TenantStatus::Active,
            plan_id: Some(DEMO_PLAN.to_owned()),
            created_by: Some("bootstrap".to_owned()),
            created_at: now,
        })
        .await?;
    let key = create_api_key(store, tenant_id).await?;
    store
        .append_audit(&AuditEntry {
            tenant_id: Some(tenant_id.clone()),
            at: now,
            actor: "system".to_owned(),
            action: "demo_tenant.created".to_owned(),
            detail: serde_json::json!({ "api_key_id": key.record.key_id, "source": "bootstrap" }),
        })
        .await?;
    Ok(Some(BootstrapKey {
        tenant_id: tenant_id.clone(),
        secret: key.secret,
    }))
}

/// Deletes a demo tenant and every row it owns, and audits it platform-wide (the tenant's own
/// audit log goes with it).
pub async fn delete_demo_tenant(store: &dyn Store, tenant_id: &TenantId, actor: &str) -> Result<bool, StoreError> {
    let deleted = store.delete_tenant(tenant_id).await?;
    if deleted {
        store
            .append_audit(&AuditEntry {
                tenant_id: None,
                at: OffsetDateTime::now_utc(),
                actor: actor.to_owned(),
                action: "demo_tenant.deleted".to_owned(),
                detail: serde_json::json!({ "tenant_id": tenant_id }),
            })
            .await?;
        tracing::info!(tenant = %tenant_id, actor, "demo tenant deleted");
    }
    Ok(deleted)
}

/// Deletes every demo tenant created more than `retention` before `now` (the bootstrap demo
/// tenant of the all-in-one stack is kept: it is the product's front door); answers how many.
pub async fn cleanup_expired(
    store: &dyn Store,
    retention: std::time::Duration,
    keep: Option<&TenantId>,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let cutoff = now - retention;
    let mut deleted = 0;
    for tenant in store.demo_tenants_created_before(cutoff).await? {
        if Some(&tenant.id) == keep {
            continue;
        }
        if delete_demo_tenant(store, &tenant.id, "system").await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Runs [`cleanup_expired`] every `interval` until `stop` is cancelled.
pub async fn run_cleanup(
    store: std::sync::Arc<dyn Store>,
    retention: std::time::Duration,
    interval: std::time::Duration,
    keep: Option<TenantId>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match cleanup_expired(store.as_ref(), retention, keep.as_ref(), OffsetDateTime::now_utc()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired demo tenants deleted"),
            Err(error) => tracing::warn!(%error, "demo tenant cleanup failed; retrying at the next tick"),
        }
    }
}
