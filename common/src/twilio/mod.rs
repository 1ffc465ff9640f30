//! Twilio's REST API as the services use it: the HTTP client ([`client`]) and what each of
//! Twilio's error codes means for the message or the tenant ([`errors`]). The dispatcher's
//! provider sends with it; the admin API onboards tenants with it.

pub mod client;
pub mod errors;

pub use client::{
    ApiError, ClientError, CreateOutcome, FetchOutcome, FetchedMessage, TwilioAccount, TwilioClient,
    TwilioClientSettings,
};
pub use errors::{ErrorClass, KnownCode, classify, describe};
