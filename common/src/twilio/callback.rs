//! The message a status callback is about, named in its URL.
//!
//! The dispatcher gives Twilio a `StatusCallback` per message: the configured callback URL with
//! the tenant and our message id added to its query (`?tenant=acme&message=m-1`). Twilio calls
//! that URL exactly and signs it, query included, with the account's auth token, so the webhook
//! finds the message from the signed URL alone: no provider-id index to read, and a callback
//! that beats the dispatcher's own record of `sent` still applies (statuses are forward-only, so
//! the order of arrival does not matter).

use crate::ids::{MessageId, TenantId};

/// The query parameter naming the tenant.
pub const TENANT_PARAM: &str = "tenant";
/// The query parameter naming our message id.
pub const MESSAGE_PARAM: &str = "message";

/// The `StatusCallback` URL of one message: `base` with the tenant and message id added to its
/// query.
pub fn status_callback_url(base: &str, tenant: &TenantId, message: &MessageId) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(TENANT_PARAM, tenant.as_str())
        .append_pair(MESSAGE_PARAM, message.as_str())
        .finish();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{query}")
}

/// The tenant and message a callback URL's query names; `None` unless both are there, once
/// each, and valid.
pub fn callback_target(query: Option<&str>) -> Option<(TenantId, MessageId)> {
    let (mut tenant, mut message) = (None, None);
    for (name, value) in url::form_urlencoded::parse(query?.as_bytes()) {
        let slot = match name.as_ref() {
            TENANT_PARAM => &mut tenant,
            MESSAGE_PARAM => &mut message,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some((TenantId::parse(tenant?).ok()?, MessageId::parse(message?).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(tenant: &str, message: &str) -> (TenantId, MessageId) {
        (TenantId::parse(tenant).unwrap(), MessageId::parse(message).unwrap())
    }

    #[test]
    fn the_url_names_the_message_and_reads_back() {
        let (tenant, message) = ids("acme_1", "campaign:42.ana-1");
        let url = status_callback_url("https://api.example.com/webhooks/twilio/status", &tenant, &message);
        assert_eq!(
            url,
            "https://api.example.com/webhooks/twilio/status?tenant=acme_1&message=campaign%3A42.ana-1"
        );
        let query = url.split_once('?').map(|(_, query)| query);
        assert_eq!(callback_target(query), Some((tenant.clone(), message.clone())));
        let with_query = status_callback_url("https://x.example/status?v=2", &tenant, &message);
        assert!(with_query.starts_with("https://x.example/status?v=2&tenant=acme_1&"));
        assert_eq!(
            callback_target(with_query.split_once('?').map(|(_, query)| query)),
            Some((tenant, message))
        );
    }

    #[test]
    fn anything_else_names_no_message() {
        for query in [
            None,
            Some(""),
            Some("tenant=acme"),
            Some("message=m1"),
            Some("tenant=acme&message=m1&tenant=other"),
            Some("tenant=no%20spaces&message=m1"),
            Some("tenant=acme&message="),
        ] {
            assert_eq!(callback_target(query), None, "{query:?}");
        }
        assert_eq!(
            callback_target(Some("x=1&message=m1&tenant=acme")),
            Some(ids("acme", "m1"))
        );
    }
}
