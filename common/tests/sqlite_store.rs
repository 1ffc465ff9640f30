//! The embedded SQLite store: every entity round-trips, the batch semantics hold, migrations
//! are applied once and a newer schema is refused, and data survives a reopen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::store::sqlite::{SCHEMA_VERSION, SqliteStore};
use common::store::{
    ApiKeyRecord, AuditEntry, Brand, BrandStatus, BusinessInfoRecord, ChannelCredentials, Claim, NewMessage,
    NumberStatus, Plan, ProviderKind, SenderKind, SenderNumber, StatusUpdate, Store, StoreError, Suppression,
    SuppressionReason, Tenant, TenantStatus,
};
use common::{CampaignId, Channel, MessageId, MessageStatus, PhoneNumber, Priority, TenantId};
use serde_json::json;
use time::OffsetDateTime;

/// A timestamp `ms` milliseconds after the epoch (the store keeps milliseconds).
fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn tid(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

fn mid(raw: &str) -> MessageId {
    MessageId::parse(raw).unwrap()
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("store.db")
}

async fn open_new() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).await.unwrap();
    (dir, store)
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap()
}

fn migration_files() -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join("sqlite");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|ext| ext == "sql")
        })
        .count()
}

fn tenant(id: &str, is_demo: bool, created_ms: i64) -> Tenant {
    Tenant {
        id: tid(id),
        name: format!("Tenant {id}"),
        is_demo,
        status: TenantStatus::Active,
        plan_id: Some("starter".to_owned()),
        created_by: is_demo.then(|| "platform".to_owned()),
        created_at: at(created_ms),
    }
}

fn new_message(tenant: &str, id: &str, accepted_ms: i64) -> NewMessage {
    NewMessage {
        tenant_id: tid(tenant),
        message_id: mid(id),
        campaign_id: Some(CampaignId::parse("spring-sale").unwrap()),
        channel: Channel::Sms,
        recipient: "+14155550100".to_owned(),
        priority: Priority::Marketing,
        segments: 2,
        accepted_at: at(accepted_ms),
    }
}

fn update(tenant: &str, id: &str, status: MessageStatus, ms: i64, provider_id: Option<&str>) -> StatusUpdate {
    StatusUpdate {
        tenant_id: tid(tenant),
        message_id: mid(id),
        status,
        at: at(ms),
        reason: None,
        provider_message_id: provider_id.map(str::to_owned),
    }
}

fn api_key(tenant: &str, key_id: &str, hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: key_id.to_owned(),
        tenant_id: tid(tenant),
        secret_hash: hash.to_owned(),
        created_at: at(T0),
        revoked_at: None,
    }
}

fn sender_number(tenant: &str, number: &str) -> SenderNumber {
    SenderNumber {
        tenant_id: tid(tenant),
        number: PhoneNumber::parse(number).unwrap(),
        kind: SenderKind::LongCode,
        status: NumberStatus::Active,
        twilio_sid: Some("PN123".to_owned()),
        rate_per_second: Some(1.5),
        created_at: at(T0),
    }
}

fn credentials(tenant: &str, channel: Channel) -> ChannelCredentials {
    ChannelCredentials {
        tenant_id: tid(tenant),
        channel,
        provider: ProviderKind::Twilio,
        settings: json!({"account_sid": "AC123"}),
        key_id: "k1".to_owned(),
        sealed_secrets: vec![0, 1, 2, 255],
        is_verified: true,
        verification_error: None,
        updated_at: at(T0),
    }
}

fn suppression(tenant: &str, address: &str) -> Suppression {
    Suppression {
        tenant_id: tid(tenant),
        address: address.to_owned(),
        reason: SuppressionReason::OptOut,
        source: Some("STOP".to_owned()),
        created_at: at(T0),
    }
}

fn audit_entry(tenant: Option<&str>, ms: i64, action: &str) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant.map(tid),
        at: at(ms),
        actor: "key_1".to_owned(),
        action: action.to_owned(),
        detail: json!({"n": ms}),
    }
}

// ---------------------------------------------------------------------------------------------
// Migrations and durability.

#[tokio::test]
async fn open_creates_the_file_and_applies_every_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists());
    assert_eq!(user_version(&path), i64::try_from(migration_files()).unwrap());
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    drop(store);
}

#[tokio::test]
async fn open_on_an_existing_empty_file_applies_the_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::File::create(&path).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
}

#[tokio::test]
async fn reopen_keeps_the_data_and_does_not_reapply_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
        assert_eq!(
            store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap(),
            vec![Claim::New]
        );
        let applied = store
            .apply_status(&[update("acme", "m1", MessageStatus::Sent, T0 + 1, Some("SM1"))])
            .await
            .unwrap();
        assert_eq!(applied, vec![true]);
        assert_eq!(
            store.add_usage(&tid("acme"), Channel::Sms, "2026-01", 5).await.unwrap(),
            5
        );
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(
        store.tenant(&tid("acme")).await.unwrap(),
        Some(tenant("acme", false, T0))
    );
    let message = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(message.status, MessageStatus::Sent);
    assert_eq!(message.history.len(), 2);
    assert_eq!(store.usage(&tid("acme"), Channel::Sms, "2026-01").await.unwrap(), 5);
    assert_eq!(
        store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap(),
        vec![Claim::Existing(MessageStatus::Sent)]
    );
    // And a third open, on a database that is already current.
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(store.tenant(&tid("acme")).await.unwrap().is_some());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    match SqliteStore::open(&path).await {
        Err(StoreError::Invalid(message)) => {
            assert_eq!(
                message,
                format!("database schema version 999 is newer than this build ({SCHEMA_VERSION})")
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn undecodable_stored_values_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE tenants SET status = 'weird' WHERE id = 'acme'", [])
            .unwrap();
    }
    assert!(matches!(store.tenant(&tid("acme")).await, Err(StoreError::Invalid(_))));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE tenants SET status = 'active', id = 'not an id' WHERE id = 'acme'",
            [],
        )
        .unwrap();
    }
    assert!(matches!(store.demo_tenants_created_before(at(T0 + 1)).await, Ok(v) if v.is_empty()));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE tenants SET is_demo = 1", []).unwrap();
    }
    assert!(matches!(
        store.demo_tenants_created_before(at(T0 + 1)).await,
        Err(StoreError::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Set-up entities.

#[tokio::test]
async fn tenants_round_trip() {
    let (_dir, store) = open_new().await;
    let acme = tenant("acme", false, T0);
    store.create_tenant(&acme).await.unwrap();
    assert_eq!(store.tenant(&tid("acme")).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.tenant(&tid("nobody")).await.unwrap(), None);
    assert!(matches!(store.create_tenant(&acme).await, Err(StoreError::Conflict(_))));

    assert!(
        store
            .set_tenant_status(&tid("acme"), TenantStatus::Suspended)
            .await
            .unwrap()
    );
    assert_eq!(
        store.tenant(&tid("acme")).await.unwrap().unwrap().status,
        TenantStatus::Suspended
    );
    assert!(
        !store
            .set_tenant_status(&tid("nobody"), TenantStatus::Active)
            .await
            .unwrap()
    );

    let old_demo = tenant("demo-old", true, T0 - 10_000);
    let older_demo = tenant("demo-older", true, T0 - 20_000);
    let new_demo = tenant("demo-new", true, T0 + 10_000);
    let old_real = tenant("real-old", false, T0 - 30_000);
    for t in [&old_demo, &older_demo, &new_demo, &old_real] {
        store.create_tenant(t).await.unwrap();
    }
    assert_eq!(
        store.demo_tenants_created_before(at(T0)).await.unwrap(),
        vec![older_demo, old_demo]
    );
}

#[tokio::test]
async fn api_keys_round_trip() {
    let (_dir, store) = open_new().await;
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    store.create_tenant(&tenant("other", false, T0)).await.unwrap();
    let key = api_key("acme", "key_1", "aa11");
    store.create_api_key(&key).await.unwrap();
    assert_eq!(store.api_key_by_hash("aa11").await.unwrap(), Some(key.clone()));
    assert_eq!(store.api_key_by_hash("bb22").await.unwrap(), None);

    // The secret hash is unique; a key for an unknown tenant is refused.
    assert!(matches!(
        store.create_api_key(&api_key("other", "key_2", "aa11")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_api_key(&api_key("nobody", "key_3", "cc33")).await,
        Err(StoreError::Conflict(_))
    ));

    assert!(!store.revoke_api_key(&tid("other"), "key_1", at(T0 + 5)).await.unwrap());
    assert!(!store.revoke_api_key(&tid("acme"), "key_9", at(T0 + 5)).await.unwrap());
    assert!(store.revoke_api_key(&tid("acme"), "key_1", at(T0 + 5)).await.unwrap());
    assert!(store.revoke_api_key(&tid("acme"), "key_1", at(T0 + 9)).await.unwrap());
    let revoked = store.api_key_by_hash("aa11").await.unwrap().unwrap();
    assert_eq!(
        revoked,
        ApiKeyRecord {
            revoked_at: Some(at(T0 + 5)),
            ..key
        }
    );
    let second = ApiKeyRecord {
        created_at: at(T0 + 1),
        ..api_key("acme", "key_4", "dd44")
    };
    store.create_api_key(&second).await.unwrap();
    assert_eq!(store.api_keys(&tid("acme")).await.unwrap(), vec![revoked, second]);
    assert!(store.api_keys(&tid("other")).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_tenant_changes_plan() {
    let (_dir, store) = open_new().await;
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    assert!(store.set_tenant_plan(&tid("acme"), Some("growth")).await.unwrap());
    assert_eq!(
        store.tenant(&tid("acme")).await.unwrap().unwrap().plan_id.as_deref(),
        Some("growth")
    );
    assert!(store.set_tenant_plan(&tid("acme"), None).await.unwrap());
    assert_eq!(store.tenant(&tid("acme")).await.unwrap().unwrap().plan_id, None);
    assert!(!store.set_tenant_plan(&tid("nobody"), None).await.unwrap());
}

#[tokio::test]
async fn business_info_round_trip() {
    let (_dir, store) = open_new().await;
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    assert_eq!(store.business_info(&tid("acme")).await.unwrap(), None);
    let first = BusinessInfoRecord {
        tenant_id: tid("acme"),
        data: json!({"legal_name": "Acme Inc", "ein": "12-3456789", "nested": {"list": [1, 2.5, null, true]}}),
        updated_at: at(T0),
    };
    store.put_business_info(&first).await.unwrap();
    assert_eq!(store.business_info(&tid("acme")).await.unwrap(), Some(first));
    let second = BusinessInfoRecord {
        tenant_id: tid("acme"),
        data: json!({"legal_name": "Acme Corporation"}),
        updated_at: at(T0 + 1_000),
    };
    store.put_business_info(&second).await.unwrap();
    assert_eq!(store.business_info(&tid("acme")).await.unwrap(), Some(second));
}

#[tokio::test]
async fn brand_round_trip() {
    let (_dir, store) = open_new().await;
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    assert_eq!(store.brand(&tid("acme")).await.unwrap(), None);
    let mut brand = Brand {
        tenant_id: tid("acme"),
        status: BrandStatus::Draft,
        status_reason: None,
        trust_score: None,
        workflow_step: "customer_profile".to_owned(),
        workflow_attempts: 0,
        twilio_sids: BTreeMap::new(),
        updated_at: at(T0),
        approved_at: None,
    };
    store.put_brand(&brand).await.unwrap();
    assert_eq!(store.brand(&tid("acme")).await.unwrap(), Some(brand.clone()));

    brand.status = BrandStatus::InReview;
    brand.status_reason = Some("awaiting vetting".to_owned());
    brand.trust_score = Some(75);
    brand.workflow_step = "campaign".to_owned();
    brand.workflow_attempts = 3;
    brand.twilio_sids = BTreeMap::from([
        ("customer_profile".to_owned(), "BU123".to_owned()),
        ("brand".to_owned(), "BN456".to_owned()),
    ]);
    brand.updated_at = at(T0 + 1);
    brand.approved_at = Some(at(T0 + 2));
    store.put_brand(&brand).await.unwrap();
    assert_eq!(store.brand(&tid("acme")).await.unwrap(), Some(brand));
}

#[tokio::test]
async fn onboarding_workflows_are_scheduled_with_their_brand() {
    let (_dir, store) = open_new().await;
    for id in ["acme", "beta", "gamma"] {
        store.create_tenant(&tenant(id, false, T0)).await.unwrap();
    }
    let brand = |id: &str, step: &str| Brand {
        tenant_id: tid(id),
        status: BrandStatus::Draft,
        status_reason: None,
        trust_score: None,
        workflow_step: step.to_owned(),
        workflow_attempts: 0,
        twilio_sids: BTreeMap::new(),
        updated_at: at(T0),
        approved_at: None,
    };
    assert_eq!(store.workflow_due(&tid("acme")).await.unwrap(), None);
    store
        .put_workflow(&brand("acme", "subaccount"), Some(at(T0 + 20)))
        .await
        .unwrap();
    store
        .put_workflow(&brand("beta", "brand"), Some(at(T0 + 10)))
        .await
        .unwrap();
    store.put_workflow(&brand("gamma", "ready"), None).await.unwrap();
    assert_eq!(store.brand(&tid("beta")).await.unwrap(), Some(brand("beta", "brand")));
    assert_eq!(store.workflow_due(&tid("acme")).await.unwrap(), Some(at(T0 + 20)));
    assert_eq!(store.workflow_due(&tid("gamma")).await.unwrap(), None);

    // Due at `now` or before, the longest waiting first, within the limit.
    assert!(store.workflows_due(at(T0 + 9), 10).await.unwrap().is_empty());
    assert_eq!(
        store.workflows_due(at(T0 + 20), 10).await.unwrap(),
        vec![tid("beta"), tid("acme")]
    );
    assert_eq!(store.workflows_due(at(T0 + 20), 1).await.unwrap(), vec![tid("beta")]);

    // put_brand keeps the schedule; put_workflow replaces it.
    let mut moved = brand("acme", "customer_profile");
    moved.workflow_attempts = 2;
    store.put_brand(&moved).await.unwrap();
    assert_eq!(store.workflow_due(&tid("acme")).await.unwrap(), Some(at(T0 + 20)));
    store.put_workflow(&moved, None).await.unwrap();
    assert_eq!(store.workflows_due(at(T0 + 100), 10).await.unwrap(), vec![tid("beta")]);
    assert_eq!(store.brand(&tid("acme")).await.unwrap(), Some(moved));

    // Deleting the tenant removes its schedule with the brand.
    assert!(store.delete_tenant(&tid("beta")).await.unwrap());
    assert!(store.workflows_due(at(T0 + 100), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sender_numbers_round_trip_and_belong_to_one_tenant() {
    let (_dir, store) = open_new().await;
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    store.create_tenant(&tenant("other", false, T0)).await.unwrap();
    assert!(store.sender_numbers(&tid("acme")).await.unwrap().is_empty());

    let first = sender_number("acme", "+14155550100");
    let second = SenderNumber {
        kind: SenderKind::TollFree,
        status: NumberStatus::Provisioning,
        twilio_sid: None,
        rate_per_second: None,
        created_at: at(T0 + 1),
        ..sender_number("acme", "+18005550100")
    };
    store.put_sender_number(&second).await.unwrap();
    store.put_sender_number(&first).await.unwrap();
    assert_eq!(
        store.sender_numbers(&tid("acme")).await.unwrap(),
        vec![first.clone(), second.clone()]
    );

    // Replacing one's own number is fine.
    let retired = SenderNumber {
        status: NumberStatus::Retired,
        ..first.clone()
    };
    store.put_sender_number(&retired).await.unwrap();
    assert_eq!(
        store.sender_numbers(&tid("acme")).await.unwrap(),
        vec![retired.clone(), second.clone()]
    );

    // Another tenant cannot take it.
    match store.put_sender_number(&sender_number("other", "+14155550100")).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("+14155550100"), "{message}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(store.sender_numbers(&tid("other")).await.unwrap().is_empty());
    assert_eq!(store.sender_numbers(&tid("acme")).await.unwrap(), vec![retired, second]);
}

#[tokio::test]
async fn credentials_round_trip() {
    let (_dir, store) = open_new().await;
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    assert_eq!(store.credentials(&tid("acme"), Channel::Sms).await.unwrap(), None);

    let sms = credentials("acme", Channel::Sms);
    let email = ChannelCredentials {
        provider: ProviderKind::Ses,
        settings: json!({"region": "us-east-1", "configuration_set": "engage"}),
        is_verified: false,
        verification_error: Some("bad signature".to_owned()),
        ..credentials("acme", Channel::Email)
    };
    store.put_credentials(&sms).await.unwrap();
    store.put_credentials(&email).await.unwrap();
    assert_eq!(
        store.credentials(&tid("acme"), Channel::Sms).await.unwrap(),
        Some(sms.clone())
    );
    assert_eq!(
        store.credentials(&tid("acme"), Channel::Email).await.unwrap(),
        Some(email)
    );
    assert_eq!(store.credentials(&tid("acme"), Channel::Whatsapp).await.unwrap(), None);

    let rotated = ChannelCredentials {
        key_id: "k2".to_owned(),
        sealed_secrets: vec![9; 64],
        updated_at: at(T0 + 1),
        ..sms
    };
    store.put_credentials(&rotated).await.unwrap();
    assert_eq!(
        store.credentials(&tid("acme"), Channel::Sms).await.unwrap(),
        Some(rotated)
    );

    assert!(store.delete_credentials(&tid("acme"), Channel::Sms).await.unwrap());
    assert!(!store.delete_credentials(&tid("acme"), Channel::Sms).await.unwrap());
    assert_eq!(store.credentials(&tid("acme"), Channel::Sms).await.unwrap(), None);
    assert!(store.credentials(&tid("acme"), Channel::Email).await.unwrap().is_some());
}

#[tokio::test]
async fn credentials_are_found_by_twilio_account() {
    let (_dir, store) = open_new().await;
    for name in ["acme", "beta"] {
        store.create_tenant(&tenant(name, false, T0)).await.unwrap();
    }
    let shared = json!({"account_sid": "AC1"});
    let acme_sms = ChannelCredentials {
        settings: shared.clone(),
        ..credentials("acme", Channel::Sms)
    };
    let acme_whatsapp = ChannelCredentials {
        settings: shared,
        ..credentials("acme", Channel::Whatsapp)
    };
    let beta_sms = ChannelCredentials {
        settings: json!({"account_sid": "AC2"}),
        ..credentials("beta", Channel::Sms)
    };
    for row in [&acme_sms, &acme_whatsapp, &beta_sms] {
        store.put_credentials(row).await.unwrap();
    }
    let mut found = store.credentials_by_account("AC1").await.unwrap();
    found.sort_by_key(|row| row.channel);
    assert_eq!(found, vec![acme_sms, acme_whatsapp]);
    assert_eq!(store.credentials_by_account("AC2").await.unwrap(), vec![beta_sms]);
    assert!(store.credentials_by_account("AC3").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_last_inbound_time_only_moves_forward() {
    let (_dir, store) = open_new().await;
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    let (acme, contact) = (tid("acme"), "whatsapp:+14155550100");
    assert_eq!(store.last_inbound(&acme, contact).await.unwrap(), None);
    store.record_inbound(&acme, contact, at(T0 + 10)).await.unwrap();
    store.record_inbound(&acme, contact, at(T0 + 5)).await.unwrap();
    assert_eq!(store.last_inbound(&acme, contact).await.unwrap(), Some(at(T0 + 10)));
    store.record_inbound(&acme, contact, at(T0 + 20)).await.unwrap();
    assert_eq!(store.last_inbound(&acme, contact).await.unwrap(), Some(at(T0 + 20)));
    assert_eq!(store.last_inbound(&acme, "whatsapp:+14155550199").await.unwrap(), None);
    assert!(store.delete_tenant(&acme).await.unwrap());
    assert_eq!(store.last_inbound(&acme, contact).await.unwrap(), None);
}

#[tokio::test]
async fn plans_round_trip() {
    let (_dir, store) = open_new().await;
    assert_eq!(store.plan("starter").await.unwrap(), None);
    let plan = Plan {
        id: "starter".to_owned(),
        name: "Starter".to_owned(),
        monthly_quota: BTreeMap::from([(Channel::Sms, 10_000), (Channel::Email, u64::MAX / 2)]),
    };
    store.put_plan(&plan).await.unwrap();
    assert_eq!(store.plan("starter").await.unwrap(), Some(plan));
    let replaced = Plan {
        id: "starter".to_owned(),
        name: "Starter v2".to_owned(),
        monthly_quota: BTreeMap::new(),
    };
    store.put_plan(&replaced).await.unwrap();
    assert_eq!(store.plan("starter").await.unwrap(), Some(replaced));
}

#[tokio::test]
async fn usage_adds_releases_and_clamps_at_zero() {
    let (_dir, store) = open_new().await;
    let acme = tid("acme");
    assert_eq!(store.usage(&acme, Channel::Sms, "2026-01").await.unwrap(), 0);
    assert_eq!(store.add_usage(&acme, Channel::Sms, "2026-01", 3).await.unwrap(), 3);
    assert_eq!(store.add_usage(&acme, Channel::Sms, "2026-01", 4).await.unwrap(), 7);
    assert_eq!(store.add_usage(&acme, Channel::Sms, "2026-01", -2).await.unwrap(), 5);
    assert_eq!(store.add_usage(&acme, Channel::Sms, "2026-01", -100).await.unwrap(), 0);
    assert_eq!(store.usage(&acme, Channel::Sms, "2026-01").await.unwrap(), 0);
    assert_eq!(store.add_usage(&acme, Channel::Sms, "2026-01", 1).await.unwrap(), 1);
    // A release with no usage yet stays at zero.
    assert_eq!(store.add_usage(&acme, Channel::Email, "2026-01", -5).await.unwrap(), 0);
    // Counters are per channel, period and tenant.
    assert_eq!(store.add_usage(&acme, Channel::Sms, "2026-02", 10).await.unwrap(), 10);
    assert_eq!(
        store
            .add_usage(&tid("other"), Channel::Sms, "2026-01", 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.usage(&acme, Channel::Sms, "2026-01").await.unwrap(), 1);
    assert_eq!(store.usage(&acme, Channel::Whatsapp, "2026-01").await.unwrap(), 0);
}

#[tokio::test]
async fn suppressions_round_trip() {
    let (_dir, store) = open_new().await;
    let acme = tid("acme");
    let stop = suppression("acme", "+14155550100");
    let bounce = Suppression {
        reason: SuppressionReason::Bounce,
        source: None,
        ..suppression("acme", "ana@example.com")
    };
    store.suppress(&stop).await.unwrap();
    store.suppress(&bounce).await.unwrap();
    store.suppress(&suppression("other", "+14155550199")).await.unwrap();
    assert_eq!(
        store.suppression(&acme, "+14155550100").await.unwrap(),
        Some(stop.clone())
    );
    assert_eq!(store.suppression(&acme, "ana@example.com").await.unwrap(), Some(bounce));
    assert_eq!(store.suppression(&acme, "+14155550199").await.unwrap(), None);

    let replaced = Suppression {
        reason: SuppressionReason::Manual,
        created_at: at(T0 + 1),
        ..stop
    };
    store.suppress(&replaced).await.unwrap();
    assert_eq!(store.suppression(&acme, "+14155550100").await.unwrap(), Some(replaced));

    let asked: Vec<String> = [
        "ana@example.com",
        "+14155550101",
        "+14155550100",
        "ana@example.com",
        "+14155550199",
    ]
    .map(str::to_owned)
    .to_vec();
    assert_eq!(
        store.suppressed_among(&acme, &asked).await.unwrap(),
        vec!["ana@example.com".to_owned(), "+14155550100".to_owned()]
    );
    assert!(store.suppressed_among(&acme, &[]).await.unwrap().is_empty());

    assert!(store.unsuppress(&acme, "+14155550100").await.unwrap());
    assert!(!store.unsuppress(&acme, "+14155550100").await.unwrap());
    assert_eq!(store.suppression(&acme, "+14155550100").await.unwrap(), None);
    assert_eq!(
        store.suppressed_among(&acme, &asked).await.unwrap(),
        vec!["ana@example.com".to_owned()]
    );
}

// ---------------------------------------------------------------------------------------------
// Messages.

#[tokio::test]
async fn claims_are_insert_if_absent() {
    let (_dir, store) = open_new().await;
    assert!(store.claim_messages(&[]).await.unwrap().is_empty());
    let m1 = new_message("acme", "m1", T0);
    let m2 = NewMessage {
        campaign_id: None,
        channel: Channel::Email,
        recipient: "ana@example.com".to_owned(),
        priority: Priority::Transactional,
        segments: 1,
        ..new_message("acme", "m2", T0 + 1)
    };
    assert_eq!(
        store.claim_messages(&[m1.clone(), m2.clone()]).await.unwrap(),
        vec![Claim::New, Claim::New]
    );

    let record = store.message(&tid("acme"), &mid("m2")).await.unwrap().unwrap();
    assert_eq!(record.tenant_id, tid("acme"));
    assert_eq!(record.message_id, mid("m2"));
    assert_eq!(record.campaign_id, None);
    assert_eq!(record.channel, Channel::Email);
    assert_eq!(record.recipient, "ana@example.com");
    assert_eq!(record.priority, Priority::Transactional);
    assert_eq!(record.segments, 1);
    assert_eq!(record.status, MessageStatus::Queued);
    assert_eq!(record.reason, None);
    assert_eq!(record.provider_message_id, None);
    assert_eq!(record.accepted_at, at(T0 + 1));
    assert_eq!(record.updated_at, at(T0 + 1));
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].status, MessageStatus::Queued);
    assert_eq!(record.history[0].at, at(T0 + 1));
    assert_eq!(record.history[0].reason, None);
    let record = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(record.campaign_id, Some(CampaignId::parse("spring-sale").unwrap()));
    assert_eq!(record.segments, 2);

    // A redelivery finds them, in their current status; a new one in the same batch is new.
    store
        .apply_status(&[update("acme", "m1", MessageStatus::Sent, T0 + 5, Some("SM1"))])
        .await
        .unwrap();
    let m3 = new_message("acme", "m3", T0 + 2);
    assert_eq!(
        store.claim_messages(&[m1, m3, m2]).await.unwrap(),
        vec![
            Claim::Existing(MessageStatus::Sent),
            Claim::New,
            Claim::Existing(MessageStatus::Queued)
        ]
    );
    // The same id under another tenant is another message.
    assert_eq!(
        store.claim_messages(&[new_message("other", "m1", T0)]).await.unwrap(),
        vec![Claim::New]
    );
    assert_eq!(store.message(&tid("acme"), &mid("nope")).await.unwrap(), None);
}

#[tokio::test]
async fn duplicates_within_a_batch_are_claimed_once() {
    let (_dir, store) = open_new().await;
    let m = new_message("acme", "dup", T0);
    let later = NewMessage {
        accepted_at: at(T0 + 9),
        ..m.clone()
    };
    assert_eq!(
        store
            .claim_messages(&[m.clone(), new_message("acme", "x", T0), later, m])
            .await
            .unwrap(),
        vec![
            Claim::New,
            Claim::New,
            Claim::Existing(MessageStatus::Queued),
            Claim::Existing(MessageStatus::Queued)
        ]
    );
    let record = store.message(&tid("acme"), &mid("dup")).await.unwrap().unwrap();
    assert_eq!(record.accepted_at, at(T0));
    assert_eq!(record.history.len(), 1);
}

#[tokio::test]
async fn status_only_moves_forward() {
    let (_dir, store) = open_new().await;
    store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap();

    let applied = store
        .apply_status(&[
            update("acme", "m1", MessageStatus::Sent, T0 + 1, Some("SM1")),
            update("acme", "m1", MessageStatus::Delivered, T0 + 2, None),
            // A late `sent` and a duplicate `delivered`: no-ops.
            update("acme", "m1", MessageStatus::Sent, T0 + 3, Some("SM1")),
            update("acme", "m1", MessageStatus::Delivered, T0 + 4, None),
            // Unknown messages are no-ops too, not errors.
            update("acme", "ghost", MessageStatus::Sent, T0 + 5, Some("SM9")),
            update("other", "m1", MessageStatus::Sent, T0 + 5, None),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, false, false, false, false]);

    let record = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(record.status, MessageStatus::Delivered);
    assert_eq!(
        record.provider_message_id.as_deref(),
        Some("SM1"),
        "kept when an update has none"
    );
    assert_eq!(record.updated_at, at(T0 + 2));

    // A failure after delivery is refused, in a later batch too.
    let mut failed = update("acme", "m1", MessageStatus::Failed, T0 + 6, None);
    failed.reason = Some("30003".to_owned());
    assert_eq!(store.apply_status(&[failed]).await.unwrap(), vec![false]);
    let record = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(record.status, MessageStatus::Delivered);
    assert_eq!(record.reason, None);
    let history: Vec<_> = record.history.iter().map(|change| (change.status, change.at)).collect();
    assert_eq!(
        history,
        vec![
            (MessageStatus::Queued, at(T0)),
            (MessageStatus::Sent, at(T0 + 1)),
            (MessageStatus::Delivered, at(T0 + 2)),
        ]
    );
    assert!(store.apply_status(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn failures_record_their_reason_and_are_terminal() {
    let (_dir, store) = open_new().await;
    store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap();
    let mut failed = update("acme", "m1", MessageStatus::Undelivered, T0 + 2, Some("SM7"));
    failed.reason = Some("30005".to_owned());
    let applied = store
        .apply_status(&[
            update("acme", "m1", MessageStatus::Unknown, T0 + 1, None),
            failed,
            update("acme", "m1", MessageStatus::Delivered, T0 + 3, None),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, false]);
    let record = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(record.status, MessageStatus::Undelivered);
    assert_eq!(record.reason.as_deref(), Some("30005"));
    assert_eq!(record.provider_message_id.as_deref(), Some("SM7"));
    let history: Vec<_> = record.history.iter().map(|c| (c.status, c.reason.clone())).collect();
    assert_eq!(
        history,
        vec![
            (MessageStatus::Queued, None),
            (MessageStatus::Unknown, None),
            (MessageStatus::Undelivered, Some("30005".to_owned())),
        ]
    );
    assert_eq!(
        store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap(),
        vec![Claim::Existing(MessageStatus::Undelivered)]
    );
}

#[tokio::test]
async fn provider_ids_lead_back_to_their_message() {
    let (_dir, store) = open_new().await;
    store
        .claim_messages(&[new_message("acme", "m1", T0), new_message("other", "m2", T0)])
        .await
        .unwrap();
    assert_eq!(store.message_by_provider_id("SM1").await.unwrap(), None);
    store
        .apply_status(&[
            update("acme", "m1", MessageStatus::Sent, T0 + 1, Some("SM1")),
            update("other", "m2", MessageStatus::Sent, T0 + 1, Some("SM2")),
            // Refused: its provider id is not indexed.
            update("acme", "m1", MessageStatus::Sent, T0 + 2, Some("SM-late")),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.message_by_provider_id("SM1").await.unwrap(),
        Some((tid("acme"), mid("m1")))
    );
    assert_eq!(
        store.message_by_provider_id("SM2").await.unwrap(),
        Some((tid("other"), mid("m2")))
    );
    assert_eq!(store.message_by_provider_id("SM-late").await.unwrap(), None);
}

#[tokio::test]
async fn concurrent_claims_give_each_message_one_owner() {
    let (_dir, store) = open_new().await;
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for worker in 0..8_i64 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let batch: Vec<_> = (0..50)
                .map(|i| new_message("acme", &format!("m{i}"), T0 + worker))
                .collect();
            store.claim_messages(&batch).await.unwrap()
        }));
    }
    let mut new_per_message = [0_usize; 50];
    for task in tasks {
        for (i, claim) in task.await.unwrap().into_iter().enumerate() {
            if claim == Claim::New {
                new_per_message[i] += 1;
            }
        }
    }
    assert!(new_per_message.iter().all(|&n| n == 1), "{new_per_message:?}");
}

// ---------------------------------------------------------------------------------------------
// Audit and deletion.

#[tokio::test]
async fn audit_is_listed_newest_first() {
    let (_dir, store) = open_new().await;
    let acme = tid("acme");
    assert!(store.audit(&acme, 10).await.unwrap().is_empty());
    let first = audit_entry(Some("acme"), T0, "business_info.updated");
    let second = audit_entry(Some("acme"), T0 + 10, "api_key.created");
    let same_time = audit_entry(Some("acme"), T0 + 10, "api_key.revoked");
    let platform = audit_entry(None, T0 + 20, "demo_tenant.deleted");
    let other = audit_entry(Some("other"), T0 + 30, "api_key.created");
    for entry in [&second, &first, &same_time, &platform, &other] {
        store.append_audit(entry).await.unwrap();
    }
    assert_eq!(
        store.audit(&acme, 10).await.unwrap(),
        vec![same_time.clone(), second.clone(), first]
    );
    assert_eq!(store.audit(&acme, 2).await.unwrap(), vec![same_time, second]);
    assert!(store.audit(&acme, 0).await.unwrap().is_empty());
    assert_eq!(store.audit(&tid("other"), usize::MAX).await.unwrap(), vec![other]);
}

/// Fills every table for `id`.
async fn populate(store: &SqliteStore, id: &str) {
    store.create_tenant(&tenant(id, true, T0)).await.unwrap();
    store
        .create_api_key(&api_key(id, "key_1", &format!("hash-{id}")))
        .await
        .unwrap();
    store
        .put_business_info(&BusinessInfoRecord {
            tenant_id: tid(id),
            data: json!({"legal_name": id}),
            updated_at: at(T0),
        })
        .await
        .unwrap();
    store
        .put_brand(&Brand {
            tenant_id: tid(id),
            status: BrandStatus::Approved,
            status_reason: None,
            trust_score: Some(80),
            workflow_step: "done".to_owned(),
            workflow_attempts: 1,
            twilio_sids: BTreeMap::from([("brand".to_owned(), format!("BN-{id}"))]),
            updated_at: at(T0),
            approved_at: Some(at(T0)),
        })
        .await
        .unwrap();
    let number = if id == "acme" { "+14155550100" } else { "+14155550200" };
    store.put_sender_number(&sender_number(id, number)).await.unwrap();
    store.put_credentials(&credentials(id, Channel::Sms)).await.unwrap();
    store.add_usage(&tid(id), Channel::Sms, "2026-01", 7).await.unwrap();
    store.suppress(&suppression(id, "+14155550999")).await.unwrap();
    store.claim_messages(&[new_message(id, "m1", T0)]).await.unwrap();
    store
        .apply_status(&[update(id, "m1", MessageStatus::Sent, T0 + 1, Some(&format!("SM-{id}")))])
        .await
        .unwrap();
    store
        .append_audit(&audit_entry(Some(id), T0, "tenant.created"))
        .await
        .unwrap();
}

fn count_rows(path: &Path, table: &str, tenant_column: &str, tenant: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        &format!("SELECT count(*) FROM {table} WHERE {tenant_column} = ?1"),
        [tenant],
        |row| row.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn deleting_a_tenant_removes_everything_it_owns_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    populate(&store, "acme").await;
    populate(&store, "other").await;
    store
        .append_audit(&audit_entry(None, T0, "platform.thing"))
        .await
        .unwrap();

    let tables = [
        ("tenants", "id"),
        ("api_keys", "tenant_id"),
        ("business_info", "tenant_id"),
        ("brands", "tenant_id"),
        ("sender_numbers", "tenant_id"),
        ("channel_credentials", "tenant_id"),
        ("usage", "tenant_id"),
        ("suppressions", "tenant_id"),
        ("messages", "tenant_id"),
        ("message_status_history", "tenant_id"),
        ("provider_message_ids", "tenant_id"),
        ("audit_log", "tenant_id"),
    ];
    for (table, column) in tables {
        assert!(
            count_rows(&path, table, column, "acme") > 0,
            "{table} has no acme row to delete"
        );
    }

    assert!(store.delete_tenant(&tid("acme")).await.unwrap());
    assert!(!store.delete_tenant(&tid("acme")).await.unwrap());

    for (table, column) in tables {
        assert_eq!(
            count_rows(&path, table, column, "acme"),
            0,
            "{table} still has acme rows"
        );
        assert!(
            count_rows(&path, table, column, "other") > 0,
            "{table} lost other's rows"
        );
    }
    let acme = tid("acme");
    assert_eq!(store.tenant(&acme).await.unwrap(), None);
    assert_eq!(store.api_key_by_hash("hash-acme").await.unwrap(), None);
    assert_eq!(store.message(&acme, &mid("m1")).await.unwrap(), None);
    assert_eq!(store.message_by_provider_id("SM-acme").await.unwrap(), None);
    assert_eq!(store.usage(&acme, Channel::Sms, "2026-01").await.unwrap(), 0);

    // The other tenant is intact, and the freed number can be taken.
    let other = tid("other");
    assert!(store.tenant(&other).await.unwrap().is_some());
    assert!(store.api_key_by_hash("hash-other").await.unwrap().is_some());
    assert!(store.brand(&other).await.unwrap().is_some());
    assert_eq!(
        store.message(&other, &mid("m1")).await.unwrap().unwrap().history.len(),
        2
    );
    assert_eq!(
        store.message_by_provider_id("SM-other").await.unwrap(),
        Some((other.clone(), mid("m1")))
    );
    assert_eq!(store.audit(&other, 10).await.unwrap().len(), 1);
    store
        .put_sender_number(&sender_number("other", "+14155550100"))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let platform: i64 = conn
        .query_row("SELECT count(*) FROM audit_log WHERE tenant_id IS NULL", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(platform, 1);
}

#[tokio::test]
async fn stuck_messages_are_found_by_status_and_age() {
    let (_dir, store) = open_new().await;
    let messages = ["a", "b", "c", "d"].map(|id| new_message("acme", id, T0));
    store.claim_messages(&messages).await.unwrap();
    store
        .apply_status(&[
            update("acme", "a", MessageStatus::Sent, T0 + 10, Some("SMa")),
            update("acme", "b", MessageStatus::Unknown, T0 + 20, None),
            update("acme", "c", MessageStatus::Sent, T0 + 5_000, Some("SMc")),
            update("acme", "d", MessageStatus::Delivered, T0 + 30, Some("SMd")),
        ])
        .await
        .unwrap();
    let stuck = store
        .stuck_messages(&[MessageStatus::Sent, MessageStatus::Unknown], at(T0 + 1_000), 10)
        .await
        .unwrap();
    let ids: Vec<&str> = stuck.iter().map(|record| record.message_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "old enough, in a stuck status");
    let limited = store
        .stuck_messages(&[MessageStatus::Sent, MessageStatus::Unknown], at(T0 + 1_000), 1)
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
}

#[tokio::test]
async fn stuck_messages_finds_statuses_outside_the_reconciliation_index_too() {
    // Only `sent` and `unknown` are indexed; the others are found by a scan, with the same
    // answers.
    let (_dir, store) = open_new().await;
    let messages = ["a", "b", "c", "d"].map(|id| new_message("acme", id, T0));
    store.claim_messages(&messages).await.unwrap();
    store
        .apply_status(&[
            update("acme", "b", MessageStatus::Delivered, T0 + 20, None),
            update("acme", "c", MessageStatus::Delivered, T0 + 10, None),
            update("acme", "d", MessageStatus::Sent, T0 + 5, Some("SMd")),
        ])
        .await
        .unwrap();
    let ids = |records: Vec<common::store::MessageRecord>| -> Vec<String> {
        records
            .iter()
            .map(|record| record.message_id.as_str().to_owned())
            .collect()
    };
    let far = at(T0 + 1_000_000);
    assert_eq!(
        ids(store.stuck_messages(&[MessageStatus::Queued], far, 10).await.unwrap()),
        ["a"]
    );
    assert_eq!(
        ids(store
            .stuck_messages(&[MessageStatus::Delivered], far, 10)
            .await
            .unwrap()),
        ["c", "b"],
        "oldest first"
    );
    assert_eq!(
        ids(store
            .stuck_messages(
                &[MessageStatus::Sent, MessageStatus::Delivered, MessageStatus::Queued],
                far,
                3
            )
            .await
            .unwrap()),
        ["d", "c", "b"],
        "status by status, up to the limit"
    );
    assert!(
        store
            .stuck_messages(&[MessageStatus::Delivered], at(T0 + 10), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .stuck_messages(&[MessageStatus::Read], far, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn every_status_change_follows_the_forward_only_rule() {
    // The store applies the rule in SQL, generated from `MessageStatus::can_advance_to`: it must
    // agree with that function on every pair.
    let (_dir, store) = open_new().await;
    for from in MessageStatus::ALL {
        for to in MessageStatus::ALL {
            let id = format!("{from}-{to}");
            store.claim_messages(&[new_message("acme", &id, T0)]).await.unwrap();
            let mut expected_history = vec![MessageStatus::Queued];
            if from != MessageStatus::Queued {
                let applied = store
                    .apply_status(&[update("acme", &id, from, T0 + 1, None)])
                    .await
                    .unwrap();
                assert_eq!(applied, vec![true], "queued -> {from}");
                expected_history.push(from);
            }
            let mut change = update("acme", &id, to, T0 + 2, Some(&format!("SM-{id}")));
            change.reason = Some(format!("because {to}"));
            let applied = store.apply_status(&[change]).await.unwrap();
            let allowed = from.can_advance_to(to);
            assert_eq!(applied, vec![allowed], "{from} -> {to}");
            if allowed {
                expected_history.push(to);
            }

            let record = store.message(&tid("acme"), &mid(&id)).await.unwrap().unwrap();
            assert_eq!(record.status, from.advance(to), "{from} -> {to}");
            let history: Vec<MessageStatus> = record.history.iter().map(|change| change.status).collect();
            assert_eq!(history, expected_history, "{from} -> {to}");
            let provider = store.message_by_provider_id(&format!("SM-{id}")).await.unwrap();
            assert_eq!(provider.is_some(), allowed, "{from} -> {to}: provider id indexed");
            if allowed {
                assert_eq!(record.reason, Some(format!("because {to}")));
                assert_eq!(record.updated_at, at(T0 + 2));
            }
        }
    }
}

#[tokio::test]
async fn history_keeps_every_reason_exactly() {
    let (_dir, store) = open_new().await;
    store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap();
    let reasons = [
        "30003",
        "quote \" backslash \\ slash / comma , bracket ] brace }",
        "line\nbreak\ttab\u{0}nul",
        "ünïcödé ✓ 😀",
        "",
    ];
    let statuses = [
        MessageStatus::Unknown,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
    ];
    for (n, status) in statuses.into_iter().enumerate() {
        let mut change = update("acme", "m1", status, T0 + 1 + n as i64, None);
        change.reason = Some(reasons[n].to_owned());
        assert_eq!(store.apply_status(&[change]).await.unwrap(), vec![true]);
    }
    // A refused change leaves no trace.
    let mut refused = update("acme", "m1", MessageStatus::Failed, T0 + 9, None);
    refused.reason = Some(reasons[4].to_owned());
    assert_eq!(store.apply_status(&[refused]).await.unwrap(), vec![false]);

    let record = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    let mut expected = vec![common::store::StatusChange {
        status: MessageStatus::Queued,
        at: at(T0),
        reason: None,
    }];
    for (n, status) in statuses.into_iter().enumerate() {
        expected.push(common::store::StatusChange {
            status,
            at: at(T0 + 1 + n as i64),
            reason: Some(reasons[n].to_owned()),
        });
    }
    assert_eq!(record.history, expected);
    assert_eq!(record.reason.as_deref(), Some(reasons[3]));
}

#[tokio::test]
async fn the_history_view_keeps_the_version_2_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).await.unwrap();
    store.claim_messages(&[new_message("acme", "m1", T0)]).await.unwrap();
    let mut failed = update("acme", "m1", MessageStatus::Failed, T0 + 2, Some("SM1"));
    failed.reason = Some("30005".to_owned());
    store
        .apply_status(&[update("acme", "m1", MessageStatus::Sent, T0 + 1, None), failed])
        .await
        .unwrap();
    assert_eq!(
        history_rows(&path),
        vec![
            ("acme".to_owned(), "m1".to_owned(), 0, "queued".to_owned(), T0, None),
            ("acme".to_owned(), "m1".to_owned(), 1, "sent".to_owned(), T0 + 1, None),
            (
                "acme".to_owned(),
                "m1".to_owned(),
                2,
                "failed".to_owned(),
                T0 + 2,
                Some("30005".to_owned())
            ),
        ]
    );
}

/// A row of message_status_history: tenant, message, seq, status, at, reason.
type HistoryRow = (String, String, i64, String, i64, Option<String>);

fn history_rows(path: &Path) -> Vec<HistoryRow> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT tenant_id, message_id, seq, status, at, reason FROM message_status_history \
             ORDER BY tenant_id, message_id, seq",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Migrating a version 2 database.

/// The statements the version 2 store wrote messages with, verbatim.
mod v2 {
    pub const INSERT_MESSAGE: &str = "INSERT INTO messages (tenant_id, message_id, campaign_id, channel, recipient, \
                                      priority, segments, status, reason, provider_message_id, accepted_at, \
                                      updated_at, last_seq) \
                                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', NULL, NULL, ?8, ?8, 0) \
                                      ON CONFLICT (tenant_id, message_id) DO NOTHING";
    pub const SELECT_MESSAGE_STATUS: &str =
        "SELECT status, last_seq FROM messages WHERE tenant_id = ?1 AND message_id = ?2";
    pub const UPDATE_MESSAGE_STATUS: &str = "UPDATE messages SET status = ?3, reason = ?4, updated_at = ?5, \
                                             provider_message_id = coalesce(?6, provider_message_id), \
                                             last_seq = ?7 WHERE tenant_id = ?1 AND message_id = ?2";
    pub const INSERT_HISTORY: &str = "INSERT INTO message_status_history (tenant_id, message_id, seq, status, at, \
                                      reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub const UPSERT_PROVIDER_ID: &str = "INSERT INTO provider_message_ids (provider_message_id, tenant_id, \
                                          message_id) VALUES (?1, ?2, ?3) ON CONFLICT (provider_message_id) DO \
                                          UPDATE SET tenant_id = excluded.tenant_id, \
                                          message_id = excluded.message_id";
}

/// Creates a version 2 database at `path`, from the version 1 and 2 migrations.
fn create_v2(path: &Path) -> rusqlite::Connection {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join("sqlite");
    let mut conn = rusqlite::Connection::open(path).unwrap();
    for file in ["0001_initial.sql", "0002_stuck_messages.sql"] {
        let sql = std::fs::read_to_string(dir.join(file)).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(&sql).unwrap();
        tx.commit().unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn
}

/// Claims a message the way the version 2 store did.
fn v2_claim(conn: &rusqlite::Connection, message: &NewMessage) {
    let accepted_ms = i64::try_from(message.accepted_at.unix_timestamp_nanos() / 1_000_000).unwrap();
    let inserted = conn
        .execute(
            v2::INSERT_MESSAGE,
            rusqlite::params![
                message.tenant_id.as_str(),
                message.message_id.as_str(),
                message.campaign_id.as_ref().map(CampaignId::as_str),
                message.channel.as_str(),
                message.recipient,
                message.priority.as_str(),
                message.segments,
                accepted_ms,
            ],
        )
        .unwrap();
    assert_eq!(inserted, 1);
    conn.execute(
        v2::INSERT_HISTORY,
        rusqlite::params![
            message.tenant_id.as_str(),
            message.message_id.as_str(),
            0_i64,
            "queued",
            accepted_ms,
            None::<&str>
        ],
    )
    .unwrap();
}

/// Applies a status change the way the version 2 store did (the rule checked in Rust).
fn v2_apply(conn: &rusqlite::Connection, change: &StatusUpdate) -> bool {
    let (tenant, id) = (change.tenant_id.as_str(), change.message_id.as_str());
    let (status, last_seq): (String, i64) = conn
        .query_row(v2::SELECT_MESSAGE_STATUS, [tenant, id], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    if !status.parse::<MessageStatus>().unwrap().can_advance_to(change.status) {
        return false;
    }
    let at_ms = i64::try_from(change.at.unix_timestamp_nanos() / 1_000_000).unwrap();
    let seq = last_seq + 1;
    conn.execute(
        v2::UPDATE_MESSAGE_STATUS,
        rusqlite::params![
            tenant,
            id,
            change.status.as_str(),
            change.reason,
            at_ms,
            change.provider_message_id,
            seq
        ],
    )
    .unwrap();
    conn.execute(
        v2::INSERT_HISTORY,
        rusqlite::params![tenant, id, seq, change.status.as_str(), at_ms, change.reason],
    )
    .unwrap();
    if let Some(provider_id) = &change.provider_message_id {
        conn.execute(v2::UPSERT_PROVIDER_ID, [provider_id.as_str(), tenant, id])
            .unwrap();
    }
    true
}

#[tokio::test]
async fn a_version_2_database_migrates_and_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let odd_reason = "he said \"stop\", then \\ ✓ ]";
    {
        let conn = create_v2(&path);
        conn.execute(
            "INSERT INTO tenants (id, name, is_demo, status, plan_id, created_by, created_at) \
             VALUES ('acme', 'Tenant acme', 0, 'active', 'starter', NULL, ?1)",
            [T0],
        )
        .unwrap();
        // Claimed in an order that differs from both the key order and the acceptance order.
        v2_claim(&conn, &new_message("acme", "m3", T0 + 3));
        v2_claim(&conn, &new_message("acme", "m1", T0 + 1));
        v2_claim(
            &conn,
            &NewMessage {
                campaign_id: None,
                channel: Channel::Email,
                recipient: "ana@example.com".to_owned(),
                priority: Priority::Transactional,
                segments: 1,
                ..new_message("acme", "m2", T0 + 2)
            },
        );
        v2_claim(&conn, &new_message("other", "m1", T0));
        v2_claim(&conn, &new_message("acme", "m4", T0 + 4));
        let mut failed = update("acme", "m3", MessageStatus::Failed, T0 + 30, Some("SM3"));
        failed.reason = Some(odd_reason.to_owned());
        let changes = [
            update("acme", "m1", MessageStatus::Sent, T0 + 10, Some("SM1-old")),
            update("acme", "m1", MessageStatus::Delivered, T0 + 11, Some("SM1")),
            update("acme", "m1", MessageStatus::Sent, T0 + 12, None),
            update("acme", "m3", MessageStatus::Unknown, T0 + 20, None),
            failed,
            update("other", "m1", MessageStatus::Sent, T0 + 5, Some("SM-other")),
        ];
        let applied: Vec<bool> = changes.iter().map(|change| v2_apply(&conn, change)).collect();
        assert_eq!(applied, [true, true, false, true, true, true]);
        // m4 lost its history rows (version 2 never did this; the migration must cope).
        conn.execute("DELETE FROM message_status_history WHERE message_id = 'm4'", [])
            .unwrap();
    }
    let v2_history = history_rows(&path);
    assert_eq!(v2_history.len(), 9);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));

    // Every message reads back as version 2 wrote it.
    let change = |status, ms, reason: Option<&str>| common::store::StatusChange {
        status,
        at: at(ms),
        reason: reason.map(str::to_owned),
    };
    let m1 = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(
        m1,
        common::store::MessageRecord {
            tenant_id: tid("acme"),
            message_id: mid("m1"),
            campaign_id: Some(CampaignId::parse("spring-sale").unwrap()),
            channel: Channel::Sms,
            recipient: "+14155550100".to_owned(),
            priority: Priority::Marketing,
            segments: 2,
            status: MessageStatus::Delivered,
            reason: None,
            provider_message_id: Some("SM1".to_owned()),
            accepted_at: at(T0 + 1),
            updated_at: at(T0 + 11),
            history: vec![
                change(MessageStatus::Queued, T0 + 1, None),
                change(MessageStatus::Sent, T0 + 10, None),
                change(MessageStatus::Delivered, T0 + 11, None),
            ],
        }
    );
    let m2 = store.message(&tid("acme"), &mid("m2")).await.unwrap().unwrap();
    assert_eq!(
        (
            m2.campaign_id,
            m2.channel,
            m2.recipient.as_str(),
            m2.priority,
            m2.segments
        ),
        (None, Channel::Email, "ana@example.com", Priority::Transactional, 1)
    );
    assert_eq!((m2.status, m2.provider_message_id), (MessageStatus::Queued, None));
    assert_eq!(m2.history, vec![change(MessageStatus::Queued, T0 + 2, None)]);
    let m3 = store.message(&tid("acme"), &mid("m3")).await.unwrap().unwrap();
    assert_eq!(
        (
            m3.status,
            m3.reason.as_deref(),
            m3.provider_message_id.as_deref(),
            m3.updated_at
        ),
        (MessageStatus::Failed, Some(odd_reason), Some("SM3"), at(T0 + 30))
    );
    assert_eq!(
        m3.history,
        vec![
            change(MessageStatus::Queued, T0 + 3, None),
            change(MessageStatus::Unknown, T0 + 20, None),
            change(MessageStatus::Failed, T0 + 30, Some(odd_reason)),
        ]
    );
    let other = store.message(&tid("other"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!((other.status, other.history.len()), (MessageStatus::Sent, 2));
    let m4 = store.message(&tid("acme"), &mid("m4")).await.unwrap().unwrap();
    assert_eq!((m4.status, m4.history.len()), (MessageStatus::Queued, 0));

    // The history reads the same through the version 2 table name, now a view.
    assert_eq!(history_rows(&path), v2_history);

    // Provider ids, old ones included, still lead to their message.
    for (provider_id, tenant, id) in [
        ("SM1", "acme", "m1"),
        ("SM1-old", "acme", "m1"),
        ("SM3", "acme", "m3"),
        ("SM-other", "other", "m1"),
    ] {
        assert_eq!(
            store.message_by_provider_id(provider_id).await.unwrap(),
            Some((tid(tenant), mid(id))),
            "{provider_id}"
        );
    }
    // The reconciliation index was rebuilt.
    let stuck = store
        .stuck_messages(&[MessageStatus::Sent, MessageStatus::Unknown], at(T0 + 1_000), 10)
        .await
        .unwrap();
    assert_eq!(stuck.len(), 1);
    assert_eq!(
        (stuck[0].tenant_id.as_str(), stuck[0].message_id.as_str()),
        ("other", "m1")
    );

    // And the migrated messages go on: claims see them, changes follow the rule and extend
    // their history, new messages are claimed next to them.
    assert_eq!(
        store
            .claim_messages(&[
                new_message("acme", "m1", T0),
                new_message("acme", "m5", T0 + 50),
                new_message("acme", "m3", T0),
            ])
            .await
            .unwrap(),
        vec![
            Claim::Existing(MessageStatus::Delivered),
            Claim::New,
            Claim::Existing(MessageStatus::Failed)
        ]
    );
    let applied = store
        .apply_status(&[
            update("acme", "m2", MessageStatus::Sent, T0 + 60, Some("SM2")),
            update("acme", "m4", MessageStatus::Sent, T0 + 61, None),
            update("acme", "m1", MessageStatus::Read, T0 + 62, None),
            update("acme", "m3", MessageStatus::Delivered, T0 + 63, None),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, true, false]);
    let m2 = store.message(&tid("acme"), &mid("m2")).await.unwrap().unwrap();
    assert_eq!(
        m2.history,
        vec![
            change(MessageStatus::Queued, T0 + 2, None),
            change(MessageStatus::Sent, T0 + 60, None)
        ]
    );
    let m4 = store.message(&tid("acme"), &mid("m4")).await.unwrap().unwrap();
    assert_eq!(m4.history, vec![change(MessageStatus::Sent, T0 + 61, None)]);
    let m1 = store.message(&tid("acme"), &mid("m1")).await.unwrap().unwrap();
    assert_eq!(m1.history.len(), 4);
    assert_eq!(
        store.message_by_provider_id("SM2").await.unwrap(),
        Some((tid("acme"), mid("m2")))
    );

    // Reopening does not migrate again.
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(
        store
            .message(&tid("acme"), &mid("m2"))
            .await
            .unwrap()
            .unwrap()
            .history
            .len(),
        2
    );
}
