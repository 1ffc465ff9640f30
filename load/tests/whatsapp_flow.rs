//! WhatsApp for a live tenant over HTTP against the all-in-one stack on port 0 and the provider
//! simulator: a sender registered through the Senders API, verified with Meta's code and
//! followed to online; templates created, approved or rejected through the Content API, and
//! admission refusing what cannot be sent before any provider call; a template message that
//! reaches `read`; the import of existing templates; and a sender create whose answer was lost,
//! adopted instead of repeated.

use std::sync::Arc;
use std::time::Duration;

use admin_api::whatsapp::senders::{Registration, Senders};
use common::config::Settings;
use common::credentials::{Keyring, generate_key};
use common::store::SenderProfile;
use common::store::sqlite::SqliteStore;
use common::store::{NumberStatus, OnboardingStore, SenderRegistration, Store, Tenant, TenantStore};
use common::twilio::whatsapp::NewSender;
use common::twilio::{TwilioAccount, TwilioClient};
use common::{PhoneNumber, TenantId};
use engageninja::testing::{self, TestApp};
use load::simulator::{
    DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, OnboardingSimConfig, RunningSimulator, Simulator, SimulatorConfig,
};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const SENDER: &str = "+14155550199";
const CONTACT: &str = "+14155550177";
const WAIT: Duration = Duration::from_secs(60);

async fn simulator() -> RunningSimulator {
    Simulator::start(SimulatorConfig {
        rate_per_sender: 100.0,
        onboarding: OnboardingSimConfig {
            whatsapp_review_delay: Duration::from_millis(200),
            ..OnboardingSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap()
}

/// Settings of a stack whose Twilio is the simulator; senders are polled every minute, so
/// what moves them in time is the simulator's signed callbacks.
fn settings(dir: &std::path::Path, sim: &RunningSimulator) -> Settings {
    let keys = SecretString::from(format!("k1:{}", generate_key().expose_secret()));
    let mut settings = testing::settings(dir);
    settings.demo.bootstrap = false;
    settings.log.partitions = 2;
    settings.dispatcher.poll_wait_ms = 20;
    settings.credentials.keys = Some(keys);
    let twilio = &mut settings.providers.twilio;
    twilio.api_url = sim.base_url();
    twilio.trusthub_url = sim.base_url();
    twilio.messaging_url = sim.base_url();
    twilio.content_url = sim.base_url();
    settings.onboarding.retry_interval_secs = 1;
    settings.onboarding.poll_interval_secs = 60;
    settings
}

async fn seed(settings: &Settings, tenant: &str) -> String {
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let id = TenantId::parse(tenant).unwrap();
    store.create_tenant(&Tenant::live(id.clone())).await.unwrap();
    admin_api::auth::create_api_key(&store, &id).await.unwrap().secret
}

async fn call(app: &TestApp, method: Method, path: &str, key: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, body) = app.call(method, path, Some(key), body).await;
    (status.as_u16(), body)
}

/// Polls `GET path` until `done` holds; answers it.
async fn wait_for(app: &TestApp, key: &str, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = call(app, Method::GET, path, key, None).await;
        if done(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {what}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends one WhatsApp envelope; answers the message once it is final (or `read`).
async fn send(app: &TestApp, key: &str, id: &str, template: Value) -> Value {
    let envelope = json!({
        "version": 1, "message_id": id, "tenant_id": "acme", "channel": "whatsapp",
        "to": CONTACT, "from": SENDER, "template": template, "priority": "transactional",
    });
    let (code, accepted) = call(
        app,
        Method::POST,
        "/v1/messages",
        key,
        Some(&json!({"messages": [envelope]})),
    )
    .await;
    assert_eq!(code, 202, "{accepted}");
    wait_for(app, key, &format!("/v1/messages/{id}"), "final", |message| {
        matches!(
            message["status"].as_str(),
            Some("read" | "rejected" | "failed" | "undelivered")
        )
    })
    .await
}

/// Sends fresh envelopes (`{prefix}-N`) until one ends refused with `reason`: the dispatcher
/// reads a channel's readiness again every few seconds.
async fn send_until_refused(app: &TestApp, key: &str, prefix: &str, template: &Value, reason: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    for attempt in 0.. {
        let message = send(app, key, &format!("{prefix}-{attempt}"), template.clone()).await;
        if message["reason"] == reason {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {reason}: {message}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tenant_gets_a_sender_online_and_an_approved_template_read() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), &sim);
    let key = seed(&settings, "acme").await;
    let app = testing::all_in_one(settings.clone()).await;

    // No Twilio account yet: a sender cannot be registered.
    let sender = json!({
        "phone_number": SENDER, "waba_id": "102030405060708", "display_name": "Acme Support",
        "about": "Order updates", "vertical": "Shopping and Retail",
        "emails": ["help@acme.example"], "websites": ["https://acme.example"],
    });
    let (code, body) = call(&app, Method::POST, "/v1/channels/whatsapp/senders", &key, Some(&sender)).await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (409, &json!("channel_not_configured")),
        "{body}"
    );
    let credentials = json!({"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN});
    let (code, body) = call(&app, Method::POST, "/v1/channels/whatsapp", &key, Some(&credentials)).await;
    assert_eq!(code / 100, 2, "{body}");

    // Bad fields are named; a message before any sender is refused with what to do.
    let mut bad = sender.clone();
    bad["waba_id"] = json!("waba");
    bad["vertical"] = json!("Piracy");
    let (code, body) = call(&app, Method::POST, "/v1/channels/whatsapp/senders", &key, Some(&bad)).await;
    assert_eq!(code, 422, "{body}");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["waba_id", "vertical"]);
    let refused = send(
        &app,
        &key,
        "before-sender",
        json!({"id": "HX00000000000000000000000000000000"}),
    )
    .await;
    assert_eq!(refused["reason"], "REGISTER_WHATSAPP_SENDER", "{refused}");

    // Registered: the intent is stored and Twilio asked at once.
    let (code, created) = call(&app, Method::POST, "/v1/channels/whatsapp/senders", &key, Some(&sender)).await;
    assert_eq!(code, 202, "{created}");
    assert_eq!(
        (created["status"].as_str(), created["twilio_status"].as_str()),
        (Some("provisioning"), Some("CREATING"))
    );
    assert!(created["sid"].as_str().unwrap().starts_with("XE"), "{created}");
    let (code, body) = call(&app, Method::POST, "/v1/channels/whatsapp/senders", &key, Some(&sender)).await;
    assert_eq!((code, &body["error"]["code"]), (409, &json!("sender_exists")));

    // The signed sender-status callback asks for the code; a wrong one is refused.
    let path = format!("/v1/channels/whatsapp/senders/{SENDER}");
    let pending = wait_for(&app, &key, &path, "pending verification", |s| {
        s["twilio_status"] == "PENDING_VERIFICATION"
    })
    .await;
    assert_eq!(pending["next_action"], "VERIFY_WHATSAPP_NUMBER", "{pending}");
    let unknown = json!({"id": "HX00000000000000000000000000000000"});
    send_until_refused(&app, &key, "while-pending", &unknown, "WHATSAPP_SENDER_NOT_ONLINE").await;
    let (code, body) = call(
        &app,
        Method::POST,
        &format!("{path}/verify"),
        &key,
        Some(&json!({"code": "999999"})),
    )
    .await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (422, &json!("provider_refused")),
        "{body}"
    );
    let (code, body) = call(
        &app,
        Method::POST,
        &format!("{path}/verify"),
        &key,
        Some(&json!({"code": "123456"})),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let online = wait_for(&app, &key, &path, "online", |s| s["status"] == "active").await;
    assert_eq!(
        (online["twilio_status"].as_str(), &online["next_action"]),
        (Some("ONLINE"), &Value::Null)
    );

    // Templates: one Meta will approve, one it rejects (a body ending with a variable).
    let template = json!({
        "name": "order_ready", "language": "en", "category": "UTILITY",
        "body": "Hi {{1}}, your order {{2}} is ready for pickup.",
        "variables": {"1": "Ana", "2": "A-100"}, "quick_replies": ["Thanks", "Call me"],
    });
    let (code, body) = call(
        &app,
        Method::POST,
        "/v1/templates/whatsapp",
        &key,
        Some(&json!({
            "name": "no_sample", "language": "en", "category": "UTILITY", "body": "Hi {{1}}, ready.",
        })),
    )
    .await;
    assert_eq!((code, &body["error"]["field"]), (422, &json!("variables")), "{body}");
    let (code, ready) = call(&app, Method::POST, "/v1/templates/whatsapp", &key, Some(&template)).await;
    assert_eq!(code, 201, "{ready}");
    assert_eq!(ready["approval"]["status"], "received", "{ready}");
    let (code, body) = call(&app, Method::POST, "/v1/templates/whatsapp", &key, Some(&template)).await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (409, &json!("template_exists")),
        "{body}"
    );
    let (code, rejected) = call(
        &app,
        Method::POST,
        "/v1/templates/whatsapp",
        &key,
        Some(&json!({
            "name": "order_code", "language": "en", "category": "UTILITY",
            "body": "Your pickup code is {{1}}", "variables": {"1": "4411"},
        })),
    )
    .await;
    assert_eq!(code, 201, "{rejected}");
    let ready_sid = ready["sid"].as_str().unwrap().to_owned();
    let rejected_sid = rejected["sid"].as_str().unwrap().to_owned();
    let approved = wait_for(
        &app,
        &key,
        &format!("/v1/templates/whatsapp/{ready_sid}"),
        "approved",
        |t| t["approval"]["status"] == "approved",
    )
    .await;
    assert_eq!(approved["variables"], json!({"1": "Ana", "2": "A-100"}));
    let refused_template = wait_for(
        &app,
        &key,
        &format!("/v1/templates/whatsapp/{rejected_sid}"),
        "rejected",
        |t| t["approval"]["status"] == "rejected",
    )
    .await;
    assert!(
        refused_template["approval"]["rejection_reason"]
            .as_str()
            .unwrap()
            .contains("variables")
    );

    // Admission: unknown, not approved, a variable missing: refused before any send.
    let creates = sim.stats().received;
    send_until_refused(&app, &key, "unknown", &unknown, "TEMPLATE_NOT_FOUND").await;
    for (id, template, reason) in [
        (
            "rejected",
            json!({"id": rejected_sid, "variables": {"1": "4411"}}),
            "TEMPLATE_NOT_APPROVED",
        ),
        (
            "missing",
            json!({"id": ready_sid, "variables": {"1": "Ana"}}),
            "TEMPLATE_VARIABLES_MISSING",
        ),
    ] {
        let message = send(&app, &key, id, template).await;
        assert_eq!(
            (message["status"].as_str(), message["reason"].as_str()),
            (Some("rejected"), Some(reason))
        );
    }
    assert_eq!(sim.stats().received, creates, "no refused message reached twilio");
    let read = send(
        &app,
        &key,
        "order-A-100",
        json!({"id": ready_sid, "variables": {"1": "Ana", "2": "A-100"}}),
    )
    .await;
    assert_eq!(read["status"], "read", "{read}");

    // The import of existing (Meta-shaped) templates reports each one.
    let import = json!({"templates": [
        {"name": "spring_sale", "language": "en_US", "category": "MARKETING", "components": [
            {"type": "BODY", "text": "Hi {{1}}, spring sale: {{2}} off today.", "example": {"body_text": [["Ana", "20%"]]}},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Shop", "url": "https://acme.example/sale"}]},
        ]},
        {"name": "order_ready", "language": "en", "category": "UTILITY", "components": [
            {"type": "BODY", "text": "Hi {{1}}, ready.", "example": {"body_text": [["Ana"]]}},
        ]},
        {"name": "carousel", "language": "en", "category": "MARKETING", "components": [{"type": "CAROUSEL"}]},
    ]});
    let (code, report) = call(&app, Method::POST, "/v1/templates/whatsapp/import", &key, Some(&import)).await;
    assert_eq!(code, 200, "{report}");
    let outcomes: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["submitted", "exists", "failed"], "{report}");
    let (_, listed) = call(&app, Method::GET, "/v1/templates/whatsapp", &key, None).await;
    let listed = listed["templates"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let order_ready = listed.iter().find(|t| t["sid"] == ready_sid.as_str()).unwrap();
    assert_eq!(order_ready["approval"]["status"], "approved", "{order_ready}");

    // Removal deletes at Twilio and retires the sender; every step was audited.
    let (code, removed) = call(&app, Method::DELETE, &path, &key, None).await;
    assert_eq!((code, removed["status"].as_str()), (200, Some("retired")), "{removed}");
    let (_, audit) = call(&app, Method::GET, "/v1/audit", &key, None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "whatsapp_sender.registered",
        "whatsapp_sender.verification_submitted",
        "whatsapp_sender.status_changed",
        "whatsapp_sender.removed",
        "whatsapp_template.created",
        "whatsapp_template.submitted",
        "whatsapp_template.approval_changed",
    ] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }

    app.shutdown().await;
    let onboarding = sim.shutdown().await.unwrap().onboarding;
    assert_eq!(
        (
            onboarding.whatsapp_senders,
            onboarding.contents,
            onboarding.approvals_submitted
        ),
        (1, 3, 3)
    );
}

/// A sender registration cut short: the intent is on the row, and Twilio may or may not hold
/// the sender. The next drive looks before it creates: it adopts the sender Twilio holds, and
/// creates one only when Twilio has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_create_cut_short_is_adopted_not_repeated() {
    let sim = simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), &sim);
    settings.onboarding.poll_interval_secs = 1;
    let store = Arc::new(SqliteStore::open(&settings.store_path()).await.unwrap());
    let acme = TenantId::parse("acme").unwrap();
    store.create_tenant(&Tenant::live(acme.clone())).await.unwrap();
    let keyring = Arc::new(Keyring::parse(settings.credentials.keys.as_ref().unwrap()).unwrap());
    let account = TwilioAccount::new(DEFAULT_ACCOUNT_SID, SecretString::from(DEFAULT_AUTH_TOKEN));
    let credentials = common::credentials::seal(
        &keyring,
        &acme,
        common::Channel::Whatsapp,
        common::store::ProviderKind::Twilio,
        json!({"account_sid": DEFAULT_ACCOUNT_SID}),
        &SecretString::from(DEFAULT_AUTH_TOKEN),
    );
    store.put_credentials(&credentials).await.unwrap();
    let twilio = TwilioClient::new(&(&settings.providers.twilio).into()).unwrap();
    let senders = Senders::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::clone(&keyring),
        twilio.clone(),
        "http://127.0.0.1:9",
        settings.onboarding.clone(),
    );
    let details = SenderRegistration {
        waba_id: "102030405060708".into(),
        verification_method: "sms".into(),
        profile: SenderProfile {
            name: "Acme Support".into(),
            ..SenderProfile::default()
        },
        create_in_flight: true,
        twilio_status: None,
        reason: None,
        attempts: 0,
    };
    for (raw, created_before) in [("+14155550101", true), ("+14155550102", false)] {
        let number = PhoneNumber::parse(raw).unwrap();
        // The process stopped during the create: the row holds the intent; for the first
        // number Twilio did create the sender, for the second the request never arrived.
        store
            .put_sender_number(&common::store::SenderNumber {
                tenant_id: acme.clone(),
                number: number.clone(),
                kind: common::store::SenderKind::Whatsapp,
                status: NumberStatus::Provisioning,
                twilio_sid: None,
                rate_per_second: None,
                created_at: time::OffsetDateTime::now_utc(),
                registration: Some(details.clone()),
            })
            .await
            .unwrap();
        let held = if created_before {
            let request = NewSender {
                number: number.clone(),
                waba_id: details.waba_id.clone(),
                verification_method: "sms".into(),
                profile: details.profile.clone(),
                callback_url: "http://127.0.0.1:9/in".into(),
                status_callback_url: "http://127.0.0.1:9/status".into(),
            };
            Some(twilio.create_sender(&account, &request).await.unwrap().sid)
        } else {
            None
        };
        let row = senders.advance(&acme, &number).await.unwrap();
        assert!(row.twilio_sid.is_some(), "{row:?}");
        if let Some(held) = held {
            assert_eq!(row.twilio_sid, Some(held), "the sender twilio held was adopted");
        }
        assert!(!row.registration.unwrap().create_in_flight);
    }
    assert_eq!(
        sim.stats().onboarding.whatsapp_senders,
        2,
        "one create per number in all"
    );
    // A registration Twilio refuses (the number is a sender already) fails with the reason
    // and what to do, instead of being retried.
    let taken = PhoneNumber::parse("+14155550103").unwrap();
    let request = NewSender {
        number: taken.clone(),
        waba_id: details.waba_id.clone(),
        verification_method: "sms".into(),
        profile: details.profile.clone(),
        callback_url: "http://127.0.0.1:9/in".into(),
        status_callback_url: "http://127.0.0.1:9/status".into(),
    };
    twilio.create_sender(&account, &request).await.unwrap();
    let fresh = SenderRegistration {
        create_in_flight: false,
        ..details.clone()
    };
    let failed = senders
        .register(
            &acme,
            Registration {
                number: taken,
                details: fresh,
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(failed.status, NumberStatus::Failed, "{failed:?}");
    let view = admin_api::whatsapp::senders::SenderView::of(&failed);
    assert!(view.reason.as_deref().unwrap().contains("already a sender"), "{view:?}");
    assert_eq!(
        serde_json::to_value(view.next_action).unwrap(),
        "CORRECT_SENDER_REQUEST"
    );
    assert_eq!(sim.stats().onboarding.whatsapp_senders, 3);

    // A tenant with only SMS credentials (the subaccount 10DLC onboarding made) registers its
    // senders on that account: the credentials are sealed again for WhatsApp and open.
    let beta = TenantId::parse("beta").unwrap();
    store.create_tenant(&Tenant::live(beta.clone())).await.unwrap();
    let sms = common::credentials::seal(
        &keyring,
        &beta,
        common::Channel::Sms,
        common::store::ProviderKind::Twilio,
        json!({"account_sid": DEFAULT_ACCOUNT_SID}),
        &SecretString::from(DEFAULT_AUTH_TOKEN),
    );
    store
        .put_credentials(&common::store::ChannelCredentials {
            is_verified: true,
            ..sms
        })
        .await
        .unwrap();
    assert_eq!(senders.account(&beta).await.unwrap().account_sid, DEFAULT_ACCOUNT_SID);
    let copied = store
        .credentials(&beta, common::Channel::Whatsapp)
        .await
        .unwrap()
        .unwrap();
    assert!(copied.is_verified);
    assert_eq!(
        common::twilio::open_account(&keyring, &copied)
            .unwrap()
            .auth_token
            .expose_secret(),
        DEFAULT_AUTH_TOKEN
    );

    // A restarted process finds the senders it follows in the store and polls them on.
    let restarted = Arc::new(Senders::new(
        Arc::clone(&store) as Arc<dyn Store>,
        keyring,
        twilio,
        "http://127.0.0.1:9",
        settings.onboarding.clone(),
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let runner = tokio::spawn(Arc::clone(&restarted).run(stop.clone()));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = restarted.list(&acme).await.unwrap();
        let pending = rows
            .iter()
            .filter(|row| {
                row.registration.as_ref().and_then(|r| r.twilio_status.as_deref()) == Some("PENDING_VERIFICATION")
            })
            .count();
        if pending == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never followed: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    runner.await.unwrap();
    sim.shutdown().await.unwrap();
}
