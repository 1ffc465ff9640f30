//! The request bodies that handlers parse by hand, described from the rules and field tables
//! the parsers use (`common::rules`, [`crate::form`]), so that what the document promises is
//! what the server checks. Every object is closed (`additionalProperties: false`), as the
//! parsers refuse unknown fields; an optional field may be `null`, which counts as absent.

use common::Channel;
use common::envelope::{MAX_SMS_BODY_CHARS, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS, MAX_WHATSAPP_BODY_CHARS};
use common::rules::{self, TextRule};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};

use crate::form::{Field, Kind};

/// `type`, with `null` allowed when `nullable`.
fn of_type(kind: Type, nullable: bool) -> SchemaType {
    if nullable {
        SchemaType::from_iter([kind, Type::Null])
    } else {
        SchemaType::new(kind)
    }
}

/// A string following `rule`'s pattern, within `bounds` (the rule's own when `None`); [`text`]
/// adds the rule's second pattern.
fn string(rule: &TextRule, bounds: Option<(usize, usize)>, description: &str, nullable: bool) -> ObjectBuilder {
    let (min, max) = bounds.unwrap_or((rule.min_chars, rule.max_chars));
    ObjectBuilder::new()
        .schema_type(of_type(Type::String, nullable))
        .pattern(Some(rule.pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(format!("{description} It {}.", rule.hint)))
}

/// A string following `rule`, within `bounds` (the rule's own when `None`).
fn text(rule: &TextRule, bounds: Option<(usize, usize)>, description: &str, nullable: bool) -> RefOr<Schema> {
    let string = string(rule, bounds, description, nullable);
    match rule.also {
        // One schema object holds one pattern: the second is a sibling in an `allOf`.
        Some(also) => AllOfBuilder::new()
            .item(string)
            .item(
                ObjectBuilder::new()
                    .schema_type(of_type(Type::String, nullable))
                    .pattern(Some(also)),
            )
            .into(),
        None => string.into(),
    }
}

/// An object that refuses properties it does not list.
fn closed(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
}

/// One of `values`, exactly.
fn choice(values: &[&str], description: &str, nullable: bool) -> ObjectBuilder {
    let values = values
        .iter()
        .map(|value| Value::from(*value))
        .chain(nullable.then_some(Value::Null));
    ObjectBuilder::new()
        .schema_type(of_type(Type::String, nullable))
        .enum_values(Some(values))
        .description(Some(description))
}

/// A map of strings to strings.
fn string_map(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
}

/// The schema of a body parsed by [`crate::form::parse`] against `fields`.
pub(crate) fn form_schema(description: &str, fields: &[Field]) -> RefOr<Schema> {
    let mut object = closed(description);
    for field in fields {
        let nullable = !field.required;
        let schema: RefOr<Schema> = match &field.kind {
            Kind::Text { rule, bounds } => text(rule, *bounds, field.description, nullable),
            Kind::Choice(values) => choice(values, field.description, nullable).into(),
            Kind::Texts {
                rule,
                min_chars,
                max_chars,
                min_items,
                max_items,
            } => ArrayBuilder::new()
                .schema_type(of_type(Type::Array, nullable))
                .items(text(rule, Some((*min_chars, *max_chars)), "One item.", false))
                .min_items(Some(*min_items))
                .max_items(Some(*max_items))
                .description(Some(field.description))
                .into(),
            Kind::Flag => ObjectBuilder::new()
                .schema_type(of_type(Type::Boolean, nullable))
                .description(Some(field.description))
                .into(),
            Kind::TextMap { key, value, max_items } => ObjectBuilder::new()
                .schema_type(of_type(Type::Object, nullable))
                .description(Some(field.description))
                .property_names(Some(string(key, None, "A name.", false)))
                .additional_properties(Some(string(value, None, "A value.", false)))
                .max_properties(Some(*max_items))
                .into(),
        };
        object = object.property(field.name, schema);
        if field.required {
            object = object.required(field.name);
        }
    }
    object.into()
}

/// What a message says.
#[derive(Clone, Copy, PartialEq)]
enum Content {
    /// A text body (for email, the text part, with an optional HTML part).
    Body,
    /// An email's HTML part alone.
    Html,
    /// A provider template.
    Template,
}

/// The rule of a recipient's address on `channel`.
fn recipient_rule(channel: Channel) -> &'static TextRule {
    match channel {
        Channel::Sms => &rules::E164,
        Channel::Whatsapp => &rules::WHATSAPP_ADDRESS,
        Channel::Email => &rules::EMAIL,
    }
}

/// A message's fields shared by envelopes and campaign sends: channel, sender, priority,
/// content, subject, times and tags.
fn message_fields(mut object: ObjectBuilder, channel: Channel, content: Content) -> ObjectBuilder {
    let sender = match channel {
        Channel::Sms => &rules::SMS_SENDER,
        Channel::Whatsapp => &rules::WHATSAPP_ADDRESS,
        Channel::Email => &rules::EMAIL,
    };
    let timestamp = |description: &str| {
        string(&rules::TIMESTAMP, None, description, true)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
    };
    object = object
        .property("channel", choice(&[channel.as_str()], "The channel.", false))
        .required("channel")
        .property("from", text(sender, None, "Overrides the tenant's sender.", true))
        .property(
            "priority",
            choice(
                &["transactional", "marketing"],
                "`transactional` (served first) or `marketing` (the default).",
                false,
            ),
        )
        .property("not_before", timestamp("Not sent before this time."))
        .property(
            "expires_at",
            timestamp("Not sent after this time; later than `not_before`."),
        )
        .property(
            "tags",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some("Labels carried to status events."))
                .max_properties(Some(MAX_TAGS))
                .property_names(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(MAX_TAG_KEY_CHARS)),
                ))
                .additional_properties(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(MAX_TAG_VALUE_CHARS)),
                )),
        );
    match content {
        Content::Body => {
            let mut body = ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .description(Some("The text."));
            body = match channel {
                Channel::Sms => body.max_length(Some(MAX_SMS_BODY_CHARS)),
                Channel::Whatsapp => body.max_length(Some(MAX_WHATSAPP_BODY_CHARS)),
                Channel::Email => body,
            };
            object = object.property("body", body).required("body");
            if channel == Channel::Email {
                object = object.property("html", html());
            }
        }
        Content::Html => object = object.property("html", html()).required("html"),
        Content::Template => {
            let template = closed("A template held at the provider, and its variables.")
                .property(
                    "id",
                    text(
                        &rules::TEMPLATE_ID,
                        None,
                        "An SES template name or a Twilio Content SID (`HX...`).",
                        false,
                    ),
                )
                .required("id")
                .property("variables", string_map("Values for the template's placeholders."));
            object = object.property("template", template).required("template");
        }
    }
    if channel == Channel::Email {
        let needs_subject = content != Content::Template;
        object = object.property("subject", text(&rules::SUBJECT, None, "The subject.", !needs_subject));
        if needs_subject {
            object = object.required("subject");
        }
    }
    object
}

/// The envelope's `version`: `1`, filled in when absent.
fn version() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(1))
        .description(Some("`1`; filled in when absent."))
}

/// An email's HTML part.
fn html() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .description(Some("The HTML part (email only)."))
}

/// Every (channel, content) pair, in a stable order: an HTML part alone is for email only.
fn variants() -> impl Iterator<Item = (Channel, Content)> {
    Channel::ALL.into_iter().flat_map(|channel| {
        let html = (channel == Channel::Email).then_some((channel, Content::Html));
        [Some((channel, Content::Body)), html, Some((channel, Content::Template))]
            .into_iter()
            .flatten()
    })
}

fn variant_name(channel: Channel, content: Content) -> String {
    let content = match content {
        Content::Body => "text",
        Content::Html => "html part",
        Content::Template => "template",
    };
    format!("{channel} with a {content}")
}

/// One message envelope as submitted over HTTP (`docs/envelope.md`): one variant per channel
/// and content.
fn envelope() -> OneOfBuilder {
    let id = |description: &str| text(&rules::MESSAGE_ID, None, description, true);
    variants().fold(OneOfBuilder::new(), |one_of, (channel, content)| {
        let object = closed(&format!("An envelope: {}.", variant_name(channel, content)))
            .property("version", version())
            .property(
                "message_id",
                text(
                    &rules::MESSAGE_ID,
                    None,
                    "The idempotency key; generated when absent.",
                    false,
                ),
            )
            .property(
                "tenant_id",
                string(
                    &rules::TENANT_ID,
                    None,
                    "Taken from the API key; another tenant's is refused.",
                    false,
                )
                .read_only(Some(true)),
            )
            .property("campaign_id", id("The campaign it belongs to."))
            .property("contact_id", id("The contact it is for."))
            .property("to", text(recipient_rule(channel), None, "The recipient.", false))
            .required("to");
        one_of.item(message_fields(object, channel, content))
    })
}

/// A campaign's recipients on `channel`: addresses, or objects with their own fields.
fn recipients(channel: Channel, max_recipients: usize) -> ArrayBuilder {
    let address = || text(recipient_rule(channel), None, "The recipient.", false);
    let detailed = closed("A recipient with its contact id and template variables.")
        .property("to", address())
        .required("to")
        .property(
            "contact_id",
            text(&rules::MESSAGE_ID, None, "The contact it is for.", true),
        )
        .property(
            "variables",
            string_map("Template variables for this recipient, merged into the template's."),
        );
    ArrayBuilder::new()
        .items(OneOfBuilder::new().item(address()).item(detailed))
        .min_items(Some(1))
        .max_items(Some(max_recipients))
        .description(Some("The recipients (each is sent once per campaign)."))
}

/// A campaign send of at most `max_recipients`: the shared fields and the recipients, one
/// variant per channel and content.
pub(crate) fn campaign_send(max_recipients: usize) -> RefOr<Schema> {
    let one_of = variants().fold(OneOfBuilder::new(), |one_of, (channel, content)| {
        let object = closed(&format!("A campaign send: {}.", variant_name(channel, content)))
            .property("version", version())
            .property("recipients", recipients(channel, max_recipients))
            .property(
                "send_at_local",
                text(
                    &rules::CLOCK_TIME,
                    None,
                    "Sends each recipient's message at this time of day in the recipient's local \
                     time (its number's area code, else the tenant's `time_zone`): the first such \
                     time from `not_before` (or now).",
                    false,
                ),
            )
            .property(
                "when_not_ready",
                choice(
                    &["reject", "hold"],
                    "What to do when the channel cannot send yet (brand under review, no active \
                     number, ...): `reject` (the default) answers 409 with the next action; \
                     `hold` keeps the messages until the channel is ready, then sends them.",
                    false,
                ),
            )
            .required("recipients");
        one_of.item(message_fields(object, channel, content))
    });
    one_of.into()
}

/// A submission of 1 to `max_batch` message envelopes.
pub(crate) fn submit(max_batch: usize) -> RefOr<Schema> {
    closed(&format!("1 to {max_batch} message envelopes."))
        .property(
            "messages",
            ArrayBuilder::new()
                .items(envelope())
                .min_items(Some(1))
                .max_items(Some(max_batch)),
        )
        .required("messages")
        .into()
}

/// Declares a body type whose schema is built by a function (the handler's module declares
/// its own, from its field table or limits).
macro_rules! body {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use body;

body!(
    /// `PUT /v1/admin/plans/{id}` body.
    PlanRequest => closed("A plan (the path names it).")
        .property(
            "name",
            text(&rules::LINE, Some((1, 200)), "Its display name.", false),
        )
        .required("name")
        .property(
            "monthly_quota",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "Monthly quota per channel (SMS in segments, others in messages); a channel left out has no quota.",
                ))
                .property_names(Some(choice(&["sms", "whatsapp", "email"], "A channel.", false)))
                .additional_properties(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0))
                        .maximum(Some(u64::MAX)),
                )),
        )
        .required("monthly_quota")
        .into()
);
