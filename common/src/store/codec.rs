//! How both stores write values as columns and read them back: timestamps as unix
//! milliseconds, unit enums by their serde names, JSON as text, ids and statuses parsed, log
//! offsets as signed integers, claim-journal hashes as blobs.

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::{StoreError, TenantSettings};
use crate::channel::{Channel, Priority};
use crate::ids::{CampaignId, MessageId, TenantId};
use crate::log::Offset;
use crate::status::MessageStatus;

/// Unix milliseconds of an instant (the stores keep milliseconds).
pub(crate) fn to_ms(at: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000))
        .map_err(|_| StoreError::Invalid(format!("timestamp {at} is out of range")))
}

/// The instant of stored unix milliseconds.
pub(crate) fn from_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Invalid(format!("stored timestamp {ms} is out of range: {e}")))
}

/// The serde name of a unit enum variant (`active`, `in_review`, ...).
pub(crate) fn enum_to_text<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        Ok(other) => Err(StoreError::Invalid(format!("{other} is not a unit enum variant"))),
        Err(e) => Err(StoreError::Invalid(e.to_string())),
    }
}

/// The unit enum variant with serde name `name`.
pub(crate) fn enum_from_text<T: DeserializeOwned>(name: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError::Invalid(format!("stored {what} {name:?} is not recognised")))
}

/// A value as JSON text.
pub(crate) fn json_to_text<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// A value read back from JSON text.
pub(crate) fn json_from_text<T: DeserializeOwned>(raw: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Invalid(format!("stored {what} is not valid: {e}")))
}

/// A stored message status.
/// A tenant's stored settings: the defaults while none were set.
pub(crate) fn settings_from_text(raw: Option<&str>) -> Result<TenantSettings, StoreError> {
    raw.map_or_else(
        || Ok(TenantSettings::default()),
        |raw| json_from_text(raw, "tenant settings"),
    )
}

pub(crate) fn parse_status(raw: &str) -> Result<MessageStatus, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Invalid(format!("stored message status {raw:?} is not recognised")))
}

/// A stored channel.
pub(crate) fn parse_channel(raw: &str) -> Result<Channel, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Invalid(format!("stored channel {raw:?} is not recognised")))
}

/// A stored priority.
pub(crate) fn parse_priority(raw: &str) -> Result<Priority, StoreError> {
    match raw {
        "transactional" => Ok(Priority::Transactional),
        "marketing" => Ok(Priority::Marketing),
        _ => Err(StoreError::Invalid(format!(
            "stored priority {raw:?} is not recognised"
        ))),
    }
}

/// A stored tenant id.
pub(crate) fn parse_tenant_id(raw: &str) -> Result<TenantId, StoreError> {
    TenantId::parse(raw).map_err(|e| StoreError::Invalid(format!("stored tenant id {raw:?} is not valid: {e}")))
}

/// A stored campaign id.
pub(crate) fn parse_campaign_id(raw: &str) -> Result<CampaignId, StoreError> {
    CampaignId::parse(raw).map_err(|e| StoreError::Invalid(format!("stored campaign id {raw:?} is not valid: {e}")))
}

/// A stored message id.
pub(crate) fn parse_message_id(raw: &str) -> Result<MessageId, StoreError> {
    MessageId::parse(raw).map_err(|e| StoreError::Invalid(format!("stored message id {raw:?} is not valid: {e}")))
}

/// A log offset as a signed 64-bit column (both stores' integers are signed).
pub(crate) fn offset_to_column(offset: Offset) -> Result<i64, StoreError> {
    i64::try_from(offset).map_err(|_| StoreError::Invalid(format!("log offset {offset} out of range")))
}

/// A log offset read back from a signed 64-bit column.
pub(crate) fn offset_from_column(value: i64) -> Result<Offset, StoreError> {
    Offset::try_from(value).map_err(|_| StoreError::Invalid(format!("stored log offset {value} is negative")))
}

/// Claim-journal hashes as a blob: 8 little-endian bytes each.
pub(crate) fn hashes_to_blob(hashes: &[u64]) -> Vec<u8> {
    hashes.iter().flat_map(|hash| hash.to_le_bytes()).collect()
}

/// Claim-journal hashes read back from a blob.
pub(crate) fn blob_to_hashes(blob: &[u8]) -> Result<Vec<u64>, StoreError> {
    if !blob.len().is_multiple_of(8) {
        return Err(StoreError::Invalid(format!(
            "claim journal blob of {} bytes is not a whole number of hashes",
            blob.len()
        )));
    }
    Ok(blob
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("chunks of 8")))
        .collect())
}
