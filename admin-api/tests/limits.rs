//! The API's abuse limits over HTTP, on the admin API with small limits: a key past its
//! request rate, a tenant past its credential checks or its event streams, each answered 429
//! with a stable code and `Retry-After`, while other keys and tenants go on; a request past
//! the request timeout, answered 503.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use common::testing;

const PLATFORM_KEY: &str = "platform-test-key-limits";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tenants_past_their_limits_are_told_to_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = testing::settings_with_platform_key(dir.path(), PLATFORM_KEY);
    settings.admin.requests_per_second_per_key = 5;
    settings.admin.credential_checks_per_tenant_per_hour = 1;
    settings.admin.max_event_streams_per_tenant = 1;
    settings.demo.bootstrap = false;
    settings.onboarding.background_runner = false;
    testing::providers_unreachable(&mut settings);
    let api = support::spawn(settings).await;
    let send = |method: Method, path: &str, key: &str, body: Option<Value>| {
        api.request(method, path, Some(key), body.as_ref()).send()
    };

    // Two tenants, made with the platform key.
    let mut keys = Vec::new();
    for id in ["acme", "beta"] {
        let created = send(
            Method::POST,
            "/v1/admin/tenants",
            PLATFORM_KEY,
            Some(json!({"id": id, "name": id})),
        )
        .await
        .unwrap();
        assert_eq!(created.status(), 201);
        let body: Value = created.json().await.unwrap();
        keys.push(body["api_key"]["secret"].as_str().unwrap().to_owned());
    }
    let (acme, beta) = (keys[0].clone(), keys[1].clone());

    // One event stream at a time per tenant; closing it frees its place.
    let open = send(Method::GET, "/v1/campaigns/spring/events", &acme, None)
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let second = send(Method::GET, "/v1/campaigns/spring/events", &acme, None)
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    drop(open);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let again = send(Method::GET, "/v1/campaigns/spring/events", &acme, None)
            .await
            .unwrap();
        if again.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A burst past the key's rate (40 at once against 5 a second): the excess is refused with
    // when to come back.
    let burst = futures_util::future::join_all((0..40).map(|_| send(Method::GET, "/v1/usage", &acme, None))).await;
    let mut refused = None;
    for answer in burst {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            200 => {}
            429 => refused = Some(answer),
            other => panic!("unexpected {other}"),
        }
    }
    let refused = refused.expect("40 requests at once exceed 5 a second");
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(send(Method::GET, "/v1/usage", &beta, None).await.unwrap().status(), 200);

    // One credential check an hour: the second save is refused before any provider call.
    let credentials = json!({"account_sid": format!("AC{}", "1".repeat(32)), "auth_token": "token"});
    let first = send(Method::POST, "/v1/channels/sms", &beta, Some(credentials.clone()))
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let second = send(Method::POST, "/v1/channels/sms", &beta, Some(credentials))
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "credential_checks_exhausted");

    api.shutdown().await;
}

/// A request that takes longer than `admin.request_timeout_secs` is answered 503
/// `request_timeout` at the deadline: here a credential check against a Twilio that accepts the
/// connection and never answers (the client itself would wait 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_is_answered_503() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            open.push(connection);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut settings = testing::settings_with_platform_key(dir.path(), PLATFORM_KEY);
    settings.admin.request_timeout_secs = 1;
    settings.demo.bootstrap = false;
    settings.onboarding.background_runner = false;
    settings.providers.twilio.api_url = silent_url;
    settings.providers.twilio.request_timeout_ms = 60_000;
    let api = support::spawn(settings).await;
    let (status, created) = api
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(PLATFORM_KEY),
            Some(&json!({"id": "slow", "name": "slow"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["api_key"]["secret"].as_str().unwrap().to_owned();

    let started = tokio::time::Instant::now();
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/channels/sms",
            Some(&key),
            Some(&json!({"account_sid": format!("AC{}", "0".repeat(32)), "auth_token": "0".repeat(32)})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "answered at the API's deadline, not the client's"
    );
    api.shutdown().await;
    held.abort();
}
