//! The scaled deployment against real engines: `dispatcher` processes in one Kafka consumer
//! group, the store on Cassandra (the CQL of the ScyllaDB backend), Twilio played by the
//! provider simulator, and the admin API (in this process) taking its signed status callbacks.
//!
//! End to end, a `kill -9` mid-stream, a handover between two dispatchers, dead letters, and a
//! store outage. Every test has topics and a keyspace of its own.
//!
//! The engines come from `ENGAGENINJA_KAFKA_BOOTSTRAP` and `ENGAGENINJA_CASSANDRA_CONTACT`
//! (`.ci/test` starts both). Unset: the tests are skipped with the reason, except under `CI`,
//! where they fail. They run one at a time: each starts processes of its own on two cores.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::address::PhoneNumber;
use common::config::Settings;
use common::credentials::{Keyring, generate_key};
use common::log::{ConsumerEvent, MessageLog, OutgoingRecord, Topic};
use common::store::{NumberStatus, SenderKind, SenderNumber, Store};
use common::{Channel, MessageId, MessageStatus, TenantId};
use engageninja::stack::Role;
use engageninja::testing::{self, TestApp};
use load::fixtures::live_twilio_tenant;
use load::simulator::{RunningSimulator, Simulator, SimulatorConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

const KAFKA_VAR: &str = "ENGAGENINJA_KAFKA_BOOTSTRAP";
const CASSANDRA_VAR: &str = "ENGAGENINJA_CASSANDRA_CONTACT";
const PARTITIONS: u32 = 4;
/// The longest any test waits for its messages.
const PATIENCE: Duration = Duration::from_secs(120);

/// One test at a time: each runs processes of its own beside Kafka and Cassandra.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// The engines, and the names of this test's topics, keyspace and group.
struct Engines {
    kafka: String,
    cassandra: String,
    unique: String,
    keys: SecretString,
    dir: tempfile::TempDir,
}

impl Engines {
    /// The engines for `test`, or `None` (with the reason on stderr) when they are not given.
    fn new(test: &str) -> Option<Self> {
        let kafka = std::env::var(KAFKA_VAR).ok().filter(|value| !value.trim().is_empty());
        let cassandra = std::env::var(CASSANDRA_VAR)
            .ok()
            .filter(|value| !value.trim().is_empty());
        let (Some(kafka), Some(cassandra)) = (kafka, cassandra) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{KAFKA_VAR} and {CASSANDRA_VAR} must be set in CI: .ci/test starts both engines"
            );
            let _ = writeln!(
                std::io::stderr(),
                "skipping scaled::{test}: {KAFKA_VAR} and {CASSANDRA_VAR} are not both set (start the \
                 engines with `.ci/services/kafka.sh start` and `.ci/services/cassandra.sh start`)"
            );
            return None;
        };
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let millis = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let unique = format!(
            "s{}_{millis}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        Some(Self {
            kafka,
            cassandra,
            unique,
            keys: SecretString::from(format!("k1:{}", generate_key().expose_secret())),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// Settings on this test's topics and keyspace, as the dispatchers and the admin API get them.
    fn settings(&self, cassandra: &str) -> Settings {
        let mut settings = Settings {
            data_dir: self.dir.path().join("unused"),
            ..Settings::default()
        };
        settings.on_kafka_and_cassandra(&self.kafka, cassandra, &self.unique);
        settings.log.partitions = PARTITIONS;
        settings.credentials.keys = Some(self.keys.clone());
        settings.demo.bootstrap = false;
        settings
    }

    /// The dispatchers' settings file: the same backends, sending through `simulator` with
    /// status callbacks to `admin`, the store reached at `cassandra`.
    fn dispatcher_config(&self, simulator: &RunningSimulator, admin: SocketAddr, cassandra: &str) -> PathBuf {
        let config = format!(
            r#"[dispatcher]
consumer_group = "{unique}"
poll_wait_ms = 20
commit_interval_ms = 100

[dispatcher.reconcile]
interval_secs = 0

[log]
backend = "kafka"
partitions = {PARTITIONS}

[log.kafka]
bootstrap_servers = "{kafka}"
topic_prefix = "{unique}-"

# A dispatcher killed outright is noticed by the group within seconds.
[log.kafka.client]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[store]
backend = "cassandra"

[store.cassandra]
contact_points = ["{cassandra}"]
keyspace = "{unique}"
replication_factor = 1
request_timeout_ms = 2000

[credentials]
keys = "{keys}"

[providers.twilio]
api_url = "{simulator}"

[admin]
public_url = "http://{admin}"

[demo]
bootstrap = false
"#,
            unique = self.unique,
            kafka = self.kafka,
            keys = self.keys.expose_secret(),
            simulator = simulator.base_url(),
        );
        let path = self
            .dir
            .path()
            .join(format!("dispatcher-{cassandra}.toml").replace(':', "_"));
        std::fs::write(&path, config).unwrap();
        path
    }
}

/// A `dispatcher` process; killed when dropped.
struct DispatcherProcess {
    child: Child,
    ops: SocketAddr,
    log: PathBuf,
}

impl DispatcherProcess {
    fn start(config: &Path, name: &str, dir: &Path) -> Self {
        let ops = free_port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_dispatcher"))
            .arg("--config")
            .arg(config)
            .env("ENGAGENINJA_DISPATCHER__OPS_LISTEN", ops.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the dispatcher binary starts");
        Self { child, ops, log }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for it to exit; answers whether it exited cleanly.
    fn stop(&mut self) -> bool {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.child.wait().unwrap().success()
    }

    /// Whether it is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The value of a counter or gauge on its `/metrics`, summed over labels; 0 when absent.
    async fn metric(&self, name: &str) -> f64 {
        let Ok(response) = reqwest::get(format!("http://{}/metrics", self.ops)).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Its log, for a failure message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for DispatcherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A scaled stack under test: the store and log as the test sees them, the simulator, the
/// admin API, and the dispatchers' settings file.
struct Scaled {
    engines: Engines,
    store: Arc<dyn Store>,
    log: Arc<dyn MessageLog>,
    simulator: RunningSimulator,
    config: PathBuf,
    /// Stopped when dropped.
    _admin: TestApp,
}

impl Scaled {
    /// Opens the backends (creating the topics and the keyspace), starts the simulator
    /// allowing each sender `rate` messages a second with `latency` per request, and the admin
    /// API; the dispatchers reach Cassandra at `cassandra` (the engine itself, or a proxy).
    async fn start(engines: Engines, rate: f64, latency: Duration, cassandra: Option<&str>) -> Self {
        let settings = engines.settings(&engines.cassandra);
        let (log, store) = common::backends::open(&settings)
            .await
            .expect("kafka and cassandra open");
        let simulator = Simulator::start(SimulatorConfig {
            rate_per_sender: rate,
            latency,
            ..SimulatorConfig::default()
        })
        .await
        .unwrap();
        let mut admin_settings = settings.clone();
        admin_settings.admin.listen = free_port();
        admin_settings.admin.ops_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let admin = testing::spawn(admin_settings, Role::AdminApi)
            .await
            .expect("the admin API starts");
        let config = engines.dispatcher_config(&simulator, admin.addr, cassandra.unwrap_or(&engines.cassandra));
        Self {
            engines,
            store,
            log,
            simulator,
            config,
            _admin: admin,
        }
    }

    fn dispatcher(&self, name: &str) -> DispatcherProcess {
        DispatcherProcess::start(&self.config, name, self.engines.dir.path())
    }

    /// A live tenant sending SMS through the simulator's account from `numbers` numbers at
    /// `rate` messages a second each.
    async fn tenant(&self, id: &str, numbers: usize, rate: f64) {
        static NEXT_NUMBER: AtomicU32 = AtomicU32::new(0);
        let keyring = Keyring::parse(&self.engines.keys).unwrap();
        let tenant = TenantId::parse(id).unwrap();
        let numbers: Vec<SenderNumber> = (0..numbers)
            .map(|_| SenderNumber {
                tenant_id: tenant.clone(),
                number: PhoneNumber::parse(format!("+1415556{:04}", NEXT_NUMBER.fetch_add(1, Ordering::Relaxed)))
                    .unwrap(),
                kind: SenderKind::LongCode,
                status: NumberStatus::Active,
                twilio_sid: None,
                rate_per_second: Some(rate),
                created_at: OffsetDateTime::now_utc(),
                registration: None,
            })
            .collect();
        live_twilio_tenant(self.store.as_ref(), &keyring, &tenant, &[Channel::Sms], &numbers)
            .await
            .unwrap();
    }

    /// Produces `count` SMS envelopes per tenant to Kafka, each body naming its message id.
    async fn produce(&self, tenants: &[&str], count: usize) -> Vec<(TenantId, MessageId)> {
        let mut records = Vec::new();
        let mut ids = Vec::new();
        for n in 0..count {
            for tenant in tenants {
                let id = format!("{tenant}-m{n}");
                let envelope = json!({"version": 1, "message_id": id, "tenant_id": tenant, "channel": "sms",
                                      "to": format!("+1212555{:04}", n % 10_000), "body": body_of(&id)});
                records.push(OutgoingRecord {
                    key: tenant.as_bytes().to_vec(),
                    payload: serde_json::to_vec(&envelope).unwrap(),
                });
                ids.push((TenantId::parse(*tenant).unwrap(), MessageId::parse(id).unwrap()));
            }
        }
        self.log.append(Topic::Messages, records).await.unwrap();
        ids
    }

    /// Statuses of `ids`, counted.
    async fn statuses(&self, ids: &[(TenantId, MessageId)]) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for (tenant, id) in ids {
            let status = match self.store.message(tenant, id).await {
                Ok(Some(record)) => record.status.as_str(),
                Ok(None) => "absent",
                Err(_) => "unreadable",
            };
            *counts.entry(status).or_default() += 1;
        }
        counts
    }

    /// Waits until every one of `ids` has a status in `wanted`; answers the counts.
    async fn wait_for(
        &self,
        ids: &[(TenantId, MessageId)],
        wanted: &[MessageStatus],
        dispatchers: &[&DispatcherProcess],
    ) -> BTreeMap<&'static str, usize> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let counts = self.statuses(ids).await;
            let done: usize = wanted
                .iter()
                .map(|status| counts.get(status.as_str()).copied().unwrap_or(0))
                .sum();
            if done == ids.len() {
                return counts;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = dispatchers.iter().map(|process| process.log_tail()).collect();
                panic!(
                    "after {PATIENCE:?}: {counts:?}, wanted {wanted:?}\nsimulator: {:?}\ndispatcher logs:\n{}",
                    self.simulator.stats(),
                    logs.join("\n---\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Provider creates per message id: only ids sent more than once.
    fn resent(&self) -> BTreeMap<String, u64> {
        self.simulator
            .creates_by_body()
            .into_iter()
            .filter(|(_, count)| *count > 1)
            .collect()
    }
}

fn body_of(id: &str) -> String {
    format!("message {id}")
}

/// How many of `sent` the simulator created at least once.
fn created_once_at_least(simulator: &RunningSimulator, ids: &[(TenantId, MessageId)]) -> usize {
    let bodies = simulator.creates_by_body();
    ids.iter()
        .filter(|(_, id)| bodies.contains_key(&body_of(id.as_str())))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_from_kafka_reach_delivered_through_the_simulator_with_statuses_in_cassandra() {
    let _serial = serial().await;
    let Some(engines) = Engines::new("end_to_end") else {
        return;
    };
    // The numbers' rate is below what the simulator allows, by more than loopback jitter.
    let scaled = Scaled::start(engines, 20.0, Duration::ZERO, None).await;
    let tenants = ["acme", "globex", "initech"];
    for tenant in tenants {
        scaled.tenant(tenant, 2, 16.0).await;
    }
    let dispatcher = scaled.dispatcher("dispatcher");
    let ids = scaled.produce(&tenants, 100).await;

    let counts = scaled.wait_for(&ids, &[MessageStatus::Delivered], &[&dispatcher]).await;
    assert_eq!(counts.get("delivered"), Some(&300), "{counts:?}");
    let (tenant, id) = &ids[0];
    let record = scaled.store.message(tenant, id).await.unwrap().unwrap();
    assert!(
        record
            .provider_message_id
            .as_deref()
            .is_some_and(|sid| sid.starts_with("SM"))
    );
    let history: Vec<MessageStatus> = record.history.iter().map(|change| change.status).collect();
    assert_eq!(
        history,
        [MessageStatus::Queued, MessageStatus::Sent, MessageStatus::Delivered]
    );
    let stats = scaled.simulator.stats();
    assert_eq!(stats.accepted, 300, "{stats:?}");
    assert!(stats.violations.is_empty(), "{:?}", stats.violations);
    assert!(scaled.resent().is_empty(), "{:?}", scaled.resent());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_the_dead_letter_topic_and_the_partition_keeps_flowing() {
    let _serial = serial().await;
    let Some(engines) = Engines::new("dead_letters") else {
        return;
    };
    let scaled = Scaled::start(engines, 50.0, Duration::ZERO, None).await;
    scaled.tenant("acme", 1, 50.0).await;
    let dispatcher = scaled.dispatcher("dispatcher");
    let before = scaled.produce(&["acme"], 5).await;
    let bad = vec![
        OutgoingRecord {
            key: b"acme".to_vec(),
            payload: b"{not json".to_vec(),
        },
        OutgoingRecord {
            key: b"acme".to_vec(),
            payload: serde_json::to_vec(&json!({"version": 1, "message_id": "x", "tenant_id": "acme",
                                                "channel": "sms", "to": "not-a-number", "body": "hi"}))
            .unwrap(),
        },
        OutgoingRecord {
            key: b"acme".to_vec(),
            payload: vec![0xff, 0xfe, 0x00],
        },
    ];
    scaled.log.append(Topic::Messages, bad).await.unwrap();
    let after = scaled.produce(&["acme"], 5).await;
    let after: Vec<(TenantId, MessageId)> = after
        .into_iter()
        .map(|(tenant, id)| (tenant, MessageId::parse(format!("{id}-after")).unwrap()))
        .collect();
    // Same tenant, so the same partition, behind the bad records.
    let records: Vec<OutgoingRecord> = after
        .iter()
        .map(|(tenant, id)| OutgoingRecord {
            key: tenant.as_str().as_bytes().to_vec(),
            payload: serde_json::to_vec(&json!({"version": 1, "message_id": id.as_str(), "tenant_id": "acme",
                                                "channel": "sms", "to": "+12125550100", "body": body_of(id.as_str())}))
            .unwrap(),
        })
        .collect();
    scaled.log.append(Topic::Messages, records).await.unwrap();

    let all: Vec<(TenantId, MessageId)> = before.into_iter().chain(after).collect();
    scaled
        .wait_for(&all, &[MessageStatus::Sent, MessageStatus::Delivered], &[&dispatcher])
        .await;

    let mut consumer = scaled
        .log
        .consumer(Topic::DeadLetters, "dead-letter-reader")
        .await
        .unwrap();
    let mut dead: Vec<Value> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while dead.len() < 3 {
        assert!(Instant::now() < deadline, "dead letters so far: {dead:?}");
        if let ConsumerEvent::Records(records) = consumer.poll(100, Duration::from_millis(500)).await.unwrap() {
            dead.extend(
                records
                    .iter()
                    .map(|record| serde_json::from_slice(&record.payload).unwrap()),
            );
        }
    }
    let codes: Vec<&str> = dead
        .iter()
        .map(|letter| letter["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 3, "{dead:?}");
    assert_eq!(dead[1]["error"]["field"], "to", "{dead:?}");
    assert!(
        dead[2]["payload_hex"].as_str().is_some(),
        "bytes that are not UTF-8 are kept as hex"
    );
    let offsets: Vec<u64> = dead
        .iter()
        .map(|letter| letter["source"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [5, 6, 7], "where each came from: {dead:?}");
    assert!(dispatcher.metric("dispatcher_dead_letters_total").await >= 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_stream_loses_nothing_and_resends_at_most_what_was_in_flight() {
    let _serial = serial().await;
    let Some(engines) = Engines::new("crash") else { return };
    // 200 ms per request keeps many requests in flight when the process dies.
    let scaled = Scaled::start(engines, 200.0, Duration::from_millis(200), None).await;
    let tenants = ["acme", "globex"];
    for tenant in tenants {
        scaled.tenant(tenant, 4, 200.0).await;
    }
    let ids = scaled.produce(&tenants, 1_000).await;
    let mut first = scaled.dispatcher("first");
    let deadline = Instant::now() + PATIENCE;
    while created_once_at_least(&scaled.simulator, &ids) < 300 {
        assert!(Instant::now() < deadline, "{}", first.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight_before_kill = first.metric("dispatcher_in_flight_requests").await;
    first.kill();
    // Requests the dead process had written are still in the simulator's injected latency:
    // let them land before counting what the provider created.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let created_at_crash = created_once_at_least(&scaled.simulator, &ids);
    // Created by the provider but not durable at the crash: still `queued` (or absent) in the
    // store; nothing else writes a message the dispatcher has not recorded as sent. Only these
    // may be sent twice.
    let created = scaled.simulator.creates_by_body();
    let mut at_risk = HashSet::new();
    for (tenant, id) in &ids {
        let body = body_of(id.as_str());
        let record = scaled.store.message(tenant, id).await.unwrap();
        if created.contains_key(&body) && record.is_none_or(|record| record.status == MessageStatus::Queued) {
            at_risk.insert(body);
        }
    }

    let second = scaled.dispatcher("second");
    let counts = scaled
        .wait_for(
            &ids,
            &[MessageStatus::Sent, MessageStatus::Delivered],
            &[&first, &second],
        )
        .await;
    assert_eq!(
        counts.values().sum::<usize>(),
        2_000,
        "every message reached sent or delivered: {counts:?}"
    );
    let resent = scaled.resent();
    let _ = writeln!(
        std::io::stderr(),
        "crash: {created_at_crash} messages created before the kill ({in_flight_before_kill} requests in \
         flight just before it, {} created but not yet recorded); {} sent twice after the restart",
        at_risk.len(),
        resent.len()
    );
    assert!(
        resent.values().all(|count| *count == 2),
        "none more than twice: {resent:?}"
    );
    let beyond: Vec<&String> = resent.keys().filter(|body| !at_risk.contains(*body)).collect();
    assert!(
        beyond.is_empty(),
        "only messages created but not recorded at the crash go again; these were not: {beyond:?}"
    );
    assert_eq!(created_once_at_least(&scaled.simulator, &ids), 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_dispatchers_partitions_move_to_the_other_with_nothing_lost_and_rates_kept() {
    let _serial = serial().await;
    let Some(engines) = Engines::new("handover") else {
        return;
    };
    // One number per tenant at 1.8 messages a second, the simulator flagging any second with
    // more than 2: sends 556 ms apart leave room for loopback jitter, while a new owner sending
    // at once after the old one's last message would put three in one second.
    let scaled = Scaled::start(engines, 2.0, Duration::ZERO, None).await;
    let tenants = ["t-a", "t-b", "t-c", "t-d", "t-e", "t-f"];
    for tenant in tenants {
        scaled.tenant(tenant, 1, 1.8).await;
    }
    let mut first = scaled.dispatcher("first");
    let second = scaled.dispatcher("second");
    // Both members joined before the work arrives, so both own partitions.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ids = scaled.produce(&tenants, 24).await;
    let deadline = Instant::now() + PATIENCE;
    while created_once_at_least(&scaled.simulator, &ids) < 30 {
        assert!(
            Instant::now() < deadline,
            "{}\n---\n{}",
            first.log_tail(),
            second.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let taken_by_second_before = second.metric("dispatcher_records_total").await;
    assert!(first.stop(), "the first dispatcher stops cleanly: {}", first.log_tail());

    let counts = scaled
        .wait_for(
            &ids,
            &[MessageStatus::Sent, MessageStatus::Delivered],
            &[&first, &second],
        )
        .await;
    assert_eq!(counts.values().sum::<usize>(), 144, "{counts:?}");
    assert!(
        second.metric("dispatcher_records_total").await > taken_by_second_before,
        "the second dispatcher took over the first one's partitions"
    );
    let stats = scaled.simulator.stats();
    assert!(
        stats.violations.is_empty(),
        "pacing held across the handover: {:?}",
        stats.violations
    );
    assert!(
        scaled.resent().is_empty(),
        "a graceful handover resends nothing: {:?}",
        scaled.resent()
    );
}

/// A TCP proxy to `target` that can cut every connection and refuse new ones.
struct Proxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let refusing = Arc::clone(&down);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let target = target.clone();
                let mut cuts = cuts.clone();
                cuts.borrow_and_update(); // only cuts after this connection count
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { addr, down, cut }
    }

    /// Cuts every connection and refuses new ones until [`Proxy::restore`].
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_backs_off_while_cassandra_is_unreachable_and_loses_nothing() {
    let _serial = serial().await;
    let Some(engines) = Engines::new("store_outage") else {
        return;
    };
    let proxy = Proxy::start(engines.cassandra.clone()).await;
    let scaled = Scaled::start(engines, 20.0, Duration::ZERO, Some(&proxy.addr.to_string())).await;
    scaled.tenant("acme", 2, 20.0).await;
    let mut dispatcher = scaled.dispatcher("dispatcher");
    let ids = scaled.produce(&["acme"], 400).await;
    let deadline = Instant::now() + PATIENCE;
    while created_once_at_least(&scaled.simulator, &ids) < 50 {
        assert!(Instant::now() < deadline, "{}", dispatcher.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.cut();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        dispatcher.running(),
        "the dispatcher waits for the store: {}",
        dispatcher.log_tail()
    );
    let errors: f64 = dispatcher.metric("dispatcher_backend_errors_total").await
        + dispatcher.metric("dispatcher_store_errors_total").await;
    assert!(errors > 0.0, "the outage was seen: {}", dispatcher.log_tail());
    let mid_outage: HashMap<&str, usize> = scaled.statuses(&ids).await.into_iter().collect();
    proxy.restore();

    let counts = scaled
        .wait_for(&ids, &[MessageStatus::Sent, MessageStatus::Delivered], &[&dispatcher])
        .await;
    assert_eq!(counts.values().sum::<usize>(), 400, "{counts:?}");
    let resent = scaled.resent();
    let _ = writeln!(
        std::io::stderr(),
        "store outage: statuses during it {mid_outage:?}; {errors} failed store calls; {} resent",
        resent.len()
    );
    assert!(
        resent.is_empty(),
        "nothing is sent twice across a store outage: {resent:?}"
    );
}
