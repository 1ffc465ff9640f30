//! The OpenAPI 3.1 document of the admin API, served at `GET /openapi.json`.
//!
//! Every `/v1` and `/webhooks` route is registered in [`crate::router`] through utoipa-axum's
//! `OpenApiRouter` and `routes!`, which adds the route and its `#[utoipa::path]` operation
//! together, so the document cannot list a route that is not served or miss one that is.
//! `/openapi.json` itself is added from [`DocumentDoc`]. The operational endpoints (`/metrics`,
//! `/healthz`, `/readyz`) are not part of this API: they are served on their own listener
//! (`admin.ops_listen`). Bodies that handlers parse by hand (to answer field-level errors) are
//! described by the schema types below.

use std::collections::BTreeMap;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's title.
pub const TITLE: &str = "EngageNinja Dispatch admin API";
/// The security scheme of tenant routes: `Authorization: Bearer enk_...`.
pub const TENANT_SCHEME: &str = "bearer";
/// The security scheme of platform routes (`/v1/admin`): the platform-admin key as a bearer token.
pub const PLATFORM_SCHEME: &str = "platform_admin";

/// The document's skeleton: info, tags, security schemes and shared schemas; the operations come
/// from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "EngageNinja Dispatch admin API",
        description = "Tenants submit messages and campaigns, manage channel credentials, business \
                       information and API keys under `/v1` with their API key; the platform \
                       manages tenants, plans and demo tenants under `/v1/admin` with the \
                       platform-admin key. Providers call `/webhooks`. Errors answer \
                       `{\"error\": {\"code\", \"message\", \"field\", \"fields\"}}`."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(crate::campaigns::CampaignCounts)),
    tags(
        (name = "messages", description = "Message submission and status"),
        (name = "channels", description = "Channel credentials and SMS onboarding status"),
        (name = "business-info", description = "The A2P 10DLC business information form"),
        (name = "onboarding", description = "The A2P 10DLC workflow"),
        (name = "campaigns", description = "Campaign preflight, sending and live counts"),
        (name = "usage", description = "Quota use"),
        (name = "audit", description = "The tenant's audit log"),
        (name = "api-keys", description = "The tenant's own API keys"),
        (name = "platform", description = "Platform administration: tenants, plans, demo tenants"),
        (name = "webhooks", description = "Provider callbacks, authenticated by their signatures"),
        (name = "ops", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer schemes of tenant and platform keys.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            TENANT_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("enk_...")
                    .description(Some("a tenant's API key: `Authorization: Bearer enk_...`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            PLATFORM_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "the platform-admin key (`admin.platform_admin_key`); a tenant key answers 403",
                    ))
                    .build(),
            ),
        );
    }
}

/// This document's own endpoint.
#[derive(OpenApi)]
#[openapi(paths(openapi_json))]
pub struct DocumentDoc;

/// `GET /openapi.json` (documentation only: served by [`crate::router`]).
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "ops_openapi_json",
    tag = "ops",
    responses(
        (status = 200, description = "this OpenAPI 3.1 document", content_type = "application/json", body = Object),
    )
)]
#[allow(dead_code)]
fn openapi_json() {}

/// A delivery channel.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Channel)]
#[allow(dead_code)]
pub enum ChannelSchema {
    /// SMS through Twilio.
    Sms,
    /// WhatsApp through Twilio.
    Whatsapp,
    /// Email through AWS SES.
    Email,
}

/// A message's status.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MessageStatus)]
#[allow(dead_code)]
pub enum MessageStatusSchema {
    /// Accepted, not yet handed to a provider.
    Queued,
    /// The provider call's outcome is unknown; awaits reconciliation.
    Unknown,
    /// The provider accepted it.
    Sent,
    /// The handset or mailbox got it.
    Delivered,
    /// Read receipt.
    Read,
    /// Terminal: refused permanently.
    Failed,
    /// Terminal: the carrier could not deliver, or a hard bounce.
    Undelivered,
    /// Terminal: validity ran out.
    Expired,
    /// Terminal: refused at admission.
    Rejected,
    /// Terminal: the recipient opted out or is suppressed.
    Suppressed,
}

/// One entry of a message's status history.
#[derive(ToSchema)]
#[schema(as = StatusChange)]
#[allow(dead_code)]
pub struct StatusChangeSchema {
    /// The status reached.
    pub status: MessageStatusSchema,
    /// When (RFC 3339).
    #[schema(format = DateTime)]
    pub at: String,
    /// Its reason code, if any.
    pub reason: Option<String>,
}

/// A 422 answer of a submission: every envelope rejected (each with its reason), or the request
/// itself invalid.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SubmitRejection {
    /// Every envelope was rejected.
    AllRejected(crate::messages::SubmitResponse),
    /// The request is invalid (`messages` missing, empty or too long).
    Invalid(crate::error::ErrorBody<'static>),
}

/// `POST /v1/messages` body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SubmitRequest {
    /// 1 to 1,000 message envelopes (`docs/envelope.md`); `version` and `tenant_id` may be left
    /// out, `message_id` too (one is generated; give your own for idempotency).
    #[schema(min_items = 1, max_items = 1000)]
    pub messages: Vec<EnvelopeSchema>,
}

/// A message envelope as submitted over HTTP (see `docs/envelope.md`).
#[derive(ToSchema)]
#[schema(as = Envelope)]
#[allow(dead_code)]
pub struct EnvelopeSchema {
    /// `1`; filled in when absent.
    #[schema(nullable = false, minimum = 1, maximum = 1)]
    pub version: Option<u32>,
    /// The idempotency key: 1-128 of `A-Z a-z 0-9 _ - . :`; generated when absent.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub message_id: Option<String>,
    /// Taken from the API key; a value other than the key's tenant is refused.
    #[schema(nullable = false, read_only)]
    pub tenant_id: Option<String>,
    /// The campaign it belongs to: 1-128 of `A-Z a-z 0-9 _ - . :`.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub campaign_id: Option<String>,
    /// The contact it is for: 1-128 of `A-Z a-z 0-9 _ - . :`.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_.:-]{1,128}$")]
    pub contact_id: Option<String>,
    /// The channel.
    pub channel: ChannelSchema,
    /// SMS: E.164; WhatsApp: E.164 or `whatsapp:+1...`; email: an address.
    #[schema(min_length = 1)]
    pub to: String,
    /// Overrides the tenant's sender.
    #[schema(nullable = false, min_length = 1)]
    pub from: Option<String>,
    /// `transactional` (served first) or `marketing` (the default).
    #[schema(nullable = false, value_type = Option<PrioritySchema>)]
    pub priority: Option<String>,
    /// The text; one of `body` and `template` is required (SMS at most 1,600 characters,
    /// WhatsApp 4,096).
    #[schema(nullable = false, min_length = 1)]
    pub body: Option<String>,
    /// `{"id": "...", "variables": {"name": "value"}}`: an SES template or a Twilio Content SID.
    #[schema(nullable = false)]
    pub template: Option<TemplateSchema>,
    /// Email with `body`: the subject, 1-998 characters.
    #[schema(nullable = false, min_length = 1, max_length = 998)]
    pub subject: Option<String>,
    /// Not sent before this time (RFC 3339).
    #[schema(nullable = false, format = DateTime, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    pub not_before: Option<String>,
    /// Not sent after this time (RFC 3339).
    #[schema(nullable = false, format = DateTime, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    pub expires_at: Option<String>,
    /// At most 32 string tags.
    #[schema(nullable = false)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// One server-sent event of `GET /v1/campaigns/{id}/events` (`event: counts`, `data: {...}`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CountsEvent {
    /// Always `counts`.
    #[schema(pattern = "^counts$")]
    pub event: String,
    /// A CampaignCounts object, as JSON.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// Whether a tenant may send.
#[derive(ToSchema)]
#[schema(as = TenantStatus)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatusSchema {
    /// Sends normally.
    Active,
    /// Every message is refused.
    Suspended,
}

/// A message's priority.
#[derive(ToSchema)]
#[schema(as = Priority)]
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub enum PrioritySchema {
    /// Served first.
    Transactional,
    /// The default.
    Marketing,
}

/// A template reference and its variables.
#[derive(ToSchema)]
#[schema(as = Template)]
#[allow(dead_code)]
pub struct TemplateSchema {
    /// An SES template name or a Twilio Content SID (`HX...`).
    pub id: String,
    /// The template's variables.
    pub variables: Option<BTreeMap<String, String>>,
}

/// `POST /v1/campaigns/{id}/send` body: the fields shared by every recipient, and the recipients.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CampaignSendRequest {
    /// The channel.
    pub channel: ChannelSchema,
    /// Overrides the tenant's sender.
    pub from: Option<String>,
    /// `transactional` or `marketing` (the default).
    pub priority: Option<String>,
    /// The text; one of `body` and `template` is required.
    pub body: Option<String>,
    /// The template; each recipient's `variables` are merged into its variables.
    pub template: Option<TemplateSchema>,
    /// Email with `body`: the subject.
    pub subject: Option<String>,
    /// Not sent after this time (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// At most 32 string tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// 1 to 1,000 recipients: addresses, or objects with their own variables.
    #[schema(min_items = 1, max_items = 1000)]
    pub recipients: Vec<CampaignRecipientSchema>,
}

/// One campaign recipient: an address, or an object.
#[derive(ToSchema)]
#[serde(untagged)]
#[schema(as = CampaignRecipient)]
#[allow(dead_code)]
pub enum CampaignRecipientSchema {
    /// The recipient's address.
    Address(String),
    /// The recipient with its contact id and template variables.
    Detailed(CampaignRecipientDetail),
}

/// A campaign recipient with its own fields.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CampaignRecipientDetail {
    /// The recipient's address.
    pub to: String,
    /// The contact it is for.
    pub contact_id: Option<String>,
    /// Template variables for this recipient.
    pub variables: Option<BTreeMap<String, String>>,
}

/// `POST /v1/channels/{channel}` body: Twilio credentials (`sms`, `whatsapp`) or AWS ones (`email`).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ChannelCredentialsRequest {
    /// For `sms` and `whatsapp`.
    Twilio(TwilioCredentialsRequest),
    /// For `email`.
    Ses(SesCredentialsRequest),
}

/// A Twilio account's credentials.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TwilioCredentialsRequest {
    /// `AC` followed by 32 hexadecimal digits.
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub account_sid: String,
    /// The account's auth token (sealed, never answered).
    #[schema(max_length = 256)]
    pub auth_token: String,
}

/// AWS credentials and the email sender.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SesCredentialsRequest {
    /// 16 to 128 letters and digits.
    #[schema(min_length = 16, max_length = 128)]
    pub access_key_id: String,
    /// The secret key (sealed, never answered).
    #[schema(max_length = 256)]
    pub secret_access_key: String,
    /// An AWS region such as `us-east-1`.
    pub region: String,
    /// The sender address.
    pub from_address: String,
    /// An SES configuration set (letters, digits, `-`, `_`) whose SNS destination brings events back.
    pub configuration_set: Option<String>,
    /// The tenant's own SNS topic of that destination, subscribed to
    /// `POST /webhooks/ses?tenant=<tenant id>`: its events are accepted for this tenant only.
    #[schema(pattern = "^arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")]
    pub sns_topic_arn: Option<String>,
}

/// `POST /webhooks/twilio/status` form (Twilio sends more fields; these are read).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioStatusForm {
    /// The account that sent the message: its stored token verifies the signature.
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub AccountSid: String,
    /// The message's SID.
    #[schema(pattern = "^(SM|MM)[0-9a-fA-F]{32}$")]
    pub MessageSid: String,
    /// Twilio's status (`sent`, `delivered`, `undelivered`, `failed`, `read`, ...).
    pub MessageStatus: String,
    /// Twilio's error code of a failure (21610: the recipient unsubscribed).
    pub ErrorCode: Option<String>,
}

/// `POST /webhooks/twilio/inbound` form (the fields read).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioInboundForm {
    /// The receiving account: its stored token verifies the signature.
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub AccountSid: String,
    /// The sender (E.164, or `whatsapp:+1...`).
    pub From: String,
    /// The receiving number.
    pub To: Option<String>,
    /// The text: STOP, START, HELP and their synonyms change consent.
    pub Body: Option<String>,
    /// The inbound message's SID: each is applied once.
    #[schema(pattern = "^(SM|MM)[0-9a-fA-F]{32}$")]
    pub MessageSid: String,
}

/// `POST /webhooks/twilio/brand-status` form (the fields read).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioBrandStatusForm {
    /// The account of the brand: its stored token verifies the signature.
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub AccountSid: String,
    /// The brand registration's SID (absent in bundle callbacks, which are ignored).
    pub BrandRegistrationSid: Option<String>,
    /// The brand's status (`APPROVED`, `FAILED`, ...).
    pub BrandStatus: Option<String>,
    /// The carriers' trust score.
    pub BrandScore: Option<String>,
    /// Why the brand failed.
    pub FailureReason: Option<String>,
}

/// `POST /webhooks/ses` body: an SNS message (sent as `text/plain` JSON), signed by SNS.
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct SnsMessageRequest {
    /// `Notification`, `SubscriptionConfirmation` or `UnsubscribeConfirmation`.
    pub Type: String,
    /// The SNS message id.
    pub MessageId: String,
    /// The topic; must be the configured one.
    pub TopicArn: String,
    /// The SES event (JSON text) of a notification.
    pub Message: String,
    /// When SNS published it.
    pub Timestamp: String,
    /// `1` (SHA-1) or `2` (SHA-256).
    pub SignatureVersion: String,
    /// The RSA signature (base64).
    pub Signature: String,
    /// The signing certificate's URL (an SNS host over HTTPS).
    pub SigningCertURL: String,
    /// A subscription confirmation's URL, fetched to confirm.
    pub SubscribeURL: Option<String>,
    /// A notification's subject.
    pub Subject: Option<String>,
    /// The subscription confirmation's token.
    pub Token: Option<String>,
}
