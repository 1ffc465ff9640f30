//! The standalone admin API.

use common::config::Settings;
use common::process::{config_path, shutdown_signal};
use common::telemetry::{Readiness, init_tracing, metrics_handle};

const USAGE: &str = "admin-api: the EngageNinja Dispatch admin API

usage: admin-api [--config FILE]

Settings come from FILE (TOML, see deploy/engageninja.toml), then ENGAGENINJA_* environment
variables (nested keys joined with '__').";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = config_path(USAGE)?;
    let settings = Settings::load(config.as_deref())?;
    init_tracing(&settings.telemetry)?;
    let (log, store) = common::backends::open_embedded(&settings).await?;
    let readiness = Readiness::default();
    let state = admin_api::AppState { store, log };
    let router = admin_api::router(
        state,
        settings.admin.max_body_bytes,
        metrics_handle()?,
        readiness.clone(),
    );
    let server = admin_api::AdminServer::bind(settings.admin.listen, router).await?;
    tracing::info!(addr = %server.local_addr()?, "admin API listening");
    readiness.set(true);
    server.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
