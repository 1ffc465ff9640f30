//! WhatsApp senders of live tenants, registered through Twilio's Senders API on the tenant's
//! Twilio account, and followed until they send.
//!
//! # Routes
//!
//! `POST /v1/channels/whatsapp/senders` registers a number; `GET` lists the tenant's senders;
//! `GET` and `DELETE /v1/channels/whatsapp/senders/{number}` show and remove one; `POST
//! .../{number}/verify` gives Meta's verification code.
//!
//! # Durability (as the 10DLC workflow)
//!
//! The sender row (`SenderNumber` of kind `whatsapp`, `provisioning`, with its
//! [`SenderRegistration`]) is written before Twilio is called, with `create_in_flight` set:
//! the intent. The SID Twilio answers is stored at once. A create whose answer was lost
//! ([`AccountOpError::Unknown`]) is never sent again blindly: the next drive lists the
//! account's senders and adopts the one with this number, and only creates again when the list
//! shows none. A create refused by Twilio marks the sender `failed` with the reason.
//!
//! # Following
//!
//! [`Senders::run`] fetches every followed sender when due: `poll_interval_secs` while it is
//! not online, `watch_interval_secs` once it is, `retry_interval_secs` after Twilio was
//! unreachable. It finds them at start by reading every tenant with saved credentials. A
//! `POST /webhooks/twilio/sender-status` (signed like every Twilio webhook) makes it fetch the
//! named sender at once; only the fetched sender applies, never the callback's claim. Twilio's
//! status maps onto the row: `ONLINE` (and `ONLINE:UPDATING`) make it `active`, which turns the
//! WhatsApp channel ready; `OFFLINE` makes it `suspended`; every other status keeps it
//! `provisioning`. Every change is audited (`whatsapp_sender.*`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::config::OnboardingSettings;
use common::credentials::{self, Keyring};
use common::store::{
    ChannelCredentials, NumberStatus, ProviderKind, SenderKind, SenderNumber, SenderRegistration, Store, StoreError,
};
use common::twilio::accounts::AccountOpError;
use common::twilio::whatsapp::{NewSender, Sender, SenderStatus};
use common::twilio::{TwilioAccount, TwilioClient, open_account};
use common::{Channel, PhoneNumber, TenantId};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::locks::TenantLocks;

/// How many tenants one page of the start-up scan reads.
const SCAN_PAGE: usize = 500;

/// What the tenant must do for a sender, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SenderAction {
    /// Give the code Meta sent the number: `POST .../{number}/verify`.
    VerifyWhatsappNumber,
    /// Meta took the sender offline (`reason` says why): fix the profile and register again.
    FixWhatsappProfile,
    /// Twilio refused the registration (`reason` says why): correct it and register again.
    CorrectSenderRequest,
}

/// Why a sender operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant has no sender with that number.
    #[error("no whatsapp sender with that number")]
    NotFound,
    /// The number is one of the tenant's SMS numbers, or another tenant's.
    #[error("the number is in use: {0}")]
    NumberInUse(String),
    /// The sender is already registered (and not failed or removed).
    #[error("the number is already registered as a whatsapp sender")]
    AlreadyRegistered,
    /// The tenant has no Twilio account to register on.
    #[error("no twilio account: save the whatsapp (or sms) channel's credentials first")]
    NoAccount,
    /// The saved credentials do not open.
    #[error("the saved twilio credentials cannot be used")]
    CredentialsUnusable,
    /// The sender is not waiting for a verification code.
    #[error("the sender is {0}, not waiting for a verification code")]
    NotAwaitingCode(String),
    /// Twilio refused or could not be reached.
    #[error(transparent)]
    Twilio(#[from] AccountOpError),
}

/// A sender as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SenderView {
    /// The number, E.164.
    pub number: String,
    /// `provisioning`, `active`, `suspended` (offline), `failed` or `retired`.
    #[schema(value_type = String)]
    pub status: NumberStatus,
    /// Twilio's status (`CREATING`, `PENDING_VERIFICATION`, `ONLINE`, `OFFLINE`, ...), once known.
    pub twilio_status: Option<String>,
    /// The sender's SID (`XE...`), once Twilio answered.
    pub sid: Option<String>,
    /// Why it is offline or failed, or what went wrong last.
    pub reason: Option<String>,
    /// What the tenant must do, if anything.
    pub next_action: Option<SenderAction>,
    /// The WhatsApp Business Account.
    pub waba_id: Option<String>,
    /// The display name.
    pub display_name: Option<String>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl SenderView {
    /// The view of a stored sender.
    pub fn of(row: &SenderNumber) -> Self {
        let registration = row.registration.as_ref();
        let twilio_status = registration.and_then(|r| r.twilio_status.clone());
        let next_action = match (row.status, twilio_status.as_deref().map(SenderStatus::parse)) {
            (NumberStatus::Failed, _) => Some(SenderAction::CorrectSenderRequest),
            (_, Some(SenderStatus::PendingVerification)) => Some(SenderAction::VerifyWhatsappNumber),
            (_, Some(SenderStatus::Offline)) => Some(SenderAction::FixWhatsappProfile),
            _ => None,
        };
        Self {
            number: row.number.as_str().to_owned(),
            status: row.status,
            twilio_status,
            sid: row.twilio_sid.clone(),
            reason: registration.and_then(|r| r.reason.clone()),
            next_action,
            waba_id: registration.map(|r| r.waba_id.clone()),
            display_name: registration.map(|r| r.profile.name.clone()),
            created_at: row.created_at,
        }
    }
}

/// A sender to register, parsed from the request.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The number.
    pub number: PhoneNumber,
    /// What the create needs.
    pub details: SenderRegistration,
}

/// The WhatsApp senders of every live tenant: registration, verification, removal, and the
/// runner that follows them.
pub struct Senders {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    twilio: TwilioClient,
    public_url: String,
    settings: OnboardingSettings,
    /// When each followed sender is next fetched.
    due: Mutex<BTreeMap<(TenantId, String), OffsetDateTime>>,
    wake: Notify,
    locks: TenantLocks,
}

impl std::fmt::Debug for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Senders")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn is_whatsapp(row: &SenderNumber) -> bool {
    row.kind == SenderKind::Whatsapp
}

impl Senders {
    /// The senders over `store`, calling Twilio with `twilio`; webhook URLs start with
    /// `public_url`; the onboarding settings give the intervals.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        twilio: TwilioClient,
        public_url: impl Into<String>,
        settings: OnboardingSettings,
    ) -> Self {
        Self {
            store,
            keyring,
            twilio,
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            settings,
            due: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            locks: TenantLocks::default(),
        }
    }

    fn schedule(&self, tenant: &TenantId, number: &PhoneNumber, wait: Option<Duration>) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (tenant.clone(), number.as_str().to_owned());
        match wait {
            Some(wait) => {
                due.insert(key, now() + wait);
            }
            None => {
                due.remove(&key);
            }
        }
        drop(due);
        self.wake.notify_one();
    }

    async fn audit(&self, tenant: &TenantId, actor: &str, action: &str, detail: Value) -> Result<(), StoreError> {
        crate::audit::append(self.store.as_ref(), tenant, actor, action, detail).await
    }

    /// The tenant's WhatsApp senders.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<SenderNumber>, StoreError> {
        let rows = self.store.sender_numbers(tenant).await?;
        Ok(rows.into_iter().filter(is_whatsapp).collect())
    }

    async fn find(&self, tenant: &TenantId, number: &PhoneNumber) -> Result<Option<SenderNumber>, StoreError> {
        let rows = self.store.sender_numbers(tenant).await?;
        Ok(rows.into_iter().find(|row| row.number == *number))
    }

    /// The Twilio account senders are registered on: the WhatsApp channel's credentials, or
    /// else the SMS channel's (the account 10DLC onboarding uses), which are then saved as the
    /// WhatsApp channel's too so that the dispatcher sends WhatsApp through the same account.
    pub async fn account(&self, tenant: &TenantId) -> Result<TwilioAccount, SenderError> {
        let row = match self.store.credentials(tenant, Channel::Whatsapp).await? {
            Some(row) => row,
            None => {
                let sms = self
                    .store
                    .credentials(tenant, Channel::Sms)
                    .await?
                    .ok_or(SenderError::NoAccount)?;
                let account = open_account(&self.keyring, &sms).map_err(|error| {
                    tracing::warn!(%tenant, %error, "stored sms credentials do not open");
                    SenderError::CredentialsUnusable
                })?;
                // Sealed anew: a sealed secret is bound to its channel.
                let row = ChannelCredentials {
                    is_verified: sms.is_verified,
                    verification_error: sms.verification_error.clone(),
                    ..credentials::seal(
                        &self.keyring,
                        tenant,
                        Channel::Whatsapp,
                        ProviderKind::Twilio,
                        sms.settings.clone(),
                        &account.auth_token,
                    )
                };
                self.store.put_credentials(&row).await?;
                row
            }
        };
        open_account(&self.keyring, &row).map_err(|error| {
            tracing::warn!(%tenant, %error, "stored whatsapp credentials do not open");
            SenderError::CredentialsUnusable
        })
    }

    /// Registers a sender: records the intent, then drives it once (the create). A number
    /// registered before that failed or was removed may be registered again.
    pub async fn register(
        &self,
        tenant: &TenantId,
        registration: Registration,
        actor: &str,
    ) -> Result<SenderNumber, SenderError> {
        let lock = self.locks.of(tenant);
        let guard = lock.lock().await;
        let number = registration.number;
        if let Some(existing) = self.find(tenant, &number).await? {
            if !is_whatsapp(&existing) {
                return Err(SenderError::NumberInUse(
                    "it is one of the tenant's SMS numbers".to_owned(),
                ));
            }
            if !matches!(existing.status, NumberStatus::Failed | NumberStatus::Retired) {
                return Err(SenderError::AlreadyRegistered);
            }
        }
        self.account(tenant).await?;
        let row = SenderNumber {
            tenant_id: tenant.clone(),
            number: number.clone(),
            kind: SenderKind::Whatsapp,
            status: NumberStatus::Provisioning,
            twilio_sid: None,
            rate_per_second: None,
            created_at: now(),
            registration: Some(registration.details),
        };
        match self.store.put_sender_number(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict(message)) => return Err(SenderError::NumberInUse(message)),
            Err(error) => return Err(error.into()),
        }
        self.audit(
            tenant,
            actor,
            "whatsapp_sender.registered",
            json!({ "number": number.as_str() }),
        )
        .await?;
        drop(guard);
        self.advance(tenant, &number).await
    }

    /// Takes a sender one step further (a create, a lookup of a lost create, or a fetch),
    /// stores the result and schedules its next look.
    pub async fn advance(&self, tenant: &TenantId, number: &PhoneNumber) -> Result<SenderNumber, SenderError> {
        let lock = self.locks.of(tenant);
        let _guard = lock.lock().await;
        let Some(mut row) = self.find(tenant, number).await?.filter(is_whatsapp) else {
            self.schedule(tenant, number, None);
            return Err(SenderError::NotFound);
        };
        if matches!(row.status, NumberStatus::Failed | NumberStatus::Retired) || row.registration.is_none() {
            self.schedule(tenant, number, None);
            return Ok(row);
        }
        let twilio_status = |row: &SenderNumber| row.registration.as_ref().and_then(|r| r.twilio_status.clone());
        let before = (row.status, twilio_status(&row));
        let result = match self.account(tenant).await {
            Ok(account) => self.step(&account, &mut row).await,
            Err(error) => Err(error),
        };
        let wait = self.settle(&mut row, result).await?;
        self.schedule(tenant, number, wait);
        if (row.status, twilio_status(&row)) != before {
            self.audit(
                tenant,
                "onboarding",
                "whatsapp_sender.status_changed",
                json!({
                    "number": number.as_str(),
                    "from": before.0,
                    "to": row.status,
                    "twilio_status": twilio_status(&row),
                    "reason": row.registration.as_ref().and_then(|r| r.reason.clone()),
                }),
            )
            .await?;
        }
        Ok(row)
    }

    /// One Twilio call for `row`; writes the intent before a create.
    async fn step(&self, account: &TwilioAccount, row: &mut SenderNumber) -> Result<(), SenderError> {
        if let Some(sid) = row.twilio_sid.clone() {
            let sender = self.twilio.fetch_sender(account, &sid).await?;
            apply(row, &sender);
            return Ok(());
        }
        let sender_id = format!("whatsapp:{}", row.number);
        let registration = row.registration.as_mut().ok_or(SenderError::NotFound)?;
        if registration.create_in_flight {
            // The last create's answer was lost: Twilio may hold the sender.
            let existing = self.twilio.list_senders(account).await?;
            if let Some(sender) = existing.iter().find(|sender| sender.sender_id == sender_id) {
                registration.create_in_flight = false;
                apply(row, sender);
                return Ok(());
            }
            tracing::info!(tenant = %row.tenant_id, number = %row.number, "a lost sender create left nothing at twilio; creating it again");
        }
        registration.create_in_flight = true;
        self.store.put_sender_number(row).await?;
        let registration = row.registration.as_ref().ok_or(SenderError::NotFound)?;
        let request = NewSender {
            number: row.number.clone(),
            waba_id: registration.waba_id.clone(),
            verification_method: registration.verification_method.clone(),
            profile: registration.profile.clone(),
            callback_url: format!("{}/webhooks/twilio/inbound", self.public_url),
            status_callback_url: format!("{}/webhooks/twilio/status", self.public_url),
        };
        let result = self.twilio.create_sender(account, &request).await;
        let registration = row.registration.as_mut().ok_or(SenderError::NotFound)?;
        match result {
            Ok(sender) => {
                registration.create_in_flight = false;
                apply(row, &sender);
                Ok(())
            }
            Err(error) => {
                // Only an unknown outcome can hide a sender at Twilio.
                registration.create_in_flight = error.is_unknown();
                Err(error.into())
            }
        }
    }

    /// Stores the step's result; answers when to look again (`None`: no more).
    async fn settle(
        &self,
        row: &mut SenderNumber,
        result: Result<(), SenderError>,
    ) -> Result<Option<Duration>, SenderError> {
        let wait = match result {
            Ok(()) => {
                if let Some(registration) = row.registration.as_mut() {
                    registration.attempts = 0;
                }
                Some(if row.status == NumberStatus::Active {
                    self.settings.watch_interval()
                } else {
                    self.settings.poll_interval()
                })
            }
            Err(SenderError::Store(error)) => return Err(SenderError::Store(error)),
            Err(SenderError::Twilio(error)) if error.is_not_found() && row.twilio_sid.is_some() => {
                row.status = NumberStatus::Failed;
                set_reason(row, "the sender no longer exists at twilio".to_owned());
                None
            }
            Err(SenderError::Twilio(error)) if error.is_retryable() || error.is_unknown() => {
                if let Some(registration) = row.registration.as_mut() {
                    registration.attempts += 1;
                }
                set_reason(row, error.to_string());
                Some(error.retry_after().unwrap_or(self.settings.retry_interval()))
            }
            Err(SenderError::Twilio(error)) => {
                if row.twilio_sid.is_none() {
                    // The create was refused: sending it again fails again.
                    row.status = NumberStatus::Failed;
                    set_reason(row, error.to_string());
                    None
                } else {
                    set_reason(row, error.to_string());
                    Some(self.settings.retry_interval())
                }
            }
            Err(error) => {
                set_reason(row, error.to_string());
                Some(self.settings.retry_interval())
            }
        };
        self.store.put_sender_number(row).await?;
        Ok(wait)
    }

    /// Gives Meta's verification code for a sender in `PENDING_VERIFICATION`.
    pub async fn verify(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
        code: &str,
        actor: &str,
    ) -> Result<SenderNumber, SenderError> {
        {
            let lock = self.locks.of(tenant);
            let _guard = lock.lock().await;
            let row = self
                .find(tenant, number)
                .await?
                .filter(is_whatsapp)
                .ok_or(SenderError::NotFound)?;
            let status = row.registration.as_ref().and_then(|r| r.twilio_status.clone());
            let (Some(sid), Some(SenderStatus::PendingVerification)) =
                (row.twilio_sid.as_deref(), status.as_deref().map(SenderStatus::parse))
            else {
                return Err(SenderError::NotAwaitingCode(
                    status.unwrap_or_else(|| row.status.as_str().to_owned()),
                ));
            };
            let account = self.account(tenant).await?;
            self.twilio.verify_sender(&account, sid, code).await?;
            self.audit(
                tenant,
                actor,
                "whatsapp_sender.verification_submitted",
                json!({ "number": number.as_str() }),
            )
            .await?;
        }
        self.advance(tenant, number).await
    }

    /// Removes a sender: deletes it at Twilio (one that Twilio no longer has counts as
    /// deleted) and keeps the row as `retired`.
    pub async fn remove(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
        actor: &str,
    ) -> Result<SenderNumber, SenderError> {
        let lock = self.locks.of(tenant);
        let _guard = lock.lock().await;
        let mut row = self
            .find(tenant, number)
            .await?
            .filter(is_whatsapp)
            .ok_or(SenderError::NotFound)?;
        if row.registration.as_ref().is_some_and(|r| r.create_in_flight) {
            // A create whose answer was lost may have made one: find it before deleting.
            let account = self.account(tenant).await?;
            let sender_id = format!("whatsapp:{}", row.number);
            let senders = self.twilio.list_senders(&account).await?;
            row.twilio_sid = senders.into_iter().find(|s| s.sender_id == sender_id).map(|s| s.sid);
        }
        if let Some(sid) = row.twilio_sid.as_deref() {
            let account = self.account(tenant).await?;
            match self.twilio.delete_sender(&account, sid).await {
                Ok(()) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error.into()),
            }
        }
        row.status = NumberStatus::Retired;
        if let Some(registration) = row.registration.as_mut() {
            registration.create_in_flight = false;
        }
        self.store.put_sender_number(&row).await?;
        self.schedule(tenant, number, None);
        self.audit(
            tenant,
            actor,
            "whatsapp_sender.removed",
            json!({ "number": number.as_str() }),
        )
        .await?;
        Ok(row)
    }

    /// A signed sender-status callback named `sid` on an account of `tenant`: fetches it at
    /// once if it is one of the tenant's; answers whether it was.
    pub async fn status_reported(&self, tenant: &TenantId, sid: &str) -> Result<bool, SenderError> {
        let rows = self.list(tenant).await?;
        let Some(row) = rows.into_iter().find(|row| row.twilio_sid.as_deref() == Some(sid)) else {
            return Ok(false);
        };
        self.advance(tenant, &row.number).await?;
        Ok(true)
    }

    /// Finds every followed sender (not failed or retired) of every tenant with credentials.
    async fn scan(&self) -> Result<(), StoreError> {
        let mut after: Option<TenantId> = None;
        loop {
            let tenants = self.store.credential_tenants(after.as_ref(), SCAN_PAGE).await?;
            for tenant in &tenants {
                for row in self.list(tenant).await? {
                    if row.registration.is_some() && !matches!(row.status, NumberStatus::Failed | NumberStatus::Retired)
                    {
                        self.schedule(tenant, &row.number, Some(Duration::ZERO));
                    }
                }
            }
            match tenants.last() {
                Some(last) if tenants.len() == SCAN_PAGE => after = Some(last.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Follows senders until `stop`: finds them, then fetches each when due.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        while let Err(error) = self.scan().await {
            tracing::warn!(%error, "cannot read the whatsapp senders to follow; trying again");
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.retry_interval().min(Duration::from_secs(30))) => {}
            }
        }
        loop {
            let next = {
                let due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
                due.iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(key, at)| (key.clone(), *at))
            };
            let wait = next.as_ref().map_or(Duration::from_secs(3_600), |(_, at)| {
                Duration::try_from(*at - now()).unwrap_or(Duration::ZERO)
            });
            if wait > Duration::ZERO || next.is_none() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.wake.notified() => continue,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
            let Some(((tenant, raw), _)) = next else { continue };
            let Ok(number) = PhoneNumber::parse(&raw) else {
                self.due
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(tenant, raw));
                continue;
            };
            // Due again later unless the drive says otherwise, so that a failing store does
            // not spin.
            self.schedule(&tenant, &number, Some(self.settings.retry_interval()));
            if let Err(error) = self.advance(&tenant, &number).await {
                tracing::warn!(%tenant, number = %number, %error, "whatsapp sender not followed");
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }
}

/// Twilio's view of a sender onto its row.
fn apply(row: &mut SenderNumber, sender: &Sender) {
    row.twilio_sid = Some(sender.sid.clone());
    row.status = match sender.status {
        ref status if status.sends() => NumberStatus::Active,
        SenderStatus::Offline => NumberStatus::Suspended,
        _ => NumberStatus::Provisioning,
    };
    let reason = (!sender.offline_reasons.is_empty()).then(|| {
        sender
            .offline_reasons
            .iter()
            .map(|reason| match (&reason.code, &reason.message) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (None, Some(message)) => message.clone(),
                (Some(code), None) => code.clone(),
                (None, None) => "offline".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    if let Some(registration) = row.registration.as_mut() {
        registration.twilio_status = Some(sender.status.as_str().to_owned());
        registration.reason = reason;
    }
}

fn set_reason(row: &mut SenderNumber, reason: String) {
    if let Some(registration) = row.registration.as_mut() {
        registration.reason = Some(reason);
    }
}
