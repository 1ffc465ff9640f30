//! `SesProvider` against a real moto server (`.ci/services/moto.sh start`): a marketing email
//! with text and HTML parts and the one-click unsubscribe headers goes out with `SendEmail`
//! (Simple content) through the real SDK, and moto records exactly what was sent.
//!
//! The moto URL comes from `ENGAGENINJA_MOTO_URL`. Unset: under CI (`CI` set) the test fails,
//! elsewhere it is skipped with a note on stderr.

use std::sync::Arc;

use common::credentials::{Keyring, generate_key};
use common::provider::{OutboundMessage, Provider, SendOutcome};
use common::ses::provider::{SesProvider, StaticSesCredentials};
use common::ses::{SesAccount, SesClient, SesSettings};
use common::unsubscribe::UnsubscribeLinks;
use common::{Envelope, Sender};
use secrecy::{ExposeSecret as _, SecretString};

/// The moto URL, or `None` (after saying why) when the test should be skipped.
fn moto_url() -> Option<String> {
    match std::env::var("ENGAGENINJA_MOTO_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_owned()),
        _ if std::env::var_os("CI").is_some() => panic!(
            "ENGAGENINJA_MOTO_URL is not set but CI is: start moto with `.ci/services/moto.sh start` and export \
             ENGAGENINJA_MOTO_URL=http://127.0.0.1:19050"
        ),
        _ => {
            eprintln!(
                "skipping ses_moto: ENGAGENINJA_MOTO_URL is not set (run `.ci/services/moto.sh start` and export \
                 ENGAGENINJA_MOTO_URL=http://127.0.0.1:19050)"
            );
            None
        }
    }
}

fn email_message(message_id: &str, from: &str, to: &str, subject: &str, body: &str, html: &str) -> OutboundMessage {
    let json = serde_json::json!({
        "version": 1,
        "message_id": message_id,
        "tenant_id": "acme",
        "channel": "email",
        "to": to,
        "from": from,
        "subject": subject,
        "body": body,
        "html": html,
    });
    let envelope = Envelope::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
    let sender: Sender = envelope.from.clone().unwrap();
    OutboundMessage {
        envelope,
        sender,
        segments: 1,
        paced_at: tokio::time::Instant::now(),
        accepted_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

#[tokio::test]
async fn send_email_with_text_html_and_unsubscribe_headers_reaches_moto() {
    let Some(url) = moto_url() else { return };
    // A unique sender domain and recipient per run: moto keeps state between test runs.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let domain = format!("run-{}.example.com", &run[..12]);
    let from = format!("news@{domain}");
    let to = format!("ana-{}@example.org", &run[..12]);
    let subject = format!("Hello {}", &run[..8]);
    let body = "Your order has shipped.\nThanks, Acme";
    let html = "<p>Your order has shipped.</p><p>Thanks, Acme</p>";

    let client = SesClient::new(SesSettings {
        endpoint: Some(url.clone()),
        ..SesSettings::default()
    })
    .unwrap();
    let account = SesAccount::new("AKIDMOTOTEST", "moto-secret", "us-east-1");
    client
        .sdk_client(&account)
        .create_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .expect("moto creates the sender's domain identity");

    // A marketing email: the request carries the one-click unsubscribe headers too.
    let keyring = Keyring::parse(&SecretString::from(format!("k1:{}", generate_key().expose_secret()))).unwrap();
    let links = UnsubscribeLinks::new("https://api.example.com", Arc::new(keyring));
    let provider = SesProvider::new(client, Arc::new(StaticSesCredentials(account)), Some(links));
    let message = email_message(&format!("m-{run}"), &from, &to, &subject, body, html);
    let outcomes = provider.send(std::slice::from_ref(&message)).await;
    let [SendOutcome::Accepted { provider_message_id }] = outcomes.as_slice() else {
        panic!("expected one accepted message, got {outcomes:?}");
    };
    assert!(!provider_message_id.is_empty());

    let data: serde_json::Value = reqwest::get(format!("{url}/moto-api/data.json"))
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    // `ses.Message`: every mail moto recorded, `{id, source, destinations, subject, body}`.
    let sent: Vec<&serde_json::Value> = data["ses"]["Message"]
        .as_array()
        .expect("moto's data.json has the ses.Message list")
        .iter()
        .filter(|message| message["source"] == from.as_str())
        .collect();
    let [mail] = sent.as_slice() else {
        panic!("expected one message from {from} in moto, got {sent:?}\nall: {data}");
    };
    assert_eq!(mail["id"], provider_message_id.as_str(), "{mail}");
    assert_eq!(mail["subject"], subject.as_str(), "{mail}");
    // moto records the HTML part when there is one.
    assert_eq!(mail["body"], html, "{mail}");
    assert_eq!(mail["destinations"]["ToAddresses"], serde_json::json!([to]), "{mail}");
}
