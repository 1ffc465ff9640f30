//! The SES v2 routes: `SendEmail` and `SendBulkEmail`, with the checks real SES makes, SES
//! events delivered as signed SNS notifications, and `GetAccount` (a healthy account, for
//! credential checks). Point `SesSettings::endpoint` at
//! [`RunningSimulator::base_url`](super::RunningSimulator::base_url).
//!
//! # Checks and their answers (in this order)
//!
//! Errors are AWS JSON errors as the SDK parses them: the `x-amzn-ErrorType` header and a body
//! `{"__type": TYPE, "message": ...}`.
//!
//! | check | HTTP | error type |
//! |---|---|---|
//! | an `Authorization: AWS4-HMAC-SHA256 Credential=KEY/...` header (the signature itself is not verified) | 403 | `MissingAuthenticationTokenException` |
//! | `KEY` is one of [`SesSimConfig::access_key_ids`](super::SesSimConfig::access_key_ids) | 403 | `UnrecognizedClientException` |
//! | the body is a JSON object | 400 | `BadRequestException` |
//! | an injected throttle ([`SesSimConfig::throttle_rate`](super::SesSimConfig::throttle_rate)) | 429 | `TooManyRequestsException` |
//! | `FromEmailAddress` present and non-empty | 400 | `BadRequestException` |
//! | `SendEmail`: `Content` holds exactly one of `Simple`, `Raw`, `Template` | 400 | `BadRequestException` |
//! | `SendEmail`: `Simple` has `Subject.Data` and a `Body` with `Text` or `Html`; `Template` has a `TemplateName`, `TemplateArn` or `TemplateContent` | 400 | `BadRequestException` |
//! | `SendEmail`: a `Destination` with at least one address (not needed with `Raw`) | 400 | `BadRequestException` |
//! | `SendBulkEmail`: `DefaultContent.Template` with a `TemplateName` or `TemplateArn` | 400 | `BadRequestException` |
//! | `SendBulkEmail`: 1 to 50 `BulkEmailEntries` | 400 | `BadRequestException` |
//! | `SendBulkEmail`: every entry has a `Destination` with at least one address | 400 | `BadRequestException` |
//! | `Headers` (simple or templated content, the default template) and each entry's `ReplacementHeaders`: a `Name` of printable ASCII without `:`, at most 126 characters; a `Value` of printable ASCII, at most 995; together at most 996 | 400 | `BadRequestException` |
//!
//! A bulk call that passes answers one `BulkEmailEntryResults` item per entry: one random draw
//! per entry picks `MESSAGE_REJECTED` ([`SesSimConfig::entry_rejected_rate`](super::SesSimConfig::entry_rejected_rate)),
//! `TRANSIENT_FAILURE` ([`SesSimConfig::entry_transient_rate`](super::SesSimConfig::entry_transient_rate)) or `SUCCESS` with a `MessageId`.
//!
//! Email templates are served by [`super::ses_templates`], whose routes `router` is given.
//!
//! Every accepted email is kept in a mailbox of the last [`MAILBOX_SIZE`], with its parts and
//! added headers (`List-Unsubscribe`, ...): `GET /ses/mailbox` answers them, newest last.
//!
//! # Events
//!
//! When [`SesSimConfig::sns_endpoint`](super::SesSimConfig::sns_endpoint) is set, every accepted email (whether or not it names a
//! configuration set) gets SNS `Notification`s POSTed there, [`SesSimConfig::event_delay`](super::SesSimConfig::event_delay)
//! apart, each carrying an SES event (`eventType`, `mail{messageId, timestamp, source,
//! destination, tags}` and the event's own object) in `Message`, as the SES mailbox simulator
//! would produce them: `Send`; then `Delivery` for recipients not containing `bounce@`; `Bounce`
//! (`Permanent`, `General`) for those that do; `Complaint` (`abuse`) for recipients containing
//! `complaint@`. Notifications are signed with SignatureVersion 2 (RSA-SHA256) with a TEST ONLY
//! key (`common/tests/fixtures`); `SigningCertURL` is `{base}/sns/cert.pem`, served by the
//! simulator, so a verifier needs `CertUrlPolicy::Exact` with that URL. A failed delivery is
//! retried as status callbacks are ([`CallbackSettings`](super::config::CallbackSettings)).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::ses::sns::{SnsMessage, TYPE_NOTIFICATION, string_to_sign};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::SimulatorConfig;
use super::state::{SesStats, State, Templates};

/// TEST ONLY: the throwaway certificate the simulator signs SNS messages with (see
/// `common/tests/fixtures/README.md`); served at `GET /sns/cert.pem`.
pub const TEST_SIGNING_CERT_PEM: &str = include_str!("../../../common/tests/fixtures/sns-test-only-cert.pem");
/// TEST ONLY: the certificate's private key. It is public: never trust it.
const TEST_SIGNING_KEY_PEM: &str = include_str!("../../../common/tests/fixtures/sns-test-only-key.pem");
/// The path of the signing certificate.
pub const CERT_PATH: &str = "/sns/cert.pem";

/// TEST ONLY: signs `message` (SignatureVersion 2) with the test key, as the simulator signs
/// its notifications, for tests that craft their own SNS messages. Fails if the message lacks
/// a field its type signs.
pub fn sign_with_test_key(message: &mut SnsMessage) -> Result<(), String> {
    let key = RsaPrivateKey::from_pkcs8_pem(TEST_SIGNING_KEY_PEM).map_err(|error| error.to_string())?;
    message.signature_version = "2".to_owned();
    let signed = string_to_sign(message).map_err(|error| error.to_string())?;
    message.signature = STANDARD.encode(SigningKey::<Sha256>::new(key).sign(signed.as_bytes()).to_bytes());
    Ok(())
}
/// The most entries one `SendBulkEmail` call takes.
pub const MAX_BULK_ENTRIES: usize = 50;
pub use super::config::{DEFAULT_ACCESS_KEY_ID, DEFAULT_TOPIC_ARN};
/// The AWS account id the simulated emails are sent from.
const ACCOUNT_ID: &str = "123456789012";

/// What the SES handlers share.
pub(crate) struct SesShared {
    state: Arc<State>,
    http: reqwest::Client,
    tracker: TaskTracker,
    cancel: CancellationToken,
    base_url: String,
    signer: Option<SigningKey<Sha256>>,
    rng: Mutex<StdRng>,
    /// The last [`MAILBOX_SIZE`] emails accepted, newest last.
    mailbox: Mutex<VecDeque<MailboxEntry>>,
    /// The accounts' email templates.
    templates: Templates,
}

impl SesShared {
    /// The SES side of a simulator serving at `base_url`.
    fn new(
        state: Arc<State>,
        http: reqwest::Client,
        tracker: TaskTracker,
        cancel: CancellationToken,
        base_url: String,
    ) -> Self {
        let signer = match RsaPrivateKey::from_pkcs8_pem(TEST_SIGNING_KEY_PEM) {
            Ok(key) => Some(SigningKey::<Sha256>::new(key)),
            Err(error) => {
                tracing::error!(%error, "simulator sns signing key does not parse, no ses events will be sent");
                None
            }
        };
        let rng = match state.config.seed {
            // A different stream from the Twilio side's draws.
            Some(seed) => StdRng::seed_from_u64(seed ^ 0x5e5_5e5),
            None => StdRng::from_os_rng(),
        };
        Self {
            state,
            http,
            tracker,
            cancel,
            base_url,
            signer,
            rng: Mutex::new(rng),
            mailbox: Mutex::new(VecDeque::with_capacity(MAILBOX_SIZE)),
            templates: Templates::default(),
        }
    }

    fn config(&self) -> &SimulatorConfig {
        &self.state.config
    }

    fn roll(&self) -> f64 {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner).random()
    }

    /// An SES-looking message id: `0100` and hex groups.
    fn new_message_id(&self) -> String {
        let (a, b): (u64, u128) = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            (rng.random(), rng.random())
        };
        let b = format!("{b:032x}");
        format!(
            "0100{a:016x}-{}-{}-{}-{}-000000",
            &b[..8],
            &b[8..12],
            &b[12..16],
            &b[16..28]
        )
    }

    fn count(&self, change: impl FnOnce(&mut SesStats)) {
        self.state.count_ses(change);
    }

    /// The accounts' email templates.
    pub(crate) fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Keeps an accepted email in the mailbox, forgetting the oldest beyond [`MAILBOX_SIZE`].
    fn deliver_to_mailbox(&self, entry: MailboxEntry) {
        let mut mailbox = self.mailbox.lock().unwrap_or_else(PoisonError::into_inner);
        if mailbox.len() == MAILBOX_SIZE {
            mailbox.pop_front();
        }
        mailbox.push_back(entry);
    }
}

/// How many accepted emails `GET /ses/mailbox` keeps.
pub const MAILBOX_SIZE: usize = 100;

/// An accepted email as `GET /ses/mailbox` shows it: who, what, and the headers it carried.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MailboxEntry {
    /// The simulator's message id (SES's `MessageId`).
    pub message_id: String,
    /// The sender.
    pub from: String,
    /// Every recipient.
    pub to: Vec<String>,
    /// The subject, for simple content.
    pub subject: Option<String>,
    /// The text part, for simple content.
    pub text: Option<String>,
    /// The HTML part, for simple content.
    pub html: Option<String>,
    /// The template's name, for templated content.
    pub template: Option<String>,
    /// The added headers, name and value (`Headers`, or a bulk entry's `ReplacementHeaders`
    /// over the default template's `Headers`).
    pub headers: Headers,
}

/// `GET /ses/mailbox`: the last emails accepted, newest last.
async fn mailbox(AxumState(shared): AxumState<Arc<SesShared>>) -> Response {
    let entries: Vec<MailboxEntry> = shared
        .mailbox
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    axum::Json(entries).into_response()
}

/// The `Headers` list of a request part as name and value, checked as SES checks them: a name
/// of printable ASCII without `:` and at most 126 characters, a value of printable ASCII and
/// at most 995, both together at most 996.
fn message_headers(list: &Value) -> Result<Headers, AwsError> {
    let printable = |text: &str| text.bytes().all(|byte| (32..=126).contains(&byte));
    let mut headers = Vec::new();
    for header in list.as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (header["Name"].as_str(), header["Value"].as_str()) else {
            return Err(AwsError::bad_request("Every header needs a Name and a Value"));
        };
        let name_ok = !name.is_empty() && name.len() <= 126 && !name.contains([':', ' ']) && printable(name);
        if !name_ok || value.len() > 995 || !printable(value) || name.len() + value.len() > 996 {
            return Err(AwsError::bad_request(format!("Invalid header: {name}")));
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(headers)
}

/// `base` with each of `overrides` replacing the header of the same name or added.
fn merged_headers(mut base: Headers, overrides: Headers) -> Headers {
    for (name, value) in overrides {
        match base
            .iter_mut()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(&name))
        {
            Some(header) => header.1 = value,
            None => base.push((name, value)),
        }
    }
    base
}

/// The SES and SNS routes of a simulator serving at `addr`, with `templates` (the template
/// routes) and their state.
pub(crate) fn router(
    state: &Arc<State>,
    http: &reqwest::Client,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    addr: SocketAddr,
    templates: Router<Arc<SesShared>>,
) -> Router {
    let shared = SesShared::new(
        Arc::clone(state),
        http.clone(),
        tracker.clone(),
        cancel.clone(),
        format!("http://{addr}"),
    );
    Router::new()
        .route("/v2/email/outbound-emails", post(send_email))
        .route("/v2/email/outbound-bulk-emails", post(send_bulk_email))
        .route("/v2/email/account", get(get_account))
        .route(CERT_PATH, get(certificate))
        .route("/ses/mailbox", get(mailbox))
        .merge(templates)
        .with_state(Arc::new(shared))
}

/// An AWS JSON error, as the SDK reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {error_type}: {message}")]
pub struct AwsError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error type (`BadRequestException`, ...).
    pub error_type: &'static str,
    /// The explanation.
    pub message: String,
}

impl AwsError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error_type: "BadRequestException",
            message: message.into(),
        }
    }

    fn forbidden(error_type: &'static str, message: &str) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            error_type,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.error_type, "message": self.message}).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(self.error_type));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// The access key id of a SigV4 `Authorization` header.
pub(crate) fn access_key_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let credential = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    credential.split('/').next().filter(|key| !key.is_empty())
}

/// Whether the request is signed by a configured access key.
pub(crate) fn check_key(shared: &SesShared, headers: &HeaderMap) -> Result<(), AwsError> {
    let Some(key) = access_key_id(headers) else {
        return Err(AwsError::forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    if !shared.config().ses.access_key_ids.iter().any(|known| known == key) {
        return Err(AwsError::forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    Ok(())
}

/// `GET /v2/email/account` (`GetAccount`): a healthy production account, for credential checks.
async fn get_account(AxumState(shared): AxumState<Arc<SesShared>>, headers: HeaderMap) -> Response {
    if let Err(error) = check_key(&shared, &headers) {
        return error.into_response();
    }
    let answer = json!({
        "DedicatedIpAutoWarmupEnabled": false,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": true,
        "SendingEnabled": true,
        "SendQuota": {"Max24HourSend": 1_000_000.0, "MaxSendRate": 1_000.0, "SentLast24Hours": 0.0},
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// The checks every send request passes first: credentials, JSON, throttling, sender.
fn check_common(shared: &SesShared, headers: &HeaderMap, body: &[u8]) -> Result<(Value, String), AwsError> {
    check_key(shared, headers)?;
    let request: Value = serde_json::from_slice(body).map_err(|_| AwsError::bad_request("Invalid JSON body"))?;
    if !request.is_object() {
        return Err(AwsError::bad_request("The request body must be a JSON object"));
    }
    if shared.roll() < shared.config().ses.throttle_rate {
        return Err(AwsError {
            status: StatusCode::TOO_MANY_REQUESTS,
            error_type: "TooManyRequestsException",
            message: "Maximum sending rate exceeded.".to_owned(),
        });
    }
    let from = request["FromEmailAddress"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if from.is_empty() {
        return Err(AwsError::bad_request("FromEmailAddress is required"));
    }
    Ok((request, from))
}

/// Every address of a `Destination` (To, Cc, Bcc).
fn addresses(destination: &Value) -> Vec<String> {
    ["ToAddresses", "CcAddresses", "BccAddresses"]
        .iter()
        .filter_map(|field| destination[field].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Tags as SES events carry them: name to a list of values.
fn tags(list: &Value, configuration_set: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for tag in list.as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (tag["Name"].as_str(), tag["Value"].as_str()) {
            tags.insert(name.to_owned(), vec![value.to_owned()]);
        }
    }
    if let Some(set) = configuration_set {
        tags.insert("ses:configuration-set".to_owned(), vec![set.to_owned()]);
    }
    tags
}

/// An email accepted, with what its events need.
#[derive(Debug, Clone)]
struct AcceptedEmail {
    message_id: String,
    from: String,
    destination: Vec<String>,
    tags: BTreeMap<String, Vec<String>>,
    sent_at: OffsetDateTime,
}

/// Added headers: name and value.
type Headers = Vec<(String, String)>;

/// The recipients and added headers of a valid `SendEmail` request.
fn check_send_email(request: &Value) -> Result<(Vec<String>, Headers), AwsError> {
    let content = &request["Content"];
    let kinds = ["Simple", "Raw", "Template"]
        .iter()
        .filter(|kind| !content[**kind].is_null())
        .count();
    if kinds != 1 {
        return Err(AwsError::bad_request(
            "Content must contain exactly one of Simple, Raw or Template",
        ));
    }
    let simple = &content["Simple"];
    if !simple.is_null() {
        if simple["Subject"]["Data"].as_str().is_none() {
            return Err(AwsError::bad_request("Simple content needs Subject.Data"));
        }
        let body = &simple["Body"];
        if body["Text"]["Data"].as_str().is_none() && body["Html"]["Data"].as_str().is_none() {
            return Err(AwsError::bad_request("Simple content needs a Body with Text or Html"));
        }
    }
    let template = &content["Template"];
    if !template.is_null()
        && template["TemplateName"].as_str().is_none()
        && template["TemplateArn"].as_str().is_none()
        && template["TemplateContent"].is_null()
    {
        return Err(AwsError::bad_request(
            "Template content needs a TemplateName, TemplateArn or TemplateContent",
        ));
    }
    let destination = addresses(&request["Destination"]);
    if destination.is_empty() && content["Raw"].is_null() {
        return Err(AwsError::bad_request("Destination needs at least one address"));
    }
    let headers = if simple.is_null() {
        &template["Headers"]
    } else {
        &simple["Headers"]
    };
    Ok((destination, message_headers(headers)?))
}

async fn send_email(AxumState(shared): AxumState<Arc<SesShared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.count(|stats| stats.send_email_requests += 1);
    let checked = check_common(&shared, &headers, &body).and_then(|(request, from)| {
        check_send_email(&request).map(|(destination, added)| (request, from, destination, added))
    });
    let (request, from, destination, added) = match checked {
        Ok(checked) => checked,
        Err(error) => return refuse(&shared, error),
    };
    let configuration_set = request["ConfigurationSetName"].as_str();
    let email = AcceptedEmail {
        message_id: shared.new_message_id(),
        from,
        destination,
        tags: tags(&request["EmailTags"], configuration_set),
        sent_at: OffsetDateTime::now_utc(),
    };
    shared.count(|stats| stats.accepted += 1);
    let simple = &request["Content"]["Simple"];
    let part = |value: &Value| value["Data"].as_str().map(str::to_owned);
    shared.deliver_to_mailbox(MailboxEntry {
        message_id: email.message_id.clone(),
        from: email.from.clone(),
        to: email.destination.clone(),
        subject: part(&simple["Subject"]),
        text: part(&simple["Body"]["Text"]),
        html: part(&simple["Body"]["Html"]),
        template: request["Content"]["Template"]["TemplateName"]
            .as_str()
            .map(str::to_owned),
        headers: added,
    });
    let answer = json!({"MessageId": email.message_id});
    publish_events(&shared, email);
    (StatusCode::OK, axum::Json(answer)).into_response()
}

fn check_bulk(request: &Value) -> Result<(), AwsError> {
    let template = &request["DefaultContent"]["Template"];
    if template["TemplateName"].as_str().is_none() && template["TemplateArn"].as_str().is_none() {
        return Err(AwsError::bad_request(
            "DefaultContent.Template with a TemplateName or TemplateArn is required",
        ));
    }
    let entries = request["BulkEmailEntries"].as_array().map_or(0, Vec::len);
    if entries == 0 {
        return Err(AwsError::bad_request("BulkEmailEntries must not be empty"));
    }
    if entries > MAX_BULK_ENTRIES {
        return Err(AwsError::bad_request(format!(
            "1 validation error detected: Value at 'bulkEmailEntries' failed to satisfy constraint: Member must have \
             length less than or equal to {MAX_BULK_ENTRIES}"
        )));
    }
    let empty = request["BulkEmailEntries"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|entry| addresses(&entry["Destination"]).is_empty());
    if empty {
        return Err(AwsError::bad_request(
            "Every BulkEmailEntry needs a Destination with at least one address",
        ));
    }
    message_headers(&template["Headers"])?;
    for entry in request["BulkEmailEntries"].as_array().into_iter().flatten() {
        message_headers(&entry["ReplacementHeaders"])?;
    }
    Ok(())
}

async fn send_bulk_email(AxumState(shared): AxumState<Arc<SesShared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.count(|stats| stats.bulk_requests += 1);
    let (request, from) = match check_common(&shared, &headers, &body).and_then(|checked| {
        check_bulk(&checked.0)?;
        Ok(checked)
    }) {
        Ok(checked) => checked,
        Err(error) => return refuse(&shared, error),
    };
    let configuration_set = request["ConfigurationSetName"].as_str();
    let ses = &shared.config().ses;
    let mut results = Vec::new();
    for entry in request["BulkEmailEntries"].as_array().into_iter().flatten() {
        let roll = shared.roll();
        if roll < ses.entry_rejected_rate {
            shared.count(|stats| stats.entries_rejected += 1);
            results.push(json!({"Status": "MESSAGE_REJECTED", "Error": "Email address is on the suppression list."}));
        } else if roll < ses.entry_rejected_rate + ses.entry_transient_rate {
            shared.count(|stats| stats.entries_transient += 1);
            results.push(json!({"Status": "TRANSIENT_FAILURE", "Error": "Temporary failure, try again later."}));
        } else {
            let mut entry_tags = tags(&request["DefaultEmailTags"], configuration_set);
            entry_tags.extend(tags(&entry["ReplacementTags"], None));
            let email = AcceptedEmail {
                message_id: shared.new_message_id(),
                from: from.clone(),
                destination: addresses(&entry["Destination"]),
                tags: entry_tags,
                sent_at: OffsetDateTime::now_utc(),
            };
            shared.count(|stats| stats.accepted += 1);
            // Checked by check_bulk: these parse.
            let default_headers =
                message_headers(&request["DefaultContent"]["Template"]["Headers"]).unwrap_or_default();
            let entry_headers = message_headers(&entry["ReplacementHeaders"]).unwrap_or_default();
            shared.deliver_to_mailbox(MailboxEntry {
                message_id: email.message_id.clone(),
                from: email.from.clone(),
                to: email.destination.clone(),
                subject: None,
                text: None,
                html: None,
                template: request["DefaultContent"]["Template"]["TemplateName"]
                    .as_str()
                    .map(str::to_owned),
                headers: merged_headers(default_headers, entry_headers),
            });
            results.push(json!({"Status": "SUCCESS", "MessageId": email.message_id}));
            publish_events(&shared, email);
        }
    }
    (StatusCode::OK, axum::Json(json!({"BulkEmailEntryResults": results}))).into_response()
}

/// Counts and answers a refused request.
fn refuse(shared: &SesShared, error: AwsError) -> Response {
    tracing::debug!(error_type = error.error_type, message = %error.message, "ses simulator refused request");
    shared.count(|stats| *stats.errors_by_type.entry(error.error_type.to_owned()).or_default() += 1);
    error.into_response()
}

async fn certificate() -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        TEST_SIGNING_CERT_PEM,
    )
        .into_response()
}

/// SES's timestamp form: RFC 3339 with milliseconds, UTC.
fn timestamp(at: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

/// The SES events of an accepted email, in order; see the module docs.
fn events(email: &AcceptedEmail) -> Vec<Value> {
    let mail = json!({
        "timestamp": timestamp(email.sent_at),
        "messageId": email.message_id,
        "source": email.from,
        "sourceArn": format!("arn:aws:ses:us-east-1:{ACCOUNT_ID}:identity/{}", email.from),
        "sendingAccountId": ACCOUNT_ID,
        "destination": email.destination,
        "headersTruncated": false,
        "tags": email.tags,
    });
    let now = timestamp(OffsetDateTime::now_utc());
    let bounced: Vec<&String> = email.destination.iter().filter(|to| to.contains("bounce@")).collect();
    let delivered: Vec<&String> = email.destination.iter().filter(|to| !to.contains("bounce@")).collect();
    let complained: Vec<&String> = delivered
        .iter()
        .copied()
        .filter(|to| to.contains("complaint@"))
        .collect();
    let mut events = vec![json!({"eventType": "Send", "mail": mail, "send": {}})];
    if !delivered.is_empty() {
        events.push(json!({
            "eventType": "Delivery",
            "mail": mail,
            "delivery": {
                "timestamp": now,
                "processingTimeMillis": 120,
                "recipients": delivered,
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
        }));
    }
    if !bounced.is_empty() {
        let recipients: Vec<Value> = bounced
            .iter()
            .map(|to| {
                json!({
                    "emailAddress": to,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                })
            })
            .collect();
        events.push(json!({
            "eventType": "Bounce",
            "mail": mail,
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": recipients,
                "timestamp": now,
                "feedbackId": format!("{}-bounce", email.message_id),
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            },
        }));
    }
    if !complained.is_empty() {
        let recipients: Vec<Value> = complained.iter().map(|to| json!({"emailAddress": to})).collect();
        events.push(json!({
            "eventType": "Complaint",
            "mail": mail,
            "complaint": {
                "complainedRecipients": recipients,
                "timestamp": now,
                "feedbackId": format!("{}-complaint", email.message_id),
                "complaintFeedbackType": "abuse",
                "userAgent": "EngageNinja simulator",
            },
        }));
    }
    events
}

/// A signed SNS notification carrying `message`, or `None` without a signing key.
fn notification(shared: &SesShared, message: String) -> Option<SnsMessage> {
    let signer = shared.signer.as_ref()?;
    let id: u128 = shared.rng.lock().unwrap_or_else(PoisonError::into_inner).random();
    let id = format!("{id:032x}");
    let message_id = format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    );
    let topic = shared.config().ses.topic_arn.clone();
    let mut sns = SnsMessage {
        message_type: TYPE_NOTIFICATION.to_owned(),
        unsubscribe_url: Some(format!(
            "{}/sns/unsubscribe?SubscriptionArn={topic}:{message_id}",
            shared.base_url
        )),
        message_id,
        token: None,
        topic_arn: topic,
        subject: None,
        message,
        subscribe_url: None,
        timestamp: timestamp(OffsetDateTime::now_utc()),
        signature_version: "2".to_owned(),
        signature: String::new(),
        signing_cert_url: format!("{}{CERT_PATH}", shared.base_url),
    };
    // A notification always has every field its string to sign needs.
    let signed = string_to_sign(&sns).ok()?;
    sns.signature = STANDARD.encode(signer.sign(signed.as_bytes()).to_bytes());
    Some(sns)
}

/// Schedules the email's events, if an SNS endpoint is configured: one task per email, which
/// stops with the simulator.
fn publish_events(shared: &Arc<SesShared>, email: AcceptedEmail) {
    let Some(endpoint) = shared.config().ses.sns_endpoint.clone() else {
        return;
    };
    let shared_for_task = Arc::clone(shared);
    shared.tracker.spawn(async move {
        let shared = shared_for_task;
        let delay = shared.config().ses.event_delay;
        for event in events(&email) {
            tokio::select! {
                () = shared.cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            let Some(sns) = notification(&shared, event.to_string()) else {
                return;
            };
            if !deliver(&shared, &endpoint, &sns).await {
                return;
            }
        }
    });
}

/// POSTs one notification, retrying as callbacks are; `false` when given up or stopped.
async fn deliver(shared: &SesShared, endpoint: &reqwest::Url, sns: &SnsMessage) -> bool {
    let settings = shared.config().callbacks;
    let body = match serde_json::to_string(sns) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "sns notification does not serialize");
            return false;
        }
    };
    let mut wait = settings.retry_after;
    for attempt in 1..=settings.max_attempts.max(1) {
        let request = shared
            .http
            .post(endpoint.clone())
            .header(header::CONTENT_TYPE, "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", &sns.message_type)
            .header("x-amz-sns-message-id", &sns.message_id)
            .header("x-amz-sns-topic-arn", &sns.topic_arn)
            .body(body.clone());
        let delivered = tokio::select! {
            () = shared.cancel.cancelled() => return false,
            answer = request.send() => answer.is_ok_and(|answer| answer.status().is_success()),
        };
        if delivered {
            shared.count(|stats| stats.notifications_sent += 1);
            return true;
        }
        let last = attempt >= settings.max_attempts;
        shared.count(|stats| {
            stats.notifications_failed += 1;
            if last {
                stats.notifications_dropped += 1;
            }
        });
        tracing::debug!(attempt, sns_message_id = %sns.message_id, "sns notification failed");
        if last {
            return false;
        }
        tokio::select! {
            () = shared.cancel.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
        wait = wait.saturating_mul(2);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::{ConfigError, SesSimConfig};

    #[test]
    fn the_default_is_valid_and_bad_rates_are_refused() {
        assert_eq!(SesSimConfig::default().validate(), Ok(()));
        assert_eq!(SesSimConfig::default().access_key_ids, [DEFAULT_ACCESS_KEY_ID]);
        let config = SesSimConfig {
            entry_rejected_rate: 0.6,
            entry_transient_rate: 0.6,
            ..SesSimConfig::default()
        };
        assert!(matches!(config.validate(), Err(ConfigError::InvalidFaultRate { .. })));
        let config = SesSimConfig {
            throttle_rate: f64::NAN,
            ..SesSimConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn the_access_key_comes_from_the_credential_scope() {
        let mut headers = HeaderMap::new();
        assert_eq!(access_key_id(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIDX/20261124/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=ab",
            ),
        );
        assert_eq!(access_key_id(&headers), Some("AKIDX"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(access_key_id(&headers), None);
    }

    #[test]
    fn the_mailbox_simulator_addresses_pick_the_events() {
        let email = AcceptedEmail {
            message_id: "0100abc".into(),
            from: "news@example.com".into(),
            destination: vec![
                "ok@example.com".into(),
                "bounce@simulator.amazonses.com".into(),
                "complaint@simulator.amazonses.com".into(),
            ],
            tags: BTreeMap::new(),
            sent_at: OffsetDateTime::now_utc(),
        };
        let kinds: Vec<String> = events(&email)
            .iter()
            .map(|event| event["eventType"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, ["Send", "Delivery", "Bounce", "Complaint"]);
        let delivered_only = AcceptedEmail {
            destination: vec!["ok@example.com".into()],
            ..email
        };
        assert_eq!(events(&delivered_only).len(), 2);
    }

    #[test]
    fn the_test_key_parses_and_timestamps_have_milliseconds() {
        assert!(RsaPrivateKey::from_pkcs8_pem(TEST_SIGNING_KEY_PEM).is_ok());
        let at = time::macros::datetime!(2026-11-24 07:50:41.123456 UTC);
        assert_eq!(timestamp(at), "2026-11-24T07:50:41.123Z");
    }
}
