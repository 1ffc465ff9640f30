//! Channel credentials over HTTP: saved sealed, verified against the provider simulator,
//! answered without the secret, validated field by field, deleted.

use common::credentials::{Keyring, generate_key};
use common::store::sqlite::SqliteStore;
use common::store::{AuditStore, OnboardingStore, ProviderKind, Tenant, TenantStore};
use common::{Channel, TenantId};
use engageninja::testing;
use load::simulator::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Simulator, SimulatorConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_credentials_are_sealed_verified_and_never_answered() {
    let simulator = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = SecretString::from(format!("k1:{}", generate_key().expose_secret()));
    let mut settings = testing::settings(dir.path());
    settings.demo.bootstrap = false;
    settings.credentials.keys = Some(keys.clone());
    settings.providers.twilio.api_url = simulator.base_url();
    let platform_account = format!("AC{}", "f".repeat(32));
    settings.onboarding.master_account_sid = Some(platform_account.clone());

    let (acme, other) = (TenantId::parse("acme").unwrap(), TenantId::parse("other").unwrap());
    let (acme_key, other_key) = {
        let store = SqliteStore::open(&settings.store_path()).await.unwrap();
        for tenant in [&acme, &other] {
            store.create_tenant(&Tenant::live(tenant.clone())).await.unwrap();
        }
        (
            admin_api::auth::create_api_key(&store, &acme).await.unwrap().secret,
            admin_api::auth::create_api_key(&store, &other).await.unwrap().secret,
        )
    };
    let stack = testing::all_in_one(settings.clone()).await;
    let base = stack.url("");
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/channels/sms");
    let post = |key: &str, body: Value| http.post(&url).bearer_auth(key).json(&body).send();

    // Valid credentials: 201, verified, the token nowhere in the answer.
    let saved = post(
        &acme_key,
        json!({"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN}),
    )
    .await
    .unwrap();
    assert_eq!(saved.status(), 201);
    let text = saved.text().await.unwrap();
    assert!(!text.contains(DEFAULT_AUTH_TOKEN), "{text}");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["is_verified"], true, "{view}");
    assert_eq!(view["settings"]["account_sid"], DEFAULT_ACCOUNT_SID);

    // Stored sealed: the ciphertext is not the token, and it opens with the configured ring.
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let row = store.credentials(&acme, Channel::Sms).await.unwrap().unwrap();
    assert_eq!(row.provider, ProviderKind::Twilio);
    assert!(
        !row.sealed_secrets
            .windows(DEFAULT_AUTH_TOKEN.len())
            .any(|window| window == DEFAULT_AUTH_TOKEN.as_bytes())
    );
    let keyring = Keyring::parse(&keys).unwrap();
    let account = common::twilio::open_account(&keyring, &row).unwrap();
    assert_eq!(account.auth_token.expose_secret(), DEFAULT_AUTH_TOKEN);

    // Nobody else may register that account, even with its token, nor the platform's own:
    // their webhooks would be signed with a token that tenant knows.
    for (key, account) in [
        (&other_key, DEFAULT_ACCOUNT_SID),
        (&acme_key, platform_account.as_str()),
    ] {
        let taken = post(key, json!({"account_sid": account, "auth_token": DEFAULT_AUTH_TOKEN}))
            .await
            .unwrap();
        assert_eq!(taken.status(), 409);
        let error: Value = taken.json().await.unwrap();
        assert_eq!(error["error"]["code"], "account_in_use", "{error}");
        assert_eq!(error["error"]["field"], "account_sid", "{error}");
    }
    assert_eq!(store.credentials(&other, Channel::Sms).await.unwrap(), None);

    // A wrong token is saved unverified, with the reason.
    let wrong = post(
        &acme_key,
        json!({"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": "not-it"}),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 201);
    let view: Value = wrong.json().await.unwrap();
    assert_eq!(view["is_verified"], false, "{view}");
    assert!(
        view["verification_error"].as_str().unwrap().contains("refused"),
        "{view}"
    );

    // Every failing field is listed.
    let invalid = post(&acme_key, json!({"account_sid": "AC123", "extra": 1}))
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
    let error: Value = invalid.json().await.unwrap();
    let mut fields: Vec<&str> = error["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["account_sid", "auth_token", "extra"], "{error}");
    let malformed = http
        .post(&url)
        .bearer_auth(&acme_key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    // Scoped to the key's tenant; no key, no access; unknown channels are 404.
    let theirs = http.get(&url).bearer_auth(&other_key).send().await.unwrap();
    assert_eq!(theirs.status(), 404);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let fax = http
        .get(format!("{base}/v1/channels/fax"))
        .bearer_auth(&acme_key)
        .send()
        .await
        .unwrap();
    assert_eq!(fax.status(), 404);

    // Deleted: gone, and a second delete is 404. Every change was audited, without secrets.
    let deleted = http.delete(&url).bearer_auth(&acme_key).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        http.get(&url).bearer_auth(&acme_key).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        http.delete(&url).bearer_auth(&acme_key).send().await.unwrap().status(),
        404
    );
    let audit = store.audit(&acme, 10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|entry| entry.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "channel_credentials.deleted",
            "channel_credentials.saved",
            "channel_credentials.saved"
        ]
    );
    assert!(!format!("{audit:?}").contains(DEFAULT_AUTH_TOKEN));

    stack.shutdown().await;
    simulator.shutdown().await.unwrap();
}
