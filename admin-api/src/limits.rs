//! Abuse limits of the API: requests a second per API key, credential checks a tenant may
//! cause an hour, event streams a tenant may hold open, and how long a request may take. Each
//! refusal is a 429 (or 503 for the timeout) with a stable code and, where waiting helps,
//! `Retry-After`. Keys are counted only once authenticated, so the limiters hold one entry per
//! real key or tenant.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::TenantId;
use common::config::AdminSettings;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::ApiError;

/// The API's limits and their counters.
pub(crate) struct Limits {
    requests: DefaultKeyedRateLimiter<String>,
    credential_checks: DefaultKeyedRateLimiter<TenantId>,
    streams: Arc<Mutex<HashMap<TenantId, usize>>>,
    max_streams: usize,
    request_timeout: Duration,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_streams", &self.max_streams)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// The limits the settings give (a zero is taken as one).
    pub(crate) fn new(settings: &AdminSettings) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            requests: RateLimiter::keyed(Quota::per_second(at_least_one(settings.requests_per_second_per_key))),
            credential_checks: RateLimiter::keyed(Quota::per_hour(at_least_one(
                settings.credential_checks_per_tenant_per_hour,
            ))),
            streams: Arc::default(),
            max_streams: settings.max_event_streams_per_tenant.max(1),
            request_timeout: Duration::from_secs(settings.request_timeout_secs.max(1)),
        }
    }

    /// Counts a request of the key `key_id`; 429 `rate_limited` past its rate.
    pub(crate) fn request(&self, key_id: &str) -> Result<(), ApiError> {
        self.requests.check_key(&key_id.to_owned()).map_err(|not_until| {
            refused(
                "requests",
                "rate_limited",
                "this API key is sending requests faster than allowed; slow down",
                not_until.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    /// Counts a credential check of `tenant` against a provider; 429
    /// `credential_checks_exhausted` past its hourly allowance.
    pub(crate) fn credential_check(&self, tenant: &TenantId) -> Result<(), ApiError> {
        self.credential_checks.check_key(tenant).map_err(|not_until| {
            refused(
                "credential_checks",
                "credential_checks_exhausted",
                "too many credential checks this hour; try again later",
                not_until.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    /// Opens an event stream of `tenant`, held until the guard drops; 429 `too_many_streams`
    /// when the tenant already holds its maximum.
    pub(crate) fn open_stream(&self, tenant: &TenantId) -> Result<StreamGuard, ApiError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let open = streams.entry(tenant.clone()).or_default();
        if *open >= self.max_streams {
            return Err(refused(
                "event_streams",
                "too_many_streams",
                &format!("at most {} event streams may be open at once", self.max_streams),
                Duration::from_secs(5),
            ));
        }
        *open += 1;
        Ok(StreamGuard {
            streams: Arc::clone(&self.streams),
            tenant: tenant.clone(),
        })
    }
}

/// A refusal by `limit`: counted, answered 429 with `code` and when to come back.
fn refused(limit: &'static str, code: &'static str, message: &str, wait: Duration) -> ApiError {
    metrics::counter!("admin_limited_total", "limit" => limit).increment(1);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).with_retry_after(wait)
}

/// One open event stream; closing it (dropping the guard) frees its place.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    streams: Arc<Mutex<HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = streams.get_mut(&self.tenant) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.tenant);
            }
        }
    }
}

/// Middleware: answers 503 `request_timeout` when a request takes longer than allowed. Event
/// streams are long-lived by design and exempt.
pub(crate) async fn timeout(State(limits): State<Arc<Limits>>, request: Request, next: Next) -> Response {
    if request.uri().path().ends_with("/events") {
        return next.run(request).await;
    }
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("admin_limited_total", "limit" => "timeout").increment(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "the request took too long; retry later",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_second: u32, checks: u32, streams: usize) -> Limits {
        Limits::new(&AdminSettings {
            requests_per_second_per_key: per_second,
            credential_checks_per_tenant_per_hour: checks,
            max_event_streams_per_tenant: streams,
            ..AdminSettings::default()
        })
    }

    #[test]
    fn a_key_past_its_rate_is_told_when_to_come_back() {
        let limits = limits(5, 1, 1);
        for _ in 0..5 {
            limits.request("key_a").unwrap();
        }
        let refused = limits.request("key_a").unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.code), (429, "rate_limited"));
        assert!(refused.retry_after.is_some_and(|wait| wait <= Duration::from_secs(1)));
        limits.request("key_b").unwrap();
        let response = refused.into_response();
        assert_eq!(response.headers()["retry-after"], "1");
    }

    #[test]
    fn credential_checks_are_counted_per_tenant_per_hour() {
        let limits = limits(5, 2, 1);
        let (acme, beta) = (TenantId::parse("acme").unwrap(), TenantId::parse("beta").unwrap());
        limits.credential_check(&acme).unwrap();
        limits.credential_check(&acme).unwrap();
        let refused = limits.credential_check(&acme).unwrap_err();
        assert_eq!(refused.code, "credential_checks_exhausted");
        assert!(refused.retry_after.is_some_and(|wait| wait > Duration::from_secs(60)));
        limits.credential_check(&beta).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_is_answered_503_but_an_event_stream_is_not_cut() {
        use axum::routing::get;
        use tower::ServiceExt as _;
        let limits = Arc::new(Limits::new(&AdminSettings {
            request_timeout_secs: 1,
            ..AdminSettings::default()
        }));
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "done"
        };
        let app = axum::Router::new()
            .route("/slow", get(slow))
            .route("/v1/campaigns/x/events", get(slow))
            .layer(axum::middleware::from_fn_with_state(limits, timeout));
        let call = |path: &str| {
            let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
            app.clone().oneshot(request)
        };
        let answer = call("/slow").await.unwrap();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(answer.into_body(), 4096).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("request_timeout"));
        assert_eq!(call("/v1/campaigns/x/events").await.unwrap().status(), StatusCode::OK);
    }

    #[test]
    fn streams_are_capped_per_tenant_and_freed_when_closed() {
        let limits = limits(5, 1, 2);
        let acme = TenantId::parse("acme").unwrap();
        let first = limits.open_stream(&acme).unwrap();
        let _second = limits.open_stream(&acme).unwrap();
        assert_eq!(limits.open_stream(&acme).unwrap_err().code, "too_many_streams");
        limits.open_stream(&TenantId::parse("beta").unwrap()).unwrap();
        drop(first);
        limits.open_stream(&acme).unwrap();
    }
}
