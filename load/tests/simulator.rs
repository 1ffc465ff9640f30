//! The Twilio simulator, run in process on a free port and driven over HTTP.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use common::twilio::{CreateOutcome, FetchOutcome, TwilioAccount, TwilioClient, TwilioClientSettings};
use load::simulator::{
    DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Faults, RunningSimulator, Simulator, SimulatorConfig, SimulatorStats,
    find_violations,
};
use serde_json::Value;
use tokio::sync::mpsc;

const FROM: &str = "+14155550199";
const TO: &str = "+14155550100";

fn service_sid() -> String {
    format!("MG{}", "a".repeat(32))
}

async fn start(config: SimulatorConfig) -> anyhow::Result<RunningSimulator> {
    Ok(Simulator::start(config).await?)
}

fn messages_url(sim: &RunningSimulator, account: &str) -> String {
    format!("{}/2010-04-01/Accounts/{account}/Messages.json", sim.base_url())
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// POSTs a create request with the default account; returns the status, headers and JSON body.
async fn create(sim: &RunningSimulator, pairs: &[(&str, &str)]) -> anyhow::Result<(u16, HeaderMap, Value)> {
    create_as(sim, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_ACCOUNT_SID, pairs).await
}

async fn create_as(
    sim: &RunningSimulator,
    user: &str,
    token: &str,
    path_account: &str,
    pairs: &[(&str, &str)],
) -> anyhow::Result<(u16, HeaderMap, Value)> {
    let response = reqwest::Client::new()
        .post(messages_url(sim, path_account))
        .basic_auth(user, Some(token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(pairs))
        .send()
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = response.json().await?;
    Ok((status, headers, body))
}

async fn http_stats(sim: &RunningSimulator) -> anyhow::Result<SimulatorStats> {
    let stats = reqwest::get(format!("{}/stats", sim.base_url())).await?.json().await?;
    Ok(stats)
}

fn account() -> TwilioAccount {
    TwilioAccount::new(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN.to_owned())
}

fn client(sim: &RunningSimulator, request_timeout: Duration) -> anyhow::Result<TwilioClient> {
    Ok(TwilioClient::new(&TwilioClientSettings {
        base_url: sim.base_url(),
        connect_timeout: Duration::from_millis(200),
        request_timeout,
        ..TwilioClientSettings::default()
    })?)
}

#[tokio::test]
async fn validation_errors_carry_twilios_codes() -> anyhow::Result<()> {
    let sim = start(SimulatorConfig::default()).await?;
    let service = service_sid();
    let long = "x".repeat(1601);
    let content = format!("HX{}", "b".repeat(32));
    let cases: Vec<(Vec<(&str, &str)>, u64)> = vec![
        (vec![("From", FROM), ("Body", "x")], 21604),
        (vec![("To", "555-0100"), ("From", FROM), ("Body", "x")], 21211),
        (vec![("To", TO), ("Body", "x")], 21603),
        (
            vec![
                ("To", TO),
                ("From", FROM),
                ("MessagingServiceSid", &service),
                ("Body", "x"),
            ],
            21603,
        ),
        (vec![("To", TO), ("From", FROM)], 21602),
        (vec![("To", TO), ("From", FROM), ("Body", &long)], 21617),
        (
            vec![("To", TO), ("From", FROM), ("Body", "x"), ("ContentSid", &content)],
            21619,
        ),
        (
            vec![("To", "whatsapp:+14155550100"), ("From", FROM), ("Body", "x")],
            21910,
        ),
    ];
    for (pairs, code) in &cases {
        let (status, _, body) = create(&sim, pairs).await?;
        assert_eq!(status, 400, "{pairs:?}: {body}");
        assert_eq!(body["code"], *code, "{pairs:?}: {body}");
        assert_eq!(body["status"], 400);
        assert!(
            body["message"].is_string()
                && body["more_info"]
                    .as_str()
                    .is_some_and(|m| m.contains(&code.to_string()))
        );
    }
    let stats = sim.shutdown().await?;
    assert_eq!(stats.received, cases.len() as u64);
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.rejected_by_code.get("21603"), Some(&2));
    Ok(())
}

#[tokio::test]
async fn wrong_credentials_or_account_get_401() -> anyhow::Result<()> {
    let other = format!("AC{}", "1".repeat(32));
    let config = SimulatorConfig {
        accounts: HashMap::from([
            (DEFAULT_ACCOUNT_SID.to_owned(), DEFAULT_AUTH_TOKEN.to_owned()),
            (other.clone(), "other-token".to_owned()),
        ]),
        ..SimulatorConfig::default()
    };
    let sim = start(config).await?;
    let pairs = [("To", TO), ("From", FROM), ("Body", "hi")];
    for (user, token, path) in [
        (DEFAULT_ACCOUNT_SID, "wrong", DEFAULT_ACCOUNT_SID),
        ("ACunknown", DEFAULT_AUTH_TOKEN, "ACunknown"),
        (other.as_str(), "other-token", DEFAULT_ACCOUNT_SID),
    ] {
        let (status, headers, body) = create_as(&sim, user, token, path, &pairs).await?;
        assert_eq!(status, 401, "{user}");
        assert_eq!(body["code"], 20003);
        assert_eq!(body["status"], 401);
        assert!(headers.contains_key("www-authenticate"));
    }
    let unauthenticated = reqwest::Client::new()
        .post(messages_url(&sim, DEFAULT_ACCOUNT_SID))
        .body(encode(&pairs))
        .send()
        .await?;
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let (status, _, _) = create_as(&sim, &other, "other-token", &other, &pairs).await?;
    assert_eq!(status, 201);
    Ok(())
}

#[tokio::test]
async fn a_created_message_looks_like_twilios_and_can_be_fetched() -> anyhow::Result<()> {
    let sim = start(SimulatorConfig::default()).await?;
    // 161 GSM-7 characters: two segments.
    let body = "a".repeat(161);
    let (status, _, created) = create(&sim, &[("To", TO), ("From", FROM), ("Body", &body)]).await?;
    assert_eq!(status, 201, "{created}");
    let sid = created["sid"].as_str().context("sid")?.to_owned();
    assert!(sid.starts_with("SM") && sid.len() == 34 && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(created["account_sid"], DEFAULT_ACCOUNT_SID);
    assert_eq!(created["status"], "queued");
    assert_eq!(created["to"], TO);
    assert_eq!(created["from"], FROM);
    assert_eq!(created["body"], body.as_str());
    assert_eq!(created["num_segments"], "2");
    assert_eq!(created["error_code"], Value::Null);
    assert_eq!(created["direction"], "outbound-api");
    assert_eq!(
        created["uri"],
        format!("/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages/{sid}.json")
    );
    let date = created["date_created"].as_str().context("date_created")?;
    time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc2822)?;

    // A UCS-2 body of 71 characters is two segments too; a Messaging Service starts `accepted`.
    let service = service_sid();
    let unicode = "ж".repeat(71);
    let (status, _, via_service) = create(
        &sim,
        &[("To", TO), ("MessagingServiceSid", &service), ("Body", &unicode)],
    )
    .await?;
    assert_eq!(status, 201);
    assert_eq!(via_service["status"], "accepted");
    assert_eq!(via_service["num_segments"], "2");
    assert_eq!(via_service["from"], Value::Null);
    assert_eq!(via_service["messaging_service_sid"], service.as_str());

    let fetch = |sid: String| {
        let url = format!(
            "{}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages/{sid}.json",
            sim.base_url()
        );
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .basic_auth(DEFAULT_ACCOUNT_SID, Some(DEFAULT_AUTH_TOKEN))
                .send()
                .await?;
            let status = response.status().as_u16();
            anyhow::Ok((status, response.json::<Value>().await?))
        }
    };
    let (status, fetched) = fetch(sid.clone()).await?;
    assert_eq!(status, 200);
    assert_eq!(fetched["sid"], sid.as_str());
    assert!(
        ["queued", "sent", "delivered"].contains(&fetched["status"].as_str().unwrap_or_default()),
        "{fetched}"
    );
    let (status, missing) = fetch(format!("SM{}", "0".repeat(32))).await?;
    assert_eq!(status, 404);
    assert_eq!(missing["code"], 20404);
    Ok(())
}

#[tokio::test]
async fn requests_beyond_the_account_concurrency_get_429() -> anyhow::Result<()> {
    let sim = start(SimulatorConfig {
        concurrency: 2,
        latency: Duration::from_millis(400),
        ..SimulatorConfig::default()
    })
    .await?;
    let pairs = [("To", TO), ("From", FROM), ("Body", "hi")];
    let answers = futures_join(&sim, &pairs, 6).await?;
    let created = answers.iter().filter(|(status, _, _)| *status == 201).count();
    let throttled: Vec<_> = answers.iter().filter(|(status, _, _)| *status == 429).collect();
    assert_eq!(created, 2, "{answers:?}");
    assert_eq!(throttled.len(), 4);
    for (_, headers, body) in throttled {
        assert_eq!(body["code"], 20429);
        assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    }
    // Once the slots are free again, requests pass.
    let (status, _, _) = create(&sim, &pairs).await?;
    assert_eq!(status, 201);
    let stats = sim.shutdown().await?;
    assert_eq!(stats.too_many_requests, 4);
    assert_eq!(stats.rejected_by_code.get("20429"), Some(&4));
    Ok(())
}

/// Fires `n` identical create requests at once.
async fn futures_join(
    sim: &RunningSimulator,
    pairs: &[(&str, &str)],
    n: usize,
) -> anyhow::Result<Vec<(u16, HeaderMap, Value)>> {
    let mut tasks = tokio::task::JoinSet::new();
    let url = messages_url(sim, DEFAULT_ACCOUNT_SID);
    let body = encode(pairs);
    for _ in 0..n {
        let (url, body) = (url.clone(), body.clone());
        tasks.spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .basic_auth(DEFAULT_ACCOUNT_SID, Some(DEFAULT_AUTH_TOKEN))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            anyhow::Ok((status, headers, response.json::<Value>().await?))
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer??);
    }
    Ok(answers)
}

/// A callback as the receiver saw it: signature header and form parameters.
type Received = (Option<String>, Vec<(String, String)>);

/// A tiny callback receiver; answers 500 to the first `fail_first` callbacks.
async fn receiver(fail_first: usize) -> anyhow::Result<(String, mpsc::UnboundedReceiver<Received>)> {
    let (sender, received) = mpsc::unbounded_channel();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(fail_first));
    let app = Router::new()
        .route(
            "/twilio/status",
            post(
                |State((sender, failures)): State<(
                    mpsc::UnboundedSender<Received>,
                    std::sync::Arc<std::sync::atomic::AtomicUsize>,
                )>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let left = failures.load(std::sync::atomic::Ordering::SeqCst);
                    if left > 0 {
                        failures.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let signature = headers
                        .get("x-twilio-signature")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let params = form_urlencoded::parse(&body).into_owned().collect();
                    let _ = sender.send((signature, params));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state((sender, failures));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/twilio/status?tenant=t1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

async fn next_callback(
    received: &mut mpsc::UnboundedReceiver<Received>,
) -> anyhow::Result<(String, HashMap<String, String>)> {
    let (signature, params) = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .context("no callback within 5 s")?
        .context("receiver closed")?;
    let signature = signature.context("no signature")?;
    Ok((signature, params.into_iter().collect()))
}

fn fast_config() -> SimulatorConfig {
    let mut config = SimulatorConfig::default();
    config.timings.sent_after = Duration::from_millis(20);
    config.timings.delivered_after = Duration::from_millis(20);
    config.timings.read_after = Duration::from_millis(20);
    config.callbacks.retry_after = Duration::from_millis(20);
    config
}

#[tokio::test]
async fn callbacks_arrive_in_order_and_their_signature_verifies() -> anyhow::Result<()> {
    let sim = start(fast_config()).await?;
    // The receiver refuses the very first callback: it is retried.
    let (url, mut received) = receiver(1).await?;
    let (status, _, created) = create(
        &sim,
        &[("To", TO), ("From", FROM), ("Body", "hi"), ("StatusCallback", &url)],
    )
    .await?;
    assert_eq!(status, 201);
    let sid = created["sid"].as_str().context("sid")?.to_owned();
    for expected in ["sent", "delivered"] {
        let (signature, params) = next_callback(&mut received).await?;
        assert_eq!(params["MessageStatus"], expected);
        assert_eq!(params["SmsStatus"], expected);
        assert_eq!(params["MessageSid"], sid);
        assert_eq!(params["SmsSid"], sid);
        assert_eq!(params["AccountSid"], DEFAULT_ACCOUNT_SID);
        assert_eq!(params["From"], FROM);
        assert_eq!(params["To"], TO);
        assert_eq!(params["ApiVersion"], "2010-04-01");
        assert!(!params.contains_key("ErrorCode"));
        let pairs: Vec<(String, String)> = params.into_iter().collect();
        assert!(common::twilio::signature::verify(
            DEFAULT_AUTH_TOKEN,
            &url,
            &pairs,
            &signature
        ));
        assert!(!common::twilio::signature::verify(
            "other-token",
            &url,
            &pairs,
            &signature
        ));
    }
    // The fetched status has caught up.
    let fetched = client(&sim, Duration::from_secs(2))?
        .fetch_message(&account(), &sid)
        .await;
    match fetched {
        FetchOutcome::Found(message) => assert_eq!(message.status, "delivered"),
        other => panic!("expected the message, got {other:?}"),
    }
    let stats = sim.shutdown().await?;
    assert_eq!(stats.callbacks_sent, 2);
    assert_eq!(stats.callbacks_failed, 1);
    assert_eq!(stats.callbacks_dropped, 0);
    Ok(())
}

#[tokio::test]
async fn injected_failures_end_undelivered_and_whatsapp_gets_read() -> anyhow::Result<()> {
    let mut config = fast_config();
    config.faults.unreachable_rate = 1.0;
    let failing = start(config).await?;
    let (url, mut received) = receiver(0).await?;
    let (status, _, _) = create(
        &failing,
        &[("To", TO), ("From", FROM), ("Body", "hi"), ("StatusCallback", &url)],
    )
    .await?;
    assert_eq!(status, 201);
    assert_eq!(next_callback(&mut received).await?.1["MessageStatus"], "sent");
    let (_, last) = next_callback(&mut received).await?;
    assert_eq!(last["MessageStatus"], "undelivered");
    assert_eq!(last["ErrorCode"], "30003");
    assert!(last.contains_key("RawDlrDoneDate"));
    drop(failing);

    let sim = start(fast_config()).await?;
    let content = format!("HX{}", "c".repeat(32));
    let (status, _, created) = create(
        &sim,
        &[
            ("To", "whatsapp:+14155550100"),
            ("From", "whatsapp:+14155550199"),
            ("ContentSid", &content),
            ("ContentVariables", r#"{"1":"Ana"}"#),
            ("StatusCallback", &url),
        ],
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["num_segments"], "1");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (_, params) = next_callback(&mut received).await?;
        assert_eq!(params["To"], "whatsapp:+14155550100");
        seen.push(params["MessageStatus"].clone());
    }
    assert_eq!(seen, ["sent", "delivered", "read"]);
    Ok(())
}

#[tokio::test]
async fn the_violation_detector_catches_a_burst_and_not_paced_traffic() -> anyhow::Result<()> {
    // The rule on synthetic instants.
    let at = |ms: &[u64]| ms.iter().map(|ms| Duration::from_millis(*ms)).collect::<Vec<_>>();
    assert!(find_violations(&at(&[0, 1000, 2000, 3000, 4000]), 1).is_empty());
    assert_eq!(
        find_violations(&at(&[0, 1000, 1500]), 1),
        vec![(Duration::from_millis(1000), 2)]
    );

    // Over HTTP: one sender sends twice at once, another twice 1.1 s apart, a third (at 2/s)
    // twice at once.
    let fast = "+14155550177";
    let mut config = SimulatorConfig::default();
    config.sender_rates.insert(fast.to_owned(), 2.0);
    let sim = start(config).await?;
    let bursty = "+14155550188";
    let paced = "+14155550166";
    for from in [bursty, bursty, paced, fast, fast] {
        let (status, _, _) = create(&sim, &[("To", TO), ("From", from), ("Body", "hi")]).await?;
        assert_eq!(status, 201);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = create(&sim, &[("To", TO), ("From", paced), ("Body", "hi")]).await?;
    assert_eq!(status, 201);

    let stats = http_stats(&sim).await?;
    assert_eq!(stats.per_sender.get(bursty), Some(&2));
    assert_eq!(stats.per_sender.get(paced), Some(&2));
    assert_eq!(stats.violations.len(), 1, "{:?}", stats.violations);
    let violation = &stats.violations[0];
    assert_eq!(violation.sender, bursty);
    assert_eq!((violation.count, violation.allowed), (2, 1));
    assert!(violation.window_start_ms < 1000);
    assert_eq!(sim.stats().violations, stats.violations);
    Ok(())
}

#[tokio::test]
async fn the_dispatchers_twilio_client_works_against_it() -> anyhow::Result<()> {
    let sim = start(SimulatorConfig::default()).await?;
    let twilio = client(&sim, Duration::from_secs(2))?;
    let form = encode(&[("To", TO), ("From", FROM), ("Body", "hello from the client")]);
    let sid = match twilio.create_message(&account(), form).await {
        CreateOutcome::Accepted { sid } => sid,
        other => panic!("expected accepted, got {other:?}"),
    };
    match twilio.fetch_message(&account(), &sid).await {
        FetchOutcome::Found(message) => {
            assert_eq!(message.sid, sid);
            assert_eq!(message.error_code, None);
        }
        other => panic!("expected the message, got {other:?}"),
    }
    assert_eq!(
        twilio.fetch_message(&account(), &format!("SM{}", "f".repeat(32))).await,
        FetchOutcome::NotFound
    );
    let bad = encode(&[("To", "nope"), ("From", FROM), ("Body", "x")]);
    match twilio.create_message(&account(), bad).await {
        CreateOutcome::Rejected(error) => assert_eq!(error.code, Some(21211)),
        other => panic!("expected a rejection, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn injected_server_errors_and_timeouts_map_to_transient_and_unknown() -> anyhow::Result<()> {
    let form = || encode(&[("To", TO), ("From", FROM), ("Body", "x")]);
    let sim = start(SimulatorConfig {
        faults: Faults {
            server_error_rate: 1.0,
            ..Faults::default()
        },
        seed: Some(7),
        ..SimulatorConfig::default()
    })
    .await?;
    match client(&sim, Duration::from_secs(2))?
        .create_message(&account(), form())
        .await
    {
        CreateOutcome::Transient { reason, .. } => assert_eq!(reason, "TWILIO_20503"),
        other => panic!("expected transient, got {other:?}"),
    }
    assert_eq!(sim.shutdown().await?.rejected_by_code.get("20503"), Some(&1));

    let sim = start(SimulatorConfig {
        faults: Faults {
            timeout_rate: 1.0,
            ..Faults::default()
        },
        timeout_hold: Duration::from_secs(60),
        ..SimulatorConfig::default()
    })
    .await?;
    match client(&sim, Duration::from_millis(500))?
        .create_message(&account(), form())
        .await
    {
        CreateOutcome::Unknown { reason } => assert_eq!(reason, "TWILIO_TIMEOUT"),
        other => panic!("expected unknown, got {other:?}"),
    }
    // The message exists anyway, and shutdown does not wait for the held answer.
    let started = std::time::Instant::now();
    let stats = sim.shutdown().await?;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((stats.accepted, stats.timeouts), (1, 1));
    Ok(())
}

#[tokio::test]
async fn invalid_configurations_are_refused() {
    let config = SimulatorConfig {
        concurrency: 0,
        ..SimulatorConfig::default()
    };
    assert!(Simulator::start(config).await.is_err());
}

/// An SMS from `FROM` to `to` through the dispatcher's Twilio provider.
fn outbound(message_id: &str, to: &str) -> common::provider::OutboundMessage {
    let value = serde_json::json!({"version": 1, "message_id": message_id, "tenant_id": "acme", "channel": "sms",
                                   "to": to, "body": format!("hello {message_id}")});
    common::provider::OutboundMessage {
        envelope: common::Envelope::parse(&serde_json::to_vec(&value).unwrap()).unwrap(),
        sender: common::Sender::Phone(common::PhoneNumber::parse(FROM).unwrap()),
        segments: 1,
        paced_at: tokio::time::Instant::now(),
        accepted_at: time::OffsetDateTime::now_utc(),
    }
}

/// A message left `unknown` at `lost_at`, with no SID.
fn lost(message_id: &str, to: &str, lost_at: time::OffsetDateTime) -> common::store::MessageRecord {
    common::store::MessageRecord {
        tenant_id: common::TenantId::parse("acme").unwrap(),
        message_id: common::MessageId::parse(message_id).unwrap(),
        campaign_id: None,
        channel: common::Channel::Sms,
        recipient: to.to_owned(),
        priority: common::Priority::Transactional,
        segments: 1,
        status: common::MessageStatus::Unknown,
        reason: Some("TWILIO_HTTP_500".to_owned()),
        provider_message_id: None,
        accepted_at: lost_at,
        updated_at: lost_at,
        history: vec![common::store::StatusChange {
            status: common::MessageStatus::Unknown,
            at: lost_at,
            reason: Some("TWILIO_HTTP_500".to_owned()),
        }],
    }
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_its_recipient_or_known_never_created() -> anyhow::Result<()> {
    use common::provider::{Lookup, Provider, SendOutcome};
    use common::twilio::provider::{StaticCredentials, TwilioProvider};

    let sim = start(SimulatorConfig {
        faults: Faults {
            lost_answer_rate: 1.0,
            ..Faults::default()
        },
        ..SimulatorConfig::default()
    })
    .await?;
    let provider = TwilioProvider::new(
        client(&sim, Duration::from_secs(2))?,
        std::sync::Arc::new(StaticCredentials(account())),
        None,
    );
    // Twilio's 500 is an unknown outcome, never a failure: the message was created.
    let outcomes = provider.send(&[outbound("m-1", TO)]).await;
    assert!(matches!(&outcomes[..], [SendOutcome::Unknown { .. }]), "{outcomes:?}");
    let now = time::OffsetDateTime::now_utc();
    let created: Vec<Value> = reqwest::Client::new()
        .get(format!(
            "{}?To={}",
            messages_url(&sim, DEFAULT_ACCOUNT_SID),
            "%2B14155550100"
        ))
        .basic_auth(DEFAULT_ACCOUNT_SID, Some(DEFAULT_AUTH_TOKEN))
        .send()
        .await?
        .json::<Value>()
        .await?["messages"]
        .as_array()
        .context("a list page has messages")?
        .clone();
    assert_eq!(created.len(), 1);

    // The one message to that recipient around the loss is adopted with its SID.
    match provider.lookup(&lost("m-1", TO, now)).await {
        Lookup::Found {
            provider_message_id,
            status,
            ..
        } => {
            assert_eq!(provider_message_id, created[0]["sid"].as_str().unwrap());
            assert!(
                matches!(status, common::MessageStatus::Sent | common::MessageStatus::Delivered),
                "{status:?}"
            );
        }
        other => panic!("expected the message found, got {other:?}"),
    }
    // Nothing to another recipient: never created, so nothing was sent.
    assert_eq!(
        provider.lookup(&lost("m-2", "+14155550111", now)).await,
        Lookup::NeverCreated
    );
    // Nothing created near a loss long before this one, either.
    let long_ago = now - Duration::from_secs(7_200);
    assert_eq!(provider.lookup(&lost("m-0", TO, long_ago)).await, Lookup::NeverCreated);
    // Two messages to the recipient around the loss cannot be told apart: left as they are.
    provider.send(&[outbound("m-3", TO)]).await;
    assert_eq!(provider.lookup(&lost("m-1", TO, now)).await, Lookup::Unavailable);
    // A message with a SID is fetched, and one without in another status is not looked for.
    let mut sent = lost("m-1", TO, now);
    sent.status = common::MessageStatus::Sent;
    assert_eq!(provider.lookup(&sent).await, Lookup::NotFound);
    assert_eq!(sim.shutdown().await?.timeouts, 2);
    Ok(())
}
