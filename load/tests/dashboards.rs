//! The Grafana dashboard against a real Prometheus: the all-in-one stack runs in this test with
//! a live tenant on the provider simulator (which fails some sends, so that retries happen, and
//! signs its status callbacks) and a demo tenant; a Prometheus started on loopback scrapes it
//! every second while traffic flows; then every query of every panel of
//! `deploy/grafana/dashboards/engageninja.json` must return data.
//!
//! Needs a `prometheus` binary: ENGAGENINJA_PROMETHEUS names it (`.ci/services/prometheus.sh
//! install` prints it). Unset, the test says why and passes, except under `CI`, where it fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::address::PhoneNumber;
use common::credentials::{Keyring, generate_key};
use common::store::sqlite::SqliteStore;
use common::store::{NumberStatus, SenderKind, SenderNumber};
use common::{Channel, TenantId};
use engageninja::testing;
use load::simulator::{Faults, SesSimConfig, Simulator, SimulatorConfig};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::process::{Child, Command};

/// The variable naming the Prometheus binary.
const PROMETHEUS_ENV: &str = "ENGAGENINJA_PROMETHEUS";

/// How long traffic flows while Prometheus scrapes.
const TRAFFIC: Duration = Duration::from_secs(20);

fn prometheus_binary() -> Option<PathBuf> {
    match std::env::var(PROMETHEUS_ENV) {
        Ok(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{PROMETHEUS_ENV} is not set: CI must run this test (.ci/services/prometheus.sh install)"
            );
            eprintln!("skipped: {PROMETHEUS_ENV} is not set (a prometheus binary; .ci/services/prometheus.sh install)");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus scraping `target` every second, on a port of its own; killed on drop.
struct Prometheus {
    url: String,
    _child: Child,
}

impl Prometheus {
    async fn start(binary: &Path, dir: &Path, target: SocketAddr) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: engageninja\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = reqwest::get(format!("{url}/-/ready"))
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus was not ready after 60 s: {}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self { url, _child: child }
    }

    /// The result of an instant query.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", expr)
            .finish();
        let body: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query?{query}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// Every (panel title, query) of the dashboard, with Grafana's interval variables replaced.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards/engageninja.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queries.push((
                panel["title"].as_str().unwrap().to_owned(),
                expr.replace("$__rate_interval", "15s").replace("$__range", "5m"),
            ));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_stack_under_load() {
    let Some(binary) = prometheus_binary() else { return };
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "the dashboard has its panels: {queries:?}");

    // The simulator posts SES events to the stack, whose port must be known first.
    let port = free_port();
    let simulator = Simulator::start(SimulatorConfig {
        rate_per_sender: 50.0,
        faults: Faults {
            server_error_rate: 0.1,
            ..Faults::default()
        },
        ses: SesSimConfig {
            sns_endpoint: Some(format!("http://127.0.0.1:{port}/webhooks/ses").parse().unwrap()),
            event_delay: Duration::from_millis(50),
            ..SesSimConfig::default()
        },
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = SecretString::from(format!("k1:{}", generate_key().expose_secret()));
    let keyring = Keyring::parse(&keys).unwrap();
    let mut settings = testing::settings(dir.path());
    settings.admin.listen = SocketAddr::from(([127, 0, 0, 1], port));
    settings.log.partitions = 2;
    settings.dispatcher.poll_wait_ms = 20;
    settings.credentials.keys = Some(keys);
    load::fixtures::on_simulator(&mut settings, &simulator.base_url());

    // A live tenant on the simulator's accounts: SMS, WhatsApp and email.
    let store = SqliteStore::open(&settings.store_path()).await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let numbers: Vec<SenderNumber> = [
        ("+14155550150", SenderKind::LongCode),
        ("+14155550151", SenderKind::Whatsapp),
    ]
    .into_iter()
    .map(|(number, kind)| SenderNumber {
        tenant_id: acme.clone(),
        number: PhoneNumber::parse(number).unwrap(),
        kind,
        status: NumberStatus::Active,
        twilio_sid: None,
        rate_per_second: Some(20.0),
        created_at: OffsetDateTime::now_utc(),
        registration: None,
    })
    .collect();
    load::fixtures::live_twilio_tenant(&store, &keyring, &acme, &[Channel::Sms, Channel::Whatsapp], &numbers)
        .await
        .unwrap();
    load::fixtures::live_ses_channel(&store, &keyring, &acme).await.unwrap();
    let live_key = admin_api::auth::create_api_key(&store, &acme).await.unwrap().secret;
    drop(store);

    let stack = testing::all_in_one(settings).await;
    let (addr, ops) = (stack.addr, stack.ops_addr.expect("the stack serves /metrics"));
    let demo_key = stack.demo_key().to_owned();
    let prometheus_dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(&binary, prometheus_dir.path(), ops).await;

    // Traffic: SMS, WhatsApp templates and email of the live tenant, demo SMS, one message a
    // batch from a number the tenant does not own (refused at admission), and a callback with
    // a forged signature.
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/messages");
    let started = tokio::time::Instant::now();
    let mut batch = 0;
    while started.elapsed() < TRAFFIC {
        let mut live = Vec::new();
        for n in 0..10 {
            let id = format!("b{batch}-{n}");
            live.push(match n % 5 {
                0..=2 => json!({"message_id": format!("sms-{id}"), "channel": "sms", "to": format!("+1646555{:04}", n),
                               "body": "Your order has shipped."}),
                3 => json!({"message_id": format!("wa-{id}"), "channel": "whatsapp", "to": "+16465550100",
                            "template": {"id": "HX0123456789abcdef0123456789abcdef"}}),
                _ => json!({"message_id": format!("mail-{id}"), "channel": "email", "to": "ada@example.com",
                            "subject": "Shipped", "body": "Your order has shipped."}),
            });
        }
        live.push(
            json!({"message_id": format!("spoof-{batch}"), "channel": "sms", "to": "+16465550100",
                         "from": "+19995550000", "body": "Not from our number"}),
        );
        let demo: Vec<Value> = (0..10)
            .map(|n| json!({"message_id": format!("demo-{batch}-{n}"), "channel": "sms", "to": "+16465550100", "body": "Hi!"}))
            .collect();
        for (key, messages) in [(&live_key, live), (&demo_key, demo)] {
            let response = http
                .post(&url)
                .bearer_auth(key)
                .json(&json!({ "messages": messages }))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.text().await.unwrap());
        }
        let forged = http
            .post(format!("http://{addr}/webhooks/twilio/status"))
            .header(common::twilio::signature::SIGNATURE_HEADER, "forged")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("AccountSid", load::simulator::DEFAULT_ACCOUNT_SID)
                    .append_pair("MessageSid", "SM00000000000000000000000000000000")
                    .append_pair("MessageStatus", "delivered")
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403);
        batch += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A few more scrapes after the last batch's receipts.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut empty = Vec::new();
    for (title, expr) in &queries {
        if prometheus.query(expr).await.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    stack.shutdown().await;
    simulator.shutdown().await.unwrap();
    assert!(empty.is_empty(), "panel queries without data:\n{}", empty.join("\n"));
}
