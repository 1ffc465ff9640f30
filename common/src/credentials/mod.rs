//! Channel credentials at rest: the secret half sealed with AES-256-GCM under a [`Keyring`],
//! the rest (account SID, region, sender address) kept in the clear for lookups.
//!
//! Each sealed secret is bound to its row (`tenant/channel/provider`), so a ciphertext copied
//! to another tenant's row does not open. The secret is one string per provider: Twilio's auth
//! token, or the AWS secret access key.

mod keyring;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use time::OffsetDateTime;

pub use keyring::{Keyring, KeyringError, LEGACY_SEALED_VERSION, SEALED_VERSION, generate_key};

use crate::config::Settings;
use crate::store::{ChannelCredentials, ProviderKind};
use crate::{Channel, TenantId};

/// The non-secret setting naming a Twilio account.
pub const ACCOUNT_SID: &str = "account_sid";
/// The non-secret setting naming an AWS access key.
pub const ACCESS_KEY_ID: &str = "access_key_id";
/// The non-secret setting naming an AWS region.
pub const REGION: &str = "region";
/// The non-secret setting naming an SES configuration set.
pub const CONFIGURATION_SET: &str = "configuration_set";
/// The non-secret setting naming the email sender address.
pub const FROM_ADDRESS: &str = "from_address";
/// The non-secret setting naming the tenant's own SNS topic of SES events.
pub const SNS_TOPIC_ARN: &str = "sns_topic_arn";
/// The non-secret setting naming where unsubscribe requests by email go.
pub const UNSUBSCRIBE_MAILBOX: &str = "unsubscribe_mailbox";
/// The non-secret setting saying whether transactional email carries unsubscribe headers too.
pub const UNSUBSCRIBE_TRANSACTIONAL: &str = "unsubscribe_transactional";

/// Why stored credentials could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The secret did not open.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The row is for another provider than the one asked for.
    #[error("the credentials are for {found:?}, not {expected:?}")]
    WrongProvider {
        /// The provider asked for.
        expected: ProviderKind,
        /// The provider of the row.
        found: ProviderKind,
    },
    /// A non-secret setting is missing.
    #[error("the credentials have no {0}")]
    MissingSetting(&'static str),
    /// The opened secret is not UTF-8 (it was sealed by something else).
    #[error("the opened secret is not text")]
    NotText,
}

/// Loads the ring the settings name: `credentials.keys`, else `credentials.key_file` (which must
/// exist), else the default key file under the data directory, created on first start.
pub fn keyring_from_settings(settings: &Settings) -> Result<Keyring, KeyringError> {
    if let Some(keys) = &settings.credentials.keys {
        return Keyring::parse(keys);
    }
    if let Some(path) = &settings.credentials.key_file {
        let text = std::fs::read_to_string(path).map_err(|source| KeyringError::File {
            path: path.display().to_string(),
            source,
        })?;
        return Keyring::parse(&SecretString::from(text));
    }
    if settings.store.backend == crate::config::StoreBackend::Cassandra {
        return Err(KeyringError::SharedStoreNeedsKeys);
    }
    let path = settings.default_key_file();
    let (keyring, created) = Keyring::load_or_create(&path)?;
    if created {
        tracing::warn!(path = %path.display(), "created a credential key file; back it up, without it stored credentials cannot be opened");
    }
    Ok(keyring)
}

/// What a sealed secret is bound to: the row (tenant, channel, provider) and the account it is
/// the secret of (Twilio's account SID, AWS's access key id), so that a sealed token moved to
/// another row, or a row whose account was changed underneath it, does not open.
fn context(tenant: &TenantId, channel: Channel, provider: ProviderKind, settings: &Value) -> Vec<u8> {
    let identity = settings
        .get(identity_setting(provider))
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{tenant}/{channel}/{}/{identity}", provider_name(provider)).into_bytes()
}

/// The binding of secrets sealed before the account was part of it ([`LEGACY_SEALED_VERSION`]):
/// they still open; [`reseal`] moves them to [`context`].
fn legacy_context(tenant: &TenantId, channel: Channel, provider: ProviderKind) -> Vec<u8> {
    format!("{tenant}/{channel}/{}", provider_name(provider)).into_bytes()
}

fn provider_name(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Twilio => "twilio",
        ProviderKind::Ses => "ses",
    }
}

/// The setting naming the account a provider's secret belongs to.
fn identity_setting(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Twilio => ACCOUNT_SID,
        ProviderKind::Ses => ACCESS_KEY_ID,
    }
}

/// A new, not yet verified credentials row with `secret` sealed under the ring's current key.
pub fn seal(
    keyring: &Keyring,
    tenant: &TenantId,
    channel: Channel,
    provider: ProviderKind,
    settings: Value,
    secret: &SecretString,
) -> ChannelCredentials {
    let (key_id, sealed_secrets) = keyring.seal(
        &context(tenant, channel, provider, &settings),
        secret.expose_secret().as_bytes(),
    );
    ChannelCredentials {
        tenant_id: tenant.clone(),
        channel,
        provider,
        settings,
        key_id,
        sealed_secrets,
        is_verified: false,
        verification_error: None,
        updated_at: OffsetDateTime::now_utc(),
    }
}

/// Opens a row's secret.
pub fn open(keyring: &Keyring, credentials: &ChannelCredentials) -> Result<SecretString, CredentialsError> {
    let context = if Keyring::version_of(&credentials.sealed_secrets) == Some(LEGACY_SEALED_VERSION) {
        legacy_context(&credentials.tenant_id, credentials.channel, credentials.provider)
    } else {
        context(
            &credentials.tenant_id,
            credentials.channel,
            credentials.provider,
            &credentials.settings,
        )
    };
    let plain = keyring.open(&credentials.key_id, &context, &credentials.sealed_secrets)?;
    let text = String::from_utf8(plain).map_err(|_| CredentialsError::NotText)?;
    Ok(SecretString::from(text))
}

/// Whether a row is sealed under the ring's current key with today's binding.
pub fn is_current(keyring: &Keyring, credentials: &ChannelCredentials) -> bool {
    credentials.key_id == keyring.current_key_id()
        && Keyring::version_of(&credentials.sealed_secrets) == Some(SEALED_VERSION)
}

/// Re-seals a row under the ring's current key with today's binding (key rotation, or a row
/// sealed before the account was bound); `None` when it already is.
pub fn reseal(
    keyring: &Keyring,
    credentials: &ChannelCredentials,
) -> Result<Option<ChannelCredentials>, CredentialsError> {
    if is_current(keyring, credentials) {
        return Ok(None);
    }
    let secret = open(keyring, credentials)?;
    let fresh = seal(
        keyring,
        &credentials.tenant_id,
        credentials.channel,
        credentials.provider,
        credentials.settings.clone(),
        &secret,
    );
    Ok(Some(ChannelCredentials {
        is_verified: credentials.is_verified,
        verification_error: credentials.verification_error.clone(),
        ..fresh
    }))
}

/// The non-secret setting `name` of a row.
pub fn setting<'a>(credentials: &'a ChannelCredentials, name: &'static str) -> Option<&'a str> {
    credentials.settings.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ring() -> Keyring {
        Keyring::parse(&SecretString::from(format!("k1:{}", generate_key().expose_secret()))).unwrap()
    }

    #[test]
    fn reseal_moves_a_row_to_the_current_key_only_when_needed() {
        let tenant = TenantId::parse("acme").unwrap();
        let old_entry = format!("k1:{}", generate_key().expose_secret());
        let old = Keyring::parse(&SecretString::from(old_entry.clone())).unwrap();
        let settings = json!({ ACCESS_KEY_ID: "AKIA1" });
        let secret = SecretString::from("aws-secret");
        let row = seal(&old, &tenant, Channel::Email, ProviderKind::Ses, settings, &secret);
        assert!(reseal(&old, &row).unwrap().is_none());
        let rotated = Keyring::parse(&SecretString::from(format!(
            "k2:{},{old_entry}",
            generate_key().expose_secret()
        )))
        .unwrap();
        let fresh = reseal(&rotated, &row).unwrap().unwrap();
        assert_eq!(fresh.key_id, "k2");
        assert_eq!(open(&rotated, &fresh).unwrap().expose_secret(), "aws-secret");
    }

    #[test]
    fn a_row_sealed_before_the_account_was_bound_opens_and_is_resealed_with_it() {
        let keyring = ring();
        let tenant = TenantId::parse("acme").unwrap();
        let (key_id, mut sealed) =
            keyring.seal(&legacy_context(&tenant, Channel::Sms, ProviderKind::Twilio), b"token-1");
        sealed[0] = LEGACY_SEALED_VERSION;
        let legacy = ChannelCredentials {
            key_id,
            sealed_secrets: sealed,
            ..seal(
                &keyring,
                &tenant,
                Channel::Sms,
                ProviderKind::Twilio,
                json!({ ACCOUNT_SID: "AC123" }),
                &SecretString::from("unused"),
            )
        };
        assert_eq!(open(&keyring, &legacy).unwrap().expose_secret(), "token-1");
        assert!(!is_current(&keyring, &legacy));
        let fresh = reseal(&keyring, &legacy).unwrap().unwrap();
        assert!(is_current(&keyring, &fresh));
        assert_eq!(open(&keyring, &fresh).unwrap().expose_secret(), "token-1");
        assert!(reseal(&keyring, &fresh).unwrap().is_none());
        // A value sealed with the binding cannot be passed off as a legacy one.
        let mut downgraded = fresh.clone();
        downgraded.sealed_secrets[0] = LEGACY_SEALED_VERSION;
        assert!(open(&keyring, &downgraded).is_err());
    }
}
