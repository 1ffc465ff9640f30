//! `load http`: sends demo traffic to a running all-in-one stack over HTTP and reports how fast
//! it was accepted and how fast it reached `sent`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Send SMS traffic to a running all-in-one stack over HTTP.
///
/// Sends SMS envelopes in batches to POST /v1/messages, then polls the last message until it is
/// at least sent. Prints accepted messages per second and the time until the last one was sent.
#[derive(Debug, clap::Args)]
pub(crate) struct HttpArgs {
    /// A tenant's API key (the demo key printed at the first start).
    #[arg(long)]
    key: String,
    /// The stack's admin API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Messages to send.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Envelopes per request.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch: u16,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

/// Runs the HTTP load.
#[allow(clippy::print_stdout)]
pub(crate) async fn run(options: HttpArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let run = format!("load-{}", std::process::id());
    let started = Instant::now();
    let batches: Vec<Vec<Value>> = (0..options.messages)
        .map(|n| {
            json!({
                "message_id": format!("{run}-{n}"),
                "channel": "sms",
                "to": format!("+1415555{:04}", n % 10_000),
                "priority": if n % 10 == 0 { "transactional" } else { "marketing" },
                "body": format!("Load test message {n}"),
            })
        })
        .collect::<Vec<_>>()
        .chunks(usize::from(options.batch))
        .map(<[Value]>::to_vec)
        .collect();
    let url = format!("{}/v1/messages", options.url);
    let mut accepted = 0u64;
    for wave in batches.chunks(usize::from(options.concurrency)) {
        let mut requests = tokio::task::JoinSet::new();
        for batch in wave {
            let request = client
                .post(&url)
                .bearer_auth(&options.key)
                .json(&json!({ "messages": batch }));
            requests.spawn(async move {
                let response = request.send().await.context("request failed")?;
                let status = response.status();
                let body: Value = response.json().await.context("response body")?;
                if !status.is_success() {
                    bail!("{status}: {body}");
                }
                Ok(body["accepted"].as_u64().unwrap_or_default())
            });
        }
        while let Some(joined) = requests.join_next().await {
            accepted += joined??;
        }
    }
    let accept_time = started.elapsed();
    let last = format!(
        "{}/v1/messages/{run}-{}",
        options.url,
        options.messages.saturating_sub(1)
    );
    loop {
        let response = client.get(&last).bearer_auth(&options.key).send().await?;
        if response.status().is_success() {
            let body: Value = response.json().await?;
            if body["status"] != "queued" {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the last message was not sent within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent_time = started.elapsed();
    println!(
        "accepted {accepted} messages in {:.2}s ({:.0}/s); last one sent after {:.2}s ({:.0}/s end to end)",
        accept_time.as_secs_f64(),
        accepted as f64 / accept_time.as_secs_f64(),
        sent_time.as_secs_f64(),
        accepted as f64 / sent_time.as_secs_f64(),
    );
    Ok(())
}
