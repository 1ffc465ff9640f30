//! Typed configuration: defaults, then a TOML file, then `ENGAGENINJA_` environment variables.
//!
//! Nested keys use `__` in the environment: `ENGAGENINJA_ADMIN__LISTEN=0.0.0.0:8080`.
//! Secrets are [`SecretString`]s: they never print, in `Debug` or anywhere else.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

use crate::channel::SenderKind;
use crate::quiet_hours::StateWindows;

/// The environment prefix of every setting.
pub const ENV_PREFIX: &str = "ENGAGENINJA_";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

/// Every setting of both services.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the embedded log and store keep their files.
    pub data_dir: PathBuf,
    /// The admin API.
    pub admin: AdminSettings,
    /// The dispatcher.
    pub dispatcher: DispatcherSettings,
    /// The message log.
    pub log: LogSettings,
    /// The store.
    pub store: StoreSettings,
    /// Logs and metrics.
    pub telemetry: TelemetrySettings,
    /// Demo tenants.
    pub demo: DemoSettings,
    /// The keys channel credentials are sealed under.
    pub credentials: CredentialSettings,
    /// Where the real providers are.
    pub providers: ProviderSettings,
    /// The A2P 10DLC onboarding workflow.
    pub onboarding: OnboardingSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            admin: AdminSettings::default(),
            dispatcher: DispatcherSettings::default(),
            log: LogSettings::default(),
            store: StoreSettings::default(),
            telemetry: TelemetrySettings::default(),
            demo: DemoSettings::default(),
            credentials: CredentialSettings::default(),
            providers: ProviderSettings::default(),
            onboarding: OnboardingSettings::default(),
        }
    }
}

impl Settings {
    /// Loads defaults, then `file` if given (it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only section keys (`SECTION__KEY`) and the top-level `DATA_DIR` are settings: other
        // `ENGAGENINJA_*` variables (the service scripts' `ENGAGENINJA_SERVICES_DIR`, ...) are
        // not, and must not fail the load. A misspelt key inside a section still does.
        let env = Env::prefixed(ENV_PREFIX).filter(|key| key.as_str().contains("__") || key == "data_dir");
        figment = figment.merge(env.split("__"));
        figment.extract().map_err(|err| ConfigError(Box::new(err)))
    }

    /// The directory of the embedded message log.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// The SQLite file of the embedded store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("engageninja.db")
    }

    /// The key file used when neither `credentials.keys` nor `credentials.key_file` is set.
    pub fn default_key_file(&self) -> PathBuf {
        self.data_dir.join("credential-keys")
    }

    /// Points the log at the Kafka cluster `kafka` and the store at the Cassandra node
    /// `cassandra`, with topics prefixed `unique-` and a keyspace named `unique` (letters,
    /// digits and `_`) replicated once: a run or a test of its own on shared services.
    pub fn on_kafka_and_cassandra(&mut self, kafka: &str, cassandra: &str, unique: &str) {
        self.log.backend = LogBackend::Kafka;
        self.log.kafka.bootstrap_servers = kafka.to_owned();
        self.log.kafka.topic_prefix = format!("{unique}-");
        self.store.backend = StoreBackend::Cassandra;
        self.store.cassandra.contact_points = vec![cassandra.to_owned()];
        self.store.cassandra.keyspace = unique.to_owned();
        self.store.cassandra.replication_factor = 1;
    }
}

/// Settings of the admin API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Address `/metrics`, `/healthz` and `/readyz` are served on: never the public API's
    /// port (the metrics name tenants and their volumes). Loopback by default.
    pub ops_listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A platform-admin API key; absent means no platform-admin access.
    pub platform_admin_key: Option<SecretString>,
    /// The URL providers reach the admin API at (scheme, host, port, optional path prefix),
    /// as they see it behind any proxy: webhook URLs given to Twilio are built from it and
    /// their signatures checked against it. Absent: `http://` + `listen`.
    pub public_url: Option<String>,
    /// Requests a second each API key may make (the burst is as large); more answer 429.
    pub requests_per_second_per_key: u32,
    /// The longest a request may take before it is answered 503 `request_timeout` (event
    /// streams excepted), in seconds.
    pub request_timeout_secs: u64,
    /// Event streams (`/v1/campaigns/{id}/events`) a tenant may hold open at once.
    pub max_event_streams_per_tenant: usize,
    /// Credential checks against the providers (`POST /v1/channels/...`) a tenant may cause
    /// an hour.
    pub credential_checks_per_tenant_per_hour: u32,
    /// On stop, how long `/readyz` answers 503 while the API still serves, in seconds, so that
    /// load balancers stop sending first (0: stop at once).
    pub drain_secs: u64,
    /// How often campaigns held until their channel is ready (`when_not_ready: "hold"`) are
    /// looked at, and released where it is, in milliseconds.
    pub held_release_interval_ms: u64,
    /// How often messages scheduled in the store are looked at, and those due by the next look
    /// (and a second more) appended to the log, in milliseconds.
    pub schedule_release_interval_ms: u64,
}

impl AdminSettings {
    /// The URL providers reach the admin API at: `public_url`, else `http://` + the address it
    /// listens on (`bound`, which knows the port when `listen` asked for port 0); no trailing `/`.
    pub fn public_url_or(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9091)),
            max_body_bytes: 1024 * 1024,
            platform_admin_key: None,
            public_url: None,
            requests_per_second_per_key: 1000,
            request_timeout_secs: 30,
            max_event_streams_per_tenant: 8,
            credential_checks_per_tenant_per_hour: 30,
            drain_secs: 0,
            held_release_interval_ms: 10_000,
            schedule_release_interval_ms: 1_000,
        }
    }
}

/// Settings of the dispatcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Address of the dispatcher's own health and metrics endpoints (the standalone binary).
    pub ops_listen: SocketAddr,
    /// Consumer group the dispatchers share.
    pub consumer_group: String,
    /// Most records taken from the log in one poll.
    pub poll_batch: usize,
    /// Longest wait for records in one poll, in milliseconds.
    pub poll_wait_ms: u64,
    /// Longest wait for in-flight work at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// How often durable progress is committed to the log, in milliseconds.
    pub commit_interval_ms: u64,
    /// How long newly assigned partitions stay paused, in milliseconds: at least the interval
    /// of the slowest sender, so that its first message from the new owner keeps its distance
    /// from the last one the previous owner sent.
    pub assignment_hold_ms: u64,
    /// Messages of one partition in progress (queued, waiting for their sender, in flight)
    /// at which the partition is paused; it resumes at half. Bounds memory whatever the backlog.
    pub max_in_progress_per_partition: usize,
    /// How far ahead a message's `not_before` may lie for the dispatcher to keep it in memory
    /// until then, in milliseconds; one due later waits in the store's schedule, which hands it
    /// back to the log when it is due. Longer than the admin API's
    /// `admin.schedule_release_interval_ms` plus a second.
    pub scheduled_in_memory_ms: u64,
    /// Messages a tenant may send in one turn of the round-robin between tenants.
    pub quantum: u32,
    /// Provider requests in flight at once, all accounts together.
    pub max_in_flight: usize,
    /// Retries of transient provider errors.
    pub retry: RetrySettings,
    /// Sending rates and caps.
    pub pacing: PacingSettings,
    /// The per-partition memory of claimed message ids that tells a duplicate from a new
    /// message without a store read.
    pub claims: ClaimSettings,
    /// The job that asks providers about messages stuck in `sent` or `unknown`.
    pub reconcile: ReconcileSettings,
    /// Also publish every status change on the log's status-events topic (for consumers in
    /// other processes; the embedded stack serves its own clients in process).
    pub publish_status_events: bool,
    /// Tenants counted under their own label in `dispatcher_tenant_messages_total` (the first
    /// seen); the others are counted as `tenant="other"`, so the series stay bounded.
    pub tenant_series: usize,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            consumer_group: "dispatchers".to_owned(),
            poll_batch: 1024,
            poll_wait_ms: 100,
            shutdown_grace_ms: 10_000,
            commit_interval_ms: 200,
            assignment_hold_ms: 1_000,
            max_in_progress_per_partition: 25_000,
            scheduled_in_memory_ms: 10_000,
            quantum: 8,
            max_in_flight: 1_024,
            retry: RetrySettings::default(),
            pacing: PacingSettings::default(),
            claims: ClaimSettings::default(),
            reconcile: ReconcileSettings::default(),
            publish_status_events: false,
            tenant_series: 500,
        }
    }
}

impl DispatcherSettings {
    /// Longest wait for records in one poll.
    pub fn poll_wait(&self) -> Duration {
        Duration::from_millis(self.poll_wait_ms)
    }

    /// Longest wait for in-flight work at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// How often durable progress is committed.
    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    /// How long newly assigned partitions stay paused.
    pub fn assignment_hold(&self) -> Duration {
        Duration::from_millis(self.assignment_hold_ms)
    }
}

/// Retries of transient provider errors: exponential backoff with full jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// The first backoff ceiling, in milliseconds; it doubles with every attempt.
    pub base_ms: u64,
    /// The largest backoff ceiling, in milliseconds.
    pub cap_ms: u64,
    /// Sends of one message at most, the first included.
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            base_ms: 250,
            cap_ms: 60_000,
            max_attempts: 8,
        }
    }
}

/// Sending rates, in cells per second (a cell is one SMS segment or one other message), and
/// caps. Defaults follow `shared/reference/providers.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacingSettings {
    /// A US long code without a registered 10DLC brand.
    pub long_code: f64,
    /// A 10DLC long code of a brand with trust score 75-100.
    pub ten_dlc_high: f64,
    /// A 10DLC long code of a brand with trust score 50-74.
    pub ten_dlc_mid: f64,
    /// A 10DLC long code of a brand with trust score 1-49.
    pub ten_dlc_low: f64,
    /// A toll-free number.
    pub toll_free: f64,
    /// A short code.
    pub short_code: f64,
    /// A WhatsApp sender.
    pub whatsapp: f64,
    /// An email account; 0 leaves email unpaced (account concurrency still applies).
    pub email: f64,
    /// The virtual sender of a demo tenant without numbers, per channel.
    pub demo: f64,
    /// Segments a brand may send per day (T-Mobile's cap by trust score: 75-100, 50-74, 1-49,
    /// unscored).
    pub brand_daily_caps: [u64; 4],
    /// Provider requests in flight at once per provider account.
    pub account_concurrency: usize,
    /// The stricter windows of the recipient's local time some states set for marketing texts,
    /// by state or province (two letters), kept besides each tenant's quiet hours.
    pub quiet_hours_states: StateWindows,
}

impl PacingSettings {
    /// A number's default sends per second: by kind and, for a 10DLC long code, by its brand's
    /// trust score (a rate stored on the number overrides it).
    pub fn number_rate(&self, kind: SenderKind, trust_score: Option<u8>) -> f64 {
        match kind {
            SenderKind::LongCode => match trust_score {
                Some(75..) => self.ten_dlc_high,
                Some(50..=74) => self.ten_dlc_mid,
                Some(1..=49) => self.ten_dlc_low,
                _ => self.long_code,
            },
            SenderKind::TollFree => self.toll_free,
            SenderKind::ShortCode => self.short_code,
            SenderKind::Whatsapp => self.whatsapp,
        }
    }
}

impl Default for PacingSettings {
    fn default() -> Self {
        Self {
            long_code: 1.0,
            ten_dlc_high: 75.0,
            ten_dlc_mid: 40.0,
            ten_dlc_low: 4.0,
            toll_free: 3.0,
            short_code: 100.0,
            whatsapp: 10.0,
            email: 0.0,
            demo: 100.0,
            brand_daily_caps: [200_000, 40_000, 10_000, 2_000],
            account_concurrency: 100,
            quiet_hours_states: [("FL", "08:00-20:00"), ("OK", "08:00-21:00"), ("WA", "08:00-20:00")]
                .into_iter()
                .map(|(state, window)| (state.to_owned(), window.parse().expect("a valid window")))
                .collect(),
        }
    }
}

/// The reconciliation job.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcileSettings {
    /// How often it runs, in seconds; 0 turns it off.
    pub interval_secs: u64,
    /// Age in `sent` or `unknown` after which a message is asked about, in seconds.
    pub stuck_after_secs: u64,
    /// Messages asked about per run at most.
    pub batch: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            interval_secs: 300,
            stuck_after_secs: 3_600,
            batch: 500,
        }
    }
}

/// The dispatcher's memory of claimed message ids (`dispatcher::claims`): per log partition,
/// Bloom filters of every id claimed there, in generations, rebuilt from the store's claim
/// journal when the partition is assigned. A duplicate is recognised with certainty among the
/// last `generation_ids × generations` ids claimed on its partition (the duplicate window); a
/// new id needs no store read unless a filter answers a false positive.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimSettings {
    /// Ids per generation; a full generation is sealed and a new one started.
    pub generation_ids: u64,
    /// Generations kept per partition; the oldest is dropped (and its journal trimmed) when a
    /// new one starts beyond this count.
    pub generations: usize,
    /// Each filter's false-positive rate: the share of new ids that cost one store read.
    pub false_positive_rate: f64,
    /// Ids remembered exactly per partition with the record that claimed them: a duplicate
    /// among them is recognised without a store read.
    pub recent_ids: usize,
}

impl Default for ClaimSettings {
    fn default() -> Self {
        Self {
            generation_ids: 1_000_000,
            generations: 4,
            false_positive_rate: 0.01,
            recent_ids: 25_000,
        }
    }
}

/// Settings of the message log.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Which implementation holds the log.
    pub backend: LogBackend,
    /// Partitions of each topic (created with them); tenants hash onto them.
    pub partitions: u32,
    /// Size at which a partition's segment file is rolled, in bytes (embedded).
    pub segment_bytes: u64,
    /// The Kafka cluster and its clients (backend `kafka`).
    pub kafka: KafkaSettings,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            backend: LogBackend::Embedded,
            partitions: 8,
            segment_bytes: 64 * 1024 * 1024,
            kafka: KafkaSettings::default(),
        }
    }
}

/// The implementations of the message log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogBackend {
    /// Segment files under the data directory, one process.
    Embedded,
    /// An Apache Kafka cluster, dispatchers sharing partitions in a consumer group.
    Kafka,
}

/// The Kafka log: where the cluster is, topic names, and client tuning (librdkafka names in
/// the comments; `client` sets any other property and wins over the typed ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Put before each topic's name (`messages`, `dead-letters`, `status-events`).
    pub topic_prefix: String,
    /// Replicas of each topic created at start; -1 takes the broker's default.
    pub replication_factor: i32,
    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger_ms: u64,
    /// `batch.size`: the most bytes in one partition's batch.
    pub batch_bytes: u64,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd (as built into librdkafka).
    pub compression: String,
    /// `message.timeout.ms`: how long an append may take before it fails.
    pub delivery_timeout_ms: u64,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch to fill it.
    pub fetch_wait_max_ms: u64,
    /// `fetch.min.bytes`: the least a fetch answers with before its wait runs out.
    pub fetch_min_bytes: u64,
    /// `max.partition.fetch.bytes`: the most one fetch brings of one partition.
    pub max_partition_fetch_bytes: u64,
    /// Longest wait for topic creation, metadata, commits and end offsets, in milliseconds.
    pub request_timeout_ms: u64,
    /// Any other librdkafka property for every client (security, SASL, ...); values are kept
    /// secret.
    pub client: std::collections::BTreeMap<String, SecretString>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            topic_prefix: "engageninja.".to_owned(),
            replication_factor: -1,
            linger_ms: 0,
            batch_bytes: 1_000_000,
            compression: "lz4".to_owned(),
            delivery_timeout_ms: 30_000,
            fetch_wait_max_ms: 100,
            fetch_min_bytes: 1,
            max_partition_fetch_bytes: 1_048_576,
            request_timeout_ms: 10_000,
            client: std::collections::BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// Longest wait for topic creation, metadata, commits and end offsets.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}

/// Settings of logs and metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Log output format.
    pub format: LogFormat,
    /// Log filter in `tracing` syntax; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
        }
    }
}

/// Settings of demo tenants.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoSettings {
    /// Create a demo tenant and its API key on the first start of the all-in-one stack.
    pub bootstrap: bool,
    /// The bootstrap demo tenant's id.
    pub tenant_id: String,
    /// Earliest and latest delay from `sent` to `delivered`, in milliseconds.
    pub delivered_after_ms: [u64; 2],
    /// Earliest and latest delay from `sent` to `read`, in milliseconds.
    pub read_after_ms: [u64; 2],
    /// Demo tenants older than this many days are deleted (every row), except the bootstrap one.
    pub retention_days: u64,
    /// How often the cleanup looks for expired demo tenants, in seconds.
    pub cleanup_interval_secs: u64,
    /// The monthly quota of the `demo` plan every demo tenant is on, per channel (SMS in
    /// segments): demo traffic is simulated, but it still costs the platform.
    pub monthly_quota: u64,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            bootstrap: true,
            tenant_id: "demo".to_owned(),
            delivered_after_ms: [3_000, 5_000],
            read_after_ms: [5_000, 10_000],
            retention_days: 7,
            cleanup_interval_secs: 3_600,
            monthly_quota: 10_000,
        }
    }
}

/// The key ring channel credentials are sealed under (AES-256-GCM): `id:base64key` entries,
/// the first one current (see `common::credentials`). Neither set: a key file under the data
/// directory, created with one fresh key on first start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialSettings {
    /// The ring itself, comma-separated (for the environment: `ENGAGENINJA_CREDENTIALS__KEYS`).
    pub keys: Option<SecretString>,
    /// A file holding the ring, one entry per line.
    pub key_file: Option<PathBuf>,
}

/// Where the real providers' APIs are; tests and load runs point them at the simulator.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSettings {
    /// Twilio.
    pub twilio: TwilioSettings,
    /// AWS SES.
    pub ses: SesSettings,
}

/// Twilio's API locations and client timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioSettings {
    /// The REST API (`/2010-04-01/...`).
    pub api_url: String,
    /// Trust Hub (customer profiles, trust products).
    pub trusthub_url: String,
    /// The Messaging API (brands, Messaging Services, campaigns, WhatsApp senders).
    pub messaging_url: String,
    /// The Content API (templates and their WhatsApp approvals).
    pub content_url: String,
    /// The longest wait to connect, in milliseconds.
    pub connect_timeout_ms: u64,
    /// The longest wait for a whole request, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            api_url: "https://api.twilio.com".to_owned(),
            trusthub_url: "https://trusthub.twilio.com".to_owned(),
            messaging_url: "https://messaging.twilio.com".to_owned(),
            content_url: "https://content.twilio.com".to_owned(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 15_000,
        }
    }
}

/// AWS SES's API location, and the SNS topics its events arrive from.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SesSettings {
    /// An endpoint instead of the region's (`http://127.0.0.1:PORT` for the simulator or moto).
    pub endpoint: Option<String>,
    /// The platform's own SNS topic ARNs, whose messages `POST /webhooks/ses` accepts for any
    /// tenant; a tenant's own topic is stored with its email channel (`sns_topic_arn`) and is
    /// accepted at `POST /webhooks/ses?tenant=<id>` for that tenant only.
    pub sns_topic_arns: Vec<String>,
    /// The only signing certificate URL accepted, instead of AWS's rule (`https://sns.<region>
    /// .amazonaws.com/...pem`): for the provider simulator, never in production.
    pub sns_cert_url: Option<String>,
    /// SNS messages published longer ago than this, in seconds, are refused (a replay).
    pub sns_max_age_secs: u64,
}

impl Default for SesSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            sns_topic_arns: Vec::new(),
            sns_cert_url: None,
            sns_max_age_secs: 3600,
        }
    }
}

/// Which store holds tenants, messages and the audit log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Which implementation holds the data.
    pub backend: StoreBackend,
    /// The ScyllaDB or Cassandra cluster (backend `cassandra`).
    pub cassandra: CassandraSettings,
}

/// The implementations of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// One SQLite file under the data directory.
    #[default]
    Sqlite,
    /// A ScyllaDB or Apache Cassandra cluster (CQL).
    Cassandra,
}

/// How the CQL store writes the rows of a batch of claims and status changes (the messages'
/// rows and the rows derived from them: campaign rows, indexes, the tenant's message list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteBatching {
    /// Rows grouped by the first replica (and shard) of their partition into unlogged batches of
    /// up to `batch_rows` statements, each sent to that replica: one request per batch.
    #[default]
    ReplicaBatches,
    /// One request per row.
    None,
}

/// The CQL store: where the cluster is, the keyspace created at start, and request tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CassandraSettings {
    /// `host:port` of one or more nodes; the driver discovers the others.
    pub contact_points: Vec<String>,
    /// The keyspace (created at start when missing, with the schema in `common/migrations/cql/`).
    pub keyspace: String,
    /// Replication factor of the keyspace when it is created (SimpleStrategy).
    pub replication_factor: u32,
    /// Longest wait for one request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Requests in flight at once for one batch of claims or status changes.
    pub concurrency: usize,
    /// How the rows of a batch of claims or status changes are written.
    pub batching: WriteBatching,
    /// Statements per unlogged batch at most. Cassandra warns about batches larger than its
    /// `batch_size_warn_threshold` (5 KiB by default; ScyllaDB 128 KiB) and refuses those over
    /// `batch_size_fail_threshold`: a claim row is about 150 bytes.
    pub batch_rows: usize,
}

impl Default for CassandraSettings {
    fn default() -> Self {
        Self {
            contact_points: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "engageninja".to_owned(),
            replication_factor: 3,
            request_timeout_ms: 5_000,
            concurrency: 256,
            batching: WriteBatching::ReplicaBatches,
            batch_rows: 100,
        }
    }
}

impl CassandraSettings {
    /// Longest wait for one request.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

/// The A2P 10DLC onboarding workflow (`admin_api::onboarding`): the platform's Twilio master
/// account, under which a subaccount is created per tenant, and the workflow's timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnboardingSettings {
    /// The platform's Twilio master account SID (`AC...`); unset: tenants must bring their own
    /// account (`POST /v1/channels/sms`) before onboarding.
    pub master_account_sid: Option<String>,
    /// The master account's auth token.
    pub master_auth_token: Option<SecretString>,
    /// Wait after Twilio was unavailable before trying the step again, in seconds.
    pub retry_interval_secs: u64,
    /// Attempts of one step while Twilio is unavailable before the workflow needs an operator.
    pub max_attempts: u32,
    /// How often a brand under review is polled when no status webhook came, in seconds.
    pub poll_interval_secs: u64,
    /// How often a ready tenant's brand and campaign are fetched again, so that a suspension
    /// after approval stops its SMS, in seconds (the brand-status webhook also triggers it).
    pub watch_interval_secs: u64,
    /// How often the background runner looks for due workflows, in milliseconds.
    pub runner_tick_ms: u64,
    /// Run the background runner (off: workflows move only when driven explicitly).
    pub background_runner: bool,
    /// The area code to buy numbers in; unset: the business phone's area code.
    pub area_code: Option<u16>,
    /// Demo tenants: how long after business info is submitted their (simulated) brand is
    /// approved, in seconds.
    pub demo_approval_secs: u64,
}

impl Default for OnboardingSettings {
    fn default() -> Self {
        Self {
            master_account_sid: None,
            master_auth_token: None,
            retry_interval_secs: 300,
            max_attempts: 10,
            poll_interval_secs: 600,
            watch_interval_secs: 3_600,
            runner_tick_ms: 1_000,
            background_runner: true,
            area_code: None,
            demo_approval_secs: 30,
        }
    }
}

impl OnboardingSettings {
    /// The wait before retrying a step after a transient error.
    pub fn retry_interval(&self) -> Duration {
        Duration::from_secs(self.retry_interval_secs)
    }

    /// The interval between polls of a brand under review.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }

    /// The interval between fetches of a ready tenant's brand and campaign.
    pub fn watch_interval(&self) -> Duration {
        Duration::from_secs(self.watch_interval_secs.max(1))
    }

    /// The runner's interval between looks for due workflows.
    pub fn runner_tick(&self) -> Duration {
        Duration::from_millis(self.runner_tick_ms.max(1))
    }

    /// How long a demo tenant's brand is under (simulated) review.
    pub fn demo_approval(&self) -> Duration {
        Duration::from_secs(self.demo_approval_secs)
    }
}

impl DemoSettings {
    /// How long a demo tenant lives.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days.saturating_mul(86_400))
    }

    /// How often the cleanup runs.
    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_secs(self.cleanup_interval_secs.max(1))
    }

    /// The range of delays from `sent` to `delivered`.
    pub fn delivered_after(&self) -> Range<Duration> {
        millis_range(self.delivered_after_ms)
    }

    /// The range of delays from `sent` to `read`.
    pub fn read_after(&self) -> Range<Duration> {
        millis_range(self.read_after_ms)
    }
}

fn millis_range([low, high]: [u64; 2]) -> Range<Duration> {
    Duration::from_millis(low)..Duration::from_millis(high.max(low + 1))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment's large error
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "engageninja.toml",
                r#"
                data_dir = "/var/lib/engageninja"
                [admin]
                listen = "0.0.0.0:8000"
                platform_admin_key = "file-key"
                [log]
                partitions = 16
                "#,
            )?;
            jail.set_env("ENGAGENINJA_LOG__PARTITIONS", "32");
            jail.set_env("ENGAGENINJA_TELEMETRY__FORMAT", "json");
            jail.set_env("ENGAGENINJA_SERVICES_DIR", "/tmp/not-a-setting");
            let settings = Settings::load(Some(Path::new("engageninja.toml"))).unwrap();
            assert_eq!(settings.data_dir, PathBuf::from("/var/lib/engageninja"));
            assert_eq!(settings.admin.listen.port(), 8000);
            assert_eq!(settings.log.partitions, 32);
            assert_eq!(settings.telemetry.format, LogFormat::Json);
            assert_eq!(settings.dispatcher.poll_batch, 1024);
            let key = settings.admin.platform_admin_key.as_ref().unwrap();
            assert_eq!(key.expose_secret(), "file-key");
            Ok(())
        });
    }

    #[test]
    fn the_store_backend_is_chosen_by_file_or_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "engageninja.toml",
                r#"
                [store]
                backend = "cassandra"
                [store.cassandra]
                contact_points = ["10.0.0.1:9042", "10.0.0.2:9042"]
                batching = "none"
                "#,
            )?;
            jail.set_env("ENGAGENINJA_STORE__CASSANDRA__KEYSPACE", "dispatch");
            jail.set_env("ENGAGENINJA_STORE__CASSANDRA__REPLICATION_FACTOR", "1");
            let settings = Settings::load(Some(Path::new("engageninja.toml"))).unwrap();
            assert_eq!(settings.store.backend, StoreBackend::Cassandra);
            let cassandra = &settings.store.cassandra;
            assert_eq!(cassandra.contact_points, ["10.0.0.1:9042", "10.0.0.2:9042"]);
            assert_eq!(cassandra.keyspace, "dispatch");
            assert_eq!(cassandra.replication_factor, 1);
            assert_eq!(cassandra.batching, WriteBatching::None);
            assert_eq!(cassandra.request_timeout(), Duration::from_secs(5));
            assert_eq!(Settings::default().store.backend, StoreBackend::Sqlite);
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENGAGENINJA_ADMIN__PLATFORM_ADMIN_KEY", "super-secret-value");
            jail.set_env("ENGAGENINJA_ONBOARDING__MASTER_AUTH_TOKEN", "master-token-value");
            let settings = Settings::load(None).unwrap();
            assert!(!format!("{settings:?}").contains("super-secret-value"));
            assert!(!format!("{settings:?}").contains("master-token-value"));
            assert!(settings.onboarding.master_auth_token.is_some());
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_reported_with_their_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ENGAGENINJA_LOG__PARTITIONS", "many");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("partitions"), "{err}");
            jail.set_env("ENGAGENINJA_LOG__PARTITIONS", "4");
            jail.set_env("ENGAGENINJA_LOG__PARTITONS", "4");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("partitons"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_documented_file_parses_to_the_defaults() {
        // In a jail: the other tests' jails set variables the settings read, and a jail holds a
        // lock that keeps them out while this one runs.
        figment::Jail::expect_with(|_| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/engageninja.toml");
            let documented = Settings::load(Some(&path)).unwrap();
            assert_eq!(format!("{documented:?}"), format!("{:?}", Settings::default()));
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(Settings::load(Some(Path::new("/nonexistent/engageninja.toml"))).is_err());
    }
}
