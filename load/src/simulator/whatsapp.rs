//! WhatsApp senders (Messaging v2 `Channels/Senders`) and templates (the Content API with its
//! WhatsApp approvals), served with Twilio's paths and JSON bodies under the simulator's one
//! base URL, with the onboarding routes' gate and Basic auth.
//!
//! | path | what |
//! |---|---|
//! | `POST /v2/Channels/Senders` | register `whatsapp:+E164` (`CREATING`, 202); needs `configuration.waba_id` and `profile.name` |
//! | `GET /v2/Channels/Senders?Channel=whatsapp` | the account's senders |
//! | `GET`, `POST`, `DELETE /v2/Channels/Senders/{XE}` | fetch; update (`configuration.verification_code`); delete (204) |
//! | `POST /v1/Content`, `GET /v1/Content/{HX}`, `DELETE /v1/Content/{HX}` | create (201), fetch, delete (204) |
//! | `GET /v1/ContentAndApprovals` | every template with its approval requests |
//! | `POST /v1/Content/{HX}/ApprovalRequests/whatsapp` | submit for approval (`received`, 201) |
//! | `GET /v1/Content/{HX}/ApprovalRequests` | the WhatsApp approval |
//!
//! # Review
//!
//! `whatsapp_review_delay` after a sender's creation, it becomes `OFFLINE` if its display name
//! names WhatsApp or Twilio (Meta's display name rules), `ONLINE` if its number was bought in
//! the account, and `PENDING_VERIFICATION` otherwise; the code [`VERIFICATION_CODE`] makes it
//! `VERIFYING`, then `ONLINE` after the delay again (any other code: 400). A template
//! submitted for approval becomes `approved` after the delay, or `rejected` when its body
//! starts or ends with a variable (Meta's rule). Each change is posted as a form signed with
//! the account's token (`AccountSid`, `SenderSid`, `Status`; or `AccountSid`, `ContentSid`,
//! `ApprovalStatus`) to `/webhooks/twilio/sender-status` or `/webhooks/twilio/content-status`
//! under the base of the account's last sender's `status_callback_url` (or
//! [`OnboardingSimConfig::whatsapp_callback_base`](super::OnboardingSimConfig::whatsapp_callback_base)).
//! Twilio itself reports these changes through Event Streams; these forms are the simulator's own.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Shared;
use super::accounts::{Answer, conflict, invalid, iso, missing, new_sid, not_found, serve};
use super::callbacks::Job;
use super::registry::{AccountOwned, ContentRecord, SenderRecord, text};

/// The verification code Meta "sends" every simulated number.
pub const VERIFICATION_CODE: &str = "123456";

/// The routes, to merge into the simulator's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/Channels/Senders", post(create_sender).get(list_senders))
        .route(
            "/v2/Channels/Senders/{sid}",
            get(fetch_sender).post(update_sender).delete(delete_sender),
        )
        .route("/v1/Content", post(create_content))
        .route("/v1/Content/{sid}", get(fetch_content).delete(delete_content))
        .route("/v1/ContentAndApprovals", get(list_contents))
        .route("/v1/Content/{sid}/ApprovalRequests/whatsapp", post(submit_approval))
        .route("/v1/Content/{sid}/ApprovalRequests", get(fetch_approvals))
}

fn json_body(body: &[u8]) -> Result<Value, super::twilio::TwilioError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(invalid("body", "must be a JSON object")),
    }
}

/// The scheme, host and port of `url`.
fn base_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization())
}

fn sender_resource(sender: &SenderRecord) -> Value {
    let mut body = sender.body.clone();
    body["sid"] = json!(sender.sid);
    body["status"] = json!(sender.status);
    body["sender_id"] = json!(sender.sender_id);
    body["offline_reasons"] = if sender.offline_reasons.is_empty() {
        Value::Null
    } else {
        json!(sender.offline_reasons)
    };
    body["properties"] = json!({"quality_rating": "HIGH", "messaging_limit": "1K Customers/24hr"});
    body["url"] = json!(format!(
        "https://messaging.twilio.com/v2/Channels/Senders/{}",
        sender.sid
    ));
    body
}

/// `POST /v2/Channels/Senders`.
async fn create_sender(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &headers, |shared, account| {
        let request = json_body(&body)?;
        let sender_id = text(&request, "/sender_id").ok_or_else(|| missing("sender_id"))?;
        let number = sender_id
            .strip_prefix("whatsapp:")
            .filter(|number| common::rules::E164.matches(number))
            .ok_or_else(|| invalid("sender_id", "must be whatsapp:+E164"))?;
        text(&request, "/configuration/waba_id").ok_or_else(|| missing("configuration.waba_id"))?;
        text(&request, "/profile/name").ok_or_else(|| missing("profile.name"))?;
        let onboarding = &shared.state.onboarding;
        let mut inner = onboarding.inner();
        if inner
            .senders
            .values()
            .any(|sender| sender.account_sid == account && sender.sender_id == sender_id)
        {
            return Err(conflict(format!("{sender_id} is already a sender of this account")));
        }
        let sender = SenderRecord {
            sid: new_sid("XE"),
            account_sid: account.to_owned(),
            sender_id: format!("whatsapp:{number}"),
            status: "CREATING",
            callback_base: onboarding
                .config
                .whatsapp_callback_base
                .clone()
                .or_else(|| text(&request, "/webhook/status_callback_url").and_then(base_of)),
            body: request,
            offline_reasons: Vec::new(),
        };
        let answer = sender_resource(&sender);
        let sid = sender.sid.clone();
        inner.senders.insert(sid.clone(), sender);
        inner.stats.whatsapp_senders += 1;
        drop(inner);
        shared
            .scheduler
            .schedule(Job::Sender { sid }, onboarding.config.whatsapp_review_delay);
        Ok((StatusCode::ACCEPTED, answer))
    })
}

/// The query of `GET /v2/Channels/Senders`.
#[derive(Debug, Deserialize)]
struct SenderQuery {
    #[serde(rename = "Channel")]
    channel: Option<String>,
}

/// `GET /v2/Channels/Senders?Channel=whatsapp`.
async fn list_senders(
    AxumState(shared): AxumState<Arc<Shared>>,
    Query(query): Query<SenderQuery>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        if query.channel.as_deref() != Some("whatsapp") {
            return Err(missing("Channel"));
        }
        let inner = shared.state.onboarding.inner();
        let senders: Vec<Value> = inner
            .senders
            .values()
            .filter(|sender| sender.account_sid == account)
            .map(sender_resource)
            .collect();
        Ok((
            StatusCode::OK,
            json!({"senders": senders, "meta": {"page": 0, "page_size": 1000, "next_page_url": null}}),
        ))
    })
}

/// The record `sid` of `records` if it belongs to `account`; Twilio's 404 for `path` otherwise.
fn owned<'a, T: AccountOwned>(
    records: &'a mut std::collections::HashMap<String, T>,
    account: &str,
    sid: &str,
    path: &str,
) -> Result<&'a mut T, super::twilio::TwilioError> {
    records
        .get_mut(sid)
        .filter(|record| record.account_sid() == account)
        .ok_or_else(|| not_found(&format!("{path}/{sid}")))
}

fn owned_sender<'a>(
    senders: &'a mut std::collections::HashMap<String, SenderRecord>,
    account: &str,
    sid: &str,
) -> Result<&'a mut SenderRecord, super::twilio::TwilioError> {
    owned(senders, account, sid, "/v2/Channels/Senders")
}

/// `GET /v2/Channels/Senders/{Sid}`.
async fn fetch_sender(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let mut inner = shared.state.onboarding.inner();
        let sender = owned_sender(&mut inner.senders, account, &sid)?;
        Ok((StatusCode::OK, sender_resource(sender)))
    })
}

/// `POST /v2/Channels/Senders/{Sid}`: only `configuration.verification_code` is acted on.
async fn update_sender(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let request = json_body(&body)?;
        let onboarding = &shared.state.onboarding;
        let mut inner = onboarding.inner();
        let sender = owned_sender(&mut inner.senders, account, &sid)?;
        let Some(code) = text(&request, "/configuration/verification_code") else {
            return Ok((StatusCode::OK, sender_resource(sender)));
        };
        if sender.status != "PENDING_VERIFICATION" {
            return Err(conflict(format!(
                "{sid} is {}, not waiting for a verification code",
                sender.status
            )));
        }
        if code != VERIFICATION_CODE {
            return Err(invalid(
                "configuration.verification_code",
                "the code is not the one sent",
            ));
        }
        sender.status = "VERIFYING";
        let answer = sender_resource(sender);
        drop(inner);
        shared
            .scheduler
            .schedule(Job::Sender { sid }, onboarding.config.whatsapp_review_delay);
        Ok((StatusCode::OK, answer))
    })
}

/// `DELETE /v2/Channels/Senders/{Sid}`.
async fn delete_sender(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let mut inner = shared.state.onboarding.inner();
        owned_sender(&mut inner.senders, account, &sid)?;
        inner.senders.remove(&sid);
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
}

/// The Content types the simulator takes, with the fields each must hold.
const CONTENT_TYPES: &[(&str, &[&str])] = &[
    ("twilio/text", &["body"]),
    ("twilio/media", &["media"]),
    ("twilio/quick-reply", &["body", "actions"]),
    ("twilio/call-to-action", &["body", "actions"]),
    ("twilio/card", &["title"]),
];

fn content_resource(content: &ContentRecord) -> Value {
    let mut body = content.body.clone();
    body["sid"] = json!(content.sid);
    body["account_sid"] = json!(content.account_sid);
    body["date_created"] = json!(iso(content.created));
    body["date_updated"] = json!(iso(content.created));
    body["url"] = json!(format!("https://content.twilio.com/v1/Content/{}", content.sid));
    body["links"] = json!({
        "approval_fetch": format!("https://content.twilio.com/v1/Content/{}/ApprovalRequests", content.sid),
        "approval_create": format!("https://content.twilio.com/v1/Content/{}/ApprovalRequests/whatsapp", content.sid),
    });
    body
}

/// `POST /v1/Content`.
async fn create_content(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &headers, |shared, account| {
        let request = json_body(&body)?;
        text(&request, "/language").ok_or_else(|| missing("language"))?;
        let types = request
            .get("types")
            .and_then(Value::as_object)
            .ok_or_else(|| missing("types"))?;
        if types.is_empty() {
            return Err(missing("types"));
        }
        for (name, value) in types {
            let (_, fields) = CONTENT_TYPES
                .iter()
                .find(|(known, _)| known == name)
                .ok_or_else(|| invalid("types", format!("{name} is not a content type")))?;
            if let Some(field) = fields.iter().find(|field| value.get(**field).is_none()) {
                return Err(missing(&format!("types.{name}.{field}")));
            }
        }
        if let Some(variables) = request.get("variables")
            && !variables
                .as_object()
                .is_some_and(|map| map.values().all(Value::is_string))
        {
            return Err(invalid("variables", "must be an object of strings"));
        }
        let content = ContentRecord {
            sid: new_sid("HX"),
            account_sid: account.to_owned(),
            body: request,
            approval: None,
            created: OffsetDateTime::now_utc(),
        };
        let answer = content_resource(&content);
        let mut inner = shared.state.onboarding.inner();
        inner.stats.contents += 1;
        inner.contents.insert(content.sid.clone(), content);
        Ok((StatusCode::CREATED, answer))
    })
}

fn owned_content<'a>(
    contents: &'a mut std::collections::HashMap<String, ContentRecord>,
    account: &str,
    sid: &str,
) -> Result<&'a mut ContentRecord, super::twilio::TwilioError> {
    owned(contents, account, sid, "/v1/Content")
}

/// `GET /v1/Content/{Sid}`.
async fn fetch_content(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let mut inner = shared.state.onboarding.inner();
        Ok((
            StatusCode::OK,
            content_resource(owned_content(&mut inner.contents, account, &sid)?),
        ))
    })
}

/// `DELETE /v1/Content/{Sid}`.
async fn delete_content(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let mut inner = shared.state.onboarding.inner();
        owned_content(&mut inner.contents, account, &sid)?;
        inner.contents.remove(&sid);
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
}

/// `GET /v1/ContentAndApprovals`.
async fn list_contents(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap) -> Response {
    serve(&shared, &headers, |shared, account| {
        let inner = shared.state.onboarding.inner();
        let mut contents: Vec<&ContentRecord> = inner
            .contents
            .values()
            .filter(|content| content.account_sid == account)
            .collect();
        contents.sort_by_key(|content| content.created);
        let contents: Vec<Value> = contents
            .into_iter()
            .map(|content| {
                let mut body = content_resource(content);
                // Flat, as twilio-oai's examples of this list show it.
                body["approval_requests"] = content
                    .approval
                    .clone()
                    .unwrap_or_else(|| json!({"status": "unsubmitted"}));
                body
            })
            .collect();
        Ok((
            StatusCode::OK,
            json!({"contents": contents, "meta": {"page": 0, "page_size": 1000, "next_page_url": null}}),
        ))
    })
}

/// `POST /v1/Content/{Sid}/ApprovalRequests/whatsapp`.
async fn submit_approval(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &headers, |shared, account| -> Answer {
        let request = json_body(&body)?;
        let name = text(&request, "/name").ok_or_else(|| missing("name"))?;
        let category = text(&request, "/category").ok_or_else(|| missing("category"))?;
        if !common::rules::WHATSAPP_TEMPLATE_NAME.matches(name) {
            return Err(invalid("name", "must be lowercase letters, digits and underscores"));
        }
        if !["MARKETING", "UTILITY", "AUTHENTICATION"].contains(&category) {
            return Err(invalid("category", "must be MARKETING, UTILITY or AUTHENTICATION"));
        }
        let onboarding = &shared.state.onboarding;
        let mut inner = onboarding.inner();
        let content = owned_content(&mut inner.contents, account, &sid)?;
        let status = content.approval.as_ref().and_then(|approval| text(approval, "/status"));
        if matches!(status, Some("received" | "pending" | "approved")) {
            return Err(conflict(format!("{sid} is already {}", status.unwrap_or_default())));
        }
        let approval = json!({
            "name": name,
            "category": category,
            "content_type": content.body.get("types").and_then(Value::as_object).and_then(|types| types.keys().next().cloned()),
            "status": "received",
            "rejection_reason": "",
            "allow_category_change": true,
        });
        content.approval = Some(approval.clone());
        inner.stats.approvals_submitted += 1;
        drop(inner);
        shared
            .scheduler
            .schedule(Job::Content { sid }, onboarding.config.whatsapp_review_delay);
        Ok((StatusCode::CREATED, approval))
    })
}

/// `GET /v1/Content/{Sid}/ApprovalRequests`.
async fn fetch_approvals(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let mut inner = shared.state.onboarding.inner();
        let content = owned_content(&mut inner.contents, account, &sid)?;
        Ok((
            StatusCode::OK,
            json!({
                "sid": content.sid,
                "account_sid": content.account_sid,
                "whatsapp": content.approval.clone().unwrap_or_else(|| json!({})),
                "url": format!("https://content.twilio.com/v1/Content/{}/ApprovalRequests", content.sid),
            }),
        ))
    })
}
