//! The one harness for a running service in tests (the `testing` feature): settings on free
//! loopback ports, a service running in the test's process, requests to it, and its orderly
//! stop. `engageninja::testing` runs whole stacks in it; the admin API's own suites run the
//! admin API alone in it.

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Settings;

/// How a service under test ended badly.
pub type StopError = Box<dyn Error + Send + Sync>;

/// Completes when the test asks its service to stop.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Settings of a service for a test: its data in `dir`, the API and the operational endpoints
/// on free loopback ports. Everything else is the default (embedded backends, demo tenant).
pub fn settings(dir: &Path) -> Settings {
    let mut settings = Settings {
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    settings.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.admin.ops_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings
}

/// [`settings`] with `key` as the platform-admin key.
pub fn settings_with_platform_key(dir: &Path, key: &str) -> Settings {
    let mut settings = settings(dir);
    settings.admin.platform_admin_key = Some(key.to_owned().into());
    settings
}

/// Points the providers at a port nothing listens on, so that credential checks fail fast
/// instead of reaching the internet.
pub fn providers_unreachable(settings: &mut Settings) {
    settings.providers.twilio.api_url = "http://127.0.0.1:9".to_owned();
    settings.providers.ses.endpoint = Some("http://127.0.0.1:9".to_owned());
}

/// A service running in this process until [`TestApp::shutdown`] (or until dropped, which
/// asks it to stop without waiting).
pub struct TestApp {
    /// Where the admin API listens (the operational endpoints for the dispatcher alone).
    pub addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, where the service serves them.
    pub ops_addr: Option<SocketAddr>,
    /// The bootstrap demo tenant's key, when this start created it.
    pub demo_key: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    stopped: JoinHandle<Result<(), StopError>>,
    http: reqwest::Client,
}

impl TestApp {
    /// Runs `serve` in a task until the [`StopSignal`] it is given completes; the service
    /// answers at `addr` (operational endpoints at `ops_addr`, if it serves them).
    pub fn run<F, E>(
        addr: SocketAddr,
        ops_addr: Option<SocketAddr>,
        demo_key: Option<String>,
        serve: impl FnOnce(StopSignal) -> F,
    ) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<StopError>,
    {
        let (stop, stop_signal) = oneshot::channel::<()>();
        let served = serve(Box::pin(async {
            let _ = stop_signal.await;
        }));
        Self {
            addr,
            ops_addr,
            demo_key,
            stop: Some(stop),
            stopped: tokio::spawn(async move { served.await.map_err(Into::into) }),
            http: reqwest::Client::new(),
        }
    }

    /// `http://` + the API's address + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The demo tenant's key; panics when this start did not create it.
    pub fn demo_key(&self) -> &str {
        self.demo_key.as_deref().expect("this start created the demo tenant")
    }

    /// A request to `path`, with `key` as its bearer token and `body` as JSON where given.
    pub fn request(&self, method: Method, path: &str, key: Option<&str>, body: Option<&Value>) -> RequestBuilder {
        let mut request = self.http.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        match body {
            Some(body) => request.json(body),
            None => request,
        }
    }

    /// Sends that request; answers its status and its body as JSON (`null` if it is not).
    /// Panics when no answer comes.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let response = self
            .request(method, path, key, body)
            .send()
            .await
            .expect("the service answers");
        let status = response.status();
        let text = response.text().await.expect("the answer has a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Asks the service to stop, without waiting (`/readyz` turns 503, the drain begins).
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the service and waits for it to finish; answers how it ended.
    pub async fn stopped(mut self) -> Result<(), StopError> {
        self.begin_stop();
        self.stopped.await?
    }

    /// Stops the service; panics unless it stops cleanly.
    pub async fn shutdown(self) {
        self.stopped().await.expect("the service stops cleanly");
    }
}
