//! The all-in-one binary as a process under hostile conditions: a flood of forged webhooks,
//! and a message log that can no longer write.
//!
//! - 1,000 status callbacks with a 900 KB `AccountSid` and a wrong signature: each is refused
//!   before the account is looked up, cached or logged, so the process neither grows nor fills
//!   its log.
//! - Started under a file-size limit (`ulimit -f`, which fails writes past it the way a full
//!   disk does), the log is filled until an append fails. From then on submissions answer 503
//!   `log_unavailable`, `/readyz` answers 503 with the reason, and the log says why.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

/// Requests in the flood.
const REQUESTS: usize = 1_000;
/// How much the process may grow over its warmed-up size, in bytes.
const GROWTH_LIMIT: u64 = 64 * 1024 * 1024;
/// How much log the whole flood may write, in bytes.
const LOG_LIMIT: u64 = 4 * 1024;
/// The file-size limit of the broken-log test, in KiB: above what the store and its WAL reach
/// there, below what the log's segments reach.
const FILE_LIMIT_KIB: u32 = 8 * 1024;

/// A running `engageninja`: killed when dropped.
struct Engageninja {
    child: Child,
    /// The admin API.
    api: String,
    /// `/metrics`, `/healthz`, `/readyz`.
    ops: SocketAddr,
    /// The demo tenant's key.
    key: String,
    /// Its stderr.
    log: PathBuf,
}

impl Engageninja {
    /// Starts the binary in `dir` through `bash -c` with `prelude` run first (limits, traps),
    /// and waits for it to print its address.
    async fn start(dir: &Path, prelude: &str) -> Self {
        let log = dir.join("engageninja.log");
        let ops = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("{prelude} exec '{}'", env!("CARGO_BIN_EXE_engageninja")))
            .env("ENGAGENINJA_DATA_DIR", dir.join("data"))
            .env("ENGAGENINJA_ADMIN__LISTEN", "127.0.0.1:0")
            .env("ENGAGENINJA_ADMIN__OPS_LISTEN", ops.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("bash starts");
        let stdout = child.stdout.take().unwrap();
        let (api, key) = tokio::task::spawn_blocking(move || {
            let (mut api, mut key) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("demo tenant created: ") {
                    key = rest.split("api_key=").nth(1).map(str::to_owned);
                }
                if let Some(rest) = line.strip_prefix("admin API on http://") {
                    api = rest.split_whitespace().next().map(str::to_owned);
                    break;
                }
            }
            (
                api.expect("the process prints its address"),
                key.expect("and the demo key"),
            )
        })
        .await
        .unwrap();
        Self {
            child,
            api,
            ops,
            key,
            log,
        }
    }

    /// Resident memory, in bytes, from `/proc`.
    fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// How much it has logged, in bytes.
    fn logged_bytes(&self) -> u64 {
        std::fs::metadata(&self.log).unwrap().len()
    }
}

impl Drop for Engageninja {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_callbacks_with_huge_account_sids_costs_no_memory_and_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let process = Engageninja::start(dir.path(), "").await;
    let url = format!("http://{}/webhooks/twilio/status?tenant=demo&message=m-1", process.api);
    let http = reqwest::Client::new();
    let huge = "A".repeat(900 * 1024);
    let flood = |count: usize| {
        let (http, url) = (&http, &url);
        let body = format!("AccountSid={huge}&MessageSid=SM1&MessageStatus=delivered");
        futures_util::stream::iter(0..count)
            .map(move |_| {
                let body = body.clone();
                async move {
                    let response = http
                        .post(url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("x-twilio-signature", "bm90IGEgc2lnbmF0dXJl")
                        .body(body)
                        .timeout(Duration::from_secs(120))
                        .send()
                        .await
                        .expect("the process answers");
                    response.status().as_u16()
                }
            })
            .buffer_unordered(4)
            .collect::<Vec<u16>>()
    };

    // Warm up (connection pools, allocator arenas), then measure the flood from there.
    assert!(flood(20).await.iter().all(|status| *status == 403));
    let (rss_before, log_before) = (process.resident_bytes(), process.logged_bytes());
    let statuses = flood(REQUESTS).await;
    assert!(statuses.iter().all(|status| *status == 403), "{statuses:?}");
    let (rss_after, log_after) = (process.resident_bytes(), process.logged_bytes());

    let growth = rss_after.saturating_sub(rss_before);
    let logged = log_after - log_before;
    assert!(
        growth < GROWTH_LIMIT,
        "grew by {} MiB (from {} MiB)",
        growth / (1024 * 1024),
        rss_before / (1024 * 1024)
    );
    assert!(logged <= LOG_LIMIT, "the flood wrote {logged} bytes of log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_write_turns_readiness_off_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // SIGXFSZ ignored (it would kill the process): writes past the limit fail with EFBIG.
    let process = Engageninja::start(dir.path(), &format!("trap '' XFSZ; ulimit -f {FILE_LIMIT_KIB};")).await;
    let (addr, key, ops) = (&process.api, &process.key, process.ops);
    let http = reqwest::Client::new();
    let readyz = || http.get(format!("http://{ops}/readyz")).send();
    assert_eq!(readyz().await.unwrap().status(), 200);

    // Fill the log until an append fails.
    let body = "x".repeat(1_500);
    let mut refused = None;
    for batch in 0..200 {
        let messages: Vec<Value> = (0..100)
            .map(|n| {
                json!({"message_id": format!("fill-{batch}-{n}"), "channel": "sms",
                            "to": "+14155550100", "body": body})
            })
            .collect();
        let answer = http
            .post(format!("http://{addr}/v1/messages"))
            .bearer_auth(key)
            .json(&json!({ "messages": messages }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        if answer.status() != 202 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("the log filled up within 200 batches");
    assert_eq!(refused.status(), 503);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "log_unavailable", "{error}");

    let ready = readyz().await.unwrap();
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.unwrap();
    assert!(reason.contains("message log failed to write"), "{reason}");
    let logged = std::fs::read_to_string(&process.log).unwrap();
    assert!(logged.contains("message log write failed"), "{logged}");
}
