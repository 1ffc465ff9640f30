//! `load http`: sends demo traffic to a running all-in-one stack over HTTP and reports how fast
//! it was accepted and how fast it reached `sent`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const USAGE: &str = "load http: send demo traffic to a running EngageNinja Dispatch stack

usage: load http --key API_KEY [--url http://127.0.0.1:8080] [--messages 10000] [--batch 500] [--concurrency 4]

Sends SMS envelopes in batches to POST /v1/messages, then polls the last message until it is
at least sent. Prints accepted messages per second and the time until the last one was sent.";

struct Options {
    url: String,
    key: String,
    messages: usize,
    batch: usize,
    concurrency: usize,
}

fn options(args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
    let mut options = Options {
        url: "http://127.0.0.1:8080".into(),
        key: String::new(),
        messages: 10_000,
        batch: 500,
        concurrency: 4,
    };
    let mut args = args;
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => options.url = value()?,
            "--key" => options.key = value()?,
            "--messages" => options.messages = value()?.parse().context("--messages")?,
            "--batch" => options.batch = value()?.parse().context("--batch")?,
            "--concurrency" => options.concurrency = value()?.parse().context("--concurrency")?,
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
    if options.key.is_empty() {
        bail!("--key is required; see --help");
    }
    if options.batch == 0 || options.batch > 1000 || options.concurrency == 0 {
        bail!("--batch must be 1..=1000 and --concurrency at least 1");
    }
    Ok(options)
}

/// Runs the HTTP load with the command line's remaining arguments.
#[allow(clippy::print_stdout)]
pub async fn run(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let options = options(args)?;
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
        .chunks(options.batch)
        .map(<[Value]>::to_vec)
        .collect();
    let url = format!("{}/v1/messages", options.url);
    let mut accepted = 0u64;
    for wave in batches.chunks(options.concurrency) {
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
