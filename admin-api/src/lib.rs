//! The EngageNinja Dispatch admin API: tenants' keys, message submission onto the log, message
//! status, and the operational endpoints.

pub mod audit;
pub mod auth;
pub mod business_info;
pub mod campaigns;
pub mod channels;
pub mod demo;
pub mod error;
pub mod messages;
pub mod onboarding;
pub mod platform;
pub mod ses_events;
pub mod usage;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use common::config::{PacingSettings, Settings};
use common::credentials::Keyring;
use common::log::MessageLog;
use common::ses::SesClient;
use common::signature::sns::SnsVerifier;
use common::store::Store;
use common::telemetry::{Readiness, ops_router};
use common::twilio::TwilioClient;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where tenants, keys and statuses live.
    pub store: Arc<dyn Store>,
    /// Where accepted messages go.
    pub log: Arc<dyn MessageLog>,
    /// Opens the stored channel credentials.
    pub keyring: Arc<Keyring>,
    /// Where status changes from webhooks go.
    pub statuses: Arc<dyn webhooks::StatusSink>,
    /// The URL providers reach this API at (webhook URLs and their signatures); no trailing `/`.
    pub public_url: String,
    /// Twilio's API: credential checks and onboarding.
    pub twilio: TwilioClient,
    /// SES's API: credential checks.
    pub ses: SesClient,
    /// Verifies the SNS messages carrying SES events.
    pub sns: Arc<SnsVerifier>,
    /// The A2P 10DLC onboarding workflow.
    pub onboarding: Arc<onboarding::Onboarding>,
    /// SHA-256 (hex) of the platform-admin key; `None`: no platform access.
    pub platform_key_hash: Option<String>,
    /// Senders' default paces (preflight's drain estimate).
    pub pacing: PacingSettings,
    /// Cancelled when the process stops taking traffic: long-lived responses (event streams)
    /// end then, so that the server's graceful stop does not wait on them.
    pub stopping: CancellationToken,
}

/// The hash [`AppState::platform_key_hash`] holds for the configured platform-admin key.
pub fn platform_key_hash(settings: &Settings) -> Option<String> {
    use secrecy::ExposeSecret as _;
    settings
        .admin
        .platform_admin_key
        .as_ref()
        .map(|key| auth::hash_key(key.expose_secret()))
}

/// The URL providers reach the admin API at: `admin.public_url`, else `http://` + the address it
/// listens on (`bound`, which knows the port when `listen` asked for port 0).
pub fn public_url(settings: &Settings, bound: SocketAddr) -> String {
    match &settings.admin.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("http://{bound}"),
    }
}

/// The admin API's routes, with the operational endpoints.
pub fn router(state: AppState, max_body_bytes: usize, metrics: PrometheusHandle, readiness: Readiness) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(messages::submit))
        .route("/v1/messages/{id}", get(messages::get))
        .route(
            "/v1/business-info",
            post(business_info::create)
                .get(business_info::get)
                .put(business_info::update),
        )
        .route("/v1/business-info/status", get(business_info::status))
        .route("/v1/channels/sms/status", get(onboarding::status::get_status))
        .route("/v1/channels/sms/resubmit", post(onboarding::status::resubmit))
        .route(
            "/webhooks/twilio/brand-status",
            post(onboarding::status::brand_status_webhook),
        )
        .route(
            "/v1/channels/{channel}",
            post(channels::save).get(channels::get).delete(channels::delete),
        )
        .route("/v1/usage", get(usage::usage))
        .route("/v1/audit", get(audit::list))
        .route("/v1/campaigns/{id}/preflight", post(usage::preflight))
        .route("/v1/campaigns/{id}/send", post(campaigns::send))
        .route("/v1/campaigns/{id}/events", get(campaigns::events))
        .route("/v1/api-keys", post(platform::create_key).get(platform::list_keys))
        .route("/v1/api-keys/{key_id}", delete(platform::revoke_key))
        .route("/v1/admin/tenants", post(platform::create))
        .route("/v1/admin/tenants/{id}", get(platform::get).patch(platform::update))
        .route("/v1/admin/plans/{id}", put(platform::put_plan).get(platform::get_plan))
        .route(
            "/v1/admin/demo-tenants",
            post(platform::create_demo).get(platform::list_demo),
        )
        .route("/v1/admin/demo-tenants/{id}", delete(platform::delete_demo))
        .route("/webhooks/twilio/status", post(webhooks::twilio_status))
        .route("/webhooks/twilio/inbound", post(webhooks::twilio_inbound))
        .route("/webhooks/ses", post(ses_events::ses))
        .fallback(|| async { ApiError::not_found("route_not_found", "no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::map_response(too_large_as_json))
        .with_state(state);
    api.merge(ops_router(metrics, readiness))
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

/// A bound, not yet serving, admin API server.
pub struct AdminServer {
    listener: TcpListener,
    router: Router,
}

impl AdminServer {
    /// A server answering on `listener` (bound first, so that the router can know the port).
    pub fn new(listener: TcpListener, router: Router) -> Self {
        Self { listener, router }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
