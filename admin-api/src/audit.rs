//! `GET /v1/audit`: the caller's tenant's audit log, newest first: business-info changes,
//! 10DLC steps, credential and key changes, consent changes, demo tenant creation. Details
//! never hold secrets.

use axum::Json;
use axum::extract::{Query, State};
use common::TenantId;
use common::store::{AuditEntry, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::{ApiError, AppState};

/// The most entries one request answers.
pub(crate) const MAX_LIMIT: usize = 1_000;

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// How many entries, newest first (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One audited change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditView {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who: an API key id, `platform`, `system` or `recipient`.
    pub actor: String,
    /// What, as a dotted name (`business_info.updated`, `consent.opted_out`, ...).
    pub action: String,
    /// Its details.
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// The audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditLog {
    /// Entries, newest first.
    pub entries: Vec<AuditView>,
}

/// Appends an audit entry for `tenant`, dated now; details must never hold secrets.
pub(crate) async fn record(
    state: &AppState,
    tenant: &TenantId,
    actor: &str,
    action: &str,
    detail: Value,
) -> Result<(), ApiError> {
    append(state.store.as_ref(), tenant, actor, action, detail).await?;
    Ok(())
}

/// [`record`] for background work, which has a store but no request.
pub(crate) async fn append(
    store: &dyn Store,
    tenant: &TenantId,
    actor: &str,
    action: &str,
    detail: Value,
) -> Result<(), StoreError> {
    store
        .append_audit(&AuditEntry {
            tenant_id: Some(tenant.clone()),
            at: OffsetDateTime::now_utc(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail,
        })
        .await
}

/// `GET /v1/audit`.
#[utoipa::path(
    operation_id = "audit_list",
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "the audit log, newest first", body = AuditLog),
        (status = 400, description = "the query string does not parse", body = String, content_type = "text/plain"),
        (status = 401, description = "unauthorized: no valid API key", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: limit is not 1 to 1,000", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: TenantCaller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_LIMIT}")));
    }
    let entries = state.store.audit(&caller.tenant_id, limit).await?;
    Ok(Json(AuditLog {
        entries: entries
            .into_iter()
            .map(|entry| AuditView {
                at: entry.at,
                actor: entry.actor,
                action: entry.action,
                detail: entry.detail,
            })
            .collect(),
    }))
}
