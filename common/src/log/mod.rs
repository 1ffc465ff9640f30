//! The message log seam: a partitioned, offset-based, durable log of records, Kafka-shaped.
//!
//! Producers append records keyed by tenant, so one tenant's records share one partition and
//! the partition's single owner sees them in order. Consumers belong to a group, receive an
//! assignment of partitions (and, with Kafka, rebalances), poll records and commit, per
//! partition, the next offset to read once everything before it is durable downstream.
//!
//! Implementations: [`embedded::EmbeddedLog`] (segment files on local disk, group commit) and
//! [`kafka::KafkaLog`] (Apache Kafka through librdkafka).

pub mod embedded;
pub mod kafka;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::TenantId;

/// A partition number within a topic.
pub type Partition = u32;
/// A record's position within its partition; the first record has offset 0.
pub type Offset = u64;

/// The log's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Message envelopes to dispatch, keyed by tenant.
    Messages,
    /// Records that could not be parsed, with the reason, for an operator.
    DeadLetters,
    /// Status changes of messages, for consumers outside the dispatcher.
    StatusEvents,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 3] = [Topic::Messages, Topic::DeadLetters, Topic::StatusEvents];

    /// The topic's default name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Messages => "messages",
            Topic::DeadLetters => "dead-letters",
            Topic::StatusEvents => "status-events",
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    /// The partitioning key (the tenant id for messages).
    pub key: Vec<u8>,
    /// The record's bytes.
    pub payload: Vec<u8>,
}

impl OutgoingRecord {
    /// A record of `tenant`'s, keyed by its id: the key every message-log topic is partitioned by.
    pub fn for_tenant(tenant: &TenantId, payload: Vec<u8>) -> Self {
        Self {
            key: tenant.as_str().as_bytes().to_vec(),
            payload,
        }
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The partition it is in.
    pub partition: Partition,
    /// Its offset within the partition.
    pub offset: Offset,
    /// When it was appended, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Its partitioning key.
    pub key: Vec<u8>,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// Its partition.
    pub partition: Partition,
    /// Its offset.
    pub offset: Offset,
}

impl RecordPosition {
    /// The position claims are made under by no record at all (messages imported, or canceled
    /// before they reached the log): no log has this partition, so no record is ever taken for
    /// the claim's own, and a record with one of their ids is a duplicate.
    pub const OFF_LOG: RecordPosition = RecordPosition {
        partition: i32::MAX as u32,
        offset: 0,
    };
}

/// What one poll of a consumer brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// These partitions are now this consumer's; reading resumes at their committed offsets.
    Assigned(Vec<Partition>),
    /// These partitions are no longer this consumer's: stop taking their work, commit what is
    /// durable.
    Revoked(Vec<Partition>),
    /// Records, in offset order within each partition; empty when the wait ran out.
    Records(Vec<Record>),
}

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading or writing the log's files failed.
    #[error("message log i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A record failed its checksum below the durable end of a partition.
    #[error("message log corrupt in {topic} partition {partition} at offset {offset}")]
    Corrupt {
        /// The topic.
        topic: Topic,
        /// The partition.
        partition: Partition,
        /// The offset of the bad record.
        offset: Offset,
    },
    /// Another consumer of the same group already holds the topic.
    #[error("consumer group {group} already has a consumer on {topic}")]
    GroupBusy {
        /// The group.
        group: String,
        /// The topic.
        topic: Topic,
    },
    /// Another process holds the log's directory.
    #[error("message log directory {0} is in use by another process")]
    Locked(String),
    /// An earlier write failed; the log refuses writes until reopened.
    #[error("message log is failed after an earlier write error; restart to recover")]
    Failed,
    /// The log has been closed.
    #[error("message log is closed")]
    Closed,
    /// A committed offset names a partition the consumer does not hold.
    #[error("partition {0} is not assigned to this consumer")]
    NotAssigned(Partition),
    /// The Kafka client failed (connection, configuration, delivery, commit).
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A Kafka topic could not be created or described.
    #[error("kafka topic {topic}: {reason}")]
    KafkaTopic {
        /// The topic's full name.
        topic: String,
        /// What went wrong.
        reason: String,
    },
}

/// A partitioned, offset-based, durable log.
#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// The number of partitions of `topic`.
    fn partitions(&self, topic: Topic) -> u32;

    /// Appends records, each to the partition of its key. Once this returns `Ok`, the records
    /// survive a crash of the process or the machine.
    async fn append(&self, topic: Topic, records: Vec<OutgoingRecord>) -> Result<Vec<RecordPosition>, LogError>;

    /// Joins `group` as a consumer of `topic`.
    async fn consumer(&self, topic: Topic, group: &str) -> Result<Box<dyn LogConsumer>, LogError>;

    /// Why the log can take no more appends, if it cannot (a write or fsync failed, the disk
    /// is full); readiness reports it.
    fn broken(&self) -> Option<String> {
        None
    }
}

/// One member of a consumer group.
#[async_trait]
pub trait LogConsumer: Send {
    /// Waits up to `wait` for the next event; at most `max_records` records per call.
    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<ConsumerEvent, LogError>;

    /// Commits, for each partition, the next offset to read after a restart or rebalance.
    async fn commit(&mut self, offsets: &[(Partition, Offset)]) -> Result<(), LogError>;

    /// The offset after the last record of each assigned partition (for consumer lag).
    async fn end_offsets(&mut self) -> Result<Vec<(Partition, Offset)>, LogError>;

    /// Stops returning records of these partitions until resumed (backpressure).
    fn pause(&mut self, partitions: &[Partition]);

    /// Returns records of these partitions again.
    fn resume(&mut self, partitions: &[Partition]);
}

/// The partition of `key` among `partitions`: Kafka's default partitioner for keyed records
/// (murmur2 of the key, sign bit cleared, modulo the count; librdkafka's `murmur2_random`), so
/// the embedded log, the admin API and any campaign service producing with its Kafka client's
/// defaults (Java, Kafka Streams, Spring, kafka-python, librdkafka) put a tenant on the same
/// partition.
pub fn partition_for(key: &[u8], partitions: u32) -> Partition {
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff;
    hash % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors for `Utils.murmur2` (clients' `UtilsTest.testMurmur2`).
    #[test]
    fn the_hash_is_kafkas_murmur2() {
        let vectors: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ];
        for (key, expected) in vectors {
            let hash = murmur2::murmur2(key.as_bytes(), murmur2::KAFKA_SEED);
            assert_eq!(hash as i32, expected, "{key}");
        }
    }

    /// `Utils.toPositive(murmur2(key)) % partitions`, as Kafka's `BuiltInPartitioner` places a
    /// keyed record.
    #[test]
    fn a_key_is_placed_as_kafka_places_it() {
        // 479470107 % 8 = 3; -790332482 & 0x7fffffff = 1357151166, % 8 = 6.
        assert_eq!(partition_for(b"abc", 8), 3);
        assert_eq!(partition_for(b"foobar", 8), 6);
        assert_eq!(partition_for(b"foobar", 0), 0, "no partitions counts as one");
    }
}
