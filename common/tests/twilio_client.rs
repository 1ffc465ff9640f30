//! The Twilio client and provider over real HTTP, against a local axum server playing Twilio:
//! every class of answer, the request's form and Basic auth, transport failures before and after
//! the request was written, message lookups, and secrets that never print.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;
use common::provider::{CredentialError, Lookup, OutboundMessage, Provider, SendOutcome};
use common::store::MessageRecord;
use common::twilio::provider::{StaticCredentials, TwilioCredentials, TwilioProvider};
use common::twilio::{CreateOutcome, ErrorClass, FetchOutcome, TwilioAccount, TwilioClient, TwilioClientSettings};
use common::{Channel, Envelope, MessageId, MessageStatus, PhoneNumber, Priority, Sender, TenantId};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::sync::Barrier;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "tok-3f9a-never-print-me";
const CALLBACK: &str = "https://hooks.example.com/webhooks/twilio/status";
const MESSAGES_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

/// One request as the fake Twilio saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    form: HashMap<String, String>,
    peer: SocketAddr,
}

/// What the fake Twilio answers.
enum Reply {
    /// A JSON body with this status and an optional `Retry-After`.
    Json {
        status: u16,
        retry_after: Option<&'static str>,
        body: Value,
    },
    /// Reads the request, then never answers.
    Hang,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply::Json {
        status,
        retry_after: None,
        body,
    }
}

fn twilio_error(status: u16, code: u32) -> Reply {
    reply(
        status,
        json!({"code": code, "message": format!("error {code}"),
               "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

type Script = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Twin {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Script,
    /// When set, every request waits here before it is answered.
    gate: Option<Arc<Barrier>>,
}

async fn handle(
    State(twin): State<Twin>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        form: url::form_urlencoded::parse(&body).into_owned().collect(),
        peer,
    };
    let answer = (twin.script)(&seen);
    twin.seen.lock().unwrap().push(seen);
    if let Some(gate) = &twin.gate {
        gate.wait().await;
    }
    match answer {
        Reply::Hang => std::future::pending::<Response>().await,
        Reply::Json {
            status,
            retry_after,
            body,
        } => {
            let mut response = (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
            }
            response
        }
    }
}

/// Starts a fake Twilio on 127.0.0.1 (port 0); returns its base URL and what it saw.
async fn twin_with_gate(
    gate: Option<Arc<Barrier>>,
    script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let twin = Twin {
        seen: Arc::clone(&seen),
        script: Arc::new(script),
        gate,
    };
    let router = Router::new().fallback(handle).with_state(twin);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    (format!("http://{address}"), seen)
}

async fn twin(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Seen>>>) {
    twin_with_gate(None, script).await
}

fn account() -> TwilioAccount {
    TwilioAccount::new(ACCOUNT_SID, AUTH_TOKEN)
}

fn client(base_url: &str, request_timeout: Duration) -> TwilioClient {
    TwilioClient::new(&TwilioClientSettings {
        base_url: base_url.to_owned(),
        connect_timeout: request_timeout / 2,
        request_timeout,
        ..TwilioClientSettings::default()
    })
    .unwrap()
}

fn provider_with(base_url: &str, request_timeout: Duration, credentials: Arc<dyn TwilioCredentials>) -> TwilioProvider {
    TwilioProvider::new(
        client(base_url, request_timeout),
        credentials,
        Some(CALLBACK.to_owned()),
    )
}

fn provider(base_url: &str) -> TwilioProvider {
    provider_with(base_url, Duration::from_secs(5), Arc::new(StaticCredentials(account())))
}

/// An SMS from +14155550199 to +14155550100 with this body.
fn sms(message_id: &str, body: &str) -> OutboundMessage {
    let value = json!({"version": 1, "message_id": message_id, "tenant_id": "acme", "channel": "sms",
                       "to": "+14155550100", "body": body});
    OutboundMessage {
        envelope: Envelope::parse(&serde_json::to_vec(&value).unwrap()).unwrap(),
        sender: Sender::Phone(PhoneNumber::parse("+14155550199").unwrap()),
        segments: 1,
        paced_at: tokio::time::Instant::now(),
        accepted_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

/// Answers a create by the message's `Body`: `ok` creates it, a Twilio code is refused with that
/// code (HTTP 400, or the status the code comes with).
fn by_body(seen: &Seen) -> Reply {
    match seen.form.get("Body").map(String::as_str) {
        Some("ok") => reply(
            201,
            json!({"sid": "SM00000000000000000000000000000001", "status": "queued"}),
        ),
        Some("20429") => Reply::Json {
            status: 429,
            retry_after: Some("3"),
            body: json!({"code": 20429, "message": "Too Many Requests", "more_info": "", "status": 429}),
        },
        Some("503") => reply(503, json!({"message": "Service Unavailable"})),
        Some("20003") => twilio_error(401, 20003),
        Some(code) => twilio_error(400, code.parse().unwrap()),
        None => reply(400, json!({})),
    }
}

async fn send_one(provider: &TwilioProvider, message: OutboundMessage) -> SendOutcome {
    let mut outcomes = provider.send(&[message]).await;
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

#[tokio::test]
async fn accepted_requests_are_form_encoded_with_basic_auth_over_one_kept_alive_connection() {
    let (base, seen) = twin(by_body).await;
    let provider = provider(&base);
    for id in ["m1", "m2"] {
        assert_eq!(
            send_one(&provider, sms(id, "ok")).await,
            SendOutcome::Accepted {
                provider_message_id: "SM00000000000000000000000000000001".to_owned()
            }
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    for (request, id) in seen.iter().zip(["m1", "m2"]) {
        let callback = format!("{CALLBACK}?tenant=acme&message={id}");
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, MESSAGES_PATH);
        assert_eq!(request.authorization.as_deref(), Some(expected_auth.as_str()));
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        let expected: HashMap<String, String> = [
            ("To", "+14155550100"),
            ("From", "+14155550199"),
            ("Body", "ok"),
            ("StatusCallback", callback.as_str()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(request.form, expected);
    }
    assert_eq!(
        seen[0].peer, seen[1].peer,
        "the second request reused the pooled connection"
    );
}

#[tokio::test]
async fn every_class_of_refusal_maps_to_its_outcome() {
    let (base, _) = twin(by_body).await;
    let provider = provider(&base);
    let cases = [
        (
            "20429",
            SendOutcome::Transient {
                reason: "TWILIO_20429".to_owned(),
                retry_after: Some(Duration::from_secs(3)),
            },
        ),
        (
            "503",
            SendOutcome::Transient {
                reason: "TWILIO_HTTP_503".to_owned(),
                retry_after: None,
            },
        ),
        (
            "21611",
            SendOutcome::Transient {
                reason: "TWILIO_21611".to_owned(),
                retry_after: None,
            },
        ),
        (
            "21211",
            SendOutcome::Failed {
                code: "21211".to_owned(),
            },
        ),
        (
            "21610",
            SendOutcome::OptedOut {
                code: "21610".to_owned(),
            },
        ),
        (
            "30034",
            SendOutcome::Failed {
                code: "30034".to_owned(),
            },
        ),
        (
            "63016",
            SendOutcome::Failed {
                code: "63016".to_owned(),
            },
        ),
        (
            "20003",
            SendOutcome::Failed {
                code: "20003".to_owned(),
            },
        ),
        (
            "12345",
            SendOutcome::Failed {
                code: "12345".to_owned(),
            },
        ),
    ];
    for (body, expected) in &cases {
        assert_eq!(&send_one(&provider, sms("m", body)).await, expected, "body {body}");
    }
    // The same answers through the client, with their class and Twilio's explanation.
    let form = |body: &str| format!("To=%2B14155550100&From=%2B14155550199&Body={body}");
    match provider.client().create_message(&account(), form("21610")).await {
        CreateOutcome::Rejected(error) => {
            assert_eq!(error.http_status, 400);
            assert_eq!(error.code, Some(21610));
            assert_eq!(error.class, ErrorClass::SuppressRecipient);
            assert_eq!(error.message.as_deref(), Some("error 21610"));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_is_sent_concurrently_and_answered_in_order() {
    // Every request waits until all three have arrived: sent one by one, the first would hang.
    let gate = Arc::new(Barrier::new(3));
    let (base, seen) = twin_with_gate(Some(gate), by_body).await;
    let provider = provider_with(&base, Duration::from_secs(3), Arc::new(StaticCredentials(account())));
    let batch = [sms("a", "21211"), sms("b", "ok"), sms("c", "20429")];
    let outcomes = provider.send(&batch).await;
    assert_eq!(
        outcomes,
        vec![
            SendOutcome::Failed {
                code: "21211".to_owned()
            },
            SendOutcome::Accepted {
                provider_message_id: "SM00000000000000000000000000000001".to_owned()
            },
            SendOutcome::Transient {
                reason: "TWILIO_20429".to_owned(),
                retry_after: Some(Duration::from_secs(3)),
            },
        ]
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_server_that_never_answers_leaves_the_outcome_unknown_after_the_request_timeout() {
    let (base, seen) = twin(|_| Reply::Hang).await;
    let timeout = Duration::from_millis(400);
    let provider = provider_with(&base, timeout, Arc::new(StaticCredentials(account())));
    let started = Instant::now();
    let outcome = send_one(&provider, sms("m", "ok")).await;
    assert_eq!(
        outcome,
        SendOutcome::Unknown {
            reason: "TWILIO_TIMEOUT".to_owned()
        }
    );
    assert!(started.elapsed() >= timeout, "gave up after {:?}", started.elapsed());
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the request was written before the timeout"
    );
}

#[tokio::test]
async fn a_connection_closed_after_the_request_was_written_is_unknown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&request).contains("Body=ok") {
            let read = socket.read(&mut buffer).await.unwrap();
            assert!(read > 0, "the client closed first");
            request.extend_from_slice(&buffer[..read]);
        }
        drop(socket);
        request
    });
    let outcome = send_one(&provider(&base), sms("m", "ok")).await;
    assert_eq!(
        outcome,
        SendOutcome::Unknown {
            reason: "TWILIO_CONNECTION_LOST".to_owned()
        }
    );
    let request = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(request.starts_with(&format!("POST {MESSAGES_PATH} HTTP/1.1")));
}

#[tokio::test]
async fn a_closed_port_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    assert_eq!(
        send_one(&provider(&base), sms("m", "ok")).await,
        SendOutcome::Transient {
            reason: "TWILIO_CONNECT".to_owned(),
            retry_after: None
        }
    );
}

#[tokio::test]
async fn a_connect_timeout_is_transient() {
    // A listener whose accept queue is full: Linux drops further SYNs, so connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let _listener = socket.listen(1).unwrap();
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(error)) => panic!("connect failed: {error}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    if !full {
        eprintln!("this platform accepts every connection: no connect timeout to provoke");
        return;
    }
    let client = TwilioClient::new(&TwilioClientSettings {
        base_url: format!("http://{address}"),
        connect_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..TwilioClientSettings::default()
    })
    .unwrap();
    let started = Instant::now();
    let outcome = client.create_message(&account(), "To=%2B14155550100".to_owned()).await;
    assert_eq!(
        outcome,
        CreateOutcome::Transient {
            reason: "TWILIO_CONNECT".to_owned(),
            retry_after: None
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ended by the connect timeout"
    );
}

struct NoCredentials(CredentialError);

#[async_trait]
impl TwilioCredentials for NoCredentials {
    async fn credentials(&self, _tenant: &TenantId, _channel: Channel) -> Result<TwilioAccount, CredentialError> {
        Err(self.0.clone())
    }
}

#[tokio::test]
async fn missing_or_unavailable_credentials_send_nothing() {
    let (base, seen) = twin(by_body).await;
    let missing = provider_with(
        &base,
        Duration::from_secs(5),
        Arc::new(NoCredentials(CredentialError::NotConfigured)),
    );
    assert_eq!(
        send_one(&missing, sms("m", "ok")).await,
        SendOutcome::Failed {
            code: "CHANNEL_NOT_CONFIGURED".to_owned()
        }
    );
    assert_eq!(missing.lookup(&record(Some("SM1"))).await, Lookup::Unavailable);
    let unavailable = provider_with(
        &base,
        Duration::from_secs(5),
        Arc::new(NoCredentials(CredentialError::Unavailable("store down".to_owned()))),
    );
    assert_eq!(
        send_one(&unavailable, sms("m", "ok")).await,
        SendOutcome::Transient {
            reason: "TWILIO_CREDENTIALS_UNAVAILABLE".to_owned(),
            retry_after: None
        }
    );
    assert!(seen.lock().unwrap().is_empty());
}

fn record(provider_message_id: Option<&str>) -> MessageRecord {
    let now = OffsetDateTime::now_utc();
    MessageRecord {
        tenant_id: TenantId::parse("acme").unwrap(),
        message_id: MessageId::parse("m1").unwrap(),
        campaign_id: None,
        channel: Channel::Sms,
        recipient: "+14155550100".to_owned(),
        priority: Priority::Transactional,
        segments: 1,
        status: MessageStatus::Sent,
        reason: None,
        provider_message_id: provider_message_id.map(str::to_owned),
        accepted_at: now,
        updated_at: now,
        history: Vec::new(),
    }
}

/// Answers fetches by SID.
fn messages(seen: &Seen) -> Reply {
    let sid = seen
        .path
        .strip_prefix("/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/")
        .and_then(|rest| rest.strip_suffix(".json"))
        .unwrap_or_default()
        .to_owned();
    let message = |status: &str, error_code: Value| {
        reply(
            200,
            json!({"sid": sid, "account_sid": ACCOUNT_SID, "status": status, "error_code": error_code,
                   "error_message": null, "num_segments": "1"}),
        )
    };
    match sid.as_str() {
        "SMdelivered" => message("delivered", Value::Null),
        "SMread" => message("read", Value::Null),
        "SMqueued" => message("queued", Value::Null),
        "SMundelivered" => message("undelivered", json!(30003)),
        "SMfailed" => message("failed", json!(30007)),
        "SMinbound" => message("received", Value::Null),
        "SMbroken" => reply(200, json!({"sid": sid})),
        "SMoverloaded" => reply(503, json!({})),
        _ => twilio_error(404, 20404),
    }
}

#[tokio::test]
async fn lookups_fetch_the_message_and_map_its_status() {
    let (base, seen) = twin(messages).await;
    let provider = provider(&base);
    let cases = [
        ("SMdelivered", Lookup::Status(MessageStatus::Delivered, None)),
        ("SMread", Lookup::Status(MessageStatus::Read, None)),
        ("SMqueued", Lookup::Status(MessageStatus::Sent, None)),
        (
            "SMundelivered",
            Lookup::Status(MessageStatus::Undelivered, Some("30003".to_owned())),
        ),
        (
            "SMfailed",
            Lookup::Status(MessageStatus::Failed, Some("30007".to_owned())),
        ),
        ("SMinbound", Lookup::Unavailable),
        ("SMbroken", Lookup::Unavailable),
        ("SMoverloaded", Lookup::Unavailable),
        ("SMmissing", Lookup::NotFound),
    ];
    for (sid, expected) in cases {
        assert_eq!(provider.lookup(&record(Some(sid))).await, expected, "{sid}");
    }
    assert_eq!(provider.lookup(&record(None)).await, Lookup::NotFound);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 9, "a record without a sid asks nothing");
    assert!(seen.iter().all(|request| {
        request.method == Method::GET
            && request
                .authorization
                .as_deref()
                .is_some_and(|auth| auth.starts_with("Basic "))
    }));
    match provider.client().fetch_message(&account(), "SMundelivered").await {
        FetchOutcome::Found(found) => {
            assert_eq!((found.sid.as_str(), found.error_code), ("SMundelivered", Some(30003)));
        }
        other => panic!("expected the message, got {other:?}"),
    }
}

#[tokio::test]
async fn lookups_of_an_unreachable_twilio_are_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    assert_eq!(provider(&base).lookup(&record(Some("SM1"))).await, Lookup::Unavailable);
}

#[tokio::test]
async fn the_auth_token_never_prints() {
    let (base, _) = twin(by_body).await;
    let account = account();
    let provider = provider(&base);
    let printed = [
        format!("{account:?}"),
        format!("{:?}", provider.client()),
        format!("{provider:?}"),
        format!("{:?}", StaticCredentials(account.clone())),
    ];
    for text in &printed {
        assert!(!text.contains(AUTH_TOKEN), "the token leaked: {text}");
        assert!(!text.contains("never-print"), "part of the token leaked: {text}");
    }
    assert!(
        printed[0].contains(ACCOUNT_SID),
        "the account SID is not secret: {}",
        printed[0]
    );
}
