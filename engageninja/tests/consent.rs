//! Suppressions and consents over HTTP on the all-in-one stack with its demo tenant: a
//! suppression added here refuses the recipient's next message, a lifted one lets it through,
//! a CSV import reports every row, and consents are recorded with their proof; every change is
//! audited and another tenant sees none of it. A tenant that requires consent for marketing
//! has its marketing refused without an opt-in, and preflight says who lacks one.

use std::time::Duration;

use engageninja::testing::{self, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PLATFORM_KEY: &str = "platform-test-key-consent";
const WAIT: Duration = Duration::from_secs(30);

async fn start(dir: &std::path::Path) -> TestApp {
    let mut settings = testing::settings_with_platform_key(dir, PLATFORM_KEY);
    settings.demo.delivered_after_ms = [50, 100];
    settings.demo.read_after_ms = [150, 200];
    testing::all_in_one(settings).await
}

/// Sends one transactional SMS; answers its message id.
async fn send(stack: &TestApp, key: &str, to: &str) -> String {
    send_in(stack, key, to, "transactional").await
}

/// Sends one SMS in the `priority` lane; answers its message id.
async fn send_in(stack: &TestApp, key: &str, to: &str, priority: &str) -> String {
    let (status, sent) = stack
        .call(
            Method::POST,
            "/v1/messages",
            Some(key),
            Some(&json!({"messages": [{"channel": "sms", "body": "Your order shipped", "to": to, "priority": priority}]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    sent["results"][0]["message_id"].as_str().unwrap().to_owned()
}

/// Polls a message until its status is past `queued`; answers it.
async fn settled(stack: &TestApp, key: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, message) = stack
            .call(Method::GET, &format!("/v1/messages/{id}"), Some(key), None)
            .await;
        if message["status"] != "queued" && !message["status"].is_null() {
            return message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never left queued: {message}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressions_hold_at_admission_and_consents_keep_their_proof() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let key = stack.demo_key.clone().unwrap();

    // Added once (201), then found (200); a bad address names its field.
    let body = json!({"address": "+14155550111", "note": "asked by phone"});
    let (status, added) = stack
        .call(Method::POST, "/v1/suppressions", Some(&key), Some(&body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(
        (added["reason"].as_str(), added["source"].as_str()),
        (Some("manual"), Some("asked by phone"))
    );
    let (status, again) = stack
        .call(Method::POST, "/v1/suppressions", Some(&key), Some(&body))
        .await;
    assert_eq!((status, &again["created_at"]), (StatusCode::OK, &added["created_at"]));
    let (status, bad) = stack
        .call(
            Method::POST,
            "/v1/suppressions",
            Some(&key),
            Some(&json!({"address": "555-0100"})),
        )
        .await;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("address"))
    );

    // The suppressed recipient's message is refused; another's goes.
    let refused = settled(&stack, &key, &send(&stack, &key, "+14155550111").await).await;
    assert_eq!(
        (refused["status"].as_str(), refused["reason"].as_str()),
        (Some("suppressed"), Some("RECIPIENT_SUPPRESSED"))
    );
    let other = settled(&stack, &key, &send(&stack, &key, "+14155550112").await).await;
    assert_ne!(other["status"], "suppressed", "{other}");

    // A CSV import, streamed: a header, quotes, a duplicate, a bad row.
    let csv = "address,note\n+14155550120,\"web form, page 2\"\nANA@Example.COM\n\n+14155550111\nnot-an-address\n";
    let response = reqwest::Client::new()
        .post(stack.url("/v1/suppressions/import"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        (
            &report["rows"],
            &report["added"],
            &report["already"],
            &report["invalid"]
        ),
        (&json!(4), &json!(2), &json!(1), &json!(1)),
        "{report}"
    );
    let outcomes: Vec<(u64, &str)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row["row"].as_u64().unwrap(), row["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        vec![(2, "added"), (3, "added"), (5, "already"), (6, "invalid")]
    );

    let response = reqwest::Client::new()
        .post(stack.url("/v1/suppressions/import"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body("not-an-address\n555-0100\n")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "no line is an address"
    );

    // Listed in address order, a page at a time.
    let (_, page) = stack
        .call(Method::GET, "/v1/suppressions?limit=2", Some(&key), None)
        .await;
    let addresses: Vec<&str> = page["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, vec!["+14155550111", "+14155550120"]);
    assert_eq!(page["next_after"], "+14155550120");
    let (_, rest) = stack
        .call(
            Method::GET,
            "/v1/suppressions?limit=2&after=%2B14155550120",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(rest["suppressions"][0]["address"], "ANA@example.com");
    assert_eq!(rest["suppressions"][0]["source"], Value::Null);
    assert_eq!(rest["next_after"], Value::Null);

    // Lifting needs a reason; then the recipient gets its messages again.
    let (status, _) = stack
        .call(Method::DELETE, "/v1/suppressions/+14155550111", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no reason");
    let (status, _) = stack
        .call(
            Method::DELETE,
            "/v1/suppressions/+14155550111?reason=opted%20in%20again",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = stack
        .call(
            Method::DELETE,
            "/v1/suppressions/+14155550111?reason=again",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_suppressed"))
    );
    let allowed = settled(&stack, &key, &send(&stack, &key, "+14155550111").await).await;
    assert_ne!(allowed["status"], "suppressed", "{allowed}");

    // A consent with its proof; the channel's kind of address only.
    let consent = json!({"recipient": "+14155550130", "channel": "sms", "source": "https://shop.example.com/signup",
                         "wording": "Text me order updates. Reply STOP to opt out.", "given_at": "2026-11-30T10:00:00Z"});
    let (status, recorded) = stack
        .call(Method::POST, "/v1/consents", Some(&key), Some(&consent))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{recorded}");
    let mismatched = json!({"recipient": "+14155550130", "channel": "email", "source": "form"});
    let (status, refused) = stack
        .call(Method::POST, "/v1/consents", Some(&key), Some(&mismatched))
        .await;
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("recipient"))
    );
    let (_, listed) = stack
        .call(Method::GET, "/v1/consents?recipient=%2B14155550130", Some(&key), None)
        .await;
    assert_eq!(listed["suppressed"], false);
    assert_eq!(listed["consents"][0]["source"], "https://shop.example.com/signup");
    assert_eq!(listed["consents"][0]["given_at"], "2026-11-30T10:00:00Z");

    // Every change is audited; another tenant sees none of it.
    let (_, audit) = stack.call(Method::GET, "/v1/audit", Some(&key), None).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    for action in [
        "suppression.added",
        "suppressions.imported",
        "suppression.removed",
        "consent.recorded",
    ] {
        assert!(actions.contains(&action), "{action} not audited: {actions:?}");
    }
    let (status, created) = stack
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"id": "other", "name": "Other"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let other = created["api_key"]["secret"].as_str().unwrap();
    let (_, page) = stack.call(Method::GET, "/v1/suppressions", Some(other), None).await;
    assert_eq!(page["suppressions"], json!([]));
    let (_, listed) = stack
        .call(Method::GET, "/v1/consents?recipient=%2B14155550130", Some(other), None)
        .await;
    assert_eq!(listed["consents"], json!([]));

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_requiring_consent_sends_marketing_only_to_opted_in_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start(dir.path()).await;
    let key = stack.demo_key.clone().unwrap();

    // The defaults: no consent required, replies naming the tenant.
    let (status, defaults) = stack.call(Method::GET, "/v1/settings", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK, "{defaults}");
    assert_eq!(defaults["require_consent_for_marketing"], false);
    assert!(
        defaults["stop_reply"].as_str().unwrap().contains("unsubscribed"),
        "{defaults}"
    );

    // A reply too long for two segments names its field; a valid change is answered in full.
    let (status, refused) = stack
        .call(
            Method::PUT,
            "/v1/settings",
            Some(&key),
            Some(&json!({"help_reply": "x".repeat(307)})),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("help_reply"))
    );
    let help = "Demo Co: help at demo.example or +1 415 555 0100. Reply STOP to opt out.";
    let (status, changed) = stack
        .call(
            Method::PUT,
            "/v1/settings",
            Some(&key),
            Some(&json!({"require_consent_for_marketing": true, "help_reply": help})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (
            changed["require_consent_for_marketing"].as_bool(),
            changed["help_reply"].as_str()
        ),
        (Some(true), Some(help))
    );
    assert_eq!(changed["stop_reply"], defaults["stop_reply"]);

    // Preflight names who lacks an opt-in, for marketing only.
    let consented = "+14155550140";
    let unknown = "+14155550141";
    let consent = json!({"recipient": consented, "channel": "sms", "source": "https://shop.example.com/signup"});
    let (status, recorded) = stack
        .call(Method::POST, "/v1/consents", Some(&key), Some(&consent))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{recorded}");
    let preflight =
        |priority: &str| json!({"channel": "sms", "recipients": [consented, unknown], "priority": priority});
    let (status, marketing) = stack
        .call(
            Method::POST,
            "/v1/campaigns/spring/preflight",
            Some(&key),
            Some(&preflight("marketing")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{marketing}");
    assert_eq!(marketing["recipients"]["consent_required"], true, "{marketing}");
    assert_eq!(
        marketing["recipients"]["without_consent"],
        json!([unknown]),
        "{marketing}"
    );
    assert_eq!(marketing["recipients"]["sendable"], 1, "{marketing}");
    let (_, transactional) = stack
        .call(
            Method::POST,
            "/v1/campaigns/spring/preflight",
            Some(&key),
            Some(&preflight("transactional")),
        )
        .await;
    assert_eq!(
        transactional["recipients"]["without_consent"],
        json!([]),
        "{transactional}"
    );
    assert_eq!(transactional["recipients"]["sendable"], 2, "{transactional}");

    // Marketing without an opt-in is refused; with one, or transactional, it goes. The
    // directory may hold the old settings for a few seconds: wait for the refusal.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let refused = settled(&stack, &key, &send_in(&stack, &key, unknown, "marketing").await).await;
        if refused["status"] == "rejected" {
            assert_eq!(refused["reason"], "CONSENT_MISSING", "{refused}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused: {refused}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let opted_in = settled(&stack, &key, &send_in(&stack, &key, consented, "marketing").await).await;
    assert_ne!(opted_in["status"], "rejected", "{opted_in}");
    let transactional = settled(&stack, &key, &send(&stack, &key, unknown).await).await;
    assert_ne!(transactional["status"], "rejected", "{transactional}");

    // Tenants may not mark their own messages as keyword replies (which pass suppressions).
    let (status, refused) = stack
        .call(
            Method::POST,
            "/v1/messages",
            Some(&key),
            Some(&json!({"messages": [{"channel": "sms", "body": "hi", "to": unknown, "tags": {"keyword_reply": "stop"}}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        refused["results"][0]["error"]["field"], "tags.keyword_reply",
        "{refused}"
    );

    let (_, audit) = stack.call(Method::GET, "/v1/audit", Some(&key), None).await;
    let updated = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["action"] == "settings.updated")
        .expect("settings change audited");
    assert_eq!(
        updated["detail"]["require_consent_for_marketing"]["to"], true,
        "{updated}"
    );
    stack.shutdown().await;
}
