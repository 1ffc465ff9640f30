//! The store's behaviour: one suite, run against every backend. Each behaviour is an async
//! function taking the store; the `suite!` macro makes one test of it per backend.
//!
//! - SQLite: always, a fresh file per test.
//! - Cassandra: when `ENGAGENINJA_CASSANDRA_CONTACT` names a node (`host:port`; start one with
//!   `.ci/services/cassandra.sh start`, which listens on 127.0.0.1:19042). Each test gets its own
//!   keyspace, dropped at the end. Unset: the tests say why and pass, except under `CI`, where
//!   they fail. A batch's rows are written in unlogged batches per replica (the default, here
//!   of 7 rows so that a test spans several) and, in `cassandra_concurrent`, one request each.
//!
//! What only SQLite has (migrations, file reopen, row counts) is in `sqlite_store.rs`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use common::config::{CassandraSettings, WriteBatching};
use common::store::Consent;
use common::store::SenderProfile;
use common::store::cassandra::CassandraStore;
use common::store::sqlite::SqliteStore;
use common::store::{
    ApiKeyRecord, Brand, BrandStatus, BusinessInfoRecord, ChannelCredentials, Held, HeldMessage, InboundMessage,
    JournalEntry, NewMessage, NumberStatus, Plan, ProviderKind, ScheduleCancel, ScheduledMessage, SenderKind,
    SenderNumber, SenderRegistration, StatusUpdate, Store, StoreError, StoredClaim, Suppression, SuppressionReason,
    TenantSettings, TenantStatus,
};
use common::{CampaignId, Channel, MessageStatus, Priority, TenantId};
use serde_json::json;

mod store_support;

use store_support::*;

/// The variable naming a Cassandra node (`host:port`) for the suite.
const CONTACT_ENV: &str = "ENGAGENINJA_CASSANDRA_CONTACT";

/// A store under test, and what goes with it.
struct Harness {
    store: Arc<dyn Store>,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The Cassandra store whose keyspace is dropped at the end.
    cassandra: Option<CassandraStore>,
}

async fn sqlite() -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data").join("store.db"))
        .await
        .unwrap();
    Some(Harness {
        store: Arc::new(store),
        _dir: Some(dir),
        cassandra: None,
    })
}

/// Settings for a Cassandra store in a keyspace of its own; `None` (after saying why) when no
/// node is configured outside CI.
fn cassandra_settings(batching: WriteBatching) -> Option<CassandraSettings> {
    let Ok(contact) = std::env::var(CONTACT_ENV) else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{CONTACT_ENV} is not set under CI: the store suite must run against Cassandra \
                 (.ci/test starts it with .ci/services/cassandra.sh start)"
            );
        }
        eprintln!(
            "skipping the Cassandra run: {CONTACT_ENV} is not set (start a node with \
             `.ci/services/cassandra.sh start` and export {CONTACT_ENV}=127.0.0.1:19042)"
        );
        return None;
    };
    Some(CassandraSettings {
        contact_points: contact.split(',').map(|c| c.trim().to_owned()).collect(),
        keyspace: format!("enj_test_{}", uuid::Uuid::new_v4().simple()),
        replication_factor: 1,
        request_timeout_ms: 30_000,
        concurrency: 32,
        batching,
        // Small batches, so that a test's writes span several of them.
        batch_rows: 7,
    })
}

async fn cassandra_with(batching: WriteBatching) -> Option<Harness> {
    let settings = cassandra_settings(batching)?;
    let store = CassandraStore::open(&settings).await.unwrap();
    Some(Harness {
        store: Arc::new(store.clone()),
        _dir: None,
        cassandra: Some(store),
    })
}

async fn cassandra() -> Option<Harness> {
    cassandra_with(WriteBatching::ReplicaBatches).await
}

async fn cassandra_concurrent() -> Option<Harness> {
    cassandra_with(WriteBatching::None).await
}

/// Runs `behaviour` on the harness's store in a task of its own, then cleans up (also when it
/// panicked) and passes the panic on.
async fn run<F, Fut>(harness: Option<Harness>, behaviour: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(harness) = harness else { return };
    let outcome = tokio::spawn(behaviour(Arc::clone(&harness.store))).await;
    if let Some(store) = &harness.cassandra {
        store.drop_keyspace().await.unwrap();
    }
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("behaviour task failed: {error}"),
        }
    }
}

/// One test per behaviour in a module named after the backend.
macro_rules! suite {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $name() {
                    super::run(super::$backend().await, super::$name).await;
                }
            )*
        }
    };
}

suite!(sqlite:
    tenants_round_trip,
    api_keys_round_trip,
    a_tenant_changes_plan,
    business_info_round_trip,
    brand_round_trip,
    onboarding_workflows_are_scheduled_with_their_brand,
    sender_numbers_round_trip_and_belong_to_one_tenant,
    credentials_round_trip,
    credentials_are_found_by_twilio_account,
    credential_tenants_are_swept_page_by_page,
    the_last_inbound_time_only_moves_forward,
    an_inbound_message_is_processed_once,
    plans_round_trip,
    usage_adds_releases_and_clamps_at_zero,
    suppressions_round_trip,
    consents_round_trip_and_go_with_their_tenant,
    consent_is_found_per_channel_for_a_batch,
    tenant_settings_default_until_set,
    held_messages_wait_per_campaign_until_released,
    scheduled_messages_wait_until_due_and_cancel_only_before_release,
    inbound_messages_are_listed_newest_first,
    claims_are_written_and_read_back,
    the_claim_journal_keeps_generations_until_trimmed,
    status_only_moves_forward,
    failures_record_their_reason_and_are_terminal,
    held_outcomes_never_lower_a_status_a_callback_raised,
    held_callbacks_up_the_chain_end_at_the_highest_in_any_order,
    audit_is_listed_newest_first,
    stuck_messages_are_found_by_status_and_age,
    stuck_messages_are_sent_first_then_unknown_and_only_those,
    every_status_change_follows_the_forward_only_rule,
    history_keeps_every_reason_exactly,
    campaign_counts_follow_each_message_status,
    deleting_a_tenant_removes_everything_it_owns_and_nothing_else,
);

suite!(cassandra:
    tenants_round_trip,
    api_keys_round_trip,
    a_tenant_changes_plan,
    business_info_round_trip,
    brand_round_trip,
    onboarding_workflows_are_scheduled_with_their_brand,
    sender_numbers_round_trip_and_belong_to_one_tenant,
    credentials_round_trip,
    credentials_are_found_by_twilio_account,
    credential_tenants_are_swept_page_by_page,
    the_last_inbound_time_only_moves_forward,
    an_inbound_message_is_processed_once,
    plans_round_trip,
    usage_adds_releases_and_clamps_at_zero,
    suppressions_round_trip,
    consents_round_trip_and_go_with_their_tenant,
    consent_is_found_per_channel_for_a_batch,
    tenant_settings_default_until_set,
    held_messages_wait_per_campaign_until_released,
    scheduled_messages_wait_until_due_and_cancel_only_before_release,
    inbound_messages_are_listed_newest_first,
    claims_are_written_and_read_back,
    the_claim_journal_keeps_generations_until_trimmed,
    status_only_moves_forward,
    failures_record_their_reason_and_are_terminal,
    held_outcomes_never_lower_a_status_a_callback_raised,
    held_callbacks_up_the_chain_end_at_the_highest_in_any_order,
    audit_is_listed_newest_first,
    stuck_messages_are_found_by_status_and_age,
    stuck_messages_are_sent_first_then_unknown_and_only_those,
    every_status_change_follows_the_forward_only_rule,
    history_keeps_every_reason_exactly,
    campaign_counts_follow_each_message_status,
    deleting_a_tenant_removes_everything_it_owns_and_nothing_else,
);

// The other way of writing a batch's rows, on the behaviours that write them.
suite!(cassandra_concurrent:
    claims_are_written_and_read_back,
    held_outcomes_never_lower_a_status_a_callback_raised,
    held_callbacks_up_the_chain_end_at_the_highest_in_any_order,
    status_only_moves_forward,
    stuck_messages_are_sent_first_then_unknown_and_only_those,
    campaign_counts_follow_each_message_status,
    deleting_a_tenant_removes_everything_it_owns_and_nothing_else,
);

// ---------------------------------------------------------------------------------------------
// Set-up entities.

async fn tenants_round_trip(store: Arc<dyn Store>) {
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

async fn api_keys_round_trip(store: Arc<dyn Store>) {
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

async fn a_tenant_changes_plan(store: Arc<dyn Store>) {
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

async fn business_info_round_trip(store: Arc<dyn Store>) {
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

async fn brand_round_trip(store: Arc<dyn Store>) {
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

async fn onboarding_workflows_are_scheduled_with_their_brand(store: Arc<dyn Store>) {
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

async fn sender_numbers_round_trip_and_belong_to_one_tenant(store: Arc<dyn Store>) {
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    store.create_tenant(&tenant("other", false, T0)).await.unwrap();
    assert!(store.sender_numbers(&tid("acme")).await.unwrap().is_empty());

    let first = sender_number("acme", "+14155550100");
    let second = SenderNumber {
        kind: SenderKind::Whatsapp,
        status: NumberStatus::Provisioning,
        twilio_sid: None,
        rate_per_second: None,
        created_at: at(T0 + 1),
        // A WhatsApp sender's registration comes back as written.
        registration: Some(SenderRegistration {
            waba_id: "102030405060708".to_owned(),
            verification_method: "voice".to_owned(),
            profile: SenderProfile {
                name: "Acme Support".to_owned(),
                websites: vec!["https://acme.example".to_owned()],
                ..SenderProfile::default()
            },
            create_in_flight: true,
            twilio_status: Some("PENDING_VERIFICATION".to_owned()),
            reason: None,
            attempts: 2,
        }),
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

async fn credentials_round_trip(store: Arc<dyn Store>) {
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

async fn credentials_are_found_by_twilio_account(store: Arc<dyn Store>) {
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
    assert_eq!(
        store.credentials_by_account("AC2").await.unwrap(),
        vec![beta_sms.clone()]
    );
    assert!(store.credentials_by_account("AC3").await.unwrap().is_empty());

    // Credentials the provider did not accept never sign a webhook.
    store
        .put_credentials(&ChannelCredentials {
            is_verified: false,
            ..beta_sms
        })
        .await
        .unwrap();
    assert!(store.credentials_by_account("AC2").await.unwrap().is_empty());
}

async fn credential_tenants_are_swept_page_by_page(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for n in 0..7 {
        let name = format!("t{n}");
        store.create_tenant(&tenant(&name, false, T0)).await.unwrap();
        if n != 3 {
            store.put_credentials(&credentials(&name, Channel::Sms)).await.unwrap();
            store
                .put_credentials(&credentials(&name, Channel::Email))
                .await
                .unwrap();
            expected.push(tid(&name));
        }
    }
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = store.credential_tenants(after.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last().cloned() else { break };
        seen.extend(page);
        after = Some(last);
    }
    seen.sort();
    assert_eq!(seen, expected, "every tenant with credentials once, in pages");
}

async fn the_last_inbound_time_only_moves_forward(store: Arc<dyn Store>) {
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

async fn an_inbound_message_is_processed_once(store: Arc<dyn Store>) {
    for name in ["acme", "beta"] {
        store.create_tenant(&tenant(name, false, T0)).await.unwrap();
    }
    let (acme, beta, sid) = (tid("acme"), tid("beta"), "SM00000000000000000000000000000001");
    assert!(!store.event_processed(&acme, sid).await.unwrap());
    store.mark_event_processed(&acme, sid, at(T0)).await.unwrap();
    store.mark_event_processed(&acme, sid, at(T0 + 1)).await.unwrap();
    assert!(store.event_processed(&acme, sid).await.unwrap());
    assert!(!store.event_processed(&beta, sid).await.unwrap());
    assert!(
        !store
            .event_processed(&acme, "SM00000000000000000000000000000002")
            .await
            .unwrap()
    );
}

async fn plans_round_trip(store: Arc<dyn Store>) {
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

async fn usage_adds_releases_and_clamps_at_zero(store: Arc<dyn Store>) {
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

async fn consents_round_trip_and_go_with_their_tenant(store: Arc<dyn Store>) {
    let acme = tid("acme");
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    let sms = Consent {
        tenant_id: acme.clone(),
        recipient: "+14155550100".to_owned(),
        channel: Channel::Sms,
        source: "imported".to_owned(),
        wording: Some("Reply STOP to opt out".to_owned()),
        given_at: at(T0),
    };
    let whatsapp = Consent {
        channel: Channel::Whatsapp,
        wording: None,
        ..sms.clone()
    };
    store.put_consent(&whatsapp).await.unwrap();
    store.put_consent(&sms).await.unwrap();
    store
        .put_consent(&Consent {
            tenant_id: tid("other"),
            ..sms.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store.consents(&acme, "+14155550100").await.unwrap(),
        vec![sms.clone(), whatsapp.clone()]
    );
    assert!(store.consents(&acme, "+14155550199").await.unwrap().is_empty());

    let again = Consent {
        source: "web form".to_owned(),
        given_at: at(T0 + 1),
        ..sms
    };
    store.put_consent(&again).await.unwrap();
    assert_eq!(
        store.consents(&acme, "+14155550100").await.unwrap(),
        vec![again, whatsapp]
    );

    assert!(store.delete_tenant(&acme).await.unwrap());
    assert!(store.consents(&acme, "+14155550100").await.unwrap().is_empty());
    assert_eq!(store.consents(&tid("other"), "+14155550100").await.unwrap().len(), 1);
}

async fn consent_is_found_per_channel_for_a_batch(store: Arc<dyn Store>) {
    let acme = tid("acme");
    let consent = |recipient: &str, channel| Consent {
        tenant_id: acme.clone(),
        recipient: recipient.to_owned(),
        channel,
        source: "web form".to_owned(),
        wording: None,
        given_at: at(T0),
    };
    store.put_consent(&consent("+14155550100", Channel::Sms)).await.unwrap();
    store
        .put_consent(&consent("+14155550101", Channel::Whatsapp))
        .await
        .unwrap();
    store
        .put_consent(&Consent {
            tenant_id: tid("other"),
            ..consent("+14155550102", Channel::Sms)
        })
        .await
        .unwrap();
    // More than one query's worth of addresses, with a repeat.
    let mut batch: Vec<String> = (0..250).map(|n| format!("+1415555{n:04}")).collect();
    batch.push("+14155550100".to_owned());
    let mut sms = store.consented_among(&acme, Channel::Sms, &batch).await.unwrap();
    sms.sort();
    assert_eq!(sms, vec!["+14155550100".to_owned()]);
    assert_eq!(
        store.consented_among(&acme, Channel::Whatsapp, &batch).await.unwrap(),
        vec!["+14155550101".to_owned()]
    );
    assert!(
        store
            .consented_among(&acme, Channel::Email, &batch)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .consented_among(&acme, Channel::Sms, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn tenant_settings_default_until_set(store: Arc<dyn Store>) {
    let acme = tid("acme");
    assert_eq!(store.tenant_settings(&acme).await.unwrap(), None);
    assert!(
        !store
            .set_tenant_settings(&acme, &TenantSettings::default())
            .await
            .unwrap()
    );
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    assert_eq!(
        store.tenant_settings(&acme).await.unwrap(),
        Some(TenantSettings::default())
    );
    let settings = TenantSettings {
        require_consent_for_marketing: true,
        help_reply: Some("Acme: help at acme.example".to_owned()),
        ..TenantSettings::default()
    };
    assert!(store.set_tenant_settings(&acme, &settings).await.unwrap());
    assert_eq!(store.tenant_settings(&acme).await.unwrap(), Some(settings.clone()));
    // The tenant itself is unchanged by its settings.
    assert_eq!(store.tenant(&acme).await.unwrap(), Some(tenant("acme", false, T0)));
}

async fn suppressions_round_trip(store: Arc<dyn Store>) {
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

    // Listed in address order, a page at a time, the tenant's own only.
    let addresses = |page: Vec<Suppression>| page.into_iter().map(|s| s.address).collect::<Vec<_>>();
    assert_eq!(
        addresses(store.suppressions(&acme, None, 10).await.unwrap()),
        vec!["+14155550100".to_owned(), "ana@example.com".to_owned()]
    );
    assert_eq!(
        addresses(store.suppressions(&acme, None, 1).await.unwrap()),
        vec!["+14155550100".to_owned()]
    );
    assert_eq!(
        addresses(store.suppressions(&acme, Some("+14155550100"), 10).await.unwrap()),
        vec!["ana@example.com".to_owned()]
    );
    assert!(
        store
            .suppressions(&acme, Some("ana@example.com"), 10)
            .await
            .unwrap()
            .is_empty()
    );

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

async fn claims_are_written_and_read_back(store: Arc<dyn Store>) {
    assert!(store.claim_messages(&[]).await.unwrap().is_empty());
    assert!(store.claims(&[]).await.unwrap().is_empty());
    let m1 = new_message("acme", "m1", T0);
    let m2 = NewMessage {
        campaign_id: None,
        channel: Channel::Email,
        recipient: "ana@example.com".to_owned(),
        priority: Priority::Transactional,
        segments: 1,
        position: position(3, 41),
        ..new_message("acme", "m2", T0 + 1)
    };
    assert_eq!(
        store.claim_messages(&[m1.clone(), m2.clone()]).await.unwrap(),
        vec![true, true]
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

    // A claim names its record and follows its message's status.
    store
        .apply_status(&[update("acme", "m1", MessageStatus::Sent, T0 + 5, Some("SM1"))])
        .await
        .unwrap();
    // The same id under another tenant is another message.
    assert_eq!(
        store
            .claim_messages(&[new_message("other", "m1", T0 + 7)])
            .await
            .unwrap(),
        vec![true]
    );
    let claims = store
        .claims(&[
            (tid("acme"), mid("m1")),
            (tid("acme"), mid("nope")),
            (tid("acme"), mid("m2")),
            (tid("other"), mid("m1")),
        ])
        .await
        .unwrap();
    let claim = |position, status, accepted| {
        Some(StoredClaim {
            position: Some(position),
            status,
            accepted_at: at(accepted),
        })
    };
    assert_eq!(
        claims,
        vec![
            claim(m1.position, MessageStatus::Sent, T0),
            None,
            claim(position(3, 41), MessageStatus::Queued, T0 + 1),
            claim(m1.position, MessageStatus::Queued, T0 + 7),
        ]
    );
    assert_eq!(store.message(&tid("acme"), &mid("nope")).await.unwrap(), None);
}

async fn the_claim_journal_keeps_generations_until_trimmed(store: Arc<dyn Store>) {
    assert!(store.claim_journal(0).await.unwrap().is_empty());
    let entry = |partition, generation, entry, hashes: &[u64]| JournalEntry {
        partition,
        generation,
        entry,
        hashes: hashes.to_vec(),
    };
    let appended = [
        entry(0, 0, 7, &[1, u64::MAX, 3]),
        entry(0, 0, 2, &[4]),
        entry(0, 1, 9, &[5, 6]),
        entry(0, 2, 1, &[]),
        entry(1, 0, 7, &[8]),
    ];
    for entry in &appended {
        store.append_claim_journal(entry).await.unwrap();
    }
    // Appending the same entry again (a retried append) replaces it.
    store.append_claim_journal(&appended[1]).await.unwrap();
    let mut journal = store.claim_journal(0).await.unwrap();
    journal.sort_by_key(|entry| (entry.generation, entry.entry));
    let mut expected = appended[..4].to_vec();
    expected.sort_by_key(|entry| (entry.generation, entry.entry));
    assert_eq!(journal, expected);

    store.trim_claim_journal(0, 1).await.unwrap();
    let generations: Vec<u64> = store
        .claim_journal(0)
        .await
        .unwrap()
        .iter()
        .map(|entry| entry.generation)
        .collect();
    assert_eq!(generations, [1, 2]);
    assert_eq!(
        store.claim_journal(1).await.unwrap(),
        [appended[4].clone()],
        "other partitions keep theirs"
    );
}

async fn held_outcomes_never_lower_a_status_a_callback_raised(store: Arc<dyn Store>) {
    let ids: Vec<String> = (0..40).map(|i| format!("race-{i}")).collect();
    let messages: Vec<NewMessage> = ids.iter().map(|id| new_message("acme", id, T0)).collect();
    store.claim_messages(&messages).await.unwrap();
    let held = Held {
        accepted_at: at(T0),
        campaign_id: Some(CampaignId::parse("spring-sale").unwrap()),
    };
    // The dispatcher's `sent` (held: written without reading) races the provider's `delivered`
    // callback (read, checked, written), in either order and at once.
    let mut tasks = Vec::new();
    for (round, id) in ids.iter().enumerate() {
        let sent = StatusUpdate {
            held: Some(held.clone()),
            ..update("acme", id, MessageStatus::Sent, T0 + 2, Some(&format!("SM{round}")))
        };
        let delivered = update(
            "acme",
            id,
            MessageStatus::Delivered,
            T0 + 3,
            Some(&format!("SM{round}")),
        );
        let (first, second) = if round % 2 == 0 {
            (sent, delivered)
        } else {
            (delivered, sent)
        };
        for change in [first, second] {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(
                async move { store.apply_status(&[change]).await.unwrap() },
            ));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    // A late `sent` held by the dispatcher after `delivered`.
    store
        .apply_status(&[StatusUpdate {
            held: Some(held.clone()),
            ..update("acme", "race-0", MessageStatus::Sent, T0 + 9, Some("SM0"))
        }])
        .await
        .unwrap();
    for (round, id) in ids.iter().enumerate() {
        let record = store.message(&tid("acme"), &mid(id)).await.unwrap().unwrap();
        assert_eq!(record.status, MessageStatus::Delivered, "{id}: {:?}", record.history);
        assert_eq!(record.provider_message_id, Some(format!("SM{round}")));
        let statuses: Vec<_> = record.history.iter().map(|change| change.status).collect();
        assert_eq!(statuses.first(), Some(&MessageStatus::Queued));
        assert_eq!(statuses.last(), Some(&MessageStatus::Delivered));
    }
    let counts = store
        .campaign_counts(&tid("acme"), &CampaignId::parse("spring-sale").unwrap())
        .await
        .unwrap();
    assert_eq!(counts, vec![(MessageStatus::Delivered, 40)]);
}

async fn status_only_moves_forward(store: Arc<dyn Store>) {
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

async fn failures_record_their_reason_and_are_terminal(store: Arc<dyn Store>) {
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
    let claims = store.claims(&[(tid("acme"), mid("m1"))]).await.unwrap();
    assert_eq!(claims[0].map(|claim| claim.status), Some(MessageStatus::Undelivered));
}

/// The demo provider's callbacks (`delivered`, `read`) are held like the dispatcher's `sent`:
/// written without a read. Whatever order the three arrive in, early callbacks included, the
/// message ends `read`, its campaign counts it once as `read`, and a later failure cannot
/// replace it.
async fn held_callbacks_up_the_chain_end_at_the_highest_in_any_order(store: Arc<dyn Store>) {
    let held = Held {
        accepted_at: at(T0),
        campaign_id: Some(CampaignId::parse("spring-sale").unwrap()),
    };
    let orders: [[MessageStatus; 3]; 3] = [
        [MessageStatus::Sent, MessageStatus::Delivered, MessageStatus::Read],
        [MessageStatus::Read, MessageStatus::Delivered, MessageStatus::Sent],
        [MessageStatus::Delivered, MessageStatus::Read, MessageStatus::Sent],
    ];
    for (n, order) in orders.iter().enumerate() {
        let id = format!("chain-{n}");
        store.claim_messages(&[new_message("acme", &id, T0)]).await.unwrap();
        for (step, status) in order.iter().enumerate() {
            let provider_id = (*status == MessageStatus::Sent).then(|| format!("SM{n}"));
            let change = StatusUpdate {
                held: Some(held.clone()),
                ..update("acme", &id, *status, T0 + 10 + step as i64, provider_id.as_deref())
            };
            store.apply_status(&[change]).await.unwrap();
        }
        store
            .apply_status(&[update("acme", &id, MessageStatus::Failed, T0 + 20, None)])
            .await
            .unwrap();
        let record = store.message(&tid("acme"), &mid(&id)).await.unwrap().unwrap();
        assert_eq!(
            record.status,
            MessageStatus::Read,
            "{id} after {order:?}: {:?}",
            record.history
        );
        assert_eq!(record.provider_message_id, Some(format!("SM{n}")), "{id}");
    }
    let counts = store
        .campaign_counts(&tid("acme"), &CampaignId::parse("spring-sale").unwrap())
        .await
        .unwrap();
    assert_eq!(counts, vec![(MessageStatus::Read, 3)]);
}

async fn audit_is_listed_newest_first(store: Arc<dyn Store>) {
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

async fn stuck_messages_are_found_by_status_and_age(store: Arc<dyn Store>) {
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
    let ids = |records: Vec<common::store::MessageRecord>| -> Vec<String> {
        records
            .iter()
            .map(|record| record.message_id.as_str().to_owned())
            .collect()
    };
    let limited = store.stuck_messages(at(T0 + 1_000), 1).await.unwrap();
    assert_eq!(ids(limited), ["a"], "old enough, in a stuck status, up to the limit");
    let rest = store.stuck_messages(at(T0 + 1_000), 10).await.unwrap();
    assert_eq!(
        ids(rest),
        ["b"],
        "the next run goes on after what the last one returned"
    );
}

async fn stuck_messages_are_sent_first_then_unknown_and_only_those(store: Arc<dyn Store>) {
    let messages = ["a", "b", "c", "d", "e"].map(|id| new_message("acme", id, T0));
    store.claim_messages(&messages).await.unwrap();
    store
        .apply_status(&[
            update("acme", "b", MessageStatus::Unknown, T0 + 20, None),
            update("acme", "c", MessageStatus::Sent, T0 + 10, Some("SMc")),
            update("acme", "d", MessageStatus::Sent, T0 + 5, Some("SMd")),
            update("acme", "e", MessageStatus::Sent, T0 + 15, Some("SMe")),
            update("acme", "e", MessageStatus::Delivered, T0 + 30, None),
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
        ids(store.stuck_messages(far, 2).await.unwrap()),
        ["d", "c"],
        "sent oldest first, up to the limit"
    );
    assert_eq!(
        ids(store.stuck_messages(far, 10).await.unwrap()),
        ["b"],
        "then unknown; not queued, not delivered, and not again the ones just returned"
    );
    assert!(store.stuck_messages(far, 10).await.unwrap().is_empty(), "nothing left");
    // A returned message is due again from when it was returned; one settled meanwhile is not.
    store
        .apply_status(&[update("acme", "d", MessageStatus::Delivered, T0 + 40, None)])
        .await
        .unwrap();
    let later = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(60);
    assert_eq!(ids(store.stuck_messages(later, 10).await.unwrap()), ["c", "b"]);
}

async fn every_status_change_follows_the_forward_only_rule(store: Arc<dyn Store>) {
    // Each store applies the rule in its own terms (SQLite: a WHERE clause generated from
    // `MessageStatus::can_advance_to`; Cassandra: the check before a status row is written):
    // it must agree with that function on every pair.
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
            if allowed {
                assert_eq!(record.provider_message_id, Some(format!("SM-{id}")), "{from} -> {to}");
                assert_eq!(record.reason, Some(format!("because {to}")));
                assert_eq!(record.updated_at, at(T0 + 2));
            }
        }
    }
}

async fn history_keeps_every_reason_exactly(store: Arc<dyn Store>) {
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

async fn campaign_counts_follow_each_message_status(store: Arc<dyn Store>) {
    let spring = CampaignId::parse("spring-sale").unwrap();
    let other_campaign = NewMessage {
        campaign_id: Some(CampaignId::parse("fall-sale").unwrap()),
        ..new_message("acme", "f1", T0)
    };
    let no_campaign = NewMessage {
        campaign_id: None,
        ..new_message("acme", "n1", T0)
    };
    let mut batch: Vec<NewMessage> = ["m1", "m2", "m3", "m4", "m5"]
        .iter()
        .map(|id| new_message("acme", id, T0))
        .collect();
    batch.extend([other_campaign, no_campaign, new_message("other", "m1", T0)]);
    store.claim_messages(&batch).await.unwrap();
    assert!(store.campaign_counts(&tid("nobody"), &spring).await.unwrap().is_empty());
    let mut failed = update("acme", "m4", MessageStatus::Failed, T0 + 2, None);
    failed.reason = Some("30003".to_owned());
    store
        .apply_status(&[
            update("acme", "m1", MessageStatus::Sent, T0 + 1, Some("SM1")),
            update("acme", "m2", MessageStatus::Sent, T0 + 1, Some("SM2")),
            update("acme", "m2", MessageStatus::Delivered, T0 + 2, None),
            update("acme", "m3", MessageStatus::Sent, T0 + 1, Some("SM3")),
            failed,
            // Refused: the counts do not move.
            update("acme", "m2", MessageStatus::Sent, T0 + 3, None),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.campaign_counts(&tid("acme"), &spring).await.unwrap(),
        vec![
            (MessageStatus::Queued, 1),
            (MessageStatus::Sent, 2),
            (MessageStatus::Delivered, 1),
            (MessageStatus::Failed, 1),
        ]
    );
    assert_eq!(
        store.campaign_counts(&tid("other"), &spring).await.unwrap(),
        vec![(MessageStatus::Queued, 1)]
    );
    // A redelivered claim changes nothing.
    store.claim_messages(&batch).await.unwrap();
    assert_eq!(
        store
            .campaign_counts(&tid("acme"), &spring)
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>(),
        5
    );
}

async fn deleting_a_tenant_removes_everything_it_owns_and_nothing_else(store: Arc<dyn Store>) {
    for id in ["acme", "other"] {
        populate(&*store, id).await;
        let brand = store.brand(&tid(id)).await.unwrap().unwrap();
        store.put_workflow(&brand, Some(at(T0 + 5))).await.unwrap();
        store.record_inbound(&tid(id), "+14155550999", at(T0)).await.unwrap();
    }
    store
        .append_audit(&audit_entry(None, T0, "platform.thing"))
        .await
        .unwrap();
    let spring = CampaignId::parse("spring-sale").unwrap();

    assert!(store.delete_tenant(&tid("acme")).await.unwrap());
    assert!(!store.delete_tenant(&tid("acme")).await.unwrap());

    let acme = tid("acme");
    assert_eq!(store.tenant(&acme).await.unwrap(), None);
    assert_eq!(store.api_key_by_hash("hash-acme").await.unwrap(), None);
    assert!(store.api_keys(&acme).await.unwrap().is_empty());
    assert_eq!(store.business_info(&acme).await.unwrap(), None);
    assert_eq!(store.brand(&acme).await.unwrap(), None);
    assert_eq!(store.workflow_due(&acme).await.unwrap(), None);
    assert!(store.sender_numbers(&acme).await.unwrap().is_empty());
    assert_eq!(store.credentials(&acme, Channel::Sms).await.unwrap(), None);
    assert_eq!(store.usage(&acme, Channel::Sms, "2026-01").await.unwrap(), 0);
    assert_eq!(store.suppression(&acme, "+14155550999").await.unwrap(), None);
    assert_eq!(store.last_inbound(&acme, "+14155550999").await.unwrap(), None);
    assert_eq!(store.message(&acme, &mid("m1")).await.unwrap(), None);
    assert!(store.audit(&acme, 10).await.unwrap().is_empty());
    assert!(store.campaign_counts(&acme, &spring).await.unwrap().is_empty());

    // The other tenant is intact, and the freed number can be taken.
    let other = tid("other");
    assert!(store.tenant(&other).await.unwrap().is_some());
    assert!(store.api_key_by_hash("hash-other").await.unwrap().is_some());
    assert!(store.business_info(&other).await.unwrap().is_some());
    assert!(store.brand(&other).await.unwrap().is_some());
    assert_eq!(
        store.workflows_due(at(T0 + 100), 10).await.unwrap(),
        vec![other.clone()]
    );
    assert_eq!(store.sender_numbers(&other).await.unwrap().len(), 1);
    assert_eq!(
        store.credentials_by_account("AC123").await.unwrap(),
        vec![credentials("other", Channel::Sms)]
    );
    assert_eq!(store.usage(&other, Channel::Sms, "2026-01").await.unwrap(), 7);
    assert!(store.suppression(&other, "+14155550999").await.unwrap().is_some());
    assert_eq!(store.last_inbound(&other, "+14155550999").await.unwrap(), Some(at(T0)));
    assert_eq!(
        store.message(&other, &mid("m1")).await.unwrap().unwrap().history.len(),
        2
    );
    assert_eq!(
        store
            .message(&other, &mid("m1"))
            .await
            .unwrap()
            .unwrap()
            .provider_message_id,
        Some("SM-other".to_owned())
    );
    assert_eq!(store.audit(&other, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.campaign_counts(&other, &spring).await.unwrap(),
        vec![(MessageStatus::Sent, 1)]
    );
    let demo: Vec<TenantId> = store
        .demo_tenants_created_before(at(T0 + 1))
        .await
        .unwrap()
        .into_iter()
        .map(|tenant| tenant.id)
        .collect();
    assert_eq!(demo, vec![other.clone()]);
    let stuck = store.stuck_messages(at(T0 + 1_000_000), 10).await.unwrap();
    assert_eq!(
        stuck.iter().map(|m| m.tenant_id.clone()).collect::<Vec<_>>(),
        vec![other.clone()]
    );
    store
        .put_sender_number(&sender_number("other", "+14155550100"))
        .await
        .unwrap();
}

async fn held_messages_wait_per_campaign_until_released(store: Arc<dyn Store>) {
    let acme = tid("acme");
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    let spring = CampaignId::parse("spring").unwrap();
    let fall = CampaignId::parse("fall").unwrap();
    let held = |campaign: &CampaignId, channel, n: u32| HeldMessage {
        tenant_id: acme.clone(),
        campaign_id: campaign.clone(),
        channel,
        message_id: common::MessageId::parse(format!("m-{n:03}")).unwrap(),
        envelope: format!("{{\"n\": {n}}}").into_bytes(),
        held_at: at(T0),
    };
    let spring_sms: Vec<HeldMessage> = (0..5).map(|n| held(&spring, Channel::Sms, n)).collect();
    store.hold_messages(&spring_sms).await.unwrap();
    // Holding again replaces; another channel of the same campaign is its own.
    store.hold_messages(&spring_sms[..2]).await.unwrap();
    store
        .hold_messages(&[held(&spring, Channel::Whatsapp, 9)])
        .await
        .unwrap();
    store.hold_messages(&[held(&fall, Channel::Sms, 1)]).await.unwrap();

    let mut campaigns = store.held_campaigns(100).await.unwrap();
    campaigns.sort_by(|a, b| (a.1.as_str(), a.2.as_str()).cmp(&(b.1.as_str(), b.2.as_str())));
    assert_eq!(
        campaigns,
        vec![
            (acme.clone(), fall.clone(), Channel::Sms),
            (acme.clone(), spring.clone(), Channel::Sms),
            (acme.clone(), spring.clone(), Channel::Whatsapp),
        ]
    );
    assert_eq!(store.held_count(&acme, &spring).await.unwrap(), 6);
    let page = store.held_messages(&acme, &spring, Channel::Sms, 3).await.unwrap();
    assert_eq!(page, spring_sms[..3].to_vec());

    let ids: Vec<_> = page.iter().map(|message| message.message_id.clone()).collect();
    store.release_held(&acme, &spring, Channel::Sms, &ids).await.unwrap();
    assert_eq!(
        store.held_messages(&acme, &spring, Channel::Sms, 10).await.unwrap(),
        spring_sms[3..].to_vec()
    );
    let rest: Vec<_> = spring_sms[3..]
        .iter()
        .map(|message| message.message_id.clone())
        .collect();
    store.release_held(&acme, &spring, Channel::Sms, &rest).await.unwrap();
    assert_eq!(store.held_count(&acme, &spring).await.unwrap(), 1);
    assert_eq!(store.held_campaigns(100).await.unwrap().len(), 2);

    assert!(store.delete_tenant(&acme).await.unwrap());
    assert!(store.held_campaigns(100).await.unwrap().is_empty());
    assert_eq!(store.held_count(&acme, &fall).await.unwrap(), 0);
}

async fn scheduled_messages_wait_until_due_and_cancel_only_before_release(store: Arc<dyn Store>) {
    let acme = tid("acme");
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    let spring = CampaignId::parse("spring").unwrap();
    // Stores keep milliseconds.
    let now = at(i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap());
    let minutes = time::Duration::minutes;
    let id = |n: u32| common::MessageId::parse(format!("m-{n}")).unwrap();
    let scheduled = |n: u32, ahead: time::Duration| ScheduledMessage {
        tenant_id: acme.clone(),
        message_id: id(n),
        campaign_id: (n < 4).then(|| spring.clone()),
        due_at: now + ahead,
        envelope: format!("{{\"n\": {n}}}").into_bytes(),
    };
    let all = vec![
        scheduled(0, minutes(2)),
        scheduled(1, minutes(2)),
        scheduled(2, minutes(3)),
        scheduled(3, minutes(10)),
        scheduled(4, minutes(10)),
    ];
    store.schedule(&all).await.unwrap();
    // Scheduling an id again keeps the first.
    store
        .schedule(&[ScheduledMessage {
            envelope: b"again".to_vec(),
            ..scheduled(0, minutes(9))
        }])
        .await
        .unwrap();
    assert_eq!(store.scheduled(&acme, &id(2)).await.unwrap(), Some(all[2].clone()));
    assert!(store.due_scheduled(now, 100).await.unwrap().is_empty());

    let first = store.scheduled_in_campaign(&acme, &spring, None, 2).await.unwrap();
    assert_eq!(first, vec![id(0), id(1)]);
    let next = store
        .scheduled_in_campaign(&acme, &spring, Some(&id(1)), 10)
        .await
        .unwrap();
    assert_eq!(next, vec![id(2), id(3)]);

    // Canceled before it is due: never released.
    assert_eq!(
        store.cancel_scheduled(&acme, &id(2)).await.unwrap(),
        ScheduleCancel::Canceled(all[2].clone())
    );
    assert_eq!(
        store.cancel_scheduled(&acme, &id(2)).await.unwrap(),
        ScheduleCancel::NotScheduled
    );
    assert_eq!(store.scheduled(&acme, &id(2)).await.unwrap(), None);

    let ids = |messages: &[ScheduledMessage]| {
        let mut ids: Vec<String> = messages.iter().map(|m| m.message_id.to_string()).collect();
        ids.sort();
        ids
    };
    let due = store.due_scheduled(now + minutes(5), 100).await.unwrap();
    assert_eq!(ids(&due), ["m-0", "m-1"]);
    assert!(due.contains(&all[0]), "the first scheduling stands: {due:?}");
    // Taken for release: too late to cancel; answered again until forgotten.
    assert_eq!(
        store.cancel_scheduled(&acme, &id(0)).await.unwrap(),
        ScheduleCancel::Releasing
    );
    assert_eq!(
        ids(&store.due_scheduled(now + minutes(5), 100).await.unwrap()),
        ["m-0", "m-1"]
    );
    store.forget_scheduled(&due).await.unwrap();
    assert!(store.due_scheduled(now + minutes(5), 100).await.unwrap().is_empty());
    assert_eq!(store.scheduled(&acme, &id(0)).await.unwrap(), None);
    assert_eq!(
        store.scheduled_in_campaign(&acme, &spring, None, 10).await.unwrap(),
        vec![id(3)]
    );

    // A page at a time.
    let mut released = Vec::new();
    for _ in 0..2 {
        let page = store.due_scheduled(now + minutes(11), 1).await.unwrap();
        assert_eq!(page.len(), 1);
        store.forget_scheduled(&page).await.unwrap();
        released.extend(page);
    }
    assert_eq!(ids(&released), ["m-3", "m-4"]);
    assert!(store.due_scheduled(now + minutes(11), 100).await.unwrap().is_empty());
}

async fn inbound_messages_are_listed_newest_first(store: Arc<dyn Store>) {
    let acme = tid("acme");
    store.create_tenant(&tenant("acme", false, T0)).await.unwrap();
    let day_ms = 86_400_000;
    let inbound = |n: i64, at_ms: i64| InboundMessage {
        tenant_id: acme.clone(),
        provider_id: format!("SM{n:032x}"),
        channel: if n == 2 { Channel::Whatsapp } else { Channel::Sms },
        from: "+14155550177".to_owned(),
        to: Some("+14155550150".to_owned()),
        body: format!("message {n}"),
        media_urls: if n == 2 {
            vec!["https://media.example/1.jpg".to_owned()]
        } else {
            Vec::new()
        },
        received_at: at(at_ms),
    };
    // Two days, the newest written first.
    let (first, second, third) = (inbound(1, T0), inbound(2, T0 + 1_000), inbound(3, T0 + day_ms));
    for message in [&third, &first, &second] {
        store.put_inbound(message).await.unwrap();
    }
    assert_eq!(
        store.inbound_messages(&acme, None, 10).await.unwrap(),
        vec![third.clone(), second.clone(), first.clone()]
    );
    assert_eq!(
        store.inbound_messages(&acme, None, 2).await.unwrap(),
        vec![third.clone(), second.clone()]
    );
    assert_eq!(
        store
            .inbound_messages(&acme, Some((second.received_at, &second.provider_id)), 10)
            .await
            .unwrap(),
        vec![first.clone()]
    );
    // Two in the same millisecond on either side of a page's end: the next page has the other.
    let twin = InboundMessage {
        provider_id: format!("SM{:032x}", 0),
        ..first.clone()
    };
    store.put_inbound(&twin).await.unwrap();
    let page = store
        .inbound_messages(&acme, Some((second.received_at, &second.provider_id)), 1)
        .await
        .unwrap();
    assert_eq!(page, vec![first.clone()]);
    assert_eq!(
        store
            .inbound_messages(&acme, Some((first.received_at, &first.provider_id)), 10)
            .await
            .unwrap(),
        vec![twin]
    );
    assert!(
        store
            .inbound_messages(&tid("other"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.delete_tenant(&acme).await.unwrap());
    assert!(store.inbound_messages(&acme, None, 10).await.unwrap().is_empty());
}
