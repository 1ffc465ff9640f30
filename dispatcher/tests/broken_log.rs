//! The all-in-one process when its embedded log can no longer write: started under a file-size
//! limit (`ulimit -f`, which fails writes past it the way a full disk does), it is filled
//! until an append fails. From then on submissions answer 503 `log_unavailable`, `/readyz`
//! answers 503 with the reason, and the log says why.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The file-size limit, in KiB: above what the store and its WAL reach here, below what the
/// log's segments reach.
const FILE_LIMIT_KIB: u32 = 8 * 1024;

/// The process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_write_turns_readiness_off_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("engageninja.log");
    let ops = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // SIGXFSZ ignored (it would kill the process): writes past the limit fail with EFBIG.
    let script = format!(
        "trap '' XFSZ; ulimit -f {FILE_LIMIT_KIB}; exec '{}'",
        env!("CARGO_BIN_EXE_engageninja")
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("ENGAGENINJA_DATA_DIR", dir.path().join("data"))
        .env("ENGAGENINJA_ADMIN__LISTEN", "127.0.0.1:0")
        .env("ENGAGENINJA_ADMIN__OPS_LISTEN", ops.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("bash starts");
    let stdout = child.stdout.take().unwrap();
    let _process = Process(child);
    let (addr, key) = tokio::task::spawn_blocking(move || {
        let (mut addr, mut key) = (None, None);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("demo tenant created: ") {
                key = rest.split("api_key=").nth(1).map(str::to_owned);
            }
            if let Some(rest) = line.strip_prefix("admin API on http://") {
                addr = rest.split_whitespace().next().map(str::to_owned);
                break;
            }
        }
        (addr.expect("the address"), key.expect("the demo key"))
    })
    .await
    .unwrap();
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
            .bearer_auth(&key)
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
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(logged.contains("message log write failed"), "{logged}");
}
