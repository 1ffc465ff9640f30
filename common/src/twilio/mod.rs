//! Twilio's REST API as the services use it: the HTTP client ([`client`]), the account
//! operations of tenant onboarding ([`accounts`]), what each of Twilio's error codes means for
//! the message or the tenant ([`errors`]), the status callback URL that names its message
//! ([`callback`]), the `X-Twilio-Signature` its webhooks carry ([`signature`]) and its message
//! statuses ([`status`]); WhatsApp senders and Content API templates ([`whatsapp`]); the create-message form ([`request`]) and the [`provider`] the
//! dispatcher sends through. The admin API onboards tenants with it and checks its webhooks
//! with it.

pub mod accounts;
pub mod callback;
pub mod client;
pub mod errors;
pub mod provider;
pub mod request;
pub mod signature;
pub mod status;
pub mod whatsapp;

pub use accounts::AccountOpError;
pub use callback::{StatusCallbackField, callback_target, status_callback_url};
pub use client::{
    ApiError, ClientError, CreateOutcome, FetchOutcome, FetchedMessage, ListOutcome, ListedMessage, TwilioAccount,
    TwilioClient, TwilioClientSettings,
};
pub use errors::{ErrorClass, KnownCode, classify, describe};
pub use request::{MAX_VALIDITY_SECS, create_message_form};

use crate::credentials::{self, ACCOUNT_SID, CredentialsError, Keyring, setting};
use crate::ids::is_twilio_sid;
use crate::store::{ChannelCredentials, ProviderKind};

/// A well-formed Twilio account SID: `AC` and 32 hexadecimal digits. Anything that names an
/// account (a webhook's `AccountSid`, a tenant's credentials) is parsed into one before it is
/// looked up, cached or logged, so that an attacker's value never gets that far.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountSid(String);

impl AccountSid {
    /// The SID, if `raw` is `AC` followed by exactly 32 hexadecimal digits.
    pub fn parse(raw: &str) -> Option<Self> {
        is_twilio_sid(raw, &["AC"]).then(|| Self(raw.to_owned()))
    }

    /// The SID as Twilio writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AccountSid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Twilio webhook's form (`application/x-www-form-urlencoded`), with the account it names.
/// Parsed before anything else is done with the request, signature included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookForm {
    /// Every parameter, in order, as Twilio signs them.
    pub params: Vec<(String, String)>,
    /// The well-formed `AccountSid`.
    pub account: AccountSid,
}

impl WebhookForm {
    /// The form in `body`; `None` without a well-formed `AccountSid` (the first one counts).
    pub fn parse(body: &[u8]) -> Option<Self> {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let account = params
            .iter()
            .find(|(key, _)| key == "AccountSid")
            .and_then(|(_, value)| AccountSid::parse(value))?;
        Some(Self { params, account })
    }

    /// The first value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The Twilio account a stored row holds, its auth token opened with `keyring`.
pub fn open_account(keyring: &Keyring, credentials: &ChannelCredentials) -> Result<TwilioAccount, CredentialsError> {
    if credentials.provider != ProviderKind::Twilio {
        return Err(CredentialsError::WrongProvider {
            expected: ProviderKind::Twilio,
            found: credentials.provider,
        });
    }
    let sid = setting(credentials, ACCOUNT_SID).ok_or(CredentialsError::MissingSetting(ACCOUNT_SID))?;
    Ok(TwilioAccount::new(sid, credentials::open(keyring, credentials)?))
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;

    use super::*;
    use crate::credentials::{KeyringError, generate_key, seal};
    use crate::{Channel, TenantId};

    fn ring() -> Keyring {
        Keyring::parse(&SecretString::from(format!("k1:{}", generate_key().expose_secret()))).unwrap()
    }

    #[test]
    fn a_twilio_row_round_trips_and_is_bound_to_its_tenant() {
        let keyring = ring();
        let tenant = TenantId::parse("acme").unwrap();
        let row = seal(
            &keyring,
            &tenant,
            Channel::Sms,
            ProviderKind::Twilio,
            json!({ ACCOUNT_SID: "AC123" }),
            &SecretString::from("token-1"),
        );
        assert!(!row.is_verified);
        let account = open_account(&keyring, &row).unwrap();
        assert_eq!(account.account_sid, "AC123");
        assert_eq!(account.auth_token.expose_secret(), "token-1");
        let moved = ChannelCredentials {
            tenant_id: TenantId::parse("other").unwrap(),
            ..row.clone()
        };
        assert!(matches!(
            open_account(&keyring, &moved),
            Err(CredentialsError::Keyring(KeyringError::Tampered))
        ));
        let other_account = ChannelCredentials {
            settings: json!({ ACCOUNT_SID: "AC456" }),
            ..row.clone()
        };
        assert!(matches!(
            open_account(&keyring, &other_account),
            Err(CredentialsError::Keyring(KeyringError::Tampered))
        ));
        let ses = ChannelCredentials {
            provider: ProviderKind::Ses,
            ..row
        };
        assert!(matches!(
            open_account(&keyring, &ses),
            Err(CredentialsError::WrongProvider { .. })
        ));
    }

    #[test]
    fn only_ac_and_32_hex_digits_is_an_account_sid() {
        let good = format!("AC{}", "0a".repeat(16));
        assert_eq!(AccountSid::parse(&good).map(|sid| sid.to_string()), Some(good));
        for bad in [
            String::new(),
            "AC123".to_owned(),
            format!("AC{}", "0g".repeat(16)),
            format!("MG{}", "0a".repeat(16)),
            format!("AC{}", "0a".repeat(17)),
            format!("AC{}é", "0a".repeat(15)),
            "A".repeat(900_000),
        ] {
            assert_eq!(AccountSid::parse(&bad), None, "{bad:.40}");
        }
    }
}
