//! The dispatch loop on the embedded log and store, with a provider that records every call:
//! dead letters, admission refusals with their reasons, no second send on redelivery, offsets
//! committed once outcomes are durable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::config::{DispatcherSettings, Settings};
use common::log::{ConsumerEvent, MessageLog, OutgoingRecord, Topic};
use common::store::{StatusUpdate, Store, Suppression, SuppressionReason, Tenant, TenantStatus};
use common::{MessageId, MessageStatus, TenantId};
use dispatcher::admission::Providers;
use dispatcher::intake::Dispatcher;
use dispatcher::provider::{Lookup, OutboundMessage, Provider, SendOutcome};
use dispatcher::status::StatusWriter;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts everything and remembers what it was asked to send.
#[derive(Default)]
struct RecordingProvider {
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Provider for RecordingProvider {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        let mut sent = self.sent.lock().unwrap();
        batch
            .iter()
            .map(|message| {
                sent.push(message.envelope.message_id.to_string());
                SendOutcome::Accepted {
                    provider_message_id: format!("rec-{}", message.envelope.message_id),
                }
            })
            .collect()
    }

    async fn lookup(&self, _message: &common::store::MessageRecord) -> Lookup {
        Lookup::Unavailable
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
}

impl Harness {
    /// Runs a dispatcher until `expected` status changes were written, then stops it.
    async fn dispatch_until(&self, expected: usize) {
        let mut events = self.events.subscribe();
        let status = StatusWriter::start(Arc::clone(&self.store), self.events.clone(), &self.tracker);
        let providers = Providers {
            demo: Arc::clone(&self.provider) as Arc<dyn Provider>,
            live: Default::default(),
        };
        let dispatcher = Dispatcher::new(
            Arc::clone(&self.store),
            Arc::clone(&self.log),
            providers,
            status,
            self.settings.clone(),
        );
        let cancel = CancellationToken::new();
        let running = tokio::spawn(dispatcher.run(cancel.clone()));
        for seen in 0..expected {
            tokio::time::timeout(Duration::from_secs(20), events.recv())
                .await
                .unwrap_or_else(|_| panic!("only {seen} of {expected} status changes"))
                .unwrap();
        }
        cancel.cancel();
        running.await.unwrap().unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_dead_letters_and_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    settings.log.partitions = 3;
    let (log, store) = common::backends::open_embedded(&settings).await.unwrap();
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
    for _ in 0..5 {
        if let ConsumerEvent::Records(records) = dead.poll(100, Duration::from_millis(100)).await.unwrap() {
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
