//! WhatsApp on Twilio for live tenants: senders (Messaging v2 `Channels/Senders`, JSON bodies,
//! on `messaging_base_url`) and message templates (the Content API and its WhatsApp approval
//! requests, on `content_base_url`). Errors mean what [`AccountOpError`] says in
//! [`accounts`](super::accounts): on [`AccountOpError::Unknown`] list before creating again.
//!
//! | operation | request |
//! |---|---|
//! | [`TwilioClient::create_sender`] | `POST /v2/Channels/Senders` |
//! | [`TwilioClient::fetch_sender`] | `GET /v2/Channels/Senders/{XE}` |
//! | [`TwilioClient::list_senders`] | `GET /v2/Channels/Senders?Channel=whatsapp&PageSize=1000` |
//! | [`TwilioClient::verify_sender`] | `POST /v2/Channels/Senders/{XE}` with `configuration.verification_code` |
//! | [`TwilioClient::delete_sender`] | `DELETE /v2/Channels/Senders/{XE}` |
//! | [`TwilioClient::create_content`] | `POST /v1/Content` |
//! | [`TwilioClient::fetch_content`] | `GET /v1/Content/{HX}` |
//! | [`TwilioClient::list_contents`] | `GET /v1/ContentAndApprovals?PageSize=1000` |
//! | [`TwilioClient::submit_whatsapp_approval`] | `POST /v1/Content/{HX}/ApprovalRequests/whatsapp` |
//! | [`TwilioClient::fetch_approvals`] | `GET /v1/Content/{HX}/ApprovalRequests` |
//! | [`TwilioClient::delete_content`] | `DELETE /v1/Content/{HX}` |

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::accounts::{AccountOpError, Body, Effect, endpoint, null_as_default, twilio_enum};
use super::client::{TwilioAccount, TwilioClient};
use crate::PhoneNumber;
use crate::store::SenderProfile;

/// The largest page the list operations ask for; the first page is all they read.
const PAGE_SIZE: &str = "1000";

twilio_enum! {
    /// Where a WhatsApp sender stands (`channels_sender_enum_status`).
    SenderStatus {
        /// Twilio is registering it with Meta.
        Creating = "CREATING",
        /// It sends.
        Online = "ONLINE",
        /// It does not send; `offline_reasons` say why.
        Offline = "OFFLINE",
        /// The number must be verified with the code Meta sent it.
        PendingVerification = "PENDING_VERIFICATION",
        /// The code is being checked.
        Verifying = "VERIFYING",
        /// It sends while a profile change is applied.
        OnlineUpdating = "ONLINE:UPDATING",
        /// Twilio reviews it.
        TwilioReview = "TWILIO_REVIEW",
        /// Not submitted.
        Draft = "DRAFT",
        /// A placeholder Twilio keeps.
        Stubbed = "STUBBED",
    }
}

impl SenderStatus {
    /// Whether messages can be sent from it now.
    pub fn sends(&self) -> bool {
        matches!(self, SenderStatus::Online | SenderStatus::OnlineUpdating)
    }
}

twilio_enum! {
    /// Where a template's WhatsApp approval stands.
    ApprovalStatus {
        /// Never submitted.
        Unsubmitted = "unsubmitted",
        /// Received by Twilio.
        Received = "received",
        /// Meta reviews it.
        Pending = "pending",
        /// It may be sent.
        Approved = "approved",
        /// Refused; `rejection_reason` says why.
        Rejected = "rejected",
        /// Paused by Meta after poor feedback.
        Paused = "paused",
        /// Disabled by Meta.
        Disabled = "disabled",
    }
}

/// A profile as Twilio's create request spells it (labelled emails and websites).
fn profile_json(profile: &SenderProfile) -> Value {
    let mut json = json!({"name": profile.name});
    for (key, value) in [
        ("about", &profile.about),
        ("address", &profile.address),
        ("description", &profile.description),
        ("logo_url", &profile.logo_url),
        ("vertical", &profile.vertical),
    ] {
        if let Some(value) = value {
            json[key] = json!(value);
        }
    }
    if !profile.emails.is_empty() {
        json["emails"] = profile
            .emails
            .iter()
            .map(|email| json!({"email": email, "label": "Email"}))
            .collect();
    }
    if !profile.websites.is_empty() {
        json["websites"] = profile
            .websites
            .iter()
            .map(|website| json!({"website": website, "label": "Website"}))
            .collect();
    }
    json
}

/// A WhatsApp sender to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSender {
    /// The number (becomes `sender_id` `whatsapp:+E164`).
    pub number: PhoneNumber,
    /// The tenant's WhatsApp Business Account id (from Meta's embedded signup).
    pub waba_id: String,
    /// How Meta sends the verification code: `sms` or `voice`.
    pub verification_method: String,
    /// The public profile.
    pub profile: SenderProfile,
    /// Where Twilio posts inbound messages.
    pub callback_url: String,
    /// Where Twilio posts message status callbacks.
    pub status_callback_url: String,
}

/// Why a sender is offline, as Twilio says it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OfflineReason {
    /// Twilio's code.
    #[serde(default)]
    pub code: Option<String>,
    /// Twilio's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A WhatsApp sender as Twilio answers it: only the pieces read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sender {
    /// Its SID (`XE...`).
    pub sid: String,
    /// Where it stands.
    pub status: SenderStatus,
    /// `whatsapp:+E164`.
    pub sender_id: String,
    /// Why it is offline.
    #[serde(default, deserialize_with = "null_as_default")]
    pub offline_reasons: Vec<OfflineReason>,
}

#[derive(Deserialize)]
struct SenderPage {
    #[serde(default)]
    senders: Vec<Sender>,
}

/// A template to create in the Content API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewContent {
    /// The template's name in the account.
    pub friendly_name: String,
    /// Its language (ISO 639-1, for example `en`).
    pub language: String,
    /// Each variable's sample value (`{"1": "Ana"}` or `{"first_name": "Ana"}`).
    pub variables: BTreeMap<String, String>,
    /// Its content types (`{"twilio/text": {"body": "Hi {{1}}"}}`).
    pub types: Value,
}

/// A Content API template as Twilio answers it: only the pieces read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Content {
    /// Its SID (`HX...`).
    pub sid: String,
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub friendly_name: String,
    /// Its language.
    #[serde(default, deserialize_with = "null_as_default")]
    pub language: String,
    /// Its variables and their sample values: the variables a send must give.
    #[serde(default, deserialize_with = "null_as_default")]
    pub variables: BTreeMap<String, String>,
    /// Its content types.
    #[serde(default)]
    pub types: Value,
}

/// A template's WhatsApp approval.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WhatsappApproval {
    /// Where it stands.
    #[serde(default = "unsubmitted")]
    pub status: ApprovalStatus,
    /// The category it was submitted (or moved) to.
    #[serde(default)]
    pub category: Option<String>,
    /// The name it was submitted under.
    #[serde(default)]
    pub name: Option<String>,
    /// Why it was rejected.
    #[serde(default)]
    pub rejection_reason: Option<String>,
}

impl WhatsappApproval {
    /// The approval of a template never submitted.
    pub fn unsubmitted() -> Self {
        Self {
            status: ApprovalStatus::Unsubmitted,
            category: None,
            name: None,
            rejection_reason: None,
        }
    }
}

fn unsubmitted() -> ApprovalStatus {
    ApprovalStatus::Unsubmitted
}

#[derive(Deserialize)]
struct ApprovalFetch {
    #[serde(default)]
    whatsapp: Option<Value>,
}

#[derive(Deserialize)]
struct ContentPage {
    #[serde(default)]
    contents: Vec<ContentAndApprovals>,
}

#[derive(Deserialize)]
struct ContentAndApprovals {
    #[serde(flatten)]
    content: Content,
    #[serde(default, rename = "approval_requests")]
    approvals: Option<Value>,
}

/// A WhatsApp approval object (`whatsapp` of an approval fetch, a list's `approval_requests`);
/// missing or empty reads as never submitted.
fn approval_of(raw: Option<Value>) -> WhatsappApproval {
    match raw {
        Some(value) if value.as_object().is_some_and(|object| object.contains_key("status")) => {
            serde_json::from_value(value).unwrap_or_else(|_| WhatsappApproval::unsubmitted())
        }
        _ => WhatsappApproval::unsubmitted(),
    }
}

/// The WhatsApp approval of a list entry's `approval_requests`: flat, as twilio-oai's examples
/// show it, or under `whatsapp`, as the approval fetch answers it.
fn list_approval(mut approvals: Value) -> Value {
    if approvals.get("status").is_some() {
        approvals
    } else {
        approvals.get_mut("whatsapp").map(Value::take).unwrap_or(Value::Null)
    }
}

fn json_body(value: &impl Serialize) -> Option<Body> {
    // Serialising these plain structs and `Value`s cannot fail.
    Some(Body::Json(serde_json::to_vec(value).unwrap_or_default()))
}

impl TwilioClient {
    /// Registers a WhatsApp sender: `POST /v2/Channels/Senders` (answered 202, `CREATING`).
    pub async fn create_sender(&self, account: &TwilioAccount, sender: &NewSender) -> Result<Sender, AccountOpError> {
        let url = endpoint(&self.messaging, &["v2", "Channels", "Senders"]);
        let body = json!({
            "sender_id": format!("whatsapp:{}", sender.number),
            "configuration": {"waba_id": sender.waba_id, "verification_method": sender.verification_method},
            "webhook": {
                "callback_url": sender.callback_url,
                "callback_method": "POST",
                "status_callback_url": sender.status_callback_url,
                "status_callback_method": "POST",
            },
            "profile": profile_json(&sender.profile),
        });
        self.call(
            account,
            Method::POST,
            url,
            json_body(&body),
            Effect::Write,
            "create sender",
        )
        .await
    }

    /// Fetches a sender: `GET /v2/Channels/Senders/{Sid}`.
    pub async fn fetch_sender(&self, account: &TwilioAccount, sid: &str) -> Result<Sender, AccountOpError> {
        let url = endpoint(&self.messaging, &["v2", "Channels", "Senders", sid]);
        self.call(account, Method::GET, url, None, Effect::Read, "fetch sender")
            .await
    }

    /// The account's WhatsApp senders (first page of 1,000):
    /// `GET /v2/Channels/Senders?Channel=whatsapp`.
    pub async fn list_senders(&self, account: &TwilioAccount) -> Result<Vec<Sender>, AccountOpError> {
        let mut url = endpoint(&self.messaging, &["v2", "Channels", "Senders"]);
        url.query_pairs_mut()
            .append_pair("Channel", "whatsapp")
            .append_pair("PageSize", PAGE_SIZE);
        let page: SenderPage = self
            .call(account, Method::GET, url, None, Effect::Read, "list senders")
            .await?;
        Ok(page.senders)
    }

    /// Gives Meta's verification code: `POST /v2/Channels/Senders/{Sid}` with
    /// `configuration.verification_code`.
    pub async fn verify_sender(
        &self,
        account: &TwilioAccount,
        sid: &str,
        code: &str,
    ) -> Result<Sender, AccountOpError> {
        let url = endpoint(&self.messaging, &["v2", "Channels", "Senders", sid]);
        let body = json!({"configuration": {"verification_code": code}});
        self.call(
            account,
            Method::POST,
            url,
            json_body(&body),
            Effect::Write,
            "verify sender",
        )
        .await
    }

    /// Deletes a sender: `DELETE /v2/Channels/Senders/{Sid}` (answered 204).
    pub async fn delete_sender(&self, account: &TwilioAccount, sid: &str) -> Result<(), AccountOpError> {
        let url = endpoint(&self.messaging, &["v2", "Channels", "Senders", sid]);
        self.call(account, Method::DELETE, url, None, Effect::Write, "delete sender")
            .await
    }

    /// Creates a template: `POST /v1/Content`.
    pub async fn create_content(
        &self,
        account: &TwilioAccount,
        content: &NewContent,
    ) -> Result<Content, AccountOpError> {
        let url = endpoint(&self.content, &["v1", "Content"]);
        self.call(
            account,
            Method::POST,
            url,
            json_body(content),
            Effect::Write,
            "create content",
        )
        .await
    }

    /// Fetches a template: `GET /v1/Content/{Sid}`.
    pub async fn fetch_content(&self, account: &TwilioAccount, sid: &str) -> Result<Content, AccountOpError> {
        let url = endpoint(&self.content, &["v1", "Content", sid]);
        self.call(account, Method::GET, url, None, Effect::Read, "fetch content")
            .await
    }

    /// The account's templates with their WhatsApp approvals (first page of 1,000):
    /// `GET /v1/ContentAndApprovals`.
    pub async fn list_contents(
        &self,
        account: &TwilioAccount,
    ) -> Result<Vec<(Content, WhatsappApproval)>, AccountOpError> {
        let mut url = endpoint(&self.content, &["v1", "ContentAndApprovals"]);
        url.query_pairs_mut().append_pair("PageSize", PAGE_SIZE);
        let page: ContentPage = self
            .call(account, Method::GET, url, None, Effect::Read, "list contents")
            .await?;
        Ok(page
            .contents
            .into_iter()
            .map(|entry| (entry.content, approval_of(entry.approvals.map(list_approval))))
            .collect())
    }

    /// Submits a template for WhatsApp approval:
    /// `POST /v1/Content/{Sid}/ApprovalRequests/whatsapp` with `name` and `category`.
    pub async fn submit_whatsapp_approval(
        &self,
        account: &TwilioAccount,
        sid: &str,
        name: &str,
        category: &str,
    ) -> Result<WhatsappApproval, AccountOpError> {
        let url = endpoint(&self.content, &["v1", "Content", sid, "ApprovalRequests", "whatsapp"]);
        let body = json!({"name": name, "category": category});
        let answer: Value = self
            .call(
                account,
                Method::POST,
                url,
                json_body(&body),
                Effect::Write,
                "submit approval",
            )
            .await?;
        Ok(approval_of(Some(answer)))
    }

    /// A template's WhatsApp approval: `GET /v1/Content/{Sid}/ApprovalRequests`.
    pub async fn fetch_approvals(
        &self,
        account: &TwilioAccount,
        sid: &str,
    ) -> Result<WhatsappApproval, AccountOpError> {
        let url = endpoint(&self.content, &["v1", "Content", sid, "ApprovalRequests"]);
        let fetched: ApprovalFetch = self
            .call(account, Method::GET, url, None, Effect::Read, "fetch approvals")
            .await?;
        Ok(approval_of(fetched.whatsapp))
    }

    /// Deletes a template: `DELETE /v1/Content/{Sid}` (answered 204).
    pub async fn delete_content(&self, account: &TwilioAccount, sid: &str) -> Result<(), AccountOpError> {
        let url = endpoint(&self.content, &["v1", "Content", sid]);
        self.call(account, Method::DELETE, url, None, Effect::Write, "delete content")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_and_approvals_parse_as_twilio_answers_them() {
        let sender: Sender = serde_json::from_str(
            r#"{"sid":"XEaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","status":"ONLINE:UPDATING","sender_id":"whatsapp:+15017122661","offline_reasons":null}"#,
        )
        .unwrap();
        assert_eq!(sender.status, SenderStatus::OnlineUpdating);
        assert!(sender.status.sends() && sender.offline_reasons.is_empty());
        assert_eq!(approval_of(None).status, ApprovalStatus::Unsubmitted);
        assert_eq!(approval_of(Some(json!({}))).status, ApprovalStatus::Unsubmitted);
        let rejected = approval_of(Some(
            json!({"status": "rejected", "rejection_reason": "bad", "category": "MARKETING"}),
        ));
        assert_eq!(rejected.status, ApprovalStatus::Rejected);
        assert_eq!(rejected.rejection_reason.as_deref(), Some("bad"));
        let flat = json!({"category": "UTILITY", "status": "approved"});
        assert_eq!(approval_of(Some(list_approval(flat))).status, ApprovalStatus::Approved);
        let nested = json!({"whatsapp": {"status": "pending"}});
        assert_eq!(approval_of(Some(list_approval(nested))).status, ApprovalStatus::Pending);
        let content: Content =
            serde_json::from_str(r#"{"sid":"HX1","friendly_name":null,"language":"en","variables":null,"types":{}}"#)
                .unwrap();
        assert!(content.variables.is_empty() && content.friendly_name.is_empty());
    }

    #[test]
    fn profiles_use_twilio_labelled_lists() {
        let profile = SenderProfile {
            name: "Acme".into(),
            emails: vec!["a@acme.example".into()],
            websites: vec!["https://acme.example".into()],
            ..SenderProfile::default()
        };
        assert_eq!(
            profile_json(&profile),
            json!({
                "name": "Acme",
                "emails": [{"email": "a@acme.example", "label": "Email"}],
                "websites": [{"website": "https://acme.example", "label": "Website"}],
            })
        );
    }
}
