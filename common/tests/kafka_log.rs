//! The Kafka message log against a real broker: the log contract (`log_contract`, shared with
//! the embedded log), and what only a consumer group has: partitions split between members,
//! revoked from one and assigned to the other, handed over when a member leaves, nothing lost.
//!
//! The broker's address comes from `ENGAGENINJA_KAFKA_BOOTSTRAP` (`.ci/test` starts one with
//! `.ci/services/kafka.sh start`). Unset: the tests are skipped, except under `CI`, where they
//! fail. Every test uses topics of its own (a unique prefix).

mod log_contract;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::config::{KafkaSettings, LogBackend, Settings};
use common::log::{ConsumerEvent, LogConsumer, MessageLog, OutgoingRecord, Partition, Record, Topic};
use log_contract::{Harness, PARTITIONS, PATIENCE, append_all, drain, join, payloads};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

const BOOTSTRAP_VAR: &str = "ENGAGENINJA_KAFKA_BOOTSTRAP";

/// A Kafka log on topics of its own.
struct Kafka {
    settings: Settings,
}

impl Kafka {
    /// The harness for `test`, or `None` (with the reason on stderr) when no broker is given.
    fn new(test: &str) -> Option<Self> {
        let bootstrap = match std::env::var(BOOTSTRAP_VAR) {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => bootstrap,
            _ if std::env::var_os("CI").is_some() => panic!(
                "{BOOTSTRAP_VAR} is not set but CI is: the Kafka tests must run in CI; \
                 .ci/test starts Kafka with .ci/services/kafka.sh start and exports it"
            ),
            _ => {
                // Straight to stderr: libtest captures `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping kafka_log::{test}: {BOOTSTRAP_VAR} is not set (start a broker with \
                     `.ci/services/kafka.sh start` and export {BOOTSTRAP_VAR}=127.0.0.1:19092)"
                );
                return None;
            }
        };
        Some(Self::with(bootstrap, test, KafkaSettings::default()))
    }

    fn with(bootstrap: String, test: &str, kafka: KafkaSettings) -> Self {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "{}-{}-{}",
            std::process::id(),
            time_ms(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut settings = Settings::default();
        settings.log.backend = LogBackend::Kafka;
        settings.log.partitions = PARTITIONS;
        settings.log.kafka = KafkaSettings {
            bootstrap_servers: bootstrap,
            topic_prefix: format!("test.{}.{unique}.", test.replace('_', "-")),
            ..kafka
        };
        Self { settings }
    }
}

/// Deletes the test's topics, so that the broker does not pile up topics run after run.
impl Drop for Kafka {
    fn drop(&mut self) {
        let kafka = self.settings.log.kafka.clone();
        let names: Vec<String> = Topic::ALL
            .iter()
            .map(|topic| format!("{}{}", kafka.topic_prefix, topic.name()))
            .collect();
        // Its own thread and runtime: a drop cannot await, and may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", &kafka.bootstrap_servers)
                    .create()
                    .unwrap();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                let _ = admin.delete_topics(&names, &options).await;
            });
        })
        .join();
    }
}

fn time_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

impl Harness for Kafka {
    async fn open(&self) -> Arc<dyn MessageLog> {
        common::backends::open_log(&self.settings).await.unwrap()
    }

    fn quiet(&self) -> Duration {
        Duration::from_secs(2)
    }
}

#[tokio::test]
async fn appends_are_read_back_in_order_per_partition() {
    if let Some(kafka) = Kafka::new("in-order") {
        log_contract::appends_are_read_back_in_order_per_partition(&kafka).await;
    }
}

#[tokio::test]
async fn a_crash_loses_nothing_and_resumes_after_the_committed_offset() {
    if let Some(kafka) = Kafka::new("crash") {
        log_contract::a_crash_loses_nothing_and_resumes_after_the_committed_offset(&kafka).await;
    }
}

#[tokio::test]
async fn end_offsets_follow_appends() {
    if let Some(kafka) = Kafka::new("end-offsets") {
        log_contract::end_offsets_follow_appends(&kafka).await;
    }
}

#[tokio::test]
async fn a_waiting_poll_wakes_on_append_and_paused_partitions_wait() {
    if let Some(kafka) = Kafka::new("pause") {
        log_contract::a_waiting_poll_wakes_on_append_and_paused_partitions_wait(&kafka).await;
    }
}

#[tokio::test]
async fn dead_letters_and_status_events_are_topics_of_their_own() {
    if let Some(kafka) = Kafka::new("topics") {
        log_contract::dead_letters_and_status_events_are_topics_of_their_own(&kafka).await;
    }
}

#[tokio::test]
async fn existing_topics_keep_their_partition_count() {
    let Some(kafka) = Kafka::new("existing") else { return };
    let first = kafka.open().await;
    let mut more = Kafka {
        settings: kafka.settings.clone(),
    };
    more.settings.log.partitions = PARTITIONS * 2;
    let again = more.open().await;
    assert_eq!(first.partitions(Topic::Messages), PARTITIONS);
    assert_eq!(
        again.partitions(Topic::Messages),
        PARTITIONS,
        "what the cluster has wins"
    );
}

/// Records produced by Kafka's own Java client with its default partitioner (the console
/// producer, keyed by tenant) land where `partition_for` and the log's own appends put the same
/// tenant: a campaign service producing with its client's defaults reaches the tenant's owner.
#[tokio::test]
async fn a_plain_kafka_client_places_a_tenant_where_the_log_does() {
    let Some(kafka) = Kafka::new("partitioner") else { return };
    let log = kafka.open().await;
    let tenants: Vec<String> = (0..24).map(|n| format!("tenant-{n}")).collect();
    let topic = format!("{}{}", kafka.settings.log.kafka.topic_prefix, Topic::Messages.name());
    let lines: String = tenants.iter().map(|tenant| format!("{tenant}|java\n")).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/services/kafka.sh");
    let produced = tokio::task::spawn_blocking({
        let bootstrap = kafka.settings.log.kafka.bootstrap_servers.clone();
        move || {
            let mut child = std::process::Command::new(script)
                .args(["tool", "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server"])
                .arg(&bootstrap)
                .args([
                    "--topic",
                    &topic,
                    "--reader-property",
                    "parse.key=true",
                    "--reader-property",
                ])
                .arg("key.separator=|")
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("the Kafka tools run (.ci/services/kafka.sh)");
            child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
            child.wait().unwrap()
        }
    })
    .await
    .unwrap();
    assert!(produced.success(), "the console producer failed: {produced}");
    let ours = tenants
        .iter()
        .map(|tenant| OutgoingRecord {
            key: tenant.as_bytes().to_vec(),
            payload: b"ours".to_vec(),
        })
        .collect();
    log.append(Topic::Messages, ours).await.unwrap();

    let (mut consumer, _) = join(log.as_ref(), Topic::Messages, "partitioner").await;
    let deadline = Instant::now() + PATIENCE;
    let mut read = Vec::new();
    while read.len() < tenants.len() * 2 {
        assert!(
            Instant::now() < deadline,
            "read {} of {} records",
            read.len(),
            tenants.len() * 2
        );
        read.extend(drain(consumer.as_mut(), kafka.quiet()).await);
    }
    let mut placed: BTreeMap<(String, String), Partition> = BTreeMap::new();
    for record in read {
        let key = String::from_utf8(record.key).unwrap();
        let by = String::from_utf8(record.payload).unwrap();
        placed.insert((key, by), record.partition);
    }
    for tenant in &tenants {
        let expected = common::log::partition_for(tenant.as_bytes(), PARTITIONS);
        assert_eq!(
            placed[&(tenant.clone(), "java".to_owned())],
            expected,
            "{tenant} by the Java client"
        );
        assert_eq!(
            placed[&(tenant.clone(), "ours".to_owned())],
            expected,
            "{tenant} by the log"
        );
    }
}

/// One group member's view: what it owns and what it read.
#[derive(Default)]
struct Member {
    owned: BTreeSet<Partition>,
    revoked: Vec<Partition>,
    read: Vec<Record>,
}

impl Member {
    fn take(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Assigned(partitions) => self.owned.extend(partitions),
            ConsumerEvent::Revoked(partitions) => {
                for partition in &partitions {
                    assert!(
                        self.owned.remove(partition),
                        "revoked {partition}, which it did not own"
                    );
                }
                self.revoked.extend(partitions);
            }
            ConsumerEvent::Records(records) => {
                for record in &records {
                    assert!(
                        self.owned.contains(&record.partition),
                        "a record of a partition it does not own"
                    );
                }
                self.read.extend(records);
            }
        }
    }
}

async fn poll(consumer: &mut dyn LogConsumer) -> ConsumerEvent {
    consumer.poll(500, Duration::from_millis(200)).await.unwrap()
}

#[tokio::test]
async fn two_consumers_split_the_partitions_and_a_leaver_hands_its_own_over() {
    let Some(kafka) = Kafka::new("group") else { return };
    let log = kafka.open().await;
    let tenants: Vec<String> = (0..16).map(|n| format!("tenant-{n}")).collect();
    let tenant_refs: Vec<&str> = tenants.iter().map(String::as_str).collect();
    append_all(log.as_ref(), &tenant_refs, 50).await;
    let ends: BTreeMap<Partition, u64> = {
        let (mut probe, _) = join(log.as_ref(), Topic::Messages, "probe").await;
        probe.end_offsets().await.unwrap().into_iter().collect()
    };
    assert_eq!(ends.len(), PARTITIONS as usize);
    assert!(
        ends.values().all(|end| *end > 0),
        "every partition has records: {ends:?}"
    );

    // A owns everything, reads everything, and commits half of each partition: the rest is
    // still in flight when B arrives.
    let mut a = Member::default();
    let (mut consumer_a, assigned) = join(log.as_ref(), Topic::Messages, "dispatchers").await;
    a.take(ConsumerEvent::Assigned(assigned));
    assert_eq!(a.owned.len(), PARTITIONS as usize);
    for record in drain(consumer_a.as_mut(), kafka.quiet()).await {
        a.take(ConsumerEvent::Records(vec![record]));
    }
    assert_eq!(a.read.len(), 800);
    let mut committed: BTreeMap<Partition, u64> = ends.iter().map(|(partition, end)| (*partition, end / 2)).collect();
    consumer_a
        .commit(&committed.iter().map(|(p, o)| (*p, *o)).collect::<Vec<_>>())
        .await
        .unwrap();

    // B joins: both poll (A must, for its revocation to complete) until the group settles
    // with the partitions split.
    let mut b = Member::default();
    let mut consumer_b = log.consumer(Topic::Messages, "dispatchers").await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while b.owned.is_empty() || a.owned.len() + b.owned.len() != PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "the group did not settle: a {:?} b {:?}",
            a.owned,
            b.owned
        );
        let (event_a, event_b) = tokio::join!(poll(consumer_a.as_mut()), poll(consumer_b.as_mut()));
        if let ConsumerEvent::Revoked(partitions) = &event_a {
            // As the dispatcher does: commit what became durable while the partitions are still
            // its own; B must start exactly there.
            let more: Vec<(Partition, u64)> = partitions.iter().map(|p| (*p, committed[p] + 10)).collect();
            consumer_a.commit(&more).await.unwrap();
            committed.extend(more);
        }
        a.take(event_a);
        b.take(event_b);
    }
    assert!(!a.owned.is_empty(), "a keeps some partitions");
    assert!(a.owned.is_disjoint(&b.owned), "a partition has one owner");
    assert_eq!(
        a.revoked.iter().copied().collect::<BTreeSet<_>>(),
        b.owned,
        "b got exactly what a gave up"
    );

    // A leaves (a stop): B is assigned A's partitions.
    let from_a = a.owned.clone();
    drop(consumer_a);
    let deadline = Instant::now() + PATIENCE;
    while b.owned.len() != PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "a's partitions did not move: b {:?}",
            b.owned
        );
        b.take(poll(consumer_b.as_mut()).await);
    }
    assert!(from_a.is_subset(&b.owned));
    loop {
        match consumer_b.poll(500, kafka.quiet()).await.unwrap() {
            ConsumerEvent::Records(records) if records.is_empty() => break,
            event => b.take(event),
        }
    }

    // Nothing lost: B read every partition from A's commit to its end, once and in order.
    for partition in 0..PARTITIONS {
        let offsets: Vec<u64> = b
            .read
            .iter()
            .filter(|record| record.partition == partition)
            .map(|record| record.offset)
            .collect();
        assert_eq!(
            offsets,
            (committed[&partition]..ends[&partition]).collect::<Vec<_>>(),
            "partition {partition}"
        );
    }
    let committed_by_a: Vec<Record> = a
        .read
        .iter()
        .filter(|record| record.offset < committed[&record.partition])
        .cloned()
        .collect();
    let mut all = payloads(&committed_by_a);
    all.extend(payloads(&b.read));
    assert_eq!(all.len(), 800, "every record is committed by a or read by b");
}

/// A payload like an envelope: JSON-ish text that compresses about as well as real ones.
fn envelope_like(n: usize) -> Vec<u8> {
    let mut state = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let body: String = (0..24)
        .map(|_| format!("{:x}", random() % 4096))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r#"{{"v":1,"id":"{:032x}","tenant":"tenant-{}","channel":"sms","to":"+1415555{:04}","from":"+14155550100","body":"{body}","priority":"transactional"}}"#,
        random(),
        n % 1000,
        random() % 10_000
    )
    .into_bytes()
}

/// Appends `total` records from `callers` concurrent callers, `batch` records per append, then
/// (with `consume`) reads them back; prints records per second.
async fn measure(label: &str, kafka: &KafkaSettings, total: usize, batch: usize, callers: usize, consume: bool) {
    let bootstrap = std::env::var(BOOTSTRAP_VAR).unwrap();
    let harness = Kafka::with(bootstrap, "bench", kafka.clone());
    let mut settings = harness.settings.clone();
    settings.log.partitions = 8;
    let log = common::backends::open_log(&settings).await.unwrap();
    let payloads: Arc<Vec<Vec<u8>>> = Arc::new((0..1000).map(envelope_like).collect());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let log = Arc::clone(&log);
        let payloads = Arc::clone(&payloads);
        let per_caller = total / callers;
        tasks.spawn(async move {
            let mut sent = 0;
            while sent < per_caller {
                let records: Vec<OutgoingRecord> = (sent..(sent + batch).min(per_caller))
                    .map(|n| {
                        let n = caller * 7919 + n;
                        OutgoingRecord {
                            key: format!("tenant-{}", n % 1000).into_bytes(),
                            payload: payloads[n % 1000].clone(),
                        }
                    })
                    .collect();
                sent += records.len();
                log.append(Topic::Messages, records).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let produce = started.elapsed();
    let expected = total / callers * callers;
    let mut line = format!(
        "{label}: append {callers} callers x {batch}/append: {:.0} records/s",
        expected as f64 / produce.as_secs_f64()
    );
    if consume {
        let (mut consumer, _) = join(log.as_ref(), Topic::Messages, "bench").await;
        let started = Instant::now();
        let mut read = 0;
        while read < expected {
            if let ConsumerEvent::Records(records) = consumer.poll(1024, Duration::from_secs(5)).await.unwrap() {
                assert!(!records.is_empty(), "consumer stalled at {read}");
                read += records.len();
            }
        }
        let consume = started.elapsed();
        line.push_str(&format!(
            "; consume {:.0} records/s",
            expected as f64 / consume.as_secs_f64()
        ));
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: ENGAGENINJA_KAFKA_BOOTSTRAP=... cargo test --release -p common --test kafka_log -- --ignored --nocapture"]
async fn throughput() {
    if Kafka::new("throughput").is_none() {
        return;
    }
    let defaults = KafkaSettings::default();
    let producer = |linger_ms: u64, compression: &str| KafkaSettings {
        linger_ms,
        compression: compression.to_owned(),
        ..defaults.clone()
    };
    let fetch = |fetch_wait_max_ms: u64, fetch_min_bytes: u64| KafkaSettings {
        fetch_wait_max_ms,
        fetch_min_bytes,
        ..defaults.clone()
    };
    let warm_up = producer(5, "lz4");
    measure("warm-up", &warm_up, 50_000, 500, 4, true).await;
    let variants = [
        ("linger 0, none", producer(0, "none")),
        ("linger 0, lz4", producer(0, "lz4")),
        ("linger 5, none", producer(5, "none")),
        ("linger 5, lz4", producer(5, "lz4")),
        ("linger 20, lz4", producer(20, "lz4")),
        (
            "linger 5, lz4, batch 64 KiB",
            KafkaSettings {
                batch_bytes: 65_536,
                ..producer(5, "lz4")
            },
        ),
    ];
    let fetches = [
        ("fetch wait 100 ms, min 1 B", fetch(100, 1)),
        ("fetch wait 500 ms, min 1 B", fetch(500, 1)),
        ("fetch wait 100 ms, min 64 KiB", fetch(100, 65_536)),
    ];
    for round in 1..=2 {
        for (label, settings) in &variants {
            measure(
                &format!("round {round} {label} (bulk)"),
                settings,
                100_000,
                500,
                4,
                false,
            )
            .await;
            measure(
                &format!("round {round} {label} (one per append)"),
                settings,
                10_000,
                1,
                200,
                false,
            )
            .await;
        }
        for (label, settings) in &fetches {
            measure(&format!("round {round} {label}"), settings, 100_000, 500, 4, true).await;
        }
    }
}

#[tokio::test]
async fn an_unreachable_cluster_fails_open_within_the_request_timeout() {
    let mut settings = Settings::default();
    settings.log.backend = LogBackend::Kafka;
    settings.log.kafka.bootstrap_servers = "127.0.0.1:1".to_owned();
    settings.log.kafka.request_timeout_ms = 1_000;
    let started = Instant::now();
    let result = common::backends::open_log(&settings).await;
    assert!(result.is_err(), "nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
