//! The body of Twilio's "create message" request
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`), built once per send on the hot path.

use time::OffsetDateTime;

use super::StatusCallbackField;
use crate::envelope::Content;
use crate::provider::OutboundMessage;
use crate::{Channel, Recipient, Sender};

/// Twilio's longest validity period, in seconds (its default too).
pub const MAX_VALIDITY_SECS: i64 = 36_000;

/// The `application/x-www-form-urlencoded` body that creates `message`: `To`, exactly one of
/// `From` or `MessagingServiceSid`, `Body` or `ContentSid` + `ContentVariables` (never both),
/// `ValidityPeriod` from the envelope's expiry (1 to 36,000 s), and `StatusCallback`
/// (`status_callback` naming the message: [`super::status_callback_url`]).
pub fn create_message_form(
    message: &OutboundMessage,
    status_callback: Option<&StatusCallbackField>,
    now: OffsetDateTime,
) -> String {
    let envelope = &message.envelope;
    let whatsapp = envelope.channel == Channel::Whatsapp;
    let mut form = url::form_urlencoded::Serializer::new(String::with_capacity(512));
    match &envelope.to {
        Recipient::Phone(number) if whatsapp => form.append_pair("To", &number.whatsapp_address()),
        recipient => form.append_pair("To", recipient.as_str()),
    };
    match &message.sender {
        Sender::MessagingService(sid) => form.append_pair("MessagingServiceSid", sid),
        Sender::Phone(number) if whatsapp => form.append_pair("From", &number.whatsapp_address()),
        sender => form.append_pair("From", sender.as_str()),
    };
    match &envelope.content {
        Content::Body(body) => {
            form.append_pair("Body", body);
        }
        // Email parts never route to Twilio (email goes through SES); the text part would be
        // the body.
        Content::Email(parts) => {
            form.append_pair("Body", parts.text.as_deref().unwrap_or_default());
        }
        Content::Template { id, variables } => {
            form.append_pair("ContentSid", id);
            let variables = serde_json::to_string(variables).expect("string maps always encode");
            form.append_pair("ContentVariables", &variables);
        }
    }
    if let Some(expires_at) = envelope.expires_at {
        let seconds = (expires_at - now).whole_seconds().clamp(1, MAX_VALIDITY_SECS);
        form.append_pair("ValidityPeriod", &seconds.to_string());
    }
    let mut form = form.finish();
    if let Some(field) = status_callback {
        field.append_to(&mut form, &envelope.tenant_id, &envelope.message_id);
    }
    form
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Envelope, PhoneNumber};
    use std::collections::HashMap;

    fn outbound(value: serde_json::Value, sender: Sender) -> OutboundMessage {
        let envelope = Envelope::parse(&serde_json::to_vec(&value).unwrap()).unwrap();
        OutboundMessage {
            envelope,
            sender,
            segments: 1,
            paced_at: tokio::time::Instant::now(),
            accepted_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn pairs(form: &str) -> HashMap<String, String> {
        url::form_urlencoded::parse(form.as_bytes()).into_owned().collect()
    }

    fn number(raw: &str) -> Sender {
        Sender::Phone(PhoneNumber::parse(raw).unwrap())
    }

    #[test]
    fn an_sms_with_a_body_callback_and_validity() {
        let now = time::macros::datetime!(2026-11-24 12:00 UTC);
        let message = outbound(
            serde_json::json!({"version": 1, "message_id": "m", "tenant_id": "t", "channel": "sms",
                "to": "+14155550100", "body": "Hi & bye = 100%", "expires_at": "2026-11-24T12:10:00Z"}),
            number("+14155550199"),
        );
        let callback = StatusCallbackField::new("https://api.example.com/webhooks/twilio/status");
        let form = pairs(&create_message_form(&message, Some(&callback), now));
        assert_eq!(form["To"], "+14155550100");
        assert_eq!(form["From"], "+14155550199");
        assert_eq!(form["Body"], "Hi & bye = 100%");
        assert_eq!(
            form["StatusCallback"],
            "https://api.example.com/webhooks/twilio/status?tenant=t&message=m"
        );
        assert_eq!(form["ValidityPeriod"], "600");
        assert!(!form.contains_key("MessagingServiceSid"));
    }

    #[test]
    fn a_whatsapp_template_has_no_body_and_whatsapp_addresses() {
        let message = outbound(
            serde_json::json!({"version": 1, "message_id": "m", "tenant_id": "t", "channel": "whatsapp",
                "to": "whatsapp:+14155550100", "template": {"id": "HX123", "variables": {"1": "Ana"}}}),
            number("+14155550199"),
        );
        let form = pairs(&create_message_form(&message, None, OffsetDateTime::now_utc()));
        assert_eq!(form["To"], "whatsapp:+14155550100");
        assert_eq!(form["From"], "whatsapp:+14155550199");
        assert_eq!(form["ContentSid"], "HX123");
        assert_eq!(form["ContentVariables"], r#"{"1":"Ana"}"#);
        assert!(!form.contains_key("Body") && !form.contains_key("ValidityPeriod"));
    }

    #[test]
    fn a_messaging_service_replaces_from_and_validity_is_clamped() {
        let now = OffsetDateTime::now_utc();
        let message = outbound(
            serde_json::json!({"version": 1, "message_id": "m", "tenant_id": "t", "channel": "sms",
                "to": "+14155550100", "body": "x", "expires_at": "2099-01-01T00:00:00Z"}),
            Sender::MessagingService(format!("MG{}", "0".repeat(32))),
        );
        let form = pairs(&create_message_form(&message, None, now));
        assert!(form["MessagingServiceSid"].starts_with("MG") && !form.contains_key("From"));
        assert_eq!(form["ValidityPeriod"], "36000");
    }
}
