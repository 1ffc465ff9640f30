//! The scale-out [`Store`](super::Store): ScyllaDB or Apache Cassandra over CQL, with the `scylla` driver.
//!
//! - Schema: the versioned CQL files in `common/migrations/cql/` (embedded in the binary), applied at
//!   [`CassandraStore::open`] in order, each recorded in `<keyspace>.schema_migrations`; every
//!   statement is idempotent (`IF NOT EXISTS`, `IF EXISTS`), and a lease row (an LWT with a
//!   TTL) lets one process migrate at a time. The files say which query each table serves.
//! - Requests: every statement is prepared once at open; the driver's default policy routes
//!   each request to a replica of its partition (token-aware) at `LOCAL_QUORUM`.
//! - Lightweight transactions (Paxos) only where correctness needs them: usage counters
//!   (compare-and-set: the total never goes below zero) and the unique values (tenant ids, API
//!   key hashes, sender numbers). Everything else is a plain write, the dispatch path included:
//!   a message's statuses are rows of its partition keyed by rank, its current status the
//!   highest, so a claim is a read and an insert (the tenant's one owning dispatcher is the
//!   only claimer) and a status change is a read, the forward-only check of
//!   [`MessageStatus::can_advance_to`] and an insert that no concurrent or late write can undo.
//! - Batches of claims and status changes run with bounded concurrency (`concurrency`
//!   requests in flight; changes to one message stay in order). The rows derived from them
//!   (campaign rows, the stuck-message index, the tenant's message list)
//!   are written afterwards, grouped by partition into unlogged single-partition batches or
//!   one request each (`Derived`), before the call returns. A crash in between leaves
//!   the message ahead of its derived rows; the dispatcher has not committed the offset, so the
//!   message comes back and its claim (`Existing`) rewrites them from the message.
//! - The stuck index (messages in `sent` or `unknown`, for reconciliation) is insert-only:
//!   entries expire with their TTL under time-window compaction, never deleted, so reading it
//!   steps over no tombstones. Reconciliation reads each entry once from a cursor per status,
//!   skips stale ones and enters each message it returns again (schema version 5).
//! - Timestamps are CQL `timestamp`s (milliseconds): sub-millisecond precision is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::{CqlTimestamp, CqlValue, MaybeUnset, Row};
use time::OffsetDateTime;

use super::codec::{
    blob_to_hashes, enum_from_text, enum_to_text, from_ms, hashes_to_blob, json_from_text, json_to_text,
    offset_from_column, offset_to_column, parse_campaign_id, parse_channel, parse_message_id, parse_priority,
    parse_status, parse_tenant_id, settings_from_text, to_ms,
};
use super::{
    ApiKeyRecord, AuditEntry, AuditStore, Brand, BusinessInfoRecord, ChannelCredentials, Consent, ContactStore, Held,
    HeldMessage, InboundMessage, JournalEntry, MessageRecord, MessageStore, NewMessage, OnboardingStore, Plan,
    ScheduleCancel, ScheduleStore, ScheduledMessage, SenderNumber, StatusChange, StatusUpdate, StoreError, StoredClaim,
    Suppression, Tenant, TenantSettings, TenantStatus, TenantStore, UsageStore,
};
use crate::address::PhoneNumber;
use crate::channel::Channel;
use crate::config::{CassandraSettings, WriteBatching};
use crate::ids::{CampaignId, MessageId, TenantId};
use crate::log::{Partition, RecordPosition};
use crate::status::MessageStatus;

/// The schema files, in order: (version, name, text).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_keyspace_and_tables",
        include_str!("../../migrations/cql/0001_keyspace_and_tables.cql"),
    ),
    (
        2,
        "0002_message_statuses_as_rows",
        include_str!("../../migrations/cql/0002_message_statuses_as_rows.cql"),
    ),
    (
        3,
        "0003_claims_by_record",
        include_str!("../../migrations/cql/0003_claims_by_record.cql"),
    ),
    (
        4,
        "0004_no_provider_id_index",
        include_str!("../../migrations/cql/0004_no_provider_id_index.cql"),
    ),
    (
        5,
        "0005_stuck_index_without_deletes",
        include_str!("../../migrations/cql/0005_stuck_index_without_deletes.cql"),
    ),
    (
        6,
        "0006_processed_events",
        include_str!("../../migrations/cql/0006_processed_events.cql"),
    ),
    (
        7,
        "0007_whatsapp_senders",
        include_str!("../../migrations/cql/0007_whatsapp_senders.cql"),
    ),
    (
        8,
        "0008_consents",
        include_str!("../../migrations/cql/0008_consents.cql"),
    ),
    (
        9,
        "0009_tenant_settings",
        include_str!("../../migrations/cql/0009_tenant_settings.cql"),
    ),
    (
        10,
        "0010_held_messages",
        include_str!("../../migrations/cql/0010_held_messages.cql"),
    ),
    (
        11,
        "0011_inbound_messages",
        include_str!("../../migrations/cql/0011_inbound_messages.cql"),
    ),
    (
        12,
        "0012_scheduled_messages",
        include_str!("../../migrations/cql/0012_scheduled_messages.cql"),
    ),
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = 12;

/// The `schema_migrations` row that holds the migration lease.
const LEASE_VERSION: i32 = -1;

/// How long a migration lease lives if its holder dies, in seconds.
const LEASE_TTL_SECS: i32 = 120;

/// How long a schema change may take.
const DDL_TIMEOUT: Duration = Duration::from_secs(120);

/// Attempts of a usage compare-and-set before giving up (each failure means another writer won).
const CAS_ATTEMPTS: usize = 64;

/// Candidate index entries checked against their rows at once.
const CHECK_CHUNK: usize = 64;

/// Milliseconds per day (audit and message-list partitions).
const DAY_MS: i64 = 86_400_000;

/// Milliseconds per partition of scheduled messages (one minute).
const MINUTE_MS: i64 = 60_000;

/// Milliseconds per stuck-index bucket (one hour).
const BUCKET_MS: i64 = 3_600_000;

/// The `tenant_days` kind of message-list days.
const KIND_MESSAGES: &str = "messages";

/// The `tenant_days` kind of audit days.
const KIND_AUDIT: &str = "audit";

/// The `tenant_days` kind of inbound-message days.
const KIND_INBOUND: &str = "inbound";

/// The audit partition of platform-wide entries: `*` is never in a tenant id (and CQL keys
/// may not be empty).
const PLATFORM: &str = "*";

/// The ScyllaDB / Cassandra store: one driver session (a connection pool per node) and the
/// prepared statements.
#[derive(Clone)]
pub struct CassandraStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CassandraStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraStore")
            .field("keyspace", &self.inner.keyspace)
            .field("concurrency", &self.inner.concurrency)
            .field("batching", &self.inner.batching)
            .finish_non_exhaustive()
    }
}

struct Inner {
    session: Session,
    keyspace: String,
    concurrency: usize,
    batching: WriteBatching,
    batch_rows: usize,
    st: Statements,
    /// Orders audit entries of one millisecond (in this process).
    audit_seq: AtomicI64,
    /// Where this process's release of scheduled messages stands.
    release: Mutex<Release>,
    /// Whether this process made sure the schedule's cursor exists.
    schedule_cursor_set: AtomicBool,
}

/// Where a process's release of scheduled messages stands: messages answered by
/// `due_scheduled` and not forgotten yet (answered again first), and the last message read of
/// the minute being released, read on from there (never over the tombstones of those before).
#[derive(Default)]
struct Release {
    pending: Vec<ScheduledMessage>,
    after: Option<ReleasedUpTo>,
}

/// The last scheduled message read: its minute, then its key there.
#[derive(Clone)]
struct ReleasedUpTo {
    minute: i64,
    due_at: CqlTimestamp,
    tenant_id: String,
    message_id: String,
}

/// Maps a driver error into a backend failure naming the operation.
fn be<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

/// Whether `name` is a plain CQL identifier (it is put into statements).
fn valid_keyspace(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 48
}

/// The statements of one schema file: `--` comment lines dropped, split at `;`.
fn statements_of(text: &str, keyspace: &str, replication_factor: u32) -> Vec<String> {
    let body: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    body.split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(|statement| {
            statement
                .replace("${keyspace}", keyspace)
                .replace("${replication_factor}", &replication_factor.to_string())
        })
        .collect()
}

impl CassandraStore {
    /// Connects to the cluster, creates the keyspace and applies the schema it lacks, and
    /// prepares every statement.
    pub async fn open(settings: &CassandraSettings) -> Result<Self, StoreError> {
        if !valid_keyspace(&settings.keyspace) {
            return Err(StoreError::Invalid(format!(
                "keyspace name {:?} is not a plain CQL identifier (letters, digits, _; at most 48)",
                settings.keyspace
            )));
        }
        if settings.contact_points.is_empty() {
            return Err(StoreError::Invalid(
                "store.cassandra.contact_points is empty".to_owned(),
            ));
        }
        let profile = ExecutionProfile::builder()
            .request_timeout(Some(settings.request_timeout()))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&settings.contact_points)
            .default_execution_profile_handle(profile.into_handle())
            // Schema changes wait for agreement: poll every 20 ms rather than 200 (the schema
            // has ~25 tables, each created by its own statement).
            .schema_agreement_interval(Duration::from_millis(20))
            .build()
            .await
            .map_err(be("cannot connect to the cluster"))?;
        migrate(&session, &settings.keyspace, settings.replication_factor.max(1)).await?;
        session
            .use_keyspace(settings.keyspace.as_str(), false)
            .await
            .map_err(be("use keyspace"))?;
        // Boxed: the future preparing every statement is larger than the rest of opening.
        let st = Box::pin(Statements::prepare(&session)).await?;
        tracing::info!(keyspace = %settings.keyspace, "cassandra store open");
        let seed = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                keyspace: settings.keyspace.clone(),
                concurrency: settings.concurrency.max(1),
                batching: settings.batching,
                batch_rows: settings.batch_rows.max(1),
                st,
                audit_seq: AtomicI64::new(i64::try_from(seed).unwrap_or(0)),
                release: Mutex::new(Release::default()),
                schedule_cursor_set: AtomicBool::new(false),
            }),
        })
    }

    /// Drops this store's keyspace with everything in it (tests and benchmarks).
    pub async fn drop_keyspace(&self) -> Result<(), StoreError> {
        ddl(
            &self.inner.session,
            &format!("DROP KEYSPACE IF EXISTS {}", self.inner.keyspace),
        )
        .await
    }

    fn st(&self) -> &Statements {
        &self.inner.st
    }

    async fn exec(&self, statement: &PreparedStatement, values: impl SerializeRow) -> Result<QueryResult, StoreError> {
        self.inner
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(be(statement.get_statement()))
    }

    /// Runs a query and decodes its rows (one page: for partitions known to be small).
    async fn rows<R>(&self, statement: &PreparedStatement, values: impl SerializeRow) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self.exec(statement, values).await?;
        decode_rows(result)
    }

    /// Runs a query and decodes its first row, if any.
    async fn row<R>(&self, statement: &PreparedStatement, values: impl SerializeRow) -> Result<Option<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        Ok(self.rows(statement, values).await?.into_iter().next())
    }

    /// Runs a query over every page and decodes its rows.
    async fn all_rows<R>(&self, statement: &PreparedStatement, values: impl SerializeRow) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
    {
        let pager = self
            .inner
            .session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(be(statement.get_statement()))?;
        pager
            .rows_stream::<R>()
            .map_err(|e| StoreError::Invalid(format!("{}: {e}", statement.get_statement())))?
            .try_collect()
            .await
            .map_err(be(statement.get_statement()))
    }

    /// Runs a lightweight transaction: whether it applied, and the columns it returned (the
    /// current row's values when it did not).
    async fn lwt(&self, statement: &PreparedStatement, values: impl SerializeRow) -> Result<Lwt, StoreError> {
        let result = self.exec(statement, values).await?;
        Lwt::from_result(result)
    }

    /// Writes rows: grouped by the first replica (and shard) of their partition into unlogged
    /// batches of up to `batch_rows` statements, or one request each, as configured; at most
    /// `concurrency` requests in flight. A batch goes to a replica of its first row, so every
    /// row of it is written where it lives: one request per batch instead of per row.
    async fn write(&self, writes: Writes) -> Result<(), StoreError> {
        let rows = writes.rows;
        if rows.is_empty() {
            return Ok(());
        }
        let chunks: Vec<Vec<RowWrite>> = match self.inner.batching {
            WriteBatching::None => rows.into_iter().map(|row| vec![row]).collect(),
            WriteBatching::ReplicaBatches => {
                let cluster = self.inner.session.get_cluster_state();
                let mut groups: HashMap<Option<(uuid::Uuid, u32)>, Vec<RowWrite>> = HashMap::new();
                for row in rows {
                    let replica = row
                        .statement
                        .calculate_token(&row.values)
                        .ok()
                        .flatten()
                        .and_then(|token| {
                            let table = row.statement.get_table_spec()?;
                            cluster
                                .get_token_endpoints(table.ks_name(), table.table_name(), token)
                                .first()
                                .map(|(node, shard)| (node.host_id, *shard))
                        });
                    groups.entry(replica).or_default().push(row);
                }
                let mut chunks = Vec::new();
                for (_, mut group) in groups {
                    while group.len() > self.inner.batch_rows {
                        let rest = group.split_off(self.inner.batch_rows);
                        chunks.push(std::mem::replace(&mut group, rest));
                    }
                    chunks.push(group);
                }
                chunks
            }
        };
        stream::iter(chunks.into_iter().map(|chunk| self.write_chunk(chunk)))
            .buffer_unordered(self.inner.concurrency)
            .try_for_each(|()| async { Ok(()) })
            .await
    }

    /// Writes rows of one replica: one request, or one unlogged batch.
    async fn write_chunk(&self, mut chunk: Vec<RowWrite>) -> Result<(), StoreError> {
        if chunk.len() == 1
            && let Some(row) = chunk.pop()
        {
            return self.exec(&row.statement, row.values).await.map(drop);
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(chunk.len());
        for row in chunk {
            batch.append_statement(row.statement);
            values.push(row.values);
        }
        self.inner
            .session
            .batch(&batch, values)
            .await
            .map(drop)
            .map_err(be("write batch"))
    }

    /// Writes the rows of a batch of claims or status changes: the registries of the tenant's
    /// message days first (so that every entry is reachable by `delete_tenant`), then the rest.
    async fn write_with_registries(&self, mut writes: Writes, derived: Derived) -> Result<(), StoreError> {
        let st = self.st();
        let Derived {
            tenant_days,
            tenant_messages,
            campaigns,
            buckets,
            mut stuck_inserts,
            stuck_superseded,
        } = derived;
        // An entry of a status the message passed through within this batch is not written
        // (an entry that is written is never deleted: reconciliation skips it once stale).
        stuck_inserts.retain(|key| !stuck_superseded.contains(key));

        let mut registries = Writes::default();
        for (tenant, day) in tenant_days {
            registries.push(&st.insert_tenant_day, (tenant, KIND_MESSAGES, day));
        }
        for (status, bucket) in buckets {
            registries.push(&st.insert_bucket, (status, bucket));
        }
        self.write(registries).await?;
        for row in tenant_messages {
            writes.push(&st.insert_tenant_message, row);
        }
        for row in campaigns {
            writes.push(&st.upsert_campaign, row);
        }
        for key in stuck_inserts {
            writes.push(&st.insert_stuck, key.values());
        }
        self.write(writes).await
    }

    /// Notes the rows that claim one message (blindly: the caller knows it is new).
    fn claim_rows(&self, message: &NewMessage, writes: &mut Writes, derived: &mut Derived) -> Result<(), StoreError> {
        let tenant = message.tenant_id.as_str();
        let id = message.message_id.as_str();
        let accepted = to_ms(message.accepted_at)?;
        let campaign = message.campaign_id.as_ref().map(CampaignId::as_str);
        let queued = MessageStatus::Queued;
        writes.push(
            &self.st().claim,
            (
                tenant.to_owned(),
                id.to_owned(),
                campaign.map(str::to_owned),
                message.channel.as_str(),
                message.recipient.clone(),
                message.priority.as_str(),
                to_int(message.segments, "segments")?,
                CqlTimestamp(accepted),
                status_rank(queued),
                queued.as_str(),
                CqlTimestamp(accepted),
                i32::try_from(message.position.partition).map_err(|_| {
                    StoreError::Invalid(format!("log partition {} out of range", message.position.partition))
                })?,
                offset_to_column(message.position.offset)?,
            ),
        );
        derived.listing(tenant, id, accepted)?;
        derived.message(tenant, id, campaign, queued, accepted, accepted)?;
        Ok(())
    }

    /// Notes the rows of a status change its writer holds the message for ([`StatusUpdate::held`]):
    /// written without reading, since the message was `queued` as far as the writer knows and a
    /// status row can only raise the current status.
    fn held_rows(
        &self,
        update: &StatusUpdate,
        held: &Held,
        writes: &mut Writes,
        derived: &mut Derived,
    ) -> Result<(), StoreError> {
        let tenant = update.tenant_id.as_str();
        let id = update.message_id.as_str();
        let at = to_ms(update.at)?;
        let provider = match update.provider_message_id.clone() {
            Some(provider) => MaybeUnset::Set(provider),
            None => MaybeUnset::Unset,
        };
        writes.push(
            &self.st().advance,
            (
                tenant.to_owned(),
                id.to_owned(),
                status_rank(update.status),
                update.status.as_str(),
                CqlTimestamp(at),
                update.reason.clone(),
                provider,
            ),
        );
        derived.message(
            tenant,
            id,
            held.campaign_id.as_ref().map(CampaignId::as_str),
            update.status,
            to_ms(held.accepted_at)?,
            at,
        )
    }

    /// Applies one message's status changes, in order, each under the forward-only rule.
    async fn apply_to_message(
        &self,
        updates: Vec<(usize, &StatusUpdate)>,
    ) -> Result<(Vec<(usize, bool)>, Derived), StoreError> {
        let mut derived = Derived::default();
        let mut answers = Vec::with_capacity(updates.len());
        // The row as this task last left it: a second change of the same message needs no read.
        let mut known: Option<MessageState> = None;
        for (index, update) in updates {
            let applied = self.apply_one(update, &mut known, &mut derived).await?;
            answers.push((index, applied));
        }
        Ok((answers, derived))
    }

    async fn apply_one(
        &self,
        update: &StatusUpdate,
        known: &mut Option<MessageState>,
        derived: &mut Derived,
    ) -> Result<bool, StoreError> {
        let tenant = update.tenant_id.as_str();
        let id = update.message_id.as_str();
        let current = match known.take() {
            Some(state) => state,
            None => match self.message_state(tenant, id).await? {
                Some(state) => state,
                None => return Ok(false),
            },
        };
        if !current.status.can_advance_to(update.status) {
            *known = Some(current);
            return Ok(false);
        }
        let at = to_ms(update.at)?;
        let provider = match update.provider_message_id.as_deref() {
            Some(provider) => MaybeUnset::Set(provider),
            None => MaybeUnset::Unset,
        };
        self.exec(
            &self.st().advance,
            (
                tenant,
                id,
                status_rank(update.status),
                update.status.as_str(),
                CqlTimestamp(at),
                update.reason.as_deref(),
                provider,
            ),
        )
        .await?;
        if let Some(key) = StuckKey::of(current.status, current.updated_at, tenant, id)? {
            derived.stuck_superseded.insert(key);
        }
        derived.message(
            tenant,
            id,
            current.campaign.as_deref(),
            update.status,
            current.accepted_at,
            at,
        )?;
        *known = Some(MessageState {
            status: update.status,
            updated_at: at,
            provider: update.provider_message_id.clone().or(current.provider),
            ..current
        });
        Ok(true)
    }

    /// The message's current status (its highest-ranked row) and what the envelope said;
    /// `None` when it was never claimed.
    async fn message_state(&self, tenant: &str, id: &str) -> Result<Option<MessageState>, StoreError> {
        let row: Option<StateRow> = self.row(&self.st().select_state, (tenant, id)).await?;
        let Some((Some(status), Some(updated), Some(accepted), campaign, provider)) = row else {
            return Ok(None);
        };
        Ok(Some(MessageState {
            status: parse_status(&status)?,
            updated_at: updated.0,
            accepted_at: accepted.0,
            campaign,
            provider,
        }))
    }

    /// Checks a stuck-index entry against its message: the message when it is still in that
    /// status and has not changed since the entry was written; otherwise the entry is stale
    /// (it stays, and expires with its TTL).
    async fn check_stuck(
        &self,
        status: MessageStatus,
        (at, tenant, id): (CqlTimestamp, String, String),
    ) -> Result<Option<MessageRecord>, StoreError> {
        let record = self.message_row(&tenant, &id).await?;
        if let Some(mut record) = record
            && record.status == status
            && to_ms(record.updated_at)? <= at.0
        {
            record.history.clear();
            return Ok(Some(record));
        }
        Ok(None)
    }

    async fn message_row(&self, tenant: &str, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let rows: Vec<MessageRow> = self.rows(&self.st().select_message, (tenant, id)).await?;
        message_from_rows(rows)
    }

    /// Writes one held message.
    async fn put_held(&self, message: HeldMessage) -> Result<(), StoreError> {
        self.exec(
            &self.st().upsert_held,
            (
                message.tenant_id.as_str(),
                message.campaign_id.as_str(),
                message.channel.as_str(),
                message.message_id.as_str(),
                message.envelope.as_slice(),
                ts(message.held_at)?,
            ),
        )
        .await?;
        Ok(())
    }

    /// Deletes one held message of a (tenant, campaign, channel).
    async fn delete_held(&self, key: (&str, &str, &str), id: MessageId) -> Result<(), StoreError> {
        self.exec(&self.st().delete_held, (key.0, key.1, key.2, id.as_str()))
            .await?;
        Ok(())
    }

    /// Deletes one message and the index rows that name it.
    async fn delete_message(&self, tenant: &str, id: String) -> Result<(), StoreError> {
        if let Some(record) = self.message_row(tenant, &id).await?
            && let Some(campaign) = &record.campaign_id
        {
            self.exec(
                &self.st().delete_campaign_message,
                (tenant, campaign.as_str(), id.as_str()),
            )
            .await?;
        }
        self.exec(&self.st().delete_message, (tenant, id.as_str())).await?;
        Ok(())
    }

    async fn credentials_rows(
        &self,
        tenant: &str,
        channel: Option<Channel>,
    ) -> Result<Vec<CredentialsRow>, StoreError> {
        let rows: Vec<CredentialsRow> = match channel {
            Some(channel) => {
                self.rows(&self.st().select_credentials, (tenant, channel.as_str()))
                    .await?
            }
            None => self.rows(&self.st().select_all_credentials, (tenant,)).await?,
        };
        Ok(rows)
    }
}

/// What a lightweight transaction answered.
struct Lwt {
    applied: bool,
    columns: HashMap<String, CqlValue>,
}

impl Lwt {
    fn from_result(result: QueryResult) -> Result<Self, StoreError> {
        let rows = result
            .into_rows_result()
            .map_err(|e| StoreError::Backend(format!("conditional write answered no rows: {e}")))?;
        let names: Vec<String> = rows.column_specs().iter().map(|spec| spec.name().to_owned()).collect();
        let row: Option<Row> = rows
            .maybe_first_row::<Row>()
            .map_err(|e| StoreError::Backend(format!("conditional write answer: {e}")))?;
        let Some(row) = row else {
            return Err(StoreError::Backend("conditional write answered no row".to_owned()));
        };
        let mut columns = HashMap::new();
        for (name, value) in names.into_iter().zip(row.columns) {
            if let Some(value) = value {
                columns.insert(name, value);
            }
        }
        let applied = matches!(columns.get("[applied]"), Some(CqlValue::Boolean(true)));
        Ok(Self { applied, columns })
    }

    fn opt_text(&self, name: &str) -> Option<String> {
        match self.columns.get(name) {
            Some(CqlValue::Text(text) | CqlValue::Ascii(text)) => Some(text.clone()),
            _ => None,
        }
    }

    fn bigint(&self, name: &str) -> Option<i64> {
        match self.columns.get(name) {
            Some(CqlValue::BigInt(value)) => Some(*value),
            _ => None,
        }
    }
}

/// The columns of `select_claim`: status, log_partition, log_offset, accepted_at.
type ClaimRow = (Option<String>, Option<i32>, Option<i64>, Option<CqlTimestamp>);

/// A log partition as the journal's partition key.
fn journal_partition(partition: Partition) -> Result<i32, StoreError> {
    i32::try_from(partition).map_err(|_| StoreError::Invalid(format!("log partition {partition} out of range")))
}

/// One row to write: its statement and its values.
struct RowWrite {
    statement: PreparedStatement,
    values: Box<dyn SerializeRow + Send + Sync>,
}

/// Rows to write together ([`CassandraStore::write`]).
#[derive(Default)]
struct Writes {
    rows: Vec<RowWrite>,
}

impl Writes {
    fn push(&mut self, statement: &PreparedStatement, values: impl SerializeRow + Send + Sync + 'static) {
        self.rows.push(RowWrite {
            statement: statement.clone(),
            values: Box::new(values),
        });
    }
}

/// The columns of `select_state`: status, at, accepted_at, campaign_id, provider_message_id.
type StateRow = (
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<String>,
);

/// A message's current status and what its derived rows need, as read before a change.
#[derive(Debug, Clone)]
struct MessageState {
    status: MessageStatus,
    updated_at: i64,
    accepted_at: i64,
    campaign: Option<String>,
    provider: Option<String>,
}

/// A stuck-index entry as read back (and the cursor row): time, tenant, message.
type StuckEntry = (CqlTimestamp, String, String);

/// One stuck-index entry: status, bucket, time, tenant, message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StuckKey {
    status: &'static str,
    bucket: i32,
    at: i64,
    tenant: String,
    id: String,
}

impl StuckKey {
    /// The entry of a message in `status` since `at`; `None` for the statuses reconciliation
    /// never asks about, which are not indexed.
    fn of(status: MessageStatus, at: i64, tenant: &str, id: &str) -> Result<Option<Self>, StoreError> {
        if !MessageStatus::RECONCILED.contains(&status) {
            return Ok(None);
        }
        Ok(Some(Self {
            status: status.as_str(),
            bucket: bucket_of(at)?,
            at,
            tenant: tenant.to_owned(),
            id: id.to_owned(),
        }))
    }

    fn values(self) -> (&'static str, i32, CqlTimestamp, String, String) {
        (self.status, self.bucket, CqlTimestamp(self.at), self.tenant, self.id)
    }
}

/// Rows derived from a batch of claims or status changes, written together after it.
#[derive(Default)]
struct Derived {
    tenant_days: HashSet<(String, i32)>,
    tenant_messages: Vec<(String, i32, String)>,
    campaigns: Vec<(String, String, String, &'static str, i64)>,
    buckets: HashSet<(&'static str, i32)>,
    stuck_inserts: Vec<StuckKey>,
    stuck_superseded: HashSet<StuckKey>,
}

impl Derived {
    /// Notes a claimed message's place in its tenant's list (by day of acceptance).
    fn listing(&mut self, tenant: &str, id: &str, accepted: i64) -> Result<(), StoreError> {
        let day = day_of(accepted)?;
        self.tenant_days.insert((tenant.to_owned(), day));
        self.tenant_messages.push((tenant.to_owned(), day, id.to_owned()));
        Ok(())
    }

    /// Notes the derived rows of a message in `status` since `updated` (the claim's, or after
    /// a change): its campaign row and its stuck-index entry.
    fn message(
        &mut self,
        tenant: &str,
        id: &str,
        campaign: Option<&str>,
        status: MessageStatus,
        accepted: i64,
        updated: i64,
    ) -> Result<(), StoreError> {
        if let Some(campaign) = campaign {
            // The write timestamp (microseconds) orders a message's campaign rows by status
            // rank, as the message orders its statuses: a late write never wins.
            let stamp = accepted
                .saturating_mul(1_000)
                .saturating_add(i64::from(status_rank(status)));
            self.campaigns.push((
                tenant.to_owned(),
                campaign.to_owned(),
                id.to_owned(),
                status.as_str(),
                stamp,
            ));
        }
        if let Some(key) = StuckKey::of(status, updated, tenant, id)? {
            self.buckets.insert((key.status, key.bucket));
            self.stuck_inserts.push(key);
        }
        Ok(())
    }

    fn extend(&mut self, other: Derived) {
        self.tenant_days.extend(other.tenant_days);
        self.tenant_messages.extend(other.tenant_messages);
        self.campaigns.extend(other.campaigns);
        self.buckets.extend(other.buckets);
        self.stuck_inserts.extend(other.stuck_inserts);
        self.stuck_superseded.extend(other.stuck_superseded);
    }
}

// ---------------------------------------------------------------------------------------------
// Schema.

/// Runs one schema statement with the long DDL timeout. An `ALTER TABLE ... ADD` whose columns
/// exist already (a migration interrupted after it) counts as done: not every version takes
/// `IF NOT EXISTS` there.
async fn ddl(session: &Session, text: &str) -> Result<(), StoreError> {
    let mut statement = Statement::new(text);
    statement.set_request_timeout(Some(DDL_TIMEOUT));
    match session.query_unpaged(statement, ()).await {
        Ok(_) => Ok(()),
        Err(e)
            if is_alter_add(text) && {
                let message = e.to_string();
                message.contains("already exist") || message.contains("conflicts with an existing column")
            } =>
        {
            Ok(())
        }
        Err(e) => Err(StoreError::Backend(format!("schema statement failed: {e}: {text}"))),
    }
}

/// Whether a schema statement adds columns to a table.
fn is_alter_add(text: &str) -> bool {
    let words: Vec<String> = text.split_whitespace().take(4).map(str::to_ascii_uppercase).collect();
    words.first().map(String::as_str) == Some("ALTER") && words.get(3).map(String::as_str) == Some("ADD")
}

/// Creates the keyspace and applies the schema versions it lacks, under the migration lease.
async fn migrate(session: &Session, keyspace: &str, replication_factor: u32) -> Result<(), StoreError> {
    let mut files = Vec::with_capacity(MIGRATIONS.len());
    for (version, name, text) in MIGRATIONS {
        files.push((*version, *name, statements_of(text, keyspace, replication_factor)));
    }
    // The keyspace and schema_migrations: the first two statements of the first file, idempotent,
    // run at every start.
    let Some((_, _, first)) = files.first() else {
        return Err(StoreError::Invalid("no schema files embedded".to_owned()));
    };
    for statement in first.iter().take(2) {
        ddl(session, statement).await?;
    }
    let owner = uuid::Uuid::new_v4().to_string();
    let acquire = format!(
        "INSERT INTO {keyspace}.schema_migrations (version, name, applied_at) VALUES ({LEASE_VERSION}, ?, \
         toTimestamp(now())) IF NOT EXISTS USING TTL {LEASE_TTL_SECS}"
    );
    let mut waited = 0;
    loop {
        let result = session
            .query_unpaged(acquire.as_str(), (owner.as_str(),))
            .await
            .map_err(be("migration lease"))?;
        if Lwt::from_result(result)?.applied {
            break;
        }
        waited += 1;
        if waited > LEASE_TTL_SECS * 4 {
            return Err(StoreError::Backend(
                "another process holds the schema migration lease".to_owned(),
            ));
        }
        tracing::info!(keyspace, "waiting for another process's schema migration");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let outcome = apply_migrations(session, keyspace, &files).await;
    let release = format!("DELETE FROM {keyspace}.schema_migrations WHERE version = {LEASE_VERSION} IF name = ?");
    if let Err(e) = session.query_unpaged(release.as_str(), (owner.as_str(),)).await {
        tracing::warn!(keyspace, error = %e, "cannot release the schema migration lease; it expires by itself");
    }
    outcome
}

async fn apply_migrations(
    session: &Session,
    keyspace: &str,
    files: &[(i32, &str, Vec<String>)],
) -> Result<(), StoreError> {
    let applied: Vec<(i32,)> = session
        .query_unpaged(format!("SELECT version FROM {keyspace}.schema_migrations"), ())
        .await
        .map_err(be("read schema versions"))
        .and_then(decode_rows)?;
    let applied: HashSet<i32> = applied
        .into_iter()
        .map(|(version,)| version)
        .filter(|version| *version > 0)
        .collect();
    if let Some(newest) = applied.iter().max()
        && *newest > SCHEMA_VERSION
    {
        return Err(StoreError::Invalid(format!(
            "keyspace {keyspace} has schema version {newest}, newer than this build ({SCHEMA_VERSION})"
        )));
    }
    let record = format!(
        "INSERT INTO {keyspace}.schema_migrations (version, name, applied_at) VALUES (?, ?, toTimestamp(now()))"
    );
    for (version, name, statements) in files {
        if applied.contains(version) {
            continue;
        }
        for statement in statements {
            ddl(session, statement).await?;
        }
        session
            .query_unpaged(record.as_str(), (*version, *name))
            .await
            .map_err(be("record schema version"))?;
        tracing::info!(keyspace, version, name, "applied cassandra schema version");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Prepared statements.

macro_rules! statements {
    ($($name:ident = $cql:expr;)*) => {
        /// Every statement of the store, prepared once.
        struct Statements {
            $($name: PreparedStatement,)*
        }

        impl Statements {
            async fn prepare(session: &Session) -> Result<Self, StoreError> {
                Ok(Self {
                    $($name: {
                    let cql: String = $cql.into();
                    session.prepare(cql.as_str()).await.map_err(be(&format!("cannot prepare {cql}")))?
                },)*
                })
            }
        }
    };
}

const TENANT_COLUMNS: &str = "id, name, is_demo, status, plan_id, created_by, created_at";
const KEY_COLUMNS: &str = "key_id, tenant_id, secret_hash, created_at, revoked_at";
const BRAND_COLUMNS: &str = "tenant_id, status, status_reason, trust_score, workflow_step, workflow_attempts, \
                             twilio_sids, updated_at, approved_at";
const NUMBER_COLUMNS: &str = "tenant_id, number, kind, status, twilio_sid, rate_per_second, created_at, registration";
const CREDENTIALS_COLUMNS: &str = "tenant_id, channel, provider, settings, key_id, sealed_secrets, is_verified, \
                                   verification_error, updated_at, account_sid";
const SUPPRESSION_COLUMNS: &str = "tenant_id, address, reason, source, created_at";
const CONSENT_COLUMNS: &str = "tenant_id, recipient, channel, source, wording, given_at";
const MESSAGE_COLUMNS: &str = "tenant_id, message_id, campaign_id, channel, recipient, priority, segments, \
                               provider_message_id, accepted_at, status, at, reason";

statements! {
    insert_tenant = format!("INSERT INTO tenants ({TENANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS");
    select_tenant = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?");
    set_tenant_status = "UPDATE tenants SET status = ? WHERE id = ? IF EXISTS";
    set_tenant_plan = "UPDATE tenants SET plan_id = ? WHERE id = ? IF EXISTS";
    select_tenant_settings = "SELECT settings FROM tenants WHERE id = ?";
    set_tenant_settings = "UPDATE tenants SET settings = ? WHERE id = ? IF EXISTS";
    delete_tenant = "DELETE FROM tenants WHERE id = ?";
    insert_demo = "INSERT INTO demo_tenants (shard, created_at, tenant_id) VALUES (0, ?, ?)";
    select_demo_before = "SELECT tenant_id FROM demo_tenants WHERE shard = 0 AND created_at < ?";
    delete_demo = "DELETE FROM demo_tenants WHERE shard = 0 AND created_at = ? AND tenant_id = ?";

    insert_key_by_hash = "INSERT INTO api_keys_by_hash (secret_hash, tenant_id, key_id, created_at, revoked_at) \
                          VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    insert_key = format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)");
    select_key_by_hash = format!("SELECT {KEY_COLUMNS} FROM api_keys_by_hash WHERE secret_hash = ?");
    select_key = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND key_id = ?");
    select_keys = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = ?");
    revoke_key = "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND key_id = ?";
    revoke_key_by_hash = "UPDATE api_keys_by_hash SET revoked_at = ? WHERE secret_hash = ?";
    delete_key_by_hash = "DELETE FROM api_keys_by_hash WHERE secret_hash = ?";
    delete_keys = "DELETE FROM api_keys WHERE tenant_id = ?";

    upsert_business = "INSERT INTO business_info (tenant_id, data, updated_at) VALUES (?, ?, ?)";
    select_business = "SELECT data, updated_at FROM business_info WHERE tenant_id = ?";
    delete_business = "DELETE FROM business_info WHERE tenant_id = ?";

    upsert_brand = "UPDATE brands SET status = ?, status_reason = ?, trust_score = ?, workflow_step = ?, \
                    workflow_attempts = ?, twilio_sids = ?, updated_at = ?, approved_at = ? WHERE tenant_id = ?";
    upsert_workflow = "UPDATE brands SET status = ?, status_reason = ?, trust_score = ?, workflow_step = ?, \
                       workflow_attempts = ?, twilio_sids = ?, updated_at = ?, approved_at = ?, workflow_due_at = ? \
                       WHERE tenant_id = ?";
    select_brand = format!("SELECT {BRAND_COLUMNS} FROM brands WHERE tenant_id = ?");
    select_due = "SELECT workflow_due_at FROM brands WHERE tenant_id = ?";
    delete_brand = "DELETE FROM brands WHERE tenant_id = ?";
    insert_schedule = "INSERT INTO workflow_schedule (shard, due_at, tenant_id) VALUES (0, ?, ?)";
    delete_schedule = "DELETE FROM workflow_schedule WHERE shard = 0 AND due_at = ? AND tenant_id = ?";
    select_schedule = "SELECT due_at, tenant_id FROM workflow_schedule WHERE shard = 0 AND due_at <= ?";

    insert_scheduled = "INSERT INTO scheduled_messages (minute, due_at, tenant_id, message_id, campaign_id, envelope, \
                        canceled) VALUES (?, ?, ?, ?, ?, ?, false)";
    select_scheduled_minute = "SELECT tenant_id, message_id, campaign_id, due_at, envelope, canceled \
                               FROM scheduled_messages WHERE minute = ? \
                               AND (due_at, tenant_id, message_id) > (?, ?, ?) AND (due_at) <= (?) LIMIT ?";
    select_scheduled_one = "SELECT tenant_id, message_id, campaign_id, due_at, envelope, canceled \
                            FROM scheduled_messages WHERE minute = ? AND due_at = ? AND tenant_id = ? AND message_id = ?";
    select_scheduled_state = "SELECT releasing, canceled FROM scheduled_messages \
                              WHERE minute = ? AND due_at = ? AND tenant_id = ? AND message_id = ?";
    mark_minute_releasing = "UPDATE scheduled_messages SET releasing = true WHERE minute = ? IF releasing = null";
    cancel_scheduled = "UPDATE scheduled_messages SET canceled = true \
                        WHERE minute = ? AND due_at = ? AND tenant_id = ? AND message_id = ? \
                        IF releasing = null AND canceled = false";
    delete_scheduled = "DELETE FROM scheduled_messages WHERE minute = ? AND due_at = ? AND tenant_id = ? AND message_id = ?";
    delete_scheduled_minute = "DELETE FROM scheduled_messages WHERE minute = ?";
    insert_scheduled_id = "INSERT INTO scheduled_ids (tenant_id, message_id, minute, due_at) VALUES (?, ?, ?, ?)";
    select_scheduled_id = "SELECT minute, due_at FROM scheduled_ids WHERE tenant_id = ? AND message_id = ?";
    delete_scheduled_id = "DELETE FROM scheduled_ids WHERE tenant_id = ? AND message_id = ?";
    insert_scheduled_campaign = "INSERT INTO scheduled_campaigns (tenant_id, campaign_id, message_id) VALUES (?, ?, ?)";
    select_scheduled_campaign = "SELECT message_id FROM scheduled_campaigns \
                                 WHERE tenant_id = ? AND campaign_id = ? AND message_id > ? LIMIT ?";
    delete_scheduled_campaign = "DELETE FROM scheduled_campaigns WHERE tenant_id = ? AND campaign_id = ? AND message_id = ?";
    init_schedule_cursor = "INSERT INTO schedule_cursor (name, minute) VALUES ('release', ?) IF NOT EXISTS";
    select_schedule_cursor = "SELECT minute FROM schedule_cursor WHERE name = 'release'";
    advance_schedule_cursor = "UPDATE schedule_cursor SET minute = ? WHERE name = 'release' IF minute = ?";

    claim_number = "INSERT INTO sender_number_owners (number, tenant_id) VALUES (?, ?) IF NOT EXISTS";
    release_number = "DELETE FROM sender_number_owners WHERE number = ? IF tenant_id = ?";
    upsert_number = format!("INSERT INTO sender_numbers ({NUMBER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    select_numbers = format!("SELECT {NUMBER_COLUMNS} FROM sender_numbers WHERE tenant_id = ?");
    delete_numbers = "DELETE FROM sender_numbers WHERE tenant_id = ?";

    upsert_credentials = format!("INSERT INTO channel_credentials ({CREDENTIALS_COLUMNS}) \
                                  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    select_credentials = format!("SELECT {CREDENTIALS_COLUMNS} FROM channel_credentials \
                                  WHERE tenant_id = ? AND channel = ?");
    select_all_credentials = format!("SELECT {CREDENTIALS_COLUMNS} FROM channel_credentials WHERE tenant_id = ?");
    delete_credentials = "DELETE FROM channel_credentials WHERE tenant_id = ? AND channel = ?";
    delete_all_credentials = "DELETE FROM channel_credentials WHERE tenant_id = ?";
    first_credential_tenants = "SELECT DISTINCT tenant_id FROM channel_credentials LIMIT ?";
    next_credential_tenants = "SELECT DISTINCT tenant_id FROM channel_credentials \
                               WHERE token(tenant_id) > token(?) LIMIT ?";
    insert_account = "INSERT INTO credentials_by_account (account_sid, tenant_id, channel) VALUES (?, ?, ?)";
    delete_account = "DELETE FROM credentials_by_account WHERE account_sid = ? AND tenant_id = ? AND channel = ?";
    select_account = "SELECT tenant_id, channel FROM credentials_by_account WHERE account_sid = ?";

    upsert_plan = "INSERT INTO plans (id, name, monthly_quota) VALUES (?, ?, ?)";
    select_plan = "SELECT id, name, monthly_quota FROM plans WHERE id = ?";

    select_usage = "SELECT count FROM usage WHERE tenant_id = ? AND channel = ? AND period = ?";
    insert_usage = "INSERT INTO usage (tenant_id, channel, period, count) VALUES (?, ?, ?, ?) IF NOT EXISTS";
    cas_usage = "UPDATE usage SET count = ? WHERE tenant_id = ? AND channel = ? AND period = ? IF count = ?";
    delete_usage = "DELETE FROM usage WHERE tenant_id = ?";

    upsert_suppression = format!("INSERT INTO suppressions ({SUPPRESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?)");
    select_suppression = format!("SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE tenant_id = ? AND address = ?");
    select_suppressed_in = "SELECT address FROM suppressions WHERE tenant_id = ? AND address IN ?";
    select_suppressions_after = format!(
        "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE tenant_id = ? AND address > ? LIMIT ?"
    );
    delete_suppression = "DELETE FROM suppressions WHERE tenant_id = ? AND address = ?";
    delete_suppressions = "DELETE FROM suppressions WHERE tenant_id = ?";

    upsert_consent = format!("INSERT INTO consents ({CONSENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)");
    select_consents = format!("SELECT {CONSENT_COLUMNS} FROM consents WHERE tenant_id = ? AND recipient = ?");
    select_consents_in = "SELECT recipient, channel FROM consents WHERE tenant_id = ? AND recipient IN ?";

    upsert_held = "INSERT INTO held_messages (tenant_id, campaign_id, channel, message_id, envelope, held_at) \
                   VALUES (?, ?, ?, ?, ?, ?)";
    select_held = "SELECT message_id, envelope, held_at FROM held_messages \
                   WHERE tenant_id = ? AND campaign_id = ? AND channel = ? LIMIT ?";
    count_held = "SELECT count(*) FROM held_messages WHERE tenant_id = ? AND campaign_id = ? AND channel = ?";
    delete_held = "DELETE FROM held_messages WHERE tenant_id = ? AND campaign_id = ? AND channel = ? AND message_id = ?";
    delete_held_partition = "DELETE FROM held_messages WHERE tenant_id = ? AND campaign_id = ? AND channel = ?";
    upsert_held_campaign = "INSERT INTO held_campaigns (bucket, tenant_id, campaign_id, channel) VALUES (0, ?, ?, ?)";
    select_held_campaigns = "SELECT tenant_id, campaign_id, channel FROM held_campaigns WHERE bucket = 0 LIMIT ?";
    select_tenant_held = "SELECT campaign_id, channel FROM held_campaigns WHERE bucket = 0 AND tenant_id = ?";
    select_campaign_held = "SELECT channel FROM held_campaigns WHERE bucket = 0 AND tenant_id = ? AND campaign_id = ?";
    delete_held_campaign = "DELETE FROM held_campaigns WHERE bucket = 0 AND tenant_id = ? AND campaign_id = ? AND channel = ?";
    delete_consents = "DELETE FROM consents WHERE tenant_id = ?";

    upsert_inbound = "INSERT INTO inbound_contacts (tenant_id, address, last_inbound) VALUES (?, ?, ?) \
                      USING TIMESTAMP ?";
    select_inbound = "SELECT last_inbound FROM inbound_contacts WHERE tenant_id = ? AND address = ?";
    insert_processed_event = "INSERT INTO processed_events (tenant_id, event_id, processed_at) VALUES (?, ?, ?)";
    select_processed_event = "SELECT processed_at FROM processed_events WHERE tenant_id = ? AND event_id = ?";
    delete_inbounds = "DELETE FROM inbound_contacts WHERE tenant_id = ?";

    claim = "INSERT INTO messages (tenant_id, message_id, campaign_id, channel, recipient, priority, segments, \
             accepted_at, rank, status, at, log_partition, log_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    select_claim = "SELECT status, log_partition, log_offset, accepted_at FROM messages \
                    WHERE tenant_id = ? AND message_id = ? LIMIT 1";
    insert_journal = "INSERT INTO claim_journal (log_partition, generation, entry, hashes) VALUES (?, ?, ?, ?)";
    select_journal = "SELECT generation, entry, hashes FROM claim_journal WHERE log_partition = ?";
    trim_journal = "DELETE FROM claim_journal WHERE log_partition = ? AND generation < ?";
    select_state = "SELECT status, at, accepted_at, campaign_id, provider_message_id FROM messages \
                    WHERE tenant_id = ? AND message_id = ? LIMIT 1";
    advance = "INSERT INTO messages (tenant_id, message_id, rank, status, at, reason, provider_message_id) \
               VALUES (?, ?, ?, ?, ?, ?, ?)";
    select_message = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ? AND message_id = ?");
    delete_message = "DELETE FROM messages WHERE tenant_id = ? AND message_id = ?";
    insert_tenant_message = "INSERT INTO messages_by_tenant (tenant_id, day, message_id) VALUES (?, ?, ?)";
    select_tenant_messages = "SELECT message_id FROM messages_by_tenant WHERE tenant_id = ? AND day = ?";
    delete_tenant_messages = "DELETE FROM messages_by_tenant WHERE tenant_id = ? AND day = ?";
    insert_tenant_day = "INSERT INTO tenant_days (tenant_id, kind, day) VALUES (?, ?, ?)";
    select_tenant_days = "SELECT day FROM tenant_days WHERE tenant_id = ? AND kind = ?";
    delete_tenant_days = "DELETE FROM tenant_days WHERE tenant_id = ?";
    upsert_campaign = "INSERT INTO campaign_messages (tenant_id, campaign_id, message_id, status) \
                       VALUES (?, ?, ?, ?) USING TIMESTAMP ?";
    select_campaign = "SELECT status FROM campaign_messages WHERE tenant_id = ? AND campaign_id = ?";
    delete_campaign_message = "DELETE FROM campaign_messages WHERE tenant_id = ? AND campaign_id = ? \
                               AND message_id = ?";
    insert_stuck = "INSERT INTO stuck_index (status, bucket, updated_at, tenant_id, message_id) \
                    VALUES (?, ?, ?, ?, ?)";
    select_stuck = "SELECT updated_at, tenant_id, message_id FROM stuck_index \
                    WHERE status = ? AND bucket = ? AND updated_at < ?";
    select_stuck_after = "SELECT updated_at, tenant_id, message_id FROM stuck_index \
                          WHERE status = ? AND bucket = ? \
                          AND (updated_at, tenant_id, message_id) > (?, ?, ?) AND (updated_at) < (?)";
    insert_bucket = "INSERT INTO stuck_buckets (status, bucket) VALUES (?, ?)";
    select_buckets = "SELECT bucket FROM stuck_buckets WHERE status = ? AND bucket >= ? AND bucket <= ?";
    select_cursor = "SELECT updated_at, tenant_id, message_id FROM stuck_cursor WHERE status = ?";
    upsert_cursor = "INSERT INTO stuck_cursor (status, updated_at, tenant_id, message_id) VALUES (?, ?, ?, ?)";

    insert_audit = "INSERT INTO audit_log (tenant_id, day, at, seq, actor, action, detail) \
                    VALUES (?, ?, ?, ?, ?, ?, ?)";
    select_audit = "SELECT at, actor, action, detail FROM audit_log WHERE tenant_id = ? AND day = ? LIMIT ?";
    delete_audit_day = "DELETE FROM audit_log WHERE tenant_id = ? AND day = ?";
    insert_inbound_message = "INSERT INTO inbound_messages (tenant_id, day, received_at, provider_id, channel, \
                              from_address, to_address, body, media_urls) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    select_inbound_messages = "SELECT received_at, provider_id, channel, from_address, to_address, body, media_urls \
                               FROM inbound_messages WHERE tenant_id = ? AND day = ? \
                               AND (received_at, provider_id) < (?, ?) LIMIT ?";
    delete_inbound_day = "DELETE FROM inbound_messages WHERE tenant_id = ? AND day = ?";
}

// ---------------------------------------------------------------------------------------------
// Values and rows.

fn decode_rows<R>(result: QueryResult) -> Result<Vec<R>, StoreError>
where
    R: for<'f, 'm> DeserializeRow<'f, 'm>,
{
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::Backend(format!("query answered no rows: {e}")))?;
    rows.rows::<R>()
        .map_err(|e| StoreError::Invalid(format!("stored row has an unexpected shape: {e}")))?
        .map(|row| row.map_err(|e| StoreError::Invalid(format!("stored row is not valid: {e}"))))
        .collect()
}

fn ts(at: OffsetDateTime) -> Result<CqlTimestamp, StoreError> {
    to_ms(at).map(CqlTimestamp)
}

fn opt_ts(at: Option<OffsetDateTime>) -> Result<Option<CqlTimestamp>, StoreError> {
    at.map(ts).transpose()
}

fn from_ts(at: CqlTimestamp) -> Result<OffsetDateTime, StoreError> {
    from_ms(at.0)
}

fn opt_from_ts(at: Option<CqlTimestamp>) -> Result<Option<OffsetDateTime>, StoreError> {
    at.map(from_ts).transpose()
}

fn day_of(ms: i64) -> Result<i32, StoreError> {
    i32::try_from(ms.div_euclid(DAY_MS)).map_err(|_| StoreError::Invalid(format!("timestamp {ms} is out of range")))
}

fn bucket_of(ms: i64) -> Result<i32, StoreError> {
    i32::try_from(ms.div_euclid(BUCKET_MS)).map_err(|_| StoreError::Invalid(format!("timestamp {ms} is out of range")))
}

fn to_int(value: u32, what: &str) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} does not fit a CQL int")))
}

fn from_int<T: TryFrom<i32>>(value: i32, what: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Invalid(format!("stored {what} {value} is out of range")))
}

fn limit_of(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

type TenantRow = (
    String,
    String,
    bool,
    String,
    Option<String>,
    Option<String>,
    CqlTimestamp,
);

fn tenant_from_row(row: TenantRow) -> Result<Tenant, StoreError> {
    let (id, name, is_demo, status, plan_id, created_by, created_at) = row;
    Ok(Tenant {
        id: parse_tenant_id(&id)?,
        name,
        is_demo,
        status: enum_from_text(&status, "tenant status")?,
        plan_id,
        created_by,
        created_at: from_ts(created_at)?,
    })
}

type KeyRow = (String, String, String, CqlTimestamp, Option<CqlTimestamp>);

fn key_from_row(row: KeyRow) -> Result<ApiKeyRecord, StoreError> {
    let (key_id, tenant_id, secret_hash, created_at, revoked_at) = row;
    Ok(ApiKeyRecord {
        key_id,
        tenant_id: parse_tenant_id(&tenant_id)?,
        secret_hash,
        created_at: from_ts(created_at)?,
        revoked_at: opt_from_ts(revoked_at)?,
    })
}

type BrandRow = (
    String,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
);

fn brand_from_row(row: BrandRow) -> Result<Option<Brand>, StoreError> {
    let (tenant_id, status, status_reason, trust_score, step, attempts, sids, updated_at, approved_at) = row;
    // A row with only a schedule left (never written by this store) is no brand.
    let (Some(status), Some(step), Some(updated_at)) = (status, step, updated_at) else {
        return Ok(None);
    };
    Ok(Some(Brand {
        tenant_id: parse_tenant_id(&tenant_id)?,
        status: enum_from_text(&status, "brand status")?,
        status_reason,
        trust_score: trust_score.map(|score| from_int(score, "trust score")).transpose()?,
        workflow_step: step,
        workflow_attempts: from_int(attempts.unwrap_or(0), "workflow attempts")?,
        twilio_sids: match sids {
            Some(raw) => json_from_text::<BTreeMap<String, String>>(&raw, "brand twilio_sids")?,
            None => BTreeMap::new(),
        },
        updated_at: from_ts(updated_at)?,
        approved_at: opt_from_ts(approved_at)?,
    }))
}

type NumberRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<f64>,
    CqlTimestamp,
    Option<String>,
);

fn number_from_row(row: NumberRow) -> Result<SenderNumber, StoreError> {
    let (tenant_id, number, kind, status, twilio_sid, rate_per_second, created_at, registration) = row;
    Ok(SenderNumber {
        tenant_id: parse_tenant_id(&tenant_id)?,
        number: PhoneNumber::parse(number.as_str())
            .map_err(|e| StoreError::Invalid(format!("stored sender number {number:?} is not valid: {e}")))?,
        kind: enum_from_text(&kind, "sender kind")?,
        status: enum_from_text(&status, "number status")?,
        twilio_sid,
        rate_per_second,
        created_at: from_ts(created_at)?,
        registration: registration
            .map(|raw| json_from_text(&raw, "sender registration"))
            .transpose()?,
    })
}

type CredentialsRow = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    bool,
    Option<String>,
    CqlTimestamp,
    Option<String>,
);

fn credentials_from_row(row: CredentialsRow) -> Result<ChannelCredentials, StoreError> {
    let (
        tenant_id,
        channel,
        provider,
        settings,
        key_id,
        sealed_secrets,
        is_verified,
        verification_error,
        updated_at,
        _,
    ) = row;
    Ok(ChannelCredentials {
        tenant_id: parse_tenant_id(&tenant_id)?,
        channel: parse_channel(&channel)?,
        provider: enum_from_text(&provider, "provider")?,
        settings: json_from_text(&settings, "credential settings")?,
        key_id,
        sealed_secrets,
        is_verified,
        verification_error,
        updated_at: from_ts(updated_at)?,
    })
}

/// The Twilio account SID named in credential settings.
fn account_sid_of(settings: &serde_json::Value) -> Option<&str> {
    settings.get("account_sid").and_then(serde_json::Value::as_str)
}

type SuppressionRow = (String, String, String, Option<String>, CqlTimestamp);

fn suppression_from_row(row: SuppressionRow) -> Result<Suppression, StoreError> {
    let (tenant_id, address, reason, source, created_at) = row;
    Ok(Suppression {
        tenant_id: parse_tenant_id(&tenant_id)?,
        address,
        reason: enum_from_text(&reason, "suppression reason")?,
        source,
        created_at: from_ts(created_at)?,
    })
}

/// The columns of `select_message` (`MESSAGE_COLUMNS`): one row per status reached, highest
/// rank first, the static columns repeated on each.
type MessageRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
);

/// A message from its rows; `None` when it has no status row (never claimed, or deleted).
fn message_from_rows(rows: Vec<MessageRow>) -> Result<Option<MessageRecord>, StoreError> {
    // Highest rank first: the history is the reverse. A row without a status holds only the
    // static columns (a message that was never claimed, or is being deleted).
    let mut history = Vec::with_capacity(rows.len());
    for (.., status, at, reason) in rows.iter().rev() {
        if let (Some(status), Some(at)) = (status, at) {
            history.push(StatusChange {
                status: parse_status(status)?,
                at: from_ts(*at)?,
                reason: reason.clone(),
            });
        }
    }
    let (Some(current), Some(row)) = (history.last().cloned(), rows.into_iter().next()) else {
        return Ok(None);
    };
    // The static columns are the same on every row.
    let (tenant_id, message_id, campaign_id, channel, recipient, priority, segments, provider, accepted, ..) = row;
    let missing = |column: &str| StoreError::Invalid(format!("message {tenant_id}/{message_id} lacks its {column}"));
    let campaign_id = match campaign_id {
        Some(raw) => Some(
            CampaignId::parse(raw.as_str())
                .map_err(|e| StoreError::Invalid(format!("stored campaign id {raw:?} is not valid: {e}")))?,
        ),
        None => None,
    };
    Ok(Some(MessageRecord {
        tenant_id: parse_tenant_id(&tenant_id)?,
        message_id: parse_message_id(&message_id)?,
        campaign_id,
        channel: parse_channel(&channel.ok_or_else(|| missing("channel"))?)?,
        recipient: recipient.ok_or_else(|| missing("recipient"))?,
        priority: parse_priority(&priority.ok_or_else(|| missing("priority"))?)?,
        segments: from_int(segments.ok_or_else(|| missing("segments"))?, "segments")?,
        status: current.status,
        reason: current.reason,
        provider_message_id: provider,
        accepted_at: from_ts(accepted.ok_or_else(|| missing("accepted_at"))?)?,
        updated_at: current.at,
        history,
    }))
}

/// The position of `status` in [`MessageStatus::ALL`]: the happy chain, then the failure
/// terminals. It keys a message's status rows; the highest is the current status.
fn status_rank(status: MessageStatus) -> i32 {
    MessageStatus::ALL
        .iter()
        .position(|candidate| *candidate == status)
        .and_then(|rank| i32::try_from(rank).ok())
        .unwrap_or(i32::MAX)
}

// ---------------------------------------------------------------------------------------------
// The trait.

#[async_trait]
impl TenantStore for CassandraStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let created = self
            .lwt(
                &self.st().insert_tenant,
                (
                    tenant.id.as_str(),
                    tenant.name.as_str(),
                    tenant.is_demo,
                    enum_to_text(&tenant.status)?,
                    tenant.plan_id.as_deref(),
                    tenant.created_by.as_deref(),
                    ts(tenant.created_at)?,
                ),
            )
            .await?;
        if !created.applied {
            return Err(StoreError::Conflict(format!("tenant {} already exists", tenant.id)));
        }
        if tenant.is_demo {
            self.exec(&self.st().insert_demo, (ts(tenant.created_at)?, tenant.id.as_str()))
                .await?;
        }
        Ok(())
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> = self.row(&self.st().select_tenant, (id.as_str(),)).await?;
        row.map(tenant_from_row).transpose()
    }

    async fn set_tenant_status(&self, id: &TenantId, status: TenantStatus) -> Result<bool, StoreError> {
        let outcome = self
            .lwt(&self.st().set_tenant_status, (enum_to_text(&status)?, id.as_str()))
            .await?;
        Ok(outcome.applied)
    }

    async fn set_tenant_plan(&self, id: &TenantId, plan_id: Option<&str>) -> Result<bool, StoreError> {
        let outcome = self.lwt(&self.st().set_tenant_plan, (plan_id, id.as_str())).await?;
        Ok(outcome.applied)
    }

    async fn tenant_settings(&self, id: &TenantId) -> Result<Option<TenantSettings>, StoreError> {
        let row: Option<(Option<String>,)> = self.row(&self.st().select_tenant_settings, (id.as_str(),)).await?;
        row.map(|(json,)| settings_from_text(json.as_deref())).transpose()
    }

    async fn set_tenant_settings(&self, id: &TenantId, settings: &TenantSettings) -> Result<bool, StoreError> {
        let outcome = self
            .lwt(&self.st().set_tenant_settings, (json_to_text(settings)?, id.as_str()))
            .await?;
        Ok(outcome.applied)
    }

    async fn demo_tenants_created_before(&self, before: OffsetDateTime) -> Result<Vec<Tenant>, StoreError> {
        let ids: Vec<(String,)> = self.all_rows(&self.st().select_demo_before, (ts(before)?,)).await?;
        let mut tenants = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(tenant) = self.tenant(&parse_tenant_id(&id)?).await?
                && tenant.is_demo
                && tenant.created_at < before
            {
                tenants.push(tenant);
            }
        }
        Ok(tenants)
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError> {
        let st = self.st();
        let t = id.as_str();
        let existing = self.tenant(id).await?;

        for key in self.api_keys(id).await? {
            self.exec(&st.delete_key_by_hash, (key.secret_hash.as_str(),)).await?;
        }
        self.exec(&st.delete_keys, (t,)).await?;
        self.exec(&st.delete_business, (t,)).await?;
        if let Some(due) = self.workflow_due(id).await? {
            self.exec(&st.delete_schedule, (ts(due)?, t)).await?;
        }
        self.exec(&st.delete_brand, (t,)).await?;
        for number in self.sender_numbers(id).await? {
            self.lwt(&st.release_number, (number.number.as_str(), t)).await?;
        }
        self.exec(&st.delete_numbers, (t,)).await?;
        for row in self.credentials_rows(t, None).await? {
            if let Some(account) = &row.9 {
                self.exec(&st.delete_account, (account.as_str(), t, row.1.as_str()))
                    .await?;
            }
        }
        self.exec(&st.delete_all_credentials, (t,)).await?;
        self.exec(&st.delete_usage, (t,)).await?;
        self.exec(&st.delete_suppressions, (t,)).await?;
        self.exec(&st.delete_consents, (t,)).await?;
        self.exec(&st.delete_inbounds, (t,)).await?;
        let held: Vec<(String, String)> = self.all_rows(&st.select_tenant_held, (t,)).await?;
        for (campaign, channel) in held {
            self.exec(&st.delete_held_partition, (t, campaign.as_str(), channel.as_str()))
                .await?;
            self.exec(&st.delete_held_campaign, (t, campaign.as_str(), channel.as_str()))
                .await?;
        }

        let days: Vec<(i32,)> = self.rows(&st.select_tenant_days, (t, KIND_MESSAGES)).await?;
        for (day,) in days {
            let ids: Vec<(String,)> = self.all_rows(&st.select_tenant_messages, (t, day)).await?;
            stream::iter(ids.into_iter().map(|(message,)| self.delete_message(t, message)))
                .buffer_unordered(self.inner.concurrency)
                .try_for_each(|()| async { Ok(()) })
                .await?;
            self.exec(&st.delete_tenant_messages, (t, day)).await?;
        }
        let days: Vec<(i32,)> = self.rows(&st.select_tenant_days, (t, KIND_AUDIT)).await?;
        for (day,) in days {
            self.exec(&st.delete_audit_day, (t, day)).await?;
        }
        let days: Vec<(i32,)> = self.rows(&st.select_tenant_days, (t, KIND_INBOUND)).await?;
        for (day,) in days {
            self.exec(&st.delete_inbound_day, (t, day)).await?;
        }
        self.exec(&st.delete_tenant_days, (t,)).await?;

        if let Some(tenant) = &existing {
            if tenant.is_demo {
                self.exec(&st.delete_demo, (ts(tenant.created_at)?, t)).await?;
            }
            self.exec(&st.delete_tenant, (t,)).await?;
        }
        // Stuck-index entries of its messages are found stale and removed by the next read.
        Ok(existing.is_some())
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        if self.tenant(&key.tenant_id).await?.is_none() {
            return Err(StoreError::Conflict(format!(
                "api key {}: the tenant it refers to does not exist",
                key.key_id
            )));
        }
        let values = (
            key.secret_hash.as_str(),
            key.tenant_id.as_str(),
            key.key_id.as_str(),
            ts(key.created_at)?,
            opt_ts(key.revoked_at)?,
        );
        if !self.lwt(&self.st().insert_key_by_hash, values).await?.applied {
            return Err(StoreError::Conflict(format!(
                "api key {}: its secret hash is taken",
                key.key_id
            )));
        }
        self.exec(
            &self.st().insert_key,
            (
                key.key_id.as_str(),
                key.tenant_id.as_str(),
                key.secret_hash.as_str(),
                ts(key.created_at)?,
                opt_ts(key.revoked_at)?,
            ),
        )
        .await?;
        Ok(())
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row: Option<KeyRow> = self.row(&self.st().select_key_by_hash, (secret_hash,)).await?;
        row.map(key_from_row).transpose()
    }

    async fn revoke_api_key(&self, tenant: &TenantId, key_id: &str, at: OffsetDateTime) -> Result<bool, StoreError> {
        let row: Option<KeyRow> = self.row(&self.st().select_key, (tenant.as_str(), key_id)).await?;
        let Some(key) = row.map(key_from_row).transpose()? else {
            return Ok(false);
        };
        // Revoking twice keeps the first revocation time.
        if key.revoked_at.is_none() {
            let at = ts(at)?;
            self.exec(&self.st().revoke_key_by_hash, (at, key.secret_hash.as_str()))
                .await?;
            self.exec(&self.st().revoke_key, (at, tenant.as_str(), key_id)).await?;
        }
        Ok(true)
    }

    async fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows: Vec<KeyRow> = self.rows(&self.st().select_keys, (tenant.as_str(),)).await?;
        let mut keys = rows.into_iter().map(key_from_row).collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(keys)
    }
}

#[async_trait]
impl OnboardingStore for CassandraStore {
    async fn put_business_info(&self, info: &BusinessInfoRecord) -> Result<(), StoreError> {
        self.exec(
            &self.st().upsert_business,
            (info.tenant_id.as_str(), json_to_text(&info.data)?, ts(info.updated_at)?),
        )
        .await?;
        Ok(())
    }

    async fn business_info(&self, tenant: &TenantId) -> Result<Option<BusinessInfoRecord>, StoreError> {
        let row: Option<(String, CqlTimestamp)> = self.row(&self.st().select_business, (tenant.as_str(),)).await?;
        row.map(|(data, updated_at)| {
            Ok(BusinessInfoRecord {
                tenant_id: tenant.clone(),
                data: json_from_text(&data, "business info")?,
                updated_at: from_ts(updated_at)?,
            })
        })
        .transpose()
    }

    async fn put_brand(&self, brand: &Brand) -> Result<(), StoreError> {
        self.exec(
            &self.st().upsert_brand,
            (
                enum_to_text(&brand.status)?,
                brand.status_reason.as_deref(),
                brand.trust_score.map(i32::from),
                brand.workflow_step.as_str(),
                to_int(brand.workflow_attempts, "workflow attempts")?,
                json_to_text(&brand.twilio_sids)?,
                ts(brand.updated_at)?,
                opt_ts(brand.approved_at)?,
                brand.tenant_id.as_str(),
            ),
        )
        .await?;
        Ok(())
    }

    async fn brand(&self, tenant: &TenantId) -> Result<Option<Brand>, StoreError> {
        let row: Option<BrandRow> = self.row(&self.st().select_brand, (tenant.as_str(),)).await?;
        Ok(row.map(brand_from_row).transpose()?.flatten())
    }

    async fn put_workflow(&self, brand: &Brand, due: Option<OffsetDateTime>) -> Result<(), StoreError> {
        let st = self.st();
        let t = brand.tenant_id.as_str();
        let previous = self.workflow_due(&brand.tenant_id).await?;
        // The new schedule entry first: a crash leaves at worst a stale entry, which
        // workflows_due checks against the brand row and removes.
        if let Some(due) = due
            && previous != Some(due)
        {
            self.exec(&st.insert_schedule, (ts(due)?, t)).await?;
        }
        self.exec(
            &st.upsert_workflow,
            (
                enum_to_text(&brand.status)?,
                brand.status_reason.as_deref(),
                brand.trust_score.map(i32::from),
                brand.workflow_step.as_str(),
                to_int(brand.workflow_attempts, "workflow attempts")?,
                json_to_text(&brand.twilio_sids)?,
                ts(brand.updated_at)?,
                opt_ts(brand.approved_at)?,
                opt_ts(due)?,
                t,
            ),
        )
        .await?;
        if let Some(previous) = previous
            && Some(previous) != due
        {
            self.exec(&st.delete_schedule, (ts(previous)?, t)).await?;
        }
        Ok(())
    }

    async fn workflow_due(&self, tenant: &TenantId) -> Result<Option<OffsetDateTime>, StoreError> {
        let row: Option<(Option<CqlTimestamp>,)> = self.row(&self.st().select_due, (tenant.as_str(),)).await?;
        opt_from_ts(row.and_then(|(due,)| due))
    }

    async fn workflows_due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<TenantId>, StoreError> {
        let entries: Vec<(CqlTimestamp, String)> = self.all_rows(&self.st().select_schedule, (ts(now)?,)).await?;
        let mut due = Vec::new();
        for (at, tenant) in entries {
            if due.len() >= limit {
                break;
            }
            let tenant = parse_tenant_id(&tenant)?;
            if self.workflow_due(&tenant).await? == Some(from_ts(at)?) {
                due.push(tenant);
            } else {
                self.exec(&self.st().delete_schedule, (at, tenant.as_str())).await?;
            }
        }
        Ok(due)
    }

    async fn put_sender_number(&self, number: &SenderNumber) -> Result<(), StoreError> {
        let t = number.tenant_id.as_str();
        let owner = self.lwt(&self.st().claim_number, (number.number.as_str(), t)).await?;
        if !owner.applied && owner.opt_text("tenant_id").as_deref() != Some(t) {
            return Err(StoreError::Conflict(format!(
                "sender number {} belongs to another tenant",
                number.number.as_str()
            )));
        }
        self.exec(
            &self.st().upsert_number,
            (
                t,
                number.number.as_str(),
                enum_to_text(&number.kind)?,
                enum_to_text(&number.status)?,
                number.twilio_sid.as_deref(),
                number.rate_per_second,
                ts(number.created_at)?,
                number.registration.as_ref().map(json_to_text).transpose()?,
            ),
        )
        .await?;
        Ok(())
    }

    async fn sender_numbers(&self, tenant: &TenantId) -> Result<Vec<SenderNumber>, StoreError> {
        let rows: Vec<NumberRow> = self.rows(&self.st().select_numbers, (tenant.as_str(),)).await?;
        let mut numbers = rows.into_iter().map(number_from_row).collect::<Result<Vec<_>, _>>()?;
        numbers.sort_by(|a, b| (a.created_at, a.number.as_str()).cmp(&(b.created_at, b.number.as_str())));
        Ok(numbers)
    }

    async fn put_credentials(&self, credentials: &ChannelCredentials) -> Result<(), StoreError> {
        let st = self.st();
        let t = credentials.tenant_id.as_str();
        let channel = credentials.channel.as_str();
        let account = account_sid_of(&credentials.settings);
        let previous = self
            .credentials_rows(t, Some(credentials.channel))
            .await?
            .into_iter()
            .next()
            .and_then(|row| row.9);
        if let Some(account) = account {
            self.exec(&st.insert_account, (account, t, channel)).await?;
        }
        self.exec(
            &st.upsert_credentials,
            (
                t,
                channel,
                enum_to_text(&credentials.provider)?,
                json_to_text(&credentials.settings)?,
                credentials.key_id.as_str(),
                credentials.sealed_secrets.as_slice(),
                credentials.is_verified,
                credentials.verification_error.as_deref(),
                ts(credentials.updated_at)?,
                account,
            ),
        )
        .await?;
        if let Some(previous) = previous
            && Some(previous.as_str()) != account
        {
            self.exec(&st.delete_account, (previous.as_str(), t, channel)).await?;
        }
        Ok(())
    }

    async fn credentials(&self, tenant: &TenantId, channel: Channel) -> Result<Option<ChannelCredentials>, StoreError> {
        self.credentials_rows(tenant.as_str(), Some(channel))
            .await?
            .into_iter()
            .next()
            .map(credentials_from_row)
            .transpose()
    }

    async fn delete_credentials(&self, tenant: &TenantId, channel: Channel) -> Result<bool, StoreError> {
        let t = tenant.as_str();
        let Some(row) = self.credentials_rows(t, Some(channel)).await?.into_iter().next() else {
            return Ok(false);
        };
        self.exec(&self.st().delete_credentials, (t, channel.as_str())).await?;
        if let Some(account) = &row.9 {
            self.exec(&self.st().delete_account, (account.as_str(), t, channel.as_str()))
                .await?;
        }
        Ok(true)
    }

    async fn credential_tenants(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows: Vec<(String,)> = match after {
            None => self.rows(&self.st().first_credential_tenants, (limit,)).await?,
            Some(after) => {
                self.rows(&self.st().next_credential_tenants, (after.as_str(), limit))
                    .await?
            }
        };
        rows.into_iter()
            .map(|(id,)| TenantId::parse(id).map_err(|error| StoreError::Invalid(error.to_string())))
            .collect()
    }

    async fn credentials_by_account(&self, account_sid: &str) -> Result<Vec<ChannelCredentials>, StoreError> {
        let entries: Vec<(String, String)> = self.rows(&self.st().select_account, (account_sid,)).await?;
        let mut found = Vec::with_capacity(entries.len());
        for (tenant, channel) in entries {
            let row = self
                .credentials_rows(&tenant, Some(parse_channel(&channel)?))
                .await?
                .into_iter()
                .next();
            // The lookup row may outlive a change of account (a crash between the writes).
            if let Some(row) = row
                && row.9.as_deref() == Some(account_sid)
            {
                let credentials = credentials_from_row(row)?;
                if credentials.is_verified {
                    found.push(credentials);
                }
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl MessageStore for CassandraStore {
    async fn claim_messages(&self, messages: &[NewMessage]) -> Result<Vec<bool>, StoreError> {
        let mut writes = Writes::default();
        let mut derived = Derived::default();
        for message in messages {
            self.claim_rows(message, &mut writes, &mut derived)?;
        }
        self.write_with_registries(writes, derived).await?;
        Ok(vec![true; messages.len()])
    }

    async fn claims(&self, ids: &[(TenantId, MessageId)]) -> Result<Vec<Option<StoredClaim>>, StoreError> {
        // The futures are collected first: a closure over borrowed items inside the stream type
        // trips the compiler's higher-ranked lifetime check in an async trait method.
        let reading: Vec<_> = ids
            .iter()
            .map(|(tenant, id)| async move {
                let row: Option<ClaimRow> = self
                    .row(&self.st().select_claim, (tenant.as_str(), id.as_str()))
                    .await?;
                let Some((Some(status), partition, offset, Some(accepted))) = row else {
                    return Ok(None);
                };
                let position = match (partition, offset) {
                    (Some(partition), Some(offset)) => Some(RecordPosition {
                        partition: from_int(partition, "log partition")?,
                        offset: offset_from_column(offset)?,
                    }),
                    _ => None,
                };
                Ok::<_, StoreError>(Some(StoredClaim {
                    position,
                    status: parse_status(&status)?,
                    accepted_at: from_ts(accepted)?,
                }))
            })
            .collect();
        stream::iter(reading)
            .buffered(self.inner.concurrency)
            .try_collect()
            .await
    }

    async fn append_claim_journal(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        self.exec(
            &self.st().insert_journal,
            (
                journal_partition(entry.partition)?,
                entry.generation as i64,
                entry.entry as i64,
                hashes_to_blob(&entry.hashes),
            ),
        )
        .await
        .map(drop)
    }

    async fn claim_journal(&self, partition: Partition) -> Result<Vec<JournalEntry>, StoreError> {
        let rows: Vec<(i64, i64, Vec<u8>)> = self
            .all_rows(&self.st().select_journal, (journal_partition(partition)?,))
            .await?;
        rows.into_iter()
            .map(|(generation, entry, hashes)| {
                Ok(JournalEntry {
                    partition,
                    generation: generation as u64,
                    entry: entry as u64,
                    hashes: blob_to_hashes(&hashes)?,
                })
            })
            .collect()
    }

    async fn trim_claim_journal(&self, partition: Partition, keep_from: u64) -> Result<(), StoreError> {
        self.exec(
            &self.st().trim_journal,
            (journal_partition(partition)?, keep_from as i64),
        )
        .await
        .map(drop)
    }

    async fn apply_status(&self, updates: &[StatusUpdate]) -> Result<Vec<bool>, StoreError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut writes = Writes::default();
        let mut derived = Derived::default();
        let mut applied = vec![false; updates.len()];
        // Changes of one message in order, in one task; messages concurrently.
        let mut groups: Vec<Vec<(usize, &StatusUpdate)>> = Vec::new();
        let mut group_of: HashMap<(&str, &str), usize> = HashMap::new();
        for (index, update) in updates.iter().enumerate() {
            if let Some(held) = &update.held {
                self.held_rows(update, held, &mut writes, &mut derived)?;
                applied[index] = true;
                continue;
            }
            let key = (update.tenant_id.as_str(), update.message_id.as_str());
            let group = *group_of.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push((index, update));
        }
        let applying: Vec<_> = groups.into_iter().map(|group| self.apply_to_message(group)).collect();
        let results: Vec<(Vec<(usize, bool)>, Derived)> = stream::iter(applying)
            .buffer_unordered(self.inner.concurrency)
            .try_collect()
            .await?;
        for (answers, rows) in results {
            for (index, answer) in answers {
                applied[index] = answer;
            }
            derived.extend(rows);
        }
        self.write_with_registries(writes, derived).await?;
        Ok(applied)
    }

    async fn message(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.message_row(tenant.as_str(), id.as_str()).await
    }

    async fn stuck_messages(
        &self,
        updated_before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let st = self.st();
        let before = to_ms(updated_before)?;
        let last_bucket = bucket_of(before)?;
        let mut stuck = Vec::new();
        let mut returned: HashSet<(TenantId, MessageId)> = HashSet::new();
        for status in MessageStatus::RECONCILED {
            if stuck.len() >= limit {
                break;
            }
            // Entries are read once, from the last one examined on: stale ones are passed for
            // good, returned ones are entered again below.
            let cursor: Option<StuckEntry> = self.row(&st.select_cursor, (status.as_str(),)).await?;
            let mut read_to = cursor.clone();
            let first_bucket = match &cursor {
                Some((at, ..)) => bucket_of(at.0)?,
                None => i32::MIN,
            };
            let buckets: Vec<(i32,)> = self
                .all_rows(&st.select_buckets, (status.as_str(), first_bucket, last_bucket))
                .await?;
            'buckets: for (bucket,) in buckets {
                let pager = match &read_to {
                    Some((at, tenant, id)) if bucket_of(at.0)? == bucket => {
                        let values = (status.as_str(), bucket, *at, tenant, id, CqlTimestamp(before));
                        self.inner
                            .session
                            .execute_iter(st.select_stuck_after.clone(), values)
                            .await
                    }
                    _ => {
                        let values = (status.as_str(), bucket, CqlTimestamp(before));
                        self.inner.session.execute_iter(st.select_stuck.clone(), values).await
                    }
                }
                .map_err(be("select stuck messages"))?;
                let mut entries = pager
                    .rows_stream::<StuckEntry>()
                    .map_err(|e| StoreError::Invalid(format!("stuck index: {e}")))?;
                loop {
                    let mut chunk = Vec::with_capacity(CHECK_CHUNK);
                    while chunk.len() < CHECK_CHUNK.min(limit - stuck.len()).max(1) {
                        match entries.next().await {
                            Some(entry) => chunk.push(entry.map_err(be("read stuck index"))?),
                            None => break,
                        }
                    }
                    if chunk.is_empty() {
                        break;
                    }
                    // Checked concurrently, taken in index order (oldest first).
                    let checked: Vec<Option<MessageRecord>> =
                        stream::iter(chunk.iter().cloned().map(|entry| self.check_stuck(status, entry)))
                            .buffered(self.inner.concurrency)
                            .try_collect()
                            .await?;
                    for (entry, record) in chunk.into_iter().zip(checked) {
                        if stuck.len() >= limit {
                            break 'buckets;
                        }
                        read_to = Some(entry);
                        if let Some(record) = record
                            && returned.insert((record.tenant_id.clone(), record.message_id.clone()))
                        {
                            stuck.push(record);
                        }
                    }
                }
            }
            if read_to != cursor
                && let Some((at, tenant, id)) = read_to
            {
                self.exec(&st.upsert_cursor, (status.as_str(), at, tenant, id)).await?;
            }
        }
        // Each returned message is due again from now: entered again, at the back of the line.
        let now = to_ms(OffsetDateTime::now_utc())?;
        let mut derived = Derived::default();
        for record in &stuck {
            let key = StuckKey::of(
                record.status,
                now,
                record.tenant_id.as_str(),
                record.message_id.as_str(),
            )?;
            if let Some(key) = key {
                derived.buckets.insert((key.status, key.bucket));
                derived.stuck_inserts.push(key);
            }
        }
        self.write_with_registries(Writes::default(), derived).await?;
        Ok(stuck)
    }

    fn backend_requests(&self) -> Option<u64> {
        let metrics = self.inner.session.get_metrics();
        Some(
            metrics.get_requests_unpaged_num()
                + metrics.get_requests_manually_paged_num()
                + metrics.get_requests_automatically_paged_num(),
        )
    }
}

/// A row of `scheduled_messages`, as read.
type ScheduledRow = (String, String, Option<String>, CqlTimestamp, Vec<u8>, Option<bool>);

/// The minute partition a scheduled message waits in.
fn minute_of(at: OffsetDateTime) -> Result<i64, StoreError> {
    Ok(to_ms(at)?.div_euclid(MINUTE_MS))
}

fn scheduled_from_row(row: ScheduledRow) -> Result<(ScheduledMessage, bool), StoreError> {
    let (tenant, id, campaign, due_at, envelope, canceled) = row;
    let message = ScheduledMessage {
        tenant_id: parse_tenant_id(&tenant)?,
        message_id: parse_message_id(&id)?,
        campaign_id: campaign.as_deref().map(parse_campaign_id).transpose()?,
        due_at: from_ts(due_at)?,
        envelope,
    };
    Ok((message, canceled.unwrap_or(false)))
}

impl CassandraStore {
    /// Writes one scheduled message and the rows that find it, unless it is scheduled already
    /// (read first: one dispatcher owns the tenant, so the same id is not scheduled concurrently).
    async fn put_scheduled(&self, message: ScheduledMessage) -> Result<(), StoreError> {
        let st = self.st();
        let (tenant, id) = (message.tenant_id.as_str(), message.message_id.as_str());
        let known: Option<(i64, CqlTimestamp)> = self.row(&st.select_scheduled_id, (tenant, id)).await?;
        if known.is_some() {
            return Ok(());
        }
        let minute = minute_of(message.due_at)?;
        let due_at = ts(message.due_at)?;
        let campaign = message.campaign_id.as_ref().map(CampaignId::as_str);
        self.exec(
            &st.insert_scheduled,
            (minute, due_at, tenant, id, campaign, message.envelope.as_slice()),
        )
        .await?;
        self.exec(&st.insert_scheduled_id, (tenant, id, minute, due_at)).await?;
        if let Some(campaign) = campaign {
            self.exec(&st.insert_scheduled_campaign, (tenant, campaign, id)).await?;
        }
        Ok(())
    }

    /// Forgets the rows that find a scheduled message (not its own row).
    async fn unlist_scheduled(&self, message: &ScheduledMessage) -> Result<(), StoreError> {
        let st = self.st();
        let (tenant, id) = (message.tenant_id.as_str(), message.message_id.as_str());
        self.exec(&st.delete_scheduled_id, (tenant, id)).await?;
        if let Some(campaign) = &message.campaign_id {
            self.exec(&st.delete_scheduled_campaign, (tenant, campaign.as_str(), id))
                .await?;
        }
        Ok(())
    }

    /// Forgets one released message.
    async fn forget_one(&self, message: ScheduledMessage) -> Result<(), StoreError> {
        self.unlist_scheduled(&message).await?;
        self.exec(
            &self.st().delete_scheduled,
            (
                minute_of(message.due_at)?,
                ts(message.due_at)?,
                message.tenant_id.as_str(),
                message.message_id.as_str(),
            ),
        )
        .await?;
        Ok(())
    }

    /// Up to `limit` rows of a minute after `after` and due by `due_before`, in due order.
    async fn scheduled_rows(
        &self,
        minute: i64,
        after: Option<&ReleasedUpTo>,
        due_before: CqlTimestamp,
        limit: usize,
    ) -> Result<Vec<(ScheduledMessage, bool)>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let (due_at, tenant, id) = match after {
            Some(after) if after.minute == minute => {
                (after.due_at, after.tenant_id.as_str(), after.message_id.as_str())
            }
            _ => (CqlTimestamp(minute * MINUTE_MS - 1), "", ""),
        };
        let rows: Vec<ScheduledRow> = self
            .rows(
                &self.st().select_scheduled_minute,
                (minute, due_at, tenant, id, due_before, limit),
            )
            .await?;
        rows.into_iter().map(scheduled_from_row).collect()
    }
}

#[async_trait]
impl ScheduleStore for CassandraStore {
    async fn schedule(&self, messages: &[ScheduledMessage]) -> Result<(), StoreError> {
        let Some(earliest) = messages.iter().map(|message| message.due_at).min() else {
            return Ok(());
        };
        // The release starts no later than now: every message scheduled from now on is due later.
        if !self.inner.schedule_cursor_set.load(Ordering::Relaxed) {
            let start = minute_of(earliest.min(OffsetDateTime::now_utc()))?;
            self.lwt(&self.st().init_schedule_cursor, (start,)).await?;
            self.inner.schedule_cursor_set.store(true, Ordering::Relaxed);
        }
        stream::iter(messages.iter().cloned().map(|message| self.put_scheduled(message)))
            .buffer_unordered(self.inner.concurrency)
            .try_for_each(|()| async { Ok(()) })
            .await
    }

    async fn due_scheduled(
        &self,
        due_before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ScheduledMessage>, StoreError> {
        let pending = {
            let release = self.inner.release.lock().expect("release state");
            release.pending.iter().take(limit).cloned().collect::<Vec<_>>()
        };
        if !pending.is_empty() {
            return Ok(pending);
        }
        let st = self.st();
        let Some((Some(cursor),)) = self.row::<(Option<i64>,)>(&st.select_schedule_cursor, ()).await? else {
            return Ok(Vec::new());
        };
        let last = minute_of(due_before)?;
        let due_by = ts(due_before)?;
        let mut after = self.inner.release.lock().expect("release state").after.clone();
        let mut minute = cursor;
        let mut due = Vec::new();
        while minute <= last && due.len() < limit {
            if self.scheduled_rows(minute, after.as_ref(), due_by, 1).await?.is_empty() {
                if minute == last {
                    break; // what the minute holds is not due yet
                }
                // Released whole: drop the minute's tombstones with one partition tombstone.
                self.exec(&st.delete_scheduled_minute, (minute,)).await?;
                minute += 1;
                continue;
            }
            // From here on no cancel of this minute applies; those that did are read below.
            self.lwt(&st.mark_minute_releasing, (minute,)).await?;
            let wanted = limit - due.len();
            let rows = self.scheduled_rows(minute, after.as_ref(), due_by, wanted).await?;
            let exhausted = rows.len() < wanted;
            for (message, canceled) in rows {
                after = Some(ReleasedUpTo {
                    minute,
                    due_at: ts(message.due_at)?,
                    tenant_id: message.tenant_id.to_string(),
                    message_id: message.message_id.to_string(),
                });
                if canceled {
                    self.exec(
                        &st.delete_scheduled,
                        (
                            minute,
                            ts(message.due_at)?,
                            message.tenant_id.as_str(),
                            message.message_id.as_str(),
                        ),
                    )
                    .await?;
                } else {
                    due.push(message);
                }
            }
            if exhausted && !due.is_empty() {
                // The minute is deleted (and the cursor moved past it) once what it gave is
                // forgotten and it is read again, empty.
                break;
            }
        }
        if minute > cursor {
            self.lwt(&st.advance_schedule_cursor, (minute, cursor)).await?;
        }
        let mut release = self.inner.release.lock().expect("release state");
        release.after = after;
        release.pending.clone_from(&due);
        Ok(due)
    }

    async fn forget_scheduled(&self, messages: &[ScheduledMessage]) -> Result<(), StoreError> {
        stream::iter(messages.iter().cloned().map(|message| self.forget_one(message)))
            .buffer_unordered(self.inner.concurrency)
            .try_for_each(|()| async { Ok(()) })
            .await?;
        let mut release = self.inner.release.lock().expect("release state");
        release.pending.retain(|pending| {
            !messages
                .iter()
                .any(|message| message.tenant_id == pending.tenant_id && message.message_id == pending.message_id)
        });
        Ok(())
    }

    async fn cancel_scheduled(&self, tenant: &TenantId, id: &MessageId) -> Result<ScheduleCancel, StoreError> {
        let st = self.st();
        let (t, m) = (tenant.as_str(), id.as_str());
        let Some((minute, due_at)) = self.row::<(i64, CqlTimestamp)>(&st.select_scheduled_id, (t, m)).await? else {
            return Ok(ScheduleCancel::NotScheduled);
        };
        if !self.lwt(&st.cancel_scheduled, (minute, due_at, t, m)).await?.applied {
            // The answer of a condition on a static column does not say which failed: read it.
            let state: Option<(Option<bool>, Option<bool>)> =
                self.row(&st.select_scheduled_state, (minute, due_at, t, m)).await?;
            return Ok(match state {
                Some((Some(true), Some(false))) => ScheduleCancel::Releasing,
                _ => ScheduleCancel::NotScheduled,
            });
        }
        let row: Option<ScheduledRow> = self.row(&st.select_scheduled_one, (minute, due_at, t, m)).await?;
        let Some(row) = row else {
            return Ok(ScheduleCancel::NotScheduled);
        };
        let (message, _) = scheduled_from_row(row)?;
        self.unlist_scheduled(&message).await?;
        Ok(ScheduleCancel::Canceled(message))
    }

    async fn scheduled(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<ScheduledMessage>, StoreError> {
        let st = self.st();
        let (t, m) = (tenant.as_str(), id.as_str());
        let Some((minute, due_at)) = self.row::<(i64, CqlTimestamp)>(&st.select_scheduled_id, (t, m)).await? else {
            return Ok(None);
        };
        let row: Option<ScheduledRow> = self.row(&st.select_scheduled_one, (minute, due_at, t, m)).await?;
        Ok(row.map(scheduled_from_row).transpose()?.map(|(message, _)| message))
    }

    async fn scheduled_in_campaign(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<Vec<MessageId>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let after = after.map_or("", MessageId::as_str);
        let rows: Vec<(String,)> = self
            .rows(
                &self.st().select_scheduled_campaign,
                (tenant.as_str(), campaign.as_str(), after, limit),
            )
            .await?;
        rows.into_iter().map(|(id,)| parse_message_id(&id)).collect()
    }
}

#[async_trait]
impl UsageStore for CassandraStore {
    async fn put_plan(&self, plan: &Plan) -> Result<(), StoreError> {
        self.exec(
            &self.st().upsert_plan,
            (plan.id.as_str(), plan.name.as_str(), json_to_text(&plan.monthly_quota)?),
        )
        .await?;
        Ok(())
    }

    async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        let row: Option<(String, String, String)> = self.row(&self.st().select_plan, (id,)).await?;
        row.map(|(id, name, quota)| {
            Ok(Plan {
                id,
                name,
                monthly_quota: json_from_text(&quota, "plan monthly_quota")?,
            })
        })
        .transpose()
    }

    async fn add_usage(
        &self,
        tenant: &TenantId,
        channel: Channel,
        period: &str,
        delta: i64,
    ) -> Result<u64, StoreError> {
        let st = self.st();
        let key = (tenant.as_str(), channel.as_str(), period);
        // Compare-and-set: the clamp at zero needs the current value (see the schema file).
        let mut current: Option<i64> = self
            .row::<(Option<i64>,)>(&st.select_usage, key)
            .await?
            .map(|(count,)| count.unwrap_or(0));
        for _ in 0..CAS_ATTEMPTS {
            let outcome = match current {
                None => {
                    let next = delta.max(0);
                    let outcome = self.lwt(&st.insert_usage, (key.0, key.1, key.2, next)).await?;
                    if outcome.applied {
                        return u64::try_from(next).map_err(|_| StoreError::Invalid("usage is negative".to_owned()));
                    }
                    outcome
                }
                Some(count) => {
                    let next = count.saturating_add(delta).max(0);
                    let outcome = self.lwt(&st.cas_usage, (next, key.0, key.1, key.2, count)).await?;
                    if outcome.applied {
                        return u64::try_from(next).map_err(|_| StoreError::Invalid("usage is negative".to_owned()));
                    }
                    outcome
                }
            };
            // Lost a race: the answer carries the current value.
            current = Some(outcome.bigint("count").unwrap_or(0));
        }
        Err(StoreError::Backend(format!(
            "usage of {tenant}/{channel}/{period}: lost {CAS_ATTEMPTS} compare-and-set races in a row"
        )))
    }

    async fn usage(&self, tenant: &TenantId, channel: Channel, period: &str) -> Result<u64, StoreError> {
        let row: Option<(Option<i64>,)> = self
            .row(&self.st().select_usage, (tenant.as_str(), channel.as_str(), period))
            .await?;
        let count = row.and_then(|(count,)| count).unwrap_or(0);
        u64::try_from(count).map_err(|_| StoreError::Invalid(format!("usage counter {count} is negative")))
    }

    async fn hold_messages(&self, messages: &[HeldMessage]) -> Result<(), StoreError> {
        let st = self.st();
        stream::iter(messages.iter().cloned().map(|message| self.put_held(message)))
            .buffer_unordered(self.inner.concurrency)
            .try_for_each(|()| async { Ok(()) })
            .await?;
        // Listed after its rows are written, so a campaign listed always has them.
        let mut campaigns: Vec<(&TenantId, &CampaignId, Channel)> = messages
            .iter()
            .map(|message| (&message.tenant_id, &message.campaign_id, message.channel))
            .collect();
        campaigns.dedup();
        for (tenant, campaign, channel) in campaigns {
            self.exec(
                &st.upsert_held_campaign,
                (tenant.as_str(), campaign.as_str(), channel.as_str()),
            )
            .await?;
        }
        Ok(())
    }

    async fn held_campaigns(&self, limit: usize) -> Result<Vec<(TenantId, CampaignId, Channel)>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows: Vec<(String, String, String)> = self.rows(&self.st().select_held_campaigns, (limit,)).await?;
        rows.into_iter()
            .map(|(tenant, campaign, channel)| {
                Ok((
                    parse_tenant_id(&tenant)?,
                    parse_campaign_id(&campaign)?,
                    parse_channel(&channel)?,
                ))
            })
            .collect()
    }

    async fn held_messages(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        channel: Channel,
        limit: usize,
    ) -> Result<Vec<HeldMessage>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows: Vec<(String, Vec<u8>, CqlTimestamp)> = self
            .rows(
                &self.st().select_held,
                (tenant.as_str(), campaign.as_str(), channel.as_str(), limit),
            )
            .await?;
        rows.into_iter()
            .map(|(id, envelope, held_at)| {
                Ok(HeldMessage {
                    tenant_id: tenant.clone(),
                    campaign_id: campaign.clone(),
                    channel,
                    message_id: parse_message_id(&id)?,
                    envelope,
                    held_at: from_ts(held_at)?,
                })
            })
            .collect()
    }

    async fn held_count(&self, tenant: &TenantId, campaign: &CampaignId) -> Result<u64, StoreError> {
        let st = self.st();
        let channels: Vec<(String,)> = self
            .rows(&st.select_campaign_held, (tenant.as_str(), campaign.as_str()))
            .await?;
        let mut total = 0;
        for (channel,) in channels {
            let count: Option<(i64,)> = self
                .row(&st.count_held, (tenant.as_str(), campaign.as_str(), channel.as_str()))
                .await?;
            total += count.map_or(0, |(count,)| u64::try_from(count).unwrap_or(0));
        }
        Ok(total)
    }

    async fn release_held(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        channel: Channel,
        ids: &[MessageId],
    ) -> Result<(), StoreError> {
        let st = self.st();
        let key = (tenant.as_str(), campaign.as_str(), channel.as_str());
        stream::iter(ids.iter().cloned().map(|id| self.delete_held(key, id)))
            .buffer_unordered(self.inner.concurrency)
            .try_for_each(|()| async { Ok(()) })
            .await?;
        if self.held_messages(tenant, campaign, channel, 1).await?.is_empty() {
            self.exec(&st.delete_held_campaign, key).await?;
            // A hold written meanwhile lists the campaign again.
            if !self.held_messages(tenant, campaign, channel, 1).await?.is_empty() {
                self.exec(&st.upsert_held_campaign, key).await?;
            }
        }
        Ok(())
    }

    async fn campaign_counts(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
    ) -> Result<Vec<(MessageStatus, u64)>, StoreError> {
        let rows: Vec<(Option<String>,)> = self
            .all_rows(&self.st().select_campaign, (tenant.as_str(), campaign.as_str()))
            .await?;
        let mut counts: BTreeMap<i32, (MessageStatus, u64)> = BTreeMap::new();
        for (status,) in rows {
            let Some(status) = status else { continue };
            let status = parse_status(&status)?;
            counts.entry(status_rank(status)).or_insert((status, 0)).1 += 1;
        }
        Ok(counts.into_values().collect())
    }
}

#[async_trait]
impl ContactStore for CassandraStore {
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError> {
        self.exec(
            &self.st().upsert_suppression,
            (
                suppression.tenant_id.as_str(),
                suppression.address.as_str(),
                enum_to_text(&suppression.reason)?,
                suppression.source.as_deref(),
                ts(suppression.created_at)?,
            ),
        )
        .await?;
        Ok(())
    }

    async fn suppressions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Suppression>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows: Vec<SuppressionRow> = self
            .rows(
                &self.st().select_suppressions_after,
                (tenant.as_str(), after.unwrap_or(""), limit),
            )
            .await?;
        rows.into_iter().map(suppression_from_row).collect()
    }

    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError> {
        self.exec(
            &self.st().upsert_consent,
            (
                consent.tenant_id.as_str(),
                consent.recipient.as_str(),
                consent.channel.as_str(),
                consent.source.as_str(),
                consent.wording.as_deref(),
                ts(consent.given_at)?,
            ),
        )
        .await?;
        Ok(())
    }

    async fn consented_among(
        &self,
        tenant: &TenantId,
        channel: Channel,
        addresses: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut seen = HashSet::with_capacity(addresses.len());
        let unique: Vec<&str> = addresses
            .iter()
            .map(String::as_str)
            .filter(|a| seen.insert(*a))
            .collect();
        let mut consented = Vec::new();
        // One single-partition query per 100 addresses, as suppressed_among.
        for chunk in unique.chunks(100) {
            let rows: Vec<(String, String)> = self
                .rows(&self.st().select_consents_in, (tenant.as_str(), chunk.to_vec()))
                .await?;
            consented.extend(
                rows.into_iter()
                    .filter(|(_, consented_channel)| consented_channel == channel.as_str())
                    .map(|(recipient, _)| recipient),
            );
        }
        Ok(consented)
    }

    async fn consents(&self, tenant: &TenantId, recipient: &str) -> Result<Vec<Consent>, StoreError> {
        type ConsentRow = (String, String, String, String, Option<String>, CqlTimestamp);
        let rows: Vec<ConsentRow> = self
            .rows(&self.st().select_consents, (tenant.as_str(), recipient))
            .await?;
        rows.into_iter()
            .map(|(tenant_id, recipient, channel, source, wording, given_at)| {
                Ok(Consent {
                    tenant_id: parse_tenant_id(&tenant_id)?,
                    recipient,
                    channel: parse_channel(&channel)?,
                    source,
                    wording,
                    given_at: from_ts(given_at)?,
                })
            })
            .collect()
    }

    async fn unsuppress(&self, tenant: &TenantId, address: &str) -> Result<bool, StoreError> {
        if self.suppression(tenant, address).await?.is_none() {
            return Ok(false);
        }
        self.exec(&self.st().delete_suppression, (tenant.as_str(), address))
            .await?;
        Ok(true)
    }

    async fn suppression(&self, tenant: &TenantId, address: &str) -> Result<Option<Suppression>, StoreError> {
        let row: Option<SuppressionRow> = self
            .row(&self.st().select_suppression, (tenant.as_str(), address))
            .await?;
        row.map(suppression_from_row).transpose()
    }

    async fn suppressed_among(&self, tenant: &TenantId, addresses: &[String]) -> Result<Vec<String>, StoreError> {
        let mut seen = HashSet::with_capacity(addresses.len());
        let unique: Vec<&String> = addresses.iter().filter(|a| seen.insert(a.as_str())).collect();
        let mut suppressed = HashSet::new();
        // One single-partition query per 100 addresses.
        for chunk in unique.chunks(100) {
            let list: Vec<&str> = chunk.iter().map(|a| a.as_str()).collect();
            let rows: Vec<(String,)> = self
                .rows(&self.st().select_suppressed_in, (tenant.as_str(), list))
                .await?;
            suppressed.extend(rows.into_iter().map(|(address,)| address));
        }
        Ok(unique
            .into_iter()
            .filter(|address| suppressed.contains(address.as_str()))
            .cloned()
            .collect())
    }

    async fn put_inbound(&self, message: &InboundMessage) -> Result<(), StoreError> {
        let at = to_ms(message.received_at)?;
        let day = day_of(at)?;
        let tenant = message.tenant_id.as_str();
        self.exec(&self.st().insert_tenant_day, (tenant, KIND_INBOUND, day))
            .await?;
        self.exec(
            &self.st().insert_inbound_message,
            (
                tenant,
                day,
                CqlTimestamp(at),
                message.provider_id.as_str(),
                message.channel.as_str(),
                message.from.as_str(),
                message.to.as_deref(),
                message.body.as_str(),
                &message.media_urls,
            ),
        )
        .await?;
        Ok(())
    }

    async fn inbound_messages(
        &self,
        tenant: &TenantId,
        before: Option<(OffsetDateTime, &str)>,
        limit: usize,
    ) -> Result<Vec<InboundMessage>, StoreError> {
        type InboundRow = (
            CqlTimestamp,
            String,
            String,
            String,
            Option<String>,
            String,
            Option<Vec<String>>,
        );
        let mut messages = Vec::new();
        let st = self.st();
        let (before_ms, before_id) = match before {
            Some((at, id)) => (to_ms(at)?, id),
            None => (i64::MAX, ""),
        };
        // Newest day first (the clustering order of tenant_days).
        let days: Vec<(i32,)> = self
            .rows(&st.select_tenant_days, (tenant.as_str(), KIND_INBOUND))
            .await?;
        for (day,) in days {
            let room = limit - messages.len();
            if room == 0 {
                break;
            }
            if i64::from(day).saturating_mul(DAY_MS) > before_ms {
                continue;
            }
            let rows: Vec<InboundRow> = self
                .rows(
                    &st.select_inbound_messages,
                    (tenant.as_str(), day, CqlTimestamp(before_ms), before_id, limit_of(room)),
                )
                .await?;
            for (at, provider_id, channel, from, to, body, media_urls) in rows {
                messages.push(InboundMessage {
                    tenant_id: tenant.clone(),
                    provider_id,
                    channel: parse_channel(&channel)?,
                    from,
                    to,
                    body,
                    media_urls: media_urls.unwrap_or_default(),
                    received_at: from_ts(at)?,
                });
            }
        }
        Ok(messages)
    }

    async fn record_inbound(&self, tenant: &TenantId, address: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        // The write timestamp is the inbound time: the later time wins, whatever the order.
        let at = to_ms(at)?;
        self.exec(
            &self.st().upsert_inbound,
            (tenant.as_str(), address, CqlTimestamp(at), at.saturating_mul(1_000)),
        )
        .await?;
        Ok(())
    }

    async fn last_inbound(&self, tenant: &TenantId, address: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let row: Option<(Option<CqlTimestamp>,)> =
            self.row(&self.st().select_inbound, (tenant.as_str(), address)).await?;
        opt_from_ts(row.and_then(|(at,)| at))
    }

    async fn event_processed(&self, tenant: &TenantId, event_id: &str) -> Result<bool, StoreError> {
        let row: Option<(Option<CqlTimestamp>,)> = self
            .row(&self.st().select_processed_event, (tenant.as_str(), event_id))
            .await?;
        Ok(row.is_some())
    }

    async fn mark_event_processed(
        &self,
        tenant: &TenantId,
        event_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.exec(
            &self.st().insert_processed_event,
            (tenant.as_str(), event_id, CqlTimestamp(to_ms(at)?)),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl AuditStore for CassandraStore {
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let tenant = entry.tenant_id.as_ref().map_or(PLATFORM, TenantId::as_str);
        let at = to_ms(entry.at)?;
        let day = day_of(at)?;
        let seq = self.inner.audit_seq.fetch_add(1, Ordering::Relaxed);
        self.exec(&self.st().insert_tenant_day, (tenant, KIND_AUDIT, day))
            .await?;
        self.exec(
            &self.st().insert_audit,
            (
                tenant,
                day,
                CqlTimestamp(at),
                seq,
                entry.actor.as_str(),
                entry.action.as_str(),
                json_to_text(&entry.detail)?,
            ),
        )
        .await?;
        Ok(())
    }

    async fn audit(&self, tenant: &TenantId, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(entries);
        }
        let st = self.st();
        // Newest day first (the clustering order of tenant_days).
        let days: Vec<(i32,)> = self.rows(&st.select_tenant_days, (tenant.as_str(), KIND_AUDIT)).await?;
        for (day,) in days {
            let room = limit - entries.len();
            if room == 0 {
                break;
            }
            let rows: Vec<(CqlTimestamp, String, String, String)> = self
                .rows(&st.select_audit, (tenant.as_str(), day, limit_of(room)))
                .await?;
            for (at, actor, action, detail) in rows {
                entries.push(AuditEntry {
                    tenant_id: Some(tenant.clone()),
                    at: from_ts(at)?,
                    actor,
                    action,
                    detail: json_from_text(&detail, "audit detail")?,
                });
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_files_split_into_statements() {
        let first = statements_of(MIGRATIONS[0].2, "ks_test", 1);
        assert!(first.len() > 2);
        assert!(first[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks_test"));
        assert!(first[0].contains("'replication_factor': 1"));
        assert!(first[1].contains("ks_test.schema_migrations"));
        for (index, (version, name, text)) in MIGRATIONS.iter().enumerate() {
            let statements = statements_of(text, "ks_test", 1);
            assert!(!statements.is_empty(), "{name}");
            for statement in &statements {
                assert!(!statement.contains("${"), "{name}: {statement}");
                assert!(!statement.contains("--"), "{name}: {statement}");
                // Idempotent, so that a run cut short is finished by the next one (`ddl` takes
                // columns that already exist for an ALTER TABLE ... ADD done; setting a table's
                // options twice sets them once).
                let sets_options =
                    statement.starts_with("ALTER TABLE") && statement.split_whitespace().nth(3) == Some("WITH");
                assert!(
                    statement.contains("IF NOT EXISTS")
                        || statement.starts_with("DROP TABLE IF EXISTS")
                        || is_alter_add(statement)
                        || sets_options,
                    "{name}: {statement}"
                );
            }
            assert_eq!(
                usize::try_from(*version).unwrap(),
                index + 1,
                "{name}: versions in order"
            );
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(valid_keyspace("engageninja"));
        assert!(valid_keyspace("t_1234_abc"));
        assert!(!valid_keyspace(""));
        assert!(!valid_keyspace("1abc"));
        assert!(!valid_keyspace("a; DROP KEYSPACE x"));
        assert!(!valid_keyspace(&"a".repeat(49)));
    }

    #[test]
    fn status_ranks_order_the_chain_then_the_failures() {
        use MessageStatus::*;
        for (lower, higher) in [
            (Queued, Unknown),
            (Unknown, Sent),
            (Sent, Delivered),
            (Delivered, Read),
            (Read, Failed),
        ] {
            assert!(status_rank(lower) < status_rank(higher), "{lower} < {higher}");
        }
        // Every move the forward-only rule allows goes up in rank, so the highest row is the
        // status the rule would have reached.
        for from in MessageStatus::ALL {
            for to in MessageStatus::ALL {
                if from.can_advance_to(to) {
                    assert!(status_rank(from) < status_rank(to), "{from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn buckets_and_days_are_floored() {
        assert_eq!(day_of(0).unwrap(), 0);
        assert_eq!(day_of(-1).unwrap(), -1);
        assert_eq!(bucket_of(BUCKET_MS - 1).unwrap(), 0);
        assert_eq!(bucket_of(BUCKET_MS).unwrap(), 1);
    }
}
