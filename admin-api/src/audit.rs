//! `GET /v1/audit`: the caller's tenant's audit log, newest first: business-info changes,
//! 10DLC steps, credential and key changes, consent changes, demo tenant creation. Details
//! never hold secrets.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::auth::TenantCaller;
use crate::{ApiError, AppState};

/// The most entries one request answers.
pub const MAX_LIMIT: usize = 1_000;

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    /// How many entries, newest first (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// One audited change.
#[derive(Debug, Serialize)]
pub struct AuditView {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who: an API key id, `platform`, `system` or `recipient`.
    pub actor: String,
    /// What, as a dotted name (`business_info.updated`, `consent.opted_out`, ...).
    pub action: String,
    /// Its details.
    pub detail: Value,
}

/// The audit log.
#[derive(Debug, Serialize)]
pub struct AuditLog {
    /// Entries, newest first.
    pub entries: Vec<AuditView>,
}

/// `GET /v1/audit`.
pub async fn list(
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
