//! Checking that webhooks really come from the providers.
//!
//! - [`twilio`]: the `X-Twilio-Signature` header on Twilio's status callbacks (HMAC-SHA1 over
//!   the public URL and the sorted POST parameters, keyed with the account's auth token).
//! - [`sns`]: the RSA signature on the SNS messages that carry SES events (a certificate fetched
//!   from an AWS URL, SHA1 for `SignatureVersion` 1, SHA256 for 2).

pub mod sns;
pub mod twilio;
