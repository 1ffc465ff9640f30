//! Twilio's REST API as the services use it: the HTTP client ([`client`]), the account
//! operations of tenant onboarding ([`accounts`]), what each of Twilio's error codes means for
//! the message or the tenant ([`errors`]), the status callback URL that names its message
//! ([`callback`]), the `X-Twilio-Signature` its webhooks carry ([`signature`]) and its message
//! statuses ([`status`]). The
//! dispatcher's provider sends with it; the admin API onboards tenants with it and checks its
//! webhooks with it.

pub mod accounts;
pub mod callback;
pub mod client;
pub mod errors;
pub mod signature;
pub mod status;

pub use accounts::AccountOpError;
pub use callback::{StatusCallbackField, callback_target, status_callback_url};
pub use client::{
    ApiError, ClientError, CreateOutcome, FetchOutcome, FetchedMessage, ListOutcome, ListedMessage, TwilioAccount,
    TwilioClient, TwilioClientSettings,
};
pub use errors::{ErrorClass, KnownCode, classify, describe};

/// A well-formed Twilio account SID: `AC` and 32 hexadecimal digits. Anything that names an
/// account (a webhook's `AccountSid`, a tenant's credentials) is parsed into one before it is
/// looked up, cached or logged, so that an attacker's value never gets that far.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountSid(String);

impl AccountSid {
    /// The SID, if `raw` is `AC` followed by exactly 32 hexadecimal digits.
    pub fn parse(raw: &str) -> Option<Self> {
        is_sid(raw, &["AC"]).then(|| Self(raw.to_owned()))
    }

    /// The SID as Twilio writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `raw` is a Twilio SID with one of these two-letter prefixes: the prefix and 32
/// hexadecimal digits (`AC` an account, `SM`/`MM` a message, `MG` a Messaging Service).
pub fn is_sid(raw: &str, prefixes: &[&str]) -> bool {
    raw.len() == 34
        && prefixes.iter().any(|prefix| raw.starts_with(prefix))
        && raw.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit)
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

impl std::fmt::Display for AccountSid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::AccountSid;

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
