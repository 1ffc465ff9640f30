//! Fixtures for tests and scenarios: settings for the provider simulator, and a live tenant
//! the simulator can serve (its Twilio credentials are the simulator's account, sealed as the
//! admin API would, with an approved 10DLC brand and its numbers; its SES credentials the
//! simulator's access key).

use common::config::Settings;
use common::credentials::{ACCESS_KEY_ID, ACCOUNT_SID, CONFIGURATION_SET, FROM_ADDRESS, Keyring, REGION};
use common::store::{Brand, BrandStatus, ProviderKind, SenderNumber, Store, StoreError, Tenant, TenantSettings};
use common::{Channel, TenantId};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use crate::simulator::ses::{CERT_PATH, DEFAULT_ACCESS_KEY_ID, DEFAULT_TOPIC_ARN};
use crate::simulator::{DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN};

/// Points `settings` at the provider simulator at `base_url` for Twilio's Messages API and
/// SES, accepting SES events signed with the simulator's certificate on its topic.
pub fn on_simulator(settings: &mut Settings, base_url: &str) {
    settings.providers.twilio.api_url = base_url.to_owned();
    settings.providers.ses.endpoint = Some(base_url.to_owned());
    settings.providers.ses.sns_topic_arns = vec![DEFAULT_TOPIC_ARN.to_owned()];
    settings.providers.ses.sns_cert_url = Some(format!("{base_url}{CERT_PATH}"));
}

/// Creates `tenant`, ready to send on each of `channels` (SMS, WhatsApp) through the
/// simulator's Twilio account from `numbers`.
pub async fn live_twilio_tenant(
    store: &dyn Store,
    keyring: &Keyring,
    tenant: &TenantId,
    channels: &[Channel],
    numbers: &[SenderNumber],
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    store.create_tenant(&Tenant::live(tenant.clone())).await?;
    // Load and tests send at any hour of the runner's clock: no quiet hours.
    let settings = TenantSettings {
        quiet_hours: None,
        ..TenantSettings::default()
    };
    store.set_tenant_settings(tenant, &settings).await?;
    for &channel in channels {
        let mut row = common::credentials::seal(
            keyring,
            tenant,
            channel,
            ProviderKind::Twilio,
            json!({ ACCOUNT_SID: DEFAULT_ACCOUNT_SID }),
            &SecretString::from(DEFAULT_AUTH_TOKEN),
        );
        row.is_verified = true;
        store.put_credentials(&row).await?;
    }
    store
        .put_brand(&Brand {
            tenant_id: tenant.clone(),
            status: BrandStatus::Approved,
            status_reason: None,
            trust_score: Some(80),
            workflow_step: "ready".to_owned(),
            workflow_attempts: 0,
            twilio_sids: Default::default(),
            updated_at: now,
            approved_at: Some(now),
        })
        .await?;
    for number in numbers {
        store.put_sender_number(number).await?;
    }
    Ok(())
}

/// Gives `tenant` verified SES credentials of the simulator's access key, sending from
/// `news@<tenant>.example` with the configuration set `<tenant>-events`.
pub async fn live_ses_channel(store: &dyn Store, keyring: &Keyring, tenant: &TenantId) -> Result<(), StoreError> {
    let mut row = common::credentials::seal(
        keyring,
        tenant,
        Channel::Email,
        ProviderKind::Ses,
        json!({ ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_ID, REGION: "us-east-1",
                FROM_ADDRESS: format!("news@{tenant}.example"), CONFIGURATION_SET: format!("{tenant}-events") }),
        &SecretString::from("simulator-secret"),
    );
    row.is_verified = true;
    store.put_credentials(&row).await
}
