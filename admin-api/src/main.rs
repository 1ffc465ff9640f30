//! The standalone admin API.

use admin_api::standalone::Standalone;
use common::config::Settings;
use common::process::{config_path, shutdown_signal};
use common::telemetry::init_tracing;

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
    let server = Standalone::build(&settings).await?;
    tracing::info!(addr = %server.local_addr()?, ops = %server.ops_addr()?, "admin API listening");
    server.run_until_stopped(shutdown_signal()).await?;
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
