//! Twilio's webhooks: message status callbacks and inbound messages.
//!
//! Every request must carry a valid `X-Twilio-Signature`, computed by Twilio with the auth
//! token of the account named in `AccountSid` over the URL it called (the configured public URL
//! plus the request's path and query) and the form parameters. An `AccountSid` that is not `AC`
//! and 32 hexadecimal digits is refused (403) before anything is looked up, cached or logged.
//! The token comes from the stored credentials naming that account that the provider verified
//! (unverified credentials never sign); a request no such token verifies answers 403. The
//! opened tokens of an account are kept for 30 s, for at most 4,096 accounts ([`SigningKeys`]);
//! a signature they do not verify is checked again against the store before it is refused, so
//! a new token works at once. Values from the request reach the log only shortened
//! ([`common::telemetry::untrusted`]).
//!
//! - `POST /webhooks/twilio/status`: the callback URL names the message (tenant and message id
//!   in its query, signed with the rest: [`common::twilio::callback`]), so the callback applies
//!   whether or not the dispatcher has recorded `sent` yet. It moves the message to the status
//!   Twilio reports (never backwards: the store's forward-only rule drops late and duplicate
//!   callbacks), records Twilio's message SID, keeps the error code of failures, and suppresses
//!   the recipient on 21610. A URL naming a tenant the signature does not belong to answers 403;
//!   a valid callback for a message that does not exist changes nothing and answers 204, so
//!   Twilio stops retrying it.
//! - `POST /webhooks/twilio/inbound`: keeps the message (from, to, body, media URLs, SID: listed
//!   by `GET /v1/inbound`), records when the contact last wrote (WhatsApp's 24-hour window),
//!   applies opt-out keywords (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT suppress
//!   the number at once; START, YES, UNSTOP lift an opt-out; HELP and INFO ask for help), each
//!   audited with its keyword, time and source message, and answered as carriers require: the
//!   tenant's HELP reply or its STOP or START confirmation
//!   ([`TenantSettings`](common::store::TenantSettings)) is appended to
//!   the log as a transactional message from the number written to, on the same channel, with
//!   the id `keyword-reply:<MessageSid>` (sent once, however often the webhook is retried) and
//!   the tag [`KEYWORD_REPLY_TAG`] (which lets a STOP confirmation past the suppression just
//!   made). Each `MessageSid` is applied once: a replay (Twilio's signatures carry no time) is
//!   answered and changes nothing. Answers empty TwiML.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::address::PhoneNumber;
use common::envelope::KEYWORD_REPLY_TAG;
use common::ids::is_twilio_sid;
use common::log::{OutgoingRecord, Topic};
use common::store::{AuditEntry, InboundMessage, StatusUpdate, StoreError, Suppression, SuppressionReason};
use common::telemetry::untrusted;
use common::twilio::signature::{SIGNATURE_HEADER, verify};
use common::twilio::status::TwilioStatus;
use common::twilio::{AccountSid, ErrorClass, WebhookForm, callback_target, classify};
use common::{Channel, Content, Envelope, MessageId, Priority, Recipient, Sender, TenantId};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use time::OffsetDateTime;

use super::count;
use crate::{ApiError, AppState};

/// Opt-out keywords (the carriers' standard set).
const OPT_OUT: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
/// Keywords that lift an opt-out.
const OPT_IN: [&str; 3] = ["START", "YES", "UNSTOP"];

/// A webhook's form parameters, checked against its signature.
pub(crate) struct SignedForm {
    pub(crate) form: WebhookForm,
    /// The tenants whose stored credentials hold the signing account.
    pub(crate) tenants: BTreeSet<TenantId>,
}

impl SignedForm {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.form.get(name)
    }
}

/// Parses the form and verifies its signature with the tokens stored for its account. A form
/// without a well-formed `AccountSid` is refused before anything is looked up, cached or logged.
pub(crate) async fn verified(
    state: &AppState,
    source: &'static str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<SignedForm, ApiError> {
    let forbidden = |outcome: &'static str| {
        count(source, outcome);
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "the X-Twilio-Signature header does not verify",
        )
    };
    let Some(form) = WebhookForm::parse(body) else {
        return Err(forbidden("malformed_account"));
    };
    let (params, account) = (&form.params, &form.account);
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| forbidden("invalid_signature"))?;
    let url = format!(
        "{}{}",
        state.public_url.trim_end_matches('/'),
        uri.path_and_query().map_or(uri.path(), |path| path.as_str())
    );
    let verifying = |keys: &[(TenantId, SecretString)]| -> BTreeSet<TenantId> {
        keys.iter()
            .filter(|(_, token)| verify(token.expose_secret(), &url, params, signature))
            .map(|(tenant, _)| tenant.clone())
            .collect()
    };
    let mut tenants = match state.signing_keys.cached(account) {
        Some(keys) => verifying(&keys),
        None => BTreeSet::new(),
    };
    if tenants.is_empty() {
        // Not cached, or a token changed since: the store decides.
        let keys = state.signing_keys.read(state, account).await?;
        tenants = verifying(&keys);
    }
    if tenants.is_empty() {
        tracing::warn!(source, %account, url = %untrusted(&url), "webhook signature does not verify");
        return Err(forbidden("invalid_signature"));
    }
    Ok(SignedForm { form, tenants })
}

/// How long an account's opened tokens are reused.
const SIGNING_KEYS_TTL: Duration = Duration::from_secs(30);
/// How many accounts' tokens are kept at most; past that an entry makes room for a new one.
const SIGNING_KEYS_MAX_ACCOUNTS: usize = 4096;

/// An account's opened auth tokens, each with the tenant whose credentials hold it.
type AccountKeys = Arc<Vec<(TenantId, SecretString)>>;

/// The Twilio auth tokens of verified credentials, opened, with the tenants they belong to:
/// read and decrypted once per account every 30 s rather than for every callback, for at most
/// 4,096 accounts.
#[derive(Default)]
pub(crate) struct SigningKeys {
    accounts: Mutex<HashMap<AccountSid, (Instant, AccountKeys)>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// The account's tokens, if read less than 30 s ago.
    fn cached(&self, account: &AccountSid) -> Option<AccountKeys> {
        self.accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account)
            .filter(|(read_at, _)| read_at.elapsed() < SIGNING_KEYS_TTL)
            .map(|(_, keys)| Arc::clone(keys))
    }

    /// Reads and opens the account's verified tokens from the store, and keeps them.
    async fn read(&self, state: &AppState, account: &AccountSid) -> Result<AccountKeys, StoreError> {
        let mut keys = Vec::new();
        for row in state.store.credentials_by_account(account.as_str()).await? {
            match common::twilio::open_account(&state.keyring, &row) {
                Ok(opened) => keys.push((row.tenant_id, opened.auth_token)),
                Err(error) => {
                    tracing::error!(tenant = %row.tenant_id, channel = %row.channel, %error, "stored twilio credentials do not open");
                }
            }
        }
        Ok(self.keep(account, keys))
    }

    /// Keeps an account's tokens, making room first when the cache is full.
    fn keep(&self, account: &AccountSid, keys: Vec<(TenantId, SecretString)>) -> AccountKeys {
        let keys = Arc::new(keys);
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        accounts.retain(|_, (read_at, _)| read_at.elapsed() < SIGNING_KEYS_TTL);
        if accounts.len() >= SIGNING_KEYS_MAX_ACCOUNTS
            && let Some(evicted) = accounts.keys().next().cloned()
        {
            accounts.remove(&evicted);
        }
        accounts.insert(account.clone(), (Instant::now(), Arc::clone(&keys)));
        keys
    }
}

/// `POST /webhooks/twilio/status`.
#[utoipa::path(
    operation_id = "webhooks_twilio_status",
    post,
    path = "/webhooks/twilio/status",
    tag = "webhooks",
    params(
        ("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the public URL and the form, with the auth token of `AccountSid`"),
        ("tenant" = Option<String>, Query, description = "the tenant of the message, as the dispatcher put it in the StatusCallback URL"),
        ("message" = Option<String>, Query, description = "our message id, as the dispatcher put it in the StatusCallback URL"),
    ),
    request_body(content = crate::openapi::TwilioStatusForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 204, description = "applied, or ignored (no such message, no message named in the URL, not an outbound status)"),
        (status = 403, description = "invalid_signature: AccountSid is not AC and 32 hexadecimal digits, or X-Twilio-Signature does not verify with any verified stored token of it; foreign_tenant: the URL names a tenant whose credentials did not sign it", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: MessageSid (SM or MM and 32 hexadecimal digits) and MessageStatus are required", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn twilio_status(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    const SOURCE: &str = "twilio_status";
    let form = verified(&state, SOURCE, &uri, &headers, &body).await?;
    let (Some(sid), Some(reported)) = (form.get("MessageSid"), form.get("MessageStatus")) else {
        count(SOURCE, "malformed");
        return Err(ApiError::invalid(
            "MessageSid",
            "a status callback needs MessageSid and MessageStatus",
        ));
    };
    let sid = message_sid(SOURCE, sid)?;
    // The URL the dispatcher gave Twilio names the message; Twilio signed it with the token
    // of the tenant's account, so it must name one of the tenants that token verifies for.
    let Some((tenant, message_id)) = callback_target(uri.query()) else {
        count(SOURCE, "unknown_message");
        tracing::info!(sid, "status callback without a message in its url");
        return Ok(StatusCode::NO_CONTENT);
    };
    if !form.tenants.contains(&tenant) {
        count(SOURCE, "foreign_tenant");
        tracing::warn!(%tenant, "status callback names a tenant its signature does not belong to");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "foreign_tenant",
            "the callback names a tenant whose credentials did not sign it",
        ));
    }
    let Some(status) = TwilioStatus::parse(reported)
        .ok()
        .and_then(TwilioStatus::to_message_status)
    else {
        count(SOURCE, "ignored");
        tracing::debug!(%tenant, %message_id, reported = %untrusted(reported), "status callback without an outbound status");
        return Ok(StatusCode::NO_CONTENT);
    };
    let code = form
        .get("ErrorCode")
        .filter(|code| !code.is_empty() && status.is_failure());
    let now = OffsetDateTime::now_utc();
    // Twilio's error table says which codes mean the recipient opted out (21610).
    let opted_out = code
        .and_then(|code| code.parse().ok())
        .is_some_and(|code| classify(code) == ErrorClass::SuppressRecipient);
    if opted_out && let Some(record) = state.store.message(&tenant, &message_id).await? {
        state
            .store
            .suppress(&Suppression {
                tenant_id: tenant.clone(),
                address: record.recipient,
                reason: SuppressionReason::ProviderUnsubscribed,
                source: Some(sid.to_owned()),
                created_at: now,
            })
            .await?;
    }
    state
        .statuses
        .apply(vec![StatusUpdate {
            tenant_id: tenant.clone(),
            message_id: message_id.clone(),
            status,
            at: now,
            reason: code.map(str::to_owned),
            provider_message_id: Some(sid.to_owned()),
            held: None,
        }])
        .await?;
    count(SOURCE, "applied");
    tracing::debug!(%tenant, %message_id, %status, "status callback applied");
    Ok(StatusCode::NO_CONTENT)
}

/// What an inbound message's body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    OptOut,
    OptIn,
    Help,
}

fn keyword(body: &str) -> Option<(Keyword, String)> {
    let word = body.trim().to_ascii_uppercase();
    let kind = if OPT_OUT.contains(&word.as_str()) {
        Keyword::OptOut
    } else if OPT_IN.contains(&word.as_str()) {
        Keyword::OptIn
    } else if word == "HELP" || word == "INFO" {
        Keyword::Help
    } else {
        return None;
    };
    Some((kind, word))
}

/// `POST /webhooks/twilio/inbound`.
#[utoipa::path(
    operation_id = "webhooks_twilio_inbound",
    post,
    path = "/webhooks/twilio/inbound",
    tag = "webhooks",
    params(("X-Twilio-Signature" = String, Header, description = "Twilio's signature of the public URL and the form, with the auth token of `AccountSid`")),
    request_body(content = crate::openapi::TwilioInboundForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "empty TwiML: `<Response/>` (also for a MessageSid already processed, which changes nothing)", content_type = "text/xml", body = String),
        (status = 403, description = "invalid_signature: AccountSid is not AC and 32 hexadecimal digits, or X-Twilio-Signature does not verify with any verified stored token of it", body = crate::error::ErrorBody),
        (status = 413, description = "payload_too_large: the body is larger than admin.max_body_bytes", body = crate::error::ErrorBody),
        (status = 422, description = "invalid_field: From is missing or not a number, or MessageSid is missing or not SM or MM and 32 hexadecimal digits", body = crate::error::ErrorBody),
        (status = 503, description = "store_unavailable or log_unavailable: retry later", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn twilio_inbound(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    const SOURCE: &str = "twilio_inbound";
    let form = verified(&state, SOURCE, &uri, &headers, &body).await?;
    let Some(from) = form.get("From") else {
        count(SOURCE, "malformed");
        return Err(ApiError::invalid("From", "an inbound message needs From"));
    };
    let (channel, number) = match from.strip_prefix(common::address::WHATSAPP_PREFIX) {
        Some(_) => (Channel::Whatsapp, PhoneNumber::parse_whatsapp(from)),
        None => (Channel::Sms, PhoneNumber::parse(from)),
    };
    let number = number.map_err(|error| ApiError::invalid("From", error.to_string()))?;
    let Some(sid) = form.get("MessageSid") else {
        count(SOURCE, "malformed");
        return Err(ApiError::invalid("MessageSid", "an inbound message needs MessageSid"));
    };
    let sid = message_sid(SOURCE, sid)?;
    let tenant = inbound_tenant(&state, &form).await?;
    // Twilio's signature carries no time, so a captured request verifies for ever: each
    // MessageSid is applied once (effects first, then the mark, so that a retry after a failure
    // still applies it).
    if state.store.event_processed(&tenant, sid).await? {
        count(SOURCE, "replayed");
        tracing::info!(%tenant, sid, "inbound message already processed");
        return Ok(empty_twiml());
    }
    let now = OffsetDateTime::now_utc();
    state.store.record_inbound(&tenant, from, now).await?;
    state
        .store
        .put_inbound(&InboundMessage {
            tenant_id: tenant.clone(),
            provider_id: sid.to_owned(),
            channel,
            from: number.as_str().to_owned(),
            to: form.get("To").map(str::to_owned),
            body: form.get("Body").unwrap_or_default().to_owned(),
            media_urls: media_urls(&form),
            received_at: now,
        })
        .await?;
    let source = Some(sid.to_owned());
    if let Some((kind, word)) = form.get("Body").and_then(keyword) {
        let action = match kind {
            Keyword::OptOut => {
                state
                    .store
                    .suppress(&Suppression {
                        tenant_id: tenant.clone(),
                        address: number.as_str().to_owned(),
                        reason: SuppressionReason::OptOut,
                        source: Some(word.clone()),
                        created_at: now,
                    })
                    .await?;
                "consent.opted_out"
            }
            Keyword::OptIn => {
                let opted_out = state
                    .store
                    .suppression(&tenant, number.as_str())
                    .await?
                    .is_some_and(|suppression| suppression.reason == SuppressionReason::OptOut);
                if opted_out {
                    state.store.unsuppress(&tenant, number.as_str()).await?;
                }
                "consent.opted_in"
            }
            Keyword::Help => "consent.help_requested",
        };
        reply(&state, &tenant, kind, channel, &number, form.get("To"), sid).await?;
        state
            .store
            .append_audit(&AuditEntry {
                tenant_id: Some(tenant.clone()),
                at: now,
                actor: "recipient".to_owned(),
                action: action.to_owned(),
                detail: json!({
                    "address": number.as_str(),
                    "channel": channel,
                    "keyword": word,
                    "source_message_sid": source,
                }),
            })
            .await?;
        tracing::info!(%tenant, action, "consent keyword received");
    }
    state.store.mark_event_processed(&tenant, sid, now).await?;
    count(SOURCE, "applied");
    Ok(empty_twiml())
}

/// The most media one inbound message carries (Twilio's own limit).
const MAX_MEDIA: usize = 10;

/// An inbound message's media URLs: `MediaUrl0` .. `MediaUrl{NumMedia - 1}`.
fn media_urls(form: &SignedForm) -> Vec<String> {
    let count = form
        .get("NumMedia")
        .and_then(|count| count.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_MEDIA);
    (0..count)
        .filter_map(|index| form.get(&format!("MediaUrl{index}")).map(str::to_owned))
        .collect()
}

/// How long a keyword reply may wait for its sender before it is dropped as expired.
const REPLY_VALIDITY: time::Duration = time::Duration::hours(1);

/// Appends the tenant's reply to a keyword: from the number written to (the tenant's default
/// sender when `To` is not a number), to the recipient, on the same channel.
async fn reply(
    state: &AppState,
    tenant: &TenantId,
    kind: Keyword,
    channel: Channel,
    number: &PhoneNumber,
    written_to: Option<&str>,
    sid: &str,
) -> Result<(), ApiError> {
    let Some(record) = state.store.tenant(tenant).await? else {
        return Ok(());
    };
    let settings = state.store.tenant_settings(tenant).await?.unwrap_or_default();
    let (text, tag) = match kind {
        Keyword::OptOut => (settings.stop_reply(&record.name), "stop"),
        Keyword::OptIn => (settings.start_reply(&record.name), "start"),
        Keyword::Help => (settings.help_reply(&record.name), "help"),
    };
    let envelope = Envelope {
        message_id: MessageId::parse(format!("keyword-reply:{sid}"))
            .map_err(|error| ApiError::invalid("MessageSid", error.to_string()))?,
        tenant_id: tenant.clone(),
        campaign_id: None,
        contact_id: None,
        channel,
        to: Recipient::Phone(number.clone()),
        from: written_to.and_then(|to| Sender::parse(channel, to).ok()),
        priority: Priority::Transactional,
        content: Content::Body(text),
        subject: None,
        not_before: None,
        expires_at: Some(OffsetDateTime::now_utc() + REPLY_VALIDITY),
        tags: [(KEYWORD_REPLY_TAG.to_owned(), tag.to_owned())].into(),
    };
    state
        .log
        .append(
            Topic::Messages,
            vec![OutgoingRecord::for_tenant(tenant, envelope.to_json())],
        )
        .await?;
    Ok(())
}

/// The answer to an inbound message: TwiML that does nothing.
fn empty_twiml() -> Response {
    ([(CONTENT_TYPE, "text/xml")], "<Response/>").into_response()
}

/// A Twilio message SID (`SM` or `MM` and 32 hexadecimal digits), or a 422 naming the field.
fn message_sid<'a>(source: &'static str, raw: &'a str) -> Result<&'a str, ApiError> {
    if is_twilio_sid(raw, &["SM", "MM"]) {
        Ok(raw)
    } else {
        count(source, "malformed");
        Err(ApiError::invalid(
            "MessageSid",
            "must be SM or MM followed by 32 hexadecimal digits",
        ))
    }
}

/// The tenant an inbound message is for: the one owning the `To` number among those whose
/// credentials signed it, or the only such tenant.
async fn inbound_tenant(state: &AppState, form: &SignedForm) -> Result<TenantId, ApiError> {
    if form.tenants.len() == 1
        && let Some(tenant) = form.tenants.first()
    {
        return Ok(tenant.clone());
    }
    let to = form
        .get("To")
        .map(|to| to.strip_prefix(common::address::WHATSAPP_PREFIX).unwrap_or(to));
    for tenant in &form.tenants {
        let numbers = state.store.sender_numbers(tenant).await?;
        if numbers.iter().any(|number| Some(number.number.as_str()) == to) {
            return Ok(tenant.clone());
        }
    }
    Err(ApiError::invalid("To", "no tenant of this account owns the number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_recognised_in_any_case_and_with_spaces() {
        assert_eq!(keyword(" stop "), Some((Keyword::OptOut, "STOP".to_owned())));
        assert_eq!(
            keyword("Unsubscribe"),
            Some((Keyword::OptOut, "UNSUBSCRIBE".to_owned()))
        );
        assert_eq!(keyword("unstop"), Some((Keyword::OptIn, "UNSTOP".to_owned())));
        assert_eq!(keyword("help"), Some((Keyword::Help, "HELP".to_owned())));
        assert_eq!(keyword("please stop"), None);
        assert_eq!(keyword(""), None);
    }

    #[test]
    fn the_signing_key_cache_is_bounded() {
        let keys = SigningKeys::default();
        for n in 0..SIGNING_KEYS_MAX_ACCOUNTS + 100 {
            let account = AccountSid::parse(&format!("AC{n:032x}")).unwrap();
            keys.keep(&account, Vec::new());
            assert!(keys.cached(&account).is_some());
        }
        let kept = keys.accounts.lock().unwrap().len();
        assert_eq!(kept, SIGNING_KEYS_MAX_ACCOUNTS);
    }
}
