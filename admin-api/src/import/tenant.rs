//! One legacy tenant, mapped item by item onto this product's rows; see the module above for
//! the unit and the re-run rules, and README "Migrating an existing installation" for the
//! mapping table.

use std::collections::BTreeMap;

use common::address::{EmailAddress, PhoneNumber};
use common::credentials::{ACCESS_KEY_ID, ACCOUNT_SID, FROM_ADDRESS, REGION, seal, setting};
use common::log::RecordPosition;
use common::store::{
    Brand, BrandStatus, BusinessInfoRecord, ChannelCredentials, Consent, NewMessage, NumberStatus, ProviderKind,
    SenderKind, SenderNumber, StatusUpdate, StoreError, Suppression, SuppressionReason, Tenant, TenantStatus,
};
use common::{CampaignId, Channel, MessageId, MessageStatus, Priority, Recipient, TenantId};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::task::JoinSet;

use super::legacy::{LegacyDb, Record, TenantRows};
use super::secrets::LegacyFormat;
use super::{ImportError, Importer};
use crate::business_info;
use crate::onboarding::{Step, keys};

/// The log position imported messages are claimed under: no record's.
pub const IMPORTED_POSITION: RecordPosition = RecordPosition::OFF_LOG;

/// Legacy messages read per page.
const MESSAGE_PAGE: usize = 1_000;
/// Who the audit log names for the import.
const ACTOR: &str = "legacy-import";
/// The audit action that marks a tenant's unit complete.
const COMPLETED: &str = "legacy_import.completed";
/// The audit action written before a tenant's row.
const STARTED: &str = "legacy_import.started";
/// The reason stored on a credentials row whose legacy secret did not decrypt.
const UNDECRYPTABLE: &str = "the legacy secret did not decrypt; save this channel's credentials again";
/// The reason stored on imported credentials until their check ends.
const CHECKING: &str = "imported; being checked with the provider";
/// The reason code of a legacy message that was never handed to a provider.
const IMPORTED_UNSENT: &str = "IMPORTED_UNSENT";

/// What became of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantOutcome {
    /// It was new here and is imported (or would be, in a dry run).
    Imported,
    /// An earlier run stopped inside its unit; this run completed it.
    Resumed,
    /// Imported before; this run added what the legacy database gained since.
    Updated,
    /// Imported before; nothing new.
    Unchanged,
    /// Not imported: see its refusals.
    Refused,
}

/// A legacy row that was not imported, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// What kind of item (`tenant`, `business_info`, `credentials`, `number`, ...).
    pub kind: &'static str,
    /// Which row (its legacy id, channel or number).
    pub row: String,
    /// Why.
    pub reason: String,
}

/// An imported channel credential: the legacy format its secret was in and the provider's
/// answer to the check after import.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialReport {
    /// The channel.
    pub channel: Channel,
    /// The legacy format the secret was found in.
    pub format: Option<LegacyFormat>,
    /// Whether the provider accepted it; `None` until checked (demo tenants and dry runs are
    /// not checked).
    pub verified: Option<bool>,
    /// Why not.
    pub error: Option<String>,
}

/// One tenant's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    /// The legacy tenant id.
    pub tenant_id: String,
    /// What became of it.
    pub outcome: TenantOutcome,
    /// Whether it is a demo tenant.
    pub is_demo: bool,
    /// Where its 10DLC onboarding stands here (the workflow step), if it has a brand.
    pub onboarding: Option<&'static str>,
    /// Items created (or to be created), by kind.
    pub created: BTreeMap<&'static str, u64>,
    /// Items already in the store, by kind (kept as they are).
    pub existing: BTreeMap<&'static str, u64>,
    /// Its imported credentials.
    pub credentials: Vec<CredentialReport>,
    /// Rows not imported.
    pub refused: Vec<Refusal>,
}

impl TenantReport {
    fn new(tenant_id: &str) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            outcome: TenantOutcome::Imported,
            is_demo: false,
            onboarding: None,
            created: BTreeMap::new(),
            existing: BTreeMap::new(),
            credentials: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn created(&mut self, kind: &'static str) {
        *self.created.entry(kind).or_default() += 1;
    }

    fn existing(&mut self, kind: &'static str) {
        *self.existing.entry(kind).or_default() += 1;
    }

    fn refuse(&mut self, kind: &'static str, row: impl Into<String>, reason: impl Into<String>) {
        self.refused.push(Refusal {
            kind,
            row: row.into(),
            reason: reason.into(),
        });
    }

    /// Records a background check's outcome.
    pub(super) fn record_check(&mut self, check: Check) {
        if let Some(report) = self
            .credentials
            .iter_mut()
            .find(|report| report.channel == check.channel)
        {
            report.verified = Some(check.outcome.is_ok());
            report.error = check.outcome.err();
        }
    }
}

/// A finished credential check.
pub(super) struct Check {
    pub tenant: String,
    pub channel: Channel,
    pub outcome: Result<(), String>,
}

/// A legacy channel name (`sms`, `whatsapp`, `email`, in any case).
fn channel_of(raw: &str) -> Option<Channel> {
    raw.to_ascii_lowercase().parse().ok()
}

/// A legacy address in its channel's canonical form (the suppression list's key).
fn recipient_of(channel: Channel, raw: &str) -> Result<String, String> {
    Recipient::parse(channel, raw)
        .map(|recipient| recipient.as_str().to_owned())
        .map_err(|error| error.to_string())
}

impl Importer {
    /// Imports one legacy tenant; store failures end the run (it resumes when run again),
    /// anything else is reported.
    pub(super) async fn tenant(
        &self,
        db: &LegacyDb,
        raw_id: &str,
        checks: &mut JoinSet<Result<Check, StoreError>>,
        progress: &indicatif::ProgressBar,
    ) -> Result<TenantReport, ImportError> {
        let mut report = TenantReport::new(raw_id);
        let Some(rows) = db.tenant(raw_id).await? else {
            return Err(ImportError::UnknownTenant(raw_id.to_owned()));
        };
        let id = match TenantId::parse(raw_id) {
            Ok(id) => id,
            Err(error) => {
                report.outcome = TenantOutcome::Refused;
                report.refuse("tenant", raw_id, format!("not a valid tenant id here: {error}"));
                return Ok(report);
            }
        };
        report.is_demo = rows.tenant.flag("is_demo");
        let existing = self.store.tenant(&id).await?;
        let history = match &existing {
            Some(_) => self.store.audit(&id, 1_000).await?,
            None => Vec::new(),
        };
        let completed = history.iter().any(|entry| entry.action == COMPLETED);
        let started = history.iter().any(|entry| entry.action == STARTED);
        match (&existing, completed, started) {
            (None, _, _) => {
                if !self.dry_run {
                    crate::audit::append(self.store.as_ref(), &id, ACTOR, STARTED, json!({})).await?;
                    self.store.create_tenant(&legacy_tenant(&id, &rows.tenant)).await?;
                }
                report.created("tenant");
            }
            (Some(_), false, false) => {
                report.outcome = TenantOutcome::Refused;
                report.refuse(
                    "tenant",
                    raw_id,
                    "a tenant with this id already exists here and was not imported; left alone",
                );
                return Ok(report);
            }
            (Some(_), false, true) => {
                report.outcome = TenantOutcome::Resumed;
                report.existing("tenant");
            }
            (Some(_), true, _) => {
                report.outcome = TenantOutcome::Unchanged;
                report.existing("tenant");
            }
        }

        self.business_info(&id, &rows, &mut report).await?;
        let account = self.credentials(&id, &rows, &mut report, checks).await?;
        let numbers = self.numbers(&id, &rows, &mut report).await?;
        self.brand(&id, &rows, account, &numbers, &mut report).await?;
        self.consent(&id, &rows, &mut report).await?;
        templates(&rows, &mut report);
        self.messages(db, &id, &rows, &mut report, progress).await?;

        if report.outcome == TenantOutcome::Unchanged && !report.created.is_empty() {
            report.outcome = TenantOutcome::Updated;
        }
        if !self.dry_run && !completed {
            self.store.set_tenant_status(&id, TenantStatus::Active).await?;
            crate::audit::append(
                self.store.as_ref(),
                &id,
                ACTOR,
                COMPLETED,
                json!({ "created": report.created, "refused": report.refused.len() }),
            )
            .await?;
        }
        Ok(report)
    }

    async fn business_info(
        &self,
        id: &TenantId,
        rows: &TenantRows,
        report: &mut TenantReport,
    ) -> Result<(), StoreError> {
        let Some(row) = &rows.business_info else {
            return Ok(());
        };
        if self.store.business_info(id).await?.is_some() {
            report.existing("business_info");
            return Ok(());
        }
        let form = business_form(row, rows.brand.as_ref());
        let body = serde_json::to_vec(&form).unwrap_or_default();
        match business_info::parse(&body) {
            Ok(info) => {
                if !self.dry_run {
                    let data = serde_json::to_value(&info).map_err(|error| StoreError::Invalid(error.to_string()))?;
                    let updated_at = row.time("updated_at").unwrap_or_else(OffsetDateTime::now_utc);
                    self.store
                        .put_business_info(&BusinessInfoRecord {
                            tenant_id: id.clone(),
                            data,
                            updated_at,
                        })
                        .await?;
                }
                report.created("business_info");
            }
            Err(error) => {
                let fields: Vec<String> = error
                    .fields
                    .iter()
                    .map(|field| format!("{}: {}", field.field, field.message))
                    .collect();
                let reason = if fields.is_empty() {
                    error.message
                } else {
                    fields.join("; ")
                };
                report.refuse(
                    "business_info",
                    row.text("id").unwrap_or_default(),
                    format!("{reason} (the tenant enters it again with POST /v1/business-info)"),
                );
            }
        }
        Ok(())
    }

    async fn credentials(
        &self,
        id: &TenantId,
        rows: &TenantRows,
        report: &mut TenantReport,
        checks: &mut JoinSet<Result<Check, StoreError>>,
    ) -> Result<Option<String>, StoreError> {
        let account_of = |row: &ChannelCredentials| setting(row, ACCOUNT_SID).map(str::to_owned);
        let mut sms_account = self
            .store
            .credentials(id, Channel::Sms)
            .await?
            .as_ref()
            .and_then(account_of);
        for row in &rows.credentials {
            let name = row.text("id").unwrap_or_default();
            let Some(channel) = row.text("channel").as_deref().and_then(channel_of) else {
                report.refuse("credentials", name, "not an sms, whatsapp or email channel");
                continue;
            };
            let current = self.store.credentials(id, channel).await?;
            let unopened = current
                .as_ref()
                .is_some_and(|row| row.verification_error.as_deref() == Some(UNDECRYPTABLE));
            if let Some(current) = current.as_ref().filter(|_| !unopened) {
                report.existing("credentials");
                // A check that an earlier run did not finish runs again.
                if current.verification_error.as_deref() == Some(CHECKING) && !self.dry_run {
                    self.spawn_check(checks, current.clone());
                }
                continue;
            }
            let (mut sealed, format, problem) = match self.seal_legacy(id, channel, row) {
                Ok(sealed) => sealed,
                Err(reason) => {
                    report.refuse("credentials", format!("{name} ({channel})"), reason);
                    continue;
                }
            };
            if let Some(account) = setting(&sealed, ACCOUNT_SID) {
                let holders = self.store.credentials_by_account(account).await?;
                if holders.iter().any(|holder| &holder.tenant_id != id) {
                    report.refuse(
                        "credentials",
                        format!("{name} ({channel})"),
                        "this Twilio account belongs to another tenant here: its webhooks would be signed with a token both know",
                    );
                    continue;
                }
            }
            if unopened && let Some(reason) = problem {
                report.existing("credentials");
                report.refuse("credentials", format!("{name} ({channel})"), reason);
                continue;
            }
            sealed.updated_at = row.time("updated_at").unwrap_or_else(OffsetDateTime::now_utc);
            if channel == Channel::Sms {
                sms_account = account_of(&sealed);
            }
            report.credentials.push(CredentialReport {
                channel,
                format,
                verified: problem.as_ref().map(|_| false),
                error: problem.as_ref().map(|_| UNDECRYPTABLE.to_owned()),
            });
            report.created("credentials");
            if let Some(reason) = problem {
                // The channel is imported unverified, naming its account, for the tenant to
                // save again; a later run with the right key opens it.
                report.refuse("credentials", format!("{name} ({channel})"), reason);
            }
            if self.dry_run {
                continue;
            }
            self.store.put_credentials(&sealed).await?;
            if sealed.verification_error.as_deref() == Some(CHECKING) && !rows.tenant.flag("is_demo") {
                self.spawn_check(checks, sealed);
            }
        }
        Ok(sms_account)
    }

    /// Opens a legacy row's secrets and seals them, marked as being checked. A secret that does
    /// not open gives a row sealed with no secret, marked [`UNDECRYPTABLE`], and the reason;
    /// `Err` is a row that cannot be mapped at all.
    fn seal_legacy(
        &self,
        id: &TenantId,
        channel: Channel,
        row: &Record,
    ) -> Result<(ChannelCredentials, Option<LegacyFormat>, Option<String>), String> {
        let provider = row.text("provider").unwrap_or_default().to_ascii_lowercase();
        let (provider, settings, secret) = match channel {
            Channel::Sms | Channel::Whatsapp => {
                if provider != "twilio" && !provider.is_empty() {
                    return Err(format!("provider {provider:?} does not serve {channel} here"));
                }
                let account = row
                    .text("twilio_account_sid")
                    .filter(|sid| sid.starts_with("AC") && sid.len() == 34)
                    .ok_or("no valid twilio_account_sid (AC + 32 hex)")?;
                let token = row
                    .text("twilio_auth_token_encrypted")
                    .ok_or("no twilio_auth_token_encrypted")?;
                (ProviderKind::Twilio, json!({ ACCOUNT_SID: account }), self.open(&token))
            }
            Channel::Email => {
                let config: Value = row
                    .text("provider_config_json")
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or(Value::Null);
                let from = ["from_address", "from_email", "from"]
                    .iter()
                    .find_map(|key| config.get(*key).and_then(Value::as_str))
                    .ok_or("no sender address (from_address) in provider_config_json")?;
                let from = EmailAddress::parse(from).map_err(|error| format!("sender address: {error}"))?;
                let region = row.text("aws_region").ok_or("no aws_region")?;
                let key = row
                    .text("aws_access_key_id_encrypted")
                    .ok_or("no aws_access_key_id_encrypted")?;
                let secret = row
                    .text("aws_secret_access_key_encrypted")
                    .ok_or("no aws_secret_access_key_encrypted")?;
                let (key_id, _) = self
                    .open(&key)
                    .map_err(|reason| format!("the access key id: {reason}"))?;
                let settings = json!({
                    ACCESS_KEY_ID: secrecy::ExposeSecret::expose_secret(&key_id),
                    REGION: region,
                    FROM_ADDRESS: from.as_str(),
                });
                (ProviderKind::Ses, settings, self.open(&secret))
            }
        };
        Ok(match secret {
            Ok((secret, format)) => {
                let mut sealed = seal(&self.keyring, id, channel, provider, settings, &secret);
                sealed.verification_error = Some(CHECKING.to_owned());
                (sealed, Some(format), None)
            }
            Err(reason) => {
                tracing::warn!(tenant = %id, %channel, %reason, "legacy secret did not open");
                let mut sealed = seal(&self.keyring, id, channel, provider, settings, &SecretString::from(""));
                sealed.verification_error = Some(UNDECRYPTABLE.to_owned());
                (sealed, None, Some(reason))
            }
        })
    }

    fn open(&self, stored: &str) -> Result<(SecretString, LegacyFormat), String> {
        self.legacy_key.decrypt(stored).map_err(|error| error.to_string())
    }

    /// Checks imported credentials with their provider in the background, recording the
    /// outcome in the row unless the tenant changed it meanwhile.
    fn spawn_check(&self, checks: &mut JoinSet<Result<Check, StoreError>>, row: ChannelCredentials) {
        let (store, keyring, twilio, ses, permits) = (
            self.store.clone(),
            self.keyring.clone(),
            self.twilio.clone(),
            self.ses.clone(),
            self.checks.clone(),
        );
        checks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = crate::channels::check(&keyring, &twilio, &ses, &row).await;
            if store.credentials(&row.tenant_id, row.channel).await?.as_ref() == Some(&row) {
                let mut checked = row.clone();
                checked.is_verified = outcome.is_ok();
                checked.verification_error = outcome.clone().err();
                store.put_credentials(&checked).await?;
            }
            tracing::info!(tenant = %row.tenant_id, channel = %row.channel, verified = outcome.is_ok(), "imported credentials checked");
            Ok(Check {
                tenant: row.tenant_id.to_string(),
                channel: row.channel,
                outcome,
            })
        });
    }

    /// Imports the tenant's numbers; answers every number it holds (or, dry, would hold).
    async fn numbers(
        &self,
        id: &TenantId,
        rows: &TenantRows,
        report: &mut TenantReport,
    ) -> Result<Vec<SenderNumber>, StoreError> {
        let mut wanted: Vec<(String, Option<String>, NumberStatus, Option<OffsetDateTime>)> = rows
            .numbers
            .iter()
            .filter_map(|row| {
                let number = row.text("phone_number")?;
                let status = match row.text("status").unwrap_or_default().as_str() {
                    "active" => NumberStatus::Active,
                    "retired" => NumberStatus::Retired,
                    "failed" => NumberStatus::Failed,
                    _ => NumberStatus::Provisioning,
                };
                Some((
                    number,
                    row.text("twilio_phone_number_sid"),
                    status,
                    row.time("allocated_at").or_else(|| row.time("created_at")),
                ))
            })
            .collect();
        if let Some(brand) = &rows.brand
            && let Some(number) = brand.text("twilio_phone_number")
            && !wanted.iter().any(|(raw, ..)| *raw == number)
        {
            let status = match brand.text("twilio_phone_status").unwrap_or_default().as_str() {
                "active" => NumberStatus::Active,
                "failed" => NumberStatus::Failed,
                _ => NumberStatus::Provisioning,
            };
            wanted.push((
                number,
                brand.text("twilio_phone_number_sid"),
                status,
                brand.time("created_at"),
            ));
        }
        let mut held = self.store.sender_numbers(id).await?;
        for (raw, sid, status, created_at) in wanted {
            let number = match PhoneNumber::parse(raw.clone()) {
                Ok(number) => number,
                Err(error) => {
                    report.refuse("number", raw, format!("not an E.164 number: {error}"));
                    continue;
                }
            };
            if held.iter().any(|row| row.number == number) {
                report.existing("number");
                continue;
            }
            let row = SenderNumber {
                tenant_id: id.clone(),
                number,
                kind: SenderKind::LongCode,
                status,
                twilio_sid: sid,
                rate_per_second: None,
                created_at: created_at.unwrap_or_else(OffsetDateTime::now_utc),
                registration: None,
            };
            if !self.dry_run {
                match self.store.put_sender_number(&row).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict(_)) => {
                        report.refuse("number", raw, "another tenant here holds this number");
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            report.created("number");
            held.push(row);
        }
        Ok(held)
    }

    /// Maps the brand onto the onboarding workflow, with the tenant's SMS account and numbers.
    async fn brand(
        &self,
        id: &TenantId,
        rows: &TenantRows,
        account: Option<String>,
        numbers: &[SenderNumber],
        report: &mut TenantReport,
    ) -> Result<(), StoreError> {
        let Some(row) = &rows.brand else {
            return Ok(());
        };
        if let Some(brand) = self.store.brand(id).await? {
            report.onboarding = Step::parse(&brand.workflow_step).map(Step::as_str);
            report.existing("brand");
            return Ok(());
        }
        let active = numbers
            .iter()
            .find(|number| number.kind == SenderKind::LongCode && number.status == NumberStatus::Active);
        let now = OffsetDateTime::now_utc();
        let mut brand = Brand {
            tenant_id: id.clone(),
            status: BrandStatus::Draft,
            status_reason: row.text("twilio_brand_status_reason"),
            trust_score: None,
            workflow_step: String::new(),
            workflow_attempts: 0,
            twilio_sids: BTreeMap::new(),
            updated_at: row.time("updated_at").unwrap_or(now),
            approved_at: row.time("twilio_approved_at"),
        };
        if let Some(account) = &account {
            brand.twilio_sids.insert(keys::ACCOUNT.to_owned(), account.clone());
        }
        if let Some(sid) = row.text("twilio_brand_sid") {
            brand.twilio_sids.insert(keys::BRAND.to_owned(), sid);
        }
        if let Some(number) = active {
            brand
                .twilio_sids
                .insert(keys::PHONE_NUMBER_E164.to_owned(), number.number.as_str().to_owned());
            if let Some(sid) = &number.twilio_sid {
                brand.twilio_sids.insert(keys::PHONE_NUMBER.to_owned(), sid.clone());
            }
        }
        let status = row.text("twilio_brand_status").unwrap_or_default().to_ascii_lowercase();
        let demo = rows.tenant.flag("is_demo");
        let has_sid = brand.twilio_sids.contains_key(keys::BRAND);
        let (step, due) = match status.as_str() {
            // A demo's simulated review: approved with its number, or reviewed again here
            // (which gives it a fictional number).
            "approved" if demo && active.is_some() => (Step::Ready, None),
            "approved" | "pending" | "in_review" | "draft" if demo => (Step::DemoReview, Some(now)),
            "approved" if active.is_some() => (Step::Ready, None),
            // Approved without a number here, or still under review: the workflow polls the
            // brand (never registers it again) and goes on from what Twilio says.
            "approved" | "pending" | "in_review" if has_sid && account.is_some() => (Step::AwaitingApproval, Some(now)),
            "approved" | "pending" | "in_review" => {
                let reason = if has_sid {
                    "no SMS credentials here to poll the brand with"
                } else {
                    "no twilio_brand_sid"
                };
                report.refuse(
                    "brand",
                    row.text("id").unwrap_or_default(),
                    format!(
                        "{status} brand not resumed: {reason}; the tenant resubmits (POST /v1/channels/sms/resubmit)"
                    ),
                );
                (Step::NeedsAttention, None)
            }
            "rejected" | "failed" | "suspended" => (Step::Rejected, None),
            // Never submitted: onboarding starts when the tenant submits (resubmit).
            _ => {
                report.refuse(
                    "brand",
                    row.text("id").unwrap_or_default(),
                    "a draft brand was never registered; onboarding starts with POST /v1/channels/sms/resubmit",
                );
                return Ok(());
            }
        };
        brand.status = match (step, status.as_str()) {
            (Step::Ready, _) => BrandStatus::Approved,
            (_, "approved") if !demo => BrandStatus::Approved,
            (_, "suspended") => BrandStatus::Suspended,
            (_, "rejected" | "failed") => BrandStatus::Failed,
            (_, "in_review") => BrandStatus::InReview,
            _ => BrandStatus::Pending,
        };
        if step == Step::Rejected && brand.status_reason.is_none() {
            brand.status_reason = Some(format!("the brand was {status} before the migration"));
        }
        if step == Step::NeedsAttention {
            brand.status_reason = Some("imported without what resuming needs; resubmit".to_owned());
        }
        brand.workflow_step = step.as_str().to_owned();
        report.onboarding = Some(step.as_str());
        if !self.dry_run {
            self.store.put_workflow(&brand, due).await?;
        }
        report.created("brand");
        Ok(())
    }

    async fn consent(&self, id: &TenantId, rows: &TenantRows, report: &mut TenantReport) -> Result<(), StoreError> {
        // Addresses suppressed by this run (one number may opt out of SMS and WhatsApp).
        let mut suppressed = std::collections::HashSet::new();
        for contact in &rows.contacts {
            for (channel, address, flag) in [
                (Channel::Sms, "phone_number", "consent_sms"),
                (Channel::Whatsapp, "whatsapp_number", "consent_whatsapp"),
                (Channel::Email, "email", "consent_email"),
            ] {
                let Some(raw) = contact.text(address) else { continue };
                if !contact.has(flag) {
                    continue;
                }
                let changed_at = contact.time(&format!("{flag}_updated_at"));
                let recipient = match recipient_of(channel, &raw) {
                    Ok(recipient) => recipient,
                    Err(error) => {
                        let row = contact.text("id").unwrap_or_default();
                        report.refuse("consent", format!("{row} ({channel})"), format!("{raw:?}: {error}"));
                        continue;
                    }
                };
                if contact.flag(flag) {
                    let known = self.store.consents(id, &recipient).await?;
                    if known.iter().any(|consent| consent.channel == channel) {
                        report.existing("consent");
                        continue;
                    }
                    if !self.dry_run {
                        self.store
                            .put_consent(&Consent {
                                tenant_id: id.clone(),
                                recipient,
                                channel,
                                source: "imported".to_owned(),
                                wording: None,
                                given_at: changed_at
                                    .or_else(|| contact.time("created_at"))
                                    .unwrap_or_else(OffsetDateTime::now_utc),
                            })
                            .await?;
                    }
                    report.created("consent");
                } else if let Some(changed_at) = changed_at {
                    // A flag turned off (it has a change time): the recipient opted out.
                    if suppressed.contains(&recipient) {
                        continue;
                    }
                    suppressed.insert(recipient.clone());
                    if self.store.suppression(id, &recipient).await?.is_some() {
                        report.existing("suppression");
                        continue;
                    }
                    if !self.dry_run {
                        self.store
                            .suppress(&Suppression {
                                tenant_id: id.clone(),
                                address: recipient,
                                reason: SuppressionReason::OptOut,
                                source: Some(format!("imported: {flag} withdrawn")),
                                created_at: changed_at,
                            })
                            .await?;
                    }
                    report.created("suppression");
                }
            }
        }
        Ok(())
    }

    async fn messages(
        &self,
        db: &LegacyDb,
        id: &TenantId,
        rows: &TenantRows,
        report: &mut TenantReport,
        progress: &indicatif::ProgressBar,
    ) -> Result<(), ImportError> {
        let mut read = 0;
        let channels: BTreeMap<String, Channel> = rows
            .campaigns
            .iter()
            .filter_map(|campaign| {
                Some((
                    campaign.text("id")?,
                    campaign.text("channel").as_deref().and_then(channel_of)?,
                ))
            })
            .collect();
        let contacts: BTreeMap<String, &Record> = rows
            .contacts
            .iter()
            .filter_map(|contact| Some((contact.text("id")?, contact)))
            .collect();
        let mut after = 0;
        loop {
            let (page, last) = db.messages(id.as_str(), after, MESSAGE_PAGE).await?;
            let Some(last) = last else { break };
            after = last;
            read += page.len();
            progress.set_message(format!("{id}: {read} messages"));
            let mut claims = Vec::with_capacity(page.len());
            let mut updates = Vec::with_capacity(page.len());
            for row in &page {
                match legacy_message(id, row, &channels, &contacts) {
                    Ok((claim, steps)) => {
                        claims.push(claim);
                        updates.push(steps);
                    }
                    Err(reason) => report.refuse("message", row.text("id").unwrap_or_default(), reason),
                }
            }
            // Read first: a claim on Cassandra is a blind write (the log's owner alone claims),
            // so it cannot say whether the message was there.
            let ids: Vec<(TenantId, MessageId)> = claims
                .iter()
                .map(|claim| (claim.tenant_id.clone(), claim.message_id.clone()))
                .collect();
            // A claim of ours still `queued` was stopped before its history was written:
            // the history is written now (status changes only move forward).
            let fresh: Vec<bool> = self
                .store
                .claims(&ids)
                .await?
                .iter()
                .map(|claim| {
                    claim.is_none_or(|claim| {
                        claim.position == Some(IMPORTED_POSITION) && claim.status == MessageStatus::Queued
                    })
                })
                .collect();
            if !self.dry_run {
                let new: Vec<NewMessage> = claims
                    .into_iter()
                    .zip(&fresh)
                    .filter_map(|(claim, fresh)| fresh.then_some(claim))
                    .collect();
                self.store.claim_messages(&new).await?;
            }
            let mut steps = Vec::new();
            for (fresh, message_steps) in fresh.into_iter().zip(updates) {
                if fresh {
                    report.created("message");
                    steps.extend(message_steps);
                } else {
                    report.existing("message");
                }
            }
            if !self.dry_run && !steps.is_empty() {
                self.store.apply_status(&steps).await?;
            }
        }
        Ok(())
    }
}

/// The tenant row: suspended until its unit completes.
fn legacy_tenant(id: &TenantId, row: &Record) -> Tenant {
    let is_demo = row.flag("is_demo");
    let created_at = if is_demo {
        row.time("demo_created_at").or_else(|| row.time("created_at"))
    } else {
        row.time("created_at")
    };
    Tenant {
        id: id.clone(),
        name: row.text("name").unwrap_or_else(|| id.to_string()),
        is_demo,
        status: TenantStatus::Suspended,
        plan_id: row.text("plan_id"),
        created_by: if is_demo {
            row.text("demo_created_by")
        } else {
            Some("legacy-import".to_owned())
        },
        created_at: created_at.unwrap_or_else(OffsetDateTime::now_utc),
    }
}

/// The business information form from the legacy row (and the brand's campaign type), in this
/// product's field names; validated by the same rules as `POST /v1/business-info`.
fn business_form(row: &Record, brand: Option<&Record>) -> Value {
    let lower = |column: &str| {
        row.text(column)
            .map(|value| value.to_ascii_lowercase().replace([' ', '-'], "_"))
    };
    let volume = row.integer("monthly_sms_volume_estimate").map(|volume| match volume {
        ..1_000 => "under_1000",
        1_000..10_000 => "1000_to_10000",
        10_000..100_000 => "10000_to_100000",
        100_000..1_000_000 => "100000_to_1000000",
        _ => "over_1000000",
    });
    let campaign_type = brand
        .and_then(|brand| brand.text("campaign_type"))
        .map(|kind| if kind == "two_way" { "mixed".to_owned() } else { kind });
    let mut form = json!({
        "legal_business_name": row.text("legal_business_name"),
        "dba_name": row.text("dba_name"),
        "business_type": lower("business_type"),
        "ein": row.text("business_registration_number"),
        "industry": lower("industry_vertical"),
        "website": row.text("business_website"),
        "address": row.text("business_address"),
        "city": row.text("business_city"),
        "state": row.text("business_state").map(|state| state.to_ascii_uppercase()),
        "zip": row.text("business_zip"),
        "country": row.text("country"),
        "owner_name": row.text("owner_name"),
        "owner_title": row.text("owner_title"),
        "owner_email": row.text("owner_email"),
        "owner_phone": row.text("owner_phone"),
        "business_contact_name": row.text("business_contact_name"),
        "business_contact_email": row.text("business_contact_email"),
        "business_contact_phone": row.text("business_contact_phone"),
        "monthly_volume": volume,
        "use_case_description": row.text("use_case_description"),
        "campaign_type": campaign_type,
        "sms_opt_in_language": row.text("sms_opt_in_language"),
        "tcpa_compliant": row.flag("tcpa_compliant"),
        "gdpr_compliant": row.flag("gdpr_compliant"),
    });
    if let Some(form) = form.as_object_mut() {
        form.retain(|_, value| !value.is_null());
    }
    form
}

/// WhatsApp templates stay where they are, in the tenant's Twilio account (this product reads
/// them from Twilio's Content API): one with its Content SID is usable as it is; one without
/// is reported, to be brought in with `POST /v1/templates/whatsapp/import`.
fn templates(rows: &TenantRows, report: &mut TenantReport) {
    for row in &rows.templates {
        match row.text("twilio_content_sid").or_else(|| row.text("content_sid")) {
            Some(sid) if sid.starts_with("HX") => report.existing("template_at_twilio"),
            _ => report.refuse(
                "template",
                row.text("name").or_else(|| row.text("id")).unwrap_or_default(),
                "no Twilio Content SID: bring it in with POST /v1/templates/whatsapp/import",
            ),
        }
    }
}

/// A legacy message: its claim and the status steps that make its history here.
fn legacy_message(
    tenant: &TenantId,
    row: &Record,
    channels: &BTreeMap<String, Channel>,
    contacts: &BTreeMap<String, &Record>,
) -> Result<(NewMessage, Vec<StatusUpdate>), String> {
    let message_id = MessageId::parse(row.text("id").ok_or("no id")?).map_err(|error| error.to_string())?;
    let campaign_id = row
        .text("campaign_id")
        .map(CampaignId::parse)
        .transpose()
        .map_err(|error| format!("campaign_id: {error}"))?;
    let contact = row.text("contact_id").and_then(|id| contacts.get(&id).copied());
    let channel = row
        .text("channel")
        .as_deref()
        .and_then(channel_of)
        .or_else(|| row.text("campaign_id").and_then(|id| channels.get(&id).copied()))
        .or_else(|| row.has("phone_number").then_some(Channel::Sms))
        .ok_or("no channel (neither the message's nor its campaign's)")?;
    let raw = match channel {
        Channel::Email => row
            .text("email")
            .or_else(|| contact.and_then(|contact| contact.text("email")))
            .ok_or("no recipient email address")?,
        Channel::Sms | Channel::Whatsapp => {
            let column = if channel == Channel::Sms {
                "phone_number"
            } else {
                "whatsapp_number"
            };
            row.text("phone_number")
                .or_else(|| contact.and_then(|contact| contact.text(column)))
                .ok_or("no recipient number")?
        }
    };
    let recipient = recipient_of(channel, &raw)?;
    let accepted_at = row.time("created_at").unwrap_or_else(OffsetDateTime::now_utc);
    let changed_at = row.time("updated_at").unwrap_or(accepted_at).max(accepted_at);
    let status = row
        .text("status")
        .or_else(|| row.text("provider_status"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let provider_id = row.text("provider_message_id");
    let step = |status: MessageStatus, at: OffsetDateTime, reason: Option<String>| StatusUpdate {
        tenant_id: tenant.clone(),
        message_id: message_id.clone(),
        status,
        at,
        reason,
        provider_message_id: provider_id.clone(),
        held: None,
    };
    let final_status = match status.as_str() {
        "sent" | "accepted" | "sending" if provider_id.is_some() => Some(MessageStatus::Sent),
        "delivered" => Some(MessageStatus::Delivered),
        "read" | "opened" | "clicked" => Some(MessageStatus::Read),
        "failed" | "error" => Some(MessageStatus::Failed),
        "undelivered" | "bounced" => Some(MessageStatus::Undelivered),
        "rejected" => Some(MessageStatus::Rejected),
        "suppressed" | "opted_out" | "unsubscribed" => Some(MessageStatus::Suppressed),
        "expired" => Some(MessageStatus::Expired),
        _ => None,
    };
    let steps = match final_status {
        // Never handed to a provider before the migration: it stays unsent, for good.
        None => vec![step(
            MessageStatus::Failed,
            changed_at,
            Some(IMPORTED_UNSENT.to_owned()),
        )],
        Some(final_status) => {
            let mut steps = Vec::new();
            if matches!(final_status, MessageStatus::Delivered | MessageStatus::Read) {
                steps.push(step(MessageStatus::Sent, accepted_at, None));
            }
            let reason = row.text("error_code").or_else(|| row.text("failure_reason"));
            steps.push(step(final_status, changed_at, reason));
            steps
        }
    };
    let claim = NewMessage {
        tenant_id: tenant.clone(),
        message_id,
        campaign_id,
        channel,
        recipient,
        priority: Priority::Marketing,
        segments: 1,
        accepted_at,
        position: IMPORTED_POSITION,
    };
    Ok((claim, steps))
}
