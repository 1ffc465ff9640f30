//! Assembly of a running process in one of its three roles (the all-in-one process, the
//! dispatcher alone, the admin API alone): the configured log and store, the dispatcher's
//! service, the admin API's state and background work, the HTTP listeners; and their orderly
//! stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use admin_api::StateError;
use admin_api::demo::BootstrapKey;
use common::TenantId;
use common::backends::{BackendError, open};
use common::config::Settings;
use common::credentials::{KeyringError, keyring_from_settings};
use common::http::HttpServer;
use common::store::{StatusSink, StatusUpdate, StoreError, StoreStatusSink};
use common::telemetry::{Readiness, TelemetryError, metrics_handle, ops_router};
use dispatcher::intake::{DispatchError, Dispatcher};
use dispatcher::service::{Service, ServiceError};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dispatcher and admin API in one process, with the demo tenant bootstrapped.
    AllInOne,
    /// The dispatcher alone, with its health and metrics endpoints on `dispatcher.ops_listen`.
    Dispatcher,
    /// The admin API alone, with its health and metrics endpoints on `admin.ops_listen`.
    AdminApi,
}

impl Role {
    fn dispatches(self) -> bool {
        self != Role::AdminApi
    }

    fn serves_api(self) -> bool {
        self != Role::Dispatcher
    }
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
    /// The credential key ring could not be loaded.
    #[error("credential keys: {0}")]
    Keyring(#[from] KeyringError),
    /// The dispatcher could not be assembled.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The admin API could not be assembled.
    #[error(transparent)]
    Api(#[from] StateError),
    /// The dispatcher stopped with an error.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// The standalone dispatcher does not know where the admin API takes status callbacks.
    #[error("admin.public_url must be set for the standalone dispatcher: Twilio's status callbacks are sent there")]
    PublicUrlUnset,
}

/// A built, not yet running, process.
pub struct Stack {
    api: Option<HttpServer>,
    ops: HttpServer,
    dispatcher: Option<Dispatcher>,
    demo_key: Option<BootstrapKey>,
    events: broadcast::Sender<StatusUpdate>,
    readiness: Readiness,
    tracker: TaskTracker,
    background: CancellationToken,
    stopping: CancellationToken,
    settings: Settings,
}

impl Stack {
    /// Opens the configured log and store (`log.backend`, `store.backend`) and binds the HTTP
    /// listeners: the operational endpoints (`dispatcher.ops_listen` for the dispatcher alone,
    /// `admin.ops_listen` otherwise) and the admin API (`admin.listen`) where the role serves
    /// it. The all-in-one role bootstraps the demo tenant.
    pub async fn build(settings: Settings, role: Role) -> Result<Self, StackError> {
        // Boxed: the assembly's future is large, and every caller would carry it.
        Box::pin(Self::assemble(settings, role)).await
    }

    async fn assemble(settings: Settings, role: Role) -> Result<Self, StackError> {
        let (log, store) = open(&settings).await?;
        let keyring = Arc::new(keyring_from_settings(&settings)?);
        let readiness = Readiness::default();
        let checked_log = Arc::clone(&log);
        readiness.add_check(move || checked_log.broken());
        let ops_listen = match role {
            Role::Dispatcher => settings.dispatcher.ops_listen,
            Role::AllInOne | Role::AdminApi => settings.admin.ops_listen,
        };
        let ops = HttpServer::new(
            TcpListener::bind(ops_listen).await?,
            ops_router(metrics_handle()?, readiness.clone()),
        );
        let api_listener = match role.serves_api() {
            true => Some(TcpListener::bind(settings.admin.listen).await?),
            false => None,
        };
        let public_url = match &api_listener {
            Some(listener) => settings.admin.public_url_or(listener.local_addr()?),
            // Twilio's status callbacks go to the admin API, another process: only the
            // operator knows where it is reached.
            None if settings.admin.public_url.is_none() => return Err(StackError::PublicUrlUnset),
            None => settings.admin.public_url_or(settings.admin.listen),
        };
        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let stopping = CancellationToken::new();
        let (events, _) = broadcast::channel(4096);

        let (dispatcher, statuses): (_, Arc<dyn StatusSink>) = match role.dispatches() {
            true => {
                let service = Service::start(
                    &settings,
                    dispatcher::service::Wiring {
                        store: Arc::clone(&store),
                        log: Arc::clone(&log),
                        keyring: Arc::clone(&keyring),
                        public_url: public_url.clone(),
                        events: events.clone(),
                        tracker: tracker.clone(),
                        background: background.clone(),
                    },
                )?;
                (Some(service.dispatcher), Arc::new(service.status))
            }
            false => (None, Arc::new(StoreStatusSink(Arc::clone(&store)))),
        };

        let mut demo_key = None;
        let api = match api_listener {
            Some(listener) => {
                // The all-in-one process bootstraps the demo tenant and keeps it from clean-up.
                let keep = match role == Role::AllInOne && settings.demo.bootstrap {
                    true => Some(TenantId::parse(settings.demo.tenant_id.clone())?),
                    false => None,
                };
                let wiring = admin_api::Wiring {
                    store,
                    log,
                    keyring,
                    statuses,
                    public_url,
                    stopping: stopping.clone(),
                };
                let started = admin_api::start(&settings, wiring, listener, keep, &tracker, background.clone()).await?;
                demo_key = started.demo_key;
                Some(started.server)
            }
            None => None,
        };
        Ok(Self {
            api,
            ops,
            dispatcher,
            demo_key,
            events,
            readiness,
            tracker,
            background,
            stopping,
            settings,
        })
    }

    /// The address of the admin API where the role serves it, else of the operational
    /// endpoints.
    pub fn local_addr(&self) -> SocketAddr {
        self.api
            .as_ref()
            .unwrap_or(&self.ops)
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address of `/metrics`, `/healthz` and `/readyz`.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops.local_addr().expect("a bound listener has an address")
    }

    /// The demo tenant's API key, when this start created it.
    pub fn demo_key(&self) -> Option<&BootstrapKey> {
        self.demo_key.as_ref()
    }

    /// Status changes as the dispatcher makes them durable (none where it does not run).
    pub fn status_events(&self) -> broadcast::Receiver<StatusUpdate> {
        self.events.subscribe()
    }

    /// Runs until `shutdown` completes; then stops taking traffic (after `admin.drain_secs`
    /// with `/readyz` answering 503, where the API is served), lets the dispatcher finish and
    /// commit its batch, drains the status writer and the background work, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StackError> {
        let Stack {
            api,
            ops,
            dispatcher,
            events,
            readiness,
            tracker,
            background,
            stopping: stop,
            settings,
            ..
        } = self;
        drop(events);
        // The operational endpoints outlive the API: /readyz answers 503 while it drains.
        let ops_stop = CancellationToken::new();
        let ops_served = tokio::spawn(ops.run_until_stopped(ops_stop.clone().cancelled_owned()));
        let stop_api = stop.clone();
        let serves_api = api.is_some();
        let http = tokio::spawn(async move {
            match api {
                Some(api) => api.run_until_stopped(stop_api.cancelled_owned()).await,
                None => Ok(()),
            }
        });
        let mut dispatching = dispatcher.map(|dispatcher| tokio::spawn(dispatcher.run(stop.clone())));
        readiness.set(true);
        tracing::info!("ready");

        // A dispatcher that fails (its log is gone, say) stops the whole process, so that its
        // supervisor restarts it rather than leaving it up and idle.
        let failed = tokio::select! {
            () = shutdown => None,
            joined = async { dispatching.as_mut().expect("only polled with a dispatcher").await },
                if dispatching.is_some() => Some(joined),
        };
        tracing::info!("shutting down");
        readiness.set(false);
        if failed.is_none() && serves_api {
            common::telemetry::drain(settings.admin.drain_secs).await;
        }
        stop.cancel();
        let grace = settings.dispatcher.shutdown_grace();
        let dispatched = match (failed, dispatching) {
            (Some(joined), _) => {
                tracing::error!("dispatcher stopped on its own");
                Some(Ok(joined))
            }
            (None, Some(dispatching)) => Some(tokio::time::timeout(grace, dispatching).await),
            (None, None) => None,
        };
        background.cancel();
        tracker.close();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!("background tasks did not finish within the grace period");
        }
        let served = http.await.map_err(|err| StackError::Http(std::io::Error::other(err)))?;
        served?;
        ops_stop.cancel();
        ops_served
            .await
            .map_err(|err| StackError::Http(std::io::Error::other(err)))??;
        match dispatched {
            Some(Ok(joined)) => joined.map_err(|err| StackError::Http(std::io::Error::other(err)))??,
            Some(Err(_)) => {
                tracing::warn!("dispatcher did not finish its batch within the grace period; it will be redelivered")
            }
            None => {}
        }
        tracing::info!("stopped");
        Ok(())
    }
}
