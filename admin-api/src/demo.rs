//! Demo tenants: the bootstrap tenant the all-in-one stack creates on its first start.

use common::TenantId;
use common::store::{AuditEntry, Store, StoreError, Tenant, TenantStatus};
use time::OffsetDateTime;

use crate::auth::create_api_key;

/// The bootstrap demo tenant's API key, made on the first start only.
#[derive(Debug)]
pub struct BootstrapKey {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The secret key, to show once.
    pub secret: String,
}

/// Creates the demo tenant `tenant_id` and an API key for it unless the tenant exists already.
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
            plan_id: None,
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
