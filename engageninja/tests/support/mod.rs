//! The all-in-one stack as the HTTP tests drive it: settings for a test, and the stack running
//! in the test's process until it is shut down. Each test binary uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::config::Settings;
use engageninja::stack::{Role, Stack, StackError};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// Settings of a stack for a test: its data in `dir`, both listeners on free loopback ports,
/// the platform-admin key if any. Everything else is the default.
pub fn settings(dir: &Path, platform_key: Option<&str>) -> Settings {
    let mut settings = Settings {
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    settings.admin.listen = "127.0.0.1:0".parse().unwrap();
    settings.admin.ops_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.admin.platform_admin_key = platform_key.map(|key| key.to_owned().into());
    settings
}

/// Points the providers at a port nothing listens on, so that credential checks fail fast
/// instead of reaching the internet.
pub fn providers_unreachable(settings: &mut Settings) {
    settings.providers.twilio.api_url = "http://127.0.0.1:9".to_owned();
    settings.providers.ses.endpoint = Some("http://127.0.0.1:9".to_owned());
}

/// An all-in-one stack serving HTTP until [`Running::shutdown`].
pub struct Running {
    /// Where the admin API listens.
    pub addr: SocketAddr,
    /// The bootstrap demo tenant's key, when the start created one.
    pub demo_key: Option<String>,
    stop: oneshot::Sender<()>,
    stopped: tokio::task::JoinHandle<Result<(), StackError>>,
    http: reqwest::Client,
}

impl Running {
    /// Builds the stack with `settings` and runs it.
    pub async fn start(settings: Settings) -> Self {
        let stack = Stack::build(settings, Role::AllInOne).await.unwrap();
        let addr = stack.local_addr();
        let demo_key = stack.demo_key().map(|key| key.secret.clone());
        let (stop, stop_signal) = oneshot::channel::<()>();
        let stopped = tokio::spawn(stack.run_until_stopped(async {
            let _ = stop_signal.await;
        }));
        Self {
            addr,
            demo_key,
            stop,
            stopped,
            http: reqwest::Client::new(),
        }
    }

    /// A request to `path` with `key` as its bearer token and `body` as JSON, if any.
    pub fn request(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> RequestBuilder {
        let request = self
            .http
            .request(method, format!("http://{}{path}", self.addr))
            .bearer_auth(key);
        match body {
            Some(body) => request.json(&body),
            None => request,
        }
    }

    /// Sends that request; answers its status and its body as JSON (`null` if it is not).
    pub async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
        let response = self.request(method, path, key, body).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Stops the stack and waits, at most 10 s, for it to finish cleanly.
    pub async fn shutdown(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.stopped)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
