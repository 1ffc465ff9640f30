//! The all-in-one process under an unauthenticated webhook flood: 1,000 status callbacks with
//! a 900 KB `AccountSid` and a wrong signature. Each is refused before the account is looked
//! up, cached or logged, so the process neither grows nor fills its log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

/// Requests in the flood.
const REQUESTS: usize = 1_000;
/// How much the process may grow over its warmed-up size, in bytes.
const GROWTH_LIMIT: u64 = 64 * 1024 * 1024;
/// How much log the whole flood may write, in bytes.
const LOG_LIMIT: u64 = 4 * 1024;

/// The `engageninja` process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of a process, in bytes, from `/proc`.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_callbacks_with_huge_account_sids_costs_no_memory_and_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("engageninja.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_engageninja"))
        .env("ENGAGENINJA_DATA_DIR", dir.path().join("data"))
        .env("ENGAGENINJA_ADMIN__LISTEN", "127.0.0.1:0")
        .env("ENGAGENINJA_ADMIN__OPS_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("the engageninja binary starts");
    let stdout = child.stdout.take().unwrap();
    let process = Process(child);
    let pid = process.0.id();

    // The address comes on stdout once the stack is up.
    let addr = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).find_map(|line| {
            line.strip_prefix("admin API on http://")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        })
    })
    .await
    .unwrap()
    .expect("the process prints its address");
    let url = format!("http://{addr}/webhooks/twilio/status?tenant=demo&message=m-1");
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
    let (rss_before, log_before) = (resident_bytes(pid), std::fs::metadata(&log_path).unwrap().len());
    let statuses = flood(REQUESTS).await;
    assert!(statuses.iter().all(|status| *status == 403), "{statuses:?}");
    let (rss_after, log_after) = (resident_bytes(pid), std::fs::metadata(&log_path).unwrap().len());

    let growth = rss_after.saturating_sub(rss_before);
    let logged = log_after - log_before;
    assert!(
        growth < GROWTH_LIMIT,
        "grew by {} MiB (from {} MiB)",
        growth / (1024 * 1024),
        rss_before / (1024 * 1024)
    );
    assert!(logged <= LOG_LIMIT, "the flood wrote {logged} bytes of log");
    drop(process);
}
