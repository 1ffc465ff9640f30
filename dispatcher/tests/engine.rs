//! The engine on tokio's paused clock, with a provider that records every call with its
//! instant: pacing per sender, sender pools and stickiness, fairness between tenants,
//! priorities, retries, expiry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::config::DispatcherSettings;
use common::provider::{Lookup, OutboundMessage, Provider, SendOutcome};
use common::store::MessageRecord;
use common::{Envelope, MessageStatus, PhoneNumber, Sender};
use dispatcher::engine::{Admitted, Engine, Finished, Handover, Report};
use dispatcher::pacing::Rate;
use dispatcher::route::{PoolSender, Route};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One provider call as the provider saw it.
#[derive(Debug, Clone)]
struct Call {
    message_id: String,
    tenant: String,
    sender: String,
    segments: u32,
    at: Instant,
}

/// Records calls; answers from a script per message id (then `Accepted`), after `latency`.
#[derive(Default)]
struct TestProvider {
    calls: Mutex<Vec<Call>>,
    script: Mutex<HashMap<String, VecDeque<SendOutcome>>>,
    latency: Duration,
}

impl TestProvider {
    fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    fn script(&self, message_id: &str, outcomes: Vec<SendOutcome>) {
        self.script
            .lock()
            .unwrap()
            .insert(message_id.to_owned(), outcomes.into());
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for TestProvider {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        let at = Instant::now();
        {
            let mut calls = self.calls.lock().unwrap();
            for message in batch {
                calls.push(Call {
                    message_id: message.envelope.message_id.to_string(),
                    tenant: message.envelope.tenant_id.to_string(),
                    sender: message.sender.to_string(),
                    segments: message.segments,
                    at,
                });
            }
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut script = self.script.lock().unwrap();
        batch
            .iter()
            .map(|message| {
                let id = message.envelope.message_id.to_string();
                script
                    .get_mut(&id)
                    .and_then(VecDeque::pop_front)
                    .unwrap_or(SendOutcome::Accepted {
                        provider_message_id: format!("SM{id}"),
                    })
            })
            .collect()
    }

    async fn lookup(&self, _message: &MessageRecord) -> Lookup {
        Lookup::Unavailable
    }
}

fn route(provider: &Arc<TestProvider>, account: &str, senders: &[(&str, f64)], concurrency: usize) -> Arc<Route> {
    Arc::new(Route {
        provider: Arc::clone(provider) as Arc<dyn Provider>,
        account: Arc::from(account),
        account_concurrency: concurrency,
        senders: senders
            .iter()
            .map(|(number, rate)| PoolSender {
                key: Arc::from(*number),
                sender: Sender::Phone(PhoneNumber::parse(*number).unwrap()),
                rate: Rate::per_second(*rate),
            })
            .collect(),
        daily_cap: None,
    })
}

fn envelope(tenant: &str, id: &str, to: &str, priority: &str, body: &str) -> Envelope {
    let value = json!({"version": 1, "message_id": id, "tenant_id": tenant, "channel": "sms", "to": to,
                       "priority": priority, "body": body});
    Envelope::parse(&serde_json::to_vec(&value).unwrap()).unwrap()
}

struct Running {
    admit: mpsc::Sender<Admitted>,
    reports: mpsc::UnboundedReceiver<Report>,
    handovers: mpsc::UnboundedSender<Handover>,
    drain: CancellationToken,
    engine: tokio::task::JoinHandle<()>,
    next_offset: u64,
}

fn start(settings: &DispatcherSettings) -> Running {
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let (handovers, handovers_rx) = mpsc::unbounded_channel();
    let (admit, admitted) = mpsc::channel(1 << 20);
    let drain = CancellationToken::new();
    let engine = tokio::spawn(
        Engine::new(settings, reports_tx)
            .with_handovers(handovers_rx)
            .run(admitted, drain.clone()),
    );
    Running {
        admit,
        reports,
        handovers,
        drain,
        engine,
        next_offset: 0,
    }
}

impl Running {
    async fn admit(&mut self, envelope: Envelope, route: &Arc<Route>) {
        self.admit_from(0, envelope, route).await;
    }

    /// Admits a message read from `partition`.
    async fn admit_from(&mut self, partition: u32, envelope: Envelope, route: &Arc<Route>) {
        let segments = common::segments::count_segments(match &envelope.content {
            common::Content::Body(body) => body,
            common::Content::Email(_) | common::Content::Template { .. } => "",
        })
        .segments;
        self.next_offset += 1;
        let admitted = Admitted {
            envelope,
            segments,
            partition,
            offset: self.next_offset,
            route: Arc::clone(route),
            quota: None,
            admitted_at: Instant::now(),
            accepted_at: time::OffsetDateTime::now_utc(),
        };
        self.admit.send(admitted).await.unwrap();
    }

    /// Waits (in paused time) until `count` messages have finished.
    async fn finished(&mut self, count: usize) -> Vec<Finished> {
        let mut done = Vec::with_capacity(count);
        while done.len() < count {
            match self.reports.recv().await.expect("the engine runs") {
                Report::Finished(finished) => done.push(finished),
                other => panic!("expected a finished message, got {other:?}"),
            }
        }
        done
    }

    /// Hands `partitions` over; answers the reports that came before the handover completed.
    async fn hand_over(&mut self, partitions: Vec<u32>) -> Vec<Report> {
        let (done, mut completed) = tokio::sync::oneshot::channel();
        self.handovers.send(Handover { partitions, done }).unwrap();
        let mut reports = Vec::new();
        loop {
            match self.reports.recv().await.expect("the engine runs") {
                Report::Barrier(done) => {
                    done.send(()).unwrap();
                    break;
                }
                other => reports.push(other),
            }
        }
        completed.try_recv().expect("answered once the barrier is recorded");
        reports
    }

    async fn stop(self) {
        self.drain.cancel();
        self.engine.await.unwrap();
    }
}

fn settings() -> DispatcherSettings {
    DispatcherSettings::default()
}

/// A body of `segments` GSM-7 segments.
fn body_of(segments: u32) -> String {
    match segments {
        1 => "x".repeat(100),
        n => "x".repeat(153 * (n as usize - 1) + 10),
    }
}

#[tokio::test(start_paused = true)]
async fn no_sender_exceeds_its_rate_in_any_second() {
    let provider = Arc::new(TestProvider::default());
    let rates = [
        ("+14155550001", 1.0),
        ("+14155550002", 4.0),
        ("+14155550003", 10.0),
        ("+14155550004", 3.0),
    ];
    let routes = [
        route(&provider, "acct-a", &rates[0..2], 100),
        route(&provider, "acct-b", &rates[2..3], 100),
        route(&provider, "acct-c", &rates[3..4], 100),
    ];
    let mut engine = start(&settings());
    let mut total = 0;
    for n in 0..60 {
        for (tenant, route) in ["acme", "globex", "initech"].iter().zip(&routes) {
            let segments = [1, 2, 3, 1][n % 4];
            let id = format!("{tenant}-{n}");
            engine
                .admit(
                    envelope(
                        tenant,
                        &id,
                        &format!("+1415555{:04}", n),
                        "marketing",
                        &body_of(segments),
                    ),
                    route,
                )
                .await;
            total += 1;
        }
    }
    let finished = engine.finished(total).await;
    assert!(finished.iter().all(|message| message.status == MessageStatus::Sent));
    engine.stop().await;

    let calls = provider.calls();
    assert_eq!(calls.len(), total);
    let rate_of: HashMap<&str, f64> = rates.iter().copied().collect();
    let mut by_sender: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for call in &calls {
        by_sender.entry(call.sender.as_str()).or_default().push(call);
    }
    assert_eq!(by_sender.len(), rates.len(), "every sender was used");
    for (sender, calls) in by_sender {
        let period = Duration::from_secs_f64(1.0 / rate_of[sender]);
        for pair in calls.windows(2) {
            // A message of n segments goes out once it holds its n cells: at least n periods
            // after the sender's previous send.
            let gap = pair[1].at - pair[0].at;
            let needed = period * pair[1].segments - Duration::from_micros(1);
            assert!(
                gap >= needed,
                "{sender}: {} then {} only {gap:?} apart",
                pair[0].message_id,
                pair[1].message_id
            );
        }
        // Counting cells at their instants, no one-second window holds more than the rate.
        let mut cells: Vec<Instant> = Vec::new();
        for call in &calls {
            for k in (0..call.segments).rev() {
                cells.push(call.at - period * k);
            }
        }
        for (i, start) in cells.iter().enumerate() {
            let in_window = cells[i..]
                .iter()
                .take_while(|at| **at < *start + Duration::from_secs(1))
                .count();
            assert!(
                in_window as f64 <= rate_of[sender] + 1e-9,
                "{sender}: {in_window} cells in one second"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_pool_spreads_recipients_and_keeps_each_on_its_sender() {
    let provider = Arc::new(TestProvider::default());
    let pool = route(
        &provider,
        "acct",
        &[("+14155550001", 1.0), ("+14155550002", 1.0), ("+14155550003", 1.0)],
        100,
    );
    let mut engine = start(&settings());
    for round in 0..4 {
        for recipient in 0..9 {
            let id = format!("m-{round}-{recipient}");
            engine
                .admit(
                    envelope("acme", &id, &format!("+1212555{:04}", recipient), "marketing", "hi"),
                    &pool,
                )
                .await;
        }
    }
    engine.finished(36).await;
    engine.stop().await;
    let calls = provider.calls();
    let mut sender_of_recipient: HashMap<String, String> = HashMap::new();
    let mut per_sender: HashMap<String, usize> = HashMap::new();
    for call in &calls {
        let recipient = call.message_id.rsplit('-').next().unwrap().to_owned();
        let sender = sender_of_recipient
            .entry(recipient.clone())
            .or_insert_with(|| call.sender.clone());
        assert_eq!(*sender, call.sender, "recipient {recipient} keeps its sender");
        *per_sender.entry(call.sender.clone()).or_default() += 1;
    }
    assert_eq!(per_sender.len(), 3);
    assert!(
        per_sender.values().all(|count| *count == 12),
        "earliest-free choice spreads load: {per_sender:?}"
    );
    let last = calls.iter().map(|call| call.at).max().unwrap() - calls[0].at;
    assert!(
        last <= Duration::from_secs(12),
        "three senders share the work: {last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_huge_backlog_does_not_delay_another_tenants_message_beyond_one_round() {
    let provider = Arc::new(TestProvider::with_latency(Duration::from_millis(5)));
    let senders: Vec<(String, f64)> = (0..50).map(|n| (format!("+1415556{n:04}"), 1_000.0)).collect();
    let senders: Vec<(&str, f64)> = senders.iter().map(|(number, rate)| (number.as_str(), *rate)).collect();
    let big = route(&provider, "acct-big", &senders, 1_000);
    let small = route(&provider, "acct-small", &[("+14155550009", 1.0)], 10);
    let mut settings = settings();
    settings.max_in_flight = 4;
    let quantum = settings.quantum as usize;
    let mut engine = start(&settings);
    for n in 0..100_000 {
        engine
            .admit(
                envelope(
                    "big",
                    &format!("b-{n}"),
                    &format!("+1646555{:04}", n % 10_000),
                    "marketing",
                    "promo",
                ),
                &big,
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let admitted_at = Instant::now();
    engine
        .admit(
            envelope("small", "otp", "+12125550100", "transactional", "code 123456"),
            &small,
        )
        .await;
    while !provider.calls().iter().any(|call| call.message_id == "otp") {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.drain.cancel();
    engine.engine.await.unwrap();

    let calls = provider.calls();
    let otp = calls.iter().position(|call| call.message_id == "otp").unwrap();
    let big_before_otp = calls[..otp]
        .iter()
        .filter(|call| call.tenant == "big" && call.at >= admitted_at)
        .count();
    assert!(
        big_before_otp <= quantum,
        "{big_before_otp} messages of the big tenant went first"
    );
    assert!(
        calls[otp].at - admitted_at <= Duration::from_millis(10),
        "sent within one round"
    );
    assert!(calls.len() < 100_000, "the backlog was still there");
}

#[tokio::test(start_paused = true)]
async fn transactional_overtakes_queued_marketing_of_the_same_tenant() {
    let provider = Arc::new(TestProvider::default());
    let one = route(&provider, "acct", &[("+14155550001", 1.0)], 100);
    let mut engine = start(&settings());
    for n in 0..10 {
        engine
            .admit(
                envelope("acme", &format!("promo-{n}"), "+12125550100", "marketing", "sale"),
                &one,
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let sent_before = provider.calls().len();
    assert_eq!(
        sent_before, 2,
        "promo-0 and promo-1 went at 1 msg/s before the OTP arrived"
    );
    engine
        .admit(envelope("acme", "otp", "+12125550101", "transactional", "code"), &one)
        .await;
    engine.finished(11).await;
    engine.stop().await;
    let order: Vec<String> = provider.calls().into_iter().map(|call| call.message_id).collect();
    assert_eq!(
        order[sent_before], "otp",
        "the OTP is the next message of the sender, ahead of 8 queued promos"
    );
    assert_eq!(order.last().map(String::as_str), Some("promo-9"));
}

#[tokio::test(start_paused = true)]
async fn retries_honour_retry_after_and_give_up_at_the_limit() {
    let provider = Arc::new(TestProvider::default());
    let one = route(&provider, "acct", &[("+14155550001", 100.0)], 100);
    let throttled = SendOutcome::Transient {
        reason: "twilio_20429".into(),
        retry_after: Some(Duration::from_secs(5)),
    };
    let overloaded = SendOutcome::Transient {
        reason: "http_503".into(),
        retry_after: None,
    };
    provider.script("throttled", vec![throttled]);
    provider.script("down", vec![overloaded; 20]);
    provider.script("refused", vec![SendOutcome::Failed { code: "21211".into() }]);
    provider.script(
        "lost",
        vec![SendOutcome::Unknown {
            reason: "TIMEOUT_AFTER_WRITE".into(),
        }],
    );
    let mut settings = settings();
    settings.retry.max_attempts = 4;
    let mut engine = start(&settings);
    for id in ["throttled", "down", "refused", "lost"] {
        engine
            .admit(envelope("acme", id, "+12125550100", "transactional", "hello"), &one)
            .await;
    }
    let finished = engine.finished(4).await;
    engine.stop().await;
    let outcome: HashMap<String, (MessageStatus, Option<String>)> = finished
        .into_iter()
        .map(|message| {
            (
                message.envelope.message_id.to_string(),
                (message.status, message.reason),
            )
        })
        .collect();
    assert_eq!(outcome["throttled"].0, MessageStatus::Sent);
    assert_eq!(
        outcome["down"],
        (MessageStatus::Failed, Some("RETRIES_EXHAUSTED: http_503".into()))
    );
    assert_eq!(outcome["refused"], (MessageStatus::Failed, Some("21211".into())));
    assert_eq!(
        outcome["lost"],
        (MessageStatus::Unknown, Some("TIMEOUT_AFTER_WRITE".into()))
    );

    let calls = provider.calls();
    let attempts = |id: &str| {
        calls
            .iter()
            .filter(|call| call.message_id == id)
            .map(|call| call.at)
            .collect::<Vec<_>>()
    };
    let throttled = attempts("throttled");
    assert_eq!(throttled.len(), 2);
    assert!(
        throttled[1] - throttled[0] >= Duration::from_secs(5),
        "waited at least Retry-After"
    );
    assert_eq!(attempts("down").len(), 4, "max_attempts sends, then failed");
    assert_eq!(attempts("refused").len(), 1, "permanent errors are not retried");
    assert_eq!(attempts("lost").len(), 1, "an unknown outcome is never resent blindly");
}

#[tokio::test(start_paused = true)]
async fn expired_messages_are_never_sent() {
    let provider = Arc::new(TestProvider::default());
    let one = route(&provider, "acct", &[("+14155550001", 1.0)], 100);
    let throttled = SendOutcome::Transient {
        reason: "twilio_20429".into(),
        retry_after: Some(Duration::from_secs(3_600)),
    };
    provider.script("soon", vec![throttled]);
    let mut engine = start(&settings());
    let in_ten_minutes = time::OffsetDateTime::now_utc() + Duration::from_secs(600);
    let mut soon = envelope("acme", "soon", "+12125550100", "transactional", "hello");
    soon.expires_at = Some(in_ten_minutes);
    let mut stale = envelope("acme", "stale", "+12125550101", "transactional", "hello");
    stale.expires_at = Some(time::OffsetDateTime::now_utc() - Duration::from_secs(1));
    engine.admit(soon, &one).await;
    engine.admit(stale, &one).await;
    let finished = engine.finished(2).await;
    engine.stop().await;
    for message in finished {
        assert_eq!(
            message.status,
            MessageStatus::Expired,
            "{}",
            message.envelope.message_id
        );
        assert_eq!(message.reason.as_deref(), Some("EXPIRED"));
    }
    let calls = provider.calls();
    assert_eq!(
        calls.len(),
        1,
        "only the first attempt of 'soon'; its retry would land after it expires"
    );
}

#[tokio::test(start_paused = true)]
async fn an_account_never_has_more_requests_in_flight_than_its_cap() {
    let provider = Arc::new(TestProvider::with_latency(Duration::from_millis(100)));
    let senders: Vec<(String, f64)> = (0..20).map(|n| (format!("+1415557{n:04}"), 1_000.0)).collect();
    let senders: Vec<(&str, f64)> = senders.iter().map(|(number, rate)| (number.as_str(), *rate)).collect();
    let capped = route(&provider, "acct", &senders, 3);
    let mut engine = start(&settings());
    for n in 0..60 {
        engine
            .admit(
                envelope("acme", &format!("m-{n}"), &format!("+1212555{n:04}"), "marketing", "hi"),
                &capped,
            )
            .await;
    }
    engine.finished(60).await;
    engine.stop().await;
    let mut per_instant: BTreeMap<Instant, usize> = BTreeMap::new();
    for call in provider.calls() {
        *per_instant.entry(call.at).or_default() += 1;
    }
    // With a 100 ms latency, requests started at the same instant are in flight together.
    assert!(per_instant.values().all(|count| *count <= 3), "{per_instant:?}");
    assert_eq!(per_instant.len(), 20, "60 messages, 3 at a time");
}

#[tokio::test(start_paused = true)]
async fn a_brand_stops_at_its_daily_cap() {
    let provider = Arc::new(TestProvider::default());
    let mut capped = Route::clone(&route(&provider, "acct", &[("+14155550001", 100.0)], 100));
    capped.daily_cap = Some(dispatcher::route::DailyCap {
        brand: Arc::from("acme"),
        segments: 4,
    });
    let capped = Arc::new(capped);
    let mut engine = start(&settings());
    engine
        .admit(
            envelope("acme", "long", "+12125550100", "marketing", &body_of(3)),
            &capped,
        )
        .await;
    for n in 0..4 {
        engine
            .admit(
                envelope("acme", &format!("short-{n}"), "+12125550100", "marketing", "hi"),
                &capped,
            )
            .await;
    }
    engine.finished(2).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    let sent: Vec<String> = provider.calls().into_iter().map(|call| call.message_id).collect();
    assert_eq!(
        sent,
        ["long", "short-0"],
        "3 + 1 segments reach the cap of 4; the rest waits for the next day"
    );
    engine.stop().await;
}

/// Takes up to 50 messages per request, all of one template, like SES bulk sends.
#[derive(Default)]
struct BulkProvider {
    batches: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Provider for BulkProvider {
    fn name(&self) -> &'static str {
        "bulk"
    }

    fn max_batch(&self) -> usize {
        50
    }

    fn batch_key(&self, message: &OutboundMessage) -> Option<String> {
        match &message.envelope.content {
            common::Content::Template { id, .. } => Some(id.clone()),
            common::Content::Body(_) | common::Content::Email(_) => None,
        }
    }

    async fn send(&self, batch: &[OutboundMessage]) -> Vec<SendOutcome> {
        let templates = batch.iter().filter_map(|message| self.batch_key(message)).collect();
        self.batches.lock().unwrap().push(templates);
        batch
            .iter()
            .map(|_| SendOutcome::Accepted {
                provider_message_id: "bulk".into(),
            })
            .collect()
    }

    async fn lookup(&self, _message: &MessageRecord) -> Lookup {
        Lookup::Unavailable
    }
}

#[tokio::test(start_paused = true)]
async fn batch_providers_get_full_batches_of_one_template() {
    let provider = Arc::new(BulkProvider::default());
    let bulk = Arc::new(Route {
        provider: Arc::clone(&provider) as Arc<dyn Provider>,
        account: Arc::from("ses-account"),
        account_concurrency: 10,
        senders: vec![PoolSender {
            key: Arc::from("ses-account"),
            sender: Sender::Phone(PhoneNumber::parse("+14155550001").unwrap()),
            rate: None,
        }],
        daily_cap: None,
    });
    let mut engine = start(&settings());
    for n in 0..120 {
        let template = if n < 70 { "welcome" } else { "receipt" };
        let value = json!({"version": 1, "message_id": format!("m-{n}"), "tenant_id": "acme", "channel": "sms",
                           "to": "+12125550100", "template": {"id": template}});
        engine
            .admit(Envelope::parse(&serde_json::to_vec(&value).unwrap()).unwrap(), &bulk)
            .await;
    }
    engine.finished(120).await;
    engine.stop().await;
    let batches = provider.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 120);
    for batch in &batches {
        assert!(batch.len() <= 50, "at most 50 per request");
        assert!(
            batch.iter().all(|template| *template == batch[0]),
            "one template per request: {batch:?}"
        );
    }
    assert!(
        batches.len() <= 4,
        "messages ready together share requests: {} requests",
        batches.len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_handover_gives_back_queued_work_and_waits_for_what_is_in_flight() {
    let provider = Arc::new(TestProvider::with_latency(Duration::from_millis(500)));
    let mut engine = start(&settings());
    // Partition 1: one sender at 1/s, so one message goes out and the rest wait for cells; one
    // of them will fail transiently and must not be retried once its partition is gone.
    let slow = route(&provider, "acct", &[("+14155550001", 1.0)], 100);
    // Partition 0 keeps its work.
    let fast = route(&provider, "acct", &[("+14155550002", 1_000.0)], 100);
    provider.script(
        "p1-0",
        vec![SendOutcome::Transient {
            reason: "twilio_503".into(),
            retry_after: None,
        }],
    );
    for n in 0..5 {
        let message = envelope(
            "gone",
            &format!("p1-{n}"),
            &format!("+1212555{n:04}"),
            "marketing",
            "hi",
        );
        engine.admit_from(1, message, &slow).await;
    }
    for n in 0..3 {
        let message = envelope(
            "kept",
            &format!("p0-{n}"),
            &format!("+1646555{n:04}"),
            "marketing",
            "hi",
        );
        engine.admit_from(0, message, &fast).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // p1-0 and p0-* are in flight

    let reports = engine.hand_over(vec![1]).await;
    let handed_back = reports
        .iter()
        .filter(|report| matches!(report, Report::HandedBack { tenant_id, .. } if tenant_id.as_str() == "gone"))
        .count();
    assert_eq!(
        handed_back, 5,
        "four queued at once, and the in-flight one that failed transiently: {reports:?}"
    );
    let calls = provider.calls();
    let sent_of_p1: Vec<&str> = calls
        .iter()
        .filter(|call| call.tenant == "gone")
        .map(|call| call.message_id.as_str())
        .collect();
    assert_eq!(sent_of_p1, ["p1-0"], "only the first was ever sent");

    // Partition 0 is untouched; nothing of partition 1 is ever sent again.
    let kept = engine.finished(3).await;
    assert!(kept.iter().all(|message| message.status == MessageStatus::Sent));
    tokio::time::sleep(Duration::from_secs(120)).await;
    engine.stop().await;
    assert_eq!(
        provider.calls().iter().filter(|call| call.tenant == "gone").count(),
        1,
        "no retry and no queued message of a handed-over partition is sent"
    );
}

/// An envelope not to be sent before `not_before`.
fn scheduled(tenant: &str, id: &str, to: &str, not_before: time::OffsetDateTime) -> Envelope {
    let not_before = not_before
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let value = json!({"version": 1, "message_id": id, "tenant_id": tenant, "channel": "sms", "to": to,
                       "body": "the sale starts now", "not_before": not_before});
    Envelope::parse(&serde_json::to_vec(&value).unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_message_leaves_at_its_not_before_and_not_earlier_while_others_go_at_once() {
    let provider = Arc::new(TestProvider::default());
    let pool = route(&provider, "acct", &[("+14155550001", 10.0)], 100);
    let mut engine = start(&settings());
    let started = Instant::now();
    let now = time::OffsetDateTime::now_utc();
    // Nine seconds ahead (the dispatcher keeps up to `scheduled_in_memory_ms` in memory), one
    // already past, one now.
    let ahead = std::time::Duration::from_secs(9);
    engine
        .admit(scheduled("acme", "later", "+12125550101", now + ahead), &pool)
        .await;
    engine
        .admit(
            scheduled("acme", "past", "+12125550102", now - std::time::Duration::from_secs(60)),
            &pool,
        )
        .await;
    engine
        .admit(envelope("acme", "now", "+12125550103", "marketing", "hi"), &pool)
        .await;
    let finished = engine.finished(3).await;
    engine.stop().await;
    let order: Vec<&str> = finished.iter().map(|f| f.envelope.message_id.as_str()).collect();
    assert_eq!(order.last(), Some(&"later"), "{order:?}");
    let calls = provider.calls();
    for call in &calls {
        let after = call.at.duration_since(started);
        if call.message_id == "later" {
            // The wait was measured from the wall clock when it was admitted: not a moment early.
            assert!(
                after + std::time::Duration::from_millis(1) >= ahead,
                "sent after {after:?}"
            );
            assert!(
                after < ahead + std::time::Duration::from_millis(200),
                "sent after {after:?}"
            );
        } else {
            assert!(
                after < std::time::Duration::from_millis(200),
                "{} sent after {after:?}",
                call.message_id
            );
        }
    }
}
