//! An HTTP client for Twilio's Messages API: "create message" and "fetch message", with every
//! answer (or its absence) mapped to what the dispatcher may safely do next.
//!
//! # Transient or unknown: the rule
//!
//! Sending a message twice costs the tenant money and annoys the recipient, so a failure only
//! counts as transient (safe to send again) when Twilio cannot have processed the request:
//!
//! | what happened | outcome |
//! |---|---|
//! | 2xx with a `sid` | [`CreateOutcome::Accepted`] |
//! | 2xx whose body is lost or has no `sid` (Twilio probably created it) | [`CreateOutcome::Unknown`] |
//! | 429 (code 20429: not processed, per Twilio) | [`CreateOutcome::Transient`], honouring `Retry-After` |
//! | 503 and other 5xx except 500, 502 and 504 (Twilio did not take the request) | [`CreateOutcome::Transient`], honouring `Retry-After` |
//! | 500, 502, 504 (an error inside Twilio or a gateway in front of it, after the request may have been processed) | [`CreateOutcome::Unknown`] |
//! | any other status: its JSON `code` through [`classify`] (no code: 401 needs attention, else permanent) | [`CreateOutcome::Transient`] for transient codes, else [`CreateOutcome::Rejected`] |
//! | reqwest says `is_connect()` (DNS, TCP connect, TLS handshake, connect timeout) | [`CreateOutcome::Transient`] |
//! | reqwest says `is_builder()` (the request was never built, so never sent) | [`CreateOutcome::Transient`] |
//! | any other transport error: request timeout, reset, connection closed mid-exchange | [`CreateOutcome::Unknown`] |
//!
//! reqwest cannot tell whether the request bytes reached the socket, so the rule is
//! conservative: only a failure *while connecting* proves nothing was sent. Once a connection
//! exists, any failure may have happened after Twilio read the request. (hyper itself
//! re-sends, on a new connection, a request whose pooled connection turned out closed before
//! anything was written; that case never reaches us.) The connect timeout must be shorter than
//! the request timeout ([`TwilioClient::new`] checks), so that a slow connect ends as a connect
//! error and not as the request timeout, which would be reported as unknown.
//!
//! Redirects are not followed (a redirected POST would turn into a GET): a 3xx is an error
//! status like any other.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;

use super::errors::{ErrorClass, classify};

/// Where Twilio's REST API lives.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";
/// Where Twilio's Trust Hub API lives (its paths start with `/v1`).
pub const DEFAULT_TRUSTHUB_BASE_URL: &str = "https://trusthub.twilio.com";
/// Where Twilio's Messaging API (A2P brands, Messaging Services, campaigns) lives (paths start with `/v1`).
pub const DEFAULT_MESSAGING_BASE_URL: &str = "https://messaging.twilio.com";
/// Where Twilio's Content API (message templates and their WhatsApp approvals) lives.
pub const DEFAULT_CONTENT_BASE_URL: &str = "https://content.twilio.com";
/// The Messages API version in every path.
pub const API_VERSION: &str = "2010-04-01";
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

const USER_AGENT: &str = concat!("engageninja-dispatch/", env!("CARGO_PKG_VERSION"));
pub(crate) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// An invalid client configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL does not parse or is not an `http`/`https` URL with a host.
    #[error("invalid twilio base url {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connect timeout is not shorter than the request timeout.
    #[error("the connect timeout ({connect:?}) must be shorter than the request timeout ({request:?})")]
    Timeouts {
        /// The connect timeout.
        connect: Duration,
        /// The request timeout.
        request: Duration,
    },
    /// reqwest could not build its client (TLS setup).
    #[error("could not build the http client")]
    Build(#[source] reqwest::Error),
}

/// How a [`TwilioClient`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioClientSettings {
    /// Scheme, host and port (and an optional path prefix) of the API; tests point it at a
    /// local server.
    pub base_url: String,
    /// Base URL of the Trust Hub API (customer profiles, trust products, end users, documents).
    pub trusthub_base_url: String,
    /// Base URL of the Messaging API (A2P brand registrations, Messaging Services, campaigns).
    pub messaging_base_url: String,
    /// Base URL of the Content API (templates and their WhatsApp approvals).
    pub content_base_url: String,
    /// The longest wait for DNS, TCP connect and the TLS handshake.
    pub connect_timeout: Duration,
    /// The longest wait for a whole exchange, from connecting to the last byte of the answer.
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays in the pool.
    pub pool_idle_timeout: Duration,
    /// The most idle keep-alive connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for TwilioClientSettings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            trusthub_base_url: DEFAULT_TRUSTHUB_BASE_URL.to_owned(),
            messaging_base_url: DEFAULT_MESSAGING_BASE_URL.to_owned(),
            content_base_url: DEFAULT_CONTENT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
        }
    }
}

impl From<&crate::config::TwilioSettings> for TwilioClientSettings {
    /// The client's settings from the process's `[providers.twilio]`.
    fn from(settings: &crate::config::TwilioSettings) -> Self {
        Self {
            base_url: settings.api_url.clone(),
            trusthub_base_url: settings.trusthub_url.clone(),
            messaging_base_url: settings.messaging_url.clone(),
            content_base_url: settings.content_url.clone(),
            connect_timeout: Duration::from_millis(settings.connect_timeout_ms),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            ..Self::default()
        }
    }
}

impl TwilioClientSettings {
    /// The default settings with all four APIs (REST, Trust Hub, Messaging, Content) at
    /// `base_url`, as a simulator serves them.
    pub fn all_at(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into();
        Self {
            trusthub_base_url: base_url.clone(),
            messaging_base_url: base_url.clone(),
            content_base_url: base_url.clone(),
            base_url,
            ..Self::default()
        }
    }
}

/// A Twilio account's API credentials; `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct TwilioAccount {
    /// The account SID (`AC...`): the Basic auth user name and part of every path.
    pub account_sid: String,
    /// The account's auth token: the Basic auth password.
    pub auth_token: SecretString,
}

impl TwilioAccount {
    /// An account from its SID and auth token.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<SecretString>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
        }
    }
}

/// A refusal from Twilio: the HTTP status and what its JSON error body said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub http_status: u16,
    /// Twilio's error code, when the body had one.
    pub code: Option<u32>,
    /// Twilio's explanation.
    pub message: Option<String>,
    /// The documentation link Twilio gave.
    pub more_info: Option<String>,
    /// What to do about it.
    pub class: ErrorClass,
}

impl ApiError {
    /// Reads an error answer; a body that is not Twilio's JSON error leaves the code empty.
    pub(crate) fn from_response(status: StatusCode, body: Option<&[u8]>) -> Self {
        let parsed = body.and_then(|body| serde_json::from_slice::<ErrorBody>(body).ok());
        let code = parsed
            .as_ref()
            .and_then(|error| error.code.as_ref())
            .and_then(code_from_json);
        let class = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            ErrorClass::Transient
        } else if let Some(code) = code {
            classify(code)
        } else if status == StatusCode::UNAUTHORIZED {
            ErrorClass::NeedsAttention
        } else {
            ErrorClass::Permanent
        };
        let (message, more_info) = parsed.map_or((None, None), |error| (error.message, error.more_info));
        Self {
            http_status: status.as_u16(),
            code,
            message,
            more_info,
            class,
        }
    }

    /// The code to record: Twilio's code (`"21211"`), else the HTTP status (`"HTTP_403"`).
    pub fn code_label(&self) -> String {
        match self.code {
            Some(code) => code.to_string(),
            None => format!("HTTP_{}", self.http_status),
        }
    }

    /// The stable label of a transient outcome (`TWILIO_20429`, `TWILIO_HTTP_503`).
    fn reason(&self) -> String {
        format!("TWILIO_{}", self.code_label())
    }
}

/// What came of a create-message request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Twilio created the message.
    Accepted {
        /// Its SID (`SM...`/`MM...`), the key of its status callbacks.
        sid: String,
    },
    /// Twilio did not process the request: safe to send again later.
    Transient {
        /// A stable, low-cardinality label (`TWILIO_20429`, `TWILIO_HTTP_503`, `TWILIO_CONNECT`).
        reason: String,
        /// How long Twilio asked us to wait (`Retry-After`, in seconds), at most [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
    },
    /// Twilio refused the message; its class is never [`ErrorClass::Transient`].
    Rejected(ApiError),
    /// The request may have been processed but no usable answer came: never resend blindly.
    Unknown {
        /// A stable label (`TWILIO_TIMEOUT`, `TWILIO_CONNECTION_LOST`, `TWILIO_HTTP_504`, ...).
        reason: String,
    },
}

/// A message as Twilio reports it when fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// Its SID.
    pub sid: String,
    /// Its status, as Twilio spells it (`delivered`, `undelivered`, ...).
    pub status: String,
    /// The error code of a failed message.
    pub error_code: Option<u32>,
    /// Twilio's explanation of that error.
    pub error_message: Option<String>,
}

/// What came of a fetch-message request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The message as Twilio has it.
    Found(FetchedMessage),
    /// Twilio has no such message in this account (HTTP 404).
    NotFound,
    /// Twilio could not be asked or gave no usable answer.
    Unavailable {
        /// A stable label (`TWILIO_TIMEOUT`, `TWILIO_HTTP_503`, `TWILIO_20003`, ...).
        reason: String,
    },
}

/// One message of a list page: what reconciliation reads to find a message it has no SID for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMessage {
    /// Its SID.
    pub sid: String,
    /// Its status, as Twilio spells it.
    pub status: String,
    /// `outbound-api`, `inbound`, ...
    pub direction: String,
    /// When Twilio created it.
    pub date_created: Option<OffsetDateTime>,
    /// The error code of a failed message.
    pub error_code: Option<u32>,
}

/// What came of a list-messages request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOutcome {
    /// The newest messages that match, newest first, and whether older ones follow on a
    /// next page.
    Page {
        /// The messages of this page.
        messages: Vec<ListedMessage>,
        /// Whether there is a next page.
        more: bool,
    },
    /// Twilio could not be asked or gave no usable answer.
    Unavailable {
        /// A stable label, as [`FetchOutcome::Unavailable`] has.
        reason: String,
    },
}

/// Twilio's list-messages page (the fields read).
#[derive(Deserialize)]
struct ListPage {
    messages: Vec<ListedResource>,
    next_page_uri: Option<String>,
}

/// A message of a list page (the fields read).
#[derive(Deserialize)]
struct ListedResource {
    sid: String,
    status: String,
    direction: String,
    date_created: Option<String>,
    error_code: Option<serde_json::Value>,
}

/// Twilio's JSON error body.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<serde_json::Value>,
    message: Option<String>,
    more_info: Option<String>,
}

/// The part of Twilio's message resource the dispatcher reads.
#[derive(Deserialize)]
struct MessageResource {
    sid: String,
    status: Option<String>,
    error_code: Option<serde_json::Value>,
    error_message: Option<String>,
}

/// A client for Twilio's Messages API. It holds one pooled `reqwest::Client` (HTTP/1.1
/// keep-alive) for every account; credentials travel with each call. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) trusthub: Url,
    pub(crate) messaging: Url,
    pub(crate) content: Url,
}

impl TwilioClient {
    /// A client with these settings.
    pub fn new(settings: &TwilioClientSettings) -> Result<Self, ClientError> {
        let base = parse_base_url(&settings.base_url)?;
        let trusthub = parse_base_url(&settings.trusthub_base_url)?;
        let messaging = parse_base_url(&settings.messaging_base_url)?;
        let content = parse_base_url(&settings.content_base_url)?;
        if settings.connect_timeout >= settings.request_timeout {
            return Err(ClientError::Timeouts {
                connect: settings.connect_timeout,
                request: settings.request_timeout,
            });
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .tcp_keepalive(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self {
            http,
            base,
            trusthub,
            messaging,
            content,
        })
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Creates a message: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json` with
    /// `form` (an `application/x-www-form-urlencoded` body, see
    /// [`super::create_message_form`]). See the module docs for how each
    /// answer maps.
    pub async fn create_message(&self, account: &TwilioAccount, form: String) -> CreateOutcome {
        let request = self
            .http
            .post(self.url(&account.account_sid, None))
            .basic_auth(&account.account_sid, Some(account.auth_token.expose_secret()))
            .header(CONTENT_TYPE, FORM_CONTENT_TYPE)
            .header(ACCEPT, "application/json")
            .body(form);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let outcome = create_transport_outcome(&error);
                tracing::debug!(account_sid = %account.account_sid, error = %error, ?outcome, "twilio create request failed");
                return outcome;
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(body) => Some(body),
            Err(error) => {
                tracing::debug!(account_sid = %account.account_sid, %status, error = %error, "twilio create answer body lost");
                None
            }
        };
        create_outcome(status, retry_after, body.as_deref())
    }

    /// Fetches a message by SID: `GET {base}/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`.
    pub async fn fetch_message(&self, account: &TwilioAccount, sid: &str) -> FetchOutcome {
        let request = self
            .http
            .get(self.url(&account.account_sid, Some(sid)))
            .basic_auth(&account.account_sid, Some(account.auth_token.expose_secret()))
            .header(ACCEPT, "application/json");
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(account_sid = %account.account_sid, error = %error, "twilio fetch request failed");
                return FetchOutcome::Unavailable {
                    reason: transport_label(&error).to_owned(),
                };
            }
        };
        let status = response.status();
        match response.bytes().await {
            Ok(body) => fetch_outcome(status, Some(&body)),
            Err(error) => {
                tracing::debug!(account_sid = %account.account_sid, %status, error = %error, "twilio fetch answer body lost");
                fetch_outcome(status, None)
            }
        }
    }

    /// The Messages collection of an account, or one message of it; every part is
    /// percent-encoded as one path segment.
    /// Lists the account's messages to `to`, newest first: `GET
    /// {base}/2010-04-01/Accounts/{AccountSid}/Messages.json?To=...&PageSize=...` (reconciliation
    /// finding a message whose create answer was lost).
    pub async fn list_messages_to(&self, account: &TwilioAccount, to: &str, page_size: u32) -> ListOutcome {
        let mut url = self.url(&account.account_sid, None);
        url.query_pairs_mut()
            .append_pair("To", to)
            .append_pair("PageSize", &page_size.clamp(1, 1_000).to_string());
        let request = self
            .http
            .get(url)
            .basic_auth(&account.account_sid, Some(account.auth_token.expose_secret()))
            .header(ACCEPT, "application/json");
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(account_sid = %account.account_sid, error = %error, "twilio list request failed");
                return ListOutcome::Unavailable {
                    reason: transport_label(&error).to_owned(),
                };
            }
        };
        let status = response.status();
        let body = response.bytes().await.ok();
        list_outcome(status, body.as_deref())
    }

    fn url(&self, account_sid: &str, message_sid: Option<&str>) -> Url {
        let mut url = self.base.clone();
        // `parse_base_url` only accepts URLs that can be a base, so this always succeeds.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend([API_VERSION, "Accounts", account_sid]);
            match message_sid {
                Some(sid) => segments.extend(["Messages", &format!("{sid}.json")]),
                None => segments.push("Messages.json"),
            };
        }
        url
    }
}

/// Parses and checks the base URL: `http` or `https`, with a host, no query or fragment.
fn parse_base_url(raw: &str) -> Result<Url, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidBaseUrl {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(raw).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(invalid("the url must have a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("the url must have no query or fragment"));
    }
    Ok(url)
}

/// The outcome of a create request that got no answer; see the module docs.
fn create_transport_outcome(error: &reqwest::Error) -> CreateOutcome {
    if error.is_connect() || error.is_builder() {
        CreateOutcome::Transient {
            reason: transport_label(error).to_owned(),
            retry_after: None,
        }
    } else {
        CreateOutcome::Unknown {
            reason: transport_label(error).to_owned(),
        }
    }
}

/// A stable label for a transport error.
pub(crate) fn transport_label(error: &reqwest::Error) -> &'static str {
    if error.is_connect() {
        "TWILIO_CONNECT"
    } else if error.is_builder() {
        "TWILIO_REQUEST_BUILD"
    } else if error.is_timeout() {
        "TWILIO_TIMEOUT"
    } else {
        "TWILIO_CONNECTION_LOST"
    }
}

/// Maps a create answer; `body` is `None` when it could not be read.
fn create_outcome(status: StatusCode, retry_after: Option<Duration>, body: Option<&[u8]>) -> CreateOutcome {
    if status.is_success() {
        let sid = body
            .and_then(|body| serde_json::from_slice::<MessageResource>(body).ok())
            .map(|message| message.sid)
            .filter(|sid| !sid.is_empty());
        return match (sid, body) {
            (Some(sid), _) => CreateOutcome::Accepted { sid },
            (None, Some(_)) => CreateOutcome::Unknown {
                reason: "TWILIO_RESPONSE_UNREADABLE".to_owned(),
            },
            (None, None) => CreateOutcome::Unknown {
                reason: "TWILIO_RESPONSE_LOST".to_owned(),
            },
        };
    }
    // Past Twilio's front door: it may have created the message before failing, so sending it
    // again could send it twice.
    if [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::GATEWAY_TIMEOUT,
    ]
    .contains(&status)
    {
        return CreateOutcome::Unknown {
            reason: format!("TWILIO_HTTP_{}", status.as_u16()),
        };
    }
    let error = ApiError::from_response(status, body);
    if error.class.is_retryable() {
        CreateOutcome::Transient {
            reason: error.reason(),
            retry_after,
        }
    } else {
        CreateOutcome::Rejected(error)
    }
}

/// Maps a fetch answer; `body` is `None` when it could not be read.
fn fetch_outcome(status: StatusCode, body: Option<&[u8]>) -> FetchOutcome {
    if status.is_success() {
        let message = body.and_then(|body| serde_json::from_slice::<MessageResource>(body).ok());
        return match message {
            Some(MessageResource {
                sid,
                status: Some(status),
                error_code,
                error_message,
            }) => FetchOutcome::Found(FetchedMessage {
                sid,
                status,
                error_code: error_code.as_ref().and_then(code_from_json),
                error_message,
            }),
            _ => FetchOutcome::Unavailable {
                reason: "TWILIO_RESPONSE_UNREADABLE".to_owned(),
            },
        };
    }
    if status == StatusCode::NOT_FOUND {
        return FetchOutcome::NotFound;
    }
    FetchOutcome::Unavailable {
        reason: ApiError::from_response(status, body).reason(),
    }
}

fn list_outcome(status: StatusCode, body: Option<&[u8]>) -> ListOutcome {
    if !status.is_success() {
        return ListOutcome::Unavailable {
            reason: ApiError::from_response(status, body).reason(),
        };
    }
    let Some(page) = body.and_then(|body| serde_json::from_slice::<ListPage>(body).ok()) else {
        return ListOutcome::Unavailable {
            reason: "TWILIO_RESPONSE_UNREADABLE".to_owned(),
        };
    };
    let messages = page
        .messages
        .into_iter()
        .map(|message| ListedMessage {
            sid: message.sid,
            status: message.status,
            direction: message.direction,
            date_created: message
                .date_created
                .and_then(|date| OffsetDateTime::parse(&date, &time::format_description::well_known::Rfc2822).ok()),
            error_code: message.error_code.as_ref().and_then(code_from_json),
        })
        .collect();
    ListOutcome::Page {
        messages,
        more: page.next_page_uri.is_some(),
    }
}

/// An error code given as a JSON number or a numeric string.
pub(crate) fn code_from_json(value: &serde_json::Value) -> Option<u32> {
    match value {
        serde_json::Value::Number(number) => number.as_u64().and_then(|code| u32::try_from(code).ok()),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// `Retry-After` in its delay-seconds form (the HTTP-date form is ignored), at most
/// [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn json(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn rejected(outcome: CreateOutcome) -> ApiError {
        match outcome {
            CreateOutcome::Rejected(error) => error,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_takes_seconds_only_and_is_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("18446744073709551615"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn success_needs_a_sid() {
        let body = json(serde_json::json!({"sid": "SM123", "status": "queued"}));
        assert_eq!(
            create_outcome(StatusCode::CREATED, None, Some(&body)),
            CreateOutcome::Accepted { sid: "SM123".into() }
        );
        for body in [b"not json".to_vec(), json(serde_json::json!({"sid": ""}))] {
            assert_eq!(
                create_outcome(StatusCode::CREATED, None, Some(&body)),
                CreateOutcome::Unknown {
                    reason: "TWILIO_RESPONSE_UNREADABLE".into()
                }
            );
        }
        assert_eq!(
            create_outcome(StatusCode::CREATED, None, None),
            CreateOutcome::Unknown {
                reason: "TWILIO_RESPONSE_LOST".into()
            }
        );
    }

    #[test]
    fn throttling_and_unavailability_are_transient_but_errors_past_the_door_are_unknown() {
        let wait = Some(Duration::from_secs(2));
        let body = json(serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429}));
        assert_eq!(
            create_outcome(StatusCode::TOO_MANY_REQUESTS, wait, Some(&body)),
            CreateOutcome::Transient {
                reason: "TWILIO_20429".into(),
                retry_after: wait
            }
        );
        assert_eq!(
            create_outcome(StatusCode::SERVICE_UNAVAILABLE, None, Some(b"<html>oops</html>")),
            CreateOutcome::Transient {
                reason: "TWILIO_HTTP_503".into(),
                retry_after: None
            }
        );
        for status in [500, 502, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                create_outcome(status, None, Some(b"<html>oops</html>")),
                CreateOutcome::Unknown {
                    reason: format!("TWILIO_HTTP_{}", status.as_u16()),
                }
            );
        }
    }

    #[test]
    fn client_errors_are_classified_by_code() {
        let body = |code: serde_json::Value| {
            json(
                serde_json::json!({"code": code, "message": "m", "more_info": "https://www.twilio.com/docs/errors/x", "status": 400}),
            )
        };
        let error = rejected(create_outcome(StatusCode::BAD_REQUEST, None, Some(&body(21211.into()))));
        assert_eq!((error.code, error.class), (Some(21211), ErrorClass::Permanent));
        assert_eq!(error.code_label(), "21211");
        assert_eq!(error.more_info.as_deref(), Some("https://www.twilio.com/docs/errors/x"));
        let error = rejected(create_outcome(
            StatusCode::BAD_REQUEST,
            None,
            Some(&body("21610".into())),
        ));
        assert_eq!((error.code, error.class), (Some(21610), ErrorClass::SuppressRecipient));
        assert_eq!(
            create_outcome(StatusCode::BAD_REQUEST, None, Some(&body(21611.into()))),
            CreateOutcome::Transient {
                reason: "TWILIO_21611".into(),
                retry_after: None
            }
        );
    }

    #[test]
    fn an_error_without_a_code_is_labelled_by_its_status() {
        let error = rejected(create_outcome(StatusCode::UNAUTHORIZED, None, Some(b"")));
        assert_eq!(
            (error.code_label(), error.class),
            ("HTTP_401".to_owned(), ErrorClass::NeedsAttention)
        );
        let error = rejected(create_outcome(StatusCode::FOUND, None, None));
        assert_eq!(
            (error.code_label(), error.class),
            ("HTTP_302".to_owned(), ErrorClass::Permanent)
        );
    }

    #[test]
    fn fetch_answers_map() {
        let body = json(
            serde_json::json!({"sid": "SM1", "status": "undelivered", "error_code": 30003, "error_message": "Unreachable"}),
        );
        assert_eq!(
            fetch_outcome(StatusCode::OK, Some(&body)),
            FetchOutcome::Found(FetchedMessage {
                sid: "SM1".into(),
                status: "undelivered".into(),
                error_code: Some(30003),
                error_message: Some("Unreachable".into()),
            })
        );
        let body = json(serde_json::json!({"sid": "SM1", "status": "delivered", "error_code": null}));
        assert!(matches!(
            fetch_outcome(StatusCode::OK, Some(&body)),
            FetchOutcome::Found(FetchedMessage { error_code: None, .. })
        ));
        assert_eq!(fetch_outcome(StatusCode::NOT_FOUND, None), FetchOutcome::NotFound);
        assert_eq!(
            fetch_outcome(StatusCode::SERVICE_UNAVAILABLE, None),
            FetchOutcome::Unavailable {
                reason: "TWILIO_HTTP_503".into()
            }
        );
        assert!(matches!(
            fetch_outcome(StatusCode::OK, Some(b"{}")),
            FetchOutcome::Unavailable { .. }
        ));
    }

    #[test]
    fn base_urls_are_checked() {
        for bad in [
            "",
            "not a url",
            "ftp://api.twilio.com",
            "mailto:x@example.com",
            "https://api.twilio.com/?a=1",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
        assert!(parse_base_url("http://127.0.0.1:8080/prefix/").is_ok());
    }

    #[test]
    fn paths_are_built_segment_by_segment() {
        let client = TwilioClient::new(&TwilioClientSettings {
            base_url: "http://127.0.0.1:9/prefix/".into(),
            ..TwilioClientSettings::default()
        })
        .unwrap();
        assert_eq!(
            client.url("AC1", None).as_str(),
            "http://127.0.0.1:9/prefix/2010-04-01/Accounts/AC1/Messages.json"
        );
        assert_eq!(
            client.url("AC1", Some("SM/../x?y")).as_str(),
            "http://127.0.0.1:9/prefix/2010-04-01/Accounts/AC1/Messages/SM%2F..%2Fx%3Fy.json"
        );
    }

    #[test]
    fn the_default_client_builds_and_timeouts_are_checked() {
        assert!(TwilioClient::new(&TwilioClientSettings::default()).is_ok());
        let settings = TwilioClientSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ..TwilioClientSettings::default()
        };
        assert!(matches!(
            TwilioClient::new(&settings),
            Err(ClientError::Timeouts { .. })
        ));
    }
}
