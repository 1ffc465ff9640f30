//! Twilio's REST API as the services use it: the HTTP client ([`client`]), the account
//! operations of tenant onboarding ([`accounts`]), what each of Twilio's error codes means for
//! the message or the tenant ([`errors`]), and the status callback URL that names its message
//! ([`callback`]). The dispatcher's provider sends with it; the admin API
//! onboards tenants with it.

pub mod accounts;
pub mod callback;
pub mod client;
pub mod errors;

pub use accounts::AccountOpError;
pub use callback::{StatusCallbackField, callback_target, status_callback_url};
pub use client::{
    ApiError, ClientError, CreateOutcome, FetchOutcome, FetchedMessage, TwilioAccount, TwilioClient,
    TwilioClientSettings,
};
pub use errors::{ErrorClass, KnownCode, classify, describe};
