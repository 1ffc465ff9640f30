//! `load`: drives EngageNinja Dispatch and measures it. `load run` starts a stack as its own
//! processes, offers it a mixed multi-tenant load and reports what it measured (JSON and a
//! chart); `load http` sends traffic to a stack already running; `load scenario NAME` runs one
//! of the benchmark scenarios in process; `load simulate` runs the provider simulator
//! ([`load::simulator`]).

use clap::{Parser, Subcommand};

mod http;
mod measure;
mod run;
mod scenario;
mod simulate;

/// Drive EngageNinja Dispatch and measure it.
#[derive(Debug, Parser)]
#[command(name = "load", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::RunArgs),
    Http(http::HttpArgs),
    Scenario(scenario::ScenarioArgs),
    Simulate(simulate::SimulateArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => Box::pin(run::run(args)).await,
        Command::Http(args) => http::run(args).await,
        Command::Scenario(args) => Box::pin(scenario::run(args)).await,
        Command::Simulate(args) => simulate::run(args).await,
    }
}
