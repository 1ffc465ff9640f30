//! The embedded message log against its contract: durable appends, per-partition order,
//! committed offsets that survive a crash, torn tails, segment rolling and retention.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::log::embedded::{EmbeddedLog, EmbeddedLogOptions};
use common::log::{ConsumerEvent, LogConsumer, LogError, MessageLog, OutgoingRecord, Partition, Record, Topic};

const WAIT: Duration = Duration::from_millis(200);

fn options(segment_bytes: u64) -> EmbeddedLogOptions {
    EmbeddedLogOptions {
        partitions: 4,
        segment_bytes,
    }
}

fn record(tenant: &str, n: usize) -> OutgoingRecord {
    OutgoingRecord {
        key: tenant.as_bytes().to_vec(),
        payload: format!("{tenant}:{n}").into_bytes(),
    }
}

async fn append_all(log: &EmbeddedLog, tenants: &[&str], per_tenant: usize) {
    for n in 0..per_tenant {
        let records = tenants.iter().map(|tenant| record(tenant, n)).collect();
        log.append(Topic::Messages, records).await.unwrap();
    }
}

/// Polls until no record arrives within one wait, returning what was read.
async fn drain(consumer: &mut dyn LogConsumer) -> Vec<Record> {
    let mut records = Vec::new();
    loop {
        match consumer.poll(500, WAIT).await.unwrap() {
            ConsumerEvent::Records(batch) if batch.is_empty() => return records,
            ConsumerEvent::Records(batch) => records.extend(batch),
            ConsumerEvent::Assigned(_) | ConsumerEvent::Revoked(_) => {}
        }
    }
}

fn payloads(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .map(|record| String::from_utf8(record.payload.clone()).unwrap())
        .collect()
}

fn next_offsets(records: &[Record]) -> Vec<(Partition, u64)> {
    let mut next = BTreeMap::new();
    for record in records {
        next.insert(record.partition, record.offset + 1);
    }
    next.into_iter().collect()
}

#[tokio::test]
async fn appends_are_read_back_in_order_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap();
    let tenants = ["acme", "globex", "initech", "umbrella", "hooli"];
    append_all(&log, &tenants, 50).await;

    let mut consumer = log.consumer(Topic::Messages, "dispatchers").await.unwrap();
    assert_eq!(
        consumer.poll(10, WAIT).await.unwrap(),
        ConsumerEvent::Assigned(vec![0, 1, 2, 3])
    );
    let records = drain(consumer.as_mut()).await;
    assert_eq!(records.len(), 250);
    assert_eq!(payloads(&records).len(), 250, "each record exactly once");
    for tenant in tenants {
        let seen: Vec<usize> = records
            .iter()
            .filter(|record| record.key == tenant.as_bytes())
            .map(|record| {
                String::from_utf8_lossy(&record.payload)
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(seen, (0..50).collect::<Vec<_>>(), "{tenant} in order");
        let partitions: BTreeSet<_> = records
            .iter()
            .filter(|record| record.key == tenant.as_bytes())
            .map(|record| record.partition)
            .collect();
        assert_eq!(partitions.len(), 1, "a tenant lives on one partition");
    }
}

#[tokio::test]
async fn a_crash_loses_nothing_and_resumes_after_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = ["acme", "globex", "initech"];
    let committed_payloads;
    {
        let log = EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap();
        append_all(&log, &tenants, 40).await;
        let mut consumer = log.consumer(Topic::Messages, "dispatchers").await.unwrap();
        let _assigned = consumer.poll(10, WAIT).await.unwrap();
        let ConsumerEvent::Records(first) = consumer.poll(30, WAIT).await.unwrap() else {
            panic!("records expected")
        };
        assert!(!first.is_empty());
        consumer.commit(&next_offsets(&first)).await.unwrap();
        committed_payloads = payloads(&first);
        append_all(&log, &["late"], 5).await;
        // No shutdown: the consumer and the log are dropped as a crash would leave them.
    }
    let log = EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap();
    let mut consumer = log.consumer(Topic::Messages, "dispatchers").await.unwrap();
    let after = drain(consumer.as_mut()).await;
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

#[tokio::test]
async fn a_torn_write_is_cut_off_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap();
        append_all(&log, &["acme"], 10).await;
    }
    let partition = common::log::partition_for(b"acme", 4);
    let segment = dir
        .path()
        .join("messages")
        .join(partition.to_string())
        .join(format!("{:020}.seg", 0));
    let mut file = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[42, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(file);

    let log = EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap();
    let positions = log.append(Topic::Messages, vec![record("acme", 10)]).await.unwrap();
    assert_eq!(positions[0].offset, 10, "the torn frame took no offset");
    let mut consumer = log.consumer(Topic::Messages, "g").await.unwrap();
    let records = drain(consumer.as_mut()).await;
    let offsets: Vec<u64> = records.iter().map(|record| record.offset).collect();
    assert_eq!(offsets, (0..=10).collect::<Vec<_>>());
}

fn segment_count(dir: &Path, partition: Partition) -> usize {
    std::fs::read_dir(dir.join("messages").join(partition.to_string()))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "seg")
        })
        .count()
}

#[tokio::test]
async fn segments_roll_and_consumed_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &options(4096)).unwrap();
    let partition = common::log::partition_for(b"acme", 4);
    append_all(&log, &["acme"], 400).await;
    assert!(segment_count(dir.path(), partition) > 3, "small segments roll");

    let mut consumer = log.consumer(Topic::Messages, "g").await.unwrap();
    let records = drain(consumer.as_mut()).await;
    assert_eq!(records.len(), 400, "reading crosses segment boundaries");
    consumer.commit(&next_offsets(&records)).await.unwrap();
    append_all(&log, &["acme"], 200).await;
    assert!(
        segment_count(dir.path(), partition) <= 5,
        "consumed segments are deleted"
    );
    let rest = drain(consumer.as_mut()).await;
    assert_eq!(rest.first().map(|record| record.offset), Some(400));
    assert_eq!(rest.len(), 200);
}

#[tokio::test]
async fn one_consumer_per_group_and_one_process_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap();
    let first = log.consumer(Topic::Messages, "g").await.unwrap();
    assert!(matches!(
        log.consumer(Topic::Messages, "g").await,
        Err(LogError::GroupBusy { .. })
    ));
    assert!(log.consumer(Topic::Messages, "other").await.is_ok());
    drop(first);
    assert!(log.consumer(Topic::Messages, "g").await.is_ok());
    assert!(matches!(
        EmbeddedLog::open(dir.path(), &options(1 << 20)),
        Err(LogError::Locked(_))
    ));
}

#[tokio::test]
async fn a_waiting_poll_wakes_on_append_and_paused_partitions_wait() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap());
    let mut consumer = log.consumer(Topic::Messages, "g").await.unwrap();
    let _assigned = consumer.poll(10, WAIT).await.unwrap();
    let partition = common::log::partition_for(b"acme", 4);
    consumer.pause(&[partition]);
    append_all(&log, &["acme"], 3).await;
    assert_eq!(
        consumer.poll(10, WAIT).await.unwrap(),
        ConsumerEvent::Records(Vec::new())
    );
    consumer.resume(&[partition]);
    let ConsumerEvent::Records(records) = consumer.poll(10, WAIT).await.unwrap() else {
        panic!("records expected")
    };
    assert_eq!(records.len(), 3, "resumed partitions are read again");
    let appender = std::sync::Arc::clone(&log);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        append_all(&appender, &["acme"], 1).await;
    });
    let ConsumerEvent::Records(records) = consumer.poll(10, Duration::from_secs(30)).await.unwrap() else {
        panic!("records expected")
    };
    assert_eq!(records.len(), 1, "a waiting poll returns the new record");
}

#[tokio::test]
async fn dead_letters_are_a_topic_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path(), &options(1 << 20)).unwrap();
    log.append(Topic::DeadLetters, vec![record("acme", 1)]).await.unwrap();
    let mut messages = log.consumer(Topic::Messages, "g").await.unwrap();
    assert!(drain(messages.as_mut()).await.is_empty());
    let mut dead = log.consumer(Topic::DeadLetters, "ops").await.unwrap();
    assert_eq!(drain(dead.as_mut()).await.len(), 1);
    assert_eq!(log.partitions(Topic::DeadLetters), 4);
}
