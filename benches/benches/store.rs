//! The SQLite store on the dispatch path: claiming a batch of 1,000 messages, then applying
//! their `sent` (with provider ids) and `delivered` statuses, with `synchronous=FULL`.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::{Duration, Instant};

use common::log::RecordPosition;
use common::store::sqlite::SqliteStore;
use common::store::{Held, MessageStore, NewMessage, StatusUpdate};
use common::{Channel, MessageId, MessageStatus, Priority, TenantId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;

const BATCH: usize = 1_000;

fn batch(round: u64) -> (Vec<NewMessage>, Vec<StatusUpdate>, Vec<StatusUpdate>) {
    let tenant = TenantId::parse("acme").expect("valid");
    let now = OffsetDateTime::now_utc();
    let messages: Vec<NewMessage> = (0..BATCH)
        .map(|n| NewMessage {
            tenant_id: tenant.clone(),
            message_id: MessageId::parse(format!("m{round}-{n}")).expect("valid"),
            campaign_id: None,
            channel: Channel::Sms,
            recipient: format!("+1415555{:04}", n),
            priority: Priority::Marketing,
            segments: 1,
            accepted_at: now,
            position: RecordPosition {
                partition: 0,
                offset: round * BATCH as u64 + n as u64,
            },
        })
        .collect();
    let update = |message: &NewMessage, status, provider_message_id| StatusUpdate {
        tenant_id: tenant.clone(),
        message_id: message.message_id.clone(),
        status,
        at: now,
        reason: None,
        provider_message_id,
        held: Some(Held {
            accepted_at: now,
            campaign_id: None,
        }),
    };
    let sent = messages
        .iter()
        .map(|message| update(message, MessageStatus::Sent, Some(format!("SM{}", message.message_id))))
        .collect();
    let delivered = messages
        .iter()
        .map(|message| update(message, MessageStatus::Delivered, None))
        .collect();
    (messages, sent, delivered)
}

fn dispatch_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = runtime
        .block_on(SqliteStore::open(&dir.path().join("bench.db")))
        .expect("store opens");
    let mut round = 0;
    let mut group = c.benchmark_group("sqlite_store");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    for phase in ["claim", "sent", "delivered"] {
        group.bench_function(format!("{phase}_batch_of_1000"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    round += 1;
                    let (messages, sent, delivered) = batch(round);
                    runtime.block_on(async {
                        let started = Instant::now();
                        store.claim_messages(&messages).await.expect("claim");
                        if phase == "claim" {
                            total += started.elapsed();
                        }
                        let started = Instant::now();
                        store.apply_status(&sent).await.expect("sent");
                        if phase == "sent" {
                            total += started.elapsed();
                        }
                        let started = Instant::now();
                        store.apply_status(&delivered).await.expect("delivered");
                        if phase == "delivered" {
                            total += started.elapsed();
                        }
                    });
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch_path);
criterion_main!(benches);
