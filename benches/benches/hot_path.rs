//! The per-message hot path, without network or disk on the critical path: parse the envelope
//! (serde_json), admit it (tenant, channel readiness and route from the warm directory, one
//! suppression query per tenant per batch, expiry), take its pacing cell (governor), and build
//! the Twilio create-message request. Reported per message over batches of 1,000.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::config::PacingSettings;
use common::provider::{Lookup, OutboundMessage, Provider, SendOutcome};
use common::store::sqlite::SqliteStore;
use common::store::{MessageRecord, NumberStatus, SenderKind, SenderNumber, Store, Tenant, TenantStatus};
use common::twilio::StatusCallbackField;
use common::twilio::create_message_form;
use common::{Envelope, PhoneNumber, TenantId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatcher::admission::{Directory, Providers, QuotaBook};
use dispatcher::pacing::Pacer;
use time::OffsetDateTime;

const BATCH: usize = 1_000;
const SENDERS: usize = 100;

/// Never called: the bench stops before sending.
struct Unused;

#[async_trait]
impl Provider for Unused {
    fn name(&self) -> &'static str {
        "unused"
    }

    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        batch
            .iter()
            .map(|_| SendOutcome::Failed { code: "UNUSED".into() })
            .collect()
    }

    async fn lookup(&self, _message: &MessageRecord) -> Lookup {
        Lookup::Unavailable
    }
}

fn envelopes(round: u64) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|n| {
            serde_json::to_vec(&serde_json::json!({
                "version": 1,
                "message_id": format!("m-{round}-{n}"),
                "tenant_id": "acme",
                "campaign_id": "spring-sale",
                "channel": "sms",
                "to": format!("+1415555{:04}", n),
                "priority": if n % 10 == 0 { "transactional" } else { "marketing" },
                "body": "Spring sale: 30% off everything until Sunday. Show this text in store. Reply STOP to opt out.",
                "expires_at": "2099-01-01T00:00:00Z",
            }))
            .expect("encodes")
        })
        .collect()
}

async fn directory(dir: &std::path::Path) -> Directory {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("bench.db")).await.expect("store"));
    let tenant = TenantId::parse("acme").expect("valid");
    let now = OffsetDateTime::now_utc();
    store
        .create_tenant(&Tenant {
            id: tenant.clone(),
            name: "Acme".into(),
            is_demo: true,
            status: TenantStatus::Active,
            plan_id: None,
            created_by: None,
            created_at: now,
        })
        .await
        .expect("tenant");
    for n in 0..SENDERS {
        store
            .put_sender_number(&SenderNumber {
                tenant_id: tenant.clone(),
                number: PhoneNumber::parse(format!("+1212555{n:04}")).expect("valid"),
                kind: SenderKind::LongCode,
                status: NumberStatus::Active,
                twilio_sid: None,
                rate_per_second: Some(1e9),
                created_at: now,
                registration: None,
            })
            .await
            .expect("number");
    }
    let providers = Providers {
        demo: Arc::new(Unused),
        live: HashMap::new(),
    };
    Directory::new(
        store,
        providers,
        PacingSettings::default(),
        Arc::new(QuotaBook::default()),
    )
}

fn hot_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _runtime_context = runtime.enter();
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut directory = runtime.block_on(directory(dir.path()));
    let callback = StatusCallbackField::new("https://api.example.com/webhooks/twilio/status");
    let mut pacer = Pacer::new();
    let mut round = 0;
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("parse_admit_pace_build_batch_of_1000", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                round += 1;
                let encoded = envelopes(round);
                // Storage, outside the hot path's budget: one suppression query per tenant per batch.
                let probe: Vec<Envelope> = encoded
                    .iter()
                    .map(|bytes| Envelope::parse(bytes).expect("valid"))
                    .collect();
                let recipients = runtime
                    .block_on(directory.recipients_among(&probe))
                    .expect("suppressions");
                let started = Instant::now();
                let parsed: Vec<Envelope> = encoded
                    .iter()
                    .map(|bytes| Envelope::parse(bytes).expect("valid"))
                    .collect();
                let now = OffsetDateTime::now_utc();
                let decisions = runtime
                    .block_on(directory.decide(&parsed, &recipients, now))
                    .expect("admission");
                let mut bytes = 0;
                for (n, (envelope, decision)) in parsed.into_iter().zip(decisions).enumerate() {
                    let (route, _) = decision.expect("admitted");
                    let sender = &route.senders[n % route.senders.len()];
                    let _ = pacer.try_take(&sender.key, sender.rate.expect("paced"));
                    let message = OutboundMessage {
                        envelope,
                        sender: sender.sender.clone(),
                        segments: 1,
                        paced_at: tokio::time::Instant::now(),
                        accepted_at: time::OffsetDateTime::UNIX_EPOCH,
                    };
                    bytes += create_message_form(&message, Some(&callback), now).len();
                }
                total += started.elapsed();
                std::hint::black_box(bytes);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
