//! The all-in-one EngageNinja Dispatch process: dispatcher and admin API over the embedded log
//! and store, with a demo tenant on first start.

use common::config::Settings;
use common::process::{UsageError, command_line, shutdown_signal};
use common::telemetry::init_tracing;
use engageninja::stack::{Role, Stack};

const USAGE: &str = "engageninja: dispatcher and admin API in one process (embedded log and store)

usage: engageninja [--config FILE]
       engageninja credentials reseal [--config FILE]
           re-seals every stored channel credential under the newest key of the ring (run it
           after putting a new key first; it can be interrupted and run again), then exits
       engageninja import legacy --sqlite FILE --legacy-key-file KEYFILE [--dry-run] [--tenant ID ...]
              [--report FILE] [--config FILE]
           imports an existing EngageNinja installation's SQLite database into the store the
           settings name (see README, \"Migrating an existing installation\"); safe to run
           again and to resume after a stop; --help lists the options

Settings come from FILE (TOML, see deploy/engageninja.toml), then ENGAGENINJA_* environment
variables (nested keys joined with '__', e.g. ENGAGENINJA_ADMIN__LISTEN=127.0.0.1:8080).";

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() -> anyhow::Result<()> {
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
    let stack = Stack::build(settings, Role::AllInOne).await?;
    let addr = stack.local_addr();
    if let Some(key) = stack.demo_key() {
        println!(
            "demo tenant created: tenant_id={} api_key={}",
            key.tenant_id, key.secret
        );
        println!("the key is shown this once; keep it (e.g. export ENGAGENINJA_KEY=...)");
    }
    println!(
        "admin API on http://{addr} (metrics at http://{}/metrics)",
        stack.ops_addr()
    );
    stack.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
