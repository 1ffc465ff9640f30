//! Telemetry: `tracing` output (pretty or JSON), the Prometheus metrics recorder, and the
//! health, readiness and metrics endpoints both services expose.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The Prometheus recorder could not be installed.
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
}

/// Installs the global `tracing` subscriber; `RUST_LOG` overrides the configured filter.
/// A second call in the same process is a no-op.
pub fn init_tracing(settings: &TelemetrySettings) -> Result<(), TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => EnvFilter::try_new(from_env)?,
        _ => EnvFilter::try_new(&settings.filter)?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match settings.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// How much of an untrusted value a log line keeps.
const UNTRUSTED_LOG_CHARS: usize = 64;

/// An untrusted value (a request's field, a URL an unauthenticated caller chose) shortened for a
/// log line: at most 64 characters, with `...` when cut, so a caller cannot fill the logs.
pub fn untrusted(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(UNTRUSTED_LOG_CHARS) {
        None => std::borrow::Cow::Borrowed(value),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}...", &value[..end])),
    }
}

/// Histogram buckets of durations, in seconds: 100 us to 60 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// Histogram buckets of batch sizes (histograms named `*_batch_messages`).
const SIZE_BUCKETS: [f64; 10] = [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];

/// Installs the process-wide Prometheus recorder on first call and returns its handle.
pub fn metrics_handle() -> Result<PrometheusHandle, TelemetryError> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = HANDLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Suffix("_batch_messages".to_owned()), &SIZE_BUCKETS)
        })
        .map_err(|err| TelemetryError::Metrics(err.to_string()))?
        .install_recorder()
        .map_err(|err| TelemetryError::Metrics(err.to_string()))?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// A readiness check: why the service cannot take traffic, or `None` when it can.
type Check = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Whether a service is ready to take traffic: flipped off while it shuts down, and off while
/// any of its checks reports a problem (a broken message log, say).
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    checks: Arc<Mutex<Vec<Check>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Marks the service ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Adds a check asked on every readiness question.
    pub fn add_check(&self, check: impl Fn() -> Option<String> + Send + Sync + 'static) {
        self.lock_checks().push(Arc::new(check));
    }

    /// The first problem a check reports.
    pub fn problem(&self) -> Option<String> {
        let checks = self.lock_checks().clone();
        checks.iter().find_map(|check| check())
    }

    /// Whether the service is ready: marked so, and no check reports a problem.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.problem().is_none()
    }

    fn lock_checks(&self) -> std::sync::MutexGuard<'_, Vec<Check>> {
        self.checks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The drain window: `/readyz` already answers 503 while the API still serves, so that load
/// balancers stop sending before the listener closes.
pub async fn drain(secs: u64) {
    if secs > 0 {
        tracing::info!(
            drain_secs = secs,
            "not ready; still serving while load balancers catch up"
        );
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: PrometheusHandle,
    readiness: Readiness,
}

/// `/metrics` (Prometheus text), `/healthz` (the process is alive) and `/readyz` (it takes
/// traffic; 503 with the reason while starting, stopping or when a check reports a problem).
pub fn ops_router(metrics: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<OpsState>| async move { state.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(state): State<OpsState>| async move {
                if !state.readiness.ready.load(Ordering::Acquire) {
                    return (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_owned());
                }
                match state.readiness.problem() {
                    Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {problem}")),
                    None => (StatusCode::OK, "ready".to_owned()),
                }
            }),
        )
        .with_state(OpsState { metrics, readiness })
}

#[cfg(test)]
mod tests {
    use super::untrusted;

    #[test]
    fn untrusted_values_are_cut_at_64_characters() {
        assert_eq!(untrusted("AC12"), "AC12");
        assert_eq!(untrusted(&"x".repeat(64)), "x".repeat(64));
        assert_eq!(untrusted(&"é".repeat(900_000)), format!("{}...", "é".repeat(64)));
    }
}
