//! The standalone dispatcher: consumes the message log and dispatches; health and metrics on
//! `dispatcher.ops_listen`.

use common::config::Settings;
use common::process::{config_path, shutdown_signal};
use common::telemetry::init_tracing;
use engageninja::stack::{Role, Stack};

const USAGE: &str = "dispatcher: consumes the message log, sends messages, records statuses

usage: dispatcher [--config FILE]

Settings come from FILE (TOML, see deploy/engageninja.toml), then ENGAGENINJA_* environment
variables. Health, readiness and metrics are served on dispatcher.ops_listen.";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(config_path(USAGE)?.as_deref())?;
    init_tracing(&settings.telemetry)?;
    let stack = Stack::build(settings, Role::Dispatcher).await?;
    tracing::info!(ops = %stack.local_addr(), "dispatcher started");
    stack.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
