//! Campaigns over HTTP: send (one message per recipient, idempotent), live counts as
//! server-sent events, usage against the plan, and preflight.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PLATFORM_KEY: &str = "platform-test-key-campaigns";

use engageninja::testing::{self, TestApp};

/// The stack with quick simulated statuses and its bootstrap demo tenant.
async fn start(dir: &std::path::Path) -> TestApp {
    let mut settings = testing::settings_with_platform_key(dir, PLATFORM_KEY);
    settings.demo.delivered_after_ms = [100, 200];
    settings.demo.read_after_ms = [300, 400];
    testing::all_in_one(settings).await
}

/// Reads server-sent `counts` events until one satisfies `done`; answers it.
async fn counts_until(response: &mut reqwest::Response, done: impl Fn(&Value) -> bool) -> Value {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the counts never got there")
            .unwrap()
            .expect("the stream ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let data = frame.lines().find_map(|line| line.strip_prefix("data: "));
            if frame.contains("event: counts")
                && let Some(data) = data
            {
                let counts: Value = serde_json::from_str(data).unwrap();
                if done(&counts) {
                    return counts;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_is_sent_once_per_recipient_and_watched_live() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let key = stack.demo_key.clone().unwrap();
    let campaign = json!({
        "channel": "sms", "priority": "marketing", "body": "Spring sale: 20% off today",
        "recipients": ["+14155550101", {"to": "+14155550102", "contact_id": "c-2"}, "+14155550103", "555-0100"],
    });
    let (status, sent) = stack
        .call(
            Method::POST,
            "/v1/campaigns/spring/send",
            Some(&key),
            Some(&campaign.clone()),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(
        (sent["accepted"].as_u64(), sent["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(sent["results"][3]["error"]["field"], "to");

    // Live counts: the first event at once, more as statuses change, until all are delivered.
    let mut events = stack
        .request(Method::GET, "/v1/campaigns/spring/events", Some(&key), None)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let delivered = counts_until(&mut events, |counts| counts["counts"]["delivered"] == 3).await;
    assert_eq!(delivered["total"], 3, "{delivered}");

    // Sending again reaches nobody twice: the same ids, already taken.
    let (status, again) = stack
        .call(Method::POST, "/v1/campaigns/spring/send", Some(&key), Some(&campaign))
        .await;
    assert_eq!(status, 202);
    assert_eq!(again["results"][0]["message_id"], sent["results"][0]["message_id"]);
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3)),
        "{again}"
    );
    assert_eq!(again["results"][0]["status"], "duplicate");
    let existing = again["results"][0]["existing_status"].as_str();
    assert!(matches!(existing, Some("delivered" | "read")), "{again}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, message) = stack
        .call(
            Method::GET,
            &format!("/v1/messages/{}", sent["results"][0]["message_id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    let sends = message["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["status"] == "sent")
        .count();
    assert_eq!(sends, 1, "{message}");

    // Fields the campaign sets per recipient are refused.
    let (status, error) = stack
        .call(
            Method::POST,
            "/v1/campaigns/spring/send",
            Some(&key),
            Some(&json!({"channel": "sms", "body": "x", "message_id": "m", "recipients": ["+14155550101"]})),
        )
        .await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("message_id"))
    );
    // So is a recipient field the campaign does not know, rather than ignored.
    let (status, rejected) = stack
        .call(
            Method::POST,
            "/v1/campaigns/spring/send",
            Some(&key),
            Some(&json!({"channel": "sms", "body": "x", "recipients": [{"to": "+14155550104", "name": "Ana"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rejected}");
    assert_eq!(
        rejected["results"][0]["error"]["field"], "recipients.name",
        "{rejected}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_preflight_show_what_a_send_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let (status, _) = stack
        .call(
            Method::PUT,
            "/v1/admin/plans/small",
            Some(PLATFORM_KEY),
            Some(&json!({"name": "Small", "monthly_quota": {"sms": 5}})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, created) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"id": "acme", "name": "Acme", "plan_id": "small"})),
        )
        .await;
    let key = created["api_key"]["secret"].as_str().unwrap().to_owned();

    let (status, usage) = stack.call(Method::GET, "/v1/usage", Some(&key), None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(
        usage["channels"]["sms"],
        json!({"used": 0, "quota": 5, "remaining": 5, "unit": "segments"})
    );
    assert_eq!(usage["channels"]["email"]["quota"], Value::Null);
    let (status, _) = stack
        .call(Method::GET, "/v1/usage?period=2026-13", Some(&key), None)
        .await;
    assert_eq!(status, 422);

    // Not ready (no credentials): said with the next step; UCS-2 text needs more segments; the
    // quota does not cover it; an invalid recipient is pointed at; duplicates count once.
    let preflight = json!({
        "channel": "sms", "body": "Grüße 👋 ".repeat(10),
        "recipients": ["+14155550101", "+14155550102", "+14155550101", "not-a-number"],
    });
    let (status, answer) = stack
        .call(
            Method::POST,
            "/v1/campaigns/spring/preflight",
            Some(&key),
            Some(&preflight),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["channel_ready"]["ready"], false);
    assert_eq!(answer["channel_ready"]["code"], "CHANNEL_NOT_CONFIGURED");
    assert!(
        answer["channel_ready"]["next_step"]
            .as_str()
            .unwrap()
            .contains("/v1/channels")
    );
    assert_eq!(answer["recipients"]["invalid"][0]["index"], 3);
    assert_eq!(answer["recipients"]["sendable"], 2);
    assert_eq!(answer["segments"]["encoding"], "ucs2");
    assert_eq!(answer["segments"]["per_message"], 2);
    assert_eq!(answer["segments"]["total"], 4);
    assert_eq!(answer["quota"]["sufficient"], true);
    assert_eq!(answer["drain"], Value::Null);
    assert_eq!(answer["demo"], false);

    // The demo tenant: ready, no quota, a drain estimate and the demo notice.
    let (status, demo) = stack
        .call(
            Method::POST,
            "/v1/campaigns/spring/preflight",
            Some(stack.demo_key.as_deref().unwrap()),
            Some(&json!({"channel": "email", "recipients": ["ada@example.com"]})),
        )
        .await;
    assert_eq!(status, 200, "{demo}");
    assert_eq!(demo["channel_ready"]["ready"], true);
    assert_eq!(demo["demo"], true);
    assert!(demo["demo_notice"].as_str().unwrap().contains("simulated"));
    assert!(demo["drain"]["seconds"].as_f64().unwrap() > 0.0);
    stack.shutdown().await;
}
