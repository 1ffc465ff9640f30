//! A stand-in for Twilio's Messages API, for load tests and development: point
//! `TwilioClientSettings::base_url` at [`RunningSimulator::base_url`].
//!
//! - [`config`]: accounts, latency, concurrency, injected faults, sender rates, timings, and
//!   how the onboarding and SES routes behave.
//! - [`twilio`]: `POST .../Messages.json`, `GET .../Messages.json` (by `To` and `From`) and
//!   `GET .../Messages/{Sid}.json`, with Twilio's checks
//!   and error codes (the table is there).
//! - [`state`]: created messages, counters, sends per sender and the rate-violation rule.
//! - [`callbacks`]: status progression and signed status callbacks from one timer task.
//! - [`accounts`]: the onboarding endpoints (subaccounts, Trust Hub, A2P brands and campaigns,
//!   Messaging Services, numbers) under the same base URL; [`registry`]: what they record.
//! - [`ses`]: AWS SES v2 `SendEmail` and `SendBulkEmail`, and SES events as signed SNS
//!   notifications; [`ses_templates`]: its email templates.
//!
//! They depend on each other one way: `config`, then `registry`, `state`, `callbacks`, then the
//! routes (`twilio`, `accounts`, `ses`, then `ses_templates`); `.ci/acyclic.py` keeps it so.
//!
//! `GET /stats` answers [`SimulatorStats`] as JSON. The server listens on 127.0.0.1 only and
//! stops, with every task it started, on [`RunningSimulator::shutdown`] or when the
//! [`RunningSimulator`] is dropped.

pub mod accounts;
pub mod callbacks;
pub mod config;
pub mod registry;
pub mod ses;
pub mod ses_templates;
pub mod state;
pub mod twilio;
pub mod whatsapp;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    BrandOutcome, CallbackSettings, ConfigError, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Faults, OnboardingSimConfig,
    SesSimConfig, SimulatorConfig, StatusTimings,
};
pub use registry::OnboardingStats;
pub use state::{SesStats, SimulatorStats, Violation, allowed_per_window, find_violations};

use callbacks::Scheduler;
use state::State;

/// How long [`RunningSimulator::shutdown`] waits for callbacks in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the simulator could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The configuration is invalid.
    #[error("invalid simulator configuration")]
    Config(#[from] ConfigError),
    /// The port could not be bound.
    #[error("could not listen on 127.0.0.1:{port}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The callback HTTP client could not be built.
    #[error("could not build the callback http client")]
    HttpClient(#[source] reqwest::Error),
    /// The server failed while serving.
    #[error("the simulator server failed")]
    Serve(#[source] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("the simulator server task ended abnormally")]
    Join(#[source] tokio::task::JoinError),
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Arc<State>,
    /// Create-request slots per account.
    slots: HashMap<String, Arc<Semaphore>>,
    scheduler: Scheduler,
    cancel: CancellationToken,
}

/// The Twilio simulator; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Simulator;

impl Simulator {
    /// Binds 127.0.0.1:`config.port` and starts serving.
    pub async fn start(config: SimulatorConfig) -> Result<RunningSimulator, SimulatorError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.callbacks.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SimulatorError::HttpClient)?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(|source| SimulatorError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimulatorError::Bind {
            port: config.port,
            source,
        })?;
        let slots = config
            .accounts
            .keys()
            .map(|sid| (sid.clone(), Arc::new(Semaphore::new(config.concurrency))))
            .collect();
        let state = Arc::new(State::new(config));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ses_routes = ses::router(&state, &http, &tracker, &cancel, addr, ses_templates::routes());
        let scheduler = callbacks::start(Arc::clone(&state), http, tracker.clone(), cancel.clone());
        let shared = Arc::new(Shared {
            state: Arc::clone(&state),
            slots,
            scheduler: scheduler.clone(),
            cancel: cancel.clone(),
        });
        let router = Router::new()
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                post(twilio::create).get(twilio::list),
            )
            .route("/2010-04-01/Accounts/{account_sid}/Messages/{file}", get(twilio::fetch))
            .merge(accounts::routes())
            .merge(whatsapp::routes())
            .route("/stats", get(stats))
            .fallback(twilio::not_found)
            .with_state(shared)
            .merge(ses_routes);
        let stop = cancel.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        tracing::info!(%addr, "twilio simulator listening");
        Ok(RunningSimulator {
            addr,
            state,
            scheduler,
            cancel,
            tracker,
            server: Some(server),
        })
    }
}

async fn stats(AxumState(shared): AxumState<Arc<Shared>>) -> axum::Json<SimulatorStats> {
    axum::Json(shared.state.stats())
}

/// A simulator serving in the background; dropping it stops it too.
#[derive(Debug)]
pub struct RunningSimulator {
    addr: SocketAddr,
    state: Arc<State>,
    scheduler: callbacks::Scheduler,
    cancel: CancellationToken,
    tracker: TaskTracker,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    /// The base URL to give a Twilio client (`http://127.0.0.1:PORT`, no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has seen so far.
    pub fn stats(&self) -> SimulatorStats {
        self.state.stats()
    }

    /// How many messages were created with each body: tests that put a message's id in its body
    /// count its sends.
    pub fn creates_by_body(&self) -> std::collections::HashMap<String, u64> {
        self.state.creates_by_body()
    }

    /// Makes every onboarding endpoint answer 503 (code 20503) until switched back.
    pub fn set_onboarding_unavailable(&self, unavailable: bool) {
        self.state.onboarding.set_unavailable(unavailable);
    }

    /// Suspends an approved brand registration with `reason`, as the carriers may after
    /// approving it, and sends its status callback (`BrandStatus=SUSPENDED`).
    pub fn suspend_brand(&self, sid: &str, reason: &str) {
        self.scheduler.schedule(
            callbacks::Job::BrandSuspended {
                sid: sid.to_owned(),
                reason: reason.to_owned(),
            },
            Duration::ZERO,
        );
    }

    /// Shows campaign `sid` with `status` (`SUSPENDED`, `FAILED`, `VERIFIED`) from now on, or
    /// its review's own status again with `None`; campaigns have no status callback.
    pub fn set_campaign_status(&self, sid: &str, status: Option<&str>) {
        if let Some(campaign) = self.state.onboarding.inner().campaigns.get_mut(sid) {
            campaign.status_override = status.map(str::to_owned);
        }
    }

    /// Makes brand registrations reviewed from now on end as `outcome` (approve a brand
    /// resubmitted after a rejection).
    pub fn set_brand_outcome(&self, outcome: BrandOutcome) {
        self.state.onboarding.set_brand_outcome(outcome);
    }

    /// Stops serving (requests held open are cut short), stops the timer and waits up to 5 s
    /// for callbacks in flight; returns the final statistics.
    pub async fn shutdown(mut self) -> Result<SimulatorStats, SimulatorError> {
        self.cancel.cancel();
        self.tracker.close();
        let served = match self.server.take() {
            Some(server) => server.await,
            None => Ok(Ok(())),
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait()).await.is_err() {
            tracing::warn!("simulator tasks still running after the grace period");
        }
        let stats = self.state.stats();
        tracing::info!(
            received = stats.received,
            accepted = stats.accepted,
            "twilio simulator stopped"
        );
        served.map_err(SimulatorError::Join)?.map_err(SimulatorError::Serve)?;
        Ok(stats)
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
