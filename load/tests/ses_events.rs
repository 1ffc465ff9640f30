//! SES events over SNS against the all-in-one stack, each one crafted and signed with the test
//! key as SNS would sign it: a tenant's own topic speaks for that tenant only, a bounce or
//! complaint suppresses only the recipient of the message it names, a replayed or stale
//! notification changes nothing, an unsigned one is refused like a forged one, and a
//! subscription confirmation follows no redirect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use common::credentials::{Keyring, SNS_TOPIC_ARN, generate_key, seal};
use common::ses::sns::{SnsMessage, TYPE_NOTIFICATION, TYPE_SUBSCRIPTION_CONFIRMATION};
use common::ses::tags::message_tags;
use common::store::sqlite::SqliteStore;
use common::store::{ContactStore, MessageStore, OnboardingStore, ProviderKind};
use common::{Channel, MessageId, TenantId};
use engageninja::testing::{self, TestApp};
use load::simulator::ses::{TEST_SIGNING_CERT_PEM, sign_with_test_key};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const PLATFORM_TOPIC: &str = "arn:aws:sns:us-east-1:111111111111:platform-events";
const DEMO_TOPIC: &str = "arn:aws:sns:us-east-1:222222222222:demo-events";
const RECIPIENT: &str = "ada@example.com";
const BYSTANDER: &str = "bystander@example.com";

/// Where the test's SNS stand-in serves the certificate, a confirmation URL that redirects,
/// and the redirect's target, which counts its hits.
struct SnsOrigin {
    addr: SocketAddr,
    redirected_hits: Arc<AtomicU64>,
}

impl SnsOrigin {
    async fn start() -> Self {
        let redirected_hits = Arc::new(AtomicU64::new(0));
        let hits = Arc::clone(&redirected_hits);
        let app = Router::new()
            .route("/cert.pem", get(|| async { TEST_SIGNING_CERT_PEM }))
            .route("/confirm", get(|| async { Redirect::temporary("/elsewhere") }))
            .route(
                "/elsewhere",
                get(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async { StatusCode::OK.into_response() }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, redirected_hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The all-in-one stack, with this suite's requests.
struct Running {
    app: TestApp,
    demo_key: String,
    http: reqwest::Client,
}

impl Running {
    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Posts an SNS message as SNS does (JSON as text/plain); answers the status and the error
    /// code, if any.
    async fn post(&self, query: &str, message: &SnsMessage) -> (u16, Option<String>) {
        let answer = self
            .http
            .post(self.url(&format!("/webhooks/ses{query}")))
            .header("content-type", "text/plain; charset=UTF-8")
            .body(serde_json::to_string(message).unwrap())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        (status, body["error"]["code"].as_str().map(str::to_owned))
    }
}

fn now_rfc3339(offset: time::Duration) -> String {
    (OffsetDateTime::now_utc() + offset).format(&Rfc3339).unwrap()
}

/// A signed notification from `topic` carrying an SES complaint about `message` of `tenant`,
/// naming `recipients`, published `age` ago.
fn complaint(
    topic: &str,
    id: &str,
    tenant: &str,
    message: &str,
    recipients: &[&str],
    age: time::Duration,
) -> SnsMessage {
    let tags: serde_json::Map<String, Value> =
        message_tags(&TenantId::parse(tenant).unwrap(), &MessageId::parse(message).unwrap())
            .into_iter()
            .map(|(name, value)| (name.to_owned(), json!([value])))
            .collect();
    let event = json!({
        "eventType": "Complaint",
        "mail": { "messageId": "0100018c-ses-id", "tags": tags },
        "complaint": {
            "complainedRecipients": recipients.iter().map(|to| json!({"emailAddress": to})).collect::<Vec<_>>(),
            "complaintFeedbackType": "abuse",
        },
    });
    signed(SnsMessage {
        message_type: TYPE_NOTIFICATION.to_owned(),
        message_id: id.to_owned(),
        token: None,
        topic_arn: topic.to_owned(),
        subject: None,
        message: event.to_string(),
        subscribe_url: None,
        unsubscribe_url: None,
        timestamp: now_rfc3339(-age),
        signature_version: "2".to_owned(),
        signature: String::new(),
        signing_cert_url: String::new(),
    })
}

fn signed(mut message: SnsMessage) -> SnsMessage {
    sign_with_test_key(&mut message).unwrap();
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_events_are_bound_to_their_topic_tenant_recipient_and_time() {
    let origin = SnsOrigin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = SecretString::from(format!("k1:{}", generate_key().expose_secret()));
    let mut settings = testing::settings(dir.path());
    settings.credentials.keys = Some(keys.clone());
    settings.providers.ses.sns_topic_arns = vec![PLATFORM_TOPIC.to_owned()];
    settings.providers.ses.sns_cert_url = Some(origin.url("/cert.pem"));
    let app = testing::all_in_one(settings.clone()).await;
    let running = Running {
        demo_key: app.demo_key().to_owned(),
        app,
        http: reqwest::Client::new(),
    };
    let cert = origin.url("/cert.pem");
    let with_cert = |mut message: SnsMessage| {
        message.signing_cert_url = cert.clone();
        signed(message)
    };

    // The demo tenant's email (sent by the demo provider), and its own SNS topic stored with
    // a verified email channel.
    let demo = TenantId::parse("demo").unwrap();
    let (code, body) = {
        let answer = running
            .http
            .post(running.url("/v1/messages"))
            .bearer_auth(&running.demo_key)
            .json(
                &json!({"messages": [{"message_id": "mail-1", "channel": "email", "to": RECIPIENT,
                "from": "news@demo.example", "subject": "Hello", "body": "Hello"}]}),
            )
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    };
    assert_eq!(code, 202, "{body}");
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store
        .message(&demo, &MessageId::parse("mail-1").unwrap())
        .await
        .unwrap()
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "mail-1 never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keyring = Keyring::parse(&keys).unwrap();
    let mut email = seal(
        &keyring,
        &demo,
        Channel::Email,
        ProviderKind::Ses,
        json!({"access_key_id": "AKIAEXAMPLEEXAMPLE", "region": "us-east-1",
               "from_address": "news@demo.example", SNS_TOPIC_ARN: DEMO_TOPIC}),
        &SecretString::from("secret"),
    );
    email.is_verified = true;
    store.put_credentials(&email).await.unwrap();
    let suppressed = |address: &'static str| {
        let (store, demo) = (&store, &demo);
        async move { store.suppression(demo, address).await.unwrap().is_some() }
    };
    let young = time::Duration::seconds(5);

    // The tenant's topic only at its own subscription URL, and only for its own messages.
    let note = with_cert(complaint(DEMO_TOPIC, "n-0", "demo", "mail-1", &[RECIPIENT], young));
    assert_eq!(running.post("", &note).await, (403, Some("unexpected_topic".into())));
    assert_eq!(
        running.post("?tenant=acme", &note).await,
        (403, Some("unexpected_topic".into()))
    );
    let foreign = with_cert(complaint(DEMO_TOPIC, "n-1", "acme", "m-1", &[RECIPIENT], young));
    assert_eq!(
        running.post("?tenant=demo", &foreign).await,
        (403, Some("foreign_tenant".into()))
    );

    // Published too long ago: a replay, refused.
    let stale = with_cert(complaint(
        DEMO_TOPIC,
        "n-2",
        "demo",
        "mail-1",
        &[RECIPIENT],
        time::Duration::hours(2),
    ));
    assert_eq!(
        running.post("?tenant=demo", &stale).await,
        (403, Some("stale_message".into()))
    );

    // Without a Signature: refused like a forged one, not as malformed.
    let mut unsigned = serde_json::to_value(&note).unwrap();
    unsigned.as_object_mut().unwrap().remove("Signature");
    let answer = running
        .http
        .post(running.url("/webhooks/ses?tenant=demo"))
        .body(unsigned.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    assert!(!suppressed(RECIPIENT).await);

    // Applied: the complaint suppresses the message's recipient, never the bystander it also
    // names.
    let complained = with_cert(complaint(
        DEMO_TOPIC,
        "n-3",
        "demo",
        "mail-1",
        &[BYSTANDER, RECIPIENT],
        young,
    ));
    assert_eq!(running.post("?tenant=demo", &complained).await, (204, None));
    assert!(suppressed(RECIPIENT).await);
    assert!(!suppressed(BYSTANDER).await);

    // Lifted by the operator, then the same notification replayed: nothing changes.
    assert!(store.unsuppress(&demo, RECIPIENT).await.unwrap());
    assert_eq!(running.post("?tenant=demo", &complained).await, (204, None));
    assert!(!suppressed(RECIPIENT).await);

    // A confirmation whose SubscribeURL redirects is not followed.
    let confirmation = with_cert(SnsMessage {
        message_type: TYPE_SUBSCRIPTION_CONFIRMATION.to_owned(),
        message_id: "c-1".to_owned(),
        token: Some("token".to_owned()),
        topic_arn: PLATFORM_TOPIC.to_owned(),
        subject: None,
        message: "You have chosen to subscribe.".to_owned(),
        subscribe_url: Some(origin.url("/confirm")),
        unsubscribe_url: None,
        timestamp: now_rfc3339(-young),
        signature_version: "2".to_owned(),
        signature: String::new(),
        signing_cert_url: String::new(),
    });
    assert_eq!(
        running.post("", &confirmation).await,
        (502, Some("subscription_confirmation_failed".into()))
    );
    assert_eq!(origin.redirected_hits.load(Ordering::SeqCst), 0);

    running.app.shutdown().await;
}
