//! The message envelope, version 1: what producers put on the message log.
//!
//! Parsed with simd-json straight into domain types; every error names the offending field.
//! The schema is documented in `docs/envelope.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use simd_json::prelude::{ValueAsObject, ValueAsScalar, ValueObjectAccess};
use time::OffsetDateTime;

use crate::address::{EmailAddress, PhoneNumber};
use crate::channel::{Channel, Priority, Recipient, Sender};
use crate::ids::{CampaignId, ContactId, MessageId, TenantId};
use crate::rules;

/// The only envelope version this build reads and writes.
pub const ENVELOPE_VERSION: u64 = 1;
/// The largest encoded envelope accepted, in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// The longest SMS body Twilio accepts, in characters.
pub const MAX_SMS_BODY_CHARS: usize = 1_600;
/// The longest WhatsApp body accepted, in characters.
pub const MAX_WHATSAPP_BODY_CHARS: usize = 4_096;
/// The most tags one envelope may carry.
pub const MAX_TAGS: usize = 32;
/// The longest tag key, in characters.
pub const MAX_TAG_KEY_CHARS: usize = 64;
/// The longest tag value, in characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// The tag marking the product's reply to a HELP, STOP or START keyword (its value: `help`,
/// `stop` or `start`). Carriers require these replies even to a recipient who just opted out,
/// so such a message skips the suppression and consent checks; the admin API refuses the tag
/// from tenants.
pub const KEYWORD_REPLY_TAG: &str = "keyword_reply";

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The encoded envelope is larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// The size received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not UTF-8.
    #[error("envelope is not valid UTF-8")]
    InvalidUtf8,
    /// The bytes are not a JSON object.
    #[error("envelope is not a JSON object: {0}")]
    Malformed(String),
    /// The `version` field is absent or not a number.
    #[error("version: must be present and a positive integer")]
    MissingVersion,
    /// The version is not one this build reads.
    #[error("version: {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u64),
    /// A field is missing, of the wrong type or invalid.
    #[error("{field}: {reason}")]
    Field {
        /// The field's name (a dotted path for nested fields).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl EnvelopeError {
    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::TooLarge { .. } => "envelope_too_large",
            EnvelopeError::InvalidUtf8 => "invalid_utf8",
            EnvelopeError::Malformed(_) => "malformed_json",
            EnvelopeError::MissingVersion => "missing_version",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::Field { .. } => "invalid_field",
        }
    }

    /// The offending field, where there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            EnvelopeError::Field { field, .. } => Some(field),
            EnvelopeError::MissingVersion | EnvelopeError::UnsupportedVersion(_) => Some("version"),
            _ => None,
        }
    }

    fn field_error(field: &str, reason: impl ToString) -> Self {
        EnvelopeError::Field {
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// What a message says: free text, an email's own parts, or a provider template with its
/// variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Free text (SMS, WhatsApp).
    Body(String),
    /// An email's text part, HTML part, or both (at least one).
    Email(EmailParts),
    /// A template held at the provider (SES template name, Twilio Content SID).
    Template {
        /// The template's id at the provider.
        id: String,
        /// Values for the template's placeholders.
        variables: BTreeMap<String, String>,
    },
}

/// The parts of an email written by the producer: at least one of them is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailParts {
    /// The plain-text part (`body`).
    pub text: Option<String>,
    /// The HTML part (`html`).
    pub html: Option<String>,
}

/// One message to send, parsed and valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The producer's id for the message: the idempotency key.
    pub message_id: MessageId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// The campaign it is part of, if any.
    pub campaign_id: Option<CampaignId>,
    /// The contact record of the recipient, if any.
    pub contact_id: Option<ContactId>,
    /// The channel it goes out on.
    pub channel: Channel,
    /// Who receives it.
    pub to: Recipient,
    /// A sender chosen by the producer instead of the tenant's default.
    pub from: Option<Sender>,
    /// Its lane.
    pub priority: Priority,
    /// What it says.
    pub content: Content,
    /// The email subject (email with its own parts only).
    pub subject: Option<String>,
    /// Not to be sent before this time.
    pub not_before: Option<OffsetDateTime>,
    /// Not to be sent after this time.
    pub expires_at: Option<OffsetDateTime>,
    /// Free-form labels carried to status events.
    pub tags: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTemplate {
    id: String,
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireV1 {
    version: u64,
    message_id: MessageId,
    tenant_id: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    campaign_id: Option<CampaignId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contact_id: Option<ContactId>,
    channel: Channel,
    to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(default)]
    priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<WireTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    not_before: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
}

impl Envelope {
    /// Parses an encoded envelope.
    ///
    /// The fast path deserializes with serde_json, which beat simd-json on our envelopes (a
    /// few hundred bytes: 0.86 against 1.09 us for an SMS, `benches/benches/envelope.rs`); only
    /// when that fails is the input parsed again with simd-json, more slowly, to say exactly
    /// what is wrong and where.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        match serde_json::from_slice::<WireV1>(bytes) {
            Ok(wire) if wire.version == ENVELOPE_VERSION => Self::from_wire(wire),
            Ok(wire) => Err(EnvelopeError::UnsupportedVersion(wire.version)),
            Err(_) => Err(Self::explain(bytes.to_vec())),
        }
    }

    /// The same parse with simd-json's serde deserializer on the fast path: kept so that the
    /// benchmark comparing the two (`benches/benches/envelope.rs`) can be run again, as
    /// envelopes or the libraries change.
    pub fn parse_with_simd_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        let mut scratch = bytes.to_vec();
        match simd_json::serde::from_slice::<WireV1>(&mut scratch) {
            Ok(wire) if wire.version == ENVELOPE_VERSION => Self::from_wire(wire),
            Ok(wire) => Err(EnvelopeError::UnsupportedVersion(wire.version)),
            Err(_) => Err(Self::explain(bytes.to_vec())),
        }
    }

    /// Why `bytes` do not deserialize: version first (an unknown version may have other
    /// fields), then the first offending field with its path.
    fn explain(mut bytes: Vec<u8>) -> EnvelopeError {
        let value = match simd_json::to_borrowed_value(&mut bytes) {
            Ok(value) => value,
            Err(err) if matches!(err.error(), simd_json::ErrorType::InvalidUtf8) => return EnvelopeError::InvalidUtf8,
            Err(err) => return EnvelopeError::Malformed(err.to_string()),
        };
        if value.as_object().is_none() {
            return EnvelopeError::Malformed("expected an object".to_owned());
        }
        match value.get("version").map(|version| version.as_u64()) {
            Some(Some(ENVELOPE_VERSION)) => {}
            Some(Some(other)) => return EnvelopeError::UnsupportedVersion(other),
            Some(None) | None => return EnvelopeError::MissingVersion,
        }
        match serde_path_to_error::deserialize::<_, WireV1>(value) {
            Ok(_) => EnvelopeError::Malformed("the envelope could not be read".to_owned()),
            Err(err) => {
                let path = err.path().to_string();
                let inner = err.into_inner();
                let reason = match inner.error() {
                    simd_json::ErrorType::Serde(message) => message.clone(),
                    _ => inner.to_string(),
                };
                EnvelopeError::Field {
                    field: field_name(&path, &reason),
                    reason,
                }
            }
        }
    }

    fn from_wire(wire: WireV1) -> Result<Self, EnvelopeError> {
        let channel = wire.channel;
        let to = Recipient::parse(channel, &wire.to).map_err(|err| EnvelopeError::field_error("to", err))?;
        let from = wire
            .from
            .map(|raw| Sender::parse(channel, &raw))
            .transpose()
            .map_err(|err| EnvelopeError::field_error("from", err))?;
        let content = match (channel, wire.body, wire.html, wire.template) {
            (_, Some(_), _, Some(_)) | (Channel::Email, None, Some(_), Some(_)) => {
                return Err(EnvelopeError::field_error(
                    "body",
                    "give either a body or a template, not both",
                ));
            }
            (Channel::Sms | Channel::Whatsapp, _, Some(_), _) => {
                return Err(EnvelopeError::field_error(
                    "html",
                    "only email messages have an html part",
                ));
            }
            (_, None, None, None) => {
                return Err(EnvelopeError::field_error("body", "a body or a template is required"));
            }
            (Channel::Email, text, html, None) => {
                if let Some(text) = &text {
                    check_body(channel, text)?;
                }
                if html.as_ref().is_some_and(String::is_empty) {
                    return Err(EnvelopeError::field_error("html", "must not be empty"));
                }
                Content::Email(EmailParts { text, html })
            }
            (_, Some(body), None, None) => {
                check_body(channel, &body)?;
                Content::Body(body)
            }
            (_, None, None, Some(template)) => {
                if let Err(hint) = rules::TEMPLATE_ID.check(&template.id) {
                    return Err(EnvelopeError::field_error("template.id", hint));
                }
                Content::Template {
                    id: template.id,
                    variables: template.variables,
                }
            }
        };
        match (&content, &wire.subject, channel) {
            (Content::Email(_), None, Channel::Email) => {
                return Err(EnvelopeError::field_error(
                    "subject",
                    "an email with a body or html needs a subject",
                ));
            }
            (_, Some(_), Channel::Sms | Channel::Whatsapp) => {
                return Err(EnvelopeError::field_error(
                    "subject",
                    "only email messages have a subject",
                ));
            }
            (_, Some(subject), Channel::Email) if !rules::SUBJECT.matches(subject) => {
                return Err(EnvelopeError::field_error("subject", rules::SUBJECT.hint));
            }
            _ => {}
        }
        if let (Some(not_before), Some(expires_at)) = (wire.not_before, wire.expires_at)
            && expires_at <= not_before
        {
            return Err(EnvelopeError::field_error(
                "expires_at",
                "must be later than not_before",
            ));
        }
        if wire.tags.len() > MAX_TAGS {
            return Err(EnvelopeError::field_error("tags", format!("at most {MAX_TAGS} tags")));
        }
        if let Some((key, _)) = wire.tags.iter().find(|(key, value)| {
            !(1..=MAX_TAG_KEY_CHARS).contains(&key.chars().count()) || value.chars().count() > MAX_TAG_VALUE_CHARS
        }) {
            return Err(EnvelopeError::field_error(
                &format!("tags.{key}"),
                format!("keys must be 1 to {MAX_TAG_KEY_CHARS} characters and values at most {MAX_TAG_VALUE_CHARS}"),
            ));
        }
        Ok(Envelope {
            message_id: wire.message_id,
            tenant_id: wire.tenant_id,
            campaign_id: wire.campaign_id,
            contact_id: wire.contact_id,
            channel,
            to,
            from,
            priority: wire.priority,
            content,
            subject: wire.subject,
            not_before: wire.not_before,
            expires_at: wire.expires_at,
            tags: wire.tags,
        })
    }

    /// Encodes the envelope as version-1 JSON, the form [`Envelope::parse`] reads.
    pub fn to_json(&self) -> Vec<u8> {
        let (body, html, template) = match &self.content {
            Content::Body(body) => (Some(body.clone()), None, None),
            Content::Email(parts) => (parts.text.clone(), parts.html.clone(), None),
            Content::Template { id, variables } => (
                None,
                None,
                Some(WireTemplate {
                    id: id.clone(),
                    variables: variables.clone(),
                }),
            ),
        };
        let to = match (&self.to, self.channel) {
            (Recipient::Phone(number), Channel::Whatsapp) => number.whatsapp_address(),
            (recipient, _) => recipient.to_string(),
        };
        let wire = WireV1 {
            version: ENVELOPE_VERSION,
            message_id: self.message_id.clone(),
            tenant_id: self.tenant_id.clone(),
            campaign_id: self.campaign_id.clone(),
            contact_id: self.contact_id.clone(),
            channel: self.channel,
            to,
            from: self.from.as_ref().map(ToString::to_string),
            priority: self.priority,
            body,
            html,
            template,
            subject: self.subject.clone(),
            not_before: self.not_before,
            expires_at: self.expires_at,
            tags: self.tags.clone(),
        };
        serde_json::to_vec(&wire).expect("an envelope always encodes")
    }

    /// The recipient as a phone number, for SMS and WhatsApp.
    pub fn phone_recipient(&self) -> Option<&PhoneNumber> {
        match &self.to {
            Recipient::Phone(number) => Some(number),
            Recipient::Email(_) => None,
        }
    }

    /// The recipient as an email address, for email.
    pub fn email_recipient(&self) -> Option<&EmailAddress> {
        match &self.to {
            Recipient::Email(address) => Some(address),
            Recipient::Phone(_) => None,
        }
    }

    /// Whether the message is the product's reply to a HELP, STOP or START keyword.
    pub fn is_keyword_reply(&self) -> bool {
        self.tags.contains_key(KEYWORD_REPLY_TAG)
    }

    /// Whether the message may no longer be sent at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|expires_at| expires_at <= now)
    }
}

fn check_body(channel: Channel, body: &str) -> Result<(), EnvelopeError> {
    if body.is_empty() {
        return Err(EnvelopeError::field_error("body", "must not be empty"));
    }
    let max = match channel {
        Channel::Sms => MAX_SMS_BODY_CHARS,
        Channel::Whatsapp => MAX_WHATSAPP_BODY_CHARS,
        Channel::Email => return Ok(()),
    };
    if body.chars().count() > max {
        return Err(EnvelopeError::field_error(
            "body",
            format!("at most {max} characters for {channel}"),
        ));
    }
    Ok(())
}

/// The field an error is about: serde reports a missing field at its parent's path and names it
/// only in the message.
fn field_name(path: &str, reason: &str) -> String {
    let missing = reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (".", None) => "envelope".to_owned(),
        (path, None) => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn sms() -> Value {
        json!({
            "version": 1,
            "message_id": "m-1",
            "tenant_id": "acme",
            "campaign_id": "spring",
            "channel": "sms",
            "to": "+14155550100",
            "priority": "transactional",
            "body": "Your code is 123456",
            "expires_at": "2026-11-24T12:00:00Z",
            "tags": {"kind": "otp"}
        })
    }

    fn parse(value: &Value) -> Result<Envelope, EnvelopeError> {
        Envelope::parse(&serde_json::to_vec(value).unwrap())
    }

    fn field_of(value: &Value) -> Option<String> {
        parse(value).unwrap_err().field().map(str::to_owned)
    }

    #[test]
    fn parses_a_full_sms() {
        let envelope = parse(&sms()).unwrap();
        assert_eq!(envelope.message_id.as_str(), "m-1");
        assert_eq!(envelope.channel, Channel::Sms);
        assert_eq!(envelope.priority, Priority::Transactional);
        assert_eq!(envelope.content, Content::Body("Your code is 123456".into()));
        assert_eq!(envelope.tags["kind"], "otp");
        assert!(envelope.is_expired(time::macros::datetime!(2026-11-24 12:00 UTC)));
        assert!(!envelope.is_expired(time::macros::datetime!(2026-11-24 11:59 UTC)));
    }

    #[test]
    fn both_json_libraries_parse_alike() {
        let mut email = sms();
        email["channel"] = json!("email");
        email["to"] = json!("ana@example.com");
        email["subject"] = json!("Hello");
        for value in [sms(), email] {
            let bytes = serde_json::to_vec(&value).unwrap();
            assert_eq!(
                Envelope::parse_with_simd_json(&bytes).unwrap(),
                Envelope::parse(&bytes).unwrap()
            );
        }
        let missing = br#"{"version": 1, "message_id": "m-1"}"#;
        assert_eq!(
            Envelope::parse_with_simd_json(missing).unwrap_err().field(),
            Envelope::parse(missing).unwrap_err().field()
        );
    }

    #[test]
    fn round_trips_through_json() {
        let mut whatsapp = sms();
        whatsapp["channel"] = json!("whatsapp");
        whatsapp["to"] = json!("whatsapp:+14155550100");
        whatsapp["body"] = Value::Null;
        whatsapp["template"] = json!({"id": "HX0123", "variables": {"1": "Ana"}});
        let mut email = sms();
        email["channel"] = json!("email");
        email["to"] = json!("ana@example.com");
        email["from"] = json!("news@example.com");
        email["subject"] = json!("Hello");
        for value in [sms(), whatsapp, email] {
            let value = strip_nulls(value);
            let envelope = parse(&value).unwrap();
            let bytes = envelope.to_json();
            assert_eq!(Envelope::parse(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn an_email_carries_text_html_or_both() {
        let mut email = sms();
        email["channel"] = json!("email");
        email["to"] = json!("ana@example.com");
        email["subject"] = json!("Spring sale");
        email["html"] = json!("<p>Half off</p>");
        let both = parse(&email).unwrap();
        assert_eq!(
            both.content,
            Content::Email(EmailParts {
                text: Some("Your code is 123456".into()),
                html: Some("<p>Half off</p>".into()),
            })
        );
        assert_eq!(Envelope::parse(&both.to_json()).unwrap(), both);
        email.as_object_mut().unwrap().remove("body");
        let html_only = parse(&email).unwrap();
        assert_eq!(
            html_only.content,
            Content::Email(EmailParts {
                text: None,
                html: Some("<p>Half off</p>".into()),
            })
        );
        assert_eq!(Envelope::parse(&html_only.to_json()).unwrap(), html_only);

        let mut empty = email.clone();
        empty["html"] = json!("");
        assert_eq!(field_of(&empty).as_deref(), Some("html"));
        let mut no_subject = email.clone();
        no_subject.as_object_mut().unwrap().remove("subject");
        assert_eq!(field_of(&no_subject).as_deref(), Some("subject"));
        let mut with_template = email.clone();
        with_template["template"] = json!({"id": "spring"});
        assert_eq!(field_of(&with_template).as_deref(), Some("body"));
        let mut sms_html = sms();
        sms_html["html"] = json!("<p>hi</p>");
        assert_eq!(field_of(&sms_html).as_deref(), Some("html"));
    }

    fn strip_nulls(mut value: Value) -> Value {
        value.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        value
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let envelope = parse(&json!({
            "version": 1, "message_id": "m", "tenant_id": "t", "channel": "sms",
            "to": "+14155550100", "body": "hi"
        }))
        .unwrap();
        assert_eq!(envelope.priority, Priority::Marketing);
        assert!(envelope.campaign_id.is_none() && envelope.expires_at.is_none() && envelope.tags.is_empty());
    }

    #[test]
    fn each_missing_required_field_is_named() {
        for field in ["message_id", "tenant_id", "channel", "to"] {
            let mut value = sms();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(
                field_of(&value).as_deref(),
                Some(field),
                "removing {field}: {:?}",
                parse(&value)
            );
        }
        let mut value = sms();
        value.as_object_mut().unwrap().remove("body");
        assert_eq!(field_of(&value).as_deref(), Some("body"));
        let mut value = sms();
        value.as_object_mut().unwrap().remove("version");
        assert_eq!(parse(&value), Err(EnvelopeError::MissingVersion));
    }

    #[test]
    fn wrong_types_are_named() {
        let cases = [
            ("message_id", json!(42)),
            ("tenant_id", json!(["acme"])),
            ("channel", json!("fax")),
            ("priority", json!("urgent")),
            ("to", json!(14155550100u64)),
            ("expires_at", json!("tomorrow")),
            ("tags", json!("otp")),
            ("body", json!(true)),
        ];
        for (field, bad) in cases {
            let mut value = sms();
            value[field] = bad;
            assert_eq!(field_of(&value).as_deref(), Some(field), "bad {field}");
        }
        let mut value = sms();
        value["tags"] = json!({"kind": 1});
        assert_eq!(field_of(&value).as_deref(), Some("tags.kind"));
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            ("to", json!("555-0100")),
            ("message_id", json!("has space")),
            ("tenant_id", json!("")),
            ("from", json!("not-a-number")),
            ("body", json!("")),
            ("body", json!("x".repeat(1601))),
            ("subject", json!("only email has one")),
        ];
        for (field, bad) in cases {
            let mut value = sms();
            value[field] = bad;
            assert_eq!(field_of(&value).as_deref(), Some(field), "bad {field}");
        }
        let mut value = sms();
        value["not_before"] = json!("2026-11-24T13:00:00Z");
        assert_eq!(field_of(&value).as_deref(), Some("expires_at"));
        let mut value = sms();
        value["template"] = json!({"id": "HX1"});
        assert_eq!(field_of(&value).as_deref(), Some("body"));
        let mut value = sms();
        value["channel"] = json!("email");
        value["to"] = json!("ana@example.com");
        assert_eq!(field_of(&value).as_deref(), Some("subject"));
    }

    #[test]
    fn unknown_fields_are_named() {
        let mut value = sms();
        value["prioirty"] = json!("marketing");
        let err = parse(&value).unwrap_err();
        assert_eq!(err.field(), Some("prioirty"));
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn unknown_versions_are_rejected() {
        let mut value = sms();
        value["version"] = json!(2);
        value["something_new"] = json!(true);
        assert_eq!(parse(&value), Err(EnvelopeError::UnsupportedVersion(2)));
        value["version"] = json!("1");
        assert_eq!(parse(&value), Err(EnvelopeError::MissingVersion));
    }

    #[test]
    fn oversized_envelopes_are_rejected() {
        let mut value = sms();
        value["channel"] = json!("email");
        value["to"] = json!("ana@example.com");
        value["subject"] = json!("big");
        value["body"] = json!("x".repeat(MAX_ENVELOPE_BYTES));
        assert!(matches!(parse(&value), Err(EnvelopeError::TooLarge { .. })));
    }

    #[test]
    fn invalid_utf8_and_garbage_are_rejected() {
        let bytes = b"{\"version\":1,\"message_id\":\"m\",\"body\":\"\xff\xfe\"}".to_vec();
        assert_eq!(Envelope::parse(&bytes), Err(EnvelopeError::InvalidUtf8));
        for garbage in [&b""[..], b"{", b"[]", b"42", b"null", b"{\"version\":1,}"] {
            let bytes = garbage.to_vec();
            assert!(
                matches!(Envelope::parse(&bytes), Err(EnvelopeError::Malformed(_))),
                "{garbage:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_envelopes(field in "[a-z_]{1,12}", text in ".{0,40}", number in any::<i64>()) {
            let mut value = sms();
            value[field.as_str()] = json!(text);
            let _ = parse(&value);
            value[field.as_str()] = json!(number);
            let _ = parse(&value);
        }

        #[test]
        fn valid_envelopes_round_trip(id in "[A-Za-z0-9_.:-]{1,64}", body in "[ -~]{1,300}", number in "\\+1[2-9][0-9]{9}") {
            let mut value = sms();
            value["message_id"] = json!(id);
            value["body"] = json!(body);
            value["to"] = json!(number);
            let envelope = parse(&value).unwrap();
            let bytes = envelope.to_json();
            prop_assert_eq!(Envelope::parse(&bytes).unwrap(), envelope);
        }
    }
}
