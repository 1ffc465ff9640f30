//! End to end through the real Twilio client: the all-in-one stack on port 0 sends a live
//! tenant's messages to the provider simulator, whose status callbacks, signed with the
//! account's token, come back to the admin API's webhook and move each message to `sent`,
//! then `delivered` (and `read` on WhatsApp). Inbound webhooks open the WhatsApp 24-hour window
//! and apply STOP and START, each answered once with the tenant's reply. A campaign held while
//! the brand is under review goes once it is approved.

use std::net::SocketAddr;
use std::time::Duration;

use common::address::PhoneNumber;
use common::config::Settings;
use common::credentials::{Keyring, generate_key};
use common::store::sqlite::SqliteStore;
use common::store::{AuditStore, ContactStore};
use common::store::{BrandStatus, MessageStore, NumberStatus, OnboardingStore, SenderKind, SenderNumber, UsageStore};
use common::twilio::signature::{SIGNATURE_HEADER, compute};
use common::unsubscribe::UnsubscribeLinks;
use common::{Channel, TenantId};
use engageninja::testing::{self, TestApp};
use load::fixtures::live_twilio_tenant;
use load::simulator::ses::{CERT_PATH, DEFAULT_ACCESS_KEY_ID, DEFAULT_TOPIC_ARN};
use load::simulator::{
    DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, RunningSimulator, SesSimConfig, Simulator, SimulatorConfig,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;

const SMS_FROM: &str = "+14155550150";
const WHATSAPP_FROM: &str = "+14155550151";
const CONTACT: &str = "+14155550177";
/// A well-formed message SID that Twilio never gave any message here.
const UNKNOWN_SID: &str = "SM00000000000000000000000000000009";

struct Running {
    app: TestApp,
    key: String,
    http: reqwest::Client,
    /// The stack's credential key ring (which also seals unsubscribe links).
    keyring: Keyring,
}

impl Running {
    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Submits one envelope to the contact; answers its message id.
    async fn send(&self, id: &str, channel: &str, from: &str, content: Value) -> String {
        self.send_to(id, channel, from, CONTACT, content).await
    }

    /// Submits one envelope; answers its message id.
    async fn send_to(&self, id: &str, channel: &str, from: &str, to: &str, content: Value) -> String {
        let mut envelope = json!({
            "version": 1, "message_id": id, "tenant_id": "acme", "channel": channel,
            "to": to, "from": from,
        });
        envelope
            .as_object_mut()
            .unwrap()
            .extend(content.as_object().unwrap().clone());
        let response = self
            .http
            .post(self.url("/v1/messages"))
            .bearer_auth(&self.key)
            .json(&json!({ "messages": [envelope] }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
        assert_eq!(body["results"][0]["status"], "accepted", "{body}");
        id.to_owned()
    }

    /// Polls the message until its status is `wanted`; answers it.
    async fn wait_for(&self, id: &str, wanted: &str) -> Value {
        self.wait_until(id, wanted, |message| message["status"] == wanted).await
    }

    /// Polls the message until `done` holds (`what` names it for the failure); answers it.
    async fn wait_until(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let response = self
                .http
                .get(self.url(&format!("/v1/messages/{id}")))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                let body: Value = response.json().await.unwrap();
                if done(&body) {
                    return body;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} never reached {what}: {body}"
                );
            }
            assert!(tokio::time::Instant::now() < deadline, "{id} never reached {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts inbound message `n` (its MessageSid) from the contact, signed with `token`;
    /// answers the HTTP status.
    async fn inbound(&self, n: u32, from: &str, to: &str, body: &str, token: &str) -> u16 {
        let sid = format!("SM{n:032x}");
        let params = [
            ("AccountSid", DEFAULT_ACCOUNT_SID),
            ("MessageSid", sid.as_str()),
            ("From", from),
            ("To", to),
            ("Body", body),
        ];
        self.signed("/webhooks/twilio/inbound", &params, token).await
    }

    /// Posts a status callback for message `id` of `tenant` (named in the URL, as the
    /// dispatcher's StatusCallback names it), Twilio's `sid`, signed with the simulator
    /// account's token.
    async fn status_callback(&self, tenant: &str, id: &str, sid: &str, status: &str) -> u16 {
        let params = [
            ("AccountSid", DEFAULT_ACCOUNT_SID),
            ("MessageSid", sid),
            ("MessageStatus", status),
        ];
        let path = common::twilio::status_callback_url(
            "/webhooks/twilio/status",
            &TenantId::parse(tenant).unwrap(),
            &common::MessageId::parse(id).unwrap(),
        );
        self.signed(&path, &params, DEFAULT_AUTH_TOKEN).await
    }

    /// Posts `params` to `path` as a Twilio webhook signed with `token`; answers the HTTP status.
    async fn signed(&self, path: &str, params: &[(&str, &str)], token: &str) -> u16 {
        let url = self.url(path);
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish();
        self.http
            .post(&url)
            .header(SIGNATURE_HEADER, compute(token, &url, &params))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn statuses(message: &Value) -> Vec<&str> {
    message["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["status"].as_str().unwrap())
        .collect()
}

/// A tenant ready to send SMS and WhatsApp for real through the simulator's account.
async fn seed_tenant(settings: &Settings, keyring: &Keyring) -> String {
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let numbers: Vec<SenderNumber> = [(SMS_FROM, SenderKind::LongCode), (WHATSAPP_FROM, SenderKind::Whatsapp)]
        .into_iter()
        .map(|(number, kind)| SenderNumber {
            tenant_id: tenant.clone(),
            number: PhoneNumber::parse(number).unwrap(),
            kind,
            status: NumberStatus::Active,
            twilio_sid: None,
            rate_per_second: Some(10.0),
            created_at: OffsetDateTime::now_utc(),
            registration: None,
        })
        .collect();
    live_twilio_tenant(&store, keyring, &tenant, &[Channel::Sms, Channel::Whatsapp], &numbers)
        .await
        .unwrap();
    admin_api::auth::create_api_key(&store, &tenant).await.unwrap().secret
}

async fn start(data_dir: &std::path::Path, simulator: &RunningSimulator) -> Running {
    start_on(data_dir, simulator, 0).await
}

/// The stack on `port` (0: any free port), sending through `simulator`, accepting SES events
/// signed by it.
async fn start_on(data_dir: &std::path::Path, simulator: &RunningSimulator, port: u16) -> Running {
    let keys = SecretString::from(format!("k1:{}", generate_key().expose_secret()));
    let keyring = Keyring::parse(&keys).unwrap();
    let mut settings = testing::settings(data_dir);
    settings.admin.listen = SocketAddr::from(([127, 0, 0, 1], port));
    settings.demo.bootstrap = false;
    settings.log.partitions = 2;
    settings.dispatcher.poll_wait_ms = 20;
    settings.admin.held_release_interval_ms = 100;
    settings.admin.schedule_release_interval_ms = 100;
    settings.dispatcher.scheduled_in_memory_ms = 1_500;
    settings.credentials.keys = Some(keys);
    load::fixtures::on_simulator(&mut settings, &simulator.base_url());
    let key = seed_tenant(&settings, &keyring).await;
    Running {
        app: testing::all_in_one(settings).await,
        key,
        http: reqwest::Client::new(),
        keyring,
    }
}

/// The simulator, allowing each number the rate the tenant's numbers are stored with.
async fn simulator() -> RunningSimulator {
    Simulator::start(SimulatorConfig {
        rate_per_sender: 10.0,
        ..SimulatorConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_messages_reach_delivered_through_the_simulator_and_signed_callbacks() {
    let simulator = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &simulator).await;

    // SMS: sent when Twilio accepts it, then delivered by the signed callback.
    let sms = running
        .send("sms-1", "sms", SMS_FROM, json!({ "body": "Your code is 123456" }))
        .await;
    let delivered = running.wait_for(&sms, "delivered").await;
    assert_eq!(statuses(&delivered), ["queued", "sent", "delivered"], "{delivered}");
    let sid = delivered["provider_message_id"].as_str().unwrap();
    assert!(sid.starts_with("SM"), "{delivered}");

    // Late and repeated callbacks change nothing: a `sent` after `delivered`, a second
    // `delivered`.
    assert_eq!(running.status_callback("acme", &sms, sid, "sent").await, 204);
    assert_eq!(running.status_callback("acme", &sms, sid, "delivered").await, 204);
    let unchanged = running.wait_for(&sms, "delivered").await;
    assert_eq!(unchanged["history"], delivered["history"], "{unchanged}");

    // WhatsApp free-form text before the contact ever wrote: refused with Twilio's own code,
    // without a call.
    let accepted_before = simulator.stats().accepted;
    let closed = running
        .send("wa-closed", "whatsapp", WHATSAPP_FROM, json!({ "body": "hello" }))
        .await;
    let refused = running.wait_for(&closed, "rejected").await;
    assert_eq!(refused["reason"], "63016", "{refused}");
    assert_eq!(simulator.stats().accepted, accepted_before);

    // A forged inbound message changes nothing; a signed one opens the window.
    let whatsapp_contact = format!("whatsapp:{CONTACT}");
    let whatsapp_number = format!("whatsapp:{WHATSAPP_FROM}");
    assert_eq!(
        running
            .inbound(1, &whatsapp_contact, &whatsapp_number, "hi", "wrong-token")
            .await,
        403
    );
    assert_eq!(
        running
            .inbound(1, &whatsapp_contact, &whatsapp_number, "hi", DEFAULT_AUTH_TOKEN)
            .await,
        200
    );
    let open = running
        .send("wa-open", "whatsapp", WHATSAPP_FROM, json!({ "body": "hello again" }))
        .await;
    let read = running.wait_for(&open, "read").await;
    assert_eq!(statuses(&read), ["queued", "sent", "delivered", "read"], "{read}");

    // STOP suppresses the contact at once and is confirmed with the tenant's reply, which
    // goes although the contact is now suppressed; START lifts it, HELP gets the default reply.
    let stop_reply = "Acme: you will get no more texts. Reply START to resubscribe.";
    let response = running
        .http
        .put(running.url("/v1/settings"))
        .bearer_auth(&running.key)
        .json(&json!({ "stop_reply": stop_reply }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let help_reply = response.json::<Value>().await.unwrap()["help_reply"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        running.inbound(2, CONTACT, SMS_FROM, "STOP", DEFAULT_AUTH_TOKEN).await,
        200
    );
    let confirmation = running
        .wait_for(&format!("keyword-reply:SM{:032x}", 2), "delivered")
        .await;
    assert_eq!(confirmation["recipient"], CONTACT, "{confirmation}");
    let stopped = running
        .send("sms-stopped", "sms", SMS_FROM, json!({ "body": "promo" }))
        .await;
    let suppressed = running.wait_for(&stopped, "suppressed").await;
    assert_eq!(suppressed["reason"], "RECIPIENT_SUPPRESSED", "{suppressed}");
    assert_eq!(
        running.inbound(3, CONTACT, SMS_FROM, "start", DEFAULT_AUTH_TOKEN).await,
        200
    );
    let resumed = running
        .send("sms-resumed", "sms", SMS_FROM, json!({ "body": "welcome back" }))
        .await;
    running.wait_for(&resumed, "delivered").await;
    running
        .wait_for(&format!("keyword-reply:SM{:032x}", 3), "delivered")
        .await;
    assert_eq!(
        running.inbound(4, CONTACT, SMS_FROM, "Help", DEFAULT_AUTH_TOKEN).await,
        200
    );
    running
        .wait_for(&format!("keyword-reply:SM{:032x}", 4), "delivered")
        .await;

    // A replayed STOP (the same MessageSid, validly signed) is answered and changes nothing.
    assert_eq!(
        running.inbound(2, CONTACT, SMS_FROM, "STOP", DEFAULT_AUTH_TOKEN).await,
        200
    );
    let after_replay = running
        .send("sms-after-replay", "sms", SMS_FROM, json!({ "body": "still welcome" }))
        .await;
    running.wait_for(&after_replay, "delivered").await;

    // Every inbound message signed and new is kept, newest first, a page at a time.
    let page = |query: String| {
        let request = running
            .http
            .get(running.url(&format!("/v1/inbound?{query}")))
            .bearer_auth(&running.key);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let media = "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1";
    let mms_sid = format!("MM{:032x}", 5);
    let mms = [
        ("AccountSid", DEFAULT_ACCOUNT_SID),
        ("MessageSid", mms_sid.as_str()),
        ("From", CONTACT),
        ("To", SMS_FROM),
        ("Body", ""),
        ("NumMedia", "1"),
        ("MediaUrl0", media),
    ];
    assert_eq!(
        running
            .signed("/webhooks/twilio/inbound", &mms, DEFAULT_AUTH_TOKEN)
            .await,
        200
    );
    let newest = page("limit=1".to_owned()).await;
    assert_eq!(newest["messages"][0]["media_urls"], json!([media]), "{newest}");
    assert_eq!(newest["messages"][0]["body"], "", "{newest}");
    let cursor = newest["next_cursor"].as_str().unwrap();
    let first = page(format!("limit=2&cursor={cursor}")).await;
    let bodies_of = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["body"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(bodies_of(&first), ["Help", "start"], "{first}");
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = page(format!("limit=2&cursor={cursor}")).await;
    assert_eq!(bodies_of(&second), ["STOP", "hi"], "{second}");
    let hi = &second["messages"][1];
    assert_eq!(
        (hi["channel"].as_str(), hi["from"].as_str(), hi["to"].as_str()),
        (Some("whatsapp"), Some(CONTACT), Some(whatsapp_number.as_str())),
        "{hi}"
    );
    assert_eq!(hi["provider_message_id"], format!("SM{:032x}", 1), "{hi}");

    // Each reply went once, the replayed STOP's included.
    let bodies = simulator.creates_by_body();
    assert_eq!(bodies.get(stop_reply), Some(&1), "{bodies:?}");
    assert_eq!(bodies.get(&help_reply), Some(&1), "{bodies:?}");
    let stats = simulator.stats();
    assert_eq!(stats.accepted, 7, "{stats:?}");
    assert!(stats.violations.is_empty(), "{stats:?}");
    running.app.shutdown().await;
    simulator.shutdown().await.unwrap();
}

/// Twilio calls back as soon as it has the message, often before the dispatcher has recorded
/// `sent`: here the simulator holds each create for two seconds and the callback comes while
/// the message is still `queued` with no provider id. It names the message in its URL, so it
/// applies, and the `sent` recorded afterwards does not move it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_beats_the_sent_record_is_applied() {
    let simulator = Simulator::start(SimulatorConfig {
        rate_per_sender: 10.0,
        latency: Duration::from_secs(2),
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &simulator).await;
    let sms = running
        .send("early-1", "sms", SMS_FROM, json!({ "body": "Your code is 123456" }))
        .await;
    running.wait_for(&sms, "queued").await;
    let sid = "SM0123456789abcdef0123456789abcdef";
    assert_eq!(running.status_callback("acme", &sms, sid, "delivered").await, 204);
    let early = running.wait_for(&sms, "delivered").await;
    assert_eq!(statuses(&early), ["queued", "delivered"], "{early}");
    // Once the create answers, the dispatcher records its outcome: still delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while simulator.stats().accepted < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the simulator never got the message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.app.shutdown().await;
    let store = SqliteStore::open(&dir.path().join("engageninja.db")).await.unwrap();
    let record = store
        .message(
            &TenantId::parse("acme").unwrap(),
            &common::MessageId::parse("early-1").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, common::MessageStatus::Delivered, "{:?}", record.history);
    simulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_with_a_bad_signature_are_refused() {
    let simulator = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &simulator).await;
    let url = running.url("/webhooks/twilio/status");
    let params: Vec<(String, String)> = [
        ("AccountSid", DEFAULT_ACCOUNT_SID),
        ("MessageSid", "SM00000000000000000000000000000009"),
        ("MessageStatus", "delivered"),
    ]
    .iter()
    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
    .collect();
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let post = |signature: String| {
        running
            .http
            .post(&url)
            .header(SIGNATURE_HEADER, signature)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
    };
    let forged = post(compute("not-the-token", &url, &params)).await.unwrap();
    assert_eq!(forged.status(), 403);
    let body: Value = forged.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_signature");
    // Signed for another URL: refused too.
    let elsewhere = post(compute(
        DEFAULT_AUTH_TOKEN,
        "https://example.com/webhooks/twilio/status",
        &params,
    ))
    .await
    .unwrap();
    assert_eq!(elsewhere.status(), 403);
    // Valid, without a message in the URL: accepted (so Twilio stops retrying) and ignored.
    let unknown = post(compute(DEFAULT_AUTH_TOKEN, &url, &params)).await.unwrap();
    assert_eq!(unknown.status(), 204);
    // Valid, for a message of acme that does not exist: accepted, and nothing is created.
    assert_eq!(
        running
            .status_callback("acme", "nobody-sent-it", UNKNOWN_SID, "delivered")
            .await,
        204
    );
    let missing = running
        .http
        .get(running.url("/v1/messages/nobody-sent-it"))
        .bearer_auth(&running.key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // Signed with acme's account token but naming another tenant's message: refused.
    assert_eq!(
        running.status_callback("globex", "m-1", UNKNOWN_SID, "delivered").await,
        403
    );
    running.app.shutdown().await;
    simulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_ses_and_its_events_come_back_over_signed_sns() {
    // The simulator posts SES events to the stack, whose port must be known first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let simulator = Simulator::start(SimulatorConfig {
        ses: SesSimConfig {
            sns_endpoint: Some(format!("http://127.0.0.1:{port}/webhooks/ses").parse().unwrap()),
            event_delay: Duration::from_millis(50),
            ..SesSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let running = start_on(dir.path(), &simulator, port).await;

    // Credentials through the API, verified against the simulator's GetAccount.
    let saved = running
        .http
        .post(running.url("/v1/channels/email"))
        .bearer_auth(&running.key)
        .json(&json!({
            "access_key_id": DEFAULT_ACCESS_KEY_ID, "secret_access_key": "simulator-secret",
            "region": "us-east-1", "from_address": "news@acme.example", "configuration_set": "acme-events",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    let view: Value = saved.json().await.unwrap();
    assert_eq!(view["is_verified"], true, "{view}");

    // Email templates live in the tenant's SES account, managed through the API; a message
    // naming one the account does not hold is refused before any send.
    let template = json!({"name": "welcome", "subject": "Hi {{name}}", "text": "Hello {{name}}",
        "html": "<p>Hello {{name}}</p>"});
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = running
            .http
            .request(method, running.url(path))
            .bearer_auth(&running.key);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, created) = call(reqwest::Method::POST, "/v1/templates/email", Some(template.clone())).await;
    assert_eq!(status, 201, "{created}");
    let (status, again) = call(reqwest::Method::POST, "/v1/templates/email", Some(template)).await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("template_exists")),
        "{again}"
    );
    let (status, no_part) = call(
        reqwest::Method::POST,
        "/v1/templates/email",
        Some(json!({"name": "empty", "subject": "Hi"})),
    )
    .await;
    assert_eq!((status, &no_part["error"]["field"]), (422, &json!("text")), "{no_part}");
    let (status, listed) = call(reqwest::Method::GET, "/v1/templates/email", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["templates"][0]["name"], "welcome", "{listed}");
    let new_content = json!({"subject": "Welcome, {{name}}", "html": "<p>Welcome</p>"});
    let (status, _) = call(
        reqwest::Method::PUT,
        "/v1/templates/email/welcome",
        Some(new_content.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, missing) = call(reqwest::Method::PUT, "/v1/templates/email/nope", Some(new_content)).await;
    assert_eq!((status, &missing["error"]["code"]), (404, &json!("template_not_found")));
    let templated = running
        .send_to(
            "mail-t1",
            "email",
            "news@acme.example",
            "ada@example.com",
            json!({"template": {"id": "welcome", "variables": {"name": "Ada"}}}),
        )
        .await;
    running.wait_for(&templated, "delivered").await;
    let accepted_before = simulator.stats().ses.accepted;
    let unknown = running
        .send_to(
            "mail-t2",
            "email",
            "news@acme.example",
            "ada@example.com",
            json!({"template": {"id": "no-such-template"}}),
        )
        .await;
    let refused = running.wait_for(&unknown, "rejected").await;
    assert_eq!(refused["reason"], "TEMPLATE_NOT_FOUND", "{refused}");
    assert_eq!(simulator.stats().ses.accepted, accepted_before, "nothing was sent");
    let (status, _) = call(reqwest::Method::DELETE, "/v1/templates/email/welcome", None).await;
    assert_eq!(status, 204);
    let (status, _) = call(reqwest::Method::DELETE, "/v1/templates/email/welcome", None).await;
    assert_eq!(status, 404);

    let email = |subject: &str| json!({ "subject": subject, "body": "Hello from Acme" });
    let sent = running
        .send_to(
            "mail-1",
            "email",
            "news@acme.example",
            "ada@example.com",
            email("Welcome"),
        )
        .await;
    let delivered = running.wait_for(&sent, "delivered").await;
    assert_eq!(statuses(&delivered), ["queued", "sent", "delivered"], "{delivered}");

    // A permanent bounce: undelivered, and the address suppressed for the next message.
    let bounced = running
        .send_to(
            "mail-2",
            "email",
            "news@acme.example",
            "bounce@example.com",
            email("Welcome"),
        )
        .await;
    let undelivered = running.wait_for(&bounced, "undelivered").await;
    assert_eq!(undelivered["reason"], "SES_BOUNCE", "{undelivered}");
    let again = running
        .send_to(
            "mail-3",
            "email",
            "news@acme.example",
            "bounce@example.com",
            email("Again"),
        )
        .await;
    running.wait_for(&again, "suppressed").await;

    // A complaint (after the delivery): the address is suppressed for the next message.
    let complained = running
        .send_to(
            "mail-4",
            "email",
            "news@acme.example",
            "complaint@example.com",
            email("Welcome"),
        )
        .await;
    running.wait_for(&complained, "delivered").await;
    let store = SqliteStore::open(&testing::settings(dir.path()).store_path())
        .await
        .unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while store
        .suppression(&acme, "complaint@example.com")
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the complaint never suppressed its recipient"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_complaint = running
        .send_to(
            "mail-5",
            "email",
            "news@acme.example",
            "complaint@example.com",
            email("Again"),
        )
        .await;
    let refused = running.wait_for(&after_complaint, "suppressed").await;
    assert_eq!(refused["reason"], "RECIPIENT_SUPPRESSED", "{refused}");

    // A marketing email with text and HTML parts carries RFC 8058's one-click unsubscribe;
    // its link suppresses the recipient, and the next email is refused.
    let html = json!({"subject": "Spring sale", "body": "Half off", "html": "<p>Half <b>off</b></p>"});
    let marketing = running
        .send_to("mail-6", "email", "news@acme.example", "bob@example.com", html.clone())
        .await;
    running.wait_for(&marketing, "delivered").await;
    let mailbox: Vec<load::simulator::ses::MailboxEntry> = running
        .http
        .get(format!("{}/ses/mailbox", simulator.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mail = mailbox
        .iter()
        .find(|mail| mail.to == ["bob@example.com"])
        .expect("the simulator received bob's email");
    assert_eq!(mail.text.as_deref(), Some("Half off"));
    assert_eq!(mail.html.as_deref(), Some("<p>Half <b>off</b></p>"));
    let header = |name: &str| {
        mail.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no {name} header: {mail:?}"))
    };
    assert_eq!(header("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    let list_unsubscribe = header("List-Unsubscribe");
    assert!(
        list_unsubscribe.ends_with(", <mailto:news@acme.example?subject=unsubscribe>"),
        "{list_unsubscribe}"
    );
    let link = list_unsubscribe
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .map(|(link, _)| link.to_owned())
        .unwrap();
    assert!(link.starts_with(&running.url("/unsubscribe/")), "{link}");
    assert!(!link.contains("bob"), "the address must not show in the link: {link}");
    // Every email so far was marketing (the default priority): each carried a link of its own.
    assert!(mailbox.iter().all(|mail| mail.headers.len() == 2), "{mailbox:?}");

    // Opening the link shows a page and changes nothing (mail scanners follow links).
    let page = running.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=\"post\">"));
    assert!(store.suppression(&acme, "bob@example.com").await.unwrap().is_none());
    // The one-click POST, as a mail client makes it; a repeat answers the same.
    let one_click = || {
        running
            .http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
    };
    assert_eq!(one_click().await.unwrap().status(), 200);
    assert_eq!(one_click().await.unwrap().status(), 200);
    let suppression = store.suppression(&acme, "bob@example.com").await.unwrap().unwrap();
    assert_eq!(suppression.reason, common::store::SuppressionReason::Unsubscribed);
    let audit = store.audit(&acme, 100).await.unwrap();
    let unsubscribed: Vec<_> = audit
        .iter()
        .filter(|entry| entry.action == "suppression.unsubscribed")
        .collect();
    assert_eq!(unsubscribed.len(), 1, "audited once: {audit:?}");
    let next = running
        .send_to("mail-7", "email", "news@acme.example", "bob@example.com", html)
        .await;
    let refused = running.wait_for(&next, "suppressed").await;
    assert_eq!(refused["reason"], "RECIPIENT_SUPPRESSED", "{refused}");

    // A forged, altered or foreign link changes nothing; a link of another tenant speaks for
    // that tenant only.
    let token = link.rsplit_once('/').unwrap().1;
    let mut altered = token.as_bytes().to_vec();
    let last = altered.len() - 2;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let other_ring = Keyring::parse(&SecretString::from(format!("k1:{}", generate_key().expose_secret()))).unwrap();
    let foreign =
        UnsubscribeLinks::new(&running.url(""), std::sync::Arc::new(other_ring)).url(&acme, "carol@example.com");
    for bad in [
        running.url(&format!("/unsubscribe/{altered}")),
        running.url("/unsubscribe/k1.AAAA"),
        foreign,
    ] {
        let answer = running.http.post(&bad).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{bad}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_unsubscribe_token", "{bad}");
    }
    assert!(store.suppression(&acme, "carol@example.com").await.unwrap().is_none());
    let globex = TenantId::parse("globex").unwrap();
    let globex_link = UnsubscribeLinks::new(&running.url(""), std::sync::Arc::new(running.keyring.clone()))
        .url(&globex, "dora@example.com");
    // globex does not exist here: its link is refused like a forged one.
    assert_eq!(running.http.post(&globex_link).send().await.unwrap().status(), 404);
    assert!(store.suppression(&acme, "dora@example.com").await.unwrap().is_none());

    // A forged event changes nothing.
    let forged = running
        .http
        .post(running.url("/webhooks/ses"))
        .body(
            json!({
                "Type": "Notification", "MessageId": "1", "TopicArn": DEFAULT_TOPIC_ARN,
                "Message": "{}", "Timestamp": "2026-11-24T00:00:00.000Z", "SignatureVersion": "2",
                "Signature": "AAAA", "SigningCertURL": format!("{}{CERT_PATH}", simulator.base_url()),
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    running.app.shutdown().await;
    simulator.shutdown().await.unwrap();
}

/// The tenant's brand goes back under review; a campaign sent with `when_not_ready: "hold"`
/// waits, counted as held, and goes out once the brand is approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_held_while_the_brand_is_reviewed_goes_once_it_is_approved() {
    let simulator = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &simulator).await;
    let store = SqliteStore::open(&testing::settings(dir.path()).store_path())
        .await
        .unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let approved = store.brand(&acme).await.unwrap().unwrap();
    let mut reviewed = approved.clone();
    (reviewed.status, reviewed.approved_at) = (BrandStatus::Pending, None);
    store.put_brand(&reviewed).await.unwrap();

    let send = |when_not_ready: &'static str| {
        let body = json!({
            "channel": "sms", "from": SMS_FROM, "body": "Doors open at 9",
            "recipients": ["+14155550181", "+14155550182", "+14155550183"],
            "when_not_ready": when_not_ready,
        });
        running
            .http
            .post(running.url("/v1/campaigns/launch/send"))
            .bearer_auth(&running.key)
            .json(&body)
            .send()
    };
    let refused = send("reject").await.unwrap();
    assert_eq!(refused.status(), 409);
    let held = send("hold").await.unwrap();
    assert_eq!(held.status(), 202);
    let held: Value = held.json().await.unwrap();
    assert_eq!(
        (held["held"].as_u64(), held["accepted"].as_u64()),
        (Some(3), Some(0)),
        "{held}"
    );
    assert_eq!(held["next_action"], "WAIT_FOR_APPROVAL", "{held}");
    let ids: Vec<String> = held["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| {
            assert_eq!(result["status"], "held", "{result}");
            result["message_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let counts: Value = running
        .http
        .get(running.url("/v1/campaigns/launch/events"))
        .bearer_auth(&running.key)
        .send()
        .await
        .unwrap()
        .chunk()
        .await
        .unwrap()
        .map(|chunk| {
            let frame = String::from_utf8(chunk.to_vec()).unwrap();
            let data = frame
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .unwrap()
                .to_owned();
            serde_json::from_str(&data).unwrap()
        })
        .unwrap();
    assert_eq!(
        (counts["total"].as_u64(), counts["counts"]["held"].as_u64()),
        (Some(3), Some(3)),
        "{counts}"
    );
    assert_eq!(
        store
            .held_count(&acme, &common::CampaignId::parse("launch").unwrap())
            .await
            .unwrap(),
        3
    );

    store.put_brand(&approved).await.unwrap();
    for id in &ids {
        running.wait_for(id, "delivered").await;
    }
    assert_eq!(
        store
            .held_count(&acme, &common::CampaignId::parse("launch").unwrap())
            .await
            .unwrap(),
        0
    );
    let audit = store.audit(&acme, 100).await.unwrap();
    let released = audit
        .iter()
        .find(|entry| entry.action == "campaign.released")
        .expect("the release is audited");
    assert_eq!(released.detail["messages"], 3, "{released:?}");
    assert_eq!(simulator.stats().accepted, 3);
    running.app.shutdown().await;
    simulator.shutdown().await.unwrap();
}

/// `not_before` as RFC 3339.
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

impl Running {
    /// Polls the message until it waits in the schedule (`queued`, `scheduled_for` set); answers it.
    async fn wait_scheduled(&self, id: &str) -> Value {
        let scheduled = self
            .wait_until(id, "the schedule", |message| {
                message["scheduled_for"].is_string() || message["status"] != "queued"
            })
            .await;
        assert_eq!(scheduled["status"], "queued", "{scheduled}");
        scheduled
    }

    /// Replaces the tenant's messaging settings.
    async fn put_settings(&self, settings: &Value) {
        let response = self
            .http
            .put(self.url("/v1/settings"))
            .bearer_auth(&self.key)
            .json(settings)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// `DELETE path`: the HTTP status and body.
    async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .delete(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

/// When `message` reached `status`.
fn reached_at(message: &Value, status: &str) -> OffsetDateTime {
    let at = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["status"] == status)
        .unwrap_or_else(|| panic!("never {status}: {message}"))["at"]
        .as_str()
        .unwrap()
        .to_owned();
    OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_leave_when_due_and_can_be_canceled_until_then() {
    let simulator = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &simulator).await;
    let now = OffsetDateTime::now_utc();

    // Due in 15 s: past the dispatcher's 1.5 s in memory (even when a busy machine takes
    // seconds to read it), so it waits in the store's schedule.
    let due = now + Duration::from_secs(15);
    let later = json!({ "body": "Doors open now", "not_before": rfc3339(due) });
    let scheduled = running.send("scheduled-1", "sms", SMS_FROM, later).await;
    // Due in 1 s: the dispatcher keeps it until then.
    let soon_due = now + Duration::from_secs(1);
    let soon = json!({ "body": "Starting", "not_before": rfc3339(soon_due) });
    let soon = running.send("scheduled-soon", "sms", SMS_FROM, soon).await;
    // Due in an hour: canceled before then, one by id and a campaign's three at once.
    let hour = rfc3339(now + Duration::from_secs(3_600));
    let canceled = running
        .send(
            "scheduled-2",
            "sms",
            SMS_FROM,
            json!({ "body": "Later", "not_before": hour }),
        )
        .await;
    let campaign = running
        .http
        .post(running.url("/v1/campaigns/evening/send"))
        .bearer_auth(&running.key)
        .json(&json!({
            "channel": "sms", "from": SMS_FROM, "body": "Tonight only", "not_before": hour,
            "recipients": ["+14155550191", "+14155550192", "+14155550193"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(campaign.status(), 202);
    let campaign: Value = campaign.json().await.unwrap();
    let campaign_ids: Vec<String> = campaign["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["message_id"].as_str().unwrap().to_owned())
        .collect();

    let waiting = running.wait_scheduled(&scheduled).await;
    assert_eq!(
        OffsetDateTime::parse(
            waiting["scheduled_for"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .unwrap()
        .unix_timestamp(),
        due.unix_timestamp(),
        "{waiting}"
    );
    running.wait_scheduled(&canceled).await;
    for id in &campaign_ids {
        running.wait_scheduled(id).await;
    }

    let (status, body) = running.delete(&format!("/v1/messages/{canceled}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["reason"].as_str()),
        (Some("canceled"), Some("CANCELED")),
        "{body}"
    );
    let (status, again) = running.delete(&format!("/v1/messages/{canceled}")).await;
    assert_eq!((status, &again["status"]), (200, &json!("canceled")), "{again}");
    let (status, body) = running.delete("/v1/campaigns/evening/schedule").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "canceled": 3, "released": 0 }));
    let (_, body) = running.delete("/v1/campaigns/evening/schedule").await;
    assert_eq!(body["canceled"], 0, "{body}");
    for id in &campaign_ids {
        running.wait_for(id, "canceled").await;
    }
    let (status, body) = running.delete("/v1/messages/never-sent").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("message_not_found")),
        "{body}"
    );

    // Each leaves at its time, not before.
    let soon = running.wait_for(&soon, "delivered").await;
    assert!(
        reached_at(&soon, "sent") >= soon_due - Duration::from_millis(1),
        "{soon}"
    );
    let delivered = running.wait_for(&scheduled, "delivered").await;
    assert!(
        reached_at(&delivered, "sent") >= due - Duration::from_millis(1),
        "{delivered}"
    );
    let (status, body) = running.delete(&format!("/v1/messages/{scheduled}")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "message_not_cancelable", "{body}");

    // Only the two that were due reached the provider.
    assert_eq!(simulator.stats().accepted, 2);
    let store = SqliteStore::open(&testing::settings(dir.path()).store_path())
        .await
        .unwrap();
    let audit = store.audit(&TenantId::parse("acme").unwrap(), 100).await.unwrap();
    assert!(
        audit.iter().any(|entry| entry.action == "message.canceled"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|entry| entry.action == "campaign.schedule_canceled" && entry.detail["canceled"] == 3),
        "{audit:?}"
    );
    running.app.shutdown().await;
    simulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_outside_quiet_hours_is_held_until_the_window_opens() {
    let simulator = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &simulator).await;
    // A number whose area code names no zone is in the tenant's: UTC here. The window opens
    // two hours from now and lasts one, so it is closed now.
    let hour = OffsetDateTime::now_utc().hour();
    let (start, end) = ((hour + 2) % 24, (hour + 3) % 24);
    let settings = json!({
        "quiet_hours_start": format!("{start:02}:00"), "quiet_hours_end": format!("{end:02}:00"),
        "time_zone": "UTC",
    });
    running.put_settings(&settings).await;
    let now = OffsetDateTime::now_utc();
    let opens = now.replace_time(time::Time::from_hms(start, 0, 0).unwrap());
    let opens = if opens <= now {
        opens + Duration::from_secs(86_400)
    } else {
        opens
    };
    let abroad = "+447700900123";

    let preflight: Value = running
        .http
        .post(running.url("/v1/campaigns/night/preflight"))
        .bearer_auth(&running.key)
        .json(&json!({ "channel": "sms", "recipients": [abroad], "priority": "marketing" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(preflight["quiet_hours"]["held"], 1, "{preflight}");
    assert_eq!(preflight["quiet_hours"]["until"], rfc3339(opens), "{preflight}");

    // The settings reach the dispatcher within its directory's few seconds: until then a text
    // may still go, so the held one is the first sent after they do.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let held = loop {
        let id = format!("night-{}", OffsetDateTime::now_utc().unix_timestamp_nanos());
        running
            .send_to(
                &id,
                "sms",
                SMS_FROM,
                abroad,
                json!({ "body": "Sale", "priority": "marketing" }),
            )
            .await;
        let view = running
            .wait_until(&id, "held or sent", |view| {
                view["scheduled_for"].is_string() || view["status"] != "queued"
            })
            .await;
        if view["scheduled_for"].is_string() {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "never held: {view}");
    };
    assert_eq!(held["status"], "queued", "{held}");
    assert_eq!(held["scheduled_for"], rfc3339(opens), "{held}");
    // Transactional texts are not held unless the tenant says so.
    let code = running
        .send_to(
            "code-1",
            "sms",
            SMS_FROM,
            abroad,
            json!({ "body": "Your code is 4242", "priority": "transactional" }),
        )
        .await;
    running.wait_for(&code, "delivered").await;
    running.app.shutdown().await;
    simulator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_sent_at_a_local_time_waits_for_it_in_each_recipients_zone() {
    let simulator = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &simulator).await;
    // A number whose area code names no zone is in the tenant's: UTC here.
    running
        .put_settings(&json!({ "time_zone": "UTC", "disable_quiet_hours": true }))
        .await;
    let now = OffsetDateTime::now_utc();
    let at = now + Duration::from_secs(2 * 3_600);
    let local = format!("{:02}:{:02}", at.hour(), at.minute());
    let due = at.replace_second(0).unwrap().replace_nanosecond(0).unwrap();
    let sent = running
        .http
        .post(running.url("/v1/campaigns/morning/send"))
        .bearer_auth(&running.key)
        .json(&json!({
            "channel": "sms", "from": SMS_FROM, "body": "Good morning", "send_at_local": local,
            "recipients": ["+447700900124"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let sent: Value = sent.json().await.unwrap();
    let id = sent["results"][0]["message_id"].as_str().unwrap().to_owned();
    let waiting = running.wait_scheduled(&id).await;
    assert_eq!(waiting["scheduled_for"], rfc3339(due), "{waiting}");

    let (status, refused) = {
        let response = running
            .http
            .post(running.url("/v1/campaigns/morning/send"))
            .bearer_auth(&running.key)
            .json(&json!({
                "channel": "sms", "body": "x", "send_at_local": "25:00", "recipients": ["+447700900125"],
            }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(
        (status, &refused["error"]["field"]),
        (422, &json!("send_at_local")),
        "{refused}"
    );
    running.app.shutdown().await;
    simulator.shutdown().await.unwrap();
}
