//! The standalone admin API.

use common::config::Settings;
use common::process::{UsageError, command_line, shutdown_signal};
use common::telemetry::init_tracing;
use engageninja::stack::{Role, Stack};

const USAGE: &str = "admin-api: the EngageNinja Dispatch admin API

usage: admin-api [--config FILE]
       admin-api --print-openapi   (writes the OpenAPI document to stdout and exits)
       admin-api credentials reseal [--config FILE]
           re-seals every stored channel credential under the newest key of the ring (run it
           after putting a new key first; it can be interrupted and run again), then exits
       admin-api import legacy --sqlite FILE --legacy-key-file KEYFILE [--dry-run] [--tenant ID ...]
              [--report FILE] [--config FILE]
           imports an existing EngageNinja installation's SQLite database into the store the
           settings name (see README, \"Migrating an existing installation\"); safe to run
           again and to resume after a stop; --help lists the options

Settings come from FILE (TOML, see deploy/engageninja.toml), then ENGAGENINJA_* environment
variables (nested keys joined with '__').";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--print-openapi") {
        return print_openapi();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [first, second, rest @ ..] = args.as_slice()
        && first == "import"
        && second == "legacy"
    {
        return admin_api::import::main(rest.to_vec()).await;
    }
    let line = command_line(USAGE)?;
    let settings = Settings::load(line.config.as_deref())?;
    init_tracing(&settings.telemetry)?;
    match line.command.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {}
        ["credentials", "reseal"] => return Ok(admin_api::reseal::print_command(&settings).await?),
        other => return Err(UsageError::new(format!("unknown command {other:?}")).into()),
    }
    let stack = Stack::build(settings, Role::AdminApi).await?;
    tracing::info!(addr = %stack.local_addr(), ops = %stack.ops_addr(), "admin API listening");
    stack.run_until_stopped(shutdown_signal()).await?;
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
