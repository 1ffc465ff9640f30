//! The store seam: tenants and their set-up, quotas, suppression, messages with their status
//! history, and the audit log.
//!
//! The seam is one trait per role ([`TenantStore`], [`OnboardingStore`], [`MessageStore`],
//! [`UsageStore`], [`ContactStore`], [`AuditStore`]); [`Store`] is all of them, what a backend
//! implements and what a process holds (`Arc<dyn Store>` calls every role's methods).
//!
//! Writes are idempotent and batched so that a wide-column backend (ScyllaDB) fits behind the
//! same trait: messages are claimed with insert-if-absent, status changes are applied in
//! batches under the forward-only rule of [`MessageStatus`], counters are deltas.
//!
//! Implementations: [`sqlite::SqliteStore`] (embedded; one file, WAL, versioned migrations) and
//! [`cassandra::CassandraStore`] (ScyllaDB or Apache Cassandra; versioned CQL schema in `common/migrations/cql/`).

pub mod cassandra;
mod codec;
mod sink;
pub mod sqlite;

pub use crate::channel::SenderKind;
pub use sink::{StatusSink, StoreStatusSink};

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::address::PhoneNumber;
use crate::channel::{Channel, Priority, Recipient};
use crate::envelope::Envelope;
use crate::ids::{CampaignId, MessageId, TenantId};
use crate::log::{Partition, RecordPosition};
use crate::quiet_hours::{self, StateWindows, Window, Zone};
use crate::status::MessageStatus;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (i/o, connection, query).
    #[error("store backend: {0}")]
    Backend(String),
    /// The data on disk is not what this build expects.
    #[error("store data invalid: {0}")]
    Invalid(String),
    /// The write conflicts with existing data (a unique value taken by another row).
    #[error("store conflict: {0}")]
    Conflict(String),
}

/// Whether a tenant may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Sends normally.
    Active,
    /// Every message is refused (unpaid, abuse, operator action).
    Suspended,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
    /// Whether it is a demo tenant: simulated traffic, never a real provider, deleted after a while.
    pub is_demo: bool,
    /// Whether it may send.
    pub status: TenantStatus,
    /// Its plan, which sets its quotas.
    pub plan_id: Option<String>,
    /// Who created it (a platform admin for demo tenants).
    pub created_by: Option<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

impl Tenant {
    /// A live tenant as it starts: active, on no plan, named after its id, created now.
    pub fn live(id: TenantId) -> Self {
        Self {
            name: id.to_string(),
            id,
            is_demo: false,
            status: TenantStatus::Active,
            plan_id: None,
            created_by: None,
            created_at: OffsetDateTime::now_utc(),
        }
    }
}

/// A tenant's messaging settings: whether marketing needs a recorded opt-in, the replies to
/// the HELP, STOP and START keywords (`None`: the default, which names the tenant), and quiet
/// hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    /// The window of the recipient's local time in which its texts may go; outside it they are
    /// held until it opens (`None`: never held). 08:00-21:00 unless set.
    pub quiet_hours: Option<Window>,
    /// Whether transactional texts keep quiet hours too (marketing always does).
    pub quiet_hours_transactional: bool,
    /// The zone of a recipient whose number's area code names none (America/New_York unless set).
    pub time_zone: Zone,
    /// Whether a marketing message needs the recipient's opt-in to its channel
    /// ([`ContactStore::consented_among`]); transactional messages never do.
    pub require_consent_for_marketing: bool,
    /// The reply to HELP (and INFO).
    pub help_reply: Option<String>,
    /// The confirmation of an opt-out keyword (STOP, UNSUBSCRIBE, ...).
    pub stop_reply: Option<String>,
    /// The confirmation of an opt-in keyword (START, YES, UNSTOP).
    pub start_reply: Option<String>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            quiet_hours: Some(Window::TCPA),
            quiet_hours_transactional: false,
            time_zone: Zone::named(DEFAULT_ZONE).expect("the bundled time zone database has it"),
            require_consent_for_marketing: false,
            help_reply: None,
            stop_reply: None,
            start_reply: None,
        }
    }
}

/// The zone of recipients whose number names none, unless the tenant sets one.
pub const DEFAULT_ZONE: &str = "America/New_York";

impl TenantSettings {
    /// The quiet-hours window a message in `priority`'s lane keeps, if any.
    pub fn quiet_window(&self, priority: Priority) -> Option<Window> {
        self.quiet_hours
            .filter(|_| priority == Priority::Marketing || self.quiet_hours_transactional)
    }

    /// Until when quiet hours hold a text to `to` sent in `priority`'s lane at `now`: `None`
    /// when it may go now (inside the window, an email, or no window applies). A marketing
    /// text to a number of a state in `states` keeps that state's window too.
    pub fn quiet_until(
        &self,
        to: &Recipient,
        priority: Priority,
        states: &StateWindows,
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        let window = self.quiet_window(priority)?;
        let Recipient::Phone(number) = to else {
            return None;
        };
        let place = quiet_hours::place_of(number.as_str());
        let zones: Vec<&Zone> = match place {
            Some(place) => place.zones.iter().collect(),
            None => vec![&self.time_zone],
        };
        let state = place
            .and_then(|place| place.region)
            .filter(|_| priority == Priority::Marketing)
            .and_then(|region| states.get(region));
        let mut windows = vec![window];
        windows.extend(state.copied());
        Some(quiet_hours::next_opening(now, &zones, &windows)).filter(|opening| *opening > now)
    }

    /// Whether a message in `priority`'s lane needs its recipient's opt-in to its channel.
    pub fn requires_consent(&self, priority: Priority) -> bool {
        self.require_consent_for_marketing && priority == Priority::Marketing
    }

    /// The reply to HELP, the default naming the tenant when none is set.
    pub fn help_reply(&self, tenant_name: &str) -> String {
        self.help_reply
            .clone()
            .unwrap_or_else(|| format!("{tenant_name}: reply STOP to unsubscribe. Msg & data rates may apply."))
    }

    /// The confirmation of an opt-out, the default naming the tenant when none is set.
    pub fn stop_reply(&self, tenant_name: &str) -> String {
        self.stop_reply.clone().unwrap_or_else(|| {
            format!(
                "{tenant_name}: you are unsubscribed and will receive no more messages. Reply START to resubscribe."
            )
        })
    }

    /// The confirmation of an opt-in, the default naming the tenant when none is set.
    pub fn start_reply(&self, tenant_name: &str) -> String {
        self.start_reply.clone().unwrap_or_else(|| {
            format!("{tenant_name}: you are subscribed again. Reply HELP for help, STOP to unsubscribe.")
        })
    }
}

/// A tenant API key, as stored: only a hash of the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The key's public id (shown in listings, used to revoke).
    pub key_id: String,
    /// The tenant the key acts for.
    pub tenant_id: TenantId,
    /// Hex SHA-256 of the secret key.
    pub secret_hash: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A tenant's business information (the 10DLC registration form), validated by the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessInfoRecord {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The form's fields.
    pub data: serde_json::Value,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// Where a 10DLC brand registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrandStatus {
    /// Not submitted yet.
    Draft,
    /// Submitted, awaiting review.
    Pending,
    /// Under review.
    InReview,
    /// Approved: numbers may be bought and used.
    Approved,
    /// Rejected; the reason says why.
    Failed,
    /// Suspended by the carriers.
    Suspended,
}

/// A tenant's A2P 10DLC brand and the Twilio objects built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its status.
    pub status: BrandStatus,
    /// Why it was rejected or needs attention.
    pub status_reason: Option<String>,
    /// The carriers' trust score (sets throughput).
    pub trust_score: Option<u8>,
    /// The onboarding workflow's current step.
    pub workflow_step: String,
    /// Attempts of the current step so far.
    pub workflow_attempts: u32,
    /// Twilio object ids created so far, by kind (customer profile, trust product, brand,
    /// messaging service, campaign): what makes each step idempotent.
    pub twilio_sids: BTreeMap<String, String>,
    /// When the record last changed.
    pub updated_at: OffsetDateTime,
    /// When the brand was approved.
    pub approved_at: Option<OffsetDateTime>,
}

/// Whether a sender number can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberStatus {
    /// Being bought or configured.
    Provisioning,
    /// In use.
    Active,
    /// No longer used.
    Retired,
    /// Provisioning failed.
    Failed,
    /// It may not send for now: an SMS number's A2P campaign is no longer verified (failed or
    /// suspended after approval), or a WhatsApp sender is offline.
    Suspended,
}

impl NumberStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberStatus::Provisioning => "provisioning",
            NumberStatus::Active => "active",
            NumberStatus::Retired => "retired",
            NumberStatus::Failed => "failed",
            NumberStatus::Suspended => "suspended",
        }
    }
}

/// A number a tenant sends from.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderNumber {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The number.
    pub number: PhoneNumber,
    /// Its kind.
    pub kind: SenderKind,
    /// Whether it can be used.
    pub status: NumberStatus,
    /// Twilio's id for it (`PN...`).
    pub twilio_sid: Option<String>,
    /// A rate that overrides the kind's default, in messages (segments) per second.
    pub rate_per_second: Option<f64>,
    /// When it was added.
    pub created_at: OffsetDateTime,
    /// A WhatsApp sender's registration with Twilio; `None` for numbers bought for SMS.
    pub registration: Option<SenderRegistration>,
}

/// How a WhatsApp sender is being registered with Twilio's Senders API: what the create needs
/// (kept from the tenant's request, so that a restarted process can send it) and where the
/// sender stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderRegistration {
    /// The tenant's WhatsApp Business Account id.
    pub waba_id: String,
    /// How Meta sends the verification code (`sms` or `voice`).
    pub verification_method: String,
    /// The public profile.
    pub profile: SenderProfile,
    /// A create was sent and its answer not seen: Twilio may hold the sender. Recorded before
    /// the call; cleared once the SID is stored or Twilio's list shows it absent.
    pub create_in_flight: bool,
    /// The sender's status as Twilio last reported it (`CREATING`, `ONLINE`, ...).
    pub twilio_status: Option<String>,
    /// Why it is offline or failed.
    pub reason: Option<String>,
    /// Tries of the current Twilio call that failed transiently.
    pub attempts: u32,
}

/// A WhatsApp sender's public profile (Meta's business profile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderProfile {
    /// The display name (Meta's display name rules apply).
    pub name: String,
    /// The "about" text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    /// The business address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The business description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An HTTPS URL of the logo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// The business vertical, one of Twilio's list (for example `Professional Services`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical: Option<String>,
    /// Contact email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Websites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websites: Vec<String>,
}

/// Which provider serves a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Twilio (SMS, WhatsApp).
    Twilio,
    /// AWS SES (email).
    Ses,
}

/// A tenant's credentials for one channel; the secrets are sealed (AES-256-GCM) before they
/// reach the store and are opened only at use.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelCredentials {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The channel.
    pub channel: Channel,
    /// The provider.
    pub provider: ProviderKind,
    /// Non-secret settings (account SID, region, configuration set name).
    pub settings: serde_json::Value,
    /// Id of the key the secrets are sealed under.
    pub key_id: String,
    /// The sealed secrets.
    pub sealed_secrets: Vec<u8>,
    /// Whether the provider accepted them on the last check.
    pub is_verified: bool,
    /// Why the last check failed.
    pub verification_error: Option<String>,
    /// When they last changed.
    pub updated_at: OffsetDateTime,
}

/// A plan: monthly quotas per channel; a missing channel means no quota applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Monthly quota per channel, in SMS segments for SMS and in messages otherwise.
    pub monthly_quota: BTreeMap<Channel, u64>,
}

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The recipient sent an opt-out keyword (STOP, ...).
    OptOut,
    /// The provider reports the recipient unsubscribed (Twilio 21610).
    ProviderUnsubscribed,
    /// A permanent email bounce.
    Bounce,
    /// An email complaint.
    Complaint,
    /// The recipient used a one-click unsubscribe link ([`crate::unsubscribe`]).
    Unsubscribed,
    /// Added by the tenant or an operator.
    Manual,
}

/// One suppressed address of a tenant, with the proof of why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The canonical address (E.164 number or email address).
    pub address: String,
    /// Why.
    pub reason: SuppressionReason,
    /// What proves it (the keyword, the provider message id, the bounce).
    pub source: Option<String>,
    /// Since when.
    pub created_at: OffsetDateTime,
}

/// A recipient's opt-in to a channel, with the proof of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The canonical address (E.164 number or email address).
    pub recipient: String,
    /// The channel consented to.
    pub channel: Channel,
    /// Where the consent was given (a web form, a keyword, `imported`).
    pub source: String,
    /// The wording the recipient agreed to, when known.
    pub wording: Option<String>,
    /// When it was given.
    pub given_at: OffsetDateTime,
}

/// A campaign's message kept until its channel can send (`when_not_ready: "hold"`), then
/// appended to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The campaign.
    pub campaign_id: CampaignId,
    /// The channel that was not ready.
    pub channel: Channel,
    /// The message's id.
    pub message_id: MessageId,
    /// The encoded envelope, as it will be appended.
    pub envelope: Vec<u8>,
    /// When it was held.
    pub held_at: OffsetDateTime,
}

/// A message waiting in the store for its `not_before` (scheduled further ahead than the
/// dispatcher keeps in memory), then appended to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledMessage {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The message's id.
    pub message_id: MessageId,
    /// Its campaign.
    pub campaign_id: Option<CampaignId>,
    /// Its `not_before`: it is not sent earlier.
    pub due_at: OffsetDateTime,
    /// The encoded envelope, as it will be appended.
    pub envelope: Vec<u8>,
}

impl ScheduledMessage {
    /// Its envelope, parsed again (the dispatcher parsed it before scheduling it).
    pub fn parse_envelope(&self) -> Result<Envelope, StoreError> {
        Envelope::parse(&self.envelope)
            .map_err(|error| StoreError::Invalid(format!("scheduled message {}: {error}", self.message_id)))
    }
}

/// What canceling a scheduled message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleCancel {
    /// It was waiting and is now canceled: it will never be appended.
    Canceled(ScheduledMessage),
    /// It is being appended to the log (its time has come): too late to cancel here.
    Releasing,
    /// No such message waits in the schedule.
    NotScheduled,
}

/// A message a recipient sent to one of the tenant's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The provider's id (Twilio's `MessageSid`).
    pub provider_id: String,
    /// SMS or WhatsApp.
    pub channel: Channel,
    /// Who wrote (E.164).
    pub from: String,
    /// The tenant's number written to, as the provider gave it.
    pub to: Option<String>,
    /// What it says (empty for media alone).
    pub body: String,
    /// Its media, as the provider's URLs.
    pub media_urls: Vec<String>,
    /// When it arrived.
    pub received_at: OffsetDateTime,
}

/// A message to claim for dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its id (the idempotency key).
    pub message_id: MessageId,
    /// Its campaign.
    pub campaign_id: Option<CampaignId>,
    /// Its channel.
    pub channel: Channel,
    /// The canonical recipient address.
    pub recipient: String,
    /// Its lane.
    pub priority: Priority,
    /// SMS segments (1 for other channels).
    pub segments: u32,
    /// When it was accepted.
    pub accepted_at: OffsetDateTime,
    /// The log record that claims it: any other record with the same id is a duplicate.
    pub position: RecordPosition,
}

impl NewMessage {
    /// The claim of `envelope`, costing `segments`, accepted at `accepted_at` by the record at
    /// `position`.
    pub fn of(envelope: &Envelope, segments: u32, position: RecordPosition, accepted_at: OffsetDateTime) -> Self {
        Self {
            tenant_id: envelope.tenant_id.clone(),
            message_id: envelope.message_id.clone(),
            campaign_id: envelope.campaign_id.clone(),
            channel: envelope.channel,
            recipient: envelope.to.to_string(),
            priority: envelope.priority,
            segments,
            accepted_at,
            position,
        }
    }
}

/// A message's claim as stored: which log record claimed it and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredClaim {
    /// The record that claimed it; `None` for a message claimed before positions were kept.
    pub position: Option<RecordPosition>,
    /// Its current status.
    pub status: MessageStatus,
    /// When the claim accepted it.
    pub accepted_at: OffsetDateTime,
}

/// One append to a log partition's claim journal: the hashes of message ids about to be
/// claimed on that partition, written before their claims. The dispatcher that owns the
/// partition rebuilds its duplicate filters from the journal when the partition is assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The log partition.
    pub partition: Partition,
    /// The filter generation the ids belong to (increasing; old generations are trimmed).
    pub generation: u64,
    /// Unique per append, so that no append replaces another (a retried append reuses it).
    pub entry: u64,
    /// The ids' 64-bit hashes.
    pub hashes: Vec<u64>,
}

/// What the dispatcher knows of a message it claimed and still holds: nothing but itself has
/// moved it past `queued` except provider callbacks (which only move it higher), so its outcome
/// can be written without reading the message first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// When the claim accepted it.
    pub accepted_at: OffsetDateTime,
    /// Its campaign.
    pub campaign_id: Option<CampaignId>,
}

/// A status change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The message.
    pub message_id: MessageId,
    /// The new status.
    pub status: MessageStatus,
    /// When it happened.
    pub at: OffsetDateTime,
    /// A stable reason code (refusals, provider error codes).
    pub reason: Option<String>,
    /// The provider's id for the message, once known.
    pub provider_message_id: Option<String>,
    /// Set by the dispatcher on the outcome of a message it holds ([`Held`]): the store may
    /// write it without reading the message. `None` for everyone else (callbacks,
    /// reconciliation): the store applies the forward-only rule to the status it reads.
    pub held: Option<Held>,
}

/// One entry of a message's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusChange {
    /// The status reached.
    pub status: MessageStatus,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Its reason code, if any.
    pub reason: Option<String>,
}

/// A message as stored, with its status history (oldest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its id.
    pub message_id: MessageId,
    /// Its campaign.
    pub campaign_id: Option<CampaignId>,
    /// Its channel.
    pub channel: Channel,
    /// The canonical recipient address.
    pub recipient: String,
    /// Its lane.
    pub priority: Priority,
    /// SMS segments (1 for other channels).
    pub segments: u32,
    /// Its current status.
    pub status: MessageStatus,
    /// The reason code of the current status.
    pub reason: Option<String>,
    /// The provider's id for it.
    pub provider_message_id: Option<String>,
    /// When it was accepted.
    pub accepted_at: OffsetDateTime,
    /// When its status last changed.
    pub updated_at: OffsetDateTime,
    /// Every status it went through.
    pub history: Vec<StatusChange>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The tenant concerned; `None` for platform-wide actions.
    pub tenant_id: Option<TenantId>,
    /// When.
    pub at: OffsetDateTime,
    /// Who (an API key id, `platform`, `system`).
    pub actor: String,
    /// What, as a stable dotted name (`business_info.updated`, `demo_tenant.deleted`).
    pub action: String,
    /// Details, secrets never included.
    pub detail: serde_json::Value,
}

/// The usage period (`YYYY-MM`, UTC) of an instant: quotas are monthly.
pub fn period_of(at: OffsetDateTime) -> String {
    format!("{:04}-{:02}", at.year(), u8::from(at.month()))
}

/// Everything the services keep: every role at once, what a backend implements. Code that
/// needs one role may take that trait alone.
pub trait Store:
    TenantStore + OnboardingStore + MessageStore + ScheduleStore + UsageStore + ContactStore + AuditStore
{
}

impl<T> Store for T where
    T: TenantStore + OnboardingStore + MessageStore + ScheduleStore + UsageStore + ContactStore + AuditStore
{
}

/// Tenants, their plans' assignment and their API keys.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// Creates a tenant; `Conflict` if the id is taken.
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;

    /// A tenant by id.
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;

    /// Changes a tenant's status.
    async fn set_tenant_status(&self, id: &TenantId, status: TenantStatus) -> Result<bool, StoreError>;

    /// Puts a tenant on a plan (`None`: no plan, no quota); false if there is no such tenant.
    async fn set_tenant_plan(&self, id: &TenantId, plan_id: Option<&str>) -> Result<bool, StoreError>;

    /// A tenant's messaging settings (the defaults when none were set; `None`: no such tenant).
    async fn tenant_settings(&self, id: &TenantId) -> Result<Option<TenantSettings>, StoreError>;

    /// Replaces a tenant's messaging settings; false if there is no such tenant.
    async fn set_tenant_settings(&self, id: &TenantId, settings: &TenantSettings) -> Result<bool, StoreError>;

    /// Demo tenants created before `before`.
    async fn demo_tenants_created_before(&self, before: OffsetDateTime) -> Result<Vec<Tenant>, StoreError>;

    /// Deletes a tenant and every row it owns; false if there was none.
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool, StoreError>;

    /// Stores a new API key.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key whose secret hashes to `secret_hash`, revoked or not.
    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Revokes a tenant's key; false if it has no such key.
    async fn revoke_api_key(&self, tenant: &TenantId, key_id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// A tenant's API keys, revoked ones included, oldest first.
    async fn api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;
}

/// What a live tenant sets up: business information, its 10DLC brand and workflow, sender
/// numbers, channel credentials.
#[async_trait]
pub trait OnboardingStore: Send + Sync + 'static {
    /// Creates or replaces a tenant's business information.
    async fn put_business_info(&self, info: &BusinessInfoRecord) -> Result<(), StoreError>;

    /// A tenant's business information.
    async fn business_info(&self, tenant: &TenantId) -> Result<Option<BusinessInfoRecord>, StoreError>;

    /// Creates or replaces a tenant's brand record.
    async fn put_brand(&self, brand: &Brand) -> Result<(), StoreError>;

    /// A tenant's brand record.
    async fn brand(&self, tenant: &TenantId) -> Result<Option<Brand>, StoreError>;

    /// Creates or replaces a tenant's brand record together with when its onboarding workflow
    /// is next due (`None`: nothing scheduled), in one write. [`OnboardingStore::put_brand`] leaves the
    /// schedule as it was.
    async fn put_workflow(&self, brand: &Brand, due: Option<OffsetDateTime>) -> Result<(), StoreError>;

    /// When a tenant's onboarding workflow is next due; `None` if nothing is scheduled or there
    /// is no brand record.
    async fn workflow_due(&self, tenant: &TenantId) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Tenants whose onboarding workflow is due at `now`, the longest waiting first, at most `limit`.
    async fn workflows_due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<TenantId>, StoreError>;

    /// Creates or replaces a sender number; `Conflict` if another tenant holds the number.
    async fn put_sender_number(&self, number: &SenderNumber) -> Result<(), StoreError>;

    /// A tenant's sender numbers.
    async fn sender_numbers(&self, tenant: &TenantId) -> Result<Vec<SenderNumber>, StoreError>;

    /// Creates or replaces a tenant's credentials for a channel.
    async fn put_credentials(&self, credentials: &ChannelCredentials) -> Result<(), StoreError>;

    /// A tenant's credentials for a channel.
    async fn credentials(&self, tenant: &TenantId, channel: Channel) -> Result<Option<ChannelCredentials>, StoreError>;

    /// Deletes a tenant's credentials for a channel; false if there were none.
    async fn delete_credentials(&self, tenant: &TenantId, channel: Channel) -> Result<bool, StoreError>;

    /// Tenants holding channel credentials, at most `limit`, in the store's own order and
    /// after `after` (the last one of the previous page; `None`: from the start): for sweeps
    /// over every stored credential, such as re-sealing them under a new key.
    async fn credential_tenants(&self, after: Option<&TenantId>, limit: usize) -> Result<Vec<TenantId>, StoreError>;

    /// Every verified credentials row naming this Twilio account SID (a webhook's signing
    /// account): credentials the provider did not accept never sign anything.
    async fn credentials_by_account(&self, account_sid: &str) -> Result<Vec<ChannelCredentials>, StoreError>;
}

/// Messages: their claims and the claim journal, their statuses, the reconciliation index.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Writes the claims of messages the caller found new (the owner of their log partition,
    /// which knows what was claimed there: see [`MessageStore::claims`]), in one batch and without
    /// reading: each starts `queued` with that first history entry and names its record. One
    /// answer per message, in order: whether its claim was written; `false` when the store
    /// found the id already claimed (SQLite's unique key; Cassandra writes blindly and answers
    /// `true`), which the caller treats as a duplicate.
    async fn claim_messages(&self, messages: &[NewMessage]) -> Result<Vec<bool>, StoreError>;

    /// The stored claims of these messages, one answer per id in order (`None`: never claimed).
    async fn claims(&self, ids: &[(TenantId, MessageId)]) -> Result<Vec<Option<StoredClaim>>, StoreError>;

    /// Appends to a log partition's claim journal.
    async fn append_claim_journal(&self, entry: &JournalEntry) -> Result<(), StoreError>;

    /// A log partition's claim journal, every generation kept.
    async fn claim_journal(&self, partition: Partition) -> Result<Vec<JournalEntry>, StoreError>;

    /// Drops a log partition's journal generations older than `keep_from`.
    async fn trim_claim_journal(&self, partition: Partition, keep_from: u64) -> Result<(), StoreError>;

    /// Applies status changes in one batch under the forward-only rule; one answer per update,
    /// in order: whether it changed the message. A change that is not allowed, or for an
    /// unknown message, is a no-op, never an error. A change with [`StatusUpdate::held`] may be
    /// written without reading the message (Cassandra: a status row, which cannot lower the
    /// current status since that is the highest-ranked row); it answers `true`.
    async fn apply_status(&self, updates: &[StatusUpdate]) -> Result<Vec<bool>, StoreError>;

    /// A message with its history.
    async fn message(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<MessageRecord>, StoreError>;

    /// Messages still waiting for their outcome ([`MessageStatus::RECONCILED`]: `sent`, then
    /// `unknown`) that are due before `updated_before`, oldest first, at most `limit`: the
    /// reconciliation job's query, and the only statuses the stores index for it. A message is
    /// due from its last change, and again from each time it was returned here, so one that
    /// cannot be settled yet waits behind the others instead of being returned first every
    /// time. History not included.
    async fn stuck_messages(
        &self,
        updated_before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError>;

    /// How many requests this store has sent to its database server so far (Cassandra: the
    /// driver's own count, a batch counting once), for benchmarks; `None` when it has no server.
    fn backend_requests(&self) -> Option<u64> {
        None
    }
}

/// Messages scheduled further ahead than the dispatcher keeps in memory. Each waits as its
/// encoded envelope until the release (`due_scheduled`, then `forget_scheduled` once appended to
/// the log); a cancel and a release never both win for one message.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Keeps messages until they are due (a message scheduled already stays as it is).
    async fn schedule(&self, messages: &[ScheduledMessage]) -> Result<(), StoreError>;

    /// Up to `limit` messages due by `due_before` (Cassandra releases a minute at a time, so up
    /// to a minute later), marked as being released: from then on they cannot be canceled.
    /// Messages answered before and not forgotten yet (an append that failed, a release that
    /// crashed) are answered again.
    async fn due_scheduled(
        &self,
        due_before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ScheduledMessage>, StoreError>;

    /// Forgets released messages (appended to the log).
    async fn forget_scheduled(&self, messages: &[ScheduledMessage]) -> Result<(), StoreError>;

    /// Cancels a waiting message, unless its release has begun.
    async fn cancel_scheduled(&self, tenant: &TenantId, id: &MessageId) -> Result<ScheduleCancel, StoreError>;

    /// A message waiting (or being released) in the schedule.
    async fn scheduled(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<ScheduledMessage>, StoreError>;

    /// Up to `limit` ids of a campaign's messages in the schedule after `after`, in id order.
    async fn scheduled_in_campaign(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        after: Option<&MessageId>,
        limit: usize,
    ) -> Result<Vec<MessageId>, StoreError>;
}

/// Plans, usage against them, campaign counts, campaigns held until their channel is ready.
#[async_trait]
pub trait UsageStore: Send + Sync + 'static {
    /// Keeps messages of a campaign until its channel is ready (a message held already is
    /// replaced), and lists the campaign among [`UsageStore::held_campaigns`].
    async fn hold_messages(&self, messages: &[HeldMessage]) -> Result<(), StoreError>;

    /// Campaigns with held messages, as (tenant, campaign, channel), at most `limit`.
    async fn held_campaigns(&self, limit: usize) -> Result<Vec<(TenantId, CampaignId, Channel)>, StoreError>;

    /// Up to `limit` held messages of a campaign on a channel, in message id order.
    async fn held_messages(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        channel: Channel,
        limit: usize,
    ) -> Result<Vec<HeldMessage>, StoreError>;

    /// How many messages of a campaign are held, on every channel.
    async fn held_count(&self, tenant: &TenantId, campaign: &CampaignId) -> Result<u64, StoreError>;

    /// Forgets held messages (released to the log); a campaign left with none on the channel
    /// leaves [`UsageStore::held_campaigns`].
    async fn release_held(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
        channel: Channel,
        ids: &[MessageId],
    ) -> Result<(), StoreError>;

    /// Creates or replaces a plan.
    async fn put_plan(&self, plan: &Plan) -> Result<(), StoreError>;

    /// A plan by id.
    async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError>;

    /// Adds `delta` (negative to release) to a tenant's usage of a channel in `period`
    /// (`YYYY-MM`) and returns the new total, never below zero.
    async fn add_usage(&self, tenant: &TenantId, channel: Channel, period: &str, delta: i64)
    -> Result<u64, StoreError>;

    /// A tenant's usage of a channel in `period`.
    async fn usage(&self, tenant: &TenantId, channel: Channel, period: &str) -> Result<u64, StoreError>;

    /// How many of a campaign's messages are in each status (statuses with none left out), in
    /// [`MessageStatus::ALL`]'s order.
    async fn campaign_counts(
        &self,
        tenant: &TenantId,
        campaign: &CampaignId,
    ) -> Result<Vec<(MessageStatus, u64)>, StoreError>;
}

/// What is known of a tenant's recipients: suppressions, last inbound messages, provider
/// events already applied.
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    /// Adds or replaces a suppression.
    async fn suppress(&self, suppression: &Suppression) -> Result<(), StoreError>;

    /// Lifts a suppression; false if there was none.
    async fn unsuppress(&self, tenant: &TenantId, address: &str) -> Result<bool, StoreError>;

    /// The suppression of an address, if any.
    async fn suppression(&self, tenant: &TenantId, address: &str) -> Result<Option<Suppression>, StoreError>;

    /// Which of `addresses` are suppressed.
    async fn suppressed_among(&self, tenant: &TenantId, addresses: &[String]) -> Result<Vec<String>, StoreError>;

    /// A page of the tenant's suppressions in address order, after `after` (exclusive).
    async fn suppressions(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Suppression>, StoreError>;

    /// Records (or replaces) a recipient's consent to a channel.
    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError>;

    /// Which of `addresses` consented to `channel`.
    async fn consented_among(
        &self,
        tenant: &TenantId,
        channel: Channel,
        addresses: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// A recipient's consents, one per channel.
    async fn consents(&self, tenant: &TenantId, recipient: &str) -> Result<Vec<Consent>, StoreError>;

    /// Keeps an inbound message (one per provider id).
    async fn put_inbound(&self, message: &InboundMessage) -> Result<(), StoreError>;

    /// The tenant's inbound messages, newest first (by arrival, then provider id), after the
    /// position `before` (the arrival and provider id of the previous page's last message; the
    /// newest when `None`), at most `limit`.
    async fn inbound_messages(
        &self,
        tenant: &TenantId,
        before: Option<(OffsetDateTime, &str)>,
        limit: usize,
    ) -> Result<Vec<InboundMessage>, StoreError>;

    /// Records that `address` wrote to the tenant at `at` (a later time wins).
    async fn record_inbound(&self, tenant: &TenantId, address: &str, at: OffsetDateTime) -> Result<(), StoreError>;

    /// When `address` last wrote to the tenant (WhatsApp's 24-hour window starts there).
    async fn last_inbound(&self, tenant: &TenantId, address: &str) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Whether a provider's event (an inbound message's `MessageSid`, an SNS `MessageId`)
    /// was already processed for the tenant.
    async fn event_processed(&self, tenant: &TenantId, event_id: &str) -> Result<bool, StoreError>;

    /// Records that a provider's event was processed, after its effects were applied (kept
    /// 400 days), so that a replay of it changes nothing.
    async fn mark_event_processed(
        &self,
        tenant: &TenantId,
        event_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends to the audit log.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// A tenant's audit log, newest first.
    async fn audit(&self, tenant: &TenantId, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}
