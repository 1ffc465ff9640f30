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

/// The `StatusCallback` field of a create-message form body for one callback URL, with the URL
/// form-encoded once: a message's field then costs the encoding of its tenant and id only (the
/// hot path builds one per message).
#[derive(Debug, Clone)]
pub struct StatusCallbackField {
    /// `StatusCallback=` and the form-encoded base URL with its query separator.
    prefix: String,
}

impl StatusCallbackField {
    /// The field for callbacks to `base`.
    pub fn new(base: &str) -> Self {
        let separator = if base.contains('?') { "&" } else { "?" };
        let mut prefix = String::from("StatusCallback=");
        prefix.extend(url::form_urlencoded::byte_serialize(base.as_bytes()));
        prefix.extend(url::form_urlencoded::byte_serialize(separator.as_bytes()));
        Self { prefix }
    }

    /// Appends the field for `tenant`'s `message` to a form body: the value is
    /// [`status_callback_url`], form-encoded.
    pub fn append_to(&self, form: &mut String, tenant: &TenantId, message: &MessageId) {
        if !form.is_empty() {
            form.push('&');
        }
        form.push_str(&self.prefix);
        // The query's pairs, encoded for the URL, then once more as the form field's value.
        for (index, (name, value)) in [(TENANT_PARAM, tenant.as_str()), (MESSAGE_PARAM, message.as_str())]
            .into_iter()
            .enumerate()
        {
            if index > 0 {
                form.push_str("%26");
            }
            form.push_str(name);
            form.push_str("%3D");
            for piece in url::form_urlencoded::byte_serialize(value.as_bytes()) {
                form.extend(url::form_urlencoded::byte_serialize(piece.as_bytes()));
            }
        }
    }
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

    #[test]
    fn the_form_field_holds_the_url_that_names_the_message() {
        for (base, tenant, message) in [
            ("https://api.example.com/webhooks/twilio/status", "acme", "m-1"),
            (
                "https://api.example.com/hooks?region=us&x=1",
                "t_b-c",
                "c:0123abcd.x_y-z",
            ),
        ] {
            let (tenant, message) = (TenantId::parse(tenant).unwrap(), MessageId::parse(message).unwrap());
            let mut form = String::from("To=%2B14155550100");
            StatusCallbackField::new(base).append_to(&mut form, &tenant, &message);
            let fields: Vec<(String, String)> = url::form_urlencoded::parse(form.as_bytes()).into_owned().collect();
            assert_eq!(
                fields,
                [
                    ("To".to_owned(), "+14155550100".to_owned()),
                    (
                        "StatusCallback".to_owned(),
                        status_callback_url(base, &tenant, &message)
                    ),
                ]
            );
        }
    }

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
