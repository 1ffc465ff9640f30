//! The benchmark scenarios, run in process so that they measure the product, not a client.
//!
//! - `embedded`: the whole dispatcher (embedded log and store) from a log full of messages to
//!   every one durably `sent`, with the demo provider or (`--simulator 1`) live tenants sending
//!   over HTTP to the provider simulator.
//! - `scaled`: the same on Kafka and Cassandra (`ENGAGENINJA_KAFKA_BOOTSTRAP`,
//!   `ENGAGENINJA_CASSANDRA_CONTACT`), with the CQL requests per message and, given its pid in
//!   `ENGAGENINJA_CASSANDRA_PID`, Cassandra's CPU per 1,000 messages.
//! - `duplicates`: live tenants (a provider that counts its calls) and a log in which a share of
//!   the records repeat a message taken shortly before: throughput and provider calls per id.
//! - `webhooks`: signed Twilio status callbacks over loopback HTTP to the all-in-one stack,
//!   verified with the account's stored token, matched to their message by the id their URL
//!   names and applied durably.
//! - `pacing`: the engine with 10,000 senders at 1 message/s: the share of the allowed rate it
//!   uses, and any one-second window in which a sender went over.
//! - `fairness`: the engine with one tenant's huge backlog saturating the provider: how long a
//!   small tenant's transactional messages wait.
//! - `memory`: the whole dispatcher with a huge backlog in the log: peak resident memory.
//! - `scheduled`: the whole dispatcher with millions of messages scheduled over the next week
//!   mixed with messages due now: peak resident memory while it keeps sending what is due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use common::config::{DispatcherSettings, Settings};
use common::log::{MessageLog, OutgoingRecord, Topic};
use common::provider::{Lookup, OutboundMessage, Provider, SendOutcome};
use common::store::MessageStore;
use common::store::{
    MessageRecord, NumberStatus, ProviderKind, SenderKind, SenderNumber, StatusUpdate, Store, Tenant, TenantStatus,
};
use common::{Envelope, MessageId, MessageStatus, PhoneNumber, Sender, TenantId};
use dispatcher::admission::Providers;
use dispatcher::engine::{Admitted, Engine};
use dispatcher::intake::Dispatcher;
use dispatcher::pacing::Rate;
use dispatcher::provider::demo::DemoProvider;
use dispatcher::route::{PoolSender, Route};
use dispatcher::status::StatusWriter;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::measure::{cpu_seconds, cpu_seconds_of, resident_mib};

/// Run a benchmark scenario in process and print what it measured, as text and as one JSON
/// line.
#[derive(Debug, clap::Args)]
pub(crate) struct ScenarioArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// Embedded log and store: messages/s from the log to durable `sent`, with the demo
    /// provider in process or live tenants over HTTP to the provider simulator.
    Embedded {
        /// Messages in the log.
        #[arg(long, default_value_t = 500_000)]
        messages: usize,
        /// 1: live tenants over HTTP to the provider simulator; 0: the demo provider.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        simulator: u8,
    },
    /// Kafka and Cassandra (ENGAGENINJA_KAFKA_BOOTSTRAP, ENGAGENINJA_CASSANDRA_CONTACT):
    /// messages/s from the log to durable `sent`.
    Scaled {
        /// Messages in the log.
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        /// 1: live tenants over HTTP to the provider simulator; 0: the demo provider.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        simulator: u8,
    },
    /// Duplicate ids mixed into the log, each the copy of a message taken shortly before (queued
    /// behind its sender, in flight or sent): messages/s to durable `sent` and provider calls
    /// per distinct id (exactly 1.00, or the run fails).
    Duplicates {
        /// Distinct messages.
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        /// About this share of the records are duplicates, in percent.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(1..=50))]
        percent: u8,
        /// 1: Kafka and Cassandra; 0: the embedded log and store.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        scaled: u8,
    },
    /// 10,000 senders at 1 message/s: the share of the allowed rate used, and violations.
    Pacing {
        /// How long the senders are measured.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// A small tenant's latency beside another tenant's huge backlog: p50 and p99.
    Fairness {
        /// The big tenant's backlog.
        #[arg(long, default_value_t = 1_000_000)]
        backlog: usize,
    },
    /// Resident memory of the dispatcher with a huge backlog in the log.
    Memory {
        /// Messages in the log.
        #[arg(long, default_value_t = 10_000_000)]
        backlog: usize,
        /// How long the dispatcher runs.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Messages scheduled over the next week mixed into the log with messages due now: resident
    /// memory while the scheduled ones go to the store's schedule and the others are sent.
    Scheduled {
        /// Messages scheduled over the next seven days.
        #[arg(long, default_value_t = 10_000_000)]
        scheduled: usize,
        /// Messages due now, spread evenly among them.
        #[arg(long, default_value_t = 100_000)]
        now: usize,
    },
    /// Signed status callbacks/s verified and applied by the all-in-one stack over HTTP.
    Webhooks {
        /// Callbacks to send (one per message, each `sent` to `delivered`).
        #[arg(long, default_value_t = 100_000)]
        callbacks: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

/// Runs the scenario the arguments name.
pub(crate) async fn run(args: ScenarioArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Embedded { messages, simulator } => embedded(messages, simulator != 0).await,
        Scenario::Scaled { messages, simulator } => scaled(messages, simulator != 0).await,
        Scenario::Duplicates {
            messages,
            percent,
            scaled,
        } => duplicates(messages, percent, scaled != 0).await,
        Scenario::Pacing { seconds } => pacing(seconds).await,
        Scenario::Fairness { backlog } => fairness(backlog).await,
        Scenario::Memory { backlog, seconds } => memory(backlog, seconds).await,
        Scenario::Scheduled { scheduled, now } => scheduled_memory(scheduled, now).await,
        Scenario::Webhooks { callbacks, concurrency } => webhooks(callbacks, concurrency.max(1)).await,
    }
}

/// Prints a measurement line for people and the same as one JSON line for tools.
#[allow(clippy::print_stdout)]
fn report(scenario: &str, text: &str, measured: serde_json::Value) {
    println!("{scenario}: {text}");
    println!("{}", json!({ "scenario": scenario, "measured": measured }));
}

#[allow(clippy::print_stderr)]
fn progress(text: &str) {
    eprintln!("  .. {text}");
}

/// One message's JSON, as a producer would put it on the log.
fn envelope_json(tenant: &str, id: &str, to: &str, priority: &str) -> Vec<u8> {
    format!(
        r#"{{"version":1,"message_id":"{id}","tenant_id":"{tenant}","channel":"sms","to":"{to}","priority":"{priority}","body":"Spring sale: 30% off everything until Sunday. Reply STOP to opt out."}}"#
    )
    .into_bytes()
}

fn envelope(tenant: &str, id: &str, to: &str, priority: &str) -> Envelope {
    Envelope::parse(&envelope_json(tenant, id, to, priority)).expect("the scenario's envelopes are valid")
}

/// A demo tenant with `numbers` sender numbers at `rate`; `index` keeps numbers apart.
async fn demo_tenant(store: &dyn Store, index: usize, id: &str, numbers: usize, rate: f64) -> anyhow::Result<()> {
    let tenant_id = TenantId::parse(id)?;
    store
        .create_tenant(&Tenant {
            id: tenant_id.clone(),
            name: id.to_owned(),
            is_demo: true,
            status: TenantStatus::Active,
            plan_id: None,
            created_by: Some("load".to_owned()),
            created_at: OffsetDateTime::now_utc(),
        })
        .await?;
    for number in sender_numbers(&tenant_id, index, numbers, rate)? {
        store.put_sender_number(&number).await?;
    }
    Ok(())
}

/// `count` long-code numbers of a tenant at `rate`; `index` keeps tenants' numbers apart.
fn sender_numbers(tenant_id: &TenantId, index: usize, count: usize, rate: f64) -> anyhow::Result<Vec<SenderNumber>> {
    (0..count)
        .map(|n| {
            Ok(SenderNumber {
                tenant_id: tenant_id.clone(),
                number: PhoneNumber::parse(format!("+1{:03}555{:04}", 200 + index, n))?,
                kind: SenderKind::LongCode,
                status: NumberStatus::Active,
                twilio_sid: None,
                rate_per_second: Some(rate),
                created_at: OffsetDateTime::now_utc(),
                registration: None,
            })
        })
        .collect()
}

/// What a scenario puts on the log: `distinct` messages and, after every `duplicate_every` of
/// them (0: never), a second copy of the message [`DUPLICATE_LAG`] before (a producer's retry).
#[derive(Debug, Clone, Copy)]
struct Workload {
    distinct: usize,
    duplicate_every: usize,
}

/// How far back (in messages) a duplicate copies: far enough that its first copy is already
/// taken by the dispatcher (queued behind its sender, in flight or sent) when the copy arrives.
const DUPLICATE_LAG: usize = 1_000;

impl Workload {
    /// Every message once.
    fn distinct(messages: usize) -> Self {
        Self {
            distinct: messages,
            duplicate_every: 0,
        }
    }

    /// How many records go on the log.
    fn records(self) -> usize {
        match self.duplicate_every {
            0 => self.distinct,
            every => self.distinct + self.distinct / every,
        }
    }

    /// The index of the message that record `n` carries.
    fn message_of(self, n: usize) -> usize {
        let every = self.duplicate_every;
        if every == 0 {
            return n;
        }
        let (group, place) = (n / (every + 1), n % (every + 1));
        if place < every {
            group * every + place
        } else {
            (group * every + every - 1).saturating_sub(DUPLICATE_LAG)
        }
    }
}

/// The tenant message `m` belongs to.
fn tenant_of(tenants: &[String], m: usize) -> &str {
    &tenants[m % tenants.len()]
}

/// Appends the workload's records spread over `tenants`, in large batches.
async fn fill_log(log: &dyn MessageLog, tenants: &[String], workload: Workload) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let count = workload.records();
    let mut next = 0;
    while next < count {
        let batch: Vec<OutgoingRecord> = (next..count.min(next + 20_000))
            .map(|n| {
                let m = workload.message_of(n);
                let tenant = tenant_of(tenants, m);
                OutgoingRecord {
                    key: tenant.as_bytes().to_vec(),
                    payload: envelope_json(
                        tenant,
                        &format!("m{m}"),
                        &format!("+1646555{:04}", m % 10_000),
                        "marketing",
                    ),
                }
            })
            .collect();
        next += batch.len();
        log.append(Topic::Messages, batch).await?;
        if next % 1_000_000 == 0 {
            progress(&format!("{next} messages in the log"));
        }
    }
    Ok(started.elapsed())
}

/// The parts of a running dispatcher a scenario needs to watch and stop.
struct RunningDispatcher {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), dispatcher::intake::DispatchError>>,
    background: CancellationToken,
    tracker: TaskTracker,
}

fn start_dispatcher(
    settings: &Settings,
    log: Arc<dyn MessageLog>,
    store: Arc<dyn Store>,
    live: HashMap<ProviderKind, Arc<dyn Provider>>,
) -> RunningDispatcher {
    let tracker = TaskTracker::new();
    let background = CancellationToken::new();
    let (events, _) = broadcast::channel::<StatusUpdate>(1024);
    let status = StatusWriter::start(Arc::clone(&store), events, None, None, &tracker);
    let demo = DemoProvider::start(&settings.demo, status.clone(), &tracker, background.clone());
    let providers = Providers {
        demo: Arc::new(demo),
        live,
    };
    let dispatcher = Dispatcher::new(store, log, providers, status, settings.dispatcher.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(cancel.clone()));
    RunningDispatcher {
        cancel,
        task,
        background,
        tracker,
    }
}

impl RunningDispatcher {
    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await??;
        self.background.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        Ok(())
    }
}

fn quiet_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings {
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    settings.dispatcher.poll_batch = 4_096;
    settings.dispatcher.reconcile.interval_secs = 0;
    // One dispatcher and no earlier owner: no sender's pacing to carry over from another.
    settings.dispatcher.assignment_hold_ms = 0;
    settings
}

/// The embedded log and store: the demo provider, or live tenants over HTTP to the provider
/// simulator.
async fn embedded(messages: usize, simulator: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = quiet_settings(dir.path());
    let (log, store) = common::backends::open_embedded(&settings).await?;
    log_to_sent_with("embedded", &mut settings, log, store, simulator, messages).await
}

/// Kafka and Cassandra on this machine: the demo provider, or live tenants over HTTP to the
/// provider simulator.
async fn scaled(messages: usize, simulator: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = quiet_settings(dir.path());
    let (log, store) = open_scaled(&mut settings).await?;
    log_to_sent_with("scaled", &mut settings, log, store, simulator, messages).await
}

/// Points `settings` at Kafka and Cassandra on this machine (`ENGAGENINJA_KAFKA_BOOTSTRAP`,
/// `ENGAGENINJA_CASSANDRA_CONTACT`), in topics and a keyspace of the run's own, and opens them.
async fn open_scaled(settings: &mut Settings) -> anyhow::Result<(Arc<dyn MessageLog>, Arc<dyn Store>)> {
    let unique = format!(
        "bench{}_{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp()
    );
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    settings.on_kafka_and_cassandra(
        &var("ENGAGENINJA_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
        &var("ENGAGENINJA_CASSANDRA_CONTACT", "127.0.0.1:19042"),
        &unique,
    );
    progress("opening kafka topics and the cassandra keyspace");
    Ok(common::backends::open(settings).await?)
}

/// Live tenants whose provider counts its calls, and a log where about `percent`% of the
/// records repeat an earlier message: throughput, and provider calls per distinct message.
async fn duplicates(messages: usize, percent: u8, scaled: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut settings = quiet_settings(dir.path());
    let (log, store) = if scaled {
        open_scaled(&mut settings).await?
    } else {
        common::backends::open_embedded(&settings).await?
    };
    let tenants: Vec<String> = (0..8).map(|n| format!("tenant{n}")).collect();
    live_tenants(store.as_ref(), &tenants).await?;
    let provider = Arc::new(CountingProvider {
        calls: Mutex::new(Vec::new()),
        latency: Duration::ZERO,
    });
    let live = HashMap::from([(ProviderKind::Twilio, Arc::clone(&provider) as Arc<dyn Provider>)]);
    let workload = Workload {
        distinct: messages,
        duplicate_every: usize::from(100 / percent) - 1,
    };
    let (mut text, mut measured) = log_to_sent(&settings, log, store, live, &tenants, workload).await?;
    let mut calls: HashMap<String, usize> = HashMap::with_capacity(messages);
    for call in provider.calls.lock().expect("calls").iter() {
        *calls.entry(call.message_id.clone()).or_default() += 1;
    }
    let total: usize = calls.values().sum();
    let repeated = calls.values().filter(|count| **count > 1).count();
    let duplicates = workload.records() - messages;
    let per_id = total as f64 / calls.len().max(1) as f64;
    text.push_str(&format!(
        "; {duplicates} duplicate records ({:.1}%): {total} provider calls for {} distinct ids, {per_id:.2} per id",
        duplicates as f64 * 100.0 / workload.records() as f64,
        calls.len(),
    ));
    measured["duplicate_records"] = json!(duplicates);
    measured["provider_calls"] = json!(total);
    measured["provider_calls_per_distinct_id"] = json!(per_id);
    let name = if scaled {
        "duplicates-scaled"
    } else {
        "duplicates-embedded"
    };
    report(name, &text, measured);
    if repeated > 0 || calls.len() != messages {
        bail!(
            "{repeated} ids reached the provider more than once; {} of {messages} reached it",
            calls.len()
        );
    }
    Ok(())
}

/// Eight tenants with 16 numbers each, demo tenants or (`simulator`) live tenants whose SMS go
/// over HTTP to the provider simulator without status callbacks (the dispatch path to `sent`,
/// not the webhooks); then [`log_to_sent`].
async fn log_to_sent_with(
    name: &str,
    settings: &mut Settings,
    log: Arc<dyn MessageLog>,
    store: Arc<dyn Store>,
    simulator: bool,
    messages: usize,
) -> anyhow::Result<()> {
    let tenants: Vec<String> = (0..8).map(|n| format!("tenant{n}")).collect();
    if !simulator {
        for (index, tenant) in tenants.iter().enumerate() {
            demo_tenant(store.as_ref(), index, tenant, 16, 10_000.0).await?;
        }
        let workload = Workload::distinct(messages);
        let (text, measured) = log_to_sent(settings, log, store, HashMap::new(), &tenants, workload).await?;
        report(&format!("{name}-demo"), &text, measured);
        return Ok(());
    }
    let running = load::simulator::Simulator::start(load::simulator::SimulatorConfig {
        rate_per_sender: 10_000.0,
        concurrency: 100_000,
        ..load::simulator::SimulatorConfig::default()
    })
    .await?;
    settings.providers.twilio.api_url = running.base_url();
    let keyring = live_tenants(store.as_ref(), &tenants).await?;
    let client = common::twilio::TwilioClient::new(&(&settings.providers.twilio).into())?;
    let credentials = Arc::new(dispatcher::provider::credentials::StoreCredentials::new(
        Arc::clone(&store),
        keyring,
    ));
    let twilio: Arc<dyn Provider> = Arc::new(common::twilio::provider::TwilioProvider::new(client, credentials, None));
    let live = HashMap::from([(ProviderKind::Twilio, twilio)]);
    let result = log_to_sent(settings, log, store, live, &tenants, Workload::distinct(messages)).await;
    let stats = running.shutdown().await?;
    progress(&format!(
        "simulator: {} created, {} refused with 429",
        stats.accepted, stats.too_many_requests
    ));
    let (text, measured) = result?;
    report(&format!("{name}-simulator"), &text, measured);
    Ok(())
}

/// Makes `tenants` live Twilio tenants with 16 sender numbers each at 10,000 messages/s;
/// answers the keyring that seals their credentials.
async fn live_tenants(store: &dyn Store, tenants: &[String]) -> anyhow::Result<Arc<common::credentials::Keyring>> {
    let keyring = Arc::new(common::credentials::Keyring::parse(&secrecy::SecretString::from(
        format!(
            "k1:{}",
            secrecy::ExposeSecret::expose_secret(&common::credentials::generate_key())
        ),
    ))?);
    for (index, tenant) in tenants.iter().enumerate() {
        let tenant_id = TenantId::parse(tenant.clone())?;
        let numbers = sender_numbers(&tenant_id, index, 16, 10_000.0)?;
        load::fixtures::live_twilio_tenant(store, &keyring, &tenant_id, &[common::Channel::Sms], &numbers).await?;
    }
    Ok(keyring)
}

/// Fills the log with the workload over `tenants`, starts a dispatcher, and measures until
/// every message is durably past `queued`: a line for people and the same as JSON.
async fn log_to_sent(
    settings: &Settings,
    log: Arc<dyn MessageLog>,
    store: Arc<dyn Store>,
    live: HashMap<ProviderKind, Arc<dyn Provider>>,
    tenants: &[String],
    workload: Workload,
) -> anyhow::Result<(String, serde_json::Value)> {
    let (messages, records) = (workload.distinct, workload.records());
    progress(&format!("appending {records} records ({messages} distinct messages)"));
    let append_time = fill_log(log.as_ref(), tenants, workload).await?;
    let requests_before = store.backend_requests();
    // Cassandra's own CPU over the same window, when the store is Cassandra and its pid given.
    let database: Option<u32> = std::env::var("ENGAGENINJA_CASSANDRA_PID")
        .ok()
        .filter(|_| requests_before.is_some())
        .and_then(|pid| pid.trim().parse().ok());
    let database_cpu_before = database.map(|pid| cpu_seconds_of(Some(pid)));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let running = start_dispatcher(settings, Arc::clone(&log), Arc::clone(&store), live);
    // Done when the last message of every tenant is past `queued` and nothing is queued.
    let all_ids: Vec<(TenantId, MessageId)> = (0..messages)
        .map(|m| {
            Ok((
                TenantId::parse(tenant_of(tenants, m))?,
                MessageId::parse(format!("m{m}"))?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let last_ids = &all_ids[messages.saturating_sub(tenants.len())..];
    // The store reads this loop makes itself, left out of the requests per message.
    let mut own_reads = 0;
    let (elapsed, cpu, requests, database_cpu_after) = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        own_reads += last_ids.len() as u64;
        if queued_among(store.as_ref(), last_ids).await? > 0 {
            continue;
        }
        // The last ones are done: check every message (the time, CPU and requests counted end
        // where the check that finds none left begins).
        let checked_at = (
            started.elapsed(),
            cpu_seconds() - cpu_before,
            store.backend_requests(),
            database.map(|pid| cpu_seconds_of(Some(pid))),
        );
        own_reads += all_ids.len() as u64;
        let left = queued_among(store.as_ref(), &all_ids).await?;
        if left == 0 {
            break checked_at;
        }
        progress(&format!("{left} messages still queued"));
    };
    running.stop().await?;
    let (_, peak) = resident_mib();
    let rate = messages as f64 / elapsed.as_secs_f64();
    let cpu_per_1000 = cpu * 1_000_000.0 / messages as f64;
    let append_rate = records as f64 / append_time.as_secs_f64();
    let mut text = format!(
        "{messages} messages from the log to durable sent in {:.2} s: {rate:.0} messages/s; {cpu:.1} CPU-s ({cpu_per_1000:.1} ms per 1,000 messages); peak RSS {peak:.0} MiB (log filled at {append_rate:.0} records/s)",
        elapsed.as_secs_f64(),
    );
    let mut measured = json!({"messages": messages, "records": records, "seconds": elapsed.as_secs_f64(),
        "messages_per_second": rate, "cpu_seconds": cpu, "cpu_ms_per_1000_messages": cpu_per_1000,
        "peak_rss_mib": peak, "append_records_per_second": append_rate});
    if let (Some(before), Some(after)) = (requests_before, requests) {
        // The loop's own reads before the last check, which is not counted.
        let own = own_reads - all_ids.len() as u64;
        let per_message = after.saturating_sub(before).saturating_sub(own) as f64 / messages as f64;
        text.push_str(&format!("; {per_message:.2} CQL requests per message"));
        measured["cql_requests_per_message"] = json!(per_message);
    }
    if let (Some(before), Some(after)) = (database_cpu_before, database_cpu_after) {
        let per_1000 = (after - before) * 1_000_000.0 / messages as f64;
        text.push_str(&format!("; Cassandra {per_1000:.1} ms CPU per 1,000 messages"));
        measured["cassandra_cpu_ms_per_1000_messages"] = json!(per_1000);
    }
    Ok((text, measured))
}

/// How many of `ids` are absent or still `queued`, read 256 at a time.
async fn queued_among(store: &dyn Store, ids: &[(TenantId, MessageId)]) -> anyhow::Result<usize> {
    use futures_util::{StreamExt as _, TryStreamExt as _};
    let done: Vec<bool> = futures_util::stream::iter(ids)
        .map(|(tenant, id)| async move {
            let record = store.message(tenant, id).await?;
            Ok::<_, anyhow::Error>(record.is_some_and(|record| record.status != MessageStatus::Queued))
        })
        .buffer_unordered(256)
        .try_collect()
        .await?;
    Ok(done.iter().filter(|done| !**done).count())
}

/// Records each call's sender, message id, call instant and pacing instant, after an optional
/// latency.
struct CountingProvider {
    calls: Mutex<Vec<Call>>,
    latency: Duration,
}

struct Call {
    sender: String,
    message_id: String,
    at: Instant,
    paced_at: Instant,
}

#[async_trait]
impl Provider for CountingProvider {
    fn name(&self) -> &'static str {
        "counting"
    }

    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        let at = Instant::now();
        self.calls
            .lock()
            .expect("calls")
            .extend(batch.iter().map(|message| Call {
                sender: message.sender.to_string(),
                message_id: message.envelope.message_id.to_string(),
                at,
                paced_at: message.paced_at,
            }));
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        batch
            .iter()
            .map(|_| SendOutcome::Accepted {
                provider_message_id: "x".to_owned(),
            })
            .collect()
    }

    async fn lookup(&self, _message: &MessageRecord) -> Lookup {
        Lookup::Unavailable
    }
}

fn pool_route(
    provider: &Arc<CountingProvider>,
    account: &str,
    numbers: &[String],
    rate: f64,
    concurrency: usize,
) -> Arc<Route> {
    Arc::new(Route {
        provider: Arc::clone(provider) as Arc<dyn Provider>,
        account: Arc::from(account),
        account_concurrency: concurrency,
        senders: numbers
            .iter()
            .map(|number| PoolSender {
                key: Arc::from(number.as_str()),
                sender: Sender::Phone(PhoneNumber::parse(number.clone()).expect("valid")),
                rate: Rate::per_second(rate),
            })
            .collect(),
        daily_cap: None,
    })
}

struct EngineRun {
    admit: mpsc::Sender<Admitted>,
    drain: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    next_offset: u64,
}

fn start_engine(settings: &DispatcherSettings) -> EngineRun {
    let (reports, mut reports_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move { while reports_rx.recv().await.is_some() {} });
    let (admit, admitted) = mpsc::channel(1 << 16);
    let drain = CancellationToken::new();
    let task = tokio::spawn(Engine::new(settings, reports).run(admitted, drain.clone()));
    EngineRun {
        admit,
        drain,
        task,
        next_offset: 0,
    }
}

impl EngineRun {
    async fn admit(&mut self, envelope: Envelope, route: &Arc<Route>) -> anyhow::Result<()> {
        self.next_offset += 1;
        let admitted = Admitted {
            envelope,
            segments: 1,
            partition: 0,
            offset: self.next_offset,
            route: Arc::clone(route),
            quota: None,
            admitted_at: Instant::now(),
            accepted_at: time::OffsetDateTime::now_utc(),
        };
        self.admit
            .send(admitted)
            .await
            .map_err(|_| anyhow::anyhow!("the engine stopped"))
    }

    /// Waits until the engine has taken everything admitted so far.
    async fn settled(&self) {
        while self.admit.capacity() < self.admit.max_capacity() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.drain.cancel();
        self.task.await?;
        Ok(())
    }
}

async fn pacing(seconds: u64) -> anyhow::Result<()> {
    const SENDERS: usize = 10_000;
    const PER_TENANT: usize = 100;
    let provider = Arc::new(CountingProvider {
        calls: Mutex::new(Vec::new()),
        latency: Duration::ZERO,
    });
    let mut settings = DispatcherSettings {
        max_in_flight: SENDERS,
        ..DispatcherSettings::default()
    };
    settings.quantum = PER_TENANT as u32;
    let mut engine = start_engine(&settings);
    let routes: Vec<(String, Arc<Route>)> = (0..SENDERS / PER_TENANT)
        .map(|tenant| {
            let numbers: Vec<String> = (0..PER_TENANT)
                .map(|n| format!("+1{:03}555{:04}", 200 + tenant, n))
                .collect();
            (
                format!("t{tenant}"),
                pool_route(&provider, &format!("acct{tenant}"), &numbers, 1.0, SENDERS),
            )
        })
        .collect();
    let per_sender = seconds as usize + 2;
    progress(&format!(
        "admitting {} messages for {SENDERS} senders",
        SENDERS * per_sender
    ));
    let cpu_before = cpu_seconds();
    for round in 0..per_sender {
        for (tenant, route) in &routes {
            for (n, sender) in route.senders.iter().enumerate() {
                let mut message = envelope(tenant, &format!("{tenant}-{round}-{n}"), "+12125550100", "marketing");
                message.from = Some(sender.sender.clone());
                engine.admit(message, route).await?;
            }
        }
    }
    engine.settled().await;
    let first = provider
        .calls
        .lock()
        .expect("calls")
        .iter()
        .map(|call| call.at)
        .min()
        .context("nothing was sent")?;
    let window_end = first + Duration::from_secs(seconds);
    tokio::time::sleep_until(window_end + Duration::from_secs(1)).await;
    let cpu = cpu_seconds() - cpu_before;
    engine.stop().await?;

    let calls = std::mem::take(&mut *provider.calls.lock().expect("calls"));
    let in_window = calls
        .iter()
        .filter(|call| call.at >= first && call.at < window_end)
        .count();
    let allowed = SENDERS * seconds as usize;
    let paced = violations(calls.iter().map(|call| (call.sender.as_str(), call.paced_at)));
    let called = violations(calls.iter().map(|call| (call.sender.as_str(), call.at)));
    let efficiency = in_window as f64 / allowed as f64 * 100.0;
    report(
        "pacing",
        &format!(
            "{SENDERS} senders at 1 msg/s for {seconds} s: {in_window} of {allowed} allowed sends ({efficiency:.2}%); \
             windows over the rate: {} as paced (tightest gap {:.1} ms), {} as the provider saw the calls (tightest gap {:.1} ms); {cpu:.1} CPU-s",
            paced.0,
            paced.1.as_secs_f64() * 1e3,
            called.0,
            called.1.as_secs_f64() * 1e3,
        ),
        json!({"senders": SENDERS, "seconds": seconds, "sent": in_window, "allowed": allowed,
               "efficiency_percent": efficiency, "violations_paced": paced.0, "tightest_gap_paced_ms": paced.1.as_secs_f64() * 1e3,
               "violations_at_provider": called.0, "tightest_gap_at_provider_ms": called.1.as_secs_f64() * 1e3,
               "cpu_seconds": cpu}),
    );
    Ok(())
}

/// For senders at 1 message/s: how many pairs of consecutive sends are less than a second apart
/// (two sends in one one-second window), and the tightest gap.
fn violations<'a>(sends: impl Iterator<Item = (&'a str, Instant)>) -> (usize, Duration) {
    let mut by_sender: HashMap<&str, Vec<Instant>> = HashMap::new();
    for (sender, at) in sends {
        by_sender.entry(sender).or_default().push(at);
    }
    let mut count = 0;
    let mut tightest = Duration::MAX;
    for instants in by_sender.values_mut() {
        instants.sort();
        for pair in instants.windows(2) {
            let gap = pair[1] - pair[0];
            tightest = tightest.min(gap);
            if gap < Duration::from_secs(1) {
                count += 1;
            }
        }
    }
    (count, tightest)
}

async fn fairness(backlog: usize) -> anyhow::Result<()> {
    let provider = Arc::new(CountingProvider {
        calls: Mutex::new(Vec::new()),
        latency: Duration::from_millis(10),
    });
    let settings = DispatcherSettings {
        max_in_flight: 256,
        ..DispatcherSettings::default()
    };
    let mut engine = start_engine(&settings);
    let big_numbers: Vec<String> = (0..200).map(|n| format!("+1646556{n:04}")).collect();
    let big = pool_route(&provider, "acct-big", &big_numbers, 1_000_000.0, 256);
    let small = pool_route(&provider, "acct-small", &["+12125550199".to_owned()], 1_000.0, 16);
    progress(&format!("admitting a backlog of {backlog} messages"));
    let base = envelope("big", "b", "+16465550100", "marketing");
    for n in 0..backlog {
        let mut message = base.clone();
        message.message_id = MessageId::parse(format!("b{n}"))?;
        engine.admit(message, &big).await?;
    }
    engine.settled().await;
    let samples = 500;
    let mut admitted: HashMap<String, Instant> = HashMap::with_capacity(samples);
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    for n in 0..samples {
        ticks.tick().await;
        let id = format!("otp{n}");
        admitted.insert(id.clone(), Instant::now());
        engine
            .admit(envelope("small", &id, "+12125550100", "transactional"), &small)
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine.stop().await?;
    let calls = std::mem::take(&mut *provider.calls.lock().expect("calls"));
    let big_sent = calls.iter().filter(|call| call.message_id.starts_with('b')).count();
    let mut latencies: Vec<Duration> = calls
        .iter()
        .filter_map(|call| admitted.get(&call.message_id).map(|admitted_at| call.at - *admitted_at))
        .collect();
    if latencies.len() != samples {
        bail!("only {} of {samples} small-tenant messages were sent", latencies.len());
    }
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).min(latencies.len()) - 1];
    let (p50, p99, max) = (percentile(0.50), percentile(0.99), *latencies.last().expect("samples"));
    let backlog_left = backlog - big_sent;
    report(
        "fairness",
        &format!(
            "beside a {backlog}-message backlog ({big_sent} of it sent meanwhile, {backlog_left} still waiting), a small tenant's transactional messages waited p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        ),
        json!({"backlog": backlog, "backlog_sent_meanwhile": big_sent, "samples": samples,
               "p50_ms": p50.as_secs_f64() * 1e3, "p99_ms": p99.as_secs_f64() * 1e3, "max_ms": max.as_secs_f64() * 1e3}),
    );
    Ok(())
}

/// The embedded log and store with eight demo tenants of four numbers at 100 messages/s.
async fn embedded_demo_tenants(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn MessageLog>, Arc<dyn Store>, Vec<String>)> {
    let (log, store) = common::backends::open_embedded(settings).await?;
    let tenants: Vec<String> = (0..8).map(|n| format!("tenant{n}")).collect();
    for (index, tenant) in tenants.iter().enumerate() {
        demo_tenant(store.as_ref(), index, tenant, 4, 100.0).await?;
    }
    Ok((log, store, tenants))
}

async fn memory(backlog: usize, seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = quiet_settings(dir.path());
    let (log, store, tenants) = embedded_demo_tenants(&settings).await?;
    progress(&format!("appending a backlog of {backlog} messages"));
    let append_time = fill_log(log.as_ref(), &tenants, Workload::distinct(backlog)).await?;
    let (after_fill, _) = resident_mib();
    let running = start_dispatcher(&settings, Arc::clone(&log), Arc::clone(&store), HashMap::new());
    let mut peak_running: f64 = 0.0;
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (now, _) = resident_mib();
        peak_running = peak_running.max(now);
    }
    running.stop().await?;
    let (_, peak) = resident_mib();
    report(
        "memory",
        &format!(
            "{backlog} messages waiting in the log (filled in {:.0} s): resident {after_fill:.0} MiB before dispatching, at most {peak_running:.0} MiB while dispatching for {seconds} s; process peak {peak:.0} MiB",
            append_time.as_secs_f64()
        ),
        json!({"backlog": backlog, "seconds": seconds, "rss_before_mib": after_fill,
               "rss_max_dispatching_mib": peak_running, "peak_rss_mib": peak}),
    );
    Ok(())
}

/// `scheduled` messages with `not_before` spread over the next seven days and `due` messages
/// due now, interleaved in the log; the dispatcher runs until every scheduled one is in the
/// store's schedule and every due one is durably `sent`, its resident memory sampled every
/// 100 ms.
async fn scheduled_memory(scheduled: usize, due: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = quiet_settings(dir.path());
    let (log, store, tenants) = embedded_demo_tenants(&settings).await?;
    let records = scheduled + due;
    // One in `every` records is due now.
    let every = (records / due.max(1)).max(1);
    let week_ms = 7 * 86_400_000_i64;
    let start = OffsetDateTime::now_utc() + Duration::from_secs(3_600);
    progress(&format!("appending {scheduled} scheduled and {due} due messages"));
    let filled = Instant::now();
    // The last scheduled record of each tenant: once it is in the schedule, all before it are.
    let mut last_scheduled: Vec<Option<usize>> = vec![None; tenants.len()];
    let (mut next, mut due_ids) = (0, Vec::new());
    while next < records {
        let batch: Vec<OutgoingRecord> = (next..records.min(next + 20_000))
            .map(|n| {
                let tenant = tenant_of(&tenants, n);
                let to = format!("+1646555{:04}", n % 10_000);
                let mut payload = envelope_json(tenant, &format!("m{n}"), &to, "marketing");
                if n % every == 0 && due_ids.len() < due {
                    due_ids.push(n);
                } else {
                    // Spread over the week, in no order.
                    let offset_ms = (n as i64).wrapping_mul(7_919_993) % week_ms;
                    let not_before = (start + time::Duration::milliseconds(offset_ms))
                        .format(&time::format_description::well_known::Rfc3339)
                        .expect("a valid time");
                    payload.pop();
                    payload.extend_from_slice(format!(r#","not_before":"{not_before}"}}"#).as_bytes());
                    last_scheduled[n % tenants.len()] = Some(n);
                }
                OutgoingRecord {
                    key: tenant.as_bytes().to_vec(),
                    payload,
                }
            })
            .collect();
        next += batch.len();
        log.append(Topic::Messages, batch).await?;
        if next % 1_000_000 == 0 {
            progress(&format!("{next} records in the log"));
        }
    }
    let fill_time = filled.elapsed();
    let (rss_before, _) = resident_mib();
    let ids = |numbers: &[usize]| -> anyhow::Result<Vec<(TenantId, MessageId)>> {
        numbers
            .iter()
            .map(|&n| {
                Ok((
                    TenantId::parse(tenant_of(&tenants, n))?,
                    MessageId::parse(format!("m{n}"))?,
                ))
            })
            .collect()
    };
    let due_ids = ids(&due_ids)?;
    let last_scheduled = ids(&last_scheduled.into_iter().flatten().collect::<Vec<_>>())?;

    let started = Instant::now();
    let running = start_dispatcher(&settings, Arc::clone(&log), Arc::clone(&store), HashMap::new());
    let mut peak_rss: f64 = 0.0;
    let mut due_sent_after = None;
    let mut last_check = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak_rss = peak_rss.max(resident_mib().0);
        if last_check.elapsed() < Duration::from_secs(2) {
            continue;
        }
        last_check = Instant::now();
        if due_sent_after.is_none() && queued_among(store.as_ref(), &due_ids).await? == 0 {
            due_sent_after = Some(started.elapsed());
        }
        let mut in_schedule = 0;
        for (tenant, id) in &last_scheduled {
            if store.scheduled(tenant, id).await?.is_some() {
                in_schedule += 1;
            }
        }
        if in_schedule == last_scheduled.len() && due_sent_after.is_some() {
            break;
        }
        progress(&format!(
            "{:.0} s: due messages all sent: {}; resident {peak_rss:.0} MiB at most",
            started.elapsed().as_secs_f64(),
            due_sent_after.is_some()
        ));
    }
    let elapsed = started.elapsed();
    running.stop().await?;
    let due_sent_after = due_sent_after.unwrap_or(elapsed);
    report(
        "scheduled",
        &format!(
            "{scheduled} messages scheduled over the next week and {due} due now (log filled in {:.0} s): all scheduled in the store in {:.0} s ({:.0} records/s); the due ones all sent within {:.1} s; resident {rss_before:.0} MiB before, at most {peak_rss:.0} MiB while dispatching",
            fill_time.as_secs_f64(),
            elapsed.as_secs_f64(),
            records as f64 / elapsed.as_secs_f64(),
            due_sent_after.as_secs_f64(),
        ),
        json!({"scheduled": scheduled, "due": due, "seconds": elapsed.as_secs_f64(),
               "records_per_second": records as f64 / elapsed.as_secs_f64(),
               "due_sent_seconds": due_sent_after.as_secs_f64(),
               "rss_before_mib": rss_before, "rss_max_dispatching_mib": peak_rss}),
    );
    Ok(())
}

/// Signed Twilio status callbacks (`sent` to `delivered`) over loopback HTTP to the all-in-one
/// stack on the embedded log and store: each verified with the account's token from the store,
/// matched to its message by the id its URL names and applied through the status writer before
/// it is answered. The callbacks are signed before the clock starts; the HTTP client shares the
/// process (and its CPU) with the stack.
async fn webhooks(callbacks: usize, concurrency: usize) -> anyhow::Result<()> {
    use common::twilio::signature::{SIGNATURE_HEADER, compute};
    use futures_util::stream::{self, StreamExt};
    use load::simulator::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN};

    let dir = tempfile::tempdir()?;
    let mut settings = quiet_settings(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    settings.admin.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    settings.admin.ops_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.demo.bootstrap = false;
    let keys = secrecy::SecretString::from(format!(
        "k1:{}",
        secrecy::ExposeSecret::expose_secret(&common::credentials::generate_key())
    ));
    let keyring = common::credentials::Keyring::parse(&keys)?;
    settings.credentials.keys = Some(keys);

    progress(&format!("seeding {callbacks} messages in sent"));
    let tenant = TenantId::parse("acme")?;
    let sid = |n: usize| format!("SM{n:032x}");
    {
        let store = common::store::sqlite::SqliteStore::open(&settings.store_path()).await?;
        let numbers = sender_numbers(&tenant, 0, 1, 100.0)?;
        load::fixtures::live_twilio_tenant(&store, &keyring, &tenant, &[common::Channel::Sms], &numbers).await?;
        let now = OffsetDateTime::now_utc();
        for chunk in (0..callbacks).collect::<Vec<_>>().chunks(5_000) {
            let messages: Vec<common::store::NewMessage> = chunk
                .iter()
                .map(|n| {
                    Ok(common::store::NewMessage {
                        tenant_id: tenant.clone(),
                        message_id: MessageId::parse(format!("m{n}"))?,
                        campaign_id: None,
                        channel: common::Channel::Sms,
                        recipient: "+16465550100".to_owned(),
                        priority: common::Priority::Marketing,
                        segments: 1,
                        accepted_at: now,
                        position: common::log::RecordPosition {
                            partition: 0,
                            offset: *n as u64,
                        },
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            store.claim_messages(&messages).await?;
            let sent: Vec<StatusUpdate> = messages
                .iter()
                .zip(chunk)
                .map(|(message, n)| StatusUpdate {
                    tenant_id: tenant.clone(),
                    message_id: message.message_id.clone(),
                    status: MessageStatus::Sent,
                    at: now,
                    reason: None,
                    provider_message_id: Some(sid(*n)),
                    held: Some(common::store::Held {
                        accepted_at: now,
                        campaign_id: None,
                    }),
                })
                .collect();
            store.apply_status(&sent).await?;
        }
    }

    let stack = engageninja::testing::spawn(settings.clone(), engageninja::stack::Role::AllInOne).await?;
    let base = format!("http://127.0.0.1:{port}/webhooks/twilio/status");
    let requests: Vec<(String, String, String)> = (0..callbacks)
        .map(|n| {
            // The URL names the message, as the dispatcher's StatusCallback does.
            let url = common::twilio::status_callback_url(&base, &tenant, &MessageId::parse(format!("m{n}"))?);
            let params = vec![
                ("AccountSid".to_owned(), DEFAULT_ACCOUNT_SID.to_owned()),
                ("MessageSid".to_owned(), sid(n)),
                ("MessageStatus".to_owned(), "delivered".to_owned()),
                ("To".to_owned(), "+16465550100".to_owned()),
                ("From".to_owned(), "+12005550000".to_owned()),
                ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ];
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish();
            let signature = compute(DEFAULT_AUTH_TOKEN, &url, &params);
            Ok((url, body, signature))
        })
        .collect::<anyhow::Result<_>>()?;
    let client = reqwest::Client::new();
    progress(&format!("{callbacks} callbacks, {concurrency} in flight"));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let answers: Vec<anyhow::Result<Duration>> = stream::iter(requests.into_iter().map(|(url, body, signature)| {
        let client = client.clone();
        async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .header(SIGNATURE_HEADER, signature)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await?;
            if response.status() != reqwest::StatusCode::NO_CONTENT {
                bail!("callback answered {}", response.status());
            }
            Ok(sent.elapsed())
        }
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let mut latencies = answers.into_iter().collect::<anyhow::Result<Vec<Duration>>>()?;
    stack.stopped().await.map_err(anyhow::Error::from_boxed)?;

    // Every message must now be delivered, durably.
    let store = common::store::sqlite::SqliteStore::open(&settings.store_path()).await?;
    let mut delivered = 0;
    for n in 0..callbacks {
        let record = store.message(&tenant, &MessageId::parse(format!("m{n}"))?).await?;
        if record.is_some_and(|record| record.status == MessageStatus::Delivered) {
            delivered += 1;
        }
    }
    if delivered != callbacks {
        bail!("{} of {callbacks} callbacks were not applied", callbacks - delivered);
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1_000.0;
    let rate = callbacks as f64 / elapsed.as_secs_f64();
    report(
        "webhooks",
        &format!(
            "{callbacks} signed callbacks verified and applied in {:.2} s: {rate:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms; {:.1} CPU-s ({:.1} ms per 1,000, client included)",
            elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            cpu,
            cpu * 1_000_000.0 / callbacks as f64,
        ),
        json!({"callbacks": callbacks, "seconds": elapsed.as_secs_f64(), "callbacks_per_second": rate,
               "p50_ms": at(0.5), "p99_ms": at(0.99), "cpu_seconds": cpu,
               "cpu_ms_per_1000_callbacks": cpu * 1_000_000.0 / callbacks as f64}),
    );
    Ok(())
}
