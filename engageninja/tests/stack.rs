//! End to end: the all-in-one stack on port 0, a demo tenant's messages over HTTP, their
//! statuses through sent, delivered and read.

use std::time::Duration;

use common::config::Settings;
use engageninja::testing::{self, TestApp};
use serde_json::{Value, json};

fn settings(data_dir: &std::path::Path) -> Settings {
    let mut settings = testing::settings(data_dir);
    settings.admin.max_body_bytes = 64 * 1024;
    settings.log.partitions = 2;
    settings.demo.delivered_after_ms = [100, 300];
    settings.demo.read_after_ms = [400, 600];
    settings
}

async fn spawn_stack(data_dir: &std::path::Path) -> TestApp {
    testing::all_in_one(settings(data_dir)).await
}

async fn wait_for_status(client: &reqwest::Client, url: &str, key: &str, wanted: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(url).bearer_auth(key).send().await.unwrap();
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            if body["status"] == wanted {
                return body;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} never reached {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn statuses(message: &Value) -> Vec<String> {
    message["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_message_goes_sent_then_delivered_then_read() {
    let dir = tempfile::tempdir().unwrap();
    let stack = spawn_stack(dir.path()).await;
    let key = stack.demo_key.clone().expect("first start creates the demo key");
    let client = reqwest::Client::new();
    let base = format!("http://{}", stack.addr);

    let response = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({"messages": [
            {"message_id": "otp-1", "channel": "sms", "to": "+14155550100", "priority": "transactional", "body": "Your code is 123456"},
            {"message_id": "wa-1", "channel": "whatsapp", "to": "whatsapp:+14155550101", "body": "Hi from the demo"},
            {"message_id": "bad-1", "channel": "sms", "to": "555-0100", "body": "no"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["results"][2]["status"], "rejected");
    assert_eq!(body["results"][2]["error"]["field"], "to");

    let sms = wait_for_status(&client, &format!("{base}/v1/messages/otp-1"), &key, "delivered").await;
    assert_eq!(statuses(&sms), ["queued", "sent", "delivered"]);
    assert_eq!(sms["demo"], true);
    assert!(sms["provider_message_id"].as_str().unwrap().starts_with("demo-"));
    let whatsapp = wait_for_status(&client, &format!("{base}/v1/messages/wa-1"), &key, "read").await;
    assert_eq!(statuses(&whatsapp), ["queued", "sent", "delivered", "read"]);

    // Metrics on the operational listener, never on the API's port.
    let on_api = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(on_api.status(), 404);
    let metrics = client
        .get(format!(
            "http://{}/metrics",
            stack.ops_addr.expect("the stack serves /metrics")
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("dispatcher_messages_total"), "{metrics}");
    stack.shutdown().await;

    let restarted = spawn_stack(dir.path()).await;
    assert!(
        restarted.demo_key.is_none(),
        "the demo key is made on the first start only"
    );
    let again = client
        .get(format!("http://{}/v1/messages/otp-1", restarted.addr))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "statuses survive a restart");
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let stack = spawn_stack(dir.path()).await;
    let key = stack.demo_key.clone().unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/messages", stack.addr);

    let no_key = client.post(&url).json(&json!({"messages": []})).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    let wrong_key = client
        .post(&url)
        .bearer_auth("enk_0000")
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    let error: Value = wrong_key.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unauthorized");

    let malformed = client
        .post(&url)
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"]["code"],
        "malformed_json"
    );

    let not_a_list = client
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"messages": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_list.status(), 422);
    assert_eq!(not_a_list.json::<Value>().await.unwrap()["error"]["field"], "messages");

    let other_tenant = client
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"messages": [{"tenant_id": "globex", "channel": "sms", "to": "+14155550100", "body": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(other_tenant.status(), 422);
    let body: Value = other_tenant.json().await.unwrap();
    assert_eq!(body["results"][0]["error"]["code"], "tenant_mismatch");

    let huge =
        json!({"messages": [{"channel": "email", "to": "a@example.com", "subject": "s", "body": "x".repeat(70_000)}]});
    let too_large = client.post(&url).bearer_auth(&key).json(&huge).send().await.unwrap();
    assert_eq!(too_large.status(), 413);
    assert_eq!(
        too_large.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );

    let missing = client
        .get(format!("{url}/nope"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "message_not_found"
    );
    stack.shutdown().await;
}

/// The data directory holds every message and the keys that open the stored credentials: what
/// the stack creates there is for its owner only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_for_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let stack = spawn_stack(&data_dir).await;
    let settings = settings(&data_dir);
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&settings.log_dir()), 0o700);
    assert_eq!(mode(&settings.store_path()), 0o600);
    assert_eq!(mode(&settings.default_key_file()), 0o600);
    let mut files = vec![settings.log_dir()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
            files.extend(std::fs::read_dir(&path).unwrap().map(|entry| entry.unwrap().path()));
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    stack.shutdown().await;
    let wal = settings.store_path().with_extension("db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
}

/// On stop, `/readyz` turns 503 first and the API keeps serving through the drain window, so
/// that load balancers stop sending before the listener closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_false_while_the_api_still_serves_the_drain_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.admin.drain_secs = 10;
    let mut stack = testing::all_in_one(settings).await;
    let (api, ops) = (stack.addr, stack.ops_addr.expect("the stack serves /metrics"));
    let client = reqwest::Client::new();
    let ready = |client: &reqwest::Client| {
        let request = client.get(format!("http://{ops}/readyz")).send();
        async move { request.await.map(|answer| answer.status().as_u16()).unwrap_or(0) }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ready(&client).await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stack.begin_stop();
    while ready(&client).await != 503 {
        assert!(tokio::time::Instant::now() < deadline, "readiness never went false");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = client
        .get(format!("http://{api}/openapi.json"))
        .send()
        .await
        .expect("the API still answers while draining");
    assert_eq!(served.status(), 200);
    stack.shutdown().await;
}
