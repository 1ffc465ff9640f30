//! Twilio account operations for onboarding a tenant: subaccounts, Trust Hub bundles (customer
//! profiles and A2P trust products with their end users, documents, assignments and
//! evaluations), A2P 10DLC brand registrations, Messaging Services and their numbers, A2P
//! campaigns, and phone number search and purchase. Each is a [`TwilioClient`] method returning
//! `Result<T, AccountOpError>`.
//!
//! # What an error means for the onboarding state machine
//!
//! The onboarding flow must never create a Twilio object twice (a second brand registration is
//! billed and vetted again; a second number is bought and billed), so an error says whether
//! Twilio can have acted on the request:
//!
//! | what happened | error |
//! |---|---|
//! | HTTP 401 | [`AccountOpError::InvalidCredentials`] |
//! | HTTP 429, or a 5xx except a write's 504 | [`AccountOpError::Transient`] (honour `retry_after`) |
//! | the connection never opened (DNS, TCP, TLS), or the request was never built | [`AccountOpError::Transient`] |
//! | any other 3xx/4xx (Twilio's code and message in the [`ApiError`]) | [`AccountOpError::Rejected`]: sending the same request again fails again |
//! | a write (create, update, add) timed out or lost its connection after it was sent, a 504, or a 2xx whose body is lost or unreadable | [`AccountOpError::Unknown`] |
//! | a read (fetch, search) timed out, lost its connection, or got a 504 | [`AccountOpError::Transient`]: reading again is harmless |
//! | a read got a 2xx whose body is not the documented resource | [`AccountOpError::UnexpectedResponse`] |
//!
//! **On [`AccountOpError::Unknown`] the caller must look the object up (fetch it by a SID it
//! already has, or list what exists) before creating it again**: Twilio may well have created it.
//!
//! The three APIs live on three hosts ([`TwilioClientSettings`](super::TwilioClientSettings)'s
//! `base_url`, `trusthub_base_url` and `messaging_base_url`); the paths are Twilio's.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::form_urlencoded;

use super::client::{
    API_VERSION, ApiError, FORM_CONTENT_TYPE, TwilioAccount, TwilioClient, retry_after, transport_label,
};
use crate::PhoneNumber;

/// The Trust Hub policy of a secondary customer profile (ISV onboarding; Twilio's docs, not in
/// providers.md).
pub const SECONDARY_CUSTOMER_PROFILE_POLICY_SID: &str = "RNdfbf3fae0e1107f8aded0e7cead80bf5";
/// The Trust Hub policy of an A2P messaging profile trust product (Twilio's docs, not in
/// providers.md).
pub const A2P_TRUST_PRODUCT_POLICY_SID: &str = "RNb0d4771c2c98518d916a3d4cd70a8f8b";
/// The largest `PageSize` of a number search.
pub const MAX_SEARCH_PAGE_SIZE: u32 = 1_000;

/// Why an account operation did not succeed; see the module docs for which is which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountOpError {
    /// Twilio did not process the request: safe to send it again after a backoff.
    #[error("twilio {operation} is temporarily unavailable ({reason})")]
    Transient {
        /// The operation (`create subaccount`, ...).
        operation: &'static str,
        /// A stable label (`TWILIO_HTTP_503`, `TWILIO_20429`, `TWILIO_CONNECT`, `TWILIO_TIMEOUT`).
        reason: String,
        /// How long Twilio asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Twilio rejected the account SID and auth token (HTTP 401).
    #[error("twilio {operation}: the account credentials were rejected")]
    InvalidCredentials {
        /// The operation.
        operation: &'static str,
    },
    /// Twilio refused the request (bad or missing parameter, unknown object, wrong state):
    /// sending it again unchanged fails again.
    #[error(
        "twilio {operation} was refused (HTTP {}, code {}): {}",
        .error.http_status,
        .error.code_label(),
        .error.message.as_deref().unwrap_or("no message")
    )]
    Rejected {
        /// The operation.
        operation: &'static str,
        /// What Twilio said.
        error: ApiError,
    },
    /// A write may or may not have been processed: look the object up before creating it again.
    #[error("the outcome of twilio {operation} is unknown ({reason}): look it up before trying again")]
    Unknown {
        /// The operation.
        operation: &'static str,
        /// A stable label (`TWILIO_TIMEOUT`, `TWILIO_CONNECTION_LOST`, `TWILIO_HTTP_504`, ...).
        reason: String,
    },
    /// A read succeeded but its body is not the documented resource.
    #[error("twilio {operation} answered with an unreadable body ({reason})")]
    UnexpectedResponse {
        /// The operation.
        operation: &'static str,
        /// What could not be read.
        reason: String,
    },
}

impl AccountOpError {
    /// Whether the same request may simply be sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Whether Twilio may have acted on a write without our knowing.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown { .. })
    }

    /// Whether Twilio said the object does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.api_error().is_some_and(|error| error.http_status == 404)
    }

    /// Twilio's error, for a refusal.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::Rejected { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The wait Twilio asked for, for a transient error.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Declares a Twilio string enumeration: known values, plus `Other` for any value this client
/// does not know (kept as Twilio spelled it, never an error).
macro_rules! twilio_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(from = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this client does not know, as Twilio spelled it.
            Other(String),
        }

        impl $name {
            /// Twilio's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(other) => other,
                }
            }

            /// Reads Twilio's spelling; an unknown value becomes `Other`.
            pub fn parse(raw: &str) -> Self {
                match raw {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(raw: String) -> Self {
                Self::parse(&raw)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(super) use twilio_enum;

twilio_enum! {
    /// The status of a Twilio account.
    AccountStatus {
        /// In use.
        Active = "active",
        /// Suspended by Twilio or its owner.
        Suspended = "suspended",
        /// Closed for good.
        Closed = "closed",
    }
}

twilio_enum! {
    /// The status of a Trust Hub bundle (customer profile or trust product).
    BundleStatus {
        /// Being built.
        Draft = "draft",
        /// Submitted, waiting for review.
        PendingReview = "pending-review",
        /// Twilio is reviewing it.
        InReview = "in-review",
        /// Twilio rejected it; fix and submit again.
        TwilioRejected = "twilio-rejected",
        /// Twilio approved it.
        TwilioApproved = "twilio-approved",
    }
}

twilio_enum! {
    /// The result of a bundle evaluation.
    EvaluationStatus {
        /// Every requirement of the policy is met.
        Compliant = "compliant",
        /// Something is missing or invalid; the results say what.
        Noncompliant = "noncompliant",
    }
}

twilio_enum! {
    /// The kind of an A2P 10DLC brand.
    BrandType {
        /// A registered business.
        Standard = "STANDARD",
        /// A sole proprietor (1 campaign, 1 number, low throughput).
        SoleProprietor = "SOLE_PROPRIETOR",
    }
}

twilio_enum! {
    /// The status of an A2P 10DLC brand registration.
    BrandStatus {
        /// Submitted, not yet vetted.
        Pending = "PENDING",
        /// Vetted: campaigns may be registered.
        Approved = "APPROVED",
        /// Refused; `failure_reason` and `errors` say why.
        Failed = "FAILED",
        /// Under manual review.
        InReview = "IN_REVIEW",
        /// Being deleted.
        DeletionPending = "DELETION_PENDING",
        /// Deletion failed.
        DeletionFailed = "DELETION_FAILED",
        /// Suspended.
        Suspended = "SUSPENDED",
    }
}

twilio_enum! {
    /// The status of an A2P campaign (`campaign_status`).
    CampaignStatus {
        /// Submitted.
        Pending = "PENDING",
        /// Being vetted.
        InProgress = "IN_PROGRESS",
        /// Registered: its numbers may send.
        Verified = "VERIFIED",
        /// Refused.
        Failed = "FAILED",
    }
}

/// Which kind of Trust Hub bundle an operation works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleKind {
    /// A (secondary) customer profile: `/v1/CustomerProfiles`.
    CustomerProfile,
    /// A trust product (the A2P messaging profile): `/v1/TrustProducts`.
    TrustProduct,
}

impl BundleKind {
    /// The collection's path segment.
    pub fn collection(self) -> &'static str {
        match self {
            Self::CustomerProfile => "CustomerProfiles",
            Self::TrustProduct => "TrustProducts",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::CustomerProfile => "customer profile",
            Self::TrustProduct => "trust product",
        }
    }
}

/// A subaccount just created; its auth token is the only copy Twilio hands out this way.
#[derive(Debug, Clone)]
pub struct Subaccount {
    /// Its SID (`AC...`).
    pub sid: String,
    /// Its auth token.
    pub auth_token: SecretString,
    /// Its name.
    pub friendly_name: String,
    /// Its status.
    pub status: AccountStatus,
}

impl Subaccount {
    /// The credentials to act as this subaccount.
    pub fn account(&self) -> TwilioAccount {
        TwilioAccount::new(self.sid.clone(), self.auth_token.clone())
    }
}

/// An account as fetched (the auth token is not read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountInfo {
    /// Its SID.
    pub sid: String,
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
    /// Its status.
    pub status: AccountStatus,
    /// The parent account (itself for a main account).
    #[serde(default)]
    pub owner_account_sid: Option<String>,
}

/// A new Trust Hub bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBundle {
    /// Its name.
    pub friendly_name: String,
    /// The email Twilio writes to about its review.
    pub email: String,
    /// The policy it must satisfy (`RN...`), e.g. [`SECONDARY_CUSTOMER_PROFILE_POLICY_SID`].
    pub policy_sid: String,
    /// Where Twilio posts its status changes.
    pub status_callback: Option<String>,
}

/// A Trust Hub bundle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Bundle {
    /// Its SID (`BU...`).
    pub sid: String,
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
    /// Its review status.
    pub status: BundleStatus,
    /// The policy it must satisfy.
    #[serde(default)]
    pub policy_sid: Option<String>,
    /// The email of its review.
    #[serde(default)]
    pub email: Option<String>,
}

/// A new Trust Hub end user (business information, authorized representative, A2P messaging
/// profile information).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEndUser {
    /// Its type, e.g. `customer_profile_business_information`, `authorized_representative_1`,
    /// `us_a2p_messaging_profile_information`.
    pub end_user_type: String,
    /// Its name.
    pub friendly_name: String,
    /// Its attributes (a JSON object, sent as a JSON string).
    pub attributes: serde_json::Value,
}

/// A Trust Hub end user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EndUser {
    /// Its SID (`IT...`).
    pub sid: String,
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub end_user_type: String,
}

/// A new Address resource of an account (`Addresses.json`): Trust Hub's
/// `customer_profile_address` document references one by its SID (`address_sids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAddress {
    /// The name of the business or person at the address.
    pub customer_name: String,
    /// The street line.
    pub street: String,
    /// The city.
    pub city: String,
    /// The state or region.
    pub region: String,
    /// The postal code.
    pub postal_code: String,
    /// The ISO 3166-1 alpha-2 country code.
    pub iso_country: String,
    /// Its name.
    pub friendly_name: String,
}

/// An Address resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Address {
    /// Its SID (`AD...`).
    pub sid: String,
    /// Whether Twilio validated the address.
    #[serde(default, deserialize_with = "null_as_default")]
    pub validated: bool,
}

/// A new Trust Hub supporting document (e.g. the business address).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSupportingDocument {
    /// Its type, e.g. `customer_profile_address`.
    pub document_type: String,
    /// Its name.
    pub friendly_name: String,
    /// Its attributes (a JSON object, sent as a JSON string), e.g. `{"address_sids": "AD..."}`.
    pub attributes: serde_json::Value,
}

/// A Trust Hub supporting document.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SupportingDocument {
    /// Its SID (`RD...`).
    pub sid: String,
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub document_type: String,
    /// Its review status, as Twilio spells it.
    #[serde(default)]
    pub status: Option<String>,
}

/// An object assigned to a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EntityAssignment {
    /// Its SID (`BV...`).
    pub sid: String,
    /// The object assigned (end user, document, or a customer profile for a trust product).
    pub object_sid: String,
    /// The bundle.
    #[serde(default, rename = "customer_profile_sid", alias = "trust_product_sid")]
    pub bundle_sid: Option<String>,
}

/// One requirement of a bundle evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EvaluationResult {
    /// The requirement.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// The kind of object it needs.
    #[serde(default)]
    pub object_type: Option<String>,
    /// Whether it is met.
    #[serde(default)]
    pub passed: bool,
    /// Why not.
    #[serde(default)]
    pub failure_reason: Option<String>,
}

/// A bundle evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Evaluation {
    /// Its SID (`EL...`).
    pub sid: String,
    /// Compliant or not.
    pub status: EvaluationStatus,
    /// Each requirement and whether it is met.
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: Vec<EvaluationResult>,
}

/// A new A2P 10DLC brand registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBrandRegistration {
    /// The secondary customer profile (`BU...`).
    pub customer_profile_bundle_sid: String,
    /// The A2P trust product (`BU...`).
    pub a2p_profile_bundle_sid: String,
    /// Standard or sole proprietor.
    pub brand_type: BrandType,
    /// A mock brand (testing only, never vetted by TCR).
    pub mock: bool,
    /// Skip the automatic secondary vetting.
    pub skip_automatic_sec_vet: bool,
}

/// An A2P 10DLC brand registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BrandRegistration {
    /// Its SID (`BN...`).
    pub sid: String,
    /// Its status.
    pub status: BrandStatus,
    /// Its kind.
    #[serde(default)]
    pub brand_type: Option<BrandType>,
    /// The trust score (1..100), once vetted.
    #[serde(default)]
    pub brand_score: Option<u32>,
    /// The Campaign Registry's id, once registered.
    #[serde(default)]
    pub tcr_id: Option<String>,
    /// The identity verification status, as Twilio spells it.
    #[serde(default)]
    pub identity_status: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// The detailed errors of a failure, as Twilio gives them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<serde_json::Value>,
}

/// A new Messaging Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessagingService {
    /// Its name.
    pub friendly_name: String,
    /// Where inbound messages are posted.
    pub inbound_request_url: Option<String>,
    /// Where status callbacks of its messages go.
    pub status_callback: Option<String>,
}

/// A Messaging Service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessagingService {
    /// Its SID (`MG...`).
    pub sid: String,
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
}

/// A number in a Messaging Service's sender pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServicePhoneNumber {
    /// The number's SID (`PN...`).
    pub sid: String,
    /// The number.
    pub phone_number: PhoneNumber,
    /// The service.
    #[serde(default)]
    pub service_sid: Option<String>,
}

/// A new A2P campaign (`Compliance/Usa2p`) of a Messaging Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    /// The approved brand (`BN...`).
    pub brand_registration_sid: String,
    /// What the campaign is for (40..4,096 characters).
    pub description: String,
    /// How recipients opt in (40..2,048 characters).
    pub message_flow: String,
    /// 2..5 sample messages, each 20..1,024 characters.
    pub message_samples: Vec<String>,
    /// The use case, e.g. `MIXED`, `MARKETING`, `ACCOUNT_NOTIFICATION`, `2FA`.
    pub us_app_to_person_usecase: String,
    /// Whether messages carry links.
    pub has_embedded_links: bool,
    /// Whether messages carry phone numbers.
    pub has_embedded_phone: bool,
    /// The answer to an opt-in keyword.
    pub opt_in_message: Option<String>,
    /// The answer to an opt-out keyword.
    pub opt_out_message: Option<String>,
    /// The answer to a help keyword.
    pub help_message: Option<String>,
    /// Opt-in keywords.
    pub opt_in_keywords: Vec<String>,
    /// Opt-out keywords.
    pub opt_out_keywords: Vec<String>,
    /// Help keywords.
    pub help_keywords: Vec<String>,
}

/// An A2P campaign.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Campaign {
    /// Its SID (`QE...`).
    pub sid: String,
    /// Its status.
    pub campaign_status: CampaignStatus,
    /// The brand.
    #[serde(default)]
    pub brand_registration_sid: Option<String>,
    /// The Messaging Service.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// The use case.
    #[serde(default)]
    pub us_app_to_person_usecase: Option<String>,
    /// The Campaign Registry's id, once registered.
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// Per-carrier limits, as Twilio gives them.
    #[serde(default)]
    pub rate_limits: Option<serde_json::Value>,
}

/// A search for numbers to buy (`AvailablePhoneNumbers/{Country}/Local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberSearch {
    /// ISO country code, e.g. `US`.
    pub country: String,
    /// The area code.
    pub area_code: Option<u16>,
    /// A pattern the number must contain (digits, letters, `*` for any digit).
    pub contains: Option<String>,
    /// Only numbers that can (`true`) or cannot (`false`) send SMS.
    pub sms_enabled: Option<bool>,
    /// A region (US state), e.g. `CA`.
    pub in_region: Option<String>,
    /// The most numbers to return (at most [`MAX_SEARCH_PAGE_SIZE`]).
    pub page_size: Option<u32>,
}

impl NumberSearch {
    /// A search for SMS-capable local numbers in `country` and `area_code`.
    pub fn local(country: impl Into<String>, area_code: u16) -> Self {
        Self {
            country: country.into(),
            area_code: Some(area_code),
            contains: None,
            sms_enabled: Some(true),
            in_region: None,
            page_size: None,
        }
    }
}

/// What a number can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Capabilities {
    /// Voice calls.
    #[serde(default)]
    pub voice: bool,
    /// SMS.
    #[serde(default, rename = "SMS", alias = "sms")]
    pub sms: bool,
    /// MMS.
    #[serde(default, rename = "MMS", alias = "mms")]
    pub mms: bool,
}

/// A number that can be bought.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AvailableNumber {
    /// The number.
    pub phone_number: PhoneNumber,
    /// Its display form.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
    /// Its region (US state).
    #[serde(default)]
    pub region: Option<String>,
    /// Its locality.
    #[serde(default)]
    pub locality: Option<String>,
    /// What it can do.
    #[serde(default, deserialize_with = "null_as_default")]
    pub capabilities: Capabilities,
}

/// A number to buy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncomingNumber {
    /// The number, as a search returned it.
    pub phone_number: PhoneNumber,
    /// Where inbound SMS are posted.
    pub sms_url: Option<String>,
    /// `POST` or `GET` for `sms_url`.
    pub sms_method: Option<String>,
    /// Where Twilio posts status changes.
    pub status_callback: Option<String>,
    /// Its name.
    pub friendly_name: Option<String>,
}

/// A number the account owns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncomingNumber {
    /// Its SID (`PN...`).
    pub sid: String,
    /// The number.
    pub phone_number: PhoneNumber,
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
}

/// Whether a lost answer can hide a change at Twilio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Reads nothing but state: safe to repeat.
    Read,
    /// Creates or changes something: an answer lost after sending is unknown.
    Write,
}

/// A request body: a form (the 2010, Trust Hub and Messaging v1 APIs) or JSON (Messaging v2,
/// Content).
pub(super) enum Body {
    /// `application/x-www-form-urlencoded`.
    Form(String),
    /// `application/json`.
    Json(Vec<u8>),
}

/// An `application/x-www-form-urlencoded` body.
struct Form(form_urlencoded::Serializer<'static, String>);

impl Form {
    fn new() -> Self {
        Self(form_urlencoded::Serializer::new(String::new()))
    }

    fn put(mut self, name: &str, value: &str) -> Self {
        self.0.append_pair(name, value);
        self
    }

    fn opt(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.put(name, value),
            None => self,
        }
    }

    fn flag(self, name: &str, value: bool) -> Self {
        self.put(name, if value { "true" } else { "false" })
    }

    fn each(self, name: &str, values: &[String]) -> Self {
        values.iter().fold(self, |form, value| form.put(name, value))
    }

    fn finish(mut self) -> Option<Body> {
        Some(Body::Form(self.0.finish()))
    }
}

/// `null` reads as the type's default (Twilio sends `null` for many nullable fields).
pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `base` with `segments` appended, each percent-encoded as one path segment.
pub(super) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // `parse_base_url` only accepts URLs that can be a base, so this always succeeds.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A created subaccount as Twilio answers it: only the pieces read.
#[derive(Deserialize)]
struct SubaccountResource {
    sid: String,
    auth_token: String,
    #[serde(default)]
    friendly_name: String,
    status: AccountStatus,
}

#[derive(Deserialize)]
struct AvailableNumbers {
    #[serde(default)]
    available_phone_numbers: Vec<AvailableNumber>,
}

impl TwilioClient {
    /// Creates a subaccount of `parent`: `POST /2010-04-01/Accounts.json`.
    pub async fn create_subaccount(
        &self,
        parent: &TwilioAccount,
        friendly_name: &str,
    ) -> Result<Subaccount, AccountOpError> {
        let url = endpoint(&self.base, &[API_VERSION, "Accounts.json"]);
        let form = Form::new().put("FriendlyName", friendly_name).finish();
        let created: SubaccountResource = self
            .call(parent, Method::POST, url, form, Effect::Write, "create subaccount")
            .await?;
        Ok(Subaccount {
            sid: created.sid,
            auth_token: SecretString::from(created.auth_token),
            friendly_name: created.friendly_name,
            status: created.status,
        })
    }

    /// Fetches `sid` as `account` (itself or its parent): `GET /2010-04-01/Accounts/{Sid}.json`.
    /// Fetching an account with its own credentials verifies them: a wrong token is
    /// [`AccountOpError::InvalidCredentials`].
    pub async fn fetch_account(&self, account: &TwilioAccount, sid: &str) -> Result<AccountInfo, AccountOpError> {
        let url = endpoint(&self.base, &[API_VERSION, "Accounts", &format!("{sid}.json")]);
        self.call(account, Method::GET, url, None, Effect::Read, "fetch account")
            .await
    }

    /// Creates a customer profile or trust product: `POST /v1/CustomerProfiles` or `/v1/TrustProducts`.
    pub async fn create_bundle(
        &self,
        account: &TwilioAccount,
        kind: BundleKind,
        bundle: &NewBundle,
    ) -> Result<Bundle, AccountOpError> {
        let url = endpoint(&self.trusthub, &["v1", kind.collection()]);
        let form = Form::new()
            .put("FriendlyName", &bundle.friendly_name)
            .put("Email", &bundle.email)
            .put("PolicySid", &bundle.policy_sid)
            .opt("StatusCallback", bundle.status_callback.as_deref())
            .finish();
        let operation = match kind {
            BundleKind::CustomerProfile => "create customer profile",
            BundleKind::TrustProduct => "create trust product",
        };
        self.call(account, Method::POST, url, form, Effect::Write, operation)
            .await
    }

    /// Fetches a customer profile or trust product: `GET /v1/{CustomerProfiles|TrustProducts}/{Sid}`.
    pub async fn fetch_bundle(
        &self,
        account: &TwilioAccount,
        kind: BundleKind,
        sid: &str,
    ) -> Result<Bundle, AccountOpError> {
        let url = endpoint(&self.trusthub, &["v1", kind.collection(), sid]);
        let operation = match kind {
            BundleKind::CustomerProfile => "fetch customer profile",
            BundleKind::TrustProduct => "fetch trust product",
        };
        self.call(account, Method::GET, url, None, Effect::Read, operation)
            .await
    }

    /// Submits a bundle for review: `POST /v1/{CustomerProfiles|TrustProducts}/{Sid}` with
    /// `Status=pending-review`. On [`AccountOpError::Unknown`], fetch the bundle: a submitted one
    /// is no longer `draft`.
    pub async fn submit_bundle(
        &self,
        account: &TwilioAccount,
        kind: BundleKind,
        sid: &str,
    ) -> Result<Bundle, AccountOpError> {
        let url = endpoint(&self.trusthub, &["v1", kind.collection(), sid]);
        let form = Form::new().put("Status", BundleStatus::PendingReview.as_str()).finish();
        let operation = match kind {
            BundleKind::CustomerProfile => "submit customer profile",
            BundleKind::TrustProduct => "submit trust product",
        };
        self.call(account, Method::POST, url, form, Effect::Write, operation)
            .await
    }

    /// Creates an end user: `POST /v1/EndUsers`.
    pub async fn create_end_user(&self, account: &TwilioAccount, user: &NewEndUser) -> Result<EndUser, AccountOpError> {
        let url = endpoint(&self.trusthub, &["v1", "EndUsers"]);
        let form = Form::new()
            .put("Type", &user.end_user_type)
            .put("FriendlyName", &user.friendly_name)
            .put("Attributes", &user.attributes.to_string())
            .finish();
        self.call(account, Method::POST, url, form, Effect::Write, "create end user")
            .await
    }

    /// Creates an Address resource on `account`:
    /// `POST /2010-04-01/Accounts/{AccountSid}/Addresses.json`.
    pub async fn create_address(
        &self,
        account: &TwilioAccount,
        address: &NewAddress,
    ) -> Result<Address, AccountOpError> {
        let url = endpoint(
            &self.base,
            &[API_VERSION, "Accounts", &account.account_sid, "Addresses.json"],
        );
        let form = Form::new()
            .put("CustomerName", &address.customer_name)
            .put("Street", &address.street)
            .put("City", &address.city)
            .put("Region", &address.region)
            .put("PostalCode", &address.postal_code)
            .put("IsoCountry", &address.iso_country)
            .put("FriendlyName", &address.friendly_name)
            .finish();
        self.call(account, Method::POST, url, form, Effect::Write, "create address")
            .await
    }

    /// Creates a supporting document: `POST /v1/SupportingDocuments`.
    pub async fn create_supporting_document(
        &self,
        account: &TwilioAccount,
        document: &NewSupportingDocument,
    ) -> Result<SupportingDocument, AccountOpError> {
        let url = endpoint(&self.trusthub, &["v1", "SupportingDocuments"]);
        let form = Form::new()
            .put("Type", &document.document_type)
            .put("FriendlyName", &document.friendly_name)
            .put("Attributes", &document.attributes.to_string())
            .finish();
        self.call(
            account,
            Method::POST,
            url,
            form,
            Effect::Write,
            "create supporting document",
        )
        .await
    }

    /// Assigns an object (end user, document, or a customer profile to a trust product) to a
    /// bundle: `POST /v1/{CustomerProfiles|TrustProducts}/{Sid}/EntityAssignments`.
    pub async fn assign_to_bundle(
        &self,
        account: &TwilioAccount,
        kind: BundleKind,
        bundle_sid: &str,
        object_sid: &str,
    ) -> Result<EntityAssignment, AccountOpError> {
        let url = endpoint(
            &self.trusthub,
            &["v1", kind.collection(), bundle_sid, "EntityAssignments"],
        );
        let form = Form::new().put("ObjectSid", object_sid).finish();
        let operation = match kind {
            BundleKind::CustomerProfile => "assign to customer profile",
            BundleKind::TrustProduct => "assign to trust product",
        };
        self.call(account, Method::POST, url, form, Effect::Write, operation)
            .await
    }

    /// Evaluates a bundle against its policy: `POST /v1/{CustomerProfiles|TrustProducts}/{Sid}/Evaluations`.
    /// An evaluation changes nothing but creates a record, so repeating one is harmless.
    pub async fn evaluate_bundle(
        &self,
        account: &TwilioAccount,
        kind: BundleKind,
        bundle_sid: &str,
        policy_sid: &str,
    ) -> Result<Evaluation, AccountOpError> {
        let url = endpoint(&self.trusthub, &["v1", kind.collection(), bundle_sid, "Evaluations"]);
        let form = Form::new().put("PolicySid", policy_sid).finish();
        tracing::debug!(bundle_sid, kind = kind.noun(), "evaluating twilio bundle");
        self.call(account, Method::POST, url, form, Effect::Read, "evaluate bundle")
            .await
    }

    /// Registers an A2P 10DLC brand: `POST /v1/a2p/BrandRegistrations` (messaging API).
    pub async fn create_brand_registration(
        &self,
        account: &TwilioAccount,
        brand: &NewBrandRegistration,
    ) -> Result<BrandRegistration, AccountOpError> {
        let url = endpoint(&self.messaging, &["v1", "a2p", "BrandRegistrations"]);
        let form = Form::new()
            .put("CustomerProfileBundleSid", &brand.customer_profile_bundle_sid)
            .put("A2PProfileBundleSid", &brand.a2p_profile_bundle_sid)
            .put("BrandType", brand.brand_type.as_str())
            .flag("Mock", brand.mock)
            .flag("SkipAutomaticSecVet", brand.skip_automatic_sec_vet)
            .finish();
        self.call(
            account,
            Method::POST,
            url,
            form,
            Effect::Write,
            "create brand registration",
        )
        .await
    }

    /// Fetches a brand registration: `GET /v1/a2p/BrandRegistrations/{Sid}`.
    pub async fn fetch_brand_registration(
        &self,
        account: &TwilioAccount,
        sid: &str,
    ) -> Result<BrandRegistration, AccountOpError> {
        let url = endpoint(&self.messaging, &["v1", "a2p", "BrandRegistrations", sid]);
        self.call(
            account,
            Method::GET,
            url,
            None,
            Effect::Read,
            "fetch brand registration",
        )
        .await
    }

    /// Creates a Messaging Service: `POST /v1/Services`.
    pub async fn create_messaging_service(
        &self,
        account: &TwilioAccount,
        service: &NewMessagingService,
    ) -> Result<MessagingService, AccountOpError> {
        let url = endpoint(&self.messaging, &["v1", "Services"]);
        let form = Form::new()
            .put("FriendlyName", &service.friendly_name)
            .opt("InboundRequestUrl", service.inbound_request_url.as_deref())
            .opt("StatusCallback", service.status_callback.as_deref())
            .finish();
        self.call(
            account,
            Method::POST,
            url,
            form,
            Effect::Write,
            "create messaging service",
        )
        .await
    }

    /// Adds a number the account owns to a Messaging Service: `POST /v1/Services/{Sid}/PhoneNumbers`.
    pub async fn add_service_phone_number(
        &self,
        account: &TwilioAccount,
        service_sid: &str,
        phone_number_sid: &str,
    ) -> Result<ServicePhoneNumber, AccountOpError> {
        let url = endpoint(&self.messaging, &["v1", "Services", service_sid, "PhoneNumbers"]);
        let form = Form::new().put("PhoneNumberSid", phone_number_sid).finish();
        self.call(
            account,
            Method::POST,
            url,
            form,
            Effect::Write,
            "add service phone number",
        )
        .await
    }

    /// Registers an A2P campaign on a Messaging Service: `POST /v1/Services/{Sid}/Compliance/Usa2p`.
    pub async fn create_campaign(
        &self,
        account: &TwilioAccount,
        service_sid: &str,
        campaign: &NewCampaign,
    ) -> Result<Campaign, AccountOpError> {
        let url = endpoint(&self.messaging, &["v1", "Services", service_sid, "Compliance", "Usa2p"]);
        let form = Form::new()
            .put("BrandRegistrationSid", &campaign.brand_registration_sid)
            .put("Description", &campaign.description)
            .put("MessageFlow", &campaign.message_flow)
            .each("MessageSamples", &campaign.message_samples)
            .put("UsAppToPersonUsecase", &campaign.us_app_to_person_usecase)
            .flag("HasEmbeddedLinks", campaign.has_embedded_links)
            .flag("HasEmbeddedPhone", campaign.has_embedded_phone)
            .opt("OptInMessage", campaign.opt_in_message.as_deref())
            .opt("OptOutMessage", campaign.opt_out_message.as_deref())
            .opt("HelpMessage", campaign.help_message.as_deref())
            .each("OptInKeywords", &campaign.opt_in_keywords)
            .each("OptOutKeywords", &campaign.opt_out_keywords)
            .each("HelpKeywords", &campaign.help_keywords)
            .finish();
        self.call(account, Method::POST, url, form, Effect::Write, "create campaign")
            .await
    }

    /// Fetches a campaign: `GET /v1/Services/{Sid}/Compliance/Usa2p/{CampaignSid}`.
    pub async fn fetch_campaign(
        &self,
        account: &TwilioAccount,
        service_sid: &str,
        campaign_sid: &str,
    ) -> Result<Campaign, AccountOpError> {
        let url = endpoint(
            &self.messaging,
            &["v1", "Services", service_sid, "Compliance", "Usa2p", campaign_sid],
        );
        self.call(account, Method::GET, url, None, Effect::Read, "fetch campaign")
            .await
    }

    /// Searches numbers to buy: `GET /2010-04-01/Accounts/{AccountSid}/AvailablePhoneNumbers/{Country}/Local.json`.
    pub async fn search_available_numbers(
        &self,
        account: &TwilioAccount,
        search: &NumberSearch,
    ) -> Result<Vec<AvailableNumber>, AccountOpError> {
        let mut url = endpoint(
            &self.base,
            &[
                API_VERSION,
                "Accounts",
                &account.account_sid,
                "AvailablePhoneNumbers",
                &search.country,
                "Local.json",
            ],
        );
        {
            let mut query = url.query_pairs_mut();
            if let Some(area_code) = search.area_code {
                query.append_pair("AreaCode", &area_code.to_string());
            }
            if let Some(contains) = &search.contains {
                query.append_pair("Contains", contains);
            }
            if let Some(sms_enabled) = search.sms_enabled {
                query.append_pair("SmsEnabled", if sms_enabled { "true" } else { "false" });
            }
            if let Some(region) = &search.in_region {
                query.append_pair("InRegion", region);
            }
            if let Some(page_size) = search.page_size {
                query.append_pair("PageSize", &page_size.min(MAX_SEARCH_PAGE_SIZE).to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let found: AvailableNumbers = self
            .call(
                account,
                Method::GET,
                url,
                None,
                Effect::Read,
                "search available numbers",
            )
            .await?;
        Ok(found.available_phone_numbers)
    }

    /// Buys a number: `POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json`. On
    /// [`AccountOpError::Unknown`], list the account's numbers before buying again.
    pub async fn buy_number(
        &self,
        account: &TwilioAccount,
        number: &NewIncomingNumber,
    ) -> Result<IncomingNumber, AccountOpError> {
        let url = endpoint(
            &self.base,
            &[
                API_VERSION,
                "Accounts",
                &account.account_sid,
                "IncomingPhoneNumbers.json",
            ],
        );
        let form = Form::new()
            .put("PhoneNumber", number.phone_number.as_str())
            .opt("SmsUrl", number.sms_url.as_deref())
            .opt("SmsMethod", number.sms_method.as_deref())
            .opt("StatusCallback", number.status_callback.as_deref())
            .opt("FriendlyName", number.friendly_name.as_deref())
            .finish();
        self.call(account, Method::POST, url, form, Effect::Write, "buy number")
            .await
    }

    /// Sends one request and maps its answer; see the module docs.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        account: &TwilioAccount,
        method: Method,
        url: Url,
        body: Option<Body>,
        effect: Effect,
        operation: &'static str,
    ) -> Result<T, AccountOpError> {
        let mut request = self
            .http
            .request(method, url)
            .basic_auth(&account.account_sid, Some(account.auth_token.expose_secret()))
            .header(ACCEPT, "application/json");
        request = match body {
            Some(Body::Form(form)) => request.header(CONTENT_TYPE, FORM_CONTENT_TYPE).body(form),
            Some(Body::Json(json)) => request.header(CONTENT_TYPE, "application/json").body(json),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let reason = transport_label(&error).to_owned();
                tracing::debug!(operation, account_sid = %account.account_sid, error = %error, "twilio account request failed");
                return Err(if error.is_connect() || error.is_builder() || effect == Effect::Read {
                    AccountOpError::Transient {
                        operation,
                        reason,
                        retry_after: None,
                    }
                } else {
                    AccountOpError::Unknown { operation, reason }
                });
            }
        };
        let status = response.status();
        let wait = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(body) => Some(body),
            Err(error) => {
                tracing::debug!(operation, account_sid = %account.account_sid, %status, error = %error, "twilio account answer body lost");
                None
            }
        };
        let result = answer(operation, effect, status, wait, body.as_deref());
        if let Err(error) = &result {
            tracing::debug!(operation, account_sid = %account.account_sid, %status, error = %error, "twilio account operation failed");
        }
        result
    }
}

/// Maps an answer; `body` is `None` when it could not be read.
fn answer<T: DeserializeOwned>(
    operation: &'static str,
    effect: Effect,
    status: StatusCode,
    wait: Option<Duration>,
    body: Option<&[u8]>,
) -> Result<T, AccountOpError> {
    if status.is_success() {
        let unreadable = |reason: String| match effect {
            Effect::Write => AccountOpError::Unknown { operation, reason },
            Effect::Read => AccountOpError::UnexpectedResponse { operation, reason },
        };
        // A 204 (a delete) has no body: it reads as JSON `null`, which `()` accepts.
        let body = if status == StatusCode::NO_CONTENT {
            Some(&b"null"[..])
        } else {
            body
        };
        return match body {
            Some(body) => serde_json::from_slice(body).map_err(|error| {
                tracing::debug!(operation, error = %error, "twilio account answer unreadable");
                unreadable("TWILIO_RESPONSE_UNREADABLE".to_owned())
            }),
            None if effect == Effect::Read => Err(AccountOpError::Transient {
                operation,
                reason: "TWILIO_RESPONSE_LOST".to_owned(),
                retry_after: None,
            }),
            None => Err(unreadable("TWILIO_RESPONSE_LOST".to_owned())),
        };
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(AccountOpError::InvalidCredentials { operation });
    }
    if status == StatusCode::GATEWAY_TIMEOUT && effect == Effect::Write {
        return Err(AccountOpError::Unknown {
            operation,
            reason: "TWILIO_HTTP_504".to_owned(),
        });
    }
    let error = ApiError::from_response(status, body);
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(AccountOpError::Transient {
            operation,
            reason: format!("TWILIO_{}", error.code_label()),
            retry_after: wait,
        });
    }
    Err(AccountOpError::Rejected { operation, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(effect: Effect, status: u16, body: Option<&[u8]>) -> Result<Bundle, AccountOpError> {
        answer("test", effect, StatusCode::from_u16(status).unwrap(), None, body)
    }

    #[test]
    fn statuses_parse_and_unknown_values_are_kept() {
        assert_eq!(BrandStatus::parse("APPROVED"), BrandStatus::Approved);
        assert_eq!(BrandStatus::parse("NEW_THING"), BrandStatus::Other("NEW_THING".into()));
        assert_eq!(BrandStatus::Other("X".into()).as_str(), "X");
        assert_eq!(BundleStatus::PendingReview.to_string(), "pending-review");
        let bundle: Bundle = serde_json::from_str(r#"{"sid":"BU1","status":"twilio-approved"}"#).unwrap();
        assert_eq!(bundle.status, BundleStatus::TwilioApproved);
        let campaign: Campaign = serde_json::from_str(r#"{"sid":"QE1","campaign_status":"odd"}"#).unwrap();
        let brand: BrandRegistration =
            serde_json::from_str(r#"{"sid":"BN1","status":"FAILED","errors":null,"brand_type":null}"#).unwrap();
        assert!(brand.errors.is_empty());
        assert_eq!(campaign.campaign_status, CampaignStatus::Other("odd".into()));
    }

    #[test]
    fn answers_map_to_the_right_error() {
        let ok = br#"{"sid":"BU1","status":"draft"}"#;
        assert_eq!(map(Effect::Write, 201, Some(ok)).unwrap().sid, "BU1");
        assert!(map(Effect::Write, 201, Some(b"nope")).unwrap_err().is_unknown());
        assert!(map(Effect::Write, 201, None).unwrap_err().is_unknown());
        assert!(matches!(
            map(Effect::Read, 200, Some(b"nope")),
            Err(AccountOpError::UnexpectedResponse { .. })
        ));
        assert!(map(Effect::Read, 200, None).unwrap_err().is_retryable());
        assert!(matches!(
            map(Effect::Read, 401, None),
            Err(AccountOpError::InvalidCredentials { .. })
        ));
        assert!(map(Effect::Write, 504, None).unwrap_err().is_unknown());
        assert!(map(Effect::Read, 504, None).unwrap_err().is_retryable());
        for status in [429, 500, 502, 503] {
            assert!(map(Effect::Write, status, None).unwrap_err().is_retryable(), "{status}");
        }
        let body = br#"{"code":20001,"message":"Missing required parameter Email in the post body","status":400}"#;
        let error = map(Effect::Write, 400, Some(body)).unwrap_err();
        assert_eq!(error.api_error().and_then(|error| error.code), Some(20001));
        assert!(!error.is_retryable() && !error.is_unknown() && !error.is_not_found());
        assert!(map(Effect::Read, 404, None).unwrap_err().is_not_found());
    }

    #[test]
    fn transient_errors_keep_retry_after() {
        let wait = Some(Duration::from_secs(3));
        let error = answer::<Bundle>("test", Effect::Write, StatusCode::TOO_MANY_REQUESTS, wait, None).unwrap_err();
        assert_eq!(error.retry_after(), wait);
    }

    #[test]
    fn forms_repeat_and_encode() {
        let form = Form::new()
            .put("A", "x y&z")
            .each("MessageSamples", &["one".into(), "two".into()])
            .flag("Mock", false)
            .opt("None", None)
            .finish();
        let Some(Body::Form(form)) = form else {
            panic!("a form");
        };
        assert_eq!(form, "A=x+y%26z&MessageSamples=one&MessageSamples=two&Mock=false");
    }

    #[test]
    fn one_url_can_stand_in_for_all_three_apis() {
        use crate::twilio::TwilioClientSettings;
        use crate::twilio::client::{DEFAULT_MESSAGING_BASE_URL, DEFAULT_TRUSTHUB_BASE_URL};
        let defaults = TwilioClientSettings::default();
        assert_eq!(defaults.trusthub_base_url, DEFAULT_TRUSTHUB_BASE_URL);
        assert_eq!(defaults.messaging_base_url, DEFAULT_MESSAGING_BASE_URL);
        let client = TwilioClient::new(&TwilioClientSettings::all_at("http://127.0.0.1:9")).unwrap();
        assert_eq!(
            (
                client.base.as_str(),
                client.trusthub.as_str(),
                client.messaging.as_str()
            ),
            ("http://127.0.0.1:9/", "http://127.0.0.1:9/", "http://127.0.0.1:9/")
        );
        let bad = TwilioClientSettings {
            messaging_base_url: "ftp://messaging.twilio.com".into(),
            ..defaults
        };
        assert!(TwilioClient::new(&bad).is_err());
    }

    #[test]
    fn endpoints_encode_each_segment() {
        let base = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "CustomerProfiles", "BU/../x"]).as_str(),
            "http://127.0.0.1:9/prefix/v1/CustomerProfiles/BU%2F..%2Fx"
        );
    }
}
