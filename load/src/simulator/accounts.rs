//! The onboarding routes: subaccounts, Trust Hub bundles, A2P 10DLC brands, Messaging Services,
//! campaigns, and phone number search and purchase, served under the simulator's one base URL
//! with Twilio's paths (point the client's `base_url`, `trusthub_base_url` and
//! `messaging_base_url` all at it).
//!
//! | path | what |
//! |---|---|
//! | `POST /2010-04-01/Accounts.json` | create a subaccount (only a configured main account may); it is accepted everywhere from then on, Messages included, with its own concurrency slots |
//! | `GET /2010-04-01/Accounts/{Sid}.json` | fetch an account, as itself or its owner |
//! | `GET /2010-04-01/Accounts/{AC}/AvailablePhoneNumbers/{Country}/Local.json` | fictional `+1 NXX 555 01XX` numbers in the asked area code (415 if none), not yet bought |
//! | `POST /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json` | buy one of them |
//! | `POST /v1/CustomerProfiles`, `/v1/TrustProducts` | create a bundle (`draft`) |
//! | `GET`/`POST /v1/{CustomerProfiles,TrustProducts}/{BU}` | fetch; update (`Status=pending-review` submits) |
//! | `POST /v1/{CustomerProfiles,TrustProducts}/{BU}/EntityAssignments` | assign an end user, a document or (to a trust product) a customer profile |
//! | `POST /v1/{CustomerProfiles,TrustProducts}/{BU}/Evaluations` | evaluate against the requirements below |
//! | `POST /v1/EndUsers`, `/v1/SupportingDocuments`, `/2010-04-01/Accounts/{AC}/Addresses.json` | create |
//! | `POST /v1/a2p/BrandRegistrations`, `GET .../{BN}` | register a brand (`PENDING`), fetch it |
//! | `POST /v1/Services`, `POST /v1/Services/{MG}/PhoneNumbers` | create a Messaging Service, add a bought number |
//! | `POST /v1/Services/{MG}/Compliance/Usa2p`, `GET .../{QE}` | register a campaign (`IN_PROGRESS`), fetch it |
//!
//! # Checks and their codes (in this order)
//!
//! | check | HTTP | code |
//! |---|---|---|
//! | the onboarding API is switched unavailable, or within the first `unavailable_for_first` requests | 503 | 20503 |
//! | Basic auth of a configured account or a subaccount (2010 paths: the path's `AccountSid` is that account) | 401 | 20003 |
//! | a subaccount creating a subaccount (code chosen) | 403 | 20403 |
//! | the object in the path exists in the account | 404 | 20404 |
//! | a required parameter is present and not empty | 400 | 20001 ("Missing required parameter X in the post body", as Twilio) |
//! | a parameter is well formed: SID prefix and 32 hex digits, URL, email, JSON object, boolean, campaign lengths (`Description` 40..4,096, `MessageFlow` 40..2,048, 2..5 `MessageSamples` of 20..1,024), `PageSize` 1..1,000 | 400 | 20001 |
//! | an object named in a parameter exists in the account and has the right kind | 400 | 20001 |
//! | the object is in a state that allows it (assign to a draft bundle only; submit a compliant draft; a brand needs both bundles submitted; a campaign needs an `APPROVED` brand and a service without one) (code chosen) | 409 | 20409 |
//! | a number bought is one the search offers and still free | 400 | 21422 (unconfirmed) |
//! | a number added to a service is in no service yet | 409 | 21710 (unconfirmed) |
//!
//! # Evaluation requirements
//!
//! A customer profile is compliant when assigned an end user of type
//! `customer_profile_business_information`, one of type `authorized_representative_1` and a
//! `customer_profile_address` supporting document whose `address_sids` names an Address
//! resource of the account (`POST /2010-04-01/Accounts/{AC}/Addresses.json`); a trust product when assigned an end user of type
//! `us_a2p_messaging_profile_information` and a customer profile. A submitted bundle
//! (`pending-review`) reads `twilio-approved` once `bundle_review_delay` has passed.
//!
//! # Brands and campaigns
//!
//! A brand starts `PENDING`; after `brand_review_delay` the simulator's timer task makes it
//! `APPROVED` (with `brand_score` and a `tcr_id`) or `FAILED` (with `failure_reason` and one
//! `errors` entry), per [`OnboardingSimConfig::brand_outcome`](super::OnboardingSimConfig::brand_outcome). If
//! [`OnboardingSimConfig::brand_status_callback`](super::OnboardingSimConfig::brand_status_callback) or the customer profile's `StatusCallback` is
//! set, it POSTs a form signed with `X-Twilio-Signature` (keyed with the brand account's auth
//! token) carrying `AccountSid`, `BrandRegistrationSid`, `BrandStatus`, `BrandType`,
//! `CustomerProfileBundleSid`, `A2PProfileBundleSid`, and `BrandScore` and `TcrId` or
//! `FailureReason`. (Twilio itself reports brand changes through Event Streams; this form is the
//! simulator's own.) A campaign reads `VERIFIED` once `campaign_review_delay` has passed; its
//! `rate_limits` follow the brand score as in providers.md's table.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::twilio::accounts::BundleKind;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::Shared;
use super::callbacks::Job;
use super::registry::{
    AddressRecord, BrandRecord, BundleRecord, BundleState, CampaignRecord, DocumentRecord, EndUserRecord, Inner,
    NumberRecord, ServiceRecord, SubaccountRecord, short_id,
};
use super::twilio::{TwilioError, authenticate, authenticated_account, is_sid};

/// The 2010 API's version segment.
const API_VERSION: &str = "2010-04-01";
/// The area code of a search that names none.
pub const DEFAULT_AREA_CODE: u16 = 415;
/// Numbers a search returns when `PageSize` is absent.
const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest `PageSize`.
const MAX_PAGE_SIZE: usize = 1_000;

/// The onboarding routes, to merge into the simulator's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    let mut router = Router::new()
        .route("/2010-04-01/Accounts.json", post(create_subaccount))
        .route("/2010-04-01/Accounts/{account_sid}", get(fetch_account))
        .route(
            "/2010-04-01/Accounts/{account_sid}/AvailablePhoneNumbers/{country}/Local.json",
            get(search_numbers),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json",
            post(buy_number),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Addresses.json",
            post(create_address),
        )
        .route("/v1/EndUsers", post(create_end_user))
        .route("/v1/SupportingDocuments", post(create_document))
        .route("/v1/a2p/BrandRegistrations", post(create_brand))
        .route("/v1/a2p/BrandRegistrations/{brand_sid}", get(fetch_brand))
        .route("/v1/Services", post(create_service))
        .route("/v1/Services/{service_sid}/PhoneNumbers", post(add_service_number))
        .route("/v1/Services/{service_sid}/Compliance/Usa2p", post(create_campaign))
        .route(
            "/v1/Services/{service_sid}/Compliance/Usa2p/{campaign_sid}",
            get(fetch_campaign),
        );
    for kind in [BundleKind::CustomerProfile, BundleKind::TrustProduct] {
        let collection = format!("/v1/{}", kind.collection());
        router =
            router
                .route(
                    &collection,
                    post(
                        move |state: AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes| async move {
                            serve(&state, &headers, |shared, account| {
                                create_bundle(shared, account, kind, &form(&body))
                            })
                        },
                    ),
                )
                .route(
                    &format!("{collection}/{{bundle_sid}}"),
                    get(
                        move |state: AxumState<Arc<Shared>>, Path(sid): Path<String>, headers: HeaderMap| async move {
                            serve(&state, &headers, |shared, account| {
                                fetch_bundle(shared, account, kind, &sid)
                            })
                        },
                    )
                    .post(
                        move |state: AxumState<Arc<Shared>>,
                              Path(sid): Path<String>,
                              headers: HeaderMap,
                              body: Bytes| async move {
                            serve(&state, &headers, |shared, account| {
                                update_bundle(shared, account, kind, &sid, &form(&body))
                            })
                        },
                    ),
                )
                .route(
                    &format!("{collection}/{{bundle_sid}}/EntityAssignments"),
                    post(
                        move |state: AxumState<Arc<Shared>>,
                              Path(sid): Path<String>,
                              headers: HeaderMap,
                              body: Bytes| async move {
                            serve(&state, &headers, |shared, account| {
                                assign(shared, account, kind, &sid, &form(&body))
                            })
                        },
                    ),
                )
                .route(
                    &format!("{collection}/{{bundle_sid}}/Evaluations"),
                    post(
                        move |state: AxumState<Arc<Shared>>,
                              Path(sid): Path<String>,
                              headers: HeaderMap,
                              body: Bytes| async move {
                            serve(&state, &headers, |shared, account| {
                                evaluate(shared, account, kind, &sid, &form(&body))
                            })
                        },
                    ),
                );
    }
    router
}

/// A handler's answer: status and JSON body, or a refusal.
pub(super) type Answer = Result<(StatusCode, Value), TwilioError>;

/// The common gate of a v1 route: fault switch, then Basic auth of any accepted account.
pub(super) fn serve(shared: &Shared, headers: &HeaderMap, handle: impl FnOnce(&Shared, &str) -> Answer) -> Response {
    let result = gate(shared)
        .and_then(|()| authenticated_account(shared, headers))
        .and_then(|account| handle(shared, &account));
    respond(shared, result)
}

/// The common gate of a 2010 route under `/Accounts/{AccountSid}/`: the path's account must
/// be the authenticated one.
fn serve_account(
    shared: &Shared,
    headers: &HeaderMap,
    path_account: &str,
    handle: impl FnOnce(&Shared, &str) -> Answer,
) -> Response {
    let result = gate(shared)
        .and_then(|()| authenticate(shared, headers, path_account))
        .and_then(|account| handle(shared, &account));
    respond(shared, result)
}

fn gate(shared: &Shared) -> Result<(), TwilioError> {
    if shared.state.onboarding.admit() {
        return Err(TwilioError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service Unavailable",
        ));
    }
    Ok(())
}

fn respond(shared: &Shared, result: Answer) -> Response {
    match result {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(error) => {
            shared.state.onboarding.count_rejected(error.code);
            tracing::debug!(code = error.code, status = %error.status, message = %error.message, "simulator refused an onboarding request");
            error.into_response()
        }
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The first non-empty value of `name`.
fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value.as_str())
}

/// Every non-empty value of a repeated `name`.
fn params<'a>(form: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    form.iter()
        .filter(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value.as_str())
        .collect()
}

fn required<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, TwilioError> {
    param(form, name).ok_or_else(|| missing(name))
}

pub(super) fn missing(name: &str) -> TwilioError {
    TwilioError::bad_request(20001, format!("Missing required parameter {name} in the post body"))
}

pub(super) fn invalid(name: &str, why: impl std::fmt::Display) -> TwilioError {
    TwilioError::bad_request(20001, format!("Invalid parameter {name}: {why}"))
}

pub(super) fn conflict(message: impl Into<String>) -> TwilioError {
    TwilioError::new(StatusCode::CONFLICT, 20409, message)
}

fn sid_param<'a>(form: &'a [(String, String)], name: &str, prefix: &str) -> Result<&'a str, TwilioError> {
    let value = required(form, name)?;
    if !is_sid(value, prefix) {
        return Err(invalid(name, format!("{value} is not a {prefix} SID")));
    }
    Ok(value)
}

fn url_param<'a>(form: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, TwilioError> {
    let Some(value) = param(form, name) else {
        return Ok(None);
    };
    let valid = reqwest::Url::parse(value)
        .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some());
    if !valid {
        return Err(invalid(name, format!("{value} is not an http(s) URL")));
    }
    Ok(Some(value))
}

fn bool_param(form: &[(String, String)], name: &str) -> Result<Option<bool>, TwilioError> {
    match param(form, name) {
        None => Ok(None),
        Some(value) if value.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(value) if value.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(value) => Err(invalid(name, format!("{value} is not true or false"))),
    }
}

fn json_object_param(form: &[(String, String)], name: &str) -> Result<Value, TwilioError> {
    match param(form, name) {
        None => Ok(json!({})),
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(invalid(name, "must be a JSON object")),
        },
    }
}

fn check_length(name: &str, value: &str, range: std::ops::RangeInclusive<usize>) -> Result<(), TwilioError> {
    let length = value.chars().count();
    if !range.contains(&length) {
        return Err(invalid(
            name,
            format!(
                "must be {} to {} characters long, not {length}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(())
}

pub(super) fn new_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

pub(super) fn iso(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn rfc2822(at: OffsetDateTime) -> String {
    at.format(&Rfc2822).unwrap_or_default()
}

pub(super) fn not_found(path: &str) -> TwilioError {
    TwilioError::not_found(path)
}

/// `POST /2010-04-01/Accounts.json`.
async fn create_subaccount(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &headers, |shared, owner| {
        if !shared.state.config.accounts.contains_key(owner) {
            return Err(TwilioError::new(
                StatusCode::FORBIDDEN,
                20403,
                "Subaccounts cannot create subaccounts",
            ));
        }
        let form = form(&body);
        let now = OffsetDateTime::now_utc();
        let friendly_name = param(&form, "FriendlyName")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("SubAccount Created at {}", rfc2822(now)));
        let sid = new_sid("AC");
        let token = format!("{:032x}", rand::random::<u128>());
        let record = SubaccountRecord {
            owner: owner.to_owned(),
            token: token.clone(),
            friendly_name,
            slot: Arc::new(Semaphore::new(shared.state.onboarding.concurrency)),
            created: now,
        };
        let mut body = account_resource(&sid, &record.owner, &record.friendly_name, record.created);
        body["auth_token"] = Value::String(token);
        let mut inner = shared.state.onboarding.inner();
        inner.subaccounts.insert(sid.clone(), record);
        inner.stats.subaccounts += 1;
        tracing::debug!(sid, owner, "simulator created a subaccount");
        Ok((StatusCode::CREATED, body))
    })
}

fn account_resource(sid: &str, owner: &str, friendly_name: &str, created: OffsetDateTime) -> Value {
    json!({
        "sid": sid,
        "owner_account_sid": owner,
        "friendly_name": friendly_name,
        "status": "active",
        "type": "Full",
        "date_created": rfc2822(created),
        "date_updated": rfc2822(created),
        "uri": format!("/{API_VERSION}/Accounts/{sid}.json"),
        "subresource_uris": {
            "messages": format!("/{API_VERSION}/Accounts/{sid}/Messages.json"),
            "incoming_phone_numbers": format!("/{API_VERSION}/Accounts/{sid}/IncomingPhoneNumbers.json"),
            "available_phone_numbers": format!("/{API_VERSION}/Accounts/{sid}/AvailablePhoneNumbers.json"),
        },
    })
}

/// `GET /2010-04-01/Accounts/{Sid}.json`: as the account itself or its owner.
async fn fetch_account(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, caller| {
        let path = format!("/{API_VERSION}/Accounts/{file}");
        let sid = file.strip_suffix(".json").ok_or_else(|| not_found(&path))?;
        let mut inner = shared.state.onboarding.inner();
        let body = if let Some(account) = inner.subaccounts.get(sid) {
            if caller != sid && caller != account.owner {
                return Err(not_found(&path));
            }
            account_resource(sid, &account.owner, &account.friendly_name, account.created)
        } else if sid == caller && shared.state.config.accounts.contains_key(sid) {
            account_resource(sid, sid, "Simulator account", OffsetDateTime::UNIX_EPOCH)
        } else {
            return Err(not_found(&path));
        };
        inner.stats.account_fetches += 1;
        Ok((StatusCode::OK, body))
    })
}

fn bundle_resource(bundle: &BundleRecord, status: &str) -> Value {
    let collection = bundle.kind.collection();
    json!({
        "sid": bundle.sid,
        "account_sid": bundle.account_sid,
        "policy_sid": bundle.policy_sid,
        "friendly_name": bundle.friendly_name,
        "status": status,
        "email": bundle.email,
        "status_callback": bundle.status_callback,
        "valid_until": null,
        "date_created": iso(bundle.created),
        "date_updated": iso(bundle.updated),
        "url": format!("https://trusthub.twilio.com/v1/{collection}/{}", bundle.sid),
        "links": {
            "entity_assignments": format!("https://trusthub.twilio.com/v1/{collection}/{}/EntityAssignments", bundle.sid),
            "evaluations": format!("https://trusthub.twilio.com/v1/{collection}/{}/Evaluations", bundle.sid),
        },
    })
}

/// A bundle's status as read now: a submitted one is approved once the review delay passed.
fn bundle_status(bundle: &BundleRecord, review_delay: Duration) -> &'static str {
    match (bundle.state, bundle.submitted) {
        (BundleState::Draft, _) => "draft",
        (BundleState::PendingReview, Some(at)) if at.elapsed() >= review_delay => "twilio-approved",
        (BundleState::PendingReview, _) => "pending-review",
    }
}

fn create_bundle(shared: &Shared, account: &str, kind: BundleKind, form: &[(String, String)]) -> Answer {
    let friendly_name = required(form, "FriendlyName")?;
    let email = required(form, "Email")?;
    let policy_sid = sid_param(form, "PolicySid", "RN")?;
    if !email.contains('@') {
        return Err(invalid("Email", format!("{email} is not an email address")));
    }
    let status_callback = url_param(form, "StatusCallback")?;
    let now = OffsetDateTime::now_utc();
    let bundle = BundleRecord {
        sid: new_sid("BU"),
        account_sid: account.to_owned(),
        kind,
        friendly_name: friendly_name.to_owned(),
        email: email.to_owned(),
        policy_sid: policy_sid.to_owned(),
        status_callback: status_callback.map(str::to_owned),
        state: BundleState::Draft,
        submitted: None,
        assignments: Vec::new(),
        created: now,
        updated: now,
    };
    let body = bundle_resource(&bundle, "draft");
    let mut inner = shared.state.onboarding.inner();
    match kind {
        BundleKind::CustomerProfile => inner.stats.customer_profiles += 1,
        BundleKind::TrustProduct => inner.stats.trust_products += 1,
    }
    inner.bundles.insert(bundle.sid.clone(), bundle);
    Ok((StatusCode::CREATED, body))
}

/// The bundle `sid` of `kind` in `account`, or Twilio's 404.
fn owned_bundle<'a>(
    inner: &'a mut Inner,
    account: &str,
    kind: BundleKind,
    sid: &str,
) -> Result<&'a mut BundleRecord, TwilioError> {
    inner
        .bundles
        .get_mut(sid)
        .filter(|bundle| bundle.account_sid == account && bundle.kind == kind)
        .ok_or_else(|| not_found(&format!("/v1/{}/{sid}", kind.collection())))
}

fn fetch_bundle(shared: &Shared, account: &str, kind: BundleKind, sid: &str) -> Answer {
    let delay = shared.state.onboarding.config.bundle_review_delay;
    let mut inner = shared.state.onboarding.inner();
    let bundle = owned_bundle(&mut inner, account, kind, sid)?;
    Ok((StatusCode::OK, bundle_resource(bundle, bundle_status(bundle, delay))))
}

fn update_bundle(shared: &Shared, account: &str, kind: BundleKind, sid: &str, form: &[(String, String)]) -> Answer {
    let onboarding = &shared.state.onboarding;
    let status_callback = url_param(form, "StatusCallback")?;
    let status = param(form, "Status");
    if let Some(status) = status
        && status != "pending-review"
    {
        return Err(invalid(
            "Status",
            format!("{status} cannot be set; only pending-review"),
        ));
    }
    let mut inner = onboarding.inner();
    let results = evaluation_results(&inner, account, kind, sid);
    let bundle = owned_bundle(&mut inner, account, kind, sid)?;
    let now = OffsetDateTime::now_utc();
    if status.is_some() {
        if bundle.state != BundleState::Draft {
            return Err(conflict(format!("{} {sid} is not a draft", kind.collection())));
        }
        if results.iter().any(|result| !result.passed) {
            return Err(conflict(format!(
                "{} {sid} is not compliant: evaluate it first",
                kind.collection()
            )));
        }
        bundle.state = BundleState::PendingReview;
        bundle.submitted = Some(Instant::now());
    }
    if let Some(name) = param(form, "FriendlyName") {
        bundle.friendly_name = name.to_owned();
    }
    if let Some(email) = param(form, "Email") {
        bundle.email = email.to_owned();
    }
    if let Some(url) = status_callback {
        bundle.status_callback = Some(url.to_owned());
    }
    bundle.updated = now;
    // The answer shows the status as of the submission, before any review delay.
    let shown = match bundle.state {
        BundleState::Draft => "draft",
        BundleState::PendingReview if status.is_some() => "pending-review",
        BundleState::PendingReview => bundle_status(bundle, onboarding.config.bundle_review_delay),
    };
    let body = bundle_resource(bundle, shown);
    if status.is_some() {
        inner.stats.bundles_submitted += 1;
        tracing::debug!(sid, kind = kind.collection(), "simulator bundle submitted");
    }
    Ok((StatusCode::OK, body))
}

fn assign(shared: &Shared, account: &str, kind: BundleKind, sid: &str, form: &[(String, String)]) -> Answer {
    let object_sid = required(form, "ObjectSid")?;
    let mut inner = shared.state.onboarding.inner();
    owned_bundle(&mut inner, account, kind, sid)?;
    let known = match object_sid.get(..2) {
        Some("IT") => inner
            .end_users
            .get(object_sid)
            .is_some_and(|user| user.account_sid == account),
        Some("RD") => inner
            .documents
            .get(object_sid)
            .is_some_and(|document| document.account_sid == account),
        Some("BU") => {
            kind == BundleKind::TrustProduct
                && inner
                    .bundles
                    .get(object_sid)
                    .is_some_and(|bundle| bundle.account_sid == account && bundle.kind == BundleKind::CustomerProfile)
        }
        _ => false,
    };
    if !known {
        return Err(invalid(
            "ObjectSid",
            format!("{object_sid} is not an end user, supporting document or customer profile of this account"),
        ));
    }
    let bundle = owned_bundle(&mut inner, account, kind, sid)?;
    if bundle.state != BundleState::Draft {
        return Err(conflict(format!("{} {sid} is not a draft", kind.collection())));
    }
    if bundle.assignments.iter().any(|(_, object)| object == object_sid) {
        return Err(conflict(format!("{object_sid} is already assigned to {sid}")));
    }
    let assignment = new_sid("BV");
    bundle.assignments.push((assignment.clone(), object_sid.to_owned()));
    let bundle_field = match kind {
        BundleKind::CustomerProfile => "customer_profile_sid",
        BundleKind::TrustProduct => "trust_product_sid",
    };
    let body = json!({
        "sid": assignment,
        "account_sid": account,
        bundle_field: sid,
        "object_sid": object_sid,
        "date_created": iso(OffsetDateTime::now_utc()),
        "url": format!("https://trusthub.twilio.com/v1/{}/{sid}/EntityAssignments/{assignment}", kind.collection()),
    });
    inner.stats.entity_assignments += 1;
    Ok((StatusCode::CREATED, body))
}

/// One requirement and whether the bundle meets it.
#[derive(Debug)]
struct Requirement {
    name: &'static str,
    object_type: &'static str,
    passed: bool,
}

/// The bundle's requirements (empty if it is unknown); see the module docs.
fn evaluation_results(inner: &Inner, account: &str, kind: BundleKind, sid: &str) -> Vec<Requirement> {
    let Some(bundle) = inner
        .bundles
        .get(sid)
        .filter(|bundle| bundle.account_sid == account && bundle.kind == kind)
    else {
        return Vec::new();
    };
    let has_user = |user_type: &str| {
        bundle.assignments.iter().any(|(_, object)| {
            inner
                .end_users
                .get(object)
                .is_some_and(|user| user.user_type == user_type)
        })
    };
    let has_address = bundle.assignments.iter().any(|(_, object)| {
        inner
            .documents
            .get(object)
            .is_some_and(|document| document.address_sid.is_some())
    });
    let has_profile = bundle.assignments.iter().any(|(_, object)| {
        inner
            .bundles
            .get(object)
            .is_some_and(|profile| profile.kind == BundleKind::CustomerProfile)
    });
    match kind {
        BundleKind::CustomerProfile => vec![
            Requirement {
                name: "Business Information",
                object_type: "customer_profile_business_information",
                passed: has_user("customer_profile_business_information"),
            },
            Requirement {
                name: "Authorized Representative 1",
                object_type: "authorized_representative_1",
                passed: has_user("authorized_representative_1"),
            },
            Requirement {
                name: "Business Address",
                object_type: "supporting_document",
                passed: has_address,
            },
        ],
        BundleKind::TrustProduct => vec![
            Requirement {
                name: "A2P Messaging Profile Information",
                object_type: "us_a2p_messaging_profile_information",
                passed: has_user("us_a2p_messaging_profile_information"),
            },
            Requirement {
                name: "Customer Profile",
                object_type: "customer_profile",
                passed: has_profile,
            },
        ],
    }
}

fn evaluate(shared: &Shared, account: &str, kind: BundleKind, sid: &str, form: &[(String, String)]) -> Answer {
    let policy_sid = sid_param(form, "PolicySid", "RN")?;
    let mut inner = shared.state.onboarding.inner();
    let bundle = owned_bundle(&mut inner, account, kind, sid)?;
    if bundle.policy_sid != policy_sid {
        return Err(invalid(
            "PolicySid",
            format!("{sid} was created for policy {}", bundle.policy_sid),
        ));
    }
    let requirements = evaluation_results(&inner, account, kind, sid);
    let compliant = requirements.iter().all(|requirement| requirement.passed);
    let results: Vec<Value> = requirements
        .iter()
        .map(|requirement| {
            json!({
                "friendly_name": requirement.name,
                "object_type": requirement.object_type,
                "requirement_name": requirement.object_type,
                "passed": requirement.passed,
                "failure_reason": if requirement.passed { None } else { Some(format!("{} is missing", requirement.name)) },
            })
        })
        .collect();
    let evaluation = new_sid("EL");
    let bundle_field = match kind {
        BundleKind::CustomerProfile => "customer_profile_sid",
        BundleKind::TrustProduct => "trust_product_sid",
    };
    let body = json!({
        "sid": evaluation,
        "account_sid": account,
        "policy_sid": policy_sid,
        bundle_field: sid,
        "status": if compliant { "compliant" } else { "noncompliant" },
        "results": results,
        "date_created": iso(OffsetDateTime::now_utc()),
        "url": format!("https://trusthub.twilio.com/v1/{}/{sid}/Evaluations/{evaluation}", kind.collection()),
    });
    inner.stats.evaluations += 1;
    Ok((StatusCode::CREATED, body))
}

/// `POST /2010-04-01/Accounts/{AccountSid}/Addresses.json`.
async fn create_address(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve_account(&shared, &headers, &account_sid, |shared, account| {
        let form = form(&body);
        let customer_name = required(&form, "CustomerName")?;
        let street = required(&form, "Street")?;
        let city = required(&form, "City")?;
        let region = required(&form, "Region")?;
        let postal_code = required(&form, "PostalCode")?;
        let iso_country = required(&form, "IsoCountry")?;
        if iso_country.len() != 2 || !iso_country.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(invalid(
                "IsoCountry",
                format!("{iso_country} is not an ISO 3166-1 alpha-2 code"),
            ));
        }
        let sid = new_sid("AD");
        let now = rfc2822(OffsetDateTime::now_utc());
        let body = json!({
            "sid": sid,
            "account_sid": account,
            "customer_name": customer_name,
            "friendly_name": param(&form, "FriendlyName"),
            "street": street,
            "street_secondary": param(&form, "StreetSecondary"),
            "city": city,
            "region": region,
            "postal_code": postal_code,
            "iso_country": iso_country,
            "emergency_enabled": false,
            "validated": false,
            "verified": false,
            "date_created": now,
            "date_updated": now,
            "uri": format!("/2010-04-01/Accounts/{account}/Addresses/{sid}.json"),
        });
        let mut inner = shared.state.onboarding.inner();
        inner.addresses.insert(
            sid,
            AddressRecord {
                account_sid: account.to_owned(),
            },
        );
        inner.stats.addresses += 1;
        Ok((StatusCode::CREATED, body))
    })
}

/// `POST /v1/EndUsers`.
async fn create_end_user(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &headers, |shared, account| {
        let form = form(&body);
        let user_type = required(&form, "Type")?;
        let friendly_name = required(&form, "FriendlyName")?;
        let attributes = json_object_param(&form, "Attributes")?;
        let sid = new_sid("IT");
        let now = iso(OffsetDateTime::now_utc());
        let body = json!({
            "sid": sid,
            "account_sid": account,
            "friendly_name": friendly_name,
            "type": user_type,
            "attributes": attributes,
            "date_created": now,
            "date_updated": now,
            "url": format!("https://trusthub.twilio.com/v1/EndUsers/{sid}"),
        });
        let mut inner = shared.state.onboarding.inner();
        inner.end_users.insert(
            sid,
            EndUserRecord {
                account_sid: account.to_owned(),
                user_type: user_type.to_owned(),
            },
        );
        inner.stats.end_users += 1;
        Ok((StatusCode::CREATED, body))
    })
}

/// `POST /v1/SupportingDocuments`.
async fn create_document(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &headers, |shared, account| {
        let form = form(&body);
        let document_type = required(&form, "Type")?;
        let friendly_name = required(&form, "FriendlyName")?;
        let attributes = json_object_param(&form, "Attributes")?;
        let sid = new_sid("RD");
        let now = iso(OffsetDateTime::now_utc());
        let body = json!({
            "sid": sid,
            "account_sid": account,
            "friendly_name": friendly_name,
            "type": document_type,
            "status": "draft",
            "mime_type": null,
            "attributes": attributes,
            "date_created": now,
            "date_updated": now,
            "url": format!("https://trusthub.twilio.com/v1/SupportingDocuments/{sid}"),
        });
        let mut inner = shared.state.onboarding.inner();
        // Any attributes are taken, as Trust Hub takes them; the evaluation asks more.
        let address_sid = attributes["address_sids"]
            .as_str()
            .filter(|_| document_type == "customer_profile_address")
            .filter(|sid| {
                inner
                    .addresses
                    .get(*sid)
                    .is_some_and(|address| address.account_sid == account)
            })
            .map(str::to_owned);
        inner.documents.insert(
            sid,
            DocumentRecord {
                account_sid: account.to_owned(),
                address_sid,
            },
        );
        inner.stats.supporting_documents += 1;
        Ok((StatusCode::CREATED, body))
    })
}

fn brand_resource(brand: &BrandRecord) -> Value {
    let errors: Vec<Value> = brand
        .failure_reason
        .iter()
        .map(|reason| json!({"description": reason, "fields": []}))
        .collect();
    json!({
        "sid": brand.sid,
        "account_sid": brand.account_sid,
        "customer_profile_bundle_sid": brand.customer_profile,
        "a2p_profile_bundle_sid": brand.trust_product,
        "brand_type": brand.brand_type,
        "status": brand.status,
        "tcr_id": brand.tcr_id,
        "brand_score": brand.brand_score,
        "identity_status": if brand.status == "APPROVED" { Some("VERIFIED") } else { None },
        "failure_reason": brand.failure_reason,
        "errors": errors,
        "mock": brand.mock,
        "skip_automatic_sec_vet": brand.skip_automatic_sec_vet,
        "russell_3000": false,
        "tax_exempt_status": null,
        "date_created": iso(brand.created),
        "date_updated": iso(brand.updated),
        "url": format!("https://messaging.twilio.com/v1/a2p/BrandRegistrations/{}", brand.sid),
    })
}

/// `POST /v1/a2p/BrandRegistrations`.
async fn create_brand(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &headers, |shared, account| {
        let form = form(&body);
        let profile = sid_param(&form, "CustomerProfileBundleSid", "BU")?;
        let product = sid_param(&form, "A2PProfileBundleSid", "BU")?;
        let brand_type = param(&form, "BrandType").unwrap_or("STANDARD");
        if !matches!(brand_type, "STANDARD" | "SOLE_PROPRIETOR") {
            return Err(invalid(
                "BrandType",
                format!("{brand_type} is not STANDARD or SOLE_PROPRIETOR"),
            ));
        }
        let mock = bool_param(&form, "Mock")?.unwrap_or(false);
        let skip_automatic_sec_vet = bool_param(&form, "SkipAutomaticSecVet")?.unwrap_or(false);
        let onboarding = &shared.state.onboarding;
        let mut inner = onboarding.inner();
        for (name, sid, kind) in [
            ("CustomerProfileBundleSid", profile, BundleKind::CustomerProfile),
            ("A2PProfileBundleSid", product, BundleKind::TrustProduct),
        ] {
            let bundle = inner
                .bundles
                .get(sid)
                .filter(|bundle| bundle.account_sid == account && bundle.kind == kind)
                .ok_or_else(|| invalid(name, format!("{sid} is not a {} of this account", kind.collection())))?;
            if bundle.state == BundleState::Draft {
                return Err(conflict(format!("{sid} has not been submitted for review")));
            }
        }
        let now = OffsetDateTime::now_utc();
        let brand = BrandRecord {
            sid: new_sid("BN"),
            account_sid: account.to_owned(),
            customer_profile: profile.to_owned(),
            trust_product: product.to_owned(),
            brand_type: brand_type.to_owned(),
            mock,
            skip_automatic_sec_vet,
            status: "PENDING",
            brand_score: None,
            tcr_id: None,
            failure_reason: None,
            created: now,
            updated: now,
        };
        let body = brand_resource(&brand);
        let sid = brand.sid.clone();
        inner.brands.insert(sid.clone(), brand);
        inner.stats.brand_registrations += 1;
        drop(inner);
        shared
            .scheduler
            .schedule(Job::Brand { sid: sid.clone() }, onboarding.config.brand_review_delay);
        tracing::debug!(sid, account, "simulator registered a brand");
        Ok((StatusCode::CREATED, body))
    })
}

/// `GET /v1/a2p/BrandRegistrations/{Sid}`.
async fn fetch_brand(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let inner = shared.state.onboarding.inner();
        let brand = inner
            .brands
            .get(&sid)
            .filter(|brand| brand.account_sid == account)
            .ok_or_else(|| not_found(&format!("/v1/a2p/BrandRegistrations/{sid}")))?;
        Ok((StatusCode::OK, brand_resource(brand)))
    })
}

fn service_resource(service: &ServiceRecord) -> Value {
    json!({
        "sid": service.sid,
        "account_sid": service.account_sid,
        "friendly_name": service.friendly_name,
        "inbound_request_url": service.inbound_request_url,
        "inbound_method": "POST",
        "status_callback": service.status_callback,
        "use_inbound_webhook_on_number": false,
        "usecase": "undeclared",
        "us_app_to_person_registered": service.campaign.is_some(),
        "date_created": iso(service.created),
        "date_updated": iso(service.created),
        "url": format!("https://messaging.twilio.com/v1/Services/{}", service.sid),
    })
}

/// `POST /v1/Services`.
async fn create_service(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    serve(&shared, &headers, |shared, account| {
        let form = form(&body);
        let friendly_name = required(&form, "FriendlyName")?;
        let inbound_request_url = url_param(&form, "InboundRequestUrl")?;
        let status_callback = url_param(&form, "StatusCallback")?;
        let service = ServiceRecord {
            sid: new_sid("MG"),
            account_sid: account.to_owned(),
            friendly_name: friendly_name.to_owned(),
            inbound_request_url: inbound_request_url.map(str::to_owned),
            status_callback: status_callback.map(str::to_owned),
            campaign: None,
            created: OffsetDateTime::now_utc(),
        };
        let body = service_resource(&service);
        let mut inner = shared.state.onboarding.inner();
        inner.services.insert(service.sid.clone(), service);
        inner.stats.messaging_services += 1;
        Ok((StatusCode::CREATED, body))
    })
}

fn owned_service<'a>(inner: &'a mut Inner, account: &str, sid: &str) -> Result<&'a mut ServiceRecord, TwilioError> {
    inner
        .services
        .get_mut(sid)
        .filter(|service| service.account_sid == account)
        .ok_or_else(|| not_found(&format!("/v1/Services/{sid}")))
}

/// `POST /v1/Services/{Sid}/PhoneNumbers`.
async fn add_service_number(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(service_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let form = form(&body);
        let mut inner = shared.state.onboarding.inner();
        owned_service(&mut inner, account, &service_sid)?;
        let number_sid = sid_param(&form, "PhoneNumberSid", "PN")?;
        let number = inner
            .numbers
            .get_mut(number_sid)
            .filter(|number| number.account_sid == account)
            .ok_or_else(|| {
                invalid(
                    "PhoneNumberSid",
                    format!("{number_sid} is not a number of this account"),
                )
            })?;
        if let Some(other) = &number.service {
            return Err(TwilioError::new(
                StatusCode::CONFLICT,
                21710,
                format!("Phone Number {number_sid} is already in the Messaging Service {other}"),
            ));
        }
        number.service = Some(service_sid.clone());
        let body = json!({
            "sid": number.sid,
            "account_sid": account,
            "service_sid": service_sid,
            "phone_number": number.phone_number,
            "country_code": "US",
            "capabilities": ["SMS", "MMS", "Voice"],
            "date_created": iso(OffsetDateTime::now_utc()),
            "url": format!("https://messaging.twilio.com/v1/Services/{service_sid}/PhoneNumbers/{}", number.sid),
        });
        inner.stats.service_phone_numbers += 1;
        Ok((StatusCode::CREATED, body))
    })
}

/// Per-carrier limits by brand score, from providers.md's table (the simulator's own shape).
fn rate_limits(score: Option<u8>) -> Value {
    let (att_tpm, tmobile_daily_cap) = match score.unwrap_or(0) {
        75.. => (4_500, 200_000),
        50..=74 => (2_400, 40_000),
        _ => (240, 10_000),
    };
    json!({
        "att": {"tpm": att_tpm},
        "tmobile": {"daily_cap": tmobile_daily_cap},
    })
}

fn campaign_resource(campaign: &CampaignRecord, review_delay: Duration) -> Value {
    let reviewed = campaign.registered.elapsed() >= review_delay;
    let status = match &campaign.status_override {
        Some(status) => status.as_str(),
        None if reviewed => "VERIFIED",
        None => "IN_PROGRESS",
    };
    let verified = status == "VERIFIED";
    json!({
        "sid": campaign.sid,
        "account_sid": campaign.account_sid,
        "messaging_service_sid": campaign.service_sid,
        "brand_registration_sid": campaign.brand_sid,
        "description": campaign.description,
        "message_flow": campaign.message_flow,
        "message_samples": campaign.message_samples,
        "us_app_to_person_usecase": campaign.usecase,
        "has_embedded_links": campaign.has_embedded_links,
        "has_embedded_phone": campaign.has_embedded_phone,
        "opt_in_message": campaign.opt_in_message,
        "opt_out_message": campaign.opt_out_message,
        "help_message": campaign.help_message,
        "campaign_status": status,
        "campaign_id": if verified { Some(campaign.campaign_id.as_str()) } else { None },
        "is_externally_registered": false,
        "rate_limits": rate_limits(campaign.brand_score),
        "date_created": iso(campaign.created),
        "date_updated": iso(campaign.created),
        "url": format!(
            "https://messaging.twilio.com/v1/Services/{}/Compliance/Usa2p/{}",
            campaign.service_sid, campaign.sid
        ),
    })
}

/// The checked fields of a campaign registration.
struct CampaignFields<'a> {
    brand: &'a str,
    description: &'a str,
    message_flow: &'a str,
    samples: Vec<&'a str>,
    usecase: &'a str,
    has_embedded_links: bool,
    has_embedded_phone: bool,
}

fn campaign_fields(form: &[(String, String)]) -> Result<CampaignFields<'_>, TwilioError> {
    let brand = sid_param(form, "BrandRegistrationSid", "BN")?;
    let description = required(form, "Description")?;
    check_length("Description", description, 40..=4_096)?;
    let message_flow = required(form, "MessageFlow")?;
    check_length("MessageFlow", message_flow, 40..=2_048)?;
    let samples = params(form, "MessageSamples");
    if samples.is_empty() {
        return Err(missing("MessageSamples"));
    }
    if !(2..=5).contains(&samples.len()) {
        return Err(invalid(
            "MessageSamples",
            format!("2 to 5 samples are needed, not {}", samples.len()),
        ));
    }
    for sample in &samples {
        check_length("MessageSamples", sample, 20..=1_024)?;
    }
    let usecase = required(form, "UsAppToPersonUsecase")?;
    if !usecase
        .bytes()
        .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
    {
        return Err(invalid("UsAppToPersonUsecase", format!("{usecase} is not a use case")));
    }
    let has_embedded_links = bool_param(form, "HasEmbeddedLinks")?.ok_or_else(|| missing("HasEmbeddedLinks"))?;
    let has_embedded_phone = bool_param(form, "HasEmbeddedPhone")?.ok_or_else(|| missing("HasEmbeddedPhone"))?;
    Ok(CampaignFields {
        brand,
        description,
        message_flow,
        samples,
        usecase,
        has_embedded_links,
        has_embedded_phone,
    })
}

/// `POST /v1/Services/{Sid}/Compliance/Usa2p`.
async fn create_campaign(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(service_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let form = form(&body);
        let onboarding = &shared.state.onboarding;
        let mut inner = onboarding.inner();
        owned_service(&mut inner, account, &service_sid)?;
        let fields = campaign_fields(&form)?;
        let brand = inner
            .brands
            .get(fields.brand)
            .filter(|brand| brand.account_sid == account)
            .ok_or_else(|| {
                invalid(
                    "BrandRegistrationSid",
                    format!("{} is not a brand of this account", fields.brand),
                )
            })?;
        if brand.status != "APPROVED" {
            return Err(conflict(format!(
                "brand {} is {}, not APPROVED",
                fields.brand, brand.status
            )));
        }
        let brand_score = brand.brand_score;
        let service = owned_service(&mut inner, account, &service_sid)?;
        if let Some(existing) = &service.campaign {
            return Err(conflict(format!(
                "Messaging Service {service_sid} already has campaign {existing}"
            )));
        }
        let campaign = CampaignRecord {
            sid: new_sid("QE"),
            account_sid: account.to_owned(),
            service_sid: service_sid.clone(),
            brand_sid: fields.brand.to_owned(),
            description: fields.description.to_owned(),
            message_flow: fields.message_flow.to_owned(),
            message_samples: fields.samples.iter().map(|sample| (*sample).to_owned()).collect(),
            usecase: fields.usecase.to_owned(),
            has_embedded_links: fields.has_embedded_links,
            has_embedded_phone: fields.has_embedded_phone,
            opt_in_message: param(&form, "OptInMessage").map(str::to_owned),
            opt_out_message: param(&form, "OptOutMessage").map(str::to_owned),
            help_message: param(&form, "HelpMessage").map(str::to_owned),
            brand_score,
            campaign_id: format!("C{}", short_id()),
            status_override: None,
            registered: Instant::now(),
            created: OffsetDateTime::now_utc(),
        };
        service.campaign = Some(campaign.sid.clone());
        // The answer to the registration itself always shows it in progress.
        let body = campaign_resource(&campaign, Duration::MAX);
        inner.campaigns.insert(campaign.sid.clone(), campaign);
        inner.stats.campaigns += 1;
        Ok((StatusCode::CREATED, body))
    })
}

/// `GET /v1/Services/{Sid}/Compliance/Usa2p/{CampaignSid}`.
async fn fetch_campaign(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((service_sid, campaign_sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&shared, &headers, |shared, account| {
        let onboarding = &shared.state.onboarding;
        let inner = onboarding.inner();
        let campaign = inner
            .campaigns
            .get(&campaign_sid)
            .filter(|campaign| campaign.account_sid == account && campaign.service_sid == service_sid)
            .ok_or_else(|| not_found(&format!("/v1/Services/{service_sid}/Compliance/Usa2p/{campaign_sid}")))?;
        Ok((
            StatusCode::OK,
            campaign_resource(campaign, onboarding.config.campaign_review_delay),
        ))
    })
}

/// The search parameters of `AvailablePhoneNumbers`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SearchQuery {
    area_code: Option<String>,
    contains: Option<String>,
    sms_enabled: Option<String>,
    in_region: Option<String>,
    page_size: Option<String>,
}

/// The keypad digit of a letter in a `Contains` pattern.
fn keypad(letter: char) -> Option<char> {
    let digit = match letter.to_ascii_uppercase() {
        'A'..='C' => '2',
        'D'..='F' => '3',
        'G'..='I' => '4',
        'J'..='L' => '5',
        'M'..='O' => '6',
        'P'..='S' => '7',
        'T'..='V' => '8',
        'W'..='Z' => '9',
        _ => return None,
    };
    Some(digit)
}

/// Whether `digits` contains `pattern` (digits, `*` for any digit) anywhere.
fn contains_pattern(digits: &str, pattern: &[char]) -> bool {
    let digits: Vec<char> = digits.chars().collect();
    pattern.is_empty()
        || digits.windows(pattern.len()).any(|window| {
            window
                .iter()
                .zip(pattern)
                .all(|(digit, wanted)| *wanted == '*' || digit == wanted)
        })
}

fn area_code(raw: &str, name: &str) -> Result<u16, TwilioError> {
    let bytes = raw.as_bytes();
    let valid = bytes.len() == 3 && bytes.iter().all(u8::is_ascii_digit) && (b'2'..=b'9').contains(&bytes[0]);
    if !valid {
        return Err(invalid(name, format!("{raw} is not a North American area code")));
    }
    raw.parse().map_err(|_| invalid(name, "not a number"))
}

/// The simulator's fictional numbers in `area_code`: `+1 {area} 555 0100` .. `0199`.
fn fictional_numbers(area_code: u16) -> impl Iterator<Item = String> {
    (0..100).map(move |suffix| format!("+1{area_code}55501{suffix:02}"))
}

/// Whether `number` is one of the simulator's fictional numbers.
fn is_fictional(number: &str) -> bool {
    number.strip_prefix("+1").is_some_and(|rest| {
        rest.len() == 10
            && rest.bytes().all(|byte| byte.is_ascii_digit())
            && area_code(&rest[..3], "PhoneNumber").is_ok()
            && &rest[3..8] == "55501"
    })
}

fn friendly(number: &str) -> String {
    match number.strip_prefix("+1") {
        Some(rest) if rest.len() == 10 => format!("({}) {}-{}", &rest[..3], &rest[3..6], &rest[6..]),
        _ => number.to_owned(),
    }
}

/// `GET /2010-04-01/Accounts/{AccountSid}/AvailablePhoneNumbers/{Country}/Local.json`.
async fn search_numbers(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((account_sid, country)): Path<(String, String)>,
    Query(query): Query<SearchQuery>,
    headers: HeaderMap,
) -> Response {
    serve_account(&shared, &headers, &account_sid, |shared, account| {
        let area = match query.area_code.as_deref().filter(|raw| !raw.is_empty()) {
            Some(raw) => area_code(raw, "AreaCode")?,
            None => DEFAULT_AREA_CODE,
        };
        let page_size = match query.page_size.as_deref() {
            None => DEFAULT_PAGE_SIZE,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
                .ok_or_else(|| invalid("PageSize", format!("{raw} is not in 1..=1000")))?,
        };
        let sms_enabled = match query.sms_enabled.as_deref() {
            None => None,
            Some(raw) if raw.eq_ignore_ascii_case("true") => Some(true),
            Some(raw) if raw.eq_ignore_ascii_case("false") => Some(false),
            Some(raw) => return Err(invalid("SmsEnabled", format!("{raw} is not true or false"))),
        };
        let pattern = match query.contains.as_deref() {
            None => Vec::new(),
            Some(raw) => raw
                .chars()
                .filter(|c| *c != '+')
                .map(|c| {
                    if c.is_ascii_digit() || c == '*' {
                        Some(c)
                    } else {
                        keypad(c)
                    }
                })
                .collect::<Option<Vec<char>>>()
                .ok_or_else(|| invalid("Contains", format!("{raw} is not a number pattern")))?,
        };
        let mut inner = shared.state.onboarding.inner();
        let taken: std::collections::HashSet<&str> = inner
            .numbers
            .values()
            .map(|number| number.phone_number.as_str())
            .collect();
        // Every simulated number is SMS capable and in the US or Canada (+1).
        let offered = matches!(country.as_str(), "US" | "CA") && sms_enabled != Some(false);
        let numbers: Vec<Value> = fictional_numbers(area)
            .filter(|_| offered)
            .filter(|number| !taken.contains(number.as_str()))
            .filter(|number| contains_pattern(&number[1..], &pattern))
            .take(page_size)
            .map(|number| {
                json!({
                    "friendly_name": friendly(&number),
                    "phone_number": number,
                    "lata": null,
                    "locality": null,
                    "rate_center": null,
                    "latitude": null,
                    "longitude": null,
                    "region": query.in_region,
                    "postal_code": null,
                    "iso_country": country,
                    "address_requirements": "none",
                    "beta": false,
                    "capabilities": {"voice": true, "SMS": true, "MMS": true, "fax": false},
                })
            })
            .collect();
        inner.stats.number_searches += 1;
        let uri = format!("/{API_VERSION}/Accounts/{account}/AvailablePhoneNumbers/{country}/Local.json");
        Ok((StatusCode::OK, json!({"available_phone_numbers": numbers, "uri": uri})))
    })
}

/// `POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json`.
async fn buy_number(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve_account(&shared, &headers, &account_sid, |shared, account| {
        let form = form(&body);
        let sms_url = url_param(&form, "SmsUrl")?;
        let status_callback = url_param(&form, "StatusCallback")?;
        let sms_method = param(&form, "SmsMethod").unwrap_or("POST").to_ascii_uppercase();
        if !matches!(sms_method.as_str(), "GET" | "POST") {
            return Err(invalid("SmsMethod", format!("{sms_method} is not GET or POST")));
        }
        let mut inner = shared.state.onboarding.inner();
        let taken = |inner: &Inner, number: &str| inner.numbers.values().any(|owned| owned.phone_number == number);
        let phone_number = match (param(&form, "PhoneNumber"), param(&form, "AreaCode")) {
            (Some(number), _) => {
                if !is_fictional(number) || taken(&inner, number) {
                    return Err(TwilioError::bad_request(
                        21422,
                        format!("PhoneNumber {number} is not available"),
                    ));
                }
                number.to_owned()
            }
            (None, Some(raw)) => {
                let area = area_code(raw, "AreaCode")?;
                fictional_numbers(area)
                    .find(|number| !taken(&inner, number))
                    .ok_or_else(|| {
                        TwilioError::bad_request(21452, format!("No phone numbers found in area code {area}"))
                    })?
            }
            (None, None) => return Err(missing("PhoneNumber")),
        };
        let now = OffsetDateTime::now_utc();
        let number = NumberRecord {
            sid: new_sid("PN"),
            account_sid: account.to_owned(),
            friendly_name: param(&form, "FriendlyName")
                .map(str::to_owned)
                .unwrap_or_else(|| friendly(&phone_number)),
            phone_number,
            sms_url: sms_url.map(str::to_owned),
            sms_method,
            status_callback: status_callback.map(str::to_owned),
            service: None,
            created: now,
        };
        let body = json!({
            "sid": number.sid,
            "account_sid": number.account_sid,
            "phone_number": number.phone_number,
            "friendly_name": number.friendly_name,
            "sms_url": number.sms_url,
            "sms_method": number.sms_method,
            "status_callback": number.status_callback,
            "status": "in-use",
            "capabilities": {"voice": true, "sms": true, "mms": true, "fax": false},
            "api_version": API_VERSION,
            "date_created": rfc2822(number.created),
            "date_updated": rfc2822(number.created),
            "uri": format!("/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers/{}.json", number.sid),
        });
        tracing::debug!(sid = %number.sid, account, "simulator sold a number");
        inner.numbers.insert(number.sid.clone(), number);
        inner.stats.numbers_purchased += 1;
        Ok((StatusCode::CREATED, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::OnboardingSimConfig;
    use crate::simulator::registry::Onboarding;

    #[test]
    fn fictional_numbers_are_recognised() {
        let numbers: Vec<String> = fictional_numbers(415).collect();
        assert_eq!(numbers.len(), 100);
        assert_eq!(numbers[0], "+14155550100");
        assert_eq!(numbers[99], "+14155550199");
        assert!(numbers.iter().all(|number| is_fictional(number)));
        for other in ["+14155550200", "+11155550100", "+4415555010", "14155550100"] {
            assert!(!is_fictional(other), "{other}");
        }
        assert_eq!(friendly("+14155550100"), "(415) 555-0100");
    }

    #[test]
    fn contains_patterns_match_anywhere_with_wildcards() {
        let pattern = |raw: &str| raw.chars().collect::<Vec<char>>();
        assert!(contains_pattern("14155550142", &pattern("0142")));
        assert!(contains_pattern("14155550142", &pattern("55*01")));
        assert!(!contains_pattern("14155550142", &pattern("0143")));
        assert!(contains_pattern("14155550142", &[]));
        assert_eq!(keypad('k'), Some('5'));
    }

    #[test]
    fn rate_limits_follow_the_score() {
        assert_eq!(rate_limits(Some(80))["att"]["tpm"], 4_500);
        assert_eq!(rate_limits(Some(60))["tmobile"]["daily_cap"], 40_000);
        assert_eq!(rate_limits(None)["att"]["tpm"], 240);
    }

    #[test]
    fn the_fault_switch_and_the_first_n_counter_answer_503() {
        let onboarding = Onboarding::new(
            OnboardingSimConfig {
                unavailable_for_first: 2,
                ..OnboardingSimConfig::default()
            },
            1,
        );
        assert!(onboarding.admit());
        assert!(onboarding.admit());
        assert!(!onboarding.admit());
        onboarding.set_unavailable(true);
        assert!(onboarding.admit());
        onboarding.set_unavailable(false);
        assert!(!onboarding.admit());
        assert_eq!((onboarding.stats().requests, onboarding.stats().unavailable), (5, 3));
    }
}
