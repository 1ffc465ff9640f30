//! The admin API as its own process: the configured backends, the onboarding runner, demo
//! clean-up, and an orderly stop. The `admin-api` binary runs it; tests run it in process.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use common::backends::{BackendError, open};
use common::config::Settings;
use common::credentials::{KeyringError, keyring_from_settings};
use common::ses::{SesClient, SesError};
use common::telemetry::{Readiness, TelemetryError, metrics_handle, ops_router};
use common::twilio::{ClientError, TwilioClient};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::onboarding::Onboarding;
use crate::webhooks::StoreStatusSink;
use crate::{AdminServer, AppState};

/// Why the admin API could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    /// A backend could not be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The credential key ring could not be loaded.
    #[error("credential keys: {0}")]
    Keyring(#[from] KeyringError),
    /// Metrics could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The listener could not be bound or served.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// The Twilio client settings are invalid.
    #[error("providers.twilio: {0}")]
    Twilio(#[from] ClientError),
    /// The SES client settings are invalid.
    #[error("providers.ses: {0}")]
    Ses(#[from] SesError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] common::store::StoreError),
    /// The SNS certificate client could not be built.
    #[error("sns verifier: {0}")]
    Sns(#[from] reqwest::Error),
}

/// A built, not yet serving, admin API.
pub struct Standalone {
    drain_secs: u64,
    server: AdminServer,
    ops: AdminServer,
    readiness: Readiness,
    tracker: TaskTracker,
    background: CancellationToken,
    stopping: CancellationToken,
}

impl Standalone {
    /// Opens the configured log and store, binds `admin.listen` (the API) and
    /// `admin.ops_listen` (`/metrics`, `/healthz`, `/readyz`), and starts the background work.
    pub async fn build(settings: &Settings) -> Result<Self, StandaloneError> {
        // Boxed: the assembly's future is large, and every caller would carry it.
        Box::pin(Self::assemble(settings)).await
    }

    async fn assemble(settings: &Settings) -> Result<Self, StandaloneError> {
        let (log, store) = open(settings).await?;
        crate::demo::put_demo_plan(store.as_ref(), settings.demo.monthly_quota).await?;
        let keyring = Arc::new(keyring_from_settings(settings)?);
        let readiness = Readiness::default();
        let checked_log = Arc::clone(&log);
        readiness.add_check(move || checked_log.broken());
        let listener = TcpListener::bind(settings.admin.listen).await?;
        let public_url = crate::public_url(settings, listener.local_addr()?);
        let twilio = TwilioClient::new(&settings.providers.twilio.client_settings())?;
        let onboarding = Arc::new(Onboarding::new(
            Arc::clone(&store),
            Arc::clone(&keyring),
            twilio.clone(),
            public_url.clone(),
            settings.onboarding.clone(),
        ));
        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let stopping = CancellationToken::new();
        if settings.onboarding.background_runner {
            tracker.spawn(Arc::clone(&onboarding).run(background.clone()));
        }
        tracker.spawn(crate::demo::run_cleanup(
            Arc::clone(&store),
            settings.demo.retention(),
            settings.demo.cleanup_interval(),
            None,
            background.clone(),
        ));
        let state = AppState {
            statuses: Arc::new(StoreStatusSink(Arc::clone(&store))),
            store,
            log,
            keyring,
            public_url,
            twilio,
            ses: SesClient::new(settings.providers.ses.client_settings())?,
            sns: Arc::new(crate::ses_events::verifier(&settings.providers.ses)?),
            onboarding,
            platform_key_hash: crate::platform_key_hash(settings),
            pacing: settings.dispatcher.pacing.clone(),
            stopping: stopping.clone(),
            signing_keys: Default::default(),
            limits: Arc::new(crate::limits::Limits::new(&settings.admin)),
        };
        let ops = AdminServer::new(
            TcpListener::bind(settings.admin.ops_listen).await?,
            ops_router(metrics_handle()?, readiness.clone()),
        );
        Ok(Self {
            drain_secs: settings.admin.drain_secs,
            server: AdminServer::new(listener, crate::router(state, settings.admin.max_body_bytes)),
            ops,
            readiness,
            tracker,
            background,
            stopping,
        })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The address of `/metrics`, `/healthz` and `/readyz`.
    pub fn ops_addr(&self) -> std::io::Result<SocketAddr> {
        self.ops.local_addr()
    }

    /// Serves until `shutdown` completes, then stops taking requests, finishes the ones in
    /// progress and the background work.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StandaloneError> {
        self.readiness.set(true);
        let stop = self.stopping.clone();
        let readiness = self.readiness.clone();
        let drain_secs = self.drain_secs;
        tokio::spawn(async move {
            shutdown.await;
            readiness.set(false);
            common::telemetry::drain(drain_secs).await;
            stop.cancel();
        });
        // The operational endpoints outlive the API: /readyz answers 503 while it drains.
        let ops_stop = CancellationToken::new();
        let ops = tokio::spawn(self.ops.run_until_stopped(ops_stop.clone().cancelled_owned()));
        self.server.run_until_stopped(self.stopping.cancelled_owned()).await?;
        self.background.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        ops_stop.cancel();
        ops.await.map_err(std::io::Error::other)??;
        Ok(())
    }
}
