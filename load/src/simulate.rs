//! `load simulate`: runs the provider simulator (Twilio and SES) until Ctrl-C or for a fixed
//! time, then prints what it saw.

use std::time::Duration;

use anyhow::Context;
use load::simulator::ses::{CERT_PATH, DEFAULT_TOPIC_ARN};
use load::simulator::{
    BrandOutcome, DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, Simulator, SimulatorConfig, SimulatorStats,
};

/// Run a stand-in for Twilio and SES v2 on 127.0.0.1.
///
/// Twilio: Messages, accounts, Trust Hub, 10DLC brands and campaigns, numbers. SES v2:
/// SendEmail, SendBulkEmail, events over SNS. Point the stack's [providers.twilio] URLs and
/// [providers.ses] endpoint at the printed URL (see the README). GET /stats shows the counters
/// and any sender rate violations; they are also printed at the end.
#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fixed delay before each create request is processed.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of create requests answered 503, code 20503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share created but answered only after 120 s.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// Share that end undelivered with code 30003.
    #[arg(long, default_value_t = 0.0)]
    undelivered_rate: f64,
    /// Share that end undelivered with code 30007.
    #[arg(long, default_value_t = 0.0)]
    filtered_rate: f64,
    /// Create requests in progress per account; beyond: 429, code 20429.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Sends per second a sender may make.
    #[arg(long, default_value_t = 1.0)]
    rate_per_sender: f64,
    /// The rate of one sender (From or MessagingServiceSid as sent), SENDER=RATE; repeatable.
    #[arg(long, value_name = "SENDER=RATE", value_parser = sender_rate)]
    sender_rate: Vec<(String, f64)>,
    /// An accepted account, SID:TOKEN; repeatable (default AC000...0:simulator-auth-token).
    #[arg(long, value_name = "SID:TOKEN", value_parser = account)]
    account: Vec<(String, String)>,
    /// How long a 10DLC brand stays PENDING before its verdict.
    #[arg(long, default_value_t = 500)]
    brand_review_ms: u64,
    /// How long a WhatsApp sender's review or verification, and a template's WhatsApp review,
    /// take.
    #[arg(long, default_value_t = 500)]
    whatsapp_review_ms: u64,
    /// Brands end FAILED with this reason (default: APPROVED).
    #[arg(long, value_name = "REASON")]
    brand_fails: Option<String>,
    /// An accepted AWS access key id; repeatable (default AKIASIMULATOR0000000).
    #[arg(long)]
    ses_key: Vec<String>,
    /// Post SES events, signed as SNS notifications, to URL (the stack's /webhooks/ses);
    /// default: no events.
    #[arg(long, value_name = "URL")]
    ses_events_to: Option<reqwest::Url>,
    /// Seed for the random draws (default: from the OS).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after S seconds (default: run until Ctrl-C).
    #[arg(long, value_parser = positive_seconds)]
    seconds: Option<f64>,
}

fn sender_rate(raw: &str) -> Result<(String, f64), String> {
    let (sender, rate) = raw.rsplit_once('=').ok_or("takes SENDER=RATE")?;
    let rate = rate.parse().map_err(|e| format!("the rate: {e}"))?;
    Ok((sender.to_owned(), rate))
}

fn account(raw: &str) -> Result<(String, String), String> {
    let (sid, token) = raw.split_once(':').ok_or("takes SID:TOKEN")?;
    Ok((sid.to_owned(), token.to_owned()))
}

fn positive_seconds(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err("must be a positive number".to_owned()),
    }
}

impl SimulateArgs {
    /// The simulator's configuration these arguments describe.
    fn config(self) -> anyhow::Result<SimulatorConfig> {
        let mut config = SimulatorConfig {
            port: self.port,
            latency: Duration::from_millis(self.latency_ms),
            concurrency: self.concurrency,
            seed: self.seed,
            rate_per_sender: self.rate_per_sender,
            sender_rates: self.sender_rate.into_iter().collect(),
            ..SimulatorConfig::default()
        };
        config.faults.server_error_rate = self.error_rate;
        config.faults.timeout_rate = self.timeout_rate;
        config.faults.unreachable_rate = self.undelivered_rate;
        config.faults.filtered_rate = self.filtered_rate;
        config.onboarding.brand_review_delay = Duration::from_millis(self.brand_review_ms);
        config.onboarding.whatsapp_review_delay = Duration::from_millis(self.whatsapp_review_ms);
        if let Some(reason) = self.brand_fails {
            config.onboarding.brand_outcome = BrandOutcome::Fail { reason };
        }
        if !self.account.is_empty() {
            config.accounts = self.account.into_iter().collect();
        }
        if !self.ses_key.is_empty() {
            config.ses.access_key_ids = self.ses_key;
        }
        config.ses.sns_endpoint = self.ses_events_to;
        config.validate().context("invalid simulator settings")?;
        Ok(config)
    }
}

/// Runs the simulator until Ctrl-C or for `--seconds`.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let seconds = args.seconds;
    let config = args.config()?;
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
