//! The embedded message log: the log contract (`log_contract`, shared with the Kafka log), and
//! what only files have: torn tails, segment rolling and retention, one consumer per group and
//! one process per directory.

mod log_contract;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::log::embedded::{EmbeddedLog, EmbeddedLogOptions};
use common::log::{LogConsumer, LogError, MessageLog, Partition, Record, Topic};
use log_contract::{Harness, PARTITIONS, append_all, next_offsets, record};

const WAIT: Duration = Duration::from_millis(200);

fn options(segment_bytes: u64) -> EmbeddedLogOptions {
    EmbeddedLogOptions {
        partitions: PARTITIONS,
        segment_bytes,
    }
}

/// The embedded log in a temporary directory.
struct Embedded {
    dir: tempfile::TempDir,
}

impl Embedded {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Harness for Embedded {
    async fn open(&self) -> Arc<dyn MessageLog> {
        Arc::new(EmbeddedLog::open(self.dir.path(), &options(1 << 20)).unwrap())
    }

    fn quiet(&self) -> Duration {
        WAIT
    }
}

async fn drain(consumer: &mut dyn LogConsumer) -> Vec<Record> {
    log_contract::drain(consumer, WAIT).await
}

#[tokio::test]
async fn appends_are_read_back_in_order_per_partition() {
    log_contract::appends_are_read_back_in_order_per_partition(&Embedded::new()).await;
}

#[tokio::test]
async fn a_crash_loses_nothing_and_resumes_after_the_committed_offset() {
    log_contract::a_crash_loses_nothing_and_resumes_after_the_committed_offset(&Embedded::new()).await;
}

#[tokio::test]
async fn end_offsets_follow_appends() {
    log_contract::end_offsets_follow_appends(&Embedded::new()).await;
}

#[tokio::test]
async fn a_waiting_poll_wakes_on_append_and_paused_partitions_wait() {
    log_contract::a_waiting_poll_wakes_on_append_and_paused_partitions_wait(&Embedded::new()).await;
}

#[tokio::test]
async fn dead_letters_and_status_events_are_topics_of_their_own() {
    log_contract::dead_letters_and_status_events_are_topics_of_their_own(&Embedded::new()).await;
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
