//! Platform-admin routes over HTTP: tenants, plans, subscription state (402), demo tenants and
//! their cleanup, and a tenant's own API keys.

use std::time::Duration;

use common::TenantId;
use common::config::Settings;
use common::store::sqlite::SqliteStore;
use common::store::{OnboardingStore, TenantStore};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

const PLATFORM_KEY: &str = "platform-test-key-0123456789";

use engageninja::testing;

fn sms(id: &str) -> Value {
    json!({"messages": [{"message_id": id, "channel": "sms", "to": "+14155550100", "body": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_routes_manage_tenants_plans_and_keys() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let stack = testing::all_in_one(testing::settings_with_platform_key(dir.path(), PLATFORM_KEY)).await;

    // Tenants: created with a key shown once; duplicates and bad fields refused.
    let (status, plan) = stack
        .call(
            Method::PUT,
            "/v1/admin/plans/starter",
            Some(PLATFORM_KEY),
            Some(&json!({"name": "Starter", "monthly_quota": {"sms": 1000, "email": 5000}})),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    let (status, created) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"id": "acme", "name": "Acme", "plan_id": "starter"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tenant"]["plan_id"], "starter");
    assert_eq!(created["demo"], false);
    let key = created["api_key"]["secret"].as_str().unwrap().to_owned();
    let (status, _) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"id": "acme", "name": "Acme again"})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, invalid) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"id": "Not An Id!", "name": " ", "plan_id": "gold"})),
        )
        .await;
    assert_eq!(status, 422, "{invalid}");
    let fields: Vec<&str> = invalid["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["id", "name"], "{invalid}");
    // A plan that does not exist is not a malformed field but a missing resource.
    let (status, missing) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"id": "globex", "name": "Globex", "plan_id": "gold"})),
        )
        .await;
    assert_eq!(
        (
            status,
            missing["error"]["code"].as_str(),
            missing["error"]["field"].as_str()
        ),
        (StatusCode::NOT_FOUND, Some("plan_not_found"), Some("plan_id"))
    );

    // A tenant key on a platform route is 403; no key or a wrong one is 401.
    let (status, body) = stack
        .call(Method::GET, "/v1/admin/tenants/acme", Some(&key), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("platform_admin_only"))
    );
    let (status, _) = stack
        .call(Method::GET, "/v1/admin/tenants/acme", Some("wrong"), None)
        .await;
    assert_eq!(status, 401);

    // Suspended: sending answers 402 until the tenant is reactivated.
    let (status, _) = stack
        .call(Method::POST, "/v1/messages", Some(&key), Some(&sms("m-1")))
        .await;
    assert_eq!(status, 202);
    let (status, view) = stack
        .call(
            Method::PATCH,
            "/v1/admin/tenants/acme",
            Some(PLATFORM_KEY),
            Some(&json!({"status": "suspended"})),
        )
        .await;
    assert_eq!((status, view["status"].as_str()), (StatusCode::OK, Some("suspended")));
    let (status, body) = stack
        .call(Method::POST, "/v1/messages", Some(&key), Some(&sms("m-2")))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("subscription_inactive"))
    );
    let (status, _) = stack
        .call(
            Method::PATCH,
            "/v1/admin/tenants/acme",
            Some(PLATFORM_KEY),
            Some(&json!({"status": "active", "plan_id": null})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, view) = stack
        .call(Method::GET, "/v1/admin/tenants/acme", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(view["plan_id"], Value::Null);
    // A body that is not an object changes nothing, even one serde would read as the struct.
    let (status, refused) = stack
        .call(
            Method::PATCH,
            "/v1/admin/tenants/acme",
            Some(PLATFORM_KEY),
            Some(&json!(["suspended"])),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed_json"))
    );
    let (status, _) = stack
        .call(Method::POST, "/v1/messages", Some(&key), Some(&sms("m-3")))
        .await;
    assert_eq!(status, 202);

    // Keys: another one, listed without secrets, the first revoked at once.
    let (status, second) = stack.call(Method::POST, "/v1/api-keys", Some(&key), None).await;
    assert_eq!(status, 201);
    let second_secret = second["secret"].as_str().unwrap().to_owned();
    let (_, list) = stack
        .call(Method::GET, "/v1/api-keys", Some(&second_secret), None)
        .await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&key));
    let first_id = created["api_key"]["key_id"].as_str().unwrap();
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{first_id}"),
            Some(&second_secret),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = stack.call(Method::GET, "/v1/api-keys", Some(&key), None).await;
    assert_eq!(status, 401);
    let (status, _) = stack
        .call(Method::DELETE, "/v1/api-keys/key_unknown", Some(&second_secret), None)
        .await;
    assert_eq!(status, 404);

    // The platform issues a key for an existing tenant (one brought over by `import legacy`),
    // audited; not for one that does not exist, and not for a tenant key.
    let (status, issued) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/api-keys",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let issued_secret = issued["secret"].as_str().unwrap();
    let (status, _) = stack.call(Method::GET, "/v1/api-keys", Some(issued_secret), None).await;
    assert_eq!(status, 200);
    let (status, _) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants/nobody/api-keys",
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/api-keys",
            Some(issued_secret),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (_, audit) = stack.call(Method::GET, "/v1/audit", Some(issued_secret), None).await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["action"] == "api_key.created" && entry["actor"] == "platform"),
        "{audit}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tenants_are_platform_only_and_cleaned_up() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let stack = testing::all_in_one(testing::settings_with_platform_key(dir.path(), PLATFORM_KEY)).await;

    let (status, demo) = stack
        .call(Method::POST, "/v1/admin/demo-tenants", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 201, "{demo}");
    assert_eq!(demo["demo"], true);
    // On the demo plan, with a quota like anyone else.
    assert_eq!(demo["tenant"]["plan_id"], "demo", "{demo}");
    let (status, plan) = stack
        .call(Method::GET, "/v1/admin/plans/demo", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["monthly_quota"]["sms"], 10_000, "{plan}");
    let demo_id = demo["tenant"]["id"].as_str().unwrap().to_owned();
    let demo_key = demo["api_key"]["secret"].as_str().unwrap().to_owned();
    let (status, kept) = stack
        .call(
            Method::POST,
            "/v1/admin/demo-tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"name": "Sales demo"})),
        )
        .await;
    assert_eq!(status, 201);
    let kept_id = kept["tenant"]["id"].as_str().unwrap().to_owned();

    // Platform-only: a demo tenant's own key cannot create or list demo tenants.
    let (status, _) = stack
        .call(Method::POST, "/v1/admin/demo-tenants", Some(&demo_key), None)
        .await;
    assert_eq!(status, 403);
    let (status, list) = stack
        .call(Method::GET, "/v1/admin/demo-tenants", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["demo"], true);
    let ids: Vec<&str> = list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tenant| tenant["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&demo_id.as_str()) && ids.contains(&kept_id.as_str()),
        "{list}"
    );

    // Deleting one: its key stops working; a live or unknown id is 404.
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/v1/admin/demo-tenants/{demo_id}"),
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = stack
        .call(Method::POST, "/v1/messages", Some(&demo_key), Some(&sms("d-1")))
        .await;
    assert_eq!(status, 401);
    let (status, _) = stack
        .call(Method::DELETE, "/v1/admin/demo-tenants/demo", Some(PLATFORM_KEY), None)
        .await;
    assert_eq!(status, 204, "the bootstrap demo tenant may be deleted by hand");
    let (status, _) = stack
        .call(
            Method::DELETE,
            &format!("/v1/admin/demo-tenants/{demo_id}"),
            Some(PLATFORM_KEY),
            None,
        )
        .await;
    assert_eq!(status, 404);
    stack.shutdown().await;

    // The scheduled cleanup deletes demo tenants past the retention period, keeping the one
    // named, and audits each deletion platform-wide.
    let store = SqliteStore::open(
        &Settings {
            data_dir: dir.path().to_owned(),
            ..Settings::default()
        }
        .store_path(),
    )
    .await
    .unwrap();
    let kept_id = TenantId::parse(kept_id).unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        admin_api::demo::cleanup_expired(&store, week, None, now).await.unwrap(),
        0
    );
    let later = now + time::Duration::days(8);
    assert_eq!(
        admin_api::demo::cleanup_expired(&store, week, Some(&kept_id), later)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        admin_api::demo::cleanup_expired(&store, week, None, later)
            .await
            .unwrap(),
        1
    );
    assert!(store.tenant(&kept_id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_platform_key_platform_routes_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let stack = testing::all_in_one(testing::settings(dir.path())).await;
    let (status, _) = stack
        .call(reqwest::Method::POST, "/v1/admin/demo-tenants", Some("anything"), None)
        .await;
    assert_eq!(status, 401);
    stack.shutdown().await;
}

/// The seed's business information form, valid.
fn business_info() -> Value {
    json!({
        "legal_business_name": "Demo Bakery LLC", "business_type": "llc", "ein": "12-3456789",
        "industry": "retail", "website": "https://bakery.example.com", "address": "1 Main St",
        "city": "Springfield", "state": "IL", "zip": "62701", "country": "US",
        "owner_name": "Dana Demo", "owner_title": "Owner", "owner_email": "dana@bakery.example.com",
        "owner_phone": "+12175550123", "monthly_volume": "1000_to_10000",
        "use_case_description": "Order ready notifications and weekly specials for bakery customers",
        "campaign_type": "mixed", "tcpa_compliant": true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_tenant_is_approved_30_s_after_business_info_and_reaches_read() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let keys = format!(
        "k1:{}",
        secrecy::ExposeSecret::expose_secret(&common::credentials::generate_key())
    );
    let mut settings = testing::settings_with_platform_key(dir.path(), PLATFORM_KEY);
    settings.credentials.keys = Some(keys.clone().into());
    settings.demo.delivered_after_ms = [50, 100];
    settings.demo.read_after_ms = [150, 200];
    // The runner is driven by hand below, at the instant the workflow is due.
    settings.onboarding.background_runner = false;
    let running = testing::all_in_one(settings.clone()).await;
    let addr = running.addr;

    let (_, demo) = running
        .call(Method::POST, "/v1/admin/demo-tenants", Some(PLATFORM_KEY), None)
        .await;
    let key = demo["api_key"]["secret"].as_str().unwrap().to_owned();
    let tenant = TenantId::parse(demo["tenant"]["id"].as_str().unwrap()).unwrap();
    let submitted_at = OffsetDateTime::now_utc();
    let (status, saved) = running
        .call(Method::POST, "/v1/business-info", Some(&key), Some(&business_info()))
        .await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["demo"], true);

    // Under (simulated) review, due 30 s after submission; not picked before.
    let (_, review) = running
        .call(Method::GET, "/v1/channels/sms/status", Some(&key), None)
        .await;
    assert_eq!(review["status"], "awaiting_approval", "{review}");
    assert_eq!(review["next_action"]["code"], "WAIT_FOR_APPROVAL");
    assert_eq!(review["demo"], true);
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let due = store.workflow_due(&tenant).await.unwrap().unwrap();
    let wait = due - submitted_at;
    assert!(
        (time::Duration::seconds(29)..=time::Duration::seconds(31)).contains(&wait),
        "{wait}"
    );
    assert!(
        !store
            .workflows_due(due - time::Duration::seconds(1), 10)
            .await
            .unwrap()
            .contains(&tenant)
    );
    assert!(store.workflows_due(due, 10).await.unwrap().contains(&tenant));

    // At the due time the runner approves it with a fictional number.
    let onboarding = admin_api::onboarding::Onboarding::new(
        std::sync::Arc::new(store),
        std::sync::Arc::new(common::credentials::Keyring::parse(&keys.into()).unwrap()),
        common::twilio::TwilioClient::new(&(&settings.providers.twilio).into()).unwrap(),
        format!("http://{addr}"),
        settings.onboarding.clone(),
    );
    onboarding.drive_once(&tenant).await.unwrap();
    let (_, ready) = running
        .call(Method::GET, "/v1/channels/sms/status", Some(&key), None)
        .await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["brand_status"], "approved");
    let number = ready["phone_number"].as_str().unwrap();
    assert!(number.starts_with("+120255501") && number.len() == 12, "{number}");
    assert_eq!(ready["phone_number_active"], true);

    // Its traffic is simulated end to end: WhatsApp reaches read.
    let (status, _) = running
        .call(
            Method::POST,
            "/v1/messages",
            Some(&key),
            Some(&json!({"messages": [{"message_id": "wa-1", "channel": "whatsapp", "to": "+14155550100", "body": "Fresh bread!"}]})),)
        .await;
    assert_eq!(status, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, message) = running.call(Method::GET, "/v1/messages/wa-1", Some(&key), None).await;
        if message["status"] == "read" {
            assert_eq!(message["demo"], true);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{message}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
}
