//! Measurements of the Cassandra store's write paths (ignored by default; they print numbers):
//!
//! ```text
//! .ci/services/cassandra.sh start
//! ENGAGENINJA_CASSANDRA_CONTACT=127.0.0.1:19042 \
//!   cargo test --release -p common --test cassandra_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - `claims_with_and_without_lwt`: 10,000 inserts of a message, plain (what the claim writes)
//!   and `IF NOT EXISTS` (a lightweight transaction, what version 1 of the schema wrote), both
//!   with `concurrency` requests in flight, `claim_messages` (blind inserts and the derived rows)
//!   in batches of 1,000, and `claims` (the read a filter's positive costs).
//! - `status_writes_batched_and_concurrent`: 10,000 `sent` changes held by the dispatcher
//!   through `apply_status` in batches of 1,000, in replica batches and one request each; and a
//!   status row written plainly versus by a lightweight transaction.

use std::time::{Duration, Instant};

use common::config::{CassandraSettings, WriteBatching};
use common::log::RecordPosition;
use common::store::cassandra::CassandraStore;
use common::store::{Held, MessageStore, NewMessage, StatusUpdate};
use common::{CampaignId, Channel, MessageId, MessageStatus, Priority, TenantId};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use time::OffsetDateTime;

const MESSAGES: usize = 10_000;
const BATCH: usize = 1_000;
const CONCURRENCY: usize = 256;

fn settings(batching: WriteBatching) -> Option<CassandraSettings> {
    let Ok(contact) = std::env::var("ENGAGENINJA_CASSANDRA_CONTACT") else {
        eprintln!("skipping: ENGAGENINJA_CASSANDRA_CONTACT is not set");
        return None;
    };
    Some(CassandraSettings {
        contact_points: vec![contact],
        keyspace: format!("enj_bench_{}", uuid::Uuid::new_v4().simple()),
        replication_factor: 1,
        request_timeout_ms: 30_000,
        concurrency: CONCURRENCY,
        batching,
        batch_rows: 100,
    })
}

async fn session(settings: &CassandraSettings) -> Session {
    let session = SessionBuilder::new()
        .known_nodes(&settings.contact_points)
        .build()
        .await
        .unwrap();
    session.use_keyspace(settings.keyspace.as_str(), false).await.unwrap();
    session
}

fn messages(prefix: &str, tenants: usize) -> Vec<NewMessage> {
    let now = OffsetDateTime::now_utc();
    (0..MESSAGES)
        .map(|i| NewMessage {
            tenant_id: TenantId::parse(format!("tenant-{}", i % tenants)).unwrap(),
            message_id: MessageId::parse(format!("{prefix}-{i}")).unwrap(),
            campaign_id: Some(CampaignId::parse(format!("campaign-{}", i % tenants)).unwrap()),
            channel: Channel::Sms,
            recipient: format!("+1415555{:04}", i % 10_000),
            priority: Priority::Marketing,
            segments: 1,
            accepted_at: now,
            position: RecordPosition {
                partition: 0,
                offset: i as u64,
            },
        })
        .collect()
}

fn report(what: &str, count: usize, elapsed: Duration) {
    eprintln!(
        "{what}: {count} in {:.2} s = {:.0}/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

/// Runs `statement` once per message with `CONCURRENCY` requests in flight.
async fn raw_inserts(session: &Session, statement: &str, prefix: &str) -> Duration {
    let prepared = session.prepare(statement).await.unwrap();
    let now = scylla::value::CqlTimestamp(OffsetDateTime::now_utc().unix_timestamp() * 1_000);
    let started = Instant::now();
    stream::iter((0..MESSAGES).map(|i| {
        let prepared = &prepared;
        async move {
            let tenant = format!("tenant-{}", i % 10);
            let id = format!("{prefix}-{i}");
            session
                .execute_unpaged(
                    prepared,
                    (
                        tenant,
                        id,
                        "sms",
                        "+14155550100",
                        "marketing",
                        1_i32,
                        "queued",
                        now,
                        now,
                    ),
                )
                .await
                .map(drop)
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await
    .unwrap();
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark against a running Cassandra; prints numbers"]
async fn claims_with_and_without_lwt() {
    let Some(settings) = settings(WriteBatching::ReplicaBatches) else {
        return;
    };
    let store = CassandraStore::open(&settings).await.unwrap();
    let session = session(&settings).await;
    let insert = "INSERT INTO messages (tenant_id, message_id, channel, recipient, priority, segments, status, \
                  accepted_at, at, rank) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)";
    // Warm-up (connections, the node's JIT), not counted.
    raw_inserts(&session, insert, "warm").await;
    let plain = raw_inserts(&session, insert, "plain").await;
    report("message, plain INSERT", MESSAGES, plain);
    let lwt = raw_inserts(&session, &format!("{insert} IF NOT EXISTS"), "lwt").await;
    report("message, INSERT IF NOT EXISTS (LWT)", MESSAGES, lwt);

    let batch = messages("claim", 10);
    let started = Instant::now();
    for chunk in batch.chunks(BATCH) {
        store.claim_messages(chunk).await.unwrap();
    }
    report(
        "claim_messages (blind insert + derived rows), batches of 1000",
        MESSAGES,
        started.elapsed(),
    );
    let ids: Vec<(TenantId, MessageId)> = batch
        .iter()
        .map(|message| (message.tenant_id.clone(), message.message_id.clone()))
        .collect();
    let started = Instant::now();
    for chunk in ids.chunks(BATCH) {
        store.claims(chunk).await.unwrap();
    }
    report(
        "claims read back (what a filter's positive costs), batches of 1000",
        MESSAGES,
        started.elapsed(),
    );
    store.drop_keyspace().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark against a running Cassandra; prints numbers"]
async fn status_writes_batched_and_concurrent() {
    for mode in [WriteBatching::ReplicaBatches, WriteBatching::None] {
        let Some(settings) = settings(mode) else { return };
        let store = CassandraStore::open(&settings).await.unwrap();
        let batch = messages("status", 10);
        for chunk in batch.chunks(BATCH) {
            store.claim_messages(chunk).await.unwrap();
        }
        let now = OffsetDateTime::now_utc();
        let updates: Vec<StatusUpdate> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| StatusUpdate {
                tenant_id: m.tenant_id.clone(),
                message_id: m.message_id.clone(),
                status: MessageStatus::Sent,
                at: now,
                reason: None,
                provider_message_id: Some(format!("SM{i:032}")),
                held: Some(Held {
                    accepted_at: m.accepted_at,
                    campaign_id: m.campaign_id.clone(),
                }),
            })
            .collect();
        let started = Instant::now();
        for chunk in updates.chunks(BATCH) {
            let applied = store.apply_status(chunk).await.unwrap();
            assert!(applied.iter().all(|a| *a));
        }
        report(
            &format!("apply_status sent held (blind insert + derived rows, {mode:?}), batches of 1000"),
            MESSAGES,
            started.elapsed(),
        );
        store.drop_keyspace().await.unwrap();
    }

    // A status row alone: a plain INSERT against a lightweight transaction.
    let Some(settings) = settings(WriteBatching::ReplicaBatches) else {
        return;
    };
    let store = CassandraStore::open(&settings).await.unwrap();
    let session = session(&settings).await;
    let insert = "INSERT INTO messages (tenant_id, message_id, channel, recipient, priority, segments, status, \
                  accepted_at, at, rank) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)";
    raw_inserts(&session, insert, "row").await;
    for (what, statement) in [
        (
            "status row, plain INSERT",
            "INSERT INTO messages (tenant_id, message_id, rank, status) VALUES (?, ?, 2, 'sent')",
        ),
        (
            "status row, INSERT IF NOT EXISTS (LWT)",
            "INSERT INTO messages (tenant_id, message_id, rank, status) VALUES (?, ?, 3, 'delivered') IF NOT EXISTS",
        ),
    ] {
        let prepared = session.prepare(statement).await.unwrap();
        let started = Instant::now();
        stream::iter((0..MESSAGES).map(|i| {
            let (prepared, session) = (&prepared, &session);
            async move {
                session
                    .execute_unpaged(prepared, (format!("tenant-{}", i % 10), format!("row-{i}")))
                    .await
                    .map(drop)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
        report(what, MESSAGES, started.elapsed());
    }

    // Rows derived from status changes (one partition per campaign): one request each against
    // unlogged single-partition batches of 100.
    let prepared = session
        .prepare("INSERT INTO campaign_messages (tenant_id, campaign_id, message_id, status) VALUES (?, ?, ?, 'sent')")
        .await
        .unwrap();
    let started = Instant::now();
    stream::iter((0..MESSAGES).map(|i| {
        let (prepared, session) = (&prepared, &session);
        async move {
            session
                .execute_unpaged(prepared, ("tenant-0", format!("c{}", i % 10), format!("m{i}")))
                .await
                .map(drop)
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await
    .unwrap();
    report("campaign rows, one request each", MESSAGES, started.elapsed());
    let started = Instant::now();
    stream::iter((0..MESSAGES / 100).map(|b| {
        let (prepared, session) = (&prepared, &session);
        async move {
            let mut batch = scylla::statement::batch::Batch::new(scylla::statement::batch::BatchType::Unlogged);
            let campaign = format!("c{}", b % 10);
            let mut values = Vec::with_capacity(100);
            for i in 0..100 {
                batch.append_statement(prepared.clone());
                values.push(("tenant-0", campaign.clone(), format!("b{b}-{i}")));
            }
            session.batch(&batch, values).await.map(drop)
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await
    .unwrap();
    report(
        "campaign rows, single-partition batches of 100",
        MESSAGES,
        started.elapsed(),
    );
    store.drop_keyspace().await.unwrap();
}
