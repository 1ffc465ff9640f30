//! Tenant isolation across every tenant route, as a table: tenant A's key never sees, changes
//! or counts tenant B's data; and every /v1 route of the OpenAPI document refuses a request
//! without a valid key.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use engageninja::testing;

const PLATFORM_KEY: &str = "platform-test-key-isolation";

fn business_info() -> Value {
    json!({
        "legal_business_name": "Beta Corp", "business_type": "corporation", "ein": "98-7654321",
        "industry": "retail", "website": "https://beta.example.com", "address": "2 Side St",
        "city": "Austin", "state": "TX", "zip": "73301", "country": "US",
        "owner_name": "Bo Beta", "owner_title": "CEO", "owner_email": "bo@beta.example.com",
        "owner_phone": "+15125550123", "monthly_volume": "1000_to_10000",
        "use_case_description": "Shipping updates and appointment reminders for Beta customers",
        "campaign_type": "transactional", "tcpa_compliant": true,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_route_reaches_another_tenants_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = testing::settings_with_platform_key(dir.path(), PLATFORM_KEY);
    settings.demo.bootstrap = false;
    settings.onboarding.background_runner = false;
    testing::providers_unreachable(&mut settings);
    let stack = testing::all_in_one(settings).await;
    let call = |method: Method, path: &str, key: &str, body: Option<Value>| {
        let request = stack.request(method, path, Some(key), body.as_ref());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, text)
        }
    };

    let mut keys = Vec::new();
    for id in ["alpha", "beta"] {
        let (status, body) = call(
            Method::POST,
            "/v1/admin/tenants",
            PLATFORM_KEY,
            Some(json!({"id": id, "name": id})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        keys.push((
            created["api_key"]["secret"].as_str().unwrap().to_owned(),
            created["api_key"]["key_id"].as_str().unwrap().to_owned(),
        ));
    }
    let (alpha, _) = &keys[0];
    let (beta, beta_key_id) = &keys[1];

    // Beta's data: a campaign message, email credentials, business info (and with it an
    // onboarding workflow), audit entries.
    // Its SMS channel is not ready, so a campaign send is refused whole with what to do first;
    // a message of the campaign submitted on its own is accepted (and refused once dispatched).
    let (status, body) = call(
        Method::POST,
        "/v1/campaigns/launch/send",
        beta,
        Some(json!({"channel": "sms", "body": "hello", "recipients": ["+14155550101"]})),
    )
    .await;
    let refused: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(refused["error"]["code"], "channel_not_ready");
    assert_eq!(refused["error"]["next_action"], "CHANNEL_NOT_CONFIGURED");
    let (status, body) = call(
        Method::POST,
        "/v1/messages",
        beta,
        Some(
            json!({"messages": [{"campaign_id": "launch", "channel": "sms", "body": "hello",
            "to": "+14155550101"}]}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let sent: Value = serde_json::from_str(&body).unwrap();
    let beta_message = sent["results"][0]["message_id"].as_str().unwrap().to_owned();
    let (status, body) = call(
        Method::POST,
        "/v1/channels/email",
        beta,
        Some(
            json!({"access_key_id": "AKIABETA000000000000", "secret_access_key": "beta-secret",
                    "region": "us-east-1", "from_address": "hi@beta.example.com"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(Method::POST, "/v1/business-info", beta, Some(business_info())).await;
    assert_eq!(status, 201, "{body}");
    // Beta's message is claimed (and refused: its channel is not ready) once dispatched.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = call(Method::GET, &format!("/v1/messages/{beta_message}"), beta, None).await;
        if status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "beta's message never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Alpha's key on every tenant route: Beta's things are not found, not counted, not shown.
    type Check = fn(&str) -> bool;
    let not_beta: Check = |body| !body.contains("beta");
    let table: Vec<(Method, String, Option<Value>, u16, Check)> = vec![
        (Method::GET, format!("/v1/messages/{beta_message}"), None, 404, not_beta),
        (Method::GET, "/v1/channels/email".into(), None, 404, not_beta),
        (Method::DELETE, "/v1/channels/email".into(), None, 404, not_beta),
        (Method::GET, "/v1/business-info".into(), None, 404, not_beta),
        (Method::GET, "/v1/business-info/status".into(), None, 200, not_beta),
        (Method::GET, "/v1/channels/sms/status".into(), None, 200, |body| {
            body.contains("not_started")
        }),
        (Method::POST, "/v1/channels/sms/resubmit".into(), None, 404, not_beta),
        (
            Method::DELETE,
            format!("/v1/api-keys/{beta_key_id}"),
            None,
            404,
            not_beta,
        ),
        (Method::GET, "/v1/api-keys".into(), None, 200, |body| {
            body.matches("key_id").count() == 1
        }),
        (Method::GET, "/v1/campaigns/launch/events".into(), None, 200, |body| {
            body.contains("\"total\":0")
        }),
        (Method::GET, "/v1/usage".into(), None, 200, |body| {
            !body.contains("\"used\":1")
        }),
        (Method::GET, "/v1/audit".into(), None, 200, not_beta),
        (
            Method::POST,
            "/v1/messages".into(),
            Some(json!({"messages": [{"tenant_id": "beta", "channel": "sms", "to": "+14155550101", "body": "x"}]})),
            422,
            |body| body.contains("tenant_mismatch"),
        ),
        (
            Method::POST,
            "/v1/campaigns/launch/preflight".into(),
            Some(json!({"channel": "email", "recipients": ["a@example.com"]})),
            200,
            |body| body.contains("CHANNEL_NOT_CONFIGURED"),
        ),
    ];
    for (method, path, body, expected, check) in table {
        let events = path.ends_with("/events");
        let (status, text) = if events {
            // A stream: read its first event only.
            let mut response = stack
                .request(Method::GET, &path, Some(alpha), None)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&chunk).into_owned())
        } else {
            call(method.clone(), &path, alpha, body).await
        };
        assert_eq!(status, expected, "{method} {path}: {text}");
        assert!(check(&text), "{method} {path}: {text}");
    }

    // Beta's own view is intact.
    let (status, _) = call(Method::GET, "/v1/channels/email", beta, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(Method::GET, "/v1/api-keys", beta, None).await;
    assert_eq!(status, 200);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_refuses_a_missing_or_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = testing::settings_with_platform_key(dir.path(), PLATFORM_KEY);
    settings.onboarding.background_runner = false;
    let stack = testing::all_in_one(settings).await;
    let base = format!("http://{}", stack.addr);
    let http = reqwest::Client::new();

    // Every operation the OpenAPI document lists under /v1, whatever its path parameters.
    let document = serde_json::to_value(admin_api::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|segment| if segment.starts_with('{') { "x1" } else { segment })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            for key in [None, Some("enk_not-a-real-key"), Some("wrong")] {
                let mut request = http
                    .request(method.clone(), format!("{base}{concrete}"))
                    .header("content-type", "application/json")
                    .body("{}");
                if let Some(key) = key {
                    request = request.bearer_auth(key);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                // A tenant-shaped key on a platform route is told it needs the platform key.
                let platform = path.starts_with("/v1/admin/");
                let expected = match key {
                    Some(key) if platform && key.starts_with("enk_") => (403, "platform_admin_only"),
                    _ => (401, "unauthorized"),
                };
                assert_eq!(
                    (status, body["error"]["code"].as_str().unwrap_or_default()),
                    expected,
                    "{method} {path} with {key:?}: {body}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} operations checked");
    stack.shutdown().await;
}
