//! The standalone admin API.

use std::sync::Arc;

use admin_api::onboarding::Onboarding;
use admin_api::webhooks::StoreStatusSink;
use common::config::Settings;
use common::credentials::keyring_from_settings;
use common::process::{config_path, shutdown_signal};
use common::ses::SesClient;
use common::telemetry::{Readiness, init_tracing, metrics_handle};
use common::twilio::TwilioClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const USAGE: &str = "admin-api: the EngageNinja Dispatch admin API

usage: admin-api [--config FILE]
       admin-api --print-openapi   (writes the OpenAPI document to stdout and exits)

Settings come from FILE (TOML, see deploy/engageninja.toml), then ENGAGENINJA_* environment
variables (nested keys joined with '__').";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--print-openapi") {
        return print_openapi();
    }
    let config = config_path(USAGE)?;
    let settings = Settings::load(config.as_deref())?;
    init_tracing(&settings.telemetry)?;
    let (log, store) = common::backends::open(&settings).await?;
    let keyring = Arc::new(keyring_from_settings(&settings)?);
    let readiness = Readiness::default();
    let listener = TcpListener::bind(settings.admin.listen).await?;
    let public_url = admin_api::public_url(&settings, listener.local_addr()?);
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
    tracker.spawn(admin_api::demo::run_cleanup(
        Arc::clone(&store),
        settings.demo.retention(),
        settings.demo.cleanup_interval(),
        None,
        background.clone(),
    ));
    let state = admin_api::AppState {
        statuses: Arc::new(StoreStatusSink(Arc::clone(&store))),
        store,
        log,
        keyring,
        public_url,
        twilio,
        ses: SesClient::new(settings.providers.ses.client_settings())?,
        sns: Arc::new(admin_api::ses_events::verifier(&settings.providers.ses)?),
        onboarding,
        platform_key_hash: admin_api::platform_key_hash(&settings),
        pacing: settings.dispatcher.pacing.clone(),
        stopping: stopping.clone(),
    };
    let router = admin_api::router(
        state,
        settings.admin.max_body_bytes,
        metrics_handle()?,
        readiness.clone(),
    );
    let server = admin_api::AdminServer::new(listener, router);
    tracing::info!(addr = %server.local_addr()?, "admin API listening");
    readiness.set(true);
    let stop = stopping.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    server.run_until_stopped(stopping.cancelled_owned()).await?;
    background.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Writes the OpenAPI document to stdout (`--print-openapi`; needs no settings).
fn print_openapi() -> anyhow::Result<()> {
    use std::io::Write as _;
    let json = admin_api::openapi().to_pretty_json()?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(json.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}
