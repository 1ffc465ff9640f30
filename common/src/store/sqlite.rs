//! The embedded [`Store`]: one SQLite file in WAL mode, with versioned migrations.
//!
//! - Two connections: one writer and one reader. WAL lets reads proceed while a write
//!   transaction is open. Each sits behind a mutex and every query runs in
//!   [`tokio::task::spawn_blocking`], so async callers never block a runtime thread.
//! - Durability: `synchronous=FULL`. The dispatcher commits its log offsets only after a store
//!   write returns, so a write that returned must survive power loss: with FULL the WAL is
//!   fsynced at every commit. (`NORMAL` would keep the database consistent but could lose the
//!   last commits on power loss, which would break "once written, durable".)
//! - Batches (claims, status updates) run in one transaction with cached prepared statements;
//!   there is never a transaction per row.
//! - Timestamps are stored as INTEGER unix milliseconds (UTC): sub-millisecond precision is
//!   dropped, so values round-trip exactly only when they are whole milliseconds.
//! - Migrations live in `common/migrations/sqlite/NNNN_name.sql`, are embedded in the binary,
//!   and are applied in order at open, one transaction each; `PRAGMA user_version` holds the
//!   number applied.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::FromSql;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Params, Row, Statement, Transaction, TransactionBehavior, ffi, params,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use super::{
    ApiKeyRecord, AuditEntry, Brand, BusinessInfoRecord, ChannelCredentials, Claim, MessageRecord, NewMessage, Plan,
    SenderNumber, StatusChange, StatusUpdate, Store, StoreError, Suppression, Tenant, TenantStatus,
};
use crate::address::PhoneNumber;
use crate::channel::{Channel, Priority};
use crate::ids::{CampaignId, MessageId, TenantId};
use crate::status::MessageStatus;

/// The migrations, in order; migration `i` (0-based) brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_stuck_messages.sql"),
];

/// The schema version this build creates and understands (the number of embedded migrations).
pub const SCHEMA_VERSION: u32 = 2;

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache per connection, in KiB.
const CACHE_KIB: i64 = 64 * 1024;

/// Room for every distinct statement of this module in each connection's statement cache.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// The embedded SQLite store: a writer and a reader connection on one WAL database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directory if needed) the database at `path` and
    /// applies the migrations it lacks.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Backend(format!("cannot create directory {}: {e}", parent.display())))?;
        }
        let mut writer = Connection::open(path).map_err(db_err)?;
        configure(&writer)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "cannot put {} in WAL journal mode (it stays in {mode})",
                path.display()
            )));
        }
        // FULL, not NORMAL: a write that returned must survive power loss (see the module docs).
        writer.pragma_update(None, "synchronous", "FULL").map_err(db_err)?;
        migrate(&mut writer)?;

        let reader = Connection::open(path).map_err(db_err)?;
        configure(&reader)?;
        reader.pragma_update(None, "query_only", true).map_err(db_err)?;

        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Runs `work` on the writer connection on a blocking thread.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        run_blocking(&self.writer, work).await
    }

    /// Runs `work` on the reader connection on a blocking thread.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        run_blocking(&self.reader, work).await
    }
}

async fn run_blocking<T, F>(connection: &Arc<Mutex<Connection>>, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let connection = Arc::clone(connection);
    tokio::task::spawn_blocking(move || {
        // A panic while the lock was held can only have left a transaction open, and a
        // dropped `Transaction` rolls back, so the connection is still sound after poisoning.
        let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut connection)
    })
    .await
    .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

/// Per-connection settings.
fn configure(connection: &Connection) -> Result<(), StoreError> {
    connection.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    connection.pragma_update(None, "foreign_keys", true).map_err(db_err)?;
    // The default 2 MiB page cache makes every batch re-read the indexes it touches from the
    // file; 64 MiB per connection keeps the hot ones in memory (measured: most of the
    // dispatcher's CPU went to those reads).
    connection
        .pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(db_err)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(())
}

/// Applies the missing migrations, one immediate transaction each (so that two processes
/// opening a new file at once do not both apply a step).
fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let known = i64::from(SCHEMA_VERSION);
    loop {
        let tx = write_tx(connection)?;
        let current: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db_err)?;
        if current > known {
            return Err(StoreError::Invalid(format!(
                "database schema version {current} is newer than this build ({known})"
            )));
        }
        if current == known {
            return tx.commit().map_err(db_err);
        }
        let index = usize::try_from(current)
            .map_err(|_| StoreError::Invalid(format!("database schema version {current} is negative")))?;
        tx.execute_batch(MIGRATIONS[index]).map_err(db_err)?;
        tx.pragma_update(None, "user_version", current + 1).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        tracing::info!(version = current + 1, "applied sqlite store migration");
    }
}

/// Starts a write transaction that takes the write lock at once.
fn write_tx(connection: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)
}

/// Maps a SQLite error: unique and foreign-key violations are conflicts, undecodable stored
/// values are invalid data, everything else is a backend failure.
fn db_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) if failure.code == ErrorCode::ConstraintViolation => {
            let text = message.unwrap_or_else(|| failure.to_string());
            match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => StoreError::Conflict(text),
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    StoreError::Conflict(format!("{text}: the tenant it refers to does not exist"))
                }
                _ => StoreError::Backend(text),
            }
        }
        e @ (rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)) => StoreError::Invalid(e.to_string()),
        e => StoreError::Backend(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Value conversions.

fn to_ms(at: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000))
        .map_err(|_| StoreError::Invalid(format!("timestamp {at} is out of range")))
}

fn opt_to_ms(at: Option<OffsetDateTime>) -> Result<Option<i64>, StoreError> {
    at.map(to_ms).transpose()
}

fn from_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::Invalid(format!("stored timestamp {ms} is out of range: {e}")))
}

/// The serde name of a unit enum variant (`active`, `in_review`, ...).
fn enum_to_sql<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        Ok(other) => Err(StoreError::Invalid(format!("{other} is not a unit enum variant"))),
        Err(e) => Err(StoreError::Invalid(e.to_string())),
    }
}

/// The unit enum variant with serde name `name`.
fn enum_from_sql<T: DeserializeOwned>(name: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|_| StoreError::Invalid(format!("stored {what} {name:?} is not recognised")))
}

fn json_to_sql<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn json_from_sql<T: DeserializeOwned>(raw: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Invalid(format!("stored {what} is not valid: {e}")))
}

fn parse_status(raw: &str) -> Result<MessageStatus, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Invalid(format!("stored message status {raw:?} is not recognised")))
}

fn parse_channel(raw: &str) -> Result<Channel, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Invalid(format!("stored channel {raw:?} is not recognised")))
}

fn parse_priority(raw: &str) -> Result<Priority, StoreError> {
    match raw {
        "transactional" => Ok(Priority::Transactional),
        "marketing" => Ok(Priority::Marketing),
        _ => Err(StoreError::Invalid(format!(
            "stored priority {raw:?} is not recognised"
        ))),
    }
}

fn bad_value(what: &str, raw: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("stored {what} {raw:?} is not valid: {e}"))
}

fn parse_tenant_id(raw: &str) -> Result<TenantId, StoreError> {
    TenantId::parse(raw).map_err(|e| bad_value("tenant id", raw, e))
}

fn parse_message_id(raw: &str) -> Result<MessageId, StoreError> {
    MessageId::parse(raw).map_err(|e| bad_value("message id", raw, e))
}

// ---------------------------------------------------------------------------------------------
// Row access.

fn col<T: FromSql>(row: &Row<'_>, index: usize) -> Result<T, StoreError> {
    row.get(index).map_err(db_err)
}

fn col_time(row: &Row<'_>, index: usize) -> Result<OffsetDateTime, StoreError> {
    from_ms(col(row, index)?)
}

fn col_opt_time(row: &Row<'_>, index: usize) -> Result<Option<OffsetDateTime>, StoreError> {
    col::<Option<i64>>(row, index)?.map(from_ms).transpose()
}

/// Runs a query and maps its first row, if any.
fn query_opt<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    map: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut rows = statement.query(params).map_err(db_err)?;
    match rows.next().map_err(db_err)? {
        Some(row) => map(row).map(Some),
        None => Ok(None),
    }
}

/// Runs a query and maps every row.
fn query_all<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = statement.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(map(row)?);
    }
    Ok(out)
}

const TENANT_COLUMNS: &str = "id, name, is_demo, status, plan_id, created_by, created_at";

fn tenant_from_row(row: &Row<'_>) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: parse_tenant_id(&col::<String>(row, 0)?)?,
        name: col(row, 1)?,
        is_demo: col(row, 2)?,
        status: enum_from_sql(&col::<String>(row, 3)?, "tenant status")?,
        plan_id: col(row, 4)?,
        created_by: col(row, 5)?,
        created_at: col_time(row, 6)?,
    })
}

const API_KEY_COLUMNS: &str = "key_id, tenant_id, secret_hash, created_at, revoked_at";

fn api_key_from_row(row: &Row<'_>) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_id: col(row, 0)?,
        tenant_id: parse_tenant_id(&col::<String>(row, 1)?)?,
        secret_hash: col(row, 2)?,
        created_at: col_time(row, 3)?,
        revoked_at: col_opt_time(row, 4)?,
    })
}

const BRAND_COLUMNS: &str = "tenant_id, status, status_reason, trust_score, workflow_step, workflow_attempts, \
                             twilio_sids, updated_at, approved_at";

fn brand_from_row(row: &Row<'_>) -> Result<Brand, StoreError> {
    Ok(Brand {
        tenant_id: parse_tenant_id(&col::<String>(row, 0)?)?,
        status: enum_from_sql(&col::<String>(row, 1)?, "brand status")?,
        status_reason: col(row, 2)?,
        trust_score: col(row, 3)?,
        workflow_step: col(row, 4)?,
        workflow_attempts: col(row, 5)?,
        twilio_sids: json_from_sql::<BTreeMap<String, String>>(&col::<String>(row, 6)?, "brand twilio_sids")?,
        updated_at: col_time(row, 7)?,
        approved_at: col_opt_time(row, 8)?,
    })
}

const SENDER_NUMBER_COLUMNS: &str = "tenant_id, number, kind, status, twilio_sid, rate_per_second, created_at";

fn sender_number_from_row(row: &Row<'_>) -> Result<SenderNumber, StoreError> {
    let number: String = col(row, 1)?;
    Ok(SenderNumber {
        tenant_id: parse_tenant_id(&col::<String>(row, 0)?)?,
        number: PhoneNumber::parse(number.as_str()).map_err(|e| bad_value("sender number", &number, e))?,
        kind: enum_from_sql(&col::<String>(row, 2)?, "sender kind")?,
        status: enum_from_sql(&col::<String>(row, 3)?, "number status")?,
        twilio_sid: col(row, 4)?,
        rate_per_second: col(row, 5)?,
        created_at: col_time(row, 6)?,
    })
}

const CREDENTIALS_COLUMNS: &str = "tenant_id, channel, provider, settings, key_id, sealed_secrets, is_verified, \
                                   verification_error, updated_at";

fn credentials_from_row(row: &Row<'_>) -> Result<ChannelCredentials, StoreError> {
    Ok(ChannelCredentials {
        tenant_id: parse_tenant_id(&col::<String>(row, 0)?)?,
        channel: parse_channel(&col::<String>(row, 1)?)?,
        provider: enum_from_sql(&col::<String>(row, 2)?, "provider")?,
        settings: json_from_sql(&col::<String>(row, 3)?, "credential settings")?,
        key_id: col(row, 4)?,
        sealed_secrets: col(row, 5)?,
        is_verified: col(row, 6)?,
        verification_error: col(row, 7)?,
        updated_at: col_time(row, 8)?,
    })
}

const SUPPRESSION_COLUMNS: &str = "tenant_id, address, reason, source, created_at";

fn suppression_from_row(row: &Row<'_>) -> Result<Suppression, StoreError> {
    Ok(Suppression {
        tenant_id: parse_tenant_id(&col::<String>(row, 0)?)?,
        address: col(row, 1)?,
        reason: enum_from_sql(&col::<String>(row, 2)?, "suppression reason")?,
        source: col(row, 3)?,
        created_at: col_time(row, 4)?,
    })
}

const MESSAGE_COLUMNS: &str = "tenant_id, message_id, campaign_id, channel, recipient, priority, segments, status, \
                               reason, provider_message_id, accepted_at, updated_at";

/// A message row; its history is filled in by the caller.
fn message_from_row(row: &Row<'_>) -> Result<MessageRecord, StoreError> {
    let campaign_id = match col::<Option<String>>(row, 2)? {
        Some(raw) => Some(CampaignId::parse(raw.as_str()).map_err(|e| bad_value("campaign id", &raw, e))?),
        None => None,
    };
    Ok(MessageRecord {
        tenant_id: parse_tenant_id(&col::<String>(row, 0)?)?,
        message_id: parse_message_id(&col::<String>(row, 1)?)?,
        campaign_id,
        channel: parse_channel(&col::<String>(row, 3)?)?,
        recipient: col(row, 4)?,
        priority: parse_priority(&col::<String>(row, 5)?)?,
        segments: col(row, 6)?,
        status: parse_status(&col::<String>(row, 7)?)?,
        reason: col(row, 8)?,
        provider_message_id: col(row, 9)?,
        accepted_at: col_time(row, 10)?,
        updated_at: col_time(row, 11)?,
        history: Vec::new(),
    })
}

fn status_change_from_row(row: &Row<'_>) -> Result<StatusChange, StoreError> {
    Ok(StatusChange {
        status: parse_status(&col::<String>(row, 0)?)?,
        at: col_time(row, 1)?,
        reason: col(row, 2)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let tenant_id = match col::<Option<String>>(row, 0)? {
        Some(raw) => Some(parse_tenant_id(&raw)?),
        None => None,
    };
    Ok(AuditEntry {
        tenant_id,
        at: col_time(row, 1)?,
        actor: col(row, 2)?,
        action: col(row, 3)?,
        detail: json_from_sql(&col::<String>(row, 4)?, "audit detail")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Hot-path statements.

const INSERT_MESSAGE: &str = "INSERT INTO messages (tenant_id, message_id, campaign_id, channel, recipient, priority, \
                              segments, status, reason, provider_message_id, accepted_at, updated_at, last_seq) \
                              VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', NULL, NULL, ?8, ?8, 0) \
                              ON CONFLICT (tenant_id, message_id) DO NOTHING";

const SELECT_MESSAGE_STATUS: &str = "SELECT status, last_seq FROM messages WHERE tenant_id = ?1 AND message_id = ?2";

const UPDATE_MESSAGE_STATUS: &str = "UPDATE messages SET status = ?3, reason = ?4, updated_at = ?5, \
                                     provider_message_id = coalesce(?6, provider_message_id), last_seq = ?7 \
                                     WHERE tenant_id = ?1 AND message_id = ?2";

const INSERT_HISTORY: &str = "INSERT INTO message_status_history (tenant_id, message_id, seq, status, at, reason) \
                              VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const UPSERT_PROVIDER_ID: &str = "INSERT INTO provider_message_ids (provider_message_id, tenant_id, message_id) \
                                  VALUES (?1, ?2, ?3) ON CONFLICT (provider_message_id) DO UPDATE SET \
                                  tenant_id = excluded.tenant_id, message_id = excluded.message_id";

#[async_trait]
impl Store for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let tenant = tenant.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))
                .map_err(db_err)?;
            statement
                .execute(params![
                    tenant.id.as_str(),
                    tenant.name,
                    tenant.is_demo,
                    enum_to_sql(&tenant.status)?,
                    tenant.plan_id,
                    tenant.created_by,
                    to_ms(tenant.created_at)?,
                ])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"))
                .map_err(db_err)?;
            query_opt(&mut statement, [id.as_str()], tenant_from_row)
        })
        .await
    }

    async fn set_tenant_status(&self, id: &TenantId, status: TenantStatus) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached("UPDATE tenants SET status = ?2 WHERE id = ?1")
                .map_err(db_err)?;
            let changed = statement
                .execute(params![id.as_str(), enum_to_sql(&status)?])
                .map_err(db_err)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn demo_tenants_created_before(&self, before: OffsetDateTime) -> Result<Vec<Tenant>, StoreError> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants WHERE is_demo = 1 AND created_at < ?1 \
                     ORDER BY created_at, id"
                ))
                .map_err(db_err)?;
            query_all(&mut statement, [to_ms(before)?], tenant_from_row)
        })
        .await
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.write(move |conn| {
            let tx = write_tx(conn)?;
            // Tables without a foreign key to tenants (see the migration);
            // the rest cascades from the tenant row.
            for table in [
                "message_status_history",
                "provider_message_ids",
                "messages",
                "usage",
                "suppressions",
                "audit_log",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1"), [id.as_str()])
                    .map_err(db_err)?;
            }
            let deleted = tx
                .execute("DELETE FROM tenants WHERE id = ?1", [id.as_str()])
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ))
                .map_err(db_err)?;
            statement
                .execute(params![
                    key.key_id,
                    key.tenant_id.as_str(),
                    key.secret_hash,
                    to_ms(key.created_at)?,
                    opt_to_ms(key.revoked_at)?,
                ])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let secret_hash = secret_hash.to_owned();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?1"
                ))
                .map_err(db_err)?;
            query_opt(&mut statement, [secret_hash.as_str()], api_key_from_row)
        })
        .await
    }

    async fn revoke_api_key(&self, tenant: &TenantId, key_id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let tenant = tenant.clone();
        let key_id = key_id.to_owned();
        self.write(move |conn| {
            // Revoking twice keeps the first revocation time.
            let mut statement = conn
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?3) WHERE tenant_id = ?1 AND key_id = ?2",
                )
                .map_err(db_err)?;
            let changed = statement
                .execute(params![tenant.as_str(), key_id, to_ms(at)?])
                .map_err(db_err)?;
            Ok(changed > 0)
        })
        .await
    }

    async fn put_business_info(&self, info: &BusinessInfoRecord) -> Result<(), StoreError> {
        let info = info.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "INSERT INTO business_info (tenant_id, data, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tenant_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                )
                .map_err(db_err)?;
            statement
                .execute(params![
                    info.tenant_id.as_str(),
                    json_to_sql(&info.data)?,
                    to_ms(info.updated_at)?
                ])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn business_info(&self, tenant: &TenantId) -> Result<Option<BusinessInfoRecord>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT data, updated_at FROM business_info WHERE tenant_id = ?1")
                .map_err(db_err)?;
            query_opt(&mut statement, [tenant.as_str()], |row| {
                Ok(BusinessInfoRecord {
                    tenant_id: tenant.clone(),
                    data: json_from_sql(&col::<String>(row, 0)?, "business info")?,
                    updated_at: col_time(row, 1)?,
                })
            })
        })
        .await
    }

    async fn put_brand(&self, brand: &Brand) -> Result<(), StoreError> {
        let brand = brand.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "INSERT INTO brands ({BRAND_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (tenant_id) DO UPDATE SET status = excluded.status, \
                     status_reason = excluded.status_reason, trust_score = excluded.trust_score, \
                     workflow_step = excluded.workflow_step, workflow_attempts = excluded.workflow_attempts, \
                     twilio_sids = excluded.twilio_sids, updated_at = excluded.updated_at, \
                     approved_at = excluded.approved_at"
                ))
                .map_err(db_err)?;
            statement
                .execute(params![
                    brand.tenant_id.as_str(),
                    enum_to_sql(&brand.status)?,
                    brand.status_reason,
                    brand.trust_score,
                    brand.workflow_step,
                    brand.workflow_attempts,
                    json_to_sql(&brand.twilio_sids)?,
                    to_ms(brand.updated_at)?,
                    opt_to_ms(brand.approved_at)?,
                ])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn brand(&self, tenant: &TenantId) -> Result<Option<Brand>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!("SELECT {BRAND_COLUMNS} FROM brands WHERE tenant_id = ?1"))
                .map_err(db_err)?;
            query_opt(&mut statement, [tenant.as_str()], brand_from_row)
        })
        .await
    }

    async fn put_sender_number(&self, number: &SenderNumber) -> Result<(), StoreError> {
        let number = number.clone();
        self.write(move |conn| {
            // The update only applies when the number is the same tenant's; otherwise nothing
            // changes and the number belongs to another tenant.
            let mut statement = conn
                .prepare_cached(&format!(
                    "INSERT INTO sender_numbers ({SENDER_NUMBER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (number) DO UPDATE SET kind = excluded.kind, status = excluded.status, \
                     twilio_sid = excluded.twilio_sid, rate_per_second = excluded.rate_per_second, \
                     created_at = excluded.created_at \
                     WHERE sender_numbers.tenant_id = excluded.tenant_id"
                ))
                .map_err(db_err)?;
            let changed = statement
                .execute(params![
                    number.tenant_id.as_str(),
                    number.number.as_str(),
                    enum_to_sql(&number.kind)?,
                    enum_to_sql(&number.status)?,
                    number.twilio_sid,
                    number.rate_per_second,
                    to_ms(number.created_at)?,
                ])
                .map_err(db_err)?;
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "sender number {} belongs to another tenant",
                    number.number.as_str()
                )));
            }
            Ok(())
        })
        .await
    }

    async fn sender_numbers(&self, tenant: &TenantId) -> Result<Vec<SenderNumber>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {SENDER_NUMBER_COLUMNS} FROM sender_numbers WHERE tenant_id = ?1 ORDER BY created_at, number"
                ))
                .map_err(db_err)?;
            query_all(&mut statement, [tenant.as_str()], sender_number_from_row)
        })
        .await
    }

    async fn put_credentials(&self, credentials: &ChannelCredentials) -> Result<(), StoreError> {
        let credentials = credentials.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "INSERT INTO channel_credentials ({CREDENTIALS_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (tenant_id, channel) DO UPDATE SET provider = excluded.provider, \
                     settings = excluded.settings, key_id = excluded.key_id, \
                     sealed_secrets = excluded.sealed_secrets, is_verified = excluded.is_verified, \
                     verification_error = excluded.verification_error, updated_at = excluded.updated_at"
                ))
                .map_err(db_err)?;
            statement
                .execute(params![
                    credentials.tenant_id.as_str(),
                    credentials.channel.as_str(),
                    enum_to_sql(&credentials.provider)?,
                    json_to_sql(&credentials.settings)?,
                    credentials.key_id,
                    credentials.sealed_secrets,
                    credentials.is_verified,
                    credentials.verification_error,
                    to_ms(credentials.updated_at)?,
                ])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn credentials(&self, tenant: &TenantId, channel: Channel) -> Result<Option<ChannelCredentials>, StoreError> {
        let tenant = tenant.clone();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {CREDENTIALS_COLUMNS} FROM channel_credentials WHERE tenant_id = ?1 AND channel = ?2"
                ))
                .map_err(db_err)?;
            query_opt(
                &mut statement,
                [tenant.as_str(), channel.as_str()],
                credentials_from_row,
            )
        })
        .await
    }

    async fn delete_credentials(&self, tenant: &TenantId, channel: Channel) -> Result<bool, StoreError> {
        let tenant = tenant.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached("DELETE FROM channel_credentials WHERE tenant_id = ?1 AND channel = ?2")
                .map_err(db_err)?;
            let deleted = statement.execute([tenant.as_str(), channel.as_str()]).map_err(db_err)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn put_plan(&self, plan: &Plan) -> Result<(), StoreError> {
        let plan = plan.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "INSERT INTO plans (id, name, monthly_quota) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, monthly_quota = excluded.monthly_quota",
                )
                .map_err(db_err)?;
            statement
                .execute(params![plan.id, plan.name, json_to_sql(&plan.monthly_quota)?])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT id, name, monthly_quota FROM plans WHERE id = ?1")
                .map_err(db_err)?;
            query_opt(&mut statement, [id.as_str()], |row| {
                Ok(Plan {
                    id: col(row, 0)?,
                    name: col(row, 1)?,
                    monthly_quota: json_from_sql(&col::<String>(row, 2)?, "plan monthly_quota")?,
                })
            })
        })
        .await
    }

    async fn add_usage(
        &self,
        tenant: &TenantId,
        channel: Channel,
        period: &str,
        delta: i64,
    ) -> Result<u64, StoreError> {
        let tenant = tenant.clone();
        let period = period.to_owned();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "INSERT INTO usage (tenant_id, channel, period, count) VALUES (?1, ?2, ?3, max(?4, 0)) \
                     ON CONFLICT (tenant_id, channel, period) DO UPDATE SET count = max(usage.count + ?4, 0) \
                     RETURNING count",
                )
                .map_err(db_err)?;
            let count: i64 = statement
                .query_row(params![tenant.as_str(), channel.as_str(), period, delta], |row| {
                    row.get(0)
                })
                .map_err(db_err)?;
            u64::try_from(count).map_err(|_| StoreError::Invalid(format!("usage counter {count} is negative")))
        })
        .await
    }

    async fn usage(&self, tenant: &TenantId, channel: Channel, period: &str) -> Result<u64, StoreError> {
        let tenant = tenant.clone();
        let period = period.to_owned();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT count FROM usage WHERE tenant_id = ?1 AND channel = ?2 AND period = ?3")
                .map_err(db_err)?;
            let count = query_opt(
                &mut statement,
                [tenant.as_str(), channel.as_str(), period.as_str()],
                |row| col::<u64>(row, 0),
            )?;
            Ok(count.unwrap_or(0))
        })
        .await
    }

    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        let suppression = suppression.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "INSERT INTO suppressions ({SUPPRESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (tenant_id, address) DO UPDATE SET reason = excluded.reason, \
                     source = excluded.source, created_at = excluded.created_at"
                ))
                .map_err(db_err)?;
            statement
                .execute(params![
                    suppression.tenant_id.as_str(),
                    suppression.address,
                    enum_to_sql(&suppression.reason)?,
                    suppression.source,
                    to_ms(suppression.created_at)?,
                ])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn unsuppress(&self, tenant: &TenantId, address: &str) -> Result<bool, StoreError> {
        let tenant = tenant.clone();
        let address = address.to_owned();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached("DELETE FROM suppressions WHERE tenant_id = ?1 AND address = ?2")
                .map_err(db_err)?;
            let deleted = statement.execute([tenant.as_str(), address.as_str()]).map_err(db_err)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn suppression(&self, tenant: &TenantId, address: &str) -> Result<Option<Suppression>, StoreError> {
        let tenant = tenant.clone();
        let address = address.to_owned();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE tenant_id = ?1 AND address = ?2"
                ))
                .map_err(db_err)?;
            query_opt(
                &mut statement,
                [tenant.as_str(), address.as_str()],
                suppression_from_row,
            )
        })
        .await
    }

    async fn suppressed_among(&self, tenant: &TenantId, addresses: &[String]) -> Result<Vec<String>, StoreError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = tenant.clone();
        let addresses = addresses.to_vec();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT 1 FROM suppressions WHERE tenant_id = ?1 AND address = ?2")
                .map_err(db_err)?;
            let mut seen = HashSet::with_capacity(addresses.len());
            let mut suppressed = Vec::new();
            for address in &addresses {
                if !seen.insert(address.as_str()) {
                    continue;
                }
                if statement.exists([tenant.as_str(), address.as_str()]).map_err(db_err)? {
                    suppressed.push(address.clone());
                }
            }
            Ok(suppressed)
        })
        .await
    }

    async fn claim_messages(&self, messages: &[NewMessage]) -> Result<Vec<Claim>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let messages = messages.to_vec();
        self.write(move |conn| {
            let tx = write_tx(conn)?;
            let mut claims = Vec::with_capacity(messages.len());
            {
                let mut insert = tx.prepare_cached(INSERT_MESSAGE).map_err(db_err)?;
                let mut history = tx.prepare_cached(INSERT_HISTORY).map_err(db_err)?;
                let mut select = tx.prepare_cached(SELECT_MESSAGE_STATUS).map_err(db_err)?;
                for message in &messages {
                    let tenant = message.tenant_id.as_str();
                    let id = message.message_id.as_str();
                    let accepted_at = to_ms(message.accepted_at)?;
                    let inserted = insert
                        .execute(params![
                            tenant,
                            id,
                            message.campaign_id.as_ref().map(CampaignId::as_str),
                            message.channel.as_str(),
                            message.recipient,
                            message.priority.as_str(),
                            message.segments,
                            accepted_at,
                        ])
                        .map_err(db_err)?;
                    if inserted > 0 {
                        history
                            .execute(params![
                                tenant,
                                id,
                                0_i64,
                                MessageStatus::Queued.as_str(),
                                accepted_at,
                                None::<&str>
                            ])
                            .map_err(db_err)?;
                        claims.push(Claim::New);
                    } else {
                        let status = query_opt(&mut select, [tenant, id], |row| parse_status(&col::<String>(row, 0)?))?
                            .ok_or_else(|| {
                                StoreError::Backend(format!("message {tenant}/{id} neither inserted nor found"))
                            })?;
                        claims.push(Claim::Existing(status));
                    }
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(claims)
        })
        .await
    }

    async fn apply_status(&self, updates: &[StatusUpdate]) -> Result<Vec<bool>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let updates = updates.to_vec();
        self.write(move |conn| {
            let tx = write_tx(conn)?;
            let mut applied = Vec::with_capacity(updates.len());
            {
                let mut select = tx.prepare_cached(SELECT_MESSAGE_STATUS).map_err(db_err)?;
                let mut update = tx.prepare_cached(UPDATE_MESSAGE_STATUS).map_err(db_err)?;
                let mut history = tx.prepare_cached(INSERT_HISTORY).map_err(db_err)?;
                let mut index = tx.prepare_cached(UPSERT_PROVIDER_ID).map_err(db_err)?;
                for change in &updates {
                    let tenant = change.tenant_id.as_str();
                    let id = change.message_id.as_str();
                    let current = select
                        .query_row([tenant, id], |row| {
                            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                        })
                        .optional()
                        .map_err(db_err)?;
                    let Some((status, last_seq)) = current else {
                        applied.push(false);
                        continue;
                    };
                    if !parse_status(&status)?.can_advance_to(change.status) {
                        applied.push(false);
                        continue;
                    }
                    let seq = last_seq + 1;
                    let at = to_ms(change.at)?;
                    update
                        .execute(params![
                            tenant,
                            id,
                            change.status.as_str(),
                            change.reason,
                            at,
                            change.provider_message_id,
                            seq,
                        ])
                        .map_err(db_err)?;
                    history
                        .execute(params![tenant, id, seq, change.status.as_str(), at, change.reason])
                        .map_err(db_err)?;
                    if let Some(provider_id) = &change.provider_message_id {
                        index.execute([provider_id.as_str(), tenant, id]).map_err(db_err)?;
                    }
                    applied.push(true);
                }
            }
            tx.commit().map_err(db_err)?;
            Ok(applied)
        })
        .await
    }

    async fn message(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let tenant = tenant.clone();
        let id = id.clone();
        self.read(move |conn| {
            // One read transaction: the row and its history from the same snapshot.
            let tx = conn.transaction().map_err(db_err)?;
            let record = {
                let mut select = tx
                    .prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ?1 AND message_id = ?2"
                    ))
                    .map_err(db_err)?;
                let Some(mut record) = query_opt(&mut select, [tenant.as_str(), id.as_str()], message_from_row)? else {
                    return Ok(None);
                };
                let mut history = tx
                    .prepare_cached(
                        "SELECT status, at, reason FROM message_status_history \
                         WHERE tenant_id = ?1 AND message_id = ?2 ORDER BY seq",
                    )
                    .map_err(db_err)?;
                record.history = query_all(&mut history, [tenant.as_str(), id.as_str()], status_change_from_row)?;
                record
            };
            tx.commit().map_err(db_err)?;
            Ok(Some(record))
        })
        .await
    }

    async fn stuck_messages(
        &self,
        statuses: &[MessageStatus],
        updated_before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let statuses: Vec<&'static str> = statuses.iter().map(|status| status.as_str()).collect();
        let before = to_ms(updated_before)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE status = ?1 AND updated_at < ?2 \
                     ORDER BY updated_at LIMIT ?3"
                ))
                .map_err(db_err)?;
            let mut stuck = Vec::new();
            for status in statuses {
                let room = limit - stuck.len() as i64;
                if room <= 0 {
                    break;
                }
                stuck.extend(query_all(
                    &mut statement,
                    rusqlite::params![status, before, room],
                    message_from_row,
                )?);
            }
            Ok(stuck)
        })
        .await
    }

    async fn message_by_provider_id(
        &self,
        provider_message_id: &str,
    ) -> Result<Option<(TenantId, MessageId)>, StoreError> {
        let provider_message_id = provider_message_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT tenant_id, message_id FROM provider_message_ids WHERE provider_message_id = ?1")
                .map_err(db_err)?;
            query_opt(&mut statement, [provider_message_id.as_str()], |row| {
                Ok((
                    parse_tenant_id(&col::<String>(row, 0)?)?,
                    parse_message_id(&col::<String>(row, 1)?)?,
                ))
            })
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.write(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "INSERT INTO audit_log (tenant_id, at, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(db_err)?;
            statement
                .execute(params![
                    entry.tenant_id.as_ref().map(TenantId::as_str),
                    to_ms(entry.at)?,
                    entry.actor,
                    entry.action,
                    json_to_sql(&entry.detail)?,
                ])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn audit(&self, tenant: &TenantId, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let tenant = tenant.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT tenant_id, at, actor, action, detail FROM audit_log WHERE tenant_id = ?1 \
                     ORDER BY at DESC, id DESC LIMIT ?2",
                )
                .map_err(db_err)?;
            query_all(&mut statement, params![tenant.as_str(), limit], audit_from_row)
        })
        .await
    }
}
