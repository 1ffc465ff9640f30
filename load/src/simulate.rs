//! `load simulate`: runs the provider simulator (Twilio and SES) until Ctrl-C or for a fixed
//! time, then prints what it saw.

use std::time::Duration;

use anyhow::{Context, bail};
use load::simulator::ses::{CERT_PATH, DEFAULT_TOPIC_ARN};
use load::simulator::{
    BrandOutcome, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Simulator, SimulatorConfig, SimulatorStats,
};

const USAGE: &str = "load simulate: a stand-in for Twilio (Messages, accounts, Trust Hub, 10DLC brands and
campaigns, numbers) and SES v2 (SendEmail, SendBulkEmail, events over SNS) on 127.0.0.1

usage: load simulate [--port P] [--latency-ms N] [--error-rate F] [--timeout-rate F]
                     [--undelivered-rate F] [--filtered-rate F] [--concurrency N]
                     [--rate-per-sender F] [--sender-rate SENDER=F]... [--account SID:TOKEN]...
                     [--brand-review-ms N] [--brand-fails REASON] [--ses-key KEY]...
                     [--ses-events-to URL] [--seed N] [--seconds S]

  --port P              port to listen on (default 0: any free port, printed at start)
  --latency-ms N        fixed delay before each create request is processed (default 0)
  --error-rate F        share of create requests answered 503, code 20503 (default 0)
  --timeout-rate F      share created but answered only after 120 s (default 0)
  --undelivered-rate F  share that end undelivered with code 30003 (default 0)
  --filtered-rate F     share that end undelivered with code 30007 (default 0)
  --concurrency N       create requests in progress per account; beyond: 429, code 20429 (default 100)
  --rate-per-sender F   sends per second a sender may make (default 1)
  --sender-rate S=F     the rate of one sender (From or MessagingServiceSid as sent); repeatable
  --account SID:TOKEN   an accepted account; repeatable (default AC000...0:simulator-auth-token)
  --brand-review-ms N   how long a 10DLC brand stays PENDING before its verdict (default 500)
  --brand-fails REASON  brands end FAILED with this reason (default: APPROVED)
  --ses-key KEY         an accepted AWS access key id; repeatable (default AKIASIMULATOR0000000)
  --ses-events-to URL   post SES events, signed as SNS notifications, to URL (the stack's
                        /webhooks/ses); default: no events
  --seed N              seed for the random draws (default: from the OS)
  --seconds S           stop after S seconds (default: run until Ctrl-C)

Point the stack's [providers.twilio] URLs and [providers.ses] endpoint at the printed URL (see
the README). GET /stats shows the counters and any sender rate violations; they are also
printed at the end.";

struct Options {
    config: SimulatorConfig,
    seconds: Option<f64>,
}

fn options(args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut config = SimulatorConfig::default();
    let mut accounts = Vec::new();
    let mut ses_keys = Vec::new();
    let mut seconds = None;
    let mut args = args;
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => config.port = value()?.parse().context("--port")?,
            "--latency-ms" => config.latency = Duration::from_millis(value()?.parse().context("--latency-ms")?),
            "--error-rate" => config.faults.server_error_rate = value()?.parse().context("--error-rate")?,
            "--timeout-rate" => config.faults.timeout_rate = value()?.parse().context("--timeout-rate")?,
            "--undelivered-rate" => config.faults.unreachable_rate = value()?.parse().context("--undelivered-rate")?,
            "--filtered-rate" => config.faults.filtered_rate = value()?.parse().context("--filtered-rate")?,
            "--concurrency" => config.concurrency = value()?.parse().context("--concurrency")?,
            "--rate-per-sender" => config.rate_per_sender = value()?.parse().context("--rate-per-sender")?,
            "--sender-rate" => {
                let raw = value()?;
                let (sender, rate) = raw.rsplit_once('=').context("--sender-rate takes SENDER=RATE")?;
                config
                    .sender_rates
                    .insert(sender.to_owned(), rate.parse().context("--sender-rate")?);
            }
            "--account" => {
                let raw = value()?;
                let (sid, token) = raw.split_once(':').context("--account takes SID:TOKEN")?;
                accounts.push((sid.to_owned(), token.to_owned()));
            }
            "--brand-review-ms" => {
                config.onboarding.brand_review_delay =
                    Duration::from_millis(value()?.parse().context("--brand-review-ms")?);
            }
            "--brand-fails" => config.onboarding.brand_outcome = BrandOutcome::Fail { reason: value()? },
            "--ses-key" => ses_keys.push(value()?),
            "--ses-events-to" => config.ses.sns_endpoint = Some(value()?.parse().context("--ses-events-to")?),
            "--seed" => config.seed = Some(value()?.parse().context("--seed")?),
            "--seconds" => {
                let value: f64 = value()?.parse().context("--seconds")?;
                if !value.is_finite() || value <= 0.0 {
                    bail!("--seconds must be a positive number");
                }
                seconds = Some(value);
            }
            "--help" | "-h" => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{USAGE}");
                }
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    if !accounts.is_empty() {
        config.accounts = accounts.into_iter().collect();
    }
    if !ses_keys.is_empty() {
        config.ses.access_key_ids = ses_keys;
    }
    config.validate().context("invalid simulator settings")?;
    Ok(Options { config, seconds })
}

/// Runs the simulator with the command line's remaining arguments.
#[allow(clippy::print_stdout)]
pub async fn run(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let Options { config, seconds } = options(args)?;
    let ses_keys = config.ses.access_key_ids.clone();
    let ses_events = config.ses.sns_endpoint.is_some();
    let default_account = config.accounts.get(DEFAULT_ACCOUNT_SID).map(String::as_str) == Some(DEFAULT_AUTH_TOKEN);
    let simulator = Simulator::start(config).await.context("starting the simulator")?;
    println!("provider simulator listening on {}", simulator.base_url());
    if default_account {
        println!("twilio account: {DEFAULT_ACCOUNT_SID}  auth token: {DEFAULT_AUTH_TOKEN}");
    }
    println!("ses access keys: {}", ses_keys.join(", "));
    if ses_events {
        println!(
            "ses events: sns topic {DEFAULT_TOPIC_ARN}, certificate {}{CERT_PATH}",
            simulator.base_url()
        );
    }
    match seconds {
        Some(seconds) => {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs_f64(seconds)) => {}
                signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
            }
        }
        None => tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?,
    }
    let stats = simulator.shutdown().await.context("stopping the simulator")?;
    print_stats(&stats)
}

#[allow(clippy::print_stdout)]
fn print_stats(stats: &SimulatorStats) -> anyhow::Result<()> {
    println!(
        "received {} accepted {} 429s {} timeouts {} fetches {} callbacks sent {} failed {} dropped {}",
        stats.received,
        stats.accepted,
        stats.too_many_requests,
        stats.timeouts,
        stats.fetches,
        stats.callbacks_sent,
        stats.callbacks_failed,
        stats.callbacks_dropped
    );
    for (code, count) in &stats.rejected_by_code {
        println!("  rejected with code {code}: {count}");
    }
    println!(
        "senders: {}, rate violations: {}",
        stats.per_sender.len(),
        stats.violations.len()
    );
    for violation in stats.violations.iter().take(20) {
        println!(
            "  {} sent {} (allowed {}) in the second from {} ms",
            violation.sender, violation.count, violation.allowed, violation.window_start_ms
        );
    }
    println!("{}", serde_json::to_string(stats).context("encoding the stats")?);
    Ok(())
}
