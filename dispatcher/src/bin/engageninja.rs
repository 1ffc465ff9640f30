//! The all-in-one EngageNinja Dispatch process: dispatcher and admin API over the embedded log
//! and store, with a demo tenant on first start.

use common::config::Settings;
use common::process::{config_path, shutdown_signal};
use common::telemetry::init_tracing;
use dispatcher::stack::{Role, Stack};

const USAGE: &str = "engageninja: dispatcher and admin API in one process (embedded log and store)

usage: engageninja [--config FILE]

Settings come from FILE (TOML, see deploy/engageninja.toml), then ENGAGENINJA_* environment
variables (nested keys joined with '__', e.g. ENGAGENINJA_ADMIN__LISTEN=127.0.0.1:8080).";

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(config_path(USAGE)?.as_deref())?;
    init_tracing(&settings.telemetry)?;
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
