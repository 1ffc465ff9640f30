//! Status-batch encoding: a batch of 1,000 status changes as the status-events topic's
//! records (JSON, keyed by tenant), what the status writer publishes after each durable write.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use common::store::StatusUpdate;
use common::{MessageId, MessageStatus, TenantId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatcher::status::event_records;
use time::OffsetDateTime;

const BATCH: usize = 1_000;

fn batch() -> Vec<StatusUpdate> {
    let now = OffsetDateTime::now_utc();
    (0..BATCH)
        .map(|n| StatusUpdate {
            tenant_id: TenantId::parse(format!("tenant-{}", n % 8)).expect("valid"),
            message_id: MessageId::parse(format!("01JD7Q3M8Z8Y2V6W5T4S3R{n:05}")).expect("valid"),
            status: if n % 2 == 0 {
                MessageStatus::Sent
            } else {
                MessageStatus::Delivered
            },
            at: now,
            reason: None,
            provider_message_id: Some(format!("SM{n:032x}")),
            held: None,
        })
        .collect()
}

fn encoding(c: &mut Criterion) {
    let updates = batch();
    let mut group = c.benchmark_group("status_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("encode_1000_status_events", |b| {
        b.iter(|| black_box(event_records(black_box(&updates))));
    });
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
