//! The A2P 10DLC onboarding over HTTP against the all-in-one stack on port 0 and the provider
//! simulator: business information (validation, scoping, audit, locking), the workflow from
//! business information to a number that delivers an SMS, a rejection and its resubmission,
//! Twilio unavailable for a while and past the retry limit, and a crash between steps that
//! resumes without creating any Twilio object twice.

use std::sync::Arc;
use std::time::Duration;

use admin_api::onboarding::{Onboarding, Step, keys};
use common::config::Settings;
use common::credentials::{Keyring, generate_key};
use common::store::sqlite::SqliteStore;
use common::store::{AuditStore, BrandStatus, OnboardingStore, Store, Tenant, TenantStore};
use common::twilio::TwilioClient;
use common::twilio::signature::SIGNATURE_HEADER;
use common::{Channel, TenantId};
use engageninja::testing::{self, TestApp};
use load::simulator::{
    BrandOutcome, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, OnboardingSimConfig, RunningSimulator, Simulator,
    SimulatorConfig,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const CONTACT: &str = "+14155550177";
const WAIT: Duration = Duration::from_secs(30);

fn tid(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

/// A complete, valid business information form.
fn form() -> Value {
    json!({
        "legal_business_name": "Acme Inc",
        "dba_name": "Acme",
        "business_type": "corporation",
        "ein": "12-3456789",
        "industry": "retail",
        "website": "https://acme.example.com",
        "address": "1 Market St",
        "city": "San Francisco",
        "state": "CA",
        "zip": "94105",
        "country": "US",
        "owner_name": "Ana Lima",
        "owner_title": "CEO",
        "owner_email": "ana@ACME.example.com",
        "owner_phone": "+14155550123",
        "monthly_volume": "1000_to_10000",
        "use_case_description": "Order updates and delivery notifications for Acme customers",
        "campaign_type": "transactional",
        "tcpa_compliant": true,
    })
}

/// The simulator: brands reviewed quickly; numbers may send fast enough for a test.
async fn simulator(outcome: BrandOutcome) -> RunningSimulator {
    Simulator::start(SimulatorConfig {
        rate_per_sender: 100.0,
        onboarding: OnboardingSimConfig {
            brand_outcome: outcome,
            brand_review_delay: Duration::from_millis(300),
            brand_score: 80,
            ..OnboardingSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap()
}

/// Settings of a stack whose Twilio is the simulator, with the simulator's main account as the
/// platform's master account and short onboarding intervals.
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
    let onboarding = &mut settings.onboarding;
    onboarding.master_account_sid = Some(DEFAULT_ACCOUNT_SID.to_owned());
    onboarding.master_auth_token = Some(SecretString::from(DEFAULT_AUTH_TOKEN));
    onboarding.retry_interval_secs = 1;
    onboarding.poll_interval_secs = 60;
    onboarding.runner_tick_ms = 50;
    settings
}

/// Creates the tenants; answers their API keys.
async fn seed(settings: &Settings, tenants: &[&str]) -> Vec<String> {
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let mut keys = Vec::new();
    for id in tenants {
        store.create_tenant(&Tenant::live(tid(id))).await.unwrap();
        keys.push(admin_api::auth::create_api_key(&store, &tid(id)).await.unwrap().secret);
    }
    keys
}

/// The all-in-one stack, with this suite's requests.
struct Running {
    app: TestApp,
    http: reqwest::Client,
}

impl Running {
    async fn start(settings: &Settings) -> Running {
        Running {
            app: testing::all_in_one(settings.clone()).await,
            http: reqwest::Client::new(),
        }
    }

    async fn shutdown(self) {
        self.app.shutdown().await;
    }

    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Sends a request with `key` (and `body` as JSON); answers the status and the JSON body.
    async fn call(&self, method: reqwest::Method, path: &str, key: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let (status, body) = self.app.call(method, path, key, body).await;
        (status.as_u16(), body)
    }

    async fn status(&self, key: &str) -> Value {
        let (code, body) = self
            .call(reqwest::Method::GET, "/v1/channels/sms/status", Some(key), None)
            .await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Polls the SMS status until `done` holds; answers it.
    async fn wait_status(&self, key: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = self.status(key).await;
            if done(&status) {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "never {what}: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn field_names(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|field| field["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_info_is_validated_scoped_audited_and_locked_once_approved() {
    use reqwest::Method;
    let sim = simulator(BrandOutcome::Approve).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), &sim);
    settings.onboarding.background_runner = false;
    let keys = seed(&settings, &["acme", "other"]).await;
    let (acme, other) = (keys[0].as_str(), keys[1].as_str());
    let running = Running::start(&settings).await;

    // Keys: none or a wrong one is 401 on every route.
    for (method, path) in [
        (Method::GET, "/v1/business-info"),
        (Method::POST, "/v1/business-info"),
        (Method::PUT, "/v1/business-info"),
        (Method::GET, "/v1/business-info/status"),
        (Method::GET, "/v1/channels/sms/status"),
        (Method::POST, "/v1/channels/sms/resubmit"),
    ] {
        for key in [None, Some("enk_0000")] {
            let (code, body) = running.call(method.clone(), path, key, Some(&form())).await;
            assert_eq!(
                (code, &body["error"]["code"]),
                (401, &json!("unauthorized")),
                "{method} {path}"
            );
        }
    }

    // Nothing yet.
    let (code, body) = running.call(Method::GET, "/v1/business-info", Some(acme), None).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("business_info_not_found"))
    );
    let (code, _) = running
        .call(Method::PUT, "/v1/business-info", Some(acme), Some(&form()))
        .await;
    assert_eq!(code, 404);
    let status = running.status(acme).await;
    assert_eq!(status["status"], "not_started");
    assert_eq!(status["next_action"]["code"], "CONFIGURE_BUSINESS_INFO");
    let (code, body) = running
        .call(Method::POST, "/v1/channels/sms/resubmit", Some(acme), None)
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (404, Some("business_info_not_found"))
    );

    // Malformed JSON and a non-object body are 400.
    let response = running
        .http
        .post(running.url("/v1/business-info"))
        .bearer_auth(acme)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let (code, _) = running
        .call(Method::POST, "/v1/business-info", Some(acme), Some(&json!([1])))
        .await;
    assert_eq!(code, 400);

    // Each rule on its own: exactly that field fails.
    let cases: Vec<(&str, Value)> = vec![
        ("legal_business_name", Value::Null),
        ("legal_business_name", json!("   ")),
        ("legal_business_name", json!(" Acme Inc")),
        ("legal_business_name", json!("Acme\nInc")),
        ("legal_business_name", json!(42)),
        ("business_type", json!("empire")),
        ("ein", json!("123456789")),
        ("ein", json!("12-34567")),
        ("industry", json!("piracy")),
        ("website", json!("acme.example.com")),
        ("website", json!("ftp://acme.example.com")),
        ("address", Value::Null),
        ("city", Value::Null),
        ("state", json!("XX")),
        ("state", json!("ca")),
        ("state", Value::Null),
        ("zip", json!("9410")),
        ("zip", json!("94105-12")),
        ("country", json!("CA")),
        ("owner_name", Value::Null),
        ("owner_title", Value::Null),
        ("owner_email", json!("ana-at-acme")),
        ("owner_phone", json!("415-555-0123")),
        ("owner_phone", Value::Null),
        ("business_contact_email", json!("nobody@")),
        ("business_contact_phone", json!("+0123")),
        ("monthly_volume", json!("lots")),
        ("monthly_volume", Value::Null),
        ("use_case_description", json!("too short")),
        ("use_case_description", json!("x".repeat(4_097))),
        ("campaign_type", json!("spam")),
        ("sms_opt_in_language", json!("opt in")),
        ("message_samples", json!(["only one sample message here"])),
        ("message_samples", json!(["short", "another sample message here"])),
        ("tcpa_compliant", json!("yes")),
        ("favourite_colour", json!("blue")),
    ];
    for (field, value) in cases {
        let mut body = form();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value.clone();
        }
        let (code, answer) = running
            .call(Method::POST, "/v1/business-info", Some(acme), Some(&body))
            .await;
        assert_eq!(code, 422, "{field} = {value}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field");
        assert_eq!(field_names(&answer), [field], "{field} = {value}: {answer}");
    }
    // Several at once: every one is listed.
    let mut body = form();
    body["ein"] = json!("nope");
    body["zip"] = json!("nope");
    body["owner_email"] = json!("nope");
    body.as_object_mut().unwrap().remove("owner_name");
    let (code, answer) = running
        .call(Method::POST, "/v1/business-info", Some(acme), Some(&body))
        .await;
    assert_eq!(code, 422);
    let mut fields = field_names(&answer);
    fields.sort();
    assert_eq!(fields, ["ein", "owner_email", "owner_name", "zip"]);

    // Saved as given (but for the email's domain, in lowercase), and the workflow starts.
    let (code, saved) = running
        .call(Method::POST, "/v1/business-info", Some(acme), Some(&form()))
        .await;
    assert_eq!(code, 201, "{saved}");
    assert_eq!(saved["business_info"]["state"], "CA");
    assert_eq!(saved["business_info"]["owner_email"], "ana@acme.example.com");
    assert_eq!(saved["editable"], true);
    let (code, again) = running
        .call(Method::POST, "/v1/business-info", Some(acme), Some(&form()))
        .await;
    assert_eq!(
        (code, again["error"]["code"].as_str()),
        (409, Some("business_info_exists"))
    );
    let (code, fetched) = running.call(Method::GET, "/v1/business-info", Some(acme), None).await;
    assert_eq!((code, &fetched["business_info"]), (200, &saved["business_info"]));
    let status = running.status(acme).await;
    assert_eq!(
        (status["status"].as_str(), status["step"].as_str()),
        (Some("in_progress"), Some("subaccount"))
    );
    assert_eq!(status["next_action"]["code"], "WAIT_FOR_PROVISIONING");
    let (code, same) = running
        .call(Method::GET, "/v1/business-info/status", Some(acme), None)
        .await;
    assert_eq!((code, &same), (200, &status));

    // Another tenant sees none of it.
    let (code, _) = running.call(Method::GET, "/v1/business-info", Some(other), None).await;
    assert_eq!(code, 404);
    assert_eq!(running.status(other).await["status"], "not_started");

    // An update is audited field by field.
    let mut changed = form();
    changed["dba_name"] = json!("Acme Stores");
    changed["zip"] = json!("94105-1234");
    let (code, updated) = running
        .call(Method::PUT, "/v1/business-info", Some(acme), Some(&changed))
        .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["business_info"]["zip"], "94105-1234");
    let (code, _) = running
        .call(Method::PUT, "/v1/business-info", Some(acme), Some(&json!({"ein": "x"})))
        .await;
    assert_eq!(code, 422);
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let audit = store.audit(&tid("acme"), 20).await.unwrap();
    let update = audit
        .iter()
        .find(|entry| entry.action == "business_info.updated")
        .expect("the update is audited");
    assert_eq!(
        update.detail["changes"],
        json!({"dba_name": {"from": "Acme", "to": "Acme Stores"}, "zip": {"from": "94105", "to": "94105-1234"}})
    );
    let created = audit
        .iter()
        .find(|entry| entry.action == "business_info.created")
        .unwrap();
    assert_eq!(
        created.detail["changes"]["ein"],
        json!({"from": null, "to": "12-3456789"})
    );
    assert!(audit.iter().any(|entry| entry.action == "onboarding.started"));
    assert!(store.audit(&tid("other"), 20).await.unwrap().is_empty());

    // Once the brand is approved the form is locked.
    let mut brand = store.brand(&tid("acme")).await.unwrap().unwrap();
    brand.status = BrandStatus::Approved;
    store.put_brand(&brand).await.unwrap();
    let (code, locked) = running
        .call(Method::PUT, "/v1/business-info", Some(acme), Some(&form()))
        .await;
    assert_eq!(
        (code, locked["error"]["code"].as_str()),
        (409, Some("business_info_locked"))
    );
    let (_, fetched) = running.call(Method::GET, "/v1/business-info", Some(acme), None).await;
    assert_eq!(fetched["editable"], false);

    running.shutdown().await;
    let stats = sim.shutdown().await.unwrap();
    assert_eq!(stats.onboarding.requests, 0, "the runner was off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_brand_ends_with_a_number_that_delivers_sms() {
    let sim = simulator(BrandOutcome::Approve).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), &sim);
    // A ready tenant's brand and campaign are fetched again every second here.
    settings.onboarding.watch_interval_secs = 1;
    let key = seed(&settings, &["acme"]).await.remove(0);
    let running = Running::start(&settings).await;

    let (code, body) = running
        .call(reqwest::Method::POST, "/v1/business-info", Some(&key), Some(&form()))
        .await;
    assert_eq!(code, 201, "{body}");
    let waiting = running
        .wait_status(&key, "awaiting approval", |status| status["status"] != "in_progress")
        .await;
    assert!(
        waiting["status"] == "awaiting_approval" || waiting["status"] == "ready",
        "{waiting}"
    );

    // A forged brand status callback is refused.
    let forged = running
        .http
        .post(running.url("/webhooks/twilio/brand-status"))
        .header(SIGNATURE_HEADER, "bm90IGEgc2lnbmF0dXJl")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "AccountSid={DEFAULT_ACCOUNT_SID}&BrandRegistrationSid=BN00000000000000000000000000000000&BrandStatus=APPROVED"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);

    // The signed webhook approves it (polling is every 60 s here), then the number is bought.
    let ready = running
        .wait_status(&key, "ready", |status| status["status"] == "ready")
        .await;
    assert_eq!(ready["next_action"]["code"], "NONE", "{ready}");
    assert_eq!(ready["brand_status"], "approved");
    assert_eq!(ready["trust_score"], 80);
    assert_eq!(ready["phone_number_active"], true);
    assert!(ready["brand_sid"].as_str().unwrap().starts_with("BN"));
    let number = ready["phone_number"].as_str().unwrap().to_owned();
    assert!(
        number.starts_with("+1415555"),
        "the business phone's area code: {number}"
    );

    // The tenant's SMS credentials are its own subaccount, verified, never answered.
    let (code, channel) = running
        .call(reqwest::Method::GET, "/v1/channels/sms", Some(&key), None)
        .await;
    assert_eq!(code, 200, "{channel}");
    assert_eq!(channel["is_verified"], true);
    let account = channel["settings"]["account_sid"].as_str().unwrap();
    assert!(account.starts_with("AC") && account != DEFAULT_ACCOUNT_SID);
    assert!(!channel.to_string().contains("token"));

    // An SMS from the new number reaches delivered through the simulator's signed callbacks.
    let envelope = json!({
        "version": 1, "message_id": "first-sms", "tenant_id": "acme", "channel": "sms",
        "to": CONTACT, "from": number, "body": "Acme: your order has shipped.",
        "priority": "transactional",
    });
    let (code, accepted) = running
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&key),
            Some(&json!({ "messages": [envelope] })),
        )
        .await;
    assert_eq!(code / 100, 2, "{accepted}");
    assert_eq!(accepted["results"][0]["status"], "accepted", "{accepted}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, message) = running
            .call(reqwest::Method::GET, "/v1/messages/first-sms", Some(&key), None)
            .await;
        if message["status"] == "delivered" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered: {message}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every step was audited; the webhook, not the poll, brought the approval.
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let actions: Vec<String> = store
        .audit(&tid("acme"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    for step in [
        "subaccount",
        "customer_profile",
        "trust_product",
        "brand",
        "awaiting_approval",
        "phone_number",
        "messaging_service",
        "campaign",
        "campaign_review",
    ] {
        assert!(
            actions.contains(&format!("onboarding.{step}.done")),
            "{step}: {actions:?}"
        );
    }
    assert!(
        actions
            .iter()
            .any(|action| action == "onboarding.brand_status_reported")
    );
    let brand = store.brand(&tid("acme")).await.unwrap().unwrap();
    assert_eq!(brand.workflow_step, "ready");
    assert!(
        store.workflow_due(&tid("acme")).await.unwrap().is_some(),
        "a ready workflow keeps watching its brand and campaign"
    );

    // Sends one SMS after another until one ends with `wanted` (admission trusts what it read
    // for a few seconds); answers how many reached the provider meanwhile.
    let send_until = |wanted: &'static str| {
        let (running, key, number) = (&running, &key, &number);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            for attempt in 0_u64.. {
                let id = format!("{}-{attempt}", wanted.to_ascii_lowercase());
                let envelope = json!({"channel": "sms", "message_id": id, "to": CONTACT, "from": number,
                    "body": "Acme: your order has shipped.", "priority": "transactional"});
                let (code, _) = running
                    .call(
                        reqwest::Method::POST,
                        "/v1/messages",
                        Some(key),
                        Some(&json!({ "messages": [envelope] })),
                    )
                    .await;
                assert_eq!(code, 202);
                let message = loop {
                    let (_, message) = running
                        .call(reqwest::Method::GET, &format!("/v1/messages/{id}"), Some(key), None)
                        .await;
                    if ["delivered", "rejected"].contains(&message["status"].as_str().unwrap_or_default()) {
                        break message;
                    }
                    assert!(tokio::time::Instant::now() < deadline, "{id} never settled: {message}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                if message["reason"] == wanted || (wanted == "DELIVERED" && message["status"] == "delivered") {
                    return attempt;
                }
                assert!(tokio::time::Instant::now() < deadline, "never {wanted}: {message}");
            }
            unreachable!("the loop returns or fails")
        }
    };

    // The campaign is suspended after approval (seen by polling): SMS is held at admission
    // with CAMPAIGN_SUSPENDED instead of being sent into Twilio's refusals; verified again, it
    // resumes.
    let campaign_sid = brand.twilio_sids["campaign"].clone();
    sim.set_campaign_status(&campaign_sid, Some("SUSPENDED"));
    let suspended = running
        .wait_status(&key, "campaign suspended", |status| {
            status["status"] == "campaign_suspended"
        })
        .await;
    assert_eq!(suspended["next_action"]["code"], "CAMPAIGN_SUSPENDED", "{suspended}");
    let creates_before = sim.stats().received;
    let delivered_meanwhile = send_until("CAMPAIGN_SUSPENDED").await;
    assert_eq!(sim.stats().received, creates_before + delivered_meanwhile);
    sim.set_campaign_status(&campaign_sid, None);
    running
        .wait_status(&key, "ready again", |status| status["status"] == "ready")
        .await;
    send_until("DELIVERED").await;
    let mut delivered = 1 + delivered_meanwhile + 1;

    // The carriers suspend the brand: its status callback (the poll too) stops SMS with
    // BRAND_SUSPENDED, and the tenant is told to fix its business information and resubmit.
    sim.suspend_brand(&brand.twilio_sids["brand"], "carrier audit: content mismatch");
    let suspended = running
        .wait_status(&key, "brand suspended", |status| status["status"] == "suspended")
        .await;
    assert_eq!(suspended["next_action"]["code"], "BRAND_SUSPENDED", "{suspended}");
    assert_eq!(suspended["brand_status"], "suspended");
    assert_eq!(suspended["reason"], "carrier audit: content mismatch", "{suspended}");
    delivered += send_until("BRAND_SUSPENDED").await;
    let actions: Vec<String> = store
        .audit(&tid("acme"), 200)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    for action in [
        "onboarding.campaign_suspended",
        "onboarding.campaign_verified_again",
        "onboarding.brand_rejected",
    ] {
        assert!(actions.iter().any(|seen| seen == action), "{action}: {actions:?}");
    }

    running.shutdown().await;
    let stats = sim.shutdown().await.unwrap();
    let onboarding = stats.onboarding;
    assert_eq!(onboarding.subaccounts, 1);
    assert_eq!((onboarding.customer_profiles, onboarding.trust_products), (1, 1));
    assert_eq!(
        (
            onboarding.end_users,
            onboarding.supporting_documents,
            onboarding.addresses
        ),
        (3, 1, 1)
    );
    assert_eq!((onboarding.entity_assignments, onboarding.bundles_submitted), (5, 2));
    assert_eq!((onboarding.brand_registrations, onboarding.brand_callbacks), (1, 2));
    assert_eq!(onboarding.numbers_purchased, 1);
    assert_eq!(
        (onboarding.messaging_services, onboarding.service_phone_numbers),
        (1, 1)
    );
    assert_eq!(onboarding.campaigns, 1);
    assert!(
        onboarding.rejected_by_code.is_empty(),
        "{:?}",
        onboarding.rejected_by_code
    );
    assert_eq!(
        stats.accepted, delivered,
        "only the messages that were delivered reached twilio"
    );
}

/// A brand status callback is a hint, not a verdict: even validly signed (a leaked or shared
/// token), what it claims is never applied; the brand is fetched from Twilio at once and only
/// that answer moves the workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_brand_callback_cannot_approve_what_twilio_has_not() {
    let sim = Simulator::start(SimulatorConfig {
        rate_per_sender: 100.0,
        onboarding: OnboardingSimConfig {
            brand_review_delay: Duration::from_secs(3600),
            ..OnboardingSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), &sim);
    let key = seed(&settings, &["acme"]).await.remove(0);
    let running = Running::start(&settings).await;
    let (code, body) = running
        .call(reqwest::Method::POST, "/v1/business-info", Some(&key), Some(&form()))
        .await;
    assert_eq!(code, 201, "{body}");
    running
        .wait_status(&key, "awaiting approval", |status| {
            status["status"] == "awaiting_approval"
        })
        .await;

    // Signed with the tenant's own subaccount token, as the stack stored it.
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let brand_sid = store.brand(&tid("acme")).await.unwrap().unwrap().twilio_sids[keys::BRAND].clone();
    let row = store.credentials(&tid("acme"), Channel::Sms).await.unwrap().unwrap();
    let keyring = Keyring::parse(settings.credentials.keys.as_ref().unwrap()).unwrap();
    let account = common::twilio::open_account(&keyring, &row).unwrap();
    let url = running.url("/webhooks/twilio/brand-status");
    let params: Vec<(String, String)> = [
        ("AccountSid", account.account_sid.as_str()),
        ("BrandRegistrationSid", brand_sid.as_str()),
        ("BrandStatus", "APPROVED"),
        ("BrandScore", "100"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();
    let signature = common::twilio::signature::compute(account.auth_token.expose_secret(), &url, &params);
    let requests_before = sim.stats().onboarding.requests;
    let answer = running
        .http
        .post(&url)
        .header(SIGNATURE_HEADER, signature)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 204);

    // Heard, audited, and checked with Twilio (which still reviews it): nothing approved.
    assert!(
        sim.stats().onboarding.requests > requests_before,
        "the brand was fetched"
    );
    let actions: Vec<String> = store
        .audit(&tid("acme"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    assert!(
        actions
            .iter()
            .any(|action| action == "onboarding.brand_status_reported")
    );
    assert!(
        !actions
            .iter()
            .any(|action| action == "onboarding.awaiting_approval.done")
    );
    let status = running.status(&key).await;
    assert_eq!(status["status"], "awaiting_approval", "{status}");
    assert_ne!(status["brand_status"], "approved", "{status}");
    let brand = store.brand(&tid("acme")).await.unwrap().unwrap();
    assert_eq!(brand.status, BrandStatus::Pending);

    running.shutdown().await;
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_brand_shows_its_reason_and_is_resubmitted() {
    let reason = "The EIN does not match the legal business name".to_owned();
    let sim = simulator(BrandOutcome::Fail { reason: reason.clone() }).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), &sim);
    let key = seed(&settings, &["acme"]).await.remove(0);
    let running = Running::start(&settings).await;

    let (code, _) = running
        .call(reqwest::Method::POST, "/v1/business-info", Some(&key), Some(&form()))
        .await;
    assert_eq!(code, 201);
    let rejected = running
        .wait_status(&key, "rejected", |status| status["status"] == "rejected")
        .await;
    assert_eq!(rejected["reason"], json!(reason));
    assert_eq!(rejected["brand_status"], "failed");
    assert_eq!(rejected["next_action"]["code"], "UPDATE_BUSINESS_INFO");
    assert_eq!(rejected["phone_number"], Value::Null);

    // The tenant corrects its form (still editable) and resubmits; this time it passes.
    let mut corrected = form();
    corrected["legal_business_name"] = json!("Acme Incorporated");
    let (code, _) = running
        .call(reqwest::Method::PUT, "/v1/business-info", Some(&key), Some(&corrected))
        .await;
    assert_eq!(code, 200);
    sim.set_brand_outcome(BrandOutcome::Approve);
    let (code, resubmitted) = running
        .call(reqwest::Method::POST, "/v1/channels/sms/resubmit", Some(&key), None)
        .await;
    assert_eq!(code, 202, "{resubmitted}");
    assert_eq!(resubmitted["step"], "customer_profile");
    assert_eq!(resubmitted["reason"], Value::Null);
    let ready = running
        .wait_status(&key, "ready", |status| status["status"] == "ready")
        .await;
    assert_eq!(ready["brand_status"], "approved");
    assert_ne!(ready["brand_sid"], rejected["brand_sid"]);
    let (code, body) = running
        .call(reqwest::Method::POST, "/v1/channels/sms/resubmit", Some(&key), None)
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("nothing_to_resubmit"))
    );

    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let audit = store.audit(&tid("acme"), 200).await.unwrap();
    let resubmission = audit
        .iter()
        .find(|entry| entry.action == "onboarding.resubmitted")
        .unwrap();
    assert_eq!(resubmission.detail["rejection_reason"], json!(reason));
    assert_eq!(resubmission.detail["replaced"]["brand"], rejected["brand_sid"]);
    assert!(audit.iter().any(|entry| entry.action == "onboarding.brand_rejected"));

    running.shutdown().await;
    let onboarding = sim.shutdown().await.unwrap().onboarding;
    assert_eq!(onboarding.subaccounts, 1, "the account is kept");
    assert_eq!((onboarding.customer_profiles, onboarding.trust_products), (2, 2));
    assert_eq!(onboarding.brand_registrations, 2);
    assert_eq!((onboarding.brands_failed, onboarding.brands_approved), (1, 1));
    assert_eq!((onboarding.numbers_purchased, onboarding.campaigns), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_down_for_a_while_is_retried_until_it_recovers() {
    let sim = simulator(BrandOutcome::Approve).await;
    sim.set_onboarding_unavailable(true);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), &sim);
    let key = seed(&settings, &["acme"]).await.remove(0);
    let running = Running::start(&settings).await;

    let (code, _) = running
        .call(reqwest::Method::POST, "/v1/business-info", Some(&key), Some(&form()))
        .await;
    assert_eq!(code, 201);
    let retrying = running
        .wait_status(&key, "retrying twice", |status| status["attempts"].as_u64() >= Some(2))
        .await;
    assert_eq!(retrying["status"], "in_progress");
    assert_eq!(retrying["step"], "subaccount");
    assert_eq!(retrying["next_action"]["code"], "WAIT_FOR_PROVISIONING");
    assert!(
        retrying["reason"].as_str().unwrap().contains("unavailable"),
        "{retrying}"
    );
    assert!(retrying["next_attempt_at"].is_string(), "{retrying}");

    sim.set_onboarding_unavailable(false);
    let ready = running
        .wait_status(&key, "ready", |status| status["status"] == "ready")
        .await;
    assert_eq!((ready["attempts"].as_u64(), &ready["reason"]), (Some(0), &Value::Null));

    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let retries = store
        .audit(&tid("acme"), 200)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.action == "onboarding.retry_scheduled")
        .count();
    assert!(retries >= 2, "{retries}");
    running.shutdown().await;
    let onboarding = sim.shutdown().await.unwrap().onboarding;
    assert!(onboarding.unavailable >= 2);
    assert_eq!((onboarding.subaccounts, onboarding.brand_registrations), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_down_past_the_limit_needs_attention_then_resumes() {
    let sim = simulator(BrandOutcome::Approve).await;
    sim.set_onboarding_unavailable(true);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), &sim);
    settings.onboarding.max_attempts = 3;
    let key = seed(&settings, &["acme"]).await.remove(0);
    let running = Running::start(&settings).await;

    let (code, _) = running
        .call(reqwest::Method::POST, "/v1/business-info", Some(&key), Some(&form()))
        .await;
    assert_eq!(code, 201);
    let stopped = running
        .wait_status(&key, "needs attention", |status| status["status"] == "needs_attention")
        .await;
    assert_eq!(stopped["attempts"], 3);
    assert_eq!(stopped["next_action"]["code"], "CONTACT_SUPPORT");
    assert_eq!(stopped["next_attempt_at"], Value::Null);
    let reason = stopped["reason"].as_str().unwrap();
    assert!(reason.contains("unavailable for 3 attempts"), "{reason}");
    assert!(reason.contains("TWILIO_20503"), "the last error is shown: {reason}");
    // Nothing more happens on its own.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(sim.stats().onboarding.unavailable, 3);

    // Once Twilio is back, resubmitting resumes the stopped step.
    sim.set_onboarding_unavailable(false);
    let (code, resumed) = running
        .call(reqwest::Method::POST, "/v1/channels/sms/resubmit", Some(&key), None)
        .await;
    assert_eq!(code, 202, "{resumed}");
    running
        .wait_status(&key, "ready", |status| status["status"] == "ready")
        .await;
    running.shutdown().await;
    let onboarding = sim.shutdown().await.unwrap().onboarding;
    assert_eq!((onboarding.unavailable, onboarding.subaccounts), (3, 1));
}

/// An onboarding workflow driven by hand, on the stack's store.
async fn onboarding(settings: &Settings, public_url: &str) -> (Arc<SqliteStore>, Onboarding) {
    let store = Arc::new(SqliteStore::open(&settings.store_path()).await.unwrap());
    let keyring = Keyring::parse(settings.credentials.keys.as_ref().unwrap()).unwrap();
    let twilio = TwilioClient::new(&(&settings.providers.twilio).into()).unwrap();
    let workflow = Onboarding::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::new(keyring),
        twilio,
        public_url,
        settings.onboarding.clone(),
    );
    (store, workflow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_steps_resumes_without_creating_anything_twice() {
    let sim = simulator(BrandOutcome::Approve).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), &sim);
    settings.onboarding.background_runner = false;
    settings.onboarding.poll_interval_secs = 1;
    let key = seed(&settings, &["acme"]).await.remove(0);
    let acme = tid("acme");

    // First life: the business info is saved and the workflow driven by hand into the
    // customer profile, then the process goes away.
    let first = Running::start(&settings).await;
    let (code, _) = first
        .call(reqwest::Method::POST, "/v1/business-info", Some(&key), Some(&form()))
        .await;
    assert_eq!(code, 201);
    {
        let (store, workflow) = onboarding(&settings, &first.url("")).await;
        let mut progress = workflow.drive_once(&acme).await.unwrap();
        while progress.step != Step::TrustProduct {
            progress = workflow.drive_once(&acme).await.unwrap();
        }
        // One unit into the trust product: its bundle exists.
        workflow.drive_once(&acme).await.unwrap();
        let brand = store.brand(&acme).await.unwrap().unwrap();
        assert!(brand.twilio_sids.contains_key(keys::TRUST_PRODUCT));
        assert!(!brand.twilio_sids.contains_key(keys::INTENT));
        assert!(
            store
                .credentials(&acme, Channel::Sms)
                .await
                .unwrap()
                .unwrap()
                .is_verified
        );
    }
    first.shutdown().await;
    let before = sim.stats().onboarding;
    assert_eq!(
        (before.subaccounts, before.customer_profiles, before.trust_products),
        (1, 1, 1)
    );
    assert_eq!(before.brand_registrations, 0);

    // Second life, with the background runner: it resumes and finishes. The brand callback
    // goes to the first life's address, so the poll brings the approval.
    settings.onboarding.background_runner = true;
    let second = Running::start(&settings).await;
    let ready = second
        .wait_status(&key, "ready", |status| status["status"] == "ready")
        .await;
    assert_eq!(ready["phone_number_active"], true);
    second.shutdown().await;

    let onboarding = sim.shutdown().await.unwrap().onboarding;
    assert_eq!(onboarding.subaccounts, 1);
    assert_eq!((onboarding.customer_profiles, onboarding.trust_products), (1, 1));
    assert_eq!(
        (
            onboarding.end_users,
            onboarding.supporting_documents,
            onboarding.addresses
        ),
        (3, 1, 1)
    );
    assert_eq!((onboarding.entity_assignments, onboarding.bundles_submitted), (5, 2));
    assert_eq!(onboarding.brand_registrations, 1);
    assert_eq!((onboarding.numbers_purchased, onboarding.messaging_services), (1, 1));
    assert_eq!(onboarding.campaigns, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cut_short_is_never_repeated_blindly() {
    let sim = simulator(BrandOutcome::Approve).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path(), &sim);
    settings.onboarding.background_runner = false;
    let key = seed(&settings, &["acme"]).await.remove(0);
    let acme = tid("acme");
    let running = Running::start(&settings).await;
    let (code, _) = running
        .call(reqwest::Method::POST, "/v1/business-info", Some(&key), Some(&form()))
        .await;
    assert_eq!(code, 201);
    let (store, workflow) = onboarding(&settings, &running.url("")).await;
    let mut progress = workflow.drive_once(&acme).await.unwrap();
    while progress.step != Step::Brand {
        progress = workflow.drive_once(&acme).await.unwrap();
    }
    // The process stopped while the brand registration was being created: its intent is left.
    let mut brand = store.brand(&acme).await.unwrap().unwrap();
    brand
        .twilio_sids
        .insert(keys::INTENT.to_owned(), keys::BRAND.to_owned());
    store.put_brand(&brand).await.unwrap();

    let progress = workflow.drive_once(&acme).await.unwrap();
    assert_eq!(progress.step, Step::NeedsAttention);
    assert!(
        progress.reason.as_deref().unwrap().contains("brand is unknown"),
        "{progress:?}"
    );
    let brand = store.brand(&acme).await.unwrap().unwrap();
    assert_eq!(
        brand.twilio_sids.get(keys::UNCERTAIN).map(String::as_str),
        Some(keys::BRAND)
    );
    let status = running.status(&key).await;
    assert_eq!(status["status"], "needs_attention");
    let (code, body) = running
        .call(reqwest::Method::POST, "/v1/channels/sms/resubmit", Some(&key), None)
        .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("onboarding_uncertain"))
    );
    // Driving again changes nothing.
    assert_eq!(workflow.drive_once(&acme).await.unwrap().step, Step::NeedsAttention);

    running.shutdown().await;
    assert_eq!(sim.shutdown().await.unwrap().onboarding.brand_registrations, 0);
}
