//! The Twilio routes: create and fetch a message, as much of Twilio's behaviour as our client
//! relies on.
//!
//! # Checks and their codes (in this order)
//!
//! | check | HTTP | code |
//! |---|---|---|
//! | Basic auth of a configured account or a subaccount, and the path's `AccountSid` is that account | 401 | 20003 |
//! | fewer than `concurrency` create requests of the account in progress (answer has `Retry-After: 1`) | 429 | 20429 |
//! | `To` present | 400 | 21604 |
//! | `To` is E.164 or `whatsapp:+E164` | 400 | 21211 |
//! | exactly one of `From` and `MessagingServiceSid` (Twilio itself accepts both and uses the service; our client never sends both, so the simulator is strict) | 400 | 21603 |
//! | `From` is E.164 or `whatsapp:+E164` | 400 | 21212 |
//! | `MessagingServiceSid` is `MG` + 32 hex digits (code chosen) | 400 | 21705 |
//! | `From` and `To` both `whatsapp:` forms or neither | 400 | 21910 |
//! | not both `Body` and `ContentSid` (Twilio ignores `Body` then; code chosen) | 400 | 21619 |
//! | `Body` or `ContentSid` present | 400 | 21602 |
//! | `Body` at most 1,600 characters | 400 | 21617 |
//! | `ContentSid` is `HX` + 32 hex digits | 400 | 21656 |
//! | `StatusCallback`, if present, is an `http(s)` URL | 400 | 21609 |
//! | injected server error | 503 | 20503 |
//!
//! A fetch of a message that does not exist in the account is a 404 with code 20404.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::PhoneNumber;
use common::segments::count_segments;
use common::twilio::status::TwilioStatus;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use tokio::time::Instant;

use super::Shared;
use super::callbacks::{Job, Step};
use super::state::{Fault, StoredMessage};

/// The API version in every path.
const API_VERSION: &str = "2010-04-01";
/// The longest `Body`, in characters.
pub const MAX_BODY_CHARS: usize = 1_600;

/// A refusal, answered as Twilio's JSON error body `{code, message, more_info, status}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} (code {code}): {message}")]
pub struct TwilioError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Twilio's error code.
    pub code: u32,
    /// The explanation.
    pub message: String,
}

impl TwilioError {
    pub(crate) fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }
}

impl IntoResponse for TwilioError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
        match self.status {
            StatusCode::TOO_MANY_REQUESTS => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Twilio API\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// A create request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateRequest {
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: Option<String>,
    pub content_sid: Option<String>,
    pub status_callback: Option<String>,
    pub whatsapp: bool,
}

impl CreateRequest {
    /// The sender whose rate is watched: `From`, else the Messaging Service.
    fn sender(&self) -> &str {
        self.from
            .as_deref()
            .or(self.messaging_service_sid.as_deref())
            .unwrap_or_default()
    }
}

/// Whether `raw` is an address Twilio takes: `Some(true)` for `whatsapp:+E164`, `Some(false)`
/// for E.164, `None` otherwise.
fn address_kind(raw: &str) -> Option<bool> {
    match raw.strip_prefix("whatsapp:") {
        Some(number) => PhoneNumber::parse(number).ok().map(|_| true),
        None => PhoneNumber::parse(raw).ok().map(|_| false),
    }
}

/// `prefix` followed by 32 hex digits.
pub(crate) fn is_sid(raw: &str, prefix: &str) -> bool {
    raw.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

/// Checks a create request's form; see the module docs for the order and the codes.
pub(crate) fn validate(form: &[(String, String)]) -> Result<CreateRequest, TwilioError> {
    let param = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    let to = param("To").ok_or_else(|| TwilioError::bad_request(21604, "A 'To' phone number is required."))?;
    let to_whatsapp = address_kind(&to)
        .ok_or_else(|| TwilioError::bad_request(21211, format!("The 'To' number {to} is not a valid phone number.")))?;
    let from = param("From");
    let messaging_service_sid = param("MessagingServiceSid");
    match (&from, &messaging_service_sid) {
        (Some(_), Some(_)) => {
            return Err(TwilioError::bad_request(
                21603,
                "Exactly one of 'From' and 'MessagingServiceSid' is allowed.",
            ));
        }
        (None, None) => {
            return Err(TwilioError::bad_request(
                21603,
                "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
            ));
        }
        _ => {}
    }
    if let Some(from) = &from {
        let from_whatsapp = address_kind(from).ok_or_else(|| {
            TwilioError::bad_request(21212, format!("The 'From' number {from} is not a valid phone number."))
        })?;
        if from_whatsapp != to_whatsapp {
            return Err(TwilioError::bad_request(
                21910,
                "Invalid From and To pair. From and To should be of the same channel.",
            ));
        }
    }
    if let Some(service) = &messaging_service_sid
        && !is_sid(service, "MG")
    {
        return Err(TwilioError::bad_request(
            21705,
            format!("The Messaging Service {service} is invalid."),
        ));
    }
    let body = param("Body");
    let content_sid = param("ContentSid");
    match (&body, &content_sid) {
        (Some(_), Some(_)) => {
            return Err(TwilioError::bad_request(
                21619,
                "'Body' must not be given with 'ContentSid'.",
            ));
        }
        (None, None) => return Err(TwilioError::bad_request(21602, "Message body is required.")),
        (Some(body), None) if body.chars().count() > MAX_BODY_CHARS => {
            return Err(TwilioError::bad_request(
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            ));
        }
        (None, Some(sid)) if !is_sid(sid, "HX") => {
            return Err(TwilioError::bad_request(
                21656,
                format!("The ContentSid {sid} is invalid."),
            ));
        }
        _ => {}
    }
    let status_callback = param("StatusCallback");
    if let Some(url) = &status_callback {
        let valid = reqwest::Url::parse(url)
            .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some());
        if !valid {
            return Err(TwilioError::bad_request(
                21609,
                format!("The StatusCallback URL {url} is not valid."),
            ));
        }
    }
    Ok(CreateRequest {
        to,
        from,
        messaging_service_sid,
        body,
        content_sid,
        status_callback,
        whatsapp: to_whatsapp,
    })
}

/// The account of a Basic `Authorization` header, if its token matches a configured account
/// (or a subaccount created through the onboarding routes) and it is the path's account.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap, path_account: &str) -> Result<String, TwilioError> {
    let user = authenticated_account(shared, headers)?;
    if user != path_account {
        return Err(TwilioError::unauthorized());
    }
    Ok(user)
}

/// The account of a Basic `Authorization` header, if its token matches a configured account or
/// a subaccount.
pub(crate) fn authenticated_account(shared: &Shared, headers: &HeaderMap) -> Result<String, TwilioError> {
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .ok_or_else(TwilioError::unauthorized)?;
    let (user, token) = credentials.split_once(':').ok_or_else(TwilioError::unauthorized)?;
    let known = shared.state.token_of(user).is_some_and(|expected| expected == token);
    if !known {
        return Err(TwilioError::unauthorized());
    }
    Ok(user.to_owned())
}

fn rfc2822(at: OffsetDateTime) -> String {
    at.format(&Rfc2822).unwrap_or_default()
}

/// Twilio's JSON message resource.
fn resource(message: &StoredMessage) -> serde_json::Value {
    let uri = format!(
        "/{API_VERSION}/Accounts/{}/Messages/{}.json",
        message.account_sid, message.sid
    );
    json!({
        "account_sid": message.account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": rfc2822(message.date_created),
        "date_sent": message.date_sent.map(rfc2822),
        "date_updated": rfc2822(message.date_updated),
        "direction": "outbound-api",
        "error_code": message.error_code,
        "error_message": message.error_message(),
        "from": message.from,
        "messaging_service_sid": message.messaging_service_sid,
        "num_media": "0",
        "num_segments": message.num_segments.to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status.as_str(),
        "subresource_uris": {
            "media": format!("/{API_VERSION}/Accounts/{}/Messages/{}/Media.json", message.account_sid, message.sid),
        },
        "to": message.to,
        "uri": uri,
    })
}

/// Sleeps `duration`, or less if the simulator stops; true when the whole time passed.
async fn wait(shared: &Shared, duration: Duration) -> bool {
    if duration.is_zero() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = shared.cancel.cancelled() => false,
    }
}

/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.
pub(crate) async fn create(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    shared.state.count_received();
    match create_inner(&shared, &account_sid, &headers, &body, arrived).await {
        Ok(response) => response,
        Err(error) => {
            shared.state.count_rejected(error.code);
            tracing::debug!(account_sid, code = error.code, status = %error.status, "simulator refused a create request");
            error.into_response()
        }
    }
}

async fn create_inner(
    shared: &Shared,
    path_account: &str,
    headers: &HeaderMap,
    body: &[u8],
    arrived: Instant,
) -> Result<Response, TwilioError> {
    let account_sid = authenticate(shared, headers, path_account)?;
    let _slot = shared
        .slots
        .get(&account_sid)
        .cloned()
        .or_else(|| shared.state.onboarding.subaccount_slots(&account_sid))
        .and_then(|slots| slots.try_acquire_owned().ok())
        .ok_or_else(|| {
            TwilioError::new(
                StatusCode::TOO_MANY_REQUESTS,
                20429,
                "Too Many Requests: the account has too many concurrent requests.",
            )
        })?;
    if !wait(shared, shared.state.config.latency).await {
        return Err(TwilioError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
        ));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let request = validate(&form)?;
    let fault = shared.state.draw_fault();
    if fault == Fault::ServerError {
        return Err(TwilioError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let num_segments = match (&request.body, request.whatsapp) {
        (Some(body), false) => count_segments(body).segments,
        _ => 1,
    };
    let sender = request.sender().to_owned();
    let message = StoredMessage {
        sid: shared.state.new_sid(),
        account_sid,
        to: request.to,
        from: request.from,
        status: if request.messaging_service_sid.is_some() {
            TwilioStatus::Accepted
        } else {
            TwilioStatus::Queued
        },
        messaging_service_sid: request.messaging_service_sid,
        body: request.body.unwrap_or_default(),
        num_segments,
        error_code: None,
        failure: match fault {
            Fault::Undelivered(code) => Some(code),
            _ => None,
        },
        whatsapp: request.whatsapp,
        status_callback: request.status_callback,
        date_created: now,
        date_sent: None,
        date_updated: now,
    };
    let answer = (StatusCode::CREATED, Json(resource(&message))).into_response();
    let sid = message.sid.clone();
    shared.state.insert(message, &sender, arrived);
    shared.scheduler.schedule(
        Job::Step {
            sid: sid.clone(),
            step: Step::Sent,
        },
        shared.state.config.timings.sent_after,
    );
    tracing::debug!(sid, sender, ?fault, "simulator created a message");
    if fault == Fault::Timeout {
        shared.state.count_timeout();
        wait(shared, shared.state.config.timeout_hold).await;
    }
    if fault == Fault::LostAnswer {
        shared.state.count_timeout();
        return Err(TwilioError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        ));
    }
    Ok(answer)
}

/// The most messages a list page holds (Twilio's `PageSize` maximum).
const MAX_PAGE_SIZE: usize = 1_000;

/// `GET /2010-04-01/Accounts/{AccountSid}/Messages.json`: the account's messages, newest first,
/// filtered by `To` and `From`, one page of `PageSize` (default 50) with `next_page_uri` when
/// more follow.
pub(crate) async fn list(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(account_sid): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    shared.state.count_fetch();
    let account = match authenticate(&shared, &headers, &account_sid) {
        Ok(account) => account,
        Err(error) => return error.into_response(),
    };
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let page_size = match param("PageSize").map(str::parse::<usize>) {
        None => 50,
        Some(Ok(size)) if (1..=MAX_PAGE_SIZE).contains(&size) => size,
        Some(_) => {
            return TwilioError::new(StatusCode::BAD_REQUEST, 20001, "Invalid PageSize").into_response();
        }
    };
    let (to, from) = (param("To"), param("From"));
    let matching = shared.state.messages_of(&account, |message| {
        to.is_none_or(|to| message.to == to) && from.is_none_or(|from| message.from.as_deref() == Some(from))
    });
    let uri = format!("/{API_VERSION}/Accounts/{account}/Messages.json?PageSize={page_size}");
    let next = (matching.len() > page_size).then(|| format!("{uri}&Page=1"));
    let messages: Vec<serde_json::Value> = matching.iter().take(page_size).map(resource).collect();
    Json(json!({
        "messages": messages,
        "page": 0,
        "page_size": page_size,
        "start": 0,
        "end": messages.len().saturating_sub(1),
        "first_page_uri": uri,
        "previous_page_uri": null,
        "next_page_uri": next,
        "uri": uri,
    }))
    .into_response()
}

/// `GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`.
pub(crate) async fn fetch(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((account_sid, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    shared.state.count_fetch();
    let path = format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{file}");
    let found = authenticate(&shared, &headers, &account_sid).and_then(|account| {
        file.strip_suffix(".json")
            .and_then(|sid| shared.state.message(sid))
            .filter(|message| message.account_sid == account)
            .ok_or_else(|| TwilioError::not_found(&path))
    });
    match found {
        Ok(message) => (StatusCode::OK, Json(resource(&message))).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Any other path: Twilio's 404.
pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    TwilioError::not_found(uri.path()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn code(pairs: &[(&str, &str)]) -> u32 {
        match validate(&form(pairs)) {
            Ok(request) => panic!("expected a refusal, got {request:?}"),
            Err(error) => error.code,
        }
    }

    const SMS: (&str, &str) = ("From", "+14155550199");
    const TO: (&str, &str) = ("To", "+14155550100");

    #[test]
    fn each_check_has_its_code() {
        assert_eq!(code(&[SMS, ("Body", "x")]), 21604);
        assert_eq!(code(&[("To", "12345"), SMS, ("Body", "x")]), 21211);
        assert_eq!(code(&[TO, ("Body", "x")]), 21603);
        let service = format!("MG{}", "a".repeat(32));
        assert_eq!(
            code(&[TO, SMS, ("MessagingServiceSid", &service), ("Body", "x")]),
            21603
        );
        assert_eq!(code(&[TO, ("From", "nope"), ("Body", "x")]), 21212);
        assert_eq!(code(&[TO, ("MessagingServiceSid", "MG1"), ("Body", "x")]), 21705);
        assert_eq!(code(&[TO, ("From", "whatsapp:+14155550199"), ("Body", "x")]), 21910);
        let content = format!("HX{}", "b".repeat(32));
        assert_eq!(code(&[TO, SMS, ("Body", "x"), ("ContentSid", &content)]), 21619);
        assert_eq!(code(&[TO, SMS]), 21602);
        assert_eq!(code(&[TO, SMS, ("Body", &"x".repeat(1601))]), 21617);
        assert_eq!(code(&[TO, SMS, ("ContentSid", "HX1")]), 21656);
        assert_eq!(code(&[TO, SMS, ("Body", "x"), ("StatusCallback", "ftp://x")]), 21609);
    }

    #[test]
    fn valid_requests_pass() {
        let request = validate(&form(&[TO, SMS, ("Body", &"é".repeat(1600))])).unwrap();
        assert!(!request.whatsapp);
        let content = format!("HX{}", "b".repeat(32));
        let request = validate(&form(&[
            ("To", "whatsapp:+14155550100"),
            ("From", "whatsapp:+14155550199"),
            ("ContentSid", &content),
        ]))
        .unwrap();
        assert!(request.whatsapp && request.body.is_none());
        let service = format!("MG{}", "a".repeat(32));
        let request = validate(&form(&[
            ("To", "whatsapp:+14155550100"),
            ("MessagingServiceSid", &service),
            ("Body", "x"),
        ]))
        .unwrap();
        assert_eq!(request.sender(), service);
    }
}
