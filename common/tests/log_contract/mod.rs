//! The message log's contract, one suite run against every backend (`embedded_log.rs`,
//! `kafka_log.rs`): appends read back in order on the tenant's partition, commits that survive
//! a crash, end offsets, pause and resume, and the other topics.

#![allow(dead_code)] // each test binary uses its own subset of the helpers

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::log::{
    ConsumerEvent, LogConsumer, LogError, MessageLog, OutgoingRecord, Partition, Record, Topic, partition_for,
};

/// Partitions of every topic the harnesses create.
pub(crate) const PARTITIONS: u32 = 4;
/// The longest a test waits for an assignment or for records it expects.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// One backend under test.
pub(crate) trait Harness {
    /// Opens the log; opening again after the previous one was dropped finds the same data.
    fn open(&self) -> impl Future<Output = Arc<dyn MessageLog>>;
    /// How long a poll waits before the test concludes that nothing more is coming.
    fn quiet(&self) -> Duration;
}

pub(crate) fn record(tenant: &str, n: usize) -> OutgoingRecord {
    OutgoingRecord {
        key: tenant.as_bytes().to_vec(),
        payload: format!("{tenant}:{n}").into_bytes(),
    }
}

pub(crate) async fn append_all(log: &dyn MessageLog, tenants: &[&str], per_tenant: usize) {
    for n in 0..per_tenant {
        let records = tenants.iter().map(|tenant| record(tenant, n)).collect();
        log.append(Topic::Messages, records).await.unwrap();
    }
}

/// Joins `group` and waits for the first assignment.
pub(crate) async fn join(log: &dyn MessageLog, topic: Topic, group: &str) -> (Box<dyn LogConsumer>, Vec<Partition>) {
    let mut consumer = log.consumer(topic, group).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match consumer.poll(100, Duration::from_millis(500)).await.unwrap() {
            ConsumerEvent::Assigned(partitions) => return (consumer, partitions),
            ConsumerEvent::Records(records) => assert!(records.is_empty(), "records before an assignment"),
            ConsumerEvent::Revoked(partitions) => panic!("revoked {partitions:?} before an assignment"),
        }
        assert!(Instant::now() < deadline, "no assignment within {PATIENCE:?}");
    }
}

/// Polls until one poll of `quiet` brings nothing, returning what was read.
pub(crate) async fn drain(consumer: &mut dyn LogConsumer, quiet: Duration) -> Vec<Record> {
    let mut records = Vec::new();
    loop {
        match consumer.poll(500, quiet).await.unwrap() {
            ConsumerEvent::Records(batch) if batch.is_empty() => return records,
            ConsumerEvent::Records(batch) => records.extend(batch),
            ConsumerEvent::Assigned(_) | ConsumerEvent::Revoked(_) => {}
        }
    }
}

/// Polls until a batch of records arrives.
pub(crate) async fn next_records(consumer: &mut dyn LogConsumer, max: usize) -> Vec<Record> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let ConsumerEvent::Records(batch) = consumer.poll(max, Duration::from_millis(500)).await.unwrap()
            && !batch.is_empty()
        {
            return batch;
        }
        assert!(Instant::now() < deadline, "no records within {PATIENCE:?}");
    }
}

pub(crate) fn payloads(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .map(|record| String::from_utf8(record.payload.clone()).unwrap())
        .collect()
}

pub(crate) fn next_offsets(records: &[Record]) -> Vec<(Partition, u64)> {
    let mut next = BTreeMap::new();
    for record in records {
        next.insert(record.partition, record.offset + 1);
    }
    next.into_iter().collect()
}

fn sequence(record: &Record) -> usize {
    String::from_utf8_lossy(&record.payload)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) async fn appends_are_read_back_in_order_per_partition(harness: &impl Harness) {
    let log = harness.open().await;
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli"];
    append_all(log.as_ref(), &tenants, 50).await;

    let (mut consumer, assigned) = join(log.as_ref(), Topic::Messages, "dispatchers").await;
    assert_eq!(assigned, vec![0, 1, 2, 3]);
    let records = drain(consumer.as_mut(), harness.quiet()).await;
    assert_eq!(records.len(), 250);
    assert_eq!(payloads(&records).len(), 250, "each record exactly once");
    for tenant in tenants {
        let mine: Vec<&Record> = records
            .iter()
            .filter(|record| record.key == tenant.as_bytes())
            .collect();
        let seen: Vec<usize> = mine.iter().map(|record| sequence(record)).collect();
        assert_eq!(seen, (0..50).collect::<Vec<_>>(), "{tenant} in order");
        let partitions: BTreeSet<_> = mine.iter().map(|record| record.partition).collect();
        assert_eq!(
            partitions,
            BTreeSet::from([partition_for(tenant.as_bytes(), PARTITIONS)]),
            "a tenant lives on the one partition of partition_for(tenant)"
        );
        let offsets: Vec<u64> = mine.iter().map(|record| record.offset).collect();
        assert!(offsets.is_sorted(), "{tenant}: offsets ascend");
    }
    assert!(records.iter().all(|record| record.timestamp_ms > 1_600_000_000_000));
}

pub(crate) async fn a_crash_loses_nothing_and_resumes_after_the_committed_offset(harness: &impl Harness) {
    let tenants = ["acme", "globex", "initech"];
    let committed_payloads;
    {
        let log = harness.open().await;
        append_all(log.as_ref(), &tenants, 40).await;
        let (mut consumer, _) = join(log.as_ref(), Topic::Messages, "dispatchers").await;
        let first = next_records(consumer.as_mut(), 30).await;
        assert!(first.len() <= 30);
        consumer.commit(&next_offsets(&first)).await.unwrap();
        committed_payloads = payloads(&first);
        append_all(log.as_ref(), &["late"], 5).await;
        // No shutdown: the consumer and the log are dropped as a crash would leave them.
    }
    let log = harness.open().await;
    let (mut consumer, _) = join(log.as_ref(), Topic::Messages, "dispatchers").await;
    let after = drain(consumer.as_mut(), harness.quiet()).await;
    let after_payloads = payloads(&after);
    assert_eq!(after.len(), after_payloads.len(), "no record twice");
    assert!(
        after_payloads.is_disjoint(&committed_payloads),
        "nothing committed comes back"
    );
    assert_eq!(
        after.len() + committed_payloads.len(),
        125,
        "every appended record is there"
    );
}

pub(crate) async fn end_offsets_follow_appends(harness: &impl Harness) {
    let log = harness.open().await;
    let (mut consumer, _) = join(log.as_ref(), Topic::Messages, "g").await;
    let tenants = ["acme", "globex", "initech", "umbrella"];
    append_all(log.as_ref(), &tenants, 7).await;
    let mut expected: BTreeMap<Partition, u64> = (0..PARTITIONS).map(|partition| (partition, 0)).collect();
    for tenant in tenants {
        *expected.get_mut(&partition_for(tenant.as_bytes(), PARTITIONS)).unwrap() += 7;
    }
    let ends: BTreeMap<Partition, u64> = consumer.end_offsets().await.unwrap().into_iter().collect();
    assert_eq!(ends, expected);
    let records = drain(consumer.as_mut(), harness.quiet()).await;
    assert_eq!(records.len(), 28);
    consumer.commit(&next_offsets(&records)).await.unwrap();
    assert!(matches!(
        consumer.commit(&[(PARTITIONS + 5, 1)]).await,
        Err(LogError::NotAssigned(partition)) if partition == PARTITIONS + 5
    ));
}

pub(crate) async fn a_waiting_poll_wakes_on_append_and_paused_partitions_wait(harness: &impl Harness) {
    let log = harness.open().await;
    let (mut consumer, _) = join(log.as_ref(), Topic::Messages, "g").await;
    let partition = partition_for(b"acme", PARTITIONS);
    consumer.pause(&[partition]);
    append_all(log.as_ref(), &["acme"], 3).await;
    assert_eq!(
        consumer.poll(10, harness.quiet()).await.unwrap(),
        ConsumerEvent::Records(Vec::new()),
        "a paused partition gives nothing"
    );
    consumer.resume(&[partition]);
    let mut records = next_records(consumer.as_mut(), 10).await;
    while records.len() < 3 {
        records.extend(next_records(consumer.as_mut(), 10).await);
    }
    assert_eq!(records.len(), 3, "resumed partitions are read again");
    assert_eq!(records[0].offset, 0, "from where they stopped");
    let appender = Arc::clone(&log);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        append_all(appender.as_ref(), &["acme"], 1).await;
    });
    let started = Instant::now();
    let ConsumerEvent::Records(records) = consumer.poll(10, Duration::from_secs(30)).await.unwrap() else {
        panic!("records expected")
    };
    assert_eq!(records.len(), 1, "a waiting poll returns the new record");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "at once, not at the end of the wait"
    );
}

pub(crate) async fn dead_letters_and_status_events_are_topics_of_their_own(harness: &impl Harness) {
    let log = harness.open().await;
    log.append(Topic::DeadLetters, vec![record("acme", 1)]).await.unwrap();
    log.append(Topic::StatusEvents, vec![record("acme", 2), record("globex", 3)])
        .await
        .unwrap();
    let (mut messages, _) = join(log.as_ref(), Topic::Messages, "g").await;
    assert!(drain(messages.as_mut(), harness.quiet()).await.is_empty());
    let (mut dead, _) = join(log.as_ref(), Topic::DeadLetters, "ops").await;
    assert_eq!(
        payloads(&drain(dead.as_mut(), harness.quiet()).await),
        payloads_of(&["acme:1"])
    );
    let (mut status, _) = join(log.as_ref(), Topic::StatusEvents, "ops").await;
    assert_eq!(
        payloads(&drain(status.as_mut(), harness.quiet()).await),
        payloads_of(&["acme:2", "globex:3"])
    );
    for topic in Topic::ALL {
        assert_eq!(log.partitions(topic), PARTITIONS);
    }
}

fn payloads_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}
