//! The OpenAPI 3.1 document of the admin API, served at `GET /openapi.json`.
//!
//! Every `/v1` and `/webhooks` route is registered in [`crate::router`] through utoipa-axum's
//! `OpenApiRouter` and `routes!`, which adds the route and its `#[utoipa::path]` operation
//! together, so the document cannot list a route that is not served or miss one that is.
//! `/openapi.json` itself is added from [`DocumentDoc`]. The operational endpoints (`/metrics`,
//! `/healthz`, `/readyz`) are not part of this API: they are served on their own listener
//! (`admin.ops_listen`). Bodies that handlers parse by hand (to answer field-level errors) are
//! described in `bodies` from the same field tables and rules their parsers use.

mod bodies;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{PathItem, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

pub(crate) use bodies::{PlanRequest, form_schema};
pub(crate) use bodies::{body, campaign_send, submit};

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
                       platform-admin key. Providers call `/webhooks`; mail clients call \
                       `/unsubscribe`. Errors answer \
                       `{\"error\": {\"code\", \"message\", \"field\", \"fields\"}}`."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "messages", description = "Message submission and status"),
        (name = "channels", description = "Channel credentials and SMS onboarding status"),
        (name = "business-info", description = "The A2P 10DLC business information form"),
        (name = "onboarding", description = "The A2P 10DLC workflow"),
        (name = "campaigns", description = "Campaign preflight, sending and live counts"),
        (name = "usage", description = "Quota use"),
        (name = "audit", description = "The tenant's audit log"),
        (name = "consent", description = "Suppressed recipients and opt-ins with their proof"),
        (name = "api-keys", description = "The tenant's own API keys"),
        (name = "platform", description = "Platform administration: tenants, plans, demo tenants"),
        (name = "webhooks", description = "Provider callbacks, authenticated by their signatures"),
        (name = "templates", description = "The tenant's email templates, in its SES account"),
        (name = "unsubscribe", description = "One-click unsubscribe links of marketing email (RFC 8058), authenticated by their sealed token"),
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

/// Lists `/v1/channels/{channel}` once per channel (`/v1/channels/sms`, ...): the body of a
/// save depends on the channel, which a path parameter cannot say. Applied to the complete
/// document (`crate::openapi()`), once the routes' paths are in.
pub struct ChannelPaths;

/// The templated path the handlers are registered under.
const CHANNEL_PATH: &str = "/v1/channels/{channel}";

impl Modify for ChannelPaths {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(templated) = openapi.paths.paths.remove(CHANNEL_PATH) else {
            return;
        };
        for channel in common::Channel::ALL {
            let mut item: PathItem = templated.clone();
            for operation in [&mut item.get, &mut item.post, &mut item.delete].into_iter().flatten() {
                if let Some(parameters) = operation.parameters.as_mut() {
                    parameters.retain(|parameter| parameter.name != "channel");
                }
                if let Some(id) = operation.operation_id.as_mut() {
                    id.push('_');
                    id.push_str(channel.as_str());
                }
            }
            if channel == common::Channel::Email
                && let Some(body) = item.post.as_mut().and_then(|post| post.request_body.as_mut())
            {
                for content in body.content.values_mut() {
                    content.schema = Some(RefOr::Ref(Ref::from_schema_name("SesCredentialsRequest")));
                }
            }
            openapi.paths.paths.insert(format!("/v1/channels/{channel}"), item);
        }
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
    /// How many media the message carries, each in `MediaUrl0`, `MediaUrl1`, ... (at most 10).
    pub NumMedia: Option<String>,
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

/// `POST /webhooks/twilio/sender-status` form (the fields read).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioSenderStatusForm {
    /// The account of the sender: its stored token verifies the signature.
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub AccountSid: String,
    /// The sender's SID (`XE...`); a callback without it is ignored.
    pub SenderSid: Option<String>,
    /// The sender's status as the callback claims it (the fetched one applies).
    pub Status: Option<String>,
}

/// `POST /webhooks/twilio/content-status` form (the fields read).
#[derive(ToSchema)]
#[allow(dead_code, non_snake_case)]
pub struct TwilioContentStatusForm {
    /// The account of the template: its stored token verifies the signature.
    #[schema(pattern = "^AC[0-9a-fA-F]{32}$")]
    pub AccountSid: String,
    /// The template's Content SID (`HX...`); a callback without it is ignored.
    pub ContentSid: Option<String>,
    /// The approval status as the callback claims it (the fetched one applies).
    pub ApprovalStatus: Option<String>,
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
