//! The EngageNinja Dispatch admin API: tenants' keys, message submission onto the log, message
//! status, channel credentials, A2P 10DLC onboarding, campaigns, quotas and provider webhooks.
//! [`start`] puts it together over opened backends ([`AppState::build`], its background work,
//! the [`router`] on a bound listener); the `engageninja` package runs it alone or beside the
//! dispatcher.
//!
//! Layout, one module per resource (each holds its handlers and their `#[utoipa::path]`):
//! - `messages`, `campaigns`, `held`: submission onto the log, statuses, campaign sends and
//!   live counts; campaigns held until their channel is ready, and their release.
//! - `channels`, `business_info`, [`onboarding`]: credentials (sealed, verified), the 10DLC
//!   form and the durable onboarding workflow.
//! - `usage`, `audit`: quota use and preflight, the tenant's audit log.
//! - `consent`, `settings`, `inbound`: suppressions and opt-ins; the tenant's messaging
//!   settings (consent required for marketing, keyword replies); inbound messages received.
//! - [`platform`], [`demo`]: the platform-admin key's routes; demo tenants and their clean-up.
//! - `webhooks`: providers' callbacks, one file per provider (Twilio's, SES's), verified
//!   before anything is read.
//! - `unsubscribe`: the one-click unsubscribe links of marketing email (RFC 8058), no login.
//! - `templates`: the tenant's email templates, kept in its SES account.
//! - [`auth`], `limits`, `error`, `form`: API keys, abuse limits and the request timeout, the
//!   error shape, request bodies read against field tables.
//! - [`openapi`](mod@openapi): the OpenAPI document, from the same routes and tables.
//! - [`reseal`]: `credentials reseal`, re-sealing stored credentials under the newest key.

mod audit;
pub mod auth;
mod business_info;
mod campaigns;
mod channels;
mod consent;
pub mod demo;
mod error;
mod form;
mod held;
pub mod import;
mod inbound;
mod limits;
mod locks;
mod messages;
mod metrics;
pub mod onboarding;
pub mod openapi;
pub mod platform;
pub mod reseal;
mod schedule;
mod settings;
mod templates;
mod unsubscribe;
mod usage;
mod webhooks;
pub mod whatsapp;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use common::TenantId;
use common::config::{PacingSettings, Settings};
use common::credentials::Keyring;
use common::http::HttpServer;
use common::log::MessageLog;
use common::ses::sns::SnsVerifier;
use common::ses::{SesClient, SesError};
use common::store::{StatusSink, Store, StoreError};
use common::twilio::{ClientError, TwilioClient};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where tenants, keys and statuses live.
    pub(crate) store: Arc<dyn Store>,
    /// Where accepted messages go.
    pub(crate) log: Arc<dyn MessageLog>,
    /// Opens the stored channel credentials.
    pub(crate) keyring: Arc<Keyring>,
    /// Where status changes from webhooks go.
    pub(crate) statuses: Arc<dyn StatusSink>,
    /// The URL providers reach this API at (webhook URLs and their signatures); no trailing `/`.
    pub(crate) public_url: String,
    /// Twilio's API: credential checks and onboarding.
    pub(crate) twilio: TwilioClient,
    /// SES's API: credential checks.
    pub(crate) ses: SesClient,
    /// Verifies the SNS messages carrying SES events.
    pub(crate) sns: Arc<SnsVerifier>,
    /// The A2P 10DLC onboarding workflow.
    pub(crate) onboarding: Arc<onboarding::Onboarding>,
    /// WhatsApp senders: registration and following.
    pub(crate) senders: Arc<whatsapp::senders::Senders>,
    /// SHA-256 (hex) of the platform-admin key; `None`: no platform access.
    pub(crate) platform_key_hash: Option<String>,
    /// Senders' default paces (preflight's drain estimate).
    pub(crate) pacing: PacingSettings,
    /// Cancelled when the process stops taking traffic: long-lived responses (event streams)
    /// end then, so that the server's graceful stop does not wait on them.
    pub(crate) stopping: CancellationToken,
    /// Twilio webhook signing tokens, opened, kept 30 s per account.
    pub(crate) signing_keys: Arc<webhooks::twilio::SigningKeys>,
    /// Request rates, credential checks, event streams and the request timeout.
    pub(crate) limits: Arc<limits::Limits>,
}

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store failed (storing the demo plan, bootstrapping the demo tenant).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Twilio client settings are invalid.
    #[error("providers.twilio: {0}")]
    Twilio(#[from] ClientError),
    /// The SES client settings are invalid.
    #[error("providers.ses: {0}")]
    Ses(#[from] SesError),
    /// The SNS certificate client could not be built.
    #[error("sns verifier: {0}")]
    Sns(#[from] reqwest::Error),
}

/// What the admin API is built over: the process's opened backends and what it shares with
/// the rest of the process.
pub struct Wiring {
    /// The opened store.
    pub store: Arc<dyn Store>,
    /// The opened message log.
    pub log: Arc<dyn MessageLog>,
    /// The credential key ring.
    pub keyring: Arc<Keyring>,
    /// Where webhook status changes go.
    pub statuses: Arc<dyn StatusSink>,
    /// The URL providers reach this API at; no trailing `/`.
    pub public_url: String,
    /// Cancelled when the process stops taking traffic.
    pub stopping: CancellationToken,
}

impl AppState {
    /// The state every handler shares, from `settings` and what the process opened.
    pub fn build(settings: &Settings, wiring: Wiring) -> Result<Self, StateError> {
        let Wiring {
            store,
            log,
            keyring,
            statuses,
            public_url,
            stopping,
        } = wiring;
        let twilio = TwilioClient::new(&(&settings.providers.twilio).into())?;
        let onboarding = Arc::new(onboarding::Onboarding::new(
            Arc::clone(&store),
            Arc::clone(&keyring),
            twilio.clone(),
            public_url.clone(),
            settings.onboarding.clone(),
        ));
        let senders = Arc::new(whatsapp::senders::Senders::new(
            Arc::clone(&store),
            Arc::clone(&keyring),
            twilio.clone(),
            public_url.clone(),
            settings.onboarding.clone(),
        ));
        Ok(Self {
            store,
            log,
            keyring,
            statuses,
            public_url,
            twilio,
            ses: SesClient::new((&settings.providers.ses).into())?,
            sns: Arc::new(webhooks::ses::verifier(&settings.providers.ses)?),
            onboarding,
            senders,
            platform_key_hash: platform_key_hash(settings),
            pacing: settings.dispatcher.pacing.clone(),
            stopping,
            signing_keys: Default::default(),
            limits: Arc::new(limits::Limits::new(&settings.admin)),
        })
    }

    /// Starts the API's background work on `tracker` until `stop`: the onboarding runner
    /// (when `onboarding.background_runner` is set) and the clean-up of expired demo tenants,
    /// which spares `keep` (the all-in-one process's bootstrap tenant).
    fn spawn_background(
        &self,
        settings: &Settings,
        keep: Option<TenantId>,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) {
        if settings.onboarding.background_runner {
            tracker.spawn(Arc::clone(&self.onboarding).run(stop.clone()));
            tracker.spawn(Arc::clone(&self.senders).run(stop.clone()));
        }
        tracker.spawn(held::run(
            Arc::clone(&self.store),
            Arc::clone(&self.log),
            Duration::from_millis(settings.admin.held_release_interval_ms.max(1)),
            stop.clone(),
        ));
        tracker.spawn(schedule::run(
            Arc::clone(&self.store),
            Arc::clone(&self.log),
            Duration::from_millis(settings.admin.schedule_release_interval_ms.max(1)),
            stop.clone(),
        ));
        tracker.spawn(demo::run_cleanup(
            Arc::clone(&self.store),
            settings.demo.retention(),
            settings.demo.cleanup_interval(),
            keep,
            stop,
        ));
    }
}

/// The admin API, started and ready to serve: what [`start`] answers.
pub struct Started {
    /// Serves the API's routes on its listener until stopped.
    pub server: HttpServer,
    /// The demo tenant's key, when this start created it.
    pub demo_key: Option<demo::BootstrapKey>,
}

/// Starts the admin API over `wiring`, to serve on `listener`: stores the demo plan, bootstraps
/// the demo tenant `keep` (which the clean-up of expired demo tenants then spares), builds the
/// state and spawns its background work on `tracker` until `background` is cancelled.
pub async fn start(
    settings: &Settings,
    wiring: Wiring,
    listener: TcpListener,
    keep: Option<TenantId>,
    tracker: &TaskTracker,
    background: CancellationToken,
) -> Result<Started, StateError> {
    demo::put_demo_plan(wiring.store.as_ref(), settings.demo.monthly_quota).await?;
    let demo_key = match &keep {
        Some(tenant) => demo::bootstrap_demo_tenant(wiring.store.as_ref(), tenant).await?,
        None => None,
    };
    let state = AppState::build(settings, wiring)?;
    state.spawn_background(settings, keep, tracker, background);
    Ok(Started {
        server: HttpServer::new(listener, router(state, settings.admin.max_body_bytes)),
        demo_key,
    })
}

/// The hash [`AppState::platform_key_hash`] holds for the configured platform-admin key.
fn platform_key_hash(settings: &Settings) -> Option<String> {
    use secrecy::ExposeSecret as _;
    settings
        .admin
        .platform_admin_key
        .as_ref()
        .map(|key| auth::hash_key(key.expose_secret()))
}

/// The documented routes (`/v1`, `/webhooks`): each is registered through `routes!`, which adds
/// the route and its `#[utoipa::path]` operation together, so the document cannot drift from
/// what is served. Handlers sharing a path share one `routes!`.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(messages::submit))
        .routes(routes!(messages::get, schedule::cancel_message))
        .routes(routes!(schedule::cancel_campaign))
        .routes(routes!(
            business_info::create,
            business_info::get,
            business_info::update
        ))
        .routes(routes!(onboarding::status::business_info_status))
        .routes(routes!(onboarding::status::get_status))
        .routes(routes!(onboarding::status::resubmit))
        .routes(routes!(onboarding::status::brand_status_webhook))
        .routes(routes!(channels::save, channels::get, channels::delete))
        .routes(routes!(usage::usage))
        .routes(routes!(audit::list))
        .routes(routes!(consent::list, consent::add))
        .routes(routes!(consent::remove))
        .routes(routes!(consent::import))
        .routes(routes!(consent::record, consent::list_consents))
        .routes(routes!(settings::get, settings::put))
        .routes(routes!(inbound::list))
        .routes(routes!(usage::preflight))
        .routes(routes!(campaigns::send))
        .routes(routes!(campaigns::events))
        .routes(routes!(platform::create_key, platform::list_keys))
        .routes(routes!(platform::revoke_key))
        .routes(routes!(platform::create))
        .routes(routes!(platform::get, platform::update))
        .routes(routes!(platform::create_tenant_key))
        .routes(routes!(platform::put_plan, platform::get_plan))
        .routes(routes!(platform::create_demo, platform::list_demo))
        .routes(routes!(platform::delete_demo))
        .routes(routes!(webhooks::twilio::twilio_status))
        .routes(routes!(webhooks::twilio::twilio_inbound))
        .routes(routes!(webhooks::ses::ses))
        .routes(routes!(unsubscribe::one_click, unsubscribe::confirm))
        .routes(routes!(templates::create, templates::list))
        .routes(routes!(templates::update, templates::delete))
        .routes(routes!(whatsapp::register, whatsapp::list))
        .routes(routes!(whatsapp::get, whatsapp::remove))
        .routes(routes!(whatsapp::verify))
        .routes(routes!(whatsapp::sender_status_webhook))
        .routes(routes!(whatsapp::templates::create, whatsapp::templates::list))
        .routes(routes!(whatsapp::templates::get, whatsapp::templates::delete))
        .routes(routes!(whatsapp::templates::submit))
        .routes(routes!(whatsapp::templates::import))
        .routes(routes!(whatsapp::templates::content_status_webhook))
}

/// Schemas no operation references by type: the campaign counts (carried as JSON text in the
/// event stream) and the SES credentials (the other body of `/v1/channels/{channel}`, split per
/// channel by `ChannelPaths`).
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(campaigns::CampaignCounts, channels::SesCredentialsRequest)))]
struct Unreferenced;

/// Completes the routes' document: title, version, `/openapi.json` itself, and one path per
/// channel for `/v1/channels/{channel}`.
fn complete(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.info.title = openapi::TITLE.to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(openapi::DocumentDoc::openapi());
    doc.merge(Unreferenced::openapi());
    utoipa::Modify::modify(&openapi::ChannelPaths, &mut doc);
    doc
}

/// The admin API's OpenAPI 3.1 document (the one `GET /openapi.json` answers).
pub fn openapi() -> utoipa::openapi::OpenApi {
    complete(documented_routes().into_openapi())
}

/// The admin API's routes with `GET /openapi.json`; describes the admin API's metrics in the
/// process's recorder. The operational endpoints are not among them: they are served on
/// their own listener ([`common::telemetry::ops_router`], `admin.ops_listen`).
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    crate::metrics::describe();
    let (api, doc) = documented_routes().split_for_parts();
    let doc = Bytes::from(complete(doc).to_json().expect("the OpenAPI document always serialises"));
    api.route(
        "/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move { ([(CONTENT_TYPE, "application/json")], doc) }
        }),
    )
    .fallback(|| async { ApiError::not_found("route_not_found", "no such route") })
    .layer(axum::middleware::from_fn_with_state(
        Arc::clone(&state.limits),
        limits::timeout,
    ))
    .layer(DefaultBodyLimit::max(max_body_bytes))
    .layer(axum::middleware::map_response(too_large_as_json))
    .with_state(state)
}

/// Turns axum's plain-text 413 into the API's JSON error shape.
async fn too_large_as_json(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    if response.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than allowed",
        )
        .into_response();
    }
    response
}
