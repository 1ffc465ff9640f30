//! The dispatch loop with a provider that records every call: dead letters, admission
//! refusals with their reasons, no second send on redelivery, offsets committed once outcomes
//! are durable.
//!
//! Every test runs on both backend pairs: `embedded::` on the embedded log and SQLite,
//! `kafka_cassandra::` on Kafka and Cassandra given by `ENGAGENINJA_KAFKA_BOOTSTRAP` and
//! `ENGAGENINJA_CASSANDRA_CONTACT` (`.ci/test` starts both; unset, those are skipped with the
//! reason, except under `CI`, where they fail), each test on topics and a keyspace of its own.

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::config::{DispatcherSettings, KafkaSettings, Settings};
use common::log::{ConsumerEvent, MessageLog, OutgoingRecord, Topic};
use common::provider::{Lookup, OutboundMessage, Provider, SendOutcome};
use common::store::{
    Brand, BrandStatus, ChannelCredentials, NumberStatus, Plan, ProviderKind, SenderKind, SenderNumber, StatusUpdate,
    Store, Suppression, SuppressionReason, Tenant, TenantStatus,
};
use common::{Channel, MessageId, MessageStatus, PhoneNumber, TenantId};
use dispatcher::admission::Providers;
use dispatcher::intake::Dispatcher;
use dispatcher::status::StatusWriter;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The backend pair a test runs on.
#[derive(Debug, Clone, Copy)]
enum Backends {
    /// The embedded log and SQLite, under the test's directory.
    Embedded,
    /// Kafka and Cassandra, on topics and a keyspace of the test's own.
    KafkaCassandra,
}

/// Opens `backends` with `settings` (the embedded ones under `settings.data_dir`); `None`, with
/// the reason on stderr, when Kafka and Cassandra are not given.
async fn open(backends: Backends, settings: &mut Settings) -> Option<(Arc<dyn MessageLog>, Arc<dyn Store>)> {
    if let Backends::KafkaCassandra = backends {
        const KAFKA: &str = "ENGAGENINJA_KAFKA_BOOTSTRAP";
        const CASSANDRA: &str = "ENGAGENINJA_CASSANDRA_CONTACT";
        let (Ok(kafka), Ok(cassandra)) = (std::env::var(KAFKA), std::env::var(CASSANDRA)) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{KAFKA} and {CASSANDRA} must be set in CI: .ci/test starts both engines"
            );
            let _ = writeln!(
                std::io::stderr(),
                "skipping a kafka_cassandra pipeline test: {KAFKA} and {CASSANDRA} are not both set"
            );
            return None;
        };
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "p{}_{}_{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        settings.on_kafka_and_cassandra(&kafka, &cassandra, &unique);
    }
    Some(common::backends::open(settings).await.expect("the backends open"))
}

/// Each named test (an `async fn(Backends)`) on both backend pairs.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backends::Embedded).await;
                }
            )*
        }
        mod kafka_cassandra {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backends::KafkaCassandra).await;
                }
            )*
        }
    };
}

on_both_backends!(
    admission_dead_letters_and_redelivery,
    channel_readiness_and_quota_in_segments,
    a_crash_mid_stream_loses_nothing,
    reconciliation_settles_stuck_messages,
    a_recipient_the_provider_reports_unsubscribed_is_suppressed,
    a_batch_resubmitted_while_its_first_copies_wait_is_sent_once,
    a_campaign_send_retried_while_the_first_is_in_progress_reaches_each_recipient_once,
    duplicates_across_a_rebalance_are_sent_once,
    a_callback_before_the_sent_record_is_kept,
    a_record_on_another_partition_is_moved_to_its_owner,
    a_message_due_later_waits_in_the_store_until_released,
    a_marketing_text_outside_quiet_hours_waits_for_the_window,
);

/// Remembers what it was asked to send; refuses ids starting with `bad` for good, and answers
/// ids starting with `gone` as opted out, as Twilio does for a recipient who unsubscribed (21610).
#[derive(Default)]
struct RecordingProvider {
    sent: Mutex<Vec<String>>,
    latency: Duration,
    /// Where to apply a `delivered` callback for each message before answering the send, as
    /// Twilio's callbacks can beat the dispatcher's own record of `sent`.
    early_callbacks: std::sync::OnceLock<Arc<dyn Store>>,
}

#[async_trait]
impl Provider for RecordingProvider {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        self.sent
            .lock()
            .unwrap()
            .extend(batch.iter().map(|message| message.envelope.message_id.to_string()));
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if let Some(store) = self.early_callbacks.get() {
            let callbacks: Vec<StatusUpdate> = batch
                .iter()
                .map(|message| StatusUpdate {
                    tenant_id: message.envelope.tenant_id.clone(),
                    message_id: message.envelope.message_id.clone(),
                    status: MessageStatus::Delivered,
                    at: OffsetDateTime::now_utc(),
                    reason: None,
                    provider_message_id: Some(format!("rec-{}", message.envelope.message_id)),
                    held: None,
                })
                .collect();
            store.apply_status(&callbacks).await.unwrap();
        }
        batch
            .iter()
            .map(|message| match message.envelope.message_id.as_str() {
                id if id.starts_with("bad") => SendOutcome::Failed {
                    code: "21211".to_owned(),
                },
                id if id.starts_with("gone") => SendOutcome::OptedOut {
                    code: "21610".to_owned(),
                },
                id => SendOutcome::Accepted {
                    provider_message_id: format!("rec-{id}"),
                },
            })
            .collect()
    }

    /// What reconciliation may hear about a message whose send's answer was lost: found by
    /// its recipient (`found...`), or never created (`never...`).
    async fn lookup(&self, message: &common::store::MessageRecord) -> Lookup {
        match message.message_id.as_str() {
            id if id.starts_with("found") => Lookup::Found {
                provider_message_id: format!("rec-{id}"),
                status: MessageStatus::Delivered,
                reason: None,
            },
            id if id.starts_with("never") => Lookup::NeverCreated,
            _ => Lookup::Unavailable,
        }
    }
}

fn tenant(id: &str, is_demo: bool, status: TenantStatus) -> Tenant {
    Tenant {
        id: TenantId::parse(id).unwrap(),
        name: id.to_owned(),
        is_demo,
        status,
        plan_id: None,
        created_by: None,
        created_at: OffsetDateTime::now_utc(),
    }
}

fn envelope(tenant: &str, id: &str, to: &str, extra: Value) -> OutgoingRecord {
    let mut value =
        json!({"version": 1, "message_id": id, "tenant_id": tenant, "channel": "sms", "to": to, "body": "hello"});
    for (key, field) in extra.as_object().unwrap() {
        value[key] = field.clone();
    }
    OutgoingRecord {
        key: tenant.as_bytes().to_vec(),
        payload: serde_json::to_vec(&value).unwrap(),
    }
}

struct Harness {
    log: Arc<dyn MessageLog>,
    store: Arc<dyn Store>,
    provider: Arc<RecordingProvider>,
    events: broadcast::Sender<StatusUpdate>,
    tracker: TaskTracker,
    settings: DispatcherSettings,
    kafka: KafkaSettings,
}

impl Harness {
    /// Starts a dispatcher whose provider, demo and live SMS alike, is the recording one.
    fn start(
        &self,
    ) -> (
        tokio::task::JoinHandle<Result<(), dispatcher::intake::DispatchError>>,
        CancellationToken,
    ) {
        let status = StatusWriter::start(
            Arc::clone(&self.store),
            self.events.clone(),
            Some(Arc::clone(&self.log)),
            Some(Arc::clone(&self.log)),
            &self.tracker,
        );
        let provider = Arc::clone(&self.provider) as Arc<dyn Provider>;
        let providers = Providers {
            demo: Arc::clone(&provider),
            live: [(ProviderKind::Twilio, provider)].into(),
        };
        let dispatcher = Dispatcher::new(
            Arc::clone(&self.store),
            Arc::clone(&self.log),
            providers,
            status,
            self.settings.clone(),
        );
        let cancel = CancellationToken::new();
        (tokio::spawn(dispatcher.run(cancel.clone())), cancel)
    }

    /// Runs a dispatcher until `expected` status changes were written, then stops it.
    async fn dispatch_until(&self, expected: usize) {
        let mut events = self.events.subscribe();
        let (running, cancel) = self.start();
        for seen in 0..expected {
            tokio::time::timeout(Duration::from_secs(20), events.recv())
                .await
                .unwrap_or_else(|_| panic!("only {seen} of {expected} status changes"))
                .unwrap();
        }
        cancel.cancel();
        running.await.unwrap().unwrap();
    }

    /// Appends `after`, a new message for `acme`'s one sender, and waits until it is sent: the
    /// sender sends in order, so by then every record appended before it was read and sorted.
    async fn send_after_and_wait(&self) {
        self.log
            .append(
                Topic::Messages,
                vec![envelope("acme", "after", "+12125550100", json!({}))],
            )
            .await
            .unwrap();
        wait_until_sent(self.store.as_ref(), "acme", "after").await;
    }

    async fn status_of(&self, tenant: &str, id: &str) -> (MessageStatus, Option<String>) {
        let record = self
            .store
            .message(&TenantId::parse(tenant).unwrap(), &MessageId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{tenant}/{id} stored"));
        (record.status, record.reason)
    }
}

async fn admission_dead_letters_and_redelivery(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    settings.log.partitions = 3;
    let Some((log, store)) = open(backends, &mut settings).await else {
        return;
    };
    store
        .create_tenant(&tenant("acme", true, TenantStatus::Active))
        .await
        .unwrap();
    store
        .create_tenant(&tenant("frozen", true, TenantStatus::Suspended))
        .await
        .unwrap();
    store
        .create_tenant(&tenant("live", false, TenantStatus::Active))
        .await
        .unwrap();
    without_quiet_hours(store.as_ref(), "live").await;
    store
        .suppress(&Suppression {
            tenant_id: TenantId::parse("acme").unwrap(),
            address: "+14155550199".to_owned(),
            reason: SuppressionReason::OptOut,
            source: Some("STOP".to_owned()),
            created_at: OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
    let mut dispatcher_settings = settings.dispatcher.clone();
    dispatcher_settings.poll_wait_ms = 20;
    let harness = Harness {
        log: Arc::clone(&log),
        store,
        provider: Arc::default(),
        events: broadcast::channel(1024).0,
        tracker: TaskTracker::new(),
        settings: dispatcher_settings,
        kafka: settings.log.kafka.clone(),
    };

    let malformed = OutgoingRecord {
        key: b"acme".to_vec(),
        payload: b"{\"version\": 1, \"message_id\": 7}".to_vec(),
    };
    let mut wrong_key = envelope("acme", "wrong-key", "+14155550100", json!({}));
    wrong_key.key = b"globex".to_vec();
    log.append(
        Topic::Messages,
        vec![
            envelope("acme", "ok-1", "+14155550100", json!({})),
            envelope("acme", "ok-1", "+14155550100", json!({})),
            malformed,
            wrong_key,
            envelope("ghost", "g-1", "+14155550100", json!({})),
            envelope("frozen", "f-1", "+14155550100", json!({})),
            envelope("live", "l-1", "+14155550100", json!({})),
            envelope("acme", "stop-1", "+14155550199", json!({})),
            envelope(
                "acme",
                "old-1",
                "+14155550100",
                json!({"expires_at": "2020-01-01T00:00:00Z"}),
            ),
        ],
    )
    .await
    .unwrap();
    // ok-1 sent; ghost, frozen, live, stop-1, old-1 refused.
    harness.dispatch_until(6).await;

    assert_eq!(harness.status_of("acme", "ok-1").await, (MessageStatus::Sent, None));
    let refused = [
        ("ghost", "g-1", MessageStatus::Rejected, "TENANT_UNKNOWN"),
        ("frozen", "f-1", MessageStatus::Rejected, "TENANT_SUSPENDED"),
        ("live", "l-1", MessageStatus::Rejected, "CHANNEL_NOT_CONFIGURED"),
        ("acme", "stop-1", MessageStatus::Suppressed, "RECIPIENT_SUPPRESSED"),
        ("acme", "old-1", MessageStatus::Expired, "EXPIRED"),
    ];
    for (tenant, id, status, reason) in refused {
        assert_eq!(
            harness.status_of(tenant, id).await,
            (status, Some(reason.to_owned())),
            "{tenant}/{id}"
        );
    }
    assert_eq!(
        *harness.provider.sent.lock().unwrap(),
        ["ok-1"],
        "one send, refused ones never reach the provider"
    );

    let mut dead = log.consumer(Topic::DeadLetters, "ops").await.unwrap();
    let mut reasons = Vec::new();
    // Until both are in, and one poll more to see that nothing else is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut extra_polls = 1;
    while (reasons.len() < 2 || extra_polls > 0) && tokio::time::Instant::now() < deadline {
        if reasons.len() >= 2 {
            extra_polls -= 1;
        }
        if let ConsumerEvent::Records(records) = dead.poll(100, Duration::from_millis(300)).await.unwrap() {
            for record in records {
                let body: Value = serde_json::from_slice(&record.payload).unwrap();
                assert!(body["payload"].is_string(), "the original record is kept");
                reasons.push((body["error"]["code"].to_string(), body["error"]["field"].to_string()));
            }
        }
    }
    reasons.sort();
    let expected = [("invalid_field", "message_id"), ("invalid_field", "tenant_id")]
        .map(|(code, field)| (format!("\"{code}\""), format!("\"{field}\"")));
    assert_eq!(reasons, expected);

    // A producer retry after everything was committed: still no second send, nothing re-read.
    log.append(
        Topic::Messages,
        vec![
            envelope("acme", "ok-1", "+14155550100", json!({})),
            envelope("acme", "ok-2", "+14155550100", json!({})),
        ],
    )
    .await
    .unwrap();
    harness.dispatch_until(1).await;
    assert_eq!(*harness.provider.sent.lock().unwrap(), ["ok-1", "ok-2"]);
}

/// How many times the provider was called for each id.
fn calls_per_id(provider: &RecordingProvider) -> std::collections::BTreeMap<String, usize> {
    let mut calls = std::collections::BTreeMap::new();
    for id in provider.sent.lock().unwrap().iter() {
        *calls.entry(id.clone()).or_default() += 1;
    }
    calls
}

/// Waits until `tenant`/`id` is stored as `sent` (generous: the machine may be busy).
async fn wait_until_sent(store: &dyn Store, tenant: &str, id: &str) {
    let (tenant, id) = (TenantId::parse(tenant).unwrap(), MessageId::parse(id).unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let record = store.message(&tenant, &id).await.unwrap();
        if record.as_ref().map(|record| record.status) == Some(MessageStatus::Sent) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tenant}/{id} never sent: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A harness with the demo tenant `acme` and one demo sender at 5 messages a second, so that
/// what is appended for it waits in its queue for seconds; the provider answers after `latency`.
async fn slow_sender_harness(backends: Backends, dir: &std::path::Path, latency: Duration) -> Option<Harness> {
    let provider = RecordingProvider {
        latency,
        ..RecordingProvider::default()
    };
    let mut harness = harness(backends, dir, provider).await?;
    harness.settings.pacing.demo = 5.0;
    harness
        .store
        .create_tenant(&tenant("acme", true, TenantStatus::Active))
        .await
        .unwrap();
    Some(harness)
}

/// A client retries a batch (the same ids) while its first copies still wait for their sender,
/// and once more while one is in flight: each id reaches the provider once. A record after the
/// copies, for the same sender, is sent only after everything queued before it, so once it is
/// sent every copy has been read and sorted.
async fn a_batch_resubmitted_while_its_first_copies_wait_is_sent_once(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = slow_sender_harness(backends, dir.path(), Duration::from_millis(50)).await else {
        return;
    };
    let batch = |prefix: &str| -> Vec<OutgoingRecord> {
        (0..15)
            .map(|n| envelope("acme", &format!("{prefix}-{n}"), "+12125550100", json!({})))
            .collect()
    };
    harness.log.append(Topic::Messages, batch("dup")).await.unwrap();
    let (running, cancel) = harness.start();
    wait_until_sent(harness.store.as_ref(), "acme", "dup-0").await;
    // Resubmitted while most wait for the sender, again in one record each, then a new one.
    harness.log.append(Topic::Messages, batch("dup")).await.unwrap();
    for record in batch("dup").into_iter().rev() {
        harness.log.append(Topic::Messages, vec![record]).await.unwrap();
    }
    harness.send_after_and_wait().await;
    cancel.cancel();
    running.await.unwrap().unwrap();

    let calls = calls_per_id(&harness.provider);
    let mut expected: std::collections::BTreeMap<String, usize> = (0..15).map(|n| (format!("dup-{n}"), 1)).collect();
    expected.insert("after".to_owned(), 1);
    assert_eq!(calls, expected, "one provider call per id");
    for n in 0..15 {
        let record = harness
            .store
            .message(
                &TenantId::parse("acme").unwrap(),
                &MessageId::parse(format!("dup-{n}")).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        let statuses: Vec<MessageStatus> = record.history.iter().map(|change| change.status).collect();
        assert_eq!(
            statuses,
            [MessageStatus::Queued, MessageStatus::Sent],
            "dup-{n}: history untouched"
        );
    }
}

/// A message due later than the dispatcher keeps in memory waits in the store's schedule,
/// unclaimed (a record produced twice is scheduled once); appended again when due (the admin
/// API's release, done by hand here), it is claimed and sent once, not before its time.
async fn a_message_due_later_waits_in_the_store_until_released(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut harness) = slow_sender_harness(backends, dir.path(), Duration::ZERO).await else {
        return;
    };
    // Anything ahead goes to the schedule; due late enough for a busy machine to read it first.
    harness.settings.scheduled_in_memory_ms = 0;
    let due = OffsetDateTime::now_utc() + Duration::from_secs(20);
    let not_before = due.format(&time::format_description::well_known::Rfc3339).unwrap();
    let later = || envelope("acme", "later", "+12125550101", json!({"not_before": not_before}));
    harness.log.append(Topic::Messages, vec![later()]).await.unwrap();
    harness.log.append(Topic::Messages, vec![later()]).await.unwrap();
    let (running, cancel) = harness.start();
    harness.send_after_and_wait().await;

    let (acme, id) = (TenantId::parse("acme").unwrap(), MessageId::parse("later").unwrap());
    let scheduled = harness
        .store
        .scheduled(&acme, &id)
        .await
        .unwrap()
        .expect("in the schedule");
    assert_eq!(scheduled.due_at.unix_timestamp(), due.unix_timestamp());
    assert!(
        harness.store.message(&acme, &id).await.unwrap().is_none(),
        "not claimed yet"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let released = loop {
        let page = harness
            .store
            .due_scheduled(OffsetDateTime::now_utc(), 100)
            .await
            .unwrap();
        if !page.is_empty() {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "never due");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(released, vec![scheduled]);
    let records = released
        .iter()
        .map(|message| OutgoingRecord::for_tenant(&message.tenant_id, message.envelope.clone()))
        .collect();
    harness.log.append(Topic::Messages, records).await.unwrap();
    harness.store.forget_scheduled(&released).await.unwrap();
    wait_until_sent(harness.store.as_ref(), "acme", "later").await;
    cancel.cancel();
    running.await.unwrap().unwrap();

    let record = harness.store.message(&acme, &id).await.unwrap().unwrap();
    let sent_at = record.history.last().unwrap().at;
    assert!(
        sent_at >= due - Duration::from_millis(1),
        "sent at {sent_at}, due {due}"
    );
    assert_eq!(calls_per_id(&harness.provider).get("later"), Some(&1));
    assert_eq!(harness.store.scheduled(&acme, &id).await.unwrap(), None);
}

/// A live tenant's marketing text outside its quiet hours is held, durably, until the window
/// of the recipient's local time opens; a transactional one goes at once.
async fn a_marketing_text_outside_quiet_hours_waits_for_the_window(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = harness(backends, dir.path(), RecordingProvider::default()).await else {
        return;
    };
    ready_sms_tenant(harness.store.as_ref(), "acme", BrandStatus::Approved, true, None).await;
    // A number whose area code names no zone is in the tenant's (UTC here); the window opens
    // in two hours, so it is closed now.
    let now = OffsetDateTime::now_utc();
    let start = (now.hour() + 2) % 24;
    let acme = TenantId::parse("acme").unwrap();
    let settings = common::store::TenantSettings {
        quiet_hours: Some(format!("{start:02}:00-{:02}:00", (start + 1) % 24).parse().unwrap()),
        time_zone: common::quiet_hours::Zone::named("UTC").unwrap(),
        ..common::store::TenantSettings::default()
    };
    harness.store.set_tenant_settings(&acme, &settings).await.unwrap();
    let opens = now.replace_time(time::Time::from_hms(start, 0, 0).unwrap());
    let opens = if opens <= now {
        opens + Duration::from_secs(86_400)
    } else {
        opens
    };
    harness
        .log
        .append(
            Topic::Messages,
            vec![
                envelope("acme", "sale", "+447700900123", json!({})),
                envelope("acme", "code", "+447700900123", json!({"priority": "transactional"})),
            ],
        )
        .await
        .unwrap();
    let (running, cancel) = harness.start();
    wait_until_sent(harness.store.as_ref(), "acme", "code").await;
    cancel.cancel();
    running.await.unwrap().unwrap();

    let id = MessageId::parse("sale").unwrap();
    let held = harness
        .store
        .scheduled(&acme, &id)
        .await
        .unwrap()
        .expect("held in the schedule");
    assert_eq!(held.due_at, opens);
    assert!(
        harness.store.message(&acme, &id).await.unwrap().is_none(),
        "not claimed yet"
    );
    assert_eq!(calls_per_id(&harness.provider).get("sale"), None);
}

/// A campaign service retries a campaign send (the same recipients, so the same ids) while the
/// first send is still in progress: each recipient is reached once and the campaign counts
/// each message once.
async fn a_campaign_send_retried_while_the_first_is_in_progress_reaches_each_recipient_once(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = slow_sender_harness(backends, dir.path(), Duration::from_millis(20)).await else {
        return;
    };
    let recipients = 12;
    let send = || -> Vec<OutgoingRecord> {
        (0..recipients)
            .map(|n| {
                envelope(
                    "acme",
                    &format!("spring-{n}"),
                    "+12125550100",
                    json!({"campaign_id": "spring", "body": format!("Spring sale, recipient {n}")}),
                )
            })
            .collect()
    };
    harness.log.append(Topic::Messages, send()).await.unwrap();
    let (running, cancel) = harness.start();
    wait_until_sent(harness.store.as_ref(), "acme", "spring-0").await;
    harness.log.append(Topic::Messages, send()).await.unwrap();
    harness.send_after_and_wait().await;
    cancel.cancel();
    running.await.unwrap().unwrap();

    let calls = calls_per_id(&harness.provider);
    let over: Vec<_> = calls.iter().filter(|(_, count)| **count != 1).collect();
    assert!(over.is_empty(), "ids sent more than once: {over:?}");
    assert_eq!(calls.len(), recipients + 1, "every recipient and `after` reached");
    let counts = harness
        .store
        .campaign_counts(
            &TenantId::parse("acme").unwrap(),
            &common::CampaignId::parse("spring").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        counts,
        [(MessageStatus::Sent, recipients as u64)],
        "each message counted once"
    );
}

/// Two dispatchers in one consumer group (Kafka only: the embedded log has one consumer per
/// group): the first holds a slow sender's batch, the second joins (a rebalance hands the
/// partitions over), and the batch is produced again and again around the handover. Each id
/// reaches the provider once.
async fn duplicates_across_a_rebalance_are_sent_once(backends: Backends) {
    if let Backends::Embedded = backends {
        let _ = writeln!(
            std::io::stderr(),
            "skipping the embedded run: the embedded log has one consumer per group, so no rebalance"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(mut harness) = harness(backends, dir.path(), RecordingProvider::default()).await else {
        return;
    };
    harness.settings.pacing.demo = 10.0;
    harness.settings.assignment_hold_ms = 200;
    let tenants = ["acme", "globex", "initech", "umbrella"];
    for name in tenants {
        harness
            .store
            .create_tenant(&tenant(name, true, TenantStatus::Active))
            .await
            .unwrap();
    }
    let batch = |round: usize| -> Vec<OutgoingRecord> {
        let mut records = Vec::new();
        for name in tenants {
            records.extend((0..20).map(|n| envelope(name, &format!("r-{n}"), "+12125550100", json!({}))));
        }
        if round > 0 {
            records.extend(tenants.map(|name| envelope(name, &format!("last-{round}"), "+12125550100", json!({}))));
        }
        records
    };
    harness.log.append(Topic::Messages, batch(0)).await.unwrap();
    let (first, stop_first) = harness.start();
    wait_until_sent(harness.store.as_ref(), "acme", "r-0").await;
    harness.log.append(Topic::Messages, batch(1)).await.unwrap();
    let (second, stop_second) = harness.start();
    harness.log.append(Topic::Messages, batch(2)).await.unwrap();
    for name in tenants {
        wait_until_sent(harness.store.as_ref(), name, "last-2").await;
    }
    // The first one leaves: everything moves to the second; the batch comes once more.
    stop_first.cancel();
    first.await.unwrap().unwrap();
    harness.log.append(Topic::Messages, batch(3)).await.unwrap();
    for name in tenants {
        wait_until_sent(harness.store.as_ref(), name, "last-3").await;
    }
    stop_second.cancel();
    second.await.unwrap().unwrap();

    let calls = calls_per_id(&harness.provider);
    // The provider sees bare message ids; four tenants use the same ones.
    let over: Vec<_> = calls.iter().filter(|(_, count)| **count != tenants.len()).collect();
    assert!(over.is_empty(), "ids not sent once per tenant: {over:?}");
    assert_eq!(calls.len(), 20 + 3, "r-0..r-19 and last-1..last-3");
}

/// A producer with a partitioner of its own (Kafka only: the embedded log places every record
/// itself) puts a tenant's records on the wrong partition, one of them twice: each is moved to
/// the tenant's partition and dispatched from there, once.
async fn a_record_on_another_partition_is_moved_to_its_owner(backends: Backends) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    if let Backends::Embedded = backends {
        let _ = writeln!(
            std::io::stderr(),
            "skipping the embedded run: the embedded log places every record by its key"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = harness(backends, dir.path(), RecordingProvider::default()).await else {
        return;
    };
    harness
        .store
        .create_tenant(&tenant("acme", true, TenantStatus::Active))
        .await
        .unwrap();
    let partitions = harness.log.partitions(Topic::Messages);
    let owner = common::log::partition_for(b"acme", partitions);
    let wrong = (owner + 1) % partitions;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &harness.kafka.bootstrap_servers)
        .create()
        .unwrap();
    let topic = format!("{}{}", harness.kafka.topic_prefix, Topic::Messages.name());
    for id in ["moved-0", "moved-1", "moved-1", "moved-2"] {
        let record = envelope("acme", id, "+12125550100", json!({}));
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(wrong as i32)
                    .key(&record.key)
                    .payload(&record.payload),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
    }
    let (running, cancel) = harness.start();
    for id in ["moved-0", "moved-1", "moved-2"] {
        wait_until_sent(harness.store.as_ref(), "acme", id).await;
    }
    cancel.cancel();
    running.await.unwrap().unwrap();

    let calls = calls_per_id(&harness.provider);
    assert_eq!(
        calls,
        [("moved-0", 1), ("moved-1", 1), ("moved-2", 1)]
            .map(|(id, count)| (id.to_owned(), count))
            .into()
    );
    let ids: Vec<_> = ["moved-0", "moved-1", "moved-2"]
        .map(|id| (TenantId::parse("acme").unwrap(), MessageId::parse(id).unwrap()))
        .into();
    for (claim, (_, id)) in harness.store.claims(&ids).await.unwrap().into_iter().zip(&ids) {
        let position = claim.and_then(|claim| claim.position);
        assert_eq!(
            position.map(|position| position.partition),
            Some(owner),
            "{id} claimed from its tenant's partition"
        );
    }
}

/// The provider's `delivered` callback is applied before its answer to the send reaches the
/// dispatcher, which then records `sent` (without reading the message): every message ends
/// `delivered`, with the provider's id, and its history has each status once.
async fn a_callback_before_the_sent_record_is_kept(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = harness(backends, dir.path(), RecordingProvider::default()).await else {
        return;
    };
    assert!(harness.provider.early_callbacks.set(Arc::clone(&harness.store)).is_ok());
    harness
        .store
        .create_tenant(&tenant("acme", true, TenantStatus::Active))
        .await
        .unwrap();
    let records: Vec<OutgoingRecord> = (0..50)
        .map(|n| envelope("acme", &format!("early-{n}"), "+12125550100", json!({})))
        .collect();
    harness.log.append(Topic::Messages, records).await.unwrap();
    let (running, cancel) = harness.start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while harness.provider.sent.lock().unwrap().len() < 50 {
        assert!(tokio::time::Instant::now() < deadline, "not every message was sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A stop records the outcome of every send before it returns.
    cancel.cancel();
    running.await.unwrap().unwrap();
    for n in 0..50 {
        let record = harness
            .store
            .message(
                &TenantId::parse("acme").unwrap(),
                &MessageId::parse(format!("early-{n}")).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record.status,
            MessageStatus::Delivered,
            "early-{n}: {:?}",
            record.history
        );
        assert_eq!(record.provider_message_id, Some(format!("rec-early-{n}")));
        let statuses: Vec<MessageStatus> = record.history.iter().map(|change| change.status).collect();
        assert_eq!(statuses.first(), Some(&MessageStatus::Queued), "early-{n}");
        assert_eq!(statuses.last(), Some(&MessageStatus::Delivered), "early-{n}");
        let mut unique = statuses.clone();
        unique.dedup();
        assert_eq!(unique, statuses, "early-{n}: each status once");
    }
}

/// A harness over fresh `backends` (the embedded ones in `dir`); `None` when they are not given.
async fn harness(backends: Backends, dir: &std::path::Path, provider: RecordingProvider) -> Option<Harness> {
    let mut settings = Settings {
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    settings.log.partitions = 2;
    settings.dispatcher.poll_wait_ms = 20;
    settings.dispatcher.pacing.demo = 10_000.0;
    let (log, store) = open(backends, &mut settings).await?;
    Some(Harness {
        log,
        store,
        provider: Arc::new(provider),
        events: broadcast::channel(1 << 16).0,
        tracker: TaskTracker::new(),
        settings: settings.dispatcher,
        kafka: settings.log.kafka,
    })
}

/// Turns a live tenant's quiet hours off: these tests send at any hour of the runner's clock.
async fn without_quiet_hours(store: &dyn Store, id: &str) {
    let settings = common::store::TenantSettings {
        quiet_hours: None,
        ..common::store::TenantSettings::default()
    };
    store
        .set_tenant_settings(&TenantId::parse(id).unwrap(), &settings)
        .await
        .unwrap();
}

/// A tenant ready to send SMS for real: verified credentials, an approved brand, one number.
async fn ready_sms_tenant(store: &dyn Store, id: &str, brand: BrandStatus, verified: bool, plan: Option<&str>) {
    let tenant_id = TenantId::parse(id).unwrap();
    let now = OffsetDateTime::now_utc();
    store
        .create_tenant(&Tenant {
            plan_id: plan.map(str::to_owned),
            ..tenant(id, false, TenantStatus::Active)
        })
        .await
        .unwrap();
    without_quiet_hours(store, id).await;
    store
        .put_credentials(&ChannelCredentials {
            tenant_id: tenant_id.clone(),
            channel: Channel::Sms,
            provider: ProviderKind::Twilio,
            settings: json!({"account_sid": format!("AC{id}")}),
            key_id: "test".to_owned(),
            sealed_secrets: vec![1, 2, 3],
            is_verified: verified,
            verification_error: None,
            updated_at: now,
        })
        .await
        .unwrap();
    store
        .put_brand(&Brand {
            tenant_id: tenant_id.clone(),
            status: brand,
            status_reason: None,
            trust_score: Some(80),
            workflow_step: "done".to_owned(),
            workflow_attempts: 0,
            twilio_sids: Default::default(),
            updated_at: now,
            approved_at: None,
        })
        .await
        .unwrap();
    let number = format!("+1415555{:04}", id.len() * 7);
    store
        .put_sender_number(&SenderNumber {
            tenant_id,
            number: PhoneNumber::parse(number).unwrap(),
            kind: SenderKind::LongCode,
            status: NumberStatus::Active,
            twilio_sid: None,
            rate_per_second: Some(1_000.0),
            created_at: now,
            registration: None,
        })
        .await
        .unwrap();
}

async fn channel_readiness_and_quota_in_segments(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = harness(backends, dir.path(), RecordingProvider::default()).await else {
        return;
    };
    let store = harness.store.as_ref();
    store
        .put_plan(&Plan {
            id: "starter".into(),
            name: "Starter".into(),
            monthly_quota: [(Channel::Sms, 5)].into(),
        })
        .await
        .unwrap();
    ready_sms_tenant(store, "paid", BrandStatus::Approved, true, Some("starter")).await;
    ready_sms_tenant(store, "pending", BrandStatus::Pending, true, None).await;
    ready_sms_tenant(store, "rejected", BrandStatus::Failed, true, None).await;
    ready_sms_tenant(store, "unverified", BrandStatus::Approved, false, None).await;
    store
        .create_tenant(&tenant("nobrand", false, TenantStatus::Active))
        .await
        .unwrap();
    without_quiet_hours(store, "nobrand").await;
    let two_segments = "x".repeat(200);
    let sms = |tenant: &str, id: &str| envelope(tenant, id, "+12125550100", json!({"body": two_segments}));

    harness
        .log
        .append(
            Topic::Messages,
            vec![
                sms("paid", "q-1"),
                sms("paid", "bad-1"),
                envelope("paid", "spoof", "+12125550100", json!({"from": "+19995550000"})),
                sms("pending", "p-1"),
                sms("rejected", "r-1"),
                sms("unverified", "u-1"),
                sms("nobrand", "n-1"),
            ],
        )
        .await
        .unwrap();
    harness.dispatch_until(7).await;
    let expected = [
        ("paid", "q-1", MessageStatus::Sent, None),
        ("paid", "bad-1", MessageStatus::Failed, Some("21211")),
        ("paid", "spoof", MessageStatus::Rejected, Some("SENDER_NOT_ALLOWED")),
        ("pending", "p-1", MessageStatus::Rejected, Some("WAIT_FOR_APPROVAL")),
        ("rejected", "r-1", MessageStatus::Rejected, Some("UPDATE_BUSINESS_INFO")),
        (
            "unverified",
            "u-1",
            MessageStatus::Rejected,
            Some("CREDENTIALS_UNVERIFIED"),
        ),
        (
            "nobrand",
            "n-1",
            MessageStatus::Rejected,
            Some("CHANNEL_NOT_CONFIGURED"),
        ),
    ];
    for (tenant, id, status, reason) in expected {
        assert_eq!(
            harness.status_of(tenant, id).await,
            (status, reason.map(str::to_owned)),
            "{tenant}/{id}"
        );
    }
    let period = common::store::period_of(OffsetDateTime::now_utc());
    let paid = TenantId::parse("paid").unwrap();
    assert_eq!(
        store.usage(&paid, Channel::Sms, &period).await.unwrap(),
        2,
        "the failed send gave its 2 segments back"
    );

    harness
        .log
        .append(Topic::Messages, vec![sms("paid", "q-2"), sms("paid", "q-3")])
        .await
        .unwrap();
    harness.dispatch_until(2).await;
    assert_eq!(harness.status_of("paid", "q-2").await, (MessageStatus::Sent, None));
    assert_eq!(
        harness.status_of("paid", "q-3").await,
        (MessageStatus::Rejected, Some("QUOTA_EXHAUSTED".to_owned()))
    );
    assert_eq!(store.usage(&paid, Channel::Sms, &period).await.unwrap(), 4);
    let sent = harness.provider.sent.lock().unwrap().clone();
    assert_eq!(
        sent,
        ["q-1", "bad-1", "q-2"],
        "refused messages never reach the provider"
    );
}

async fn a_crash_mid_stream_loses_nothing(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let provider = RecordingProvider {
        latency: Duration::from_millis(2),
        ..RecordingProvider::default()
    };
    let Some(harness) = harness(backends, dir.path(), provider).await else {
        return;
    };
    harness
        .store
        .create_tenant(&tenant("acme", true, TenantStatus::Active))
        .await
        .unwrap();
    harness
        .store
        .create_tenant(&tenant("globex", true, TenantStatus::Active))
        .await
        .unwrap();
    let total = 2_000;
    let records: Vec<OutgoingRecord> = (0..total)
        .map(|n| {
            let tenant = if n % 2 == 0 { "acme" } else { "globex" };
            envelope(
                tenant,
                &format!("m-{n}"),
                &format!("+1212555{:04}", n % 10_000),
                json!({}),
            )
        })
        .collect();
    harness.log.append(Topic::Messages, records).await.unwrap();

    let mut events = harness.events.subscribe();
    let (running, _cancel) = harness.start();
    for _ in 0..total / 4 {
        events.recv().await.unwrap();
    }
    running.abort();
    let _ = running.await;
    let sent_before_restart = harness.provider.sent.lock().unwrap().len();

    let (running, cancel) = harness.start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut missing = Vec::new();
    loop {
        missing.clear();
        for n in 0..total {
            let tenant = if n % 2 == 0 { "acme" } else { "globex" };
            let id = MessageId::parse(format!("m-{n}")).unwrap();
            let record = harness
                .store
                .message(&TenantId::parse(tenant).unwrap(), &id)
                .await
                .unwrap();
            if record.as_ref().map(|record| record.status) != Some(MessageStatus::Sent) {
                missing.push(n);
            }
        }
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    running.await.unwrap().unwrap();
    assert!(missing.is_empty(), "never sent: {missing:?}");

    let sent = harness.provider.sent.lock().unwrap().clone();
    let mut calls: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for id in &sent {
        *calls.entry(id.as_str()).or_default() += 1;
    }
    let resent = calls.values().filter(|count| **count > 1).count();
    assert_eq!(calls.len(), total, "every message reached the provider");
    assert!(
        calls.values().all(|count| *count <= 2),
        "at most one resend, for what was in flight at the crash"
    );
    assert!(resent <= harness.settings.max_in_flight, "{resent} resent");
    eprintln!("crash after {sent_before_restart} provider calls: {resent} messages were sent again after the restart");
    for n in (0..total).step_by(97) {
        let tenant = if n % 2 == 0 { "acme" } else { "globex" };
        let id = MessageId::parse(format!("m-{n}")).unwrap();
        let record = harness
            .store
            .message(&TenantId::parse(tenant).unwrap(), &id)
            .await
            .unwrap()
            .unwrap();
        let sent_entries = record
            .history
            .iter()
            .filter(|change| change.status == MessageStatus::Sent)
            .count();
        assert_eq!(sent_entries, 1, "one terminal send outcome for m-{n}");
    }
}

async fn reconciliation_settles_stuck_messages(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = harness(backends, dir.path(), RecordingProvider::default()).await else {
        return;
    };
    let store = harness.store.as_ref();
    store
        .create_tenant(&tenant("acme", true, TenantStatus::Active))
        .await
        .unwrap();
    // A live tenant's stuck messages go to the provider its channel's credentials are for.
    ready_sms_tenant(store, "paid", BrandStatus::Approved, true, None).await;
    let long_ago = OffsetDateTime::now_utc() - Duration::from_secs(7_200);
    let claim = |id: &str| common::store::NewMessage {
        tenant_id: TenantId::parse(if id.starts_with("found") || id.starts_with("never") {
            "paid"
        } else {
            "acme"
        })
        .unwrap(),
        message_id: MessageId::parse(id).unwrap(),
        campaign_id: None,
        channel: Channel::Sms,
        recipient: "+12125550100".to_owned(),
        priority: common::Priority::Marketing,
        segments: 1,
        accepted_at: long_ago,
        position: common::log::RecordPosition {
            partition: 0,
            offset: u64::from(id.as_bytes()[0]),
        },
    };
    store
        .claim_messages(&[
            claim("quiet"),
            claim("lost"),
            claim("fresh"),
            claim("found-1"),
            claim("never-1"),
        ])
        .await
        .unwrap();
    let set = |id: &str, status, provider_id: Option<&str>, at| StatusUpdate {
        tenant_id: TenantId::parse(if id.starts_with("found") || id.starts_with("never") {
            "paid"
        } else {
            "acme"
        })
        .unwrap(),
        message_id: MessageId::parse(id).unwrap(),
        status,
        at,
        reason: None,
        provider_message_id: provider_id.map(str::to_owned),
        held: None,
    };
    let now = OffsetDateTime::now_utc();
    store
        .apply_status(&[
            set("quiet", MessageStatus::Sent, Some("demo-1"), long_ago),
            set("lost", MessageStatus::Unknown, None, long_ago),
            set("fresh", MessageStatus::Sent, Some("demo-2"), now),
            set("found-1", MessageStatus::Unknown, None, long_ago),
            set("never-1", MessageStatus::Unknown, None, long_ago),
        ])
        .await
        .unwrap();
    let status = StatusWriter::start(
        Arc::clone(&harness.store),
        harness.events.clone(),
        None,
        None,
        &harness.tracker,
    );
    let demo = dispatcher::provider::demo::DemoProvider::start(
        &common::config::DemoSettings::default(),
        status.clone(),
        &harness.tracker,
        CancellationToken::new(),
    );
    let live: Arc<dyn Provider> = Arc::new(RecordingProvider::default());
    let providers = Providers {
        demo: Arc::new(demo),
        live: [(ProviderKind::Twilio, live)].into_iter().collect(),
    };
    let settings = common::config::ReconcileSettings {
        interval_secs: 1,
        stuck_after_secs: 3_600,
        batch: 100,
    };
    let changed = dispatcher::reconcile::reconcile_once(store, &providers, &status, &settings)
        .await
        .unwrap();
    assert_eq!(changed, 3);
    let found = store
        .message(&TenantId::parse("paid").unwrap(), &MessageId::parse("found-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.status, found.provider_message_id.as_deref()),
        (MessageStatus::Delivered, Some("rec-found-1")),
        "a lost answer's message, found by the provider, keeps its id from now on"
    );
    assert_eq!(
        harness.status_of("paid", "never-1").await,
        (
            MessageStatus::Failed,
            Some(dispatcher::reconcile::NEVER_CREATED.to_owned())
        ),
        "a message the provider never created failed: nothing was sent"
    );
    assert_eq!(
        harness.status_of("acme", "quiet").await.0,
        MessageStatus::Delivered,
        "the provider says delivered"
    );
    assert_eq!(
        harness.status_of("acme", "lost").await.0,
        MessageStatus::Unknown,
        "without a provider id nothing proves it was or was not sent"
    );
    assert_eq!(
        harness.status_of("acme", "fresh").await.0,
        MessageStatus::Sent,
        "not stuck yet"
    );
}

async fn a_recipient_the_provider_reports_unsubscribed_is_suppressed(backends: Backends) {
    let dir = tempfile::tempdir().unwrap();
    let Some(harness) = harness(backends, dir.path(), RecordingProvider::default()).await else {
        return;
    };
    ready_sms_tenant(harness.store.as_ref(), "paid", BrandStatus::Approved, true, None).await;
    let to = "+12125550142";
    harness
        .log
        .append(Topic::Messages, vec![envelope("paid", "gone-1", to, json!({}))])
        .await
        .unwrap();
    harness.dispatch_until(1).await;
    assert_eq!(
        harness.status_of("paid", "gone-1").await,
        (MessageStatus::Failed, Some("21610".to_owned()))
    );
    let suppression = harness
        .store
        .suppression(&TenantId::parse("paid").unwrap(), to)
        .await
        .unwrap();
    assert_eq!(
        suppression.map(|entry| entry.reason),
        Some(SuppressionReason::ProviderUnsubscribed)
    );

    harness
        .log
        .append(Topic::Messages, vec![envelope("paid", "after-1", to, json!({}))])
        .await
        .unwrap();
    harness.dispatch_until(1).await;
    assert_eq!(
        harness.status_of("paid", "after-1").await,
        (MessageStatus::Suppressed, Some("RECIPIENT_SUPPRESSED".to_owned()))
    );
    assert_eq!(*harness.provider.sent.lock().unwrap(), ["gone-1"]);
}
