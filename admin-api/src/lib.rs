//! The EngageNinja Dispatch admin API: tenants' keys, message submission onto the log, message
//! status, and the operational endpoints.

pub mod auth;
pub mod demo;
pub mod error;
pub mod messages;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use common::log::MessageLog;
use common::store::Store;
use common::telemetry::{Readiness, ops_router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where tenants, keys and statuses live.
    pub store: Arc<dyn Store>,
    /// Where accepted messages go.
    pub log: Arc<dyn MessageLog>,
}

/// The admin API's routes, with the operational endpoints.
pub fn router(state: AppState, max_body_bytes: usize, metrics: PrometheusHandle, readiness: Readiness) -> Router {
    let api = Router::new()
        .route("/v1/messages", post(messages::submit))
        .route("/v1/messages/{id}", get(messages::get))
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
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            router,
        })
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
