//! `load`: drives EngageNinja Dispatch and measures it. `load http` sends traffic to a running
//! stack; `load scenario NAME` runs one of the benchmark scenarios in process and prints what it
//! measured; `load simulate` runs the Twilio simulator ([`load::simulator`]).

mod http;
mod measure;
mod scenario;
mod simulate;

const USAGE: &str = "load: drive EngageNinja Dispatch and measure it

usage:
  load http --key API_KEY [--url URL] [--messages N] [--batch N] [--concurrency N]
  load scenario embedded [--messages N]       embedded stack, demo provider: messages/s to durable sent
  load scenario scaled [--messages N] [--simulator 1]   Kafka + Cassandra (ENGAGENINJA_KAFKA_BOOTSTRAP,
                                              ENGAGENINJA_CASSANDRA_CONTACT): messages/s to durable sent, demo
                                              provider or live tenants over HTTP to the simulator
  load scenario pacing [--seconds S]          10,000 senders at 1 msg/s: share of the allowed rate, violations
  load scenario fairness [--backlog N]        a small tenant's latency beside a huge backlog: p50/p99
  load scenario memory [--backlog N] [--seconds S]   resident memory of the dispatcher with a huge backlog
  load simulate [--port P] [--latency-ms N] [--error-rate F] [--concurrency N] [--rate-per-sender F] [--seconds S]
                                              a stand-in for Twilio's Messages API (see load simulate --help)

Each scenario prints its measurements as text and as one JSON line.";

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("http") => http::run(args).await,
        Some("scenario") => scenario::run(args).await,
        Some("simulate") => simulate::run(args).await,
        Some("--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command {other:?}; see --help"),
    }
}
