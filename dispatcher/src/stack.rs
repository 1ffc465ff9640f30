//! Assembly of a running process: the embedded log and store, the status writer, the demo
//! provider, the dispatcher and, in the all-in-one role, the admin API; and their orderly stop.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use admin_api::demo::{BootstrapKey, bootstrap_demo_tenant};
use admin_api::onboarding::Onboarding;
use admin_api::{AdminServer, AppState};
use common::backends::{BackendError, open};
use common::config::Settings;
use common::credentials::{Keyring, KeyringError, keyring_from_settings};
use common::ses::{SesClient, SesError};
use common::store::{StatusUpdate, Store, StoreError};
use common::telemetry::{Readiness, TelemetryError, metrics_handle, ops_router};
use common::twilio::{ClientError, TwilioClient};
use common::{Channel, TenantId};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Providers;
use crate::intake::{DispatchError, Dispatcher};
use crate::provider::Provider;
use crate::provider::credentials::StoreCredentials;
use crate::provider::demo::DemoProvider;
use crate::provider::ses::SesProvider;
use crate::provider::twilio::TwilioProvider;
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
    /// The credential key ring could not be loaded.
    #[error("credential keys: {0}")]
    Keyring(#[from] KeyringError),
    /// The Twilio client settings are invalid.
    #[error("providers.twilio: {0}")]
    Twilio(#[from] ClientError),
    /// An HTTP client could not be built (TLS setup).
    #[error("http client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The SES client settings are invalid.
    #[error("providers.ses: {0}")]
    Ses(#[from] SesError),
    /// The dispatcher stopped with an error.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// The standalone dispatcher does not know where the admin API takes status callbacks.
    #[error("admin.public_url must be set for the standalone dispatcher: Twilio's status callbacks are sent there")]
    PublicUrlUnset,
}

/// The real providers by channel, with each tenant's stored credentials: Twilio for SMS and
/// WhatsApp (status callbacks asked for at the admin API's public URL), SES for email (events
/// come back through the tenant's configuration set and SNS).
fn live_providers(
    settings: &Settings,
    store: &Arc<dyn Store>,
    keyring: &Arc<Keyring>,
    public_url: &str,
) -> Result<HashMap<Channel, Arc<dyn Provider>>, StackError> {
    let client = TwilioClient::new(&settings.providers.twilio.client_settings())?;
    let credentials = Arc::new(StoreCredentials::new(Arc::clone(store), Arc::clone(keyring)));
    let twilio: Arc<dyn Provider> = Arc::new(TwilioProvider::new(
        client,
        credentials.clone(),
        Some(format!("{public_url}/webhooks/twilio/status")),
    ));
    let ses = SesProvider::new(SesClient::new(settings.providers.ses.client_settings())?, credentials);
    Ok(HashMap::from([
        (Channel::Sms, Arc::clone(&twilio)),
        (Channel::Whatsapp, twilio),
        (Channel::Email, Arc::new(ses) as Arc<dyn Provider>),
    ]))
}

/// A built, not yet running, process.
pub struct Stack {
    api: Option<AdminServer>,
    ops: AdminServer,
    dispatcher: Dispatcher,
    demo_key: Option<BootstrapKey>,
    events: broadcast::Sender<StatusUpdate>,
    readiness: Readiness,
    tracker: TaskTracker,
    background: CancellationToken,
    stopping: CancellationToken,
    settings: Settings,
}

impl Stack {
    /// Opens the configured log and store (`log.backend`, `store.backend`), bootstraps the
    /// demo tenant (all-in-one role) and binds the HTTP listeners: the operational endpoints
    /// (`admin.ops_listen` for the all-in-one role, `dispatcher.ops_listen` for the
    /// dispatcher), and the admin API (`admin.listen`, all-in-one role only).
    pub async fn build(settings: Settings, role: Role) -> Result<Self, StackError> {
        // Boxed: the assembly's future is large, and every caller would carry it.
        Box::pin(Self::assemble(settings, role)).await
    }

    async fn assemble(settings: Settings, role: Role) -> Result<Self, StackError> {
        let (log, store) = open(&settings).await?;
        let keyring = Arc::new(keyring_from_settings(&settings)?);
        let metrics = metrics_handle()?;
        crate::metrics::describe();
        let readiness = Readiness::default();
        let checked_log = Arc::clone(&log);
        readiness.add_check(move || checked_log.broken());
        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let stopping = CancellationToken::new();
        let (events, _) = broadcast::channel(4096);
        let topic = settings.dispatcher.publish_status_events.then(|| Arc::clone(&log));
        let status = StatusWriter::start(
            Arc::clone(&store),
            events.clone(),
            topic,
            Some(Arc::clone(&log)),
            &tracker,
        );

        let mut demo_key = None;
        let ops_listen = match role {
            Role::AllInOne => settings.admin.ops_listen,
            Role::Dispatcher => settings.dispatcher.ops_listen,
        };
        let ops = AdminServer::new(
            TcpListener::bind(ops_listen).await?,
            ops_router(metrics, readiness.clone()),
        );
        let api_listener = match role {
            Role::AllInOne => Some(TcpListener::bind(settings.admin.listen).await?),
            Role::Dispatcher => None,
        };
        let public_url = match &api_listener {
            Some(listener) => admin_api::public_url(&settings, listener.local_addr()?),
            // Twilio's status callbacks go to the admin API, another process: only the
            // operator knows where it is reached.
            None if settings.admin.public_url.is_none() => return Err(StackError::PublicUrlUnset),
            None => admin_api::public_url(&settings, settings.admin.listen),
        };
        let api = match api_listener {
            Some(listener) => {
                admin_api::demo::put_demo_plan(store.as_ref(), settings.demo.monthly_quota).await?;
                if settings.demo.bootstrap {
                    let tenant = TenantId::parse(settings.demo.tenant_id.clone())?;
                    demo_key = bootstrap_demo_tenant(store.as_ref(), &tenant).await?;
                }
                let onboarding = Arc::new(Onboarding::new(
                    Arc::clone(&store),
                    Arc::clone(&keyring),
                    TwilioClient::new(&settings.providers.twilio.client_settings())?,
                    public_url.clone(),
                    settings.onboarding.clone(),
                ));
                if settings.onboarding.background_runner {
                    tracker.spawn(Arc::clone(&onboarding).run(background.clone()));
                }
                let state = AppState {
                    store: Arc::clone(&store),
                    log: Arc::clone(&log),
                    keyring: Arc::clone(&keyring),
                    statuses: Arc::new(status.clone()),
                    public_url: public_url.clone(),
                    twilio: TwilioClient::new(&settings.providers.twilio.client_settings())?,
                    ses: SesClient::new(settings.providers.ses.client_settings())?,
                    sns: Arc::new(
                        admin_api::ses_events::verifier(&settings.providers.ses).map_err(StackError::HttpClient)?,
                    ),
                    onboarding,
                    platform_key_hash: admin_api::platform_key_hash(&settings),
                    pacing: settings.dispatcher.pacing.clone(),
                    stopping: stopping.clone(),
                    signing_keys: Default::default(),
                    limits: Arc::new(admin_api::limits::Limits::new(&settings.admin)),
                };
                let keep = settings
                    .demo
                    .bootstrap
                    .then(|| TenantId::parse(settings.demo.tenant_id.clone()))
                    .transpose()?;
                tracker.spawn(admin_api::demo::run_cleanup(
                    Arc::clone(&store),
                    settings.demo.retention(),
                    settings.demo.cleanup_interval(),
                    keep,
                    background.clone(),
                ));
                Some(AdminServer::new(
                    listener,
                    admin_api::router(state, settings.admin.max_body_bytes),
                ))
            }
            None => None,
        };

        let demo = DemoProvider::start(&settings.demo, status.clone(), &tracker, background.clone());
        let providers = Providers {
            demo: Arc::new(demo),
            live: live_providers(&settings, &store, &keyring, &public_url)?,
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

    /// The address of the admin API (all-in-one role), else of the operational endpoints.
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
        let mut dispatching = tokio::spawn(dispatcher.run(stop.clone()));
        readiness.set(true);
        tracing::info!("ready");

        // A dispatcher that fails (its log is gone, say) stops the whole process, so that its
        // supervisor restarts it rather than leaving it up and idle.
        let failed = tokio::select! {
            () = shutdown => None,
            joined = &mut dispatching => Some(joined),
        };
        tracing::info!("shutting down");
        readiness.set(false);
        if failed.is_none() && serves_api {
            common::telemetry::drain(settings.admin.drain_secs).await;
        }
        stop.cancel();
        let grace = settings.dispatcher.shutdown_grace();
        let dispatched = match failed {
            Some(joined) => {
                tracing::error!("dispatcher stopped on its own");
                Ok(joined)
            }
            None => tokio::time::timeout(grace, dispatching).await,
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
            Ok(joined) => joined.map_err(|err| StackError::Http(std::io::Error::other(err)))??,
            Err(_) => {
                tracing::warn!("dispatcher did not finish its batch within the grace period; it will be redelivered")
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}
