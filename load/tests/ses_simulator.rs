//! The SES routes of the provider simulator, driven through the real client (`common::ses`) and
//! `SesProvider`: bulk sends with partial failures mapped entry by entry, SES's limits and
//! throttling as the SDK sees them, one unsubscribe link per bulk entry, and the SES events the
//! simulator delivers as SNS notifications, verified with `SnsVerifier`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::HeaderMap;
use common::credentials::{Keyring, generate_key};
use common::provider::{OutboundMessage, Provider, SendOutcome};
use common::ses::events::SesEventType;
use common::ses::provider::{SesProvider, StaticSesCredentials};
use common::ses::sns::{CertUrlPolicy, CertificateSource, SnsError, SnsMessage, SnsVerifier};
use common::ses::{
    BulkEmail, BulkEntry, EmailContent, OutboundEmail, RejectClass, SesAccount, SesClient, SesSendOutcome, SesSettings,
};
use common::unsubscribe::UnsubscribeLinks;
use common::{Envelope, Sender};
use load::simulator::ses::{DEFAULT_ACCESS_KEY_ID, DEFAULT_TOPIC_ARN, MailboxEntry};
use load::simulator::{RunningSimulator, SesSimConfig, Simulator, SimulatorConfig};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::mpsc;

fn account(access_key_id: &str) -> SesAccount {
    SesAccount::new(access_key_id, "simulator-secret", "us-east-1")
}

fn client(sim: &RunningSimulator) -> SesClient {
    SesClient::new(SesSettings {
        endpoint: Some(sim.base_url()),
        ..SesSettings::default()
    })
    .unwrap()
}

fn provider(sim: &RunningSimulator) -> SesProvider {
    SesProvider::new(
        client(sim),
        Arc::new(StaticSesCredentials(account(DEFAULT_ACCESS_KEY_ID))),
        None,
    )
}

fn email(message_id: &str, to: &str, content: serde_json::Value) -> OutboundMessage {
    let mut json = serde_json::json!({
        "version": 1,
        "message_id": message_id,
        "tenant_id": "acme",
        "channel": "email",
        "to": to,
        "from": "news@acme.example.com",
    });
    for (key, value) in content.as_object().unwrap() {
        json[key] = value.clone();
    }
    let envelope = Envelope::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
    let sender: Sender = envelope.from.clone().unwrap();
    OutboundMessage {
        envelope,
        sender,
        segments: 1,
        paced_at: tokio::time::Instant::now(),
        accepted_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

fn templated(message_id: &str, to: &str) -> OutboundMessage {
    email(
        message_id,
        to,
        serde_json::json!({"template": {"id": "order-shipped", "variables": {"order": message_id}}}),
    )
}

fn free_text(message_id: &str, to: &str) -> OutboundMessage {
    email(
        message_id,
        to,
        serde_json::json!({"subject": "Hello", "body": "Hi there"}),
    )
}

/// One SNS delivery as the receiver got it.
#[derive(Debug, Clone)]
struct Delivery {
    message_type: Option<String>,
    body: Bytes,
}

/// A local HTTP endpoint that records SNS deliveries.
async fn sns_receiver() -> (reqwest::Url, mpsc::UnboundedReceiver<Delivery>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/sns",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sender = sender.clone();
            async move {
                let message_type = headers
                    .get("x-amz-sns-message-type")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let _ = sender.send(Delivery { message_type, body });
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/sns").parse().unwrap(), receiver)
}

/// Waits for `count` deliveries (10 s at most).
async fn collect(receiver: &mut mpsc::UnboundedReceiver<Delivery>, count: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await {
            Ok(Some(delivery)) => got.push(delivery),
            _ => panic!("only {} of {count} sns deliveries arrived", got.len()),
        }
    }
    got
}

/// Fetches certificates over plain HTTP (the simulator's loopback URL).
struct HttpCertificates;

#[async_trait]
impl CertificateSource for HttpCertificates {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, SnsError> {
        let failed = |reason: String| SnsError::CertificateFetch {
            url: url.to_owned(),
            reason,
        };
        let answer = reqwest::get(url).await.map_err(|error| failed(error.to_string()))?;
        let answer = answer.error_for_status().map_err(|error| failed(error.to_string()))?;
        Ok(answer
            .bytes()
            .await
            .map_err(|error| failed(error.to_string()))?
            .to_vec())
    }
}

fn sim_verifier(sim: &RunningSimulator, topic: &str) -> SnsVerifier {
    SnsVerifier::new([topic], Arc::new(HttpCertificates))
        .with_cert_url_policy(CertUrlPolicy::Exact(format!("{}/sns/cert.pem", sim.base_url())))
}

fn event_of(message: &SnsMessage) -> serde_json::Value {
    serde_json::from_str(&message.message).unwrap()
}

#[tokio::test]
async fn a_bulk_send_partly_succeeds_and_each_entry_maps_on_its_own() {
    let (sns_endpoint, mut deliveries) = sns_receiver().await;
    let sim = Simulator::start(SimulatorConfig {
        seed: Some(11),
        ses: SesSimConfig {
            entry_rejected_rate: 0.2,
            entry_transient_rate: 0.2,
            sns_endpoint: Some(sns_endpoint),
            event_delay: Duration::from_millis(5),
            ..SesSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let provider = provider(&sim);
    let batch: Vec<OutboundMessage> = (0..50)
        .map(|i| templated(&format!("bulk-{i}"), &format!("user{i}@example.com")))
        .collect();
    let keys: Vec<Option<String>> = batch.iter().map(|message| provider.batch_key(message)).collect();
    assert!(
        keys.windows(2).all(|pair| pair[0] == pair[1]),
        "one template, sender, tenant: one key"
    );

    let outcomes = provider.send(&batch).await;
    assert_eq!(outcomes.len(), 50);
    let stats = sim.stats().ses;
    assert_eq!(
        stats.bulk_requests, 1,
        "50 templated messages go as one SendBulkEmail call"
    );
    assert_eq!(stats.send_email_requests, 0);

    let mut accepted = HashMap::new();
    let (mut rejected, mut transient) = (0, 0);
    for (message, outcome) in batch.iter().zip(&outcomes) {
        match outcome {
            SendOutcome::Accepted { provider_message_id } => {
                accepted.insert(provider_message_id.clone(), message.envelope.message_id.to_string());
            }
            SendOutcome::Failed { code } => {
                assert_eq!(code, "SES_MESSAGE_REJECTED");
                rejected += 1;
            }
            SendOutcome::Transient { reason, retry_after } => {
                assert_eq!(reason, "SES_TRANSIENT_FAILURE");
                assert_eq!(*retry_after, None);
                transient += 1;
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert!(!accepted.is_empty() && rejected > 0 && transient > 0, "{outcomes:?}");
    assert_eq!(accepted.len() as u64, stats.accepted);
    assert_eq!(rejected, stats.entries_rejected);
    assert_eq!(transient, stats.entries_transient);

    // Each accepted entry's SES id belongs to that entry: its events carry our message id as a
    // tag, so outcome i really is entry i's.
    let verifier = sim_verifier(&sim, DEFAULT_TOPIC_ARN);
    let events = collect(&mut deliveries, accepted.len() * 2).await;
    let mut sends = 0;
    for delivery in events {
        assert_eq!(delivery.message_type.as_deref(), Some("Notification"));
        let message: SnsMessage = serde_json::from_slice(&delivery.body).unwrap();
        verifier.verify(&message).await.unwrap();
        let event = event_of(&message);
        let kind = SesEventType::parse(event["eventType"].as_str().unwrap()).unwrap();
        let ses_id = event["mail"]["messageId"].as_str().unwrap();
        let tags: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_value(event["mail"]["tags"].clone()).unwrap();
        let ours = common::ses::tags::message_of_tags(&tags).map(|(_, id)| id.to_string());
        assert_eq!(ours.as_deref(), accepted.get(ses_id).map(String::as_str), "{event}");
        if kind == SesEventType::Send {
            sends += 1;
        } else {
            assert_eq!(kind, SesEventType::Delivery);
        }
    }
    assert_eq!(sends, accepted.len());
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bulk_marketing_send_gives_each_recipient_its_own_unsubscribe_link() {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let keyring =
        Arc::new(Keyring::parse(&SecretString::from(format!("k1:{}", generate_key().expose_secret()))).unwrap());
    let links = UnsubscribeLinks::new("https://api.example.com", Arc::clone(&keyring));
    let provider = SesProvider::new(
        client(&sim),
        Arc::new(StaticSesCredentials(account(DEFAULT_ACCESS_KEY_ID))),
        Some(links),
    );
    let batch: Vec<OutboundMessage> = (0..3)
        .map(|i| templated(&format!("news-{i}"), &format!("reader{i}@example.com")))
        .collect();
    let outcomes = provider.send(&batch).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, SendOutcome::Accepted { .. })),
        "{outcomes:?}"
    );
    assert_eq!(sim.stats().ses.bulk_requests, 1);

    let mailbox: Vec<MailboxEntry> = reqwest::get(format!("{}/ses/mailbox", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mailbox.len(), 3);
    for (i, mail) in mailbox.iter().enumerate() {
        let address = format!("reader{i}@example.com");
        assert_eq!(mail.to, std::slice::from_ref(&address));
        assert_eq!(mail.template.as_deref(), Some("order-shipped"));
        let link = &mail
            .headers
            .iter()
            .find(|(name, _)| name == "List-Unsubscribe")
            .unwrap()
            .1;
        let token = link.split(['/', '>']).nth(4).unwrap();
        let whom = common::unsubscribe::open(&keyring, token).unwrap();
        assert_eq!(
            (whom.tenant_id.as_str(), whom.address.as_str()),
            ("acme", address.as_str())
        );
        assert!(mail.headers.contains(&(
            "List-Unsubscribe-Post".to_owned(),
            "List-Unsubscribe=One-Click".to_owned()
        )));
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn limits_throttling_and_credentials_as_the_sdk_sees_them() {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let client = client(&sim);
    let good = account(DEFAULT_ACCESS_KEY_ID);

    // 51 entries: SES refuses the whole call; every entry is a permanent failure.
    let bulk = BulkEmail {
        from: "news@acme.example.com".into(),
        template: "order-shipped".into(),
        default_template_data: "{}".into(),
        entries: (0..51)
            .map(|i| BulkEntry {
                to: vec![format!("user{i}@example.com")],
                template_data: "{}".into(),
                headers: Vec::new(),
                tenant_id: common::TenantId::parse("acme").unwrap(),
                message_id: common::MessageId::parse(format!("m{i}")).unwrap(),
            })
            .collect(),
    };
    let outcomes = client.send_bulk_email(&good, &bulk).await;
    assert_eq!(outcomes.len(), 51);
    let bad_request = SesSendOutcome::Rejected {
        code: "SES_BAD_REQUEST".into(),
        class: RejectClass::Permanent,
    };
    assert!(outcomes.iter().all(|outcome| *outcome == bad_request), "{outcomes:?}");

    // An entry without an address, a SendEmail without content: BadRequestException too.
    let mut no_address = bulk.clone();
    no_address.entries.truncate(2);
    no_address.entries[1].to.clear();
    assert_eq!(
        client.send_bulk_email(&good, &no_address).await,
        vec![bad_request.clone(); 2]
    );
    let no_recipient = OutboundEmail {
        from: "news@acme.example.com".into(),
        to: Vec::new(),
        content: EmailContent::Simple {
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
        },
        headers: Vec::new(),
        tenant_id: common::TenantId::parse("acme").unwrap(),
        message_id: common::MessageId::parse("m").unwrap(),
    };
    assert_eq!(client.send_email(&good, &no_recipient).await, bad_request);

    // An access key the simulator does not know: the tenant's credentials need attention.
    let outcomes = SesProvider::new(
        client.clone(),
        Arc::new(StaticSesCredentials(account("AKIAUNKNOWN"))),
        None,
    )
    .send(&[free_text("m-auth", "ana@example.com")])
    .await;
    assert_eq!(
        outcomes,
        vec![SendOutcome::Failed {
            code: "SES_AUTH".into()
        }]
    );
    let stats = sim.stats().ses;
    assert_eq!(stats.errors_by_type.get("BadRequestException"), Some(&3));
    assert_eq!(stats.errors_by_type.get("UnrecognizedClientException"), Some(&1));
    assert_eq!(stats.accepted, 0);
    sim.shutdown().await.unwrap();

    // Throttled: 429 TooManyRequestsException, safe to retry, for single and bulk sends alike.
    let sim = Simulator::start(SimulatorConfig {
        ses: SesSimConfig {
            throttle_rate: 1.0,
            ..SesSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let throttled = SendOutcome::Transient {
        reason: "SES_THROTTLED".into(),
        retry_after: None,
    };
    let provider = provider(&sim);
    assert_eq!(
        provider.send(&[free_text("m-1", "ana@example.com")]).await,
        vec![throttled.clone()]
    );
    let batch = [templated("m-2", "a@example.com"), templated("m-3", "b@example.com")];
    assert_eq!(provider.send(&batch).await, vec![throttled.clone(), throttled]);
    let stats = sim.stats().ses;
    assert_eq!(stats.errors_by_type.get("TooManyRequestsException"), Some(&2));
    assert_eq!((stats.send_email_requests, stats.bulk_requests), (1, 1));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn ses_events_arrive_as_signed_sns_notifications_and_forgeries_fail() {
    let (sns_endpoint, mut deliveries) = sns_receiver().await;
    let sim = Simulator::start(SimulatorConfig {
        ses: SesSimConfig {
            sns_endpoint: Some(sns_endpoint),
            event_delay: Duration::from_millis(5),
            ..SesSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let provider = provider(&sim);
    // The SES mailbox simulator's addresses: delivered, bounced, delivered then complained of.
    let batch = [
        free_text("m-success", "success@simulator.amazonses.com"),
        free_text("m-bounce", "bounce@simulator.amazonses.com"),
        free_text("m-complaint", "complaint@simulator.amazonses.com"),
    ];
    let outcomes = provider.send(&batch).await;
    let mut by_ses_id = HashMap::new();
    for (message, outcome) in batch.iter().zip(&outcomes) {
        let SendOutcome::Accepted { provider_message_id } = outcome else {
            panic!("expected acceptance, got {outcome:?}");
        };
        by_ses_id.insert(provider_message_id.clone(), message.envelope.message_id.to_string());
    }

    let verifier = sim_verifier(&sim, DEFAULT_TOPIC_ARN);
    let mut events: HashMap<String, Vec<String>> = HashMap::new();
    let mut messages = Vec::new();
    for delivery in collect(&mut deliveries, 2 + 2 + 3).await {
        let message: SnsMessage = serde_json::from_slice(&delivery.body).unwrap();
        verifier.verify(&message).await.unwrap();
        assert_eq!(message.signature_version, "2");
        let event = event_of(&message);
        let ses_id = event["mail"]["messageId"].as_str().unwrap().to_owned();
        let kind = event["eventType"].as_str().unwrap().to_owned();
        SesEventType::parse(&kind).unwrap();
        if kind == "Bounce" {
            assert_eq!(event["bounce"]["bounceType"], "Permanent");
        }
        events.entry(by_ses_id[&ses_id].clone()).or_default().push(kind);
        messages.push(message);
    }
    assert_eq!(events["m-success"], ["Send", "Delivery"]);
    assert_eq!(events["m-bounce"], ["Send", "Bounce"]);
    assert_eq!(events["m-complaint"], ["Send", "Delivery", "Complaint"]);
    assert_eq!(verifier.cached_certificates(), 1);

    let genuine = messages[0].clone();
    // A certificate on another host (even one serving the same PEM) is refused before any fetch.
    let mut wrong_host = genuine.clone();
    wrong_host.signing_cert_url = wrong_host.signing_cert_url.replace("127.0.0.1", "localhost");
    assert!(matches!(
        verifier.verify(&wrong_host).await,
        Err(SnsError::BadCertificateUrl { .. })
    ));
    // Under the production policy the simulator's loopback http URL is refused too.
    let aws_policy = SnsVerifier::new([DEFAULT_TOPIC_ARN], Arc::new(HttpCertificates));
    assert!(matches!(
        aws_policy.verify(&genuine).await,
        Err(SnsError::BadCertificateUrl { .. })
    ));
    // A tampered event no longer matches its signature.
    let mut tampered = genuine.clone();
    tampered.message = tampered.message.replace("\"Send\"", "\"Delivery\"");
    assert_ne!(tampered.message, genuine.message);
    assert_eq!(verifier.verify(&tampered).await, Err(SnsError::SignatureMismatch));
    // A genuine notification from a topic we did not subscribe to.
    let other_topic = sim_verifier(&sim, "arn:aws:sns:us-east-1:123456789012:someone-else");
    assert!(matches!(
        other_topic.verify(&genuine).await,
        Err(SnsError::UnexpectedTopic(_))
    ));
    let stats = sim.shutdown().await.unwrap().ses;
    assert_eq!(stats.notifications_sent, 7);
    assert_eq!(stats.notifications_failed, 0);
}
