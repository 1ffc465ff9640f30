//! `load run`: starts a stack as its own processes on a fresh data directory (or fresh Kafka
//! topics and a Cassandra keyspace), offers it traffic from many tenants, waits until every
//! message was dispatched and the delivery receipts settled, and reports what it measured.
//!
//! - [`traffic`]: what is offered (Zipf tenants, channel mix, SMS sizes across segment
//!   boundaries, priorities).
//! - [`stack`]: the settings file, the seeded tenants, the processes and the simulator.
//! - [`report`]: the numbers, as JSON and as an SVG chart.

mod report;
mod stack;
mod traffic;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use common::log::{MessageLog, OutgoingRecord, Topic};
use common::{MessageId, TenantId};
use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::measure::{cpu_seconds_of, resident_mib_of};
use report::{Measured, Outcome, Report, Sample, Setup};
use stack::Stack;
use traffic::{ChannelMix, Planned, Traffic};

/// Where the offered messages enter the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Target {
    /// `POST /v1/messages` on the all-in-one process (embedded log and SQLite store).
    Http,
    /// Produced to Kafka; `dispatcher` and `admin-api` as their own processes on Kafka and
    /// Cassandra (ENGAGENINJA_KAFKA_BOOTSTRAP, ENGAGENINJA_CASSANDRA_CONTACT).
    Kafka,
}

/// Who sends the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProviderChoice {
    /// Demo tenants: the dispatcher simulates sending and delivery itself.
    Demo,
    /// Live tenants: Twilio and SES calls over HTTP to the provider simulator, statuses back by
    /// signed webhooks; the simulator reports any sender over its rate.
    Simulator,
}

/// Offer a stack mixed multi-tenant traffic and report throughput, latency, fairness, pacing and
/// the dispatcher's CPU and memory.
///
/// Starts the stack's binaries (built beside this one: `cargo build --release`) on a fresh data
/// directory, or on fresh Kafka topics and a Cassandra keyspace; seeds the tenants; offers the
/// messages; waits until every one was dispatched and the delivery receipts stopped coming;
/// stops the stack; writes report.json and report.svg into --out.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Where messages enter.
    #[arg(long, value_enum, default_value_t = Target::Http)]
    target: Target,
    /// Who sends them.
    #[arg(long, value_enum, default_value_t = ProviderChoice::Demo)]
    provider: ProviderChoice,
    /// Messages to offer.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Offered messages per second (0: as fast as the stack accepts them).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Tenants (at most 799).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=799))]
    tenants: u16,
    /// Zipf exponent of the tenants' volumes: the k-th busiest gets 1/k^s of the traffic (0: even).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// SMS numbers per tenant (each tenant has one WhatsApp number too).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=9_000))]
    senders: u16,
    /// Cells (SMS segments, or messages) per second each number may send.
    #[arg(long, default_value_t = 50.0)]
    sender_rate: f64,
    /// Channel weights.
    #[arg(long, default_value = "sms=70,whatsapp=20,email=10", value_parser = traffic::parse_mix)]
    channels: ChannelMix,
    /// Share of transactional messages, 0 to 1 (the rest are marketing).
    #[arg(long, default_value_t = 0.2)]
    transactional: f64,
    /// Longest wait for delivery receipts once every message was dispatched.
    #[arg(long, default_value_t = 20)]
    settle_secs: u64,
    /// Directory of the report (report.json, report.svg), the run's settings and the logs.
    #[arg(long, default_value = "load-report")]
    out: PathBuf,
    /// Seed of the traffic's random draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the Kafka topics' Cassandra keyspace after the run (dropped by default).
    #[arg(long)]
    keep_data: bool,
}

impl RunArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.messages == 0 {
            bail!("--messages must be at least 1");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            bail!("--rate must be 0 (as fast as accepted) or a positive number");
        }
        if !self.zipf.is_finite() || self.zipf < 0.0 {
            bail!("--zipf must be zero or more");
        }
        if !self.sender_rate.is_finite() || self.sender_rate <= 0.0 {
            bail!("--sender-rate must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.transactional) {
            bail!("--transactional must be between 0 and 1");
        }
        Ok(())
    }

    fn setup(&self) -> Setup {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines().find_map(|line| {
                    line.strip_prefix("model name")
                        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
                })
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        Setup {
            target: format!("{:?}", self.target).to_lowercase(),
            provider: format!("{:?}", self.provider).to_lowercase(),
            messages: self.messages,
            offered_rate: self.rate,
            tenants: usize::from(self.tenants),
            zipf: self.zipf,
            senders_per_tenant: usize::from(self.senders),
            sender_rate: self.sender_rate,
            channels: self
                .channels
                .channels()
                .map(common::Channel::as_str)
                .collect::<Vec<_>>()
                .join(","),
            transactional: self.transactional,
            machine: format!("{cpus} CPUs, {model}"),
        }
    }
}

/// A message the stack acknowledged, and when.
struct Accepted {
    tenant: usize,
    id: String,
    at: OffsetDateTime,
}

/// Runs one load run.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    args.check()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let work = tempfile::tempdir()?;
    let run = format!("load{}", OffsetDateTime::now_utc().unix_timestamp());
    eprintln!(
        "starting the stack ({:?}, {:?}); logs in {}",
        args.target,
        args.provider,
        args.out.display()
    );
    let stack = Stack::start(&args, &run, &args.out, work.path()).await?;
    let outcome = measure(&args, &run, &stack).await;
    let dispatcher = stack.processes[0].name;
    let settings = stack.settings.clone();
    let simulator = stack.stop().await.context("stopping the stack")?;
    let (offered, samples) = outcome?;

    let store = common::backends::open_store(&settings).await?;
    let outcomes = read_outcomes(store.as_ref(), &stack_tenant_ids(&args)?, &offered).await?;
    let started_at = offered
        .iter()
        .map(|a| a.at)
        .min()
        .unwrap_or_else(OffsetDateTime::now_utc);
    let offered_until = offered.iter().map(|a| a.at).max().unwrap_or(started_at);
    let names = stack::tenant_names(usize::from(args.tenants));
    let process = match args.target {
        Target::Http => "engageninja (dispatcher and admin API)".to_owned(),
        Target::Kafka => dispatcher.to_owned(),
    };
    let report = Report::build(
        &outcomes,
        Measured {
            setup: args.setup(),
            tenant_names: &names,
            started_at,
            offered_until,
            samples: &samples,
            process,
            simulator,
        },
    );
    report.write(&args.out)?;
    if args.target == Target::Kafka && !args.keep_data {
        common::store::cassandra::CassandraStore::open(&settings.store.cassandra)
            .await?
            .drop_keyspace()
            .await?;
    }
    println!("{}", report.summary());
    println!(
        "report: {} and {}",
        args.out.join("report.json").display(),
        args.out.join("report.svg").display()
    );
    Ok(())
}

fn stack_tenant_ids(args: &RunArgs) -> anyhow::Result<Vec<TenantId>> {
    stack::tenant_names(usize::from(args.tenants))
        .into_iter()
        .map(|name| Ok(TenantId::parse(name)?))
        .collect()
}

/// Offers the traffic and waits for it, sampling the dispatcher process meanwhile.
async fn measure(args: &RunArgs, run: &str, stack: &Stack) -> anyhow::Result<(Vec<Accepted>, Vec<Sample>)> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop_sampling = CancellationToken::new();
    let sampler = tokio::spawn(sample(
        stack.processes[0].pid,
        Arc::clone(&samples),
        stop_sampling.clone(),
    ));
    let result = offer_and_wait(args, run, stack).await;
    stop_sampling.cancel();
    sampler.await?;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    Ok((result?, samples))
}

/// Samples the process's CPU and memory every second until cancelled.
async fn sample(pid: u32, samples: Arc<Mutex<Vec<Sample>>>, stop: CancellationToken) {
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let (rss, _) = resident_mib_of(Some(pid));
        let sample = Sample {
            second: started.elapsed().as_secs_f64(),
            cpu_seconds: cpu_seconds_of(Some(pid)),
            rss_mib: rss,
        };
        samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sample);
    }
}

async fn offer_and_wait(args: &RunArgs, run: &str, stack: &Stack) -> anyhow::Result<Vec<Accepted>> {
    let names: Vec<String> = stack.tenants.iter().map(|tenant| tenant.id.clone()).collect();
    let mut traffic = Traffic::new(
        names,
        args.zipf,
        args.channels.clone(),
        args.transactional,
        run.to_owned(),
        args.seed,
    );
    let bar = progress(args.messages as u64, "offering");
    let log = match args.target {
        Target::Kafka => Some(common::backends::open_log(&stack.settings).await?),
        Target::Http => None,
    };
    let http = reqwest::Client::new();
    // Chunks of 50 ms of the offered rate (or 2,000 messages when unlimited).
    let chunk = if args.rate > 0.0 {
        ((args.rate / 20.0).ceil() as usize).max(1)
    } else {
        2_000
    };
    let started = tokio::time::Instant::now();
    let mut accepted = Vec::with_capacity(args.messages);
    let mut offered = 0;
    while offered < args.messages {
        let count = chunk.min(args.messages - offered);
        if args.rate > 0.0 {
            tokio::time::sleep_until(started + Duration::from_secs_f64(offered as f64 / args.rate)).await;
        }
        let planned: Vec<Planned> = (0..count).map(|_| traffic.draw()).collect();
        let taken = match &log {
            Some(log) => append(log.as_ref(), planned).await?,
            None => post(&http, stack, planned).await?,
        };
        offered += count;
        bar.inc(count as u64);
        accepted.extend(taken);
    }
    bar.finish_with_message(format!("offered ({} accepted)", accepted.len()));
    if accepted.len() < args.messages {
        eprintln!("{} messages were refused at submission", args.messages - accepted.len());
    }
    wait_dispatched(stack, accepted.len() as u64).await?;
    settle(stack, Duration::from_secs(args.settle_secs)).await?;
    Ok(accepted)
}

fn progress(total: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Appends the messages to the log, keyed by tenant.
async fn append(log: &dyn MessageLog, planned: Vec<Planned>) -> anyhow::Result<Vec<Accepted>> {
    let records = planned
        .iter()
        .map(|p| {
            Ok(OutgoingRecord {
                key: p.envelope["tenant_id"].as_str().unwrap_or_default().as_bytes().to_vec(),
                payload: serde_json::to_vec(&p.envelope)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    log.append(Topic::Messages, records)
        .await
        .context("appending to kafka")?;
    let at = OffsetDateTime::now_utc();
    Ok(planned
        .into_iter()
        .map(|p| Accepted {
            tenant: p.tenant,
            id: p.id,
            at,
        })
        .collect())
}

/// Posts the messages to `POST /v1/messages`, a request per tenant of up to 500, at most 8
/// requests in flight; answers those accepted.
async fn post(http: &reqwest::Client, stack: &Stack, planned: Vec<Planned>) -> anyhow::Result<Vec<Accepted>> {
    let mut by_tenant: HashMap<usize, Vec<Planned>> = HashMap::new();
    for p in planned {
        by_tenant.entry(p.tenant).or_default().push(p);
    }
    let mut requests = Vec::new();
    for (tenant, mut messages) in by_tenant {
        while !messages.is_empty() {
            let rest = messages.split_off(messages.len().min(500));
            requests.push((tenant, std::mem::replace(&mut messages, rest)));
        }
    }
    let url = format!("{}/v1/messages", stack.admin_url);
    let answers: Vec<anyhow::Result<Vec<Accepted>>> = stream::iter(requests.into_iter().map(|(tenant, messages)| {
        let key = stack.tenants[tenant].key.clone().unwrap_or_default();
        let (http, url) = (http.clone(), url.clone());
        async move {
            let envelopes: Vec<&Value> = messages.iter().map(|p| &p.envelope).collect();
            let response = http
                .post(&url)
                .bearer_auth(key)
                .json(&json!({ "messages": envelopes }))
                .send()
                .await
                .context("POST /v1/messages")?;
            let status = response.status();
            let body: Value = response.json().await.context("the answer to POST /v1/messages")?;
            if !status.is_success() {
                bail!("POST /v1/messages answered {status}: {body}");
            }
            let at = OffsetDateTime::now_utc();
            let results = body["results"].as_array().context("results")?;
            Ok(messages
                .into_iter()
                .zip(results)
                .filter(|(_, result)| result["status"] == "accepted")
                .map(|(p, _)| Accepted {
                    tenant: p.tenant,
                    id: p.id,
                    at,
                })
                .collect())
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await;
    let mut accepted = Vec::new();
    for answer in answers {
        accepted.extend(answer?);
    }
    Ok(accepted)
}

/// A process's counter or gauge, summed over the series whose `label` is one of `values` (all
/// series when `values` is empty); 0 when absent.
fn metric_sum(text: &str, name: &str, label: &str, values: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| {
            values.is_empty()
                || values
                    .iter()
                    .any(|value| line.contains(&format!("{label}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(url: &str) -> String {
    match reqwest::get(format!("{url}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Statuses the dispatcher gives a message when it is done with it.
const DISPATCHED: [&str; 6] = ["sent", "unknown", "failed", "rejected", "expired", "suppressed"];

/// Waits until the dispatcher has dispatched (or refused) `total` messages, from its metrics.
async fn wait_dispatched(stack: &Stack, total: u64) -> anyhow::Result<()> {
    let bar = progress(total, "dispatching");
    let mut last = (0_u64, tokio::time::Instant::now());
    loop {
        let text = scrape(&stack.processes[0].ops_url).await;
        let done = (metric_sum(&text, "dispatcher_status_changes_total", "status", &DISPATCHED) as u64).min(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_with_message("dispatched");
            return Ok(());
        }
        if done > last.0 {
            last = (done, tokio::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(120) {
            bar.abandon_with_message("stalled");
            eprintln!("no progress for 2 minutes at {done} of {total}: reporting what there is");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the stack stops recording statuses (delivery receipts, read receipts) for 3 s,
/// or `longest`.
async fn settle(stack: &Stack, longest: Duration) -> anyhow::Result<()> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message("waiting for delivery receipts");
    let deadline = tokio::time::Instant::now() + longest;
    let mut last = (-1.0, tokio::time::Instant::now());
    while tokio::time::Instant::now() < deadline {
        let mut changes = 0.0;
        for process in &stack.processes {
            let text = scrape(&process.ops_url).await;
            changes += metric_sum(&text, "dispatcher_status_changes_total", "status", &[])
                + metric_sum(&text, "admin_webhooks_total", "outcome", &["applied"]);
        }
        spinner.tick();
        if changes > last.0 {
            last = (changes, tokio::time::Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    spinner.finish_and_clear();
    Ok(())
}

/// Reads every offered message back from the store, with a progress bar.
async fn read_outcomes(
    store: &dyn common::store::Store,
    tenants: &[TenantId],
    offered: &[Accepted],
) -> anyhow::Result<Vec<Outcome>> {
    let bar = progress(offered.len() as u64, "reading");
    let reads = offered.iter().map(|accepted| {
        let bar = bar.clone();
        async move {
            let id = MessageId::parse(accepted.id.as_str())?;
            let record = store.message(&tenants[accepted.tenant], &id).await?;
            bar.inc(1);
            Ok::<_, anyhow::Error>(Outcome {
                tenant: accepted.tenant,
                accepted: accepted.at,
                record,
            })
        }
    });
    let outcomes: Vec<anyhow::Result<Outcome>> = stream::iter(reads).buffered(64).collect().await;
    bar.finish_with_message("read");
    outcomes.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_pick_the_series_by_label() {
        let text = "# TYPE dispatcher_status_changes_total counter\n\
                    dispatcher_status_changes_total{status=\"sent\"} 10\n\
                    dispatcher_status_changes_total{status=\"delivered\"} 7\n\
                    dispatcher_status_changes_total{status=\"rejected\"} 2\n\
                    dispatcher_status_changes_total_other 99\n";
        assert_eq!(
            metric_sum(text, "dispatcher_status_changes_total", "status", &DISPATCHED),
            12.0
        );
        assert_eq!(metric_sum(text, "dispatcher_status_changes_total", "status", &[]), 19.0);
        assert_eq!(metric_sum(text, "admin_webhooks_total", "outcome", &["applied"]), 0.0);
    }
}
