//! The dispatcher assembled over a process's opened backends: the status writer, the demo and
//! live providers, reconciliation and the dispatcher itself. The process that runs it (alone or
//! beside the admin API) is composed by the `engageninja` package.

use std::collections::HashMap;
use std::sync::Arc;

use common::config::Settings;
use common::credentials::Keyring;
use common::log::MessageLog;
use common::ses::{SesClient, SesError};
use common::store::{ProviderKind, StatusUpdate, Store};
use common::twilio::{ClientError, TwilioClient};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Providers;
use crate::intake::Dispatcher;
use crate::provider::credentials::StoreCredentials;
use crate::provider::demo::DemoProvider;
use crate::status::StatusWriter;
use common::provider::Provider;
use common::ses::provider::SesProvider;
use common::twilio::provider::TwilioProvider;
use common::unsubscribe::UnsubscribeLinks;

/// Why the dispatcher could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The Twilio client settings are invalid.
    #[error("providers.twilio: {0}")]
    Twilio(#[from] ClientError),
    /// The SES client settings are invalid.
    #[error("providers.ses: {0}")]
    Ses(#[from] SesError),
}

/// What the dispatcher is built over: the process's opened backends and its task bookkeeping.
pub struct Wiring {
    /// The opened store.
    pub store: Arc<dyn Store>,
    /// The opened message log.
    pub log: Arc<dyn MessageLog>,
    /// The credential key ring (live tenants' provider credentials).
    pub keyring: Arc<Keyring>,
    /// The URL of the admin API as providers reach it: Twilio's status callbacks go there.
    pub public_url: String,
    /// Where durable status changes are published in process.
    pub events: broadcast::Sender<StatusUpdate>,
    /// Tracks the background tasks (status writer, demo timers, reconciliation).
    pub tracker: TaskTracker,
    /// Stops the background tasks.
    pub background: CancellationToken,
}

/// The assembled dispatcher, not yet running.
pub struct Service {
    /// Consumes the log and dispatches; run it with [`Dispatcher::run`].
    pub dispatcher: Dispatcher,
    /// Records status changes; provider webhooks of the same process go through it.
    pub status: StatusWriter,
}

impl Service {
    /// Starts the status writer, the demo provider's timers and reconciliation on the wiring's
    /// tracker, and builds the dispatcher over them.
    pub fn start(settings: &Settings, wiring: Wiring) -> Result<Self, ServiceError> {
        let Wiring {
            store,
            log,
            keyring,
            public_url,
            events,
            tracker,
            background,
        } = wiring;
        crate::metrics::describe();
        let topic = settings.dispatcher.publish_status_events.then(|| Arc::clone(&log));
        let status = StatusWriter::start(Arc::clone(&store), events, topic, Some(Arc::clone(&log)), &tracker);
        let demo = DemoProvider::start(&settings.demo, status.clone(), &tracker, background.clone());
        let providers = Providers {
            demo: Arc::new(demo),
            live: live_providers(settings, &store, &keyring, &public_url)?,
        };
        tracker.spawn(crate::reconcile::run(
            Arc::clone(&store),
            providers.clone(),
            status.clone(),
            settings.dispatcher.reconcile.clone(),
            background,
        ));
        let dispatcher = Dispatcher::new(store, log, providers, status.clone(), settings.dispatcher.clone());
        Ok(Self { dispatcher, status })
    }
}

/// The real providers by kind, with each tenant's stored credentials: Twilio (status callbacks
/// asked for at the admin API's public URL), SES (events come back through the tenant's
/// configuration set and SNS; one-click unsubscribe links point at the same URL).
fn live_providers(
    settings: &Settings,
    store: &Arc<dyn Store>,
    keyring: &Arc<Keyring>,
    public_url: &str,
) -> Result<HashMap<ProviderKind, Arc<dyn Provider>>, ServiceError> {
    let client = TwilioClient::new(&(&settings.providers.twilio).into())?;
    let credentials = Arc::new(StoreCredentials::new(Arc::clone(store), Arc::clone(keyring)));
    let twilio: Arc<dyn Provider> = Arc::new(TwilioProvider::new(
        client,
        credentials.clone(),
        Some(format!("{public_url}/webhooks/twilio/status")),
    ));
    let unsubscribe = UnsubscribeLinks::new(public_url, Arc::clone(keyring));
    let ses = SesProvider::new(
        SesClient::new((&settings.providers.ses).into())?,
        credentials,
        Some(unsubscribe),
    );
    Ok(HashMap::from([
        (ProviderKind::Twilio, twilio),
        (ProviderKind::Ses, Arc::new(ses) as Arc<dyn Provider>),
    ]))
}
