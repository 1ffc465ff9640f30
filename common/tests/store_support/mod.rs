//! Fixtures shared by the store test suites (`store_behaviour`, `sqlite_store`): entities with
//! fixed values, and a tenant with a row in every table.
// Each test binary uses a part of these.
#![allow(dead_code)]

use std::collections::BTreeMap;

use common::log::RecordPosition;
use common::store::{
    ApiKeyRecord, AuditEntry, Brand, BrandStatus, BusinessInfoRecord, ChannelCredentials, NewMessage, NumberStatus,
    ProviderKind, SenderKind, SenderNumber, StatusUpdate, Store, Suppression, SuppressionReason, Tenant, TenantStatus,
};
use common::{CampaignId, Channel, MessageId, MessageStatus, PhoneNumber, Priority, TenantId};
use serde_json::json;
use time::OffsetDateTime;

/// A timestamp `ms` milliseconds after the epoch (the store keeps milliseconds).
pub(crate) fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

pub(crate) const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub(crate) fn tid(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

pub(crate) fn mid(raw: &str) -> MessageId {
    MessageId::parse(raw).unwrap()
}

pub(crate) fn tenant(id: &str, is_demo: bool, created_ms: i64) -> Tenant {
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

pub(crate) fn new_message(tenant: &str, id: &str, accepted_ms: i64) -> NewMessage {
    NewMessage {
        tenant_id: tid(tenant),
        message_id: mid(id),
        campaign_id: Some(CampaignId::parse("spring-sale").unwrap()),
        channel: Channel::Sms,
        recipient: "+14155550100".to_owned(),
        priority: Priority::Marketing,
        segments: 2,
        accepted_at: at(accepted_ms),
        position: position(0, 0),
    }
}

/// A log position.
pub(crate) fn position(partition: u32, offset: u64) -> RecordPosition {
    RecordPosition { partition, offset }
}

pub(crate) fn update(
    tenant: &str,
    id: &str,
    status: MessageStatus,
    ms: i64,
    provider_id: Option<&str>,
) -> StatusUpdate {
    StatusUpdate {
        tenant_id: tid(tenant),
        message_id: mid(id),
        status,
        at: at(ms),
        reason: None,
        provider_message_id: provider_id.map(str::to_owned),
        held: None,
    }
}

pub(crate) fn api_key(tenant: &str, key_id: &str, hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: key_id.to_owned(),
        tenant_id: tid(tenant),
        secret_hash: hash.to_owned(),
        created_at: at(T0),
        revoked_at: None,
    }
}

pub(crate) fn sender_number(tenant: &str, number: &str) -> SenderNumber {
    SenderNumber {
        tenant_id: tid(tenant),
        number: PhoneNumber::parse(number).unwrap(),
        kind: SenderKind::LongCode,
        status: NumberStatus::Active,
        twilio_sid: Some("PN123".to_owned()),
        rate_per_second: Some(1.5),
        created_at: at(T0),
        registration: None,
    }
}

pub(crate) fn credentials(tenant: &str, channel: Channel) -> ChannelCredentials {
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

pub(crate) fn suppression(tenant: &str, address: &str) -> Suppression {
    Suppression {
        tenant_id: tid(tenant),
        address: address.to_owned(),
        reason: SuppressionReason::OptOut,
        source: Some("STOP".to_owned()),
        created_at: at(T0),
    }
}

pub(crate) fn audit_entry(tenant: Option<&str>, ms: i64, action: &str) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant.map(tid),
        at: at(ms),
        actor: "key_1".to_owned(),
        action: action.to_owned(),
        detail: json!({"n": ms}),
    }
}

/// Fills every table for `id`.
pub(crate) async fn populate(store: &dyn Store, id: &str) {
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
