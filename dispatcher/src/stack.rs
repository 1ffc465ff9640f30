//! Assembly of a running process: the embedded log and store, the status writer, the demo
//! provider, the dispatcher and, in the all-in-one role, the admin API; and their orderly stop.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use admin_api::demo::{BootstrapKey, bootstrap_demo_tenant};
use admin_api::{AdminServer, AppState};
use common::TenantId;
use common::backends::{BackendError, open_embedded};
use common::config::Settings;
use common::store::{StatusUpdate, StoreError};
use common::telemetry::{Readiness, TelemetryError, metrics_handle, ops_router};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Providers;
use crate::intake::{DispatchError, Dispatcher};
use crate::provider::demo::DemoProvider;
use crate::status::StatusWriter;

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dispatcher and admin API in one process.
    AllInOne,
    /// The dispatcher alone, with its health and metrics endpoints.
    Dispatcher,
}

/// Why the stack could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A backend could not be opened.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Telemetry could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// A listener could not be bound or served.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// The configured demo tenant id is invalid.
    #[error("demo.tenant_id: {0}")]
    DemoTenant(#[from] common::ids::IdError),
    /// The dispatcher stopped with an error.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

/// A built, not yet running, process.
pub struct Stack {
    server: AdminServer,
    dispatcher: Dispatcher,
    demo_key: Option<BootstrapKey>,
    events: broadcast::Sender<StatusUpdate>,
    readiness: Readiness,
    tracker: TaskTracker,
    background: CancellationToken,
    settings: Settings,
}

impl Stack {
    /// Opens the embedded log and store, bootstraps the demo tenant (all-in-one role) and
    /// binds the HTTP listener: the admin API for the all-in-one role, the ops endpoints for
    /// the dispatcher role.
    pub async fn build(settings: Settings, role: Role) -> Result<Self, StackError> {
        let (log, store) = open_embedded(&settings).await?;
        let metrics = metrics_handle()?;
        let readiness = Readiness::default();

        let mut demo_key = None;
        let (router, listen) = match role {
            Role::AllInOne => {
                if settings.demo.bootstrap {
                    let tenant = TenantId::parse(settings.demo.tenant_id.clone())?;
                    demo_key = bootstrap_demo_tenant(store.as_ref(), &tenant).await?;
                }
                let state = AppState {
                    store: Arc::clone(&store),
                    log: Arc::clone(&log),
                };
                let router = admin_api::router(state, settings.admin.max_body_bytes, metrics, readiness.clone());
                (router, settings.admin.listen)
            }
            Role::Dispatcher => (ops_router(metrics, readiness.clone()), settings.dispatcher.ops_listen),
        };
        let server = AdminServer::bind(listen, router).await?;

        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let (events, _) = broadcast::channel(4096);
        let topic = settings.dispatcher.publish_status_events.then(|| Arc::clone(&log));
        let status = StatusWriter::start(Arc::clone(&store), events.clone(), topic, &tracker);
        let demo = DemoProvider::start(&settings.demo, status.clone(), &tracker, background.clone());
        let providers = Providers {
            demo: Arc::new(demo),
            live: HashMap::new(),
        };
        tracker.spawn(crate::reconcile::run(
            Arc::clone(&store),
            providers.clone(),
            status.clone(),
            settings.dispatcher.reconcile.clone(),
            background.clone(),
        ));
        let dispatcher = Dispatcher::new(store, log, providers, status, settings.dispatcher.clone());
        Ok(Self {
            server,
            dispatcher,
            demo_key,
            events,
            readiness,
            tracker,
            background,
            settings,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr().expect("a bound listener has an address")
    }

    /// The demo tenant's API key, when this start created it.
    pub fn demo_key(&self) -> Option<&BootstrapKey> {
        self.demo_key.as_ref()
    }

    /// Status changes as they become durable.
    pub fn status_events(&self) -> broadcast::Receiver<StatusUpdate> {
        self.events.subscribe()
    }

    /// Runs until `shutdown` completes; then stops taking traffic, lets the dispatcher finish
    /// and commit its batch, drains the status writer, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StackError> {
        let Stack {
            server,
            dispatcher,
            events,
            readiness,
            tracker,
            background,
            settings,
            ..
        } = self;
        drop(events);
        let stop = CancellationToken::new();
        let http = tokio::spawn(server.run_until_stopped(stop.clone().cancelled_owned()));
        let dispatching = tokio::spawn(dispatcher.run(stop.clone()));
        readiness.set(true);
        tracing::info!("ready");

        shutdown.await;
        tracing::info!("shutting down");
        readiness.set(false);
        stop.cancel();
        let grace = settings.dispatcher.shutdown_grace();
        let dispatched = tokio::time::timeout(grace, dispatching).await;
        background.cancel();
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!("background tasks did not finish within the grace period");
        }
        let served = http.await.map_err(|err| StackError::Http(std::io::Error::other(err)))?;
        served?;
        match dispatched {
            Ok(joined) => joined.map_err(|err| StackError::Http(std::io::Error::other(err)))??,
            Err(_) => {
                tracing::warn!("dispatcher did not finish its batch within the grace period; it will be redelivered")
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}
