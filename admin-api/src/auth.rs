//! Tenant API keys: generated once, shown once, stored only as a SHA-256 hash.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use common::TenantId;
use common::store::{ApiKeyRecord, Store, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ApiError;

/// The prefix of every tenant API key, so leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "enk_";

/// A freshly made key: the secret to show once, and what the store keeps.
pub struct NewApiKey {
    /// The full secret key; shown to its owner once, never stored.
    pub secret: String,
    /// The stored record (hash only).
    pub record: ApiKeyRecord,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("record", &self.record)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Hex SHA-256 of a key, the only form the store sees. API keys are 256 random bits, so a
/// plain hash is enough (no password stretching needed).
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Makes and stores a new API key for `tenant`.
pub async fn create_api_key(store: &dyn Store, tenant: &TenantId) -> Result<NewApiKey, StoreError> {
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    let secret = format!("{KEY_PREFIX}{}", hex::encode(random));
    let secret_hash = hash_key(&secret);
    let record = ApiKeyRecord {
        key_id: format!("key_{}", &secret_hash[..16]),
        tenant_id: tenant.clone(),
        secret_hash,
        created_at: OffsetDateTime::now_utc(),
        revoked_at: None,
    };
    store.create_api_key(&record).await?;
    Ok(NewApiKey { secret, record })
}

/// The caller of a tenant route, established from its API key.
#[derive(Debug, Clone)]
pub struct TenantCaller {
    /// The tenant the key acts for: every tenant route is scoped to it.
    pub tenant_id: TenantId,
    /// The key's public id, for the audit log.
    pub key_id: String,
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for TenantCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let secret = bearer(parts)
            .filter(|secret| secret.starts_with(KEY_PREFIX))
            .ok_or_else(ApiError::unauthorized)?;
        let record = state.store.api_key_by_hash(&hash_key(secret)).await?;
        match record {
            Some(record) if record.revoked_at.is_none() => {
                state.limits.request(&record.key_id)?;
                Ok(TenantCaller {
                    tenant_id: record.tenant_id,
                    key_id: record.key_id,
                })
            }
            _ => Err(ApiError::unauthorized()),
        }
    }
}
