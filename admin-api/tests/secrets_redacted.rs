//! `Debug` of every type that holds a key, a token or a secret prints it redacted, so that a
//! `?value` in a log line or a panic message cannot leak it.

use admin_api::auth::NewApiKey;
use admin_api::demo::BootstrapKey;
use admin_api::platform::NewKeyView;
use common::TenantId;
use common::config::Settings;
use common::credentials::Keyring;
use common::ses::SesAccount;
use common::store::ApiKeyRecord;
use common::twilio::TwilioAccount;
use common::twilio::accounts::{AccountStatus, Subaccount};
use secrecy::SecretString;
use time::OffsetDateTime;

const SECRET: &str = "s3cr3t-value-never-printed";

fn assert_redacted(what: &str, debug: String) {
    assert!(!debug.contains(SECRET), "{what} prints its secret: {debug}");
}

#[test]
fn no_secret_shows_in_debug() {
    let tenant = TenantId::parse("acme").unwrap();
    assert_redacted(
        "NewApiKey",
        format!(
            "{:?}",
            NewApiKey {
                secret: SECRET.to_owned(),
                record: ApiKeyRecord {
                    key_id: "k1".to_owned(),
                    tenant_id: tenant.clone(),
                    secret_hash: "hash".to_owned(),
                    created_at: OffsetDateTime::UNIX_EPOCH,
                    revoked_at: None,
                },
            }
        ),
    );
    assert_redacted(
        "BootstrapKey",
        format!(
            "{:?}",
            BootstrapKey {
                tenant_id: tenant,
                secret: SECRET.to_owned()
            }
        ),
    );
    assert_redacted(
        "NewKeyView",
        format!(
            "{:?}",
            NewKeyView {
                key_id: "k1".to_owned(),
                secret: SECRET.to_owned()
            }
        ),
    );
    assert_redacted(
        "TwilioAccount",
        format!("{:?}", TwilioAccount::new("AC1", SecretString::from(SECRET))),
    );
    assert_redacted(
        "SesAccount",
        format!(
            "{:?}",
            SesAccount::new("AKIA1", SecretString::from(SECRET), "us-east-1")
        ),
    );
    assert_redacted(
        "Subaccount",
        format!(
            "{:?}",
            Subaccount {
                sid: "AC1".to_owned(),
                auth_token: SecretString::from(SECRET),
                friendly_name: "acme".to_owned(),
                status: AccountStatus::Active,
            }
        ),
    );
    // A key ring of one key whose base64 is the secret's own bytes.
    let key = base64_key();
    let keyring = Keyring::parse(&SecretString::from(format!("k1:{key}"))).unwrap();
    let debug = format!("{keyring:?}");
    assert!(!debug.contains(&key), "Keyring prints its key: {debug}");

    let mut settings = Settings::default();
    settings.admin.platform_admin_key = Some(SecretString::from(SECRET));
    settings.onboarding.master_auth_token = Some(SecretString::from(SECRET));
    settings.credentials.keys = Some(SecretString::from(SECRET));
    settings
        .log
        .kafka
        .client
        .insert("sasl.password".to_owned(), SecretString::from(SECRET));
    assert_redacted("Settings", format!("{settings:?}"));
}

/// A valid ring key (32 bytes, base64) to look for in the ring's `Debug`.
fn base64_key() -> String {
    use secrecy::ExposeSecret as _;
    common::credentials::generate_key().expose_secret().to_owned()
}
